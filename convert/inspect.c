/* qf_inspect: describe a GGUF file or a safetensors checkpoint (qforge.h). */
#include "formats/gguf.h"
#include "formats/infile.h"
#include "formats/source.h"
#include "kernels/qtypes.h"

#include <cjson/cJSON.h>
#include <inttypes.h>

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

static double elem_as_double(qf_gguf_vtype t, const void *p) {
    switch (t) {
    case QF_GGUF_U8: return *(const uint8_t *)p;
    case QF_GGUF_I8: return *(const int8_t *)p;
    case QF_GGUF_U16: return *(const uint16_t *)p;
    case QF_GGUF_I16: return *(const int16_t *)p;
    case QF_GGUF_U32: return *(const uint32_t *)p;
    case QF_GGUF_I32: return *(const int32_t *)p;
    case QF_GGUF_F32: return *(const float *)p;
    case QF_GGUF_BOOL: return *(const uint8_t *)p;
    case QF_GGUF_U64: return (double)*(const uint64_t *)p;
    case QF_GGUF_I64: return (double)*(const int64_t *)p;
    case QF_GGUF_F64: return *(const double *)p;
    default: return 0;
    }
}

static size_t vtype_size(qf_gguf_vtype t) {
    static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, sizeof(qf_gguf_str), 0, 8, 8, 8};
    return (unsigned)t < QF_ARRAY_LEN(sizes) ? sizes[t] : 0;
}

static cJSON *kv_to_json(const qf_gguf_kv *kv, bool full) {
    switch (kv->type) {
    case QF_GGUF_STRING: return cJSON_CreateString(kv->v.str.ptr);
    case QF_GGUF_BOOL: return cJSON_CreateBool(kv->v.b);
    case QF_GGUF_F32: case QF_GGUF_F64: return cJSON_CreateNumber(kv->v.f64);
    case QF_GGUF_I8: case QF_GGUF_I16: case QF_GGUF_I32: case QF_GGUF_I64: return cJSON_CreateNumber((double)kv->v.i64);
    case QF_GGUF_ARRAY: {
        if (!full || kv->arr_type == QF_GGUF_ARRAY) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "array_of", vtype_name(kv->arr_type));
            cJSON_AddNumberToObject(o, "length", (double)kv->n);
            return o;
        }
        cJSON *a = cJSON_CreateArray();
        for (uint64_t i = 0; i < kv->n; i++) {
            const uint8_t *p = (const uint8_t *)kv->v.arr + i * vtype_size(kv->arr_type);
            cJSON_AddItemToArray(a, kv->arr_type == QF_GGUF_STRING ? cJSON_CreateString(((const qf_gguf_str *)p)->ptr)
                                                                   : cJSON_CreateNumber(elem_as_double(kv->arr_type, p)));
        }
        return a;
    }
    default: return cJSON_CreateNumber((double)kv->v.u64);
    }
}

static void print_kv(FILE *out, const qf_gguf_kv *kv, bool full) {
    fprintf(out, "  %-44s %-4s ", kv->key, vtype_name(kv->type));
    switch (kv->type) {
    case QF_GGUF_STRING: {
        bool longstr = kv->v.str.len > 120 && !full;
        fprintf(out, "\"%.*s\"%s\n", longstr ? 120 : (int)kv->v.str.len, kv->v.str.ptr, longstr ? "..." : "");
        return;
    }
    case QF_GGUF_BOOL: fprintf(out, "%s\n", kv->v.b ? "true" : "false"); return;
    case QF_GGUF_F32: case QF_GGUF_F64: fprintf(out, "%g\n", kv->v.f64); return;
    case QF_GGUF_I8: case QF_GGUF_I16: case QF_GGUF_I32: case QF_GGUF_I64: fprintf(out, "%" PRId64 "\n", kv->v.i64); return;
    case QF_GGUF_ARRAY: break;
    default: fprintf(out, "%" PRIu64 "\n", kv->v.u64); return;
    }
    fprintf(out, "[%s x %" PRIu64 "]", vtype_name(kv->arr_type), kv->n);
    uint64_t show = kv->arr_type == QF_GGUF_ARRAY ? 0 : full ? kv->n : QF_MIN(kv->n, 6);
    for (uint64_t i = 0; i < show; i++) {
        const uint8_t *p = (const uint8_t *)kv->v.arr + i * vtype_size(kv->arr_type);
        if (kv->arr_type == QF_GGUF_STRING) fprintf(out, " \"%s\"", ((const qf_gguf_str *)p)->ptr);
        else fprintf(out, " %g", elem_as_double(kv->arr_type, p));
    }
    fprintf(out, "%s\n", show < kv->n ? " ..." : "");
}

