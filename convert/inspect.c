/*
 * qf_inspect: describe a GGUF file or a safetensors checkpoint (qforge.h).
 *
 * Both formats print the same tensor keys (name, type, shape outermost first, ne in GGUF order,
 * elements, bytes, bpw) and the same totals; GGUF adds each tensor's data offset and the metadata,
 * safetensors the FP8 scale kind. Every GGUF metadata value keeps its type: {"type": "u32", "value": 7}
 * (64-bit integers exact, floats at the precision they were stored with). Text from the file is escaped
 * (report.h).
 */
#include "convert/report.h"
#include "formats/gguf.h"
#include "formats/infile.h"
#include "formats/source.h"
#include "kernels/qtypes.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* By magic, or by name: a damaged .gguf must get the GGUF reader's message, not the safetensors one. */
static bool is_gguf(const char *path) {
    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".gguf")) return true;
    return qf_infile_has_magic(path, "GGUF", 4);
}

static const char *vtype_name(qf_gguf_vtype t) {
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return (unsigned)t < QF_ARRAY_LEN(names) ? names[t] : "?";
}

static size_t vtype_size(qf_gguf_vtype t) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, sizeof(qf_gguf_str), 0, 8, 8, 8};
    return (unsigned)t < QF_ARRAY_LEN(sizes) ? sizes[t] : 0;
}

/* The shortest decimal that reads back to the same f32 (or f64) bits: 1e-05, not 9.99999975e-06. */
static void shortest_float(double f, bool single, char *out, size_t n) {
    if (f == trunc(f) && fabs(f) < 1e15) { snprintf(out, n, "%.0f", f); return; } /* 10000, not 1e+04 */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, f);
        if (single ? strtof(out, NULL) == (float)f : strtod(out, NULL) == f) return;
    }
}

/* One scalar as text, exactly: integers in full, floats as the shortest decimal that reads back to the
 * stored bits, non-finite floats as nan / inf / -inf. */
static void scalar_text(qf_gguf_vtype t, const void *p, char *out, size_t n) {
    double f;
    switch (t) {
    case QF_GGUF_U8: snprintf(out, n, "%u", *(const uint8_t *)p); return;
    case QF_GGUF_I8: snprintf(out, n, "%d", *(const int8_t *)p); return;
    case QF_GGUF_U16: snprintf(out, n, "%u", *(const uint16_t *)p); return;
    case QF_GGUF_I16: snprintf(out, n, "%d", *(const int16_t *)p); return;
    case QF_GGUF_U32: snprintf(out, n, "%" PRIu32, *(const uint32_t *)p); return;
    case QF_GGUF_I32: snprintf(out, n, "%" PRId32, *(const int32_t *)p); return;
    case QF_GGUF_U64: snprintf(out, n, "%" PRIu64, *(const uint64_t *)p); return;
    case QF_GGUF_I64: snprintf(out, n, "%" PRId64, *(const int64_t *)p); return;
    case QF_GGUF_BOOL: snprintf(out, n, "%s", *(const uint8_t *)p ? "true" : "false"); return;
    case QF_GGUF_F32: f = *(const float *)p; break;
    case QF_GGUF_F64: f = *(const double *)p; break;
    default: snprintf(out, n, "?"); return;
    }
    if (isnan(f)) snprintf(out, n, "nan");
    else if (isinf(f)) snprintf(out, n, "%s", f > 0 ? "inf" : "-inf");
    else shortest_float(f, t == QF_GGUF_F32, out, n);
}

/* A scalar metadata value in its on-disk width (the reader keeps scalars widened in the union). */
typedef union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; uint64_t u64; int64_t i64; double d; } scalar_buf;

