/* N:M sparse integer linear layers over int8 activations, bit-identical to
 * tern_qs8_nm_linear_ukernel__ref. Included by linear_nm_avx2.c and
 * linear_nm_vnni.c after they define TERN_X86_ISA and the block dot macros of
 * linear_qa_tmpl.h (TERN_X86_QA_PREP_Q8, _DOT_Q8, _Q8_OFFSET).
 *
 * Approach: the kept values of one row and one 32-column activation block
 * (32 * N / M of them, 16 for 2:4) are expanded to the block's 32 dense
 * lanes with one pshufb, zeros where pruned; the control comes from the row's
 * index bytes through the tables of kernels/nm_lut.h (2:4, 1:4) or is built
 * from the 3-bit fields (M = 8). Then the dense kernel's step follows: 8 rows
 * x one block per step, the 8 expanded rows shared by up to 16 tokens, int32
 * block dots reduced across rows, and the ref's fmaf chain. A pruned lane is
 * 0 in the dot; the avx512vnni bias (w + 128, minus 128 * block sum) holds
 * for it as for any other 0. Q4 kept values become q - 8 before expansion.
 *
 * Runs: symmetric Q8/Q4 (no zero point, no min), patterns 2:4, 1:4, 2:8,
 * 4:8, group sizes with G * M / N a multiple of 32 (each block inside one
 * group); everything else goes to the ref kernel. */
#include <string.h>

#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "kernels/nm_lut.h"
#include "kernels/ref/ref.h"
#include "kernels/x86/x86.h"

#include <immintrin.h>

#define TERN_X86_NM_INLINE static inline __attribute__((always_inline))
#define TERN_X86_NM_CAT_(a, b) a##b
#define TERN_X86_NM_CAT(a, b) TERN_X86_NM_CAT_(a, b)
#define TERN_X86_NM_NAME(name) TERN_X86_NM_CAT(name, TERN_X86_NM_CAT(__, TERN_X86_ISA))
#ifndef TERN_X86_QA_INLINE
#define TERN_X86_QA_INLINE TERN_X86_NM_INLINE
#endif

#include "kernels/x86/linear_nmt_tmpl.h"

typedef struct {
    unsigned n, m;
    int q4;
    size_t kpb;         /* kept values per 32-column block */
    size_t ibb;         /* index bytes per block */
    size_t gs;          /* group size (kept values) */
    size_t stored;      /* kept values per row */
    size_t row_bytes;   /* VALUES bytes per row */
    size_t index_row;   /* INDEX bytes per row */
} tern_x86_nm_shape;

