/* RWKV-4 (BlinkDL/RWKV-LM, HF RwkvForCausalLM).
 *
 *   x = embed(token);  x = pre_ln(x)                             (block 0 only)
 *   per block, with shift(h, mix) = h * mix + h_prev * (1 - mix), h_prev the
 *   previous token's h (the session's shift state across chunks):
 *     h = ln1(x)
 *     k = Wk · shift(h, mk);  v = Wv · shift(h, mv);  r = Wr · shift(h, mr)
 *     x = x + Wo · (sigmoid(r) * wkv(w, u, k, v))        (recurrence over time)
 *     h = ln2(x)
 *     k = relu(Wfk · shift(h, fmk))^2;  r = Wfr · shift(h, fmr)
 *     x = x + sigmoid(r) * (Wfv · k)
 *     x = x / 2 after every rescale_every-th block, where the outputs of Wo and
 *     Wfv are divided by 2^(block / rescale_every): transformers' eval mode
 *   logits = Whead · ln_out(x)
 *
 * A chunk of n tokens runs each projection as one GEMM over the chunk; the
 * token shift and the WKV recurrence walk time inside the kernels, the WKV
 * one channel at a time over channel ranges spread across the thread pool.
 *
 * Session state per block: the shift states att_x_prev and ffn_x_prev
 * ([d_model] each, ln1 / ln2 outputs of the last token) and the WKV state
 * (aa, bb, pp) ([d_att] each). It does not grow with the position, so
 * truncate can only reset to 0 or keep everything.
 *
 * RWKV-5/6 would add to this: a per-head matrix state [n_head][head][head]
 * per block beside the shift states (wkv state of another shape, same
 * per-block layout), a `wkv5` kernel over head ranges, and for v6 the
 * data-dependent token shift (ddlerp) in place of rwkv_shift. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

/* The fresh WKV exponent: exp(pp - anything finite) is 0 (transformers' -1e38). */
#define RWKV_PP_INIT (-1e38f)
/* At most 2^-63 of scaling: far inside float's range. */
#define RWKV_MAX_HALVINGS 64u

typedef struct {
    const float *att_norm_w, *att_norm_b; /* ln1 [d_model] */
    const float *mix_k, *mix_v, *mix_r;   /* [d_model] */
    const float *decay;                   /* [d_att], w = -exp(time_decay) */
    const float *first;                   /* [d_att], u */
    tern_weight wk, wv, wr;               /* [d_att][d_model] */
    tern_weight wo;                       /* [d_model][d_att] */
    const float *ffn_norm_w, *ffn_norm_b; /* ln2 [d_model] */
    const float *ffn_mix_k, *ffn_mix_r;   /* [d_model] */
    tern_weight ffn_k;                    /* [d_ff][d_model] */
    tern_weight ffn_r;                    /* [d_model][d_model] */
    tern_weight ffn_v;                    /* [d_model][d_ff] */
    float out_scale;                      /* 2^-(block / rescale_every), or 1 */
} rwkv_layer;

typedef struct {
    uint32_t d_model, n_layer, n_vocab, d_att, d_ff, rescale_every;
    float norm_eps, out_norm_eps;
    tern_weight token_embd;
    tern_weight output; /* token_embd when tied */
    const float *pre_norm_w, *pre_norm_b;
    const float *out_norm_w, *out_norm_b;
    rwkv_layer *layers;
} rwkv_model;

/* The recurrent state, per block: shift [2][d_model] (attention, FFN),
 * wkv [3][d_att] (aa, bb, pp). */
typedef struct {
    float *shift; /* [n_layer][2][d_model] */
    float *wkv;   /* [n_layer][3][d_att] */
    /* [max_batch][...] scratch */
    float *x, *xn;      /* [d_model]: residual stream, normed */
    float *xk, *xv, *xr; /* [d_model]: token-shifted inputs */
    float *k, *v, *r, *y; /* [d_att]: projections, gated WKV output */
    float *fk;          /* [d_ff]: channel-mix key */
    float *fr, *proj;   /* [d_model]: channel-mix receptance, projection out */
} rwkv_state;

