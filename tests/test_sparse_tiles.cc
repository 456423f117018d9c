// 2:4 and 1:4 sparse Q8/Q4 in ROW_INTERLEAVED tiles (docs/format.md 7.3,
// 7.4): the converter's reordering puts every byte where the format says
// (checked with this file's own arithmetic, not encoding.h's helpers), the
// tiled kernels of every tier equal the scalar ref on the row-major twin bit
// for bit, and a tiled model's logits equal its row-major twin's.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "converter/sparse.h"
#include "converter/tile_layout.h"
#include "formats/encoding.h"
#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "tern.h"
#include "tests/test_tiers.h"
#include "tests/test_util.h"
#include "tests/test_planes.h"

namespace {

constexpr size_t kR = 16;

using Planes = TestPlanes;

// A random rows x cols matrix packed n:4 row-major (tern_sparse_pack).
Planes PackRows(tern_encoding enc, size_t rows, size_t cols, unsigned n, uint32_t group, bool asym,
                uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w(rows * cols);
    for (float &v : w) v = nd(rng) + (asym ? 0.7f : 0.0f);
    Planes p;
    p.desc.encoding = enc;
    p.desc.layout = TERN_LAYOUT_ROW_MAJOR;
    p.desc.ndim = 2;
    p.desc.dims[0] = rows;
    p.desc.dims[1] = cols;
    p.desc.group_size = group;
    p.desc.sparse_n = (uint8_t)n;
    p.desc.sparse_m = 4;
    p.desc.flags = asym ? TERN_TENSOR_HAS_ZERO_POINT : 0;
    uint64_t sizes[TERN_PLANE_COUNT];
    EXPECT_EQ(tern_tensor_plane_sizes(&p.desc, sizes), 0);
    p.values.assign(sizes[TERN_PLANE_VALUES], 0);
    p.scales.assign(sizes[TERN_PLANE_SCALES] / 2, 0);
    p.zeros.assign(sizes[TERN_PLANE_ZEROS], 0);
    p.index.assign(sizes[TERN_PLANE_INDEX], 0);
    tern_error err{};
    EXPECT_EQ(tern_sparse_pack(&p.desc, w.data(), 0, nullptr, nullptr, p.values.data(), p.scales.data(),
                               asym ? p.zeros.data() : nullptr, p.index.data(), &err),
              TERN_OK)
        << err.message;
    return p;
}

Planes Tile(const Planes &rm) {
    Planes t = rm;
    const void *src[TERN_PLANE_COUNT] = {rm.values.data(), rm.scales.data(),
                                         rm.zeros.empty() ? nullptr : rm.zeros.data(), rm.index.data()};
    void *dst[TERN_PLANE_COUNT] = {t.values.data(), t.scales.data(),
                                   t.zeros.empty() ? nullptr : t.zeros.data(), t.index.data()};
    EXPECT_TRUE(tern_tiles_eligible(&rm.desc, TERN_TILE_ROWS));
    tern_tiles_from_rows(&rm.desc, TERN_TILE_ROWS, src, dst, &t.desc);
    EXPECT_EQ(t.desc.layout, TERN_LAYOUT_ROW_INTERLEAVED);
    EXPECT_EQ(t.desc.tile_rows, kR);
    return t;
}

// ---- format ------------------------------------------------------------------------

TEST(SparseTiles, ValidatorAcceptsTwoFourAndOneFour) {
    tern_tensor_desc d{};
    d.encoding = TERN_ENC_Q8;
    d.layout = TERN_LAYOUT_ROW_INTERLEAVED;
    d.ndim = 2;
    d.dims[0] = 32;
    d.dims[1] = 256;
    d.tile_rows = 16;
    d.sparse_m = 4;
    uint64_t tiled[TERN_PLANE_COUNT], rows[TERN_PLANE_COUNT];
    for (unsigned n : {1u, 2u}) {
        for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
            d.encoding = enc;
            d.sparse_n = (uint8_t)n;
            d.group_size = 32;
            d.layout = TERN_LAYOUT_ROW_INTERLEAVED;
            d.tile_rows = 16;
            ASSERT_EQ(tern_tensor_plane_sizes(&d, tiled), 0) << n;
            d.layout = TERN_LAYOUT_ROW_MAJOR;
            d.tile_rows = 0;
            ASSERT_EQ(tern_tensor_plane_sizes(&d, rows), 0);
            for (int i = 0; i < TERN_PLANE_COUNT; i++) EXPECT_EQ(tiled[i], rows[i]);
            EXPECT_EQ(tiled[TERN_PLANE_INDEX], 32u * 256 / 4 * n * 2 / 8);
        }
    }
    d.encoding = TERN_ENC_Q8;
    d.layout = TERN_LAYOUT_ROW_INTERLEAVED;
    d.tile_rows = 16;
    d.sparse_n = 2;
    d.group_size = 16; // 2:4: 64 columns... 16 kept = 32 columns, still whole blocks
    EXPECT_EQ(tern_tensor_plane_sizes(&d, tiled), 0);
    d.group_size = 8; // 16 columns: a block would span two groups
    EXPECT_NE(tern_tensor_plane_sizes(&d, tiled), 0);
    d.group_size = 32;
    d.sparse_n = 3; // 3:4 stays row-major
    EXPECT_NE(tern_tensor_plane_sizes(&d, tiled), 0);
    d.sparse_n = 2;
    d.sparse_m = 8; // M = 8 stays row-major
    EXPECT_NE(tern_tensor_plane_sizes(&d, tiled), 0);
    d.sparse_m = 4;
    d.dims[0] = 24; // whole tiles only
    EXPECT_NE(tern_tensor_plane_sizes(&d, tiled), 0);
    d.dims[0] = 32;
    d.encoding = TERN_ENC_F16; // integer encodings only
    d.group_size = 0;
    EXPECT_NE(tern_tensor_plane_sizes(&d, tiled), 0);
}

