/* Tokenizer core: vocabulary tables, the special-token split, the SPM and BPE
 * merge loops and decoding. The algorithms follow llama.cpp's llama-vocab.cpp
 * (llm_tokenizer_spm, llm_tokenizer_bpe, tokenizer_st_partition) so the ids
 * match it exactly, including its tie-breaking. */
#include "runtime/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "runtime/unicode.h"

/* Token attributes, as llama.cpp's llama_token_attr bits. */
enum {
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
};

/* ---- a growable array of int32 ---- */

typedef struct ivec {
    int32_t *v;
    size_t n, cap;
    int oom;
} ivec;

static void ipush(ivec *a, int32_t x) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) {
            a->oom = 1;
            return;
        }
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

/* ---- byte buffer ---- */

typedef struct bbuf {
    uint8_t *v;
    size_t n, cap;
    int oom;
} bbuf;

static void bput(bbuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->v, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->v = q;
        b->cap = cap;
    }
    memcpy(b->v + b->n, p, n);
    b->n += n;
}

/* ---- string hash tables (open addressing) ---- */

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

typedef struct merge_entry {
    uint32_t left_off, left_len; /* into the merge arena */
    uint32_t right_off, right_len;
    int32_t rank;
} merge_entry;

struct tern_tokenizer {
    tern_tok_model model;
    tern_tok_pre pre;
    int ignore_merges;
    uint32_t n_tokens;
    char *text;       /* every token's text, NUL-separated */
    uint64_t *offs;   /* token i at text + offs[i] */
    uint32_t *lens;
    float *scores;
    uint8_t *attr;
    uint32_t max_len;
    int32_t *hash; /* token ids by text hash; -1 empty */
    uint64_t hash_mask;

    char *merge_text;
    merge_entry *merges;
    uint32_t n_merges;
    int32_t *merge_hash; /* merge indices; -1 empty */
    uint64_t merge_mask;

    int32_t *special; /* control / user-defined / unknown ids, longest text first */
    uint32_t n_special;
    uint8_t *eog; /* per token */

    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_eos, add_space_prefix;

    int32_t byte_token[256]; /* SPM: <0xNN> (or the raw byte); -1 when absent */
    char byte_enc[256][3];   /* BPE: GPT-2 byte -> unicode, as UTF-8 */
    uint8_t byte_enc_len[256];
    int16_t byte_dec[324]; /* code point < 324 -> byte, -1 otherwise */
};

static uint64_t next_pow2(uint64_t x) {
    uint64_t p = 16;
    while (p < x) p <<= 1;
    return p;
}

int32_t tern_tokenizer_find(const tern_tokenizer *t, const char *s, size_t n) {
    uint64_t h = fnv(s, n, FNV_INIT) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[h];
        if (id < 0) return -1;
        if (t->lens[id] == n && memcmp(t->text + t->offs[id], s, n) == 0) return id;
        h = (h + 1) & t->hash_mask;
    }
}

static uint64_t merge_hash_of(const char *l, size_t ln, const char *r, size_t rn) {
    uint64_t h = fnv(l, ln, FNV_INIT);
    h = fnv("\xff", 1, h ^ (uint64_t)ln);
    return fnv(r, rn, h);
}

static int32_t find_merge(const tern_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn) {
    if (!t->n_merges) return -1;
    uint64_t h = merge_hash_of(l, ln, r, rn) & t->merge_mask;
    for (;;) {
        int32_t m = t->merge_hash[h];
        if (m < 0) return -1;
        const merge_entry *e = &t->merges[m];
        if (e->left_len == ln && e->right_len == rn && memcmp(t->merge_text + e->left_off, l, ln) == 0 &&
            memcmp(t->merge_text + e->right_off, r, rn) == 0)
            return e->rank;
        h = (h + 1) & t->merge_mask;
    }
}

/* ---- creation ---- */

static uint32_t text_len(const char *const *strs, const uint32_t *lens, uint32_t i) {
    return lens ? lens[i] : (uint32_t)strlen(strs[i]);
}

static int text_is(const tern_tokenizer *t, int32_t id, const char *s) {
    size_t n = strlen(s);
    return t->lens[id] == n && memcmp(t->text + t->offs[id], s, n) == 0;
}

