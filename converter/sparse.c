/* N:M pruning and packing (converter/sparse.h). */
#define _POSIX_C_SOURCE 200809L

#include "converter/sparse.h"

#include "converter/gptq.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int tern_sparse_pattern_supported(unsigned n, unsigned m) {
    return (m == 4 && (n == 1 || n == 2)) || (m == 8 && (n == 2 || n == 4));
}

static int tern_sparse_nm_valid(unsigned n, unsigned m) {
    return (m == 4 || m == 8) && n >= 1 && n < m;
}

/* One comma-separated item of a pattern list against name. */
static int tern_sparse_glob_item(const char *item, size_t len, const char *name) {
    char buf[256];
    if (len >= sizeof buf) return 0;
    memcpy(buf, item, len);
    buf[len] = '\0';
    return fnmatch(buf, name, 0) == 0;
}

int tern_sparse_selects(const char *pattern, const char *name) {
    if (!pattern || !*pattern) return strncmp(name, "blk.", 4) == 0;
    /* the last matching item decides, so "blk.*,!blk.0.*" leaves block 0 dense */
    int selected = 0;
    const char *p = pattern;
    while (*p) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            if (p[0] == '!') {
                if (tern_sparse_glob_item(p + 1, len - 1, name)) selected = 0;
            } else if (tern_sparse_glob_item(p, len, name)) {
                selected = 1;
            }
        }
        p += len;
        if (*p == ',') p++;
    }
    return selected;
}

/* Bit j set for the n largest of s[0..m) (the lower index first on ties;
 * NaN counts as smallest). */
static unsigned tern_sparse_top_n(const double *s, unsigned n, unsigned m) {
    unsigned keep = 0;
    for (unsigned k = 0; k < n; k++) {
        int best = -1;
        for (unsigned j = 0; j < m; j++) {
            if (keep & (1u << j)) continue;
            if (best < 0 || s[j] > s[best] || (isnan(s[best]) && !isnan(s[j]))) best = (int)j;
        }
        keep |= 1u << best;
    }
    return keep;
}

static tern_status tern_sparse_check(size_t cols, unsigned n, unsigned m, tern_error *err) {
    if (!tern_sparse_nm_valid(n, m))
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "sparsity %u:%u: M must be 4 or 8 and 1 <= N < M", n, m);
    if (cols % m != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "sparsity %u:%u needs a column count divisible by %u, got %zu", n, m, m,
                         cols);
    return TERN_OK;
}

/* Zeroes what is not kept, scoring column c of a row by |w| * (x_norm[c] or 1). */
static void tern_prune_scored(float *w, size_t rows, size_t cols, const float *x_norm,
                              unsigned n, unsigned m) {
    double s[8];
    for (size_t r = 0; r < rows; r++) {
        float *wr = w + r * cols;
        for (size_t c0 = 0; c0 < cols; c0 += m) {
            for (unsigned j = 0; j < m; j++)
                s[j] = fabs((double)wr[c0 + j]) * (x_norm ? (double)x_norm[c0 + j] : 1.0);
            const unsigned keep = tern_sparse_top_n(s, n, m);
            for (unsigned j = 0; j < m; j++)
                if (!(keep & (1u << j))) wr[c0 + j] = 0.0f;
        }
    }
}

tern_status tern_prune_magnitude(float *w, size_t rows, size_t cols, unsigned n, unsigned m,
                                 tern_error *err) {
    tern_status st = tern_sparse_check(cols, n, m, err);
    if (st != TERN_OK) return st;
    tern_prune_scored(w, rows, cols, NULL, n, m);
    return TERN_OK;
}

tern_status tern_prune_wanda(float *w, size_t rows, size_t cols, const float *x_norm, unsigned n,
                             unsigned m, tern_error *err) {
    tern_status st = tern_sparse_check(cols, n, m, err);
    if (st != TERN_OK) return st;
    if (!x_norm) return tern_fail(err, TERN_ERR_INVALID_ARG, "Wanda needs input-channel norms");
    tern_prune_scored(w, rows, cols, x_norm, n, m);
    return TERN_OK;
}

