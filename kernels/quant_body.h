/*
 * quant_body.h — the quantizers of the integer-code types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 with weights,
 * Q2_K..Q6_K), written once and compiled once per ISA.
 *
 * The including file defines QF_SFX (the function-name suffix: empty for the scalar reference, _avx2)
 * and is compiled with that ISA's flags; k_quant.c and quant_avx2.c do exactly that (AVX-512 machines
 * use the AVX2 build: 16- and 32-element sub-blocks gain nothing from 16 lanes). Why one source: the searches make decisions from float sums, so a SIMD variant is only
 * byte-identical to the scalar reference if it performs the same float operations in the same order.
 * Every reduction is written as 8 explicit lanes (lane l sums elements l, l+8, l+16, ...) followed by a
 * fixed reduction tree; the AVX2 build replaces the hot passes by intrinsics that keep lane l in vector
 * lane l and do the same operations in the same order. ISO C11 forbids contracting a*b+c into an FMA (GCC's
 * default for -std=c11; clang is told below), so the AVX2 build rounds exactly like the scalar one.
 *
 * The searches (docs/quant-types.md) minimise sum_i w_i (x_i - xhat_i)^2 where xhat is what the
 * dequantizer produces, F16 rounding of stored scales included:
 *   pass    : nearest codes for a given grid, with the sums a least-squares refit needs and the exact
 *             error, in one sweep;
 *   refine  : alternate "least-squares grid for these codes" and "nearest codes for that grid" while
 *             the error drops (it converges in 1-3 rounds);
 *   seeds   : ggml's own round-to-nearest block is always the first candidate, so no block is worse
 *             than ggml's plain quantization; importance weights add a few more starting grids.
 */
#include "kernels/lanes.h"

/* ---- symmetric grids: xhat = s * q, q in [lo, hi] ------------------------------------------------------ */

typedef struct sym_sums { float sxq, sqq, err; } sym_sums;

/* Nearest codes q (as floats) of x for scale s, with sum w x q, sum w q^2 and the error sum w (x - s q)^2. */
static inline sym_sums sym_pass(const float *x, const float *w, int n, float s, float lo, float hi, float *q) {
#if defined(QF_VEC_PASSES)
    const __m256 vinv = _mm256_set1_ps(safe_inv(s)), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi),
                 vs = _mm256_set1_ps(s);
    __m256 axq = _mm256_setzero_ps(), aqq = axq, aer = axq;
    for (int k = 0; k < n; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = VWLOAD(k);
        __m256 r = v_round(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(xv, vinv), vlo), vhi));
        __m256 e = _mm256_sub_ps(xv, _mm256_mul_ps(r, vs));
        axq = _mm256_add_ps(axq, _mm256_mul_ps(VW(xv), r));
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(VW(r), r));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(VW(e), e));
        _mm256_storeu_ps(q + k, r);
    }
    return (sym_sums){ v_hsum8(axq), v_hsum8(aqq), v_hsum8(aer) };
#else
    float inv = safe_inv(s), axq[LN] = { 0 }, aqq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = x[k + l] * inv;
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            float wi = w ? w[k + l] : 1.0f;
            float r = (v + RND_MAGIC) - RND_MAGIC, wx = wi * x[k + l], e = x[k + l] - r * s;
            axq[l] += wx * r;
            aqq[l] += wi * r * r;
            aer[l] += wi * e * e;
            q[k + l] = r;
        }
    return (sym_sums){ hsum8(axq), hsum8(aqq), hsum8(aer) };
#endif
}

/* ggml's round-to-nearest symmetric block: codes min(top, (int)(x*id + off)) - half with id = 1/d0 of the
 * unrounded scale d0 = m/-half, stored as F16(d0) = s; its error under the stored scale. */
static inline sym_sums sym_pass_ggml(const float *x, const float *w, int n, float d0, float s, float half, float *q) {
#if defined(QF_VEC_PASSES)
    const __m256 vid = _mm256_set1_ps(d0 != 0.0f ? 1.0f / d0 : 0.0f), voff = _mm256_set1_ps(half + 0.5f),
                 vtop = _mm256_set1_ps(2.0f * half - 0.5f), vhalf = _mm256_set1_ps(half), vs = _mm256_set1_ps(s);
    __m256 axq = _mm256_setzero_ps(), aqq = axq, aer = axq;
    for (int k = 0; k < n; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = VWLOAD(k);
        __m256 v = _mm256_add_ps(_mm256_mul_ps(xv, vid), voff);
        v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), vtop);
        __m256 r = _mm256_sub_ps(v_floor_pos(v), vhalf);
        __m256 e = _mm256_sub_ps(xv, _mm256_mul_ps(r, vs));
        axq = _mm256_add_ps(axq, _mm256_mul_ps(VW(xv), r));
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(VW(r), r));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(VW(e), e));
        _mm256_storeu_ps(q + k, r);
    }
    return (sym_sums){ v_hsum8(axq), v_hsum8(aqq), v_hsum8(aer) };
#else
    float id = d0 != 0.0f ? 1.0f / d0 : 0.0f, top = 2.0f * half - 1.0f;
    float axq[LN] = { 0 }, aqq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = x[k + l] * id + (half + 0.5f);
            /* only rounding noise goes below 0; truncation maps it to 0 too. Written as maxps/minps
             * compute them (second operand when unordered): a NaN (0 * an id that overflowed to inf, for
             * a subnormal-range block) then clamps as in the AVX2 build instead of reaching (int)NaN */
            v = v > 0.0f ? v : 0.0f;
            v = v < top + 0.5f ? v : top + 0.5f;
            float r = (v + RND_MAGIC) - RND_MAGIC; /* nearest, then down if that was up: floor(v) */
            r = r > v ? r - 1.0f : r;
            r -= half;
            float wi = w ? w[k + l] : 1.0f;
            float wx = wi * x[k + l], e = x[k + l] - r * s;
            axq[l] += wx * r;
            aqq[l] += wi * r * r;
            aer[l] += wi * e * e;
            q[k + l] = r;
        }
    return (sym_sums){ hsum8(axq), hsum8(aqq), hsum8(aer) };
#endif
}

/* Alternate least-squares scale and nearest codes from (s, sums, q) while the error drops, at most
 * `rounds` times; f16 = the scale is stored as F16. Returns the best scale; q and *cur follow it. */
static inline float sym_refine(const float *x, const float *w, int n, float lo, float hi, bool f16, int rounds,
                               float s, sym_sums *cur, float *q) {
    for (int r = 0; r < rounds && cur->sqq > 0.0f; r++) {
        float s2 = cur->sxq / cur->sqq;
        if (f16) s2 = f16_round(s2);
        if (s2 == s || !(s2 != 0.0f)) break;
        float qt[QF_QK];
        sym_sums nx = sym_pass(x, w, n, s2, lo, hi, qt);
        if (!(nx.err < cur->err)) break;
        s = s2;
        *cur = nx;
        memcpy(q, qt, (size_t)n * sizeof *q);
    }
    return s;
}

/* Best symmetric block (n <= 32) starting from scale s0 = m/c for each code c in starts[0..nstarts): the
 * refined candidate with the least error replaces (s, q, err) if it beats them. */
static inline float sym_starts(const float *x, const float *w, int n, float lo, float hi, bool f16, float m,
                               const float *starts, int nstarts, int rounds, float s, float *err, float *q) {
    for (int i = 0; i < nstarts; i++) {
        float s0 = m / starts[i], qt[QF_QK];
        if (f16) s0 = f16_round(s0);
        if (!(s0 != 0.0f) || s0 == s) continue;
        sym_sums c = sym_pass(x, w, n, s0, lo, hi, qt);
        s0 = sym_refine(x, w, n, lo, hi, f16, rounds, s0, &c, qt);
        if (c.err < *err) { *err = c.err; s = s0; memcpy(q, qt, (size_t)n * sizeof *q); }
    }
    return s;
}

/* ---- affine grids: xhat = s * q + b, q in [0, hi] -------------------------------------------------------- */

typedef struct aff_sums { float sq, sqq, sxq, err; } aff_sums;

static inline aff_sums aff_pass(const float *x, const float *w, int n, float s, float b, float hi, float *q) {
#if defined(QF_VEC_PASSES)
    const __m256 vinv = _mm256_set1_ps(safe_inv(s)), vhi = _mm256_set1_ps(hi), vs = _mm256_set1_ps(s),
                 vb = _mm256_set1_ps(b);
    __m256 aq = _mm256_setzero_ps(), aqq = aq, axq = aq, aer = aq;
    for (int k = 0; k < n; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = VWLOAD(k);
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(xv, vb), vinv);
        __m256 r = v_round(_mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), vhi));
        __m256 wr = VW(r), e = _mm256_sub_ps(xv, _mm256_add_ps(_mm256_mul_ps(r, vs), vb));
        aq = _mm256_add_ps(aq, wr);
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(wr, r));
        axq = _mm256_add_ps(axq, _mm256_mul_ps(wr, xv));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(VW(e), e));
        _mm256_storeu_ps(q + k, r);
    }
    return (aff_sums){ v_hsum8(aq), v_hsum8(aqq), v_hsum8(axq), v_hsum8(aer) };
#else
    float inv = safe_inv(s), aq[LN] = { 0 }, aqq[LN] = { 0 }, axq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = (x[k + l] - b) * inv;
            v = v < 0.0f ? 0.0f : v;
            v = v > hi ? hi : v;
            float wi = w ? w[k + l] : 1.0f;
            float r = (v + RND_MAGIC) - RND_MAGIC, wr = wi * r, e = x[k + l] - (r * s + b);
            aq[l] += wr;
            aqq[l] += wr * r;
            axq[l] += wr * x[k + l];
            aer[l] += wi * e * e;
            q[k + l] = r;
        }
    return (aff_sums){ hsum8(aq), hsum8(aqq), hsum8(axq), hsum8(aer) };
#endif
}

/* sum w and sum w x of a block: fixed for every affine candidate. */
static inline void w_sums(const float *x, const float *w, int n, float *sw, float *sx) {
#if defined(QF_VEC_PASSES)
    __m256 a = _mm256_setzero_ps(), b = a;
    for (int k = 0; k < n; k += LN) {
        __m256 wv = VWLOAD(k);
        a = _mm256_add_ps(a, w ? wv : _mm256_set1_ps(1.0f));
        b = _mm256_add_ps(b, VW(_mm256_loadu_ps(x + k)));
    }
    *sw = v_hsum8(a);
    *sx = v_hsum8(b);
#else
    float a[LN] = { 0 }, b[LN] = { 0 };
    for (int k = 0; k < n; k += LN)
        for (int l = 0; l < LN; l++) {
            float wi = w ? w[k + l] : 1.0f;
            a[l] += wi;
            b[l] += wi * x[k + l];
        }
    *sw = hsum8(a);
    *sx = hsum8(b);
#endif
}

/* Least-squares (s, b) for fixed codes; b_le0 = the format stores only b <= 0 (K-quant mins). False if
 * the codes do not determine a positive scale. */