static const void *scalar_ptr(const qf_gguf_kv *kv, scalar_buf *b) {
    switch (kv->type) {
    case QF_GGUF_U8: b->u8 = (uint8_t)kv->v.u64; break;
    case QF_GGUF_I8: b->i8 = (int8_t)kv->v.i64; break;
    case QF_GGUF_U16: b->u16 = (uint16_t)kv->v.u64; break;
    case QF_GGUF_I16: b->i16 = (int16_t)kv->v.i64; break;
    case QF_GGUF_U32: b->u32 = (uint32_t)kv->v.u64; break;
    case QF_GGUF_I32: b->i32 = (int32_t)kv->v.i64; break;
    case QF_GGUF_U64: b->u64 = kv->v.u64; break;
    case QF_GGUF_I64: b->i64 = kv->v.i64; break;
    case QF_GGUF_F32: b->f = (float)kv->v.f64; break;
    case QF_GGUF_F64: b->d = kv->v.f64; break;
    case QF_GGUF_BOOL: b->u8 = kv->v.b; break;
    default: break;
    }
    return b;
}

/* JSON for one scalar: an exact number, a bool, or a string for non-finite floats. */
static cJSON *scalar_json(qf_gguf_vtype t, const void *p) {
    char text[48];
    if (t == QF_GGUF_BOOL) return cJSON_CreateBool(*(const uint8_t *)p);
    scalar_text(t, p, text, sizeof text);
    if (!strcmp(text, "nan") || !strcmp(text, "inf") || !strcmp(text, "-inf")) return cJSON_CreateString(text);
    return cJSON_CreateRaw(text);
}

static cJSON *kv_to_json(const qf_gguf_kv *kv, bool full) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", vtype_name(kv->type));
    if (kv->type == QF_GGUF_STRING) {
        qf_json_add_text(o, "value", kv->v.str.ptr);
    } else if (kv->type == QF_GGUF_ARRAY) {
        cJSON_AddStringToObject(o, "array_of", vtype_name(kv->arr_type));
        cJSON_AddNumberToObject(o, "length", (double)kv->n);
        if (full && kv->arr_type != QF_GGUF_ARRAY) {
            cJSON *a = cJSON_AddArrayToObject(o, "value");
            for (uint64_t i = 0; i < kv->n; i++) {
                const uint8_t *p = (const uint8_t *)kv->v.arr + i * vtype_size(kv->arr_type);
                cJSON_AddItemToArray(a, kv->arr_type == QF_GGUF_STRING ? qf_json_text(((const qf_gguf_str *)p)->ptr)
                                                                       : scalar_json(kv->arr_type, p));
            }
        }
    } else {
        scalar_buf b;
        cJSON_AddItemToObject(o, "value", scalar_json(kv->type, scalar_ptr(kv, &b)));
    }
    return o;
}

/* A string value, quoted and escaped; long ones cut at 120 bytes (on a UTF-8 boundary) unless full. */
static void print_str(FILE *out, const char *s, uint64_t len, bool full) {
    uint64_t show = len;
    if (!full && len > 120) {
        show = 120;
        while (show > 0 && ((unsigned char)s[show] & 0xc0) == 0x80) show--;
    }
    fputc('"', out);
    qf_text_put(out, s, (size_t)show, QF_TEXT_QUOTED);
    fprintf(out, "\"%s", show < len ? "..." : "");
}

static void print_kv(FILE *out, const qf_gguf_kv *kv, bool full) {
    char *key = qf_text_escaped(kv->key, QF_TEXT_TERMINAL);
    fprintf(out, "  %-44s %-4s ", key ? key : "?", vtype_name(kv->type));
    free(key);
    if (kv->type == QF_GGUF_STRING) {
        print_str(out, kv->v.str.ptr, kv->v.str.len, full);
        fputc('\n', out);
        return;
    }
    char text[48];
    if (kv->type != QF_GGUF_ARRAY) {
        scalar_buf b;
        scalar_text(kv->type, scalar_ptr(kv, &b), text, sizeof text);
        fprintf(out, "%s\n", text);
        return;
    }
    fprintf(out, "[%s x %" PRIu64 "]", vtype_name(kv->arr_type), kv->n);
    uint64_t show = kv->arr_type == QF_GGUF_ARRAY ? 0 : full ? kv->n : QF_MIN(kv->n, 6);
    for (uint64_t i = 0; i < show; i++) {
        const uint8_t *p = (const uint8_t *)kv->v.arr + i * vtype_size(kv->arr_type);
        fputc(' ', out);
        if (kv->arr_type == QF_GGUF_STRING) {
            const qf_gguf_str *s = (const qf_gguf_str *)p;
            print_str(out, s->ptr, s->len, true);
        } else {
            scalar_text(kv->arr_type, p, text, sizeof text);
            fputs(text, out);
        }
    }
    fprintf(out, "%s\n", show < kv->n ? " ..." : "");
}

