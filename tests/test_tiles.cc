// ROW_INTERLEAVED Q8/Q4 tiles (docs/format.md 7.4): the converter's reordering
// keeps every value's meaning, and the tiled integer kernels of every tier
// equal the row-major scalar definition bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "converter/quantize.h"
#include "converter/tile_layout.h"
#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "runtime/internal.h"
#include "tests/test_reference.h"
#include "tests/test_util.h"
#include "tern.h"
#include "tests/test_planes.h"

namespace {

using Tensor = TestPlanes;

Tensor Quantized(tern_encoding enc, size_t rows, size_t cols, uint32_t gs, bool asym, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(rows * cols);
    for (float &v : x) v = nd(rng);
    Tensor t;
    t.desc.encoding = enc;
    t.desc.layout = TERN_LAYOUT_ROW_MAJOR;
    t.desc.ndim = 2;
    t.desc.dims[0] = rows;
    t.desc.dims[1] = cols;
    t.desc.group_size = gs;
    t.desc.flags = asym ? TERN_TENSOR_HAS_ZERO_POINT : 0;
    uint64_t sizes[TERN_PLANE_COUNT];
    EXPECT_EQ(tern_tensor_plane_sizes(&t.desc, sizes), 0);
    t.values.resize(sizes[0]);
    t.scales.resize(sizes[1] / 2);
    t.zeros.resize(sizes[2]);
    const tern_quant_params qp = {enc, gs, asym ? 1 : 0, 0};
    std::vector<uint8_t> tmp(gs);
    tern_quantize_rows(&qp, rows, cols, x.data(), t.values.data(), t.scales.data(),
                       asym ? t.zeros.data() : nullptr, tmp.data());
    return t;
}

uint16_t F16(float f) {
    // small normal values only: enough for scales and mins of a test
    uint32_t b;
    std::memcpy(&b, &f, 4);
    const uint32_t sign = (b >> 16) & 0x8000u;
    const int e = (int)((b >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(sign | (uint32_t)(e << 10) | ((b >> 13) & 0x3ffu));
}

// GGUF Q4_1-style: unsigned codes, a scale and an F16 min per group.
Tensor WithMins(tern_encoding enc, size_t rows, size_t cols, uint32_t gs, uint32_t seed) {
    std::mt19937 rng(seed);
    Tensor t;
    t.desc.encoding = enc;
    t.desc.layout = TERN_LAYOUT_ROW_MAJOR;
    t.desc.ndim = 2;
    t.desc.dims[0] = rows;
    t.desc.dims[1] = cols;
    t.desc.group_size = gs;
    t.desc.flags = TERN_TENSOR_HAS_MIN;
    uint64_t sizes[TERN_PLANE_COUNT];
    EXPECT_EQ(tern_tensor_plane_sizes(&t.desc, sizes), 0);
    t.values.resize(sizes[0]);
    for (uint8_t &v : t.values) v = (uint8_t)rng();
    t.scales.resize(sizes[1] / 2);
    std::uniform_real_distribution<float> sd(0.01f, 0.1f), md(0.05f, 1.0f);
    for (uint16_t &v : t.scales) v = F16(sd(rng));
    t.zeros.resize(sizes[2]);
    for (size_t i = 0; i < sizes[2] / 2; i++) {
        const uint16_t h = F16((rng() & 1 ? -1.0f : 1.0f) * md(rng));
        std::memcpy(&t.zeros[2 * i], &h, 2);
    }
    return t;
}

Tensor Tiled(const Tensor &rm) {
    Tensor t = rm;
    const void *src[TERN_PLANE_COUNT] = {rm.values.data(), rm.scales.data(),
                                         rm.zeros.empty() ? nullptr : rm.zeros.data(), nullptr};
    void *dst[TERN_PLANE_COUNT] = {t.values.data(), t.scales.data(),
                                   t.zeros.empty() ? nullptr : t.zeros.data(), nullptr};
    EXPECT_TRUE(tern_tiles_eligible(&rm.desc, TERN_TILE_ROWS));
    tern_tiles_from_rows(&rm.desc, TERN_TILE_ROWS, src, dst, &t.desc);
    return t;
}

std::vector<tern_isa> Tiers() {
    std::vector<tern_isa> out;
    for (tern_isa isa : {TERN_ISA_REF, TERN_ISA_X86_AVX2, TERN_ISA_X86_AVX512, TERN_ISA_X86_AVX512VNNI,
                         TERN_ISA_ARM_NEON, TERN_ISA_ARM_DOTPROD, TERN_ISA_ARM_I8MM}) {
        uint64_t mask;
        if (tern_isa_mask_parse(tern_isa_name(isa), &mask) != TERN_OK) continue;
        if (tern_isa_best(mask) == isa) out.push_back(isa);
    }
    return out;
}

struct Shape {
    tern_encoding enc;
    size_t rows, cols;
    uint32_t gs;
    bool asym;
    bool mins = false; // HAS_MIN (GGUF Q4_1) instead of a zero point
};

Tensor Make(const Shape &sh, uint32_t seed) {
    return sh.mins ? WithMins(sh.enc, sh.rows, sh.cols, sh.gs, seed)
                   : Quantized(sh.enc, sh.rows, sh.cols, sh.gs, sh.asym, seed);
}

class TilesShapes : public testing::TestWithParam<Shape> {};

// Independent of the offset helpers: row r's value c read back from the tiles
// by walking the documented order.
TEST_P(TilesShapes, OrderIsTheDocumentedOne) {
    const Shape sh = GetParam();
    const Tensor rm = Make(sh, 7);
    const Tensor tl = Tiled(rm);
    const size_t R = TERN_TILE_ROWS, cols = sh.cols, ng = cols / sh.gs;
    size_t pos = 0;
    for (size_t tile = 0; tile < sh.rows / R; tile++)
        for (size_t b = 0; b < cols / 32; b++) {
            const size_t chunks = sh.enc == TERN_ENC_Q8 ? 8 : 4;
            for (size_t k = 0; k < chunks; k++)
                for (size_t j = 0; j < R; j++)
                    for (size_t i = 0; i < 4; i++, pos++) {
                        const size_t r = tile * R + j;
                        const uint8_t got = tl.values[pos];
                        if (sh.enc == TERN_ENC_Q8) {
                            ASSERT_EQ(got, rm.values[r * cols + 32 * b + 4 * k + i]);
                        } else {
                            auto nib = [&](size_t c) {
                                const size_t gs = sh.gs, half = gs / 2, jj = c % gs;
                                const uint8_t v = rm.values[r * cols / 2 + c / gs * half + (jj < half ? jj : jj - half)];
                                return jj < half ? (v & 15) : (v >> 4);
                            };
                            ASSERT_EQ(got & 15, nib(32 * b + 8 * k + i));
                            ASSERT_EQ(got >> 4, nib(32 * b + 8 * k + 4 + i));
                        }
                    }
        }
    EXPECT_EQ(pos, tl.values.size());
    for (size_t tile = 0; tile < sh.rows / R; tile++)
        for (size_t g = 0; g < ng; g++)
            for (size_t j = 0; j < R; j++) {
                const size_t r = tile * R + j, at = (tile * ng + g) * R + j;
                ASSERT_EQ(tl.scales[at], rm.scales[r * ng + g]);
                if (sh.asym) {
                    ASSERT_EQ(tl.zeros[at], rm.zeros[r * ng + g]);
                }
                if (sh.mins) {
                    ASSERT_EQ(tl.zeros[2 * at], rm.zeros[2 * (r * ng + g)]);
                    ASSERT_EQ(tl.zeros[2 * at + 1], rm.zeros[2 * (r * ng + g) + 1]);
                }
            }
}

// Every tier's integer kernel over the tiles equals the scalar row-major
// definition bit for bit, for row ranges that cut tiles and any token count;
// the float-activation kernels equal the row-major ref too.
TEST_P(TilesShapes, EveryTierEqualsRowMajorRef) {
    const Shape sh = GetParam();
    const Tensor rm = Make(sh, 11);
    const Tensor tl = Tiled(rm);
    const tern_weight wr = rm.weight(), wt = tl.weight();
    tern_kernels ref;
    tern_kernels_init(&ref, TERN_ISA_MASK(TERN_ISA_REF));
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> bias(sh.rows);
    for (float &b : bias) b = nd(rng);
    for (size_t m : {1, 3, 4, 5, 9}) {
        std::vector<float> x(m * sh.cols);
        for (float &v : x) v = nd(rng);
        const size_t nb = sh.cols / 32;
        std::vector<int8_t> q(m * sh.cols);
        std::vector<float> d(m * nb);
        std::vector<int32_t> s(m * nb);
        ref.quantize_rows(m, sh.cols, x.data(), sh.cols, q.data(), d.data(), s.data());
        const tern_qrows qx = {m, sh.cols, q.data(), d.data(), s.data()};
        std::vector<float> want(m * sh.rows), wantf(m * sh.rows);
        ref.linear_qa[sh.enc](m, 0, sh.rows, &qx, &wr, bias.data(), want.data(), sh.rows);
        ref.linear[sh.enc](m, 0, sh.rows, x.data(), sh.cols, &wr, bias.data(), wantf.data(), sh.rows);
        for (tern_isa isa : Tiers()) {
            tern_kernels k;
            tern_kernels_init(&k, TERN_ISA_MASK(isa) | TERN_ISA_MASK(TERN_ISA_REF));
            SCOPED_TRACE(std::string(tern_isa_name(isa)) + " m=" + std::to_string(m));
            // whole, and a range starting and ending inside tiles
            const size_t r0 = sh.rows > 16 ? 5 : 0, r1 = sh.rows > 16 ? sh.rows - 3 : sh.rows;
            std::vector<float> got(m * sh.rows, -1.0f), gotf(m * sh.rows, -1.0f);
            k.linear_qa[sh.enc](m, 0, r0, &qx, &wt, bias.data(), got.data(), sh.rows);
            k.linear_qa[sh.enc](m, r0, r1, &qx, &wt, bias.data(), got.data(), sh.rows);
            k.linear_qa[sh.enc](m, r1, sh.rows, &qx, &wt, bias.data(), got.data(), sh.rows);
            ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
            k.linear[sh.enc](m, 0, sh.rows, x.data(), sh.cols, &wt, bias.data(), gotf.data(), sh.rows);
            for (size_t i = 0; i < gotf.size(); i++)
                ASSERT_NEAR(gotf[i], wantf[i], 1e-4 * std::sqrt((double)sh.cols)) << i;
        }
    }
}

// Row lookups (embeddings) read the same values from the tiles.
TEST_P(TilesShapes, RowLookupsMatchRowMajor) {
    const Shape sh = GetParam();
    const Tensor rm = Make(sh, 5);
    const Tensor tl = Tiled(rm);
    const tern_weight wr = rm.weight(), wt = tl.weight();
    ASSERT_TRUE(tern_weight_rows_readable(&wt));
    std::vector<float> a(sh.cols), b(sh.cols);
    for (size_t r = 0; r < sh.rows; r++) {
        tern_weight_row_f32(&wr, r, a.data());
        tern_weight_row_f32(&wt, r, b.data());
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "row " << r;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TilesShapes,
    testing::Values(Shape{TERN_ENC_Q4, 16, 32, 32, false}, Shape{TERN_ENC_Q4, 48, 128, 32, false},
                    Shape{TERN_ENC_Q4, 32, 256, 128, false}, Shape{TERN_ENC_Q4, 64, 96, 96, true},
                    Shape{TERN_ENC_Q4, 32, 192, 64, true}, Shape{TERN_ENC_Q8, 16, 64, 32, false},
                    Shape{TERN_ENC_Q8, 48, 160, 32, false}, Shape{TERN_ENC_Q8, 32, 256, 128, true},
                    Shape{TERN_ENC_Q8, 32, 96, 96, true}, Shape{TERN_ENC_Q4, 32, 128, 32, false, true},
                    Shape{TERN_ENC_Q4, 16, 192, 64, false, true}, Shape{TERN_ENC_Q8, 32, 128, 32, false, true}),
    [](const testing::TestParamInfo<Shape> &i) {
        const Shape &s = i.param;
        return std::string(s.enc == TERN_ENC_Q8 ? "q8" : "q4") + "_" + std::to_string(s.rows) + "x" +
               std::to_string(s.cols) + "_g" + std::to_string(s.gs) + (s.asym ? "_asym" : "") +
               (s.mins ? "_mins" : "");
    });

TEST(Tiles, EligibilityFollowsTheFormat) {
    Tensor t = Quantized(TERN_ENC_Q4, 24, 64, 32, false, 1);
    EXPECT_FALSE(tern_tiles_eligible(&t.desc, 16)); // 24 rows
    t = Quantized(TERN_ENC_Q8, 32, 64, 16, false, 1);
    EXPECT_FALSE(tern_tiles_eligible(&t.desc, 16)); // group 16
    t = Quantized(TERN_ENC_Q8, 32, 64, 32, false, 1);
    EXPECT_TRUE(tern_tiles_eligible(&t.desc, 16));
}

// End to end: a q4 and a q8 conversion in tiles and one row by row give the
// same logits bit for bit (integer activations) on each tier.
TEST(Tiles, ConvertedModelMatchesRowMajorOnEveryTier) {
    const std::string dir = test_shared_path("fixtures/hf/llama");
    const std::string tmp = test_temp_dir();
    const TestReference ref = test_load_reference(dir + "/reference.safetensors");
    for (tern_weight_type wt : {TERN_WEIGHTS_Q4, TERN_WEIGHTS_Q8}) {
        tern_convert_options opts;
        tern_convert_options_default(&opts);
        opts.weights = wt;
        tern_error err = {};
        const std::string tiled = tmp + "/tiled.tern", rows = tmp + "/rows.tern";
        ASSERT_EQ(tern_convert(dir.c_str(), tiled.c_str(), &opts, &err), TERN_OK) << err.message;
        opts.row_major = 1;
        ASSERT_EQ(tern_convert(dir.c_str(), rows.c_str(), &opts, &err), TERN_OK) << err.message;
        tern_file f;
        ASSERT_EQ(tern_file_open(tiled.c_str(), 0, &f, &err), TERN_OK);
        tern_tensor_view v;
        ASSERT_EQ(tern_file_get_tensor(&f, "blk.0.ffn_up.weight", &v, &err), TERN_OK);
        EXPECT_EQ(v.desc.layout, TERN_LAYOUT_ROW_INTERLEAVED);
        ASSERT_EQ(tern_file_get_tensor(&f, "token_embd.weight", &v, &err), TERN_OK);
        EXPECT_EQ(v.desc.layout, TERN_LAYOUT_ROW_INTERLEAVED); // rows are read from the tiles too
        tern_file_close(&f);
        auto logits = [&](const std::string &path, tern_isa isa) {
            tern_model_options mo;
            tern_model_options_default(&mo);
            mo.isa_mask = TERN_ISA_MASK(isa) | TERN_ISA_MASK(TERN_ISA_REF);
            tern_model *m = nullptr;
            EXPECT_EQ(tern_model_open(path.c_str(), &mo, &m, &err), TERN_OK) << err.message;
            std::vector<float> out = test_run_logits(m, ref.tokens, ref.vocab, 1, 0);
            tern_model_close(m);
            return out;
        };
        for (tern_isa isa : Tiers()) { // the other kernels (norms, attention) differ by tier
            const std::vector<float> want = logits(rows, isa);
            const std::vector<float> got = logits(tiled, isa);
            ASSERT_EQ(got.size(), want.size());
            EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
                << tern_isa_name(isa) << (wt == TERN_WEIGHTS_Q4 ? " q4" : " q8");
        }
    }
    test_remove_tree(tmp);
}

} // namespace
