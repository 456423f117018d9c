/* The float vector layer shared by the avx2 and avx512 templates: the file
 * including it defines TERN_X86_VW as 8 (ymm, AVX2 + FMA + F16C) or 16 (zmm,
 * AVX-512 F/BW/VL/DQ) and TERN_X86_ISA (the name suffix). Private to
 * kernels/x86/. */
#ifndef TERN_KERNELS_X86_VEC_H
#define TERN_KERNELS_X86_VEC_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_X86_INLINE static inline __attribute__((always_inline))
#define TERN_X86_CAT_(a, b) a##b
#define TERN_X86_CAT(a, b) TERN_X86_CAT_(a, b)
/* name__isa */
#define TERN_X86_NAME(name) TERN_X86_CAT(name, TERN_X86_CAT(__, TERN_X86_ISA))

#if TERN_X86_VW == 8
typedef __m256 vf;
typedef __m256i vi;
typedef __m256i vmask; /* lane mask for partial loads and stores */
#define VW 8
#define vzero() _mm256_setzero_ps()
#define vset1(a) _mm256_set1_ps(a)
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps((p), (v))
#define vfma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define vfmaddsub(a, b, c) _mm256_fmaddsub_ps((a), (b), (c))
#define vmul(a, b) _mm256_mul_ps((a), (b))
#define vadd(a, b) _mm256_add_ps((a), (b))
#define vsub(a, b) _mm256_sub_ps((a), (b))
#define vdiv(a, b) _mm256_div_ps((a), (b))
#define vmax(a, b) _mm256_max_ps((a), (b))
#define vmin(a, b) _mm256_min_ps((a), (b))
/* 8 F16 / BF16 / int8 / uint8 values to floats */
#define vload_f16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define vload_bf16(p)                                                                          \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                     \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define vload_i8(p)                                                                            \
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p))))
#define vload_u8i(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p)))
#define vi_and(a, b) _mm256_and_si256((a), (b))
#define vi_srli(a, n) _mm256_srli_epi32((a), (n))
#define vi_sub(a, b) _mm256_sub_epi32((a), (b))
#define vi_set1(a) _mm256_set1_epi32(a)
#define vi_to_f(a) _mm256_cvtepi32_ps(a)
#define vi_or(a, b) _mm256_or_si256((a), (b))

TERN_X86_INLINE vmask vmask_first(size_t n) {
    /* lanes [0, n) set, n < 8 */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}
#define vload_m(p, m) _mm256_maskload_ps((p), (m))
/* all-ones bits in the mask's lanes, zero elsewhere */
#define vload_m_ones(m) _mm256_castsi256_ps(m)
#define vstore_m(p, m, v) _mm256_maskstore_ps((p), (m), (v))

/* n < 8 16-bit values, zeros after them */
TERN_X86_INLINE __m128i tern_x86_load_u16_partial(const void *p, size_t n) {
    uint16_t t[8] = {0};
    __builtin_memcpy(t, p, n * 2);
    return _mm_loadu_si128((const __m128i *)(const void *)t);
}
#define vload_f16_m(p, n) _mm256_cvtph_ps(tern_x86_load_u16_partial((p), (n)))
#define vload_bf16_m(p, n)                                                                     \
    _mm256_castsi256_ps(                                                                       \
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(tern_x86_load_u16_partial((p), (n))), 16))

/* fixed pairwise tree: the same for every call */
TERN_X86_INLINE float vhsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TERN_X86_INLINE float vhmax(vf v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* 2^n for integer-valued float n in [-126, 127] */
TERN_X86_INLINE vf vpow2i(vf n) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
#define vround(a) _mm256_round_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vabs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (a))
#define vor(a, b) _mm256_or_ps((a), (b))
#define vand(a, b) _mm256_and_ps((a), (b))
/* rope_interleaved: swap the floats of each pair, duplicate 4 (8) values */
#define vswap_pairs(a) _mm256_permute_ps((a), 0xb1)
/* a > b ? x : y, lane by lane (false for NaN) */
#define vselect_gt(a, b, x, y) _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (b), _CMP_GT_OQ))
#define vselect_eq(a, b, x, y) _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (b), _CMP_EQ_OQ))
#define vi_from_f_bits(a) _mm256_castps_si256(a)
#define vf_from_i_bits(a) _mm256_castsi256_ps(a)
#define vi_srai(a, n) _mm256_srai_epi32((a), (n))
TERN_X86_INLINE vf vdup_pairs(const float *p) {
    const __m128 c = _mm_loadu_ps(p);
    return _mm256_set_m128(_mm_unpackhi_ps(c, c), _mm_unpacklo_ps(c, c));
}

#elif TERN_X86_VW == 16
typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vmask;
#define VW 16
#define vzero() _mm512_setzero_ps()
#define vset1(a) _mm512_set1_ps(a)
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps((p), (v))
#define vfma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define vfmaddsub(a, b, c) _mm512_fmaddsub_ps((a), (b), (c))
#define vmul(a, b) _mm512_mul_ps((a), (b))
#define vadd(a, b) _mm512_add_ps((a), (b))
#define vsub(a, b) _mm512_sub_ps((a), (b))
#define vdiv(a, b) _mm512_div_ps((a), (b))
#define vmax(a, b) _mm512_max_ps((a), (b))
#define vmin(a, b) _mm512_min_ps((a), (b))
#define vload_f16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define vload_bf16(p)                                                                          \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                     \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define vload_i8(p)                                                                            \
    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))))
