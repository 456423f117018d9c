/* Mamba prefill: chunked (projections as GEMMs over max_batch tokens, scan
 * inside the kernel) against feeding the same prompt one token at a time.
 *
 * Writes a mamba-130m-shaped model with random weights (d_model 768, 24
 * layers, d_inner 1536, d_state 16, d_conv 4, dt_rank 48, vocab 50280, tied
 * embeddings) into a temporary .tern with the writer API, then times
 * tern_session_feed. Both paths produce the logits of the last token only.
 *
 *   tern-bench-mamba [-n prompt_tokens] [-s stepwise_tokens] [-b max_batch]
 *                    [-t threads,...] [-w f32|f16] [-l layers]
 *
 * A Mamba token costs the same at any position (the state does not grow), so
 * -s times the stepwise path over the first s tokens of the prompt only
 * (default 128; 0 or more than -n: all of them), to keep the run short;
 * tokens/s is per token either way. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "formats/encoding.h"
#include "formats/keys.h"
#include "formats/tern_file.h"
#include "tern.h"

typedef struct {
    uint32_t vocab, d_model, n_layer, d_inner, d_state, d_conv, dt_rank;
} bench_shape;

static uint64_t bench_rng_next(uint64_t *s) {
    /* xorshift64*: fixed seed, the same model every run */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static float bench_uniform(uint64_t *s, float scale) {
    return scale * ((float)(bench_rng_next(s) >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
}

typedef enum { FILL_UNIFORM, FILL_ONE, FILL_A, FILL_DT_BIAS } bench_fill;

/* Adds a tensor of `enc` filled by `fill`; `scale` for uniform fills. */
static tern_status bench_add(tern_writer *w, const char *name, uint32_t ndim, uint64_t d0,
                             uint64_t d1, tern_encoding enc, bench_fill fill, float scale,
                             uint64_t *rng, tern_error *err) {
    tern_tensor_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.encoding = enc;
    desc.layout = TERN_LAYOUT_ROW_MAJOR;
    desc.ndim = ndim;
    desc.dims[0] = d0;
    desc.dims[1] = d1;
    const size_t n = (size_t)d0 * (ndim > 1 ? d1 : 1);
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", name);
    for (size_t i = 0; i < n; i++) {
        switch (fill) {
        case FILL_UNIFORM: buf[i] = bench_uniform(rng, scale); break;
        case FILL_ONE: buf[i] = 1.0f; break;
        case FILL_A: buf[i] = -(float)(i % d1 + 1); break; /* S4D-real init: -(1..N) */
        case FILL_DT_BIAS: {
            /* softplus^-1 of a dt in [1e-3, 1e-1], log-uniform, as HF initialises */
            const float dt = expf(logf(1e-3f) + (bench_uniform(rng, 0.5f) + 0.5f) * logf(100.0f));
            buf[i] = dt + logf(-expm1f(-dt));
            break;
        }
        }
    }
    if (enc == TERN_ENC_F16) {
        uint16_t *half = (uint16_t *)(void *)buf; /* narrowed in place, front to back */
        for (size_t i = 0; i < n; i++) half[i] = tern_f32_to_f16(buf[i]);
    }
    const void *planes[TERN_PLANE_COUNT] = {buf, NULL, NULL, NULL};
    tern_status st = tern_writer_add_tensor(w, name, &desc, planes, err);
    free(buf);
    return st;
}

static tern_status bench_write_model(const char *path, const bench_shape *m, tern_encoding enc,
                                     tern_error *err) {
    tern_writer *w;
    tern_status st = tern_writer_open(path, &w, err);
    if (st) return st;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    const uint64_t d = m->d_model, di = m->d_inner, ds = m->d_state;
    const char arch[] = "mamba", name[] = "bench-mamba-130m-random";
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) goto fail
    TRY(tern_writer_set_str(w, TERN_KEY_ARCH, arch, strlen(arch), err));
    TRY(tern_writer_set_str(w, TERN_KEY_NAME, name, strlen(name), err));
    TRY(tern_writer_set_u32(w, TERN_KEY_N_VOCAB, m->vocab, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_N_CTX, 1u << 20, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_D_MODEL, m->d_model, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_N_LAYER, m->n_layer, err));
    TRY(tern_writer_set_f32(w, TERN_KEY_NORM_EPS, 1e-5f, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_SSM_D_INNER, m->d_inner, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_SSM_D_STATE, m->d_state, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_SSM_D_CONV, m->d_conv, err));
    TRY(tern_writer_set_u32(w, TERN_KEY_SSM_DT_RANK, m->dt_rank, err));
    TRY(bench_add(w, TERN_T_TOKEN_EMBD, 2, m->vocab, d, enc, FILL_UNIFORM, 0.1f, &rng, err));
    TRY(bench_add(w, TERN_T_OUTPUT_NORM, 1, d, 0, TERN_ENC_F32, FILL_ONE, 0, &rng, err));
    for (uint32_t l = 0; l < m->n_layer; l++) {
        char t[64];
#define NAME(fmt) (snprintf(t, sizeof t, fmt, (int)l), t)
        TRY(bench_add(w, NAME(TERN_T_SSM_NORM), 1, d, 0, TERN_ENC_F32, FILL_ONE, 0, &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_IN), 2, 2 * di, d, enc, FILL_UNIFORM, 1.0f / sqrtf((float)d), &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_CONV), 2, di, m->d_conv, TERN_ENC_F32, FILL_UNIFORM, 0.5f, &rng, err));
        TRY(bench_add(w, NAME("blk.%d.ssm_conv1d.bias"), 1, di, 0, TERN_ENC_F32, FILL_UNIFORM, 0.1f, &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_X), 2, m->dt_rank + 2 * ds, di, enc, FILL_UNIFORM, 1.0f / sqrtf((float)di), &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_DT), 2, di, m->dt_rank, enc, FILL_UNIFORM, 1.0f / sqrtf((float)m->dt_rank), &rng, err));
        TRY(bench_add(w, NAME("blk.%d.ssm_dt.bias"), 1, di, 0, TERN_ENC_F32, FILL_DT_BIAS, 0, &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_A), 2, di, ds, TERN_ENC_F32, FILL_A, 0, &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_D), 1, di, 0, TERN_ENC_F32, FILL_ONE, 0, &rng, err));
        TRY(bench_add(w, NAME(TERN_T_SSM_OUT), 2, d, di, enc, FILL_UNIFORM, 1.0f / sqrtf((float)di), &rng, err));
