// Kernel tests: XNNPACK-style testers, one per kernel family, each comparing a
// kernel against an independent double-precision loop written here (weights
// decoded by this file's own F16/BF16/Q8/Q4 decoders) with K-scaled
// tolerances: |err| <= c * K * eps * sum|terms|.
//
// The same sweeps run (1) on the __ref kernels directly and (2) on every entry
// of a table built for every tier this CPU has (KernelTier/*): a new tier or a
// new SIMD kernel needs no new test code.
#include <gtest/gtest.h>

#if defined(__arm__) && defined(__linux__)
#include <sys/auxv.h>
#endif

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
#include "tests/test_tiers.h"

namespace {

constexpr double kEps = FLT_EPSILON;
// Outputs outside the range a kernel was asked for must keep this exact value.
constexpr float kSentinel = -12345.6789f;

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---- The test's own decoders -------------------------------------------------

double DecodeF16(uint16_t h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

double DecodeBF16(uint16_t h) {
    const int e = (h >> 7) & 0xff, m = h & 0x7f;
    const double v = e == 0 ? std::ldexp(m, -133) : std::ldexp(128 + m, e - 134);
    return (h & 0x8000) ? -v : v;
}

// Random finite F16 with exponent field in [lo, hi]; some subnormals when lo == 0.
uint16_t RandomF16(std::mt19937 &rng, int lo, int hi) {
    const uint32_t sign = rng() & 1, exp = lo + rng() % (hi - lo + 1), man = rng() & 0x3ff;
    return (uint16_t)(sign << 15 | exp << 10 | man);
}

uint16_t RandomBF16(std::mt19937 &rng) {
    const uint32_t sign = rng() & 1, man = rng() & 0x7f;
    const uint32_t exp = rng() % 16 == 0 ? 0 : 118 + rng() % 12; // a few subnormals
    return (uint16_t)(sign << 15 | exp << 7 | man);
}

std::vector<float> RandomFloats(std::mt19937 &rng, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &f : v) f = dist(rng);
    return v;
}

std::string Shape(std::initializer_list<std::pair<const char *, size_t>> fields) {
    std::string s;
    for (const auto &f : fields) s += std::string(f.first) + "=" + std::to_string(f.second) + " ";
    return s;
}

// ---- Linear ------------------------------------------------------------------

// A weight in its file encoding plus its decoded values, built side by side.
struct TestWeight {
    tern_weight w{};
    std::vector<uint8_t> values, scales, zeros;
    std::vector<double> dense; // rows * cols, decoded by this file
};

TestWeight MakeWeight(std::mt19937 &rng, tern_encoding enc, size_t rows, size_t cols, size_t gs,
                      bool zero_point) {
    TestWeight t;
    t.dense.resize(rows * cols);
    const size_t n_groups = (enc == TERN_ENC_Q8 || enc == TERN_ENC_Q4) ? cols / gs : 0;
    std::vector<double> scale(rows * n_groups);
    std::vector<int> zero(rows * n_groups, 0);
    if (n_groups) {
        t.scales.resize(rows * n_groups * 2);
        for (size_t i = 0; i < rows * n_groups; i++) {
            const uint16_t s = RandomF16(rng, 4, 12);
            std::memcpy(&t.scales[2 * i], &s, 2);
            scale[i] = DecodeF16(s);
        }
        if (zero_point) {
            t.zeros.resize(rows * n_groups);
            for (size_t i = 0; i < rows * n_groups; i++) {
                zero[i] = (int)(rng() % (enc == TERN_ENC_Q8 ? 256 : 16));
                t.zeros[i] = (uint8_t)zero[i];
            }
        }
    }
    switch (enc) {
    case TERN_ENC_F32: {
        t.values.resize(rows * cols * 4);
        std::vector<float> f = RandomFloats(rng, rows * cols, -1.0f, 1.0f);
        std::memcpy(t.values.data(), f.data(), t.values.size());
        for (size_t i = 0; i < rows * cols; i++) t.dense[i] = f[i];
        break;
    }
    case TERN_ENC_F16:
    case TERN_ENC_BF16:
        t.values.resize(rows * cols * 2);
        for (size_t i = 0; i < rows * cols; i++) {
            const uint16_t h = enc == TERN_ENC_F16 ? RandomF16(rng, 0, 17) : RandomBF16(rng);
            std::memcpy(&t.values[2 * i], &h, 2);
            t.dense[i] = enc == TERN_ENC_F16 ? DecodeF16(h) : DecodeBF16(h);
        }
        break;
    case TERN_ENC_Q8:
        t.values.resize(rows * cols);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                const uint8_t b = (uint8_t)rng();
                const size_t g = r * n_groups + c / gs;
                t.values[r * cols + c] = b;
                const int q = zero_point ? (int)b - zero[g] : (int)(int8_t)b;
                t.dense[r * cols + c] = scale[g] * q;
            }
        break;
    case TERN_ENC_Q4:
        // value j of a group: byte j % (G/2) of the group, low nibble for j < G/2
        t.values.assign(rows * cols / 2, 0);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                const int nib = (int)(rng() % 16);
                const size_t g = c / gs, j = c % gs;
                uint8_t &byte = t.values[r * cols / 2 + g * gs / 2 + j % (gs / 2)];
                byte |= (uint8_t)(j < gs / 2 ? nib : nib << 4);
                const size_t gi = r * n_groups + g;
                t.dense[r * cols + c] = scale[gi] * (nib - (zero_point ? zero[gi] : 8));
            }
        break;
    default:
        ADD_FAILURE() << "no test weights for encoding " << enc;
    }
    t.w.encoding = enc;
    t.w.layout = TERN_LAYOUT_ROW_MAJOR;
    t.w.rows = rows;
    t.w.cols = cols;
    t.w.values = t.values.data();
    t.w.scales = n_groups ? t.scales.data() : nullptr;
    t.w.zeros = zero_point ? t.zeros.data() : nullptr;
    t.w.group_size = (uint32_t)gs;
    t.w.flags = zero_point ? TERN_TENSOR_HAS_ZERO_POINT : 0;
    return t;
}

class LinearTester {
  public:
    LinearTester &encoding(tern_encoding e) { enc_ = e; return *this; }
    LinearTester &m(size_t v) { m_ = v; return *this; }
    LinearTester &rows(size_t v) { rows_ = v; return *this; }
    LinearTester &cols(size_t v) { cols_ = v; return *this; }
    LinearTester &group_size(size_t v) { gs_ = v; return *this; }
    LinearTester &zero_point(bool v) { zp_ = v; return *this; }
    LinearTester &bias(bool v) { bias_ = v; return *this; }
    LinearTester &range(size_t r0, size_t r1) { r0_ = r0; r1_ = r1; return *this; }
    LinearTester &x_pad(size_t v) { x_pad_ = v; return *this; }
    LinearTester &y_pad(size_t v) { y_pad_ = v; return *this; }
    LinearTester &seed(uint32_t v) { seed_ = v; return *this; }

