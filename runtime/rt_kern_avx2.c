/* rt_kern_avx2.c — AVX2 + FMA variants of the runtime kernels (compiled with -mavx2 -mfma; see rt_kern.h).
 * The tile keeps 6 rows x 16 tokens of accumulators in 12 ymm registers: per k, two loads of x, six
 * broadcasts of w, twelve FMAs. */
#include "runtime/rt_kern.h"

#include <immintrin.h>

void qf_rt_tile_avx2(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr) {
    const float *w0 = w, *w1 = w + (mr > 1 ? ldw : 0), *w2 = w + (mr > 2 ? 2 * ldw : 0);
    const float *w3 = w + (mr > 3 ? 3 * ldw : 0), *w4 = w + (mr > 4 ? 4 * ldw : 0), *w5 = w + (mr > 5 ? 5 * ldw : 0);
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
#pragma GCC unroll 4
    for (size_t k = 0; k < K; k++) {
        const float *xk = x + k * ldx;
        __m256 x0 = _mm256_loadu_ps(xk), x1 = _mm256_loadu_ps(xk + 8), b;
        b = _mm256_broadcast_ss(w0 + k); a00 = _mm256_fmadd_ps(b, x0, a00); a01 = _mm256_fmadd_ps(b, x1, a01);
        b = _mm256_broadcast_ss(w1 + k); a10 = _mm256_fmadd_ps(b, x0, a10); a11 = _mm256_fmadd_ps(b, x1, a11);
        b = _mm256_broadcast_ss(w2 + k); a20 = _mm256_fmadd_ps(b, x0, a20); a21 = _mm256_fmadd_ps(b, x1, a21);
        b = _mm256_broadcast_ss(w3 + k); a30 = _mm256_fmadd_ps(b, x0, a30); a31 = _mm256_fmadd_ps(b, x1, a31);
        b = _mm256_broadcast_ss(w4 + k); a40 = _mm256_fmadd_ps(b, x0, a40); a41 = _mm256_fmadd_ps(b, x1, a41);
        b = _mm256_broadcast_ss(w5 + k); a50 = _mm256_fmadd_ps(b, x0, a50); a51 = _mm256_fmadd_ps(b, x1, a51);
    }
    __m256 acc[6][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(y + (size_t)r * ldy, acc[r][0]);
        _mm256_storeu_ps(y + (size_t)r * ldy + 8, acc[r][1]);
    }
}

/* Same operations in the same order as vexp1 in rt_kern_scalar.c: separate multiplies and adds, no FMA.
 * The clamp keeps a NaN (max/min return their second operand when one is NaN): a NaN score must stay
 * NaN, or it becomes a uniform attention weight and a broken model passes its checks. */
static inline __m256 vexp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(QF_VEXP_HI), _mm256_max_ps(_mm256_set1_ps(QF_VEXP_LO), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(QF_VEXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(QF_VEXP_C1)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(QF_VEXP_C2)));
    __m256 p = _mm256_set1_ps(QF_VEXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QF_VEXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QF_VEXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QF_VEXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QF_VEXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QF_VEXP_P5));
    __m256 z = _mm256_mul_ps(r, r);
    __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, z), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

void qf_rt_vexp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vexp8(_mm256_loadu_ps(x + i)));
    if (i < n) qf_rt_vexp_scalar(x + i, y + i, n - i);
}
