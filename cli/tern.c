/* tern: the command-line tool. One sub-command per task; every failure prints
 * the library's message and exits non-zero. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "formats/npy.h"
#include "formats/tern_file.h"
#include "tern.h"

#define MAX_TOKENS (1u << 20)

static void usage(FILE *f) {
    fputs("usage: tern <command> [options]\n"
          "\n"
          "commands:\n"
          "  convert SRC -o OUT.tern [--weights f32|f16|bf16]\n"
          "      convert a checkpoint (Hugging Face folder) into a .tern file\n"
          "  info MODEL.tern [--verify]\n"
          "      architecture, hyper-parameters, tensor table, bytes per encoding\n"
          "  logits MODEL.tern --tokens 1,2,3 [--stepwise] -o OUT.npy\n"
          "      float32 [T, vocab] logits of every position (--stepwise: one token at a time)\n"
          "  generate MODEL.tern --tokens 1,2,3 -n N [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
          "      continue a token sequence; prints token ids, speed on standard error\n"
          "\n"
          "common options: -t THREADS, --isa ref|avx2|avx512|avx512vnni|neon|dotprod|i8mm\n"
          "                (or TERN_ISA in the environment), --ctx N\n",
          f);
}

static int fail(const char *what, const tern_error *err) {
    fprintf(stderr, "tern %s: %s\n", what, err->message[0] ? err->message : tern_status_string(err->status));
    return 1;
}

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "tern: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'tern help' for usage)\n");
    return 2;
}

/* ---- Options shared by the model-running commands ------------------------ */
typedef struct {
    const char *model;
    const char *out;
    const char *tokens;
    const char *isa;
    uint32_t threads;
    uint32_t n_ctx;
    uint32_t n_predict;
    int stepwise;
    int verify;
    tern_sampler_options sampling;
} run_args;

static int parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-') return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    *out = strtof(s, &end);
    return (errno || end == s || *end) ? -1 : 0;
}

static int parse_run_args(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    a->sampling.top_p = 1.0f;
    a->n_predict = 32;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                 \
    if (!val) return bad_usage("%s needs a value", arg);                                          \
    i++
        if (!strcmp(arg, "-o") || !strcmp(arg, "--output")) {
            NEED_VALUE;
            a->out = val;
        } else if (!strcmp(arg, "--tokens")) {
            NEED_VALUE;
            a->tokens = val;
        } else if (!strcmp(arg, "--isa")) {
            NEED_VALUE;
            a->isa = val;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            NEED_VALUE;
            if (parse_u32(val, &a->threads)) return bad_usage("bad thread count '%s'", val);
        } else if (!strcmp(arg, "--ctx")) {
            NEED_VALUE;
            if (parse_u32(val, &a->n_ctx)) return bad_usage("bad context size '%s'", val);
        } else if (!strcmp(arg, "-n")) {
            NEED_VALUE;
            if (parse_u32(val, &a->n_predict)) return bad_usage("bad token count '%s'", val);
        } else if (!strcmp(arg, "--temp")) {
            NEED_VALUE;
            if (parse_float(val, &a->sampling.temperature)) return bad_usage("bad temperature '%s'", val);
        } else if (!strcmp(arg, "--top-k")) {
            NEED_VALUE;
            if (parse_u32(val, &a->sampling.top_k)) return bad_usage("bad top-k '%s'", val);
        } else if (!strcmp(arg, "--top-p")) {
            NEED_VALUE;
            if (parse_float(val, &a->sampling.top_p)) return bad_usage("bad top-p '%s'", val);
        } else if (!strcmp(arg, "--seed")) {
            NEED_VALUE;
            char *end;
            errno = 0;
            a->sampling.seed = strtoull(val, &end, 10);
            if (errno || *end || end == val) return bad_usage("bad seed '%s'", val);
        } else if (!strcmp(arg, "--stepwise")) {
            a->stepwise = 1;
        } else if (!strcmp(arg, "--verify")) {
            a->verify = 1;
        } else if (arg[0] == '-' && arg[1]) {
            return bad_usage("unknown option '%s'", arg);
        } else if (!a->model) {
            a->model = arg;
        } else {
            return bad_usage("unexpected argument '%s'", arg);
        }
#undef NEED_VALUE
    }
    if (!a->model) return bad_usage("%s", "no model given");
    return 0;
}

