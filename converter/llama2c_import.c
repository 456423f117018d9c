/* llama2.c importer: Karpathy's checkpoints, float32.
 *  - legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *    vocab_size (negative: separate classifier), seq_len), then the weights;
 *  - version 1: magic "ak42", int32 version 1, the same 7 int32, a uint8
 *    shared-classifier flag, zero padding to 256 bytes, then the weights in
 *    another order.
 * Every weight is [out][in] row-major; q/k rows are in the interleaved-pair
 * RoPE order. The tokenizer comes from a separate tokenizer.bin (--tokenizer):
 * int32 max_token_length, then per token a float32 score, an int32 length
 * and the bytes, with SentencePiece's '▁' written as ' '. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/keys.h"

#define MAGIC_V1 0x616b3432u /* "ak42" little-endian */
#define MAX_DIM (1 << 20)

typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;
    int version; /* 0 legacy, 1 */
    uint64_t header_bytes;
} l2c_config;

typedef struct {
    const uint8_t *base;
    size_t size;
} mapping;

static tern_status map_file(const char *path, mapping *m, tern_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0) {
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "%s is not a readable, non-empty file", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return tern_fail(err, TERN_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    m->base = p;
    m->size = (size_t)sb.st_size;
    return TERN_OK;
}

static void unmap_file(mapping *m) {
    if (m->base) munmap((void *)m->base, m->size);
    memset(m, 0, sizeof *m);
}

static int32_t rd32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int parse_header(const uint8_t *p, size_t size, l2c_config *c) {
    memset(c, 0, sizeof *c);
    if (size < 28) return -1;
    const uint8_t *h = p;
    if ((uint32_t)rd32(p) == MAGIC_V1) {
        if (size < 256 || rd32(p + 4) != 1) return -1;
        c->version = 1;
        h = p + 8;
        c->header_bytes = 256;
    } else {
        c->header_bytes = 28;
    }
    c->dim = rd32(h);
    c->hidden_dim = rd32(h + 4);
    c->n_layers = rd32(h + 8);
    c->n_heads = rd32(h + 12);
    c->n_kv_heads = rd32(h + 16);
    c->vocab_size = rd32(h + 20);
    c->seq_len = rd32(h + 24);
    if (c->version == 1) {
        c->shared_classifier = h[28] != 0;
    } else {
        c->shared_classifier = c->vocab_size > 0;
        if (c->vocab_size == INT32_MIN) return -1; /* has no positive counterpart */
        if (c->vocab_size < 0) c->vocab_size = -c->vocab_size;
    }
    if (c->dim <= 0 || c->dim > MAX_DIM || c->hidden_dim <= 0 || c->hidden_dim > MAX_DIM ||
        c->n_layers <= 0 || c->n_layers > 4096 || c->n_heads <= 0 || c->n_heads > c->dim ||
        c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->vocab_size <= 0 ||
        c->vocab_size > MAX_DIM || c->seq_len <= 0 || c->seq_len > MAX_DIM ||
        c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0 || (c->dim / c->n_heads) % 2)
        return -1;
    return 0;
}

static int l2c_probe(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t head[256];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    l2c_config c;
    return parse_header(head, n, &c) == 0;
}

/* ---- Tokenizer ---------------------------------------------------------------- */

static tern_status write_tokenizer(tern_convert_ctx *ctx, const char *path, uint32_t n_vocab,
                                   tern_error *err) {
    mapping m;
    tern_status st = map_file(path, &m, err);
    if (st) return st;
    char **texts = calloc(n_vocab, sizeof *texts);
    uint32_t *lens = calloc(n_vocab, sizeof *lens);
    float *scores = calloc(n_vocab, sizeof *scores);
    int32_t *types = calloc(n_vocab, sizeof *types);
    if (!texts || !lens || !scores || !types) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
        goto done;
    }
    size_t at = 4;
    if (m.size < 4 || rd32(m.base) <= 0) {
        st = tern_fail(err, TERN_ERR_FORMAT, "%s: not a llama2.c tokenizer (bad max_token_length)", path);
        goto done;
    }
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (m.size - at < 8) {
            st = tern_fail(err, TERN_ERR_FORMAT, "%s: ends after %u of %u tokens", path, i, n_vocab);
            goto done;
        }
        memcpy(&scores[i], m.base + at, 4);
        const int32_t len = rd32(m.base + at + 4);
        at += 8;
        if (len < 0 || (size_t)len > m.size - at || len > 4096) {
            st = tern_fail(err, TERN_ERR_FORMAT, "%s: token %u has length %d past the end", path, i, len);
            goto done;
        }
        /* SentencePiece's word marker '▁' was written as a space: put it back. */
        size_t spaces = 0;
        for (int32_t j = 0; j < len; j++) spaces += m.base[at + j] == ' ';
        texts[i] = malloc((size_t)len + 2 * spaces + 1);
        if (!texts[i]) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
            goto done;
        }
        size_t o = 0;
        for (int32_t j = 0; j < len; j++) {
            if (m.base[at + j] == ' ') {
                memcpy(texts[i] + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                texts[i][o++] = (char)m.base[at + j];
            }
        }
        texts[i][o] = '\0';
        lens[i] = (uint32_t)o;
        at += (size_t)len;
        /* llama2.c's vocabularies are SentencePiece's: 0 <unk>, 1 <s>, 2 </s>,
         * then the 256 byte tokens <0x00>..<0xFF>. */
        if (o == 6 && texts[i][0] == '<' && texts[i][1] == '0' && texts[i][2] == 'x' && texts[i][5] == '>')
            types[i] = 6;
        else if (i == 0)
            types[i] = 2;
        else if (i == 1 || i == 2)
            types[i] = 3;
        else
            types[i] = 1;
    }
    tern_tokenizer_desc d;
    memset(&d, 0, sizeof d);
    d.model = TERN_TOK_SPM;
    d.n_tokens = n_vocab;
    d.tokens = (const char *const *)texts;
    d.token_lens = lens;
    d.scores = scores;
    d.types = types;
    d.bos = 1;
    d.eos = 2;
    d.eot = d.eom = d.pad = TERN_TOKEN_NONE;
    d.unk = 0;
    d.add_bos = 1;
    d.add_space_prefix = 1;
    st = tern_tokenizer_desc_write(ctx->writer, &d, err);
