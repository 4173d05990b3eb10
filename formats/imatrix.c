/* llama.cpp-compatible imatrix files: the GGUF form, and the legacy imatrix.dat read too (imatrix.h). */
#include "formats/imatrix.h"
#include "formats/infile.h"
#include "formats/gguf.h"
#include "kernels/qtypes.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

qf_imatrix_entry *qf_imatrix_add(qf_imatrix *im, const char *name, uint32_t n_cols, uint32_t n_mat) {
    qf_imatrix_entry *grown = realloc(im->e, (im->n + 1) * sizeof *im->e);
    if (!grown) return NULL;
    im->e = grown;
    qf_imatrix_entry *e = &im->e[im->n];
    *e = (qf_imatrix_entry){.name = strdup(name), .n_cols = n_cols, .n_mat = n_mat,
                            .sum2 = qf_calloc_n((uint64_t)n_cols * n_mat, sizeof(double)),
                            .counts = qf_calloc_n(n_mat, sizeof(double))};
    if (!e->name || !e->sum2 || !e->counts) {
        free(e->name); free(e->sum2); free(e->counts);
        return NULL;
    }
    im->n++;
    return e;
}

const qf_imatrix_entry *qf_imatrix_find(const qf_imatrix *im, const char *name) {
    for (size_t i = 0; im && i < im->n; i++)
        if (strcmp(im->e[i].name, name) == 0) return &im->e[i];
    return NULL;
}

void qf_imatrix_free(qf_imatrix *im) {
    for (size_t i = 0; i < im->n; i++) { free(im->e[i].name); free(im->e[i].sum2); free(im->e[i].counts); }
    for (size_t i = 0; i < im->n_datasets; i++) free(im->datasets[i]);
    free(im->e);
    free(im->datasets);
    free(im->calibration_sha256);
    memset(im, 0, sizeof *im);
}

/* ---- load -------------------------------------------------------------------------------------- */

static qf_status load_entry(const char *path, const qf_gguf *g, const qf_gguf_tensor *sum, qf_imatrix *im, qf_error *err) {
    char base[256], cname[300];
    size_t bl = strlen(sum->name) - strlen(".in_sum2");
    if (bl >= sizeof base) return qf_fail(err, QF_E_INPUT, "%s: tensor name '%s' too long", path, sum->name);
    memcpy(base, sum->name, bl);
    base[bl] = '\0';
    snprintf(cname, sizeof cname, "%s.counts", base);
    const qf_gguf_tensor *cnt = qf_gguf_find_tensor(g, cname);
    if (!cnt) return qf_fail(err, QF_E_INPUT, "%s: '%s' has no matching '%s'", path, sum->name, cname);
    if (sum->type != QF_T_F32 || cnt->type != QF_T_F32 || sum->n_dims > 2 || cnt->ne[0] != 1 || cnt->ne[1] != sum->ne[1] ||
        sum->ne[0] > UINT32_MAX || sum->ne[1] > 65536)
        return qf_fail(err, QF_E_INPUT, "%s: '%s' [%llu x %llu] and '%s' [%llu x %llu] must be F32 [n_cols x n_mat] and [1 x n_mat]",
                       path, sum->name, (unsigned long long)sum->ne[0], (unsigned long long)sum->ne[1], cname,
                       (unsigned long long)cnt->ne[0], (unsigned long long)cnt->ne[1]);
    qf_imatrix_entry *e = qf_imatrix_add(im, base, (uint32_t)sum->ne[0], (uint32_t)sum->ne[1]);
    if (!e) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < (uint64_t)e->n_cols * e->n_mat; i++) {
        float v;
        memcpy(&v, sum->data + 4 * i, 4);
        if (!isfinite(v) || v < 0) return qf_fail(err, QF_E_INPUT, "%s: '%s' holds %g at %llu; sums of squares are finite and >= 0", path, sum->name, v, (unsigned long long)i);
        e->sum2[i] = v;
    }
    for (uint32_t m = 0; m < e->n_mat; m++) {
        float v;
        memcpy(&v, cnt->data + 4 * (uint64_t)m, 4);
        /* token counts are whole numbers; a fractional one could blow sum2/count up to infinity */
        if (!isfinite(v) || v < 0 || v != floorf(v))
            return qf_fail(err, QF_E_INPUT, "%s: '%s' holds count %g; counts are whole numbers of tokens", path, cname, v);
        e->counts[m] = v;
    }
    return QF_OK;
}