    void Test(tern_linear_fn fn) const {
        const std::string shape = Shape({{"enc", (size_t)enc_}, {"m", m_}, {"rows", rows_},
                                         {"cols", cols_}, {"gs", gs_}, {"zp", zp_},
                                         {"bias", bias_}, {"r0", r0_}, {"r1", r1_}});
        SCOPED_TRACE(shape);
        std::mt19937 rng(seed_);
        TestWeight tw = MakeWeight(rng, enc_, rows_, cols_, gs_, zp_);
        const size_t ldx = cols_ + x_pad_, ldy = rows_ + y_pad_;
        std::vector<float> x = RandomFloats(rng, m_ * ldx, -1.0f, 1.0f);
        // the padding of x is never read: NaN there would show in the results
        for (size_t i = 0; i < m_; i++)
            for (size_t c = cols_; c < ldx; c++) x[i * ldx + c] = NAN;
        std::vector<float> b = RandomFloats(rng, rows_, -1.0f, 1.0f);
        std::vector<float> y(m_ * ldy, kSentinel);

        fn(m_, r0_, r1_, x.data(), ldx, &tw.w, bias_ ? b.data() : nullptr, y.data(), ldy);

        size_t failures = 0;
        for (size_t i = 0; i < m_ && failures < 10; i++)
            for (size_t r = 0; r < ldy && failures < 10; r++) {
                const float got = y[i * ldy + r];
                if (r < r0_ || r >= r1_) {
                    if (!SameBits(got, kSentinel)) {
                        ADD_FAILURE() << "wrote y[" << i << "][" << r << "] outside [r0, r1)";
                        failures++;
                    }
                    continue;
                }
                double ref = 0, mag = 0;
                for (size_t c = 0; c < cols_; c++) {
                    const double p = (double)x[i * ldx + c] * tw.dense[r * cols_ + c];
                    ref += p;
                    mag += std::fabs(p);
                }
                if (bias_) {
                    ref += b[r];
                    mag += std::fabs(b[r]);
                }
                // float products (and scale * q), then K float additions
                const double tol = 2.0 * (double)(cols_ + 3) * kEps * mag + cols_ * FLT_TRUE_MIN;
                if (!(std::fabs(got - ref) <= tol)) {
                    ADD_FAILURE() << "y[" << i << "][" << r << "] = " << got << ", expected "
                                  << ref << " (tol " << tol << ")";
                    failures++;
                }
            }
    }

  private:
    tern_encoding enc_ = TERN_ENC_F32;
    size_t m_ = 1, rows_ = 1, cols_ = 1, gs_ = 0, r0_ = 0, r1_ = 1, x_pad_ = 0, y_pad_ = 0;
    bool zp_ = false, bias_ = false;
    uint32_t seed_ = 1;
};

// Dense encodings: odd sizes around every power of two a SIMD tile may use.
void SweepLinearDense(tern_linear_fn fn, tern_encoding enc) {
    ASSERT_NE(fn, nullptr);
    uint32_t seed = 100 + enc;
    for (size_t cols : {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257})
        for (size_t rows : {1, 2, 5, 16, 19})
            for (size_t m : {1, 2, 3, 4, 7}) {
                LinearTester t;
                t.encoding(enc).m(m).rows(rows).cols(cols).seed(seed++);
                t.bias((cols + m) % 2 == 0).x_pad(cols % 3).y_pad(m % 2 ? 0 : 3);
                t.range(0, rows).Test(fn);
                if (rows > 2) t.range(rows / 3, rows - rows / 4).Test(fn);
                if (::testing::Test::HasFailure()) return;
            }
    // an empty range writes nothing
    LinearTester().encoding(enc).m(2).rows(4).cols(8).range(2, 2).Test(fn);
}

void SweepLinearQuant(tern_linear_fn fn, tern_encoding enc) {
    ASSERT_NE(fn, nullptr);
    uint32_t seed = 200 + enc;
    const std::vector<size_t> group_sizes = enc == TERN_ENC_Q8
                                                ? std::vector<size_t>{1, 2, 4, 8, 16, 32, 64, 128}
                                                : std::vector<size_t>{2, 4, 8, 16, 32, 64, 128};
    for (bool zp : {false, true})
        for (size_t gs : group_sizes)
            for (size_t n_groups : {1, 2, 3, 5})
                for (size_t rows : {1, 3, 17})
                    for (size_t m : {1, 2, 5}) {
                        LinearTester t;
                        t.encoding(enc).zero_point(zp).group_size(gs).cols(gs * n_groups);
                        t.m(m).rows(rows).seed(seed++).bias(n_groups % 2 == 1).x_pad(m - 1);
                        t.range(0, rows).Test(fn);
                        if (rows > 2) t.range(1, rows - 1).Test(fn);
                        if (::testing::Test::HasFailure()) return;
                    }
}

// ---- Row kernels ---------------------------------------------------------------

const std::vector<size_t> kRowSizes = {1,  2,  3,  4,  5,   7,   8,   9,   15,  16,  17,
                                       31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4099};

// Output buffer with guard elements after n that must keep the sentinel.
struct Guarded {
    explicit Guarded(size_t n) : n(n), buf(n + 16, kSentinel) {}
    float *data() { return buf.data(); }
    float operator[](size_t i) const { return buf[i]; }
    void CheckGuard() const {
        for (size_t i = n; i < buf.size(); i++)
            if (!SameBits(buf[i], kSentinel)) {
                ADD_FAILURE() << "wrote past the end at element " << i << " of " << n;
                return;
            }
    }
    size_t n;
    std::vector<float> buf;
};

#define EXPECT_WITHIN(got, ref, tol, i)                                                       \
    do {                                                                                      \
        if (!(std::fabs((double)(got) - (ref)) <= (tol))) {                                   \
            ADD_FAILURE() << "element " << (i) << ": " << (got) << ", expected " << (ref)     \
                          << " (tol " << (tol) << ")";                                        \
            return;                                                                           \
        }                                                                                     \
    } while (0)

void CheckRmsnorm(void (*fn)(size_t, const float *, const float *, float, float *), size_t n,
                  uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}}));
    std::mt19937 rng(seed);
    const std::vector<float> x = RandomFloats(rng, n, -3.0f, 3.0f);
    const std::vector<float> w = RandomFloats(rng, n, -2.0f, 2.0f);
    const float eps = 1e-5f;
    Guarded y(n);
    fn(n, x.data(), w.data(), eps, y.data());
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (size_t i = 0; i < n; i++) {
        const double ref = x[i] * inv * w[i];
        EXPECT_WITHIN(y[i], ref, 2.0 * (n + 6) * kEps * std::fabs(ref), i);
    }
    y.CheckGuard();
    // in place
    std::vector<float> z = x;
    fn(n, z.data(), w.data(), eps, z.data());
    for (size_t i = 0; i < n; i++) ASSERT_TRUE(SameBits(z[i], y[i])) << "in place differs at " << i;
}

void CheckLayernorm(void (*fn)(size_t, const float *, const float *, const float *, float, float *),
                    size_t n, bool with_bias, uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}, {"bias", with_bias}}));
    std::mt19937 rng(seed);
    const std::vector<float> x = RandomFloats(rng, n, -2.0f, 3.0f); // mean away from 0
    const std::vector<float> w = RandomFloats(rng, n, -2.0f, 2.0f);
    const std::vector<float> b = RandomFloats(rng, n, -1.0f, 1.0f);
    const float eps = 1e-5f;
    Guarded y(n);
    fn(n, x.data(), w.data(), with_bias ? b.data() : nullptr, eps, y.data());
    double mean = 0, mean_abs = 0, var = 0;
    for (size_t i = 0; i < n; i++) {
        mean += x[i];
        mean_abs += std::fabs(x[i]);
    }
    mean /= n;
    mean_abs /= n;
    for (size_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const double inv = 1.0 / std::sqrt(var / n + eps);
    for (size_t i = 0; i < n; i++) {
        const double ref = (x[i] - mean) * inv * w[i] + (with_bias ? b[i] : 0.0);
        const double tol = 4.0 * (n + 6) * kEps * (std::fabs(x[i] - mean) + mean_abs) * inv *
                               std::fabs(w[i]) +
                           2.0 * kEps * std::fabs(ref);
        EXPECT_WITHIN(y[i], ref, tol, i);
    }
    y.CheckGuard();
    std::vector<float> z = x;
    fn(n, z.data(), w.data(), with_bias ? b.data() : nullptr, eps, z.data());
    for (size_t i = 0; i < n; i++) ASSERT_TRUE(SameBits(z[i], y[i])) << "in place differs at " << i;
}

