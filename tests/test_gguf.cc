// GGUF reader tests: the shared vocabulary files, a small file built here and
// read back, and hostile variants of it (every truncation, absurd counts,
// lengths past the end, unknown types, misaligned offsets) that must fail
// with a clean error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "test_util.h"

namespace {

// Little-endian GGUF writer for the tests.
struct Builder {
    std::vector<uint8_t> b;
    void raw(const void *p, size_t n) {
        const uint8_t *s = static_cast<const uint8_t *>(p);
        b.insert(b.end(), s, s + n);
    }
    void u32(uint32_t v) { raw(&v, 4); }
    void u64(uint64_t v) { raw(&v, 8); }
    void str(const std::string &s) {
        u64(s.size());
        raw(s.data(), s.size());
    }
    void pad(size_t align) {
        while (b.size() % align) b.push_back(0);
    }
};

struct Offsets {
    size_t kv_count, tensor_count, string_len, type_of_str, tensor1_type, tensor1_offset, arr_type;
};

// Header, 9 metadata keys, 2 tensors (f32 [4,2], q8_0 [32]), data.
std::vector<uint8_t> build(Offsets *o = nullptr) {
    Builder w;
    Offsets off{};
    w.raw("GGUF", 4);
    w.u32(3);
    off.tensor_count = w.b.size();
    w.u64(2);
    off.kv_count = w.b.size();
    w.u64(9);
    w.str("general.architecture");
    off.type_of_str = w.b.size();
    w.u32(8);
    off.string_len = w.b.size();
    w.str("llama");
    w.str("general.alignment");
    w.u32(4);
    w.u32(64);
    w.str("test.u8");
    w.u32(0);
    w.b.push_back(200);
    w.str("test.i16");
    w.u32(3);
    int16_t i16 = -300;
    w.raw(&i16, 2);
    w.str("test.f64");
    w.u32(12);
    double f64 = 0.25;
    w.raw(&f64, 8);
    w.str("test.bool");
    w.u32(7);
    w.b.push_back(1);
    w.str("test.i64");
    w.u32(11);
    int64_t i64 = -5;
    w.raw(&i64, 8);
    w.str("test.ints");
    w.u32(9);
    off.arr_type = w.b.size();
    w.u32(5);
    w.u64(3);
    for (int32_t v : {7, -8, 9}) w.raw(&v, 4);
    w.str("test.strs");
    w.u32(9);
    w.u32(8);
    w.u64(3);
    w.str("a");
    w.str("");
    w.str("ccc");
    // tensors
    w.str("t.f32");
    w.u32(2);
    w.u64(4);
    w.u64(2);
    w.u32(0);
    w.u64(0);
    w.str("t.q8");
    w.u32(1);
    w.u64(32);
    off.tensor1_type = w.b.size();
    w.u32(8);
    off.tensor1_offset = w.b.size();
    w.u64(64);
    w.pad(64);
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        w.raw(&f, 4);
    }
    w.pad(64);
    for (int i = 0; i < 34; i++) w.b.push_back((uint8_t)i);
    if (o) *o = off;
    return w.b;
}

template <typename T>
void put(std::vector<uint8_t> &b, size_t at, T v) {
    std::memcpy(b.data() + at, &v, sizeof v);
}

// Opens a copy in an exactly sized heap buffer so a sanitizer sees any
// read past the end.
tern_status open_copy(const std::vector<uint8_t> &bytes, size_t n, tern_error *err) {
    std::vector<uint8_t> *copy = new std::vector<uint8_t>(bytes.begin(), bytes.begin() + n);
    tern_gguf g;
    tern_status s = tern_gguf_open_memory(copy->data(), copy->size(), &g, err);
    if (s == TERN_OK) tern_gguf_close(&g);
    delete copy;
    return s;
}

