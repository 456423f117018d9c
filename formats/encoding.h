/* Tensor value encodings and layouts: the vocabulary shared by the .tern
 * format, the converter and the kernels. docs/format.md specifies each byte. */
#ifndef TERN_FORMATS_ENCODING_H
#define TERN_FORMATS_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the values of a tensor are stored. The numbers are on disk: never reuse one. */
typedef enum tern_encoding {
    TERN_ENC_F32 = 0,
    TERN_ENC_F16 = 1,
    TERN_ENC_BF16 = 2,
    TERN_ENC_I32 = 3,  /* integer side data (not a weight) */
    TERN_ENC_Q8 = 16,  /* group-wise INT8: int8 values (uint8 with a zero point), F16 scales */
    TERN_ENC_Q4 = 17,  /* group-wise INT4: packed nibbles, F16 scales */
    TERN_ENC_COUNT_ = 18,
} tern_encoding;

/* How a 2-D weight's elements are ordered in its planes. */
typedef enum tern_layout {
    TERN_LAYOUT_ROW_MAJOR = 0,        /* row r (output feature) after row r-1 */
    TERN_LAYOUT_ROW_INTERLEAVED = 1,  /* Q8/Q4: tiles of tile_rows rows, 4-byte column chunks */
} tern_layout;

/* ROW_INTERLEAVED Q8/Q4 (docs/format.md 7.4), the order the integer kernels
 * read: a tile of R rows, then 32-column blocks, then chunks of 4 columns
 * (Q8) or 8 columns (Q4: low nibbles the first 4, high nibbles the next 4),
 * and in a chunk 4 bytes per row, rows in order. Scales (and zero points) go
 * per tile, per group, a row each. */
static inline size_t tern_tiled_q8_offset(size_t cols, size_t R, size_t r, size_t c) {
    return (r / R) * R * cols + (c / 32) * 32 * R + (c % 32 / 4) * 4 * R + (r % R) * 4 + c % 4;
}
/* Q4: the byte of value (r, c); *high is 1 when it is the byte's high nibble. */
static inline size_t tern_tiled_q4_offset(size_t cols, size_t R, size_t r, size_t c, int *high) {
    *high = c % 8 >= 4;
    return (r / R) * R * (cols / 2) + (c / 32) * 16 * R + (c % 32 / 8) * 4 * R + (r % R) * 4 + c % 4;
}
static inline size_t tern_tiled_group_index(size_t n_groups, size_t R, size_t r, size_t g) {
    return (r / R) * R * n_groups + g * R + r % R;
}

/* ROW_INTERLEAVED N:M sparse Q8/Q4 with M = 4 (docs/format.md 7.3, 7.4): the
 * stored values are tiled as a dense matrix of stored_cols = cols / 4 * N
 * columns would be (tern_tiled_q8_offset / tern_tiled_q4_offset with
 * cols = stored_cols), scales and zeros as dense tiles over stored groups,
 * and index byte j of row r (its row-major bit stream's byte j: the 2-bit
 * fields of stored values 4j .. 4j+3) sits at this offset, so that the R
 * rows' index bytes of one 4-value chunk are R consecutive bytes. */
static inline size_t tern_tiled_nm_index_offset(size_t index_row_bytes, size_t R, size_t r,
                                                size_t j) {
    return (r / R) * R * index_row_bytes + j * R + r % R;
}

/* Tensor flags. */
#define TERN_TENSOR_HAS_ZERO_POINT 0x1u /* Q8/Q4: asymmetric, a zeros plane is present */
#define TERN_TENSOR_HAS_MIN 0x2u        /* Q8/Q4: w = scale * q + min, zeros plane holds F16 mins */
#define TERN_TENSOR_KNOWN_FLAGS (TERN_TENSOR_HAS_ZERO_POINT | TERN_TENSOR_HAS_MIN)

/* A tensor's storage is up to four planes, each a 64-byte-aligned byte range. */
enum {
    TERN_PLANE_VALUES = 0, /* the kept values (all values when dense) */
    TERN_PLANE_SCALES = 1, /* F16 scales, one per group (Q8/Q4) */
    TERN_PLANE_ZEROS = 2,  /* uint8 zero points (HAS_ZERO_POINT) or F16 mins (HAS_MIN), one per group */
    TERN_PLANE_INDEX = 3,  /* N:M sparse position metadata */
    TERN_PLANE_COUNT = 4,
};

/* Everything needed to interpret a tensor's bytes, independent of where they live. */
typedef struct tern_tensor_desc {
    tern_encoding encoding;
    tern_layout layout;
    uint32_t ndim;        /* 1..4 */
    uint64_t dims[4];     /* dims[0] outermost (row-major / NumPy order) */
    uint32_t group_size;  /* Q8/Q4: elements per scale along the last dim */
    uint32_t tile_rows;   /* ROW_INTERLEAVED: rows per tile, else 0 */
    uint8_t sparse_n;     /* N:M sparsity: keep N of every M along the last dim */
    uint8_t sparse_m;     /* 0: dense */
    uint16_t flags;       /* TERN_TENSOR_* */
} tern_tensor_desc;

const char *tern_encoding_name(tern_encoding enc);
/* 1 for encodings a file may carry (known numbers), else 0. */
int tern_encoding_is_known(uint32_t enc);

/* The exact byte size each plane of a tensor must have, from its description.
 * Returns 0 and fills sizes[TERN_PLANE_COUNT] (0 for absent planes), or -1 when
 * the description is inconsistent (bad group size, N:M, dims, overflow). */
int tern_tensor_plane_sizes(const tern_tensor_desc *desc, uint64_t sizes[TERN_PLANE_COUNT]);

/* Number of elements, or 0 on overflow / no dims. */
uint64_t tern_tensor_elements(const tern_tensor_desc *desc);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float tern_f16_to_f32(uint16_t h);
uint16_t tern_f32_to_f16(float f);
float tern_bf16_to_f32(uint16_t h);
uint16_t tern_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif
