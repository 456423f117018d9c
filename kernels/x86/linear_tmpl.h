/* Float-activation linear layers, written once for both vector widths (see
 * vec.h). Included by linear_avx2.c and linear_avx512.c after they define
 * TERN_X86_VW, TERN_X86_ISA and the tile sizes:
 *   TERN_X86_MR        tokens per register tile (m >= MR)
 *   TERN_X86_NR_DENSE  rows per tile, F32/F16/BF16, with MR tokens
 *   TERN_X86_NR_QUANT  rows per tile, Q8/Q4, with MR tokens
 *   TERN_X86_NR_GEMV   rows per tile when m < MR
 *
 * Each output y[i][r] is one vector accumulator over the columns (lane l
 * holds columns = l mod VW, summed in column order, the last partial vector
 * zero-padded), reduced by the fixed tree of vhsum, plus bias. Tiles only
 * decide which accumulators share loads, so a row gives the same bits in any
 * tile, at any position of [r0, r1), for any m. */
#include <string.h>

#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "kernels/x86/vec.h"
#include "kernels/x86/x86.h"

#define TERN_X86_UNROLL _Pragma("GCC unroll 16")

TERN_X86_INLINE float tern_x86_f16(const void *scales, size_t i) {
    uint16_t h;
    memcpy(&h, (const uint8_t *)scales + 2 * i, 2);
    return _cvtsh_ss(h);
}

TERN_X86_INLINE void tern_x86_store_tile(size_t MR, size_t NR, vf acc[4][8], const float *bias,
                                         float *y, size_t ldy) {
    TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {
        TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) {
            const float s = vhsum(acc[i][j]);
            y[i * ldy + j] = bias ? s + bias[j] : s;
        }
    }
}

/* Dense tile: MR tokens x NR rows; w points at row r, x at token i0, y at
 * (i0, r), bias at r (or NULL). WL(p) loads VW weights as floats, WLM(p, n, mk)
 * the first n of them and zeros. */
#define TERN_X86_DENSE_TILE(tname, wtype, WL, WLM)                                             \
    TERN_X86_INLINE void tname(size_t MR, size_t NR, size_t cols, const float *x, size_t ldx,   \
                               const wtype *w, const float *bias, float *y, size_t ldy) {      \
        vf acc[4][8];                                                                          \
        TERN_X86_UNROLL for (size_t i = 0; i < MR; i++)                                        \
            TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) acc[i][j] = vzero();               \
        size_t c = 0;                                                                          \
        for (; c + VW <= cols; c += VW) {                                                      \
            vf wv[8];                                                                          \
            TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) wv[j] = WL(w + j * cols + c);      \
            TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {                                  \
                const vf xv = vload(x + i * ldx + c);                                          \
                TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)                                \
                    acc[i][j] = vfma(xv, wv[j], acc[i][j]);                                    \
            }                                                                                  \
        }                                                                                      \
        if (c < cols) {                                                                        \
            const size_t n = cols - c;                                                         \
            const vmask mk = vmask_first(n);                                                   \
            vf wv[8];                                                                          \
            TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) wv[j] = WLM(w + j * cols + c, n, mk); \
            TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {                                  \
                const vf xv = vload_m(x + i * ldx + c, mk);                                    \
                TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)                                \
                    acc[i][j] = vfma(xv, wv[j], acc[i][j]);                                    \
            }                                                                                  \
        }                                                                                      \
        tern_x86_store_tile(MR, NR, acc, bias, y, ldy);                                        \
    }

#define TERN_X86_WL_F32(p) vload(p)
#define TERN_X86_WLM_F32(p, n, mk) vload_m((p), (mk))
#define TERN_X86_WL_F16(p) vload_f16(p)
#define TERN_X86_WLM_F16(p, n, mk) vload_f16_m((p), (n))
#define TERN_X86_WL_BF16(p) vload_bf16(p)
#define TERN_X86_WLM_BF16(p, n, mk) vload_bf16_m((p), (n))

TERN_X86_DENSE_TILE(tern_x86_tile_f32, float, TERN_X86_WL_F32, TERN_X86_WLM_F32)
TERN_X86_DENSE_TILE(tern_x86_tile_f16, uint16_t, TERN_X86_WL_F16, TERN_X86_WLM_F16)
TERN_X86_DENSE_TILE(tern_x86_tile_bf16, uint16_t, TERN_X86_WL_BF16, TERN_X86_WLM_BF16)

/* Q8 tile, group_size % 32 == 0: w = scale * (q - zero) per group, as floats,
 * then the same FMA chain. w points at row r's values, g at its group index
 * (r * n_groups). */
