/* Llama-style decoders: Llama 1/2/3, SmolLM, TinyLlama, Qwen2 (q/k/v biases).
 *
 *   x = embed(token)
 *   per layer: h = x + Wo · attention(rope(Wq·n1(x) + bq), rope(Wk·n1(x) + bk), Wv·n1(x) + bv)
 *              x = h + Wdown · (silu(Wgate·n2(h)) * Wup·n2(h))
 *   logits = Wout · norm(x)
 *
 * The session holds the KV cache, per layer and KV head: [n_ctx][head_dim] of
 * the session's tern_kv_type (float, IEEE half, or int8 with one float scale
 * per layer, KV head and position: amax / 127 of that head's vector). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

#define MAX_HEAD_DIM 512

typedef struct {
    const float *attn_norm;   /* [d_model] */
    tern_weight wq, wk, wv, wo;
    const float *bq, *bk, *bv, *bo; /* NULL when absent */
    const float *ffn_norm;    /* [d_model] */
    tern_weight w_gate, w_up, w_down;
} llama_layer;

typedef struct {
    uint32_t d_model, n_layer, n_head, n_head_kv, head_dim, d_ff, n_vocab, n_ctx;
    uint32_t rope_layout;
    float norm_eps;
    float rope_theta;
    double *inv_freq; /* [head_dim / 2] */
    tern_weight token_embd;
    tern_weight output; /* token_embd when tied */
    const float *output_norm;
    llama_layer *layers;
} llama_model;

typedef struct {
    void *k_cache, *v_cache; /* [n_layer][n_head_kv][n_ctx][head_dim] of kv_type */
    float *k_scale, *v_scale; /* TERN_KV_Q8: [n_layer][n_head_kv][n_ctx] */
    float *x, *xn, *q, *k, *v, *att, *gate, *up; /* [max_batch][...] scratch */
    float *rope_cos, *rope_sin; /* [max_batch][head_dim / 2] */
} llama_state;

static tern_status bind_layer(tern_model *m, const llama_model *lm, int i, llama_layer *L,
                              tern_error *err) {
    char name[96];
    tern_status st;
    const size_t d = lm->d_model, q_dim = (size_t)lm->n_head * lm->head_dim,
                 kv_dim = (size_t)lm->n_head_kv * lm->head_dim, ff = lm->d_ff;
#define NAME(fmt) (snprintf(name, sizeof name, fmt, i), name)
#define BIAS(fmt) (snprintf(name, sizeof name, fmt, i), strcpy(name + strlen(name) - 6, "bias"), name)
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) return st
    TRY(tern_bind_vector(m, NAME(TERN_T_ATTN_NORM), d, 0, &L->attn_norm, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_ATTN_Q), q_dim, d, &L->wq, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_ATTN_K), kv_dim, d, &L->wk, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_ATTN_V), kv_dim, d, &L->wv, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_ATTN_OUT), d, q_dim, &L->wo, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_ATTN_Q), q_dim, 1, &L->bq, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_ATTN_K), kv_dim, 1, &L->bk, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_ATTN_V), kv_dim, 1, &L->bv, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_ATTN_OUT), d, 1, &L->bo, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_FFN_NORM), d, 0, &L->ffn_norm, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_FFN_GATE), ff, d, &L->w_gate, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_FFN_UP), ff, d, &L->w_up, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_FFN_DOWN), d, ff, &L->w_down, err));
#undef NAME
#undef BIAS
#undef TRY
    return TERN_OK;
}

static void llama_unload(tern_model *m) {
    llama_model *lm = m->impl;
    if (!lm) return;
    free(lm->layers);
    free(lm->inv_freq);
    free(lm);
    m->impl = NULL;
}

