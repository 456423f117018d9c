// Tests of the safetensors reader (hand-built files, hostile inputs) and of
// the Hugging Face -> .tern converter (shared fixtures, sharded and broken
// copies of them).
#include <gtest/gtest.h>
#include <json-c/json.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "formats/encoding.h"
#include "formats/keys.h"
#include "formats/safetensors.h"
#include "formats/tern_file.h"
#include "tern.h"

namespace fs = std::filesystem;

namespace {

// ---- Building safetensors files ---------------------------------------------

struct StTensor {
    std::string name;
    std::string dtype;
    std::vector<uint64_t> shape;
    std::string bytes;
};

template <typename T>
std::string raw_bytes(const std::vector<T> &v) {
    return std::string(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(T));
}

std::string header_with_length(const std::string &json) {
    std::string out(8, '\0');
    uint64_t n = json.size();
    for (int i = 0; i < 8; i++) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out + json;
}

// Header JSON and data laid out back to back in the given order.
std::string build_st(const std::vector<StTensor> &tensors, bool with_metadata = true) {
    std::ostringstream js;
    js << "{";
    if (with_metadata) js << "\"__metadata__\":{\"format\":\"pt\"}";
    uint64_t at = 0;
    std::string data;
    for (size_t i = 0; i < tensors.size(); i++) {
        const StTensor &t = tensors[i];
        if (i || with_metadata) js << ",";
        js << "\"" << t.name << "\":{\"dtype\":\"" << t.dtype << "\",\"shape\":[";
        for (size_t d = 0; d < t.shape.size(); d++) js << (d ? "," : "") << t.shape[d];
        js << "],\"data_offsets\":[" << at << "," << at + t.bytes.size() << "]}";
        at += t.bytes.size();
        data += t.bytes;
    }
    js << "}";
    std::string json = js.str();
    while (json.size() % 8) json += ' '; // padding, as the Python writer does
    return header_with_length(json) + data;
}

// A file from a raw JSON header and data, for hostile cases.
std::string raw_st(const std::string &json, const std::string &data) {
    return header_with_length(json) + data;
}

void write_file(const fs::path &p, const std::string &bytes) {
    std::ofstream f(p, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << p;
}

std::string read_file(const fs::path &p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// Parses a copy of exactly `size` bytes so that an over-read is caught by ASan.
tern_status open_copy(const std::string &bytes, size_t size, tern_error *err) {
    std::vector<uint8_t> copy(bytes.begin(), bytes.begin() + static_cast<long>(size));
    tern_safetensors st;
    tern_status s = tern_safetensors_open_memory(copy.data(), copy.size(), &st, err);
    if (s == TERN_OK) tern_safetensors_close(&st);
    return s;
}

tern_status open_str(const std::string &bytes, tern_error *err) {
    return open_copy(bytes, bytes.size(), err);
}

// ---- Safetensors reader -------------------------------------------------------

std::vector<StTensor> sample_tensors() {
    std::vector<StTensor> t;
    t.push_back({"w", "F32", {2, 3}, raw_bytes(std::vector<float>{0.f, 1.f, -2.5f, 3.f, 4.f, 1e-3f})});
    // F16: 1, -2, 0.5, 0 / BF16: 1, -3.
    t.push_back({"h", "F16", {4}, raw_bytes(std::vector<uint16_t>{0x3c00, 0xc000, 0x3800, 0x0000})});
    t.push_back({"b", "BF16", {2}, raw_bytes(std::vector<uint16_t>{0x3f80, 0xc040})});
    t.push_back({"d", "F64", {2}, raw_bytes(std::vector<double>{0.25, -1e10})});
    t.push_back({"i64", "I64", {2}, raw_bytes(std::vector<int64_t>{-7, 1 << 20})});
    t.push_back({"i32", "I32", {3}, raw_bytes(std::vector<int32_t>{-1, 7, 100000})});
    t.push_back({"i16", "I16", {2}, raw_bytes(std::vector<int16_t>{-300, 12})});
    t.push_back({"i8", "I8", {2}, raw_bytes(std::vector<int8_t>{-128, 5})});
    t.push_back({"u8", "U8", {2}, raw_bytes(std::vector<uint8_t>{255, 0})});
    t.push_back({"flag", "BOOL", {3}, raw_bytes(std::vector<uint8_t>{1, 0, 1})});
    t.push_back({"scalar", "F32", {}, raw_bytes(std::vector<float>{42.f})});
    t.push_back({"empty", "F32", {0, 5}, ""});
    return t;
}

const std::map<std::string, std::vector<float>> &sample_values() {
    static const std::map<std::string, std::vector<float>> v = {
        {"w", {0.f, 1.f, -2.5f, 3.f, 4.f, 1e-3f}},
        {"h", {1.f, -2.f, 0.5f, 0.f}},
        {"b", {1.f, -3.f}},
        {"d", {0.25f, -1e10f}},
        {"i64", {-7.f, 1048576.f}},
        {"i32", {-1.f, 7.f, 100000.f}},
        {"i16", {-300.f, 12.f}},
        {"i8", {-128.f, 5.f}},
        {"u8", {255.f, 0.f}},
        {"flag", {1.f, 0.f, 1.f}},
        {"scalar", {42.f}},
        {"empty", {}},
    };
    return v;
}

void check_sample(const tern_safetensors &st) {
    ASSERT_EQ(st.n_tensors, sample_tensors().size());
    for (uint32_t i = 1; i < st.n_tensors; i++)
        EXPECT_LT(strcmp(st.tensors[i - 1].name, st.tensors[i].name), 0) << "not sorted";
    for (const StTensor &src : sample_tensors()) {
        const tern_st_tensor *t = tern_safetensors_find(&st, src.name.c_str());
        ASSERT_NE(t, nullptr) << src.name;
        EXPECT_STREQ(tern_st_dtype_name(t->dtype), src.dtype.c_str());
        ASSERT_EQ(t->ndim, src.shape.size()) << src.name;
        uint64_t n = 1;
        for (size_t d = 0; d < src.shape.size(); d++) {
            EXPECT_EQ(t->shape[d], src.shape[d]);
            n *= src.shape[d];
        }
        EXPECT_EQ(t->n_elements, n) << src.name;
        EXPECT_EQ(t->size, src.bytes.size()) << src.name;
        EXPECT_EQ(0, memcmp(t->data, src.bytes.data(), src.bytes.size())) << src.name;
        std::vector<float> out(n + 1, 777.f);
        tern_error err{};
        ASSERT_EQ(tern_st_to_f32(t, out.data(), &err), TERN_OK) << err.message;
        const std::vector<float> &want = sample_values().at(src.name);
        for (size_t i = 0; i < n; i++) EXPECT_EQ(out[i], want[i]) << src.name << "[" << i << "]";
        EXPECT_EQ(out[n], 777.f) << src.name << ": wrote past the end";
    }
    EXPECT_EQ(tern_safetensors_find(&st, "__metadata__"), nullptr);
    EXPECT_EQ(tern_safetensors_find(&st, "missing"), nullptr);
    EXPECT_EQ(tern_safetensors_find(&st, ""), nullptr);
}

TEST(Safetensors, DtypeSizes) {
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_F64), 8u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_F32), 4u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_F16), 2u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_BF16), 2u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_I64), 8u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_I32), 4u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_I16), 2u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_I8), 1u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_U8), 1u);
    EXPECT_EQ(tern_st_dtype_size(TERN_ST_BOOL), 1u);
}

