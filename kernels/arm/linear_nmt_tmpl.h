/* N:M sparse integer linear layers over ROW_INTERLEAVED tiles of 16 rows,
 * 2:4 and 1:4 Q8/Q4 (docs/format.md 7.3, 7.4), bit-identical to
 * tern_qs8_nm_linear_ukernel__ref. AArch64 only (tbl). Included by
 * linear_nmt_neon.c (smull/sadalp) and linear_nm_dotprod.c (TERN_NMT_SDOT).
 *
 * The scheme of kernels/x86/linear_nmt_tmpl.h: a quad is 4 stored values of
 * each of the 16 rows (16 bytes = 4 rows a register) with one index byte a
 * row; each row's 4 activations are gathered from the quad's 16-column
 * window with one tbl whose 4-byte control per row is the row's index byte
 * spread to bytes (tbl to repeat it, a per-byte shift, the 2-bit mask and
 * the column base in one bsl). Weights and gathered activations are both
 * signed, so sdot (or smull + sadalp) gives each row's exact int32 sum; zero
 * points enter as q - 128 (Q8) or q (Q4) minus (z - 128 | z) * sum(x kept),
 * the sum from one more dot against ones. Then the ref's fmaf per block. */
#include <arm_neon.h>

#include "formats/encoding.h"
#include "kernels/arm/neon_util.h"
#include "kernels/kernels.h"
#include "kernels/tile_rows.h"

#define TERN_NMT_R 16

typedef struct {
    int q4, asym;
    unsigned n;           /* 1 or 2 (M = 4) */
    size_t stored, gs, ng, ib;
} tern_nmt_shape;

/* acc (+)= 4-byte dots of w and x, row per int32 lane; neon keeps pairs in
 * two accumulators that tern_nmt_fold adds. */
TERN_ARM_INLINE void tern_nmt_dot(int32x4_t acc[2], int8x16_t w, int8x16_t x) {
#if defined(TERN_NMT_SDOT)
    acc[0] = vdotq_s32(acc[0], w, x);
#else
    acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(w), vget_low_s8(x)));
    acc[1] = vpadalq_s16(acc[1], vmull_high_s8(w, x));
#endif
}

TERN_ARM_INLINE int32x4_t tern_nmt_fold(const int32x4_t acc[2]) {
#if defined(TERN_NMT_SDOT)
    return acc[0];
#else
    return vpaddq_s32(acc[0], acc[1]);
#endif
}

