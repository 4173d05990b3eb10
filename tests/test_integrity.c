/*
 * test_integrity.c — qforge.integrity.* digests and detached signatures.
 *   1. the writer's digests (scheme 2: padding and file length covered, names and types stored) equal
 *      independently computed SHA-256s; the keys come last; opt-out works
 *   2. a converted model verifies with 1, 2 and 8 threads; a file without digests is refused
 *   3. 200 single-bit flips across a converted model (header, metadata, tensor infos, tensor data,
 *      padding before the data and after tensors, the digest keys themselves): every flip is caught and
 *      names the right tensor or the header (QF_FLIP_SEED replays)
 *   4. bytes appended to a file fail; a scheme-1 file (tests/data) verifies, says so and keeps its limit
 *   5. a file another tool rewrote (keys copied, tensors reordered, one re-encoded, a key added) is
 *      reported as rewritten, digests matched by name: only the re-encoded tensor is named
 *   6. sign / verify: good, tampered signature, wrong key, re-digested tampering, missing and garbage
 *      signature files, non-Ed25519 keys (the message says what was given), refusing to sign a
 *      damaged file */
#include "testutil.h"
#include "formats/gguf.h"
#include "formats/integrity.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixtures ---------------------------------------------------------------------------------- */

/* synth + convert to q8_0. ff = 100 and vocab = 300 give tensors whose size is not a multiple of the
 * alignment, so the file has padding after tensors as well as before the data section. */
static bool make_model(const char *name, char *out, size_t n) {
    char dir[4096];
    qf_test_fresh_dir("synth", dir, sizeof dir);
    qf_synth_opts so = {.dir = dir, .seed = 7, .n_layer = 2, .n_embd = 64, .n_ff = 100, .n_vocab = 300, .dtype = "bf16"};
    qf_error err = {0};
    CHECK_OK(qf_synth_model(&so, &err), &err);
    qf_test_path(name, out, n);
    qf_convert_opts co = {.src = dir, .out = out, .type = "q8_0", .threads = 2};
    qf_status st = qf_convert(&co, &err);
    CHECK_OK(st, &err);
    return st == QF_OK;
}

static void sha256(const void *p, size_t n, uint8_t d[32]) {
    unsigned dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
}

static bool copy_file(const char *src, const char *dst) {
    size_t n = 0;
    uint8_t *b = qf_test_read_file(src, &n);
    bool ok = b && qf_test_write_file(dst, b, n);
    free(b);
    return ok;
}

static qf_status verify(const char *path, const char *pub, int threads, qf_integrity_report *rep, qf_error *err) {
    qf_integrity_opts o = {.path = path, .pubkey = pub, .threads = threads};
    return qf_verify_integrity(&o, rep, err);
}

/* ---- 1. the writer ----------------------------------------------------------------------------- */

