/* Vision transformers to .tern (formats/keys.h, "ViT"): Hugging Face
 * ViTForImageClassification and timm's vit_* checkpoints (timm's hub layout:
 * config.json with "architecture", "model_args", "pretrained_cfg",
 * "label_names"; state_dict names in model.safetensors).
 *
 * Both become one layout: the patch convolution [d, C, p, p] is written as
 * the matrix [d, C*p*p] (the runtime multiplies it with the image's patches),
 * the CLS token and position embeddings lose their leading 1-dims and stay
 * F32, and timm's fused qkv [3d, d] (rows q, then k, then v) is split into
 * attn_q/k/v, so the runtime has one path. The preprocessing (resize, crop,
 * mean, std) and the class labels travel in vision.* metadata. */
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "converter/hf_internal.h"
#include "formats/keys.h"

#define VIT_MAX_CHANNELS 4 /* tern_image_config holds 4 means */
#define VIT_MAX_IMAGE 16384u

typedef struct {
    uint32_t d_model, n_layer, n_head, d_ff, n_classes;
    uint32_t channels, height, width, patch, n_pos;
    double norm_eps;
    int qkv_bias;
    int timm;
    uint32_t resize_short; /* 0: straight to height x width */
    const char *interp;    /* "bilinear" | "bicubic" */
    float mean[VIT_MAX_CHANNELS], std[VIT_MAX_CHANNELS];
    json_object *labels; /* borrowed: id2label (object) or label_names (array), or NULL */
} vit_hparams;

/* Tensor names of the two layouts. */
typedef struct {
    const char *patch_w, *patch_b, *cls, *pos, *norm_w, *norm_b, *head_w, *head_b;
    const char *layer_fmt; /* "%s%u.%s": prefix, layer, suffix */
    const char *layer_prefix;
    const char *ln1, *ln2, *q, *k, *v, *qkv, *proj, *fc1, *fc2; /* suffixes without .weight */
} vit_names;

static const vit_names hf_names = {
    "vit.embeddings.patch_embeddings.projection.weight",
    "vit.embeddings.patch_embeddings.projection.bias",
    "vit.embeddings.cls_token",
    "vit.embeddings.position_embeddings",
    "vit.layernorm.weight",
    "vit.layernorm.bias",
    "classifier.weight",
    "classifier.bias",
    "%s%u.%s",
    "vit.encoder.layer.",
    "layernorm_before",
    "layernorm_after",
    "attention.attention.query",
    "attention.attention.key",
    "attention.attention.value",
    NULL,
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
};

static const vit_names timm_names = {
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "cls_token",
    "pos_embed",
    "norm.weight",
    "norm.bias",
    "head.weight",
    "head.bias",
    "%s%u.%s",
    "blocks.",
    "norm1",
    "norm2",
    NULL,
    NULL,
    NULL,
    "attn.qkv",
    "attn.proj",
    "mlp.fc1",
    "mlp.fc2",
};

static void layer_name(char *buf, size_t size, const vit_names *n, uint32_t l, const char *part,
                       const char *what) {
    char suffix[96];
    snprintf(suffix, sizeof suffix, "%s.%s", part, what);
    snprintf(buf, size, n->layer_fmt, n->layer_prefix, l, suffix);
}

static tern_status get_tensor(const tern_hf_weights *w, const char *name,
                              const tern_st_tensor **t, tern_error *err) {
    tern_status st = tern_hf_weights_get(w, name, t, err);
    if (st == TERN_OK && !*t)
        st = tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the checkpoint", name);
    return st;
}

static int has_tensor(const tern_hf_weights *w, const char *name) {
    const tern_st_tensor *t = NULL;
    return tern_hf_weights_get(w, name, &t, NULL) == TERN_OK && t;
}

/* A list of `n` numbers (mean, std) into out. */
static tern_status get_floats(json_object *obj, const char *key, const char *file, uint32_t n,
                              const float *def, float *out, tern_error *err) {
    json_object *v = tern_hf_field(obj, key);
    if (!v) {
        for (uint32_t i = 0; i < n; i++) out[i] = def[i < 3 ? i : 2];
        return TERN_OK;
    }
    json_type t = json_object_get_type(v);
    if (t == json_type_double || t == json_type_int) {
        for (uint32_t i = 0; i < n; i++) out[i] = (float)json_object_get_double(v);
        return TERN_OK;
    }
    if (t != json_type_array || json_object_array_length(v) != n)
        return tern_fail(err, TERN_ERR_FORMAT, "%s: \"%s\" is not a list of %u numbers", file, key, n);
    for (uint32_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        json_type et = json_object_get_type(e);
        if (et != json_type_double && et != json_type_int)
            return tern_fail(err, TERN_ERR_FORMAT, "%s: \"%s\"[%u] is not a number", file, key, i);
        out[i] = (float)json_object_get_double(e);
    }
    return TERN_OK;
}

