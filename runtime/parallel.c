/* Splitting kernels across the session's thread pool. Each output element is
 * computed by the same code whatever the split, so the results are identical
 * for every thread count. Denormals are left as they are: flushing them only
 * on pool threads would make a split change the result. */
#include "runtime/internal.h"

typedef struct {
    const tern_kernels *k;
    size_t m;
    const float *x;
    size_t ldx;
    const tern_qrows *qx; /* non-NULL: the integer kernel over these rows */
    const tern_weight *w;
    const float *bias;
    float *y;
    size_t ldy;
} linear_task;

/* N:M sparse weights run kernels of their own (kernels.h, linear_nm). */
static tern_linear_fn linear_fn(const tern_kernels *k, const tern_weight *w) {
    return w->sparse_m ? k->linear_nm[w->encoding] : k->linear[w->encoding];
}

static tern_linear_qa_fn linear_qa_fn(const tern_kernels *k, const tern_weight *w) {
    return w->sparse_m ? k->linear_qa_nm[w->encoding] : k->linear_qa[w->encoding];
}

static void linear_tile(void *ctx, size_t r0, size_t count) {
    const linear_task *t = ctx;
    if (t->qx)
        linear_qa_fn(t->k, t->w)(t->m, r0, r0 + count, t->qx, t->w, t->bias, t->y, t->ldy);
    else
        linear_fn(t->k, t->w)(t->m, r0, r0 + count, t->x, t->ldx, t->w, t->bias, t->y, t->ldy);
}

static void linear_run(const tern_session *s, linear_task *t) {
    /* Tiles of whole cache lines of output, several per thread for balance. */
    size_t tile = t->w->rows / (4 * (size_t)(s->n_threads ? s->n_threads : 1));
    tile = (tile + 15) & ~(size_t)15;
    if (tile < 16) tile = 16;
    if (!s->pool || s->n_threads <= 1 || t->w->rows <= tile) {
        linear_tile(t, 0, t->w->rows);
        return;
    }
    pthreadpool_parallelize_1d_tile_1d(s->pool, linear_tile, t, t->w->rows, tile, 0);
}

/* Whether w runs on the integer kernels: Q8/Q4 whose rows split into whole
 * 32-value blocks. Min offsets (GGUF Q4_1) have SIMD integer kernels only
 * in tiles; row by row they keep float activations. */
static int linear_takes_int8(const tern_session *s, const tern_weight *w) {
    return s->qa.q && linear_qa_fn(&s->model->kernels, w) &&
           w->cols % TERN_QA_BLOCK == 0 && w->cols <= s->model->qa_max_cols &&
           (!(w->flags & TERN_TENSOR_HAS_MIN) || w->layout == TERN_LAYOUT_ROW_INTERLEAVED);
}

void tern_parallel_linear(const tern_session *s, size_t m, const float *x, size_t ldx,
                          const tern_weight *w, const float *bias, float *y, size_t ldy) {
    if (s->on_linear) { /* calibration (converter/calib.c): see the input, maybe swap the weight */
        const tern_weight *r = s->on_linear(s->on_linear_user, w, x, m, ldx);
        if (r) w = r;
    }
    const tern_kernels *k = &s->model->kernels;
    if (!linear_takes_int8(s, w)) {
        linear_task t = {k, m, x, ldx, NULL, w, bias, y, ldy};
        linear_run(s, &t);
        return;
    }
    /* Rows are quantised once per chunk and shared by every output tile. */
    for (size_t i0 = 0; i0 < m; i0 += TERN_QA_ROWS) {
        const size_t mc = m - i0 < TERN_QA_ROWS ? m - i0 : TERN_QA_ROWS;
        k->quantize_rows(mc, w->cols, x + i0 * ldx, ldx, s->qa.q, s->qa.d, s->qa.s);
        const tern_qrows qx = {mc, w->cols, s->qa.q, s->qa.d, s->qa.s};
        linear_task t = {k, mc, NULL, 0, &qx, w, bias, y + i0 * ldy, ldy};
        linear_run(s, &t);
    }
}

typedef struct {
    const tern_kernels *k;
    const tern_attention_args *proto;
    size_t kv_base;
    size_t q_stride;
} attention_task;

static void attention_token_heads(void *ctx, size_t token, size_t h0, size_t count) {
    const attention_task *t = ctx;
    tern_attention_args a = *t->proto;
    a.q += token * t->q_stride;
    a.out += token * t->q_stride;
    a.n_kv = t->kv_base + token + 1;
    t->k->attention(&a, h0, h0 + count);
}

void tern_parallel_attention(const tern_session *s, const tern_attention_args *proto, size_t n,
                             size_t kv_base, size_t q_stride) {
    attention_task t = {&s->model->kernels, proto, kv_base, q_stride};
    if (!s->pool || s->n_threads <= 1) {
        for (size_t i = 0; i < n; i++) attention_token_heads(&t, i, 0, proto->n_head);
        return;
    }
    pthreadpool_parallelize_2d_tile_1d(s->pool, attention_token_heads, &t, n, proto->n_head, 1,
                                       0);
}
