// Calibration-based quantisation: GPTQ's inverse Cholesky factor and its
// output error against RTN on a synthetic layer, AWQ's scales against RTN,
// the AWQ/SmoothQuant folds leaving the float model unchanged, and end to end
// on stories260K and vit-tiny-in1k: GPTQ and AWQ at q4 g32 closer to the float
// model (KL of the output distributions on data other than the calibration
// data) than RTN at q4 g32.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "converter/awq.h"
#include "converter/gptq.h"
#include "converter/quantize.h"
#include "formats/tern_file.h"
#include "runtime/image.h"
#include "tern.h"
#include "tests/test_util.h"

namespace {

// ---- Plain-loop helpers ----------------------------------------------------------

// Dequantises planes written by tern_quantize_rows / tern_gptq_quantize, from
// docs/format.md 7.2 (symmetric: Q8 int8 q, Q4 nibble - 8; byte j of a Q4
// group holds value j low and value j + g/2 high).
std::vector<float> dequant(const tern_quant_params &p, size_t rows, size_t cols, const uint8_t *values,
                           const uint16_t *scales) {
    std::vector<float> out(rows * cols);
    const size_t g = p.group_size, ng = cols / g;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < ng; k++) {
            const float s = tern_f16_to_f32(scales[r * ng + k]);
            for (size_t j = 0; j < g; j++) {
                int q;
                if (p.encoding == TERN_ENC_Q4) {
                    const uint8_t *b = values + (r * ng + k) * (g / 2);
                    q = (j < g / 2 ? (b[j] & 15) : (b[j - g / 2] >> 4)) - 8;
                } else {
                    q = (int8_t)values[r * cols + k * g + j];
                }
                out[r * cols + k * g + j] = s * (float)q;
            }
        }
    return out;
}

// ||W X^T - Q X^T||^2 over tokens, X [n][cols].
double output_error(const std::vector<float> &w, const std::vector<float> &q, size_t rows, size_t cols,
                    const std::vector<float> &x, size_t n) {
    double e = 0;
    for (size_t t = 0; t < n; t++)
        for (size_t r = 0; r < rows; r++) {
            double a = 0;
            for (size_t c = 0; c < cols; c++) a += ((double)w[r * cols + c] - q[r * cols + c]) * x[t * cols + c];
            e += a * a;
        }
    return e;
}

std::vector<double> hessian(const std::vector<float> &x, size_t n, size_t cols) {
    std::vector<double> h(cols * cols, 0.0);
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < cols; i++)
            for (size_t j = 0; j < cols; j++) h[i * cols + j] += (double)x[t * cols + i] * x[t * cols + j];
    return h;
}

// Correlated inputs: x = A z with a random mixing A and channels of
// different scales, as hidden states are.
std::vector<float> correlated_inputs(std::mt19937 &rng, size_t n, size_t cols, size_t rank) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> a(cols * rank), z(rank), x(n * cols);
    for (auto &v : a) v = nd(rng);
    for (size_t t = 0; t < n; t++) {
        for (auto &v : z) v = nd(rng);
        for (size_t c = 0; c < cols; c++) {
            float s = 0;
            for (size_t k = 0; k < rank; k++) s += a[c * rank + k] * z[k];
            x[t * cols + c] = s * (0.2f + (float)(c % 7)) + 0.1f * nd(rng);
        }
    }
    return x;
}

std::vector<float> random_weights(std::mt19937 &rng, size_t n) {
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> w(n);
    for (auto &v : w) v = nd(rng);
    return w;
}

tern_quant_params qparams(tern_encoding enc, uint32_t g) {
    tern_quant_params p;
    memset(&p, 0, sizeof p);
    p.encoding = enc;
    p.group_size = g;
    return p;
}

std::vector<float> rtn(const tern_quant_params &p, const std::vector<float> &w, size_t rows, size_t cols) {
    std::vector<uint8_t> values(rows * cols), tmp(p.group_size);
    std::vector<uint16_t> scales(rows * cols / p.group_size);
    tern_quantize_rows(&p, rows, cols, w.data(), values.data(), scales.data(), nullptr, tmp.data());
    return dequant(p, rows, cols, values.data(), scales.data());
}

