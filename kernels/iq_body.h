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

/* What differs: elements per 3-bit scale (IQ1_S 32, IQ1_M 16), elements per offset sign (32, 8), starting
 * scales per sub-block. */
typedef struct iq1_spec {
    int sub, dgroup;
    int tries;
    size_t bytes;
    void (*pack)(const uint16_t *idx, const uint8_t *neg, const uint8_t *ls, uint16_t d, void *out);
} iq1_spec;

/* The search works on groups of 8 under a scale s and an offset delta. e_j[k] = w_k (x_k - s (lev_j + delta))^2
 * is element k's error at level j (lev = -1, 0, 1), formed as the exact error forms it. The lattice point
 * taking each element's level of least error (ties: the lower level) has error L, the hsum8 of those
 * terms; a grid point's error is the same tree over terms no smaller, and rounding is monotone, so no grid
 * point's error is below L. Scales are searched on the lattice alone (L, cheap); the grid points are
 * found once, for the scales chosen. The group is one 8-lane vector: its sums take hsum8's tree, and the
 * AVX2 build does the same operations lane for lane. */
#if defined(QF_VEC_PASSES)
static inline void iq1_terms(__m256 xv, __m256 wv, float s, float delta, __m256 e[3]) {
    for (int j = 0; j < 3; j++) {
        __m256 d = _mm256_sub_ps(xv, _mm256_set1_ps(s * ((float)(j - 1) + delta)));
        e[j] = _mm256_mul_ps(_mm256_mul_ps(wv, d), d);
    }
}

/* hsum8 of a and of b, the same tree for both at once. */
static inline void v_hsum8x2(__m256 a, __m256 b, float *ra, float *rb) {
    __m256 h = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    h = _mm256_add_ps(h, _mm256_shuffle_ps(h, h, 0x4E));
    h = _mm256_add_ps(h, _mm256_shuffle_ps(h, h, 0xB1));
    *ra = _mm256_cvtss_f32(h);
    *rb = _mm_cvtss_f32(_mm256_extractf128_ps(h, 1));
}
#endif

/* The grid point of least error for a lattice point c the grid lacks. Taking another level at element k
 * costs D = e_j[k] - e_jk[k] >= 0 over L, so a point changing h elements costs at least the sum of the h
 * smallest dk = min_j D. The points changing one element are compared first (16 at once); deeper ones
 * (iq1_deeper, scalar in every build) only while that bound is below the best cost found, elements taken
 * in ascending dk and a branch cut where its cost plus its element's dk reaches the best. Each bound is
 * summed in the order of the costs it stands for, from 0, so it is no larger in float either: nothing
 * cut could have been cheaper. Ties keep the first found (one-element changes: all to the lower other
 * level, element by element, then all to the upper). */
typedef struct iq1_alts { float D[2][8], dk[8]; int off[2][8], ord[8]; } iq1_alts;

static void iq1_visit(const qf_iq_grid *G, const iq1_alts *a, int from, int left, float cost, int code, float *best,
                      int *bp) {
    for (int i = from; i <= 8 - left; i++) {
        int k = a->ord[i];
        if (!(cost + a->dk[k] < *best)) break;
        for (int t = 0; t < 2; t++) {
            float c2 = cost + a->D[t][k];
            int c = code + a->off[t][k];
            if (!(c2 < *best)) continue;
            if (left > 1) {
                iq1_visit(G, a, i + 1, left - 1, c2, c, best, bp);
            } else if (G->map[c] >= 0) {
                *best = c2;
                *bp = G->map[c];
            }
        }
    }
}

/* The points changing 2..8 elements of c, given the best one-element change (best, bp; INFINITY, 0 if none). */
static int iq1_deeper(const qf_iq_grid *G, iq1_alts *a, int c, float best, int bp) {
    for (int k = 0; k < 8; k++) {
        int i = k;
        for (; i > 0 && a->dk[a->ord[i - 1]] > a->dk[k]; i--) a->ord[i] = a->ord[i - 1];
        a->ord[i] = k;
    }
    float bound = a->dk[a->ord[0]];
    for (int h = 2; h <= 8; h++) {
        bound += a->dk[a->ord[h - 1]];
        if (!(bound < best)) break;
        iq1_visit(G, a, 0, h, 0.0f, c, &best, &bp);
    }
    return bp;
}

