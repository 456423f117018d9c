/* Stores a tokenizer descriptor in a .tern file's tokenizer.* metadata
 * (formats/keys.h); runtime/tokenizer_tern.c reads it back. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "converter/convert_internal.h"
#include "formats/keys.h"

static tern_status write_strings(tern_writer *w, const char *key, const char *const *strs,
                                 const uint32_t *lens, uint32_t n, tern_error *err) {
    uint32_t *own = NULL;
    if (!lens) {
        own = malloc((n ? n : 1) * sizeof *own);
        if (!own) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory writing %s", key);
        for (uint32_t i = 0; i < n; i++) own[i] = (uint32_t)strlen(strs[i]);
        lens = own;
    }
    tern_status st = tern_writer_set_arr_str(w, key, strs, lens, n, err);
    free(own);
    return st;
}

tern_status tern_tokenizer_desc_write(tern_writer *w, const tern_tokenizer_desc *d, tern_error *err) {
    const char *model = d->model == TERN_TOK_SPM ? "llama" : "gpt2";
    tern_status st;
    if ((st = tern_writer_set_str(w, TERN_KEY_TOK_MODEL, model, strlen(model), err)) ||
        (d->pre && (st = tern_writer_set_str(w, TERN_KEY_TOK_PRE, d->pre, d->pre_len, err))) ||
        (st = write_strings(w, TERN_KEY_TOK_TOKENS, d->tokens, d->token_lens, d->n_tokens, err)) ||
        (d->scores && (st = tern_writer_set_arr_f32(w, TERN_KEY_TOK_SCORES, d->scores, d->n_tokens, err))) ||
        (d->types && (st = tern_writer_set_arr_i32(w, TERN_KEY_TOK_TYPES, d->types, d->n_tokens, err))) ||
        (d->n_merges && (st = write_strings(w, TERN_KEY_TOK_MERGES, d->merges, d->merge_lens, d->n_merges, err))) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_BOS, d->bos, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_EOS, d->eos, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_EOT, d->eot, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_EOM, d->eom, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_UNK, d->unk, err)) ||
        (st = tern_writer_set_i32(w, TERN_KEY_TOK_PAD, d->pad, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_TOK_ADD_BOS, d->add_bos != 0, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_TOK_ADD_EOS, d->add_eos != 0, err)) ||
        (st = tern_writer_set_u32(w, TERN_KEY_TOK_ADD_SPACE, d->add_space_prefix != 0, err)))
        return st;
    return TERN_OK;
}
