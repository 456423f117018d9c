/* Inline helpers shared by the AArch64 tiers (plain ARMv8.0 AdvSIMD only, so
 * any tier may include it); on 32-bit ARM neon_arm32.h supplies the AArch64-only
 * intrinsics the neon tier uses. */
#ifndef TERN_KERNELS_ARM_NEON_UTIL_H
#define TERN_KERNELS_ARM_NEON_UTIL_H

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "kernels/arm/neon_arm32.h"

#define TERN_ARM_INLINE static inline __attribute__((always_inline))

/* IEEE half to float, exact (fcvt; FPCR.FZ is off in user space). */
TERN_ARM_INLINE float tern_arm_f16_to_f32(uint16_t h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

TERN_ARM_INLINE float tern_arm_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Four bytes at p (any alignment) in the low half of a vector. */
TERN_ARM_INLINE uint8x8_t tern_arm_load4_u8(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return vreinterpret_u8_u32(vdup_n_u32(u));
}

/* e^x, about 1.5 ulp (Cephes' expf polynomial after a Cody-Waite range
 * reduction). Overflows to inf above ~88.72, goes through the subnormals to 0
 * below ~-87.3; NaN stays NaN. 2^n is applied as two factors so that n up to
 * 128 and down to -150 need no special case. */
TERN_ARM_INLINE float32x4_t tern_arm_expf(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-104.0f)), vdupq_n_f32(89.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1);
    const int32x4_t n2 = vsubq_s32(ni, n1);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

#endif