static void init_byte_tables(tern_tokenizer *t) {
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
     * the others to 256, 257, ... in byte order. */
    int n = 0;
    for (int i = 0; i < 324; i++) t->byte_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        uint8_t u[4];
        size_t k = tern_utf8_encode(cp, u);
        memcpy(t->byte_enc[b], u, k);
        t->byte_enc_len[b] = (uint8_t)k;
        t->byte_dec[cp] = (int16_t)b;
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = tern_tokenizer_find(t, buf, 6);
        if (id < 0) {
            char raw = (char)b;
            id = tern_tokenizer_find(t, &raw, 1);
        }
        t->byte_token[b] = id;
    }
}

static int32_t valid_id(const tern_tokenizer *t, int32_t id) {
    return id >= 0 && (uint32_t)id < t->n_tokens ? id : TERN_TOKEN_NONE;
}

/* llama.cpp finds end-of-turn / end-of-generation tokens by their text and
 * makes them control tokens; the same here, so special parsing agrees. */
static void detect_eog(tern_tokenizer *t) {
    static const char *const eot_names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    };
    static const char *const eog_names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>", "_<EOT>", "<|end_of_text|>",
    };
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        if (t->eot == TERN_TOKEN_NONE) {
            for (size_t k = 0; k < sizeof eot_names / sizeof eot_names[0]; k++) {
                if (text_is(t, (int32_t)id, eot_names[k])) {
                    t->eot = (int32_t)id;
                    t->attr[id] |= ATTR_CONTROL;
                }
            }
        }
        if (t->eom == TERN_TOKEN_NONE && text_is(t, (int32_t)id, "<|eom_id|>")) {
            t->eom = (int32_t)id;
            t->attr[id] |= ATTR_CONTROL;
        }
        for (size_t k = 0; k < sizeof eog_names / sizeof eog_names[0]; k++) {
            if (text_is(t, (int32_t)id, eog_names[k])) {
                t->eog[id] = 1;
                t->attr[id] |= ATTR_CONTROL;
            }
        }
    }
    if (t->eos != TERN_TOKEN_NONE) t->eog[t->eos] = 1;
    if (t->eot != TERN_TOKEN_NONE) t->eog[t->eot] = 1;
    if (t->eom != TERN_TOKEN_NONE) t->eog[t->eom] = 1;
}

static tern_status build_specials(tern_tokenizer *t) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_tokens; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) n++;
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    if (!t->special) return TERN_ERR_NO_MEMORY;
    t->n_special = 0;
    for (uint32_t i = 0; i < t->n_tokens; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = (int32_t)i;
    /* Longest text first (insertion sort keeps ids ascending among equals). */
    for (uint32_t i = 1; i < t->n_special; i++) {
        int32_t x = t->special[i];
        uint32_t j = i;
        while (j > 0 && t->lens[t->special[j - 1]] < t->lens[x]) {
            t->special[j] = t->special[j - 1];
            j--;
        }
        t->special[j] = x;
    }
    return TERN_OK;
}

static tern_status build_merges(tern_tokenizer *t, const tern_tokenizer_desc *d, tern_error *err) {
    if (d->n_merges == 0 || !d->merges) return TERN_OK;
    uint64_t total = 0;
    for (uint32_t i = 0; i < d->n_merges; i++) total += text_len(d->merges, d->merge_lens, i);
    if (total > UINT32_MAX)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tokenizer: merges too large (%llu bytes)",
                         (unsigned long long)total);
    t->merge_text = malloc(total ? total : 1);
    t->merges = malloc((size_t)d->n_merges * sizeof *t->merges);
    t->merge_mask = next_pow2((uint64_t)d->n_merges * 2) - 1;
    t->merge_hash = malloc((t->merge_mask + 1) * sizeof *t->merge_hash);
    if (!t->merge_text || !t->merges || !t->merge_hash)
        return tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory for %u merges", d->n_merges);
    memset(t->merge_hash, 0xff, (t->merge_mask + 1) * sizeof *t->merge_hash);
    uint32_t used = 0;
    for (uint32_t i = 0; i < d->n_merges; i++) {
        const char *s = d->merges[i];
        uint32_t n = text_len(d->merges, d->merge_lens, i);
        memcpy(t->merge_text + used, s, n);
        /* llama.cpp splits at the first space after position 0; a merge with
         * no space becomes the pair ("", ""). */
        uint32_t sp = 1;
        while (sp < n && s[sp] != ' ') sp++;
        merge_entry e = {used, 0, used, 0, (int32_t)i};
        if (sp < n) {
            e.left_len = sp;
            e.right_off = used + sp + 1;
            e.right_len = n - sp - 1;
        }
        used += n;
        /* The first rank of a repeated pair wins (map emplace). */
        const char *l = t->merge_text + e.left_off, *r = t->merge_text + e.right_off;
        if (find_merge(t, l, e.left_len, r, e.right_len) >= 0) continue;
        t->merges[t->n_merges] = e;
        uint64_t h = merge_hash_of(l, e.left_len, r, e.right_len) & t->merge_mask;
        while (t->merge_hash[h] >= 0) h = (h + 1) & t->merge_mask;
        t->merge_hash[h] = (int32_t)t->n_merges;
        t->n_merges++;
    }
    return TERN_OK;
}

