/*
 * score.h — what perplexity and verify compute from logits (internal).
 *
 * Logits arrive feature-major (runtime.h): entry v of output column j at l[v * ld + j]. Each scoring call
 * covers n columns, splits them across the context's threads by column, and writes one result per
 * column, so sums taken afterwards in column order do not depend on the thread count.
 */
#ifndef QF_VERIFY_SCORE_H
#define QF_VERIFY_SCORE_H

#include "runtime/runtime.h"

/* Per-column results of one batch. */
typedef struct qf_score_cols {
    double *nll;      /* [n] -log p(target) of the model (perplexity) */
    double *nll_base; /* verify: [n] the same for the base */
    double *kld;      /* verify: [n] KL(base || model) */
    uint8_t *same_top1; /* verify: [n] 1 when both argmaxes agree */
} qf_score_cols;

/* Scratch for scoring up to `cols` columns at once. */
typedef struct qf_score_buf {
    size_t cols;
    float *fmax_a, *fmax_b, *tmp;
    double *sum_a, *sum_b, *acc;
    uint32_t *arg_a, *arg_b;
} qf_score_buf;

qf_status qf_score_buf_init(qf_score_buf *b, size_t cols, qf_error *err);
void qf_score_buf_free(qf_score_buf *b);

/* Perplexity: nll[j] = log(sum_v exp(l_v - max)) + max - l_target, exps in F32 and the sum in double
 * (llama-perplexity's log_softmax). */
void qf_score_nll(qf_rt_ctx *c, qf_score_buf *b, const float *l, size_t ld, uint32_t n_vocab, const int32_t *targets,
                  uint32_t n, double *nll);

/* Verify: both models' NLL, KL(base || model) over the full softmax and top-1 agreement, all in double. */
void qf_score_compare(qf_rt_ctx *c, qf_score_buf *b, const float *base, const float *model, size_t ld,
                      uint32_t n_vocab, const int32_t *targets, uint32_t n, const qf_score_cols *out);

#endif
