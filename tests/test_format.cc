// Tests of the .tern container: encodings (plane sizes, F16/BF16), the writer
// and the validating reader, hostile files. Needs no external files: valid
// files are built through the writer in a temporary folder.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "formats/encoding.h"
#include "formats/keys.h"
#include "formats/tern_file.h"

namespace {

// ---------------------------------------------------------------------------
// Helpers

// A 64-byte-aligned copy of some bytes, as tern_file_open_memory requires.
struct AlignedBuf {
    uint8_t *p = nullptr;
    size_t size = 0;
    explicit AlignedBuf(const std::vector<uint8_t> &bytes, size_t n = SIZE_MAX) {
        size = n == SIZE_MAX ? bytes.size() : n;
        p = static_cast<uint8_t *>(std::aligned_alloc(64, (size + 64) / 64 * 64));
        if (size) std::memcpy(p, bytes.data(), size);
    }
    ~AlignedBuf() { std::free(p); }
    AlignedBuf(const AlignedBuf &) = delete;
    AlignedBuf &operator=(const AlignedBuf &) = delete;
};

struct TempDir {
    std::string path;
    TempDir() {
        const char *base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tern_fmt_XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (mkdtemp(buf.data())) path = buf.data();
    }
    ~TempDir() {
        for (const std::string &name : List()) unlink((path + "/" + name).c_str());
        rmdir(path.c_str());
    }
    std::vector<std::string> List() const {
        std::vector<std::string> names;
        DIR *d = opendir(path.c_str());
        if (!d) return names;
        while (struct dirent *e = readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != "..") names.push_back(n);
        }
        closedir(d);
        return names;
    }
};

std::vector<uint8_t> ReadAll(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> PseudoRandomBytes(size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = static_cast<uint8_t>(s >> 24);
    }
    return v;
}

tern_tensor_desc Desc(tern_encoding enc, std::vector<uint64_t> dims, uint32_t group = 0,
                      uint16_t flags = 0, uint8_t sn = 0, uint8_t sm = 0,
                      tern_layout layout = TERN_LAYOUT_ROW_MAJOR, uint32_t tile = 0) {
    tern_tensor_desc d;
    std::memset(&d, 0, sizeof d);
    d.encoding = enc;
    d.layout = layout;
    d.ndim = static_cast<uint32_t>(dims.size());
    for (size_t i = 0; i < dims.size() && i < 4; i++) d.dims[i] = dims[i];
    d.group_size = group;
    d.tile_rows = tile;
    d.sparse_n = sn;
    d.sparse_m = sm;
    d.flags = flags;
    return d;
}

// Plane sizes computed by hand (see the comment of each), not by the code under test.
struct TensorSpec {
    std::string name;
    tern_tensor_desc desc;
    uint64_t sizes[TERN_PLANE_COUNT];
};

const std::vector<TensorSpec> &SampleTensors() {
    static const std::vector<TensorSpec> specs = {
        // 6*8 halves
        {"token_embd.weight", Desc(TERN_ENC_F16, {6, 8}), {96, 0, 0, 0}},
        // 8 floats
        {"output_norm.weight", Desc(TERN_ENC_F32, {8}), {32, 0, 0, 0}},
        // 256 int8; 4 rows * 2 groups * 2 B scales
        {"blk.0.attn_q.weight", Desc(TERN_ENC_Q8, {4, 64}, 32), {256, 16, 0, 0}},
        // 128 uint8; 2*2 groups: 8 B scales, 4 B zeros
        {"blk.0.attn_k.weight", Desc(TERN_ENC_Q8, {2, 64}, 32, TERN_TENSOR_HAS_ZERO_POINT), {128, 8, 4, 0}},
        // 256 nibbles; 4*2 groups
        {"blk.0.attn_v.weight", Desc(TERN_ENC_Q4, {4, 64}, 32), {128, 16, 0, 0}},
        // 128 nibbles; 2*4 groups: 16 B scales, 8 B zeros
        {"blk.0.ffn_up.weight", Desc(TERN_ENC_Q4, {2, 64}, 16, TERN_TENSOR_HAS_ZERO_POINT), {64, 16, 8, 0}},
        // 2:4 keeps 32 of 64 per row: 3*32 nibbles = 48 B; 3*2 groups; 32 * 2 bits = 8 B per row
        {"blk.0.ffn_gate.weight", Desc(TERN_ENC_Q4, {3, 64}, 16, TERN_TENSOR_HAS_ZERO_POINT, 2, 4),
         {48, 12, 6, 24}},
        // 3:8 keeps 6 of 16 per row: 2*6 floats; 6 * 3 bits = 18 bits -> 3 B per row
        {"blk.0.ffn_down.weight", Desc(TERN_ENC_F32, {2, 16}, 0, 0, 3, 8), {48, 0, 0, 6}},
        // interleaved by 4 rows: same sizes as row-major
        {"blk.0.attn_output.weight",
         Desc(TERN_ENC_Q8, {4, 32}, 32, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 4), {128, 8, 0, 0}},
        // 30 bf16
        {"bf16.3d", Desc(TERN_ENC_BF16, {2, 3, 5}), {60, 0, 0, 0}},
        // 5 int32
        {"ids", Desc(TERN_ENC_I32, {5}), {20, 0, 0, 0}},
        // 6 floats in 4 dims
        {"x4d", Desc(TERN_ENC_F32, {1, 2, 1, 3}), {24, 0, 0, 0}},
    };
    return specs;
}

std::vector<uint8_t> PlaneBytes(size_t tensor, int plane, uint64_t size) {
    return PseudoRandomBytes(static_cast<size_t>(size), static_cast<uint32_t>(tensor * 8 + plane + 1));
}

const uint32_t kArrU32[] = {1, 2, 0xffffffffu};
const int32_t kArrI32[] = {-5, 7};
const float kArrF32[] = {0.5f, -1.25f, std::numeric_limits<float>::infinity()};
const char *const kTokens[] = {"<s>", "", "hello", "\xe2\x96\x81world"};
const uint32_t kTokenLengths[] = {3, 0, 5, 8};
const double kPi = 3.14159265358979311600;

