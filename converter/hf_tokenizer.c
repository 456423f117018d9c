/* Hugging Face tokenizer.json (+ tokenizer_config.json) -> tern_tokenizer_desc,
 * written into the .tern file beside the weights. Two shapes are recognised:
 *  - byte-level BPE (GPT-2, GPT-NeoX, Llama-3, Qwen2, SmolLM/StarCoder):
 *    model.type "BPE", no byte_fallback, a ByteLevel pre-tokenizer; the
 *    pre-tokenizer name (GGUF's tokenizer.ggml.pre) comes from the exact
 *    Split regex the model ships, or Digits + ByteLevel for StarCoder;
 *  - SentencePiece BPE (Llama 1/2, Mistral, TinyLlama): model.type "BPE" with
 *    byte_fallback and the "▁" space marker (Metaspace, or a Replace
 *    normaliser). HF keeps no scores; llama.cpp's converter (LlamaHfVocab)
 *    writes -1000 for every token, which leaves SPM's merge order to chance.
 *    Here a token's score is minus the rank of the first merge that builds
 *    it, so SPM's "highest score first" replays HF's "lowest rank first".
 * Anything else (Unigram, WordPiece, an unknown regex) fails with
 * TERN_ERR_UNSUPPORTED naming what was found: a model converted with a
 * guessed pre-tokenizer would tokenize differently without a word.
 * The files are untrusted: every field is type- and range-checked. */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "converter/hf_internal.h"
#include "formats/keys.h"

#define TJ "tokenizer.json: "
#define TC "tokenizer_config.json: "

/* The pre-tokenizer regexes, exactly as the models' tokenizer.json files
 * hold them (after JSON unescaping). */
static const char re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char spm_space[] = "\xe2\x96\x81"; /* U+2581 "▁" */

/* ---- small JSON helpers ---------------------------------------------------- */

static int is_str(json_object *v) { return v && json_object_get_type(v) == json_type_string; }

static int str_eq(json_object *v, const char *s) {
    return is_str(v) && (size_t)json_object_get_string_len(v) == strlen(s) &&
           memcmp(json_object_get_string(v), s, strlen(s)) == 0;
}

/* A boolean field: def when absent or null. */
static tern_status get_bool(json_object *obj, const char *key, const char *where, int def, int *out,
                            tern_error *err) {
    json_object *v = tern_hf_field(obj, key);
    if (!v) {
        *out = def;
        return TERN_OK;
    }
    if (json_object_get_type(v) != json_type_boolean)
        return tern_fail(err, TERN_ERR_FORMAT, "%s\"%s\" is not true or false", where, key);
    *out = json_object_get_boolean(v);
    return TERN_OK;
}

/* A token id in [0, TERN_HF_MAX_DIM). */
static tern_status get_id(json_object *v, const char *what, const char *name, uint32_t *out, tern_error *err) {
    if (!v || json_object_get_type(v) != json_type_int)
        return tern_fail(err, TERN_ERR_FORMAT, TJ "%s of '%.64s' is not an integer id", what, name);
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (x < 0 || x >= (int64_t)TERN_HF_MAX_DIM || errno)
        return tern_fail(err, TERN_ERR_FORMAT, TJ "%s of '%.64s' = %lld is outside [0, %u)", what, name,
                         (long long)x, TERN_HF_MAX_DIM);
    *out = (uint32_t)x;
    return TERN_OK;
}

/* Reads a whole text file of at most max bytes; *out NULL when it is absent. */
static tern_status read_text(const char *path, size_t max, char **out, size_t *len, tern_error *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return TERN_OK;
        return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, max + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > max) {
        free(buf);
        return failed ? tern_fail(err, TERN_ERR_IO, "cannot read %s", path)
                      : tern_fail(err, TERN_ERR_FORMAT, "%s is larger than %zu bytes", path, max);
    }
    *out = buf;
    *len = n;
    return TERN_OK;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- token text -> id -------------------------------------------------------- */

typedef struct text_map {
    int32_t *slot; /* token ids, -1 empty */
    uint64_t mask;
} text_map;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int32_t map_find(const text_map *m, const tern_hf_tokenizer *t, const char *s, size_t n) {
    for (uint64_t h = hash_bytes(s, n) & m->mask;; h = (h + 1) & m->mask) {
        int32_t id = m->slot[h];
        if (id < 0) return -1;
        if (t->token_lens[id] == n && memcmp(t->tokens[id], s, n) == 0) return id;
    }
}

