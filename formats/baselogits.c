/* Compact base-model logits for verify (baselogits.h). */
#include "formats/baselogits.h"
#include "formats/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'Q', 'F', 'B', 'L', 'O', 'G', 'I', 'T'};
#define VERSION 2u  /* written; version 1 (no routes) is read too */
#define FIXED_V1 184u /* bytes before the label */
#define FIXED_V2 196u
#define MASS_TOL 1e-3

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static float rdf(const uint8_t *p) { uint32_t u = rd32(p); float f; memcpy(&f, &u, sizeof f); return f; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }
static void wrf(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, sizeof u); wr32(p, u); }

/* Header fields that do not depend on the records: ranges and the protocol's own relations. */
static qf_status check_header(const char *label, const qf_baselogits_header *h, qf_error *err) {
    if (h->n_vocab < 1 || h->k < 1 || h->k > QF_BASELOGITS_MAX_K || h->k > h->n_vocab)
        return qf_fail(err, QF_E_INPUT, "%s: k %u does not fit a vocabulary of %u (1 <= k <= min(n_vocab, %u))", label,
                       h->k, h->n_vocab, QF_BASELOGITS_MAX_K);
    if (h->ctx < 4 || h->ctx > (1u << 20) || h->first != h->ctx / 2 || h->n_chunks < 1)
        return qf_fail(err, QF_E_INPUT, "%s: ctx %u, first scored position %u, %u chunks: not a verify run", label, h->ctx,
                       h->first, h->n_chunks);
    if (h->flags & ~(QF_BASELOGITS_FLAG_NO_ESCAPE | QF_BASELOGITS_FLAG_ACT_Q8 | QF_BASELOGITS_FLAG_BOS))
        return qf_fail(err, QF_E_INPUT, "%s: unknown flags 0x%x", label, h->flags);
    if (h->route_layers ? h->route_layers > QF_BASELOGITS_MAX_ROUTE_LAYERS || h->route_k < 1 ||
                              h->route_k > QF_BASELOGITS_MAX_ROUTE_K || h->n_expert < h->route_k || h->n_expert > 65536
                        : h->route_k || h->n_expert)
        return qf_fail(err, QF_E_INPUT, "%s: routes of %u layers, %u of %u experts per token: not a mixture-of-experts "
                       "layout (<= %u layers, 1 <= k <= min(experts, %u), experts <= 65536; all 0 without routes)", label,
                       h->route_layers, h->route_k, h->n_expert, QF_BASELOGITS_MAX_ROUTE_LAYERS, QF_BASELOGITS_MAX_ROUTE_K);
    uint64_t per = h->ctx - 1 - h->first, scored, tokens;
    if (!qf_mul_ok(h->n_chunks, per, &scored) || scored != h->n_scored || !qf_mul_ok(h->n_chunks, h->ctx, &tokens) ||
        h->n_tokens < tokens)
        return qf_fail(err, QF_E_INPUT, "%s: %llu scored positions and %llu text tokens do not fit %u chunks of %u", label,
                       (unsigned long long)h->n_scored, (unsigned long long)h->n_tokens, h->n_chunks, h->ctx);
    return QF_OK;
}

static uint32_t fixed_bytes(uint32_t version) { return version == 1 ? FIXED_V1 : FIXED_V2; }

/* The header's fixed fields of a file of this version (its first fixed_bytes(version) bytes). */
static void read_fixed(const uint8_t *p, uint32_t version, qf_baselogits_header *h, uint32_t *label_len) {
    h->version = version;
    h->k = rd32(p + 12);
    h->n_vocab = rd32(p + 16);
    h->ctx = rd32(p + 20);
    h->n_chunks = rd32(p + 24);
    h->first = rd32(p + 28);
    h->flags = rd32(p + 32);
    h->n_tokens = rd64(p + 36);
    h->n_scored = rd64(p + 44);
    memcpy(h->base, p + 52, 32);
    memcpy(h->vocab, p + 84, 32);
    memcpy(h->text, p + 116, 32);
    memcpy(h->tokens, p + 148, 32);
    h->route_layers = version > 1 ? rd32(p + 180) : 0;
    h->route_k = version > 1 ? rd32(p + 184) : 0;
    h->n_expert = version > 1 ? rd32(p + 188) : 0;
    *label_len = rd32(p + fixed_bytes(version) - 4);
}

