/*
 * fprow_avx2.c — row conversions with AVX2 + F16C, 8 elements per step, scalar tails. Exactly the
 * scalar results: F16C converts finite values and infinities with the same RNE; where the hardware
 * would differ (it quiets signalling NaNs when widening F16) the lanes are rebuilt from the bits.
 */
#include "kernels/simd_x86.h"

/* F16 -> F32; NaN lanes keep their payload unquieted, as qf_f16_to_f32 does. */
void qf_f16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n) {
    const __m256i e16 = _mm256_set1_epi32(0x7C00);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(x + i));
        __m256 f = _mm256_cvtph_ps(h);
        __m256i u = _mm256_cvtepu16_epi32(h);
        __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(u, e16), e16); /* inf or NaN */
        if (!_mm256_testz_si256(special, special)) {
            __m256i bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x8000)), 16),
                                           _mm256_or_si256(_mm256_set1_epi32(0x7F800000),
                                                           _mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x3FF)), 13)));
            f = _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(special));
        }
        _mm256_storeu_ps(y + i, f);
    }
    for (; i < n; i++) y[i] = qf_f16_to_f32(x[i]);
}

void qf_bf16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(u, 16));
    }
    for (; i < n; i++) y[i] = qf_bf16_to_f32(x[i]);
}

/* E4M3 through F16C (qf_fp8x8_ps); its NaN is the default quiet NaN, the value qf_e4m3_to_f32 returns
 * (sign * NAN yields the NaN operand on x86: +quiet NaN for either sign). */
void qf_e4m3_to_f32_row_avx2(const uint8_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, qf_fp8x8_ps(x + i, true));
    for (; i < n; i++) y[i] = qf_e4m3_to_f32(x[i]);
}

/* F32 -> F16 with RNE; F16C also quiets NaNs keeping the top payload bits, as qf_f32_to_f16. */
void qf_f32_to_f16_row_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = qf_f32_to_f16(x[i]);
}

/* F32 -> BF16: RNE on the low 16 bits; NaNs truncated and forced quiet, as qf_f32_to_bf16. */
void qf_f32_to_bf16_row_avx2(const float *x, uint16_t *y, int64_t n) {
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
        __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        r = _mm256_blendv_epi8(r, qn, nan);
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = qf_f32_to_bf16(x[i]);
}