TEST(Safetensors, ReadsValidMemory) {
    std::string bytes = build_st(sample_tensors());
    tern_safetensors st;
    tern_error err{};
    ASSERT_EQ(tern_safetensors_open_memory(bytes.data(), bytes.size(), &st, &err), TERN_OK)
        << err.message;
    check_sample(st);
    tern_safetensors_close(&st);
}

TEST(Safetensors, ReadsValidFile) {
    fs::path p = fs::temp_directory_path() / ("tern_st_" + std::to_string(getpid()) + ".safetensors");
    write_file(p, build_st(sample_tensors(), false));
    tern_safetensors st;
    tern_error err{};
    ASSERT_EQ(tern_safetensors_open(p.c_str(), &st, &err), TERN_OK) << err.message;
    check_sample(st);
    tern_safetensors_close(&st);
    fs::remove(p);
}

TEST(Safetensors, MissingFileIsIoError) {
    tern_safetensors st;
    tern_error err{};
    EXPECT_EQ(tern_safetensors_open("/nonexistent/x.safetensors", &st, &err), TERN_ERR_IO);
    EXPECT_NE(std::string(err.message).find("/nonexistent/x.safetensors"), std::string::npos);
}

TEST(Safetensors, RejectsEveryTruncation) {
    std::string bytes = build_st(sample_tensors());
    for (size_t len = 0; len < bytes.size(); len++) {
        tern_error err{};
        EXPECT_EQ(open_copy(bytes, len, &err), TERN_ERR_FORMAT) << "length " << len;
    }
    // Trailing bytes past the last tensor are a hole too.
    tern_error err{};
    EXPECT_EQ(open_str(bytes + "x", &err), TERN_ERR_FORMAT);
}

