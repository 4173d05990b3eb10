/*
 * archive.c — the archive backend of the tensor source: a .tar, .tar.gz, .tar.zst, .zip (anything
 * libarchive reads, except raw streams and mtree) holding one Hugging Face model directory, read
 * straight from the archive without unpacking it to disk and with bounded memory.
 *
 * What the archive must hold:
 *   [top/]config.json                       marks the model directory (exactly one directory has it)
 *   [top/]tokenizer.json, *.json, *.txt,    side files, kept in memory (each at most AR_MAX_SIDE)
 *         *.jinja, *.model
 *   [top/]*.safetensors                     shards: u64 N | N bytes JSON header | data buffer
 *   [top/]model.safetensors.index.json      optional: {"weight_map": {tensor: shard file}}
 * Entries may come in any order and the model directory may sit at any depth. Member paths are
 * normalised ("./a//b" = "a/b"); absolute paths and ".." components are refused, as are a path that
 * appears twice and shards stored as symbolic or hard links (there is no file to follow them to).
 *
 * Pass 1 (open) reads the archive once: side files whole, shards only up to the end of their JSON
 * header (the data is skipped; for uncompressed archives libarchive seeks past it). Headers are parsed
 * with qf_st_header_parse() against the member size, and the raw tensor table is built in storage
 * order: member order in the archive, then offset. The shard set follows the directory backend
 * (safetensors.c): with model.safetensors.index.json, the files its weight_map names (other
 * *.safetensors beside them are ignored), every mapping checked both ways; without one,
 * model.safetensors, else the only *.safetensors (several without an index is an error).
 * Unusable side files (too large, links) are only an error when read_file asks for them.
 *
 * Pass 2 (raw_bytes) reopens the archive and reads forward only. Reaching tensor r reads past the
 * tensors before it, keeping the bytes of pinned ones and discarding the others in AR_CHUNK pieces.
 * Asking for a tensor behind the stream position (and not held in a buffer) reopens the archive and
 * streams from its start again: correct for callers that make two passes, but it costs a full
 * re-read each time, so callers should keep to index order (source.h). That replaces the
 * QF_E_INTERNAL "already passed" error that source_impl.h allows.
 *
 * Memory: side files and shard headers held during pass 1 are capped in total (AR_MAX_KEPT); a
 * tensor's buffer grows as its bytes actually arrive (from at most AR_FIRST_ALLOC), so a size the
 * archive declares never decides a large allocation on its own.
 */
#include "formats/source_impl.h"

#include <archive.h>
#include <archive_entry.h>
#include "formats/infile.h"
#include "formats/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#define AR_MAX_SIDE QF_SOURCE_MAX_SIDE_FILE /* one side file */
#define AR_MAX_KEPT (1ull << 30)       /* all side files + shard headers held at once */
#define AR_CHUNK (1u << 20)            /* discard granularity, reader block size */
#define AR_FIRST_ALLOC (8ull << 20)    /* first allocation for a buffer that then grows */
#define AR_INDEX_NAME "model.safetensors.index.json"

typedef enum ar_kind { AR_SIDE, AR_SHARD, AR_LINK } ar_kind;

/* A forward-only read of the archive in pass 2. */
typedef struct ar_stream {
    struct archive *rd; /* NULL: not open */
    size_t cur;         /* member the stream is inside, SIZE_MAX before the first */
    uint64_t pos;       /* bytes of that member consumed */
    size_t next;        /* first raw tensor not yet passed */
} ar_stream;

/* A member of interest found in pass 1. */
typedef struct ar_entry {
    char *path;      /* normalised path inside the archive */
    size_t dir_len;  /* path[0, dir_len) is its directory; 0 for the archive's top level */
    ar_kind kind;
    bool is_shard;   /* name ends in .safetensors (a link may be either) */
    uint8_t *data;   /* AR_SIDE: the contents + NUL; AR_SHARD: the N header bytes */
    uint64_t len;    /* bytes in data, without the NUL */
    uint64_t size;   /* AR_SHARD: bytes of the whole member */
    char *problem;   /* why the entry cannot be used; an error only if the model needs it */
} ar_entry;

/* A shard of the model. */
typedef struct ar_member {
    ar_entry *ent;
    char *label;     /* "archive:path", for messages and the header parser */
    qf_st_header hdr;
} ar_member;

typedef struct qf_archive {
    char *path;
    ar_entry *ents;
    size_t n_ents, cap_ents;
    uint64_t kept;         /* bytes held in ents[].data */
    char *dir;             /* the model directory (path prefix without the '/'), once known */
    ar_member *mem;
    size_t n_mem;
    qf_st_tensor *t;       /* raw table, storage order; names borrowed from mem[].hdr */
    size_t n_t;
    uint8_t **buf;         /* [n_t] bytes handed out or kept for a pinned tensor */
    bool *pinned;          /* [n_t] */
    uint8_t *scratch;      /* AR_CHUNK bytes for discarding */
    ar_stream main;        /* pass 2: whole tensors and the window */
    ar_stream side;        /* pass 2: whole tensors wanted while a window holds the main stream */
    /* The window: bytes [wlo, whi) of tensor win_t, which the main stream is inside (wpos consumed). */
    size_t win_t;          /* SIZE_MAX: no window */
    uint8_t *wbuf;
    uint64_t wcap, wlo, whi, wpos;
} qf_archive;

/* ---- small helpers ------------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Path of an entry relative to the model directory. */
static const char *rel_name(const ar_entry *e) { return e->path + (e->dir_len ? e->dir_len + 1 : 0); }

/* path[0, dir_len) names directory `dir`. */
static bool in_dir(const char *dir, const char *path, size_t dir_len) {
    return strlen(dir) == dir_len && memcmp(path, dir, dir_len) == 0;
}

static bool same_dir(const ar_entry *e, const char *dir) { return in_dir(dir, e->path, e->dir_len); }

static const char *dir_label(const char *dir) { return dir[0] ? dir : "(top level)"; }


/* libarchive leaves the message NULL on some failures (a zip stream that ends without its central
 * directory, for one). */
static const char *ar_errstr(struct archive *a) {
    const char *s = archive_error_string(a);
    return s ? s : "the archive ends early or is damaged (no detail from libarchive)";
}