/* Bytes a file with this header occupies: header, label, route layers, records, digest. False on overflow
 * (the route fields must be in range first: check_header). */
static bool file_size(const qf_baselogits_header *h, uint32_t label_len, uint64_t *rec_bytes, uint64_t *size) {
    uint64_t recs;
    *rec_bytes = 8 + 8 * (uint64_t)h->k + 2 * (uint64_t)h->route_layers * h->route_k;
    return qf_mul_ok(h->n_scored, *rec_bytes, &recs) &&
           qf_add_ok(recs, fixed_bytes(h->version) + (uint64_t)label_len + 4 * (uint64_t)h->route_layers + 32, size);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* A record's experts: per layer route_k distinct ids below n_expert (k is small: pairs are compared). */
static qf_status check_routes(const char *label, const qf_baselogits *b, const qf_baselogits_rec *r, uint64_t i,
                              qf_error *err) {
    uint32_t k = b->h.route_k;
    for (uint32_t l = 0; l < b->h.route_layers; l++)
        for (uint32_t j = 0; j < k; j++) {
            uint16_t e = qf_baselogits_expert(r, l * k + j);
            bool repeated = false;
            for (uint32_t q = 0; q < j && !repeated; q++) repeated = qf_baselogits_expert(r, l * k + q) == e;
            if (e >= b->h.n_expert || repeated)
                return qf_fail(err, QF_E_INPUT, "%s: position %llu: layer %u's expert %u is %s", label,
                               (unsigned long long)i, b->h.route_layer[l], e,
                               repeated ? "repeated" : "outside the layer's experts");
        }
    return QF_OK;
}

/* One record: nll and tail in range, ids distinct and in the vocabulary, logp non-increasing and <= 0,
 * masses summing to 1. Repeated ids are found by sorting a copy (`ids`, k entries): memory follows k,
 * which the file's size justifies, not n_vocab, which a header can claim freely. */
static qf_status check_record(const char *label, const qf_baselogits *b, uint64_t i, uint32_t *ids, qf_error *err) {
    qf_baselogits_rec r = qf_baselogits_at(b, i);
    if (!(r.nll >= 0.0f) || isinf(r.nll) || !(r.tail >= 0.0f && r.tail <= 1.0f))
        return qf_fail(err, QF_E_INPUT, "%s: position %llu: nll %g or tail mass %g out of range", label,
                       (unsigned long long)i, (double)r.nll, (double)r.tail);
    double mass = r.tail;
    float prev = 0.0f;
    for (uint32_t j = 0; j < b->h.k; j++) {
        uint32_t id = ids[j] = qf_baselogits_id(&r, j);
        float lp = qf_baselogits_logp(&r, j);
        if (id >= b->h.n_vocab)
            return qf_fail(err, QF_E_INPUT, "%s: position %llu: token id %u is outside the vocabulary of %u", label,
                           (unsigned long long)i, id, b->h.n_vocab);
        if (!(lp <= prev) || isinf(lp))
            return qf_fail(err, QF_E_INPUT, "%s: position %llu: log-probability %g of entry %u is not finite, <= 0 and "
                           "non-increasing", label, (unsigned long long)i, (double)lp, j);
        prev = lp;
        mass += exp((double)lp);
    }
    if (!(fabs(mass - 1.0) <= MASS_TOL))
        return qf_fail(err, QF_E_INPUT, "%s: position %llu: probabilities sum to %.6g, not 1", label, (unsigned long long)i,
                       mass);
    qsort(ids, b->h.k, sizeof *ids, cmp_u32);
    for (uint32_t j = 1; j < b->h.k; j++)
        if (ids[j] == ids[j - 1])
            return qf_fail(err, QF_E_INPUT, "%s: position %llu: token id %u is repeated", label, (unsigned long long)i,
                           ids[j]);
    return check_routes(label, b, &r, i, err);
}

qf_status qf_baselogits_parse(const char *label, const uint8_t *p, uint64_t size, qf_baselogits *b, qf_error *err) {
    memset(b, 0, sizeof *b);
    if (size < 12 || memcmp(p, MAGIC, sizeof MAGIC) != 0)
        return qf_fail(err, QF_E_INPUT, "%s: not a qforge base-logits file (verify --save-base writes them)", label);
    uint32_t version = rd32(p + 8);
    if (version < 1 || version > VERSION)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: base-logits version %u; this qforge reads versions 1 to %u", label,
                       version, VERSION);
    uint32_t fixed = fixed_bytes(version), label_len;
    if (size < fixed + 32)
        return qf_fail(err, QF_E_INPUT, "%s: %llu bytes, shorter than a base-logits header", label, (unsigned long long)size);
    qf_baselogits_header *h = &b->h;
    read_fixed(p, version, h, &label_len);
    qf_status st = check_header(label, h, err);
    if (st) return st;
    uint64_t want;
    if (label_len > QF_BASELOGITS_MAX_LABEL || !file_size(h, label_len, &b->rec_bytes, &want) || want != size)
        return qf_fail(err, QF_E_INPUT, "%s: %llu bytes, but its header (%llu positions of %u tokens, a %u-byte label) "
                       "implies %s", label, (unsigned long long)size, (unsigned long long)h->n_scored, h->k, label_len,
                       label_len > QF_BASELOGITS_MAX_LABEL ? "a label over 4096 bytes" : "another size");
    if (memchr(p + fixed, 0, label_len))
        return qf_fail(err, QF_E_INPUT, "%s: the base label holds a NUL byte", label);
    memcpy(h->label, p + fixed, label_len);
    h->label[label_len] = '\0';
    for (uint32_t l = 0; l < h->route_layers; l++) {
        h->route_layer[l] = rd32(p + fixed + label_len + 4 * (size_t)l);
        if (l && h->route_layer[l] <= h->route_layer[l - 1])
            return qf_fail(err, QF_E_INPUT, "%s: its mixture-of-experts layers are not ascending (%u after %u)", label,
                           h->route_layer[l], h->route_layer[l - 1]);
    }
    uint8_t d[32];
    unsigned dl = 0;
    if (!EVP_Digest(p, (size_t)(size - 32), d, &dl, EVP_sha256(), NULL))
        return qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 unavailable");
    if (memcmp(d, p + size - 32, 32) != 0)
        return qf_fail(err, QF_E_INPUT, "%s: the file's SHA-256 does not match its contents (damaged or truncated)", label);
    b->bytes = (uint8_t *)p;
    b->size = size;
    b->rec_off = fixed + label_len + 4 * (uint64_t)h->route_layers;
    uint32_t *ids = qf_calloc_n(h->k, sizeof *ids);
    if (!ids) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", label);
    for (uint64_t i = 0; !st && i < h->n_scored; i++) st = check_record(label, b, i, ids, err);
    free(ids);
    if (st) memset(b, 0, sizeof *b);
    return st;
}

