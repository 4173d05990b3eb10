/* rt_qkern_avx512.c — AVX-512 kernels of the runtime's 8-bit integer path (see rt_kern.h for the math
 * and the layouts; the scalar reference is in rt_kern.c and these return the same bits).
 *
 * The tile keeps 3 weight rows x 64 tokens: 12 zmm of int32 dot products for the current scale group
 * and 12 zmm of F32 sums. Per group of 4 features: four 64-byte loads of activation levels (16 tokens x
 * 4 bytes each), three 4-byte broadcasts of weight levels, twelve vpdpbusd (unsigned weight levels times
 * signed activation levels, 4 products per lane). Per scale group and output vector: one offset
 * correction (integer), one conversion, one multiply by the weight scale, one FMA with the activation
 * scale; the integer work dominates (8 vpdpbusd per 32 features).
 *
 * The dot products need AVX512-VNNI, which the file-wide flags do not enable: each function carries the
 * target attribute, and the caller checks the CPU (qf_rt_qkern_active). */
#include "runtime/rt_exp512.h"
#include "runtime/rt_kern.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define VNNI __attribute__((target("avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

#define QT QF_RT_QT

VNNI INLINE __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* (float)v for |v| < 2^22, exactly, without vcvtdq2ps: that conversion issues on the same port as
 * vpdpbusd, the integer add and float subtract issue on either vector port. Every block sum is below
 * 2^22 (at most 32 * 128 * 127 in magnitude). */
INLINE __m512 small_int_to_float(__m512i v) {
    const __m512i magic = _mm512_set1_epi32(0x4B400000); /* 1.5 * 2^23 */
    return _mm512_sub_ps(_mm512_castsi512_ps(_mm512_add_epi32(v, magic)), _mm512_castsi512_ps(magic));
}

/* One tile for a fixed weight format: `sub` elements per weight scale, level offset 1 << shift (shift 0:
 * no offset), with or without a min term. Constant arguments fold away at each call site below. */
VNNI INLINE void qtile_body(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr,
                            const int sub, const int shift, const int has_m) {
    const size_t rq[3] = {0, mr > 1 ? w->ldq : 0, mr > 2 ? 2 * w->ldq : 0};
    const size_t rs[3] = {0, mr > 1 ? w->lds : 0, mr > 2 ? 2 * w->lds : 0};
    const int groups = 32 / sub, gk = sub / 4;
    __m512 f[3][4];
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < 4; t++) f[r][t] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const int8_t *xb = x->q + b * 8 * QT * 4;
        const uint8_t *wb = w->q + b * 32;
        for (int h = 0; h < groups; h++) {
            __m512i a[3][4];
            for (int r = 0; r < 3; r++)
                for (int t = 0; t < 4; t++) a[r][t] = _mm512_setzero_si512();
            for (int g = h * gk; g < (h + 1) * gk; g++) {
                __m512i xv[4];
                for (int t = 0; t < 4; t++) xv[t] = _mm512_loadu_si512(xb + ((size_t)g * QT + 16 * (size_t)t) * 4);
                for (int r = 0; r < 3; r++) {
                    __m512i wv = bcast4(wb + rq[r] + 4 * g);
                    for (int t = 0; t < 4; t++) a[r][t] = _mm512_dpbusd_epi32(a[r][t], wv, xv[t]);
                }
            }
            if (shift) {
                for (int t = 0; t < 4; t++) {
                    const int32_t *s = x->s + (2 * b + (size_t)h) * QT + 16 * (size_t)t;
                    __m512i xs = _mm512_loadu_si512(s);
                    if (groups == 1) xs = _mm512_add_epi32(xs, _mm512_loadu_si512(s + QT));
                    xs = _mm512_slli_epi32(xs, (unsigned)shift);
                    for (int r = 0; r < 3; r++) a[r][t] = _mm512_sub_epi32(a[r][t], xs);
                }
            }
            for (int r = 0; r < 3; r++) {
                __m512 wd = _mm512_set1_ps(w->d[rs[r] + b * (size_t)groups + (size_t)h]);
                for (int t = 0; t < 4; t++) {
                    __m512 xd = _mm512_loadu_ps(x->d + b * QT + 16 * (size_t)t);
                    f[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(small_int_to_float(a[r][t]), wd), xd, f[r][t]);
                }
            }
        }
        if (has_m) {
            for (int t = 0; t < 4; t++) {
                __m512 xds = _mm512_loadu_ps(x->ds + b * QT + 16 * (size_t)t);
                for (int r = 0; r < 3; r++) f[r][t] = _mm512_fmadd_ps(_mm512_set1_ps(w->m[rs[r] + b]), xds, f[r][t]);
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int t = 0; t < 4; t++) _mm512_storeu_ps(y + (size_t)r * ldy + 16 * (size_t)t, f[r][t]);
}

VNNI static void qtile_q8_0(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, y, ldy, mr, 32, 7, 0);
}
VNNI static void qtile_q4_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, y, ldy, mr, 32, 0, 1);
}
VNNI static void qtile_q6_k(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    qtile_body(w, x, nb, y, ldy, mr, 16, 5, 0);
}

VNNI void qf_rt_qtile_avx512vnni(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    if (w->sub == 32 && w->off == 128 && !w->m) qtile_q8_0(w, x, nb, y, ldy, mr);
    else if (w->sub == 32 && w->off == 0 && w->m) qtile_q4_k(w, x, nb, y, ldy, mr);
    else if (w->sub == 16 && w->off == 32 && !w->m) qtile_q6_k(w, x, nb, y, ldy, mr);
    else qf_rt_qtile_scalar(w, x, nb, y, ldy, mr); /* no decoder produces another combination today */
}

