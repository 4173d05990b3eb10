/*
 * integrity.c — recomputing and checking the qforge.integrity.* digests of a parsed GGUF (integrity.h).
 *
 * The writer side lives in gguf.c (digests are computed while the bytes stream out); this file is the
 * reader side: it hashes the exact byte spans the reader recorded, so nothing is re-serialized and a
 * file written by another implementation checks the same way.
 */
#include "formats/integrity.h"
#include "formats/gguf_split.h"

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
static bool hash_header_spans(const qf_gguf *g, int scheme, EVP_MD_CTX *md) {
    uint64_t len, off, n;
    const uint8_t *base = qf_gguf_file_bytes(g, &len);
    bool ok = EVP_DigestUpdate(md, base, 24) == 1;
    for (size_t i = 0; ok && i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        if (!qf_integrity_is_key(kv->key, scheme)) ok = EVP_DigestUpdate(md, base + kv->rec_off, (size_t)kv->rec_len) == 1;
    }
    qf_gguf_tensor_info_span(g, &off, &n);
    ok = ok && EVP_DigestUpdate(md, base + off, (size_t)n) == 1;
    if (scheme < 2) return ok;
    uint64_t pad_end = QF_MIN(qf_gguf_data_offset(g), len); /* the padding that starts the data section */
    if (ok && pad_end > off + n) ok = EVP_DigestUpdate(md, base + off + n, (size_t)(pad_end - off - n)) == 1;
    return ok && EVP_DigestUpdate(md, &len, 8) == 1; /* little-endian host: gguf.c refuses others */
}

qf_status qf_integrity_header_sha256(const qf_gguf *g, int scheme, uint8_t out[32], qf_error *err) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for SHA-256", qf_gguf_label(g));
    bool ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && hash_header_spans(g, scheme, md) &&
              EVP_DigestFinal_ex(md, out, NULL) == 1;
    EVP_MD_CTX_free(md);
    return ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of the header failed", qf_gguf_label(g));
}

/* ---- stored digests ---------------------------------------------------------------------------- */

static qf_status array_key(const qf_gguf *g, const char *key, qf_gguf_vtype elem, uint64_t n, const qf_gguf_kv **out,
                           qf_error *err) {
    const qf_gguf_kv *t = qf_gguf_find_kv(g, key);
    if (!t || t->type != QF_GGUF_ARRAY || t->arr_type != elem)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is %s (expected an array of %s)", qf_gguf_label(g), key,
                       t ? "of another type" : "absent", elem == QF_GGUF_STRING ? "strings" : "u32");
    if (n != UINT64_MAX && t->n != n)
        return qf_fail(err, QF_E_INPUT, "%s: key %s holds %llu entries for %llu digests", qf_gguf_label(g), key,
                       (unsigned long long)t->n, (unsigned long long)n);
    *out = t;
    return QF_OK;
}

qf_status qf_integrity_keys_get(const qf_gguf *g, qf_integrity_keys *k, qf_error *err) {
    const char *label = qf_gguf_label(g);
    memset(k, 0, sizeof *k);
    const qf_gguf_kv *scheme = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_SCHEME);
    if (!scheme)
        return qf_fail(err, QF_E_NOTFOUND, "%s: no qforge integrity digests (key %s is absent)", label,
                       QF_INTEGRITY_KEY_SCHEME);
    if (scheme->type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is not a string", label, QF_INTEGRITY_KEY_SCHEME);
    if (!(k->scheme = qf_integrity_scheme_of(scheme->v.str.ptr, scheme->v.str.len)))
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: unknown integrity scheme '%.120s' (this qforge reads '%.40s...' and "
                       "'%.40s...')", label, scheme->v.str.ptr, QF_INTEGRITY_SCHEME_1, QF_INTEGRITY_SCHEME_2);
    const qf_gguf_kv *h = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_HEADER), *t = NULL, *names = NULL, *types = NULL;
    if (!h || h->type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_INPUT, "%s: key %s is %s (expected a string)", label, QF_INTEGRITY_KEY_HEADER,
                       h ? "not a string" : "absent");
    qf_status st = array_key(g, QF_INTEGRITY_KEY_TENSORS, QF_GGUF_STRING, UINT64_MAX, &t, err);
    if (st != QF_OK) return st;
    k->header = &h->v.str;
    k->tensors = t->v.arr;
    k->n = t->n;
    if (k->scheme < 2) return QF_OK;
    if ((st = array_key(g, QF_INTEGRITY_KEY_NAMES, QF_GGUF_STRING, t->n, &names, err)) ||
        (st = array_key(g, QF_INTEGRITY_KEY_TYPES, QF_GGUF_U32, t->n, &types, err)))
        return st;
    k->names = names->v.arr;
    k->types = types->v.arr;
    return QF_OK;
}