// Writes the sample file: every metadata type, every tensor of SampleTensors().
void WriteSample(const std::string &path) {
    tern_writer *w = nullptr;
    tern_error err{};
    ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK) << err.message;
    ASSERT_EQ(tern_writer_set_u32(w, TERN_KEY_N_LAYER, 1, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_i32(w, TERN_KEY_BOS, -1, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_u64(w, "big", 0xF123456789ABCDEFull, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_f32(w, TERN_KEY_NORM_EPS, 1e-5f, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_f64(w, "f64.pi", kPi, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_str(w, TERN_KEY_ARCH, "llama", 5, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_str(w, TERN_KEY_NAME, nullptr, 0, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_arr_u32(w, "arr.u32", kArrU32, 3, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_arr_i32(w, "arr.i32", kArrI32, 2, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_arr_f32(w, "arr.f32", kArrF32, 3, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_arr_u32(w, "arr.empty", nullptr, 0, &err), TERN_OK);
    ASSERT_EQ(tern_writer_set_arr_str(w, "tokenizer.tokens", kTokens, kTokenLengths, 4, &err), TERN_OK);
    const auto &specs = SampleTensors();
    for (size_t t = 0; t < specs.size(); t++) {
        std::vector<uint8_t> bytes[TERN_PLANE_COUNT];
        const void *planes[TERN_PLANE_COUNT] = {};
        for (int p = 0; p < TERN_PLANE_COUNT; p++) {
            if (!specs[t].sizes[p]) continue;
            bytes[p] = PlaneBytes(t, p, specs[t].sizes[p]);
            planes[p] = bytes[p].data();
        }
        ASSERT_EQ(tern_writer_add_tensor(w, specs[t].name.c_str(), &specs[t].desc, planes, &err), TERN_OK)
            << specs[t].name << ": " << err.message;
    }
    ASSERT_EQ(tern_writer_finish(w, &err), TERN_OK) << err.message;
}

// The sample file's bytes, built once through the writer.
const std::vector<uint8_t> &SampleBytes() {
    static const std::vector<uint8_t> bytes = [] {
        TempDir dir;
        std::string path = dir.path + "/sample.tern";
        WriteSample(path);
        return ReadAll(path);
    }();
    return bytes;
}

tern_status OpenBytes(const std::vector<uint8_t> &bytes, int verify_data, tern_error *err,
                      size_t n = SIZE_MAX) {
    AlignedBuf buf(bytes, n);
    tern_file f;
    tern_status st = tern_file_open_memory(buf.p, buf.size, verify_data, &f, err);
    if (st == TERN_OK) tern_file_close(&f);
    return st;
}

// Checks everything the sample file holds.
void CheckSample(const tern_file &f) {
    tern_error err{};
    const auto &specs = SampleTensors();
    ASSERT_EQ(f.n_tensors, specs.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.base) % 64, 0u);
    for (size_t t = 0; t < specs.size(); t++) {
        const TensorSpec &s = specs[t];
        tern_tensor_view v;
        ASSERT_EQ(tern_file_get_tensor(&f, s.name.c_str(), &v, &err), TERN_OK) << s.name;
        EXPECT_EQ(std::string(v.name, v.name_length), s.name);
        EXPECT_EQ(v.desc.encoding, s.desc.encoding);
        EXPECT_EQ(v.desc.layout, s.desc.layout);
        EXPECT_EQ(v.desc.ndim, s.desc.ndim);
        for (int d = 0; d < 4; d++) EXPECT_EQ(v.desc.dims[d], s.desc.dims[d]);
        EXPECT_EQ(v.desc.group_size, s.desc.group_size);
        EXPECT_EQ(v.desc.tile_rows, s.desc.tile_rows);
        EXPECT_EQ(v.desc.sparse_n, s.desc.sparse_n);
        EXPECT_EQ(v.desc.sparse_m, s.desc.sparse_m);
        EXPECT_EQ(v.desc.flags, s.desc.flags);
        for (int p = 0; p < TERN_PLANE_COUNT; p++) {
            EXPECT_EQ(v.plane_sizes[p], s.sizes[p]) << s.name << " plane " << p;
            if (!s.sizes[p]) {
                EXPECT_EQ(v.planes[p], nullptr);
                continue;
            }
            ASSERT_NE(v.planes[p], nullptr);
            EXPECT_EQ(reinterpret_cast<uintptr_t>(v.planes[p]) % 64, 0u) << s.name << " plane " << p;
            std::vector<uint8_t> want = PlaneBytes(t, p, s.sizes[p]);
            EXPECT_EQ(std::memcmp(v.planes[p], want.data(), want.size()), 0) << s.name << " plane " << p;
        }
        const tern_tensor_record *r = tern_file_find_tensor(&f, s.name.c_str());
        ASSERT_NE(r, nullptr);
        EXPECT_EQ(std::string(reinterpret_cast<const char *>(f.strings) + r->name_offset, r->name_length), s.name);
    }
    // Records are sorted by name (bytes, then length).
    for (uint32_t i = 1; i < f.n_tensors; i++) {
        tern_tensor_view a, b;
        tern_file_tensor_view(&f, i - 1, &a);
        tern_file_tensor_view(&f, i, &b);
        EXPECT_LT(std::string(a.name, a.name_length), std::string(b.name, b.name_length));
    }
    // Absent names: before the first, after the last, between, prefixes, extensions.
    for (const char *absent : {"", "a", "zzzz", "blk.0", "blk.0.attn_q.weigh", "blk.0.attn_q.weightx",
                               "blk.0.attn_r.weight", "idt", "x4", "x4e", "\x7f", "output"}) {
        EXPECT_EQ(tern_file_find_tensor(&f, absent), nullptr) << absent;
    }
    tern_tensor_view v;
    EXPECT_EQ(tern_file_get_tensor(&f, "missing.weight", &v, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "missing.weight"), nullptr);

    // Metadata
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    float f32 = 0;
    double f64 = 0;
    const char *str = nullptr;
    size_t len = 99;
    EXPECT_EQ(tern_file_meta_u32(&f, TERN_KEY_N_LAYER, &u32, &err), TERN_OK);
    EXPECT_EQ(u32, 1u);
    EXPECT_EQ(tern_file_meta_i32(&f, TERN_KEY_BOS, &i32, &err), TERN_OK);
    EXPECT_EQ(i32, -1);
    EXPECT_EQ(tern_file_meta_u64(&f, "big", &u64, &err), TERN_OK);
    EXPECT_EQ(u64, 0xF123456789ABCDEFull);
    EXPECT_EQ(tern_file_meta_f32(&f, TERN_KEY_NORM_EPS, &f32, &err), TERN_OK);
    EXPECT_EQ(f32, 1e-5f);
    EXPECT_EQ(tern_file_meta_f64(&f, "f64.pi", &f64, &err), TERN_OK);
    EXPECT_EQ(f64, kPi);
    EXPECT_EQ(tern_file_meta_str(&f, TERN_KEY_ARCH, &str, &len, &err), TERN_OK);
    EXPECT_EQ(std::string(str, len), "llama");
    EXPECT_EQ(tern_file_meta_str(&f, TERN_KEY_NAME, &str, &len, &err), TERN_OK);
    EXPECT_EQ(len, 0u);
    const uint32_t *au = nullptr;
    const int32_t *ai = nullptr;
    const float *af = nullptr;
    uint32_t count = 0;
    ASSERT_EQ(tern_file_meta_arr_u32(&f, "arr.u32", &au, &count, &err), TERN_OK);
    ASSERT_EQ(count, 3u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(au) % 4, 0u);
    for (uint32_t i = 0; i < 3; i++) EXPECT_EQ(au[i], kArrU32[i]);
    ASSERT_EQ(tern_file_meta_arr_i32(&f, "arr.i32", &ai, &count, &err), TERN_OK);
    ASSERT_EQ(count, 2u);
    for (uint32_t i = 0; i < 2; i++) EXPECT_EQ(ai[i], kArrI32[i]);
    ASSERT_EQ(tern_file_meta_arr_f32(&f, "arr.f32", &af, &count, &err), TERN_OK);
    ASSERT_EQ(count, 3u);
    for (uint32_t i = 0; i < 3; i++) EXPECT_EQ(af[i], kArrF32[i]);
    ASSERT_EQ(tern_file_meta_arr_u32(&f, "arr.empty", &au, &count, &err), TERN_OK);
    EXPECT_EQ(count, 0u);
    ASSERT_EQ(tern_file_meta_arr_str_count(&f, "tokenizer.tokens", &count, &err), TERN_OK);
    ASSERT_EQ(count, 4u);
    for (uint32_t i = 0; i < 4; i++) {
        ASSERT_EQ(tern_file_meta_arr_str(&f, "tokenizer.tokens", i, &str, &len, &err), TERN_OK);
        EXPECT_EQ(std::string(str, len), std::string(kTokens[i], kTokenLengths[i]));
    }
    EXPECT_EQ(tern_file_meta_arr_str(&f, "tokenizer.tokens", 4, &str, &len, &err), TERN_ERR_OUT_OF_RANGE);
    // Wrong type and absent keys are FORMAT errors naming the key.
    EXPECT_EQ(tern_file_meta_u32(&f, TERN_KEY_ARCH, &u32, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, TERN_KEY_ARCH), nullptr);
    EXPECT_EQ(tern_file_meta_f32(&f, "f64.pi", &f32, &err), TERN_ERR_FORMAT);
    EXPECT_EQ(tern_file_meta_u64(&f, TERN_KEY_N_LAYER, &u64, &err), TERN_ERR_FORMAT);
    EXPECT_EQ(tern_file_meta_u32(&f, "model.absent", &u32, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "model.absent"), nullptr);
    EXPECT_TRUE(tern_file_has_meta(&f, "big"));
    EXPECT_FALSE(tern_file_has_meta(&f, "bi"));
    EXPECT_FALSE(tern_file_has_meta(&f, "bigg"));
    EXPECT_FALSE(tern_file_has_meta(&f, ""));
    // Enumeration: 12 keys, strictly sorted, with their types.
    ASSERT_EQ(f.n_meta, 12u);
    std::string prev;
    for (uint32_t i = 0; i < f.n_meta; i++) {
        const char *key;
        size_t klen;
        tern_meta_type type;
        uint32_t n;
        tern_file_meta_at(&f, i, &key, &klen, &type, &n);
        std::string k(key, klen);
        if (i) {
            EXPECT_LT(prev, k);
        }
        prev = k;
        if (k == "f64.pi") {
            EXPECT_EQ(type, TERN_META_F64);
        }
        if (k == "tokenizer.tokens") {
            EXPECT_EQ(type, TERN_META_ARR_STRING);
            EXPECT_EQ(n, 4u);
        }
    }
}

// A file to corrupt: section, record and entry accessors, and re-hashing so a
// corruption gets past the checksums and reaches the structural checks.
struct Mutable {
    std::vector<uint8_t> b;
    Mutable() : b(SampleBytes()) {}
    tern_file_header *hdr() { return reinterpret_cast<tern_file_header *>(b.data()); }
    tern_section_entry *table() {
        return reinterpret_cast<tern_section_entry *>(b.data() + hdr()->section_table_offset);
    }
    tern_section_entry *section(uint32_t kind) {
        for (uint32_t i = 0; i < hdr()->section_count; i++)
            if (table()[i].kind == kind) return &table()[i];
        ADD_FAILURE() << "no section " << kind;
        return nullptr;
    }
    uint8_t *at(uint64_t off) { return b.data() + off; }
    uint32_t *count(uint32_t kind) { return reinterpret_cast<uint32_t *>(at(section(kind)->offset)); }
    tern_tensor_record *tensor(uint32_t i) {
        return reinterpret_cast<tern_tensor_record *>(at(section(TERN_SECTION_TENSORS)->offset + 8) +
                                                      i * sizeof(tern_tensor_record));
    }
    tern_meta_entry *meta(uint32_t i) {
        return reinterpret_cast<tern_meta_entry *>(at(section(TERN_SECTION_METADATA)->offset + 8) +
                                                   i * sizeof(tern_meta_entry));
    }
    std::string str(uint64_t off, uint64_t len) {
        return std::string(reinterpret_cast<const char *>(at(section(TERN_SECTION_STRINGS)->offset + off)), len);
    }
    tern_tensor_record *tensor(const std::string &name) {
        for (uint32_t i = 0; i < *count(TERN_SECTION_TENSORS); i++)
            if (str(tensor(i)->name_offset, tensor(i)->name_length) == name) return tensor(i);
        ADD_FAILURE() << "no tensor " << name;
        return nullptr;
    }
    tern_meta_entry *meta(const std::string &key) {
        for (uint32_t i = 0; i < *count(TERN_SECTION_METADATA); i++)
            if (str(meta(i)->key_offset, meta(i)->key_length) == key) return meta(i);
        ADD_FAILURE() << "no key " << key;
        return nullptr;
    }
    // Recomputes every section checksum (those in range), the table's and the header's.
    void Rehash() {
        tern_file_header *h = hdr();
        uint64_t table_size = uint64_t{h->section_count} * 32;
        if (h->section_table_offset >= 128 && h->section_table_offset <= b.size() &&
            table_size <= b.size() - h->section_table_offset) {
            for (uint32_t i = 0; i < h->section_count; i++) {
                tern_section_entry *s = &table()[i];
                if (s->offset <= b.size() && s->size <= b.size() - s->offset)
                    s->xxh64 = XXH64(at(s->offset), s->size, 0);
            }
            h->section_table_xxh64 = XXH64(table(), h->section_count * 32, 0);
        }
        h->header_xxh64 = XXH64(b.data(), 120, 0);
    }
    tern_status Open(int verify_data = 1, std::string *message = nullptr) {
        Rehash();
        tern_error err{};
        tern_status st = OpenBytes(b, verify_data, &err);
        if (message) *message = err.message;
        return st;
    }
};

// Expects a FORMAT error whose message contains `what`.
#define EXPECT_REJECTED(m, what)                                                           \
    do {                                                                                   \
        std::string msg_;                                                                  \
        EXPECT_EQ((m).Open(1, &msg_), TERN_ERR_FORMAT) << msg_;                            \
        EXPECT_NE(msg_.find(what), std::string::npos) << "message: " << msg_;              \
    } while (0)

// ---------------------------------------------------------------------------
// Plane sizes

void ExpectSizesAt(int line, const tern_tensor_desc &d, uint64_t v, uint64_t s, uint64_t z, uint64_t idx) {
    SCOPED_TRACE(line);
    uint64_t sizes[TERN_PLANE_COUNT] = {1, 1, 1, 1};
    ASSERT_EQ(tern_tensor_plane_sizes(&d, sizes), 0);
    EXPECT_EQ(sizes[0], v);
    EXPECT_EQ(sizes[1], s);
    EXPECT_EQ(sizes[2], z);
    EXPECT_EQ(sizes[3], idx);
}

void ExpectInvalidAt(int line, const tern_tensor_desc &d) {
    uint64_t sizes[TERN_PLANE_COUNT];
    EXPECT_EQ(tern_tensor_plane_sizes(&d, sizes), -1) << "line " << line;
}

#define ExpectSizes(...) ExpectSizesAt(__LINE__, __VA_ARGS__)
#define ExpectInvalid(...) ExpectInvalidAt(__LINE__, __VA_ARGS__)

TEST(PlaneSizes, Dense) {
    ExpectSizes(Desc(TERN_ENC_F32, {3, 5}), 60, 0, 0, 0);
    ExpectSizes(Desc(TERN_ENC_F16, {7}), 14, 0, 0, 0);
    ExpectSizes(Desc(TERN_ENC_BF16, {2, 3, 4}), 48, 0, 0, 0);
    ExpectSizes(Desc(TERN_ENC_I32, {2, 2, 2, 2}), 64, 0, 0, 0);
    ExpectSizes(Desc(TERN_ENC_F32, {1}), 4, 0, 0, 0);
}

TEST(PlaneSizes, Quantized) {
    ExpectSizes(Desc(TERN_ENC_Q8, {4, 64}, 32), 256, 16, 0, 0);
    ExpectSizes(Desc(TERN_ENC_Q8, {4, 64}, 32, TERN_TENSOR_HAS_ZERO_POINT), 256, 16, 8, 0);
    ExpectSizes(Desc(TERN_ENC_Q4, {4, 64}, 32), 128, 16, 0, 0);
    ExpectSizes(Desc(TERN_ENC_Q4, {3, 10}, 2, TERN_TENSOR_HAS_ZERO_POINT), 15, 30, 15, 0);
    ExpectSizes(Desc(TERN_ENC_Q8, {5}, 5), 5, 2, 0, 0);           // one group of 5 (Q8 allows odd)
    ExpectSizes(Desc(TERN_ENC_Q8, {2, 3, 8}, 4), 48, 24, 0, 0);  // rows = 6, 2 groups each
    ExpectInvalid(Desc(TERN_ENC_Q8, {4, 64}, 0));                 // no group size
    ExpectInvalid(Desc(TERN_ENC_Q4, {4, 63}, 21));                // odd Q4 group
    ExpectInvalid(Desc(TERN_ENC_Q8, {4, 64}, 48));                // group does not divide
    ExpectInvalid(Desc(TERN_ENC_Q4, {4, 64}, 128));
    ExpectInvalid(Desc(TERN_ENC_F32, {4, 64}, 32));               // group on a dense encoding
    ExpectInvalid(Desc(TERN_ENC_F16, {4}, 0, TERN_TENSOR_HAS_ZERO_POINT));
    ExpectInvalid(Desc(TERN_ENC_Q8, {4, 64}, 32, 0x4));           // unknown flag
    ExpectSizes(Desc(TERN_ENC_Q4, {4, 64}, 32, TERN_TENSOR_HAS_MIN), 128, 16, 16, 0);  // F16 mins
    ExpectInvalid(Desc(TERN_ENC_Q4, {4, 64}, 32, TERN_TENSOR_HAS_MIN | TERN_TENSOR_HAS_ZERO_POINT));
}

TEST(PlaneSizes, Sparse) {
    // 2:4 F32 [3][8]: 4 kept per row = 48 B; 4*2 bits = 1 B per row
    ExpectSizes(Desc(TERN_ENC_F32, {3, 8}, 0, 0, 2, 4), 48, 0, 0, 3);
    // 3:8 Q4 [2][64] G24: 24 kept per row = 12 B; 1 group per row; 24*3 = 72 bits = 9 B per row
    ExpectSizes(Desc(TERN_ENC_Q4, {2, 64}, 24, 0, 3, 8), 24, 4, 0, 18);
    // 1:8 F16 [1][8]: one value, 3 bits -> 1 B
    ExpectSizes(Desc(TERN_ENC_F16, {1, 8}, 0, 0, 1, 8), 2, 0, 0, 1);
    // 7:8 BF16 [16]: 14 kept; 42 bits -> 6 B
    ExpectSizes(Desc(TERN_ENC_BF16, {16}, 0, 0, 7, 8), 28, 0, 0, 6);
    // 1:4 Q8 [2][8] G2 with zeros: 2 kept per row; 1 group per row; 4 bits -> 1 B per row
    ExpectSizes(Desc(TERN_ENC_Q8, {2, 8}, 2, TERN_TENSOR_HAS_ZERO_POINT, 1, 4), 4, 4, 2, 2);
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 8}, 0, 0, 2, 5));   // M not 4 or 8
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 8}, 0, 0, 4, 4));   // N = M
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 8}, 0, 0, 0, 4));   // N = 0
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 8}, 0, 0, 2, 0));   // N without M
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 6}, 0, 0, 2, 4));   // cols not a multiple of M
    ExpectInvalid(Desc(TERN_ENC_I32, {3, 8}, 0, 0, 2, 4));   // I32 is never sparse
    ExpectInvalid(Desc(TERN_ENC_Q8, {2, 64}, 64, 0, 2, 4));  // group counts stored values: 32 per row
    ExpectInvalid(Desc(TERN_ENC_Q4, {2, 16}, 3, 0, 3, 8));   // 6 stored, G 3 divides but Q4 needs it even
}

