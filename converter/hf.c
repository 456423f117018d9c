/* Hugging Face importer: a folder with config.json and safetensors weights
 * (model.safetensors, or shards listed by model.safetensors.index.json).
 * Architectures are dispatched through tern_hf_archs; Llama-family decoders
 * (Llama, Qwen2) share one converter that differs only in its config. */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/keys.h"

#define TERN_HF_MAX_CONFIG (16u << 20) /* config.json */
#define TERN_HF_MAX_INDEX (64u << 20)  /* model.safetensors.index.json */
#define TERN_HF_MAX_LAYERS 4096u
#define TERN_HF_MAX_DIM (1u << 26)     /* any hidden size, head count or vocabulary */

/* ---- JSON files and fields ---------------------------------------------- */

static tern_status tern_hf_read_json(const char *path, size_t max_size, json_object **out,
                                     tern_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(max_size + 1);
    if (!buf) {
        fclose(f);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, max_size + 1, f);
    int failed = ferror(f);
    fclose(f);
    tern_status st = TERN_OK;
    if (failed) {
        st = tern_fail(err, TERN_ERR_IO, "cannot read %s", path);
    } else if (n > max_size) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s is larger than %zu bytes", path, max_size);
    } else {
        json_tokener *tok = json_tokener_new_ex(64);
        if (!tok) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory parsing %s", path);
        } else {
            json_object *root = json_tokener_parse_ex(tok, buf, (int)n);
            enum json_tokener_error jerr = json_tokener_get_error(tok);
            size_t end = json_tokener_get_parse_end(tok);
            json_tokener_free(tok);
            if (!root || json_object_get_type(root) != json_type_object) {
                st = tern_fail(err, TERN_ERR_FORMAT, "%s: not a JSON object (%s at byte %zu)",
                               path,
                               root ? "another value"
                                    : jerr == json_tokener_continue ? "truncated"
                                                                    : json_tokener_error_desc(jerr),
                               end);
                json_object_put(root);
            } else {
                *out = root;
            }
        }
    }
    free(buf);
    return st;
}

/* The field `key`, or NULL when absent or JSON null (both mean "use the default"). */
static json_object *tern_hf_field(json_object *obj, const char *key) {
    json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v)) return NULL;
    return json_object_get_type(v) == json_type_null ? NULL : v;
}

/* An integer in [1, max]; `def` when absent and def != 0, else an error. */
static tern_status tern_hf_get_dim(json_object *cfg, const char *key, uint32_t def, uint32_t max,
                                   uint32_t *out, tern_error *err) {
    json_object *v = tern_hf_field(cfg, key);
    if (!v) {
        if (def) {
            *out = def;
            return TERN_OK;
        }
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is missing", key);
    }
    if (json_object_get_type(v) != json_type_int)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is not an integer", key);
    int64_t x = json_object_get_int64(v);
    if (x < 1 || (uint64_t)x > max)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" = %lld is outside [1, %u]",
                         key, (long long)x, max);
    *out = (uint32_t)x;
    return TERN_OK;
}

static tern_status tern_hf_get_number(json_object *cfg, const char *key, double def, double *out,
                                      tern_error *err) {
    json_object *v = tern_hf_field(cfg, key);
    if (!v) {
        *out = def;
        return TERN_OK;
    }
    json_type t = json_object_get_type(v);
    if (t != json_type_double && t != json_type_int)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is not a number", key);
    *out = json_object_get_double(v);
    return TERN_OK;
}

static tern_status tern_hf_get_bool(json_object *cfg, const char *key, int def, int *out,
                                    tern_error *err) {
    json_object *v = tern_hf_field(cfg, key);
    if (!v) {
        *out = def;
        return TERN_OK;
    }
    if (json_object_get_type(v) != json_type_boolean)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is not true or false", key);
    *out = json_object_get_boolean(v);
    return TERN_OK;
}

/* bos/eos: an integer, a list whose first element is used, or null (-1). */
static tern_status tern_hf_get_token(json_object *cfg, const char *key, uint32_t n_vocab,
                                     int32_t *out, tern_error *err) {
    json_object *v = tern_hf_field(cfg, key);
    if (v && json_object_get_type(v) == json_type_array)
        v = json_object_array_length(v) ? json_object_array_get_idx(v, 0) : NULL;
    if (!v || json_object_get_type(v) == json_type_null) {
        *out = -1;
        return TERN_OK;
    }
    if (json_object_get_type(v) != json_type_int)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is not a token id", key);
    int64_t x = json_object_get_int64(v);
    if (x < 0 || x >= (int64_t)n_vocab)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: \"%s\" = %lld is outside the vocabulary [0, %u)", key,
                         (long long)x, n_vocab);
    *out = (int32_t)x;
    return TERN_OK;
}