/* Textual comparison on purpose: upper-case or otherwise altered hex must not count as a match. */
static bool hex_matches(const qf_gguf_str *stored, const uint8_t digest[32]) {
    char hex[QF_SHA256_HEX_LEN + 1];
    qf_sha256_hex(digest, hex);
    return stored->len == QF_SHA256_HEX_LEN && memcmp(stored->ptr, hex, QF_SHA256_HEX_LEN) == 0;
}

/* ---- which digest belongs to which tensor ------------------------------------------------------- */

typedef struct name_slot {
    const char *name;
    size_t digest;
} name_slot;

static int cmp_slot(const void *a, const void *b) {
    return strcmp(((const name_slot *)a)->name, ((const name_slot *)b)->name);
}

/* match[i] = the digest of file tensor i, or -1: by name in scheme 2, by position in scheme 1.
 * *n_missing counts digests no tensor took. */
static qf_status match_digests(const qf_gguf *g, const qf_integrity_keys *k, long *match, size_t *n_missing,
                               qf_error *err) {
    size_t n = qf_gguf_n_tensors(g);
    if (k->scheme < 2) {
        for (size_t i = 0; i < n; i++) match[i] = i < k->n ? (long)i : -1;
        *n_missing = k->n > n ? (size_t)(k->n - n) : 0;
        return QF_OK;
    }
    name_slot *slots = qf_calloc_n(k->n, sizeof *slots);
    bool *taken = qf_calloc_n(k->n, sizeof *taken);
    qf_status st = slots && taken ? QF_OK : qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    for (size_t j = 0; st == QF_OK && j < k->n; j++) slots[j] = (name_slot){k->names[j].ptr, j};
    if (st == QF_OK) qsort(slots, (size_t)k->n, sizeof *slots, cmp_slot);
    for (size_t j = 1; st == QF_OK && j < k->n; j++)
        if (!strcmp(slots[j - 1].name, slots[j].name))
            st = qf_fail(err, QF_E_INPUT, "%s: key %s names tensor '%.200s' twice", qf_gguf_label(g),
                         QF_INTEGRITY_KEY_NAMES, slots[j].name);
    for (size_t i = 0; st == QF_OK && i < n; i++) {
        name_slot key = {qf_gguf_tensor_at(g, i)->name, 0};
        const name_slot *hit = k->n ? bsearch(&key, slots, (size_t)k->n, sizeof *slots, cmp_slot) : NULL;
        match[i] = hit ? (long)hit->digest : -1;
        if (hit) taken[hit->digest] = true;
    }
    *n_missing = 0;
    for (size_t j = 0; st == QF_OK && j < k->n; j++) *n_missing += !taken[j];
    free(slots);
    free(taken);
    return st;
}

/* The scheme's keys are the file's last KV records, in the order the writer puts them. */
static bool keys_last(const qf_gguf *g, int scheme) {
    static const char *const order[] = {QF_INTEGRITY_KEY_SCHEME, QF_INTEGRITY_KEY_HEADER, QF_INTEGRITY_KEY_TENSORS,
                                        QF_INTEGRITY_KEY_NAMES, QF_INTEGRITY_KEY_TYPES};
    size_t want = scheme < 2 ? 3 : 5, n = qf_gguf_n_kv(g);
    if (n < want) return false;
    for (size_t i = 0; i < want; i++)
        if (strcmp(qf_gguf_kv_at(g, n - want + i)->key, order[i]) != 0) return false;
    return true;
}

