// Calibration-based quantisation: GPTQ's inverse Cholesky factor and its
// output error against RTN on a synthetic layer, AWQ's scales against RTN,
// the AWQ/SmoothQuant folds leaving the float model unchanged, and end to end
// on stories260K and vit-tiny-in1k: GPTQ and AWQ at q4 g32 closer to the float
// model (KL of the output distributions on data other than the calibration
// data) than RTN at q4 g32; Wanda and SparseGPT N:M pruning wired to the
// calibration (masks, errors, SparseGPT closer to the float model than magnitude).
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "converter/awq.h"
#include "converter/gptq.h"
#include "converter/quantize.h"
#include "formats/npy.h"
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

// A positive definite n x n Hessian of m correlated input rows, plus I.
std::vector<double> test_hessian(uint32_t seed, size_t n, size_t m, size_t factors) {
    std::mt19937 rng(seed);
    std::vector<float> x = correlated_inputs(rng, m, n, factors);
    std::vector<double> h = hessian(x, m, n);
    for (size_t i = 0; i < n; i++) h[i * n + i] += 1.0;
    return h;
}

TEST(Gptq, InverseCholeskyFactor) {
    const size_t n = 40;
    std::vector<double> h = test_hessian(1, n, 200, 12);
    std::vector<float> u(n * n);
    tern_error err = {};
    ASSERT_EQ(tern_gptq_inverse_cholesky(h.data(), n, u.data(), nullptr, nullptr, &err), TERN_OK) << err.message;
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
    EXPECT_EQ(tern_gptq_inverse_cholesky(bad.data(), n, u.data(), nullptr, nullptr, &err), TERN_ERR_INVALID_ARG);
}

