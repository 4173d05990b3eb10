/*
 * safetensors.c — safetensors reader: dtype helpers, header validation, mmap'd single files and shard
 * sets (layout and rules in safetensors.h).
 *
 * Memory: a parsed header lives in one allocation — tensor table, then the metadata pointer arrays,
 * then every name and metadata string — whose size follows from the header bytes that justified it;
 * qf_st_header_free releases it with one free() of `tensors`.
 */
#include "formats/safetensors.h"
#include "formats/infile.h"
#include "formats/json.h"
#include "kernels/fpconv.h"
#include "kernels/fprow.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes -------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t size; /* bytes per element */
    bool is_float;
} dtype_info[QF_DT_COUNT] = {
    [QF_DT_F64] = {"F64", 8, true},         [QF_DT_F32] = {"F32", 4, true},
    [QF_DT_F16] = {"F16", 2, true},         [QF_DT_BF16] = {"BF16", 2, true},
    [QF_DT_F8_E4M3] = {"F8_E4M3", 1, true}, [QF_DT_F8_E5M2] = {"F8_E5M2", 1, true},
    [QF_DT_I64] = {"I64", 8, false},        [QF_DT_I32] = {"I32", 4, false},
    [QF_DT_I16] = {"I16", 2, false},        [QF_DT_I8] = {"I8", 1, false},
    [QF_DT_U64] = {"U64", 8, false},        [QF_DT_U32] = {"U32", 4, false},
    [QF_DT_U16] = {"U16", 2, false},        [QF_DT_U8] = {"U8", 1, false},
    [QF_DT_BOOL] = {"BOOL", 1, false},
};

/* Dtypes the format defines that qforge cannot decode: reported as unsupported rather than malformed,
 * so users learn the checkpoint is fine and the tool is the limit. */
static const char *const dtype_unsupported[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"};

const char *qf_dtype_name(qf_dtype dt) { return (unsigned)dt < QF_DT_COUNT ? dtype_info[dt].name : "?"; }

bool qf_dtype_from_name(const char *s, qf_dtype *dt) {
    for (unsigned i = 0; s && i < QF_DT_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *dt = (qf_dtype)i;
            return true;
        }
    }
    return false;
}

uint32_t qf_dtype_size(qf_dtype dt) { return (unsigned)dt < QF_DT_COUNT ? dtype_info[dt].size : 0; }

bool qf_dtype_is_float(qf_dtype dt) { return (unsigned)dt < QF_DT_COUNT && dtype_info[dt].is_float; }

/* Byte-wise little-endian loads: the data may sit at any alignment and the file is little-endian
 * whatever the host is; compilers turn these into single loads on x86. */
static uint16_t ld_le16(const uint8_t *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }
static uint32_t ld_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld_le64(const uint8_t *p) { return (uint64_t)ld_le32(p) | (uint64_t)ld_le32(p + 4) << 32; }

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static double bits_to_f64(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }

/* Whole-row SIMD conversions need 2-byte alignment of the source (safetensors data may start at any
 * byte) and a little-endian host, where the file's byte order is the machine's. */
static bool row_path_ok(const void *src) {
    return ((uintptr_t)src & 1) == 0 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
}

void qf_dtype_decode(qf_dtype dt, const void *src, float *dst, uint64_t n) {
    const uint8_t *p = src;
    if (dt == QF_DT_F8_E4M3) { qf_e4m3_to_f32_row(p, dst, (int64_t)n); return; }
    if ((dt == QF_DT_F16 || dt == QF_DT_BF16) && row_path_ok(src)) {
        if (dt == QF_DT_F16) qf_f16_to_f32_row(src, dst, (int64_t)n);
        else qf_bf16_to_f32_row(src, dst, (int64_t)n);
        return;
    }
    switch (dt) {
    case QF_DT_F64: for (uint64_t i = 0; i < n; i++) dst[i] = (float)bits_to_f64(ld_le64(p + 8 * i)); break;
    case QF_DT_F32: for (uint64_t i = 0; i < n; i++) dst[i] = bits_to_f32(ld_le32(p + 4 * i)); break;
    case QF_DT_F16: for (uint64_t i = 0; i < n; i++) dst[i] = qf_f16_to_f32(ld_le16(p + 2 * i)); break;
    case QF_DT_BF16: for (uint64_t i = 0; i < n; i++) dst[i] = qf_bf16_to_f32(ld_le16(p + 2 * i)); break;
    case QF_DT_F8_E4M3: for (uint64_t i = 0; i < n; i++) dst[i] = qf_e4m3_to_f32(p[i]); break;
    case QF_DT_F8_E5M2: for (uint64_t i = 0; i < n; i++) dst[i] = qf_e5m2_to_f32(p[i]); break;
    case QF_DT_I64: for (uint64_t i = 0; i < n; i++) dst[i] = (float)(int64_t)ld_le64(p + 8 * i); break;
    case QF_DT_I32: for (uint64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)ld_le32(p + 4 * i); break;
    case QF_DT_I16: for (uint64_t i = 0; i < n; i++) dst[i] = (float)(int16_t)ld_le16(p + 2 * i); break;
    case QF_DT_I8: for (uint64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i]; break;
    case QF_DT_U64: for (uint64_t i = 0; i < n; i++) dst[i] = (float)ld_le64(p + 8 * i); break;
    case QF_DT_U32: for (uint64_t i = 0; i < n; i++) dst[i] = (float)ld_le32(p + 4 * i); break;
    case QF_DT_U16: for (uint64_t i = 0; i < n; i++) dst[i] = (float)ld_le16(p + 2 * i); break;
    case QF_DT_U8: for (uint64_t i = 0; i < n; i++) dst[i] = (float)p[i]; break;
    /* Any nonzero byte is true, as torch reads it; the writer only emits 0 and 1. */
    case QF_DT_BOOL: for (uint64_t i = 0; i < n; i++) dst[i] = p[i] ? 1.0f : 0.0f; break;
    case QF_DT_COUNT: break;
    }
}