static tern_status check_norm(const vit_hparams *hp, const char *file, tern_error *err) {
    for (uint32_t c = 0; c < hp->channels; c++)
        if (!(hp->std[c] > 0 && hp->std[c] < 1e6f) || !(fabsf(hp->mean[c]) < 1e6f))
            return tern_fail(err, TERN_ERR_FORMAT, "%s: mean %g / std %g of channel %u is unusable",
                             file, hp->mean[c], hp->std[c], c);
    return TERN_OK;
}

/* An image size: an integer or [height, width]. */
static tern_status get_image_size(json_object *obj, const char *key, const char *file,
                                  uint32_t def, uint32_t *h, uint32_t *w, tern_error *err) {
    json_object *v = tern_hf_field(obj, key);
    if (!v) {
        *h = *w = def;
        return TERN_OK;
    }
    int64_t hv, wv;
    if (json_object_get_type(v) == json_type_int) {
        hv = wv = json_object_get_int64(v);
    } else if (json_object_get_type(v) == json_type_array && json_object_array_length(v) == 2 &&
               json_object_get_type(json_object_array_get_idx(v, 0)) == json_type_int &&
               json_object_get_type(json_object_array_get_idx(v, 1)) == json_type_int) {
        hv = json_object_get_int64(json_object_array_get_idx(v, 0));
        wv = json_object_get_int64(json_object_array_get_idx(v, 1));
    } else {
        return tern_fail(err, TERN_ERR_FORMAT, "%s: \"%s\" is neither an integer nor [height, width]",
                         file, key);
    }
    if (hv < 1 || wv < 1 || hv > VIT_MAX_IMAGE || wv > VIT_MAX_IMAGE)
        return tern_fail(err, TERN_ERR_FORMAT, "%s: \"%s\" %lld x %lld is out of range", file, key,
                         (long long)hv, (long long)wv);
    *h = (uint32_t)hv;
    *w = (uint32_t)wv;
    return TERN_OK;
}

/* ---- Hugging Face ------------------------------------------------------- */

/* preprocessor_config.json (ViTImageProcessor and friends), when present;
 * otherwise ViTImageProcessor's defaults: bilinear straight to the model's
 * size, mean = std = 0.5. */
