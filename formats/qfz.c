/*
 * qfz.c — qf_pack / qf_unpack (qforge.h): zstd transport packs in independent frames (layout: qfz.h).
 *
 * Both directions stream: workers read (pread) and transform one chunk per slot, the calling thread
 * appends results in order through qf_outfile, so memory is slots x (chunk + its compressed bound)
 * whatever the file size, and the output appears only once complete and checked.
 * Unpack trusts nothing it reads: header, index and frames are validated against each other and the
 * file size before any frame is decompressed, every frame must decode to exactly its indexed size and
 * SHA-256, and a GGUF inside is re-verified against its own qforge.integrity digests before commit.
 */
#include "qfz.h"
#include "gguf.h"
#include "integrity.h"
#include "ordered.h"
#include "outfile.h"
#include "formats/infile.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qfz.c copies little-endian file values directly; a big-endian port needs byte swaps"
#endif

static const char k_header_magic[8] = {'Q', 'F', 'Z', 'P', 'A', 'C', 'K', '\0'};
static const char k_index_magic[8] = {'Q', 'F', 'Z', 'I', 'N', 'D', 'E', 'X'};

/* zstd's best case is an RLE block: 3 bytes of block header and 1 byte for up to 128 KiB. */
#define QFZ_MAX_RATIO ((unsigned)(ZSTD_BLOCKSIZE_MAX / 4))

typedef struct qfz_header {
    uint64_t chunk, raw_size, n_frames, index_off;
} qfz_header;

typedef struct qfz_entry {
    uint64_t comp_off, comp_size, raw_off, raw_size;
    uint8_t sha[32];
} qfz_entry;

/* ---- encoding ---------------------------------------------------------------------------------- */

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The skippable-frame prefix and the 64 header bytes (QF_QFZ_FRAMES_OFF bytes in all). */
static void header_encode(const qfz_header *h, uint8_t out[QF_QFZ_FRAMES_OFF]) {
    memset(out, 0, QF_QFZ_FRAMES_OFF);
    put32(out, QF_QFZ_SKIPPABLE_MAGIC);
    put32(out + 4, QF_QFZ_HEADER_BYTES);
    uint8_t *p = out + 8;
    memcpy(p, k_header_magic, 8);
    put32(p + 8, QF_QFZ_VERSION);
    put32(p + 12, 0);
    put64(p + 16, h->chunk);
    put64(p + 24, h->raw_size);
    put64(p + 32, h->n_frames);
    put64(p + 40, h->index_off);
}

static void entry_encode(const qfz_entry *e, uint8_t out[QF_QFZ_ENTRY_BYTES]) {
    put64(out, e->comp_off);
    put64(out + 8, e->comp_size);
    put64(out + 16, e->raw_off);
    put64(out + 24, e->raw_size);
    memcpy(out + 32, e->sha, 32);
}

static void entry_decode(const uint8_t in[QF_QFZ_ENTRY_BYTES], qfz_entry *e) {
    e->comp_off = get64(in);
    e->comp_size = get64(in + 8);
    e->raw_off = get64(in + 16);
    e->raw_size = get64(in + 24);
    memcpy(e->sha, in + 32, 32);
}

static bool sha256(const void *p, size_t n, uint8_t out[32]) {
    unsigned len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32;
}

/* Frames for raw_size bytes in chunks of `chunk` (chunk > 0): ceil(raw_size / chunk), no overflow. */
static uint64_t frames_for(uint64_t raw_size, uint64_t chunk) { return raw_size / chunk + (raw_size % chunk != 0); }

/* ---- I/O helpers ------------------------------------------------------------------------------- */

/* Reads exactly n bytes at off. Hitting the end early means the file is shorter than it said it was
 * (a truncated pack, or an input that shrank while we read it): bad input, not an I/O failure. */
static qf_status pread_all(int fd, void *buf, uint64_t n, uint64_t off, const char *path, qf_error *err) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, (size_t)QF_MIN(n, (uint64_t)1 << 30), (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return qf_fail(err, QF_E_IO, "%s: read at offset %llu failed: %s", path, (unsigned long long)off, strerror(errno));
        if (r == 0)
            return qf_fail(err, QF_E_INPUT, "%s: truncated: %llu bytes missing at offset %llu", path, (unsigned long long)n,
                           (unsigned long long)off);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return QF_OK;
}