/* ---- tensor digests, in parallel --------------------------------------------------------------- */

#define HASH_PIECE (16u << 20) /* bytes hashed between page drops */

typedef struct hash_job {
    const qf_gguf *g;
    const qf_integrity_keys *k;
    const long *match;
    const size_t *order;  /* tensor indices, largest first, so the long hashes start early */
    atomic_size_t next;   /* position in order of the next tensor to claim */
    uint8_t *verdict;
    atomic_bool failed;   /* an OpenSSL call failed (not a mismatch) */
    qf_progress_fn progress;
    void *progress_user;
    pthread_t driver;     /* the calling thread: the only one that reports progress */
    atomic_uint_least64_t done;
    uint64_t total;       /* bytes to hash */
} hash_job;

/* The bytes a tensor digest covers: scheme 1 the data, scheme 2 the data and its padding (as far as
 * the file goes: a file cut short then fails here and in the header digest). */
static uint64_t covered_bytes(const qf_gguf *g, const qf_gguf_tensor *t, int scheme) {
    uint64_t len, padded = t->nbytes;
    const uint8_t *base = qf_gguf_file_bytes(g, &len);
    if (scheme < 2 || !qf_pad_ok(t->nbytes, qf_gguf_alignment(g), &padded)) return t->nbytes;
    return QF_MIN(padded, len - (uint64_t)(t->data - base));
}

/* Straight from the mapping: the kernel pages the file in as we go and nothing is copied; pages are
 * dropped behind us, so RSS stays near threads x HASH_PIECE however large the model. */
static bool hash_tensor(hash_job *j, const uint8_t *data, uint64_t nbytes, EVP_MD_CTX *md, uint8_t d[32]) {
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) return false;
    bool reports = j->progress && pthread_equal(pthread_self(), j->driver);
    for (uint64_t off = 0; off < nbytes;) {
        uint64_t n = QF_MIN(nbytes - off, (uint64_t)HASH_PIECE);
        if (EVP_DigestUpdate(md, data + off, (size_t)n) != 1) return false;
        qf_gguf_drop_pages(j->g, data + off, n);
        off += n;
        uint64_t done = atomic_fetch_add(&j->done, n) + n;
        if (reports) j->progress(j->progress_user, qf_gguf_label(j->g), done, j->total);
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
        const qf_gguf_tensor *t = qf_gguf_tensor_at(j->g, i);
        long m = j->match[i];
        if (m < 0) { j->verdict[i] = QF_TENSOR_UNCOVERED; continue; }
        if (j->k->types && j->k->types[m] != t->type) { j->verdict[i] = QF_TENSOR_RETYPED; continue; }
        if (!hash_tensor(j, t->data, covered_bytes(j->g, t, j->k->scheme), md, d)) {
            atomic_store(&j->failed, true);
            break;
        }
        j->verdict[i] = hex_matches(&j->k->tensors[m], d) ? QF_TENSOR_OK : QF_TENSOR_CHANGED;
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

/* The bytes hash_worker will hash: tensors that have a digest of their own type. */
static uint64_t bytes_to_hash(const qf_gguf *g, const qf_integrity_keys *k, const long *match) {
    uint64_t total = 0;
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (match[i] >= 0 && (!k->types || k->types[match[i]] == t->type)) total += covered_bytes(g, t, k->scheme);
    }
    return total;
}