TEST(Gguf, ReadsBuiltFile) {
    std::vector<uint8_t> bytes = build();
    tern_gguf g;
    tern_error err{};
    ASSERT_EQ(tern_gguf_open_memory(bytes.data(), bytes.size(), &g, &err), TERN_OK) << err.message;
    EXPECT_EQ(g.version, 3u);
    EXPECT_EQ(g.n_kv, 9u);
    EXPECT_EQ(g.alignment, 64u);
    EXPECT_EQ(g.data_offset % 64, 0u);
    tern_gguf_str s;
    ASSERT_EQ(tern_gguf_get_str(&g, "general.architecture", &s, &err), TERN_OK);
    EXPECT_EQ(std::string(s.ptr, s.len), "llama");
    uint32_t u;
    ASSERT_EQ(tern_gguf_get_u32(&g, "test.u8", &u, &err), TERN_OK);
    EXPECT_EQ(u, 200u);
    ASSERT_EQ(tern_gguf_get_u32(&g, "general.alignment", &u, &err), TERN_OK);
    EXPECT_EQ(u, 64u);
    // A negative value does not fit a u32, but does an i32.
    EXPECT_EQ(tern_gguf_get_u32(&g, "test.i16", &u, &err), TERN_ERR_FORMAT);
    int32_t i;
    ASSERT_EQ(tern_gguf_get_i32(&g, "test.i16", &i, &err), TERN_OK);
    EXPECT_EQ(i, -300);
    ASSERT_EQ(tern_gguf_get_i32(&g, "test.i64", &i, &err), TERN_OK);
    EXPECT_EQ(i, -5);
    float f;
    ASSERT_EQ(tern_gguf_get_f32(&g, "test.f64", &f, &err), TERN_OK);
    EXPECT_EQ(f, 0.25f);
    EXPECT_EQ(tern_gguf_get_f32(&g, "test.u8", &f, &err), TERN_ERR_FORMAT);
    int bv = 0;
    ASSERT_EQ(tern_gguf_get_bool(&g, "test.bool", &bv, &err), TERN_OK);
    EXPECT_EQ(bv, 1);
    EXPECT_EQ(tern_gguf_get_u32(&g, "no.such.key", &u, &err), TERN_ERR_INVALID_ARG);
    EXPECT_NE(std::string(err.message).find("no.such.key"), std::string::npos);
    const tern_gguf_value *a;
    ASSERT_EQ(tern_gguf_get_array(&g, "test.ints", &a, &err), TERN_OK);
    ASSERT_EQ(a->elem_type, TERN_GGUF_I32);
    ASSERT_EQ(a->count, 3u);
    EXPECT_EQ(tern_gguf_array_int(a, 0), 7);
    EXPECT_EQ(tern_gguf_array_int(a, 1), -8);
    EXPECT_EQ(tern_gguf_array_int(a, 2), 9);
    ASSERT_EQ(tern_gguf_get_array(&g, "test.strs", &a, &err), TERN_OK);
    ASSERT_EQ(a->count, 3u);
    tern_gguf_str e0 = tern_gguf_array_str(a, 0), e1 = tern_gguf_array_str(a, 1), e2 = tern_gguf_array_str(a, 2);
    EXPECT_EQ(std::string(e0.ptr, e0.len), "a");
    EXPECT_EQ(e1.len, 0u);
    EXPECT_EQ(std::string(e2.ptr, e2.len), "ccc");
    const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, "t.f32");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, (uint32_t)TERN_GGML_F32);
    EXPECT_EQ(t->n_dims, 2u);
    EXPECT_EQ(t->dims[0], 4u);
    EXPECT_EQ(t->dims[1], 2u);
    EXPECT_EQ(t->size, 32u);
    float v5;
    std::memcpy(&v5, (const uint8_t *)t->data + 20, 4);
    EXPECT_EQ(v5, 5.0f);
    t = tern_gguf_find_tensor(&g, "t.q8");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->size, 34u);
    EXPECT_EQ((const uint8_t *)t->data - bytes.data(), (ptrdiff_t)(g.data_offset + 64));
    EXPECT_EQ(((const uint8_t *)t->data)[33], 33);
    EXPECT_EQ(tern_gguf_find_tensor(&g, "t.none"), nullptr);
    tern_gguf_close(&g);
}

TEST(Gguf, EveryTruncationFailsCleanly) {
    std::vector<uint8_t> bytes = build();
    for (size_t n = 0; n < bytes.size(); n++) {
        tern_error err{};
        tern_status s = open_copy(bytes, n, &err);
        EXPECT_NE(s, TERN_OK) << "truncated at " << n;
        EXPECT_NE(err.message[0], '\0') << "no message at " << n;
    }
    tern_error err{};
    EXPECT_EQ(open_copy(bytes, bytes.size(), &err), TERN_OK) << err.message;
}