/* A group under one offset sign: its terms e_j, their least em (level j_k per element, code c = sum_k j_k 3^k)
 * and L. For iq1_nearest, the other two levels of element k, the lower first: 1 where j_k is 0, else 0;
 * then 1 where j_k is 2, else 2. A change's cost D that is not a number (two overflowed terms) counts as
 * infinite, so both builds order the same values. */
#if defined(QF_VEC_PASSES)
typedef struct iq1_cell { __m256 e[3], em; __m256i j; int c; float L; } iq1_cell;

static inline iq1_cell iq1_cell_of(const float *x, const float *w, float s, float delta) {
    const __m256i pow3 = _mm256_setr_epi32(1, 3, 9, 27, 81, 243, 729, 2187);
    iq1_cell r;
    iq1_terms(_mm256_loadu_ps(x), w ? _mm256_loadu_ps(w) : _mm256_set1_ps(1.0f), s, delta, r.e);
    __m256 up1 = _mm256_cmp_ps(r.e[1], r.e[0], _CMP_LT_OQ), m = _mm256_blendv_ps(r.e[0], r.e[1], up1);
    __m256 up2 = _mm256_cmp_ps(r.e[2], m, _CMP_LT_OQ);
    r.em = _mm256_blendv_ps(m, r.e[2], up2);
    r.j = _mm256_blendv_epi8(_mm256_srli_epi32(_mm256_castps_si256(up1), 31), _mm256_set1_epi32(2), _mm256_castps_si256(up2));
    __m256i cj = _mm256_mullo_epi32(r.j, pow3);
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cj), _mm256_extracti128_si256(cj, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    r.c = _mm_cvtsi128_si32(_mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1)));
    r.L = v_hsum8(r.em);
    return r;
}

/* Smallest lane (min does not round, and no lane here is NaN, so any order gives it). */
static inline float v_hmin8(__m256 v) {
    __m128 b = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_min_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_min_ss(b, _mm_shuffle_ps(b, b, 1)));
}

static inline int iq1_nearest(const qf_iq_grid *G, const iq1_cell *cl) {
    const __m256i pow3 = _mm256_setr_epi32(1, 3, 9, 27, 81, 243, 729, 2187), one = _mm256_set1_epi32(1),
                  two = _mm256_set1_epi32(2), c = _mm256_set1_epi32(cl->c);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256i j0 = _mm256_cmpeq_epi32(cl->j, _mm256_setzero_si256()), j2 = _mm256_cmpeq_epi32(cl->j, two);
    __m256i lv[2] = { _mm256_and_si256(j0, one), _mm256_sub_epi32(two, _mm256_and_si256(j2, one)) };
    __m256 el[2] = { _mm256_blendv_ps(cl->e[0], cl->e[1], _mm256_castsi256_ps(j0)),
                     _mm256_blendv_ps(cl->e[2], cl->e[1], _mm256_castsi256_ps(j2)) };
    __m256 D[2], cand[2];
    iq1_alts a;
    for (int t = 0; t < 2; t++) {
        D[t] = _mm256_sub_ps(el[t], cl->em);
        D[t] = _mm256_blendv_ps(inf, D[t], _mm256_cmp_ps(D[t], _mm256_setzero_ps(), _CMP_GE_OQ));
        __m256i off = _mm256_mullo_epi32(_mm256_sub_epi32(lv[t], cl->j), pow3), code = _mm256_add_epi32(c, off);
        __m256i word = _mm256_i32gather_epi32((const int *)G->in, _mm256_srli_epi32(code, 5), 4);
        __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(word, _mm256_and_si256(code, _mm256_set1_epi32(31))), one);
        __m256 ok = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bit, one)), _mm256_cmp_ps(D[t], inf, _CMP_LT_OQ));
        cand[t] = _mm256_blendv_ps(inf, D[t], ok);
        _mm256_storeu_ps(a.D[t], D[t]);
        _mm256_storeu_si256((__m256i *)a.off[t], off);
    }
    float best = v_hmin8(_mm256_min_ps(cand[0], cand[1]));
    int bp = 0; /* kept only where every change costs infinitely much (overflowed terms) */
    if (best < INFINITY) {
        int m0 = _mm256_movemask_ps(_mm256_cmp_ps(cand[0], _mm256_set1_ps(best), _CMP_EQ_OQ)),
            m1 = _mm256_movemask_ps(_mm256_cmp_ps(cand[1], _mm256_set1_ps(best), _CMP_EQ_OQ));
        int t = m0 ? 0 : 1;
        bp = G->map[cl->c + a.off[t][__builtin_ctz((unsigned)(m0 ? m0 : m1))]];
    }
    /* room below best for two changes? (the two smallest dk) */
    __m256 dk = _mm256_min_ps(D[1], D[0]);
    float d1 = v_hmin8(dk);
    int first = __builtin_ctz((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(dk, _mm256_set1_ps(d1), _CMP_EQ_OQ)));
    float d2 = v_hmin8(_mm256_blendv_ps(dk, inf, v_lanes(1 << first)));
    if (!(d1 + d2 < best)) return bp;
    _mm256_storeu_ps(a.dk, dk);
    return iq1_deeper(G, &a, cl->c, best, bp);
}