/* Per-slot buffers and per-worker codec contexts shared by both directions. */
typedef struct buffers {
    unsigned slots, workers;
    size_t raw_cap, comp_cap;
    uint8_t **raw, **comp;
    size_t *comp_len;   /* pack: compressed bytes in comp[slot] */
    ZSTD_CCtx **cctx;
    ZSTD_DCtx **dctx;
} buffers;

static void buffers_free(buffers *b) {
    for (unsigned i = 0; i < b->slots; i++) {
        if (b->raw) free(b->raw[i]);
        if (b->comp) free(b->comp[i]);
    }
    for (unsigned i = 0; i < b->workers; i++) {
        if (b->cctx) ZSTD_freeCCtx(b->cctx[i]);
        if (b->dctx) ZSTD_freeDCtx(b->dctx[i]);
    }
    free(b->raw);
    free(b->comp);
    free(b->comp_len);
    free(b->cctx);
    free(b->dctx);
    memset(b, 0, sizeof *b);
}

/* level > 0: compression contexts at that level (with checksums, so plain zstd -d checks frames too);
 * level == 0: decompression contexts. */
static qf_status buffers_alloc(buffers *b, unsigned slots, unsigned workers, size_t raw_cap, int level, const char *path,
                               qf_error *err) {
    *b = (buffers){.slots = slots, .workers = workers, .raw_cap = raw_cap, .comp_cap = ZSTD_compressBound(raw_cap)};
    b->raw = calloc(slots, sizeof *b->raw);
    b->comp = calloc(slots, sizeof *b->comp);
    b->comp_len = calloc(slots, sizeof *b->comp_len);
    b->cctx = level ? calloc(workers, sizeof *b->cctx) : NULL;
    b->dctx = level ? NULL : calloc(workers, sizeof *b->dctx);
    bool ok = b->raw && b->comp && b->comp_len && (level ? b->cctx != NULL : b->dctx != NULL);
    for (unsigned i = 0; ok && i < slots; i++)
        ok = (b->raw[i] = malloc(raw_cap)) && (b->comp[i] = malloc(b->comp_cap));
    for (unsigned i = 0; ok && i < workers; i++) {
        if (level) {
            ok = (b->cctx[i] = ZSTD_createCCtx()) && !ZSTD_isError(ZSTD_CCtx_setParameter(b->cctx[i], ZSTD_c_compressionLevel, level)) &&
                 !ZSTD_isError(ZSTD_CCtx_setParameter(b->cctx[i], ZSTD_c_checksumFlag, 1)) &&
                 !ZSTD_isError(ZSTD_CCtx_setParameter(b->cctx[i], ZSTD_c_contentSizeFlag, 1));
        } else {
            ok = (b->dctx[i] = ZSTD_createDCtx()) != NULL;
        }
    }
    if (ok) return QF_OK;
    buffers_free(b);
    return qf_fail(err, QF_E_NOMEM, "%s: out of memory for %u buffers of %zu bytes", path, slots, raw_cap);
}

/* ---- pack -------------------------------------------------------------------------------------- */

typedef struct pack_ctx {
    const char *src;
    int fd;
    unsigned threads;
    qfz_header h;
    qfz_entry *entries;
    buffers b;
    qf_outfile *out;
    const qf_pack_opts *o; /* its progress callback */
} pack_ctx;

static qf_status pack_work(void *user, uint64_t job, unsigned slot, unsigned worker, qf_error *err) {
    pack_ctx *c = user;
    qfz_entry *e = &c->entries[job]; /* each job owns its entry until consumed */
    e->raw_off = job * c->h.chunk;
    e->raw_size = QF_MIN(c->h.chunk, c->h.raw_size - e->raw_off);
    qf_status st = pread_all(c->fd, c->b.raw[slot], e->raw_size, e->raw_off, c->src, err);
    if (st != QF_OK) return st;
    if (!sha256(c->b.raw[slot], (size_t)e->raw_size, e->sha)) return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 failed", c->src);
    size_t n = ZSTD_compress2(c->b.cctx[worker], c->b.comp[slot], c->b.comp_cap, c->b.raw[slot], (size_t)e->raw_size);
    if (ZSTD_isError(n)) return qf_fail(err, QF_E_INTERNAL, "%s: zstd compression of chunk %llu failed: %s", c->src,
                                        (unsigned long long)job, ZSTD_getErrorName(n));
    c->b.comp_len[slot] = n;
    return QF_OK;
}

