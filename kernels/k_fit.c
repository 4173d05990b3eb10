/*
 * k_fit.c — scale searches shared by the quantizers (contract in fit.h).
 *
 * Pattern of every search: generate candidate grids (a scale that maps the extreme value to a code near
 * the end of the range, in steps of 0.1 code), fit the scale (and offset) to each candidate's codes by
 * weighted least squares, rank candidates by the error those sums predict, then confirm the winner by
 * re-quantizing exactly, against the caller's seed, and polish by alternating "nearest codes" and
 * "least-squares scale" while the true error drops. Ranking by sums keeps it one pass per candidate.
 */
#include "kernels/fit.h"

#include "kernels/fpconv.h"

#include <math.h>
#include <string.h>

#define CAND_STEPS 10     /* candidates at code offsets -1.0 .. +1.0 around each end of the range */
#define POLISH_ROUNDS 3

static float f16_round(float v) { return qf_f16_to_f32(qf_f32_to_f16(v)); }
static float wt(const float *w, int i) { return w ? w[i] : 1.0f; }

float qf_err_sym(const float *x, const float *w, int n, float s, int qmin, int qmax, int8_t *q) {
    float err = 0.0f, inv = s != 0.0f ? 1.0f / s : 0.0f; /* reciprocal: searches run this a lot */
    for (int i = 0; i < n; i++) {
        int l = s != 0.0f ? qf_qnear(x[i] * inv, qmin, qmax) : 0;
        float e = x[i] - (float)l * s;
        err += wt(w, i) * e * e;
        if (q) q[i] = (int8_t)l;
    }
    return err;
}

float qf_err_affine(const float *x, const float *w, int n, float s, float b, int qmax, uint8_t *q) {
    float err = 0.0f, inv = s != 0.0f ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++) {
        int l = s != 0.0f ? qf_qnear((x[i] - b) * inv, 0, qmax) : 0;
        float e = x[i] - ((float)l * s + b);
        err += wt(w, i) * e * e;
        if (q) q[i] = (uint8_t)l;
    }
    return err;
}

/* ---- symmetric -------------------------------------------------------------------------------------- */

/* Least-squares scale for the codes that scale s0 gives: sum w x q / sum w q^2 (0 if all codes are 0). */
static float ls_sym(const float *x, const float *w, int n, float s0, int qmin, int qmax) {
    float sxq = 0.0f, sqq = 0.0f, inv = 1.0f / s0;
    for (int i = 0; i < n; i++) {
        float q = (float)qf_qnear(x[i] * inv, qmin, qmax);
        sxq += wt(w, i) * x[i] * q;
        sqq += wt(w, i) * q * q;
    }
    return sqq > 0.0f ? sxq / sqq : 0.0f;
}

/* Error the codes of s0 leave after refitting, from sums (no second pass); the refit scale in *s1. */
static double predicted_sym(const float *x, const float *w, int n, float s0, int qmin, int qmax,
                            bool f16, float *s1) {
    double sxx = 0, sxq = 0, sqq = 0;
    float inv = 1.0f / s0;
    for (int i = 0; i < n; i++) {
        double q = qf_qnear(x[i] * inv, qmin, qmax), wi = wt(w, i);
        sxx += wi * x[i] * x[i];
        sxq += wi * x[i] * q;
        sqq += wi * q * q;
    }
    double s = sqq > 0 ? sxq / sqq : 0;
    *s1 = f16 ? f16_round((float)s) : (float)s;
    return sxx - 2.0 * *s1 * sxq + (double)*s1 * *s1 * sqq;
}

