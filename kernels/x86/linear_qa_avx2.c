/* avx2 integer linear layers: maddubs (u8 x s8 -> saturating s16 pairs) then
 * madd with ones. Saturation never happens: Q4 values are at most 15, and Q8
 * uses |w| (at most 128) against x with w's sign (|x| <= 127): pairs stay
 * within 2 * 128 * 127 = 32512. Asymmetric Q8 bytes are first shifted to
 * w - 128 (an xor), and the shift returns through the offset z - 128. */
#define TERN_X86_ISA avx2

#include <immintrin.h>

static inline __attribute__((always_inline)) __m256i tern_x86_qa_dot_u_avx2(__m256i u,
                                                                           __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

/* w - 128 for asymmetric bytes, so that every Q8 byte is a signed value */
#define TERN_X86_QA_PREP_Q8(w, asym) ((asym) ? _mm256_xor_si256((w), _mm256_set1_epi8((char)0x80)) : (w))
#define TERN_X86_QA_DOT_U(u, x) tern_x86_qa_dot_u_avx2((u), (x))
#define TERN_X86_QA_DOT_Q8(w, x) tern_x86_qa_dot_u_avx2(_mm256_abs_epi8(w), _mm256_sign_epi8((x), (w)))
#define TERN_X86_QA_Q8_OFFSET(asym, z) ((asym) ? (z)-128 : 0)

#include "kernels/x86/linear_qa_tmpl.h"
