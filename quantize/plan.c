/* Building, checking and printing a quantization plan (plan.h). */
#include "quantize/plan.h"
#include "kernels/qtypes.h"

#include <math.h>

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
    qf_recipe_query q = {.hp = hp, .role = e->role, .layer = e->layer, .ffn_down_index = e->ffn_down_index,
                         .row = e->ne[0], .calibrated = opts->calibrated};
    uint32_t t = qf_recipe_type(opts->recipe, &q, &rule);
    snprintf(why, n, "%s: %s", opts->recipe->name, rule);
    return t;
}

/* FP8 pass-through is exact when every group of `g` consecutive values of an output row lies under one
 * scale of its E4M3 source: rows that keep the source's columns (copies, stacked experts, row slices,
 * permuted rows) need each group within one scale along the columns; the transposed attn_k_b, whose
 * rows run down a column of kv_b_proj, needs each head's group of rows within one. */
static bool fp8_exact(qf_source *src, const qf_plan *p, const qf_plan_entry *e, uint64_t g) {
    const qf_tensor_spec *t = e->spec;
    if (!g || !t || e->n_dims < 2) return false;
    bool down = t->map == QF_MAP_HEAD_COLS;
    for (size_t k = 0; k < t->n_src; k++) {
        const qf_src_tensor *s = qf_source_tensor(src, p->map.src[t->first_src + k]);
        if (s->qtype != UINT32_MAX || s->dtype != QF_DT_F8_E4M3) return false;
        for (uint32_t h = 0; h < (down ? t->heads : 1); h++)
            for (uint64_t c = 0; c < e->ne[0]; c += g)
                if (!qf_src_scale_uniform(s, down ? 0 : 1, (down ? (uint64_t)h * t->stride + t->offset : 0) + c,
                                          QF_MIN(g, e->ne[0] - c)))
                    return false;
    }
    return true;
}

/* Stored-bytes pass-through holds when every source of a (non-generated, 2-D or more) tensor already is
 * its output type, as plain values: a BF16 release converted to BF16, an F32 GGUF re-planned to F32. */
static bool raw_exact(qf_source *src, const qf_plan *p, const qf_plan_entry *e) {
    const qf_tensor_spec *t = e->spec;
    if (!t || e->n_dims < 2 || e->gen != QF_GEN_NONE) return false;
    for (size_t k = 0; k < t->n_src; k++)
        if (qf_src_plain_type(qf_source_tensor(src, p->map.src[t->first_src + k])) != e->type) return false;
    return true;
}

/* How the executor moves e's values once its type is decided: codes and scales, bytes, or neither. */
static void set_pass(qf_source *src, const qf_plan *p, qf_plan_entry *e) {
    e->fp8_pass = fp8_exact(src, p, e, qf_qtype_e4m3_group(qf_qtype_get(e->type), e->ne[0]));
    e->raw_pass = raw_exact(src, p, e);
}

/* The 8-bit E4M3 types a recipe may ask for; on an E4M3 source any of them may be stored as another
 * that holds the source exactly (E5M2 is another format: asking for it is kept). */
static bool e4m3_8bit(uint32_t t) { return t == QF_T_E4M3_B32 || t == QF_T_E4M3_ROW || t == QF_T_E4M3_B128; }

/* Pass-through policy: a recipe's 8-bit E4M3 type on an E4M3 source becomes the smallest type that
 * holds the source's codes and scales unchanged: e4m3_b128 where each 128 values of a row share a
 * scale (DeepSeek's 128x128 blocks), e4m3_row where each row does (per-channel or per-tensor scales, or
 * rows of one block); t itself where neither does (then the tensor is decoded and quantized). An
 * explicit --type or --tensor-type is the user's choice and kept. */
static uint32_t fp8_source_type(qf_source *src, const qf_plan *p, const qf_plan_entry *e, uint32_t t) {
    static const uint32_t exact[] = {QF_T_E4M3_B128, QF_T_E4M3_ROW};
    if (!e4m3_8bit(t)) return t;
    uint32_t best = t;
    uint64_t best_bytes = UINT64_MAX, bytes;
    for (size_t i = 0; i < QF_ARRAY_LEN(exact); i++) {
        const qf_qtype_traits *tt = qf_qtype_get(exact[i]);
        if (qf_qtype_row_bytes(tt, e->ne[0], &bytes) && bytes < best_bytes &&
            fp8_exact(src, p, e, qf_qtype_e4m3_group(tt, e->ne[0]))) {
            best = exact[i];
            best_bytes = bytes;
        }
    }
    return best;
}

