/* N:M sparse integer linear layers over ROW_INTERLEAVED tiles of 16 rows,
 * 2:4 and 1:4 Q8/Q4 (docs/format.md 7.3, 7.4), bit-identical to
 * tern_qs8_nm_linear_ukernel__ref. Included by linear_nm_tmpl.h; the
 * avx512vnni file defines TERN_X86_NMT_ZMM for the 512-bit version.
 *
 * A quad is 4 stored values of each of the tile's 16 rows: 4 bytes a row
 * (Q8) or one nibble half of a 4-byte chunk (Q4), and one index byte a row,
 * the 16 index bytes side by side. Instead of expanding weights to dense
 * columns, each row's 4 activations are gathered to its 4 stored values: the
 * 16 activations of the quad's column window are broadcast to every 128-bit
 * lane, and a pshufb whose per-row 4-byte control comes from the row's index
 * byte (2-bit fields spread to bytes by shifts, plus the column base) picks
 * them. One dot instruction then gives every row's partial sum in its own
 * int32 lane, as in the dense tiles (linear_qt_tmpl.h); the controls and the
 * weights of a quad are shared by all tokens of a call's token group.
 *
 * Column windows: a 32-column activation block is two 16-column halves; a
 * half holds N quads (2:4: columns 8e .. 8e+7 of the half for quad e, field
 * f of the index byte at 4 * (f / 2) + field; 1:4: one quad, field f at 4 f
 * + field). Arithmetic, per row and block (each block lies in one group, the
 * format's rule for sparse tiles): dot = sum (q - zw) * x over the kept
 * values exactly in int32, then acc = fmaf((float)dot, dw * dx, acc), block
 * after block, then + bias, which is the ref's segment order.
 * avx512vnni (vpdpbusd, unsigned x signed): symmetric weights (Q8, Q4 as
 * q - 8) are the signed operand and the activations the unsigned one
 * (x + 128, an xor), the 128 * sum(w) of the block removed once per tile,
 * block and token group; with zero points the stored unsigned q meets the
 * signed activations and z * sum(x kept) is removed, the sum from one more
 * dot against ones. avx2 (maddubs): |w| against x with w's sign, zero
 * points as q - 128 (Q8) or q (Q4) minus (z - 128 | z) * sum(x kept). */

#include "kernels/tile_rows.h"

#define TERN_X86_NMT_R 16
/* bytes ahead of the quad being read that are prefetched */
#define TERN_X86_NMT_PREFETCH 1024

typedef struct {
    int q4;           /* Q4, else Q8 */
    unsigned n;       /* 1 or 2 (M = 4) */
    int asym;         /* zero points */
    size_t stored;    /* stored values per row */
    size_t gs, ng;    /* group size (stored values), groups per row */
    size_t ib;        /* index bytes per row */
} tern_x86_nmt_shape;

/* The pshufb control base of quad e of a half: 2:4 {0, 0, 4, 4} + 8 e, 1:4 {0, 4, 8, 12}. */
#define TERN_X86_NMT_BASE(n, e) ((n) == 2 ? 0x04040000 + (int)(e)*0x08080808 : 0x0c080400)

/* Values of quad q of the tile at tv, as 16 rows x 4 bytes. */
TERN_X86_QA_INLINE const uint8_t *tern_x86_nmt_quad_bytes(int q4, const uint8_t *tv, size_t q) {
    return tv + (q4 ? q / 2 : q) * 64;
}

/* ---- 256-bit (avx2): rows 0-7 and 8-15 in two vectors ---- */

/* The gather controls of 8 rows from their index bytes: byte f of row j's
 * dword is field f of its index byte plus the base. */
TERN_X86_QA_INLINE __m256i tern_x86_nmt_ctrl8(const uint8_t *ip, int base) {
    const __m256i t = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)ip));
    const __m256i a = _mm256_or_si256(_mm256_or_si256(t, _mm256_slli_epi32(t, 6)),
                                      _mm256_or_si256(_mm256_slli_epi32(t, 12), _mm256_slli_epi32(t, 18)));
    return _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x03030303)), _mm256_set1_epi32(base));
}

/* signed w x signed x in 4-byte dots (|x| <= 127: maddubs cannot saturate) */
TERN_X86_QA_INLINE __m256i tern_x86_nmt_dot8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)),
                             _mm256_set1_epi16(1));
}

#define TERN_X86_NMT_MT 4