static tern_status hf_preprocessor(const char *dir, vit_hparams *hp, tern_error *err) {
    static const float half[3] = {0.5f, 0.5f, 0.5f};
    hp->resize_short = 0;
    hp->interp = "bilinear";
    for (uint32_t c = 0; c < hp->channels; c++) hp->mean[c] = hp->std[c] = 0.5f;
    char path[PATH_MAX];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/preprocessor_config.json", dir) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
    if (stat(path, &sb) != 0) return TERN_OK;
    const char *file = "preprocessor_config.json";
    json_object *pp;
    tern_status st = tern_hf_read_json(path, TERN_HF_MAX_CONFIG, &pp, err);
    if (st) return st;
    int do_resize, do_crop, do_norm, do_rescale;
    double rescale;
    if ((st = tern_hf_get_bool(pp, "do_resize", 1, &do_resize, err)) ||
        (st = tern_hf_get_bool(pp, "do_center_crop", 0, &do_crop, err)) ||
        (st = tern_hf_get_bool(pp, "do_normalize", 1, &do_norm, err)) ||
        (st = tern_hf_get_bool(pp, "do_rescale", 1, &do_rescale, err)) ||
        (st = tern_hf_get_number(pp, "rescale_factor", 1.0 / 255, &rescale, err)))
        goto done;
    if (!do_resize || !do_rescale || fabs(rescale * 255 - 1) > 1e-6) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                       "%s: only do_resize with rescale_factor 1/255 is supported", file);
        goto done;
    }
    /* PIL's resample codes: 2 bilinear, 3 bicubic. */
    json_object *rs = tern_hf_field(pp, "resample");
    if (rs) {
        int64_t r = json_object_get_type(rs) == json_type_int ? json_object_get_int64(rs) : -1;
        if (r != 2 && r != 3) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                           "%s: resample %s is not supported (2 bilinear or 3 bicubic)", file,
                           json_object_to_json_string(rs));
            goto done;
        }
        hp->interp = r == 3 ? "bicubic" : "bilinear";
    }
    json_object *size = tern_hf_field(pp, "size");
    uint32_t sh = hp->height, sw = hp->width, shortest = 0;
    if (size && json_object_get_type(size) == json_type_object) {
        if (tern_hf_field(size, "shortest_edge")) {
            if ((st = tern_hf_get_dim(size, "shortest_edge", 0, VIT_MAX_IMAGE, &shortest, err)))
                goto done;
        } else if ((st = tern_hf_get_dim(size, "height", 0, VIT_MAX_IMAGE, &sh, err)) ||
                   (st = tern_hf_get_dim(size, "width", 0, VIT_MAX_IMAGE, &sw, err))) {
            goto done;
        }
    } else if (size && (st = get_image_size(pp, "size", file, 0, &sh, &sw, err))) {
        goto done;
    }
    uint32_t ch = sh, cw = sw;
    if (do_crop) {
        json_object *crop = tern_hf_field(pp, "crop_size");
        if (crop && json_object_get_type(crop) == json_type_object) {
            if ((st = tern_hf_get_dim(crop, "height", 0, VIT_MAX_IMAGE, &ch, err)) ||
                (st = tern_hf_get_dim(crop, "width", 0, VIT_MAX_IMAGE, &cw, err)))
                goto done;
        } else if ((st = get_image_size(pp, "crop_size", file, 224, &ch, &cw, err))) {
            goto done;
        }
    }
    if (shortest) {
        if (!do_crop) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                           "%s: shortest_edge without a centre crop gives no fixed size", file);
            goto done;
        }
        hp->resize_short = shortest;
    } else if (do_crop && (sh != ch || sw != cw)) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                       "%s: a resize to %u x %u and then a crop is not supported", file, sh, sw);
        goto done;
    }
    if (ch != hp->height || cw != hp->width) {
        st = tern_fail(err, TERN_ERR_FORMAT,
                       "%s: the processor makes %u x %u images, the model takes %u x %u", file, ch,
                       cw, hp->height, hp->width);
        goto done;
    }
    if (do_norm) {
        if ((st = get_floats(pp, "image_mean", file, hp->channels, half, hp->mean, err)) ||
            (st = get_floats(pp, "image_std", file, hp->channels, half, hp->std, err)))
            goto done;
    } else {
        for (uint32_t c = 0; c < hp->channels; c++) {
            hp->mean[c] = 0.0f;
            hp->std[c] = 1.0f;
        }
    }
    st = check_norm(hp, file, err);
done:
    json_object_put(pp);
    return st;
}

static tern_status hf_parse(const char *dir, json_object *cfg, const tern_hf_weights *w,
                            vit_hparams *hp, tern_error *err) {
    tern_status st;
    if ((st = tern_hf_get_dim(cfg, "hidden_size", 0, TERN_HF_MAX_DIM, &hp->d_model, err)) ||
        (st = tern_hf_get_dim(cfg, "num_hidden_layers", 0, TERN_HF_MAX_LAYERS, &hp->n_layer, err)) ||
        (st = tern_hf_get_dim(cfg, "num_attention_heads", 0, TERN_HF_MAX_DIM, &hp->n_head, err)) ||
        (st = tern_hf_get_dim(cfg, "intermediate_size", 0, TERN_HF_MAX_DIM, &hp->d_ff, err)) ||
        (st = tern_hf_get_dim(cfg, "num_channels", 3, VIT_MAX_CHANNELS, &hp->channels, err)) ||
        (st = tern_hf_get_dim(cfg, "patch_size", 16, VIT_MAX_IMAGE, &hp->patch, err)) ||
        (st = get_image_size(cfg, "image_size", "config.json", 224, &hp->height, &hp->width, err)) ||
        (st = tern_hf_get_number(cfg, "layer_norm_eps", 1e-12, &hp->norm_eps, err)) ||
        (st = tern_hf_get_bool(cfg, "qkv_bias", 1, &hp->qkv_bias, err)))
        return st;
    json_object *act = tern_hf_field(cfg, "hidden_act");
    if (act && (json_object_get_type(act) != json_type_string ||
                strcmp(json_object_get_string(act), "gelu") != 0))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "config.json: hidden_act '%.64s' is not supported (only gelu, the exact one)",
                         json_object_get_string(act));
    const tern_st_tensor *head;
    if ((st = get_tensor(w, hf_names.head_w, &head, err))) return st;
    if (head->ndim != 2 || head->shape[0] < 1 || head->shape[0] > TERN_HF_MAX_DIM)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor %s must be [classes, hidden]", hf_names.head_w);
    hp->n_classes = (uint32_t)head->shape[0];
    hp->labels = tern_hf_field(cfg, "id2label");
    return hf_preprocessor(dir, hp, err);
}