/* A LayerNorm: "<x>.weight" and "<x>.bias", both F32 [n]. */
static tern_status bind_norm(const tern_model *m, const char *weight_name, size_t n,
                             const float **w, const float **b, tern_error *err) {
    tern_status st = tern_bind_vector(m, weight_name, n, 0, w, err);
    if (st != TERN_OK) return st;
    char name[96];
    snprintf(name, sizeof name, "%.*s.bias", (int)(strlen(weight_name) - strlen(".weight")),
             weight_name);
    return tern_bind_vector(m, name, n, 0, b, err);
}

static tern_status bind_layer(tern_model *m, const rwkv_model *rm, int i, rwkv_layer *L,
                              tern_error *err) {
    char name[96];
    tern_status st;
    const size_t d = rm->d_model, da = rm->d_att, ff = rm->d_ff;
#define NAME(fmt) (snprintf(name, sizeof name, fmt, i), name)
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) return st
    TRY(bind_norm(m, NAME(TERN_T_RWKV_ATT_NORM), d, &L->att_norm_w, &L->att_norm_b, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_ATT_MIX_K), d, 0, &L->mix_k, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_ATT_MIX_V), d, 0, &L->mix_v, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_ATT_MIX_R), d, 0, &L->mix_r, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_DECAY), da, 0, &L->decay, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_FIRST), da, 0, &L->first, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_ATT_K), da, d, &L->wk, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_ATT_V), da, d, &L->wv, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_ATT_R), da, d, &L->wr, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_ATT_OUT), d, da, &L->wo, err));
    TRY(bind_norm(m, NAME(TERN_T_RWKV_FFN_NORM), d, &L->ffn_norm_w, &L->ffn_norm_b, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_FFN_MIX_K), d, 0, &L->ffn_mix_k, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_RWKV_FFN_MIX_R), d, 0, &L->ffn_mix_r, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_FFN_K), ff, d, &L->ffn_k, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_FFN_R), d, d, &L->ffn_r, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_RWKV_FFN_V), d, ff, &L->ffn_v, err));
    /* w = -exp(time_decay) is never positive; u must be a number. NaN here
     * would silently poison every later token of a session. */
    for (size_t c = 0; c < da; c++) {
        if (!(L->decay[c] <= 0.0f) || !isfinite(L->first[c]))
            return tern_fail(err, TERN_ERR_FORMAT,
                             "block %d channel %zu: decay w = %g must be <= 0 and time_first "
                             "u = %g finite (%s, %s)",
                             i, c, L->decay[c], L->first[c], TERN_T_RWKV_DECAY, TERN_T_RWKV_FIRST);
    }
#undef NAME
#undef TRY
    L->out_scale = rm->rescale_every ? ldexpf(1.0f, -(int)((uint32_t)i / rm->rescale_every)) : 1.0f;
    return TERN_OK;
}

static void rwkv_unload(tern_model *m) {
    rwkv_model *rm = m->impl;
    if (!rm) return;
    free(rm->layers);
    free(rm);
    m->impl = NULL;
}