/* Grid point p's error, from the cell's terms. */
static inline float iq1_err(const qf_iq_grid *G, const iq1_cell *cl, int p) {
    __m256i g = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)&qf_iq1s_grid[p]));
    __m256 e = _mm256_blendv_ps(cl->e[1], cl->e[0], _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(), g)));
    return v_hsum8(_mm256_blendv_ps(e, cl->e[2], _mm256_castsi256_ps(_mm256_cmpgt_epi32(g, _mm256_setzero_si256()))));
}
#else
typedef struct iq1_cell { float e[3][8]; int j[8]; int c; float L; } iq1_cell;

static inline iq1_cell iq1_cell_of(const float *x, const float *w, float s, float delta) {
    iq1_cell r;
    float em[8];
    r.c = 0;
    for (int k = 0, scale = 1; k < 8; k++, scale *= 3) {
        float wk = w ? w[k] : 1.0f;
        for (int j = 0; j < 3; j++) {
            float d = x[k] - s * ((float)(j - 1) + delta);
            r.e[j][k] = wk * d * d;
        }
        int j = r.e[1][k] < r.e[0][k];
        j = r.e[2][k] < r.e[j][k] ? 2 : j;
        r.j[k] = j;
        em[k] = r.e[j][k];
        r.c += j * scale;
    }
    r.L = hsum8(em);
    return r;
}

static inline int iq1_nearest(const qf_iq_grid *G, const iq1_cell *cl) {
    static const int pow3[8] = { 1, 3, 9, 27, 81, 243, 729, 2187 };
    iq1_alts a;
    float best = INFINITY, d1 = INFINITY, d2 = INFINITY;
    int bp = 0;
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 8; k++) {
            int jk = cl->j[k], lv = t ? 2 - (jk == 2) : jk == 0, c = cl->c + (lv - jk) * pow3[k];
            float D = cl->e[lv][k] - cl->e[jk][k];
            a.D[t][k] = D >= 0.0f ? D : INFINITY;
            a.off[t][k] = (lv - jk) * pow3[k];
            if (G->in[c >> 5] >> (c & 31) & 1 && a.D[t][k] < best) {
                best = a.D[t][k];
                bp = G->map[c];
            }
        }
    for (int k = 0; k < 8; k++) {
        a.dk[k] = a.D[1][k] < a.D[0][k] ? a.D[1][k] : a.D[0][k];
        if (a.dk[k] < d1) { d2 = d1; d1 = a.dk[k]; }
        else if (a.dk[k] < d2) d2 = a.dk[k];
    }
    if (!(d1 + d2 < best)) return bp;
    return iq1_deeper(G, &a, cl->c, best, bp);
}

static inline float iq1_err(const qf_iq_grid *G, const iq1_cell *cl, int p) {
    float el[8];
    for (int k = 0; k < 8; k++) el[k] = cl->e[(int)G->g[k * G->n + p] + 1][k];
    return hsum8(el);
}
#endif

