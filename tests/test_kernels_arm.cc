// AArch64 kernel properties that the table-wide sweeps of test_kernels.cc do
// not check:
//  - the neon float linear kernels with HAS_MIN weights (w = s * q + min);
//  - the neon float linear kernels give each output element the same bits
//    whatever its register tile: for any m (batch vs one token at a time) and
//    any row split, including splits that are not multiples of the tiles;
//  - every integer kernel of every ARM tier this CPU has (called directly, not
//    only the highest in the table) is bit-identical to the ref on
//    model-sized shapes, for row ranges starting anywhere;
//  - the vector exponential behind silu/softmax on a dense sweep against
//    double precision, including its overflow and underflow edges.
// Elsewhere (x86) every test skips.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "tern.h"

#if defined(__aarch64__)
#include "kernels/arm/arm.h"
#endif

namespace {

#if defined(__aarch64__)

bool SameBits(float a, float b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

bool CpuHas(tern_isa isa) {
    uint64_t mask = 0;
    if (tern_isa_mask_parse(tern_isa_name(isa), &mask) != TERN_OK) return false;
    return tern_isa_best(mask) == isa;
}

// Random weights in any encoding: the tests here compare kernels with each
// other (and the ref), so the bytes need no decoding of their own.
struct Weight {
    tern_weight w{};
    std::vector<uint8_t> values, scales, zeros;
};

Weight MakeWeight(std::mt19937 &rng, tern_encoding enc, size_t rows, size_t cols, size_t gs,
                  bool zero_point) {
    Weight t;
    size_t bytes = rows * cols * 4;
    if (enc == TERN_ENC_F16 || enc == TERN_ENC_BF16) bytes = rows * cols * 2;
    if (enc == TERN_ENC_Q8) bytes = rows * cols;
    if (enc == TERN_ENC_Q4) bytes = rows * cols / 2;
    t.values.resize(bytes);
    if (enc == TERN_ENC_F32) {
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        for (size_t i = 0; i < rows * cols; i++) {
            const float f = dist(rng);
            std::memcpy(&t.values[4 * i], &f, 4);
        }
    } else if (enc == TERN_ENC_F16 || enc == TERN_ENC_BF16) {
        for (size_t i = 0; i < rows * cols; i++) {
            // finite halves around 1 (F16 exponent 8..17, BF16 120..128)
            const uint32_t sign = rng() & 1;
            const uint16_t h =
                enc == TERN_ENC_F16
                    ? (uint16_t)(sign << 15 | (8 + rng() % 10) << 10 | (rng() & 0x3ff))
                    : (uint16_t)(sign << 15 | (120 + rng() % 9) << 7 | (rng() & 0x7f));
            std::memcpy(&t.values[2 * i], &h, 2);
        }
    } else {
        for (uint8_t &b : t.values)
            b = (uint8_t)rng();
    }
    const bool quant = enc == TERN_ENC_Q8 || enc == TERN_ENC_Q4;
    const size_t n_groups = quant ? rows * cols / gs : 0;
    t.scales.resize(n_groups * 2);
    for (size_t i = 0; i < n_groups; i++) {
        const uint16_t s = (uint16_t)((rng() & 1) << 15 | (5 + rng() % 8) << 10 | (rng() & 0x3ff));
        std::memcpy(&t.scales[2 * i], &s, 2);
    }
    if (zero_point) {
        t.zeros.resize(n_groups);
        for (uint8_t &z : t.zeros)
            z = (uint8_t)(rng() % (enc == TERN_ENC_Q8 ? 256 : 16));
    }
    t.w.encoding = enc;
    t.w.layout = TERN_LAYOUT_ROW_MAJOR;
    t.w.rows = rows;
    t.w.cols = cols;
    t.w.values = t.values.data();
    t.w.scales = quant ? t.scales.data() : nullptr;
    t.w.zeros = zero_point ? t.zeros.data() : nullptr;
    t.w.group_size = quant ? (uint32_t)gs : 0;
    t.w.flags = zero_point ? TERN_TENSOR_HAS_ZERO_POINT : 0;
    return t;
}

std::vector<float> RandomFloats(std::mt19937 &rng, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &f : v)
        f = dist(rng);
    return v;
}

// ---- Float linear: bits independent of the tile ------------------------------

struct FloatCase {
    const char *name;
    tern_linear_fn fn;
    tern_encoding enc;
    size_t gs;
    bool zp;
};

const FloatCase kFloatCases[] = {
    {"f32", tern_f32_f32w_linear_ukernel_4x4__neon, TERN_ENC_F32, 0, false},
    {"f16", tern_f32_f16w_linear_ukernel_4x4__neon, TERN_ENC_F16, 0, false},
    {"bf16", tern_f32_bf16w_linear_ukernel_4x4__neon, TERN_ENC_BF16, 0, false},
    {"q8", tern_f32_q8w_linear_ukernel_4x4__neon, TERN_ENC_Q8, 32, false},
    {"q8 zp", tern_f32_q8w_linear_ukernel_4x4__neon, TERN_ENC_Q8, 12, true},
    {"q4", tern_f32_q4w_linear_ukernel_4x4__neon, TERN_ENC_Q4, 64, false},
    {"q4 zp", tern_f32_q4w_linear_ukernel_4x4__neon, TERN_ENC_Q4, 8, true},
};

TEST(KernelArmNeon, LinearBitsIndependentOfTile) {
    ASSERT_TRUE(CpuHas(TERN_ISA_ARM_NEON));
    uint32_t seed = 1;
    for (const FloatCase &fc : kFloatCases)
        for (size_t cols : {96, 195}) {
            if (fc.gs && cols % fc.gs) continue;
            SCOPED_TRACE(std::string(fc.name) + " cols=" + std::to_string(cols));
            std::mt19937 rng(seed++);
            const size_t rows = 23, m = 7, ldx = cols + 1, ldy = rows + 2;
            const Weight t = MakeWeight(rng, fc.enc, rows, cols, fc.gs, fc.zp);
            const std::vector<float> x = RandomFloats(rng, m * ldx, -1.0f, 1.0f);
            const std::vector<float> bias = RandomFloats(rng, rows, -1.0f, 1.0f);
            // all tokens, all rows at once
            std::vector<float> whole(m * ldy, 0.0f);
            fc.fn(m, 0, rows, x.data(), ldx, &t.w, bias.data(), whole.data(), ldy);
            // one token at a time (1x8 tiles), rows cut at odd places
            std::vector<float> single(m * ldy, 0.0f);
            const size_t cuts[] = {0, 3, 4, 13, 14, rows};
            for (size_t i = 0; i < m; i++)
                for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
                    fc.fn(1, cuts[c], cuts[c + 1], x.data() + i * ldx, ldx, &t.w, bias.data(),
                          single.data() + i * ldy, ldy);
            // tokens in pairs and threes (2x4, 3x4 tiles)
            std::vector<float> pairs(m * ldy, 0.0f);
            fc.fn(2, 1, rows, x.data(), ldx, &t.w, bias.data(), pairs.data(), ldy);
            fc.fn(2, 0, 1, x.data(), ldx, &t.w, bias.data(), pairs.data(), ldy);
            fc.fn(3, 0, rows, x.data() + 2 * ldx, ldx, &t.w, bias.data(), pairs.data() + 2 * ldy,
                  ldy);
            fc.fn(2, 0, rows, x.data() + 5 * ldx, ldx, &t.w, bias.data(), pairs.data() + 5 * ldy,
                  ldy);
            for (size_t i = 0; i < m; i++)
                for (size_t r = 0; r < rows; r++) {
                    const size_t e = i * ldy + r;
                    ASSERT_TRUE(SameBits(whole[e], single[e]))
                        << "y[" << i << "][" << r << "]: m=7 " << whole[e] << ", m=1 " << single[e];
                    ASSERT_TRUE(SameBits(whole[e], pairs[e])) << "y[" << i << "][" << r << "]: m=7 "
                                                              << whole[e] << ", m=2/3 " << pairs[e];
                }
        }
}

double DecodeF16(uint16_t h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

// HAS_MIN (GGUF Q4_1 style): w = s * q + min with unsigned q and an F16 min
// per group in the zeros plane, against a double loop decoding docs/format.md.
TEST(KernelArmNeon, LinearWithMin) {
    ASSERT_TRUE(CpuHas(TERN_ISA_ARM_NEON));
    uint32_t seed = 40;
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4})
        for (size_t gs : {8, 32, 64})
            for (size_t m : {1, 3, 5}) {
                SCOPED_TRACE("enc=" + std::to_string(enc) + " gs=" + std::to_string(gs) +
                             " m=" + std::to_string(m));
                std::mt19937 rng(seed++);
                const size_t rows = 13, cols = 128, n_groups = rows * cols / gs;
                Weight t = MakeWeight(rng, enc, rows, cols, gs, false);
                t.zeros.resize(n_groups * 2);
                for (size_t g = 0; g < n_groups; g++) {
                    const uint16_t mn =
                        (uint16_t)((rng() & 1) << 15 | (8 + rng() % 8) << 10 | (rng() & 0x3ff));
                    std::memcpy(&t.zeros[2 * g], &mn, 2);
                }
                t.w.zeros = t.zeros.data();
                t.w.flags = TERN_TENSOR_HAS_MIN;
                const std::vector<float> x = RandomFloats(rng, m * cols, -1.0f, 1.0f);
                const std::vector<float> bias = RandomFloats(rng, rows, -1.0f, 1.0f);
                std::vector<float> y(m * rows);
                const tern_linear_fn fn = enc == TERN_ENC_Q8
                                              ? tern_f32_q8w_linear_ukernel_4x4__neon
                                              : tern_f32_q4w_linear_ukernel_4x4__neon;
                fn(m, 0, rows, x.data(), cols, &t.w, bias.data(), y.data(), rows);
                for (size_t r = 0; r < rows; r++)
                    for (size_t i = 0; i < m; i++) {
                        double want = bias[r], mag = std::fabs(bias[r]);
                        for (size_t c = 0; c < cols; c++) {
                            const size_t g = r * (cols / gs) + c / gs, j = c % gs;
                            uint16_t sh, mh;
                            std::memcpy(&sh, &t.scales[2 * g], 2);
                            std::memcpy(&mh, &t.zeros[2 * g], 2);
                            int q;
                            if (enc == TERN_ENC_Q8) {
                                q = t.values[r * cols + c];
                            } else {
                                const uint8_t b =
                                    t.values[r * cols / 2 + (c / gs) * gs / 2 + j % (gs / 2)];
                                q = j < gs / 2 ? (b & 0xf) : (b >> 4);
                            }
                            const double p = x[i * cols + c] * (DecodeF16(sh) * q + DecodeF16(mh));
                            want += p;
                            mag += std::fabs(p);
                        }
                        const double tol = 2.0 * (cols + 4) * FLT_EPSILON * mag;
                        ASSERT_LE(std::fabs(y[i * rows + r] - want), tol)
                            << "y[" << i << "][" << r << "] = " << y[i * rows + r] << ", expected "
                            << want;
                    }
            }
}

