/*
 * imatrix.h — importance matrices in llama.cpp's GGUF imatrix layout, read and written.
 *
 * Layout: general.type = "imatrix", imatrix.datasets (array of strings), imatrix.chunk_count (u32),
 * imatrix.chunk_size (u32); per weight tensor W two F32 tensors:
 *   "<W>.in_sum2"  ne = [n_cols, n_mat]  sum over calibration tokens of x_j^2 for input column j
 *   "<W>.counts"   ne = [1, n_mat]       number of tokens summed (per expert matrix for MoE)
 * Quantizers use the per-column mean sum2/count as importance weights; a matrix that saw no token gets
 * all-ones weights (llama-quantize's rule), so files move both ways between qforge and llama.cpp.
 */
#ifndef QF_IMATRIX_H
#define QF_IMATRIX_H

#include "qf_core.h"

typedef struct qf_imatrix_entry {
    char *name;       /* the weight tensor's GGUF name */
    uint32_t n_cols;  /* input columns (the weight's row length) */
    uint32_t n_mat;   /* 1, or the number of experts */
    double *sum2;     /* n_mat x n_cols */
    double *counts;   /* n_mat */
} qf_imatrix_entry;

typedef struct qf_imatrix {
    qf_imatrix_entry *e;
    size_t n;
    char **datasets;
    size_t n_datasets;
    uint32_t chunk_count, chunk_size;
    char *calibration_sha256;  /* qforge.calibration_sha256: SHA-256 of the calibration text, or NULL */
} qf_imatrix;

/* Reads the GGUF layout above, or llama.cpp's legacy imatrix.dat (told apart by the GGUF magic; see
 * imatrix.c for that layout): its values are means scaled by a call count, read as sum2 = value and
 * count = ncall, one matrix per entry. */
qf_status qf_imatrix_load(const char *path, qf_imatrix *im, qf_error *err);
qf_status qf_imatrix_save(const char *path, const qf_imatrix *im, qf_error *err);
void qf_imatrix_free(qf_imatrix *im);
const qf_imatrix_entry *qf_imatrix_find(const qf_imatrix *im, const char *tensor_name);
/* Add an entry (zeroed sums) and return it, valid until the next add; NULL on allocation failure. */
qf_imatrix_entry *qf_imatrix_add(qf_imatrix *im, const char *tensor_name, uint32_t n_cols, uint32_t n_mat);
/* Importance weights of matrix `mat`: sum2/count per column, all ones when count is 0. */
void qf_imatrix_weights(const qf_imatrix_entry *e, uint32_t mat, float *out);

#endif