static qf_status load_meta(const char *path, const qf_gguf *g, qf_imatrix *im, qf_error *err) {
    const void *arr;
    uint64_t n;
    qf_status st = qf_gguf_get_arr(g, "imatrix.datasets", QF_GGUF_STRING, &arr, &n, err);
    if (st == QF_OK && n) {
        im->datasets = qf_calloc_n(n, sizeof(char *));
        if (!im->datasets) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
        for (uint64_t i = 0; i < n; i++) {
            if (!(im->datasets[i] = strdup(((const qf_gguf_str *)arr)[i].ptr))) return qf_fail(err, QF_E_NOMEM, "out of memory");
            im->n_datasets++;
        }
    } else if (st != QF_OK && st != QF_E_NOTFOUND) {
        return st;
    }
    const char *calib = NULL;
    if (qf_gguf_get_str(g, "qforge.calibration_sha256", &calib, NULL) == QF_OK && !(im->calibration_sha256 = strdup(calib)))
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    if ((st = qf_gguf_get_u32(g, "imatrix.chunk_count", &im->chunk_count, err)) && st != QF_E_NOTFOUND) return st;
    if ((st = qf_gguf_get_u32(g, "imatrix.chunk_size", &im->chunk_size, err)) && st != QF_E_NOTFOUND) return st;
    return QF_OK;
}

/* ---- llama.cpp's legacy imatrix.dat ----------------------------------------------------------------
 * All little-endian int32/float32, as llama-imatrix --output-format dat writes it:
 *   i32 n_entries (>= 1)
 *   n_entries x { i32 len | len bytes name | i32 ncall | i32 nval | nval x f32 }
 *       the values are per-column means of x^2 scaled by ncall (sum2 / count * ncall), matrix after
 *       matrix for 3-D expert tensors; a column no token reached holds 1 * ncall
 *   optional trailer: i32 chunk count, then optionally i32 len | len bytes dataset (the text's name)
 * llama-quantize divides each value by ncall; read as sum2 = value, count = ncall the importance
 * sum2 / count is the same. The file does not say how values split into matrices, so an entry is one
 * matrix of nval columns (quantize names the tensor if its shape disagrees). */

typedef struct reader {
    const char *path;
    const uint8_t *p;
    size_t n, at;
} reader;

static bool rd_i32(reader *r, int32_t *v) {
    if (r->n - r->at < 4) return false;
    uint32_t u = (uint32_t)r->p[r->at] | (uint32_t)r->p[r->at + 1] << 8 | (uint32_t)r->p[r->at + 2] << 16 |
                 (uint32_t)r->p[r->at + 3] << 24;
    memcpy(v, &u, 4);
    r->at += 4;
    return true;
}

