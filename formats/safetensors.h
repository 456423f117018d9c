/* Reader of Hugging Face safetensors files: an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__"},
 * then the raw tensor bytes. Mapped, validated, never trusted. */
#ifndef TERN_FORMATS_SAFETENSORS_H
#define TERN_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_st_dtype {
    TERN_ST_F64,
    TERN_ST_F32,
    TERN_ST_F16,
    TERN_ST_BF16,
    TERN_ST_I64,
    TERN_ST_I32,
    TERN_ST_I16,
    TERN_ST_I8,
    TERN_ST_U8,
    TERN_ST_BOOL,
} tern_st_dtype;

#define TERN_ST_MAX_DIMS 8

typedef struct tern_st_tensor {
    char *name; /* NUL-terminated, owned by the file */
    tern_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[TERN_ST_MAX_DIMS];
    uint64_t n_elements;
    const void *data; /* inside the mapping; not aligned in general */
    uint64_t size;    /* bytes, = n_elements * dtype size (checked) */
} tern_st_tensor;

typedef struct tern_safetensors {
    const uint8_t *base;
    size_t size;
    tern_st_tensor *tensors; /* sorted by name */
    uint32_t n_tensors;
    int owns_mapping; /* 1: opened from a path, close unmaps */
} tern_safetensors;

tern_status tern_safetensors_open(const char *path, tern_safetensors *out, tern_error *err);
/* Parses a caller-owned buffer (tests, fuzzing); the buffer must outlive `out`. */
tern_status tern_safetensors_open_memory(const void *data, size_t size, tern_safetensors *out,
                                         tern_error *err);
void tern_safetensors_close(tern_safetensors *st);
const tern_st_tensor *tern_safetensors_find(const tern_safetensors *st, const char *name);
size_t tern_st_dtype_size(tern_st_dtype dtype);
const char *tern_st_dtype_name(tern_st_dtype dtype);
/* Converts n_elements values of a float or integer tensor to float32. */
tern_status tern_st_to_f32(const tern_st_tensor *t, float *out, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
