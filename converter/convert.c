/* tern_convert: picks an importer for the source, streams its tensors into a
 * .tern writer and makes the result appear atomically at the destination. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "converter/calib.h"
#include "converter/convert_internal.h"
#include "converter/quantize.h"
#include "converter/tile_layout.h"
#include "converter/sparse.h"
#include "formats/keys.h"

/* The fields added after tokenizer_path took their bytes from reserved (the
 * layout is counted with 8-byte pointers: 32-bit targets differ anyway). */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(tern_convert_options) == offsetof(tern_convert_options, group_size) + 64,
               "tern_convert_options must keep its size");
#endif

/* Source kinds, most specific first. GGUF and llama2.c files slot in here;
 * new Hugging Face architectures go into hf.c's own table. */
static const tern_importer *const tern_importers[] = {
    &tern_importer_gguf,
    &tern_importer_rwkvcpp,
    &tern_importer_llama2c,
    &tern_importer_hf,
};
#define TERN_N_IMPORTERS (sizeof tern_importers / sizeof tern_importers[0])

void tern_convert_options_default(tern_convert_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->weights = TERN_WEIGHTS_F32;
    opts->group_size = 32;
    opts->embed_weights = TERN_IO_AUTO;
    opts->output_weights = TERN_IO_AUTO;
}

tern_encoding tern_convert_encoding(const tern_convert_ctx *ctx, uint32_t ndim) {
    if (ndim < 2) return TERN_ENC_F32;
    switch (ctx->weights) {
    case TERN_WEIGHTS_F16: return TERN_ENC_F16;
    case TERN_WEIGHTS_BF16: return TERN_ENC_BF16;
    case TERN_WEIGHTS_Q8: return TERN_ENC_Q8;
    case TERN_WEIGHTS_Q4: return TERN_ENC_Q4;
    case TERN_WEIGHTS_KEEP: return TERN_ENC_F16;
    default: return TERN_ENC_F32;
    }
}

/* AUTO for the embedding and output layer: Q8 under a quantised body (they
 * are the most sensitive matrices, and the largest ones of small models),
 * KEEP under keep, otherwise the body's encoding. */
static tern_io_weights tern_io_resolve(tern_io_weights io, tern_weight_type body) {
    if (io != TERN_IO_AUTO) return io;
    switch (body) {
    case TERN_WEIGHTS_F16: return TERN_IO_F16;
    case TERN_WEIGHTS_BF16: return TERN_IO_BF16;
    case TERN_WEIGHTS_Q8:
    case TERN_WEIGHTS_Q4: return TERN_IO_Q8;
    case TERN_WEIGHTS_KEEP: return TERN_IO_KEEP;
    default: return TERN_IO_F32;
    }
}

static tern_encoding tern_io_encoding(tern_io_weights io) {
    switch (io) {
    case TERN_IO_F16:
    case TERN_IO_KEEP: return TERN_ENC_F16;
    case TERN_IO_BF16: return TERN_ENC_BF16;
    case TERN_IO_Q8: return TERN_ENC_Q8;
    case TERN_IO_Q4: return TERN_ENC_Q4;
    default: return TERN_ENC_F32;
    }
}

/* The embedding/output setting that governs `name`, or NULL for other tensors. */
static const tern_io_weights *tern_io_for(const tern_convert_ctx *ctx, const char *name) {
    if (strcmp(name, TERN_T_TOKEN_EMBD) == 0) return &ctx->embed;
    if (strcmp(name, TERN_T_OUTPUT) == 0) return &ctx->output;
    return NULL;
}

tern_encoding tern_convert_tensor_encoding(const tern_convert_ctx *ctx, const char *name,
                                           uint32_t ndim, uint64_t cols, tern_encoding enc,
                                           uint32_t *group) {
    *group = 0;
    if (ndim != 2 || enc != tern_convert_encoding(ctx, 2)) return enc;
    const tern_io_weights *io = tern_io_for(ctx, name);
    if (io) enc = tern_io_encoding(*io);
    if (enc != TERN_ENC_Q8 && enc != TERN_ENC_Q4) return enc;
    const uint64_t g = ctx->group_size == TERN_GROUP_PER_ROW ? cols : ctx->group_size;
    if (g == 0 || g > UINT32_MAX - 1 || cols % g != 0 || (enc == TERN_ENC_Q4 && g % 2 != 0))
        return TERN_ENC_F16;
    *group = (uint32_t)g;
    return enc;
}

int tern_convert_keeps(const tern_convert_ctx *ctx, const char *name) {
    const tern_io_weights *io = tern_io_for(ctx, name);
    return io ? *io == TERN_IO_KEEP : ctx->weights == TERN_WEIGHTS_KEEP;
}

