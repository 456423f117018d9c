/* ISA-neutral float kernels written once over a vector layer: exact GELU,
 * the Mamba conv1d + SiLU and selective scan, the RWKV token shift and WKV-4.
 * The including file defines TERN_VNAME(name) (name__isa) after including its
 * vector layer (kernels/x86/vec.h for avx2/avx512, kernels/arm/vec_neon.h for
 * neon), which supplies vf, VW, vmask, vload/vstore(_m), vfma(a, b, c) =
 * a * b + c, vexp, vlog and vselect_gt.
 *
 * The recurrences run VW channels per vector: each lane is one channel, so a
 * channel's arithmetic is the same whether it sits in a full vector or in the
 * masked tail, and results never depend on the [c0, c1) split. Parameters
 * stored per channel in rows ([d][d_conv] conv weights, [d][d_state] A and h)
 * are transposed into small stack tiles once per block of channels. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/ref/ref.h"

#define TERN_V_INLINE static inline __attribute__((always_inline))
#define TERN_V_MAX_CONV 8   /* larger d_conv runs the ref */
#define TERN_V_MAX_STATE 64 /* larger d_state runs the ref */

/* erf(x) = x P(x^2) / Q(x^2) on |x| <= 3.92 and +-1 beyond (where erff rounds
 * to +-1). Coefficients fitted by us (weighted least squares iterated to
 * near-minimax, mpmath at 40 digits) for this form: max |error| 4.9e-8 in exact
 * arithmetic, about 1.5e-7 (2 ulp of 1) evaluated in float, relative error
 * <= 2.1e-7 near 0. */
TERN_V_INLINE vf tern_v_erf(vf x) {
    x = vmin(vmax(x, vset1(-3.92f)), vset1(3.92f));
    const vf t = vmul(x, x);
    vf p = vset1(1.9916174160358019e-8f);
    p = vfma(p, t, vset1(-1.9758269002556527e-6f));
    p = vfma(p, t, vset1(1.4542457205897436e-4f));
    p = vfma(p, t, vset1(3.8374679231090149e-3f));
    p = vfma(p, t, vset1(5.098393829491425e-2f));
    p = vfma(p, t, vset1(2.0302759773523046e-1f));
    p = vfma(p, t, vset1(1.1283789332144322f));
    vf q = vset1(9.901671296755842e-4f);
    q = vfma(q, t, vset1(1.4620896590958773e-2f));
    q = vfma(q, t, vset1(1.1628292771742922e-1f));
    q = vfma(q, t, vset1(5.1325862837465188e-1f));
    q = vfma(q, t, vset1(1.0f));
    return vdiv(vmul(x, p), q);
}

TERN_V_INLINE vf tern_v_gelu(vf x) {
    const vf e = tern_v_erf(vmul(x, vset1(0.70710678118654752440f)));
    return vmul(vmul(vset1(0.5f), x), vadd(vset1(1.0f), e));
}

void TERN_VNAME(tern_f32_gelu_ukernel)(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, tern_v_gelu(vload(x + i)));
    if (i < n) {
        const vmask mk = vmask_first(n - i);
        vstore_m(y + i, mk, tern_v_gelu(vload_m(x + i, mk)));
    }
}

/* x / (1 + e^-x), as the ref: e^-x = inf gives -0 for very negative x */
TERN_V_INLINE vf tern_v_silu(vf x) {
    return vdiv(x, vadd(vset1(1.0f), vexp(vsub(vzero(), x))));
}

TERN_V_INLINE vf tern_v_sigmoid(vf x) {
    return vdiv(vset1(1.0f), vadd(vset1(1.0f), vexp(vsub(vzero(), x))));
}

/* torch's softplus: x > 20 ? x : log1p(e^x), log1p(u) computed as
 * log(1 + u) * u / ((1 + u) - 1) (exact to a few ulp, also for tiny u). */