/* ---- timm --------------------------------------------------------------- */

static tern_status timm_parse(json_object *cfg, const tern_hf_weights *w, vit_hparams *hp,
                              tern_error *err) {
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    const char *file = "config.json";
    json_object *args = tern_hf_field(cfg, "model_args");
    json_object *pcfg = tern_hf_field(cfg, "pretrained_cfg");
    if (args && json_object_get_type(args) != json_type_object) args = NULL;
    if (pcfg && json_object_get_type(pcfg) != json_type_object) pcfg = NULL;
    tern_status st;

    /* Variants this runtime does not implement, by their config or their tensors. */
    int class_token, no_embed_class;
    uint32_t reg_tokens = 0;
    if ((st = tern_hf_get_bool(args, "class_token", 1, &class_token, err)) ||
        (st = tern_hf_get_bool(args, "no_embed_class", 0, &no_embed_class, err)))
        return st;
    json_object *reg = tern_hf_field(args, "reg_tokens");
    if (reg) reg_tokens = json_object_get_type(reg) == json_type_int ? (uint32_t)json_object_get_int(reg) : 1;
    json_object *pool = tern_hf_field(args, "global_pool");
    if (!pool) pool = tern_hf_field(cfg, "global_pool");
    if (!class_token || no_embed_class || reg_tokens ||
        (pool && (json_object_get_type(pool) != json_type_string ||
                  strcmp(json_object_get_string(pool), "token") != 0)))
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "%s: only ViTs classifying the class token are supported "
                         "(class_token, global_pool \"token\", no register tokens)",
                         file);
    static const char *const unsupported[] = {"norm_pre.weight", "fc_norm.weight",
                                              "blocks.0.ls1.gamma", "blocks.0.attn.q_norm.weight",
                                              "blocks.0.norm.weight", "attn_pool.latent"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (has_tensor(w, unsupported[i]))
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "tensor %s: this ViT variant (pre-norm, fc_norm, LayerScale, "
                             "qk-norm or attention pooling) is not supported",
                             unsupported[i]);
    json_object *act = tern_hf_field(args, "act_layer");
    if (act && (json_object_get_type(act) != json_type_string ||
                strcmp(json_object_get_string(act), "gelu") != 0))
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "%s: act_layer '%.64s' is not supported (only gelu)",
                         file, json_object_get_string(act));

    /* Shapes from the weights; the head count (not in any shape) from model_args. */
    const tern_st_tensor *pw, *fc1, *head;
    if ((st = get_tensor(w, timm_names.patch_w, &pw, err)) ||
        (st = get_tensor(w, "blocks.0.mlp.fc1.weight", &fc1, err)) ||
        (st = get_tensor(w, timm_names.head_w, &head, err)))
        return st;
    if (pw->ndim != 4 || pw->shape[2] != pw->shape[3] || pw->shape[0] > TERN_HF_MAX_DIM ||
        pw->shape[1] < 1 || pw->shape[1] > VIT_MAX_CHANNELS || pw->shape[2] < 1 ||
        pw->shape[2] > VIT_MAX_IMAGE || pw->shape[0] < 1)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor %s must be [embed_dim, channels <= %d, patch, patch]",
                         timm_names.patch_w, VIT_MAX_CHANNELS);
    hp->d_model = (uint32_t)pw->shape[0];
    hp->channels = (uint32_t)pw->shape[1];
    hp->patch = (uint32_t)pw->shape[2];
    if (fc1->ndim != 2 || fc1->shape[0] < 1 || fc1->shape[0] > TERN_HF_MAX_DIM)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor blocks.0.mlp.fc1.weight must be [hidden, embed_dim]");
    hp->d_ff = (uint32_t)fc1->shape[0];
    if (head->ndim != 2 || head->shape[0] < 1 || head->shape[0] > TERN_HF_MAX_DIM)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor %s must be [classes, embed_dim]", timm_names.head_w);
    hp->n_classes = (uint32_t)head->shape[0];
    hp->n_layer = 0;
    for (;;) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%u.norm1.weight", hp->n_layer);
        if (!has_tensor(w, name)) break;
        if (++hp->n_layer > TERN_HF_MAX_LAYERS)
            return tern_fail(err, TERN_ERR_FORMAT, "more than %u blocks", TERN_HF_MAX_LAYERS);
    }
    if (hp->n_layer == 0) return tern_fail(err, TERN_ERR_FORMAT, "tensor blocks.0.norm1.weight is missing");
    uint32_t depth;
    if ((st = tern_hf_get_dim(args, "depth", hp->n_layer, TERN_HF_MAX_LAYERS, &depth, err)) ||
        (st = tern_hf_get_dim(args, "num_heads", 12, TERN_HF_MAX_DIM, &hp->n_head, err)))
        return st;
    if (depth != hp->n_layer)
        return tern_fail(err, TERN_ERR_FORMAT, "%s: depth %u but the checkpoint has %u blocks", file,
                         depth, hp->n_layer);
    hp->qkv_bias = has_tensor(w, "blocks.0.attn.qkv.bias");
    hp->norm_eps = 1e-6; /* timm's ViT LayerNorm */

    /* Input size: pretrained_cfg.input_size [C, H, W], else model_args.img_size. */
    json_object *in = tern_hf_field(pcfg, "input_size");
    if (in) {
        if (json_object_get_type(in) != json_type_array || json_object_array_length(in) != 3)
            return tern_fail(err, TERN_ERR_FORMAT, "%s: pretrained_cfg.input_size is not [C, H, W]", file);
        int64_t v[3];
        for (size_t i = 0; i < 3; i++) {
            json_object *e = json_object_array_get_idx(in, i);
            v[i] = json_object_get_type(e) == json_type_int ? json_object_get_int64(e) : -1;
        }
        if (v[0] != hp->channels || v[1] < 1 || v[2] < 1 || v[1] > VIT_MAX_IMAGE || v[2] > VIT_MAX_IMAGE)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "%s: pretrained_cfg.input_size does not fit a %u-channel model", file,
                             hp->channels);
        hp->height = (uint32_t)v[1];
        hp->width = (uint32_t)v[2];
    } else if ((st = get_image_size(args, "img_size", file, 224, &hp->height, &hp->width, err))) {
        return st;
    }

    /* timm's eval transform: Resize(floor(size / crop_pct)) of the short
     * side, CenterCrop(size), Normalize(mean, std). */
    double crop_pct;
    if ((st = tern_hf_get_number(pcfg, "crop_pct", 0.875, &crop_pct, err))) return st;
    if (!(crop_pct > 0.05 && crop_pct <= 4))
        return tern_fail(err, TERN_ERR_FORMAT, "%s: crop_pct %g is out of range", file, crop_pct);
    json_object *mode = tern_hf_field(pcfg, "crop_mode");
    if (mode && (json_object_get_type(mode) != json_type_string ||
                 strcmp(json_object_get_string(mode), "center") != 0))
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "%s: crop_mode '%.32s' is not supported (only center)",
                         file, json_object_get_string(mode));
    if (hp->height != hp->width)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "%s: timm preprocessing of non-square input %u x %u is not supported", file,
                         hp->height, hp->width);
    hp->resize_short = (uint32_t)floor(hp->height / crop_pct);
    if (hp->resize_short < 1 || hp->resize_short > VIT_MAX_IMAGE)
        return tern_fail(err, TERN_ERR_FORMAT, "%s: resize to %u is out of range", file, hp->resize_short);
    json_object *interp = tern_hf_field(pcfg, "interpolation");
    hp->interp = "bicubic";
    if (interp) {
        const char *s = json_object_get_type(interp) == json_type_string ? json_object_get_string(interp) : "";
        if (strcmp(s, "bicubic") != 0 && strcmp(s, "bilinear") != 0)
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "%s: interpolation '%.32s' is not supported (bilinear or bicubic)", file, s);
        hp->interp = strcmp(s, "bicubic") == 0 ? "bicubic" : "bilinear";
    }
    if ((st = get_floats(pcfg, "mean", file, hp->channels, imagenet_mean, hp->mean, err)) ||
        (st = get_floats(pcfg, "std", file, hp->channels, imagenet_std, hp->std, err)) ||
        (st = check_norm(hp, file, err)))
        return st;
    hp->labels = tern_hf_field(cfg, "label_names");
    return TERN_OK;
}

