/* Text sub-commands: generate, chat, tokenize, detokenize, perplexity. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "runtime/tokenizer.h"

#define PIECE_CAP 4096

/* ---- Shared ------------------------------------------------------------------ */

static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *grown = cap / 2 > ((size_t)1 << 31) ? NULL : realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                return NULL;
            }
            buf = grown;
        }
    }
    *len = n;
    return buf;
}

/* Tokenizes text into a malloc'ed array (*n ids). */
static tern_status tokenize(const tern_model *m, const char *text, size_t len, int add_special,
                            int32_t **out, size_t *n, tern_error *err) {
    size_t cap = len + 16;
    *out = malloc(cap * sizeof **out);
    if (!*out) return TERN_ERR_NO_MEMORY;
    tern_status st = tern_model_tokenize(m, text, len, add_special, 1, *out, cap, n, err);
    if (st == TERN_ERR_OUT_OF_RANGE && *n > cap) {
        int32_t *grown = realloc(*out, *n * sizeof **out);
        if (!grown) return TERN_ERR_NO_MEMORY;
        *out = grown;
        st = tern_model_tokenize(m, text, len, add_special, 1, *out, *n, n, err);
    }
    return st;
}

/* Samples up to n_predict tokens after the logits already in `logits`,
 * feeding each back; stops at an end-of-generation token (not fed). Prints
 * text through the detokenizer when `detok` is set, ids otherwise.
 * Returns the number of tokens produced, -1 on error. */
static long generate_loop(tern_session *s, const tern_model *m, const tern_model_info *info,
                          tern_sampler *sampler, float *logits, void *scratch, uint32_t n_predict,
                          tern_detokenizer *detok, int *stopped, tern_error *err) {
    char piece[PIECE_CAP];
    long produced = 0;
    *stopped = 0;
    while ((uint32_t)produced < n_predict) {
        int32_t next = tern_sampler_sample(sampler, logits, info->n_vocab, scratch);
        produced++;
        if (tern_model_is_eog(m, next)) {
            *stopped = 1;
            break;
        }
        if (detok) {
            size_t n;
            if (tern_detokenizer_feed(detok, next, piece, sizeof piece, &n, err) != TERN_OK) return -1;
            fwrite(piece, 1, n, stdout);
        } else {
            printf("%s%d", produced > 1 ? " " : "", next);
        }
        fflush(stdout);
        if ((uint32_t)produced == n_predict) break;
        if (tern_session_feed(s, &next, 1, logits, TERN_LOGITS_LAST, err) != TERN_OK) return -1;
    }
    if (detok) {
        size_t n = tern_detokenizer_flush(detok, piece, sizeof piece);
        fwrite(piece, 1, n, stdout);
    }
    return produced;
}

/* ---- generate ------------------------------------------------------------------- */