tern_status tern_tokenizer_create(const tern_tokenizer_desc *d, tern_tokenizer **out, tern_error *err) {
    *out = NULL;
    if (!d || !d->tokens || d->n_tokens == 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tokenizer: no tokens");
    if (d->model != TERN_TOK_SPM && d->model != TERN_TOK_BPE)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tokenizer: unknown model type %d", (int)d->model);
    if (d->n_tokens > INT32_MAX / 2)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tokenizer: %u tokens is too many", d->n_tokens);
    tern_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory");
    tern_status s = TERN_OK;
    t->model = d->model;
    t->n_tokens = d->n_tokens;
    if (d->model == TERN_TOK_BPE) {
        if ((s = tern_tok_pre_from_name(d->pre, d->pre ? d->pre_len : 0, &t->pre, err))) goto fail;
        /* Families whose tokenizer.json sets ignore_merges. */
        t->ignore_merges = t->pre == TERN_PRE_LLAMA3;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < d->n_tokens; i++) {
        if (!d->token_lens && !d->tokens[i]) {
            s = tern_fail(err, TERN_ERR_INVALID_ARG, "tokenizer: token %u is NULL", i);
            goto fail;
        }
        uint32_t n = text_len(d->tokens, d->token_lens, i);
        total += n ? n + 1 : 24; /* "[EMPTY_i]" */
    }
    t->text = malloc(total);
    t->offs = malloc(d->n_tokens * sizeof *t->offs);
    t->lens = malloc(d->n_tokens * sizeof *t->lens);
    t->scores = malloc(d->n_tokens * sizeof *t->scores);
    t->attr = malloc(d->n_tokens);
    t->eog = calloc(d->n_tokens, 1);
    t->hash_mask = next_pow2((uint64_t)d->n_tokens * 2) - 1;
    t->hash = malloc((t->hash_mask + 1) * sizeof *t->hash);
    if (!t->text || !t->offs || !t->lens || !t->scores || !t->attr || !t->eog || !t->hash) {
        s = tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory for %u tokens", d->n_tokens);
        goto fail;
    }
    memset(t->hash, 0xff, (t->hash_mask + 1) * sizeof *t->hash);
    uint64_t used = 0;
    for (uint32_t i = 0; i < d->n_tokens; i++) {
        uint32_t n = text_len(d->tokens, d->token_lens, i);
        char *dst = t->text + used;
        if (n) {
            memcpy(dst, d->tokens[i], n);
        } else {
            n = (uint32_t)snprintf(dst, 24, "[EMPTY_%u]", i); /* as llama.cpp names them */
        }
        dst[n] = '\0';
        t->offs[i] = used;
        t->lens[i] = n;
        used += n + 1;
        if (n > t->max_len) t->max_len = n;
        t->scores[i] = d->scores ? d->scores[i] : 0.0f;
        int32_t ty = d->types ? d->types[i] : TERN_TOKEN_NORMAL;
        switch (ty) {
        case TERN_TOKEN_NORMAL: t->attr[i] = ATTR_NORMAL; break;
        case TERN_TOKEN_UNKNOWN: t->attr[i] = ATTR_UNKNOWN; break;
        case TERN_TOKEN_CONTROL: t->attr[i] = ATTR_CONTROL; break;
        case TERN_TOKEN_USER_DEFINED: t->attr[i] = ATTR_USER_DEFINED; break;
        case TERN_TOKEN_UNUSED: t->attr[i] = ATTR_UNUSED; break;
        case TERN_TOKEN_BYTE: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break;
        }
        /* A repeated text maps to its last id, as older llama.cpp did. */
        uint64_t h = fnv(dst, n, FNV_INIT) & t->hash_mask;
        while (t->hash[h] >= 0) {
            int32_t o = t->hash[h];
            if (t->lens[o] == n && memcmp(t->text + t->offs[o], dst, n) == 0) break;
            h = (h + 1) & t->hash_mask;
        }
        t->hash[h] = (int32_t)i;
    }
    t->bos = valid_id(t, d->bos);
    t->eos = valid_id(t, d->eos);
    t->eot = valid_id(t, d->eot);
    t->eom = valid_id(t, d->eom);
    t->unk = valid_id(t, d->unk);
    t->pad = valid_id(t, d->pad);
    t->add_bos = d->add_bos;
    t->add_eos = d->add_eos;
    t->add_space_prefix = d->add_space_prefix;
    if (t->add_bos && t->bos == TERN_TOKEN_NONE) {
        s = tern_fail(err, TERN_ERR_FORMAT, "tokenizer: add_bos is set but there is no valid BOS token (%d)",
                      d->bos);
        goto fail;
    }
    if (t->add_eos && t->eos == TERN_TOKEN_NONE) {
        s = tern_fail(err, TERN_ERR_FORMAT, "tokenizer: add_eos is set but there is no valid EOS token (%d)",
                      d->eos);
        goto fail;
    }
    if (t->model == TERN_TOK_BPE && (s = build_merges(t, d, err))) goto fail;
    init_byte_tables(t);
    detect_eog(t);
    if (build_specials(t)) {
        s = tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory");
        goto fail;
    }
    *out = t;
    return TERN_OK;
fail:
    tern_tokenizer_destroy(t);
    return s;
}

void tern_tokenizer_destroy(tern_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->offs);
    free(t->lens);
    free(t->scores);
    free(t->attr);
    free(t->eog);
    free(t->hash);
    free(t->merge_text);
    free(t->merges);
    free(t->merge_hash);
    free(t->special);
    free(t);
}

