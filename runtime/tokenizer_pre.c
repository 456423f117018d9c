/* Pre-tokenizers: the regex splits of llama.cpp's unicode.cpp, written out by
 * hand. Each family is a list of passes; every pass splits each piece of the
 * previous one further, keeping both the matches and the text between them
 * (llama.cpp's unicode_regex_split). Two kinds of pass:
 *  - the GPT-2 and Llama-3 patterns, which llama.cpp runs as hand-written
 *    code over real Unicode categories;
 *  - the others, which llama.cpp runs through std::regex on a "collapsed"
 *    text where each non-ASCII code point stands for its category, so \p{L}
 *    means ASCII letters or a non-ASCII letter, \s means ASCII space or a
 *    non-ASCII White_Space code point, and unassigned code points belong to
 *    no category. The matchers below follow that. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "runtime/tokenizer.h"
#include "runtime/unicode.h"

typedef struct lenvec {
    size_t *v;
    size_t n, cap;
    int oom;
} lenvec;

static void push(lenvec *a, size_t x) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        size_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) {
            a->oom = 1;
            return;
        }
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

/* ---- categories as the two kinds of pass see them ---- */

enum { F_LETTER = 1, F_NUMBER = 2, F_SPACE = 4, F_DEFINED = 8 };

/* The hand-written passes: real categories; F_DEFINED is llama.cpp's
 * "flags.as_uint() != 0" (any assigned code point). */
static unsigned flags_of(uint32_t cp) {
    tern_ucat c = tern_unicode_cat(cp);
    unsigned f = 0;
    if (c != TERN_UCAT_UNASSIGNED) f |= F_DEFINED;
    if (c == TERN_UCAT_LETTER) f |= F_LETTER;
    if (c == TERN_UCAT_NUMBER) f |= F_NUMBER;
    if (tern_unicode_is_space(cp)) f |= F_SPACE | F_DEFINED;
    return f;
}

/* std::regex \s (C locale isspace, plus non-ASCII White_Space mapped to \v). */
static int rx_space(uint32_t cp) {
    if (cp < 128) return cp == ' ' || (cp >= 9 && cp <= 13);
    return tern_unicode_is_space(cp);
}