done:
    if (texts)
        for (uint32_t i = 0; i < n_vocab; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(scores);
    free(types);
    unmap_file(&m);
    return st;
}

/* ---- Weights -------------------------------------------------------------------- */

typedef struct {
    const char *name; /* tern name; "%d" for per-layer */
    uint64_t d0, d1;  /* per-layer shape (d1 = 0: a vector) */
    int per_layer;
} l2c_block;

static tern_status l2c_convert(tern_convert_ctx *ctx, tern_error *err) {
    mapping m;
    tern_status st = map_file(ctx->src_path, &m, err);
    if (st) return st;
    l2c_config c;
    if (parse_header(m.base, m.size, &c) != 0) {
        unmap_file(&m);
        return tern_fail(err, TERN_ERR_FORMAT, "%s: not a llama2.c checkpoint (bad header)", ctx->src_path);
    }
    const uint64_t d = (uint64_t)c.dim, hd = d / (uint64_t)c.n_heads, kv = hd * (uint64_t)c.n_kv_heads;
    const uint64_t ff = (uint64_t)c.hidden_dim, V = (uint64_t)c.vocab_size, L = (uint64_t)c.n_layers;
    const l2c_block emb = {TERN_T_TOKEN_EMBD, V, d, 0};
    const l2c_block att_norm = {TERN_T_ATTN_NORM, d, 0, 1}, ffn_norm = {TERN_T_FFN_NORM, d, 0, 1};
    const l2c_block wq = {TERN_T_ATTN_Q, d, d, 1}, wk = {TERN_T_ATTN_K, kv, d, 1}, wv = {TERN_T_ATTN_V, kv, d, 1};
    const l2c_block wo = {TERN_T_ATTN_OUT, d, d, 1};
    const l2c_block w1 = {TERN_T_FFN_GATE, ff, d, 1}, w2 = {TERN_T_FFN_DOWN, d, ff, 1}, w3 = {TERN_T_FFN_UP, ff, d, 1};
    const l2c_block norm = {TERN_T_OUTPUT_NORM, d, 0, 0};
    const l2c_block freqs = {NULL, (uint64_t)c.seq_len * hd, 0, 0}; /* freq_cis real + imag: skipped */
    const l2c_block cls = {TERN_T_OUTPUT, V, d, 0};
    const l2c_block *legacy[] = {&emb, &att_norm, &wq, &wk, &wv, &wo, &ffn_norm, &w1, &w2, &w3, &norm, &freqs, &cls};
    const l2c_block *v1[] = {&att_norm, &ffn_norm, &norm, &emb, &wq, &wk, &wv, &wo, &w1, &w2, &w3, &cls};
    const l2c_block *const *order = c.version == 1 ? v1 : legacy;
    const size_t n_blocks = c.version == 1 ? sizeof v1 / sizeof *v1 : sizeof legacy / sizeof *legacy;

    /* Sizes first: the file must hold exactly what the header describes. */
    uint64_t need = c.header_bytes;
    for (size_t b = 0; b < n_blocks; b++) {
        if (order[b] == &cls && c.shared_classifier) continue;
        const uint64_t per = order[b]->d0 * (order[b]->d1 ? order[b]->d1 : 1);
        need += per * (order[b]->per_layer ? L : 1) * sizeof(float);
    }
    if (need != m.size) {
        unmap_file(&m);
        return tern_fail(err, TERN_ERR_FORMAT,
                         "%s: the header describes %llu bytes of checkpoint but the file has %zu",
                         ctx->src_path, (unsigned long long)need, m.size);
    }

    tern_writer *w = ctx->writer;
    char name[256];
    tern_convert_basename(ctx->src_path, name, sizeof name);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    const char *source = c.version == 1 ? "llama2.c:v1" : "llama2.c:legacy";
    if ((st = tern_writer_set_str(w, TERN_KEY_ARCH, "llama", 5, err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_NAME, name, strlen(name), err)) ||
        (st = tern_writer_set_str(w, TERN_KEY_SOURCE, source, strlen(source), err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_VOCAB, (uint32_t)V, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_CTX, (uint32_t)c.seq_len, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_MODEL, (uint32_t)d, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_LAYER, (uint32_t)L, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_HEAD, (uint32_t)c.n_heads, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_N_HEAD_KV, (uint32_t)c.n_kv_heads, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_HEAD_DIM, (uint32_t)hd, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_D_FF, (uint32_t)ff, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_NORM_EPS, 1e-5f, err)) ||
        (st = tern_writer_set_f32(w, TERN_KEY_ROPE_THETA, 10000.0f, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_ROPE_LAYOUT, 1, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_BOS, 1, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_EOS, 2, err)))
        goto done;
    if (ctx->tokenizer_path && (st = write_tokenizer(ctx, ctx->tokenizer_path, (uint32_t)V, err))) goto done;

    ctx->total_bytes = m.size - c.header_bytes;
    const uint8_t *at = m.base + c.header_bytes;
    for (size_t b = 0; b < n_blocks; b++) {
        const l2c_block *blk = order[b];
        if (blk == &cls && c.shared_classifier) continue;
        const uint64_t per = blk->d0 * (blk->d1 ? blk->d1 : 1);
        const uint64_t reps = blk->per_layer ? L : 1;
        if (blk == &freqs) {
            at += per * sizeof(float); /* recomputed from theta at run time */
            continue;
        }
        for (uint64_t l = 0; l < reps; l++, at += per * sizeof(float)) {
            char tname[64];
            snprintf(tname, sizeof tname, blk->name, (int)l);
            float *buf = malloc(per * sizeof(float));
            if (!buf) {
                st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor %s", tname);
                goto done;
            }
            memcpy(buf, at, per * sizeof(float));
            const uint64_t dims[2] = {blk->d0, blk->d1};
            const uint32_t ndim = blk->d1 ? 2 : 1;
            st = tern_convert_add_f32_tensor(ctx, tname, ndim, dims, buf, tern_convert_encoding(ctx, ndim),
                                             per * sizeof(float), err);
            free(buf);
            if (st) goto done;
        }
    }
done:
    unmap_file(&m);
    return st;
}

const tern_importer tern_importer_llama2c = {"llama2.c", l2c_probe, l2c_convert};
