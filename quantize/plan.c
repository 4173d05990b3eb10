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
    int code;
    PCRE2_SIZE at;
    o->re = pcre2_compile((PCRE2_SPTR)spec, (PCRE2_SIZE)(eq - spec), 0, &code, &at, NULL);
    if (!o->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return qf_fail(err, QF_E_USAGE, "--tensor-type '%s': bad regular expression at offset %zu: %s", spec, (size_t)at,
                       (const char *)msg);
    }
    if (!(o->md = pcre2_match_data_create_from_pattern(o->re, NULL))) {
        qf_type_override_free(o);
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    }
    o->spec = spec;
    o->type = t->id;
    return QF_OK;
}

void qf_type_override_free(qf_type_override *o) {
    pcre2_match_data_free(o->md);
    pcre2_code_free(o->re);
    memset(o, 0, sizeof *o);
}

/* Searched, not anchored, like llama-quantize's std::regex_search. */
static bool override_matches(const qf_type_override *o, const char *name) {
    return pcre2_match(o->re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, o->md, NULL) >= 0;
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
static uint32_t wanted_type(qf_plan_entry *e, const qf_hparams *hp, const qf_plan_opts *opts, char *why, size_t n) {
    const char *policy;
    e->override = -1;
    if (kept_f32(e, &policy)) { snprintf(why, n, "%s", policy); return QF_T_F32; }
    for (size_t i = 0; i < opts->n_overrides; i++) {
        if (override_matches(&opts->overrides[i], e->name)) {
            snprintf(why, n, "override '%s'", opts->overrides[i].spec);
            e->override = (int)i;
            return opts->overrides[i].type;
        }
    }
    if (!opts->recipe) { snprintf(why, n, "requested type"); return opts->type; }
    const char *rule;
    uint32_t t = qf_recipe_type(opts->recipe, hp, e->role, e->layer, &rule);
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