/* ---- Weights: one file or an index over shards --------------------------- */

typedef struct tern_hf_weights {
    tern_safetensors *shards;
    char **shard_names; /* file names inside the folder */
    uint32_t n_shards;
    json_object *index;      /* owned; NULL for a single file */
    json_object *weight_map; /* inside index */
} tern_hf_weights;

static void tern_hf_weights_close(tern_hf_weights *w) {
    for (uint32_t i = 0; i < w->n_shards; i++) {
        tern_safetensors_close(&w->shards[i]);
        free(w->shard_names[i]);
    }
    free(w->shards);
    free(w->shard_names);
    json_object_put(w->index);
    memset(w, 0, sizeof *w);
}

static int tern_hf_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static tern_status tern_hf_weights_add_shard(tern_hf_weights *w, const char *dir,
                                             const char *file, tern_error *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s/%s is too long", dir, file);
    tern_safetensors *shards = realloc(w->shards, (w->n_shards + 1) * sizeof *shards);
    if (shards) w->shards = shards;
    char **names = realloc(w->shard_names, (w->n_shards + 1) * sizeof *names);
    if (names) w->shard_names = names;
    char *name = strdup(file);
    if (!shards || !names || !name) {
        free(name);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory opening shards");
    }
    tern_status st = tern_safetensors_open(path, &w->shards[w->n_shards], err);
    if (st != TERN_OK) {
        free(name);
        return st;
    }
    w->shard_names[w->n_shards++] = name;
    return TERN_OK;
}

static tern_status tern_hf_weights_open(const char *dir, tern_hf_weights *w, tern_error *err) {
    memset(w, 0, sizeof *w);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
    if (tern_hf_file_exists(path)) return tern_hf_weights_add_shard(w, dir, "model.safetensors", err);

    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!tern_hf_file_exists(path))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "%s has neither model.safetensors nor model.safetensors.index.json "
                         "(only safetensors checkpoints are supported)",
                         dir);
    tern_status st = tern_hf_read_json(path, TERN_HF_MAX_INDEX, &w->index, err);
    if (st != TERN_OK) return st;
    if (!json_object_object_get_ex(w->index, "weight_map", &w->weight_map) ||
        json_object_get_type(w->weight_map) != json_type_object) {
        tern_hf_weights_close(w);
        return tern_fail(err, TERN_ERR_FORMAT, "%s: \"weight_map\" is missing or not an object",
                         path);
    }
    /* Open each distinct shard once, in order of first mention. */
    json_object_object_foreach(w->weight_map, tname, jfile) {
        const char *file = json_object_get_type(jfile) == json_type_string
                               ? json_object_get_string(jfile)
                               : NULL;
        if (!file || !file[0] || strchr(file, '/') || strcmp(file, "..") == 0 ||
            strcmp(file, ".") == 0) {
            /* tname lives in the index: report before closing it. */
            st = tern_fail(err, TERN_ERR_FORMAT,
                           "%s: tensor %.200s maps to an invalid shard file name", path, tname);
            tern_hf_weights_close(w);
            return st;
        }
        uint32_t i = 0;
        while (i < w->n_shards && strcmp(w->shard_names[i], file) != 0) i++;
        if (i < w->n_shards) continue;
        st = tern_hf_weights_add_shard(w, dir, file, err);
        if (st != TERN_OK) {
            tern_hf_weights_close(w);
            return st;
        }
    }
    return TERN_OK;
}

/* Finds a tensor; *out is NULL when the checkpoint does not have it. */
static tern_status tern_hf_weights_get(const tern_hf_weights *w, const char *name,
                                       const tern_st_tensor **out, tern_error *err) {
    *out = NULL;
    if (!w->weight_map) {
        *out = tern_safetensors_find(&w->shards[0], name);
        return TERN_OK;
    }
    json_object *jfile = NULL;
    if (!json_object_object_get_ex(w->weight_map, name, &jfile)) return TERN_OK;
    const char *file = json_object_get_string(jfile);
    for (uint32_t i = 0; i < w->n_shards; i++) {
        if (strcmp(w->shard_names[i], file) == 0) {
            *out = tern_safetensors_find(&w->shards[i], name);
            if (!*out)
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "the index puts tensor %s in %s, which does not hold it", name,
                                 file);
            return TERN_OK;
        }
    }
    return tern_fail(err, TERN_ERR_INTERNAL, "shard %s of tensor %s was not opened", file, name);
}

