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

#include <string.h>

#include "kernels/arm/linear_qa_arm.h"
#include "kernels/tile_rows.h"

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

/* ROW_INTERLEAVED tiles of 16 rows (docs/format.md 7.4): a chunk holds 4
 * columns of every row, 4 bytes per row, so 16 bytes are 4 rows and one
 * 4-byte broadcast of x serves them all: sdot puts each row's sum in its own
 * lane (dotprod); plain NEON widens (smull) and adds pairs (sadalp) into two
 * accumulators per 4 rows that one addp folds at the end of the block. */
#define TERN_QT_R 16

TERN_ARM_INLINE int8x16_t tern_qt_bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

/* acc[v] (rows 4v..4v+3) += the 4-byte dots of w[v] with xr */
TERN_ARM_INLINE void tern_qt_dot(int32x4_t pa[4][2], const int8x16_t w[4], int8x16_t xr) {
    for (size_t v = 0; v < 4; v++) {
#if defined(TERN_QT_SDOT)
        pa[v][0] = vdotq_s32(pa[v][0], w[v], xr);
#else
        pa[v][0] = vpadalq_s16(pa[v][0], vmull_s8(vget_low_s8(w[v]), vget_low_s8(xr)));
        pa[v][1] = vpadalq_s16(pa[v][1], vmull_high_s8(w[v], xr));
#endif
    }
}

TERN_ARM_INLINE int32x4_t tern_qt_fold(const int32x4_t pa[2]) {
#if defined(TERN_QT_SDOT)
    return pa[0];
#else
    return vpaddq_s32(pa[0], pa[1]);
#endif
}

TERN_ARM_INLINE void tern_qt_linear(int kind, size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                    const tern_weight *w, const float *bias, float *y, size_t ldy) {
    const size_t R = TERN_QT_R, cols = w->cols, gs = w->group_size, ng = cols / gs;
    const size_t bpg = gs / TERN_QA_BLOCK, nb = cols / TERN_QA_BLOCK;
    const int q4 = kind == TERN_QA_Q4 || kind == TERN_QA_Q4Z;
    /* mins (w = dw * q + min): q unsigned as with a zero point, offset 0,
     * then each block adds (float)s * min * dx after its dot, as the ref */
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0;
    const int zp = !has_min && (kind == TERN_QA_Q8Z || kind == TERN_QA_Q4Z);
    const int unsig = has_min || zp;
    const size_t tile_bytes = q4 ? R * cols / 2 : R * cols, block_bytes = q4 ? 16 * R : 32 * R;
    const uint8_t *values = (const uint8_t *)w->values;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    for (size_t tr = r0 - r0 % R; tr < r1; tr += R) {
        const uint8_t *tv = values + (tr / R) * tile_bytes;
        const uint16_t *ts = scales + (tr / R) * R * ng;
        const uint8_t *tz = zp ? zeros + (tr / R) * R * ng : NULL;
        for (size_t i = 0; i < m; i++) {
            float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f),
                                  vdupq_n_f32(0.0f)};
            for (size_t g = 0; g < ng; g++) {
                float32x4_t dw[4], mn[4];
                int32x4_t off[4];
                for (size_t v = 0; v < 4; v++) {
                    dw[v] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(ts + g * R + 4 * v)));
                    mn[v] = has_min ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(
                                          (const uint16_t *)w->zeros + (tr / R) * R * ng + g * R + 4 * v)))
                                    : vdupq_n_f32(0.0f);
                    if (zp) {
                        const uint8_t *z = tz + g * R + 4 * v;
                        const int32_t zo[4] = {z[0], z[1], z[2], z[3]};
                        off[v] = vaddq_s32(vld1q_s32(zo), vdupq_n_s32(q4 ? 0 : -128));
                    } else if (has_min) {
                        off[v] = vdupq_n_s32(q4 ? 0 : -128);
                    } else {
                        off[v] = vdupq_n_s32(q4 ? 8 : 0);
                    }
                }
                for (size_t bb = 0; bb < bpg; bb++) {
                    const size_t b = g * bpg + bb;
                    const uint8_t *blk = tv + b * block_bytes;
                    const int8_t *xb = x->q + i * x->k + b * TERN_QA_BLOCK;
                    int32x4_t pa[4][2];
                    for (size_t v = 0; v < 4; v++) pa[v][0] = pa[v][1] = vdupq_n_s32(0);
                    if (q4) {
                        for (size_t k = 0; k < 4; k++) {
                            int8x16_t lo[4], hi[4];
                            for (size_t v = 0; v < 4; v++) {
                                const uint8x16_t u = vld1q_u8(blk + 64 * k + 16 * v);
                                lo[v] = vreinterpretq_s8_u8(vandq_u8(u, vdupq_n_u8(0x0f)));
                                hi[v] = vreinterpretq_s8_u8(vshrq_n_u8(u, 4));
                            }
                            tern_qt_dot(pa, lo, tern_qt_bcast4(xb + 8 * k));
                            tern_qt_dot(pa, hi, tern_qt_bcast4(xb + 8 * k + 4));
                        }
                    } else {
                        for (size_t k = 0; k < 8; k++) {
                            int8x16_t wv[4];
                            for (size_t v = 0; v < 4; v++) {
                                const uint8x16_t u = vld1q_u8(blk + 64 * k + 16 * v);
                                wv[v] = vreinterpretq_s8_u8(unsig ? veorq_u8(u, vdupq_n_u8(0x80)) : u);
                            }
                            tern_qt_dot(pa, wv, tern_qt_bcast4(xb + 4 * k));
                        }
                    }
                    const int32x4_t s = vdupq_n_s32(x->s[i * nb + b]);
                    const float dx = x->d[i * nb + b];
                    for (size_t v = 0; v < 4; v++) {
                        const int32x4_t dot = vmlsq_s32(tern_qt_fold(pa[v]), off[v], s);
                        acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(dot), vmulq_n_f32(dw[v], dx));
                        if (has_min)
                            acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(s), vmulq_n_f32(mn[v], dx));
                    }
                }
            }
            float out[16];
            for (size_t v = 0; v < 4; v++) vst1q_f32(out + 4 * v, acc[v]);
            float *yi = y + i * ldy;
            tern_tile_store_rows(out, R, tr, r0, r1, bias, yi);
        }
    }
}

/* Entry points: TERN_QA_DEFINE(isa) defines the Q8 and Q4 kernels of a tier. */
#define TERN_QA_DEFINE(isa)                                                                        \
    void tern_qs8_q8w_linear_ukernel_2x4__##isa(size_t m, size_t r0, size_t r1,                    \
                                                const tern_qrows *x, const tern_weight *w,         \
                                                const float *bias, float *y, size_t ldy) {         \
        if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows == TERN_QT_R) {              \
            tern_qt_linear(tern_qa_arm_kind(w), m, r0, r1, x, w, bias, y, ldy);                    \
        } else if (!tern_qa_arm_supported(w)) {                                                   \
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
        if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows == TERN_QT_R) {              \
            tern_qt_linear(tern_qa_arm_kind(w), m, r0, r1, x, w, bias, y, ldy);                    \
        } else if (!tern_qa_arm_supported(w)) {                                                   \
            tern_qs8_q4w_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);                       \
        } else if (tern_qa_arm_kind(w) == TERN_QA_Q4) {                                            \
            tern_qa_linear(TERN_QA_Q4, m, r0, r1, x, w, bias, y, ldy);                             \
        } else {                                                                                   \
            tern_qa_linear(TERN_QA_Q4Z, m, r0, r1, x, w, bias, y, ldy);                            \
        }                                                                                          \
    }

#endif
