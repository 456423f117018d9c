// End-to-end model tests: Hugging Face checkpoints converted by tern and run
// through the public API, against the float64 logits transformers computed.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tern.h"
#include "tests/test_reference.h"

namespace {

// The shared tests (tests/test_reference.h) run on every case; these are the
// ones only a KV cache allows: truncation anywhere, a bounded context.

TEST_P(DecoderMatchesReference, TruncateAndReplay) {
    tern_session *s = NewSession(1);
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

TEST_P(DecoderMatchesReference, ConcurrentSessionsMatchSequential) {
    std::vector<float> expected = Prefill(1);
    std::vector<std::vector<float>> got(3);
    std::vector<std::thread> threads;
    for (auto &g : got) threads.emplace_back([&] { g = Prefill(1); });
    for (auto &t : threads) t.join();
    for (auto &g : got) EXPECT_EQ(0, std::memcmp(expected.data(), g.data(), g.size() * sizeof(float)));
}

TEST_P(DecoderMatchesReference, ContextFullIsAnError) {
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

std::vector<DecoderCase> model_cases() {
    std::vector<DecoderCase> cases;
    const char *shared[] = {"fixtures/hf/llama", "fixtures/hf/qwen2"};
    const char *extra[] = {"tests/fixtures/hf/llama-mqa", "tests/fixtures/hf/llama-mha-oldcfg",
                           "tests/fixtures/hf/llama-headdim", "tests/fixtures/hf/llama-sharded",
                           "tests/fixtures/hf/qwen2-untied"};
    for (auto w : {TERN_WEIGHTS_F32, TERN_WEIGHTS_F16}) {
        double tol = w == TERN_WEIGHTS_F32 ? 1e-4 : 3e-3;
        for (const char *f : shared) cases.push_back({f, true, w, tol, TERN_ARCH_LLAMA});
        for (const char *f : extra) cases.push_back({f, false, w, tol, TERN_ARCH_LLAMA});
    }
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Llama, DecoderMatchesReference, testing::ValuesIn(model_cases()),
                         test_decoder_case_name);

}  // namespace