/* ---- The conversion plan: every tensor found and checked before writing -- */

typedef struct tern_hf_job {
    const tern_st_tensor *src;
    char dst[64];
} tern_hf_job;

typedef struct tern_hf_plan {
    tern_hf_job *jobs;
    uint32_t n, cap;
} tern_hf_plan;

static void tern_hf_format_shape(char *buf, size_t size, uint32_t ndim, const uint64_t *dims) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, size - at, "[");
    for (uint32_t d = 0; d < ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, "%s%llu", d ? ", " : "",
                               (unsigned long long)dims[d]);
    if (at < size) snprintf(buf + at, size - at, "]");
}

/* Looks up `src_name`, checks that it has the shape [d0] (d1 == 0) or
 * [d0, d1], and queues it under `dst_name`. */
static tern_status tern_hf_plan_add(tern_hf_plan *plan, const tern_hf_weights *w,
                                    const char *src_name, const char *dst_name, uint64_t d0,
                                    uint64_t d1, tern_error *err) {
    const tern_st_tensor *t;
    tern_status st = tern_hf_weights_get(w, src_name, &t, err);
    if (st != TERN_OK) return st;
    if (!t)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the checkpoint",
                         src_name);
    uint64_t want[2] = {d0, d1};
    uint32_t ndim = d1 ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char have_s[160], want_s[64];
        tern_hf_format_shape(have_s, sizeof have_s, t->ndim, t->shape);
        tern_hf_format_shape(want_s, sizeof want_s, ndim, want);
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor %s has shape %s but config.json implies %s", src_name, have_s,
                         want_s);
    }
    if (t->dtype != TERN_ST_F32 && t->dtype != TERN_ST_F16 && t->dtype != TERN_ST_BF16 &&
        t->dtype != TERN_ST_F64)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "tensor %s has dtype %s (F32, F16 or BF16 expected)", src_name,
                         tern_st_dtype_name(t->dtype));
    if (plan->n == plan->cap) {
        uint32_t cap = plan->cap ? plan->cap * 2 : 64;
        tern_hf_job *jobs = realloc(plan->jobs, cap * sizeof *jobs);
        if (!jobs) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory planning tensors");
        plan->jobs = jobs;
        plan->cap = cap;
    }
    tern_hf_job *job = &plan->jobs[plan->n++];
    job->src = t;
    snprintf(job->dst, sizeof job->dst, "%s", dst_name);
    return TERN_OK;
}

/* ---- Llama-family decoders ----------------------------------------------- */

typedef struct tern_hf_decoder {
    uint32_t n_vocab, n_ctx, d_model, n_layer, n_head, n_head_kv, head_dim, d_ff;
    double norm_eps, rope_theta;
    int tied, qkv_bias, o_bias;
    int32_t bos, eos;
} tern_hf_decoder;

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

/* Rope scaling (llama3, linear, yarn, ...) changes the rotation: refuse it
 * rather than convert a model that would then run wrong. */
static tern_status tern_hf_check_rope(json_object *cfg, tern_error *err) {
    static const char *const keys[] = {"rope_scaling", "rope_parameters"};
    for (size_t i = 0; i < 2; i++) {
        json_object *rs = tern_hf_field(cfg, keys[i]);
        if (!rs) continue;
        if (json_object_get_type(rs) != json_type_object)
            return tern_fail(err, TERN_ERR_FORMAT, "config.json: \"%s\" is not an object",
                             keys[i]);
        json_object *type = tern_hf_field(rs, "rope_type");
        if (!type) type = tern_hf_field(rs, "type");
        if (!type) continue;
        const char *s = json_object_get_string(type);
        if (json_object_get_type(type) != json_type_string ||
            (strcmp(s, "default") != 0 && strcmp(s, "none") != 0))
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "config.json: rope scaling type '%.64s' is not supported "
                             "(only default rope)",
                             s);
    }
    return TERN_OK;
}

