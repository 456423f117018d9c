/* rwkv.cpp importer: RWKV-4 model files of rwkv.cpp (RWKV/rwkv.cpp), FP32 or
 * FP16, to .tern (formats/keys.h, "RWKV-4").
 *
 * Layout, little-endian: a header of six u32 (magic 0x67676d66 "ggmf",
 * version 100 or 101, n_vocab, n_embed, n_layer, data type), then tensors
 * until the end of the file, each: i32 dim_count (1 to 4), i32 key length,
 * i32 data type (0 FP32, 1 FP16; quantised ones are not read), dim_count i32
 * dims in ggml order (dims[0] = columns), the key bytes, the data. Names are
 * the PyTorch checkpoint's (emb, blocks.N.{ln0 (block 0), ln1, ln2, att.*,
 * ffn.*}, ln_out, head). time_decay is stored already as -exp(time_decay),
 * which is what "blk.N.time_mix_decay" holds. rwkv.cpp applies no rescaling
 * and uses 1e-5 for every LayerNorm. RWKV-5/6/7 files (att.time_faaaa,
 * att.w0, ...) are refused by name. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/keys.h"

#define RWKVCPP_MAGIC 0x67676d66u
#define RWKVCPP_MAX_DIM (1u << 24)
#define RWKVCPP_MAX_LAYERS 1024u
#define RWKVCPP_MAX_KEY 128u
#define RWKVCPP_N_CTX (1u << 20) /* no position limit; bounds the counter only */

typedef struct {
    char name[RWKVCPP_MAX_KEY + 1];
    uint32_t ndim;
    uint64_t rows, cols; /* cols = ggml dims[0]; rows = the product of the others */
    int f16;
    const uint8_t *data;
    uint64_t bytes;
} rwkvcpp_tensor;

typedef struct {
    const uint8_t *base;
    size_t size;
    uint32_t n_vocab, d_model, n_layer;
    rwkvcpp_tensor *tensors;
    uint32_t n_tensors;
} rwkvcpp_file;

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int rwkvcpp_probe(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && rd_u32(head) == RWKVCPP_MAGIC &&
           (rd_u32(head + 4) == 100 || rd_u32(head + 4) == 101);
}