// ---- Integer paths: every ARM tier against the ref, model-sized -------------------

struct QaKernel {
    tern_isa isa;
    tern_linear_qa_fn q8, q4;
};

const QaKernel kQaKernels[] = {
    {TERN_ISA_ARM_NEON, tern_qs8_q8w_linear_ukernel_2x4__neon,
     tern_qs8_q4w_linear_ukernel_2x4__neon},
    {TERN_ISA_ARM_DOTPROD, tern_qs8_q8w_linear_ukernel_2x4__dotprod,
     tern_qs8_q4w_linear_ukernel_2x4__dotprod},
    {TERN_ISA_ARM_I8MM, tern_qs8_q8w_linear_ukernel_2x4__i8mm,
     tern_qs8_q4w_linear_ukernel_2x4__i8mm},
};

TEST(KernelArmQa, TiersBitIdenticalToRef) {
    size_t tested = 0;
    for (const QaKernel &qk : kQaKernels) {
        if (!CpuHas(qk.isa)) continue;
        tested++;
        uint32_t seed = 10;
        for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4})
            for (bool zp : {false, true})
                for (size_t gs : {32, 128}) {
                    SCOPED_TRACE(std::string(tern_isa_name(qk.isa)) +
                                 " enc=" + std::to_string(enc) + " zp=" + std::to_string(zp) +
                                 " gs=" + std::to_string(gs));
                    std::mt19937 rng(seed++);
                    const size_t rows = 45, cols = 1024, m = 6, ldy = rows + 1;
                    const Weight t = MakeWeight(rng, enc, rows, cols, gs, zp);
                    // activations with a wide range of block scales
                    std::vector<float> x = RandomFloats(rng, m * cols, -1.0f, 1.0f);
                    for (size_t i = 0; i < x.size(); i++)
                        x[i] *= (float)(1 + (i / 32) % 7);
                    std::vector<int8_t> q(m * cols);
                    std::vector<float> d(m * cols / TERN_QA_BLOCK);
                    std::vector<int32_t> s(m * cols / TERN_QA_BLOCK);
                    tern_f32_qs8_quantize_ukernel__ref(m, cols, x.data(), cols, q.data(), d.data(),
                                                       s.data());
                    const tern_qrows xq = {m, cols, q.data(), d.data(), s.data()};
                    const std::vector<float> bias = RandomFloats(rng, rows, -1.0f, 1.0f);
                    const tern_linear_qa_fn fn = enc == TERN_ENC_Q8 ? qk.q8 : qk.q4;
                    const tern_linear_qa_fn ref = enc == TERN_ENC_Q8
                                                      ? tern_qs8_q8w_linear_ukernel__ref
                                                      : tern_qs8_q4w_linear_ukernel__ref;
                    for (size_t mm : {1, 2, 3, 6}) {
                        std::vector<float> want(m * ldy, -1.0f), got(m * ldy, -1.0f);
                        ref(mm, 0, rows, &xq, &t.w, bias.data(), want.data(), ldy);
                        // ranges starting off the 4-row tiles
                        const size_t cuts[] = {0, 1, 6, 7, 30, rows};
                        for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
                            fn(mm, cuts[c], cuts[c + 1], &xq, &t.w, bias.data(), got.data(), ldy);
                        for (size_t e = 0; e < want.size(); e++)
                            ASSERT_TRUE(SameBits(got[e], want[e]))
                                << "m=" << mm << " element " << e << ": " << got[e] << " vs "
                                << want[e];
                    }
                }
    }
    EXPECT_GE(tested, 1u);
}