static uint64_t tensor_elems(const qf_gguf_tensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

static void shape_str(const uint64_t *dims, uint32_t n, char *buf, size_t len) {
    int k = 0;
    buf[0] = '\0';
    for (uint32_t d = 0; d < n && (size_t)k < len; d++)
        k += snprintf(buf + k, len - (size_t)k, "%s%" PRIu64, d ? " x " : "", dims[d]);
}

static const char *type_name(uint32_t id) {
    const qf_qtype_traits *t = qf_qtype_get(id);
    return t ? t->name : "?";
}

static qf_status inspect_gguf(const qf_inspect_opts *o, FILE *out, qf_error *err) {
    qf_gguf *g;
    qf_status st = qf_gguf_open(o->path, &g, err);
    if (st) return st;
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        params += tensor_elems(qf_gguf_tensor_at(g, i));
        bytes += qf_gguf_tensor_at(g, i)->nbytes;
    }
    if (o->json) {
        cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *ts = cJSON_CreateArray();
        cJSON_AddStringToObject(root, "format", "gguf");
        cJSON_AddNumberToObject(root, "version", qf_gguf_version(g));
        cJSON_AddNumberToObject(root, "alignment", qf_gguf_alignment(g));
        for (size_t i = 0; i < qf_gguf_n_kv(g); i++)
            cJSON_AddItemToObject(meta, qf_gguf_kv_at(g, i)->key, kv_to_json(qf_gguf_kv_at(g, i), !o->no_values));
        cJSON_AddItemToObject(root, "metadata", meta);
        for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
            const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
            cJSON *e = cJSON_CreateObject(), *ne = cJSON_CreateArray();
            cJSON_AddStringToObject(e, "name", t->name);
            cJSON_AddStringToObject(e, "type", type_name(t->type));
            for (uint32_t d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(ne, cJSON_CreateNumber((double)t->ne[d]));
            cJSON_AddItemToObject(e, "ne", ne);
            cJSON_AddNumberToObject(e, "offset", (double)t->offset);
            cJSON_AddNumberToObject(e, "bytes", (double)t->nbytes);
            cJSON_AddNumberToObject(e, "bpw", 8.0 * (double)t->nbytes / (double)tensor_elems(t));
            cJSON_AddItemToArray(ts, e);
        }
        cJSON_AddItemToObject(root, "tensors", ts);
        cJSON *tot = cJSON_AddObjectToObject(root, "totals");
        cJSON_AddNumberToObject(tot, "tensors", (double)qf_gguf_n_tensors(g));
        cJSON_AddNumberToObject(tot, "parameters", (double)params);
        cJSON_AddNumberToObject(tot, "bytes", (double)bytes);
        cJSON_AddNumberToObject(tot, "bpw", params ? 8.0 * (double)bytes / (double)params : 0);
        char *s = cJSON_Print(root);
        if (s) fprintf(out, "%s\n", s);
        free(s);
        cJSON_Delete(root);
    } else {
        fprintf(out, "%s: GGUF v%u, alignment %u, %zu metadata keys, %zu tensors\n\nmetadata:\n", o->path, qf_gguf_version(g),
                qf_gguf_alignment(g), qf_gguf_n_kv(g), qf_gguf_n_tensors(g));
        for (size_t i = 0; i < qf_gguf_n_kv(g); i++) print_kv(out, qf_gguf_kv_at(g, i), !o->no_values);
        fprintf(out, "\ntensors:\n  %-40s %-8s %-24s %12s %7s\n", "name", "type", "shape (ne)", "bytes", "bpw");
        for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
            const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
            char shape[96];
            shape_str(t->ne, t->n_dims, shape, sizeof shape);
            fprintf(out, "  %-40s %-8s %-24s %12" PRIu64 " %7.3f\n", t->name, type_name(t->type), shape, t->nbytes,
                    8.0 * (double)t->nbytes / (double)tensor_elems(t));
        }
        fprintf(out, "\ntotal: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes (%.2f MiB), %.3f bits per weight\n",
                qf_gguf_n_tensors(g), params, bytes, (double)bytes / 1048576.0, params ? 8.0 * (double)bytes / (double)params : 0);
    }
    qf_gguf_close(g);
    return QF_OK;
}