static void rwkvcpp_close(rwkvcpp_file *f) {
    if (f->base) munmap((void *)f->base, f->size);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

/* Maps the file and indexes its tensors, checking every size against the end. */
static tern_status rwkvcpp_open(const char *path, rwkvcpp_file *f, tern_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 24) {
        close(fd);
        return tern_fail(err, TERN_ERR_FORMAT, "%s is too short for an rwkv.cpp header", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return tern_fail(err, TERN_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    f->base = p;
    f->size = (size_t)sb.st_size;
    const uint8_t *b = f->base;
    f->n_vocab = rd_u32(b + 8);
    f->d_model = rd_u32(b + 12);
    f->n_layer = rd_u32(b + 16);
    if (rd_u32(b) != RWKVCPP_MAGIC || (rd_u32(b + 4) != 100 && rd_u32(b + 4) != 101))
        return tern_fail(err, TERN_ERR_FORMAT, "%s: not an rwkv.cpp file (magic/version)", path);
    if (f->n_vocab == 0 || f->n_vocab > RWKVCPP_MAX_DIM || f->d_model == 0 ||
        f->d_model > RWKVCPP_MAX_DIM || f->n_layer == 0 || f->n_layer > RWKVCPP_MAX_LAYERS)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "%s: header n_vocab %u, n_embed %u, n_layer %u out of range", path,
                         f->n_vocab, f->d_model, f->n_layer);

    uint32_t cap = 0;
    for (uint64_t at = 24; at < f->size;) {
        if (f->size - at < 12)
            return tern_fail(err, TERN_ERR_FORMAT, "%s: truncated tensor header at offset %llu",
                             path, (unsigned long long)at);
        const uint32_t ndim = rd_u32(b + at), key_len = rd_u32(b + at + 4), type = rd_u32(b + at + 8);
        at += 12;
        if (ndim < 1 || ndim > 4 || key_len < 1 || key_len > RWKVCPP_MAX_KEY ||
            f->size - at < 4ull * ndim + key_len)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "%s: tensor header at offset %llu has %u dims and a %u-byte name",
                             path, (unsigned long long)at - 12, ndim, key_len);
        if (f->n_tensors == cap) {
            cap = cap ? 2 * cap : 64;
            rwkvcpp_tensor *grown = realloc(f->tensors, cap * sizeof *grown);
            if (!grown) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory indexing %s", path);
            f->tensors = grown;
        }
        rwkvcpp_tensor *t = &f->tensors[f->n_tensors];
        t->ndim = ndim;
        t->cols = rd_u32(b + at);
        t->rows = 1;
        for (uint32_t j = 1; j < ndim; j++) {
            const uint64_t dim = rd_u32(b + at + 4 * j);
            t->rows = dim && t->rows <= RWKVCPP_MAX_DIM ? t->rows * dim : 0;
        }
        at += 4ull * ndim;
        memcpy(t->name, b + at, key_len);
        t->name[key_len] = '\0';
        at += key_len;
        if (type > 1)
            return tern_fail(err, TERN_ERR_UNSUPPORTED,
                             "%s: tensor %s has data type %u (only FP32 and FP16 are read)", path,
                             t->name, type);
        if (t->cols == 0 || t->cols > RWKVCPP_MAX_DIM || t->rows == 0 || t->rows > RWKVCPP_MAX_DIM)
            return tern_fail(err, TERN_ERR_FORMAT, "%s: tensor %s has dims %llu x %llu", path,
                             t->name, (unsigned long long)t->rows, (unsigned long long)t->cols);
        t->f16 = type == 1;
        t->bytes = t->rows * t->cols * (t->f16 ? 2 : 4);
        if (f->size - at < t->bytes)
            return tern_fail(err, TERN_ERR_FORMAT, "%s: tensor %s runs past the end of the file",
                             path, t->name);
        t->data = b + at;
        at += t->bytes;
        f->n_tensors++;
    }
    return TERN_OK;
}

static const rwkvcpp_tensor *rwkvcpp_find(const rwkvcpp_file *f, const char *name) {
    for (uint32_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* Looks up `name` and checks its shape: [cols] (rows == 0) or [rows][cols]. */
static tern_status rwkvcpp_need(const rwkvcpp_file *f, const char *name, uint64_t rows,
                                uint64_t cols, const rwkvcpp_tensor **out, tern_error *err) {
    const rwkvcpp_tensor *t = rwkvcpp_find(f, name);
    if (!t) return tern_fail(err, TERN_ERR_FORMAT, "tensor %s is missing from the rwkv.cpp file", name);
    if (t->ndim != (rows ? 2u : 1u) || t->cols != cols || (rows && t->rows != rows))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor %s is %llu x %llu (%u dims) but the header implies %llu x %llu",
                         name, (unsigned long long)t->rows, (unsigned long long)t->cols, t->ndim,
                         (unsigned long long)(rows ? rows : 1), (unsigned long long)cols);
    *out = t;
    return TERN_OK;
}

/* Converts t to float and writes it under dst (1-D: F32; 2-D: the chosen encoding). */
static tern_status rwkvcpp_write(tern_convert_ctx *ctx, const rwkvcpp_tensor *t, const char *dst,
                                 int matrix, tern_error *err) {
    const uint64_t count = t->rows * t->cols;
    float *buf = malloc(count * sizeof *buf);
    if (!buf) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor %s", t->name);
    if (t->f16) {
        for (uint64_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            buf[i] = tern_f16_to_f32(h);
        }
    } else {
        memcpy(buf, t->data, count * sizeof *buf);
    }
    const uint64_t dims[2] = {matrix ? t->rows : count, t->cols};
    const uint32_t ndim = matrix ? 2 : 1;
    tern_status st = tern_convert_add_f32_tensor(ctx, dst, ndim, dims, buf,
                                                 tern_convert_encoding(ctx, ndim), t->bytes, err);
    free(buf);
    return st;
}

static tern_status rwkvcpp_convert(tern_convert_ctx *ctx, tern_error *err) {
    rwkvcpp_file f;
    tern_status st = rwkvcpp_open(ctx->src_path, &f, err);
    if (st) goto done;
    static const char *const later[] = {"blocks.0.att.time_faaaa", "blocks.0.att.time_maa_x",
                                        "blocks.0.att.w0"};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        if (rwkvcpp_find(&f, later[i])) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                           "%s: an RWKV-5/6/7 file (it has %s); only RWKV-4 is supported",
                           ctx->src_path, later[i]);
            goto done;
        }
    }
    const uint64_t V = f.n_vocab, d = f.d_model;
    const rwkvcpp_tensor *t1;
    /* d_att and d_ff are not in the header: take them from block 0. */
    const rwkvcpp_tensor *t0 = rwkvcpp_find(&f, "blocks.0.att.time_first");
    if (!t0 || t0->ndim != 1) {
        st = tern_fail(err, TERN_ERR_FORMAT, "tensor blocks.0.att.time_first is missing or not 1-D");
        goto done;
    }
    const uint64_t da = t0->cols;
    const rwkvcpp_tensor *fk = rwkvcpp_find(&f, "blocks.0.ffn.key.weight");
    const uint64_t ff = fk ? fk->rows : 0;
    if (!fk || fk->ndim != 2) {
        st = tern_fail(err, TERN_ERR_FORMAT, "tensor blocks.0.ffn.key.weight is missing or not 2-D");
        goto done;
    }

    struct {
        const char *src, *dst;
        uint64_t rows, cols;
    } const global[] = {
        {"emb.weight", TERN_T_TOKEN_EMBD, V, d},
        {"blocks.0.ln0.weight", TERN_T_RWKV_PRE_NORM, 0, d},
        {"blocks.0.ln0.bias", "token_embd_norm.bias", 0, d},
        {"ln_out.weight", TERN_T_RWKV_OUT_NORM, 0, d},
        {"ln_out.bias", "output_norm.bias", 0, d},
        {"head.weight", TERN_T_OUTPUT, V, d},
    };
    struct {
        const char *src, *dst;
        uint64_t rows, cols;
    } const layer[] = {
        {"ln1.weight", TERN_T_RWKV_ATT_NORM, 0, d},
        {"ln1.bias", "blk.%d.attn_norm.bias", 0, d},
        {"ln2.weight", TERN_T_RWKV_FFN_NORM, 0, d},
        {"ln2.bias", "blk.%d.attn_norm_2.bias", 0, d},
        {"att.time_decay", TERN_T_RWKV_DECAY, 0, da},
        {"att.time_first", TERN_T_RWKV_FIRST, 0, da},
        {"att.time_mix_k", TERN_T_RWKV_ATT_MIX_K, 0, d},
        {"att.time_mix_v", TERN_T_RWKV_ATT_MIX_V, 0, d},
        {"att.time_mix_r", TERN_T_RWKV_ATT_MIX_R, 0, d},
        {"att.key.weight", TERN_T_RWKV_ATT_K, da, d},
        {"att.value.weight", TERN_T_RWKV_ATT_V, da, d},
        {"att.receptance.weight", TERN_T_RWKV_ATT_R, da, d},
        {"att.output.weight", TERN_T_RWKV_ATT_OUT, d, da},
        {"ffn.time_mix_k", TERN_T_RWKV_FFN_MIX_K, 0, d},
        {"ffn.time_mix_r", TERN_T_RWKV_FFN_MIX_R, 0, d},
        {"ffn.key.weight", TERN_T_RWKV_FFN_K, ff, d},
        {"ffn.receptance.weight", TERN_T_RWKV_FFN_R, d, d},
        {"ffn.value.weight", TERN_T_RWKV_FFN_V, d, ff},
    };
    const size_t n_global = sizeof global / sizeof global[0], n_per = sizeof layer / sizeof layer[0];

    /* Check everything before writing anything. */
    ctx->total_bytes = 0;
    for (size_t i = 0; i < n_global; i++) {
        if ((st = rwkvcpp_need(&f, global[i].src, global[i].rows, global[i].cols, &t1, err))) goto done;
        ctx->total_bytes += t1->bytes;
    }
    for (uint32_t l = 0; l < f.n_layer; l++) {
        for (size_t i = 0; i < n_per; i++) {
            char src[96];
            snprintf(src, sizeof src, "blocks.%u.%s", l, layer[i].src);
            if ((st = rwkvcpp_need(&f, src, layer[i].rows, layer[i].cols, &t1, err))) goto done;
            ctx->total_bytes += t1->bytes;
        }
    }

    char name[128];
    tern_convert_basename(ctx->src_path, name, sizeof name);
    static const char source[] = "rwkv.cpp";
    tern_writer *w = ctx->writer;
    if ((st = tern_writer_set_str(w, TERN_KEY_ARCH, "rwkv4", 5, err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_NAME, name, strlen(name), err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_SOURCE, source, strlen(source), err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_VOCAB, f.n_vocab, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_CTX, RWKVCPP_N_CTX, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_MODEL, f.d_model, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_LAYER, f.n_layer, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_FF, (uint32_t)ff, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_NORM_EPS, 1e-5f, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_RWKV_D_ATT, (uint32_t)da, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_RWKV_RESCALE, 0, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_RWKV_OUT_EPS, 1e-5f, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_BOS, -1, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_EOS, -1, err)))
        goto done;
    for (size_t i = 0; i < n_global; i++) {
        t1 = rwkvcpp_find(&f, global[i].src);
        if ((st = rwkvcpp_write(ctx, t1, global[i].dst, global[i].rows != 0, err))) goto done;
    }
    for (uint32_t l = 0; l < f.n_layer; l++) {
        for (size_t i = 0; i < n_per; i++) {
            char src[96], dst[64];
            snprintf(src, sizeof src, "blocks.%u.%s", l, layer[i].src);
            snprintf(dst, sizeof dst, layer[i].dst, (int)l);
            t1 = rwkvcpp_find(&f, src);
            if ((st = rwkvcpp_write(ctx, t1, dst, layer[i].rows != 0, err))) goto done;
        }
    }
done:
    rwkvcpp_close(&f);
    return st;
}

const tern_importer tern_importer_rwkvcpp = {"rwkv.cpp", rwkvcpp_probe, rwkvcpp_convert};