/* ---- Shared checks, plan and metadata ----------------------------------- */

static tern_status check_dims(vit_hparams *hp, tern_error *err) {
    if (hp->d_model % hp->n_head != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "hidden size %u is not a multiple of %u heads",
                         hp->d_model, hp->n_head);
    if (hp->patch > hp->height || hp->patch > hp->width)
        return tern_fail(err, TERN_ERR_FORMAT, "patch %u is larger than the image %u x %u",
                         hp->patch, hp->height, hp->width);
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
        return tern_fail(err, TERN_ERR_FORMAT, "layer norm epsilon %g is not in (0, 1)", hp->norm_eps);
    hp->n_pos = 1 + (hp->height / hp->patch) * (hp->width / hp->patch);
    return TERN_OK;
}

typedef struct {
    const tern_st_tensor *src;
    uint32_t layer;
    int bias;
} qkv_split;

static tern_status plan_add(tern_hf_plan *plan, const tern_hf_weights *w, const char *src,
                            const char *dst_fmt, uint32_t l, int bias, uint64_t d0, uint64_t d1,
                            tern_error *err) {
    char dst[64];
    snprintf(dst, sizeof dst, dst_fmt, (int)l);
    if (bias) strcpy(dst + strlen(dst) - strlen("weight"), "bias");
    return tern_hf_plan_add(plan, w, src, dst, d0, bias ? 0 : d1, err);
}