// The double factor, on a Hessian large enough that the factorisation and
// the inverse split over threads: the same numbers as on one thread, and as
// the float factor rounded.
TEST(Gptq, InverseCholeskyThreadsAndDouble) {
    const size_t n = 300;
    std::vector<double> h = test_hessian(2, n, 400, 24);
    std::vector<double> one(n * n), threaded(n * n);
    std::vector<float> f(n * n);
    tern_error err = {};
    ASSERT_EQ(tern_gptq_inverse_cholesky(h.data(), n, nullptr, one.data(), nullptr, &err), TERN_OK) << err.message;
    pthreadpool_t pool = pthreadpool_create(3);
    ASSERT_NE(pool, nullptr);
    ASSERT_EQ(tern_gptq_inverse_cholesky(h.data(), n, nullptr, threaded.data(), pool, &err), TERN_OK);
    ASSERT_EQ(tern_gptq_inverse_cholesky(h.data(), n, f.data(), nullptr, pool, &err), TERN_OK);
    pthreadpool_destroy(pool);
    EXPECT_TRUE(one == threaded);
    double worst = 0;
    for (size_t i = 0; i < n * n; i++) {
        EXPECT_EQ(f[i], (float)one[i]) << i;
        if (i % n < i / n) {
            EXPECT_EQ(one[i], 0.0);
        }
        worst = std::max(worst, std::fabs(one[i]));
    }
    EXPECT_GT(worst, 0.0);
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

// tern_convert with o and the calibration inputs; without err, a failure is
// a test failure.
tern_status convert_with(tern_convert_options &o, const std::string &src, const std::string &dst,
                         const std::string &calib, const char *tokenizer, uint32_t calib_tokens, tern_error *err) {
    o.calib_path = calib.empty() ? nullptr : calib.c_str();
    o.calib_tokens = calib_tokens;
    // A ViT calibration image is seen as 4 views (the default) natively; the
    // sanitizer runs, 10-20x slower, check the same code on one view each.
    o.calib_views = TERN_TEST_SANITIZED ? 1 : 0;
    o.tokenizer_path = tokenizer;
    tern_error local = {};
    tern_status st = tern_convert(src.c_str(), dst.c_str(), &o, err ? err : &local);
    if (st != TERN_OK && !err) ADD_FAILURE() << dst << ": " << local.message;
    return st;
}

tern_status convert(const std::string &src, const std::string &dst, tern_weight_type weights, int method,
                    const std::string &calib, const char *tokenizer = nullptr, tern_error *err = nullptr,
                    uint32_t calib_tokens = 0) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = weights;
    o.group_size = 32;
    o.method = (uint8_t)method;
    return convert_with(o, src, dst, calib, tokenizer, calib_tokens, err);
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

// Statistics of every stage a run calibrates; with `replace`, each linear
// is replaced by its weights rounded to 1/8 (a stand-in for GPTQ's), so that
// later stages see changed inputs.
struct RecordedStats {
    bool replace = false;
    std::map<std::string, std::vector<double>> stats; // n, sum_sq, sum_abs, max_abs, hessian
    std::deque<std::vector<float>> replacements;
};

tern_status record_stats(void *user, tern_calib_stage *stage, tern_error *) {
    RecordedStats *r = (RecordedStats *)user;
    for (size_t i = 0; i < stage->n_linears; i++) {
        tern_calib_linear *L = &stage->linears[i];
        const tern_calib_stats *st = L->stats;
        std::vector<double> &v = r->stats[L->name];
        v.push_back((double)st->n);
        v.insert(v.end(), st->sum_sq, st->sum_sq + st->cols);
        v.insert(v.end(), st->sum_abs, st->sum_abs + st->cols);
        v.insert(v.end(), st->max_abs, st->max_abs + st->cols);
        if (st->hessian) v.insert(v.end(), st->hessian, st->hessian + st->cols * st->cols);
        if (!r->replace) continue;
        r->replacements.emplace_back(L->weight, L->weight + L->rows * L->cols);
        for (float &w : r->replacements.back()) w = std::round(w * 8) / 8;
        memset(&L->replacement, 0, sizeof L->replacement);
        L->replacement.encoding = TERN_ENC_F32;
        L->replacement.layout = TERN_LAYOUT_ROW_MAJOR;
        L->replacement.rows = L->rows;
        L->replacement.cols = L->cols;
        L->replacement.values = r->replacements.back().data();
        L->has_replacement = 1;
    }
    return TERN_OK;
}

// Calibration keeps the residual stream between passes and resumes each pass
// at the block it holds (converter/calib.c); the statistics must be exactly
// those of passes that run the whole model, with and without replacements.
void expect_stream_reuse_exact(const std::string &model, tern_calib_options o, const char *what) {
    for (int sequential : {1, 0}) {
        RecordedStats whole, resumed;
        whole.replace = resumed.replace = sequential;
        o.sequential = sequential;
        o.memory_budget = sequential ? 0 : 1; // one stage per pass either way
        tern_error err = {};
        o.full_passes = 1;
        ASSERT_EQ(tern_calib_run(model.c_str(), &o, record_stats, &whole, &err), TERN_OK) << err.message;
        o.full_passes = 0;
        ASSERT_EQ(tern_calib_run(model.c_str(), &o, record_stats, &resumed, &err), TERN_OK) << err.message;
        ASSERT_GT(whole.stats.size(), 3u) << what;
        EXPECT_TRUE(whole.stats == resumed.stats) << what << ", sequential " << sequential;
    }
}

TEST_F(Stories, CalibrationResumesFromTheKeptStream) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    tern_calib_options o;
    memset(&o, 0, sizeof o);
    const std::string calib = tmp_ + "/calib.ids";
    o.data_path = calib.c_str();
    o.max_tokens = 300; // windows of 256 and a short one
    o.need_hessian = 1;
    o.first_stage = 1;
    o.n_threads = 1;
    expect_stream_reuse_exact(tmp_ + "/f32.tern", o, "stories260K");
}

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
    for (const char *threads : {" -t 0", " -t x", " -t"}) {
        status = system((test_program_command("cli/tern") + " convert " + src + " --tokenizer " + tok_ + " -o " + out +
                         " --weights q4 --method gptq --calib " + tmp_ + "/calib.ids" + threads + " 2>/dev/null")
                            .c_str());
        EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2) << threads;
    }
    cmd = test_program_command("cli/tern") + " convert " + src + " --tokenizer " + tok_ + " -o " + out +
          " --weights q4 --method gptq --calib " + tmp_ + "/calib.ids --calib-tokens 512 --act-order -t 2 2>/dev/null";
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
    // AWQ needs the views: on one view per image (sanitizer runs) its scales
    // overfit the 8 images (KL 0.0410 vs RTN 0.0397 when measured).
    EXPECT_LT(kl[2], TERN_TEST_SANITIZED ? 1.1 * kl[0] : kl[0]);
    test_remove_tree(tmp);
}