/* ---- messages ------------------------------------------------------------------------------------ */

/* Strings from the file are printed with %.200s so that one absurd name cannot push the rest of the
 * message out of the record (qf_fail keeps messages one line). */

/* "a string", "-3", "2.5": what a JSON value is, for "expected X, found Y" messages. */
static const char *json_describe(const cJSON *j, char *buf, size_t n) {
    if (!j) return "missing";
    if (cJSON_IsNumber(j)) {
        snprintf(buf, n, "%.17g", j->valuedouble);
        return buf;
    }
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "an invalid value";
}

static void format_shape(const qf_st_tensor *t, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

/* ---- header bytes -------------------------------------------------------------------------------- */

/* Index of the first byte that is not valid UTF-8 or is a raw control character, or n if none. The spec
 * requires UTF-8; JSON allows no raw control bytes except whitespace, and a raw NUL would silently cut a
 * cJSON string short (two distinct names could then collide). */
static uint64_t header_bad_byte(const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
            i++;
            continue;
        }
        uint32_t len, cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1Fu; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0Fu; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07u; min = 0x10000; }
        else return i;
        if (n - i < len) return i;
        for (uint32_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Position of the first number not written as a plain JSON integer ("1.0", "1e2", "01"), or n. cJSON
 * hands 1.0 and 1e2 over as the same doubles as 1 and 100, and accepts leading zeros; the reference
 * parser refuses all three for shapes and offsets, so the text itself is checked. `s` must be JSON
 * that cJSON accepted (strings are closed). */
static uint64_t header_nonint_number(const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
        } else if (c == '-' || is_digit(c)) {
            uint64_t start = i, digits = i + (c == '-');
            bool plain = !(digits + 1 < n && s[digits] == '0' && is_digit(s[digits + 1]));
            for (; i < n && (is_digit(s[i]) || s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' ||
                             s[i] == 'E'); i++)
                if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') plain = false;
            if (!plain) return start;
        } else {
            i++;
        }
    }
    return n;
}

/* ---- header entries ------------------------------------------------------------------------------ */

#define QF_ST_EXACT_LIMIT 9007199254740992.0 /* 2^53 */

/* cJSON keeps numbers as doubles, exact only below 2^53: a larger value may already have been rounded
 * to a neighbour, so it is refused rather than trusted. */
static bool json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d < QF_ST_EXACT_LIMIT) || d != floor(d)) return false;
    *v = (uint64_t)d;
    return true;
}

static qf_status parse_dtype(const char *label, const char *name, const cJSON *j, qf_dtype *dt, qf_error *err) {
    char buf[40];
    if (!cJSON_IsString(j))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': dtype is %s, expected a string such as \"F32\"",
                       label, name, json_describe(j, buf, sizeof buf));
    if (qf_dtype_from_name(j->valuestring, dt)) return QF_OK;
    for (size_t i = 0; i < QF_ARRAY_LEN(dtype_unsupported); i++)
        if (strcmp(j->valuestring, dtype_unsupported[i]) == 0)
            return qf_fail(err, QF_E_UNSUPPORTED,
                           "%s: tensor '%.200s': dtype %s is not supported (qforge reads F64, F32, F16, BF16, "
                           "F8_E4M3, F8_E5M2, I64..I8, U64..U8, BOOL)", label, name, j->valuestring);
    return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': unknown dtype \"%.40s\", expected one of F64, F32, F16, "
                   "BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL", label, name, j->valuestring);
}

