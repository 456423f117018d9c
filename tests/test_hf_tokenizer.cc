// Hugging Face tokenizer.json import. No real tokenizer.json is at hand, so
// the tests write them from llama.cpp's vocabulary files (ggml-vocab-*.gguf),
// the way transformers lays them out (GPT-2 / StarCoder byte-level BPE;
// Llama's SentencePiece BPE with merges built as transformers'
// SentencePieceExtractor does), then require the parsed tokenizer to encode
// every .inp case to the .out ids, and compare it token by token with the
// GGUF one. Also: the whole conversion (padding, vocab-size mismatch, chat
// template) and hostile files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "converter/hf_internal.h"
#include "formats/gguf.h"
#include "runtime/tokenizer.h"
#include "tern.h"
#include "test_util.h"

namespace {

std::string json_str(const char *s, size_t n) {
    std::string o = "\"";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            o += '\\';
            o += (char)c;
        } else if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else {
            o += (char)c;
        }
    }
    return o + "\"";
}
std::string json_str(const std::string &s) { return json_str(s.data(), s.size()); }

struct GgufVocab {
    tern_gguf g{};
    tern_tokenizer_desc d{};
    bool ok = false;
    explicit GgufVocab(const char *name) {
        std::string path = test_shared_path(std::string("models/tokenizers/ggml-vocab-") + name + ".gguf");
        tern_error err{};
        if (tern_gguf_open(path.c_str(), &g, &err) != TERN_OK) return;
        ok = tern_tokenizer_desc_from_gguf(&g, &d, &err) == TERN_OK;
        EXPECT_TRUE(ok) << err.message;
    }
    ~GgufVocab() {
        tern_tokenizer_desc_free(&d);
        tern_gguf_close(&g);
    }
    std::string token(uint32_t i) const { return std::string(d.tokens[i], d.token_lens[i]); }
    std::string merge(uint32_t i) const { return std::string(d.merges[i], d.merge_lens[i]); }
    int32_t type(uint32_t i) const { return d.types ? d.types[i] : TERN_TOKEN_NORMAL; }
};

// Tokens of control/user-defined type go to added_tokens as well, as in HF.
std::string added_tokens_json(const GgufVocab &v) {
    std::string s = "[";
    for (uint32_t i = 0; i < v.d.n_tokens; i++) {
        int32_t t = v.type(i);
        if (t != TERN_TOKEN_CONTROL && t != TERN_TOKEN_USER_DEFINED && t != TERN_TOKEN_UNKNOWN) continue;
        if (s.size() > 1) s += ",";
        s += "{\"id\":" + std::to_string(i) + ",\"content\":" + json_str(v.token(i)) +
             ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":" +
             (t == TERN_TOKEN_USER_DEFINED ? "false" : "true") + "}";
    }
    return s + "]";
}

std::string vocab_json(const GgufVocab &v) {
    std::string s = "{";
    for (uint32_t i = 0; i < v.d.n_tokens; i++) {
        if (i) s += ",";
        s += json_str(v.token(i)) + ":" + std::to_string(i);
    }
    return s + "}";
}

// pairs: the transformers >= 4.45 format, [left, right].
std::string bpe_json(const GgufVocab &v, const std::string &pre, bool pairs) {
    std::string m = "[";
    for (uint32_t i = 0; i < v.d.n_merges; i++) {
        std::string e = v.merge(i);
        size_t sp = e.find(' ', 1);
        if (i) m += ",";
        m += pairs ? "[" + json_str(e.substr(0, sp)) + "," + json_str(e.substr(sp + 1)) + "]" : json_str(e);
    }
    m += "]";
    return "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":" + added_tokens_json(v) +
           ",\"normalizer\":null,\"pre_tokenizer\":" + pre +
           ",\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,"
           "\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
           "\"trim_offsets\":true,\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"dropout\":null,"
           "\"unk_token\":null,\"continuing_subword_prefix\":\"\",\"end_of_word_suffix\":\"\","
           "\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":" +
           vocab_json(v) + ",\"merges\":" + m + "}}";
}