TERN_X86_NM_INLINE __m256i tern_x86_nm_reduce8(const __m256i p[8]) {
    const __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* The kept values of block b of a row as signed int8 in lanes [0, kpb). */
TERN_X86_NM_INLINE __m128i tern_x86_nm_kept(const tern_x86_nm_shape *s, const uint8_t *vr,
                                            size_t b) {
    const size_t k0 = b * s->kpb;
    if (!s->q4) {
        const uint8_t *p = vr + k0;
        return s->kpb == 16 ? _mm_loadu_si128((const __m128i *)(const void *)p)
                            : _mm_loadl_epi64((const __m128i *)(const void *)p);
    }
    const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    const size_t gs = s->gs, half = gs / 2, j0 = k0 % gs;
    const uint8_t *pg = vr + (k0 / gs) * half;
    __m128i u;
    if (gs == s->kpb) { /* the block is the whole group: low then high nibbles */
        __m128i v;
        if (half == 8) {
            v = _mm_loadl_epi64((const __m128i *)(const void *)pg);
        } else {
            uint32_t t;
            memcpy(&t, pg, 4);
            v = _mm_cvtsi32_si128((int)t);
        }
        const __m128i l = _mm_and_si128(v, low), h = _mm_and_si128(_mm_srli_epi16(v, 4), low);
        u = half == 8 ? _mm_unpacklo_epi64(l, h) : _mm_unpacklo_epi32(l, h);
    } else {
        const uint8_t *p = pg + (j0 < half ? j0 : j0 - half);
        __m128i v = s->kpb == 16 ? _mm_loadu_si128((const __m128i *)(const void *)p)
                                 : _mm_loadl_epi64((const __m128i *)(const void *)p);
        if (j0 >= half) v = _mm_srli_epi16(v, 4);
        u = _mm_and_si128(v, low);
    }
    return _mm_sub_epi8(u, eight);
}

/* The pshufb control expanding block b's kept values (broadcast to both
 * 128-bit lanes) to its 32 dense columns. */
TERN_X86_NM_INLINE __m256i tern_x86_nm_ctrl(const tern_x86_nm_shape *s, const uint8_t *ir,
                                            size_t b) {
    const uint8_t *p = ir + b * s->ibb;
    if (s->m == 4 && s->n == 2) {
        const __m256i c = _mm256_setr_epi64x((long long)tern_nm24_ctrl[p[0]],
                                             (long long)tern_nm24_ctrl[p[1]],
                                             (long long)tern_nm24_ctrl[p[2]],
                                             (long long)tern_nm24_ctrl[p[3]]);
        return _mm256_add_epi8(c, _mm256_setr_epi64x(0, 0x0404040404040404ll,
                                                     0x0808080808080808ll,
                                                     0x0c0c0c0c0c0c0c0cll));
    }
    if (s->m == 4) { /* 1:4 */
        const __m256i c = _mm256_setr_epi64x(
            (long long)tern_nm14_ctrl[p[0]][0], (long long)tern_nm14_ctrl[p[0]][1],
            (long long)tern_nm14_ctrl[p[1]][0], (long long)tern_nm14_ctrl[p[1]][1]);
        return _mm256_add_epi8(c, _mm256_setr_epi64x(0, 0, 0x0404040404040404ll,
                                                     0x0404040404040404ll));
    }
    /* M = 8: four groups of 8 columns, n 3-bit fields each */
    uint64_t bits = 0;
    memcpy(&bits, p, s->ibb); /* 3 or 6 bytes, little-endian */
    uint64_t q[4];
    for (unsigned t = 0; t < 4; t++) {
        uint64_t c = 0x8080808080808080ull;
        for (unsigned k = 0; k < s->n; k++) {
            const unsigned idx = (unsigned)(bits >> (3 * (t * s->n + k))) & 7u;
            c = (c & ~(0xffull << (8 * idx))) | ((uint64_t)(t * s->n + k) << (8 * idx));
        }
        q[t] = c;
    }
    return _mm256_setr_epi64x((long long)q[0], (long long)q[1], (long long)q[2], (long long)q[3]);
}

TERN_X86_NM_INLINE __m256i tern_x86_nm_expand(const tern_x86_nm_shape *s, const uint8_t *vr,
                                              const uint8_t *ir, size_t b) {
    const __m256i kept = _mm256_broadcastsi128_si256(tern_x86_nm_kept(s, vr, b));
    return _mm256_shuffle_epi8(kept, tern_x86_nm_ctrl(s, ir, b));
}

#define TERN_X86_NM_MT 32

TERN_X86_NM_INLINE void tern_x86_nm_linear(const tern_x86_nm_shape *s, size_t m, size_t r0,
                                           size_t r1, const tern_qrows *x, const tern_weight *w,
                                           const float *bias, float *y, size_t ldy) {
    const size_t nb = w->cols / 32, ng = s->stored / s->gs, nbg = s->gs / s->kpb;
    const uint8_t *values = (const uint8_t *)w->values, *index = (const uint8_t *)w->index;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const __m256i zsym = _mm256_set1_epi32(TERN_X86_QA_Q8_OFFSET(0, 0));
    for (size_t r = r0; r < r1; r += 8) {
        const size_t nr = r1 - r < 8 ? r1 - r : 8;
        size_t rows[8];
        const uint8_t *vr[8], *ir[8];
        for (size_t j = 0; j < 8; j++) {
            rows[j] = r + (j < nr ? j : 0);
            vr[j] = values + rows[j] * s->row_bytes;
            ir[j] = index + rows[j] * s->index_row;
        }
        for (size_t t0 = 0; t0 < m; t0 += TERN_X86_NM_MT) {
            const size_t mt = m - t0 < TERN_X86_NM_MT ? m - t0 : TERN_X86_NM_MT;
            __m256 acc[TERN_X86_NM_MT];
            for (size_t t = 0; t < mt; t++) acc[t] = _mm256_setzero_ps();
            for (size_t g = 0; g < ng; g++) {
                const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(
                    (short)scales[rows[0] * ng + g], (short)scales[rows[1] * ng + g],
                    (short)scales[rows[2] * ng + g], (short)scales[rows[3] * ng + g],
                    (short)scales[rows[4] * ng + g], (short)scales[rows[5] * ng + g],
                    (short)scales[rows[6] * ng + g], (short)scales[rows[7] * ng + g]));
                for (size_t kb = 0; kb < nbg; kb++) {
                    const size_t b = g * nbg + kb;
                    __m256i wv[8];
                    for (size_t j = 0; j < 8; j++)
                        wv[j] = TERN_X86_QA_PREP_Q8(tern_x86_nm_expand(s, vr[j], ir[j], b), 0);
                    for (size_t t = 0; t < mt; t++) {
                        const size_t ti = t0 + t;
                        const __m256i xb = _mm256_loadu_si256(
                            (const __m256i *)(const void *)(x->q + ti * x->k + b * 32));
                        __m256i p[8];
                        for (size_t j = 0; j < 8; j++) p[j] = TERN_X86_QA_DOT_Q8(wv[j], xb);
                        __m256i dot = tern_x86_nm_reduce8(p);
                        if (TERN_X86_QA_Q8_OFFSET(0, 0) != 0)
                            dot = _mm256_sub_epi32(
                                dot, _mm256_mullo_epi32(zsym, _mm256_set1_epi32(x->s[ti * nb + b])));
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

/* 2:4 at m <= 2 (decode): instead of expanding weights, the activations are
 * compacted to the kept positions of each row, so the dot runs over the
 * stored values only. Per row and 64 columns (two blocks, 32 kept values,
 * 8 index bytes): the index nibbles become per-value positions (unpack,
 * pshufb, and a 16-entry pshufb table for the 2-bit field), two pshufb pick
 * the activations from tables holding columns (0-15 | 32-47) and (16-31 |
 * 48-63), a dword blend keeps bytes 0-7 of each lane from the first and 8-15
 * from the second; lane L of the product is block L's dot. Needs G % 32 == 0 (both
 * blocks in one group). The integers and the fmaf order are the ref's. */
TERN_X86_NM_INLINE __m256i tern_x86_nm24_kept32(int q4, const uint8_t *vr, size_t gs, size_t c) {
    if (!q4) return _mm256_loadu_si256((const __m256i *)(const void *)(vr + 32 * c));
    const __m256i low = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    const size_t k0 = 32 * c, half = gs / 2, j0 = k0 % gs;
    const uint8_t *pg = vr + (k0 / gs) * half;
    __m256i u;
    if (gs == 32) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)pg);
        const __m128i l = _mm_and_si128(v, _mm256_castsi256_si128(low));
        const __m128i h = _mm_and_si128(_mm_srli_epi16(v, 4), _mm256_castsi256_si128(low));
        u = _mm256_set_m128i(h, l);
    } else {
        const __m256i v = _mm256_loadu_si256(
            (const __m256i *)(const void *)(pg + (j0 < half ? j0 : j0 - half)));
        u = _mm256_and_si256(j0 < half ? v : _mm256_srli_epi16(v, 4), low);
    }
    return _mm256_sub_epi8(u, eight);
}

TERN_X86_NM_INLINE void tern_x86_nm_gemv24(int q4, size_t m, size_t r0, size_t r1,
                                           const tern_qrows *x, const tern_weight *w,
                                           const float *bias, float *y, size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size, stored = cols / 2, ng = stored / gs;
    const size_t nb = cols / 32, cpg = gs / 32; /* 64-column chunks per group */
    const size_t row_bytes = q4 ? stored / 2 : stored, index_row = stored / 4;
    const uint8_t *values = (const uint8_t *)w->values, *index = (const uint8_t *)w->index;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i rep = _mm256_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9,
                                         9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __m256i field_mask = _mm256_set1_epi16(0x0c03);
    const __m256i field = _mm256_setr_epi8(0, 1, 2, 3, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 1,
                                           2, 3, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0);
    const __m256i base = _mm256_setr_epi8(0, 0, 4, 4, 8, 8, 12, 12, 0, 0, 4, 4, 8, 8, 12, 12, 0, 0,
                                          4, 4, 8, 8, 12, 12, 0, 0, 4, 4, 8, 8, 12, 12);
    for (size_t r = r0; r < r1; r += 8) {
        const size_t nr = r1 - r < 8 ? r1 - r : 8;
        size_t rows[8];
        const uint8_t *vr[8], *ir[8];
        for (size_t j = 0; j < 8; j++) {
            rows[j] = r + (j < nr ? j : 0);
            vr[j] = values + rows[j] * row_bytes;
            ir[j] = index + rows[j] * index_row;
        }
        for (size_t t = 0; t < m; t++) {
            const int8_t *xq = x->q + t * x->k;
            const float *xd = x->d + t * nb;
            __m256 acc = _mm256_setzero_ps();
            for (size_t g = 0; g < ng; g++) {
                const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(
                    (short)scales[rows[0] * ng + g], (short)scales[rows[1] * ng + g],
                    (short)scales[rows[2] * ng + g], (short)scales[rows[3] * ng + g],
                    (short)scales[rows[4] * ng + g], (short)scales[rows[5] * ng + g],
                    (short)scales[rows[6] * ng + g], (short)scales[rows[7] * ng + g]));
                for (size_t cc = 0; cc < cpg; cc++) {
                    const size_t c = g * cpg + cc;
                    const __m256i xa = _mm256_loadu_si256((const __m256i *)(const void *)(xq + 64 * c));
                    const __m256i xb =
                        _mm256_loadu_si256((const __m256i *)(const void *)(xq + 64 * c + 32));
                    const __m256i t1 = _mm256_permute2x128_si256(xa, xb, 0x20);
                    const __m256i t2 = _mm256_permute2x128_si256(xa, xb, 0x31);
                    __m256i p[8];
                    /* 24 streams (values, index, scales of 8 rows) outrun the
                     * hardware prefetchers on long rows: fetch ahead by hand */
                    if ((c & 1) == 0)
                        for (size_t j = 0; j < 8; j++)
                            _mm_prefetch((const char *)(vr[j] + (q4 ? 16 : 32) * c + 1024), _MM_HINT_T0);
                    if ((c & 7) == 0)
                        for (size_t j = 0; j < 8; j++)
                            _mm_prefetch((const char *)(ir[j] + 8 * c + 512), _MM_HINT_T0);
                    for (size_t j = 0; j < 8; j++) {
                        long long bits;
                        memcpy(&bits, ir[j] + 8 * c, 8);
                        const __m256i q = _mm256_set1_epi64x(bits);
                        const __m256i nib = _mm256_unpacklo_epi8(
                            _mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16(q, 4), low));
                        const __m256i f = _mm256_shuffle_epi8(
                            field, _mm256_and_si256(_mm256_shuffle_epi8(nib, rep), field_mask));
                        /* bytes 0-7 of a lane come from t1, 8-15 from t2 */
                        const __m256i ctrl = _mm256_add_epi8(f, base);
                        const __m256i xc = _mm256_blend_epi32(_mm256_shuffle_epi8(t1, ctrl),
                                                              _mm256_shuffle_epi8(t2, ctrl), 0xcc);
                        p[j] = TERN_X86_NM_DOT_SS(tern_x86_nm24_kept32(q4, vr[j], gs, c), xc);
                    }
                    const __m256i h01 = _mm256_hadd_epi32(p[0], p[1]);
                    const __m256i h23 = _mm256_hadd_epi32(p[2], p[3]);
                    const __m256i h45 = _mm256_hadd_epi32(p[4], p[5]);
                    const __m256i h67 = _mm256_hadd_epi32(p[6], p[7]);
                    const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
                    const __m256i d0 = _mm256_permute2x128_si256(a, b, 0x20);
                    const __m256i d1 = _mm256_permute2x128_si256(a, b, 0x31);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0),
                                          _mm256_mul_ps(dw, _mm256_set1_ps(xd[2 * c])), acc);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1),
                                          _mm256_mul_ps(dw, _mm256_set1_ps(xd[2 * c + 1])), acc);
                }
            }
            float out[8];
            _mm256_storeu_ps(out, acc);
            float *yt = y + t * ldy + r;
            for (size_t j = 0; j < nr; j++) yt[j] = bias ? out[j] + bias[r + j] : out[j];
        }
    }
}

