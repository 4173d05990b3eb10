/* Building, checking and printing a quantization plan (plan.h). */
#include "quantize/plan.h"
#include "kernels/qtypes.h"

/* Shape a role must have, as [rows, cols] in HF order (cols = row length); 0 = 1-D of `cols`. */
static void expected_shape(const qf_hparams *hp, qf_role role, uint64_t *rows, uint64_t *cols) {
    uint64_t q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    *rows = 0;
    *cols = 0;
    switch (role) {
    case QF_ROLE_TOKEN_EMBD: case QF_ROLE_OUTPUT: *rows = hp->n_vocab; *cols = hp->n_embd; break;
    case QF_ROLE_ATTN_Q: *rows = q; *cols = hp->n_embd; break;
    case QF_ROLE_ATTN_K: case QF_ROLE_ATTN_V: *rows = kv; *cols = hp->n_embd; break;
    case QF_ROLE_ATTN_OUT: *rows = hp->n_embd; *cols = q; break;
    case QF_ROLE_FFN_GATE: case QF_ROLE_FFN_UP: *rows = hp->n_ff; *cols = hp->n_embd; break;
    case QF_ROLE_FFN_DOWN: *rows = hp->n_embd; *cols = hp->n_ff; break;
    case QF_ROLE_ATTN_NORM: case QF_ROLE_FFN_NORM: case QF_ROLE_OUTPUT_NORM: *cols = hp->n_embd; break;
    case QF_ROLE_ATTN_Q_BIAS: *cols = q; break;
    case QF_ROLE_ATTN_K_BIAS: case QF_ROLE_ATTN_V_BIAS: *cols = kv; break;
    default: break;
    }
}

static qf_status check_shape(const qf_source *src, const qf_src_tensor *t, const qf_hparams *hp, qf_role role,
                             qf_error *err) {
    uint64_t rows, cols;
    expected_shape(hp, role, &rows, &cols);
    if (!cols) return QF_OK;
    bool ok = rows ? (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols)
                   : (t->n_dims == 1 && t->shape[0] == cols);
    if (ok) return QF_OK;
    char got[96] = "", want[64];
    for (uint32_t d = 0, n = 0; d < t->n_dims && n < sizeof got - 24; d++)
        n += (uint32_t)snprintf(got + n, sizeof got - n, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (rows) snprintf(want, sizeof want, "[%llu, %llu]", (unsigned long long)rows, (unsigned long long)cols);
    else snprintf(want, sizeof want, "[%llu]", (unsigned long long)cols);
    return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' has shape [%s]; config.json implies %s", qf_source_label(src),
                   t->name, got, want);
}

/* Roles every layer must have; biases only where the architecture uses them. */
static const qf_role layer_roles[] = {
    QF_ROLE_ATTN_NORM, QF_ROLE_ATTN_Q, QF_ROLE_ATTN_K, QF_ROLE_ATTN_V, QF_ROLE_ATTN_OUT,
    QF_ROLE_FFN_NORM, QF_ROLE_FFN_GATE, QF_ROLE_FFN_UP, QF_ROLE_FFN_DOWN,
};
static const qf_role bias_roles[] = {QF_ROLE_ATTN_Q_BIAS, QF_ROLE_ATTN_K_BIAS, QF_ROLE_ATTN_V_BIAS};

static bool plan_has(const qf_plan *p, qf_role role, int layer) {
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].role == role && p->e[i].layer == layer) return true;
    return false;
}

