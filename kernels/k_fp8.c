/*
 * k_fp8.c — scalar reference kernels of qforge's FP8 extension types (docs/quant-types.md).
 *
 *   e4m3_b32 / e5m2_b32 : blocks of 32 OCP FP8 values + one E8M0 exponent byte e (scale 2^(e-127)),
 *                         i.e. the OCP MXFP8 layout. x = fp8(q) * 2^(e-127).
 *   e4m3_row            : one F32 scale s in front of each row, then n E4M3 bytes. x = s * e4m3(q).
 *   e4m3_b128           : blocks of [F32 s][128 E4M3 bytes], i.e. a row is n/128 e4m3_row rows of 128;
 *                         its kernels are e4m3_row's, applied block by block.
 *
 * A power-of-two scale makes scaling exact, so each element is simply the nearest FP8 value of x on the
 * scaled grid. Without importance weights the scale is the smallest one that needs no saturation (one
 * pass, vectorisable); with weights a few candidate scales are tried and the weighted error decides,
 * that unweighted choice always among them, so equal weights can never do worse.
 */
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <math.h>
#include <string.h>

typedef uint8_t (*fp8_enc_fn)(float);
typedef float (*fp8_dec_fn)(uint8_t);

/* 2^k as a float for k in [-149, 127], exact (subnormal powers included). */
static float pow2f(int k) { return ldexpf(1.0f, k); }

/* Smallest k with amax * 2^-k <= fmax (no element saturates); amax > 0 and finite. */
static int no_saturation_exp(float amax, float fmax) {
    int p;
    frexpf(amax / fmax, &p); /* amax/fmax in [2^(p-1), 2^p) up to the division's rounding */
    int k = p;
    while (k > -127 && amax * pow2f(-(k - 1)) <= fmax) k--;
    while (amax * pow2f(-k) > fmax) k++;
    return k;
}

static float absmax(const float *x, int64_t n) {
    float a = 0.0f;
    for (int64_t i = 0; i < n; i++) a = fmaxf(a, fabsf(x[i]));
    return a;
}

/* ---- 32-blocks with an E8M0 exponent -------------------------------------------------------------------- */

/* Exponent byte for scale exponent k, clamped to the finite E8M0 range (255 is NaN). */
static uint8_t e8m0_of(int k) { return (uint8_t)(k + 127 < 0 ? 0 : k + 127 > 254 ? 254 : k + 127); }

static float b32_err(const float *x, const float *w, uint8_t e, fp8_enc_fn enc, fp8_dec_fn dec, uint8_t *q) {
    float inv = pow2f(127 - (int)e), scale = pow2f((int)e - 127), err = 0.0f;
    for (int j = 0; j < QF_QK; j++) {
        q[j] = enc(x[j] * inv);
        float r = x[j] - dec(q[j]) * scale;
        err += (w ? w[j] : 1.0f) * r * r;
    }
    return err;
}

uint8_t qf_fp8_b32_exponent(float amax, bool e4m3) {
    return amax > 0.0f ? e8m0_of(no_saturation_exp(amax, e4m3 ? QF_E4M3_MAX : QF_E5M2_MAX)) : 127;
}

static void b32_block(const float *x, const float *w, float fmax, fp8_enc_fn enc, fp8_dec_fn dec,
                      qf_block_fp8_b32 *b) {
    float amax = absmax(x, QF_QK);
    b->e = qf_fp8_b32_exponent(amax, fmax == QF_E4M3_MAX);
    float inv = pow2f(127 - (int)b->e);
    for (int j = 0; j < QF_QK; j++) b->qs[j] = enc(x[j] * inv);
    if (!w || amax == 0.0f || b->e == 0) return;
    /* One step finer: the largest values may saturate, the smallest gain a bit of subnormal range. */
    uint8_t q[QF_QK];
    float base = b32_err(x, w, b->e, enc, dec, q);
    uint8_t e2 = (uint8_t)(b->e - 1);
    if (b32_err(x, w, e2, enc, dec, q) < base) {
        b->e = e2;
        memcpy(b->qs, q, sizeof q);
    }
}

static bool b32_quantize(const float *x, void *y, int64_t n, const float *imp, float fmax, fp8_enc_fn enc,
                         fp8_dec_fn dec) {
    if (!qf_all_finite(x, n)) return false;
    qf_block_fp8_b32 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++)
        b32_block(x + i * QF_QK, imp ? imp + i * QF_QK : NULL, fmax, enc, dec, &b[i]);
    return true;
}

/* 2^(e-127); e = 255 is NaN as in OCP MX. */
float qf_e8m0_scale(uint8_t e) { return e == 255 ? NAN : pow2f((int)e - 127); }

static void b32_dequantize(const void *x, float *y, int64_t n, fp8_dec_fn dec) {
    const qf_block_fp8_b32 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float s = qf_e8m0_scale(b[i].e);
        for (int j = 0; j < QF_QK; j++) y[i * QF_QK + j] = dec(b[i].qs[j]) * s;
    }
}

static float b32_dot(const void *w, const float *x, int64_t n, fp8_dec_fn dec) {
    const qf_block_fp8_b32 *b = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float t = 0.0f;
        for (int j = 0; j < QF_QK; j++) t += dec(b[i].qs[j]) * x[i * QF_QK + j];
        s += t * qf_e8m0_scale(b[i].e);
    }
    return s;
}