static qf_status hash_tensors(const qf_gguf *g, const qf_integrity_keys *k, const long *match, int threads,
                              const qf_integrity_progress *pr, qf_integrity_result *r, qf_error *err) {
    size_t n = qf_gguf_n_tensors(g);
    size_t *order = qf_malloc_n(n, sizeof *order);
    if (!order) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    for (size_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, n, sizeof *order, cmp_size_desc, (void *)g);
    hash_job j = {.g = g, .k = k, .match = match, .order = order, .verdict = r->verdict,
                  .progress = pr ? pr->fn : NULL, .progress_user = pr ? pr->user : NULL, .driver = pthread_self(),
                  .total = bytes_to_hash(g, k, match)};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, false);
    atomic_init(&j.done, 0);
    if (j.progress) j.progress(j.progress_user, qf_gguf_label(g), 0, j.total); /* the phase starts now */
    run_workers(&j, (int)QF_MIN((size_t)qf_integrity_threads(threads), QF_MAX(n, (size_t)1)));
    free(order);
    if (j.progress) j.progress(j.progress_user, qf_gguf_label(g), j.total, j.total); /* the other threads' tail */
    if (atomic_load(&j.failed)) return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of a tensor failed", qf_gguf_label(g));
    for (size_t i = 0; i < n; i++) {
        r->n_changed += r->verdict[i] == QF_TENSOR_CHANGED;
        r->n_retyped += r->verdict[i] == QF_TENSOR_RETYPED;
        r->n_uncovered += r->verdict[i] == QF_TENSOR_UNCOVERED;
        if (r->verdict[i] == QF_TENSOR_OK || r->verdict[i] == QF_TENSOR_CHANGED)
            r->bytes_hashed += covered_bytes(g, qf_gguf_tensor_at(g, i), k->scheme);
    }
    r->n_bad = r->n_changed + r->n_retyped + r->n_uncovered;
    return QF_OK;
}

/* ---- the verdict ------------------------------------------------------------------------------- */

static void judge_rewrite(const qf_gguf *g, const long *match, qf_integrity_result *r) {
    long last = -1;
    for (size_t i = 0; i < r->n_tensors; i++) {
        if (match[i] < 0) continue;
        if (match[i] < last) r->reordered = true;
        last = match[i];
    }
    r->keys_not_last = !keys_last(g, r->scheme);
    r->rewritten = !r->header_ok && (r->reordered || r->keys_not_last || r->n_retyped || r->n_uncovered || r->n_missing);
}

static qf_status verdict_error(const qf_gguf *g, const qf_integrity_result *r, qf_error *err) {
    const char *label = qf_gguf_label(g);
    if (r->rewritten) {
        char why[200];
        snprintf(why, sizeof why, "%s%s%s", r->reordered ? "tensors in another order, " : "",
                 r->n_retyped ? "tensors re-encoded in other types, " : "",
                 r->keys_not_last ? "keys written after the digest keys, " : "");
        size_t wl = strlen(why);
        if (wl >= 2) why[wl - 2] = '\0';
        else snprintf(why, sizeof why, "tensors added or removed");
        return qf_fail(err, QF_E_CHECK, "%s: integrity check failed: rewritten by another tool since qforge wrote it (%s); "
                       "its qforge digests describe that file. By %s: %zu tensors keep their bytes, %zu re-encoded, %zu "
                       "changed, %zu without a digest, %zu missing", label, why, r->scheme >= 2 ? "name" : "position",
                       r->n_tensors - r->n_bad, r->n_retyped, r->n_changed, r->n_uncovered, r->n_missing);
    }
    size_t first = 0;
    while (first < r->n_tensors && r->verdict[first] == QF_TENSOR_OK) first++;
    char which[120] = "";
    if (r->n_bad) snprintf(which, sizeof which, " (first: '%.90s')", qf_gguf_tensor_at(g, first)->name);
    return qf_fail(err, QF_E_CHECK, "%s: integrity check failed: %s%s%zu of %zu tensors changed%s", label,
                   r->header_ok ? "" : "header/metadata changed", r->header_ok ? "" : ", ", r->n_bad, r->n_tensors, which);
}

