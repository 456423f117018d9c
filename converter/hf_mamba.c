/* Hugging Face MambaForCausalLM (Mamba-1) to .tern (formats/keys.h, "Mamba").
 *
 * The checkpoint's names are backbone.embeddings, backbone.layers.N.norm,
 * backbone.layers.N.mixer.{in_proj, conv1d, x_proj, dt_proj, A_log, D,
 * out_proj}, backbone.norm_f and lm_head (absent when tied). Two changes on
 * the way: conv1d.weight [d_inner, 1, d_conv] is written as [d_inner, d_conv]
 * F32, and A_log is written as A = -exp(A_log) (F32, "blk.N.ssm_a", as GGUF
 * does), so the runtime maps it instead of computing it per load. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "converter/hf_internal.h"
#include "formats/keys.h"

/* Mamba has no position limit; n_ctx only bounds a session's position counter. */
#define TERN_HF_MAMBA_N_CTX (1u << 20)

typedef struct {
    uint32_t n_vocab, d_model, n_layer, d_inner, d_state, d_conv, dt_rank;
    double norm_eps;
    int tied, use_bias, use_conv_bias;
    int32_t bos, eos;
} tern_hf_mamba;

static tern_status tern_hf_mamba_parse(json_object *cfg, tern_hf_mamba *hp, tern_error *err) {
    memset(hp, 0, sizeof *hp);
    tern_status st;
    uint32_t expand;
    if ((st = tern_hf_get_dim(cfg, "vocab_size", 0, TERN_HF_MAX_DIM, &hp->n_vocab, err)) ||
        (st = tern_hf_get_dim(cfg, "hidden_size", 0, TERN_HF_MAX_DIM, &hp->d_model, err)) ||
        (st = tern_hf_get_dim(cfg, "num_hidden_layers", 0, TERN_HF_MAX_LAYERS, &hp->n_layer,
                              err)) ||
        (st = tern_hf_get_dim(cfg, "state_size", 16, 1024, &hp->d_state, err)) ||
        (st = tern_hf_get_dim(cfg, "conv_kernel", 4, 256, &hp->d_conv, err)) ||
        (st = tern_hf_get_dim(cfg, "expand", 2, 64, &expand, err)))
        return st;
    /* transformers 4.x configs carry only `expand`; 5.x also intermediate_size. */
    const uint64_t inner = (uint64_t)expand * hp->d_model;
    if ((st = tern_hf_get_dim(cfg, "intermediate_size",
                              inner <= TERN_HF_MAX_DIM ? (uint32_t)inner : 0, TERN_HF_MAX_DIM,
                              &hp->d_inner, err)))
        return st;
    /* time_step_rank: an integer or "auto" = ceil(hidden_size / 16). */
    json_object *tsr = tern_hf_field(cfg, "time_step_rank");
    if (!tsr || (json_object_get_type(tsr) == json_type_string &&
                 strcmp(json_object_get_string(tsr), "auto") == 0)) {
        hp->dt_rank = (hp->d_model + 15) / 16;
    } else if ((st = tern_hf_get_dim(cfg, "time_step_rank", 0, TERN_HF_MAX_DIM, &hp->dt_rank,
                                     err))) {
        return st;
    }
    if (hp->dt_rank > hp->d_inner)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: time_step_rank %u exceeds intermediate_size %u",
                         hp->dt_rank, hp->d_inner);

    if ((st = tern_hf_get_number(cfg, "layer_norm_epsilon", 1e-5, &hp->norm_eps, err))) return st;
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: layer_norm_epsilon %g is not in (0, 1)", hp->norm_eps);
    json_object *act = tern_hf_field(cfg, "hidden_act");
    if (act && (json_object_get_type(act) != json_type_string ||
                strcmp(json_object_get_string(act), "silu") != 0))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "config.json: hidden_act '%.64s' is not supported (only silu)",
                         json_object_get_string(act));
    /* residual_in_fp32 needs nothing: the runtime's residual stream is float. */
    if ((st = tern_hf_get_bool(cfg, "use_bias", 0, &hp->use_bias, err)) ||
        (st = tern_hf_get_bool(cfg, "use_conv_bias", 1, &hp->use_conv_bias, err)) ||
        (st = tern_hf_get_bool(cfg, "tie_word_embeddings", 1, &hp->tied, err)) ||
        (st = tern_hf_get_token(cfg, "bos_token_id", hp->n_vocab, &hp->bos, err)) ||
        (st = tern_hf_get_token(cfg, "eos_token_id", hp->n_vocab, &hp->eos, err)))
        return st;
    return TERN_OK;
}

