/*
 * route.h — routing agreement of two mixture-of-experts models fed the same batches (internal to
 * verify/). Each model's context reports, through the runtime's route observer (runtime.h), the experts
 * every token picked in every MoE layer; a log keeps those of one forward call, indexed by the token's
 * place in the call (sequence after sequence), and a tally compares two logs' tokens at the scored
 * positions, per layer: how many of the k experts agree, and whether all do.
 */
#ifndef QF_VERIFY_ROUTE_H
#define QF_VERIFY_ROUTE_H

#include "runtime/runtime.h"

/* Which layers route, and how: what must agree for two models' routes to be compared. */
typedef struct qf_route_layout {
    uint32_t n_slots;        /* MoE layers; 0: a dense model */
    uint32_t k, n_expert;    /* experts per token, experts per layer */
    uint32_t *layer;         /* [n_slots] their layer numbers, ascending */
} qf_route_layout;

/* One model's routes over one forward call. */
typedef struct qf_route_log {
    qf_route_layout lay;
    int32_t *slot;           /* [n_layer] the slot of a MoE layer, -1 for a dense one */
    uint32_t n_layer, cap;   /* layers of the model, tokens per call */
    uint16_t *e;             /* [n_slots][cap][k] experts per token, in the order of selection */
    uint32_t *fill;          /* [n_slots] tokens logged in this call */
    bool unexpected;         /* a report the layout did not foresee (layer, k or room) */
    qf_rt_observer obs;
} qf_route_log;

/* The layout of model m (its runtime's own MoE layers); lay->layer is allocated. */
qf_status qf_route_layout_of(const qf_rt_model *m, qf_route_layout *lay, qf_error *err);
void qf_route_layout_free(qf_route_layout *lay);
/* NULL when a and b route the same layers among as many experts, k of them; else why not (static). */
const char *qf_route_layout_differs(const qf_route_layout *a, const qf_route_layout *b);

/* A log of up to cap tokens per call for model m, observing context c (nothing for a dense model). */
qf_status qf_route_log_init(qf_route_log *g, const qf_rt_model *m, qf_rt_ctx *c, uint32_t cap, qf_error *err);
void qf_route_log_free(qf_route_log *g);
/* Before a forward call: forget the last call's routes. */
void qf_route_log_begin(qf_route_log *g);
/* After it: every MoE layer must have reported exactly n tokens (QF_E_INTERNAL otherwise, naming label). */
qf_status qf_route_log_end(const qf_route_log *g, uint32_t n, const char *label, qf_error *err);
/* The k experts token t of the call chose in slot s. */
static inline const uint16_t *qf_route_log_at(const qf_route_log *g, uint32_t s, size_t t) {
    return g->e + ((size_t)s * g->cap + t) * g->lay.k;
}

/* Agreement per slot over the tokens compared so far. */
typedef struct qf_route_tally {
    uint32_t n_slots, k, n_expert;
    uint64_t *overlap;       /* [n_slots] sum over tokens of |experts(a) ∩ experts(b)| */
    uint64_t *same;          /* [n_slots] tokens whose expert sets are equal */
    uint64_t *count;         /* [n_slots] tokens compared */
    uint8_t *mark;           /* [n_expert] scratch */
} qf_route_tally;

qf_status qf_route_tally_init(qf_route_tally *t, const qf_route_layout *lay, qf_error *err);
void qf_route_tally_free(qf_route_tally *t);
/* One token of slot s: the base's k experts a against the model's b (each k distinct ids < n_expert). */
void qf_route_tally_add(qf_route_tally *t, uint32_t s, const uint16_t *a, const uint16_t *b);

#endif