static bool header_ok(int rc) { return rc == ARCHIVE_OK || rc == ARCHIVE_WARN; }

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static char *dup_printf(const char *fmt, ...) QF_PRINTF(1, 2);
static char *dup_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The reader every pass uses: all filters, all formats except raw (raw would take any file). */
static qf_status reader_open(const char *path, struct archive **out, qf_error *err) {
    struct archive *a = archive_read_new();
    if (!a) return qf_fail(err, QF_E_NOMEM, "%s: out of memory creating an archive reader", path);
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    if (archive_read_open_filename(a, path, AR_CHUNK) != ARCHIVE_OK) {
        /* Opening reads the first block through the decompressor, so a damaged gzip or zstd stream fails
         * here too; libarchive reports those with its own codes (ARCHIVE_ERRNO_MISC = -1, and
         * ARCHIVE_ERRNO_FILE_FORMAT = EILSEQ on Linux). Only another errno, from the OS, is an I/O failure;
         * the rest is bad input (exit 2, not 3). */
        int e = archive_errno(a);
        qf_status code = e > 0 && e != EILSEQ ? QF_E_IO : QF_E_INPUT;
        qf_status st = qf_fail(err, code, "%s: cannot open archive: %s", path, ar_errstr(a));
        archive_read_free(a);
        return st;
    }
    *out = a;
    return QF_OK;
}

/* ---- detection ---------------------------------------------------------------------------------- */

/* A safetensors file (u64 N, then '{') or a JSON document: the inputs detection must never claim. */
static bool looks_like_model_file(const uint8_t *p, size_t n, uint64_t file_size) {
    uint64_t end;
    if (n >= 9 && p[8] == '{' && qf_add_ok(le64(p), 8, &end) && end <= file_size) return true;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n') continue;
        return p[i] == '{' || p[i] == '[';
    }
    return false;
}

/* Container and compression signatures, so a damaged archive still goes to this backend and gets an
 * archive error instead of a confusing safetensors one. */
static bool has_archive_magic(const uint8_t *p, size_t n) {
    static const struct { size_t off, len; const char *sig; } magic[] = {
        {257, 5, "ustar"}, {0, 4, "PK\x03\x04"}, {0, 4, "PK\x05\x06"}, {0, 2, "\x1f\x8b"},
        {0, 4, "\x28\xb5\x2f\xfd"}, {0, 6, "\xfd" "7zXZ\x00"}, {0, 3, "BZh"}, {0, 6, "7z\xbc\xaf\x27\x1c"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(magic); i++)
        if (magic[i].off + magic[i].len <= n && memcmp(p + magic[i].off, magic[i].sig, magic[i].len) == 0)
            return true;
    return false;
}

/* libarchive recognises the file as an archive it can list (the first header reads). */
static bool libarchive_recognises(const char *path) {
    struct archive *a;
    if (reader_open(path, &a, NULL) != QF_OK) return false;
    struct archive_entry *e;
    bool ok = header_ok(archive_read_next_header(a, &e));
    int fmt = archive_format(a) & ARCHIVE_FORMAT_BASE_MASK;
    /* mtree describes files on disk rather than holding them; "empty" matches any empty file. */
    ok = ok && fmt != ARCHIVE_FORMAT_MTREE && fmt != ARCHIVE_FORMAT_EMPTY && fmt != ARCHIVE_FORMAT_RAW;
    archive_read_free(a);
    return ok;
}

bool qf_archive_detect(const char *path) {
    int fd;
    uint64_t size;
    if (!path || qf_infile_open(path, &fd, &size, NULL) != QF_OK) return false;
    uint8_t head[512];
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    size_t n = got > 0 ? (size_t)got : 0;
    if (looks_like_model_file(head, n, size)) return false;
    return libarchive_recognises(path) || has_archive_magic(head, n);
}

/* ---- pass 1: reading entries -------------------------------------------------------------------- */

/* Member path without "", "." components; absolute paths and ".." are refused (a name that climbs
 * out of the archive is a red flag even though nothing is extracted). "" for the top directory. */
static qf_status normalise_path(const char *arch, const char *raw, char **out, qf_error *err) {
    if (raw[0] == '/')
        return qf_fail(err, QF_E_INPUT, "%s: member '%s' has an absolute path", arch, raw);
    char *res = malloc(strlen(raw) + 1);
    if (!res) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", arch);
    size_t n = 0;
    for (const char *p = raw; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            free(res);
            return qf_fail(err, QF_E_INPUT, "%s: member '%s' has a '..' path component", arch, raw);
        }
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (n) res[n++] = '/';
            memcpy(res + n, p, len);
            n += len;
        }
        p += len + (p[len] == '/');
    }
    res[n] = '\0';
    *out = res;
    return QF_OK;
}

/* Read up to `want` bytes of the current entry into a buffer that grows as bytes arrive, plus room
 * for a NUL. *len < want when the entry ended first. */
