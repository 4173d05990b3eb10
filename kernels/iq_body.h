/*
 * iq_body.h — the quantizers of ggml's i-quants, written once and compiled once per ISA (iq_quant.c:
 * the scalar reference that defines the bytes; iq_quant_avx2.c). As in quant_body.h, every reduction is
 * 8 explicit lanes and a fixed tree (lanes.h), and the AVX2 passes keep lane l in vector lane l with the
 * same operations in the same order, so both builds write the same bytes.
 *
 * Every search minimises sum_i w_i (x_i - xhat_i)^2 with xhat exactly what ggml's dequantization
 * produces (F16-rounded scales, the integer scale codes, the format's true grid values), w = the
 * importance weights as given (imp = NULL: w = 1). ggml's own searches minimise a proxy (weights
 * hedged by magnitude, x^2 without an imatrix) and round the sub-block scales without re-choosing the
 * codes; docs/quant-types.md lists what each type here does instead.
 */
#include "kernels/iq_fit.h"
#include "kernels/iq_grids.h"
#include "kernels/lanes.h"

/* F16 rounding that never makes an infinity: scales beyond F16's range are held at its largest value
 * (their blocks clip instead of dequantizing to Inf/NaN). */
static inline float f16_sat(float v) {
    v = v > QF_F16_MAX ? QF_F16_MAX : v;
    v = v < -QF_F16_MAX ? -QF_F16_MAX : v;
    return f16_round(v);
}

/* ---- IQ4_NL / IQ4_XS: xhat = s * v[q] over ggml's 16 non-linear values ------------------------------------ */

/* Midpoints between neighbouring values: the nearest value's index is the count of midpoints <= a (an
 * exact midpoint goes up, as in ggml's best_index_int8). All are multiples of 0.5, exact in float. */
static const float nl_mid[15] = { -115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f, 19.0f, 31.5f, 45.5f, 61.0f, 79.0f, 101.0f };

typedef struct nl_sums { float sxq, sqq, err; } nl_sums;

/* Nearest codes of x * inv (n a multiple of 8) with sum w x v and sum w v^2; with err, also the exact
 * error sum w (x - s v)^2 and the codes into q. */
static inline nl_sums nl_pass(const float *x, const float *w, int n, float inv, float s, bool err, uint8_t *q) {
#if defined(QF_VEC_PASSES)
    const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(s);
    const __m256 lo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10), hi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
    __m256 axq = _mm256_setzero_ps(), aqq = axq, aer = axq;
    for (int k = 0; k < n; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), a = _mm256_mul_ps(xv, vinv);
        __m256i c = _mm256_setzero_si256();
        __m256 upper = _mm256_setzero_ps();
        for (int m = 0; m < 15; m++) {
            __m256 ge = _mm256_cmp_ps(a, _mm256_set1_ps(nl_mid[m]), _CMP_GE_OQ);
            c = _mm256_sub_epi32(c, _mm256_castps_si256(ge));
            if (m == 7) upper = ge;
        }
        __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), upper);
        __m256 wv = w ? _mm256_mul_ps(_mm256_loadu_ps(w + k), v) : v;
        axq = _mm256_add_ps(axq, _mm256_mul_ps(wv, xv));
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(wv, v));
        if (err) {
            __m256 e = _mm256_sub_ps(xv, _mm256_mul_ps(vs, v));
            __m256 we = w ? _mm256_mul_ps(_mm256_loadu_ps(w + k), e) : e;
            aer = _mm256_add_ps(aer, _mm256_mul_ps(we, e));
            __m128i c16 = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
            _mm_storel_epi64((__m128i *)(q + k), _mm_packus_epi16(c16, c16));
        }
    }
    return (nl_sums){ v_hsum8(axq), v_hsum8(aqq), err ? v_hsum8(aer) : 0.0f };
#else
    float axq[LN] = { 0 }, aqq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float xv = x[k + l], a = xv * inv;
            int c = 0;
            for (int m = 0; m < 15; m++) c += a >= nl_mid[m];
            float v = (float)qf_iq4nl_values[c], wv = w ? w[k + l] * v : v;
            axq[l] += wv * xv;
            aqq[l] += wv * v;
            if (err) {
                float e = xv - s * v, we = w ? w[k + l] * e : e;
                aer[l] += we * e;
                q[k + l] = (uint8_t)c;
            }
        }
    return (nl_sums){ hsum8(axq), hsum8(aqq), err ? hsum8(aer) : 0.0f };
#endif
}

/* The best least-squares scale of a 32-block over the starts ggml tries (its largest value mapped onto
 * the top value, and onto -127 + k for k = -7..7), judged as ggml judges them (sxq^2 / sqq, the error of
 * each start's codes under its own least-squares scale). 0 for an all-zero block. */