// ---- GPTQ ----------------------------------------------------------------------------

TEST(Gptq, InverseCholeskyFactor) {
    std::mt19937 rng(1);
    const size_t n = 40, m = 200;
    std::vector<float> x = correlated_inputs(rng, m, n, 12);
    std::vector<double> h = hessian(x, m, n);
    for (size_t i = 0; i < n; i++) h[i * n + i] += 1.0;
    std::vector<float> u(n * n);
    tern_error err = {};
    ASSERT_EQ(tern_gptq_inverse_cholesky(h.data(), n, u.data(), &err), TERN_OK) << err.message;
    // U upper with positive diagonal, and U^T U H = I.
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        EXPECT_GT(u[i * n + i], 0.0f);
        for (size_t j = 0; j < i; j++) EXPECT_EQ(u[i * n + j], 0.0f);
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++) {
                double utu = 0;
                for (size_t l = 0; l < n; l++) utu += (double)u[l * n + i] * u[l * n + k];
                s += utu * h[k * n + j];
            }
            worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
        }
    }
    EXPECT_LT(worst, 2e-3);
    // Not positive definite: refused.
    std::vector<double> bad(n * n, 0.0);
    EXPECT_EQ(tern_gptq_inverse_cholesky(bad.data(), n, u.data(), &err), TERN_ERR_INVALID_ARG);
}

struct GptqCase {
    tern_encoding enc;
    uint32_t group;
    int act_order;
};

class GptqVsRtn : public testing::TestWithParam<GptqCase> {};

TEST_P(GptqVsRtn, LowerOutputErrorOnCorrelatedInputs) {
    const GptqCase c = GetParam();
    std::mt19937 rng(7);
    const size_t rows = 48, cols = 256, n = 768;
    std::vector<float> x = correlated_inputs(rng, n, cols, 24);
    std::vector<float> w = random_weights(rng, rows * cols);
    // One input channel never active: GPTQ zeroes its weights.
    for (size_t t = 0; t < n; t++) x[t * cols + 5] = 0.0f;
    std::vector<double> h = hessian(x, n, cols);
    tern_gptq_params gp;
    memset(&gp, 0, sizeof gp);
    gp.quant = qparams(c.enc, c.group);
    gp.act_order = c.act_order;
    const size_t vbytes = c.enc == TERN_ENC_Q4 ? rows * cols / 2 : rows * cols;
    std::vector<uint8_t> values(vbytes);
    std::vector<uint16_t> scales(rows * cols / c.group);
    tern_error err = {};
    ASSERT_EQ(tern_gptq_quantize(&gp, w.data(), rows, cols, h.data(), values.data(), scales.data(), nullptr,
                                 nullptr, &err),
              TERN_OK)
        << err.message;
    std::vector<float> qg = dequant(gp.quant, rows, cols, values.data(), scales.data());
    std::vector<float> qr = rtn(gp.quant, w, rows, cols);
    const double eg = output_error(w, qg, rows, cols, x, n), er = output_error(w, qr, rows, cols, x, n);
    printf("output error: GPTQ %.4g, RTN %.4g (ratio %.3f)\n", eg, er, eg / er);
    EXPECT_LT(eg, 0.8 * er);
    for (size_t r = 0; r < rows; r++) EXPECT_EQ(qg[r * cols + 5], 0.0f);
    // Same planes whatever the thread split.
    pthreadpool_t pool = pthreadpool_create(3);
    std::vector<uint8_t> values2(vbytes);
    std::vector<uint16_t> scales2(scales.size());
    ASSERT_EQ(tern_gptq_quantize(&gp, w.data(), rows, cols, h.data(), values2.data(), scales2.data(), nullptr,
                                 pool, &err),
              TERN_OK);
    pthreadpool_destroy(pool);
    EXPECT_EQ(values, values2);
    EXPECT_EQ(scales, scales2);
}

INSTANTIATE_TEST_SUITE_P(Modes, GptqVsRtn,
                         testing::Values(GptqCase{TERN_ENC_Q4, 32, 0}, GptqCase{TERN_ENC_Q4, 32, 1},
                                         GptqCase{TERN_ENC_Q4, 128, 0}, GptqCase{TERN_ENC_Q8, 32, 0}));