// Every stored code, scale, zero and index byte lands where 7.4 puts it.
TEST(SparseTiles, ConverterOrder) {
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
        for (unsigned n : {1u, 2u}) {
            for (bool asym : {false, true}) {
                const size_t rows = 48, cols = 256, S = cols / 4 * n, ib = S / 4;
                const uint32_t gs = 32;
                const Planes rm = PackRows(enc, rows, cols, n, gs, asym, 5 + n);
                const Planes t = Tile(rm);
                const size_t ng = S / gs;
                for (size_t r = 0; r < rows; r++) {
                    for (size_t k = 0; k < S; k++) {
                        unsigned want, got;
                        const size_t tile = r / kR, j = r % kR;
                        if (enc == TERN_ENC_Q8) {
                            want = rm.values[r * S + k];
                            got = t.values[tile * kR * S + (k / 4) * 4 * kR + j * 4 + k % 4];
                        } else {
                            // row-major: per group, low nibbles the first half
                            const size_t g = k / gs, h = k % gs;
                            const uint8_t b = rm.values[r * S / 2 + g * gs / 2 + h % (gs / 2)];
                            want = h < gs / 2 ? (b & 15u) : (unsigned)(b >> 4);
                            // tiled: chunks of 8 values, 4 bytes a row, low nibbles values 0-3
                            const uint8_t tb = t.values[tile * kR * S / 2 + (k / 8) * 4 * kR + j * 4 + k % 4];
                            got = k % 8 < 4 ? (tb & 15u) : (unsigned)(tb >> 4);
                        }
                        ASSERT_EQ(got, want) << r << "," << k;
                    }
                    for (size_t b = 0; b < ib; b++)
                        ASSERT_EQ(t.index[(r / kR) * kR * ib + b * kR + r % kR], rm.index[r * ib + b]);
                    for (size_t g = 0; g < ng; g++) {
                        const size_t o = (r / kR) * kR * ng + g * kR + r % kR;
                        ASSERT_EQ(t.scales[o], rm.scales[r * ng + g]);
                        if (asym) {
                            ASSERT_EQ(t.zeros[o], rm.zeros[r * ng + g]);
                        }
                    }
                }
            }
        }
    }
}

// ---- kernels -----------------------------------------------------------------------


float Sentinel() { return -12345.678f; }

class SparseTileTier : public tern_test::TierVsRefTest {};

