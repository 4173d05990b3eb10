/* Tensor source: logical tensors over a storage backend, FP8 scale folding, row decoding (source.h). */
#include "formats/source_impl.h"
#include "formats/arch.h"
#include "formats/infile.h"
#include "kernels/qtypes.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

typedef struct logical {
    qf_src_tensor pub;
    size_t raw;          /* index of the values in the raw table */
    long scale_raw;      /* index of the scale tensor, or -1 */
    float *scales;       /* decoded scales while prepared */
    uint64_t n_scales;
    uint64_t scale_cols; /* QF_SCALE_BLOCK: scale tensor row length */
    const uint8_t *data; /* raw bytes while prepared */
    const uint8_t *win;  /* sequential sources: rows [win_row0, win_row0 + win_rows) while windowed */
    uint64_t win_row0, win_rows;
    bool win_lost;       /* its window was ended by another tensor's: reading it now is a caller bug */
} logical;

struct qf_source {
    char *label;
    char *repo_id;       /* "ORG/NAME" of a Hugging Face hub cache entry, or NULL */
    const qf_source_backend *ops;
    void *impl;
    qf_source_raw raw;
    size_t *by_name;     /* raw indices sorted by name: checkpoints hold up to ~10^5 tensors */
    logical *t;
    size_t n;
    size_t win_i;        /* the tensor whose rows a sequential source's one stream window holds, or SIZE_MAX */
};

/* ---- directory backend: mmap'd safetensors ------------------------------------------------------- */

typedef struct dir_backend {
    qf_st_model *model;
    char *dir;
    qf_st_tensor *raw; /* copies of the model's tensor records, storage order */
} dir_backend;

static qf_status dir_read_file(void *impl, const char *name, char **buf, size_t *len, qf_error *err) {
    dir_backend *d = impl;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    qf_error e;
    qf_status st = qf_infile_read(path, QF_SOURCE_MAX_SIDE_FILE, "side file", buf, len, &e);
    if (st == QF_E_NOTFOUND) return QF_E_NOTFOUND; /* callers decide whether a missing side file matters */
    if (st != QF_OK && err) *err = e;
    return st;
}

static void dir_pin(void *impl, size_t r) { (void)impl; (void)r; }

static qf_status dir_raw_bytes(void *impl, size_t r, const uint8_t **data, qf_error *err) {
    dir_backend *d = impl;
    *data = d->raw[r].data;
    return QF_OK;
}

static void dir_release(void *impl, size_t r) {
    dir_backend *d = impl;
    qf_st_release(d->model, qf_st_tensor_at(d->model, r));
}

static void dir_close(void *impl) {
    dir_backend *d = impl;
    if (!d) return;
    qf_st_close(d->model);
    free(d->dir);
    free(d->raw);
    free(d);
}

static const qf_source_backend dir_ops = {
    .read_file = dir_read_file, .pin = dir_pin, .raw_bytes = dir_raw_bytes, .release = dir_release,
    .close = dir_close,
};

