/*
 * solve.h — a type for every tensor from measured sensitivity, to a size or a quality target.
 *
 * The plan's quantized tensors (those a --tensor-type pin did not decide; norms, routers and what the
 * plan keeps unquantized are never touched) each get one of their candidate types in the sensitivity
 * table (formats/sensitivity.h), so as to minimize the predicted KLD (the sum of the tensors' predicted
 * costs) under a byte budget, or the bytes under a KLD bound:
 *   - per tensor, the candidates are cut to their lower convex hull in (bytes, predicted cost): a type
 *     that costs more bytes and predicts no less loss, or that lies above the line between two others,
 *     is never the best use of bytes;
 *   - every tensor starts at its smallest hull type; the upgrades (one step along a tensor's hull) are
 *     taken in order of predicted loss saved per byte, largest first (ties: plan order), skipping those
 *     that no longer fit, until the budget is spent or the bound is met.
 * This is the greedy solution of the multiple-choice knapsack on the hulls: exact at every budget that
 * the chosen upgrades fill, at most one upgrade per tensor short of it otherwise. Only arithmetic on
 * the table: the same plan for the same inputs, whatever the thread count.
 */
#ifndef QF_QUANTIZE_SOLVE_H
#define QF_QUANTIZE_SOLVE_H

#include "formats/sensitivity.h"
#include "quantize/plan.h"

typedef struct qf_solve_opts {
    uint64_t max_bytes;       /* tensor bytes of the whole plan (quantized or not) at most; 0 = none */
    double max_kld;           /* predicted KLD at most; < 0 = none */
    bool allow_extension;     /* may choose types llama.cpp cannot load (qforge's FP8 types, ...) */
    const char *label;        /* the table's path, for messages */
} qf_solve_opts;

typedef struct qf_solve_result {
    size_t chosen;            /* tensors whose type the solver chose */
    double predicted_kld;     /* sum of their predicted costs */
    uint64_t min_bytes;       /* the plan's bytes with every chosen tensor at its smallest type */
    double given_kld;         /* the table's prediction for the types the plan held before (a recipe's):
                               * NAN where one of them is no candidate of the table */
} qf_solve_result;

/* At least one of max_bytes / max_kld must be given. Every chosen tensor must be in the table with the
 * plan's number of weights (QF_E_INPUT naming it: a table measured on another model). A budget below
 * min_bytes, or a KLD bound no mix of the candidates meets, is QF_E_INPUT saying what is reachable. */
qf_status qf_plan_solve(qf_source *src, qf_plan *plan, const qf_sens *s, const qf_solve_opts *o, qf_solve_result *r,
                        qf_error *err);

#endif
