/* Calibration: running a float .tern model on calibration data with tern's own
 * runtime and collecting, per linear layer, statistics of its input, one
 * stage (a block of layers) at a time; and the conversion driver of the
 * calibration-based methods (GPTQ, AWQ, SmoothQuant; docs/quantization.md).
 *
 * Stages: stage 0 holds the linear layers outside the blocks (e.g. ViT's
 * patch embedding), stage b + 1 those of block b ("blk.b.*"). The token
 * embedding and the output layer are never observed (they keep their own
 * encodings). Linear layers that read the same input rows (q/k/v, gate/up)
 * share one tern_calib_stats.
 *
 * Memory: only the statistics of the stages of the current pass exist at a
 * time. sequential = 1 runs one pass over the data per stage, with the
 * replacements that earlier stages' callbacks set (GPTQ's quantised blocks)
 * in place, so stage s sees the inputs that the compressed blocks before it
 * produce; otherwise as many stages as fit in memory_budget share a pass. */
#ifndef TERN_CONVERTER_CALIB_H
#define TERN_CONVERTER_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "converter/quantize.h"
#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "runtime/pool.h"
#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_CALIB_DEFAULT_TOKENS 2048
#define TERN_CALIB_WINDOW 512 /* tokens per window of text (fewer when the model's context is shorter) */
#define TERN_CALIB_IMAGE_VIEWS 4 /* views (mirror, random resized crops) per calibration image */

/* Input statistics of a linear layer over the n calibration rows it saw. */
typedef struct tern_calib_stats {
    uint64_t n;       /* rows (tokens) */
    size_t cols;
    double *hessian;  /* [cols][cols] sum of x x^T (symmetric, both halves), or NULL */
    double *sum_sq;   /* [cols] sum of x_j^2: the L2 norm squared of channel j */
    double *sum_abs;  /* [cols] sum of |x_j| (mean |x_j| = sum_abs / n) */
    float *max_abs;   /* [cols] max |x_j| */
} tern_calib_stats;

typedef struct tern_calib_linear {
    char name[96];       /* tensor name, e.g. "blk.3.attn_q.weight" */
    uint32_t stage;
    size_t rows, cols;
    const float *weight; /* [rows][cols] F32 weights of the float model (mapped) */
    const tern_calib_stats *stats; /* valid during the stage callback; shared, read-only */
    /* Set by the stage callback (optional): the weight later passes multiply
     * by instead of this one (planes owned by the caller, valid until
     * tern_calib_run returns). */
    tern_weight replacement;
    int has_replacement;
} tern_calib_linear;

/* What a stage callback sees. */
typedef struct tern_calib_stage {
    uint32_t index;          /* stage number (see above) */
    uint32_t n_stages;
    const tern_file *file;   /* the float model: metadata and every tensor */
    tern_arch arch;
    pthreadpool_t pool;      /* the calibration threads, may be NULL */
    tern_calib_linear *linears; /* this stage's layers, in the order the model runs them */
    size_t n_linears;
} tern_calib_stage;

typedef tern_status (*tern_calib_stage_fn)(void *user, tern_calib_stage *stage, tern_error *err);

typedef struct tern_calib_options {
    const char *data_path; /* text (.txt), token ids (.ids: decimal, whitespace-separated),
                              a folder of JPEG/PNG images or a .npy float32 [n][c][h][w] of
                              preprocessed pixels (vision models) */
    uint32_t max_tokens;   /* 0: TERN_CALIB_DEFAULT_TOKENS; images: max_tokens / tokens per image (>= 1) */
    uint32_t image_views;  /* images: views of each (calib.c: the image, its mirror, crops);
                              0: TERN_CALIB_IMAGE_VIEWS; .npy pixels: at most 2 */
    int need_hessian;      /* 0: only the per-channel sums (cheaper) */
    int sequential;
    uint32_t first_stage;  /* stages below it are not calibrated (no pass, no callback) */
    size_t memory_budget;  /* bytes of statistics per pass when !sequential; 0: 512 MiB */
    uint32_t n_threads;    /* 0: the runtime's default */
    int full_passes;       /* run every pass from the embedding, not from the stream kept
                              between passes (the same statistics, slower: for tests) */
    tern_progress_fn progress; /* may be NULL */
    void *progress_user;
} tern_calib_options;