TERN_X86_INLINE void tern_x86_tile_q8(size_t MR, size_t NR, const tern_weight *w, size_t r,
                                      const float *x, size_t ldx, const float *bias, float *y,
                                      size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size, ng = cols / gs;
    const int asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* w = scale * q + min */
    const uint8_t *q = (const uint8_t *)w->values + r * cols;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    vf acc[4][8];
    TERN_X86_UNROLL for (size_t i = 0; i < MR; i++)
        TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) acc[i][j] = vzero();
    for (size_t g = 0; g < ng; g++) {
        vf sc[8];
        TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)
            sc[j] = vset1(tern_x86_f16(w->scales, (r + j) * ng + g));
        if (asym || has_min) {
            vi zv[8];
            vf mn[8];
            TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) {
                zv[j] = vi_set1(has_min ? 0 : zeros[(r + j) * ng + g]);
                mn[j] = has_min ? vset1(tern_x86_f16(w->zeros, (r + j) * ng + g)) : vzero();
            }
            for (size_t c = g * gs; c < (g + 1) * gs; c += VW) {
                vf wv[8];
                TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)
                    wv[j] = vadd(vmul(sc[j], vi_to_f(vi_sub(vload_u8i(q + j * cols + c), zv[j]))), mn[j]);
                TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {
                    const vf xv = vload(x + i * ldx + c);
                    TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)
                        acc[i][j] = vfma(xv, wv[j], acc[i][j]);
                }
            }
        } else {
            for (size_t c = g * gs; c < (g + 1) * gs; c += VW) {
                vf wv[8];
                TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)
                    wv[j] = vmul(sc[j], vload_i8(q + j * cols + c));
                TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {
                    const vf xv = vload(x + i * ldx + c);
                    TERN_X86_UNROLL for (size_t j = 0; j < NR; j++)
                        acc[i][j] = vfma(xv, wv[j], acc[i][j]);
                }
            }
        }
    }
    tern_x86_store_tile(MR, NR, acc, bias, y, ldy);
}

/* Q4 tile: VW bytes of a group give VW values of its first half (low
 * nibbles) and the VW values G/2 later (high nibbles). */
TERN_X86_INLINE void tern_x86_tile_q4(size_t MR, size_t NR, const tern_weight *w, size_t r,
                                      const float *x, size_t ldx, const float *bias, float *y,
                                      size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size, ng = cols / gs, half = gs / 2;
    const int asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* w = scale * q + min */
    const uint8_t *q = (const uint8_t *)w->values + r * (cols / 2);
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const vi low = vi_set1(0xf);
    vf acc[4][8];
    TERN_X86_UNROLL for (size_t i = 0; i < MR; i++)
        TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) acc[i][j] = vzero();
    for (size_t g = 0; g < ng; g++) {
        vf sc[8], mn[8];
        vi zv[8];
        TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) {
            sc[j] = vset1(tern_x86_f16(w->scales, (r + j) * ng + g));
            zv[j] = vi_set1(has_min ? 0 : asym ? zeros[(r + j) * ng + g] : 8);
            mn[j] = has_min ? vset1(tern_x86_f16(w->zeros, (r + j) * ng + g)) : vzero();
        }
        for (size_t jb = 0; jb < half; jb += VW) {
            vf wlo[8], whi[8];
            TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) {
                const vi b = vload_u8i(q + j * (cols / 2) + g * half + jb);
                wlo[j] = vadd(vmul(sc[j], vi_to_f(vi_sub(vi_and(b, low), zv[j]))), mn[j]);
                whi[j] = vadd(vmul(sc[j], vi_to_f(vi_sub(vi_srli(b, 4), zv[j]))), mn[j]);
            }
            const size_t c = g * gs + jb;
            TERN_X86_UNROLL for (size_t i = 0; i < MR; i++) {
                const vf xlo = vload(x + i * ldx + c), xhi = vload(x + i * ldx + c + half);
                TERN_X86_UNROLL for (size_t j = 0; j < NR; j++) {
                    acc[i][j] = vfma(xlo, wlo[j], acc[i][j]);
                    acc[i][j] = vfma(xhi, whi[j], acc[i][j]);
                }
            }
        }
    }
    tern_x86_store_tile(MR, NR, acc, bias, y, ldy);
}

/* Drivers: rows in tiles of NR (NR_GEMV when m < MR), tokens in tiles of MR,
 * leftovers one row / one token at a time with the same per-row code. */
