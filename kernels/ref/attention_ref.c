/* Scalar single-query attention with the online softmax (one pass over the
 * keys, no score buffer): for each head keep the running maximum m, the sum of
 * e^(s - m) and the e^(s - m)-weighted sum of values, rescaling both whenever
 * m grows. F16 and Q8 caches are read element by element; a Q8 position's
 * scale multiplies the finished dot product (K) and the softmax weight (V). */
#include <math.h>

#include "formats/encoding.h"
#include "kernels/ref/ref.h"

/* Element j of the K or V row at offset `at` (elements) of a cache. */
static inline float tern_ref_kv_load(uint32_t type, const void *base, size_t at) {
    switch (type) {
    case TERN_KV_F16: return tern_f16_to_f32(((const uint16_t *)base)[at]);
    case TERN_KV_Q8: return (float)((const int8_t *)base)[at];
    default: return ((const float *)base)[at];
    }
}

void tern_f32_attention_ukernel__ref(const tern_attention_args *args, size_t h0, size_t h1) {
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv; /* query heads per KV head */
    const uint32_t type = args->kv_type;
    for (size_t h = h0; h < h1; h++) {
        const size_t kvh = h / group;
        const float *q = args->q + h * d;
        const size_t base = kvh * args->kv_head_stride;
        const float *ks = type == TERN_KV_Q8 ? args->k_scale + kvh * args->kv_scale_stride : NULL;
        const float *vs = type == TERN_KV_Q8 ? args->v_scale + kvh * args->kv_scale_stride : NULL;
        float *out = args->out + h * d;
        for (size_t j = 0; j < d; j++) out[j] = 0.0f;
        if (args->n_kv == 0) continue;

        float max = -INFINITY, sum = 0.0f;
        for (size_t p = 0; p < args->n_kv; p++) {
            const size_t at = base + p * d;
            float s = 0.0f;
            for (size_t j = 0; j < d; j++) s += q[j] * tern_ref_kv_load(type, args->k, at + j);
            if (ks) s *= ks[p];
            s *= args->scale;
            if (s > max) {
                const float c = expf(max - s); /* 0 on the first key */
                sum *= c;
                for (size_t j = 0; j < d; j++) out[j] *= c;
                max = s;
            }
            const float e = expf(s - max);
            sum += e;
            const float ev = vs ? e * vs[p] : e;
            for (size_t j = 0; j < d; j++) out[j] += ev * tern_ref_kv_load(type, args->v, at + j);
        }
        const float inv = 1.0f / sum;
        for (size_t j = 0; j < d; j++) out[j] *= inv;
    }
}
