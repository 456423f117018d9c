/* GGUF importer (llama.cpp's files): Llama-architecture decoders ("llama":
 * Llama 1/2/3, SmolLM, TinyLlama; "qwen2") with their tokenizer and chat
 * template. Tensor names are already tern's (keys.h follows GGUF); ggml
 * dimensions are innermost first, so they are reversed. Quantised tensors
 * are dequantised exactly to float before the target encoding is applied,
 * except under `keep`: Q8_0, Q4_0 and Q4_1 blocks are then copied into tern
 * Q8 / Q4 (group 32; Q4_1 with HAS_MIN) planes, which hold the same values.
 * GGUF stores Llama's q/k rows in the interleaved RoPE order (llama.cpp's
 * converter permutes them), Qwen2's in HF's rotate-half order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/gguf.h"
#include "formats/keys.h"
#include "runtime/tokenizer.h"

#define MAX_DIM (1u << 26)

typedef struct {
    uint32_t n_vocab, n_ctx, d_model, n_layer, n_head, n_head_kv, head_dim, d_ff;
    float norm_eps, rope_theta;
    int rope_layout;
} gguf_hparams;

static int gguf_probe(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

/* ---- Exact dequantisation of ggml blocks ----------------------------------- */

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Q8_0: {f16 d; int8 q[32]}: x = d * q. */
static void dequant_q8_0(const uint8_t *src, uint64_t n, float *out) {
    for (uint64_t b = 0; b < n / 32; b++, src += 34) {
        const float d = tern_f16_to_f32(rd16(src));
        for (int j = 0; j < 32; j++) out[b * 32 + j] = d * (float)(int8_t)src[2 + j];
    }
}

/* Q4_0: {f16 d; u8 q[16]}: x[j] = d * (lo(q[j]) - 8), x[j + 16] = d * (hi(q[j]) - 8). */
static void dequant_q4_0(const uint8_t *src, uint64_t n, float *out) {
    for (uint64_t b = 0; b < n / 32; b++, src += 18) {
        const float d = tern_f16_to_f32(rd16(src));
        for (int j = 0; j < 16; j++) {
            out[b * 32 + j] = d * (float)((src[2 + j] & 0xf) - 8);
            out[b * 32 + j + 16] = d * (float)((src[2 + j] >> 4) - 8);
        }
    }
}

/* Q4_1: {f16 d; f16 m; u8 q[16]}: x = d * q + m, nibbles as Q4_0. */
static void dequant_q4_1(const uint8_t *src, uint64_t n, float *out) {
    for (uint64_t b = 0; b < n / 32; b++, src += 20) {
        const float d = tern_f16_to_f32(rd16(src)), m = tern_f16_to_f32(rd16(src + 2));
        for (int j = 0; j < 16; j++) {
            out[b * 32 + j] = d * (float)(src[4 + j] & 0xf) + m;
            out[b * 32 + j + 16] = d * (float)(src[4 + j] >> 4) + m;
        }
    }
}

static tern_status gguf_tensor_to_f32(const tern_gguf_tensor *t, float *out, tern_error *err) {
    const uint8_t *p = t->data;
    const uint64_t n = t->n_elements;
    switch (t->type) {
    case TERN_GGML_F32: memcpy(out, p, n * sizeof(float)); return TERN_OK;
    case TERN_GGML_F16:
        for (uint64_t i = 0; i < n; i++) out[i] = tern_f16_to_f32(rd16(p + 2 * i));
        return TERN_OK;
    case TERN_GGML_BF16:
        for (uint64_t i = 0; i < n; i++) out[i] = tern_bf16_to_f32(rd16(p + 2 * i));
        return TERN_OK;
    case TERN_GGML_Q8_0: dequant_q8_0(p, n, out); return TERN_OK;
    case TERN_GGML_Q4_0: dequant_q4_0(p, n, out); return TERN_OK;
    case TERN_GGML_Q4_1: dequant_q4_1(p, n, out); return TERN_OK;
    default:
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "tensor %.*s has ggml type %s, which is not supported "
                         "(F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)",
                         (int)t->name.len, t->name.ptr, tern_ggml_type_name(t->type));
    }
}

/* Splits ggml blocks of 32 into tern planes: Q8_0 {d; q[32]} -> Q8 symmetric,
 * Q4_0 {d; q[16]} -> Q4 symmetric (same nibble order: value j low, j + 16
 * high; q - 8), Q4_1 {d; m; q[16]} -> Q4 with HAS_MIN (w = d * q + m). */