static qf_status check_complete(const qf_source *src, const qf_hparams *hp, const qf_plan *p, qf_error *err) {
    char name[96];
    const qf_role global[] = {QF_ROLE_TOKEN_EMBD, QF_ROLE_OUTPUT_NORM};
    for (size_t r = 0; r < QF_ARRAY_LEN(global); r++) {
        if (!plan_has(p, global[r], -1)) {
            qf_arch_tensor_name(global[r], -1, name, sizeof name);
            return qf_fail(err, QF_E_INPUT, "%s: the checkpoint has no tensor for GGUF '%s'", qf_source_label(src), name);
        }
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        for (size_t r = 0; r < QF_ARRAY_LEN(layer_roles) + (hp->arch->qkv_bias ? QF_ARRAY_LEN(bias_roles) : 0); r++) {
            qf_role role = r < QF_ARRAY_LEN(layer_roles) ? layer_roles[r] : bias_roles[r - QF_ARRAY_LEN(layer_roles)];
            if (!plan_has(p, role, (int)l)) {
                qf_arch_tensor_name(role, (int)l, name, sizeof name);
                return qf_fail(err, QF_E_INPUT, "%s: layer %u has no tensor for GGUF '%s'", qf_source_label(src), l, name);
            }
        }
    }
    return QF_OK;
}

static uint32_t permute_heads(const qf_hparams *hp, qf_role role) {
    if (!hp->arch->permute_qk) return 0;
    if (role == QF_ROLE_ATTN_Q || role == QF_ROLE_ATTN_Q_BIAS) return hp->n_head;
    if (role == QF_ROLE_ATTN_K || role == QF_ROLE_ATTN_K_BIAS) return hp->n_head_kv;
    return 0;
}

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

/* The type before block-size fitting: policy for 1-D tensors, then overrides, then the recipe. */
static uint32_t wanted_type(const qf_plan_entry *e, const qf_hparams *hp, const qf_plan_opts *opts, char *why, size_t n) {
    if (e->n_dims == 1) { snprintf(why, n, "1-D tensor: kept F32"); return QF_T_F32; }
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
    while (e->ne[0] % qf_qtype_get(t)->blck != 0) t = qf_recipe_fallback(t);
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

static qf_status add_source_tensor(qf_plan *p, qf_source *src, const qf_hparams *hp, size_t i,
                                   const qf_plan_opts *opts, qf_error *err) {
    const qf_src_tensor *t = qf_source_tensor(src, i);
    qf_plan_entry *e = &p->e[p->n];
    memset(e, 0, sizeof *e);
    bool gguf = qf_source_gguf(src) != NULL;
    qf_status st = QF_OK;
    if (gguf) {
        /* Already GGUF names and row order (q/k permuted by whoever wrote it). */
        if (strlen(t->name) >= sizeof e->name)
            return qf_fail(err, QF_E_INPUT, "%s: tensor name '%s' is too long", qf_source_label(src), t->name);
        snprintf(e->name, sizeof e->name, "%s", t->name);
        qf_arch_role_from_gguf(t->name, &e->role, &e->layer);
    } else {
        st = qf_arch_map_tensor(hp, t->name, e->name, sizeof e->name, &e->role, &e->layer, err);
        if (st == QF_E_NOTFOUND) return QF_OK; /* not part of the inference graph */
        if (st) return qf_fail_prefix(err, st, qf_source_label(src));
    }
    if (gguf ? !qf_qtype_get(t->qtype) || !qf_qtype_get(t->qtype)->dequantize : !qf_dtype_is_float(t->dtype))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' has %s %s; expected a floating or readable quantized type",
                       qf_source_label(src), t->name, gguf ? "type" : "dtype",
                       gguf ? (qf_qtype_get(t->qtype) ? qf_qtype_get(t->qtype)->name : "?") : qf_dtype_name(t->dtype));
    if (t->n_dims < 1 || t->n_dims > 4)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: tensor '%s' has %u dimensions; GGUF holds 1 to 4",
                       qf_source_label(src), t->name, t->n_dims);
    if ((st = check_shape(src, t, hp, e->role, err))) return st;
    e->src = (long)i;
    e->n_dims = t->n_dims;
    for (uint32_t d = 0; d < 4; d++) e->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
    e->permute_heads = gguf ? 0 : permute_heads(hp, e->role);
    return finish_entry(p, e, hp, opts, err);
}