static void shape_str(const uint64_t *dims, uint32_t n, char *buf, size_t len) {
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t d = 0; d < n && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%" PRIu64, d ? " x " : "", dims[d]);
}

static const char *type_name(uint32_t id) {
    const qf_qtype_traits *t = qf_qtype_get(id);
    return t ? t->name : "?";
}

/* One tensor as both formats describe it; ne in GGUF order (ne[0] = row length). */
typedef struct tensor_view {
    const char *name, *type;
    uint32_t n_dims;
    uint64_t ne[QF_ST_MAX_DIMS], elems, bytes;
} tensor_view;

static cJSON *tensor_json(const tensor_view *t) {
    cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *ne = cJSON_CreateArray();
    qf_json_add_text(e, "name", t->name);
    cJSON_AddStringToObject(e, "type", t->type);
    for (uint32_t d = 0; d < t->n_dims; d++) {
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[t->n_dims - 1 - d]));
        cJSON_AddItemToArray(ne, cJSON_CreateNumber((double)t->ne[d]));
    }
    cJSON_AddItemToObject(e, "shape", shape);
    cJSON_AddItemToObject(e, "ne", ne);
    cJSON_AddNumberToObject(e, "elements", (double)t->elems);
    cJSON_AddNumberToObject(e, "bytes", (double)t->bytes);
    cJSON_AddNumberToObject(e, "bpw", t->elems ? 8.0 * (double)t->bytes / (double)t->elems : 0);
    return e;
}

/* A table row; the shape in the format's own order (GGUF: ne, row length first; safetensors: outermost
 * first), as each format's tools show it. */
static void print_tensor_row(FILE *out, const tensor_view *t, bool outermost_first, const char *extra) {
    char shape[96], *name = qf_text_escaped(t->name, QF_TEXT_TERMINAL);
    uint64_t dims[QF_ST_MAX_DIMS];
    for (uint32_t d = 0; d < t->n_dims; d++) dims[d] = outermost_first ? t->ne[t->n_dims - 1 - d] : t->ne[d];
    shape_str(dims, t->n_dims, shape, sizeof shape);
    fprintf(out, "  %-44s %-8s %-24s %12" PRIu64 " %7.3f%s%s\n", name ? name : "?", t->type, shape, t->bytes,
            t->elems ? 8.0 * (double)t->bytes / (double)t->elems : 0, *extra ? " " : "", extra);
    free(name);
}

static void add_totals(cJSON *root, size_t n, uint64_t params, uint64_t bytes) {
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "tensors", (double)n);
    cJSON_AddNumberToObject(tot, "parameters", (double)params);
    cJSON_AddNumberToObject(tot, "bytes", (double)bytes);
    cJSON_AddNumberToObject(tot, "bpw", params ? 8.0 * (double)bytes / (double)params : 0);
}

static void print_totals(FILE *out, size_t n, uint64_t params, uint64_t bytes) {
    fprintf(out, "\ntotal: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes (%.2f MiB), %.3f bits per weight\n", n,
            params, bytes, (double)bytes / 1048576.0, params ? 8.0 * (double)bytes / (double)params : 0);
}

