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
#include "converter/hf_internal.h"
#include "formats/keys.h"

/* ---- Llama-family decoders ----------------------------------------------- */

typedef struct tern_hf_decoder {
    uint32_t n_vocab, n_ctx, d_model, n_layer, n_head, n_head_kv, head_dim, d_ff;
    double norm_eps, rope_theta;
    int tied, qkv_bias, o_bias;
    int32_t bos, eos;
} tern_hf_decoder;


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
    tern_status st;
    if ((st = tern_hf_write_general_meta(ctx, arch, err)) ||
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

tern_status tern_hf_convert_decoder(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                           json_object *cfg, tern_error *err) {
    tern_hf_decoder hp;
    tern_status st = tern_hf_decoder_parse(arch, cfg, &hp, err);
    if (st) return st;
    tern_hf_weights w;
    if ((st = tern_hf_weights_open(ctx->src_path, &w, err))) return st;
    tern_hf_plan plan = {NULL, 0, 0};
    if ((st = tern_hf_decoder_plan(&hp, &w, &plan, err))) goto done;
    if ((st = tern_hf_decoder_write_meta(ctx, arch, &hp, err))) goto done;
    if ((st = tern_hf_write_tokenizer(ctx, cfg, err))) goto done;
    st = tern_hf_plan_write(ctx, &plan, err);
done:
    free(plan.jobs);
    tern_hf_weights_close(&w);
    return st;
}

static const tern_hf_arch tern_hf_archs[] = {
    {"LlamaForCausalLM", "llama", "llama", tern_hf_convert_decoder},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", tern_hf_convert_decoder},
    {"MambaForCausalLM", "mamba", "mamba", tern_hf_convert_mamba},
    {"RwkvForCausalLM", "rwkv", "rwkv4", tern_hf_convert_rwkv4},
    {"ViTForImageClassification", "vit", "vit", tern_hf_convert_vit},
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
    json_object *timm_arch = tern_hf_field(cfg, "architecture");
    const char *want = NULL;
    int by_class = 0;
    if (archs && json_object_get_type(archs) == json_type_array &&
        json_object_array_length(archs) > 0 &&
        json_object_get_type(json_object_array_get_idx(archs, 0)) == json_type_string) {
        want = json_object_get_string(json_object_array_get_idx(archs, 0));
        by_class = 1;
    } else if (mtype && json_object_get_type(mtype) == json_type_string) {
        want = json_object_get_string(mtype);
    } else if (timm_arch && json_object_get_type(timm_arch) == json_type_string) {
        /* timm's hub layout names the model ("vit_tiny_patch16_224"), not a class. */
        want = json_object_get_string(timm_arch);
        by_class = 1;
        if (strncmp(want, "vit_", 4) == 0) {
            want = "vit";
            by_class = 0;
        }
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