/* One file (a part of a set too) against its own digests. */
static qf_status check_file(const qf_gguf *g, int threads, const qf_integrity_progress *progress,
                            qf_integrity_result *r, qf_error *err) {
    memset(r, 0, sizeof *r);
    qf_integrity_keys k;
    qf_status st = qf_integrity_keys_get(g, &k, err);
    if (st != QF_OK) return st;
    r->scheme = k.scheme;
    r->n_tensors = qf_gguf_n_tensors(g);
    r->verdict = qf_calloc_n(r->n_tensors, sizeof *r->verdict);
    long *match = qf_calloc_n(r->n_tensors, sizeof *match);
    if (!r->verdict || !match) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(g));
    uint8_t hd[32];
    if (st == QF_OK) st = match_digests(g, &k, match, &r->n_missing, err);
    if (st == QF_OK) st = qf_integrity_header_sha256(g, k.scheme, hd, err);
    if (st == QF_OK) st = hash_tensors(g, &k, match, threads, progress, r, err);
    if (st == QF_OK) {
        uint64_t off, len;
        qf_gguf_tensor_info_span(g, &off, &len);
        r->bytes_hashed += off + len; /* an upper bound on header bytes hashed: informational */
        r->header_ok = hex_matches(k.header, hd);
        judge_rewrite(g, match, r);
    }
    free(match);
    if (st != QF_OK) {
        qf_integrity_result_free(r);
        return st;
    }
    if (r->header_ok && r->n_bad == 0 && r->n_missing == 0) return QF_OK;
    return verdict_error(g, r, err);
}

/* ---- split sets -------------------------------------------------------------------------------- */

static bool hash_u64(EVP_MD_CTX *md, uint64_t v) { return EVP_DigestUpdate(md, &v, 8) == 1; }

qf_status qf_integrity_set_sha256(const qf_gguf *set, uint8_t out[32], qf_error *err) {
    const qf_gguf *first = qf_gguf_part(set, 0);
    uint64_t len;
    const uint8_t *base = qf_gguf_file_bytes(first, &len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < qf_gguf_n_kv(first); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(first, i);
        if (!qf_split_set_skips_key(kv->key)) ok = EVP_DigestUpdate(md, base + kv->rec_off, (size_t)kv->rec_len) == 1;
    }
    for (size_t k = 0; ok && k < qf_gguf_n_parts(set); k++) {
        const qf_gguf *p = qf_gguf_part(set, k);
        ok = hash_u64(md, qf_gguf_n_tensors(p));
        for (size_t i = 0; ok && i < qf_gguf_n_tensors(p); i++) {
            const qf_gguf_tensor *t = qf_gguf_tensor_at(p, i);
            uint8_t rec[QF_SPLIT_TENSOR_RECORD_MAX];
            ok = EVP_DigestUpdate(md, rec, qf_split_tensor_record(t->name, t->n_dims, t->ne, t->type, rec)) == 1;
        }
    }
    ok = ok && EVP_DigestFinal_ex(md, out, NULL) == 1;
    EVP_MD_CTX_free(md);
    return ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of the set's identity failed", qf_gguf_label(set));
}

/* The identity the set's parts carry (the reader checked they all carry the same); QF_E_NOTFOUND when
 * it has none (a set another tool split). */
static qf_status stored_set_id(const qf_gguf *set, const qf_gguf_str **id, qf_error *err) {
    const qf_gguf_kv *kv = qf_gguf_find_kv(qf_gguf_part(set, 0), QF_SPLIT_KEY_SET);
    if (!kv || kv->type != QF_GGUF_STRING)
        return qf_fail(err, QF_E_NOTFOUND, "%s: no qforge digests for the split set (key %s is absent)", qf_gguf_label(set),
                       QF_SPLIT_KEY_SET);
    *id = &kv->v.str;
    return QF_OK;
}

/* Whether the set's identity, recomputed from its parts, is the one they carry. */
static qf_status check_set_id(const qf_gguf *set, bool *ok, qf_error *err) {
    const qf_gguf_str *id = NULL;
    uint8_t d[32];
    qf_status st = stored_set_id(set, &id, err);
    if (st == QF_OK) st = qf_integrity_set_sha256(set, d, err);
    if (st == QF_OK) *ok = hex_matches(id, d);
    return st;
}

/* Progress over a whole set: each part's bytes after those of the parts before it. */
typedef struct set_progress {
    const qf_integrity_progress *outer;
    const char *label;
    uint64_t before, total;
} set_progress;

static void set_progress_fn(void *user, const char *what, uint64_t done, uint64_t total) {
    set_progress *sp = user;
    (void)what;
    (void)total;
    sp->outer->fn(sp->outer->user, sp->label, QF_MIN(sp->before + done, sp->total), sp->total);
}

