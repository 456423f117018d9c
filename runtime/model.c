/* Opening a model: map and validate the file, pick kernels, bind the family. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

static const struct {
    const char *arch_name;
    tern_arch arch;
    const tern_arch_ops *ops;
} families[] = {
    {"llama", TERN_ARCH_LLAMA, &tern_llama_ops},
    {"qwen2", TERN_ARCH_LLAMA, &tern_llama_ops},
    {"mamba", TERN_ARCH_MAMBA, &tern_mamba_ops},
    {"rwkv4", TERN_ARCH_RWKV4, &tern_rwkv4_ops},
    {"vit", TERN_ARCH_VIT, &tern_vit_ops},
};

void tern_model_options_default(tern_model_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->isa_mask = TERN_ISA_MASK_ALL;
}

static void copy_string(char *dst, size_t cap, const char *src, size_t length) {
    if (length >= cap) length = cap - 1;
    memcpy(dst, src, length);
    dst[length] = '\0';
}

tern_status tern_model_open(const char *path, const tern_model_options *opts, tern_model **out,
                            tern_error *err) {
    if (!path || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_model_open: NULL argument");
    *out = NULL;
    tern_model_options defaults;
    if (!opts) {
        tern_model_options_default(&defaults);
        opts = &defaults;
    }
    if (opts->struct_size < sizeof *opts)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_model_options: struct_size %u too small",
                         opts->struct_size);

    tern_model *m = calloc(1, sizeof *m);
    if (!m) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating the model");
    tern_status st = tern_file_open(path, opts->verify_checksums, &m->file, err);
    if (st != TERN_OK) {
        free(m);
        return st;
    }

    const char *arch;
    size_t arch_len;
    if ((st = tern_file_meta_str(&m->file, TERN_KEY_ARCH, &arch, &arch_len, err)) != TERN_OK)
        goto fail;
    copy_string(m->arch_name, sizeof m->arch_name, arch, arch_len);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (strlen(families[i].arch_name) == arch_len &&
            memcmp(families[i].arch_name, arch, arch_len) == 0) {
            m->arch = families[i].arch;
            m->ops = families[i].ops;
        }
    }
    if (!m->ops) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported", path,
                       m->arch_name);
        goto fail;
    }
    if (tern_file_has_meta(&m->file, TERN_KEY_NAME)) {
        const char *name;
        size_t name_len;
        if ((st = tern_file_meta_str(&m->file, TERN_KEY_NAME, &name, &name_len, err)) != TERN_OK)
            goto fail;
        copy_string(m->name, sizeof m->name, name, name_len);
    }
    if ((st = tern_tokenizer_from_file(&m->file, &m->tokenizer, err)) != TERN_OK) {
        tern_fail_context(err, st, "%s: tokenizer", path);
        goto fail;
    }
    tern_kernels_init(&m->kernels, opts->isa_mask);
    m->int8_activations = !opts->float_activations;
    for (uint32_t i = 0; i < m->file.n_tensors; i++) {
        const tern_tensor_record *t = &m->file.tensors[i];
        if ((t->encoding == TERN_ENC_Q8 || t->encoding == TERN_ENC_Q4) && t->ndim == 2 &&
            t->dims[1] % TERN_QA_BLOCK == 0 && t->dims[1] > m->qa_max_cols)
            m->qa_max_cols = (size_t)t->dims[1];
    }
    if ((st = m->ops->load(m, err)) != TERN_OK) {
        tern_fail_context(err, st, "%s", path);
        goto fail;
    }
    if (m->tokenizer && tern_tokenizer_n_tokens(m->tokenizer) > m->n_vocab) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s: the tokenizer has %u tokens but the model only %u logits",
                       path, tern_tokenizer_n_tokens(m->tokenizer), m->n_vocab);
        m->ops->unload(m);
        goto fail;
    }
    *out = m;
    return TERN_OK;
fail:
    tern_tokenizer_destroy(m->tokenizer);
    tern_file_close(&m->file);
    free(m);
    return st;
}

void tern_model_close(tern_model *model) {
    if (!model) return;
    if (model->ops && model->impl) model->ops->unload(model);
    tern_tokenizer_destroy(model->tokenizer);
    tern_file_close(&model->file);
    free(model);
}

tern_status tern_model_get_info(const tern_model *model, tern_model_info *out) {
    if (!model || !out) return TERN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->arch = model->arch;
    out->arch_name = model->arch_name;
    out->name = model->name;
    out->n_vocab = model->n_vocab;
    out->n_ctx = model->n_ctx;
    out->n_layer = model->n_layer;
    out->d_model = model->d_model;
    out->isa = model->kernels.isa;
    out->bos_token = model->bos_token;
    out->eos_token = model->eos_token;
    out->adds_bos = model->tokenizer ? tern_tokenizer_adds_bos(model->tokenizer) : model->bos_token >= 0;
    for (uint32_t i = 0; i < model->file.n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(&model->file, i, &v);
        out->n_params += tern_tensor_elements(&v.desc);
        for (int p = 0; p < TERN_PLANE_COUNT; p++) out->weight_bytes += v.plane_sizes[p];
    }
    return TERN_OK;
}

int tern_model_has_tensor(const tern_model *model, const char *name) {
    return tern_file_find_tensor(&model->file, name) != NULL;
}

tern_status tern_model_image_config(const tern_model *model, tern_image_config *out) {
    if (!model || !out) return TERN_ERR_INVALID_ARG;
    if (!model->ops->image_config) return TERN_ERR_UNSUPPORTED;
    return model->ops->image_config(model, out);
}

tern_status tern_model_label(const tern_model *model, uint32_t i, const char **text, size_t *length) {
    if (!model || !text || !length) return TERN_ERR_INVALID_ARG;
    if (!model->labels_key) return TERN_ERR_UNSUPPORTED;
    return tern_file_meta_arr_str(&model->file, model->labels_key, i, text, length, NULL);
}
