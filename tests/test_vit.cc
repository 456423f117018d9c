// Vision transformers end to end: Hugging Face ViT fixtures and the timm
// vit-tiny checkpoint converted by tern and run through the public API
// against the float64 logits of transformers / timm; the image decoders and
// the PIL-style preprocessing against PIL's own pixels and plain loops;
// hostile image files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>
#include <jpeglib.h>
#include <png.h>

#include "formats/npy.h"
#include "formats/safetensors.h"
#include "runtime/image.h"
#include "tern.h"
#include "tests/test_reference.h"

namespace {

struct Reference {
    std::vector<float> pixels;  // [n][C][H][W]
    std::vector<uint64_t> pixel_shape;
    std::vector<float> logits;  // [rows][classes]
    size_t rows = 0, classes = 0;
    std::vector<int32_t> labels;
};

Reference load_reference(const std::string &path) {
    Reference r;
    tern_safetensors st;
    tern_error err = {};
    if (tern_safetensors_open(path.c_str(), &st, &err) != TERN_OK) {
        ADD_FAILURE() << err.message;
        return r;
    }
    const tern_st_tensor *px = tern_safetensors_find(&st, "pixel_values");
    const tern_st_tensor *lg = tern_safetensors_find(&st, "logits");
    const tern_st_tensor *lb = tern_safetensors_find(&st, "labels");
    if (!px || !lg || px->ndim != 4 || lg->ndim != 2) {
        ADD_FAILURE() << path << ": missing pixel_values/logits";
        tern_safetensors_close(&st);
        return r;
    }
    r.pixels.resize(px->n_elements);
    EXPECT_EQ(tern_st_to_f32(px, r.pixels.data(), &err), TERN_OK) << err.message;
    r.pixel_shape.assign(px->shape, px->shape + 4);
    r.logits.resize(lg->n_elements);
    EXPECT_EQ(tern_st_to_f32(lg, r.logits.data(), &err), TERN_OK) << err.message;
    r.rows = lg->shape[0];
    r.classes = lg->shape[1];
    if (lb && lb->dtype == TERN_ST_I32) {
        r.labels.resize(lb->n_elements);
        std::memcpy(r.labels.data(), lb->data, lb->size);
    }
    tern_safetensors_close(&st);
    return r;
}

size_t argmax(const float *x, size_t n) {
    return (size_t)(std::max_element(x, x + n) - x);
}

// A converted model in a temporary folder, and sessions on it.
class Converted {
  public:
    Converted(const std::string &src, tern_weight_type weights) {
        tmp_ = test_temp_dir();
        path_ = tmp_ + "/model.tern";
        tern_error err = {};
        if (test_convert(src, path_, weights, &err) != TERN_OK) {
            ADD_FAILURE() << "convert " << src << ": " << err.message;
            return;
        }
        if (tern_model_open(path_.c_str(), nullptr, &model_, &err) != TERN_OK)
            ADD_FAILURE() << "open: " << err.message;
    }
    ~Converted() {
        tern_model_close(model_);
        test_remove_tree(tmp_);
    }
    tern_model *model() const { return model_; }
    const std::string &path() const { return path_; }
    uint32_t classes() const {
        tern_model_info info;
        tern_model_get_info(model_, &info);
        return info.n_vocab;
    }
    // Logits of n images, in one classify call.
    std::vector<float> classify(const float *pixels, size_t n, uint32_t threads) const {
        std::vector<float> out(n * classes(), NAN);
        tern_session *s = test_session_create(model_, threads);
        if (!s) return out;
        tern_error err = {};
        EXPECT_EQ(tern_session_classify(s, pixels, n, out.data(), &err), TERN_OK) << err.message;
        tern_session_destroy(s);
        return out;
    }

