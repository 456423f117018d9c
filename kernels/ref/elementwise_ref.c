/* Scalar normalisations, activations and rotary embeddings. Each reads every
 * input element before writing the matching output element, so y may alias x. */
#include <math.h>

#include "kernels/ref/ref.h"

void tern_f32_rmsnorm_ukernel__ref(size_t n, const float *x, const float *w, float eps, float *y) {
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

void tern_f32_layernorm_ukernel__ref(size_t n, const float *x, const float *w, const float *b,
                                     float eps, float *y) {
    /* two passes: the variance of the centred values does not cancel */
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += x[i];
    const float mean = sum / (float)n;
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float d = x[i] - mean;
        ss += d * d;
    }
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) {
        const float v = (x[i] - mean) * inv * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

void tern_f32_rope_half_ukernel__ref(size_t n_heads, size_t head_dim, float *x, const float *cos,
                                     const float *sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        for (size_t j = 0; j < half; j++) {
            const float x0 = xh[j], x1 = xh[j + half];
            xh[j] = x0 * cos[j] - x1 * sin[j];
            xh[j + half] = x0 * sin[j] + x1 * cos[j];
        }
    }
}

void tern_f32_rope_interleaved_ukernel__ref(size_t n_heads, size_t head_dim, float *x,
                                            const float *cos, const float *sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        for (size_t j = 0; j < half; j++) {
            const float x0 = xh[2 * j], x1 = xh[2 * j + 1];
            xh[2 * j] = x0 * cos[j] - x1 * sin[j];
            xh[2 * j + 1] = x0 * sin[j] + x1 * cos[j];
        }
    }
}

void tern_f32_softmax_ukernel__ref(size_t n, float *x) {
    if (n == 0) return;
    float max = x[0];
    for (size_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

static inline float tern_ref_silu(float x) {
    /* x / (1 + e^-x): for very negative x the denominator is inf and y is -0 */
    return x / (1.0f + expf(-x));
}

void tern_f32_swiglu_ukernel__ref(size_t n, const float *gate, const float *up, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = tern_ref_silu(gate[i]) * up[i];
}

void tern_f32_silu_ukernel__ref(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = tern_ref_silu(x[i]);
}

void tern_f32_gelu_ukernel__ref(size_t n, const float *x, float *y) {
    const float rsqrt2 = 0.70710678118654752440f;
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * rsqrt2));
}

void tern_f32_add_ukernel__ref(size_t n, const float *a, const float *b, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