/* The lattice alone: for each allowed sign (neg < 0: both) the lattice point, the smaller L deciding (ties:
 * sign 0). Adds that point's A = sum w x v and B = sum w v^2 (v = its levels + delta); returns its L. */
static inline float iq1_group_lattice(const float *x, const float *w, float s, int neg, float *A, float *B) {
    int lo = neg < 0 ? 0 : neg, hi = neg < 0 ? 1 : neg;
    iq1_cell cl[2];
    for (int ng = lo; ng <= hi; ng++) cl[ng] = iq1_cell_of(x, w, s, ng ? -QF_IQ1_DELTA : QF_IQ1_DELTA);
    int bn = hi > lo && cl[1].L < cl[0].L ? 1 : lo;
    float delta = bn ? -QF_IQ1_DELTA : QF_IQ1_DELTA;
#if defined(QF_VEC_PASSES)
    __m256 xv = _mm256_loadu_ps(x), wv = w ? _mm256_loadu_ps(w) : _mm256_set1_ps(1.0f);
    __m256 v = _mm256_add_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(cl[bn].j), _mm256_set1_ps(1.0f)), _mm256_set1_ps(delta));
    float a, b;
    v_hsum8x2(_mm256_mul_ps(_mm256_mul_ps(wv, xv), v), _mm256_mul_ps(_mm256_mul_ps(wv, v), v), &a, &b);
    *A += a;
    *B += b;
#else
    float al[8], bl[8];
    for (int k = 0; k < 8; k++) {
        float v = ((float)cl[bn].j[k] - 1.0f) + delta, wk = w ? w[k] : 1.0f;
        al[k] = wk * x[k] * v;
        bl[k] = wk * v * v;
    }
    *A += hsum8(al);
    *B += hsum8(bl);
#endif
    return cl[bn].L;
}

/* The grid point and offset sign of one group of 8 under scale s: for each allowed sign (neg < 0: both)
 * the point of least error, the smaller error deciding. The sign of smaller L (ties: sign 0) is searched
 * first, the other only where its L is below the error found, as only then could it do better (ties keep
 * the first). */
static inline void iq1_group(const qf_iq_grid *G, const float *x, const float *w, float s, int neg, uint16_t *idx,
                             uint8_t *negout) {
    int lo = neg < 0 ? 0 : neg, hi = neg < 0 ? 1 : neg, pt[2] = { 0, 0 };
    float err[2] = { INFINITY, INFINITY };
    iq1_cell cl[2];
    for (int ng = lo; ng <= hi; ng++) cl[ng] = iq1_cell_of(x, w, s, ng ? -QF_IQ1_DELTA : QF_IQ1_DELTA);
    int bn = hi > lo && cl[1].L < cl[0].L ? 1 : lo;
    for (int pass = 0; pass < 2; pass++) {
        int ng = pass ? 1 - bn : bn;
        if (pass && (hi == lo || !(cl[ng].L < err[bn]))) break;
        pt[ng] = G->map[cl[ng].c];
        if (pt[ng] >= 0) {
            err[ng] = cl[ng].L;
        } else {
            pt[ng] = iq1_nearest(G, &cl[ng]);
            err[ng] = iq1_err(G, &cl[ng], pt[ng]);
        }
        if (pass && err[ng] < err[bn]) bn = ng;
    }
    *idx = (uint16_t)pt[bn];
    *negout = (uint8_t)bn;
}

/* A sub-block on the lattice under scale s (neg: the sub-block's one sign for IQ1_S, or -1 to choose per
 * group): returns its error, A and B as grid_assign. */
static inline float iq1_lattice_assign(const iq1_spec *sp, const float *x, const float *w, float s, int neg, float *A,
                                       float *B) {
    float e = 0.0f;
    *A = *B = 0.0f;
    for (int j = 0; j < sp->sub / 8; j++) e += iq1_group_lattice(x + 8 * j, WOFF(w, 8 * j), s, neg, A, B);
    return e;
}

