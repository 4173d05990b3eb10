/*
 * simd_avx2.c — AVX2 + FMA + F16C kernels (compiled with those flags only; chosen at run time).
 *
 * Contract with the scalar reference (kern.h): quantizers write byte-identical blocks (they only use
 * order-independent reductions like max, and the same per-element float operations); dequantizers
 * produce identical floats (same single multiply per element); dot products differ only by summation
 * order. The shared per-element helpers live in simd_x86.h so the AVX-512 file builds on them.
 */
#include "kernels/simd_x86.h"
#include "kernels/fprow.h"

/* ---- F16 / BF16: the finiteness check in 8 lanes, then the dispatched row conversion (fprow.h) ---- */

bool qf_quantize_f16_avx2(const float *x, void *y, int64_t n, const float *imp) {
    (void)imp;
    if (!qf_all_finite_avx2(x, n)) return false;
    qf_f32_to_f16_row(x, y, n);
    return true;
}

bool qf_quantize_bf16_avx2(const float *x, void *y, int64_t n, const float *imp) {
    (void)imp;
    if (!qf_all_finite_avx2(x, n)) return false;
    qf_f32_to_bf16_row(x, y, n);
    return true;
}

/* ---- Q8_0 ---------------------------------------------------------------------------------------- */

bool qf_quantize_q8_0_avx2(const float *x, void *y, int64_t n, const float *imp) {
    if (imp) return qf_quantize_q8_0_w_avx2(x, y, n, imp); /* the weighted search (quant_body.h) */
    if (!qf_all_finite_avx2(x, n)) return false;
    qf_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(amax, qf_abs_ps(v[k]));
        }
        float d = qf_hmax_ps(amax) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = qf_f32_to_f16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(qf_roundf_ps(_mm256_mul_ps(v[k], vid)));
        qf_store_i32x32_as_i8(q, b[i].qs);
    }
    return true;
}

void qf_dequantize_q8_0_avx2(const void *x, float *y, int64_t n) {
    const qf_block_q8_0 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        __m256 d = _mm256_set1_ps(qf_f16_to_f32(b[i].d));
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(y + i * QF_QK + 8 * k, _mm256_mul_ps(qf_i8x8_ps(b[i].qs + 8 * k), d));
    }
}

float qf_dot_q8_0_avx2(const void *w, const float *x, int64_t n) {
    const qf_block_q8_0 *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m256 s = _mm256_mul_ps(qf_i8x8_ps(b[i].qs), _mm256_loadu_ps(xb));
        for (int k = 1; k < 4; k++) s = _mm256_fmadd_ps(qf_i8x8_ps(b[i].qs + 8 * k), _mm256_loadu_ps(xb + 8 * k), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(qf_f16_to_f32(b[i].d)), s, acc);
    }
    return qf_hsum_ps(acc);
}

/* ---- Q4_K: per 32-element sub-block, sum d1*q*x - m1*x as d1*(sum q x) - m1*(sum x) --------------- */

float qf_dot_q4_K_avx2(const void *w, const float *x, int64_t n) {
    const qf_block_q4_K *b = w;
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d), dmin = qf_f16_to_f32(b->dmin);
        uint8_t sc[8], mn[8];
        qf_k4_scales(b->scales, sc, mn);
        for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
            uint8_t nib[64];
            _mm256_storeu_si256((__m256i *)nib, _mm256_and_si256(raw, m4));
            _mm256_storeu_si256((__m256i *)(nib + 32), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
            for (int h = 0; h < 2; h++) {
                int j = 2 * c + h;
                const float *xs = x + i * QF_QK_K + 32 * j;
                __m256 sq = _mm256_setzero_ps(), sx = _mm256_setzero_ps();
                for (int k = 0; k < 4; k++) {
                    __m256 xv = _mm256_loadu_ps(xs + 8 * k);
                    sq = _mm256_fmadd_ps(qf_u8x8_ps(nib + 32 * h + 8 * k), xv, sq);
                    sx = _mm256_add_ps(sx, xv);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[j]), sq, acc);
                acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * (float)mn[j]), sx, acc);
            }
        }
    }
    return qf_hsum_ps(acc);
}

/* ---- Q6_K: unpack 128 six-bit codes at a time with byte ops, then 16-element scaled sums ----------- */

float qf_dot_q6_K_avx2(const void *w, const float *x, int64_t n) {
    const qf_block_q6_K *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int c = 0; c < 2; c++) {
            int8_t q[128];
            qf_q6_K_unpack128_avx2(b->ql + 64 * c, b->qh + 32 * c, q);
            for (int g = 0; g < 8; g++) {
                const float *xs = x + i * QF_QK_K + 128 * c + 16 * g;
                __m256 s = _mm256_mul_ps(qf_i8x8_ps(q + 16 * g), _mm256_loadu_ps(xs));
                s = _mm256_fmadd_ps(qf_i8x8_ps(q + 16 * g + 8), _mm256_loadu_ps(xs + 8), s);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)b->scales[8 * c + g]), s, acc);
            }
        }
    }
    return qf_hsum_ps(acc);
}

/* ---- FP8 ------------------------------------------------------------------------------------------ */