TERN_ARM_INLINE void tern_nmt_tile(const tern_nmt_shape *s, size_t tr, size_t r0, size_t r1,
                                   const tern_qrows *x, const tern_weight *w, const float *bias,
                                   float *y, size_t ldy, size_t m) {
    const size_t R = TERN_NMT_R, nb = w->cols / 32, bpg = s->gs * 4 / s->n / 32, tile = tr / R;
    const uint8_t *tv = (const uint8_t *)w->values + tile * (s->q4 ? R * s->stored / 2 : R * s->stored);
    const uint8_t *ti = (const uint8_t *)w->index + tile * R * s->ib;
    const uint16_t *ts = (const uint16_t *)w->scales + tile * R * s->ng;
    const uint8_t *tz = s->asym ? (const uint8_t *)w->zeros + tile * R * s->ng : NULL;
    /* byte f of a row's control: its index byte >> 2f, & 3, | base */
    static const uint8_t rep_b[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    static const int8_t shift_b[16] = {0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6};
    const uint8x16_t rep = vld1q_u8(rep_b);
    const int8x16_t shift = vld1q_s8(shift_b);
    const uint8x16_t three = vdupq_n_u8(3);
    const int8x16_t ones = vdupq_n_s8(1);
    for (size_t i = 0; i < m; i++) {
        float32x4_t acc[4];
        for (size_t v = 0; v < 4; v++) acc[v] = vdupq_n_f32(0.0f);
        for (size_t g = 0; g < s->ng; g++) {
            float32x4_t dw[4];
            int32x4_t zo[4];
            for (size_t v = 0; v < 4; v++) {
                dw[v] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(ts + g * R + 4 * v)));
                zo[v] = vdupq_n_s32(0);
                if (s->asym) {
                    const uint8_t *z = tz + g * R + 4 * v;
                    const int32_t zz[4] = {z[0], z[1], z[2], z[3]};
                    /* Q8 bytes enter as q - 128 (signed): the zero moves likewise */
                    zo[v] = vaddq_s32(vld1q_s32(zz), vdupq_n_s32(s->q4 ? 0 : -128));
                }
            }
            for (size_t kb = 0; kb < bpg; kb++) {
                const size_t b = g * bpg + kb;
                int32x4_t pa[4][2], sa[4][2];
                for (size_t v = 0; v < 4; v++)
                    pa[v][0] = pa[v][1] = sa[v][0] = sa[v][1] = vdupq_n_s32(0);
                for (size_t h = 0; h < 2; h++) { /* 16-column halves of the block */
                    const int8x16_t xw = vld1q_s8(x->q + i * x->k + 32 * b + 16 * h);
                    for (unsigned e = 0; e < s->n; e++) {
                        const size_t q = (2 * b + h) * s->n + e;
                        const uint8_t *qb = tv + (s->q4 ? q / 2 : q) * 64;
                        const uint8x16_t idx = vld1q_u8(ti + 16 * q);
                        const uint32_t base = s->n == 2 ? 0x04040000u + e * 0x08080808u : 0x0c080400u;
                        const uint8x16_t basev = vreinterpretq_u8_u32(vdupq_n_u32(base));
                        for (size_t v = 0; v < 4; v++) {
                            const uint8x16_t rb = vqtbl1q_u8(idx, vaddq_u8(rep, vdupq_n_u8((uint8_t)(4 * v))));
                            const uint8x16_t ctrl = vbslq_u8(three, vshlq_u8(rb, shift), basev);
                            const int8x16_t xs = vqtbl1q_s8(xw, ctrl);
                            uint8x16_t u = vld1q_u8(qb + 16 * v);
                            int8x16_t wv;
                            if (s->q4) {
                                u = (q & 1) ? vshrq_n_u8(u, 4) : vandq_u8(u, vdupq_n_u8(0x0f));
                                wv = s->asym ? vreinterpretq_s8_u8(u)
                                             : vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(8));
                            } else {
                                wv = vreinterpretq_s8_u8(s->asym ? veorq_u8(u, vdupq_n_u8(0x80)) : u);
                            }
                            tern_nmt_dot(pa[v], wv, xs);
                            if (s->asym) tern_nmt_dot(sa[v], ones, xs);
                        }
                    }
                }
                const float dx = x->d[i * nb + b];
                for (size_t v = 0; v < 4; v++) {
                    int32x4_t dot = tern_nmt_fold(pa[v]);
                    if (s->asym) dot = vmlsq_s32(dot, zo[v], tern_nmt_fold(sa[v]));
                    acc[v] = vfmaq_f32(acc[v], vcvtq_f32_s32(dot), vmulq_n_f32(dw[v], dx));
                }
            }
        }
        float out[16];
        for (size_t v = 0; v < 4; v++) vst1q_f32(out + 4 * v, acc[v]);
        float *yi = y + i * ldy;
        tern_tile_store_rows(out, R, tr, r0, r1, bias, yi);
    }
}

/* 1 when w is a tiled sparse matrix these kernels run (else the ref does). */
TERN_ARM_INLINE int tern_nmt_runs(const tern_weight *w) { return tern_nm_tiles_run(w, TERN_NMT_R); }

/* One specialisation per encoding, pattern and offset kind. */
TERN_ARM_INLINE void tern_nmt_linear(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                     const tern_weight *w, const float *bias, float *y, size_t ldy) {
    const int q4 = w->encoding == TERN_ENC_Q4, asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const size_t stored = w->cols / 4 * w->sparse_n, gs = w->group_size;
#define TERN_NMT_CASE(Q4, N, ASYM)                                                               \
    if (q4 == (Q4) && w->sparse_n == (N) && asym == (ASYM)) {                                   \
        const tern_nmt_shape s = {(Q4), (ASYM), (N), stored, gs, stored / gs, stored / 4};      \
        for (size_t tr = r0 - r0 % TERN_NMT_R; tr < r1; tr += TERN_NMT_R)                       \
            tern_nmt_tile(&s, tr, r0, r1, x, w, bias, y, ldy, m);                               \
        return;                                                                                 \
    }
    TERN_NMT_CASE(0, 2, 0)
    TERN_NMT_CASE(1, 2, 0)
    TERN_NMT_CASE(0, 1, 0)
    TERN_NMT_CASE(1, 1, 0)
    TERN_NMT_CASE(0, 2, 1)
    TERN_NMT_CASE(1, 2, 1)
    TERN_NMT_CASE(0, 1, 1)
    TERN_NMT_CASE(1, 1, 1)
#undef TERN_NMT_CASE
}
