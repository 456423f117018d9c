/* Row-major Q8/Q4 planes to ROW_INTERLEAVED tiles. */
#include "converter/tile_layout.h"

#include <string.h>

int tern_tiles_eligible(const tern_tensor_desc *desc, uint32_t tile_rows) {
    tern_tensor_desc t = *desc;
    if (desc->layout != TERN_LAYOUT_ROW_MAJOR || desc->ndim != 2) return 0;
    t.layout = TERN_LAYOUT_ROW_INTERLEAVED;
    t.tile_rows = tile_rows;
    uint64_t sizes[TERN_PLANE_COUNT];
    return tern_tensor_plane_sizes(&t, sizes) == 0; /* 7.4's conditions live there */
}

/* Stored values per row: every column, or the kept ones of N:M (7.3). */
static size_t stored_cols(const tern_tensor_desc *d) {
    const size_t cols = (size_t)d->dims[1];
    return d->sparse_m ? cols / d->sparse_m * d->sparse_n : cols;
}

/* The stored code (nibble for Q4) of row-major stored value (r, c). */
static unsigned row_major_code(const tern_tensor_desc *d, const uint8_t *values, size_t r,
                               size_t c) {
    const size_t cols = stored_cols(d);
    if (d->encoding == TERN_ENC_Q8) return values[r * cols + c];
    const size_t gs = d->group_size, half = gs / 2, j = c % gs;
    const uint8_t b = values[r * (cols / 2) + (c / gs) * half + (j < half ? j : j - half)];
    return j < half ? (b & 0xfu) : (unsigned)(b >> 4);
}

void tern_tiles_from_rows(const tern_tensor_desc *desc, uint32_t tile_rows,
                          const void *const src[TERN_PLANE_COUNT], void *const tiled[TERN_PLANE_COUNT],
                          tern_tensor_desc *tiled_desc) {
    /* sparse values tile as a dense matrix of their stored columns would */
    const size_t rows = (size_t)desc->dims[0], cols = stored_cols(desc), R = tile_rows;
    const size_t ng = cols / desc->group_size;
    const uint8_t *v = src[TERN_PLANE_VALUES];
    uint8_t *tv = tiled[TERN_PLANE_VALUES];
    if (desc->encoding == TERN_ENC_Q4) memset(tv, 0, rows * cols / 2);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            const unsigned code = row_major_code(desc, v, r, c);
            if (desc->encoding == TERN_ENC_Q8) {
                tv[tern_tiled_q8_offset(cols, R, r, c)] = (uint8_t)code;
            } else {
                int high;
                const size_t o = tern_tiled_q4_offset(cols, R, r, c, &high);
                tv[o] |= (uint8_t)(high ? code << 4 : code);
            }
        }
    }
    const uint16_t *sc = src[TERN_PLANE_SCALES];
    uint16_t *tsc = tiled[TERN_PLANE_SCALES];
    const uint8_t *z = src[TERN_PLANE_ZEROS];
    uint8_t *tz = tiled[TERN_PLANE_ZEROS];
    const uint16_t *mins = src[TERN_PLANE_ZEROS];
    uint16_t *tmins = tiled[TERN_PLANE_ZEROS];
    for (size_t r = 0; r < rows; r++) {
        for (size_t g = 0; g < ng; g++) {
            const size_t o = tern_tiled_group_index(ng, R, r, g);
            tsc[o] = sc[r * ng + g];
            if (desc->flags & TERN_TENSOR_HAS_ZERO_POINT) tz[o] = z[r * ng + g];
            if (desc->flags & TERN_TENSOR_HAS_MIN) tmins[o] = mins[r * ng + g];
        }
    }
    if (desc->sparse_m) { /* index bytes: the R rows' byte j side by side (7.4) */
        const size_t ib = cols * 2 / 8; /* M = 4: 2 bits a value, cols % 4 == 0 */
        const uint8_t *ix = src[TERN_PLANE_INDEX];
        uint8_t *tix = tiled[TERN_PLANE_INDEX];
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < ib; j++) tix[tern_tiled_nm_index_offset(ib, R, r, j)] = ix[r * ib + j];
    }
    *tiled_desc = *desc;
    tiled_desc->layout = TERN_LAYOUT_ROW_INTERLEAVED;
    tiled_desc->tile_rows = tile_rows;
}
