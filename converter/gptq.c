/* GPTQ (converter/gptq.h). Given U = chol(H^-1) upper, each row of W is
 * processed on its own (the rows share only U), so the work splits over
 * rows; within a row, column i is rounded with its group's scale, and its
 * error e = (w_i - q_i) / U_ii moves the later columns, w_j -= e U_ij: at
 * once inside the current block of columns, for the later blocks in one
 * batch at the end of the block (the "lazy batch" update). */
#include "converter/gptq.h"

#include "runtime/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GPTQ_TILE_ROWS 8    /* rows that share each load of a row of U */
#define GPTQ_DAMP_RETRIES 4 /* a singular H is dampened 10x more each time */

/* Sum of a[k] b[k], k < n, in eight chains of generic vectors (SSE2 or
 * NEON pairs at the baseline; the converter is not built per ISA): the
 * single chain of a naive loop waits on each add. */
typedef double chol_v4d __attribute__((vector_size(32)));
static double dot4(const double *a, const double *b, size_t n) {
    chol_v4d s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        chol_v4d a0, a1, b0, b1;
        memcpy(&a0, a + k, sizeof a0);
        memcpy(&a1, a + k + 4, sizeof a1);
        memcpy(&b0, b + k, sizeof b0);
        memcpy(&b1, b + k + 4, sizeof b1);
        s0 += a0 * b0;
        s1 += a1 * b1;
    }
    const chol_v4d s = s0 + s1;
    double r = (s[0] + s[1]) + (s[2] + s[3]);
    for (; k < n; k++) r += a[k] * b[k];
    return r;
}

typedef struct {
    double *A; /* cholesky_rows: the factor being built; inverse_rows: the factor */
    double *Y; /* inverse_rows: (L^-1)^T, a row per j */
    size_t n, j0, j1;
} chol_task;

/* Columns [j0, j1) of L for rows j1 + [i0, i0 + count), a row at a time:
 * each element is the same dot product as in the plain column order, but a
 * row's prefix is read from memory once per block of columns, not once per
 * column (n = 1536 is 19 MB of doubles). */
static void cholesky_rows(void *ctx, size_t i0, size_t count) {
    const chol_task *t = ctx;
    const size_t n = t->n;
    for (size_t i = t->j1 + i0; i < t->j1 + i0 + count; i++) {
        double *ri = t->A + i * n;
        for (size_t j = t->j0; j < t->j1; j++) {
            const double *rj = t->A + j * n;
            ri[j] = (ri[j] - dot4(ri, rj, j)) / rj[j];
        }
    }
}

/* Rows [j0, j0 + count) of Y = (L^-1)^T: Y[j][i] = -(sum_{j<=k<i} L[i][k] Y[j][k]) / L[i][i].
 * Row i of L is read once for all the rows of Y of the task. */
static void inverse_rows(void *ctx, size_t j0, size_t count) {
    const chol_task *t = ctx;
    const size_t n = t->n;
    for (size_t j = j0; j < j0 + count; j++) t->Y[j * n + j] = 1.0 / t->A[j * n + j];
    for (size_t i = j0 + 1; i < n; i++) {
        const double *li = t->A + i * n;
        for (size_t j = j0; j < j0 + count && j < i; j++) {
            double *y = t->Y + j * n;
            y[i] = -dot4(li + j, y + j, i - j) / li[i];
        }
    }
}

#define CHOL_BLOCK 32 /* columns of L per pass over the rows below them */

/* Lower Cholesky factor of A in place (row-major, lower half read and
 * written); 0, or -1 when A is not positive definite. Blocks of columns:
 * the diagonal block row by row, then the rows below it, which are
 * independent and split over pool when there are many. */
static int cholesky_lower(double *A, size_t n, pthreadpool_t pool) {
    chol_task t = {A, NULL, n, 0, 0};
    for (size_t j0 = 0; j0 < n; j0 += CHOL_BLOCK) {
        const size_t j1 = j0 + CHOL_BLOCK < n ? j0 + CHOL_BLOCK : n;
        for (size_t j = j0; j < j1; j++) {
            double *rj = A + j * n;
            const double d = rj[j] - dot4(rj, rj, j);
            if (!(d > 0.0) || !isfinite(d)) return -1;
            rj[j] = sqrt(d);
            for (size_t i = j + 1; i < j1; i++) {
                double *ri = A + i * n;
                ri[j] = (ri[j] - dot4(ri, rj, j)) / rj[j];
            }
        }
        t.j0 = j0;
        t.j1 = j1;
        const size_t below = n - j1;
        if (pool && below >= 64)
            pthreadpool_parallelize_1d_tile_1d(pool, cholesky_rows, &t, below, 8, PTHREADPOOL_FLAG_YIELD_WORKERS);
        else
            cholesky_rows(&t, 0, below);
    }
    return 0;
}