/* Dimensions, element count and byte size (dtype already set). */
static qf_status parse_shape(const char *label, const char *name, const cJSON *j, qf_st_tensor *t, qf_error *err) {
    char buf[40];
    if (!cJSON_IsArray(j))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': shape is %s, expected an array of integers",
                       label, name, json_describe(j, buf, sizeof buf));
    int rank = cJSON_GetArraySize(j);
    if (rank > QF_ST_MAX_DIMS)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: tensor '%.200s': shape has %d dimensions, at most %d are supported",
                       label, name, rank, QF_ST_MAX_DIMS);
    t->n_dims = 0;
    t->n_elems = 1;
    for (const cJSON *d = j->child; d; d = d->next) {
        uint64_t v;
        if (!json_uint(d, &v))
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': shape[%u] is %s, expected an integer in [0, 2^53)",
                           label, name, t->n_dims, json_describe(d, buf, sizeof buf));
        t->shape[t->n_dims++] = v;
    }
    char sh[200];
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!qf_mul_ok(t->n_elems, t->shape[d], &t->n_elems)) {
            format_shape(t, sh, sizeof sh);
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': shape %s has more elements than fit in 64 bits",
                           label, name, sh);
        }
    }
    if (!qf_mul_ok(t->n_elems, qf_dtype_size(t->dtype), &t->nbytes)) {
        format_shape(t, sh, sizeof sh);
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': %s %s takes more bytes than fit in 64 bits",
                       label, name, qf_dtype_name(t->dtype), sh);
    }
    return QF_OK;
}

/* data_offsets [begin, end]: well-typed, consistent with the byte size, inside the data buffer. */
static qf_status parse_offsets(const char *label, const char *name, const cJSON *j, uint64_t data_len,
                               qf_st_tensor *t, qf_error *err) {
    char buf[40];
    if (!cJSON_IsArray(j))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets is %s, expected [begin, end]", label, name,
                       json_describe(j, buf, sizeof buf));
    if (cJSON_GetArraySize(j) != 2)
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets has %d entries, expected [begin, end]",
                       label, name, cJSON_GetArraySize(j));
    uint64_t off[2];
    int k = 0;
    for (const cJSON *d = j->child; d; d = d->next, k++) {
        if (!json_uint(d, &off[k]))
            return qf_fail(err, QF_E_INPUT,
                           "%s: tensor '%.200s': data_offsets[%d] is %s, expected an integer in [0, 2^53)",
                           label, name, k, json_describe(d, buf, sizeof buf));
    }
    unsigned long long b = off[0], e = off[1];
    if (e < b)
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] end before they begin",
                       label, name, b, e);
    if (e - b != t->nbytes) {
        char sh[200];
        format_shape(t, sh, sizeof sh);
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] span %llu bytes, but %s %s "
                       "needs %llu", label, name, b, e, e - b, qf_dtype_name(t->dtype), sh,
                       (unsigned long long)t->nbytes);
    }
    if (e > data_len)
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] exceed the data buffer "
                       "(%llu bytes)", label, name, b, e, (unsigned long long)data_len);
    t->offset = b;
    return QF_OK;
}

static qf_status parse_entry(const char *label, const cJSON *e, uint64_t data_len, qf_st_tensor *t, qf_error *err) {
    char buf[40];
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': entry is %s, expected an object with dtype, shape "
                       "and data_offsets", label, name, json_describe(e, buf, sizeof buf));
    qf_status st = parse_dtype(label, name, cJSON_GetObjectItemCaseSensitive(e, "dtype"), &t->dtype, err);
    if (st == QF_OK) st = parse_shape(label, name, cJSON_GetObjectItemCaseSensitive(e, "shape"), t, err);
    if (st == QF_OK)
        st = parse_offsets(label, name, cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), data_len, t, err);
    return st;
}

/* ---- header -------------------------------------------------------------------------------------- */

/* How big the header's single allocation must be; also validates __metadata__. */
typedef struct header_plan {
    size_t n_tensors, n_meta;
    uint64_t str_bytes; /* names and metadata strings, NUL-terminated */
    const cJSON *meta;
} header_plan;