// The calibration views of an image folder (converter/calib.c): the image,
// its mirror, then random resized crops. Checked on the patch embedding's
// input statistics: per input channel (c, py, px) of a 16x16 patch, the
// mirror's sum of |x| over the 14x14 patches is the original's at
// (c, py, 15 - px), because 224 / 16 patches mirror onto each other.
struct PatchStats {
    uint64_t n = 0;
    std::vector<double> sum_abs;
};

tern_status record_patch_stats(void *user, tern_calib_stage *stage, tern_error *) {
    auto *out = static_cast<PatchStats *>(user);
    if (stage->index != 0 || stage->n_linears == 0) return TERN_OK;
    const tern_calib_stats *st = stage->linears[0].stats;
    out->n = st->n;
    out->sum_abs.assign(st->sum_abs, st->sum_abs + st->cols);
    return TERN_OK;
}

TEST(Vit, CalibrationResumesFromTheKeptStream) {
    if (test_emulated()) GTEST_SKIP() << "whole-model runs: native and sanitizer runs only";
    const std::string dir = test_shared_path("models/vit-tiny-in1k"), tmp = test_temp_dir();
    const std::string calib = tmp + "/calib";
    ASSERT_EQ(mkdir(calib.c_str(), 0755), 0);
    ASSERT_EQ(symlink((dir + "/images/kiwi.jpg").c_str(), (calib + "/kiwi.jpg").c_str()), 0);
    ASSERT_EQ(convert(dir, tmp + "/f32.tern", TERN_WEIGHTS_F32, 0, ""), TERN_OK);
    tern_calib_options o;
    memset(&o, 0, sizeof o);
    o.data_path = calib.c_str();
    o.image_views = 1;
    o.first_stage = 0; // the patch embedding too
    o.n_threads = 2;
    expect_stream_reuse_exact(tmp + "/f32.tern", o, "vit-tiny");
    test_remove_tree(tmp);
}

