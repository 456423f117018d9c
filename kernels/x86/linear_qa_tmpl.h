/* Integer linear layers over int8 activations (Q8/Q4 weights with
 * group_size % 32 == 0), bit-identical to kernels/ref/linear_qa_ref.c.
 * Included by linear_qa_avx2.c and linear_qa_vnni.c, which define
 * TERN_X86_ISA and the block dot products (8 int32 partial sums of one
 * 32-byte block, summing to the exact dot):
 *   TERN_X86_QA_DOT_U(u, x)        u: unsigned bytes in [0, 15], x: int8
 *   TERN_X86_QA_PREP_Q8(w, asym)   the stored Q8 bytes as DOT_Q8 takes them
 *   TERN_X86_QA_DOT_Q8(w, x)       w: prepared Q8 bytes
 *   TERN_X86_QA_Q8_OFFSET(asym, z) the zw' with dot(w - zw) = dot_q8 - zw' * s
 *
 * A step takes 8 rows and one 32-block: eight partial vectors are reduced
 * across rows (hadd tree) into the 8 rows' int32 dots, the weight offset is
 * removed with the block's sum of q, and each row's float accumulator takes
 * fmaf((float)dot, dw * dx, acc) exactly as the ref does, block after block.
 * Rows past r1 in the last tile repeat row r0 and are not stored. */
#include <string.h>

#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "kernels/x86/x86.h"

#include <immintrin.h>

#define TERN_X86_QA_INLINE static inline __attribute__((always_inline))
#define TERN_X86_QA_CAT_(a, b) a##b
#define TERN_X86_QA_CAT(a, b) TERN_X86_QA_CAT_(a, b)
#define TERN_X86_QA_NAME(name) TERN_X86_QA_CAT(name, TERN_X86_QA_CAT(__, TERN_X86_ISA))

/* The 8 rows' sums of 8 partial vectors, row j in lane j. */
TERN_X86_QA_INLINE __m256i tern_x86_qa_reduce8(const __m256i p[8]) {
    const __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* Q4 block kb of a group of gs values starting at byte p, as 32 bytes in
 * [0, 15] in column order (format: low nibbles are the first half). */
TERN_X86_QA_INLINE __m256i tern_x86_qa_q4_block(const uint8_t *p, size_t gs, size_t kb) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    if (gs == 32) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        const __m128i l = _mm_and_si128(v, _mm256_castsi256_si128(low));
        const __m128i h = _mm_and_si128(_mm_srli_epi16(v, 4), _mm256_castsi256_si128(low));
        return _mm256_set_m128i(h, l);
    }
    if (gs % 64 != 0) {
        /* a block may straddle the halves: two 16-value pieces */
        const __m128i low4 = _mm256_castsi256_si128(low);
        __m128i piece[2];
        for (size_t h = 0; h < 2; h++) {
            const size_t j = 32 * kb + 16 * h, half = gs / 2;
            piece[h] = j < half
                           ? _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + j)),
                                           low4)
                           : _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i *)(
                                                              const void *)(p + j - half)),
                                                          4),
                                           low4);
        }
        return _mm256_set_m128i(piece[1], piece[0]);
    }
    const size_t nbh = gs / 64; /* blocks per half group */
    if (kb < nbh)
        return _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * kb)),
                                low);
    const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * (kb - nbh)));
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
}

TERN_X86_QA_INLINE __m256 tern_x86_qa_scales8(const uint16_t *scales, const size_t *rows,
                                              size_t ng, size_t g) {
    return _mm256_cvtph_ps(_mm_setr_epi16(
        (short)scales[rows[0] * ng + g], (short)scales[rows[1] * ng + g],
        (short)scales[rows[2] * ng + g], (short)scales[rows[3] * ng + g],
        (short)scales[rows[4] * ng + g], (short)scales[rows[5] * ng + g],
        (short)scales[rows[6] * ng + g], (short)scales[rows[7] * ng + g]));
}

/* The scales of groups g .. g + 7 of the 8 rows (an 8 x 8 transpose of
 * 16-bit values), out[i] holding group g + i of rows 0..7 as floats. */
