/* Scalar RWKV kernels: the token-shift mix and the RWKV-4 WKV recurrence.
 * The recurrence runs per channel in token order, so a channel's result does
 * not depend on how [0, d_att) was split across threads. Contracts are in
 * kernels.h (tern_rwkv_shift_fn, tern_wkv4_args). */
#include <math.h>

#include "kernels/ref/ref.h"

void tern_f32_rwkv_shift_ukernel__ref(size_t n, size_t d, const float *x, const float *prev,
                                      const float *mix, float *y) {
    for (size_t t = 0; t < n; t++) {
        const float *xp = t ? x + (t - 1) * d : prev;
        const float *xt = x + t * d;
        float *yt = y + t * d;
        /* transformers' order: x * mix + shifted * (1 - mix) */
        for (size_t c = 0; c < d; c++) yt[c] = xt[c] * mix[c] + xp[c] * (1.0f - mix[c]);
    }
}

void tern_f32_wkv4_ukernel__ref(const tern_wkv4_args *a, size_t c0, size_t c1) {
    const size_t n = a->n_tokens;
    for (size_t c = c0; c < c1; c++) {
        const float w = a->w[c], u = a->u[c];
        float aa = a->aa[c], bb = a->bb[c], pp = a->pp[c];
        for (size_t t = 0; t < n; t++) {
            const float k = a->k[t * a->ldk + c], v = a->v[t * a->ldv + c];
            /* Output: the current token weighted by exp(u + k), the past by
             * the state, both scaled by exp(-q) so neither overflows. */
            const float uk = u + k;
            float q = pp > uk ? pp : uk;
            float e1 = expf(pp - q), e2 = expf(uk - q);
            float y = (e1 * aa + e2 * v) / (e1 * bb + e2);
            if (a->r) y *= 1.0f / (1.0f + expf(-a->r[t * a->ldr + c]));
            a->y[t * a->ldy + c] = y;
            /* State: decay the past by exp(w), add the current token by exp(k). */
            const float pw = pp + w;
            q = pw > k ? pw : k;
            e1 = expf(pw - q);
            e2 = expf(k - q);
            aa = e1 * aa + e2 * v;
            bb = e1 * bb + e2;
            pp = q;
        }
        a->aa[c] = aa;
        a->bb[c] = bb;
        a->pp[c] = pp;
    }
}