static qf_status read_grow(qf_archive *qa, struct archive *a, const char *member, uint64_t want,
                           uint8_t **out, uint64_t *len, qf_error *err) {
    if (want >= SIZE_MAX / 2)
        return qf_fail(err, QF_E_NOMEM, "%s:%s: %llu bytes do not fit in memory", qa->path, member,
                       (unsigned long long)want);
    uint64_t cap = QF_MIN(want, AR_FIRST_ALLOC), n = 0;
    uint8_t *buf = malloc((size_t)cap + 1);
    if (!buf) return qf_fail(err, QF_E_NOMEM, "%s:%s: out of memory for %llu bytes", qa->path, member,
                             (unsigned long long)cap);
    while (n < want) {
        if (n == cap) {
            uint64_t ncap = QF_MIN(want, cap * 2);
            uint8_t *nb = realloc(buf, (size_t)ncap + 1);
            if (!nb) {
                free(buf);
                return qf_fail(err, QF_E_NOMEM, "%s:%s: out of memory for %llu bytes", qa->path, member,
                               (unsigned long long)ncap);
            }
            buf = nb;
            cap = ncap;
        }
        la_ssize_t got = archive_read_data(a, buf + n, (size_t)(cap - n));
        if (got < 0) {
            free(buf);
            return qf_fail(err, QF_E_INPUT, "%s:%s: read failed: %s", qa->path, member, ar_errstr(a));
        }
        if (got == 0) break;
        n += (uint64_t)got;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return QF_OK;
}

/* Read and drop up to `n` bytes of the current entry; *got says how many there were. */
static qf_status read_discard(qf_archive *qa, struct archive *a, const char *member, uint64_t n,
                              uint64_t *got, qf_error *err) {
    uint64_t done = 0;
    while (done < n) {
        la_ssize_t r = archive_read_data(a, qa->scratch, (size_t)QF_MIN(n - done, AR_CHUNK));
        if (r < 0)
            return qf_fail(err, QF_E_INPUT, "%s:%s: read failed: %s", qa->path, member, ar_errstr(a));
        if (r == 0) break;
        done += (uint64_t)r;
    }
    *got = done;
    return QF_OK;
}

/* Reserve `n` bytes of the pass-1 memory budget. */
static bool budget_take(qf_archive *qa, uint64_t n) {
    uint64_t total;
    if (!qf_add_ok(qa->kept, n, &total) || total > AR_MAX_KEPT) return false;
    qa->kept = total;
    return true;
}

/* Mark e unusable (its data goes): the reason is reported only if the model turns out to need e. */
static qf_status set_problem(qf_archive *qa, ar_entry *e, qf_error *err, const char *fmt, ...) QF_PRINTF(4, 5);
static qf_status set_problem(qf_archive *qa, ar_entry *e, qf_error *err, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(e->data);
    e->data = NULL;
    e->len = 0;
    if (!(e->problem = qf_strndup(msg, strlen(msg)))) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    return QF_OK;
}

#define BUDGET_PROBLEM "not kept: side files and shard headers together exceed %llu MiB", \
                       (unsigned long long)(AR_MAX_KEPT >> 20)

/* Declared size of an entry, if the archive states one (a streamed zip entry may not). */
static bool entry_size(struct archive_entry *ae, uint64_t *size) {
    if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) < 0) return false;
    *size = (uint64_t)archive_entry_size(ae);
    return true;
}

/* A side file: its whole contents, or a problem saying why not. */
static qf_status scan_side(qf_archive *qa, struct archive *a, struct archive_entry *ae, ar_entry *e,
                           qf_error *err) {
    uint64_t size = 0;
    bool known = entry_size(ae, &size);
    if (known && size > AR_MAX_SIDE)
        return set_problem(qa, e, err, "%llu bytes exceed the %llu MiB limit for side files", (unsigned long long)size,
                           (unsigned long long)(AR_MAX_SIDE >> 20));
    qf_status st = read_grow(qa, a, e->path, known ? size : AR_MAX_SIDE + 1, &e->data, &e->len, err);
    if (st != QF_OK) return st;
    if (!known && e->len > AR_MAX_SIDE)
        return set_problem(qa, e, err, "more than the %llu MiB limit for side files",
                           (unsigned long long)(AR_MAX_SIDE >> 20));
    if (known && e->len < size)
        return set_problem(qa, e, err, "member ends after %llu of its %llu bytes", (unsigned long long)e->len,
                           (unsigned long long)size);
    if (!budget_take(qa, e->len)) return set_problem(qa, e, err, BUDGET_PROBLEM);
    return QF_OK;
}

/* Size of a member whose size the archive does not state: count the bytes left after `consumed`. */
static qf_status count_rest(qf_archive *qa, struct archive *a, const ar_entry *e, uint64_t consumed,
                            uint64_t *size, qf_error *err) {
    uint64_t rest = 0;
    qf_status st = read_discard(qa, a, e->path, UINT64_MAX, &rest, err);
    if (st != QF_OK) return st;
    if (!qf_add_ok(consumed, rest, size))
        return qf_fail(err, QF_E_INPUT, "%s:%s: member size overflows", qa->path, e->path);
    return QF_OK;
}

/* A shard: the 8-byte length and the JSON header only (the data is skipped by the next header read),
 * or a problem saying why the header cannot be read. */
static qf_status scan_shard(qf_archive *qa, struct archive *a, struct archive_entry *ae, ar_entry *e,
                            qf_error *err) {
    uint64_t size = 0, hdr_end;
    bool known = entry_size(ae, &size);
    uint8_t pre[8];
    la_ssize_t r = archive_read_data(a, pre, sizeof pre);
    if (r < 0) return qf_fail(err, QF_E_INPUT, "%s:%s: read failed: %s", qa->path, e->path, ar_errstr(a));
    if (r < 8)
        return set_problem(qa, e, err, "member has %lld bytes, fewer than the 8-byte safetensors header length",
                           (long long)r);
    uint64_t n = le64(pre);
    if (n > QF_ST_MAX_HEADER || !qf_add_ok(n, 8, &hdr_end) || (known && hdr_end > size))
        return set_problem(qa, e, err, "safetensors header length %llu exceeds %s (%llu bytes)", (unsigned long long)n,
                           n > QF_ST_MAX_HEADER ? "the header limit" : "the member",
                           (unsigned long long)(n > QF_ST_MAX_HEADER ? QF_ST_MAX_HEADER : size));
    qf_status st = read_grow(qa, a, e->path, n, &e->data, &e->len, err);
    if (st != QF_OK) return st;
    if (e->len < n)
        return set_problem(qa, e, err, "member ends inside its %llu-byte safetensors header", (unsigned long long)n);
    if (!budget_take(qa, e->len)) return set_problem(qa, e, err, BUDGET_PROBLEM);
    if (!known && (st = count_rest(qa, a, e, hdr_end, &size, err)) != QF_OK) return st;
    e->size = size;
    return QF_OK;
}

static void entry_free(ar_entry *e) {
    free(e->path);
    free(e->data);
    free(e->problem);
}

/* Once the model directory is known, entries elsewhere can only matter for an error (a second
 * config.json), so their memory goes back at once. */
static void prune_other_dirs(qf_archive *qa) {
    size_t k = 0;
    for (size_t i = 0; i < qa->n_ents; i++) {
        if (same_dir(&qa->ents[i], qa->dir)) { qa->ents[k++] = qa->ents[i]; continue; }
        qa->kept -= qa->ents[i].len;
        entry_free(&qa->ents[i]);
    }
    qa->n_ents = k;
}