struct Shape {
    size_t rows, cols;
    uint32_t group; // stored values
};

// The tier on the tiles, in ragged row ranges, equals the ref on the
// row-major twin (whose arithmetic kernels/ref/linear_nm_ref.c defines and
// test_sparse.cc checks against plain loops) bit for bit.
TEST_P(SparseTileTier, LinearQaBitExact) {
    const Shape shapes[] = {{16, 64, 32}, {32, 128, 32}, {48, 256, 64}, {64, 96, 0}, {32, 512, 128}};
    std::mt19937 rng(99);
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
        for (unsigned n : {2u, 1u}) {
            for (bool asym : {false, true}) {
                for (const Shape &sh0 : shapes) {
                    Shape sh = sh0;
                    const size_t S = sh.cols / 4 * n;
                    if (sh.group == 0) sh.group = 32 / 4 * n; // the smallest: one block a group
                    if (S % sh.group != 0) continue;
                    const Planes rm = PackRows(enc, sh.rows, sh.cols, n, sh.group, asym,
                                               (uint32_t)(sh.rows * 7 + sh.cols + n));
                    const Planes t = Tile(rm);
                    const tern_weight wr = rm.weight(), wt = t.weight();
                    for (size_t m = 1; m <= 17; m++) {
                        std::normal_distribution<float> nd(0.0f, 1.0f);
                        std::vector<float> x(m * sh.cols);
                        for (float &v : x) v = nd(rng);
                        const size_t nb = sh.cols / 32;
                        std::vector<int8_t> q(m * sh.cols);
                        std::vector<float> d(m * nb);
                        std::vector<int32_t> qs(m * nb);
                        ref_.quantize_rows(m, sh.cols, x.data(), sh.cols, q.data(), d.data(), qs.data());
                        const tern_qrows qx = {m, sh.cols, q.data(), d.data(), qs.data()};
                        std::vector<float> bias(sh.rows);
                        for (size_t r = 0; r < sh.rows; r++) bias[r] = 0.125f * (float)r - 1.0f;
                        const float *bp = m % 2 ? bias.data() : nullptr;
                        const size_t ldy = sh.rows + 3;
                        std::vector<float> yr(m * ldy, Sentinel()), yt(m * ldy, Sentinel()),
                            yk(m * ldy, Sentinel());
                        ref_.linear_qa_nm[enc](m, 0, sh.rows, &qx, &wr, bp, yr.data(), ldy);
                        ref_.linear_qa_nm[enc](m, 0, sh.rows, &qx, &wt, bp, yt.data(), ldy);
                        // ragged ranges, as threads split rows (and tiles cut in the middle)
                        const size_t cuts[] = {0, 5, std::min<size_t>(21, sh.rows), sh.rows};
                        for (int c = 0; c < 3; c++)
                            if (cuts[c] < cuts[c + 1])
                                k_.linear_qa_nm[enc](m, cuts[c], cuts[c + 1], &qx, &wt, bp, yk.data(), ldy);
                        for (size_t i = 0; i < m; i++) {
                            for (size_t r = 0; r < sh.rows; r++) {
                                const float a = yr[i * ldy + r], b = yt[i * ldy + r], c = yk[i * ldy + r];
                                ASSERT_EQ(std::memcmp(&a, &b, 4), 0) << "ref: tiles vs rows";
                                ASSERT_EQ(std::memcmp(&a, &c, 4), 0)
                                    << tern_isa_name(GetParam()) << " " << tern_encoding_name(enc) << " "
                                    << n << ":4 asym " << asym << " rows " << sh.rows << " cols "
                                    << sh.cols << " g " << sh.group << " m " << m << " at " << i << ","
                                    << r << ": " << a << " vs " << c;
                            }
                            for (size_t r = sh.rows; r < ldy; r++) ASSERT_EQ(yk[i * ldy + r], Sentinel());
                        }
                    }
                }
            }
        }
    }
}

