/* NEON single-query attention with the online softmax, keys in blocks of
 * TERN_ATT_BLOCK: the block's scores (four keys at a time, one accumulator
 * each), one rescale of the running sum and output when the block raises the
 * maximum, vector exponentials, then out += e_p * v_p key by key (F32; F16
 * and Q8 caches go key by key, widened on load). A head's
 * arithmetic depends only on its own data, never on [h0, h1). */
#include <arm_neon.h>
#include <math.h>

#include "kernels/arm/arm.h"
#include "kernels/arm/neon_util.h"

#define TERN_ATT_BLOCK 32

/* s[p] = scale * (q . k_p) for nk keys of d floats, same order for every key. */
static void tern_neon_scores(size_t d, size_t nk, const float *q, const float *k, float scale,
                             float *s) {
    size_t p = 0;
    for (; p + 4 <= nk; p += 4) {
        const float *k0 = k + p * d, *k1 = k0 + d, *k2 = k1 + d, *k3 = k2 + d;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        size_t j = 0;
        for (; j + 4 <= d; j += 4) {
            const float32x4_t qv = vld1q_f32(q + j);
            a0 = vfmaq_f32(a0, qv, vld1q_f32(k0 + j));
            a1 = vfmaq_f32(a1, qv, vld1q_f32(k1 + j));
            a2 = vfmaq_f32(a2, qv, vld1q_f32(k2 + j));
            a3 = vfmaq_f32(a3, qv, vld1q_f32(k3 + j));
        }
        float s0 = vaddvq_f32(a0), s1 = vaddvq_f32(a1), s2 = vaddvq_f32(a2), s3 = vaddvq_f32(a3);
        for (; j < d; j++) {
            s0 = fmaf(q[j], k0[j], s0);
            s1 = fmaf(q[j], k1[j], s1);
            s2 = fmaf(q[j], k2[j], s2);
            s3 = fmaf(q[j], k3[j], s3);
        }
        s[p] = s0 * scale;
        s[p + 1] = s1 * scale;
        s[p + 2] = s2 * scale;
        s[p + 3] = s3 * scale;
    }
    for (; p < nk; p++) {
        const float *kp = k + p * d;
        float32x4_t a = vdupq_n_f32(0.0f);
        size_t j = 0;
        for (; j + 4 <= d; j += 4)
            a = vfmaq_f32(a, vld1q_f32(q + j), vld1q_f32(kp + j));
        float sp = vaddvq_f32(a);
        for (; j < d; j++)
            sp = fmaf(q[j], kp[j], sp);
        s[p] = sp * scale;
    }
}

/* out[0, d) = out * c */
static void tern_neon_scale(size_t d, float *out, float c) {
    size_t j = 0;
    for (; j + 4 <= d; j += 4)
        vst1q_f32(out + j, vmulq_n_f32(vld1q_f32(out + j), c));
    for (; j < d; j++)
        out[j] *= c;
}

/* Eight elements at offset `at` of an F16 or Q8 cache, widened to float. */
TERN_ARM_INLINE void tern_neon_kv_load8(uint32_t type, const void *base, size_t at,
                                        float32x4_t *lo, float32x4_t *hi) {
    if (type == TERN_KV_F16) {
        const float16x8_t v = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)base + at));
        *lo = vcvt_f32_f16(vget_low_f16(v));
        *hi = vcvt_high_f32_f16(v);
    } else {
        const int16x8_t v = vmovl_s8(vld1_s8((const int8_t *)base + at));
        *lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(v)));
        *hi = vcvtq_f32_s32(vmovl_high_s16(v));
    }
}

TERN_ARM_INLINE float tern_neon_kv_load1(uint32_t type, const void *base, size_t at) {
    if (type == TERN_KV_F16) return tern_arm_f16_to_f32(((const uint16_t *)base)[at]);
    return (float)((const int8_t *)base)[at];
}

/* F16 and Q8 caches: key by key (score, rescale, value update), elements
 * widened to float as they are loaded; a Q8 scale multiplies the dot product
 * and the softmax weight. */