TEST(Vit, CalibrationViewsMirrorAndCrop) {
    if (test_emulated()) GTEST_SKIP() << "whole-model runs: native and sanitizer runs only";
    const std::string dir = test_shared_path("models/vit-tiny-in1k"), tmp = test_temp_dir();
    const std::string calib = tmp + "/calib";
    ASSERT_EQ(mkdir((tmp + "/calib").c_str(), 0755), 0);
    ASSERT_EQ(symlink((dir + "/images/kiwi.jpg").c_str(), (tmp + "/calib/kiwi.jpg").c_str()), 0);
    ASSERT_EQ(convert(dir, tmp + "/f32.tern", TERN_WEIGHTS_F32, 0, ""), TERN_OK);
    PatchStats s[3];
    for (uint32_t v = 1; v <= 3; v++) {
        tern_calib_options o;
        memset(&o, 0, sizeof o);
        o.data_path = calib.c_str();
        o.max_tokens = 1; // one image
        o.image_views = v;
        o.n_threads = 1;
        tern_error err = {};
        ASSERT_EQ(tern_calib_run((tmp + "/f32.tern").c_str(), &o, record_patch_stats, &s[v - 1], &err), TERN_OK)
            << err.message;
    }
    const size_t p = 16, cols = 3 * p * p;
    ASSERT_EQ(s[0].sum_abs.size(), cols);
    ASSERT_GT(s[0].n, 0u);
    EXPECT_EQ(s[1].n, 2 * s[0].n);
    EXPECT_EQ(s[2].n, 3 * s[0].n);
    double worst = 0, crop_diff = 0, total = 0;
    for (size_t c = 0; c < 3; c++)
        for (size_t y = 0; y < p; y++)
            for (size_t x = 0; x < p; x++) {
                const size_t i = (c * p + y) * p + x, m = (c * p + y) * p + (p - 1 - x);
                const double want = s[0].sum_abs[i] + s[0].sum_abs[m];
                worst = std::max(worst, std::fabs(s[1].sum_abs[i] - want) / want);
                crop_diff += std::fabs((s[2].sum_abs[i] - s[1].sum_abs[i]) - s[0].sum_abs[i]);
                total += s[0].sum_abs[i];
            }
    EXPECT_LT(worst, 1e-5);
    // The crop is another image: its statistics are not the original's.
    EXPECT_GT(crop_diff / total, 0.02);
    test_remove_tree(tmp);
}

// ---- Pruning with calibration (Wanda, SparseGPT; docs/sparsity.md) ------------------------

tern_status convert_sparse(const std::string &src, const std::string &dst, tern_weight_type weights, int prune,
                           const std::string &calib, const char *tokenizer = nullptr, uint32_t calib_tokens = 0,
                           tern_error *err = nullptr, int method = TERN_METHOD_RTN) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = weights;
    o.group_size = 32;
    o.method = (uint8_t)method;
    o.prune = (uint8_t)prune;
    o.sparse_n = 2;
    o.sparse_m = 4;
    o.row_major = 1; // INDEX planes as format 7.3 lays them out, for mask_of
    return convert_with(o, src, dst, calib, tokenizer, calib_tokens, err);
}

// The kept positions of a row-major 2:4 tensor, [rows][cols] 0/1, read from
// its INDEX plane (format 7.3: 2-bit positions, LSB first, a row padded to a
// byte); fails the test unless each block keeps 2 distinct, ascending positions.
std::vector<uint8_t> mask_of(const tern_tensor_view &v) {
    const size_t rows = v.desc.dims[0], cols = v.desc.dims[1], stored = cols / 2, row_bytes = (stored * 2 + 7) / 8;
    std::vector<uint8_t> mask(rows * cols, 0);
    const uint8_t *ix = (const uint8_t *)v.planes[TERN_PLANE_INDEX];
    EXPECT_EQ(v.plane_sizes[TERN_PLANE_INDEX], rows * row_bytes);
    for (size_t r = 0; r < rows; r++)
        for (size_t b = 0; b < cols / 4; b++) {
            unsigned pos[2];
            for (unsigned k = 0; k < 2; k++) {
                const size_t bit = (b * 2 + k) * 2;
                pos[k] = (ix[r * row_bytes + bit / 8] >> (bit % 8)) & 3u;
                mask[r * cols + b * 4 + pos[k]] = 1;
            }
            if (pos[0] >= pos[1]) {
                ADD_FAILURE() << "row " << r << " block " << b << ": positions " << pos[0] << ", " << pos[1];
                return mask;
            }
        }
    return mask;
}

