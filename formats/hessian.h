/*
 * hessian.h — per-input second-moment matrices H = sum_t x_t x_t^T for GPTQ, in a GGUF container.
 *
 * Weights that read the same input share one matrix, keyed by the input: "blk.N.attn_in" (q, k, v),
 * "blk.N.attn_out_in" (attn_output), "blk.N.ffn_in" (gate, up), "blk.N.ffn_down_in" (down). File:
 * general.type = "qforge-hessian"; per key "<key>.hessian" F32 ne = [n, n] (row-major, symmetric) and
 * "<key>.count" F32 ne = [1] (tokens summed). Size: 4 n^2 bytes per input, i.e. per layer
 * 4 (3 d^2 + f^2) bytes for model width d and FFN width f.
 */
#ifndef QF_HESSIAN_H
#define QF_HESSIAN_H

#include "formats/arch.h"

typedef struct qf_hessian {
    char *key;
    uint32_t n;
    double *h;      /* n x n */
    double count;
} qf_hessian;

typedef struct qf_hessian_set {
    qf_hessian *e;
    size_t n;
} qf_hessian_set;

/* The input key of a weight role; false for roles that are not linear weights. */
bool qf_hessian_key(qf_role role, int layer, char *buf, size_t n);
/* Add a zeroed matrix and return it, valid until the next add; NULL on allocation failure. */
qf_hessian *qf_hessian_add(qf_hessian_set *s, const char *key, uint32_t n);
const qf_hessian *qf_hessian_find(const qf_hessian_set *s, const char *key);
qf_status qf_hessian_save(const char *path, const qf_hessian_set *s, qf_error *err);
qf_status qf_hessian_load(const char *path, qf_hessian_set *s, qf_error *err);
void qf_hessian_free(qf_hessian_set *s);

#endif
