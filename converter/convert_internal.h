/* Internals shared by tern_convert and its importers. An importer turns one
 * kind of source (a Hugging Face folder, later a GGUF or llama2.c file) into
 * the metadata and tensors of an open .tern writer; convert.c picks the
 * importer, owns the writer and aborts it on any failure. */
#ifndef TERN_CONVERTER_CONVERT_INTERNAL_H
#define TERN_CONVERTER_CONVERT_INTERNAL_H

#include <stdint.h>

#include "formats/encoding.h"
#include "formats/safetensors.h"
#include "formats/tern_file.h"
#include "runtime/tokenizer.h"
#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* State of one conversion, handed to the importer. */
typedef struct tern_convert_ctx {
    const char *src_path;
    const char *tokenizer_path; /* a separate tokenizer file, or NULL */
    tern_writer *writer;
    tern_weight_type weights;  /* encoding of 2-D weights */
    tern_io_weights embed;     /* token_embd.weight, resolved: never AUTO */
    tern_io_weights output;    /* output.weight, resolved: never AUTO */
    uint32_t group_size;       /* Q8/Q4: values per scale, TERN_GROUP_PER_ROW: a row */
    int asymmetric;            /* Q8/Q4 with a zero point per group */
    int clip_search;           /* per-group clipping search */
    int row_major;             /* 1: no ROW_INTERLEAVED tiles (converter/tile_layout.h) */
    tern_progress_fn progress; /* may be NULL */
    void *progress_user;
    uint64_t done_bytes;  /* source bytes converted so far */
    uint64_t total_bytes; /* source bytes to convert, set by the importer */
    /* N:M sparsity (converter/sparse.h): 2-D tensors selected by
     * sparse_layers are packed keeping the sparse_n largest |w| of every
     * sparse_m; a calibration method (Wanda, SparseGPT) prunes buf before
     * tern_convert_add_f32_tensor, which then keeps its mask. */
    int prune;                 /* tern_prune_method; 0: dense */
    unsigned sparse_n, sparse_m;
    const char *sparse_layers; /* glob, NULL: every matrix in the blocks */
    /* Calibration methods (converter/calib.h): called first by
     * tern_convert_add_f32_tensor for every float tensor; may rewrite buf
     * (same shape) or add the tensor itself (*done = 1). NULL: none. */
    tern_status (*tensor_hook)(void *user, struct tern_convert_ctx *ctx, const char *name,
                               uint32_t ndim, const uint64_t *dims, float *buf,
                               uint64_t src_bytes, int *done, tern_error *err);
    void *tensor_hook_user;
} tern_convert_ctx;

typedef struct tern_importer {
    const char *name; /* "hf" */
    /* 1 when src looks like this importer's input (cheap: no parsing). */
    int (*probe)(const char *src_path);
    /* Writes metadata and tensors into ctx->writer (not finish/abort). */
    tern_status (*convert)(tern_convert_ctx *ctx, tern_error *err);
} tern_importer;

extern const tern_importer tern_importer_hf;
extern const tern_importer tern_importer_gguf;
extern const tern_importer tern_importer_llama2c;
extern const tern_importer tern_importer_rwkvcpp;

/* Runs importer imp into a new .tern at dst_path with ctx's settings (opens
 * ctx->writer, finishes or aborts it). */
tern_status tern_convert_import(const tern_importer *imp, tern_convert_ctx *ctx,
                                const char *dst_path, tern_error *err);

/* Writes a tokenizer's tokenizer.* metadata (formats/keys.h). */
tern_status tern_tokenizer_desc_write(tern_writer *w, const tern_tokenizer_desc *desc, tern_error *err);

/* The .tern encoding for a source tensor of `ndim` dimensions: 1-D tensors
 * (norms, biases) stay F32, others follow ctx->weights (KEEP: F16, the
 * encoding of float tensors of a keep conversion). */
tern_encoding tern_convert_encoding(const tern_convert_ctx *ctx, uint32_t ndim);

/* What a 2-D tensor `name` of `cols` columns becomes when an importer asked
 * for `enc` = tern_convert_encoding(ctx, 2) (the body's encoding): the token
 * embedding and the output layer take their own encodings, and Q8/Q4
 * matrices whose columns are not a multiple of the group fall back to F16.
 * Any other request is returned as is. *group receives the group size for
 * Q8/Q4. */
tern_encoding tern_convert_tensor_encoding(const tern_convert_ctx *ctx, const char *name,
                                           uint32_t ndim, uint64_t cols, tern_encoding enc,
                                           uint32_t *group);

/* 1 when a quantised source tensor `name` (2-D) is to be kept exactly as it
 * is (--weights keep, or --embed/--output keep for those two). */
int tern_convert_keeps(const tern_convert_ctx *ctx, const char *name);

/* The description of a rows x cols matrix packed N:M sparse (ctx's
 * sparse_n:sparse_m) with the body's value encoding, the group counted over
 * kept values (F16 when the group does not divide them). */
void tern_convert_sparse_desc(const tern_convert_ctx *ctx, uint64_t rows, uint64_t cols,
                              tern_tensor_desc *desc);

/* Adds a tensor whose planes are ready (e.g. GGUF blocks kept as they are)
 * and reports src_bytes of progress. */
tern_status tern_convert_add_planes(tern_convert_ctx *ctx, const char *name,
                                    const tern_tensor_desc *desc,
                                    const void *const planes[TERN_PLANE_COUNT], uint64_t src_bytes,
                                    tern_error *err);

/* Converts one safetensors tensor to `enc` (F32, F16 or BF16) and adds it to
 * the writer under `name`, holding one tensor's float buffer at a time; then
 * reports progress. The source must have a float dtype; it is written with
 * the shape (ndim, dims), which must hold as many elements. */
tern_status tern_convert_add_st_tensor(tern_convert_ctx *ctx, const char *name,
                                       const tern_st_tensor *src, uint32_t ndim,
                                       const uint64_t *dims, tern_encoding enc, tern_error *err);

/* Adds a tensor from a float buffer of the shape's element count, narrowed
 * in place to `enc` (F32, F16 or BF16) or quantised to Q8/Q4 with ctx's
 * settings (into a buffer of its own), after tern_convert_tensor_encoding,
 * and reports src_bytes of progress. */
tern_status tern_convert_add_f32_tensor(tern_convert_ctx *ctx, const char *name, uint32_t ndim,
                                        const uint64_t *dims, float *buf, tern_encoding enc,
                                        uint64_t src_bytes, tern_error *err);

/* Last path component of `path` without trailing slashes, into out[size]. */
void tern_convert_basename(const char *path, char *out, size_t size);

#ifdef __cplusplus
}
#endif
#endif
