/* Round-to-nearest quantisation of weight groups (converter/quantize.h).
 *
 * A candidate is a (scale, zero) pair; q = clamp(round(x / scale) + zero).
 * The scale is rounded to F16 *before* q is chosen, so the squared error a
 * candidate is judged by is the error of what the runtime will compute.
 * Candidates per group:
 *   Q8 symmetric:  scale = c * amax / 127, q in [-127, 127]
 *   Q4 symmetric:  scale = c * m / -8 (m: the value of largest magnitude, so
 *                  it maps to -8, as ggml's Q4_0) and scale = c * amax / 7
 *                  (q in [-7, 7]); the one with less error is kept
 *   asymmetric:    range [lo, hi] = [min(x, 0), max(x, 0)] * c,
 *                  scale = (hi - lo) / qmax, zero = clamp(round(-lo / scale))
 * with c = 1 only, or with clip search c in 1.00, 0.95, ..., 0.70. */
#include "converter/quantize.h"

#include <math.h>
#include <string.h>

#define TERN_CLIP_STEPS 7 /* c = 1 - 0.05 k, k < 7 */

/* The F16 a raw scale is stored as: finite (clamped to +-65504) and nonzero
 * when raw is (the smallest subnormal), so every nonzero group keeps a
 * usable scale. */
static uint16_t tern_scale_f16(float raw) {
    uint16_t h = tern_f32_to_f16(raw);
    if ((h & 0x7fffu) >= 0x7c00u) h = (uint16_t)((h & 0x8000u) | 0x7bffu);
    if ((h & 0x7fffu) == 0 && raw != 0.0f) h = (uint16_t)((raw < 0 ? 0x8000u : 0) | 1u);
    return h;
}

/* round(v) clamped to [lo, hi]; NaN becomes lo. */
static int tern_round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    int q = (int)lroundf(v);
    return q < lo ? lo : q > hi ? hi : q;
}

typedef struct {
    uint16_t scale;
    int zero;        /* subtracted from q; 0 for symmetric */
    int qmin, qmax;  /* range of the signed/unsigned integer q */
} tern_qcand;

static int tern_qcand_q(const tern_qcand *c, float s, float x) {
    return s != 0.0f ? tern_round_clamp(x / s + (float)c->zero, c->qmin, c->qmax)
                     : tern_round_clamp((float)c->zero, c->qmin, c->qmax);
}

static double tern_qcand_error(const tern_qcand *c, const float *x, size_t n) {
    const float s = tern_f16_to_f32(c->scale);
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        const float w = s * (float)(tern_qcand_q(c, s, x[i]) - c->zero);
        const double d = (double)x[i] - (double)w;
        e += d * d;
    }
    return e;
}

double tern_quantize_group(const tern_quant_params *p, const float *x, size_t n, uint8_t *q,
                           uint16_t *scale, uint8_t *zero) {
    const int q4 = p->encoding == TERN_ENC_Q4;
    float amax = 0, m = 0, lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (fabsf(v) > amax) amax = fabsf(v), m = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    const int steps = p->clip_search ? TERN_CLIP_STEPS : 1;
    tern_qcand best = {0, 0, 0, 0};
    double best_err = INFINITY;
    for (int k = 0; k < steps; k++) {
        const float c = (float)(20 - k) / 20.0f;
        tern_qcand cand[2];
        int n_cand = 0;
        if (p->asymmetric) {
            const int qmax = q4 ? 15 : 255;
            const float s_raw = (hi - lo) * c / (float)qmax;
            tern_qcand a = {tern_scale_f16(s_raw), 0, 0, qmax};
            const float s = tern_f16_to_f32(a.scale);
            a.zero = s != 0.0f ? tern_round_clamp(-lo * c / s, 0, qmax) : 0;
            cand[n_cand++] = a;
        } else if (q4) {
            cand[n_cand++] = (tern_qcand){tern_scale_f16(m * c / -8.0f), 0, -8, 7};
            cand[n_cand++] = (tern_qcand){tern_scale_f16(amax * c / 7.0f), 0, -8, 7};
        } else {
            cand[n_cand++] = (tern_qcand){tern_scale_f16(amax * c / 127.0f), 0, -127, 127};
        }
        for (int j = 0; j < n_cand; j++) {
            const double e = tern_qcand_error(&cand[j], x, n);
            if (e < best_err) best_err = e, best = cand[j];
        }
    }
    /* Write the winner. Stored codes: Q8 symmetric int8 bits, Q4 symmetric
     * q + 8, asymmetric q itself (the zero point goes to its own plane). */
    const float s = tern_f16_to_f32(best.scale);
    for (size_t i = 0; i < n; i++) {
        const int v = tern_qcand_q(&best, s, x[i]);
        q[i] = p->asymmetric ? (uint8_t)v : q4 ? (uint8_t)(v + 8) : (uint8_t)(int8_t)v;
    }
    *scale = best.scale;
    if (zero) *zero = (uint8_t)best.zero;
    return best_err;
}

