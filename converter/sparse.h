/* N:M structured sparsity in the converter: choosing which weights to keep
 * (magnitude, Wanda, SparseGPT) and packing the kept ones into the VALUES and
 * INDEX planes of docs/format.md 7.3. docs/sparsity.md explains the choices.
 *
 * The pruning functions work in place on a dense row-major float matrix
 * w[rows][cols] (rows = output features, cols = input features): pruned
 * weights become 0 and, for SparseGPT, kept ones are updated. Every block of
 * m consecutive columns of a row then has at most n nonzeros, and
 * tern_sparse_pack keeps exactly n per block (the largest magnitudes, lower
 * column first on ties), so packing a pruned matrix keeps its mask. */
#ifndef TERN_CONVERTER_SPARSE_H
#define TERN_CONVERTER_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "converter/quantize.h"
#include "formats/encoding.h"
#include "runtime/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Patterns the converter writes and the kernels run: 2:4, 1:4, 2:8, 4:8
 * (the format also admits others, e.g. 3:8, which the ref kernels run). */
int tern_sparse_pattern_supported(unsigned n, unsigned m);

/* Whether the converter prunes tensor `name` (2-D) under the glob `pattern`
 * (fnmatch syntax, several patterns separated by commas; a leading '!'
 * excludes). NULL or "": every matrix inside the blocks ("blk.*"), never
 * token_embd or output. */
int tern_sparse_selects(const char *pattern, const char *name);

/* Magnitude: keep the n largest |w| of every m consecutive columns of a row. */
tern_status tern_prune_magnitude(float *w, size_t rows, size_t cols, unsigned n, unsigned m,
                                 tern_error *err);

/* Wanda: keep the n largest |w[r][c]| * x_norm[c] of every m consecutive
 * columns of row r; x_norm[c] is the L2 norm of input channel c over the
 * calibration tokens. No weight update. */
tern_status tern_prune_wanda(float *w, size_t rows, size_t cols, const float *x_norm, unsigned n,
                             unsigned m, tern_error *err);

/* Joint quantisation for SparseGPT: rounds column c of w (w[r * cols + c]
 * for every row r0 <= r < r1 with keep[r * cols + c] != 0) to the value the
 * chosen encoding will store, in place. Called for each range of rows once
 * per column, in column order, after column c's block mask is fixed and
 * every update from the columns before it is applied; it may read columns
 * >= c of those rows (to fit a group's scale). Ranges run on different
 * threads at once: per-row state only. */
typedef void (*tern_sparse_quant_fn)(void *user, float *w, size_t r0, size_t r1, size_t cols,
                                     const uint8_t *keep, size_t c);

/* A ready quantiser for tern_sparse_quant_fn: the group-wise RTN of
 * quantize.h over kept values (group g of a row = its kept values g*G ..
 * g*G + G-1, i.e. dense columns [g*G*m/n, (g+1)*G*m/n)). At a group's first
 * column it fits each row's scale (and zero) on the n largest-magnitude
 * values of every block of the group's columns, then rounds each column
 * with it. `scales` and `zeros` (caller-allocated, rows * stored / G
 * entries each, laid out as the SCALES and ZEROS planes) receive every
 * group's; hand them to tern_sparse_pack so that it stores exactly the
 * values SparseGPT compensated for. */
typedef struct tern_sparse_rtn {
    tern_quant_params params;
    unsigned n, m;
    uint16_t *scales; /* [rows][groups per row] */
    uint8_t *zeros;   /* [rows][groups per row] */
} tern_sparse_rtn;
void tern_sparse_rtn_quantize(void *user, float *w, size_t r0, size_t r1, size_t cols,
                              const uint8_t *keep, size_t c);

#define TERN_SPARSEGPT_PERCDAMP 0.01 /* the paper's dampening: 1 % of the mean Hessian diagonal */

/* SparseGPT (Frantar & Alistarh 2023, Algorithm 1) for N:M: H = X^T X
 * (cols x cols, symmetric, row-major; not modified), dampened by percdamp *
 * mean(diag H); U = upper Cholesky factor of H^-1. At every m-th column the
 * mask keeps, per row, the n largest w^2 / U_cc^2 of the next m columns;
 * column c's kept weights are rounded by quant (NULL: kept as they are), and
 * the error e = (w_c - q_c) / U_cc updates the later columns, w_j -= e U_cj.
 * blocksize (a multiple of m, 0: 128) batches the updates of later columns
 * (lazy batch updates); it does not change the N:M mask. Input channels with
 * H_cc == 0 are pruned first (their weights get 0). Rows are independent
 * given U: they split over pool (may be NULL) with the same result. */
tern_status tern_prune_sparsegpt(float *w, size_t rows, size_t cols, const double *H, unsigned n,
                                 unsigned m, size_t blocksize, double percdamp,
                                 tern_sparse_quant_fn quant, void *quant_user, pthreadpool_t pool,
                                 tern_error *err);

/* Packs w (rows x cols, cols % m == 0) as desc says (encoding F32/F16/BF16/
 * Q8/Q4, sparse_n/sparse_m, group_size and flags for Q8/Q4): the planes are
 * caller-allocated with tern_tensor_plane_sizes' sizes (zeros may be NULL
 * without a zero point). Keeps the n largest |w| of each block. Q8/Q4:
 * fixed_scales (and fixed_zeros when asymmetric) NULL: each group's scale is
 * fitted (quantize.h, clip_search); otherwise those scales are stored and
 * every value is rounded to their grid (tern_sparse_rtn's). */
tern_status tern_sparse_pack(const tern_tensor_desc *desc, const float *w, int clip_search,
                             const uint16_t *fixed_scales, const uint8_t *fixed_zeros,
                             void *values, uint16_t *scales, uint8_t *zeros, uint8_t *index,
                             tern_error *err);

/* The kept-value positions of row r of a packed tensor: index k (0 <=
 * k < cols/m*n) of the row, as format 7.3 stores it. */
unsigned tern_sparse_index_get(const uint8_t *index, size_t cols, unsigned n, unsigned m,
                               size_t r, size_t k);

#ifdef __cplusplus
}
#endif
#endif
