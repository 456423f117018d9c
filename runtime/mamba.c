/* Mamba-1 (state-spaces/mamba, HF MambaForCausalLM).
 *
 *   x = embed(token)
 *   per layer: (u, z) = W_in · rmsnorm(x)                          [2*d_inner]
 *              u = silu(causal_depthwise_conv1d(u) + b_conv)         over time
 *              (dt, B, C) = W_x · u                          [dt_rank, N, N]
 *              dt = softplus(W_dt · dt + b_dt)                         [d_inner]
 *              h = exp(dt * A) * h + dt * B * u;  y = C · h + D * u   per channel
 *              x = x + W_out · (y * silu(z))
 *   logits = W_head · rmsnorm(x)
 *
 * A chunk of n tokens runs each projection as one GEMM over the chunk, and
 * the conv and the scan walk time inside the kernels, one channel at a time,
 * with channel ranges spread over the thread pool. The session holds per
 * layer the conv window [d_inner][d_conv - 1] and the SSM state
 * [d_inner][d_state]; nothing grows with the position, so truncate can only
 * reset to 0 or keep everything. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

#define MAMBA_MAX_STATE 1024
#define MAMBA_MAX_CONV 256

typedef struct {
    const float *norm;       /* [d_model] */
    tern_weight w_in;        /* [2*d_inner][d_model] */
    const float *b_in;       /* [2*d_inner] or NULL */
    const float *conv_w;     /* [d_inner][d_conv] */
    const float *conv_b;     /* [d_inner] or NULL */
    tern_weight w_x;         /* [dt_rank + 2*d_state][d_inner] */
    tern_weight w_dt;        /* [d_inner][dt_rank] */
    const float *b_dt;       /* [d_inner] */
    const float *A;          /* [d_inner][d_state], -exp(A_log) */
    const float *D;          /* [d_inner] */
    tern_weight w_out;       /* [d_model][d_inner] */
    const float *b_out;      /* [d_model] or NULL */
} mamba_layer;

typedef struct {
    uint32_t d_model, n_layer, n_vocab, d_inner, d_state, d_conv, dt_rank;
    float norm_eps;
    tern_weight token_embd;
    tern_weight output; /* token_embd when tied */
    const float *output_norm;
    mamba_layer *layers;
} mamba_model;

typedef struct {
    float *conv_state; /* [n_layer][d_inner][d_conv - 1] */
    float *ssm_state;  /* [n_layer][d_inner][d_state] */
    /* [max_batch][...] scratch */
    float *x, *xn;     /* [d_model] residual stream, normed / projected */
    float *xz;         /* [2*d_inner]: in_proj output, u then z */
    float *u;          /* [d_inner]: conv output */
    float *dbc;        /* [dt_rank + 2*d_state]: x_proj output */
    float *dt;         /* [d_inner] */
    float *y;          /* [d_inner]: gated scan output */
} mamba_state;

/* A 2-D F32 tensor the kernels read directly (conv taps, A). */
static tern_status bind_layer(tern_model *m, const mamba_model *mm, int i, mamba_layer *L,
                              tern_error *err) {
    char name[96];
    tern_status st;
    const size_t d = mm->d_model, di = mm->d_inner, ds = mm->d_state;
    const size_t xr = (size_t)mm->dt_rank + 2 * ds;
#define NAME(fmt) (snprintf(name, sizeof name, fmt, i), name)
#define BIAS(fmt) (snprintf(name, sizeof name, fmt, i), strcpy(name + strlen(name) - 6, "bias"), name)
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) return st
    TRY(tern_bind_vector(m, NAME(TERN_T_SSM_NORM), d, 0, &L->norm, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_SSM_IN), 2 * di, d, &L->w_in, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_SSM_IN), 2 * di, 1, &L->b_in, err));
    TRY(tern_bind_matrix_f32(m, NAME(TERN_T_SSM_CONV), di, mm->d_conv, &L->conv_w, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_SSM_CONV), di, 1, &L->conv_b, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_SSM_X), xr, di, &L->w_x, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_SSM_DT), di, mm->dt_rank, &L->w_dt, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_SSM_DT), di, 0, &L->b_dt, err));
    TRY(tern_bind_matrix_f32(m, NAME(TERN_T_SSM_A), di, ds, &L->A, err));
    TRY(tern_bind_vector(m, NAME(TERN_T_SSM_D), di, 0, &L->D, err));
    TRY(tern_bind_weight(m, NAME(TERN_T_SSM_OUT), d, di, &L->w_out, err));
    TRY(tern_bind_vector(m, BIAS(TERN_T_SSM_OUT), d, 1, &L->b_out, err));
#undef NAME
#undef BIAS
#undef TRY
    return TERN_OK;
}

static void mamba_unload(tern_model *m) {
    mamba_model *mm = m->impl;
    if (!mm) return;
    free(mm->layers);
    free(mm);
    m->impl = NULL;
}