TERN_V_INLINE vf tern_v_softplus(vf x) {
    const vf u = vexp(vmin(x, vset1(20.0f)));
    const vf one_u = vadd(vset1(1.0f), u);
    const vf lg = vmul(vlog(one_u), vdiv(u, vsub(one_u, vset1(1.0f))));
    const vf l1p = vselect_eq(one_u, vset1(1.0f), u, lg);
    return vselect_gt(x, vset1(20.0f), x, l1p);
}

/* nc <= VW channels at p: whole vector or masked tail, same lanes either way */
TERN_V_INLINE vf tern_v_loadc(const float *p, size_t nc, vmask mk) {
    return nc == VW ? vload(p) : vload_m(p, mk);
}
TERN_V_INLINE void tern_v_storec(float *p, size_t nc, vmask mk, vf v) {
    if (nc == VW)
        vstore(p, v);
    else
        vstore_m(p, mk, v);
}

void TERN_VNAME(tern_f32_ssm_conv_silu_ukernel)(const tern_ssm_conv_args *a, size_t c0,
                                                size_t c1) {
    const size_t K = a->d_conv, hist = K - 1, n = a->n_tokens;
    if (K == 0 || K > TERN_V_MAX_CONV) {
        tern_f32_ssm_conv_silu_ukernel__ref(a, c0, c1);
        return;
    }
    for (size_t c = c0; c < c1; c += VW) {
        const size_t nc = c1 - c < VW ? c1 - c : VW;
        const vmask mk = vmask_first(nc);
        float tile[2 * TERN_V_MAX_CONV][VW];
        memset(tile, 0, sizeof tile);
        for (size_t i = 0; i < nc; i++) {
            for (size_t k = 0; k < K; k++) tile[k][i] = a->w[(c + i) * K + k];
            for (size_t k = 0; k < hist; k++) tile[TERN_V_MAX_CONV + k][i] = a->state[(c + i) * hist + k];
        }
        vf w[TERN_V_MAX_CONV], win[TERN_V_MAX_CONV];
        for (size_t k = 0; k < K; k++) w[k] = vload(tile[k]);
        for (size_t k = 0; k < hist; k++) win[k] = vload(tile[TERN_V_MAX_CONV + k]);
        const vf b = a->bias ? tern_v_loadc(a->bias + c, nc, mk) : vzero();
        for (size_t t = 0; t < n; t++) {
            win[hist] = tern_v_loadc(a->x + t * a->ldx + c, nc, mk);
            vf acc = b;
            for (size_t k = 0; k < K; k++) acc = vfma(w[k], win[k], acc);
            tern_v_storec(a->y + t * a->ldy + c, nc, mk, tern_v_silu(acc));
            for (size_t k = 0; k < hist; k++) win[k] = win[k + 1];
        }
        for (size_t k = 0; k < hist; k++) vstore(tile[k], win[k]);
        for (size_t i = 0; i < nc; i++)
            for (size_t k = 0; k < hist; k++) a->state[(c + i) * hist + k] = tile[k][i];
    }
}