/* Queues everything but A_log, which is checked here and written by
 * tern_hf_mamba_write_a. */
static tern_status tern_hf_mamba_plan(const tern_hf_mamba *hp, const tern_hf_weights *w,
                                      tern_hf_plan *plan, const tern_st_tensor **a_log,
                                      tern_error *err) {
    const uint64_t d = hp->d_model, di = hp->d_inner, ds = hp->d_state, K = hp->d_conv;
    const uint64_t xr = (uint64_t)hp->dt_rank + 2 * ds;
    tern_status st;
    if ((st = tern_hf_plan_add(plan, w, "backbone.embeddings.weight", TERN_T_TOKEN_EMBD,
                               hp->n_vocab, d, err)) ||
        (st = tern_hf_plan_add(plan, w, "backbone.norm_f.weight", TERN_T_OUTPUT_NORM, d, 0, err)))
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
    struct {
        const char *hf, *tern;
        uint64_t d0, d1;
        int present;
    } const layer[] = {
        {"norm.weight", TERN_T_SSM_NORM, d, 0, 1},
        {"mixer.in_proj.weight", TERN_T_SSM_IN, 2 * di, d, 1},
        {"mixer.in_proj.bias", "blk.%d.ssm_in.bias", 2 * di, 0, hp->use_bias},
        {"mixer.conv1d.bias", "blk.%d.ssm_conv1d.bias", di, 0, hp->use_conv_bias},
        {"mixer.x_proj.weight", TERN_T_SSM_X, xr, di, 1},
        {"mixer.dt_proj.weight", TERN_T_SSM_DT, di, hp->dt_rank, 1},
        {"mixer.dt_proj.bias", "blk.%d.ssm_dt.bias", di, 0, 1},
        {"mixer.D", TERN_T_SSM_D, di, 0, 1},
        {"mixer.out_proj.weight", TERN_T_SSM_OUT, d, di, 1},
        {"mixer.out_proj.bias", "blk.%d.ssm_out.bias", d, 0, hp->use_bias},
    };
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        char src[128], dst[64];
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            if (!layer[i].present) continue;
            snprintf(src, sizeof src, "backbone.layers.%u.%s", l, layer[i].hf);
            snprintf(dst, sizeof dst, layer[i].tern, (int)l);
            if ((st = tern_hf_plan_add(plan, w, src, dst, layer[i].d0, layer[i].d1, err)))
                return st;
        }
        /* Depthwise conv: [d_inner, 1, d_conv] -> [d_inner, d_conv], always F32
         * (tiny, and the conv kernel reads floats). */
        const uint64_t conv_src[3] = {di, 1, K}, conv_dst[2] = {di, K};
        snprintf(src, sizeof src, "backbone.layers.%u.mixer.conv1d.weight", l);
        snprintf(dst, sizeof dst, TERN_T_SSM_CONV, (int)l);
        if ((st = tern_hf_plan_add_shaped(plan, w, src, dst, 3, conv_src, 2, conv_dst, 1, err)))
            return st;

        snprintf(src, sizeof src, "backbone.layers.%u.mixer.A_log", l);
        const tern_st_tensor *t;
        if ((st = tern_hf_weights_get(w, src, &t, err))) return st;
        if (!t) return tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the checkpoint", src);
        if (t->ndim != 2 || t->shape[0] != di || t->shape[1] != ds) {
            char have[160];
            tern_hf_format_shape(have, sizeof have, t->ndim, t->shape);
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor %s has shape %s but config.json implies [%llu, %llu]", src,
                             have, (unsigned long long)di, (unsigned long long)ds);
        }
        if (t->dtype != TERN_ST_F32 && t->dtype != TERN_ST_F16 && t->dtype != TERN_ST_BF16 &&
            t->dtype != TERN_ST_F64)
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "tensor %s has dtype %s (F32, F16 or BF16 expected)", src,
                             tern_st_dtype_name(t->dtype));
        a_log[l] = t;
    }
    return TERN_OK;
}