static qf_status dir_open(const char *path, void **impl, qf_source_raw *raw, qf_error *err) {
    dir_backend *d = calloc(1, sizeof *d);
    if (!d) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_status st = qf_st_open(path, &d->model, err);
    if (st) { free(d); return st; }
    struct stat sb;
    char *copy = strdup(path);
    d->dir = copy ? strdup(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? path : dirname(copy)) : NULL;
    free(copy);
    size_t n = qf_st_n_tensors(d->model);
    d->raw = qf_calloc_n(n, sizeof *d->raw);
    if (!d->dir || !d->raw) { dir_close(d); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    for (size_t i = 0; i < n; i++) d->raw[i] = *qf_st_tensor_at(d->model, i);
    *impl = d;
    raw->tensors = d->raw;
    raw->n = n;
    raw->sequential = false;
    return QF_OK;
}

/* ---- GGUF backend: mmap'd GGUF, tensors in file order ---------------------------------------------- */

typedef struct gguf_backend {
    qf_gguf *g;
    qf_st_tensor *raw;
    uint32_t *qtypes;
} gguf_backend;

static bool is_gguf_file(const char *path) { return qf_infile_has_magic(path, "GGUF", 4); }

static qf_status gguf_read_file(void *impl, const char *name, char **buf, size_t *len, qf_error *err) {
    return QF_E_NOTFOUND; /* a GGUF carries its configuration as metadata, not side files */
}

static qf_status gguf_raw_bytes(void *impl, size_t r, const uint8_t **data, qf_error *err) {
    *data = ((gguf_backend *)impl)->raw[r].data;
    return QF_OK;
}

static void gguf_release(void *impl, size_t r) { (void)impl; (void)r; }

static void gguf_close(void *impl) {
    gguf_backend *b = impl;
    if (!b) return;
    qf_gguf_close(b->g);
    free(b->raw);
    free(b->qtypes);
    free(b);
}

static const qf_source_backend gguf_ops = {
    .read_file = gguf_read_file, .pin = dir_pin, .raw_bytes = gguf_raw_bytes, .release = gguf_release,
    .close = gguf_close,
};

static qf_dtype nominal_dtype(uint32_t qtype) {
    return qtype == QF_T_F32 ? QF_DT_F32 : qtype == QF_T_F16 ? QF_DT_F16 : qtype == QF_T_BF16 ? QF_DT_BF16 : QF_DT_COUNT;
}

static qf_status gguf_open_backend(const char *path, void **impl, qf_source_raw *raw, qf_error *err) {
    gguf_backend *b = calloc(1, sizeof *b);
    if (!b) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_status st = qf_gguf_open(path, &b->g, err);
    if (st) { free(b); return st; }
    size_t n = qf_gguf_n_tensors(b->g);
    b->raw = qf_calloc_n(n, sizeof *b->raw);
    b->qtypes = qf_calloc_n(n, sizeof *b->qtypes);
    if (!b->raw || !b->qtypes) { gguf_close(b); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    for (size_t i = 0; i < n; i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(b->g, i);
        qf_st_tensor *r = &b->raw[i];
        /* HF order (outermost first) so that every consumer sees one shape convention */
        r->name = t->name;
        r->n_dims = t->n_dims;
        r->n_elems = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            r->shape[d] = t->ne[t->n_dims - 1 - d];
            r->n_elems *= t->ne[d];
        }
        r->nbytes = t->nbytes;
        r->offset = t->offset;
        r->shard = (uint32_t)qf_gguf_tensor_part(b->g, i); /* a split set's part */
        r->data = t->data;
        r->dtype = nominal_dtype(t->type);
        b->qtypes[i] = t->type;
    }
    *impl = b;
    raw->tensors = b->raw;
    raw->n = n;
    raw->qtypes = b->qtypes;
    raw->gguf = b->g;
    return QF_OK;
}

/* ---- logical tensors ------------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_raw_name(const void *a, const void *b, void *ctx) {
    const qf_st_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static qf_status index_names(qf_source *s, qf_error *err) {
    s->by_name = qf_calloc_n(s->raw.n, sizeof *s->by_name);
    if (!s->by_name) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->raw.n; i++) s->by_name[i] = i;
    qsort_r(s->by_name, s->raw.n, sizeof *s->by_name, cmp_raw_name, (void *)s->raw.tensors);
    return QF_OK;
}

static long raw_find(const qf_source *s, const char *name) {
    size_t lo = 0, hi = s->raw.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->raw.tensors[s->by_name[mid]].name, name);
        if (c == 0) return (long)s->by_name[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

static bool is_fp8(qf_dtype dt) { return dt == QF_DT_F8_E4M3 || dt == QF_DT_F8_E5M2; }

/* The FP8 weight a scale tensor belongs to, or -1 if `t` is not a weight scale. DeepSeek names it
 * "<w>_scale_inv"; compressed-tensors "<prefix>.weight_scale" for "<prefix>.weight". */
static long scale_owner(const qf_source *s, const qf_st_tensor *t) {
    char base[1024];
    size_t len = strlen(t->name);
    if (ends_with(t->name, "_scale_inv") && len - 10 < sizeof base) {
        memcpy(base, t->name, len - 10);
        base[len - 10] = '\0';
    } else if (ends_with(t->name, ".weight_scale") && len - 6 < sizeof base) {
        memcpy(base, t->name, len - 6); /* drop "_scale" */
        base[len - 6] = '\0';
    } else {
        return -1;
    }
    long w = raw_find(s, base);
    return w >= 0 && is_fp8(s->raw.tensors[w].dtype) ? w : -1;
}

/* Activation scales of FP8 checkpoints (static input quantization) carry no weight information. */
static bool is_activation_scale(const qf_st_tensor *t) {
    return ends_with(t->name, ".input_scale") || ends_with(t->name, ".k_scale") || ends_with(t->name, ".v_scale");
}

static qf_status classify_scale(const qf_source *s, logical *l, const uint32_t cfg_block[2], qf_error *err) {
    const qf_st_tensor *sc = &s->raw.tensors[l->scale_raw];
    const qf_src_tensor *w = &l->pub;
    if (!qf_dtype_is_float(sc->dtype) || is_fp8(sc->dtype))
        return qf_fail(err, QF_E_INPUT, "%s: scale tensor '%s' has dtype %s; expected F32, BF16 or F16", s->label,
                       sc->name, qf_dtype_name(sc->dtype));
    if (sc->n_elems == 1) { l->pub.scale_kind = QF_SCALE_TENSOR; return QF_OK; }
    if (sc->n_elems == w->n_rows && (sc->n_dims == 1 || (sc->n_dims == 2 && sc->shape[1] == 1))) {
        l->pub.scale_kind = QF_SCALE_CHANNEL;
        return QF_OK;
    }
    if (sc->n_dims == 2 && w->n_dims == 2) {
        uint32_t b0 = cfg_block[0] ? cfg_block[0] : 128, b1 = cfg_block[1] ? cfg_block[1] : 128;
        uint64_t want0 = (w->n_rows + b0 - 1) / b0, want1 = (w->row_len + b1 - 1) / b1;
        if (sc->shape[0] != want0 || sc->shape[1] != want1)
            return qf_fail(err, QF_E_INPUT,
                           "%s: scale tensor '%s' has shape [%llu, %llu]; weight [%llu, %llu] with %ux%u blocks needs [%llu, %llu]",
                           s->label, sc->name, (unsigned long long)sc->shape[0], (unsigned long long)sc->shape[1],
                           (unsigned long long)w->n_rows, (unsigned long long)w->row_len, b0, b1,
                           (unsigned long long)want0, (unsigned long long)want1);
        l->pub.scale_kind = QF_SCALE_BLOCK;
        l->pub.block[0] = b0;
        l->pub.block[1] = b1;
        l->scale_cols = want1;
        return QF_OK;
    }
    return qf_fail(err, QF_E_INPUT, "%s: scale tensor '%s' fits neither per-tensor, per-channel nor block scaling of '%s'",
                   s->label, sc->name, w->name);
}

static void fill_public(logical *l, const qf_st_tensor *t) {
    qf_src_tensor *p = &l->pub;
    p->name = t->name;
    p->dtype = t->dtype;
    p->n_dims = t->n_dims;
    memcpy(p->shape, t->shape, sizeof p->shape);
    p->nbytes = t->nbytes;
    p->row_len = t->n_dims ? t->shape[t->n_dims - 1] : 1;
    p->n_rows = p->row_len ? t->n_elems / p->row_len : 0;
}

static qf_status build_logical(qf_source *s, qf_error *err) {
    uint32_t block[2] = {0, 0};
    char *cfg = NULL;
    size_t cfg_len = 0;
    qf_status st = s->ops->read_file(s->impl, "config.json", &cfg, &cfg_len, err);
    if (st == QF_OK) {
        char label[4200];
        snprintf(label, sizeof label, "%s: config.json", s->label);
        st = qf_hf_fp8_block(label, cfg, cfg_len, block, err);
        free(cfg);
        if (st) return st;
    } else if (st != QF_E_NOTFOUND) {
        return st;
    }
    if ((st = index_names(s, err))) return st;
    s->t = qf_calloc_n(s->raw.n, sizeof *s->t);
    if (!s->t) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t r = 0; r < s->raw.n; r++) {
        const qf_st_tensor *t = &s->raw.tensors[r];
        if (!s->raw.qtypes && (scale_owner(s, t) >= 0 || is_activation_scale(t))) continue;
        logical *l = &s->t[s->n++];
        fill_public(l, t);
        l->raw = r;
        l->scale_raw = -1;
        l->pub.qtype = s->raw.qtypes ? s->raw.qtypes[r] : UINT32_MAX;
        if (s->raw.qtypes) continue;
        if (!is_fp8(t->dtype)) continue;
        char name[1100];
        snprintf(name, sizeof name, "%s_scale_inv", t->name);
        l->scale_raw = raw_find(s, name);
        if (l->scale_raw < 0 && ends_with(t->name, ".weight")) {
            snprintf(name, sizeof name, "%s_scale", t->name);
            l->scale_raw = raw_find(s, name);
        }
        if (l->scale_raw >= 0) {
            if ((st = classify_scale(s, l, block, err))) return st;
            s->ops->pin(s->impl, (size_t)l->scale_raw);
        }
    }
    return QF_OK;
}

