/* safetensors writer (safetensors.h): the layout real releases use, for generated checkpoints. */
#include "formats/outfile.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>

/* Generated tensors are written in pieces of this size (a multiple of every dtype's size). */
#define QF_ST_FILL_CHUNK (8u << 20)

static qf_status tensor_bytes(const qf_st_out_tensor *t, uint64_t *bytes, qf_error *err) {
    uint64_t n = qf_dtype_size(t->dtype);
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (!qf_mul_ok(n, t->shape[d], &n)) return qf_fail(err, QF_E_USAGE, "tensor '%s': size overflows", t->name);
    *bytes = n;
    return QF_OK;
}

/* The JSON header, padded with spaces to a multiple of 8 so the data buffer starts aligned. */
static qf_status build_header(const qf_st_out_tensor *t, size_t n, char **json, uint64_t *len, qf_error *err) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = 0;
        qf_status st = tensor_bytes(&t[i], &bytes, err);
        if (st) { cJSON_Delete(root); return st; }
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(o, "dtype", qf_dtype_name(t[i].dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (uint32_t d = 0; d < t[i].n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return qf_fail(err, QF_E_NOMEM, "out of memory for a safetensors header");
    size_t l = strlen(s), padded = (l + 7) & ~(size_t)7;
    char *p = realloc(s, padded + 1);
    if (!p) { free(s); return qf_fail(err, QF_E_NOMEM, "out of memory for a safetensors header"); }
    memset(p + l, ' ', padded - l);
    p[padded] = '\0';
    *json = p;
    *len = padded;
    return QF_OK;
}

qf_status qf_st_write(const char *path, const qf_st_out_tensor *t, size_t n, qf_error *err) {
    char *json = NULL;
    uint64_t len = 0;
    qf_status st = build_header(t, n, &json, &len, err);
    if (st) return st;
    qf_outfile *f = NULL;
    if ((st = qf_outfile_open(path, &f, err))) { free(json); return st; }
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)(len >> (8 * i));
    st = qf_outfile_write(f, prefix, 8, err);
    if (!st) st = qf_outfile_write(f, json, len, err);
    uint8_t *chunk = NULL;
    for (size_t i = 0; !st && i < n; i++) {
        uint64_t bytes = 0;
        if ((st = tensor_bytes(&t[i], &bytes, err))) break;
        if (t[i].data) { st = qf_outfile_write(f, t[i].data, bytes, err); continue; }
        if (!chunk && !(chunk = malloc(QF_ST_FILL_CHUNK))) { st = qf_fail(err, QF_E_NOMEM, "out of memory"); break; }
        for (uint64_t off = 0; !st && off < bytes; off += QF_ST_FILL_CHUNK) {
            uint64_t k = QF_MIN((uint64_t)QF_ST_FILL_CHUNK, bytes - off);
            if (!(st = t[i].fill(t[i].ctx, &t[i], off, chunk, k, err))) st = qf_outfile_write(f, chunk, k, err);
        }
    }
    free(chunk);
    free(json);
    if (st) { qf_outfile_abort(f); return st; }
    return qf_outfile_commit(f, err);
}