static inline bool aff_solve(float sw, float sx, const aff_sums *a, bool b_le0, float *s, float *b) {
    double det = (double)sw * a->sqq - (double)a->sq * a->sq;
    if (!(det > 0)) return false;
    double idet = 1.0 / det; /* one division instead of two: it is on every refit's critical path */
    double ss = ((double)sw * a->sxq - (double)a->sq * sx) * idet;
    double bb = ((double)a->sqq * sx - (double)a->sq * a->sxq) * idet;
    if (b_le0 && bb > 0) { bb = 0; ss = (double)a->sxq / a->sqq; }
    if (!(ss > 0)) return false;
    *s = (float)ss;
    *b = (float)bb;
    return true;
}

/* Weighted error of fixed codes under (s, b) less the constant sum w x^2, from the pass sums. */
static inline double aff_err_rel(float sw, float sx, const aff_sums *a, float s, float b) {
    double S = s, B = b;
    return S * S * a->sqq + 2.0 * S * B * a->sq + B * B * sw - 2.0 * S * a->sxq - 2.0 * B * sx;
}

/* The affine counterpart of sym_refine. */
static inline void aff_refine(const float *x, const float *w, int n, float sw, float sx, float hi, bool f16,
                              bool b_le0, int rounds, float *s, float *b, aff_sums *cur, float *q) {
    for (int r = 0; r < rounds; r++) {
        float s2, b2;
        if (!aff_solve(sw, sx, cur, b_le0, &s2, &b2)) break;
        if (f16) f16_round2(&s2, &b2);
        if ((s2 == *s && b2 == *b) || !(s2 != 0.0f)) break;
        float qt[QF_QK];
        aff_sums nx = aff_pass(x, w, n, s2, b2, hi, qt);
        if (!(nx.err < cur->err)) break;
        *s = s2;
        *b = b2;
        *cur = nx;
        memcpy(q, qt, (size_t)n * sizeof *q);
    }
}

/* ---- legacy 32-blocks ------------------------------------------------------------------------------------- */

/* Low nibbles hold elements 0..15, high nibbles 16..31 (ggml's order); q are unsigned codes. */
static inline void pack_nibbles32(const float *q, uint8_t *qs) {
#if defined(QF_VEC_PASSES)
    const __m256i m4 = _mm256_set1_epi32(0xF);
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = _mm256_and_si256(_mm256_cvttps_epi32(_mm256_loadu_ps(q + 8 * k)), m4);
    __m256i b0 = _mm256_or_si256(i[0], _mm256_slli_epi32(i[2], 4)), b1 = _mm256_or_si256(i[1], _mm256_slli_epi32(i[3], 4));
    __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(b0, b1), 0xD8); /* 16 words in order */
    __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storeu_si128((__m128i *)qs, b);
#else
    for (int j = 0; j < QF_QK / 2; j++) qs[j] = (uint8_t)(((int)q[j] & 0xF) | ((int)q[j + 16] & 0xF) << 4);
#endif
}

/* Bit 4 of each code as Q5's little-endian 32-bit high-bit word. */
static inline void pack_high32(const float *q, uint8_t *qh) {
    uint32_t h = 0;
#if defined(QF_VEC_PASSES)
    for (int k = 0; k < 4; k++) {
        __m256 hi = _mm256_cmp_ps(_mm256_loadu_ps(q + 8 * k), _mm256_set1_ps(15.5f), _CMP_GT_OQ);
        h |= (uint32_t)_mm256_movemask_ps(hi) << (8 * k);
    }
#else
    for (int j = 0; j < QF_QK; j++) h |= (uint32_t)(((int)q[j] >> 4) & 1) << j;
#endif
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

/* Symmetric block (Q4_0: half 8, Q5_0: half 16): ggml's RTN block, refined; with weights also the
 * unweighted result and a few more starts. Writes unsigned codes (q + half) and returns the F16 scale. */
QF_AINLINE uint16_t sym_block(const float *x, const float *imp, float half, float *q) {
    float lo = -half, hi = half - 1.0f, m = signed_absmax(x, QF_QK);
    if (m == 0.0f) {
        for (int j = 0; j < QF_QK; j++) q[j] = half;
        return 0;
    }
    const float *w = imp;
    float s = f16_round(m / -half);
    sym_sums c = sym_pass_ggml(x, NULL, QF_QK, m / -half, s, half, q);
    /* one least-squares refit of the scale for ggml's codes, kept when it lowers the error. The change
     * err(s1) - err(s) = (s1 - s) ((s1 + s) sqq - 2 sxq) needs no second pass and does not cancel
     * against sum x^2. Re-assigning codes after it would gain little for its cost (a full pass). */
    if (c.sqq > 0.0f) {
        float s1 = f16_round(c.sxq / c.sqq);
        double delta = ((double)s1 - s) * (((double)s1 + s) * c.sqq - 2.0 * c.sxq);
        s = s1 != 0.0f && delta < 0.0 ? s1 : s; /* an unpredictable choice: a select, not a branch */
    }
    if (imp) {
        /* re-score the unweighted result under the weights, then let weighted starts compete */
        float qt[QF_QK];
        sym_sums cw = sym_pass(x, w, QF_QK, s, lo, hi, qt);
        memcpy(q, qt, sizeof qt);
        s = sym_refine(x, w, QF_QK, lo, hi, true, 1, s, &cw, q);
        float err = cw.err;
        /* the extreme mapped onto codes around the ends, beyond them too (clipping it can pay when
         * its weight is small) */
        const float starts[] = { lo - 0.5f, lo - 0.25f, lo + 0.25f, lo + 0.5f, lo + 0.75f, lo + 1.0f, hi, hi - 0.5f };
        s = sym_starts(x, w, QF_QK, lo, hi, true, m, starts, 8, 1, s, &err, q);
        /* the winner refined further: rounds there pay more than rounds on every start */
        sym_sums cb = sym_pass(x, w, QF_QK, s, lo, hi, q);
        s = sym_refine(x, w, QF_QK, lo, hi, true, 3, s, &cb, q);
    }
    for (int j = 0; j < QF_QK; j++) q[j] += half;
    return f16_bits(s);
}

#if defined(QF_VEC_PASSES)
/* minmax's lanes for the 8 consecutive n-element blocks at x, one block per vector: a[k] and c[k] hold
 * block k's 8 lane minima and maxima, ready for the lane-transposing trees v_tree8_min/max. */
static inline void v_lane_minmax8(const float *x, int n, __m256 *a, __m256 *c) {
    for (int k = 0; k < 8; k++) {
        const float *xb = x + k * n;
        __m256 mn = _mm256_loadu_ps(xb), mx = mn;
        for (int j = LN; j < n; j += LN) {
            __m256 v = _mm256_loadu_ps(xb + j);
            mn = _mm256_min_ps(v, mn);
            mx = _mm256_max_ps(v, mx);
        }
        a[k] = mn;
        c[k] = mx;
    }
}

/* signed_absmax of the 8 consecutive n-element blocks at x, one per lane. */
static inline __m256 v_signed_absmax8(const float *x, int n) {
    __m256 a[8], c[8];
    v_lane_minmax8(x, n, a, c);
    /* hi where hi > -lo, lo where -lo > hi, the first of the two in x on a tie */
    __m256 lo = v_tree8_min(a), hi = v_tree8_max(c), nlo = _mm256_sub_ps(_mm256_setzero_ps(), lo);
    __m256 gt = _mm256_cmp_ps(hi, nlo, _CMP_GT_OQ), lt = _mm256_cmp_ps(nlo, hi, _CMP_GT_OQ);
    __m256 m = _mm256_blendv_ps(_mm256_and_ps(lt, lo), hi, gt);
    int tie = 0xFF & ~_mm256_movemask_ps(_mm256_or_ps(gt, lt));
    if (tie) { /* rare: equal magnitudes (all-zero blocks included) */
        float mv[8];
        _mm256_storeu_ps(mv, m);
        for (int k = 0; k < 8; k++)
            if (tie >> k & 1) mv[k] = signed_absmax(x + k * n, n);
        m = _mm256_loadu_ps(mv);
    }
    return m;
}

/* sym_block(x + 32k, NULL, half) for k = 0..7, one block per lane wherever a block is reduced to a few
 * numbers (signed extreme, grid, pass sums, refit decision), as aff_group8 does for affine blocks.
 * Unsigned codes into q, F16 scales into the 16-bit fields at d (blocks stride bytes apart). */
static inline void sym_group8(const float *x, float half, float *q, uint16_t *d, size_t stride) {
    __m256 m = v_signed_absmax8(x, QF_QK);
    __m256 d0 = _mm256_div_ps(m, _mm256_set1_ps(-half));
    __m256 id = _mm256_and_ps(_mm256_cmp_ps(d0, _mm256_setzero_ps(), _CMP_NEQ_UQ), _mm256_div_ps(_mm256_set1_ps(1.0f), d0));
    __m256 s = v_f16_round(d0);
    float idv[8];
    _mm256_storeu_ps(idv, id);
    __m256 sxq[8], sqq[8];
    const __m256 voff = _mm256_set1_ps(half + 0.5f), vtop = _mm256_set1_ps(2.0f * half - 0.5f), vhalf = _mm256_set1_ps(half);
    for (int k = 0; k < 8; k++) { /* sym_pass_ggml without weights; codes stored unsigned (r + half) */
        const float *xb = x + k * QF_QK;
        const __m256 vid = _mm256_set1_ps(idv[k]);
        __m256 axq = _mm256_setzero_ps(), aqq = axq;
        for (int j = 0; j < QF_QK; j += LN) {
            __m256 xv = _mm256_loadu_ps(xb + j);
            __m256 v = _mm256_add_ps(_mm256_mul_ps(xv, vid), voff);
            v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), vtop);
            __m256 u = _mm256_floor_ps(v), r = _mm256_sub_ps(u, vhalf); /* v in [0, 2 half]: = v_floor_pos */
            axq = _mm256_add_ps(axq, _mm256_mul_ps(xv, r));
            aqq = _mm256_add_ps(aqq, _mm256_mul_ps(r, r));
            _mm256_storeu_ps(q + k * QF_QK + j, u);
        }
        sxq[k] = axq;
        sqq[k] = aqq;
    }
    /* sym_block's one refit, kept where delta < 0 (in double, two halves) */
    __m256 XQ = v_tree8_add(sxq), QQ = v_tree8_add(sqq);
    __m256 s1 = v_f16_round(_mm256_div_ps(XQ, QQ));
    int take = _mm256_movemask_ps(_mm256_cmp_ps(QQ, _mm256_setzero_ps(), _CMP_GT_OQ)) &
               _mm256_movemask_ps(_mm256_cmp_ps(s1, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    const __m256d two = _mm256_set1_pd(2.0);
    for (int h = 0; h < 2; h++) {
        __m256d S1 = h ? v_hi_pd(s1) : v_lo_pd(s1), S = h ? v_hi_pd(s) : v_lo_pd(s);
        __m256d Q2 = h ? v_hi_pd(QQ) : v_lo_pd(QQ), X = h ? v_hi_pd(XQ) : v_lo_pd(XQ);
        __m256d delta = _mm256_mul_pd(_mm256_sub_pd(S1, S),
                                      _mm256_sub_pd(_mm256_mul_pd(_mm256_add_pd(S1, S), Q2), _mm256_mul_pd(two, X)));
        int neg = _mm256_movemask_pd(_mm256_cmp_pd(delta, _mm256_setzero_pd(), _CMP_LT_OQ));
        take &= ~(0xF << 4 * h) | neg << 4 * h;
    }
    s = _mm256_blendv_ps(s, s1, v_lanes(take));
    s = _mm256_andnot_ps(_mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_EQ_OQ), s); /* m == 0: scale 0 */
    v_store_f16(s, d, stride);
}
#endif

