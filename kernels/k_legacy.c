/*
 * k_legacy.c — scalar reference kernels of ggml's 32-element types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
 *
 * Layouts: kernels/blocks.h. Dequantization repeats ggml's arithmetic operation for operation (int code
 * times F16 scale, plus F16 min), so the floats are bit-identical. Quantizers are searches (fit.h) seeded
 * with ggml's round-to-nearest choice, so no block is ever worse than ggml's plain quantization. Q8_0
 * without importance weights stays plain round-to-nearest: it is already within a hair of optimal, it
 * is byte-identical to llama-quantize (handy for golden files), and it vectorises.
 */
#include "kernels/fit.h"
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <math.h>
#include <string.h>

/* The value of largest magnitude, keeping its sign (ggml's symmetric seeds map it to the negative end). */
static float signed_absmax(const float *x, int n) {
    float m = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > fabsf(m)) m = x[j];
    return m;
}

static const float *block_w(const float *imp, int64_t i) { return imp ? imp + i * QF_QK : NULL; }

/* Codes of a symmetric block for the stored scale s (as F16 bits), shifted to unsigned by `bias`. */
static void codes_sym(const float *x, float s, int qmin, int qmax, int bias, uint8_t *q) {
    for (int j = 0; j < QF_QK; j++) q[j] = (uint8_t)((s != 0.0f ? qf_qnear(x[j] / s, qmin, qmax) : 0) + bias);
}

static void codes_affine(const float *x, float s, float b, int qmax, uint8_t *q) {
    for (int j = 0; j < QF_QK; j++) q[j] = (uint8_t)(s != 0.0f ? qf_qnear((x[j] - b) / s, 0, qmax) : 0);
}

/* Low nibbles hold elements 0..15, high nibbles 16..31 (ggml's order). */
static void pack_nibbles(const uint8_t *q, uint8_t *qs) {
    for (int j = 0; j < QF_QK / 2; j++) qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}

/* Bit j of the little-endian word = bit 4 of element j. */
static void pack_high_bits(const uint8_t *q, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < QF_QK; j++) h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

static uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Unsigned code of element j (0..31) of a block with nibbles qs and optional high-bit word qh. */
static int code_at(const uint8_t *qs, uint32_t qh, int j) {
    int lo = j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
    return lo | (int)((qh >> j) & 1) << 4;
}

/* ---- Q4_0 / Q5_0: x = d * (q - 2^(bits-1)) ------------------------------------------------------------ */

/* Fit one symmetric block (q in [-half, half-1]) and return its F16 scale; codes biased by half. */
static uint16_t fit_sym_block(const float *x, const float *w, int half, uint8_t *q) {
    float seed = signed_absmax(x, QF_QK) / (float)-half; /* ggml's round-to-nearest scale */
    float s = qf_fit_sym(x, w, QF_QK, -half, half - 1, true, seed);
    codes_sym(x, s, -half, half - 1, half, q);
    return qf_f32_to_f16(s);
}

bool qf_quantize_q4_0(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q4_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        uint8_t q[QF_QK];
        b[i].d = fit_sym_block(x + i * QF_QK, block_w(imp, i), 8, q);
        pack_nibbles(q, b[i].qs);
    }
    return true;
}

void qf_dequantize_q4_0(const void *x, float *y, int64_t n) {
    const qf_block_q4_0 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)(code_at(b[i].qs, 0, j) - 8) * d;
    }
}

bool qf_quantize_q5_0(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q5_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        uint8_t q[QF_QK];
        b[i].d = fit_sym_block(x + i * QF_QK, block_w(imp, i), 16, q);
        pack_nibbles(q, b[i].qs);
        pack_high_bits(q, b[i].qh);
    }
    return true;
}

void qf_dequantize_q5_0(const void *x, float *y, int64_t n) {
    const qf_block_q5_0 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)(code_at(b[i].qs, qh, j) - 16) * d;
    }
}

/* ---- Q4_1 / Q5_1: x = d * q + m -------------------------------------------------------------------------- */

