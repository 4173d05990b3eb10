/* The quant-type map of a GGUF: layers x tensor roles, each tensor's type (report_svg.h). */
#include "verify/report_svg.h"
#include "formats/gguf.h"
#include "kernels/qtypes.h"

#include <stdlib.h>
#include <string.h>

/* Columns in the order a reader follows a layer: attention (llama.cpp's plain, then MLA's), then the
 * feed-forward (router, dense, routed experts, shared experts). Roles not listed follow, as found. */
static const char *const known_roles[] = {
    "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output",
    "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_k_b", "attn_v_b",
    "ffn_gate_inp", "ffn_gate", "ffn_up", "ffn_down",
    "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_inp_shexp",
    "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
};
#define N_KNOWN (sizeof known_roles / sizeof known_roles[0])

/* "blk.12.attn_q.weight" -> layer 12, role "attn_q" (malloc'd); other names -> layer -1 and the name
 * without ".weight". NULL when out of memory. */
static char *split_name(const char *name, int64_t *layer) {
    const char *role = name;
    *layer = -1;
    if (!strncmp(name, "blk.", 4) && name[4] >= '0' && name[4] <= '9') {
        char *end;
        unsigned long long n = strtoull(name + 4, &end, 10);
        if (*end == '.' && end[1] && n < (1ull << 31)) { *layer = (int64_t)n; role = end + 1; }
    }
    size_t len = strlen(role);
    if (len > 7 && !strcmp(role + len - 7, ".weight")) len -= 7;
    char *r = malloc(len + 1);
    if (r) { memcpy(r, role, len); r[len] = '\0'; }
    return r;
}

static size_t find_str(char **v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return n;
}

static int known_rank(const char *role) {
    for (size_t i = 0; i < N_KNOWN; i++)
        if (!strcmp(known_roles[i], role)) return (int)i;
    return (int)N_KNOWN;
}

static qf_status add_type(qf_quant_map *m, const qf_gguf_tensor *t, size_t *idx, qf_error *err) {
    const qf_qtype_traits *tr = qf_qtype_get(t->type);
    char name[24];
    if (tr) snprintf(name, sizeof name, "%s", tr->name);
    else snprintf(name, sizeof name, "type %u", t->type);
    size_t i = 0;
    while (i < m->n_types && strcmp(m->types[i].name, name)) i++;
    if (i == m->n_types) {
        qf_map_type *nt = realloc(m->types, (m->n_types + 1) * sizeof *nt);
        if (!nt) return qf_fail(err, QF_E_NOMEM, "out of memory for the quant map");
        m->types = nt;
        m->types[m->n_types++] = (qf_map_type){0};
        memcpy(m->types[i].name, name, sizeof name);
    }
    uint64_t elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (!qf_mul_ok(elems, t->ne[d], &elems)) return qf_fail(err, QF_E_INPUT, "tensor '%s': element count overflows", t->name);
    if (!qf_add_ok(m->types[i].elems, elems, &m->types[i].elems) || !qf_add_ok(m->types[i].bytes, t->nbytes, &m->types[i].bytes))
        return qf_fail(err, QF_E_INPUT, "tensor '%s': sizes overflow", t->name);
    *idx = i;
    return QF_OK;
}

static qf_status add_role(qf_quant_map *m, char *role, size_t *col, qf_error *err) {
    *col = find_str(m->roles, m->n_roles, role);
    if (*col < m->n_roles) { free(role); return QF_OK; }
    char **nr = realloc(m->roles, (m->n_roles + 1) * sizeof *nr);
    if (!nr) { free(role); return qf_fail(err, QF_E_NOMEM, "out of memory for the quant map"); }
    m->roles = nr;
    m->roles[m->n_roles++] = role;
    return QF_OK;
}