/* "1,2,3" -> malloc'ed int32 array. */
static int parse_tokens(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, len = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    while (*s) {
        char *end;
        errno = 0;
        long t = strtol(s, &end, 10);
        if (end == s || errno || t < INT32_MIN || t > INT32_MAX || len >= MAX_TOKENS) {
            free(v);
            return -1;
        }
        if (len == cap) {
            int32_t *grown = realloc(v, (cap *= 2) * sizeof *v);
            if (!grown) {
                free(v);
                return -1;
            }
            v = grown;
        }
        v[len++] = (int32_t)t;
        s = end;
        if (*s == ',' || *s == ' ') s++;
        else if (*s) {
            free(v);
            return -1;
        }
    }
    *out = v;
    *n = len;
    return 0;
}

static int open_model(const run_args *a, tern_model **model, tern_session **session,
                      tern_model_info *info) {
    tern_error err = {0};
    tern_model_options mo;
    tern_model_options_default(&mo);
    mo.verify_checksums = a->verify;
    const char *isa = a->isa ? a->isa : getenv("TERN_ISA");
    if (isa && *isa && tern_isa_mask_parse(isa, &mo.isa_mask) != TERN_OK)
        return bad_usage("unknown instruction set '%s'", isa);
    if (tern_model_open(a->model, &mo, model, &err) != TERN_OK) return fail("open", &err);
    tern_model_get_info(*model, info);
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_threads = a->threads;
    so.n_ctx = a->n_ctx;
    if (tern_session_create(*model, &so, session, &err) != TERN_OK) {
        tern_model_close(*model);
        return fail("session", &err);
    }
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- convert -------------------------------------------------------------- */
static void progress_bar(void *user, uint64_t done, uint64_t total, const char *what) {
    (void)user;
    const int width = 30;
    int filled = total ? (int)(done * width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %-40.40s", filled, "##############################",
            width - filled, "", total ? (int)(done * 100 / total) : 100, what ? what : "");
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    tern_convert_options opts;
    tern_convert_options_default(&opts);
    for (int i = 0; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            if (!val) return bad_usage("%s needs a value", argv[i]);
            dst = argv[++i];
        } else if (!strcmp(argv[i], "--weights")) {
            if (!val) return bad_usage("%s needs a value", argv[i]);
            i++;
            if (!strcmp(val, "f32")) opts.weights = TERN_WEIGHTS_F32;
            else if (!strcmp(val, "f16")) opts.weights = TERN_WEIGHTS_F16;
            else if (!strcmp(val, "bf16")) opts.weights = TERN_WEIGHTS_BF16;
            else return bad_usage("unknown weight encoding '%s' (f32, f16, bf16)", val);
        } else if (!strcmp(argv[i], "--tokenizer")) {
            if (!val) return bad_usage("%s needs a value", argv[i]);
            opts.tokenizer_path = argv[++i];
        } else if (argv[i][0] == '-') {
            return bad_usage("unknown option '%s'", argv[i]);
        } else if (!src) {
            src = argv[i];
        } else {
            return bad_usage("unexpected argument '%s'", argv[i]);
        }
    }
    if (!src || !dst) return bad_usage("%s", "convert needs SRC and -o OUT.tern");
    if (isatty(STDERR_FILENO)) opts.progress = progress_bar;
    tern_error err = {0};
    double t0 = now_seconds();
    if (tern_convert(src, dst, &opts, &err) != TERN_OK) return fail("convert", &err);
    fprintf(stderr, "wrote %s in %.2f s\n", dst, now_seconds() - t0);
    return 0;
}

