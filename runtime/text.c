/* The public text API over the model's tokenizer (runtime/tokenizer.h). */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/keys.h"
#include "runtime/internal.h"

struct tern_detokenizer {
    tern_detok state;
};

static tern_status no_tokenizer(const tern_model *model, tern_error *err) {
    return tern_fail(err, TERN_ERR_UNSUPPORTED,
                     "this %s model has no tokenizer: it was converted without one", model->arch_name);
}

int tern_model_has_tokenizer(const tern_model *model) {
    return model && model->tokenizer != NULL;
}

tern_status tern_model_tokenize(const tern_model *model, const char *text, size_t length,
                                int add_special, int parse_special, int32_t *out, size_t cap,
                                size_t *n_out, tern_error *err) {
    if (!model || (!text && length) || (!out && cap) || !n_out)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_model_tokenize: NULL argument");
    if (!model->tokenizer) return no_tokenizer(model, err);
    return tern_tokenizer_encode(model->tokenizer, text ? text : "", length, add_special,
                                 parse_special, out, cap, n_out, err);
}

int tern_model_is_eog(const tern_model *model, int32_t token) {
    if (!model) return 0;
    if (model->tokenizer) return tern_tokenizer_is_eog(model->tokenizer, token);
    return token >= 0 && token == model->eos_token;
}

int32_t tern_model_token_id(const tern_model *model, const char *text, size_t length) {
    if (!model || !model->tokenizer || !text) return -1;
    return tern_tokenizer_find(model->tokenizer, text, length);
}

int tern_model_token_piece(const tern_model *model, int32_t token, char *buf, size_t cap) {
    if (!model || !model->tokenizer || token < 0 ||
        (uint32_t)token >= tern_tokenizer_n_tokens(model->tokenizer))
        return -1;
    return tern_tokenizer_piece(model->tokenizer, token, 1, buf, cap);
}

tern_status tern_model_chat_template(const tern_model *model, const char **text, size_t *length) {
    if (!model || !text || !length) return TERN_ERR_INVALID_ARG;
    if (!tern_file_has_meta(&model->file, TERN_KEY_TOK_CHAT)) return TERN_ERR_UNSUPPORTED;
    return tern_file_meta_str(&model->file, TERN_KEY_TOK_CHAT, text, length, NULL);
}

tern_status tern_detokenizer_create(const tern_model *model, int special, tern_detokenizer **out,
                                    tern_error *err) {
    if (!model || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_detokenizer_create: NULL argument");
    *out = NULL;
    if (!model->tokenizer) return no_tokenizer(model, err);
    tern_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    tern_detok_init(&d->state, model->tokenizer, special);
    *out = d;
    return TERN_OK;
}

tern_status tern_detokenizer_feed(tern_detokenizer *d, int32_t token, char *out, size_t cap,
                                  size_t *n_out, tern_error *err) {
    if (!d || !out || !n_out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_detokenizer_feed: NULL argument");
    return tern_detok_feed(&d->state, token, out, cap, n_out, err);
}

size_t tern_detokenizer_flush(tern_detokenizer *d, char *out, size_t cap) {
    return d && out ? tern_detok_flush(&d->state, out, cap) : 0;
}

void tern_detokenizer_destroy(tern_detokenizer *d) {
    free(d);
}
