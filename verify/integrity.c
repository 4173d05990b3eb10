/*
 * integrity.c — qf_verify_integrity (qforge.h): re-hash a GGUF against the digests it carries
 * (formats/integrity.c does the hashing) and optionally check its detached signature (signature.c).
 */
#include "signature.h"

/* Copies the names of the tensors that are not as their digests describe out of the reader, which is
 * closed before we return. */
static qf_status fill_report(const qf_gguf *g, const qf_integrity_result *r, qf_integrity_report *rep, qf_error *err) {
    rep->scheme = r->scheme;
    rep->header_ok = r->header_ok;
    rep->rewritten = r->rewritten;
    rep->n_tensors = r->n_tensors;
    rep->n_parts = qf_gguf_n_parts(g);
    rep->n_missing = r->n_missing;
    rep->bytes_hashed = r->bytes_hashed;
    rep->bad = qf_calloc_n(r->n_bad, sizeof *rep->bad);
    rep->bad_verdict = qf_calloc_n(r->n_bad, sizeof *rep->bad_verdict);
    rep->bad_file = qf_calloc_n(r->n_bad, sizeof *rep->bad_file);
    if (!rep->bad || !rep->bad_verdict || !rep->bad_file) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    for (size_t i = 0; i < r->n_tensors; i++) {
        if (r->verdict[i] == QF_TENSOR_OK) continue;
        const char *name = qf_gguf_tensor_at(g, i)->name, *file = qf_gguf_label(qf_gguf_part(g, qf_gguf_tensor_part(g, i)));
        rep->bad[rep->n_bad] = qf_strndup(name, strlen(name));
        rep->bad_file[rep->n_bad] = qf_strndup(file, strlen(file));
        rep->bad_verdict[rep->n_bad++] = (qf_tensor_verdict)r->verdict[i];
        if (!rep->bad[rep->n_bad - 1] || !rep->bad_file[rep->n_bad - 1])
            return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    }
    return QF_OK;
}

/* Folds the signature outcome into the digest outcome: a definite digest mismatch stays the headline
 * (exit 1) and the signature's problem is appended; otherwise the signature's status is the result. */
static qf_status merge_sig(qf_status st, qf_status sst, const qf_error *serr, qf_error *err) {
    if (sst == QF_OK) return st;
    if (st == QF_OK) {
        if (err) *err = *serr;
        return sst;
    }
    if (err) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, "; signature: %s", serr->msg);
    }
    return st;
}

static qf_status check_signature(const qf_gguf *g, const qf_integrity_opts *o, qf_sig_state *state, qf_error *err) {
    char def_sig[4096];
    const char *sig = o->sig;
    if (!sig) {
        if (snprintf(def_sig, sizeof def_sig, "%s.sig", o->path) >= (int)sizeof def_sig)
            return qf_fail(err, QF_E_USAGE, "%s: path too long", o->path);
        sig = def_sig;
    }
    return qf_signature_check(g, sig, o->pubkey, state, err);
}

qf_status qf_verify_integrity(const qf_integrity_opts *o, qf_integrity_report *rep, qf_error *err) {
    memset(rep, 0, sizeof *rep);
    qf_error_clear(err);
    qf_gguf *g = NULL;
    qf_status st = qf_gguf_open(o->path, &g, err);
    if (st != QF_OK) return st;
    /* The signature covers the stored digests, not the hashed bytes, so it is checked first: a key or
     * signature file that cannot be used fails in a moment instead of after hashing the whole model. */
    qf_status sst = QF_OK;
    qf_error serr;
    qf_error_clear(&serr);
    if (o->pubkey) {
        sst = check_signature(g, o, &rep->sig, &serr);
        if (sst != QF_OK && sst != QF_E_CHECK) {
            if (err) *err = serr;
            qf_gguf_close(g);
            return sst;
        }
    }
    qf_integrity_result r;
    st = qf_integrity_check(g, o->threads, &(qf_integrity_progress){o->progress, o->progress_user}, &r, err);
    if (st == QF_OK || st == QF_E_CHECK) {
        qf_status fst = fill_report(g, &r, rep, err);
        qf_integrity_result_free(&r);
        if (fst != QF_OK) st = fst;
    }
    if (st == QF_OK || st == QF_E_CHECK) st = merge_sig(st, sst, &serr, err);
    qf_gguf_close(g);
    return st;
}

void qf_integrity_report_free(qf_integrity_report *rep) {
    for (size_t i = 0; rep->bad && i < rep->n_bad; i++) free(rep->bad[i]);
    for (size_t i = 0; rep->bad_file && i < rep->n_bad; i++) free(rep->bad_file[i]);
    free(rep->bad);
    free(rep->bad_file);
    rep->bad_file = NULL;
    free(rep->bad_verdict);
    rep->bad = NULL;
    rep->bad_verdict = NULL;
    rep->n_bad = 0;
}