// Every matrix in the blocks whose columns divide by 4 is 2:4 sparse with a
// valid index; token_embd and output are dense.
void expect_sparse_blocks(const std::string &path) {
    tern_file f;
    tern_error err = {};
    ASSERT_EQ(tern_file_open(path.c_str(), 1, &f, &err), TERN_OK) << err.message;
    size_t sparse = 0;
    for (uint32_t i = 0; i < f.n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(&f, i, &v);
        const std::string name(v.name, v.name_length);
        if (v.desc.ndim != 2) continue;
        if (name.rfind("blk.", 0) == 0 && v.desc.dims[1] % 4 == 0) {
            EXPECT_EQ(v.desc.sparse_n, 2) << name;
            EXPECT_EQ(v.desc.sparse_m, 4) << name;
            if (v.desc.sparse_m == 4) mask_of(v), sparse++;
        } else if (name.rfind("blk.", 0) != 0) {
            EXPECT_EQ(v.desc.sparse_m, 0) << name;
        }
    }
    EXPECT_GT(sparse, 0u);
    tern_file_close(&f);
}

bool all_finite(const std::vector<float> &v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Fraction of rows whose argmax agrees.
double top1_agreement(const std::vector<float> &a, const std::vector<float> &b, size_t v) {
    size_t same = 0, rows = a.size() / v;
    for (size_t r = 0; r < rows; r++)
        same += std::max_element(a.begin() + r * v, a.begin() + (r + 1) * v) - (a.begin() + r * v) ==
                std::max_element(b.begin() + r * v, b.begin() + (r + 1) * v) - (b.begin() + r * v);
    return (double)same / rows;
}

TEST_F(Stories, SparseGptBeatsMagnitudeAt2to4) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string src = dir_ + "/stories260K.bin", calib = tmp_ + "/calib.ids";
    const int prunes[3] = {TERN_PRUNE_MAGNITUDE, TERN_PRUNE_WANDA, TERN_PRUNE_SPARSEGPT};
    const char *names[3] = {"magnitude", "wanda", "sparsegpt"};
    double kl[3];
    for (int i = 0; i < 3; i++) {
        const std::string out = tmp_ + "/s24-" + names[i] + ".tern";
        ASSERT_EQ(convert_sparse(src, out, TERN_WEIGHTS_Q8, prunes[i], i ? calib : "", tok_.c_str()), TERN_OK);
        expect_sparse_blocks(out);
        Model m(out);
        std::vector<float> got = m.logits(eval_);
        ASSERT_TRUE(all_finite(got)) << names[i];
        kl[i] = mean_kl(base_, got, m.vocab());
    }
    printf("stories260K 2:4 q8 KL to float (eval tokens not in the calibration): magnitude %.4f, wanda %.4f, "
           "sparsegpt %.4f\n",
           kl[0], kl[1], kl[2]);
    EXPECT_TRUE(std::isfinite(kl[1]) && kl[1] > 0.0);
    EXPECT_LT(kl[2], kl[0]);
}