static qf_status pack_consume(void *user, uint64_t job, unsigned slot, qf_error *err) {
    pack_ctx *c = user;
    c->entries[job].comp_off = qf_outfile_written(c->out);
    c->entries[job].comp_size = c->b.comp_len[slot];
    qf_status st = qf_outfile_write(c->out, c->b.comp[slot], c->b.comp_len[slot], err);
    const qfz_entry *e = &c->entries[job];
    if (!st && c->o->progress) c->o->progress(c->o->progress_user, c->src, e->raw_off + e->raw_size, c->h.raw_size);
    return st;
}

/* Appends the index frame and patches index_off into the header; the index hash covers the final
 * header bytes, so the header is encoded here, once, with its real index_off. */
static qf_status pack_finish_index(pack_ctx *c, qf_error *err) {
    c->h.index_off = qf_outfile_written(c->out);
    uint8_t head[QF_QFZ_FRAMES_OFF];
    header_encode(&c->h, head);
    uint64_t body = c->h.n_frames * QF_QFZ_ENTRY_BYTES + QF_QFZ_TRAILER_BYTES; /* bounded in qf_pack */
    uint8_t *idx = malloc((size_t)body + 8);
    if (!idx) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the index", qf_outfile_path(c->out));
    put32(idx, QF_QFZ_SKIPPABLE_MAGIC);
    put32(idx + 4, (uint32_t)body);
    for (uint64_t i = 0; i < c->h.n_frames; i++) entry_encode(&c->entries[i], idx + 8 + i * QF_QFZ_ENTRY_BYTES);
    uint8_t *tr = idx + 8 + c->h.n_frames * QF_QFZ_ENTRY_BYTES;
    put64(tr, c->h.n_frames);
    bool ok = true;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, head + 8, QF_QFZ_HEADER_BYTES) == 1 &&
         EVP_DigestUpdate(md, idx + 8, (size_t)(c->h.n_frames * QF_QFZ_ENTRY_BYTES)) == 1 &&
         EVP_DigestFinal_ex(md, tr + 8, NULL) == 1;
    EVP_MD_CTX_free(md);
    memcpy(tr + 40, k_index_magic, 8);
    qf_status st = ok ? qf_outfile_write(c->out, idx, body + 8, err)
                      : qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of the index failed", qf_outfile_path(c->out));
    free(idx);
    return st == QF_OK ? qf_outfile_pwrite(c->out, head, sizeof head, 0, err) : st;
}

static qf_status pack_setup(pack_ctx *c, const qf_pack_opts *o, unsigned threads, qf_error *err) {
    uint64_t mib = o->chunk_mib ? o->chunk_mib : QF_QFZ_DEFAULT_CHUNK >> 20;
    if (mib > (QF_QFZ_MAX_CHUNK >> 20))
        return qf_fail(err, QF_E_USAGE, "chunk size %llu MiB exceeds %u MiB", (unsigned long long)mib, QF_QFZ_MAX_CHUNK >> 20);
    int level = o->level ? o->level : 3;
    if (level < 1 || level > ZSTD_maxCLevel()) return qf_fail(err, QF_E_USAGE, "zstd level %d is outside 1..%d", level, ZSTD_maxCLevel());
    c->h.chunk = mib << 20;
    qf_status st = qf_infile_open(o->src, &c->fd, &c->h.raw_size, err);
    if (st != QF_OK) return st;
    c->h.n_frames = frames_for(c->h.raw_size, c->h.chunk);
    /* The index frame's size is a u32: n * 64 + 48 must fit. */
    if (c->h.n_frames > (UINT32_MAX - QF_QFZ_TRAILER_BYTES) / QF_QFZ_ENTRY_BYTES)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: %llu frames do not fit one index; use a larger chunk size", o->src,
                       (unsigned long long)c->h.n_frames);
    c->entries = qf_calloc_n(c->h.n_frames, sizeof *c->entries);
    if (!c->entries) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the frame table", o->src);
    unsigned slots = (unsigned)QF_MIN((uint64_t)threads + 2, QF_MAX(c->h.n_frames, (uint64_t)1));
    c->threads = (unsigned)QF_MIN((uint64_t)threads, QF_MAX(c->h.n_frames, (uint64_t)1)); /* no idle workers */
    return buffers_alloc(&c->b, slots, c->threads, (size_t)QF_MIN(c->h.chunk, QF_MAX(c->h.raw_size, (uint64_t)1)), level,
                         o->src, err);
}

