/* Building, checking and printing a quantization plan (plan.h). */
#include "quantize/plan.h"
#include "kernels/qtypes.h"

qf_status qf_type_override_parse(const char *spec, qf_type_override *o, qf_error *err) {
    memset(o, 0, sizeof *o);
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return qf_fail(err, QF_E_USAGE, "--tensor-type '%s': expected REGEX=TYPE", spec);
    const qf_qtype_traits *t = qf_qtype_by_name(eq + 1);
    if (!t || !t->quantize)
        return qf_fail(err, QF_E_USAGE, "--tensor-type '%s': '%s' is not a type this build can write", spec, eq + 1);
    char *pattern = qf_strndup(spec, (size_t)(eq - spec));
    if (!pattern) return qf_fail(err, QF_E_NOMEM, "out of memory");
    int rc = regcomp(&o->re, pattern, REG_EXTENDED | REG_NOSUB);
    free(pattern);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &o->re, msg, sizeof msg);
        return qf_fail(err, QF_E_USAGE, "--tensor-type '%s': bad regular expression: %s", spec, msg);
    }
    o->spec = spec;
    o->type = t->id;
    return QF_OK;
}

void qf_type_override_free(qf_type_override *o) {
    if (o->spec) regfree(&o->re);
    o->spec = NULL;
}

/* Tensors every plan keeps F32 whatever the recipe or override says: 1-D tensors (norms, biases,
 * llama3 rope factors), and the routers, whose few rows decide which experts run (llama.cpp's
 * converter and llama-quantize never quantize them either). */
static bool kept_f32(const qf_plan_entry *e, const char **why) {
    if (e->n_dims == 1) { *why = "1-D tensor: kept F32"; return true; }
    if (e->role == QF_ROLE_FFN_GATE_INP || e->role == QF_ROLE_FFN_GATE_INP_SHEXP) {
        *why = "router: kept F32";
        return true;
    }
    return false;
}

/* The type before block-size fitting: policy, then overrides, then the recipe. */
static uint32_t wanted_type(const qf_plan_entry *e, const qf_hparams *hp, const qf_plan_opts *opts, char *why, size_t n) {
    const char *policy;
    if (kept_f32(e, &policy)) { snprintf(why, n, "%s", policy); return QF_T_F32; }
    for (size_t i = 0; i < opts->n_overrides; i++) {
        if (regexec(&opts->overrides[i].re, e->name, 0, NULL, 0) == 0) {
            snprintf(why, n, "override '%s'", opts->overrides[i].spec);
            return opts->overrides[i].type;
        }
    }
    if (!opts->recipe) { snprintf(why, n, "requested type"); return opts->type; }
    const char *rule;
    uint32_t t = qf_recipe_type(opts->recipe, e->role, e->layer, hp->n_layer, hp->tied_embeddings, &rule);
    snprintf(why, n, "%s: %s", opts->recipe->name, rule);
    return t;
}

/* Rows must hold whole blocks; walk the fallback chain (ending in F16, block 1) until they do. */
static void choose_type(qf_plan_entry *e, const qf_hparams *hp, const qf_plan_opts *opts) {
    uint32_t t = wanted_type(e, hp, opts, e->reason, sizeof e->reason), first = t;
    while (e->ne[0] % qf_qtype_get(t)->blck != 0) t = qf_qtype_fallback(qf_qtype_get(t));
    if (t != first) {
        size_t used = strlen(e->reason);
        snprintf(e->reason + used, sizeof e->reason - used, "; row %llu does not fit %s blocks: fallback",
                 (unsigned long long)e->ne[0], qf_qtype_get(first)->name);
    }
    e->type = t;
}

static qf_status finish_entry(qf_plan *p, qf_plan_entry *e, const qf_hparams *hp, const qf_plan_opts *opts,
                              qf_error *err) {
    choose_type(e, hp, opts);
    e->n_rows = 1;
    for (uint32_t d = 1; d < e->n_dims; d++) e->n_rows *= e->ne[d];
    uint64_t row_bytes;
    if (!qf_qtype_row_bytes(qf_qtype_get(e->type), e->ne[0], &row_bytes) ||
        !qf_mul_ok(row_bytes, e->n_rows, &e->nbytes) || !qf_add_ok(p->total_bytes, e->nbytes, &p->total_bytes))
        return qf_fail(err, QF_E_INPUT, "tensor '%s': size overflows", e->name);
    p->total_params += e->ne[0] * e->n_rows;
    p->n++;
    return QF_OK;
}

/* Every source tensor a spec reads must hold numbers the executor can decode to F32. */
static qf_status check_readable(qf_source *src, const qf_plan *p, const qf_tensor_spec *t, qf_error *err) {
    bool gguf = qf_source_gguf(src) != NULL;
    for (size_t k = 0; k < t->n_src; k++) {
        const qf_src_tensor *s = qf_source_tensor(src, p->map.src[t->first_src + k]);
        const qf_qtype_traits *tt = gguf ? qf_qtype_get(s->qtype) : NULL;
        if (gguf ? tt && tt->dequantize : qf_dtype_is_float(s->dtype)) continue;
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' has %s %s; expected a floating or readable quantized type",
                       qf_source_label(src), s->name, gguf ? "type" : "dtype",
                       gguf ? (tt ? tt->name : "?") : qf_dtype_name(s->dtype));
    }
    return QF_OK;
}