  private:
    std::string tmp_, path_;
    tern_model *model_ = nullptr;
};

// ---- Hugging Face fixtures --------------------------------------------------

struct HfCase {
    std::string dir;  // absolute
    tern_weight_type weights;
    double tolerance;
};

std::vector<HfCase> hf_cases() {
    std::vector<HfCase> c;
    for (const std::string &d : {test_shared_path("fixtures/hf/vit"), test_source_path("tests/fixtures/hf/vit-small")}) {
        c.push_back({d, TERN_WEIGHTS_F32, 1e-4});
        c.push_back({d, TERN_WEIGHTS_F16, 2e-3});  // measured ~4e-4
    }
    return c;
}

class HfVit : public testing::TestWithParam<HfCase> {
  protected:
    void SetUp() override {
        ref_ = load_reference(GetParam().dir + "/reference.safetensors");
        model_.reset(new Converted(GetParam().dir, GetParam().weights));
        ASSERT_NE(model_->model(), nullptr);
        ASSERT_EQ(model_->classes(), ref_.classes);
        n_ = ref_.pixel_shape[0];
        image_ = ref_.pixel_shape[1] * ref_.pixel_shape[2] * ref_.pixel_shape[3];
    }
    Reference ref_;
    std::unique_ptr<Converted> model_;
    size_t n_ = 0, image_ = 0;
};

TEST_P(HfVit, LogitsMatchTransformers) {
    std::vector<float> out = model_->classify(ref_.pixels.data(), n_, 2);
    double e = test_max_row_rel_error(out.data(), ref_.logits.data(), n_, ref_.classes);
    EXPECT_LE(e, GetParam().tolerance);
    RecordProperty("max_row_rel_error", std::to_string(e));
}

TEST_P(HfVit, SameLogitsForAnyThreadCount) {
    std::vector<float> one = model_->classify(ref_.pixels.data(), n_, 1);
    for (uint32_t t : {2u, 4u}) {
        std::vector<float> other = model_->classify(ref_.pixels.data(), n_, t);
        EXPECT_EQ(std::memcmp(one.data(), other.data(), one.size() * sizeof(float)), 0) << t << " threads";
    }
}

TEST_P(HfVit, BatchEqualsSingleImages) {
    std::vector<float> batch = model_->classify(ref_.pixels.data(), n_, 2);
    for (size_t i = 0; i < n_; i++) {
        std::vector<float> one = model_->classify(ref_.pixels.data() + i * image_, 1, 2);
        EXPECT_EQ(std::memcmp(one.data(), batch.data() + i * ref_.classes, ref_.classes * sizeof(float)), 0)
            << "image " << i;
    }
}

TEST_P(HfVit, ConfigAndLabels) {
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(model_->model(), &ic), TERN_OK);
    EXPECT_EQ(ic.channels, ref_.pixel_shape[1]);
    EXPECT_EQ(ic.height, ref_.pixel_shape[2]);
    EXPECT_EQ(ic.width, ref_.pixel_shape[3]);
    EXPECT_EQ(ic.resize_short, 0u);  // ViTImageProcessor: straight to the model's size
    EXPECT_EQ(ic.interpolation, TERN_INTERP_BILINEAR);
    EXPECT_EQ(ic.mean[0], 0.5f);
    EXPECT_EQ(ic.std[2], 0.5f);
    const char *text;
    size_t len;
    ASSERT_EQ(tern_model_label(model_->model(), 1, &text, &len), TERN_OK);
    EXPECT_EQ(std::string(text, len), "LABEL_1");
    EXPECT_NE(tern_model_label(model_->model(), (uint32_t)ref_.classes, &text, &len), TERN_OK);
    tern_model_info info;
    tern_model_get_info(model_->model(), &info);
    EXPECT_EQ(info.arch, TERN_ARCH_VIT);
    EXPECT_STREQ(info.arch_name, "vit");
}

TEST_P(HfVit, TokensAreRefused) {
    tern_session *s = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_session_create(model_->model(), nullptr, &s, &err), TERN_OK) << err.message;
    int32_t tok = 0;
    float logits[16];
    EXPECT_EQ(tern_session_feed(s, &tok, 1, logits, TERN_LOGITS_LAST, &err), TERN_ERR_UNSUPPORTED);
    tern_session_destroy(s);
}

std::string hf_name(const testing::TestParamInfo<HfCase> &info) {
    return test_case_name(info.param.dir, info.param.weights);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfVit, testing::ValuesIn(hf_cases()), hf_name);

// ---- timm vit_tiny_patch16_224 ------------------------------------------------

class TimmVit : public testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new std::string(test_shared_path("models/vit-tiny-in1k"));
        ref_ = new Reference(load_reference(*dir_ + "/reference.safetensors"));
        model_ = new Converted(*dir_, TERN_WEIGHTS_F32);
    }
    static void TearDownTestSuite() {
        delete model_;
        delete ref_;
        delete dir_;
    }
    void SetUp() override {
        ASSERT_NE(model_->model(), nullptr);
        ASSERT_EQ(ref_->classes, 1000u);
    }
    // The sorted image names (reference.json's order).
    static std::vector<std::string> images() {
        std::vector<std::string> names;
        std::string dir = *dir_ + "/images";
        DIR *d = opendir(dir.c_str());
        if (!d) return names;
        while (struct dirent *e = readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 4 && (n.substr(n.size() - 4) == ".jpg" || n.substr(n.size() - 5) == ".JPEG")) names.push_back(n);
        }
        closedir(d);
        std::sort(names.begin(), names.end());
        return names;
    }
    static std::string *dir_;
    static Reference *ref_;
    static Converted *model_;
};

std::string *TimmVit::dir_;
Reference *TimmVit::ref_;
Converted *TimmVit::model_;

TEST_F(TimmVit, ConfigFromPretrainedCfg) {
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(model_->model(), &ic), TERN_OK);
    EXPECT_EQ(ic.channels, 3u);
    EXPECT_EQ(ic.height, 224u);
    EXPECT_EQ(ic.width, 224u);
    EXPECT_EQ(ic.resize_short, 248u);  // floor(224 / 0.9)
    EXPECT_EQ(ic.interpolation, TERN_INTERP_BICUBIC);
    EXPECT_EQ(ic.mean[1], 0.5f);
    EXPECT_EQ(ic.std[1], 0.5f);
    const char *text;
    size_t len;
    ASSERT_EQ(tern_model_label(model_->model(), 0, &text, &len), TERN_OK);
    EXPECT_EQ(std::string(text, len), "tench, Tinca tinca");
}