/* Folds part k's result (n tensors, first at index at) into the set's. */
static void add_part(qf_integrity_result *r, const qf_integrity_result *p, size_t at) {
    memcpy(r->verdict + at, p->verdict, p->n_tensors);
    r->header_ok = r->header_ok && p->header_ok;
    r->n_bad += p->n_bad;
    r->n_changed += p->n_changed;
    r->n_retyped += p->n_retyped;
    r->n_uncovered += p->n_uncovered;
    r->n_missing += p->n_missing;
    r->rewritten = r->rewritten || p->rewritten;
    r->reordered = r->reordered || p->reordered;
    r->keys_not_last = r->keys_not_last || p->keys_not_last;
    r->bytes_hashed += p->bytes_hashed;
}

/* Every part against its own digests, and the set's identity against the parts: the first failure's
 * message names the part and its first changed tensor. */
static qf_status check_set(const qf_gguf *set, int threads, const qf_integrity_progress *progress,
                           qf_integrity_result *r, qf_error *err) {
    memset(r, 0, sizeof *r);
    r->n_tensors = qf_gguf_n_tensors(set);
    r->header_ok = true;
    r->verdict = qf_calloc_n(QF_MAX(r->n_tensors, (size_t)1), sizeof *r->verdict);
    if (!r->verdict) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qf_gguf_label(set));
    bool id_ok = false;
    qf_status st = check_set_id(set, &id_ok, err);
    set_progress sp = {.outer = progress, .label = qf_gguf_label(set)};
    for (size_t k = 0; k < qf_gguf_n_parts(set); k++) {
        uint64_t len;
        qf_gguf_file_bytes(qf_gguf_part(set, k), &len);
        sp.total += len;
    }
    qf_integrity_progress inner = {set_progress_fn, &sp};
    size_t at = 0, failed = 0;
    qf_error perr;
    for (size_t k = 0; st == QF_OK && k < qf_gguf_n_parts(set); k++) {
        const qf_gguf *p = qf_gguf_part(set, k);
        qf_integrity_result pr;
        qf_status pst = check_file(p, threads, progress && progress->fn ? &inner : NULL, &pr, &perr);
        if (pst != QF_OK && pst != QF_E_CHECK) {
            if (err) *err = perr;
            st = pst;
            break;
        }
        if (pst == QF_E_CHECK && failed++ == 0 && err) *err = perr;
        r->scheme = k == 0 ? pr.scheme : QF_MIN(r->scheme, pr.scheme);
        add_part(r, &pr, at);
        at += pr.n_tensors;
        qf_integrity_result_free(&pr);
        uint64_t len;
        qf_gguf_file_bytes(p, &len);
        sp.before += len;
    }
    if (st != QF_OK) {
        qf_integrity_result_free(r);
        return st;
    }
    r->header_ok = r->header_ok && id_ok;
    if (!failed && id_ok) return QF_OK;
    if (!failed)
        return qf_fail(err, QF_E_CHECK, "%s: integrity check failed: the split set's identity (%s) does not match its "
                       "parts' metadata and tensor tables", qf_gguf_label(set), QF_SPLIT_KEY_SET);
    if (err) {
        size_t n = strlen(err->msg);
        if (failed > 1)
            snprintf(err->msg + n, sizeof err->msg - n, "; %zu more part%s of the set failed too", failed - 1,
                     failed > 2 ? "s" : "");
        n = strlen(err->msg);
        if (!id_ok) snprintf(err->msg + n, sizeof err->msg - n, "; the set's identity does not match its parts");
    }
    return QF_E_CHECK;
}

qf_status qf_integrity_check(const qf_gguf *g, int threads, const qf_integrity_progress *progress,
                             qf_integrity_result *r, qf_error *err) {
    return qf_gguf_n_parts(g) > 1 ? check_set(g, threads, progress, r, err) : check_file(g, threads, progress, r, err);
}