/* Read [0, n) of fd into a new buffer. */
static qf_status read_all(int fd, const char *path, uint64_t n, uint8_t **out, qf_error *err) {
    uint8_t *buf = malloc(n ? (size_t)n : 1);
    if (!buf) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)n);
    for (uint64_t off = 0; off < n;) {
        ssize_t r = pread(fd, buf + off, (size_t)QF_MIN(n - off, 1u << 30), (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            return qf_fail(err, QF_E_IO, "%s: read failed: %s", path, r ? strerror(errno) : "the file shrank");
        }
        off += (uint64_t)r;
    }
    *out = buf;
    return QF_OK;
}

qf_status qf_baselogits_load(const char *path, qf_baselogits *b, qf_error *err) {
    memset(b, 0, sizeof *b);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qf_fail(err, errno == ENOENT ? QF_E_NOTFOUND : QF_E_IO, "%s: open failed: %s", path, strerror(errno));
    struct stat sb;
    qf_status st = QF_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) st = qf_fail(err, QF_E_INPUT, "%s: not a regular file", path);
    uint64_t size = st ? 0 : (uint64_t)sb.st_size, have = QF_MIN(size, FIXED_V2);
    uint8_t *buf = NULL;
    /* the header justifies the allocation: read it first; a file that is not one, or whose size its header
     * does not imply, is refused from those bytes alone */
    if (!st) st = read_all(fd, path, have, &buf, err);
    uint32_t version = !st && have >= 12 && !memcmp(buf, MAGIC, sizeof MAGIC) ? rd32(buf + 8) : 0;
    if (version >= 1 && version <= VERSION && have >= fixed_bytes(version)) {
        qf_baselogits_header h;
        uint32_t label_len;
        uint64_t rb, want;
        read_fixed(buf, version, &h, &label_len);
        qf_error ignored;
        if (check_header(path, &h, &ignored) == QF_OK && (!file_size(&h, label_len, &rb, &want) || want != size))
            st = qf_fail(err, QF_E_INPUT, "%s: %llu bytes, but its header (%llu positions of %u tokens) implies another size",
                         path, (unsigned long long)size, (unsigned long long)h.n_scored, h.k);
        free(buf);
        buf = NULL;
        if (!st) st = read_all(fd, path, have = size, &buf, err);
    }
    close(fd);
    if (!st) st = qf_baselogits_parse(path, buf, have, b, err);
    if (st) { free(buf); return st; }
    b->owned = true;
    return QF_OK;
}