static void test_writer(void) {
    char path[4096];
    qf_test_path("odd.gguf", path, sizeof path);
    qf_error err = {0};
    qf_gguf_writer *w = NULL;
    float a[5] = {1, 2, 3, 4, 5}, b[40];
    for (int i = 0; i < 40; i++) b[i] = (float)i * 0.5f;
    uint64_t ne_a[1] = {5}, ne_b[2] = {8, 5};
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    if (!w) return;
    /* a stale digest key set by the caller (as when re-writing a file) is replaced, not kept */
    CHECK_OK(qf_gguf_set_str(w, QF_INTEGRITY_KEY_HEADER, "stale", &err), &err);
    CHECK_OK(qf_gguf_set_str(w, "general.name", "odd", &err), &err);
    CHECK_OK(qf_gguf_add_tensor(w, "a", 0, 1, ne_a, &err), &err);
    CHECK_OK(qf_gguf_add_tensor(w, "b", 0, 2, ne_b, &err), &err);
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    CHECK(qf_gguf_writer_set_digests(w, false, &err) == QF_E_USAGE); /* only before begin_data */
    CHECK_OK(qf_gguf_write_tensor_data(w, a, 7, &err), &err); /* pieces that split tensors */
    CHECK_OK(qf_gguf_write_tensor_data(w, (uint8_t *)a + 7, 13, &err), &err);
    CHECK_OK(qf_gguf_write_tensor_data(w, b, sizeof b, &err), &err);
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);

    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return;
    CHECK(qf_gguf_n_kv(g) == 6);
    CHECK(strcmp(qf_gguf_kv_at(g, 0)->key, "general.name") == 0);
    CHECK(strcmp(qf_gguf_kv_at(g, 1)->key, QF_INTEGRITY_KEY_SCHEME) == 0);
    CHECK(strcmp(qf_gguf_kv_at(g, 2)->key, QF_INTEGRITY_KEY_HEADER) == 0);
    CHECK(strcmp(qf_gguf_kv_at(g, 3)->key, QF_INTEGRITY_KEY_TENSORS) == 0);
    CHECK(strcmp(qf_gguf_kv_at(g, 4)->key, QF_INTEGRITY_KEY_NAMES) == 0);
    CHECK(strcmp(qf_gguf_kv_at(g, 5)->key, QF_INTEGRITY_KEY_TYPES) == 0);
    qf_integrity_keys k;
    CHECK_OK(qf_integrity_keys_get(g, &k, &err), &err);
    CHECK(k.scheme == 2 && k.n == 2 && k.names && k.types);
    CHECK(k.names && !strcmp(k.names[0].ptr, "a") && !strcmp(k.names[1].ptr, "b") && k.types[0] == 0 && k.types[1] == 0);
    /* tensor digests cover the data and its padding: a is 20 bytes + 12 zeros, b 160 bytes exactly */
    uint8_t d[32], padded_a[32] = {0};
    char hex[65];
    memcpy(padded_a, a, sizeof a);
    sha256(padded_a, sizeof padded_a, d);
    qf_sha256_hex(d, hex);
    CHECK(k.n == 2 && strcmp(k.tensors[0].ptr, hex) == 0);
    sha256(b, sizeof b, d);
    qf_sha256_hex(d, hex);
    CHECK(k.n == 2 && strcmp(k.tensors[1].ptr, hex) == 0);
    /* header digest, recomputed here from the definition: bytes [0,24) + record 0 + tensor infos +
     * padding to the data section + the file length as u64 little-endian */
    uint64_t len, ioff, ilen;
    const uint8_t *f = qf_gguf_file_bytes(g, &len);
    qf_gguf_tensor_info_span(g, &ioff, &ilen);
    const qf_gguf_kv *kv0 = qf_gguf_kv_at(g, 0);
    CHECK(kv0->rec_off == 24 && kv0->rec_len == 8 + 12 + 4 + 8 + 3);
    CHECK(ioff == qf_gguf_kv_at(g, 5)->rec_off + qf_gguf_kv_at(g, 5)->rec_len);
    uint64_t pad = qf_gguf_data_offset(g) - (ioff + ilen);
    CHECK(len == qf_gguf_data_offset(g) + 32 + 160); /* the file ends with the last tensor's padding */
    size_t hn = 24 + (size_t)kv0->rec_len + (size_t)ilen + (size_t)pad + 8;
    uint8_t *h = malloc(hn);
    memcpy(h, f, 24);
    memcpy(h + 24, f + kv0->rec_off, (size_t)kv0->rec_len);
    memcpy(h + 24 + kv0->rec_len, f + ioff, (size_t)(ilen + pad));
    memcpy(h + hn - 8, &len, 8);
    sha256(h, hn, d);
    free(h);
    qf_sha256_hex(d, hex);
    CHECK(strcmp(k.header->ptr, hex) == 0);
    qf_integrity_result r;
    CHECK_OK(qf_integrity_check(g, 1, NULL, &r, &err), &err);
    qf_integrity_result_free(&r);
    qf_gguf_close(g);

    /* opt-out: exactly the keys given, and such a file is "without qforge digests" */
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    CHECK_OK(qf_gguf_writer_set_digests(w, false, &err), &err);
    CHECK_OK(qf_gguf_set_str(w, "general.name", "plain", &err), &err);
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);
    qf_integrity_report rep;
    CHECK(verify(path, NULL, 1, &rep, &err) == QF_E_NOTFOUND && strstr(err.msg, "no qforge integrity digests") &&
          strstr(err.msg, "odd.gguf"));
    qf_integrity_report_free(&rep);
}