static tern_status gguf_add_kept(tern_convert_ctx *ctx, const char *name, const tern_gguf_tensor *t,
                                 uint64_t rows, uint64_t cols, tern_error *err) {
    const int q8 = t->type == TERN_GGML_Q8_0, q4_1 = t->type == TERN_GGML_Q4_1;
    const size_t block = q8 ? 34 : q4_1 ? 20 : 18, head = q4_1 ? 4 : 2, payload = q8 ? 32 : 16;
    tern_tensor_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.encoding = q8 ? TERN_ENC_Q8 : TERN_ENC_Q4;
    desc.layout = TERN_LAYOUT_ROW_MAJOR;
    desc.ndim = 2;
    desc.dims[0] = rows;
    desc.dims[1] = cols;
    desc.group_size = 32;
    desc.flags = q4_1 ? TERN_TENSOR_HAS_MIN : 0;
    uint64_t sizes[TERN_PLANE_COUNT];
    if (cols % 32 != 0 || tern_tensor_plane_sizes(&desc, sizes) != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor %s of %llu columns is not whole blocks of 32",
                         name, (unsigned long long)cols);
    const uint64_t n_blocks = rows * cols / 32;
    if (t->size < n_blocks * block)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor %s holds %llu bytes, %llu blocks need %llu",
                         name, (unsigned long long)t->size, (unsigned long long)n_blocks,
                         (unsigned long long)(n_blocks * block));
    uint8_t *values = malloc((size_t)sizes[TERN_PLANE_VALUES]);
    uint8_t *scales = malloc((size_t)sizes[TERN_PLANE_SCALES]);
    uint8_t *mins = q4_1 ? malloc((size_t)sizes[TERN_PLANE_ZEROS]) : NULL;
    tern_status st;
    if (!values || !scales || (q4_1 && !mins)) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor %s", name);
    } else {
        const uint8_t *src = t->data;
        for (uint64_t b = 0; b < n_blocks; b++, src += block) {
            memcpy(scales + 2 * b, src, 2); /* both little-endian F16 */
            if (q4_1) memcpy(mins + 2 * b, src + 2, 2);
            memcpy(values + b * payload, src + head, payload);
        }
        const void *planes[TERN_PLANE_COUNT] = {values, scales, mins, NULL};
        st = tern_convert_add_planes(ctx, name, &desc, planes, t->size, err);
    }
    free(values);
    free(scales);
    free(mins);
    return st;
}

/* ---- Hyper-parameters -------------------------------------------------------- */

static tern_status get_dim(const tern_gguf *g, const char *arch, const char *key, uint32_t def,
                           uint32_t *out, tern_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!tern_gguf_find(g, full)) {
        if (def) {
            *out = def;
            return TERN_OK;
        }
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key %s is missing", full);
    }
    tern_status st = tern_gguf_get_u32(g, full, out, err);
    if (st) return st;
    if (*out < 1 || *out > MAX_DIM)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: %s = %u is out of range", full, *out);
    return TERN_OK;
}

static tern_status get_float(const tern_gguf *g, const char *arch, const char *key, float def,
                             float *out, tern_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!tern_gguf_find(g, full)) {
        *out = def;
        return TERN_OK;
    }
    return tern_gguf_get_f32(g, full, out, err);
}

