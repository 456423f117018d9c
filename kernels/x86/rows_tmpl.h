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

/* Online softmax over the keys as in ref, with the dot products and the
 * value updates vectorised over head_dim. */
void TERN_X86_NAME(tern_f32_attention_ukernel)(const tern_attention_args *args, size_t h0,
                                               size_t h1) {
    const size_t d = args->head_dim;
    const size_t group = args->n_head / args->n_head_kv;
    const size_t dv = d - d % VW;
    const vmask mk = vmask_first(d % VW);
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
            vf acc = vzero();
            size_t j = 0;
            for (; j < dv; j += VW) acc = vfma(vload(q + j), vload(kp + j), acc);
            if (j < d) acc = vfma(vload_m(q + j, mk), vload_m(kp + j, mk), acc);
            const float s = vhsum(acc) * args->scale;
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
            const vf ve = vset1(e);
            for (j = 0; j < dv; j += VW) vstore(out + j, vfma(ve, vload(vp + j), vload(out + j)));
            if (j < d) vstore_m(out + j, mk, vfma(ve, vload_m(vp + j, mk), vload_m(out + j, mk)));
        }
        const vf inv = vset1(1.0f / sum);
        size_t j = 0;
        for (; j < dv; j += VW) vstore(out + j, vmul(vload(out + j), inv));
        if (j < d) vstore_m(out + j, mk, vmul(vload_m(out + j, mk), inv));
    }
}
