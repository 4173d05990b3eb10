/* Which calibration data every tensor of a plan is quantized with, and what that amounted to (plan.h). */
#include "quantize/plan.h"
#include "kernels/qtypes.h"

static const char *calib_name(qf_calib c) {
    switch (c) {
    case QF_CALIB_RTN: return "rtn";
    case QF_CALIB_WEIGHTED: return "weighted";
    case QF_CALIB_GPTQ: return "gptq";
    default: return "none";
    }
}

/* The Hessian of e's input, if the set has one and GPTQ applies: a 2-D layer weight of a block type. */
static qf_status find_hessian(const qf_plan_entry *e, const qf_qtype_traits *tt, const qf_hessian_set *hs,
                              const char *label, const qf_hessian **out, bool *able, qf_error *err) {
    char key[96];
    *out = NULL;
    *able = tt->blck >= 2 && e->n_dims == 2 && qf_hessian_key(e->role, e->layer, key, sizeof key);
    const qf_hessian *h = *able && hs ? qf_hessian_find(hs, key) : NULL;
    if (h && h->n != e->ne[0])
        return qf_fail(err, QF_E_INPUT, "%s: Hessian '%s' is %u x %u, but tensor '%s' reads %llu inputs: the Hessians "
                       "were made for another model", label, key, h->n, h->n, e->name, (unsigned long long)e->ne[0]);
    *out = h;
    return QF_OK;
}

static qf_status find_imatrix(const qf_plan_entry *e, const qf_imatrix *im, const char *label,
                              const qf_imatrix_entry **out, qf_error *err) {
    const qf_imatrix_entry *ie = im ? qf_imatrix_find(im, e->name) : NULL;
    uint64_t n_mat = e->n_dims == 3 ? e->ne[2] : 1;
    /* llama-imatrix writes a 3-D tensor whose matrices all saw the same tokens (MLA's k_b / v_b) as one
     * matrix of all their columns: the same numbers in the same order */
    bool flat = ie && ie->n_mat == 1 && n_mat > 1 && (uint64_t)ie->n_cols == e->ne[0] * n_mat;
    if (ie && !flat && (ie->n_cols != e->ne[0] || ie->n_mat != n_mat))
        return qf_fail(err, QF_E_INPUT, "%s: imatrix entry '%s' is %u columns x %u matrices; the tensor needs %llu x %llu: "
                       "the imatrix was made for another model", label, e->name, ie->n_cols, ie->n_mat,
                       (unsigned long long)e->ne[0], (unsigned long long)n_mat);
    *out = ie;
    return QF_OK;
}

/* A set that reached none of the `applicable` tensors it could apply to: name what it holds, so the
 * mismatch is visible. */
static qf_status matches_nothing(const char *what, const char *label, const char *example, size_t applicable,
                                 qf_error *err) {
    if (!applicable)
        return qf_fail(err, QF_E_USAGE, "%s: %s given, but this plan quantizes no tensor it applies to", label, what);
    return qf_fail(err, QF_E_INPUT, "%s: this %s matches none of the %zu tensors it could apply to (it holds '%s', ...): "
                   "it was made for another model", label, what, applicable, example ? example : "nothing");
}

qf_status qf_plan_bind_calibration(qf_plan *p, const qf_imatrix *im, const char *im_label, const qf_hessian_set *hs,
                                   const char *hs_label, qf_calib_coverage *cov, qf_error *err) {
    memset(cov, 0, sizeof *cov);
    for (size_t i = 0; i < p->n; i++) {
        qf_plan_entry *e = &p->e[i];
        const qf_qtype_traits *tt = qf_qtype_get(e->type);
        e->calib = QF_CALIB_NONE;
        e->imx = NULL;
        e->hess = NULL;
        if (!tt->quantized || e->fp8_pass) continue; /* stored as is: nothing to calibrate */
        bool able;
        qf_status st = find_hessian(e, tt, hs, hs_label, &e->hess, &able, err);
        if (!st) st = find_imatrix(e, im, im_label, &e->imx, err);
        if (st) return st;
        e->calib = e->hess ? QF_CALIB_GPTQ : e->imx ? QF_CALIB_WEIGHTED : QF_CALIB_RTN;
        cov->quantized++;
        cov->layer_quantized += e->layer >= 0;
        cov->imatrix_layer += e->layer >= 0 && e->imx;
        cov->imatrix_any += e->imx != NULL;
        cov->gptq_able += able;
        cov->gptq += e->hess != NULL;
    }
    if (im && !cov->imatrix_any)
        return matches_nothing("imatrix", im_label, im->n ? im->e[0].name : NULL, cov->quantized, err);
    if (hs && !cov->gptq) return matches_nothing("Hessian file", hs_label, hs->n ? hs->e[0].key : NULL, cov->gptq_able, err);
    return QF_OK;
}

/* "blk.3.ffn_down.weight" -> "ffn_down": a tensor's class, the same in every layer. */
static void tensor_class(const char *name, char *out, size_t n) {
    const char *s = name;
    if (!strncmp(s, "blk.", 4)) {
        const char *dot = strchr(s + 4, '.');
        if (dot) s = dot + 1;
    }
    size_t len = strlen(s);
    if (len > 7 && !strcmp(s + len - 7, ".weight")) len -= 7;
    snprintf(out, n, "%.*s", (int)len, s);
}

qf_status qf_plan_methods(const qf_plan *p, char ***lines, size_t *n, qf_error *err) {
    *lines = NULL;
    *n = 0;
    /* classes in plan order, each with a count per calibration kind */
    typedef struct { char name[96]; size_t count[QF_CALIB_GPTQ + 1]; } cls;
    cls *c = qf_calloc_n(p->n, sizeof *c);
    if (!c) return qf_fail(err, QF_E_NOMEM, "out of memory");
    size_t nc = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->e[i].calib == QF_CALIB_NONE) continue;
        char name[96];
        tensor_class(p->e[i].name, name, sizeof name);
        size_t k = 0;
        while (k < nc && strcmp(c[k].name, name)) k++;
        if (k == nc) snprintf(c[nc++].name, sizeof c->name, "%s", name);
        c[k].count[p->e[i].calib]++;
    }
    qf_status st = QF_OK;
    char **out = qf_calloc_n(nc, sizeof *out);
    if (!out) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t k = 0; !st && k < nc; k++) {
        char line[256];
        size_t used = (size_t)snprintf(line, sizeof line, "%s:", c[k].name);
        const char *sep = " ";
        for (int m = QF_CALIB_GPTQ; m >= QF_CALIB_RTN; m--) { /* the strongest method first */
            if (!c[k].count[m] || used >= sizeof line) continue;
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s %zu", sep, calib_name((qf_calib)m), c[k].count[m]);
            sep = ", ";
        }
        if (!(out[k] = strdup(line))) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    }
    free(c);
    if (st) { qf_plan_methods_free(out, nc); return st; }
    *lines = out;
    *n = nc;
    return QF_OK;
}

void qf_plan_methods_free(char **lines, size_t n) {
    for (size_t i = 0; lines && i < n; i++) free(lines[i]);
    free(lines);
}