/* The best least-squares scale of a sub-block on the lattice (and, for IQ1_S, its offset sign): starts
 * mapping its largest |x| onto 1 + delta within +-20%, for each sign where the sign is per sub-block, then
 * up to 2 re-assignments under the winner's own scale. *curv takes B at the winner: near it the error
 * grows as B (s' - s)^2. */
static inline float iq1_sub_scale(const iq1_spec *sp, const float *x, const float *w, int *neg, float *curv) {
    float m = 0.0f;
    for (int i = 0; i < sp->sub; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    *neg = sp->dgroup == sp->sub ? 0 : -1;
    *curv = 0.0f;
    if (m == 0.0f) return 0.0f;
    float best_q = 0.0f, best_s = 0.0f, best_b = 0.0f, A, B;
    int nsigns = sp->dgroup == sp->sub ? 2 : 1, best_neg = *neg;
    for (int sg = 0; sg < nsigns; sg++) {
        int nsg = nsigns == 2 ? sg : -1;
        for (int j = 0; j < sp->tries; j++) {
            float r = sp->tries > 1 ? 0.8f + 0.4f * (float)j / (float)(sp->tries - 1) : 1.0f;
            iq1_lattice_assign(sp, x, w, m / ((1.0f + QF_IQ1_DELTA) * r), nsg, &A, &B);
            if (B > 0.0f && A > 0.0f && A * A / B > best_q) {
                best_q = A * A / B;
                best_s = A / B;
                best_b = B;
                best_neg = nsg;
            }
        }
    }
    for (int r = 0; r < 2 && best_s > 0.0f; r++) {
        iq1_lattice_assign(sp, x, w, best_s, best_neg, &A, &B);
        if (!(A > 0.0f && B > 0.0f && A * A / B > best_q)) break;
        best_q = A * A / B;
        best_s = A / B;
        best_b = B;
    }
    *neg = best_neg;
    *curv = best_b;
    return best_s;
}

/* Under super-scale d, per sub-block the 3-bit l (scale d (2l + 1)) among the three nearest its own scale
 * sc, judged on the lattice; returns the total error, with P = sum (2l+1) A and Q = sum (2l+1)^2 B, whose
 * ratio is the least-squares d for these points. */
static inline float iq1_levels(const iq1_spec *sp, const float *x, const float *w, const float *sc, const int *sneg,
                               float d, uint8_t *ls, float *P, float *Q) {
    float total = 0.0f, p = 0.0f, q = 0.0f;
    for (int b = 0; b < QF_QK_K / sp->sub; b++) {
        const float *xb = x + b * sp->sub, *wb = WOFF(w, b * sp->sub);
        float u = (sc[b] / d - 1.0f) * 0.5f, best = INFINITY, A, B, bA = 0.0f, bB = 0.0f;
        u = u < 0.0f ? 0.0f : u > 7.0f ? 7.0f : u;
        int l0 = (int)((u + RND_MAGIC) - RND_MAGIC);
        ls[b] = (uint8_t)l0;
        for (int l = l0 - 1; l <= l0 + 1; l++) {
            if (l < 0 || l > 7) continue;
            float e = iq1_lattice_assign(sp, xb, wb, d * (float)(2 * l + 1), sneg[b], &A, &B);
            if (e < best) {
                best = e;
                ls[b] = (uint8_t)l;
                bA = A;
                bB = B;
            }
        }
        float f = (float)(2 * ls[b] + 1);
        p += f * bA;
        q += f * f * bB;
        total += best;
    }
    *P = p;
    *Q = q;
    return total;
}

/* A cheap estimate of the error super-scale d costs: sum_b curv_b (d (2l+1) - sc_b)^2, l nearest (each
 * sub-block's error held at its own scale's, growing as its curvature says). nsub is 8 or 16: sub-block b
 * in lane b % 8. */
static inline float iq1_model(const float *sc, const float *cv, int nsub, float d) {
    float id = 1.0f / d;
#if defined(QF_VEC_PASSES)
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nsub; b += 8) {
        __m256 s8 = _mm256_loadu_ps(sc + b);
        __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(s8, _mm256_set1_ps(id)), _mm256_set1_ps(1.0f)), _mm256_set1_ps(0.5f));
        u = _mm256_min_ps(_mm256_max_ps(u, _mm256_setzero_ps()), _mm256_set1_ps(7.0f));
        __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), v_round(u)), _mm256_set1_ps(1.0f));
        __m256 e = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(d), f), s8);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(cv + b), e), e));
    }
    return v_hsum8(acc);