/* ---- joint quantisation ------------------------------------------------ */

/* The stored q of w with a fixed F16 scale and zero (quantize.c's grid). */
static uint8_t tern_sparse_q(const tern_quant_params *p, float w, uint16_t scale, uint8_t zero) {
    const float s = tern_f16_to_f32(scale);
    const int asym = p->asymmetric != 0;
    int lo, hi, z = asym ? zero : 0;
    if (p->encoding == TERN_ENC_Q8) {
        lo = asym ? 0 : -127;
        hi = asym ? 255 : 127;
    } else {
        lo = asym ? 0 : -8;
        hi = asym ? 15 : 7;
    }
    float v = s != 0.0f ? w / s + (float)z : (float)z;
    int q = !(v >= (float)lo) ? lo : v > (float)hi ? hi : (int)lroundf(v);
    if (q < lo) q = lo;
    if (q > hi) q = hi;
    /* stored form, as tern_quant_dequant reads it */
    return asym ? (uint8_t)q : p->encoding == TERN_ENC_Q8 ? (uint8_t)(int8_t)q : (uint8_t)(q + 8);
}

static float tern_sparse_round(const tern_quant_params *p, float w, uint16_t scale, uint8_t zero) {
    return tern_quant_dequant(p, tern_sparse_q(p, w, scale, zero), scale, zero);
}

void tern_sparse_rtn_quantize(void *user, float *w, size_t r0, size_t r1, size_t cols,
                              const uint8_t *keep, size_t c) {
    tern_sparse_rtn *q = user;
    const size_t g = q->params.group_size, span = g * q->m / q->n;
    const size_t ng = cols / q->m * q->n / g, gi = c / span;
    if (c % span == 0) {
        float vals[1024];
        uint8_t tmp[1024];
        double s[8];
        const size_t end = c + span < cols ? c + span : cols;
        for (size_t r = r0; r < r1; r++) {
            const float *wr = w + r * cols;
            size_t nv = 0;
            for (size_t c0 = c; c0 < end && nv + q->n <= sizeof vals / sizeof vals[0]; c0 += q->m) {
                unsigned k;
                if (c0 == c) { /* this block's mask is fixed */
                    k = 0;
                    for (unsigned j = 0; j < q->m; j++)
                        if (keep[r * cols + c0 + j]) k |= 1u << j;
                } else {
                    for (unsigned j = 0; j < q->m; j++) s[j] = fabs((double)wr[c0 + j]);
                    k = tern_sparse_top_n(s, q->n, q->m);
                }
                for (unsigned j = 0; j < q->m; j++)
                    if (k & (1u << j)) vals[nv++] = wr[c0 + j];
            }
            uint8_t zero = 0;
            tern_quantize_group(&q->params, vals, nv, tmp, &q->scales[r * ng + gi], &zero);
            q->zeros[r * ng + gi] = zero;
        }
    }
    for (size_t r = r0; r < r1; r++)
        if (keep[r * cols + c])
            w[r * cols + c] = tern_sparse_round(&q->params, w[r * cols + c], q->scales[r * ng + gi],
                                                q->zeros[r * ng + gi]);
}

/* ---- SparseGPT ------------------------------------------------------------ */

#define SPARSEGPT_TILE_ROWS 8 /* rows a task processes; every row is independent given U */

typedef struct {
    float *w;
    size_t rows, cols, blocksize;
    unsigned n, m;
    const double *u;   /* [cols][cols] upper Cholesky factor of H^-1 */
    uint8_t *keep;     /* [rows][cols] */
    double *errs;      /* [rows][blocksize] */
    float *orig;       /* [rows] */
    double *acc;       /* [tiles][cols] */
    tern_sparse_quant_fn quant;
    void *quant_user;
} sparsegpt_task;