void CheckSoftmax(void (*fn)(size_t, float *), size_t n, float offset, uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}, {"offset", (size_t)offset}}));
    std::mt19937 rng(seed);
    std::vector<float> x = RandomFloats(rng, n, offset - 10.0f, offset + 10.0f);
    std::vector<double> ref(n);
    double max = x[0], sum = 0;
    for (float v : x) max = std::max(max, (double)v);
    for (size_t i = 0; i < n; i++) sum += ref[i] = std::exp(x[i] - max);
    for (double &r : ref) r /= sum;
    Guarded y(n);
    std::copy(x.begin(), x.end(), y.data());
    fn(n, y.data());
    for (size_t i = 0; i < n; i++)
        EXPECT_WITHIN(y[i], ref[i], 4.0 * (n + 4) * kEps * ref[i] + FLT_TRUE_MIN, i);
    y.CheckGuard();
}

// RoPE against its formula, pairs as each variant defines them.
void CheckRope(tern_rope_fn fn, bool interleaved, size_t n_heads, size_t head_dim, size_t pos,
               uint32_t seed) {
    SCOPED_TRACE(Shape({{"interleaved", interleaved}, {"heads", n_heads}, {"dim", head_dim},
                        {"pos", pos}}));
    std::mt19937 rng(seed);
    const size_t half = head_dim / 2;
    std::vector<float> cs(half), sn(half);
    for (size_t j = 0; j < half; j++) {
        const double theta = pos * std::pow(10000.0, -2.0 * j / head_dim);
        cs[j] = (float)std::cos(theta);
        sn[j] = (float)std::sin(theta);
    }
    const std::vector<float> x = RandomFloats(rng, n_heads * head_dim, -2.0f, 2.0f);
    Guarded y(n_heads * head_dim);
    std::copy(x.begin(), x.end(), y.data());
    fn(n_heads, head_dim, y.data(), cs.data(), sn.data());
    for (size_t h = 0; h < n_heads; h++)
        for (size_t j = 0; j < half; j++) {
            const size_t i0 = h * head_dim + (interleaved ? 2 * j : j);
            const size_t i1 = h * head_dim + (interleaved ? 2 * j + 1 : j + half);
            const double x0 = x[i0], x1 = x[i1], c = cs[j], s = sn[j];
            // two rounded products and one rounded sum each
            const double tol0 = 2.0 * kEps * (std::fabs(x0 * c) + std::fabs(x1 * s)) + FLT_MIN;
            const double tol1 = 2.0 * kEps * (std::fabs(x0 * s) + std::fabs(x1 * c)) + FLT_MIN;
            EXPECT_WITHIN(y[i0], x0 * c - x1 * s, tol0, i0);
            EXPECT_WITHIN(y[i1], x0 * s + x1 * c, tol1, i1);
        }
    y.CheckGuard();
}

double Silu(double x) { return x / (1.0 + std::exp(-x)); }

// AArch32 NEON always flushes subnormals to zero (ARM ARM: Advanced SIMD uses
// the FPSCR "standard value"), so e^x below FLT_MIN becomes 0 inside the 32-bit
// neon tier: x * e^x then loses up to |x| * FLT_MIN. No flush elsewhere.
#if defined(__arm__)
constexpr double kNeonFlushSlack = 1.0;
#else
constexpr double kNeonFlushSlack = 0.0;
#endif

// Inputs for the activations: a random spread plus the edges of expf's range.
std::vector<float> ActivationInputs(std::mt19937 &rng, size_t n) {
    std::vector<float> x = RandomFloats(rng, n, -12.0f, 12.0f);
    const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 100.0f, -100.0f, -1000.0f};
    for (size_t i = 0; i < n && i < sizeof edges / sizeof edges[0]; i++) x[(i * 7) % n] = edges[i];
    return x;
}

void CheckSilu(void (*fn)(size_t, const float *, float *), size_t n, uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}}));
    std::mt19937 rng(seed);
    const std::vector<float> x = ActivationInputs(rng, n);
    Guarded y(n);
    fn(n, x.data(), y.data());
    for (size_t i = 0; i < n; i++) {
        const double ref = Silu(x[i]);
        EXPECT_WITHIN(y[i], ref, 4.0 * kEps * std::fabs(ref) + FLT_MIN + kNeonFlushSlack * std::fabs(x[i]) * FLT_MIN, i);
    }
    y.CheckGuard();
}

void CheckGelu(void (*fn)(size_t, const float *, float *), size_t n, uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}}));
    std::mt19937 rng(seed);
    const std::vector<float> x = ActivationInputs(rng, n);
    Guarded y(n);
    fn(n, x.data(), y.data());
    for (size_t i = 0; i < n; i++) {
        const double ref = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
        // 1 + erf cancels for negative x: the error scales with |x|, not |y|
        EXPECT_WITHIN(y[i], ref, 4.0 * kEps * (std::fabs(ref) + std::fabs(x[i])) + FLT_MIN, i);
    }
    y.CheckGuard();
}

void CheckSwiglu(void (*fn)(size_t, const float *, const float *, float *), size_t n,
                 uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}}));
    std::mt19937 rng(seed);
    const std::vector<float> gate = ActivationInputs(rng, n);
    const std::vector<float> up = RandomFloats(rng, n, -3.0f, 3.0f);
    Guarded y(n);
    fn(n, gate.data(), up.data(), y.data());
    for (size_t i = 0; i < n; i++) {
        const double ref = Silu(gate[i]) * up[i];
        EXPECT_WITHIN(y[i], ref,
                      5.0 * kEps * std::fabs(ref) + FLT_MIN * std::fabs(up[i]) +
                          kNeonFlushSlack * std::fabs(gate[i] * up[i]) * FLT_MIN,
                      i);
    }
    y.CheckGuard();
    std::vector<float> g = gate; // y aliasing gate
    fn(n, g.data(), up.data(), g.data());
    for (size_t i = 0; i < n; i++) ASSERT_TRUE(SameBits(g[i], y[i])) << "in place differs at " << i;
}

void CheckAdd(void (*fn)(size_t, const float *, const float *, float *), size_t n, uint32_t seed) {
    SCOPED_TRACE(Shape({{"n", n}}));
    std::mt19937 rng(seed);
    const std::vector<float> a = RandomFloats(rng, n, -100.0f, 100.0f);
    const std::vector<float> b = RandomFloats(rng, n, -1.0f, 1.0f);
    Guarded y(n);
    fn(n, a.data(), b.data(), y.data());
    // one correctly rounded addition: exact
    for (size_t i = 0; i < n; i++)
        ASSERT_TRUE(SameBits(y[i], (float)((double)a[i] + b[i]))) << "element " << i;
    y.CheckGuard();
    std::vector<float> ya = a, yb = b;
    fn(n, ya.data(), b.data(), ya.data());
    fn(n, a.data(), yb.data(), yb.data());
    for (size_t i = 0; i < n; i++) {
        ASSERT_TRUE(SameBits(ya[i], y[i])) << "y aliasing a differs at " << i;
        ASSERT_TRUE(SameBits(yb[i], y[i])) << "y aliasing b differs at " << i;
    }
}

// ---- Attention -----------------------------------------------------------------

