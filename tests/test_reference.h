// Helpers shared by the end-to-end tests that hold tern's logits against a
// reference.safetensors (what transformers, timm or llama2.c computed): loading
// the reference, the per-row relative error, sessions and feeding them, Hugging
// Face fixture folders; and the parameterised fixture every decoder family
// (llama, mamba, rwkv) runs its checkpoints through.
#ifndef TERN_TESTS_TEST_REFERENCE_H
#define TERN_TESTS_TEST_REFERENCE_H

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "formats/safetensors.h"
#include "tern.h"
#include "tests/test_util.h"

// A decoder's reference: the token ids and the logits after each of them.
struct TestReference {
    std::vector<int32_t> tokens;
    std::vector<float> logits;  // [tokens][vocab]
    size_t vocab = 0;
    int n_prompt = 0;  // tokens of the prompt; 0 where the file has no n_prompt
};

// Reads tokens (int32), logits (2-D, any float type) and n_prompt (optional).
// A missing or malformed file is a test failure and gives an empty reference.
inline TestReference test_load_reference(const std::string &path) {
    TestReference r;
    tern_safetensors st;
    tern_error err = {};
    if (tern_safetensors_open(path.c_str(), &st, &err) != TERN_OK) {
        ADD_FAILURE() << err.message;
        return r;
    }
    const tern_st_tensor *tok = tern_safetensors_find(&st, "tokens");
    const tern_st_tensor *lg = tern_safetensors_find(&st, "logits");
    const tern_st_tensor *np = tern_safetensors_find(&st, "n_prompt");
    if (!tok || !lg || lg->ndim != 2 || tok->dtype != TERN_ST_I32) {
        ADD_FAILURE() << path << ": missing tokens/logits";
        tern_safetensors_close(&st);
        return r;
    }
    r.tokens.resize(tok->n_elements);
    std::memcpy(r.tokens.data(), tok->data, tok->size);
    r.logits.resize(lg->n_elements);
    EXPECT_EQ(tern_st_to_f32(lg, r.logits.data(), &err), TERN_OK) << err.message;
    r.vocab = lg->shape[1];
    if (np) std::memcpy(&r.n_prompt, np->data, sizeof(int32_t));
    tern_safetensors_close(&st);
    return r;
}

// ||out - ref|| / ||ref|| of one row, in double. A zero reference row gives 0
// only where out is zero too (else infinity); a NaN anywhere gives NaN.
template <typename R>
double test_row_rel_error(const float *out, const R *ref, size_t cols) {
    double num = 0, den = 0;
    for (size_t c = 0; c < cols; c++) {
        double d = (double)out[c] - (double)ref[c];
        num += d * d;
        den += (double)ref[c] * (double)ref[c];
    }
    return num == 0 ? 0.0 : std::sqrt(num / den);
}