static tern_status mamba_load(tern_model *m, tern_error *err) {
    mamba_model *mm = calloc(1, sizeof *mm);
    if (!mm) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    m->impl = mm;
    tern_status st;
    const uint32_t big = 1u << 24;
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) goto fail
    TRY(tern_meta_u32_range(m, TERN_KEY_N_VOCAB, &mm->n_vocab, 1, big, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_CTX, &m->n_ctx, 1, UINT32_MAX, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_MODEL, &mm->d_model, 1, 1u << 16, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_LAYER, &mm->n_layer, 1, 1024, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_SSM_D_INNER, &mm->d_inner, 1, 1u << 18, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_SSM_D_STATE, &mm->d_state, 1, MAMBA_MAX_STATE, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_SSM_D_CONV, &mm->d_conv, 1, MAMBA_MAX_CONV, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_SSM_DT_RANK, &mm->dt_rank, 1, mm->d_inner, err));
    TRY(tern_file_meta_f32(&m->file, TERN_KEY_NORM_EPS, &mm->norm_eps, err));
    if (!(mm->norm_eps >= 0.0f && mm->norm_eps < 1.0f)) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s %g is outside [0, 1)", TERN_KEY_NORM_EPS,
                       mm->norm_eps);
        goto fail;
    }
    m->n_vocab = mm->n_vocab;
    m->n_layer = mm->n_layer;
    m->d_model = mm->d_model;
    m->bos_token = -1;
    m->eos_token = -1;
    if (tern_file_has_meta(&m->file, TERN_KEY_BOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_BOS, &m->bos_token, err));
    if (tern_file_has_meta(&m->file, TERN_KEY_EOS)) TRY(tern_file_meta_i32(&m->file, TERN_KEY_EOS, &m->eos_token, err));

    TRY(tern_bind_weight(m, TERN_T_TOKEN_EMBD, mm->n_vocab, mm->d_model, &mm->token_embd, err));
    if (!tern_weight_rows_readable(&mm->token_embd)) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "token_embd.weight: encoding %s cannot be looked up",
                       tern_encoding_name(mm->token_embd.encoding));
        goto fail;
    }
    if (tern_model_has_tensor(m, TERN_T_OUTPUT)) {
        TRY(tern_bind_weight(m, TERN_T_OUTPUT, mm->n_vocab, mm->d_model, &mm->output, err));
    } else {
        mm->output = mm->token_embd;
    }
    TRY(tern_bind_vector(m, TERN_T_OUTPUT_NORM, mm->d_model, 0, &mm->output_norm, err));
    if (!m->kernels.ssm_conv || !m->kernels.ssm_scan) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "the kernel table has no Mamba conv/scan kernels");
        goto fail;
    }

    mm->layers = calloc(mm->n_layer, sizeof *mm->layers);
    if (!mm->layers) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < mm->n_layer; i++) TRY(bind_layer(m, mm, (int)i, &mm->layers[i], err));
#undef TRY
    return TERN_OK;
fail:
    mamba_unload(m);
    return st;
}

static void mamba_session_free(tern_session *s) {
    mamba_state *st = s->state;
    if (!st) return;
    free(st->conv_state);
    free(st->ssm_state);
    free(st->x);
    free(st->xn);
    free(st->xz);
    free(st->u);
    free(st->dbc);
    free(st->dt);
    free(st->y);
    free(st);
    s->state = NULL;
}

static tern_status mamba_session_init(tern_session *s, tern_error *err) {
    const mamba_model *mm = s->model->impl;
    mamba_state *st = calloc(1, sizeof *st);
    if (!st) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating session state");
    s->state = st;
    const size_t B = s->max_batch, di = mm->d_inner;
    int failed = 0;
    st->conv_state = tern_alloc_floats(mm->n_layer, di, mm->d_conv - 1, &failed);
    st->ssm_state = tern_alloc_floats(mm->n_layer, di, mm->d_state, &failed);
    st->x = tern_alloc_floats(B, mm->d_model, 1, &failed);
    st->xn = tern_alloc_floats(B, mm->d_model, 1, &failed);
    st->xz = tern_alloc_floats(B, 2 * di, 1, &failed);
    st->u = tern_alloc_floats(B, di, 1, &failed);
    st->dbc = tern_alloc_floats(B, (size_t)mm->dt_rank + 2 * (size_t)mm->d_state, 1, &failed);
    st->dt = tern_alloc_floats(B, di, 1, &failed);
    st->y = tern_alloc_floats(B, di, 1, &failed);
    if (failed) {
        mamba_session_free(s);
        return tern_fail(err, TERN_ERR_NO_MEMORY,
                         "out of memory allocating Mamba state and scratch for a batch of %zu", B);
    }
    return TERN_OK;
}

/* The conv and the scan over channel ranges; a channel's result is the same
 * whatever range it falls in, so logits do not depend on the thread count. */
typedef struct {
    const tern_kernels *k;
    const tern_ssm_conv_args *conv;
    const tern_ssm_scan_args *scan;
} channel_task;