size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// transformers' SentencePieceExtractor: every split of a piece into two
// vocabulary pieces is a merge, ranked by the piece's score (stable), the
// splits of one piece by their ids.
std::string spm_json(const GgufVocab &v, bool metaspace) {
    std::map<std::string, uint32_t> ids;
    for (uint32_t i = 0; i < v.d.n_tokens; i++) ids.emplace(v.token(i), i);
    struct M {
        uint32_t l, r;
        float score;
    };
    std::vector<M> merges;
    for (uint32_t i = 0; i < v.d.n_tokens; i++) {
        std::string p = v.token(i);
        std::vector<M> local;
        for (size_t k = utf8_len((unsigned char)p[0]); k < p.size(); k += utf8_len((unsigned char)p[k])) {
            auto l = ids.find(p.substr(0, k)), r = ids.find(p.substr(k));
            if (l != ids.end() && r != ids.end()) local.push_back({l->second, r->second, v.d.scores[i]});
        }
        std::sort(local.begin(), local.end(),
                  [](const M &a, const M &b) { return a.l != b.l ? a.l < b.l : a.r < b.r; });
        merges.insert(merges.end(), local.begin(), local.end());
    }
    std::stable_sort(merges.begin(), merges.end(), [](const M &a, const M &b) { return a.score > b.score; });
    std::string m = "[";
    for (size_t i = 0; i < merges.size(); i++) {
        if (i) m += ",";
        m += json_str(v.token(merges[i].l) + " " + v.token(merges[i].r));
    }
    m += "]";
    std::string norm = metaspace ? "null"
                                 : "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},"
                                   "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]}";
    std::string pre = metaspace ? "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\","
                                  "\"split\":false}"
                                : "null";
    return "{\"version\":\"1.0\",\"added_tokens\":" + added_tokens_json(v) + ",\"normalizer\":" + norm +
           ",\"pre_tokenizer\":" + pre +
           ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
           "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}},"
           "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[]},\"model\":{\"type\":\"BPE\",\"dropout\":null,"
           "\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
           "\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":" +
           vocab_json(v) + ",\"merges\":" + m + "}}";
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// .inp: inputs separated by "\n__ggml_vocab_test__\n"; .out: one line of ids each.
std::vector<Case> read_cases(const char *name) {
    std::string base = test_shared_path(std::string("models/tokenizers/ggml-vocab-") + name + ".gguf");
    std::vector<unsigned char> inp = test_read_file(base + ".inp"), outp = test_read_file(base + ".out");
    std::string raw(inp.begin(), inp.end()), out(outp.begin(), outp.end());
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0; pos < raw.size();) {
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
    for (size_t i = 0; std::getline(lines, line) && i < texts.size(); i++) {
        Case c{texts[i], {}};
        std::istringstream ids(line);
        int32_t id;
        while (ids >> id) c.ids.push_back(id);
        cases.push_back(c);
    }
    EXPECT_EQ(cases.size(), texts.size()) << name;
    return cases;
}

std::vector<int32_t> encode(const tern_tokenizer *t, const std::string &text, bool add_special = false) {
    std::vector<int32_t> ids(text.size() * 2 + 8);
    size_t n = 0;
    tern_error err{};
    tern_status s =
        tern_tokenizer_encode(t, text.data(), text.size(), add_special, 0, ids.data(), ids.size(), &n, &err);
    EXPECT_EQ(s, TERN_OK) << err.message;
    ids.resize(s == TERN_OK ? n : 0);
    return ids;
}

struct TempDir {
    std::string path = test_temp_dir();
    ~TempDir() { test_remove_tree(path); }
    void write(const std::string &name, const std::string &text) const {
        ASSERT_TRUE(test_write_file(path + "/" + name, text.data(), text.size())) << name;
    }
};

// Loads dir's tokenizer, builds both tokenizers and checks every case.
void check_against_gguf(const GgufVocab &v, const char *name, const TempDir &dir) {
    tern_hf_tokenizer hf;
    tern_error err{};
    ASSERT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), TERN_OK) << err.message;
    ASSERT_TRUE(hf.found);
    EXPECT_EQ(hf.desc.model, v.d.model);
    ASSERT_EQ(hf.desc.n_tokens, v.d.n_tokens);
    uint32_t text_diff = 0, type_diff = 0;
    for (uint32_t i = 0; i < v.d.n_tokens; i++) {
        text_diff += std::string(hf.desc.tokens[i], hf.desc.token_lens[i]) != v.token(i);
        type_diff += hf.desc.types[i] != v.type(i);
    }
    EXPECT_EQ(text_diff, 0u);
    EXPECT_EQ(type_diff, 0u);
    if (v.d.model == TERN_TOK_BPE) {
        ASSERT_EQ(hf.desc.n_merges, v.d.n_merges);
        uint32_t merge_diff = 0;
        for (uint32_t i = 0; i < v.d.n_merges; i++)
            merge_diff += std::string(hf.desc.merges[i], hf.desc.merge_lens[i]) != v.merge(i);
        EXPECT_EQ(merge_diff, 0u);
    }
    tern_tokenizer *a = nullptr, *b = nullptr;
    ASSERT_EQ(tern_tokenizer_create(&hf.desc, &a, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_tokenizer_create(&v.d, &b, &err), TERN_OK) << err.message;
    int passed = 0, total = 0;
    std::string fails;
    for (const Case &c : read_cases(name)) {
        total++;
        std::vector<int32_t> got = encode(a, c.text), ref = encode(b, c.text);
        if (got == c.ids && got == ref) {
            passed++;
        } else if (fails.size() < 2000) {
            fails += "\n  '" + c.text + "'";
        }
    }
    EXPECT_EQ(total, 46);
    EXPECT_EQ(passed, total) << fails;
    tern_tokenizer_destroy(a);
    tern_tokenizer_destroy(b);
    tern_hf_tokenizer_free(&hf);
}

