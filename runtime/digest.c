/* digest.c — a model file's SHA-256 taken in step with a layer-major run (runtime.h: qf_rt_digest). */
#include "runtime/runtime.h"
#include "formats/digest.h"
#include "formats/gguf.h"

#include <openssl/evp.h>
#include <sys/stat.h>

/* Hashed per step, then its pages (outside the current layer) dropped: a bounded RSS whatever the file. */
#define DIGEST_STEP (8u << 20)

struct qf_rt_digest {
    const qf_rt_model *m;
    char *path;
    const uint8_t *base; /* the GGUF mapping, or NULL: the file is read at finish */
    uint64_t len, pos;
    EVP_MD_CTX *md;
};

void qf_rt_digest_free(qf_rt_digest *d) {
    if (!d) return;
    EVP_MD_CTX_free(d->md);
    free(d->path);
    free(d);
}

qf_status qf_rt_digest_open(const qf_rt_model *m, const char *path, qf_rt_digest **out, qf_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return QF_OK;
    qf_rt_digest *d = calloc(1, sizeof *d);
    if (!d || !(d->path = qf_strndup(path, strlen(path))) || !(d->md = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1) {
        qf_rt_digest_free(d);
        return qf_fail(err, QF_E_NOMEM, "%s: cannot start its SHA-256", path);
    }
    d->m = m;
    /* of a split set the mapping is the first part's, the file `path` names */
    d->base = m->gguf ? qf_gguf_file_bytes(m->gguf, &d->len) : NULL;
    if (d->base && d->len != (uint64_t)sb.st_size) d->base = NULL;
    *out = d;
    return QF_OK;
}

/* Hashes the mapping up to `to`, dropping the pages of each step that lie before `keep` (the start of
 * the layer about to run). */
static qf_status hash_to(qf_rt_digest *d, uint64_t to, uint64_t keep, qf_error *err) {
    to = QF_MIN(to, d->len);
    while (d->pos < to) {
        uint64_t n = QF_MIN((uint64_t)DIGEST_STEP, to - d->pos);
        if (EVP_DigestUpdate(d->md, d->base + d->pos, (size_t)n) != 1)
            return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 update failed", d->path);
        uint64_t drop_end = QF_MIN(d->pos + n, keep);
        if (drop_end > d->pos) qf_gguf_drop_pages(d->m->gguf, d->base + d->pos, drop_end - d->pos);
        d->pos += n;
    }
    return QF_OK;
}

qf_status qf_rt_digest_layer(qf_rt_digest *d, int layer, qf_error *err) {
    uint64_t lo, hi;
    if (!d || !d->base || !qf_rt_layer_file_span(d->m, layer, &lo, &hi)) return QF_OK;
    return hash_to(d, hi, lo, err);
}

qf_status qf_rt_digest_finish(qf_rt_digest *d, char hex[65], qf_error *err) {
    hex[0] = 0;
    if (!d) return QF_OK;
    qf_status st = QF_OK;
    if (!d->base) {
        st = qf_sha256_file_hex(d->path, hex, err);
    } else {
        uint8_t out[32];
        unsigned int n = 0;
        st = hash_to(d, d->len, d->len, err);
        if (!st && EVP_DigestFinal_ex(d->md, out, &n) != 1) st = qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 failed", d->path);
        if (!st) qf_sha256_hex(out, hex);
    }
    qf_rt_digest_free(d);
    return st;
}
