/* AWQ (converter/awq.h). The output error of a candidate is computed from
 * the Hessian H = sum x x^T of the group's input: for a row w and its error
 * d = Q(w s)/s - w, sum over tokens of (d . x)^2 = d^T H d, so every
 * calibration token counts without keeping the activations. */
#include "converter/awq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/keys.h"

size_t tern_fold_groups(tern_arch arch, uint32_t b, tern_fold_group out[4]) {
    memset(out, 0, 4 * sizeof *out);
    const int vit = arch == TERN_ARCH_VIT;
#define N(dst, fmt) snprintf(dst, sizeof dst, fmt, b)
    N(out[0].members[0], "blk.%u.attn_q.weight");
    N(out[0].members[1], "blk.%u.attn_k.weight");
    N(out[0].members[2], "blk.%u.attn_v.weight");
    out[0].n_members = 3;
    N(out[0].prev[0], "blk.%u.attn_norm.weight");
    if (vit) N(out[0].prev[1], "blk.%u.attn_norm.bias");

    N(out[1].members[0], "blk.%u.attn_output.weight");
    out[1].n_members = 1;
    N(out[1].prev[0], "blk.%u.attn_v.weight");
    N(out[1].prev[1], "blk.%u.attn_v.bias");
    out[1].prev_is_linear = 1;
    out[1].tie_heads = 1;

    if (vit) {
        N(out[2].members[0], "blk.%u.ffn_up.weight");
        out[2].n_members = 1;
        N(out[2].prev[0], "blk.%u.ffn_norm.weight");
        N(out[2].prev[1], "blk.%u.ffn_norm.bias");
        return 3; /* ffn_down reads gelu(up): no exact fold */
    }
    N(out[2].members[0], "blk.%u.ffn_gate.weight");
    N(out[2].members[1], "blk.%u.ffn_up.weight");
    out[2].n_members = 2;
    N(out[2].prev[0], "blk.%u.ffn_norm.weight");

    /* down reads silu(gate) * up: dividing up's rows divides its input */
    N(out[3].members[0], "blk.%u.ffn_down.weight");
    out[3].n_members = 1;
    N(out[3].prev[0], "blk.%u.ffn_up.weight");
    out[3].prev_is_linear = 1;
#undef N
    return 4;
}

int tern_fold_tie(const tern_calib_stage *stage, const tern_fold_group *g, size_t cols,
                  size_t *tie, size_t *n_scales) {
    for (size_t c = 0; c < cols; c++) tie[c] = c;
    *n_scales = cols;
    if (!g->tie_heads) return 0;
    uint32_t n_head = 0, n_kv = 0, hd = 0;
    if (tern_file_meta_u32(stage->file, TERN_KEY_N_HEAD, &n_head, NULL) != TERN_OK ||
        tern_file_meta_u32(stage->file, TERN_KEY_HEAD_DIM, &hd, NULL) != TERN_OK)
        return -1;
    if (tern_file_meta_u32(stage->file, TERN_KEY_N_HEAD_KV, &n_kv, NULL) != TERN_OK) n_kv = n_head;
    if (n_head == 0 || n_kv == 0 || hd == 0 || n_head % n_kv != 0 || (size_t)n_head * hd != cols)
        return -1;
    const size_t group = n_head / n_kv;
    for (size_t c = 0; c < cols; c++) tie[c] = (c / hd) / group * hd + c % hd;
    *n_scales = (size_t)n_kv * hd;
    return 0;
}

tern_status tern_fold_apply(tern_calib_result *r, tern_calib_stage *stage, const tern_fold_group *g,
                            const size_t *tie, const float *s, size_t cols, size_t n_scales,
                            tern_error *err) {
    float *full = malloc(cols * sizeof *full);
    if (!full) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    for (size_t c = 0; c < cols; c++) full[c] = s[tie[c]];
    tern_status st = TERN_OK;
    for (size_t m = 0; m < g->n_members && st == TERN_OK; m++) {
        const tern_calib_linear *L = tern_calib_find(stage, g->members[m]);
        tern_calib_tensor *t = L ? tern_calib_result_get(r, L->name, L->rows, L->cols) : NULL;
        st = t ? tern_calib_scale_cols(t, full, err) : tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    }
    /* The producer's outputs: n_scales of them (KV channels for v_proj). */
    const float *div = g->prev_is_linear ? s : full;
    const size_t n_out = g->prev_is_linear ? n_scales : cols;
    for (int p = 0; p < 2 && st == TERN_OK; p++) {
        if (!g->prev[p][0]) continue;
        uint64_t rows = n_out, pcols = 1;
        if (p == 0 && g->prev_is_linear) {
            const tern_calib_linear *L = tern_calib_find(stage, g->prev[0]);
            pcols = L->cols;
        }
        tern_calib_tensor *t = tern_calib_result_get(r, g->prev[p], rows, pcols);
        st = t ? tern_calib_div_rows(t, div, err) : tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    }
    free(full);
    return st;
}

