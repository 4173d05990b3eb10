/*
 * tensor_map.c — the GGUF tensors a model consists of, where their data comes from, and the checks
 * that the source holds exactly them (arch.h).
 *
 * One description serves both directions: expected_ne() gives every role's GGUF shape from the
 * hyper-parameters and required_roles() the roles each layer kind needs, so an HF checkpoint being
 * converted and a GGUF file being loaded are held to the same rules (llama.cpp's loader applies the
 * same ones: exact shapes, no missing and no extra tensors).
 */
#include "formats/arch.h"

/* ---- shapes ------------------------------------------------------------------------------------ */

static void set_ne(uint64_t ne[4], uint32_t *n_dims, uint32_t n, uint64_t a, uint64_t b, uint64_t c) {
    ne[0] = a; ne[1] = b; ne[2] = c; ne[3] = 1;
    *n_dims = n;
}

/* The GGUF shape (ne order) of role in layer; false for roles this model does not have. */
static bool expected_ne(const qf_hparams *hp, qf_role role, int layer, uint64_t ne[4], uint32_t *nd) {
    uint64_t E = hp->n_embd, V = hp->n_vocab, H = hp->n_head, hd = hp->head_dim, kv = (uint64_t)hp->n_head_kv * hd;
    uint64_t X = hp->n_expert, Fx = hp->n_ff_exp, Fs = hp->n_ff_shexp;
    uint64_t qk = (uint64_t)qf_attn_dk(hp), vd = qf_attn_dv(hp);
    bool mla = hp->arch->attn == QF_ATTN_MLA, moe = layer >= 0 && qf_layer_is_moe(hp, layer);
    switch (role) {
    case QF_ROLE_TOKEN_EMBD: case QF_ROLE_OUTPUT: set_ne(ne, nd, 2, E, V, 1); return true;
    case QF_ROLE_OUTPUT_NORM: case QF_ROLE_ATTN_NORM: case QF_ROLE_FFN_NORM: set_ne(ne, nd, 1, E, 1, 1); return true;
    case QF_ROLE_ROPE_FREQS: set_ne(ne, nd, 1, hp->n_rot / 2, 1, 1); return !mla;
    case QF_ROLE_ATTN_Q: set_ne(ne, nd, 2, E, H * qk, 1); return !mla || hp->q_lora_rank == 0;
    case QF_ROLE_ATTN_OUT: set_ne(ne, nd, 2, H * vd, E, 1); return true;
    case QF_ROLE_ATTN_K: case QF_ROLE_ATTN_V: set_ne(ne, nd, 2, E, kv, 1); return !mla;
    case QF_ROLE_ATTN_Q_BIAS: set_ne(ne, nd, 1, H * hd, 1, 1); return hp->arch->qkv_bias;
    case QF_ROLE_ATTN_K_BIAS: case QF_ROLE_ATTN_V_BIAS: set_ne(ne, nd, 1, kv, 1, 1); return hp->arch->qkv_bias;
    case QF_ROLE_ATTN_Q_NORM: case QF_ROLE_ATTN_K_NORM: set_ne(ne, nd, 1, hd, 1, 1); return hp->arch->qk_norm;
    case QF_ROLE_ATTN_Q_A: set_ne(ne, nd, 2, E, hp->q_lora_rank, 1); return mla && hp->q_lora_rank;
    case QF_ROLE_ATTN_Q_A_NORM: set_ne(ne, nd, 1, hp->q_lora_rank, 1, 1); return mla && hp->q_lora_rank;
    case QF_ROLE_ATTN_Q_B: set_ne(ne, nd, 2, hp->q_lora_rank, H * qk, 1); return mla && hp->q_lora_rank;
    case QF_ROLE_ATTN_KV_A_MQA: set_ne(ne, nd, 2, E, (uint64_t)hp->kv_lora_rank + hp->qk_rope_dim, 1); return mla;
    case QF_ROLE_ATTN_KV_A_NORM: set_ne(ne, nd, 1, hp->kv_lora_rank, 1, 1); return mla;
    case QF_ROLE_ATTN_K_B: set_ne(ne, nd, 3, hp->qk_nope_dim, hp->kv_lora_rank, H); return mla;
    case QF_ROLE_ATTN_V_B: set_ne(ne, nd, 3, hp->kv_lora_rank, vd, H); return mla;
    case QF_ROLE_ATTN_KV_B: set_ne(ne, nd, 2, hp->kv_lora_rank, H * (hp->qk_nope_dim + vd), 1); return mla;
    case QF_ROLE_FFN_GATE: case QF_ROLE_FFN_UP: set_ne(ne, nd, 2, E, hp->n_ff, 1); return !moe;
    case QF_ROLE_FFN_DOWN: set_ne(ne, nd, 2, hp->n_ff, E, 1); return !moe;
    case QF_ROLE_FFN_GATE_INP: set_ne(ne, nd, 2, E, X, 1); return moe;
    case QF_ROLE_FFN_EXP_PROBS_B: set_ne(ne, nd, 1, X, 1, 1); return moe && hp->expert_bias;
    case QF_ROLE_FFN_GATE_EXPS: case QF_ROLE_FFN_UP_EXPS: set_ne(ne, nd, 3, E, Fx, X); return moe;
    case QF_ROLE_FFN_DOWN_EXPS: set_ne(ne, nd, 3, Fx, E, X); return moe;
    case QF_ROLE_FFN_GATE_SHEXP: case QF_ROLE_FFN_UP_SHEXP: set_ne(ne, nd, 2, E, Fs, 1); return moe && Fs;
    case QF_ROLE_FFN_DOWN_SHEXP: set_ne(ne, nd, 2, Fs, E, 1); return moe && Fs;
    /* HF stores it as [1, E]; llama.cpp asks for {E} and compares ne padded with ones */
    case QF_ROLE_FFN_GATE_INP_SHEXP: set_ne(ne, nd, 2, E, 1, 1); return moe && hp->arch->shexp_gate;
    default: return false;
    }
}