// Float activations (linear_nm) read the tiles to the same floats.
TEST_P(SparseTileTier, LinearFloatSameAsRows) {
    for (tern_encoding enc : {TERN_ENC_Q8, TERN_ENC_Q4}) {
        for (unsigned n : {2u, 1u}) {
            const size_t rows = 32, cols = 128, m = 3;
            const Planes rm = PackRows(enc, rows, cols, n, 32, n == 1, 41);
            const Planes t = Tile(rm);
            const tern_weight wr = rm.weight(), wt = t.weight();
            std::vector<float> x(m * cols);
            std::mt19937 rng(3);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            for (float &v : x) v = nd(rng);
            std::vector<float> yr(m * rows), yt(m * rows);
            ref_.linear_nm[enc](m, 0, rows, x.data(), cols, &wr, nullptr, yr.data(), rows);
            k_.linear_nm[enc](m, 0, rows, x.data(), cols, &wt, nullptr, yt.data(), rows);
            for (size_t i = 0; i < m * rows; i++) ASSERT_EQ(yr[i], yt[i]) << i;
        }
    }
}

TERN_INSTANTIATE_TIERS(SparseTileTier);

// ---- end to end: a 2:4 tiled model and its row-major twin ---------------------------

namespace fs = std::filesystem;

fs::path SharedDir() { return test_shared_path(""); }

std::vector<float> Logits(const fs::path &file, uint64_t mask, int threads) {
    tern_model_options mo;
    tern_model_options_default(&mo);
    mo.isa_mask = mask;
    return test_model_logits(file.string(), mo, threads, {1, 7, 3, 11, 5, 2});
}

TEST(SparseTilesModel, SameLogitsAsRowMajor) {
    const fs::path src = SharedDir() / "fixtures" / "hf" / "llama";
    if (!fs::exists(src / "config.json")) GTEST_SKIP() << "no fixture at " << src;
    char tmpl[] = "/tmp/tern_sparse_tiles_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const fs::path dir = tmpl;
    for (tern_weight_type wt : {TERN_WEIGHTS_Q8, TERN_WEIGHTS_Q4}) {
        fs::path files[2];
        for (int rows = 0; rows < 2; rows++) {
            files[rows] = dir / (rows ? "rows.tern" : "tiles.tern");
            tern_convert_options o;
            tern_convert_options_default(&o);
            o.weights = wt;
            o.group_size = 16; // 2:4 of 96 columns keeps 48: 32 would not divide it
            o.prune = TERN_PRUNE_MAGNITUDE;
            o.sparse_n = 2;
            o.sparse_m = 4;
            o.row_major = (uint8_t)rows;
            tern_error err{};
            ASSERT_EQ(tern_convert(src.c_str(), files[rows].c_str(), &o, &err), TERN_OK) << err.message;
            tern_file f;
            ASSERT_EQ(tern_file_open(files[rows].c_str(), 1, &f, &err), TERN_OK) << err.message;
            tern_tensor_view v;
            ASSERT_EQ(tern_file_get_tensor(&f, "blk.0.ffn_up.weight", &v, &err), TERN_OK);
            EXPECT_EQ(v.desc.sparse_n, 2);
            EXPECT_EQ(v.desc.encoding, wt == TERN_WEIGHTS_Q8 ? TERN_ENC_Q8 : TERN_ENC_Q4);
            EXPECT_EQ(v.desc.layout, rows ? TERN_LAYOUT_ROW_MAJOR : TERN_LAYOUT_ROW_INTERLEAVED);
            tern_file_close(&f);
        }
        for (tern_isa isa : tern_test::AllTiers()) {
            uint64_t mask = 0;
            ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(isa), &mask), TERN_OK);
            if (tern_isa_best(mask) != isa) continue;
            // row-major sparse kernels equal the ref (test_sparse.cc), so must the tiles
            const std::vector<float> want = Logits(files[1], mask, 1);
            ASSERT_FALSE(want.empty());
            for (int threads : {1, 2}) {
                const std::vector<float> got = Logits(files[0], mask, threads);
                ASSERT_EQ(got.size(), want.size());
                for (size_t i = 0; i < want.size(); i++)
                    ASSERT_EQ(got[i], want[i]) << tern_isa_name(isa) << " threads " << threads << " at " << i;
            }
        }
    }
    fs::remove_all(dir);
}

} // namespace