static tern_status tern_hf_decoder_parse(const tern_hf_arch *arch, json_object *cfg,
                                         tern_hf_decoder *hp, tern_error *err) {
    memset(hp, 0, sizeof *hp);
    int is_qwen2 = strcmp(arch->tern_arch, "qwen2") == 0;
    tern_status st;
    if ((st = tern_hf_get_dim(cfg, "vocab_size", 0, TERN_HF_MAX_DIM, &hp->n_vocab, err)) ||
        (st = tern_hf_get_dim(cfg, "max_position_embeddings", 0, UINT32_MAX, &hp->n_ctx, err)) ||
        (st = tern_hf_get_dim(cfg, "hidden_size", 0, TERN_HF_MAX_DIM, &hp->d_model, err)) ||
        (st = tern_hf_get_dim(cfg, "num_hidden_layers", 0, TERN_HF_MAX_LAYERS, &hp->n_layer,
                              err)) ||
        (st = tern_hf_get_dim(cfg, "num_attention_heads", 0, TERN_HF_MAX_DIM, &hp->n_head,
                              err)) ||
        (st = tern_hf_get_dim(cfg, "num_key_value_heads", hp->n_head, TERN_HF_MAX_DIM,
                              &hp->n_head_kv, err)) ||
        (st = tern_hf_get_dim(cfg, "intermediate_size", 0, TERN_HF_MAX_DIM, &hp->d_ff, err)))
        return st;
    if (!tern_hf_field(cfg, "head_dim") && hp->d_model % hp->n_head != 0)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: hidden_size %u is not a multiple of num_attention_heads %u",
                         hp->d_model, hp->n_head);
    if ((st = tern_hf_get_dim(cfg, "head_dim", hp->d_model / hp->n_head, TERN_HF_MAX_DIM,
                              &hp->head_dim, err)))
        return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: num_attention_heads %u is not a multiple of "
                         "num_key_value_heads %u",
                         hp->n_head, hp->n_head_kv);
    if (hp->head_dim % 2 != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: head_dim %u is odd (rope needs pairs)",
                         hp->head_dim);

    if ((st = tern_hf_get_number(cfg, "rms_norm_eps", 1e-6, &hp->norm_eps, err))) return st;
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: rms_norm_eps %g is not in (0, 1)",
                         hp->norm_eps);
    /* transformers 5 moved rope_theta into rope_parameters; older files have it on top. */
    json_object *rp = tern_hf_field(cfg, "rope_parameters");
    if (tern_hf_field(cfg, "rope_theta"))
        st = tern_hf_get_number(cfg, "rope_theta", 10000.0, &hp->rope_theta, err);
    else
        st = tern_hf_get_number(rp && json_object_get_type(rp) == json_type_object ? rp : NULL,
                                "rope_theta", 10000.0, &hp->rope_theta, err);
    if (st) return st;
    if (!(hp->rope_theta > 1 && hp->rope_theta < 1e30))
        return tern_fail(err, TERN_ERR_FORMAT, "config.json: rope_theta %g is out of range",
                         hp->rope_theta);
    if ((st = tern_hf_check_rope(cfg, err))) return st;

    json_object *act = tern_hf_field(cfg, "hidden_act");
    if (act && (json_object_get_type(act) != json_type_string ||
                strcmp(json_object_get_string(act), "silu") != 0))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "config.json: hidden_act '%.64s' is not supported (only silu)",
                         json_object_get_string(act));
    int mlp_bias;
    if ((st = tern_hf_get_bool(cfg, "mlp_bias", 0, &mlp_bias, err))) return st;
    if (mlp_bias)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "config.json: mlp_bias is not supported");
    if ((st = tern_hf_get_bool(cfg, "tie_word_embeddings", 0, &hp->tied, err))) return st;

    if (is_qwen2) {
        int sliding;
        if ((st = tern_hf_get_bool(cfg, "use_sliding_window", 0, &sliding, err))) return st;
        if (sliding)
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "config.json: use_sliding_window is not supported");
        hp->qkv_bias = 1; /* Qwen2 always has q/k/v biases and none on o_proj */
    } else {
        int bias;
        if ((st = tern_hf_get_bool(cfg, "attention_bias", 0, &bias, err))) return st;
        hp->qkv_bias = hp->o_bias = bias;
    }
    json_object *lt = tern_hf_field(cfg, "layer_types");
    if (lt && json_object_get_type(lt) == json_type_array) {
        for (size_t i = 0; i < json_object_array_length(lt); i++) {
            const char *s = json_object_get_string(json_object_array_get_idx(lt, i));
            if (!s || strcmp(s, "full_attention") != 0)
                return tern_fail(err, TERN_ERR_UNSUPPORTED,
                                 "config.json: layer_types[%zu] '%.64s' is not supported "
                                 "(only full_attention)",
                                 i, s ? s : "null");
        }
    }
    if ((st = tern_hf_get_token(cfg, "bos_token_id", hp->n_vocab, &hp->bos, err)) ||
        (st = tern_hf_get_token(cfg, "eos_token_id", hp->n_vocab, &hp->eos, err)))
        return st;
    return TERN_OK;
}

