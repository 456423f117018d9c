// Quality tools of the CLI: `tern perplexity --kl-base` and `tern classify
// --base`. Their KL divergence, top-1 agreement and perplexity are recomputed
// here with plain loops from the logits the API gives for the same tokens
// (or pixels), so a wrong window, row or formula in the CLI shows.
#include <gtest/gtest.h>

#include <json-c/json.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/image.h"
#include "tests/test_reference.h"

namespace {

using CliRun = TestCliRun;

CliRun run_tern(const std::string &args, bool stderr_too = false) { return test_run_tern(args, stderr_too); }

// One JSON object, parsed by json-c; owns the tree.
struct Json {
    json_object *root = nullptr;
    explicit Json(const std::string &s) { root = json_tokener_parse(s.c_str()); }
    ~Json() { json_object_put(root); }
    Json(const Json &) = delete;
    Json &operator=(const Json &) = delete;
    bool ok() const { return root && json_object_is_type(root, json_type_object); }
    bool has(const char *key) const { return json_object_object_get_ex(root, key, nullptr); }
    double num(const char *key) const {
        json_object *v = nullptr;
        if (!json_object_object_get_ex(root, key, &v)) return NAN;
        return json_object_get_double(v);
    }
    json_object *get(const char *key) const {
        json_object *v = nullptr;
        json_object_object_get_ex(root, key, &v);
        return v;
    }
};

// Log-probabilities of a row of logits, in double.
std::vector<double> log_softmax(const float *row, size_t n) {
    double mx = row[0];
    for (size_t v = 1; v < n; v++) mx = std::max(mx, (double)row[v]);
    double z = 0;
    for (size_t v = 0; v < n; v++) z += std::exp((double)row[v] - mx);
    std::vector<double> out(n);
    for (size_t v = 0; v < n; v++) out[v] = (double)row[v] - mx - std::log(z);
    return out;
}

size_t argmax(const float *row, size_t n) {
    return (size_t)(std::max_element(row, row + n) - row);
}

// What the quality figures should be over a set of (base row, model row,
// target) triples, computed with plain loops.
struct Expected {
    std::vector<double> kl;
    double nll = 0, base_nll = 0;
    size_t agree = 0;

    void add(const float *base, const float *model, size_t n, int32_t target) {
        std::vector<double> lb = log_softmax(base, n), lm = log_softmax(model, n);
        double k = 0;
        for (size_t v = 0; v < n; v++) k += std::exp(lb[v]) * (lb[v] - lm[v]);
        kl.push_back(k);
        if (target >= 0) {
            nll -= lm[target];
            base_nll -= lb[target];
        }
        agree += argmax(base, n) == argmax(model, n);
    }
    double mean_kl() const {
        double s = 0;
        for (double k : kl) s += k;
        return s / kl.size();
    }
};

class Quality : public testing::Test {
  protected:
    static void SetUpTestSuite() {
        tmp_ = test_temp_dir();
        const std::string s = test_shared_path("models/stories260K");
        tok_ = s + "/tok512.bin";
        f32_ = tmp_ + "/stories.f32.tern";
        q4_ = tmp_ + "/stories.q4.tern";
        for (auto [out, w] : {std::pair{f32_, "f32"}, std::pair{q4_, "q4"}}) {
            CliRun r = run_tern("convert " + s + "/stories260K.bin --tokenizer " + tok_ + " -o " + out +
                                 " --weights " + w,
                             true);
            ASSERT_EQ(r.exit_code, 0) << r.out;
        }
        vit_f32_ = tmp_ + "/vit.f32.tern";
        vit_q4_ = tmp_ + "/vit.q4.tern";
        for (auto [out, w] : {std::pair{vit_f32_, "f32"}, std::pair{vit_q4_, "q4"}}) {
            CliRun r = run_tern("convert " + test_shared_path("fixtures/hf/vit") + " -o " + out + " --weights " + w, true);
            ASSERT_EQ(r.exit_code, 0) << r.out;
        }
        text_ = tmp_ + "/text.txt";
        const std::string t =
            "Once upon a time, there was a little dog named Max. Max loved to run in the park with his "
            "friend Tom. One day, they found a big red ball under a tree. Tom said, \"Let's play!\" They "
            "played all day until the sun went down. Then they went home, tired and happy.";
        ASSERT_TRUE(test_write_file(text_, t.data(), t.size()));
    }
    static void TearDownTestSuite() { test_remove_tree(tmp_); }