const char kByteLevel[] = R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true})";
const char kDigitsByteLevel[] =
    R"({"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},)"
    R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]})";

TEST(HfTokenizer, Gpt2MatchesGguf) {
    GgufVocab v("gpt-2");
    if (!v.ok) GTEST_SKIP() << "no gpt-2 vocabulary";
    for (bool pairs : {false, true}) {
        SCOPED_TRACE(pairs ? "merge pairs" : "merge strings");
        TempDir dir;
        dir.write("tokenizer.json", bpe_json(v, kByteLevel, pairs));
        check_against_gguf(v, "gpt-2", dir);
        tern_hf_tokenizer hf;
        tern_error err{};
        ASSERT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), TERN_OK);
        EXPECT_EQ(std::string(hf.desc.pre, hf.desc.pre_len), "gpt-2");
        EXPECT_EQ(hf.desc.add_bos, 0);
        EXPECT_EQ(hf.chat_template, nullptr);
        tern_hf_tokenizer_free(&hf);
    }
}

TEST(HfTokenizer, StarcoderDigitsMatchGguf) {
    GgufVocab v("starcoder");
    if (!v.ok) GTEST_SKIP() << "no starcoder vocabulary";
    TempDir dir;
    dir.write("tokenizer.json", bpe_json(v, kDigitsByteLevel, false));
    check_against_gguf(v, "starcoder", dir);
}

TEST(HfTokenizer, LlamaSpmMatchesGguf) {
    GgufVocab v("llama-spm");
    if (!v.ok) GTEST_SKIP() << "no llama-spm vocabulary";
    for (bool metaspace : {false, true}) {
        SCOPED_TRACE(metaspace ? "Metaspace" : "Prepend + Replace");
        TempDir dir;
        dir.write("tokenizer.json", spm_json(v, metaspace));
        dir.write("tokenizer_config.json",
                  R"({"add_bos_token":true,"add_eos_token":false,"bos_token":{"__type":"AddedToken","content":"<s>"},)"
                  R"("eos_token":"</s>","unk_token":"<unk>","chat_template":[{"name":"tool_use","template":"T"},)"
                  R"({"name":"default","template":"{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"}]})");
        check_against_gguf(v, "llama-spm", dir);
        tern_hf_tokenizer hf;
        tern_error err{};
        ASSERT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), TERN_OK) << err.message;
        EXPECT_EQ(hf.desc.bos, 1);
        EXPECT_EQ(hf.desc.eos, 2);
        EXPECT_EQ(hf.desc.unk, 0);
        EXPECT_EQ(hf.desc.add_bos, 1);
        EXPECT_EQ(hf.desc.add_eos, 0);
        EXPECT_EQ(hf.desc.add_space_prefix, 1);
        ASSERT_NE(hf.chat_template, nullptr);
        EXPECT_EQ(std::string(hf.chat_template, hf.chat_template_len),
                  "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}");
        tern_tokenizer *t = nullptr;
        ASSERT_EQ(tern_tokenizer_create(&hf.desc, &t, &err), TERN_OK);
        EXPECT_EQ(encode(t, "Hello", true), (std::vector<int32_t>{1, 15043}));
        tern_tokenizer_destroy(t);
        tern_hf_tokenizer_free(&hf);
    }
}