/* With J the reversal, J H J = L L^T gives H = V V^T for the upper
 * V = J L J, so H^-1 = (V^-1)^T V^-1 and U = V^-1 = J L^-1 J: one
 * factorisation and one triangular inverse. Returns Y = (L^-1)^T
 * (U[i][j] = Y[n-1-j][n-1-i]) in *out, or an error. */
static tern_status inverse_cholesky(const double *H, size_t n, pthreadpool_t pool, double **out,
                                    tern_error *err) {
    double *A = malloc(n * n * sizeof *A), *Y = malloc(n * n * sizeof *Y);
    *out = NULL;
    if (!A || !Y) {
        free(A);
        free(Y);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for a %zu x %zu Hessian", n, n);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) A[i * n + j] = H[(n - 1 - i) * n + (n - 1 - j)];
    if (cholesky_lower(A, n, pool) != 0) {
        free(A);
        free(Y);
        return tern_fail(err, TERN_ERR_INVALID_ARG, "the Hessian is not positive definite");
    }
    chol_task t = {A, Y, n, 0, 0};
    if (pool && n >= 128)
        pthreadpool_parallelize_1d_tile_1d(pool, inverse_rows, &t, n, CHOL_BLOCK, PTHREADPOOL_FLAG_YIELD_WORKERS);
    else
        for (size_t j0 = 0; j0 < n; j0 += CHOL_BLOCK) inverse_rows(&t, j0, n - j0 < CHOL_BLOCK ? n - j0 : CHOL_BLOCK);
    free(A);
    *out = Y;
    return TERN_OK;
}

tern_status tern_gptq_inverse_cholesky(const double *H, size_t n, float *U, double *U64,
                                       pthreadpool_t pool, tern_error *err) {
    double *Y;
    tern_status st = inverse_cholesky(H, n, pool, &Y, err);
    if (st != TERN_OK) return st;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            const double v = j < i ? 0.0 : Y[(n - 1 - j) * n + (n - 1 - i)];
            if (U) U[i * n + j] = (float)v;
            else U64[i * n + j] = v;
        }
    free(Y);
    return TERN_OK;
}

typedef struct {
    const tern_gptq_params *p;
    size_t rows, cols, block, n_groups;
    const float *U;
    const size_t *perm; /* act-order: column position -> original column; NULL: identity */
    float *w;           /* [rows][cols] working copy, in processing order */
    float *err;         /* [tiles][GPTQ_TILE_ROWS][block] */
    uint8_t *tmp;       /* [tiles][group] */
    uint8_t *codes;     /* [rows][cols], original column order */
    uint16_t *scales;   /* [rows][n_groups] */
    uint8_t *zeros;     /* [rows][n_groups] or NULL */
} gptq_task;

static void gptq_rows(void *ctx, size_t r0, size_t count) {
    const gptq_task *t = ctx;
    const tern_quant_params *qp = &t->p->quant;
    const size_t cols = t->cols, g = qp->group_size, B = t->block, tile = r0 / GPTQ_TILE_ROWS;
    float *err = t->err + tile * GPTQ_TILE_ROWS * B;
    uint8_t *tmp = t->tmp + tile * g;
    for (size_t i1 = 0; i1 < cols; i1 += B) {
        const size_t i2 = i1 + B < cols ? i1 + B : cols;
        for (size_t i = i1; i < i2; i++) {
            const float *u = t->U + i * cols;
            const size_t col = t->perm ? t->perm[i] : i, gi = col / g;
            for (size_t r = r0; r < r0 + count; r++) {
                float *w = t->w + r * cols;
                uint16_t *scale = &t->scales[r * t->n_groups + gi];
                uint8_t *zero = t->zeros ? &t->zeros[r * t->n_groups + gi] : NULL;
                /* A group's scale from its current (already updated) weights. */
                if (!t->perm && i % g == 0) tern_quantize_group(qp, w + i, g, tmp, scale, zero);
                const uint8_t code = tern_quant_code(qp, w[i], *scale, zero ? *zero : 0);
                const float q = tern_quant_dequant(qp, code, *scale, zero ? *zero : 0);
                const float e = (w[i] - q) / u[i];
                for (size_t j = i + 1; j < i2; j++) w[j] -= e * u[j];
                err[(r - r0) * B + (i - i1)] = e;
                t->codes[r * cols + col] = code;
            }
        }
        for (size_t k = i1; k < i2; k++) {
            const float *u = t->U + k * cols;
            for (size_t r = r0; r < r0 + count; r++) {
                const float e = err[(r - r0) * B + (k - i1)];
                float *w = t->w + r * cols;
                for (size_t j = i2; j < cols; j++) w[j] -= e * u[j];
            }
        }
    }
}