#undef NAME
    }
#undef TRY
    return tern_writer_finish(w, err);
fail:
    tern_writer_abort(w);
    return st;
}

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds to feed tokens[0, n) in one call (chunked) or one token per call. */
static tern_status bench_feed(tern_model *model, uint32_t threads, uint32_t max_batch,
                              const int32_t *tokens, size_t n, int stepwise, float *logits,
                              double *seconds, tern_error *err) {
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_threads = threads;
    so.max_batch = max_batch;
    so.n_ctx = (uint32_t)n + 1;
    tern_session *s;
    tern_status st = tern_session_create(model, &so, &s, err);
    if (st) return st;
    const double t0 = bench_now();
    if (!stepwise) {
        st = tern_session_feed(s, tokens, n, logits, TERN_LOGITS_LAST, err);
    } else {
        for (size_t i = 0; i < n && st == TERN_OK; i++)
            st = tern_session_feed(s, tokens + i, 1, i + 1 == n ? logits : NULL,
                                   i + 1 == n ? TERN_LOGITS_LAST : TERN_LOGITS_NONE, err);
    }
    *seconds = bench_now() - t0;
    tern_session_destroy(s);
    return st;
}

static void usage(void) {
    fprintf(stderr, "usage: tern-bench-mamba [-n prompt_tokens] [-s stepwise_tokens] [-b max_batch]\n"
                    "                        [-t threads,...] [-w f32|f16] [-l layers]\n");
}