/* The report envelope for `path`: schema, version, and the input's identity (qforge.source_sha256). */
static qf_status new_report(const char *path, const char *format, cJSON **out, qf_error *err) {
    cJSON *root = qf_report_new("qforge.inspect/1");
    if (!root) return qf_fail(err, QF_E_NOMEM, "out of memory for the report");
    qf_status st = qf_report_add_model(root, "file", path, NULL, err);
    if (st) { cJSON_Delete(root); return st; }
    cJSON_AddStringToObject(root, "format", format);
    qf_json_add_text(root, "path", path);
    *out = root;
    return QF_OK;
}

static tensor_view gguf_view(const qf_gguf_tensor *t) {
    tensor_view v = {.name = t->name, .type = type_name(t->type), .n_dims = t->n_dims, .elems = 1, .bytes = t->nbytes};
    for (uint32_t d = 0; d < t->n_dims; d++) { v.ne[d] = t->ne[d]; v.elems *= t->ne[d]; }
    return v;
}

/* A split set's parts (formats/gguf.h): file and tensor count of each. */
static void add_parts_json(cJSON *root, const qf_gguf *g) {
    cJSON *parts = cJSON_AddArrayToObject(root, "parts");
    for (size_t k = 0; parts && k < qf_gguf_n_parts(g); k++) {
        cJSON *e = cJSON_CreateObject();
        qf_json_add_text(e, "file", qf_gguf_label(qf_gguf_part(g, k)));
        cJSON_AddNumberToObject(e, "tensors", (double)qf_gguf_n_tensors(qf_gguf_part(g, k)));
        cJSON_AddItemToArray(parts, e);
    }
}

static void print_parts(FILE *out, const qf_gguf *g) {
    fprintf(out, "\nsplit set of %zu parts:\n", qf_gguf_n_parts(g));
    for (size_t k = 0; k < qf_gguf_n_parts(g); k++) {
        const char *f = qf_gguf_label(qf_gguf_part(g, k));
        fputs("  ", out);
        qf_text_put(out, f, strlen(f), QF_TEXT_TERMINAL);
        fprintf(out, "  %zu tensors\n", qf_gguf_n_tensors(qf_gguf_part(g, k)));
    }
}

static qf_status inspect_gguf(const qf_inspect_opts *o, FILE *out, qf_error *err) {
    qf_gguf *g;
    qf_status st = qf_gguf_open(o->path, &g, err);
    if (st) return st;
    uint64_t params = 0, bytes = 0;
    size_t n = qf_gguf_n_tensors(g);
    for (size_t i = 0; i < n; i++) {
        tensor_view v = gguf_view(qf_gguf_tensor_at(g, i));
        params += v.elems;
        bytes += v.bytes;
    }
    cJSON *root = NULL;
    if (o->json && (st = new_report(o->path, "gguf", &root, err))) { qf_gguf_close(g); return st; }
    if (root) {
        cJSON_AddNumberToObject(root, "version", qf_gguf_version(g));
        cJSON_AddNumberToObject(root, "alignment", qf_gguf_alignment(g));
        cJSON *meta = cJSON_AddObjectToObject(root, "metadata"), *ts = cJSON_AddArrayToObject(root, "tensors");
        for (size_t i = 0; i < qf_gguf_n_kv(g); i++)
            qf_json_add_item(meta, qf_gguf_kv_at(g, i)->key, kv_to_json(qf_gguf_kv_at(g, i), !o->no_values));
        for (size_t i = 0; i < n; i++) {
            tensor_view v = gguf_view(qf_gguf_tensor_at(g, i));
            cJSON *e = tensor_json(&v);
            cJSON_AddNumberToObject(e, "offset", (double)qf_gguf_tensor_at(g, i)->offset);
            if (qf_gguf_n_parts(g) > 1) cJSON_AddNumberToObject(e, "part", (double)qf_gguf_tensor_part(g, i) + 1);
            cJSON_AddItemToArray(ts, e);
        }
        if (qf_gguf_n_parts(g) > 1) add_parts_json(root, g);
        add_totals(root, n, params, bytes);
        st = qf_report_print(root, out) ? QF_OK : qf_fail(err, QF_E_IO, "could not write the report");
    } else {
        qf_text_put(out, o->path, strlen(o->path), QF_TEXT_TERMINAL);
        fprintf(out, ": GGUF v%u, alignment %u, %zu metadata keys, %zu tensors\n\nmetadata:\n", qf_gguf_version(g),
                qf_gguf_alignment(g), qf_gguf_n_kv(g), n);
        for (size_t i = 0; i < qf_gguf_n_kv(g); i++) print_kv(out, qf_gguf_kv_at(g, i), !o->no_values);
        if (qf_gguf_n_parts(g) > 1) print_parts(out, g);
        fprintf(out, "\ntensors:\n  %-44s %-8s %-24s %12s %7s\n", "name", "type", "shape (ne)", "bytes", "bpw");
        for (size_t i = 0; i < n; i++) {
            tensor_view v = gguf_view(qf_gguf_tensor_at(g, i));
            print_tensor_row(out, &v, false, "");
        }
        print_totals(out, n, params, bytes);
    }
    qf_gguf_close(g);
    return st;
}