class AttentionTester {
  public:
    AttentionTester &heads(size_t n_head, size_t n_head_kv) {
        n_head_ = n_head;
        n_head_kv_ = n_head_kv;
        h1_ = n_head;
        return *this;
    }
    AttentionTester &head_dim(size_t v) { d_ = v; return *this; }
    AttentionTester &n_kv(size_t v) { n_kv_ = v; return *this; }
    AttentionTester &capacity(size_t v) { cap_ = v; return *this; } // positions per KV head
    AttentionTester &range(size_t h0, size_t h1) { h0_ = h0; h1_ = h1; return *this; }
    AttentionTester &q_magnitude(float v) { qmag_ = v; return *this; }
    AttentionTester &seed(uint32_t v) { seed_ = v; return *this; }
    AttentionTester &kv_type(tern_kv_type v) { kv_type_ = v; return *this; }

    void Test(tern_attention_fn fn) const {
        SCOPED_TRACE(Shape({{"n_head", n_head_}, {"n_head_kv", n_head_kv_}, {"dim", d_},
                            {"n_kv", n_kv_}, {"cap", cap_}, {"h0", h0_}, {"h1", h1_},
                            {"kv_type", (size_t)kv_type_}}));
        std::mt19937 rng(seed_);
        const size_t cap = std::max(cap_, n_kv_), stride = cap * d_;
        const std::vector<float> q = RandomFloats(rng, n_head_ * d_, -qmag_, qmag_);
        std::vector<float> k = RandomFloats(rng, n_head_kv_ * stride, -1.0f, 1.0f);
        std::vector<float> v = RandomFloats(rng, n_head_kv_ * stride, -1.0f, 1.0f);
        // positions >= n_kv are never read
        for (size_t j = 0; j < n_head_kv_; j++)
            for (size_t i = n_kv_ * d_; i < stride; i++) k[j * stride + i] = v[j * stride + i] = NAN;
        // F16 / Q8 caches: stored values, and k, v replaced by what they hold
        // (decoded here, by this file's F16 decoder and scale * q)
        std::vector<uint16_t> k16, v16;
        std::vector<int8_t> k8, v8;
        std::vector<float> ks, vs;
        if (kv_type_ == TERN_KV_F16) {
            k16.resize(k.size());
            v16.resize(v.size());
            for (size_t i = 0; i < k.size(); i++) {
                k16[i] = std::isnan(k[i]) ? 0x7e00 : RandomF16(rng, 8, 16);
                v16[i] = std::isnan(v[i]) ? 0x7e00 : RandomF16(rng, 8, 16);
                if (!std::isnan(k[i])) k[i] = (float)DecodeF16(k16[i]);
                if (!std::isnan(v[i])) v[i] = (float)DecodeF16(v16[i]);
            }
        } else if (kv_type_ == TERN_KV_Q8) {
            k8.resize(k.size());
            v8.resize(v.size());
            ks.assign(n_head_kv_ * cap, NAN); // unread past n_kv
            vs.assign(n_head_kv_ * cap, NAN);
            for (size_t j = 0; j < n_head_kv_; j++)
                for (size_t p = 0; p < n_kv_; p++) {
                    ks[j * cap + p] = std::ldexp(1.0f + (float)(rng() % 64) / 64.0f, -7);
                    vs[j * cap + p] = std::ldexp(1.0f + (float)(rng() % 64) / 64.0f, -7);
                }
            for (size_t i = 0; i < k.size(); i++) {
                const size_t j = i / stride, p = (i % stride) / d_;
                k8[i] = (int8_t)((int)(rng() % 255) - 127);
                v8[i] = (int8_t)((int)(rng() % 255) - 127);
                if (p < n_kv_) {
                    k[i] = (float)((double)ks[j * cap + p] * k8[i]);
                    v[i] = (float)((double)vs[j * cap + p] * v8[i]);
                }
            }
        }
        std::vector<float> out(n_head_ * d_, kSentinel);
        tern_attention_args a{};
        a.head_dim = d_;
        a.n_head = n_head_;
        a.n_head_kv = n_head_kv_;
        a.n_kv = n_kv_;
        a.kv_head_stride = stride;
        a.scale = (float)(1.0 / std::sqrt((double)d_));
        a.q = q.data();
        a.k = k.data();
        a.v = v.data();
        a.out = out.data();
        a.kv_type = kv_type_;
        if (kv_type_ == TERN_KV_F16) {
            a.k = k16.data();
            a.v = v16.data();
        } else if (kv_type_ == TERN_KV_Q8) {
            a.k = k8.data();
            a.v = v8.data();
            a.k_scale = ks.data();
            a.v_scale = vs.data();
            a.kv_scale_stride = cap;
        }
        fn(&a, h0_, h1_);

        for (size_t h = 0; h < n_head_; h++) {
            if (h < h0_ || h >= h1_) {
                for (size_t j = 0; j < d_; j++)
                    ASSERT_TRUE(SameBits(out[h * d_ + j], kSentinel)) << "wrote head " << h;
                continue;
            }
            const size_t kvh = h / (n_head_ / n_head_kv_);
            const float *kh = &k[kvh * stride], *vh = &v[kvh * stride], *qh = &q[h * d_];
            std::vector<double> s(n_kv_);
            double max = -INFINITY, sum = 0, err_s = 0;
            for (size_t p = 0; p < n_kv_; p++) {
                double dot = 0, mag = 0;
                for (size_t j = 0; j < d_; j++) {
                    dot += (double)qh[j] * kh[p * d_ + j];
                    mag += std::fabs((double)qh[j] * kh[p * d_ + j]);
                }
                s[p] = dot * a.scale;
                err_s = std::max(err_s, (d_ + 4) * kEps * mag * a.scale);
                max = std::max(max, s[p]);
            }
            for (size_t p = 0; p < n_kv_; p++) sum += s[p] = std::exp(s[p] - max);
            // an error e in a score is a relative error ~e in its weight; the
            // rescales and sums add ~n_kv roundings
            const double rel = 2.0 * (2.0 * err_s + (n_kv_ + d_ + 4) * kEps);
            for (size_t j = 0; j < d_; j++) {
                double ref = 0, mag = 0;
                for (size_t p = 0; p < n_kv_; p++) {
                    ref += s[p] / sum * vh[p * d_ + j];
                    mag += s[p] / sum * std::fabs(vh[p * d_ + j]);
                }
                const float got = out[h * d_ + j];
                ASSERT_LE(std::fabs(got - ref), rel * mag + FLT_MIN)
                    << "head " << h << " dim " << j << ": " << got << ", expected " << ref;
            }
        }
    }

  private:
    size_t n_head_ = 1, n_head_kv_ = 1, d_ = 1, n_kv_ = 1, cap_ = 0, h0_ = 0, h1_ = 1;
    float qmag_ = 1.0f;
    uint32_t seed_ = 1;
    tern_kv_type kv_type_ = TERN_KV_F32;
};

void SweepAttention(tern_attention_fn fn, tern_kv_type kv = TERN_KV_F32) {
    ASSERT_NE(fn, nullptr);
    uint32_t seed = 300;
    const std::pair<size_t, size_t> head_shapes[] = {{1, 1}, {4, 4}, {8, 2}, {6, 1}, {12, 4}};
    for (const auto &hs : head_shapes)
        for (size_t d : {1, 3, 8, 16, 64})
            for (size_t n_kv : {1, 2, 3, 4, 7, 16, 31, 33, 64, 70}) {
                AttentionTester t;
                t.heads(hs.first, hs.second).head_dim(d).n_kv(n_kv).seed(seed++).kv_type(kv);
                // large q makes the softmax peaky, so the running max moves often
                t.q_magnitude(seed % 2 ? 1.0f : 6.0f);
                t.Test(fn);
                t.capacity(72).Test(fn);
                if (hs.first > 2) t.range(1, hs.first - 1).Test(fn);
                if (::testing::Test::HasFailure()) return;
            }
}