/* ---- info ----------------------------------------------------------------- */
static void print_meta_value(const tern_file *f, const char *key, tern_meta_type type, uint32_t count) {
    union {
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
    } v;
    const char *s;
    size_t len;
    switch (type) {
    case TERN_META_U32: tern_file_meta_u32(f, key, &v.u32, NULL); printf("%" PRIu32, v.u32); break;
    case TERN_META_I32: tern_file_meta_i32(f, key, &v.i32, NULL); printf("%" PRId32, v.i32); break;
    case TERN_META_U64: tern_file_meta_u64(f, key, &v.u64, NULL); printf("%" PRIu64, v.u64); break;
    case TERN_META_F32: tern_file_meta_f32(f, key, &v.f32, NULL); printf("%g", v.f32); break;
    case TERN_META_STRING:
        tern_file_meta_str(f, key, &s, &len, NULL);
        printf("\"%.*s\"", len > 60 ? 60 : (int)len, s);
        if (len > 60) printf("... (%zu bytes)", len);
        break;
    default: printf("array of %u", count); break;
    }
}

static int cmd_info(int argc, char **argv) {
    run_args a;
    int rc = parse_run_args(argc, argv, &a);
    if (rc) return rc;
    tern_file f;
    tern_error err = {0};
    if (tern_file_open(a.model, a.verify, &f, &err) != TERN_OK) return fail("info", &err);
    printf("file: %s\n", a.model);
    printf("format: .tern %u.%u, %" PRIu64 " bytes, %u tensors, %u metadata keys%s\n",
           f.header->version_major, f.header->version_minor, f.size, f.n_tensors, f.n_meta,
           a.verify ? ", all checksums verified" : "");
    printf("\nmetadata:\n");
    for (uint32_t i = 0; i < f.n_meta; i++) {
        const char *key;
        size_t key_len;
        tern_meta_type type;
        uint32_t count;
        tern_file_meta_at(&f, i, &key, &key_len, &type, &count);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)key_len, key);
        printf("  %-28s ", name);
        print_meta_value(&f, name, type, count);
        printf("\n");
    }
    uint64_t enc_bytes[TERN_ENC_COUNT_] = {0}, enc_elems[TERN_ENC_COUNT_] = {0};
    uint64_t total_bytes = 0, total_elems = 0;
    printf("\n  %-36s %-6s %-18s %12s %8s\n", "tensor", "enc", "shape", "bytes", "bits/w");
    for (uint32_t i = 0; i < f.n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(&f, i, &v);
        uint64_t bytes = 0, elems = tern_tensor_elements(&v.desc);
        for (int p = 0; p < TERN_PLANE_COUNT; p++) bytes += v.plane_sizes[p];
        printf("  %-36.*s %-6s ", (int)v.name_length, v.name, tern_encoding_name(v.desc.encoding));
        char shape[64];
        int n = 0;
        for (uint32_t j = 0; j < v.desc.ndim; j++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRIu64, j ? "x" : "", v.desc.dims[j]);
        printf("%-18s %12" PRIu64 " %8.3f", shape, bytes, elems ? 8.0 * bytes / elems : 0.0);
        if (v.desc.sparse_m) printf("  %u:%u sparse", v.desc.sparse_n, v.desc.sparse_m);
        if (v.desc.group_size) printf("  group %u", v.desc.group_size);
        printf("\n");
        if (v.desc.encoding < TERN_ENC_COUNT_) {
            enc_bytes[v.desc.encoding] += bytes;
            enc_elems[v.desc.encoding] += elems;
        }
        total_bytes += bytes;
        total_elems += elems;
    }
    printf("\nbytes per encoding:\n");
    for (int e = 0; e < TERN_ENC_COUNT_; e++) {
        if (!enc_elems[e]) continue;
        printf("  %-6s %14" PRIu64 " bytes %14" PRIu64 " values %8.3f bits/value\n",
               tern_encoding_name((tern_encoding)e), enc_bytes[e], enc_elems[e], 8.0 * enc_bytes[e] / enc_elems[e]);
    }
    printf("  total  %14" PRIu64 " bytes %14" PRIu64 " values (%.2f M parameters)\n", total_bytes,
           total_elems, total_elems / 1e6);
    tern_file_close(&f);
    return 0;
}

