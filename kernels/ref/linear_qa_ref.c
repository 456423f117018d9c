/* Scalar quantised-activation paths: the definition every integer tier must
 * reproduce bit for bit.
 *
 * quantize_rows, per block of 32 floats x of a row:
 *   amax = max |x|;  d = amax / 127;  id = amax > 0 ? 127 / amax : 0
 *   q = lrintf(x * id)   (round to nearest, ties to even; |q| <= 127)
 *   s = sum of the block's q
 * Every step is one correctly rounded float operation, so SIMD versions
 * (cvtps with the default rounding mode) agree exactly.
 *
 * linear_qa: the columns of a row are cut into segments where both the
 * weight group and the activation block are constant (the block itself when
 * group_size is a multiple of 32). For each segment, in column order:
 *   dot = sum (qw - zw) * qx           exactly, in int32
 *   acc = fmaf((float)dot, dw * dx, acc)
 * with dw the group's F16 scale, dx the block's scale, and zw the weight's
 * offset: 0 for symmetric Q8, 8 for symmetric Q4, the group's zero point for
 * asymmetric Q8/Q4. With HAS_MIN (w = dw * q + min, q unsigned, zw = 0) the
 * segment then adds its min: acc = fmaf((float)sx, min * dx, acc), sx the
 * segment's sum of qx (the block's s for a whole block).
 * Then y = acc (+ bias[r], one float addition). A SIMD
 * kernel may compute dot as sum qw*qx - zw * s when the segment is a whole
 * block: the integers are equal. */
#include <math.h>
#include <string.h>

#include "formats/encoding.h"
#include "kernels/ref/ref.h"

static inline float tern_qa_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else {
        const float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void tern_f32_qs8_quantize_ukernel__ref(size_t m, size_t k, const float *x, size_t ldx,
                                        int8_t *q, float *d, int32_t *s) {
    const size_t nb = k / TERN_QA_BLOCK;
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (size_t b = 0; b < nb; b++) {
            const float *xb = xi + b * TERN_QA_BLOCK;
            float amax = 0.0f;
            for (size_t j = 0; j < TERN_QA_BLOCK; j++) {
                const float a = fabsf(xb[j]);
                amax = a > amax ? a : amax;
            }
            const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            for (size_t j = 0; j < TERN_QA_BLOCK; j++) {
                const int v = (int)lrintf(xb[j] * id);
                q[i * k + b * TERN_QA_BLOCK + j] = (int8_t)v;
                sum += v;
            }
            d[i * nb + b] = amax / 127.0f;
            s[i * nb + b] = sum;
        }
    }
}

/* Weight value c of row r as an integer, before its offset. */
static inline int tern_qa_weight(const tern_weight *w, size_t r, size_t c) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) {
        const uint8_t *v = (const uint8_t *)w->values;
        if (w->encoding == TERN_ENC_Q8) {
            const uint8_t b = v[tern_tiled_q8_offset(w->cols, w->tile_rows, r, c)];
            return (w->flags & (TERN_TENSOR_HAS_ZERO_POINT | TERN_TENSOR_HAS_MIN)) ? (int)b
                                                                                 : (int)(int8_t)b;
        }
        int high;
        const uint8_t b = v[tern_tiled_q4_offset(w->cols, w->tile_rows, r, c, &high)];
        return high ? b >> 4 : b & 0xf;
    }
    if (w->encoding == TERN_ENC_Q8) {
        const uint8_t b = ((const uint8_t *)w->values)[r * w->cols + c];
        return (w->flags & (TERN_TENSOR_HAS_ZERO_POINT | TERN_TENSOR_HAS_MIN)) ? (int)b
                                                                             : (int)(int8_t)b;
    }
    const size_t gs = w->group_size, half = gs / 2;
    const uint8_t *qg = (const uint8_t *)w->values + r * (w->cols / 2) + (c / gs) * half;
    const size_t j = c % gs;
    return j < half ? (qg[j] & 0xf) : (qg[j - half] >> 4);
}

static void tern_qa_linear_ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                               const tern_weight *w, const float *bias, float *y, size_t ldy) {
    const size_t cols = w->cols, gs = w->group_size;
    const size_t n_groups = cols / gs, nb = cols / TERN_QA_BLOCK;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const int asymmetric = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0;
    const uint16_t *mins = (const uint16_t *)w->zeros;
    const int sym_offset = has_min ? 0 : w->encoding == TERN_ENC_Q4 ? 8 : 0;
    for (size_t r = r0; r < r1; r++) {
        for (size_t i = 0; i < m; i++) {
            const int8_t *qx = x->q + i * x->k;
            float acc = 0.0f;
            size_t c = 0;
            while (c < cols) {
                const size_t g = c / gs, b = c / TERN_QA_BLOCK;
                const size_t g_end = (g + 1) * gs, b_end = (b + 1) * TERN_QA_BLOCK;
                const size_t end = g_end < b_end ? g_end : b_end;
                const size_t gi = w->layout == TERN_LAYOUT_ROW_INTERLEAVED
                                      ? tern_tiled_group_index(n_groups, w->tile_rows, r, g)
                                      : r * n_groups + g;
                const int zw = asymmetric ? zeros[gi] : sym_offset;
                int32_t dot = 0, sx = 0;
                for (; c < end; c++) {
                    dot += (tern_qa_weight(w, r, c) - zw) * (int32_t)qx[c];
                    sx += qx[c];
                }
                const float dw = tern_qa_f16_to_f32(scales[gi]);
                acc = fmaf((float)dot, dw * x->d[i * nb + b], acc);
                if (has_min) acc = fmaf((float)sx, tern_qa_f16_to_f32(mins[gi]) * x->d[i * nb + b], acc);
            }
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_qs8_q8w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                      const tern_weight *w, const float *bias, float *y,
                                      size_t ldy) {
    tern_qa_linear_ref(m, r0, r1, x, w, bias, y, ldy);
}

void tern_qs8_q4w_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                      const tern_weight *w, const float *bias, float *y,
                                      size_t ldy) {
    tern_qa_linear_ref(m, r0, r1, x, w, bias, y, ldy);
}