void TERN_X86_NM_NAME(tern_qs8_nm_linear_ukernel_8x32)(size_t m, size_t r0, size_t r1,
                                                        const tern_qrows *x, const tern_weight *w,
                                                        const float *bias, float *y, size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) { /* 16-row tiles: linear_nmt_tmpl.h */
        if (tern_x86_nmt_runs(w)) tern_x86_nmt_dispatch(m, r0, r1, x, w, bias, y, ldy);
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
    tern_x86_nm_shape s;
    s.n = n;
    s.m = mm;
    s.q4 = w->encoding == TERN_ENC_Q4;
    s.kpb = kpb;
    s.ibb = kpb * (mm == 4 ? 2 : 3) / 8;
    s.gs = w->group_size;
    s.stored = w->cols / mm * n;
    s.row_bytes = s.q4 ? s.stored / 2 : s.stored;
    s.index_row = tern_nm_index_row_bytes(w);
    if (m <= 2 && mm == 4 && n == 2 && w->group_size % 32 == 0) {
        if (s.q4) tern_x86_nm_gemv24(1, m, r0, r1, x, w, bias, y, ldy);
        else tern_x86_nm_gemv24(0, m, r0, r1, x, w, bias, y, ldy);
        return;
    }
    /* one specialisation per pattern and encoding so the control code folds */
#define TERN_X86_NM_CASE(N, M, Q4)                                                             \
    if (n == (N) && mm == (M) && s.q4 == (Q4)) {                                               \
        const tern_x86_nm_shape c = {(N), (M), (Q4), 32 / (M) * (N), 32 / (M) * (N) * ((M) == 4 ? 2 : 3) / 8, \
                                     s.gs, s.stored, s.row_bytes, s.index_row};                \
        tern_x86_nm_linear(&c, m, r0, r1, x, w, bias, y, ldy);                                 \
        return;                                                                                \
    }
    TERN_X86_NM_CASE(2, 4, 0)
    TERN_X86_NM_CASE(2, 4, 1)
    TERN_X86_NM_CASE(1, 4, 0)
    TERN_X86_NM_CASE(1, 4, 1)
    TERN_X86_NM_CASE(2, 8, 0)
    TERN_X86_NM_CASE(2, 8, 1)
    TERN_X86_NM_CASE(4, 8, 0)
    TERN_X86_NM_CASE(4, 8, 1)
#undef TERN_X86_NM_CASE
}