static tern_status rwkv_load(tern_model *m, tern_error *err) {
    rwkv_model *rm = calloc(1, sizeof *rm);
    if (!rm) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    m->impl = rm;
    tern_status st;
    const uint32_t big = 1u << 24;
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) goto fail
    TRY(tern_meta_u32_range(m, TERN_KEY_N_VOCAB, &rm->n_vocab, 1, big, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_CTX, &m->n_ctx, 1, UINT32_MAX, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_MODEL, &rm->d_model, 1, 1u << 16, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_LAYER, &rm->n_layer, 1, 1024, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_RWKV_D_ATT, &rm->d_att, 1, 1u << 18, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_FF, &rm->d_ff, 1, 1u << 20, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_RWKV_RESCALE, &rm->rescale_every, 0, 1024, err));
    if (rm->rescale_every && rm->n_layer / rm->rescale_every >= RWKV_MAX_HALVINGS) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s = %u halves the residual %u times (at most %u)",
                       TERN_KEY_RWKV_RESCALE, rm->rescale_every, rm->n_layer / rm->rescale_every,
                       RWKV_MAX_HALVINGS - 1);
        goto fail;
    }
    TRY(tern_file_meta_f32(&m->file, TERN_KEY_NORM_EPS, &rm->norm_eps, err));
    rm->out_norm_eps = rm->norm_eps;
    if (tern_file_has_meta(&m->file, TERN_KEY_RWKV_OUT_EPS))
        TRY(tern_file_meta_f32(&m->file, TERN_KEY_RWKV_OUT_EPS, &rm->out_norm_eps, err));
    if (!(rm->norm_eps >= 0.0f && rm->norm_eps < 1.0f) ||
        !(rm->out_norm_eps >= 0.0f && rm->out_norm_eps < 1.0f)) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s %g or %s %g is outside [0, 1)", TERN_KEY_NORM_EPS,
                       rm->norm_eps, TERN_KEY_RWKV_OUT_EPS, rm->out_norm_eps);
        goto fail;
    }
    m->n_vocab = rm->n_vocab;
    m->n_layer = rm->n_layer;
    m->d_model = rm->d_model;
    m->bos_token = -1;
    m->eos_token = -1;
    if (tern_file_has_meta(&m->file, TERN_KEY_BOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_BOS, &m->bos_token, err));
    if (tern_file_has_meta(&m->file, TERN_KEY_EOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_EOS, &m->eos_token, err));

    TRY(tern_bind_weight(m, TERN_T_TOKEN_EMBD, rm->n_vocab, rm->d_model, &rm->token_embd, err));
    if (!tern_weight_rows_readable(&rm->token_embd)) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "token_embd.weight: encoding %s cannot be looked up",
                       tern_encoding_name(rm->token_embd.encoding));
        goto fail;
    }
    if (tern_model_has_tensor(m, TERN_T_OUTPUT)) {
        TRY(tern_bind_weight(m, TERN_T_OUTPUT, rm->n_vocab, rm->d_model, &rm->output, err));
    } else {
        rm->output = rm->token_embd;
    }
    TRY(bind_norm(m, TERN_T_RWKV_PRE_NORM, rm->d_model, &rm->pre_norm_w, &rm->pre_norm_b, err));
    TRY(bind_norm(m, TERN_T_RWKV_OUT_NORM, rm->d_model, &rm->out_norm_w, &rm->out_norm_b, err));
    if (!m->kernels.wkv4 || !m->kernels.rwkv_shift || !m->kernels.layernorm) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "the kernel table has no RWKV-4 kernels");
        goto fail;
    }

    rm->layers = calloc(rm->n_layer, sizeof *rm->layers);
    if (!rm->layers) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < rm->n_layer; i++) TRY(bind_layer(m, rm, (int)i, &rm->layers[i], err));
#undef TRY
    return TERN_OK;
fail:
    rwkv_unload(m);
    return st;
}

static void rwkv_session_free(tern_session *s) {
    rwkv_state *st = s->state;
    if (!st) return;
    float *bufs[] = {st->shift, st->wkv, st->x,  st->xn, st->xk, st->xv, st->xr,
                     st->k,     st->v,   st->r,  st->y,  st->fk, st->fr, st->proj};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(st);
    s->state = NULL;
}

/* The state of a fresh session: zero shift states, aa = bb = 0, pp = -1e38. */
static void reset_state(const rwkv_model *rm, rwkv_state *st) {
    const size_t da = rm->d_att;
    memset(st->shift, 0, (size_t)rm->n_layer * 2 * rm->d_model * sizeof(float));
    for (size_t l = 0; l < rm->n_layer; l++) {
        float *w = st->wkv + l * 3 * da;
        memset(w, 0, 2 * da * sizeof(float));
        for (size_t c = 0; c < da; c++) w[2 * da + c] = RWKV_PP_INIT;
    }
}

