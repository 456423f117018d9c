/* x86 tiers: avx2 (AVX2 + FMA + F16C), avx512 (F/BW/VL/DQ) and avx512vnni.
 * Each tier is its own static library built with its own -m flags; its init
 * function overwrites the table entries the tier implements. The kernels of a
 * tier follow the contracts of kernels.h: an output element's arithmetic never
 * depends on the [r0, r1) or [h0, h1) split (row tails run the same per-row
 * code as full tiles), and the integer paths (linear_qa, quantize_rows) are
 * bit-identical to the ref tier (kernels/ref/linear_qa_ref.c). */
#ifndef TERN_KERNELS_X86_X86_H
#define TERN_KERNELS_X86_X86_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void tern_kernels_init_avx2(tern_kernels *k);
void tern_kernels_init_avx512(tern_kernels *k);
void tern_kernels_init_avx512vnni(tern_kernels *k);

/* Float-activation linear layers. F32/F16/BF16 any shape; Q8/Q4 with
 * group_size % 32 == 0 (other group sizes run the ref kernel). */
#define TERN_X86_DECLARE_LINEAR(isa)                                                           \
    void tern_f32_f32w_linear_ukernel__##isa(size_t m, size_t r0, size_t r1, const float *x,    \
                                             size_t ldx, const tern_weight *w,                  \
                                             const float *bias, float *y, size_t ldy);          \
    void tern_f32_f16w_linear_ukernel__##isa(size_t m, size_t r0, size_t r1, const float *x,    \
                                             size_t ldx, const tern_weight *w,                  \
                                             const float *bias, float *y, size_t ldy);          \
    void tern_f32_bf16w_linear_ukernel__##isa(size_t m, size_t r0, size_t r1, const float *x,   \
                                              size_t ldx, const tern_weight *w,                 \
                                              const float *bias, float *y, size_t ldy);         \
    void tern_f32_q8w_linear_ukernel__##isa(size_t m, size_t r0, size_t r1, const float *x,     \
                                            size_t ldx, const tern_weight *w,                   \
                                            const float *bias, float *y, size_t ldy);           \
    void tern_f32_q4w_linear_ukernel__##isa(size_t m, size_t r0, size_t r1, const float *x,     \
                                            size_t ldx, const tern_weight *w,                   \
                                            const float *bias, float *y, size_t ldy);

/* Row kernels and attention (float, tolerance-tested). */
#define TERN_X86_DECLARE_ROWS(isa)                                                             \
    void tern_f32_rmsnorm_ukernel__##isa(size_t n, const float *x, const float *w, float eps,   \
                                         float *y);                                            \
    void tern_f32_softmax_ukernel__##isa(size_t n, float *x);                                  \
    void tern_f32_swiglu_ukernel__##isa(size_t n, const float *gate, const float *up,          \
                                        float *y);                                             \
    void tern_f32_silu_ukernel__##isa(size_t n, const float *x, float *y);                     \
    void tern_f32_add_ukernel__##isa(size_t n, const float *a, const float *b, float *y);      \
    void tern_f32_rope_half_ukernel__##isa(size_t n_heads, size_t head_dim, float *x,          \
                                           const float *cos, const float *sin);                \
    void tern_f32_rope_interleaved_ukernel__##isa(size_t n_heads, size_t head_dim, float *x,   \
                                                  const float *cos, const float *sin);         \
    void tern_f32_attention_ukernel__##isa(const tern_attention_args *args, size_t h0,         \
                                           size_t h1);

/* Integer paths: 8 rows x one 32-block per step, int32 block dots reduced
 * across rows, then the ref's fmaf chain in block order. */
#define TERN_X86_DECLARE_QA(isa)                                                               \
    void tern_f32_qs8_quantize_ukernel__##isa(size_t m, size_t k, const float *x, size_t ldx,  \
                                              int8_t *q, float *d, int32_t *s);                \
    void tern_qs8_q8w_linear_ukernel_8x32__##isa(size_t m, size_t r0, size_t r1,               \
                                                 const tern_qrows *x, const tern_weight *w,    \
                                                 const float *bias, float *y, size_t ldy);     \
    void tern_qs8_q4w_linear_ukernel_8x32__##isa(size_t m, size_t r0, size_t r1,               \
                                                 const tern_qrows *x, const tern_weight *w,    \
                                                 const float *bias, float *y, size_t ldy);

/* GELU, layernorm, Mamba and RWKV (kernels/simd_tmpl.h, rows_tmpl.h). */
#define TERN_X86_DECLARE_SEQ(isa)                                                              \
    void tern_f32_layernorm_ukernel__##isa(size_t n, const float *x, const float *w,           \
                                           const float *b, float eps, float *y);               \
    void tern_f32_gelu_ukernel__##isa(size_t n, const float *x, float *y);                     \
    void tern_f32_ssm_conv_silu_ukernel__##isa(const tern_ssm_conv_args *a, size_t c0,         \
                                               size_t c1);                                     \
    void tern_f32_ssm_scan_ukernel__##isa(const tern_ssm_scan_args *a, size_t c0, size_t c1);  \
    void tern_f32_rwkv_shift_ukernel__##isa(size_t n, size_t d, const float *x,                \
                                            const float *prev, const float *mix, float *y);    \
    void tern_f32_wkv4_ukernel__##isa(const tern_wkv4_args *a, size_t c0, size_t c1);

TERN_X86_DECLARE_SEQ(avx2)
TERN_X86_DECLARE_SEQ(avx512)
TERN_X86_DECLARE_LINEAR(avx2)
TERN_X86_DECLARE_LINEAR(avx512)
TERN_X86_DECLARE_ROWS(avx2)
TERN_X86_DECLARE_ROWS(avx512)
TERN_X86_DECLARE_QA(avx2)
TERN_X86_DECLARE_QA(avx512vnni)

/* N:M sparse integer linear layers (linear_nm_tmpl.h). */
#define TERN_X86_DECLARE_NM(isa)                                                               \
    void tern_qs8_nm_linear_ukernel_8x32__##isa(size_t m, size_t r0, size_t r1,                \
                                                const tern_qrows *x, const tern_weight *w,     \
                                                const float *bias, float *y, size_t ldy);
TERN_X86_DECLARE_NM(avx2)
TERN_X86_DECLARE_NM(avx512vnni)

#ifdef __cplusplus
}
#endif
#endif