static tern_status map_build(text_map *m, const tern_hf_tokenizer *t, uint32_t n, tern_error *err) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    m->mask = cap - 1;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory for %u tokens", n);
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    for (uint32_t i = 0; i < n; i++) {
        if (map_find(m, t, t->tokens[i], t->token_lens[i]) >= 0) continue; /* the first id wins */
        uint64_t h = hash_bytes(t->tokens[i], t->token_lens[i]) & m->mask;
        while (m->slot[h] >= 0) h = (h + 1) & m->mask;
        m->slot[h] = (int32_t)i;
    }
    return TERN_OK;
}

/* ---- the parts of tokenizer.json ------------------------------------------ */

typedef struct pre_info {
    int byte_level, byte_level_regex; /* a ByteLevel pre-tokenizer, its use_regex */
    int digits;                       /* Digits with individual_digits */
    int metaspace, metaspace_prefix;  /* Metaspace "▁" and whether it prepends one */
    uint32_t n_split;
    const char *split; /* the last Split's regex */
    size_t split_len;
} pre_info;

static tern_status walk_pre(json_object *p, pre_info *pi, int depth, tern_error *err) {
    if (!p) return TERN_OK;
    if (json_object_get_type(p) != json_type_object || depth > 4)
        return tern_fail(err, TERN_ERR_FORMAT, TJ "pre_tokenizer is not an object");
    json_object *type = tern_hf_field(p, "type");
    tern_status st;
    if (str_eq(type, "Sequence")) {
        json_object *list = tern_hf_field(p, "pretokenizers");
        if (!list || json_object_get_type(list) != json_type_array)
            return tern_fail(err, TERN_ERR_FORMAT, TJ "pre_tokenizer Sequence has no \"pretokenizers\" list");
        for (size_t i = 0; i < json_object_array_length(list); i++)
            if ((st = walk_pre(json_object_array_get_idx(list, i), pi, depth + 1, err))) return st;
        return TERN_OK;
    }
    if (str_eq(type, "ByteLevel")) {
        pi->byte_level = 1;
        return get_bool(p, "use_regex", TJ "ByteLevel ", 1, &pi->byte_level_regex, err);
    }
    if (str_eq(type, "Digits")) {
        if ((st = get_bool(p, "individual_digits", TJ "Digits ", 0, &pi->digits, err))) return st;
        if (!pi->digits)
            return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "Digits without individual_digits is not supported");
        return TERN_OK;
    }
    if (str_eq(type, "Metaspace")) {
        json_object *rep = tern_hf_field(p, "replacement");
        if (rep && !str_eq(rep, spm_space))
            return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "Metaspace replacement '%.16s' is not supported (only U+2581)",
                             is_str(rep) ? json_object_get_string(rep) : "?");
        pi->metaspace = 1;
        json_object *scheme = tern_hf_field(p, "prepend_scheme");
        if (scheme) {
            if (str_eq(scheme, "always") || str_eq(scheme, "first"))
                pi->metaspace_prefix = 1;
            else if (str_eq(scheme, "never"))
                pi->metaspace_prefix = 0;
            else
                return tern_fail(err, TERN_ERR_FORMAT, TJ "Metaspace prepend_scheme is not always, first or never");
            return TERN_OK;
        }
        return get_bool(p, "add_prefix_space", TJ "Metaspace ", 1, &pi->metaspace_prefix, err);
    }
    if (str_eq(type, "Split")) {
        json_object *pat = tern_hf_field(p, "pattern");
        json_object *re = pat && json_object_get_type(pat) == json_type_object ? tern_hf_field(pat, "Regex") : NULL;
        if (!is_str(re))
            return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "a Split pre-tokenizer without a \"Regex\" pattern is not supported");
        int invert = 0; /* gcc -fsanitize=thread -O2 sees it maybe-uninitialized */
        if ((st = get_bool(p, "invert", TJ "Split ", 0, &invert, err))) return st;
        json_object *beh = tern_hf_field(p, "behavior");
        if (invert || (beh && !str_eq(beh, "Isolated")))
            return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "only Isolated, non-inverted Split pre-tokenizers are supported");
        pi->n_split++;
        pi->split = json_object_get_string(re);
        pi->split_len = (size_t)json_object_get_string_len(re);
        return TERN_OK;
    }
    return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "pre-tokenizer '%.64s' is not supported",
                     is_str(type) ? json_object_get_string(type) : "(no type)");
}

