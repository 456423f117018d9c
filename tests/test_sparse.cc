// N:M sparsity: the converter's pruning and packing (converter/sparse.h) and
// the sparse kernels (linear_nm / linear_qa_nm) at every tier this CPU has.
// Expected values come from this file's own decoders of the format (7.3) and
// plain loops over the dense matrix they decode to.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "converter/sparse.h"
#include "formats/encoding.h"
#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "tern.h"
#include "tests/test_tiers.h"
#include "tests/test_util.h"

namespace {

struct Pattern {
    unsigned n, m;
};
const Pattern kPatterns[] = {{2, 4}, {1, 4}, {2, 8}, {4, 8}};

double DecodeF16(uint16_t h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

std::vector<float> RandomMatrix(size_t rows, size_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> w(rows * cols);
    for (float &v : w) v = d(rng);
    return w;
}

// A packed sparse tensor plus what this test decodes it to.
struct Sparse {
    tern_tensor_desc desc{};
    std::vector<uint8_t> values, zeros, index;
    std::vector<uint16_t> scales;
    tern_weight w{};
    std::vector<double> dense;   // [rows][cols], dequantised, 0 where pruned
    std::vector<int> qdense;     // [rows][cols], integer value minus offset (Q8/Q4)
    std::vector<double> gscale;  // [rows][cols] the scale of the column's group (Q8/Q4)
};

// Packs w with tern_sparse_pack and decodes the planes independently.
void Pack(const std::vector<float> &w, size_t rows, size_t cols, unsigned n, unsigned m,
          tern_encoding enc, uint32_t group, Sparse *s, const uint16_t *fixed = nullptr) {
    s->desc.encoding = enc;
    s->desc.layout = TERN_LAYOUT_ROW_MAJOR;
    s->desc.ndim = 2;
    s->desc.dims[0] = rows;
    s->desc.dims[1] = cols;
    s->desc.sparse_n = (uint8_t)n;
    s->desc.sparse_m = (uint8_t)m;
    s->desc.group_size = (enc == TERN_ENC_Q8 || enc == TERN_ENC_Q4) ? group : 0;
    uint64_t sizes[TERN_PLANE_COUNT];
    ASSERT_EQ(tern_tensor_plane_sizes(&s->desc, sizes), 0);
    s->values.assign(sizes[TERN_PLANE_VALUES] + 64, 0xee);
    s->scales.assign(sizes[TERN_PLANE_SCALES] / 2 + 32, 0);
    s->index.assign(sizes[TERN_PLANE_INDEX] + 64, 0xee);
    tern_error err{};
    ASSERT_EQ(tern_sparse_pack(&s->desc, w.data(), 0, fixed, nullptr, s->values.data(), s->scales.data(), nullptr,
                               s->index.data(), &err),
              TERN_OK)
        << err.message;
    // the bytes after each plane stay untouched
    for (size_t i = sizes[TERN_PLANE_INDEX]; i < s->index.size(); i++) ASSERT_EQ(s->index[i], 0xee);
    const size_t stored = cols / m * n;
    const unsigned b = m == 4 ? 2 : 3;
    const size_t irow = (stored * b + 7) / 8;
    ASSERT_EQ(sizes[TERN_PLANE_INDEX], rows * irow);
    s->dense.assign(rows * cols, 0.0);
    s->qdense.assign(rows * cols, 0);
    s->gscale.assign(rows * cols, 0.0);
    for (size_t r = 0; r < rows; r++) {
        for (size_t k = 0; k < stored; k++) {
            unsigned idx = 0;
            for (unsigned i = 0; i < b; i++) {
                const size_t bit = r * irow * 8 + k * b + i;
                idx |= ((s->index[bit / 8] >> (bit % 8)) & 1u) << i;
            }
            ASSERT_LT(idx, m);
            if (k % n) { // ascending inside the block
                unsigned prev = 0;
                for (unsigned i = 0; i < b; i++) {
                    const size_t bit = r * irow * 8 + (k - 1) * b + i;
                    prev |= ((s->index[bit / 8] >> (bit % 8)) & 1u) << i;
                }
                ASSERT_GT(idx, prev);
            }
            const size_t c = (k / n) * m + idx;
            double v = 0;
            switch (enc) {
            case TERN_ENC_F32: {
                float f;
                std::memcpy(&f, &s->values[(r * stored + k) * 4], 4);
                v = f;
                break;
            }
            case TERN_ENC_F16: {
                uint16_t h;
                std::memcpy(&h, &s->values[(r * stored + k) * 2], 2);
                v = DecodeF16(h);
                break;
            }
            case TERN_ENC_Q8: {
                const int q = (int8_t)s->values[r * stored + k];
                const double sc = DecodeF16(s->scales[r * (stored / group) + k / group]);
                s->qdense[r * cols + c] = q;
                s->gscale[r * cols + c] = sc;
                v = sc * q;
                break;
            }
            case TERN_ENC_Q4: {
                const size_t g = k / group, j = k % group, half = group / 2;
                const uint8_t byte = s->values[r * (stored / 2) + g * half + (j < half ? j : j - half)];
                const int q = (j < half ? (byte & 15) : (byte >> 4)) - 8;
                const double sc = DecodeF16(s->scales[r * (stored / group) + g]);
                s->qdense[r * cols + c] = q;
                s->gscale[r * cols + c] = sc;
                v = sc * q;
                break;
            }
            default: FAIL();
            }
            s->dense[r * cols + c] = v;
        }
    }
    s->w.encoding = enc;
    s->w.layout = TERN_LAYOUT_ROW_MAJOR;
    s->w.rows = rows;
    s->w.cols = cols;
    s->w.values = s->values.data();
    s->w.scales = s->scales.data();
    s->w.index = s->index.data();
    s->w.group_size = s->desc.group_size;
    s->w.sparse_n = (uint8_t)n;
    s->w.sparse_m = (uint8_t)m;
}

// ---- format and packing ---------------------------------------------------------

TEST(SparsePack, FormatExample) {
    // docs/format.md 7.3: 2:4 over 0 5 0 7 | 1 0 0 2
    const std::vector<float> w = {0, 5, 0, 7, 1, 0, 0, 2};
    Sparse s;
    Pack(w, 1, 8, 2, 4, TERN_ENC_F32, 0, &s);
    EXPECT_EQ(s.index[0], 0xCD);
    float v[4];
    std::memcpy(v, s.values.data(), sizeof v);
    EXPECT_EQ(v[0], 5.0f);
    EXPECT_EQ(v[1], 7.0f);
    EXPECT_EQ(v[2], 1.0f);
    EXPECT_EQ(v[3], 2.0f);
}

TEST(SparsePack, MagnitudeKeepsLargestExactlyN) {
    for (const Pattern &p : kPatterns) {
        const size_t rows = 5, cols = 64;
        const std::vector<float> w = RandomMatrix(rows, cols, 7 + p.n * 10 + p.m);
        Sparse s;
        Pack(w, rows, cols, p.n, p.m, TERN_ENC_F32, 0, &s);
        for (size_t r = 0; r < rows; r++)
            for (size_t c0 = 0; c0 < cols; c0 += p.m) {
                unsigned kept = 0;
                double min_kept = 1e30, max_pruned = 0;
                for (unsigned j = 0; j < p.m; j++) {
                    const double d = s.dense[r * cols + c0 + j], a = std::fabs(w[r * cols + c0 + j]);
                    if (d != 0.0) {
                        kept++;
                        EXPECT_EQ(d, (double)w[r * cols + c0 + j]);
                        min_kept = std::min(min_kept, a);
                    } else {
                        max_pruned = std::max(max_pruned, a);
                    }
                }
                EXPECT_EQ(kept, p.n) << p.n << ":" << p.m;
                EXPECT_GE(min_kept, max_pruned);
            }
        // pruning then packing keeps the same mask
        std::vector<float> pruned = w;
        ASSERT_EQ(tern_prune_magnitude(pruned.data(), rows, cols, p.n, p.m, nullptr), TERN_OK);
        for (size_t i = 0; i < rows * cols; i++) EXPECT_EQ((double)pruned[i], s.dense[i]);
    }
}

TEST(SparsePack, QuantisedValuesDecode) {
    for (tern_encoding enc : {TERN_ENC_F16, TERN_ENC_Q8, TERN_ENC_Q4}) {
        for (const Pattern &p : kPatterns) {
            const size_t rows = 3, cols = 128, group = 16;
            const std::vector<float> w = RandomMatrix(rows, cols, 99);
            Sparse s;
            Pack(w, rows, cols, p.n, p.m, enc, group, &s);
            std::vector<float> pruned = w;
            ASSERT_EQ(tern_prune_magnitude(pruned.data(), rows, cols, p.n, p.m, nullptr), TERN_OK);
            const double tol = enc == TERN_ENC_F16 ? 1e-3 : enc == TERN_ENC_Q8 ? 0.03 : 0.5;
            for (size_t i = 0; i < rows * cols; i++) {
                EXPECT_EQ(pruned[i] == 0.0f, s.dense[i] == 0.0 && pruned[i] == 0.0f);
                EXPECT_NEAR(s.dense[i], pruned[i], tol * 3.5) << tern_encoding_name(enc);
            }
        }
    }
}

TEST(SparsePack, RejectsBadDescriptions) {
    tern_tensor_desc d{};
    d.encoding = TERN_ENC_F32;
    d.ndim = 2;
    d.dims[0] = 2;
    d.dims[1] = 6; // not a multiple of 4
    d.sparse_n = 2;
    d.sparse_m = 4;
    std::vector<float> w(12, 1.0f);
    uint8_t buf[256];
    tern_error err{};
    EXPECT_NE(tern_sparse_pack(&d, w.data(), 0, nullptr, nullptr, buf, nullptr, nullptr, buf, &err), TERN_OK);
    EXPECT_NE(tern_prune_magnitude(w.data(), 2, 6, 2, 4, &err), TERN_OK);
    EXPECT_NE(tern_prune_magnitude(w.data(), 2, 8, 4, 4, &err), TERN_OK);
    EXPECT_FALSE(tern_sparse_pattern_supported(3, 8));
    EXPECT_TRUE(tern_sparse_pattern_supported(4, 8));
}

TEST(SparseSelect, Globs) {
    EXPECT_TRUE(tern_sparse_selects(nullptr, "blk.3.ffn_up.weight"));
    EXPECT_FALSE(tern_sparse_selects(nullptr, "token_embd.weight"));
    EXPECT_FALSE(tern_sparse_selects("", "output.weight"));
    EXPECT_TRUE(tern_sparse_selects("blk.*.ffn_*", "blk.3.ffn_up.weight"));
    EXPECT_FALSE(tern_sparse_selects("blk.*.ffn_*", "blk.3.attn_q.weight"));
    EXPECT_FALSE(tern_sparse_selects("blk.*,!blk.0.*", "blk.0.attn_q.weight"));
    EXPECT_TRUE(tern_sparse_selects("blk.*,!blk.0.*", "blk.10.attn_q.weight"));
}

// ---- calibration methods --------------------------------------------------------

TEST(SparsePrune, WandaKeepsHighestScores) {
    const size_t rows = 4, cols = 32;
    std::vector<float> w = RandomMatrix(rows, cols, 3);
    const std::vector<float> orig = w;
    std::vector<float> xn(cols);
    for (size_t c = 0; c < cols; c++) xn[c] = (c % 3 == 0) ? 100.0f : 0.01f * (float)(c + 1);
    ASSERT_EQ(tern_prune_wanda(w.data(), rows, cols, xn.data(), 2, 4, nullptr), TERN_OK);
    for (size_t r = 0; r < rows; r++)
        for (size_t c0 = 0; c0 < cols; c0 += 4) {
            double min_kept = 1e30, max_pruned = -1;
            unsigned kept = 0;
            for (size_t j = 0; j < 4; j++) {
                const size_t i = r * cols + c0 + j;
                const double score = std::fabs(orig[i]) * xn[c0 + j];
                if (w[i] != 0.0f) {
                    kept++;
                    EXPECT_EQ(w[i], orig[i]);
                    min_kept = std::min(min_kept, score);
                } else {
                    max_pruned = std::max(max_pruned, score);
                }
            }
            EXPECT_EQ(kept, 2u);
            EXPECT_GE(min_kept, max_pruned);
        }
}

// ||(W - W') X^T||_F^2 over calibration tokens X [t][cols], in double.
double ReconError(const std::vector<float> &w, const std::vector<float> &wp,
                  const std::vector<double> &x, size_t rows, size_t cols, size_t t) {
    double e = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < t; i++) {
            double d = 0;
            for (size_t c = 0; c < cols; c++)
                d += ((double)w[r * cols + c] - (double)wp[r * cols + c]) * x[i * cols + c];
            e += d * d;
        }
    return e;
}

struct Calib {
    std::vector<double> x, h;
    std::vector<float> norm;
};

// Correlated inputs: x = z A with a random mixing matrix and uneven channel scales.
Calib MakeCalib(size_t cols, size_t t, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> d(0.0, 1.0);
    std::vector<double> a(cols * cols);
    for (size_t i = 0; i < cols; i++)
        for (size_t j = 0; j < cols; j++) a[i * cols + j] = (i == j ? 1.0 : 0.0) + 0.3 * d(rng);
    Calib c;
    c.x.assign(t * cols, 0.0);
    std::vector<double> z(cols);
    for (size_t i = 0; i < t; i++) {
        for (double &v : z) v = d(rng);
        for (size_t j = 0; j < cols; j++) {
            double v = 0;
            for (size_t k = 0; k < cols; k++) v += z[k] * a[k * cols + j];
            c.x[i * cols + j] = v * (1.0 + (double)(j % 5));
        }
    }
    c.h.assign(cols * cols, 0.0);
    for (size_t i = 0; i < t; i++)
        for (size_t j = 0; j < cols; j++)
            for (size_t k = 0; k < cols; k++) c.h[j * cols + k] += c.x[i * cols + j] * c.x[i * cols + k];
    c.norm.assign(cols, 0.0f);
    for (size_t j = 0; j < cols; j++) {
        double s = 0;
        for (size_t i = 0; i < t; i++) s += c.x[i * cols + j] * c.x[i * cols + j];
        c.norm[j] = (float)std::sqrt(s);
    }
    return c;
}

TEST(SparsePrune, SparseGptBeatsMagnitudeAndWanda) {
    const size_t rows = 16, cols = 64, t = 256;
    const Calib cal = MakeCalib(cols, t, 11);
    for (const Pattern &p : kPatterns) {
        const std::vector<float> w = RandomMatrix(rows, cols, 5);
        std::vector<float> mag = w, wanda = w, sgpt = w;
        ASSERT_EQ(tern_prune_magnitude(mag.data(), rows, cols, p.n, p.m, nullptr), TERN_OK);
        ASSERT_EQ(tern_prune_wanda(wanda.data(), rows, cols, cal.norm.data(), p.n, p.m, nullptr),
                  TERN_OK);
        tern_error err{};
        ASSERT_EQ(tern_prune_sparsegpt(sgpt.data(), rows, cols, cal.h.data(), p.n, p.m, 16, 0.01,
                                       nullptr, nullptr, nullptr, &err),
                  TERN_OK)
            << err.message;
        for (size_t r = 0; r < rows; r++)
            for (size_t c0 = 0; c0 < cols; c0 += p.m) {
                unsigned nz = 0;
                for (unsigned j = 0; j < p.m; j++) nz += sgpt[r * cols + c0 + j] != 0.0f;
                EXPECT_LE(nz, p.n);
            }
        const double em = ReconError(w, mag, cal.x, rows, cols, t);
        const double ew = ReconError(w, wanda, cal.x, rows, cols, t);
        const double es = ReconError(w, sgpt, cal.x, rows, cols, t);
        EXPECT_LT(es, 0.8 * em) << p.n << ":" << p.m;
        EXPECT_LT(es, ew) << p.n << ":" << p.m;
    }
}

TEST(SparsePrune, SparseGptJointQuantisation) {
    const size_t rows = 8, cols = 64, t = 256;
    const Calib cal = MakeCalib(cols, t, 12);
    const std::vector<float> w = RandomMatrix(rows, cols, 6);
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
        const uint32_t group = 16;
        std::vector<uint16_t> scales(rows * cols / 2 / group);
        std::vector<uint8_t> zeros(rows * cols / 2 / group);
        tern_sparse_rtn q{{enc, group, 0, 0}, 2, 4, scales.data(), zeros.data()};
        std::vector<float> sgpt = w;
        ASSERT_EQ(tern_prune_sparsegpt(sgpt.data(), rows, cols, cal.h.data(), 2, 4, 32, 0.01,
                                       tern_sparse_rtn_quantize, &q, nullptr, nullptr),
                  TERN_OK);
        // magnitude + round-to-nearest, through the packer
        std::vector<float> mag = w;
        ASSERT_EQ(tern_prune_magnitude(mag.data(), rows, cols, 2, 4, nullptr), TERN_OK);
        Sparse sm, ss;
        Pack(mag, rows, cols, 2, 4, enc, group, &sm);
        Pack(sgpt, rows, cols, 2, 4, enc, group, &ss, scales.data());
        std::vector<float> dm(rows * cols), ds(rows * cols);
        for (size_t i = 0; i < rows * cols; i++) {
            dm[i] = (float)sm.dense[i];
            ds[i] = (float)ss.dense[i];
            // the packer stores exactly the values SparseGPT compensated for
            EXPECT_EQ(ss.dense[i], (double)sgpt[i]);
        }
        EXPECT_LT(ReconError(w, ds, cal.x, rows, cols, t), 0.8 * ReconError(w, dm, cal.x, rows, cols, t))
            << tern_encoding_name(enc);
    }
}

