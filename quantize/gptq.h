/*
 * gptq.h — Hessian-based error feedback (GPTQ / optimal brain surgeon) over the traits table's own
 * block quantizers.
 *
 * For a linear layer y = W x with calibration inputs X, the output error of a quantized W' is
 * tr((W - W') H (W - W')^T) with H = X^T X. GPTQ quantizes input columns in order and moves each
 * quantization error onto the columns not yet quantized, in the direction H says costs least. ggml types
 * fix scales per block of columns, so qforge quantizes one whole block (all rows) with the type's
 * importance-weighted quantizer (weights = diag H), then applies the exact OBS update for fixing that
 * set S of columns:  W_rest -= (W_S - Q_S) · U_SS^-1 · U_S,rest,  where H^-1 = U^T U (U upper
 * triangular) restricted to the columns not yet processed. Any type whose blocks are independent works.
 *
 * Memory: H and its factor, 2 x n_cols^2 doubles, plus the F32 weight matrix being updated.
 */
#ifndef QF_GPTQ_H
#define QF_GPTQ_H

#include "kernels/qtypes.h"
#include "qf_core.h"

typedef struct qf_gptq_opts {
    double damp;          /* added to H's diagonal as a fraction of its mean (default 0.01) */
    bool block_order;     /* process blocks by descending diag(H) mass ("act order" at block granularity) */
    int threads;
} qf_gptq_opts;

/* Quantize W (n_rows x n_cols, row-major F32; overwritten with the error-compensated values) into out
 * (n_rows rows of the type's row size). H is n_cols x n_cols, symmetric positive semi-definite. */
qf_status qf_gptq_quantize(const qf_qtype_traits *tt, float *W, uint64_t n_rows, uint64_t n_cols, const double *H,
                           const qf_gptq_opts *opts, uint8_t *out, qf_error *err);

#endif