// ---- AWQ ------------------------------------------------------------------------------

TEST(Awq, ScalesLowerOutputErrorThanRtn) {
    std::mt19937 rng(3);
    const size_t rows = 64, cols = 128, n = 512;
    // Inputs with a few salient channels (large mean |x|), as LLM hidden states have.
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(n * cols);
    for (size_t t = 0; t < n; t++)
        for (size_t c = 0; c < cols; c++) x[t * cols + c] = nd(rng) * (c % 16 == 3 ? 20.0f : 1.0f);
    std::vector<float> w = random_weights(rng, rows * cols);
    std::vector<double> h = hessian(x, n, cols), mean(cols, 0.0);
    for (size_t t = 0; t < n; t++)
        for (size_t c = 0; c < cols; c++) mean[c] += std::fabs(x[t * cols + c]) / n;
    const tern_quant_params p = qparams(TERN_ENC_Q4, 32);
    std::vector<size_t> tie(cols);
    for (size_t c = 0; c < cols; c++) tie[c] = c;
    std::vector<float> s(cols);
    const float *ws[1] = {w.data()};
    const size_t rs[1] = {rows};
    double alpha = -1;
    tern_error err = {};
    ASSERT_EQ(tern_awq_search(&p, ws, rs, 1, cols, tie.data(), cols, mean.data(), h.data(), nullptr, s.data(),
                              &alpha, &err),
              TERN_OK);
    EXPECT_GT(alpha, 0.0);
    // Q(W diag(s)) diag(1/s) against plain RTN, measured with plain loops.
    std::vector<float> scaled(rows * cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) scaled[r * cols + c] = w[r * cols + c] * s[c];
    std::vector<float> qa = rtn(p, scaled, rows, cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) qa[r * cols + c] /= s[c];
    const double ea = output_error(w, qa, rows, cols, x, n), er = output_error(w, rtn(p, w, rows, cols), rows, cols, x, n);
    printf("alpha %.2f: output error AWQ %.4g, RTN %.4g\n", alpha, ea, er);
    EXPECT_LT(ea, 0.9 * er);
    // The loss it minimised is this output error.
    EXPECT_NEAR(tern_awq_loss(&p, w.data(), rows, cols, s.data(), h.data(), nullptr), ea, 1e-3 * ea);
}

// ---- End to end -------------------------------------------------------------------------

struct Model {
    tern_model *m = nullptr;
    explicit Model(const std::string &path) {
        tern_error err = {};
        EXPECT_EQ(tern_model_open(path.c_str(), nullptr, &m, &err), TERN_OK) << path << ": " << err.message;
    }
    ~Model() { tern_model_close(m); }
    uint32_t vocab() const {
        tern_model_info info;
        tern_model_get_info(m, &info);
        return info.n_vocab;
    }
    std::vector<float> logits(const std::vector<int32_t> &tokens) const {
        std::vector<float> out(tokens.size() * vocab(), NAN);
        tern_session *s = nullptr;
        tern_error err = {};
        EXPECT_EQ(tern_session_create(m, nullptr, &s, &err), TERN_OK) << err.message;
        if (!s) return out;
        EXPECT_EQ(tern_session_feed(s, tokens.data(), tokens.size(), out.data(), TERN_LOGITS_ALL, &err), TERN_OK)
            << err.message;
        tern_session_destroy(s);
        return out;
    }
    std::vector<float> classify(const std::vector<float> &pixels, size_t n) const {
        std::vector<float> out(n * vocab(), NAN);
        tern_session *s = nullptr;
        tern_error err = {};
        EXPECT_EQ(tern_session_create(m, nullptr, &s, &err), TERN_OK) << err.message;
        if (!s) return out;
        EXPECT_EQ(tern_session_classify(s, pixels.data(), n, out.data(), &err), TERN_OK) << err.message;
        tern_session_destroy(s);
        return out;
    }
};