static tern_status vit_plan(const vit_hparams *hp, const vit_names *n, const tern_hf_weights *w,
                            tern_hf_plan *plan, qkv_split *splits, tern_error *err) {
    const uint64_t d = hp->d_model, ff = hp->d_ff, p = hp->patch, C = hp->channels;
    tern_status st;
    const uint64_t pw_src[4] = {d, C, p, p}, pw_dst[2] = {d, C * p * p};
    const uint64_t cls_src[3] = {1, 1, d}, cls_dst[1] = {d};
    const uint64_t pos_src[3] = {1, hp->n_pos, d}, pos_dst[2] = {hp->n_pos, d};
    if ((st = tern_hf_plan_add_shaped(plan, w, n->patch_w, TERN_T_VIT_PATCH, 4, pw_src, 2, pw_dst, 0, err)) ||
        (st = plan_add(plan, w, n->patch_b, TERN_T_VIT_PATCH, 0, 1, d, 0, err)) ||
        (st = tern_hf_plan_add_shaped(plan, w, n->cls, TERN_T_VIT_CLS, 3, cls_src, 1, cls_dst, 1, err)) ||
        (st = tern_hf_plan_add_shaped(plan, w, n->pos, TERN_T_VIT_POS, 3, pos_src, 2, pos_dst, 1, err)) ||
        (st = plan_add(plan, w, n->norm_w, TERN_T_OUTPUT_NORM, 0, 0, d, 0, err)) ||
        (st = plan_add(plan, w, n->norm_b, TERN_T_OUTPUT_NORM, 0, 1, d, 0, err)) ||
        (st = plan_add(plan, w, n->head_w, TERN_T_OUTPUT, 0, 0, hp->n_classes, d, err)) ||
        (st = plan_add(plan, w, n->head_b, TERN_T_OUTPUT, 0, 1, hp->n_classes, 0, err)))
        return st;
    struct {
        const char *part, *tern;
        uint64_t d0, d1;
        int optional_bias;
    } const layer[] = {
        {n->ln1, TERN_T_ATTN_NORM, d, 0, 0},   {n->q, TERN_T_ATTN_Q, d, d, 1},
        {n->k, TERN_T_ATTN_K, d, d, 1},        {n->v, TERN_T_ATTN_V, d, d, 1},
        {n->proj, TERN_T_ATTN_OUT, d, d, 0},   {n->ln2, TERN_T_FFN_NORM, d, 0, 0},
        {n->fc1, TERN_T_FFN_UP, ff, d, 0},     {n->fc2, TERN_T_FFN_DOWN, d, ff, 0},
    };
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        char src[128];
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            if (!layer[i].part) continue; /* timm: q/k/v come from the fused qkv */
            layer_name(src, sizeof src, n, l, layer[i].part, "weight");
            if ((st = plan_add(plan, w, src, layer[i].tern, l, 0, layer[i].d0, layer[i].d1, err)))
                return st;
            if (layer[i].optional_bias && !hp->qkv_bias) continue;
            layer_name(src, sizeof src, n, l, layer[i].part, "bias");
            if ((st = plan_add(plan, w, src, layer[i].tern, l, 1, layer[i].d0, 0, err))) return st;
        }
        if (!n->qkv) continue;
        for (int bias = 0; bias < 2; bias++) {
            if (bias && !hp->qkv_bias) continue;
            qkv_split *s = &splits[2 * l + bias];
            layer_name(src, sizeof src, n, l, n->qkv, bias ? "bias" : "weight");
            if ((st = get_tensor(w, src, &s->src, err))) return st;
            const int ok = bias ? s->src->ndim == 1 && s->src->shape[0] == 3 * d
                                : s->src->ndim == 2 && s->src->shape[0] == 3 * d && s->src->shape[1] == d;
            if (!ok)
                return tern_fail(err, TERN_ERR_FORMAT, "tensor %s must be [%llu%s]", src,
                                 (unsigned long long)(3 * d), bias ? "" : ", embed_dim");
            if (s->src->dtype != TERN_ST_F32 && s->src->dtype != TERN_ST_F16 &&
                s->src->dtype != TERN_ST_BF16 && s->src->dtype != TERN_ST_F64)
                return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor %s has dtype %s", src,
                                 tern_st_dtype_name(s->src->dtype));
            s->layer = l;
            s->bias = bias;
        }
    }
    return TERN_OK;
}

