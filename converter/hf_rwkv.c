/* Hugging Face RwkvForCausalLM (RWKV-4) to .tern (formats/keys.h, "RWKV-4").
 *
 * The checkpoint's names are rwkv.embeddings, rwkv.blocks.N.{pre_ln (block 0
 * only), ln1, ln2, attention.{time_decay, time_first, time_mix_key,
 * time_mix_value, time_mix_receptance, key, value, receptance, output},
 * feed_forward.{time_mix_key, time_mix_receptance, key, receptance, value}},
 * rwkv.ln_out and head (absent when tied). Two changes on the way: the
 * time_mix vectors [1, 1, d] are written as [d] F32, and time_decay is
 * written as w = -exp(time_decay) (F32, "blk.N.time_mix_decay"), the form the
 * recurrence uses (transformers computes it per call; rwkv.cpp stores it so).
 *
 * rescale_every is written as it is and applied by the runtime exactly as
 * transformers does in eval mode (weights of attention.output and
 * feed_forward.value divided by 2^(N / rescale_every), the residual halved
 * after every rescale_every-th block); the stored weights stay the trained
 * ones. ln_out is built by transformers without layer_norm_epsilon (torch's
 * default 1e-5), so its epsilon is written separately. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "converter/hf_internal.h"
#include "formats/keys.h"

/* RWKV has no position limit; n_ctx only bounds a session's position counter
 * (context_length is the training length, not a limit of the recurrence). */
#define TERN_HF_RWKV_N_CTX (1u << 20)
/* nn.LayerNorm's default, which transformers gives ln_out. */
#define TERN_HF_RWKV_OUT_EPS 1e-5
/* More halvings than this would leave the residual below float's range. */
#define TERN_HF_RWKV_MAX_HALVINGS 64u

typedef struct {
    uint32_t n_vocab, d_model, n_layer, d_att, d_ff, rescale_every;
    double norm_eps;
    int tied;
    int32_t bos, eos;
} tern_hf_rwkv;

static tern_status tern_hf_rwkv_parse(json_object *cfg, tern_hf_rwkv *hp, tern_error *err) {
    memset(hp, 0, sizeof *hp);
    tern_status st;
    if ((st = tern_hf_get_dim(cfg, "vocab_size", 0, TERN_HF_MAX_DIM, &hp->n_vocab, err)) ||
        (st = tern_hf_get_dim(cfg, "hidden_size", 0, TERN_HF_MAX_DIM, &hp->d_model, err)) ||
        (st = tern_hf_get_dim(cfg, "num_hidden_layers", 0, TERN_HF_MAX_LAYERS, &hp->n_layer,
                              err)) ||
        (st = tern_hf_get_dim(cfg, "attention_hidden_size", hp->d_model, TERN_HF_MAX_DIM,
                              &hp->d_att, err)))
        return st;
    /* intermediate_size: null or absent means 4 * hidden_size. */
    const uint64_t ff = 4 * (uint64_t)hp->d_model;
    if ((st = tern_hf_get_dim(cfg, "intermediate_size", ff <= TERN_HF_MAX_DIM ? (uint32_t)ff : 0,
                              TERN_HF_MAX_DIM, &hp->d_ff, err)))
        return st;
    if ((st = tern_hf_get_number(cfg, "layer_norm_epsilon", 1e-5, &hp->norm_eps, err))) return st;
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: layer_norm_epsilon %g is not in (0, 1)", hp->norm_eps);
    /* rescale_every: transformers' default is 6; 0 turns it off. */
    double rescale;
    if ((st = tern_hf_get_number(cfg, "rescale_every", 6, &rescale, err))) return st;
    if (!(rescale >= 0 && rescale <= TERN_HF_MAX_LAYERS) || rescale != floor(rescale))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "config.json: rescale_every %g is not an integer in [0, %u]", rescale,
                         TERN_HF_MAX_LAYERS);
    hp->rescale_every = (uint32_t)rescale;
    if (hp->rescale_every && hp->n_layer / hp->rescale_every >= TERN_HF_RWKV_MAX_HALVINGS)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "config.json: rescale_every %u halves the residual %u times over %u "
                         "layers (at most %u supported)",
                         hp->rescale_every, hp->n_layer / hp->rescale_every, hp->n_layer,
                         TERN_HF_RWKV_MAX_HALVINGS - 1);
    if ((st = tern_hf_get_bool(cfg, "tie_word_embeddings", 0, &hp->tied, err)) ||
        (st = tern_hf_get_token(cfg, "bos_token_id", hp->n_vocab, &hp->bos, err)) ||
        (st = tern_hf_get_token(cfg, "eos_token_id", hp->n_vocab, &hp->eos, err)))
        return st;
    return TERN_OK;
}