static qf_status plan_header(const char *label, const cJSON *root, header_plan *p, qf_error *err) {
    char buf[40];
    memset(p, 0, sizeof *p);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) return qf_fail(err, QF_E_INPUT, "%s: header object has a member without a name", label);
        if (strcmp(e->string, "__metadata__") != 0) {
            if (!e->string[0]) return qf_fail(err, QF_E_INPUT, "%s: a tensor has an empty name", label);
            p->n_tensors++;
            if (!qf_add_ok(p->str_bytes, strlen(e->string) + 1, &p->str_bytes)) goto overflow;
            continue;
        }
        if (p->meta) return qf_fail(err, QF_E_INPUT, "%s: __metadata__ appears twice", label);
        p->meta = e;
        if (cJSON_IsNull(e)) continue; /* the reference reads null as "no metadata" */
        if (!cJSON_IsObject(e))
            return qf_fail(err, QF_E_INPUT, "%s: __metadata__ is %s, expected an object of strings", label,
                           json_describe(e, buf, sizeof buf));
        for (const cJSON *kv = e->child; kv; kv = kv->next) {
            if (!cJSON_IsString(kv))
                return qf_fail(err, QF_E_INPUT, "%s: __metadata__ key '%.200s' is %s, expected a string", label,
                               kv->string, json_describe(kv, buf, sizeof buf));
            p->n_meta++;
            if (!qf_add_ok(p->str_bytes, strlen(kv->string) + strlen(kv->valuestring) + 2, &p->str_bytes))
                goto overflow;
        }
    }
    return QF_OK;
overflow:
    return qf_fail(err, QF_E_INPUT, "%s: header strings exceed 2^64 bytes", label);
}

static char *arena_copy(char **cursor, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = memcpy(*cursor, s, n);
    *cursor += n;
    return d;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp((*(const qf_st_tensor *const *)a)->name, (*(const qf_st_tensor *const *)b)->name);
}

/* File order; equal spans (only possible for zero-size tensors or overlaps) fall back to the name so the
 * order, and so any message, does not depend on qsort. */
static int cmp_offset(const void *a, const void *b) {
    const qf_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static qf_status check_unique_names(const char *label, const qf_st_header *h, qf_error *err) {
    if (h->n_tensors < 2) return QF_OK;
    const qf_st_tensor **by_name = qf_malloc_n(h->n_tensors, sizeof *by_name);
    if (!by_name) return qf_fail(err, QF_E_NOMEM, "%s: out of memory sorting %zu tensor names", label, h->n_tensors);
    for (size_t i = 0; i < h->n_tensors; i++) by_name[i] = &h->tensors[i];
    qsort(by_name, h->n_tensors, sizeof *by_name, cmp_name_ptr);
    qf_status st = QF_OK;
    for (size_t i = 1; i < h->n_tensors && st == QF_OK; i++)
        if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0)
            st = qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s' is defined twice", label, by_name[i]->name);
    free(by_name);
    return st;
}

/* Sorted by offset, tensors must tile [0, data_len) exactly, as the reference's validate() demands:
 * a gap could hide a second payload (polyglot files) and an overlap aliases two tensors. */
static qf_status check_layout(const char *label, qf_st_header *h, qf_error *err) {
    qsort(h->tensors, h->n_tensors, sizeof *h->tensors, cmp_offset);
    uint64_t expect = 0;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const qf_st_tensor *t = &h->tensors[i];
        unsigned long long b = t->offset, e = t->offset + t->nbytes; /* end <= data_len: checked */
        if (b < expect)
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] overlap tensor '%.200s' "
                           "which ends at %llu", label, t->name, b, e, h->tensors[i - 1].name,
                           (unsigned long long)expect);
        if (b > expect)
            return qf_fail(err, QF_E_INPUT, "%s: bytes [%llu, %llu) of the data buffer belong to no tensor (hole "
                           "before tensor '%.200s')", label, (unsigned long long)expect, b, t->name);
        expect = e;
    }
    if (expect != h->data_len)
        return qf_fail(err, QF_E_INPUT, "%s: the data buffer is %llu bytes but tensors cover only %llu (unclaimed "
                       "trailing bytes)", label, (unsigned long long)h->data_len, (unsigned long long)expect);
    return QF_OK;
}

/* Fill the header from a validated plan: one allocation holding tensors, metadata arrays and strings. */
static qf_status build_header(const char *label, const cJSON *root, const header_plan *p, qf_st_header *h,
                              qf_error *err) {
    uint64_t bytes, ptrs;
    if (!qf_mul_ok(p->n_tensors, sizeof(qf_st_tensor), &bytes) || !qf_mul_ok(p->n_meta, 2 * sizeof(char *), &ptrs) ||
        !qf_add_ok(bytes, ptrs, &bytes) || !qf_add_ok(bytes, p->str_bytes, &bytes) || bytes > SIZE_MAX)
        return qf_fail(err, QF_E_NOMEM, "%s: header tables need more memory than can be addressed", label);
    uint8_t *block = calloc(1, bytes ? (size_t)bytes : 1);
    if (!block)
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory for a header of %zu tensors (%llu bytes)", label,
                       p->n_tensors, (unsigned long long)bytes);
    h->tensors = (qf_st_tensor *)block;
    h->meta_keys = (char **)(block + p->n_tensors * sizeof(qf_st_tensor));
    h->meta_vals = h->meta_keys + p->n_meta;
    char *cursor = (char *)(h->meta_vals + p->n_meta);

    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == p->meta) {
            for (const cJSON *kv = cJSON_IsObject(e) ? e->child : NULL; kv; kv = kv->next) {
                h->meta_keys[h->n_meta] = arena_copy(&cursor, kv->string);
                h->meta_vals[h->n_meta++] = arena_copy(&cursor, kv->valuestring);
            }
            continue;
        }
        qf_st_tensor *t = &h->tensors[h->n_tensors++];
        qf_status st = parse_entry(label, e, h->data_len, t, err);
        if (st != QF_OK) return st;
        t->name = arena_copy(&cursor, e->string);
    }
    return QF_OK;
}