qf_status qf_pack(const qf_pack_opts *o, qf_pack_stats *stats, qf_error *err) {
    qf_error_clear(err);
    memset(stats, 0, sizeof *stats);
    unsigned threads = (unsigned)qf_integrity_threads(o->threads);
    pack_ctx c = {.src = o->src, .fd = -1, .o = o};
    qf_status st = qf_outfile_check(o->out, &o->src, 1, err);
    if (st == QF_OK) st = pack_setup(&c, o, threads, err);
    if (st == QF_OK) st = qf_outfile_open(o->out, &c.out, err);
    uint8_t head[QF_QFZ_FRAMES_OFF];
    header_encode(&c.h, head); /* index_off 0 until the index is written */
    if (st == QF_OK) st = qf_outfile_write(c.out, head, sizeof head, err);
    if (st == QF_OK)
        st = qf_ordered_run(c.h.n_frames, c.threads, c.b.slots, pack_work, pack_consume, &c, err);
    if (st == QF_OK) st = pack_finish_index(&c, err);
    if (st == QF_OK) {
        stats->raw_bytes = c.h.raw_size;
        stats->packed_bytes = qf_outfile_written(c.out);
        stats->frames = c.h.n_frames;
        st = qf_outfile_commit(c.out, err);
        c.out = NULL;
    }
    qf_outfile_abort(c.out);
    buffers_free(&c.b);
    free(c.entries);
    if (c.fd >= 0) close(c.fd);
    return st;
}

/* ---- unpack: validation ------------------------------------------------------------------------ */

static qf_status header_decode(const char *path, const uint8_t in[QF_QFZ_FRAMES_OFF], uint64_t file_size,
                               qfz_header *h, qf_error *err) {
    const uint8_t *p = in + 8;
    if (get32(in) != QF_QFZ_SKIPPABLE_MAGIC || get32(in + 4) != QF_QFZ_HEADER_BYTES || memcmp(p, k_header_magic, 8) != 0)
        return qf_fail(err, QF_E_INPUT, "%s: not a qforge pack (no QFZPACK header frame)", path);
    if (get32(p + 8) != QF_QFZ_VERSION || get32(p + 12) != 0)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: pack version %u flags %u (this qforge reads version %d, flags 0)", path,
                       get32(p + 8), get32(p + 12), QF_QFZ_VERSION);
    for (int i = 48; i < 64; i++)
        if (p[i]) return qf_fail(err, QF_E_INPUT, "%s: reserved header byte %d is not zero", path, i);
    h->chunk = get64(p + 16);
    h->raw_size = get64(p + 24);
    h->n_frames = get64(p + 32);
    h->index_off = get64(p + 40);
    if (h->chunk < QF_QFZ_MIN_CHUNK || h->chunk > QF_QFZ_MAX_CHUNK)
        return qf_fail(err, QF_E_INPUT, "%s: chunk size %llu is outside %u..%u", path, (unsigned long long)h->chunk,
                       QF_QFZ_MIN_CHUNK, QF_QFZ_MAX_CHUNK);
    if (h->n_frames != frames_for(h->raw_size, h->chunk))
        return qf_fail(err, QF_E_INPUT, "%s: %llu frames cannot hold %llu bytes in chunks of %llu", path,
                       (unsigned long long)h->n_frames, (unsigned long long)h->raw_size, (unsigned long long)h->chunk);
    /* The index frame's size field is a u32, which bounds n_frames; with that, body cannot overflow. */
    if (h->n_frames > (UINT32_MAX - QF_QFZ_TRAILER_BYTES) / QF_QFZ_ENTRY_BYTES || h->index_off < QF_QFZ_FRAMES_OFF)
        return qf_fail(err, QF_E_INPUT, "%s: index offset %llu / %llu frames are impossible", path,
                       (unsigned long long)h->index_off, (unsigned long long)h->n_frames);
    uint64_t body = h->n_frames * QF_QFZ_ENTRY_BYTES + QF_QFZ_TRAILER_BYTES + 8, end;
    if (!qf_add_ok(h->index_off, body, &end))
        return qf_fail(err, QF_E_INPUT, "%s: index offset %llu overflows", path, (unsigned long long)h->index_off);
    if (end > file_size)
        return qf_fail(err, QF_E_INPUT, "%s: truncated: the index ends at byte %llu but the file has %llu", path,
                       (unsigned long long)end, (unsigned long long)file_size);
    if (end < file_size)
        return qf_fail(err, QF_E_INPUT, "%s: %llu unexpected bytes after the index", path, (unsigned long long)(file_size - end));
    return QF_OK;
}

