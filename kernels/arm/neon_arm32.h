/* AArch32 (ARMv7-A NEON + VFPv4) stand-ins for the AArch64-only intrinsics
 * the neon tier uses, so the same kernel files build for 32-bit Raspberry Pi
 * OS (kernels/arm/meson.build: -mfpu=neon-vfpv4 -mfp16-format=ieee). Each one
 * computes what its AArch64 instruction computes, in the same order where the
 * result depends on it (vaddvq_f32 adds pairwise, like faddp), so integer
 * paths stay bit-identical to the ref. One difference remains and is the
 * hardware's: AArch32 NEON float arithmetic flushes subnormals to zero.
 * Included by neon_util.h only; on AArch64 it is empty. */
#ifndef TERN_KERNELS_ARM_NEON_ARM32_H
#define TERN_KERNELS_ARM_NEON_ARM32_H

#if defined(__arm__) && !defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>

#if !defined(__ARM_NEON) || !defined(__ARM_FEATURE_FMA)
#error "the 32-bit neon tier needs -mfpu=neon-vfpv4 (NEON with fused multiply-add)"
#endif

#define TERN_ARM32_INLINE static inline __attribute__((always_inline))

TERN_ARM32_INLINE float vaddvq_f32(float32x4_t v) {
    const float32x2_t p = vpadd_f32(vget_low_f32(v), vget_high_f32(v)); /* v0+v1, v2+v3 */
    return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);
}

TERN_ARM32_INLINE int32_t vaddvq_s32(int32x4_t v) {
    const int32x2_t p = vpadd_s32(vget_low_s32(v), vget_high_s32(v));
    return vget_lane_s32(p, 0) + vget_lane_s32(p, 1);
}

TERN_ARM32_INLINE int32x4_t vpaddq_s32(int32x4_t a, int32x4_t b) {
    return vcombine_s32(vpadd_s32(vget_low_s32(a), vget_high_s32(a)),
                        vpadd_s32(vget_low_s32(b), vget_high_s32(b)));
}

TERN_ARM32_INLINE int64x2_t vzip1q_s64(int64x2_t a, int64x2_t b) {
    return vcombine_s64(vget_low_s64(a), vget_low_s64(b));
}

TERN_ARM32_INLINE int64x2_t vzip2q_s64(int64x2_t a, int64x2_t b) {
    return vcombine_s64(vget_high_s64(a), vget_high_s64(b));
}

TERN_ARM32_INLINE int16x8_t vmull_high_s8(int8x16_t a, int8x16_t b) {
    return vmull_s8(vget_high_s8(a), vget_high_s8(b));
}

TERN_ARM32_INLINE int16x8_t vmovl_high_s8(int8x16_t a) {
    return vmovl_s8(vget_high_s8(a));
}

TERN_ARM32_INLINE uint16x8_t vmovl_high_u8(uint8x16_t a) {
    return vmovl_u8(vget_high_u8(a));
}

TERN_ARM32_INLINE int32x4_t vmovl_high_s16(int16x8_t a) {
    return vmovl_s16(vget_high_s16(a));
}

TERN_ARM32_INLINE uint32x4_t vmovl_high_u16(uint16x8_t a) {
    return vmovl_u16(vget_high_u16(a));
}

TERN_ARM32_INLINE float32x4_t vcvt_high_f32_f16(float16x8_t a) {
    return vcvt_f32_f16(vget_high_f16(a));
}

TERN_ARM32_INLINE float32x4_t vfmaq_n_f32(float32x4_t a, float32x4_t b, float c) {
    return vfmaq_f32(a, b, vdupq_n_f32(c));
}

TERN_ARM32_INLINE uint32x4_t vcltzq_f32(float32x4_t a) {
    return vcltq_f32(a, vdupq_n_f32(0.0f));
}

/* VFP division per lane: exact, as fdiv is (NEON has only estimates). */
TERN_ARM32_INLINE float32x4_t vdivq_f32(float32x4_t a, float32x4_t b) {
    float x[4], y[4];
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (int i = 0; i < 4; i++) x[i] /= y[i];
    return vld1q_f32(x);
}

/* Round to nearest, ties to even: adding and subtracting 2^23 rounds |x| <
 * 2^23 exactly in the current (nearest) mode; larger |x|, inf and NaN are
 * already integral and pass through. */
TERN_ARM32_INLINE float32x4_t vrndnq_f32(float32x4_t x) {
    const float32x4_t two23 = vdupq_n_f32(8388608.0f);
    const float32x4_t ax = vabsq_f32(x);
    const float32x4_t r = vsubq_f32(vaddq_f32(ax, two23), two23);
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    const float32x4_t signed_r = vreinterpretq_f32_u32(
        vorrq_u32(vreinterpretq_u32_f32(r), vandq_u32(vreinterpretq_u32_f32(x), sign)));
    return vbslq_f32(vcltq_f32(ax, two23), signed_r, x);
}

TERN_ARM32_INLINE int32x4_t vcvtnq_s32_f32(float32x4_t x) {
    return vcvtq_s32_f32(vrndnq_f32(x));
}

/* IEEE maxNum: a NaN operand loses to a number. */
TERN_ARM32_INLINE float32x4_t vmaxnmq_f32(float32x4_t a, float32x4_t b) {
    float32x4_t r = vmaxq_f32(a, b);
    r = vbslq_f32(vceqq_f32(a, a), r, b);
    return vbslq_f32(vceqq_f32(b, b), r, a);
}

TERN_ARM32_INLINE float vmaxnmvq_f32(float32x4_t v) {
    const float a = fmaxf(vgetq_lane_f32(v, 0), vgetq_lane_f32(v, 1));
    const float b = fmaxf(vgetq_lane_f32(v, 2), vgetq_lane_f32(v, 3));
    return fmaxf(a, b);
}

TERN_ARM32_INLINE float vmaxvq_f32(float32x4_t v) {
    float32x2_t m = vpmax_f32(vget_low_f32(v), vget_high_f32(v));
    m = vpmax_f32(m, m);
    return vget_lane_f32(m, 0);
}

#endif
#endif