TEST(Safetensors, RejectsHugeHeaderLength) {
    std::string bytes = build_st(sample_tensors());
    for (uint64_t n : {uint64_t(bytes.size()), UINT64_MAX, uint64_t(1) << 63}) {
        std::string b = bytes;
        for (int i = 0; i < 8; i++) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
        tern_error err{};
        EXPECT_EQ(open_str(b, &err), TERN_ERR_FORMAT) << n;
        EXPECT_NE(std::string(err.message).find("header length"), std::string::npos)
            << err.message;
    }
    // Inside the file but over the 100 MB limit.
    const uint64_t limit = 100u * 1000u * 1000u;
    std::vector<uint8_t> big(limit + 16, ' ');
    for (int i = 0; i < 8; i++) big[i] = static_cast<uint8_t>((limit >> (8 * i)) & 0xff);
    big[8] = '{';
    tern_safetensors st;
    tern_error err{};
    EXPECT_EQ(tern_safetensors_open_memory(big.data(), big.size(), &st, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::string(err.message).find("limit"), std::string::npos) << err.message;
}

TEST(Safetensors, RejectsBadOffsets) {
    const std::string data(24, '\0');
    const char *cases[] = {
        // past the end
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,1000]}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[4,28]}})",
        // begin > end
        R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[24,0]}})",
        // size does not match the shape
        R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
        R"({"a":{"dtype":"F16","shape":[6],"data_offsets":[0,24]}})",
        // overlap and holes
        R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        // malformed offsets
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[-4,20]}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0]}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24,24]}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0.0,24]}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":"0,24"}})",
        R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,18446744073709551615]}})",
        R"({"a":{"dtype":"F32","shape":[6]}})",
    };
    for (const char *json : cases) {
        tern_error err{};
        EXPECT_EQ(open_str(raw_st(json, data), &err), TERN_ERR_FORMAT) << json;
        EXPECT_NE(err.message[0], '\0');
    }
}

TEST(Safetensors, RejectsBadShapes) {
    const std::string data(24, '\0');
    const char *cases[] = {
        R"({"a":{"dtype":"F32","shape":[-6],"data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","shape":[6.0],"data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","shape":["6"],"data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","shape":6,"data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,24]}})",
        R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,24]}})",
        R"({"a":{"shape":[6],"data_offsets":[0,24]}})",
        R"({"a":{"dtype":7,"shape":[6],"data_offsets":[0,24]}})",
        R"({"a":[1,2]})",
    };
    for (const char *json : cases) {
        tern_error err{};
        EXPECT_EQ(open_str(raw_st(json, data), &err), TERN_ERR_FORMAT) << json;
    }
    // More than 8 dimensions.
    tern_error err{};
    EXPECT_EQ(open_str(raw_st(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})",
                              std::string(1, '\0')),
                       &err),
              TERN_ERR_UNSUPPORTED);
    // Exactly 8 is fine.
    EXPECT_EQ(open_str(raw_st(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})",
                              std::string(1, '\0')),
                       &err),
              TERN_OK)
        << err.message;
}

TEST(Safetensors, UnknownDtypeIsUnsupported) {
    tern_error err{};
    EXPECT_EQ(open_str(raw_st(R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
                              std::string(4, '\0')),
                       &err),
              TERN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(err.message).find("F8_E4M3"), std::string::npos) << err.message;
    EXPECT_NE(std::string(err.message).find("'a'"), std::string::npos) << err.message;
}

TEST(Safetensors, RejectsMalformedJson) {
    const char *cases[] = {
        "", "{", "not json", "[]", "{\"a\": {", R"({"a":{"dtype":"F32","shape":[1}})",
        "{} x", "{}}", "{\"a\":1}", "\"str\"",
    };
    for (const char *json : cases) {
        tern_error err{};
        EXPECT_EQ(open_str(raw_st(json, ""), &err), TERN_ERR_FORMAT) << "'" << json << "'";
    }
    // A NUL byte inside the header.
    {
        std::string nul = "{\"__metadata__\":{\"a\":\"b\"}}  ";
        nul[nul.size() - 1] = '\0';
        tern_error err{};
        EXPECT_EQ(open_str(raw_st(nul, ""), &err), TERN_ERR_FORMAT);
    }
    // Deep nesting is refused without recursing without bound.
    std::string deep(200000, '[');
    tern_error err{};
    EXPECT_EQ(open_str(raw_st("{\"__metadata__\":" + deep, ""), &err), TERN_ERR_FORMAT);
    // An empty header with padding is a valid, empty file.
    EXPECT_EQ(open_str(raw_st("{}      ", ""), &err), TERN_OK) << err.message;
}

TEST(Safetensors, RejectsDuplicateNames) {
    // json-c keeps the last of two equal keys; the hole left by the first is caught.
    tern_error err{};
    EXPECT_EQ(open_str(raw_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              std::string(8, '\0')),
                       &err),
              TERN_ERR_FORMAT);
}

// ---- Converter ------------------------------------------------------------------

fs::path shared_dir() {
    if (const char *s = getenv("TERN_SHARED_DIR")) return s;
    if (const char *s = getenv("TERN_SOURCE_DIR")) return fs::path(s) / ".." / "shared";
    return "../shared";
}

fs::path fixture(const char *name) { return shared_dir() / "fixtures" / "hf" / name; }

class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "tern_convert_XXXXXX").string();
        if (mkdtemp(tmpl.data())) path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) fs::remove_all(path_, ec);
    }
    const fs::path &path() const { return path_; }

private:
    fs::path path_;
};

