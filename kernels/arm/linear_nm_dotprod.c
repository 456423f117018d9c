/* dotprod (ARMv8.2 sdot) N:M sparse integer linear layers, bit-identical to
 * tern_qs8_nm_linear_ukernel__ref. As the x86 tiers (linear_nm_tmpl.h): per
 * row and 32-column block the kept int8 values (Q4: q - 8) are expanded to
 * the 32 dense lanes with two `tbl` lookups, whose controls come from the
 * index bytes through kernels/nm_lut.h (0x80 entries are out of range for
 * tbl, which gives 0) or are built from the 3-bit fields (M = 8); then 4 rows
 * x one block per step, the expanded rows shared by up to 8 tokens, sdot,
 * pairwise folds into one int32x4 (lane j = row j) and the ref's fmaf chain.
 * Symmetric Q8/Q4 with G * M / N a multiple of 32; the rest runs the ref. */
#include <arm_neon.h>
#include <string.h>

#include "kernels/arm/arm.h"
#include "kernels/nm_lut.h"
#include "kernels/ref/ref.h"

#define TERN_NMT_SDOT 1
#include "kernels/arm/linear_nmt_tmpl.h"

#define TERN_NM_INLINE static inline __attribute__((always_inline))
#define TERN_NM_MT 8

typedef struct {
    unsigned n, m;
    int q4;
    size_t kpb, ibb, gs, stored, row_bytes, index_row;
} tern_nm_shape;

/* Kept values of block b as int8 in lanes [0, kpb). */
TERN_NM_INLINE int8x16_t tern_nm_kept(const tern_nm_shape *s, const uint8_t *vr, size_t b) {
    const size_t k0 = b * s->kpb;
    if (!s->q4)
        return s->kpb == 16 ? vld1q_s8((const int8_t *)vr + k0)
                            : vcombine_s8(vld1_s8((const int8_t *)vr + k0), vdup_n_s8(0));
    const uint8x16_t low = vdupq_n_u8(0x0f);
    const size_t gs = s->gs, half = gs / 2, j0 = k0 % gs;
    const uint8_t *pg = vr + (k0 / gs) * half;
    uint8x16_t u;
    if (gs == s->kpb) { /* the block is the whole group: low then high nibbles */
        uint8x16_t v;
        if (half == 8) {
            v = vcombine_u8(vld1_u8(pg), vdup_n_u8(0));
            u = vcombine_u8(vget_low_u8(vandq_u8(v, low)), vget_low_u8(vshrq_n_u8(v, 4)));
        } else {
            uint32_t t;
            memcpy(&t, pg, 4);
            v = vreinterpretq_u8_u32(vdupq_n_u32(t));
            const uint32x4_t lo = vreinterpretq_u32_u8(vandq_u8(v, low));
            const uint32x4_t hi = vreinterpretq_u32_u8(vshrq_n_u8(v, 4));
            u = vreinterpretq_u8_u32(vzip1q_u32(lo, hi)); /* lanes 0-3 low, 4-7 high */
        }
    } else {
        const uint8_t *p = pg + (j0 < half ? j0 : j0 - half);
        const uint8x16_t v = s->kpb == 16 ? vld1q_u8(p) : vcombine_u8(vld1_u8(p), vdup_n_u8(0));
        u = j0 < half ? vandq_u8(v, low) : vshrq_n_u8(v, 4);
    }
    return vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(8));
}

/* tbl controls for dense columns 0-15 (c[0]) and 16-31 (c[1]) of block b. */
TERN_NM_INLINE void tern_nm_ctrl(const tern_nm_shape *s, const uint8_t *ir, size_t b,
                                 uint8x16_t c[2]) {
    const uint8_t *p = ir + b * s->ibb;
    if (s->m == 4 && s->n == 2) {
        for (int h = 0; h < 2; h++) {
            const uint8x16_t t = vcombine_u8(vcreate_u8(tern_nm24_ctrl[p[2 * h]]),
                                             vcreate_u8(tern_nm24_ctrl[p[2 * h + 1]]));
            const uint8x16_t add = vcombine_u8(vdup_n_u8((uint8_t)(8 * h)), vdup_n_u8((uint8_t)(8 * h + 4)));
            c[h] = vaddq_u8(t, add);
        }
        return;
    }
    if (s->m == 4) { /* 1:4 */
        for (int h = 0; h < 2; h++) {
            const uint8x16_t t = vcombine_u8(vcreate_u8(tern_nm14_ctrl[p[h]][0]),
                                             vcreate_u8(tern_nm14_ctrl[p[h]][1]));
            c[h] = vaddq_u8(t, vdupq_n_u8((uint8_t)(4 * h)));
        }
        return;
    }
    uint64_t bits = 0;
    memcpy(&bits, p, s->ibb);
    uint64_t q[4];
    for (unsigned t = 0; t < 4; t++) {
        uint64_t v = 0x8080808080808080ull;
        for (unsigned k = 0; k < s->n; k++) {
            const unsigned idx = (unsigned)(bits >> (3 * (t * s->n + k))) & 7u;
            v = (v & ~(0xffull << (8 * idx))) | ((uint64_t)(t * s->n + k) << (8 * idx));
        }
        q[t] = v;
    }
    c[0] = vcombine_u8(vcreate_u8(q[0]), vcreate_u8(q[1]));
    c[1] = vcombine_u8(vcreate_u8(q[2]), vcreate_u8(q[3]));
}