/* ---- Loss ------------------------------------------------------------------- */

/* Candidates are scored in two steps: the error rows D = Q(W s)/s - W, then
 * Y = D H with the runtime's F32 GEMM (whatever SIMD tier the machine has;
 * H is symmetric, so it serves as the weight as it is) and the loss
 * sum D o Y. The GEMM is nearly all of AWQ's time: rows x cols^2 per
 * candidate and layer. */
typedef struct {
    const tern_quant_params *qp;
    const float *w, *s;
    size_t cols;
    float *d;       /* [rows][cols] */
    uint8_t *codes; /* [tiles][group] */
    const tern_weight *H; /* F32 [cols][cols] */
    const tern_kernels *k;
    float *y;       /* [rows][cols] */
    size_t rows;
} loss_task;

#define AWQ_TILE 16 /* rows of D per task; columns of Y per task */

static void error_rows(void *ctx, size_t r0, size_t count) {
    const loss_task *t = ctx;
    const size_t cols = t->cols, g = t->qp->group_size;
    uint8_t *q = t->codes + r0 / AWQ_TILE * g;
    for (size_t r = r0; r < r0 + count; r++) {
        float *d = t->d + r * cols;
        const float *w = t->w + r * cols;
        for (size_t c = 0; c < cols; c++) d[c] = t->s ? w[c] * t->s[c] : w[c];
        for (size_t k = 0; k < cols / g; k++) {
            uint16_t scale;
            uint8_t zero = 0;
            float *x = d + k * g;
            tern_quantize_group(t->qp, x, g, q, &scale, t->qp->asymmetric ? &zero : NULL);
            for (size_t j = 0; j < g; j++) {
                const size_t c = k * g + j;
                const float deq = tern_quant_dequant(t->qp, q[j], scale, zero);
                x[j] = (t->s ? deq / t->s[c] : deq) - w[c];
            }
        }
    }
}

static void product_cols(void *ctx, size_t c0, size_t count) {
    const loss_task *t = ctx;
    t->k->linear[TERN_ENC_F32](t->rows, c0, c0 + count, t->d, t->cols, t->H, NULL, t->y, t->cols);
}

/* Scratch of loss_with for rows x cols. */
typedef struct {
    float *d, *y;
    uint8_t *codes;
    tern_weight H;
    tern_kernels k;
} loss_scratch;

static void loss_scratch_free(loss_scratch *sc) {
    free(sc->d);
    free(sc->y);
    free(sc->codes);
    free((void *)sc->H.values);
}

static int loss_scratch_alloc(loss_scratch *sc, const double *H, size_t rows, size_t cols, size_t group) {
    memset(sc, 0, sizeof *sc);
    sc->d = malloc(rows * cols * sizeof *sc->d);
    sc->y = malloc(rows * cols * sizeof *sc->y);
    sc->codes = malloc(((rows + AWQ_TILE - 1) / AWQ_TILE) * group);
    float *Hf = malloc(cols * cols * sizeof *Hf);
    if (Hf)
        for (size_t i = 0; i < cols * cols; i++) Hf[i] = (float)H[i];
    sc->H.encoding = TERN_ENC_F32;
    sc->H.layout = TERN_LAYOUT_ROW_MAJOR;
    sc->H.rows = sc->H.cols = cols;
    sc->H.values = Hf;
    tern_kernels_init(&sc->k, TERN_ISA_MASK_ALL);
    if (sc->d && sc->y && sc->codes && Hf) return 0;
    loss_scratch_free(sc);
    return -1;
}