void TERN_VNAME(tern_f32_ssm_scan_ukernel)(const tern_ssm_scan_args *a, size_t c0, size_t c1) {
    const size_t S = a->d_state, n = a->n_tokens;
    if (S > TERN_V_MAX_STATE) {
        tern_f32_ssm_scan_ukernel__ref(a, c0, c1);
        return;
    }
    float At[TERN_V_MAX_STATE][VW], ht[TERN_V_MAX_STATE][VW];
    for (size_t c = c0; c < c1; c += VW) {
        const size_t nc = c1 - c < VW ? c1 - c : VW;
        const vmask mk = vmask_first(nc);
        memset(At, 0, sizeof At);
        memset(ht, 0, sizeof ht);
        for (size_t i = 0; i < nc; i++)
            for (size_t s = 0; s < S; s++) {
                At[s][i] = a->A[(c + i) * S + s];
                ht[s][i] = a->h[(c + i) * S + s];
            }
        const vf D = tern_v_loadc(a->D + c, nc, mk);
        for (size_t t = 0; t < n; t++) {
            const vf u = tern_v_loadc(a->x + t * a->ldx + c, nc, mk);
            const vf dt = tern_v_softplus(tern_v_loadc(a->dt + t * a->ld_dt + c, nc, mk));
            const float *B = a->B + t * a->ld_bc, *C = a->C + t * a->ld_bc;
            vf acc = vzero();
            for (size_t s = 0; s < S; s++) {
                const vf dA = vexp(vmul(dt, vload(At[s])));
                const vf h = vadd(vmul(dA, vload(ht[s])), vmul(vmul(dt, vset1(B[s])), u));
                vstore(ht[s], h);
                acc = vfma(h, vset1(C[s]), acc);
            }
            const vf z = tern_v_loadc(a->z + t * a->ldz + c, nc, mk);
            tern_v_storec(a->y + t * a->ldy + c, nc, mk, vmul(vfma(D, u, acc), tern_v_silu(z)));
        }
        for (size_t i = 0; i < nc; i++)
            for (size_t s = 0; s < S; s++) a->h[(c + i) * S + s] = ht[s][i];
    }
}

void TERN_VNAME(tern_f32_rwkv_shift_ukernel)(size_t n, size_t d, const float *x, const float *prev,
                                             const float *mix, float *y) {
    for (size_t t = 0; t < n; t++) {
        const float *xp = t ? x + (t - 1) * d : prev;
        const float *xt = x + t * d;
        float *yt = y + t * d;
        for (size_t c = 0; c < d; c += VW) {
            const size_t nc = d - c < VW ? d - c : VW;
            const vmask mk = vmask_first(nc);
            const vf m = tern_v_loadc(mix + c, nc, mk);
            const vf v = vadd(vmul(tern_v_loadc(xt + c, nc, mk), m),
                              vmul(tern_v_loadc(xp + c, nc, mk), vsub(vset1(1.0f), m)));
            tern_v_storec(yt + c, nc, mk, v);
        }
    }
}

void TERN_VNAME(tern_f32_wkv4_ukernel)(const tern_wkv4_args *a, size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; c += VW) {
        const size_t nc = c1 - c < VW ? c1 - c : VW;
        const vmask mk = vmask_first(nc);
        const vf w = tern_v_loadc(a->w + c, nc, mk), u = tern_v_loadc(a->u + c, nc, mk);
        vf aa = tern_v_loadc(a->aa + c, nc, mk), bb = tern_v_loadc(a->bb + c, nc, mk);
        vf pp = tern_v_loadc(a->pp + c, nc, mk);
        for (size_t t = 0; t < a->n_tokens; t++) {
            const vf k = tern_v_loadc(a->k + t * a->ldk + c, nc, mk);
            const vf v = tern_v_loadc(a->v + t * a->ldv + c, nc, mk);
            const vf uk = vadd(u, k);
            vf q = vselect_gt(pp, uk, pp, uk);
            vf e1 = vexp(vsub(pp, q)), e2 = vexp(vsub(uk, q));
            vf y = vdiv(vfma(e1, aa, vmul(e2, v)), vfma(e1, bb, e2));
            if (a->r) y = vmul(y, tern_v_sigmoid(tern_v_loadc(a->r + t * a->ldr + c, nc, mk)));
            tern_v_storec(a->y + t * a->ldy + c, nc, mk, y);
            const vf pw = vadd(pp, w);
            q = vselect_gt(pw, k, pw, k);
            e1 = vexp(vsub(pw, q));
            e2 = vexp(vsub(k, q));
            aa = vfma(e1, aa, vmul(e2, v));
            bb = vfma(e1, bb, e2);
            pp = q;
        }
        tern_v_storec(a->aa + c, nc, mk, aa);
        tern_v_storec(a->bb + c, nc, mk, bb);
        tern_v_storec(a->pp + c, nc, mk, pp);
    }
}
