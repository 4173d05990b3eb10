/*
 * k_float.c — scalar kernels of the plain float storage types F32, F16, BF16.
 * "Quantizing" is conversion (RNE, fpconv.c); imp is irrelevant to them and ignored.
 */
#include "kernels/fpconv.h"
#include "kernels/fprow.h"
#include "kernels/kern.h"

#include <math.h>
#include <string.h>

/* Branch-free over chunks of 64 (an integer OR the compiler vectorises), exiting per chunk: every
 * quantizer calls this on its whole row first. */
bool qf_all_finite(const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint32_t bad = 0;
        for (int k = 0; k < 64; k++) {
            uint32_t u;
            memcpy(&u, x + i + k, sizeof u);
            bad |= (u & 0x7F800000u) == 0x7F800000u;
        }
        if (bad) return false;
    }
    for (; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

bool qf_quantize_f32(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    memcpy(y, x, (size_t)n * sizeof(float));
    return true;
}

void qf_dequantize_f32(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

float qf_dot_f32(const void *w, const float *x, int64_t n) {
    const float *a = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * x[i];
    return s;
}

bool qf_quantize_f16(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_f32_to_f16_row(x, y, n); /* identical to the per-element conversion, SIMD where available */
    return true;
}

void qf_dequantize_f16(const void *x, float *y, int64_t n) {
    qf_f16_to_f32_row(x, y, n);
}

float qf_dot_f16(const void *w, const float *x, int64_t n) {
    const uint16_t *h = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += qf_f16_to_f32(h[i]) * x[i];
    return s;
}

bool qf_quantize_bf16(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_f32_to_bf16_row(x, y, n);
    return true;
}

void qf_dequantize_bf16(const void *x, float *y, int64_t n) {
    qf_bf16_to_f32_row(x, y, n);
}

float qf_dot_bf16(const void *w, const float *x, int64_t n) {
    const uint16_t *h = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += qf_bf16_to_f32(h[i]) * x[i];
    return s;
}