    // The ids the CLI scores: the text tokenized without BOS.
    static std::vector<int32_t> tokens(tern_model *m) {
        std::vector<unsigned char> t = test_read_file(text_);
        std::vector<int32_t> ids(t.size() + 8);
        size_t n = 0;
        tern_error err = {};
        EXPECT_EQ(tern_model_tokenize(m, (const char *)t.data(), t.size(), 0, 1, ids.data(), ids.size(), &n, &err),
                  TERN_OK)
            << err.message;
        ids.resize(n);
        return ids;
    }

    static std::string tmp_, tok_, f32_, q4_, vit_f32_, vit_q4_, text_;
};
std::string Quality::tmp_, Quality::tok_, Quality::f32_, Quality::q4_, Quality::vit_f32_, Quality::vit_q4_,
    Quality::text_;

TEST_F(Quality, KlOfAModelAgainstItselfIsZero) {
    CliRun r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + q4_ + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json j(r.out);
    ASSERT_TRUE(j.ok()) << r.out;
    for (const char *k : {"ppl", "nll", "kl", "top1_agreement", "base_ppl", "kl_p99", "kl_max", "kl_se"})
        EXPECT_TRUE(j.has(k)) << k << " missing in " << r.out;
    EXPECT_EQ(j.num("kl"), 0.0) << r.out;
    EXPECT_EQ(j.num("kl_max"), 0.0) << r.out;
    EXPECT_EQ(j.num("top1_agreement"), 1.0) << r.out;
    EXPECT_EQ(j.num("ppl"), j.num("base_ppl")) << r.out;
    // Without --kl-base the object has no KL fields.
    r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json plain(r.out);
    ASSERT_TRUE(plain.ok()) << r.out;
    EXPECT_FALSE(plain.has("kl")) << r.out;
}

// One window (the text is shorter than --ctx): BOS + ids, every row but the
// last scored.
TEST_F(Quality, KlOfQ4AgainstFloatMatchesPlainLoops) {
    CliRun r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + f32_ + " --ctx 512 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json j(r.out);
    ASSERT_TRUE(j.ok()) << r.out;

    tern_model *m, *b;
    tern_error err = {};
    ASSERT_EQ(tern_model_open(q4_.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_model_open(f32_.c_str(), nullptr, &b, &err), TERN_OK) << err.message;
    tern_model_info info;
    tern_model_get_info(m, &info);
    std::vector<int32_t> ids = tokens(m);
    ASSERT_GT(ids.size(), 20u);
    ids.insert(ids.begin(), info.bos_token);
    const size_t V = info.n_vocab;
    std::vector<float> lm = test_run_logits(m, ids, V, 1), lb = test_run_logits(b, ids, V, 1);
    Expected e;
    for (size_t r = 0; r + 1 < ids.size(); r++) e.add(&lb[r * V], &lm[r * V], V, ids[r + 1]);
    const double n = (double)e.kl.size();
    EXPECT_EQ(j.num("tokens"), n);
    EXPECT_GT(e.mean_kl(), 1e-4) << "q4 should differ from f32";
    EXPECT_NEAR(j.num("kl"), e.mean_kl(), 1e-5 * e.mean_kl() + 1e-7) << r.out;
    EXPECT_NEAR(j.num("kl_max"), *std::max_element(e.kl.begin(), e.kl.end()), 1e-5) << r.out;
    EXPECT_NEAR(j.num("top1_agreement"), e.agree / n, 1e-6) << r.out;
    EXPECT_NEAR(j.num("nll"), e.nll / n, 1e-5) << r.out;
    EXPECT_NEAR(j.num("base_nll"), e.base_nll / n, 1e-5) << r.out;
    EXPECT_NEAR(j.num("ppl"), std::exp(e.nll / n), 1e-4) << r.out;
    EXPECT_LE(j.num("kl_p99"), j.num("kl_max") + 1e-9);
    tern_model_close(m);
    tern_model_close(b);
}

// llama.cpp's chunks: each chunk of --ctx tokens starts with BOS (when the
// tokenizer adds one) and only its second half is scored.
TEST_F(Quality, KlInChunksScoresTheSameRowsAsPerplexity) {
    const size_t ctx = 16;
    CliRun r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + f32_ + " --ctx 16 --chunks --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json j(r.out);
    ASSERT_TRUE(j.ok()) << r.out;

    tern_model *m, *b;
    tern_error err = {};
    ASSERT_EQ(tern_model_open(q4_.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_model_open(f32_.c_str(), nullptr, &b, &err), TERN_OK) << err.message;
    tern_model_info info;
    tern_model_get_info(m, &info);
    const std::vector<int32_t> ids = tokens(m);
    const size_t V = info.n_vocab;
    Expected e;
    for (size_t c = 0; (c + 1) * ctx <= ids.size(); c++) {
        std::vector<int32_t> w(ids.begin() + c * ctx, ids.begin() + (c + 1) * ctx);
        if (info.adds_bos && info.bos_token >= 0) w[0] = info.bos_token;
        std::vector<float> lm = test_run_logits(m, w, V, 1), lb = test_run_logits(b, w, V, 1);
        for (size_t row = ctx / 2; row + 1 < ctx; row++) e.add(&lb[row * V], &lm[row * V], V, w[row + 1]);
    }
    ASSERT_GE(e.kl.size(), 2 * (ctx / 2 - 1));
    EXPECT_EQ(j.num("tokens"), (double)e.kl.size()) << r.out;
    EXPECT_NEAR(j.num("kl"), e.mean_kl(), 1e-5 * e.mean_kl() + 1e-7) << r.out;
    EXPECT_NEAR(j.num("top1_agreement"), (double)e.agree / e.kl.size(), 1e-6) << r.out;
    EXPECT_NEAR(j.num("nll"), e.nll / e.kl.size(), 1e-5) << r.out;
    tern_model_close(m);
    tern_model_close(b);
}

TEST_F(Quality, KlBaseWithAnotherVocabularyIsRefused) {
    // stories260K cut to a vocabulary of 256: llama2.c's header says 256 and
    // the embedding (the first tensor, shared with the classifier) loses its
    // last 256 rows; the tokenizer keeps its first 256 tokens.
    std::vector<unsigned char> bin = test_read_file(test_shared_path("models/stories260K/stories260K.bin"));
    ASSERT_GT(bin.size(), 28u);
    int32_t hdr[7];
    std::memcpy(hdr, bin.data(), sizeof hdr);
    ASSERT_EQ(hdr[5], 512);
    const size_t dim = (size_t)hdr[0];
    hdr[5] = 256;
    std::vector<unsigned char> cut(bin.begin(), bin.begin() + 28 + 256 * dim * 4);
    std::memcpy(cut.data(), hdr, sizeof hdr);
    cut.insert(cut.end(), bin.begin() + 28 + 512 * dim * 4, bin.end());
    const std::string bin256 = tmp_ + "/stories256.bin", m256 = tmp_ + "/stories256.tern";
    ASSERT_TRUE(test_write_file(bin256, cut.data(), cut.size()));
    CliRun r = run_tern("convert " + bin256 + " --tokenizer " + tok_ + " -o " + m256 + " --weights f32", true);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + m256 + " --json", true);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("same vocabulary"), std::string::npos) << r.out;

    // Same size, another tokenizer: every merged piece spelled with 'E' for
    // 'e', so the two split the text differently.
    std::vector<unsigned char> tok = test_read_file(tok_);
    size_t at = 4;
    for (int i = 0; i < 512 && at + 8 <= tok.size(); i++) {
        int32_t len;
        std::memcpy(&len, &tok[at + 4], 4);
        at += 8;
        if (i >= 259)
            for (int32_t k = 0; k < len; k++)
                if (tok[at + k] == 'e') tok[at + k] = 'E';
        at += (size_t)len;
    }
    const std::string tok2 = tmp_ + "/tok512E.bin", other = tmp_ + "/stories.E.tern";
    ASSERT_TRUE(test_write_file(tok2, tok.data(), tok.size()));
    r = run_tern("convert " + test_shared_path("models/stories260K/stories260K.bin") + " --tokenizer " + tok2 +
                     " -o " + other + " --weights f32",
                 true);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + other, true);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("split the text differently"), std::string::npos) << r.out;
    // A base that cannot be opened is an error too, not a crash.
    r = run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base " + tmp_ + "/none.tern", true);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_EQ(run_tern("perplexity -t 1 " + q4_ + " -f " + text_ + " --kl-base").exit_code, 2);
}

