/* avx512vnni N:M sparse integer linear layers (linear_nm_tmpl.h): vpdpbusd
 * on the expanded rows biased to w + 128 (pruned lanes included), the bias
 * removed through 128 * the block's sum of x, as linear_qa_vnni.c does. */
#define TERN_X86_ISA avx512vnni

#include <immintrin.h>

#define TERN_X86_QA_PREP_Q8(w, asym) _mm256_xor_si256((w), _mm256_set1_epi8((char)0x80))
#define TERN_X86_QA_DOT_Q8(w, x) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (w), (x))
#define TERN_X86_QA_Q8_OFFSET(asym, z) 128
/* signed w x signed x: (x + 128) w - 128 w, dword d = bytes 4d .. 4d+3 */
#define TERN_X86_NM_DOT_SS(w, x)                                                               \
    _mm256_sub_epi32(                                                                          \
        _mm256_dpbusd_epi32(_mm256_setzero_si256(),                                            \
                            _mm256_xor_si256((x), _mm256_set1_epi8((char)0x80)), (w)),         \
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), (w)))

#define TERN_X86_NMT_ZMM 1

#include "kernels/x86/linear_nm_tmpl.h"