bool QF_FN(qf_quantize_q4_0)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_q4_0 *b = y;
    /* two loops so the inlined block fit is specialised for unit weights in the first */
    if (!imp) {
        int64_t i = 0;
#if defined(QF_VEC_PASSES)
        for (; i + 8 <= n / QF_QK; i += 8) {
            float q[8 * QF_QK];
            sym_group8(x + i * QF_QK, 8.0f, q, &b[i].d, sizeof *b);
            for (int k = 0; k < 8; k++) {
                pack_nibbles32(q + k * QF_QK, b[i + k].qs);
            }
        }
#endif
        for (; i < n / QF_QK; i++) {
            float q[QF_QK];
            b[i].d = sym_block(x + i * QF_QK, NULL, 8.0f, q);
            pack_nibbles32(q, b[i].qs);
        }
    } else {
        for (int64_t i = 0; i < n / QF_QK; i++) {
            float q[QF_QK];
            b[i].d = sym_block(x + i * QF_QK, imp + i * QF_QK, 8.0f, q);
            pack_nibbles32(q, b[i].qs);
        }
    }
    return true;
}

bool QF_FN(qf_quantize_q5_0)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_q5_0 *b = y;
    /* two loops so the inlined block fit is specialised for unit weights in the first */
    if (!imp) {
        int64_t i = 0;
#if defined(QF_VEC_PASSES)
        for (; i + 8 <= n / QF_QK; i += 8) {
            float q[8 * QF_QK];
            sym_group8(x + i * QF_QK, 16.0f, q, &b[i].d, sizeof *b);
            for (int k = 0; k < 8; k++) {
                pack_nibbles32(q + k * QF_QK, b[i + k].qs);
                pack_high32(q + k * QF_QK, b[i + k].qh);
            }
        }
#endif
        for (; i < n / QF_QK; i++) {
            float q[QF_QK];
            b[i].d = sym_block(x + i * QF_QK, NULL, 16.0f, q);
            pack_nibbles32(q, b[i].qs);
            pack_high32(q, b[i].qh);
        }
    } else {
        for (int64_t i = 0; i < n / QF_QK; i++) {
            float q[QF_QK];
            b[i].d = sym_block(x + i * QF_QK, imp + i * QF_QK, 16.0f, q);
            pack_nibbles32(q, b[i].qs);
            pack_high32(q, b[i].qh);
        }
    }
    return true;
}

/* ggml's round-to-nearest affine block: d0 = (hi-lo)/top, codes min(top, (int)((x-lo)/d0 + 0.5)), stored as
 * F16(d0) = s, F16(lo) = b; its error under the stored values. */
static inline aff_sums aff_pass_ggml(const float *x, const float *w, float lo, float d0, float s, float b, float top,
                                     float *q) {
#if defined(QF_VEC_PASSES)
    const __m256 vid = _mm256_set1_ps(d0 != 0.0f ? 1.0f / d0 : 0.0f), vlo = _mm256_set1_ps(lo),
                 vtop = _mm256_set1_ps(top + 0.5f), vs = _mm256_set1_ps(s), vb = _mm256_set1_ps(b),
                 half = _mm256_set1_ps(0.5f);
    __m256 aq = _mm256_setzero_ps(), aqq = aq, axq = aq, aer = aq;
    for (int k = 0; k < QF_QK; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = VWLOAD(k);
        __m256 v = _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(xv, vlo), vid), half), vtop);
        __m256 r = v_floor_pos(v);
        __m256 wr = VW(r), e = _mm256_sub_ps(xv, _mm256_add_ps(_mm256_mul_ps(r, vs), vb));
        aq = _mm256_add_ps(aq, wr);
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(wr, r));
        axq = _mm256_add_ps(axq, _mm256_mul_ps(wr, xv));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(VW(e), e));
        _mm256_storeu_ps(q + k, r);
    }
    return (aff_sums){ v_hsum8(aq), v_hsum8(aqq), v_hsum8(axq), v_hsum8(aer) };
#else
    float id = d0 != 0.0f ? 1.0f / d0 : 0.0f;
    float aq[LN] = { 0 }, aqq[LN] = { 0 }, axq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < QF_QK; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = (x[k + l] - lo) * id + 0.5f;
            v = v < top + 0.5f ? v : top + 0.5f; /* minps's order: NaN (0 * inf) clamps as in AVX2 */
            float r = (v + RND_MAGIC) - RND_MAGIC;
            r = r > v ? r - 1.0f : r; /* floor(v), v >= 0.5 */
            float wi = w ? w[k + l] : 1.0f;
            float wr = wi * r, e = x[k + l] - (r * s + b);
            aq[l] += wr;
            aqq[l] += wr * r;
            axq[l] += wr * x[k + l];
            aer[l] += wi * e * e;
            q[k + l] = r;
        }
    return (aff_sums){ hsum8(aq), hsum8(aqq), hsum8(axq), hsum8(aer) };
#endif
}

/* Affine block (Q4_1: top 15, Q5_1: top 31), seeded with ggml's RTN block; returns F16 scale and min. */
QF_AINLINE void aff_block(const float *x, const float *imp, float top, uint16_t *d, uint16_t *mn, float *q) {
    float lo, hi;
    minmax(x, QF_QK, &lo, &hi);
    float sw, sx, s = (hi - lo) / top, b = lo;
    f16_round2(&s, &b);
    w_sums(x, NULL, QF_QK, &sw, &sx);
    aff_sums c = aff_pass_ggml(x, NULL, lo, (hi - lo) / top, s, b, top, q);
    /* one least-squares refit of scale and min for ggml's codes, kept when it lowers the error (judged
     * from the sums: the error less its constant sum x^2, in double; no second pass) */
    float s1, b1;
    if (aff_solve(sw, sx, &c, false, &s1, &b1)) {
        f16_round2(&s1, &b1);
        double e0 = aff_err_rel(sw, sx, &c, s, b), e1 = aff_err_rel(sw, sx, &c, s1, b1);
        bool take = s1 != 0.0f && e1 < e0; /* an unpredictable choice: selects, not a branch */
        s = take ? s1 : s;
        b = take ? b1 : b;
    }
    if (imp) {
        float qt[QF_QK];
        w_sums(x, imp, QF_QK, &sw, &sx);
        aff_sums cw = aff_pass(x, imp, QF_QK, s, b, top, qt);
        memcpy(q, qt, sizeof qt);
        aff_refine(x, imp, QF_QK, sw, sx, top, true, false, 2, &s, &b, &cw, q);
        for (int k = -2; k <= 2 && hi > lo; k++) { /* more starts: the range onto top + k/2 codes */
            float s0 = f16_round((hi - lo) / (top + 0.5f * (float)k)), b0 = f16_round(lo);
            aff_sums ct = aff_pass(x, imp, QF_QK, s0, b0, top, qt);
            aff_refine(x, imp, QF_QK, sw, sx, top, true, false, 2, &s0, &b0, &ct, qt);
            if (ct.err < cw.err) { cw = ct; s = s0; b = b0; memcpy(q, qt, sizeof qt); }
        }
    }
    *d = f16_bits(s);
    *mn = f16_bits(b);
}

#if defined(QF_VEC_PASSES)
/* aff_block's refit decision (aff_solve, f16_round2, aff_err_rel and "take if lower"), in double lanes
 * for four blocks: the same operations in the same order. Returns the 4-bit mask of blocks whose
 * refit is kept; s1, b1 get the refit values. */
static inline int aff_refit4(double swv, __m256d Q, __m256d QQ, __m256d XQ, __m256d X, __m128 s, __m128 b,
                             __m128 *s1o, __m128 *b1o) {
    const __m256d sw = _mm256_set1_pd(swv), two = _mm256_set1_pd(2.0), zero = _mm256_setzero_pd();
    __m256d det = _mm256_sub_pd(_mm256_mul_pd(sw, QQ), _mm256_mul_pd(Q, Q));
    __m256d idet = _mm256_div_pd(_mm256_set1_pd(1.0), det);
    __m256d ss = _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(sw, XQ), _mm256_mul_pd(Q, X)), idet);
    __m256d bb = _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(QQ, X), _mm256_mul_pd(Q, XQ)), idet);
    int ok = _mm256_movemask_pd(_mm256_cmp_pd(det, zero, _CMP_GT_OQ)) & _mm256_movemask_pd(_mm256_cmp_pd(ss, zero, _CMP_GT_OQ));
    __m128 s1 = _mm_cvtph_ps(_mm_cvtps_ph(_mm256_cvtpd_ps(ss), _MM_FROUND_TO_NEAREST_INT));
    __m128 b1 = _mm_cvtph_ps(_mm_cvtps_ph(_mm256_cvtpd_ps(bb), _MM_FROUND_TO_NEAREST_INT));
    ok &= _mm_movemask_ps(_mm_cmp_ps(s1, _mm_setzero_ps(), _CMP_NEQ_UQ));
    __m256d e[2];
    for (int t = 0; t < 2; t++) { /* aff_err_rel of (s, b), then of (s1, b1) */
        __m256d S = _mm256_cvtps_pd(t ? s1 : s), B = _mm256_cvtps_pd(t ? b1 : b), S2 = _mm256_mul_pd(two, S);
        __m256d v = _mm256_add_pd(_mm256_mul_pd(_mm256_mul_pd(S, S), QQ), _mm256_mul_pd(_mm256_mul_pd(S2, B), Q));
        v = _mm256_add_pd(v, _mm256_mul_pd(_mm256_mul_pd(B, B), sw));
        v = _mm256_sub_pd(v, _mm256_mul_pd(S2, XQ));
        e[t] = _mm256_sub_pd(v, _mm256_mul_pd(_mm256_mul_pd(two, B), X));
    }
    *s1o = s1;
    *b1o = b1;
    return ok & _mm256_movemask_pd(_mm256_cmp_pd(e[1], e[0], _CMP_LT_OQ));
}

/* aff_block(x + 32k, NULL, top) for k = 0..7 with one block per lane wherever a block is reduced to a
 * few numbers: the range, the grid and its reciprocal, the pass sums and the refit run 8-wide instead
 * of as one latency-bound scalar chain per block (the element passes stay per block). Codes into q,
 * F16 scale and min into the 16-bit fields at d and m (blocks stride bytes apart). */