static tern_status tern_hf_decoder_plan(const tern_hf_decoder *hp, const tern_hf_weights *w,
                                        tern_hf_plan *plan, tern_error *err) {
    const uint64_t d = hp->d_model, ff = hp->d_ff;
    const uint64_t q = (uint64_t)hp->n_head * hp->head_dim;
    const uint64_t kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    tern_status st;
    if ((st = tern_hf_plan_add(plan, w, "model.embed_tokens.weight", TERN_T_TOKEN_EMBD,
                               hp->n_vocab, d, err)) ||
        (st = tern_hf_plan_add(plan, w, "model.norm.weight", TERN_T_OUTPUT_NORM, d, 0, err)))
        return st;
    if (!hp->tied) {
        const tern_st_tensor *t;
        if ((st = tern_hf_weights_get(w, "lm_head.weight", &t, err))) return st;
        if (!t)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor lm_head.weight is missing but tie_word_embeddings is false");
        if ((st = tern_hf_plan_add(plan, w, "lm_head.weight", TERN_T_OUTPUT, hp->n_vocab, d, err)))
            return st;
    }
    /* {HF suffix, tern name, dims, is-bias gate}: bias rows follow their weight. */
    struct {
        const char *hf, *tern;
        uint64_t d0, d1;
        int present;
    } const layer[] = {
        {"input_layernorm.weight", TERN_T_ATTN_NORM, d, 0, 1},
        {"self_attn.q_proj.weight", TERN_T_ATTN_Q, q, d, 1},
        {"self_attn.q_proj.bias", "blk.%d.attn_q.bias", q, 0, hp->qkv_bias},
        {"self_attn.k_proj.weight", TERN_T_ATTN_K, kv, d, 1},
        {"self_attn.k_proj.bias", "blk.%d.attn_k.bias", kv, 0, hp->qkv_bias},
        {"self_attn.v_proj.weight", TERN_T_ATTN_V, kv, d, 1},
        {"self_attn.v_proj.bias", "blk.%d.attn_v.bias", kv, 0, hp->qkv_bias},
        {"self_attn.o_proj.weight", TERN_T_ATTN_OUT, d, q, 1},
        {"self_attn.o_proj.bias", "blk.%d.attn_output.bias", d, 0, hp->o_bias},
        {"post_attention_layernorm.weight", TERN_T_FFN_NORM, d, 0, 1},
        {"mlp.gate_proj.weight", TERN_T_FFN_GATE, ff, d, 1},
        {"mlp.up_proj.weight", TERN_T_FFN_UP, ff, d, 1},
        {"mlp.down_proj.weight", TERN_T_FFN_DOWN, d, ff, 1},
    };
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            if (!layer[i].present) continue;
            char src[96], dst[64];
            snprintf(src, sizeof src, "model.layers.%u.%s", l, layer[i].hf);
            snprintf(dst, sizeof dst, layer[i].tern, (int)l);
            if ((st = tern_hf_plan_add(plan, w, src, dst, layer[i].d0, layer[i].d1, err)))
                return st;
        }
    }
    return TERN_OK;
}

static tern_status tern_hf_decoder_write_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                              const tern_hf_decoder *hp, tern_error *err) {
    tern_writer *wr = ctx->writer;
    char name[256], source[128];
    char *real = realpath(ctx->src_path, NULL);
    tern_convert_basename(real ? real : ctx->src_path, name, sizeof name);
    free(real);
    snprintf(source, sizeof source, "huggingface:%s", arch->hf_class);
    tern_status st;
    if ((st = tern_writer_set_str(wr, TERN_KEY_ARCH, arch->tern_arch, strlen(arch->tern_arch),
                                  err)) ||
        (st = tern_writer_set_str(wr, TERN_KEY_NAME, name, strlen(name), err)) ||
        (st = tern_writer_set_str(wr, TERN_KEY_SOURCE, source, strlen(source), err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_VOCAB, hp->n_vocab, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_CTX, hp->n_ctx, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_MODEL, hp->d_model, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_LAYER, hp->n_layer, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_HEAD, hp->n_head, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_HEAD_KV, hp->n_head_kv, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_HEAD_DIM, hp->head_dim, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_FF, hp->d_ff, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_NORM_EPS, (float)hp->norm_eps, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_ROPE_THETA, (float)hp->rope_theta, err)) ||
        /* HF stores q/k rows in rotate-half order (no permutation, unlike GGUF). */
        (st = tern_writer_set_u32(wr, TERN_KEY_ROPE_LAYOUT, 0, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_BOS, hp->bos, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_EOS, hp->eos, err)))
        return st;
    return TERN_OK;
}

