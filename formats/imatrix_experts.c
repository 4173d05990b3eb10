/* Routed experts in an importance matrix: what a rarely-routed expert is weighted with, and which
 * experts a calibration text left short of tokens (imatrix.h). */
#include "formats/imatrix.h"

#include <stdio.h>

bool qf_sparse_experts_parse(const char *s, qf_sparse_experts *out) {
    static const char *const names[] = {"blend", "pooled", "own"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *out = (qf_sparse_experts)i; return true; }
    return false;
}

const char *qf_sparse_experts_name(qf_sparse_experts p) {
    return p == QF_SPARSE_POOLED ? "pooled" : p == QF_SPARSE_OWN ? "own" : "blend";
}

static void own_mean(const double *s, double c, uint32_t n, float *out) {
    for (uint32_t j = 0; j < n; j++) out[j] = c > 0 ? (float)(s[j] / c) : 1.0f;
}

/* The layer's pooled mean: all experts' sums over all their tokens, so it is a token-weighted average
 * of the experts' means (the statistics a dense FFN in that place would have seen). */
static double *pooled_sums(const qf_imatrix_entry *e, double *count) {
    double *p = qf_calloc_n(e->n_cols, sizeof *p);
    *count = 0;
    if (!p) return NULL;
    for (uint32_t m = 0; m < e->n_mat; m++) {
        const double *s = e->sum2 + (uint64_t)m * e->n_cols;
        for (uint32_t j = 0; j < e->n_cols; j++) p[j] += s[j];
        *count += e->counts[m];
    }
    return p;
}

void qf_imatrix_weights(const qf_imatrix_entry *e, const qf_expert_rule *rule, float *out) {
    uint32_t floor_ = rule && e->n_mat > 1 && rule->policy != QF_SPARSE_OWN ? rule->min_tokens : 0;
    double pc = 0, *pool = NULL;
    for (uint32_t m = 0; m < e->n_mat; m++) {
        const double *s = e->sum2 + (uint64_t)m * e->n_cols;
        double c = e->counts[m];
        float *o = out + (uint64_t)m * e->n_cols;
        if (c >= floor_ || (!pool && !(pool = pooled_sums(e, &pc))) || pc <= 0) {
            own_mean(s, c, e->n_cols, o); /* enough tokens, or nothing to pool (or no memory): its own */
            continue;
        }
        /* blend: the missing tokens are taken at the pooled mean, so an expert with a few tokens keeps
         * their evidence in proportion and one with none gets the pooled mean */
        bool blend = rule->policy == QF_SPARSE_BLEND;
        for (uint32_t j = 0; j < e->n_cols; j++) {
            double pm = pool[j] / pc;
            o[j] = (float)(blend ? (s[j] + ((double)floor_ - c) * pm) / floor_ : pm);
        }
    }
    free(pool);
}

/* "blk.L.ffn_..._exps.weight" -> L; false for every other name. */
static bool expert_layer(const char *name, uint32_t *layer) {
    unsigned l;
    int n = 0;
    if (sscanf(name, "blk.%u.ffn_%*[a-z]_exps.weight%n", &l, &n) != 1 || n == 0 || name[n]) return false;
    *layer = l;
    return true;
}

static int cmp_layer(const void *a, const void *b) {
    uint32_t x = ((const qf_expert_layer *)a)->layer, y = ((const qf_expert_layer *)b)->layer;
    return x < y ? -1 : x > y;
}

qf_status qf_expert_coverage_get(const qf_imatrix *im, uint32_t min_tokens, qf_expert_coverage *cov, qf_error *err) {
    memset(cov, 0, sizeof *cov);
    cov->min_tokens = min_tokens;
    for (size_t i = 0; i < im->n; i++) {
        const qf_imatrix_entry *e = &im->e[i];
        uint32_t layer;
        if (e->n_mat < 2 || !expert_layer(e->name, &layer)) continue;
        bool seen = false; /* gate, up and down of a layer saw the same tokens: its first entry speaks */
        for (size_t k = 0; k < cov->n && !seen; k++) seen = cov->l[k].layer == layer;
        if (seen) continue;
        qf_expert_layer *grown = realloc(cov->l, (cov->n + 1) * sizeof *grown);
        if (!grown) goto oom;
        cov->l = grown;
        qf_expert_layer *L = &cov->l[cov->n];
        *L = (qf_expert_layer){.layer = layer, .n_expert = e->n_mat, .tokens = qf_malloc_n(e->n_mat, sizeof(double)),
                               .under = qf_malloc_n(e->n_mat, sizeof(uint32_t))};
        cov->n++;
        if (!L->tokens || !L->under) goto oom;
        for (uint32_t m = 0; m < e->n_mat; m++) {
            L->tokens[m] = e->counts[m];
            if (e->counts[m] < min_tokens) L->under[L->n_under++] = m;
        }
        cov->experts += L->n_expert;
        cov->under += L->n_under;
    }
    if (cov->n) qsort(cov->l, cov->n, sizeof *cov->l, cmp_layer);
    return QF_OK;
oom:
    qf_expert_coverage_free(cov);
    return qf_fail(err, QF_E_NOMEM, "out of memory for the expert coverage");
}

void qf_expert_coverage_free(qf_expert_coverage *cov) {
    for (size_t i = 0; i < cov->n; i++) { free(cov->l[i].tokens); free(cov->l[i].under); }
    free(cov->l);
    memset(cov, 0, sizeof *cov);
}