static inline void aff_group8(const float *x, float top, float *q, uint16_t *d, uint16_t *m, size_t stride) {
    __m256 a[8], c[8];
    v_lane_minmax8(x, QF_QK, a, c);
    __m256 lo = v_tree8_min(a), hi = v_tree8_max(c);
    __m256 d0 = _mm256_div_ps(_mm256_sub_ps(hi, lo), _mm256_set1_ps(top));
    __m256 id = _mm256_and_ps(_mm256_cmp_ps(d0, _mm256_setzero_ps(), _CMP_NEQ_UQ), _mm256_div_ps(_mm256_set1_ps(1.0f), d0));
    __m256 s = v_f16_round(d0), b = v_f16_round(lo);
    float lov[8], idv[8];
    _mm256_storeu_ps(lov, lo);
    _mm256_storeu_ps(idv, id);
    __m256 sq[8], sqq[8], sxq[8], sx[8];
    const __m256 vtop = _mm256_set1_ps(top + 0.5f), half = _mm256_set1_ps(0.5f);
    for (int k = 0; k < 8; k++) { /* aff_pass_ggml and w_sums without weights */
        const float *xb = x + k * QF_QK;
        const __m256 vlo = _mm256_set1_ps(lov[k]), vid = _mm256_set1_ps(idv[k]);
        __m256 aq = _mm256_setzero_ps(), aqq = aq, axq = aq, ax = aq;
        for (int j = 0; j < QF_QK; j += LN) {
            __m256 xv = _mm256_loadu_ps(xb + j);
            __m256 v = _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(xv, vlo), vid), half), vtop);
            __m256 r = _mm256_floor_ps(v); /* v in [0.5, top + 0.5]: equals v_floor_pos, one instruction */
            aq = _mm256_add_ps(aq, r);
            aqq = _mm256_add_ps(aqq, _mm256_mul_ps(r, r));
            axq = _mm256_add_ps(axq, _mm256_mul_ps(r, xv));
            ax = _mm256_add_ps(ax, xv);
            _mm256_storeu_ps(q + k * QF_QK + j, r);
        }
        sq[k] = aq;
        sqq[k] = aqq;
        sxq[k] = axq;
        sx[k] = ax;
    }
    __m256 Q = v_tree8_add(sq), QQ = v_tree8_add(sqq), XQ = v_tree8_add(sxq), X = v_tree8_add(sx);
    __m128 s1l, b1l, s1h, b1h;
    int take = aff_refit4((float)QF_QK, v_lo_pd(Q), v_lo_pd(QQ), v_lo_pd(XQ), v_lo_pd(X), _mm256_castps256_ps128(s),
                          _mm256_castps256_ps128(b), &s1l, &b1l);
    take |= aff_refit4((float)QF_QK, v_hi_pd(Q), v_hi_pd(QQ), v_hi_pd(XQ), v_hi_pd(X), _mm256_extractf128_ps(s, 1),
                       _mm256_extractf128_ps(b, 1), &s1h, &b1h) << 4;
    __m256 t = v_lanes(take);
    s = _mm256_blendv_ps(s, _mm256_insertf128_ps(_mm256_castps128_ps256(s1l), s1h, 1), t);
    b = _mm256_blendv_ps(b, _mm256_insertf128_ps(_mm256_castps128_ps256(b1l), b1h, 1), t);
    v_store_f16(s, d, stride);
    v_store_f16(b, m, stride);
}
#endif

bool QF_FN(qf_quantize_q4_1)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_q4_1 *b = y;
    /* two loops so the inlined block fit is specialised for unit weights in the first */
    if (!imp) {
        int64_t i = 0;
#if defined(QF_VEC_PASSES)
        for (; i + 8 <= n / QF_QK; i += 8) {
            float q[8 * QF_QK];
            aff_group8(x + i * QF_QK, 15.0f, q, &b[i].d, &b[i].m, sizeof *b);
            for (int k = 0; k < 8; k++) pack_nibbles32(q + k * QF_QK, b[i + k].qs);
        }
#endif
        for (; i < n / QF_QK; i++) {
            float q[QF_QK];
            aff_block(x + i * QF_QK, NULL, 15.0f, &b[i].d, &b[i].m, q);
            pack_nibbles32(q, b[i].qs);
        }
    } else {
        for (int64_t i = 0; i < n / QF_QK; i++) {
            float q[QF_QK];
            aff_block(x + i * QF_QK, imp + i * QF_QK, 15.0f, &b[i].d, &b[i].m, q);
            pack_nibbles32(q, b[i].qs);
        }
    }
    return true;
}

bool QF_FN(qf_quantize_q5_1)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_q5_1 *b = y;
    /* two loops so the inlined block fit is specialised for unit weights in the first */
    if (!imp) {
        int64_t i = 0;
#if defined(QF_VEC_PASSES)
        for (; i + 8 <= n / QF_QK; i += 8) {
            float q[8 * QF_QK];
            aff_group8(x + i * QF_QK, 31.0f, q, &b[i].d, &b[i].m, sizeof *b);
            for (int k = 0; k < 8; k++) {
                pack_nibbles32(q + k * QF_QK, b[i + k].qs);
                pack_high32(q + k * QF_QK, b[i + k].qh);
            }
        }
#endif
        for (; i < n / QF_QK; i++) {
            float q[QF_QK];
            aff_block(x + i * QF_QK, NULL, 31.0f, &b[i].d, &b[i].m, q);
            pack_nibbles32(q, b[i].qs);
            pack_high32(q, b[i].qh);
        }
    } else {
        for (int64_t i = 0; i < n / QF_QK; i++) {
            float q[QF_QK];
            aff_block(x + i * QF_QK, imp + i * QF_QK, 31.0f, &b[i].d, &b[i].m, q);
            pack_nibbles32(q, b[i].qs);
            pack_high32(q, b[i].qh);
        }
    }
    return true;
}

/* ---- Q8_0 with importance weights ---------------------------------------------------------------------- */

/* ggml's Q8_0 ignores importance, so its round-to-nearest block (d = amax/127, codes roundf(x/d)) is the
 * seed; weighted least-squares refits follow. -128 stays unused: int8 sign tricks in dot kernels
 * (ggml's included) cannot negate it. Returns the F16 scale; q gets the codes. */
static uint16_t q8_0_block_w(const float *x, const float *w, float *q) {
    float lo, hi;
    minmax(x, QF_QK, &lo, &hi);
    float amax = hi > -lo ? hi : -lo, d0 = amax / 127.0f;
    if (amax == 0.0f) {
        for (int j = 0; j < QF_QK; j++) q[j] = 0.0f;
        return 0;
    }
    float id = 1.0f / d0, s = f16_round(d0);
#if defined(QF_VEC_PASSES)
    const __m256 vid = _mm256_set1_ps(id), vs = _mm256_set1_ps(s), sign = _mm256_set1_ps(-0.0f),
                 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), top = _mm256_set1_ps(127.0f);
    __m256 axq = _mm256_setzero_ps(), aqq = axq, aer = axq;
    for (int k = 0; k < QF_QK; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = _mm256_loadu_ps(w + k);
        __m256 v = _mm256_mul_ps(xv, vid), a = _mm256_andnot_ps(sign, v), r = v_round(a);
        /* a tie RNE rounded down goes up (roundf rounds ties away from zero) */
        r = _mm256_add_ps(r, _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, r), half, _CMP_EQ_OQ), one));
        r = _mm256_min_ps(r, top);
        r = _mm256_or_ps(r, _mm256_and_ps(v, sign)); /* v's sign: -0 for 0 codes is harmless below */
        __m256 e = _mm256_sub_ps(xv, _mm256_mul_ps(r, vs));
        axq = _mm256_add_ps(axq, _mm256_mul_ps(_mm256_mul_ps(wv, xv), r));
        aqq = _mm256_add_ps(aqq, _mm256_mul_ps(_mm256_mul_ps(wv, r), r));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(_mm256_mul_ps(wv, e), e));
        _mm256_storeu_ps(q + k, r);
    }
    sym_sums c = { v_hsum8(axq), v_hsum8(aqq), v_hsum8(aer) };
#else
    float axq[LN] = { 0 }, aqq[LN] = { 0 }, aer[LN] = { 0 };
    for (int k = 0; k < QF_QK; k += LN)
        for (int l = 0; l < LN; l++) {
            float v = x[k + l] * id, a = v < 0.0f ? -v : v;
            float r = (a + RND_MAGIC) - RND_MAGIC; /* roundf: nearest, ties away from zero */
            r = a - r == 0.5f ? r + 1.0f : r;
            r = r > 127.0f ? 127.0f : r;
            r = v < 0.0f ? -r : r;
            float wx = w[k + l] * x[k + l], e = x[k + l] - r * s;
            axq[l] += wx * r;
            aqq[l] += w[k + l] * r * r;
            aer[l] += w[k + l] * e * e;
            q[k + l] = r;
        }
    sym_sums c = { hsum8(axq), hsum8(aqq), hsum8(aer) };
#endif
    /* a single weighted least-squares refit with nearest codes (more rounds gain next to nothing at
     * 8 bits), kept if its exact error is lower */
    s = sym_refine(x, w, QF_QK, -127.0f, 127.0f, true, 1, s, &c, q);
    return f16_bits(s);
}

/* Only the weighted path: without weights the traits row keeps the plain RTN kernels. */
bool QF_FN(qf_quantize_q8_0_w)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        float q[QF_QK];
        b[i].d = q8_0_block_w(x + i * QF_QK, imp + i * QF_QK, q);
        for (int j = 0; j < QF_QK; j++) b[i].qs[j] = (int8_t)q[j];
    }
    return true;
}

/* Rounds of the sub-block fits and of the integer scale refinement: measured on qf-llama-a, more rounds
 * than these change the RMSE by less than 0.1%. */
#define KQ_SUB_ROUNDS 4
#define KQ_SUB_ROUNDS_PLAIN 2 /* without weights: ggml's plain K-quants leave a wide margin */
#define KQ_LATTICE_ROUNDS 2
#define KQ_STARTS 2   /* sub-block starting grids without importance weights */
#define KQ_STARTS_W 5 /* with them (ggml's weighted searches try many grids too) */

/* ---- K-quant super-blocks -------------------------------------------------------------------------------- */

/* Work state of one super-block fit: codes and scales of every sub-block plus the per-sub-block sums a
 * least-squares step needs. Errors are per sub-block so a change to one is judged on its own. */
typedef struct kq_state {
    float d, dmin;                                   /* F16-rounded super-scales */
    int sc[QF_KQ_MAX_SUB], mn[QF_KQ_MAX_SUB];        /* scale / min codes */
    float sw[QF_KQ_MAX_SUB], sx[QF_KQ_MAX_SUB], sxx[QF_KQ_MAX_SUB]; /* fixed per sub-block */
    aff_sums s[QF_KQ_MAX_SUB];                       /* sums of the current codes (sym: sq unused) */
    float q[QF_QK_K];
} kq_state;

/* Nearest codes of sub-block j for scale code sc and min code mn under the state's d/dmin; the
 * effective scale and min are formed as the dequantizers form them (one float product each). */
static inline aff_sums kq_pass(const qf_kq_spec *sp, const float *x, const float *w, const kq_state *st, int j,
                               int sc, int mn, float *q) {
    int o = j * sp->sublen;
    float S = st->d * (float)sc;
    if (sp->affine) return aff_pass(x + o, WOFF(w, o), sp->sublen, S, -(st->dmin * (float)mn), (float)sp->qmax, q);
    sym_sums c = sym_pass(x + o, WOFF(w, o), sp->sublen, S, (float)sp->qmin, (float)sp->qmax, q);
    return (aff_sums){ 0.0f, c.sqq, c.sxq, c.err };
}

/* Float (scale, min) of each sub-block before any code exists: the sub-block's RTN grid and grids that
 * put the extreme half a code and a code inside the range (ggml searches such grids too), each refined;
 * the least error wins. Affine mins are returned as positive numbers (xhat = s q - m). */
