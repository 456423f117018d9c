/* Encodings: names, exact plane sizes (docs/format.md, "Encodings") and the
 * F16/BF16 conversions. Every size is computed with checked 64-bit
 * arithmetic because descriptions come from untrusted files. */
#include "formats/encoding.h"

#include <string.h>

const char *tern_encoding_name(tern_encoding enc) {
    switch (enc) {
    case TERN_ENC_F32: return "f32";
    case TERN_ENC_F16: return "f16";
    case TERN_ENC_BF16: return "bf16";
    case TERN_ENC_I32: return "i32";
    case TERN_ENC_Q8: return "q8";
    case TERN_ENC_Q4: return "q4";
    case TERN_ENC_COUNT_: break;
    }
    return "unknown";
}

int tern_encoding_is_known(uint32_t enc) {
    switch (enc) {
    case TERN_ENC_F32:
    case TERN_ENC_F16:
    case TERN_ENC_BF16:
    case TERN_ENC_I32:
    case TERN_ENC_Q8:
    case TERN_ENC_Q4: return 1;
    default: return 0;
    }
}

/* a * b into *out; 0 on overflow. */
static int tern_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

uint64_t tern_tensor_elements(const tern_tensor_desc *desc) {
    if (!desc || desc->ndim < 1 || desc->ndim > 4) return 0;
    uint64_t n = 1;
    for (uint32_t i = 0; i < desc->ndim; i++) {
        if (desc->dims[i] == 0 || !tern_mul_u64(n, desc->dims[i], &n)) return 0;
    }
    return n;
}

int tern_tensor_plane_sizes(const tern_tensor_desc *desc, uint64_t sizes[TERN_PLANE_COUNT]) {
    for (int p = 0; p < TERN_PLANE_COUNT; p++) sizes[p] = 0;
    if (!desc || !tern_encoding_is_known((uint32_t)desc->encoding)) return -1;
    if (desc->ndim < 1 || desc->ndim > 4) return -1;
    for (uint32_t i = 0; i < 4; i++) {
        if (i < desc->ndim ? desc->dims[i] == 0 : desc->dims[i] != 0) return -1;
    }
    if (desc->flags & ~TERN_TENSOR_KNOWN_FLAGS) return -1;
    /* a zero point and a min are two ways to offset a group: never both */
    if ((desc->flags & TERN_TENSOR_KNOWN_FLAGS) == TERN_TENSOR_KNOWN_FLAGS) return -1;

    /* rows: everything but the last dim; cols: the last dim. */
    uint64_t cols = desc->dims[desc->ndim - 1];
    uint64_t rows = 1;
    for (uint32_t i = 0; i + 1 < desc->ndim; i++) {
        if (!tern_mul_u64(rows, desc->dims[i], &rows)) return -1;
    }

    switch (desc->layout) {
    case TERN_LAYOUT_ROW_MAJOR:
        if (desc->tile_rows != 0) return -1;
        break;
    case TERN_LAYOUT_ROW_INTERLEAVED:
        /* Same plane sizes as row-major; only the order inside differs. */
        if (desc->ndim != 2 || desc->tile_rows == 0 || rows % desc->tile_rows != 0) return -1;
        /* 7.4: Q8/Q4 in 4-row steps, whole 32-column blocks; dense groups
         * of whole blocks, or 2:4 / 1:4 sparse whose groups cover whole
         * 32-column blocks (G * 4 / N columns) */
        if (desc->encoding != TERN_ENC_Q8 && desc->encoding != TERN_ENC_Q4) return -1;
        if (desc->tile_rows % 4 != 0 || desc->tile_rows > 256 || cols % 32 != 0) return -1;
        if (desc->sparse_m == 0 ? desc->group_size % 32 != 0
                                : desc->sparse_m != 4 || (desc->sparse_n != 1 && desc->sparse_n != 2) ||
                                      desc->group_size == 0 ||
                                      (uint64_t)desc->group_size * 4 % (32u * desc->sparse_n) != 0)
            return -1;
        break;
    default: return -1;
    }

    /* N:M sparsity keeps N of every M values along the last dim. */
    uint64_t stored_cols = cols;
    uint64_t index_size = 0;
    if (desc->sparse_m == 0) {
        if (desc->sparse_n != 0) return -1;
    } else {
        uint32_t m = desc->sparse_m, n = desc->sparse_n;
        if ((m != 4 && m != 8) || n < 1 || n >= m || cols % m != 0) return -1;
        if (desc->encoding == TERN_ENC_I32) return -1;
        stored_cols = cols / m * n;
        uint64_t bits_per_index = m == 4 ? 2 : 3;
        uint64_t row_bits;
        if (!tern_mul_u64(stored_cols, bits_per_index, &row_bits)) return -1;
        if (!tern_mul_u64(rows, (row_bits + 7) / 8, &index_size)) return -1;
    }

    uint64_t stored;
    if (!tern_mul_u64(rows, stored_cols, &stored)) return -1;

    uint64_t values = 0, scales = 0, zeros = 0;
    switch (desc->encoding) {
    case TERN_ENC_F32:
    case TERN_ENC_I32:
    case TERN_ENC_F16:
    case TERN_ENC_BF16: {
        if (desc->group_size != 0 || desc->flags != 0) return -1;
        uint64_t width = (desc->encoding == TERN_ENC_F32 || desc->encoding == TERN_ENC_I32) ? 4 : 2;
        if (!tern_mul_u64(stored, width, &values)) return -1;
        break;
    }
    case TERN_ENC_Q8:
    case TERN_ENC_Q4: {
        uint64_t g = desc->group_size;
        if (g == 0 || stored_cols % g != 0) return -1;
        if (desc->encoding == TERN_ENC_Q4 && g % 2 != 0) return -1;
        uint64_t groups;
        if (!tern_mul_u64(rows, stored_cols / g, &groups)) return -1;
        values = desc->encoding == TERN_ENC_Q8 ? stored : stored / 2;
        if (!tern_mul_u64(groups, 2, &scales)) return -1;
        if (desc->flags & TERN_TENSOR_HAS_ZERO_POINT) zeros = groups;
        if (desc->flags & TERN_TENSOR_HAS_MIN) zeros = scales; /* one F16 per group */
        break;
    }
    default: return -1;
    }
    sizes[TERN_PLANE_VALUES] = values;
    sizes[TERN_PLANE_SCALES] = scales;
    sizes[TERN_PLANE_ZEROS] = zeros;
    sizes[TERN_PLANE_INDEX] = index_size;
    return 0;
}

static uint32_t tern_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float tern_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float tern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return tern_bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, NaN */
    if (exp == 0) {
        if (mant == 0) return tern_bits_f32(sign);
        /* Subnormal: normalize so the leading 1 lands on bit 10. */
        int e = 1;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        mant &= 0x3ffu;
        return tern_bits_f32(sign | ((uint32_t)(e + 112) << 23) | (mant << 13));
    }
    return tern_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t tern_f32_to_f16(float f) {
    uint32_t x = tern_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        /* Keep the top payload bits and force the quiet bit so a NaN stays a NaN. */
        if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (x >= 0x38800000u) {                                   /* normal half */
        uint32_t r = x - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (x <= 0x33000000u) return sign; /* <= 2^-25 (a tie) rounds to zero */
    /* Subnormal half: value / 2^-24, rounded to nearest even. */
    uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - (x >> 23); /* 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

float tern_bf16_to_f32(uint16_t h) {
    return tern_bits_f32((uint32_t)h << 16);
}

uint16_t tern_f32_to_bf16(float f) {
    uint32_t x = tern_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
