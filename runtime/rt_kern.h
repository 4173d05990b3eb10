/*
 * rt_kern.h — the runtime's inner loops, one implementation per ISA (internal to runtime/).
 *
 * tile: the one matrix kernel. For rows r < mr and token columns t < nt it computes
 *     y[r * ldy + t] = sum_{k < K} w[r * ldw + k] * x[k * ldx + t]
 * as one sequential chain of fused multiply-adds in k order. Every ISA (scalar fmaf included) rounds
 * identically, so the result does not depend on the ISA, the tiling or the thread count. mr may be
 * below QF_RT_MR: the kernel then reads row 0 in place of the missing rows and stores only mr rows, so
 * callers need no padding rows. x and y must hold nt columns (token dimensions are padded to
 * QF_RT_PAD, a multiple of every kernel's nt).
 *
 * vexp: y[i] = e^x[i] for x in [-87, 88] (inputs are clamped to it; below -87 the result is tiny, not 0:
 * callers that mask set zeros themselves). Cephes-style range reduction and polynomial built from
 * separate multiplies and adds in one fixed order, so every ISA returns the same bits; about 1 ulp.
 */
#ifndef QF_RUNTIME_RT_KERN_H
#define QF_RUNTIME_RT_KERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QF_RT_MR 6   /* weight rows per tile call */
#define QF_RT_PAD 64 /* token dimensions are padded to this (a multiple of every nt) */
#define QF_RT_SCALAR_NT 16 /* token columns per call of the scalar tile */

typedef void (*qf_rt_tile_fn)(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y,
                              size_t ldy, int mr);
typedef void (*qf_rt_vexp_fn)(const float *x, float *y, size_t n);
/* softmax: the causal softmax of the attention scores s ([n_keys][nt], nt = the kernel's nt) of nt
 * query columns, in place, unnormalized: column j sees keys p <= base + j (first_seeing below); per
 * column, mx = the largest visible s * scale (by v > mx ? v : mx, keys in order), visible entries become
 * vexp(s * scale - mx) and masked ones exactly 0, and inv[j] = (float)(1 / sum) with the sum of the
 * column's entries taken in double, keys in order. tmp holds nt floats of scratch. */
typedef void (*qf_rt_softmax_fn)(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv);
/* glu: g[t] = g[t] / (1 + vexp(-g[t])) * u[t] for t < n (SiLU(g) * u); e holds n floats of scratch. */
typedef void (*qf_rt_glu_fn)(float *g, const float *u, float *e, size_t n);

typedef struct qf_rt_kern {
    const char *isa;
    uint32_t nt;       /* token columns per tile call */
    qf_rt_tile_fn tile;
    qf_rt_vexp_fn vexp;
    qf_rt_softmax_fn softmax;
    qf_rt_glu_fn glu;
} qf_rt_kern;

/* The first query column of a softmax tile that sees key p (columns j with p <= base + j). */
static inline uint32_t qf_rt_first_seeing(uint32_t p, uint32_t base) { return p > base ? p - base : 0; }

/* Kernels of the ISA kernels/cpu.h made active (QF_ISA can force one). */
const qf_rt_kern *qf_rt_kern_active(void);