static tern_status read_hparams(const tern_gguf *g, const char *arch, uint32_t n_tokens,
                                gguf_hparams *hp, tern_error *err) {
    memset(hp, 0, sizeof *hp);
    tern_status st;
    if ((st = get_dim(g, arch, "embedding_length", 0, &hp->d_model, err)) ||
        (st = get_dim(g, arch, "block_count", 0, &hp->n_layer, err)) ||
        (st = get_dim(g, arch, "feed_forward_length", 0, &hp->d_ff, err)) ||
        (st = get_dim(g, arch, "context_length", 2048, &hp->n_ctx, err)) ||
        (st = get_dim(g, arch, "attention.head_count", 0, &hp->n_head, err)) ||
        (st = get_dim(g, arch, "attention.head_count_kv", hp->n_head, &hp->n_head_kv, err)) ||
        (st = get_dim(g, arch, "attention.key_length", hp->d_model / hp->n_head, &hp->head_dim, err)) ||
        (st = get_float(g, arch, "rope.freq_base", 10000.0f, &hp->rope_theta, err)) ||
        (st = get_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err)))
        return st;
    uint32_t rope_dim;
    if ((st = get_dim(g, arch, "rope.dimension_count", hp->head_dim, &rope_dim, err))) return st;
    if (rope_dim != hp->head_dim)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "gguf: partial rotary embeddings (%u of %u dimensions) are not supported",
                         rope_dim, hp->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (tern_gguf_find(g, key)) {
        tern_gguf_str type;
        if ((st = tern_gguf_get_str(g, key, &type, err))) return st;
        if (!tern_gguf_str_eq(type, "none"))
            return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: RoPE scaling '%.*s' is not supported",
                             (int)type.len, type.ptr);
    }
    const tern_gguf_tensor *embd = tern_gguf_find_tensor(g, TERN_T_TOKEN_EMBD);
    if (!embd || embd->n_dims != 2)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor token_embd.weight is missing or not 2-D");
    hp->n_vocab = (uint32_t)embd->dims[1];
    if (embd->dims[1] > MAX_DIM || (n_tokens && n_tokens != hp->n_vocab))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: token_embd.weight has %llu rows but the vocabulary %u tokens",
                         (unsigned long long)embd->dims[1], n_tokens);
    if (hp->n_head % hp->n_head_kv)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: %u heads are not a multiple of %u KV heads",
                         hp->n_head, hp->n_head_kv);
    hp->rope_layout = strcmp(arch, "llama") == 0 ? 1 : 0;
    return TERN_OK;
}

/* ---- Tensors ------------------------------------------------------------------ */

/* Checks that `name` has the (row-major) shape [d0] or [d0, d1] and writes it. */
static tern_status add_tensor(tern_convert_ctx *ctx, const tern_gguf *g, const char *name,
                              uint64_t d0, uint64_t d1, int optional, tern_error *err) {
    const tern_gguf_tensor *t = tern_gguf_find_tensor(g, name);
    if (!t) {
        if (optional) return TERN_OK;
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor %s is missing", name);
    }
    const uint32_t ndim = d1 ? 2 : 1;
    /* ggml's dims are innermost first: [d1, d0]. */
    if (t->n_dims != ndim || t->dims[0] != (d1 ? d1 : d0) || (d1 && t->dims[1] != d0))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: tensor %s has ggml shape [%llu, %llu] (%u dims), expected [%llu, %llu]",
                         name, (unsigned long long)t->dims[0], (unsigned long long)t->dims[1],
                         t->n_dims, (unsigned long long)(d1 ? d1 : d0), (unsigned long long)(d1 ? d0 : 1));
    if (ndim == 2 && tern_convert_keeps(ctx, name) &&
        (t->type == TERN_GGML_Q8_0 || t->type == TERN_GGML_Q4_0 || t->type == TERN_GGML_Q4_1))
        return gguf_add_kept(ctx, name, t, d0, d1, err);
    if (t->n_elements > SIZE_MAX / sizeof(float))
        return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: tensor %s is too large", name);
    float *buf = malloc((size_t)t->n_elements * sizeof(float));
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor %s", name);
    tern_status st = gguf_tensor_to_f32(t, buf, err);
    if (st == TERN_OK) {
        const uint64_t dims[2] = {d0, d1};
        st = tern_convert_add_f32_tensor(ctx, name, ndim, dims, buf, tern_convert_encoding(ctx, ndim),
                                         t->size, err);
    }
    free(buf);
    return st;
}

static tern_status write_tensors(tern_convert_ctx *ctx, const tern_gguf *g, const gguf_hparams *hp,
                                 tern_error *err) {
    const uint64_t d = hp->d_model, ff = hp->d_ff;
    const uint64_t q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    ctx->total_bytes = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) ctx->total_bytes += g->tensors[i].size;
    tern_status st;
    if ((st = add_tensor(ctx, g, TERN_T_TOKEN_EMBD, hp->n_vocab, d, 0, err)) ||
        (st = add_tensor(ctx, g, TERN_T_OUTPUT_NORM, d, 0, 0, err)) ||
        (st = add_tensor(ctx, g, TERN_T_OUTPUT, hp->n_vocab, d, 1, err)) ||
        (st = add_tensor(ctx, g, TERN_T_ROPE_FREQS, hp->head_dim / 2, 0, 1, err)))
        return st;
    const struct {
        const char *fmt;
        uint64_t d0, d1;
        int optional;
    } layer[] = {
        {TERN_T_ATTN_NORM, d, 0, 0},         {TERN_T_ATTN_Q, q, d, 0},
        {"blk.%d.attn_q.bias", q, 0, 1},     {TERN_T_ATTN_K, kv, d, 0},
        {"blk.%d.attn_k.bias", kv, 0, 1},    {TERN_T_ATTN_V, kv, d, 0},
        {"blk.%d.attn_v.bias", kv, 0, 1},    {TERN_T_ATTN_OUT, d, q, 0},
        {"blk.%d.attn_output.bias", d, 0, 1}, {TERN_T_FFN_NORM, d, 0, 0},
        {TERN_T_FFN_GATE, ff, d, 0},         {TERN_T_FFN_UP, ff, d, 0},
        {TERN_T_FFN_DOWN, d, ff, 0},
    };
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, layer[i].fmt, (int)l);
            if ((st = add_tensor(ctx, g, name, layer[i].d0, layer[i].d1, layer[i].optional, err)))
                return st;
        }
    }
    return TERN_OK;
}

