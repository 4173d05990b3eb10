/* solve.c — the allocation solver (solve.h). */
#include "quantize/solve.h"
#include "kernels/qtypes.h"

#include <math.h>

typedef struct point {
    uint32_t type;
    uint64_t bytes;
    double cost;
} point;

/* One tensor the solver decides: its hull, cheapest first, and where it stands on it. */
typedef struct choice {
    qf_plan_entry *e;
    const qf_sens_tensor *t;
    point hull[QF_SENS_MAX_TYPES];
    size_t n, at;
    bool closed;              /* an upgrade of it did not fit: its later ones are not taken either */
} choice;

typedef struct upgrade {
    double gain;              /* predicted loss saved per byte */
    size_t c, step;           /* choice index, hull step (step -> step + 1) */
} upgrade;

static bool solvable(const qf_plan_entry *e) {
    return e->override < 0 && qf_qtype_get(e->type)->quantized && e->n_dims >= 2;
}

/* The candidates the plan may store for this tensor, then their lower convex hull in (bytes, cost). */
static size_t hull_of(const qf_plan_entry *e, const qf_sens_tensor *t, bool ext, point *h) {
    point p[QF_SENS_MAX_TYPES];
    size_t n = 0, m = 0;
    for (size_t k = 0; k < t->n; k++) {
        const qf_qtype_traits *tt = qf_qtype_get(t->c[k].type);
        uint64_t row;
        if (!tt || !tt->quantize || e->ne[0] % tt->blck || (!ext && tt->file_type < 0)) continue;
        if (!qf_qtype_row_bytes(tt, e->ne[0], &row)) continue;
        p[n++] = (point){tt->id, row * e->n_rows, qf_sens_predict(t, &t->c[k])};
    }
    /* the table is in ascending bytes; recomputed sizes keep that order */
    for (size_t k = 0; k < n; k++) {
        if (m && p[k].cost >= h[m - 1].cost) continue;          /* more bytes, no less loss */
        if (m && p[k].bytes == h[m - 1].bytes) { h[m - 1] = p[k]; continue; }
        while (m >= 2) {
            double g1 = (h[m - 2].cost - h[m - 1].cost) / (double)(h[m - 1].bytes - h[m - 2].bytes);
            double g2 = (h[m - 1].cost - p[k].cost) / (double)(p[k].bytes - h[m - 1].bytes);
            if (g2 < g1) break;
            m--;                                                /* h[m-1] lies above the line */
        }
        h[m++] = p[k];
    }
    return m;
}

static int by_gain(const void *a, const void *b) {
    const upgrade *x = a, *y = b;
    if (x->gain != y->gain) return x->gain > y->gain ? -1 : 1;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    return x->step < y->step ? -1 : x->step > y->step;
}

static qf_status collect(qf_plan *plan, const qf_sens *s, const qf_solve_opts *o, choice *ch, size_t *n_ch,
                         qf_error *err) {
    size_t n = 0;
    for (size_t i = 0; i < plan->n; i++) {
        qf_plan_entry *e = &plan->e[i];
        if (!solvable(e)) continue;
        const qf_sens_tensor *t = qf_sens_find(s, e->name);
        uint64_t params = e->ne[0] * e->n_rows;
        if (!t)
            return qf_fail(err, QF_E_INPUT, "%s has no tensor '%s': measured on another model? (qforge measure)",
                           o->label, e->name);
        if (t->params != params)
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' has %llu weights there, %llu in this model", o->label,
                           e->name, (unsigned long long)t->params, (unsigned long long)params);
        ch[n] = (choice){.e = e, .t = t};
        if (!(ch[n].n = hull_of(e, t, o->allow_extension, ch[n].hull)))
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' has no candidate type this file may hold%s", o->label,
                           e->name, o->allow_extension ? "" : " (--allow-extension-types admits qforge's own)");
        n++;
    }
    *n_ch = n;
    return QF_OK;
}

