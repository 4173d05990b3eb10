/* --override-kv KEY=TYPE:VALUE (kv_override.h). */
#include "convert/kv_override.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static bool is_int_type(qf_gguf_vtype t) {
    return t == QF_GGUF_U8 || t == QF_GGUF_I8 || t == QF_GGUF_U16 || t == QF_GGUF_I16 || t == QF_GGUF_U32 ||
           t == QF_GGUF_I32 || t == QF_GGUF_U64 || t == QF_GGUF_I64;
}

/* Range of an integer GGUF type as [lo, hi] in long double (exact for 64-bit values). */
static void int_range(qf_gguf_vtype t, long double *lo, long double *hi) {
    switch (t) {
    case QF_GGUF_U8: *lo = 0; *hi = UINT8_MAX; break;
    case QF_GGUF_I8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case QF_GGUF_U16: *lo = 0; *hi = UINT16_MAX; break;
    case QF_GGUF_I16: *lo = INT16_MIN; *hi = INT16_MAX; break;
    case QF_GGUF_I32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    case QF_GGUF_U64: *lo = 0; *hi = (long double)UINT64_MAX; break;
    case QF_GGUF_I64: *lo = (long double)INT64_MIN; *hi = (long double)INT64_MAX; break;
    default: *lo = 0; *hi = UINT32_MAX; break;
    }
}

static qf_status parse_int(const char *spec, const char *v, qf_gguf_vtype t, qf_gguf_kv *kv, qf_error *err) {
    char *end;
    errno = 0;
    bool neg = *v == '-';
    long long s = neg ? strtoll(v, &end, 10) : 0;
    unsigned long long u = neg ? 0 : strtoull(v, &end, 10);
    long double lo, hi, x = neg ? (long double)s : (long double)u;
    int_range(t, &lo, &hi);
    if (!*v || *end || errno || (!neg && *v == '+') || x < lo || x > hi)
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': '%s' is not an integer in %.0Lf..%.0Lf (the key's type)", spec,
                       v, lo, hi);
    kv->type = t;
    if (neg) kv->v.i64 = s;
    else if (t == QF_GGUF_I8 || t == QF_GGUF_I16 || t == QF_GGUF_I32 || t == QF_GGUF_I64) kv->v.i64 = (int64_t)u;
    else kv->v.u64 = u;
    return QF_OK;
}

qf_status qf_kv_override_parse(const char *spec, const qf_gguf *source, qf_kv_override *o, qf_error *err) {
    memset(o, 0, sizeof *o);
    o->spec = spec;
    const char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || eq == spec || !colon)
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': expected KEY=TYPE:VALUE (TYPE int, float, bool or str)", spec);
    if ((size_t)(eq - spec) >= sizeof o->key)
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': the key is longer than %zu bytes", spec, sizeof o->key - 1);
    memcpy(o->key, spec, (size_t)(eq - spec));
    if (!strncmp(o->key, "qforge.", 7))
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': qforge.* keys record what this run did and cannot be overridden", spec);
    o->kv.key = o->key;
    const qf_gguf_kv *had = source ? qf_gguf_find_kv(source, o->key) : NULL;
    size_t tl = (size_t)(colon - eq - 1);
    const char *v = colon + 1;
    qf_status st = QF_OK;
    qf_gguf_vtype kind;
    if (tl == 3 && !strncmp(eq + 1, "int", 3)) {
        kind = QF_GGUF_U32;
        st = parse_int(spec, v, had && is_int_type(had->type) ? had->type : QF_GGUF_U32, &o->kv, err);
    } else if (tl == 5 && !strncmp(eq + 1, "float", 5)) {
        char *end;
        double d = strtod(v, &end);
        kind = QF_GGUF_F32;
        o->kv.type = had && had->type == QF_GGUF_F64 ? QF_GGUF_F64 : QF_GGUF_F32;
        o->kv.v.f64 = d;
        if (!*v || *end || !isfinite(d) || (o->kv.type == QF_GGUF_F32 && !isfinite((float)d)))
            st = qf_fail(err, QF_E_USAGE, "--override-kv '%s': '%s' is not a finite number", spec, v);
    } else if (tl == 4 && !strncmp(eq + 1, "bool", 4)) {
        kind = o->kv.type = QF_GGUF_BOOL;
        o->kv.v.b = !strcmp(v, "true");
        if (strcmp(v, "true") && strcmp(v, "false"))
            st = qf_fail(err, QF_E_USAGE, "--override-kv '%s': a bool is true or false", spec);
    } else if (tl == 3 && !strncmp(eq + 1, "str", 3)) {
        kind = o->kv.type = QF_GGUF_STRING;
        o->kv.v.str.ptr = v;
        o->kv.v.str.len = strlen(v);
    } else {
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': TYPE is int, float, bool or str", spec);
    }
    if (st) return st;
    bool same_kind = !had || (kind == QF_GGUF_U32 ? is_int_type(had->type)
                              : kind == QF_GGUF_F32 ? had->type == QF_GGUF_F32 || had->type == QF_GGUF_F64
                                                    : had->type == kind);
    if (!same_kind)
        return qf_fail(err, QF_E_USAGE, "--override-kv '%s': %s holds '%s' as another kind of value; llama.cpp checks "
                       "key types when it loads", spec, qf_gguf_label(source), o->key);
    return QF_OK;
}

qf_status qf_kv_override_apply(const qf_kv_override *o, qf_gguf_writer *w, qf_error *err) {
    return qf_gguf_set_kv(w, &o->kv, err);
}