/* Roles a layer needs (all of them required: optional tensors are not part of any model here). */
static size_t required_roles(const qf_hparams *hp, int layer, qf_role *out) {
    size_t n = 0;
    for (int r = QF_ROLE_ATTN_NORM; r < QF_ROLE_COUNT; r++) {
        uint64_t ne[4];
        uint32_t nd;
        /* the unsplit kv_b is an alternative to k_b + v_b in old GGUF files, never required */
        if (r != QF_ROLE_ATTN_KV_B && expected_ne(hp, (qf_role)r, layer, ne, &nd)) out[n++] = (qf_role)r;
    }
    return n;
}

static void fmt_ne(const uint64_t *ne, uint32_t n, char *out, size_t len) {
    size_t k = 0;
    out[0] = '\0';
    for (uint32_t d = 0; d < n && k < len; d++) k += (size_t)snprintf(out + k, len - k, "%s%llu", d ? " x " : "", (unsigned long long)ne[d]);
}

/* ne equal once both are padded with ones (how llama.cpp compares shapes). */
static bool same_ne(const uint64_t *a, uint32_t na, const uint64_t *b, uint32_t nb) {
    for (uint32_t d = 0; d < 4; d++)
        if ((d < na ? a[d] : 1) != (d < nb ? b[d] : 1)) return false;
    return true;
}

/* ---- building the map --------------------------------------------------------------------------- */

typedef struct builder {
    const qf_hparams *hp;
    const char *label;
    qf_tensor_map *map;
    size_t cap, src_cap;
    long *spec_of;        /* (layer + 1) * QF_ROLE_COUNT + role -> spec index, or -1 */
    qf_error *err;
} builder;

static size_t slot(qf_role role, int layer) { return (size_t)(layer + 1) * QF_ROLE_COUNT + (size_t)role; }