typedef struct {
    double d;
    size_t i;
} diag_entry;

static int cmp_diag_desc(const void *a, const void *b) {
    const diag_entry *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

tern_status tern_gptq_quantize(const tern_gptq_params *p, const float *w, size_t rows, size_t cols,
                               const double *H, uint8_t *values, uint16_t *scales, uint8_t *zeros,
                               pthreadpool_t pool, tern_error *err) {
    const tern_quant_params *qp = &p->quant;
    if ((qp->encoding != TERN_ENC_Q8 && qp->encoding != TERN_ENC_Q4) || qp->group_size == 0 ||
        cols % qp->group_size != 0 || (qp->asymmetric && !zeros))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "GPTQ: bad quantiser for %zu columns", cols);
    const size_t g = qp->group_size, n_groups = cols / g;
    size_t B = p->block_size ? p->block_size : TERN_GPTQ_BLOCK;
    if (g < B) B -= B % g; /* groups never straddle a block */
    const size_t n_tiles = (rows + GPTQ_TILE_ROWS - 1) / GPTQ_TILE_ROWS;
    double *Hd = malloc(cols * cols * sizeof *Hd);
    float *U = malloc(cols * cols * sizeof *U);
    float *W = malloc(rows * cols * sizeof *W);
    float *E = malloc(n_tiles * GPTQ_TILE_ROWS * B * sizeof *E);
    uint8_t *tmp = malloc(n_tiles * g);
    uint8_t *codes = malloc(rows * cols);
    size_t *perm = p->act_order ? malloc(cols * sizeof *perm) : NULL;
    diag_entry *order = p->act_order ? malloc(cols * sizeof *order) : NULL;
    tern_status st = TERN_OK;
    if (!Hd || !U || !W || !E || !tmp || !codes || (p->act_order && (!perm || !order))) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for GPTQ on %zu x %zu", rows, cols);
        goto done;
    }
    memcpy(Hd, H, cols * cols * sizeof *Hd);
    memcpy(W, w, rows * cols * sizeof *W);
    /* Inputs never seen: H_ii = 1 and their weights 0 (they multiply only zeros). */
    for (size_t i = 0; i < cols; i++) {
        if (Hd[i * cols + i] != 0.0) continue;
        Hd[i * cols + i] = 1.0;
        for (size_t r = 0; r < rows; r++) W[r * cols + i] = 0.0f;
    }
    if (p->act_order) {
        /* Static groups: every scale from the weights before any update. */
        for (size_t r = 0; r < rows; r++)
            for (size_t k = 0; k < n_groups; k++)
                tern_quantize_group(qp, W + r * cols + k * g, g, tmp, &scales[r * n_groups + k],
                                    qp->asymmetric ? &zeros[r * n_groups + k] : NULL);
        for (size_t i = 0; i < cols; i++) order[i] = (diag_entry){Hd[i * cols + i], i};
        qsort(order, cols, sizeof *order, cmp_diag_desc);
        for (size_t i = 0; i < cols; i++) perm[i] = order[i].i;
        /* Permute W's columns and H's rows and columns (U reuses as scratch). */
        double *Hp = malloc(cols * cols * sizeof *Hp);
        if (!Hp) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for GPTQ act-order");
            goto done;
        }
        for (size_t i = 0; i < cols; i++)
            for (size_t j = 0; j < cols; j++) Hp[i * cols + j] = Hd[perm[i] * cols + perm[j]];
        free(Hd);
        Hd = Hp;
        float *row = U;
        for (size_t r = 0; r < rows; r++) {
            for (size_t i = 0; i < cols; i++) row[i] = W[r * cols + perm[i]];
            memcpy(W + r * cols, row, cols * sizeof *row);
        }
    }
    double mean = 0;
    for (size_t i = 0; i < cols; i++) mean += Hd[i * cols + i];
    mean /= (double)cols;
    double damp = (p->percdamp > 0 ? p->percdamp : TERN_GPTQ_PERCDAMP) * mean, added = 0;
    for (int attempt = 0;; attempt++) {
        for (size_t i = 0; i < cols; i++) Hd[i * cols + i] += damp - added;
        added = damp;
        st = tern_gptq_inverse_cholesky(Hd, cols, U, NULL, pool, err);
        if (st != TERN_ERR_INVALID_ARG || attempt == GPTQ_DAMP_RETRIES) break;
        damp *= 10.0;
    }
    if (st != TERN_OK) goto done;
    gptq_task t = {p, rows, cols, B, n_groups, U, perm, W, E, tmp, codes, scales,
                   qp->asymmetric ? zeros : NULL};
    if (pool && rows > GPTQ_TILE_ROWS)
        pthreadpool_parallelize_1d_tile_1d(pool, gptq_rows, &t, rows, GPTQ_TILE_ROWS,
                                           PTHREADPOOL_FLAG_YIELD_WORKERS);
    else
        for (size_t r = 0; r < rows; r += GPTQ_TILE_ROWS)
            gptq_rows(&t, r, rows - r < GPTQ_TILE_ROWS ? rows - r : GPTQ_TILE_ROWS);
    tern_quant_pack(qp, rows, cols, codes, values);