static tern_status rwkv_session_init(tern_session *s, tern_error *err) {
    const rwkv_model *rm = s->model->impl;
    rwkv_state *st = calloc(1, sizeof *st);
    if (!st) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating session state");
    s->state = st;
    const size_t B = s->max_batch, d = rm->d_model, da = rm->d_att;
    int failed = 0;
    st->shift = tern_alloc_floats(rm->n_layer, 2, d, &failed);
    st->wkv = tern_alloc_floats(rm->n_layer, 3, da, &failed);
    st->x = tern_alloc_floats(B, d, 1, &failed);
    st->xn = tern_alloc_floats(B, d, 1, &failed);
    st->xk = tern_alloc_floats(B, d, 1, &failed);
    st->xv = tern_alloc_floats(B, d, 1, &failed);
    st->xr = tern_alloc_floats(B, d, 1, &failed);
    st->k = tern_alloc_floats(B, da, 1, &failed);
    st->v = tern_alloc_floats(B, da, 1, &failed);
    st->r = tern_alloc_floats(B, da, 1, &failed);
    st->y = tern_alloc_floats(B, da, 1, &failed);
    st->fk = tern_alloc_floats(B, rm->d_ff, 1, &failed);
    st->fr = tern_alloc_floats(B, d, 1, &failed);
    st->proj = tern_alloc_floats(B, d, 1, &failed);
    if (failed) {
        rwkv_session_free(s);
        return tern_fail(err, TERN_ERR_NO_MEMORY,
                         "out of memory allocating RWKV state and scratch for a batch of %zu", B);
    }
    reset_state(rm, st);
    return TERN_OK;
}

/* The WKV over channel ranges; a channel's result is the same whatever range
 * it falls in, so logits do not depend on the thread count. */
typedef struct {
    const tern_kernels *k;
    const tern_wkv4_args *args;
} wkv_task;

static void wkv_tile(void *ctx, size_t c0, size_t count) {
    const wkv_task *t = ctx;
    t->k->wkv4(t->args, c0, c0 + count);
}

static void parallel_wkv(const tern_session *s, wkv_task *t, size_t channels) {
    const size_t threads = s->n_threads ? s->n_threads : 1;
    size_t tile = channels / (4 * threads);
    tile = (tile + 15) & ~(size_t)15;
    if (tile < 16) tile = 16;
    if (!s->pool || threads <= 1 || channels <= tile) {
        wkv_tile(t, 0, channels);
        return;
    }
    pthreadpool_parallelize_1d_tile_1d(s->pool, wkv_tile, t, channels, tile, 0);
}

/* Runs ln over n rows of d floats: y[t] = layernorm(x[t]). */
static void layernorm_rows(const tern_kernels *k, size_t n, size_t d, const float *x,
                           const float *w, const float *b, float eps, float *y) {
    for (size_t t = 0; t < n; t++) k->layernorm(d, x + t * d, w, b, eps, y + t * d);
}