uint32_t tern_tokenizer_n_tokens(const tern_tokenizer *t) {
    return t->n_tokens;
}
int32_t tern_tokenizer_bos(const tern_tokenizer *t) {
    return t->bos;
}
int tern_tokenizer_adds_bos(const tern_tokenizer *t) {
    return t->add_bos;
}
int32_t tern_tokenizer_eos(const tern_tokenizer *t) {
    return t->eos;
}
int tern_tokenizer_is_eog(const tern_tokenizer *t, int32_t id) {
    return id >= 0 && (uint32_t)id < t->n_tokens && t->eog[id];
}
const char *tern_tokenizer_text(const tern_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (uint32_t)id >= t->n_tokens) return NULL;
    if (len) *len = t->lens[id];
    return t->text + t->offs[id];
}
size_t tern_tokenizer_max_piece(const tern_tokenizer *t) {
    return t->max_len;
}

/* ---- the merge loops ---- */

typedef struct symbol {
    int32_t prev, next;
    uint32_t start; /* byte offset in the word */
    uint32_t n;     /* bytes; 0 once merged into its left neighbour */
} symbol;

typedef struct bigram {
    int32_t left, right;
    float score; /* SPM */
    int32_t rank; /* BPE */
    uint32_t size;
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
    int spm; /* ordering: SPM highest score first, BPE lowest rank first; then leftmost */
    int oom;
} heap;

static int before(const heap *h, const bigram *a, const bigram *b) {
    if (h->spm) {
        if (a->score != b->score) return a->score > b->score;
    } else {
        if (a->rank != b->rank) return a->rank < b->rank;
    }
    return a->left < b->left;
}