float qf_fit_sym(const float *x, const float *w, int n, int qmin, int qmax, bool f16, float seed) {
    float m = 0.0f; /* the value of largest magnitude, with its sign */
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    if (m == 0.0f) return 0.0f;

    float best_s = 0.0f;
    double best_pred = INFINITY;
    const int ends[2] = { qmin, qmax };
    for (int e = 0; e < 2; e++) {
        for (int k = -CAND_STEPS; k <= CAND_STEPS; k++) {
            float c = (float)ends[e] + 0.1f * (float)k; /* the code m should land on */
            if (c == 0.0f) continue;
            float s1;
            double p = predicted_sym(x, w, n, m / c, qmin, qmax, f16, &s1);
            if (s1 != 0.0f && p < best_pred) { best_pred = p; best_s = s1; }
        }
    }
    float best_err = qf_err_sym(x, w, n, best_s, qmin, qmax, NULL);
    if (seed != 0.0f) {
        float s = f16 ? f16_round(seed) : seed;
        float e = qf_err_sym(x, w, n, s, qmin, qmax, NULL);
        if (e < best_err) { best_err = e; best_s = s; }
    }
    for (int r = 0; r < POLISH_ROUNDS && best_s != 0.0f; r++) {
        float s = ls_sym(x, w, n, best_s, qmin, qmax);
        if (f16) s = f16_round(s);
        if (s == best_s || s == 0.0f) break;
        float e = qf_err_sym(x, w, n, s, qmin, qmax, NULL);
        if (!(e < best_err)) break;
        best_err = e;
        best_s = s;
    }
    return best_s;
}

/* ---- affine ------------------------------------------------------------------------------------------ */

typedef struct affine_sums { double sw, sx, sxx, sq, sqq, sxq; } affine_sums;

static affine_sums sums_affine(const float *x, const float *w, int n, float s0, float b0, int qmax) {
    affine_sums a = { 0, 0, 0, 0, 0, 0 };
    float inv = s0 != 0.0f ? 1.0f / s0 : 0.0f;
    for (int i = 0; i < n; i++) {
        double q = s0 != 0.0f ? qf_qnear((x[i] - b0) * inv, 0, qmax) : 0, wi = wt(w, i);
        a.sw += wi; a.sx += wi * x[i]; a.sxx += wi * x[i] * x[i];
        a.sq += wi * q; a.sqq += wi * q * q; a.sxq += wi * x[i] * q;
    }
    return a;
}

/* Least-squares (s, b) for fixed codes, honouring b <= 0 and the F16 storage; returns predicted error. */
static double solve_affine(const affine_sums *a, bool f16, bool b_le0, float *s, float *b) {
    double det = a->sw * a->sqq - a->sq * a->sq;
    double ss = 0, bb = a->sw > 0 ? a->sx / a->sw : 0;
    if (det > 0) {
        ss = (a->sw * a->sxq - a->sq * a->sx) / det;
        bb = (a->sqq * a->sx - a->sq * a->sxq) / det;
    }
    if (b_le0 && bb > 0) { bb = 0; ss = a->sqq > 0 ? a->sxq / a->sqq : 0; }
    if (ss < 0) { ss = 0; bb = a->sw > 0 ? a->sx / a->sw : 0; if (b_le0 && bb > 0) bb = 0; }
    *s = f16 ? f16_round((float)ss) : (float)ss;
    *b = f16 ? f16_round((float)bb) : (float)bb;
    double S = *s, B = *b;
    return a->sxx + S * S * a->sqq + B * B * a->sw - 2 * S * a->sxq - 2 * B * a->sx + 2 * S * B * a->sq;
}

