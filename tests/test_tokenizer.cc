// Tokenizer tests: llama.cpp's vocabulary test files (ggml-vocab-*.gguf with
// .inp/.out beside them; the ids in .out come from the reference tokenizers),
// round trips, the streaming decoder and the pre-tokenizer splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "runtime/tokenizer.h"
#include "runtime/unicode.h"
#include "test_util.h"

namespace {

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// .inp: inputs separated by "\n__ggml_vocab_test__\n" (the newline before the
// separator is not part of the input); .out: one line of ids per input.
std::vector<Case> read_cases(const std::string &base) {
    std::vector<unsigned char> inp = test_read_file(base + ".inp");
    std::vector<unsigned char> outp = test_read_file(base + ".out");
    std::string raw(inp.begin(), inp.end()), out(outp.begin(), outp.end());
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    size_t pos = 0;
    while (pos < raw.size()) {
        size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            texts.push_back(raw.substr(pos));
            break;
        }
        texts.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::vector<Case> cases;
    std::istringstream lines(out);
    std::string line;
    size_t i = 0;
    while (std::getline(lines, line) && i < texts.size()) {
        Case c;
        c.text = texts[i++];
        std::istringstream ids(line);
        int32_t id;
        while (ids >> id) c.ids.push_back(id);
        cases.push_back(c);
    }
    EXPECT_EQ(cases.size(), texts.size()) << base;
    return cases;
}

struct Vocab {
    tern_gguf g{};
    tern_tokenizer *tok = nullptr;
    bool ok = false;
    explicit Vocab(const std::string &path) {
        tern_error err{};
        if (tern_gguf_open(path.c_str(), &g, &err) != TERN_OK) {
            ADD_FAILURE() << err.message;
            return;
        }
        tern_tokenizer_desc d;
        if (tern_tokenizer_desc_from_gguf(&g, &d, &err) != TERN_OK) {
            ADD_FAILURE() << path << ": " << err.message;
            return;
        }
        tern_status s = tern_tokenizer_create(&d, &tok, &err);
        tern_tokenizer_desc_free(&d);
        if (s != TERN_OK) {
            ADD_FAILURE() << path << ": " << err.message;
            return;
        }
        ok = true;
    }
    ~Vocab() {
        tern_tokenizer_destroy(tok);
        tern_gguf_close(&g);
    }
    std::vector<int32_t> encode(const std::string &text, bool add_special = false, bool parse_special = false) {
        std::vector<int32_t> ids(text.size() * 2 + 8);
        size_t n = 0;
        tern_error err{};
        tern_status s = tern_tokenizer_encode(tok, text.data(), text.size(), add_special, parse_special, ids.data(),
                                              ids.size(), &n, &err);
        EXPECT_EQ(s, TERN_OK) << err.message;
        ids.resize(s == TERN_OK ? n : 0);
        return ids;
    }
    // Decodes through the streaming decoder, one id at a time.
    std::string decode(const std::vector<int32_t> &ids) {
        tern_detok d;
        tern_detok_init(&d, tok, 0);
        std::vector<char> buf(tern_tokenizer_max_piece(tok) + 16);
        std::string s;
        for (int32_t id : ids) {
            size_t n = 0;
            tern_error err{};
            EXPECT_EQ(tern_detok_feed(&d, id, buf.data(), buf.size(), &n, &err), TERN_OK) << err.message;
            // Every chunk handed out ends on a UTF-8 boundary.
            if (n) {
                EXPECT_FALSE((unsigned char)buf[n - 1] >= 0xC0) << "split sequence";
            }
            s.append(buf.data(), n);
        }
        size_t n = tern_detok_flush(&d, buf.data(), buf.size());
        s.append(buf.data(), n);
        return s;
    }
};

std::string show(const std::vector<int32_t> &v) {
    std::string s;
    for (int32_t x : v) s += std::to_string(x) + " ";
    return s;
}

struct VocabResult {
    int passed = 0, total = 0, roundtrips = 0;
    std::string fails;
};

VocabResult run_vocab(const std::string &name) {
    VocabResult r;
    std::string base = test_shared_path("models/tokenizers/ggml-vocab-" + name + ".gguf");
    Vocab v(base);
    if (!v.ok) return r;
    for (const Case &c : read_cases(base)) {
        r.total++;
        std::vector<int32_t> got = v.encode(c.text);
        if (got == c.ids) {
            r.passed++;
        } else {
            r.fails += "\n  '" + c.text + "': want " + show(c.ids) + "got " + show(got);
        }
        if (v.decode(got) == c.text) r.roundtrips++;
    }
    return r;
}

// Vocabularies that pass every case must keep doing so; the others must not
// drop below the count they reach now.
struct Expect {
    const char *name;
    int min_pass;  // of 46
    int min_roundtrip;
};

class VocabFiles : public ::testing::TestWithParam<Expect> {};

TEST_P(VocabFiles, MatchesReferenceIds) {
    const Expect &e = GetParam();
    std::string base = test_shared_path(std::string("models/tokenizers/ggml-vocab-") + e.name + ".gguf");
    if (test_read_file(base).empty()) GTEST_SKIP() << "no " << base;
    VocabResult r = run_vocab(e.name);
    std::printf("[ vocab    ] %s: %d/%d match, %d/%d round-trip\n", e.name, r.passed, r.total, r.roundtrips,
                r.total);
    EXPECT_EQ(r.total, 46);
    EXPECT_GE(r.passed, e.min_pass) << "regression:" << r.fails;
    EXPECT_GE(r.roundtrips, e.min_roundtrip);
    if (e.min_pass == 46) {
        EXPECT_EQ(r.passed, r.total) << r.fails;
    }
}

INSTANTIATE_TEST_SUITE_P(Ggml, VocabFiles,
                         ::testing::Values(Expect{"llama-spm", 46, 46}, Expect{"phi-3", 46, 46},
                                           Expect{"gpt-2", 46, 46}, Expect{"mpt", 46, 46},
                                           Expect{"starcoder", 46, 46}, Expect{"refact", 46, 46},
                                           Expect{"falcon", 46, 46}, Expect{"deepseek-coder", 46, 46},
                                           Expect{"deepseek-llm", 46, 46}),
                         [](const ::testing::TestParamInfo<Expect> &i) {
                             std::string s = i.param.name;
                             for (char &c : s)
                                 if (c == '-') c = '_';
                             return s;
                         });

std::string vocab_path(const char *name) {
    return test_shared_path(std::string("models/tokenizers/ggml-vocab-") + name + ".gguf");
}

TEST(Tokenizer, SpecialTokensAndBos) {
    Vocab spm(vocab_path("llama-spm"));
    ASSERT_TRUE(spm.ok);
    // Known ids of LLaMA's vocabulary: BOS 1, "\t" -> "▁" + <0x09> byte fallback.
    EXPECT_EQ(spm.encode("\t"), (std::vector<int32_t>{29871, 12}));
    EXPECT_EQ(spm.encode("\t", true), (std::vector<int32_t>{1, 29871, 12}));
    EXPECT_EQ(spm.encode("", true), (std::vector<int32_t>{1}));
    EXPECT_TRUE(tern_tokenizer_is_eog(spm.tok, 2));
    EXPECT_FALSE(tern_tokenizer_is_eog(spm.tok, 1));
    // "</s>" is only parsed as EOS when asked to.
    EXPECT_EQ(spm.encode("</s>", false, true), (std::vector<int32_t>{2}));
    std::vector<int32_t> plain = spm.encode("</s>", false, false);
    EXPECT_TRUE(std::find(plain.begin(), plain.end(), 2) == plain.end());
    char buf[16];
    EXPECT_EQ(tern_tokenizer_piece(spm.tok, 12, 0, buf, sizeof buf), 1);
    EXPECT_EQ(buf[0], '\t');
    EXPECT_EQ(tern_tokenizer_piece(spm.tok, 2, 0, buf, sizeof buf), 0);  // control: hidden
    EXPECT_EQ(tern_tokenizer_piece(spm.tok, 2, 1, buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "</s>");

    Vocab gpt2(vocab_path("gpt-2"));
    ASSERT_TRUE(gpt2.ok);
    EXPECT_EQ(gpt2.encode("<|endoftext|>", false, true), (std::vector<int32_t>{50256}));
    EXPECT_EQ(gpt2.encode("a<|endoftext|>b", false, true), (std::vector<int32_t>{64, 50256, 65}));
    EXPECT_NE(gpt2.encode("<|endoftext|>", false, false), (std::vector<int32_t>{50256}));
    EXPECT_EQ(gpt2.encode("Hello", true), (std::vector<int32_t>{15496}));  // GPT-2 adds no BOS
    EXPECT_TRUE(tern_tokenizer_is_eog(gpt2.tok, 50256));
    // A buffer too small reports the count it needs.
    int32_t one;
    size_t n = 0;
    EXPECT_EQ(tern_tokenizer_encode(gpt2.tok, "Hello world", 11, 0, 0, &one, 1, &n, nullptr), TERN_ERR_OUT_OF_RANGE);
    EXPECT_EQ(n, 2u);
}

TEST(Tokenizer, StreamingDecoderHoldsSplitUtf8) {
    Vocab gpt2(vocab_path("gpt-2"));
    ASSERT_TRUE(gpt2.ok);
    // U+1F999 (4 bytes) is three byte-level tokens in GPT-2.
    std::vector<int32_t> ids = gpt2.encode("\xF0\x9F\xA6\x99!");
    ASSERT_EQ(ids, (std::vector<int32_t>{8582, 99, 247, 0}));
    tern_detok d;
    tern_detok_init(&d, gpt2.tok, 0);
    std::vector<char> buf(tern_tokenizer_max_piece(gpt2.tok) + 16);
    std::vector<size_t> sizes;
    std::string all;
    for (int32_t id : ids) {
        size_t n = 0;
        ASSERT_EQ(tern_detok_feed(&d, id, buf.data(), buf.size(), &n, nullptr), TERN_OK);
        sizes.push_back(n);
        all.append(buf.data(), n);
    }
    EXPECT_EQ(sizes, (std::vector<size_t>{0, 0, 4, 1}));
    EXPECT_EQ(all, "\xF0\x9F\xA6\x99!");
    // An incomplete sequence at the end comes out on flush, as is.
    tern_detok_init(&d, gpt2.tok, 0);
    size_t n = 0;
    ASSERT_EQ(tern_detok_feed(&d, 8582, buf.data(), buf.size(), &n, nullptr), TERN_OK);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(tern_detok_flush(&d, buf.data(), buf.size()), 2u);
    EXPECT_EQ(std::string(buf.data(), 2), "\xF0\x9F");

    // SPM: byte-fallback tokens of one character are held the same way, and the
    // space added in front of the text is dropped once.
    Vocab spm(vocab_path("llama-spm"));
    ASSERT_TRUE(spm.ok);
    std::string text = " a\xF0\x9F\xA6\x99 b";
    EXPECT_EQ(spm.decode(spm.encode(text)), text);
}

std::vector<std::string> pieces(tern_tok_pre pre, const std::string &utf8) {
    std::vector<uint32_t> cps;
    for (size_t pos = 0; pos < utf8.size();) cps.push_back(tern_utf8_decode((const uint8_t *)utf8.data(), utf8.size(), &pos));
    size_t *lens = nullptr, n = 0;
    EXPECT_EQ(tern_pretokenize(pre, cps.data(), cps.size(), &lens, &n, nullptr), TERN_OK);
    std::vector<std::string> out;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        std::string s;
        for (size_t k = at; k < at + lens[i]; k++) {
            uint8_t u[4];
            s.append((const char *)u, tern_utf8_encode(cps[k], u));
        }
        out.push_back(s);
        at += lens[i];
    }
    free(lens);
    return out;
}

// Splits worked out by hand from the tokenizer.json regexes.
TEST(Tokenizer, PreTokenizerSplits) {
    using V = std::vector<std::string>;
    EXPECT_EQ(pieces(TERN_PRE_GPT2, "Hello world's  12345 !!x"),
              (V{"Hello", " world", "'s", " ", " 12345", " !!", "x"}));
    EXPECT_EQ(pieces(TERN_PRE_LLAMA3, "Hello world 12345 'S\n\n  x"),
              (V{"Hello", " world", " ", "123", "45", " '", "S", "\n\n", " ", " x"}));
    EXPECT_EQ(pieces(TERN_PRE_LLAMA3, "I'VE ...\n"), (V{"I", "'VE", " ...\n"}));
    EXPECT_EQ(pieces(TERN_PRE_QWEN2, "abc 123"), (V{"abc", " ", "1", "2", "3"}));
    EXPECT_EQ(pieces(TERN_PRE_STARCODER, "x 42"), (V{"x", " ", "4", "2"}));
    EXPECT_EQ(pieces(TERN_PRE_FALCON, "a+b 1234"), (V{"a", "+", "b", " ", "123", "4"}));
    EXPECT_EQ(pieces(TERN_PRE_DEEPSEEK_CODER, "def f():\n  x"), (V{"def", " f", "():", "\n", " ", " x"}));
    // Non-ASCII letters and numbers come from the Unicode tables.
    EXPECT_EQ(pieces(TERN_PRE_GPT2, " \xD0\xBD\xD0\xB5 \xD9\xA3"), (V{" \xD0\xBD\xD0\xB5", " \xD9\xA3"}));
}

TEST(Tokenizer, Unicode) {
    EXPECT_EQ(tern_unicode_cat('a'), TERN_UCAT_LETTER);
    EXPECT_EQ(tern_unicode_cat(0x4E00), TERN_UCAT_LETTER);
    EXPECT_EQ(tern_unicode_cat(0x0663), TERN_UCAT_NUMBER);  // ARABIC-INDIC DIGIT THREE
    EXPECT_EQ(tern_unicode_cat(0x2019), TERN_UCAT_PUNCT);
    EXPECT_EQ(tern_unicode_cat(0x1F999), TERN_UCAT_SYMBOL);
    EXPECT_EQ(tern_unicode_cat(0x0301), TERN_UCAT_MARK);
    EXPECT_EQ(tern_unicode_cat(0x0378), TERN_UCAT_UNASSIGNED);
    EXPECT_EQ(tern_unicode_cat(0x10FFFF), TERN_UCAT_UNASSIGNED);
    EXPECT_TRUE(tern_unicode_is_space(0x3000));
    EXPECT_FALSE(tern_unicode_is_space(0x200B));
    const uint8_t bad[] = {0xE2, 0x82, 'x', 0x80};
    size_t pos = 0;
    EXPECT_EQ(tern_utf8_decode(bad, 4, &pos), 0xFFFDu);
    EXPECT_EQ(pos, 1u);
}

// A vocabulary built from plain arrays, not from a file.
TEST(Tokenizer, FromArrays) {
    const char *toks[] = {"a", "b", "c", "ab", "abc", "bc", "<s>"};
    const char *merges[] = {"a b", "ab c", "b c"};
    int32_t types[] = {1, 1, 1, 1, 1, 1, 3};
    tern_tokenizer_desc d{};
    d.model = TERN_TOK_BPE;
    d.pre = "gpt-2";
    d.pre_len = 5;
    d.n_tokens = 7;
    d.tokens = toks;
    d.types = types;
    d.n_merges = 3;
    d.merges = merges;
    d.bos = 6;
    d.eos = d.eot = d.eom = d.unk = d.pad = TERN_TOKEN_NONE;
    d.add_bos = 1;
    tern_tokenizer *t = nullptr;
    tern_error err{};
    ASSERT_EQ(tern_tokenizer_create(&d, &t, &err), TERN_OK) << err.message;
    int32_t ids[8];
    size_t n = 0;
    // "a b" has the lowest rank, then "ab c": abc; "bc" would need rank 2.
    ASSERT_EQ(tern_tokenizer_encode(t, "abcbc", 5, 1, 0, ids, 8, &n, &err), TERN_OK);
    EXPECT_EQ(std::vector<int32_t>(ids, ids + n), (std::vector<int32_t>{6, 4, 5}));
    tern_tokenizer_destroy(t);

    // SPM: the highest score merges first, the leftmost on ties.
    const char *sp[] = {"<unk>", "\xe2\x96\x81", "x", "\xe2\x96\x81x", "xx", "\xe2\x96\x81xx"};
    float scores[] = {0, -1, -1, -2, -2, -9};
    tern_tokenizer_desc s{};
    s.model = TERN_TOK_SPM;
    s.n_tokens = 6;
    s.tokens = sp;
    s.scores = scores;
    s.bos = s.eos = s.eot = s.eom = s.pad = TERN_TOKEN_NONE;
    s.unk = 0;
    s.add_space_prefix = 1;
    ASSERT_EQ(tern_tokenizer_create(&s, &t, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_tokenizer_encode(t, "xxx", 3, 0, 0, ids, 8, &n, &err), TERN_OK);
    // "▁x" (-2) ties "xx" (-2); the leftmost pair "▁x" wins, then "xx".
    EXPECT_EQ(std::vector<int32_t>(ids, ids + n), (std::vector<int32_t>{3, 4}));
    tern_tokenizer_destroy(t);
}

TEST(Tokenizer, OtherVocabulariesLoad) {
    for (const char *name : {"gpt-neox", "baichuan"}) {
        Vocab v(vocab_path(name));
        EXPECT_TRUE(v.ok) << name;
        if (v.ok) {
            std::string text = "Hello world, 3 + 4 = 7";
            EXPECT_EQ(v.decode(v.encode(text)), text) << name;
        }
    }
}

}  // namespace
