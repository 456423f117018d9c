/* Shared pieces of the tern command's sub-commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

int tern_cli_fail(const char *what, const tern_error *err) {
    fprintf(stderr, "tern %s: %s\n", what, err->message[0] ? err->message : tern_status_string(err->status));
    return 1;
}

int tern_cli_bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "tern: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'tern help' for usage)\n");
    return 2;
}


int tern_cli_parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-') return -1;
    *out = (uint32_t)v;
    return 0;
}

int tern_cli_parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    *out = strtof(s, &end);
    return (errno || end == s || *end) ? -1 : 0;
}

int tern_cli_parse_kv(const char *s, uint8_t *out) {
    if (!strcmp(s, "f32")) *out = TERN_KV_F32;
    else if (!strcmp(s, "f16")) *out = TERN_KV_F16;
    else if (!strcmp(s, "q8")) *out = TERN_KV_Q8;
    else return 1;
    return 0;
}

int tern_cli_parse_run_args(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    a->sampling.top_p = 1.0f;
    a->n_predict = 32;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                 \
    if (!val) return tern_cli_bad_usage("%s needs a value", arg);                                          \
    i++
        if (!strcmp(arg, "-o") || !strcmp(arg, "--output")) {
            NEED_VALUE;
            a->out = val;
        } else if (!strcmp(arg, "--tokens")) {
            NEED_VALUE;
            a->tokens = val;
        } else if (!strcmp(arg, "-p") || !strcmp(arg, "--prompt")) {
            NEED_VALUE;
            a->prompt = val;
        } else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) {
            NEED_VALUE;
            a->file = val;
        } else if (!strcmp(arg, "--pixels")) {
            NEED_VALUE;
            a->pixels = val;
        } else if (!strcmp(arg, "--isa")) {
            NEED_VALUE;
            a->isa = val;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            NEED_VALUE;
            if (tern_cli_parse_u32(val, &a->threads)) return tern_cli_bad_usage("bad thread count '%s'", val);
        } else if (!strcmp(arg, "--kv")) {
            NEED_VALUE;
            if (tern_cli_parse_kv(val, &a->kv_cache))
                return tern_cli_bad_usage("unknown KV cache type '%s' (f32, f16, q8)", val);
        } else if (!strcmp(arg, "--ctx")) {
            NEED_VALUE;
            if (tern_cli_parse_u32(val, &a->n_ctx)) return tern_cli_bad_usage("bad context size '%s'", val);
        } else if (!strcmp(arg, "-n")) {
            NEED_VALUE;
            if (tern_cli_parse_u32(val, &a->n_predict)) return tern_cli_bad_usage("bad token count '%s'", val);
            a->n_predict_set = 1;
        } else if (!strcmp(arg, "--temp")) {
            NEED_VALUE;
            if (tern_cli_parse_float(val, &a->sampling.temperature)) return tern_cli_bad_usage("bad temperature '%s'", val);
        } else if (!strcmp(arg, "--top-k")) {
            NEED_VALUE;
            if (tern_cli_parse_u32(val, &a->sampling.top_k)) return tern_cli_bad_usage("bad top-k '%s'", val);
        } else if (!strcmp(arg, "--top-p")) {
            NEED_VALUE;
            if (tern_cli_parse_float(val, &a->sampling.top_p)) return tern_cli_bad_usage("bad top-p '%s'", val);
        } else if (!strcmp(arg, "--seed")) {
            NEED_VALUE;
            char *end;
            errno = 0;
            a->sampling.seed = strtoull(val, &end, 10);
            if (errno || *end || end == val) return tern_cli_bad_usage("bad seed '%s'", val);
        } else if (!strcmp(arg, "--stepwise")) {
            a->stepwise = 1;
        } else if (!strcmp(arg, "--verify")) {
            a->verify = 1;
        } else if (arg[0] == '-' && arg[1]) {
            return tern_cli_bad_usage("unknown option '%s'", arg);
        } else if (!a->model) {
            a->model = arg;
        } else {
            return tern_cli_bad_usage("unexpected argument '%s'", arg);
        }
#undef NEED_VALUE
    }
    if (!a->model) return tern_cli_bad_usage("%s", "no model given");
    return 0;
}

/* "1,2,3" -> malloc'ed int32 array. */
int tern_cli_parse_tokens(const char *s, int32_t **out, size_t *n) {
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
        if (*s && !strchr(", \t\r\n", *s)) {
            free(v);
            return -1;
        }
        while (*s && strchr(", \t\r\n", *s)) s++;
    }
    *out = v;
    *n = len;
    return 0;
}

int tern_cli_open_model(const run_args *a, tern_model **model, tern_session **session,
                      tern_model_info *info) {
    tern_error err = {0};
    tern_model_options mo;
    tern_model_options_default(&mo);
    mo.verify_checksums = a->verify;
    const char *isa = a->isa ? a->isa : getenv("TERN_ISA");
    if (isa && *isa && tern_isa_mask_parse(isa, &mo.isa_mask) != TERN_OK)
        return tern_cli_bad_usage("unknown instruction set '%s'", isa);
    if (tern_model_open(a->model, &mo, model, &err) != TERN_OK) return tern_cli_fail("open", &err);
    tern_model_get_info(*model, info);
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_threads = a->threads;
    so.n_ctx = a->n_ctx;
    so.kv_cache = a->kv_cache;
    if (tern_session_create(*model, &so, session, &err) != TERN_OK) {
        tern_model_close(*model);
        return tern_cli_fail("session", &err);
    }
    return 0;
}

double tern_cli_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