TEST(PlaneSizes, LayoutAndShape) {
    ExpectSizes(Desc(TERN_ENC_Q4, {8, 32}, 32, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 4), 128, 16, 0, 0);
    ExpectSizes(Desc(TERN_ENC_Q8, {32, 64}, 64, TERN_TENSOR_HAS_ZERO_POINT, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 16),
                2048, 64, 32, 0);
    // 7.4: only dense Q8/Q4, tiles of 4k rows, 32-column blocks and groups
    ExpectInvalid(Desc(TERN_ENC_F32, {8, 4}, 0, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 8));
    ExpectInvalid(Desc(TERN_ENC_Q4, {8, 32}, 32, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 2));
    ExpectInvalid(Desc(TERN_ENC_Q8, {8, 48}, 16, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 8));
    ExpectInvalid(Desc(TERN_ENC_Q8, {8, 64}, 16, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 8));
    ExpectSizes(Desc(TERN_ENC_Q4, {8, 32}, 32, TERN_TENSOR_HAS_MIN, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 8), 128, 16,
                16, 0);
    // sparse tiles: 2:4 and 1:4 only, groups of whole 32-column blocks (sizes as row-major)
    ExpectSizes(Desc(TERN_ENC_Q4, {8, 32}, 16, 0, 2, 4, TERN_LAYOUT_ROW_INTERLEAVED, 8), 64, 16, 0, 32);
    ExpectInvalid(Desc(TERN_ENC_Q4, {8, 32}, 8, 0, 2, 4, TERN_LAYOUT_ROW_INTERLEAVED, 8));
    ExpectInvalid(Desc(TERN_ENC_Q4, {8, 32}, 8, 0, 2, 8, TERN_LAYOUT_ROW_INTERLEAVED, 8));
    ExpectInvalid(Desc(TERN_ENC_Q4, {8, 32}, 32, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 3));  // 8 % 3
    ExpectInvalid(Desc(TERN_ENC_Q4, {8, 32}, 32, 0, 0, 0, TERN_LAYOUT_ROW_INTERLEAVED, 0));
    ExpectInvalid(Desc(TERN_ENC_F32, {8, 4}, 0, 0, 0, 0, TERN_LAYOUT_ROW_MAJOR, 4));  // tile on row-major
    ExpectInvalid(Desc(TERN_ENC_F32, {8, 4}, 0, 0, 0, 0, static_cast<tern_layout>(2), 0));
    ExpectInvalid(Desc(TERN_ENC_F32, {}));
    ExpectInvalid(Desc(TERN_ENC_F32, {1, 1, 1, 1, 1}));
    ExpectInvalid(Desc(TERN_ENC_F32, {3, 0}));
    tern_tensor_desc d = Desc(TERN_ENC_F32, {3});
    d.dims[1] = 2;  // unused dim not zero
    ExpectInvalid(d);
    ExpectInvalid(Desc(static_cast<tern_encoding>(4), {3}));
    ExpectInvalid(Desc(static_cast<tern_encoding>(99), {3}));
    // 64-bit overflow: rows*cols, elements*width, rows in 4 dims.
    ExpectInvalid(Desc(TERN_ENC_F32, {1ull << 33, 1ull << 33}));
    ExpectInvalid(Desc(TERN_ENC_F32, {1ull << 31, 1ull << 31}));  // 2^62 elements * 4 B
    ExpectInvalid(Desc(TERN_ENC_F16, {1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}));
    ExpectInvalid(Desc(TERN_ENC_Q8, {1ull << 62, 128}, 32));
    ExpectSizes(Desc(TERN_ENC_F32, {1ull << 31, 1ull << 29}), 1ull << 62, 0, 0, 0);  // largest that fits
    tern_tensor_desc e = Desc(TERN_ENC_F32, {2, 3, 4});
    EXPECT_EQ(tern_tensor_elements(&e), 24u);
    e = Desc(TERN_ENC_F32, {1ull << 33, 1ull << 33});
    EXPECT_EQ(tern_tensor_elements(&e), 0u);
}

