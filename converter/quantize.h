/* Round-to-nearest group-wise quantisation of float weights into the Q8/Q4
 * encodings of docs/format.md (7.2). docs/quantization.md explains the
 * choices. Each group is quantised independently, so a tensor can be
 * processed a row at a time. */
#ifndef TERN_CONVERTER_QUANTIZE_H
#define TERN_CONVERTER_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/encoding.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_quant_params {
    tern_encoding encoding; /* TERN_ENC_Q8 or TERN_ENC_Q4 */
    uint32_t group_size;    /* values per scale; even for Q4 */
    int asymmetric;         /* 1: unsigned q with a zero point per group */
    int clip_search;        /* 1: also try ranges shrunk by 0.95 .. 0.70 */
} tern_quant_params;

/* Quantises one group of n values into q[n] (one unpacked value per byte: Q8
 * symmetric int8 bits, otherwise the unsigned stored value, Q4 symmetric as
 * its nibble q + 8), its F16 scale and, when asymmetric, its zero point.
 * Every q is chosen with the F16-rounded scale, so that dequantising with the
 * stored scale gives exactly the values whose error the quantiser measured.
 * Returns that sum of squared errors (in double). */
double tern_quantize_group(const tern_quant_params *p, const float *x, size_t n, uint8_t *q,
                           uint16_t *scale, uint8_t *zero);

/* The value a stored q dequantises to (as docs/format.md, float arithmetic). */
float tern_quant_dequant(const tern_quant_params *p, uint8_t q, uint16_t scale, uint8_t zero);

/* The stored code of x under a group's stored scale and zero, exactly as
 * tern_quantize_group stores its values (GPTQ quantises column by column
 * with a scale fixed earlier). */
uint8_t tern_quant_code(const tern_quant_params *p, float x, uint16_t scale, uint8_t zero);

/* Packs unpacked codes[rows * cols] (one per byte, as tern_quantize_group
 * writes them) into the values plane: Q8 a copy, Q4 two per byte per group
 * as docs/format.md 7.2 says. */
void tern_quant_pack(const tern_quant_params *p, size_t rows, size_t cols, const uint8_t *codes,
                     uint8_t *values);

/* Quantises rows x cols floats (cols % group_size == 0) into the planes of a
 * Q8/Q4 tensor: values (rows*cols bytes for Q8, half for Q4, packed as 7.2
 * says), scales (one F16 per group) and zeros (one byte per group, only when
 * asymmetric; may be NULL otherwise). `tmp` holds group_size bytes. */
void tern_quantize_rows(const tern_quant_params *p, size_t rows, size_t cols, const float *x,
                        uint8_t *values, uint16_t *scales, uint8_t *zeros, uint8_t *tmp);

#ifdef __cplusplus
}
#endif
#endif