// ---- the whole conversion ---------------------------------------------------

struct LlamaFolder : TempDir {
    LlamaFolder() {
        for (const char *f : {"config.json", "model.safetensors"}) {
            std::vector<unsigned char> b = test_read_file(test_shared_path(std::string("fixtures/hf/llama/") + f));
            EXPECT_FALSE(b.empty()) << f;
            EXPECT_TRUE(test_write_file(path + "/" + f, b.data(), b.size()));
        }
    }
};

tern_status convert(const std::string &src, const std::string &dst, tern_error *err) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = TERN_WEIGHTS_F32;
    return tern_convert(src.c_str(), dst.c_str(), &o, err);
}

TEST(HfTokenizer, ConvertRefusesMoreTokensThanVocabSize) {
    GgufVocab v("gpt-2");
    if (!v.ok) GTEST_SKIP() << "no gpt-2 vocabulary";
    LlamaFolder dir;
    dir.write("tokenizer.json", bpe_json(v, kByteLevel, false));
    TempDir out;
    tern_error err{};
    std::string dst = out.path + "/m.tern";
    EXPECT_EQ(convert(dir.path, dst, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "vocab_size 512"), nullptr) << err.message;
    EXPECT_TRUE(test_read_file(dst).empty());
}

// GPT-2's first 500 ids (256 byte symbols + the first 244 merges) and
// <|endoftext|> at 500: the fixture's 512-row embedding gets a padded tokenizer.
TEST(HfTokenizer, ConvertCarriesTokenizerAndTemplate) {
    GgufVocab v("gpt-2");
    if (!v.ok) GTEST_SKIP() << "no gpt-2 vocabulary";
    const uint32_t kBase = 500;
    std::map<std::string, uint32_t> ids;
    std::string vocab = "{";
    for (uint32_t i = 0; i < kBase; i++) {
        ids.emplace(v.token(i), i);
        vocab += (i ? "," : "") + json_str(v.token(i)) + ":" + std::to_string(i);
    }
    vocab += "}";
    std::string merges = "[";
    uint32_t n_merges = 0;
    for (uint32_t i = 0; i < v.d.n_merges; i++) {
        std::string e = v.merge(i);
        size_t sp = e.find(' ', 1);
        std::string l = e.substr(0, sp), r = e.substr(sp + 1);
        if (!ids.count(l) || !ids.count(r) || !ids.count(l + r)) break;
        merges += (n_merges++ ? "," : "") + json_str(e);
    }
    merges += "]";
    ASSERT_GT(n_merges, 100u);
    LlamaFolder dir;
    dir.write("tokenizer.json", std::string(R"({"added_tokens":[{"id":500,"content":"<|endoftext|>","special":true}],)") +
                                    R"("pre_tokenizer":)" + kByteLevel + R"(,"decoder":{"type":"ByteLevel"},)" +
                                    R"("model":{"type":"BPE","vocab":)" + vocab + R"(,"merges":)" + merges + "}}");
    const std::string tmpl = "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}";
    dir.write("tokenizer_config.json", R"({"eos_token":"<|endoftext|>","bos_token":null,"chat_template":)" +
                                           json_str(tmpl) + "}");
    TempDir out;
    tern_error err{};
    std::string dst = out.path + "/m.tern";
    ASSERT_EQ(convert(dir.path, dst, &err), TERN_OK) << err.message;

    tern_model *m = nullptr;
    ASSERT_EQ(tern_model_open(dst.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    ASSERT_TRUE(tern_model_has_tokenizer(m));
    const char *text = nullptr;
    size_t len = 0;
    ASSERT_EQ(tern_model_chat_template(m, &text, &len), TERN_OK);
    EXPECT_EQ(std::string(text, len), tmpl);
    EXPECT_EQ(tern_model_token_id(m, "<|endoftext|>", 13), 500);
    EXPECT_TRUE(tern_model_is_eog(m, 500));
    EXPECT_EQ(tern_model_token_id(m, "[PAD511]", 8), 511);  // padded up to vocab_size
    char piece[32];
    EXPECT_LT(tern_model_token_piece(m, 512, piece, sizeof piece), 0);

    // Against the full GPT-2 tokenizer, on texts whose ids all lie below 500.
    tern_tokenizer *full = nullptr;
    ASSERT_EQ(tern_tokenizer_create(&v.d, &full, &err), TERN_OK);
    // Texts made of two neighbouring merged tokens, e.g. " the" + "in".
    int compared = 0;
    for (int32_t i = 256; i + 1 < (int32_t)kBase; i += 3) {
        std::string text;
        for (int32_t id : {i, i + 1}) {
            char buf[64];
            int k = tern_tokenizer_piece(full, id, 0, buf, sizeof buf);
            ASSERT_GT(k, 0);
            text.append(buf, (size_t)k);
        }
        std::vector<int32_t> want = encode(full, text);
        if (std::any_of(want.begin(), want.end(), [&](int32_t id) { return id >= (int32_t)kBase; })) continue;
        int32_t got[64];
        size_t n_got = 0;
        ASSERT_EQ(tern_model_tokenize(m, text.data(), text.size(), 0, 0, got, 64, &n_got, &err), TERN_OK);
        EXPECT_EQ(std::vector<int32_t>(got, got + n_got), want) << "'" << text << "'";
        compared++;
    }
    int32_t got[8];
    size_t n_got = 0;
    ASSERT_EQ(tern_model_tokenize(m, "a<|endoftext|>", 14, 0, 1, got, 8, &n_got, &err), TERN_OK);
    EXPECT_EQ(std::vector<int32_t>(got, got + n_got), (std::vector<int32_t>{64, 500}));
    EXPECT_GE(compared, 20);
    tern_tokenizer_destroy(full);
    tern_model_close(m);
}

// ---- hostile files -------------------------------------------------------------

struct Bad {
    const char *what;
    const char *json;
    tern_status status;
    const char *needle;
};

// gtest prints parameters; without this it dumps Bad's padding bytes.
void PrintTo(const Bad &b, std::ostream *os) { *os << b.what; }

const char kOkModel[] = R"("model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]})";
const char kPre[] = R"("pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"})";