bool qf_quantize_e4m3_b32(const float *x, void *y, int64_t n, const float *imp) {
    return b32_quantize(x, y, n, imp, QF_E4M3_MAX, qf_f32_to_e4m3, qf_e4m3_to_f32);
}
void qf_dequantize_e4m3_b32(const void *x, float *y, int64_t n) { b32_dequantize(x, y, n, qf_e4m3_to_f32); }
float qf_dot_e4m3_b32(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, qf_e4m3_to_f32); }

bool qf_quantize_e5m2_b32(const float *x, void *y, int64_t n, const float *imp) {
    return b32_quantize(x, y, n, imp, QF_E5M2_MAX, qf_f32_to_e5m2, qf_e5m2_to_f32);
}
void qf_dequantize_e5m2_b32(const void *x, float *y, int64_t n) { b32_dequantize(x, y, n, qf_e5m2_to_f32); }
float qf_dot_e5m2_b32(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, qf_e5m2_to_f32); }

/* ---- E4M3 with one F32 scale per row: [float s][n x e4m3] ------------------------------------------------ */

#define ROW_CANDIDATES 8 /* weighted search: s * 2^(t/8), t = 0..7, shifts the grid across one octave */

static float row_err(const float *x, const float *w, int64_t n, float s, uint8_t *q) {
    float inv = 1.0f / s, err = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        q[i] = qf_f32_to_e4m3(x[i] * inv);
        float r = x[i] - s * qf_e4m3_to_f32(q[i]);
        err += (w ? w[i] : 1.0f) * r * r;
    }
    return err;
}

/* A row whose largest magnitude is below ~1.5e-36: 1/s overflows, and x * inf would store Inf codes (and
 * 0 * inf NaN ones), so divide, without the weighted search; a scale that underflowed to 0 stores zeros. */
static void e4m3_row_tiny(const float *x, uint8_t *q, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) q[i] = s > 0.0f ? qf_f32_to_e4m3(x[i] / s) : 0;
}

bool qf_quantize_e4m3_row(const float *x, void *y, int64_t n, const float *imp) {
    if (!qf_all_finite(x, n)) return false;
    uint8_t *q = (uint8_t *)y + sizeof(float);
    float amax = absmax(x, n), s = amax / QF_E4M3_MAX;
    if (amax == 0.0f) {
        memcpy(y, &s, sizeof s);
        memset(q, 0, (size_t)n);
        return true;
    }
    float inv = 1.0f / s;
    if (!isfinite(inv)) {
        memcpy(y, &s, sizeof s);
        e4m3_row_tiny(x, q, n, s);
        return true;
    }
    for (int64_t i = 0; i < n; i++) q[i] = qf_f32_to_e4m3(x[i] * inv);
    if (imp) { /* candidates are tried in place; the best is re-encoded at the end */
        float best_s = s, best = row_err(x, imp, n, s, q);
        for (int t = 1; t < ROW_CANDIDATES; t++) {
            float c = s * exp2f((float)t / ROW_CANDIDATES);
            float e = row_err(x, imp, n, c, q);
            if (e < best) { best = e; best_s = c; }
        }
        s = best_s;
        row_err(x, imp, n, s, q);
    }
    memcpy(y, &s, sizeof s);
    return true;
}

void qf_dequantize_e4m3_row(const void *x, float *y, int64_t n) {
    float s;
    memcpy(&s, x, sizeof s);
    const uint8_t *q = (const uint8_t *)x + sizeof(float);
    for (int64_t i = 0; i < n; i++) y[i] = s * qf_e4m3_to_f32(q[i]);
}

float qf_dot_e4m3_row(const void *w, const float *x, int64_t n) {
    float s, t = 0.0f;
    memcpy(&s, w, sizeof s);
    const uint8_t *q = (const uint8_t *)w + sizeof(float);
    for (int64_t i = 0; i < n; i++) t += qf_e4m3_to_f32(q[i]) * x[i];
    return t * s;
}

/* ---- E4M3 with one F32 scale per 128: every block is an e4m3_row row of 128 ------------------------------ */

/* One kernel for both: the scalar reference and each ISA pass their e4m3_row kernel, so e4m3_b128's bytes
 * and floats are e4m3_row's on every ISA by construction. */
bool qf_e4m3_b128_quantize_by(qf_quantize_fn row, const float *x, void *y, int64_t n, const float *imp) {
    qf_block_e4m3_b128 *b = y;
    for (int64_t i = 0; i < n / QF_QK_B128; i++)
        if (!row(x + i * QF_QK_B128, &b[i], QF_QK_B128, imp ? imp + i * QF_QK_B128 : NULL)) return false;
    return true;
}

void qf_e4m3_b128_dequantize_by(qf_dequantize_fn row, const void *x, float *y, int64_t n) {
    const qf_block_e4m3_b128 *b = x;
    for (int64_t i = 0; i < n / QF_QK_B128; i++) row(&b[i], y + i * QF_QK_B128, QF_QK_B128);
}

float qf_e4m3_b128_dot_by(qf_dot_fn row, const void *w, const float *x, int64_t n) {
    const qf_block_e4m3_b128 *b = w;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QF_QK_B128; i++) s += row(&b[i], x + i * QF_QK_B128, QF_QK_B128);
    return s;
}

bool qf_quantize_e4m3_b128(const float *x, void *y, int64_t n, const float *imp) {
    return qf_e4m3_b128_quantize_by(qf_quantize_e4m3_row, x, y, n, imp);
}
void qf_dequantize_e4m3_b128(const void *x, float *y, int64_t n) {
    qf_e4m3_b128_dequantize_by(qf_dequantize_e4m3_row, x, y, n);
}
float qf_dot_e4m3_b128(const void *w, const float *x, int64_t n) { return qf_e4m3_b128_dot_by(qf_dot_e4m3_row, w, x, n); }