static tern_status llama_load(tern_model *m, tern_error *err) {
    llama_model *lm = calloc(1, sizeof *lm);
    if (!lm) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    m->impl = lm;
    tern_status st;
    const uint32_t big = 1u << 24;
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) goto fail
    TRY(tern_meta_u32_range(m, TERN_KEY_N_VOCAB, &lm->n_vocab, 1, big, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_CTX, &lm->n_ctx, 1, big, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_MODEL, &lm->d_model, 1, 1u << 16, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_LAYER, &lm->n_layer, 1, 1024, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_HEAD, &lm->n_head, 1, 1024, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_HEAD_KV, &lm->n_head_kv, 1, lm->n_head, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_HEAD_DIM, &lm->head_dim, 2, MAX_HEAD_DIM, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_FF, &lm->d_ff, 1, 1u << 20, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_ROPE_LAYOUT, &lm->rope_layout, 0, 1, err));
    TRY(tern_file_meta_f32(&m->file, TERN_KEY_NORM_EPS, &lm->norm_eps, err));
    TRY(tern_file_meta_f32(&m->file, TERN_KEY_ROPE_THETA, &lm->rope_theta, err));
    if (lm->n_head % lm->n_head_kv != 0) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%u query heads are not a multiple of %u KV heads",
                       lm->n_head, lm->n_head_kv);
        goto fail;
    }
    if (lm->head_dim % 2 != 0) {
        st = tern_fail(err, TERN_ERR_FORMAT, "head_dim %u is odd: RoPE rotates pairs", lm->head_dim);
        goto fail;
    }
    if (!(lm->norm_eps >= 0.0f && lm->norm_eps < 1.0f) ||
        !(lm->rope_theta > 1.0f && lm->rope_theta < 1e12f)) {
        st = tern_fail(err, TERN_ERR_FORMAT, "norm_eps %g or rope_theta %g is out of range",
                       lm->norm_eps, lm->rope_theta);
        goto fail;
    }
    m->n_vocab = lm->n_vocab;
    m->n_ctx = lm->n_ctx;
    m->n_layer = lm->n_layer;
    m->d_model = lm->d_model;
    m->bos_token = -1;
    m->eos_token = -1;
    if (tern_file_has_meta(&m->file, TERN_KEY_BOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_BOS, &m->bos_token, err));
    if (tern_file_has_meta(&m->file, TERN_KEY_EOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_EOS, &m->eos_token, err));

    TRY(tern_bind_weight(m, TERN_T_TOKEN_EMBD, lm->n_vocab, lm->d_model, &lm->token_embd, err));
    if (!tern_weight_rows_readable(&lm->token_embd)) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "token_embd.weight: encoding %s cannot be looked up",
                       tern_encoding_name(lm->token_embd.encoding));
        goto fail;
    }
    if (tern_model_has_tensor(m, TERN_T_OUTPUT)) {
        TRY(tern_bind_weight(m, TERN_T_OUTPUT, lm->n_vocab, lm->d_model, &lm->output, err));
    } else {
        lm->output = lm->token_embd;
    }
    TRY(tern_bind_vector(m, TERN_T_OUTPUT_NORM, lm->d_model, 0, &lm->output_norm, err));

    lm->layers = calloc(lm->n_layer, sizeof *lm->layers);
    lm->inv_freq = malloc(lm->head_dim / 2 * sizeof *lm->inv_freq);
    if (!lm->layers || !lm->inv_freq) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < lm->n_layer; i++) TRY(bind_layer(m, lm, (int)i, &lm->layers[i], err));
    for (uint32_t j = 0; j < lm->head_dim / 2; j++)
        lm->inv_freq[j] = pow((double)lm->rope_theta, -2.0 * j / lm->head_dim);
#undef TRY
    return TERN_OK;
fail:
    llama_unload(m);
    return st;
}

static void llama_session_free(tern_session *s) {
    llama_state *st = s->state;
    if (!st) return;
    free(st->k_cache);
    free(st->v_cache);
    free(st->k_scale);
    free(st->v_scale);
    free(st->x);
    free(st->xn);
    free(st->q);
    free(st->k);
    free(st->v);
    free(st->att);
    free(st->gate);
    free(st->up);
    free(st->rope_cos);
    free(st->rope_sin);
    free(st);
    s->state = NULL;
}

static size_t kv_elem_size(uint8_t kv_type) {
    return kv_type == TERN_KV_F16 ? 2 : kv_type == TERN_KV_Q8 ? 1 : 4;
}

/* Writes one head's vector x[hd] at element `at` of a cache of `type`; Q8
 * stores q = round(x / d) with d = amax / 127 in *scale. */