static const char *scale_name(qf_scale_kind k) {
    switch (k) {
    case QF_SCALE_BLOCK: return "block";
    case QF_SCALE_TENSOR: return "tensor";
    case QF_SCALE_CHANNEL: return "channel";
    default: return "";
    }
}

static qf_status inspect_source(const qf_inspect_opts *o, FILE *out, qf_error *err) {
    qf_source *s;
    qf_status st = qf_source_open(o->path, &s, err);
    if (st) return st;
    uint64_t params = 0, bytes = 0;
    size_t n = qf_source_n_tensors(s);
    for (size_t i = 0; i < n; i++) {
        params += qf_source_tensor(s, i)->n_rows * qf_source_tensor(s, i)->row_len;
        bytes += qf_source_tensor(s, i)->nbytes;
    }
    cJSON *root = o->json ? cJSON_CreateObject() : NULL, *ts = o->json ? cJSON_AddArrayToObject(root, "tensors") : NULL;
    if (root) cJSON_AddStringToObject(root, "format", "safetensors");
    else fprintf(out, "%s: safetensors checkpoint%s, %zu tensors\n\n  %-52s %-8s %-20s %12s %s\n", qf_source_label(s),
                 qf_source_sequential(s) ? " (archive)" : "", n, "name", "dtype", "shape", "bytes", "scale");
    for (size_t i = 0; i < n; i++) {
        const qf_src_tensor *t = qf_source_tensor(s, i);
        char shape[96];
        shape_str(t->shape, t->n_dims, shape, sizeof shape);
        if (root) {
            cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray();
            cJSON_AddStringToObject(e, "name", t->name);
            cJSON_AddStringToObject(e, "dtype", qf_dtype_name(t->dtype));
            for (uint32_t d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddItemToObject(e, "shape", sh);
            cJSON_AddNumberToObject(e, "bytes", (double)t->nbytes);
            if (t->scale_kind) cJSON_AddStringToObject(e, "scale", scale_name(t->scale_kind));
            cJSON_AddItemToArray(ts, e);
        } else {
            fprintf(out, "  %-52s %-8s %-20s %12" PRIu64 " %s\n", t->name, qf_dtype_name(t->dtype), shape, t->nbytes,
                    scale_name(t->scale_kind));
        }
    }
    if (root) {
        cJSON *tot = cJSON_AddObjectToObject(root, "totals");
        cJSON_AddNumberToObject(tot, "tensors", (double)n);
        cJSON_AddNumberToObject(tot, "parameters", (double)params);
        cJSON_AddNumberToObject(tot, "bytes", (double)bytes);
        char *js = cJSON_Print(root);
        if (js) fprintf(out, "%s\n", js);
        free(js);
        cJSON_Delete(root);
    } else {
        fprintf(out, "\ntotal: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes (%.2f MiB), %.3f bits per weight\n", n,
                params, bytes, (double)bytes / 1048576.0, params ? 8.0 * (double)bytes / (double)params : 0);
    }
    qf_source_close(s);
    return QF_OK;
}

qf_status qf_inspect(const qf_inspect_opts *o, void *out, qf_error *err) {
    qf_error_clear(err);
    return is_gguf(o->path) ? inspect_gguf(o, out, err) : inspect_source(o, out, err);
}
