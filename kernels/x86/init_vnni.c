/* The avx512vnni tier's table entries: the integer linear layers. */
#include "kernels/x86/x86.h"

void tern_kernels_init_avx512vnni(tern_kernels *k) {
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel_8x32__avx512vnni;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel_8x32__avx512vnni;
    k->linear_qa_nm[TERN_ENC_Q8] = tern_qs8_nm_linear_ukernel_8x32__avx512vnni;
    k->linear_qa_nm[TERN_ENC_Q4] = tern_qs8_nm_linear_ukernel_8x32__avx512vnni;
}
