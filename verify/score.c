/* score.c — per-token statistics from logits (see score.h). */
#include "verify/score.h"

#include "runtime/rt_kern.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>

/* ---- scratch -------------------------------------------------------------------------------------- */

qf_status qf_score_buf_init(qf_score_buf *b, size_t cols, uint32_t k, qf_error *err) {
    memset(b, 0, sizeof *b);
    cols = (cols + QF_RT_PAD - 1) / QF_RT_PAD * QF_RT_PAD; /* whole column groups (col_range) */
    b->cols = cols;
    b->k = k;
    if (k && (!(b->top_l = qf_calloc_n(cols, (uint64_t)k * sizeof(float))) ||
              !(b->top_id = qf_calloc_n(cols, (uint64_t)k * sizeof(uint32_t))))) {
        qf_score_buf_free(b);
        return qf_fail(err, QF_E_NOMEM, "out of memory for scoring buffers");
    }
    b->fmax_a = qf_calloc_n(cols, sizeof(float));
    b->fmax_b = qf_calloc_n(cols, sizeof(float));
    b->tmp = qf_calloc_n(cols, sizeof(float));
    b->sum_a = qf_calloc_n(cols, sizeof(double));
    b->sum_b = qf_calloc_n(cols, sizeof(double));
    b->acc = qf_calloc_n(cols, sizeof(double));
    b->arg_a = qf_calloc_n(cols, sizeof(uint32_t));
    b->arg_b = qf_calloc_n(cols, sizeof(uint32_t));
    if (!b->fmax_a || !b->fmax_b || !b->tmp || !b->sum_a || !b->sum_b || !b->acc || !b->arg_a || !b->arg_b) {
        qf_score_buf_free(b);
        return qf_fail(err, QF_E_NOMEM, "out of memory for scoring buffers");
    }
    return QF_OK;
}

void qf_score_buf_free(qf_score_buf *b) {
    free(b->fmax_a); free(b->fmax_b); free(b->tmp); free(b->sum_a); free(b->sum_b); free(b->acc);
    free(b->arg_a); free(b->arg_b); free(b->top_l); free(b->top_id);
    memset(b, 0, sizeof *b);
}

/* Thread ith's columns: whole groups of 16 (so vexp runs no scalar tail; logits and scratch are padded
 * to QF_RT_PAD columns, and columns past n are computed and ignored), then clipped to n. */
static void col_range(uint32_t n, int ith, int nth, uint32_t *lo, uint32_t *hi) {
    uint64_t groups = (n + 15) / 16;
    *lo = (uint32_t)(groups * (uint64_t)ith / (uint64_t)nth * 16);
    *hi = (uint32_t)(groups * (uint64_t)(ith + 1) / (uint64_t)nth * 16);
}

/* Column maxima (and the first index reaching them) of l over the vocabulary. */
static void col_max(const float *l, size_t ld, uint32_t V, uint32_t lo, uint32_t hi, float *mx, uint32_t *arg) {
    for (uint32_t j = lo; j < hi; j++) { mx[j] = l[j]; arg[j] = 0; }
    for (uint32_t v = 1; v < V; v++) {
        const float *row = l + (size_t)v * ld;
        for (uint32_t j = lo; j < hi; j++)
            if (row[j] > mx[j]) { mx[j] = row[j]; arg[j] = v; }
    }
}

/* ---- perplexity ----------------------------------------------------------------------------------- */

typedef struct nll_job {
    qf_score_buf *b;
    const float *l;
    size_t ld;
    uint32_t V, n;
    const int32_t *tg;
    double *nll;
} nll_job;