static void heap_push(heap *h, bigram x) {
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bigram *p = realloc(h->v, cap * sizeof *p);
        if (!p) {
            h->oom = 1;
            return;
        }
        h->v = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(h, &x, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = x;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0];
    bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bigram *best = &last;
        if (l < h->n && before(h, &h->v[l], best)) {
            m = l;
            best = &h->v[l];
        }
        if (r < h->n && before(h, &h->v[r], best)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct work {
    symbol *sym;
    size_t n_sym, cap_sym;
    heap q;
    bbuf word;
    int oom;
} work;

static void split_symbols(work *w, const uint8_t *s, size_t n) {
    w->n_sym = 0;
    if (n > w->cap_sym) {
        symbol *p = realloc(w->sym, n * sizeof *p);
        if (!p) {
            w->oom = 1;
            return;
        }
        w->sym = p;
        w->cap_sym = n;
    }
    size_t off = 0;
    int32_t index = 0;
    while (off < n) {
        size_t len = tern_utf8_len(s[off]);
        if (len > n - off) len = n - off;
        symbol *y = &w->sym[w->n_sym++];
        y->start = (uint32_t)off;
        y->n = (uint32_t)len;
        off += len;
        y->prev = index - 1;
        y->next = off == n ? -1 : index + 1;
        index++;
    }
}

static void spm_try(const tern_tokenizer *t, work *w, const uint8_t *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t id = tern_tokenizer_find(t, (const char *)s + l->start, l->n + r->n);
    if (id < 0) return;
    bigram b = {left, right, t->scores[id], 0, l->n + r->n};
    heap_push(&w->q, b);
}

static void spm_word(const tern_tokenizer *t, work *w, const uint8_t *s, size_t n, ivec *out) {
    split_symbols(w, s, n);
    if (w->oom) return;
    w->q.n = 0;
    w->q.spm = 1;
    for (size_t i = 1; i < w->n_sym; i++) spm_try(t, w, s, (int32_t)i - 1, (int32_t)i);
    while (w->q.n) {
        bigram b = heap_pop(&w->q);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        spm_try(t, w, s, l->prev, b.left);
        spm_try(t, w, s, b.left, l->next);
    }
    if (w->q.oom) w->oom = 1;
    for (int32_t i = w->n_sym ? 0 : -1; i != -1; i = w->sym[i].next) {
        const symbol *y = &w->sym[i];
        int32_t id = tern_tokenizer_find(t, (const char *)s + y->start, y->n);
        if (id >= 0) {
            ipush(out, id);
            continue;
        }
        /* Byte fallback; a byte with no token becomes <unk>. */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t bt = t->byte_token[s[y->start + k]];
            ipush(out, bt >= 0 ? bt : t->unk);
        }
    }
}

static void bpe_try(const tern_tokenizer *t, work *w, const uint8_t *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t rank = find_merge(t, (const char *)s + l->start, l->n, (const char *)s + r->start, r->n);
    if (rank < 0) return;
    bigram b = {left, right, 0.0f, rank, l->n + r->n};
    heap_push(&w->q, b);
}

static void bpe_word(const tern_tokenizer *t, work *w, const uint8_t *s, size_t n, ivec *out) {
    if (t->ignore_merges) {
        int32_t id = tern_tokenizer_find(t, (const char *)s, n);
        if (id >= 0) {
            ipush(out, id);
            return;
        }
    }
    split_symbols(w, s, n);
    if (w->oom) return;
    w->q.n = 0;
    w->q.spm = 0;
    for (size_t i = 1; i < w->n_sym; i++) bpe_try(t, w, s, (int32_t)i - 1, (int32_t)i);
    while (w->q.n) {
        bigram b = heap_pop(&w->q);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        /* Stale when either side changed since the pair was queued. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size || l->next != b.right) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        bpe_try(t, w, s, l->prev, b.left);
        bpe_try(t, w, s, b.left, l->next);
    }
    if (w->q.oom) w->oom = 1;
    for (int32_t i = w->n_sym ? 0 : -1; i != -1; i = w->sym[i].next) {
        const symbol *y = &w->sym[i];
        if (y->n == 0) continue;
        int32_t id = tern_tokenizer_find(t, (const char *)s + y->start, y->n);
        if (id >= 0) {
            ipush(out, id);
            continue;
        }
        /* llama.cpp: look each byte of the text up alone, skip misses. */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t bt = tern_tokenizer_find(t, (const char *)s + y->start + k, 1);
            if (bt >= 0) ipush(out, bt);
        }
    }
}

static tern_status bpe_fragment(const tern_tokenizer *t, work *w, const uint8_t *s, size_t n, ivec *out,
                                tern_error *err) {
    uint32_t *cps = malloc((n ? n : 1) * sizeof *cps);
    if (!cps) return tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory");
    size_t ncp = 0;
    for (size_t pos = 0; pos < n;) cps[ncp++] = tern_utf8_decode((const uint8_t *)s, n, &pos);
    size_t *lens = NULL, n_lens = 0;
    tern_status st = tern_pretokenize(t->pre, cps, ncp, &lens, &n_lens, err);
    if (st) {
        free(cps);
        return st;
    }
    size_t at = 0;
    for (size_t k = 0; k < n_lens && !w->oom; k++) {
        /* The piece's code points as UTF-8, each byte through the GPT-2 map. */
        w->word.n = 0;
        for (size_t i = at; i < at + lens[k]; i++) {
            uint8_t u[4];
            size_t m = tern_utf8_encode(cps[i], u);
            for (size_t j = 0; j < m; j++) bput(&w->word, t->byte_enc[u[j]], t->byte_enc_len[u[j]]);
        }
        at += lens[k];
        if (w->word.oom) {
            w->oom = 1;
            break;
        }
        if (w->word.n) bpe_word(t, w, w->word.v, w->word.n, out);
    }
    free(lens);
    free(cps);
    return TERN_OK;
}

