/* route.c — routing logs and their agreement (route.h). */
#include "verify/route.h"

qf_status qf_route_layout_of(const qf_rt_model *m, qf_route_layout *lay, qf_error *err) {
    memset(lay, 0, sizeof *lay);
    const qf_hparams *hp = &m->hp;
    for (uint32_t l = 0; l < hp->n_layer; l++) lay->n_slots += m->layers[l].f.moe;
    if (!lay->n_slots) return QF_OK;
    lay->k = hp->n_expert_used;
    lay->n_expert = hp->n_expert;
    if (!(lay->layer = qf_calloc_n(lay->n_slots, sizeof *lay->layer)))
        return qf_fail(err, QF_E_NOMEM, "out of memory for the routing statistics");
    for (uint32_t l = 0, s = 0; l < hp->n_layer; l++)
        if (m->layers[l].f.moe) lay->layer[s++] = l;
    return QF_OK;
}

void qf_route_layout_free(qf_route_layout *lay) {
    free(lay->layer);
    memset(lay, 0, sizeof *lay);
}

const char *qf_route_layout_differs(const qf_route_layout *a, const qf_route_layout *b) {
    if (!a->n_slots || !b->n_slots) return "one of the two models has no mixture-of-experts layers";
    if (a->n_expert != b->n_expert || a->k != b->k) return "the two models route among different numbers of experts";
    if (a->n_slots != b->n_slots || memcmp(a->layer, b->layer, a->n_slots * sizeof *a->layer) != 0)
        return "the two models have mixture-of-experts layers at different depths";
    return NULL;
}

/* The runtime's report of one MoE layer for one sequence of the pass: appended to that layer's tokens. */
static void on_route(void *user, int layer, const uint16_t *experts, uint32_t n_used, uint32_t n_tokens) {
    qf_route_log *g = user;
    int32_t s = layer >= 0 && (uint32_t)layer < g->n_layer ? g->slot[layer] : -1;
    if (s < 0 || n_used != g->lay.k || n_tokens > g->cap - g->fill[s]) { g->unexpected = true; return; }
    memcpy(g->e + ((size_t)s * g->cap + g->fill[s]) * n_used, experts, (size_t)n_tokens * n_used * sizeof *experts);
    g->fill[s] += n_tokens;
}

qf_status qf_route_log_init(qf_route_log *g, const qf_rt_model *m, qf_rt_ctx *c, uint32_t cap, qf_error *err) {
    memset(g, 0, sizeof *g);
    qf_status st = qf_route_layout_of(m, &g->lay, err);
    if (st || !g->lay.n_slots) return st;
    g->n_layer = m->hp.n_layer;
    g->cap = cap;
    g->slot = qf_malloc_n(g->n_layer, sizeof *g->slot);
    g->fill = qf_calloc_n(g->lay.n_slots, sizeof *g->fill);
    uint64_t n;
    g->e = qf_mul_ok((uint64_t)g->lay.n_slots * cap, g->lay.k, &n) ? qf_malloc_n(n, sizeof *g->e) : NULL;
    if (!g->slot || !g->fill || !g->e) {
        qf_route_log_free(g);
        return qf_fail(err, QF_E_NOMEM, "out of memory for the routes of %u layers x %u tokens", m->hp.n_layer, cap);
    }
    for (uint32_t l = 0; l < g->n_layer; l++) g->slot[l] = -1;
    for (uint32_t s = 0; s < g->lay.n_slots; s++) g->slot[g->lay.layer[s]] = (int32_t)s;
    g->obs = (qf_rt_observer){.route = on_route, .user = g};
    qf_rt_ctx_set_observer(c, &g->obs);
    return QF_OK;
}

void qf_route_log_free(qf_route_log *g) {
    qf_route_layout_free(&g->lay);
    free(g->slot);
    free(g->fill);
    free(g->e);
    memset(g, 0, sizeof *g);
}

void qf_route_log_begin(qf_route_log *g) {
    if (g->lay.n_slots) memset(g->fill, 0, g->lay.n_slots * sizeof *g->fill);
}

qf_status qf_route_log_end(const qf_route_log *g, uint32_t n, const char *label, qf_error *err) {
    for (uint32_t s = 0; s < g->lay.n_slots; s++)
        if (g->fill[s] != n || g->unexpected)
            return qf_fail(err, QF_E_INTERNAL, "%s: layer %u reported the routes of %u tokens of a %u-token call%s", label,
                           g->lay.layer[s], g->fill[s], n, g->unexpected ? " (and a report it did not expect)" : "");
    return QF_OK;
}

qf_status qf_route_tally_init(qf_route_tally *t, const qf_route_layout *lay, qf_error *err) {
    memset(t, 0, sizeof *t);
    t->n_slots = lay->n_slots;
    t->k = lay->k;
    t->n_expert = lay->n_expert;
    t->overlap = qf_calloc_n(t->n_slots, sizeof *t->overlap);
    t->same = qf_calloc_n(t->n_slots, sizeof *t->same);
    t->count = qf_calloc_n(t->n_slots, sizeof *t->count);
    t->mark = qf_calloc_n(t->n_expert, 1);
    if (!t->overlap || !t->same || !t->count || !t->mark) {
        qf_route_tally_free(t);
        return qf_fail(err, QF_E_NOMEM, "out of memory for the routing statistics");
    }
    return QF_OK;
}

void qf_route_tally_free(qf_route_tally *t) {
    free(t->overlap);
    free(t->same);
    free(t->count);
    free(t->mark);
    memset(t, 0, sizeof *t);
}

/* Marks in an n_expert table make the intersection O(k); a token's k experts are distinct (top-k). */
void qf_route_tally_add(qf_route_tally *t, uint32_t s, const uint16_t *a, const uint16_t *b) {
    uint32_t k = t->k, both = 0;
    for (uint32_t i = 0; i < k; i++) t->mark[a[i]] = 1;
    for (uint32_t i = 0; i < k; i++) both += t->mark[b[i]];
    for (uint32_t i = 0; i < k; i++) t->mark[a[i]] = 0;
    t->overlap[s] += both;
    t->same[s] += both == k;
    t->count[s]++;
}
