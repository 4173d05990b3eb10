/* The --dry-run plan as a table or as a JSON report (report.h). */
#include "convert/report.h"

#include <math.h>
#include "kernels/qtypes.h"
#include "quantize/plan.h"

#include <stdlib.h>

/* How an entry's rows come from the source, for the reason column. */
static const char *mapping(const qf_plan_entry *e) {
    if (!e->spec) return "";
    switch (e->spec->map) {
    case QF_MAP_STACK: return " (experts stacked)";
    case QF_MAP_HEAD_ROWS: return " (v rows of kv_b_proj)";
    case QF_MAP_HEAD_COLS: return " (nope rows of kv_b_proj, transposed)";
    default: return e->spec->permute_heads ? " (rotary rows permuted)" : "";
    }
}

/* What the executor does with the source's stored values, for users who check that a release's bytes
 * survive: FP8 codes and scales kept, plain values copied, or decoded and encoded. */
static const char *pass_name(const qf_plan_entry *e) {
    return e->fp8_pass ? "fp8_codes" : e->raw_pass ? "bytes" : "none";
}

static const char *map_name(const qf_tensor_spec *t) {
    if (!t) return "generated";
    switch (t->map) {
    case QF_MAP_STACK: return "stack";
    case QF_MAP_HEAD_ROWS: return "head_rows";
    case QF_MAP_HEAD_COLS: return "head_cols";
    default: return "copy";
    }
}

static void shape_text(const qf_plan_entry *e, char *out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    for (uint32_t d = 0; d < e->n_dims && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, "%s%llu", d ? " x " : "", (unsigned long long)e->ne[d]);
}

void qf_plan_print_text(const qf_plan *p, FILE *out) {
    fprintf(out, "%-34s %-22s %-9s %12s  %s\n", "tensor", "shape (ne)", "type", "bytes", "reason");
    for (size_t i = 0; i < p->n; i++) {
        const qf_plan_entry *e = &p->e[i];
        char shape[64];
        shape_text(e, shape, sizeof shape);
        char *name = qf_text_escaped(e->name, QF_TEXT_TERMINAL), *why = qf_text_escaped(e->reason, QF_TEXT_TERMINAL);
        fprintf(out, "%-34s %-22s %-9s %12llu  %s%s%s\n", name ? name : "?", shape, qf_qtype_get(e->type)->name,
                (unsigned long long)e->nbytes, why ? why : "?", mapping(e), e->raw_pass ? "; source bytes kept" : "");
        free(name);
        free(why);
    }
    if (p->map.n_skipped) fprintf(out, "skipped: %zu source tensors: %s\n", p->map.n_skipped, p->map.skipped_note);
    double bpw = p->total_params ? 8.0 * (double)p->total_bytes / (double)p->total_params : 0;
    fprintf(out, "total: %zu tensors, %llu parameters, %llu bytes of tensor data (%.2f MiB), %.3f bits per weight\n",
            p->n, (unsigned long long)p->total_params, (unsigned long long)p->total_bytes,
            (double)p->total_bytes / 1048576.0, bpw);
    char **lines;
    size_t n;
    if (qf_plan_methods(p, &lines, &n, NULL)) return;
    for (size_t k = 0; k < n; k++) fprintf(out, "%s %s\n", k ? "        " : "methods:", lines[k]);
    qf_plan_methods_free(lines, n);
}

/* ne (GGUF order, ne[0] = row length) and shape (outermost first), as inspect --json writes them. */
static void add_dims(cJSON *e, const uint64_t *ne, uint32_t n_dims) {
    cJSON *a = cJSON_AddArrayToObject(e, "ne"), *b = cJSON_AddArrayToObject(e, "shape");
    for (uint32_t d = 0; d < n_dims; d++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ne[d]));
        cJSON_AddItemToArray(b, cJSON_CreateNumber((double)ne[n_dims - 1 - d]));
    }
}

cJSON *qf_plan_report(const qf_source *src, const qf_plan *p, const char *source_sha256) {
    cJSON *r = qf_report_new("qforge.plan/1");
    if (!r) return NULL;
    qf_report_add_model_digest(r, "src", qf_source_label(src), source_sha256);
    cJSON *ts = cJSON_AddArrayToObject(r, "tensors");
    for (size_t i = 0; i < p->n; i++) {
        const qf_plan_entry *e = &p->e[i];
        cJSON *t = cJSON_CreateObject();
        qf_json_add_text(t, "name", e->name);
        /* every source tensor it reads, in order (the experts of a stacked tensor) */
        cJSON *from = cJSON_AddArrayToObject(t, "sources");
        for (size_t k = 0; e->spec && k < e->spec->n_src; k++)
            cJSON_AddItemToArray(from, qf_json_text(qf_source_tensor(src, p->map.src[e->spec->first_src + k])->name));
        cJSON_AddStringToObject(t, "map", map_name(e->spec));
        add_dims(t, e->ne, e->n_dims);
        cJSON_AddStringToObject(t, "type", qf_qtype_get(e->type)->name);
        cJSON_AddNumberToObject(t, "bytes", (double)e->nbytes);
        cJSON_AddNumberToObject(t, "bpw", 8.0 * (double)e->nbytes / (double)(e->ne[0] * e->n_rows));
        qf_json_add_text(t, "reason", e->reason);
        cJSON_AddItemToObject(t, "predicted_kld", isfinite(e->predicted_kld) ? cJSON_CreateNumber(e->predicted_kld)
                                                                               : cJSON_CreateNull());
        cJSON_AddStringToObject(t, "pass", pass_name(e));
        cJSON_AddBoolToObject(t, "permute_rotary", e->spec && e->spec->permute_heads != 0);
        cJSON_AddItemToArray(ts, t);
    }
    cJSON *skip = cJSON_AddObjectToObject(r, "skipped");
    cJSON_AddNumberToObject(skip, "source_tensors", (double)p->map.n_skipped);
    qf_json_add_text(skip, "why", p->map.skipped_note);
    cJSON *tot = cJSON_AddObjectToObject(r, "totals");
    cJSON_AddNumberToObject(tot, "tensors", (double)p->n);
    cJSON_AddNumberToObject(tot, "parameters", (double)p->total_params);
    cJSON_AddNumberToObject(tot, "bytes", (double)p->total_bytes);
    cJSON_AddNumberToObject(tot, "bpw", p->total_params ? 8.0 * (double)p->total_bytes / (double)p->total_params : 0);
    return r;
}