static char *label_for(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    return qf_strndup(path, n);
}

/* ---- Hugging Face hub cache ------------------------------------------------------------------------
 * huggingface_hub keeps a repository as models--ORG--NAME/ with refs/<branch> holding a commit hash,
 * snapshots/<commit>/ holding the files as symlinks into blobs/ (opened through the links like any
 * file). The repository id is the directory name with "--" for "/" (hub ids never contain "--"). */

/* "ORG/NAME" (or "NAME") from a directory named models--ORG--NAME, else NULL. */
static char *repo_id_from(const char *dir_name, size_t len) {
    static const char prefix[] = "models--";
    size_t p = sizeof prefix - 1;
    if (len <= p || strncmp(dir_name, prefix, p) != 0) return NULL;
    char *id = qf_strndup(dir_name + p, len - p);
    char *sep = id ? strstr(id, "--") : NULL;
    if (sep) memmove(sep + 1, sep + 2, strlen(sep + 2) + 1), *sep = '/';
    return id;
}

/* The last path component of path[0..len) (no trailing slashes), as a span. */
static const char *last_component(const char *path, size_t *len) {
    size_t n = *len;
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    *len = n - b;
    return path + b;
}

/* Read refs/main of a cache entry and check the commit names a snapshot directory. */
static qf_status hf_cache_snapshot(const char *repo, char **snapshot, qf_error *err) {
    char ref_path[4200], commit[128] = "";
    snprintf(ref_path, sizeof ref_path, "%s/refs/main", repo);
    FILE *f = fopen(ref_path, "r");
    if (!f)
        return qf_fail(err, QF_E_INPUT, "%s: a Hugging Face cache entry without refs/main: give the snapshot directory "
                       "(%s/snapshots/COMMIT) instead", repo, repo);
    bool got = fgets(commit, sizeof commit, f) != NULL;
    fclose(f);
    commit[strcspn(commit, "\r\n")] = '\0';
    bool ok = got && commit[0];
    for (const char *c = commit; *c; c++) ok &= (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');
    if (!ok) return qf_fail(err, QF_E_INPUT, "%s: does not hold a commit hash", ref_path);
    size_t n = strlen(repo) + strlen(commit) + 16;
    char *snap = malloc(n);
    if (!snap) return qf_fail(err, QF_E_NOMEM, "out of memory");
    snprintf(snap, n, "%s/snapshots/%s", repo, commit);
    struct stat sb;
    if (stat(snap, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        qf_status st = qf_fail(err, QF_E_INPUT, "%s: refs/main names commit %s, whose snapshot directory is missing "
                               "(an interrupted download?)", repo, commit);
        free(snap);
        return st;
    }
    *snapshot = snap;
    return QF_OK;
}

/* A cache entry (models--ORG--NAME holding refs/ and snapshots/) resolves to its refs/main snapshot; a
 * snapshot directory given directly (models--ORG--NAME/snapshots/COMMIT) keeps its path. Either way the
 * repository id is recorded. *resolved stays NULL for paths outside the cache layout. */
static qf_status hf_cache_resolve(qf_source *s, const char *path, char **resolved, qf_error *err) {
    *resolved = NULL;
    size_t clen = strlen(path);
    const char *comp = last_component(path, &clen);
    char snaps[4200];
    snprintf(snaps, sizeof snaps, "%.*s/snapshots", (int)(comp - path + clen), path);
    struct stat sb;
    if ((s->repo_id = repo_id_from(comp, clen)) && stat(snaps, &sb) == 0 && S_ISDIR(sb.st_mode))
        return hf_cache_snapshot(s->label, resolved, err);
    free(s->repo_id);
    s->repo_id = NULL;
    /* .../models--ORG--NAME/snapshots/COMMIT[/file] */
    size_t plen = (size_t)(comp - path);
    for (int up = 0; up < 3 && plen > 0; up++) {
        size_t n = plen;
        const char *parent = last_component(path, &n);
        if (n == 9 && !strncmp(parent, "snapshots", 9)) {
            size_t rn = (size_t)(parent - path);
            const char *repo = last_component(path, &rn);
            s->repo_id = repo_id_from(repo, rn);
            return QF_OK;
        }
        plen = (size_t)(parent - path);
    }
    return QF_OK;
}

qf_status qf_source_open(const char *path, qf_source **out, qf_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return qf_fail(err, QF_E_NOTFOUND, "%s: %s", path, strerror(errno));
    qf_source *s = calloc(1, sizeof *s);
    if (!s || !(s->label = label_for(path))) { free(s); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    s->win_i = SIZE_MAX;
    char *snapshot = NULL;
    qf_status st = S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode) ? hf_cache_resolve(s, path, &snapshot, err) : QF_OK;
    if (st) { qf_source_close(s); return st; }
    if (snapshot) {
        free(s->label);
        s->label = snapshot;
        path = snapshot;
        stat(path, &sb);
    }
    if (S_ISREG(sb.st_mode) && is_gguf_file(path)) {
        s->ops = &gguf_ops;
        st = gguf_open_backend(path, &s->impl, &s->raw, err);
    } else if (S_ISREG(sb.st_mode) && qf_archive_detect(path)) {
        st = qf_archive_backend_open(path, &s->ops, &s->impl, &s->raw, err);
    } else {
        s->ops = &dir_ops;
        st = dir_open(path, &s->impl, &s->raw, err);
    }
    if (st == QF_OK) st = build_logical(s, err);
    if (st) { if (!s->ops) s->ops = &dir_ops; qf_source_close(s); return st; }
    *out = s;
    return QF_OK;
}

void qf_source_close(qf_source *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->t[i].scales);
    if (s->impl) s->ops->close(s->impl);
    free(s->t);
    free(s->by_name);
    free(s->label);
    free(s->repo_id);
    free(s);
}

const char *qf_source_label(const qf_source *s) { return s->label; }
const char *qf_source_repo_id(const qf_source *s) { return s->repo_id; }
const qf_gguf *qf_source_gguf(const qf_source *s) { return s->raw.gguf; }
bool qf_source_sequential(const qf_source *s) { return s->raw.sequential; }
size_t qf_source_n_tensors(const qf_source *s) { return s->n; }
const qf_src_tensor *qf_source_tensor(const qf_source *s, size_t i) { return i < s->n ? &s->t[i].pub : NULL; }

long qf_source_find(const qf_source *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->t[i].pub.name, name) == 0) return (long)i;
    return -1;
}