/* ---- logits --------------------------------------------------------------- */
static int cmd_logits(int argc, char **argv) {
    run_args a;
    int rc = parse_run_args(argc, argv, &a);
    if (rc) return rc;
    if (!a.tokens || !a.out) return bad_usage("%s", "logits needs --tokens and -o OUT.npy");
    int32_t *tokens;
    size_t n;
    if (parse_tokens(a.tokens, &tokens, &n) || n == 0) return bad_usage("bad token list '%s'", a.tokens);
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    if ((rc = open_model(&a, &model, &session, &info))) {
        free(tokens);
        return rc;
    }
    rc = 1;
    tern_error err = {0};
    float *logits = malloc(n * (size_t)info.n_vocab * sizeof(float));
    if (!logits) {
        fprintf(stderr, "tern logits: out of memory for %zu x %u logits\n", n, info.n_vocab);
        goto done;
    }
    if (a.stepwise) {
        for (size_t i = 0; i < n; i++) {
            if (tern_session_feed(session, tokens + i, 1, logits + i * info.n_vocab, TERN_LOGITS_LAST,
                                  &err) != TERN_OK) {
                rc = fail("logits", &err);
                goto done;
            }
        }
    } else if (tern_session_feed(session, tokens, n, logits, TERN_LOGITS_ALL, &err) != TERN_OK) {
        rc = fail("logits", &err);
        goto done;
    }
    uint64_t shape[2] = {n, info.n_vocab};
    if (tern_npy_write_f32(a.out, logits, 2, shape, &err) != TERN_OK) {
        rc = fail("logits", &err);
        goto done;
    }
    rc = 0;
done:
    free(logits);
    free(tokens);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}

/* ---- generate ------------------------------------------------------------- */
static int cmd_generate(int argc, char **argv) {
    run_args a;
    int rc = parse_run_args(argc, argv, &a);
    if (rc) return rc;
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    if (a.tokens && parse_tokens(a.tokens, &prompt, &n_prompt)) return bad_usage("bad token list '%s'", a.tokens);
    if ((rc = open_model(&a, &model, &session, &info))) {
        free(prompt);
        return rc;
    }
    rc = 1;
    tern_error err = {0};
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    void *scratch = malloc((size_t)info.n_vocab * 8);
    if (!logits || !scratch) {
        fprintf(stderr, "tern generate: out of memory\n");
        goto done;
    }
    if (n_prompt == 0) {
        if (info.bos_token < 0) {
            fprintf(stderr, "tern generate: no --tokens given and the model has no BOS token\n");
            goto done;
        }
        prompt = malloc(sizeof *prompt);
        if (!prompt) goto done;
        prompt[0] = info.bos_token;
        n_prompt = 1;
    }
    tern_sampler sampler;
    tern_sampler_init(&sampler, &a.sampling);
    double t0 = now_seconds();
    if (tern_session_feed(session, prompt, n_prompt, logits, TERN_LOGITS_LAST, &err) != TERN_OK) {
        rc = fail("generate", &err);
        goto done;
    }
    double t1 = now_seconds();
    uint32_t produced = 0;
    for (; produced < a.n_predict; produced++) {
        int32_t next = tern_sampler_sample(&sampler, logits, info.n_vocab, scratch);
        printf("%s%d", produced ? " " : "", next);
        fflush(stdout);
        if (next == info.eos_token) {
            produced++;
            break;
        }
        if (produced + 1 == a.n_predict) {
            produced++;
            break;
        }
        if (tern_session_feed(session, &next, 1, logits, TERN_LOGITS_LAST, &err) != TERN_OK) {
            printf("\n");
            rc = fail("generate", &err);
            goto done;
        }
    }
    double t2 = now_seconds();
    printf("\n");
    fprintf(stderr, "prompt: %zu tokens in %.3f s (%.2f tokens/s); generated: %u tokens in %.3f s (%.2f tokens/s); isa %s\n",
            n_prompt, t1 - t0, n_prompt / (t1 - t0), produced, t2 - t1,
            produced > 1 ? (produced - 1) / (t2 - t1) : 0.0, tern_isa_name(info.isa));
    rc = 0;
done:
    free(logits);
    free(scratch);
    free(prompt);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 2, argv + 2);
    return bad_usage("unknown command '%s'", cmd);
}