static qf_status legacy_entry(reader *r, int32_t i, qf_imatrix *im, qf_error *err) {
    int32_t len, ncall, nval;
    char name[256];
    if (!rd_i32(r, &len)) return qf_fail(err, QF_E_INPUT, "%s: the file ends before entry %d of the count", r->path, (int)i + 1);
    if (len < 1 || (size_t)len >= sizeof name || r->n - r->at < (size_t)len)
        return qf_fail(err, QF_E_INPUT, "%s: entry %d: name length %d is outside 1..255 or past the end of the file", r->path,
                       (int)i + 1, (int)len);
    memcpy(name, r->p + r->at, (size_t)len);
    name[len] = '\0';
    r->at += (size_t)len;
    if (strlen(name) != (size_t)len) return qf_fail(err, QF_E_INPUT, "%s: entry %d: the name holds a NUL byte", r->path, (int)i);
    if (qf_imatrix_find(im, name)) return qf_fail(err, QF_E_INPUT, "%s: entry '%s' appears twice", r->path, name);
    if (!rd_i32(r, &ncall) || !rd_i32(r, &nval))
        return qf_fail(err, QF_E_INPUT, "%s: entry '%s': the file ends inside its header", r->path, name);
    if (ncall < 0 || nval < 1 || (uint64_t)nval * 4 > r->n - r->at)
        return qf_fail(err, QF_E_INPUT, "%s: entry '%s': ncall %d must be >= 0 and its %d values must fit in the file",
                       r->path, name, (int)ncall, (int)nval);
    qf_imatrix_entry *e = qf_imatrix_add(im, name, (uint32_t)nval, 1);
    if (!e) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", r->path);
    for (int32_t j = 0; j < nval; j++) {
        float v;
        memcpy(&v, r->p + r->at + 4 * (size_t)j, 4);
        if (!isfinite(v) || v < 0)
            return qf_fail(err, QF_E_INPUT, "%s: entry '%s' holds %g at %d; mean squares are finite and >= 0", r->path, name,
                           v, (int)j);
        e->sum2[j] = v;
    }
    r->at += 4 * (size_t)nval;
    /* llama-quantize uses the values as they are when ncall is 0: the same as dividing by a count of 1 */
    e->counts[0] = ncall ? ncall : 1;
    return QF_OK;
}