/* Writes rows [0, d), [d, 2d), [2d, 3d) of a fused qkv as attn_q, attn_k, attn_v. */
static tern_status write_split(tern_convert_ctx *ctx, const qkv_split *s, uint64_t d,
                               tern_error *err) {
    const uint64_t cols = s->bias ? 1 : d;
    float *buf = malloc(s->src->n_elements * sizeof *buf);
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory converting %s", s->src->name);
    tern_status st = tern_st_to_f32(s->src, buf, err);
    static const char *const fmts[3] = {TERN_T_ATTN_Q, TERN_T_ATTN_K, TERN_T_ATTN_V};
    for (int part = 0; part < 3 && st == TERN_OK; part++) {
        char name[64];
        snprintf(name, sizeof name, fmts[part], (int)s->layer);
        if (s->bias) strcpy(name + strlen(name) - strlen("weight"), "bias");
        const uint64_t dims[2] = {d, d};
        const uint32_t ndim = s->bias ? 1 : 2;
        st = tern_convert_add_f32_tensor(ctx, name, ndim, dims, buf + part * d * cols,
                                         tern_convert_encoding(ctx, ndim), s->src->size / 3, err);
    }
    free(buf);
    return st;
}

static tern_status write_labels(tern_writer *wr, const vit_hparams *hp, tern_error *err) {
    json_object *lab = hp->labels;
    if (!lab) return TERN_OK;
    const char **strs = calloc(hp->n_classes, sizeof *strs);
    uint32_t *lens = calloc(hp->n_classes, sizeof *lens);
    tern_status st = TERN_OK;
    if (!strs || !lens) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %u labels", hp->n_classes);
        goto done;
    }
    const int is_array = json_object_get_type(lab) == json_type_array;
    const size_t count = is_array ? json_object_array_length(lab)
                         : json_object_get_type(lab) == json_type_object ? (size_t)json_object_object_length(lab)
                                                                          : 0;
    if (count != hp->n_classes) {
        st = tern_fail(err, TERN_ERR_FORMAT, "config.json: %zu class labels for %u classes", count,
                       hp->n_classes);
        goto done;
    }
    for (uint32_t i = 0; i < hp->n_classes; i++) {
        json_object *v = NULL;
        if (is_array) {
            v = json_object_array_get_idx(lab, i);
        } else {
            char key[16];
            snprintf(key, sizeof key, "%u", i);
            v = tern_hf_field(lab, key);
        }
        if (!v || json_object_get_type(v) != json_type_string) {
            st = tern_fail(err, TERN_ERR_FORMAT, "config.json: the label of class %u is missing or not a string", i);
            goto done;
        }
        strs[i] = json_object_get_string(v);
        lens[i] = (uint32_t)json_object_get_string_len(v);
    }
    st = tern_writer_set_arr_str(wr, TERN_KEY_VIT_LABELS, strs, lens, hp->n_classes, err);
