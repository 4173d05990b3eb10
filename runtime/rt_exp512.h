/* rt_exp512.h — the runtime's 16-lane exponential, shared by the AVX-512 files (compile with AVX-512F).
 *
 * The same operations in the same order as vexp1 in rt_kern_scalar.c (Cephes, separate multiplies and
 * adds, no FMA), so the same bits, NaN included: the clamp's operand order keeps a NaN (max/min return
 * their second operand when one is NaN). The final multiply by 2^n is vscalefps: e * 2^n rounded once either way, and
 * n >= -126 after the clamp, so 2^n is normal and building it from its bits would give the same value. */
#ifndef QF_RUNTIME_RT_EXP512_H
#define QF_RUNTIME_RT_EXP512_H

#include "runtime/rt_kern.h"

#include <immintrin.h>

static inline __m512 qf_rt_exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(QF_VEXP_HI), _mm512_max_ps(_mm512_set1_ps(QF_VEXP_LO), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(QF_VEXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(QF_VEXP_C1)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(QF_VEXP_C2)));
    __m512 p = _mm512_set1_ps(QF_VEXP_P0);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QF_VEXP_P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QF_VEXP_P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QF_VEXP_P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QF_VEXP_P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(QF_VEXP_P5));
    __m512 z = _mm512_mul_ps(r, r);
    __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, z), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(e, n);
}

#endif