qf_status qf_source_read_file(qf_source *s, const char *name, char **buf, size_t *len, qf_error *err) {
    return s->ops->read_file(s->impl, name, buf, len, err);
}

/* ---- rows ------------------------------------------------------------------------------------------ */

/* l->scales is set only once they are all checked: a failed call leaves the tensor unprepared, so asking
 * again fails again. */
static qf_status prepare_scales(qf_source *s, logical *l, qf_error *err) {
    const qf_st_tensor *sc = &s->raw.tensors[l->scale_raw];
    const uint8_t *bytes;
    qf_status st = s->ops->raw_bytes(s->impl, (size_t)l->scale_raw, &bytes, err);
    if (st) return st;
    float *scales = qf_malloc_n(sc->n_elems, sizeof(float));
    if (!scales) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for scales of '%s'", s->label, l->pub.name);
    qf_dtype_decode(sc->dtype, bytes, scales, sc->n_elems);
    s->ops->release(s->impl, (size_t)l->scale_raw);
    for (uint64_t i = 0; i < sc->n_elems; i++)
        if (!isfinite(scales[i])) {
            free(scales);
            return qf_fail(err, QF_E_INPUT, "%s: scale tensor '%s' holds a non-finite value at index %llu", s->label,
                           sc->name, (unsigned long long)i);
        }
    l->scales = scales;
    l->n_scales = sc->n_elems;
    return QF_OK;
}