static void describe(const choice *c, char *why, size_t n) {
    const point *p = &c->hull[c->at];
    snprintf(why, n, "solver: predicted KLD %.3g of %zu hull types (%s..%s)", p->cost, c->n,
             qf_qtype_get(c->hull[0].type)->name, qf_qtype_get(c->hull[c->n - 1].type)->name);
}

qf_status qf_plan_solve(qf_source *src, qf_plan *plan, const qf_sens *s, const qf_solve_opts *o, qf_solve_result *r,
                        qf_error *err) {
    memset(r, 0, sizeof *r);
    if (!o->max_bytes && !(o->max_kld >= 0))
        return qf_fail(err, QF_E_USAGE, "the solver needs a size or a KLD target");
    choice *ch = qf_calloc_n(plan->n + 1, sizeof *ch);
    upgrade *up = qf_calloc_n((plan->n + 1) * QF_SENS_MAX_TYPES, sizeof *up);
    size_t n_ch = 0, n_up = 0;
    qf_status st = ch && up ? collect(plan, s, o, ch, &n_ch, err) : qf_fail(err, QF_E_NOMEM, "out of memory");
    uint64_t bytes = plan->total_bytes;
    double cost = 0;
    r->given_kld = 0;
    for (size_t i = 0; !st && i < n_ch; i++) {
        const qf_sens_cand *given = qf_sens_cand_of(ch[i].t, ch[i].e->type);
        r->given_kld += given ? qf_sens_predict(ch[i].t, given) : NAN;
        bytes = bytes - ch[i].e->nbytes + ch[i].hull[0].bytes;
        cost += ch[i].hull[0].cost;
        for (size_t k = 0; k + 1 < ch[i].n; k++)
            up[n_up++] = (upgrade){(ch[i].hull[k].cost - ch[i].hull[k + 1].cost) /
                                       (double)(ch[i].hull[k + 1].bytes - ch[i].hull[k].bytes), i, k};
    }
    r->min_bytes = bytes;
    if (!st && o->max_bytes && bytes > o->max_bytes)
        st = qf_fail(err, QF_E_INPUT, "the budget of %llu tensor bytes is below the smallest mix of these types "
                     "(%llu bytes)", (unsigned long long)o->max_bytes, (unsigned long long)bytes);
    if (!st) qsort(up, n_up, sizeof *up, by_gain);
    for (size_t u = 0; !st && u < n_up; u++) {
        if (o->max_kld >= 0 && cost <= o->max_kld) break;
        choice *c = &ch[up[u].c];
        if (c->closed) continue;
        const point *a = &c->hull[up[u].step], *b = a + 1;
        if (o->max_bytes && bytes - a->bytes + b->bytes > o->max_bytes) { c->closed = true; continue; }
        bytes = bytes - a->bytes + b->bytes;
        cost = cost - a->cost + b->cost;
        c->at = up[u].step + 1;
    }
    if (!st && o->max_kld >= 0 && cost > o->max_kld)
        st = qf_fail(err, QF_E_INPUT, "no mix of these types%s predicts a KLD of %g or less (the best reaches %.4g)",
                     o->max_bytes ? " within the size" : "", o->max_kld, cost);
    if (!st) { /* the running sum drifts by rounding: the mix's cost is the sum of its tensors' */
        cost = 0;
        for (size_t i = 0; i < n_ch; i++) cost += ch[i].hull[ch[i].at].cost;
    }
    for (size_t i = 0; !st && i < n_ch; i++) {
        char why[160];
        describe(&ch[i], why, sizeof why);
        st = qf_plan_set_type(src, plan, ch[i].e, ch[i].hull[ch[i].at].type, why, err);
        ch[i].e->predicted_kld = ch[i].hull[ch[i].at].cost;
    }
    if (!st) {
        r->chosen = n_ch;
        r->predicted_kld = cost;
    }
    free(ch);
    free(up);
    return st;
}