static void fit_affine_block(const float *x, const float *w, int qmax, uint16_t *d, uint16_t *m, uint8_t *q) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QF_QK; j++) { lo = fminf(lo, x[j]); hi = fmaxf(hi, x[j]); }
    float s, b;
    qf_fit_affine(x, w, QF_QK, qmax, true, false, (hi - lo) / (float)qmax, lo, &s, &b);
    codes_affine(x, s, b, qmax, q);
    *d = qf_f32_to_f16(s);
    *m = qf_f32_to_f16(b);
}

bool qf_quantize_q4_1(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q4_1 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        uint8_t q[QF_QK];
        fit_affine_block(x + i * QF_QK, block_w(imp, i), 15, &b[i].d, &b[i].m, q);
        pack_nibbles(q, b[i].qs);
    }
    return true;
}

void qf_dequantize_q4_1(const void *x, float *y, int64_t n) {
    const qf_block_q4_1 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d), m = qf_f16_to_f32(b[i].m);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)code_at(b[i].qs, 0, j) * d + m;
    }
}

bool qf_quantize_q5_1(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q5_1 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        uint8_t q[QF_QK];
        fit_affine_block(x + i * QF_QK, block_w(imp, i), 31, &b[i].d, &b[i].m, q);
        pack_nibbles(q, b[i].qs);
        pack_high_bits(q, b[i].qh);
    }
    return true;
}

void qf_dequantize_q5_1(const void *x, float *y, int64_t n) {
    const qf_block_q5_1 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d), m = qf_f16_to_f32(b[i].m);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)code_at(b[i].qs, qh, j) * d + m;
    }
}

/* ---- Q8_0: x = d * q, q in -127..127 ------------------------------------------------------------------ */

/* Round-to-nearest Q8_0 of one block: d = amax/127, q = round(x/d) (ties away from zero), as ggml. */
static void q8_0_block_rtn(const float *x, qf_block_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < QF_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qf_f32_to_f16(d);
    for (int j = 0; j < QF_QK; j++) b->qs[j] = (int8_t)roundf(x[j] * id);
}

/* Weighted Q8_0: search the scale; -128 stays unused because int8 sign tricks in dot kernels
 * (ggml's included) cannot negate it. */
static void q8_0_block_fit(const float *x, const float *w, qf_block_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < QF_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float s = qf_fit_sym(x, w, QF_QK, -127, 127, true, amax / 127.0f);
    b->d = qf_f32_to_f16(s);
    for (int j = 0; j < QF_QK; j++) b->qs[j] = (int8_t)(s != 0.0f ? qf_qnear(x[j] / s, -127, 127) : 0);
}

bool qf_quantize_q8_0(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        if (imp) q8_0_block_fit(x + i * QF_QK, imp + i * QF_QK, &b[i]);
        else q8_0_block_rtn(x + i * QF_QK, &b[i]);
    }
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

/* The other legacy types' reference dot: dequantize one block, multiply, accumulate per block. */
#define DOT_VIA_DEQUANT(T, BLOCK)                                                   \
    float qf_dot_##T(const void *w, const float *x, int64_t n) {                    \
        const BLOCK *b = w;                                                        \
        float s = 0.0f, t[QF_QK];                                                  \
        for (int64_t i = 0; i < n / QF_QK; i++) {                                  \
            qf_dequantize_##T(&b[i], t, QF_QK);                                    \
            float a = 0.0f;                                                        \
            for (int j = 0; j < QF_QK; j++) a += t[j] * x[i * QF_QK + j];          \
            s += a;                                                                \
        }                                                                          \
        return s;                                                                  \
    }
DOT_VIA_DEQUANT(q4_0, qf_block_q4_0)
DOT_VIA_DEQUANT(q4_1, qf_block_q4_1)
DOT_VIA_DEQUANT(q5_0, qf_block_q5_0)
DOT_VIA_DEQUANT(q5_1, qf_block_q5_1)
