/* Fuzz target: the .tern reader over memory. Whatever opens is walked
 * completely (every tensor view and plane byte, every metadata entry through
 * its typed getter), so a reference the validator let through that points
 * outside the buffer shows up under the sanitizers. Each input is opened as
 * it is, then again with its file size and every checksum recomputed: without
 * that, nearly every mutation stops at the first checksum and the fuzzer
 * never reaches the structure behind it. tern_model_open takes a path and is
 * left to the file-based tests. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stddef.h>
#include <xxhash.h>

#include "formats/tern_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fuzz_touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint8_t x = 0;
    for (uint64_t i = 0; i < n; i++) x ^= b[i];
    return x;
}

static void fuzz_walk(const tern_file *f) {
    volatile uint8_t sink = 0;
    char name[4096];
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(f, i, &v);
        sink ^= fuzz_touch(v.name, v.name_length);
        for (int p = 0; p < TERN_PLANE_COUNT; p++)
            if (v.planes[p]) sink ^= fuzz_touch(v.planes[p], v.plane_sizes[p]);
        (void)tern_tensor_elements(&v.desc);
        if (v.name_length < sizeof name && !memchr(v.name, 0, v.name_length)) {
            memcpy(name, v.name, v.name_length);
            name[v.name_length] = '\0';
            tern_tensor_view again;
            if (tern_file_get_tensor(f, name, &again, NULL) == TERN_OK) sink ^= (uint8_t)again.name_length;
        }
    }
    for (uint32_t i = 0; i < f->n_meta; i++) {
        const char *key;
        size_t key_len;
        tern_meta_type type;
        uint32_t count;
        tern_file_meta_at(f, i, &key, &key_len, &type, &count);
        if (key_len >= sizeof name || memchr(key, 0, key_len)) continue;
        memcpy(name, key, key_len);
        name[key_len] = '\0';
        sink ^= (uint8_t)tern_file_has_meta(f, name);
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
        double f64;
        const char *s;
        size_t len;
        const uint32_t *au;
        const int32_t *ai;
        const float *af;
        uint32_t n;
        switch (type) {
        case TERN_META_U32: if (!tern_file_meta_u32(f, name, &u32, NULL)) sink ^= (uint8_t)u32; break;
        case TERN_META_I32: if (!tern_file_meta_i32(f, name, &i32, NULL)) sink ^= (uint8_t)i32; break;
        case TERN_META_U64: if (!tern_file_meta_u64(f, name, &u64, NULL)) sink ^= (uint8_t)u64; break;
        case TERN_META_F32: if (!tern_file_meta_f32(f, name, &f32, NULL)) sink ^= (uint8_t)(f32 == 0); break;
        case TERN_META_F64: if (!tern_file_meta_f64(f, name, &f64, NULL)) sink ^= (uint8_t)(f64 == 0); break;
        case TERN_META_STRING:
            if (!tern_file_meta_str(f, name, &s, &len, NULL)) sink ^= fuzz_touch(s, len);
            break;
        case TERN_META_ARR_U32:
            if (!tern_file_meta_arr_u32(f, name, &au, &n, NULL)) sink ^= fuzz_touch(au, (uint64_t)n * 4);
            break;
        case TERN_META_ARR_I32:
            if (!tern_file_meta_arr_i32(f, name, &ai, &n, NULL)) sink ^= fuzz_touch(ai, (uint64_t)n * 4);
            break;
        case TERN_META_ARR_F32:
            if (!tern_file_meta_arr_f32(f, name, &af, &n, NULL)) sink ^= fuzz_touch(af, (uint64_t)n * 4);
            break;
        case TERN_META_ARR_STRING:
            if (!tern_file_meta_arr_str_count(f, name, &n, NULL))
                for (uint32_t k = 0; k < n && k < 100000; k++)
                    if (!tern_file_meta_arr_str(f, name, k, &s, &len, NULL)) sink ^= fuzz_touch(s, len);
            break;
        default: break;
        }
        /* A getter of the wrong type must refuse, not misread. */
        if (type != TERN_META_U32 && tern_file_meta_u32(f, name, &u32, NULL) == TERN_OK) abort();
    }
    (void)sink;
}

static void fuzz_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Rewrites file_size, each section's XXH64 (where the section lies inside
 * the buffer), the section table's and the header's, as a writer would. */
static void fuzz_fix_checksums(uint8_t *b, size_t size) {
    if (size < TERN_FILE_HEADER_SIZE) return;
    fuzz_put64(b + offsetof(tern_file_header, file_size), size);
    uint64_t table;
    uint32_t count;
    memcpy(&table, b + offsetof(tern_file_header, section_table_offset), 8);
    memcpy(&count, b + offsetof(tern_file_header, section_count), 4);
    const uint64_t entry = sizeof(tern_section_entry);
    if (count <= TERN_FILE_MAX_SECTIONS && table <= size && count * entry <= size - table) {
        for (uint32_t i = 0; i < count; i++) {
            uint8_t *e = b + table + i * entry;
            uint64_t off, len;
            memcpy(&off, e + offsetof(tern_section_entry, offset), 8);
            memcpy(&len, e + offsetof(tern_section_entry, size), 8);
            if (off <= size && len <= size - off)
                fuzz_put64(e + offsetof(tern_section_entry, xxh64), XXH64(b + off, len, 0));
        }
        fuzz_put64(b + offsetof(tern_file_header, section_table_xxh64), XXH64(b + table, count * entry, 0));
    }
    fuzz_put64(b + offsetof(tern_file_header, header_xxh64),
               XXH64(b, offsetof(tern_file_header, header_xxh64), 0));
}

static void fuzz_open(const uint8_t *copy, size_t size) {
    for (int verify = 0; verify <= 1; verify++) {
        tern_file f;
        tern_error err;
        if (tern_file_open_memory(copy, size, verify, &f, &err) == TERN_OK) {
            fuzz_walk(&f);
            tern_file_close(&f);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The reader wants a 64-byte aligned buffer, like a mapping; exactly size
     * bytes of it, so that a read past the end reaches the sanitizers. */
    void *mem = NULL;
    if (posix_memalign(&mem, TERN_FILE_ALIGN, size ? size : 1) != 0) return 0;
    uint8_t *copy = mem;
    memcpy(copy, data, size);
    fuzz_open(copy, size);
    fuzz_fix_checksums(copy, size);
    fuzz_open(copy, size);
    free(copy);
    return 0;
}
