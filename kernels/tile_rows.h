/* What every 16-row tile kernel (dense and sparse, x86 and ARM) does around
 * its arithmetic: walk the tiles that rows [r0, r1) touch with the tokens in
 * runs of a compile-time count, and store a tile's sums to the rows the
 * caller owns (threads split rows anywhere, tiles only at multiples of R). */
#ifndef TERN_KERNELS_TILE_ROWS_H
#define TERN_KERNELS_TILE_ROWS_H

#include <stddef.h>

#include "formats/encoding.h"
#include "kernels/kernels.h"

/* Calls TILE(mt, tr, i0) for every tile tr (R rows) overlapping [r0, r1) and
 * the tokens i0 .. i0+mt-1 of m, in runs of MT (at most 8) and then one run
 * of the rest: mt is a constant at each call, so a kernel inlined there keeps
 * its accumulators in registers. */
#define TERN_TILE_LOOP(R, MT, m, r0, r1, TILE)                                                     \
    for (size_t tile_tr_ = (r0) - (r0) % (R); tile_tr_ < (r1); tile_tr_ += (R)) {                 \
        size_t tile_i0_ = 0;                                                                      \
        for (; tile_i0_ + (MT) <= (m); tile_i0_ += (MT)) TILE((MT), tile_tr_, tile_i0_);          \
        switch ((m) - tile_i0_) {                                                                 \
        case 7: if ((MT) > 7) TILE(7, tile_tr_, tile_i0_); break;                                 \
        case 6: if ((MT) > 6) TILE(6, tile_tr_, tile_i0_); break;                                 \
        case 5: if ((MT) > 5) TILE(5, tile_tr_, tile_i0_); break;                                 \
        case 4: if ((MT) > 4) TILE(4, tile_tr_, tile_i0_); break;                                 \
        case 3: if ((MT) > 3) TILE(3, tile_tr_, tile_i0_); break;                                 \
        case 2: if ((MT) > 2) TILE(2, tile_tr_, tile_i0_); break;                                 \
        case 1: TILE(1, tile_tr_, tile_i0_); break;                                               \
        default: break;                                                                           \
        }                                                                                         \
    }

/* y[r] = out[r - tr] (+ bias[r]) for the rows r of tile tr..tr+R-1 inside [r0, r1). */
static inline void tern_tile_store_rows(const float *out, size_t R, size_t tr, size_t r0, size_t r1,
                                        const float *bias, float *y) {
    for (size_t j = 0; j < R; j++) {
        const size_t r = tr + j;
        if (r < r0 || r >= r1) continue;
        y[r] = bias ? out[j] + bias[r] : out[j];
    }
}

/* 1 when w is a sparse matrix in R-row tiles of the kind the SIMD sparse tile
 * kernels run (2:4 or 1:4, Q8 or Q4, symmetric or zero points, every
 * 32-column activation block inside one weight group); else the ref does. */
static inline int tern_nm_tiles_run(const tern_weight *w, size_t R) {
    return w->layout == TERN_LAYOUT_ROW_INTERLEAVED && w->tile_rows == R && w->sparse_m == 4 &&
           (w->sparse_n == 1 || w->sparse_n == 2) &&
           (w->encoding == TERN_ENC_Q8 || w->encoding == TERN_ENC_Q4) &&
           (w->flags & ~TERN_TENSOR_HAS_ZERO_POINT) == 0 && w->cols % 32 == 0 && w->group_size != 0 &&
           (size_t)w->group_size * 4 % (32u * w->sparse_n) == 0;
}

#endif