static double loss_with(const tern_quant_params *qp, const float *w, size_t rows, size_t cols,
                        const float *s, loss_scratch *sc, pthreadpool_t pool) {
    loss_task t = {qp, w, s, cols, sc->d, sc->codes, &sc->H, &sc->k, sc->y, rows};
    if (pool) {
        pthreadpool_parallelize_1d_tile_1d(pool, error_rows, &t, rows, AWQ_TILE, PTHREADPOOL_FLAG_YIELD_WORKERS);
        pthreadpool_parallelize_1d_tile_1d(pool, product_cols, &t, cols, 4 * AWQ_TILE,
                                           PTHREADPOOL_FLAG_YIELD_WORKERS);
    } else {
        for (size_t r = 0; r < rows; r += AWQ_TILE) error_rows(&t, r, rows - r < AWQ_TILE ? rows - r : AWQ_TILE);
        product_cols(&t, 0, cols);
    }
    double sum = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *d = sc->d + r * cols, *y = sc->y + r * cols;
        double acc = 0;
        for (size_t c = 0; c < cols; c++) acc += (double)d[c] * y[c];
        sum += acc;
    }
    return sum;
}

double tern_awq_loss(const tern_quant_params *qp, const float *w, size_t rows, size_t cols,
                     const float *s, const double *H, pthreadpool_t pool) {
    loss_scratch sc;
    if (loss_scratch_alloc(&sc, H, rows, cols, qp->group_size) != 0) return NAN;
    const double loss = loss_with(qp, w, rows, cols, s, &sc, pool);
    loss_scratch_free(&sc);
    return loss;
}