/* A config.json in directory path[0, dir_len): the model directory, unless another one has it. */
static qf_status note_config(qf_archive *qa, const char *path, size_t dir_len, qf_error *err) {
    if (qa->dir) {
        if (in_dir(qa->dir, path, dir_len)) return QF_OK; /* the same directory twice: a duplicate, found later */
        char *other = qf_strndup(path, dir_len);
        qf_status st = qf_fail(err, QF_E_INPUT,
                               "%s: several model directories hold a config.json ('%s' and '%s'); the archive "
                               "must hold one model", qa->path, dir_label(qa->dir), other ? dir_label(other) : "?");
        free(other);
        return st;
    }
    if (!(qa->dir = qf_strndup(path, dir_len))) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    prune_other_dirs(qa);
    return QF_OK;
}

static ar_entry *entry_add(qf_archive *qa, qf_error *err) {
    if (qa->n_ents == qa->cap_ents) {
        size_t ncap = qa->cap_ents ? qa->cap_ents * 2 : 32;
        ar_entry *ne = qf_malloc_n(ncap, sizeof *ne);
        if (!ne) { qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path); return NULL; }
        if (qa->n_ents) memcpy(ne, qa->ents, qa->n_ents * sizeof *ne);
        free(qa->ents);
        qa->ents = ne;
        qa->cap_ents = ncap;
    }
    ar_entry *e = &qa->ents[qa->n_ents++];
    memset(e, 0, sizeof *e);
    return e;
}

/* Which names pass 1 keeps: shards and the small files a converter reads. AppleDouble "._x" files
 * (macOS tar/zip add them beside every file) are resource forks, not model files. */
static bool wanted_name(const char *base, bool *is_shard) {
    *is_shard = ends_with(base, ".safetensors");
    if (!base[0] || strncmp(base, "._", 2) == 0) return false;
    return *is_shard || ends_with(base, ".json") || ends_with(base, ".txt") || ends_with(base, ".jinja") ||
           ends_with(base, ".model");
}

/* One archive entry of pass 1. */
static qf_status scan_entry(qf_archive *qa, struct archive *a, struct archive_entry *ae, qf_error *err) {
    const char *raw = archive_entry_pathname_utf8(ae);
    if (!raw) raw = archive_entry_pathname(ae);
    if (!raw) return QF_OK; /* a name this locale cannot express cannot be one we look for */
    char *path;
    qf_status st = normalise_path(qa->path, raw, &path, err);
    if (st != QF_OK) return st;
    const char *base = base_name(path);
    size_t dir_len = base == path ? 0 : (size_t)(base - path - 1);
    bool is_shard, is_link = archive_entry_hardlink(ae) || archive_entry_filetype(ae) == AE_IFLNK;
    if (!wanted_name(base, &is_shard) || (!is_link && archive_entry_filetype(ae) != AE_IFREG)) {
        free(path);
        return QF_OK;
    }
    if (strcmp(base, "config.json") == 0 && (st = note_config(qa, path, dir_len, err)) != QF_OK) {
        free(path);
        return st;
    }
    if (qa->dir && !in_dir(qa->dir, path, dir_len)) {
        free(path);
        return QF_OK;
    }
    ar_entry *e = entry_add(qa, err);
    if (!e) { free(path); return QF_E_NOMEM; }
    e->path = path;
    e->dir_len = dir_len;
    e->is_shard = is_shard;
    e->kind = is_link ? AR_LINK : is_shard ? AR_SHARD : AR_SIDE;
    if (e->kind == AR_SHARD) return scan_shard(qa, a, ae, e, err);
    if (e->kind == AR_SIDE) return scan_side(qa, a, ae, e, err);
    return QF_OK;
}

/* Pass 1 over the whole archive. */
static qf_status scan_archive(qf_archive *qa, qf_error *err) {
    struct archive *a;
    qf_status st = reader_open(qa->path, &a, err);
    if (st != QF_OK) return st;
    for (;;) {
        struct archive_entry *ae;
        int rc = archive_read_next_header(a, &ae);
        if (rc == ARCHIVE_EOF) break; /* libarchive reports a file cut short, even inside skipped data */
        if (!header_ok(rc)) {
            st = qf_fail(err, QF_E_INPUT, "%s: corrupt or truncated archive: %s", qa->path, ar_errstr(a));
            break;
        }
        if ((st = scan_entry(qa, a, ae, err)) != QF_OK) break;
    }
    archive_read_free(a);
    return st;
}

/* ---- pass 1: choosing the model ----------------------------------------------------------------- */

static int cmp_entry_path(const void *x, const void *y) {
    return strcmp((*(const ar_entry *const *)x)->path, (*(const ar_entry *const *)y)->path);
}

/* A path twice (tar appends, or a crafted archive) would make "the" shard ambiguous. */
static qf_status check_duplicates(qf_archive *qa, qf_error *err) {
    if (qa->n_ents < 2) return QF_OK;
    const ar_entry **v = qf_malloc_n(qa->n_ents, sizeof *v);
    if (!v) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    for (size_t i = 0; i < qa->n_ents; i++) v[i] = &qa->ents[i];
    qsort(v, qa->n_ents, sizeof *v, cmp_entry_path);
    qf_status st = QF_OK;
    for (size_t i = 1; i < qa->n_ents && st == QF_OK; i++)
        if (strcmp(v[i - 1]->path, v[i]->path) == 0)
            st = qf_fail(err, QF_E_INPUT, "%s: member '%s' appears twice in the archive", qa->path, v[i]->path);
    free(v);
    return st;
}

/* Index of the model-directory entry named `rel`, or SIZE_MAX. */
static size_t entry_index(const qf_archive *qa, const char *rel) {
    for (size_t i = 0; i < qa->n_ents; i++)
        if (strcmp(rel_name(&qa->ents[i]), rel) == 0) return i;
    return SIZE_MAX;
}

static const ar_entry *find_entry(const qf_archive *qa, const char *rel) {
    size_t i = entry_index(qa, rel);
    return i == SIZE_MAX ? NULL : &qa->ents[i];
}

/* The index's weight_map, entries sorted by tensor name (the cJSON tree owns the strings). */
typedef struct ar_map {
    cJSON *root;
    const cJSON **ents;
    size_t n;
} ar_map;

static void map_free(ar_map *m) {
    cJSON_Delete(m->root);
    free(m->ents);
    memset(m, 0, sizeof *m);
}

static int cmp_map_key(const void *x, const void *y) {
    return strcmp((*(const cJSON *const *)x)->string, (*(const cJSON *const *)y)->string);
}