static void rwkv_forward(tern_session *s, const int32_t *tokens, size_t n, float *logits,
                         tern_logits_mode mode) {
    const tern_model *m = s->model;
    const rwkv_model *rm = m->impl;
    const tern_kernels *k = &m->kernels;
    rwkv_state *st = s->state;
    const size_t d = rm->d_model, da = rm->d_att, ff = rm->d_ff;

    for (size_t t = 0; t < n; t++)
        tern_weight_row_f32(&rm->token_embd, (size_t)tokens[t], st->x + t * d);
    layernorm_rows(k, n, d, st->x, rm->pre_norm_w, rm->pre_norm_b, rm->norm_eps, st->x);

    for (uint32_t l = 0; l < rm->n_layer; l++) {
        const rwkv_layer *L = &rm->layers[l];
        float *att_prev = st->shift + (size_t)l * 2 * d, *ffn_prev = att_prev + d;
        float *wkv = st->wkv + (size_t)l * 3 * da;

        /* Time mix. */
        layernorm_rows(k, n, d, st->x, L->att_norm_w, L->att_norm_b, rm->norm_eps, st->xn);
        k->rwkv_shift(n, d, st->xn, att_prev, L->mix_k, st->xk);
        k->rwkv_shift(n, d, st->xn, att_prev, L->mix_v, st->xv);
        k->rwkv_shift(n, d, st->xn, att_prev, L->mix_r, st->xr);
        memcpy(att_prev, st->xn + (n - 1) * d, d * sizeof(float));
        tern_parallel_linear(s, n, st->xk, d, &L->wk, NULL, st->k, da);
        tern_parallel_linear(s, n, st->xv, d, &L->wv, NULL, st->v, da);
        tern_parallel_linear(s, n, st->xr, d, &L->wr, NULL, st->r, da);
        const tern_wkv4_args args = {
            .n_tokens = n,
            .k = st->k,
            .ldk = da,
            .v = st->v,
            .ldv = da,
            .r = st->r,
            .ldr = da,
            .w = L->decay,
            .u = L->first,
            .aa = wkv,
            .bb = wkv + da,
            .pp = wkv + 2 * da,
            .y = st->y,
            .ldy = da,
        };
        wkv_task task = {k, &args};
        parallel_wkv(s, &task, da);
        tern_parallel_linear(s, n, st->y, da, &L->wo, NULL, st->proj, d);
        if (L->out_scale != 1.0f)
            for (size_t i = 0; i < n * d; i++) st->proj[i] *= L->out_scale;
        k->add(n * d, st->x, st->proj, st->x);

        /* Channel mix. */
        layernorm_rows(k, n, d, st->x, L->ffn_norm_w, L->ffn_norm_b, rm->norm_eps, st->xn);
        k->rwkv_shift(n, d, st->xn, ffn_prev, L->ffn_mix_k, st->xk);
        k->rwkv_shift(n, d, st->xn, ffn_prev, L->ffn_mix_r, st->xr);
        memcpy(ffn_prev, st->xn + (n - 1) * d, d * sizeof(float));
        tern_parallel_linear(s, n, st->xk, d, &L->ffn_k, NULL, st->fk, ff);
        for (size_t i = 0; i < n * ff; i++) {
            const float a = st->fk[i] > 0.0f ? st->fk[i] : 0.0f;
            st->fk[i] = a * a;
        }
        tern_parallel_linear(s, n, st->fk, ff, &L->ffn_v, NULL, st->proj, d);
        tern_parallel_linear(s, n, st->xr, d, &L->ffn_r, NULL, st->fr, d);
        for (size_t i = 0; i < n * d; i++)
            st->proj[i] = st->proj[i] * L->out_scale * (1.0f / (1.0f + expf(-st->fr[i])));
        k->add(n * d, st->x, st->proj, st->x);

        if (rm->rescale_every && (l + 1) % rm->rescale_every == 0)
            for (size_t i = 0; i < n * d; i++) st->x[i] *= 0.5f;
    }

    if (mode == TERN_LOGITS_NONE) return;
    const size_t first = mode == TERN_LOGITS_LAST ? n - 1 : 0;
    layernorm_rows(k, n - first, d, st->x + first * d, rm->out_norm_w, rm->out_norm_b,
                   rm->out_norm_eps, st->xn + first * d);
    tern_parallel_linear(s, n - first, st->xn + first * d, d, &rm->output, NULL, logits, rm->n_vocab);
}

static tern_status rwkv_truncate(tern_session *s, uint32_t n_keep, tern_error *err) {
    if (n_keep == s->n_pos) return TERN_OK;
    if (n_keep != 0)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "an rwkv4 session keeps a recurrent state, not positions: it can be "
                         "truncated to 0 (reset) or %u (no change), not %u",
                         s->n_pos, n_keep);
    reset_state(s->model->impl, s->state);
    return TERN_OK;
}

const tern_arch_ops tern_rwkv4_ops = {
    .name = "rwkv4",
    .load = rwkv_load,
    .unload = rwkv_unload,
    .session_init = rwkv_session_init,
    .session_free = rwkv_session_free,
    .forward = rwkv_forward,
    .truncate = rwkv_truncate,
};