// Wanda's mask of blk.0.attn_q from the norms of its input computed here:
// block 0 reads RMSNorm(embedding) of the calibration tokens (windows of 512
// from the .ids file, a BOS in front of each window that does not start with one).
TEST_F(Stories, WandaMaskFromInputNorms) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string out = tmp_ + "/wanda-f16.tern";
    ASSERT_EQ(convert_sparse(dir_ + "/stories260K.bin", out, TERN_WEIGHTS_F16, TERN_PRUNE_WANDA, tmp_ + "/calib.ids",
                             tok_.c_str()),
              TERN_OK);
    std::vector<int32_t> ids;
    {
        std::vector<unsigned char> text = test_read_file(tmp_ + "/calib.ids");
        std::string t(text.begin(), text.end());
        size_t at = 0;
        while (at < t.size()) {
            size_t end = t.find(' ', at);
            if (end == std::string::npos) end = t.size();
            if (end > at) ids.push_back(std::stoi(t.substr(at, end - at)));
            at = end + 1;
        }
    }
    std::vector<int32_t> tokens;
    for (size_t used = 0; used < ids.size();) {
        size_t room = 512, start = tokens.size();
        if (ids[used] != 1) tokens.push_back(1), room--;
        const size_t take = std::min(room, ids.size() - used);
        tokens.insert(tokens.end(), ids.begin() + used, ids.begin() + used + take);
        used += take;
        if (tokens.size() - start < 2) tokens.resize(start);
    }
    tern_file f32, sp;
    tern_error err = {};
    ASSERT_EQ(tern_file_open((tmp_ + "/f32.tern").c_str(), 0, &f32, &err), TERN_OK);
    ASSERT_EQ(tern_file_open(out.c_str(), 0, &sp, &err), TERN_OK);
    tern_tensor_view emb, norm, wq, pq;
    ASSERT_EQ(tern_file_get_tensor(&f32, "token_embd.weight", &emb, &err), TERN_OK);
    ASSERT_EQ(tern_file_get_tensor(&f32, "blk.0.attn_norm.weight", &norm, &err), TERN_OK);
    ASSERT_EQ(tern_file_get_tensor(&f32, "blk.0.attn_q.weight", &wq, &err), TERN_OK);
    ASSERT_EQ(tern_file_get_tensor(&sp, "blk.0.attn_q.weight", &pq, &err), TERN_OK);
    const size_t dim = emb.desc.dims[1], rows = wq.desc.dims[0];
    ASSERT_EQ(wq.desc.dims[1], dim);
    const float *e = (const float *)emb.planes[0], *g = (const float *)norm.planes[0], *w = (const float *)wq.planes[0];
    std::vector<double> sq(dim, 0.0);
    for (int32_t t : tokens) {
        double ms = 0;
        for (size_t c = 0; c < dim; c++) ms += (double)e[t * dim + c] * e[t * dim + c];
        const double inv = 1.0 / std::sqrt(ms / dim + 1e-5);
        for (size_t c = 0; c < dim; c++) {
            const double x = e[t * dim + c] * inv * g[c];
            sq[c] += x * x;
        }
    }
    std::vector<uint8_t> mask = mask_of(pq);
    size_t differ = 0, blocks = rows * dim / 4;
    for (size_t r = 0; r < rows; r++)
        for (size_t b = 0; b < dim / 4; b++) {
            double s[4];
            for (int j = 0; j < 4; j++) s[j] = std::fabs(w[r * dim + b * 4 + j]) * std::sqrt(sq[b * 4 + j]);
            int order[4] = {0, 1, 2, 3};
            std::sort(order, order + 4, [&](int a, int c) { return s[a] > s[c] || (s[a] == s[c] && a < c); });
            bool same = true;
            for (int j = 0; j < 4; j++) same &= mask[r * dim + b * 4 + j] == (j == order[0] || j == order[1]);
            differ += !same;
        }
    // The runtime's RMSNorm rounds in float: a near tie may fall the other way.
    EXPECT_LE(differ, blocks / 100) << differ << " of " << blocks << " blocks differ from |W| * ||X||";
    // ... and it is not magnitude's mask.
    size_t vs_magnitude = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t b = 0; b < dim / 4; b++) {
            int order[4] = {0, 1, 2, 3};
            const float *wb = w + r * dim + b * 4;
            std::sort(order, order + 4, [&](int a, int c) {
                return std::fabs(wb[a]) > std::fabs(wb[c]) || (std::fabs(wb[a]) == std::fabs(wb[c]) && a < c);
            });
            for (int j = 0; j < 4; j++)
                if (mask[r * dim + b * 4 + j] != (j == order[0] || j == order[1])) {
                    vs_magnitude++;
                    break;
                }
        }
    EXPECT_GT(vs_magnitude, blocks / 20);
    tern_file_close(&f32);
    tern_file_close(&sp);
}