void qf_rt_tile_scalar(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_scalar(const float *x, float *y, size_t n);
void qf_rt_tile_avx2(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_avx2(const float *x, float *y, size_t n);
void qf_rt_tile_avx512(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_avx512(const float *x, float *y, size_t n);
void qf_rt_softmax_scalar(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv);
void qf_rt_softmax_avx2(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv);
void qf_rt_softmax_avx512(float *s, uint32_t n_keys, uint32_t base, float scale, float *tmp, float *inv);
void qf_rt_glu_scalar(float *g, const float *u, float *e, size_t n);
void qf_rt_glu_avx2(float *g, const float *u, float *e, size_t n);
void qf_rt_glu_avx512(float *g, const float *u, float *e, size_t n);

/* ---- the 8-bit integer path (opt-in: qf_rt_ctx_set_act_q8) -------------------------------------------
 *
 * Activations are quantized the way llama.cpp quantizes them for Q8_0 weights: per token and per block of
 * 32 features, d = amax / 127 and q = round-half-even(x / d) in -127..127. Weight rows are decoded from
 * their stored type into integer levels plus float scales (qf_rt_wq); a tile call computes
 *     y[r][t] = sum over 32-blocks b of
 *                 sum over the block's scale groups h (one of 32 or two of 16):
 *                     fma((float)(sum_i wq[r][i] * xq[t][i] - off * xs[h][t]) * wd[r][h], xd[b][t], .)
 *                     (off = 0 for signed levels)
 *                 then, for types with a min term: fma(wm[r][b], xds[b][t], .)
 * in exactly that order, one F32 accumulator per output; integer sums are exact, so every ISA (the
 * scalar reference included) returns the same bits, and so does every thread count.
 *
 * Layout of one tile of QF_RT_QT tokens over K = 32 * nb features (qf_rt_xq): q holds, for block b and
 * group g of 4 features, the 4 bytes of each token in turn ([nb][8][QF_RT_QT][4]) so one vector load
 * feeds a 4-way dot product per token lane. */
#define QF_RT_QT 64     /* token columns per integer tile (= QF_RT_PAD) */
#define QF_RT_QR_MAX 16 /* the most weight rows any integer kernel takes per call (qf_rt_qkern.rows) */

typedef struct qf_rt_xq {
    int8_t *q;    /* [nb][8][QF_RT_QT][4] levels */
    float *d;     /* [nb][QF_RT_QT] block scales */
    float *ds;    /* [nb][QF_RT_QT] d * (sum of the block's levels), for min terms */
    int32_t *s;   /* [2 * nb][QF_RT_QT] sum of levels per half-block of 16, for level offsets */
} qf_rt_xq;

/* Up to qf_rt_qkern.rows decoded weight rows of K = 32 * nb elements. Levels are stored unsigned
 * (stored = signed level + off) for the VNNI/AVX2 kernels, whose products take one unsigned operand, or
 * signed (sgn: int8 levels with the offset already removed, off = 0) for AMX, whose TDPBSSD takes two
 * signed ones; the integer sums are the same either way. */
typedef struct qf_rt_wq {
    const uint8_t *q; /* [row][K] levels: unsigned (stored level = signed level + off), or int8 when sgn */
    size_t ldq;
    const float *d;   /* [row][K / sub] scale of each group of `sub` elements */
    const float *m;   /* [row][nb] min term per 32-block (Q4_K: -dmin * m), NULL when the type has none */
    size_t lds;       /* floats between rows of d and of m */
    uint32_t sub;     /* 32 or 16 */
    uint32_t off;     /* 0, 32 or 128 (0 when sgn) */
    uint32_t sgn;     /* 1: q holds signed levels; off is 0 */
    uint32_t stream;  /* 1: y is written once and read after the pass (the logits): a kernel may store it
                       * around the caches (non-temporal stores, fenced before it returns) */
    const uint8_t *pf; /* bytes the caller reads next (the next panel's stored rows), or NULL: a kernel may */
    size_t pf_len;     /* prefetch them a line at a time while it computes */
} qf_rt_wq;

typedef void (*qf_rt_qtile_fn)(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr);
/* `tiles` consecutive activation tiles in one call: tile t is qf_rt_xq_next(x, nb, t), its outputs at
 * y + t * QF_RT_QT (the same bits as one qtile call per tile). */
typedef void (*qf_rt_qtiles_fn)(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy,
                                int mr);

/* Tile t of activation tiles stored one after the other from x (each 32 * nb features). */
static inline qf_rt_xq qf_rt_xq_next(const qf_rt_xq *x, size_t nb, size_t t) {
    return (qf_rt_xq){.q = x->q + t * 32 * nb * QF_RT_QT, .d = x->d + t * nb * QF_RT_QT, .ds = x->ds + t * nb * QF_RT_QT,
                      .s = x->s + t * 2 * nb * QF_RT_QT};
}
/* Quantize one tile: x[f * ldx + t] for f < 32 * nb, t < QF_RT_QT. */
typedef void (*qf_rt_xquant_fn)(const float *x, size_t ldx, size_t nb, const qf_rt_xq *out);

void qf_rt_qtile_scalar(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr);
void qf_rt_xquant_scalar(const float *x, size_t ldx, size_t nb, const qf_rt_xq *out);
void qf_rt_qtile_avx2(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr);
void qf_rt_qtile_avx512vnni(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr);
void qf_rt_xquant_avx512(const float *x, size_t ldx, size_t nb, const qf_rt_xq *out);
/* AMX (TDPBSSD on 16-row tiles): mr <= 16 rows of signed levels (sgn). The kernel reads all 16 rows of q,
 * d and m (rows past mr must be readable; the decoder zeroes them), stores mr. Call only when
 * qf_rt_amx_usable(). */
void qf_rt_qtile_amx(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, float *y, size_t ldy, int mr);
void qf_rt_qtiles_amx(const qf_rt_wq *w, const qf_rt_xq *x, size_t nb, size_t tiles, float *y, size_t ldy, int mr);
/* The CPU has AMX-TILE and AMX-INT8 and the kernel granted this process the tile state (asked once). */
bool qf_rt_amx_usable(void);

/* Integer kernels for the active ISA: AMX when the CPU has it and QF_ISA is not set (QF_ISA=avx512
 * means the VNNI tile, so tests and benchmarks can pick each path), else VNNI when the CPU has it, else
 * the AVX2 tile (vpmaddubsw) when AVX2 is active, else the scalar reference. */
typedef struct qf_rt_qkern {
    const char *isa;
    qf_rt_qtile_fn qtile;
    qf_rt_qtiles_fn qtiles; /* several tiles per call, or NULL: one qtile call per tile */
    qf_rt_xquant_fn xquant;
    uint32_t rows;  /* weight rows per qtile call (the panel height), <= QF_RT_QR_MAX */
    bool sgn;       /* qtile takes signed levels (qf_rt_wq.sgn) */
} qf_rt_qkern;
const qf_rt_qkern *qf_rt_qkern_active(void);

/* Constants of vexp shared by every variant (Cephes expf). */
#define QF_VEXP_HI 88.0f
#define QF_VEXP_LO (-87.0f)
#define QF_VEXP_LOG2E 1.44269504088896341f
#define QF_VEXP_C1 0.693359375f
#define QF_VEXP_C2 (-2.12194440e-4f)
#define QF_VEXP_P0 1.9875691500e-4f
#define QF_VEXP_P1 1.3981999507e-3f
#define QF_VEXP_P2 8.3334519073e-3f
#define QF_VEXP_P3 4.1665795894e-2f
#define QF_VEXP_P4 1.6666665459e-1f
#define QF_VEXP_P5 5.0000001201e-1f

#endif