/* ---- 2. clean files ---------------------------------------------------------------------------- */

static void test_clean(const char *model) {
    qf_error err = {0};
    for (int threads = 1; threads <= 8; threads *= 2) {
        qf_integrity_report rep;
        CHECK_OK(verify(model, NULL, threads, &rep, &err), &err);
        CHECK(rep.header_ok && rep.n_bad == 0 && rep.n_tensors == 21 && rep.sig == QF_SIG_NOT_CHECKED);
        CHECK(rep.bytes_hashed > 120000);
        qf_integrity_report_free(&rep);
    }
    qf_integrity_report rep;
    char path[4096];
    unlink(qf_test_path("absent.gguf", path, sizeof path)); /* from an earlier run */
    CHECK(verify(path, NULL, 1, &rep, &err) == QF_E_NOTFOUND);
    CHECK(qf_test_write_file(path, "GGUF", 4));
    CHECK(verify(path, NULL, 1, &rep, &err) == QF_E_INPUT && strstr(err.msg, "absent.gguf"));
}

/* ---- 3. bit flips ------------------------------------------------------------------------------ */

enum { R_HEADER, R_DATA, R_HPAD, R_TPAD, R_TDIGEST, R_HDIGEST, R_DIGEST_OTHER, R_COUNT };
static const char *const k_region[R_COUNT] = {"header/metadata/infos", "tensor data", "padding before the data",
                                              "padding after a tensor", "stored tensor digest", "stored header digest",
                                              "other digest-key bytes"};

typedef struct byte_map {
    uint8_t *cls;   /* region of every byte */
    int32_t *owner; /* tensor index for R_DATA, R_TPAD and R_TDIGEST bytes, else -1 */
    size_t len;
} byte_map;

static void mark(byte_map *m, uint64_t off, uint64_t n, int cls, int32_t owner) {
    for (uint64_t i = off; i < off + n && i < m->len; i++) {
        m->cls[i] = (uint8_t)cls;
        m->owner[i] = owner;
    }
}

/* Offset of a digest key's value: after u64 key length, key, u32 type. */
static uint64_t value_off(const qf_gguf_kv *kv) { return kv->rec_off + 8 + strlen(kv->key) + 4; }

static void build_map(const qf_gguf *g, byte_map *m) {
    uint64_t len, ioff, ilen;
    qf_gguf_file_bytes(g, &len);
    m->len = (size_t)len;
    m->cls = malloc(m->len);
    m->owner = malloc(m->len * sizeof *m->owner);
    qf_gguf_tensor_info_span(g, &ioff, &ilen);
    mark(m, 0, len, R_HPAD, -1);
    mark(m, 0, ioff + ilen, R_HEADER, -1);
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        if (!qf_integrity_is_key(kv->key, 2)) continue;
        mark(m, kv->rec_off, kv->rec_len, R_DIGEST_OTHER, -1);
        if (!strcmp(kv->key, QF_INTEGRITY_KEY_HEADER)) mark(m, value_off(kv) + 8, 64, R_HDIGEST, -1);
        for (uint64_t t = 0; !strcmp(kv->key, QF_INTEGRITY_KEY_TENSORS) && t < kv->n; t++)
            mark(m, value_off(kv) + 12 + t * 72 + 8, 64, R_TDIGEST, (int32_t)t);
    }
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        uint64_t start = qf_gguf_data_offset(g) + t->offset, padded = (t->nbytes + 31) / 32 * 32;
        mark(m, start, padded, R_TPAD, (int32_t)i);
        mark(m, start, t->nbytes, R_DATA, (int32_t)i);
    }
}