TEST(Encoding, Names) {
    EXPECT_STREQ(tern_encoding_name(TERN_ENC_F32), "f32");
    EXPECT_STREQ(tern_encoding_name(TERN_ENC_Q4), "q4");
    EXPECT_STREQ(tern_encoding_name(static_cast<tern_encoding>(7)), "unknown");
    for (uint32_t e = 0; e < 300; e++) {
        bool known = e == 0 || e == 1 || e == 2 || e == 3 || e == 16 || e == 17;
        EXPECT_EQ(tern_encoding_is_known(e), known ? 1 : 0) << e;
    }
}

// ---------------------------------------------------------------------------
// F16 / BF16

float Bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
uint32_t FBits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

TEST(Half, KnownPatterns) {
    EXPECT_EQ(tern_f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(tern_f32_to_f16(-2.0f), 0xc000);
    EXPECT_EQ(tern_f32_to_f16(0.0f), 0x0000);
    EXPECT_EQ(tern_f32_to_f16(-0.0f), 0x8000);
    EXPECT_EQ(tern_f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(tern_f32_to_f16(65519.996f), 0x7bff);
    EXPECT_EQ(tern_f32_to_f16(65520.0f), 0x7c00);  // tie between 65504 (odd) and inf: even wins
    EXPECT_EQ(tern_f32_to_f16(1e10f), 0x7c00);
    EXPECT_EQ(tern_f32_to_f16(-1e10f), 0xfc00);
    EXPECT_EQ(tern_f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
    EXPECT_EQ(tern_f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
    // Ties: 1 + 2^-11 lies halfway between 0x3c00 and 0x3c01 -> even 0x3c00;
    // 1 + 3*2^-11 between 0x3c01 and 0x3c02 -> 0x3c02.
    EXPECT_EQ(tern_f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
    EXPECT_EQ(tern_f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
    EXPECT_EQ(tern_f32_to_f16(Bits(FBits(1.0f + std::ldexp(1.0f, -11)) + 1)), 0x3c01);
    // Subnormals: 2^-24 is the smallest; 2^-25 is a tie to 0; just above rounds up.
    EXPECT_EQ(tern_f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
    EXPECT_EQ(tern_f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
    EXPECT_EQ(tern_f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
    EXPECT_EQ(tern_f32_to_f16(Bits(FBits(std::ldexp(1.0f, -25)) + 1)), 0x0001);
    EXPECT_EQ(tern_f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp: tie to even 2
    EXPECT_EQ(tern_f32_to_f16(5 * std::ldexp(1.0f, -25)), 0x0002);  // 2.5 ulp: tie to even 2
    EXPECT_EQ(tern_f32_to_f16(1023 * std::ldexp(1.0f, -24)), 0x03ff);
    EXPECT_EQ(tern_f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
    EXPECT_EQ(tern_f32_to_f16(std::ldexp(2047.0f, -25)), 0x0400);  // 1023.5 ulp rounds up into normal
    EXPECT_EQ(tern_f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
    EXPECT_EQ(tern_f32_to_f16(Bits(1)), 0x0000);  // f32 subnormal
    // NaN stays NaN, sign kept, even when the payload is only in the low bits.
    for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
        uint16_t h = tern_f32_to_f16(Bits(nan));
        EXPECT_EQ(h & 0x7c00, 0x7c00) << std::hex << nan;
        EXPECT_NE(h & 0x03ff, 0) << std::hex << nan;
        EXPECT_EQ(h >> 15, nan >> 31);
    }
    EXPECT_EQ(tern_f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(tern_f16_to_f32(0xc000), -2.0f);
    EXPECT_EQ(tern_f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(tern_f16_to_f32(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(tern_f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));
    EXPECT_EQ(tern_f16_to_f32(0x0400), std::ldexp(1.0f, -14));
    EXPECT_EQ(FBits(tern_f16_to_f32(0x8000)), 0x80000000u);
    EXPECT_EQ(tern_f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
    EXPECT_EQ(tern_f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(tern_f16_to_f32(0x7e00)));
    EXPECT_TRUE(std::isnan(tern_f16_to_f32(0x7c01)));
}

// Every half value, against the definition of the format.
TEST(Half, ExhaustiveDecodeAndRoundTrip) {
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        float got = tern_f16_to_f32(static_cast<uint16_t>(h));
        if (e == 31) {
            EXPECT_TRUE(m ? std::isnan(got) : std::isinf(got)) << h;
            if (m) continue;
        } else {
            double want = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), int(e) - 25);
            if (h & 0x8000) want = -want;
            ASSERT_EQ(double(got), want) << h;
            ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;
        }
        ASSERT_EQ(tern_f32_to_f16(got), h) << h;
    }
}

// Nearest-even rounding, checked against the neighbours on random inputs.
TEST(Half, RoundsToNearestEven) {
    uint32_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 1664525u + 1013904223u;
        // Exponents spanning subnormal halves to just past the largest half.
        uint32_t bits = (s & 0x807fffffu) | ((100u + (s >> 8) % 44u) << 23);
        float x = Bits(bits);
        uint16_t h = tern_f32_to_f16(x);
        double ax = std::fabs(double(x));
        uint16_t mag = h & 0x7fff;
        ASSERT_EQ(h >> 15, bits >> 31);
        if (mag == 0x7c00) {
            ASSERT_GE(ax, 65520.0) << x;
            continue;
        }
        double got = std::fabs(double(tern_f16_to_f32(h)));
        double err = std::fabs(got - ax);
        double below = mag ? std::fabs(double(tern_f16_to_f32(uint16_t(mag - 1)))) : -1.0;
        double above = mag < 0x7bff ? double(tern_f16_to_f32(uint16_t(mag + 1))) : 65536.0;
        if (below >= 0) {
            ASSERT_LE(err, ax - below) << x;
        }
        ASSERT_LE(err, above - ax) << x;
        if (below >= 0 && err == ax - below && err != 0) {  // tie
            ASSERT_EQ(mag & 1, 0) << x;
        }
        if (err == above - ax) {
            ASSERT_EQ(mag & 1, 0) << x;
        }
    }
}

TEST(BFloat16, KnownPatterns) {
    EXPECT_EQ(tern_f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(tern_f32_to_bf16(-2.0f), 0xc000);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x3f808000u)), 0x3f80);  // tie, even stays
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x3f808001u)), 0x3f81);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x3f807fffu)), 0x3f80);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x7f7fffffu)), 0x7f80);  // max float rounds to inf
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x7f7f7fffu)), 0x7f7f);
    EXPECT_EQ(tern_f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(tern_f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x00000001u)), 0x0000);  // subnormals round like normals
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x00008000u)), 0x0000);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x00018000u)), 0x0002);
    EXPECT_EQ(tern_f32_to_bf16(Bits(0x80000000u)), 0x8000);
    for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7f80ffffu}) {
        uint16_t h = tern_f32_to_bf16(Bits(nan));
        EXPECT_TRUE(std::isnan(tern_bf16_to_f32(h))) << std::hex << nan;
        EXPECT_EQ(h >> 15, nan >> 31);
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tern_bf16_to_f32(static_cast<uint16_t>(h));
        ASSERT_EQ(FBits(f), h << 16);
        if (!std::isnan(f)) {
            ASSERT_EQ(tern_f32_to_bf16(f), h);
        }
    }
}