TEST_F(TimmVit, TensorPathMatchesTimm) {
    ASSERT_EQ(ref_->pixel_shape[0], 4u);
    // Under emulation (about 6 s an image under qemu-arm) two of the four.
    const size_t n = test_emulated() ? 2 : 4;
    std::vector<float> out = model_->classify(ref_->pixels.data(), n, 2);
    double e = test_max_row_rel_error(out.data(), ref_->logits.data(), n, 1000);
    EXPECT_LE(e, 1e-4);
    RecordProperty("max_row_rel_error", std::to_string(e));
}

// PIL decodes, resizes and crops the first four images into pixel_values:
// tern's decoder and resampler should land on the same 8-bit values.
TEST_F(TimmVit, PreprocessingMatchesPil) {
    std::vector<std::string> names = images();
    ASSERT_EQ(names.size(), 24u);
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(model_->model(), &ic), TERN_OK);
    const size_t per = 3 * 224 * 224;
    std::vector<float> px(per);
    double worst = 0;
    size_t differing = 0;
    for (size_t i = 0; i < 4; i++) {
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_load((*dir_ + "/images/" + names[i]).c_str(), &img, &err), TERN_OK) << err.message;
        ASSERT_EQ(tern_image_preprocess(&img, &ic, px.data(), &err), TERN_OK) << err.message;
        tern_image_free(&img);
        for (size_t j = 0; j < per; j++) {
            double d = std::fabs((double)px[j] - ref_->pixels[i * per + j]);
            worst = std::max(worst, d);
            differing += d > 1e-6;
        }
    }
    // One 8-bit level is 2/255 after (x - 0.5) / 0.5.
    printf("preprocessing vs PIL: %zu of %zu values differ, worst by %.5f (%.2f levels)\n", differing,
           4 * per, worst, worst * 255 / 2);
    EXPECT_LE(worst, 2.0 / 255 * 2 + 1e-6);
    EXPECT_LE(differing, 4 * per / 100);
}

// Under emulation every eighth image only (3 of 24); the native run checks
// the 16-of-17 accuracy figure.
TEST_F(TimmVit, JpegPathClassifiesLabelledImages) {
    std::vector<std::string> all = images();
    ASSERT_EQ(all.size(), ref_->rows);
    ASSERT_EQ(ref_->labels.size(), ref_->rows);
    const size_t step = test_emulated() ? 8 : 1;
    std::vector<size_t> pick;
    for (size_t i = 0; i < all.size(); i += step) pick.push_back(i);
    tern_image_config ic;
    ASSERT_EQ(tern_model_image_config(model_->model(), &ic), TERN_OK);
    const size_t per = 3 * 224 * 224;
    std::vector<float> px(pick.size() * per);
    for (size_t k = 0; k < pick.size(); k++) {
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_load((*dir_ + "/images/" + all[pick[k]]).c_str(), &img, &err), TERN_OK) << err.message;
        ASSERT_EQ(tern_image_preprocess(&img, &ic, px.data() + k * per, &err), TERN_OK) << err.message;
        tern_image_free(&img);
    }
    std::vector<float> out = model_->classify(px.data(), pick.size(), 2);
    int labelled = 0, right = 0, same_top1 = 0;
    double worst_rel = 0, worst_abs = 0;
    for (size_t k = 0; k < pick.size(); k++) {
        const size_t i = pick[k];
        const float *o = out.data() + k * 1000, *r = ref_->logits.data() + i * 1000;
        worst_rel = std::max(worst_rel, test_row_rel_error(o, r, 1000));
        for (size_t c = 0; c < 1000; c++) worst_abs = std::max(worst_abs, std::fabs((double)o[c] - r[c]));
        same_top1 += argmax(o, 1000) == argmax(r, 1000);
        if (ref_->labels[i] < 0) continue;
        labelled++;
        // The synset in the file name is the label's class.
        EXPECT_EQ(all[i][0], 'n');
        right += (int32_t)argmax(o, 1000) == ref_->labels[i];
    }
    printf("JPEG path: top-1 right on %d of %d labelled images; same top-1 as timm on %d of %zu; "
           "logits vs timm: worst row rel. error %.3g, worst abs %.3g\n",
           right, labelled, same_top1, pick.size(), worst_rel, worst_abs);
    RecordProperty("top1_right", right);
    RecordProperty("worst_row_rel_error", std::to_string(worst_rel));
    if (step == 1) {
        EXPECT_EQ(labelled, 17);
        EXPECT_GE(right, 16);
    } else {
        EXPECT_GE(right, labelled - 1);
    }
    EXPECT_LE(worst_rel, 0.05);
}

