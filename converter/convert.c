/* tern_convert: picks an importer for the source, streams its tensors into a
 * .tern writer and makes the result appear atomically at the destination. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/keys.h"

/* Source kinds, most specific first. GGUF and llama2.c files slot in here;
 * new Hugging Face architectures go into hf.c's own table. */
static const tern_importer *const tern_importers[] = {
    &tern_importer_gguf,
    &tern_importer_llama2c,
    &tern_importer_hf,
};
#define TERN_N_IMPORTERS (sizeof tern_importers / sizeof tern_importers[0])

void tern_convert_options_default(tern_convert_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->weights = TERN_WEIGHTS_F32;
}

tern_encoding tern_convert_encoding(const tern_convert_ctx *ctx, uint32_t ndim) {
    if (ndim < 2) return TERN_ENC_F32;
    switch (ctx->weights) {
    case TERN_WEIGHTS_F16: return TERN_ENC_F16;
    case TERN_WEIGHTS_BF16: return TERN_ENC_BF16;
    default: return TERN_ENC_F32;
    }
}

void tern_convert_basename(const char *path, char *out, size_t size) {
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t begin = end;
    while (begin > 0 && path[begin - 1] != '/') begin--;
    size_t n = end - begin;
    if (size == 0) return;
    if (n >= size) n = size - 1;
    memcpy(out, path + begin, n);
    out[n] = '\0';
}

tern_status tern_convert_add_f32_tensor(tern_convert_ctx *ctx, const char *name, uint32_t ndim,
                                        const uint64_t *dims, float *buf, tern_encoding enc,
                                        uint64_t src_bytes, tern_error *err) {
    if (enc != TERN_ENC_F32 && enc != TERN_ENC_F16 && enc != TERN_ENC_BF16)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor %s: target encoding %s not supported",
                         name, tern_encoding_name(enc));
    tern_tensor_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.encoding = enc;
    desc.layout = TERN_LAYOUT_ROW_MAJOR;
    desc.ndim = ndim;
    for (uint32_t d = 0; d < ndim && d < 4; d++) desc.dims[d] = dims[d];
    const uint64_t count = tern_tensor_elements(&desc);
    if (ndim < 1 || ndim > 4 || count == 0)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor %s: bad shape (%u dimensions)", name, ndim);
    if (enc != TERN_ENC_F32) {
        /* Narrow in place: element i's 2 bytes land below element i's float,
         * which is read before the store. */
        uint16_t *half = (uint16_t *)(void *)buf;
        for (uint64_t i = 0; i < count; i++) {
            float v = buf[i];
            half[i] = enc == TERN_ENC_F16 ? tern_f32_to_f16(v) : tern_f32_to_bf16(v);
        }
    }
    const void *planes[TERN_PLANE_COUNT] = {buf, NULL, NULL, NULL};
    tern_status st = tern_writer_add_tensor(ctx->writer, name, &desc, planes, err);
    if (st != TERN_OK) return tern_fail_context(err, st, "writing tensor %s", name);
    ctx->done_bytes += src_bytes;
    if (ctx->progress) ctx->progress(ctx->progress_user, ctx->done_bytes, ctx->total_bytes, name);
    return TERN_OK;
}

tern_status tern_convert_add_st_tensor(tern_convert_ctx *ctx, const char *name,
                                       const tern_st_tensor *src, uint32_t ndim,
                                       const uint64_t *dims, tern_encoding enc, tern_error *err) {
    if (src->dtype != TERN_ST_F32 && src->dtype != TERN_ST_F16 && src->dtype != TERN_ST_BF16 &&
        src->dtype != TERN_ST_F64)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor %s: source dtype %s is not a float type",
                         src->name, tern_st_dtype_name(src->dtype));
    uint64_t count = 1;
    for (uint32_t d = 0; d < ndim && d < 4; d++) count *= dims[d];
    if (ndim < 1 || ndim > 4 || count != src->n_elements)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "tensor %s: cannot be written with %u dimensions of %llu elements",
                         src->name, ndim, (unsigned long long)count);
    if (src->n_elements > SIZE_MAX / sizeof(float))
        return tern_fail(err, TERN_ERR_NO_MEMORY, "tensor %s is too large for this machine",
                         src->name);
    float *buf = malloc(src->n_elements ? (size_t)src->n_elements * sizeof(float) : 1);
    if (!buf)
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor %s (%llu elements)",
                         src->name, (unsigned long long)src->n_elements);
    tern_status st = tern_st_to_f32(src, buf, err);
    if (st == TERN_OK) st = tern_convert_add_f32_tensor(ctx, name, ndim, dims, buf, enc, src->size, err);
    free(buf);
    return st;
}

tern_status tern_convert(const char *src_path, const char *dst_path,
                         const tern_convert_options *opts, tern_error *err) {
    if (!src_path || !dst_path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_convert: NULL source or destination");
    tern_convert_options defaults;
    if (!opts) {
        tern_convert_options_default(&defaults);
        opts = &defaults;
    }
    if (opts->struct_size < offsetof(tern_convert_options, reserved))
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "tern_convert_options.struct_size is %u: fill it with "
                         "tern_convert_options_default",
                         opts->struct_size);
    switch (opts->weights) {
    case TERN_WEIGHTS_F32:
    case TERN_WEIGHTS_F16:
    case TERN_WEIGHTS_BF16:
        break;
    case TERN_WEIGHTS_Q8:
    case TERN_WEIGHTS_Q4:
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "weight encoding %s is not supported by the converter yet",
                         opts->weights == TERN_WEIGHTS_Q8 ? "q8" : "q4");
    default:
        return tern_fail(err, TERN_ERR_INVALID_ARG, "unknown weight encoding %d",
                         (int)opts->weights);
    }

    struct stat sb;
    if (stat(src_path, &sb) != 0)
        return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", src_path, strerror(errno));
    const tern_importer *imp = NULL;
    for (size_t i = 0; i < TERN_N_IMPORTERS && !imp; i++)
        if (tern_importers[i]->probe(src_path)) imp = tern_importers[i];
    if (!imp)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "cannot convert %s: not a Hugging Face model folder (a directory with "
                         "config.json)",
                         src_path);

    tern_convert_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.src_path = src_path;
    ctx.tokenizer_path = opts->tokenizer_path;
    ctx.weights = opts->weights;
    ctx.progress = opts->progress;
    ctx.progress_user = opts->progress_user;

    tern_status st = tern_writer_open(dst_path, &ctx.writer, err);
    if (st != TERN_OK) return st;
    char version[32];
    snprintf(version, sizeof version, "tern %d.%d.0", TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
    st = tern_writer_set_str(ctx.writer, TERN_KEY_CONVERTER, version, strlen(version), err);
    if (st == TERN_OK) st = imp->convert(&ctx, err);
    if (st != TERN_OK) {
        tern_writer_abort(ctx.writer);
        return st;
    }
    return tern_writer_finish(ctx.writer, err); /* removes the temporary file on failure */
}
