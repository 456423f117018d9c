/* Vision transformers (ViT): Hugging Face ViTForImageClassification and timm
 * vit_* after conversion (formats/keys.h, "ViT").
 *
 *   x = [cls; W_patch · patches(image) + b_patch] + pos        (T = 1 + n_patches tokens)
 *   per layer: h = x + Wo · attention(Wq·n1(x) + bq, Wk·n1(x) + bk, Wv·n1(x) + bv) + bo
 *              x = h + W_down · gelu(W_up · n2(h) + b_up) + b_down
 *   logits = W_head · norm(x[0]) + b_head
 *
 * n1, n2, norm are LayerNorms; attention is bidirectional (every token sees
 * all T tokens of its image). Images are independent: a pass runs several
 * images as one batch of rows for every linear layer, and each row's result
 * does not depend on which other rows share the pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

#define VIT_PASS_TOKENS 1024 /* rows of one pass: images per pass = this / T */
#define VIT_MAX_PASS_IMAGES 64
#define VIT_MAX_TOKENS 65536
#define VIT_MAX_SIDE 16384

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    tern_weight wq, wk, wv, wo, w_up, w_down;
    const float *bq, *bk, *bv; /* NULL when the model has no qkv bias */
    const float *bo, *b_up, *b_down;
} vit_layer;

typedef struct {
    uint32_t d_model, n_layer, n_head, head_dim, d_ff, n_classes;
    uint32_t patch, grid_h, grid_w, n_tok, patch_dim;
    float norm_eps;
    tern_image_config image;
    tern_weight patch_w; /* [d_model][channels * patch * patch] */
    const float *patch_b;
    const float *cls; /* [d_model] */
    const float *pos; /* [n_tok][d_model] */
    const float *norm_w, *norm_b;
    tern_weight head; /* [n_classes][d_model] */
    const float *head_b;
    vit_layer *layers;
} vit_model;

typedef struct {
    uint32_t pass_images;
    float *patches;           /* [pass rows][patch_dim] */
    float *x, *xn, *q, *k, *v, *att; /* [pass rows][d_model] */
    float *kh, *vh;           /* [pass images][n_head][n_tok][head_dim] */
    float *ff;                /* [pass rows][d_ff] */
    float *cls;               /* [pass images][d_model] */
} vit_state;

/* A weight and its bias; `fmt` has a %d for the layer (ignored by fixed names). */
static tern_status bind_linear(tern_model *m, const char *fmt, int layer, size_t rows, size_t cols,
                               int bias_optional, tern_weight *w, const float **b, tern_error *err) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    tern_status st = tern_bind_weight(m, name, rows, cols, w, err);
    if (st != TERN_OK) return st;
    strcpy(name + strlen(name) - strlen("weight"), "bias");
    return tern_bind_vector(m, name, rows, bias_optional, b, err);
}

static tern_status bind_norm(tern_model *m, const char *fmt, int layer, size_t n, const float **w,
                             const float **b, tern_error *err) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    tern_status st = tern_bind_vector(m, name, n, 0, w, err);
    if (st != TERN_OK) return st;
    strcpy(name + strlen(name) - strlen("weight"), "bias");
    return tern_bind_vector(m, name, n, 0, b, err);
}

static void vit_unload(tern_model *m) {
    vit_model *vm = m->impl;
    if (!vm) return;
    free(vm->layers);
    free(vm);
    m->impl = NULL;
}