int tern_cli_generate(int argc, char **argv) {
    run_args a;
    int rc = tern_cli_parse_run_args(argc, argv, &a);
    if (rc) return rc;
    if (a.prompt && a.tokens) return tern_cli_bad_usage("%s", "give -p TEXT or --tokens IDS, not both");
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    if (a.tokens && tern_cli_parse_tokens(a.tokens, &prompt, &n_prompt))
        return tern_cli_bad_usage("bad token list '%s'", a.tokens);
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    if ((rc = tern_cli_open_model(&a, &model, &session, &info))) {
        free(prompt);
        return rc;
    }
    rc = 1;
    tern_error err = {0};
    tern_detokenizer *detok = NULL;
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    void *scratch = malloc((size_t)info.n_vocab * 8);
    if (!logits || !scratch) {
        fprintf(stderr, "tern generate: out of memory\n");
        goto done;
    }
    if (a.prompt) {
        if (tokenize(model, a.prompt, strlen(a.prompt), 1, &prompt, &n_prompt, &err) != TERN_OK ||
            tern_detokenizer_create(model, 0, &detok, &err) != TERN_OK) {
            rc = tern_cli_fail("generate", &err);
            goto done;
        }
    }
    if (n_prompt == 0 || (a.prompt && prompt[0] != info.bos_token && !a.prompt[0])) {
        if (info.bos_token < 0) {
            fprintf(stderr, "tern generate: empty prompt and the model has no BOS token to start from\n");
            goto done;
        }
        free(prompt);
        prompt = malloc(sizeof *prompt);
        if (!prompt) goto done;
        prompt[0] = info.bos_token;
        n_prompt = 1;
    }
    tern_sampler sampler;
    tern_sampler_init(&sampler, &a.sampling);
    double t0 = tern_cli_now_seconds();
    if (tern_session_feed(session, prompt, n_prompt, logits, TERN_LOGITS_LAST, &err) != TERN_OK) {
        rc = tern_cli_fail("generate", &err);
        goto done;
    }
    double t1 = tern_cli_now_seconds();
    int stopped;
    long produced = generate_loop(session, model, &info, &sampler, logits, scratch, a.n_predict,
                                  detok, &stopped, &err);
    double t2 = tern_cli_now_seconds();
    /* Text goes out exactly as generated; a newline only for a terminal. */
    if (!detok || isatty(STDOUT_FILENO)) printf("\n");
    if (produced < 0) {
        rc = tern_cli_fail("generate", &err);
        goto done;
    }
    /* Decode speed counts the tokens that went through the model after the
     * prompt: every produced token but the last was fed back. */
    fprintf(stderr,
            "prompt: %zu tokens in %.3f s (%.2f tokens/s); generated: %ld tokens in %.3f s "
            "(%.2f tokens/s)%s; isa %s\n",
            n_prompt, t1 - t0, n_prompt / (t1 - t0), produced, t2 - t1,
            produced > 1 ? (produced - 1) / (t2 - t1) : 0.0, stopped ? ", stopped at end of text" : "",
            tern_isa_name(info.isa));
    rc = 0;
done:
    tern_detokenizer_destroy(detok);
    free(logits);
    free(scratch);
    free(prompt);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}

/* ---- chat ------------------------------------------------------------------------ */

typedef enum { CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2 } chat_format;

typedef struct {
    chat_format format;
    char system[1024]; /* the template's default system message, may be "" */
} chat_template;

/* Recognises the template families by their markers (no Jinja engine: the
 * three formats below cover ChatML (SmolLM2, Qwen2), Llama 3 and Llama 2). */
static int chat_template_detect(const tern_model *m, chat_template *t) {
    memset(t, 0, sizeof *t);
    const char *src = NULL;
    size_t len = 0;
    if (tern_model_chat_template(m, &src, &len) != TERN_OK) {
        src = "";
        len = 0;
    }
    char *tmpl = malloc(len + 1);
    if (!tmpl) return -1;
    memcpy(tmpl, src, len);
    tmpl[len] = '\0';
    int found = 1;
    if (strstr(tmpl, "<|im_start|>") || (len == 0 && tern_model_token_id(m, "<|im_start|>", 12) >= 0)) {
        t->format = CHAT_CHATML;
        /* A default system message written into the template as a literal. */
        const char *sys = strstr(tmpl, "<|im_start|>system\\n");
        if (sys && (sys == tmpl || sys[-1] == '\'' || sys[-1] == '"')) {
            sys += strlen("<|im_start|>system\\n");
            const char *end = strstr(sys, "<|im_end|>");
            if (end && (size_t)(end - sys) < sizeof t->system) memcpy(t->system, sys, (size_t)(end - sys));
        }
    } else if (strstr(tmpl, "<|start_header_id|>")) {
        t->format = CHAT_LLAMA3;
    } else if (strstr(tmpl, "[INST]")) {
        t->format = CHAT_LLAMA2;
    } else {
        found = 0;
    }
    free(tmpl);
    return found ? 0 : -1;
}

/* The text of one user turn (plus the system message on the first turn),
 * ending where the assistant's reply begins. */
