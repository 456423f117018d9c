/* Reads the tokenizer.* metadata of a .tern file (written by the converter's
 * tokenizer_write.c) into a descriptor whose strings point into the mapping. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"
#include "runtime/tokenizer.h"

/* Arrays of the descriptor that the mapping cannot provide directly. */
typedef struct tern_tok_storage {
    const char **tokens;
    uint32_t *token_lens;
    const char **merges;
    uint32_t *merge_lens;
} tern_tok_storage;

static tern_status string_array(const tern_file *f, const char *key, uint32_t *n, const char ***strs,
                                uint32_t **lens, tern_error *err) {
    tern_status st = tern_file_meta_arr_str_count(f, key, n, err);
    if (st) return st;
    *strs = malloc((*n ? *n : 1) * sizeof **strs);
    *lens = malloc((*n ? *n : 1) * sizeof **lens);
    if (!*strs || !*lens) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", key);
    for (uint32_t i = 0; i < *n; i++) {
        size_t len;
        if ((st = tern_file_meta_arr_str(f, key, i, &(*strs)[i], &len, err))) return st;
        (*lens)[i] = (uint32_t)len;
    }
    return TERN_OK;
}

static tern_status optional_i32(const tern_file *f, const char *key, int32_t *out, tern_error *err) {
    *out = TERN_TOKEN_NONE;
    return tern_file_has_meta(f, key) ? tern_file_meta_i32(f, key, out, err) : TERN_OK;
}

static tern_status optional_flag(const tern_file *f, const char *key, int *out, tern_error *err) {
    uint32_t v = 0;
    tern_status st = tern_file_has_meta(f, key) ? tern_file_meta_u32(f, key, &v, err) : TERN_OK;
    *out = v != 0;
    return st;
}

tern_status tern_tokenizer_from_file(const tern_file *f, tern_tokenizer **out, tern_error *err) {
    *out = NULL;
    if (!tern_file_has_meta(f, TERN_KEY_TOK_TOKENS)) return TERN_OK; /* the model has none */
    tern_tokenizer_desc d;
    memset(&d, 0, sizeof d);
    tern_tok_storage s;
    memset(&s, 0, sizeof s);
    const char *model;
    size_t model_len;
    tern_status st = tern_file_meta_str(f, TERN_KEY_TOK_MODEL, &model, &model_len, err);
    if (st) goto done;
    if (model_len == 5 && memcmp(model, "llama", 5) == 0) {
        d.model = TERN_TOK_SPM;
    } else if (model_len == 4 && memcmp(model, "gpt2", 4) == 0) {
        d.model = TERN_TOK_BPE;
    } else {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED, "tokenizer model '%.*s' is not supported",
                       (int)(model_len > 64 ? 64 : model_len), model);
        goto done;
    }
    if (tern_file_has_meta(f, TERN_KEY_TOK_PRE) &&
        (st = tern_file_meta_str(f, TERN_KEY_TOK_PRE, &d.pre, &d.pre_len, err)))
        goto done;
    if ((st = string_array(f, TERN_KEY_TOK_TOKENS, &d.n_tokens, (const char ***)&s.tokens, &s.token_lens, err)))
        goto done;
    d.tokens = s.tokens;
    d.token_lens = s.token_lens;
    uint32_t count;
    if (tern_file_has_meta(f, TERN_KEY_TOK_SCORES)) {
        if ((st = tern_file_meta_arr_f32(f, TERN_KEY_TOK_SCORES, &d.scores, &count, err))) goto done;
        if (count != d.n_tokens) {
            st = tern_fail(err, TERN_ERR_FORMAT, "%s has %u entries for %u tokens", TERN_KEY_TOK_SCORES, count, d.n_tokens);
            goto done;
        }
    }
    if (tern_file_has_meta(f, TERN_KEY_TOK_TYPES)) {
        if ((st = tern_file_meta_arr_i32(f, TERN_KEY_TOK_TYPES, &d.types, &count, err))) goto done;
        if (count != d.n_tokens) {
            st = tern_fail(err, TERN_ERR_FORMAT, "%s has %u entries for %u tokens", TERN_KEY_TOK_TYPES, count, d.n_tokens);
            goto done;
        }
    }
    if (tern_file_has_meta(f, TERN_KEY_TOK_MERGES)) {
        if ((st = string_array(f, TERN_KEY_TOK_MERGES, &d.n_merges, (const char ***)&s.merges, &s.merge_lens, err)))
            goto done;
        d.merges = s.merges;
        d.merge_lens = s.merge_lens;
    }
    if ((st = optional_i32(f, TERN_KEY_TOK_BOS, &d.bos, err)) ||
        (st = optional_i32(f, TERN_KEY_TOK_EOS, &d.eos, err)) ||
        (st = optional_i32(f, TERN_KEY_TOK_EOT, &d.eot, err)) ||
        (st = optional_i32(f, TERN_KEY_TOK_EOM, &d.eom, err)) ||
        (st = optional_i32(f, TERN_KEY_TOK_UNK, &d.unk, err)) ||
        (st = optional_i32(f, TERN_KEY_TOK_PAD, &d.pad, err)) ||
        (st = optional_flag(f, TERN_KEY_TOK_ADD_BOS, &d.add_bos, err)) ||
        (st = optional_flag(f, TERN_KEY_TOK_ADD_EOS, &d.add_eos, err)) ||
        (st = optional_flag(f, TERN_KEY_TOK_ADD_SPACE, &d.add_space_prefix, err)))
        goto done;
    st = tern_tokenizer_create(&d, out, err);
done:
    free(s.tokens);
    free(s.token_lens);
    free(s.merges);
    free(s.merge_lens);
    return st;
}
