/* Hugging Face checkpoints: what every architecture's converter shares
 * (config.json fields, weights over shards, the checked conversion plan). */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "converter/hf_internal.h"

/* ---- JSON files and fields ---------------------------------------------- */

tern_status tern_hf_read_json(const char *path, size_t max_size, json_object **out,
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
json_object *tern_hf_field(json_object *obj, const char *key) {
    json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v)) return NULL;
    return json_object_get_type(v) == json_type_null ? NULL : v;
}

/* An integer in [1, max]; `def` when absent and def != 0, else an error. */
tern_status tern_hf_get_dim(json_object *cfg, const char *key, uint32_t def, uint32_t max,
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

tern_status tern_hf_get_number(json_object *cfg, const char *key, double def, double *out,
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

tern_status tern_hf_get_bool(json_object *cfg, const char *key, int def, int *out,
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
tern_status tern_hf_get_token(json_object *cfg, const char *key, uint32_t n_vocab,
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


void tern_hf_weights_close(tern_hf_weights *w) {
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

tern_status tern_hf_weights_open(const char *dir, tern_hf_weights *w, tern_error *err) {
    memset(w, 0, sizeof *w);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
    if (tern_hf_file_exists(path)) {
        tern_status st = tern_hf_weights_add_shard(w, dir, "model.safetensors", err);
        if (st != TERN_OK) tern_hf_weights_close(w); /* the grown arrays */
        return st;
    }

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
tern_status tern_hf_weights_get(const tern_hf_weights *w, const char *name,
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



void tern_hf_format_shape(char *buf, size_t size, uint32_t ndim, const uint64_t *dims) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, size - at, "[");
    for (uint32_t d = 0; d < ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, "%s%llu", d ? ", " : "",
                               (unsigned long long)dims[d]);
    if (at < size) snprintf(buf + at, size - at, "]");
}

tern_status tern_hf_plan_add(tern_hf_plan *plan, const tern_hf_weights *w, const char *src_name,
                             const char *dst_name, uint64_t d0, uint64_t d1, tern_error *err) {
    const uint64_t dims[2] = {d0, d1};
    const uint32_t ndim = d1 ? 2 : 1;
    return tern_hf_plan_add_shaped(plan, w, src_name, dst_name, ndim, dims, ndim, dims, 0, err);
}

tern_status tern_hf_plan_add_shaped(tern_hf_plan *plan, const tern_hf_weights *w,
                                    const char *src_name, const char *dst_name, uint32_t src_ndim,
                                    const uint64_t *src_dims, uint32_t dst_ndim,
                                    const uint64_t *dst_dims, int keep_f32, tern_error *err) {
    const tern_st_tensor *t;
    tern_status st = tern_hf_weights_get(w, src_name, &t, err);
    if (st != TERN_OK) return st;
    if (!t)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the checkpoint",
                         src_name);
    int same = t->ndim == src_ndim;
    for (uint32_t d = 0; same && d < src_ndim; d++) same = t->shape[d] == src_dims[d];
    if (!same) {
        char have_s[160], want_s[160];
        tern_hf_format_shape(have_s, sizeof have_s, t->ndim, t->shape);
        tern_hf_format_shape(want_s, sizeof want_s, src_ndim, src_dims);
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor %s has shape %s but config.json implies %s", src_name, have_s,
                         want_s);
    }
    uint64_t dst_count = 1;
    for (uint32_t d = 0; d < dst_ndim; d++) dst_count *= dst_dims[d];
    if (dst_ndim < 1 || dst_ndim > 4 || dst_count != t->n_elements)
        return tern_fail(err, TERN_ERR_INTERNAL, "tensor %s: bad target shape", src_name);
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
    memset(job, 0, sizeof *job);
    job->src = t;
    snprintf(job->dst, sizeof job->dst, "%s", dst_name);
    job->ndim = dst_ndim;
    for (uint32_t d = 0; d < dst_ndim; d++) job->dims[d] = dst_dims[d];
    job->keep_f32 = keep_f32;
    return TERN_OK;
}

tern_status tern_hf_plan_write(tern_convert_ctx *ctx, const tern_hf_plan *plan, tern_error *err) {
    ctx->total_bytes = 0;
    for (uint32_t i = 0; i < plan->n; i++) ctx->total_bytes += plan->jobs[i].src->size;
    for (uint32_t i = 0; i < plan->n; i++) {
        const tern_hf_job *job = &plan->jobs[i];
        tern_encoding enc = job->keep_f32 ? TERN_ENC_F32 : tern_convert_encoding(ctx, job->ndim);
        tern_status st = tern_convert_add_st_tensor(ctx, job->dst, job->src, job->ndim, job->dims,
                                                    enc, err);
        if (st != TERN_OK) return st;
    }
    return TERN_OK;
}

tern_status tern_hf_write_general_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                       tern_error *err) {
    tern_writer *wr = ctx->writer;
    char name[256], source[128];
    char *real = realpath(ctx->src_path, NULL);
    tern_convert_basename(real ? real : ctx->src_path, name, sizeof name);
    free(real);
    snprintf(source, sizeof source, "huggingface:%s", arch->hf_class);
    tern_status st;
    if ((st = tern_writer_set_str(wr, TERN_KEY_ARCH, arch->tern_arch, strlen(arch->tern_arch), err)) ||
        (st = tern_writer_set_str(wr, TERN_KEY_NAME, name, strlen(name), err)) ||
        (st = tern_writer_set_str(wr, TERN_KEY_SOURCE, source, strlen(source), err)))
        return st;
    return TERN_OK;
}
