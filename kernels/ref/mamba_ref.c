/* Scalar Mamba kernels: the causal depthwise conv1d (with its carried window)
 * and the selective scan, both per channel so that a channel's result does
 * not depend on how [0, d_inner) was split across threads. Contracts are in
 * kernels.h (tern_ssm_conv_args, tern_ssm_scan_args). */
#include <math.h>

#include "kernels/ref/ref.h"

static inline float tern_ref_ssm_silu(float x) {
    return x / (1.0f + expf(-x));
}

/* torch.nn.functional.softplus with beta 1, threshold 20 (what HF calls). */
static inline float tern_ref_softplus(float x) {
    return x > 20.0f ? x : log1pf(expf(x));
}

void tern_f32_ssm_conv_silu_ukernel__ref(const tern_ssm_conv_args *a, size_t c0, size_t c1) {
    const size_t K = a->d_conv, hist = K - 1, n = a->n_tokens;
    for (size_t c = c0; c < c1; c++) {
        const float *w = a->w + c * K;
        float *state = a->state + c * hist;
        const float b = a->bias ? a->bias[c] : 0.0f;
        for (size_t t = 0; t < n; t++) {
            /* Window position t + k: history for t + k < hist, else token t + k - hist. */
            float acc = b;
            for (size_t k = 0; k < K; k++) {
                const size_t j = t + k;
                const float v = j < hist ? state[j] : a->x[(j - hist) * a->ldx + c];
                acc += w[k] * v;
            }
            a->y[t * a->ldy + c] = tern_ref_ssm_silu(acc);
        }
        /* The new window's tail: the last `hist` of (state, x[0..n)). */
        for (size_t i = 0; i < hist; i++) {
            const size_t j = n + i; /* index into the old window of hist + n entries */
            state[i] = j < hist ? state[j] : a->x[(j - hist) * a->ldx + c];
        }
    }
}

void tern_f32_ssm_scan_ukernel__ref(const tern_ssm_scan_args *a, size_t c0, size_t c1) {
    const size_t S = a->d_state, n = a->n_tokens;
    for (size_t c = c0; c < c1; c++) {
        float *h = a->h + c * S;
        const float *A = a->A + c * S;
        const float D = a->D[c];
        for (size_t t = 0; t < n; t++) {
            const float u = a->x[t * a->ldx + c];
            const float dt = tern_ref_softplus(a->dt[t * a->ld_dt + c]);
            const float *B = a->B + t * a->ld_bc;
            const float *C = a->C + t * a->ld_bc;
            float acc = 0.0f;
            for (size_t s = 0; s < S; s++) {
                h[s] = expf(dt * A[s]) * h[s] + (dt * B[s]) * u;
                acc += h[s] * C[s];
            }
            a->y[t * a->ldy + c] = (acc + D * u) * tern_ref_ssm_silu(a->z[t * a->ldz + c]);
        }
    }
}