TEST_F(TimmVit, CliClassifyAndPixelLogits) {
    std::string tmp = test_temp_dir();
    std::string out = tmp + "/out.txt";
    std::string cmd = test_program_command("cli/tern") + " classify " + model_->path() + " " + *dir_ +
                      "/images/tench.jpg --top 3 -t 2 > " + out;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::vector<unsigned char> text = test_read_file(out);
    std::string s(text.begin(), text.end());
    EXPECT_NE(s.find("tench.jpg\n"), std::string::npos) << s;
    EXPECT_NE(s.find("tench, Tinca tinca"), std::string::npos) << s;

    // logits --pixels on the first two reference inputs.
    const uint64_t shape[4] = {2, 3, 224, 224};
    tern_error err = {};
    ASSERT_EQ(tern_npy_write_f32((tmp + "/px.npy").c_str(), ref_->pixels.data(), 4, shape, &err), TERN_OK);
    cmd = test_program_command("cli/tern") + " logits " + model_->path() + " --pixels " + tmp +
          "/px.npy -o " + tmp + "/lg.npy -t 2";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    float *lg = nullptr;
    uint32_t ndim = 0;
    uint64_t got[4];
    ASSERT_EQ(tern_npy_read_f32((tmp + "/lg.npy").c_str(), &lg, &ndim, got, &err), TERN_OK) << err.message;
    EXPECT_EQ(ndim, 2u);
    EXPECT_EQ(got[0], 2u);
    EXPECT_EQ(got[1], 1000u);
    EXPECT_LE(test_max_row_rel_error(lg, ref_->logits.data(), 2, 1000), 1e-4);
    free(lg);
    // A missing image is reported, the exit code says so.
    cmd = test_program_command("cli/tern") + " classify " + model_->path() + " " + tmp + "/none.jpg 2>/dev/null";
    EXPECT_NE(std::system(cmd.c_str()), 0);
    test_remove_tree(tmp);
}

TEST_F(TimmVit, SameLogitsForThreadsAndBatches) {
    const size_t per = 3 * 224 * 224;
    std::vector<float> two = model_->classify(ref_->pixels.data(), 2, 4);
    std::vector<float> one = model_->classify(ref_->pixels.data() + per, 1, 1);
    EXPECT_EQ(std::memcmp(one.data(), two.data() + 1000, 1000 * sizeof(float)), 0);
}

// ---- The converter: preprocessing configs and refused variants ------------------

// A copy of a fixture folder with another config.json (and optionally a
// preprocessor_config.json), converted; returns the status.
tern_status convert_variant(const std::string &fixture, const std::string &config,
                            const std::string &preprocessor, tern_image_config *ic, tern_error *err) {
    std::string tmp = test_temp_dir();
    std::vector<unsigned char> weights = test_read_file(fixture + "/model.safetensors");
    EXPECT_TRUE(test_write_file(tmp + "/model.safetensors", weights.data(), weights.size()));
    EXPECT_TRUE(test_write_file(tmp + "/config.json", config.data(), config.size()));
    if (!preprocessor.empty()) {
        EXPECT_TRUE(test_write_file(tmp + "/preprocessor_config.json", preprocessor.data(), preprocessor.size()));
    }
    std::string out = tmp + "/m.tern";
    tern_status st = tern_convert(tmp.c_str(), out.c_str(), nullptr, err);
    if (st == TERN_OK && ic) {
        tern_model *m = nullptr;
        EXPECT_EQ(tern_model_open(out.c_str(), nullptr, &m, err), TERN_OK) << err->message;
        if (m) {
            EXPECT_EQ(tern_model_image_config(m, ic), TERN_OK);
        }
        tern_model_close(m);
    }
    test_remove_tree(tmp);
    return st;
}

std::string replace(std::string s, const std::string &from, const std::string &to) {
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
}

TEST(VitConvert, HfPreprocessorConfig) {
    const std::string dir = test_source_path("tests/fixtures/hf/vit-small");
    std::vector<unsigned char> raw = test_read_file(dir + "/config.json");
    const std::string cfg(raw.begin(), raw.end());
    tern_image_config ic = {};
    tern_error err = {};
    // shortest_edge + centre crop, bicubic, ImageNet statistics.
    ASSERT_EQ(convert_variant(dir, cfg,
                              R"({"do_resize": true, "size": {"shortest_edge": 55}, "resample": 3,
                                  "do_center_crop": true, "crop_size": {"height": 48, "width": 48},
                                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})",
                              &ic, &err),
              TERN_OK)
        << err.message;
    EXPECT_EQ(ic.resize_short, 55u);
    EXPECT_EQ(ic.interpolation, TERN_INTERP_BICUBIC);
    EXPECT_FLOAT_EQ(ic.mean[0], 0.485f);
    EXPECT_FLOAT_EQ(ic.std[2], 0.225f);
    // ViTImageProcessor's layout: size height/width, no crop.
    ASSERT_EQ(convert_variant(dir, cfg, R"({"size": {"height": 48, "width": 48}, "resample": 2})", &ic, &err),
              TERN_OK)
        << err.message;
    EXPECT_EQ(ic.resize_short, 0u);
    EXPECT_EQ(ic.interpolation, TERN_INTERP_BILINEAR);
    // A processor size that is not the model's, an unknown filter.
    EXPECT_EQ(convert_variant(dir, cfg, R"({"size": {"height": 64, "width": 64}})", nullptr, &err), TERN_ERR_FORMAT);
    EXPECT_EQ(convert_variant(dir, cfg, R"({"resample": 1})", nullptr, &err), TERN_ERR_UNSUPPORTED);
}

TEST(VitConvert, RefusedVariants) {
    const std::string dir = test_source_path("tests/fixtures/hf/vit-small");
    std::vector<unsigned char> raw = test_read_file(dir + "/config.json");
    const std::string cfg(raw.begin(), raw.end());
    tern_error err = {};
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("hidden_act": "gelu")", R"("hidden_act": "gelu_new")"), "", nullptr, &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(err.message).find("gelu_new"), std::string::npos) << err.message;
    // 5 heads do not divide 48.
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("num_attention_heads": 4)", R"("num_attention_heads": 5)"), "", nullptr, &err),
              TERN_ERR_FORMAT);
    // An image size the position embeddings do not fit.
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("image_size": 48)", R"("image_size": 56)"), "", nullptr, &err),
              TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("position_embeddings"), std::string::npos) << err.message;
    // Labels that do not match the classifier.
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("4": "LABEL_4")", R"("9": "LABEL_4")"), "", nullptr, &err),
              TERN_ERR_FORMAT);
}

