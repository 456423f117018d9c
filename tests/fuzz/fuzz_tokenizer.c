/* Fuzz target: encoding and streaming decoding with two small tokenizers
 * built from arrays once per process (an SPM one with byte fallback and a
 * byte-level BPE one covering all 256 bytes), so every valid UTF-8 text
 * without special texts must come back byte for byte: decode(encode(x)) == x.
 * Invalid UTF-8 and special texts are encoded and decoded without the check. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 4096

static const char *const fuzz_specials[] = {"<s>", "</s>", "<unk>", "<|endoftext|>", "<tool>"};

/* ---- SPM: <unk> <s> </s>, 256 byte tokens, a few pieces ---------------- */

static tern_tokenizer *fuzz_make_spm(void) {
    static const char *const pieces[] = {
        "\xe2\x96\x81", "a", "e", "h", "t", "\xe2\x96\x81t", "th", "he", "\xe2\x96\x81th", "\xe2\x96\x81the",
        "\xc3\xa9", "\xe2\x96\x81\xe2\x96\x81", "in", "\xe2\x96\x81in", "<tool>"};
    enum { N_PIECES = sizeof pieces / sizeof pieces[0], N = 3 + 256 + N_PIECES };
    static char byte_text[256][7];
    const char *tokens[N];
    float scores[N];
    int32_t types[N];
    tokens[0] = "<unk>", types[0] = TERN_TOKEN_UNKNOWN;
    tokens[1] = "<s>", types[1] = TERN_TOKEN_CONTROL;
    tokens[2] = "</s>", types[2] = TERN_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(byte_text[b], sizeof byte_text[b], "<0x%02X>", b);
        tokens[3 + b] = byte_text[b];
        types[3 + b] = TERN_TOKEN_BYTE;
    }
    for (int i = 0; i < N_PIECES; i++) {
        tokens[259 + i] = pieces[i];
        types[259 + i] = strcmp(pieces[i], "<tool>") ? TERN_TOKEN_NORMAL : TERN_TOKEN_USER_DEFINED;
    }
    for (int i = 0; i < N; i++) scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
    tern_tokenizer_desc d;
    memset(&d, 0, sizeof d);
    d.model = TERN_TOK_SPM;
    d.n_tokens = N;
    d.tokens = tokens;
    d.scores = scores;
    d.types = types;
    d.unk = 0, d.bos = 1, d.eos = 2;
    d.eot = d.eom = d.pad = TERN_TOKEN_NONE;
    d.add_bos = 1, d.add_space_prefix = 1;
    tern_tokenizer *tok = NULL;
    tern_error err;
    if (tern_tokenizer_create(&d, &tok, &err) != TERN_OK) {
        fprintf(stderr, "fuzz_tokenizer: SPM: %s\n", err.message);
        abort();
    }
    return tok;
}

/* ---- BPE: GPT-2's byte-to-unicode alphabet, a few merges ---------------- */

static int fuzz_put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* the alphabet stays below U+0800 */
}

static tern_tokenizer *fuzz_make_bpe(void) {
    /* U+0120 (bytes C4 A0) is GPT-2's stand-in for the space byte. */
    static const char *const merges[] = {"h e", "l l", "he ll", "\u0120 t", "t h", "\u0120 a",
                                         "i n", "e r", "\u0120t h", "\u0120th e"};
    static const char *const merged[] = {"he", "ll", "hell", "\u0120t", "th", "\u0120a",
                                         "in", "er", "\u0120th", "\u0120the"};
    enum { N_MERGES = sizeof merges / sizeof merges[0], N = 256 + N_MERGES + 2 };
    static char byte_text[256][3];
    /* bytes_to_unicode: printable Latin-1 bytes map to themselves, the others
     * to U+0100 upwards in byte order. */
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        const int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        const uint32_t cp = printable ? (uint32_t)b : next++;
        byte_text[b][fuzz_put_utf8(byte_text[b], cp)] = '\0';
    }
    const char *tokens[N];
    int32_t types[N];
    for (int b = 0; b < 256; b++) tokens[b] = byte_text[b], types[b] = TERN_TOKEN_NORMAL;
    for (int i = 0; i < N_MERGES; i++) tokens[256 + i] = merged[i], types[256 + i] = TERN_TOKEN_NORMAL;
    tokens[N - 2] = "<|endoftext|>", types[N - 2] = TERN_TOKEN_CONTROL;
    tokens[N - 1] = "<tool>", types[N - 1] = TERN_TOKEN_USER_DEFINED;
    tern_tokenizer_desc d;
    memset(&d, 0, sizeof d);
    d.model = TERN_TOK_BPE;
    d.pre = "gpt-2";
    d.pre_len = 5;
    d.n_tokens = N;
    d.tokens = tokens;
    d.types = types;
    d.n_merges = N_MERGES;
    d.merges = merges;
    d.bos = d.eos = d.eot = N - 2;
    d.eom = d.unk = d.pad = TERN_TOKEN_NONE;
    tern_tokenizer *tok = NULL;
    tern_error err;
    if (tern_tokenizer_create(&d, &tok, &err) != TERN_OK) {
        fprintf(stderr, "fuzz_tokenizer: BPE: %s\n", err.message);
        abort();
    }
    return tok;
}

