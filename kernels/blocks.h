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

/* ---- i-quants (ggml's IQ types): grids in iq_grids.h; field meanings as ggml-common.h ---- */

/* IQ4_NL: x = d * v[q], v = the 16 non-linear values; nibble order as Q4_0. */
typedef struct { uint16_t d; uint8_t qs[QF_QK / 2]; } qf_block_iq4_nl;
_Static_assert(sizeof(qf_block_iq4_nl) == 18, "iq4_nl block size");

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales ls (low nibbles in scales_l, high 2 bits in scales_h);
 * x = d * (ls - 32) * v[q]; nibble order within each sub-block as Q4_0. */
typedef struct { uint16_t d, scales_h; uint8_t scales_l[QF_QK_K / 64]; uint8_t qs[QF_QK_K / 2]; } qf_block_iq4_xs;
_Static_assert(sizeof(qf_block_iq4_xs) == 136, "iq4_xs block size");

/* IQ3_XXS: per 32: 8 grid indices (4 elements each) in qs, then one u32 of 4 x 7 sign bits and a 4-bit
 * scale l in the top bits (in the second quarter of qs); x = d * (0.5 + l) * 0.5 * grid * sign. */
typedef struct { uint16_t d; uint8_t qs[3 * QF_QK_K / 8]; } qf_block_iq3_xxs;
_Static_assert(sizeof(qf_block_iq3_xxs) == 98, "iq3_xxs block size");

/* IQ3_S: 9-bit grid indices (low byte in qs, high bit in qh), 8 free sign bits per 8, a 4-bit scale per
 * 32; x = d * (1 + 2 l) * grid * sign. */
typedef struct {
    uint16_t d;
    uint8_t qs[QF_QK_K / 4], qh[QF_QK_K / 32], signs[QF_QK_K / 8], scales[QF_QK_K / 64];
} qf_block_iq3_s;
_Static_assert(sizeof(qf_block_iq3_s) == 110, "iq3_s block size");

/* IQ2_XXS: per 32: two u32, the first four 8-bit grid indices (8 elements each), the second 4 x 7 sign
 * bits and a 4-bit scale l on top; x = d * (0.5 + l) * 0.25 * grid * sign. */
typedef struct { uint16_t d; uint16_t qs[QF_QK_K / 8]; } qf_block_iq2_xxs;
_Static_assert(sizeof(qf_block_iq2_xxs) == 66, "iq2_xxs block size");

/* IQ2_XS: one u16 per 8 (9-bit grid index, 7 sign bits), a 4-bit scale per 16. */
typedef struct { uint16_t d; uint16_t qs[QF_QK_K / 8]; uint8_t scales[QF_QK_K / 32]; } qf_block_iq2_xs;
_Static_assert(sizeof(qf_block_iq2_xs) == 74, "iq2_xs block size");

/* IQ2_S: 10-bit grid indices (low byte in qs[0..31], 2 high bits in qh), 8 free sign bits per 8 in
 * qs[32..63], a 4-bit scale per 16. */
typedef struct { uint16_t d; uint8_t qs[QF_QK_K / 4], qh[QF_QK_K / 32], scales[QF_QK_K / 32]; } qf_block_iq2_s;
_Static_assert(sizeof(qf_block_iq2_s) == 82, "iq2_s block size");

/* IQ1_S: 11-bit grid indices (low byte in qs, 3 high bits per 8 in qh's low 12 bits), per 32 a 3-bit
 * scale l (qh bits 12-14) and the sign of the offset (bit 15); x = d * (2 l + 1) * (grid +- delta). */
typedef struct { uint16_t d; uint8_t qs[QF_QK_K / 8]; uint16_t qh[QF_QK_K / 32]; } qf_block_iq1_s;
_Static_assert(sizeof(qf_block_iq1_s) == 50, "iq1_s block size");

/* IQ1_M: 11-bit grid indices (3 high bits and the offset sign per 8 in qh nibbles), 3-bit scales per 16
 * in scales' u16 words, whose top nibbles together hold the F16 super-scale. */
typedef struct { uint8_t qs[QF_QK_K / 8], qh[QF_QK_K / 16], scales[QF_QK_K / 32]; } qf_block_iq1_m;
_Static_assert(sizeof(qf_block_iq1_m) == 56, "iq1_m block size");

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