tern_status tern_convert_add_planes(tern_convert_ctx *ctx, const char *name,
                                    const tern_tensor_desc *desc,
                                    const void *const planes[TERN_PLANE_COUNT], uint64_t src_bytes,
                                    tern_error *err) {
    tern_status st;
    if (!ctx->row_major && tern_tiles_eligible(desc, TERN_TILE_ROWS)) {
        uint64_t sizes[TERN_PLANE_COUNT];
        tern_tensor_plane_sizes(desc, sizes);
        void *tiled[TERN_PLANE_COUNT] = {NULL, NULL, NULL, NULL};
        st = TERN_OK;
        for (int i = 0; i < TERN_PLANE_COUNT; i++) /* the index plane too: 2:4, 1:4 tiles */
            if (sizes[i] && !(tiled[i] = malloc((size_t)sizes[i])))
                st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory tiling tensor %s", name);
        if (st == TERN_OK) {
            tern_tensor_desc td;
            tern_tiles_from_rows(desc, TERN_TILE_ROWS, planes, tiled, &td);
            const void *tp[TERN_PLANE_COUNT] = {tiled[0], tiled[1], tiled[2], tiled[3]};
            st = tern_writer_add_tensor(ctx->writer, name, &td, tp, err);
        }
        for (int i = 0; i < TERN_PLANE_COUNT; i++) free(tiled[i]);
    } else {
        st = tern_writer_add_tensor(ctx->writer, name, desc, planes, err);
    }
    if (st != TERN_OK) return tern_fail_context(err, st, "writing tensor %s", name);
    ctx->done_bytes += src_bytes;
    if (ctx->progress) ctx->progress(ctx->progress_user, ctx->done_bytes, ctx->total_bytes, name);
    return TERN_OK;
}

/* Quantises buf (rows x cols) into freshly allocated planes and writes them. */
static tern_status tern_convert_add_quantized(tern_convert_ctx *ctx, const char *name,
                                              const tern_tensor_desc *desc, const float *buf,
                                              uint64_t src_bytes, tern_error *err) {
    uint64_t sizes[TERN_PLANE_COUNT];
    if (tern_tensor_plane_sizes(desc, sizes) != 0)
        return tern_fail(err, TERN_ERR_INTERNAL, "tensor %s: inconsistent quantised description", name);
    const tern_quant_params qp = {desc->encoding, desc->group_size, ctx->asymmetric,
                                  ctx->clip_search};
    uint8_t *values = malloc((size_t)sizes[TERN_PLANE_VALUES]);
    uint16_t *scales = malloc((size_t)sizes[TERN_PLANE_SCALES]);
    uint8_t *zeros = sizes[TERN_PLANE_ZEROS] ? malloc((size_t)sizes[TERN_PLANE_ZEROS]) : NULL;
    uint8_t *tmp = malloc(desc->group_size);
    tern_status st;
    if (!values || !scales || !tmp || (sizes[TERN_PLANE_ZEROS] && !zeros)) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory quantising tensor %s", name);
    } else {
        tern_quantize_rows(&qp, (size_t)desc->dims[0], (size_t)desc->dims[1], buf, values, scales,
                           zeros, tmp);
        const void *planes[TERN_PLANE_COUNT] = {values, scales, zeros, NULL};
        st = tern_convert_add_planes(ctx, name, desc, planes, src_bytes, err);
    }
    free(values);
    free(scales);
    free(zeros);
    free(tmp);
    return st;
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

void tern_convert_sparse_desc(const tern_convert_ctx *ctx, uint64_t rows, uint64_t cols,
                              tern_tensor_desc *desc) {
    memset(desc, 0, sizeof *desc);
    desc->encoding = tern_convert_encoding(ctx, 2);
    desc->layout = TERN_LAYOUT_ROW_MAJOR;
    desc->ndim = 2;
    desc->dims[0] = rows;
    desc->dims[1] = cols;
    desc->sparse_n = (uint8_t)ctx->sparse_n;
    desc->sparse_m = (uint8_t)ctx->sparse_m;
    const uint64_t stored = cols / ctx->sparse_m * ctx->sparse_n;
    if (desc->encoding == TERN_ENC_Q8 || desc->encoding == TERN_ENC_Q4) {
        const uint64_t g = ctx->group_size == TERN_GROUP_PER_ROW ? stored : ctx->group_size;
        if (g == 0 || g > UINT32_MAX - 1 || stored % g != 0 ||
            (desc->encoding == TERN_ENC_Q4 && g % 2 != 0)) {
            desc->encoding = TERN_ENC_F16;
        } else {
            desc->group_size = (uint32_t)g;
            if (ctx->asymmetric) desc->flags = TERN_TENSOR_HAS_ZERO_POINT;
        }
    }
}

