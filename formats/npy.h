/* NumPy .npy files (version 1.0), float32 and int32, C order. */
#ifndef TERN_FORMATS_NPY_H
#define TERN_FORMATS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a little-endian float32 array of `ndim` dims (<= 4) to path. */
tern_status tern_npy_write_f32(const char *path, const float *data, uint32_t ndim,
                               const uint64_t *shape, tern_error *err);
/* Reads a float32 array ('<f4', C order, ndim <= 4) into a malloc'ed buffer. */
tern_status tern_npy_read_f32(const char *path, float **data, uint32_t *ndim, uint64_t shape[4],
                              tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