typedef struct shapes {
    qf_source *src;
    qf_tensor_shape cur;
} shapes;

static const qf_tensor_shape *shape_of(void *ctx, size_t i) {
    shapes *s = ctx;
    const qf_src_tensor *t = qf_source_tensor(s->src, i);
    s->cur = (qf_tensor_shape){.name = t->name, .n_dims = t->n_dims, .shape = t->shape};
    return &s->cur;
}

qf_status qf_plan_build(qf_source *src, const qf_hparams *hp, const qf_plan_opts *opts, qf_plan *p, qf_error *err) {
    memset(p, 0, sizeof *p);
    p->weight_type = opts->recipe ? opts->recipe->bulk : opts->type;
    if (!qf_qtype_get(p->weight_type) || !qf_qtype_get(p->weight_type)->quantize)
        return qf_fail(err, QF_E_USAGE, "type id %u cannot be written by this build", p->weight_type);
    shapes sh = {.src = src};
    size_t n = qf_source_n_tensors(src);
    bool gguf = qf_source_gguf(src) != NULL;
    qf_status st = gguf ? qf_tensor_map_gguf(hp, n, shape_of, &sh, qf_source_label(src), &p->map, err)
                        : qf_tensor_map_hf(hp, n, shape_of, &sh, qf_source_label(src), &p->map, err);
    if (st) return st;
    p->e = qf_calloc_n(p->map.n + 1, sizeof *p->e);
    if (!p->e) { st = qf_fail(err, QF_E_NOMEM, "out of memory for the plan"); goto fail; }
    if (hp->rope_scaling == QF_ROPE_SCALING_LLAMA3 && !gguf) {
        qf_plan_entry *e = &p->e[p->n];
        *e = (qf_plan_entry){.gen = QF_GEN_ROPE_LLAMA3, .role = QF_ROLE_ROPE_FREQS, .layer = -1,
                             .n_dims = 1, .ne = {hp->head_dim / 2, 1, 1, 1}};
        snprintf(e->name, sizeof e->name, "rope_freqs.weight");
        if ((st = finish_entry(p, e, hp, opts, err))) goto fail;
    }
    for (size_t i = 0; i < p->map.n; i++) {
        const qf_tensor_spec *t = &p->map.t[i];
        if ((st = check_readable(src, p, t, err))) goto fail;
        qf_plan_entry *e = &p->e[p->n];
        *e = (qf_plan_entry){.spec = t, .role = t->role, .layer = t->layer, .n_dims = t->n_dims};
        snprintf(e->name, sizeof e->name, "%s", t->name);
        memcpy(e->ne, t->ne, sizeof e->ne);
        if ((st = finish_entry(p, e, hp, opts, err))) goto fail;
    }
    return QF_OK;
fail:
    qf_plan_free(p);
    return st;
}

void qf_plan_free(qf_plan *p) {
    free(p->e);
    qf_tensor_map_free(&p->map);
    memset(p, 0, sizeof *p);
}

int qf_plan_file_type(const qf_plan *p) {
    /* a file holding a type llama.cpp cannot load must not claim one of its file types */
    for (size_t i = 0; i < p->n; i++)
        if (qf_qtype_get(p->e[i].type)->file_type < 0) return -1;
    return qf_qtype_get(p->weight_type)->file_type;
}

void qf_plan_print(const qf_plan *p, FILE *out) {
    fprintf(out, "%-34s %-22s %-9s %12s  %s\n", "tensor", "shape (ne)", "type", "bytes", "reason");
    for (size_t i = 0; i < p->n; i++) {
        const qf_plan_entry *e = &p->e[i];
        char shape[64];
        int k = 0;
        for (uint32_t d = 0; d < e->n_dims; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%llu", d ? " x " : "", (unsigned long long)e->ne[d]);
        const char *how = !e->spec ? "" : e->spec->map == QF_MAP_STACK ? " (experts stacked)"
                        : e->spec->map == QF_MAP_HEAD_ROWS ? " (v rows of kv_b_proj)"
                        : e->spec->map == QF_MAP_HEAD_COLS ? " (nope rows of kv_b_proj, transposed)"
                        : e->spec->permute_heads ? " (rotary rows permuted)" : "";
        fprintf(out, "%-34s %-22s %-9s %12llu  %s%s\n", e->name, shape, qf_qtype_get(e->type)->name,
                (unsigned long long)e->nbytes, e->reason, how);
    }
    if (p->map.n_skipped)
        fprintf(out, "skipped: %zu source tensors: %s\n", p->map.n_skipped, p->map.skipped_note);
    double bpw = p->total_params ? 8.0 * (double)p->total_bytes / (double)p->total_params : 0;
    fprintf(out, "total: %zu tensors, %llu parameters, %llu bytes of tensor data (%.2f MiB), %.3f bits per weight\n",
            p->n, (unsigned long long)p->total_params, (unsigned long long)p->total_bytes,
            (double)p->total_bytes / 1048576.0, bpw);
}