/* Algorithm 1 on rows [r0, r0 + count): the same operations, in the same
 * order, for each row as on the whole matrix. */
static void sparsegpt_rows(void *ctx, size_t r0, size_t count) {
    const sparsegpt_task *t = ctx;
    const size_t cols = t->cols, blocksize = t->blocksize, r1 = r0 + count;
    const unsigned n = t->n, m = t->m;
    const double *u = t->u;
    float *w = t->w;
    uint8_t *keep = t->keep;
    double *acc = t->acc + r0 / SPARSEGPT_TILE_ROWS * cols;
    for (size_t i1 = 0; i1 < cols; i1 += blocksize) {
        const size_t i2 = i1 + blocksize < cols ? i1 + blocksize : cols;
        for (size_t i = i1; i < i2; i++) {
            const double d = u[i * cols + i];
            if (i % m == 0) {
                double s[8];
                for (size_t r = r0; r < r1; r++) {
                    for (unsigned j = 0; j < m; j++) {
                        const double wv = w[r * cols + i + j], uj = u[(i + j) * cols + i + j];
                        s[j] = wv * wv / (uj * uj);
                    }
                    const unsigned k = tern_sparse_top_n(s, n, m);
                    for (unsigned j = 0; j < m; j++) keep[r * cols + i + j] = (k >> j) & 1u;
                }
            }
            for (size_t r = r0; r < r1; r++) {
                t->orig[r] = w[r * cols + i];
                if (!keep[r * cols + i]) w[r * cols + i] = 0.0f;
            }
            if (t->quant) t->quant(t->quant_user, w, r0, r1, cols, keep, i);
            for (size_t r = r0; r < r1; r++) {
                const double e = ((double)t->orig[r] - (double)w[r * cols + i]) / d;
                t->errs[r * blocksize + (i - i1)] = e;
                if (e == 0.0) continue;
                float *wr = w + r * cols;
                for (size_t j = i + 1; j < i2; j++) wr[j] = (float)((double)wr[j] - e * u[i * cols + j]);
            }
        }
        /* the block's errors reach the later columns in one pass (per column
         * j the same sums as a loop over k inside, in the same order; this
         * order streams rows of u) */
        for (size_t r = r0; r < r1 && i2 < cols; r++) {
            float *wr = w + r * cols;
            for (size_t j = i2; j < cols; j++) acc[j - i2] = wr[j];
            for (size_t k = i1; k < i2; k++) {
                const double e = t->errs[r * blocksize + (k - i1)], *uk = u + k * cols + i2;
                if (e == 0.0) continue;
                for (size_t j = 0; j < cols - i2; j++) acc[j] -= e * uk[j];
            }
            for (size_t j = i2; j < cols; j++) wr[j] = (float)acc[j - i2];
        }
    }
}