QF_AINLINE void kq_sub_fits(const qf_kq_spec *sp, const float *x, const float *w, int nstarts, float *s, float *m) {
    /* Q4_K..Q6_K with weights: each start gets one refit and only the winner the remaining rounds (about
     * 1.4x faster, weighted RMSE 0.4% higher, still 2% or more below ggml's). Q3_K does the same over
     * its 5 + 4 starts; Q2_K keeps every round: its weighted margin over ggml is too thin. */
    const int rounds = w ? KQ_SUB_ROUNDS : KQ_SUB_ROUNDS_PLAIN;
    const int srounds = w && (sp->qmax - sp->qmin >= 8 || !sp->affine) ? 1 : rounds;
    static const float inset[KQ_STARTS_W] = { 0.0f, 0.5f, 1.0f, -0.5f, 1.5f };
    for (int j = 0; j < sp->nsub; j++) {
        int o = j * sp->sublen, n = sp->sublen;
        float q[QF_QK];
        if (sp->affine) {
            float lo, hi, sw, sx, best = INFINITY;
            minmax(x + o, n, &lo, &hi);
            lo = lo > 0.0f ? 0.0f : lo;
            w_sums(x + o, WOFF(w, o), n, &sw, &sx);
            s[j] = 0.0f;
            m[j] = -lo;
            for (int k = 0; k < nstarts; k++) {
                float sj = (hi - lo) / ((float)sp->qmax - inset[k]), bj = lo;
                aff_sums c = aff_pass(x + o, WOFF(w, o), n, sj, bj, (float)sp->qmax, q);
                aff_refine(x + o, WOFF(w, o), n, sw, sx, (float)sp->qmax, false, true, srounds, &sj, &bj, &c, q);
                if (c.err < best) { best = c.err; s[j] = sj; m[j] = -bj; }
            }
            if (srounds < rounds && s[j] > 0.0f) {
                float sj = s[j], bj = -m[j];
                aff_sums c = aff_pass(x + o, WOFF(w, o), n, sj, bj, (float)sp->qmax, q);
                aff_refine(x + o, WOFF(w, o), n, sw, sx, (float)sp->qmax, false, true, rounds - srounds, &sj, &bj, &c, q);
                s[j] = sj;
                m[j] = -bj;
            }
        } else {
            float mx = signed_absmax(x + o, n), sj = mx / (float)sp->qmin;
            sym_sums c = sym_pass(x + o, WOFF(w, o), n, sj, (float)sp->qmin, (float)sp->qmax, q);
            sj = sym_refine(x + o, WOFF(w, o), n, (float)sp->qmin, (float)sp->qmax, false, srounds, sj, &c, q);
            float err = c.err, starts[KQ_STARTS_W - 1] = { (float)sp->qmin + 0.5f, (float)sp->qmin + 1.0f, (float)sp->qmax,
                                                      (float)sp->qmin - 0.5f };
            s[j] = mx != 0.0f ? sym_starts(x + o, WOFF(w, o), n, (float)sp->qmin, (float)sp->qmax, false, mx, starts, nstarts - 1,
                                           srounds, sj, &err, q)
                              : 0.0f;
            if (w && sp->qmax - sp->qmin < 8 && s[j] != 0.0f) {
                /* Q3_K with weights: four finer grids around the negative end (ggml's weighted fit tries
                 * the extreme on -4 +- k/10 codes); without them 7 of 44 qf-llama-a tensors were behind
                 * ggml's weighted RMSE (worst 1.05x) */
                const float more[4] = { (float)sp->qmin + 0.25f, (float)sp->qmin - 0.25f, (float)sp->qmin + 0.75f,
                                        (float)sp->qmin - 1.0f };
                s[j] = sym_starts(x + o, WOFF(w, o), n, (float)sp->qmin, (float)sp->qmax, false, mx, more, 4, 1, s[j],
                                  &err, q);
            }
            if (srounds < rounds && s[j] != 0.0f) {
                sym_sums cb = sym_pass(x + o, WOFF(w, o), n, s[j], (float)sp->qmin, (float)sp->qmax, q);
                s[j] = sym_refine(x + o, WOFF(w, o), n, (float)sp->qmin, (float)sp->qmax, false, rounds - srounds, s[j], &cb, q);
            }
            m[j] = 0.0f;
        }
    }
}

/* Coordinate descent on the true error: each sub-block's scale code (and min code) one step either way,
 * re-quantized, kept while it helps. Catches what the fixed-code prediction of kq_lattice misses. */
QF_AINLINE void kq_descend(const qf_kq_spec *sp, const float *x, const float *w, kq_state *st, int j) {
    static const int steps[4][2] = { { -1, 0 }, { 1, 0 }, { 0, -1 }, { 0, 1 } };
    int nsteps = sp->affine ? 4 : 2;
    for (int k = 0; k < nsteps; k++) {
        int cs = st->sc[j] + steps[k][0], cm = st->mn[j] + steps[k][1];
        if (cs < sp->sc_min || cs > sp->sc_max || cm < 0 || cm > (sp->affine ? sp->mn_max : 0)) continue;
        float q[QF_QK];
        aff_sums c = kq_pass(sp, x, w, st, j, cs, cm, q);
        if (!(c.err < st->s[j].err)) continue;
        st->sc[j] = cs;
        st->mn[j] = cm;
        st->s[j] = c;
        memcpy(st->q + j * sp->sublen, q, (size_t)sp->sublen * sizeof *q);
    }
}

/* Codes of the float sub-scales v under an F16 super-scale that maps the extreme onto the end of the code
 * range (for symmetric types the negative end, which has one more code). Returns the super-scale.
 * A super-scale beyond F16's range saturates at 65504 (the extreme sub-scales' codes then clip) rather
 * than becoming Inf: a weighted least-squares fit of an affine sub-block whose weight sits on one or two
 * elements can return a min hundreds of times the block's range, which the stages after this one refit
 * codes around. Scales within F16's range are untouched, so no normal block changes. */
static float kq_codes(const float *v, int nsub, int cmin, int cmax, int *codes) {
    float m = 0.0f;
    for (int j = 0; j < nsub; j++)
        if (fabsf(v[j]) > fabsf(m)) m = v[j];
    float end = cmin < 0 ? (float)cmin : (float)cmax, r = m / end;
    r = r > QF_F16_MAX ? QF_F16_MAX : r < -QF_F16_MAX ? -QF_F16_MAX : r;
    float d = m != 0.0f ? f16_round(r) : 0.0f, inv = safe_inv(d);
    for (int j = 0; j < nsub; j++) {
        float c = v[j] * inv;
        c = c < (float)cmin ? (float)cmin : c;
        c = c > (float)cmax ? (float)cmax : c;
        codes[j] = (int)((c + RND_MAGIC) - RND_MAGIC);
    }
    return d;
}

/* Error of sub-block j's current codes under scale S and min M, from its sums (xhat = S q - M). */
static inline double kq_predict(const kq_state *st, int j, double S, double M) {
    const aff_sums *a = &st->s[j];
    return st->sxx[j] + S * S * a->sqq + M * M * st->sw[j] - 2 * S * a->sxq + 2 * M * st->sx[j] - 2 * S * M * a->sq;
}

/* One code candidate in [lo, hi] near v: floor(v) + k. */
static inline int kq_near(double v, int k, int lo, int hi) {
    double f = floor(v) + k;
    return f < lo ? lo : (f > hi ? hi : (int)f);
}

/* Integer refinement of sub-block j: the least-squares scale (and min) for its codes, rounded down and
 * up to codes, judged by the predicted error; the best is re-quantized and kept if the true error drops. */
QF_AINLINE void kq_lattice(const qf_kq_spec *sp, const float *x, const float *w, kq_state *st, int j) {
    const aff_sums *a = &st->s[j];
    if (st->d == 0.0f || !(a->sqq > 0.0f)) return;
    double S = (double)a->sxq / a->sqq, M = 0.0;
    if (sp->affine) {
        float s2, b2;
        if (!aff_solve(st->sw[j], st->sx[j], a, true, &s2, &b2)) return;
        S = s2;
        M = -(double)b2;
    }
    int bs = st->sc[j], bm = st->mn[j];
    double best = kq_predict(st, j, (double)(st->d * (float)bs), (double)(st->dmin * (float)bm));
    int mk = sp->affine && st->dmin > 0.0f ? 1 : 0;
    for (int ks = 0; ks <= 1; ks++)
        for (int km = 0; km <= mk; km++) {
            int cs = kq_near(S / st->d, ks, sp->sc_min, sp->sc_max);
            int cm = mk ? kq_near(M / st->dmin, km, 0, sp->mn_max) : st->mn[j];
            double p = kq_predict(st, j, (double)(st->d * (float)cs), (double)(st->dmin * (float)cm));
            if (p < best) { best = p; bs = cs; bm = cm; }
        }
    if (bs == st->sc[j] && bm == st->mn[j]) return;
    float q[QF_QK];
    aff_sums c = kq_pass(sp, x, w, st, j, bs, bm, q);
    if (!(c.err < st->s[j].err)) return;
    st->sc[j] = bs;
    st->mn[j] = bm;
    st->s[j] = c;
    memcpy(st->q + j * sp->sublen, q, (size_t)sp->sublen * sizeof *q);
}

/* kq_descend on the sub-blocks whose error is at least the mean: they hold most of the error, and a
 * step on the others rarely pays for its passes. That holds for Q2_K/Q3_K without weights; the finer
 * types and every weighted fit (where ggml's margin is thin) step on all sub-blocks. */
QF_AINLINE void kq_descend_worst(const qf_kq_spec *sp, const float *x, const float *w, kq_state *st) {
    if (w || sp->qmax - sp->qmin >= 8) {
        for (int j = 0; j < sp->nsub; j++) kq_descend(sp, x, w, st, j);
        return;
    }
    float tot = 0.0f;
    for (int j = 0; j < sp->nsub; j++) tot += st->s[j].err;
    float mean = tot / (float)sp->nsub;
    for (int j = 0; j < sp->nsub; j++)
        if (st->s[j].err >= mean) kq_descend(sp, x, w, st, j);
}

static float kq_total(const qf_kq_spec *sp, const kq_state *st) {
    float e = 0.0f;
    for (int j = 0; j < sp->nsub; j++) e += st->s[j].err;
    return e;
}

/* Codes of every sub-block under the current scales. */
QF_AINLINE void kq_requantize(const qf_kq_spec *sp, const float *x, const float *w, kq_state *st) {
    for (int j = 0; j < sp->nsub; j++)
        st->s[j] = kq_pass(sp, x, w, st, j, st->sc[j], sp->affine ? st->mn[j] : 0, st->q + j * sp->sublen);
}

/* Least-squares super-scales for the current codes (xhat = d*(sc q) - dmin*mn), from the per-sub-block
 * sums; F16-rounded. False if they are undetermined. */
static bool kq_refit_super(const qf_kq_spec *sp, const kq_state *st, float *d, float *dmin) {
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int j = 0; j < sp->nsub; j++) {
        double c = st->sc[j], m = sp->affine ? st->mn[j] : 0;
        saa += c * c * st->s[j].sqq;
        sab -= c * m * st->s[j].sq;
        sbb += m * m * st->sw[j];
        sxa += c * st->s[j].sxq;
        sxb -= m * st->sx[j];
    }
    double det = saa * sbb - sab * sab;
    if (sp->affine && det > 0) {
        *d = f16_round((float)((sxa * sbb - sxb * sab) / det));
        *dmin = f16_round((float)((saa * sxb - sab * sxa) / det));
        return *d > 0.0f && *dmin >= 0.0f;
    }
    if (!(saa > 0)) return false;
    *d = f16_round((float)(sxa / saa));
    *dmin = 0.0f;
    return *d != 0.0f;
}