// The HF -> tern name map, written out independently of the converter.
std::string tern_name(const std::string &hf) {
    static const std::map<std::string, std::string> top = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
    static const std::map<std::string, std::string> layer = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.bias", "attn_output.bias"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    auto it = top.find(hf);
    if (it != top.end()) return it->second;
    int l = -1, n = 0;
    if (sscanf(hf.c_str(), "model.layers.%d.%n", &l, &n) == 1 && n > 0) {
        auto jt = layer.find(hf.substr(static_cast<size_t>(n)));
        if (jt != layer.end()) return "blk." + std::to_string(l) + "." + jt->second;
    }
    return "";
}

json_object *load_json(const fs::path &p) {
    json_object *o = json_object_from_file(p.c_str());
    EXPECT_NE(o, nullptr) << p;
    return o;
}

int64_t json_int(json_object *o, const char *key) {
    json_object *v = nullptr;
    EXPECT_TRUE(json_object_object_get_ex(o, key, &v)) << key;
    return json_object_get_int64(v);
}

std::string meta_str(const tern_file &f, const char *key) {
    const char *s = nullptr;
    size_t n = 0;
    tern_error err{};
    EXPECT_EQ(tern_file_meta_str(&f, key, &s, &n, &err), TERN_OK) << err.message;
    return s ? std::string(s, n) : std::string();
}

uint32_t meta_u32(const tern_file &f, const char *key) {
    uint32_t v = 0;
    tern_error err{};
    EXPECT_EQ(tern_file_meta_u32(&f, key, &v, &err), TERN_OK) << err.message;
    return v;
}

int32_t meta_i32(const tern_file &f, const char *key) {
    int32_t v = 0;
    tern_error err{};
    EXPECT_EQ(tern_file_meta_i32(&f, key, &v, &err), TERN_OK) << err.message;
    return v;
}

float meta_f32(const tern_file &f, const char *key) {
    float v = 0;
    tern_error err{};
    EXPECT_EQ(tern_file_meta_f32(&f, key, &v, &err), TERN_OK) << err.message;
    return v;
}

tern_status convert(const fs::path &src, const fs::path &dst, tern_weight_type w,
                    tern_error *err) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = w;
    return tern_convert(src.c_str(), dst.c_str(), &o, err);
}

// Metadata against config.json, read here with json-c directly.
void check_metadata(const tern_file &f, const fs::path &src, const char *arch) {
    json_object *cfg = load_json(src / "config.json");
    ASSERT_NE(cfg, nullptr);
    EXPECT_EQ(meta_str(f, TERN_KEY_ARCH), arch);
    EXPECT_EQ(meta_str(f, TERN_KEY_NAME), src.filename().string());
    EXPECT_FALSE(meta_str(f, TERN_KEY_SOURCE).empty());
    EXPECT_EQ(meta_str(f, TERN_KEY_CONVERTER).rfind("tern ", 0), 0u);
    EXPECT_EQ(meta_u32(f, TERN_KEY_N_VOCAB), json_int(cfg, "vocab_size"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_N_CTX), json_int(cfg, "max_position_embeddings"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_D_MODEL), json_int(cfg, "hidden_size"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_N_LAYER), json_int(cfg, "num_hidden_layers"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_N_HEAD), json_int(cfg, "num_attention_heads"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_N_HEAD_KV), json_int(cfg, "num_key_value_heads"));
    EXPECT_EQ(meta_u32(f, TERN_KEY_D_FF), json_int(cfg, "intermediate_size"));
    json_object *hd = nullptr;
    int64_t head_dim = json_object_object_get_ex(cfg, "head_dim", &hd)
                           ? json_object_get_int64(hd)
                           : json_int(cfg, "hidden_size") / json_int(cfg, "num_attention_heads");
    EXPECT_EQ(meta_u32(f, TERN_KEY_HEAD_DIM), head_dim);
    json_object *v = nullptr;
    ASSERT_TRUE(json_object_object_get_ex(cfg, "rms_norm_eps", &v));
    EXPECT_EQ(meta_f32(f, TERN_KEY_NORM_EPS), (float)json_object_get_double(v));
    json_object *rp = nullptr;
    ASSERT_TRUE(json_object_object_get_ex(cfg, "rope_parameters", &rp));
    ASSERT_TRUE(json_object_object_get_ex(rp, "rope_theta", &v));
    EXPECT_EQ(meta_f32(f, TERN_KEY_ROPE_THETA), (float)json_object_get_double(v));
    EXPECT_EQ(meta_u32(f, TERN_KEY_ROPE_LAYOUT), 0u);
    for (auto [key, cfg_key] : {std::pair{TERN_KEY_BOS, "bos_token_id"},
                                std::pair{TERN_KEY_EOS, "eos_token_id"}}) {
        ASSERT_TRUE(json_object_object_get_ex(cfg, cfg_key, &v));
        int32_t want = json_object_get_type(v) == json_type_null ? -1 : json_object_get_int(v);
        EXPECT_EQ(meta_i32(f, key), want) << key;
    }
    json_object_put(cfg);
}