/* A uniformly random byte of region `cls` (the map has at least one, checked by the caller). */
static size_t pick(const byte_map *m, int cls, uint64_t *seed) {
    for (;;) {
        size_t i = (size_t)(qf_test_rand(seed) % m->len);
        if (m->cls[i] == cls) return i;
    }
}

static bool poke(int fd, size_t off, uint8_t v) { return pwrite(fd, &v, 1, (off_t)off) == 1; }

/* Checks one flip's outcome against what its region promises: scheme 2 covers every byte, so every
 * flip fails, naming the tensor whose data or padding it hit, or the header. */
static bool flip_outcome_ok(int cls, int32_t owner, qf_status st, const qf_integrity_report *rep, const qf_gguf *g) {
    const char *name = owner >= 0 ? qf_gguf_tensor_at(g, (size_t)owner)->name : "";
    switch (cls) {
    case R_DATA:
    case R_TPAD:
    case R_TDIGEST:
        return st == QF_E_CHECK && rep->header_ok && rep->n_bad == 1 && strcmp(rep->bad[0], name) == 0 &&
               rep->bad_verdict[0] == QF_TENSOR_CHANGED && !rep->rewritten;
    case R_HPAD:
    case R_HDIGEST: return st == QF_E_CHECK && !rep->header_ok && rep->n_bad == 0 && !rep->rewritten;
    case R_HEADER: return st != QF_OK && (st != QF_E_CHECK || !rep->header_ok);
    default: return st != QF_OK;
    }
}

static void test_flips(const char *model) {
    const char *se = getenv("QF_FLIP_SEED");
    uint64_t seed = se ? strtoull(se, NULL, 0) : 0xF11Bu;
    printf("flips: seed %llu (QF_FLIP_SEED replays)\n", (unsigned long long)seed);
    char work[4096];
    qf_test_path("flip.gguf", work, sizeof work);
    CHECK(copy_file(model, work));
    qf_error err = {0};
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(model, &g, &err), &err);
    if (!g) return;
    byte_map m;
    build_map(g, &m);
    size_t have[R_COUNT] = {0};
    for (size_t i = 0; i < m.len; i++) have[m.cls[i]]++;
    for (int c = 0; c < R_COUNT; c++) {
        printf("flips: region %-24s %7zu bytes\n", k_region[c], have[c]);
        CHECK_MSG(have[c] > 0, "the model has no %s bytes to flip", k_region[c]);
    }
    /* 200 flips: 60 header, 80 data, 10 + 15 padding, 15 stored tensor digests, 10 header digest, 10 other */
    static const int quota[R_COUNT] = {60, 80, 10, 15, 15, 10, 10};
    int fd = open(work, O_RDWR);
    int caught[R_COUNT] = {0}, tried[R_COUNT] = {0};
    const uint8_t *orig = qf_gguf_file_bytes(g, &(uint64_t){0});
    for (int c = 0; c < R_COUNT && fd >= 0; c++) {
        for (int k = 0; k < quota[c] && have[c]; k++) {
            size_t off = pick(&m, c, &seed);
            uint8_t bit = (uint8_t)(1u << (qf_test_rand(&seed) % 8));
            CHECK(poke(fd, off, orig[off] ^ bit));
            qf_integrity_report rep;
            qf_status st = verify(work, NULL, 2, &rep, &err);
            bool ok = flip_outcome_ok(c, m.owner[off], st, &rep, g);
            CHECK_MSG(ok, "flip of bit 0x%02x at offset %zu (%s%s%s): %s, %zu tensors named: %s", bit, off, k_region[c],
                      m.owner[off] >= 0 ? " of " : "", m.owner[off] >= 0 ? qf_gguf_tensor_at(g, (size_t)m.owner[off])->name : "",
                      qf_status_name(st), rep.n_bad, err.msg);
            tried[c]++;
            caught[c] += ok;
            qf_integrity_report_free(&rep);
            CHECK(poke(fd, off, orig[off]));
        }
    }
    for (int c = 0; c < R_COUNT; c++)
        printf("flips: %-24s %3d/%d caught as expected\n", k_region[c], caught[c], tried[c]);
    if (fd >= 0) close(fd);
    qf_integrity_report rep;
    CHECK_OK(verify(work, NULL, 2, &rep, &err), &err); /* every flip was undone */
    qf_integrity_report_free(&rep);
    free(m.cls);
    free(m.owner);
    qf_gguf_close(g);
}

