/* Fuzz target: tern_convert of single-file checkpoints (it takes paths: the
 * input goes to a temporary file, the .tern it may write is removed). Each
 * input is used twice: as the checkpoint itself (llama2.c, and whatever
 * other single-file importer claims it: GGUF, rwkv.cpp), and as the
 * llama2.c tokenizer.bin beside a fixed tiny checkpoint built here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tern_file.h"
#include "fuzz_util.h"
#include "tern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Legacy llama2.c header: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (positive: shared classifier), seq_len. */
enum { L2C_DIM = 8, L2C_FF = 16, L2C_HEADS = 2, L2C_VOCAB = 8, L2C_SEQ = 4 };
#define L2C_FLOATS                                                                             \
    (L2C_VOCAB * L2C_DIM + L2C_DIM + 4 * L2C_DIM * L2C_DIM + L2C_DIM + 3 * L2C_FF * L2C_DIM + \
     L2C_DIM + L2C_SEQ * (L2C_DIM / L2C_HEADS))

static int fuzz_write_tiny_checkpoint(const char *dir, char *path, size_t cap) {
    const int32_t header[7] = {L2C_DIM, L2C_FF, 1, L2C_HEADS, L2C_HEADS, L2C_VOCAB, L2C_SEQ};
    uint8_t buf[sizeof header + L2C_FLOATS * sizeof(float)];
    memcpy(buf, header, sizeof header);
    for (size_t i = 0; i < L2C_FLOATS; i++) {
        const float v = (float)((int)(i % 17) - 8) / 16.0f;
        memcpy(buf + sizeof header + i * sizeof v, &v, sizeof v);
    }
    return fuzz_write(dir, "tiny.bin", buf, sizeof buf, path, cap);
}

static void fuzz_convert(const char *src, const char *tokenizer, const char *dir) {
    char dst[4200];
    if ((size_t)snprintf(dst, sizeof dst, "%s/out.tern", dir) >= sizeof dst) return;
    tern_convert_options opts;
    tern_convert_options_default(&opts);
    opts.tokenizer_path = tokenizer;
    tern_error err;
    if (tern_convert(src, dst, &opts, &err) == TERN_OK) {
        /* What the converter writes must pass its own reader. */
        tern_file f;
        if (tern_file_open(dst, 1, &f, &err) != TERN_OK) abort();
        tern_file_close(&f);
    }
    unlink(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[4096], input[4096], tiny[4096];
    if (fuzz_tmpdir(dir, sizeof dir) != 0) return 0;
    if (fuzz_write(dir, "input.bin", data, size, input, sizeof input) == 0) {
        fuzz_convert(input, NULL, dir);
        if (fuzz_write_tiny_checkpoint(dir, tiny, sizeof tiny) == 0) fuzz_convert(tiny, input, dir);
    }
    fuzz_rmdir(dir);
    return 0;
}
