/*
 * k_mxfp4.c — scalar reference kernels of MXFP4 (OCP MX: E2M1 elements, one E8M0 exponent per 32).
 *
 * Like ggml, elements are held as twice their E2M1 value (integers 0, ±1, ±2, ±3, ±4, ±6, ±8, ±12) and
 * the stored exponent e is applied as 2^(e-128), i.e. half the OCP scale 2^(e-127); the product is the
 * same and the arithmetic matches ggml's dequantization bit for bit.
 */
#include "kernels/kern.h"

#include <math.h>

static const int8_t kv_e2m1x2[16] = { 0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12 };

/* 2^(e-128) for every byte, subnormals included (e = 0, 1), as ggml computes it. */
static float e8m0_half(uint8_t e) { return ldexpf(1.0f, (int)e - 128); }

/* The quantizer (ggml's exponent and its neighbours, nearest E2M1 per element, least weighted error) is
 * in quant_body.h, compiled once scalar (k_quant.c, the reference bytes) and once for AVX2. */

void qf_dequantize_mxfp4(const void *x, float *y, int64_t n) {
    const qf_block_mxfp4 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = e8m0_half(b[i].e);
        for (int j = 0; j < QF_QK / 2; j++) {
            y[i * QF_QK + j] = (float)kv_e2m1x2[b[i].qs[j] & 0xF] * d;
            y[i * QF_QK + j + 16] = (float)kv_e2m1x2[b[i].qs[j] >> 4] * d;
        }
    }
}

float qf_dot_mxfp4(const void *w, const float *x, int64_t n) {
    const qf_block_mxfp4 *b = w;
    float s = 0.0f, t[QF_QK];
    for (int64_t i = 0; i < n / QF_QK; i++) {
        qf_dequantize_mxfp4(&b[i], t, QF_QK);
        float a = 0.0f;
        for (int j = 0; j < QF_QK; j++) a += t[j] * x[i * QF_QK + j];
        s += a;
    }
    return s;
}