/* A LayerNorm's weight and bias, both required. */
static tern_status tern_hf_rwkv_plan_norm(tern_hf_plan *plan, const tern_hf_weights *w,
                                          const char *src_prefix, const char *dst_weight,
                                          uint64_t d, tern_error *err) {
    char src[128], dst[64];
    snprintf(src, sizeof src, "%s.weight", src_prefix);
    tern_status st = tern_hf_plan_add(plan, w, src, dst_weight, d, 0, err);
    if (st) return st;
    snprintf(src, sizeof src, "%s.bias", src_prefix);
    snprintf(dst, sizeof dst, "%.*s.bias", (int)(strlen(dst_weight) - strlen(".weight")),
             dst_weight);
    return tern_hf_plan_add(plan, w, src, dst, d, 0, err);
}

/* Queues everything but time_decay, which is checked here and written by
 * tern_hf_rwkv_write_decay. */
static tern_status tern_hf_rwkv_plan(const tern_hf_rwkv *hp, const tern_hf_weights *w,
                                     tern_hf_plan *plan, const tern_st_tensor **decay,
                                     tern_error *err) {
    const uint64_t d = hp->d_model, da = hp->d_att, ff = hp->d_ff;
    tern_status st;
    if ((st = tern_hf_plan_add(plan, w, "rwkv.embeddings.weight", TERN_T_TOKEN_EMBD, hp->n_vocab,
                               d, err)) ||
        (st = tern_hf_rwkv_plan_norm(plan, w, "rwkv.blocks.0.pre_ln", TERN_T_RWKV_PRE_NORM, d,
                                     err)) ||
        (st = tern_hf_rwkv_plan_norm(plan, w, "rwkv.ln_out", TERN_T_RWKV_OUT_NORM, d, err)))
        return st;
    if (!hp->tied) {
        const tern_st_tensor *t;
        if ((st = tern_hf_weights_get(w, "head.weight", &t, err))) return st;
        if (!t)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor head.weight is missing but tie_word_embeddings is false");
        if ((st = tern_hf_plan_add(plan, w, "head.weight", TERN_T_OUTPUT, hp->n_vocab, d, err)))
            return st;
    }
    struct {
        const char *hf, *tern;
        uint64_t d0, d1;
    } const mats[] = {
        {"attention.time_first", TERN_T_RWKV_FIRST, da, 0},
        {"attention.key.weight", TERN_T_RWKV_ATT_K, da, d},
        {"attention.value.weight", TERN_T_RWKV_ATT_V, da, d},
        {"attention.receptance.weight", TERN_T_RWKV_ATT_R, da, d},
        {"attention.output.weight", TERN_T_RWKV_ATT_OUT, d, da},
        {"feed_forward.key.weight", TERN_T_RWKV_FFN_K, ff, d},
        {"feed_forward.receptance.weight", TERN_T_RWKV_FFN_R, d, d},
        {"feed_forward.value.weight", TERN_T_RWKV_FFN_V, d, ff},
    };
    /* The time_mix vectors: [1, 1, d] -> [d], F32. */
    struct {
        const char *hf, *tern;
    } const mixes[] = {
        {"attention.time_mix_key", TERN_T_RWKV_ATT_MIX_K},
        {"attention.time_mix_value", TERN_T_RWKV_ATT_MIX_V},
        {"attention.time_mix_receptance", TERN_T_RWKV_ATT_MIX_R},
        {"feed_forward.time_mix_key", TERN_T_RWKV_FFN_MIX_K},
        {"feed_forward.time_mix_receptance", TERN_T_RWKV_FFN_MIX_R},
    };
    const uint64_t mix_src[3] = {1, 1, d}, mix_dst[1] = {d};
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        char src[128], dst[64];
        snprintf(src, sizeof src, "rwkv.blocks.%u.ln1", l);
        snprintf(dst, sizeof dst, TERN_T_RWKV_ATT_NORM, (int)l);
        if ((st = tern_hf_rwkv_plan_norm(plan, w, src, dst, d, err))) return st;
        snprintf(src, sizeof src, "rwkv.blocks.%u.ln2", l);
        snprintf(dst, sizeof dst, TERN_T_RWKV_FFN_NORM, (int)l);
        if ((st = tern_hf_rwkv_plan_norm(plan, w, src, dst, d, err))) return st;
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            snprintf(src, sizeof src, "rwkv.blocks.%u.%s", l, mats[i].hf);
            snprintf(dst, sizeof dst, mats[i].tern, (int)l);
            if ((st = tern_hf_plan_add(plan, w, src, dst, mats[i].d0, mats[i].d1, err))) return st;
        }
        for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++) {
            snprintf(src, sizeof src, "rwkv.blocks.%u.%s", l, mixes[i].hf);
            snprintf(dst, sizeof dst, mixes[i].tern, (int)l);
            if ((st = tern_hf_plan_add_shaped(plan, w, src, dst, 3, mix_src, 1, mix_dst, 1, err)))
                return st;
        }

        snprintf(src, sizeof src, "rwkv.blocks.%u.attention.time_decay", l);
        const tern_st_tensor *t;
        if ((st = tern_hf_weights_get(w, src, &t, err))) return st;
        if (!t) return tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the checkpoint", src);
        if (t->ndim != 1 || t->shape[0] != da) {
            char have[160];
            tern_hf_format_shape(have, sizeof have, t->ndim, t->shape);
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor %s has shape %s but config.json implies [%llu]", src, have,
                             (unsigned long long)da);
        }
        if (t->dtype != TERN_ST_F32 && t->dtype != TERN_ST_F16 && t->dtype != TERN_ST_BF16 &&
            t->dtype != TERN_ST_F64)
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "tensor %s has dtype %s (F32, F16 or BF16 expected)", src,
                             tern_st_dtype_name(t->dtype));
        decay[l] = t;
    }
    return TERN_OK;
}

