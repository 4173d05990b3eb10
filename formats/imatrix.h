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
/* ---- routed experts (imatrix_experts.c) ----------------------------------------------------------
 * A routed expert's matrix sees only the tokens routed to it, so a calibration text can leave some
 * experts with few tokens or none: their means are noise, or llama.cpp's all-ones. The rule says what
 * an expert matrix below min_tokens gets instead. */
typedef enum qf_sparse_experts {
    QF_SPARSE_BLEND = 0, /* its sums completed to min_tokens with the layer's pooled expert mean */
    QF_SPARSE_POOLED,    /* the layer's pooled expert mean alone */
    QF_SPARSE_OWN,       /* its own mean, whatever its count (all ones at 0: llama-quantize's rule) */
} qf_sparse_experts;

/* The default floor (measured: README, "Rarely-routed experts"). */
#define QF_EXPERT_MIN_TOKENS 64u

typedef struct qf_expert_rule {
    uint32_t min_tokens;  /* 0 = every matrix uses its own mean */
    qf_sparse_experts policy;
} qf_expert_rule;

/* "blend" | "pooled" | "own" -> policy; false for anything else. */
bool qf_sparse_experts_parse(const char *s, qf_sparse_experts *out);
const char *qf_sparse_experts_name(qf_sparse_experts p);

/* Importance weights of every matrix, n_mat x n_cols into out: sum2/count per column, all ones when
 * count is 0; a matrix of a stacked entry (n_mat > 1) below rule->min_tokens as rule->policy says
 * (rule NULL: its own mean). */
void qf_imatrix_weights(const qf_imatrix_entry *e, const qf_expert_rule *rule, float *out);

/* Per MoE layer, how many tokens each routed expert saw (the counts of its "blk.L.ffn_*_exps" entry,
 * which are llama.cpp's and qforge's router statistics alike) and which are below min_tokens. */
typedef struct qf_expert_layer {
    uint32_t layer, n_expert, n_under;
    double *tokens;       /* n_expert counts */
    uint32_t *under;      /* the n_under expert ids below min_tokens, ascending */
} qf_expert_layer;

typedef struct qf_expert_coverage {
    uint32_t min_tokens;
    qf_expert_layer *l;   /* by layer, ascending */
    size_t n;
    uint64_t experts, under; /* over all layers */
} qf_expert_coverage;

qf_status qf_expert_coverage_get(const qf_imatrix *im, uint32_t min_tokens, qf_expert_coverage *cov, qf_error *err);
void qf_expert_coverage_free(qf_expert_coverage *cov);

#endif