// Every mapped tensor of the source is in the .tern file with the same shape
// and the expected bytes; nothing else is.
void check_tensors(const tern_file &f, const fs::path &src, tern_weight_type w, bool tied) {
    tern_safetensors st;
    tern_error err{};
    ASSERT_EQ(tern_safetensors_open((src / "model.safetensors").c_str(), &st, &err), TERN_OK)
        << err.message;
    uint32_t mapped = 0;
    for (uint32_t i = 0; i < st.n_tensors; i++) {
        const tern_st_tensor &t = st.tensors[i];
        std::string name = tern_name(t.name);
        if (name.empty() || (tied && name == "output.weight")) continue;
        mapped++;
        tern_tensor_view view;
        ASSERT_EQ(tern_file_get_tensor(&f, name.c_str(), &view, &err), TERN_OK) << err.message;
        ASSERT_EQ(view.desc.ndim, t.ndim) << name;
        for (uint32_t d = 0; d < t.ndim; d++) EXPECT_EQ(view.desc.dims[d], t.shape[d]) << name;
        ASSERT_EQ(t.dtype, TERN_ST_F32) << "fixtures are float32";
        std::vector<float> src_vals(t.n_elements);
        memcpy(src_vals.data(), t.data, t.size);
        tern_encoding want_enc = (t.ndim == 1 || w == TERN_WEIGHTS_F32) ? TERN_ENC_F32
                                 : w == TERN_WEIGHTS_F16                ? TERN_ENC_F16
                                                                        : TERN_ENC_BF16;
        ASSERT_EQ(view.desc.encoding, want_enc) << name;
        ASSERT_NE(view.planes[TERN_PLANE_VALUES], nullptr) << name;
        if (want_enc == TERN_ENC_F32) {
            ASSERT_EQ(view.plane_sizes[TERN_PLANE_VALUES], t.n_elements * 4) << name;
            EXPECT_EQ(0, memcmp(view.planes[TERN_PLANE_VALUES], src_vals.data(), t.size)) << name;
        } else {
            ASSERT_EQ(view.plane_sizes[TERN_PLANE_VALUES], t.n_elements * 2) << name;
            const uint8_t *p = static_cast<const uint8_t *>(view.planes[TERN_PLANE_VALUES]);
            size_t bad = 0;
            for (uint64_t j = 0; j < t.n_elements; j++) {
                uint16_t h;
                memcpy(&h, p + 2 * j, 2);
                uint16_t want = want_enc == TERN_ENC_F16 ? tern_f32_to_f16(src_vals[j])
                                                         : tern_f32_to_bf16(src_vals[j]);
                bad += h != want;
            }
            EXPECT_EQ(bad, 0u) << name;
        }
    }
    EXPECT_EQ(f.n_tensors, mapped);
    EXPECT_EQ(tern_file_find_tensor(&f, "output.weight") != nullptr, !tied);
    tern_safetensors_close(&st);
}

struct Progress {
    uint64_t last_done = 0, total = 0;
    int calls = 0;
    bool monotonic = true;
};

void on_progress(void *user, uint64_t done, uint64_t total, const char *what) {
    Progress *p = static_cast<Progress *>(user);
    if (done < p->last_done || done > total || !what || !what[0]) p->monotonic = false;
    p->last_done = done;
    p->total = total;
    p->calls++;
}

class ConvertFixture : public ::testing::TestWithParam<std::tuple<const char *, tern_weight_type>> {};

TEST_P(ConvertFixture, MatchesSource) {
    auto [name, w] = GetParam();
    fs::path src = fixture(name);
    ASSERT_TRUE(fs::exists(src / "config.json")) << src << " (set TERN_SHARED_DIR)";
    TempDir tmp;
    fs::path dst = tmp.path() / "out.tern";
    Progress prog;
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = w;
    o.progress = on_progress;
    o.progress_user = &prog;
    tern_error err{};
    ASSERT_EQ(tern_convert(src.c_str(), dst.c_str(), &o, &err), TERN_OK) << err.message;
    EXPECT_GT(prog.calls, 0);
    EXPECT_TRUE(prog.monotonic);
    EXPECT_EQ(prog.last_done, prog.total);

    tern_file f;
    ASSERT_EQ(tern_file_open(dst.c_str(), 1, &f, &err), TERN_OK) << err.message;
    bool qwen = std::string(name) == "qwen2";
    check_metadata(f, src, qwen ? "qwen2" : "llama");
    check_tensors(f, src, w, qwen);
    if (qwen) {
        EXPECT_NE(tern_file_find_tensor(&f, "blk.1.attn_k.bias"), nullptr);
        EXPECT_EQ(tern_file_find_tensor(&f, "blk.0.attn_output.bias"), nullptr);
    } else {
        EXPECT_EQ(tern_file_find_tensor(&f, "blk.0.attn_q.bias"), nullptr);
    }
    tern_file_close(&f);
    // Only the result is left in the folder: no temporary files.
    size_t entries = 0;
    for (auto &e : fs::directory_iterator(tmp.path())) entries += !e.path().empty();
    EXPECT_EQ(entries, 1u);
}