static tern_status tern_hf_convert_decoder(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                           json_object *cfg, tern_error *err) {
    tern_hf_decoder hp;
    tern_status st = tern_hf_decoder_parse(arch, cfg, &hp, err);
    if (st) return st;
    tern_hf_weights w;
    if ((st = tern_hf_weights_open(ctx->src_path, &w, err))) return st;
    tern_hf_plan plan = {NULL, 0, 0};
    if ((st = tern_hf_decoder_plan(&hp, &w, &plan, err))) goto done;
    if ((st = tern_hf_decoder_write_meta(ctx, arch, &hp, err))) goto done;
    ctx->total_bytes = 0;
    for (uint32_t i = 0; i < plan.n; i++) ctx->total_bytes += plan.jobs[i].src->size;
    for (uint32_t i = 0; i < plan.n && st == TERN_OK; i++) {
        const tern_hf_job *job = &plan.jobs[i];
        st = tern_convert_add_st_tensor(ctx, job->dst, job->src,
                                        tern_convert_encoding(ctx, job->src->ndim), err);
    }
done:
    free(plan.jobs);
    tern_hf_weights_close(&w);
    return st;
}

static const tern_hf_arch tern_hf_archs[] = {
    {"LlamaForCausalLM", "llama", "llama", tern_hf_convert_decoder},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", tern_hf_convert_decoder},
};
#define TERN_HF_N_ARCHS (sizeof tern_hf_archs / sizeof tern_hf_archs[0])

/* ---- The importer ---------------------------------------------------------- */

static int tern_hf_probe(const char *src_path) {
    struct stat sb;
    return stat(src_path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static tern_status tern_hf_convert(tern_convert_ctx *ctx, tern_error *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/config.json", ctx->src_path) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", ctx->src_path);
    json_object *cfg;
    tern_status st = tern_hf_read_json(path, TERN_HF_MAX_CONFIG, &cfg, err);
    if (st) return st;

    json_object *archs = tern_hf_field(cfg, "architectures");
    json_object *mtype = tern_hf_field(cfg, "model_type");
    const char *want = NULL;
    int by_class = 0;
    if (archs && json_object_get_type(archs) == json_type_array &&
        json_object_array_length(archs) > 0 &&
        json_object_get_type(json_object_array_get_idx(archs, 0)) == json_type_string) {
        want = json_object_get_string(json_object_array_get_idx(archs, 0));
        by_class = 1;
    } else if (mtype && json_object_get_type(mtype) == json_type_string) {
        want = json_object_get_string(mtype);
    }
    const tern_hf_arch *arch = NULL;
    for (size_t i = 0; want && i < TERN_HF_N_ARCHS && !arch; i++)
        if (strcmp(want, by_class ? tern_hf_archs[i].hf_class : tern_hf_archs[i].model_type) == 0)
            arch = &tern_hf_archs[i];
    if (!arch) {
        char supported[256] = "";
        size_t at = 0;
        for (size_t i = 0; i < TERN_HF_N_ARCHS && at < sizeof supported; i++)
            at += (size_t)snprintf(supported + at, sizeof supported - at, "%s%s", i ? ", " : "",
                                   tern_hf_archs[i].hf_class);
        if (!want)
            st = tern_fail(err, TERN_ERR_FORMAT,
                           "%s: neither \"architectures\" nor \"model_type\" names the model",
                           path);
        else
            st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                           "architecture '%.100s' is not supported (supported: %s)", want,
                           supported);
        json_object_put(cfg);
        return st;
    }
    st = arch->convert(ctx, arch, cfg, err);
    json_object_put(cfg);
    return st;
}

const tern_importer tern_importer_hf = {"hf", tern_hf_probe, tern_hf_convert};
