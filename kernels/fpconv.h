/*
 * fpconv.h — scalar conversions between F32 and the small float formats qforge reads and writes.
 *
 * F16  : IEEE 754 binary16.
 * BF16 : the top 16 bits of an F32.
 * F8 E4M3 (OCP "E4M3FN"): bias 7, no infinities, 0x7F/0xFF are NaN, max finite 448.
 * F8 E5M2 (OCP): bias 15, IEEE-like (inf and NaN exist), max finite 57344.
 * All F32 -> narrow conversions round to nearest, ties to even. The F8 encoders saturate finite values
 * beyond the max to +-max (the OCP "saturating" mode); NaN stays NaN.
 */
#ifndef QF_FPCONV_H
#define QF_FPCONV_H

#include <stdint.h>

float    qf_f16_to_f32(uint16_t h);
uint16_t qf_f32_to_f16(float f);
float    qf_bf16_to_f32(uint16_t h);
uint16_t qf_f32_to_bf16(float f);
float    qf_e4m3_to_f32(uint8_t v);
uint8_t  qf_f32_to_e4m3(float f);
float    qf_e5m2_to_f32(uint8_t v);
uint8_t  qf_f32_to_e5m2(float f);

#define QF_F16_MAX 65504.0f
#define QF_E4M3_MAX 448.0f
#define QF_E5M2_MAX 57344.0f

#endif