static tern_status load_image_config(tern_model *m, vit_model *vm, tern_error *err) {
    tern_image_config *ic = &vm->image;
    tern_status st;
    if ((st = tern_meta_u32_range(m, TERN_KEY_VIT_CHANNELS, &ic->channels, 1, 4, err)) ||
        (st = tern_meta_u32_range(m, TERN_KEY_VIT_HEIGHT, &ic->height, 1, VIT_MAX_SIDE, err)) ||
        (st = tern_meta_u32_range(m, TERN_KEY_VIT_WIDTH, &ic->width, 1, VIT_MAX_SIDE, err)) ||
        (st = tern_meta_u32_range(m, TERN_KEY_VIT_RESIZE, &ic->resize_short, 0, VIT_MAX_SIDE, err)))
        return st;
    const char *interp;
    size_t len;
    if ((st = tern_file_meta_str(&m->file, TERN_KEY_VIT_INTERP, &interp, &len, err))) return st;
    if (len == 8 && memcmp(interp, "bilinear", 8) == 0)
        ic->interpolation = TERN_INTERP_BILINEAR;
    else if (len == 7 && memcmp(interp, "bicubic", 7) == 0)
        ic->interpolation = TERN_INTERP_BICUBIC;
    else
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "%s '%.*s' is not bilinear or bicubic",
                         TERN_KEY_VIT_INTERP, (int)(len < 32 ? len : 32), interp);
    const char *keys[2] = {TERN_KEY_VIT_MEAN, TERN_KEY_VIT_STD};
    float *dst[2] = {ic->mean, ic->std};
    for (int i = 0; i < 2; i++) {
        const float *vals;
        uint32_t count;
        if ((st = tern_file_meta_arr_f32(&m->file, keys[i], &vals, &count, err))) return st;
        if (count != ic->channels)
            return tern_fail(err, TERN_ERR_FORMAT, "%s has %u values for %u channels", keys[i], count,
                             ic->channels);
        for (uint32_t c = 0; c < count; c++) {
            const float v = vals[c];
            if (!(fabsf(v) < 1e6f) || (i == 1 && !(v > 0.0f)))
                return tern_fail(err, TERN_ERR_FORMAT, "%s[%u] = %g is unusable", keys[i], c, v);
            dst[i][c] = v;
        }
    }
    return TERN_OK;
}

