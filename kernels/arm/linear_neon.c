/* NEON linear layers with float activations: fp32 FMA on weights widened in
 * registers (F16 by fcvtl, BF16 by a shift, Q8/Q4 by integer widening and one
 * multiply by the group's scale, w = scale * q as the ref decodes it).
 *
 * Register tiles of MR tokens x NR rows (1x8, 1x4, 2x4, 3x4, 4x4 and x1
 * tails), all instances of one inline function: each output element has its
 * own float32x4 accumulator fed one 4-column step at a time in column order,
 * then vaddvq, a scalar fmaf tail (dense cols % 4) and the bias. So the bits
 * of y[i][r] do not depend on the tile it landed in, on [r0, r1) or on m. */
#include <arm_neon.h>
#include <math.h>

#include "formats/encoding.h"
#include "kernels/arm/arm.h"
#include "kernels/arm/neon_util.h"
#include "kernels/ref/ref.h"

/* Weight kinds: compile-time constants of the inlined tiles. */
enum {
    TERN_W_F32,
    TERN_W_F16,
    TERN_W_BF16,
    TERN_W_Q8,  /* int8 q, w = s * q */
    TERN_W_Q8Z, /* uint8 q, w = s * (q - z) */
    TERN_W_Q8M, /* uint8 q, w = s * q + min (float product, then float sum) */
    TERN_W_Q4,  /* nibble, w = s * (q - 8) */
    TERN_W_Q4Z,
    TERN_W_Q4M,
};

#define TERN_MR_MAX 4
#define TERN_NR_MAX 8

TERN_ARM_INLINE float32x4_t tern_neon_dense4(int kind, const void *row, size_t c) {
    if (kind == TERN_W_F32) return vld1q_f32((const float *)row + c);
    const uint16x4_t h = vld1_u16((const uint16_t *)row + c);
    if (kind == TERN_W_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

TERN_ARM_INLINE float tern_neon_dense1(int kind, const void *row, size_t c) {
    if (kind == TERN_W_F32) return ((const float *)row)[c];
    const uint16_t h = ((const uint16_t *)row)[c];
    return kind == TERN_W_F16 ? tern_arm_f16_to_f32(h) : tern_arm_bf16_to_f32(h);
}

/* Loops over the tile are fully unrolled ("GCC unroll") so that acc stays in
 * registers: an index the compiler cannot resolve would put it in memory. */

TERN_ARM_INLINE void tern_neon_store(size_t MR, size_t NR,
                                     float32x4_t acc[TERN_MR_MAX][TERN_NR_MAX], size_t r,
                                     const float *bias, float *y, size_t ldy) {
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++) {
            const float s = vaddvq_f32(acc[i][j]);
            y[i * ldy + r + j] = bias ? s + bias[r + j] : s;
        }
}

/* F32, F16, BF16: any cols. */
TERN_ARM_INLINE void tern_neon_dense_tile(int kind, size_t MR, size_t NR, size_t r, const float *x,
                                          size_t ldx, const tern_weight *w, const float *bias,
                                          float *y, size_t ldy) {
    const size_t cols = w->cols;
    const size_t esize = kind == TERN_W_F32 ? 4 : 2;
    const uint8_t *rows[TERN_NR_MAX];
    float32x4_t acc[TERN_MR_MAX][TERN_NR_MAX];
#pragma GCC unroll 8
    for (size_t j = 0; j < NR; j++)
        rows[j] = (const uint8_t *)w->values + (r + j) * cols * esize;
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++)
            acc[i][j] = vdupq_n_f32(0.0f);
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
        float32x4_t xv[TERN_MR_MAX];
#pragma GCC unroll 8
        for (size_t i = 0; i < MR; i++)
            xv[i] = vld1q_f32(x + i * ldx + c);
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++) {
            const float32x4_t wv = tern_neon_dense4(kind, rows[j], c);
#pragma GCC unroll 8
            for (size_t i = 0; i < MR; i++)
                acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
        }
    }
    if (c == cols) {
        tern_neon_store(MR, NR, acc, r, bias, y, ldy);
        return;
    }
    float sums[TERN_MR_MAX][TERN_NR_MAX];
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++)
            sums[i][j] = vaddvq_f32(acc[i][j]);
    for (size_t i = 0; i < MR; i++)
        for (size_t j = 0; j < NR; j++) {
            float s = sums[i][j];
            for (size_t cc = c; cc < cols; cc++)
                s = fmaf(x[i * ldx + cc], tern_neon_dense1(kind, rows[j], cc), s);
            y[i * ldy + r + j] = bias ? s + bias[r + j] : s;
        }
}

/* Q8 (group_size % 4 == 0) and Q4 (group_size % 8 == 0): a 4-column step
 * never straddles a group, nor (Q4) the two nibble halves of one. */