void qf_fit_affine(const float *x, const float *w, int n, int qmax, bool f16, bool b_le0,
                   float seed_s, float seed_b, float *s_out, float *b_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    if (b_le0 && lo > 0.0f) lo = 0.0f;
    if (hi == lo) { /* constant block: all codes 0, offset carries the value */
        *s_out = 0.0f;
        *b_out = f16 ? f16_round(lo) : lo;
        return;
    }
    float best_s = 0.0f, best_b = lo;
    double best_pred = INFINITY;
    for (int k = -CAND_STEPS; k <= CAND_STEPS; k++) {
        float s0 = (hi - lo) / ((float)qmax + 0.1f * (float)k);
        affine_sums a = sums_affine(x, w, n, s0, lo, qmax);
        float s, b;
        double p = solve_affine(&a, f16, b_le0, &s, &b);
        if (p < best_pred) { best_pred = p; best_s = s; best_b = b; }
    }
    float best_err = qf_err_affine(x, w, n, best_s, best_b, qmax, NULL);
    if (seed_s != 0.0f) {
        float s = f16 ? f16_round(seed_s) : seed_s, b = f16 ? f16_round(seed_b) : seed_b;
        float e = qf_err_affine(x, w, n, s, b, qmax, NULL);
        if (e < best_err) { best_err = e; best_s = s; best_b = b; }
    }
    for (int r = 0; r < POLISH_ROUNDS && best_s != 0.0f; r++) {
        affine_sums a = sums_affine(x, w, n, best_s, best_b, qmax);
        float s, b;
        solve_affine(&a, f16, b_le0, &s, &b);
        if ((s == best_s && b == best_b) || s == 0.0f) break;
        float e = qf_err_affine(x, w, n, s, b, qmax, NULL);
        if (!(e < best_err)) break;
        best_err = e; best_s = s; best_b = b;
    }
    *s_out = best_s;
    *b_out = best_b;
}

/* ---- K-quant super-blocks ---------------------------------------------------------------------------- */

/* Error of sub-block j under the block's current d/dmin and codes; writes its q. The effective scale and
 * min are formed exactly as the dequantizers form them (one float product each). */
static float kq_sub_err(const qf_kq_spec *sp, const float *x, const float *w, float d, float dmin,
                        int sc, int mn, int8_t *q) {
    float S = d * (float)sc;
    if (!sp->affine) return qf_err_sym(x, w, sp->sublen, S, sp->qmin, sp->qmax, q);
    uint8_t u[32];
    float e = qf_err_affine(x, w, sp->sublen, S, -(dmin * (float)mn), sp->qmax, u);
    for (int i = 0; i < sp->sublen; i++) q[i] = (int8_t)u[i];
    return e;
}

static float kq_total_err(const qf_kq_spec *sp, const float *x, const float *w, float d, float dmin,
                          const int *sc, const int *mn, int8_t *q) {
    float e = 0.0f;
    for (int j = 0; j < sp->nsub; j++) {
        int o = j * sp->sublen;
        e += kq_sub_err(sp, x + o, w ? w + o : NULL, d, dmin, sc[j], sp->affine ? mn[j] : 0, q + o);
    }
    return e;
}

/* Per-sub-block float scales (and mins as positive numbers) before the codes exist. */
static void kq_sub_fits(const qf_kq_spec *sp, const float *x, const float *w, float *s, float *m) {
    for (int j = 0; j < sp->nsub; j++) {
        int o = j * sp->sublen;
        const float *wj = w ? w + o : NULL;
        if (sp->affine) {
            float b;
            qf_fit_affine(x + o, wj, sp->sublen, sp->qmax, false, true, 0.0f, 0.0f, &s[j], &b);
            m[j] = -b;
        } else {
            s[j] = qf_fit_sym(x + o, wj, sp->sublen, sp->qmin, sp->qmax, false, 0.0f);
            m[j] = 0.0f;
        }
    }
}

/* Quantize the float sub-scales to codes under an F16 super-scale chosen so the extreme lands on the end
 * of the code range (for symmetric types the negative end, which has one more code). */
static float kq_codes(const float *v, int nsub, int cmin, int cmax, int *codes) {
    float m = 0.0f;
    for (int j = 0; j < nsub; j++)
        if (fabsf(v[j]) > fabsf(m)) m = v[j];
    float end = cmin < 0 ? (float)cmin : (float)cmax;
    float d = m != 0.0f ? f16_round(m / end) : 0.0f;
    for (int j = 0; j < nsub; j++) codes[j] = d != 0.0f ? qf_qnear(v[j] / d, cmin, cmax) : 0;
    return d;
}

