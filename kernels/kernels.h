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
 * head j's position p at (k|v) + j * kv_head_stride + p * head_dim elements of
 * kv_type (tern_kv_type, 0: float):
 *   TERN_KV_F32  float;
 *   TERN_KV_F16  IEEE half (uint16_t), read as the exact float it holds;
 *   TERN_KV_Q8   int8 q with one float scale per KV head and position,
 *                value = (k|v)_scale[j * kv_scale_stride + p] * q.
 * Softmax in float with the running maximum (online softmax). */
typedef struct tern_attention_args {
    size_t head_dim;
    size_t n_head;
    size_t n_head_kv;
    size_t n_kv;
    size_t kv_head_stride;
    float scale;
    const float *q; /* [n_head][head_dim] */
    const void *k;  /* kv_type elements */
    const void *v;
    float *out;     /* [n_head][head_dim] */
    uint32_t kv_type;
    const float *k_scale; /* TERN_KV_Q8 only */
    const float *v_scale;
    size_t kv_scale_stride;
} tern_attention_args;

typedef void (*tern_attention_fn)(const tern_attention_args *args, size_t h0, size_t h1);

/* Mamba causal depthwise conv1d + SiLU over n tokens, channels [c0, c1):
 *   win = state[c][0 .. d_conv-1) followed by x[0][c], x[1][c], ...
 *   y[t][c] = silu(bias[c] + sum_k w[c][k] * win[t + k])
 * then state[c] = the last d_conv - 1 entries of win (carried to the next
 * chunk). x[t][c] is at x[t * ldx + c]; y must not overlap x or state. */
typedef struct tern_ssm_conv_args {
    size_t n_tokens;
    size_t d_conv;
    const float *x;
    size_t ldx;
    const float *w;    /* [d_inner][d_conv] */
    const float *bias; /* [d_inner], or NULL */
    float *state;      /* [d_inner][d_conv - 1], oldest first */
    float *y;
    size_t ldy;
} tern_ssm_conv_args;

typedef void (*tern_ssm_conv_fn)(const tern_ssm_conv_args *args, size_t c0, size_t c1);

/* Mamba selective scan over n tokens, channels [c0, c1), in token order:
 *   dt = softplus(dt_raw[t][c])          (torch's: x > 20 ? x : log1p(exp(x)))
 *   h[c][s] = exp(dt * A[c][s]) * h[c][s] + dt * B[t][s] * x[t][c]
 *   y[t][c] = (sum_s h[c][s] * C[t][s] + D[c] * x[t][c]) * silu(z[t][c])
 * Row t of each input is at ptr + t * its stride. y must not overlap inputs. */
typedef struct tern_ssm_scan_args {
    size_t n_tokens;
    size_t d_state;
    const float *x;  /* conv output u */
    size_t ldx;
    const float *dt; /* dt_proj output including its bias, before softplus */
    size_t ld_dt;
    const float *B;  /* d_state values per token */
    const float *C;
    size_t ld_bc;    /* stride of B and C */
    const float *z;  /* gate */
    size_t ldz;
    const float *A;  /* [d_inner][d_state], A = -exp(A_log) */
    const float *D;  /* [d_inner] */
    float *h;        /* [d_inner][d_state], carried state, updated */
    float *y;
    size_t ldy;
} tern_ssm_scan_args;

typedef void (*tern_ssm_scan_fn)(const tern_ssm_scan_args *args, size_t c0, size_t c1);

/* RWKV token shift, rows of d floats back to back:
 *   y[t][c] = x[t][c] * mix[c] + x[t-1][c] * (1 - mix[c]),  x[-1] = prev[c]
 * (prev: the last row of the previous chunk, the session's shift state).
 * y must not overlap x or prev. */
typedef void (*tern_rwkv_shift_fn)(size_t n, size_t d, const float *x, const float *prev,
                                   const float *mix, float *y);

/* RWKV-4 WKV recurrence over n tokens, channels [c0, c1), in token order, in
 * the running-maximum form (state: aa and bb, numerator and denominator
 * scaled by exp(-pp); a fresh state is aa = bb = 0, pp = -1e38):
 *   q = max(pp, u + k);  e1 = exp(pp - q);  e2 = exp(u + k - q)
 *   y[t][c] = (e1 * aa + e2 * v) / (e1 * bb + e2)   (* sigmoid(r[t][c]) when r)
 *   q = max(pp + w, k);  e1 = exp(pp + w - q);  e2 = exp(k - q)
 *   aa = e1 * aa + e2 * v;  bb = e1 * bb + e2;  pp = q
 * with k, v, r at row t of their arrays, w = -exp(time_decay) and
 * u = time_first. y must not overlap the inputs.
 * RWKV-5/6 keep a matrix per head ([n_head][head_size][head_size], decay in
 * (0, 1), no running maximum) and will be a separate entry `wkv5` with its
 * own args over heads [h0, h1); RWKV-7 likewise `wkv7`. */