/* w = -exp(time_decay), in double, rounded once to float. */
static tern_status tern_hf_rwkv_write_decay(tern_convert_ctx *ctx, const tern_hf_rwkv *hp,
                                            const tern_st_tensor *const *decay, tern_error *err) {
    float *buf = malloc((size_t)hp->d_att * sizeof *buf);
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory converting time_decay");
    tern_status st = TERN_OK;
    for (uint32_t l = 0; l < hp->n_layer && st == TERN_OK; l++) {
        char dst[64];
        snprintf(dst, sizeof dst, TERN_T_RWKV_DECAY, (int)l);
        if ((st = tern_st_to_f32(decay[l], buf, err))) break;
        for (size_t i = 0; i < hp->d_att; i++) buf[i] = (float)-exp((double)buf[i]);
        const uint64_t dims[1] = {hp->d_att};
        st = tern_convert_add_f32_tensor(ctx, dst, 1, dims, buf, TERN_ENC_F32, decay[l]->size, err);
    }
    free(buf);
    return st;
}

static tern_status tern_hf_rwkv_write_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                           const tern_hf_rwkv *hp, tern_error *err) {
    tern_writer *wr = ctx->writer;
    tern_status st;
    if ((st = tern_hf_write_general_meta(ctx, arch, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_VOCAB, hp->n_vocab, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_CTX, TERN_HF_RWKV_N_CTX, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_MODEL, hp->d_model, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_LAYER, hp->n_layer, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_FF, hp->d_ff, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_NORM_EPS, (float)hp->norm_eps, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_RWKV_D_ATT, hp->d_att, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_RWKV_RESCALE, hp->rescale_every, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_RWKV_OUT_EPS, (float)TERN_HF_RWKV_OUT_EPS, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_BOS, hp->bos, err)) ||
        (st = tern_writer_set_i32(wr, TERN_KEY_EOS, hp->eos, err)))
        return st;
    return TERN_OK;
}

tern_status tern_hf_convert_rwkv4(tern_convert_ctx *ctx, const tern_hf_arch *arch,
                                  json_object *cfg, tern_error *err) {
    tern_hf_rwkv hp;
    tern_status st = tern_hf_rwkv_parse(cfg, &hp, err);
    if (st) return st;
    tern_hf_weights w;
    if ((st = tern_hf_weights_open(ctx->src_path, &w, err))) return st;
    tern_hf_plan plan = {NULL, 0, 0};
    const tern_st_tensor **decay = calloc(hp.n_layer, sizeof *decay);
    if (!decay) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory planning tensors");
        goto done;
    }
    if ((st = tern_hf_rwkv_plan(&hp, &w, &plan, decay, err))) goto done;
    if ((st = tern_hf_rwkv_write_meta(ctx, arch, &hp, err))) goto done;
    if ((st = tern_hf_write_tokenizer(ctx, cfg, err))) goto done;
    if ((st = tern_hf_plan_write(ctx, &plan, err))) goto done;
    /* plan_write counted only the planned tensors; add the time_decay bytes. */
    for (uint32_t l = 0; l < hp.n_layer; l++) ctx->total_bytes += decay[l]->size;
    st = tern_hf_rwkv_write_decay(ctx, &hp, decay, err);
done:
    free(decay);
    free(plan.jobs);
    tern_hf_weights_close(&w);
    return st;
}