static inline float nl_scale(const float *x, const float *w, float m) {
    if (m == 0.0f) return 0.0f;
    float best_xq = 0.0f, best_qq = 1.0f, s = 0.0f;
    for (int k = -8; k <= 7; k++) {
        float inv = k < -7 ? 127.0f / m : ((float)k - 127.0f) / m;
        nl_sums c = nl_pass(x, w, 32, inv, 0.0f, false, NULL);
        if (c.sqq > 0.0f && c.sxq * c.sxq * best_qq > best_xq * best_xq * c.sqq) {
            best_xq = c.sxq;
            best_qq = c.sqq;
            s = c.sxq / c.sqq;
        }
    }
    return s;
}

/* Codes and exact error of a 32-block under the stored scale s (0: every value dequantizes to 0). */
static inline nl_sums nl_codes(const float *x, const float *w, float s, uint8_t *q) {
    return nl_pass(x, w, 32, safe_inv(s), s, true, q);
}

/* Alternate "least-squares scale for these codes" (F16) and "nearest codes for that scale" from the
 * F16 scale *s while the error drops, at most rounds times; q and *cur follow the best. */
static inline void nl_refine(const float *x, const float *w, int rounds, float *s, nl_sums *cur, uint8_t *q) {
    for (int r = 0; r < rounds && cur->sqq > 0.0f; r++) {
        float s2 = f16_sat(cur->sxq / cur->sqq);
        if (s2 == *s || !(s2 != 0.0f)) break;
        uint8_t qt[32];
        nl_sums nx = nl_codes(x, w, s2, qt);
        if (!(nx.err < cur->err)) break;
        *s = s2;
        *cur = nx;
        memcpy(q, qt, sizeof qt);
    }
}

bool QF_FN(qf_quantize_iq4_nl)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK, *w = WOFF(imp, i * QF_QK);
        uint8_t q[32];
        float s = f16_sat(nl_scale(xb, w, signed_absmax(xb, 32)));
        nl_sums c = nl_codes(xb, w, s, q);
        nl_refine(xb, w, 3, &s, &c, q);
        qf_pack_iq4_nl(q, f16_bits(s), (uint8_t *)y + i * sizeof(qf_block_iq4_nl));
    }
    return true;
}

/* IQ4_XS super-block under F16 super-scale d: per sub-block the integer factor l in [-32, 31] (stored
 * l + 32) nearest its least-squares scale and the two beside it, each with its codes re-chosen, the one
 * of least error kept. Returns the total error; ls and q take the choice. */
static inline float xs_assign(const float *x, const float *w, const float *sc, float d, int *ls, uint8_t *q) {
    float total = 0.0f, id = safe_inv(d);
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = x + 32 * ib, *wb = WOFF(w, 32 * ib);
        float t = sc[ib] * id;
        t = t < -32.0f ? -32.0f : t > 31.0f ? 31.0f : t;
        int l0 = (int)((t + RND_MAGIC) - RND_MAGIC), best_l = 0;
        float best = INFINITY;
        uint8_t qt[32];
        for (int l = l0 - 1; l <= l0 + 1; l++) {
            if (l < -32 || l > 31) continue;
            nl_sums c = nl_codes(xb, wb, d * (float)l, qt);
            if (c.err < best) {
                best = c.err;
                best_l = l;
                memcpy(q + 32 * ib, qt, sizeof qt);
            }
        }
        ls[ib] = best_l + 32;
        total += best;
    }
    return total;
}

bool QF_FN(qf_quantize_iq4_xs)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *xb = x + i * QF_QK_K, *w = WOFF(imp, i * QF_QK_K);
        float sc[8], ms = 0.0f;
        for (int ib = 0; ib < 8; ib++) {
            sc[ib] = nl_scale(xb + 32 * ib, WOFF(w, 32 * ib), signed_absmax(xb + 32 * ib, 32));
            ms = fabsf(sc[ib]) > fabsf(ms) ? sc[ib] : ms;
        }
        int ls[8] = { 32, 32, 32, 32, 32, 32, 32, 32 }, lt[8];
        uint8_t q[QF_QK_K], qt[QF_QK_K];
        memset(q, 8, sizeof q);
        float d = 0.0f;
        if (ms != 0.0f) {
            /* the largest sub-block scale onto factor -32 (ggml's choice) or onto +31 */
            const float starts[2] = { -ms / 32.0f, ms / 31.0f };
            float best = INFINITY;
            for (int k = 0; k < 2; k++) {
                float dk = f16_sat(starts[k]);
                if (!(dk != 0.0f)) continue;
                float e = xs_assign(xb, w, sc, dk, lt, qt);
                if (e < best) {
                    best = e;
                    d = dk;
                    memcpy(ls, lt, sizeof ls);
                    memcpy(q, qt, sizeof q);
                }
            }
        }
        qf_pack_iq4_xs(q, ls, f16_bits(d), (uint8_t *)y + i * sizeof(qf_block_iq4_xs));
    }
    return true;
}