/* SPM normalisers: Replace(" " -> "▁") marks spaces, Prepend("▁") adds the
 * leading space; NFC is accepted (llama.cpp ignores it too). */
static tern_status walk_norm(json_object *n, int *replace, int *prepend, int depth, tern_error *err) {
    if (!n) return TERN_OK;
    if (json_object_get_type(n) != json_type_object || depth > 4)
        return tern_fail(err, TERN_ERR_FORMAT, TJ "normalizer is not an object");
    json_object *type = tern_hf_field(n, "type");
    if (str_eq(type, "Sequence")) {
        json_object *list = tern_hf_field(n, "normalizers");
        if (!list || json_object_get_type(list) != json_type_array)
            return tern_fail(err, TERN_ERR_FORMAT, TJ "normalizer Sequence has no \"normalizers\" list");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            tern_status st = walk_norm(json_object_array_get_idx(list, i), replace, prepend, depth + 1, err);
            if (st) return st;
        }
        return TERN_OK;
    }
    if (str_eq(type, "NFC")) return TERN_OK;
    if (str_eq(type, "Prepend") && str_eq(tern_hf_field(n, "prepend"), spm_space)) {
        *prepend = 1;
        return TERN_OK;
    }
    if (str_eq(type, "Replace")) {
        json_object *pat = tern_hf_field(n, "pattern");
        json_object *s = pat && json_object_get_type(pat) == json_type_object ? tern_hf_field(pat, "String") : NULL;
        if (str_eq(s, " ") && str_eq(tern_hf_field(n, "content"), spm_space)) {
            *replace = 1;
            return TERN_OK;
        }
    }
    return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "normalizer '%.64s' is not supported",
                     is_str(type) ? json_object_get_string(type) : "(no type)");
}

/* The pre-tokenizer name for a byte-level BPE. */
static tern_status bpe_pre_name(const pre_info *pi, const char **name, tern_error *err) {
    *name = NULL;
    if (!pi->byte_level)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         TJ "BPE without byte_fallback needs a ByteLevel pre-tokenizer (GPT-2 style)");
    if (pi->n_split == 0 && pi->byte_level_regex) {
        *name = pi->digits ? "starcoder" : "gpt-2"; /* ByteLevel's own regex is GPT-2's */
        return TERN_OK;
    }
    if (pi->n_split == 1 && !pi->byte_level_regex && !pi->digits) {
        static const struct {
            const char *re, *name;
        } known[] = {{re_gpt2, "gpt-2"}, {re_llama3, "llama-bpe"}, {re_qwen2, "qwen2"}};
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (pi->split_len == strlen(known[i].re) && memcmp(pi->split, known[i].re, pi->split_len) == 0) {
                *name = known[i].name;
                return TERN_OK;
            }
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         TJ "pre-tokenizer regex '%.200s' is not one tern knows (GPT-2, Llama-3, Qwen2)",
                         pi->split);
    }
    return tern_fail(err, TERN_ERR_UNSUPPORTED,
                     TJ "pre-tokenizer with %u Split(s), Digits %d and ByteLevel use_regex %d is not supported",
                     pi->n_split, pi->digits, pi->byte_level_regex);
}

/* A token given as "text" or {"content": "text"}; *id -1 when not found. */
static tern_status config_token(json_object *tc, const char *key, const tern_hf_tokenizer *t, const text_map *m,
                                json_object *added, int32_t *id, tern_error *err) {
    *id = -1;
    json_object *v = tern_hf_field(tc, key);
    if (!v) return TERN_OK;
    if (json_object_get_type(v) == json_type_object) v = tern_hf_field(v, "content");
    if (!is_str(v)) return tern_fail(err, TERN_ERR_FORMAT, TC "\"%s\" is neither a string nor {\"content\": string}", key);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    /* Added tokens first, as llama.cpp's SpecialVocab looks there. */
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        json_object *a = json_object_array_get_idx(added, i);
        json_object *c = tern_hf_field(a, "content");
        if ((size_t)json_object_get_string_len(c) == n && memcmp(json_object_get_string(c), s, n) == 0) {
            *id = (int32_t)json_object_get_int64(tern_hf_field(a, "id")); /* checked before */
            return TERN_OK;
        }
    }
    *id = map_find(m, t, s, n);
    return TERN_OK;
}