/* Length checks and JSON parsing; *root is the header object on success. */
static qf_status parse_json(const char *label, const uint8_t *json, uint64_t json_len, cJSON **root,
                            qf_error *err) {
    uint64_t bad = header_bad_byte(json, json_len);
    if (bad < json_len)
        return qf_fail(err, QF_E_INPUT, json[bad] < 0x80 ? "%s: header byte %llu is control character 0x%02x, which "
                       "JSON does not allow" : "%s: header is not valid UTF-8 at byte %llu (0x%02x)", label,
                       (unsigned long long)bad, json[bad]);
    qf_status st = qf_json_parse(label, (const char *)json, (size_t)json_len, root, err);
    if (st != QF_OK) return st;
    if (!cJSON_IsObject(*root)) {
        char buf[40];
        return qf_fail(err, QF_E_INPUT, "%s: header JSON is %s, expected an object", label,
                       json_describe(*root, buf, sizeof buf));
    }
    return QF_OK;
}

/* Last of the checks, so that a number which is wrong in value gets the more specific message naming
 * its tensor. */
static qf_status check_plain_integers(const char *label, const uint8_t *json, uint64_t json_len, qf_error *err) {
    uint64_t num = header_nonint_number(json, json_len);
    if (num < json_len)
        return qf_fail(err, QF_E_INPUT, "%s: header number at byte %llu (\"%.*s\") is not a plain integer; shapes and "
                       "offsets must be written as integers", label, (unsigned long long)num,
                       (int)QF_MIN(json_len - num, 24), (const char *)json + num);
    return QF_OK;
}

qf_status qf_st_header_parse(const char *label, const uint8_t *json, uint64_t json_len, uint64_t file_size,
                             qf_st_header *out, qf_error *err) {
    memset(out, 0, sizeof *out);
    if (json_len > QF_ST_MAX_HEADER)
        return qf_fail(err, QF_E_INPUT, "%s: header length %llu exceeds the %u-byte limit", label,
                       (unsigned long long)json_len, QF_ST_MAX_HEADER);
    if (file_size < 8 || json_len > file_size - 8)
        return qf_fail(err, QF_E_INPUT, "%s: header length %llu runs past the end of the file (%llu bytes)", label,
                       (unsigned long long)json_len, (unsigned long long)file_size);
    out->data_start = 8 + json_len;
    out->data_len = file_size - out->data_start;

    cJSON *root = NULL;
    header_plan plan;
    qf_status st = parse_json(label, json, json_len, &root, err);
    if (st == QF_OK) st = plan_header(label, root, &plan, err);
    if (st == QF_OK) st = build_header(label, root, &plan, out, err);
    cJSON_Delete(root);
    if (st == QF_OK) st = check_unique_names(label, out, err);
    if (st == QF_OK) st = check_layout(label, out, err);
    if (st == QF_OK) st = check_plain_integers(label, json, json_len, err);
    if (st != QF_OK) qf_st_header_free(out);
    return st;
}

void qf_st_header_free(qf_st_header *h) {
    if (!h) return;
    free(h->tensors);
    memset(h, 0, sizeof *h);
}

/* ---- files and shard sets ------------------------------------------------------------------------ */

typedef struct st_shard {
    char *path;
    uint8_t *map;  /* whole file, PROT_READ, MAP_PRIVATE */
    uint64_t size; /* bytes of the file and the mapping */
    qf_st_header hdr;
} st_shard;

struct qf_st_model {
    st_shard *shards;
    size_t n_shards;
    qf_st_tensor *tensors;          /* every shard's tensors: shard order, then offset */
    size_t n_tensors;
    const qf_st_tensor **by_name;   /* the same, sorted by name, for qf_st_find */
    uint64_t page;                  /* bytes */
};

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s/%s", dir, name);
    return p;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static qf_status open_error(const char *what, const char *path, qf_error *err) {
    int e = errno;
    return qf_fail(err, e == ENOENT || e == ENOTDIR ? QF_E_NOTFOUND : QF_E_IO, "%s%s: cannot open: %s", what, path,
                   strerror(e));
}