/* A weight_map value must name a file beside the index, as the directory backend requires. */
static bool plain_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The entries of a weight_map object, validated and sorted; a key twice is an error. */
static qf_status map_collect(const qf_archive *qa, const ar_entry *idx, const cJSON *wm, ar_map *m, qf_error *err) {
    for (const cJSON *it = wm->child; it; it = it->next) m->n++;
    if (m->n == 0) return qf_fail(err, QF_E_INPUT, "%s:%s: weight_map is empty", qa->path, idx->path);
    if (!(m->ents = qf_malloc_n(m->n, sizeof *m->ents))) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    size_t i = 0;
    for (const cJSON *it = wm->child; it; it = it->next) {
        if (!it->string || !cJSON_IsString(it) || !plain_file_name(it->valuestring))
            return qf_fail(err, QF_E_INPUT, "%s:%s: weight_map['%.200s'] is not a file name in the index's directory",
                           qa->path, idx->path, it->string ? it->string : "?");
        m->ents[i++] = it;
    }
    qsort(m->ents, m->n, sizeof *m->ents, cmp_map_key);
    for (i = 1; i < m->n; i++)
        if (strcmp(m->ents[i - 1]->string, m->ents[i]->string) == 0)
            return qf_fail(err, QF_E_INPUT, "%s:%s: weight_map lists tensor '%.200s' twice", qa->path, idx->path,
                           m->ents[i]->string);
    return QF_OK;
}

/* Parse the index member into a sorted weight_map. */
static qf_status parse_index(const qf_archive *qa, const ar_entry *idx, ar_map *m, qf_error *err) {
    if (idx->kind != AR_SIDE || idx->problem)
        return qf_fail(err, QF_E_INPUT, "%s:%s: cannot read the shard index: %s", qa->path, idx->path,
                       idx->problem ? idx->problem : "it is stored as a link");
    char label[4200];
    snprintf(label, sizeof label, "%s:%s", qa->path, idx->path);
    qf_status st = qf_json_parse(label, (const char *)idx->data, (size_t)idx->len, &m->root, err);
    if (st != QF_OK) return st;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(m->root, "weight_map");
    if (!cJSON_IsObject(wm))
        return qf_fail(err, QF_E_INPUT, "%s:%s: not a JSON object with a \"weight_map\" object", qa->path, idx->path);
    return map_collect(qa, idx, wm, m, err);
}

static bool map_names_file(const ar_map *m, const char *rel) {
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->ents[i]->valuestring, rel) == 0) return true;
    return false;
}

/* Every file the index names must be a safetensors member of the model directory. */
static qf_status check_index_files(const qf_archive *qa, const ar_entry *idx, const ar_map *m, qf_error *err) {
    for (size_t i = 0; i < m->n; i++) {
        const ar_entry *e = find_entry(qa, m->ents[i]->valuestring);
        if (!e || !e->is_shard)
            return qf_fail(err, QF_E_INPUT, "%s:%s: tensor '%.200s' is mapped to '%.200s', which is not a safetensors "
                           "member of '%s' in the archive", qa->path, idx->path, m->ents[i]->string,
                           m->ents[i]->valuestring, dir_label(qa->dir));
    }
    return QF_OK;
}

/* Without an index the directory backend's rule applies: model.safetensors, else the only shard. */
static qf_status single_shard(const qf_archive *qa, size_t *only, qf_error *err) {
    size_t first = SIZE_MAX, second = SIZE_MAX;
    *only = entry_index(qa, "model.safetensors");
    if (*only != SIZE_MAX && qa->ents[*only].is_shard) return QF_OK;
    for (size_t i = 0; i < qa->n_ents && second == SIZE_MAX; i++) {
        if (!qa->ents[i].is_shard) continue;
        if (first == SIZE_MAX) first = i;
        else second = i;
    }
    if (first == SIZE_MAX)
        return qf_fail(err, QF_E_INPUT, "%s: model directory '%s' holds no *.safetensors members", qa->path,
                       dir_label(qa->dir));
    if (second != SIZE_MAX)
        return qf_fail(err, QF_E_INPUT, "%s: model directory '%s' holds several .safetensors members (%.200s, %.200s, "
                       "...) but no " AR_INDEX_NAME " to say how they form one model", qa->path, dir_label(qa->dir),
                       rel_name(&qa->ents[first]), rel_name(&qa->ents[second]));
    *only = first;
    return QF_OK;
}

/* Add e to the shard set (links and unreadable headers are errors now that the model needs e). */
static qf_status add_shard(qf_archive *qa, ar_entry *e, qf_error *err) {
    if (e->kind == AR_LINK)
        return qf_fail(err, QF_E_INPUT, "%s: shard '%s' is stored as a link; archive the file itself "
                       "(e.g. tar --dereference)", qa->path, e->path);
    if (e->problem) return qf_fail(err, QF_E_INPUT, "%s:%s: %s", qa->path, e->path, e->problem);
    ar_member *m = &qa->mem[qa->n_mem++];
    m->ent = e;
    if (!(m->label = dup_printf("%s:%s", qa->path, e->path)))
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    return QF_OK;
}

/* The shard set in archive order: the files the index names, or the single shard without one. */
static qf_status choose_shards(qf_archive *qa, const ar_map *map, qf_error *err) {
    if (!(qa->mem = qf_calloc_n(qa->n_ents, sizeof *qa->mem))) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    if (!map) {
        size_t only;
        qf_status st = single_shard(qa, &only, err);
        return st == QF_OK ? add_shard(qa, &qa->ents[only], err) : st;
    }
    for (size_t i = 0; i < qa->n_ents; i++) {
        if (!qa->ents[i].is_shard || !map_names_file(map, rel_name(&qa->ents[i]))) continue;
        qf_status st = add_shard(qa, &qa->ents[i], err);
        if (st != QF_OK) return st;
    }
    return QF_OK;
}

/* Parse every chosen shard's header against its member size. */
static qf_status parse_headers(qf_archive *qa, qf_error *err) {
    for (size_t i = 0; i < qa->n_mem; i++) {
        ar_member *m = &qa->mem[i];
        qf_status st = qf_st_header_parse(m->label, m->ent->data, m->ent->len, m->ent->size, &m->hdr, err);
        if (st != QF_OK) return st;
        /* The parsed header owns copies of its strings, so the JSON bytes can go now. */
        free(m->ent->data);
        m->ent->data = NULL;
    }
    return QF_OK;
}