/* config.json's id: an integer or a list whose first element is used; -1 otherwise. */
static int32_t config_id(json_object *cfg, const char *key, uint32_t n) {
    json_object *v = tern_hf_field(cfg, key);
    if (v && json_object_get_type(v) == json_type_array)
        v = json_object_array_length(v) ? json_object_array_get_idx(v, 0) : NULL;
    if (!v || json_object_get_type(v) != json_type_int) return -1;
    int64_t x = json_object_get_int64(v);
    return x >= 0 && x < (int64_t)n ? (int32_t)x : -1;
}

/* post_processor TemplateProcessing: a special token first (BOS) or last (EOS). */
static void template_specials(json_object *pp, const tern_hf_tokenizer *t, const text_map *m, int32_t *first,
                              int32_t *last) {
    *first = *last = -1;
    if (!pp || json_object_get_type(pp) != json_type_object) return;
    json_object *list = tern_hf_field(pp, "processors");
    size_t n = list && json_object_get_type(list) == json_type_array ? json_object_array_length(list) : 1;
    for (size_t i = 0; i < n; i++) {
        json_object *p = list && json_object_get_type(list) == json_type_array ? json_object_array_get_idx(list, i) : pp;
        if (!p || json_object_get_type(p) != json_type_object || !str_eq(tern_hf_field(p, "type"), "TemplateProcessing"))
            continue;
        json_object *single = tern_hf_field(p, "single");
        if (!single || json_object_get_type(single) != json_type_array || json_object_array_length(single) < 2) continue;
        size_t k = json_object_array_length(single);
        json_object *ends[2] = {json_object_array_get_idx(single, 0), json_object_array_get_idx(single, k - 1)};
        int32_t *out[2] = {first, last};
        for (int e = 0; e < 2; e++) {
            json_object *sp = ends[e] && json_object_get_type(ends[e]) == json_type_object
                                  ? tern_hf_field(ends[e], "SpecialToken") : NULL;
            json_object *id = sp && json_object_get_type(sp) == json_type_object ? tern_hf_field(sp, "id") : NULL;
            if (is_str(id))
                *out[e] = map_find(m, t, json_object_get_string(id), (size_t)json_object_get_string_len(id));
        }
    }
}

static tern_status read_chat_template(const char *dir, json_object *tc, tern_hf_tokenizer *t, tern_error *err) {
    json_object *ct = tern_hf_field(tc, "chat_template");
    if (ct && json_object_get_type(ct) == json_type_array) {
        json_object *found = NULL;
        for (size_t i = 0; i < json_object_array_length(ct); i++) {
            json_object *e = json_object_array_get_idx(ct, i);
            if (!e || json_object_get_type(e) != json_type_object || !is_str(tern_hf_field(e, "name")) ||
                !is_str(tern_hf_field(e, "template")))
                return tern_fail(err, TERN_ERR_FORMAT, TC "chat_template[%zu] is not {\"name\", \"template\"}", i);
            if (str_eq(tern_hf_field(e, "name"), "default")) found = tern_hf_field(e, "template");
        }
        ct = found; /* named templates only (tool_use, ...): no default one */
    } else if (ct && !is_str(ct)) {
        return tern_fail(err, TERN_ERR_FORMAT, TC "chat_template is neither a string nor a list of templates");
    }
    if (ct) {
        t->chat_template = json_object_get_string(ct);
        t->chat_template_len = (size_t)json_object_get_string_len(ct);
        return TERN_OK;
    }
    /* Newer transformers save the template beside the config. */
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/chat_template.jinja", dir) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
    tern_status st = read_text(path, TERN_HF_MAX_CONFIG, &t->template_buf, &t->chat_template_len, err);
    if (st) return st;
    t->chat_template = t->template_buf;
    return TERN_OK;
}

/* ---- the whole tokenizer ------------------------------------------------------ */

void tern_hf_tokenizer_free(tern_hf_tokenizer *t) {
    if (!t) return;
    json_object_put(t->json);
    json_object_put(t->config);
    free(t->tokens);
    free(t->token_lens);
    free(t->scores);
    free(t->types);
    free(t->merges);
    free(t->merge_lens);
    free(t->text);
    free(t->merge_text);
    free(t->template_buf);
    memset(t, 0, sizeof *t);
}

