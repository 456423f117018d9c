/* Binding tensors of the mapped file to the structs kernels read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "runtime/internal.h"

tern_status tern_bind_weight(const tern_model *model, const char *name, size_t rows, size_t cols,
                             tern_weight *out, tern_error *err) {
    tern_tensor_view v;
    tern_status st = tern_file_get_tensor(&model->file, name, &v, err);
    if (st != TERN_OK) return st;
    const tern_tensor_desc *d = &v.desc;
    if (d->ndim != 2 || d->dims[0] != rows || d->dims[1] != cols)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s' has shape [%llu, %llu] (ndim %u), expected [%zu, %zu]", name,
                         (unsigned long long)d->dims[0], (unsigned long long)d->dims[1], d->ndim,
                         rows, cols);
    if (d->encoding >= TERN_ENC_COUNT_ || !model->kernels.linear[d->encoding] ||
        (d->layout != TERN_LAYOUT_ROW_MAJOR &&
         !(d->layout == TERN_LAYOUT_ROW_INTERLEAVED && /* Q8/Q4 tiles, checked by the reader */
           (d->encoding == TERN_ENC_Q8 || d->encoding == TERN_ENC_Q4))) ||
        (d->sparse_m != 0 && /* N:M: row-major, or Q8/Q4 tiles (7.4), with a sparse kernel */
         !model->kernels.linear_nm[d->encoding]))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "tensor '%s': encoding %s (layout %u, sparsity %u:%u) has no kernel", name,
                         tern_encoding_name(d->encoding), d->layout, d->sparse_n, d->sparse_m);
    memset(out, 0, sizeof *out);
    out->encoding = d->encoding;
    out->layout = d->layout;
    out->rows = rows;
    out->cols = cols;
    out->values = v.planes[TERN_PLANE_VALUES];
    out->scales = v.planes[TERN_PLANE_SCALES];
    out->zeros = v.planes[TERN_PLANE_ZEROS];
    out->index = v.planes[TERN_PLANE_INDEX];
    out->group_size = d->group_size;
    out->tile_rows = d->tile_rows;
    out->sparse_n = d->sparse_n;
    out->sparse_m = d->sparse_m;
    out->flags = d->flags;
    return TERN_OK;
}

tern_status tern_bind_vector(const tern_model *model, const char *name, size_t n, int optional,
                             const float **out, tern_error *err) {
    *out = NULL;
    if (optional && !tern_model_has_tensor(model, name)) return TERN_OK;
    tern_tensor_view v;
    tern_status st = tern_file_get_tensor(&model->file, name, &v, err);
    if (st != TERN_OK) return st;
    if (v.desc.ndim != 1 || v.desc.dims[0] != n || v.desc.encoding != TERN_ENC_F32)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s' must be F32 [%zu], found %s with ndim %u, dims[0] %llu", name,
                         n, tern_encoding_name(v.desc.encoding), v.desc.ndim,
                         (unsigned long long)v.desc.dims[0]);
    *out = v.planes[TERN_PLANE_VALUES];
    return TERN_OK;
}

int tern_weight_rows_readable(const tern_weight *w) {
    switch (w->encoding) {
    case TERN_ENC_F32:
    case TERN_ENC_F16:
    case TERN_ENC_BF16: return 1;
    case TERN_ENC_Q8:
    case TERN_ENC_Q4:
        return (w->layout == TERN_LAYOUT_ROW_MAJOR ||
                (w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows != 0)) &&
               w->sparse_m == 0 && w->group_size != 0 && w->cols % w->group_size == 0;
    default: return 0;
    }
}

/* Row r of a dense row-major Q8/Q4 weight, each value computed as the ref
 * linear kernels compute it (docs/format.md 7.2), so a looked-up embedding
 * equals the matrix the output layer multiplies by. */
/* Row r of ROW_INTERLEAVED tiles (docs/format.md 7.4), the same values as
 * tern_weight_row_quant gives for the row-major order. */
static void tern_weight_row_tiled(const tern_weight *w, size_t r, float *out) {
    const size_t n = w->cols, gs = w->group_size, n_groups = n / gs, R = w->tile_rows;
    const int has_zero = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0;
    const int q4 = w->encoding == TERN_ENC_Q4;
    const uint8_t *v = (const uint8_t *)w->values;
    for (size_t g = 0; g < n_groups; g++) {
        const size_t gi = tern_tiled_group_index(n_groups, R, r, g);
        const float s = tern_f16_to_f32(((const uint16_t *)w->scales)[gi]);
        const int offset = has_zero ? ((const uint8_t *)w->zeros)[gi] : (q4 && !has_min) ? 8 : 0;
        const float mn = has_min ? tern_f16_to_f32(((const uint16_t *)w->zeros)[gi]) : 0.0f;
        for (size_t j = 0; j < gs; j++) {
            const size_t c = g * gs + j;
            int q;
            if (q4) {
                int high;
                const uint8_t b = v[tern_tiled_q4_offset(n, R, r, c, &high)];
                q = high ? b >> 4 : b & 0xf;
            } else {
                const uint8_t b = v[tern_tiled_q8_offset(n, R, r, c)];
                q = (has_zero || has_min) ? (int)b : (int)(int8_t)b;
            }
            out[c] = has_min ? s * (float)q + mn : s * (float)(q - offset);
        }
    }
}

