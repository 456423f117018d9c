/* Fuzz target: the GGUF reader over memory. Whatever opens is walked (every
 * metadata value and array element, every tensor's bytes); then the
 * tokenizer description is read from it and, when a tokenizer can be built,
 * a short text is encoded and decoded again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "runtime/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fuzz_touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint8_t x = 0;
    for (uint64_t i = 0; i < n; i++) x ^= b[i];
    return x;
}

static void fuzz_walk(const tern_gguf *g) {
    volatile uint8_t sink = 0;
    char key[512];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const tern_gguf_kv *kv = &g->kvs[i];
        sink ^= fuzz_touch(kv->key.ptr, kv->key.len);
        const tern_gguf_value *v = &kv->value;
        if (v->type == TERN_GGUF_STRING) sink ^= fuzz_touch(v->v.s.ptr, v->v.s.len);
        if (v->type == TERN_GGUF_ARRAY) {
            for (uint64_t k = 0; k < v->count && k < 1000000; k++) {
                if (v->elem_type == TERN_GGUF_STRING) {
                    const tern_gguf_str s = tern_gguf_array_str(v, k);
                    sink ^= fuzz_touch(s.ptr, s.len);
                } else if (v->elem_type == TERN_GGUF_F32 || v->elem_type == TERN_GGUF_F64) {
                    sink ^= (uint8_t)(tern_gguf_array_float(v, k) == 0);
                } else if (v->elem_type != TERN_GGUF_ARRAY) {
                    sink ^= (uint8_t)tern_gguf_array_int(v, k);
                }
            }
        }
        if (kv->key.len < sizeof key && !memchr(kv->key.ptr, 0, kv->key.len)) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = '\0';
            if (!tern_gguf_find(g, key)) abort(); /* every key read is found again */
            uint32_t u;
            tern_gguf_str s;
            if (tern_gguf_get_u32(g, key, &u, NULL) == TERN_OK) sink ^= (uint8_t)u;
            if (tern_gguf_get_str(g, key, &s, NULL) == TERN_OK) sink ^= fuzz_touch(s.ptr, s.len);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const tern_gguf_tensor *t = &g->tensors[i];
        sink ^= fuzz_touch(t->name.ptr, t->name.len);
        sink ^= fuzz_touch(t->data, t->size);
    }
    (void)sink;
}

static void fuzz_tokenize(const tern_gguf *g) {
    tern_tokenizer_desc desc;
    tern_error err;
    if (tern_tokenizer_desc_from_gguf(g, &desc, &err) != TERN_OK) return;
    tern_tokenizer *tok = NULL;
    if (tern_tokenizer_create(&desc, &tok, &err) == TERN_OK) {
        static const char text[] = "Hello world, 3 + 4 = 7\n\xc3\xa9t\xc3\xa9 <s>";
        int32_t ids[256];
        size_t n = 0;
        if (tern_tokenizer_encode(tok, text, sizeof text - 1, 1, 1, ids, 256, &n, &err) == TERN_OK) {
            const size_t cap = tern_tokenizer_max_piece(tok) + 16;
            char *buf = malloc(cap);
            if (buf) {
                tern_detok d;
                tern_detok_init(&d, tok, 1);
                size_t got;
                for (size_t i = 0; i < n; i++) (void)tern_detok_feed(&d, ids[i], buf, cap, &got, &err);
                (void)tern_detok_flush(&d, buf, cap);
                free(buf);
            }
        }
        tern_tokenizer_destroy(tok);
    }
    tern_tokenizer_desc_free(&desc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_gguf g;
    tern_error err;
    if (tern_gguf_open_memory(data, size, &g, &err) != TERN_OK) return 0;
    fuzz_walk(&g);
    fuzz_tokenize(&g);
    tern_gguf_close(&g);
    return 0;
}