void qf_integrity_result_free(qf_integrity_result *r) {
    free(r->verdict);
    r->verdict = NULL;
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

/* The name a manifest line carries: the stored one in scheme 2 (the manifest then depends only on what
 * the digest keys claim), the file's own in scheme 1, whose digests are positional. */
static const char *manifest_name(const qf_gguf *g, const qf_integrity_keys *k, size_t i) {
    return k->names ? k->names[i].ptr : qf_gguf_tensor_at(g, i)->name;
}

qf_status qf_integrity_manifest(const qf_gguf *g, const qf_integrity_keys *k, char **out, size_t *len,
                                qf_error *err) {
    const char *scheme = k->scheme >= 2 ? QF_INTEGRITY_SCHEME_2 : QF_INTEGRITY_SCHEME_1;
    if (!k->names && k->n != qf_gguf_n_tensors(g))
        return qf_fail(err, QF_E_CHECK, "%s: %llu digests for %zu tensors: the digests describe another file",
                       qf_gguf_label(g), (unsigned long long)k->n, qf_gguf_n_tensors(g));
    /* Size: fixed lines, then per tensor its digest string, a space, the name and a newline. */
    uint64_t cap = 256 + strlen(scheme) + k->header->len;
    bool ok = true;
    for (size_t i = 0; ok && i < k->n; i++)
        ok = qf_add_ok(cap, k->tensors[i].len + strlen(manifest_name(g, k, i)) + 2, &cap);
    char *buf = ok && cap <= SIZE_MAX ? malloc((size_t)cap) : NULL;
    if (!buf) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the manifest", qf_gguf_label(g));
    char line[128];
    size_t n = 0;
    int l = snprintf(line, sizeof line, "qforge-manifest-1\nscheme ");
    append(buf, (size_t)cap, &n, &ok, line, (size_t)l);
    append(buf, (size_t)cap, &n, &ok, scheme, strlen(scheme));
    append(buf, (size_t)cap, &n, &ok, "\nheader-sha256 ", 15);
    append(buf, (size_t)cap, &n, &ok, k->header->ptr, (size_t)k->header->len);
    l = snprintf(line, sizeof line, "\ntensors %llu\n", (unsigned long long)k->n);
    append(buf, (size_t)cap, &n, &ok, line, (size_t)l);
    for (size_t i = 0; i < k->n; i++) {
        const char *name = manifest_name(g, k, i);
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

qf_status qf_integrity_set_manifest(const qf_gguf *g, char **out, size_t *len, qf_error *err) {
    qf_integrity_keys k;
    qf_status st = QF_OK;
    if (qf_gguf_n_parts(g) == 1) {
        st = qf_integrity_keys_get(g, &k, err);
        return st == QF_OK ? qf_integrity_manifest(g, &k, out, len, err) : st;
    }
    const qf_gguf_str *id = NULL;
    if ((st = stored_set_id(g, &id, err)) != QF_OK) return st;
    char head[256];
    int hl = snprintf(head, sizeof head, "qforge-split-manifest-1\nset-sha256 %.64s\nparts %zu\n", id->ptr,
                      qf_gguf_n_parts(g));
    size_t n = (size_t)hl, cap = n;
    char *buf = malloc(cap);
    if (!buf) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the manifest", qf_gguf_label(g));
    memcpy(buf, head, n);
    for (size_t p = 0; st == QF_OK && p < qf_gguf_n_parts(g); p++) {
        const qf_gguf *part = qf_gguf_part(g, p);
        char *m = NULL, line[32];
        size_t mlen = 0;
        int ll = snprintf(line, sizeof line, "part %zu\n", p + 1);
        st = qf_integrity_keys_get(part, &k, err);
        if (st == QF_OK) st = qf_integrity_manifest(part, &k, &m, &mlen, err);
        char *grown = st == QF_OK ? realloc(buf, n + (size_t)ll + mlen) : NULL;
        if (st == QF_OK && !grown) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory for the manifest", qf_gguf_label(g));
        if (st == QF_OK) {
            buf = grown;
            memcpy(buf + n, line, (size_t)ll);
            memcpy(buf + n + ll, m, mlen);
            n += (size_t)ll + mlen;
        }
        free(m);
    }
    if (st != QF_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *len = n;
    return QF_OK;
}