TERN_X86_QA_INLINE void tern_x86_nmt_tile8(const tern_x86_nmt_shape *s, size_t mt, size_t tr,
                                           size_t i0, size_t r0, size_t r1, const tern_qrows *x,
                                           const tern_weight *w, const float *bias, float *y,
                                           size_t ldy) {
    const size_t R = TERN_X86_NMT_R, nb = w->cols / 32, bpg = s->gs * 4 / s->n / 32;
    const size_t tile = tr / R;
    const uint8_t *tv = (const uint8_t *)w->values + tile * (s->q4 ? R * s->stored / 2 : R * s->stored);
    const uint8_t *ti = (const uint8_t *)w->index + tile * R * s->ib;
    const uint16_t *ts = (const uint16_t *)w->scales + tile * R * s->ng;
    const uint8_t *tz = s->asym ? (const uint8_t *)w->zeros + tile * R * s->ng : NULL;
    const __m256i nibble = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[TERN_X86_NMT_MT][2];
    for (size_t t = 0; t < mt; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (size_t g = 0; g < s->ng; g++) {
        __m256 dw[2];
        __m256i zw[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (size_t h = 0; h < 2; h++) {
            dw[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(ts + g * R + 8 * h)));
            if (s->asym) {
                zw[h] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(tz + g * R + 8 * h)));
                /* Q8 bytes enter the dot as q - 128 (signed): the zero moves likewise */
                if (!s->q4) zw[h] = _mm256_sub_epi32(zw[h], _mm256_set1_epi32(128));
            }
        }
        for (size_t kb = 0; kb < bpg; kb++) {
            const size_t b = g * bpg + kb;
            __m256i ia[TERN_X86_NMT_MT][2], sa[TERN_X86_NMT_MT][2];
            for (size_t t = 0; t < mt; t++)
                ia[t][0] = ia[t][1] = sa[t][0] = sa[t][1] = _mm256_setzero_si256();
            for (size_t h = 0; h < 2; h++) { /* 16-column halves of the block */
                for (unsigned e = 0; e < s->n; e++) {
                    const size_t q = (2 * b + h) * s->n + e;
                    const uint8_t *qb = tern_x86_nmt_quad_bytes(s->q4, tv, q);
                    _mm_prefetch((const char *)(qb + TERN_X86_NMT_PREFETCH), _MM_HINT_T0);
                    if ((q & 3) == 0) _mm_prefetch((const char *)(ti + 16 * q + TERN_X86_NMT_PREFETCH / 4), _MM_HINT_T0);
                    __m256i ctrl[2], wv[2];
                    for (size_t v = 0; v < 2; v++) {
                        ctrl[v] = tern_x86_nmt_ctrl8(ti + 16 * q + 8 * v, TERN_X86_NMT_BASE(s->n, e));
                        __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qb + 32 * v));
                        if (s->q4) {
                            raw = _mm256_and_si256((q & 1) ? _mm256_srli_epi16(raw, 4) : raw, nibble);
                            wv[v] = s->asym ? raw : _mm256_sub_epi8(raw, eight);
                        } else {
                            wv[v] = s->asym ? _mm256_xor_si256(raw, flip) : raw;
                        }
                    }
                    for (size_t t = 0; t < mt; t++) {
                        const __m256i xw = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                            (const __m128i *)(const void *)(x->q + (i0 + t) * x->k + 32 * b + 16 * h)));
                        for (size_t v = 0; v < 2; v++) {
                            const __m256i xs = _mm256_shuffle_epi8(xw, ctrl[v]);
                            ia[t][v] = _mm256_add_epi32(ia[t][v], tern_x86_nmt_dot8(wv[v], xs));
                            if (s->asym)
                                sa[t][v] = _mm256_add_epi32(
                                    sa[t][v], _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xs), ones16));
                        }
                    }
                }
            }
            for (size_t t = 0; t < mt; t++) {
                const __m256 dx = _mm256_set1_ps(x->d[(i0 + t) * nb + b]);
                for (size_t v = 0; v < 2; v++) {
                    __m256i dot = ia[t][v];
                    if (s->asym) dot = _mm256_sub_epi32(dot, _mm256_mullo_epi32(zw[v], sa[t][v]));
                    acc[t][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw[v], dx), acc[t][v]);
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

TERN_X86_QA_INLINE void tern_x86_nmt_linear8(const tern_x86_nmt_shape *s, size_t m, size_t r0,
                                             size_t r1, const tern_qrows *x, const tern_weight *w,
                                             const float *bias, float *y, size_t ldy) {
#define TERN_X86_NMT_TILE(mt, tr, i0) tern_x86_nmt_tile8(s, mt, tr, i0, r0, r1, x, w, bias, y, ldy)
    TERN_TILE_LOOP(TERN_X86_NMT_R, TERN_X86_NMT_MT, m, r0, r1, TERN_X86_NMT_TILE)
#undef TERN_X86_NMT_TILE
}
#define tern_x86_nmt_linear tern_x86_nmt_linear8

#if defined(TERN_X86_NMT_ZMM)
/* ---- 512-bit (avx512vnni): the 16 rows in one vector, vpdpbusd ---- */
#define TERN_X86_NMT_ZMM_MT 8

/* ternary-logic immediate: (a | b) & c */
#define TERN_X86_NMT_OR_AND 0xa8

/* The 16 rows' gather controls (row j in dword j) from their index bytes b:
 * one pshufb puts b in both words of the dword, a per-word shift makes them
 * b and b >> 4 (fields 0-1 and 2-3 in their low nibbles), and
 * w | w << 6 moves each word's second field to its high byte (no carries:
 * an OR), so that & 0x0303 leaves field f in byte f; then the base. */
TERN_X86_QA_INLINE __m512i tern_x86_nmt_ctrl16(const uint8_t *ip, __m512i base) {
    const __m512i rep = _mm512_setr_epi32(
        (int)0x80008000, (int)0x80018001, (int)0x80028002, (int)0x80038003, (int)0x80048004,
        (int)0x80058005, (int)0x80068006, (int)0x80078007, (int)0x80088008, (int)0x80098009,
        (int)0x800a800a, (int)0x800b800b, (int)0x800c800c, (int)0x800d800d, (int)0x800e800e,
        (int)0x800f800f);
    const __m512i src = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)ip));
    const __m512i w = _mm512_srlv_epi16(_mm512_shuffle_epi8(src, rep), _mm512_set1_epi32(0x00040000));
    const __m512i f = _mm512_ternarylogic_epi32(w, _mm512_slli_epi16(w, 6), _mm512_set1_epi32(0x03030303),
                                                TERN_X86_NMT_OR_AND);
    return _mm512_or_si512(f, base);
}