/* Packs buf (a 2-D matrix) N:M sparse as tern_convert_sparse_desc says. */
static tern_status tern_convert_add_sparse(tern_convert_ctx *ctx, const char *name,
                                           const uint64_t *dims, const float *buf,
                                           uint64_t src_bytes, tern_error *err) {
    tern_tensor_desc desc;
    tern_convert_sparse_desc(ctx, dims[0], dims[1], &desc);
    uint64_t sizes[TERN_PLANE_COUNT];
    if (tern_tensor_plane_sizes(&desc, sizes) != 0)
        return tern_fail(err, TERN_ERR_INTERNAL, "tensor %s: inconsistent sparse description", name);
    void *p[TERN_PLANE_COUNT] = {NULL, NULL, NULL, NULL};
    tern_status st = TERN_OK;
    for (int i = 0; i < TERN_PLANE_COUNT; i++) {
        if (sizes[i] && !(p[i] = malloc((size_t)sizes[i])))
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory packing sparse tensor %s", name);
    }
    if (st == TERN_OK)
        st = tern_sparse_pack(&desc, buf, ctx->clip_search, NULL, NULL, p[TERN_PLANE_VALUES],
                              p[TERN_PLANE_SCALES], p[TERN_PLANE_ZEROS], p[TERN_PLANE_INDEX], err);
    if (st == TERN_OK) {
        const void *planes[TERN_PLANE_COUNT] = {p[0], p[1], p[2], p[3]};
        st = tern_convert_add_planes(ctx, name, &desc, planes, src_bytes, err);
    }
    for (int i = 0; i < TERN_PLANE_COUNT; i++) free(p[i]);
    return st;
}

