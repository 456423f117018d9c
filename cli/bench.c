/* `tern bench`: end-to-end speed of a model, as llama.cpp's llama-bench
 * measures it. ppN feeds N tokens as one batch into an empty session (the
 * prefill path); tgN feeds N tokens one at a time, each with its logits (the
 * decode path). Token ids are random: speed does not depend on the text.
 * --board NAME adds the decode roofline of a target board (boards/NAME/
 * profile.txt): the weight bytes one token reads over the board's sustained
 * memory bandwidth, the most tokens/s decode can reach there. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "formats/keys.h"
#include "formats/tern_file.h"
#include "kernels/cpu_features.h"

#define BENCH_MAX_THREADS 64 /* entries in one -t list */
#define BENCH_MAX_REPS 10000

typedef struct bench_args {
    const char *model;
    const char *isa;
    const char *board;
    uint32_t n_prompt;
    uint32_t n_gen;
    uint32_t reps;
    uint32_t threads[BENCH_MAX_THREADS];
    size_t n_threads;
    int json;
    uint8_t kv_cache; /* --kv f32|f16|q8 */
} bench_args;

/* One test's result: tokens/s of each repetition, summarised. */
typedef struct bench_result {
    char test[24];
    uint32_t threads;
    double median, stddev, min, max;
} bench_result;

/* "1,2,4" -> thread counts (each >= 1); 0 or an exit code. */
static int parse_thread_list(const char *s, bench_args *a) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return tern_cli_bad_usage("thread list '%s' is too long", s);
    strcpy(buf, s);
    a->n_threads = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        uint32_t t;
        if (tern_cli_parse_u32(p, &t) || t == 0 || t > 1024)
            return tern_cli_bad_usage("bad thread list '%s' (counts from 1 to 1024, comma-separated)", s);
        if (a->n_threads == BENCH_MAX_THREADS) return tern_cli_bad_usage("too many thread counts in '%s'", s);
        a->threads[a->n_threads++] = t;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

static int parse_bench_args(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    a->n_prompt = 128;
    a->n_gen = 64;
    a->reps = 5;
    a->threads[0] = 1;
    a->threads[1] = 2;
    a->n_threads = 2;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (!strcmp(arg, "-p") || !strcmp(arg, "-n") || !strcmp(arg, "-r") || !strcmp(arg, "--reps") ||
            !strcmp(arg, "-t") || !strcmp(arg, "--threads") || !strcmp(arg, "--isa") || !strcmp(arg, "--board") || !strcmp(arg, "--kv")) {
            if (!val) return tern_cli_bad_usage("%s needs a value", arg);
            i++;
        }
        if (!strcmp(arg, "-p")) {
            if (tern_cli_parse_u32(val, &a->n_prompt) || a->n_prompt > MAX_TOKENS)
                return tern_cli_bad_usage("bad prompt length '%s'", val);
        } else if (!strcmp(arg, "-n")) {
            if (tern_cli_parse_u32(val, &a->n_gen) || a->n_gen > MAX_TOKENS)
                return tern_cli_bad_usage("bad generation length '%s'", val);
        } else if (!strcmp(arg, "-r") || !strcmp(arg, "--reps")) {
            if (tern_cli_parse_u32(val, &a->reps) || a->reps == 0 || a->reps > BENCH_MAX_REPS)
                return tern_cli_bad_usage("bad repetition count '%s' (1 to 10000)", val);
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if ((rc = parse_thread_list(val, a))) return rc;
        } else if (!strcmp(arg, "--isa")) {
            a->isa = val;
        } else if (!strcmp(arg, "--board")) {
            a->board = val;
        } else if (!strcmp(arg, "--kv")) {
            if (tern_cli_parse_kv(val, &a->kv_cache))
                return tern_cli_bad_usage("unknown KV cache type '%s' (f32, f16, q8)", val);
        } else if (!strcmp(arg, "--json")) {
            a->json = 1;
        } else if (arg[0] == '-' && arg[1]) {
            return tern_cli_bad_usage("unknown option '%s'", arg);
        } else if (!a->model) {
            a->model = arg;
        } else {
            return tern_cli_bad_usage("unexpected argument '%s'", arg);
        }
    }
    if (!a->model) return tern_cli_bad_usage("%s", "bench needs a MODEL.tern");
    if (a->n_prompt == 0 && a->n_gen == 0) return tern_cli_bad_usage("%s", "-p 0 and -n 0 leave nothing to measure");
    return 0;
}