TEST_F(Stories, PruneErrors) {
    tern_error err = {};
    const std::string src = dir_ + "/stories260K.bin", out = tmp_ + "/pe.tern", calib = tmp_ + "/calib.ids";
    EXPECT_EQ(convert_sparse(src, out, TERN_WEIGHTS_Q8, TERN_PRUNE_WANDA, "", tok_.c_str(), 0, &err),
              TERN_ERR_INVALID_ARG);
    EXPECT_NE(std::string(err.message).find("--calib"), std::string::npos) << err.message;
    EXPECT_EQ(convert_sparse(src, out, TERN_WEIGHTS_Q8, TERN_PRUNE_SPARSEGPT, "", tok_.c_str(), 0, &err),
              TERN_ERR_INVALID_ARG);
    EXPECT_NE(std::string(err.message).find("sparsegpt"), std::string::npos) << err.message;
    EXPECT_EQ(convert_sparse(src, out, TERN_WEIGHTS_Q8, TERN_PRUNE_SPARSEGPT, calib, tok_.c_str(), 0, &err,
                             TERN_METHOD_AWQ),
              TERN_ERR_INVALID_ARG);
    EXPECT_EQ(convert_sparse(src, out, TERN_WEIGHTS_Q8, TERN_PRUNE_WANDA, tmp_ + "/missing.txt", tok_.c_str(), 0,
                             &err),
              TERN_ERR_IO);
    struct stat sb;
    EXPECT_NE(stat(out.c_str(), &sb), 0);
    // The CLI: --prune sparsegpt without --calib is refused with a message; with it, converted.
    TestCliRun r = test_run_tern("convert " + src + " --tokenizer " + tok_ + " -o " + out +
                                     " --weights q8 --sparsity 2:4 --prune sparsegpt",
                                 true);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("--calib"), std::string::npos) << r.out;
    r = test_run_tern("convert " + src + " --tokenizer " + tok_ + " -o " + out +
                          " --weights q4 --sparsity 2:4 --prune sparsegpt --calib " + calib + " --calib-tokens 256",
                      true);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(stat(out.c_str(), &sb), 0);
}

// Layers --sparse-layers leaves dense follow --method (GPTQ here): dense Q4
// planes for them, 2:4 for the pruned ones.
TEST_F(Stories, SparseLayersAndGptq) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    tern_convert_options o;
    tern_convert_options_default(&o);
    const std::string src = dir_ + "/stories260K.bin", out = tmp_ + "/mix.tern", calib = tmp_ + "/calib.ids";
    o.weights = TERN_WEIGHTS_Q4;
    o.method = TERN_METHOD_GPTQ;
    o.prune = TERN_PRUNE_SPARSEGPT;
    o.sparse_n = 2;
    o.sparse_m = 4;
    o.sparse_layers = "blk.*.ffn_*";
    o.calib_path = calib.c_str();
    o.calib_tokens = 512;
    o.tokenizer_path = tok_.c_str();
    tern_error err = {};
    ASSERT_EQ(tern_convert(src.c_str(), out.c_str(), &o, &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open(out.c_str(), 1, &f, &err), TERN_OK) << err.message;
    tern_tensor_view v;
    ASSERT_EQ(tern_file_get_tensor(&f, "blk.2.ffn_gate.weight", &v, &err), TERN_OK);
    EXPECT_EQ(v.desc.sparse_m, 4);
    ASSERT_EQ(tern_file_get_tensor(&f, "blk.2.attn_q.weight", &v, &err), TERN_OK);
    EXPECT_EQ(v.desc.sparse_m, 0);
    EXPECT_EQ(v.desc.encoding, TERN_ENC_Q4);
    tern_file_close(&f);
    Model m(out);
    std::vector<float> got = m.logits(eval_);
    EXPECT_TRUE(all_finite(got));
    const double kl = mean_kl(base_, got, m.vocab());
    printf("stories260K ffn 2:4 sparsegpt + attention gptq q4: KL %.4f\n", kl);
    EXPECT_TRUE(std::isfinite(kl));
}