/* Builds the "left right" strings; pairs (transformers >= 4.45) are joined
 * with their own spaces written as U+0120, as llama.cpp does. */
static tern_status read_merges(json_object *merges, tern_hf_tokenizer *t, uint32_t *n_out, char **arena,
                               tern_error *err) {
    *n_out = 0;
    *arena = NULL;
    if (!merges) return TERN_OK;
    if (json_object_get_type(merges) != json_type_array)
        return tern_fail(err, TERN_ERR_FORMAT, TJ "model.merges is not a list");
    size_t n = json_object_array_length(merges);
    if (n > INT32_MAX / 2) return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "too many merges (%zu)", n);
    t->merges = malloc((n ? n : 1) * sizeof *t->merges);
    t->merge_lens = malloc((n ? n : 1) * sizeof *t->merge_lens);
    if (!t->merges || !t->merge_lens) return tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory for %zu merges", n);
    uint64_t arena_size = 1;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(merges, i);
        if (is_str(m)) {
            const char *s = json_object_get_string(m);
            size_t len = (size_t)json_object_get_string_len(m);
            const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
            if (!sp || sp == s + len - 1)
                return tern_fail(err, TERN_ERR_FORMAT, TJ "merge %zu '%.64s' is not \"left right\"", i, s);
            t->merges[i] = s;
            t->merge_lens[i] = (uint32_t)len;
        } else if (m && json_object_get_type(m) == json_type_array && json_object_array_length(m) == 2 &&
                   is_str(json_object_array_get_idx(m, 0)) && is_str(json_object_array_get_idx(m, 1)) &&
                   json_object_get_string_len(json_object_array_get_idx(m, 0)) > 0 &&
                   json_object_get_string_len(json_object_array_get_idx(m, 1)) > 0) {
            t->merges[i] = NULL; /* joined below */
            for (int k = 0; k < 2; k++) {
                json_object *p = json_object_array_get_idx(m, k);
                const char *s = json_object_get_string(p);
                size_t len = (size_t)json_object_get_string_len(p);
                arena_size += len + 1;
                for (size_t j = 0; j < len; j++) arena_size += s[j] == ' ';
            }
        } else {
            return tern_fail(err, TERN_ERR_FORMAT, TJ "merge %zu is neither \"left right\" nor [left, right]", i);
        }
        if (arena_size > UINT32_MAX) return tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "merges are too large");
    }
    *arena = malloc((size_t)arena_size);
    if (!*arena) return tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory for the merges");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->merges[i]) continue;
        json_object *m = json_object_array_get_idx(merges, i);
        char *start = *arena + at;
        for (int k = 0; k < 2; k++) {
            json_object *p = json_object_array_get_idx(m, k);
            const char *s = json_object_get_string(p);
            size_t len = (size_t)json_object_get_string_len(p);
            if (k) (*arena)[at++] = ' ';
            for (size_t j = 0; j < len; j++) {
                if (s[j] == ' ') {
                    (*arena)[at++] = (char)0xC4; /* U+0120 */
                    (*arena)[at++] = (char)0xA0;
                } else {
                    (*arena)[at++] = s[j];
                }
            }
        }
        t->merges[i] = start;
        t->merge_lens[i] = (uint32_t)(*arena + at - start);
    }
    *n_out = (uint32_t)n;
    return TERN_OK;
}

static int is_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return 0;
    }
    return 1;
}