/* The whole super-block fit with weights w and nstarts sub-block starting grids; returns the total
 * weighted error. */
QF_AINLINE float kq_fit(const qf_kq_spec *sp, const float *x, const float *w, int nstarts, kq_state *st) {
    /* Q2_K/Q3_K without weights (at most 8 code levels): ggml's plain fit is far behind at these widths,
     * so one start, one integer-refinement round, the descent on the worst sub-blocks and no super-scale
     * refit keep a wide margin at about 2.5x the speed; the finer types need the full search to stay
     * ahead of ggml */
    bool lean = !w && sp->qmax - sp->qmin < 8;
    int lattice = lean ? 1 : KQ_LATTICE_ROUNDS;
    if (lean) nstarts = 1;
    float s[QF_KQ_MAX_SUB], m[QF_KQ_MAX_SUB];
    kq_sub_fits(sp, x, w, nstarts, s, m);
    for (int j = 0; j < sp->nsub; j++) {
        int o = j * sp->sublen;
        float a[LN] = { 0 }, b[LN] = { 0 }, c[LN] = { 0 };
        for (int k = 0; k < sp->sublen; k += LN)
            for (int l = 0; l < LN; l++) {
                float wi = w ? w[o + k + l] : 1.0f, xi = x[o + k + l];
                a[l] += wi;
                b[l] += wi * xi;
                c[l] += wi * xi * xi;
            }
        st->sw[j] = hsum8(a);
        st->sx[j] = hsum8(b);
        st->sxx[j] = hsum8(c);
    }
    st->d = kq_codes(s, sp->nsub, sp->sc_min, sp->sc_max, st->sc);
    st->dmin = 0.0f;
    memset(st->mn, 0, sizeof st->mn);
    if (sp->affine) st->dmin = kq_codes(m, sp->nsub, 0, sp->mn_max, st->mn);
    kq_requantize(sp, x, w, st);
    for (int r = 0; r < lattice; r++)
        for (int j = 0; j < sp->nsub; j++) kq_lattice(sp, x, w, st, j);
    kq_descend_worst(sp, x, w, st);
    float err = kq_total(sp, st);
    /* refit the super-scales for the codes found, re-quantize, and keep it only if the error drops (not
     * when lean: it doubled Q3_K's time for a 0.4% lower RMSE) */
    kq_state t = *st;
    if (!lean && kq_refit_super(sp, st, &t.d, &t.dmin)) {
        kq_requantize(sp, x, w, &t);
        for (int r = 0; r < lattice; r++)
            for (int j = 0; j < sp->nsub; j++) kq_lattice(sp, x, w, &t, j);
        kq_descend_worst(sp, x, w, &t);
        float e2 = kq_total(sp, &t);
        if (e2 < err) { *st = t; err = e2; }
    }
    return err;
}

/* The two instances of kq_fit (see QF_AINLINE). */
static void kq_fit_plain(const qf_kq_spec *sp, const float *x, kq_state *st) { kq_fit(sp, x, NULL, KQ_STARTS, st); }
static void kq_fit_weighted(const qf_kq_spec *sp, const float *x, const float *w, kq_state *st) {
    kq_fit(sp, x, w, KQ_STARTS_W, st);
}

/* True if all n weights are equal (n a multiple of 8). */
static inline bool all_equal(const float *w, int n) {
    for (int i = 1; i < n; i++)
        if (w[i] != w[0]) return false;
    return true;
}

#if defined(QF_VEC_PASSES)
/* ---- symmetric K-quants (Q3_K, Q6_K), one sub-block per lane ----------------------------------------------
 * kq_fit(sp, x, w, ...) for 16 sub-blocks of 16, with or without weights, run as two groups of 8
 * sub-blocks with sub-block k of a group in lane k. Every stage of kq_fit decides per sub-block independently of the others
 * (the sub-block fits, re-quantization, integer refinement, descent), so each stage runs on all eight
 * lanes at once: lane k performs the scalar loop's float operations for its sub-block in the same order
 * (its pass sums come from v_tree8_*), a lane whose scalar loop has stopped is masked out and keeps
 * its state. The point: the per-sub-block horizontal sums and the branchy accept/reject chains of the
 * scalar form disappear, which is where the time went. */

typedef struct kq8 { __m256 xq, qq, er; } kq8; /* sym_sums of 8 sub-blocks */

/* sym_pass of the 8 consecutive 16-element sub-blocks at x with weights w (NULL: none), lane k with scale
 * S[k]; codes into q (128 floats) unless q is NULL. */
static inline kq8 sym_pass8(const float *x, const float *w, __m256 S, float lo, float hi, float *q) {
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    /* safe_inv per lane: 0 where S is 0 or 1/S is not finite */
    __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), S);
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(S, zero, _CMP_NEQ_UQ),
                              _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), inv), _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
    float iv[8], sv[8];
    _mm256_storeu_ps(iv, _mm256_and_ps(ok, inv));
    _mm256_storeu_ps(sv, S);
    __m256 axq[8], aqq[8], aer[8];
    for (int k = 0; k < 8; k++) {
        const __m256 vinv = _mm256_set1_ps(iv[k]), vs = _mm256_set1_ps(sv[k]);
        __m256 a = zero, b = zero, c = zero;
        for (int j = 0; j < 16; j += LN) {
            __m256 xv = _mm256_loadu_ps(x + 16 * k + j), wv = VWLOAD(16 * k + j);
            __m256 r = v_round(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(xv, vinv), vlo), vhi));
            __m256 e = _mm256_sub_ps(xv, _mm256_mul_ps(r, vs));
            a = _mm256_add_ps(a, _mm256_mul_ps(VW(xv), r));
            b = _mm256_add_ps(b, _mm256_mul_ps(VW(r), r));
            c = _mm256_add_ps(c, _mm256_mul_ps(VW(e), e));
            if (q) _mm256_storeu_ps(q + 16 * k + j, r);
        }
        axq[k] = a;
        aqq[k] = b;
        aer[k] = c;
    }
    return (kq8){ v_tree8_add(axq), v_tree8_add(aqq), v_tree8_add(aer) };
}

/* sym_refine without F16 rounding, per lane. Returns the scales; *cur follows them (codes not kept:
 * the sub-block fits only need scales). */
static inline __m256 sym_refine8(const float *x, const float *w, float lo, float hi, int rounds, __m256 S, kq8 *cur) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 act = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int r = 0; r < rounds; r++) {
        act = _mm256_and_ps(act, _mm256_cmp_ps(cur->qq, zero, _CMP_GT_OQ));
        __m256 S2 = _mm256_div_ps(cur->xq, cur->qq);
        act = _mm256_and_ps(act, _mm256_and_ps(_mm256_cmp_ps(S2, S, _CMP_NEQ_UQ), _mm256_cmp_ps(S2, zero, _CMP_NEQ_UQ)));
        if (!_mm256_movemask_ps(act)) break;
        kq8 nx = sym_pass8(x, w, S2, lo, hi, NULL);
        act = _mm256_and_ps(act, _mm256_cmp_ps(nx.er, cur->er, _CMP_LT_OQ));
        S = _mm256_blendv_ps(S, S2, act);
        cur->xq = _mm256_blendv_ps(cur->xq, nx.xq, act);
        cur->qq = _mm256_blendv_ps(cur->qq, nx.qq, act);
        cur->er = _mm256_blendv_ps(cur->er, nx.er, act);
    }
    return S;
}

/* sym_starts per lane (no F16 rounding) for the lanes in act: each start's scale mx / starts[i], refined,
 * replaces (S, *err) where it is valid there (non-zero, not the current scale) and its error is lower. */
static inline __m256 sym_starts8(const float *x, const float *w, float lo, float hi, __m256 mx, const float *starts,
                                 int nstarts, int rounds, __m256 act, __m256 S, __m256 *err) {
    for (int i = 0; i < nstarts; i++) {
        __m256 S0 = _mm256_div_ps(mx, _mm256_set1_ps(starts[i]));
        __m256 valid = _mm256_and_ps(act, _mm256_and_ps(_mm256_cmp_ps(S0, _mm256_setzero_ps(), _CMP_NEQ_UQ),
                                                        _mm256_cmp_ps(S0, S, _CMP_NEQ_UQ)));
        if (!_mm256_movemask_ps(valid)) continue;
        kq8 c0 = sym_pass8(x, w, S0, lo, hi, NULL);
        S0 = sym_refine8(x, w, lo, hi, rounds, S0, &c0);
        __m256 take = _mm256_and_ps(valid, _mm256_cmp_ps(c0.er, *err, _CMP_LT_OQ));
        S = _mm256_blendv_ps(S, S0, take);
        *err = _mm256_blendv_ps(*err, c0.er, take);
    }
    return S;
}

/* kq_sub_fits with weights (nstarts = KQ_STARTS_W) for 16 symmetric sub-blocks of 16 (Q3_K, Q6_K), one
 * sub-block per lane in two groups of 8: the same starts, rounds and per-sub-block decisions, each lane
 * doing its sub-block's float operations in the scalar order. The weighted fit spends most of its passes
 * here (9 or 13 starting grids), and the scalar form pays three horizontal sums and a branch per pass. */
static void kq_sub_fits_w8(const qf_kq_spec *sp, const float *x, const float *w, float *s) {
    const float lo = (float)sp->qmin, hi = (float)sp->qmax;
    const int rounds = KQ_SUB_ROUNDS, srounds = 1; /* kq_sub_fits' weighted symmetric case */
    const float starts[KQ_STARTS_W - 1] = { lo + 0.5f, lo + 1.0f, hi, lo - 0.5f };
    const float more[4] = { lo + 0.25f, lo - 0.25f, lo + 0.75f, lo - 1.0f };
    const __m256 zero = _mm256_setzero_ps();
    for (int g = 0; g < 2; g++) {
        const float *xg = x + 128 * g, *wg = w + 128 * g;
        __m256 mx = v_signed_absmax8(xg, 16), S = _mm256_div_ps(mx, _mm256_set1_ps(lo));
        kq8 c = sym_pass8(xg, wg, S, lo, hi, NULL);
        S = sym_refine8(xg, wg, lo, hi, srounds, S, &c);
        __m256 err = c.er, all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        S = sym_starts8(xg, wg, lo, hi, mx, starts, KQ_STARTS_W - 1, srounds, all, S, &err);
        S = _mm256_and_ps(S, _mm256_cmp_ps(mx, zero, _CMP_NEQ_UQ)); /* 0 for an all-zero sub-block */
        if (hi - lo < 8.0f) /* Q3_K: the four finer grids, where the scale is non-zero */
            S = sym_starts8(xg, wg, lo, hi, mx, more, 4, 1, _mm256_cmp_ps(S, zero, _CMP_NEQ_UQ), S, &err);
        __m256 act = _mm256_cmp_ps(S, zero, _CMP_NEQ_UQ); /* the winner's remaining rounds */
        if (_mm256_movemask_ps(act)) {
            kq8 cb = sym_pass8(xg, wg, S, lo, hi, NULL);
            S = _mm256_blendv_ps(S, sym_refine8(xg, wg, lo, hi, rounds - srounds, S, &cb), act);
        }
        _mm256_storeu_ps(s + 8 * g, S);
    }
}

