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

/* ---- grid types (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S): xhat = s_b * grid point * signs ------------------ */

/* What differs between the grid types: the grid, the elements per 4-bit scale l, how l makes the scale
 * (as dequantization forms it), the sign rule, the search effort and the packer. */
typedef struct iq_spec {
    qf_iq_grid_id grid;
    int sub;          /* elements per scale: 32 or 16 */
    bool free_signs;  /* 8 stored sign bits per 8 elements; else 7, the 8th making the count of negatives even */
    bool odd;         /* scale d * (1 + 2 l) (IQ3_S); else (d * (0.5 + l)) * c */
    float c;
    float top;        /* the largest grid value */
    int tries;        /* starting scales per sub-block */
    size_t bytes;
    void (*pack)(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out);
} iq_spec;

static inline float iq_sub_scale(const iq_spec *sp, float d, int l) {
    return sp->odd ? d * (float)(1 + 2 * l) : d * (0.5f + (float)l) * sp->c;
}

/* The grid point nearest t / s under weights w, i.e. minimising sum_k w_k (t_k - s g_kp)^2. The lattice
 * point nearest coordinate by coordinate (each its nearest level; at a midpoint the upper) minimises it over
 * the whole lattice, so when the grid holds it, it is the answer; else the grid points around that lattice
 * point are compared (sum_k g_kp (s w_k g_kp - 2 w_k t_k): the error less a term without p), the first of
 * least value kept. Scalar code in every build: the same decisions everywhere. */
static inline int grid_nearest(const qf_iq_grid *G, const float *t, const float *w, float s, float inv) {
    int c = 0, scale = 1, dim = G->dim;
    for (int k = 0; k < dim; k++, scale *= G->nlev) {
        float u = t[k] * inv;
        int j = 0;
        for (int m = 0; m + 1 < G->nlev; m++) j += u >= G->mid[m];
        c += j * scale;
    }
    if (G->map[c] >= 0) return G->map[c];
    float sw[8], wt2[8];
    for (int k = 0; k < dim; k++) {
        float wk = w ? w[k] : 1.0f;
        sw[k] = s * wk;
        wt2[k] = 2.0f * (wk * t[k]);
    }
    float best = INFINITY;
    int r = G->nb[G->nb_off[c]];
    for (uint32_t i = G->nb_off[c]; i < G->nb_off[c + 1]; i++) {
        int p = G->nb[i];
        float acc = 0.0f;
        for (int k = 0; k < dim; k++) {
            float gv = G->g[k * G->n + p];
            acc += gv * (sw[k] * gv - wt2[k]);
        }
        if (acc < best) { best = acc; r = p; }
    }
    return r;
}

/* Grid points of the len / dim groups of t under scale s into idx, with A = sum w t g and B = sum w g^2 over
 * them (the least-squares scale for these points is A / B, its error sum w t^2 - A^2 / B). */
static inline void grid_assign(const qf_iq_grid *G, const float *t, const float *w, int len, float s, uint16_t *idx,
                               float *A, float *B) {
    float a = 0.0f, b = 0.0f, inv = 1.0f / s;
    for (int j = 0; j < len / G->dim; j++) {
        const float *tj = t + j * G->dim, *wj = WOFF(w, j * G->dim);
        int p = grid_nearest(G, tj, wj, s, inv);
        idx[j] = (uint16_t)p;
        for (int k = 0; k < G->dim; k++) {
            float gv = G->g[k * G->n + p], wk = wj ? wj[k] : 1.0f;
            a += wk * tj[k] * gv;
            b += wk * gv * gv;
        }
    }
    *A = a;
    *B = b;
}

/* Exact error sum w (t - s g)^2 of chosen points under scale s. */
static inline float grid_err(const qf_iq_grid *G, const float *t, const float *w, int len, float s, const uint16_t *idx) {
    float e = 0.0f;
    for (int i = 0; i < len; i++) {
        float d = t[i] - s * G->g[(i % G->dim) * G->n + idx[i / G->dim]], wd = w ? w[i] * d : d;
        e += wd * d;
    }
    return e;
}

