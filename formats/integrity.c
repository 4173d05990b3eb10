/*
 * integrity.c — recomputing and checking the qforge.integrity.* digests of a parsed GGUF (integrity.h).
 *
 * The writer side lives in gguf.c (digests are computed while the bytes stream out); this file is the
 * reader side: it hashes the exact byte spans the reader recorded, so nothing is re-serialized and a
 * file written by another implementation checks the same way.
 */
#include "formats/integrity.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

int qf_integrity_threads(int threads) {
    if (threads > 0) return QF_MIN(threads, 1024);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)QF_MIN(n, 1024L);
}

/* ---- header digest ----------------------------------------------------------------------------- */

/* The reader proved every span below lies inside the file; the header prefix is 24 bytes because the
 * reader accepted a magic, a version and two u64 counts. */
static bool hash_header_spans(const qf_gguf *g, EVP_MD_CTX *md) {
    uint64_t len, off, n;
    const uint8_t *base = qf_gguf_file_bytes(g, &len);
    bool ok = EVP_DigestUpdate(md, base, 24) == 1;
    for (size_t i = 0; ok && i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        if (!qf_integrity_is_key(kv->key)) ok = EVP_DigestUpdate(md, base + kv->rec_off, (size_t)kv->rec_len) == 1;
    }
    qf_gguf_tensor_info_span(g, &off, &n);
    return ok && EVP_DigestUpdate(md, base + off, (size_t)n) == 1;
}

qf_status qf_integrity_header_sha256(const qf_gguf *g, uint8_t out[32], qf_error *err) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for SHA-256", qf_gguf_label(g));
    bool ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && hash_header_spans(g, md) &&
              EVP_DigestFinal_ex(md, out, NULL) == 1;
    EVP_MD_CTX_free(md);
    return ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of the header failed", qf_gguf_label(g));
}

/* ---- stored digests ---------------------------------------------------------------------------- */

qf_status qf_integrity_keys_get(const qf_gguf *g, qf_integrity_keys *k, qf_error *err) {
    const char *label = qf_gguf_label(g);
    const qf_gguf_kv *scheme = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_SCHEME);
    if (!scheme)
        return qf_fail(err, QF_E_NOTFOUND, "%s: no qforge integrity digests (key %s is absent)", label,
                       QF_INTEGRITY_KEY_SCHEME);
    if (scheme->type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is not a string", label, QF_INTEGRITY_KEY_SCHEME);
    if (strcmp(scheme->v.str.ptr, QF_INTEGRITY_SCHEME) != 0 || scheme->v.str.len != strlen(QF_INTEGRITY_SCHEME))
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: unknown integrity scheme '%.120s' (expected '%s')", label,
                       scheme->v.str.ptr, QF_INTEGRITY_SCHEME);
    const qf_gguf_kv *h = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_HEADER);
    if (!h || h->type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is %s (expected a string)", label, QF_INTEGRITY_KEY_HEADER,
                       h ? "not a string" : "absent");
    const qf_gguf_kv *t = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_TENSORS);
    if (!t || t->type != QF_GGUF_ARRAY || t->arr_type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is %s (expected an array of strings)", label,
                       QF_INTEGRITY_KEY_TENSORS, t ? "of another type" : "absent");
    if (t->n != qf_gguf_n_tensors(g))
        return qf_fail(err, QF_E_INPUT, "%s: key %s holds %llu digests for %zu tensors", label,
                       QF_INTEGRITY_KEY_TENSORS, (unsigned long long)t->n, qf_gguf_n_tensors(g));
    k->header = &h->v.str;
    k->tensors = t->v.arr;
    k->n = t->n;
    return QF_OK;
}

/* Textual comparison on purpose: upper-case or otherwise altered hex must not count as a match. */
static bool hex_matches(const qf_gguf_str *stored, const uint8_t digest[32]) {
    char hex[QF_SHA256_HEX_LEN + 1];
    qf_sha256_hex(digest, hex);
    return stored->len == QF_SHA256_HEX_LEN && memcmp(stored->ptr, hex, QF_SHA256_HEX_LEN) == 0;
}