static qf_status add_spec(builder *b, qf_role role, int layer, size_t n_src, qf_tensor_spec **out) {
    qf_tensor_map *m = b->map;
    long *have = &b->spec_of[slot(role, layer)];
    char name[96];
    qf_arch_tensor_name(role, layer, name, sizeof name);
    if (*have >= 0)
        return qf_fail(b->err, QF_E_INPUT, "%s: two tensors give GGUF '%s'", b->label, name);
    if ((m->n == b->cap || m->n_src_refs + n_src > b->src_cap)) {
        size_t cap = b->cap * 2 + 16, src_cap = (b->src_cap + n_src) * 2 + 16;
        qf_tensor_spec *t = realloc(m->t, cap * sizeof *t);
        if (t) m->t = t;
        size_t *s = realloc(m->src, src_cap * sizeof *s);
        if (s) m->src = s;
        if (!t || !s) return qf_fail(b->err, QF_E_NOMEM, "out of memory for the tensor map");
        b->cap = cap;
        b->src_cap = src_cap;
    }
    qf_tensor_spec *e = &m->t[m->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->role = role;
    e->layer = layer;
    e->first_src = m->n_src_refs;
    e->n_src = n_src;
    for (size_t i = 0; i < n_src; i++) m->src[m->n_src_refs + i] = SIZE_MAX; /* filled as found */
    m->n_src_refs += n_src;
    *have = (long)m->n++;
    *out = e;
    return QF_OK;
}

static qf_tensor_spec *spec_at(const builder *b, qf_role role, int layer) {
    long i = b->spec_of[slot(role, layer)];
    return i < 0 ? NULL : &b->map->t[i];
}

static qf_status check_layer_ok(const builder *b, const qf_tensor_shape *ts, qf_role role, int layer) {
    uint64_t ne[4];
    uint32_t nd;
    if (expected_ne(b->hp, role, layer, ne, &nd) || role == QF_ROLE_ATTN_KV_B) return QF_OK;
    const char *why = layer >= 0 && qf_layer_is_moe(b->hp, layer) ? "is a mixture-of-experts layer"
                      : layer >= 0 && b->hp->arch->moe && b->hp->n_expert ? "is a dense layer (first_k_dense_replace)"
                                                                           : "does not use it";
    return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' (GGUF %s) does not belong to this configuration: layer %d %s",
                   b->label, ts->name, qf_role_name(role), layer, why);
}

/* ---- HF names ------------------------------------------------------------------------------------ */

/* A per-layer pattern against a name suffix; "{E}" matches a decimal expert index without a leading
 * zero. *expert = -1 for patterns without one. */
static bool pattern_match(const char *pat, const char *s, long *expert) {
    *expert = -1;
    const char *e = strstr(pat, "{E}");
    if (!e) return strcmp(pat, s) == 0;
    size_t pre = (size_t)(e - pat);
    if (strncmp(pat, s, pre) != 0) return false;
    const char *d = s + pre, *end = d;
    while (*end >= '0' && *end <= '9') end++;
    if (end == d || end - d > 9 || (*d == '0' && end - d > 1)) return false;
    if (strcmp(end, e + 3) != 0) return false;
    *expert = strtol(d, NULL, 10);
    return true;
}

static qf_status head_map(builder *b, qf_tensor_spec *e) {
    const qf_hparams *hp = b->hp;
    e->heads = hp->n_head;
    e->stride = hp->qk_nope_dim + hp->v_head_dim;
    e->offset = e->role == QF_ROLE_ATTN_K_B ? 0 : hp->qk_nope_dim;
    e->take = e->role == QF_ROLE_ATTN_K_B ? hp->qk_nope_dim : hp->v_head_dim;
    return QF_OK;
}

/* llama.cpp's rope wants pairs the HF checkpoint keeps rotate-half: permute the rotated rows of q/k
 * (for MLA only their rope part: q per head after the nope rows, kv_a after the latent rows). */
static void set_permute(const qf_hparams *hp, qf_tensor_spec *e) {
    if (hp->hf_pairs == hp->arch->gguf_pairs) return;
    bool mla = hp->arch->attn == QF_ATTN_MLA;
    e->permute_rot = hp->n_rot;
    switch (e->role) {
    case QF_ROLE_ATTN_Q: case QF_ROLE_ATTN_Q_BIAS: case QF_ROLE_ATTN_Q_B:
        e->permute_heads = hp->n_head;
        e->permute_offset = mla ? hp->qk_nope_dim : 0;
        break;
    case QF_ROLE_ATTN_K: case QF_ROLE_ATTN_K_BIAS:
        e->permute_heads = mla ? 0 : hp->n_head_kv;
        break;
    case QF_ROLE_ATTN_KV_A_MQA:
        e->permute_heads = 1;
        e->permute_offset = hp->kv_lora_rank;
        break;
    default: break;
    }
}