/* The best least-squares scale of a sub-block: starts that map its largest target onto the top grid value
 * within +-20%, each with its nearest points and their least-squares scale judged by the error it leaves
 * (A^2 / B, larger is better); the winner is then re-assigned under its own scale while that helps. */
static inline float grid_sub_scale(const iq_spec *sp, const qf_iq_grid *G, const float *t, const float *w) {
    float m = 0.0f;
    for (int i = 0; i < sp->sub; i++) m = t[i] > m ? t[i] : m;
    if (m == 0.0f) return 0.0f;
    uint16_t idx[8];
    float best_q = 0.0f, best_s = 0.0f, A, B;
    for (int j = 0; j < sp->tries; j++) {
        float r = sp->tries > 1 ? 0.8f + 0.4f * (float)j / (float)(sp->tries - 1) : 1.0f;
        grid_assign(G, t, w, sp->sub, m / (sp->top * r), idx, &A, &B);
        if (A > 0.0f && B > 0.0f && A * A / B > best_q) {
            best_q = A * A / B;
            best_s = A / B;
        }
    }
    for (int r = 0; r < 2 && best_s > 0.0f; r++) {
        grid_assign(G, t, w, sp->sub, best_s, idx, &A, &B);
        if (!(A > 0.0f && B > 0.0f && A * A / B > best_q)) break;
        best_q = A * A / B;
        best_s = A / B;
    }
    return best_s;
}

/* The integer l whose scale under d is nearest s, within 0..15. */
static inline int grid_level(const iq_spec *sp, float d, float s) {
    float u = sp->odd ? (s / d - 1.0f) * 0.5f : s / (d * sp->c) - 0.5f;
    u = u < 0.0f ? 0.0f : u > 15.0f ? 15.0f : u;
    return (int)((u + RND_MAGIC) - RND_MAGIC);
}

/* Targets and stored signs of a super-block: t = |x|, except that where the format stores only 7 sign bits
 * per 8 and x has an odd count of negatives, the element of least w x^2 keeps the opposite sign (its target
 * becomes -|x|, which the positive grid values can only approach from 0). */
static inline void grid_signs(const iq_spec *sp, const float *x, const float *w, float *t, uint8_t *sg) {
    for (int j = 0; j < QF_QK_K / 8; j++) {
        const float *xj = x + 8 * j;
        unsigned s8 = 0;
        for (int i = 0; i < 8; i++) {
            t[8 * j + i] = fabsf(xj[i]);
            s8 |= (unsigned)(xj[i] < 0.0f) << i;
        }
        if (!sp->free_signs && __builtin_parity(s8)) {
            int imin = 0;
            float mn = INFINITY;
            for (int i = 0; i < 8; i++) {
                float v = (w ? w[8 * j + i] : 1.0f) * xj[i] * xj[i];
                if (v < mn) { mn = v; imin = i; }
            }
            t[8 * j + imin] = -t[8 * j + imin];
            s8 ^= 1u << imin;
        }
        sg[j] = (uint8_t)s8;
    }
}

/* One super-block: targets and signs, each sub-block's best scale, the F16 super-scale that puts the
 * largest onto l = 15, then per sub-block the l nearest its scale and the two beside it, each with its
 * points re-chosen, the least exact error kept. */
