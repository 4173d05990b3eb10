/*
 * fit.h — the scale searches behind qforge's quantizers (internal to kernels/).
 *
 * Every search minimises the (importance-)weighted squared error sum_i w_i (x_i - xhat_i)^2 directly,
 * where xhat is what dequantization will produce. w == NULL means all weights 1; the searches are
 * invariant to scaling w, so constant weights give exactly the unweighted result.
 *
 * Two shapes cover every type:
 *   symmetric : xhat = s * q,      q in [qmin, qmax]  (Q4_0, Q5_0, Q8_0, Q3_K/Q6_K sub-blocks)
 *   affine    : xhat = s * q + b,  q in [0, qmax]     (Q4_1, Q5_1, Q2_K/Q4_K/Q5_K sub-blocks)
 * A K-quant super-block then quantizes its sub-block scales (and mins) with one F16 super-scale each
 * (qf_kq_fit), and refines codes and super-scales by coordinate descent on the true error.
 */
#ifndef QF_KERNELS_FIT_H
#define QF_KERNELS_FIT_H

#include <stdbool.h>
#include <stdint.h>

/* Nearest integer of v clamped to [lo, hi] (clamping first, so huge v cannot overflow). */
static inline int qf_qnear(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo; /* also catches NaN, which the callers never produce */
    if (v >= (float)hi) return hi;
    return (int)__builtin_lrintf(v);
}

/* Weighted squared error of the symmetric grid s*q for x, with q chosen nearest (written to q if set). */
float qf_err_sym(const float *x, const float *w, int n, float s, int qmin, int qmax, int8_t *q);
/* Same for the affine grid s*q + b, q in [0, qmax]. */
float qf_err_affine(const float *x, const float *w, int n, float s, float b, int qmax, uint8_t *q);

/* Best symmetric scale for x; f16 = evaluate every candidate with s rounded to F16 (the scale is
 * stored as F16), and return that rounded s. `seed` (0 = none) is one more candidate scale to try, so a
 * caller can guarantee a result no worse than a known quantizer (e.g. round-to-nearest). */
float qf_fit_sym(const float *x, const float *w, int n, int qmin, int qmax, bool f16, float seed);

/* Best affine (s, b) for x. b_le0 = the format can only store b <= 0 (K-quant mins); f16 = s and b are
 * stored as F16. Seeds as above (seed_s = 0: none). */
void qf_fit_affine(const float *x, const float *w, int n, int qmax, bool f16, bool b_le0,
                   float seed_s, float seed_b, float *s, float *b);

/* ---- K-quant super-blocks --------------------------------------------------------------------------- */

#define QF_KQ_MAX_SUB 16

/* Shape of one K-quant family. Sub-block scales are codes in [sc_min, sc_max] times F16 d; affine
 * types also have mins: m codes in [0, mn_max] times F16 dmin, xhat = d*sc*q - dmin*m. */
typedef struct qf_kq_spec {
    int nsub, sublen;      /* sub-blocks per 256 and their length */
    bool affine;           /* has mins (q in [0, qmax]) vs symmetric (q in [qmin, qmax]) */
    int qmin, qmax;
    int sc_min, sc_max;    /* scale code range (signed for symmetric types) */
    int mn_max;            /* min code range [0, mn_max] (affine only) */
} qf_kq_spec;

/* The result: everything a packer needs. q holds nsub*sublen values in [qmin, qmax]. */
typedef struct qf_kq_block {
    uint16_t d, dmin;          /* F16 bits */
    int sc[QF_KQ_MAX_SUB], mn[QF_KQ_MAX_SUB];
    int8_t q[256];
} qf_kq_block;

/* Quantize one super-block of 256 values x with weights w (nullable). */
void qf_kq_fit(const qf_kq_spec *spec, const float *x, const float *w, qf_kq_block *out);

#endif
