/* SmoothQuant (Xiao et al. 2022) for W8A8: per input channel
 * s = max|x|^alpha / max|w|^(1 - alpha) moves activation outliers into the
 * weights, folded like AWQ's scales (docs/quantization.md, SmoothQuant). */
#ifndef TERN_CONVERTER_SMOOTHQUANT_H
#define TERN_CONVERTER_SMOOTHQUANT_H

#include "common/error.h"
#include "converter/calib.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_SMOOTHQUANT_ALPHA 0.5

/* tern_calib_stage_fn (user: tern_calib_method). */
tern_status tern_smoothquant_calib_stage(void *user, tern_calib_stage *stage, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