static inline void grid_block(const iq_spec *sp, const qf_iq_grid *G, const float *x, const float *w, uint8_t *out) {
    float t[QF_QK_K], sc[16], mx = 0.0f;
    uint16_t idx[QF_QK_K / 4] = { 0 }, it[8];
    uint8_t sg[QF_QK_K / 8], ls[16] = { 0 };
    int nsub = QF_QK_K / sp->sub, per = sp->sub / G->dim;
    grid_signs(sp, x, w, t, sg);
    for (int b = 0; b < nsub; b++) {
        sc[b] = grid_sub_scale(sp, G, t + b * sp->sub, WOFF(w, b * sp->sub));
        mx = sc[b] > mx ? sc[b] : mx;
    }
    float d = f16_sat(mx / iq_sub_scale(sp, 1.0f, 15));
    if (!(d > 0.0f)) d = 0.0f;
    for (int b = 0; b < nsub && d > 0.0f; b++) {
        const float *tb = t + b * sp->sub, *wb = WOFF(w, b * sp->sub);
        int l0 = grid_level(sp, d, sc[b]);
        float best = INFINITY, A, B;
        for (int l = l0 - 1; l <= l0 + 1; l++) {
            if (l < 0 || l > 15) continue;
            float s = iq_sub_scale(sp, d, l);
            grid_assign(G, tb, wb, sp->sub, s, it, &A, &B);
            float e = grid_err(G, tb, wb, sp->sub, s, it);
            if (e < best) {
                best = e;
                ls[b] = (uint8_t)l;
                memcpy(idx + b * per, it, (size_t)per * sizeof *it);
            }
        }
    }
    sp->pack(idx, sg, ls, f16_bits(d), out);
}

/* True if every weight of the block is the same: their optimum is the unweighted one, taken instead so
 * that equal weights never do worse than none through rounding. */
static inline bool weights_equal(const float *w, int n) {
    for (int i = 1; i < n; i++)
        if (w[i] != w[0]) return false;
    return true;
}

static inline bool grid_quantize(const iq_spec *sp, const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    const qf_iq_grid *G = qf_iq_grid_get(sp->grid);
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *w = WOFF(imp, i * QF_QK_K);
        if (w && weights_equal(w, QF_QK_K)) w = NULL;
        grid_block(sp, G, x + i * QF_QK_K, w, (uint8_t *)y + (size_t)i * sp->bytes);
    }
    return true;
}

#define IQ_GRID_TYPE(T, ...)                                                                  \
    bool QF_FN(qf_quantize_##T)(const float *x, void *y, int64_t n, const float *imp) {      \
        static const iq_spec sp = { __VA_ARGS__, .bytes = sizeof(qf_block_##T), .pack = qf_pack_##T }; \
        return grid_quantize(&sp, x, y, n, imp);                                              \
    }
IQ_GRID_TYPE(iq3_xxs, .grid = QF_IQG_3XXS, .sub = 32, .c = 0.5f, .top = 62.0f, .tries = 4)
IQ_GRID_TYPE(iq3_s, .grid = QF_IQG_3S, .sub = 32, .free_signs = true, .odd = true, .top = 15.0f, .tries = 4)
IQ_GRID_TYPE(iq2_xxs, .grid = QF_IQG_2XXS, .sub = 32, .c = 0.25f, .top = 43.0f, .tries = 4)
IQ_GRID_TYPE(iq2_xs, .grid = QF_IQG_2XS, .sub = 16, .c = 0.25f, .top = 43.0f, .tries = 4)
IQ_GRID_TYPE(iq2_s, .grid = QF_IQG_2S, .sub = 16, .free_signs = true, .c = 0.25f, .top = 43.0f, .tries = 4)

/* ---- IQ1_S / IQ1_M: xhat = s_b * (g + delta), g a point of {-1, 0, 1}^8, delta = +-1/8 ------------------- */

/* What differs: elements per 3-bit scale (IQ1_S 32, IQ1_M 16), elements per offset sign (32, 8). */
typedef struct iq1_spec {
    int sub, dgroup;
    int tries;
    size_t bytes;
    void (*pack)(const uint16_t *idx, const uint8_t *neg, const uint8_t *ls, uint16_t d, void *out);
} iq1_spec;

/* The point and offset sign of one group of 8 under scale s: each allowed sign (neg < 0: both) shifts the
 * targets by s * delta, the nearest point for that, the exact error decides (ties: sign 0). Adds the
 * group's A = sum w x v, B = sum w v^2 (v = g + delta) and returns its error.
 *
 * The lattice point nearest coordinate by coordinate has, term by term, no larger error than any grid
 * point, so its error L bounds the sign's error from below, and is the sign's error where the grid holds
 * it. The sign of smaller L is searched first; the other is searched only where its L does not exceed the
 * error found by more than a margin (2^-16, far above the rounding of 8 terms): a sign it skips could not
 * have won (with one sign allowed, no bound is formed: L = NaN). The group is one 8-lane vector: its sums take hsum8's tree, and the AVX2 build does the same
 * operations lane for lane (iq1_nearest's neighbours 8 at a time through one transposed tree). */
#define IQ1_PRUNE (1.0f + 1.0f / 65536.0f)

#if defined(QF_VEC_PASSES)
typedef struct iq1_cell { __m256 t; int c; float L; } iq1_cell;

static inline __m256 iq1_point(int p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)&qf_iq1s_grid[p])));
}

