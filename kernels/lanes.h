/*
 * lanes.h — what the quantizer bodies compiled once per ISA (quant_body.h, iq_body.h) share: the
 * name suffix, the 8-lane reductions with their fixed tree, F16 rounding, and the AVX2 forms of these
 * that keep lane l in vector lane l and do the same operations in the same order (so every build writes
 * the same bytes). The including file defines QF_SFX and is compiled with its ISA's flags.
 */
#ifndef QF_KERNELS_LANES_H
#define QF_KERNELS_LANES_H

#include "kernels/blocks.h"
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <math.h>
#include <string.h>
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QF_CAT_(a, b) a##b
#define QF_CAT(a, b) QF_CAT_(a, b)
#define QF_FN(name) QF_CAT(name, QF_SFX)

#define LN 8 /* lanes of every reduction */

/* The K-quant fit's stages are forced inline into two copies of the fit (weights NULL, weights given),
 * so the unit-weight case loses its per-pass weight tests and loads. */
#if defined(__GNUC__)
#define QF_AINLINE static inline __attribute__((always_inline))
#else
#define QF_AINLINE static inline
#endif

/* Weights w == NULL mean all ones: the passes then skip the multiplications by 1, which are exact, so
 * results are the same bits as with an array of ones. WOFF offsets a weight pointer that may be NULL. */
#define WOFF(w, o) ((w) ? (w) + (o) : NULL)

/* 1.5 * 2^23: adding and subtracting it rounds |v| < 2^22 to the nearest integer, ties to even, in two
 * plain float operations (vectorisable, unlike lrintf). Every caller clamps v to a small range first. */
#define RND_MAGIC 12582912.0f

static inline float f16_round(float v) {
#if defined(__F16C__)
    return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT)); /* same RNE as fpconv.c for finite v */
#else
    return qf_f16_to_f32(qf_f32_to_f16(v));
#endif
}

/* F16 bits of v (F16C: the same RNE as fpconv.c for finite v, without the call). */
static inline uint16_t f16_bits(float v) {
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
#else
    return qf_f32_to_f16(v);
#endif
}

/* f16_round of two values at once (one conversion each way on F16C: scale and min of one block). */
static inline void f16_round2(float *a, float *b) {
#if defined(__F16C__)
    __m128 r = _mm_cvtph_ps(_mm_cvtps_ph(_mm_setr_ps(*a, *b, 0.0f, 0.0f), _MM_FROUND_TO_NEAREST_INT));
    *a = _mm_cvtss_f32(r);
    *b = _mm_cvtss_f32(_mm_shuffle_ps(r, r, 1));
#else
    *a = f16_round(*a);
    *b = f16_round(*b);
#endif
}

/* The fixed reduction tree of 8 lanes (pairs 4 apart, then 2 apart, then 1 apart). */
static inline float hsum8(const float *a) {
    float b0 = a[0] + a[4], b1 = a[1] + a[5], b2 = a[2] + a[6], b3 = a[3] + a[7];
    return (b0 + b2) + (b1 + b3);
}

#if defined(__AVX2__)
/* AVX2 builds: the passes below in intrinsics, lane l of each vector being lane l of the scalar loops,
 * with the same operations in the same order (max/min equal the scalar ternaries for every non-NaN
 * input; a zero's sign can differ but vanishes in the rounding that follows). */
#define QF_VEC_PASSES 1
static inline __m256 v_round(__m256 v) {
    const __m256 m = _mm256_set1_ps(RND_MAGIC);
    return _mm256_sub_ps(_mm256_add_ps(v, m), m);
}
/* hsum8's tree in registers: the halves added (a_l + a_l+4), then pairs 2 apart, then the last two. */
static inline float v_hsum8(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}
/* w * a, or a itself for unit weights (w == NULL): multiplying by 1 is exact, so skipping it changes no
 * bit and both builds stay identical. */
#define VW(a) (w ? _mm256_mul_ps(wv, (a)) : (a))
#define VWLOAD(k) (w ? _mm256_loadu_ps(w + (k)) : _mm256_setzero_ps())
/* floor of v >= 0 from the nearest integer: one down where rounding went up */
static inline __m256 v_floor_pos(__m256 v) {
    __m256 r = v_round(v);
    return _mm256_sub_ps(r, _mm256_and_ps(_mm256_cmp_ps(r, v, _CMP_GT_OQ), _mm256_set1_ps(1.0f)));
}
/* hsum8's tree (or minmax's, with min/max at every node) of 8 vectors at once: lane k of the result is
 * the tree of a[k], the same operations in the same order as v_hsum8, with the shuffles shared by all
 * eight. Inputs are paired (k, k+4) so the results come out in order. Batched legacy blocks use it to
 * put one block per lane, which leaves their scalar refit to 8-wide code. */