TERN_ARM_INLINE void tern_neon_attention_widen(const tern_attention_args *args, size_t h0,
                                               size_t h1, uint32_t type) {
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv;
    for (size_t h = h0; h < h1; h++) {
        const size_t kvh = h / group;
        const float *q = args->q + h * d;
        const size_t base = kvh * args->kv_head_stride;
        const float *ks = type == TERN_KV_Q8 ? args->k_scale + kvh * args->kv_scale_stride : NULL;
        const float *vs = type == TERN_KV_Q8 ? args->v_scale + kvh * args->kv_scale_stride : NULL;
        float *out = args->out + h * d;
        for (size_t j = 0; j < d; j++)
            out[j] = 0.0f;
        if (args->n_kv == 0) continue;
        float max = -INFINITY, sum = 0.0f;
        for (size_t p = 0; p < args->n_kv; p++) {
            const size_t at = base + p * d;
            float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
            size_t j = 0;
            for (; j + 8 <= d; j += 8) {
                float32x4_t k0, k1;
                tern_neon_kv_load8(type, args->k, at + j, &k0, &k1);
                a0 = vfmaq_f32(a0, vld1q_f32(q + j), k0);
                a1 = vfmaq_f32(a1, vld1q_f32(q + j + 4), k1);
            }
            float s = vaddvq_f32(vaddq_f32(a0, a1));
            for (; j < d; j++)
                s = fmaf(q[j], tern_neon_kv_load1(type, args->k, at + j), s);
            if (ks) s *= ks[p];
            s *= args->scale;
            if (s > max) {
                const float c = expf(max - s); /* 0 on the first key */
                sum *= c;
                tern_neon_scale(d, out, c);
                max = s;
            }
            const float e = expf(s - max);
            sum += e;
            const float ev = vs ? e * vs[p] : e;
            for (j = 0; j + 8 <= d; j += 8) {
                float32x4_t v0, v1;
                tern_neon_kv_load8(type, args->v, at + j, &v0, &v1);
                vst1q_f32(out + j, vfmaq_n_f32(vld1q_f32(out + j), v0, ev));
                vst1q_f32(out + j + 4, vfmaq_n_f32(vld1q_f32(out + j + 4), v1, ev));
            }
            for (; j < d; j++)
                out[j] = fmaf(ev, tern_neon_kv_load1(type, args->v, at + j), out[j]);
        }
        tern_neon_scale(d, out, 1.0f / sum);
    }
}

void tern_f32_attention_ukernel__neon(const tern_attention_args *args, size_t h0, size_t h1) {
    if (args->kv_type == TERN_KV_F16) {
        tern_neon_attention_widen(args, h0, h1, TERN_KV_F16);
        return;
    }
    if (args->kv_type == TERN_KV_Q8) {
        tern_neon_attention_widen(args, h0, h1, TERN_KV_Q8);
        return;
    }
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv; /* query heads per KV head */
    float s[TERN_ATT_BLOCK + 4];
    for (size_t h = h0; h < h1; h++) {
        const float *q = args->q + h * d;
        const float *k = (const float *)args->k + (h / group) * args->kv_head_stride;
        const float *v = (const float *)args->v + (h / group) * args->kv_head_stride;
        float *out = args->out + h * d;
        for (size_t j = 0; j < d; j++)
            out[j] = 0.0f;
        if (args->n_kv == 0) continue;

        float max = -INFINITY, sum = 0.0f;
        for (size_t p0 = 0; p0 < args->n_kv; p0 += TERN_ATT_BLOCK) {
            const size_t nk = args->n_kv - p0 < TERN_ATT_BLOCK ? args->n_kv - p0 : TERN_ATT_BLOCK;
            tern_neon_scores(d, nk, q, k + p0 * d, args->scale, s);
            float bmax = s[0];
            for (size_t p = 1; p < nk; p++)
                bmax = s[p] > bmax ? s[p] : bmax;
            if (bmax > max) {
                if (p0 > 0) { /* nothing to rescale before the first block */
                    const float c = expf(max - bmax);
                    sum *= c;
                    tern_neon_scale(d, out, c);
                }
                max = bmax;
            }
            /* e = exp(s - max), padded to whole vectors */
            const float32x4_t vm = vdupq_n_f32(max);
            for (size_t p = nk; p % 4; p++)
                s[p] = max;
            float32x4_t vsum = vdupq_n_f32(0.0f);
            for (size_t p = 0; p < nk; p += 4) {
                const float32x4_t e = tern_arm_expf(vsubq_f32(vld1q_f32(s + p), vm));
                vst1q_f32(s + p, e);
            }
            for (size_t p = 0; p + 4 <= nk; p += 4)
                vsum = vaddq_f32(vsum, vld1q_f32(s + p));
            float bsum = vaddvq_f32(vsum);
            for (size_t p = nk & ~(size_t)3; p < nk; p++)
                bsum += s[p];
            sum += bsum;
            /* out += e_p * v_p */
            const float *vb = v + p0 * d;
            size_t j = 0;
            for (; j + 8 <= d; j += 8) {
                float32x4_t o0 = vld1q_f32(out + j), o1 = vld1q_f32(out + j + 4);
                for (size_t p = 0; p < nk; p++) {
                    o0 = vfmaq_n_f32(o0, vld1q_f32(vb + p * d + j), s[p]);
                    o1 = vfmaq_n_f32(o1, vld1q_f32(vb + p * d + j + 4), s[p]);
                }
                vst1q_f32(out + j, o0);
                vst1q_f32(out + j + 4, o1);
            }
            for (; j + 4 <= d; j += 4) {
                float32x4_t o = vld1q_f32(out + j);
                for (size_t p = 0; p < nk; p++)
                    o = vfmaq_n_f32(o, vld1q_f32(vb + p * d + j), s[p]);
                vst1q_f32(out + j, o);
            }
            for (; j < d; j++) {
                float o = out[j];
                for (size_t p = 0; p < nk; p++)
                    o = fmaf(s[p], vb[p * d + j], o);
                out[j] = o;
            }
        }
        tern_neon_scale(d, out, 1.0f / sum);
    }
}