tern_status tern_hf_tokenizer_load(const char *dir, json_object *cfg, uint32_t n_vocab, tern_hf_tokenizer *t,
                                   tern_error *err) {
    memset(t, 0, sizeof *t);
    tern_tokenizer_desc *d = &t->desc;
    d->bos = d->eos = d->eot = d->eom = d->unk = d->pad = TERN_TOKEN_NONE;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
    if (!file_exists(path)) return TERN_OK;
    t->found = 1;
    tern_status st = tern_hf_read_json(path, TERN_HF_MAX_TOKENIZER, &t->json, err);
    if (st) return st;
    text_map map = {NULL, 0};
    char *merge_arena = NULL;

    json_object *model = tern_hf_field(t->json, "model");
    if (!model || json_object_get_type(model) != json_type_object) {
        st = tern_fail(err, TERN_ERR_FORMAT, TJ "\"model\" is missing or not an object");
        goto done;
    }
    json_object *mtype = tern_hf_field(model, "type");
    if (mtype && !str_eq(mtype, "BPE")) {
        st = tern_fail(err, is_str(mtype) ? TERN_ERR_UNSUPPORTED : TERN_ERR_FORMAT,
                       TJ "model type '%.32s' is not supported (only BPE: byte-level or SentencePiece-style)",
                       is_str(mtype) ? json_object_get_string(mtype) : "(not a string)");
        goto done;
    }
    int byte_fallback = 0;
    if ((st = get_bool(model, "byte_fallback", TJ "model.", 0, &byte_fallback, err))) goto done;
    pre_info pi;
    memset(&pi, 0, sizeof pi);
    if ((st = walk_pre(tern_hf_field(t->json, "pre_tokenizer"), &pi, 0, err))) goto done;
    const char *pre_name = NULL;
    if (byte_fallback) {
        int replace = 0, prepend = 0;
        if ((st = walk_norm(tern_hf_field(t->json, "normalizer"), &replace, &prepend, 0, err))) goto done;
        if (pi.byte_level || pi.digits || pi.n_split || !(replace || pi.metaspace)) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                           TJ "a BPE with byte_fallback needs the SentencePiece space marker "
                              "(Metaspace or Replace(\" \", U+2581)) and no other pre-tokenizer");
            goto done;
        }
        d->model = TERN_TOK_SPM;
        d->add_bos = 1;
        d->add_space_prefix = pi.metaspace ? pi.metaspace_prefix : prepend;
    } else {
        json_object *norm = tern_hf_field(t->json, "normalizer");
        if (norm && !str_eq(tern_hf_field(norm, "type"), "NFC")) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "a byte-level BPE normalizer other than NFC is not supported");
            goto done;
        }
        json_object *dec = tern_hf_field(t->json, "decoder");
        if (dec && !str_eq(json_object_get_type(dec) == json_type_object ? tern_hf_field(dec, "type") : NULL, "ByteLevel")) {
            st = tern_fail(err, TERN_ERR_UNSUPPORTED, TJ "a byte-level BPE needs a ByteLevel decoder");
            goto done;
        }
        if ((st = bpe_pre_name(&pi, &pre_name, err))) goto done;
        d->model = TERN_TOK_BPE;
        d->pre = pre_name;
        d->pre_len = strlen(pre_name);
        d->add_bos = strcmp(pre_name, "llama-bpe") == 0; /* as tokenizer_gguf.c */
    }

    /* The id range: model.vocab and added_tokens. */
    json_object *vocab = tern_hf_field(model, "vocab");
    if (!vocab || json_object_get_type(vocab) != json_type_object) {
        st = tern_fail(err, TERN_ERR_FORMAT, TJ "model.vocab is missing or not an object");
        goto done;
    }
    json_object *added = tern_hf_field(t->json, "added_tokens");
    if (added && json_object_get_type(added) != json_type_array) {
        st = tern_fail(err, TERN_ERR_FORMAT, TJ "added_tokens is not a list");
        goto done;
    }
    uint32_t n = 0;
    {
        json_object_object_foreach(vocab, key, val) {
            uint32_t id = 0;
            if ((st = get_id(val, "model.vocab id", key, &id, err))) goto done;
            if (id + 1 > n) n = id + 1;
        }
    }
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        json_object *a = json_object_array_get_idx(added, i);
        json_object *c = a && json_object_get_type(a) == json_type_object ? tern_hf_field(a, "content") : NULL;
        if (!is_str(c)) {
            st = tern_fail(err, TERN_ERR_FORMAT, TJ "added_tokens[%zu] has no \"content\" string", i);
            goto done;
        }
        uint32_t id = 0;
        int special = 0;
        if ((st = get_id(tern_hf_field(a, "id"), "added_tokens id", json_object_get_string(c), &id, err)) ||
            (st = get_bool(a, "special", TJ "added_tokens ", 0, &special, err)))
            goto done;
        if (id + 1 > n) n = id + 1;
    }
    if (n == 0) {
        st = tern_fail(err, TERN_ERR_FORMAT, TJ "the vocabulary is empty");
        goto done;
    }
    if (n_vocab && n > n_vocab) {
        st = tern_fail(err, TERN_ERR_FORMAT,
                       TJ "%u tokens, more than the model's vocab_size %u (its embedding has no row for them)", n,
                       n_vocab);
        goto done;
    }
    /* Holes are padded like llama.cpp does, but a lone huge id must not make
     * us allocate gigabytes: without a vocab_size, ids stay near the count. */
    uint64_t n_entries = (uint64_t)json_object_object_length(vocab) + (added ? json_object_array_length(added) : 0);
    if (!n_vocab && n > n_entries + 65536) {
        st = tern_fail(err, TERN_ERR_FORMAT, TJ "ids reach %u with only %llu tokens listed", n - 1,
                       (unsigned long long)n_entries);
        goto done;
    }
    if (n_vocab > n) n = n_vocab;

    t->tokens = calloc(n, sizeof *t->tokens);
    t->token_lens = calloc(n, sizeof *t->token_lens);
    t->types = calloc(n, sizeof *t->types);
    t->scores = malloc(n * sizeof *t->scores);
    if (!t->tokens || !t->token_lens || !t->types || !t->scores) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory for %u tokens", n);
        goto done;
    }
    {
        json_object_object_foreach(vocab, key, val) {
            uint32_t id = (uint32_t)json_object_get_int64(val);
            if (t->tokens[id]) {
                st = tern_fail(err, TERN_ERR_FORMAT, TJ "model.vocab gives id %u to both '%.64s' and '%.64s'", id,
                               t->tokens[id], key);
                goto done;
            }
            t->tokens[id] = key;
            t->token_lens[id] = (uint32_t)strlen(key);
            t->types[id] = d->model == TERN_TOK_SPM && is_byte_token(key, strlen(key)) ? TERN_TOKEN_BYTE
                                                                                        : TERN_TOKEN_NORMAL;
        }
    }
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        json_object *a = json_object_array_get_idx(added, i);
        json_object *c = tern_hf_field(a, "content");
        const char *s = json_object_get_string(c);
        size_t len = (size_t)json_object_get_string_len(c);
        uint32_t id = (uint32_t)json_object_get_int64(tern_hf_field(a, "id"));
        int special = 0;
        get_bool(a, "special", "", 0, &special, NULL); /* checked above */
        if (t->tokens[id] && (t->token_lens[id] != len || memcmp(t->tokens[id], s, len) != 0)) {
            st = tern_fail(err, TERN_ERR_FORMAT, TJ "id %u is both '%.64s' and the added token '%.64s'", id,
                           t->tokens[id], s);
            goto done;
        }
        t->tokens[id] = s;
        t->token_lens[id] = (uint32_t)len;
        t->types[id] = special ? TERN_TOKEN_CONTROL : TERN_TOKEN_USER_DEFINED;
    }
    /* Holes and the padding up to vocab_size: "[PAD<id>]", unused. */
    uint32_t n_pad = 0;
    for (uint32_t i = 0; i < n; i++) n_pad += !t->tokens[i];
    if (n_pad) {
        t->text = malloc((size_t)n_pad * 20);
        if (!t->text) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory for %u padding tokens", n_pad);
            goto done;
        }
        char *p = t->text;
        for (uint32_t i = 0; i < n; i++) {
            if (t->tokens[i]) continue;
            int k = snprintf(p, 20, "[PAD%u]", i);
            t->tokens[i] = p;
            t->token_lens[i] = (uint32_t)k;
            t->types[i] = TERN_TOKEN_UNUSED;
            p += k + 1;
        }
    }
    d->n_tokens = n;
    d->tokens = t->tokens;
    d->token_lens = t->token_lens;
    d->types = t->types;
    if ((st = map_build(&map, t, n, err))) goto done;

    uint32_t n_merges;
    if ((st = read_merges(tern_hf_field(model, "merges"), t, &n_merges, &merge_arena, err))) goto done;
    if (d->model == TERN_TOK_BPE) {
        if (!n_merges) {
            st = tern_fail(err, TERN_ERR_FORMAT, TJ "a byte-level BPE without model.merges");
            goto done;
        }
        d->n_merges = n_merges;
        d->merges = t->merges;
        d->merge_lens = t->merge_lens;
    } else {
        /* Score = -rank of the first merge that builds the token; tokens no
         * merge builds (pieces, bytes, specials) rank after every merge. */
        const float unreached = -(float)n_merges - 1.0f;
        for (uint32_t i = 0; i < n; i++) t->scores[i] = unreached;
        char *buf = NULL;
        size_t buf_cap = 0;
        for (uint32_t r = 0; r < n_merges; r++) {
            const char *s = t->merges[r];
            size_t len = t->merge_lens[r];
            if (len > buf_cap) {
                char *nb = realloc(buf, len);
                if (!nb) {
                    free(buf);
                    st = tern_fail(err, TERN_ERR_NO_MEMORY, TJ "out of memory");
                    goto done;
                }
                buf = nb;
                buf_cap = len;
            }
            const char *sp = memchr(s + 1, ' ', len - 1);
            size_t l = (size_t)(sp - s);
            memcpy(buf, s, l);
            memcpy(buf + l, sp + 1, len - l - 1);
            int32_t id = map_find(&map, t, buf, len - 1);
            if (id >= 0 && t->scores[id] == unreached) t->scores[id] = -(float)r;
        }
        free(buf);
        d->scores = t->scores;
        json_object *unk = tern_hf_field(model, "unk_token");
        if (unk && !is_str(unk)) {
            st = tern_fail(err, TERN_ERR_FORMAT, TJ "model.unk_token is not a string");
            goto done;
        }
        if (unk) d->unk = map_find(&map, t, json_object_get_string(unk), (size_t)json_object_get_string_len(unk));
        if (d->unk >= 0) t->types[d->unk] = TERN_TOKEN_UNKNOWN;
    }

    /* BOS/EOS: tokenizer_config.json, then the post-processor's template,
     * then config.json; explicit add_*_token flags win. */
    int32_t first, last;
    template_specials(tern_hf_field(t->json, "post_processor"), t, &map, &first, &last);
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= (int)sizeof path) {
        st = tern_fail(err, TERN_ERR_INVALID_ARG, "path %s is too long", dir);
        goto done;
    }
    if (file_exists(path) && (st = tern_hf_read_json(path, TERN_HF_MAX_CONFIG, &t->config, err))) goto done;
    int32_t pad = -1;
    if ((st = config_token(t->config, "bos_token", t, &map, added, &d->bos, err)) ||
        (st = config_token(t->config, "eos_token", t, &map, added, &d->eos, err)) ||
        (st = config_token(t->config, "pad_token", t, &map, added, &pad, err)))
        goto done;
    if (d->bos < 0) d->bos = first;
    if (first >= 0 && first == d->bos) d->add_bos = 1;
    if (last >= 0 && d->eos >= 0 && last == d->eos) d->add_eos = 1;
    if (d->bos < 0) d->bos = config_id(cfg, "bos_token_id", n);
    if (d->eos < 0) d->eos = config_id(cfg, "eos_token_id", n);
    d->pad = pad >= 0 ? pad : config_id(cfg, "pad_token_id", n);
    if ((st = get_bool(t->config, "add_bos_token", TC, d->add_bos, &d->add_bos, err)) ||
        (st = get_bool(t->config, "add_eos_token", TC, d->add_eos, &d->add_eos, err)))
        goto done;
    if (d->bos < 0) d->add_bos = 0;
    if (d->eos < 0) d->add_eos = 0;
    st = read_chat_template(dir, t->config, t, err);