static bool b32_quantize(const float *x, void *y, int64_t n, bool e4m3) {
    if (!qf_all_finite_avx2(x, n)) return false;
    qf_block_fp8_b32 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) amax = _mm256_max_ps(amax, qf_abs_ps(_mm256_loadu_ps(xb + 8 * k)));
        b[i].e = qf_fp8_b32_exponent(qf_hmax_ps(amax), e4m3);
        __m256 inv = _mm256_set1_ps(ldexpf(1.0f, 127 - (int)b[i].e));
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), inv);
            qf_store_fp8x8(e4m3 ? qf_e4m3_encode_avx2(v) : qf_e5m2_encode_avx2(v), b[i].qs + 8 * k);
        }
    }
    return true;
}

static void b32_dequantize(const void *x, float *y, int64_t n, bool e4m3) {
    const qf_block_fp8_b32 *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        __m256 s = _mm256_set1_ps(qf_e8m0_scale(b[i].e));
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(y + i * QF_QK + 8 * k, _mm256_mul_ps(qf_fp8x8_ps(b[i].qs + 8 * k, e4m3), s));
    }
}

static float b32_dot(const void *w, const float *x, int64_t n, bool e4m3) {
    const qf_block_fp8_b32 *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m256 s = _mm256_mul_ps(qf_fp8x8_ps(b[i].qs, e4m3), _mm256_loadu_ps(xb));
        for (int k = 1; k < 4; k++) s = _mm256_fmadd_ps(qf_fp8x8_ps(b[i].qs + 8 * k, e4m3), _mm256_loadu_ps(xb + 8 * k), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(qf_e8m0_scale(b[i].e)), s, acc);
    }
    return qf_hsum_ps(acc);
}

bool qf_quantize_e4m3_b32_avx2(const float *x, void *y, int64_t n, const float *imp) {
    return imp ? qf_quantize_e4m3_b32(x, y, n, imp) : b32_quantize(x, y, n, true);
}
void qf_dequantize_e4m3_b32_avx2(const void *x, float *y, int64_t n) { b32_dequantize(x, y, n, true); }
float qf_dot_e4m3_b32_avx2(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, true); }
bool qf_quantize_e5m2_b32_avx2(const float *x, void *y, int64_t n, const float *imp) {
    return imp ? qf_quantize_e5m2_b32(x, y, n, imp) : b32_quantize(x, y, n, false);
}
void qf_dequantize_e5m2_b32_avx2(const void *x, float *y, int64_t n) { b32_dequantize(x, y, n, false); }
float qf_dot_e5m2_b32_avx2(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, false); }

bool qf_quantize_e4m3_row_avx2(const float *x, void *y, int64_t n, const float *imp) {
    if (imp) return qf_quantize_e4m3_row(x, y, n, imp);
    if (!qf_all_finite_avx2(x, n)) return false;
    __m256 amax = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) amax = _mm256_max_ps(amax, qf_abs_ps(_mm256_loadu_ps(x + i)));
    float a = qf_hmax_ps(amax);
    for (; i < n; i++) a = fmaxf(a, fabsf(x[i]));
    float s = a / QF_E4M3_MAX;
    uint8_t *q = (uint8_t *)y + sizeof(float);
    memcpy(y, &s, sizeof s);
    if (a == 0.0f) { memset(q, 0, (size_t)n); return true; }
    float inv = 1.0f / s;
    if (!isfinite(inv)) return qf_quantize_e4m3_row(x, y, n, NULL); /* a tiny row: the reference's division */
    __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) qf_store_fp8x8(qf_e4m3_encode_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)), q + i);
    for (; i < n; i++) q[i] = qf_f32_to_e4m3(x[i] * inv);
    return true;
}

void qf_dequantize_e4m3_row_avx2(const void *x, float *y, int64_t n) {
    float s;
    memcpy(&s, x, sizeof s);
    const uint8_t *q = (const uint8_t *)x + sizeof(float);
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, qf_fp8x8_ps(q + i, true)));
    for (; i < n; i++) y[i] = s * qf_e4m3_to_f32(q[i]);
}

float qf_dot_e4m3_row_avx2(const void *w, const float *x, int64_t n) {
    float s;
    memcpy(&s, w, sizeof s);
    const uint8_t *q = (const uint8_t *)w + sizeof(float);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(qf_fp8x8_ps(q + i, true), _mm256_loadu_ps(x + i), acc);
    float t = qf_hsum_ps(acc);
    for (; i < n; i++) t += qf_e4m3_to_f32(q[i]) * x[i];
    return t * s;
}

bool qf_quantize_e4m3_b128_avx2(const float *x, void *y, int64_t n, const float *imp) {
    return qf_e4m3_b128_quantize_by(qf_quantize_e4m3_row_avx2, x, y, n, imp);
}
void qf_dequantize_e4m3_b128_avx2(const void *x, float *y, int64_t n) {
    qf_e4m3_b128_dequantize_by(qf_dequantize_e4m3_row_avx2, x, y, n);
}
float qf_dot_e4m3_b128_avx2(const void *w, const float *x, int64_t n) {
    return qf_e4m3_b128_dot_by(qf_dot_e4m3_row_avx2, w, x, n);
}