done:
    free(strs);
    free(lens);
    return st;
}

static tern_status write_meta(tern_convert_ctx *ctx, const tern_hf_arch *arch, const vit_hparams *hp,
                              tern_error *err) {
    tern_writer *wr = ctx->writer;
    tern_status st;
    if ((st = tern_hf_write_general_meta(ctx, arch, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_VOCAB, hp->n_classes, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_MODEL, hp->d_model, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_LAYER, hp->n_layer, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_N_HEAD, hp->n_head, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_HEAD_DIM, hp->d_model / hp->n_head, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_D_FF, hp->d_ff, err)) ||
        (st = tern_writer_set_f32(wr, TERN_KEY_NORM_EPS, (float)hp->norm_eps, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_VIT_CHANNELS, hp->channels, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_VIT_HEIGHT, hp->height, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_VIT_WIDTH, hp->width, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_VIT_PATCH, hp->patch, err)) ||
        (st = tern_writer_set_u32(wr, TERN_KEY_VIT_RESIZE, hp->resize_short, err)) ||
        (st = tern_writer_set_str(wr, TERN_KEY_VIT_INTERP, hp->interp, strlen(hp->interp), err)) ||
        (st = tern_writer_set_arr_f32(wr, TERN_KEY_VIT_MEAN, hp->mean, hp->channels, err)) ||
        (st = tern_writer_set_arr_f32(wr, TERN_KEY_VIT_STD, hp->std, hp->channels, err)))
        return st;
    return write_labels(wr, hp, err);
}

tern_status tern_hf_convert_vit(tern_convert_ctx *ctx, const tern_hf_arch *arch, json_object *cfg,
                                tern_error *err) {
    vit_hparams hp;
    memset(&hp, 0, sizeof hp);
    json_object *timm_arch = tern_hf_field(cfg, "architecture");
    hp.timm = !tern_hf_field(cfg, "architectures") && timm_arch &&
              json_object_get_type(timm_arch) == json_type_string;
    const vit_names *names = hp.timm ? &timm_names : &hf_names;
    tern_hf_weights w;
    tern_status st = tern_hf_weights_open(ctx->src_path, &w, err);
    if (st) return st;
    tern_hf_plan plan = {NULL, 0, 0};
    qkv_split *splits = NULL;
    if ((st = hp.timm ? timm_parse(cfg, &w, &hp, err) : hf_parse(ctx->src_path, cfg, &w, &hp, err)) ||
        (st = check_dims(&hp, err)))
        goto done;
    splits = calloc((size_t)hp.n_layer * 2, sizeof *splits);
    if (!splits) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory planning tensors");
        goto done;
    }
    if ((st = vit_plan(&hp, names, &w, &plan, splits, err))) goto done;

    /* timm: general.source names the timm model, not the HF class. */
    tern_hf_arch timm_desc = *arch;
    char source[160];
    if (hp.timm) {
        snprintf(source, sizeof source, "timm/%.120s", json_object_get_string(timm_arch));
        timm_desc.hf_class = source;
    }
    if ((st = write_meta(ctx, hp.timm ? &timm_desc : arch, &hp, err))) goto done;

    /* tern_hf_plan_write's loop, with the split tensors counted and written after. */
    ctx->total_bytes = 0;
    for (uint32_t i = 0; i < plan.n; i++) ctx->total_bytes += plan.jobs[i].src->size;
    for (uint32_t i = 0; i < 2 * hp.n_layer; i++)
        if (splits[i].src) ctx->total_bytes += splits[i].src->size;
    for (uint32_t i = 0; i < plan.n && !st; i++) {
        const tern_hf_job *job = &plan.jobs[i];
        tern_encoding enc = job->keep_f32 ? TERN_ENC_F32 : tern_convert_encoding(ctx, job->ndim);
        st = tern_convert_add_st_tensor(ctx, job->dst, job->src, job->ndim, job->dims, enc, err);
    }
    for (uint32_t i = 0; i < 2 * hp.n_layer && !st; i++)
        if (splits[i].src) st = write_split(ctx, &splits[i], hp.d_model, err);
done:
    free(splits);
    free(plan.jobs);
    tern_hf_weights_close(&w);
    return st;
}
