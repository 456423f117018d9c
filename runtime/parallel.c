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
    const tern_weight *w;
    const float *bias;
    float *y;
    size_t ldy;
} linear_task;

static void linear_tile(void *ctx, size_t r0, size_t count) {
    const linear_task *t = ctx;
    t->k->linear[t->w->encoding](t->m, r0, r0 + count, t->x, t->ldx, t->w, t->bias, t->y, t->ldy);
}

void tern_parallel_linear(const tern_session *s, size_t m, const float *x, size_t ldx,
                          const tern_weight *w, const float *bias, float *y, size_t ldy) {
    linear_task t = {&s->model->kernels, m, x, ldx, w, bias, y, ldy};
    /* Tiles of whole cache lines of output, several per thread for balance. */
    size_t tile = w->rows / (4 * (size_t)(s->n_threads ? s->n_threads : 1));
    tile = (tile + 15) & ~(size_t)15;
    if (tile < 16) tile = 16;
    if (!s->pool || s->n_threads <= 1 || w->rows <= tile) {
        linear_tile(&t, 0, w->rows);
        return;
    }
    pthreadpool_parallelize_1d_tile_1d(s->pool, linear_tile, &t, w->rows, tile,
                                       0);
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