/* Stored bytes of one row of a safetensors tensor (GGUF sources are never sequential). */
static uint64_t row_bytes(const logical *l) { return l->pub.row_len * qf_dtype_size(l->pub.dtype); }

qf_status qf_source_prepare_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, qf_error *err) {
    if (i >= s->n) return qf_fail(err, QF_E_INTERNAL, "tensor index %zu out of range", i);
    logical *l = &s->t[i];
    if (!s->raw.sequential || !s->ops->window || l->data) return qf_source_prepare(s, i, err);
    if (row0 > l->pub.n_rows || n > l->pub.n_rows - row0)
        return qf_fail(err, QF_E_INTERNAL, "rows [%llu, +%llu) out of range for '%s'", (unsigned long long)row0,
                       (unsigned long long)n, l->pub.name);
    /* the window first: it puts the stream at this tensor, and scales stored after it come from a
     * second stream instead of making this one pass the tensor */
    uint64_t rb = row_bytes(l);
    if (s->win_i != SIZE_MAX && s->win_i != i) { /* the backend has one window: the last one's ends */
        s->t[s->win_i].win = NULL;
        s->t[s->win_i].win_lost = true;
    }
    s->win_i = SIZE_MAX;
    l->win = NULL;
    l->win_lost = false;
    qf_status st = s->ops->window(s->impl, l->raw, row0 * rb, (row0 + n) * rb, &l->win, err);
    if (st == QF_OK && l->scale_raw >= 0 && !l->scales) st = prepare_scales(s, l, err);
    if (st != QF_OK) {
        l->win = NULL;
        return st;
    }
    l->win_row0 = row0;
    l->win_rows = n;
    s->win_i = i;
    return QF_OK;
}