/* Targets, lattice cell and lattice error of the group under offset delta. */
static inline iq1_cell iq1_lattice(const qf_iq_grid *G, __m256 xv, __m256 wv, float s, float inv, float delta, bool bound) {
    const __m256i pow3 = _mm256_setr_epi32(1, 3, 9, 27, 81, 243, 729, 2187);
    iq1_cell r;
    r.t = _mm256_sub_ps(xv, _mm256_set1_ps(s * delta));
    __m256 u = _mm256_mul_ps(r.t, _mm256_set1_ps(inv));
    __m256i j = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_add_epi32(_mm256_castps_si256(_mm256_cmp_ps(u, _mm256_set1_ps(G->mid[0]), _CMP_GE_OQ)),
                                                  _mm256_castps_si256(_mm256_cmp_ps(u, _mm256_set1_ps(G->mid[1]), _CMP_GE_OQ))));
    __m256i cj = _mm256_mullo_epi32(j, pow3);
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cj), _mm256_extracti128_si256(cj, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    r.c = _mm_cvtsi128_si32(_mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1)));
    r.L = NAN;
    if (!bound) return r;
    __m256 v = _mm256_add_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(j), _mm256_set1_ps(1.0f)), _mm256_set1_ps(delta));
    __m256 d = _mm256_sub_ps(xv, _mm256_mul_ps(_mm256_set1_ps(s), v));
    r.L = v_hsum8(_mm256_mul_ps(_mm256_mul_ps(wv, d), d));
    return r;
}

/* The grid point of least sum_k g_k (s w_k g_k - 2 w_k t_k) among the neighbours of the cell the grid lacks. */
static inline int iq1_scan(const qf_iq_grid *G, const iq1_cell *cl, __m256 wv, float s) {
    const __m256 sw = _mm256_mul_ps(_mm256_set1_ps(s), wv), wt2 = _mm256_mul_ps(_mm256_set1_ps(2.0f), _mm256_mul_ps(wv, cl->t));
    const uint16_t *nb = G->nb + G->nb_off[cl->c];
    int len = (int)(G->nb_off[cl->c + 1] - G->nb_off[cl->c]), r = nb[0];
    float best = INFINITY;
    for (int i0 = 0; i0 < len; i0 += 8) {
        int cnt = len - i0 < 8 ? len - i0 : 8;
        __m256 prod[8];
        for (int l = 0; l < 8; l++) {
            __m256 gv = iq1_point(nb[i0 + (l < cnt ? l : 0)]);
            prod[l] = _mm256_mul_ps(gv, _mm256_sub_ps(_mm256_mul_ps(sw, gv), wt2));
        }
        __m256 acc = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), v_tree8_add(prod), v_lanes((1 << cnt) - 1));
        __m256 m = _mm256_min_ps(acc, _mm256_permute2f128_ps(acc, acc, 1));
        m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
        m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
        float mn = _mm256_cvtss_f32(m);
        if (mn < best) {
            best = mn;
            r = nb[i0 + __builtin_ctz((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(acc, m, _CMP_EQ_OQ)))];
        }
    }
    return r;
}