static char *chat_turn(const chat_template *t, const char *system, const char *user, int first) {
    size_t n = strlen(system) + strlen(user) + 256;
    char *out = malloc(n);
    if (!out) return NULL;
    switch (t->format) {
    case CHAT_CHATML:
        if (first && system[0])
            snprintf(out, n, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                     system, user);
        else
            snprintf(out, n, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", user);
        break;
    case CHAT_LLAMA3:
        if (first && system[0])
            snprintf(out, n,
                     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     system, user);
        else
            snprintf(out, n,
                     "%s<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     first ? "<|begin_of_text|>" : "", user);
        break;
    case CHAT_LLAMA2:
        if (first && system[0])
            snprintf(out, n, "<s>[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", system, user);
        else
            snprintf(out, n, "<s>[INST] %s [/INST]", user);
        break;
    }
    return out;
}

/* What closes the assistant's turn in the history. */
static const char *chat_turn_end(const chat_template *t) {
    switch (t->format) {
    case CHAT_CHATML: return "<|im_end|>\n";
    case CHAT_LLAMA3: return "<|eot_id|>";
    case CHAT_LLAMA2: return " </s>";
    }
    return "";
}

int tern_cli_chat(int argc, char **argv) {
    run_args a;
    int rc = tern_cli_parse_run_args(argc, argv, &a);
    if (rc) return rc;
    if (!a.n_predict_set) a.n_predict = 512;
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    if ((rc = tern_cli_open_model(&a, &model, &session, &info))) return rc;
    rc = 1;
    tern_error err = {0};
    chat_template tmpl;
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    void *scratch = malloc((size_t)info.n_vocab * 8);
    tern_detokenizer *detok = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    if (!logits || !scratch) goto done;
    if (!tern_model_has_tokenizer(model)) {
        fprintf(stderr, "tern chat: this model has no tokenizer\n");
        goto done;
    }
    if (chat_template_detect(model, &tmpl) != 0) {
        fprintf(stderr, "tern chat: the model's chat template is not one tern knows (ChatML, Llama 2, Llama 3)\n");
        goto done;
    }
    const char *system = a.prompt ? a.prompt : tmpl.system;
    tern_sampler sampler;
    tern_sampler_init(&sampler, &a.sampling);
    const int interactive = isatty(STDIN_FILENO);
    int first = 1;
    for (;;) {
        if (interactive) fputs("> ", stderr);
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        char *turn = chat_turn(&tmpl, system, line, first);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (!turn || tokenize(model, turn, strlen(turn), 0, &ids, &n_ids, &err) != TERN_OK) {
            free(turn);
            free(ids);
            rc = tern_cli_fail("chat", &err);
            goto done;
        }
        free(turn);
        tern_status st = tern_session_feed(session, ids, n_ids, logits, TERN_LOGITS_LAST, &err);
        free(ids);
        if (st == TERN_ERR_CONTEXT_FULL) {
            fprintf(stderr, "tern chat: the context is full (%u positions used); start a new chat, or raise --ctx\n",
                    tern_session_position(session));
            rc = 1;
            goto done;
        }
        if (st != TERN_OK) {
            rc = tern_cli_fail("chat", &err);
            goto done;
        }
        first = 0;
        if (tern_detokenizer_create(model, 0, &detok, &err) != TERN_OK) {
            rc = tern_cli_fail("chat", &err);
            goto done;
        }
        int stopped;
        double t0 = tern_cli_now_seconds();
        long produced = generate_loop(session, model, &info, &sampler, logits, scratch, a.n_predict,
                                      detok, &stopped, &err);
        double t1 = tern_cli_now_seconds();
        tern_detokenizer_destroy(detok);
        detok = NULL;
        printf("\n");
        fflush(stdout);
        if (produced < 0) {
            if (err.status == TERN_ERR_CONTEXT_FULL)
                fprintf(stderr, "tern chat: the context is full (%u positions); start a new chat, or raise --ctx\n",
                        tern_session_position(session));
            else
                tern_cli_fail("chat", &err);
            goto done;
        }
        if (interactive)
            fprintf(stderr, "[%ld tokens, %.1f tokens/s, %u of %u positions used]\n", produced,
                    produced > 1 ? (produced - 1) / (t1 - t0) : 0.0, tern_session_position(session),
                    info.n_ctx);
        /* Close the assistant's turn so the history matches the template. */
        const char *end = chat_turn_end(&tmpl);
        if (tokenize(model, end, strlen(end), 0, &ids, &n_ids, &err) != TERN_OK ||
            tern_session_feed(session, ids, n_ids, NULL, TERN_LOGITS_NONE, &err) != TERN_OK) {
            free(ids);
            if (err.status == TERN_ERR_CONTEXT_FULL) {
                fprintf(stderr, "tern chat: the context is full; start a new chat, or raise --ctx\n");
                goto done;
            }
            rc = tern_cli_fail("chat", &err);
            goto done;
        }
        free(ids);
    }
    rc = 0;
done:
    tern_detokenizer_destroy(detok);
    free(line);
    free(logits);
    free(scratch);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}

/* ---- tokenize / detokenize ----------------------------------------------------------- */

/* A tokenizer from a .tern model or straight from a GGUF vocabulary file. */
typedef struct {
    tern_model *model;
    tern_gguf gguf;
    int has_gguf;
    tern_tokenizer *tok;
} tokenizer_source;

static int is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (f) fclose(f);
    return yes;
}

static int open_tokenizer(const char *path, tokenizer_source *src, tern_error *err) {
    memset(src, 0, sizeof *src);
    if (is_gguf(path)) {
        tern_tokenizer_desc desc;
        if (tern_gguf_open(path, &src->gguf, err) != TERN_OK) return -1;
        src->has_gguf = 1;
        if (tern_tokenizer_desc_from_gguf(&src->gguf, &desc, err) != TERN_OK) return -1;
        tern_status st = tern_tokenizer_create(&desc, &src->tok, err);
        tern_tokenizer_desc_free(&desc);
        return st == TERN_OK ? 0 : -1;
    }
    if (tern_model_open(path, NULL, &src->model, err) != TERN_OK) return -1;
    if (!tern_model_has_tokenizer(src->model)) {
        snprintf(err->message, sizeof err->message, "%s has no tokenizer", path);
        return -1;
    }
    return 0;
}

static void close_tokenizer(tokenizer_source *src) {
    tern_tokenizer_destroy(src->tok);
    if (src->has_gguf) tern_gguf_close(&src->gguf);
    tern_model_close(src->model);
}

static tern_status source_encode(const tokenizer_source *src, const char *text, size_t len, int bos,
                                 int32_t *out, size_t cap, size_t *n, tern_error *err) {
    if (src->tok) return tern_tokenizer_encode(src->tok, text, len, bos, 0, out, cap, n, err);
    return tern_model_tokenize(src->model, text, len, bos, 0, out, cap, n, err);
}

int tern_cli_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int ids_only = 0, bos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--ids")) ids_only = 1;
        else if (!strcmp(argv[i], "--bos")) bos = 1;
        else if (argv[i][0] == '-') return tern_cli_bad_usage("unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return tern_cli_bad_usage("unexpected argument '%s'", argv[i]);
    }
    if (!path) return tern_cli_bad_usage("%s", "tokenize needs MODEL.tern or VOCAB.gguf");
    tern_error err = {0};
    tokenizer_source src;
    int rc = 1;
    size_t len = 0;
    char *text = NULL;
    int32_t *ids = NULL;
    if (open_tokenizer(path, &src, &err) != 0) {
        rc = tern_cli_fail("tokenize", &err);
        goto done;
    }
    if (!(text = read_stream(stdin, &len))) {
        fprintf(stderr, "tern tokenize: cannot read standard input\n");
        goto done;
    }
    size_t cap = len + 8, n = 0;
    ids = malloc(cap * sizeof *ids);
    if (!ids || source_encode(&src, text, len, bos, ids, cap, &n, &err) != TERN_OK) {
        rc = tern_cli_fail("tokenize", &err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids_only) {
            printf("%s%d", i ? " " : "", ids[i]);
            continue;
        }
        char piece[PIECE_CAP];
        int pl = src.tok ? tern_tokenizer_piece(src.tok, ids[i], 1, piece, sizeof piece)
                         : tern_model_token_piece(src.model, ids[i], piece, sizeof piece);
        printf("%6d  '%.*s'\n", ids[i], pl > 0 ? pl : 0, piece);
    }
    if (ids_only) printf("\n");
    rc = 0;
done:
    free(text);
    free(ids);
    close_tokenizer(&src);
    return rc;
}