TERN_X86_QA_INLINE void tern_x86_qa_scales8x8(const uint16_t *scales, const size_t *rows,
                                              size_t ng, size_t g, __m256 out[8]) {
    __m128i r[8], t[8], u[8];
    for (size_t j = 0; j < 8; j++)
        r[j] = _mm_loadu_si128((const __m128i *)(const void *)(scales + rows[j] * ng + g));
    for (size_t j = 0; j < 8; j += 2) {
        t[j] = _mm_unpacklo_epi16(r[j], r[j + 1]);     /* groups 0-3 of rows j, j+1 */
        t[j + 1] = _mm_unpackhi_epi16(r[j], r[j + 1]); /* groups 4-7 */
    }
    for (size_t h = 0; h < 2; h++) { /* rows 0-3, rows 4-7 */
        u[4 * h + 0] = _mm_unpacklo_epi32(t[4 * h + 0], t[4 * h + 2]); /* groups 0, 1 */
        u[4 * h + 1] = _mm_unpackhi_epi32(t[4 * h + 0], t[4 * h + 2]); /* groups 2, 3 */
        u[4 * h + 2] = _mm_unpacklo_epi32(t[4 * h + 1], t[4 * h + 3]); /* groups 4, 5 */
        u[4 * h + 3] = _mm_unpackhi_epi32(t[4 * h + 1], t[4 * h + 3]); /* groups 6, 7 */
    }
    for (size_t i = 0; i < 4; i++) {
        out[2 * i] = _mm256_cvtph_ps(_mm_unpacklo_epi64(u[i], u[4 + i]));
        out[2 * i + 1] = _mm256_cvtph_ps(_mm_unpackhi_epi64(u[i], u[4 + i]));
    }
}

/* MT tokens share each group's scale and offset vectors. */
#define TERN_X86_QA_MT 16

TERN_X86_QA_INLINE void tern_x86_qa_linear(int q4, size_t m, size_t r0, size_t r1,
                                           const tern_qrows *x, const tern_weight *w,
                                           const float *bias, float *y, size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size, ng = cols / gs, nbg = gs / 32;
    const size_t nb = cols / 32;
    const int asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const uint8_t *values = (const uint8_t *)w->values;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const size_t row_bytes = q4 ? cols / 2 : cols, group_bytes = q4 ? gs / 2 : gs;
    for (size_t r = r0; r < r1; r += 8) {
        const size_t nr = r1 - r < 8 ? r1 - r : 8;
        size_t rows[8];
        const uint8_t *wr[8];
        for (size_t j = 0; j < 8; j++) {
            rows[j] = r + (j < nr ? j : 0);
            wr[j] = values + rows[j] * row_bytes;
        }
        for (size_t t0 = 0; t0 < m; t0 += TERN_X86_QA_MT) {
            const size_t mt = m - t0 < TERN_X86_QA_MT ? m - t0 : TERN_X86_QA_MT;
            __m256 acc[TERN_X86_QA_MT];
            for (size_t t = 0; t < mt; t++) acc[t] = _mm256_setzero_ps();
            __m256 dw8[8];
            const __m256i zsym = _mm256_set1_epi32(q4 ? 8 : TERN_X86_QA_Q8_OFFSET(0, 0));
            for (size_t g = 0; g < ng; g++) {
                if (g % 8 == 0 && g + 8 <= ng) tern_x86_qa_scales8x8(scales, rows, ng, g, dw8);
                const __m256 dw = g - g % 8 + 8 <= ng ? dw8[g % 8]
                                                      : tern_x86_qa_scales8(scales, rows, ng, g);
                __m256i zw = zsym;
                if (asym) {
                    int32_t zo[8];
                    for (size_t j = 0; j < 8; j++) {
                        const int z = zeros[rows[j] * ng + g];
                        zo[j] = q4 ? z : TERN_X86_QA_Q8_OFFSET(1, z);
                    }
                    zw = _mm256_loadu_si256((const __m256i *)(const void *)zo);
                }
                for (size_t kb = 0; kb < nbg; kb++) {
                    const size_t b = g * nbg + kb;
                    /* the 8 rows' block, unpacked once for all tokens */
                    __m256i wv[8];
                    for (size_t j = 0; j < 8; j++) {
                        const uint8_t *wg = wr[j] + g * group_bytes;
                        wv[j] = q4 ? tern_x86_qa_q4_block(wg, gs, kb)
                                   : TERN_X86_QA_PREP_Q8(_mm256_loadu_si256(
                                         (const __m256i *)(const void *)(wg + 32 * kb)), asym);
                    }
                    for (size_t t = 0; t < mt; t++) {
                        const size_t ti = t0 + t;
                        const __m256i xb = _mm256_loadu_si256(
                            (const __m256i *)(const void *)(x->q + ti * x->k + b * 32));
                        __m256i p[8];
                        for (size_t j = 0; j < 8; j++)
                            p[j] = q4 ? TERN_X86_QA_DOT_U(wv[j], xb) : TERN_X86_QA_DOT_Q8(wv[j], xb);
                        __m256i dot = tern_x86_qa_reduce8(p);
                        dot = _mm256_sub_epi32(
                            dot, _mm256_mullo_epi32(zw, _mm256_set1_epi32(x->s[ti * nb + b])));
                        const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(x->d[ti * nb + b]));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[t]);
                    }
                }
            }
            for (size_t t = 0; t < mt; t++) {
                float out[8];
                _mm256_storeu_ps(out, acc[t]);
                float *yt = y + (t0 + t) * ldy + r;
                for (size_t j = 0; j < nr; j++) yt[j] = bias ? out[j] + bias[r + j] : out[j];
            }
        }
    }
}