// max over rows of ||out - ref|| / ||ref||; a NaN row makes the result NaN, so
// that EXPECT_LE(error, tolerance) fails on it (std::max would drop it).
template <typename R>
double test_max_row_rel_error(const float *out, const R *ref, size_t rows, size_t cols) {
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        double e = test_row_rel_error(out + r * cols, ref + r * cols, cols);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

// A session with `threads` threads (0: the library's default) and prefill
// chunks of at most `max_batch` tokens (0: the default); NULL on failure,
// which is a test failure.
inline tern_session *test_session_create(tern_model *model, uint32_t threads, uint32_t max_batch = 0) {
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_threads = threads;
    so.max_batch = max_batch;
    tern_session *s = nullptr;
    tern_error err = {};
    EXPECT_EQ(tern_session_create(model, &so, &s, &err), TERN_OK) << err.message;
    return s;
}

// The logits after every token of `tokens` ([tokens][vocab]) from a fresh
// session: one feed of them all, or (stepwise) one feed per token.
inline std::vector<float> test_run_logits(tern_model *model, const std::vector<int32_t> &tokens, size_t vocab,
                                          uint32_t threads, uint32_t max_batch = 0, bool stepwise = false) {
    std::vector<float> out(tokens.size() * vocab);
    tern_session *s = test_session_create(model, threads, max_batch);
    if (!s) return out;
    tern_error err = {};
    if (stepwise) {
        for (size_t i = 0; i < tokens.size(); i++) {
            tern_status st = tern_session_feed(s, &tokens[i], 1, &out[i * vocab], TERN_LOGITS_LAST, &err);
            EXPECT_EQ(st, TERN_OK) << "token " << i << ": " << err.message;
            if (st != TERN_OK) break;
        }
    } else {
        EXPECT_EQ(tern_session_feed(s, tokens.data(), tokens.size(), out.data(), TERN_LOGITS_ALL, &err), TERN_OK)
            << err.message;
    }
    tern_session_destroy(s);
    return out;
}

// tern_convert with default options but `weights`.
inline tern_status test_convert(const std::string &src, const std::string &out, tern_weight_type weights,
                                tern_error *err) {
    tern_convert_options opts;
    tern_convert_options_default(&opts);
    opts.weights = weights;
    return tern_convert(src.c_str(), out.c_str(), &opts, err);
}

// A copy of the checkpoint folder `src` (config.json and `files`) in dst whose
// config.json has the value of `key` replaced by `value` (JSON text).
inline std::string test_copy_with_config(const std::string &src, const std::string &dst,
                                         const std::vector<std::string> &files, const std::string &key,
                                         const std::string &value) {
    mkdir(dst.c_str(), 0755);
    for (const std::string &f : files) {
        std::vector<unsigned char> data = test_read_file(src + "/" + f);
        test_write_file(dst + "/" + f, data.data(), data.size());
    }
    std::vector<unsigned char> cfg = test_read_file(src + "/config.json");
    std::string text(cfg.begin(), cfg.end());
    const std::string needle = "\"" + key + "\": ";
    size_t at = text.find(needle);
    EXPECT_NE(at, std::string::npos) << key;
    if (at != std::string::npos) {
        size_t end = text.find_first_of(",\n}", at + needle.size());
        text.replace(at + needle.size(), end - at - needle.size(), value);
    }
    test_write_file(dst + "/config.json", text.data(), text.size());
    return dst;
}

// ---- One decoder checkpoint against its reference ------------------------------------
//
// A family instantiates DecoderMatchesReference with its fixtures (and, where
// its state is recurrent, RecurrentMatchesReference too), and adds its own
// TEST_Ps on them in its file. The fixtures hold 24 tokens, 12 of them prompt.

struct DecoderCase {
    std::string fixture;  // path relative to shared/ or to the source tree
    bool in_shared;
    tern_weight_type weights;
    double tolerance;  // on the worst per-row relative error
    tern_arch arch;
};

inline void PrintTo(const DecoderCase &c, std::ostream *os) {
    *os << c.fixture << (c.weights == TERN_WEIGHTS_F32 ? " f32" : " f16") << " tol " << c.tolerance;
}

// A test name for a checkpoint folder converted to `weights`:
// "<last folder name>_f32" / "_f16", other characters than [A-Za-z0-9] as '_'.
inline std::string test_case_name(const std::string &folder, tern_weight_type weights) {
    std::string n = folder.substr(folder.rfind('/') + 1);
    for (char &c : n)
        if (!isalnum((unsigned char)c)) c = '_';
    return n + (weights == TERN_WEIGHTS_F32 ? "_f32" : "_f16");
}

inline std::string test_decoder_case_name(const testing::TestParamInfo<DecoderCase> &info) {
    return test_case_name(info.param.fixture, info.param.weights);
}

// Converts the case's checkpoint (every test on a fresh copy), loads its
// reference and opens the model.
class DecoderMatchesReference : public testing::TestWithParam<DecoderCase> {
  protected:
    void SetUp() override {
        const DecoderCase &c = GetParam();
        dir_ = c.in_shared ? test_shared_path(c.fixture) : test_source_path(c.fixture);
        tmp_ = test_temp_dir();
        path_ = tmp_ + "/model.tern";
        tern_error err = {};
        ASSERT_EQ(test_convert(dir_, path_, c.weights, &err), TERN_OK) << err.message;
        ref_ = test_load_reference(dir_ + "/reference.safetensors");
        ASSERT_FALSE(ref_.tokens.empty());
        ASSERT_EQ(tern_model_open(path_.c_str(), nullptr, &model_, &err), TERN_OK) << err.message;
        tern_model_info info;
        tern_model_get_info(model_, &info);
        ASSERT_EQ(info.n_vocab, ref_.vocab);
        ASSERT_EQ(info.arch, c.arch);
    }
    void TearDown() override {
        tern_model_close(model_);
        test_remove_tree(tmp_);
    }
    tern_session *NewSession(uint32_t threads, uint32_t max_batch = 0) {
        return test_session_create(model_, threads, max_batch);
    }
    // All the reference tokens in one feed.
    std::vector<float> Prefill(uint32_t threads, uint32_t max_batch = 0) {
        return test_run_logits(model_, ref_.tokens, ref_.vocab, threads, max_batch);
    }
    // Against all the reference rows.
    double Error(const std::vector<float> &out) const {
        return test_max_row_rel_error(out.data(), ref_.logits.data(), ref_.tokens.size(), ref_.vocab);
    }
    // Against the reference row after token `i` (out holds one row).
    double RowError(const std::vector<float> &out, size_t i) const {
        return test_max_row_rel_error(out.data(), &ref_.logits[i * ref_.vocab], 1, ref_.vocab);
    }

    std::string dir_, tmp_, path_;
    TestReference ref_;
    tern_model *model_ = nullptr;
};

// Models whose state is a recurrence (Mamba, RWKV): no truncating to the middle.
class RecurrentMatchesReference : public DecoderMatchesReference {};

// Every binary that includes this header sees these TEST_Ps; only the decoder
// families instantiate them.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DecoderMatchesReference);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RecurrentMatchesReference);

TEST_P(DecoderMatchesReference, Prefill) {
    double e = Error(Prefill(1));
    EXPECT_LE(e, GetParam().tolerance) << "worst per-row relative error";
    RecordProperty("max_rel_error", std::to_string(e));
}

TEST_P(DecoderMatchesReference, PrefillInChunksOf5) {
    // 24 tokens as 5+5+5+5+4: the chunks cross the prompt boundary, and the
    // KV cache, the conv window, the shift and the SSM/WKV states cross chunks.
    EXPECT_LE(Error(Prefill(2, 5)), GetParam().tolerance);
}

TEST_P(DecoderMatchesReference, StepwiseAfterPrompt) {
    // The prompt as one batch, then teacher forcing one token at a time.
    tern_session *s = NewSession(1);
    ASSERT_NE(s, nullptr);
    const size_t n = ref_.tokens.size(), v = ref_.vocab;
    const size_t np = ref_.n_prompt > 0 ? (size_t)ref_.n_prompt : 1;
    std::vector<float> out(n * v);
    tern_error err = {};
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), np, out.data(), TERN_LOGITS_ALL, &err), TERN_OK);
    for (size_t i = np; i < n; i++) {
        ASSERT_EQ(tern_session_feed(s, &ref_.tokens[i], 1, &out[i * v], TERN_LOGITS_LAST, &err), TERN_OK)
            << err.message;
        EXPECT_EQ(tern_session_position(s), i + 1);
    }
    tern_session_destroy(s);
    EXPECT_LE(Error(out), GetParam().tolerance);
}