void qf_baselogits_free(qf_baselogits *b) {
    if (b->owned) free(b->bytes);
    memset(b, 0, sizeof *b);
}

qf_baselogits_rec qf_baselogits_at(const qf_baselogits *b, uint64_t i) {
    const uint8_t *p = b->bytes + b->rec_off + i * b->rec_bytes;
    return (qf_baselogits_rec){.nll = rdf(p), .tail = rdf(p + 4), .ids = p + 8, .logp = p + 8 + 4 * (size_t)b->h.k,
                               .experts = p + 8 + 8 * (size_t)b->h.k};
}

/* ---- writer ----------------------------------------------------------------------------------------- */

struct qf_baselogits_writer {
    qf_outfile *f;
    EVP_MD_CTX *md;
    uint32_t k, n_experts; /* per record: tokens kept, route entries */
    uint64_t want, written;
    uint8_t *rec;
};

static qf_status put(qf_baselogits_writer *w, const void *p, size_t n, qf_error *err) {
    if (!EVP_DigestUpdate(w->md, p, n)) return qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 failed");
    return qf_outfile_write(w->f, p, n, err);
}

qf_status qf_baselogits_writer_open(const char *path, const qf_baselogits_header *h, qf_baselogits_writer **out,
                                    qf_error *err) {
    *out = NULL;
    size_t label_len = strlen(h->label);
    uint64_t rb, size;
    qf_status st = check_header(path, h, err);
    if (st) return st;
    if (label_len > QF_BASELOGITS_MAX_LABEL || !file_size(h, (uint32_t)label_len, &rb, &size))
        return qf_fail(err, QF_E_USAGE, "%s: the base label or the run is too large for a base-logits file", path);
    qf_baselogits_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->md = EVP_MD_CTX_new()) || !(w->rec = malloc((size_t)rb))) {
        if (w) { EVP_MD_CTX_free(w->md); free(w); }
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    }
    w->k = h->k;
    w->n_experts = h->route_layers * h->route_k;
    w->want = h->n_scored;
    if (!EVP_DigestInit_ex(w->md, EVP_sha256(), NULL)) st = qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 unavailable");
    if (!st) st = qf_outfile_open(path, &w->f, err);
    if (st) { EVP_MD_CTX_free(w->md); free(w->rec); free(w); return st; }
    qf_outfile_reserve(w->f, size);
    uint8_t head[FIXED_V2];
    memcpy(head, MAGIC, sizeof MAGIC);
    wr32(head + 8, VERSION);
    wr32(head + 12, h->k);
    wr32(head + 16, h->n_vocab);
    wr32(head + 20, h->ctx);
    wr32(head + 24, h->n_chunks);
    wr32(head + 28, h->first);
    wr32(head + 32, h->flags);
    wr64(head + 36, h->n_tokens);
    wr64(head + 44, h->n_scored);
    memcpy(head + 52, h->base, 32);
    memcpy(head + 84, h->vocab, 32);
    memcpy(head + 116, h->text, 32);
    memcpy(head + 148, h->tokens, 32);
    wr32(head + 180, h->route_layers);
    wr32(head + 184, h->route_k);
    wr32(head + 188, h->n_expert);
    wr32(head + 192, (uint32_t)label_len);
    st = put(w, head, sizeof head, err);
    if (!st) st = put(w, h->label, label_len, err);
    for (uint32_t l = 0; !st && l < h->route_layers; l++) {
        uint8_t v[4];
        wr32(v, h->route_layer[l]);
        st = put(w, v, sizeof v, err);
    }
    if (st) { qf_baselogits_writer_abort(w); return st; }
    *out = w;
    return QF_OK;
}