/* The raw table: members in archive order, each member's tensors by offset (the parser's order). */
static qf_status build_table(qf_archive *qa, qf_error *err) {
    uint64_t n = 0;
    for (size_t i = 0; i < qa->n_mem; i++) n += qa->mem[i].hdr.n_tensors;
    qa->t = qf_calloc_n(n, sizeof *qa->t);
    qa->buf = qf_calloc_n(n, sizeof *qa->buf);
    qa->pinned = qf_calloc_n(n, sizeof *qa->pinned);
    if (!qa->t || !qa->buf || !qa->pinned) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    for (size_t i = 0; i < qa->n_mem; i++)
        for (size_t j = 0; j < qa->mem[i].hdr.n_tensors; j++) {
            qf_st_tensor *t = &qa->t[qa->n_t++];
            *t = qa->mem[i].hdr.tensors[j];
            t->shard = (uint32_t)i;
            t->data = NULL;
        }
    return QF_OK;
}

static int cmp_tensor_name(const void *x, const void *y) {
    return strcmp((*(const qf_st_tensor *const *)x)->name, (*(const qf_st_tensor *const *)y)->name);
}

static int cmp_name_tensor(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const qf_st_tensor *const *)elem)->name);
}

static int cmp_name_map(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const cJSON *const *)elem)->string);
}

/* Index and shards agree: every mapping found in the shard it names, every shard tensor mapped. */
static qf_status check_map(const qf_archive *qa, const ar_entry *idx, const ar_map *m, const qf_st_tensor **by_name,
                           qf_error *err) {
    for (size_t i = 0; i < m->n; i++) {
        const cJSON *it = m->ents[i];
        const qf_st_tensor **hit = bsearch(it->string, by_name, qa->n_t, sizeof *by_name, cmp_name_tensor);
        if (!hit)
            return qf_fail(err, QF_E_INPUT, "%s:%s: tensor '%.200s' is mapped to '%.200s', but that member has no such "
                           "tensor", qa->path, idx->path, it->string, it->valuestring);
        const char *in = rel_name(qa->mem[(*hit)->shard].ent);
        if (strcmp(in, it->valuestring) != 0)
            return qf_fail(err, QF_E_INPUT, "%s:%s: tensor '%.200s' is mapped to '%.200s', but it is in '%.200s'",
                           qa->path, idx->path, it->string, it->valuestring, in);
    }
    for (size_t i = 0; i < qa->n_t; i++)
        if (!bsearch(qa->t[i].name, m->ents, m->n, sizeof *m->ents, cmp_name_map))
            return qf_fail(err, QF_E_INPUT, "%s:%s: tensor '%.200s' in '%s' is not listed in the index weight_map",
                           qa->path, idx->path, qa->t[i].name, qa->mem[qa->t[i].shard].ent->path);
    return QF_OK;
}

/* Tensor names unique across shards, and in agreement with the index if there is one. */
static qf_status check_names(qf_archive *qa, const ar_entry *idx, const ar_map *map, qf_error *err) {
    const qf_st_tensor **v = qf_malloc_n(qa->n_t, sizeof *v);
    if (!v) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", qa->path);
    for (size_t i = 0; i < qa->n_t; i++) v[i] = &qa->t[i];
    qsort(v, qa->n_t, sizeof *v, cmp_tensor_name);
    qf_status st = QF_OK;
    for (size_t i = 1; i < qa->n_t && st == QF_OK; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            st = qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s' appears in both '%s' and '%s'", qa->path, v[i]->name,
                         qa->mem[v[i - 1]->shard].ent->path, qa->mem[v[i]->shard].ent->path);
    if (st == QF_OK && map) st = check_map(qa, idx, map, v, err);
    free(v);
    return st;
}

/* From the entries of the model directory to the validated raw table. */
static qf_status build_model(qf_archive *qa, qf_error *err) {
    if (!qa->dir)
        return qf_fail(err, QF_E_INPUT, "%s: no config.json in the archive; expected one Hugging Face model "
                       "directory", qa->path);
    qf_status st = check_duplicates(qa, err);
    if (st != QF_OK) return st;
    const ar_entry *idx = find_entry(qa, AR_INDEX_NAME);
    ar_map map = {0};
    if (idx) st = parse_index(qa, idx, &map, err);
    if (st == QF_OK && idx) st = check_index_files(qa, idx, &map, err);
    if (st == QF_OK) st = choose_shards(qa, idx ? &map : NULL, err);
    if (st == QF_OK) st = parse_headers(qa, err);
    if (st == QF_OK) st = build_table(qa, err);
    if (st == QF_OK) st = check_names(qa, idx, idx ? &map : NULL, err);
    map_free(&map);
    return st;
}

/* ---- pass 2: streaming -------------------------------------------------------------------------- */

/* Back to "not open": the next request reopens the archive from its start. */
static void stream_reset(ar_stream *s) {
    if (s->rd) archive_read_free(s->rd);
    s->rd = NULL;
    s->cur = SIZE_MAX;
    s->pos = 0;
    s->next = 0;
}

/* Move the stream to the start of member m (at or after the current member). */
static qf_status stream_enter(qf_archive *qa, ar_stream *s, size_t m, qf_error *err) {
    qf_status st;
    if (!s->rd && (st = reader_open(qa->path, &s->rd, err)) != QF_OK) return st;
    const ar_entry *want = qa->mem[m].ent;
    for (;;) {
        struct archive_entry *ae;
        int rc = archive_read_next_header(s->rd, &ae);
        if (rc == ARCHIVE_EOF)
            return qf_fail(err, QF_E_INPUT, "%s: member '%s' not found when re-reading the archive (changed since "
                           "it was opened?)", qa->path, want->path);
        if (!header_ok(rc))
            return qf_fail(err, QF_E_INPUT, "%s: corrupt or truncated archive: %s", qa->path,
                           ar_errstr(s->rd));
        const char *raw = archive_entry_pathname_utf8(ae);
        if (!raw) raw = archive_entry_pathname(ae);
        char *path;
        if (!raw || normalise_path(qa->path, raw, &path, NULL) != QF_OK) continue; /* pass 1 vetted names */
        bool hit = strcmp(path, want->path) == 0;
        free(path);
        if (!hit) continue;
        uint64_t size;
        if (entry_size(ae, &size) && size != want->size)
            return qf_fail(err, QF_E_INPUT, "%s:%s: member has %llu bytes now but had %llu when opened", qa->path,
                           want->path, (unsigned long long)size, (unsigned long long)want->size);
        s->cur = m;
        s->pos = 0;
        return QF_OK;
    }
}