/* Coordinate descent: move each sub-block's codes by small steps while its error drops. */
static void kq_descend(const qf_kq_spec *sp, const float *x, const float *w, float d, float dmin,
                       int *sc, int *mn) {
    for (int j = 0; j < sp->nsub; j++) {
        int o = j * sp->sublen;
        const float *wj = w ? w + o : NULL;
        int8_t q[32];
        int bs = sc[j], bm = sp->affine ? mn[j] : 0;
        float best = kq_sub_err(sp, x + o, wj, d, dmin, bs, bm, q);
        int s0 = bs, m0 = bm, mr = sp->affine ? 1 : 0;
        for (int ds = -2; ds <= 2; ds++) {
            for (int dm = -mr; dm <= mr; dm++) {
                int cs = s0 + ds, cm = m0 + dm;
                if ((ds == 0 && dm == 0) || cs < sp->sc_min || cs > sp->sc_max || cm < 0 || cm > sp->mn_max)
                    continue;
                float e = kq_sub_err(sp, x + o, wj, d, dmin, cs, cm, q);
                if (e < best) { best = e; bs = cs; bm = cm; }
            }
        }
        sc[j] = bs;
        if (sp->affine) mn[j] = bm;
    }
}

/* Least-squares super-scales for fixed codes and q: xhat = d*(sc*q) - dmin*mn. F16-rounded. */
static void kq_refit_super(const qf_kq_spec *sp, const float *x, const float *w, const int *sc,
                           const int *mn, const int8_t *q, float *d, float *dmin) {
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int j = 0; j < sp->nsub; j++) {
        for (int i = j * sp->sublen; i < (j + 1) * sp->sublen; i++) {
            double wi = wt(w, i), a = (double)sc[j] * q[i], b = sp->affine ? -(double)mn[j] : 0.0;
            saa += wi * a * a; sab += wi * a * b; sbb += wi * b * b;
            sxa += wi * x[i] * a; sxb += wi * x[i] * b;
        }
    }
    double det = saa * sbb - sab * sab;
    if (sp->affine && det > 0) {
        *d = f16_round((float)((sxa * sbb - sxb * sab) / det));
        *dmin = f16_round((float)((saa * sxb - sab * sxa) / det));
    } else if (saa > 0) {
        *d = f16_round((float)(sxa / saa));
    }
}

void qf_kq_fit(const qf_kq_spec *sp, const float *x, const float *w, qf_kq_block *out) {
    float s[QF_KQ_MAX_SUB], m[QF_KQ_MAX_SUB];
    int sc[QF_KQ_MAX_SUB], mn[QF_KQ_MAX_SUB] = { 0 };
    kq_sub_fits(sp, x, w, s, m);
    float d = kq_codes(s, sp->nsub, sp->sc_min, sp->sc_max, sc);
    float dmin = sp->affine ? kq_codes(m, sp->nsub, 0, sp->mn_max, mn) : 0.0f;

    kq_descend(sp, x, w, d, dmin, sc, mn);
    int8_t q[256];
    float err = kq_total_err(sp, x, w, d, dmin, sc, mn, q);
    for (int r = 0; r < 2; r++) { /* refit the super-scales, re-descend; keep only improvements */
        float d2 = d, dmin2 = dmin;
        int sc2[QF_KQ_MAX_SUB], mn2[QF_KQ_MAX_SUB];
        memcpy(sc2, sc, sizeof sc2);
        memcpy(mn2, mn, sizeof mn2);
        kq_refit_super(sp, x, w, sc2, mn2, q, &d2, &dmin2);
        if (sp->affine && dmin2 < 0.0f) break; /* the F16 dmin is used as a positive multiplier */
        kq_descend(sp, x, w, d2, dmin2, sc2, mn2);
        int8_t q2[256];
        float e2 = kq_total_err(sp, x, w, d2, dmin2, sc2, mn2, q2);
        if (!(e2 < err)) break;
        err = e2; d = d2; dmin = dmin2;
        memcpy(sc, sc2, sizeof sc2);
        memcpy(mn, mn2, sizeof mn2);
        memcpy(q, q2, sizeof q2);
    }
    out->d = qf_f32_to_f16(d);
    out->dmin = qf_f32_to_f16(dmin);
    memcpy(out->sc, sc, sizeof sc);
    memcpy(out->mn, mn, sizeof mn);
    memcpy(out->q, q, sizeof q);
}