/* ---- activations ----------------------------------------------------------------------------------- */

/* Levels of 4 consecutive features for 16 tokens, as 16 little-endian dwords (feature 0 in the low byte). */
INLINE __m512i pack4(__m512i q0, __m512i q1, __m512i q2, __m512i q3) {
    const __m512i lo = _mm512_set1_epi32(0xff);
    __m512i v = _mm512_and_si512(q0, lo);
    v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(q1, lo), 8));
    v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(q2, lo), 16));
    return _mm512_or_si512(v, _mm512_slli_epi32(q3, 24));
}

/* One block of 32 features for 16 tokens starting at column t. */
INLINE void xquant_block(const float *x, size_t ldx, size_t b, size_t t, const qf_rt_xq *out) {
    const float *xb = x + b * 32 * ldx + t;
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 amax = _mm512_setzero_ps();
    for (int i = 0; i < 32; i++) amax = _mm512_max_ps(amax, _mm512_and_ps(_mm512_loadu_ps(xb + (size_t)i * ldx), sign));
    __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
    __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ), _mm512_set1_ps(1.0f), d);
    __m512i sum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int g = 0; g < 8; g++) {
        __m512i q[4];
        for (int j = 0; j < 4; j++) {
            /* cvtps rounds half to even under the default MXCSR, as nearbyintf in the reference */
            q[j] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + (size_t)(4 * g + j) * ldx), id));
            sum[g / 4] = _mm512_add_epi32(sum[g / 4], q[j]);
        }
        _mm512_storeu_si512(out->q + ((b * 8 + (size_t)g) * QT + t) * 4, pack4(q[0], q[1], q[2], q[3]));
    }
    _mm512_storeu_ps(out->d + b * QT + t, d);
    _mm512_storeu_ps(out->ds + b * QT + t, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(sum[0], sum[1]))));
    _mm512_storeu_si512(out->s + 2 * b * QT + t, sum[0]);
    _mm512_storeu_si512(out->s + (2 * b + 1) * QT + t, sum[1]);
}

void qf_rt_xquant_avx512(const float *x, size_t ldx, size_t nb, const qf_rt_xq *out) {
    for (size_t b = 0; b < nb; b++)
        for (size_t t = 0; t < QT; t += 16) xquant_block(x, ldx, b, t, out);
}

/* ---- softmax and SwiGLU (both paths; rt_kern.h) -----------------------------------------------------
 *
 * Fused versions of the reference in rt_kern.c: the same operations per element in the same order, so
 * the same bits; the exponential is qf_rt_exp16 (rt_exp512.h). */

/* Lanes j of a 16-column vector starting at column c that are >= j0 (the visible ones). */
INLINE __mmask16 from_col(uint32_t c, uint32_t j0) {
    return j0 <= c ? (__mmask16)0xffff : j0 >= c + 16 ? (__mmask16)0 : (__mmask16)(0xffffu << (j0 - c));
}

/* nt = 64 (the AVX-512 tile's columns): maxima in 4 zmm, sums in 8 zmm of doubles. */
void qf_rt_softmax_avx512(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv) {
    (void)tmp;
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 mx[4];
    __m512d sum[8];
    for (int v = 0; v < 4; v++) mx[v] = _mm512_set1_ps(-INFINITY);
    for (int v = 0; v < 8; v++) sum[v] = _mm512_setzero_pd();
    for (uint32_t p = 0; p < n_keys; p++) {
        const float *row = s + (size_t)p * 64;
        uint32_t j0 = qf_rt_first_seeing(p, base);
        for (int v = 0; v < 4; v++) {
            /* mx = v > mx ? v : mx on the visible lanes (false for NaN, as in the reference) */
            __m512 val = _mm512_mul_ps(_mm512_loadu_ps(row + 16 * v), vs);
            __mmask16 gt = _mm512_mask_cmp_ps_mask(from_col(16u * (uint32_t)v, j0), val, mx[v], _CMP_GT_OQ);
            mx[v] = _mm512_mask_mov_ps(mx[v], gt, val);
        }
    }
    for (uint32_t p = 0; p < n_keys; p++) {
        float *row = s + (size_t)p * 64;
        uint32_t j0 = qf_rt_first_seeing(p, base);
        for (int v = 0; v < 4; v++) {
            __mmask16 vis = from_col(16u * (uint32_t)v, j0);
            if (!vis) { _mm512_storeu_ps(row + 16 * v, _mm512_setzero_ps()); continue; }
            __m512 e = qf_rt_exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(row + 16 * v), vs), mx[v]));
            e = _mm512_maskz_mov_ps(vis, e);
            _mm512_storeu_ps(row + 16 * v, e);
            /* masked lanes add +0.0 to a sum of non-negative terms: no change */
            sum[2 * v] = _mm512_add_pd(sum[2 * v], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            sum[2 * v + 1] = _mm512_add_pd(sum[2 * v + 1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
        }
    }
    const __m512d one = _mm512_set1_pd(1.0);
    for (int v = 0; v < 8; v++) _mm256_storeu_ps(inv + 8 * v, _mm512_cvtpd_ps(_mm512_div_pd(one, sum[v])));
}

void qf_rt_glu_avx512(float *g, const float *u, float *e, size_t n) {
    size_t t = 0;
    for (; t + 16 <= n; t += 16) {
        __m512 gv = _mm512_loadu_ps(g + t);
        __m512 ev = qf_rt_exp16(_mm512_xor_ps(gv, _mm512_set1_ps(-0.0f))); /* -g: the sign flipped, as in C */
        _mm512_storeu_ps(g + t, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), ev)), _mm512_loadu_ps(u + t)));
    }
    if (t < n) qf_rt_glu_scalar(g + t, u + t, e + t, n - t);
}
