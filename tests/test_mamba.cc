// Mamba-1: the conv1d and selective-scan kernels against independent double
// loops (every tier this CPU has), and Hugging Face checkpoints converted by
// tern and run through the public API against transformers' logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "formats/keys.h"
#include "formats/safetensors.h"
#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "tern.h"
#include "tests/test_reference.h"
#include "tests/test_tiers.h"

namespace {

// ---- Kernels --------------------------------------------------------------------------

std::vector<float> Uniform(std::mt19937 &rng, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) x = dist(rng);
    return v;
}

double SiluD(double x) { return x / (1.0 + std::exp(-x)); }
double SoftplusD(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

// Conv of one chunk in double: window = history (K-1) then the tokens.
void ConvDouble(size_t T, size_t d, size_t K, const std::vector<float> &x, size_t ldx,
                const std::vector<float> &w, const std::vector<float> *bias,
                std::vector<double> &state, std::vector<double> &y) {
    const size_t hist = K - 1;
    y.assign(T * d, 0.0);
    for (size_t c = 0; c < d; c++) {
        std::vector<double> win(hist + T);
        for (size_t j = 0; j < hist; j++) win[j] = state[c * hist + j];
        for (size_t t = 0; t < T; t++) win[hist + t] = x[t * ldx + c];
        for (size_t t = 0; t < T; t++) {
            double acc = bias ? (*bias)[c] : 0.0;
            for (size_t k = 0; k < K; k++) acc += (double)w[c * K + k] * win[t + k];
            y[t * d + c] = SiluD(acc);
        }
        for (size_t j = 0; j < hist; j++) state[c * hist + j] = win[T + j];
    }
}

struct ScanInputs {
    size_t T, d, S;
    std::vector<float> x, dt, bc, z, A, D; // x, dt, z: [T][d]; bc: [T][2S] (B then C)
};

ScanInputs MakeScanInputs(std::mt19937 &rng, size_t T, size_t d, size_t S) {
    ScanInputs in{T, d, S, {}, {}, {}, {}, {}, {}};
    in.x = Uniform(rng, T * d, -1.5f, 1.5f);
    in.dt = Uniform(rng, T * d, -5.0f, 1.5f); // softplus of these: ~0.007 .. 1.7
    in.dt[0] = 25.0f;                          // the softplus threshold branch
    in.bc = Uniform(rng, T * 2 * S, -1.0f, 1.0f);
    in.z = Uniform(rng, T * d, -3.0f, 3.0f);
    in.A = Uniform(rng, d * S, -1.0f, 2.5f);
    for (float &a : in.A) a = -std::exp(a);
    in.D = Uniform(rng, d, -1.0f, 1.0f);
    return in;
}

void ScanDouble(const ScanInputs &in, std::vector<double> &h, std::vector<double> &y) {
    const size_t T = in.T, d = in.d, S = in.S;
    y.assign(T * d, 0.0);
    for (size_t c = 0; c < d; c++) {
        for (size_t t = 0; t < T; t++) {
            const double u = in.x[t * d + c], dt = SoftplusD(in.dt[t * d + c]);
            double acc = 0;
            for (size_t s = 0; s < S; s++) {
                double &hs = h[c * S + s];
                hs = std::exp(dt * in.A[c * S + s]) * hs + dt * in.bc[t * 2 * S + s] * u;
                acc += hs * in.bc[t * 2 * S + S + s];
            }
            y[t * d + c] = (acc + in.D[c] * u) * SiluD(in.z[t * d + c]);
        }
    }
}

// Runs the scan kernel over tokens [t0, t0 + n) of `in`, channels [c0, c1).
void RunScan(tern_ssm_scan_fn fn, const ScanInputs &in, size_t t0, size_t n, size_t c0, size_t c1,
             std::vector<float> &h, std::vector<float> &y) {
    const size_t d = in.d, S = in.S;
    tern_ssm_scan_args a = {};
    a.n_tokens = n;
    a.d_state = S;
    a.x = in.x.data() + t0 * d;
    a.ldx = d;
    a.dt = in.dt.data() + t0 * d;
    a.ld_dt = d;
    a.B = in.bc.data() + t0 * 2 * S;
    a.C = in.bc.data() + t0 * 2 * S + S;
    a.ld_bc = 2 * S;
    a.z = in.z.data() + t0 * d;
    a.ldz = d;
    a.A = in.A.data();
    a.D = in.D.data();
    a.h = h.data();
    a.y = y.data() + t0 * d;
    a.ldy = d;
    fn(&a, c0, c1);
}

void RunConv(tern_ssm_conv_fn fn, size_t t0, size_t n, size_t d, size_t K,
             const std::vector<float> &x, size_t ldx, const std::vector<float> &w,
             const float *bias, std::vector<float> &state, std::vector<float> &y, size_t c0,
             size_t c1) {
    tern_ssm_conv_args a = {};
    a.n_tokens = n;
    a.d_conv = K;
    a.x = x.data() + t0 * ldx;
    a.ldx = ldx;
    a.w = w.data();
    a.bias = bias;
    a.state = state.data();
    a.y = y.data() + t0 * d;
    a.ldy = d;
    fn(&a, c0, c1);
}

class MambaKernelTier : public tern_test::TierTest {
  protected:
    void SetUp() override {
        SetUpTier([](const tern_kernels &a, const tern_kernels &b) {
            return a.ssm_conv == b.ssm_conv && a.ssm_scan == b.ssm_scan;
        }, "Mamba kernels");
        ASSERT_NE(k_.ssm_conv, nullptr);
        ASSERT_NE(k_.ssm_scan, nullptr);
    }
};

TEST_P(MambaKernelTier, ConvMatchesDoubleLoop) {
    std::mt19937 rng(11);
    const size_t d = 37;
    for (size_t K : {1, 2, 3, 4, 6}) {
        for (size_t T : {1, 2, 5, 17}) {
            for (bool with_bias : {false, true}) {
                const size_t ldx = 2 * d + 3; // x inside a wider row, as in_proj's output
                std::vector<float> x = Uniform(rng, T * ldx, -2.0f, 2.0f);
                std::vector<float> w = Uniform(rng, d * K, -1.0f, 1.0f);
                std::vector<float> b = Uniform(rng, d, -0.5f, 0.5f);
                std::vector<float> state0 = Uniform(rng, d * (K - 1) + 1, -1.0f, 1.0f);
                std::vector<double> sd(state0.begin(), state0.end()), yd;
                ConvDouble(T, d, K, x, ldx, w, with_bias ? &b : nullptr, sd, yd);
                // Channel ranges of several shapes, each from the same initial state.
                const std::vector<std::vector<size_t>> splits = {{0, d}, {0, 1, 16, d}, {0, 5, 6, 30, d}};
                for (const auto &cuts : splits) {
                    std::vector<float> state = state0, y(T * d, 1e30f);
                    for (size_t i = 0; i + 1 < cuts.size(); i++)
                        RunConv(k_.ssm_conv, 0, T, d, K, x, ldx, w, with_bias ? b.data() : nullptr,
                                state, y, cuts[i], cuts[i + 1]);
                    for (size_t i = 0; i < T * d; i++)
                        ASSERT_NEAR(y[i], yd[i], 1e-5 * (1 + std::fabs(yd[i])))
                            << "K " << K << " T " << T << " element " << i;
                    for (size_t i = 0; i < d * (K - 1); i++)
                        ASSERT_EQ(state[i], (float)sd[i]) << "state " << i; // a copy, exact
                }
            }
        }
    }
}

TEST_P(MambaKernelTier, ConvTouchesOnlyItsChannels) {
    std::mt19937 rng(12);
    const size_t d = 20, K = 4, T = 3;
    std::vector<float> x = Uniform(rng, T * d, -1, 1), w = Uniform(rng, d * K, -1, 1);
    std::vector<float> state(d * (K - 1), 7.0f), y(T * d, 9.0f);
    RunConv(k_.ssm_conv, 0, T, d, K, x, d, w, nullptr, state, y, 5, 11);
    for (size_t c = 0; c < d; c++) {
        const bool inside = c >= 5 && c < 11;
        for (size_t t = 0; t < T; t++) EXPECT_EQ(y[t * d + c] == 9.0f, !inside) << c;
        for (size_t j = 0; j < K - 1; j++) EXPECT_EQ(state[c * (K - 1) + j] == 7.0f, !inside) << c;
    }
}

TEST_P(MambaKernelTier, ConvSplitChunkEqualsWholeChunk) {
    std::mt19937 rng(13);
    const size_t d = 24, T = 13;
    for (size_t K : {2, 4, 5}) {
        std::vector<float> x = Uniform(rng, T * d, -2, 2), w = Uniform(rng, d * K, -1, 1);
        std::vector<float> b = Uniform(rng, d, -1, 1);
        std::vector<float> s_whole(d * (K - 1), 0.0f), y_whole(T * d);
        RunConv(k_.ssm_conv, 0, T, d, K, x, d, w, b.data(), s_whole, y_whole, 0, d);
        // Chunks shorter than the window (1, 2) and longer (7): the carried state matters.
        for (const std::vector<size_t> &chunks : std::vector<std::vector<size_t>>{{1, 1, 11}, {2, 7, 4}, {5, 5, 3}}) {
            std::vector<float> s(d * (K - 1), 0.0f), y(T * d);
            size_t t0 = 0;
            for (size_t n : chunks) {
                RunConv(k_.ssm_conv, t0, n, d, K, x, d, w, b.data(), s, y, 0, d);
                t0 += n;
            }
            EXPECT_EQ(0, std::memcmp(y.data(), y_whole.data(), y.size() * sizeof(float))) << "K " << K;
            EXPECT_EQ(0, std::memcmp(s.data(), s_whole.data(), s.size() * sizeof(float))) << "K " << K;
        }
    }
}

TEST_P(MambaKernelTier, ScanMatchesDoubleLoop) {
    std::mt19937 rng(21);
    for (size_t S : {1, 8, 16}) {
        for (size_t T : {1, 3, 24}) {
            const size_t d = 29;
            ScanInputs in = MakeScanInputs(rng, T, d, S);
            std::vector<float> h0 = Uniform(rng, d * S, -1.0f, 1.0f);
            std::vector<double> hd(h0.begin(), h0.end()), yd;
            ScanDouble(in, hd, yd);
            const std::vector<std::vector<size_t>> splits = {{0, d}, {0, 16, d}, {0, 1, 2, 9, 28, d}};
            for (const auto &cuts : splits) {
                std::vector<float> h = h0, y(T * d, 1e30f);
                for (size_t i = 0; i + 1 < cuts.size(); i++)
                    RunScan(k_.ssm_scan, in, 0, T, cuts[i], cuts[i + 1], h, y);
                // Float state over T steps: errors of a few ulps per step, bounded by the decay.
                for (size_t i = 0; i < T * d; i++)
                    ASSERT_NEAR(y[i], yd[i], 2e-5 * (1 + std::fabs(yd[i])))
                        << "S " << S << " T " << T << " element " << i;
                for (size_t i = 0; i < d * S; i++)
                    ASSERT_NEAR(h[i], hd[i], 2e-5 * (1 + std::fabs(hd[i]))) << "state " << i;
            }
        }
    }
}

TEST_P(MambaKernelTier, ScanTouchesOnlyItsChannels) {
    std::mt19937 rng(22);
    const size_t d = 20, S = 4, T = 3;
    ScanInputs in = MakeScanInputs(rng, T, d, S);
    std::vector<float> h(d * S, 7.0f), y(T * d, 9.0f);
    RunScan(k_.ssm_scan, in, 0, T, 3, 17, h, y);
    for (size_t c = 0; c < d; c++) {
        const bool inside = c >= 3 && c < 17;
        for (size_t t = 0; t < T; t++) EXPECT_EQ(y[t * d + c] == 9.0f, !inside) << c;
        for (size_t s = 0; s < S; s++) EXPECT_EQ(h[c * S + s] == 7.0f, !inside) << c;
    }
}

TEST_P(MambaKernelTier, ScanSplitChunkEqualsWholeChunk) {
    std::mt19937 rng(23);
    const size_t d = 33, S = 16, T = 19;
    ScanInputs in = MakeScanInputs(rng, T, d, S);
    std::vector<float> h_whole(d * S, 0.0f), y_whole(T * d);
    RunScan(k_.ssm_scan, in, 0, T, 0, d, h_whole, y_whole);
    for (const std::vector<size_t> &chunks : std::vector<std::vector<size_t>>{{1, 18}, {5, 5, 5, 4}, {12, 1, 6}}) {
        std::vector<float> h(d * S, 0.0f), y(T * d);
        size_t t0 = 0;
        for (size_t n : chunks) {
            RunScan(k_.ssm_scan, in, t0, n, 0, d, h, y);
            t0 += n;
        }
        EXPECT_EQ(0, std::memcmp(y.data(), y_whole.data(), y.size() * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(h.data(), h_whole.data(), h.size() * sizeof(float)));
    }
}

// dt over the softplus's whole range (tiny, around 0, near and past the
// threshold of 20) and mamba-130m's d_state 16 plus the vector path's edges
// (64 states, and 65: the ref fallback), ragged channel counts.
TEST_P(MambaKernelTier, ScanSoftplusRangeAndStateSizes) {
    std::mt19937 rng(24);
    const float dts[] = {-30.0f, -12.0f, -3.0f, -1e-3f, 0.0f, 0.7f, 5.0f, 19.5f, 20.0f, 20.5f, 40.0f};
    for (size_t S : {16, 64, 65}) {
        const size_t d = 19, T = 11;
        ScanInputs in = MakeScanInputs(rng, T, d, S);
        for (size_t i = 0; i < in.dt.size(); i++) in.dt[i] = dts[(i * 7) % 11];
        std::vector<float> h0 = Uniform(rng, d * S, -1.0f, 1.0f);
        std::vector<double> hd(h0.begin(), h0.end()), yd;
        ScanDouble(in, hd, yd);
        std::vector<float> h = h0, y(T * d, 1e30f);
        RunScan(k_.ssm_scan, in, 0, T, 0, d, h, y);
        // dt up to 40 scales the inputs up: the bound is relative to dt
        for (size_t i = 0; i < T * d; i++)
            ASSERT_NEAR(y[i], yd[i], 1e-4 * (1 + std::fabs(yd[i]))) << "S " << S << " element " << i;
        for (size_t i = 0; i < d * S; i++)
            ASSERT_NEAR(h[i], hd[i], 1e-4 * (1 + std::fabs(hd[i]))) << "S " << S << " state " << i;
    }
}

// d_conv up to the vector path's limit (8) and past it (9: the ref), with
// mamba-130m's channel count (1536) and a ragged one.
TEST_P(MambaKernelTier, ConvLongWindowsAndWideRows) {
    std::mt19937 rng(14);
    for (size_t K : {4, 8, 9})
        for (size_t d : {1536, 45}) {
            const size_t T = 3;
            std::vector<float> x = Uniform(rng, T * d, -2.0f, 2.0f), w = Uniform(rng, d * K, -1, 1);
            std::vector<float> b = Uniform(rng, d, -0.5f, 0.5f);
            std::vector<float> state = Uniform(rng, d * (K - 1), -1.0f, 1.0f);
            std::vector<double> sd(state.begin(), state.end()), yd;
            ConvDouble(T, d, K, x, d, w, &b, sd, yd);
            std::vector<float> y(T * d, 1e30f);
            RunConv(k_.ssm_conv, 0, T, d, K, x, d, w, b.data(), state, y, 0, d);
            for (size_t i = 0; i < T * d; i++)
                ASSERT_NEAR(y[i], yd[i], 1e-5 * (1 + std::fabs(yd[i]))) << "K " << K << " element " << i;
            for (size_t i = 0; i < d * (K - 1); i++) ASSERT_EQ(state[i], (float)sd[i]) << "state " << i;
        }
}

TERN_INSTANTIATE_TIERS(MambaKernelTier);

// ---- Models against transformers --------------------------------------------------------

// The decoder and recurrent-state tests of tests/test_reference.h.
// f32: the 1e-4 bar (measured: about 1e-6). f16 weights: the rounding of
// every matrix to 11 bits moves the logits by up to ~1e-3 relative (measured
// 4.8e-4 and 5.0e-4 on the two fixtures); 2e-3 is the stated bound.
const DecoderCase kMambaCases[] = {
    {"fixtures/hf/mamba", true, TERN_WEIGHTS_F32, 1e-4, TERN_ARCH_MAMBA},
    {"fixtures/hf/mamba", true, TERN_WEIGHTS_F16, 2e-3, TERN_ARCH_MAMBA},
    {"tests/fixtures/hf/mamba-small", false, TERN_WEIGHTS_F32, 1e-4, TERN_ARCH_MAMBA},
    {"tests/fixtures/hf/mamba-small", false, TERN_WEIGHTS_F16, 2e-3, TERN_ARCH_MAMBA},
};
INSTANTIATE_TEST_SUITE_P(Mamba, DecoderMatchesReference, ::testing::ValuesIn(kMambaCases), test_decoder_case_name);
INSTANTIATE_TEST_SUITE_P(Mamba, RecurrentMatchesReference, ::testing::ValuesIn(kMambaCases), test_decoder_case_name);

// ---- Conversion and load errors ------------------------------------------------------------

// A copy of mamba-small whose config.json has `key` replaced by `value` (JSON text).
std::string CopyWithConfig(const std::string &tmp, const std::string &key, const std::string &value) {
    return test_copy_with_config(test_source_path("tests/fixtures/hf/mamba-small"), tmp + "/mamba-edit",
                                 {"model.safetensors", "generation_config.json"}, key, value);
}

tern_status ConvertDir(const std::string &dir, const std::string &out, tern_error *err) {
    return test_convert(dir, out, TERN_WEIGHTS_F32, err);
}

TEST(MambaConvert, UntiedWithoutLmHeadNamesTheTensor) {
    std::string tmp = test_temp_dir();
    std::string dir = CopyWithConfig(tmp, "tie_word_embeddings", "false");
    tern_error err = {};
    EXPECT_EQ(ConvertDir(dir, tmp + "/m.tern", &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "lm_head.weight"), nullptr) << err.message;
    test_remove_tree(tmp);
}

TEST(MambaConvert, AutoTimeStepRankIsCeilHiddenOver16) {
    // hidden 48 -> "auto" means rank 3, but the checkpoint has rank 5: a shape error on x_proj/dt_proj.
    std::string tmp = test_temp_dir();
    std::string dir = CopyWithConfig(tmp, "time_step_rank", "\"auto\"");
    tern_error err = {};
    EXPECT_EQ(ConvertDir(dir, tmp + "/m.tern", &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "[19, 144]"), nullptr) << err.message; // 3 + 2*8 rows
    test_remove_tree(tmp);
}

TEST(MambaConvert, WrongStateSizeIsAShapeError) {
    std::string tmp = test_temp_dir();
    std::string dir = CopyWithConfig(tmp, "state_size", "16");
    tern_error err = {};
    EXPECT_EQ(ConvertDir(dir, tmp + "/m.tern", &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "x_proj"), nullptr) << err.message;
    test_remove_tree(tmp);
}

TEST(MambaConvert, WritesNegExpOfALog) {
    std::string tmp = test_temp_dir();
    const std::string src = test_source_path("tests/fixtures/hf/mamba-small");
    tern_error err = {};
    ASSERT_EQ(ConvertDir(src, tmp + "/m.tern", &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open((tmp + "/m.tern").c_str(), 1, &f, &err), TERN_OK) << err.message;
    tern_safetensors st;
    ASSERT_EQ(tern_safetensors_open((src + "/model.safetensors").c_str(), &st, &err), TERN_OK);
    const tern_st_tensor *alog = tern_safetensors_find(&st, "backbone.layers.1.mixer.A_log");
    ASSERT_NE(alog, nullptr);
    std::vector<float> want(alog->n_elements);
    ASSERT_EQ(tern_st_to_f32(alog, want.data(), &err), TERN_OK);
    tern_tensor_view v;
    ASSERT_EQ(tern_file_get_tensor(&f, "blk.1.ssm_a", &v, &err), TERN_OK) << err.message;
    ASSERT_EQ(v.desc.encoding, TERN_ENC_F32);
    ASSERT_EQ(v.desc.ndim, 2u);
    EXPECT_EQ(v.desc.dims[0], 144u);
    EXPECT_EQ(v.desc.dims[1], 8u);
    const float *a = (const float *)v.planes[TERN_PLANE_VALUES];
    for (size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(a[i], -std::exp((double)want[i]), 1e-6 * std::exp((double)want[i])) << i;
    ASSERT_EQ(tern_file_get_tensor(&f, "blk.0.ssm_conv1d.weight", &v, &err), TERN_OK);
    EXPECT_EQ(v.desc.ndim, 2u);
    EXPECT_EQ(v.desc.dims[1], 3u);
    uint32_t u = 0;
    ASSERT_EQ(tern_file_meta_u32(&f, TERN_KEY_SSM_DT_RANK, &u, &err), TERN_OK);
    EXPECT_EQ(u, 5u);
    tern_safetensors_close(&st);
    tern_file_close(&f);
    test_remove_tree(tmp);
}

// A tiny random .tern written with the writer, with one hyper-parameter overridable.
struct TinyMamba {
    uint32_t vocab = 16, d = 8, layers = 1, di = 16, ds = 4, K = 3, R = 2;
};

void AddF32(tern_writer *w, const std::string &name, std::vector<uint64_t> dims, std::mt19937 &rng) {
    tern_tensor_desc desc = {};
    desc.encoding = TERN_ENC_F32;
    desc.layout = TERN_LAYOUT_ROW_MAJOR;
    desc.ndim = (uint32_t)dims.size();
    size_t n = 1;
    for (size_t i = 0; i < dims.size(); i++) {
        desc.dims[i] = dims[i];
        n *= dims[i];
    }
    std::vector<float> v = Uniform(rng, n, -0.5f, 0.5f);
    const void *planes[TERN_PLANE_COUNT] = {v.data(), nullptr, nullptr, nullptr};
    tern_error err = {};
    ASSERT_EQ(tern_writer_add_tensor(w, name.c_str(), &desc, planes, &err), TERN_OK) << err.message;
}

void WriteTiny(const std::string &path, const TinyMamba &m, uint32_t meta_dt_rank) {
    std::mt19937 rng(5);
    tern_writer *w = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
    tern_writer_set_str(w, TERN_KEY_ARCH, "mamba", 5, &err);
    tern_writer_set_u32(w, TERN_KEY_N_VOCAB, m.vocab, &err);
    tern_writer_set_u32(w, TERN_KEY_N_CTX, 1024, &err);
    tern_writer_set_u32(w, TERN_KEY_D_MODEL, m.d, &err);
    tern_writer_set_u32(w, TERN_KEY_N_LAYER, m.layers, &err);
    tern_writer_set_f32(w, TERN_KEY_NORM_EPS, 1e-5f, &err);
    tern_writer_set_u32(w, TERN_KEY_SSM_D_INNER, m.di, &err);
    tern_writer_set_u32(w, TERN_KEY_SSM_D_STATE, m.ds, &err);
    tern_writer_set_u32(w, TERN_KEY_SSM_D_CONV, m.K, &err);
    tern_writer_set_u32(w, TERN_KEY_SSM_DT_RANK, meta_dt_rank, &err);
    AddF32(w, TERN_T_TOKEN_EMBD, {m.vocab, m.d}, rng);
    AddF32(w, TERN_T_OUTPUT_NORM, {m.d}, rng);
    char name[64];
    auto N = [&](const char *fmt) { std::snprintf(name, sizeof name, fmt, 0); return std::string(name); };
    AddF32(w, N(TERN_T_SSM_NORM), {m.d}, rng);
    AddF32(w, N(TERN_T_SSM_IN), {2 * m.di, m.d}, rng);
    AddF32(w, N(TERN_T_SSM_CONV), {m.di, m.K}, rng);
    AddF32(w, N(TERN_T_SSM_X), {m.R + 2 * m.ds, m.di}, rng);
    AddF32(w, N(TERN_T_SSM_DT), {m.di, m.R}, rng);
    AddF32(w, "blk.0.ssm_dt.bias", {m.di}, rng);
    AddF32(w, N(TERN_T_SSM_A), {m.di, m.ds}, rng);
    AddF32(w, N(TERN_T_SSM_D), {m.di}, rng);
    AddF32(w, N(TERN_T_SSM_OUT), {m.d, m.di}, rng);
    ASSERT_EQ(tern_writer_finish(w, &err), TERN_OK) << err.message;
}

TEST(MambaLoad, ValidatesHyperParameters) {
    std::string tmp = test_temp_dir();
    TinyMamba m;
    tern_model *model = nullptr;
    tern_error err = {};
    WriteTiny(tmp + "/ok.tern", m, m.R);
    ASSERT_EQ(tern_model_open((tmp + "/ok.tern").c_str(), nullptr, &model, &err), TERN_OK) << err.message;
    tern_model_close(model);
    // dt_rank larger than d_inner: rejected by range, naming the key.
    WriteTiny(tmp + "/bad.tern", m, m.di + 1);
    EXPECT_EQ(tern_model_open((tmp + "/bad.tern").c_str(), nullptr, &model, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, TERN_KEY_SSM_DT_RANK), nullptr) << err.message;
    // dt_rank consistent with the metadata range but not with the tensors.
    WriteTiny(tmp + "/bad2.tern", m, m.R + 1);
    EXPECT_EQ(tern_model_open((tmp + "/bad2.tern").c_str(), nullptr, &model, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "ssm_x"), nullptr) << err.message;
    test_remove_tree(tmp);
}

} // namespace