/* Work state: scale codes, per-lane sums of the current codes (group g = sub-blocks 8g..8g+7), codes. */
typedef struct kq_sym8 {
    float d;
    int sc[16];
    kq8 s[2];
    float q[QF_QK_K];
} kq_sym8;

/* Lanes k of a group whose bit is set in m take (sums, codes from qt, scale code from cs); blends, no
 * branches: which lanes accept is data-dependent and unpredictable. */
static inline void kq8_accept(kq_sym8 *st, int g, int m, const kq8 *nx, const float *qt, const int *cs) {
    __m256 t = v_lanes(m);
    st->s[g].xq = _mm256_blendv_ps(st->s[g].xq, nx->xq, t);
    st->s[g].qq = _mm256_blendv_ps(st->s[g].qq, nx->qq, t);
    st->s[g].er = _mm256_blendv_ps(st->s[g].er, nx->er, t);
    __m256i *sc = (__m256i *)(st->sc + 8 * g);
    _mm256_storeu_si256(sc, _mm256_blendv_epi8(_mm256_loadu_si256(sc), _mm256_loadu_si256((const __m256i *)cs),
                                               _mm256_castps_si256(t)));
    float *q = st->q + 128 * g;
    for (int k = 0; k < 8; k++) {
        __m256 mk = _mm256_castsi256_ps(_mm256_set1_epi32(-(m >> k & 1)));
        for (int j = 0; j < 16; j += LN)
            _mm256_storeu_ps(q + 16 * k + j, _mm256_blendv_ps(_mm256_loadu_ps(q + 16 * k + j), _mm256_loadu_ps(qt + 16 * k + j), mk));
    }
}

/* Scales d * sc of a group, as kq_pass forms them (one float product). */
static inline __m256 kq8_scales(float d, const int *sc) {
    return _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sc)));
}

/* kq_requantize */
static inline void kq8_requantize(const qf_kq_spec *sp, const float *x, const float *w, kq_sym8 *st) {
    for (int g = 0; g < 2; g++)
        st->s[g] = sym_pass8(x + 128 * g, WOFF(w, 128 * g), kq8_scales(st->d, st->sc + 8 * g), (float)sp->qmin, (float)sp->qmax, st->q + 128 * g);
}

/* kq_predict for symmetric sub-blocks (M = 0: its min terms are exact zeros and drop out) at scale
 * code c (integral doubles), four lanes: (double)(d * (float)c), then kq_predict's operations. */
static inline __m256d kq4_predict(__m128 d, __m256d sxx, __m256d qq, __m256d xq, __m256d c) {
    __m256d S = _mm256_cvtps_pd(_mm_mul_ps(d, _mm256_cvtpd_ps(c)));
    __m256d p = _mm256_add_pd(sxx, _mm256_mul_pd(_mm256_mul_pd(S, S), qq));
    return _mm256_sub_pd(p, _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), S), xq));
}

/* kq_lattice of every sub-block (symmetric: no min): kq_near's candidates judged by kq_predict in four
 * double lanes at a time, then one pass for the lanes that moved. Only sub-blocks with bit k of ok[g]
 * set may move: kq_predict's dropped min terms 0 * sw and 0 * sx are NaN where a weighted sum overflowed,
 * and then no prediction beats another. */
static inline void kq8_lattice(const qf_kq_spec *sp, const float *x, const float *w, const float *sxx, const int *ok,
                               kq_sym8 *st) {
    if (st->d == 0.0f) return;
    const __m256d dd = _mm256_set1_pd((double)st->d), clo = _mm256_set1_pd(sp->sc_min), chi = _mm256_set1_pd(sp->sc_max);
    const __m128 df = _mm_set1_ps(st->d);
    for (int g = 0; g < 2; g++) {
        int cand[8], moved = 0;
        for (int h = 0; h < 2; h++) {
            __m256d XQ = h ? v_hi_pd(st->s[g].xq) : v_lo_pd(st->s[g].xq);
            __m256d QQ = h ? v_hi_pd(st->s[g].qq) : v_lo_pd(st->s[g].qq);
            __m256d SXX = _mm256_cvtps_pd(_mm_loadu_ps(sxx + 8 * g + 4 * h));
            __m128i cur = _mm_loadu_si128((const __m128i *)(st->sc + 8 * g + 4 * h));
            __m256d cd = _mm256_cvtepi32_pd(cur), bs = cd, best = kq4_predict(df, SXX, QQ, XQ, cd);
            __m256d fl = _mm256_floor_pd(_mm256_div_pd(_mm256_div_pd(XQ, QQ), dd));
            for (int ks = 0; ks <= 1; ks++) { /* kq_near: floor + ks, clamped to the code range */
                __m256d c = _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(fl, _mm256_set1_pd(ks)), clo), chi);
                __m256d p = kq4_predict(df, SXX, QQ, XQ, c), lt = _mm256_cmp_pd(p, best, _CMP_LT_OQ);
                best = _mm256_blendv_pd(best, p, lt);
                bs = _mm256_blendv_pd(bs, c, lt);
            }
            bs = _mm256_blendv_pd(cd, bs, _mm256_cmp_pd(QQ, _mm256_setzero_pd(), _CMP_GT_OQ)); /* sqq > 0 only */
            __m128i b = _mm256_cvtpd_epi32(bs);
            _mm_storeu_si128((__m128i *)(cand + 4 * h), b);
            moved |= (~_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(b, cur))) & 0xF) << 4 * h;
        }
        moved &= ok[g];
        if (!moved) continue;
        float qt[128];
        kq8 nx = sym_pass8(x + 128 * g, WOFF(w, 128 * g), kq8_scales(st->d, cand), (float)sp->qmin, (float)sp->qmax, qt);
        int m = moved & _mm256_movemask_ps(_mm256_cmp_ps(nx.er, st->s[g].er, _CMP_LT_OQ));
        kq8_accept(st, g, m, &nx, qt, cand);
    }
}

/* kq_descend_worst: each scale code one step down, then one step up, kept where the error drops. */
static inline void kq8_descend(const qf_kq_spec *sp, const float *x, const float *w, bool lean, kq_sym8 *st) {
    int sel[2] = { 0xFF, 0xFF };
    if (lean) { /* the sub-blocks at or above the mean error */
        float e[16], tot = 0.0f;
        _mm256_storeu_ps(e, st->s[0].er);
        _mm256_storeu_ps(e + 8, st->s[1].er);
        for (int j = 0; j < 16; j++) tot += e[j];
        float mean = tot / 16.0f;
        sel[0] = sel[1] = 0;
        for (int j = 0; j < 16; j++) sel[j / 8] |= (e[j] >= mean) << (j % 8);
    }
    /* The step up after an accepted step down re-tries the original code, whose error (the same pass)
     * is above the new one, so it is never taken: both steps can start from the original codes, the up
     * step counting only where the down step was not taken. Independent passes, more overlap. */
    for (int g = 0; g < 2; g++) {
        int cs[2][8], valid[2] = { 0, 0 };
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 8; k++) {
                cs[t][k] = st->sc[8 * g + k] + (t ? 1 : -1);
                valid[t] |= (cs[t][k] >= sp->sc_min && cs[t][k] <= sp->sc_max) << k;
            }
        float qt[2][128];
        kq8 nx[2];
        int m[2];
        for (int t = 0; t < 2; t++) {
            valid[t] &= sel[g];
            if (!valid[t]) { m[t] = 0; continue; }
            nx[t] = sym_pass8(x + 128 * g, WOFF(w, 128 * g), kq8_scales(st->d, cs[t]), (float)sp->qmin, (float)sp->qmax, qt[t]);
            m[t] = valid[t] & _mm256_movemask_ps(_mm256_cmp_ps(nx[t].er, st->s[g].er, _CMP_LT_OQ));
        }
        m[1] &= ~m[0];
        for (int t = 0; t < 2; t++)
            if (m[t]) kq8_accept(st, g, m[t], &nx[t], qt[t], cs[t]);
    }
}

/* kq_total: the errors summed in sub-block order. */
static inline float kq8_total(const kq_sym8 *st) {
    float e[16], t = 0.0f;
    _mm256_storeu_ps(e, st->s[0].er);
    _mm256_storeu_ps(e + 8, st->s[1].er);
    for (int j = 0; j < 16; j++) t += e[j];
    return t;
}

