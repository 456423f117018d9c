/* Reader of GGUF files (llama.cpp's format), versions 2 and 3: a header
 * ("GGUF", version, tensor count, metadata count), typed key/value metadata,
 * tensor infos, then the tensor data aligned to general.alignment (default 32).
 * The file is mapped and every count, length and offset is checked against its
 * size before use; nothing in it is trusted. Multi-byte values in the mapping
 * are not aligned in general: read them through the getters, which copy. */
#ifndef TERN_FORMATS_GGUF_H
#define TERN_FORMATS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_gguf_type {
    TERN_GGUF_U8 = 0,
    TERN_GGUF_I8 = 1,
    TERN_GGUF_U16 = 2,
    TERN_GGUF_I16 = 3,
    TERN_GGUF_U32 = 4,
    TERN_GGUF_I32 = 5,
    TERN_GGUF_F32 = 6,
    TERN_GGUF_BOOL = 7,
    TERN_GGUF_STRING = 8,
    TERN_GGUF_ARRAY = 9,
    TERN_GGUF_U64 = 10,
    TERN_GGUF_I64 = 11,
    TERN_GGUF_F64 = 12,
} tern_gguf_type;

/* ggml tensor types whose sizes the reader knows (ggml's numbering). */
enum {
    TERN_GGML_F32 = 0,
    TERN_GGML_F16 = 1,
    TERN_GGML_Q4_0 = 2,
    TERN_GGML_Q4_1 = 3,
    TERN_GGML_Q5_0 = 6,
    TERN_GGML_Q5_1 = 7,
    TERN_GGML_Q8_0 = 8,
    TERN_GGML_Q8_1 = 9,
    TERN_GGML_Q2_K = 10,
    TERN_GGML_Q3_K = 11,
    TERN_GGML_Q4_K = 12,
    TERN_GGML_Q5_K = 13,
    TERN_GGML_Q6_K = 14,
    TERN_GGML_Q8_K = 15,
    TERN_GGML_BF16 = 30,
};

#define TERN_GGUF_MAX_DIMS 4

/* A string inside the mapping: not NUL-terminated. */
typedef struct tern_gguf_str {
    const char *ptr;
    uint64_t len;
} tern_gguf_str;

/* A metadata value. Scalars are decoded; arrays point into the mapping. */
typedef struct tern_gguf_value {
    tern_gguf_type type;
    union {
        uint64_t u;   /* U8 U16 U32 U64 BOOL */
        int64_t i;    /* I8 I16 I32 I64 */
        double f;     /* F32 F64 */
        tern_gguf_str s;
    } v;
    /* type == ARRAY: */
    tern_gguf_type elem_type;
    uint64_t count;
    const uint8_t *data;         /* first element in the mapping */
    const uint64_t *str_offsets; /* elem_type == STRING: offset of each element's length field */
} tern_gguf_value;

typedef struct tern_gguf_kv {
    tern_gguf_str key;
    tern_gguf_value value;
} tern_gguf_kv;

typedef struct tern_gguf_tensor {
    tern_gguf_str name;
    uint32_t type; /* ggml type */
    uint32_t n_dims;
    uint64_t dims[TERN_GGUF_MAX_DIMS]; /* ggml order: dims[0] is the contiguous one */
    uint64_t n_elements;
    uint64_t offset; /* from the start of the data section */
    uint64_t size;   /* bytes */
    const void *data;
} tern_gguf_tensor;

typedef struct tern_gguf {
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* of the data section, from the start of the file */
    tern_gguf_kv *kvs;    /* in file order */
    uint64_t n_kv;
    uint32_t *kv_sorted; /* indices sorted by key, for lookups */
    tern_gguf_tensor *tensors; /* in file order */
    uint64_t n_tensors;
    uint32_t *tensor_sorted;
    uint64_t *str_offsets_pool; /* backing store of every string array's offsets */
    int owns_mapping;
} tern_gguf;

tern_status tern_gguf_open(const char *path, tern_gguf *out, tern_error *err);
/* Parses a caller-owned buffer (tests, fuzzing); it must outlive `out`. */
tern_status tern_gguf_open_memory(const void *data, size_t size, tern_gguf *out, tern_error *err);
void tern_gguf_close(tern_gguf *g);

const char *tern_gguf_type_name(tern_gguf_type type);
/* Block size (elements) and bytes per block of a ggml type; 0 when unknown. */
int tern_ggml_type_info(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes);
const char *tern_ggml_type_name(uint32_t type);

/* NULL when absent. */
const tern_gguf_value *tern_gguf_find(const tern_gguf *g, const char *key);
/* Typed getters: TERN_ERR_INVALID_ARG when the key is absent (message says so),
 * TERN_ERR_FORMAT when the type does not fit. */
tern_status tern_gguf_get_u32(const tern_gguf *g, const char *key, uint32_t *out, tern_error *err);
tern_status tern_gguf_get_i32(const tern_gguf *g, const char *key, int32_t *out, tern_error *err);
tern_status tern_gguf_get_u64(const tern_gguf *g, const char *key, uint64_t *out, tern_error *err);
tern_status tern_gguf_get_f32(const tern_gguf *g, const char *key, float *out, tern_error *err);
tern_status tern_gguf_get_bool(const tern_gguf *g, const char *key, int *out, tern_error *err);
tern_status tern_gguf_get_str(const tern_gguf *g, const char *key, tern_gguf_str *out, tern_error *err);
/* The array under key; elem_type TERN_GGUF_ARRAY + 1 means any element type. */
tern_status tern_gguf_get_array(const tern_gguf *g, const char *key, const tern_gguf_value **out,
                                tern_error *err);

size_t tern_gguf_type_size(tern_gguf_type type); /* 0 for STRING and ARRAY */
/* Element access of an array value (index < count checked by the caller). */
tern_gguf_str tern_gguf_array_str(const tern_gguf_value *arr, uint64_t index);
/* Integer element of any integer/bool array type, float of F32/F64. */
int64_t tern_gguf_array_int(const tern_gguf_value *arr, uint64_t index);
double tern_gguf_array_float(const tern_gguf_value *arr, uint64_t index);

const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name);

/* Compares a mapped string with a C string. */
int tern_gguf_str_eq(tern_gguf_str s, const char *c);

#ifdef __cplusplus
}
#endif
#endif