#define QF_TREE8(NAME, OP)                                                                                  \
    static inline __m256 NAME(const __m256 *a) {                                                            \
        __m256 p[4];                                                                                        \
        for (int k = 0; k < 4; k++) /* halves: element l with l + 4 */                                      \
            p[k] = OP(_mm256_permute2f128_ps(a[k], a[k + 4], 0x20), _mm256_permute2f128_ps(a[k], a[k + 4], 0x31)); \
        /* pairs 2 apart: [k0: c0 c1, k1: c0 c1 | k4: .., k5: ..] and the same for k2, k3, k6, k7 */       \
        __m256 q0 = OP(_mm256_shuffle_ps(p[0], p[1], 0x44), _mm256_shuffle_ps(p[0], p[1], 0xEE));           \
        __m256 q1 = OP(_mm256_shuffle_ps(p[2], p[3], 0x44), _mm256_shuffle_ps(p[2], p[3], 0xEE));           \
        return OP(_mm256_shuffle_ps(q0, q1, 0x88), _mm256_shuffle_ps(q0, q1, 0xDD)); /* c0 op c1 */          \
    }
QF_TREE8(v_tree8_add, _mm256_add_ps)
QF_TREE8(v_tree8_min, _mm256_min_ps)
QF_TREE8(v_tree8_max, _mm256_max_ps)

/* Lanes k with bit k of m set, as a mask vector. */
static inline __m256 v_lanes(int m) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m), bit), bit));
}
static inline __m256 v_f16_round(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
static inline __m256d v_lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
static inline __m256d v_hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
static inline __m256 v_pd_ps(__m256d lo, __m256d hi) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
}
/* 8 F16 bit patterns of v into the 16-bit fields at p, p + stride bytes, ... */
static inline void v_store_f16(__m256 v, void *p, size_t stride) {
    uint16_t h[8];
    _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    for (int k = 0; k < 8; k++) memcpy((uint8_t *)p + (size_t)k * stride, &h[k], sizeof h[k]);
}
#endif

/* Reciprocal of a scale, or 0 when s is 0 or so small that 1/s overflows (all codes then become 0). */
static inline float safe_inv(float s) {
    float inv = s != 0.0f ? 1.0f / s : 0.0f;
    return isfinite(inv) ? inv : 0.0f;
}

/* Largest and smallest value of x[n] (n a multiple of 8). Lanes as everywhere, then the same tree as
 * hsum8 with "a < b ? a : b" / "a > b ? a : b" at every node (what minps/maxps compute), so the builds
 * agree even on which of +0 and -0 comes out. */
static inline void minmax(const float *x, int n, float *lo, float *hi) {
#if defined(QF_VEC_PASSES)
    __m256 mn = _mm256_loadu_ps(x), mx = mn;
    for (int k = LN; k < n; k += LN) {
        __m256 v = _mm256_loadu_ps(x + k);
        mn = _mm256_min_ps(v, mn);
        mx = _mm256_max_ps(v, mx);
    }
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    *lo = _mm_cvtss_f32(_mm_min_ss(a, _mm_shuffle_ps(a, a, 1)));
    *hi = _mm_cvtss_f32(_mm_max_ss(b, _mm_shuffle_ps(b, b, 1)));
#else
    float mn[LN], mx[LN];
    for (int l = 0; l < LN; l++) mn[l] = mx[l] = x[l];
    for (int k = LN; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = x[k + l];
            mn[l] = v < mn[l] ? v : mn[l];
            mx[l] = v > mx[l] ? v : mx[l];
        }
    for (int w = LN / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) {
            mn[l] = mn[l] < mn[l + w] ? mn[l] : mn[l + w];
            mx[l] = mx[l] > mx[l + w] ? mx[l] : mx[l + w];
        }
    *lo = mn[0];
    *hi = mx[0];
#endif
}

/* The value of largest magnitude with its sign; on a tie between +a and -a the first in x wins, as in
 * ggml (its symmetric scale maps that value to the negative end of the code range). */
static inline float signed_absmax(const float *x, int n) {
    float lo, hi;
    minmax(x, n, &lo, &hi);
    if (hi > -lo) return hi;
    if (-lo > hi) return lo;
    for (int i = 0; i < n; i++) /* tie (or all zero): rare, find the first occurrence */
        if (x[i] == hi || x[i] == lo) return x[i];
    return 0.0f;
}

/* The quantize contract's NaN/Inf check (an all-ones exponent), vectorised where the ISA allows. */
static inline bool all_finite(const float *x, int64_t n) {
#if defined(QF_VEC_PASSES)
    /* the bits shifted left by one (sign dropped) reach 0xFF000000 exactly for Inf and NaN: one shift
     * and one unsigned max per 8 values, two accumulators */
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_epu32(m0, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + i)), 1));
        m1 = _mm256_max_epu32(m1, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 8)), 1));
    }
    m0 = _mm256_max_epu32(m0, m1);
    __m256i top = _mm256_set1_epi32((int)0xFF000000u);
    bool ok = _mm256_testz_si256(_mm256_cmpeq_epi32(_mm256_max_epu32(m0, top), m0), _mm256_set1_epi32(-1));
    return ok && qf_all_finite(x + i, n - i);
#else
    return qf_all_finite(x, n);
#endif
}

#endif