#else
    float c[8] = { 0 };
    for (int b = 0; b < nsub; b++) {
        float u = (sc[b] * id - 1.0f) * 0.5f;
        u = u > 0.0f ? u : 0.0f;
        u = u < 7.0f ? u : 7.0f;
        float e = d * (2.0f * ((u + RND_MAGIC) - RND_MAGIC) + 1.0f) - sc[b];
        c[b % 8] += cv[b] * e * e;
    }
    return hsum8(c);
#endif
}

/* Levels under super-scale d2 on the lattice, taken (with d2, P, Q) where they beat *best. */
static inline bool iq1_try_d(const iq1_spec *sp, const float *x, const float *w, const float *sc, const int *sneg, float d2,
                             float *d, float *best, uint8_t *ls, float *P, float *Q) {
    uint8_t lt[16];
    float p, q, e = iq1_levels(sp, x, w, sc, sneg, d2, lt, &p, &q);
    if (!(e < *best)) return false;
    *best = e;
    *d = d2;
    *P = p;
    *Q = q;
    memcpy(ls, lt, sizeof lt);
    return true;
}

/* A super-block. The sub-blocks' own scales sc_b first; then the super-scale d: d0 = max sc_b / 15 (the
 * largest at l = 7) or the best of d0 (1 - k / 50), 0 < k < 16, by iq1_model, whichever the lattice
 * prefers, then up to 2 least-squares refits while the lattice error drops. Last, under the chosen d and
 * l, each group's grid point and sign. */
static inline void iq1_block(const iq1_spec *sp, const qf_iq_grid *G, const float *x, const float *w, uint8_t *out) {
    float sc[16], cv[16], mx = 0.0f;
    int sneg[16], nsub = QF_QK_K / sp->sub, per = sp->sub / 8;
    uint16_t idx[QF_QK_K / 8] = { 0 };
    uint8_t negs[QF_QK_K / 8] = { 0 }, ls[16] = { 0 };
    for (int b = 0; b < nsub; b++) {
        sc[b] = iq1_sub_scale(sp, x + b * sp->sub, WOFF(w, b * sp->sub), &sneg[b], &cv[b]);
        mx = sc[b] > mx ? sc[b] : mx;
    }
    float d = f16_sat(mx / 15.0f);
    if (!(d > 0.0f)) d = 0.0f;
    if (d > 0.0f) {
        float bm = iq1_model(sc, cv, nsub, d), dm = d, best = INFINITY, P = 0.0f, Q = 0.0f;
        for (int k = 1; k < 16; k++) {
            float dk = f16_sat(d * (1.0f - (float)k / 50.0f)), c = iq1_model(sc, cv, nsub, dk);
            if (c < bm) { bm = c; dm = dk; }
        }
        iq1_try_d(sp, x, w, sc, sneg, d, &d, &best, ls, &P, &Q);
        if (dm != d) iq1_try_d(sp, x, w, sc, sneg, dm, &d, &best, ls, &P, &Q);
        for (int r = 0; r < 2 && Q > 0.0f; r++) {
            float d2 = f16_sat(P / Q);
            if (!(d2 > 0.0f) || d2 == d || !iq1_try_d(sp, x, w, sc, sneg, d2, &d, &best, ls, &P, &Q)) break;
        }
        for (int b = 0; b < nsub; b++)
            for (int j = 0; j < per; j++)
                iq1_group(G, x + b * sp->sub + 8 * j, WOFF(w, b * sp->sub + 8 * j), d * (float)(2 * ls[b] + 1), sneg[b],
                          idx + b * per + j, negs + b * per + j);
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
    static const iq1_spec sp = { .sub = 16, .dgroup = 8, .tries = 2, .bytes = sizeof(qf_block_iq1_m), .pack = qf_pack_iq1_m };
    return iq1_quantize(&sp, x, y, n, imp);
}