int main(int argc, char **argv) {
    bench_shape shape = {50280, 768, 24, 1536, 16, 4, 48};
    size_t n_prompt = 512, n_step = 128;
    uint32_t max_batch = 64;
    uint32_t threads[8] = {1, 2};
    size_t n_threads = 2;
    tern_encoding enc = TERN_ENC_F32;
    int opt;
    while ((opt = getopt(argc, argv, "n:s:b:t:w:l:h")) != -1) {
        switch (opt) {
        case 'n': n_prompt = (size_t)strtoul(optarg, NULL, 10); break;
        case 's': n_step = (size_t)strtoul(optarg, NULL, 10); break;
        case 'b': max_batch = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'l': shape.n_layer = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'w':
            if (strcmp(optarg, "f32") == 0) enc = TERN_ENC_F32;
            else if (strcmp(optarg, "f16") == 0) enc = TERN_ENC_F16;
            else {
                usage();
                return 2;
            }
            break;
        case 't': {
            n_threads = 0;
            for (char *p = optarg; *p && n_threads < 8;) {
                threads[n_threads++] = (uint32_t)strtoul(p, &p, 10);
                if (*p == ',') p++;
                else if (*p) break;
            }
            break;
        }
        default: usage(); return 2;
        }
    }
    if (n_prompt < 1 || max_batch < 1 || shape.n_layer < 1 || n_threads == 0) {
        usage();
        return 2;
    }
    if (n_step == 0 || n_step > n_prompt) n_step = n_prompt;

    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/tern-bench-mamba-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/model.tern", dir);
    tern_error err = {0};
    int rc = 1;
    tern_model *model = NULL;
    int32_t *tokens = malloc(n_prompt * sizeof *tokens);
    float *logits = malloc((size_t)shape.vocab * sizeof *logits);
    if (!tokens || !logits) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    const double tw = bench_now();
    if (bench_write_model(path, &shape, enc, &err) != TERN_OK) {
        fprintf(stderr, "writing the model: %s\n", err.message);
        goto done;
    }
    if (tern_model_open(path, NULL, &model, &err) != TERN_OK) {
        fprintf(stderr, "%s\n", err.message);
        goto done;
    }
    tern_model_info info;
    tern_model_get_info(model, &info);
    uint64_t rng = 42;
    for (size_t i = 0; i < n_prompt; i++) tokens[i] = (int32_t)(bench_rng_next(&rng) % shape.vocab);
    double sec;
    /* Warm-up: maps every weight page in before anything is timed. */
    if (bench_feed(model, threads[0], max_batch, tokens, 4, 0, logits, &sec, &err) != TERN_OK) {
        fprintf(stderr, "%s\n", err.message);
        goto done;
    }
    printf("model: mamba-130m shape, random %s weights, %u layers, d_model %u, d_inner %u, "
           "d_state %u, vocab %u (%.0f MiB, written in %.1f s); kernels: %s\n",
           tern_encoding_name(enc), shape.n_layer, shape.d_model, shape.d_inner, shape.d_state,
           shape.vocab, (double)info.weight_bytes / 1048576.0, bench_now() - tw,
           tern_isa_name(info.isa));
    printf("prompt: %zu tokens; chunked: max_batch %u; stepwise: one token per feed, "
           "timed over %zu tokens\n\n",
           n_prompt, max_batch, n_step);
    printf("| threads | chunked tok/s | stepwise tok/s | speedup |\n");
    printf("|--------:|--------------:|---------------:|--------:|\n");
    for (size_t i = 0; i < n_threads; i++) {
        double chunked, step;
        if (bench_feed(model, threads[i], max_batch, tokens, n_prompt, 0, logits, &chunked, &err) ||
            bench_feed(model, threads[i], max_batch, tokens, n_step, 1, logits, &step, &err)) {
            fprintf(stderr, "%s\n", err.message);
            goto done;
        }
        const double a = (double)n_prompt / chunked, b = (double)n_step / step;
        printf("| %7u | %13.1f | %14.1f | %6.2fx |\n", threads[i], a, b, a / b);
        fflush(stdout);
    }
    rc = 0;
done:
    tern_model_close(model);
    free(tokens);
    free(logits);
    unlink(path);
    rmdir(dir);
    return rc;
}
