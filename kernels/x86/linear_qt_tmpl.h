/* Integer linear layers over ROW_INTERLEAVED Q8/Q4 tiles of 16 rows
 * (docs/format.md 7.4), bit-identical to kernels/ref/linear_qa_ref.c.
 * Included by linear_qa_tmpl.h's users after it; the ISA file may define
 *   TERN_X86_QT_ACC_U2(acc, u1, x1, u2, x2)  acc + 4-byte dots of u1.x1 and u2.x2
 *   TERN_X86_QT_ACC_Q8(acc, w, x)            acc + 4-byte dots of prepared Q8 w.x
 * (VNNI accumulates in place) or take these defaults built on the block dots.
 *
 * A chunk of the tile holds 4 consecutive columns of each of the 16 rows, row
 * j in int32 lane j of two vectors (rows 0-7, 8-15): one 4-byte broadcast of
 * the activations and one dot instruction per vector give every row's
 * partial sum in its own lane, so unlike the row-major kernel there is no
 * reduction across lanes. Integer sums are exact, and the float steps are the
 * ref's: acc = fmaf((float)dot, dw * dx, acc) per block, then + bias. */

#include "kernels/tile_rows.h"

#ifndef TERN_X86_QT_ACC_U2
#define TERN_X86_QT_ACC_U2(acc, u1, x1, u2, x2)                                                 \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16((u1), (x1)), \
                                                               _mm256_maddubs_epi16((u2), (x2))), \
                                              _mm256_set1_epi16(1)))
#endif
#ifndef TERN_X86_QT_ACC_Q8
#define TERN_X86_QT_ACC_Q8(acc, w, x) _mm256_add_epi32((acc), TERN_X86_QA_DOT_Q8((w), (x)))
#endif

#define TERN_X86_QT_R 16
#define TERN_X86_QT_MT 4
/* bytes ahead of the block being read that are prefetched */
#define TERN_X86_QT_PREFETCH 1024

TERN_X86_QA_INLINE __m256i tern_x86_qt_bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* One tile (rows tr .. tr+15) for tokens i0 .. i0+mt-1; mt is a constant at
 * each call so that the accumulators live in registers. */
TERN_X86_QA_INLINE void tern_x86_qt_tile(int q4, size_t mt, size_t tr, size_t i0, size_t r0,
                                         size_t r1, const tern_qrows *x, const tern_weight *w,
                                         const float *bias, float *y, size_t ldy) {
    const size_t R = TERN_X86_QT_R, cols = w->cols, gs = w->group_size, ng = cols / gs;
    const size_t nbg = gs / 32, nb = cols / 32;
    const int asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* q unsigned, + min per group */
    const size_t tile_bytes = q4 ? R * cols / 2 : R * cols, block_bytes = q4 ? 16 * R : 32 * R;
    const uint8_t *tv = (const uint8_t *)w->values + (tr / R) * tile_bytes;
    const uint16_t *ts = (const uint16_t *)w->scales + (tr / R) * R * ng;
    const uint8_t *tz = asym ? (const uint8_t *)w->zeros + (tr / R) * R * ng : NULL;
    const int32_t zsym = q4 ? (has_min ? 0 : 8) : TERN_X86_QA_Q8_OFFSET(has_min, 0);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256 acc[TERN_X86_QT_MT][2];
    for (size_t t = 0; t < mt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        __m256 dw[2], mn[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        __m256i zw[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (size_t h = 0; h < 2; h++) {
            dw[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(ts + g * R + 8 * h)));
            if (has_min)
                mn[h] = _mm256_cvtph_ps(_mm_loadu_si128(
                    (const __m128i *)(const void *)((const uint16_t *)w->zeros + (tr / R) * R * ng + g * R + 8 * h)));
            if (asym) {
                zw[h] = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(const void *)(tz + g * R + 8 * h)));
                if (!q4) zw[h] = _mm256_add_epi32(zw[h], _mm256_set1_epi32(TERN_X86_QA_Q8_OFFSET(1, 0)));
            }
        }
        for (size_t kb = 0; kb < nbg; kb++) {
            const size_t b = g * nbg + kb;
            const uint8_t *blk = tv + b * block_bytes;
            for (size_t l = 0; l < block_bytes; l += 64)
                _mm_prefetch((const char *)(blk + TERN_X86_QT_PREFETCH + l), _MM_HINT_T0);
            __m256i ia[TERN_X86_QT_MT][2];
            for (size_t t = 0; t < mt; t++) ia[t][0] = ia[t][1] = _mm256_setzero_si256();
            if (q4) {
                for (size_t k = 0; k < 4; k++) {
                    __m256i lo[2], hi[2];
                    for (size_t h = 0; h < 2; h++) {
                        const __m256i v =
                            _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * k + 32 * h));
                        lo[h] = _mm256_and_si256(v, nibble);
                        hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
                    }
                    for (size_t t = 0; t < mt; t++) {
                        const int8_t *xq = x->q + (i0 + t) * x->k + 32 * b + 8 * k;
                        const __m256i xl = tern_x86_qt_bcast4(xq);
                        const __m256i xh = tern_x86_qt_bcast4(xq + 4);
                        ia[t][0] = TERN_X86_QT_ACC_U2(ia[t][0], lo[0], xl, hi[0], xh);
                        ia[t][1] = TERN_X86_QT_ACC_U2(ia[t][1], lo[1], xl, hi[1], xh);
                    }
                }
            } else {
                for (size_t k = 0; k < 8; k++) {
                    __m256i wv[2];
                    for (size_t h = 0; h < 2; h++)
                        wv[h] = TERN_X86_QA_PREP_Q8(
                            _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * k + 32 * h)),
                            asym || has_min);
                    for (size_t t = 0; t < mt; t++) {
                        const __m256i xv = tern_x86_qt_bcast4(x->q + (i0 + t) * x->k + 32 * b + 4 * k);
                        ia[t][0] = TERN_X86_QT_ACC_Q8(ia[t][0], wv[0], xv);
                        ia[t][1] = TERN_X86_QT_ACC_Q8(ia[t][1], wv[1], xv);
                    }
                }
            }
            for (size_t t = 0; t < mt; t++) {
                const int32_t s = x->s[(i0 + t) * nb + b];
                const __m256 dx = _mm256_set1_ps(x->d[(i0 + t) * nb + b]);
                for (size_t h = 0; h < 2; h++) {
                    const __m256i off = asym ? _mm256_mullo_epi32(zw[h], _mm256_set1_epi32(s))
                                             : _mm256_set1_epi32(zsym * s);
                    const __m256i dot = _mm256_sub_epi32(ia[t][h], off);
                    acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw[h], dx),
                                                acc[t][h]);
                    if (has_min)
                        acc[t][h] = _mm256_fmadd_ps(_mm256_set1_ps((float)s), _mm256_mul_ps(mn[h], dx),
                                                    acc[t][h]);
                }
            }
        }
    }
    for (size_t t = 0; t < mt; t++) {
        float out[16];
        _mm256_storeu_ps(out, acc[t][0]);
        _mm256_storeu_ps(out + 8, acc[t][1]);
        float *yt = y + (i0 + t) * ldy;
        tern_tile_store_rows(out, R, tr, r0, r1, bias, yt);
    }
}