int tern_cli_detokenize(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') return tern_cli_bad_usage("unknown option '%s'", argv[i]);
        if (path) return tern_cli_bad_usage("unexpected argument '%s'", argv[i]);
        path = argv[i];
    }
    if (!path) return tern_cli_bad_usage("%s", "detokenize needs MODEL.tern");
    tern_error err = {0};
    tern_model *model;
    if (tern_model_open(path, NULL, &model, &err) != TERN_OK) return tern_cli_fail("detokenize", &err);
    tern_detokenizer *d = NULL;
    int rc = 1;
    size_t len = 0;
    char *text = read_stream(stdin, &len);
    int32_t *ids = NULL;
    size_t n = 0;
    if (!text || tern_detokenizer_create(model, 0, &d, &err) != TERN_OK) {
        rc = tern_cli_fail("detokenize", &err);
        goto done;
    }
    text[len] = '\0';
    if (tern_cli_parse_tokens(text, &ids, &n)) {
        fprintf(stderr, "tern detokenize: standard input is not a list of token ids\n");
        rc = 2;
        goto done;
    }
    char piece[PIECE_CAP];
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        if (ids[i] < 0 || tern_detokenizer_feed(d, ids[i], piece, sizeof piece, &pl, &err) != TERN_OK) {
            fprintf(stderr, "tern detokenize: token %d is not in the vocabulary\n", ids[i]);
            goto done;
        }
        fwrite(piece, 1, pl, stdout);
    }
    fwrite(piece, 1, tern_detokenizer_flush(d, piece, sizeof piece), stdout);
    rc = 0;
