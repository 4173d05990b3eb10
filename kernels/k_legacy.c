/*
 * k_legacy.c — scalar reference kernels of ggml's 32-element "legacy" types (Q8_0, ...).
 * Layouts: kernels/blocks.h. Dequantization mirrors ggml's arithmetic exactly so results are
 * bit-identical; quantizers are qforge's own.
 */
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <math.h>

/* ---- Q8_0: x = d * q, q in -127..127 ------------------------------------------------------------ */

/* Round-to-nearest Q8_0 of one block: d = amax/127, q = round(x/d) (ties away from zero). */
static void q8_0_block_rtn(const float *x, qf_block_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < QF_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qf_f32_to_f16(d);
    for (int j = 0; j < QF_QK; j++) b->qs[j] = (int8_t)roundf(x[j] * id);
}

bool qf_quantize_q8_0(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) q8_0_block_rtn(x + i * QF_QK, &b[i]);
    return true;
}

void qf_dequantize_q8_0(const void *x, float *y, int64_t n) {
    const qf_block_q8_0 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)b[i].qs[j] * d;
    }
}

float qf_dot_q8_0(const void *w, const float *x, int64_t n) {
    const qf_block_q8_0 *b = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float t = 0.0f;
        for (int j = 0; j < QF_QK; j++) t += (float)b[i].qs[j] * x[i * QF_QK + j];
        s += t * qf_f16_to_f32(b[i].d);
    }
    return s;
}