static qf_status place(builder *b, size_t i, const qf_tensor_shape *ts, const qf_name_rule *rule, int layer, long expert) {
    const qf_hparams *hp = b->hp;
    qf_status st = check_layer_ok(b, ts, rule->role, layer);
    if (st) return st;
    qf_tensor_spec *e = spec_at(b, rule->role, layer);
    if (rule->map == QF_MAP_STACK) {
        if (expert >= (long)hp->n_expert)
            return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' names expert %ld, but the config has %u experts", b->label,
                           ts->name, expert, hp->n_expert);
        if (!e && (st = add_spec(b, rule->role, layer, hp->n_expert, &e))) return st;
        e->map = QF_MAP_STACK;
        b->map->src[e->first_src + (size_t)expert] = i;
        return QF_OK;
    }
    if ((st = add_spec(b, rule->role, layer, 1, &e))) return st;
    e->map = rule->map;
    b->map->src[e->first_src] = i;
    set_permute(hp, e);
    return rule->map == QF_MAP_COPY ? QF_OK : head_map(b, e);
}

static qf_status map_global(builder *b, size_t i, const qf_tensor_shape *ts, bool *done) {
    static const struct { const char *hf; qf_role role; } globals[] = {
        {"model.embed_tokens.weight", QF_ROLE_TOKEN_EMBD}, {"model.norm.weight", QF_ROLE_OUTPUT_NORM},
        {"lm_head.weight", QF_ROLE_OUTPUT},
    };
    *done = false;
    for (size_t k = 0; k < QF_ARRAY_LEN(globals); k++) {
        if (strcmp(ts->name, globals[k].hf) != 0) continue;
        *done = true;
        qf_name_rule rule = {globals[k].hf, globals[k].role, QF_MAP_COPY};
        return place(b, i, ts, &rule, -1, -1);
    }
    return QF_OK;
}

static void note_skip(builder *b, const char *what) {
    qf_tensor_map *m = b->map;
    m->n_skipped++;
    if (!m->skipped_note[0]) snprintf(m->skipped_note, sizeof m->skipped_note, "%s", what);
}

static qf_status map_hf_tensor(builder *b, size_t i, const qf_tensor_shape *ts) {
    bool done;
    qf_status st = map_global(b, i, ts, &done);
    if (st || done) return st;
    unsigned long blk;
    int consumed = 0;
    if (sscanf(ts->name, "model.layers.%lu.%n", &blk, &consumed) == 1 && consumed > 0) {
        const char *suffix = ts->name + consumed;
        if (blk >= b->hp->n_layer && b->hp->arch->mtp_layers) {
            note_skip(b, "the multi-token-prediction layers (model.layers.N for N >= num_hidden_layers), as llama.cpp skips them");
            return QF_OK;
        }
        if (!strcmp(suffix, "self_attn.rotary_emb.inv_freq")) {
            note_skip(b, "rotary inv_freq buffers (recomputed at run time)");
            return QF_OK;
        }
        bool any = false;
        for (const qf_name_rule *r = b->hp->arch->layer_rules; blk < b->hp->n_layer && r->hf; r++) {
            long expert;
            if (!pattern_match(r->hf, suffix, &expert)) continue;
            any = true;
            if ((st = place(b, i, ts, r, (int)blk, expert))) return st;
        }
        if (any) return QF_OK;
    }
    return qf_fail(b->err, QF_E_UNSUPPORTED, "%s: tensor '%s' has no GGUF name in architecture '%s'", b->label, ts->name,
                   b->hp->arch->name);
}

/* ---- shapes of the mapped tensors --------------------------------------------------------------- */

/* GGUF ne of a spec from its sources' HF shapes (want: the expected ne, which stacked experts must each
 * match); false when they cannot form it, *bad naming the source at fault. */
static bool mapped_ne(const qf_tensor_map *m, const qf_tensor_spec *e, const uint64_t *want, qf_tensor_shape_fn shape_of,
                      void *ctx, uint64_t ne[4], uint32_t *nd, const qf_tensor_shape **bad) {
    /* shape_of may reuse its storage: keep the first source's shape by value */
    const qf_tensor_shape *s0 = shape_of(ctx, m->src[e->first_src]);
    uint32_t n0 = s0->n_dims;
    uint64_t sh[4];
    *bad = s0;
    if (n0 < 1 || n0 > 4) return false;
    memcpy(sh, s0->shape, n0 * sizeof *sh);
    if (e->map == QF_MAP_STACK) { /* every expert must have the shape the config gives one */
        for (size_t k = 0; k < e->n_src; k++) {
            const qf_tensor_shape *s = shape_of(ctx, m->src[e->first_src + k]);
            if (s->n_dims != 2 || s->shape[0] != want[1] || s->shape[1] != want[0]) { *bad = s; return false; }
        }
        set_ne(ne, nd, 3, want[0], want[1], e->n_src);
        return true;
    }
    if (e->map == QF_MAP_HEAD_ROWS || e->map == QF_MAP_HEAD_COLS) {
        if (n0 != 2 || sh[0] != (uint64_t)e->heads * e->stride) return false;
        if (e->map == QF_MAP_HEAD_ROWS) set_ne(ne, nd, 3, sh[1], e->take, e->heads);
        else set_ne(ne, nd, 3, e->take, sh[1], e->heads);
        return true;
    }
    *nd = n0;
    for (uint32_t d = 0; d < 4; d++) ne[d] = d < n0 ? sh[n0 - 1 - d] : 1;
    return true;
}