/* Opens the float model at model_path (a .tern of F32 weights), loads the
 * calibration data and calls fn once per non-empty stage, in order.
 * TERN_ERR_UNSUPPORTED for architectures other than Llama-family and ViT. */
tern_status tern_calib_run(const char *model_path, const tern_calib_options *opts,
                           tern_calib_stage_fn fn, void *user, tern_error *err);

/* The linear of a stage named `name`, or NULL. */
tern_calib_linear *tern_calib_find(tern_calib_stage *stage, const char *name);

/* ---- What a method leaves for the final conversion ------------------------
 * Per tensor either ready planes (GPTQ) or a fold applied to the float
 * tensor before the usual encoding (AWQ, SmoothQuant):
 *   w[r][c] = w[r][c] * col_scale[c] / row_div[r], then each group of g
 *   columns of a row clamped to +-clip[r][group]; 1-D tensors: v[i] /= row_div[i]. */
typedef struct tern_calib_tensor {
    char name[96];
    uint64_t rows, cols;       /* 1-D: rows = n, cols = 1 */
    float *col_scale;          /* [cols] or NULL */
    float *row_div;            /* [rows] or NULL */
    float *clip;               /* [rows][cols / clip_group] or NULL */
    uint32_t clip_group;
    int has_planes;            /* 1: write desc and planes as they are */
    float *dequant;            /* planes dequantised, [rows][cols]: the calibration's replacement */
    tern_tensor_desc desc;
    void *planes[TERN_PLANE_COUNT];
} tern_calib_tensor;

typedef struct tern_calib_result {
    tern_calib_tensor *tensors;
    size_t n, cap;
} tern_calib_result;

/* The record of `name`, created (zeroed, with its shape) when absent; NULL when out of memory. */
tern_calib_tensor *tern_calib_result_get(tern_calib_result *r, const char *name, uint64_t rows,
                                         uint64_t cols);
tern_calib_tensor *tern_calib_result_find(const tern_calib_result *r, const char *name);
void tern_calib_result_free(tern_calib_result *r);
/* Multiplies t's column scales by s (allocating them at 1). */
tern_status tern_calib_scale_cols(tern_calib_tensor *t, const float *s, tern_error *err);
/* Multiplies t's row divisors by s[i] (allocating them at 1). */
tern_status tern_calib_div_rows(tern_calib_tensor *t, const float *s, tern_error *err);
/* The folded value of row r of w (cols values) into out. */
void tern_calib_tensor_apply_row(const tern_calib_tensor *t, size_t r, const float *w, float *out);

/* ---- The conversion driver (convert.c) ------------------------------------ */

/* What the methods' stage callbacks (gptq.h, awq.h, smoothquant.h) get as user. */
typedef struct tern_calib_method {
    const tern_convert_ctx *ctx; /* the final conversion's settings */
    tern_calib_result *result;
    int act_order;
} tern_calib_method;

/* The quantiser the final conversion applies to linear `name` of `cols`
 * columns: 1 and *qp for Q8/Q4, 0 when it stays float. */
int tern_calib_target(const tern_convert_ctx *ctx, const char *name, size_t cols,
                      tern_quant_params *qp);

/* Converts the source into a temporary float .tern beside dst_path, runs the
 * method of opts on it, and returns what the final conversion must apply
 * (through tern_calib_tensor_hook). */
tern_status tern_calib_prepare(const tern_importer *imp, const tern_convert_ctx *ctx,
                               const tern_convert_options *opts, const char *dst_path,
                               tern_calib_result **out, tern_error *err);
/* tern_convert_ctx.tensor_hook for a tern_calib_result. */
tern_status tern_calib_tensor_hook(void *user, tern_convert_ctx *ctx, const char *name,
                                   uint32_t ndim, const uint64_t *dims, float *buf,
                                   uint64_t src_bytes, int *done, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