static void nll_worker(void *arg, int ith, int nth) {
    const nll_job *j = arg;
    qf_score_buf *b = j->b;
    const qf_rt_kern *k = qf_rt_kern_active();
    uint32_t lo, hi;
    col_range(j->n, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    col_max(j->l, j->ld, j->V, lo, hi, b->fmax_a, b->arg_a);
    for (uint32_t c = lo; c < hi; c++) b->sum_a[c] = 0;
    for (uint32_t v = 0; v < j->V; v++) {
        const float *row = j->l + (size_t)v * j->ld;
        for (uint32_t c = lo; c < hi; c++) b->tmp[c] = row[c] - b->fmax_a[c];
        k->vexp(b->tmp + lo, b->tmp + lo, hi - lo);
        for (uint32_t c = lo; c < hi; c++) b->sum_a[c] += b->tmp[c];
    }
    for (uint32_t c = lo; c < QF_MIN(hi, j->n); c++) {
        double lt = j->l[(size_t)j->tg[c] * j->ld + c];
        j->nll[c] = -(lt - b->fmax_a[c] - log(b->sum_a[c]));
    }
}

void qf_score_nll(qf_rt_ctx *c, qf_score_buf *b, const float *l, size_t ld, uint32_t n_vocab, const int32_t *targets,
                  uint32_t n, double *nll) {
    nll_job j = {.b = b, .l = l, .ld = ld, .V = n_vocab, .n = n, .tg = targets, .nll = nll};
    qf_rt_parallel(c, nll_worker, &j);
}

/* ---- verify --------------------------------------------------------------------------------------- */

typedef struct cmp_job {
    qf_score_buf *b;
    const float *la, *lb; /* base, model */
    size_t ld;
    uint32_t V, n;
    const int32_t *tg;
    const qf_score_cols *out;
} cmp_job;

/* log(sum_v exp(l_v)) per column in double, shifted by the column maximum. */
static void col_lse(const float *l, size_t ld, uint32_t V, uint32_t lo, uint32_t hi, const float *mx, double *lse) {
    for (uint32_t c = lo; c < hi; c++) lse[c] = 0;
    for (uint32_t v = 0; v < V; v++) {
        const float *row = l + (size_t)v * ld;
        for (uint32_t c = lo; c < hi; c++) lse[c] += exp((double)row[c] - (double)mx[c]);
    }
    for (uint32_t c = lo; c < hi; c++) lse[c] = (double)mx[c] + log(lse[c]);
}

static void cmp_worker(void *arg, int ith, int nth) {
    const cmp_job *j = arg;
    qf_score_buf *b = j->b;
    uint32_t lo, hi;
    col_range(j->n, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    col_max(j->la, j->ld, j->V, lo, hi, b->fmax_a, b->arg_a);
    col_max(j->lb, j->ld, j->V, lo, hi, b->fmax_b, b->arg_b);
    col_lse(j->la, j->ld, j->V, lo, hi, b->fmax_a, b->sum_a);
    col_lse(j->lb, j->ld, j->V, lo, hi, b->fmax_b, b->sum_b);
    for (uint32_t c = lo; c < hi; c++) b->acc[c] = 0;
    for (uint32_t v = 0; v < j->V; v++) {
        const float *ra = j->la + (size_t)v * j->ld, *rb = j->lb + (size_t)v * j->ld;
        for (uint32_t c = lo; c < hi; c++) {
            double lpa = (double)ra[c] - b->sum_a[c], lpb = (double)rb[c] - b->sum_b[c];
            b->acc[c] += exp(lpa) * (lpa - lpb);
        }
    }
    for (uint32_t c = lo; c < QF_MIN(hi, j->n); c++) {
        size_t t = (size_t)j->tg[c] * j->ld + c;
        j->out->nll_base[c] = b->sum_a[c] - (double)j->la[t];
        j->out->nll[c] = b->sum_b[c] - (double)j->lb[t];
        j->out->kld[c] = b->acc[c];
        j->out->same_top1[c] = b->arg_a[c] == b->arg_b[c];
    }
}

void qf_score_compare(qf_rt_ctx *c, qf_score_buf *b, const float *base, const float *model, size_t ld,
                      uint32_t n_vocab, const int32_t *targets, uint32_t n, const qf_score_cols *out) {
    cmp_job j = {.b = b, .la = base, .lb = model, .ld = ld, .V = n_vocab, .n = n, .tg = targets, .out = out};
    qf_rt_parallel(c, cmp_worker, &j);
}

/* ---- compact base ----------------------------------------------------------------------------------- */

/* Entry a ranks below entry b: a smaller logit, or the same logit and a larger id. */
static bool ranks_below(float la, uint32_t ia, float lb, uint32_t ib) { return la < lb || (la == lb && ia > ib); }

/* Min-heap (by ranks_below) of k entries: restore the heap property from position i down. */
static void heap_down(float *l, uint32_t *id, uint32_t k, uint32_t i) {
    for (;;) {
        uint32_t m = i, a = 2 * i + 1, c = a + 1;
        if (a < k && ranks_below(l[a], id[a], l[m], id[m])) m = a;
        if (c < k && ranks_below(l[c], id[c], l[m], id[m])) m = c;
        if (m == i) return;
        float tl = l[i]; l[i] = l[m]; l[m] = tl;
        uint32_t ti = id[i]; id[i] = id[m]; id[m] = ti;
        i = m;
    }
}

typedef struct topk_job {
    qf_score_buf *b;
    const float *l;
    size_t ld;
    uint32_t V, n, k;
    const int32_t *tg;
    uint32_t *ids;
    float *logp, *tail, *nll;
} topk_job;

static void topk_worker(void *arg, int ith, int nth) {
    const topk_job *j = arg;
    qf_score_buf *b = j->b;
    uint32_t lo, hi, k = j->k;
    col_range(j->n, ith, nth, &lo, &hi);
    hi = QF_MIN(hi, j->n);
    if (lo >= hi) return;
    /* the first k tokens form each column's heap; every later token that ranks above a heap's minimum
     * replaces it (rows in order, so a later token with an equal logit never does) */
    for (uint32_t c = lo; c < hi; c++) {
        float *hl = b->top_l + (size_t)c * k;
        uint32_t *hid = b->top_id + (size_t)c * k;
        for (uint32_t v = 0; v < k; v++) { hl[v] = j->l[(size_t)v * j->ld + c]; hid[v] = v; }
        for (uint32_t i = k / 2; i-- > 0;) heap_down(hl, hid, k, i);
    }
    for (uint32_t v = k; v < j->V; v++) {
        const float *row = j->l + (size_t)v * j->ld;
        for (uint32_t c = lo; c < hi; c++) {
            float *hl = b->top_l + (size_t)c * k;
            if (!(row[c] > hl[0])) continue;
            hl[0] = row[c];
            b->top_id[(size_t)c * k] = v;
            heap_down(hl, b->top_id + (size_t)c * k, k, 0);
        }
    }
    col_max(j->l, j->ld, j->V, lo, hi, b->fmax_a, b->arg_a);
    col_lse(j->l, j->ld, j->V, lo, hi, b->fmax_a, b->sum_a);
    for (uint32_t c = lo; c < hi; c++) {
        float *hl = b->top_l + (size_t)c * k;
        uint32_t *hid = b->top_id + (size_t)c * k;
        /* heap -> most likely first: pop the minimum to the back, k times */
        for (uint32_t n = k; n > 1; n--) {
            float tl = hl[0]; hl[0] = hl[n - 1]; hl[n - 1] = tl;
            uint32_t ti = hid[0]; hid[0] = hid[n - 1]; hid[n - 1] = ti;
            heap_down(hl, hid, n - 1, 0);
        }
        double lse = b->sum_a[c], m = b->fmax_a[c], all = exp(lse - m), kept = 0;
        for (uint32_t i = 0; i < k; i++) {
            j->ids[(size_t)c * k + i] = hid[i];
            j->logp[(size_t)c * k + i] = (float)((double)hl[i] - lse);
            kept += exp((double)hl[i] - m);
        }
        j->tail[c] = (float)QF_MAX(0.0, (all - kept) / all);
        j->nll[c] = (float)(lse - (double)j->l[(size_t)j->tg[c] * j->ld + c]);
    }
}

void qf_score_topk(qf_rt_ctx *c, qf_score_buf *b, const float *base, size_t ld, uint32_t n_vocab, const int32_t *targets,
                   uint32_t n, uint32_t *ids, float *logp, float *tail, float *nll) {
    topk_job j = {.b = b, .l = base, .ld = ld, .V = n_vocab, .n = n, .k = b->k, .tg = targets, .ids = ids, .logp = logp,
                  .tail = tail, .nll = nll};
    qf_rt_parallel(c, topk_worker, &j);
}

typedef struct compact_job {
    qf_score_buf *b;
    const qf_baselogits_rec *recs;
    uint32_t k;
    const float *l;
    size_t ld;
    uint32_t V, n;
    const int32_t *tg;
    const qf_score_cols *out;
} compact_job;

static void compact_worker(void *arg, int ith, int nth) {
    const compact_job *j = arg;
    qf_score_buf *b = j->b;
    uint32_t lo, hi;
    col_range(j->n, ith, nth, &lo, &hi);
    hi = QF_MIN(hi, j->n);
    if (lo >= hi) return;
    col_max(j->l, j->ld, j->V, lo, hi, b->fmax_b, b->arg_b);
    col_lse(j->l, j->ld, j->V, lo, hi, b->fmax_b, b->sum_b);
    for (uint32_t c = lo; c < hi; c++) {
        const qf_baselogits_rec *r = &j->recs[c];
        double lse = b->sum_b[c], m = b->fmax_b[c], kl = 0, kept = 0;
        for (uint32_t i = 0; i < j->k; i++) {
            double lq = (double)j->l[(size_t)qf_baselogits_id(r, i) * j->ld + c], lp = qf_baselogits_logp(r, i);
            kl += exp(lp) * (lp - (lq - lse));
            kept += exp(lq - m);
        }
        double all = exp(lse - m), qt = QF_MAX((all - kept) / all, DBL_MIN), t = r->tail;
        if (t > 0) kl += t * (log(t) - log(qt));
        j->out->nll_base[c] = r->nll;
        j->out->nll[c] = lse - (double)j->l[(size_t)j->tg[c] * j->ld + c];
        j->out->kld[c] = kl;
        j->out->same_top1[c] = b->arg_b[c] == qf_baselogits_id(r, 0);
    }
}

void qf_score_compare_compact(qf_rt_ctx *c, qf_score_buf *b, const qf_baselogits_rec *recs, uint32_t k,
                              const float *model, size_t ld, uint32_t n_vocab, const int32_t *targets, uint32_t n,
                              const qf_score_cols *out) {
    compact_job j = {.b = b, .recs = recs, .k = k, .l = model, .ld = ld, .V = n_vocab, .n = n, .tg = targets,
                     .out = out};
    qf_rt_parallel(c, compact_worker, &j);
}
