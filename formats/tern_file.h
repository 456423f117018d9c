/* The .tern container: on-disk records, the validating reader and the
 * streaming writer. docs/format.md is the specification; this header mirrors it.
 *
 * File layout (all integers little-endian):
 *   [header 128 B][tensor data, each plane 64-B aligned ...]
 *   [STRINGS][METADATA][BLOB][TENSORS][section table]
 * The header is written last (its offsets are known only at the end), so a
 * writer streams tensors without holding them in memory. */
#ifndef TERN_FORMATS_TERN_FILE_H
#define TERN_FORMATS_TERN_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/encoding.h"
#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_FILE_MAGIC "\x89TERN\r\n\x1a"
#define TERN_FILE_VERSION_MAJOR 1
#define TERN_FILE_VERSION_MINOR 0
#define TERN_FILE_HEADER_SIZE 128
#define TERN_FILE_ALIGN 64
#define TERN_FILE_MAX_SECTIONS 64

/* On-disk header, 128 bytes. */
typedef struct tern_file_header {
    uint8_t magic[8];              /* TERN_FILE_MAGIC */
    uint16_t version_major;        /* readers reject a major they do not know */
    uint16_t version_minor;        /* readers accept any minor of a known major */
    uint32_t header_size;          /* 128 */
    uint64_t file_size;            /* exact size of the file */
    uint32_t section_count;        /* 1..TERN_FILE_MAX_SECTIONS */
    uint32_t flags;                /* 0 */
    uint64_t section_table_offset; /* 8-aligned, entries of 32 bytes */
    uint64_t section_table_xxh64;  /* XXH64 (seed 0) of the section table */
    uint8_t reserved[72];          /* 0 */
    uint64_t header_xxh64;         /* XXH64 (seed 0) of bytes [0, 120) */
} tern_file_header;

typedef enum tern_section_kind {
    TERN_SECTION_STRINGS = 1,  /* UTF-8 bytes referenced by (offset, length) */
    TERN_SECTION_METADATA = 2, /* sorted key/value entries */
    TERN_SECTION_BLOB = 3,     /* arrays referenced from METADATA, 8-aligned */
    TERN_SECTION_TENSORS = 4,  /* sorted tensor records */
    TERN_SECTION_DATA = 5,     /* tensor planes, 64-aligned */
} tern_section_kind;

typedef struct tern_section_entry {
    uint32_t kind;   /* tern_section_kind; each kind at most once */
    uint32_t flags;  /* 0 */
    uint64_t offset; /* from the start of the file */
    uint64_t size;
    uint64_t xxh64;  /* XXH64 (seed 0) of the section's bytes */
} tern_section_entry;

typedef enum tern_meta_type {
    TERN_META_U32 = 1,
    TERN_META_I32 = 2,
    TERN_META_U64 = 3,
    TERN_META_F32 = 4,
    TERN_META_F64 = 5,
    TERN_META_STRING = 6,    /* value: offset into STRINGS, count: byte length */
    TERN_META_ARR_U32 = 7,   /* value: offset into BLOB, count: elements */
    TERN_META_ARR_I32 = 8,
    TERN_META_ARR_F32 = 9,
    TERN_META_ARR_STRING = 10, /* BLOB holds count (u32 offset, u32 length) pairs into STRINGS */
} tern_meta_type;

/* METADATA section: u32 count, u32 0, then count of these, sorted by key bytes. */
typedef struct tern_meta_entry {
    uint32_t key_offset; /* into STRINGS */
    uint32_t key_length;
    uint32_t type;       /* tern_meta_type */
    uint32_t count;      /* 1 for scalars */
    uint64_t value;      /* scalar bits (zero-extended; F32 in the low 32 bits) or offset */
} tern_meta_entry;

/* TENSORS section: u32 count, u32 0, then count records of 128 bytes, sorted by name. */
typedef struct tern_tensor_record {
    uint32_t name_offset; /* into STRINGS */
    uint32_t name_length;
    uint16_t encoding;    /* tern_encoding */
    uint16_t layout;      /* tern_layout */
    uint32_t ndim;
    uint64_t dims[4];     /* unused dims are 0 */
    uint32_t group_size;
    uint8_t sparse_n;
    uint8_t sparse_m;
    uint16_t flags;
    uint32_t tile_rows;
    uint32_t reserved;    /* 0 */
    struct {
        uint64_t offset;  /* absolute, 64-aligned, inside DATA; 0 when absent */
        uint64_t size;    /* exactly tern_tensor_plane_sizes() */
    } planes[TERN_PLANE_COUNT];
} tern_tensor_record;

/* ---- Reader ---------------------------------------------------------------
 * Opening validates the whole structure: header, section table, every string
 * reference, metadata entry, tensor record, plane bound, alignment and
 * overlap, and the checksums of all sections except DATA (whose checksum is
 * checked only when verify_data is set, since it means reading every byte). */
typedef struct tern_file {
    const uint8_t *base; /* the mapping (or caller's buffer) */
    uint64_t size;
    int owns_mapping;
    const tern_file_header *header;
    const uint8_t *strings;
    uint64_t strings_size;
    const uint8_t *blob;
    uint64_t blob_size;
    const tern_meta_entry *meta;
    uint32_t n_meta;
    const tern_tensor_record *tensors;
    uint32_t n_tensors;
    uint64_t data_offset;
    uint64_t data_size;
} tern_file;