/* The index frame: its prefix, trailer and hash, then every entry against the header's geometry:
 * frames contiguous from offset 72 to the index, each raw range the chunk it must be. */
static qf_status index_decode(const char *path, const uint8_t *head, const uint8_t *idx, const qfz_header *h,
                              qfz_entry *e, qf_error *err) {
    uint64_t nb = h->n_frames * QF_QFZ_ENTRY_BYTES;
    const uint8_t *tr = idx + 8 + nb;
    uint8_t d[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, head + 8, QF_QFZ_HEADER_BYTES) == 1 &&
              EVP_DigestUpdate(md, idx + 8, (size_t)nb) == 1 && EVP_DigestFinal_ex(md, d, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 failed", path);
    if (get32(idx) != QF_QFZ_SKIPPABLE_MAGIC || get32(idx + 4) != nb + QF_QFZ_TRAILER_BYTES || get64(tr) != h->n_frames ||
        memcmp(tr + 40, k_index_magic, 8) != 0)
        return qf_fail(err, QF_E_INPUT, "%s: the index frame at offset %llu is malformed", path, (unsigned long long)h->index_off);
    if (memcmp(d, tr + 8, 32) != 0)
        return qf_fail(err, QF_E_CHECK, "%s: the index or header is damaged (SHA-256 mismatch)", path);
    uint64_t comp_end = QF_QFZ_FRAMES_OFF;
    for (uint64_t i = 0; i < h->n_frames; i++) {
        entry_decode(idx + 8 + i * QF_QFZ_ENTRY_BYTES, &e[i]);
        uint64_t raw_off = i * h->chunk, raw_size = QF_MIN(h->chunk, h->raw_size - raw_off);
        /* the compress bound of the frame's own size is also what the slot buffers were sized from */
        if (e[i].raw_off != raw_off || e[i].raw_size != raw_size || e[i].comp_off != comp_end || e[i].comp_size == 0 ||
            e[i].comp_size > ZSTD_compressBound((size_t)raw_size) || !qf_add_ok(comp_end, e[i].comp_size, &comp_end) || comp_end > h->index_off)
            return qf_fail(err, QF_E_INPUT, "%s: index entry %llu (offset %llu, %llu bytes) does not fit the pack layout", path,
                           (unsigned long long)i, (unsigned long long)e[i].comp_off, (unsigned long long)e[i].comp_size);
        /* What the pack may make us write (and reserve, and buffer) is justified by its own bytes: no zstd
         * frame decodes to more than QFZ_MAX_RATIO times its size. */
        if (raw_size / QFZ_MAX_RATIO > e[i].comp_size || (raw_size / QFZ_MAX_RATIO == e[i].comp_size && raw_size % QFZ_MAX_RATIO))
            return qf_fail(err, QF_E_INPUT, "%s: index entry %llu claims %llu bytes from a frame of %llu, more than zstd "
                           "can encode (at most %u:1)", path, (unsigned long long)i, (unsigned long long)raw_size,
                           (unsigned long long)e[i].comp_size, QFZ_MAX_RATIO);
    }
    if (comp_end != h->index_off)
        return qf_fail(err, QF_E_INPUT, "%s: frames end at %llu but the index starts at %llu", path,
                       (unsigned long long)comp_end, (unsigned long long)h->index_off);
    return QF_OK;
}

typedef struct unpack_ctx {
    const char *src;
    int fd;
    qfz_header h;
    qfz_entry *entries;
    buffers b;
    qf_outfile *out;
    bool is_gguf; /* the first four raw bytes are "GGUF" */
    const qf_pack_opts *o; /* its progress callback */
} unpack_ctx;

static qf_status read_index(unpack_ctx *c, qf_error *err) {
    uint64_t size;
    uint8_t head[QF_QFZ_FRAMES_OFF];
    qf_status st = qf_infile_open(c->src, &c->fd, &size, err);
    if (st == QF_OK && size < QF_QFZ_FRAMES_OFF)
        st = qf_fail(err, QF_E_INPUT, "%s: truncated or not a qforge pack (%llu bytes)", c->src, (unsigned long long)size);
    if (st == QF_OK) st = pread_all(c->fd, head, sizeof head, 0, c->src, err);
    if (st == QF_OK) st = header_decode(c->src, head, size, &c->h, err);
    if (st != QF_OK) return st;
    uint64_t n = 8 + c->h.n_frames * QF_QFZ_ENTRY_BYTES + QF_QFZ_TRAILER_BYTES; /* <= file size: checked */
    uint8_t *idx = malloc((size_t)n);
    c->entries = qf_calloc_n(c->h.n_frames, sizeof *c->entries);
    if (!idx || !c->entries) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory for the index", c->src);
    if (st == QF_OK) st = pread_all(c->fd, idx, n, c->h.index_off, c->src, err);
    if (st == QF_OK) st = index_decode(c->src, head, idx, &c->h, c->entries, err);
    free(idx);
    return st;
}

/* ---- unpack: frames ---------------------------------------------------------------------------- */

static qf_status unpack_work(void *user, uint64_t job, unsigned slot, unsigned worker, qf_error *err) {
    unpack_ctx *c = user;
    const qfz_entry *e = &c->entries[job];
    uint8_t *comp = c->b.comp[slot], *raw = c->b.raw[slot], d[32];
    qf_status st = pread_all(c->fd, comp, e->comp_size, e->comp_off, c->src, err);
    if (st != QF_OK) return st;
    size_t fsz = ZSTD_findFrameCompressedSize(comp, (size_t)e->comp_size);
    unsigned long long content = ZSTD_getFrameContentSize(comp, (size_t)e->comp_size);
    /* The index (hash-checked) says what the frame must be; a frame that is not that is damaged data. */
    if (ZSTD_isError(fsz) || fsz != e->comp_size || content != e->raw_size)
        return qf_fail(err, QF_E_CHECK, "%s: frame %llu at offset %llu is damaged: not one zstd frame of %llu bytes holding %llu",
                       c->src, (unsigned long long)job, (unsigned long long)e->comp_off,
                       (unsigned long long)e->comp_size, (unsigned long long)e->raw_size);
    size_t n = ZSTD_decompressDCtx(c->b.dctx[worker], raw, (size_t)e->raw_size, comp, (size_t)e->comp_size);
    if (ZSTD_isError(n) || n != e->raw_size)
        return qf_fail(err, QF_E_CHECK, "%s: frame %llu at offset %llu is damaged: it does not decode: %s", c->src, (unsigned long long)job,
                       (unsigned long long)e->comp_off, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
    if (!sha256(raw, n, d)) return qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 failed", c->src);
    if (memcmp(d, e->sha, 32) != 0)
        return qf_fail(err, QF_E_CHECK, "%s: frame %llu (bytes %llu..%llu of the file) fails its SHA-256: the pack is damaged",
                       c->src, (unsigned long long)job, (unsigned long long)e->raw_off,
                       (unsigned long long)(e->raw_off + e->raw_size));
    return QF_OK;
}

static qf_status unpack_consume(void *user, uint64_t job, unsigned slot, qf_error *err) {
    unpack_ctx *c = user;
    if (job == 0) c->is_gguf = c->entries[0].raw_size >= 4 && memcmp(c->b.raw[slot], "GGUF", 4) == 0;
    qf_status st = qf_outfile_write(c->out, c->b.raw[slot], c->entries[job].raw_size, err);
    const qfz_entry *e = &c->entries[job];
    if (!st && c->o->progress) c->o->progress(c->o->progress_user, c->src, e->raw_off + e->raw_size, c->h.raw_size);
    return st;
}

/* True when the file holds the scheme key's name anywhere: it carries (or claims) qforge digests. */
static bool mentions_digests(const char *path) {
    int fd;
    uint64_t size;
    void *map = NULL;
    if (qf_infile_open(path, &fd, &size, NULL) != QF_OK) return false;
    bool yes = size > 0 && qf_infile_map(path, fd, size, &map, NULL) == QF_OK &&
               memmem(map, (size_t)size, QF_INTEGRITY_KEY_SCHEME, strlen(QF_INTEGRITY_KEY_SCHEME)) != NULL;
    qf_infile_unmap(map, size);
    close(fd);
    return yes;
}

/* A GGUF that carries qforge digests is re-verified from the temp file before it may appear under its
 * name; one without digests is passed through (a pack may hold any file). A file that starts with
 * GGUF and carries digests but does not parse cannot be verified, and that is a failed check: it is
 * exactly what damage (or a forger wanting the check skipped) would produce. */
/* The digest check's progress under the output's name, not the temp file's. */
static void check_progress(void *user, const char *what, uint64_t done, uint64_t total) {
    const unpack_ctx *c = user;
    (void)what;
    c->o->progress(c->o->progress_user, qf_outfile_path(c->out), done, total);
}

static qf_status check_gguf(unpack_ctx *c, unsigned threads, bool *checked, qf_error *err) {
    *checked = false;
    if (!c->is_gguf) return QF_OK;
    qf_gguf *g = NULL;
    qf_error e;
    const char *tmp = qf_outfile_temp_path(c->out);
    qf_status st = qf_gguf_open_file(tmp, &g, &e); /* the one file packed, a part of a split set too */
    const char *colon = strstr(e.msg, ": ");
    if (st != QF_OK && mentions_digests(tmp))
        return qf_fail(err, QF_E_CHECK, "%s -> %s: the file starts with GGUF and carries qforge integrity digests but "
                       "does not parse, so they cannot be verified: %s", c->src, qf_outfile_path(c->out),
                       colon ? colon + 2 : e.msg);
    if (st != QF_OK) return QF_OK;
    qf_integrity_result r;
    st = qf_integrity_check(g, (int)threads, &(qf_integrity_progress){c->o->progress ? check_progress : NULL, c}, &r, &e);
    qf_integrity_result_free(&r);
    qf_gguf_close(g);
    if (st == QF_E_NOTFOUND) return QF_OK;
    *checked = st == QF_OK;
    if (st == QF_OK) return QF_OK;
    /* the temp file's name means nothing to the user: say which pack and output it was */
    colon = strstr(e.msg, ": ");
    return qf_fail(err, st, "%s -> %s: %s", c->src, qf_outfile_path(c->out), colon ? colon + 2 : e.msg);
}

qf_status qf_unpack(const qf_pack_opts *o, qf_pack_stats *stats, qf_error *err) {
    qf_error_clear(err);
    memset(stats, 0, sizeof *stats);
    unsigned threads = (unsigned)qf_integrity_threads(o->threads);
    unpack_ctx c = {.src = o->src, .fd = -1, .o = o};
    qf_status st = qf_outfile_check(o->out, &o->src, 1, err);
    if (st == QF_OK) st = read_index(&c, err);
    threads = (unsigned)QF_MIN((uint64_t)threads, QF_MAX(c.h.n_frames, (uint64_t)1)); /* no idle workers */
    unsigned slots = (unsigned)QF_MIN((uint64_t)threads + 2, QF_MAX(c.h.n_frames, (uint64_t)1));
    size_t cap = (size_t)QF_MIN(c.h.chunk, QF_MAX(c.h.raw_size, (uint64_t)1));
    if (st == QF_OK) st = buffers_alloc(&c.b, slots, threads, cap, 0, o->src, err);
    if (st == QF_OK) st = qf_outfile_open(o->out, &c.out, err);
    if (st == QF_OK) qf_outfile_reserve(c.out, c.h.raw_size);
    if (st == QF_OK) st = qf_ordered_run(c.h.n_frames, threads, slots, unpack_work, unpack_consume, &c, err);
    buffers_free(&c.b); /* before the read-back check, which brings its own working set */
    if (st == QF_OK) st = qf_outfile_seal(c.out, err); /* every byte in the temp file it reads */
    if (st == QF_OK) st = check_gguf(&c, threads, &stats->gguf_checked, err);
    if (st == QF_OK) {
        stats->raw_bytes = c.h.raw_size;
        stats->packed_bytes = c.h.index_off + 8 + c.h.n_frames * QF_QFZ_ENTRY_BYTES + QF_QFZ_TRAILER_BYTES;
        stats->frames = c.h.n_frames;
        st = qf_outfile_commit(c.out, err);
        c.out = NULL;
    }
    qf_outfile_abort(c.out);
    buffers_free(&c.b);
    free(c.entries);
    if (c.fd >= 0) close(c.fd);
    return st;
}