static tern_status vit_load(tern_model *m, tern_error *err) {
    vit_model *vm = calloc(1, sizeof *vm);
    if (!vm) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    m->impl = vm;
    tern_status st;
#define TRY(call)                                                                                  \
    if ((st = (call)) != TERN_OK) goto fail
    TRY(tern_meta_u32_range(m, TERN_KEY_N_VOCAB, &vm->n_classes, 1, 1u << 24, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_MODEL, &vm->d_model, 1, 1u << 16, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_LAYER, &vm->n_layer, 1, 1024, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_N_HEAD, &vm->n_head, 1, vm->d_model, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_HEAD_DIM, &vm->head_dim, 1, vm->d_model, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_D_FF, &vm->d_ff, 1, 1u << 20, err));
    TRY(tern_file_meta_f32(&m->file, TERN_KEY_NORM_EPS, &vm->norm_eps, err));
    TRY(load_image_config(m, vm, err));
    TRY(tern_meta_u32_range(m, TERN_KEY_VIT_PATCH, &vm->patch, 1, VIT_MAX_SIDE, err));
    if ((uint64_t)vm->n_head * vm->head_dim != vm->d_model) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%u heads of %u do not make d_model %u", vm->n_head,
                       vm->head_dim, vm->d_model);
        goto fail;
    }
    if (!(vm->norm_eps > 0.0f && vm->norm_eps < 1.0f)) {
        st = tern_fail(err, TERN_ERR_FORMAT, "norm_eps %g is not in (0, 1)", vm->norm_eps);
        goto fail;
    }
    const tern_image_config *ic = &vm->image;
    vm->grid_h = ic->height / vm->patch;
    vm->grid_w = ic->width / vm->patch;
    const uint64_t n_tok = 1 + (uint64_t)vm->grid_h * vm->grid_w;
    const uint64_t patch_dim = (uint64_t)ic->channels * vm->patch * vm->patch;
    if (vm->grid_h == 0 || vm->grid_w == 0 || n_tok > VIT_MAX_TOKENS || patch_dim > (1u << 20)) {
        st = tern_fail(err, TERN_ERR_FORMAT,
                       "patch %u on a %u x %u image gives %llu tokens of %llu values (limits %u, %u)",
                       vm->patch, ic->height, ic->width, (unsigned long long)n_tok,
                       (unsigned long long)patch_dim, VIT_MAX_TOKENS, 1u << 20);
        goto fail;
    }
    vm->n_tok = (uint32_t)n_tok;
    vm->patch_dim = (uint32_t)patch_dim;
    m->n_vocab = vm->n_classes;
    m->n_ctx = vm->n_tok;
    m->n_layer = vm->n_layer;
    m->d_model = vm->d_model;
    m->bos_token = -1;
    m->eos_token = -1;
    if (tern_file_has_meta(&m->file, TERN_KEY_VIT_LABELS)) {
        uint32_t n_labels;
        TRY(tern_file_meta_arr_str_count(&m->file, TERN_KEY_VIT_LABELS, &n_labels, err));
        if (n_labels != vm->n_classes) {
            st = tern_fail(err, TERN_ERR_FORMAT, "%s has %u labels for %u classes",
                           TERN_KEY_VIT_LABELS, n_labels, vm->n_classes);
            goto fail;
        }
        m->labels_key = TERN_KEY_VIT_LABELS;
    }

    const size_t d = vm->d_model, ff = vm->d_ff;
    TRY(bind_linear(m, TERN_T_VIT_PATCH, 0, d, vm->patch_dim, 0, &vm->patch_w, &vm->patch_b, err));
    TRY(tern_bind_vector(m, TERN_T_VIT_CLS, d, 0, &vm->cls, err));
    TRY(tern_bind_matrix_f32(m, TERN_T_VIT_POS, vm->n_tok, d, &vm->pos, err));
    TRY(bind_norm(m, TERN_T_OUTPUT_NORM, 0, d, &vm->norm_w, &vm->norm_b, err));
    TRY(bind_linear(m, TERN_T_OUTPUT, 0, vm->n_classes, d, 0, &vm->head, &vm->head_b, err));
    vm->layers = calloc(vm->n_layer, sizeof *vm->layers);
    if (!vm->layers) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < vm->n_layer; i++) {
        vit_layer *L = &vm->layers[i];
        const int l = (int)i;
        TRY(bind_norm(m, TERN_T_ATTN_NORM, l, d, &L->ln1_w, &L->ln1_b, err));
        TRY(bind_linear(m, TERN_T_ATTN_Q, l, d, d, 1, &L->wq, &L->bq, err));
        TRY(bind_linear(m, TERN_T_ATTN_K, l, d, d, 1, &L->wk, &L->bk, err));
        TRY(bind_linear(m, TERN_T_ATTN_V, l, d, d, 1, &L->wv, &L->bv, err));
        TRY(bind_linear(m, TERN_T_ATTN_OUT, l, d, d, 0, &L->wo, &L->bo, err));
        TRY(bind_norm(m, TERN_T_FFN_NORM, l, d, &L->ln2_w, &L->ln2_b, err));
        TRY(bind_linear(m, TERN_T_FFN_UP, l, ff, d, 0, &L->w_up, &L->b_up, err));
        TRY(bind_linear(m, TERN_T_FFN_DOWN, l, d, ff, 0, &L->w_down, &L->b_down, err));
    }
#undef TRY
    return TERN_OK;
fail:
    vit_unload(m);
    return st;
}

static void vit_session_free(tern_session *s) {
    vit_state *st = s->state;
    if (!st) return;
    free(st->patches);
    free(st->x);
    free(st->xn);
    free(st->q);
    free(st->k);
    free(st->v);
    free(st->att);
    free(st->kh);
    free(st->vh);
    free(st->ff);
    free(st->cls);
    free(st);
    s->state = NULL;
}

