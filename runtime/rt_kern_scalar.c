/* rt_kern_scalar.c — the scalar reference kernels of the runtime: they define the bits every ISA
 * variant must return (see rt_kern.h). */
#include "runtime/rt_kern.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


void qf_rt_tile_scalar(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr) {
    for (int r = 0; r < mr; r++) {
        float acc[QF_RT_SCALAR_NT] = {0};
        const float *wr = w + (size_t)r * ldw;
        for (size_t k = 0; k < K; k++) {
            const float *xk = x + k * ldx;
            /* fmaf, not a*b+c: the SIMD kernels fuse, and results must match them bit for bit */
            for (int t = 0; t < QF_RT_SCALAR_NT; t++) acc[t] = fmaf(wr[k], xk[t], acc[t]);
        }
        memcpy(y + (size_t)r * ldy, acc, sizeof acc);
    }
}

static float vexp1(float x) {
    if (isnan(x)) return x;
    x = x > QF_VEXP_HI ? QF_VEXP_HI : x < QF_VEXP_LO ? QF_VEXP_LO : x;
    float n = nearbyintf(x * QF_VEXP_LOG2E);
    float r = x - n * QF_VEXP_C1;
    r = r - n * QF_VEXP_C2;
    float p = QF_VEXP_P0;
    p = p * r + QF_VEXP_P1;
    p = p * r + QF_VEXP_P2;
    p = p * r + QF_VEXP_P3;
    p = p * r + QF_VEXP_P4;
    p = p * r + QF_VEXP_P5;
    float z = r * r;
    float e = p * z + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

void qf_rt_vexp_scalar(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = vexp1(x[i]);
}

/* ---- 8-bit integer path (see rt_kern.h) ---------------------------------------------------------- */

/* Index of feature k of token t in a tile's level array. */
static size_t xq_at(size_t k, size_t t) { return ((k / 4) * QF_RT_QT + t) * 4 + k % 4; }

void qf_rt_xquant_scalar(const float *x, size_t ldx, size_t nb, const qf_rt_xq *out) {
    for (size_t b = 0; b < nb; b++)
        for (size_t t = 0; t < QF_RT_QT; t++) {
            float amax = 0.0f;
            for (size_t i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[(b * 32 + i) * ldx + t]));
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            int32_t sum[2] = {0, 0};
            for (size_t i = 0; i < 32; i++) {
                /* nearbyintf: round half to even, as the SIMD conversions do under the default mode */
                int32_t q = (int32_t)nearbyintf(x[(b * 32 + i) * ldx + t] * id);
                out->q[xq_at(b * 32 + i, t)] = (int8_t)q;
                sum[i / 16] += q;
            }
            out->d[b * QF_RT_QT + t] = d;
            out->ds[b * QF_RT_QT + t] = d * (float)(sum[0] + sum[1]);
            out->s[2 * b * QF_RT_QT + t] = sum[0];
            out->s[(2 * b + 1) * QF_RT_QT + t] = sum[1];
        }
}

/* Exact integer dot of `len` elements of weight row wr (unsigned levels, or int8 ones when sgn) and
 * token t, starting at feature k0. */
static int32_t qdot(const uint8_t *wr, bool sgn, const qf_rt_xq *x, size_t k0, size_t len, size_t t) {
    int32_t s = 0;
    for (size_t k = k0; k < k0 + len; k++)
        s += (sgn ? (int32_t)(int8_t)wr[k] : (int32_t)wr[k]) * (int32_t)x->q[xq_at(k, t)];
    return s;
}

void qf_rt_qtile_scalar(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr) {
    size_t groups = 32 / w->sub;
    for (int r = 0; r < mr; r++) {
        const uint8_t *wr = w->q + (size_t)r * w->ldq;
        const float *wd = w->d + (size_t)r * w->lds, *wm = w->m ? w->m + (size_t)r * w->lds : NULL;
        for (size_t t = 0; t < QF_RT_QT; t++) {
            float acc = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                for (size_t h = 0; h < groups; h++) {
                    size_t g = b * groups + h; /* scale group */
                    int32_t xs = groups == 1 ? x->s[2 * b * QF_RT_QT + t] + x->s[(2 * b + 1) * QF_RT_QT + t]
                                             : x->s[g * QF_RT_QT + t];
                    int32_t dot = qdot(wr, w->sgn, x, g * w->sub, w->sub, t) - (int32_t)w->off * xs;
                    acc = fmaf((float)dot * wd[g], x->d[b * QF_RT_QT + t], acc);
                }
                if (wm) acc = fmaf(wm[b], x->ds[b * QF_RT_QT + t], acc);
            }
            y[(size_t)r * ldy + t] = acc;
        }
    }
}

/* ---- softmax and SwiGLU (the reference, written over a vexp; rt_kern.h) ---------------------------- */

static void softmax_with(qf_rt_vexp_fn vexp, uint32_t nt, float *s, uint32_t n_keys, uint32_t base, float scale,
                         float *tmp, float *inv) {
    float mx[64];
    double sum[64];
    for (uint32_t j = 0; j < nt; j++) { mx[j] = -INFINITY; sum[j] = 0; }
    for (uint32_t p = 0; p < n_keys; p++) {
        const float *row = s + (size_t)p * nt;
        for (uint32_t j = qf_rt_first_seeing(p, base); j < nt; j++) {
            float v = row[j] * scale;
            mx[j] = v > mx[j] ? v : mx[j];
        }
    }
    for (uint32_t p = 0; p < n_keys; p++) {
        float *row = s + (size_t)p * nt;
        uint32_t first = qf_rt_first_seeing(p, base), j0 = first < nt ? first : nt, e0 = j0 / 16 * 16;
        /* exponentials of visible entries only (vexp is elementwise, so the bits do not change): in
         * the diagonal block about half the entries are masked. From a multiple of 16 so that SIMD
         * variants run whole vectors (nt is a multiple of 16 or below it) */
        for (uint32_t j = e0; j < nt; j++) tmp[j] = row[j] * scale - mx[j];
        vexp(tmp + e0, row + e0, nt - e0);
        for (uint32_t j = 0; j < j0; j++) row[j] = 0.0f;
        for (uint32_t j = j0; j < nt; j++) sum[j] += row[j];
    }
    for (uint32_t j = 0; j < nt; j++) inv[j] = (float)(1.0 / sum[j]);
}

void qf_rt_softmax_scalar(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv) {
    softmax_with(qf_rt_vexp_scalar, QF_RT_SCALAR_NT, s, n_keys, base, scale, tmp, inv);
}
void qf_rt_softmax_avx2(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv) {
    softmax_with(qf_rt_vexp_avx2, 16, s, n_keys, base, scale, tmp, inv);
}

static void glu_with(qf_rt_vexp_fn vexp, float *g, const float *u, float *e, size_t n) {
    for (size_t t = 0; t < n; t++) e[t] = -g[t];
    vexp(e, e, n);
    for (size_t t = 0; t < n; t++) g[t] = g[t] / (1.0f + e[t]) * u[t];
}

void qf_rt_glu_scalar(float *g, const float *u, float *e, size_t n) { glu_with(qf_rt_vexp_scalar, g, u, e, n); }
void qf_rt_glu_avx2(float *g, const float *u, float *e, size_t n) { glu_with(qf_rt_vexp_avx2, g, u, e, n); }