// Mean over rows of KL(softmax(base) || softmax(model)), in double.
double mean_kl(const std::vector<float> &base, const std::vector<float> &model, size_t v) {
    const size_t rows = base.size() / v;
    double sum = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *b = &base[r * v], *q = &model[r * v];
        double mb = -INFINITY, mq = -INFINITY, zb = 0, zq = 0;
        for (size_t i = 0; i < v; i++) mb = std::max(mb, (double)b[i]), mq = std::max(mq, (double)q[i]);
        for (size_t i = 0; i < v; i++) zb += std::exp(b[i] - mb), zq += std::exp(q[i] - mq);
        double kl = 0;
        for (size_t i = 0; i < v; i++) {
            const double lpb = b[i] - mb - std::log(zb), lpq = q[i] - mq - std::log(zq);
            kl += std::exp(lpb) * (lpb - lpq);
        }
        sum += kl;
    }
    return sum / rows;
}

tern_status convert(const std::string &src, const std::string &dst, tern_weight_type weights, int method,
                    const std::string &calib, const char *tokenizer = nullptr, tern_error *err = nullptr,
                    uint32_t calib_tokens = 0) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = weights;
    o.group_size = 32;
    o.method = (uint8_t)method;
    o.calib_path = calib.empty() ? nullptr : calib.c_str();
    o.calib_tokens = calib_tokens;
    o.tokenizer_path = tokenizer;
    tern_error local = {};
    tern_status st = tern_convert(src.c_str(), dst.c_str(), &o, err ? err : &local);
    if (st != TERN_OK && !err) ADD_FAILURE() << dst << ": " << local.message;
    return st;
}

// Token streams sampled from the float model (TinyStories-like text).
std::vector<int32_t> sample(const Model &m, uint64_t seed, size_t n) {
    std::vector<int32_t> out = {1};
    tern_session *s = nullptr;
    tern_error err = {};
    EXPECT_EQ(tern_session_create(m.m, nullptr, &s, &err), TERN_OK);
    if (!s) return out;
    tern_sampler_options so = {1.0f, 0, 1.0f, seed};
    tern_sampler sampler;
    tern_sampler_init(&sampler, &so);
    const uint32_t v = m.vocab();
    std::vector<float> logits(v);
    std::vector<char> scratch(8 * v);
    tern_session_feed(s, out.data(), 1, logits.data(), TERN_LOGITS_LAST, &err);
    while (out.size() < n) {
        int32_t t = tern_sampler_sample(&sampler, logits.data(), v, scratch.data());
        if (t == 2) t = 1; // a new story
        out.push_back(t);
        if (tern_session_feed(s, &t, 1, logits.data(), TERN_LOGITS_LAST, &err) != TERN_OK) break;
    }
    tern_session_destroy(s);
    return out;
}

class Stories : public testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = test_shared_path("models/stories260K");
        tmp_ = test_temp_dir();
        tok_ = dir_ + "/tok512.bin";
        ASSERT_EQ(convert(dir_ + "/stories260K.bin", tmp_ + "/f32.tern", TERN_WEIGHTS_F32, 0, "", tok_.c_str()), TERN_OK);
        Model f(tmp_ + "/f32.tern");
        // Calibration: 1024 sampled tokens as a .ids file; evaluation: another sample.
        std::string ids;
        for (int32_t t : sample(f, 11, 1024)) ids += std::to_string(t) + " ";
        ASSERT_TRUE(test_write_file(tmp_ + "/calib.ids", ids.data(), ids.size()));
        eval_ = sample(f, 99, 400);
        base_ = f.logits(eval_);
    }
    static void TearDownTestSuite() { test_remove_tree(tmp_); }
    static std::string dir_, tmp_, tok_;
    static std::vector<int32_t> eval_;
    static std::vector<float> base_;
};
std::string Stories::dir_, Stories::tmp_, Stories::tok_;
std::vector<int32_t> Stories::eval_;
std::vector<float> Stories::base_;

