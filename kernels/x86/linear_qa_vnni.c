/* avx512vnni integer linear layers: vpdpbusd (u8 x s8, four products summed
 * into int32, no saturation) on ymm. Q4 values are already unsigned; Q8
 * symmetric bytes become w + 128 (an xor) and the 128 returns through the
 * offset, 128 * sum(q); asymmetric Q8 bytes are unsigned as stored. */
#define TERN_X86_ISA avx512vnni

#include <immintrin.h>

static inline __attribute__((always_inline)) __m256i tern_x86_qa_dot_u_vnni(__m256i u,
                                                                           __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
}

/* w + 128 for symmetric bytes, so that every Q8 byte is an unsigned value */
#define TERN_X86_QA_PREP_Q8(w, asym) ((asym) ? (w) : _mm256_xor_si256((w), _mm256_set1_epi8((char)0x80)))
#define TERN_X86_QA_DOT_U(u, x) tern_x86_qa_dot_u_vnni((u), (x))
#define TERN_X86_QA_DOT_Q8(w, x) tern_x86_qa_dot_u_vnni((w), (x))
#define TERN_X86_QA_Q8_OFFSET(asym, z) ((asym) ? (z) : 128)

#define TERN_X86_QT_ACC_U2(acc, u1, x1, u2, x2) \
    _mm256_dpbusd_epi32(_mm256_dpbusd_epi32((acc), (u1), (x1)), (u2), (x2))
#define TERN_X86_QT_ACC_Q8(acc, w, x) _mm256_dpbusd_epi32((acc), (w), (x))
#define TERN_X86_QT_ZMM 1

#include "kernels/x86/linear_qa_tmpl.h"