// Rows split over threads (SPARSEGPT_TILE_ROWS = 8 a task, a ragged last
// tile, 128 inputs so that the inverse splits too): every weight and
// scale as on one thread.
TEST(SparsePrune, SparseGptThreadsGiveTheSameResult) {
    const size_t rows = 37, cols = 256, t = 300;
    const Calib cal = MakeCalib(cols, t, 13);
    const std::vector<float> w = RandomMatrix(rows, cols, 7);
    const uint32_t group = 32;
    std::vector<float> out[2];
    std::vector<uint16_t> scales[2];
    pthreadpool_t pool = pthreadpool_create(3);
    ASSERT_NE(pool, nullptr);
    for (int threaded = 0; threaded < 2; threaded++) {
        scales[threaded].assign(rows * cols / 2 / group, 0);
        std::vector<uint8_t> zeros(rows * cols / 2 / group);
        tern_sparse_rtn q{{TERN_ENC_Q4, group, 0, 0}, 2, 4, scales[threaded].data(), zeros.data()};
        out[threaded] = w;
        ASSERT_EQ(tern_prune_sparsegpt(out[threaded].data(), rows, cols, cal.h.data(), 2, 4, 0, 0.01,
                                       tern_sparse_rtn_quantize, &q, threaded ? pool : nullptr, nullptr),
                  TERN_OK);
    }
    pthreadpool_destroy(pool);
    EXPECT_TRUE(out[0] == out[1]);
    EXPECT_TRUE(scales[0] == scales[1]);
    EXPECT_FALSE(out[0] == w);
}

