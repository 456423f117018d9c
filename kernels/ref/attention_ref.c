/* Scalar single-query attention with the online softmax (one pass over the
 * keys, no score buffer): for each head keep the running maximum m, the sum of
 * e^(s - m) and the e^(s - m)-weighted sum of values, rescaling both whenever
 * m grows. */
#include <math.h>

#include "kernels/ref/ref.h"

void tern_f32_attention_ukernel__ref(const tern_attention_args *args, size_t h0, size_t h1) {
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv; /* query heads per KV head */
    for (size_t h = h0; h < h1; h++) {
        const float *q = args->q + h * d;
        const float *k = args->k + (h / group) * args->kv_head_stride;
        const float *v = args->v + (h / group) * args->kv_head_stride;
        float *out = args->out + h * d;
        for (size_t j = 0; j < d; j++) out[j] = 0.0f;
        if (args->n_kv == 0) continue;

        float max = -INFINITY, sum = 0.0f;
        for (size_t p = 0; p < args->n_kv; p++) {
            const float *kp = k + p * d, *vp = v + p * d;
            float s = 0.0f;
            for (size_t j = 0; j < d; j++) s += q[j] * kp[j];
            s *= args->scale;
            if (s > max) {
                const float c = expf(max - s); /* 0 on the first key */
                sum *= c;
                for (size_t j = 0; j < d; j++) out[j] *= c;
                max = s;
            }
            const float e = expf(s - max);
            sum += e;
            for (size_t j = 0; j < d; j++) out[j] += e * vp[j];
        }
        const float inv = 1.0f / sum;
        for (size_t j = 0; j < d; j++) out[j] *= inv;
    }
}