// ---- Sweeps over a whole table ---------------------------------------------------

void SweepRowKernels(const tern_kernels &k) {
    ASSERT_NE(k.rmsnorm, nullptr);
    ASSERT_NE(k.layernorm, nullptr);
    ASSERT_NE(k.softmax, nullptr);
    ASSERT_NE(k.silu, nullptr);
    ASSERT_NE(k.gelu, nullptr);
    ASSERT_NE(k.swiglu, nullptr);
    ASSERT_NE(k.add, nullptr);
    uint32_t seed = 400;
    for (size_t n : kRowSizes) {
        CheckRmsnorm(k.rmsnorm, n, seed++);
        CheckLayernorm(k.layernorm, n, true, seed++);
        CheckLayernorm(k.layernorm, n, false, seed++);
        CheckSoftmax(k.softmax, n, 0.0f, seed++);
        CheckSoftmax(k.softmax, n, 1000.0f, seed++); // exp would overflow without the max
        CheckSilu(k.silu, n, seed++);
        CheckGelu(k.gelu, n, seed++);
        CheckSwiglu(k.swiglu, n, seed++);
        CheckAdd(k.add, n, seed++);
        if (::testing::Test::HasFailure()) return;
    }
}

void SweepRope(const tern_kernels &k) {
    ASSERT_NE(k.rope_half, nullptr);
    ASSERT_NE(k.rope_interleaved, nullptr);
    uint32_t seed = 500;
    for (size_t d : {2, 4, 6, 8, 16, 34, 64, 128})
        for (size_t n_heads : {1, 2, 3, 7})
            for (size_t pos : {0, 1, 17, 4095}) {
                CheckRope(k.rope_half, false, n_heads, d, pos, seed++);
                CheckRope(k.rope_interleaved, true, n_heads, d, pos, seed++);
                if (::testing::Test::HasFailure()) return;
            }
}

// ---- Quantised activations ---------------------------------------------------------

// Quantised rows with their own storage.
struct QRows {
    std::vector<int8_t> q;
    std::vector<float> d;
    std::vector<int32_t> s;
    tern_qrows view(size_t m, size_t k) const { return {m, k, q.data(), d.data(), s.data()}; }
};

QRows Quantize(decltype(tern_kernels::quantize_rows) fn, size_t m, size_t k, const float *x,
               size_t ldx) {
    QRows r;
    r.q.assign(m * k, 99);
    r.d.assign(m * k / TERN_QA_BLOCK, -1.0f);
    r.s.assign(m * k / TERN_QA_BLOCK, -1);
    fn(m, k, x, ldx, r.q.data(), r.d.data(), r.s.data());
    return r;
}

// quantize_rows against its definition: d = amax / 127, q the nearest integer
// to x / d (within rounding of 127 / amax), s the sum of q.
void CheckQuantize(decltype(tern_kernels::quantize_rows) fn, size_t m, size_t k, size_t pad,
                   uint32_t seed) {
    SCOPED_TRACE(Shape({{"m", m}, {"k", k}, {"pad", pad}}));
    std::mt19937 rng(seed);
    const size_t ldx = k + pad, nb = k / TERN_QA_BLOCK;
    std::vector<float> x = RandomFloats(rng, m * ldx, -2.0f, 2.0f);
    for (size_t i = 0; i < m; i++)
        for (size_t c = k; c < ldx; c++) x[i * ldx + c] = NAN;
    if (nb > 1) // an all-zero block: d = 0, q = 0
        for (size_t c = TERN_QA_BLOCK; c < 2 * TERN_QA_BLOCK; c++) x[c] = 0.0f;
    const QRows r = Quantize(fn, m, k, x.data(), ldx);
    for (size_t i = 0; i < m; i++)
        for (size_t b = 0; b < nb; b++) {
            double amax = 0;
            for (size_t j = 0; j < TERN_QA_BLOCK; j++)
                amax = std::max(amax, (double)std::fabs(x[i * ldx + b * TERN_QA_BLOCK + j]));
            ASSERT_TRUE(SameBits(r.d[i * nb + b], (float)(amax / 127.0)))
                << "d of row " << i << " block " << b;
            int32_t sum = 0;
            for (size_t j = 0; j < TERN_QA_BLOCK; j++) {
                const size_t c = b * TERN_QA_BLOCK + j;
                const int q = r.q[i * k + c];
                const double want = amax > 0 ? x[i * ldx + c] * 127.0 / amax : 0.0;
                ASSERT_LE(std::fabs(q - want), 0.5 + 1e-5) << "q[" << i << "][" << c << "]";
                ASSERT_LE(std::abs(q), 127);
                sum += q;
            }
            ASSERT_EQ(r.s[i * nb + b], sum) << "s of row " << i << " block " << b;
        }
}

void SweepQuantize(decltype(tern_kernels::quantize_rows) fn) {
    ASSERT_NE(fn, nullptr);
    uint32_t seed = 600;
    for (size_t k : {32, 64, 96, 576})
        for (size_t m : {1, 3})
            for (size_t pad : {0, 5}) {
                CheckQuantize(fn, m, k, pad, seed++);
                if (::testing::Test::HasFailure()) return;
            }
}

// linear_qa against a double loop over the dequantised activations d * q: the
// kernel rounds dw * dx and each block's fmaf once.
void CheckLinearQa(tern_linear_qa_fn fn, decltype(tern_kernels::quantize_rows) quantize,
                   tern_linear_qa_fn ref, tern_encoding enc, size_t m, size_t rows, size_t cols,
                   size_t gs, bool zp, bool with_bias, uint32_t seed) {
    SCOPED_TRACE(Shape({{"enc", (size_t)enc}, {"m", m}, {"rows", rows}, {"cols", cols},
                        {"gs", gs}, {"zp", zp}, {"bias", with_bias}}));
    std::mt19937 rng(seed);
    TestWeight tw = MakeWeight(rng, enc, rows, cols, gs, zp);
    const std::vector<float> x = RandomFloats(rng, m * cols, -1.0f, 1.0f);
    const std::vector<float> b = RandomFloats(rng, rows, -1.0f, 1.0f);
    const QRows qr = Quantize(quantize, m, cols, x.data(), cols);
    const tern_qrows xq = qr.view(m, cols);
    const size_t ldy = rows + 2, nb = cols / TERN_QA_BLOCK;
    const float *bias = with_bias ? b.data() : nullptr;
    std::vector<float> y(m * ldy, kSentinel);
    fn(m, 0, rows, &xq, &tw.w, bias, y.data(), ldy);
    for (size_t i = 0; i < m; i++)
        for (size_t r = 0; r < ldy; r++) {
            const float got = y[i * ldy + r];
            if (r >= rows) {
                ASSERT_TRUE(SameBits(got, kSentinel)) << "wrote y[" << i << "][" << r << "]";
                continue;
            }
            double want = 0, mag = 0;
            for (size_t c = 0; c < cols; c++) {
                const double p = (double)qr.d[i * nb + c / TERN_QA_BLOCK] * qr.q[i * cols + c] *
                                 tw.dense[r * cols + c];
                want += p;
                mag += std::fabs(p);
            }
            if (bias) {
                want += b[r];
                mag += std::fabs(b[r]);
            }
            const double tol = 2.0 * (double)(cols / std::min<size_t>(gs, 32) + 4) * kEps * mag +
                               FLT_TRUE_MIN * cols;
            ASSERT_LE(std::fabs(got - want), tol)
                << "y[" << i << "][" << r << "] = " << got << ", expected " << want;
        }
    if (!ref) return;
    // the integer contract: bit-identical to ref, also for any split of the rows
    std::vector<float> yr(m * ldy, kSentinel), ys(m * ldy, kSentinel);
    ref(m, 0, rows, &xq, &tw.w, bias, yr.data(), ldy);
    const size_t cut = rows / 3;
    fn(m, 0, cut, &xq, &tw.w, bias, ys.data(), ldy);
    fn(m, cut, rows, &xq, &tw.w, bias, ys.data(), ldy);
    for (size_t i = 0; i < m * ldy; i++) {
        ASSERT_TRUE(SameBits(y[i], yr[i])) << "differs from ref at " << i << ": " << y[i]
                                           << " vs " << yr[i];
        ASSERT_TRUE(SameBits(ys[i], yr[i])) << "split at row " << cut << " differs at " << i;
    }
}

