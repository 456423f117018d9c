/* Fuzz target: the Hugging Face tokenizer.json reader. It takes a folder:
 * the input becomes tokenizer.json in a temporary one. When it loads, the
 * tokenizer is built and a short text encoded and decoded. */
#include <stdint.h>
#include <stdlib.h>

#include "converter/hf_internal.h"
#include "fuzz_util.h"
#include "runtime/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_roundtrip(const tern_tokenizer_desc *desc) {
    tern_tokenizer *tok = NULL;
    tern_error err;
    if (tern_tokenizer_create(desc, &tok, &err) != TERN_OK) return;
    static const char text[] = "Hello world, 3 + 4 = 7\n\xc3\xa9t\xc3\xa9 <s> </s>";
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[4096], path[4096];
    if (fuzz_tmpdir(dir, sizeof dir) != 0) return 0;
    if (fuzz_write(dir, "tokenizer.json", data, size, path, sizeof path) == 0) {
        tern_hf_tokenizer t;
        tern_error err;
        if (tern_hf_tokenizer_load(dir, NULL, 0, &t, &err) == TERN_OK) {
            if (t.found) fuzz_roundtrip(&t.desc);
            tern_hf_tokenizer_free(&t);
        }
    }
    fuzz_rmdir(dir);
    return 0;
}
