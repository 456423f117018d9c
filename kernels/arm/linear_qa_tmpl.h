/* The 4-row integer linear driver of the neon and dotprod tiers. The includer
 * defines, before including this file,
 *   int32x4_t tern_qa_dot32(int32x4_t acc, int8x16_t w0, int8x16_t w1,
 *                           int8x16_t x0, int8x16_t x1)
 * adding the 32 products w * x of one block into acc's lanes (any split), and
 * gets tern_qa_linear(kind, ...). Tiles: 1 or 2 tokens x 4 rows, one 32-block
 * per step; the four rows' partial sums are folded into one int32x4 (lane j =
 * row j) by pairwise adds, corrected by off * s, then the ref's fmaf chain. */
#ifndef TERN_KERNELS_ARM_LINEAR_QA_TMPL_H
#define TERN_KERNELS_ARM_LINEAR_QA_TMPL_H

#include "kernels/arm/linear_qa_arm.h"

TERN_ARM_INLINE void tern_qa_tile(int kind, size_t MR, size_t i, size_t r, size_t r1,
                                  const tern_qrows *x, const tern_weight *w, const float *bias,
                                  float *y, size_t ldy) {
    const size_t gs = w->group_size, n_groups = w->cols / gs, half = gs / 2;
    const size_t nb = x->k / TERN_QA_BLOCK, bpg = gs / TERN_QA_BLOCK;
    size_t rows[4];
    const size_t n = tern_qa_rows4(r, r1, rows);
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
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
            int8x16_t w0[4], w1[4];
            for (size_t j = 0; j < 4; j++) {
                w0[j] = tern_qa_w16(kind, qg[j], jb, half);
                w1[j] = tern_qa_w16(kind, qg[j], jb + 16, half);
            }
            for (size_t t = 0; t < MR; t++) {
                const int8_t *xb = x->q + (i + t) * x->k + b * TERN_QA_BLOCK;
                const int8x16_t x0 = vld1q_s8(xb), x1 = vld1q_s8(xb + 16);
                int32x4_t p[4];
                for (size_t j = 0; j < 4; j++)
                    p[j] = tern_qa_dot32(vdupq_n_s32(0), w0[j], w1[j], x0, x1);
                int32x4_t dot = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                if (kind != TERN_QA_Q8)
                    dot = vmlsq_s32(dot, off, vdupq_n_s32(x->s[(i + t) * nb + b]));
                const float dx = x->d[(i + t) * nb + b];
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(dot), vmulq_n_f32(dw, dx));
            }
        }
    }
    for (size_t t = 0; t < MR; t++)
        tern_qa_store4(acc[t], rows, n, bias, y + (i + t) * ldy);
}

TERN_ARM_INLINE void tern_qa_linear(int kind, size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                    const tern_weight *w, const float *bias, float *y, size_t ldy) {
    for (size_t r = r0; r < r1; r += 4) {
        size_t i = 0;
        for (; i + 2 <= m; i += 2)
            tern_qa_tile(kind, 2, i, r, r1, x, w, bias, y, ldy);
        if (i < m) tern_qa_tile(kind, 1, i, r, r1, x, w, bias, y, ldy);
    }
}

/* Entry points: TERN_QA_DEFINE(isa) defines the Q8 and Q4 kernels of a tier. */
#define TERN_QA_DEFINE(isa)                                                                        \
    void tern_qs8_q8w_linear_ukernel_2x4__##isa(size_t m, size_t r0, size_t r1,                    \
                                                const tern_qrows *x, const tern_weight *w,         \
                                                const float *bias, float *y, size_t ldy) {         \
        if (!tern_qa_arm_supported(w)) {                                                           \
            tern_qs8_q8w_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);                       \
        } else if (tern_qa_arm_kind(w) == TERN_QA_Q8) {                                            \
            tern_qa_linear(TERN_QA_Q8, m, r0, r1, x, w, bias, y, ldy);                             \
        } else {                                                                                   \
            tern_qa_linear(TERN_QA_Q8Z, m, r0, r1, x, w, bias, y, ldy);                            \
        }                                                                                          \
    }                                                                                              \
    void tern_qs8_q4w_linear_ukernel_2x4__##isa(size_t m, size_t r0, size_t r1,                    \
                                                const tern_qrows *x, const tern_weight *w,         \
                                                const float *bias, float *y, size_t ldy) {         \
        if (!tern_qa_arm_supported(w)) {                                                           \
            tern_qs8_q4w_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);                       \
        } else if (tern_qa_arm_kind(w) == TERN_QA_Q4) {                                            \
            tern_qa_linear(TERN_QA_Q4, m, r0, r1, x, w, bias, y, ldy);                             \
        } else {                                                                                   \
            tern_qa_linear(TERN_QA_Q4Z, m, r0, r1, x, w, bias, y, ldy);                            \
        }                                                                                          \
    }

#endif