TEST(VitConvert, TimmVariants) {
    const std::string dir = test_shared_path("models/vit-tiny-in1k");
    std::vector<unsigned char> raw = test_read_file(dir + "/config.json");
    const std::string cfg(raw.begin(), raw.end());
    ASSERT_FALSE(cfg.empty());
    tern_error err = {};
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("global_pool": "token")", R"("global_pool": "avg")"), "", nullptr, &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("crop_mode": "center")", R"("crop_mode": "squash")"), "", nullptr, &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_EQ(convert_variant(dir, replace(cfg, R"("architecture": "vit_tiny_patch16_224")", R"("architecture": "convnext_tiny")"), "", nullptr, &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(err.message).find("convnext_tiny"), std::string::npos) << err.message;
    // Bilinear and a different crop_pct: resize_short follows floor(224 / crop_pct).
    tern_image_config ic = {};
    std::string c2 = replace(replace(cfg, R"("crop_pct": 0.9)", R"("crop_pct": 0.875)"), R"("interpolation": "bicubic")",
                             R"("interpolation": "bilinear")");
    ASSERT_EQ(convert_variant(dir, c2, "", &ic, &err), TERN_OK) << err.message;
    EXPECT_EQ(ic.resize_short, 256u);
    EXPECT_EQ(ic.interpolation, TERN_INTERP_BILINEAR);
}

// ---- Images: decoders ---------------------------------------------------------

struct PngSpec {
    int color_type, bit_depth;
    uint32_t w, h;
};

// Encodes a PNG in memory with libpng; `samples` are per-channel values (16-bit when depth 16).
std::vector<unsigned char> encode_png(const PngSpec &spec, const std::vector<uint16_t> &samples,
                                      const std::vector<png_color> &palette = {}) {
    std::vector<unsigned char> buf;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return {};
    }
    png_set_write_fn(
        png, &buf,
        [](png_structp p, png_bytep data, size_t n) {
            auto *b = static_cast<std::vector<unsigned char> *>(png_get_io_ptr(p));
            b->insert(b->end(), data, data + n);
        },
        nullptr);
    png_set_IHDR(png, info, spec.w, spec.h, spec.bit_depth, spec.color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (!palette.empty()) png_set_PLTE(png, info, palette.data(), (int)palette.size());
    png_write_info(png, info);
    const int channels = png_get_channels(png, info);
    const size_t per_row = (size_t)spec.w * channels;
    std::vector<unsigned char> row(per_row * 2);
    for (uint32_t y = 0; y < spec.h; y++) {
        for (size_t i = 0; i < per_row; i++) {
            uint16_t v = samples[y * per_row + i];
            if (spec.bit_depth == 16) {
                row[2 * i] = (unsigned char)(v >> 8);
                row[2 * i + 1] = (unsigned char)v;
            } else {
                row[i] = (unsigned char)v;
            }
        }
        png_write_row(png, row.data());
    }
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return buf;
}

TEST(VitImage, PngColourTypes) {
    const uint32_t w = 3, h = 2;
    struct Case {
        PngSpec spec;
        std::vector<uint16_t> samples;
        std::vector<uint8_t> rgb;  // expected, PIL's convert("RGB")
    };
    std::vector<Case> cases = {
        {{PNG_COLOR_TYPE_GRAY, 8, w, h}, {0, 10, 20, 30, 40, 255}, {}},
        {{PNG_COLOR_TYPE_RGB, 8, w, h}, {}, {}},
        {{PNG_COLOR_TYPE_RGB_ALPHA, 8, w, h}, {}, {}},
        {{PNG_COLOR_TYPE_GRAY_ALPHA, 8, w, h}, {}, {}},
        {{PNG_COLOR_TYPE_RGB, 16, w, h}, {}, {}},
        {{PNG_COLOR_TYPE_GRAY, 16, w, h}, {}, {}},
    };
    for (Case &c : cases) {
        const int ch = c.spec.color_type == PNG_COLOR_TYPE_GRAY ? 1
                       : c.spec.color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                       : c.spec.color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
        c.samples.clear();
        c.rgb.clear();
        for (uint32_t p = 0; p < w * h; p++) {
            uint16_t v[4];
            for (int k = 0; k < ch; k++) {
                v[k] = (uint16_t)((p * 37 + k * 91 + 5) % 256);
                if (c.spec.bit_depth == 16) v[k] = (uint16_t)(v[k] * 257 + 100 * k);
                c.samples.push_back(v[k]);
            }
            const int colour = ch >= 3 ? 3 : 1;
            for (int k = 0; k < 3; k++) c.rgb.push_back((uint8_t)(v[colour == 3 ? k : 0] >> (c.spec.bit_depth == 16 ? 8 : 0)));
        }
        std::vector<unsigned char> file = encode_png(c.spec, c.samples);
        ASSERT_FALSE(file.empty());
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_decode(file.data(), file.size(), &img, &err), TERN_OK) << err.message;
        EXPECT_EQ(img.width, w);
        EXPECT_EQ(img.height, h);
        EXPECT_EQ(std::vector<uint8_t>(img.rgb, img.rgb + w * h * 3), c.rgb)
            << "colour type " << c.spec.color_type << " depth " << c.spec.bit_depth;
        tern_image_free(&img);
    }
    // Palette: the palette's colours.
    std::vector<png_color> pal = {{255, 0, 0}, {0, 255, 0}, {1, 2, 3}};
    std::vector<unsigned char> file = encode_png({PNG_COLOR_TYPE_PALETTE, 8, 3, 1}, {2, 0, 1}, pal);
    tern_image img;
    tern_error err = {};
    ASSERT_EQ(tern_image_decode(file.data(), file.size(), &img, &err), TERN_OK) << err.message;
    EXPECT_EQ(std::vector<uint8_t>(img.rgb, img.rgb + 9), (std::vector<uint8_t>{1, 2, 3, 255, 0, 0, 0, 255, 0}));
    tern_image_free(&img);
}