/* ---- 4. what scheme 2 covers that scheme 1 did not, and scheme-1 files ------------------------- */

static bool append_bytes(const char *src, const char *dst, size_t extra) {
    size_t n = 0;
    uint8_t *b = qf_test_read_file(src, &n), *c = b ? realloc(b, n + extra) : NULL;
    if (!c) { free(b); return false; }
    memset(c + n, 0, extra);
    bool ok = qf_test_write_file(dst, c, n + extra);
    free(c);
    return ok;
}

static void test_coverage(const char *model) {
    char big[4096], v1[4096], v1big[4096];
    qf_error err = {0};
    qf_integrity_report rep;
    /* 10 MB appended: the file's length is in the header digest */
    CHECK(append_bytes(model, qf_test_path("appended.gguf", big, sizeof big), 10u << 20));
    CHECK(verify(big, NULL, 2, &rep, &err) == QF_E_CHECK && !rep.header_ok && rep.n_bad == 0 && rep.scheme == 2 &&
          !rep.rewritten);
    qf_integrity_report_free(&rep);
    CHECK(append_bytes(model, big, 1)); /* one byte is enough */
    CHECK(verify(big, NULL, 2, &rep, &err) == QF_E_CHECK && !rep.header_ok);
    qf_integrity_report_free(&rep);
    CHECK_OK(verify(model, NULL, 2, &rep, &err), &err);
    CHECK(rep.scheme == 2);
    qf_integrity_report_free(&rep);

    /* a scheme-1 file (tests/data, written by qforge before scheme 2) still verifies, says so, and keeps
     * its documented limit: bytes appended at the end are not covered */
    snprintf(v1, sizeof v1, "%s/tests/data/integrity-scheme1.gguf", qf_test_root);
    CHECK_OK(verify(v1, NULL, 1, &rep, &err), &err);
    CHECK(rep.scheme == 1 && rep.n_tensors == 2 && rep.header_ok);
    qf_integrity_report_free(&rep);
    CHECK(append_bytes(v1, qf_test_path("v1-appended.gguf", v1big, sizeof v1big), 4096));
    CHECK_OK(verify(v1big, NULL, 1, &rep, &err), &err);
    qf_integrity_report_free(&rep);
    size_t n = 0;
    uint8_t *b = qf_test_read_file(v1, &n);
    qf_gguf *g = NULL;
    if (b && qf_gguf_open_mem("v1", b, n, &g, &err) == QF_OK) { /* and a data byte is still caught */
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, 1);
        b[qf_gguf_data_offset(g) + t->offset + 3] ^= 1;
        CHECK(qf_test_write_file(v1big, b, n));
        qf_gguf_close(g);
        CHECK(verify(v1big, NULL, 1, &rep, &err) == QF_E_CHECK && rep.n_bad == 1 && !strcmp(rep.bad[0], "b.weight"));
        qf_integrity_report_free(&rep);
    }
    free(b);
}

/* ---- 5. a file another tool rewrote -------------------------------------------------------------- */