/* The sign's point and its exact error. */
static inline float iq1_search(const qf_iq_grid *G, const iq1_cell *cl, __m256 xv, __m256 wv, float s, float delta, int *p) {
    *p = G->map[cl->c];
    if (*p >= 0 && cl->L == cl->L) return cl->L;
    if (*p < 0) *p = iq1_scan(G, cl, wv, s);
    __m256 v = _mm256_add_ps(iq1_point(*p), _mm256_set1_ps(delta));
    __m256 d = _mm256_sub_ps(xv, _mm256_mul_ps(_mm256_set1_ps(s), v));
    return v_hsum8(_mm256_mul_ps(_mm256_mul_ps(wv, d), d));
}

static inline float iq1_group(const qf_iq_grid *G, const float *x, const float *w, float s, float inv, int neg,
                              uint16_t *idx, uint8_t *negout, float *A, float *B) {
    const __m256 xv = _mm256_loadu_ps(x), wv = w ? _mm256_loadu_ps(w) : _mm256_set1_ps(1.0f);
    int lo = neg < 0 ? 0 : neg, hi = neg < 0 ? 1 : neg, p, q;
    iq1_cell cl[2];
    for (int ng = lo; ng <= hi; ng++) cl[ng] = iq1_lattice(G, xv, wv, s, inv, ng ? -QF_IQ1_DELTA : QF_IQ1_DELTA, hi > lo);
    int bn = hi > lo && cl[1].L < cl[0].L ? 1 : lo;
    float best = iq1_search(G, &cl[bn], xv, wv, s, bn ? -QF_IQ1_DELTA : QF_IQ1_DELTA, &p);
    if (hi > lo && !(cl[1 - bn].L > best * IQ1_PRUNE)) {
        int on = 1 - bn;
        float e = iq1_search(G, &cl[on], xv, wv, s, on ? -QF_IQ1_DELTA : QF_IQ1_DELTA, &q);
        if (e < best || (e == best && on < bn)) { best = e; bn = on; p = q; }
    }
    __m256 v = _mm256_add_ps(iq1_point(p), _mm256_set1_ps(bn ? -QF_IQ1_DELTA : QF_IQ1_DELTA)), wvv = _mm256_mul_ps(wv, v);
    *idx = (uint16_t)p;
    *negout = (uint8_t)bn;
    *A += v_hsum8(_mm256_mul_ps(_mm256_mul_ps(wv, xv), v));
    *B += v_hsum8(_mm256_mul_ps(wvv, v));
    return best;
}
#else
typedef struct iq1_cell { float t[8]; int c; float L; } iq1_cell;

static inline iq1_cell iq1_lattice(const qf_iq_grid *G, const float *x, const float *w, float s, float inv, float delta,
                                   bool bound) {
    iq1_cell r;
    float el[8];
    r.c = 0;
    for (int k = 0, scale = 1; k < 8; k++, scale *= 3) {
        r.t[k] = x[k] - s * delta;
        float u = r.t[k] * inv;
        int j = (u >= G->mid[0]) + (u >= G->mid[1]);
        r.c += j * scale;
        float v = ((float)j - 1.0f) + delta, wk = w ? w[k] : 1.0f, d = x[k] - s * v;
        el[k] = wk * d * d;
    }
    r.L = bound ? hsum8(el) : NAN;
    return r;
}

static inline int iq1_scan(const qf_iq_grid *G, const iq1_cell *cl, const float *w, float s) {
    float sw[8], wt2[8];
    for (int k = 0; k < 8; k++) {
        float wk = w ? w[k] : 1.0f;
        sw[k] = s * wk;
        wt2[k] = 2.0f * (wk * cl->t[k]);
    }
    float best = INFINITY;
    int r = G->nb[G->nb_off[cl->c]];
    for (uint32_t i = G->nb_off[cl->c]; i < G->nb_off[cl->c + 1]; i++) {
        int p = G->nb[i];
        float prod[8];
        for (int k = 0; k < 8; k++) {
            float gv = G->g[k * G->n + p];
            prod[k] = gv * (sw[k] * gv - wt2[k]);
        }
        float acc = hsum8(prod);
        if (acc < best) { best = acc; r = p; }
    }
    return r;
}