/* ---- tensor digests, in parallel --------------------------------------------------------------- */

#define HASH_PIECE (16u << 20) /* bytes hashed between page drops */

typedef struct hash_job {
    const qf_gguf *g;
    const qf_integrity_keys *k;
    const size_t *order;  /* tensor indices, largest first, so the long hashes start early */
    atomic_size_t next;   /* position in order of the next tensor to claim */
    bool *tensor_ok;
    atomic_bool failed;   /* an OpenSSL call failed (not a mismatch) */
} hash_job;

/* Straight from the mapping: the kernel pages the file in as we go and nothing is copied; pages are
 * dropped behind us, so RSS stays near threads x HASH_PIECE however large the model. */
static bool hash_tensor(const qf_gguf *g, const qf_gguf_tensor *t, EVP_MD_CTX *md, uint8_t d[32]) {
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) return false;
    for (uint64_t off = 0; off < t->nbytes;) {
        uint64_t n = QF_MIN(t->nbytes - off, (uint64_t)HASH_PIECE);
        if (EVP_DigestUpdate(md, t->data + off, (size_t)n) != 1) return false;
        qf_gguf_drop_pages(g, t->data + off, n);
        off += n;
    }
    return EVP_DigestFinal_ex(md, d, NULL) == 1;
}

static void *hash_worker(void *arg) {
    hash_job *j = arg;
    uint8_t d[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) atomic_store(&j->failed, true);
    for (size_t p; md && (p = atomic_fetch_add(&j->next, 1)) < qf_gguf_n_tensors(j->g);) {
        size_t i = j->order[p];
        if (!hash_tensor(j->g, qf_gguf_tensor_at(j->g, i), md, d)) {
            atomic_store(&j->failed, true);
            break;
        }
        j->tensor_ok[i] = hex_matches(&j->k->tensors[i], d);
    }
    EVP_MD_CTX_free(md);
    return NULL;
}

static int cmp_size_desc(const void *a, const void *b, void *ctx) {
    const qf_gguf *g = ctx;
    uint64_t x = qf_gguf_tensor_at(g, *(const size_t *)a)->nbytes, y = qf_gguf_tensor_at(g, *(const size_t *)b)->nbytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Runs hash_worker on `threads` threads; a thread that cannot be created just leaves more work for the
 * others (the calling thread always takes part), so this never fails for lack of threads. */
static void run_workers(hash_job *j, int threads) {
    pthread_t tid[1024];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, hash_worker, j) != 0) break;
        started++;
    }
    hash_worker(j);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static qf_status hash_tensors(const qf_gguf *g, const qf_integrity_keys *k, int threads, qf_integrity_result *r,
                              qf_error *err) {
    size_t n = qf_gguf_n_tensors(g);
    size_t *order = qf_malloc_n(n, sizeof *order);
    if (!order) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    for (size_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, n, sizeof *order, cmp_size_desc, (void *)g);
    hash_job j = {.g = g, .k = k, .order = order, .tensor_ok = r->tensor_ok};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, false);
    run_workers(&j, (int)QF_MIN((size_t)qf_integrity_threads(threads), QF_MAX(n, (size_t)1)));
    free(order);
    if (atomic_load(&j.failed)) return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of a tensor failed", qf_gguf_label(g));
    for (size_t i = 0; i < n; i++) {
        r->n_bad += !r->tensor_ok[i];
        r->bytes_hashed += qf_gguf_tensor_at(g, i)->nbytes;
    }
    return QF_OK;
}