/* Map one file and validate its header; tensor data pointers then point into the mapping. */
static qf_status shard_open(st_shard *s, uint32_t index, qf_error *err) {
    int fd;
    uint64_t size;
    qf_status st = qf_infile_open(s->path, &fd, &size, err);
    if (st != QF_OK) return st;
    if (size < 8)
        st = qf_fail(err, QF_E_INPUT, "%s: file is %llu bytes, shorter than the 8-byte header length", s->path,
                     (unsigned long long)size);
    void *p = NULL;
    if (st == QF_OK) st = qf_infile_map(s->path, fd, size, &p, err);
    if (st == QF_OK) {
        s->map = p;
        s->size = size;
    }
    close(fd); /* the mapping keeps the file open */
    if (st != QF_OK) return st;
    st = qf_st_header_parse(s->path, s->map + 8, ld_le64(s->map), s->size, &s->hdr, err);
    if (st != QF_OK) return st;
    for (size_t i = 0; i < s->hdr.n_tensors; i++) {
        qf_st_tensor *t = &s->hdr.tensors[i];
        t->data = s->map + s->hdr.data_start + t->offset; /* in bounds: validated against the file size */
        t->shard = index;
    }
    return QF_OK;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Concatenate the shards' tables and index them by name; a name in two shards is an error. */
static qf_status model_index(qf_st_model *m, qf_error *err) {
    size_t n = 0;
    for (size_t s = 0; s < m->n_shards; s++) n += m->shards[s].hdr.n_tensors;
    m->tensors = qf_malloc_n(n, sizeof *m->tensors);
    m->by_name = qf_malloc_n(n, sizeof *m->by_name);
    if (!m->tensors || !m->by_name) return qf_fail(err, QF_E_NOMEM, "out of memory indexing %zu tensors", n);
    for (size_t s = 0; s < m->n_shards; s++)
        for (size_t i = 0; i < m->shards[s].hdr.n_tensors; i++) m->tensors[m->n_tensors++] = m->shards[s].hdr.tensors[i];
    for (size_t i = 0; i < n; i++) m->by_name[i] = &m->tensors[i];
    qsort(m->by_name, n, sizeof *m->by_name, cmp_name_ptr);
    for (size_t i = 1; i < n; i++) {
        const qf_st_tensor *a = m->by_name[i - 1], *b = m->by_name[i];
        if (strcmp(a->name, b->name) == 0)
            return qf_fail(err, QF_E_INPUT, "tensor '%.200s' appears in two shards: %s and %s", a->name,
                           m->shards[QF_MIN(a->shard, b->shard)].path, m->shards[QF_MAX(a->shard, b->shard)].path);
    }
    return QF_OK;
}

/* ---- index files --------------------------------------------------------------------------------- */

typedef struct map_entry {
    const char *tensor, *file; /* borrowed from the index's cJSON tree */
} map_entry;

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const map_entry *)a)->tensor, ((const map_entry *)b)->tensor);
}

/* Read a small JSON file whole; the size cap keeps a hostile index from asking for unbounded memory. */
static qf_status read_json_file(const char *path, cJSON **root, qf_error *err) {
    char *buf = NULL;
    size_t len = 0;
    qf_status st = qf_infile_read(path, QF_ST_MAX_HEADER, "shard index", &buf, &len, err);
    if (st == QF_OK) st = qf_json_parse(path, buf, len, root, err);
    free(buf);
    return st;
}

/* weight_map entries, validated and sorted by tensor name. */
static qf_status index_entries(const char *path, const cJSON *root, map_entry **out, size_t *n_out, qf_error *err) {
    char buf[40];
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm))
        return qf_fail(err, QF_E_INPUT, "%s: \"weight_map\" is %s, expected an object of tensor -> file", path,
                       json_describe(wm, buf, sizeof buf));
    size_t n = 0;
    for (const cJSON *e = wm->child; e; e = e->next) n++;
    if (n == 0) return qf_fail(err, QF_E_INPUT, "%s: weight_map is empty", path);
    map_entry *ents = qf_malloc_n(n, sizeof *ents);
    if (!ents) return qf_fail(err, QF_E_NOMEM, "%s: out of memory for %zu weight_map entries", path, n);
    size_t i = 0;
    qf_status st = QF_OK;
    for (const cJSON *e = wm->child; e && st == QF_OK; e = e->next, i++) {
        ents[i].tensor = e->string;
        ents[i].file = cJSON_IsString(e) ? e->valuestring : NULL;
        /* Shard names are plain file names beside the index: anything else could reach outside it. */
        if (!ents[i].file)
            st = qf_fail(err, QF_E_INPUT, "%s: weight_map['%.200s'] is %s, expected a file name", path, e->string,
                         json_describe(e, buf, sizeof buf));
        else if (!ents[i].file[0] || strchr(ents[i].file, '/') || !strcmp(ents[i].file, ".") ||
                 !strcmp(ents[i].file, ".."))
            st = qf_fail(err, QF_E_INPUT, "%s: weight_map['%.200s'] is \"%.200s\", expected a file name in the "
                         "index's directory", path, e->string, ents[i].file);
    }
    if (st == QF_OK) {
        qsort(ents, n, sizeof *ents, cmp_entry);
        for (i = 1; i < n && st == QF_OK; i++)
            if (strcmp(ents[i - 1].tensor, ents[i].tensor) == 0)
                st = qf_fail(err, QF_E_INPUT, "%s: weight_map lists tensor '%.200s' twice", path, ents[i].tensor);
    }
    if (st != QF_OK) { free(ents); return st; }
    *out = ents;
    *n_out = n;
    return QF_OK;
}

