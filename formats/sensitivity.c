/* The sensitivity table in JSON (sensitivity.h). */
#include "formats/sensitivity.h"
#include "formats/infile.h"
#include "formats/json.h"
#include "formats/outfile.h"
#include "kernels/qtypes.h"

#include <math.h>

#define SCHEMA "qforge.sensitivity/1"
#define MAX_FILE_BYTES (256u << 20)

const qf_sens_tensor *qf_sens_find(const qf_sens *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

const qf_sens_cand *qf_sens_cand_of(const qf_sens_tensor *t, uint32_t type) {
    for (size_t k = 0; k < t->n; k++)
        if (t->c[k].type == type) return &t->c[k];
    return NULL;
}

void qf_sens_free(qf_sens *s) {
    free(s->t);
    memset(s, 0, sizeof *s);
}

/* ---- writing ------------------------------------------------------------------------------------- */

/* Exactly: cJSON prints 15 digits wherever they read back within its epsilon, which is not the same
 * double; a table written and read again must solve to the same plan. */
static cJSON *exact(double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

static cJSON *number_or_null(double v) { return isfinite(v) ? exact(v) : cJSON_CreateNull(); }

static cJSON *tensor_json(const qf_sens_tensor *t) {
    cJSON *o = cJSON_CreateObject(), *types = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddNumberToObject(o, "params", (double)t->params);
    cJSON_AddBoolToObject(o, "weighted", t->weighted);
    cJSON_AddItemToObject(o, "gain", exact(t->gain));
    for (size_t k = 0; k < t->n; k++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", qf_qtype_get(t->c[k].type)->name);
        cJSON_AddNumberToObject(c, "bytes", (double)t->c[k].bytes);
        cJSON_AddItemToObject(c, "err", exact(t->c[k].err));
        cJSON_AddItemToObject(c, "kld", number_or_null(t->c[k].kld));
        cJSON_AddItemToArray(types, c);
    }
    cJSON_AddItemToObject(o, "types", types);
    return o;
}

qf_status qf_sens_save(const char *path, const qf_sens *s, qf_error *err) {
    cJSON *r = cJSON_CreateObject(), *ts = cJSON_CreateArray();
    cJSON_AddStringToObject(r, "schema", SCHEMA);
    cJSON_AddStringToObject(r, "model", s->model);
    cJSON_AddNumberToObject(r, "params", (double)s->params);
    cJSON_AddStringToObject(r, "probe", qf_qtype_get(s->probe)->name);
    cJSON_AddNumberToObject(r, "ctx", s->ctx);
    cJSON_AddNumberToObject(r, "chunks", s->chunks);
    cJSON_AddNumberToObject(r, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(r, "overhead", (double)s->overhead);
    cJSON_AddItemToObject(r, "rank_proxy", number_or_null(s->rank_proxy));
    cJSON_AddItemToObject(r, "rank_check", number_or_null(s->rank_check));
    for (size_t i = 0; i < s->n; i++) cJSON_AddItemToArray(ts, tensor_json(&s->t[i]));
    cJSON_AddItemToObject(r, "tensors", ts);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    if (!text) return qf_fail(err, QF_E_NOMEM, "out of memory for %s", path);
    qf_outfile *f = NULL;
    qf_status st = qf_outfile_open(path, &f, err);
    if (!st) st = qf_outfile_write(f, text, strlen(text), err);
    if (!st) st = qf_outfile_write(f, "\n", 1, err);
    if (!st) st = qf_outfile_commit(f, err);
    else if (f) qf_outfile_abort(f);
    free(text);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------------- */

typedef struct reader {
    const char *path;
    qf_error *err;
} reader;

static qf_status bad(const reader *r, const char *where, const char *what) {
    return qf_fail(r->err, QF_E_INPUT, "%s: %s: %s", r->path, where, what);
}

/* A finite number >= 0 (null allowed where `nullable`, read as NAN). */
static qf_status get_num(const reader *r, const cJSON *o, const char *key, const char *where, bool nullable, double *v);

/* A correlation: in [-1, 1], or null. */
static qf_status get_rank(const reader *r, const cJSON *o, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    *v = NAN;
    if (cJSON_IsNull(x)) return QF_OK;
    char at[64];
    snprintf(at, sizeof at, "top level \"%s\"", key);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= -1 && x->valuedouble <= 1)) return bad(r, at, "not a number in [-1, 1] or null");
    *v = x->valuedouble;
    return QF_OK;
}

static qf_status get_num(const reader *r, const cJSON *o, const char *key, const char *where, bool nullable, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    char at[192];
    *v = NAN;
    snprintf(at, sizeof at, "%s \"%s\"", where, key);
    if (nullable && cJSON_IsNull(x)) { *v = NAN; return QF_OK; }
    if (!cJSON_IsNumber(x)) return bad(r, at, "missing or not a number");
    if (!isfinite(x->valuedouble) || x->valuedouble < 0) return bad(r, at, "not a finite number >= 0");
    *v = x->valuedouble;
    return QF_OK;
}

static qf_status get_count(const reader *r, const cJSON *o, const char *key, const char *where, uint64_t max,
                           uint64_t *v) {
    double d = 0;
    *v = 0;
    qf_status st = get_num(r, o, key, where, false, &d);
    if (st) return st;
    if (d != floor(d) || d > (double)max) {
        char at[192];
        snprintf(at, sizeof at, "%s \"%s\"", where, key);
        return bad(r, at, "not a whole number in range");
    }
    *v = (uint64_t)d;
    return QF_OK;
}

static qf_status get_type(const reader *r, const cJSON *o, const char *key, const char *where, uint32_t *id) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    const qf_qtype_traits *tt = cJSON_IsString(x) ? qf_qtype_by_name(x->valuestring) : NULL;
    char at[192];
    snprintf(at, sizeof at, "%s \"%s\"", where, key);
    if (!tt || !tt->quantize) return bad(r, at, "not a type this build can write");
    *id = tt->id;
    return QF_OK;
}

static qf_status read_cand(const reader *r, const cJSON *o, const char *where, qf_sens_cand *c) {
    uint64_t bytes = 0;
    qf_status st = get_type(r, o, "type", where, &c->type);
    if (!st) st = get_count(r, o, "bytes", where, UINT64_C(1) << 52, &bytes);
    if (!st) st = get_num(r, o, "err", where, false, &c->err);
    if (!st) st = get_num(r, o, "kld", where, true, &c->kld);
    c->bytes = bytes;
    return st;
}

static qf_status read_tensor(const reader *r, const cJSON *o, size_t i, qf_sens_tensor *t) {
    char where[160];
    snprintf(where, sizeof where, "tensors[%zu]", i);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) >= sizeof t->name)
        return bad(r, where, "\"name\" missing, empty or too long");
    snprintf(t->name, sizeof t->name, "%s", name->valuestring);
    snprintf(where, sizeof where, "tensor '%s'", t->name);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "weighted"), *types = cJSON_GetObjectItemCaseSensitive(o, "types");
    if (!cJSON_IsBool(w)) return bad(r, where, "\"weighted\" missing or not true/false");
    t->weighted = cJSON_IsTrue(w);
    qf_status st = get_count(r, o, "params", where, UINT64_C(1) << 52, &t->params);
    if (!st) st = get_num(r, o, "gain", where, false, &t->gain);
    if (st) return st;
    int n = cJSON_IsArray(types) ? cJSON_GetArraySize(types) : -1;
    if (n < 1 || n > QF_SENS_MAX_TYPES) return bad(r, where, "\"types\" missing, empty or longer than 16");
    t->n = (size_t)n;
    for (int k = 0; k < n && !st; k++) {
        st = read_cand(r, cJSON_GetArrayItem(types, k), where, &t->c[k]);
        for (int q = 0; !st && q < k; q++)
            if (t->c[q].type == t->c[k].type) st = bad(r, where, "a type listed twice");
    }
    return st;
}