#include "kernels/x86/linear_qt_tmpl.h"

void TERN_X86_QA_NAME(tern_qs8_q8w_linear_ukernel_8x32)(size_t m, size_t r0, size_t r1,
                                                         const tern_qrows *x,
                                                         const tern_weight *w, const float *bias,
                                                         float *y, size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows == TERN_X86_QT_R) {
        tern_x86_qt_linear(0, m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    if (w->group_size % 32 != 0 || w->layout != TERN_LAYOUT_ROW_MAJOR ||
        (w->flags & TERN_TENSOR_HAS_MIN)) {
        tern_qs8_q8w_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    tern_x86_qa_linear(0, m, r0, r1, x, w, bias, y, ldy);
}

void TERN_X86_QA_NAME(tern_qs8_q4w_linear_ukernel_8x32)(size_t m, size_t r0, size_t r1,
                                                         const tern_qrows *x,
                                                         const tern_weight *w, const float *bias,
                                                         float *y, size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows == TERN_X86_QT_R) {
        tern_x86_qt_linear(1, m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    if (w->group_size % 32 != 0 || w->layout != TERN_LAYOUT_ROW_MAJOR ||
        (w->flags & TERN_TENSOR_HAS_MIN)) {
        tern_qs8_q4w_linear_ukernel__ref(m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    tern_x86_qa_linear(1, m, r0, r1, x, w, bias, y, ldy);
}

/* quantize_rows: 32 floats per block as 4 vectors; amax, 127 / amax and
 * the rounding are the ref's operations one for one. */
void TERN_X86_QA_NAME(tern_f32_qs8_quantize_ukernel)(size_t m, size_t k, const float *x,
                                                     size_t ldx, int8_t *q, float *d,
                                                     int32_t *s) {
    const size_t nb = k / 32;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t i = 0; i < m; i++) {
        for (size_t b = 0; b < nb; b++) {
            const float *xb = x + i * ldx + b * 32;
            __m256 v[4];
            for (size_t j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(xb + 8 * j);
            __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]),
                                                    _mm256_andnot_ps(sign, v[1])),
                                      _mm256_max_ps(_mm256_andnot_ps(sign, v[2]),
                                                    _mm256_andnot_ps(sign, v[3])));
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            const float amax = _mm_cvtss_f32(h);
            const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            const __m256 vid = _mm256_set1_ps(id);
            __m256i qi[4];
            for (size_t j = 0; j < 4; j++) qi[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], vid));
            /* packs work per 128-bit lane: the permute puts the blocks back in order */
            const __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]);
            const __m256i p16b = _mm256_packs_epi32(qi[2], qi[3]);
            const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
            _mm256_storeu_si256((__m256i *)(void *)(q + i * k + b * 32), p8);
            __m256i sum = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]),
                                           _mm256_add_epi32(qi[2], qi[3]));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum),
                                       _mm256_extracti128_si256(sum, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            d[i * nb + b] = amax / 127.0f;
            s[i * nb + b] = _mm_cvtsi128_si32(s4);
        }
    }
}