TERN_ARM_INLINE void tern_neon_quant_tile(int kind, size_t MR, size_t NR, size_t r, const float *x,
                                          size_t ldx, const tern_weight *w, const float *bias,
                                          float *y, size_t ldy) {
    const int q4 = kind == TERN_W_Q4 || kind == TERN_W_Q4Z || kind == TERN_W_Q4M;
    const int zp = kind == TERN_W_Q8Z || kind == TERN_W_Q4Z;
    const int has_min = kind == TERN_W_Q8M || kind == TERN_W_Q4M;
    const size_t cols = w->cols, gs = w->group_size, n_groups = cols / gs, half = gs / 2;
    const size_t row_bytes = q4 ? cols / 2 : cols, group_bytes = q4 ? half : gs;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const uint16_t *mins = (const uint16_t *)w->zeros;
    float32x4_t acc[TERN_MR_MAX][TERN_NR_MAX];
#pragma GCC unroll 8
    for (size_t i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++)
            acc[i][j] = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < n_groups; g++) {
        float32x4_t sc[TERN_NR_MAX], mn[TERN_NR_MAX];
        int16x4_t zv[TERN_NR_MAX];
        const uint8_t *qg[TERN_NR_MAX];
#pragma GCC unroll 8
        for (size_t j = 0; j < NR; j++) {
            const size_t gi = (r + j) * n_groups + g;
            sc[j] = vdupq_n_f32(tern_arm_f16_to_f32(scales[gi]));
            zv[j] = vdup_n_s16((int16_t)(zp ? zeros[gi] : q4 && !has_min ? 8 : 0));
            mn[j] = vdupq_n_f32(has_min ? tern_arm_f16_to_f32(mins[gi]) : 0.0f);
            qg[j] = (const uint8_t *)w->values + (r + j) * row_bytes + g * group_bytes;
        }
        const float *xg = x + g * gs;
        for (size_t jb = 0; jb < gs; jb += 4) {
            float32x4_t xv[TERN_MR_MAX];
#pragma GCC unroll 8
            for (size_t i = 0; i < MR; i++)
                xv[i] = vld1q_f32(xg + i * ldx + jb);
#pragma GCC unroll 8
            for (size_t j = 0; j < NR; j++) {
                int16x4_t q16;
                if (kind == TERN_W_Q8) {
                    q16 = vget_low_s16(vmovl_s8(vreinterpret_s8_u8(tern_arm_load4_u8(qg[j] + jb))));
                } else {
                    uint8x8_t b;
                    if (!q4)
                        b = tern_arm_load4_u8(qg[j] + jb);
                    else if (jb < half)
                        b = vand_u8(tern_arm_load4_u8(qg[j] + jb), vdup_n_u8(0x0f));
                    else
                        b = vshr_n_u8(tern_arm_load4_u8(qg[j] + jb - half), 4);
                    q16 = vsub_s16(vreinterpret_s16_u16(vget_low_u16(vmovl_u8(b))), zv[j]);
                }
                float32x4_t wv = vmulq_f32(sc[j], vcvtq_f32_s32(vmovl_s16(q16)));
                if (has_min) wv = vaddq_f32(wv, mn[j]);
#pragma GCC unroll 8
                for (size_t i = 0; i < MR; i++)
                    acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
            }
        }
    }
    tern_neon_store(MR, NR, acc, r, bias, y, ldy);
}

TERN_ARM_INLINE void tern_neon_tile(int kind, size_t MR, size_t NR, size_t r, const float *x,
                                    size_t ldx, const tern_weight *w, const float *bias, float *y,
                                    size_t ldy) {
    if (kind == TERN_W_F32 || kind == TERN_W_F16 || kind == TERN_W_BF16)
        tern_neon_dense_tile(kind, MR, NR, r, x, ldx, w, bias, y, ldy);
    else
        tern_neon_quant_tile(kind, MR, NR, r, x, ldx, w, bias, y, ldy);
}

