/* How well a calibration covered the routed experts, as text and as JSON (report.h). */
#include "convert/report.h"
#include "formats/imatrix.h"

#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, uint32_t n, double *fewest) {
    double *s = qf_malloc_n(n, sizeof *s);
    if (!s) { *fewest = v[0]; return v[0]; }
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    *fewest = s[0];
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

void qf_expert_coverage_print(const qf_expert_coverage *cov, const qf_expert_rule *rule, FILE *out) {
    fprintf(out, "routed experts: %llu of %llu saw fewer than %u tokens, in %zu MoE layers", (unsigned long long)cov->under,
            (unsigned long long)cov->experts, cov->min_tokens, cov->n);
    if (rule) fprintf(out, " (weighted '%s': --sparse-experts)", qf_sparse_experts_name(rule->policy));
    fputc('\n', out);
    for (size_t i = 0; i < cov->n; i++) {
        const qf_expert_layer *L = &cov->l[i];
        double fewest, med = median(L->tokens, L->n_expert, &fewest);
        fprintf(out, "  blk.%u: %u of %u under %u tokens", L->layer, L->n_under, L->n_expert, cov->min_tokens);
        for (uint32_t k = 0; k < L->n_under && k < 16; k++)
            fprintf(out, "%s%u (%.0f)", k ? ", " : ": experts ", L->under[k], L->tokens[L->under[k]]);
        if (L->n_under > 16) fprintf(out, ", ... (--json lists all)");
        fprintf(out, "; fewest %.0f, median %.0f\n", fewest, med);
    }
}

cJSON *qf_expert_coverage_json(const qf_expert_coverage *cov, const qf_expert_rule *rule) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min_tokens", cov->min_tokens);
    if (rule) cJSON_AddStringToObject(o, "policy", qf_sparse_experts_name(rule->policy));
    cJSON_AddNumberToObject(o, "experts", (double)cov->experts);
    cJSON_AddNumberToObject(o, "under", (double)cov->under);
    cJSON *layers = cJSON_AddArrayToObject(o, "layers");
    for (size_t i = 0; i < cov->n; i++) {
        const qf_expert_layer *L = &cov->l[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "layer", L->layer);
        cJSON_AddNumberToObject(l, "experts", L->n_expert);
        cJSON *u = cJSON_AddArrayToObject(l, "under"), *t = cJSON_AddArrayToObject(l, "tokens");
        for (uint32_t k = 0; k < L->n_under; k++) cJSON_AddItemToArray(u, cJSON_CreateNumber(L->under[k]));
        for (uint32_t k = 0; k < L->n_expert; k++) cJSON_AddItemToArray(t, cJSON_CreateNumber(L->tokens[k]));
        cJSON_AddItemToArray(layers, l);
    }
    return o;
}