TERN_X86_QA_INLINE void tern_x86_qt_linear(int q4, size_t m, size_t r0, size_t r1,
                                           const tern_qrows *x, const tern_weight *w,
                                           const float *bias, float *y, size_t ldy) {
#define TERN_X86_QT_TILE(mt, tr, i0) tern_x86_qt_tile(q4, mt, tr, i0, r0, r1, x, w, bias, y, ldy)
    TERN_TILE_LOOP(TERN_X86_QT_R, TERN_X86_QT_MT, m, r0, r1, TERN_X86_QT_TILE)
#undef TERN_X86_QT_TILE
}

#if defined(TERN_X86_QT_ZMM)
/* The same tiles with 512-bit vectors (AVX-512 VNNI): all 16 rows of a chunk
 * in one register, one vpdpbusd per chunk and nibble half. */
#define TERN_X86_QT_ZMM_MT 4

TERN_X86_QA_INLINE __m512i tern_x86_qt_bcast4_zmm(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* One tile (rows tr .. tr+15) for tokens i0 .. i0+mt-1; mt is a constant at
 * each call so that the accumulators live in registers. */
TERN_X86_QA_INLINE void tern_x86_qt_tile_zmm(int q4, size_t mt, size_t tr, size_t i0, size_t r0,
                                             size_t r1, const tern_qrows *x, const tern_weight *w,
                                             const float *bias, float *y, size_t ldy) {
    const size_t R = TERN_X86_QT_R, cols = w->cols, gs = w->group_size, ng = cols / gs;
    const size_t nbg = gs / 32, nb = cols / 32;
    const int asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* q unsigned, + min per group */
    const size_t tile_bytes = q4 ? R * cols / 2 : R * cols, block_bytes = q4 ? 16 * R : 32 * R;
    const uint8_t *tv = (const uint8_t *)w->values + (tr / R) * tile_bytes;
    const uint16_t *ts = (const uint16_t *)w->scales + (tr / R) * R * ng;
    const uint8_t *tz = asym ? (const uint8_t *)w->zeros + (tr / R) * R * ng : NULL;
    const int32_t zsym = q4 ? (has_min ? 0 : 8) : TERN_X86_QA_Q8_OFFSET(has_min, 0);
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[TERN_X86_QT_ZMM_MT];
    for (size_t t = 0; t < mt; t++) acc[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        const __m512 dw =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(ts + g * R)));
        const __m512 mn = has_min ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(
                                        (const uint16_t *)w->zeros + (tr / R) * R * ng + g * R)))
                                  : _mm512_setzero_ps();
        __m512i zw = _mm512_setzero_si512();
        if (asym) {
            zw = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(tz + g * R)));
            if (!q4) zw = _mm512_add_epi32(zw, _mm512_set1_epi32(TERN_X86_QA_Q8_OFFSET(1, 0)));
        }
        for (size_t kb = 0; kb < nbg; kb++) {
            const size_t b = g * nbg + kb;
            const uint8_t *blk = tv + b * block_bytes;
            /* the tiles are read front to back: ask for what comes a few
             * blocks later (5-10 % more decode tokens/s from DRAM at 2
             * threads, bench/RESULTS.md); prefetches never fault */
            for (size_t l = 0; l < block_bytes; l += 64)
                _mm_prefetch((const char *)(blk + TERN_X86_QT_PREFETCH + l), _MM_HINT_T0);
            /* two chains per token for one token, one each for more: the
             * latency of vpdpbusd, not its throughput, bounds a lone chain
             * (integer sums: any split is exact) */
            __m512i ia[TERN_X86_QT_ZMM_MT][2];
            for (size_t t = 0; t < mt; t++) ia[t][0] = ia[t][1] = _mm512_setzero_si512();
            if (q4) {
                for (size_t k = 0; k < 4; k++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(blk + 64 * k));
                    const __m512i lo = _mm512_and_si512(v, nibble);
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
                    for (size_t t = 0; t < mt; t++) {
                        const int8_t *xq = x->q + (i0 + t) * x->k + 32 * b + 8 * k;
                        ia[t][0] = _mm512_dpbusd_epi32(ia[t][0], lo, tern_x86_qt_bcast4_zmm(xq));
                        ia[t][1] = _mm512_dpbusd_epi32(ia[t][1], hi, tern_x86_qt_bcast4_zmm(xq + 4));
                    }
                }
            } else {
                for (size_t k = 0; k < 8; k++) {
                    __m512i wv = _mm512_loadu_si512((const void *)(blk + 64 * k));
                    if (!asym && !has_min) wv = _mm512_xor_si512(wv, flip); /* w + 128: unsigned */
                    for (size_t t = 0; t < mt; t++)
                        ia[t][k & 1] = _mm512_dpbusd_epi32(
                            ia[t][k & 1], wv,
                            tern_x86_qt_bcast4_zmm(x->q + (i0 + t) * x->k + 32 * b + 4 * k));
                }
            }
            for (size_t t = 0; t < mt; t++) {
                const int32_t s = x->s[(i0 + t) * nb + b];
                const __m512i off = asym ? _mm512_mullo_epi32(zw, _mm512_set1_epi32(s))
                                         : _mm512_set1_epi32(zsym * s);
                const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(ia[t][0], ia[t][1]), off);
                const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(x->d[(i0 + t) * nb + b]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[t]);
                if (has_min)
                    acc[t] = _mm512_fmadd_ps(_mm512_set1_ps((float)s),
                                             _mm512_mul_ps(mn, _mm512_set1_ps(x->d[(i0 + t) * nb + b])), acc[t]);
            }
        }
    }
    for (size_t t = 0; t < mt; t++) {
        float out[16];
        _mm512_storeu_ps(out, acc[t]);
        float *yt = y + (i0 + t) * ldy;
        if (tr >= r0 && tr + R <= r1) {
            if (bias) {
                _mm512_storeu_ps(yt + tr, _mm512_add_ps(acc[t], _mm512_loadu_ps(bias + tr)));
            } else {
                _mm512_storeu_ps(yt + tr, acc[t]);
            }
            continue;
        }
        tern_tile_store_rows(out, R, tr, r0, r1, bias, yt);
    }
}

TERN_X86_QA_INLINE void tern_x86_qt_linear_zmm(int q4, size_t m, size_t r0, size_t r1,
                                               const tern_qrows *x, const tern_weight *w,
                                               const float *bias, float *y, size_t ldy) {
#define TERN_X86_QT_TILE(mt, tr, i0) tern_x86_qt_tile_zmm(q4, mt, tr, i0, r0, r1, x, w, bias, y, ldy)
    TERN_TILE_LOOP(TERN_X86_QT_R, TERN_X86_QT_ZMM_MT, m, r0, r1, TERN_X86_QT_TILE)
#undef TERN_X86_QT_TILE
}
#define tern_x86_qt_linear tern_x86_qt_linear_zmm
#endif