/* Bytes of weights one decode step reads: every tensor, except that the token
 * embedding is looked up one row per token. A tied output layer (no
 * output.weight) is the embedding read whole as well. */
static int per_token_weight_bytes(const char *path, uint64_t *out) {
    tern_file f;
    tern_error err = {0};
    if (tern_file_open(path, 0, &f, &err) != TERN_OK) return tern_cli_fail("bench", &err);
    uint64_t total = 0, embd_bytes = 0, embd_rows = 0;
    int has_output = 0;
    for (uint32_t i = 0; i < f.n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(&f, i, &v);
        uint64_t bytes = 0;
        for (int p = 0; p < TERN_PLANE_COUNT; p++) bytes += v.plane_sizes[p];
        const size_t embd_len = strlen(TERN_T_TOKEN_EMBD), out_len = strlen(TERN_T_OUTPUT);
        if (v.name_length == embd_len && !memcmp(v.name, TERN_T_TOKEN_EMBD, embd_len)) {
            embd_bytes = bytes;
            embd_rows = v.desc.ndim ? v.desc.dims[0] : 0;
            continue;
        }
        if (v.name_length == out_len && !memcmp(v.name, TERN_T_OUTPUT, out_len)) has_output = 1;
        total += bytes;
    }
    tern_file_close(&f);
    if (embd_rows) total += embd_bytes / embd_rows;
    if (embd_rows && !has_output) total += embd_bytes;
    *out = total;
    return 0;
}

/* The decode roofline on a board: with 1 thread, and with its default thread
 * count (the performance cores, kernels/dispatch.c). */
typedef struct bench_roofline {
    tern_board board;
    tern_isa isa;        /* the tier tern would pick there */
    uint32_t threads;    /* tern_default_threads there */
    double gbs_1t, gbs;  /* sustained bandwidth, 1 thread and `threads` */
    double tps_1t, tps;  /* bytes per token / bandwidth */
} bench_roofline;

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* NAME with a '/' is a profile file or a board folder; a bare NAME is looked
 * up as NAME/profile.txt in $TERN_BOARDS_DIR, ./boards, then beside the
 * program (../share/tern/boards installed, ../../boards in a build tree). */
static int find_board_profile(const char *name, char *path, size_t cap) {
    if (strchr(name, '/')) {
        if (is_dir(name)) snprintf(path, cap, "%s/profile.txt", name);
        else snprintf(path, cap, "%s", name);
        return 0;
    }
    char exe_dir[4096] = "";
    const ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    if (n > 0) {
        exe_dir[n] = '\0';
        char *slash = strrchr(exe_dir, '/');
        if (slash) *slash = '\0';
    }
    const char *env = getenv("TERN_BOARDS_DIR");
    const char *roots[4] = {env && *env ? env : NULL, "boards", NULL, NULL};
    char installed[4200], build_tree[4200];
    if (exe_dir[0]) {
        snprintf(installed, sizeof installed, "%s/../share/tern/boards", exe_dir);
        snprintf(build_tree, sizeof build_tree, "%s/../../boards", exe_dir);
        roots[2] = installed;
        roots[3] = build_tree;
    }
    for (size_t i = 0; i < 4; i++) {
        if (!roots[i]) continue;
        if (snprintf(path, cap, "%s/%s/profile.txt", roots[i], name) < (int)cap && is_file(path)) return 0;
    }
    fprintf(stderr, "tern bench: no board '%s' (looked for %s/profile.txt in $TERN_BOARDS_DIR, ./boards and "
            "beside the program; a path to a profile works too)\n", name, name);
    return 1;
}