tern_status tern_convert_add_f32_tensor(tern_convert_ctx *ctx, const char *name, uint32_t ndim,
                                        const uint64_t *dims, float *buf, tern_encoding enc,
                                        uint64_t src_bytes, tern_error *err) {
    uint32_t group = 0;
    if (ctx->tensor_hook) { /* calibration methods: converter/calib.h */
        int done = 0;
        tern_status hst = ctx->tensor_hook(ctx->tensor_hook_user, ctx, name, ndim, dims, buf,
                                           src_bytes, &done, err);
        if (hst != TERN_OK || done) return hst;
    }
    if (ctx->prune && ndim == 2 && dims[1] % ctx->sparse_m == 0 &&
        enc == tern_convert_encoding(ctx, 2) && !tern_io_for(ctx, name) &&
        tern_sparse_selects(ctx->sparse_layers, name))
        return tern_convert_add_sparse(ctx, name, dims, buf, src_bytes, err);
    if (ndim == 2) enc = tern_convert_tensor_encoding(ctx, name, ndim, dims[1], enc, &group);
    if (enc != TERN_ENC_F32 && enc != TERN_ENC_F16 && enc != TERN_ENC_BF16 &&
        !((enc == TERN_ENC_Q8 || enc == TERN_ENC_Q4) && group))
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
    if (group) {
        desc.group_size = group;
        if (ctx->asymmetric) desc.flags = TERN_TENSOR_HAS_ZERO_POINT;
        return tern_convert_add_quantized(ctx, name, &desc, buf, src_bytes, err);
    }
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
    return tern_convert_add_planes(ctx, name, &desc, planes, src_bytes, err);
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
    case TERN_WEIGHTS_Q8:
    case TERN_WEIGHTS_Q4:
    case TERN_WEIGHTS_KEEP:
        break;
    default:
        return tern_fail(err, TERN_ERR_INVALID_ARG, "unknown weight encoding %d",
                         (int)opts->weights);
    }
    if ((unsigned)opts->embed_weights > TERN_IO_KEEP || (unsigned)opts->output_weights > TERN_IO_KEEP)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "unknown embedding/output encoding %d/%d (0..%d)",
                         (int)opts->embed_weights, (int)opts->output_weights, (int)TERN_IO_KEEP);
    const uint32_t group = opts->group_size ? opts->group_size : 32;
    if (group != TERN_GROUP_PER_ROW && group % 2 != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "group size %u must be even (Q4 packs two values per byte), or "
                         "TERN_GROUP_PER_ROW",
                         group);
    if (opts->prune > TERN_PRUNE_SPARSEGPT)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "unknown pruning method %u", opts->prune);
    if (opts->prune && !tern_sparse_pattern_supported(opts->sparse_n, opts->sparse_m))
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "sparsity %u:%u is not supported (2:4, 1:4, 2:8 or 4:8)", opts->sparse_n,
                         opts->sparse_m);
    if (opts->prune && (opts->weights == TERN_WEIGHTS_KEEP || opts->weights == TERN_WEIGHTS_F32))
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "sparsity needs f16, bf16, q8 or q4 weights (the sparse kernels' encodings)");
    if (opts->asymmetric > 1 || opts->clip_search > 1)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "asymmetric (%u) and clip_search (%u) must be 0 or 1", opts->asymmetric,
                         opts->clip_search);
    if (opts->method > TERN_METHOD_SMOOTHQUANT)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "unknown quantisation method %u (0..%d)",
                         opts->method, (int)TERN_METHOD_SMOOTHQUANT);
    if (opts->method != TERN_METHOD_RTN) {
        static const char *const names[] = {"rtn", "gptq", "awq", "smoothquant"};
        const char *mname = names[opts->method];
        if (!opts->calib_path || !opts->calib_path[0])
            return tern_fail(err, TERN_ERR_INVALID_ARG,
                             "--method %s needs calibration data (--calib FILE: a text, a .ids "
                             "file of token ids, or for vision models a folder of images)",
                             mname);
        if (opts->weights == TERN_WEIGHTS_KEEP)
            return tern_fail(err, TERN_ERR_INVALID_ARG,
                             "--method %s re-quantises the weights: it cannot keep GGUF blocks", mname);
        if (opts->method == TERN_METHOD_GPTQ && opts->weights != TERN_WEIGHTS_Q8 &&
            opts->weights != TERN_WEIGHTS_Q4)
            return tern_fail(err, TERN_ERR_INVALID_ARG, "--method gptq needs q8 or q4 weights");
        if (opts->prune && opts->method != TERN_METHOD_GPTQ)
            return tern_fail(err, TERN_ERR_INVALID_ARG,
                             "--method %s folds scales across layers and cannot be combined with "
                             "--sparsity (use --method gptq or rtn)",
                             mname);
    }
    const int calib_prune = opts->prune == TERN_PRUNE_WANDA || opts->prune == TERN_PRUNE_SPARSEGPT;
    if (calib_prune && (!opts->calib_path || !opts->calib_path[0]))
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "--prune %s needs calibration data (--calib FILE: a text, a .ids file of "
                         "token ids, or for vision models a folder of images or a .npy)",
                         opts->prune == TERN_PRUNE_WANDA ? "wanda" : "sparsegpt");
    if (opts->act_order > 1 || (opts->act_order && opts->method != TERN_METHOD_GPTQ))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "act_order (%u) applies to --method gptq only",
                         opts->act_order);

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
    ctx.embed = tern_io_resolve(opts->embed_weights, opts->weights);
    ctx.output = tern_io_resolve(opts->output_weights, opts->weights);
    ctx.group_size = group;
    ctx.asymmetric = opts->asymmetric;
    ctx.clip_search = opts->clip_search;
    ctx.row_major = opts->row_major;
    ctx.progress = opts->progress;
    ctx.progress_user = opts->progress_user;
    ctx.prune = opts->prune;
    ctx.sparse_n = opts->sparse_n;
    ctx.sparse_m = opts->sparse_m;
    ctx.sparse_layers = opts->sparse_layers;

    tern_calib_result *calib = NULL;
    if (opts->method != TERN_METHOD_RTN || calib_prune) {
        tern_status st = tern_calib_prepare(imp, &ctx, opts, dst_path, &calib, err);
        if (st != TERN_OK) return st;
        ctx.tensor_hook = tern_calib_tensor_hook;
        ctx.tensor_hook_user = calib;
    }
    tern_status st = tern_convert_import(imp, &ctx, dst_path, err);
    tern_calib_result_free(calib);
    return st;
}

tern_status tern_convert_import(const tern_importer *imp, tern_convert_ctx *ctx,
                                const char *dst_path, tern_error *err) {
    tern_status st = tern_writer_open(dst_path, &ctx->writer, err);
    if (st != TERN_OK) return st;
    char version[32];
    snprintf(version, sizeof version, "tern %d.%d.0", TERN_VERSION_MAJOR, TERN_VERSION_MINOR);
    st = tern_writer_set_str(ctx->writer, TERN_KEY_CONVERTER, version, strlen(version), err);
    if (st == TERN_OK) st = imp->convert(ctx, err);
    if (st != TERN_OK) {
        tern_writer_abort(ctx->writer);
        ctx->writer = NULL;
        return st;
    }
    st = tern_writer_finish(ctx->writer, err); /* removes the temporary file on failure */
    ctx->writer = NULL;
    return st;
}
