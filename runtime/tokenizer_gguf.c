/* Fills a tokenizer descriptor from GGUF tokenizer.ggml.* metadata with
 * llama.cpp's defaults (llama_vocab::impl::load): SPM adds BOS and a space
 * prefix, BPE neither (except the Llama-3 family, which adds BOS); explicit
 * keys override; special ids out of range are dropped. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "formats/gguf.h"
#include "runtime/tokenizer.h"

typedef struct owned {
    const char **tokens;
    uint32_t *token_lens;
    float *scores;
    int32_t *types;
    const char **merges;
    uint32_t *merge_lens;
} owned;

void tern_tokenizer_desc_free(tern_tokenizer_desc *d) {
    if (!d) return;
    owned *o = d->owned;
    if (o) {
        free(o->tokens);
        free(o->token_lens);
        free(o->scores);
        free(o->types);
        free(o->merges);
        free(o->merge_lens);
        free(o);
    }
    memset(d, 0, sizeof *d);
}

static int is_int_type(tern_gguf_type t) {
    return t == TERN_GGUF_U8 || t == TERN_GGUF_I8 || t == TERN_GGUF_U16 || t == TERN_GGUF_I16 ||
           t == TERN_GGUF_U32 || t == TERN_GGUF_I32 || t == TERN_GGUF_U64 || t == TERN_GGUF_I64;
}

/* Optional special id: leaves *id alone when the key is absent or out of range. */
static tern_status get_id(const tern_gguf *g, const char *key, uint32_t n_tokens, int32_t *id, tern_error *err) {
    if (!tern_gguf_find(g, key)) return TERN_OK;
    uint32_t v;
    tern_status s = tern_gguf_get_u32(g, key, &v, err);
    if (s) return s;
    if (v < n_tokens) *id = (int32_t)v;
    return TERN_OK;
}

static tern_status get_flag(const tern_gguf *g, const char *key, int *flag, tern_error *err) {
    if (!tern_gguf_find(g, key)) return TERN_OK;
    return tern_gguf_get_bool(g, key, flag, err);
}

static tern_status string_array(const tern_gguf *g, const char *key, const char ***strs, uint32_t **lens,
                                uint32_t *n, tern_error *err) {
    const tern_gguf_value *a;
    tern_status s = tern_gguf_get_array(g, key, &a, err);
    if (s) return s;
    if (a->elem_type != TERN_GGUF_STRING)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: %s is an array of %s, expected strings", key,
                         tern_gguf_type_name(a->elem_type));
    if (a->count > INT32_MAX / 2)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: %s has too many entries", key);
    *n = (uint32_t)a->count;
    *strs = malloc((a->count ? a->count : 1) * sizeof **strs);
    *lens = malloc((a->count ? a->count : 1) * sizeof **lens);
    if (!*strs || !*lens) return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory reading %s", key);
    for (uint64_t i = 0; i < a->count; i++) {
        tern_gguf_str e = tern_gguf_array_str(a, i);
        if (e.len > UINT32_MAX)
            return tern_fail(err, TERN_ERR_FORMAT, "gguf: %s entry %llu is too long", key, (unsigned long long)i);
        (*strs)[i] = e.ptr;
        (*lens)[i] = (uint32_t)e.len;
    }
    return TERN_OK;
}

