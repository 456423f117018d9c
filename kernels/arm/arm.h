/* AArch64 tiers: neon (ARMv8.0 AdvSIMD, Cortex-A53/A72), dotprod (ARMv8.2
 * sdot) and i8mm (ARMv8.6 smmla). Each tier is its own static library built
 * with its own -march flags (kernels/arm/meson.build); its init function
 * overwrites the table entries it implements and may call the kernels of the
 * tiers below it.
 *
 * Contracts are those of kernels.h. An output element's arithmetic never
 * depends on the [r0, r1) or [h0, h1) split nor on m: every register tile
 * computes each element with the same sequence of operations (one float32x4
 * accumulator per element over 4-column steps in column order, vaddvq, a
 * scalar fmaf tail, then the bias). The integer paths (linear_qa,
 * quantize_rows) are bit-identical to kernels/ref/linear_qa_ref.c. */
#ifndef TERN_KERNELS_ARM_ARM_H
#define TERN_KERNELS_ARM_ARM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void tern_kernels_init_neon(tern_kernels *k);
void tern_kernels_init_dotprod(tern_kernels *k);
void tern_kernels_init_i8mm(tern_kernels *k);

/* ---- neon: float activations (linear_neon.c). Tiles 1x8 (m == 1) and
 * 4x4 (tokens x rows). Q8/Q4 symmetric, with zero points or with HAS_MIN;
 * Q8 needs group_size % 4 == 0, Q4 group_size % 8 == 0, other group sizes
 * (and flags, layouts or sparsity they do not know) run the ref. */
#define TERN_ARM_LINEAR_FN(name)                                                                   \
    void name(size_t m, size_t r0, size_t r1, const float *x, size_t ldx, const tern_weight *w,    \
              const float *bias, float *y, size_t ldy)
TERN_ARM_LINEAR_FN(tern_f32_f32w_linear_ukernel_4x4__neon);
TERN_ARM_LINEAR_FN(tern_f32_f16w_linear_ukernel_4x4__neon);
TERN_ARM_LINEAR_FN(tern_f32_bf16w_linear_ukernel_4x4__neon);
TERN_ARM_LINEAR_FN(tern_f32_q8w_linear_ukernel_4x4__neon);
TERN_ARM_LINEAR_FN(tern_f32_q4w_linear_ukernel_4x4__neon);

/* ---- neon: row kernels (elementwise_neon.c) and attention (attention_neon.c). */
void tern_f32_rmsnorm_ukernel__neon(size_t n, const float *x, const float *w, float eps, float *y);
void tern_f32_layernorm_ukernel__neon(size_t n, const float *x, const float *w, const float *b,
                                      float eps, float *y);
void tern_f32_softmax_ukernel__neon(size_t n, float *x);
void tern_f32_swiglu_ukernel__neon(size_t n, const float *gate, const float *up, float *y);
void tern_f32_silu_ukernel__neon(size_t n, const float *x, float *y);
void tern_f32_add_ukernel__neon(size_t n, const float *a, const float *b, float *y);
void tern_f32_rope_half_ukernel__neon(size_t n_heads, size_t head_dim, float *x, const float *cos,
                                      const float *sin);
void tern_f32_rope_interleaved_ukernel__neon(size_t n_heads, size_t head_dim, float *x,
                                             const float *cos, const float *sin);
void tern_f32_attention_ukernel__neon(const tern_attention_args *args, size_t h0, size_t h1);

/* ---- neon: GELU, Mamba and RWKV (seq_neon.c: kernels/simd_tmpl.h). */
void tern_f32_gelu_ukernel__neon(size_t n, const float *x, float *y);
void tern_f32_ssm_conv_silu_ukernel__neon(const tern_ssm_conv_args *a, size_t c0, size_t c1);
void tern_f32_ssm_scan_ukernel__neon(const tern_ssm_scan_args *a, size_t c0, size_t c1);
void tern_f32_rwkv_shift_ukernel__neon(size_t n, size_t d, const float *x, const float *prev,
                                       const float *mix, float *y);
void tern_f32_wkv4_ukernel__neon(const tern_wkv4_args *a, size_t c0, size_t c1);

/* ---- Integer paths (linear_qa_*.c): 2 tokens x 4 rows x one 32-block per
 * step (neon: smull/sadalp, dotprod: sdot, i8mm: smmla; i8mm runs dotprod
 * when m == 1), int32 block dots, then the ref's fmaf chain in block order.
 * group_size % 32 != 0 runs the ref kernel. */
#define TERN_ARM_QA_FN(name)                                                                       \
    void name(size_t m, size_t r0, size_t r1, const tern_qrows *x, const tern_weight *w,           \
              const float *bias, float *y, size_t ldy)
void tern_f32_qs8_quantize_ukernel__neon(size_t m, size_t k, const float *x, size_t ldx, int8_t *q,
                                         float *d, int32_t *s);
TERN_ARM_QA_FN(tern_qs8_q8w_linear_ukernel_2x4__neon);
TERN_ARM_QA_FN(tern_qs8_q4w_linear_ukernel_2x4__neon);
TERN_ARM_QA_FN(tern_qs8_q8w_linear_ukernel_2x4__dotprod);
TERN_ARM_QA_FN(tern_qs8_q4w_linear_ukernel_2x4__dotprod);
TERN_ARM_QA_FN(tern_qs8_q8w_linear_ukernel_2x4__i8mm);
TERN_ARM_QA_FN(tern_qs8_q4w_linear_ukernel_2x4__i8mm);
/* N:M sparse integer linear layer (linear_nm_dotprod.c, AArch64 only);
 * 2:4 and 1:4 Q8/Q4 in 16-row tiles run linear_nmt_tmpl.h at both tiers
 * (neon: only those, the rest runs the ref). */
TERN_ARM_QA_FN(tern_qs8_nm_linear_ukernel_4x32__dotprod);
TERN_ARM_QA_FN(tern_qs8_nmt_linear_ukernel_16x4__neon);

#ifdef __cplusplus
}
#endif
#endif