static int board_roofline(const char *name, uint64_t per_token_bytes, bench_roofline *r) {
    char path[4400];
    if (find_board_profile(name, path, sizeof path)) return 1;
    tern_error err = {0};
    if (tern_board_load(path, &r->board, &err) != TERN_OK) return tern_cli_fail("bench", &err);
    r->isa = tern_isa_select(&r->board.cpu, TERN_ISA_MASK_ALL);
    r->threads = tern_default_threads(&r->board.cpu);
    r->gbs_1t = tern_board_bandwidth_gbs(&r->board, 1);
    r->gbs = tern_board_bandwidth_gbs(&r->board, r->threads);
    r->tps_1t = r->gbs_1t * 1e9 / (double)(per_token_bytes ? per_token_bytes : 1);
    r->tps = r->gbs * 1e9 / (double)(per_token_bytes ? per_token_bytes : 1);
    return 0;
}

/* xorshift64*: the benchmark's token ids, the same on every run. */
static uint32_t next_token(uint64_t *state, uint32_t n_vocab) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)(((x * UINT64_C(2685821657736338717)) >> 32) % n_vocab);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(double *rates, uint32_t n, bench_result *r) {
    double mean = 0, var = 0;
    for (uint32_t i = 0; i < n; i++) mean += rates[i];
    mean /= n;
    for (uint32_t i = 0; i < n; i++) var += (rates[i] - mean) * (rates[i] - mean);
    r->stddev = n > 1 ? sqrt(var / (n - 1)) : 0.0;
    qsort(rates, n, sizeof *rates, cmp_double);
    r->min = rates[0];
    r->max = rates[n - 1];
    r->median = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
}

/* One prefill of `n` tokens from an empty session; its tokens/s. */
static tern_status run_pp(tern_session *s, const int32_t *tokens, uint32_t n, float *logits,
                          double *rate, tern_error *err) {
    tern_status st = tern_session_truncate(s, 0, err);
    if (st != TERN_OK) return st;
    const double t0 = tern_cli_now_seconds();
    st = tern_session_feed(s, tokens, n, logits, TERN_LOGITS_LAST, err);
    const double dt = tern_cli_now_seconds() - t0;
    *rate = n / (dt > 0 ? dt : 1e-9);
    return st;
}

/* One start token (not timed), then `n` single-token steps; their tokens/s. */
static tern_status run_tg(tern_session *s, const int32_t *tokens, uint32_t n, float *logits,
                          double *rate, tern_error *err) {
    tern_status st = tern_session_truncate(s, 0, err);
    if (st == TERN_OK) st = tern_session_feed(s, tokens, 1, logits, TERN_LOGITS_LAST, err);
    if (st != TERN_OK) return st;
    const double t0 = tern_cli_now_seconds();
    for (uint32_t i = 0; i < n && st == TERN_OK; i++)
        st = tern_session_feed(s, tokens + 1 + i, 1, logits, TERN_LOGITS_LAST, err);
    const double dt = tern_cli_now_seconds() - t0;
    *rate = n / (dt > 0 ? dt : 1e-9);
    return st;
}

typedef tern_status (*bench_fn)(tern_session *, const int32_t *, uint32_t, float *, double *, tern_error *);