tern_status tern_awq_search(const tern_quant_params *qp, const float *const *w, const size_t *rows,
                            size_t n_w, size_t cols, const size_t *tie, size_t n_scales,
                            const double *x_mean, const double *H, pthreadpool_t pool, float *s,
                            double *alpha_out, tern_error *err) {
    /* Large layers are scored on evenly spread rows (cost rows x cols^2 per alpha). */
    if (n_w > 3) return tern_fail(err, TERN_ERR_INVALID_ARG, "AWQ: at most 3 layers share an input");
    size_t max_rows = 0, n_rows[3] = {0, 0, 0};
    float *picked[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < n_w && i < 3; i++) {
        n_rows[i] = rows[i] > TERN_AWQ_SEARCH_ROWS ? TERN_AWQ_SEARCH_ROWS : rows[i];
        max_rows = n_rows[i] > max_rows ? n_rows[i] : max_rows;
        if (n_rows[i] == rows[i]) continue;
        if (!(picked[i] = malloc(n_rows[i] * cols * sizeof *picked[i]))) {
            for (size_t k = 0; k < i; k++) free(picked[k]);
            return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for the AWQ search");
        }
        for (size_t r = 0; r < n_rows[i]; r++)
            memcpy(picked[i] + r * cols, w[i] + r * rows[i] / n_rows[i] * cols, cols * sizeof(float));
    }
    loss_scratch sc;
    const int sc_failed = loss_scratch_alloc(&sc, H, max_rows, cols, qp->group_size);
    float *sk = malloc(n_scales * sizeof *sk), *full = malloc(cols * sizeof *full);
    if (sc_failed || !sk || !full) {
        for (size_t k = 0; k < 3; k++) free(picked[k]);
        if (!sc_failed) loss_scratch_free(&sc);
        free(sk);
        free(full);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for the AWQ search (%zu inputs)", cols);
    }
    double best = INFINITY;
    *alpha_out = 0;
    for (size_t k = 0; k < n_scales; k++) s[k] = 1.0f;
    for (int a = 0; a < TERN_AWQ_GRID; a++) {
        const double alpha = (double)a / TERN_AWQ_GRID;
        double lo = INFINITY, hi = 0;
        for (size_t k = 0; k < n_scales; k++) {
            double v = pow(x_mean[k], alpha);
            if (!(v >= 1e-4)) v = 1e-4;
            sk[k] = (float)v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        /* centred on 1 (geometric mean of the extremes), as the reference does */
        const double norm = sqrt(lo * hi);
        for (size_t k = 0; k < n_scales; k++) sk[k] = (float)(sk[k] / norm);
        for (size_t c = 0; c < cols; c++) full[c] = sk[tie[c]];
        double loss = 0;
        for (size_t i = 0; i < n_w; i++)
            loss += loss_with(qp, picked[i] ? picked[i] : w[i], n_rows[i], cols, full, &sc, pool);
        if (loss < best) {
            best = loss;
            *alpha_out = alpha;
            memcpy(s, sk, n_scales * sizeof *s);
        }
    }
    for (size_t k = 0; k < 3; k++) free(picked[k]);
    loss_scratch_free(&sc);
    free(sk);
    free(full);
    return TERN_OK;
}

/* ---- Clipping search ---------------------------------------------------------- */

/* Per row and group of the folded weight, the clamp max|w| (1 - i/20) with
 * the least output error d^T H' d, H' the Hessian of the scaled input. Rows
 * are independent: split over the pool in tiles, each with its scratch. */
typedef struct {
    const tern_quant_params *qp;
    const tern_calib_tensor *t;
    const float *w;
    const double *Hg; /* [ng][g][g]: the diagonal blocks of H' */
    float *scratch;   /* [tiles][cols + 2 g] */
    uint8_t *codes;   /* [tiles][g] */
    float *clip;      /* [rows][ng] */
} clip_task;

#define AWQ_CLIP_TILE 16

static void clip_rows(void *ctx, size_t r0, size_t count) {
    const clip_task *c = ctx;
    const tern_quant_params *qp = c->qp;
    const size_t cols = (size_t)c->t->cols, g = qp->group_size, ng = cols / g, tile = r0 / AWQ_CLIP_TILE;
    float *row = c->scratch + tile * (cols + 2 * g), *cw = row + cols, *d = cw + g;
    uint8_t *q = c->codes + tile * g;
    for (size_t r = r0; r < r0 + count; r++) {
        tern_calib_tensor_apply_row(c->t, r, c->w + r * cols, row); /* t->clip is still NULL */
        for (size_t k = 0; k < ng; k++) {
            const float *x = row + k * g;
            const double *hg = c->Hg + k * g * g;
            float amax = 0;
            for (size_t j = 0; j < g; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
            double best = INFINITY;
            float best_max = amax;
            for (int i = 0; i < TERN_AWQ_CLIP_STEPS && amax > 0; i++) {
                const float m = amax * (1.0f - (float)i / 20.0f);
                for (size_t j = 0; j < g; j++) cw[j] = x[j] > m ? m : x[j] < -m ? -m : x[j];
                uint16_t scale;
                uint8_t zero = 0;
                tern_quantize_group(qp, cw, g, q, &scale, qp->asymmetric ? &zero : NULL);
                for (size_t j = 0; j < g; j++) d[j] = tern_quant_dequant(qp, q[j], scale, zero) - x[j];
                double e = 0;
                for (size_t a = 0; a < g; a++) {
                    double acc = 0;
                    for (size_t b = 0; b < g; b++) acc += hg[a * g + b] * d[b];
                    e += d[a] * acc;
                }
                if (e < best) best = e, best_max = m;
            }
            c->clip[r * ng + k] = best_max;
        }
    }
}

static tern_status clip_search(const tern_quant_params *qp, tern_calib_tensor *t, const float *w,
                               const double *H, pthreadpool_t pool, tern_error *err) {
    const size_t rows = (size_t)t->rows, cols = (size_t)t->cols, g = qp->group_size, ng = cols / g;
    const size_t tiles = (rows + AWQ_CLIP_TILE - 1) / AWQ_CLIP_TILE;
    double *Hg = malloc(ng * g * g * sizeof *Hg);
    float *scratch = malloc(tiles * (cols + 2 * g) * sizeof *scratch);
    uint8_t *codes = malloc(tiles * g);
    float *clip = malloc(rows * ng * sizeof *clip);
    if (!Hg || !scratch || !codes || !clip) {
        free(Hg);
        free(scratch);
        free(codes);
        free(clip);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for the AWQ clipping search");
    }
    for (size_t k = 0; k < ng; k++)
        for (size_t a = 0; a < g; a++)
            for (size_t b = 0; b < g; b++) {
                const size_t ca = k * g + a, cb = k * g + b;
                const double sa = t->col_scale ? t->col_scale[ca] : 1.0;
                const double sb = t->col_scale ? t->col_scale[cb] : 1.0;
                Hg[(k * g + a) * g + b] = H[ca * cols + cb] / (sa * sb);
            }
    clip_task c = {qp, t, w, Hg, scratch, codes, clip};
    if (pool && rows > AWQ_CLIP_TILE)
        pthreadpool_parallelize_1d_tile_1d(pool, clip_rows, &c, rows, AWQ_CLIP_TILE,
                                           PTHREADPOOL_FLAG_YIELD_WORKERS);
    else
        for (size_t r = 0; r < rows; r += AWQ_CLIP_TILE)
            clip_rows(&c, r, rows - r < AWQ_CLIP_TILE ? rows - r : AWQ_CLIP_TILE);
    t->clip = clip;
    t->clip_group = (uint32_t)g;
    free(Hg);
    free(scratch);
    free(codes);
    return TERN_OK;
}

/* ---- The stage ------------------------------------------------------------------ */

/* The quantiser AWQ searches with: the conversion's, or Q4 with its group
 * when the body stays float (which writes the scaled float model). */
static int awq_quantiser(const tern_calib_method *m, const tern_calib_linear *L, tern_quant_params *qp) {
    if (tern_calib_target(m->ctx, L->name, L->cols, qp)) return 1;
    if (m->ctx->weights == TERN_WEIGHTS_Q8 || m->ctx->weights == TERN_WEIGHTS_Q4) return 0;
    const uint32_t g = m->ctx->group_size == TERN_GROUP_PER_ROW ? (uint32_t)L->cols : m->ctx->group_size;
    if (g == 0 || g % 2 || L->cols % g) return 0;
    *qp = (tern_quant_params){TERN_ENC_Q4, g, m->ctx->asymmetric, 0};
    return 1;
}

tern_status tern_awq_calib_stage(void *user, tern_calib_stage *stage, tern_error *err) {
    tern_calib_method *m = user;
    if (stage->index == 0) return TERN_OK; /* nothing before the blocks to fold into */
    tern_fold_group groups[4];
    const size_t n_groups = tern_fold_groups(stage->arch, stage->index - 1, groups);
    tern_status st = TERN_OK;
    for (size_t gi = 0; gi < n_groups && st == TERN_OK; gi++) {
        const tern_fold_group *g = &groups[gi];
        /* ViT: no scales for q/k/v (their errors meet in the softmax, which
         * the per-layer loss does not see: on vit-tiny every scaled q/k/v
         * raised the KL to the float model); o and fc1 are scaled. */
        if (stage->arch == TERN_ARCH_VIT && gi == 0) continue;
        const float *w[3];
        size_t rows[3];
        const tern_calib_linear *first = NULL;
        tern_quant_params qp;
        int ok = 1;
        for (size_t i = 0; i < g->n_members && ok; i++) {
            const tern_calib_linear *L = tern_calib_find(stage, g->members[i]);
            tern_quant_params q;
            ok = L && awq_quantiser(m, L, &q) && L->stats && L->stats->hessian &&
                 (!first || (L->cols == first->cols && L->stats == first->stats &&
                             q.group_size == qp.group_size && q.encoding == qp.encoding));
            if (!ok) break;
            if (!first) first = L, qp = q;
            w[i] = L->weight;
            rows[i] = L->rows;
        }
        if (ok && g->prev_is_linear && !tern_calib_find(stage, g->prev[0])) ok = 0;
        if (!ok || !first || first->stats->n == 0) continue;
        const size_t cols = first->cols;
        size_t *tie = malloc(cols * sizeof *tie), n_scales;
        double *x_mean = calloc(cols, sizeof *x_mean);
        float *s = malloc(cols * sizeof *s);
        unsigned *count = calloc(cols, sizeof *count);
        if (!tie || !x_mean || !s || !count) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        } else if (tern_fold_tie(stage, g, cols, tie, &n_scales) == 0) {
            const tern_calib_linear *prev = g->prev_is_linear ? tern_calib_find(stage, g->prev[0]) : NULL;
            if (!prev || prev->rows == n_scales) {
                for (size_t c = 0; c < cols; c++) {
                    x_mean[tie[c]] += first->stats->sum_abs[c] / (double)first->stats->n;
                    count[tie[c]]++;
                }
                for (size_t k = 0; k < n_scales; k++) x_mean[k] /= count[k] ? count[k] : 1;
                double alpha;
                st = tern_awq_search(&qp, w, rows, g->n_members, cols, tie, n_scales, x_mean,
                                     first->stats->hessian, stage->pool, s, &alpha, err);
                if (st == TERN_OK) st = tern_fold_apply(m->result, stage, g, tie, s, cols, n_scales, err);
            }
        }
        free(tie);
        free(x_mean);
        free(s);
        free(count);
    }
    /* Clipping on the folded weights, except q and k (their errors meet in
     * the attention scores, which these statistics do not see). */
    for (size_t i = 0; i < stage->n_linears && st == TERN_OK; i++) {
        tern_calib_linear *L = &stage->linears[i];
        tern_quant_params qp;
        if (strstr(L->name, ".attn_q.") || strstr(L->name, ".attn_k.") ||
            !tern_calib_target(m->ctx, L->name, L->cols, &qp) || /* a float body stays unclipped */
            !L->stats || !L->stats->hessian || L->stats->n == 0)
            continue;
        tern_calib_tensor *t = tern_calib_result_get(m->result, L->name, L->rows, L->cols);
        if (!t) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        st = clip_search(&qp, t, L->weight, L->stats->hessian, stage->pool, err);
    }
    return st;
}