TEST(KernelArmQa, QuantizeMatchesRef) {
    std::mt19937 rng(77);
    const size_t m = 3, k = 4096, ldx = k + 3;
    std::vector<float> x = RandomFloats(rng, m * ldx, -50.0f, 50.0f);
    // halfway cases of x * 127 / amax, tiny and zero blocks
    for (size_t i = 0; i < 64; i++)
        x[i] = (float)(int)(i % 9) * 0.5f;
    for (size_t i = 64; i < 96; i++)
        x[i] = 1e-30f * (float)(i % 5);
    for (size_t i = 96; i < 128; i++)
        x[i] = 0.0f;
    std::vector<int8_t> q1(m * k), q2(m * k);
    std::vector<float> d1(m * k / 32), d2(m * k / 32);
    std::vector<int32_t> s1(m * k / 32), s2(m * k / 32);
    tern_f32_qs8_quantize_ukernel__neon(m, k, x.data(), ldx, q1.data(), d1.data(), s1.data());
    tern_f32_qs8_quantize_ukernel__ref(m, k, x.data(), ldx, q2.data(), d2.data(), s2.data());
    EXPECT_EQ(q1, q2);
    EXPECT_EQ(s1, s2);
    for (size_t i = 0; i < d1.size(); i++)
        ASSERT_TRUE(SameBits(d1[i], d2[i])) << "block " << i;
}