// ---- kernels -----------------------------------------------------------------------


struct Shape {
    size_t rows, cols, m;
    uint32_t group;
};

std::vector<Shape> Shapes(const Pattern &p) {
    // group sizes: 32 kept values, and the smallest aligned one (a 32-column block)
    const uint32_t g_min = 32 / p.m * p.n;
    std::vector<Shape> out = {{1, 128, 1, 32}, {13, 256, 1, 32},  {8, 128, 3, 32},
                              {21, 384, 17, 32}, {7, 512, 2, 64}, {9, 128, 5, g_min},
                              {3, 96 * p.m / 4 * 4, 1, 0}};
    // ragged: cols not a multiple of the group span, odd groups
    out.push_back({11, 192, 4, 6u * p.n});
    return out;
}

float Sentinel() { return -12345.678f; }

class SparseTier : public tern_test::TierVsRefTest {};

// Integer path: bit-exact against the ref, which matches this test's own
// per-block definition over the decoded dense integers when groups align.
TEST_P(SparseTier, LinearQaBitExact) {
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
        ASSERT_NE(k_.linear_qa_nm[enc], nullptr);
        for (const Pattern &p : kPatterns) {
            for (Shape sh : Shapes(p)) {
                const size_t stored = sh.cols / p.m * p.n;
                if (sh.group == 0) sh.group = (uint32_t)stored;
                if (stored % sh.group || (enc == TERN_ENC_Q4 && sh.group % 2)) continue;
                const std::vector<float> wf = RandomMatrix(sh.rows, sh.cols, (uint32_t)(sh.rows * 31 + sh.cols));
                Sparse s;
                Pack(wf, sh.rows, sh.cols, p.n, p.m, enc, sh.group, &s);
                const std::vector<float> x = RandomMatrix(sh.m, sh.cols, 17);
                const size_t nb = sh.cols / 32;
                std::vector<int8_t> q(sh.m * sh.cols);
                std::vector<float> d(sh.m * nb);
                std::vector<int32_t> qs(sh.m * nb);
                ref_.quantize_rows(sh.m, sh.cols, x.data(), sh.cols, q.data(), d.data(), qs.data());
                const tern_qrows qx = {sh.m, sh.cols, q.data(), d.data(), qs.data()};
                std::vector<float> bias(sh.rows);
                for (size_t r = 0; r < sh.rows; r++) bias[r] = 0.25f * (float)r;
                const size_t ldy = sh.rows + 3;
                std::vector<float> yr(sh.m * ldy, Sentinel()), yk(sh.m * ldy, Sentinel());
                ref_.linear_qa_nm[enc](sh.m, 0, sh.rows, &qx, &s.w, bias.data(), yr.data(), ldy);
                // tier: in two ragged ranges
                const size_t split = sh.rows / 3;
                k_.linear_qa_nm[enc](sh.m, 0, split, &qx, &s.w, bias.data(), yk.data(), ldy);
                k_.linear_qa_nm[enc](sh.m, split, sh.rows, &qx, &s.w, bias.data(), yk.data(), ldy);
                const bool aligned = (sh.group * p.m / p.n) % 32 == 0;
                for (size_t i = 0; i < sh.m; i++) {
                    for (size_t r = 0; r < sh.rows; r++) {
                        const float a = yr[i * ldy + r], b = yk[i * ldy + r];
                        ASSERT_EQ(std::memcmp(&a, &b, 4), 0)
                            << tern_encoding_name(enc) << " " << p.n << ":" << p.m << " rows "
                            << sh.rows << " cols " << sh.cols << " m " << sh.m << " g "
                            << sh.group << " at " << i << "," << r << ": " << a << " vs " << b;
                        if (aligned) {
                            // the definition, from the decoded dense integers
                            float acc = 0.0f;
                            for (size_t bl = 0; bl < nb; bl++) {
                                int32_t dot = 0;
                                for (size_t c = bl * 32; c < bl * 32 + 32; c++)
                                    dot += s.qdense[r * sh.cols + c] * q[i * sh.cols + c];
                                // the block's scale: any kept column of it has its group's
                                double sc = 0;
                                for (size_t c = bl * 32; c < bl * 32 + 32 && sc == 0; c++)
                                    if (s.gscale[r * sh.cols + c] != 0) sc = s.gscale[r * sh.cols + c];
                                acc = std::fmaf((float)dot, (float)sc * d[i * nb + bl], acc);
                            }
                            acc += bias[r];
                            ASSERT_EQ(std::memcmp(&acc, &a, 4), 0) << "ref vs definition";
                        }
                    }
                    for (size_t r = sh.rows; r < ldy; r++) ASSERT_EQ(yk[i * ldy + r], Sentinel());
                }
            }
        }
    }
}

