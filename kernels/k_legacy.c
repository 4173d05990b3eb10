/*
 * k_legacy.c — scalar reference kernels of ggml's 32-element types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
 *
 * Layouts: kernels/blocks.h. Dequantization repeats ggml's arithmetic operation for operation (int code
 * times F16 scale, plus F16 min), so the floats are bit-identical. The quantizers of Q4_0..Q5_1 and
 * weighted Q8_0 are in quant_body.h (seeded with ggml's round-to-nearest block, so no block is ever
 * worse than ggml's plain quantization). Q8_0 without importance weights stays plain round-to-nearest
 * here: it is already within a hair of optimal, it is byte-identical to llama-quantize (handy for
 * golden files), and simd_avx2.c vectorises it.
 */
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <math.h>

static uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Unsigned code of element j (0..31) of a block with nibbles qs and optional high-bit word qh. */
static int code_at(const uint8_t *qs, uint32_t qh, int j) {
    int lo = j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
    return lo | (int)((qh >> j) & 1) << 4;
}

/* ---- Q4_0 / Q5_0: x = d * (q - 2^(bits-1)) ------------------------------------------------------------ */

void qf_dequantize_q4_0(const void *x, float *y, int64_t n) {
    const qf_block_q4_0 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)(code_at(b[i].qs, 0, j) - 8) * d;
    }
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

void qf_dequantize_q4_1(const void *x, float *y, int64_t n) {
    const qf_block_q4_1 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float d = qf_f16_to_f32(b[i].d), m = qf_f16_to_f32(b[i].m);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = (float)code_at(b[i].qs, 0, j) * d + m;
    }
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

bool qf_quantize_q8_0(const float *x, void *y, int64_t n, const float *imp) {
    if (imp) return qf_quantize_q8_0_w(x, y, n, imp); /* the weighted search (quant_body.h) */
    if (!qf_all_finite(x, n)) return false;
    qf_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        q8_0_block_rtn(x + i * QF_QK, &b[i]);
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
