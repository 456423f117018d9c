/* Shared pieces of the AArch64 integer paths (Q8/Q4 weights x int8
 * activations), following kernels/ref/linear_qa_ref.c bit for bit:
 *
 * With group_size % 32 == 0 every segment of the ref is one activation block,
 * so a block's dot may be taken over the raw stored weights and corrected
 * with the block's sum s: dot = sum (qw - zw) qx = sum w8 qx - off * s, where
 * w8 is the weight as an int8 vector and off the matching offset:
 *   Q8 symmetric:  w8 = q (int8),        off = 0
 *   Q8 zero point: w8 = q ^ 0x80 = q - 128 (uint8 q), off = z - 128
 *   Q4 symmetric:  w8 = nibble,          off = 8
 *   Q4 zero point: w8 = nibble,          off = z
 * All integers are exact, so every tier's dot equals the ref's; the float
 * side then is the ref's fmaf((float)dot, dw * dx, acc) lane by lane. Plain
 * ARMv8.0 only: any tier may include it. */
#ifndef TERN_KERNELS_ARM_LINEAR_QA_ARM_H
#define TERN_KERNELS_ARM_LINEAR_QA_ARM_H

#include <arm_neon.h>

#include "formats/encoding.h"
#include "kernels/arm/neon_util.h"
#include "kernels/kernels.h"

enum { TERN_QA_Q8, TERN_QA_Q8Z, TERN_QA_Q4, TERN_QA_Q4Z };

/* Whether the block kernels apply (else the ref runs: same results). */
static inline int tern_qa_arm_supported(const tern_weight *w) {
    return w->layout == TERN_LAYOUT_ROW_MAJOR && w->sparse_m == 0 &&
           (w->flags & ~(uint16_t)TERN_TENSOR_HAS_ZERO_POINT) == 0 && w->group_size != 0 &&
           w->group_size % TERN_QA_BLOCK == 0 && w->cols % w->group_size == 0;
}

static inline int tern_qa_arm_kind(const tern_weight *w) {
    const int zp = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    if (w->encoding == TERN_ENC_Q8) return zp ? TERN_QA_Q8Z : TERN_QA_Q8;
    return zp ? TERN_QA_Q4Z : TERN_QA_Q4;
}

/* Row r's group g: its first value byte. */
TERN_ARM_INLINE const uint8_t *tern_qa_group_ptr(int kind, const tern_weight *w, size_t r,
                                                 size_t g) {
    const size_t gs = w->group_size;
    if (kind == TERN_QA_Q8 || kind == TERN_QA_Q8Z)
        return (const uint8_t *)w->values + r * w->cols + g * gs;
    return (const uint8_t *)w->values + r * (w->cols / 2) + g * (gs / 2);
}

/* 16 weights starting at value j of a group (j % 16 == 0) as int8. For Q4 a
 * 16-value chunk lies in one nibble half since G/2 is a multiple of 16. */
TERN_ARM_INLINE int8x16_t tern_qa_w16(int kind, const uint8_t *qg, size_t j, size_t half) {
    switch (kind) {
    case TERN_QA_Q8:
        return vld1q_s8((const int8_t *)qg + j);
    case TERN_QA_Q8Z:
        return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(qg + j), vdupq_n_u8(0x80)));
    default:
        if (j < half) return vreinterpretq_s8_u8(vandq_u8(vld1q_u8(qg + j), vdupq_n_u8(0x0f)));
        return vreinterpretq_s8_u8(vshrq_n_u8(vld1q_u8(qg + j - half), 4));
    }
}

TERN_ARM_INLINE int32_t tern_qa_offset(int kind, const tern_weight *w, size_t r, size_t g) {
    const size_t n_groups = w->cols / w->group_size;
    switch (kind) {
    case TERN_QA_Q8:
        return 0;
    case TERN_QA_Q8Z:
        return (int32_t)((const uint8_t *)w->zeros)[r * n_groups + g] - 128;
    case TERN_QA_Q4:
        return 8;
    default:
        return (int32_t)((const uint8_t *)w->zeros)[r * n_groups + g];
    }
}

/* The F16 scales of group g for four rows, as floats. */
TERN_ARM_INLINE float32x4_t tern_qa_scales4(const tern_weight *w, const size_t rows[4], size_t g) {
    const size_t n_groups = w->cols / w->group_size;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint16_t h[4] = {scales[rows[0] * n_groups + g], scales[rows[1] * n_groups + g],
                           scales[rows[2] * n_groups + g], scales[rows[3] * n_groups + g]};
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* y[r + j] = acc_j (+ bias[r + j]) for the first n lanes. */
TERN_ARM_INLINE void tern_qa_store4(float32x4_t acc, const size_t rows[4], size_t n,
                                    const float *bias, float *y) {
    if (bias) {
        const float b[4] = {bias[rows[0]], bias[rows[1]], bias[rows[2]], bias[rows[3]]};
        acc = vaddq_f32(acc, vld1q_f32(b));
    }
    if (n == 4) {
        vst1q_f32(y + rows[0], acc);
        return;
    }
    float t[4];
    vst1q_f32(t, acc);
    for (size_t j = 0; j < n; j++)
        y[rows[0] + j] = t[j];
}

/* Rows r .. r + 3 clamped to r1 - 1 (tails compute duplicates, store fewer). */
TERN_ARM_INLINE size_t tern_qa_rows4(size_t r, size_t r1, size_t rows[4]) {
    for (size_t j = 0; j < 4; j++)
        rows[j] = r + j < r1 ? r + j : r1 - 1;
    return r1 - r < 4 ? r1 - r : 4;
}

#endif
