// End-to-end model tests: Hugging Face checkpoints converted by tern and run
// through the public API, against the float64 logits transformers computed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "formats/safetensors.h"
#include "tern.h"
#include "tests/test_util.h"

namespace {

struct Reference {
    std::vector<int32_t> tokens;
    std::vector<float> logits;  // [tokens][vocab]
    size_t vocab = 0;
    int n_prompt = 0;
};

Reference load_reference(const std::string &dir) {
    Reference r;
    tern_safetensors st;
    tern_error err = {};
    std::string path = dir + "/reference.safetensors";
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

// max over rows of ||out - ref|| / ||ref||
double max_row_rel_error(const float *out, const float *ref, size_t rows, size_t cols) {
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (size_t c = 0; c < cols; c++) {
            double d = (double)out[r * cols + c] - ref[r * cols + c];
            num += d * d;
            den += (double)ref[r * cols + c] * ref[r * cols + c];
        }
        worst = std::max(worst, std::sqrt(num / (den > 0 ? den : 1)));
    }
    return worst;
}

struct ModelCase {
    std::string fixture;  // path relative to shared/ or to the source tree
    bool in_shared;
    tern_weight_type weights;
    double tolerance;
};

std::string case_name(const testing::TestParamInfo<ModelCase> &info) {
    std::string n = info.param.fixture.substr(info.param.fixture.rfind('/') + 1);
    for (char &c : n)
        if (!isalnum((unsigned char)c)) c = '_';
    return n + (info.param.weights == TERN_WEIGHTS_F32 ? "_f32" : "_f16");
}

class ModelMatchesReference : public testing::TestWithParam<ModelCase> {
  protected:
    void SetUp() override {
        const ModelCase &c = GetParam();
        dir_ = c.in_shared ? test_shared_path(c.fixture) : test_source_path(c.fixture);
        tmp_ = test_temp_dir();
        path_ = tmp_ + "/model.tern";
        tern_convert_options opts;
        tern_convert_options_default(&opts);
        opts.weights = c.weights;
        tern_error err = {};
        ASSERT_EQ(tern_convert(dir_.c_str(), path_.c_str(), &opts, &err), TERN_OK) << err.message;
        ref_ = load_reference(dir_);
        ASSERT_FALSE(ref_.tokens.empty());
        ASSERT_EQ(tern_model_open(path_.c_str(), nullptr, &model_, &err), TERN_OK) << err.message;
        tern_model_info info;
        tern_model_get_info(model_, &info);
        ASSERT_EQ(info.n_vocab, ref_.vocab);
    }
    void TearDown() override {
        tern_model_close(model_);
        test_remove_tree(tmp_);
    }
    tern_session *new_session(uint32_t threads, uint32_t max_batch = 0) {
        tern_session_options so;
        tern_session_options_default(&so);
        so.n_threads = threads;
        so.max_batch = max_batch;
        tern_session *s = nullptr;
        tern_error err = {};
        EXPECT_EQ(tern_session_create(model_, &so, &s, &err), TERN_OK) << err.message;
        return s;
    }
    std::vector<float> prefill(uint32_t threads, uint32_t max_batch = 0) {
        tern_session *s = new_session(threads, max_batch);
        std::vector<float> out(ref_.tokens.size() * ref_.vocab);
        tern_error err = {};
        EXPECT_EQ(tern_session_feed(s, ref_.tokens.data(), ref_.tokens.size(), out.data(),
                                    TERN_LOGITS_ALL, &err),
                  TERN_OK)
            << err.message;
        tern_session_destroy(s);
        return out;
    }

    std::string dir_, tmp_, path_;
    Reference ref_;
    tern_model *model_ = nullptr;
};

TEST_P(ModelMatchesReference, Prefill) {
    std::vector<float> out = prefill(1);
    double e = max_row_rel_error(out.data(), ref_.logits.data(), ref_.tokens.size(), ref_.vocab);
    EXPECT_LE(e, GetParam().tolerance) << "worst per-row relative error";
    RecordProperty("max_rel_error", std::to_string(e));
}

TEST_P(ModelMatchesReference, PrefillInSmallChunks) {
    // max_batch 5 splits the 24 tokens into chunks that cross the prompt boundary.
    std::vector<float> out = prefill(2, 5);
    double e = max_row_rel_error(out.data(), ref_.logits.data(), ref_.tokens.size(), ref_.vocab);
    EXPECT_LE(e, GetParam().tolerance);
}

TEST_P(ModelMatchesReference, StepwiseAfterPrompt) {
    // The prompt as one batch, then teacher forcing one token at a time.
    tern_session *s = new_session(1);
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
    double e = max_row_rel_error(out.data(), ref_.logits.data(), n, v);
    EXPECT_LE(e, GetParam().tolerance);
}

TEST_P(ModelMatchesReference, SameLogitsForEveryThreadCount) {
    std::vector<float> one = prefill(1), two = prefill(2), four = prefill(4);
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(one.data(), four.data(), one.size() * sizeof(float)));
}

