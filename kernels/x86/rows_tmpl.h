/* Row kernels (rmsnorm, softmax, silu, swiglu, add, rope) and single-query
 * attention, written once for both vector widths (vec.h); included by
 * rows_avx2.c and rows_avx512.c. Tails use masked loads and stores, never
 * touching memory past n. Each element is read before its output is written,
 * so y may alias the inputs as kernels.h allows. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/x86/vec.h"
#include "kernels/x86/x86.h"

void TERN_X86_NAME(tern_f32_rmsnorm_ukernel)(size_t n, const float *x, const float *w, float eps,
                                             float *y) {
    vf ss = vzero();
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        const vf v = vload(x + i);
        ss = vfma(v, v, ss);
    }
    const vmask mk = vmask_first(n - i);
    if (i < n) {
        const vf v = vload_m(x + i, mk);
        ss = vfma(v, v, ss);
    }
    const vf inv = vset1(1.0f / sqrtf(vhsum(ss) / (float)n + eps));
    for (i = 0; i + VW <= n; i += VW) vstore(y + i, vmul(vmul(vload(x + i), inv), vload(w + i)));
    if (i < n) vstore_m(y + i, mk, vmul(vmul(vload_m(x + i, mk), inv), vload_m(w + i, mk)));
}

/* two passes as the ref: the variance of the centred values does not cancel */
void TERN_X86_NAME(tern_f32_layernorm_ukernel)(size_t n, const float *x, const float *w,
                                               const float *b, float eps, float *y) {
    if (n == 0) return;
    const vmask mk = vmask_first(n % VW);
    const size_t nv = n - n % VW;
    vf acc = vzero();
    size_t i = 0;
    for (; i < nv; i += VW) acc = vadd(acc, vload(x + i));
    if (i < n) acc = vadd(acc, vload_m(x + i, mk));
    const float mean = vhsum(acc) / (float)n;
    const vf vm = vset1(mean);
    acc = vzero();
    for (i = 0; i < nv; i += VW) {
        const vf dv = vsub(vload(x + i), vm);
        acc = vfma(dv, dv, acc);
    }
    if (i < n) {
        /* masked lanes load 0: 0 - mean must not count */
        const vf dv = vand(vsub(vload_m(x + i, mk), vm), vload_m_ones(mk));
        acc = vfma(dv, dv, acc);
    }
    const vf inv = vset1(1.0f / sqrtf(vhsum(acc) / (float)n + eps));
    for (i = 0; i < nv; i += VW) {
        vf v = vmul(vmul(vsub(vload(x + i), vm), inv), vload(w + i));
        if (b) v = vadd(v, vload(b + i));
        vstore(y + i, v);
    }
    if (i < n) {
        vf v = vmul(vmul(vsub(vload_m(x + i, mk), vm), inv), vload_m(w + i, mk));
        if (b) v = vadd(v, vload_m(b + i, mk));
        vstore_m(y + i, mk, v);
    }
}

void TERN_X86_NAME(tern_f32_softmax_ukernel)(size_t n, float *x) {
    if (n == 0) return;
    size_t i = 0;
    vf mx = vset1(-INFINITY);
    for (; i + VW <= n; i += VW) mx = vmax(mx, vload(x + i));
    float max = vhmax(mx);
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    const vf vmx = vset1(max);
    vf sum = vzero();
    for (i = 0; i + VW <= n; i += VW) {
        const vf e = vexp(vsub(vload(x + i), vmx));
        vstore(x + i, e);
        sum = vadd(sum, e);
    }
    const vmask mk = vmask_first(n - i);
    if (i < n) {
        /* masked lanes: exp(0 - max) is finite and not stored; zero them */
        const vf e = vexp(vsub(vload_m(x + i, mk), vmx));
        vstore_m(x + i, mk, e);
        sum = vadd(sum, vload_m(x + i, mk));
    }
    const vf inv = vset1(1.0f / vhsum(sum));
    for (i = 0; i + VW <= n; i += VW) vstore(x + i, vmul(vload(x + i), inv));
    if (i < n) vstore_m(x + i, mk, vmul(vload_m(x + i, mk), inv));
}

TERN_X86_INLINE vf tern_x86_silu(vf x) {
    /* x / (1 + e^-x): e^-x is inf for very negative x and y is -0, as in ref */
    return vdiv(x, vadd(vset1(1.0f), vexp(vsub(vzero(), x))));
}

void TERN_X86_NAME(tern_f32_silu_ukernel)(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, tern_x86_silu(vload(x + i)));
    if (i < n) {
        const vmask mk = vmask_first(n - i);
        vstore_m(y + i, mk, tern_x86_silu(vload_m(x + i, mk)));
    }
}

void TERN_X86_NAME(tern_f32_swiglu_ukernel)(size_t n, const float *gate, const float *up,
                                            float *y) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, vmul(tern_x86_silu(vload(gate + i)), vload(up + i)));
    if (i < n) {
        const vmask mk = vmask_first(n - i);
        vstore_m(y + i, mk, vmul(tern_x86_silu(vload_m(gate + i, mk)), vload_m(up + i, mk)));
    }
}

void TERN_X86_NAME(tern_f32_add_ukernel)(size_t n, const float *a, const float *b, float *y) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, vadd(vload(a + i), vload(b + i)));
    if (i < n) {
        const vmask mk = vmask_first(n - i);
        vstore_m(y + i, mk, vadd(vload_m(a + i, mk), vload_m(b + i, mk)));
    }
}