const char *const kImages[] = {"apple.jpg", "cheetah.jpg", "kiwi.jpg", "tench.jpg", "n01514668_10054.JPEG"};

std::string image_args() {
    std::string s;
    for (const char *i : kImages) s += " " + test_shared_path("models/vit-tiny-in1k/images/") + i;
    return s;
}

// The class logits of each image of kImages, through the API.
std::vector<float> classify(const std::string &path, size_t *classes) {
    tern_model *m;
    tern_error err = {};
    EXPECT_EQ(tern_model_open(path.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    tern_model_info info;
    tern_model_get_info(m, &info);
    tern_image_config ic;
    EXPECT_EQ(tern_model_image_config(m, &ic), TERN_OK);
    const size_t per = (size_t)ic.channels * ic.height * ic.width, n = std::size(kImages);
    std::vector<float> pixels(n * per), logits(n * info.n_vocab);
    for (size_t i = 0; i < n; i++) {
        tern_image img;
        std::string file = test_shared_path("models/vit-tiny-in1k/images/") + kImages[i];
        EXPECT_EQ(tern_image_load(file.c_str(), &img, &err), TERN_OK) << err.message;
        EXPECT_EQ(tern_image_preprocess(&img, &ic, &pixels[i * per], &err), TERN_OK) << err.message;
        tern_image_free(&img);
    }
    tern_session *s = test_session_create(m, 1);
    EXPECT_EQ(tern_session_classify(s, pixels.data(), n, logits.data(), &err), TERN_OK) << err.message;
    tern_session_destroy(s);
    tern_model_close(m);
    *classes = info.n_vocab;
    return logits;
}

TEST_F(Quality, ClassifyAgreementMatchesPlainLoops) {
    CliRun r = run_tern("classify -t 1 " + vit_q4_ + " --base " + vit_f32_ + " --json" + image_args());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json j(r.out);
    ASSERT_TRUE(j.ok()) << r.out;
    size_t V, V2;
    std::vector<float> lm = classify(vit_q4_, &V), lb = classify(vit_f32_, &V2);
    ASSERT_EQ(V, V2);
    Expected e;
    for (size_t i = 0; i < std::size(kImages); i++) e.add(&lb[i * V], &lm[i * V], V, -1);
    EXPECT_EQ(j.num("n"), (double)std::size(kImages)) << r.out;
    EXPECT_GT(e.mean_kl(), 0.0);
    EXPECT_NEAR(j.num("kl"), e.mean_kl(), 1e-5 * e.mean_kl() + 1e-8) << r.out;
    EXPECT_NEAR(j.num("top1_agreement"), (double)e.agree / std::size(kImages), 1e-6) << r.out;
    json_object *images = j.get("images");
    ASSERT_TRUE(images && json_object_is_type(images, json_type_array)) << r.out;
    ASSERT_EQ(json_object_array_length(images), std::size(kImages));
    for (size_t i = 0; i < std::size(kImages); i++) {
        json_object *o = json_object_array_get_idx(images, i), *v;
        ASSERT_TRUE(json_object_object_get_ex(o, "top1", &v));
        EXPECT_EQ((size_t)json_object_get_int(v), argmax(&lm[i * V], V));
        ASSERT_TRUE(json_object_object_get_ex(o, "base_top1", &v));
        EXPECT_EQ((size_t)json_object_get_int(v), argmax(&lb[i * V], V));
        ASSERT_TRUE(json_object_object_get_ex(o, "kl", &v));
        EXPECT_NEAR(json_object_get_double(v), e.kl[i], 1e-5 * e.kl[i] + 1e-8);
    }

    // Against itself: KL 0 and full agreement; the table form has a summary.
    r = run_tern("classify -t 1 " + vit_q4_ + " --base " + vit_q4_ + " --json" + image_args());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    Json self(r.out);
    ASSERT_TRUE(self.ok()) << r.out;
    EXPECT_EQ(self.num("kl"), 0.0);
    EXPECT_EQ(self.num("top1_agreement"), 1.0);
    r = run_tern("classify -t 1 " + vit_q4_ + " --base " + vit_f32_ + image_args());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("agreement with"), std::string::npos) << r.out;

    // A base that is not a vision model, or has other classes, is refused.
    r = run_tern("classify -t 1 " + vit_q4_ + " --base " + f32_ + image_args(), true);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("does not take images"), std::string::npos) << r.out;
    const std::string in1k = tmp_ + "/vit-in1k.tern";
    r = run_tern("convert " + test_shared_path("models/vit-tiny-in1k") + " -o " + in1k + " --weights q8", true);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    r = run_tern("classify -t 1 " + vit_q4_ + " --base " + in1k + image_args(), true);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("same classes"), std::string::npos) << r.out;
}

}  // namespace
