/* The avx2 tier's table entries. */
#include "kernels/x86/x86.h"

void tern_kernels_init_avx2(tern_kernels *k) {
    k->linear[TERN_ENC_F32] = tern_f32_f32w_linear_ukernel__avx2;
    k->linear[TERN_ENC_F16] = tern_f32_f16w_linear_ukernel__avx2;
    k->linear[TERN_ENC_BF16] = tern_f32_bf16w_linear_ukernel__avx2;
    k->linear[TERN_ENC_Q8] = tern_f32_q8w_linear_ukernel__avx2;
    k->linear[TERN_ENC_Q4] = tern_f32_q4w_linear_ukernel__avx2;
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel_8x32__avx2;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel_8x32__avx2;
    k->linear_qa_nm[TERN_ENC_Q8] = tern_qs8_nm_linear_ukernel_8x32__avx2;
    k->linear_qa_nm[TERN_ENC_Q4] = tern_qs8_nm_linear_ukernel_8x32__avx2;
    k->quantize_rows = tern_f32_qs8_quantize_ukernel__avx2;
    k->rmsnorm = tern_f32_rmsnorm_ukernel__avx2;
    k->softmax = tern_f32_softmax_ukernel__avx2;
    k->swiglu = tern_f32_swiglu_ukernel__avx2;
    k->silu = tern_f32_silu_ukernel__avx2;
    k->add = tern_f32_add_ukernel__avx2;
    k->rope_half = tern_f32_rope_half_ukernel__avx2;
    k->rope_interleaved = tern_f32_rope_interleaved_ukernel__avx2;
    k->attention = tern_f32_attention_ukernel__avx2;
    k->layernorm = tern_f32_layernorm_ukernel__avx2;
    k->gelu = tern_f32_gelu_ukernel__avx2;
    k->ssm_conv = tern_f32_ssm_conv_silu_ukernel__avx2;
    k->ssm_scan = tern_f32_ssm_scan_ukernel__avx2;
    k->rwkv_shift = tern_f32_rwkv_shift_ukernel__avx2;
    k->wkv4 = tern_f32_wkv4_ukernel__avx2;
}
