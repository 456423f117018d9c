/* The neon tier's table entries (ARMv8.0: every AArch64 CPU). */
#include "kernels/arm/arm.h"

void tern_kernels_init_neon(tern_kernels *k) {
    k->linear[TERN_ENC_F32] = tern_f32_f32w_linear_ukernel_4x4__neon;
    k->linear[TERN_ENC_F16] = tern_f32_f16w_linear_ukernel_4x4__neon;
    k->linear[TERN_ENC_BF16] = tern_f32_bf16w_linear_ukernel_4x4__neon;
    k->linear[TERN_ENC_Q8] = tern_f32_q8w_linear_ukernel_4x4__neon;
    k->linear[TERN_ENC_Q4] = tern_f32_q4w_linear_ukernel_4x4__neon;
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel_2x4__neon;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel_2x4__neon;
    k->quantize_rows = tern_f32_qs8_quantize_ukernel__neon;
#if defined(__aarch64__)
    k->linear_qa_nm[TERN_ENC_Q8] = tern_qs8_nmt_linear_ukernel_16x4__neon;
    k->linear_qa_nm[TERN_ENC_Q4] = tern_qs8_nmt_linear_ukernel_16x4__neon;
#endif
    k->rmsnorm = tern_f32_rmsnorm_ukernel__neon;
    k->layernorm = tern_f32_layernorm_ukernel__neon;
    k->rope_half = tern_f32_rope_half_ukernel__neon;
    k->rope_interleaved = tern_f32_rope_interleaved_ukernel__neon;
    k->softmax = tern_f32_softmax_ukernel__neon;
    k->swiglu = tern_f32_swiglu_ukernel__neon;
    k->silu = tern_f32_silu_ukernel__neon;
    k->add = tern_f32_add_ukernel__neon;
    k->attention = tern_f32_attention_ukernel__neon;
    k->gelu = tern_f32_gelu_ukernel__neon;
    k->ssm_conv = tern_f32_ssm_conv_silu_ukernel__neon;
    k->ssm_scan = tern_f32_ssm_scan_ukernel__neon;
    k->rwkv_shift = tern_f32_rwkv_shift_ukernel__neon;
    k->wkv4 = tern_f32_wkv4_ukernel__neon;
}
