/* Kernel dispatch table. tern_kernels_init fills it with the scalar `ref`
 * kernels, then each ISA tier the CPU has (and the mask allows) overwrites the
 * entries it implements, lowest tier first (dav1d's scheme). The table is
 * built once per model and is read-only afterwards.
 *
 * Conventions: a kernel computes a sub-range given by its caller (rows of a
 * linear layer, heads of attention) so the runtime can split work across
 * threads; the result of an element never depends on how the range was split,
 * so logits are identical for any thread count. Arrays may be read up to
 * TERN_KERNEL_OVERREAD bytes past their end, never written past it. */
#ifndef TERN_KERNELS_KERNELS_H
#define TERN_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "formats/encoding.h"
#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_KERNEL_OVERREAD 0

/* A 2-D weight W[rows][cols] (rows = output features, cols = input features)
 * as it lies in the mapped file. */
typedef struct tern_weight {
    tern_encoding encoding;
    tern_layout layout;
    size_t rows;
    size_t cols;
    const void *values;
    const void *scales; /* Q8/Q4 */
    const void *zeros;  /* asymmetric Q8/Q4 */
    const void *index;  /* N:M sparse */
    uint32_t group_size;
    uint32_t tile_rows;
    uint8_t sparse_n, sparse_m;
    uint16_t flags;
} tern_weight;

/* y[i*ldy + r] = sum_c x[i*ldx + c] * W[r][c] (+ bias[r])
 * for tokens i in [0, m) and output rows r in [r0, r1). bias may be NULL. */
typedef void (*tern_linear_fn)(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,
                               const tern_weight *w, const float *bias, float *y, size_t ldy);

/* Rotary position embedding, in place, of n_heads vectors of head_dim floats
 * laid out back to back; cos/sin hold head_dim/2 values for this position.
 * rotate-half (HF): pairs (x[j], x[j + head_dim/2]);
 * interleaved (GGUF, llama2.c, Meta): pairs (x[2j], x[2j + 1]). */
typedef void (*tern_rope_fn)(size_t n_heads, size_t head_dim, float *x, const float *cos,
                             const float *sin);

/* One query position attending over keys [0, n_kv), heads [h0, h1).
 * Query head h reads KV head h / (n_head / n_head_kv) (GQA, MQA). K and V hold
 * head j's position p at (k|v) + j * kv_head_stride + p * head_dim. Softmax in
 * float with the running maximum (online softmax). */
typedef struct tern_attention_args {
    size_t head_dim;
    size_t n_head;
    size_t n_head_kv;
    size_t n_kv;
    size_t kv_head_stride;
    float scale;
    const float *q; /* [n_head][head_dim] */
    const float *k;
    const float *v;
    float *out;     /* [n_head][head_dim] */
} tern_attention_args;

typedef void (*tern_attention_fn)(const tern_attention_args *args, size_t h0, size_t h1);

typedef struct tern_kernels {
    tern_isa isa; /* the highest tier that filled any entry */

    /* Linear layers by weight encoding; NULL where the encoding has no kernel. */
    tern_linear_fn linear[TERN_ENC_COUNT_];

    /* y = x / sqrt(mean(x^2) + eps) * w */
    void (*rmsnorm)(size_t n, const float *x, const float *w, float eps, float *y);
    /* y = (x - mean) / sqrt(var + eps) * w + b   (b may be NULL) */
    void (*layernorm)(size_t n, const float *x, const float *w, const float *b, float eps, float *y);
    tern_rope_fn rope_half;
    tern_rope_fn rope_interleaved;
    /* x = softmax(x), in place, with the maximum subtracted */
    void (*softmax)(size_t n, float *x);
    /* y = silu(gate) * up   (SwiGLU); y may alias gate */
    void (*swiglu)(size_t n, const float *gate, const float *up, float *y);
    /* y = x * sigmoid(x) */
    void (*silu)(size_t n, const float *x, float *y);
    /* exact GELU: y = 0.5 x (1 + erf(x / sqrt 2)) */
    void (*gelu)(size_t n, const float *x, float *y);
    /* y = a + b; y may alias a or b */
    void (*add)(size_t n, const float *a, const float *b, float *y);
    tern_attention_fn attention;
    /* Mamba (runtime/mamba.c): */
    /* RWKV (runtime/rwkv.c): */
    /* ViT (runtime/vit.c) uses layernorm, gelu, attention and linear. */
} tern_kernels;

/* Fills k with every tier allowed by isa_mask that this CPU has. */
void tern_kernels_init(tern_kernels *k, uint64_t isa_mask);

/* Per-tier initialisers, each overwriting what it implements. */
void tern_kernels_init_ref(tern_kernels *k);

#ifdef __cplusplus
}
#endif
#endif