/* Rows must hold whole blocks; walk the fallback chain (ending in F16, block 1) until they do. */
static void choose_type(qf_source *src, const qf_plan *p, qf_plan_entry *e, const qf_hparams *hp,
                        const qf_plan_opts *opts) {
    uint32_t t = wanted_type(e, hp, opts, e->reason, sizeof e->reason), first = t;
    if (opts->recipe && e->override < 0) t = first = fp8_source_type(src, p, e, t);
    while (e->ne[0] % qf_qtype_get(t)->blck != 0) t = qf_qtype_fallback(qf_qtype_get(t));
    size_t used = strlen(e->reason);
    if (t != first)
        used += (size_t)snprintf(e->reason + used, sizeof e->reason - used,
                                 "; row %llu does not fit %s blocks: fallback", (unsigned long long)e->ne[0],
                                 qf_qtype_get(first)->name);
    e->type = t;
    set_pass(src, p, e);
    if (e->fp8_pass && used < sizeof e->reason)
        snprintf(e->reason + used, sizeof e->reason - used, "; FP8 source: codes and scales passed through as %s",
                 qf_qtype_get(t)->name);
}

qf_status qf_plan_set_type(qf_source *src, qf_plan *p, qf_plan_entry *e, uint32_t type, const char *why,
                           qf_error *err) {
    const qf_qtype_traits *tt = qf_qtype_get(type);
    uint64_t row_bytes, nbytes;
    if (!tt || !tt->quantize || e->ne[0] % tt->blck != 0)
        return qf_fail(err, QF_E_INPUT, "tensor '%s': rows of %llu values cannot be stored as %s", e->name,
                       (unsigned long long)e->ne[0], tt ? tt->name : "an unknown type");
    if (!qf_qtype_row_bytes(tt, e->ne[0], &row_bytes) || !qf_mul_ok(row_bytes, e->n_rows, &nbytes))
        return qf_fail(err, QF_E_INPUT, "tensor '%s': size overflows", e->name);
    p->total_bytes = p->total_bytes - e->nbytes + nbytes;
    e->type = type;
    e->nbytes = nbytes;
    set_pass(src, p, e);
    snprintf(e->reason, sizeof e->reason, "%s", why);
    return QF_OK;
}

static qf_status finish_entry(qf_source *src, qf_plan *p, qf_plan_entry *e, const qf_hparams *hp,
                              const qf_plan_opts *opts, qf_error *err) {
    choose_type(src, p, e, hp, opts);
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

/* llama-quantize visits tensors by layer, then by name, and some of its rules count the ffn_down tensors
 * (dense, routed and shared alike) it has passed: the index of map entry i among them, -1 for others. */
static int ffn_down_index(const qf_tensor_map *m, size_t i) {
    const qf_tensor_spec *t = &m->t[i];
    if (!(QF_ROLES_LCPP_FFN_DOWN & QF_ROLE_BIT(t->role)) || t->n_dims < 2) return -1;
    int n = 0;
    for (size_t k = 0; k < m->n; k++) {
        const qf_tensor_spec *o = &m->t[k];
        if ((QF_ROLES_LCPP_FFN_DOWN & QF_ROLE_BIT(o->role)) && o->n_dims >= 2 &&
            (o->layer < t->layer || (o->layer == t->layer && strcmp(o->name, t->name) < 0)))
            n++;
    }
    return n;
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
    p->recipe_file_type = opts->recipe ? opts->recipe->file_type : 0;
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
        *e = (qf_plan_entry){.gen = QF_GEN_ROPE_LLAMA3, .role = QF_ROLE_ROPE_FREQS, .layer = -1, .ffn_down_index = -1,
                             .predicted_kld = NAN,
                             .n_dims = 1, .ne = {hp->head_dim / 2, 1, 1, 1}};
        snprintf(e->name, sizeof e->name, "rope_freqs.weight");
        if ((st = finish_entry(src, p, e, hp, opts, err))) goto fail;
    }
    for (size_t i = 0; i < p->map.n; i++) {
        const qf_tensor_spec *t = &p->map.t[i];
        if ((st = check_readable(src, p, t, err))) goto fail;
        qf_plan_entry *e = &p->e[p->n];
        *e = (qf_plan_entry){.spec = t, .role = t->role, .layer = t->layer, .n_dims = t->n_dims,
                             .ffn_down_index = ffn_down_index(&p->map, i), .predicted_kld = NAN};
        snprintf(e->name, sizeof e->name, "%s", t->name);
        memcpy(e->ne, t->ne, sizeof e->ne);
        if ((st = finish_entry(src, p, e, hp, opts, err))) goto fail;
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
    return p->recipe_file_type ? p->recipe_file_type : qf_qtype_get(p->weight_type)->file_type;
}
