/*
 * simd_x86.h — 8-lane helpers shared by simd_avx2.c and simd_avx512.c (both compiled with at least
 * -mavx2 -mfma -mf16c). Every helper reproduces the scalar reference's per-element result exactly.
 */
#ifndef QF_KERNELS_SIMD_X86_H
#define QF_KERNELS_SIMD_X86_H

#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline __m256 qf_abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float qf_hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Max is order-independent for non-NaN inputs, so this equals the scalar fmaxf loop. */
static inline float qf_hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* roundf(): nearest, ties away from zero (what ggml's and our scalar Q8_0 use). Exact: the truncation
 * and the difference are exact, unlike floor(|v| + 0.5) which misrounds 0.49999997. */
static inline __m256 qf_roundf_ps(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = qf_abs_ps(_mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

static inline __m256 qf_i8x8_ps(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline __m256 qf_u8x8_ps(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* 4 x 8 int32 (each in -128..127) -> 32 int8 in order. The packs interleave 128-bit lanes; the final
 * permutation restores element order. */
static inline void qf_store_i32x32_as_i8(const __m256i *q, int8_t *out) {
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p);
}

static inline bool qf_all_finite_avx2(const float *x, int64_t n) {
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), expo);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(u, expo));
    }
    if (!_mm256_testz_si256(bad, bad)) return false;
    return qf_all_finite(x + i, n - i);
}

/* Q4_K/Q5_K 6-bit scales and mins of the 8 sub-blocks. */
static inline void qf_k4_scales(const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (uint8_t)((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4);
            mn[j] = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
        }
    }
}

/* 128 Q6_K codes (minus 32) of one half super-block: element r*32 + l from ql[(r&1)*32 + l] nibble r>>1
 * and qh[l] bits 2r..2r+1. 16-bit shifts are safe because every result is masked per byte. */
static inline void qf_q6_K_unpack128_avx2(const uint8_t *ql, const uint8_t *qh, int8_t *q) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), b32 = _mm256_set1_epi8(32);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    __m256i r0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    __m256i r1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    __m256i r2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
    __m256i r3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                 _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
    _mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(r0, b32));
    _mm256_storeu_si256((__m256i *)(q + 32), _mm256_sub_epi8(r1, b32));
    _mm256_storeu_si256((__m256i *)(q + 64), _mm256_sub_epi8(r2, b32));
    _mm256_storeu_si256((__m256i *)(q + 96), _mm256_sub_epi8(r3, b32));
}

/* ---- FP8 ---- */

/* v >> s rounded to nearest even, per lane; s in [1, 31]. */
static inline __m256i qf_srl_rne(__m256i v, __m256i s) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i q = _mm256_srlv_epi32(v, s);
    __m256i rem = _mm256_and_si256(v, _mm256_sub_epi32(_mm256_sllv_epi32(one, s), one));
    __m256i half = _mm256_sllv_epi32(one, _mm256_sub_epi32(s, one));
    __m256i up = _mm256_or_si256(_mm256_cmpgt_epi32(rem, half),
                                 _mm256_and_si256(_mm256_cmpeq_epi32(rem, half),
                                                  _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one)));
    return _mm256_sub_epi32(q, up); /* up is all-ones (-1) where rounding up */
}

/* Finite F32 -> saturating FP8 code (sign | magnitude code), as fpconv.c's narrow_round: normal values
 * round their mantissa, values below the smallest normal count subnormal units. */
static inline __m256i qf_fp8_encode_avx2(__m256 v, int mbits, int bias, int max_code, float max_val) {
    __m256i u = _mm256_castps_si256(v);
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i e = _mm256_srli_epi32(a, 23);
    __m256i qn = _mm256_sub_epi32(qf_srl_rne(a, _mm256_set1_epi32(23 - mbits)),
                                  _mm256_set1_epi32((127 - bias) << mbits));
    __m256i m = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7FFFFF)), _mm256_set1_epi32(0x800000));
    __m256i sh = _mm256_sub_epi32(_mm256_set1_epi32(150 + 1 - bias - mbits), e);
    sh = _mm256_min_epi32(sh, _mm256_set1_epi32(25)); /* beyond 24 everything rounds to 0 */
    __m256i qs = qf_srl_rne(m, sh);
    qs = _mm256_andnot_si256(_mm256_cmpeq_epi32(e, _mm256_setzero_si256()), qs); /* F32 subnormal -> 0 */
    __m256i normal = _mm256_cmpgt_epi32(e, _mm256_set1_epi32(127 - bias));
    __m256i code = _mm256_blendv_epi8(qs, qn, normal);
    float mv = max_val;
    int32_t maxbits;
    memcpy(&maxbits, &mv, sizeof maxbits);
    __m256i sat = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(maxbits - 1));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(max_code), sat);
    return _mm256_or_si256(code, sign);
}

static inline __m256i qf_e4m3_encode_avx2(__m256 v) { return qf_fp8_encode_avx2(v, 3, 7, 0x7E, QF_E4M3_MAX); }
static inline __m256i qf_e5m2_encode_avx2(__m256 v) { return qf_fp8_encode_avx2(v, 2, 15, 0x7B, QF_E5M2_MAX); }

static inline void qf_store_fp8x8(__m256i codes, uint8_t *out) {
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(codes), _mm256_extracti128_si256(codes, 1));
    _mm_storel_epi64((__m128i *)out, _mm_packus_epi16(w, w));
}

/* 8 FP8 bytes -> floats through F16C: E5M2 is the top byte of an F16; E4M3 shifted into an F16 is its
 * value times 2^-8 (exponent bias 15 vs 7, subnormals included), and its NaN code needs patching. */
static inline __m256 qf_fp8x8_ps(const uint8_t *p, bool e4m3) {
    __m128i v = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)p));
    if (!e4m3) return _mm256_cvtph_ps(_mm_slli_epi16(v, 8));
    __m128i mag = _mm_and_si128(v, _mm_set1_epi16(0x7F));
    __m128i h = _mm_or_si128(_mm_slli_epi16(mag, 7), _mm_slli_epi16(_mm_and_si128(v, _mm_set1_epi16(0x80)), 8));
    __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
    __m256i nan = _mm256_cvtepi16_epi32(_mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7F)));
    return _mm256_blendv_ps(f, _mm256_set1_ps(NAN), _mm256_castsi256_ps(nan));
}

#endif