std::vector<unsigned char> encode_jpeg(uint32_t w, uint32_t h, int gray, const std::vector<uint8_t> &px) {
    jpeg_compress_struct c;
    jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *mem = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = gray ? 1 : 3;
    c.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < h) {
        JSAMPROW row = const_cast<uint8_t *>(px.data()) + (size_t)c.next_scanline * w * c.input_components;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    std::vector<unsigned char> out(mem, mem + size);
    free(mem);
    return out;
}

TEST(VitImage, JpegRgbAndGray) {
    const uint32_t w = 24, h = 16;
    for (int gray = 0; gray < 2; gray++) {
        std::vector<uint8_t> px;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                for (int k = 0; k < (gray ? 1 : 3); k++) px.push_back((uint8_t)(20 + 4 * x + 3 * y + 30 * k));
        std::vector<unsigned char> file = encode_jpeg(w, h, gray, px);
        tern_image img;
        tern_error err = {};
        ASSERT_EQ(tern_image_decode(file.data(), file.size(), &img, &err), TERN_OK) << err.message;
        ASSERT_EQ(img.width, w);
        ASSERT_EQ(img.height, h);
        int worst = 0;
        for (uint32_t p = 0; p < w * h; p++)
            for (int k = 0; k < 3; k++)
                worst = std::max(worst, std::abs((int)img.rgb[p * 3 + k] - (int)px[gray ? p : p * 3 + k]));
        EXPECT_LE(worst, 8) << (gray ? "gray" : "rgb");  // quality 100, smooth content
        tern_image_free(&img);
    }
}

// ---- Images: hostile input ----------------------------------------------------

uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// A PNG signature and IHDR claiming w x h, with a valid CRC, and nothing else.
std::vector<unsigned char> png_header(uint32_t w, uint32_t h) {
    std::vector<unsigned char> f = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    f.resize(f.size() + 13 + 4);
    put_be32(&f[16], w);
    put_be32(&f[20], h);
    f[24] = 8;  // depth
    f[25] = 2;  // RGB
    put_be32(&f[29], crc32_of(&f[12], 17));
    return f;
}