float tern_quant_dequant(const tern_quant_params *p, uint8_t q, uint16_t scale, uint8_t zero) {
    const float s = tern_f16_to_f32(scale);
    if (p->asymmetric) return s * (float)((int)q - (int)zero);
    if (p->encoding == TERN_ENC_Q4) return s * (float)((int)q - 8);
    return s * (float)(int8_t)q;
}

void tern_quantize_rows(const tern_quant_params *p, size_t rows, size_t cols, const float *x,
                        uint8_t *values, uint16_t *scales, uint8_t *zeros, uint8_t *tmp) {
    const size_t gs = p->group_size, n_groups = rows * (cols / gs);
    const int q4 = p->encoding == TERN_ENC_Q4;
    for (size_t g = 0; g < n_groups; g++) {
        /* groups never straddle rows (cols % gs == 0), so group g starts at g * gs */
        uint8_t *out = q4 ? tmp : values + g * gs;
        tern_quantize_group(p, x + g * gs, gs, out, &scales[g], p->asymmetric ? &zeros[g] : NULL);
        if (q4) {
            /* byte j: value j low, value j + gs/2 high (docs/format.md 7.2) */
            uint8_t *packed = values + g * (gs / 2);
            for (size_t j = 0; j < gs / 2; j++)
                packed[j] = (uint8_t)((tmp[j] & 0xfu) | (tmp[j + gs / 2] & 0xfu) << 4);
        }
    }
}

uint8_t tern_quant_code(const tern_quant_params *p, float x, uint16_t scale, uint8_t zero) {
    const int q4 = p->encoding == TERN_ENC_Q4;
    tern_qcand c = {scale, 0, q4 ? -8 : -127, q4 ? 7 : 127};
    if (p->asymmetric) c = (tern_qcand){scale, zero, 0, q4 ? 15 : 255};
    const int v = tern_qcand_q(&c, tern_f16_to_f32(scale), x);
    return p->asymmetric ? (uint8_t)v : q4 ? (uint8_t)(v + 8) : (uint8_t)(int8_t)v;
}

void tern_quant_pack(const tern_quant_params *p, size_t rows, size_t cols, const uint8_t *codes,
                     uint8_t *values) {
    const size_t gs = p->group_size, n_groups = rows * (cols / gs);
    if (p->encoding != TERN_ENC_Q4) {
        memcpy(values, codes, rows * cols);
        return;
    }
    for (size_t g = 0; g < n_groups; g++) {
        const uint8_t *c = codes + g * gs;
        uint8_t *packed = values + g * (gs / 2);
        for (size_t j = 0; j < gs / 2; j++)
            packed[j] = (uint8_t)((c[j] & 0xfu) | (c[j + gs / 2] & 0xfu) << 4);
    }
}