/* One warm-up, then `reps` timed runs of fn. */
static int run_test(tern_session *s, bench_fn fn, const int32_t *tokens, uint32_t n, uint32_t reps,
                    float *logits, double *rates, bench_result *r) {
    tern_error err = {0};
    double warm;
    if (fn(s, tokens, n, logits, &warm, &err) != TERN_OK) return tern_cli_fail("bench", &err);
    for (uint32_t i = 0; i < reps; i++)
        if (fn(s, tokens, n, logits, &rates[i], &err) != TERN_OK) return tern_cli_fail("bench", &err);
    summarise(rates, reps, r);
    return 0;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_results(const bench_args *a, const tern_model_info *info, const char *name,
                          uint64_t per_token_bytes, const bench_roofline *roof, const bench_result *res,
                          size_t n_res) {
    const char *isa = tern_isa_name(info->isa);
    if (a->json) {
        printf("[\n");
        for (size_t i = 0; i < n_res; i++) {
            printf("  {\"model\": ");
            print_json_string(name);
            printf(", \"isa\": ");
            print_json_string(isa);
            printf(", \"test\": \"%s\", \"threads\": %u, \"reps\": %u, \"tokens_per_s\": %.4f, "
                   "\"stddev\": %.4f, \"min\": %.4f, \"max\": %.4f, \"weight_bytes\": %llu, "
                   "\"model_bytes\": %llu, \"n_params\": %llu",
                   res[i].test, res[i].threads, a->reps, res[i].median, res[i].stddev, res[i].min, res[i].max,
                   (unsigned long long)per_token_bytes, (unsigned long long)info->weight_bytes,
                   (unsigned long long)info->n_params);
            if (roof) {
                printf(", \"board\": ");
                print_json_string(roof->board.name);
                printf(", \"board_isa\": \"%s\", \"board_threads\": %u, \"board_gbs_1t\": %.4f, "
                       "\"board_gbs\": %.4f, \"roofline_tokens_per_s_1t\": %.4f, \"roofline_tokens_per_s\": %.4f",
                       tern_isa_name(roof->isa), roof->threads, roof->gbs_1t, roof->gbs, roof->tps_1t, roof->tps);
            }
            printf("}%s\n", i + 1 < n_res ? "," : "");
        }
        printf("]\n");
        return;
    }
    /* The model column fits the name, within reason. */
    int w = (int)strlen(name);
    w = w < 5 ? 5 : w > 48 ? 48 : w;
    static const char dashes[] = "------------------------------------------------";
    printf("| %-*s | %10s | %8s | %-10s | %7s | %6s | %21s | %9s | %9s |\n", w, "model", "size", "params", "isa",
           "threads", "test", "t/s (median ± sd)", "min", "max");
    printf("| %.*s | %.10s | %.8s | %.10s | %.7s | %.6s | %.20s | %.9s | %.9s |\n", w, dashes,
           "------------------------------", "------------------------------",
           "------------------------------", "------------------------------", "------------------------------",
           "------------------------------", "------------------------------", "------------------------------");
    char size[32], params[32], rate[48];
    snprintf(size, sizeof size, "%.2f MiB", info->weight_bytes / (1024.0 * 1024.0));
    snprintf(params, sizeof params, "%.2f M", info->n_params / 1e6);
    for (size_t i = 0; i < n_res; i++) {
        snprintf(rate, sizeof rate, "%.2f ± %.2f", res[i].median, res[i].stddev);
        /* "±" is two bytes but one column: pad by one more. */
        printf("| %-*.*s | %10s | %8s | %-10s | %7u | %6s | %21s | %9.2f | %9.2f |\n", w, w, name, size, params, isa,
               res[i].threads, res[i].test, rate, res[i].min, res[i].max);
    }
    printf("\nweights read per generated token: %.2f MiB, %u repetitions after one warm-up\n",
           per_token_bytes / (1024.0 * 1024.0), a->reps);
    if (roof) {
        const tern_board *b = &roof->board;
        printf("decode roofline on %s (%s, %s, tier %s): %.2f tok/s with 1 thread (%.2f GB/s), "
               "%.2f tok/s with %u threads (%.2f GB/s); bandwidths from boards/%s/profile.txt\n",
               b->name, b->soc, b->mem_type[0] ? b->mem_type : "memory", tern_isa_name(roof->isa), roof->tps_1t,
               roof->gbs_1t, roof->tps, roof->threads, roof->gbs, b->name);
    }
}

int tern_cli_bench(int argc, char **argv) {
    bench_args a;
    int rc = parse_bench_args(argc, argv, &a);
    if (rc) return rc;

    tern_error err = {0};
    tern_model_options mo;
    tern_model_options_default(&mo);
    const char *isa = a.isa ? a.isa : getenv("TERN_ISA");
    if (isa && *isa && tern_isa_mask_parse(isa, &mo.isa_mask) != TERN_OK)
        return tern_cli_bad_usage("unknown instruction set '%s'", isa);
    tern_model *model = NULL;
    if (tern_model_open(a.model, &mo, &model, &err) != TERN_OK) return tern_cli_fail("bench", &err);
    tern_model_info info;
    tern_model_get_info(model, &info);
    tern_image_config ic;
    if (tern_model_image_config(model, &ic) == TERN_OK) {
        fprintf(stderr, "tern bench: %s is a %s model: it takes images, not tokens, so it has no pp/tg tests\n",
                a.model, info.arch_name);
        tern_model_close(model);
        return 1;
    }
    const char *name = info.name && *info.name ? info.name : a.model;
    if (!(info.name && *info.name)) {
        const char *slash = strrchr(a.model, '/');
        if (slash && slash[1]) name = slash + 1;
    }

    uint64_t per_token_bytes = 0;
    int32_t *tokens = NULL;
    float *logits = NULL;
    double *rates = NULL;
    bench_result res[2 * BENCH_MAX_THREADS];
    size_t n_res = 0;
    if ((rc = per_token_weight_bytes(a.model, &per_token_bytes))) goto done;
    bench_roofline roof;
    if (a.board && (rc = board_roofline(a.board, per_token_bytes, &roof))) goto done;

    /* tg uses tokens[0..n_gen], pp tokens[0..n_prompt). */
    const size_t n_tokens = (a.n_prompt > a.n_gen + 1 ? a.n_prompt : a.n_gen + 1);
    tokens = malloc(n_tokens * sizeof *tokens);
    logits = malloc((size_t)info.n_vocab * sizeof *logits);
    rates = malloc(a.reps * sizeof *rates);
    if (!tokens || !logits || !rates || info.n_vocab == 0) {
        fprintf(stderr, "tern bench: out of memory\n");
        rc = 1;
        goto done;
    }
    uint64_t rng = UINT64_C(0x9E3779B97F4A7C15);
    for (size_t i = 0; i < n_tokens; i++) tokens[i] = (int32_t)next_token(&rng, info.n_vocab);

    for (size_t t = 0; t < a.n_threads && !rc; t++) {
        tern_session_options so;
        tern_session_options_default(&so);
        so.n_threads = a.threads[t];
        so.n_ctx = a.n_prompt + a.n_gen + 1;
        so.kv_cache = a.kv_cache;
        tern_session *s = NULL;
        if (tern_session_create(model, &so, &s, &err) != TERN_OK) {
            rc = tern_cli_fail("bench", &err);
            break;
        }
        if (a.n_prompt) {
            bench_result *r = &res[n_res++];
            snprintf(r->test, sizeof r->test, "pp%u", a.n_prompt);
            r->threads = a.threads[t];
            rc = run_test(s, run_pp, tokens, a.n_prompt, a.reps, logits, rates, r);
        }
        if (a.n_gen && !rc) {
            bench_result *r = &res[n_res++];
            snprintf(r->test, sizeof r->test, "tg%u", a.n_gen);
            r->threads = a.threads[t];
            rc = run_test(s, run_tg, tokens, a.n_gen, a.reps, logits, rates, r);
        }
        tern_session_destroy(s);
    }
    if (!rc) print_results(&a, &info, name, per_token_bytes, a.board ? &roof : NULL, res, n_res);

done:
    free(tokens);
    free(logits);
    free(rates);
    tern_model_close(model);
    return rc;
}
