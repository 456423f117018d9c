/* ROW_INTERLEAVED tiles (docs/format.md 7.4): the converter stores eligible
 * Q8/Q4 linear layers in the order the integer kernels read them. */
#ifndef TERN_CONVERTER_TILE_LAYOUT_H
#define TERN_CONVERTER_TILE_LAYOUT_H

#include <stdint.h>

#include "common/error.h"
#include "formats/encoding.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows per tile the converter writes: one AVX-512 vector of int32 lanes,
 * two AVX2 ones, four NEON ones. */
#define TERN_TILE_ROWS 16

/* 1 when a row-major tensor can be stored as tiles of `tile_rows` rows. */
int tern_tiles_eligible(const tern_tensor_desc *desc, uint32_t tile_rows);

/* Rewrites the values, scales and zeros planes of a row-major Q8/Q4 tensor
 * (src, as tern_tensor_plane_sizes sizes them), and the index plane of a
 * sparse one (2:4, 1:4), into `tiled` (same sizes) and sets *tiled_desc to
 * the ROW_INTERLEAVED description. */
void tern_tiles_from_rows(const tern_tensor_desc *desc, uint32_t tile_rows,
                          const void *const src[TERN_PLANE_COUNT], void *const tiled[TERN_PLANE_COUNT],
                          tern_tensor_desc *tiled_desc);

#ifdef __cplusplus
}
#endif
#endif
