/* Kernel benchmark: every kernel tier this CPU has (forced with masks through
 * tern_kernels_init), linear layers over real model shapes, plus XNNPACK's
 * fully-connected operators on the same shapes as a baseline.
 *
 *   tern-bench-kernels [--json] [--tiers ref,avx2,...] [--min-time S] [--no-xnnpack]
 *                      [--no-rows] [--quick]
 *
 * Shapes are rows x cols (output x input features) of SmolLM2-135M (576x576,
 * 1536x576, 576x1536, 49152x576) and TinyLlama-1.1B (2048x2048, 256x2048,
 * 5632x2048, 2048x5632), at m = 1 (decode, GEMV) and m = 64 (prefill). Weight
 * families: F16, Q8 g32 and Q4 g32 with float activations (linear[]), and Q8 /
 * Q4 g32 with int8 activations (linear_qa[], quantize_rows not included).
 * One thread. Latency is the median of the repetitions; GB/s counts the
 * weight bytes once per call; GOP/s is 2 m rows cols / time; "bw" is GB/s
 * over this machine's streaming read bandwidth, measured first by summing a
 * 1 GiB buffer (weights that fit in the caches can exceed 1). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xnnpack.h>

#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "tern.h"

typedef struct {
    const char *model;
    size_t rows, cols;
} bench_shape;

static const bench_shape bench_shapes[] = {
    {"smollm2", 576, 576},     {"smollm2", 1536, 576},   {"smollm2", 576, 1536},
    {"smollm2", 49152, 576},   {"tinyllama", 2048, 2048}, {"tinyllama", 256, 2048},
    {"tinyllama", 5632, 2048}, {"tinyllama", 2048, 5632},
};

typedef struct {
    int json;
    int xnnpack;
    int rows_kernels;
    double min_time;
    uint64_t tiers; /* bit per tern_isa */
    int first_row;  /* json: no comma before the first object */
} bench_opts;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define BENCH_MAX_REPS 64

/* Median seconds of fn(ctx): one warm-up call, then calls until min_time has
 * passed and at least 3 were made (one, without warm-up, when a call takes
 * longer than min_time). */