tern_status tern_prune_sparsegpt(float *w, size_t rows, size_t cols, const double *H, unsigned n,
                                 unsigned m, size_t blocksize, double percdamp,
                                 tern_sparse_quant_fn quant, void *quant_user, pthreadpool_t pool,
                                 tern_error *err) {
    tern_status st = tern_sparse_check(cols, n, m, err);
    if (st != TERN_OK) return st;
    if (!H) return tern_fail(err, TERN_ERR_INVALID_ARG, "SparseGPT needs the Hessian X^T X");
    if (blocksize == 0) blocksize = 128;
    if (blocksize % m != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "SparseGPT block size %zu is not a multiple of M = %u", blocksize, m);
    if (!(percdamp > 0.0))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "SparseGPT dampening %g must be > 0", percdamp);
    if (cols > 65536 || rows > SIZE_MAX / cols)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "SparseGPT: matrix %zu x %zu is too large",
                         rows, cols);
    const size_t tiles = (rows + SPARSEGPT_TILE_ROWS - 1) / SPARSEGPT_TILE_ROWS;
    double *h = malloc(cols * cols * sizeof *h);
    double *u = malloc(cols * cols * sizeof *u);
    uint8_t *keep = calloc(rows * cols, 1);
    double *errs = malloc(rows * blocksize * sizeof *errs);
    float *orig = malloc(rows * sizeof *orig);
    double *acc = malloc(tiles * cols * sizeof *acc);
    if (!h || !u || !keep || !errs || !orig || !acc) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for SparseGPT on %zu x %zu", rows,
                       cols);
        goto done;
    }
    memcpy(h, H, cols * cols * sizeof *h);
    double mean = 0.0;
    for (size_t c = 0; c < cols; c++) {
        if (h[c * cols + c] == 0.0) { /* a dead input: its weights cannot matter */
            h[c * cols + c] = 1.0;
            for (size_t r = 0; r < rows; r++) w[r * cols + c] = 0.0f;
        }
        mean += h[c * cols + c];
    }
    const double damp = percdamp * mean / (double)cols;
    for (size_t c = 0; c < cols; c++) h[c * cols + c] += damp;
    if (tern_gptq_inverse_cholesky(h, cols, NULL, u, pool, err) != TERN_OK) {
        st = tern_fail(err, TERN_ERR_INVALID_ARG,
                       "SparseGPT: the dampened Hessian (%zu x %zu) is not positive definite",
                       cols, cols);
        goto done;
    }
    sparsegpt_task t = {w, rows, cols, blocksize, n, m, u, keep, errs, orig, acc, quant, quant_user};
    if (pool && tiles > 1)
        pthreadpool_parallelize_1d_tile_1d(pool, sparsegpt_rows, &t, rows, SPARSEGPT_TILE_ROWS,
                                           PTHREADPOOL_FLAG_YIELD_WORKERS);
    else
        for (size_t r = 0; r < rows; r += SPARSEGPT_TILE_ROWS)
            sparsegpt_rows(&t, r, rows - r < SPARSEGPT_TILE_ROWS ? rows - r : SPARSEGPT_TILE_ROWS);
    st = TERN_OK;
done:
    free(h);
    free(u);
    free(keep);
    free(errs);
    free(orig);
    free(acc);
    return st;
}

/* ---- packing -------------------------------------------------------------- */

unsigned tern_sparse_index_get(const uint8_t *index, size_t cols, unsigned n, unsigned m,
                               size_t r, size_t k) {
    const unsigned b = m == 4 ? 2 : 3;
    const size_t stored = cols / m * n, row_bytes = (stored * b + 7) / 8;
    const uint8_t *p = index + r * row_bytes;
    unsigned v = 0;
    for (unsigned i = 0; i < b; i++) {
        const size_t bit = k * b + i;
        v |= (unsigned)((p[bit / 8] >> (bit % 8)) & 1u) << i;
    }
    return v;
}

/* Packs one row's kept values on the given groups' grids (format 7.2). */
static void tern_sparse_pack_fixed(const tern_quant_params *p, const float *kept, size_t stored,
                                   const uint16_t *fs, const uint8_t *fz, uint8_t *values,
                                   uint16_t *scales, uint8_t *zeros) {
    const size_t gs = p->group_size;
    for (size_t g = 0; g < stored / gs; g++) {
        const uint8_t z = fz ? fz[g] : 0;
        scales[g] = fs[g];
        if (zeros) zeros[g] = z;
        for (size_t j = 0; j < gs; j++) {
            const uint8_t q = tern_sparse_q(p, kept[g * gs + j], fs[g], z);
            if (p->encoding == TERN_ENC_Q8) {
                values[g * gs + j] = q;
            } else {
                uint8_t *b = values + g * (gs / 2) + (j < gs / 2 ? j : j - gs / 2);
                *b = j < gs / 2 ? (uint8_t)((*b & 0xf0) | q) : (uint8_t)((*b & 0x0f) | (q << 4));
            }
        }
    }
}

