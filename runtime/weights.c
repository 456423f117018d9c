/* Binding tensors of the mapped file to the structs kernels read. */
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
        d->layout != TERN_LAYOUT_ROW_MAJOR || d->sparse_m != 0)
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
    default: {
        /* Any encoding with a linear kernel: multiply by the one-hot row
         * selector is too slow for big vocabularies, so families only bind
         * embeddings in encodings handled above (checked at load). */
        memset(out, 0, n * sizeof(float));
        break;
    }
    }
}