// ---------------------------------------------------------------------------
// Round trip

TEST(TernFile, RoundTripMemory) {
    const std::vector<uint8_t> &bytes = SampleBytes();
    ASSERT_GT(bytes.size(), 128u);
    AlignedBuf buf(bytes);
    tern_file f;
    tern_error err{};
    ASSERT_EQ(tern_file_open_memory(buf.p, buf.size, 1, &f, &err), TERN_OK) << err.message;
    CheckSample(f);
    // DATA starts right after the header.
    EXPECT_EQ(f.data_offset, 128u);
    tern_file_close(&f);
}

TEST(TernFile, RoundTripMapped) {
    TempDir dir;
    std::string path = dir.path + "/m.tern";
    WriteSample(path);
    tern_file f;
    tern_error err{};
    ASSERT_EQ(tern_file_open(path.c_str(), 1, &f, &err), TERN_OK) << err.message;
    EXPECT_EQ(f.owns_mapping, 1);
    CheckSample(f);
    tern_file_close(&f);
    EXPECT_EQ(dir.List(), std::vector<std::string>{"m.tern"});  // no temporary left
    struct stat sb;
    ASSERT_EQ(stat(path.c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mode & 0777, 0644u);
    EXPECT_EQ(tern_file_open((dir.path + "/absent.tern").c_str(), 0, &f, &err), TERN_ERR_IO);
    EXPECT_EQ(tern_file_open(dir.path.c_str(), 0, &f, &err), TERN_ERR_IO);  // a folder
}

TEST(TernFile, EmptyFile) {
    TempDir dir;
    std::string path = dir.path + "/e.tern";
    tern_writer *w;
    tern_error err{};
    ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
    ASSERT_EQ(tern_writer_finish(w, &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open(path.c_str(), 1, &f, &err), TERN_OK) << err.message;
    EXPECT_EQ(f.n_tensors, 0u);
    EXPECT_EQ(f.n_meta, 0u);
    EXPECT_EQ(tern_file_find_tensor(&f, "x"), nullptr);
    EXPECT_FALSE(tern_file_has_meta(&f, "x"));
    tern_file_close(&f);
}

TEST(TernFile, UnalignedBufferIsInvalidArg) {
    const std::vector<uint8_t> &bytes = SampleBytes();
    std::vector<uint8_t> shifted(8);
    shifted.insert(shifted.end(), bytes.begin(), bytes.end());
    AlignedBuf buf(shifted);
    tern_file f;
    tern_error err{};
    EXPECT_EQ(tern_file_open_memory(buf.p + 8, bytes.size(), 0, &f, &err), TERN_ERR_INVALID_ARG);
}

// ---------------------------------------------------------------------------
// Hostile files

TEST(TernHostile, EveryTruncationIsRejected) {
    const std::vector<uint8_t> &bytes = SampleBytes();
    tern_error err{};
    ASSERT_EQ(OpenBytes(bytes, 1, &err), TERN_OK) << err.message;
    for (size_t n = 0; n < bytes.size(); n++) {
        ASSERT_EQ(OpenBytes(bytes, 1, &err, n), TERN_ERR_FORMAT) << "length " << n;
    }
    std::vector<uint8_t> longer = bytes;
    longer.push_back(0);
    EXPECT_EQ(OpenBytes(longer, 1, &err), TERN_ERR_FORMAT);
}

TEST(TernHostile, EveryHeaderAndTableByteFlipIsRejected) {
    const std::vector<uint8_t> &bytes = SampleBytes();
    const tern_file_header *h = reinterpret_cast<const tern_file_header *>(bytes.data());
    std::vector<size_t> positions;
    for (size_t i = 0; i < 128; i++) positions.push_back(i);
    for (size_t i = 0; i < h->section_count * sizeof(tern_section_entry); i++)
        positions.push_back(h->section_table_offset + i);
    tern_error err{};
    for (size_t pos : positions) {
        for (uint8_t mask : {0x01, 0x02, 0x10, 0x80, 0xff}) {
            std::vector<uint8_t> c = bytes;
            c[pos] ^= mask;
            tern_status st = OpenBytes(c, 0, &err);
            ASSERT_TRUE(st == TERN_ERR_FORMAT || st == TERN_ERR_UNSUPPORTED)
                << "byte " << pos << " ^ " << int(mask) << " gave " << st;
        }
    }
}

TEST(TernHostile, ChecksumOfEachTableSectionIsChecked) {
    // A flip inside STRINGS, METADATA, BLOB, TENSORS is caught even without verify_data.
    for (uint32_t kind : {TERN_SECTION_STRINGS, TERN_SECTION_METADATA, TERN_SECTION_BLOB, TERN_SECTION_TENSORS}) {
        Mutable m;
        tern_section_entry *s = m.section(kind);
        ASSERT_GT(s->size, 4u);
        m.b[s->offset + s->size / 2] ^= 0x40;
        tern_error err{};
        EXPECT_EQ(OpenBytes(m.b, 0, &err), TERN_ERR_FORMAT) << kind;
        EXPECT_NE(std::strstr(err.message, "checksum"), nullptr) << err.message;
    }
}

TEST(TernHostile, DataChecksumOnlyWithVerifyData) {
    Mutable m;
    m.Rehash();
    tern_tensor_record *r = m.tensor("blk.0.attn_q.weight");
    m.b[r->planes[0].offset + 17] ^= 0x01;  // inside DATA, no hash recomputed
    tern_error err{};
    EXPECT_EQ(OpenBytes(m.b, 0, &err), TERN_OK) << err.message;
    EXPECT_EQ(OpenBytes(m.b, 1, &err), TERN_ERR_FORMAT);
    EXPECT_NE(std::strstr(err.message, "DATA"), nullptr) << err.message;
    EXPECT_NE(std::strstr(err.message, "checksum"), nullptr) << err.message;
}

TEST(TernHostile, RehashedControlIsValid) {
    Mutable m;
    std::string msg;
    EXPECT_EQ(m.Open(1, &msg), TERN_OK) << msg;
}

TEST(TernHostile, Version) {
    {
        Mutable m;
        m.hdr()->version_major = 2;
        EXPECT_EQ(m.Open(), TERN_ERR_UNSUPPORTED);
    }
    {
        Mutable m;
        m.hdr()->version_major = 0;
        EXPECT_EQ(m.Open(), TERN_ERR_FORMAT);
    }
    {
        Mutable m;  // a newer minor of a known major is read
        m.hdr()->version_minor = 7;
        std::string msg;
        EXPECT_EQ(m.Open(1, &msg), TERN_OK) << msg;
    }
    {
        Mutable m;  // an unknown encoding in a newer minor: the reader is too old
        m.hdr()->version_minor = 1;
        m.tensor("ids")->encoding = 40;
        EXPECT_EQ(m.Open(), TERN_ERR_UNSUPPORTED);
    }
}

TEST(TernHostile, Header) {
    {
        Mutable m;
        m.hdr()->magic[1] = 'X';
        EXPECT_REJECTED(m, "magic");
    }
    {
        Mutable m;
        m.hdr()->header_size = 256;
        EXPECT_REJECTED(m, "header_size");
    }
    {
        Mutable m;
        m.hdr()->file_size += 64;
        EXPECT_REJECTED(m, "bytes");
    }
    {
        Mutable m;
        m.hdr()->flags = 1;
        EXPECT_REJECTED(m, "flags");
    }
    {
        Mutable m;
        m.hdr()->reserved[70] = 1;
        EXPECT_REJECTED(m, "reserved");
    }
    {
        Mutable m;
        m.hdr()->section_count = 0;
        EXPECT_REJECTED(m, "section_count");
    }
    {
        Mutable m;
        m.hdr()->section_count = 65;
        EXPECT_REJECTED(m, "section_count");
    }
    {
        Mutable m;
        m.hdr()->section_table_offset += 4;
        EXPECT_REJECTED(m, "aligned");
    }
    {
        Mutable m;
        m.hdr()->section_table_offset = 0xfffffffffffffff8ull;
        EXPECT_REJECTED(m, "section table");
    }
    {
        Mutable m;
        m.hdr()->section_table_offset = 64;  // inside the header
        EXPECT_REJECTED(m, "section table");
    }
}

TEST(TernHostile, Sections) {
    {
        Mutable m;
        m.section(TERN_SECTION_STRINGS)->offset = m.b.size() + 8;
        EXPECT_REJECTED(m, "outside");
    }
    {
        Mutable m;  // offset + size wraps around 2^64
        tern_section_entry *s = m.section(TERN_SECTION_METADATA);
        s->offset = 0xfffffffffffffff8ull;
        s->size = 16;
        EXPECT_REJECTED(m, "outside");
    }
    {
        Mutable m;
        m.section(TERN_SECTION_STRINGS)->size = m.b.size();
        EXPECT_REJECTED(m, "outside");
    }
    {
        Mutable m;  // two sections on the same bytes
        m.section(TERN_SECTION_STRINGS)->offset = m.section(TERN_SECTION_METADATA)->offset;
        EXPECT_REJECTED(m, "overlaps");
    }
    {
        Mutable m;  // a section over the header
        m.section(TERN_SECTION_STRINGS)->offset = 8;
        EXPECT_REJECTED(m, "overlaps");
    }
    {
        Mutable m;  // a section over the section table
        tern_section_entry *s = m.section(TERN_SECTION_TENSORS);
        s->size += 8;
        EXPECT_REJECTED(m, "overlaps");
    }
    {
        Mutable m;
        m.section(TERN_SECTION_DATA)->offset += 8;
        EXPECT_REJECTED(m, "aligned");
    }
    {
        Mutable m;
        m.section(TERN_SECTION_BLOB)->kind = TERN_SECTION_STRINGS;
        EXPECT_REJECTED(m, "second");
    }
    {
        Mutable m;
        m.section(TERN_SECTION_BLOB)->kind = 9;
        EXPECT_REJECTED(m, "unknown kind");
    }
    {
        Mutable m;  // in a newer minor an unknown section is skipped...
        m.hdr()->version_minor = 1;
        m.section(TERN_SECTION_BLOB)->kind = 9;
        EXPECT_REJECTED(m, "outside BLOB");  // ...so the arrays now point nowhere
    }
    {
        Mutable m;
        m.hdr()->version_minor = 1;
        m.section(TERN_SECTION_TENSORS)->kind = 77;
        EXPECT_REJECTED(m, "TENSORS section is missing");
    }
    {
        Mutable m;
        m.section(TERN_SECTION_DATA)->flags = 2;
        EXPECT_REJECTED(m, "flags");
    }
}

TEST(TernHostile, MetadataEntries) {
    {
        Mutable m;
        *m.count(TERN_SECTION_METADATA) = 0xffffffffu;
        EXPECT_REJECTED(m, "count");
    }
    {
        Mutable m;
        *m.count(TERN_SECTION_METADATA) -= 1;
        EXPECT_REJECTED(m, "count");
    }
    {
        Mutable m;
        m.count(TERN_SECTION_METADATA)[1] = 1;
        EXPECT_REJECTED(m, "reserved");
    }
    {
        Mutable m;
        std::swap(*m.meta(0), *m.meta(1));
        EXPECT_REJECTED(m, "sorted");
    }
    {
        Mutable m;  // duplicate key
        m.meta(1)->key_offset = m.meta(0)->key_offset;
        m.meta(1)->key_length = m.meta(0)->key_length;
        EXPECT_REJECTED(m, "sorted");
    }
    {
        Mutable m;
        m.meta(3)->key_offset = static_cast<uint32_t>(m.section(TERN_SECTION_STRINGS)->size);
        EXPECT_REJECTED(m, "outside STRINGS");
    }
    {
        Mutable m;
        m.meta(0)->key_length = 0;
        EXPECT_REJECTED(m, "empty");
    }
    {
        Mutable m;
        m.meta(TERN_KEY_ARCH)->count = 0xffffffffu;
        EXPECT_REJECTED(m, "outside STRINGS");
    }
    {
        Mutable m;
        m.meta(TERN_KEY_ARCH)->value = 0xffffffffffffff00ull;
        EXPECT_REJECTED(m, "outside STRINGS");
    }
    {
        Mutable m;
        m.meta("big")->count = 2;
        EXPECT_REJECTED(m, "count");
    }
    {
        Mutable m;
        m.meta(TERN_KEY_N_LAYER)->value |= 1ull << 40;
        EXPECT_REJECTED(m, "upper");
    }
    {
        Mutable m;
        m.meta("big")->type = 42;
        EXPECT_REJECTED(m, "unknown type");
    }
    {
        Mutable m;
        m.meta("arr.u32")->value += 2;
        EXPECT_REJECTED(m, "aligned");
    }
    {
        Mutable m;  // count * 8 stays far below 2^64 but far past BLOB
        m.meta("tokenizer.tokens")->count = 0xffffffffu;
        EXPECT_REJECTED(m, "outside BLOB");
    }
    {
        Mutable m;
        m.meta("arr.f32")->value = m.section(TERN_SECTION_BLOB)->size;
        EXPECT_REJECTED(m, "outside BLOB");
    }
    {
        Mutable m;  // one pair of the string array points past STRINGS
        tern_meta_entry *e = m.meta("tokenizer.tokens");
        uint32_t *pairs = reinterpret_cast<uint32_t *>(m.at(m.section(TERN_SECTION_BLOB)->offset + e->value));
        pairs[2 * 2] = static_cast<uint32_t>(m.section(TERN_SECTION_STRINGS)->size) - 2;
        EXPECT_REJECTED(m, "outside STRINGS");
    }
}

TEST(TernHostile, TensorRecords) {
    const std::string q = "blk.0.attn_q.weight";
    {
        Mutable m;
        *m.count(TERN_SECTION_TENSORS) = 0xffffffffu;
        EXPECT_REJECTED(m, "count");
    }
    {
        Mutable m;
        std::swap(*m.tensor(0u), *m.tensor(1u));
        EXPECT_REJECTED(m, "sorted");
    }
    {
        Mutable m;  // a repeated name
        m.tensor(1u)->name_offset = m.tensor(0u)->name_offset;
        m.tensor(1u)->name_length = m.tensor(0u)->name_length;
        EXPECT_REJECTED(m, "sorted");
    }
    {
        Mutable m;
        m.tensor(2u)->name_offset = static_cast<uint32_t>(m.section(TERN_SECTION_STRINGS)->size) - 1;
        EXPECT_REJECTED(m, "outside STRINGS");
    }
    {
        Mutable m;
        m.tensor(2u)->name_length = 0xffffffffu;
        EXPECT_REJECTED(m, "outside STRINGS");
    }
    {
        Mutable m;
        m.tensor(0u)->name_length = 0;
        EXPECT_REJECTED(m, "empty");
    }
    for (uint16_t enc : {4, 15, 18, 99, 0xffff}) {
        Mutable m;
        m.tensor(q)->encoding = enc;
        EXPECT_REJECTED(m, "encoding");
    }
    {
        Mutable m;
        m.tensor(q)->layout = 7;
        EXPECT_REJECTED(m, "layout");
    }
    for (uint32_t ndim : {0u, 5u, 0xffffffffu}) {
        Mutable m;
        m.tensor("ids")->ndim = ndim;
        EXPECT_REJECTED(m, "ndim");
    }
    {
        Mutable m;
        m.tensor("ids")->dims[1] = 1;
        EXPECT_REJECTED(m, "unused dim");
    }
    {
        Mutable m;
        m.tensor("ids")->dims[0] = 0;
        EXPECT_REJECTED(m, "dim 0 is 0");
    }
    {
        Mutable m;
        m.tensor(q)->reserved = 3;
        EXPECT_REJECTED(m, "reserved");
    }
    {
        Mutable m;
        m.tensor(q)->flags = 0x8;
        EXPECT_REJECTED(m, "flags");
    }
    // Dims whose products overflow 64 bits.
    for (auto dims : {std::vector<uint64_t>{1ull << 33, 1ull << 33}, std::vector<uint64_t>{1ull << 32, 1ull << 31},
                      std::vector<uint64_t>{~0ull, ~0ull}}) {
        Mutable m;
        tern_tensor_record *r = m.tensor("token_embd.weight");
        r->dims[0] = dims[0];
        r->dims[1] = dims[1];
        EXPECT_REJECTED(m, "inconsistent");
    }
    {
        Mutable m;
        m.tensor("blk.0.attn_v.weight")->group_size = 15;  // odd Q4 group
        EXPECT_REJECTED(m, "inconsistent");
    }
    {
        Mutable m;
        m.tensor("blk.0.ffn_down.weight")->sparse_m = 5;
        EXPECT_REJECTED(m, "inconsistent");
    }
    {
        Mutable m;
        m.tensor("blk.0.attn_output.weight")->tile_rows = 3;
        EXPECT_REJECTED(m, "inconsistent");
    }
}

TEST(TernHostile, TensorPlanes) {
    const std::string q = "blk.0.attn_q.weight";
    {
        Mutable m;  // past the end of the file
        m.tensor(q)->planes[0].offset = (m.b.size() + 64) / 64 * 64;
        EXPECT_REJECTED(m, "outside DATA");
    }
    {
        Mutable m;  // offset + size wraps
        m.tensor(q)->planes[0].offset = 0xffffffffffffffc0ull;
        EXPECT_REJECTED(m, "outside DATA");
    }
    {
        Mutable m;  // aligned, inside the file, but in the header
        m.tensor(q)->planes[0].offset = 0;
        EXPECT_REJECTED(m, "outside DATA");
    }
    {
        Mutable m;  // past DATA's end, inside the tables
        tern_section_entry *d = m.section(TERN_SECTION_DATA);
        m.tensor(q)->planes[0].offset = (d->offset + d->size) / 64 * 64;
        EXPECT_REJECTED(m, "outside DATA");
    }
    {
        Mutable m;
        m.tensor(q)->planes[1].offset += 8;
        EXPECT_REJECTED(m, "not 64-byte aligned");
    }
    {
        Mutable m;  // two tensors share bytes
        m.tensor("ids")->planes[0].offset = m.tensor(q)->planes[0].offset;
        EXPECT_REJECTED(m, "overlaps");
    }
    {
        Mutable m;  // a plane runs into the next plane of the same tensor
        tern_tensor_record *r = m.tensor(q);
        r->planes[1].offset = r->planes[0].offset + 192;
        EXPECT_REJECTED(m, "overlaps");
    }
    {
        Mutable m;
        m.tensor(q)->planes[0].size += 1;
        EXPECT_REJECTED(m, "bytes, expected");
    }
    {
        Mutable m;  // a zeros plane on a symmetric tensor
        tern_tensor_record *r = m.tensor(q);
        r->planes[2].offset = r->planes[0].offset;
        EXPECT_REJECTED(m, "absent");
    }
    {
        Mutable m;  // a required plane missing
        tern_tensor_record *r = m.tensor("blk.0.attn_k.weight");
        r->planes[2].offset = 0;
        r->planes[2].size = 0;
        EXPECT_REJECTED(m, "plane 2");
    }
}

// Random corruptions of the tables with checksums recomputed: whatever the
// reader accepts must be safe to walk (run under ASan to catch stray reads).
TEST(TernHostile, RandomRehashedCorruptionsAreSafe) {
    uint32_t s = 777;
    auto next = [&s] { return s = s * 1664525u + 1013904223u; };
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        Mutable m;
        uint64_t tables = m.section(TERN_SECTION_DATA)->offset + m.section(TERN_SECTION_DATA)->size;
        int flips = 1 + next() % 3;
        for (int k = 0; k < flips; k++) {
            uint64_t pos = next() % 4 == 0 ? next() % 120 : tables + next() % (m.b.size() - tables);
            m.b[pos] ^= static_cast<uint8_t>(1u << (next() >> 29));
        }
        m.Rehash();
        AlignedBuf buf(m.b);
        tern_file f;
        tern_error err{};
        if (tern_file_open_memory(buf.p, buf.size, 1, &f, &err) != TERN_OK) continue;
        accepted++;
        uint64_t sum = 0;
        for (uint32_t i = 0; i < f.n_tensors; i++) {
            tern_tensor_view v;
            tern_file_tensor_view(&f, i, &v);
            for (size_t c = 0; c < v.name_length; c++) sum += static_cast<uint8_t>(v.name[c]);
            for (int p = 0; p < TERN_PLANE_COUNT; p++) {
                const uint8_t *b = static_cast<const uint8_t *>(v.planes[p]);
                for (uint64_t c = 0; c < v.plane_sizes[p]; c++) sum += b[c];
            }
        }
        for (uint32_t i = 0; i < f.n_meta; i++) {
            const char *key;
            size_t klen;
            tern_meta_type type;
            uint32_t n;
            tern_file_meta_at(&f, i, &key, &klen, &type, &n);
            std::string k(key, klen);
            const char *str;
            size_t len;
            if (type == TERN_META_STRING && tern_file_meta_str(&f, k.c_str(), &str, &len, &err) == TERN_OK) {
                for (size_t c = 0; c < len; c++) sum += static_cast<uint8_t>(str[c]);
            }
            const uint32_t *au;
            if (type == TERN_META_ARR_U32 && tern_file_meta_arr_u32(&f, k.c_str(), &au, &n, &err) == TERN_OK) {
                for (uint32_t c = 0; c < n; c++) sum += au[c];
            }
            if (type == TERN_META_ARR_STRING) {
                for (uint32_t c = 0; c < n; c++) {
                    if (tern_file_meta_arr_str(&f, k.c_str(), c, &str, &len, &err) != TERN_OK) continue;
                    for (size_t d = 0; d < len; d++) sum += static_cast<uint8_t>(str[d]);
                }
            }
        }
        EXPECT_GE(sum, 0u);
        tern_file_close(&f);
    }
    // Some corruptions (inside string bytes, padding) leave a valid file.
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, 3000);
}

