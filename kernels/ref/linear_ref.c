/* Scalar linear layers: y[i][r] = sum_c x[i][c] * W[r][c] (+ bias[r]), one
 * float accumulator per output, columns summed in order. Weights are decoded
 * element by element as ref.h (and docs/format.md) define them, so these loops
 * are the definition the SIMD kernels are checked against. */
#include <string.h>

#include "formats/encoding.h"
#include "kernels/ref/ref.h"

/* IEEE half to float, exact. Kept inline here (rather than calling
 * tern_f16_to_f32) because it runs once per weight element; both are exact
 * conversions, so they agree bit for bit. */
static inline float tern_ref_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else {
        const float f = (float)man * 0x1p-24f; /* zero or subnormal, exact */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float tern_ref_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ROW_INTERLEAVED Q8/Q4 (docs/format.md 7.4): the same sums as the
 * row-major loops below, in the same order, with the values fetched from
 * their tiled positions. */
static void tern_ref_tiled_linear(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,
                                  const tern_weight *w, const float *bias, float *y, size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size, n_groups = cols / gs, R = w->tile_rows;
    const uint8_t *v = (const uint8_t *)w->values;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const int asymmetric = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int q4 = w->encoding == TERN_ENC_Q4;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* w = scale * q + min */
    const uint16_t *mins = (const uint16_t *)w->zeros;
    for (size_t r = r0; r < r1; r++) {
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t g = 0; g < n_groups; g++) {
                const size_t gi = tern_tiled_group_index(n_groups, R, r, g);
                const float scale = tern_ref_f16_to_f32(scales[gi]);
                if (has_min) {
                    const float mn = tern_ref_f16_to_f32(mins[gi]);
                    for (size_t j = 0; j < gs; j++) {
                        const size_t c = g * gs + j;
                        int q;
                        if (q4) {
                            int high;
                            const uint8_t b = v[tern_tiled_q4_offset(cols, R, r, c, &high)];
                            q = high ? b >> 4 : b & 0xf;
                        } else {
                            q = v[tern_tiled_q8_offset(cols, R, r, c)];
                        }
                        acc += xi[c] * (scale * (float)q + mn);
                    }
                    continue;
                }
                const int zero = asymmetric ? zeros[gi] : q4 ? 8 : 0;
                for (size_t j = 0; j < gs; j++) {
                    const size_t c = g * gs + j;
                    int q;
                    if (q4) {
                        int high;
                        const uint8_t b = v[tern_tiled_q4_offset(cols, R, r, c, &high)];
                        q = (high ? b >> 4 : b & 0xf) - zero;
                    } else {
                        const uint8_t b = v[tern_tiled_q8_offset(cols, R, r, c)];
                        q = asymmetric ? (int)b - zero : (int)(int8_t)b;
                    }
                    acc += xi[c] * (scale * (float)q);
                }
            }
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_f32_f32w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                       size_t ldx, const tern_weight *w, const float *bias,
                                       float *y, size_t ldy) {
    const size_t cols = w->cols;
    const float *values = (const float *)w->values;
    for (size_t r = r0; r < r1; r++) {
        const float *wr = values + r * cols;
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t c = 0; c < cols; c++) acc += xi[c] * wr[c];
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_f32_f16w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                       size_t ldx, const tern_weight *w, const float *bias,
                                       float *y, size_t ldy) {
    const size_t cols = w->cols;
    const uint16_t *values = (const uint16_t *)w->values;
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *wr = values + r * cols;
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t c = 0; c < cols; c++) acc += xi[c] * tern_ref_f16_to_f32(wr[c]);
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_f32_bf16w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                        size_t ldx, const tern_weight *w, const float *bias,
                                        float *y, size_t ldy) {
    const size_t cols = w->cols;
    const uint16_t *values = (const uint16_t *)w->values;
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *wr = values + r * cols;
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t c = 0; c < cols; c++) acc += xi[c] * tern_ref_bf16_to_f32(wr[c]);
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_f32_q8w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                      size_t ldx, const tern_weight *w, const float *bias,
                                      float *y, size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) {
        tern_ref_tiled_linear(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    const size_t cols = w->cols;
    const size_t gs = w->group_size;
    const size_t n_groups = cols / gs;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const int asymmetric = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* w = scale * q + min */
    const uint16_t *mins = (const uint16_t *)w->zeros;
    for (size_t r = r0; r < r1; r++) {
        /* int8 when symmetric, uint8 with a zero point or a min */
        const int8_t *qs = (const int8_t *)w->values + r * cols;
        const uint8_t *qu = (const uint8_t *)w->values + r * cols;
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t g = 0; g < n_groups; g++) {
                const float scale = tern_ref_f16_to_f32(scales[r * n_groups + g]);
                if (has_min) {
                    const float mn = tern_ref_f16_to_f32(mins[r * n_groups + g]);
                    for (size_t j = 0; j < gs; j++) {
                        const size_t c = g * gs + j;
                        acc += xi[c] * (scale * (float)qu[c] + mn);
                    }
                    continue;
                }
                const int zero = asymmetric ? zeros[r * n_groups + g] : 0;
                for (size_t j = 0; j < gs; j++) {
                    const size_t c = g * gs + j;
                    const int q = asymmetric ? (int)qu[c] - zero : (int)qs[c];
                    acc += xi[c] * (scale * (float)q);
                }
            }
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_f32_q4w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x,
                                      size_t ldx, const tern_weight *w, const float *bias,
                                      float *y, size_t ldy) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) {
        tern_ref_tiled_linear(m, r0, r1, x, ldx, w, bias, y, ldy);
        return;
    }
    const size_t cols = w->cols;
    const size_t gs = w->group_size;
    const size_t half = gs / 2;
    const size_t n_groups = cols / gs;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const int asymmetric = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0; /* w = scale * q + min */
    const uint16_t *mins = (const uint16_t *)w->zeros;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *qr = (const uint8_t *)w->values + r * (cols / 2);
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t g = 0; g < n_groups; g++) {
                const float scale = tern_ref_f16_to_f32(scales[r * n_groups + g]);
                const uint8_t *qg = qr + g * half;
                if (has_min) {
                    const float mn = tern_ref_f16_to_f32(mins[r * n_groups + g]);
                    for (size_t j = 0; j < gs; j++) {
                        const int nibble = j < half ? (qg[j] & 0xf) : (qg[j - half] >> 4);
                        acc += xi[g * gs + j] * (scale * (float)nibble + mn);
                    }
                    continue;
                }
                const int zero = asymmetric ? zeros[r * n_groups + g] : 8;
                /* value j of the group, in column order */
                for (size_t j = 0; j < gs; j++) {
                    const int nibble = j < half ? (qg[j] & 0xf) : (qg[j - half] >> 4);
                    acc += xi[g * gs + j] * (scale * (float)(nibble - zero));
                }
            }
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}
