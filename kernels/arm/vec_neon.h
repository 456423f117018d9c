/* The float vector layer of kernels/simd_tmpl.h for the neon tier: the names
 * of kernels/x86/vec.h on float32x4_t. NEON has no masked loads, so a mask is
 * a lane count and partial vectors go through a zero-padded copy (never
 * touching memory past the n elements). Private to kernels/arm/. */
#ifndef TERN_KERNELS_ARM_VEC_NEON_H
#define TERN_KERNELS_ARM_VEC_NEON_H

#include <arm_neon.h>
#include <stddef.h>
#include <string.h>

#include "kernels/arm/neon_util.h"

typedef float32x4_t vf;
typedef size_t vmask; /* lanes [0, n) */
#define VW 4
#define vzero() vdupq_n_f32(0.0f)
#define vset1(a) vdupq_n_f32(a)
#define vload(p) vld1q_f32(p)
#define vstore(p, v) vst1q_f32((p), (v))
#define vfma(a, b, c) vfmaq_f32((c), (a), (b)) /* a * b + c */
#define vmul(a, b) vmulq_f32((a), (b))
#define vadd(a, b) vaddq_f32((a), (b))
#define vsub(a, b) vsubq_f32((a), (b))
#define vdiv(a, b) vdivq_f32((a), (b))
#define vmax(a, b) vmaxq_f32((a), (b))
#define vmin(a, b) vminq_f32((a), (b))
#define vabs(a) vabsq_f32(a)
#define vselect_gt(a, b, x, y) vbslq_f32(vcgtq_f32((a), (b)), (x), (y))
#define vselect_eq(a, b, x, y) vbslq_f32(vceqq_f32((a), (b)), (x), (y))
#define vhsum(a) vaddvq_f32(a)
#define vexp(a) tern_arm_expf(a)

TERN_ARM_INLINE vmask vmask_first(size_t n) { return n; }
TERN_ARM_INLINE vf vload_m(const float *p, vmask n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(t, p, n * sizeof *p);
    return vld1q_f32(t);
}
TERN_ARM_INLINE void vstore_m(float *p, vmask n, vf v) {
    float t[4];
    vst1q_f32(t, v);
    memcpy(p, t, n * sizeof *p);
}

/* log(x) for finite normal x > 0: Cephes' logf polynomial (< 2 ulp) on
 * x = 2^e m, m in [sqrt(1/2), sqrt(2)). */
TERN_ARM_INLINE vf vlog(vf x) {
    const uint32x4_t bits = vreinterpretq_u32_f32(x);
    float32x4_t ef = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)),
                                             vdupq_n_s32(126)));
    float32x4_t m = vreinterpretq_f32_u32(
        vorrq_u32(vandq_u32(bits, vdupq_n_u32(0x007fffff)), vdupq_n_u32(0x3f000000)));
    const uint32x4_t small = vcltq_f32(m, vdupq_n_f32(0.707106781186547524f));
    ef = vbslq_f32(small, vsubq_f32(ef, vdupq_n_f32(1.0f)), ef);
    m = vbslq_f32(small, vsubq_f32(vaddq_f32(m, m), vdupq_n_f32(1.0f)),
                  vsubq_f32(m, vdupq_n_f32(1.0f)));
    const float32x4_t z = vmulq_f32(m, m);
    float32x4_t p = vdupq_n_f32(7.0376836292e-2f);
    p = vfmaq_f32(vdupq_n_f32(-1.1514610310e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(1.1676998740e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(-1.2420140846e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(1.4249322787e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(-1.6668057665e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(2.0000714765e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(-2.4999993993e-1f), p, m);
    p = vfmaq_f32(vdupq_n_f32(3.3333331174e-1f), p, m);
    float32x4_t y = vmulq_f32(vmulq_f32(p, m), z);
    y = vfmaq_f32(y, ef, vdupq_n_f32(-2.12194440e-4f));
    y = vfmaq_f32(y, z, vdupq_n_f32(-0.5f));
    return vfmaq_f32(vaddq_f32(m, y), ef, vdupq_n_f32(0.693359375f));
}

#endif