static qf_status read_header(const reader *r, const cJSON *root, qf_sens *s) {
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, SCHEMA) != 0)
        return bad(r, "\"schema\"", "not a qforge sensitivity table (qforge measure -o writes " SCHEMA ")");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    snprintf(s->model, sizeof s->model, "%s", cJSON_IsString(model) ? model->valuestring : "?");
    uint64_t ctx, chunks;
    qf_status st = get_count(r, root, "params", "top level", UINT64_C(1) << 52, &s->params);
    if (!st) st = get_type(r, root, "probe", "top level", &s->probe);
    if (!st) st = get_count(r, root, "ctx", "top level", UINT32_MAX, &ctx);
    if (!st) st = get_count(r, root, "chunks", "top level", UINT32_MAX, &chunks);
    if (!st) st = get_count(r, root, "tokens", "top level", UINT64_C(1) << 52, &s->tokens);
    if (!st) st = get_count(r, root, "overhead", "top level", UINT64_C(1) << 52, &s->overhead);
    if (!st) st = get_rank(r, root, "rank_proxy", &s->rank_proxy);
    if (!st) st = get_rank(r, root, "rank_check", &s->rank_check);
    s->ctx = (uint32_t)ctx;
    s->chunks = (uint32_t)chunks;
    return st;
}

qf_status qf_sens_load(const char *path, qf_sens *s, qf_error *err) {
    memset(s, 0, sizeof *s);
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    reader r = {.path = path, .err = err};
    qf_status st = qf_infile_read(path, MAX_FILE_BYTES, "sensitivity table", &text, &len, err);
    if (!st) st = qf_json_parse_object(path, text, len, &root, err);
    if (!st) st = read_header(&r, root, s);
    const cJSON *ts = root ? cJSON_GetObjectItemCaseSensitive(root, "tensors") : NULL;
    int n = cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : -1;
    if (!st && n < 1) st = bad(&r, "\"tensors\"", "missing or empty");
    if (!st && !(s->t = qf_calloc_n((uint64_t)n, sizeof *s->t))) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        st = read_tensor(&r, cJSON_GetArrayItem(ts, i), (size_t)i, &s->t[i]);
        if (!st && qf_sens_find(s, s->t[i].name)) st = bad(&r, s->t[i].name, "listed twice");
        if (!st) s->n++;
    }
    cJSON_Delete(root);
    free(text);
    if (st) qf_sens_free(s);
    return st;
}