qf_status qf_integrity_check(const qf_gguf *g, int threads, qf_integrity_result *r, qf_error *err) {
    memset(r, 0, sizeof *r);
    qf_integrity_keys k;
    qf_status st = qf_integrity_keys_get(g, &k, err);
    if (st != QF_OK) return st;
    r->n_tensors = qf_gguf_n_tensors(g);
    r->tensor_ok = qf_calloc_n(r->n_tensors, sizeof *r->tensor_ok);
    if (!r->tensor_ok) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    uint8_t hd[32];
    st = qf_integrity_header_sha256(g, hd, err);
    if (st == QF_OK) st = hash_tensors(g, &k, threads, r, err);
    if (st != QF_OK) {
        qf_integrity_result_free(r);
        return st;
    }
    uint64_t off, len;
    qf_gguf_tensor_info_span(g, &off, &len);
    r->bytes_hashed += off + len; /* an upper bound on header bytes hashed: informational */
    r->header_ok = hex_matches(k.header, hd);
    if (r->header_ok && r->n_bad == 0) return QF_OK;
    size_t first = 0;
    while (first < r->n_tensors && r->tensor_ok[first]) first++;
    char which[120] = "";
    if (r->n_bad) snprintf(which, sizeof which, " (first: '%.90s')", qf_gguf_tensor_at(g, first)->name);
    return qf_fail(err, QF_E_CHECK, "%s: integrity check failed: %s%s%zu of %zu tensors changed%s", qf_gguf_label(g),
                   r->header_ok ? "" : "header/metadata changed", r->header_ok ? "" : ", ", r->n_bad, r->n_tensors, which);
}

void qf_integrity_result_free(qf_integrity_result *r) {
    free(r->tensor_ok);
    r->tensor_ok = NULL;
}

/* ---- manifest ---------------------------------------------------------------------------------- */

/* Appends with a bound check; *ok turns false (and stays) when the buffer would overflow. */
static void append(char *buf, size_t cap, size_t *len, bool *ok, const char *s, size_t n) {
    if (!*ok || n > cap - *len) {
        *ok = false;
        return;
    }
    memcpy(buf + *len, s, n);
    *len += n;
}

qf_status qf_integrity_manifest(const qf_gguf *g, const qf_integrity_keys *k, char **out, size_t *len,
                                qf_error *err) {
    /* Size: fixed lines, then per tensor its digest string, a space, the name and a newline. */
    uint64_t cap = 256 + strlen(QF_INTEGRITY_SCHEME) + k->header->len;
    bool ok = true;
    for (size_t i = 0; ok && i < qf_gguf_n_tensors(g); i++)
        ok = qf_add_ok(cap, k->tensors[i].len + strlen(qf_gguf_tensor_at(g, i)->name) + 2, &cap);
    char *buf = ok && cap <= SIZE_MAX ? malloc((size_t)cap) : NULL;
    if (!buf) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the manifest", qf_gguf_label(g));
    char line[128];
    size_t n = 0;
    int l = snprintf(line, sizeof line, "qforge-manifest-1\nscheme ");
    append(buf, (size_t)cap, &n, &ok, line, (size_t)l);
    append(buf, (size_t)cap, &n, &ok, QF_INTEGRITY_SCHEME, strlen(QF_INTEGRITY_SCHEME));
    append(buf, (size_t)cap, &n, &ok, "\nheader-sha256 ", 15);
    append(buf, (size_t)cap, &n, &ok, k->header->ptr, (size_t)k->header->len);
    l = snprintf(line, sizeof line, "\ntensors %zu\n", qf_gguf_n_tensors(g));
    append(buf, (size_t)cap, &n, &ok, line, (size_t)l);
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const char *name = qf_gguf_tensor_at(g, i)->name;
        append(buf, (size_t)cap, &n, &ok, k->tensors[i].ptr, (size_t)k->tensors[i].len);
        append(buf, (size_t)cap, &n, &ok, " ", 1);
        append(buf, (size_t)cap, &n, &ok, name, strlen(name));
        append(buf, (size_t)cap, &n, &ok, "\n", 1);
    }
    if (!ok) {
        free(buf);
        return qf_fail(err, QF_E_INTERNAL, "%s: manifest size miscounted", qf_gguf_label(g));
    }
    *out = buf;
    *len = n;
    return QF_OK;
}