/* kq_fit_plain (w NULL) or kq_fit_weighted of one symmetric super-block. */
static void kq_fit_sym8(const qf_kq_spec *sp, const float *x, const float *w, kq_state *out) {
    const bool lean = !w && sp->qmax - sp->qmin < 8; /* as kq_fit */
    const int nstarts = lean ? 1 : KQ_STARTS, lattice = lean ? 1 : KQ_LATTICE_ROUNDS;
    const float lo = (float)sp->qmin, hi = (float)sp->qmax;
    float s[16];
    if (w) kq_sub_fits_w8(sp, x, w, s);
    else for (int g = 0; g < 2; g++) { /* kq_sub_fits */
        const float *xg = x + 128 * g;
        __m256 mx = v_signed_absmax8(xg, 16), S = _mm256_div_ps(mx, _mm256_set1_ps(lo));
        kq8 c = sym_pass8(xg, NULL, S, lo, hi, NULL);
        S = sym_refine8(xg, NULL, lo, hi, KQ_SUB_ROUNDS_PLAIN, S, &c);
        for (int i = 0; i + 1 < nstarts; i++) { /* sym_starts; its first start is qmin + 0.5 */
            __m256 S0 = _mm256_div_ps(mx, _mm256_set1_ps(i == 0 ? lo + 0.5f : lo + 1.0f));
            __m256 valid = _mm256_and_ps(_mm256_cmp_ps(S0, _mm256_setzero_ps(), _CMP_NEQ_UQ), _mm256_cmp_ps(S0, S, _CMP_NEQ_UQ));
            kq8 c0 = sym_pass8(xg, NULL, S0, lo, hi, NULL);
            S0 = sym_refine8(xg, NULL, lo, hi, KQ_SUB_ROUNDS_PLAIN, S0, &c0);
            __m256 take = _mm256_and_ps(valid, _mm256_cmp_ps(c0.er, c.er, _CMP_LT_OQ));
            S = _mm256_blendv_ps(S, S0, take);
            c.er = _mm256_blendv_ps(c.er, c0.er, take);
        }
        S = _mm256_and_ps(S, _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        _mm256_storeu_ps(s + 8 * g, S);
    }
    /* kq_fit's sum w x^2 per sub-block (lanes l, l + 8, then hsum8's tree); with weights also which
     * sub-blocks have finite sum w and sum w x (see kq8_lattice) */
    float sxx[16];
    int ok[2] = { 0xFF, 0xFF };
    for (int g = 0; g < 2; g++) {
        __m256 a[8], b[8], c[8];
        for (int k = 0; k < 8; k++) {
            const int o = 128 * g + 16 * k;
            __m256 x0 = _mm256_loadu_ps(x + o), x1 = _mm256_loadu_ps(x + o + 8);
            if (w) {
                __m256 w0 = _mm256_loadu_ps(w + o), w1 = _mm256_loadu_ps(w + o + 8);
                __m256 wx0 = _mm256_mul_ps(w0, x0), wx1 = _mm256_mul_ps(w1, x1);
                a[k] = _mm256_add_ps(_mm256_mul_ps(wx0, x0), _mm256_mul_ps(wx1, x1));
                b[k] = _mm256_add_ps(w0, w1);
                c[k] = _mm256_add_ps(wx0, wx1);
            } else {
                a[k] = _mm256_add_ps(_mm256_mul_ps(x0, x0), _mm256_mul_ps(x1, x1));
            }
        }
        _mm256_storeu_ps(sxx + 8 * g, v_tree8_add(a));
        if (w) {
            const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
            __m256 fw = _mm256_cmp_ps(_mm256_andnot_ps(sign, v_tree8_add(b)), inf, _CMP_LT_OQ);
            __m256 fx = _mm256_cmp_ps(_mm256_andnot_ps(sign, v_tree8_add(c)), inf, _CMP_LT_OQ);
            ok[g] = _mm256_movemask_ps(_mm256_and_ps(fw, fx));
        }
    }
    kq_sym8 st;
    st.d = kq_codes(s, 16, sp->sc_min, sp->sc_max, st.sc);
    kq8_requantize(sp, x, w, &st);
    for (int r = 0; r < lattice; r++) kq8_lattice(sp, x, w, sxx, ok, &st);
    kq8_descend(sp, x, w, lean, &st);
    float err = kq8_total(&st);
    if (!lean) { /* kq_refit_super (symmetric: d alone), then the same stages; kept if the error drops */
        float xq[16], qq[16];
        _mm256_storeu_ps(xq, st.s[0].xq);
        _mm256_storeu_ps(xq + 8, st.s[1].xq);
        _mm256_storeu_ps(qq, st.s[0].qq);
        _mm256_storeu_ps(qq + 8, st.s[1].qq);
        double saa = 0, sxa = 0;
        for (int j = 0; j < 16; j++) {
            double c = st.sc[j];
            saa += c * c * qq[j];
            sxa += c * xq[j];
        }
        if (saa > 0) {
            kq_sym8 t = st;
            t.d = f16_round((float)(sxa / saa));
            if (t.d != 0.0f) {
                kq8_requantize(sp, x, w, &t);
                for (int r = 0; r < lattice; r++) kq8_lattice(sp, x, w, sxx, ok, &t);
                kq8_descend(sp, x, w, lean, &t);
                float e2 = kq8_total(&t);
                if (e2 < err) st = t;
            }
        }
    }
    out->d = st.d;
    out->dmin = 0.0f;
    memcpy(out->sc, st.sc, sizeof st.sc);
    memset(out->mn, 0, sizeof out->mn);
    memcpy(out->q, st.q, sizeof st.q);
}
#endif

typedef void (*kq_pack_fn)(const qf_kq_block *k, void *block);

/* Quantize row x super-block by super-block. With weights, the unweighted fit (re-scored) competes with
 * the weighted one, so weights can only lower the weighted error. */
static bool kq_quantize(const qf_kq_spec *sp, kq_pack_fn pack, size_t block_bytes, const float *x, void *y,
                        int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *xb = x + i * QF_QK_K;
        const float *w = imp ? imp + i * QF_QK_K : NULL;
        kq_state st;
        if (!w || all_equal(w, QF_QK_K)) {
            /* equal weights scale every candidate's error alike: the unweighted fit is their optimum */
#if defined(QF_VEC_PASSES)
            if (!sp->affine && sp->nsub == 16 && sp->sublen == 16) kq_fit_sym8(sp, xb, NULL, &st);
            else
#endif
                kq_fit_plain(sp, xb, &st);
        } else {
#if defined(QF_VEC_PASSES)
            if (!sp->affine && sp->nsub == 16 && sp->sublen == 16) kq_fit_sym8(sp, xb, w, &st);
            else
#endif
                kq_fit_weighted(sp, xb, w, &st);
        }
        qf_kq_block k;
        k.d = f16_bits(st.d);
        k.dmin = f16_bits(st.dmin);
        memcpy(k.sc, st.sc, sizeof k.sc);
        memcpy(k.mn, st.mn, sizeof k.mn);
        for (int e = 0; e < QF_QK_K; e++) k.q[e] = (int8_t)st.q[e];
        pack(&k, (uint8_t *)y + (size_t)i * block_bytes);
    }
    return true;
}

#define KQ_QUANTIZE(T)                                                                       \
    bool QF_FN(qf_quantize_##T)(const float *x, void *y, int64_t n, const float *imp) {     \
        return kq_quantize(&qf_spec_##T, qf_pack_##T, sizeof(qf_block_##T), x, y, n, imp);  \
    }
KQ_QUANTIZE(q2_K)
KQ_QUANTIZE(q3_K)
KQ_QUANTIZE(q4_K)
KQ_QUANTIZE(q5_K)
KQ_QUANTIZE(q6_K)

/* ---- MXFP4 ------------------------------------------------------------------------------------------------
 * E2M1 elements held as twice their value (0, 1, 2, 3, 4, 6, 8, 12 and negatives, as ggml) times
 * d = 2^(e-128). Candidates: ggml's exponent e0 (the largest magnitude lands in [4, 8) E2M1 units, so
 * values beyond 6 clip) and e0 + 1 (no clipping, coarser); each element takes its nearest grid value
 * (midpoint comparisons, branch-free, so one AVX2 pass per exponent); the least weighted error wins.
 * e0 - 1 (clipping everything above 3) never won on qf-llama-a without weights and lowered the weighted
 * RMSE by 0.4%: not worth a third pass. */

static const float mx_mag[8] = { 0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 6.0f, 8.0f, 12.0f };
static const float mx_mid[7] = { 0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f };

/* Weighted error of one block for exponent e; codes (magnitude index | 8 for negative) into c[32].
 * x/d is formed as x * 2^(128-e): the reciprocal of a power of two is exact, so the product is the
 * correctly rounded quotient (e = 0, whose reciprocal overflows, divides). */
/* 2^k from its bits for normal results (ldexpf is a library call per candidate otherwise) */
static inline float pow2f(int k) {
    if (k < -126 || k > 127) return ldexpf(1.0f, k);
    uint32_t u = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float mx_pass(const float *x, const float *w, int e, int32_t *c) {
    float d = pow2f(e - 128), inv = e > 0 ? pow2f(128 - e) : 0.0f;
#if defined(QF_VEC_PASSES)
    const __m256 vd = _mm256_set1_ps(d), vinv = _mm256_set1_ps(inv), sign = _mm256_set1_ps(-0.0f),
                 mag = _mm256_loadu_ps(mx_mag), zero = _mm256_setzero_ps();
    __m256 aer = zero;
    for (int k = 0; k < QF_QK; k += LN) {
        __m256 xv = _mm256_loadu_ps(x + k), wv = VWLOAD(k);
        __m256 v = e > 0 ? _mm256_mul_ps(xv, vinv) : _mm256_div_ps(xv, vd);
        __m256 a = _mm256_andnot_ps(sign, v);
        /* the count of midpoints below a: ceil(min(a, 4.5) - 0.5) counts 0.5..3.5 (a - 0.5 is exact for
         * 0.5 <= a < 2^23 and lands in [-0.5, 0) below, so the count is the compares' count exactly),
         * then the compares with 5, 7 and 10 (each true one is -1) */
        __m256 lowc = _mm256_ceil_ps(_mm256_sub_ps(_mm256_min_ps(a, _mm256_set1_ps(4.5f)), _mm256_set1_ps(0.5f)));
        __m256i ci = _mm256_cvttps_epi32(lowc);
        for (int t = 4; t < 7; t++)
            ci = _mm256_sub_epi32(ci, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(mx_mid[t]), _CMP_GT_OQ)));
        __m256 neg = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);
        __m256 val = _mm256_or_ps(_mm256_permutevar8x32_ps(mag, ci), _mm256_and_ps(neg, sign));
        __m256 r = _mm256_sub_ps(xv, _mm256_mul_ps(val, vd));
        aer = _mm256_add_ps(aer, _mm256_mul_ps(VW(r), r));
        if (c) {
            __m256i nz = _mm256_cmpgt_epi32(ci, _mm256_setzero_si256());
            ci = _mm256_or_si256(ci, _mm256_and_si256(_mm256_and_si256(_mm256_castps_si256(neg), nz), _mm256_set1_epi32(8)));
            _mm256_storeu_si256((__m256i *)(c + k), ci);
        }
    }
    return v_hsum8(aer);
#else
    float aer[LN] = { 0 };
    for (int k = 0; k < QF_QK; k += LN)
        for (int l = 0; l < LN; l++) {
            float xi = x[k + l], v = e > 0 ? xi * inv : xi / d, a = fabsf(v);
            int m = 0;
            for (int t = 0; t < 7; t++) m += a > mx_mid[t];
            float val = v < 0.0f ? -mx_mag[m] : mx_mag[m], r = xi - val * d, wi = w ? w[k + l] : 1.0f;
            aer[l] += wi * r * r;
            if (c) c[k + l] = m | (v < 0.0f && m ? 8 : 0);
        }
    return hsum8(aer);
#endif
}

bool QF_FN(qf_quantize_mxfp4)(const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    qf_block_mxfp4 *b = y;
    for (int64_t i = 0; i < n / QF_QK; i++) {
        const float *xb = x + i * QF_QK, *w = imp ? imp + i * QF_QK : NULL;
        float lo, hi;
        minmax(xb, QF_QK, &lo, &hi);
        float amax = hi > -lo ? hi : -lo;
        /* ggml's exponent floor(log2(amax)) - 2 + 127; for normal amax the exponent field gives the floor
         * without log2f (where log2f rounds up to the next integer ggml's choice is our e0 + 1, which is
         * tried too) */
        int e0 = 0;
        if (amax >= 1.17549435e-38f) {
            uint32_t u;
            memcpy(&u, &amax, sizeof u);
            e0 = (int)(u >> 23) - 127 - 2 + 127;
        } else if (amax > 0.0f) {
            e0 = (int)floorf(log2f(amax)) - 2 + 127;
        }
        /* each candidate writes its codes to its own buffer: cheaper than a pass to redo the winner's */
        int32_t cbuf[2][QF_QK];
        const int32_t *codes = NULL;
        float best = INFINITY;
        b[i].e = 0;
        for (int e = e0; e <= e0 + 1; e++) {
            if (e < 0 || e > 254) continue; /* 255 is NaN in OCP MX */
            int32_t *c = cbuf[e - e0];
            float err = mx_pass(xb, w, e, c);
            if (err < best) { best = err; b[i].e = (uint8_t)e; codes = c; }
        }
        /* no error was a number below Inf (residuals beyond 1.8e19 square to Inf, times a zero weight to
         * NaN): the first candidate in range, ggml's exponent where it is one, instead of zeros */
        int e_first = e0 >= 0 ? e0 : e0 + 1;
        if (!codes && e_first >= 0 && e_first <= 254) { b[i].e = (uint8_t)e_first; codes = cbuf[e_first - e0]; }
        if (!codes) { /* only when every candidate was out of range: all zeros */
            memset(cbuf[0], 0, sizeof cbuf[0]);
            codes = cbuf[0];
        }
        for (int j = 0; j < QF_QK / 2; j++) b[i].qs[j] = (uint8_t)(codes[j] | codes[j + 16] << 4);
    }
    return true;
}