/* ---- the special-token split (tokenizer_st_partition) ---- */

typedef struct frag {
    size_t off, len; /* raw text when token < 0 */
    int32_t token;
} frag;

typedef struct fvec {
    frag *v;
    size_t n, cap;
    int oom;
} fvec;

static void fpush(fvec *a, frag f) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        frag *p = realloc(a->v, cap * sizeof *p);
        if (!p) {
            a->oom = 1;
            return;
        }
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = f;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n) return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0) return hay + i;
    return NULL;
}

static tern_status partition(const tern_tokenizer *t, const char *text, size_t len, int parse_special,
                             fvec *out, tern_error *err) {
    fvec a = {0}, b = {0};
    if (len) fpush(&a, (frag){0, len, -1});
    for (uint32_t k = 0; k < t->n_special && !a.oom; k++) {
        int32_t id = t->special[k];
        if (!parse_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const char *tt = t->text + t->offs[id];
        size_t tn = t->lens[id];
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            frag f = a.v[i];
            if (f.token >= 0) {
                fpush(&b, f);
                continue;
            }
            size_t off = f.off, n = f.len;
            for (;;) {
                const char *m = find_bytes(text + off, n, tt, tn);
                if (!m) {
                    if (n) fpush(&b, (frag){off, n, -1});
                    break;
                }
                size_t mo = (size_t)(m - text);
                if (mo > off) fpush(&b, (frag){off, mo - off, -1});
                fpush(&b, (frag){0, 0, id});
                n -= mo + tn - off;
                off = mo + tn;
                if (!n) break;
            }
        }
        fvec tmp = a;
        a = b;
        b = tmp;
    }
    free(b.v);
    if (a.oom || b.oom) {
        free(a.v);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    *out = a;
    return TERN_OK;
}

tern_status tern_tokenizer_encode(const tern_tokenizer *t, const char *text, size_t len, int add_special,
                                  int parse_special, int32_t *out, size_t cap, size_t *n_out,
                                  tern_error *err) {
    if (n_out) *n_out = 0;
    if (!t || (!text && len)) return tern_fail(err, TERN_ERR_INVALID_ARG, "tokenizer: NULL argument");
    fvec frags = {0};
    tern_status s = partition(t, text, len, parse_special, &frags, err);
    if (s) return s;
    ivec ids = {0};
    work w;
    memset(&w, 0, sizeof w);
    if (add_special && t->add_bos) ipush(&ids, t->bos);
    int prev_special = 1; /* SPM: a space goes in front of text that starts or follows a special token */
    for (size_t i = 0; i < frags.n && !s; i++) {
        frag f = frags.v[i];
        if (f.token >= 0) {
            ipush(&ids, f.token);
            prev_special = 1;
            continue;
        }
        if (t->model == TERN_TOK_SPM) {
            w.word.n = 0;
            if (t->add_space_prefix && prev_special) bput(&w.word, "\xe2\x96\x81", 3);
            for (size_t k = 0; k < f.len; k++) {
                if (text[f.off + k] == ' ') bput(&w.word, "\xe2\x96\x81", 3);
                else bput(&w.word, text + f.off + k, 1);
            }
            if (w.word.oom) w.oom = 1;
            else spm_word(t, &w, w.word.v, w.word.n, &ids);
            prev_special = 0;
        } else {
            s = bpe_fragment(t, &w, (const uint8_t *)text + f.off, f.len, &ids, err);
        }
    }
    if (add_special && t->add_eos) ipush(&ids, t->eos);
    free(frags.v);
    free(w.sym);
    free(w.q.v);
    free(w.word.v);
    if (!s && (w.oom || ids.oom)) s = tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory encoding %zu bytes", len);
    if (!s) {
        if (n_out) *n_out = ids.n;
        size_t k = ids.n < cap ? ids.n : cap;
        if (k) memcpy(out, ids.v, k * sizeof *out);
        if (ids.n > cap)
            s = tern_fail(err, TERN_ERR_OUT_OF_RANGE, "tokenizer: %zu tokens do not fit in %zu", ids.n, cap);
    }
    free(ids.v);
    return s;
}

/* ---- decoding ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int tern_tokenizer_piece(const tern_tokenizer *t, int32_t id, int special, char *buf, size_t cap) {
    if (id < 0 || (uint32_t)id >= t->n_tokens) return 0;
    uint8_t a = t->attr[id];
    const char *s = t->text + t->offs[id];
    size_t n = t->lens[id];
    size_t k = 0;
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL)) {
        if (!special) return 0;
    }
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        if (n > cap) return -(int)n;
        memcpy(buf, s, n);
        return (int)n;
    }
    if (a & ATTR_BYTE) {
        int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
        if (hi < 0 || lo < 0) return 0;
        if (cap < 1) return -1;
        buf[0] = (char)(hi * 16 + lo);
        return 1;
    }
    if (!(a & ATTR_NORMAL)) return 0;
    if (t->model == TERN_TOK_SPM) {
        /* '▁' -> ' ' */
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                if (k < cap) buf[k] = ' ';
                k++;
                i += 3;
            } else {
                if (k < cap) buf[k] = s[i];
                k++;
                i++;
            }
        }
    } else {
        /* GPT-2 unicode -> bytes; code points outside the map pass through. */
        for (size_t pos = 0; pos < n;) {
            size_t start = pos;
            uint32_t cp = tern_utf8_decode((const uint8_t *)s, n, &pos);
            if (cp < 324 && t->byte_dec[cp] >= 0) {
                if (k < cap) buf[k] = (char)t->byte_dec[cp];
                k++;
            } else {
                for (size_t j = start; j < pos; j++, k++)
                    if (k < cap) buf[k] = s[j];
            }
        }
    }
    return k > cap ? -(int)k : (int)k;
}