static double bench_time(void (*fn)(void *), void *ctx, double min_time) {
    double t[BENCH_MAX_REPS];
    double start = bench_now();
    fn(ctx);
    double first = bench_now() - start;
    if (first > min_time) return first;
    int n = 0;
    start = bench_now();
    while (n < BENCH_MAX_REPS && (n < 3 || bench_now() - start < min_time)) {
        const double t0 = bench_now();
        fn(ctx);
        t[n++] = bench_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[n / 2];
}

static uint64_t bench_rng(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static float bench_uniform(uint64_t *s) {
    return (float)(bench_rng(s) >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

static void *bench_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* ---- streaming read bandwidth ---- */

static double bench_read_bandwidth(double *checksum) {
    const size_t n = (size_t)1 << 27; /* 1 GiB of uint64 */
    uint64_t *buf = bench_alloc(n * sizeof *buf);
    if (!buf) return 0.0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0.0;
    uint64_t total = 0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = bench_now();
        uint64_t s[8] = {0};
        for (size_t i = 0; i < n; i += 8)
            for (int j = 0; j < 8; j++) s[j] += buf[i + (size_t)j];
        const double dt = bench_now() - t0;
        for (int j = 0; j < 8; j++) total += s[j];
        const double gbs = (double)(n * sizeof *buf) / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    *checksum = (double)total;
    free(buf);
    return best;
}

/* ---- weights ---- */

typedef struct {
    const char *family;
    tern_encoding enc;
    int qa; /* integer path */
} bench_family;

static const bench_family bench_families[] = {
    {"f16", TERN_ENC_F16, 0},     {"q8g32", TERN_ENC_Q8, 0},   {"q4g32", TERN_ENC_Q4, 0},
    {"q8g32-qa", TERN_ENC_Q8, 1}, {"q4g32-qa", TERN_ENC_Q4, 1},
};

static size_t bench_weight_bytes(tern_encoding enc, size_t rows, size_t cols) {
    switch (enc) {
    case TERN_ENC_F16: return rows * cols * 2;
    case TERN_ENC_Q8: return rows * cols + rows * cols / 32 * 2;
    case TERN_ENC_Q4: return rows * cols / 2 + rows * cols / 32 * 2;
    default: return rows * cols * 4;
    }
}

/* Random weights of enc (group size 32, symmetric); returns 0 on OOM. */
static int bench_make_weight(tern_weight *w, tern_encoding enc, size_t rows, size_t cols,
                             uint64_t *rng) {
    memset(w, 0, sizeof *w);
    w->encoding = enc;
    w->layout = TERN_LAYOUT_ROW_MAJOR;
    w->rows = rows;
    w->cols = cols;
    const size_t n = rows * cols;
    if (enc == TERN_ENC_F16) {
        uint16_t *v = bench_alloc(n * 2);
        if (!v) return 0;
        for (size_t i = 0; i < n; i++) v[i] = (uint16_t)(0x2000 + (bench_rng(rng) & 0x83ff));
        w->values = v;
        return 1;
    }
    const size_t vbytes = enc == TERN_ENC_Q8 ? n : n / 2;
    uint8_t *v = bench_alloc(vbytes);
    uint16_t *s = bench_alloc(n / 32 * 2);
    if (!v || !s) {
        free(v);
        free(s);
        return 0;
    }
    for (size_t i = 0; i < vbytes; i++) v[i] = (uint8_t)bench_rng(rng);
    for (size_t i = 0; i < n / 32; i++) s[i] = (uint16_t)(0x1c00 + (bench_rng(rng) & 0x3ff));
    w->values = v;
    w->scales = s;
    w->group_size = 32;
    return 1;
}

static void bench_free_weight(tern_weight *w) {
    free((void *)w->values);
    free((void *)w->scales);
}

/* ---- one linear call ---- */

typedef struct {
    const tern_kernels *k;
    const bench_family *fam;
    const tern_weight *w;
    size_t m;
    const float *x;
    const tern_qrows *xq;
    float *y;
} bench_linear_ctx;

static void bench_linear_run(void *p) {
    const bench_linear_ctx *c = p;
    if (c->fam->qa)
        c->k->linear_qa[c->fam->enc](c->m, 0, c->w->rows, c->xq, c->w, NULL, c->y, c->w->rows);
    else
        c->k->linear[c->fam->enc](c->m, 0, c->w->rows, c->x, c->w->cols, c->w, NULL, c->y,
                                  c->w->rows);
}

static void bench_print(bench_opts *o, const char *family, const char *tier,
                        const bench_shape *sh, size_t m, double sec, size_t wbytes, double bw,
                        double speedup) {
    const double gbs = (double)wbytes / sec * 1e-9;
    const double gops = 2.0 * (double)m * (double)sh->rows * (double)sh->cols / sec * 1e-9;
    if (o->json) {
        printf("%s\n  {\"family\": \"%s\", \"tier\": \"%s\", \"model\": \"%s\", \"rows\": %zu, "
               "\"cols\": %zu, \"m\": %zu, \"ms\": %.4f, \"gbs\": %.2f, \"gops\": %.2f, "
               "\"bw_fraction\": %.3f, \"speedup_vs_ref\": %.2f}",
               o->first_row ? "" : ",", family, tier, sh->model, sh->rows, sh->cols, m,
               sec * 1e3, gbs, gops, bw > 0 ? gbs / bw : 0.0, speedup);
        o->first_row = 0;
    } else {
        char sp[32] = "";
        if (speedup > 0) snprintf(sp, sizeof sp, "%.1fx", speedup);
        printf("| %-9s | %-10s | %-9s | %5zux%-5zu | %2zu | %9.4f | %7.2f | %7.2f | %5.2f | %7s |\n",
               family, tier, sh->model, sh->rows, sh->cols, m, sec * 1e3, gbs, gops,
               bw > 0 ? gbs / bw : 0.0, sp);
    }
    fflush(stdout);
}

/* ---- XNNPACK ---- */

typedef struct {
    xnn_operator_t op;
} bench_xnn_ctx;

static void bench_xnn_run(void *p) {
    const bench_xnn_ctx *c = p;
    xnn_run_operator(c->op, NULL);
}

static uint16_t bench_f32_to_f16(float f) {
    /* inputs are small normal numbers: truncating rounding is enough here */
    uint32_t b;
    memcpy(&b, &f, 4);
    const int e = (int)((b >> 23) & 0xff) - 127 + 15;
    if (e <= 0) return (uint16_t)((b >> 16) & 0x8000);
    return (uint16_t)(((b >> 16) & 0x8000) | (uint32_t)e << 10 | ((b >> 13) & 0x3ff));
}

static void bench_xnnpack(bench_opts *o, const bench_shape *sh, size_t m, double bw,
                          uint64_t *rng) {
    const size_t n = sh->rows * sh->cols;
    float *wf = bench_alloc(n * 4);
    float *x = bench_alloc(m * sh->cols * 4);
    float *y = bench_alloc(m * sh->rows * 4);
    uint16_t *wh = bench_alloc(n * 2), *xh = bench_alloc(m * sh->cols * 2);
    uint16_t *yh = bench_alloc(m * sh->rows * 2);
    int8_t *wq = bench_alloc(n), *xq = bench_alloc(m * sh->cols), *yq = bench_alloc(m * sh->rows);
    if (!wf || !x || !y || !wh || !xh || !yh || !wq || !xq || !yq) goto done;
    for (size_t i = 0; i < n; i++) {
        wf[i] = bench_uniform(rng) * 0.05f;
        wh[i] = bench_f32_to_f16(wf[i]);
        wq[i] = (int8_t)(bench_rng(rng) % 255 - 127);
    }
    for (size_t i = 0; i < m * sh->cols; i++) {
        x[i] = bench_uniform(rng);
        xh[i] = bench_f32_to_f16(x[i]);
        xq[i] = (int8_t)(bench_rng(rng) % 255 - 127);
    }
    for (int kind = 0; kind < 3; kind++) {
        xnn_operator_t op = NULL;
        enum xnn_status st;
        const char *name;
        size_t wbytes;
        if (kind == 0) {
            name = "xnn-f32";
            wbytes = n * 4;
            st = xnn_create_fully_connected_nc_f32(sh->cols, sh->rows, sh->cols, sh->rows, wf,
                                                   NULL, -INFINITY, INFINITY, 0, &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_f32(op, m, x, y, NULL);
        } else if (kind == 1) {
            name = "xnn-f16";
            wbytes = n * 2;
            st = xnn_create_fully_connected_nc_f16(sh->cols, sh->rows, sh->cols, sh->rows, wh,
                                                   NULL, -INFINITY, INFINITY, 0, &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_f16(op, m, xh, yh, NULL);
        } else {
            name = "xnn-qs8";
            wbytes = n;
            st = xnn_create_fully_connected_nc_qs8(sh->cols, sh->rows, sh->cols, sh->rows, 0,
                                                   0.02f, 0.01f, wq, NULL, 0, 1.0f, -127, 127, 0,
                                                   &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_qs8(op, m, xq, yq, NULL);
        }
        if (st != xnn_status_success) {
            if (!o->json)
                printf("| %-9s | %-10s | %-9s | %5zux%-5zu | %2zu | n/a (xnn status %d) |\n",
                       name, "xnnpack", sh->model, sh->rows, sh->cols, m, (int)st);
        } else {
            bench_xnn_ctx c = {op};
            const double sec = bench_time(bench_xnn_run, &c, o->min_time);
            bench_print(o, name, "xnnpack", sh, m, sec, wbytes, bw, 0.0);
        }
        if (op) xnn_delete_operator(op);
    }
done:
    free(wf), free(x), free(y), free(wh), free(xh), free(yh), free(wq), free(xq), free(yq);
}

/* ---- row kernels ---- */

typedef struct {
    const tern_kernels *k;
    int which;
    size_t n;
    float *a, *b, *c;
    tern_attention_args att;
} bench_rows_ctx;

static void bench_rows_run(void *p) {
    bench_rows_ctx *c = p;
    switch (c->which) {
    case 0: c->k->rmsnorm(c->n, c->a, c->b, 1e-5f, c->c); break;
    case 1: memcpy(c->c, c->a, c->n * 4); c->k->softmax(c->n, c->c); break;
    case 2: c->k->swiglu(c->n, c->a, c->b, c->c); break;
    case 3: c->k->rope_half(c->n / 64, 64, c->c, c->a, c->b); break;
    case 4: c->k->attention(&c->att, 0, c->att.n_head); break;
    }
}

static void bench_rows(bench_opts *o, const tern_kernels *k, const char *tier, uint64_t *rng) {
    const size_t n = 32000, kv = 1024, d = 64, heads = 32, kv_heads = 4;
    float *a = bench_alloc(n * 4), *b = bench_alloc(n * 4), *c = bench_alloc(n * 4);
    float *kk = bench_alloc(kv_heads * kv * d * 4), *vv = bench_alloc(kv_heads * kv * d * 4);
    float *q = bench_alloc(heads * d * 4), *out = bench_alloc(heads * d * 4);
    if (!a || !b || !c || !kk || !vv || !q || !out) goto done;
    for (size_t i = 0; i < n; i++) a[i] = bench_uniform(rng) * 4, b[i] = bench_uniform(rng), c[i] = a[i];
    for (size_t i = 0; i < kv_heads * kv * d; i++) kk[i] = bench_uniform(rng), vv[i] = bench_uniform(rng);
    for (size_t i = 0; i < heads * d; i++) q[i] = bench_uniform(rng);
    static const char *const names[] = {"rmsnorm", "softmax", "swiglu", "rope_half", "attention"};
    static const size_t sizes[] = {2048, 32000, 5632, 2048, 0};
    for (int which = 0; which < 5; which++) {
        bench_rows_ctx ctx = {k, which, sizes[which], a, b, c, {0}};
        ctx.att = (tern_attention_args){d, heads, kv_heads, kv, kv * d, 0.125f, q, kk, vv, out};
        const double sec = bench_time(bench_rows_run, &ctx, o->min_time * 0.5);
        if (o->json) {
            printf("%s\n  {\"family\": \"%s\", \"tier\": \"%s\", \"n\": %zu, \"us\": %.3f}",
                   o->first_row ? "" : ",", names[which], tier,
                   which == 4 ? (size_t)(heads * kv) : sizes[which], sec * 1e6);
            o->first_row = 0;
        } else {
            printf("| %-9s | %-10s | n=%-6zu | %10.3f us |\n", names[which], tier,
                   which == 4 ? (size_t)kv : sizes[which], sec * 1e6);
        }
    }
done:
    free(a), free(b), free(c), free(kk), free(vv), free(q), free(out);
}

/* ---- main ---- */

static int bench_parse_tiers(const char *list, uint64_t *tiers) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    *tiers = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        uint64_t mask;
        if (tern_isa_mask_parse(tok, &mask) != TERN_OK) {
            fprintf(stderr, "unknown tier '%s'\n", tok);
            return 0;
        }
        *tiers |= TERN_ISA_MASK(tern_isa_best(mask));
    }
    return 1;
}

int main(int argc, char **argv) {
    bench_opts o = {0, 1, 1, 0.3, TERN_ISA_MASK_ALL, 1};
    size_t n_shapes = sizeof bench_shapes / sizeof bench_shapes[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--no-xnnpack")) o.xnnpack = 0;
        else if (!strcmp(argv[i], "--no-rows")) o.rows_kernels = 0;
        else if (!strcmp(argv[i], "--quick")) n_shapes = 2, o.min_time = 0.05;
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) o.min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--tiers") && i + 1 < argc) {
            if (!bench_parse_tiers(argv[++i], &o.tiers)) return 2;
        } else {
            fprintf(stderr, "usage: %s [--json] [--tiers ref,avx2,...] [--min-time S] "
                            "[--no-xnnpack] [--no-rows] [--quick]\n", argv[0]);
            return 2;
        }
    }

    /* tiers this CPU has, each forced by its own mask */
    tern_isa tiers[8];
    size_t n_tiers = 0;
    for (int isa = 0; isa < 64 && n_tiers < 8; isa++) {
        uint64_t mask;
        if (!strcmp(tern_isa_name((tern_isa)isa), "unknown")) continue;
        if (tern_isa_mask_parse(tern_isa_name((tern_isa)isa), &mask) != TERN_OK) continue;
        if (tern_isa_best(mask) != (tern_isa)isa || !(o.tiers & TERN_ISA_MASK(isa))) continue;
        tiers[n_tiers++] = (tern_isa)isa;
    }

    double checksum = 0.0;
    const double bw = bench_read_bandwidth(&checksum);
    if (o.json) {
        printf("{\"read_bandwidth_gbs\": %.2f, \"threads\": 1, \"results\": [", bw);
    } else {
        printf("streaming read bandwidth (1 GiB sum, 1 thread): %.2f GB/s (checksum %.0f)\n\n",
               bw, checksum);
        printf("| family    | tier       | model     | rows x cols | m  | ms        | GB/s    "
               "| GOP/s   | bw    | vs ref  |\n");
        printf("|-----------|------------|-----------|-------------|----|-----------|---------"
               "|---------|-------|---------|\n");
    }

    const int xnn_ok = o.xnnpack && xnn_initialize(NULL) == xnn_status_success;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (size_t si = 0; si < n_shapes; si++) {
        const bench_shape *sh = &bench_shapes[si];
        for (size_t m = 1; m <= 64; m *= 64) {
            float *x = bench_alloc(m * sh->cols * 4), *y = bench_alloc(m * sh->rows * 4);
            const size_t nb = sh->cols / 32;
            int8_t *q = bench_alloc(m * sh->cols);
            float *d = bench_alloc(m * nb * 4);
            int32_t *s = bench_alloc(m * nb * 4);
            if (!x || !y || !q || !d || !s) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            for (size_t i = 0; i < m * sh->cols; i++) x[i] = bench_uniform(&rng);
            for (size_t f = 0; f < sizeof bench_families / sizeof bench_families[0]; f++) {
                const bench_family *fam = &bench_families[f];
                tern_weight w;
                if (!bench_make_weight(&w, fam->enc, sh->rows, sh->cols, &rng)) {
                    fprintf(stderr, "out of memory\n");
                    return 1;
                }
                double ref_sec = 0.0;
                for (size_t ti = 0; ti < n_tiers; ti++) {
                    uint64_t mask;
                    tern_isa_mask_parse(tern_isa_name(tiers[ti]), &mask);
                    tern_kernels k;
                    tern_kernels_init(&k, mask);
                    /* a tier without its own entry for this family repeats a lower one */
                    if (ti > 0) {
                        tern_kernels lower;
                        tern_kernels_init(&lower, mask & ~TERN_ISA_MASK(tiers[ti]));
                        const int same = fam->qa ? k.linear_qa[fam->enc] == lower.linear_qa[fam->enc]
                                                 : k.linear[fam->enc] == lower.linear[fam->enc];
                        if (same) continue;
                    }
                    k.quantize_rows(m, sh->cols, x, sh->cols, q, d, s);
                    const tern_qrows xq = {m, sh->cols, q, d, s};
                    bench_linear_ctx c = {&k, fam, &w, m, x, &xq, y};
                    const double sec = bench_time(bench_linear_run, &c, o.min_time);
                    if (tiers[ti] == TERN_ISA_REF) ref_sec = sec;
                    bench_print(&o, fam->family, tern_isa_name(tiers[ti]), sh, m, sec,
                                bench_weight_bytes(fam->enc, sh->rows, sh->cols), bw,
                                ref_sec > 0 ? ref_sec / sec : 0.0);
                }
                bench_free_weight(&w);
            }
            if (xnn_ok) bench_xnnpack(&o, sh, m, bw, &rng);
            free(x), free(y), free(q), free(d), free(s);
        }
    }
    if (o.rows_kernels) {
        if (!o.json) {
            printf("\n| kernel    | tier       | size     | median        |\n");
            printf("|-----------|------------|----------|---------------|\n");
        }
        for (size_t ti = 0; ti < n_tiers; ti++) {
            uint64_t mask;
            tern_isa_mask_parse(tern_isa_name(tiers[ti]), &mask);
            tern_kernels k, lower;
            tern_kernels_init(&k, mask);
            tern_kernels_init(&lower, mask & ~TERN_ISA_MASK(tiers[ti]));
            if (ti > 0 && k.rmsnorm == lower.rmsnorm && k.attention == lower.attention) continue;
            bench_rows(&o, &k, tern_isa_name(tiers[ti]), &rng);
        }
    }
    if (o.json) printf("\n]}\n");
    return 0;
}
