/* Sessions: per-conversation state (caches, scratch, threads) over a shared,
 * read-only model. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "kernels/cpu_features.h"
#include "runtime/internal.h"

#define DEFAULT_MAX_CTX 4096
#define DEFAULT_MAX_BATCH 64

void tern_session_options_default(tern_session_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

/* One thread per performance core (kernels/dispatch.c says which cores). */
static uint32_t default_threads(void) {
    tern_cpu_features f;
    tern_cpu_features_host(&f);
    return tern_default_threads(&f);
}

/* Frees what tern_session_create allocated around the family's state. */
static void session_release(tern_session *s) {
    free(s->qa.q);
    free(s->qa.d);
    free(s->qa.s);
    if (s->pool) pthreadpool_destroy(s->pool);
    free(s);
}

tern_status tern_session_create(tern_model *model, const tern_session_options *opts,
                                tern_session **out, tern_error *err) {
    if (!model || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_create: NULL argument");
    *out = NULL;
    tern_session_options defaults;
    if (!opts) {
        tern_session_options_default(&defaults);
        opts = &defaults;
    }
    if (opts->struct_size < sizeof *opts)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_options: struct_size %u too small",
                         opts->struct_size);
    if (opts->n_ctx > model->n_ctx)
        return tern_fail(err, TERN_ERR_OUT_OF_RANGE, "context of %u positions asked, the model allows %u",
                         opts->n_ctx, model->n_ctx);
    if (opts->kv_cache > TERN_KV_Q8)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_options: unknown kv_cache type %u",
                         (unsigned)opts->kv_cache);
    if (opts->n_threads > 1024)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "%u threads is not a sensible count", opts->n_threads);

    tern_session *s = calloc(1, sizeof *s);
    if (!s) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating a session");
    s->model = model;
    s->n_ctx = opts->n_ctx ? opts->n_ctx : (model->n_ctx < DEFAULT_MAX_CTX ? model->n_ctx : DEFAULT_MAX_CTX);
    s->max_batch = opts->max_batch ? opts->max_batch : DEFAULT_MAX_BATCH;
    s->kv_type = opts->kv_cache;
    if (s->max_batch > s->n_ctx) s->max_batch = s->n_ctx;
    s->n_threads = opts->n_threads ? opts->n_threads : default_threads();
    if (s->n_threads > 1) {
        s->pool = pthreadpool_create(s->n_threads);
        if (!s->pool) {
            free(s);
            return tern_fail(err, TERN_ERR_NO_MEMORY, "cannot create a pool of %u threads", opts->n_threads);
        }
    }
    if (model->int8_activations && model->qa_max_cols) {
        const size_t nb = model->qa_max_cols / TERN_QA_BLOCK;
        s->qa.q = malloc((size_t)TERN_QA_ROWS * model->qa_max_cols);
        s->qa.d = malloc((size_t)TERN_QA_ROWS * nb * sizeof *s->qa.d);
        s->qa.s = malloc((size_t)TERN_QA_ROWS * nb * sizeof *s->qa.s);
        if (!s->qa.q || !s->qa.d || !s->qa.s) {
            session_release(s);
            return tern_fail(err, TERN_ERR_NO_MEMORY,
                             "out of memory allocating the activation buffer (%zu columns)",
                             model->qa_max_cols);
        }
    }
    tern_status st = model->ops->session_init(s, err);
    if (st != TERN_OK) {
        session_release(s);
        return st;
    }
    *out = s;
    return TERN_OK;
}

void tern_session_destroy(tern_session *s) {
    if (!s) return;
    s->model->ops->session_free(s);
    session_release(s);
}

uint32_t tern_session_position(const tern_session *s) {
    return s ? s->n_pos : 0;
}

tern_status tern_session_feed(tern_session *s, const int32_t *tokens, size_t n, float *logits,
                              tern_logits_mode mode, tern_error *err) {
    if (!s || (!tokens && n)) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_feed: NULL argument");
    if (mode != TERN_LOGITS_NONE && mode != TERN_LOGITS_LAST && mode != TERN_LOGITS_ALL)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_feed: unknown logits mode %d", (int)mode);
    if (mode != TERN_LOGITS_NONE && !logits)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_feed: logits requested into NULL");
    if (n == 0) {
        if (mode != TERN_LOGITS_NONE)
            return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_feed: logits of zero tokens");
        return TERN_OK;
    }
    if (!s->model->ops->forward)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "a %s model takes images, not tokens",
                         s->model->arch_name);
    const uint32_t n_vocab = s->model->n_vocab;
    /* Check everything before touching the state: on error it stays as it was. */
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= n_vocab)
            return tern_fail(err, TERN_ERR_OUT_OF_RANGE, "token %d at index %zu is outside the vocabulary [0, %u)",
                             tokens[i], i, n_vocab);
    }
    if (n > s->n_ctx - s->n_pos)
        return tern_fail(err, TERN_ERR_CONTEXT_FULL,
                         "%zu tokens do not fit: %u of the session's %u positions are used", n,
                         s->n_pos, s->n_ctx);
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < s->max_batch ? n - done : s->max_batch;
        const int last_chunk = done + chunk == n;
        float *out = NULL;
        tern_logits_mode m = TERN_LOGITS_NONE;
        if (mode == TERN_LOGITS_ALL) {
            out = logits + done * (size_t)n_vocab;
            m = TERN_LOGITS_ALL;
        } else if (mode == TERN_LOGITS_LAST && last_chunk) {
            out = logits;
            m = TERN_LOGITS_LAST;
        }
        s->model->ops->forward(s, tokens + done, chunk, out, m);
        s->n_pos += (uint32_t)chunk;
        done += chunk;
    }
    return TERN_OK;
}

tern_status tern_session_truncate(tern_session *s, uint32_t n_keep, tern_error *err) {
    if (!s) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_truncate: NULL session");
    if (n_keep > s->n_pos)
        return tern_fail(err, TERN_ERR_OUT_OF_RANGE, "cannot keep %u positions: the session holds %u",
                         n_keep, s->n_pos);
    if (!s->model->ops->truncate)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "a %s model keeps no positions", s->model->arch_name);
    tern_status st = s->model->ops->truncate(s, n_keep, err);
    if (st == TERN_OK) s->n_pos = n_keep;
    return st;
}

tern_status tern_session_classify(tern_session *s, const float *pixels, size_t n_images,
                                  float *logits, tern_error *err) {
    if (!s || !pixels || !logits)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_session_classify: NULL argument");
    if (!s->model->ops->classify)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "a %s model takes tokens, not images",
                         s->model->arch_name);
    if (n_images == 0) return TERN_OK;
    return s->model->ops->classify(s, pixels, n_images, logits, err);
}