TERN_X86_QA_INLINE void tern_x86_nmt_tile16(const tern_x86_nmt_shape *s, size_t mt, size_t tr,
                                            size_t i0, size_t r0, size_t r1, const tern_qrows *x,
                                            const tern_weight *w, const float *bias, float *y,
                                            size_t ldy) {
    const size_t R = TERN_X86_NMT_R, nb = w->cols / 32, bpg = s->gs * 4 / s->n / 32;
    const size_t tile = tr / R;
    const uint8_t *tv = (const uint8_t *)w->values + tile * (s->q4 ? R * s->stored / 2 : R * s->stored);
    const uint8_t *ti = (const uint8_t *)w->index + tile * R * s->ib;
    const uint16_t *ts = (const uint16_t *)w->scales + tile * R * s->ng;
    const uint8_t *tz = s->asym ? (const uint8_t *)w->zeros + tile * R * s->ng : NULL;
    const __m512i nibble = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    /* unsigned weights against signed x, minus z * sum(x kept): zero points,
     * and symmetric Q4 for one token (z = 8: cheaper there than q - 8 and
     * the 128 * sum(w) term, which only pay off when tokens share them) */
    const int ua = s->asym || (s->q4 && mt == 1);
    __m512 acc[TERN_X86_NMT_ZMM_MT];
    for (size_t t = 0; t < mt; t++) acc[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < s->ng; g++) {
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(ts + g * R)));
        const __m512i zw = s->asym ? _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(tz + g * R)))
                                   : _mm512_setzero_si512();
        for (size_t kb = 0; kb < bpg; kb++) {
            const size_t b = g * bpg + kb;
            __m512i ia[TERN_X86_NMT_ZMM_MT], sa[TERN_X86_NMT_ZMM_MT];
            __m512i corr = _mm512_setzero_si512(); /* symmetric: 128 * sum(w) of each row */
            for (size_t t = 0; t < mt; t++) ia[t] = sa[t] = _mm512_setzero_si512();
            for (size_t h = 0; h < 2; h++) { /* 16-column halves of the block */
                __m512i xw[TERN_X86_NMT_ZMM_MT];
                for (size_t t = 0; t < mt; t++) {
                    xw[t] = _mm512_broadcast_i32x4(_mm_loadu_si128(
                        (const __m128i *)(const void *)(x->q + (i0 + t) * x->k + 32 * b + 16 * h)));
                    if (!ua) xw[t] = _mm512_xor_si512(xw[t], flip); /* x + 128: unsigned */
                }
                for (unsigned e = 0; e < s->n; e++) {
                    const size_t q = (2 * b + h) * s->n + e;
                    const uint8_t *qb = tern_x86_nmt_quad_bytes(s->q4, tv, q);
                    /* tiles are read front to back: ask for a few quads later */
                    _mm_prefetch((const char *)(qb + TERN_X86_NMT_PREFETCH), _MM_HINT_T0);
                    if ((q & 3) == 0) _mm_prefetch((const char *)(ti + 16 * q + TERN_X86_NMT_PREFETCH / 4), _MM_HINT_T0);
                    const __m512i ctrl = tern_x86_nmt_ctrl16(ti + 16 * q, _mm512_set1_epi32(TERN_X86_NMT_BASE(s->n, e)));
                    __m512i wv = _mm512_loadu_si512((const void *)qb);
                    if (s->q4) {
                        wv = _mm512_and_si512((q & 1) ? _mm512_srli_epi16(wv, 4) : wv, nibble);
                        if (!ua) wv = _mm512_sub_epi8(wv, eight);
                    }
                    if (ua) {
                        for (size_t t = 0; t < mt; t++) {
                            const __m512i xs = _mm512_shuffle_epi8(xw[t], ctrl);
                            ia[t] = _mm512_dpbusd_epi32(ia[t], wv, xs);
                            sa[t] = _mm512_dpbusd_epi32(sa[t], ones, xs);
                        }
                    } else {
                        corr = _mm512_dpbusd_epi32(corr, flip, wv);
                        for (size_t t = 0; t < mt; t++)
                            ia[t] = _mm512_dpbusd_epi32(ia[t], _mm512_shuffle_epi8(xw[t], ctrl), wv);
                    }
                }
            }
            for (size_t t = 0; t < mt; t++) {
                const __m512i dot =
                    !ua ? _mm512_sub_epi32(ia[t], corr)
                        : _mm512_sub_epi32(ia[t], s->asym ? _mm512_mullo_epi32(zw, sa[t]) : _mm512_slli_epi32(sa[t], 3));
                const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(x->d[(i0 + t) * nb + b]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[t]);
            }
        }
    }
    for (size_t t = 0; t < mt; t++) {
        float *yt = y + (i0 + t) * ldy;
        if (tr >= r0 && tr + R <= r1) {
            _mm512_storeu_ps(yt + tr, bias ? _mm512_add_ps(acc[t], _mm512_loadu_ps(bias + tr)) : acc[t]);
            continue;
        }
        float out[16];
        _mm512_storeu_ps(out, acc[t]);
        tern_tile_store_rows(out, R, tr, r0, r1, bias, yt);
    }
}