static void kv_store(uint8_t type, void *cache, size_t at, float *scale, const float *x, size_t hd) {
    if (type == TERN_KV_F16) {
        uint16_t *o = (uint16_t *)cache + at;
        for (size_t j = 0; j < hd; j++) o[j] = tern_f32_to_f16(x[j]);
    } else if (type == TERN_KV_Q8) {
        int8_t *o = (int8_t *)cache + at;
        float amax = 0.0f;
        for (size_t j = 0; j < hd; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (size_t j = 0; j < hd; j++) o[j] = (int8_t)lrintf(x[j] * inv);
        *scale = d;
    } else {
        memcpy((float *)cache + at, x, hd * sizeof(float));
    }
}

static tern_status llama_session_init(tern_session *s, tern_error *err) {
    const llama_model *lm = s->model->impl;
    llama_state *st = calloc(1, sizeof *st);
    if (!st) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating session state");
    s->state = st;
    const size_t B = s->max_batch, q_dim = (size_t)lm->n_head * lm->head_dim,
                 kv_dim = (size_t)lm->n_head_kv * lm->head_dim;
    const size_t cache = (size_t)lm->n_layer * lm->n_head_kv;
    int failed = 0;
    const size_t esize = kv_elem_size(s->kv_type);
    /* the caches in whole floats: cache * n_ctx * head_dim elements of esize bytes */
    const size_t cache_floats = (cache * s->n_ctx * lm->head_dim * esize + 3) / 4;
    st->k_cache = tern_alloc_floats(cache_floats, 1, 1, &failed);
    st->v_cache = tern_alloc_floats(cache_floats, 1, 1, &failed);
    size_t bytes = 2 * cache_floats * sizeof(float);
    if (s->kv_type == TERN_KV_Q8) {
        st->k_scale = tern_alloc_floats(cache, s->n_ctx, 1, &failed);
        st->v_scale = tern_alloc_floats(cache, s->n_ctx, 1, &failed);
        bytes += 2 * cache * s->n_ctx * sizeof(float);
    }
    st->x = tern_alloc_floats(B, lm->d_model, 1, &failed);
    st->xn = tern_alloc_floats(B, lm->d_model, 1, &failed);
    st->q = tern_alloc_floats(B, q_dim, 1, &failed);
    st->k = tern_alloc_floats(B, kv_dim, 1, &failed);
    st->v = tern_alloc_floats(B, kv_dim, 1, &failed);
    st->att = tern_alloc_floats(B, q_dim, 1, &failed);
    st->gate = tern_alloc_floats(B, lm->d_ff, 1, &failed);
    st->up = tern_alloc_floats(B, lm->d_ff, 1, &failed);
    st->rope_cos = tern_alloc_floats(B, lm->head_dim / 2, 1, &failed);
    st->rope_sin = tern_alloc_floats(B, lm->head_dim / 2, 1, &failed);
    if (failed) {
        llama_session_free(s);
        return tern_fail(err, TERN_ERR_NO_MEMORY,
                         "out of memory allocating the KV cache for %u positions (%.1f MiB)", s->n_ctx,
                         (double)bytes / 1048576.0);
    }
    bytes += (size_t)B * (2 * lm->d_model + 2 * q_dim + 2 * kv_dim + 2 * lm->d_ff + lm->head_dim) *
             sizeof(float);
    s->state_bytes = bytes;
    return TERN_OK;
}

static void llama_forward(tern_session *s, const int32_t *tokens, size_t n, float *logits,
                          tern_logits_mode mode) {
    const tern_model *m = s->model;
    const llama_model *lm = m->impl;
    const tern_kernels *k = &m->kernels;
    llama_state *st = s->state;
    const size_t d = lm->d_model, hd = lm->head_dim, half = hd / 2;
    const size_t q_dim = (size_t)lm->n_head * hd, kv_dim = (size_t)lm->n_head_kv * hd;
    const size_t pos0 = s->n_pos, ctx = s->n_ctx;
    const tern_rope_fn rope = lm->rope_layout == 0 ? k->rope_half : k->rope_interleaved;

    uint32_t block0, block_end;
    const int resumed = tern_window_begin(s, lm->n_layer, st->x, n, d, &block0, &block_end);
    for (size_t t = 0; t < n; t++) {
        if (!resumed) tern_weight_row_f32(&lm->token_embd, (size_t)tokens[t], st->x + t * d);
        for (size_t j = 0; j < half; j++) {
            const double angle = (double)(pos0 + t) * lm->inv_freq[j];
            st->rope_cos[t * half + j] = (float)cos(angle);
            st->rope_sin[t * half + j] = (float)sin(angle);
        }
    }

    tern_attention_args attn = {
        .head_dim = hd,
        .n_head = lm->n_head,
        .n_head_kv = lm->n_head_kv,
        .kv_head_stride = ctx * hd,
        .scale = 1.0f / sqrtf((float)hd),
        .q = st->q,
        .out = st->att,
        .kv_type = s->kv_type,
        .kv_scale_stride = ctx,
    };
    const size_t esize = kv_elem_size(s->kv_type);

    for (uint32_t l = block0; l < block_end; l++) {
        tern_window_save(s, l, st->x, n, d);
        const llama_layer *L = &lm->layers[l];
        const size_t layer_at = (size_t)l * lm->n_head_kv * ctx;
        void *k_cache = (char *)st->k_cache + layer_at * hd * esize;
        void *v_cache = (char *)st->v_cache + layer_at * hd * esize;
        float *k_scale = st->k_scale ? st->k_scale + layer_at : NULL;
        float *v_scale = st->v_scale ? st->v_scale + layer_at : NULL;

        for (size_t t = 0; t < n; t++) k->rmsnorm(d, st->x + t * d, L->attn_norm, lm->norm_eps, st->xn + t * d);
        tern_parallel_linear(s, n, st->xn, d, &L->wq, L->bq, st->q, q_dim);
        tern_parallel_linear(s, n, st->xn, d, &L->wk, L->bk, st->k, kv_dim);
        tern_parallel_linear(s, n, st->xn, d, &L->wv, L->bv, st->v, kv_dim);
        for (size_t t = 0; t < n; t++) {
            rope(lm->n_head, hd, st->q + t * q_dim, st->rope_cos + t * half, st->rope_sin + t * half);
            rope(lm->n_head_kv, hd, st->k + t * kv_dim, st->rope_cos + t * half, st->rope_sin + t * half);
            for (size_t h = 0; h < lm->n_head_kv; h++) {
                const size_t pos = h * ctx + pos0 + t;
                kv_store(s->kv_type, k_cache, pos * hd, k_scale ? k_scale + pos : NULL,
                         st->k + t * kv_dim + h * hd, hd);
                kv_store(s->kv_type, v_cache, pos * hd, v_scale ? v_scale + pos : NULL,
                         st->v + t * kv_dim + h * hd, hd);
            }
        }
        attn.k = k_cache;
        attn.v = v_cache;
        attn.k_scale = k_scale;
        attn.v_scale = v_scale;
        tern_parallel_attention(s, &attn, n, pos0, q_dim);
        /* The output projection writes into xn (free now), then the residual. */
        tern_parallel_linear(s, n, st->att, q_dim, &L->wo, L->bo, st->xn, d);
        k->add(n * d, st->x, st->xn, st->x);

        for (size_t t = 0; t < n; t++) k->rmsnorm(d, st->x + t * d, L->ffn_norm, lm->norm_eps, st->xn + t * d);
        tern_parallel_linear(s, n, st->xn, d, &L->w_gate, NULL, st->gate, lm->d_ff);
        tern_parallel_linear(s, n, st->xn, d, &L->w_up, NULL, st->up, lm->d_ff);
        k->swiglu(n * lm->d_ff, st->gate, st->up, st->gate);
        tern_parallel_linear(s, n, st->gate, lm->d_ff, &L->w_down, NULL, st->xn, d);
        k->add(n * d, st->x, st->xn, st->x);
    }
    if (tern_window_end(s, lm->n_layer, block_end, st->x, n, d)) return;

    if (mode == TERN_LOGITS_NONE) return;
    const size_t first = mode == TERN_LOGITS_LAST ? n - 1 : 0;
    for (size_t t = first; t < n; t++) k->rmsnorm(d, st->x + t * d, lm->output_norm, lm->norm_eps, st->xn + t * d);
    tern_parallel_linear(s, n - first, st->xn + first * d, d, &lm->output, NULL, logits, lm->n_vocab);
}

static tern_status llama_truncate(tern_session *s, uint32_t n_keep, tern_error *err) {
    (void)s;
    (void)n_keep;
    (void)err;
    return TERN_OK; /* positions past n_keep are simply overwritten later */
}

const tern_arch_ops tern_llama_ops = {
    .name = "llama",
    .load = llama_load,
    .unload = llama_unload,
    .session_init = llama_session_init,
    .session_free = llama_session_free,
    .forward = llama_forward,
    .truncate = llama_truncate,
};