// ---------------------------------------------------------------------------
// Writer

TEST(TernWriter, AbortLeavesNothing) {
    TempDir dir;
    std::string path = dir.path + "/a.tern";
    tern_writer *w;
    tern_error err{};
    ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
    float data[4] = {1, 2, 3, 4};
    const void *planes[TERN_PLANE_COUNT] = {data};
    tern_tensor_desc d = Desc(TERN_ENC_F32, {4});
    ASSERT_EQ(tern_writer_add_tensor(w, "t", &d, planes, &err), TERN_OK);
    ASSERT_EQ(dir.List().size(), 1u);  // the temporary file
    EXPECT_EQ(dir.List()[0].rfind("a.tern.tmp.", 0), 0u);
    tern_writer_abort(w);
    EXPECT_TRUE(dir.List().empty());
}

TEST(TernWriter, RejectsBadInput) {
    TempDir dir;
    std::string path = dir.path + "/b.tern";
    tern_writer *w;
    tern_error err{};
    ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
    EXPECT_EQ(tern_writer_set_u32(w, "k", 1, &err), TERN_OK);
    EXPECT_EQ(tern_writer_set_f32(w, "k", 1, &err), TERN_ERR_INVALID_ARG);  // duplicate key
    EXPECT_NE(std::strstr(err.message, "'k'"), nullptr);
    EXPECT_EQ(tern_writer_set_u32(w, "", 1, &err), TERN_ERR_INVALID_ARG);
    float data[8] = {};
    const void *planes[TERN_PLANE_COUNT] = {data};
    tern_tensor_desc d = Desc(TERN_ENC_F32, {8});
    EXPECT_EQ(tern_writer_add_tensor(w, "t", &d, planes, &err), TERN_OK);
    EXPECT_EQ(tern_writer_add_tensor(w, "t", &d, planes, &err), TERN_ERR_INVALID_ARG);  // duplicate
    EXPECT_EQ(tern_writer_add_tensor(w, "", &d, planes, &err), TERN_ERR_INVALID_ARG);
    tern_tensor_desc bad = Desc(TERN_ENC_Q4, {8}, 3);
    EXPECT_EQ(tern_writer_add_tensor(w, "u", &bad, planes, &err), TERN_ERR_INVALID_ARG);
    tern_tensor_desc q8 = Desc(TERN_ENC_Q8, {8}, 8);
    EXPECT_EQ(tern_writer_add_tensor(w, "v", &q8, planes, &err), TERN_ERR_INVALID_ARG);  // no scales
    const void *extra[TERN_PLANE_COUNT] = {data, nullptr, data};
    EXPECT_EQ(tern_writer_add_tensor(w, "w", &d, extra, &err), TERN_ERR_INVALID_ARG);  // stray plane
    // The writer is still good after rejected calls.
    ASSERT_EQ(tern_writer_finish(w, &err), TERN_OK) << err.message;
    tern_file f;
    ASSERT_EQ(tern_file_open(path.c_str(), 1, &f, &err), TERN_OK) << err.message;
    EXPECT_EQ(f.n_tensors, 1u);
    EXPECT_EQ(f.n_meta, 1u);
    tern_file_close(&f);
    EXPECT_EQ(tern_writer_open((dir.path + "/no/such/dir.tern").c_str(), &w, &err), TERN_ERR_IO);
}