void TERN_X86_NAME(tern_f32_rope_half_ukernel)(size_t n_heads, size_t head_dim, float *x,
                                               const float *cos, const float *sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        size_t j = 0;
        for (; j + VW <= half; j += VW) {
            const vf x0 = vload(xh + j), x1 = vload(xh + j + half);
            const vf c = vload(cos + j), s = vload(sin + j);
            vstore(xh + j, vfma(x0, c, vmul(vsub(vzero(), x1), s)));
            vstore(xh + j + half, vfma(x0, s, vmul(x1, c)));
        }
        if (j < half) {
            const vmask mk = vmask_first(half - j);
            const vf x0 = vload_m(xh + j, mk), x1 = vload_m(xh + j + half, mk);
            const vf c = vload_m(cos + j, mk), s = vload_m(sin + j, mk);
            vstore_m(xh + j, mk, vfma(x0, c, vmul(vsub(vzero(), x1), s)));
            vstore_m(xh + j + half, mk, vfma(x0, s, vmul(x1, c)));
        }
    }
}

void TERN_X86_NAME(tern_f32_rope_interleaved_ukernel)(size_t n_heads, size_t head_dim, float *x,
                                                      const float *cos, const float *sin) {
    /* VW floats are VW/2 pairs: even lanes x0 c - x1 s, odd lanes x1 c + x0 s */
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        size_t j = 0;
        for (; j + VW / 2 <= half; j += VW / 2) {
            const vf v = vload(xh + 2 * j);
            const vf c = vdup_pairs(cos + j), s = vdup_pairs(sin + j);
            vstore(xh + 2 * j, vfmaddsub(v, c, vmul(vswap_pairs(v), s)));
        }
        for (; j < half; j++) {
            const float x0 = xh[2 * j], x1 = xh[2 * j + 1];
            xh[2 * j] = x0 * cos[j] - x1 * sin[j];
            xh[2 * j + 1] = x0 * sin[j] + x1 * cos[j];
        }
    }
}

/* Element at offset `at` of a KV cache of `type` as VW floats: whole
 * vectors, then the tail of n < VW elements (mask mk) without reading past it. */
TERN_X86_INLINE vf tern_x86_kv_load(uint32_t type, const void *base, size_t at) {
    if (type == TERN_KV_F16) return vload_f16((const uint16_t *)base + at);
    if (type == TERN_KV_Q8) return vload_i8((const int8_t *)base + at);
    return vload((const float *)base + at);
}

TERN_X86_INLINE vf tern_x86_kv_load_tail(uint32_t type, const void *base, size_t at, size_t n,
                                         vmask mk) {
    if (type == TERN_KV_F16) return vload_f16_m((const uint16_t *)base + at, n);
    if (type == TERN_KV_Q8) {
        int8_t t[16] = {0};
        __builtin_memcpy(t, (const int8_t *)base + at, n);
        return vload_i8(t);
    }
    return vload_m((const float *)base + at, mk);
}

/* Online softmax over the keys as in ref, with the dot products and the
 * value updates vectorised over head_dim; F16 and Q8 elements are widened to
 * float as they are loaded (a Q8 scale multiplies the dot and the weight). */
TERN_X86_INLINE void tern_x86_attention_heads(const tern_attention_args *args, size_t h0,
                                              size_t h1, uint32_t type) {
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv;
    const size_t dv = d - d % VW, tail = d % VW;
    const vmask mk = vmask_first(tail);
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
            vf acc = vzero();
            size_t j = 0;
            for (; j < dv; j += VW) acc = vfma(vload(q + j), tern_x86_kv_load(type, args->k, at + j), acc);
            if (j < d)
                acc = vfma(vload_m(q + j, mk), tern_x86_kv_load_tail(type, args->k, at + j, tail, mk),
                           acc);
            float s = vhsum(acc);
            if (ks) s *= ks[p];
            s *= args->scale;
            if (s > max) {
                const float c = expf(max - s); /* 0 on the first key */
                sum *= c;
                const vf vc = vset1(c);
                for (j = 0; j < dv; j += VW) vstore(out + j, vmul(vload(out + j), vc));
                if (j < d) vstore_m(out + j, mk, vmul(vload_m(out + j, mk), vc));
                max = s;
            }
            const float e = expf(s - max);
            sum += e;
            const vf ve = vset1(vs ? e * vs[p] : e);
            for (j = 0; j < dv; j += VW)
                vstore(out + j, vfma(ve, tern_x86_kv_load(type, args->v, at + j), vload(out + j)));
            if (j < d)
                vstore_m(out + j, mk,
                         vfma(ve, tern_x86_kv_load_tail(type, args->v, at + j, tail, mk),
                              vload_m(out + j, mk)));
        }
        const vf inv = vset1(1.0f / sum);
        size_t j = 0;
        for (; j < dv; j += VW) vstore(out + j, vmul(vload(out + j), inv));
        if (j < d) vstore_m(out + j, mk, vmul(vload_m(out + j, mk), inv));
    }
}

void TERN_X86_NAME(tern_f32_attention_ukernel)(const tern_attention_args *args, size_t h0,
                                               size_t h1) {
    /* one specialisation per element type */
    switch (args->kv_type) {
    case TERN_KV_F16: tern_x86_attention_heads(args, h0, h1, TERN_KV_F16); break;
    case TERN_KV_Q8: tern_x86_attention_heads(args, h0, h1, TERN_KV_Q8); break;
    default: tern_x86_attention_heads(args, h0, h1, TERN_KV_F32); break;
    }
}
