/* Shared pieces of the tern command's sub-commands. */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "tern.h"

#define MAX_TOKENS (1u << 20)

/* ---- Options shared by the model-running commands ------------------------ */
typedef struct run_args {
    const char *model;
    const char *out;
    const char *tokens;
    const char *prompt; /* -p TEXT */
    const char *file;   /* -f FILE */
    const char *pixels; /* --pixels IN.npy */
    const char *isa;
    uint32_t threads;
    uint32_t n_ctx;
    uint8_t kv_cache; /* --kv f32|f16|q8: tern_kv_type */
    uint32_t n_predict;
    int n_predict_set;
    int stepwise;
    int verify;
    tern_sampler_options sampling;
} run_args;

/* Prints "tern WHAT: message" and returns 1 (the exit code of a failure). */
int tern_cli_fail(const char *what, const tern_error *err);
/* Prints a usage error and returns 2. fmt has one %s. */
int tern_cli_bad_usage(const char *fmt, const char *arg);
int tern_cli_parse_u32(const char *s, uint32_t *out);
int tern_cli_parse_float(const char *s, float *out);
/* Options of the model-running commands; 0 or an exit code. */
int tern_cli_parse_run_args(int argc, char **argv, run_args *a);
/* "f32", "f16" or "q8" into *out (tern_kv_type); 1 when unknown. */
int tern_cli_parse_kv(const char *s, uint8_t *out);
/* "1,2,3" -> malloc'ed int32 array. */
int tern_cli_parse_tokens(const char *s, int32_t **out, size_t *n);
/* Opens a.model and a session with a's options; 0 or an exit code. */
int tern_cli_open_model(const run_args *a, tern_model **model, tern_session **session,
                        tern_model_info *info);
double tern_cli_now_seconds(void);

/* Log-softmax pieces of one row of logits, in double: the largest value, the
 * log of sum(exp(x - max)), and the first index of the largest value. */
typedef struct tern_cli_row_stats {
    double max, log_z;
    uint32_t argmax;
} tern_cli_row_stats;
tern_cli_row_stats tern_cli_row_stats_of(const float *row, uint32_t n);
/* KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)) of
 * two rows of logits with their stats, in double. */
double tern_cli_row_kl(const float *base, tern_cli_row_stats bs, const float *model, tern_cli_row_stats ms,
                       uint32_t n);

/* Sub-commands in other files. */
int tern_cli_generate(int argc, char **argv);
int tern_cli_chat(int argc, char **argv);
int tern_cli_tokenize(int argc, char **argv);
int tern_cli_detokenize(int argc, char **argv);
int tern_cli_perplexity(int argc, char **argv);
int tern_cli_classify(int argc, char **argv);
/* `tern bench MODEL [-p N] [-n N] [-t 1,2] [-r REPS] [--json]`: pp/tg tokens/s. */
int tern_cli_bench(int argc, char **argv);
/* `tern logits MODEL --pixels IN.npy -o OUT.npy` for vision models. */
int tern_cli_logits_pixels(const run_args *a);

#endif