TERN_NM_INLINE void tern_nm_linear(const tern_nm_shape *s, size_t m, size_t r0, size_t r1,
                                   const tern_qrows *x, const tern_weight *w, const float *bias,
                                   float *y, size_t ldy) {
    const size_t nb = w->cols / 32, ng = s->stored / s->gs, nbg = s->gs / s->kpb;
    const uint8_t *values = (const uint8_t *)w->values, *index = (const uint8_t *)w->index;
    const uint16_t *scales = (const uint16_t *)w->scales;
    for (size_t r = r0; r < r1; r += 4) {
        const size_t nr = r1 - r < 4 ? r1 - r : 4;
        size_t rows[4];
        const uint8_t *vr[4], *ir[4];
        for (size_t j = 0; j < 4; j++) {
            rows[j] = r + (j < nr ? j : 0);
            vr[j] = values + rows[j] * s->row_bytes;
            ir[j] = index + rows[j] * s->index_row;
        }
        for (size_t t0 = 0; t0 < m; t0 += TERN_NM_MT) {
            const size_t mt = m - t0 < TERN_NM_MT ? m - t0 : TERN_NM_MT;
            float32x4_t acc[TERN_NM_MT];
            for (size_t t = 0; t < mt; t++) acc[t] = vdupq_n_f32(0.0f);
            for (size_t g = 0; g < ng; g++) {
                float dws[4];
                for (size_t j = 0; j < 4; j++) dws[j] = tern_f16_to_f32(scales[rows[j] * ng + g]);
                const float32x4_t dw = vld1q_f32(dws);
                for (size_t kb = 0; kb < nbg; kb++) {
                    const size_t b = g * nbg + kb;
                    int8x16_t w0[4], w1[4];
                    for (size_t j = 0; j < 4; j++) {
                        const int8x16_t kept = tern_nm_kept(s, vr[j], b);
                        uint8x16_t c[2];
                        tern_nm_ctrl(s, ir[j], b, c);
                        w0[j] = vqtbl1q_s8(kept, c[0]);
                        w1[j] = vqtbl1q_s8(kept, c[1]);
                    }
                    for (size_t t = 0; t < mt; t++) {
                        const int8_t *xb = x->q + (t0 + t) * x->k + b * 32;
                        const int8x16_t x0 = vld1q_s8(xb), x1 = vld1q_s8(xb + 16);
                        int32x4_t p[4];
                        for (size_t j = 0; j < 4; j++)
                            p[j] = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0[j], x0), w1[j], x1);
                        const int32x4_t dot = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                        const float dx = x->d[(t0 + t) * nb + b];
                        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(dot), vmulq_n_f32(dw, dx));
                    }
                }
            }
            for (size_t t = 0; t < mt; t++) {
                float out[4];
                vst1q_f32(out, acc[t]);
                float *yt = y + (t0 + t) * ldy + r;
                for (size_t j = 0; j < nr; j++) yt[j] = bias ? out[j] + bias[r + j] : out[j];
            }
        }
    }
}

void tern_qs8_nm_linear_ukernel_4x32__dotprod(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                              const tern_weight *w, const float *bias, float *y,
                                              size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) { /* 16-row tiles: linear_nmt_tmpl.h */
        if (tern_nmt_runs(w)) tern_nmt_linear(m, r0, r1, x, w, bias, y, ldy);
        else tern_qs8_nm_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    const unsigned n = w->sparse_n, mm = w->sparse_m;
    const int pattern = (mm == 4 && (n == 1 || n == 2)) || (mm == 8 && (n == 2 || n == 4));
    const size_t kpb = pattern ? 32 / mm * n : 0;
    if (!pattern || w->flags != 0 || w->group_size == 0 || w->group_size % kpb != 0 ||
        w->cols % 32 != 0) {
        tern_qs8_nm_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    const int q4 = w->encoding == TERN_ENC_Q4;
    const size_t stored = w->cols / mm * n;
    const size_t row_bytes = q4 ? stored / 2 : stored, index_row = tern_nm_index_row_bytes(w);
#define TERN_NM_CASE(N, M, Q4)                                                                  \
    if (n == (N) && mm == (M) && q4 == (Q4)) {                                                  \
        const tern_nm_shape c = {(N), (M), (Q4), 32 / (M) * (N),                                \
                                 32 / (M) * (N) * ((M) == 4 ? 2 : 3) / 8, w->group_size, stored, \
                                 row_bytes, index_row};                                         \
        tern_nm_linear(&c, m, r0, r1, x, w, bias, y, ldy);                                      \
        return;                                                                                 \
    }
    TERN_NM_CASE(2, 4, 0)
    TERN_NM_CASE(2, 4, 1)
    TERN_NM_CASE(1, 4, 0)
    TERN_NM_CASE(1, 4, 1)
    TERN_NM_CASE(2, 8, 0)
    TERN_NM_CASE(2, 8, 1)
    TERN_NM_CASE(4, 8, 0)
    TERN_NM_CASE(4, 8, 1)
#undef TERN_NM_CASE
}
