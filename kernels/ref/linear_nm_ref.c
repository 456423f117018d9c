/* Scalar N:M sparse linear layers (docs/format.md 7.3): the definition every
 * sparse SIMD tier is checked against.
 *
 * A row stores S = cols / M * N kept values in column order; kept value k
 * sits at logical column (k / N) * M + index[k], index[k] being the b-bit
 * field k (b = 2 for M = 4, 3 for M = 8) of the row's LSB-first bit stream.
 * The values are encoded as a dense row of S columns would be (F32, F16,
 * BF16, or Q8/Q4 with groups of G consecutive kept values).
 *
 * Float activations: y = sum over kept k, in order, of w_k * x[col_k] in one
 * float accumulator (then + bias).
 *
 * Quantised activations (cols % 32 == 0): the kept values of a row are cut
 * into segments over which both the weight group (k / G) and the activation
 * block (col_k / 32) are constant; per segment, in order,
 *   dot = sum (qw - zw) * qx[col]        exactly, in int32
 *   acc = fmaf((float)dot, dw * dx, acc)
 * as kernels/ref/linear_qa_ref.c does for dense rows. When G * M / N is a
 * multiple of 32 every segment is one whole 32-column block, which is what
 * the SIMD tiers compute (pruned columns contribute 0 to the block's dot).
 *
 * ROW_INTERLEAVED (2:4 and 1:4 Q8/Q4, docs/format.md 7.4) only moves bytes:
 * value k of row r, its index field and its group's scale and zero are read
 * through the tiled offsets of formats/encoding.h, and the arithmetic above
 * is unchanged, so a tiled matrix gives exactly its row-major twin's y. */
#include <math.h>
#include <string.h>

#include "formats/encoding.h"
#include "kernels/ref/ref.h"