std::string fixture_case_name(
    const ::testing::TestParamInfo<std::tuple<const char *, tern_weight_type>> &info) {
    static const char *const w[] = {"f32", "f16", "bf16"};
    return std::string(std::get<0>(info.param)) + "_" + w[std::get<1>(info.param)];
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, ConvertFixture,
    ::testing::Combine(::testing::Values("llama", "qwen2"),
                       ::testing::Values(TERN_WEIGHTS_F32, TERN_WEIGHTS_F16, TERN_WEIGHTS_BF16)),
    fixture_case_name);

// A folder holding a copy of a fixture, with config.json edited by `edit`.
void copy_fixture(const char *name, const fs::path &dir,
                  void (*edit)(json_object *cfg) = nullptr) {
    fs::create_directories(dir);
    fs::copy_file(fixture(name) / "model.safetensors", dir / "model.safetensors");
    json_object *cfg = load_json(fixture(name) / "config.json");
    ASSERT_NE(cfg, nullptr);
    if (edit) edit(cfg);
    write_file(dir / "config.json", json_object_to_json_string(cfg));
    json_object_put(cfg);
}

// Converts `src` into a folder holding an older "previous" dst file and
// checks that the conversion fails with `want` and leaves that file alone.
std::string expect_failure(const fs::path &src, tern_status want, tern_weight_type w = TERN_WEIGHTS_F32) {
    TempDir out;
    fs::path dst = out.path() / "model.tern";
    const std::string previous = "previous contents\n";
    write_file(dst, previous);
    tern_error err{};
    EXPECT_EQ(convert(src, dst, w, &err), want) << err.message;
    EXPECT_EQ(err.status, want);
    EXPECT_EQ(read_file(dst), previous);
    size_t entries = 0;
    for (auto &e : fs::directory_iterator(out.path())) entries += !e.path().empty();
    EXPECT_EQ(entries, 1u) << "a temporary file was left behind";
    // And with no previous file, nothing appears.
    fs::remove(dst);
    EXPECT_EQ(convert(src, dst, w, &err), want);
    EXPECT_FALSE(fs::exists(dst));
    return err.message;
}