void SweepLinearQa(tern_linear_qa_fn fn, decltype(tern_kernels::quantize_rows) quantize,
                   tern_linear_qa_fn ref, tern_encoding enc) {
    ASSERT_NE(fn, nullptr);
    uint32_t seed = 700 + enc;
    // (group size, columns): multiples of 32, divisors of 32, and 48 whose
    // groups straddle the activation blocks
    const std::pair<size_t, size_t> shapes[] = {{32, 32},  {32, 96},  {64, 64},  {64, 192},
                                                {128, 256}, {96, 192}, {16, 64}, {8, 32},
                                                {48, 96}};
    for (bool zp : {false, true})
        for (const auto &sh : shapes)
            for (size_t rows : {1, 7, 8, 9, 19})
                for (size_t m : {1, 2, 5, 17}) {
                    CheckLinearQa(fn, quantize, ref, enc, m, rows, sh.second, sh.first, zp,
                                  (rows + m) % 2 == 0, seed++);
                    if (::testing::Test::HasFailure()) return;
                }
}

// Float linear kernels split over rows must give the same bits as one call
// (the runtime's threads split rows; logits may not depend on the count).
void CheckLinearSplit(tern_linear_fn fn, tern_encoding enc, size_t gs) {
    std::mt19937 rng(800 + enc);
    const size_t rows = 37, cols = 128;
    for (size_t m : {1, 3, 4, 9}) {
        SCOPED_TRACE(Shape({{"enc", (size_t)enc}, {"m", m}}));
        TestWeight tw = MakeWeight(rng, enc, rows, cols, gs, false);
        const std::vector<float> x = RandomFloats(rng, m * cols, -1.0f, 1.0f);
        std::vector<float> whole(m * rows), split(m * rows);
        fn(m, 0, rows, x.data(), cols, &tw.w, nullptr, whole.data(), rows);
        for (size_t r0 = 0; r0 < rows; r0 += 5)
            fn(m, r0, std::min(rows, r0 + 5), x.data(), cols, &tw.w, nullptr, split.data(), rows);
        for (size_t i = 0; i < m * rows; i++)
            ASSERT_TRUE(SameBits(whole[i], split[i])) << "element " << i;
    }
}

tern_kernels RefTable() {
    tern_kernels k;
    std::memset(&k, 0, sizeof k);
    tern_kernels_init_ref(&k);
    return k;
}

// ---- The __ref kernels against the double loops ----------------------------------

TEST(KernelRef, LinearF32) { SweepLinearDense(tern_f32_f32w_linear_ukernel__ref, TERN_ENC_F32); }
TEST(KernelRef, LinearF16) { SweepLinearDense(tern_f32_f16w_linear_ukernel__ref, TERN_ENC_F16); }
TEST(KernelRef, LinearBF16) { SweepLinearDense(tern_f32_bf16w_linear_ukernel__ref, TERN_ENC_BF16); }
TEST(KernelRef, LinearQ8) { SweepLinearQuant(tern_f32_q8w_linear_ukernel__ref, TERN_ENC_Q8); }
TEST(KernelRef, LinearQ4) { SweepLinearQuant(tern_f32_q4w_linear_ukernel__ref, TERN_ENC_Q4); }
TEST(KernelRef, RowKernels) { SweepRowKernels(RefTable()); }
TEST(KernelRef, Rope) { SweepRope(RefTable()); }
TEST(KernelRef, Attention) { SweepAttention(tern_f32_attention_ukernel__ref); }
TEST(KernelRef, AttentionF16Cache) { SweepAttention(tern_f32_attention_ukernel__ref, TERN_KV_F16); }
TEST(KernelRef, AttentionQ8Cache) { SweepAttention(tern_f32_attention_ukernel__ref, TERN_KV_Q8); }

TEST(KernelRef, Quantize) { SweepQuantize(tern_f32_qs8_quantize_ukernel__ref); }
TEST(KernelRef, LinearQaQ8) {
    SweepLinearQa(tern_qs8_q8w_linear_ukernel__ref, tern_f32_qs8_quantize_ukernel__ref, nullptr,
                  TERN_ENC_Q8);
}
TEST(KernelRef, LinearQaQ4) {
    SweepLinearQa(tern_qs8_q4w_linear_ukernel__ref, tern_f32_qs8_quantize_ukernel__ref, nullptr,
                  TERN_ENC_Q4);
}

// The integer contract by hand: x = [1, -0.5] * 16 (block amax 1, d = 1/127,
// q = 127, -64 (ties to even)), Q8 weights 2 and -3 with scale 0.5.
TEST(KernelRef, LinearQaKnownValues) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = j % 2 ? -0.5f : 1.0f;
    int8_t q[32];
    float d;
    int32_t s;
    tern_f32_qs8_quantize_ukernel__ref(1, 32, x, 32, q, &d, &s);
    EXPECT_EQ(q[0], 127);
    EXPECT_EQ(q[1], -64); // -63.5 rounds to even
    EXPECT_EQ(s, 16 * (127 - 64));
    EXPECT_EQ(d, 1.0f / 127.0f);
    int8_t wv[32];
    for (int j = 0; j < 32; j++) wv[j] = j % 2 ? -3 : 2;
    const uint16_t scale = 0x3800; // 0.5
    tern_weight w{};
    w.encoding = TERN_ENC_Q8;
    w.rows = 1;
    w.cols = 32;
    w.group_size = 32;
    w.values = wv;
    w.scales = &scale;
    const tern_qrows xq = {1, 32, q, &d, &s};
    float y;
    tern_qs8_q8w_linear_ukernel__ref(1, 0, 1, &xq, &w, nullptr, &y, 1);
    const int dot = 16 * (127 * 2 + 64 * 3);
    EXPECT_EQ(y, std::fmaf((float)dot, 0.5f * (1.0f / 127.0f), 0.0f));
}