/* Rows in tiles of 8 (one token) or 4, then one at a time; tokens in 4s. */
TERN_ARM_INLINE void tern_neon_linear(int kind, size_t m, size_t r0, size_t r1, const float *x,
                                      size_t ldx, const tern_weight *w, const float *bias, float *y,
                                      size_t ldy) {
    for (size_t i0 = 0; i0 < m; i0 += TERN_MR_MAX) {
        const size_t mr = m - i0 < TERN_MR_MAX ? m - i0 : TERN_MR_MAX;
        const float *xi = x + i0 * ldx;
        float *yi = y + i0 * ldy;
        size_t r = r0;
        switch (mr) {
        case 1:
            for (; r + 8 <= r1; r += 8)
                tern_neon_tile(kind, 1, 8, r, xi, ldx, w, bias, yi, ldy);
            for (; r + 4 <= r1; r += 4)
                tern_neon_tile(kind, 1, 4, r, xi, ldx, w, bias, yi, ldy);
            for (; r < r1; r++)
                tern_neon_tile(kind, 1, 1, r, xi, ldx, w, bias, yi, ldy);
            break;
        case 2:
            for (; r + 4 <= r1; r += 4)
                tern_neon_tile(kind, 2, 4, r, xi, ldx, w, bias, yi, ldy);
            for (; r < r1; r++)
                tern_neon_tile(kind, 2, 1, r, xi, ldx, w, bias, yi, ldy);
            break;
        case 3:
            for (; r + 4 <= r1; r += 4)
                tern_neon_tile(kind, 3, 4, r, xi, ldx, w, bias, yi, ldy);
            for (; r < r1; r++)
                tern_neon_tile(kind, 3, 1, r, xi, ldx, w, bias, yi, ldy);
            break;
        default:
            for (; r + 4 <= r1; r += 4)
                tern_neon_tile(kind, 4, 4, r, xi, ldx, w, bias, yi, ldy);
            for (; r < r1; r++)
                tern_neon_tile(kind, 4, 1, r, xi, ldx, w, bias, yi, ldy);
            break;
        }
    }
}

/* What these kernels decode: dense row-major, no flags they do not know. */
static int tern_neon_plain(const tern_weight *w) {
    return w->layout == TERN_LAYOUT_ROW_MAJOR && w->sparse_m == 0 &&
           (w->flags & ~(uint16_t)TERN_TENSOR_KNOWN_FLAGS) == 0;
}

void tern_f32_f32w_linear_ukernel_4x4__neon(size_t m, size_t r0, size_t r1, const float *x,
                                            size_t ldx, const tern_weight *w, const float *bias,
                                            float *y, size_t ldy) {
    if (!tern_neon_plain(w)) {
        tern_f32_f32w_linear_ukernel__ref(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    tern_neon_linear(TERN_W_F32, m, r0, r1, x, ldx, w, bias, y, ldy);
}

void tern_f32_f16w_linear_ukernel_4x4__neon(size_t m, size_t r0, size_t r1, const float *x,
                                            size_t ldx, const tern_weight *w, const float *bias,
                                            float *y, size_t ldy) {
    if (!tern_neon_plain(w)) {
        tern_f32_f16w_linear_ukernel__ref(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    tern_neon_linear(TERN_W_F16, m, r0, r1, x, ldx, w, bias, y, ldy);
}

void tern_f32_bf16w_linear_ukernel_4x4__neon(size_t m, size_t r0, size_t r1, const float *x,
                                             size_t ldx, const tern_weight *w, const float *bias,
                                             float *y, size_t ldy) {
    if (!tern_neon_plain(w)) {
        tern_f32_bf16w_linear_ukernel__ref(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    tern_neon_linear(TERN_W_BF16, m, r0, r1, x, ldx, w, bias, y, ldy);
}

void tern_f32_q8w_linear_ukernel_4x4__neon(size_t m, size_t r0, size_t r1, const float *x,
                                           size_t ldx, const tern_weight *w, const float *bias,
                                           float *y, size_t ldy) {
    if (!tern_neon_plain(w) || w->group_size == 0 || w->group_size % 4 != 0) {
        tern_f32_q8w_linear_ukernel__ref(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    if (w->flags & TERN_TENSOR_HAS_MIN)
        tern_neon_linear(TERN_W_Q8M, m, r0, r1, x, ldx, w, bias, y, ldy);
    else if (w->flags & TERN_TENSOR_HAS_ZERO_POINT)
        tern_neon_linear(TERN_W_Q8Z, m, r0, r1, x, ldx, w, bias, y, ldy);
    else
        tern_neon_linear(TERN_W_Q8, m, r0, r1, x, ldx, w, bias, y, ldy);
}

void tern_f32_q4w_linear_ukernel_4x4__neon(size_t m, size_t r0, size_t r1, const float *x,
                                           size_t ldx, const tern_weight *w, const float *bias,
                                           float *y, size_t ldy) {
    if (!tern_neon_plain(w) || w->group_size == 0 || w->group_size % 8 != 0) {
        tern_f32_q4w_linear_ukernel__ref(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    if (w->flags & TERN_TENSOR_HAS_MIN)
        tern_neon_linear(TERN_W_Q4M, m, r0, r1, x, ldx, w, bias, y, ldy);
    else if (w->flags & TERN_TENSOR_HAS_ZERO_POINT)
        tern_neon_linear(TERN_W_Q4Z, m, r0, r1, x, ldx, w, bias, y, ldy);
    else
        tern_neon_linear(TERN_W_Q4, m, r0, r1, x, ldx, w, bias, y, ldy);
}