static tern_status vit_session_init(tern_session *s, tern_error *err) {
    const vit_model *vm = s->model->impl;
    vit_state *st = calloc(1, sizeof *st);
    if (!st) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating session state");
    s->state = st;
    uint32_t images = VIT_PASS_TOKENS / vm->n_tok;
    if (images < 1) images = 1;
    if (images > VIT_MAX_PASS_IMAGES) images = VIT_MAX_PASS_IMAGES;
    st->pass_images = images;
    const size_t rows = (size_t)images * vm->n_tok, d = vm->d_model;
    int failed = 0;
    st->patches = tern_alloc_floats(rows, vm->patch_dim, 1, &failed);
    st->x = tern_alloc_floats(rows, d, 1, &failed);
    st->xn = tern_alloc_floats(rows, d, 1, &failed);
    st->q = tern_alloc_floats(rows, d, 1, &failed);
    st->k = tern_alloc_floats(rows, d, 1, &failed);
    st->v = tern_alloc_floats(rows, d, 1, &failed);
    st->att = tern_alloc_floats(rows, d, 1, &failed);
    st->kh = tern_alloc_floats(rows, d, 1, &failed);
    st->vh = tern_alloc_floats(rows, d, 1, &failed);
    st->ff = tern_alloc_floats(rows, vm->d_ff, 1, &failed);
    st->cls = tern_alloc_floats(images, d, 1, &failed);
    if (failed) {
        vit_session_free(s);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory allocating buffers for %zu tokens",
                         rows);
    }
    return TERN_OK;
}

/* Bidirectional attention over the session's threads: every (token, head)
 * of the pass attends over all n_tok tokens of its own image. */
typedef struct {
    const tern_kernels *k;
    const vit_model *vm;
    const vit_state *st;
} attention_task;

static void attention_token_heads(void *ctx, size_t row, size_t h0, size_t count) {
    const attention_task *t = ctx;
    const vit_model *vm = t->vm;
    const size_t T = vm->n_tok, d = vm->d_model, image = row / T;
    const tern_attention_args a = {
        .head_dim = vm->head_dim,
        .n_head = vm->n_head,
        .n_head_kv = vm->n_head,
        .n_kv = T,
        .kv_head_stride = T * vm->head_dim,
        .scale = 1.0f / sqrtf((float)vm->head_dim),
        .q = t->st->q + row * d,
        .k = t->st->kh + image * T * d,
        .v = t->st->vh + image * T * d,
        .out = t->st->att + row * d,
    };
    t->k->attention(&a, h0, h0 + count);
}

static void parallel_attention(const tern_session *s, size_t rows) {
    attention_task t = {&s->model->kernels, s->model->impl, s->state};
    const size_t heads = t.vm->n_head;
    if (!s->pool || s->n_threads <= 1) {
        for (size_t r = 0; r < rows; r++) attention_token_heads(&t, r, 0, heads);
        return;
    }
    pthreadpool_parallelize_2d_tile_1d(s->pool, attention_token_heads, &t, rows, heads, 1, 0);
}