qf_status qf_baselogits_write(qf_baselogits_writer *w, float nll, float tail, const uint32_t *ids, const float *logp,
                              const uint16_t *experts, qf_error *err) {
    if (w->written == w->want)
        return qf_fail(err, QF_E_INTERNAL, "%s: more than the %llu positions declared", qf_outfile_path(w->f),
                       (unsigned long long)w->want);
    wrf(w->rec, nll);
    wrf(w->rec + 4, tail);
    for (uint32_t j = 0; j < w->k; j++) {
        wr32(w->rec + 8 + 4 * (size_t)j, ids[j]);
        wrf(w->rec + 8 + 4 * ((size_t)w->k + j), logp[j]);
    }
    uint8_t *ex = w->rec + 8 + 8 * (size_t)w->k;
    for (uint32_t i = 0; i < w->n_experts; i++) { ex[2 * i] = (uint8_t)experts[i]; ex[2 * i + 1] = (uint8_t)(experts[i] >> 8); }
    w->written++;
    return put(w, w->rec, 8 + 8 * (size_t)w->k + 2 * (size_t)w->n_experts, err);
}

static void writer_free(qf_baselogits_writer *w) {
    EVP_MD_CTX_free(w->md);
    free(w->rec);
    free(w);
}

qf_status qf_baselogits_writer_finish(qf_baselogits_writer *w, qf_error *err) {
    uint8_t d[32];
    unsigned dl = 0;
    qf_status st = QF_OK;
    if (w->written != w->want)
        st = qf_fail(err, QF_E_INTERNAL, "%s: %llu of %llu positions written", qf_outfile_path(w->f),
                     (unsigned long long)w->written, (unsigned long long)w->want);
    if (!st && !EVP_DigestFinal_ex(w->md, d, &dl)) st = qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 failed");
    if (!st) st = qf_outfile_write(w->f, d, sizeof d, err);
    if (!st) st = qf_outfile_commit(w->f, err);
    else qf_outfile_abort(w->f);
    writer_free(w);
    return st;
}

void qf_baselogits_writer_abort(qf_baselogits_writer *w) {
    if (!w) return;
    qf_outfile_abort(w->f);
    writer_free(w);
}