// Float path: every value encoding against the decoded dense matrix, with a
// K-scaled bound.
TEST_P(SparseTier, LinearFloat) {
    for (tern_encoding enc : {TERN_ENC_F32, TERN_ENC_F16, TERN_ENC_Q8, TERN_ENC_Q4}) {
        ASSERT_NE(k_.linear_nm[enc], nullptr);
        for (const Pattern &p : kPatterns) {
            for (Shape sh : Shapes(p)) {
                const size_t stored = sh.cols / p.m * p.n;
                if (sh.group == 0) sh.group = (uint32_t)stored;
                if (stored % sh.group || (enc == TERN_ENC_Q4 && sh.group % 2)) continue;
                const std::vector<float> wf = RandomMatrix(sh.rows, sh.cols, (uint32_t)(sh.cols * 7 + sh.m));
                Sparse s;
                Pack(wf, sh.rows, sh.cols, p.n, p.m, enc, sh.group, &s);
                const std::vector<float> x = RandomMatrix(sh.m, sh.cols, 23);
                const size_t ldx = sh.cols + 5, ldy = sh.rows + 1;
                std::vector<float> xs(sh.m * ldx, 1e30f);
                for (size_t i = 0; i < sh.m; i++)
                    std::memcpy(&xs[i * ldx], &x[i * sh.cols], sh.cols * 4);
                std::vector<float> y(sh.m * ldy, Sentinel());
                k_.linear_nm[enc](sh.m, 0, sh.rows, xs.data(), ldx, &s.w, nullptr, y.data(), ldy);
                for (size_t i = 0; i < sh.m; i++)
                    for (size_t r = 0; r < sh.rows; r++) {
                        double e = 0, mag = 0;
                        for (size_t c = 0; c < sh.cols; c++) {
                            e += s.dense[r * sh.cols + c] * x[i * sh.cols + c];
                            mag += std::fabs(s.dense[r * sh.cols + c] * x[i * sh.cols + c]);
                        }
                        ASSERT_NEAR(y[i * ldy + r], e, 2.0 * (double)stored * FLT_EPSILON * mag + 1e-30)
                            << tern_encoding_name(enc) << " " << p.n << ":" << p.m;
                    }
            }
        }
    }
}