static inline float iq1_search(const qf_iq_grid *G, const iq1_cell *cl, const float *x, const float *w, float s, float delta,
                               int *p) {
    *p = G->map[cl->c];
    if (*p >= 0 && cl->L == cl->L) return cl->L;
    if (*p < 0) *p = iq1_scan(G, cl, w, s);
    float el[8];
    for (int k = 0; k < 8; k++) {
        float v = G->g[k * G->n + *p] + delta, wk = w ? w[k] : 1.0f, d = x[k] - s * v;
        el[k] = wk * d * d;
    }
    return hsum8(el);
}

static inline float iq1_group(const qf_iq_grid *G, const float *x, const float *w, float s, float inv, int neg,
                              uint16_t *idx, uint8_t *negout, float *A, float *B) {
    int lo = neg < 0 ? 0 : neg, hi = neg < 0 ? 1 : neg, p, q;
    iq1_cell cl[2];
    for (int ng = lo; ng <= hi; ng++) cl[ng] = iq1_lattice(G, x, w, s, inv, ng ? -QF_IQ1_DELTA : QF_IQ1_DELTA, hi > lo);
    int bn = hi > lo && cl[1].L < cl[0].L ? 1 : lo;
    float best = iq1_search(G, &cl[bn], x, w, s, bn ? -QF_IQ1_DELTA : QF_IQ1_DELTA, &p);
    if (hi > lo && !(cl[1 - bn].L > best * IQ1_PRUNE)) {
        int on = 1 - bn;
        float e = iq1_search(G, &cl[on], x, w, s, on ? -QF_IQ1_DELTA : QF_IQ1_DELTA, &q);
        if (e < best || (e == best && on < bn)) { best = e; bn = on; p = q; }
    }
    float delta = bn ? -QF_IQ1_DELTA : QF_IQ1_DELTA, al[8], bl[8];
    for (int k = 0; k < 8; k++) {
        float v = G->g[k * G->n + p] + delta, wk = w ? w[k] : 1.0f;
        al[k] = wk * x[k] * v;
        bl[k] = wk * v * v;
    }
    *idx = (uint16_t)p;
    *negout = (uint8_t)bn;
    *A += hsum8(al);
    *B += hsum8(bl);
    return best;
}
#endif

/* A sub-block's points and offset signs under scale s (neg: the sub-block's one sign for IQ1_S, or -1 to
 * choose per group); returns the exact error, A and B as grid_assign. */
static inline float iq1_assign(const iq1_spec *sp, const qf_iq_grid *G, const float *x, const float *w, float s, int neg,
                               uint16_t *idx, uint8_t *negs, float *A, float *B) {
    float e = 0.0f, inv = 1.0f / s;
    *A = *B = 0.0f;
    for (int j = 0; j < sp->sub / 8; j++)
        e += iq1_group(G, x + 8 * j, WOFF(w, 8 * j), s, inv, neg, idx + j, negs + j, A, B);
    return e;
}

/* The best least-squares scale of a sub-block (and, for IQ1_S, its offset sign): starts mapping its largest
 * |x| onto 1 + delta within +-20%, for each sign where the sign is per sub-block, then up to 2
 * re-assignments under the winner's own scale. */