/* Shapes in messages as the user's files state them: HF order ([rows, cols], per expert for stacked
 * tensors) for checkpoints, ggml's ne order for GGUF files. */
static void fmt_hf_shape(const uint64_t *shape, uint32_t n, char *out, size_t len) {
    size_t k = (size_t)snprintf(out, len, "[");
    for (uint32_t d = 0; d < n && k < len; d++) k += (size_t)snprintf(out + k, len - k, "%s%llu", d ? ", " : "", (unsigned long long)shape[d]);
    if (k < len) snprintf(out + k, len - k, "]");
}

static void fmt_hf(const uint64_t *ne, uint32_t nd, qf_map_kind map, char *out, size_t len) {
    uint64_t s[4];
    uint32_t n = map == QF_MAP_STACK ? 2 : nd;
    for (uint32_t d = 0; d < n; d++) s[d] = ne[n - 1 - d];
    fmt_hf_shape(s, n, out, len);
}

static qf_status check_spec_shape(const builder *b, const qf_tensor_spec *e, const char *src_name, bool hf) {
    uint64_t want[4];
    uint32_t wn;
    expected_ne(b->hp, e->role, e->layer, want, &wn);
    if (same_ne(e->ne, e->n_dims, want, wn)) return QF_OK;
    char got_s[80], want_s[80];
    if (hf && (e->map == QF_MAP_HEAD_ROWS || e->map == QF_MAP_HEAD_COLS)) {
        /* kv_b_proj itself: its rows were checked against the heads, so the latent width is off */
        uint64_t rows = (uint64_t)e->heads * e->stride, latent = e->map == QF_MAP_HEAD_ROWS ? e->ne[0] : e->ne[1];
        snprintf(got_s, sizeof got_s, "[%llu, %llu]", (unsigned long long)rows, (unsigned long long)latent);
        snprintf(want_s, sizeof want_s, "[%llu, %u]", (unsigned long long)rows, b->hp->kv_lora_rank);
    } else if (hf) {
        fmt_hf(e->ne, e->n_dims, e->map, got_s, sizeof got_s);
        fmt_hf(want, wn, e->map, want_s, sizeof want_s);
    } else {
        fmt_ne(e->ne, e->n_dims, got_s, sizeof got_s);
        fmt_ne(want, wn, want_s, sizeof want_s);
    }
    return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s'%s has shape %s%s; %s implies %s", b->label, src_name,
                   e->map == QF_MAP_STACK ? " (an expert)" : "", hf ? "" : "(ne) ", got_s,
                   hf ? "config.json" : "the GGUF's metadata", want_s);
}

static qf_status finish_hf(builder *b, qf_tensor_shape_fn shape_of, void *ctx) {
    qf_tensor_map *m = b->map;
    for (size_t i = 0; i < m->n; i++) {
        qf_tensor_spec *e = &m->t[i];
        for (size_t k = 0; k < e->n_src; k++) {
            if (m->src[e->first_src + k] != SIZE_MAX) continue;
            return qf_fail(b->err, QF_E_INPUT, "%s: layer %d has no expert %zu for GGUF '%s' (the config has %u experts)",
                           b->label, e->layer, k, e->name, b->hp->n_expert);
        }
        const qf_tensor_shape *bad;
        uint64_t w[4];
        uint32_t wn;
        expected_ne(b->hp, e->role, e->layer, w, &wn);
        if (!mapped_ne(m, e, w, shape_of, ctx, e->ne, &e->n_dims, &bad)) {
            char got[80], want[80];
            fmt_hf_shape(bad->shape, bad->n_dims, got, sizeof got);
            if (e->map == QF_MAP_STACK) {
                fmt_hf(w, wn, e->map, want, sizeof want);
                return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' (an expert) has shape %s; config.json implies %s",
                               b->label, bad->name, got, want);
            }
            return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' has shape %s, which cannot form GGUF '%s'", b->label,
                           bad->name, got, e->name);
        }
        qf_status st = check_spec_shape(b, e, bad->name, true);
        if (st) return st;
    }
    return QF_OK;
}