TEST(Convert, MissingConfig) {
    TempDir src;
    fs::copy_file(fixture("llama") / "model.safetensors", src.path() / "model.safetensors");
    std::string msg = expect_failure(src.path(), TERN_ERR_IO);
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(Convert, MissingSource) {
    TempDir out;
    tern_error err{};
    EXPECT_EQ(convert(out.path() / "nope", out.path() / "x.tern", TERN_WEIGHTS_F32, &err),
              TERN_ERR_IO);
    EXPECT_FALSE(fs::exists(out.path() / "x.tern"));
}

TEST(Convert, UnsupportedArchitecture) {
    TempDir tmp;
    copy_fixture("llama", tmp.path() / "gpt2", [](json_object *cfg) {
        json_object *archs = json_object_new_array();
        json_object_array_add(archs, json_object_new_string("GPT2LMHeadModel"));
        json_object_object_add(cfg, "architectures", archs);
    });
    std::string msg = expect_failure(tmp.path() / "gpt2", TERN_ERR_UNSUPPORTED);
    EXPECT_NE(msg.find("GPT2LMHeadModel"), std::string::npos) << msg;
    EXPECT_NE(msg.find("LlamaForCausalLM"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Qwen2ForCausalLM"), std::string::npos) << msg;
}

TEST(Convert, ShapeMismatch) {
    TempDir tmp;
    copy_fixture("llama", tmp.path() / "llama", [](json_object *cfg) {
        json_object_object_add(cfg, "hidden_size", json_object_new_int(64));
    });
    std::string msg = expect_failure(tmp.path() / "llama", TERN_ERR_FORMAT);
    EXPECT_NE(msg.find("model.embed_tokens.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[512, 96]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[512, 64]"), std::string::npos) << msg;
}

TEST(Convert, LayerShapeMismatch) {
    TempDir tmp;
    copy_fixture("llama", tmp.path() / "llama", [](json_object *cfg) {
        json_object_object_add(cfg, "intermediate_size", json_object_new_int(128));
    });
    std::string msg = expect_failure(tmp.path() / "llama", TERN_ERR_FORMAT);
    EXPECT_NE(msg.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << msg;
}

TEST(Convert, RejectsRopeScaling) {
    TempDir tmp;
    copy_fixture("llama", tmp.path() / "llama", [](json_object *cfg) {
        json_object *rp = json_object_new_object();
        json_object_object_add(rp, "rope_type", json_object_new_string("llama3"));
        json_object_object_add(rp, "rope_theta", json_object_new_double(500000.0));
        json_object_object_add(cfg, "rope_parameters", rp);
    });
    std::string msg = expect_failure(tmp.path() / "llama", TERN_ERR_UNSUPPORTED);
    EXPECT_NE(msg.find("llama3"), std::string::npos) << msg;
}

TEST(Convert, RejectsSlidingWindow) {
    TempDir tmp;
    copy_fixture("qwen2", tmp.path() / "qwen2", [](json_object *cfg) {
        json_object_object_add(cfg, "use_sliding_window", json_object_new_boolean(1));
    });
    expect_failure(tmp.path() / "qwen2", TERN_ERR_UNSUPPORTED);
}

TEST(Convert, RejectsUnknownWeightType) {
    // (q8/q4 targets are supported now: tests/test_quant.cc)
    expect_failure(fixture("llama"), TERN_ERR_INVALID_ARG, (tern_weight_type)99);
}

TEST(Convert, OldStyleConfigKeys) {
    // transformers 4.x: rope_theta at the top, no head_dim, eos as a list.
    TempDir tmp;
    fs::path src = tmp.path() / "old";
    copy_fixture("llama", src, [](json_object *cfg) {
        json_object_object_del(cfg, "rope_parameters");
        json_object_object_add(cfg, "rope_theta", json_object_new_double(50000.0));
        json_object_object_add(cfg, "rope_scaling", nullptr);
        json_object *eos = json_object_new_array();
        json_object_array_add(eos, json_object_new_int(7));
        json_object_array_add(eos, json_object_new_int(2));
        json_object_object_add(cfg, "eos_token_id", eos);
        json_object_object_del(cfg, "head_dim"); // 96 / 6 = 16, as before
    });
    fs::path dst = tmp.path() / "old.tern";
    tern_error err{};
    ASSERT_EQ(convert(src, dst, TERN_WEIGHTS_F32, &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open(dst.c_str(), 0, &f, &err), TERN_OK) << err.message;
    EXPECT_EQ(meta_f32(f, TERN_KEY_ROPE_THETA), 50000.f);
    EXPECT_EQ(meta_i32(f, TERN_KEY_EOS), 7);
    EXPECT_EQ(meta_u32(f, TERN_KEY_HEAD_DIM), 16u);
    EXPECT_EQ(meta_str(f, TERN_KEY_NAME), "old");
    tern_file_close(&f);
}

// Tensors of a fixture, re-encoded with `dtype` ("F32" or "BF16" by truncation).
std::vector<StTensor> fixture_tensors(const char *name, const char *dtype = "F32") {
    std::vector<StTensor> out;
    tern_safetensors st;
    tern_error err{};
    EXPECT_EQ(tern_safetensors_open((fixture(name) / "model.safetensors").c_str(), &st, &err),
              TERN_OK)
        << err.message;
    for (uint32_t i = 0; i < st.n_tensors; i++) {
        const tern_st_tensor &t = st.tensors[i];
        StTensor s{t.name, dtype, std::vector<uint64_t>(t.shape, t.shape + t.ndim),
                   std::string(static_cast<const char *>(t.data), t.size)};
        if (std::string(dtype) == "BF16") {
            std::vector<uint16_t> h(t.n_elements);
            for (uint64_t j = 0; j < t.n_elements; j++) {
                uint32_t bits;
                memcpy(&bits, s.bytes.data() + 4 * j, 4);
                h[j] = static_cast<uint16_t>(bits >> 16);
            }
            s.bytes = raw_bytes(h);
        }
        out.push_back(std::move(s));
    }
    tern_safetensors_close(&st);
    return out;
}

void expect_same_tern(const fs::path &a, const fs::path &b) {
    tern_file fa, fb;
    tern_error err{};
    ASSERT_EQ(tern_file_open(a.c_str(), 1, &fa, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_file_open(b.c_str(), 1, &fb, &err), TERN_OK) << err.message;
    ASSERT_EQ(fa.n_tensors, fb.n_tensors);
    for (uint32_t i = 0; i < fa.n_tensors; i++) {
        tern_tensor_view va, vb;
        tern_file_tensor_view(&fa, i, &va);
        std::string name(va.name, va.name_length);
        ASSERT_EQ(tern_file_get_tensor(&fb, name.c_str(), &vb, &err), TERN_OK) << err.message;
        EXPECT_EQ(va.desc.encoding, vb.desc.encoding) << name;
        EXPECT_EQ(va.desc.ndim, vb.desc.ndim) << name;
        EXPECT_EQ(0, memcmp(va.desc.dims, vb.desc.dims, sizeof va.desc.dims)) << name;
        ASSERT_EQ(va.plane_sizes[0], vb.plane_sizes[0]) << name;
        EXPECT_EQ(0, memcmp(va.planes[0], vb.planes[0], va.plane_sizes[0])) << name;
    }
    tern_file_close(&fa);
    tern_file_close(&fb);
}

TEST(Convert, ShardedEqualsSingleFile) {
    TempDir tmp;
    fs::path src = tmp.path() / "sharded";
    fs::create_directories(src);
    fs::copy_file(fixture("llama") / "config.json", src / "config.json");
    std::vector<StTensor> all = fixture_tensors("llama");
    ASSERT_GT(all.size(), 4u);
    // Alternate tensors between the shards so each holds parts of every layer.
    std::vector<StTensor> shard[2];
    std::ostringstream index;
    index << "{\"metadata\":{\"total_size\":0},\"weight_map\":{";
    for (size_t i = 0; i < all.size(); i++) {
        const char *file = i % 2 ? "model-00002-of-00002.safetensors"
                                 : "model-00001-of-00002.safetensors";
        index << (i ? "," : "") << "\"" << all[i].name << "\":\"" << file << "\"";
        shard[i % 2].push_back(all[i]);
    }
    index << "}}";
    write_file(src / "model-00001-of-00002.safetensors", build_st(shard[0]));
    write_file(src / "model-00002-of-00002.safetensors", build_st(shard[1]));
    write_file(src / "model.safetensors.index.json", index.str());

    for (tern_weight_type w : {TERN_WEIGHTS_F32, TERN_WEIGHTS_F16}) {
        tern_error err{};
        fs::path a = tmp.path() / "single.tern", b = tmp.path() / "sharded.tern";
        ASSERT_EQ(convert(fixture("llama"), a, w, &err), TERN_OK) << err.message;
        ASSERT_EQ(convert(src, b, w, &err), TERN_OK) << err.message;
        expect_same_tern(a, b);
    }

    // An index naming a shard outside the folder is refused.
    write_file(src / "model.safetensors.index.json",
               "{\"weight_map\":{\"model.norm.weight\":\"../model.safetensors\"}}");
    expect_failure(src, TERN_ERR_FORMAT);
    // An index naming a missing shard fails with I/O.
    write_file(src / "model.safetensors.index.json",
               "{\"weight_map\":{\"model.norm.weight\":\"model-9.safetensors\"}}");
    expect_failure(src, TERN_ERR_IO);
}

TEST(Convert, Bf16Source) {
    TempDir tmp;
    fs::path src = tmp.path() / "bf16";
    fs::create_directories(src);
    fs::copy_file(fixture("llama") / "config.json", src / "config.json");
    std::vector<StTensor> all = fixture_tensors("llama", "BF16");
    write_file(src / "model.safetensors", build_st(all));
    fs::path dst = tmp.path() / "out.tern";
    tern_error err{};
    ASSERT_EQ(convert(src, dst, TERN_WEIGHTS_F32, &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open(dst.c_str(), 1, &f, &err), TERN_OK) << err.message;
    for (const StTensor &t : all) {
        std::string name = tern_name(t.name);
        if (name.empty()) continue;
        tern_tensor_view v;
        ASSERT_EQ(tern_file_get_tensor(&f, name.c_str(), &v, &err), TERN_OK) << err.message;
        ASSERT_EQ(v.desc.encoding, TERN_ENC_F32);
        size_t n = t.bytes.size() / 2;
        ASSERT_EQ(v.plane_sizes[0], n * 4);
        const uint8_t *p = static_cast<const uint8_t *>(v.planes[0]);
        size_t bad = 0;
        for (size_t j = 0; j < n; j++) {
            uint16_t h;
            float got;
            memcpy(&h, t.bytes.data() + 2 * j, 2);
            memcpy(&got, p + 4 * j, 4);
            uint32_t bits = static_cast<uint32_t>(h) << 16; // bf16 is the top half of f32
            float want;
            memcpy(&want, &bits, 4);
            bad += got != want;
        }
        EXPECT_EQ(bad, 0u) << name;
    }
    tern_file_close(&f);
}

TEST(Convert, MissingLmHeadWhenUntied) {
    TempDir tmp;
    fs::path src = tmp.path() / "nohead";
    fs::create_directories(src);
    fs::copy_file(fixture("llama") / "config.json", src / "config.json");
    std::vector<StTensor> all = fixture_tensors("llama"), kept;
    for (auto &t : all)
        if (t.name != "lm_head.weight") kept.push_back(t);
    ASSERT_EQ(kept.size() + 1, all.size());
    write_file(src / "model.safetensors", build_st(kept));
    std::string msg = expect_failure(src, TERN_ERR_FORMAT);
    EXPECT_NE(msg.find("lm_head.weight"), std::string::npos) << msg;
}

TEST(Convert, IgnoresExtraTensors) {
    TempDir tmp;
    fs::path src = tmp.path() / "extra";
    fs::create_directories(src);
    fs::copy_file(fixture("llama") / "config.json", src / "config.json");
    std::vector<StTensor> all = fixture_tensors("llama");
    all.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {8},
                   raw_bytes(std::vector<float>(8, 1.f))});
    write_file(src / "model.safetensors", build_st(all));
    fs::path a = tmp.path() / "a.tern", b = tmp.path() / "b.tern";
    tern_error err{};
    ASSERT_EQ(convert(src, a, TERN_WEIGHTS_F32, &err), TERN_OK) << err.message;
    ASSERT_EQ(convert(fixture("llama"), b, TERN_WEIGHTS_F32, &err), TERN_OK) << err.message;
    expect_same_tern(a, b);
}

} // namespace
