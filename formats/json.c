/*
 * json.c — strict, bounded JSON parsing over cJSON (rules in json.h).
 *
 * Two passes: a lexical scan of the text (byte-order mark, control characters and \u0000 in strings,
 * the number of values) that decides whether cJSON may run at all, then cJSON, then a walk over the
 * tree for duplicate keys. cJSON cannot tell a syntax error from a failed allocation, so its
 * allocations go through a hook that notes, per thread, that one failed.
 */
#include "formats/json.h"

#include <pthread.h>

static _Thread_local bool tl_oom;
static pthread_once_t g_hooks_once = PTHREAD_ONCE_INIT;

static void *noting_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) tl_oom = true;
    return p;
}

static void install_hooks(void) {
    cJSON_Hooks h = {.malloc_fn = noting_malloc, .free_fn = free};
    cJSON_InitHooks(&h);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ---- lexical scan ------------------------------------------------------------------------------ */

/* A string's raw text (as written in the file, escapes and all) for messages. */
#define EXCERPT(s, start, end) (int)QF_MIN((end) - (start), (size_t)120), (s) + (start)

/* One string starting at s[*i] == '"'; *i ends past its closing quote (or at n if unterminated, which
 * cJSON then reports as a syntax error). *is_key: the next non-space byte is ':'. */
static qf_status scan_string(const char *label, const char *s, size_t n, size_t *i, bool *is_key, qf_error *err) {
    size_t start = *i + 1, j = start, nul_at = SIZE_MAX;
    for (; j < n && s[j] != '"'; j++) {
        unsigned char c = (unsigned char)s[j];
        if (c < 0x20)
            return qf_fail(err, QF_E_INPUT, "%s: raw control character 0x%02x inside a string at byte %zu (JSON "
                           "requires it escaped)", label, c, j);
        if (c != '\\') continue;
        if (j + 5 < n && s[j + 1] == 'u' && !memcmp(s + j + 2, "0000", 4) && nul_at == SIZE_MAX) nul_at = j;
        j++; /* the escaped character, so "\\" never starts another escape */
    }
    size_t end = QF_MIN(j, n);
    *i = j < n ? j + 1 : n;
    size_t k = *i;
    while (k < n && is_space(s[k])) k++;
    *is_key = k < n && s[k] == ':';
    if (nul_at != SIZE_MAX)
        return qf_fail(err, QF_E_INPUT, "%s: %s \"%.*s\" contains \\u0000 (NUL) at byte %zu, which would cut it short; "
                       "refusing it", label, *is_key ? "key" : "string", EXCERPT(s, start, end), nul_at);
    return QF_OK;
}

static qf_status scan_text(const char *label, const char *s, size_t n, qf_error *err) {
    if (n >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
        return qf_fail(err, QF_E_INPUT, "%s: starts with a UTF-8 byte-order mark, which JSON does not allow "
                       "(Python's json refuses it too)", label);
    uint64_t values = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '"') {
            bool is_key = false;
            qf_status st = scan_string(label, s, n, &i, &is_key, err);
            if (st != QF_OK) return st;
            values += !is_key;
        } else if (c == '{' || c == '[') {
            values++;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
            values++;
            while (i < n && !is_space(s[i]) && !strchr(",:]}[{\"", s[i])) i++;
        } else {
            i++;
        }
        if (values > QF_JSON_MAX_VALUES)
            return qf_fail(err, QF_E_INPUT, "%s: holds more than %u JSON values (limit; about 400 MiB in memory)", label,
                           QF_JSON_MAX_VALUES);
    }
    return QF_OK;
}

/* ---- duplicate keys ---------------------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The first key of obj that appears twice, or NULL. *oom on allocation failure. */
static const char *duplicate_key(const cJSON *obj, bool *oom) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return NULL;
    if (n <= 8) {
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string)) return a->string;
        return NULL;
    }
    const cJSON **v = qf_malloc_n(n, sizeof *v);
    if (!v) {
        *oom = true;
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string) v[k++] = c;
    qsort(v, k, sizeof *v, cmp_key);
    const char *dup = NULL;
    for (size_t i = 1; i < k && !dup; i++)
        if (!strcmp(v[i - 1]->string, v[i]->string)) dup = v[i]->string;
    free(v);
    return dup;
}

/* path: where `node` sits ("" for the top level, "rope_scaling", "added_tokens[3]"), for messages. */
static qf_status check_keys(const char *label, const cJSON *node, char *path, size_t cap, qf_error *err) {
    if (cJSON_IsObject(node)) {
        bool oom = false;
        const char *dup = duplicate_key(node, &oom);
        if (oom) return qf_fail(err, QF_E_NOMEM, "%s: out of memory checking JSON keys", label);
        if (dup)
            return qf_fail(err, QF_E_INPUT, "%s: key '%.200s' is defined twice%s%.200s%s (JSON readers disagree on "
                           "which one counts; refusing it)", label, dup, path[0] ? " (in '" : " (at the top level)",
                           path, path[0] ? "')" : "");
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return QF_OK;
    size_t len = strlen(path), i = 0;
    for (const cJSON *c = node->child; c; c = c->next, i++) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
        if (cJSON_IsObject(node)) snprintf(path + len, cap - len, "%s%s", len ? "." : "", c->string ? c->string : "");
        else snprintf(path + len, cap - len, "[%zu]", i);
        qf_status st = check_keys(label, c, path, cap, err);
        path[len] = '\0';
        if (st != QF_OK) return st;
    }
    return QF_OK;
}

/* ---- parse ------------------------------------------------------------------------------------- */

qf_status qf_json_parse(const char *label, const char *text, size_t len, cJSON **out, qf_error *err) {
    *out = NULL;
    pthread_once(&g_hooks_once, install_hooks);
    if (len > QF_JSON_MAX_BYTES)
        return qf_fail(err, QF_E_INPUT, "%s: %zu bytes of JSON exceed the limit of %u", label, len, QF_JSON_MAX_BYTES);
    qf_status st = scan_text(label, text, len, err);
    if (st != QF_OK) return st;
    const char *end = NULL;
    tl_oom = false;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root && tl_oom)
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory parsing %zu bytes of JSON", label, len);
    if (!root) {
        size_t at = end && end >= text ? QF_MIN((size_t)(end - text), len) : 0;
        return qf_fail(err, QF_E_INPUT, "%s: not valid JSON (error near byte %zu of %zu: \"%.*s\")", label, at, len,
                       (int)QF_MIN(len - at, (size_t)24), text + at);
    }
    size_t tail = (size_t)(end - text);
    while (tail < len && is_space(text[tail])) tail++;
    char path[256] = "";
    if (tail < len)
        st = qf_fail(err, QF_E_INPUT, "%s: data after the JSON value at byte %zu (only whitespace may follow it)", label,
                     tail);
    else
        st = check_keys(label, root, path, sizeof path, err);
    if (st != QF_OK) {
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return QF_OK;
}

qf_status qf_json_parse_object(const char *label, const char *text, size_t len, cJSON **out, qf_error *err) {
    qf_status st = qf_json_parse(label, text, len, out, err);
    if (st != QF_OK || cJSON_IsObject(*out)) return st;
    const char *what = cJSON_IsArray(*out) ? "an array" : cJSON_IsString(*out) ? "a string" : cJSON_IsNumber(*out) ? "a number"
                       : cJSON_IsBool(*out) ? "a boolean" : "null";
    cJSON_Delete(*out);
    *out = NULL;
    return qf_fail(err, QF_E_INPUT, "%s: top level is not a JSON object (it is %s)", label, what);
}