static int rx_letter(uint32_t cp) {
    if (cp < 128) return (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z');
    return !tern_unicode_is_space(cp) && tern_unicode_cat(cp) == TERN_UCAT_LETTER;
}

static int rx_number(uint32_t cp) {
    if (cp < 128) return cp >= '0' && cp <= '9';
    return !tern_unicode_is_space(cp) && tern_unicode_cat(cp) == TERN_UCAT_NUMBER;
}

/* \p{P}: ASCII !-#%-*,-/:-;?-@[-]_{} or a non-ASCII punctuation code point. */
static int rx_punct(uint32_t cp) {
    if (cp < 128) return cp != '$' && cp != '+' && cp != '<' && cp != '=' && cp != '>' && cp != '^' &&
                         cp != '`' && cp != '|' && cp != '~' && cp > 32 && cp < 127 &&
                         !((cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z'));
    return !tern_unicode_is_space(cp) && tern_unicode_cat(cp) == TERN_UCAT_PUNCT;
}

/* ---- hand-written passes (unicode_regex_split_custom_*) ---- */

/* The code point / flags at p inside the piece [ini, end), or none. */
static uint32_t cpt_at(const uint32_t *cp, size_t ini, size_t end, size_t p) {
    return p >= ini && p < end ? cp[p] : 0xFFFFFFFFu;
}

static unsigned flags_at(const uint32_t *cp, size_t ini, size_t end, size_t p) {
    return p >= ini && p < end ? flags_of(cp[p]) : 0u;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(const uint32_t *cp, size_t ini, size_t end, lenvec *out) {
#define CPT(p) cpt_at(cp, ini, end, (p))
#define FLG(p) flags_at(cp, ini, end, (p))
    size_t prev = ini;
#define ADD(e)                                          \
    do {                                                \
        if ((e) > prev) push(out, (e) - prev);          \
        prev = (e);                                     \
    } while (0)
    for (size_t pos = ini; pos < end;) {
        uint32_t c = CPT(pos);
        unsigned f = FLG(pos);
        if (c == '\'' && pos + 1 < end) {
            uint32_t n1 = CPT(pos + 1);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                ADD(pos + 2);
                pos += 2;
                continue;
            }
            if (pos + 2 < end) {
                uint32_t n2 = CPT(pos + 2);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    ADD(pos + 3);
                    pos += 3;
                    continue;
                }
            }
        }
        unsigned f2 = c == ' ' ? FLG(pos + 1) : f;
        if (f2 & F_LETTER) {
            pos += c == ' ';
            while (f2 & F_LETTER) f2 = FLG(++pos);
            ADD(pos);
            continue;
        }
        if (f2 & F_NUMBER) {
            pos += c == ' ';
            while (f2 & F_NUMBER) f2 = FLG(++pos);
            ADD(pos);
            continue;
        }
        if (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && f2) {
            pos += c == ' ';
            while (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && f2) f2 = FLG(++pos);
            ADD(pos);
            continue;
        }
        size_t nws = 0;
        while (FLG(pos + nws) & F_SPACE) nws++;
        if (nws > 1 && CPT(pos + nws) != 0xFFFFFFFFu) {
            pos += nws - 1;
            ADD(pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            ADD(pos);
            continue;
        }
        ADD(pos + 1);
        pos++;
    }
}

static uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(const uint32_t *cp, size_t ini, size_t end, lenvec *out, size_t max_digits) {
    size_t prev = ini;
    for (size_t pos = ini; pos < end;) {
        uint32_t c = CPT(pos);
        unsigned f = FLG(pos);
        if (c == '\'' && pos + 1 < end) {
            uint32_t n1 = ascii_lower(CPT(pos + 1));
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                ADD(pos + 2);
                pos += 2;
                continue;
            }
            if (pos + 2 < end) {
                uint32_t n2 = ascii_lower(CPT(pos + 2));
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    ADD(pos + 3);
                    pos += 3;
                    continue;
                }
            }
        }
        if (!(c == '\r' || c == '\n' || (f & F_NUMBER))) {
            if ((f & F_LETTER) || (FLG(pos + 1) & F_LETTER)) {
                pos++;
                while (FLG(pos) & F_LETTER) pos++;
                ADD(pos);
                continue;
            }
        }
        if (f & F_NUMBER) {
            size_t start = pos;
            while (FLG(pos) & F_NUMBER) {
                if (++pos - start >= max_digits) {
                    ADD(pos);
                    start = pos;
                }
            }
            ADD(pos);
            continue;
        }
        unsigned f2 = c == ' ' ? FLG(pos + 1) : f;
        /* llama.cpp tests the first code point's own flags here (f, not f2). */
        if (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && f) {
            pos += c == ' ';
            while (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && f2) f2 = FLG(++pos);
            uint32_t c2 = CPT(pos);
            while (c2 == '\r' || c2 == '\n') c2 = CPT(++pos);
            ADD(pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (FLG(pos + nws) & F_SPACE) {
            uint32_t c2 = CPT(pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) {
            pos = last_rn;
            ADD(pos);
            continue;
        }
        if (nws > 1 && CPT(pos + nws) != 0xFFFFFFFFu) {
            pos += nws - 1;
            ADD(pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            ADD(pos);
            continue;
        }
        ADD(pos + 1);
        pos++;
    }
#undef CPT
#undef FLG
#undef ADD
}

/* ---- std::regex-style passes: leftmost match, then continue after it ---- */

typedef size_t (*match_fn)(const uint32_t *cp, size_t pos, size_t end);

static size_t run_of(const uint32_t *cp, size_t pos, size_t end, int (*pred)(uint32_t)) {
    size_t p = pos;
    while (p < end && pred(cp[p])) p++;
    return p - pos;
}

/* \s?X+ : backtracking gives up the space when X+ cannot follow it. */
static size_t opt_space_run(const uint32_t *cp, size_t pos, size_t end, int (*pred)(uint32_t)) {
    if (rx_space(cp[pos]) && pos + 1 < end) {
        size_t n = run_of(cp, pos + 1, end, pred);
        if (n) return n + 1;
    }
    return run_of(cp, pos, end, pred);
}

static int is_rn(uint32_t c) {
    return c == '\r' || c == '\n';
}

static int is_punct_default(uint32_t c) {
    return rx_punct(c) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
           c == '|';
}

static int is_punct_falcon(uint32_t c) {
    return is_punct_default(c) || c == '`';
}

static int is_ascii_digit(uint32_t c) {
    return c >= '0' && c <= '9';
}

/* [一-龥ࠀ-一가-퟿]: wregex on text whose non-ASCII spaces became \v. */
static int is_cjk_deepseek(uint32_t c) {
    if (tern_unicode_is_space(c)) return 0;
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) || (c >= 0xAC00 && c <= 0xD7FF);
}

/* deepseek-llm's letter class, as the ranges of its tokenizer.json regex. */
static int is_letter_deepseek(uint32_t c) {
    static const uint32_t r[][2] = {
        {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
        {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D},
        {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
        {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5},
        {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77},
        {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D},
        {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D},
        {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC},
        {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
        {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D},
        {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134},
        {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184},
        {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D},
        {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF},
        {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F},
        {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
        {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (c >= r[i][0] && c <= r[i][1]) return 1;
    return 0;
}

/* [!-/:-~！-／：-～‘-‟　-。] (U+3000 itself became \v, so it never matches). */
static int is_punct_deepseek(uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c == 0x3001 || c == 0x3002);
}

static size_t m_rn(const uint32_t *cp, size_t pos, size_t end) {
    (void)end;
    return is_rn(cp[pos]);
}
static size_t m_punct_default(const uint32_t *cp, size_t pos, size_t end) {
    return run_of(cp, pos, end, is_punct_default);
}
static size_t m_punct_falcon(const uint32_t *cp, size_t pos, size_t end) {
    return run_of(cp, pos, end, is_punct_falcon);
}
static size_t m_number_one(const uint32_t *cp, size_t pos, size_t end) {
    (void)end;
    return rx_number(cp[pos]);
}
static size_t m_number_run(const uint32_t *cp, size_t pos, size_t end) {
    return run_of(cp, pos, end, rx_number);
}
static size_t m_three_digits(const uint32_t *cp, size_t pos, size_t end) {
    return pos + 3 <= end && is_ascii_digit(cp[pos]) && is_ascii_digit(cp[pos + 1]) &&
                   is_ascii_digit(cp[pos + 2])
               ? 3
               : 0;
}
static size_t m_space_letters(const uint32_t *cp, size_t pos, size_t end) {
    return opt_space_run(cp, pos, end, rx_letter);
}
static size_t m_space_punct(const uint32_t *cp, size_t pos, size_t end) {
    return opt_space_run(cp, pos, end, rx_punct);
}
static size_t m_cjk(const uint32_t *cp, size_t pos, size_t end) {
    return run_of(cp, pos, end, is_cjk_deepseek);
}
static size_t m_space_letters_ds(const uint32_t *cp, size_t pos, size_t end) {
    return opt_space_run(cp, pos, end, is_letter_deepseek);
}
static size_t m_space_punct_ds(const uint32_t *cp, size_t pos, size_t end) {
    return opt_space_run(cp, pos, end, is_punct_deepseek);
}
/* \s+$ : only a run of spaces that reaches the end of the piece. */
static size_t m_trailing_space(const uint32_t *cp, size_t pos, size_t end) {
    size_t n = run_of(cp, pos, end, rx_space);
    return pos + n == end ? n : 0;
}

static void split_regex(const uint32_t *cp, size_t ini, size_t end, lenvec *out, match_fn m) {
    size_t prev = ini;
    for (size_t pos = ini; pos < end;) {
        size_t n = m(cp, pos, end);
        if (!n) {
            pos++;
            continue;
        }
        if (pos > prev) push(out, pos - prev);
        push(out, n);
        pos += n;
        prev = pos;
    }
    if (end > prev) push(out, end - prev);
}

/* ---- families ---- */

enum { P_GPT2 = 1, P_LLAMA3, P_QWEN2 };

typedef struct pass {
    int custom;    /* P_* or 0 */
    match_fn match; /* when custom == 0 */
} pass;

static int passes_of(tern_tok_pre pre, pass *p) {
    int n = 0;
    switch (pre) {
    case TERN_PRE_DEFAULT:
        p[n++] = (pass){0, m_punct_default};
        p[n++] = (pass){P_GPT2, NULL};
        p[n++] = (pass){0, m_number_run};
        p[n++] = (pass){0, m_three_digits};
        break;
    case TERN_PRE_GPT2:
        p[n++] = (pass){P_GPT2, NULL};
        break;
    case TERN_PRE_LLAMA3:
        p[n++] = (pass){P_LLAMA3, NULL};
        break;
    case TERN_PRE_QWEN2:
        p[n++] = (pass){P_QWEN2, NULL};
        break;
    case TERN_PRE_FALCON:
        p[n++] = (pass){0, m_punct_falcon};
        p[n++] = (pass){P_GPT2, NULL};
        p[n++] = (pass){0, m_three_digits};
        break;
    case TERN_PRE_STARCODER:
        p[n++] = (pass){0, m_number_one};
        p[n++] = (pass){P_GPT2, NULL};
        break;
    case TERN_PRE_DEEPSEEK_LLM:
        p[n++] = (pass){0, m_rn};
        p[n++] = (pass){0, m_space_letters_ds};
        p[n++] = (pass){0, m_space_punct_ds};
        p[n++] = (pass){0, m_trailing_space};
        p[n++] = (pass){0, m_cjk};
        p[n++] = (pass){0, m_number_run};
        break;
    case TERN_PRE_DEEPSEEK_CODER:
        p[n++] = (pass){0, m_rn};
        p[n++] = (pass){0, m_space_letters};
        p[n++] = (pass){0, m_space_punct};
        p[n++] = (pass){0, m_cjk};
        p[n++] = (pass){0, m_number_one};
        break;
    }
    return n;
}

tern_status tern_pretokenize(tern_tok_pre pre, const uint32_t *cps, size_t n, size_t **lens, size_t *n_lens,
                             tern_error *err) {
    pass passes[8];
    int np = passes_of(pre, passes);
    lenvec cur = {0}, next = {0};
    push(&cur, n);
    for (int k = 0; k < np; k++) {
        next.n = 0;
        size_t start = 0;
        for (size_t i = 0; i < cur.n; i++) {
            size_t end = start + cur.v[i];
            switch (passes[k].custom) {
            case P_GPT2: split_gpt2(cps, start, end, &next); break;
            case P_LLAMA3: split_llama3(cps, start, end, &next, 3); break;
            case P_QWEN2: split_llama3(cps, start, end, &next, 1); break;
            default: split_regex(cps, start, end, &next, passes[k].match); break;
            }
            start = end;
        }
        lenvec t = cur;
        cur = next;
        next = t;
        if (cur.oom || next.oom) break;
    }
    /* The first push can fail too: after the swap its flag is on next. */
    const int oom = cur.oom || next.oom;
    free(next.v);
    if (oom) {
        free(cur.v);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "tokenizer: out of memory pre-tokenizing %zu code points", n);
    }
    *lens = cur.v;
    *n_lens = cur.n;
    return TERN_OK;
}

tern_status tern_tok_pre_from_name(const char *name, size_t len, tern_tok_pre *out, tern_error *err) {
    static const struct {
        const char *name;
        tern_tok_pre pre;
    } names[] = {
        {"default", TERN_PRE_DEFAULT},       {"llama3", TERN_PRE_LLAMA3},
        {"llama-v3", TERN_PRE_LLAMA3},       {"llama-bpe", TERN_PRE_LLAMA3},
        {"falcon3", TERN_PRE_LLAMA3},        {"pixtral", TERN_PRE_LLAMA3},
        {"dbrx", TERN_PRE_LLAMA3},           {"smaug-bpe", TERN_PRE_LLAMA3},
        {"qwen2", TERN_PRE_QWEN2},           {"deepseek-r1-qwen", TERN_PRE_QWEN2},
        {"stablelm2", TERN_PRE_QWEN2},       {"megrez", TERN_PRE_QWEN2},
        {"gpt-2", TERN_PRE_GPT2},            {"phi-2", TERN_PRE_GPT2},
        {"mpt", TERN_PRE_GPT2},              {"olmo", TERN_PRE_GPT2},
        {"gpt-neox", TERN_PRE_GPT2},         {"jais", TERN_PRE_GPT2},
        {"roberta-bpe", TERN_PRE_GPT2},      {"exaone4", TERN_PRE_GPT2},
        {"falcon", TERN_PRE_FALCON},         {"starcoder", TERN_PRE_STARCODER},
        {"refact", TERN_PRE_STARCODER},      {"command-r", TERN_PRE_STARCODER},
        {"smollm", TERN_PRE_STARCODER},      {"codeshell", TERN_PRE_STARCODER},
        {"exaone", TERN_PRE_STARCODER},      {"minerva-7b", TERN_PRE_STARCODER},
        {"deepseek-llm", TERN_PRE_DEEPSEEK_LLM}, {"deepseek-coder", TERN_PRE_DEEPSEEK_CODER},
    };
    if (!name || len == 0) {
        *out = TERN_PRE_DEFAULT;
        return TERN_OK;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == len && memcmp(names[i].name, name, len) == 0) {
            *out = names[i].pre;
            return TERN_OK;
        }
    }
    return tern_fail(err, TERN_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer '%.*s'",
                     (int)(len > 100 ? 100 : len), name);
}