TEST_P(ModelMatchesReference, TruncateAndReplay) {
    tern_session *s = new_session(1);
    const size_t n = ref_.tokens.size(), v = ref_.vocab;
    std::vector<float> first(v), again(v);
    tern_error err = {};
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), n, first.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    ASSERT_EQ(tern_session_truncate(s, 5, &err), TERN_OK);
    EXPECT_EQ(tern_session_position(s), 5u);
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data() + 5, n - 5, again.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    EXPECT_EQ(0, std::memcmp(first.data(), again.data(), v * sizeof(float)));
    tern_session_destroy(s);
}

TEST_P(ModelMatchesReference, ConcurrentSessionsMatchSequential) {
    std::vector<float> expected = prefill(1);
    std::vector<std::vector<float>> got(3);
    std::vector<std::thread> threads;
    for (auto &g : got) threads.emplace_back([&] { g = prefill(1); });
    for (auto &t : threads) t.join();
    for (auto &g : got) EXPECT_EQ(0, std::memcmp(expected.data(), g.data(), g.size() * sizeof(float)));
}

TEST_P(ModelMatchesReference, BadTokensLeaveSessionUnchanged) {
    tern_session *s = new_session(1);
    tern_error err = {};
    std::vector<float> out(ref_.vocab);
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), 3, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    int32_t bad[2] = {ref_.tokens[3], (int32_t)ref_.vocab};
    EXPECT_EQ(tern_session_feed(s, bad, 2, out.data(), TERN_LOGITS_LAST, &err), TERN_ERR_OUT_OF_RANGE);
    EXPECT_NE(std::string(err.message).find("outside the vocabulary"), std::string::npos) << err.message;
    int32_t negative = -1;
    EXPECT_EQ(tern_session_feed(s, &negative, 1, out.data(), TERN_LOGITS_LAST, &err), TERN_ERR_OUT_OF_RANGE);
    EXPECT_EQ(tern_session_position(s), 3u);
    // The session still works and gives the reference logits for position 3.
    ASSERT_EQ(tern_session_feed(s, &ref_.tokens[3], 1, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    EXPECT_LE(max_row_rel_error(out.data(), &ref_.logits[3 * ref_.vocab], 1, ref_.vocab), GetParam().tolerance);
    tern_session_destroy(s);
}

TEST_P(ModelMatchesReference, ContextFullIsAnError) {
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_ctx = 8;
    tern_session *s = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_session_create(model_, &so, &s, &err), TERN_OK);
    std::vector<float> out(ref_.vocab);
    ASSERT_EQ(tern_session_feed(s, ref_.tokens.data(), 6, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    EXPECT_EQ(tern_session_feed(s, ref_.tokens.data(), 3, out.data(), TERN_LOGITS_LAST, &err),
              TERN_ERR_CONTEXT_FULL);
    EXPECT_EQ(tern_session_position(s), 6u);
    EXPECT_EQ(tern_session_feed(s, ref_.tokens.data(), 2, out.data(), TERN_LOGITS_LAST, &err), TERN_OK);
    tern_session_destroy(s);
    so.n_ctx = 1u << 30;
    EXPECT_EQ(tern_session_create(model_, &so, &s, &err), TERN_ERR_OUT_OF_RANGE);
}

std::vector<ModelCase> model_cases() {
    std::vector<ModelCase> cases;
    const char *shared[] = {"fixtures/hf/llama", "fixtures/hf/qwen2"};
    const char *extra[] = {"tests/fixtures/hf/llama-mqa", "tests/fixtures/hf/llama-mha-oldcfg",
                           "tests/fixtures/hf/llama-headdim", "tests/fixtures/hf/llama-sharded",
                           "tests/fixtures/hf/qwen2-untied"};
    for (auto w : {TERN_WEIGHTS_F32, TERN_WEIGHTS_F16}) {
        double tol = w == TERN_WEIGHTS_F32 ? 1e-4 : 3e-3;
        for (const char *f : shared) cases.push_back({f, true, w, tol});
        for (const char *f : extra) cases.push_back({f, false, w, tol});
    }
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Llama, ModelMatchesReference, testing::ValuesIn(model_cases()), case_name);

}  // namespace
