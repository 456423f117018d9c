/* GPTQ (Frantar et al. 2022): per linear layer, quantisation column by column
 * with the error of each column compensated on the columns not yet
 * quantised, through the inverse Hessian of the layer's output error
 * (docs/quantization.md, GPTQ). */
#ifndef TERN_CONVERTER_GPTQ_H
#define TERN_CONVERTER_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "converter/calib.h"
#include "converter/quantize.h"
#include "runtime/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_GPTQ_PERCDAMP 0.01 /* damping: this fraction of the mean Hessian diagonal */
#define TERN_GPTQ_BLOCK 128     /* columns per lazy batch update */

typedef struct tern_gptq_params {
    tern_quant_params quant; /* Q8/Q4 encoding, group size, zero point, clip search */
    double percdamp;         /* 0: TERN_GPTQ_PERCDAMP */
    size_t block_size;       /* 0: TERN_GPTQ_BLOCK */
    int act_order;           /* columns by decreasing Hessian diagonal; groups fixed beforehand */
} tern_gptq_params;

/* U with H^-1 = U^T U, U upper triangular ([n][n] row-major) into U (float)
 * or, when U is NULL, U64 (double: SparseGPT), for a symmetric positive
 * definite H ([n][n] double, not modified); the work splits over pool (may
 * be NULL). Returns TERN_ERR_INVALID_ARG when H is not positive definite. */
tern_status tern_gptq_inverse_cholesky(const double *H, size_t n, float *U, double *U64,
                                       pthreadpool_t pool, tern_error *err);

/* Quantises w[rows][cols] (not modified) given H = sum x x^T ([cols][cols],
 * not modified) into the planes of a Q8/Q4 tensor of p->quant: values
 * (packed as docs/format.md 7.2), scales, zeros (asymmetric only). Rows are
 * independent and split over `pool` (may be NULL). */
tern_status tern_gptq_quantize(const tern_gptq_params *p, const float *w, size_t rows, size_t cols,
                               const double *H, uint8_t *values, uint16_t *scales, uint8_t *zeros,
                               pthreadpool_t pool, tern_error *err);

/* tern_calib_stage_fn (user: tern_calib_method): GPTQ for every linear of the
 * stage that the conversion quantises; the result becomes both the tensor's
 * planes and its replacement for the later stages' calibration. */
tern_status tern_gptq_calib_stage(void *user, tern_calib_stage *stage, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
