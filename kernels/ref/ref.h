/* The scalar `ref` tier: plain C loops, float arithmetic, no intrinsics. Every
 * SIMD kernel of a later tier is tested against the same double-precision
 * loops these are, and must agree with them within the documented tolerance.
 * Contracts are those of the matching entry of tern_kernels (kernels.h). */
#ifndef TERN_KERNELS_REF_REF_H
#define TERN_KERNELS_REF_REF_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Linear layers, dense row-major weights, float activations and accumulation.
 * The quantised ones expect what the loader checked: group_size divides cols
 * (and is even for Q4), scales hold rows * cols / group_size F16 values and,
 * when flags has TERN_TENSOR_HAS_ZERO_POINT, zeros one byte per group.
 *   Q8: symmetric int8 q, w = scale * q; asymmetric uint8 q, w = scale * (q - zero).
 *   Q4: each group of G values is G/2 bytes; byte j holds value j in its low
 *       nibble and value j + G/2 in its high nibble. Symmetric w = scale * (q - 8),
 *       asymmetric w = scale * (q - zero).
 *   HAS_MIN (either): unsigned q, w = scale * q + min, zeros holding one F16
 *       min per group (GGUF Q4_1 kept exactly). */
void tern_f32_f32w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                       size_t ldx, const tern_weight *w, const float *bias,
                                       float *y, size_t ldy);
void tern_f32_f16w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                       size_t ldx, const tern_weight *w, const float *bias,
                                       float *y, size_t ldy);
void tern_f32_bf16w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                        size_t ldx, const tern_weight *w, const float *bias,
                                        float *y, size_t ldy);
void tern_f32_q8w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                      size_t ldx, const tern_weight *w, const float *bias,
                                      float *y, size_t ldy);
void tern_f32_q4w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                      size_t ldx, const tern_weight *w, const float *bias,
                                      float *y, size_t ldy);

/* Quantised activations (linear_qa_ref.c): the exact arithmetic the integer
 * tiers reproduce bit for bit is defined at the top of that file. linear_qa
 * needs cols % TERN_QA_BLOCK == 0 (x quantised by quantize_rows). */
void tern_f32_qs8_quantize_ukernel__ref(size_t m, size_t k, const float *x, size_t ldx,
                                        int8_t *q, float *d, int32_t *s);
void tern_qs8_q8w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                      const tern_weight *w, const float *bias, float *y,
                                      size_t ldy);
void tern_qs8_q4w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                      const tern_weight *w, const float *bias, float *y,
                                      size_t ldy);

/* N:M sparse linear layers (linear_nm_ref.c, which defines the arithmetic),
 * every value encoding; the qs8 one for symmetric or zero-point Q8/Q4 with
 * cols % 32 == 0. tern_nm_index_row_bytes: INDEX bytes per row. */
void tern_f32_nm_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,
                                     const tern_weight *w, const float *bias, float *y,
                                     size_t ldy);
void tern_qs8_nm_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                     const tern_weight *w, const float *bias, float *y,
                                     size_t ldy);
size_t tern_nm_index_row_bytes(const tern_weight *w);

/* Element-wise and row kernels. y may alias x for every one of them. */
void tern_f32_rmsnorm_ukernel__ref(size_t n, const float *x, const float *w, float eps, float *y);
void tern_f32_layernorm_ukernel__ref(size_t n, const float *x, const float *w, const float *b,
                                     float eps, float *y);
void tern_f32_rope_half_ukernel__ref(size_t n_heads, size_t head_dim, float *x, const float *cos,
                                     const float *sin);
void tern_f32_rope_interleaved_ukernel__ref(size_t n_heads, size_t head_dim, float *x,
                                            const float *cos, const float *sin);
void tern_f32_softmax_ukernel__ref(size_t n, float *x);
void tern_f32_swiglu_ukernel__ref(size_t n, const float *gate, const float *up, float *y);
void tern_f32_silu_ukernel__ref(size_t n, const float *x, float *y);
void tern_f32_gelu_ukernel__ref(size_t n, const float *x, float *y);
void tern_f32_add_ukernel__ref(size_t n, const float *a, const float *b, float *y);

/* Single-query attention; out must not overlap q, k or v (it holds the
 * running weighted sum). n_kv == 0 writes zeros. */
void tern_f32_attention_ukernel__ref(const tern_attention_args *args, size_t h0, size_t h1);

/* Mamba (mamba_ref.c): float state and accumulation, tokens in order. */
void tern_f32_ssm_conv_silu_ukernel__ref(const tern_ssm_conv_args *args, size_t c0, size_t c1);
void tern_f32_ssm_scan_ukernel__ref(const tern_ssm_scan_args *args, size_t c0, size_t c1);

/* RWKV (rwkv_ref.c): float state and arithmetic, tokens in order. */
void tern_f32_rwkv_shift_ukernel__ref(size_t n, size_t d, const float *x, const float *prev,
                                      const float *mix, float *y);
void tern_f32_wkv4_ukernel__ref(const tern_wkv4_args *args, size_t c0, size_t c1);

#ifdef __cplusplus
}
#endif
#endif