/* Shard paths: the sorted unique file names of the weight map, beside the index. */
static qf_status index_shards(qf_st_model *m, const char *index_path, const map_entry *ents, size_t n,
                              qf_error *err) {
    const char **files = qf_malloc_n(n, sizeof *files);
    char *dir = qf_strndup(index_path, strlen(index_path));
    qf_status st = QF_OK;
    if (!files || !dir) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory", index_path);
    size_t nf = 0;
    if (st == QF_OK) {
        for (size_t i = 0; i < n; i++) files[i] = ents[i].file;
        qsort(files, n, sizeof *files, cmp_str_ptr);
        for (size_t i = 0; i < n; i++)
            if (nf == 0 || strcmp(files[nf - 1], files[i]) != 0) files[nf++] = files[i];
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else strcpy(dir, ".");
        m->shards = qf_calloc_n(nf, sizeof *m->shards);
        if (!m->shards) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory for %zu shards", index_path, nf);
    }
    for (size_t i = 0; st == QF_OK && i < nf; i++) {
        st_shard *s = &m->shards[m->n_shards++];
        if (!(s->path = path_join(dir, files[i]))) st = qf_fail(err, QF_E_NOMEM, "%s: out of memory", index_path);
        else if (access(s->path, F_OK) != 0)
            st = qf_fail(err, QF_E_NOTFOUND, "%s: shard file %s is missing (%s)", index_path, s->path, strerror(errno));
    }
    free(files);
    free(dir);
    return st;
}

static const char *file_base(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Every mapped tensor must sit in the shard the index names, and every shard tensor must be mapped. */
static qf_status index_check(const qf_st_model *m, const char *index_path, const map_entry *ents, size_t n,
                             qf_error *err) {
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_find(m, ents[i].tensor);
        if (!t)
            return qf_fail(err, QF_E_INPUT, "%s: weight_map puts tensor '%.200s' in %.200s, but that file has no such "
                           "tensor", index_path, ents[i].tensor, ents[i].file);
        if (strcmp(file_base(m->shards[t->shard].path), ents[i].file) != 0)
            return qf_fail(err, QF_E_INPUT, "%s: weight_map puts tensor '%.200s' in %.200s, but it is in %s", index_path,
                           ents[i].tensor, ents[i].file, m->shards[t->shard].path);
    }
    for (size_t i = 0; n != m->n_tensors && i < m->n_tensors; i++) {
        map_entry key = {.tensor = m->tensors[i].name};
        if (!bsearch(&key, ents, n, sizeof *ents, cmp_entry))
            return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s' in %s is not listed in the index weight_map",
                           index_path, m->tensors[i].name, m->shards[m->tensors[i].shard].path);
    }
    return QF_OK;
}

static qf_status open_index(qf_st_model *m, const char *index_path, qf_error *err) {
    cJSON *root = NULL;
    map_entry *ents = NULL;
    size_t n = 0;
    qf_status st = read_json_file(index_path, &root, err);
    if (st == QF_OK) st = index_entries(index_path, root, &ents, &n, err);
    if (st == QF_OK) st = index_shards(m, index_path, ents, n, err);
    for (size_t i = 0; st == QF_OK && i < m->n_shards; i++) st = shard_open(&m->shards[i], (uint32_t)i, err);
    if (st == QF_OK) st = model_index(m, err);
    if (st == QF_OK) st = index_check(m, index_path, ents, n, err);
    free(ents);
    cJSON_Delete(root);
    return st;
}

static qf_status open_single(qf_st_model *m, const char *path, qf_error *err) {
    m->shards = qf_calloc_n(1, sizeof *m->shards);
    if (!m->shards || !(m->shards[0].path = qf_strndup(path, strlen(path))))
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    m->n_shards = 1;
    qf_status st = shard_open(&m->shards[0], 0, err);
    return st == QF_OK ? model_index(m, err) : st;
}

/* ---- directories --------------------------------------------------------------------------------- */