static tern_status write_meta(tern_convert_ctx *ctx, const tern_gguf *g, const char *arch,
                              const gguf_hparams *hp, const tern_tokenizer_desc *tok,
                              tern_error *err) {
    tern_writer *w = ctx->writer;
    char name[256], source[64];
    tern_gguf_str gname;
    if (tern_gguf_find(g, "general.name") && tern_gguf_get_str(g, "general.name", &gname, NULL) == TERN_OK)
        snprintf(name, sizeof name, "%.*s", (int)(gname.len < 255 ? gname.len : 255), gname.ptr);
    else
        tern_convert_basename(ctx->src_path, name, sizeof name);
    snprintf(source, sizeof source, "gguf:%s", arch);
    tern_status st;
    if ((st = tern_writer_set_str(w, TERN_KEY_ARCH, arch, strlen(arch), err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_NAME, name, strlen(name), err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_SOURCE, source, strlen(source), err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_VOCAB, hp->n_vocab, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_CTX, hp->n_ctx, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_MODEL, hp->d_model, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_LAYER, hp->n_layer, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_HEAD, hp->n_head, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_HEAD_KV, hp->n_head_kv, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_HEAD_DIM, hp->head_dim, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_FF, hp->d_ff, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_NORM_EPS, hp->norm_eps, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_ROPE_THETA, hp->rope_theta, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_ROPE_LAYOUT, (uint32_t)hp->rope_layout, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_BOS, tok ? tok->bos : -1, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_EOS, tok ? tok->eos : -1, err)))
        return st;
    if (tok && (st = tern_tokenizer_desc_write(w, tok, err))) return st;
    if (tern_gguf_find(g, "tokenizer.chat_template")) {
        tern_gguf_str tmpl;
        if ((st = tern_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err)) ||
            (st = tern_writer_set_str(w, TERN_KEY_TOK_CHAT, tmpl.ptr, (size_t)tmpl.len, err)))
            return st;
    }
    return TERN_OK;
}

static tern_status gguf_convert(tern_convert_ctx *ctx, tern_error *err) {
    tern_gguf g;
    tern_status st = tern_gguf_open(ctx->src_path, &g, err);
    if (st) return st;
    char arch[32] = "";
    tern_gguf_str a;
    if ((st = tern_gguf_get_str(&g, "general.architecture", &a, err))) goto done;
    snprintf(arch, sizeof arch, "%.*s", (int)(a.len < 31 ? a.len : 31), a.ptr);
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                       "gguf: architecture '%s' is not supported (supported: llama, qwen2)", arch);
        goto done;
    }
    tern_tokenizer_desc tok;
    memset(&tok, 0, sizeof tok);
    const int has_tok = tern_gguf_find(&g, "tokenizer.ggml.tokens") != NULL;
    if (has_tok && (st = tern_tokenizer_desc_from_gguf(&g, &tok, err))) goto done;
    gguf_hparams hp;
    if ((st = read_hparams(&g, arch, has_tok ? tok.n_tokens : 0, &hp, err)) ||
        (st = write_meta(ctx, &g, arch, &hp, has_tok ? &tok : NULL, err)) ||
        (st = write_tensors(ctx, &g, &hp, err))) {
        /* fall through */
    }
    tern_tokenizer_desc_free(&tok);
done:
    tern_gguf_close(&g);
    return st;
}

const tern_importer tern_importer_gguf = {"gguf", gguf_probe, gguf_convert};