void tern_detok_init(tern_detok *d, const tern_tokenizer *tok, int special) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->special = special;
}

/* Length of the longest prefix of s[0..n) that does not end inside an
 * incomplete UTF-8 sequence (that tail is held back for the next token). */
static size_t complete_prefix(const uint8_t *s, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        uint8_t c = s[n - back];
        if ((c & 0xC0) == 0x80) continue;
        if (c >= 0xC0 && c < 0xF8 && tern_utf8_len(c) > back) return n - back;
        return n;
    }
    return n;
}

tern_status tern_detok_feed(tern_detok *d, int32_t id, char *out, size_t cap, size_t *n_out, tern_error *err) {
    *n_out = 0;
    const tern_tokenizer *t = d->tok;
    size_t need = t->max_len + sizeof d->pending;
    if (cap < need)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tokenizer: detok buffer of %zu bytes, need %zu", cap, need);
    if (id < 0 || (uint32_t)id >= t->n_tokens)
        return tern_fail(err, TERN_ERR_OUT_OF_RANGE, "tokenizer: token id %d outside [0, %u)", id, t->n_tokens);
    memcpy(out, d->pending, d->n_pending);
    size_t n = d->n_pending;
    int k = tern_tokenizer_piece(t, id, d->special, out + n, cap - n);
    if (k < 0) return tern_fail(err, TERN_ERR_INTERNAL, "tokenizer: piece of token %d too long", id);
    /* SPM adds a space in front of the text: drop it from the first piece. */
    if (!d->started && k > 0) {
        d->started = 1;
        if (t->model == TERN_TOK_SPM && t->add_space_prefix && out[n] == ' ') {
            memmove(out + n, out + n + 1, (size_t)k - 1);
            k--;
        }
    }
    n += (size_t)k;
    size_t done = complete_prefix((const uint8_t *)out, n);
    d->n_pending = n - done;
    if (d->n_pending > sizeof d->pending) { /* cannot happen: at most 3 held bytes */
        done = n;
        d->n_pending = 0;
    }
    memcpy(d->pending, out + done, d->n_pending);
    *n_out = done;
    return TERN_OK;
}

size_t tern_detok_flush(tern_detok *d, char *out, size_t cap) {
    size_t n = d->n_pending < cap ? d->n_pending : cap;
    memcpy(out, d->pending, n);
    d->n_pending = 0;
    return n;
}