static qf_status short_member(const qf_archive *qa, const qf_st_tensor *t, uint64_t at, qf_error *err) {
    return qf_fail(err, QF_E_INPUT, "%s:%s: member ends at byte %llu, inside tensor '%s' (truncated archive?)",
                   qa->path, qa->mem[t->shard].ent->path, (unsigned long long)at, t->name);
}

/* Drop bytes of the current member up to member offset `to`. */
static qf_status stream_skip_to(qf_archive *qa, ar_stream *s, const qf_st_tensor *t, uint64_t to, qf_error *err) {
    if (to <= s->pos) return QF_OK;
    uint64_t got = 0;
    qf_status st = read_discard(qa, s->rd, qa->mem[s->cur].ent->path, to - s->pos, &got, err);
    if (st != QF_OK) return st;
    s->pos += got;
    return s->pos == to ? QF_OK : short_member(qa, t, s->pos, err);
}

/* Member offset of tensor i's first byte. */
static qf_status tensor_start(const qf_archive *qa, size_t i, uint64_t *start, qf_error *err) {
    const qf_st_tensor *t = &qa->t[i];
    const ar_member *m = &qa->mem[t->shard];
    uint64_t end;
    if (!qf_add_ok(m->hdr.data_start, t->offset, start) || !qf_add_ok(*start, t->nbytes, &end))
        return qf_fail(err, QF_E_INTERNAL, "%s: tensor '%s' offset overflows", m->label, t->name);
    return QF_OK;
}

/* Read tensor i (the stream is at its first byte) into its own buffer. */
static qf_status stream_take(qf_archive *qa, ar_stream *s, size_t i, qf_error *err) {
    const qf_st_tensor *t = &qa->t[i];
    uint8_t *b;
    uint64_t got = 0;
    qf_status st = read_grow(qa, s->rd, qa->mem[t->shard].ent->path, t->nbytes, &b, &got, err);
    if (st != QF_OK) return st;
    s->pos += got;
    if (got < t->nbytes) { free(b); return short_member(qa, t, s->pos, err); }
    qa->buf[i] = b;
    return QF_OK;
}

/* Bring the stream to the first byte of tensor s->next. */
static qf_status stream_to_next(qf_archive *qa, ar_stream *s, qf_error *err) {
    const qf_st_tensor *t = &qa->t[s->next];
    uint64_t start;
    qf_status st = tensor_start(qa, s->next, &start, err);
    if (st == QF_OK && s->cur != t->shard) st = stream_enter(qa, s, t->shard, err);
    return st == QF_OK ? stream_skip_to(qa, s, t, start, err) : st;
}

/* Pass tensor s->next: keep it if it is `r` or pinned and not yet held, else drop its bytes. */
static qf_status stream_step(qf_archive *qa, ar_stream *s, size_t r, qf_error *err) {
    size_t i = s->next;
    const qf_st_tensor *t = &qa->t[i];
    uint64_t start;
    qf_status st = tensor_start(qa, i, &start, err);
    if (st == QF_OK) st = stream_to_next(qa, s, err);
    if (st != QF_OK) return st;
    bool keep = i == r || (qa->pinned[i] && !qa->buf[i]);
    st = keep ? stream_take(qa, s, i, err) : stream_skip_to(qa, s, t, start + t->nbytes, err);
    if (st == QF_OK) s->next = i + 1;
    return st;
}

/* A whole tensor. While a window holds the main stream, other tensors (an FP8 weight's scales that
 * come after it) are read on a second stream, so the window's stream never has to turn back. */
static qf_status ar_raw_bytes(void *impl, size_t r, const uint8_t **data, qf_error *err) {
    qf_archive *qa = impl;
    if (r >= qa->n_t)
        return qf_fail(err, QF_E_INTERNAL, "%s: raw tensor %zu requested, the archive has %zu", qa->path, r, qa->n_t);
    ar_stream *s = qa->win_t != SIZE_MAX ? &qa->side : &qa->main;
    if (!qa->buf[r] && r < s->next) stream_reset(s); /* behind us: stream again from the start */
    while (!qa->buf[r]) {
        qf_status st = stream_step(qa, s, r, err);
        if (st != QF_OK) { stream_reset(s); return st; }
    }
    *data = qa->buf[r];
    return QF_OK;
}

static void window_drop(qf_archive *qa) {
    free(qa->wbuf);
    qa->wbuf = NULL;
    qa->wcap = qa->wlo = qa->whi = qa->wpos = 0;
    qa->win_t = SIZE_MAX;
}

/* Put the main stream at the first byte of tensor r, which the window then owns. */
static qf_status window_start(qf_archive *qa, size_t r, qf_error *err) {
    window_drop(qa);
    ar_stream *s = &qa->main;
    if (r < s->next) stream_reset(s);
    qf_status st = QF_OK;
    while (st == QF_OK && s->next < r) st = stream_step(qa, s, r, err);
    if (st == QF_OK) st = stream_to_next(qa, s, err);
    if (st != QF_OK) {
        stream_reset(s);
        return st;
    }
    s->next = r + 1; /* the window consumes r; the next step skips what it leaves */
    qa->win_t = r;
    return QF_OK;
}

/* Grow the window buffer to n bytes, as bytes arrive (never on a size the archive merely declares). */
static qf_status window_reserve(qf_archive *qa, uint64_t n, qf_error *err) {
    if (n <= qa->wcap) return QF_OK;
    uint64_t cap = QF_MAX(n, QF_MIN(qa->wcap * 2, (uint64_t)SIZE_MAX / 2));
    uint8_t *b = cap < SIZE_MAX ? realloc(qa->wbuf, (size_t)cap) : NULL;
    if (!b)
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory for %llu bytes of tensor '%s'", qa->path,
                       (unsigned long long)cap, qa->t[qa->win_t].name);
    qa->wbuf = b;
    qa->wcap = cap;
    return QF_OK;
}

