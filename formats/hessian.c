/* GGUF container of GPTQ Hessians (hessian.h). */
#include "formats/hessian.h"
#include "kernels/qtypes.h"

#include <math.h>

bool qf_hessian_key(qf_role role, int layer, char *buf, size_t n) {
    const char *in;
    switch (role) {
    case QF_ROLE_ATTN_Q: case QF_ROLE_ATTN_K: case QF_ROLE_ATTN_V: in = "attn_in"; break;
    case QF_ROLE_ATTN_OUT: in = "attn_out_in"; break;
    case QF_ROLE_FFN_GATE: case QF_ROLE_FFN_UP: in = "ffn_in"; break;
    case QF_ROLE_FFN_DOWN: in = "ffn_down_in"; break;
    default: return false;
    }
    snprintf(buf, n, "blk.%d.%s", layer, in);
    return layer >= 0;
}

qf_hessian *qf_hessian_add(qf_hessian_set *s, const char *key, uint32_t n) {
    qf_hessian *grown = realloc(s->e, (s->n + 1) * sizeof *s->e);
    if (!grown) return NULL;
    s->e = grown;
    qf_hessian *h = &s->e[s->n];
    *h = (qf_hessian){.key = strdup(key), .n = n, .h = qf_calloc_n((uint64_t)n * n, sizeof(double))};
    if (!h->key || !h->h) { free(h->key); free(h->h); return NULL; }
    s->n++;
    return h;
}

const qf_hessian *qf_hessian_find(const qf_hessian_set *s, const char *key) {
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->e[i].key, key)) return &s->e[i];
    return NULL;
}

void qf_hessian_free(qf_hessian_set *s) {
    for (size_t i = 0; i < s->n; i++) { free(s->e[i].key); free(s->e[i].h); }
    free(s->e);
    memset(s, 0, sizeof *s);
}

qf_status qf_hessian_save(const char *path, const qf_hessian_set *s, qf_error *err) {
    qf_gguf_writer *w;
    qf_status st = qf_gguf_writer_open(path, &w, err);
    if (st) return st;
    if ((st = qf_gguf_set_str(w, "general.type", "qforge-hessian", err))) goto fail;
    for (size_t i = 0; i < s->n; i++) {
        char name[300];
        uint64_t ne_h[2] = {s->e[i].n, s->e[i].n}, ne_c[1] = {1};
        snprintf(name, sizeof name, "%s.hessian", s->e[i].key);
        if ((st = qf_gguf_add_tensor(w, name, QF_T_F32, 2, ne_h, err))) goto fail;
        snprintf(name, sizeof name, "%s.count", s->e[i].key);
        if ((st = qf_gguf_add_tensor(w, name, QF_T_F32, 1, ne_c, err))) goto fail;
    }
    if ((st = qf_gguf_begin_data(w, err))) goto fail;
    for (size_t i = 0; i < s->n; i++) {
        const qf_hessian *h = &s->e[i];
        float row[4096];
        for (uint64_t k = 0; k < (uint64_t)h->n * h->n; k += QF_ARRAY_LEN(row)) {
            uint64_t m = QF_MIN((uint64_t)QF_ARRAY_LEN(row), (uint64_t)h->n * h->n - k);
            for (uint64_t j = 0; j < m; j++) row[j] = (float)h->h[k + j];
            if ((st = qf_gguf_write_tensor_data(w, row, m * sizeof(float), err))) goto fail;
        }
        float c = (float)h->count;
        if ((st = qf_gguf_write_tensor_data(w, &c, sizeof c, err))) goto fail;
    }
    return qf_gguf_writer_finish(w, err);
fail:
    qf_gguf_writer_abort(w);
    return st;
}

static qf_status load_one(const char *path, const qf_gguf *g, const qf_gguf_tensor *t, qf_hessian_set *s, qf_error *err) {
    char key[256], cname[300];
    size_t kl = strlen(t->name) - strlen(".hessian");
    if (kl >= sizeof key) return qf_fail(err, QF_E_INPUT, "%s: tensor name '%s' too long", path, t->name);
    memcpy(key, t->name, kl);
    key[kl] = '\0';
    snprintf(cname, sizeof cname, "%s.count", key);
    const qf_gguf_tensor *c = qf_gguf_find_tensor(g, cname);
    if (t->type != QF_T_F32 || t->n_dims != 2 || t->ne[0] != t->ne[1] || t->ne[0] > 65536 || !c || c->type != QF_T_F32)
        return qf_fail(err, QF_E_INPUT, "%s: '%s' must be F32 [n x n] with an F32 '%s'", path, t->name, cname);
    qf_hessian *h = qf_hessian_add(s, key, (uint32_t)t->ne[0]);
    if (!h) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for '%s'", path, t->name);
    for (uint64_t i = 0; i < (uint64_t)h->n * h->n; i++) {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        if (!isfinite(v)) return qf_fail(err, QF_E_INPUT, "%s: '%s' holds a non-finite value", path, t->name);
        h->h[i] = v;
    }
    float cnt;
    memcpy(&cnt, c->data, 4);
    h->count = cnt;
    return QF_OK;
}

qf_status qf_hessian_load(const char *path, qf_hessian_set *s, qf_error *err) {
    memset(s, 0, sizeof *s);
    qf_gguf *g;
    qf_status st = qf_gguf_open(path, &g, err);
    if (st) return st;
    const char *type = NULL;
    if (qf_gguf_get_str(g, "general.type", &type, NULL) != QF_OK || strcmp(type, "qforge-hessian") != 0)
        st = qf_fail(err, QF_E_INPUT, "%s: not a Hessian file (general.type is not \"qforge-hessian\"; make one with qforge calibrate --hessian)", path);
    for (size_t i = 0; !st && i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        size_t l = strlen(t->name);
        if (l > 8 && !strcmp(t->name + l - 8, ".hessian")) st = load_one(path, g, t, s, err);
    }
    qf_gguf_close(g);
    if (st) qf_hessian_free(s);
    return st;
}