qf_status qf_source_prepare(qf_source *s, size_t i, qf_error *err) {
    if (i >= s->n) return qf_fail(err, QF_E_INTERNAL, "tensor index %zu out of range", i);
    logical *l = &s->t[i];
    l->win_lost = false;
    if (l->data) return QF_OK;
    qf_status st = s->ops->raw_bytes(s->impl, l->raw, &l->data, err);
    if (st == QF_OK && l->scale_raw >= 0 && !l->scales) st = prepare_scales(s, l, err);
    return st;
}

/* Row gr's source scales: one per run of `*run` columns (a block's width; a whole row for tensor and
 * channel scales). */
static const float *row_scales(const logical *l, uint64_t gr, uint64_t *run) {
    const qf_src_tensor *p = &l->pub;
    *run = p->scale_kind == QF_SCALE_BLOCK ? p->block[1] : p->row_len;
    switch (p->scale_kind) {
    case QF_SCALE_CHANNEL: return l->scales + gr;
    case QF_SCALE_BLOCK: return l->scales + (gr / p->block[0]) * l->scale_cols;
    default: return l->scales;
    }
}

/* dst[c] *= the scale of each element of rows [row0, row0+n); a run at a time, so the inner loop has one
 * scale and vectorizes. */
static void apply_scales(const logical *l, uint64_t row0, uint64_t n, float *dst) {
    uint64_t len = l->pub.row_len;
    for (uint64_t r = 0; r < n; r++) {
        float *row = dst + r * len;
        uint64_t run;
        const float *sc = row_scales(l, row0 + r, &run);
        for (uint64_t c0 = 0, k = 0; c0 < len; c0 += run, k++) {
            uint64_t c1 = QF_MIN(c0 + run, len);
            float s = sc[k];
            for (uint64_t c = c0; c < c1; c++) row[c] *= s;
        }
    }
}

/* Stored bytes of one row of tensor l: a GGUF type's row, or row_len values of a safetensors dtype. */
static bool stored_row_bytes(const logical *l, uint64_t *bytes) {
    if (l->pub.qtype == UINT32_MAX) { *bytes = row_bytes(l); return true; }
    return qf_qtype_row_bytes(qf_qtype_get(l->pub.qtype), l->pub.row_len, bytes);
}

void qf_source_advise(qf_source *s, size_t i, uint64_t row0, uint64_t n) {
    if (i >= s->n || s->raw.sequential) return;
    logical *l = &s->t[i];
    uint64_t rb;
    qf_error ignored;
    const uint8_t *data = l->data;
    /* the bytes' address only: preparing here would check (and could half-prepare) the tensor's scales */
    if (!stored_row_bytes(l, &rb) || row0 >= l->pub.n_rows || (!data && s->ops->raw_bytes(s->impl, l->raw, &data, &ignored)) ||
        !data)
        return;
    n = QF_MIN(n, l->pub.n_rows - row0);
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096, lo = (uintptr_t)(data + row0 * rb);
    uintptr_t a = lo / page * page, b = lo + (uintptr_t)(n * rb);
    if (b > a) madvise((void *)a, b - a, MADV_WILLNEED); /* a hint: its failure changes nothing */
}

/* The stored bytes of rows [row0, row0+n) of tensor i, *rb bytes each, from its window when
 * qf_source_prepare_rows made one, else from the prepared tensor (prepared here when it is not yet). */