tern_status tern_tokenizer_desc_from_gguf(const tern_gguf *g, tern_tokenizer_desc *d, tern_error *err) {
    memset(d, 0, sizeof *d);
    owned *o = calloc(1, sizeof *o);
    if (!o) return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory");
    d->owned = o;
    tern_status s;
    tern_gguf_str model;
    if ((s = tern_gguf_get_str(g, "tokenizer.ggml.model", &model, err))) goto fail;
    if (tern_gguf_str_eq(model, "llama")) {
        d->model = TERN_TOK_SPM;
        d->bos = 1, d->eos = 2, d->unk = 0;
        d->add_bos = 1, d->add_space_prefix = 1;
    } else if (tern_gguf_str_eq(model, "gpt2")) {
        d->model = TERN_TOK_BPE;
        d->bos = 11, d->eos = 11, d->unk = TERN_TOKEN_NONE;
    } else {
        s = tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: tokenizer model '%.*s' is not supported (llama, gpt2 are)",
                      (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }
    d->eot = d->eom = d->pad = TERN_TOKEN_NONE;
    tern_gguf_str pre = {NULL, 0};
    if (tern_gguf_find(g, "tokenizer.ggml.pre") && (s = tern_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)))
        goto fail;
    if (d->model == TERN_TOK_BPE) {
        d->pre = pre.ptr;
        d->pre_len = pre.len;
        tern_tok_pre p;
        if ((s = tern_tok_pre_from_name(pre.ptr, pre.len, &p, err))) goto fail;
        if (p == TERN_PRE_LLAMA3) d->add_bos = 1;
    }
    if ((s = get_flag(g, "tokenizer.ggml.add_space_prefix", &d->add_space_prefix, err))) goto fail;

    if ((s = string_array(g, "tokenizer.ggml.tokens", &o->tokens, &o->token_lens, &d->n_tokens, err))) goto fail;
    d->tokens = o->tokens;
    d->token_lens = o->token_lens;

    const tern_gguf_value *sc = tern_gguf_find(g, "tokenizer.ggml.scores");
    if (sc) {
        if (sc->type != TERN_GGUF_ARRAY || (sc->elem_type != TERN_GGUF_F32 && sc->elem_type != TERN_GGUF_I32)) {
            s = tern_fail(err, TERN_ERR_FORMAT, "gguf: tokenizer.ggml.scores must be an array of f32");
            goto fail;
        }
        if (sc->count < d->n_tokens) {
            s = tern_fail(err, TERN_ERR_FORMAT, "gguf: %llu scores for %u tokens", (unsigned long long)sc->count,
                          d->n_tokens);
            goto fail;
        }
        o->scores = malloc((d->n_tokens ? d->n_tokens : 1) * sizeof *o->scores);
        if (!o->scores) goto oom;
        for (uint32_t i = 0; i < d->n_tokens; i++) o->scores[i] = (float)tern_gguf_array_float(sc, i);
        d->scores = o->scores;
    }
    const tern_gguf_value *ty = tern_gguf_find(g, "tokenizer.ggml.token_type");
    if (ty) {
        if (ty->type != TERN_GGUF_ARRAY || !is_int_type(ty->elem_type)) {
            s = tern_fail(err, TERN_ERR_FORMAT, "gguf: tokenizer.ggml.token_type must be an array of i32");
            goto fail;
        }
        if (ty->count < d->n_tokens) {
            s = tern_fail(err, TERN_ERR_FORMAT, "gguf: %llu token types for %u tokens",
                          (unsigned long long)ty->count, d->n_tokens);
            goto fail;
        }
        o->types = malloc((d->n_tokens ? d->n_tokens : 1) * sizeof *o->types);
        if (!o->types) goto oom;
        for (uint32_t i = 0; i < d->n_tokens; i++) o->types[i] = (int32_t)tern_gguf_array_int(ty, i);
        d->types = o->types;
    }
    if (d->model == TERN_TOK_BPE) {
        if (!tern_gguf_find(g, "tokenizer.ggml.merges")) {
            s = tern_fail(err, TERN_ERR_FORMAT, "gguf: BPE tokenizer without tokenizer.ggml.merges");
            goto fail;
        }
        if ((s = string_array(g, "tokenizer.ggml.merges", &o->merges, &o->merge_lens, &d->n_merges, err)))
            goto fail;
        d->merges = o->merges;
        d->merge_lens = o->merge_lens;
    }
    /* Defaults that fall outside the vocabulary are dropped. */
    int32_t *ids[] = {&d->bos, &d->eos, &d->unk};
    for (size_t i = 0; i < 3; i++)
        if (*ids[i] >= 0 && (uint32_t)*ids[i] >= d->n_tokens) *ids[i] = TERN_TOKEN_NONE;
    if ((s = get_id(g, "tokenizer.ggml.bos_token_id", d->n_tokens, &d->bos, err))) goto fail;
    if ((s = get_id(g, "tokenizer.ggml.eos_token_id", d->n_tokens, &d->eos, err))) goto fail;
    if ((s = get_id(g, "tokenizer.ggml.eot_token_id", d->n_tokens, &d->eot, err))) goto fail;
    if ((s = get_id(g, "tokenizer.ggml.eom_token_id", d->n_tokens, &d->eom, err))) goto fail;
    if ((s = get_id(g, "tokenizer.ggml.unknown_token_id", d->n_tokens, &d->unk, err))) goto fail;
    if ((s = get_id(g, "tokenizer.ggml.padding_token_id", d->n_tokens, &d->pad, err))) goto fail;
    if ((s = get_flag(g, "tokenizer.ggml.add_bos_token", &d->add_bos, err))) goto fail;
    if ((s = get_flag(g, "tokenizer.ggml.add_eos_token", &d->add_eos, err))) goto fail;
    return TERN_OK;
oom:
    s = tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory reading the tokenizer");
fail:
    tern_tokenizer_desc_free(d);
    return s;
}