// Hand-computed cases, so a shared mistake between kernel and tester shows.
TEST(KernelRef, KnownValues) {
    // W = [[1, 2], [3, 4]], x = [1, -1], bias = [0.5, -0.5]
    const float wv[] = {1, 2, 3, 4}, x[] = {1, -1}, bias[] = {0.5f, -0.5f};
    tern_weight w{};
    w.encoding = TERN_ENC_F32;
    w.rows = 2;
    w.cols = 2;
    w.values = wv;
    float y[2];
    tern_f32_f32w_linear_ukernel__ref(1, 0, 2, x, 2, &w, bias, y, 2);
    EXPECT_EQ(y[0], -0.5f);
    EXPECT_EQ(y[1], -1.5f);

    // Q4, one group of 4: byte j holds value j (low nibble) and value j + 2
    // (high nibble), so 0x31, 0x42 are the values 1, 2, 3, 4 in column order;
    // scale 0.5 (F16 0x3800); symmetric: w = 0.5 * (v - 8)
    const uint8_t q4[] = {0x31, 0x42};
    const uint16_t scale = 0x3800;
    w.encoding = TERN_ENC_Q4;
    w.rows = 1;
    w.cols = 4;
    w.group_size = 4;
    w.values = q4;
    w.scales = &scale;
    const float x4[] = {1, 10, 100, 1000};
    tern_f32_q4w_linear_ukernel__ref(1, 0, 1, x4, 4, &w, nullptr, y, 1);
    EXPECT_EQ(y[0], 0.5f * (-7 - 60 - 500 - 4000));
    const uint8_t zero = 1; // with a zero point of 1: w = 0.5 * (v - 1)
    w.zeros = &zero;
    w.flags = TERN_TENSOR_HAS_ZERO_POINT;
    tern_f32_q4w_linear_ukernel__ref(1, 0, 1, x4, 4, &w, nullptr, y, 1);
    EXPECT_EQ(y[0], 0.5f * (0 + 10 + 200 + 3000));

    float s[] = {1.0f, 1.0f, 1.0f, 1.0f};
    tern_f32_softmax_ukernel__ref(4, s);
    for (float v : s) EXPECT_EQ(v, 0.25f);
    float g = 0.0f, gy;
    tern_f32_gelu_ukernel__ref(1, &g, &gy);
    EXPECT_EQ(gy, 0.0f);
}

// ---- Every tier this CPU has, every table entry ------------------------------------

using tern_test::AllTiers;

bool SameEntries(const tern_kernels &a, const tern_kernels &b) {
    tern_kernels x = a, y = b;
    x.isa = y.isa = TERN_ISA_REF;
    return std::memcmp(&x, &y, sizeof x) == 0; // both memset by tern_kernels_init
}

class KernelTier : public tern_test::TierTest {
  protected:
    void SetUp() override { SetUpTier(SameEntries, "kernels"); }
};

TEST_P(KernelTier, LinearF32) { SweepLinearDense(k_.linear[TERN_ENC_F32], TERN_ENC_F32); }
TEST_P(KernelTier, LinearF16) { SweepLinearDense(k_.linear[TERN_ENC_F16], TERN_ENC_F16); }
TEST_P(KernelTier, LinearBF16) { SweepLinearDense(k_.linear[TERN_ENC_BF16], TERN_ENC_BF16); }
TEST_P(KernelTier, LinearQ8) { SweepLinearQuant(k_.linear[TERN_ENC_Q8], TERN_ENC_Q8); }
TEST_P(KernelTier, LinearQ4) { SweepLinearQuant(k_.linear[TERN_ENC_Q4], TERN_ENC_Q4); }
TEST_P(KernelTier, RowKernels) { SweepRowKernels(k_); }
TEST_P(KernelTier, Rope) { SweepRope(k_); }
TEST_P(KernelTier, Attention) { SweepAttention(k_.attention); }
TEST_P(KernelTier, AttentionF16Cache) { SweepAttention(k_.attention, TERN_KV_F16); }
TEST_P(KernelTier, AttentionQ8Cache) { SweepAttention(k_.attention, TERN_KV_Q8); }
// GELU over the whole float range that matters, finer than the row sweep:
// the vector erf's error bound (kernels/simd_tmpl.h) at every tier.
TEST_P(KernelTier, GeluDenseRange) {
    std::vector<float> x;
    for (float v = -12.0f; v <= 12.0f; v += 1.0f / 1024) x.push_back(v);
    for (float v : {1e-30f, -1e-30f, 1e-6f, -1e-6f, 0.0f, -0.0f, 30.0f, -30.0f, 1e6f, -1e6f})
        x.push_back(v);
    std::vector<float> y(x.size() + 1, kSentinel);
    k_.gelu(x.size(), x.data(), y.data());
    for (size_t i = 0; i < x.size(); i++) {
        const double ref = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
        // erf to 2.2e-7 absolute (relative near 0) and 4 roundings
        const double tol = 2.5e-7 * 0.5 * std::fabs(x[i]) + 4.0 * kEps * std::fabs(ref) + FLT_TRUE_MIN;
        ASSERT_LE(std::fabs(y[i] - ref), tol) << "gelu(" << x[i] << ") = " << y[i] << ", expected " << ref;
    }
    ASSERT_TRUE(SameBits(y[x.size()], kSentinel)) << "wrote past n";
}
TEST_P(KernelTier, Quantize) {
    SweepQuantize(k_.quantize_rows);
    // bit-identical to ref on the same input
    std::mt19937 rng(650);
    const size_t m = 5, k = 640;
    std::vector<float> x = RandomFloats(rng, m * k, -3.0f, 3.0f);
    for (size_t i = 0; i < 40; i++) x[rng() % x.size()] = (float)(int)(rng() % 9) * 0.25f;
    const QRows a = Quantize(k_.quantize_rows, m, k, x.data(), k);
    const QRows b = Quantize(tern_f32_qs8_quantize_ukernel__ref, m, k, x.data(), k);
    EXPECT_EQ(a.q, b.q);
    EXPECT_EQ(a.s, b.s);
    for (size_t i = 0; i < a.d.size(); i++) ASSERT_TRUE(SameBits(a.d[i], b.d[i])) << i;
}
TEST_P(KernelTier, LinearQaQ8) {
    SweepLinearQa(k_.linear_qa[TERN_ENC_Q8], k_.quantize_rows, tern_qs8_q8w_linear_ukernel__ref,
                  TERN_ENC_Q8);
}
TEST_P(KernelTier, LinearQaQ4) {
    SweepLinearQa(k_.linear_qa[TERN_ENC_Q4], k_.quantize_rows, tern_qs8_q4w_linear_ukernel__ref,
                  TERN_ENC_Q4);
}
TEST_P(KernelTier, LinearRowSplit) {
    CheckLinearSplit(k_.linear[TERN_ENC_F32], TERN_ENC_F32, 0);
    CheckLinearSplit(k_.linear[TERN_ENC_F16], TERN_ENC_F16, 0);
    CheckLinearSplit(k_.linear[TERN_ENC_BF16], TERN_ENC_BF16, 0);
    CheckLinearSplit(k_.linear[TERN_ENC_Q8], TERN_ENC_Q8, 32);
    CheckLinearSplit(k_.linear[TERN_ENC_Q4], TERN_ENC_Q4, 64);
}
TEST_P(KernelTier, NoLinearForSideData) {
    for (int e = 0; e < TERN_ENC_COUNT_; e++)
        if (e != TERN_ENC_F32 && e != TERN_ENC_F16 && e != TERN_ENC_BF16 && e != TERN_ENC_Q8 &&
            e != TERN_ENC_Q4) {
            EXPECT_EQ(k_.linear[e], nullptr) << "encoding " << e;
        }
}

TERN_INSTANTIATE_TIERS(KernelTier);