static qf_status stored_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, logical **out, const uint8_t **rows,
                             uint64_t *rb, qf_error *err) {
    logical *l = i < s->n ? &s->t[i] : NULL;
    if (l && l->win_lost)
        return qf_fail(err, QF_E_INTERNAL, "%s: rows of '%s' were read after another tensor's rows replaced them",
                       s->label, l->pub.name);
    if (l && l->win && !l->data) { /* a window prepared by qf_source_prepare_rows */
        if (row0 < l->win_row0 || n > l->win_rows || row0 - l->win_row0 > l->win_rows - n)
            return qf_fail(err, QF_E_INTERNAL, "rows [%llu, +%llu) of '%s' are outside the prepared rows [%llu, +%llu)",
                           (unsigned long long)row0, (unsigned long long)n, l->pub.name,
                           (unsigned long long)l->win_row0, (unsigned long long)l->win_rows);
        *out = l;
        *rb = row_bytes(l);
        *rows = l->win + (row0 - l->win_row0) * *rb;
        return QF_OK;
    }
    qf_status st = qf_source_prepare(s, i, err);
    if (st) return st;
    if (row0 > l->pub.n_rows || n > l->pub.n_rows - row0)
        return qf_fail(err, QF_E_INTERNAL, "rows [%llu, +%llu) out of range for '%s'", (unsigned long long)row0,
                       (unsigned long long)n, l->pub.name);
    const qf_qtype_traits *tt = l->pub.qtype != UINT32_MAX ? qf_qtype_get(l->pub.qtype) : NULL;
    if (!stored_row_bytes(l, rb) || (l->pub.qtype != UINT32_MAX && !tt->dequantize))
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which this build cannot read", s->label,
                       l->pub.name, tt ? tt->name : "?");
    *out = l;
    *rows = l->data + row0 * *rb;
    return QF_OK;
}

qf_status qf_source_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, float *dst, qf_error *err) {
    logical *l = NULL;
    const uint8_t *rows = NULL;
    uint64_t rb;
    qf_status st = stored_rows(s, i, row0, n, &l, &rows, &rb, err);
    if (st) return st;
    if (l->pub.qtype != UINT32_MAX) {
        /* GGUF rows: every row is whole blocks, so rows dequantize independently */
        const qf_qtype_traits *tt = qf_qtype_get(l->pub.qtype);
        for (uint64_t r = 0; r < n; r++)
            tt->dequantize(rows + r * rb, dst + r * l->pub.row_len, (int64_t)l->pub.row_len);
        return QF_OK;
    }
    qf_dtype_decode(l->pub.dtype, rows, dst, n * l->pub.row_len);
    if (l->pub.scale_kind != QF_SCALE_NONE) apply_scales(l, row0, n, dst);
    return QF_OK;
}

qf_status qf_source_fp8_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, uint64_t g, uint8_t *codes,
                             float *scales, qf_error *err) {
    logical *l = NULL;
    const uint8_t *rows = NULL;
    uint64_t rb;
    qf_status st = stored_rows(s, i, row0, n, &l, &rows, &rb, err);
    if (st) return st;
    if (l->pub.qtype != UINT32_MAX || l->pub.dtype != QF_DT_F8_E4M3)
        return qf_fail(err, QF_E_INTERNAL, "%s: tensor '%s' is not F8_E4M3: its codes cannot pass through", s->label,
                       l->pub.name);
    uint64_t len = l->pub.row_len;
    if (g == 0 || len % g)
        return qf_fail(err, QF_E_INTERNAL, "%s: tensor '%s': rows of %llu values do not split into groups of %llu",
                       s->label, l->pub.name, (unsigned long long)len, (unsigned long long)g);
    memcpy(codes, rows, n * len);
    /* a scale per group, not per value: a value's scale as a float would move 4x the bytes of its code */
    for (uint64_t r = 0; r < n; r++) {
        uint64_t run = len;
        const float *sc = l->pub.scale_kind != QF_SCALE_NONE ? row_scales(l, row0 + r, &run) : NULL;
        for (uint64_t c = 0; c < len; c += g) {
            if (c / run != (c + g - 1) / run)
                return qf_fail(err, QF_E_INTERNAL, "%s: tensor '%s': row %llu, columns %llu..%llu do not share one "
                               "FP8 scale", s->label, l->pub.name, (unsigned long long)(row0 + r),
                               (unsigned long long)c, (unsigned long long)(c + g - 1));
            *scales++ = sc ? sc[c / run] : 1.0f;
        }
    }
    return QF_OK;
}