TEST_F(Stories, GptqAndAwqQ4CloserToFloatThanRtn) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string calib = tmp_ + "/calib.ids";
    double kl[3];
    const int methods[3] = {TERN_METHOD_RTN, TERN_METHOD_GPTQ, TERN_METHOD_AWQ};
    for (int i = 0; i < 3; i++) {
        const std::string out = tmp_ + "/q4-" + std::to_string(i) + ".tern";
        ASSERT_EQ(convert(dir_ + "/stories260K.bin", out, TERN_WEIGHTS_Q4, methods[i], i ? calib : "", tok_.c_str()),
                  TERN_OK);
        Model m(out);
        kl[i] = mean_kl(base_, m.logits(eval_), m.vocab());
    }
    printf("stories260K q4 g32 KL to float: RTN %.4f, GPTQ %.4f, AWQ %.4f\n", kl[0], kl[1], kl[2]);
    EXPECT_LT(kl[1], kl[0]);
    EXPECT_LT(kl[2], kl[0]);
}

// With float weights AWQ and SmoothQuant only fold their scales: the model's
// function is unchanged while its tensors are not.
TEST_F(Stories, FoldsKeepTheFloatModel) {
    const std::string calib = tmp_ + "/calib.ids";
    for (int method : {TERN_METHOD_AWQ, TERN_METHOD_SMOOTHQUANT}) {
        const std::string out = tmp_ + "/fold.tern";
        ASSERT_EQ(convert(dir_ + "/stories260K.bin", out, TERN_WEIGHTS_F32, method, calib, tok_.c_str()), TERN_OK);
        Model m(out);
        std::vector<float> got = m.logits(eval_);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < got.size(); i++) {
            worst = std::max(worst, (double)std::fabs(got[i] - base_[i]));
            scale = std::max(scale, (double)std::fabs(base_[i]));
        }
        EXPECT_LT(worst, 1e-4 * scale) << "method " << method;
        // The norms did change.
        tern_file a, b;
        tern_error err = {};
        ASSERT_EQ(tern_file_open((tmp_ + "/f32.tern").c_str(), 0, &a, &err), TERN_OK);
        ASSERT_EQ(tern_file_open(out.c_str(), 0, &b, &err), TERN_OK);
        tern_tensor_view va, vb;
        ASSERT_EQ(tern_file_get_tensor(&a, "blk.0.attn_norm.weight", &va, &err), TERN_OK);
        ASSERT_EQ(tern_file_get_tensor(&b, "blk.0.attn_norm.weight", &vb, &err), TERN_OK);
        EXPECT_NE(memcmp(va.planes[0], vb.planes[0], va.plane_sizes[0]), 0) << "method " << method;
        tern_file_close(&a);
        tern_file_close(&b);
    }
}

TEST_F(Stories, SmoothQuantQ8StaysClose) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string out = tmp_ + "/sq8.tern";
    ASSERT_EQ(convert(dir_ + "/stories260K.bin", out, TERN_WEIGHTS_Q8, TERN_METHOD_SMOOTHQUANT, tmp_ + "/calib.ids",
                      tok_.c_str()),
              TERN_OK);
    Model m(out);
    const double kl = mean_kl(base_, m.logits(eval_), m.vocab());
    printf("stories260K smoothquant q8 KL %.5f\n", kl);
    EXPECT_LT(kl, 0.01);
}

TEST_F(Stories, Errors) {
    tern_error err = {};
    const std::string src = dir_ + "/stories260K.bin", out = tmp_ + "/e.tern";
    EXPECT_EQ(convert(src, out, TERN_WEIGHTS_Q4, TERN_METHOD_GPTQ, "", tok_.c_str(), &err), TERN_ERR_INVALID_ARG);
    EXPECT_NE(std::string(err.message).find("--calib"), std::string::npos) << err.message;
    EXPECT_EQ(convert(src, out, TERN_WEIGHTS_F16, TERN_METHOD_GPTQ, tmp_ + "/calib.ids", tok_.c_str(), &err),
              TERN_ERR_INVALID_ARG);
    EXPECT_EQ(convert(src, out, TERN_WEIGHTS_Q4, TERN_METHOD_GPTQ, tmp_ + "/missing.txt", tok_.c_str(), &err),
              TERN_ERR_IO);
    EXPECT_NE(convert(src, out, TERN_WEIGHTS_Q4, 9, tmp_ + "/calib.ids", tok_.c_str(), &err), TERN_OK);
    struct stat sb;
    EXPECT_NE(stat(out.c_str(), &sb), 0); // nothing left behind
    // Recurrent models: refused with a clear message.
    const std::string rwkv = test_shared_path("models/rwkv-cpp/tiny-rwkv-4v0-660K-FP32.bin");
    EXPECT_EQ(convert(rwkv, out, TERN_WEIGHTS_Q4, TERN_METHOD_GPTQ, tmp_ + "/calib.ids", nullptr, &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(err.message).find("Llama"), std::string::npos) << err.message;
    // The CLI's flags.
    std::string cmd = test_program_command("cli/tern") + " convert " + src + " --tokenizer " + tok_ + " -o " + out +
                      " --weights q4 --method nope --calib x 2>/dev/null";
    int status = system(cmd.c_str());
    EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2);
    cmd = test_program_command("cli/tern") + " convert " + src + " --tokenizer " + tok_ + " -o " + out +
          " --weights q4 --method gptq --calib " + tmp_ + "/calib.ids --calib-tokens 512 --act-order 2>/dev/null";
    status = system(cmd.c_str());
    EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    EXPECT_EQ(stat(out.c_str(), &sb), 0);
}