typedef struct tern_wkv4_args {
    size_t n_tokens;
    const float *k; /* key projection */
    size_t ldk;
    const float *v; /* value projection */
    size_t ldv;
    const float *r; /* receptance before the sigmoid, or NULL: no gate */
    size_t ldr;
    const float *w; /* [d_att] */
    const float *u; /* [d_att] */
    float *aa, *bb, *pp; /* [d_att] each, carried state, updated */
    float *y;
    size_t ldy;
} tern_wkv4_args;

typedef void (*tern_wkv4_fn)(const tern_wkv4_args *args, size_t c0, size_t c1);

/* Activations quantised for integer dot products: each row of k floats
 * becomes k int8 values in blocks of TERN_QA_BLOCK with one float scale per
 * block (x ~= d * q, q in [-127, 127]) and the block's sum of q (for weights
 * with zero points). Requires k % TERN_QA_BLOCK == 0. */
#define TERN_QA_BLOCK 32
typedef struct tern_qrows {
    size_t m, k;
    const int8_t *q;   /* [m][k] */
    const float *d;    /* [m][k / 32] */
    const int32_t *s;  /* [m][k / 32] */
} tern_qrows;

/* As tern_linear_fn over quantised activations. Integer kernels accumulate
 * each (row, block) dot product exactly in int32 and then combine blocks in
 * order with one rounding per step, y = fmaf((float)dot, dw * dx, y), so
 * every tier gives bit-identical results. The exact definition, zero points
 * and group sizes that are not multiples of 32 included, is the ref's
 * (kernels/ref/linear_qa_ref.c); cols % TERN_QA_BLOCK == 0. */
typedef void (*tern_linear_qa_fn)(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                  const tern_weight *w, const float *bias, float *y, size_t ldy);

typedef struct tern_kernels {
    tern_isa isa; /* the highest tier that filled any entry */

    /* Linear layers by weight encoding; NULL where the encoding has no kernel. */
    tern_linear_fn linear[TERN_ENC_COUNT_];
    /* Integer paths (Q8/Q4 weights x int8 activations); NULL: use linear[]. */
    tern_linear_qa_fn linear_qa[TERN_ENC_COUNT_];
    /* Quantises rows [0, m) of x (ldx floats apart) into out (32-blocks). */
    void (*quantize_rows)(size_t m, size_t k, const float *x, size_t ldx, int8_t *q, float *d,
                          int32_t *s);

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
    tern_ssm_conv_fn ssm_conv; /* conv1d + SiLU, updates the conv state */
    tern_ssm_scan_fn ssm_scan; /* selective scan, updates h */
    /* RWKV (runtime/rwkv.c): */
    tern_rwkv_shift_fn rwkv_shift; /* token-shift mix */
    tern_wkv4_fn wkv4;             /* RWKV-4 WKV, updates (aa, bb, pp) */
    /* ViT (runtime/vit.c) uses layernorm, gelu, attention and linear. */

    /* N:M sparse weights (sparse_m != 0, docs/format.md 7.3), by value
     * encoding, with the contracts of linear and linear_qa; the exact
     * arithmetic is kernels/ref/linear_nm_ref.c's. NULL: no kernel (the
     * loader refuses the tensor). linear_qa_nm needs cols % 32 == 0. Both
     * take ROW_MAJOR and, for 2:4 / 1:4 Q8/Q4, ROW_INTERLEAVED tiles
     * (docs/format.md 7.4; docs/sparsity.md). */
    tern_linear_fn linear_nm[TERN_ENC_COUNT_];
    tern_linear_qa_fn linear_qa_nm[TERN_ENC_COUNT_];
} tern_kernels;

/* Fills k with every tier allowed by isa_mask that this CPU has. */
void tern_kernels_init(tern_kernels *k, uint64_t isa_mask);

/* Per-tier initialisers, each overwriting what it implements. */
void tern_kernels_init_ref(tern_kernels *k);

#ifdef __cplusplus
}
#endif
#endif
