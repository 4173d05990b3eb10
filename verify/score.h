/*
 * score.h — what perplexity and verify compute from logits (internal).
 *
 * Logits arrive feature-major (runtime.h): entry v of output column j at l[v * ld + j]. Each scoring call
 * covers n columns, splits them across the context's threads by column, and writes one result per
 * column, so sums taken afterwards in column order do not depend on the thread count.
 */
#ifndef QF_VERIFY_SCORE_H
#define QF_VERIFY_SCORE_H

#include "formats/baselogits.h"
#include "runtime/runtime.h"

/* Per-column results of one batch. */
typedef struct qf_score_cols {
    double *nll;      /* [n] -log p(target) of the model (perplexity) */
    double *nll_base; /* verify: [n] the same for the base */
    double *kld;      /* verify: [n] KL(base || model) */
    uint8_t *same_top1; /* verify: [n] 1 when both argmaxes agree */
} qf_score_cols;

/* Scratch for scoring up to `cols` columns at once; k > 0 also for keeping each column's k most likely
 * tokens (qf_score_topk). */
typedef struct qf_score_buf {
    size_t cols;
    uint32_t k;
    float *fmax_a, *fmax_b, *tmp;
    double *sum_a, *sum_b, *acc;
    uint32_t *arg_a, *arg_b;
    float *top_l;     /* [cols][k] logits of the kept tokens (a min-heap per column while selecting) */
    uint32_t *top_id; /* [cols][k] their ids */
} qf_score_buf;

qf_status qf_score_buf_init(qf_score_buf *b, size_t cols, uint32_t k, qf_error *err);
void qf_score_buf_free(qf_score_buf *b);

/* Perplexity: nll[j] = log(sum_v exp(l_v - max)) + max - l_target, exps in F32 and the sum in double
 * (llama-perplexity's log_softmax). */
void qf_score_nll(qf_rt_ctx *c, qf_score_buf *b, const float *l, size_t ld, uint32_t n_vocab, const int32_t *targets,
                  uint32_t n, double *nll);

/* Verify: both models' NLL, KL(base || model) over the full softmax and top-1 agreement, all in double. */
void qf_score_compare(qf_rt_ctx *c, qf_score_buf *b, const float *base, const float *model, size_t ld,
                      uint32_t n_vocab, const int32_t *targets, uint32_t n, const qf_score_cols *out);

/* The compact form of a base's columns (formats/baselogits.h), per column j: the b->k most likely tokens
 * (ids[j*k..], most likely first; equal logits: the lower id first, as top-1 agreement counts them) with
 * log p = l - logsumexp(l) in double, rounded to float; tail[j] = the mass of all other tokens, summed
 * directly (not 1 - the kept mass, which cancels); nll[j] = -log p(target). */
void qf_score_topk(qf_rt_ctx *c, qf_score_buf *b, const float *base, size_t ld, uint32_t n_vocab, const int32_t *targets,
                   uint32_t n, uint32_t *ids, float *logp, float *tail, float *nll);

/* Verify against a compact base: column j of the model against recs[j]. With P the base's kept tokens
 * and T its tail mass, Q the model's softmax (in double) and Q_T = Q's mass outside the kept tokens,
 *     KL = sum_{i in K} p_i (log p_i - log q_i) + T (log T - log Q_T),
 * the KL divergence of the two distributions over K + 1 outcomes (the tail as one): by the log-sum
 * inequality a lower bound of the full-softmax KL, equal to it when the model's tail is proportional to
 * the base's. Q_T is floored at DBL_MIN: a model with no mass where the base has T scores ~708 T. */
void qf_score_compare_compact(qf_rt_ctx *c, qf_score_buf *b, const qf_baselogits_rec *recs, uint32_t k,
                              const float *model, size_t ld, uint32_t n_vocab, const int32_t *targets, uint32_t n,
                              const qf_score_cols *out);

#endif
