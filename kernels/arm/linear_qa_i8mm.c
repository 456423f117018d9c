/* i8mm (ARMv8.6 smmla) integer paths: Q8/Q4 x int8 linear on tiles of 2
 * tokens x 4 rows. smmla multiplies a 2x8 int8 block of two tokens by the
 * 2x8 block of two rows into a 2x2 int32 tile (lanes t0r0, t0r1, t1r0,
 * t1r1), so a block's dots need no horizontal reduction. One token (m == 1,
 * or the last of an odd m) runs the dotprod kernel: the integers are exact,
 * so every kernel gives the ref's bits. */
#include <arm_neon.h>

#include "kernels/arm/arm.h"
#include "kernels/arm/linear_qa_arm.h"
#include "kernels/arm/neon_util.h"
#include "kernels/ref/ref.h"

/* Upper and lower 64-bit halves of two vectors: [a.lo, b.lo] and [a.hi, b.hi]. */
TERN_ARM_INLINE int8x16_t tern_zip_lo64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
TERN_ARM_INLINE int8x16_t tern_zip_hi64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* Tokens i, i + 1 x rows r .. r + 3 (clamped to r1 - 1). */
TERN_ARM_INLINE void tern_qa_i8mm_tile(int kind, size_t i, size_t r, size_t r1, const tern_qrows *x,
                                       const tern_weight *w, const float *bias, float *y,
                                       size_t ldy) {
    const size_t gs = w->group_size, n_groups = w->cols / gs, half = gs / 2;
    const size_t nb = x->k / TERN_QA_BLOCK, bpg = gs / TERN_QA_BLOCK;
    size_t rows[4];
    const size_t n = tern_qa_rows4(r, r1, rows);
    const int8_t *x0p = x->q + i * x->k, *x1p = x0p + x->k;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < n_groups; g++) {
        const float32x4_t dw = tern_qa_scales4(w, rows, g);
        const uint8_t *qg[4];
        int32_t offs[4];
        for (size_t j = 0; j < 4; j++) {
            qg[j] = tern_qa_group_ptr(kind, w, rows[j], g);
            offs[j] = tern_qa_offset(kind, w, rows[j], g);
        }
        const int32x4_t off = vld1q_s32(offs);
        for (size_t bb = 0; bb < bpg; bb++) {
            const size_t b = g * bpg + bb, jb = bb * TERN_QA_BLOCK;
            int32x4_t d01 = vdupq_n_s32(0), d23 = vdupq_n_s32(0); /* rows 0-1, rows 2-3 */
            for (size_t h = 0; h < 2; h++) {
                const int8x16_t xa = vld1q_s8(x0p + b * TERN_QA_BLOCK + 16 * h);
                const int8x16_t xb = vld1q_s8(x1p + b * TERN_QA_BLOCK + 16 * h);
                const int8x16_t w0 = tern_qa_w16(kind, qg[0], jb + 16 * h, half);
                const int8x16_t w1 = tern_qa_w16(kind, qg[1], jb + 16 * h, half);
                const int8x16_t w2 = tern_qa_w16(kind, qg[2], jb + 16 * h, half);
                const int8x16_t w3 = tern_qa_w16(kind, qg[3], jb + 16 * h, half);
                const int8x16_t xl = tern_zip_lo64(xa, xb), xh = tern_zip_hi64(xa, xb);
                d01 = vmmlaq_s32(d01, xl, tern_zip_lo64(w0, w1));
                d01 = vmmlaq_s32(d01, xh, tern_zip_hi64(w0, w1));
                d23 = vmmlaq_s32(d23, xl, tern_zip_lo64(w2, w3));
                d23 = vmmlaq_s32(d23, xh, tern_zip_hi64(w2, w3));
            }
            /* token-major: [t r0, t r1, t r2, t r3] */
            int32x4_t t0 = vreinterpretq_s32_s64(
                vzip1q_s64(vreinterpretq_s64_s32(d01), vreinterpretq_s64_s32(d23)));
            int32x4_t t1 = vreinterpretq_s32_s64(
                vzip2q_s64(vreinterpretq_s64_s32(d01), vreinterpretq_s64_s32(d23)));
            if (kind != TERN_QA_Q8) {
                t0 = vmlsq_s32(t0, off, vdupq_n_s32(x->s[i * nb + b]));
                t1 = vmlsq_s32(t1, off, vdupq_n_s32(x->s[(i + 1) * nb + b]));
            }
            acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(t0), vmulq_n_f32(dw, x->d[i * nb + b]));
            acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(t1), vmulq_n_f32(dw, x->d[(i + 1) * nb + b]));
        }
    }
    tern_qa_store4(acc0, rows, n, bias, y + i * ldy);
    tern_qa_store4(acc1, rows, n, bias, y + (i + 1) * ldy);
}

TERN_ARM_INLINE void tern_qa_i8mm_linear(int kind, size_t m, size_t r0, size_t r1,
                                         const tern_qrows *x, const tern_weight *w,
                                         const float *bias, float *y, size_t ldy) {
    for (size_t r = r0; r < r1; r += 4)
        for (size_t i = 0; i + 2 <= m; i += 2)
            tern_qa_i8mm_tile(kind, i, r, r1, x, w, bias, y, ldy);
}

/* The last token of an odd m, through the dotprod kernel. */
static void tern_qa_i8mm_last(tern_linear_qa_fn one, size_t m, size_t r0, size_t r1,
                              const tern_qrows *x, const tern_weight *w, const float *bias,
                              float *y, size_t ldy) {
    const size_t nb = x->k / TERN_QA_BLOCK, i = m - 1;
    const tern_qrows last = {1, x->k, x->q + i * x->k, x->d + i * nb, x->s + i * nb};
    one(1, r0, r1, &last, w, bias, y + i * ldy, ldy);
}

void tern_qs8_q8w_linear_ukernel_2x4__i8mm(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                           const tern_weight *w, const float *bias, float *y,
                                           size_t ldy) {
    if (m < 2 || !tern_qa_arm_supported(w)) {
        tern_qs8_q8w_linear_ukernel_2x4__dotprod(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    tern_qa_i8mm_linear(tern_qa_arm_kind(w) == TERN_QA_Q8 ? TERN_QA_Q8 : TERN_QA_Q8Z, m, r0, r1, x,
                        w, bias, y, ldy);
    if (m % 2)
        tern_qa_i8mm_last(tern_qs8_q8w_linear_ukernel_2x4__dotprod, m, r0, r1, x, w, bias, y, ldy);
}

void tern_qs8_q4w_linear_ukernel_2x4__i8mm(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                           const tern_weight *w, const float *bias, float *y,
                                           size_t ldy) {
    if (m < 2 || !tern_qa_arm_supported(w)) {
        tern_qs8_q4w_linear_ukernel_2x4__dotprod(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    tern_qa_i8mm_linear(tern_qa_arm_kind(w) == TERN_QA_Q4 ? TERN_QA_Q4 : TERN_QA_Q4Z, m, r0, r1, x,
                        w, bias, y, ldy);
    if (m % 2)
        tern_qa_i8mm_last(tern_qs8_q4w_linear_ukernel_2x4__dotprod, m, r0, r1, x, w, bias, y, ldy);
}

void tern_kernels_init_i8mm(tern_kernels *k) {
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel_2x4__i8mm;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel_2x4__i8mm;
}
