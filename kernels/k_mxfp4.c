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

/* Code of the nearest grid value to v = x/d (magnitudes 0..12 in doubled units). */
static uint8_t nearest_e2m1(float v) {
    float a = fabsf(v);
    /* Midpoints between 0,1,2,3,4,6,8,12 (doubled E2M1 magnitudes). */
    static const float mid[7] = { 0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f };
    uint8_t c = 0;
    while (c < 7 && a > mid[c]) c++;
    return (uint8_t)(c | (v < 0.0f && c ? 8 : 0));
}

/* Weighted error of one block for exponent e; writes its codes. */
static float block_err(const float *x, const float *w, uint8_t e, uint8_t *codes) {
    float d = e8m0_half(e), err = 0.0f;
    for (int j = 0; j < QF_QK; j++) {
        codes[j] = nearest_e2m1(x[j] / d);
        float r = x[j] - (float)kv_e2m1x2[codes[j]] * d;
        err += (w ? w[j] : 1.0f) * r * r;
    }
    return err;
}

/* Try ggml's exponent (largest value lands in [4, 8) doubled units) and its two neighbours: one below
 * clips the largest value but refines the rest, one above avoids clipping. */
static void quantize_block(const float *x, const float *w, qf_block_mxfp4 *b) {
    float amax = 0.0f;
    for (int j = 0; j < QF_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    int e0 = amax > 0.0f ? (int)floorf(log2f(amax)) - 2 + 127 : 0;
    uint8_t best_codes[QF_QK], codes[QF_QK];
    float best = INFINITY;
    b->e = 0;
    for (int e = e0 - 1; e <= e0 + 1; e++) {
        if (e < 0 || e > 254) continue; /* 255 is NaN in OCP MX */
        float err = block_err(x, w, (uint8_t)e, codes);
        if (err < best) {
            best = err;
            b->e = (uint8_t)e;
            for (int j = 0; j < QF_QK; j++) best_codes[j] = codes[j];
        }
    }
    if (best == INFINITY) /* only when every candidate was out of range: all zeros */
        for (int j = 0; j < QF_QK; j++) best_codes[j] = 0;
    for (int j = 0; j < QF_QK / 2; j++) b->qs[j] = (uint8_t)(best_codes[j] | best_codes[j + 16] << 4);
}

bool qf_quantize_mxfp4(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_mxfp4 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) quantize_block(x + i * QF_QK, imp ? imp + i * QF_QK : NULL, &b[i]);
    return true;
}

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