/* Bytes [lo, hi) of tensor r, streamed: what the window held before lo is dropped, the rest is read
 * on. Forward only within a tensor (a window that starts before the last one re-reads the archive). */
static qf_status ar_window(void *impl, size_t r, uint64_t lo, uint64_t hi, const uint8_t **data, qf_error *err) {
    qf_archive *qa = impl;
    if (r >= qa->n_t || lo > hi || hi > qa->t[r].nbytes)
        return qf_fail(err, QF_E_INTERNAL, "%s: window [%llu, %llu) of raw tensor %zu is out of range", qa->path,
                       (unsigned long long)lo, (unsigned long long)hi, r);
    if (qa->buf[r]) { /* already held whole (pinned) */
        *data = qa->buf[r] + lo;
        return QF_OK;
    }
    qf_status st = QF_OK;
    if (qa->win_t != r || lo < qa->wlo) st = window_start(qa, r, err);
    ar_stream *s = &qa->main;
    const qf_st_tensor *t = &qa->t[r];
    const char *member = qa->mem[t->shard].ent->path;
    if (st == QF_OK && lo >= qa->whi) { /* nothing kept: skip to lo */
        uint64_t got = 0;
        st = read_discard(qa, s->rd, member, lo - qa->wpos, &got, err);
        s->pos += got;
        qa->wpos += got;
        if (st == QF_OK && qa->wpos < lo) st = short_member(qa, t, s->pos, err);
        qa->wlo = qa->whi = lo;
    } else if (st == QF_OK) { /* keep [lo, whi) */
        memmove(qa->wbuf, qa->wbuf + (lo - qa->wlo), (size_t)(qa->whi - lo));
        qa->wlo = lo;
    }
    while (st == QF_OK && qa->whi < hi) {
        uint64_t want = QF_MIN(hi - qa->whi, (uint64_t)AR_FIRST_ALLOC);
        if ((st = window_reserve(qa, qa->whi + want - qa->wlo, err)) != QF_OK) break;
        la_ssize_t got = archive_read_data(s->rd, qa->wbuf + (qa->whi - qa->wlo), (size_t)want);
        if (got < 0) st = qf_fail(err, QF_E_INPUT, "%s:%s: read failed: %s", qa->path, member, ar_errstr(s->rd));
        else if (got == 0) st = short_member(qa, t, s->pos, err);
        else {
            s->pos += (uint64_t)got;
            qa->wpos += (uint64_t)got;
            qa->whi += (uint64_t)got;
        }
    }
    if (st != QF_OK) {
        window_drop(qa);
        stream_reset(s);
        return st;
    }
    *data = qa->wbuf;
    return QF_OK;
}

static void ar_pin(void *impl, size_t r) {
    qf_archive *qa = impl;
    if (r < qa->n_t) qa->pinned[r] = true;
}

/* The caller is done with r: its buffer (or window) goes, and it is no longer kept when streamed past
 * again. */
static void ar_release(void *impl, size_t r) {
    qf_archive *qa = impl;
    if (r >= qa->n_t) return;
    free(qa->buf[r]);
    qa->buf[r] = NULL;
    qa->pinned[r] = false;
    if (qa->win_t == r) window_drop(qa);
}

/* ---- side files, close, open -------------------------------------------------------------------- */

static qf_status ar_read_file(void *impl, const char *name, char **buf, size_t *len, qf_error *err) {
    qf_archive *qa = impl;
    const ar_entry *e = find_entry(qa, name);
    if (!e || e->is_shard)
        return qf_fail(err, QF_E_NOTFOUND, "%s: no '%s' in model directory '%s'", qa->path, name, dir_label(qa->dir));
    if (e->kind == AR_LINK)
        return qf_fail(err, QF_E_INPUT, "%s:%s: stored as a link; archive the file itself (e.g. tar --dereference)",
                       qa->path, e->path);
    if (e->problem) return qf_fail(err, QF_E_INPUT, "%s:%s: %s", qa->path, e->path, e->problem);
    char *copy = qf_strndup((const char *)e->data, (size_t)e->len);
    if (!copy) return qf_fail(err, QF_E_NOMEM, "%s:%s: out of memory", qa->path, e->path);
    *buf = copy;
    if (len) *len = (size_t)e->len;
    return QF_OK;
}

static void ar_close(void *impl) {
    qf_archive *qa = impl;
    if (!qa) return;
    stream_reset(&qa->main);
    stream_reset(&qa->side);
    window_drop(qa);
    for (size_t i = 0; i < qa->n_t; i++) free(qa->buf[i]);
    for (size_t i = 0; i < qa->n_mem; i++) {
        qf_st_header_free(&qa->mem[i].hdr);
        free(qa->mem[i].label);
    }
    for (size_t i = 0; i < qa->n_ents; i++) entry_free(&qa->ents[i]);
    free(qa->buf);
    free(qa->pinned);
    free(qa->t);
    free(qa->mem);
    free(qa->ents);
    free(qa->scratch);
    free(qa->dir);
    free(qa->path);
    free(qa);
}

static const qf_source_backend ar_ops = {
    .read_file = ar_read_file,
    .pin = ar_pin,
    .raw_bytes = ar_raw_bytes,
    .window = ar_window,
    .release = ar_release,
    .close = ar_close,
};

qf_status qf_archive_backend_open(const char *path, const qf_source_backend **ops, void **impl,
                                  qf_source_raw *raw, qf_error *err) {
    qf_archive *qa = calloc(1, sizeof *qa);
    if (!qa) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    qa->main.cur = qa->side.cur = qa->win_t = SIZE_MAX;
    qa->path = qf_strndup(path, strlen(path));
    qa->scratch = malloc(AR_CHUNK);
    qf_status st = !qa->path || !qa->scratch ? qf_fail(err, QF_E_NOMEM, "%s: out of memory", path) : QF_OK;
    if (st == QF_OK && (st = scan_archive(qa, err)) == QF_OK) st = build_model(qa, err);
    if (st != QF_OK) {
        ar_close(qa);
        return st;
    }
    *ops = &ar_ops;
    *impl = qa;
    raw->tensors = qa->t;
    raw->n = qa->n_t;
    raw->sequential = true;
    return QF_OK;
}
