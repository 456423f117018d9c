/* Internals of the Hugging Face importer, shared by the per-architecture
 * converters (hf.c: Llama family and the table of architectures). */
#ifndef TERN_CONVERTER_HF_INTERNAL_H
#define TERN_CONVERTER_HF_INTERNAL_H

#include <json-c/json.h>
#include <stdint.h>

#include "converter/convert_internal.h"
#include "formats/keys.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_HF_MAX_CONFIG (16u << 20) /* config.json */
#define TERN_HF_MAX_INDEX (64u << 20)  /* model.safetensors.index.json */
#define TERN_HF_MAX_LAYERS 4096u
#define TERN_HF_MAX_DIM (1u << 26)     /* any hidden size, head count or vocabulary */

struct tern_hf_arch;

typedef tern_status (*tern_hf_convert_fn)(tern_convert_ctx *ctx, const struct tern_hf_arch *arch,
                                          json_object *cfg, tern_error *err);

/* One entry per Hugging Face class; Mamba, RWKV and ViT slot in here. */
typedef struct tern_hf_arch {
    const char *hf_class;   /* "architectures"[0] */
    const char *model_type; /* "model_type", used when "architectures" is absent */
    const char *tern_arch;  /* general.architecture */
    tern_hf_convert_fn convert;
} tern_hf_arch;

/* Each architecture's converter (the table is in hf.c). */
tern_status tern_hf_convert_decoder(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                    json_object *cfg, tern_error *err);
tern_status tern_hf_convert_mamba(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                  json_object *cfg, tern_error *err);
tern_status tern_hf_convert_rwkv4(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                  json_object *cfg, tern_error *err);
/* ViTForImageClassification and timm vit_* (config "architecture"). */
tern_status tern_hf_convert_vit(tern_convert_ctx *ctx, const tern_hf_arch *arch, json_object *cfg,
                                tern_error *err);

/* ---- config.json ---------------------------------------------------------- */
tern_status tern_hf_read_json(const char *path, size_t max_size, json_object **out, tern_error *err);
/* The field `key`, or NULL when absent or JSON null (both mean "use the default"). */
json_object *tern_hf_field(json_object *obj, const char *key);
/* An integer in [1, max]; `def` when absent and def != 0, else an error. */
tern_status tern_hf_get_dim(json_object *cfg, const char *key, uint32_t def, uint32_t max,
                            uint32_t *out, tern_error *err);
tern_status tern_hf_get_number(json_object *cfg, const char *key, double def, double *out,
                               tern_error *err);
tern_status tern_hf_get_bool(json_object *cfg, const char *key, int def, int *out, tern_error *err);
/* bos/eos: an integer, a list whose first element is used, or null (-1). */
tern_status tern_hf_get_token(json_object *cfg, const char *key, uint32_t n_vocab, int32_t *out,
                              tern_error *err);

/* ---- Weights: one file or an index over shards ------------------------------ */
typedef struct tern_hf_weights {
    tern_safetensors *shards;
    char **shard_names; /* file names inside the folder */
    uint32_t n_shards;
    json_object *index;      /* owned; NULL for a single file */
    json_object *weight_map; /* inside index */
} tern_hf_weights;

tern_status tern_hf_weights_open(const char *dir, tern_hf_weights *w, tern_error *err);
void tern_hf_weights_close(tern_hf_weights *w);
/* Finds a tensor; *out is NULL when the checkpoint does not have it. */
tern_status tern_hf_weights_get(const tern_hf_weights *w, const char *name,
                                const tern_st_tensor **out, tern_error *err);

/* ---- The conversion plan: every tensor found and checked before writing ---- */
typedef struct tern_hf_job {
    const tern_st_tensor *src;
    char dst[64];
    uint32_t ndim;     /* the shape written, same element count as src */
    uint64_t dims[4];
    int keep_f32;      /* stays F32 whatever the weight encoding (small, precision-critical) */
} tern_hf_job;

typedef struct tern_hf_plan {
    tern_hf_job *jobs;
    uint32_t n, cap;
} tern_hf_plan;

void tern_hf_format_shape(char *buf, size_t size, uint32_t ndim, const uint64_t *dims);
/* Looks up `src_name`, checks that it has the shape [d0] (d1 == 0) or
 * [d0, d1], and queues it under `dst_name`. */
tern_status tern_hf_plan_add(tern_hf_plan *plan, const tern_hf_weights *w, const char *src_name,
                             const char *dst_name, uint64_t d0, uint64_t d1, tern_error *err);
/* The general form: the source must have exactly src_dims; it is written with
 * dst_dims (same element count: a reshape such as [n, 1, k] -> [n, k]). */
tern_status tern_hf_plan_add_shaped(tern_hf_plan *plan, const tern_hf_weights *w,
                                    const char *src_name, const char *dst_name, uint32_t src_ndim,
                                    const uint64_t *src_dims, uint32_t dst_ndim,
                                    const uint64_t *dst_dims, int keep_f32, tern_error *err);
/* Converts and writes every planned tensor, with progress. */
tern_status tern_hf_plan_write(tern_convert_ctx *ctx, const tern_hf_plan *plan, tern_error *err);
/* general.architecture, general.name (the folder's name), general.source. */
tern_status tern_hf_write_general_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                       tern_error *err);

/* ---- tokenizer.json (hf_tokenizer.c) ---------------------------------------- */
#define TERN_HF_MAX_TOKENIZER (64u << 20) /* tokenizer.json */

/* A tokenizer read from a folder's tokenizer.json and tokenizer_config.json;
 * desc's strings point into the storage below. */
typedef struct tern_hf_tokenizer {
    int found; /* 0: the folder has no tokenizer.json (desc is empty) */
    tern_tokenizer_desc desc;
    const char *chat_template; /* NULL when none */
    size_t chat_template_len;
    /* storage */
    json_object *json, *config;
    const char **tokens;
    uint32_t *token_lens;
    float *scores;
    int32_t *types;
    const char **merges;
    uint32_t *merge_lens;
    char *text, *merge_text, *template_buf;
} tern_hf_tokenizer;

/* Reads dir/tokenizer.json (+ tokenizer_config.json, chat_template.jinja);
 * cfg (config.json, may be NULL) supplies fallback BOS/EOS/pad ids; n_vocab
 * (0: no check) pads the vocabulary with "[PAD<id>]" tokens and is an error
 * when the tokenizer has more. t is freed on failure. */
tern_status tern_hf_tokenizer_load(const char *dir, json_object *cfg, uint32_t n_vocab,
                                   tern_hf_tokenizer *t, tern_error *err);
void tern_hf_tokenizer_free(tern_hf_tokenizer *t);
/* Text-model converters: writes the folder's tokenizer and chat template
 * into ctx->writer (nothing when there is no tokenizer.json). */
tern_status tern_hf_write_tokenizer(tern_convert_ctx *ctx, json_object *cfg, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