static inline float iq1_sub_scale(const iq1_spec *sp, const qf_iq_grid *G, const float *x, const float *w, int *neg) {
    float m = 0.0f;
    for (int i = 0; i < sp->sub; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    *neg = sp->dgroup == sp->sub ? 0 : -1;
    if (m == 0.0f) return 0.0f;
    uint16_t idx[4];
    uint8_t ng[4];
    float best_q = 0.0f, best_s = 0.0f, A, B;
    int nsigns = sp->dgroup == sp->sub ? 2 : 1, best_neg = *neg;
    for (int sg = 0; sg < nsigns; sg++) {
        int nsg = nsigns == 2 ? sg : -1;
        for (int j = 0; j < sp->tries; j++) {
            float r = sp->tries > 1 ? 0.8f + 0.4f * (float)j / (float)(sp->tries - 1) : 1.0f;
            iq1_assign(sp, G, x, w, m / ((1.0f + QF_IQ1_DELTA) * r), nsg, idx, ng, &A, &B);
            if (B > 0.0f && A > 0.0f && A * A / B > best_q) {
                best_q = A * A / B;
                best_s = A / B;
                best_neg = nsg;
            }
        }
    }
    for (int r = 0; r < 2 && best_s > 0.0f; r++) {
        iq1_assign(sp, G, x, w, best_s, best_neg, idx, ng, &A, &B);
        if (!(A > 0.0f && B > 0.0f && A * A / B > best_q)) break;
        best_q = A * A / B;
        best_s = A / B;
    }
    *neg = best_neg;
    return best_s;
}

static inline void iq1_block(const iq1_spec *sp, const qf_iq_grid *G, const float *x, const float *w, uint8_t *out) {
    float sc[16], mx = 0.0f;
    int sneg[16];
    uint16_t idx[QF_QK_K / 8] = { 0 }, it[4];
    uint8_t negs[QF_QK_K / 8] = { 0 }, nt[4], ls[16] = { 0 };
    int nsub = QF_QK_K / sp->sub, per = sp->sub / 8;
    for (int b = 0; b < nsub; b++) {
        sc[b] = iq1_sub_scale(sp, G, x + b * sp->sub, WOFF(w, b * sp->sub), &sneg[b]);
        mx = sc[b] > mx ? sc[b] : mx;
    }
    float d = f16_sat(mx / 15.0f);
    if (!(d > 0.0f)) d = 0.0f;
    for (int b = 0; b < nsub && d > 0.0f; b++) {
        const float *xb = x + b * sp->sub, *wb = WOFF(w, b * sp->sub);
        float u = (sc[b] / d - 1.0f) * 0.5f, best = INFINITY, A, B;
        u = u < 0.0f ? 0.0f : u > 7.0f ? 7.0f : u;
        int l0 = (int)((u + RND_MAGIC) - RND_MAGIC);
        for (int l = l0 - 1; l <= l0 + 1; l++) {
            if (l < 0 || l > 7) continue;
            float e = iq1_assign(sp, G, xb, wb, d * (float)(2 * l + 1), sneg[b], it, nt, &A, &B);
            if (e < best) {
                best = e;
                ls[b] = (uint8_t)l;
                memcpy(idx + b * per, it, (size_t)per * sizeof *it);
                memcpy(negs + b * per, nt, (size_t)per);
            }
        }
    }
    sp->pack(idx, negs, ls, f16_bits(d), out);
}

static inline bool iq1_quantize(const iq1_spec *sp, const float *x, void *y, int64_t n, const float *imp) {
    if (!all_finite(x, n)) return false;
    const qf_iq_grid *G = qf_iq_grid_get(QF_IQG_1S);
    for (int64_t i = 0; i < n / QF_QK_K; i++) {
        const float *w = WOFF(imp, i * QF_QK_K);
        if (w && weights_equal(w, QF_QK_K)) w = NULL;
        iq1_block(sp, G, x + i * QF_QK_K, w, (uint8_t *)y + (size_t)i * sp->bytes);
    }
    return true;
}

bool QF_FN(qf_quantize_iq1_s)(const float *x, void *y, int64_t n, const float *imp) {
    static const iq1_spec sp = { .sub = 32, .dgroup = 32, .tries = 4, .bytes = sizeof(qf_block_iq1_s), .pack = qf_pack_iq1_s };
    return iq1_quantize(&sp, x, y, n, imp);
}

bool QF_FN(qf_quantize_iq1_m)(const float *x, void *y, int64_t n, const float *imp) {
    static const iq1_spec sp = { .sub = 16, .dgroup = 8, .tries = 4, .bytes = sizeof(qf_block_iq1_m), .pack = qf_pack_iq1_m };
    return iq1_quantize(&sp, x, y, n, imp);
}