#define TERN_X86_DENSE_LINEAR(fname, tile, wtype)                                              \
    void fname(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,                      \
               const tern_weight *w, const float *bias, float *y, size_t ldy) {                \
        const size_t cols = w->cols;                                                           \
        const wtype *wv = (const wtype *)w->values;                                            \
        size_t r = r0;                                                                         \
        if (m < TERN_X86_MR) {                                                                 \
            for (; r + TERN_X86_NR_GEMV <= r1; r += TERN_X86_NR_GEMV)                          \
                for (size_t i = 0; i < m; i++)                                                 \
                    tile(1, TERN_X86_NR_GEMV, cols, x + i * ldx, ldx, wv + r * cols,           \
                         bias ? bias + r : NULL, y + i * ldy + r, ldy);                        \
        } else {                                                                               \
            for (; r + TERN_X86_NR_DENSE <= r1; r += TERN_X86_NR_DENSE) {                      \
                size_t i = 0;                                                                  \
                for (; i + TERN_X86_MR <= m; i += TERN_X86_MR)                                 \
                    tile(TERN_X86_MR, TERN_X86_NR_DENSE, cols, x + i * ldx, ldx,               \
                         wv + r * cols, bias ? bias + r : NULL, y + i * ldy + r, ldy);         \
                for (; i < m; i++)                                                             \
                    tile(1, TERN_X86_NR_DENSE, cols, x + i * ldx, ldx, wv + r * cols,          \
                         bias ? bias + r : NULL, y + i * ldy + r, ldy);                        \
            }                                                                                  \
        }                                                                                      \
        for (; r < r1; r++) {                                                                  \
            size_t i = 0;                                                                      \
            for (; i + TERN_X86_MR <= m; i += TERN_X86_MR)                                     \
                tile(TERN_X86_MR, 1, cols, x + i * ldx, ldx, wv + r * cols,                    \
                     bias ? bias + r : NULL, y + i * ldy + r, ldy);                            \
            for (; i < m; i++)                                                                 \
                tile(1, 1, cols, x + i * ldx, ldx, wv + r * cols, bias ? bias + r : NULL,      \
                     y + i * ldy + r, ldy);                                                    \
        }                                                                                      \
    }

TERN_X86_DENSE_LINEAR(TERN_X86_NAME(tern_f32_f32w_linear_ukernel), tern_x86_tile_f32, float)
TERN_X86_DENSE_LINEAR(TERN_X86_NAME(tern_f32_f16w_linear_ukernel), tern_x86_tile_f16, uint16_t)
TERN_X86_DENSE_LINEAR(TERN_X86_NAME(tern_f32_bf16w_linear_ukernel), tern_x86_tile_bf16, uint16_t)

#define TERN_X86_QUANT_LINEAR(fname, tile, ref)                                                \
    void fname(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,                      \
               const tern_weight *w, const float *bias, float *y, size_t ldy) {                \
        if (w->group_size % 32 != 0 || w->layout != TERN_LAYOUT_ROW_MAJOR) {                   \
            ref(m, r0, r1, x, ldx, w, bias, y, ldy);                                           \
            return;                                                                            \
        }                                                                                      \
        size_t r = r0;                                                                         \
        if (m < TERN_X86_MR) {                                                                 \
            for (; r + TERN_X86_NR_GEMV <= r1; r += TERN_X86_NR_GEMV)                          \
                for (size_t i = 0; i < m; i++)                                                 \
                    tile(1, TERN_X86_NR_GEMV, w, r, x + i * ldx, ldx, bias ? bias + r : NULL,  \
                         y + i * ldy + r, ldy);                                                \
        } else {                                                                               \
            for (; r + TERN_X86_NR_QUANT <= r1; r += TERN_X86_NR_QUANT) {                      \
                size_t i = 0;                                                                  \
                for (; i + TERN_X86_MR <= m; i += TERN_X86_MR)                                 \
                    tile(TERN_X86_MR, TERN_X86_NR_QUANT, w, r, x + i * ldx, ldx,               \
                         bias ? bias + r : NULL, y + i * ldy + r, ldy);                        \
                for (; i < m; i++)                                                             \
                    tile(1, TERN_X86_NR_QUANT, w, r, x + i * ldx, ldx, bias ? bias + r : NULL, \
                         y + i * ldy + r, ldy);                                                \
            }                                                                                  \
        }                                                                                      \
        for (; r < r1; r++) {                                                                  \
            size_t i = 0;                                                                      \
            for (; i + TERN_X86_MR <= m; i += TERN_X86_MR)                                     \
                tile(TERN_X86_MR, 1, w, r, x + i * ldx, ldx, bias ? bias + r : NULL,           \
                     y + i * ldy + r, ldy);                                                    \
            for (; i < m; i++)                                                                 \
                tile(1, 1, w, r, x + i * ldx, ldx, bias ? bias + r : NULL, y + i * ldy + r,    \
                     ldy);                                                                     \
        }                                                                                      \
    }

TERN_X86_QUANT_LINEAR(TERN_X86_NAME(tern_f32_q8w_linear_ukernel), tern_x86_tile_q8,
                      tern_f32_q8w_linear_ukernel__ref)
TERN_X86_QUANT_LINEAR(TERN_X86_NAME(tern_f32_q4w_linear_ukernel), tern_x86_tile_q4,
                      tern_f32_q4w_linear_ukernel__ref)
