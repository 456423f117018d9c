/* AWQ (Lin et al. 2023): per-input-channel scales s = mean|x|^alpha that
 * protect the salient channels of a group of linear layers sharing an
 * input, searched on the calibration statistics and folded into the
 * operator before them, so that the float model computes the same function;
 * then a per-group clipping search (docs/quantization.md, AWQ). The fold
 * groups are shared with SmoothQuant. */
#ifndef TERN_CONVERTER_AWQ_H
#define TERN_CONVERTER_AWQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "converter/calib.h"
#include "converter/quantize.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_AWQ_GRID 20       /* alpha in 0, 1/20, ..., 19/20 */
#define TERN_AWQ_CLIP_STEPS 10 /* clip to max|w| * (1 - i/20), i < 10 */
#define TERN_AWQ_SEARCH_ROWS 256 /* the scale search scores at most this many rows per layer (evenly spread) */

/* Linear layers reading one input, and what produces that input: the
 * vectors (norm weight and bias) or the previous linear layer (and its bias)
 * whose outputs are divided by s. */
typedef struct tern_fold_group {
    char members[3][96];
    size_t n_members;
    char prev[2][96];  /* prev[1] may be "" */
    int prev_is_linear; /* prev[0] is a linear whose rows are divided */
    int tie_heads;      /* o_proj under GQA: one scale per KV-head channel */
} tern_fold_group;

/* The fold groups of block b of a Llama-family or ViT model (at most 4). */
size_t tern_fold_groups(tern_arch arch, uint32_t block, tern_fold_group out[4]);

/* Column -> scale index map of a group (identity, or the KV-head channel
 * feeding each o_proj column); *n_scales receives the number of scales.
 * 0, or -1 when the heads do not fit the shapes. */
int tern_fold_tie(const tern_calib_stage *stage, const tern_fold_group *g, size_t cols,
                  size_t *tie, size_t *n_scales);

/* Applies s (per scale index) to a group: member columns times s[tie[c]],
 * previous operator's outputs divided by s. */
tern_status tern_fold_apply(tern_calib_result *r, tern_calib_stage *stage, const tern_fold_group *g,
                            const size_t *tie, const float *s, size_t cols, size_t n_scales,
                            tern_error *err);

/* Output error sum_r d_r^T H d_r of quantising w (rows x cols) scaled by s
 * per column: d = Q(w diag(s)) diag(1/s) - w, for H = sum x x^T. */
double tern_awq_loss(const tern_quant_params *qp, const float *w, size_t rows, size_t cols,
                     const float *s, const double *H, pthreadpool_t pool);

/* The scales of a group of linears w[i] (rows[i] x cols) given the mean |x|
 * of their input per scale index (tie maps columns to indices): the grid
 * value of alpha with the least loss (alpha = 0, plain RTN, on ties). */
tern_status tern_awq_search(const tern_quant_params *qp, const float *const *w, const size_t *rows,
                            size_t n_w, size_t cols, const size_t *tie, size_t n_scales,
                            const double *x_mean, const double *H, pthreadpool_t pool, float *s,
                            double *alpha_out, tern_error *err);

/* tern_calib_stage_fn (user: tern_calib_method). */
tern_status tern_awq_calib_stage(void *user, tern_calib_stage *stage, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