// ---- ViT: calibration images distinct from the evaluation images --------------------------

TEST(Vit, GptqAndAwqQ4CloserToFloatThanRtn) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string dir = test_shared_path("models/vit-tiny-in1k"), tmp = test_temp_dir();
    // Calibrate on the 7 non-ImageNet images and the first ImageNet one; evaluate on the other 16.
    const char *calib_names[] = {"apple.jpg",   "armadillo.jpg", "cheetah.jpg", "coconut.jpg",
                                 "giraffe.jpg", "kiwi.jpg",      "tench.jpg",   "n01514668_10054.JPEG"};
    ASSERT_EQ(mkdir((tmp + "/calib").c_str(), 0755), 0);
    for (const char *n : calib_names)
        ASSERT_EQ(symlink((dir + "/images/" + n).c_str(), (tmp + "/calib/" + n).c_str()), 0);
    const char *eval_names[] = {"n01687978_10071.JPEG", "n01735189_11267.JPEG", "n01847000_10087.JPEG",
                                "n01855032_1046.JPEG",  "n02018795_102.JPEG",   "n02025239_1005.JPEG",
                                "n02113978_10037.JPEG", "n02125311_10473.JPEG", "n02127052_10040.JPEG",
                                "n02231487_1002.JPEG",  "n02412080_10216.JPEG", "n02493509_10045.JPEG",
                                "n03032252_101298.JPEG", "n03062245_1030.JPEG", "n03240683_10240.JPEG",
                                "n03764736_10075.JPEG"};
    ASSERT_EQ(convert(dir, tmp + "/f32.tern", TERN_WEIGHTS_F32, 0, ""), TERN_OK);
    Model f(tmp + "/f32.tern");
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(f.m, &ic), TERN_OK);
    const size_t per = (size_t)ic.channels * ic.height * ic.width, n = 16;
    std::vector<float> pixels(n * per);
    for (size_t i = 0; i < n; i++) {
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_load((dir + "/images/" + eval_names[i]).c_str(), &img, &err), TERN_OK);
        ASSERT_EQ(tern_image_preprocess(&img, &ic, pixels.data() + i * per, &err), TERN_OK);
        tern_image_free(&img);
    }
    std::vector<float> base = f.classify(pixels, n);
    double kl[3];
    const int methods[3] = {TERN_METHOD_RTN, TERN_METHOD_GPTQ, TERN_METHOD_AWQ};
    for (int i = 0; i < 3; i++) {
        const std::string out = tmp + "/q4-" + std::to_string(i) + ".tern";
        ASSERT_EQ(convert(dir, out, TERN_WEIGHTS_Q4, methods[i], i ? tmp + "/calib" : ""), TERN_OK);
        Model m(out);
        kl[i] = mean_kl(base, m.classify(pixels, n), m.vocab());
    }
    printf("vit-tiny q4 g32 KL to float: RTN %.4f, GPTQ %.4f, AWQ %.4f\n", kl[0], kl[1], kl[2]);
    EXPECT_LT(kl[1], kl[0]);
    EXPECT_LT(kl[2], kl[0]);
    test_remove_tree(tmp);
}

} // namespace