static void tern_weight_row_quant(const tern_weight *w, size_t r, float *out) {
    if (w->layout == TERN_LAYOUT_ROW_INTERLEAVED) {
        tern_weight_row_tiled(w, r, out);
        return;
    }
    const size_t n = w->cols, gs = w->group_size, n_groups = n / gs;
    const uint16_t *scales = (const uint16_t *)w->scales + r * n_groups;
    const int has_zero = (w->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
    const int has_min = (w->flags & TERN_TENSOR_HAS_MIN) != 0;
    const uint8_t *zeros = has_zero ? (const uint8_t *)w->zeros + r * n_groups : NULL;
    const uint16_t *mins = has_min ? (const uint16_t *)w->zeros + r * n_groups : NULL;
    const int q4 = w->encoding == TERN_ENC_Q4;
    const uint8_t *row = (const uint8_t *)w->values + (q4 ? r * (n / 2) : r * n);
    for (size_t g = 0; g < n_groups; g++) {
        const float s = tern_f16_to_f32(scales[g]);
        /* unsigned q when offset (zero point, min), signed otherwise */
        const int offset = has_zero ? zeros[g] : has_min ? 0 : q4 ? 8 : 0;
        const float mn = has_min ? tern_f16_to_f32(mins[g]) : 0.0f;
        float *o = out + g * gs;
        for (size_t j = 0; j < gs; j++) {
            int q;
            if (q4) {
                const uint8_t *qg = row + g * (gs / 2);
                q = j < gs / 2 ? (qg[j] & 0xf) : (qg[j - gs / 2] >> 4);
            } else {
                q = (has_zero || has_min) ? (int)row[g * gs + j] : (int)(int8_t)row[g * gs + j];
            }
            o[j] = has_min ? s * (float)q + mn : s * (float)(q - offset);
        }
    }
}

void tern_weight_row_f32(const tern_weight *w, size_t r, float *out) {
    const size_t n = w->cols;
    switch (w->encoding) {
    case TERN_ENC_F32:
        memcpy(out, (const float *)w->values + r * n, n * sizeof(float));
        break;
    case TERN_ENC_F16: {
        const uint16_t *row = (const uint16_t *)w->values + r * n;
        for (size_t i = 0; i < n; i++) out[i] = tern_f16_to_f32(row[i]);
        break;
    }
    case TERN_ENC_BF16: {
        const uint16_t *row = (const uint16_t *)w->values + r * n;
        for (size_t i = 0; i < n; i++) out[i] = tern_bf16_to_f32(row[i]);
        break;
    }
    case TERN_ENC_Q8:
    case TERN_ENC_Q4:
        if (tern_weight_rows_readable(w)) {
            tern_weight_row_quant(w, r, out);
            break;
        }
        /* families check tern_weight_rows_readable at load */
        /* fall through */
    default:
        memset(out, 0, n * sizeof(float));
        break;
    }
}

tern_status tern_meta_u32_range(const tern_model *model, const char *key, uint32_t *out, uint32_t lo,
                                uint32_t hi, tern_error *err) {
    tern_status st = tern_file_meta_u32(&model->file, key, out, err);
    if (st != TERN_OK) return st;
    if (*out < lo || *out > hi)
        return tern_fail(err, TERN_ERR_FORMAT, "%s = %u is outside [%u, %u]", key, *out, lo, hi);
    return TERN_OK;
}

tern_status tern_bind_matrix_f32(const tern_model *model, const char *name, size_t rows, size_t cols,
                                 const float **out, tern_error *err) {
    tern_tensor_view v;
    tern_status st = tern_file_get_tensor(&model->file, name, &v, err);
    if (st != TERN_OK) return st;
    if (v.desc.ndim != 2 || v.desc.dims[0] != rows || v.desc.dims[1] != cols ||
        v.desc.encoding != TERN_ENC_F32)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s' must be F32 [%zu, %zu], found %s [%llu, %llu]",
                         name, rows, cols, tern_encoding_name(v.desc.encoding),
                         (unsigned long long)v.desc.dims[0], (unsigned long long)v.desc.dims[1]);
    *out = v.planes[TERN_PLANE_VALUES];
    return TERN_OK;
}

float *tern_alloc_floats(size_t a, size_t b, size_t c, int *failed) {
    /* Sizes come from validated hyper-parameters, but guard the products anyway. */
    if ((b && a > SIZE_MAX / b) || (c && a * b > SIZE_MAX / c / sizeof(float))) {
        *failed = 1;
        return NULL;
    }
    const size_t count = a * b * c;
    float *p = calloc(count ? count : 1, sizeof(float));
    if (!p) *failed = 1;
    return p;
}