TEST(Vit, SparseGptBeatsMagnitudeAt2to4) {
    if (test_emulated()) GTEST_SKIP() << "whole-model calibration: native and sanitizer runs only";
    const std::string dir = test_shared_path("models/vit-tiny-in1k"), tmp = test_temp_dir();
    // Calibration: three images without an ImageNet label, preprocessed into a
    // .npy (which calib.c only mirrors: 6 views, 12 sequential passes stay
    // short); evaluation: the 17 labelled ones.
    const char *calib_names[] = {"apple.jpg", "cheetah.jpg", "tench.jpg"};
    std::vector<std::string> eval;
    if (DIR *d = opendir((dir + "/images").c_str())) {
        while (const dirent *e = readdir(d))
            if (std::strncmp(e->d_name, "n0", 2) == 0) eval.push_back(dir + "/images/" + e->d_name);
        closedir(d);
    }
    std::sort(eval.begin(), eval.end());
    ASSERT_EQ(eval.size(), 17u);
    ASSERT_EQ(convert(dir, tmp + "/f32.tern", TERN_WEIGHTS_F32, 0, ""), TERN_OK);
    Model f(tmp + "/f32.tern");
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(f.m, &ic), TERN_OK);
    const size_t per = (size_t)ic.channels * ic.height * ic.width, n = eval.size();
    std::vector<float> pixels(n * per);
    for (size_t i = 0; i < n; i++) {
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_load(eval[i].c_str(), &img, &err), TERN_OK);
        ASSERT_EQ(tern_image_preprocess(&img, &ic, pixels.data() + i * per, &err), TERN_OK);
        tern_image_free(&img);
    }
    std::vector<float> base = f.classify(pixels, n);
    {
        std::vector<float> cal(3 * per);
        for (size_t i = 0; i < 3; i++) {
            tern_image img;
            tern_error err = {};
            ASSERT_EQ(tern_image_load((dir + "/images/" + calib_names[i]).c_str(), &img, &err), TERN_OK);
            ASSERT_EQ(tern_image_preprocess(&img, &ic, cal.data() + i * per, &err), TERN_OK);
            tern_image_free(&img);
        }
        const uint64_t shape[4] = {3, ic.channels, ic.height, ic.width};
        tern_error err = {};
        ASSERT_EQ(tern_npy_write_f32((tmp + "/calib.npy").c_str(), cal.data(), 4, shape, &err), TERN_OK);
    }
    // Wanda's sanity is checked on stories260K; here the two that the issue
    // compares. Q8 values: the 2:4 tiles then run the SIMD integer kernels
    // (sparse F16 has only the ref kernel, 17 x 197 tokens took a minute).
    const int prunes[2] = {TERN_PRUNE_MAGNITUDE, TERN_PRUNE_SPARSEGPT};
    const char *names[2] = {"magnitude", "sparsegpt"};
    double kl[2], top1[2];
    for (int i = 0; i < 2; i++) {
        const std::string out = tmp + "/s24-" + names[i] + ".tern";
        ASSERT_EQ(convert_sparse(dir, out, TERN_WEIGHTS_Q8, prunes[i], i ? tmp + "/calib.npy" : ""), TERN_OK);
        expect_sparse_blocks(out);
        Model m(out);
        std::vector<float> got = m.classify(pixels, n);
        ASSERT_TRUE(all_finite(got)) << names[i];
        kl[i] = mean_kl(base, got, m.vocab());
        top1[i] = top1_agreement(base, got, m.vocab());
    }
    printf("vit-tiny 2:4 q8 on %zu images not calibrated on: KL magnitude %.4f, sparsegpt %.4f; top-1 "
           "agreement %.3f, %.3f\n",
           n, kl[0], kl[1], top1[0], top1[1]);
    EXPECT_LT(kl[1], kl[0]);
    EXPECT_GE(top1[1], top1[0]);
    test_remove_tree(tmp);
}

} // namespace
