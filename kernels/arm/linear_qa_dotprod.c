/* dotprod (ARMv8.2 sdot) integer paths: Q8/Q4 x int8 linear, one sdot per 16
 * bytes. Bit-identical to kernels/ref/linear_qa_ref.c. */
#include <arm_neon.h>

#include "kernels/arm/arm.h"
#include "kernels/arm/neon_util.h"
#include "kernels/ref/ref.h"

TERN_ARM_INLINE int32x4_t tern_qa_dot32(int32x4_t acc, int8x16_t w0, int8x16_t w1, int8x16_t x0,
                                        int8x16_t x1) {
    return vdotq_s32(vdotq_s32(acc, w0, x0), w1, x1);
}

#define TERN_QT_SDOT 1
#include "kernels/arm/linear_qa_tmpl.h"

TERN_QA_DEFINE(dotprod)

void tern_kernels_init_dotprod(tern_kernels *k) {
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel_2x4__dotprod;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel_2x4__dotprod;
    k->linear_qa_nm[TERN_ENC_Q8] = tern_qs8_nm_linear_ukernel_4x32__dotprod;
    k->linear_qa_nm[TERN_ENC_Q4] = tern_qs8_nm_linear_ukernel_4x32__dotprod;
}