/* Every role every layer needs, and the global ones. */
static qf_status check_complete(const builder *b) {
    const qf_hparams *hp = b->hp;
    qf_role roles[QF_ROLE_COUNT];
    char name[96];
    const qf_role global[] = {QF_ROLE_TOKEN_EMBD, QF_ROLE_OUTPUT_NORM};
    for (size_t r = 0; r < QF_ARRAY_LEN(global); r++) {
        if (spec_at(b, global[r], -1)) continue;
        qf_arch_tensor_name(global[r], -1, name, sizeof name);
        return qf_fail(b->err, QF_E_INPUT, "%s: the model has no tensor for GGUF '%s'", b->label, name);
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        size_t n = required_roles(hp, (int)l, roles);
        for (size_t r = 0; r < n; r++) {
            if (spec_at(b, roles[r], (int)l)) continue;
            /* an old GGUF's unsplit kv_b stands in for k_b and v_b */
            if ((roles[r] == QF_ROLE_ATTN_K_B || roles[r] == QF_ROLE_ATTN_V_B) && spec_at(b, QF_ROLE_ATTN_KV_B, (int)l)) continue;
            qf_arch_tensor_name(roles[r], (int)l, name, sizeof name);
            return qf_fail(b->err, QF_E_INPUT, "%s: layer %u has no tensor for GGUF '%s'%s", b->label, l, name,
                           qf_role_is_experts(roles[r]) ? " (its experts)" : "");
        }
    }
    return QF_OK;
}

static qf_status builder_init(builder *b, const qf_hparams *hp, const char *label, qf_tensor_map *map, qf_error *err) {
    memset(map, 0, sizeof *map);
    *b = (builder){.hp = hp, .label = label, .map = map, .err = err};
    size_t n_slots = slot(0, (int)hp->n_layer);
    b->spec_of = qf_malloc_n(n_slots, sizeof *b->spec_of);
    if (!b->spec_of) return qf_fail(err, QF_E_NOMEM, "out of memory for the tensor map");
    for (size_t i = 0; i < n_slots; i++) b->spec_of[i] = -1;
    return QF_OK;
}

static qf_status builder_done(builder *b, qf_status st) {
    free(b->spec_of);
    if (st) qf_tensor_map_free(b->map);
    return st;
}

qf_status qf_tensor_map_hf(const qf_hparams *hp, size_t n, qf_tensor_shape_fn shape_of, void *ctx, const char *label,
                           qf_tensor_map *map, qf_error *err) {
    builder b;
    qf_status st = builder_init(&b, hp, label, map, err);
    for (size_t i = 0; !st && i < n; i++) st = map_hf_tensor(&b, i, shape_of(ctx, i));
    if (!st) st = finish_hf(&b, shape_of, ctx);
    if (!st) st = check_complete(&b);
    return builder_done(&b, st);
}

/* ---- GGUF files --------------------------------------------------------------------------------- */

static qf_status map_gguf_tensor(builder *b, size_t i, const qf_tensor_shape *ts) {
    qf_role role;
    int layer;
    qf_arch_role_from_gguf(ts->name, &role, &layer);
    if (role == QF_ROLE_OTHER)
        return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' is not part of a %s model", b->label, ts->name, b->hp->arch->name);
    if (layer >= (int)b->hp->n_layer)
        return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' is in layer %d, but %s.block_count is %u", b->label, ts->name,
                       layer, b->hp->arch->name, b->hp->n_layer);
    qf_status st = check_layer_ok(b, ts, role, layer);
    qf_tensor_spec *e;
    if (!st) st = add_spec(b, role, layer, 1, &e);
    if (st) return st;
    b->map->src[e->first_src] = i;
    if (ts->n_dims < 1 || ts->n_dims > 4)
        return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' has %u dimensions", b->label, ts->name, ts->n_dims);
    e->n_dims = ts->n_dims;
    for (uint32_t d = 0; d < 4; d++) e->ne[d] = d < ts->n_dims ? ts->shape[ts->n_dims - 1 - d] : 1;
    return check_spec_shape(b, e, ts->name, false);
}