// Write errors (the file-size limit stands in for a full disk) leave the
// previous file at dst untouched and no temporary behind.
TEST(TernWriter, WriteFailureKeepsPreviousFile) {
    TempDir dir;
    std::string path = dir.path + "/p.tern";
    WriteSample(path);
    const std::vector<uint8_t> before = ReadAll(path);

    struct rlimit old_limit;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old_limit;
    lim.rlim_cur = 4096;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);

    tern_error err{};
    std::vector<uint8_t> big(8192, 0x5a);
    const void *planes[TERN_PLANE_COUNT] = {big.data()};
    tern_tensor_desc d = Desc(TERN_ENC_F32, {2048});
    {  // fails while adding a tensor; finish then reports it and cleans up
        tern_writer *w;
        ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
        EXPECT_EQ(tern_writer_add_tensor(w, "big", &d, planes, &err), TERN_ERR_IO);
        EXPECT_EQ(tern_writer_set_u32(w, "k", 1, &err), TERN_ERR_IO);
        EXPECT_EQ(tern_writer_finish(w, &err), TERN_ERR_IO);
    }
    {  // fails inside finish, while writing the tables
        tern_writer *w;
        ASSERT_EQ(tern_writer_open(path.c_str(), &w, &err), TERN_OK);
        tern_tensor_desc small = Desc(TERN_ENC_F32, {512});
        EXPECT_EQ(tern_writer_add_tensor(w, "small", &small, planes, &err), TERN_OK);
        std::vector<uint32_t> arr(4096, 7);
        EXPECT_EQ(tern_writer_set_arr_u32(w, "arr", arr.data(), 4096, &err), TERN_OK);
        EXPECT_EQ(tern_writer_finish(w, &err), TERN_ERR_IO);
    }
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
    signal(SIGXFSZ, old_handler);

    EXPECT_EQ(dir.List(), std::vector<std::string>{"p.tern"});
    EXPECT_EQ(ReadAll(path), before);
}

// finish replaces an existing file atomically.
TEST(TernWriter, FinishReplacesFile) {
    TempDir dir;
    std::string path = dir.path + "/r.tern";
    {
        std::ofstream out(path, std::ios::binary);
        out << "old contents";
    }
    WriteSample(path);
    EXPECT_EQ(ReadAll(path), SampleBytes());
    EXPECT_EQ(dir.List(), std::vector<std::string>{"r.tern"});
}

}  // namespace