qf_status qf_plan_build(qf_source *src, const qf_hparams *hp, const qf_plan_opts *opts, qf_plan *p, qf_error *err) {
    memset(p, 0, sizeof *p);
    p->weight_type = opts->recipe ? opts->recipe->bulk : opts->type;
    if (!qf_qtype_get(p->weight_type) || !qf_qtype_get(p->weight_type)->quantize)
        return qf_fail(err, QF_E_USAGE, "type id %u cannot be written by this build", p->weight_type);
    size_t n = qf_source_n_tensors(src);
    p->e = qf_calloc_n(n + 1, sizeof *p->e);
    if (!p->e) return qf_fail(err, QF_E_NOMEM, "out of memory for the plan");
    qf_status st;
    if (hp->rope_scaling == QF_ROPE_SCALING_LLAMA3 && !qf_source_gguf(src)) {
        qf_plan_entry *e = &p->e[p->n];
        *e = (qf_plan_entry){.src = -1, .gen = QF_GEN_ROPE_LLAMA3, .role = QF_ROLE_ROPE_FREQS, .layer = -1,
                             .n_dims = 1, .ne = {hp->head_dim / 2, 1, 1, 1}};
        snprintf(e->name, sizeof e->name, "rope_freqs.weight");
        if ((st = finish_entry(p, e, hp, opts, err))) goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if ((st = add_source_tensor(p, src, hp, i, opts, err))) goto fail;
    if ((st = check_complete(src, hp, p, err))) goto fail;
    return QF_OK;
fail:
    qf_plan_free(p);
    return st;
}

void qf_plan_free(qf_plan *p) {
    free(p->e);
    memset(p, 0, sizeof *p);
}

int qf_plan_file_type(uint32_t type) {
    switch (type) {
    case QF_T_F32: return 0;
    case QF_T_F16: return 1;
    case QF_T_Q4_0: return 2;
    case QF_T_Q4_1: return 3;
    case QF_T_Q8_0: return 7;
    case QF_T_Q5_0: return 8;
    case QF_T_Q5_1: return 9;
    case QF_T_Q2_K: return 10;
    case QF_T_Q3_K: return 12;
    case QF_T_Q4_K: return 15;
    case QF_T_Q5_K: return 17;
    case QF_T_Q6_K: return 18;
    case QF_T_BF16: return 32;
    case QF_T_MXFP4: return 38;
    default: return -1;
    }
}

void qf_plan_print(const qf_plan *p, FILE *out) {
    fprintf(out, "%-34s %-22s %-9s %12s  %s\n", "tensor", "shape (ne)", "type", "bytes", "reason");
    for (size_t i = 0; i < p->n; i++) {
        const qf_plan_entry *e = &p->e[i];
        char shape[64];
        int k = 0;
        for (uint32_t d = 0; d < e->n_dims; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%llu", d ? " x " : "", (unsigned long long)e->ne[d]);
        fprintf(out, "%-34s %-22s %-9s %12llu  %s%s\n", e->name, shape, qf_qtype_get(e->type)->name,
                (unsigned long long)e->nbytes, e->reason, e->permute_heads ? " (q/k rows permuted)" : "");
    }
    double bpw = p->total_params ? 8.0 * (double)p->total_bytes / (double)p->total_params : 0;
    fprintf(out, "total: %zu tensors, %llu parameters, %llu bytes of tensor data (%.2f MiB), %.3f bits per weight\n",
            p->n, (unsigned long long)p->total_params, (unsigned long long)p->total_bytes,
            (double)p->total_bytes / 1048576.0, bpw);
    char **lines;
    size_t n;
    if (qf_plan_methods(p, &lines, &n, NULL)) return;
    for (size_t i = 0; i < n; i++) fprintf(out, "%s %s\n", i ? "        " : "methods:", lines[i]);
    qf_plan_methods_free(lines, n);
}