qf_status qf_tensor_map_gguf(const qf_hparams *hp, size_t n, qf_tensor_shape_fn shape_of, void *ctx, const char *label,
                             qf_tensor_map *map, qf_error *err) {
    builder b;
    qf_status st = builder_init(&b, hp, label, map, err);
    for (size_t i = 0; !st && i < n; i++) st = map_gguf_tensor(&b, i, shape_of(ctx, i));
    if (!st) st = check_complete(&b);
    return builder_done(&b, st);
}

void qf_tensor_map_free(qf_tensor_map *map) {
    free(map->t);
    free(map->src);
    memset(map, 0, sizeof *map);
}

const qf_tensor_spec *qf_tensor_map_find(const qf_tensor_map *map, qf_role role, int layer) {
    for (size_t i = 0; i < map->n; i++)
        if (map->t[i].role == role && map->t[i].layer == layer) return &map->t[i];
    return NULL;
}

/* ---- the inverse: the HF tensors of a configuration ------------------------------------------------ */

/* The first naming rule of the row that produces role (the name an HF checkpoint uses for it). */
static const qf_name_rule *rule_for(const qf_arch *a, qf_role role) {
    for (const qf_name_rule *r = a->layer_rules; r->hf; r++)
        if (r->role == role) return r;
    return NULL;
}

/* The tensors of one layer in the order the family's checkpoints store them (its rule order). */
static void emit_layer(const qf_hparams *hp, int layer, int name_layer, qf_hf_tensor_fn fn, void *ctx) {
    qf_role roles[QF_ROLE_COUNT];
    size_t n = required_roles(hp, layer, roles);
    for (const qf_name_rule *r = hp->arch->layer_rules; r->hf; r++) {
        bool needed = false;
        for (size_t i = 0; i < n && !needed; i++) needed = roles[i] == r->role;
        /* kv_b_proj is written once, for its k half */
        if (!needed || rule_for(hp->arch, r->role) != r || r->map == QF_MAP_HEAD_ROWS) continue;
        uint64_t ne[4], shape[2];
        uint32_t nd;
        char name[160], pat[128];
        expected_ne(hp, r->role, layer, ne, &nd);
        if (r->map == QF_MAP_HEAD_COLS) {
            shape[0] = (uint64_t)hp->n_head * (hp->qk_nope_dim + hp->v_head_dim);
            shape[1] = hp->kv_lora_rank;
            snprintf(name, sizeof name, "model.layers.%d.%s", name_layer, r->hf);
            fn(ctx, name, 2, shape, r->role);
            continue;
        }
        const char *e = strstr(r->hf, "{E}");
        uint32_t n_expert = e ? hp->n_expert : 1;
        for (uint32_t x = 0; x < n_expert; x++) {
            if (e) snprintf(pat, sizeof pat, "%.*s%u%s", (int)(e - r->hf), r->hf, x, e + 3);
            else snprintf(pat, sizeof pat, "%s", r->hf);
            snprintf(name, sizeof name, "model.layers.%d.%s", name_layer, pat);
            uint32_t hn = e ? 2 : nd;
            for (uint32_t d = 0; d < hn; d++) shape[d] = ne[hn - 1 - d];
            fn(ctx, name, hn, shape, r->role);
        }
    }
}

void qf_arch_hf_tensors(const qf_hparams *hp, qf_hf_tensor_fn fn, void *ctx) {
    uint64_t embd[2] = {hp->n_vocab, hp->n_embd}, norm[1] = {hp->n_embd};
    fn(ctx, "model.embed_tokens.weight", 2, embd, QF_ROLE_TOKEN_EMBD);
    for (uint32_t l = 0; l < hp->n_layer; l++) emit_layer(hp, (int)l, (int)l, fn, ctx);
    /* multi-token-prediction blocks follow the last layer as DeepSeek's release numbers them; each is
     * laid out as the last layer (the converter skips them whole) */
    for (uint32_t k = 0; k < hp->n_mtp_layers; k++) emit_layer(hp, (int)hp->n_layer - 1, (int)(hp->n_layer + k), fn, ctx);
    fn(ctx, "model.norm.weight", 1, norm, QF_ROLE_OUTPUT_NORM);
    if (!hp->tied_embeddings) fn(ctx, "lm_head.weight", 2, embd, QF_ROLE_OUTPUT);
}