done:
    free(ids);
    free(text);
    tern_detokenizer_destroy(d);
    tern_model_close(model);
    return rc;
}

/* ---- perplexity ------------------------------------------------------------------------ */

tern_cli_row_stats tern_cli_row_stats_of(const float *row, uint32_t n) {
    tern_cli_row_stats r = {row[0], 0, 0};
    for (uint32_t v = 1; v < n; v++)
        if (row[v] > r.max) {
            r.max = row[v];
            r.argmax = v;
        }
    double z = 0;
    for (uint32_t v = 0; v < n; v++) z += exp((double)row[v] - r.max);
    r.log_z = log(z);
    return r;
}

double tern_cli_row_kl(const float *base, tern_cli_row_stats bs, const float *model, tern_cli_row_stats ms,
                       uint32_t n) {
    double kl = 0;
    for (uint32_t v = 0; v < n; v++) {
        const double lb = (double)base[v] - bs.max - bs.log_z;
        const double lm = (double)model[v] - ms.max - ms.log_z;
        kl += exp(lb) * (lb - lm);
    }
    return kl > 0 ? kl : 0; /* rounding can leave -1e-17 for identical rows */
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Value at fraction q of sorted v[n] (linear interpolation). */
static double quantile(const double *v, size_t n, double q) {
    if (n == 0) return 0;
    const double at = q * (double)(n - 1);
    const size_t i = (size_t)at;
    return i + 1 < n ? v[i] + (at - (double)i) * (v[i + 1] - v[i]) : v[n - 1];
}

/* Mean and standard error of the mean from a sum and sum of squares. */
static double mean_se(double sum, double sum_sq, uint64_t n) {
    if (n < 2) return 0;
    const double mean = sum / (double)n;
    const double var = (sum_sq / (double)n - mean * mean) * (double)n / (double)(n - 1);
    return sqrt(var > 0 ? var : 0) / sqrt((double)n);
}

/* The base model of --kl-base must see exactly the tokens the model sees. */
static int same_vocabulary(const char *model_path, const tern_model_info *mi, const int32_t *ids,
                           size_t n_ids, const char *base_path, const tern_model_info *bi,
                           const int32_t *base_ids, size_t n_base) {
    if (mi->n_vocab != bi->n_vocab) {
        fprintf(stderr,
                "tern perplexity: %s has a vocabulary of %u tokens and %s one of %u; --kl-base needs "
                "models with the same vocabulary\n",
                model_path, mi->n_vocab, base_path, bi->n_vocab);
        return 0;
    }
    if (mi->bos_token != bi->bos_token || mi->adds_bos != bi->adds_bos) {
        fprintf(stderr, "tern perplexity: %s and %s have different BOS tokens (%d, %d); --kl-base needs "
                "the same tokenizer\n", model_path, base_path, mi->bos_token, bi->bos_token);
        return 0;
    }
    size_t i = 0;
    while (i < n_ids && i < n_base && ids[i] == base_ids[i]) i++;
    if (i < n_ids || i < n_base) {
        fprintf(stderr,
                "tern perplexity: the tokenizers of %s and %s split the text differently (%zu and %zu "
                "tokens, first difference at token %zu); --kl-base needs the same tokenizer\n",
                model_path, base_path, n_ids, n_base, i);
        return 0;
    }
    return 1;
}

/* Two schemes:
 *  - strided (default): windows of --ctx tokens advancing by --stride, each
 *    scoring the tokens no earlier window scored, with the rest as context
 *    (Hugging Face's perplexity guide); the first window starts with BOS
 *    when the model has one;
 *  - --chunks: llama.cpp's llama-perplexity: non-overlapping chunks of --ctx
 *    tokens, the first replaced by BOS when the tokenizer adds one, scoring
 *    the second half of each chunk, so figures compare with llama.cpp's.
 * --kl-base BASE runs BASE on the same windows and compares the next-token
 * distributions at the scored positions (llama.cpp's --kl-divergence): mean
 * KL(base || model), its spread, and how often both argmaxes agree. Only one
 * window of logits per model is held at a time. */
int tern_cli_perplexity(int argc, char **argv) {
    run_args a;
    int json = 0, chunks = 0;
    uint32_t stride = 0;
    const char *base_path = NULL;
    char **rest = malloc((size_t)(argc + 1) * sizeof *rest);
    int n_rest = 0;
    if (!rest) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--chunks")) {
            chunks = 1;
        } else if (!strcmp(argv[i], "--stride")) {
            if (i + 1 >= argc || tern_cli_parse_u32(argv[i + 1], &stride) || stride == 0) {
                free(rest);
                return tern_cli_bad_usage("%s", "--stride needs a positive number");
            }
            i++;
        } else if (!strcmp(argv[i], "--kl-base")) {
            if (i + 1 >= argc) {
                free(rest);
                return tern_cli_bad_usage("%s", "--kl-base needs a BASE.tern model");
            }
            base_path = argv[++i];
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    int rc = tern_cli_parse_run_args(n_rest, rest, &a);
    free(rest);
    if (rc) return rc;
    if (!a.file) return tern_cli_bad_usage("%s", "perplexity needs -f FILE.txt");
    FILE *f = fopen(a.file, "rb");
    if (!f) {
        fprintf(stderr, "tern perplexity: %s: %s\n", a.file, strerror(errno));
        return 1;
    }
    size_t len = 0;
    char *text = read_stream(f, &len);
    fclose(f);
    if (!text) {
        fprintf(stderr, "tern perplexity: cannot read %s\n", a.file);
        return 1;
    }
    if (!a.n_ctx) a.n_ctx = 512;
    tern_model *model, *base = NULL;
    tern_session *session, *base_session = NULL;
    tern_model_info info, base_info;
    if ((rc = tern_cli_open_model(&a, &model, &session, &info))) {
        free(text);
        return rc;
    }
    rc = 1;
    tern_error err = {0};
    int32_t *ids = NULL, *base_ids = NULL, *window = NULL;
    float *logits = NULL, *base_logits = NULL;
    double *kls = NULL;
    size_t n_ids = 0, n_base_ids = 0;
    if (tokenize(model, text, len, 0, &ids, &n_ids, &err) != TERN_OK) {
        rc = tern_cli_fail("perplexity", &err);
        goto done;
    }
    if (base_path) {
        run_args ba = a;
        ba.model = base_path;
        tern_model *bm;
        tern_session *bs;
        /* On failure the out-pointers may hold a closed model: keep them local. */
        if ((rc = tern_cli_open_model(&ba, &bm, &bs, &base_info))) goto done;
        base = bm;
        base_session = bs;
        rc = 1;
        if (!tern_model_has_tokenizer(base)) {
            fprintf(stderr, "tern perplexity: %s has no tokenizer\n", base_path);
            goto done;
        }
        if (tokenize(base, text, len, 0, &base_ids, &n_base_ids, &err) != TERN_OK) {
            rc = tern_cli_fail("perplexity", &err);
            goto done;
        }
        if (!same_vocabulary(a.model, &info, ids, n_ids, base_path, &base_info, base_ids, n_base_ids))
            goto done;
    }
    const uint32_t ctx = a.n_ctx;
    if (!stride) stride = ctx / 2 ? ctx / 2 : 1;
    if (stride > ctx) stride = ctx;
    const int bos = info.bos_token >= 0;
    if (n_ids < 2) {
        fprintf(stderr, "tern perplexity: %s has fewer than 2 tokens\n", a.file);
        goto done;
    }
    window = malloc((size_t)ctx * sizeof *window);
    logits = malloc((size_t)ctx * info.n_vocab * sizeof(float));
    if (base) {
        base_logits = malloc((size_t)ctx * info.n_vocab * sizeof(float));
        kls = malloc(n_ids * sizeof *kls); /* one per scored token, at most n_ids */
    }
    if (!window || !logits || (base && (!base_logits || !kls))) {
        fprintf(stderr, "tern perplexity: out of memory for a window of %u tokens\n", ctx);
        goto done;
    }
    /* Positions in `ids` are scored from `scored` on; a window holds
     * ids[begin, begin + len) (behind a BOS for the first one). */
    double sum = 0, sum_sq = 0, base_sum = 0, base_sum_sq = 0, kl_sum = 0, kl_sum_sq = 0;
    double ratio_sum = 0, ratio_sum_sq = 0; /* nll - base nll, per token */
    uint64_t count = 0, agree = 0;
    size_t scored = 1;
    double t0 = tern_cli_now_seconds();
    if (chunks) {
        stride = ctx;
        if (n_ids < ctx) {
            fprintf(stderr, "tern perplexity: --chunks needs at least %u tokens, %s has %zu\n", ctx, a.file, n_ids);
            goto done;
        }
    }
    for (size_t begin = 0; scored < n_ids; begin += stride) {
        const int lead = !chunks && bos && begin == 0; /* a BOS in front of the first window */
        size_t take = ctx - (size_t)lead;
        if (chunks && begin + take > n_ids) break; /* whole chunks only, as llama.cpp */
        if (begin + take > n_ids) take = n_ids - begin;
        size_t w = 0;
        if (lead) window[w++] = info.bos_token;
        memcpy(window + w, ids + begin, take * sizeof *window);
        w += take;
        if (lead) scored = 0; /* with BOS as context the first token is scored too */
        if (chunks) {
            if (info.adds_bos && bos) window[0] = info.bos_token;
            scored = begin + ctx / 2 + 1; /* llama.cpp scores rows [ctx/2, ctx - 1) */
        }
        if (tern_session_truncate(session, 0, &err) != TERN_OK ||
            tern_session_feed(session, window, w, logits, TERN_LOGITS_ALL, &err) != TERN_OK ||
            (base && (tern_session_truncate(base_session, 0, &err) != TERN_OK ||
                      tern_session_feed(base_session, window, w, base_logits, TERN_LOGITS_ALL, &err) != TERN_OK))) {
            rc = tern_cli_fail("perplexity", &err);
            goto done;
        }
        /* logits row r predicts window[r + 1], i.e. ids[begin + r + 1 - lead]. */
        for (size_t r = 0; r + 1 < w; r++) {
            const size_t target = begin + r + 1 - (size_t)lead;
            if (target < scored) continue;
            const float *row = logits + r * info.n_vocab;
            const tern_cli_row_stats ms = tern_cli_row_stats_of(row, info.n_vocab);
            const double nll = -((double)row[ids[target]] - ms.max - ms.log_z);
            sum += nll;
            sum_sq += nll * nll;
            if (base) {
                const float *brow = base_logits + r * info.n_vocab;
                const tern_cli_row_stats bs = tern_cli_row_stats_of(brow, info.n_vocab);
                const double bnll = -((double)brow[ids[target]] - bs.max - bs.log_z);
                const double kl = tern_cli_row_kl(brow, bs, row, ms, info.n_vocab);
                base_sum += bnll;
                base_sum_sq += bnll * bnll;
                ratio_sum += nll - bnll;
                ratio_sum_sq += (nll - bnll) * (nll - bnll);
                kl_sum += kl;
                kl_sum_sq += kl * kl;
                kls[count] = kl;
                agree += bs.argmax == ms.argmax;
            }
            count++;
        }
        scored = begin + take;
        if (!json && isatty(STDERR_FILENO))
            fprintf(stderr, "\r%zu / %zu tokens, ppl so far %.4f", scored, n_ids, exp(sum / (double)count));
        if (begin + take >= n_ids) break;
    }
    double t1 = tern_cli_now_seconds();
    if (!json && isatty(STDERR_FILENO)) fputc('\n', stderr);
    const double mean = sum / (double)count;
    const double se = mean_se(sum, sum_sq, count);
    const double ppl = exp(mean);
    if (json) {
        printf("{\"ppl\": %.6f, \"ppl_se\": %.6f, \"nll\": %.6f, \"nll_se\": %.6f, \"tokens\": %llu, "
               "\"ctx\": %u, \"stride\": %u, \"seconds\": %.3f",
               ppl, ppl * se, mean, se, (unsigned long long)count, ctx, stride, t1 - t0);
    } else {
        printf("file: %s (%zu tokens; %s %u, stride %u)\n", a.file, n_ids,
               chunks ? "llama.cpp chunks of" : "window", ctx, stride);
        printf("mean NLL: %.6f +/- %.6f nats per token (%llu tokens scored)\n", mean, se,
               (unsigned long long)count);
        printf("perplexity: %.4f +/- %.4f\n", ppl, ppl * se);
    }
    if (base) {
        const double n = (double)count;
        const double base_mean = base_sum / n, kl_mean = kl_sum / n, p = (double)agree / n;
        const double kl_se = mean_se(kl_sum, kl_sum_sq, count);
        const double ratio_se = mean_se(ratio_sum, ratio_sum_sq, count);
        const double p_se = count > 1 ? sqrt(p * (1 - p) / (n - 1)) : 0;
        qsort(kls, count, sizeof *kls, cmp_double);
        const double kl_median = quantile(kls, count, 0.5), kl_p99 = quantile(kls, count, 0.99);
        const double kl_max = count ? kls[count - 1] : 0;
        if (json) {
            printf(", \"base_ppl\": %.6f, \"base_nll\": %.6f, \"base_nll_se\": %.6f, \"ln_ppl_ratio\": %.6f, "
                   "\"ln_ppl_ratio_se\": %.6f, \"kl\": %.8f, \"kl_se\": %.8f, \"kl_median\": %.8f, "
                   "\"kl_p99\": %.8f, \"kl_max\": %.8f, \"top1_agreement\": %.6f, \"top1_agreement_se\": %.6f",
                   exp(base_mean), base_mean, mean_se(base_sum, base_sum_sq, count), ratio_sum / n, ratio_se,
                   kl_mean, kl_se, kl_median, kl_p99, kl_max, p, p_se);
        } else {
            printf("base %s: perplexity %.4f, mean NLL %.6f\n", base_path, exp(base_mean), base_mean);
            printf("mean ln(PPL/PPL(base)): %.6f +/- %.6f\n", ratio_sum / n, ratio_se);
            printf("KL divergence KL(base || model): mean %.6f +/- %.6f, median %.6f, 99%% %.6f, max %.6f\n",
                   kl_mean, kl_se, kl_median, kl_p99, kl_max);
            printf("top-1 agreement: %.4f +/- %.4f (%llu of %llu tokens)\n", p, p_se,
                   (unsigned long long)agree, (unsigned long long)count);
        }
    }
    if (json) {
        printf("}\n");
    } else {
        fflush(stdout);
        fprintf(stderr, "%.2f s, %.1f tokens/s\n", t1 - t0, (double)count / (t1 - t0));
    }
    rc = 0;
done:
    free(text);
    free(ids);
    free(base_ids);
    free(window);
    free(logits);
    free(base_logits);
    free(kls);
    tern_session_destroy(session);
    tern_model_close(model);
    tern_session_destroy(base_session);
    tern_model_close(base);
    return rc;
}