static const char *scale_name(qf_scale_kind k) {
    switch (k) {
    case QF_SCALE_BLOCK: return "block";
    case QF_SCALE_TENSOR: return "tensor";
    case QF_SCALE_CHANNEL: return "channel";
    default: return "";
    }
}

static tensor_view source_view(const qf_src_tensor *t) {
    tensor_view v = {.name = t->name, .type = qf_dtype_name(t->dtype), .n_dims = t->n_dims, .elems = 1, .bytes = t->nbytes};
    for (uint32_t d = 0; d < t->n_dims; d++) { v.ne[d] = t->shape[t->n_dims - 1 - d]; v.elems *= t->shape[d]; }
    return v;
}

static qf_status inspect_source(const qf_inspect_opts *o, FILE *out, qf_error *err) {
    qf_source *s;
    qf_status st = qf_source_open(o->path, &s, err);
    if (st) return st;
    uint64_t params = 0, bytes = 0;
    size_t n = qf_source_n_tensors(s);
    for (size_t i = 0; i < n; i++) {
        tensor_view v = source_view(qf_source_tensor(s, i));
        params += v.elems;
        bytes += v.bytes;
    }
    cJSON *root = NULL;
    if (o->json && (st = new_report(o->path, "safetensors", &root, err))) { qf_source_close(s); return st; }
    if (root) {
        cJSON_AddBoolToObject(root, "archive", qf_source_sequential(s));
        if (qf_source_repo_id(s)) qf_json_add_text(root, "repo_id", qf_source_repo_id(s));
        cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
        for (size_t i = 0; i < n; i++) {
            const qf_src_tensor *t = qf_source_tensor(s, i);
            tensor_view v = source_view(t);
            cJSON *e = tensor_json(&v);
            if (t->scale_kind) cJSON_AddStringToObject(e, "scale", scale_name(t->scale_kind));
            cJSON_AddItemToArray(ts, e);
        }
        add_totals(root, n, params, bytes);
        st = qf_report_print(root, out) ? QF_OK : qf_fail(err, QF_E_IO, "could not write the report");
    } else {
        qf_text_put(out, qf_source_label(s), strlen(qf_source_label(s)), QF_TEXT_TERMINAL);
        fprintf(out, ": safetensors checkpoint%s, %zu tensors\n\n  %-44s %-8s %-24s %12s %7s %s\n",
                qf_source_sequential(s) ? " (archive)" : "", n, "name", "dtype", "shape", "bytes", "bpw", "scale");
        for (size_t i = 0; i < n; i++) {
            tensor_view v = source_view(qf_source_tensor(s, i));
            print_tensor_row(out, &v, true, scale_name(qf_source_tensor(s, i)->scale_kind));
        }
        print_totals(out, n, params, bytes);
    }
    qf_source_close(s);
    return st;
}

qf_status qf_inspect(const qf_inspect_opts *o, void *out, qf_error *err) {
    qf_error_clear(err);
    return is_gguf(o->path) ? inspect_gguf(o, out, err) : inspect_source(o, out, err);
}