#define vload_u8i(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define vi_and(a, b) _mm512_and_si512((a), (b))
#define vi_srli(a, n) _mm512_srli_epi32((a), (n))
#define vi_sub(a, b) _mm512_sub_epi32((a), (b))
#define vi_set1(a) _mm512_set1_epi32(a)
#define vi_to_f(a) _mm512_cvtepi32_ps(a)
#define vi_or(a, b) _mm512_or_si512((a), (b))

TERN_X86_INLINE vmask vmask_first(size_t n) { return (vmask)((1u << n) - 1u); }
#define vload_m(p, m) _mm512_maskz_loadu_ps((m), (p))
#define vload_m_ones(m) _mm512_castsi512_ps(_mm512_maskz_set1_epi32((m), -1))
#define vstore_m(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define vload_f16_m(p, n) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(vmask_first(n), (p)))
#define vload_bf16_m(p, n)                                                                     \
    _mm512_castsi512_ps(                                                                       \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(vmask_first(n), (p))), 16))

TERN_X86_INLINE float vhsum(vf v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TERN_X86_INLINE float vhmax(vf v) { return _mm512_reduce_max_ps(v); }
TERN_X86_INLINE vf vpow2i(vf n) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
}
#define vround(a) _mm512_roundscale_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vabs(a) _mm512_abs_ps(a)
#define vor(a, b) _mm512_or_ps((a), (b))
#define vand(a, b) _mm512_and_ps((a), (b))
#define vswap_pairs(a) _mm512_permute_ps((a), 0xb1)
#define vselect_gt(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_GT_OQ), (y), (x))
#define vselect_eq(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ), (y), (x))
#define vi_from_f_bits(a) _mm512_castps_si512(a)
#define vf_from_i_bits(a) _mm512_castsi512_ps(a)
#define vi_srai(a, n) _mm512_srai_epi32((a), (n))
TERN_X86_INLINE vf vdup_pairs(const float *p) {
    const __m512 c = _mm512_castps256_ps512(_mm256_loadu_ps(p));
    const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm512_permutexvar_ps(idx, c);
}
#else
#error "define TERN_X86_VW as 8 or 16"
#endif

/* e^x, Cephes' single-precision polynomial (< 2 ulp), with the 2^n scaling
 * split in two factors so results underflow to 0 and overflow to inf like
 * expf instead of wrapping. NaN inputs are not supported. */
TERN_X86_INLINE vf vexp(vf x) {
    x = vmin(vmax(x, vset1(-104.0f)), vset1(89.0f));
    const vf n = vround(vmul(x, vset1(1.44269504088896341f)));
    vf r = vfma(n, vset1(-0.693359375f), x);
    r = vfma(n, vset1(2.12194440e-4f), r);
    vf p = vset1(1.9875691500e-4f);
    p = vfma(p, r, vset1(1.3981999507e-3f));
    p = vfma(p, r, vset1(8.3334519073e-3f));
    p = vfma(p, r, vset1(4.1665795894e-2f));
    p = vfma(p, r, vset1(1.6666665459e-1f));
    p = vfma(p, r, vset1(5.0000001201e-1f));
    p = vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
    /* n in [-150, 129]: two factors in [-75, 65] */
    const vf n1 = vround(vmul(n, vset1(0.5f))); /* ties to even: |n1| <= 75 */
    const vf n2 = vsub(n, n1);
    return vmul(vmul(p, vpow2i(n1)), vpow2i(n2));
}

/* log(x) for finite x > 0 (normal), Cephes' single-precision logf
 * polynomial (< 2 ulp): x = 2^e m with m in [sqrt(1/2), sqrt(2)). */
TERN_X86_INLINE vf vlog(vf x) {
    const vi bits = vi_from_f_bits(x);
    vi e = vi_sub(vi_srli(bits, 23), vi_set1(126));
    /* m in [0.5, 1) */
    vf m = vf_from_i_bits(vi_or(vi_and(bits, vi_set1(0x007fffff)), vi_set1(0x3f000000)));
    vf ef = vi_to_f(e);
    const vf small = vset1(0.707106781186547524f);
    /* m < sqrt(1/2): e -= 1, m = 2m - 1; else m = m - 1 */
    ef = vselect_gt(small, m, vsub(ef, vset1(1.0f)), ef);
    m = vselect_gt(small, m, vsub(vadd(m, m), vset1(1.0f)), vsub(m, vset1(1.0f)));
    const vf z = vmul(m, m);
    vf p = vset1(7.0376836292e-2f);
    p = vfma(p, m, vset1(-1.1514610310e-1f));
    p = vfma(p, m, vset1(1.1676998740e-1f));
    p = vfma(p, m, vset1(-1.2420140846e-1f));
    p = vfma(p, m, vset1(1.4249322787e-1f));
    p = vfma(p, m, vset1(-1.6668057665e-1f));
    p = vfma(p, m, vset1(2.0000714765e-1f));
    p = vfma(p, m, vset1(-2.4999993993e-1f));
    p = vfma(p, m, vset1(3.3333331174e-1f));
    vf y = vmul(vmul(p, m), z);
    y = vfma(ef, vset1(-2.12194440e-4f), y);
    y = vfma(z, vset1(-0.5f), y);
    return vfma(ef, vset1(0.693359375f), vadd(m, y));
}

#endif