/* Names of the *.safetensors files in dir, sorted; NULL-safe to free with free_names. */
static qf_status list_safetensors(const char *dir, char ***names, size_t *n, qf_error *err) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return open_error("", dir, err);
    size_t cap = 0;
    qf_status st = QF_OK;
    for (struct dirent *e; st == QF_OK && (e = readdir(d));) {
        if (!ends_with(e->d_name, ".safetensors")) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            char **grown = qf_malloc_n(cap, sizeof *grown);
            if (!grown) { st = qf_fail(err, QF_E_NOMEM, "%s: out of memory listing files", dir); break; }
            if (*n) memcpy(grown, *names, *n * sizeof *grown);
            free(*names);
            *names = grown;
        }
        if (!((*names)[*n] = qf_strndup(e->d_name, strlen(e->d_name))))
            st = qf_fail(err, QF_E_NOMEM, "%s: out of memory listing files", dir);
        else (*n)++;
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_str_ptr);
    return st;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The file a directory stands for: its index, else model.safetensors, else its only *.safetensors. */
static qf_status resolve_dir(const char *dir, char **file, qf_error *err) {
    static const char *const preferred[] = {"model.safetensors.index.json", "model.safetensors"};
    for (size_t i = 0; i < QF_ARRAY_LEN(preferred); i++) {
        if (!(*file = path_join(dir, preferred[i]))) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", dir);
        if (access(*file, F_OK) == 0) return QF_OK;
        free(*file);
        *file = NULL;
    }
    char **names;
    size_t n;
    qf_status st = list_safetensors(dir, &names, &n, err);
    if (st == QF_OK && n == 0)
        st = qf_fail(err, QF_E_NOTFOUND, "%s: directory holds no .safetensors file", dir);
    else if (st == QF_OK && n > 1)
        st = qf_fail(err, QF_E_INPUT, "%s: directory holds %zu .safetensors files (%.200s, %.200s%s) but no "
                     "model.safetensors.index.json to say how they form one model", dir, n, names[0], names[1],
                     n > 2 ? ", ..." : "");
    else if (st == QF_OK && !(*file = path_join(dir, names[0])))
        st = qf_fail(err, QF_E_NOMEM, "%s: out of memory", dir);
    free_names(names, n);
    return st;
}

qf_status qf_st_open(const char *path, qf_st_model **out, qf_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return open_error("", path, err);
    qf_st_model *m = calloc(1, sizeof *m);
    if (!m) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    long page = sysconf(_SC_PAGESIZE);
    m->page = page > 0 ? (uint64_t)page : 4096;

    char *file = NULL;
    qf_status st = S_ISDIR(sb.st_mode) ? resolve_dir(path, &file, err) : QF_OK;
    const char *target = file ? file : path;
    if (st == QF_OK) st = ends_with(target, ".json") ? open_index(m, target, err) : open_single(m, target, err);
    free(file);
    if (st != QF_OK) { qf_st_close(m); return st; }
    *out = m;
    return QF_OK;
}

void qf_st_close(qf_st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_shards; i++) {
        st_shard *s = &m->shards[i];
        qf_infile_unmap(s->map, s->size);
        qf_st_header_free(&s->hdr);
        free(s->path);
    }
    free(m->shards);
    free(m->tensors);
    free(m->by_name);
    free(m);
}

size_t qf_st_n_tensors(const qf_st_model *m) { return m->n_tensors; }

const qf_st_tensor *qf_st_tensor_at(const qf_st_model *m, size_t i) { return i < m->n_tensors ? &m->tensors[i] : NULL; }

static int cmp_find(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const qf_st_tensor *const *)elem)->name);
}

const qf_st_tensor *qf_st_find(const qf_st_model *m, const char *name) {
    if (!m->by_name || !name) return NULL;
    const qf_st_tensor *const *hit = bsearch(name, m->by_name, m->n_tensors, sizeof *m->by_name, cmp_find);
    return hit ? *hit : NULL;
}

size_t qf_st_n_shards(const qf_st_model *m) { return m->n_shards; }

const char *qf_st_shard_path(const qf_st_model *m, size_t i) { return i < m->n_shards ? m->shards[i].path : NULL; }

void qf_st_release(const qf_st_model *m, const qf_st_tensor *t) {
    if (!m || !t || !t->data || t->nbytes == 0) return;
    /* Only pages wholly inside the tensor: the edge pages may hold a neighbour still in use. Dropping
     * pages of a read-only private mapping is safe because none was ever copied-on-write; the next touch
     * simply reads the file again. */
    uintptr_t lo = (uintptr_t)t->data, hi = lo + (uintptr_t)t->nbytes;
    uintptr_t page = (uintptr_t)m->page;
    lo = (lo + page - 1) / page * page;
    hi = hi / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
