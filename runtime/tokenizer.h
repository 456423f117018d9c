/* Tokenizers, built from plain arrays so any source can fill them (GGUF
 * metadata, a .tern file, tokenizer.json, llama2.c's tokenizer.bin):
 *  - SPM ("llama"): SentencePiece BPE over scores, "▁" for spaces, byte
 *    fallback through <0xNN> tokens;
 *  - BPE ("gpt2"): byte-level BPE over merge ranks after a regex
 *    pre-tokenizer and the GPT-2 byte-to-unicode mapping.
 * Both reproduce llama.cpp's llama-vocab.cpp token for token. */
#ifndef TERN_RUNTIME_TOKENIZER_H
#define TERN_RUNTIME_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tern_gguf;

typedef enum tern_tok_model {
    TERN_TOK_SPM = 0, /* "llama" */
    TERN_TOK_BPE = 1, /* "gpt2" */
} tern_tok_model;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
typedef enum tern_token_type {
    TERN_TOKEN_UNDEFINED = 0,
    TERN_TOKEN_NORMAL = 1,
    TERN_TOKEN_UNKNOWN = 2,
    TERN_TOKEN_CONTROL = 3,
    TERN_TOKEN_USER_DEFINED = 4,
    TERN_TOKEN_UNUSED = 5,
    TERN_TOKEN_BYTE = 6,
} tern_token_type;

/* Pre-tokenizers (regex families of llama.cpp); names map onto these. */
typedef enum tern_tok_pre {
    TERN_PRE_DEFAULT = 0,    /* absent or "default" */
    TERN_PRE_GPT2,           /* gpt-2, mpt, olmo, gpt-neox, phi-2, ... */
    TERN_PRE_LLAMA3,         /* llama3, llama-bpe, llama-v3, ... */
    TERN_PRE_QWEN2,          /* qwen2, deepseek-r1-qwen, stablelm2, ... */
    TERN_PRE_FALCON,         /* falcon */
    TERN_PRE_STARCODER,      /* starcoder, refact, command-r, smollm, codeshell */
    TERN_PRE_DEEPSEEK_LLM,   /* deepseek-llm */
    TERN_PRE_DEEPSEEK_CODER, /* deepseek-coder */
} tern_tok_pre;

#define TERN_TOKEN_NONE (-1)

typedef struct tern_tokenizer_desc {
    tern_tok_model model;
    const char *pre; /* tokenizer.ggml.pre; NULL: default */
    size_t pre_len;
    uint32_t n_tokens;
    const char *const *tokens;  /* token texts (SPM: with '▁'; BPE: byte-encoded) */
    const uint32_t *token_lens; /* NULL: texts are NUL-terminated */
    const float *scores;        /* NULL: all 0 */
    const int32_t *types;       /* tern_token_type each; NULL: all normal */
    uint32_t n_merges;          /* BPE: "left right", rank = index */
    const char *const *merges;
    const uint32_t *merge_lens; /* NULL: NUL-terminated */
    int32_t bos, eos, eot, eom, unk, pad; /* TERN_TOKEN_NONE when absent */
    int add_bos, add_eos, add_space_prefix;
    void *owned; /* storage of tern_tokenizer_desc_from_gguf */
} tern_tokenizer_desc;

typedef struct tern_tokenizer tern_tokenizer;

/* Copies what it needs: desc and its arrays may go once this returns. */
tern_status tern_tokenizer_create(const tern_tokenizer_desc *desc, tern_tokenizer **out, tern_error *err);
void tern_tokenizer_destroy(tern_tokenizer *tok);

/* Maps a pre-tokenizer name; TERN_ERR_UNSUPPORTED names the unknown one. */
tern_status tern_tok_pre_from_name(const char *name, size_t len, tern_tok_pre *out, tern_error *err);

/* Text bytes -> ids. add_special: BOS/EOS as the model asks; parse_special:
 * control/unknown token texts in the input become those tokens (user-defined
 * ones always do, as in llama.cpp). Writes up to cap ids; *n_out is the full
 * count; TERN_ERR_OUT_OF_RANGE when cap was too small. */
tern_status tern_tokenizer_encode(const tern_tokenizer *tok, const char *text, size_t len, int add_special,
                                  int parse_special, int32_t *out, size_t cap, size_t *n_out,
                                  tern_error *err);

uint32_t tern_tokenizer_n_tokens(const tern_tokenizer *tok);
int32_t tern_tokenizer_bos(const tern_tokenizer *tok);
/* 1 when encoding with add_special puts BOS in front. */
int tern_tokenizer_adds_bos(const tern_tokenizer *tok);
int32_t tern_tokenizer_eos(const tern_tokenizer *tok);
int tern_tokenizer_is_eog(const tern_tokenizer *tok, int32_t id);
/* The token's text as stored (NULL when out of range). */
const char *tern_tokenizer_text(const tern_tokenizer *tok, int32_t id, size_t *len);
int32_t tern_tokenizer_find(const tern_tokenizer *tok, const char *text, size_t len);
/* Longest piece token_to_piece can produce. */
size_t tern_tokenizer_max_piece(const tern_tokenizer *tok);

/* The bytes a token stands for: '▁' -> ' ' (SPM), <0xNN> -> the byte, GPT-2
 * unicode -> bytes (BPE); control/unknown tokens give their text only when
 * special is set, nothing otherwise. Returns the length, or the negated
 * length needed when cap is too small. */
int tern_tokenizer_piece(const tern_tokenizer *tok, int32_t id, int special, char *buf, size_t cap);

/* Streaming decoder: feeds ids one at a time and hands back only complete
 * UTF-8 sequences, holding an incomplete one until the next token completes
 * it; drops the space SPM adds in front of the first word. */
typedef struct tern_detok {
    const tern_tokenizer *tok;
    int special;
    int started;
    uint8_t pending[8];
    size_t n_pending;
} tern_detok;

void tern_detok_init(tern_detok *d, const tern_tokenizer *tok, int special);
/* Appends the newly complete text to out (cap bytes, at least
 * max_piece + 8), *n_out its length. */
tern_status tern_detok_feed(tern_detok *d, int32_t id, char *out, size_t cap, size_t *n_out, tern_error *err);
/* Emits what is still held (an incomplete sequence, as is). */
size_t tern_detok_flush(tern_detok *d, char *out, size_t cap);

/* Fills desc from a GGUF file's tokenizer.ggml.* keys, with llama.cpp's
 * defaults; the strings point into g, which must outlive desc. */
tern_status tern_tokenizer_desc_from_gguf(const struct tern_gguf *g, tern_tokenizer_desc *desc,
                                          tern_error *err);
void tern_tokenizer_desc_free(tern_tokenizer_desc *desc);

/* Pre-tokenizer split (exposed for tests): cps[0..n) -> lengths of the pieces,
 * in code points, into *lens (malloc'd, *n_lens entries). */
tern_status tern_pretokenize(tern_tok_pre pre, const uint32_t *cps, size_t n, size_t **lens, size_t *n_lens,
                             tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