/* Re-writes src to dst the ways the tests need, every key copied (the writer replaces stale digest keys
 * when digests are on, and writes exactly the keys given when they are off):
 *   - with fresh digests and one byte of tensor `flip` changed: an attacker who recomputes the digests
 *     passes the integrity check, and only the signature can tell;
 *   - as llama-quantize does: stale digest keys copied, tensors in reverse order, tensor `retype`
 *     re-encoded (as F32 zeros), a key added after the copied ones. */
typedef struct rewrite_how {
    bool digests, reverse;
    long flip;          /* tensor whose first byte changes, or -1 */
    const char *retype; /* tensor stored as F32 instead, or NULL */
    const char *extra_key;
} rewrite_how;

static qf_status write_as(qf_gguf_writer *w, const qf_gguf_tensor *t, size_t i, const rewrite_how *how, qf_error *err) {
    if (how->retype && !strcmp(t->name, how->retype)) {
        uint64_t bytes = 4;
        for (uint32_t d = 0; d < t->n_dims; d++) bytes *= t->ne[d];
        uint8_t *zeros = calloc(1, bytes);
        qf_status st = zeros ? qf_gguf_write_tensor_data(w, zeros, bytes, err) : QF_E_NOMEM;
        free(zeros);
        return st;
    }
    uint8_t first = (uint8_t)(t->data[0] ^ ((long)i == how->flip ? 1 : 0));
    qf_status st = qf_gguf_write_tensor_data(w, &first, 1, err);
    return st == QF_OK ? qf_gguf_write_tensor_data(w, t->data + 1, t->nbytes - 1, err) : st;
}

static bool rewrite_file(const char *src, const char *dst, const rewrite_how *how) {
    qf_error err = {0};
    qf_gguf *g = NULL;
    qf_gguf_writer *w = NULL;
    if (qf_gguf_open(src, &g, &err) != QF_OK || qf_gguf_writer_open(dst, &w, &err) != QF_OK) {
        qf_gguf_close(g);
        return false;
    }
    if (!how->digests) qf_gguf_writer_set_digests(w, false, &err);
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) qf_gguf_set_kv(w, qf_gguf_kv_at(g, i), &err);
    if (how->extra_key) qf_gguf_set_str(w, how->extra_key, "x", &err);
    size_t n = qf_gguf_n_tensors(g);
    for (size_t k = 0; k < n; k++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, how->reverse ? n - 1 - k : k);
        bool re = how->retype && !strcmp(t->name, how->retype);
        qf_gguf_add_tensor(w, t->name, re ? 0 /* F32 */ : t->type, t->n_dims, t->ne, &err);
    }
    qf_status st = qf_gguf_begin_data(w, &err);
    for (size_t k = 0; k < n && st == QF_OK; k++) {
        size_t i = how->reverse ? n - 1 - k : k;
        st = write_as(w, qf_gguf_tensor_at(g, i), i, how, &err);
    }
    st = st == QF_OK ? qf_gguf_writer_finish(w, &err) : (qf_gguf_writer_abort(w), st);
    qf_gguf_close(g);
    return st == QF_OK;
}

static void test_rewritten(const char *model) {
    char out[4096];
    qf_error err = {0};
    qf_integrity_report rep;
    rewrite_how how = {.reverse = true, .flip = -1, .retype = "blk.0.ffn_up.weight", .extra_key = "quantize.imatrix.file"};
    CHECK(rewrite_file(model, qf_test_path("rewritten.gguf", out, sizeof out), &how));
    qf_status st = verify(out, NULL, 2, &rep, &err);
    CHECK_MSG(st == QF_E_CHECK && rep.rewritten && !rep.header_ok && strstr(err.msg, "rewritten by another tool"),
              "%s: %s", qf_status_name(st), err.msg);
    /* matched by name: only the re-encoded tensor is not as qforge wrote it */
    CHECK_MSG(rep.n_tensors == 21 && rep.n_bad == 1 && rep.n_missing == 0, "%zu of %zu tensors named: %s", rep.n_bad,
              rep.n_tensors, err.msg);
    CHECK(rep.n_bad == 1 && !strcmp(rep.bad[0], "blk.0.ffn_up.weight") && rep.bad_verdict[0] == QF_TENSOR_RETYPED);
    CHECK(strstr(err.msg, "tensors in another order") && strstr(err.msg, "20 tensors keep their bytes"));
    qf_integrity_report_free(&rep);
}