/* A tensor located in the file, ready for the runtime: no copies. */
typedef struct tern_tensor_view {
    const char *name;    /* NOT NUL-terminated */
    size_t name_length;
    tern_tensor_desc desc;
    const void *planes[TERN_PLANE_COUNT]; /* NULL when absent */
    uint64_t plane_sizes[TERN_PLANE_COUNT];
} tern_tensor_view;

tern_status tern_file_open(const char *path, int verify_data, tern_file *out, tern_error *err);
/* Same validation over a caller-owned buffer (tests, fuzzing). The buffer
 * must outlive the tern_file and be 64-byte aligned. */
tern_status tern_file_open_memory(const void *data, size_t size, int verify_data, tern_file *out,
                                  tern_error *err);
void tern_file_close(tern_file *file);

/* Binary search by name; NULL when absent. */
const tern_tensor_record *tern_file_find_tensor(const tern_file *file, const char *name);
/* Fills a view of the i-th tensor (i < n_tensors). */
void tern_file_tensor_view(const tern_file *file, uint32_t i, tern_tensor_view *out);
/* Looks up `name` and fills a view; TERN_ERR_FORMAT with a message when absent. */
tern_status tern_file_get_tensor(const tern_file *file, const char *name, tern_tensor_view *out,
                                 tern_error *err);

/* Metadata. Each returns TERN_ERR_FORMAT (and a message naming the key) when
 * the key is absent or has another type, so callers can make keys required;
 * tern_file_has_meta tests for presence. Strings are NOT NUL-terminated. */
int tern_file_has_meta(const tern_file *file, const char *key);
tern_status tern_file_meta_u32(const tern_file *file, const char *key, uint32_t *out, tern_error *err);
tern_status tern_file_meta_i32(const tern_file *file, const char *key, int32_t *out, tern_error *err);
tern_status tern_file_meta_u64(const tern_file *file, const char *key, uint64_t *out, tern_error *err);
tern_status tern_file_meta_f32(const tern_file *file, const char *key, float *out, tern_error *err);
tern_status tern_file_meta_f64(const tern_file *file, const char *key, double *out, tern_error *err);
tern_status tern_file_meta_str(const tern_file *file, const char *key, const char **out,
                               size_t *length, tern_error *err);
/* Arrays: a pointer into the mapping (aligned for the element type) and a count. */
tern_status tern_file_meta_arr_u32(const tern_file *file, const char *key, const uint32_t **out,
                                   uint32_t *count, tern_error *err);
tern_status tern_file_meta_arr_i32(const tern_file *file, const char *key, const int32_t **out,
                                   uint32_t *count, tern_error *err);
tern_status tern_file_meta_arr_f32(const tern_file *file, const char *key, const float **out,
                                   uint32_t *count, tern_error *err);
/* Array of strings: element i of the array at `key`. */
tern_status tern_file_meta_arr_str_count(const tern_file *file, const char *key, uint32_t *count,
                                         tern_error *err);
tern_status tern_file_meta_arr_str(const tern_file *file, const char *key, uint32_t i,
                                   const char **out, size_t *length, tern_error *err);
/* Metadata entry i as a key and type, for `tern info`. */
void tern_file_meta_at(const tern_file *file, uint32_t i, const char **key, size_t *key_length,
                       tern_meta_type *type, uint32_t *count);

/* ---- Writer ---------------------------------------------------------------
 * Writes "<dst>.tmp.XXXXXX" in the destination's folder; tern_writer_finish
 * fsyncs it, renames it over dst and fsyncs the folder. tern_writer_abort (or
 * any failure inside finish) removes the temporary file. Tensor data is
 * written as it is added; metadata is kept in memory until finish. Keys and
 * tensor names must be unique (a duplicate fails). */
typedef struct tern_writer tern_writer;

tern_status tern_writer_open(const char *dst_path, tern_writer **out, tern_error *err);
tern_status tern_writer_set_u32(tern_writer *w, const char *key, uint32_t value, tern_error *err);
tern_status tern_writer_set_i32(tern_writer *w, const char *key, int32_t value, tern_error *err);
tern_status tern_writer_set_u64(tern_writer *w, const char *key, uint64_t value, tern_error *err);
tern_status tern_writer_set_f32(tern_writer *w, const char *key, float value, tern_error *err);
tern_status tern_writer_set_f64(tern_writer *w, const char *key, double value, tern_error *err);
tern_status tern_writer_set_str(tern_writer *w, const char *key, const char *value, size_t length,
                                tern_error *err);
tern_status tern_writer_set_arr_u32(tern_writer *w, const char *key, const uint32_t *values,
                                    uint32_t count, tern_error *err);
tern_status tern_writer_set_arr_i32(tern_writer *w, const char *key, const int32_t *values,
                                    uint32_t count, tern_error *err);
tern_status tern_writer_set_arr_f32(tern_writer *w, const char *key, const float *values,
                                    uint32_t count, tern_error *err);
/* strings[i] has lengths[i] bytes (no NUL needed). */
tern_status tern_writer_set_arr_str(tern_writer *w, const char *key, const char *const *strings,
                                    const uint32_t *lengths, uint32_t count, tern_error *err);
/* Appends a tensor. planes[p] must hold exactly the size tern_tensor_plane_sizes
 * gives for plane p (NULL for absent planes). */
tern_status tern_writer_add_tensor(tern_writer *w, const char *name, const tern_tensor_desc *desc,
                                   const void *const planes[TERN_PLANE_COUNT], tern_error *err);
tern_status tern_writer_finish(tern_writer *w, tern_error *err); /* frees w */
void tern_writer_abort(tern_writer *w);                           /* frees w */

#ifdef __cplusplus
}
#endif
#endif