/* A = -exp(A_log) in float, as transformers computes it (A_log.float()). */
static tern_status tern_hf_mamba_write_a(tern_convert_ctx *ctx, const tern_hf_mamba *hp,
                                         const tern_st_tensor *const *a_log, tern_error *err) {
    const size_t count = (size_t)hp->d_inner * hp->d_state;
    float *buf = malloc(count * sizeof *buf);
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory converting A_log");
    tern_status st = TERN_OK;
    for (uint32_t l = 0; l < hp->n_layer && st == TERN_OK; l++) {
        char dst[64];
        snprintf(dst, sizeof dst, TERN_T_SSM_A, (int)l);
        if ((st = tern_st_to_f32(a_log[l], buf, err))) break;
        for (size_t i = 0; i < count; i++) buf[i] = -expf(buf[i]);
        const uint64_t dims[2] = {hp->d_inner, hp->d_state};
        st = tern_convert_add_f32_tensor(ctx, dst, 2, dims, buf, TERN_ENC_F32, a_log[l]->size, err);
    }
    free(buf);
    return st;
}

static tern_status tern_hf_mamba_write_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                            const tern_hf_mamba *hp, tern_error *err) {
    tern_writer *wr = ctx->writer;
    tern_status st;
    if ((st = tern_hf_write_general_meta(ctx, arch, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_VOCAB, hp->n_vocab, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_CTX, TERN_HF_MAMBA_N_CTX, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_MODEL, hp->d_model, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_LAYER, hp->n_layer, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_NORM_EPS, (float)hp->norm_eps, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_SSM_D_INNER, hp->d_inner, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_SSM_D_STATE, hp->d_state, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_SSM_D_CONV, hp->d_conv, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_SSM_DT_RANK, hp->dt_rank, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_BOS, hp->bos, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_EOS, hp->eos, err)))
        return st;
    return TERN_OK;
}

tern_status tern_hf_convert_mamba(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                  json_object *cfg, tern_error *err) {
    tern_hf_mamba hp;
    tern_status st = tern_hf_mamba_parse(cfg, &hp, err);
    if (st) return st;
    tern_hf_weights w;
    if ((st = tern_hf_weights_open(ctx->src_path, &w, err))) return st;
    tern_hf_plan plan = {NULL, 0, 0};
    const tern_st_tensor **a_log = calloc(hp.n_layer, sizeof *a_log);
    if (!a_log) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory planning tensors");
        goto done;
    }
    if ((st = tern_hf_mamba_plan(&hp, &w, &plan, a_log, err))) goto done;
    if ((st = tern_hf_mamba_write_meta(ctx, arch, &hp, err))) goto done;
    if ((st = tern_hf_write_tokenizer(ctx, cfg, err))) goto done;
    if ((st = tern_hf_plan_write(ctx, &plan, err))) goto done;
    /* plan_write counted only the planned tensors; add the A_log bytes. */
    for (uint32_t l = 0; l < hp.n_layer; l++) ctx->total_bytes += a_log[l]->size;
    st = tern_hf_mamba_write_a(ctx, &hp, a_log, err);
done:
    free(a_log);
    free(plan.jobs);
    tern_hf_weights_close(&w);
    return st;
}