/* ---- The check --------------------------------------------------------- */

static int fuzz_valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) len = 1, cp = c, min = 0;
        else if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static int fuzz_contains(const uint8_t *s, size_t n, const char *needle) {
    const size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(s + i, needle, m)) return 1;
    return 0;
}

static void fuzz_one(const tern_tokenizer *tok, const uint8_t *data, size_t size, int parse_special,
                     int check) {
    tern_error err;
    size_t cap = size + 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return;
    tern_status st = tern_tokenizer_encode(tok, (const char *)data, size, parse_special, parse_special, ids,
                                           cap, &n, &err);
    if (st == TERN_ERR_OUT_OF_RANGE && n > cap) {
        int32_t *grown = realloc(ids, n * sizeof *ids);
        if (!grown) {
            free(ids);
            return;
        }
        ids = grown;
        cap = n;
        st = tern_tokenizer_encode(tok, (const char *)data, size, parse_special, parse_special, ids, cap, &n,
                                   &err);
    }
    if (st != TERN_OK) {
        /* Valid input must encode. */
        if (check) {
            fprintf(stderr, "fuzz_tokenizer: encode failed: %s\n", err.message);
            abort();
        }
        free(ids);
        return;
    }
    const size_t piece_cap = tern_tokenizer_max_piece(tok) + 16;
    char *text = malloc(n * piece_cap + 16), *piece = malloc(piece_cap);
    if (text && piece) {
        size_t len = 0, got;
        tern_detok d;
        tern_detok_init(&d, tok, parse_special);
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || (uint32_t)ids[i] >= tern_tokenizer_n_tokens(tok)) abort();
            if (tern_detok_feed(&d, ids[i], piece, piece_cap, &got, &err) != TERN_OK) abort();
            memcpy(text + len, piece, got);
            len += got;
        }
        len += tern_detok_flush(&d, text + len, piece_cap);
        if (check && (len != size || memcmp(text, data, size) != 0)) {
            fprintf(stderr, "fuzz_tokenizer: round trip of %zu bytes gave %zu different bytes\n", size, len);
            abort();
        }
    }
    free(text);
    free(piece);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Built once: the tokenizers are read-only afterwards. */
    static tern_tokenizer *spm, *bpe;
    if (!spm) spm = fuzz_make_spm();
    if (!bpe) bpe = fuzz_make_bpe();
    if (size > FUZZ_MAX_INPUT) return 0;
    int plain = fuzz_valid_utf8(data, size);
    for (size_t i = 0; plain && i < sizeof fuzz_specials / sizeof *fuzz_specials; i++)
        plain = !fuzz_contains(data, size, fuzz_specials[i]);
    /* SPM turns spaces into U+2581 and back: a literal U+2581 comes back as a space. */
    const int spm_plain = plain && !fuzz_contains(data, size, "\xe2\x96\x81");
    for (int parse_special = 0; parse_special <= 1; parse_special++) {
        fuzz_one(spm, data, size, parse_special, spm_plain && !parse_special);
        fuzz_one(bpe, data, size, parse_special, plain && !parse_special);
    }
    return 0;
}
