/*
 * simd_avx512.c — AVX-512 (F/BW/VL/DQ) dot products; everything else inherits the AVX2 kernels
 * (quantizers are bound by the scalar scale choice and gain little from 16 lanes). Same contract as
 * simd_avx2.c: only the summation order differs from the scalar reference.
 */
#include "kernels/simd_x86.h"

static inline __m512 i8x16_ps(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline __m512 u8x16_ps(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* 16 FP8 bytes -> floats (see qf_fp8x8_ps for the F16 trick). */
static inline __m512 fp8x16_ps(const uint8_t *p, bool e4m3) {
    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    if (!e4m3) return _mm512_cvtph_ps(_mm256_slli_epi16(v, 8));
    __m256i mag = _mm256_and_si256(v, _mm256_set1_epi16(0x7F));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(mag, 7),
                                _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x80)), 8));
    __m512 f = _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
    __mmask16 nan = _mm256_cmpeq_epi16_mask(mag, _mm256_set1_epi16(0x7F));
    return _mm512_mask_blend_ps(nan, f, _mm512_set1_ps(NAN));
}

float qf_dot_q8_0_avx512(const void *w, const float *x, int64_t n) {
    const qf_block_q8_0 *b = w;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m512 s = _mm512_mul_ps(i8x16_ps(b[i].qs), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(i8x16_ps(b[i].qs + 16), _mm512_loadu_ps(xb + 16), s);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(qf_f16_to_f32(b[i].d)), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

float qf_dot_q4_K_avx512(const void *w, const float *x, int64_t n) {
    const qf_block_q4_K *b = w;
    __m512 acc = _mm512_setzero_ps();
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
                __m512 x0 = _mm512_loadu_ps(xs), x1 = _mm512_loadu_ps(xs + 16);
                __m512 sq = _mm512_fmadd_ps(u8x16_ps(nib + 32 * h + 16), x1, _mm512_mul_ps(u8x16_ps(nib + 32 * h), x0));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc[j]), sq, acc);
                acc = _mm512_fnmadd_ps(_mm512_set1_ps(dmin * (float)mn[j]), _mm512_add_ps(x0, x1), acc);
            }
        }
    }
    return _mm512_reduce_add_ps(acc);
}

float qf_dot_q6_K_avx512(const void *w, const float *x, int64_t n) {
    const qf_block_q6_K *b = w;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int c = 0; c < 2; c++) {
            int8_t q[128];
            qf_q6_K_unpack128_avx2(b->ql + 64 * c, b->qh + 32 * c, q);
            for (int g = 0; g < 8; g++) {
                __m512 s = _mm512_mul_ps(i8x16_ps(q + 16 * g), _mm512_loadu_ps(x + i * QF_QK_K + 128 * c + 16 * g));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)b->scales[8 * c + g]), s, acc);
            }
        }
    }
    return _mm512_reduce_add_ps(acc);
}

static float b32_dot(const void *w, const float *x, int64_t n, bool e4m3) {
    const qf_block_fp8_b32 *b = w;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK;
        __m512 s = _mm512_mul_ps(fp8x16_ps(b[i].qs, e4m3), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(fp8x16_ps(b[i].qs + 16, e4m3), _mm512_loadu_ps(xb + 16), s);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(qf_e8m0_scale(b[i].e)), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

float qf_dot_e4m3_b32_avx512(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, true); }
float qf_dot_e5m2_b32_avx512(const void *w, const float *x, int64_t n) { return b32_dot(w, x, n, false); }

float qf_dot_e4m3_row_avx512(const void *w, const float *x, int64_t n) {
    float s;
    memcpy(&s, w, sizeof s);
    const uint8_t *q = (const uint8_t *)w + sizeof(float);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(fp8x16_ps(q + i, true), _mm512_loadu_ps(x + i), acc);
    float t = _mm512_reduce_add_ps(acc);
    for (; i < n; i++) t += qf_e4m3_to_f32(q[i]) * x[i];
    return t * s;
}

float qf_dot_e4m3_b128_avx512(const void *w, const float *x, int64_t n) {
    return qf_e4m3_b128_dot_by(qf_dot_e4m3_row_avx512, w, x, n);
}
