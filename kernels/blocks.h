/*
 * blocks.h — byte layouts of the quantized blocks qforge reads and writes (internal to kernels/).
 *
 * Every ggml type here is laid out exactly as ggml's ggml-common.h lays it out, field by field, so
 * GGUF files interoperate; the _Static_asserts pin each size to the byte count in the traits table.
 * Halves are stored as raw IEEE binary16 bits (uint16_t), little-endian like everything in GGUF.
 * Extension types (QF_QTYPE_EXT_BASE and up) are specified in docs/quant-types.md.
 */
#ifndef QF_KERNELS_BLOCKS_H
#define QF_KERNELS_BLOCKS_H

#include <stdint.h>

#define QF_QK 32      /* legacy / MXFP4 / FP8 block */
#define QF_QK_K 256   /* K-quant super-block */
#define QF_K_SCALE_SIZE 12

/* Q4_0: x = d * (q - 8), q in 0..15; qs[j] low nibble = element j, high nibble = element j+16. */
typedef struct { uint16_t d; uint8_t qs[QF_QK / 2]; } qf_block_q4_0;
_Static_assert(sizeof(qf_block_q4_0) == 18, "q4_0 block size");

/* Q4_1: x = d * q + m, q in 0..15; nibble order as Q4_0. */
typedef struct { uint16_t d, m; uint8_t qs[QF_QK / 2]; } qf_block_q4_1;
_Static_assert(sizeof(qf_block_q4_1) == 20, "q4_1 block size");

/* Q5_0: x = d * (q - 16), q = nibble | (bit j of qh) << 4; qh is a little-endian uint32. */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QF_QK / 2]; } qf_block_q5_0;
_Static_assert(sizeof(qf_block_q5_0) == 22, "q5_0 block size");

/* Q5_1: x = d * q + m, q as Q5_0. */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QF_QK / 2]; } qf_block_q5_1;
_Static_assert(sizeof(qf_block_q5_1) == 24, "q5_1 block size");

/* Q8_0: x = d * q, q in -127..127. */
typedef struct { uint16_t d; int8_t qs[QF_QK]; } qf_block_q8_0;
_Static_assert(sizeof(qf_block_q8_0) == 34, "q8_0 block size");

/* Q8_1 (ggml uses it for activations only): d, s = d * sum(q), qs. Listed for the size assert. */
typedef struct { uint16_t d, s; int8_t qs[QF_QK]; } qf_block_q8_1;
_Static_assert(sizeof(qf_block_q8_1) == 36, "q8_1 block size");

/* MXFP4: e = E8M0 shared exponent; nibbles are E2M1 codes, nibble order as Q4_0. */
typedef struct { uint8_t e; uint8_t qs[QF_QK / 2]; } qf_block_mxfp4;
_Static_assert(sizeof(qf_block_mxfp4) == 17, "mxfp4 block size");

/* Q2_K: 16 sub-blocks of 16; scales[i] = scale nibble | min nibble << 4; x = d*sc*q - dmin*m. */
typedef struct { uint8_t scales[QF_QK_K / 16]; uint8_t qs[QF_QK_K / 4]; uint16_t d, dmin; } qf_block_q2_K;
_Static_assert(sizeof(qf_block_q2_K) == 84, "q2_K block size");

/* Q3_K: hmask = high bits, qs = low 2 bits, 16 six-bit scales packed in 12 bytes; x = d*(sc-32)*(q-4). */
typedef struct { uint8_t hmask[QF_QK_K / 8]; uint8_t qs[QF_QK_K / 4]; uint8_t scales[12]; uint16_t d; } qf_block_q3_K;
_Static_assert(sizeof(qf_block_q3_K) == 110, "q3_K block size");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes; x = d*sc*q - dmin*m. */
typedef struct { uint16_t d, dmin; uint8_t scales[QF_K_SCALE_SIZE]; uint8_t qs[QF_QK_K / 2]; } qf_block_q4_K;
_Static_assert(sizeof(qf_block_q4_K) == 144, "q4_K block size");

/* Q5_K: as Q4_K plus one high bit per element in qh. */
typedef struct { uint16_t d, dmin; uint8_t scales[QF_K_SCALE_SIZE]; uint8_t qh[QF_QK_K / 8]; uint8_t qs[QF_QK_K / 2]; } qf_block_q5_K;
_Static_assert(sizeof(qf_block_q5_K) == 176, "q5_K block size");

/* Q6_K: ql low 4 bits, qh high 2 bits, 16 int8 scales; x = d * sc * (q - 32). */
typedef struct { uint8_t ql[QF_QK_K / 2]; uint8_t qh[QF_QK_K / 4]; int8_t scales[QF_QK_K / 16]; uint16_t d; } qf_block_q6_K;
_Static_assert(sizeof(qf_block_q6_K) == 210, "q6_K block size");

/* Q8_K (activations in ggml): float d, 256 int8, 16 int16 group sums. Listed for the size assert. */
typedef struct { float d; int8_t qs[QF_QK_K]; int16_t bsums[QF_QK_K / 16]; } qf_block_q8_K;
_Static_assert(sizeof(qf_block_q8_K) == 292, "q8_K block size");

/* ---- qforge extension types (docs/quant-types.md) ---- */

/* F8 E4M3 / E5M2 with one E8M0 (power-of-two) scale per 32 elements: x = 2^(e-127) * fp8(q). */
typedef struct { uint8_t e; uint8_t qs[QF_QK]; } qf_block_fp8_b32;
_Static_assert(sizeof(qf_block_fp8_b32) == 33, "fp8 b32 block size");

/* E4M3 with one F32 scale per 128 elements: x = d * e4m3(q). The block is an e4m3_row row of 128 (scale in
 * front), and 128 is DeepSeek-V3's FP8 block width: a row of its 128x128-block weights stores exactly. */
#define QF_QK_B128 128
typedef struct { float d; uint8_t qs[QF_QK_B128]; } qf_block_e4m3_b128;
_Static_assert(sizeof(qf_block_e4m3_b128) == 132, "e4m3 b128 block size");

#endif