done:
    free(Hd);
    free(U);
    free(W);
    free(E);
    free(tmp);
    free(codes);
    free(perm);
    free(order);
    return st;
}

tern_status tern_gptq_calib_stage(void *user, tern_calib_stage *stage, tern_error *err) {
    tern_calib_method *m = user;
    /* Only the blocks: layers outside them read raw inputs (ViT's patch
     * embedding reads pixels, nearly collinear), where GPTQ overfits the few
     * calibration inputs. */
    if (stage->index == 0) return TERN_OK;
    for (size_t i = 0; i < stage->n_linears; i++) {
        tern_calib_linear *L = &stage->linears[i];
        tern_gptq_params gp;
        memset(&gp, 0, sizeof gp);
        if (!tern_calib_target(m->ctx, L->name, L->cols, &gp.quant)) continue;
        gp.act_order = m->act_order;
        tern_calib_tensor *t = tern_calib_result_get(m->result, L->name, L->rows, L->cols);
        if (!t) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        tern_tensor_desc *d = &t->desc;
        memset(d, 0, sizeof *d);
        d->encoding = gp.quant.encoding;
        d->layout = TERN_LAYOUT_ROW_MAJOR;
        d->ndim = 2;
        d->dims[0] = L->rows;
        d->dims[1] = L->cols;
        d->group_size = gp.quant.group_size;
        if (gp.quant.asymmetric) d->flags = TERN_TENSOR_HAS_ZERO_POINT;
        uint64_t sizes[TERN_PLANE_COUNT];
        if (tern_tensor_plane_sizes(d, sizes) != 0)
            return tern_fail(err, TERN_ERR_INTERNAL, "%s: inconsistent quantised description", L->name);
        for (int p = 0; p < TERN_PLANE_COUNT; p++)
            if (sizes[p] && !(t->planes[p] = malloc((size_t)sizes[p])))
                return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
        tern_status st = tern_gptq_quantize(&gp, L->weight, L->rows, L->cols, L->stats->hessian,
                                            t->planes[TERN_PLANE_VALUES], t->planes[TERN_PLANE_SCALES],
                                            t->planes[TERN_PLANE_ZEROS], stage->pool, err);
        if (st != TERN_OK) return tern_fail_context(err, st, "GPTQ on %s", L->name);
        t->has_planes = 1;
        /* Later passes multiply by the quantised values, dequantised to F32
         * (the float kernels are the fastest path of a float model). */
        tern_weight q;
        memset(&q, 0, sizeof q);
        q.encoding = d->encoding;
        q.layout = d->layout;
        q.rows = L->rows;
        q.cols = L->cols;
        q.values = t->planes[TERN_PLANE_VALUES];
        q.scales = t->planes[TERN_PLANE_SCALES];
        q.zeros = t->planes[TERN_PLANE_ZEROS];
        q.group_size = d->group_size;
        q.flags = d->flags;
        if (!(t->dequant = malloc(L->rows * L->cols * sizeof *t->dequant)))
            return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
        for (size_t r = 0; r < L->rows; r++) tern_weight_row_f32(&q, r, t->dequant + r * L->cols);
        tern_weight *r = &L->replacement;
        memset(r, 0, sizeof *r);
        r->encoding = TERN_ENC_F32;
        r->layout = TERN_LAYOUT_ROW_MAJOR;
        r->rows = L->rows;
        r->cols = L->cols;
        r->values = t->dequant;
        L->has_replacement = 1;
    }
    return TERN_OK;
}