class HfTokenizerHostile : public ::testing::TestWithParam<Bad> {};

TEST_P(HfTokenizerHostile, FailsCleanly) {
    const Bad &b = GetParam();
    TempDir dir;
    dir.write("tokenizer.json", b.json);
    tern_hf_tokenizer hf;
    tern_error err{};
    EXPECT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), b.status) << err.message;
    EXPECT_NE(std::strstr(err.message, b.needle), nullptr) << err.message;
    EXPECT_EQ(hf.desc.n_tokens, 0u);  // freed on failure
}

#define OKPRE R"("pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"})"
INSTANTIATE_TEST_SUITE_P(
    Files, HfTokenizerHostile,
    ::testing::Values(
        Bad{"truncated", R"({"model":{"type":"BPE","vocab":{"a":0)", TERN_ERR_FORMAT, "truncated"},
        Bad{"not_object", "[1,2]", TERN_ERR_FORMAT, "not a JSON object"},
        Bad{"model_array", R"({"model":[]})", TERN_ERR_FORMAT, "\"model\""},
        Bad{"model_type_number", R"({"model":{"type":3}})", TERN_ERR_FORMAT, "model type"},
        Bad{"unigram", R"({"model":{"type":"Unigram","vocab":[["a",0.0]]}})", TERN_ERR_UNSUPPORTED, "Unigram"},
        Bad{"wordpiece", R"({"model":{"type":"WordPiece","vocab":{}}})", TERN_ERR_UNSUPPORTED, "WordPiece"},
        Bad{"vocab_array", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":[],"merges":[]}})", TERN_ERR_FORMAT,
            "model.vocab"},
        Bad{"id_string", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":"0"},"merges":[]}})", TERN_ERR_FORMAT,
            "not an integer"},
        Bad{"id_negative", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":-1},"merges":[]}})", TERN_ERR_FORMAT,
            "outside"},
        Bad{"id_huge", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":1073741824},"merges":[]}})",
            TERN_ERR_FORMAT, "outside"},
        Bad{"id_overflow", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":99999999999999999999},"merges":[]}})",
            TERN_ERR_FORMAT, "outside"},
        Bad{"id_sparse", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0,"b":60000000},"merges":["a b"]}})",
            TERN_ERR_FORMAT, "ids reach 60000000"},
        Bad{"duplicate_ids", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0,"b":0},"merges":["a b"]}})",
            TERN_ERR_FORMAT, "both"},
        Bad{"added_conflict", R"({"added_tokens":[{"id":1,"content":"<s>","special":true}],)" OKPRE "," R"("model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}})",
            TERN_ERR_FORMAT, "added token"},
        Bad{"added_not_list", R"({"added_tokens":{},)" OKPRE "," R"("model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "added_tokens"},
        Bad{"added_no_content", R"({"added_tokens":[{"id":1,"content":5}],)" OKPRE "," R"("model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "content"},
        Bad{"added_bad_special", R"({"added_tokens":[{"id":1,"content":"x","special":"yes"}],)" OKPRE "," R"("model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "special"},
        Bad{"added_id_range", R"({"added_tokens":[{"id":-5,"content":"x"}],)" OKPRE "," R"("model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "outside"},
        Bad{"merge_number", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0},"merges":[5]}})", TERN_ERR_FORMAT,
            "merge 0"},
        Bad{"merge_no_space", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0},"merges":["aa"]}})",
            TERN_ERR_FORMAT, "left right"},
        Bad{"merge_pair_short", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0},"merges":[["a"]]}})",
            TERN_ERR_FORMAT, "merge 0"},
        Bad{"merges_object", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0},"merges":{}}})", TERN_ERR_FORMAT,
            "merges"},
        Bad{"no_merges", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{"a":0}}})", TERN_ERR_FORMAT, "merges"},
        Bad{"empty_vocab", R"({)" OKPRE R"(,"model":{"type":"BPE","vocab":{},"merges":[]}})", TERN_ERR_FORMAT,
            "empty"},
        Bad{"no_byte_level", R"({"pre_tokenizer":{"type":"Whitespace"},"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_UNSUPPORTED, "Whitespace"},
        Bad{"unknown_regex",
            R"({"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+|[^\\w\\s]+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]},"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_UNSUPPORTED, "\\w+|[^\\w\\s]+"},
        Bad{"pre_not_object", R"({"pre_tokenizer":7,"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "pre_tokenizer"},
        Bad{"use_regex_string", R"({"pre_tokenizer":{"type":"ByteLevel","use_regex":"yes"},"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "use_regex"},
        Bad{"spm_without_marker", R"({"model":{"type":"BPE","byte_fallback":true,"vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_UNSUPPORTED, "byte_fallback"},
        Bad{"spm_unk_number", R"({"normalizer":{"type":"Replace","pattern":{"String":" "},"content":"\u2581"},"model":{"type":"BPE","byte_fallback":true,"unk_token":3,"vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_FORMAT, "unk_token"},
        Bad{"bytelevel_wrong_decoder", R"({"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"WordPiece"},"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}})",
            TERN_ERR_UNSUPPORTED, "decoder"}),
    [](const ::testing::TestParamInfo<Bad> &i) { return std::string(i.param.what); });