TEST(KernelTable, RefMaskGivesRefKernels) {
    for (uint64_t mask : {TERN_ISA_MASK(TERN_ISA_REF), UINT64_C(0)}) {
        tern_kernels k;
        tern_kernels_init(&k, mask);
        EXPECT_EQ(k.isa, TERN_ISA_REF);
        EXPECT_EQ(k.linear[TERN_ENC_F32], tern_f32_f32w_linear_ukernel__ref);
        EXPECT_EQ(k.linear[TERN_ENC_F16], tern_f32_f16w_linear_ukernel__ref);
        EXPECT_EQ(k.linear[TERN_ENC_BF16], tern_f32_bf16w_linear_ukernel__ref);
        EXPECT_EQ(k.linear[TERN_ENC_Q8], tern_f32_q8w_linear_ukernel__ref);
        EXPECT_EQ(k.linear[TERN_ENC_Q4], tern_f32_q4w_linear_ukernel__ref);
        EXPECT_EQ(k.linear[TERN_ENC_I32], nullptr);
        EXPECT_EQ(k.rmsnorm, tern_f32_rmsnorm_ukernel__ref);
        EXPECT_EQ(k.layernorm, tern_f32_layernorm_ukernel__ref);
        EXPECT_EQ(k.rope_half, tern_f32_rope_half_ukernel__ref);
        EXPECT_EQ(k.rope_interleaved, tern_f32_rope_interleaved_ukernel__ref);
        EXPECT_EQ(k.softmax, tern_f32_softmax_ukernel__ref);
        EXPECT_EQ(k.swiglu, tern_f32_swiglu_ukernel__ref);
        EXPECT_EQ(k.silu, tern_f32_silu_ukernel__ref);
        EXPECT_EQ(k.gelu, tern_f32_gelu_ukernel__ref);
        EXPECT_EQ(k.add, tern_f32_add_ukernel__ref);
        EXPECT_EQ(k.attention, tern_f32_attention_ukernel__ref);
    }
}

TEST(KernelTable, FullMaskStaysWithinTheCpu) {
    tern_kernels k;
    tern_kernels_init(&k, TERN_ISA_MASK_ALL);
    const tern_isa best = tern_isa_best(TERN_ISA_MASK_ALL);
    EXPECT_LE((int)k.isa, (int)best);
    if (k.isa != TERN_ISA_REF) {
        EXPECT_EQ((int)k.isa / 16, (int)best / 16) << "other architecture";
    }
}

// ---- Tier names, masks, CPU detection -------------------------------------------------

TEST(Isa, Names) {
    EXPECT_STREQ(tern_isa_name(TERN_ISA_REF), "ref");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_X86_AVX2), "avx2");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_X86_AVX512), "avx512");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_X86_AVX512VNNI), "avx512vnni");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_ARM_NEON), "neon");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_ARM_DOTPROD), "dotprod");
    EXPECT_STREQ(tern_isa_name(TERN_ISA_ARM_I8MM), "i8mm");
    EXPECT_STREQ(tern_isa_name((tern_isa)9), "unknown");
    EXPECT_STREQ(tern_isa_name((tern_isa)-1), "unknown");
    EXPECT_EQ(AllTiers().size(), 7u);
}

TEST(Isa, MaskParse) {
    const uint64_t ref = TERN_ISA_MASK(TERN_ISA_REF);
    const uint64_t avx2 = TERN_ISA_MASK(TERN_ISA_X86_AVX2);
    const uint64_t avx512 = TERN_ISA_MASK(TERN_ISA_X86_AVX512);
    const uint64_t vnni = TERN_ISA_MASK(TERN_ISA_X86_AVX512VNNI);
    const uint64_t neon = TERN_ISA_MASK(TERN_ISA_ARM_NEON);
    const uint64_t dot = TERN_ISA_MASK(TERN_ISA_ARM_DOTPROD);
    const uint64_t i8mm = TERN_ISA_MASK(TERN_ISA_ARM_I8MM);
    const struct {
        const char *name;
        uint64_t mask;
    } cases[] = {
        {"ref", ref},
        {"avx2", ref | avx2},
        {"avx512", ref | avx2 | avx512},
        {"avx512vnni", ref | avx2 | avx512 | vnni},
        {"neon", ref | neon},
        {"dotprod", ref | neon | dot},
        {"i8mm", ref | neon | dot | i8mm},
        {"AVX2", ref | avx2},
        {"Neon", ref | neon},
    };
    for (const auto &c : cases) {
        uint64_t mask = 0;
        EXPECT_EQ(tern_isa_mask_parse(c.name, &mask), TERN_OK) << c.name;
        EXPECT_EQ(mask, c.mask) << c.name;
    }
    // every tier's name parses back to a mask holding it
    for (tern_isa isa : AllTiers()) {
        uint64_t mask = 0;
        ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(isa), &mask), TERN_OK);
        EXPECT_NE(mask & TERN_ISA_MASK(isa), 0u) << tern_isa_name(isa);
    }
}

TEST(Isa, MaskParseRejects) {
    for (const char *name : {"", "sse", "avx", "avx2 ", "avx5", "avx512vnnix", "unknown", "all"}) {
        uint64_t mask = 42;
        EXPECT_EQ(tern_isa_mask_parse(name, &mask), TERN_ERR_INVALID_ARG) << "'" << name << "'";
        EXPECT_EQ(mask, 42u) << "mask changed on failure for '" << name << "'";
    }
    uint64_t mask = 0;
    EXPECT_EQ(tern_isa_mask_parse(nullptr, &mask), TERN_ERR_INVALID_ARG);
    EXPECT_EQ(tern_isa_mask_parse("ref", nullptr), TERN_ERR_INVALID_ARG);
}

TEST(Isa, BestRespectsMask) {
    EXPECT_EQ(tern_isa_best(0), TERN_ISA_REF);
    EXPECT_EQ(tern_isa_best(TERN_ISA_MASK(TERN_ISA_REF)), TERN_ISA_REF);
    const tern_isa best = tern_isa_best(TERN_ISA_MASK_ALL);
    EXPECT_NE(TERN_ISA_MASK_ALL & TERN_ISA_MASK(best), 0u);
    // removing the best tier gives a lower one
    if (best != TERN_ISA_REF) {
        EXPECT_LT((int)tern_isa_best(TERN_ISA_MASK_ALL & ~TERN_ISA_MASK(best)), (int)best);
    }
}

// The CPU's features read a second way (the compiler's cpuid) must agree.
TEST(Isa, BestMatchesCpu) {
    const tern_isa best = tern_isa_best(TERN_ISA_MASK_ALL);
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
    const tern_isa expected = vnni     ? TERN_ISA_X86_AVX512VNNI
                              : avx512 ? TERN_ISA_X86_AVX512
                              : avx2   ? TERN_ISA_X86_AVX2
                                       : TERN_ISA_REF;
    EXPECT_EQ(best, expected) << "tern says " << tern_isa_name(best);
    EXPECT_EQ(tern_isa_best(TERN_ISA_MASK(TERN_ISA_ARM_NEON)), TERN_ISA_REF);
#elif defined(__aarch64__)
    EXPECT_GE((int)best, (int)TERN_ISA_ARM_NEON);
    EXPECT_EQ(tern_isa_best(TERN_ISA_MASK(TERN_ISA_ARM_NEON)), TERN_ISA_ARM_NEON);
    EXPECT_EQ(tern_isa_best(TERN_ISA_MASK(TERN_ISA_X86_AVX2)), TERN_ISA_REF);
#elif defined(__arm__) && defined(__linux__)
    // 32-bit ARM: the neon tier needs HWCAP_NEON (12), HWCAP_VFPv4 (16), HWCAP_HALF (1)
    const unsigned long hw = getauxval(AT_HWCAP);
    const bool neon = (hw >> 12 & 1) && (hw >> 16 & 1) && (hw >> 1 & 1);
    EXPECT_EQ(best, neon ? TERN_ISA_ARM_NEON : TERN_ISA_REF);
    EXPECT_EQ(tern_isa_best(TERN_ISA_MASK_ALL & ~TERN_ISA_MASK(TERN_ISA_ARM_NEON)), TERN_ISA_REF);
#else
    EXPECT_EQ(best, TERN_ISA_REF);
#endif
}

} // namespace