static qf_status add_tensor(qf_quant_map *m, const qf_gguf_tensor *t, qf_error *err) {
    int64_t layer;
    char *role = split_name(t->name, &layer);
    char *name = strdup(t->name);
    qf_map_cell *nc = role && name ? realloc(m->cells, (m->n_cells + 1) * sizeof *nc) : NULL;
    if (!nc) { free(role); free(name); return qf_fail(err, QF_E_NOMEM, "out of memory for the quant map"); }
    m->cells = nc;
    qf_map_cell *c = &m->cells[m->n_cells++];
    *c = (qf_map_cell){.layer = layer, .name = name};
    qf_status st = add_type(m, t, &c->type, err);
    if (st) { free(role); return st; }
    if (layer < 0) { free(role); return QF_OK; }
    if (layer + 1 > m->n_layers) m->n_layers = layer + 1;
    return add_role(m, role, &c->col, err);
}

/* Known roles first in their fixed order, the others keep the order they appeared in (a stable
 * insertion sort: a handful of columns). Cells follow their column. */
static void order_roles(qf_quant_map *m) {
    size_t *perm = qf_malloc_n(m->n_roles, sizeof *perm), *inv = qf_malloc_n(m->n_roles, sizeof *inv);
    if (!perm || !inv) { free(perm); free(inv); return; } /* unsorted still shows every cell */
    for (size_t i = 0; i < m->n_roles; i++) perm[i] = i;
    for (size_t i = 1; i < m->n_roles; i++)
        for (size_t j = i; j > 0 && known_rank(m->roles[perm[j]]) < known_rank(m->roles[perm[j - 1]]); j--) {
            size_t t = perm[j]; perm[j] = perm[j - 1]; perm[j - 1] = t;
        }
    char **sorted = qf_malloc_n(m->n_roles, sizeof *sorted);
    if (sorted) {
        for (size_t i = 0; i < m->n_roles; i++) { sorted[i] = m->roles[perm[i]]; inv[perm[i]] = i; }
        memcpy(m->roles, sorted, m->n_roles * sizeof *sorted);
        for (size_t i = 0; i < m->n_cells; i++)
            if (m->cells[i].layer >= 0) m->cells[i].col = inv[m->cells[i].col];
        free(sorted);
    }
    free(perm);
    free(inv);
}

static double type_bpw(const qf_map_type *t) { return t->elems ? 8.0 * (double)t->bytes / (double)t->elems : 0; }

/* Types by bits per weight, largest first (the legend's order), ties by name; cells re-pointed. */
static void order_types(qf_quant_map *m) {
    size_t perm[64], inv[64];
    if (m->n_types > 64) return; /* qtypes has fewer rows; keep the file order otherwise */
    for (size_t i = 0; i < m->n_types; i++) perm[i] = i;
    for (size_t i = 1; i < m->n_types; i++)
        for (size_t j = i; j > 0; j--) {
            const qf_map_type *a = &m->types[perm[j]], *b = &m->types[perm[j - 1]];
            double da = type_bpw(a), db = type_bpw(b);
            if (!(da > db || (da == db && strcmp(a->name, b->name) < 0))) break;
            size_t t = perm[j]; perm[j] = perm[j - 1]; perm[j - 1] = t;
        }
    qf_map_type sorted[64];
    for (size_t i = 0; i < m->n_types; i++) { sorted[i] = m->types[perm[i]]; inv[perm[i]] = i; }
    memcpy(m->types, sorted, m->n_types * sizeof *sorted);
    for (size_t i = 0; i < m->n_cells; i++) m->cells[i].type = inv[m->cells[i].type];
}

qf_status qf_quant_map_build(const qf_gguf *g, qf_quant_map *m, qf_error *err) {
    *m = (qf_quant_map){0};
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (t->n_dims < 2) continue;
        qf_status st = add_tensor(m, t, err);
        if (st) { qf_quant_map_free(m); return st; }
    }
    if (!m->n_cells) return qf_fail(err, QF_E_INPUT, "%s: no weight tensor (none of two or more dimensions) to map", qf_gguf_label(g));
    order_roles(m);
    order_types(m);
    return QF_OK;
}

void qf_quant_map_free(qf_quant_map *m) {
    for (size_t i = 0; i < m->n_roles; i++) free(m->roles[i]);
    for (size_t i = 0; i < m->n_cells; i++) free(m->cells[i].name);
    free(m->roles);
    free(m->cells);
    free(m->types);
    *m = (qf_quant_map){0};
}
