/* rt_qkern_avx2.c — AVX2 integer tile of the runtime's 8-bit path, for CPUs without AVX512-VNNI
 * (compiled with -mavx2 -mfma; see rt_kern.h for the math and layouts, rt_kern.c for the scalar
 * reference, whose bits this returns).
 *
 * 16 ymm registers cannot hold 3 rows x 64 tokens of accumulators, so the tile runs 8 tokens at a time:
 * 3 int32 and 3 F32 accumulators, per group of 4 features one 32-byte load of activation levels (8
 * tokens x 4 bytes) and per row a 4-byte broadcast of weight levels, vpmaddubsw (unsigned x signed bytes
 * to pairwise int16 sums) and vpmaddwd by ones (to one int32 per token).
 *
 * Exactness: vpmaddubsw saturates its int16 pair sums. Q4_K and Q6_K levels (0..15, 0..63) keep pairs
 * within 2 * 63 * 127 < 32767. Q8_0 levels (0..255, offset 128) would not, so their rows are recentred
 * to signed -128..127 and multiplied as |w| times x with w's sign moved onto x (pairs at most 2 * 128 *
 * 127 = 32512): that sum is exactly the reference's sum of w * x minus 128 * (sum of x). Every later
 * step (int32 -> F32 conversion of values below 2^24, multiply by the weight scale, FMA with the
 * activation scale, FMA of the min term) is the reference's, in its order. */
#include "runtime/rt_kern.h"

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
#define QT QF_RT_QT

INLINE __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* 4-feature dot products of one weight row's broadcast levels with 8 tokens' levels, as int32. */
INLINE __m256i dot4(__m256i w, __m256i x, int recentre) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (recentre) {
        __m256i ws = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)); /* level - 128, as int8 */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(x, ws)), ones);
    }
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
}

/* Tokens tv * 8 .. tv * 8 + 7 of one tile for a fixed weight format (constant arguments fold away at
 * each call site): `sub` elements per weight scale, level offset 1 << shift subtracted through the
 * activation sums (shift 0: none), Q8_0's recentring, a min term or not. */
INLINE void qtile8(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr, size_t tv,
                   const int sub, const int shift, const int recentre, const int has_m) {
    const size_t rq[3] = {0, mr > 1 ? w->ldq : 0, mr > 2 ? 2 * w->ldq : 0};
    const size_t rs[3] = {0, mr > 1 ? w->lds : 0, mr > 2 ? 2 * w->lds : 0};
    const int groups = 32 / sub, gk = sub / 4;
    const size_t t0 = tv * 8;
    __m256 f[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t b = 0; b < nb; b++) {
        const int8_t *xb = x->q + b * 8 * QT * 4;
        const uint8_t *wb = w->q + b * 32;
        __m256 xd = _mm256_loadu_ps(x->d + b * QT + t0);
        for (int h = 0; h < groups; h++) {
            __m256i a[3] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int g = h * gk; g < (h + 1) * gk; g++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + ((size_t)g * QT + t0) * 4));
                for (int r = 0; r < 3; r++) a[r] = _mm256_add_epi32(a[r], dot4(bcast4(wb + rq[r] + 4 * g), xv, recentre));
            }
            if (shift) {
                const int32_t *s = x->s + (2 * b + (size_t)h) * QT + t0;
                __m256i xs = _mm256_loadu_si256((const __m256i *)s);
                if (groups == 1) xs = _mm256_add_epi32(xs, _mm256_loadu_si256((const __m256i *)(s + QT)));
                xs = _mm256_slli_epi32(xs, shift);
                for (int r = 0; r < 3; r++) a[r] = _mm256_sub_epi32(a[r], xs);
            }
            for (int r = 0; r < 3; r++) {
                __m256 wd = _mm256_set1_ps(w->d[rs[r] + b * (size_t)groups + (size_t)h]);
                f[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a[r]), wd), xd, f[r]);
            }
        }
        if (has_m) {
            __m256 xds = _mm256_loadu_ps(x->ds + b * QT + t0);
            for (int r = 0; r < 3; r++) f[r] = _mm256_fmadd_ps(_mm256_set1_ps(w->m[rs[r] + b]), xds, f[r]);
        }
    }
    for (int r = 0; r < mr; r++) _mm256_storeu_ps(y + (size_t)r * ldy + t0, f[r]);
}

static void qtile_q8_0(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    for (size_t tv = 0; tv < QT / 8; tv++) qtile8(w, x, nb, y, ldy, mr, tv, 32, 0, 1, 0);
}
static void qtile_q4_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    for (size_t tv = 0; tv < QT / 8; tv++) qtile8(w, x, nb, y, ldy, mr, tv, 32, 0, 0, 1);
}
static void qtile_q6_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    for (size_t tv = 0; tv < QT / 8; tv++) qtile8(w, x, nb, y, ldy, mr, tv, 16, 5, 0, 0);
}

void qf_rt_qtile_avx2(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    if (w->sub == 32 && w->off == 128 && !w->m) qtile_q8_0(w, x, nb, y, ldy, mr);
    else if (w->sub == 32 && w->off == 0 && w->m) qtile_q4_k(w, x, nb, y, ldy, mr);
    else if (w->sub == 16 && w->off == 32 && !w->m) qtile_q6_k(w, x, nb, y, ldy, mr);
    else qf_rt_qtile_scalar(w, x, nb, y, ldy, mr); /* no decoder produces another combination today */
}