TEST(VitImage, HostileFilesGiveErrors) {
    tern_image img;
    tern_error err = {};
    // Absurd dimensions, refused before any allocation.
    for (auto dims : {std::make_pair(20000u, 10u), std::make_pair(10u, 20000u), std::make_pair(0u, 5u)}) {
        std::vector<unsigned char> f = png_header(dims.first, dims.second);
        EXPECT_EQ(tern_image_decode(f.data(), f.size(), &img, &err), TERN_ERR_FORMAT) << dims.first;
    }
    // A valid header, then nothing: truncated.
    std::vector<unsigned char> f = png_header(16, 16);
    EXPECT_EQ(tern_image_decode(f.data(), f.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("PNG"), std::string::npos) << err.message;

    // JPEG: a real file cut in half, garbage after SOI, dimensions patched to 20000 x 20000.
    std::vector<uint8_t> px(32 * 32 * 3, 128);
    std::vector<unsigned char> jpg = encode_jpeg(32, 32, 0, px);
    std::vector<unsigned char> half(jpg.begin(), jpg.begin() + jpg.size() / 2);
    EXPECT_EQ(tern_image_decode(half.data(), half.size(), &img, &err), TERN_ERR_FORMAT);
    // Cut inside the scan and closed with EOI: libjpeg would fill the rest with
    // grey (a 140-byte file declaring 12033 x 284 pixels took seconds that way).
    std::vector<unsigned char> closed = half;
    closed.push_back(0xFF);
    closed.push_back(0xD9);
    EXPECT_EQ(tern_image_decode(closed.data(), closed.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("remature end of"), std::string::npos) << err.message;
    // The fuzzer's find (tests/fuzz/corpus/image/): an EOI right after a few
    // bytes of scan, 12033 x 284 pixels declared.
    std::vector<unsigned char> fill = test_read_file(test_source_path("tests/fuzz/corpus/image/regress_grey_fill_after_marker.jpg"));
    ASSERT_FALSE(fill.empty());
    EXPECT_EQ(tern_image_decode(fill.data(), fill.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("JPEG"), std::string::npos) << err.message;
    // Arithmetic-coded scans that stop early decode to grey without a warning:
    // 115 bytes declaring 12062 x 8331 pixels are refused by their size alone.
    std::vector<unsigned char> arith = test_read_file(test_source_path("tests/fuzz/corpus/image/regress_arith_grey_100mpixel.jpg"));
    ASSERT_FALSE(arith.empty());
    EXPECT_EQ(tern_image_decode(arith.data(), arith.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("pixels from 115 bytes"), std::string::npos) << err.message;
    std::vector<unsigned char> junk = {0xFF, 0xD8, 0xFF, 0x12, 0x34, 0x56, 0x78, 0x9a};
    EXPECT_EQ(tern_image_decode(junk.data(), junk.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("JPEG"), std::string::npos) << err.message;
    std::vector<unsigned char> big = jpg;
    bool patched = false;
    for (size_t i = 2; i + 9 < big.size(); i++) {
        if (big[i] == 0xFF && big[i + 1] == 0xC0) {  // SOF0: FFC0 len(2) precision(1) height(2) width(2)
            big[i + 5] = big[i + 7] = 0x4E;
            big[i + 6] = big[i + 8] = 0x20;
            patched = true;
            break;
        }
    }
    ASSERT_TRUE(patched);
    EXPECT_EQ(tern_image_decode(big.data(), big.size(), &img, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("20000"), std::string::npos) << err.message;
    // Neither format, empty, missing file.
    const char text[] = "hello";
    EXPECT_EQ(tern_image_decode(text, 5, &img, &err), TERN_ERR_UNSUPPORTED);
    EXPECT_EQ(tern_image_decode(text, 0, &img, &err), TERN_ERR_UNSUPPORTED);
    EXPECT_EQ(tern_image_load("/nonexistent/x.jpg", &img, &err), TERN_ERR_IO);
    // Every prefix of a real JPEG and PNG fails cleanly or decodes.
    std::vector<uint16_t> samples(8 * 8 * 3, 77);
    std::vector<unsigned char> png = encode_png({PNG_COLOR_TYPE_RGB, 8, 8, 8}, samples);
    for (const auto *file : {&jpg, &png}) {
        for (size_t n = 0; n < file->size(); n += 7) {
            if (tern_image_decode(file->data(), n, &img, &err) == TERN_OK) tern_image_free(&img);
        }
    }
}

// ---- Images: resampling and preprocessing ----------------------------------------

// PIL's antialiased filters in plain double arithmetic, one output value.
double plain_resample(const tern_image &src, uint32_t out_w, uint32_t out_h, uint32_t ox, uint32_t oy, int c,
                      bool bicubic) {
    auto kernel = [&](double x) {
        x = std::fabs(x);
        if (!bicubic) return x < 1 ? 1 - x : 0.0;
        if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
        if (x < 2) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
        return 0.0;
    };
    auto weights = [&](uint32_t in, uint32_t out, uint32_t o, std::vector<double> &w) {
        double scale = (double)in / out, fs = std::max(scale, 1.0), center = (o + 0.5) * scale, sum = 0;
        w.assign(in, 0.0);
        for (uint32_t i = 0; i < in; i++) {
            double d = (i + 0.5 - center) / fs;
            if (std::fabs(d) < (bicubic ? 2 : 1)) sum += w[i] = kernel(d);
        }
        for (double &v : w) v /= sum;
    };
    std::vector<double> wx, wy;
    weights(src.width, out_w, ox, wx);
    weights(src.height, out_h, oy, wy);
    double acc = 0;
    for (uint32_t y = 0; y < src.height; y++)
        for (uint32_t x = 0; x < src.width; x++)
            acc += wy[y] * wx[x] * src.rgb[((size_t)y * src.width + x) * 3 + c];
    return acc;
}

TEST(VitImage, ResizeMatchesPlainFilter) {
    tern_image src;
    src.width = 37;
    src.height = 23;
    std::vector<uint8_t> px(37 * 23 * 3);
    for (size_t i = 0; i < px.size(); i++) px[i] = (uint8_t)(40 + (i * 7919) % 171);  // high frequencies, no clipping
    src.rgb = px.data();
    struct {
        uint32_t w, h;
    } sizes[] = {{11, 7}, {37, 9}, {50, 40}, {20, 23}, {3, 30}};
    for (bool bicubic : {false, true}) {
        for (auto sz : sizes) {
            tern_image out;
            tern_error err = {};
            ASSERT_EQ(tern_image_resize(&src, sz.w, sz.h, bicubic ? TERN_INTERP_BICUBIC : TERN_INTERP_BILINEAR, &out, &err),
                      TERN_OK)
                << err.message;
            ASSERT_EQ(out.width, sz.w);
            ASSERT_EQ(out.height, sz.h);
            double worst = 0;
            for (uint32_t y = 0; y < sz.h; y++)
                for (uint32_t x = 0; x < sz.w; x++)
                    for (int c = 0; c < 3; c++) {
                        // The filter overshoots: clipped to [0, 255] once (PIL clips after each pass).
                        double want = std::min(255.0, std::max(0.0, plain_resample(src, sz.w, sz.h, x, y, c, bicubic)));
                        worst = std::max(worst, std::fabs(want - out.rgb[((size_t)y * sz.w + x) * 3 + c]));
                    }
            // Two 8-bit roundings (the overshoot stays inside [0, 255]).
            EXPECT_LE(worst, 1.5) << sz.w << "x" << sz.h << (bicubic ? " bicubic" : " bilinear");
            tern_image_free(&out);
        }
    }
    // A flat image stays flat, and a same-size resize is the identity.
    std::vector<uint8_t> flat(37 * 23 * 3, 201);
    src.rgb = flat.data();
    tern_image out;
    ASSERT_EQ(tern_image_resize(&src, 13, 40, TERN_INTERP_BICUBIC, &out, nullptr), TERN_OK);
    EXPECT_TRUE(std::all_of(out.rgb, out.rgb + 13 * 40 * 3, [](uint8_t v) { return v == 201; }));
    tern_image_free(&out);
    src.rgb = px.data();
    ASSERT_EQ(tern_image_resize(&src, 37, 23, TERN_INTERP_BICUBIC, &out, nullptr), TERN_OK);
    EXPECT_EQ(std::memcmp(out.rgb, px.data(), px.size()), 0);
    tern_image_free(&out);
}

// torchvision's CenterCrop with Python's round-half-to-even, on an image
// whose red channel is the column and green the row (no resize: the short
// side already has the size asked).
TEST(VitImage, CenterCropOffsets) {
    struct {
        uint32_t w, h, crop;
        int left, top;
    } cases[] = {
        {8, 8, 4, 2, 2},   // (8-4)/2 = 2
        {9, 8, 4, 2, 2},   // 2.5 -> 2 (even)
        {11, 8, 4, 4, 2},  // 3.5 -> 4 (even)
        {8, 10, 4, 2, 3},  // w <= h: short side 8, the height stays 10: (10-4)/2 = 3
    };
    for (auto c : cases) {
        std::vector<uint8_t> px((size_t)c.w * c.h * 3);
        for (uint32_t y = 0; y < c.h; y++)
            for (uint32_t x = 0; x < c.w; x++) {
                px[(y * c.w + x) * 3] = (uint8_t)x;
                px[(y * c.w + x) * 3 + 1] = (uint8_t)y;
            }
        tern_image img = {c.w, c.h, px.data()};
        tern_image_config ic = {};
        ic.channels = 3;
        ic.height = ic.width = c.crop;
        ic.resize_short = std::min(c.w, c.h);
        ic.interpolation = TERN_INTERP_BICUBIC;
        for (int k = 0; k < 3; k++) {
            ic.mean[k] = 0.0f;
            ic.std[k] = 1.0f / 255;  // out = value
        }
        std::vector<float> out(3 * c.crop * c.crop);
        tern_error err = {};
        ASSERT_EQ(tern_image_preprocess(&img, &ic, out.data(), &err), TERN_OK) << err.message;
        EXPECT_NEAR(out[0], c.left, 1e-3) << c.w << "x" << c.h;
        EXPECT_NEAR(out[c.crop * c.crop], c.top, 1e-3) << c.w << "x" << c.h;
        EXPECT_NEAR(out[c.crop - 1], c.left + c.crop - 1, 1e-3);
    }
}

TEST(VitImage, PreprocessNormalisesAndPads) {
    // 4 x 4 grey 100, crop 6 x 6 larger than the image: a zero border (before
    // normalisation) like torchvision's pad.
    std::vector<uint8_t> px(4 * 4 * 3, 100);
    tern_image img = {4, 4, px.data()};
    tern_image_config ic = {};
    ic.channels = 3;
    ic.height = ic.width = 6;
    ic.resize_short = 4;
    ic.interpolation = TERN_INTERP_BILINEAR;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std_[3] = {0.229f, 0.224f, 0.225f};
    std::copy(mean, mean + 3, ic.mean);
    std::copy(std_, std_ + 3, ic.std);
    std::vector<float> out(3 * 36);
    ASSERT_EQ(tern_image_preprocess(&img, &ic, out.data(), nullptr), TERN_OK);
    for (int c = 0; c < 3; c++) {
        EXPECT_FLOAT_EQ(out[c * 36 + 0], (0.0f - mean[c]) / std_[c]);
        EXPECT_FLOAT_EQ(out[c * 36 + 7], (100.0f / 255.0f - mean[c]) / std_[c]);  // (1, 1)
        EXPECT_FLOAT_EQ(out[c * 36 + 35], (0.0f - mean[c]) / std_[c]);
    }
    // Stretch mode (resize_short 0): a 2:1 image becomes the square asked.
    std::vector<uint8_t> wide(8 * 4 * 3, 50);
    tern_image w = {8, 4, wide.data()};
    ic.resize_short = 0;
    ic.height = ic.width = 4;
    for (int k = 0; k < 3; k++) {
        ic.mean[k] = 0;
        ic.std[k] = 1;
    }
    std::vector<float> o2(3 * 16);
    ASSERT_EQ(tern_image_preprocess(&w, &ic, o2.data(), nullptr), TERN_OK);
    for (float v : o2) EXPECT_FLOAT_EQ(v, 50.0f / 255.0f);
    // One channel: refused (images are RGB).
    ic.channels = 1;
    EXPECT_EQ(tern_image_preprocess(&w, &ic, o2.data(), nullptr), TERN_ERR_UNSUPPORTED);
}

}  // namespace
