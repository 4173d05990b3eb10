/*
 * fprow.h — whole-row conversions between F32 and F16 / BF16 / E4M3, for converters that move tensors
 * element by element (formats/, convert/). Each gives exactly the results of calling the scalar
 * fpconv.h function on every element (NaN payloads and signs included); the SIMD variants (F16C on AVX2
 * machines) are chosen at run time like the kernels (kernels/cpu.h, QF_ISA). n may be any count;
 * source and destination must not overlap.
 */
#ifndef QF_KERNELS_FPROW_H
#define QF_KERNELS_FPROW_H

#include "kernels/cpu.h"

#include <stdint.h>

void qf_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void qf_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void qf_e4m3_to_f32_row(const uint8_t *x, float *y, int64_t n);
void qf_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);  /* RNE, as qf_f32_to_f16 */
void qf_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n); /* RNE, as qf_f32_to_bf16 */

/* The row functions of one ISA (for tests and benchmarks), or NULL if this CPU cannot run it. */
typedef struct qf_fprow {
    void (*f16_to_f32)(const uint16_t *x, float *y, int64_t n);
    void (*bf16_to_f32)(const uint16_t *x, float *y, int64_t n);
    void (*e4m3_to_f32)(const uint8_t *x, float *y, int64_t n);
    void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n);
    void (*f32_to_bf16)(const float *x, uint16_t *y, int64_t n);
} qf_fprow;
const qf_fprow *qf_fprow_isa(qf_isa isa);

#endif