TEST(HfTokenizer, ValidSmallFileAndPreNames) {
    const char *llama3 =
        R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]})";
    const char *qwen2 =
        R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]})";
    struct {
        const char *pre, *name;
        int add_bos;
    } const cases[] = {{kByteLevel, "gpt-2", 0}, {kDigitsByteLevel, "starcoder", 0}, {llama3, "llama-bpe", 1},
                       {qwen2, "qwen2", 0}};
    for (const auto &c : cases) {
        TempDir dir;
        dir.write("tokenizer.json",
                  std::string(R"({"added_tokens":[{"id":5,"content":"<|end|>","special":true},)"
                              R"({"id":2,"content":"ab","special":false}],"normalizer":{"type":"NFC"},"pre_tokenizer":)") +
                      c.pre + R"(,"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]}})");
        dir.write("tokenizer_config.json", R"({"eos_token":"<|end|>","add_eos_token":true})");
        tern_hf_tokenizer hf;
        tern_error err{};
        ASSERT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 8, &hf, &err), TERN_OK) << err.message;
        EXPECT_EQ(std::string(hf.desc.pre, hf.desc.pre_len), c.name);
        EXPECT_EQ(hf.desc.add_bos, 0);  // no BOS token to add, whatever the family
        ASSERT_EQ(hf.desc.n_tokens, 8u);
        const char *want[8] = {"a", "b", "ab", "[PAD3]", "[PAD4]", "<|end|>", "[PAD6]", "[PAD7]"};
        const int32_t types[8] = {1, 1, 4, 5, 5, 3, 5, 5};
        for (uint32_t i = 0; i < 8; i++) {
            EXPECT_EQ(std::string(hf.desc.tokens[i], hf.desc.token_lens[i]), want[i]) << i;
            EXPECT_EQ(hf.desc.types[i], types[i]) << i;
        }
        EXPECT_EQ(hf.desc.eos, 5);
        EXPECT_EQ(hf.desc.add_eos, 1);
        EXPECT_EQ(hf.desc.bos, TERN_TOKEN_NONE);
        ASSERT_EQ(hf.desc.n_merges, 1u);
        EXPECT_EQ(std::string(hf.desc.merges[0], hf.desc.merge_lens[0]), "a b");
        tern_hf_tokenizer_free(&hf);
        // More tokens than the model has rows: refused.
        EXPECT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 5, &hf, &err), TERN_ERR_FORMAT);
        EXPECT_NE(std::strstr(err.message, "vocab_size 5"), nullptr) << err.message;
    }
    // No tokenizer.json: nothing found, no error.
    TempDir empty;
    tern_hf_tokenizer hf;
    tern_error err{};
    ASSERT_EQ(tern_hf_tokenizer_load(empty.path.c_str(), nullptr, 0, &hf, &err), TERN_OK);
    EXPECT_FALSE(hf.found);
    tern_hf_tokenizer_free(&hf);
}