static qf_status legacy_trailer(reader *r, qf_imatrix *im, qf_error *err) {
    int32_t chunks, len;
    size_t rest = r->n - r->at;
    if (!rest) return QF_OK;
    if (!rd_i32(r, &chunks) || chunks < 0)
        return qf_fail(err, QF_E_INPUT, "%s: %zu bytes after the last entry are not a chunk count", r->path, rest);
    im->chunk_count = (uint32_t)chunks;
    if (r->at == r->n) return QF_OK;
    if (!rd_i32(r, &len) || len < 0 || (size_t)len != r->n - r->at)
        return qf_fail(err, QF_E_INPUT, "%s: the dataset name after the chunk count does not end the file", r->path);
    if (!len) return QF_OK;
    char *ds = qf_strndup((const char *)r->p + r->at, (size_t)len);
    if (!ds || !(im->datasets = calloc(1, sizeof *im->datasets))) { free(ds); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    im->datasets[0] = ds;
    im->n_datasets = 1;
    r->at = r->n;
    return QF_OK;
}

/* A legacy file holds 4 bytes per value: DeepSeek-V3's is about 0.2 GB; anything far beyond is not one. */
#define QF_IMATRIX_DAT_MAX (4ull << 30)

static qf_status load_legacy(const char *path, qf_imatrix *im, qf_error *err) {
    char *text = NULL;
    size_t got = 0;
    qf_status st = qf_infile_read(path, QF_IMATRIX_DAT_MAX, "a legacy imatrix.dat", &text, &got, err);
    if (st) return st;
    const uint8_t *buf = (const uint8_t *)text;
    reader r = {.path = path, .p = buf, .n = got};
    int32_t n = 0;
    if (!rd_i32(&r, &n) || n < 1 || (uint64_t)n * 17 > got) /* an entry takes at least 17 bytes */
        st = qf_fail(err, QF_E_INPUT, "%s: neither a GGUF imatrix nor llama.cpp's legacy imatrix.dat (entry count %d)", path,
                     got >= 4 ? (int)n : 0);
    for (int32_t i = 0; !st && i < n; i++) st = legacy_entry(&r, i, im, err);
    if (!st) st = legacy_trailer(&r, im, err);
    free(text);
    return st;
}

/* ---- GGUF imatrix -------------------------------------------------------------------------------- */

static qf_status load_gguf(const char *path, qf_imatrix *im, qf_error *err) {
    qf_gguf *g;
    qf_status st = qf_gguf_open(path, &g, err);
    if (st) return st;
    const char *type = NULL;
    if (qf_gguf_get_str(g, "general.type", &type, NULL) != QF_OK || strcmp(type, "imatrix") != 0)
        st = qf_fail(err, QF_E_INPUT, "%s: not an imatrix file (general.type is not \"imatrix\")", path);
    if (!st) st = load_meta(path, g, im, err);
    for (size_t i = 0; !st && i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (ends_with(t->name, ".in_sum2")) st = load_entry(path, g, t, im, err);
        else if (!ends_with(t->name, ".counts"))
            st = qf_fail(err, QF_E_INPUT, "%s: unexpected tensor '%s' (expected <name>.in_sum2 / <name>.counts)", path, t->name);
    }
    qf_gguf_close(g);
    return st;
}

qf_status qf_imatrix_load(const char *path, qf_imatrix *im, qf_error *err) {
    memset(im, 0, sizeof *im);
    /* by content: llama-imatrix writes either form under any name */
    qf_status st = qf_infile_has_magic(path, "GGUF", 4) ? load_gguf(path, im, err) : load_legacy(path, im, err);
    if (st) qf_imatrix_free(im);
    return st;
}

/* ---- save -------------------------------------------------------------------------------------- */

static qf_status write_entries(const qf_imatrix *im, qf_gguf_writer *w, qf_error *err) {
    qf_status st = QF_OK;
    for (size_t i = 0; !st && i < im->n; i++) {
        const qf_imatrix_entry *e = &im->e[i];
        uint64_t n = (uint64_t)e->n_cols * e->n_mat;
        float *buf = qf_malloc_n(n ? n : 1, sizeof(float));
        if (!buf) return qf_fail(err, QF_E_NOMEM, "out of memory");
        for (uint64_t k = 0; k < n; k++) buf[k] = (float)e->sum2[k];
        st = qf_gguf_write_tensor_data(w, buf, n * sizeof(float), err);
        for (uint32_t m = 0; !st && m < e->n_mat; m++) buf[m] = (float)e->counts[m];
        if (!st) st = qf_gguf_write_tensor_data(w, buf, (uint64_t)e->n_mat * sizeof(float), err);
        free(buf);
    }
    return st;
}

qf_status qf_imatrix_save(const char *path, const qf_imatrix *im, qf_error *err) {
    qf_gguf_writer *w;
    qf_status st = qf_gguf_writer_open(path, &w, err);
    if (st) return st;
    if ((st = qf_gguf_set_str(w, "general.type", "imatrix", err)) ||
        (st = qf_gguf_set_arr_str(w, "imatrix.datasets", (const char *const *)im->datasets, im->n_datasets, err)) ||
        (st = qf_gguf_set_u32(w, "imatrix.chunk_count", im->chunk_count, err)) ||
        (st = qf_gguf_set_u32(w, "imatrix.chunk_size", im->chunk_size, err)) ||
        (im->calibration_sha256 && (st = qf_gguf_set_str(w, "qforge.calibration_sha256", im->calibration_sha256, err))))
        goto fail;
    for (size_t i = 0; i < im->n; i++) {
        char name[300];
        uint64_t ne_sum[2] = {im->e[i].n_cols, im->e[i].n_mat}, ne_cnt[2] = {1, im->e[i].n_mat};
        snprintf(name, sizeof name, "%s.in_sum2", im->e[i].name);
        if ((st = qf_gguf_add_tensor(w, name, QF_T_F32, 2, ne_sum, err))) goto fail;
        snprintf(name, sizeof name, "%s.counts", im->e[i].name);
        if ((st = qf_gguf_add_tensor(w, name, QF_T_F32, 2, ne_cnt, err))) goto fail;
    }
    if ((st = qf_gguf_begin_data(w, err)) || (st = write_entries(im, w, err))) goto fail;
    return qf_gguf_writer_finish(w, err);
fail:
    qf_gguf_writer_abort(w);
    return st;
}