done:
    free(map.slot);
    t->merge_text = merge_arena; /* pair-format merges point into it */
    if (st) tern_hf_tokenizer_free(t);
    return st;
}

tern_status tern_hf_write_tokenizer(tern_convert_ctx *ctx, json_object *cfg, tern_error *err) {
    uint32_t n_vocab = 0;
    tern_status st;
    if (tern_hf_field(cfg, "vocab_size") &&
        (st = tern_hf_get_dim(cfg, "vocab_size", 0, TERN_HF_MAX_DIM, &n_vocab, err)))
        return st;
    tern_hf_tokenizer t;
    if ((st = tern_hf_tokenizer_load(ctx->src_path, cfg, n_vocab, &t, err))) return st;
    if (!t.found) return TERN_OK;
    /* Build it once: what the runtime would refuse is refused now. */
    tern_tokenizer *check = NULL;
    if ((st = tern_tokenizer_create(&t.desc, &check, err))) {
        tern_fail_context(err, st, "tokenizer.json");
        goto done;
    }
    tern_tokenizer_destroy(check);
    if ((st = tern_tokenizer_desc_write(ctx->writer, &t.desc, err))) goto done;
    if (t.chat_template)
        st = tern_writer_set_str(ctx->writer, TERN_KEY_TOK_CHAT, t.chat_template, t.chat_template_len, err);
done:
    tern_hf_tokenizer_free(&t);
    return st;
}