// ---- The vector exponential, through silu and softmax --------------------------------

TEST(KernelArmNeon, SiluDenseSweep) {
    // every 2^-10 step over [-110, 110] plus the edges of the exponential
    std::vector<float> x;
    for (int i = -110 * 1024; i <= 110 * 1024; i++)
        x.push_back((float)i / 1024.0f);
    for (float e : {88.72f, -88.72f, 87.33f, -87.33f, 103.9f, -103.9f, 1e-20f, -1e-20f, 0.0f, -0.0f,
                    FLT_MAX, -FLT_MAX})
        x.push_back(e);
    std::vector<float> y(x.size());
    tern_f32_silu_ukernel__neon(x.size(), x.data(), y.data());
    for (size_t i = 0; i < x.size(); i++) {
        const double xd = x[i];
        const double ref = xd / (1.0 + std::exp(-xd));
        const double tol = 4.0 * FLT_EPSILON * std::fabs(ref) + FLT_MIN;
        ASSERT_LE(std::fabs((double)y[i] - ref), tol) << "silu(" << x[i] << ") = " << y[i];
    }
    float nan_in = NAN, nan_out = 0.0f;
    tern_f32_silu_ukernel__neon(1, &nan_in, &nan_out);
    EXPECT_TRUE(std::isnan(nan_out));
}

TEST(KernelArmNeon, SoftmaxWideRange) {
    // differences down to -120: weights below FLT_MIN must come out tiny or 0
    std::vector<float> x(1001);
    for (size_t i = 0; i < x.size(); i++)
        x[i] = -0.12f * (float)i + 3.0f;
    std::vector<double> ref(x.size());
    double sum = 0;
    for (size_t i = 0; i < x.size(); i++)
        sum += ref[i] = std::exp((double)x[i] - 3.0);
    tern_f32_softmax_ukernel__neon(x.size(), x.data());
    for (size_t i = 0; i < x.size(); i++) {
        const double want = ref[i] / sum;
        ASSERT_LE(std::fabs(x[i] - want), 4.0 * 1005 * FLT_EPSILON * want + FLT_MIN)
            << "element " << i << ": " << x[i] << " vs " << want;
    }
}

#else

TEST(KernelArm, NotAarch64) {
    GTEST_SKIP() << "AArch64 kernels are not built on this host";
}

#endif

} // namespace