static void conv_tile(void *ctx, size_t c0, size_t count) {
    const channel_task *t = ctx;
    t->k->ssm_conv(t->conv, c0, c0 + count);
}

static void scan_tile(void *ctx, size_t c0, size_t count) {
    const channel_task *t = ctx;
    t->k->ssm_scan(t->scan, c0, c0 + count);
}

static void parallel_channels(const tern_session *s, pthreadpool_task_1d_tile_1d_t fn,
                              channel_task *t, size_t d_inner) {
    const size_t threads = s->n_threads ? s->n_threads : 1;
    size_t tile = d_inner / (4 * threads);
    tile = (tile + 15) & ~(size_t)15;
    if (tile < 16) tile = 16;
    if (!s->pool || threads <= 1 || d_inner <= tile) {
        fn(t, 0, d_inner);
        return;
    }
    pthreadpool_parallelize_1d_tile_1d(s->pool, fn, t, d_inner, tile, 0);
}

static void mamba_forward(tern_session *s, const int32_t *tokens, size_t n, float *logits,
                          tern_logits_mode mode) {
    const tern_model *m = s->model;
    const mamba_model *mm = m->impl;
    const tern_kernels *k = &m->kernels;
    mamba_state *st = s->state;
    const size_t d = mm->d_model, di = mm->d_inner, ds = mm->d_state, K = mm->d_conv;
    const size_t R = mm->dt_rank, xr = R + 2 * ds;

    for (size_t t = 0; t < n; t++)
        tern_weight_row_f32(&mm->token_embd, (size_t)tokens[t], st->x + t * d);

    for (uint32_t l = 0; l < mm->n_layer; l++) {
        const mamba_layer *L = &mm->layers[l];
        for (size_t t = 0; t < n; t++) k->rmsnorm(d, st->x + t * d, L->norm, mm->norm_eps, st->xn + t * d);
        tern_parallel_linear(s, n, st->xn, d, &L->w_in, L->b_in, st->xz, 2 * di);

        const tern_ssm_conv_args conv = {
            .n_tokens = n,
            .d_conv = K,
            .x = st->xz,
            .ldx = 2 * di,
            .w = L->conv_w,
            .bias = L->conv_b,
            .state = st->conv_state + (size_t)l * di * (K - 1),
            .y = st->u,
            .ldy = di,
        };
        channel_task task = {k, &conv, NULL};
        parallel_channels(s, conv_tile, &task, di);

        tern_parallel_linear(s, n, st->u, di, &L->w_x, NULL, st->dbc, xr);
        tern_parallel_linear(s, n, st->dbc, xr, &L->w_dt, L->b_dt, st->dt, di);

        const tern_ssm_scan_args scan = {
            .n_tokens = n,
            .d_state = ds,
            .x = st->u,
            .ldx = di,
            .dt = st->dt,
            .ld_dt = di,
            .B = st->dbc + R,
            .C = st->dbc + R + ds,
            .ld_bc = xr,
            .z = st->xz + di,
            .ldz = 2 * di,
            .A = L->A,
            .D = L->D,
            .h = st->ssm_state + (size_t)l * di * ds,
            .y = st->y,
            .ldy = di,
        };
        task.scan = &scan;
        parallel_channels(s, scan_tile, &task, di);

        tern_parallel_linear(s, n, st->y, di, &L->w_out, L->b_out, st->xn, d);
        k->add(n * d, st->x, st->xn, st->x);
    }

    if (mode == TERN_LOGITS_NONE) return;
    const size_t first = mode == TERN_LOGITS_LAST ? n - 1 : 0;
    for (size_t t = first; t < n; t++) k->rmsnorm(d, st->x + t * d, mm->output_norm, mm->norm_eps, st->xn + t * d);
    tern_parallel_linear(s, n - first, st->xn + first * d, d, &mm->output, NULL, logits, mm->n_vocab);
}

static tern_status mamba_truncate(tern_session *s, uint32_t n_keep, tern_error *err) {
    if (n_keep == s->n_pos) return TERN_OK;
    if (n_keep != 0)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "a mamba session keeps a recurrent state, not positions: it can be "
                         "truncated to 0 (reset) or %u (no change), not %u",
                         s->n_pos, n_keep);
    const mamba_model *mm = s->model->impl;
    mamba_state *st = s->state;
    const size_t di = mm->d_inner;
    memset(st->conv_state, 0, (size_t)mm->n_layer * di * (mm->d_conv - 1) * sizeof(float));
    memset(st->ssm_state, 0, (size_t)mm->n_layer * di * mm->d_state * sizeof(float));
    return TERN_OK;
}

const tern_arch_ops tern_mamba_ops = {
    .name = "mamba",
    .load = mamba_load,
    .unload = mamba_unload,
    .session_init = mamba_session_init,
    .session_free = mamba_session_free,
    .forward = mamba_forward,
    .truncate = mamba_truncate,
};