/* One pass of n images (n <= pass_images). */
static void vit_pass(tern_session *s, const float *pixels, size_t n, float *logits) {
    const tern_model *m = s->model;
    const vit_model *vm = m->impl;
    const tern_kernels *k = &m->kernels;
    vit_state *st = s->state;
    const size_t d = vm->d_model, T = vm->n_tok, P = vm->patch, C = vm->image.channels;
    const size_t H = vm->image.height, W = vm->image.width, hd = vm->head_dim;
    const size_t np = T - 1, rows = n * T;

    uint32_t block0, block_end;
    if (tern_window_begin(s, vm->n_layer, st->x, rows, d, &block0, &block_end)) goto blocks;
    /* Patches as rows (channel, row, column), like the conv kernel's layout. */
    for (size_t b = 0; b < n; b++) {
        const float *img = pixels + b * C * H * W;
        for (size_t gy = 0; gy < vm->grid_h; gy++) {
            for (size_t gx = 0; gx < vm->grid_w; gx++) {
                float *row = st->patches + (b * np + gy * vm->grid_w + gx) * vm->patch_dim;
                for (size_t c = 0; c < C; c++)
                    for (size_t ky = 0; ky < P; ky++)
                        memcpy(row + (c * P + ky) * P, img + (c * H + gy * P + ky) * W + gx * P,
                               P * sizeof(float));
            }
        }
    }
    tern_parallel_linear(s, n * np, st->patches, vm->patch_dim, &vm->patch_w, vm->patch_b, st->xn, d);
    for (size_t b = 0; b < n; b++) {
        float *x = st->x + b * T * d;
        memcpy(x, vm->cls, d * sizeof(float));
        memcpy(x + d, st->xn + b * np * d, np * d * sizeof(float));
        k->add(T * d, x, vm->pos, x);
    }

blocks:
    for (uint32_t l = block0; l < block_end; l++) {
        tern_window_save(s, l, st->x, rows, d);
        const vit_layer *L = &vm->layers[l];
        for (size_t t = 0; t < rows; t++)
            k->layernorm(d, st->x + t * d, L->ln1_w, L->ln1_b, vm->norm_eps, st->xn + t * d);
        tern_parallel_linear(s, rows, st->xn, d, &L->wq, L->bq, st->q, d);
        tern_parallel_linear(s, rows, st->xn, d, &L->wk, L->bk, st->k, d);
        tern_parallel_linear(s, rows, st->xn, d, &L->wv, L->bv, st->v, d);
        /* K and V head-major per image: [image][head][token][head_dim]. */
        for (size_t b = 0; b < n; b++)
            for (size_t h = 0; h < vm->n_head; h++)
                for (size_t t = 0; t < T; t++) {
                    const size_t src = (b * T + t) * d + h * hd, dst = ((b * vm->n_head + h) * T + t) * hd;
                    memcpy(st->kh + dst, st->k + src, hd * sizeof(float));
                    memcpy(st->vh + dst, st->v + src, hd * sizeof(float));
                }
        parallel_attention(s, rows);
        tern_parallel_linear(s, rows, st->att, d, &L->wo, L->bo, st->xn, d);
        k->add(rows * d, st->x, st->xn, st->x);

        for (size_t t = 0; t < rows; t++)
            k->layernorm(d, st->x + t * d, L->ln2_w, L->ln2_b, vm->norm_eps, st->xn + t * d);
        tern_parallel_linear(s, rows, st->xn, d, &L->w_up, L->b_up, st->ff, vm->d_ff);
        k->gelu(rows * vm->d_ff, st->ff, st->ff);
        tern_parallel_linear(s, rows, st->ff, vm->d_ff, &L->w_down, L->b_down, st->xn, d);
        k->add(rows * d, st->x, st->xn, st->x);
    }
    if (tern_window_end(s, vm->n_layer, block_end, st->x, rows, d)) return;

    /* Only the CLS token reaches the classifier. */
    for (size_t b = 0; b < n; b++)
        k->layernorm(d, st->x + b * T * d, vm->norm_w, vm->norm_b, vm->norm_eps, st->cls + b * d);
    tern_parallel_linear(s, n, st->cls, d, &vm->head, vm->head_b, logits, vm->n_classes);
}

static tern_status vit_classify(tern_session *s, const float *pixels, size_t n, float *logits,
                                tern_error *err) {
    (void)err;
    const vit_model *vm = s->model->impl;
    const vit_state *st = s->state;
    const size_t image = (size_t)vm->image.channels * vm->image.height * vm->image.width;
    for (size_t done = 0; done < n;) {
        const size_t chunk = n - done < st->pass_images ? n - done : st->pass_images;
        vit_pass(s, pixels + done * image, chunk, logits + done * (size_t)vm->n_classes);
        done += chunk;
    }
    return TERN_OK;
}

static tern_status vit_image_config(const tern_model *m, tern_image_config *out) {
    const vit_model *vm = m->impl;
    *out = vm->image;
    return TERN_OK;
}

const tern_arch_ops tern_vit_ops = {
    .name = "vit",
    .load = vit_load,
    .unload = vit_unload,
    .session_init = vit_session_init,
    .session_free = vit_session_free,
    .classify = vit_classify,
    .image_config = vit_image_config,
};
