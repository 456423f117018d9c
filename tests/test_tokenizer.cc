// Tokenizer tests: llama.cpp's vocabulary test files (ggml-vocab-*.gguf with
// .inp/.out beside them; the ids in .out come from the reference tokenizers),
// round trips, the streaming decoder and the pre-tokenizer splits.
#include <gtest/gtest.h>

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
            if (n) EXPECT_FALSE((unsigned char)buf[n - 1] >= 0xC0) << "split sequence";
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
    if (e.min_pass == 46) EXPECT_EQ(r.passed, r.total) << r.fails;
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

}  // namespace