/* ---- 6. signatures ----------------------------------------------------------------------------- */

static bool write_keypair(const char *type, const char *priv, const char *pub) {
    EVP_PKEY *k = !strcmp(type, "ED25519") ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                  : !strcmp(type, "RSA")   ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                           : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FILE *a = fopen(priv, "wb"), *b = fopen(pub, "wb");
    bool ok = k && a && b && PEM_write_PrivateKey(a, k, NULL, NULL, 0, NULL, NULL) == 1 && PEM_write_PUBKEY(b, k) == 1;
    if (a) fclose(a);
    if (b) fclose(b);
    EVP_PKEY_free(k);
    return ok;
}

static void test_signatures(const char *model) {
    char key[4096], pub[4096], key2[4096], pub2[4096], eck[4096], ecp[4096], m[4096], sig[4200], other[4200];
    CHECK(write_keypair("ED25519", qf_test_path("key.pem", key, sizeof key), qf_test_path("pub.pem", pub, sizeof pub)));
    CHECK(write_keypair("ED25519", qf_test_path("key2.pem", key2, sizeof key2), qf_test_path("pub2.pem", pub2, sizeof pub2)));
    CHECK(write_keypair("EC", qf_test_path("ec.pem", eck, sizeof eck), qf_test_path("ecpub.pem", ecp, sizeof ecp)));
    qf_test_path("signed.gguf", m, sizeof m);
    snprintf(sig, sizeof sig, "%s.sig", m);
    CHECK(copy_file(model, m));
    unlink(sig);
    qf_error err = {0};
    qf_integrity_report rep;

    qf_sign_opts so = {.path = m, .key = key, .threads = 2};
    CHECK_OK(qf_sign(&so, &err), &err);
    CHECK(qf_test_file_exists(sig));
    CHECK_OK(verify(m, pub, 2, &rep, &err), &err);
    CHECK(rep.sig == QF_SIG_OK);
    qf_integrity_report_free(&rep);

    /* the wrong public key */
    CHECK(verify(m, pub2, 2, &rep, &err) == QF_E_CHECK && rep.sig == QF_SIG_WRONG_KEY && strstr(err.msg, "signed by key"));
    qf_integrity_report_free(&rep);

    /* a damaged signature: one base64 character of the signature changed */
    size_t n = 0;
    uint8_t *s = qf_test_read_file(sig, &n);
    char *p = s ? strstr((char *)s, "\"signature\": \"") : NULL;
    if (p) {
        p += strlen("\"signature\": \"") + 10;
        *p = *p == 'A' ? 'B' : 'A';
        CHECK(qf_test_write_file(sig, s, n));
        CHECK(verify(m, pub, 2, &rep, &err) == QF_E_CHECK && rep.sig == QF_SIG_BAD && strstr(err.msg, "BAD signature"));
        qf_integrity_report_free(&rep);
    }
    CHECK(p != NULL);
    free(s);

    /* tampered tensor with recomputed digests: integrity passes, the signature does not */
    CHECK_OK(qf_sign(&so, &err), &err);
    snprintf(other, sizeof other, "%s.tampered.gguf", m);
    rewrite_how redigest = {.digests = true, .flip = 3};
    CHECK(rewrite_file(m, other, &redigest));
    qf_integrity_opts io = {.path = other, .pubkey = pub, .sig = sig, .threads = 2};
    CHECK_OK(verify(other, NULL, 2, &rep, &err), &err);
    qf_integrity_report_free(&rep);
    CHECK(qf_verify_integrity(&io, &rep, &err) == QF_E_CHECK && rep.sig == QF_SIG_BAD && rep.n_bad == 0 &&
          strstr(err.msg, "digests differ from those that were signed"));
    qf_integrity_report_free(&rep);

    /* tampered tensor, digests not updated: both the tensor and (separately) a valid signature */
    char flip[4200];
    snprintf(flip, sizeof flip, "%s.flip.gguf", m);
    CHECK(copy_file(m, flip));
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(m, &g, &err), &err);
    if (g) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, 5);
        int fd = open(flip, O_RDWR);
        CHECK(fd >= 0 && poke(fd, (size_t)(qf_gguf_data_offset(g) + t->offset + 7), (uint8_t)(t->data[7] ^ 0x10)));
        if (fd >= 0) close(fd);
        io.path = flip;
        CHECK(qf_verify_integrity(&io, &rep, &err) == QF_E_CHECK && rep.sig == QF_SIG_OK && rep.n_bad == 1 &&
              strcmp(rep.bad[0], t->name) == 0);
        qf_integrity_report_free(&rep);
        /* and signing a damaged file is refused, leaving no signature behind */
        char fsig[4300];
        snprintf(fsig, sizeof fsig, "%s.sig", flip);
        unlink(fsig);
        qf_sign_opts fo = {.path = flip, .key = key, .threads = 1};
        CHECK(qf_sign(&fo, &err) == QF_E_CHECK && strstr(err.msg, "refusing to sign") && strstr(err.msg, "1 of 21"));
        CHECK(!qf_test_file_exists(fsig));
        qf_gguf_close(g);
    }

    /* missing and garbage signature files, non-Ed25519 and missing keys */
    io.path = m;
    io.sig = other; /* a GGUF is not a signature file */
    CHECK(qf_verify_integrity(&io, &rep, &err) == QF_E_INPUT);
    qf_integrity_report_free(&rep);
    io.sig = NULL;
    unlink(sig);
    CHECK(qf_verify_integrity(&io, &rep, &err) == QF_E_NOTFOUND && strstr(err.msg, ".sig"));
    qf_integrity_report_free(&rep);
    so.key = eck;
    CHECK(qf_sign(&so, &err) == QF_E_UNSUPPORTED && strstr(err.msg, "Ed25519 keys only") && strstr(err.msg, "type EC"));
    char rsak[4096], rsap[4096]; /* says what is needed and what was given, not "key type unknown" */
    CHECK(write_keypair("RSA", qf_test_path("rsa.pem", rsak, sizeof rsak), qf_test_path("rsapub.pem", rsap, sizeof rsap)));
    so.key = rsak;
    CHECK_MSG(qf_sign(&so, &err) == QF_E_UNSUPPORTED && strstr(err.msg, "Ed25519 keys only") &&
                  strstr(err.msg, "a key of type RSA (2048 bits)"), "%s", err.msg);
    CHECK(!qf_test_file_exists(sig));
    so.key = pub; /* a public key cannot sign */
    CHECK(qf_sign(&so, &err) == QF_E_INPUT && strstr(err.msg, "genpkey"));
    so.key = key;
    so.out = m; /* never over the model itself */
    CHECK(qf_sign(&so, &err) == QF_E_USAGE && strstr(err.msg, "the output is the input"));
    so.out = other;
    CHECK_OK(qf_sign(&so, &err), &err); /* -o elsewhere */
    io.sig = other;
    io.pubkey = ecp;
    CHECK(qf_verify_integrity(&io, &rep, &err) == QF_E_UNSUPPORTED);
    qf_integrity_report_free(&rep);
    io.pubkey = pub;
    CHECK_OK(qf_verify_integrity(&io, &rep, &err), &err);
    qf_integrity_report_free(&rep);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    char model[4096];
    test_writer();
    if (make_model("model.gguf", model, sizeof model)) {
        test_clean(model);
        test_flips(model);
        test_coverage(model);
        test_rewritten(model);
        test_signatures(model);
    }
    return qf_test_finish();
}