tern_status tern_sparse_pack(const tern_tensor_desc *desc, const float *w, int clip_search,
                             const uint16_t *fixed_scales, const uint8_t *fixed_zeros,
                             void *values, uint16_t *scales, uint8_t *zeros, uint8_t *index,
                             tern_error *err) {
    const unsigned n = desc->sparse_n, m = desc->sparse_m;
    uint64_t sizes[TERN_PLANE_COUNT];
    if (desc->ndim != 2 || m == 0 || tern_tensor_plane_sizes(desc, sizes) != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "sparse pack: inconsistent description (ndim %u, %u:%u, group %u)",
                         desc->ndim, n, m, desc->group_size);
    const size_t rows = (size_t)desc->dims[0], cols = (size_t)desc->dims[1];
    const size_t stored = cols / m * n;
    const unsigned b = m == 4 ? 2 : 3;
    const size_t index_row = (stored * b + 7) / 8;
    const int quantised = desc->encoding == TERN_ENC_Q8 || desc->encoding == TERN_ENC_Q4;
    if (!quantised && desc->encoding != TERN_ENC_F32 && desc->encoding != TERN_ENC_F16 &&
        desc->encoding != TERN_ENC_BF16)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "sparse pack: encoding %s cannot be sparse",
                         tern_encoding_name(desc->encoding));
    float *kept = malloc(stored * sizeof *kept);
    uint8_t *tmp = quantised ? malloc(desc->group_size) : NULL;
    if (!kept || (quantised && !tmp)) {
        free(kept);
        free(tmp);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory packing a %zu x %zu sparse tensor",
                         rows, cols);
    }
    memset(index, 0, (size_t)sizes[TERN_PLANE_INDEX]);
    const tern_quant_params qp = {desc->encoding, desc->group_size,
                                  (desc->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0, clip_search};
    const size_t groups_row = quantised ? stored / desc->group_size : 0;
    double s[8];
    for (size_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        uint8_t *ir = index + r * index_row;
        size_t k = 0;
        for (size_t c0 = 0; c0 < cols; c0 += m) {
            for (unsigned j = 0; j < m; j++) s[j] = fabs((double)wr[c0 + j]);
            const unsigned keep = tern_sparse_top_n(s, n, m);
            for (unsigned j = 0; j < m; j++) {
                if (!(keep & (1u << j))) continue;
                kept[k] = wr[c0 + j];
                for (unsigned i = 0; i < b; i++) {
                    const size_t bit = k * b + i;
                    ir[bit / 8] |= (uint8_t)(((j >> i) & 1u) << (bit % 8));
                }
                k++;
            }
        }
        switch (desc->encoding) {
        case TERN_ENC_F32: memcpy((float *)values + r * stored, kept, stored * sizeof *kept); break;
        case TERN_ENC_F16:
            for (size_t i = 0; i < stored; i++)
                ((uint16_t *)values)[r * stored + i] = tern_f32_to_f16(kept[i]);
            break;
        case TERN_ENC_BF16:
            for (size_t i = 0; i < stored; i++)
                ((uint16_t *)values)[r * stored + i] = tern_f32_to_bf16(kept[i]);
            break;
        default: {
            const size_t row_bytes = desc->encoding == TERN_ENC_Q8 ? stored : stored / 2;
            if (fixed_scales) {
                tern_sparse_pack_fixed(&qp, kept, stored, fixed_scales + r * groups_row,
                                       fixed_zeros ? fixed_zeros + r * groups_row : NULL,
                                       (uint8_t *)values + r * row_bytes, scales + r * groups_row,
                                       zeros ? zeros + r * groups_row : NULL);
                break;
            }
            tern_quantize_rows(&qp, 1, stored, kept, (uint8_t *)values + r * row_bytes,
                               scales + r * groups_row, zeros ? zeros + r * groups_row : NULL, tmp);
        }
        }
    }
    free(kept);
    free(tmp);
    return TERN_OK;
}