TEST_P(DecoderMatchesReference, SameLogitsForEveryThreadCount) {
    std::vector<float> one = Prefill(1), two = Prefill(2), four = Prefill(4);
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(one.data(), four.data(), one.size() * sizeof(float)));
    std::vector<float> one_chunked = Prefill(1, 5), four_chunked = Prefill(4, 5);
    EXPECT_EQ(0, std::memcmp(one_chunked.data(), four_chunked.data(), one.size() * sizeof(float)));
    EXPECT_LE(Error(four_chunked), GetParam().tolerance);
}

TEST_P(DecoderMatchesReference, BadTokensLeaveSessionUnchanged) {
    tern_session *s = NewSession(1);
    ASSERT_NE(s, nullptr);
    const size_t v = ref_.vocab;
    std::vector<float> out(v);
    tern_error err = {};
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), 3, nullptr, TERN_LOGITS_NONE, &err), TERN_OK);
    int32_t bad[2] = {ref_.tokens[3], (int32_t)v};
    EXPECT_EQ(tern_session_feed(s, bad, 2, out.data(), TERN_LOGITS_LAST, &err), TERN_ERR_OUT_OF_RANGE);
    EXPECT_NE(std::string(err.message).find("outside the vocabulary"), std::string::npos) << err.message;
    int32_t negative = -1;
    EXPECT_EQ(tern_session_feed(s, &negative, 1, out.data(), TERN_LOGITS_LAST, &err), TERN_ERR_OUT_OF_RANGE);
    EXPECT_EQ(tern_session_position(s), 3u);
    // The session still works and gives the reference logits for position 3.
    ASSERT_EQ(tern_session_feed(s, &ref_.tokens[3], 1, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    EXPECT_LE(RowError(out, 3), GetParam().tolerance);
    tern_session_destroy(s);
}

TEST_P(RecurrentMatchesReference, TruncateToZeroAndReplay) {
    tern_session *s = NewSession(2);
    ASSERT_NE(s, nullptr);
    const size_t n = ref_.tokens.size(), v = ref_.vocab;
    std::vector<float> first(n * v), again(n * v);
    tern_error err = {};
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), n, first.data(), TERN_LOGITS_ALL, &err), TERN_OK);
    ASSERT_EQ(tern_session_truncate(s, (uint32_t)n, &err), TERN_OK) << "keeping everything is allowed";
    ASSERT_EQ(tern_session_truncate(s, 0, &err), TERN_OK) << err.message;
    EXPECT_EQ(tern_session_position(s), 0u);
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), n, again.data(), TERN_LOGITS_ALL, &err), TERN_OK);
    EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * sizeof(float)));
    tern_session_destroy(s);
}

TEST_P(RecurrentMatchesReference, TruncateToTheMiddleIsRefused) {
    tern_session *s = NewSession(1);
    ASSERT_NE(s, nullptr);
    const size_t n = ref_.tokens.size(), v = ref_.vocab, half = n / 2;
    std::vector<float> out(v);
    tern_error err = {};
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), half, nullptr, TERN_LOGITS_NONE, &err), TERN_OK);
    EXPECT_EQ(tern_session_truncate(s, 3, &err), TERN_ERR_UNSUPPORTED);
    EXPECT_NE(std::strstr(err.message, "recurrent state"), nullptr) << err.message;
    EXPECT_EQ(tern_session_position(s), half);
    // The refused call left the state alone: the rest continues as if it never happened.
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data() + half, n - half, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    EXPECT_LE(RowError(out, n - 1), GetParam().tolerance);
    tern_session_destroy(s);
}

#endif