// ---- end to end: converter -> file -> runtime ------------------------------------

namespace fs = std::filesystem;

fs::path SharedDir() { return test_shared_path(""); }

// Logits of every position of a short prompt, or empty on failure.
std::vector<float> RunModel(const fs::path &file, uint64_t mask, int float_act, uint32_t *n_vocab) {
    tern_model_options mo;
    tern_model_options_default(&mo);
    mo.isa_mask = mask;
    mo.float_activations = (uint8_t)float_act;
    return test_model_logits(file.string(), mo, 1, {1, 7, 3, 11, 5}, n_vocab);
}

TEST(SparseModel, ConvertsAndRunsOnEveryTier) {
    const fs::path src = SharedDir() / "fixtures" / "hf" / "llama";
    if (!fs::exists(src / "config.json")) GTEST_SKIP() << "no fixture at " << src;
    char tmpl[] = "/tmp/tern_sparse_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const fs::path dir = tmpl;
    for (tern_weight_type wt : {TERN_WEIGHTS_F16, TERN_WEIGHTS_Q8, TERN_WEIGHTS_Q4}) {
        const fs::path dst = dir / "sparse.tern";
        tern_convert_options o;
        tern_convert_options_default(&o);
        o.weights = wt;
        o.group_size = 16;
        o.prune = TERN_PRUNE_MAGNITUDE;
        o.sparse_n = 2;
        o.sparse_m = 4;
        tern_error err{};
        ASSERT_EQ(tern_convert(src.c_str(), dst.c_str(), &o, &err), TERN_OK) << err.message;
        // block matrices are 2:4, the embedding is not
        tern_file f;
        ASSERT_EQ(tern_file_open(dst.c_str(), 1, &f, &err), TERN_OK) << err.message;
        tern_tensor_view v;
        ASSERT_EQ(tern_file_get_tensor(&f, "blk.0.ffn_up.weight", &v, &err), TERN_OK);
        EXPECT_EQ(v.desc.sparse_n, 2);
        EXPECT_EQ(v.desc.sparse_m, 4);
        ASSERT_EQ(tern_file_get_tensor(&f, "token_embd.weight", &v, &err), TERN_OK);
        EXPECT_EQ(v.desc.sparse_m, 0);
        tern_file_close(&f);
        // every tier agrees with the ref tier (float kernels around the linears differ
        // in rounding only)
        uint32_t nv = 0;
        const std::vector<float> ref = RunModel(dst, TERN_ISA_MASK(TERN_ISA_REF), 0, &nv);
        ASSERT_FALSE(ref.empty());
        double scale = 0;
        for (float x : ref) {
            ASSERT_TRUE(std::isfinite(x));
            scale = std::max(scale, (double)std::fabs(x));
        }
        for (tern_isa isa : tern_test::AllTiers()) {
            uint64_t mask = 0;
            ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(isa), &mask), TERN_OK);
            if (tern_isa_best(mask) != isa) continue;
            for (int fa = 0; fa < 2; fa++) {
                const std::vector<float> got = RunModel(dst, mask, fa, &nv);
                ASSERT_EQ(got.size(), ref.size());
                // float activations vs int8 ones: the quantisation of x moves logits a little
                const double tol = fa ? 0.05 * scale + 1e-3 : 1e-3 * scale + 1e-5;
                for (size_t i = 0; i < ref.size(); i++)
                    ASSERT_NEAR(got[i], ref[i], tol) << tern_isa_name(isa) << " float_act " << fa;
            }
        }
        fs::remove(dst);
    }
    fs::remove_all(dir);
}

TERN_INSTANTIATE_TIERS(SparseTier);

} // namespace
