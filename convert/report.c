/* Escaping text that came from files, and the JSON report envelope (report.h). */
#include "convert/report.h"
#include "formats/digest.h"
#include "formats/source.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Length (2..4) and code point of the well-formed UTF-8 sequence at s, or 0 (RFC 3629 table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    uint32_t v = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if (i > 1 && (s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* Code points a terminal acts on or that hide or reorder what is shown. */
static bool invisible_control(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff;
}

typedef struct sink {
    char *out;
    size_t cap, len;
} sink;

static void put(sink *k, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++, k->len++)
        if (k->len + 1 < k->cap) k->out[k->len] = p[i];
}

static void put_hex_byte(sink *k, unsigned char b) {
    char e[5];
    snprintf(e, sizeof e, "\\x%02x", b);
    put(k, e, 4);
}

size_t qf_text_escape(const char *s, size_t len, unsigned flags, char *out, size_t cap) {
    sink k = {.out = out, .cap = cap};
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c < 0x80) {
            i++;
            bool quoted = (flags & QF_TEXT_QUOTED) && (c == '\\' || c == '"');
            if ((c >= 0x20 && c < 0x7f && !quoted) || (flags & QF_TEXT_JSON)) { put(&k, (const char *)&c, 1); continue; }
            if (quoted) { char e[2] = {'\\', (char)c}; put(&k, e, 2); }
            else if (c == '\n') put(&k, "\\n", 2);
            else if (c == '\t') put(&k, "\\t", 2);
            else if (c == '\r') put(&k, "\\r", 2);
            else put_hex_byte(&k, c);
            continue;
        }
        uint32_t cp;
        size_t n = utf8_seq(u + i, len - i, &cp);
        if (!n) { put_hex_byte(&k, c); i++; continue; }
        if (invisible_control(cp) && !(flags & QF_TEXT_JSON)) {
            char e[16];
            int w = snprintf(e, sizeof e, "\\u{%04x}", (unsigned)cp);
            put(&k, e, (size_t)w);
        } else {
            put(&k, s + i, n);
        }
        i += n;
    }
    if (cap) out[k.len < cap ? k.len : cap - 1] = '\0';
    return k.len;
}

char *qf_text_escaped(const char *s, unsigned flags) {
    size_t len = strlen(s), need = qf_text_escape(s, len, flags, NULL, 0);
    char *out = malloc(need + 1);
    if (out) qf_text_escape(s, len, flags, out, need + 1);
    return out;
}

void qf_text_put(FILE *f, const char *s, size_t len, unsigned flags) {
    char buf[512];
    /* in pieces, so that a long value needs no allocation; a piece never splits a UTF-8 sequence
     * because the escaper sees whole sequences only within one piece: cut at a lead byte */
    while (len) {
        size_t piece = len < 120 ? len : 120;
        while (piece < len && piece > 1 && ((unsigned char)s[piece] & 0xc0) == 0x80) piece--;
        qf_text_escape(s, piece, flags, buf, sizeof buf); /* 120 bytes escape to at most 120 x 4 */
        fputs(buf, f);
        s += piece;
        len -= piece;
    }
}

cJSON *qf_json_text(const char *s) {
    char *clean = qf_text_escaped(s ? s : "", QF_TEXT_JSON);
    cJSON *j = clean ? cJSON_CreateString(clean) : NULL;
    free(clean);
    return j;
}

void qf_json_add_item(cJSON *obj, const char *key, cJSON *item) {
    char *clean = qf_text_escaped(key, QF_TEXT_JSON);
    if (clean && item) cJSON_AddItemToObject(obj, clean, item);
    else cJSON_Delete(item);
    free(clean);
}

void qf_json_add_text(cJSON *obj, const char *key, const char *s) { qf_json_add_item(obj, key, qf_json_text(s)); }

cJSON *qf_report_new(const char *schema) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "schema", schema);
    cJSON_AddStringToObject(r, "qforge_version", QF_VERSION_STRING);
    cJSON_AddObjectToObject(r, "inputs");
    return r;
}

static cJSON *input_entry(cJSON *report, const char *role, const char *path) {
    cJSON *e = cJSON_CreateObject();
    if (!e) return NULL;
    qf_json_add_text(e, "path", path);
    cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(report, "inputs"), role, e);
    return e;
}

qf_status qf_report_add_file(cJSON *report, const char *role, const char *path, qf_error *err) {
    char hex[QF_SHA256_HEX_LEN + 1];
    qf_status st = qf_sha256_file_hex(path, hex, err);
    if (st) return st;
    cJSON *e = input_entry(report, role, path);
    if (!e) return qf_fail(err, QF_E_NOMEM, "out of memory for the report");
    cJSON_AddStringToObject(e, "sha256", hex);
    return QF_OK;
}

void qf_report_add_model_digest(cJSON *report, const char *role, const char *path, const char *source_sha256) {
    cJSON *e = input_entry(report, role, path);
    if (e) cJSON_AddStringToObject(e, "source_sha256", source_sha256);
}

qf_status qf_report_add_model(cJSON *report, const char *role, const char *path, const char *file_sha256,
                              qf_error *err) {
    qf_source *s;
    char id[QF_SHA256_HEX_LEN + 1];
    qf_status st = qf_source_open(path, &s, err);
    if (st) return st;
    st = qf_source_digest(s, id, err);
    qf_source_close(s);
    if (st) return st;
    qf_report_add_model_digest(report, role, path, id);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(report, "inputs"), role);
    if (e && file_sha256 && *file_sha256) cJSON_AddStringToObject(e, "sha256", file_sha256);
    return QF_OK;
}

bool qf_report_print(cJSON *report, FILE *f) {
    char *s = report ? cJSON_Print(report) : NULL;
    bool ok = s && fputs(s, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0;
    free(s);
    cJSON_Delete(report);
    return ok;
}