TERN_X86_QA_INLINE void tern_x86_nmt_linear16(const tern_x86_nmt_shape *s, size_t m, size_t r0,
                                              size_t r1, const tern_qrows *x, const tern_weight *w,
                                              const float *bias, float *y, size_t ldy) {
#define TERN_X86_NMT_TILE(mt, tr, i0) tern_x86_nmt_tile16(s, mt, tr, i0, r0, r1, x, w, bias, y, ldy)
    TERN_TILE_LOOP(TERN_X86_NMT_R, TERN_X86_NMT_ZMM_MT, m, r0, r1, TERN_X86_NMT_TILE)
#undef TERN_X86_NMT_TILE
}
#undef tern_x86_nmt_linear
#define tern_x86_nmt_linear tern_x86_nmt_linear16
#endif

/* 1 when w is a tiled sparse matrix these kernels run (else the ref does). */
TERN_X86_QA_INLINE int tern_x86_nmt_runs(const tern_weight *w) { return tern_nm_tiles_run(w, TERN_X86_NMT_R); }

/* One specialisation per encoding, pattern and offset kind, so that the
 * shape's flags fold into the loops. */
TERN_X86_QA_INLINE void tern_x86_nmt_dispatch(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                              const tern_weight *w, const float *bias, float *y,
                                              size_t ldy) {
    const int q4 = w->encoding == TERN_ENC_Q4, asym = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const size_t stored = w->cols / 4 * w->sparse_n;
    const size_t gs = w->group_size, ng = stored / gs, ib = stored / 4;
#define TERN_X86_NMT_CASE(Q4, N, ASYM)                                                          \
    if (q4 == (Q4) && w->sparse_n == (N) && asym == (ASYM)) {                                  \
        const tern_x86_nmt_shape s = {(Q4), (N), (ASYM), stored, gs, ng, ib};                  \
        tern_x86_nmt_linear(&s, m, r0, r1, x, w, bias, y, ldy);                                \
        return;                                                                                \
    }
    TERN_X86_NMT_CASE(0, 2, 0)
    TERN_X86_NMT_CASE(1, 2, 0)
    TERN_X86_NMT_CASE(0, 1, 0)
    TERN_X86_NMT_CASE(1, 1, 0)
    TERN_X86_NMT_CASE(0, 2, 1)
    TERN_X86_NMT_CASE(1, 2, 1)
    TERN_X86_NMT_CASE(0, 1, 1)
    TERN_X86_NMT_CASE(1, 1, 1)
#undef TERN_X86_NMT_CASE
}
