/* avx2 N:M sparse integer linear layers (linear_nm_tmpl.h): the expanded
 * rows go through linear_qa_avx2.c's maddubs dot (|w| against x with w's
 * sign), with the same saturation-free bounds. */
#define TERN_X86_ISA avx2

#include <immintrin.h>

static inline __attribute__((always_inline)) __m256i tern_x86_nm_dot_u_avx2(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

#define TERN_X86_QA_PREP_Q8(w, asym) (w)
#define TERN_X86_QA_DOT_Q8(w, x) tern_x86_nm_dot_u_avx2(_mm256_abs_epi8(w), _mm256_sign_epi8((x), (w)))
#define TERN_X86_QA_Q8_OFFSET(asym, z) 0
/* signed w x signed x, dword d = bytes 4d .. 4d+3 (|x| <= 127: no saturation) */
#define TERN_X86_NM_DOT_SS(w, x) TERN_X86_QA_DOT_Q8((w), (x))

#include "kernels/x86/linear_nm_tmpl.h"