TEST(HfTokenizer, BadTokenizerConfig) {
    const std::string tok = std::string("{") + kPre + "," + kOkModel + "}";
    const char *const bad[][2] = {{R"({"chat_template":5})", "chat_template"},
                                  {R"({"chat_template":[{"name":"default"}]})", "chat_template[0]"},
                                  {R"({"bos_token":7})", "bos_token"},
                                  {R"({"eos_token":{"content":[]}})", "eos_token"},
                                  {R"({"add_bos_token":"yes"})", "add_bos_token"},
                                  {R"({"bos_token":"<s>")", "truncated"}};
    for (const auto &b : bad) {
        TempDir dir;
        dir.write("tokenizer.json", tok);
        dir.write("tokenizer_config.json", b[0]);
        tern_hf_tokenizer hf;
        tern_error err{};
        EXPECT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), TERN_ERR_FORMAT) << b[0];
        EXPECT_NE(std::strstr(err.message, b[1]), nullptr) << err.message;
    }
    // chat_template.jinja beside the config, when the config has none.
    TempDir dir;
    dir.write("tokenizer.json", tok);
    dir.write("chat_template.jinja", "{{ messages }}");
    tern_hf_tokenizer hf;
    tern_error err{};
    ASSERT_EQ(tern_hf_tokenizer_load(dir.path.c_str(), nullptr, 0, &hf, &err), TERN_OK) << err.message;
    ASSERT_NE(hf.chat_template, nullptr);
    EXPECT_EQ(std::string(hf.chat_template, hf.chat_template_len), "{{ messages }}");
    tern_hf_tokenizer_free(&hf);
}

}  // namespace
