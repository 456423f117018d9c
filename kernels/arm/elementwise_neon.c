/* NEON normalisations, activations, rotary embeddings. Reductions keep four
 * float32x4 partial sums (16 lanes), then vaddvq, then a scalar tail: the order
 * depends only on n. Each output element is written after its inputs are
 * read, so y may alias x (and swiglu's y may alias gate, add's a or b). */
#include <arm_neon.h>
#include <math.h>

#include "kernels/arm/arm.h"
#include "kernels/arm/neon_util.h"

/* sum of x[i] * x[i] */
static float tern_neon_sumsq(size_t n, const float *x) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
        a0 = vfmaq_f32(a0, v0, v0);
        a1 = vfmaq_f32(a1, v1, v1);
        a2 = vfmaq_f32(a2, v2, v2);
        a3 = vfmaq_f32(a3, v3, v3);
    }
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        a0 = vfmaq_f32(a0, v, v);
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++)
        s = fmaf(x[i], x[i], s);
    return s;
}

void tern_f32_rmsnorm_ukernel__neon(size_t n, const float *x, const float *w, float eps, float *y) {
    const float inv = 1.0f / sqrtf(tern_neon_sumsq(n, x) / (float)n + eps);
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv), vld1q_f32(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * inv * w[i];
}

void tern_f32_layernorm_ukernel__neon(size_t n, const float *x, const float *w, const float *b,
                                      float eps, float *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vaddq_f32(a0, vld1q_f32(x + i));
        a1 = vaddq_f32(a1, vld1q_f32(x + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++)
        sum += x[i];
    const float mean = sum / (float)n;
    /* second pass on the centred values: no cancellation */
    const float32x4_t vm = vdupq_n_f32(mean);
    a0 = a1 = vdupq_n_f32(0.0f);
    for (i = 0; i + 8 <= n; i += 8) {
        const float32x4_t d0 = vsubq_f32(vld1q_f32(x + i), vm);
        const float32x4_t d1 = vsubq_f32(vld1q_f32(x + i + 4), vm);
        a0 = vfmaq_f32(a0, d0, d0);
        a1 = vfmaq_f32(a1, d1, d1);
    }
    float ss = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++)
        ss = fmaf(x[i] - mean, x[i] - mean, ss);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t v =
            vmulq_f32(vmulq_n_f32(vsubq_f32(vld1q_f32(x + i), vm), inv), vld1q_f32(w + i));
        if (b) v = vaddq_f32(v, vld1q_f32(b + i));
        vst1q_f32(y + i, v);
    }
    for (; i < n; i++) {
        const float v = (x[i] - mean) * inv * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

/* The scalar tails go through the vector code on a padded copy, so that
 * every element of a row gets the same arithmetic. */
void tern_f32_softmax_ukernel__neon(size_t n, float *x) {
    if (n == 0) return;
    float32x4_t vmax = vdupq_n_f32(x[0]);
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float max = vmaxvq_f32(vmax);
    for (; i < n; i++)
        max = x[i] > max ? x[i] : max;
    const float32x4_t vm = vdupq_n_f32(max);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = tern_arm_expf(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    if (i < n) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (size_t j = i; j < n; j++)
            t[j - i] = x[j] - max;
        vst1q_f32(t, tern_arm_expf(vld1q_f32(t)));
        for (size_t j = i; j < n; j++) {
            x[j] = t[j - i];
            sum += x[j];
        }
    }
    const float inv = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++)
        x[i] *= inv;
}

/* x / (1 + e^-x) for x >= 0 and x e^x / (1 + e^x) for x < 0: e = e^-|x|
 * never overflows, so x in (-103, -88.7) keeps its tiny result instead of
 * x / inf = -0. */
TERN_ARM_INLINE float32x4_t tern_neon_silu4(float32x4_t x) {
    const float32x4_t e = tern_arm_expf(vnegq_f32(vabsq_f32(x)));
    const float32x4_t num = vbslq_f32(vcltzq_f32(x), vmulq_f32(x, e), x);
    return vdivq_f32(num, vaddq_f32(vdupq_n_f32(1.0f), e));
}

void tern_f32_silu_ukernel__neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, tern_neon_silu4(vld1q_f32(x + i)));
    if (i < n) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (size_t j = i; j < n; j++)
            t[j - i] = x[j];
        vst1q_f32(t, tern_neon_silu4(vld1q_f32(t)));
        for (size_t j = i; j < n; j++)
            y[j] = t[j - i];
    }
}

void tern_f32_swiglu_ukernel__neon(size_t n, const float *gate, const float *up, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(tern_neon_silu4(vld1q_f32(gate + i)), vld1q_f32(up + i)));
    if (i < n) {
        float g[4] = {0.0f, 0.0f, 0.0f, 0.0f}, u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (size_t j = i; j < n; j++) {
            g[j - i] = gate[j];
            u[j - i] = up[j];
        }
        vst1q_f32(g, vmulq_f32(tern_neon_silu4(vld1q_f32(g)), vld1q_f32(u)));
        for (size_t j = i; j < n; j++)
            y[j] = g[j - i];
    }
}

void tern_f32_add_ukernel__neon(size_t n, const float *a, const float *b, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t s0 = vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        const float32x4_t s1 = vaddq_f32(vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        vst1q_f32(y + i, s0);
        vst1q_f32(y + i + 4, s1);
    }
    for (; i < n; i++)
        y[i] = a[i] + b[i];
}

/* Products then one sum each, as the ref rounds them (no fused multiply-add,
 * so that the scalar tail and the vector body agree). */
void tern_f32_rope_half_ukernel__neon(size_t n_heads, size_t head_dim, float *x, const float *cos,
                                      const float *sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *x0p = x + h * head_dim, *x1p = x0p + half;
        size_t j = 0;
        for (; j + 4 <= half; j += 4) {
            const float32x4_t x0 = vld1q_f32(x0p + j), x1 = vld1q_f32(x1p + j);
            const float32x4_t c = vld1q_f32(cos + j), s = vld1q_f32(sin + j);
            vst1q_f32(x0p + j, vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s)));
            vst1q_f32(x1p + j, vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c)));
        }
        for (; j < half; j++) {
            const float x0 = x0p[j], x1 = x1p[j];
            const float a = x0 * cos[j], b = x1 * sin[j], c = x0 * sin[j], d = x1 * cos[j];
            x0p[j] = a - b;
            x1p[j] = c + d;
        }
    }
}

void tern_f32_rope_interleaved_ukernel__neon(size_t n_heads, size_t head_dim, float *x,
                                             const float *cos, const float *sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        size_t j = 0;
        for (; j + 4 <= half; j += 4) {
            float32x4x2_t v = vld2q_f32(xh + 2 * j);
            const float32x4_t c = vld1q_f32(cos + j), s = vld1q_f32(sin + j);
            const float32x4_t x0 = v.val[0], x1 = v.val[1];
            v.val[0] = vsubq_f32(vmulq_f32(x0, c), vmulq_f32(x1, s));
            v.val[1] = vaddq_f32(vmulq_f32(x0, s), vmulq_f32(x1, c));
            vst2q_f32(xh + 2 * j, v);
        }
        for (; j < half; j++) {
            const float x0 = xh[2 * j], x1 = xh[2 * j + 1];
            const float a = x0 * cos[j], b = x1 * sin[j], c = x0 * sin[j], d = x1 * cos[j];
            xh[2 * j] = a - b;
            xh[2 * j + 1] = c + d;
        }
    }
}