static inline float tern_nm_f16(uint16_t h) {
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

size_t tern_nm_index_row_bytes(const tern_weight *w) {
    const size_t stored = w->cols / w->sparse_m * w->sparse_n;
    return (stored * (w->sparse_m == 4 ? 2u : 3u) + 7) / 8;
}

static inline int tern_nm_tiled(const tern_weight *w) {
    return w->layout == TERN_LAYOUT_ROW_INTERLEAVED;
}

/* Logical column of kept value k of row r. */
static inline size_t tern_nm_col(const tern_weight *w, size_t r, size_t k) {
    const unsigned b = w->sparse_m == 4 ? 2 : 3;
    const size_t row_bytes = tern_nm_index_row_bytes(w);
    const uint8_t *index = (const uint8_t *)w->index;
    unsigned idx = 0;
    for (unsigned i = 0; i < b; i++) {
        const size_t bit = k * b + i;
        const size_t byte = tern_nm_tiled(w)
                                ? tern_tiled_nm_index_offset(row_bytes, w->tile_rows, r, bit / 8)
                                : r * row_bytes + bit / 8;
        idx |= (unsigned)((index[byte] >> (bit % 8)) & 1u) << i;
    }
    return (k / w->sparse_n) * w->sparse_m + idx;
}

/* Index of the group of kept value k of row r in the scales and zeros planes. */
static inline size_t tern_nm_group(const tern_weight *w, size_t r, size_t k) {
    const size_t n_groups = w->cols / w->sparse_m * w->sparse_n / w->group_size;
    return tern_nm_tiled(w) ? tern_tiled_group_index(n_groups, w->tile_rows, r, k / w->group_size)
                            : r * n_groups + k / w->group_size;
}

/* Stored integer of kept value k of row r (Q8: int8 or uint8 with a zero
 * point; Q4: the nibble). */
static inline int tern_nm_qvalue(const tern_weight *w, size_t r, size_t k) {
    const size_t stored = w->cols / w->sparse_m * w->sparse_n;
    if (tern_nm_tiled(w)) { /* tiles over the stored columns */
        const uint8_t *v = (const uint8_t *)w->values;
        if (w->encoding == TERN_ENC_Q8) {
            const uint8_t b = v[tern_tiled_q8_offset(stored, w->tile_rows, r, k)];
            return (w->flags & TERN_TENSOR_HAS_ZERO_POINT) ? (int)b : (int)(int8_t)b;
        }
        int high;
        const uint8_t b = v[tern_tiled_q4_offset(stored, w->tile_rows, r, k, &high)];
        return high ? b >> 4 : b & 0xf;
    }
    if (w->encoding == TERN_ENC_Q8) {
        const uint8_t b = ((const uint8_t *)w->values)[r * stored + k];
        return (w->flags & TERN_TENSOR_HAS_ZERO_POINT) ? (int)b : (int)(int8_t)b;
    }
    const size_t gs = w->group_size, half = gs / 2;
    const uint8_t *qg = (const uint8_t *)w->values + r * (stored / 2) + (k / gs) * half;
    const size_t j = k % gs;
    return j < half ? (qg[j] & 0xf) : (qg[j - half] >> 4);
}

/* Kept value k of row r as a float (format 7.1, 7.2). */
static inline float tern_nm_value(const tern_weight *w, size_t r, size_t k) {
    const size_t stored = w->cols / w->sparse_m * w->sparse_n;
    switch (w->encoding) {
    case TERN_ENC_F32: return ((const float *)w->values)[r * stored + k];
    case TERN_ENC_F16: return tern_nm_f16(((const uint16_t *)w->values)[r * stored + k]);
    case TERN_ENC_BF16: {
        const uint32_t bits = (uint32_t)((const uint16_t *)w->values)[r * stored + k] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    default: break;
    }
    const size_t g = tern_nm_group(w, r, k);
    const float s = tern_nm_f16(((const uint16_t *)w->scales)[g]);
    const int q = tern_nm_qvalue(w, r, k);
    if (w->flags & TERN_TENSOR_HAS_MIN)
        return s * (float)q + tern_nm_f16(((const uint16_t *)w->zeros)[g]);
    if (w->flags & TERN_TENSOR_HAS_ZERO_POINT)
        return s * (float)(q - ((const uint8_t *)w->zeros)[g]);
    return s * (float)(w->encoding == TERN_ENC_Q4 ? q - 8 : q);
}

void tern_f32_nm_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const float *x, size_t ldx,
                                     const tern_weight *w, const float *bias, float *y,
                                     size_t ldy) {
    const size_t stored = w->cols / w->sparse_m * w->sparse_n;
    for (size_t r = r0; r < r1; r++) {
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (size_t k = 0; k < stored; k++) acc += tern_nm_value(w, r, k) * xi[tern_nm_col(w, r, k)];
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}

void tern_qs8_nm_linear_ukernel__ref(size_t m, size_t r0, size_t r1, const tern_qrows *x,
                                     const tern_weight *w, const float *bias, float *y,
                                     size_t ldy) {
    const size_t stored = w->cols / w->sparse_m * w->sparse_n, gs = w->group_size;
    const size_t nb = w->cols / TERN_QA_BLOCK;
    const uint16_t *scales = (const uint16_t *)w->scales;
    const uint8_t *zeros = (const uint8_t *)w->zeros;
    const int asymmetric = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int sym_offset = w->encoding == TERN_ENC_Q4 ? 8 : 0;
    for (size_t r = r0; r < r1; r++) {
        for (size_t i = 0; i < m; i++) {
            const int8_t *qx = x->q + i * x->k;
            float acc = 0.0f;
            size_t k = 0;
            while (k < stored) {
                const size_t g = k / gs, b = tern_nm_col(w, r, k) / TERN_QA_BLOCK;
                const size_t gi = tern_nm_group(w, r, k);
                const int zw = asymmetric ? zeros[gi] : sym_offset;
                int32_t dot = 0;
                for (; k < stored && k / gs == g; k++) {
                    const size_t c = tern_nm_col(w, r, k);
                    if (c / TERN_QA_BLOCK != b) break;
                    dot += (tern_nm_qvalue(w, r, k) - zw) * (int32_t)qx[c];
                }
                const float dw = tern_nm_f16(scales[gi]);
                acc = fmaf((float)dot, dw * x->d[i * nb + b], acc);
            }
            y[i * ldy + r] = bias ? acc + bias[r] : acc;
        }
    }
}
