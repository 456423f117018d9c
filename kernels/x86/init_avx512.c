/* The avx512 tier's table entries (the integer paths stay avx2's: without
 * VNNI, 512-bit maddubs gains little over them). */
#include "kernels/x86/x86.h"

void tern_kernels_init_avx512(tern_kernels *k) {
    k->linear[TERN_ENC_F32] = tern_f32_f32w_linear_ukernel__avx512;
    k->linear[TERN_ENC_F16] = tern_f32_f16w_linear_ukernel__avx512;
    k->linear[TERN_ENC_BF16] = tern_f32_bf16w_linear_ukernel__avx512;
    k->linear[TERN_ENC_Q8] = tern_f32_q8w_linear_ukernel__avx512;
    k->linear[TERN_ENC_Q4] = tern_f32_q4w_linear_ukernel__avx512;
    k->rmsnorm = tern_f32_rmsnorm_ukernel__avx512;
    k->softmax = tern_f32_softmax_ukernel__avx512;
    k->swiglu = tern_f32_swiglu_ukernel__avx512;
    k->silu = tern_f32_silu_ukernel__avx512;
    k->add = tern_f32_add_ukernel__avx512;
    k->rope_half = tern_f32_rope_half_ukernel__avx512;
    k->rope_interleaved = tern_f32_rope_interleaved_ukernel__avx512;
    k->attention = tern_f32_attention_ukernel__avx512;
    k->layernorm = tern_f32_layernorm_ukernel__avx512;
    k->gelu = tern_f32_gelu_ukernel__avx512;
    k->ssm_conv = tern_f32_ssm_conv_silu_ukernel__avx512;
    k->ssm_scan = tern_f32_ssm_scan_ukernel__avx512;
    k->rwkv_shift = tern_f32_rwkv_shift_ukernel__avx512;
    k->wkv4 = tern_f32_wkv4_ukernel__avx512;
}