TEST(Gguf, HostileHeadersAndValues) {
    Offsets o;
    const std::vector<uint8_t> good = build(&o);
    struct Mut {
        const char *what;
        void (*apply)(std::vector<uint8_t> &, const Offsets &);
        tern_status want;
        const char *msg;
    };
    const Mut muts[] = {
        {"bad magic", [](std::vector<uint8_t> &b, const Offsets &) { b[0] = 'X'; }, TERN_ERR_FORMAT, "magic"},
        {"version 1", [](std::vector<uint8_t> &b, const Offsets &) { put<uint32_t>(b, 4, 1); },
         TERN_ERR_UNSUPPORTED, "version 1"},
        {"absurd kv count",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.kv_count, UINT64_MAX / 2); },
         TERN_ERR_FORMAT, "metadata count"},
        {"absurd tensor count",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.tensor_count, 1ull << 40); },
         TERN_ERR_FORMAT, "tensor count"},
        {"string past end",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.string_len, 4294967295ull); },
         TERN_ERR_FORMAT, "string length 4294967295 runs past the end"},
        {"unknown value type", [](std::vector<uint8_t> &b, const Offsets &o) { put<uint32_t>(b, o.type_of_str, 13); },
         TERN_ERR_FORMAT, "unknown value type 13"},
        {"unknown array type", [](std::vector<uint8_t> &b, const Offsets &o) { put<uint32_t>(b, o.arr_type, 99); },
         TERN_ERR_FORMAT, "element type 99"},
        {"nested array", [](std::vector<uint8_t> &b, const Offsets &o) { put<uint32_t>(b, o.arr_type, 9); },
         TERN_ERR_UNSUPPORTED, "nested"},
        {"unknown tensor type",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint32_t>(b, o.tensor1_type, 4); },
         TERN_ERR_UNSUPPORTED, "unknown ggml type 4"},
        {"misaligned tensor",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.tensor1_offset, 65); },
         TERN_ERR_FORMAT, "alignment"},
        {"tensor past end",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.tensor1_offset, 128); },
         TERN_ERR_FORMAT, "runs past the end"},
        {"tensor offset overflow",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.tensor1_offset, UINT64_MAX - 63); },
         TERN_ERR_FORMAT, "runs past the end"},
        {"q8_0 row not whole blocks",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint64_t>(b, o.tensor1_type - 8, 31); },
         TERN_ERR_FORMAT, "block"},
        {"too many dims",
         [](std::vector<uint8_t> &b, const Offsets &o) { put<uint32_t>(b, o.tensor1_type - 12, 5); },
         TERN_ERR_FORMAT, "dimensions"},
        {"duplicate key",
         [](std::vector<uint8_t> &b, const Offsets &) {
             // "test.u8" -> "test.i8"? keep the length: rename test.ints to test.strs.
             const char *from = "test.ints";
             auto it = std::search(b.begin(), b.end(), from, from + 9);
             std::memcpy(&*it, "test.strs", 9);
         },
         TERN_ERR_FORMAT, "duplicate metadata key 'test.strs'"},
    };
    for (const Mut &m : muts) {
        std::vector<uint8_t> b = good;
        m.apply(b, o);
        tern_error err{};
        tern_status s = open_copy(b, b.size(), &err);
        EXPECT_EQ(s, m.want) << m.what << ": " << err.message;
        EXPECT_NE(std::string(err.message).find(m.msg), std::string::npos) << m.what << ": " << err.message;
    }
}

TEST(Gguf, RandomCorruptionNeverCrashes) {
    const std::vector<uint8_t> good = build();
    uint64_t state = 12345;
    auto rnd = [&]() {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (uint32_t)(state >> 33);
    };
    int failed = 0;
    for (int it = 0; it < 3000; it++) {
        std::vector<uint8_t> b = good;
        int flips = 1 + rnd() % 4;
        for (int k = 0; k < flips; k++) b[rnd() % b.size()] = (uint8_t)rnd();
        tern_error err{};
        if (open_copy(b, b.size(), &err) != TERN_OK) failed++;
    }
    EXPECT_GT(failed, 0);
}

struct VocabFile {
    const char *name;
    const char *model;
    uint64_t n_tokens;
    uint64_t n_merges;  // 0: no merges key
};

TEST(Gguf, SharedVocabFiles) {
    const VocabFile files[] = {
        {"llama-spm", "llama", 32000, 0},
        {"gpt-2", "gpt2", 50257, 50000},
        {"phi-3", "llama", 32064, 0},
        {"falcon", "gpt2", 65024, 64784},
    };
    for (const VocabFile &f : files) {
        std::string path = test_shared_path(std::string("models/tokenizers/ggml-vocab-") + f.name + ".gguf");
        if (test_read_file(path).empty()) {
            ADD_FAILURE() << "missing " << path;
            continue;
        }
        tern_gguf g;
        tern_error err{};
        ASSERT_EQ(tern_gguf_open(path.c_str(), &g, &err), TERN_OK) << err.message;
        EXPECT_EQ(g.n_tensors, 0u) << f.name;
        tern_gguf_str s;
        ASSERT_EQ(tern_gguf_get_str(&g, "tokenizer.ggml.model", &s, &err), TERN_OK) << err.message;
        EXPECT_EQ(std::string(s.ptr, s.len), f.model) << f.name;
        EXPECT_NE(tern_gguf_find(&g, "general.architecture"), nullptr) << f.name;
        const tern_gguf_value *a;
        ASSERT_EQ(tern_gguf_get_array(&g, "tokenizer.ggml.tokens", &a, &err), TERN_OK) << err.message;
        EXPECT_EQ(a->elem_type, TERN_GGUF_STRING);
        EXPECT_EQ(a->count, f.n_tokens) << f.name;
        if (f.n_merges) {
            ASSERT_EQ(tern_gguf_get_array(&g, "tokenizer.ggml.merges", &a, &err), TERN_OK) << err.message;
            EXPECT_EQ(a->count, f.n_merges) << f.name;
        } else {
            ASSERT_EQ(tern_gguf_get_array(&g, "tokenizer.ggml.scores", &a, &err), TERN_OK) << err.message;
            EXPECT_EQ(a->elem_type, TERN_GGUF_F32);
            EXPECT_EQ(a->count, f.n_tokens);
        }
        tern_gguf_close(&g);
    }
}

TEST(Gguf, MissingFileIsAnIoError) {
    tern_gguf g;
    tern_error err{};
    EXPECT_EQ(tern_gguf_open("/nonexistent/x.gguf", &g, &err), TERN_ERR_IO);
    EXPECT_NE(std::string(err.message).find("/nonexistent/x.gguf"), std::string::npos);
}

}  // namespace