uint32_t qf_src_plain_type(const qf_src_tensor *t) {
    if (t->qtype != UINT32_MAX)
        return t->qtype == QF_T_F32 || t->qtype == QF_T_F16 || t->qtype == QF_T_BF16 ? t->qtype : UINT32_MAX;
    if (t->scale_kind != QF_SCALE_NONE) return UINT32_MAX;
    switch (t->dtype) {
    case QF_DT_F32: return QF_T_F32;
    case QF_DT_F16: return QF_T_F16;
    case QF_DT_BF16: return QF_T_BF16;
    default: return UINT32_MAX;
    }
}

/* Rows of a plain tensor as stored: where they lie, checked to be bytes that pass through. */
static qf_status plain_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, const uint8_t **rows, uint64_t *rb,
                            qf_error *err) {
    logical *l = NULL;
    qf_status st = stored_rows(s, i, row0, n, &l, rows, rb, err);
    if (st) return st;
    uint32_t t = qf_src_plain_type(&l->pub);
    if (t == UINT32_MAX || *rb != l->pub.row_len * qf_qtype_get(t)->bytes)
        return qf_fail(err, QF_E_INTERNAL, "%s: tensor '%s' is not plain F32/F16/BF16: its bytes cannot pass through",
                       s->label, l->pub.name);
    return QF_OK;
}

qf_status qf_source_plain_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, void *dst, qf_error *err) {
    const uint8_t *rows = NULL;
    uint64_t rb;
    qf_status st = plain_rows(s, i, row0, n, &rows, &rb, err);
    if (st) return st;
    memcpy(dst, rows, n * rb);
    return QF_OK;
}

qf_status qf_source_plain_view(qf_source *s, size_t i, uint64_t row0, uint64_t n, const void **rows, qf_error *err) {
    *rows = NULL;
    if (s->raw.sequential) return QF_OK; /* its bytes live only until the stream moves on */
    const uint8_t *at = NULL;
    uint64_t rb;
    qf_status st = plain_rows(s, i, row0, n, &at, &rb, err);
    if (st == QF_OK) *rows = at;
    return st;
}

bool qf_src_scale_uniform(const qf_src_tensor *t, int axis, uint64_t lo, uint64_t n) {
    if (n <= 1) return true;
    switch (t->scale_kind) {
    case QF_SCALE_NONE: case QF_SCALE_TENSOR: return true;
    case QF_SCALE_CHANNEL: return axis == 1;
    case QF_SCALE_BLOCK: return lo / t->block[axis] == (lo + n - 1) / t->block[axis];
    }
    return false;
}

void qf_source_release(qf_source *s, size_t i) {
    if (i >= s->n) return;
    logical *l = &s->t[i];
    l->win_lost = false;
    if (!l->data && !l->win) return;
    if (s->win_i == i) s->win_i = SIZE_MAX;
    s->ops->release(s->impl, l->raw);
    l->data = NULL;
    l->win = NULL;
    free(l->scales);
    l->scales = NULL;
}

/* ---- provenance digest ----------------------------------------------------------------------------- */


qf_status qf_source_digest(qf_source *s, char hex[65], qf_error *err) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 unavailable");
    }
    /* The tensor table identifies the weights (names, types, shapes, placement) without re-reading
     * gigabytes; per-tensor content digests live in the output file itself. */
    for (size_t r = 0; r < s->raw.n; r++) {
        const qf_st_tensor *t = &s->raw.tensors[r];
        char line[1400];
        char type[24];
        snprintf(type, sizeof type, "%s", s->raw.qtypes ? "" : qf_dtype_name(t->dtype));
        if (s->raw.qtypes) snprintf(type, sizeof type, "ggml:%u", s->raw.qtypes[r]);
        int n = snprintf(line, sizeof line, "%s %s %u %llu %llu %llu\n", t->name, type, t->shard,
                         (unsigned long long)t->offset, (unsigned long long)t->nbytes, (unsigned long long)t->n_elems);
        EVP_DigestUpdate(md, line, (size_t)QF_MIN(n, (int)sizeof line - 1));
    }
    for (size_t f = 0; f < QF_MODEL_SIDE_FILES; f++) {
        char *buf = NULL;
        size_t len = 0;
        qf_status st = s->ops->read_file(s->impl, qf_model_side_files[f], &buf, &len, err);
        if (st == QF_E_NOTFOUND) continue;
        if (st) { EVP_MD_CTX_free(md); return st; }
        EVP_DigestUpdate(md, qf_model_side_files[f], strlen(qf_model_side_files[f]) + 1);
        EVP_DigestUpdate(md, buf, len);
        free(buf);
    }
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return QF_OK;
}
