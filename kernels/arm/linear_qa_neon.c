/* NEON (ARMv8.0) integer paths: quantize_rows, and Q8/Q4 x int8 linear with
 * widening multiplies (smull: int8 x int8 fits int16, sadalp adds pairs into
 * int32). Bit-identical to kernels/ref/linear_qa_ref.c. */
#include <arm_neon.h>

#include "kernels/arm/arm.h"
#include "kernels/arm/neon_util.h"
#include "kernels/ref/ref.h"

TERN_ARM_INLINE int32x4_t tern_qa_dot32(int32x4_t acc, int8x16_t w0, int8x16_t w1, int8x16_t x0,
                                        int8x16_t x1) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
    acc = vpadalq_s16(acc, vmull_high_s8(w0, x0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(x1)));
    return vpadalq_s16(acc, vmull_high_s8(w1, x1));
}

#include "kernels/arm/linear_qa_tmpl.h"

TERN_QA_DEFINE(neon)

/* Per block of 32: amax = max |x|, id = 127 / amax (0 when amax is 0),
 * q = round-to-nearest-even(x * id) (fcvtns, as lrintf in the default
 * rounding mode), d = amax / 127, s = sum q: the ref's operations one by one. */
void tern_f32_qs8_quantize_ukernel__neon(size_t m, size_t k, const float *x, size_t ldx, int8_t *q,
                                         float *d, int32_t *s) {
    const size_t nb = k / TERN_QA_BLOCK;
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (size_t b = 0; b < nb; b++) {
            const float *xb = xi + b * TERN_QA_BLOCK;
            float32x4_t v[8];
            float32x4_t amax4 = vdupq_n_f32(0.0f);
            for (size_t j = 0; j < 8; j++) {
                v[j] = vld1q_f32(xb + 4 * j);
                amax4 = vmaxnmq_f32(amax4, vabsq_f32(v[j])); /* NaN skipped, as the ref's > */
            }
            const float amax = vmaxnmvq_f32(amax4);
            const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32x4_t sum = vdupq_n_s32(0);
            int16x8_t q16[4];
            for (size_t j = 0; j < 4; j++) {
                const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j], id));
                const int32x4_t c = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j + 1], id));
                sum = vaddq_s32(sum, vaddq_s32(a, c));
                q16[j] = vcombine_s16(vmovn_s32(a), vmovn_s32(c));
            }
            int8_t *qb = q + i * k + b * TERN_QA_BLOCK;
            vst1q_s8(qb, vcombine_s8(vmovn_s16(q16[0]), vmovn_s16(q16[1])));
            vst1q_s8(qb + 16, vcombine_s8(vmovn_s16(q16[2]), vmovn_s16(q16[3])));
            d[i * nb + b] = amax / 127.0f;
            s[i * nb + b] = vaddvq_s32(sum);
        }
    }
}
