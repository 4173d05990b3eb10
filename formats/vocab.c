/*
 * vocab.c — tokenizer.ggml.* metadata: built from Hugging Face tokenizer files the way llama.cpp's
 * converter builds it (conversion/base.py: _create_vocab_sentencepiece, get_vocab_base; gguf-py
 * vocab.py: SpecialVocab), written to a GGUF, and read back from one.
 *
 * tokenizer.model is a protobuf ModelProto (sentencepiece_model.proto). Only these fields are used:
 *   ModelProto     { 1: repeated SentencePiece pieces | 2: TrainerSpec | 3: NormalizerSpec }
 *   SentencePiece  { 1: string piece | 2: float score (fixed32) | 3: enum type (varint, default NORMAL) }
 *   TrainerSpec    { 3: model_type | 35: byte_fallback | 40: unk_id | 41: bos_id | 42: eos_id | 43: pad_id }
 *   NormalizerSpec { 3: bool add_dummy_prefix (default true) }
 * Wire format: each field starts with a varint key (field number << 3 | wire type); wire type 0 = varint,
 * 1 = 8 bytes, 2 = varint length + bytes (strings and nested messages), 5 = 4 bytes. Unknown fields are
 * skipped; groups (wire types 3/4) are rejected, as no sentencepiece file uses them.
 *
 * Where the converter would crash (a Python exception) this file returns a one-line error instead; where
 * it would silently skip something, so does this file. Differences that cannot be avoided without
 * running a Hugging Face tokenizer are stated at the function that makes them.
 */
#include "formats/vocab.h"
#include "formats/json.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>

/* More tokens than any released model has (262k), yet small enough that the per-token arrays of a
 * hostile vocab_size stay bounded. */
#define QF_VOCAB_MAX_TOKENS (1u << 24)

/* SentencePiece piece types (sentencepiece_model.proto SentencePiece.Type). */
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };

/* The UTF-8 of U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
static const char SPM_SPACE[] = "\xe2\x96\x81";

/* ---- small helpers --------------------------------------------------------------------------------- */

static void vocab_init(qf_vocab *v) {
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = v->eot_id = -1;
    v->sep_id = v->mask_id = v->eom_id = -1;
    v->add_bos = v->add_eos = v->add_sep = v->add_space_prefix = -1;
}

void qf_vocab_free(qf_vocab *v) {
    if (!v) return;
    if (v->tokens)
        for (uint32_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (uint64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->merges);
    free(v->scores);
    free(v->types);
    free(v->chat_template);
    vocab_init(v);
}

static qf_status oom(qf_error *err, const char *what) {
    return qf_fail(err, QF_E_NOMEM, "out of memory while building %s", what);
}

/* Copy of s with every SentencePiece space (U+2581) replaced by ' ': the converter pre-normalizes
 * user-defined added tokens this way because llama.cpp matches them against raw text. */
static char *replace_spm_spaces(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1), *o = d;
    if (!d) return NULL;
    while (*s) {
        if (strncmp(s, SPM_SPACE, 3) == 0) { *o++ = ' '; s += 3; }
        else *o++ = *s++;
    }
    *o = '\0';
    return d;
}

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static bool ends_with(const char *s, const char *p) {
    size_t n = strlen(s), m = strlen(p);
    return n >= m && memcmp(s + n - m, p, m) == 0;
}

/* The converter's does_token_look_special(): added tokens some models forget to mark special. */
static bool looks_special(const char *t) {
    static const char *const exact[] = { "<pad>", "<mask>", "<2mass>", "[@BOS@]" };
    for (size_t i = 0; i < QF_ARRAY_LEN(exact); i++)
        if (strcmp(t, exact[i]) == 0) return true;
    if (starts_with(t, "<|") && ends_with(t, "|>")) return true;
    if (starts_with(t, "<\xef\xbd\x9c") && ends_with(t, "\xef\xbd\x9c>")) return true; /* <｜ ... ｜> */
    return starts_with(t, "<unused") && ends_with(t, ">");
}

/* ---- string -> id map (duplicate detection) ----------------------------------------------------------
 * Open addressing over borrowed NUL-terminated keys; the table never fills beyond half. */
typedef struct str_map {
    const char **keys;
    int64_t *vals;
    size_t cap; /* power of two */
} str_map;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool map_init(str_map *m, uint64_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2; /* n <= QF_VOCAB_MAX_TOKENS-ish, so no overflow */
    m->keys = qf_calloc_n(cap, sizeof *m->keys);
    m->vals = qf_calloc_n(cap, sizeof *m->vals);
    m->cap = cap;
    return m->keys && m->vals;
}

static void map_free(str_map *m) { free(m->keys); free(m->vals); memset(m, 0, sizeof *m); }

/* Insert key -> val unless present; *found receives the existing value's slot when it was. */
static int64_t *map_put(str_map *m, const char *key, int64_t val, bool *existed) {
    size_t i = (size_t)fnv1a(key) & (m->cap - 1);
    while (m->keys[i]) {
        if (strcmp(m->keys[i], key) == 0) { *existed = true; return &m->vals[i]; }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->vals[i] = val;
    *existed = false;
    return &m->vals[i];
}

/* ---- JSON side files ------------------------------------------------------------------------------- */

/* Python-style truthiness, since the converter's logic branches on `if x:` of JSON values. */
static bool js_truthy(const cJSON *j) {
    if (!j || cJSON_IsNull(j) || cJSON_IsFalse(j)) return false;
    if (cJSON_IsNumber(j)) return j->valuedouble != 0;
    if (cJSON_IsString(j)) return j->valuestring && j->valuestring[0];
    if (cJSON_IsArray(j) || cJSON_IsObject(j)) return j->child != NULL;
    return true;
}

/* dict.get(key): NULL when obj is not an object, the key is absent, or the value is JSON null. */
static const cJSON *js_get(const cJSON *obj, const char *key) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static const char *js_str(const cJSON *obj, const char *key) {
    const cJSON *v = js_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Python `a == b` for JSON values (None == None included). */
static bool js_eq(const cJSON *a, const cJSON *b) {
    if (!a || !b) return a == b;
    return cJSON_Compare(a, b, true);
}

/* An integer-valued JSON number that is not a bool (Python's isinstance(x, int), near enough: cJSON
 * cannot tell "1.0" from "1"). */
static bool js_int(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= -9.0e15 && d <= 9.0e15) || d != floor(d)) return false;
    *v = (int64_t)d;
    return true;
}

/* Read a side file; QF_E_NOTFOUND (message cleared) when the model has no such file. */
static qf_status read_side(qf_file_reader rd, void *ctx, const char *name, char **buf, size_t *len,
                           qf_error *err) {
    *buf = NULL;
    *len = 0;
    qf_status st = rd(ctx, name, buf, len, err);
    if (st != QF_OK) {
        free(*buf);
        *buf = NULL;
        if (st == QF_E_NOTFOUND) qf_error_clear(err);
    }
    return st;
}


/* Load an optional JSON side file: QF_OK with *out NULL when it does not exist. */
static qf_status load_json(qf_file_reader rd, void *ctx, const char *name, cJSON **out, qf_error *err) {
    char *buf;
    size_t len;
    *out = NULL;
    qf_status st = read_side(rd, ctx, name, &buf, &len, err);
    if (st == QF_E_NOTFOUND) return QF_OK;
    if (st != QF_OK) return st;
    st = qf_json_parse_object(name, buf, len, out, err);
    free(buf);
    return st;
}

/* ---- protobuf reader -------------------------------------------------------------------------------- */

typedef struct pb_reader {
    const uint8_t *base, *p, *end;
} pb_reader;

typedef struct pb_field {
    uint32_t num, wt;
    uint64_t varint;  /* wire type 0 */
    uint32_t fixed32; /* wire type 5 */
    pb_reader sub;    /* wire type 2: the payload */
} pb_field;

typedef enum { PB_END, PB_FIELD, PB_BAD } pb_result;

static bool pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return false;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *v = x; return true; }
    }
    return false; /* a varint is at most 10 bytes */
}

/* Next field of the message in r. On PB_BAD, *why says what was wrong at offset r->p - r->base. */
static pb_result pb_next(pb_reader *r, pb_field *f, const char **why) {
    uint64_t key, len;
    if (r->p >= r->end) return PB_END;
    if (!pb_varint(r, &key)) { *why = "truncated field key"; return PB_BAD; }
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff) { *why = "invalid field number"; return PB_BAD; }
    f->num = (uint32_t)(key >> 3);
    f->wt = (uint32_t)(key & 7);
    switch (f->wt) {
    case 0:
        if (!pb_varint(r, &f->varint)) { *why = "truncated varint"; return PB_BAD; }
        return PB_FIELD;
    case 1:
        if (r->end - r->p < 8) { *why = "truncated 64-bit value"; return PB_BAD; }
        r->p += 8;
        return PB_FIELD;
    case 2:
        if (!pb_varint(r, &len)) { *why = "truncated length"; return PB_BAD; }
        if (len > (uint64_t)(r->end - r->p)) { *why = "length runs past the end of the data"; return PB_BAD; }
        f->sub.base = r->base;
        f->sub.p = r->p;
        f->sub.end = r->p + len;
        r->p += len;
        return PB_FIELD;
    case 5:
        if (r->end - r->p < 4) { *why = "truncated 32-bit value"; return PB_BAD; }
        f->fixed32 = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        r->p += 4;
        return PB_FIELD;
    default:
        *why = "unsupported wire type (group)";
        return PB_BAD;
    }
}

/* ---- SentencePiece model ---------------------------------------------------------------------------- */

typedef struct spm_piece {
    const char *text; /* borrowed from the file buffer, not NUL-terminated */
    size_t len;
    float score;
    int32_t type;
} spm_piece;

typedef struct spm_model {
    spm_piece *pieces;
    uint32_t n, cap;
    /* Parsed so that a broken trainer/normalizer spec is reported; llama.cpp's converter takes special
     * ids from the JSON files, not from here, so these are not written. */
    int64_t unk_id, bos_id, eos_id, pad_id;
    int32_t model_type;
    bool byte_fallback, add_dummy_prefix;
} spm_model;

#define SPM_FILE "tokenizer.model"

static qf_status pb_bad(const pb_reader *r, const char *where, const char *why, qf_error *err) {
    return qf_fail(err, QF_E_INPUT, SPM_FILE ": malformed protobuf in %s at byte %zu: %s", where,
                   (size_t)(r->p - r->base), why);
}

static qf_status pb_wire(const pb_reader *r, const pb_field *f, uint32_t want, const char *where, qf_error *err) {
    if (f->wt == want) return QF_OK;
    char why[64];
    snprintf(why, sizeof why, "field %u has wire type %u, expected %u", f->num, f->wt, want);
    return pb_bad(r, where, why, err);
}

static qf_status spm_parse_piece(pb_reader r, spm_piece *pc, qf_error *err) {
    pb_field f = {0};
    const char *why = NULL;
    pb_result res;
    qf_status st;
    pc->text = "";
    pc->len = 0;
    pc->score = 0.0f;
    pc->type = SPM_NORMAL;
    while ((res = pb_next(&r, &f, &why)) == PB_FIELD) {
        if (f.num == 1) {
            if ((st = pb_wire(&r, &f, 2, "a piece", err))) return st;
            pc->text = (const char *)f.sub.p;
            pc->len = (size_t)(f.sub.end - f.sub.p);
        } else if (f.num == 2) {
            if ((st = pb_wire(&r, &f, 5, "a piece", err))) return st;
            memcpy(&pc->score, &f.fixed32, sizeof pc->score);
        } else if (f.num == 3) {
            if ((st = pb_wire(&r, &f, 0, "a piece", err))) return st;
            /* proto2 keeps an unknown enum value as an unknown field, so the type stays NORMAL */
            if (f.varint >= SPM_NORMAL && f.varint <= SPM_BYTE) pc->type = (int32_t)f.varint;
        }
    }
    return res == PB_BAD ? pb_bad(&r, "a piece", why, err) : QF_OK;
}

/* int32 fields travel as 64-bit two's complement varints. */
static bool pb_int32(uint64_t v, int64_t *out) {
    int64_t s = (int64_t)v;
    if (s < INT32_MIN || s > INT32_MAX) return false;
    *out = s;
    return true;
}

static qf_status spm_parse_trainer(pb_reader r, spm_model *m, qf_error *err) {
    pb_field f = {0};
    const char *why = NULL;
    pb_result res;
    while ((res = pb_next(&r, &f, &why)) == PB_FIELD) {
        int64_t *dst = f.num == 40 ? &m->unk_id : f.num == 41 ? &m->bos_id : f.num == 42 ? &m->eos_id
                     : f.num == 43 ? &m->pad_id : NULL;
        if (!dst && f.num != 3 && f.num != 35) continue;
        qf_status st = pb_wire(&r, &f, 0, "trainer_spec", err);
        if (st) return st;
        if (f.num == 35) m->byte_fallback = f.varint != 0;
        else if (f.num == 3) m->model_type = (int32_t)(f.varint & 0x7fffffff);
        else if (!pb_int32(f.varint, dst)) return pb_bad(&r, "trainer_spec", "special id out of int32 range", err);
    }
    return res == PB_BAD ? pb_bad(&r, "trainer_spec", why, err) : QF_OK;
}

static qf_status spm_parse_normalizer(pb_reader r, spm_model *m, qf_error *err) {
    pb_field f = {0};
    const char *why = NULL;
    pb_result res;
    while ((res = pb_next(&r, &f, &why)) == PB_FIELD) {
        if (f.num != 3) continue;
        qf_status st = pb_wire(&r, &f, 0, "normalizer_spec", err);
        if (st) return st;
        m->add_dummy_prefix = f.varint != 0;
    }
    return res == PB_BAD ? pb_bad(&r, "normalizer_spec", why, err) : QF_OK;
}

static qf_status spm_push_piece(spm_model *m, const spm_piece *pc, qf_error *err) {
    if (m->n == m->cap) {
        if (m->cap >= QF_VOCAB_MAX_TOKENS)
            return qf_fail(err, QF_E_INPUT, SPM_FILE ": more than %u pieces", QF_VOCAB_MAX_TOKENS);
        uint32_t cap = m->cap ? m->cap * 2 : 1024;
        spm_piece *np = realloc(m->pieces, (size_t)cap * sizeof *np);
        if (!np) return oom(err, SPM_FILE " pieces");
        m->pieces = np;
        m->cap = cap;
    }
    m->pieces[m->n++] = *pc;
    return QF_OK;
}

static qf_status spm_parse(const uint8_t *buf, size_t len, spm_model *m, qf_error *err) {
    pb_reader r = { buf, buf, buf + len };
    pb_field f = {0};
    const char *why = NULL;
    pb_result res = PB_END;
    qf_status st = QF_OK;
    memset(m, 0, sizeof *m);
    m->unk_id = 0, m->bos_id = 1, m->eos_id = 2, m->pad_id = -1; /* proto defaults */
    m->model_type = 1;
    m->add_dummy_prefix = true;
    while (st == QF_OK && (res = pb_next(&r, &f, &why)) == PB_FIELD) {
        if (f.num == 1) {
            spm_piece pc;
            if (!(st = pb_wire(&r, &f, 2, "ModelProto", err)) && !(st = spm_parse_piece(f.sub, &pc, err)))
                st = spm_push_piece(m, &pc, err);
        } else if (f.num == 2) {
            if (!(st = pb_wire(&r, &f, 2, "ModelProto", err))) st = spm_parse_trainer(f.sub, m, err);
        } else if (f.num == 3) {
            if (!(st = pb_wire(&r, &f, 2, "ModelProto", err))) st = spm_parse_normalizer(f.sub, m, err);
        }
    }
    if (st == QF_OK && res == PB_BAD) st = pb_bad(&r, "ModelProto", why, err);
    if (st == QF_OK && m->n == 0) st = qf_fail(err, QF_E_INPUT, SPM_FILE ": no pieces (not a SentencePiece model?)");
    return st;
}

/* The checks sentencepiece's loader makes before the converter ever sees a piece: pieces are non-empty
 * and unique, byte pieces need byte_fallback, exactly one piece is UNKNOWN. A NUL byte is refused too,
 * as tokens are C strings here. */
static qf_status spm_validate(const spm_model *m, qf_error *err) {
    str_map seen = {0};
    qf_status st = QF_OK;
    uint32_t n_unk = 0;
    char **copies = qf_calloc_n(m->n, sizeof *copies);
    if (!copies || !map_init(&seen, m->n)) { free(copies); map_free(&seen); return oom(err, SPM_FILE " index"); }
    for (uint32_t i = 0; i < m->n && st == QF_OK; i++) {
        const spm_piece *pc = &m->pieces[i];
        bool existed;
        if (pc->len == 0) { st = qf_fail(err, QF_E_INPUT, SPM_FILE ": piece %u is empty", i); break; }
        if (memchr(pc->text, 0, pc->len)) { st = qf_fail(err, QF_E_INPUT, SPM_FILE ": piece %u contains a NUL byte", i); break; }
        if (pc->type == SPM_BYTE && !m->byte_fallback) {
            st = qf_fail(err, QF_E_INPUT, SPM_FILE ": byte piece %u found although byte_fallback is false", i);
            break;
        }
        n_unk += pc->type == SPM_UNKNOWN;
        if (!(copies[i] = qf_strndup(pc->text, pc->len))) { st = oom(err, SPM_FILE " index"); break; }
        int64_t *prev = map_put(&seen, copies[i], i, &existed);
        if (existed)
            st = qf_fail(err, QF_E_INPUT, SPM_FILE ": piece %u '%.40s' duplicates piece %lld", i, copies[i],
                         (long long)*prev);
    }
    if (st == QF_OK && n_unk != 1)
        st = qf_fail(err, QF_E_INPUT, SPM_FILE ": %u pieces of type UNKNOWN, expected exactly 1", n_unk);
    for (uint32_t i = 0; i < m->n; i++) free(copies[i]);
    free(copies);
    map_free(&seen);
    return st;
}

/* ---- token table ------------------------------------------------------------------------------------ */

static qf_status vocab_alloc(qf_vocab *v, uint64_t n, bool with_scores, const char *file, qf_error *err) {
    if (n == 0) return qf_fail(err, QF_E_INPUT, "%s: empty vocabulary", file);
    if (n > QF_VOCAB_MAX_TOKENS)
        return qf_fail(err, QF_E_INPUT, "%s: vocabulary of %llu tokens exceeds the limit of %u", file,
                       (unsigned long long)n, QF_VOCAB_MAX_TOKENS);
    v->tokens = qf_calloc_n(n, sizeof *v->tokens);
    v->types = qf_calloc_n(n, sizeof *v->types);
    v->scores = with_scores ? qf_calloc_n(n, sizeof *v->scores) : NULL;
    v->n_tokens = (uint32_t)n;
    if (!v->tokens || !v->types || (with_scores && !v->scores)) return oom(err, "the token table");
    return QF_OK;
}

/* Replace token id's text (owned copy of len bytes). */
static qf_status set_token(qf_vocab *v, uint32_t id, const char *text, size_t len, qf_error *err) {
    char *c = qf_strndup(text, len);
    if (!c) return oom(err, "the token table");
    free(v->tokens[id]);
    v->tokens[id] = c;
    return QF_OK;
}

/* The converter's filler for ids no file defines: "[PAD<id>]", UNUSED. */
static qf_status set_pad_token(qf_vocab *v, uint32_t id, qf_error *err) {
    char name[32];
    int n = snprintf(name, sizeof name, "[PAD%u]", id);
    v->types[id] = QF_TOK_UNUSED;
    return set_token(v, id, name, (size_t)n, err);
}

/* ---- SentencePiece vocabulary (_create_vocab_sentencepiece) ------------------------------------------ */

static int32_t spm_token_type(int32_t spm_type) {
    /* Mirrors the converter's IsUnknown/IsControl/IsUnused/IsByte chain: USER_DEFINED pieces inside the
     * model stay NORMAL there, so they do here. */
    switch (spm_type) {
    case SPM_UNKNOWN: return QF_TOK_UNKNOWN;
    case SPM_CONTROL: return QF_TOK_CONTROL;
    case SPM_UNUSED: return QF_TOK_UNUSED;
    case SPM_BYTE: return QF_TOK_BYTE;
    default: return QF_TOK_NORMAL;
    }
}

/* Ids the pieces do not reach (vocab_size larger than the model) keep "[PAD<id>]" with score -10000:
 * the converter pre-fills its whole table that way, so its later "-1000 [PAD1..]" padding branch is
 * never reached. */
static qf_status spm_fill(const spm_model *m, qf_vocab *v, qf_error *err) {
    qf_status st;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        if (i < m->n) {
            const spm_piece *pc = &m->pieces[i];
            if ((st = set_token(v, i, pc->text, pc->len, err))) return st;
            v->scores[i] = pc->score;
            v->types[i] = spm_token_type(pc->type);
        } else {
            if ((st = set_pad_token(v, i, err))) return st;
            v->scores[i] = -10000.0f;
        }
    }
    return QF_OK;
}

/* A token id from a JSON file: an integer in [0, n) for `file`; out-of-range ids are the converter's
 * "ignore token ... out of range" (returns false, no error), anything else is an error. */
static qf_status json_token_id(const cJSON *j, const char *file, const char *what, uint32_t n, bool *use,
                               int64_t *id, qf_error *err) {
    if (!js_int(j, id))
        return qf_fail(err, QF_E_INPUT, "%s: id of %s is not an integer", file, what);
    if (*id < 0) return qf_fail(err, QF_E_INPUT, "%s: id %lld of %s is negative", file, (long long)*id, what);
    *use = *id < n;
    return QF_OK;
}

/* added_tokens.json: {"content": id, ...} -> USER_DEFINED, score -1000. */
static qf_status spm_added_tokens_json(const cJSON *j, qf_vocab *v, qf_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        int64_t id = 0;
        bool use = false;
        qf_status st = json_token_id(e, "added_tokens.json", e->string, v->n_tokens, &use, &id, err);
        if (st) return st;
        if (!use) continue;
        if ((st = set_token(v, (uint32_t)id, e->string, strlen(e->string), err))) return st;
        v->scores[id] = -1000.0f;
        v->types[id] = QF_TOK_USER_DEFINED;
    }
    return QF_OK;
}

/* A decimal id key of added_tokens_decoder ("32000"). */
static bool parse_id_key(const char *s, int64_t *id) {
    int64_t x = 0;
    if (!*s) return false;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || x > (INT64_MAX - 9) / 10) return false;
        x = x * 10 + (*s - '0');
    }
    *id = x;
    return true;
}

/* tokenizer_config.json "added_tokens_decoder": {"id": {"content": ..., "special": ...}} overrides the
 * pieces: special (or special-looking) -> CONTROL, otherwise USER_DEFINED with U+2581 -> ' '; score -1000. */
static qf_status spm_added_tokens_decoder(const cJSON *tc, qf_vocab *v, qf_error *err) {
    const cJSON *dec = js_get(tc, "added_tokens_decoder"), *e;
    if (!dec) return QF_OK;
    if (!cJSON_IsObject(dec))
        return qf_fail(err, QF_E_INPUT, "tokenizer_config.json: added_tokens_decoder is not an object");
    cJSON_ArrayForEach(e, dec) {
        int64_t id;
        const char *content = js_str(e, "content");
        if (!parse_id_key(e->string, &id))
            return qf_fail(err, QF_E_INPUT, "tokenizer_config.json: added_tokens_decoder key '%.40s' is not a token id",
                           e->string);
        if (!content)
            return qf_fail(err, QF_E_INPUT, "tokenizer_config.json: added_tokens_decoder[%lld] has no string content",
                           (long long)id);
        if (id >= v->n_tokens) continue;
        qf_status st;
        if (js_truthy(js_get(e, "special")) || looks_special(content)) {
            v->types[id] = QF_TOK_CONTROL;
            st = set_token(v, (uint32_t)id, content, strlen(content), err);
        } else {
            char *t = replace_spm_spaces(content);
            if (!t) return oom(err, "the token table");
            v->types[id] = QF_TOK_USER_DEFINED;
            st = set_token(v, (uint32_t)id, t, strlen(t), err);
            free(t);
        }
        if (st) return st;
        v->scores[id] = -1000.0f;
    }
    return QF_OK;
}

/* Files the builders share, parsed once. */
typedef struct hf_files {
    cJSON *tok_json;   /* tokenizer.json */
    cJSON *tok_config; /* tokenizer_config.json */
    cJSON *config;     /* config.json */
} hf_files;

static qf_status build_spm(qf_file_reader rd, void *ctx, const uint8_t *buf, size_t len, uint32_t vocab_size,
                           const hf_files *hf, qf_vocab *v, qf_error *err) {
    spm_model m;
    cJSON *added = NULL;
    qf_status st = spm_parse(buf, len, &m, err);
    if (!st) st = spm_validate(&m, err);
    /* llama.cpp's converter refuses this too: the embedding matrix would have no row for some pieces */
    if (!st && vocab_size && m.n > vocab_size)
        st = qf_fail(err, QF_E_INPUT, SPM_FILE ": %u pieces do not fit config.json's vocab_size %u", (unsigned)m.n, vocab_size);
    if (!st) st = vocab_alloc(v, vocab_size ? vocab_size : m.n, true, SPM_FILE, err);
    if (!st) st = spm_fill(&m, v, err);
    if (!st) st = load_json(rd, ctx, "added_tokens.json", &added, err);
    if (!st && added) st = spm_added_tokens_json(added, v, err);
    if (!st && hf->tok_config) st = spm_added_tokens_decoder(hf->tok_config, v, err);
    if (!st) {
        strcpy(v->model, "llama");
        strcpy(v->pre, "default");
    }
    cJSON_Delete(added);
    free(m.pieces);
    return st;
}

/* ---- byte-level BPE vocabulary (get_vocab_base without transformers) ---------------------------------- */

#define TJ "tokenizer.json"

/* Per-id view of tokenizer.json before tokens are copied out. */
typedef struct bpe_slot {
    const char *content; /* NULL = no token has this id */
    bool added, special;
} bpe_slot;

/* Record content at id; the same id with different text, or the same text at two ids, is an error. */
static qf_status bpe_assign(bpe_slot *slots, str_map *ids, uint64_t cap_ids, const char *content, int64_t id,
                            bool added, bool special, qf_error *err) {
    bool existed;
    if (id < 0 || (uint64_t)id >= cap_ids)
        return qf_fail(err, QF_E_INPUT, TJ ": token '%.40s' has id %lld, outside [0, %llu)", content,
                       (long long)id, (unsigned long long)cap_ids);
    int64_t *prev = map_put(ids, content, id, &existed);
    if (existed && *prev != id)
        return qf_fail(err, QF_E_INPUT, TJ ": token '%.40s' appears with ids %lld and %lld", content,
                       (long long)*prev, (long long)id);
    if (slots[id].content && strcmp(slots[id].content, content) != 0)
        return qf_fail(err, QF_E_INPUT, TJ ": duplicate id %lld ('%.40s' and '%.40s')", (long long)id,
                       slots[id].content, content);
    slots[id].content = content;
    if (added) {
        slots[id].added = true;
        slots[id].special = special;
    }
    return QF_OK;
}

/* Check that every id in model.vocab and added_tokens is an integer in range; *max_id = the largest
 * (-1 when there are none). */
static qf_status bpe_scan_ids(const cJSON *tj, int64_t *max_id, qf_error *err) {
    const cJSON *vocab = js_get(js_get(tj, "model"), "vocab"), *added = js_get(tj, "added_tokens"), *e;
    int i = 0;
    *max_id = -1;
    if (!cJSON_IsObject(vocab)) return qf_fail(err, QF_E_INPUT, TJ ": model.vocab is missing or not an object");
    if (added && !cJSON_IsArray(added)) return qf_fail(err, QF_E_INPUT, TJ ": added_tokens is not an array");
    cJSON_ArrayForEach(e, vocab) {
        int64_t id;
        if (!js_int(e, &id) || id < 0 || id >= QF_VOCAB_MAX_TOKENS)
            return qf_fail(err, QF_E_INPUT, TJ ": model.vocab['%.40s'] is not an id in [0, %u)", e->string,
                           QF_VOCAB_MAX_TOKENS);
        *max_id = QF_MAX(*max_id, id);
    }
    cJSON_ArrayForEach(e, added) {
        int64_t id;
        if (!js_str(e, "content") || !js_int(js_get(e, "id"), &id) || id < 0 || id >= QF_VOCAB_MAX_TOKENS)
            return qf_fail(err, QF_E_INPUT, TJ ": added_tokens[%d] lacks string content or an id in [0, %u)", i,
                           QF_VOCAB_MAX_TOKENS);
        *max_id = QF_MAX(*max_id, id);
        i++;
    }
    return QF_OK;
}

/* Fill slots from model.vocab and added_tokens (ids already checked by bpe_scan_ids); *n_distinct
 * counts distinct token texts. */
static qf_status bpe_collect(const cJSON *tj, bpe_slot *slots, uint64_t cap_ids, uint64_t *n_distinct, qf_error *err) {
    const cJSON *vocab = js_get(js_get(tj, "model"), "vocab"), *added = js_get(tj, "added_tokens"), *e;
    str_map ids;
    qf_status st = QF_OK;
    int n_vocab = cJSON_GetArraySize(vocab), n_added = cJSON_GetArraySize(added);
    if (!map_init(&ids, (uint64_t)n_vocab + (uint64_t)n_added)) { map_free(&ids); return oom(err, TJ " index"); }
    cJSON_ArrayForEach(e, vocab) {
        int64_t id = 0;
        js_int(e, &id);
        if ((st = bpe_assign(slots, &ids, cap_ids, e->string, id, false, false, err))) break;
    }
    if (!st) cJSON_ArrayForEach(e, added) {
        int64_t id = 0;
        js_int(js_get(e, "id"), &id);
        st = bpe_assign(slots, &ids, cap_ids, js_str(e, "content"), id, true, js_truthy(js_get(e, "special")), err);
        if (st) break;
    }
    *n_distinct = 0;
    for (size_t k = 0; k < ids.cap; k++) *n_distinct += ids.keys[k] != NULL;
    map_free(&ids);
    return st;
}

/* Token types as get_vocab_base assigns them. Added tokens are taken as they are: the converter's
 * decode(encode(t)) round trip for non-normalized added tokens is the identity for all known models. */
static qf_status bpe_fill(const bpe_slot *slots, qf_vocab *v, qf_error *err) {
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        const bpe_slot *s = &slots[i];
        qf_status st;
        if (!s->content) {
            st = set_pad_token(v, i, err);
        } else if (s->added && !(s->special || looks_special(s->content))) {
            char *t = replace_spm_spaces(s->content);
            if (!t) return oom(err, "the token table");
            v->types[i] = QF_TOK_USER_DEFINED;
            st = set_token(v, i, t, strlen(t), err);
            free(t);
        } else {
            v->types[i] = s->added ? QF_TOK_CONTROL : QF_TOK_NORMAL;
            st = set_token(v, i, s->content, strlen(s->content), err);
        }
        if (st) return st;
    }
    return QF_OK;
}

/* "left right" from a merge pair; spaces inside a part become U+0120 as the converter writes them. */
static char *merge_from_pair(const char *a, const char *b) {
    size_t n = 2;
    for (const char *s = a; *s; s++) n += *s == ' ' ? 2 : 1;
    for (const char *s = b; *s; s++) n += *s == ' ' ? 2 : 1;
    char *d = malloc(n), *o = d;
    if (!d) return NULL;
    for (int part = 0; part < 2; part++) {
        for (const char *s = part ? b : a; *s; s++) {
            if (*s == ' ') { *o++ = '\xc4'; *o++ = '\xa0'; }
            else *o++ = *s;
        }
        if (!part) *o++ = ' ';
    }
    *o = '\0';
    return d;
}

/* model.merges in either form: ["a b", ...] or (transformers >= 4.45) [["a", "b"], ...]. */
static qf_status bpe_merges_json(const cJSON *merges, qf_vocab *v, qf_error *err) {
    int n = cJSON_GetArraySize(merges), i = 0;
    const cJSON *first = merges->child, *e;
    bool pairs = cJSON_IsArray(first);
    if (!cJSON_IsString(first) &&
        !(pairs && cJSON_GetArraySize(first) == 2 && cJSON_IsString(first->child)))
        return qf_fail(err, QF_E_INPUT, TJ ": model.merges has an unknown format");
    if (!(v->merges = qf_calloc_n((uint64_t)n, sizeof *v->merges))) return oom(err, "merges");
    v->n_merges = (uint64_t)n;
    cJSON_ArrayForEach(e, merges) {
        if (pairs) {
            const cJSON *a = e->child, *b = a ? a->next : NULL;
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b))
                return qf_fail(err, QF_E_INPUT, TJ ": model.merges[%d] is not a pair of strings", i);
            v->merges[i] = merge_from_pair(a->valuestring, b->valuestring);
        } else {
            if (!cJSON_IsString(e)) return qf_fail(err, QF_E_INPUT, TJ ": model.merges[%d] is not a string", i);
            v->merges[i] = strdup(e->valuestring);
        }
        if (!v->merges[i++]) return oom(err, "merges");
    }
    return QF_OK;
}

/* merges.txt (older GPT-2 style checkpoints): an optional "#version" line, then "left right" lines;
 * malformed lines are skipped as the converter skips them. */
static qf_status bpe_merges_txt(char *buf, qf_vocab *v, qf_error *err) {
    uint64_t lines = 1;
    for (const char *s = buf; *s; s++) lines += *s == '\n';
    if (!(v->merges = qf_calloc_n(lines, sizeof *v->merges))) return oom(err, "merges");
    bool first = true;
    for (char *line = buf, *next; line; line = next, first = false) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        while (isspace((unsigned char)*line)) line++;
        if (first && *line == '#') continue;
        char *a = line, *b, *c;
        for (b = a; *b && !isspace((unsigned char)*b); b++) {}
        size_t la = (size_t)(b - a);
        while (isspace((unsigned char)*b)) b++;
        for (c = b; *c && !isspace((unsigned char)*c); c++) {}
        size_t lb = (size_t)(c - b);
        while (isspace((unsigned char)*c)) c++;
        if (la == 0 || lb == 0 || *c) continue; /* empty or not exactly two fields */
        char *m = malloc(la + lb + 2);
        if (!m) return oom(err, "merges");
        memcpy(m, a, la);
        m[la] = ' ';
        memcpy(m + la + 1, b, lb);
        m[la + 1 + lb] = '\0';
        v->merges[v->n_merges++] = m;
    }
    return QF_OK;
}

static qf_status bpe_merges(qf_file_reader rd, void *ctx, const cJSON *tj, qf_vocab *v, qf_error *err) {
    const cJSON *merges = js_get(js_get(tj, "model"), "merges");
    if (cJSON_IsArray(merges) && merges->child) return bpe_merges_json(merges, v, err);
    char *buf;
    size_t len;
    qf_status st = read_side(rd, ctx, "merges.txt", &buf, &len, err);
    if (st == QF_E_NOTFOUND) return QF_OK; /* the converter only warns: no merges */
    if (st) return st;
    st = bpe_merges_txt(buf, v, err);
    free(buf);
    return st;
}

/* ---- pre-tokenizer identification --------------------------------------------------------------------
 * llama.cpp names the pre-tokenizer by hashing the token ids a HF tokenizer produces for a test string.
 * Without running a tokenizer, the same name is derived from what decides that output: the regexes of
 * the pre_tokenizer's Split steps (plus the GPT-2 regex a ByteLevel step with use_regex applies). The
 * patterns below are those tokenizer.json files carry; llama.cpp's src/llama-vocab.cpp implements
 * each under the name given (for llama-bpe and qwen2 it keeps them in a comment as "original regex"). */

#define PRE_DIGITS_INDIVIDUAL "<Digits individual_digits>"
#define PRE_MAX_STEPS 16

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

typedef struct pre_pattern {
    const char *name;
    const char *steps[PRE_MAX_STEPS]; /* NULL-terminated */
} pre_pattern;

static const pre_pattern PRE_KNOWN[] = {
    { "gpt-2", { RE_GPT2 } },
    { "llama-bpe", { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "qwen2", { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    { "qwen35", { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" } },
    /* DeepSeek LLM: five Splits, then Digits(individual_digits), then ByteLevel without regex. */
    { "deepseek-llm", {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        PRE_DIGITS_INDIVIDUAL } },
    /* DeepSeek V3 (and R1): three Splits, then ByteLevel without regex. */
    { "deepseek-v3", {
        "\\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    } },
};

typedef struct pre_steps {
    const char *step[PRE_MAX_STEPS];
    char other[PRE_MAX_STEPS][64]; /* text for steps that are not a regex */
    int n;
    bool byte_level;
} pre_steps;

static void pre_push(pre_steps *p, const char *s) {
    if (p->n < PRE_MAX_STEPS) p->step[p->n] = s;
    p->n++; /* counted past the limit so that too many steps never match */
}

static void pre_push_other(pre_steps *p, const char *fmt, const char *a) {
    if (p->n < PRE_MAX_STEPS) {
        snprintf(p->other[p->n], sizeof p->other[0], fmt, a ? a : "?");
        p->step[p->n] = p->other[p->n];
    }
    p->n++;
}

/* Flatten a pre_tokenizer (Sequence / Split / ByteLevel / Digits / ...) into comparable steps. */
static void pre_collect(const cJSON *node, pre_steps *p, int depth) {
    const char *type = js_str(node, "type");
    if (!type || depth > 8) { pre_push_other(p, "<%s>", type ? "nested too deep" : "untyped step"); return; }
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, js_get(node, "pretokenizers")) pre_collect(e, p, depth + 1);
    } else if (strcmp(type, "ByteLevel") == 0) {
        const cJSON *use_regex = js_get(node, "use_regex");
        p->byte_level = true;
        if (!use_regex || cJSON_IsTrue(use_regex)) pre_push(p, RE_GPT2);
    } else if (strcmp(type, "Split") == 0) {
        const char *re = js_str(js_get(node, "pattern"), "Regex"), *str = js_str(js_get(node, "pattern"), "String");
        const char *behavior = js_str(node, "behavior");
        if (str && behavior && !strcmp(behavior, "MergedWithPrevious") && !js_truthy(js_get(node, "invert")))
            pre_push_other(p, "<Split '%.20s' MergedWithPrevious>", str);
        else if (js_truthy(js_get(node, "invert")) || (behavior && strcmp(behavior, "Isolated") != 0))
            pre_push_other(p, "<Split behavior %s>", behavior);
        else if (re) pre_push(p, re);
        else pre_push_other(p, "<Split on string '%.40s'>", str);
    } else if (strcmp(type, "Digits") == 0 && cJSON_IsTrue(js_get(node, "individual_digits"))) {
        pre_push(p, PRE_DIGITS_INDIVIDUAL);
    } else {
        pre_push_other(p, "<%s>", type);
    }
}

static const char *pre_match(const pre_steps *p) {
    for (size_t k = 0; k < QF_ARRAY_LEN(PRE_KNOWN); k++) {
        const pre_pattern *pat = &PRE_KNOWN[k];
        int n = 0;
        while (n < PRE_MAX_STEPS && pat->steps[n]) n++;
        if (n != p->n) continue;
        int i = 0;
        while (i < n && strcmp(pat->steps[i], p->step[i]) == 0) i++;
        if (i == n) return pat->name;
    }
    return NULL;
}

/* The first bytes of s, cut at a UTF-8 character boundary, for an error message. */
static void utf8_prefix(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 4;
        while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80) n--;
        memcpy(dst, s, n);
        strcpy(dst + n, "...");
    } else {
        memcpy(dst, s, n + 1);
    }
}

/* A Replace normalizer of the string `from` by `to`. */
static bool is_replace(const cJSON *n, const char *from, const char *to) {
    const char *type = js_str(n, "type"), *pat = js_str(js_get(n, "pattern"), "String"), *content = js_str(n, "content");
    return type && pat && content && !strcmp(type, "Replace") && !strcmp(pat, from) && !strcmp(content, to);
}

/* SentencePiece-style BPE as Gemma 3's tokenizer.json spells it: the normalizer turns every ' ' into
 * U+2581 (and adds no prefix), the pre-tokenizer splits nothing more (none, or Split on ' ', which no
 * longer occurs), unknown bytes fall back to <0xNN> tokens. llama.cpp's converter (Gemma3Model without
 * tokenizer.model -> _set_vocab_gpt2) hashes this vocabulary to "granite-embed-multi-311m", a name of its
 * Gemma 4 pre-tokenizer type, which implements exactly these steps. */
#define PRE_SPM_BPE "granite-embed-multi-311m"

static bool is_spm_style_bpe(const cJSON *tj, const pre_steps *p) {
    const cJSON *norm = js_get(tj, "normalizer");
    bool no_split = p->n == 0 || (p->n == 1 && !strcmp(p->step[0], "<Split ' ' MergedWithPrevious>"));
    return no_split && is_replace(norm, " ", SPM_SPACE) && cJSON_IsTrue(js_get(js_get(tj, "model"), "byte_fallback"));
}

static qf_status bpe_pre(const cJSON *tj, qf_vocab *v, qf_error *err) {
    const cJSON *node = js_get(tj, "pre_tokenizer");
    pre_steps p = { .n = 0 };
    if (node) pre_collect(node, &p, 0);
    if (!p.byte_level && is_spm_style_bpe(tj, &p)) {
        snprintf(v->pre, sizeof v->pre, "%s", PRE_SPM_BPE);
        return QF_OK;
    }
    if (!node) return qf_fail(err, QF_E_UNSUPPORTED, TJ ": BPE model without a pre_tokenizer (not byte-level BPE)");
    if (!p.byte_level)
        return qf_fail(err, QF_E_UNSUPPORTED, TJ ": pre-tokenizer has no ByteLevel step and the model is not "
                       "SentencePiece-style BPE (normalizer ' ' -> U+2581, byte_fallback) either");
    const char *name = pre_match(&p);
    if (!name) {
        char shown[96];
        utf8_prefix(shown, sizeof shown, p.n > 0 && p.n <= PRE_MAX_STEPS ? p.step[0] : "(none)");
        return qf_fail(err, QF_E_UNSUPPORTED, TJ ": unknown pre-tokenizer (%d step%s, first '%s'); known: gpt-2, "
                       "llama-bpe, qwen2, qwen35, deepseek-llm, deepseek-v3", p.n, p.n == 1 ? "" : "s", shown);
    }
    snprintf(v->pre, sizeof v->pre, "%s", name);
    return QF_OK;
}

static qf_status build_bpe(qf_file_reader rd, void *ctx, uint32_t vocab_size, const hf_files *hf, qf_vocab *v,
                           qf_error *err) {
    const cJSON *tj = hf->tok_json;
    const char *type = js_str(js_get(tj, "model"), "type");
    if (!type || strcmp(type, "BPE") != 0)
        return qf_fail(err, QF_E_UNSUPPORTED, TJ ": model type '%s' is not supported without tokenizer.model (BPE only)",
                       type ? type : "(missing)");
    int64_t max_id;
    uint64_t n_distinct = 0;
    qf_status st = bpe_pre(tj, v, err);
    if (!st) st = bpe_scan_ids(tj, &max_id, err);
    if (st) return st;
    if (max_id < 0) return qf_fail(err, QF_E_INPUT, TJ ": empty vocabulary");
    /* the converter asserts that every id is below config.json's vocab_size, or without one below
     * len(tokenizer.vocab), the number of distinct token texts */
    if (vocab_size && max_id >= (int64_t)vocab_size)
        return qf_fail(err, QF_E_INPUT, TJ ": token id %lld is not below config.json's vocab_size %u",
                       (long long)max_id, vocab_size);
    uint64_t cap_ids = vocab_size ? vocab_size : (uint64_t)(max_id + 1);
    bpe_slot *slots = qf_calloc_n(cap_ids, sizeof *slots);
    if (!slots) return oom(err, TJ " ids");
    st = bpe_collect(tj, slots, cap_ids, &n_distinct, err);
    if (!st && !vocab_size && (uint64_t)max_id >= n_distinct)
        st = qf_fail(err, QF_E_INPUT, TJ ": token id %lld is not below the vocabulary size %llu (ids have gaps)",
                     (long long)max_id, (unsigned long long)n_distinct);
    if (!st) st = vocab_alloc(v, vocab_size ? vocab_size : n_distinct, false, TJ, err);
    if (!st) st = bpe_fill(slots, v, err);
    if (!st) st = bpe_merges(rd, ctx, tj, v, err);
    if (!st) strcpy(v->model, "gpt2");
    free(slots);
    return st;
}

/* ---- special tokens (gguf-py SpecialVocab) ------------------------------------------------------------ */

enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_EOT, SP_EOM, SP_N };
static const char *const SP_NAME[SP_N] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom" };

typedef struct special_vocab {
    bool active[SP_N];         /* special_token_types: the first seven, plus eot/eom once the template adds them */
    int64_t id[SP_N];          /* -1 = unset */
    int8_t add[SP_N];          /* add_<typ>_token, -1 = unset */
    const cJSON *tc_tok[SP_N]; /* tokenizer_config's <typ>_token, as the converter rewrites it in place */
    uint32_t n_vocab;          /* ids at or above are skipped */
    const cJSON *tc;           /* tokenizer_config.json when truthy (a non-empty object) */
} special_vocab;

/* _set_special_token: first value wins; non-integers and out-of-range ids are skipped. The converter
 * raises on a negative id; it is skipped here too, as a GGUF cannot store it. */
static void sv_set(special_vocab *sv, int t, const cJSON *j) {
    int64_t id;
    if (!js_int(j, &id) || id < 0 || id >= sv->n_vocab || sv->id[t] >= 0) return;
    sv->id[t] = id;
}

static bool sv_in2(const cJSON *x, const cJSON *a, const cJSON *b) { return js_eq(x, a) || js_eq(x, b); }

/* The "SpecialToken" id of a template entry, or NULL. */
static const cJSON *tmpl_special(const cJSON *entry) { return js_get(js_get(entry, "SpecialToken"), "id"); }
static const cJSON *tmpl_sequence(const cJSON *entry) { return js_get(js_get(entry, "Sequence"), "id"); }

/* Locals of _try_load_from_tokenizer_json that the template parsing reads and rewrites. */
typedef struct sv_locals {
    const cJSON *bos, *cls, *eos, *sep;
} sv_locals;

static void sv_roberta(special_vocab *sv, sv_locals *l, const cJSON *proc) {
    sv->add[SP_BOS] = sv->add[SP_EOS] = sv->add[SP_SEP] = 1;
    if (!js_truthy(l->cls) && sv->tc) {
        const cJSON *c = js_get(proc, "cls");
        sv->tc_tok[SP_CLS] = l->cls = c ? cJSON_GetArrayItem(c, 0) : l->bos;
    }
    if (!js_truthy(l->sep) && sv->tc) {
        const cJSON *s = js_get(proc, "sep");
        sv->tc_tok[SP_SEP] = l->sep = s ? cJSON_GetArrayItem(s, 0) : l->eos;
    }
}

/* TemplateProcessing "single": a leading special token means add_bos, a trailing one add_eos (and a
 * trailing token other than eos becomes eos, the old eos moving to eot/eom). */
static void sv_template_single(special_vocab *sv, sv_locals *l, const cJSON *single, const cJSON **first,
                               const cJSON **last) {
    int n = cJSON_GetArraySize(single);
    *first = *last = NULL;
    if (!cJSON_IsArray(single) || n <= 1) return;
    const cJSON *f = tmpl_special(cJSON_GetArrayItem(single, 0));
    if (js_truthy(f)) {
        *first = f;
        if (!sv->tc) l->bos = f;
        else if (!sv_in2(f, l->bos, l->cls)) {
            if (!js_truthy(l->bos)) sv->tc_tok[SP_BOS] = l->bos = f;
            if (!js_truthy(l->cls)) sv->tc_tok[SP_CLS] = l->cls = f;
        }
        sv->add[SP_BOS] = sv_in2(f, l->bos, l->cls);
    }
    const cJSON *t = tmpl_special(cJSON_GetArrayItem(single, n - 1));
    if (js_truthy(t)) {
        *last = t;
        if (!sv->tc) l->eos = t;
        else if (!js_eq(t, l->eos)) {
            if (!sv->active[SP_EOT]) { sv->active[SP_EOT] = true; sv->tc_tok[SP_EOT] = l->eos; }
            else if (!sv->active[SP_EOM]) { sv->active[SP_EOM] = true; sv->tc_tok[SP_EOM] = l->eos; }
            sv->tc_tok[SP_EOS] = l->eos = t;
        }
        sv->add[SP_EOS] = js_eq(t, l->eos);
    }
}

/* TemplateProcessing "pair": "A <sep> B" (or "A <sep> <sep> B") means add_sep. */
static void sv_template_pair(special_vocab *sv, sv_locals *l, const cJSON *pair, const cJSON *first,
                             const cJSON *last) {
    int n = cJSON_GetArraySize(pair);
    if (!cJSON_IsArray(pair) || n == 0) return;
    int start = first && js_eq(tmpl_special(cJSON_GetArrayItem(pair, 0)), first) ? 1 : 0;
    int stop = last && js_eq(tmpl_special(cJSON_GetArrayItem(pair, n - 1)), last) ? n - 1 : n;
    if (stop - start <= 0) return;
    const cJSON *a = tmpl_sequence(cJSON_GetArrayItem(pair, start));
    const cJSON *b = tmpl_sequence(cJSON_GetArrayItem(pair, stop - 1));
    bool is_ab = cJSON_IsString(a) && strcmp(a->valuestring, "A") == 0 && cJSON_IsString(b) &&
                 strcmp(b->valuestring, "B") == 0;
    int mid = stop - start - 2; /* entries strictly between A and B */
    if (!is_ab || mid <= 0) return;
    bool add_sep = false;
    const cJSON *e = tmpl_special(cJSON_GetArrayItem(pair, start + 1));
    if (js_truthy(e) && sv_in2(e, l->sep, l->eos) && !js_truthy(last)) add_sep = true;
    if (mid == 2) {
        e = tmpl_special(cJSON_GetArrayItem(pair, start + 2));
        if (js_truthy(e) && sv_in2(e, l->sep, l->eos)) add_sep = true;
    }
    sv->add[SP_SEP] = add_sep;
    if (add_sep && !js_truthy(l->sep) && sv->tc) sv->tc_tok[SP_SEP] = l->eos;
}

static void sv_post_processor(special_vocab *sv, const cJSON *tj) {
    sv_locals l = { sv->tc_tok[SP_BOS], sv->tc_tok[SP_CLS], sv->tc_tok[SP_EOS], sv->tc_tok[SP_SEP] };
    if (!js_truthy(l.bos) && js_truthy(l.cls) && sv->tc) sv->tc_tok[SP_BOS] = l.bos = l.cls;
    if (!js_truthy(l.eos) && js_truthy(l.sep) && sv->tc) sv->tc_tok[SP_EOS] = l.eos = l.sep;
    const cJSON *pp = js_get(tj, "post_processor");
    if (!js_truthy(pp)) return;
    const cJSON *procs = js_get(pp, "processors"), *proc;
    for (proc = procs ? (cJSON_IsArray(procs) ? procs->child : NULL) : pp; proc; proc = procs ? proc->next : NULL) {
        const char *type = js_str(proc, "type");
        if (type && strcmp(type, "RobertaProcessing") == 0) {
            sv_roberta(sv, &l, proc);
        } else if (type && strcmp(type, "TemplateProcessing") == 0) {
            const cJSON *first, *last;
            sv_template_single(sv, &l, js_get(proc, "single"), &first, &last);
            sv_template_pair(sv, &l, js_get(proc, "pair"), first, last);
        }
    }
}

/* The id of the first tokenizer.json added token whose content is `content`, or NULL. */
static const cJSON *added_token_id(const cJSON *tj, const char *content) {
    const cJSON *e;
    cJSON_ArrayForEach(e, js_get(tj, "added_tokens")) {
        const char *c = js_str(e, "content");
        if (c && strcmp(c, content) == 0) return js_get(e, "id");
    }
    return NULL;
}

/* tokenizer_config.json: add_<typ>_token flags, and <typ>_token (string or {"content": ...}) resolved
 * to an id through tokenizer.json's added_tokens (only there: without tokenizer.json no id comes from
 * this file, as in the converter). */
static void sv_from_tokenizer_config(special_vocab *sv, const cJSON *tj) {
    for (int t = 0; t < SP_N; t++) {
        if (!sv->active[t]) continue;
        char key[32];
        snprintf(key, sizeof key, "add_%s_token", SP_NAME[t]);
        const cJSON *add = js_get(sv->tc, key);
        if (cJSON_IsBool(add)) sv->add[t] = cJSON_IsTrue(add);
        const cJSON *entry = sv->tc_tok[t];
        const char *content = cJSON_IsString(entry) ? entry->valuestring : js_str(entry, "content");
        if (content && tj) sv_set(sv, t, added_token_id(tj, content));
    }
}

/* chat_template: a string, or a list of {name, template} of which the "default" one is kept (named
 * alternatives would go to tokenizer.chat_template.<name>, which qf_vocab does not hold). */
static qf_status sv_chat_template(const cJSON *ct, qf_vocab *v, qf_error *err) {
    const char *text = NULL;
    if (cJSON_IsString(ct)) {
        text = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const char *name = js_str(e, "name");
            if (name && strcmp(name, "default") == 0 && js_str(e, "template")) text = js_str(e, "template");
        }
    }
    if (!text) return QF_OK;
    if (!(v->chat_template = strdup(text))) return oom(err, "the chat template");
    return QF_OK;
}

/* Copy of a text file as Python's text mode reads it: "\r\n" and lone "\r" become "\n". */
static char *text_file_copy(const char *buf, size_t len) {
    char *d = malloc(len + 1), *o = d;
    if (!d) return NULL;
    for (size_t i = 0; i < len && buf[i]; i++) {
        if (buf[i] == '\r') {
            *o++ = '\n';
            if (i + 1 < len && buf[i + 1] == '\n') i++;
        } else {
            *o++ = buf[i];
        }
    }
    *o = '\0';
    return d;
}

/* tokenizer_config's chat_template, else chat_template.jinja, else chat_template.json's. */
static qf_status load_chat_template(qf_file_reader rd, void *ctx, const cJSON *tc, qf_vocab *v, qf_error *err) {
    if (cJSON_GetObjectItemCaseSensitive(tc, "chat_template")) return sv_chat_template(js_get(tc, "chat_template"), v, err);
    char *buf;
    size_t len;
    qf_status st = read_side(rd, ctx, "chat_template.jinja", &buf, &len, err);
    if (st == QF_OK) {
        v->chat_template = text_file_copy(buf, len);
        free(buf);
        return v->chat_template ? QF_OK : oom(err, "the chat template");
    }
    if (st != QF_E_NOTFOUND) return st;
    cJSON *j = NULL;
    if ((st = load_json(rd, ctx, "chat_template.json", &j, err)) || !j) return st;
    st = sv_chat_template(js_get(j, "chat_template"), v, err);
    cJSON_Delete(j);
    return st;
}

/* config.json (or its text_config): <typ>_token_id for types still unset. */
static void sv_from_config(special_vocab *sv, const cJSON *config) {
    for (int t = 0; t < SP_N; t++) {
        if (!sv->active[t]) continue;
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", SP_NAME[t]);
        const cJSON *id = js_get(config, key);
        if (!id && cJSON_GetObjectItemCaseSensitive(config, "text_config")) id = js_get(js_get(config, "text_config"), key);
        sv_set(sv, t, id);
    }
}

static qf_status special_vocab_apply(qf_file_reader rd, void *ctx, const hf_files *hf, qf_vocab *v, qf_error *err) {
    special_vocab sv;
    memset(&sv, 0, sizeof sv);
    for (int t = 0; t < SP_N; t++) {
        sv.active[t] = t < SP_EOT;
        sv.id[t] = -1;
        sv.add[t] = -1;
    }
    /* The converter range-checks ids only for SentencePiece vocabularies (n_vocab=len(tokens)); for BPE
     * it would write an id past the table, which llama.cpp then rejects, so both skip it here. */
    sv.n_vocab = v->n_tokens;
    sv.tc = js_truthy(hf->tok_config) ? hf->tok_config : NULL;
    for (int t = 0; t < SP_N && sv.tc; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", SP_NAME[t]);
        sv.tc_tok[t] = js_get(sv.tc, key);
    }
    if (js_truthy(hf->tok_json)) sv_post_processor(&sv, hf->tok_json);
    if (sv.tc) {
        qf_status st = load_chat_template(rd, ctx, sv.tc, v, err);
        if (st) return st;
        sv_from_tokenizer_config(&sv, hf->tok_json);
    }
    if (hf->config) sv_from_config(&sv, hf->config);
    v->bos_id = sv.id[SP_BOS], v->eos_id = sv.id[SP_EOS], v->unk_id = sv.id[SP_UNK];
    v->sep_id = sv.id[SP_SEP], v->pad_id = sv.id[SP_PAD], v->mask_id = sv.id[SP_MASK];
    v->eot_id = sv.id[SP_EOT], v->eom_id = sv.id[SP_EOM];
    v->add_bos = sv.add[SP_BOS], v->add_eos = sv.add[SP_EOS], v->add_sep = sv.add[SP_SEP];
    return QF_OK;
}

/* ---- entry point: HF directory -> qf_vocab ------------------------------------------------------------ */

static void hf_files_free(hf_files *hf) {
    cJSON_Delete(hf->tok_json);
    cJSON_Delete(hf->tok_config);
    cJSON_Delete(hf->config);
}

/* Whether llama.cpp converts the checkpoint with its LlamaModel class (conversion/llama.py's registered
 * names); a config.json without architectures counts as Llama, as qforge reads it. */
static bool llama_model_class(const cJSON *config) {
    static const char *const names[] = {
        "LLaMAForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "VLlama3ForCausalLM",
        "LlavaForConditionalGeneration", "VoxtralForConditionalGeneration", "LlamaForCausalLMEagle3",
        "Eagle3LlamaForCausalLM", "Eagle3Speculator", "Eagle3DraftModel", "IQuestCoderForCausalLM", "LlamaModel",
    };
    const cJSON *arch = js_get(config, "architectures");
    const char *first = cJSON_IsArray(arch) && cJSON_IsString(arch->child) ? arch->child->valuestring : NULL;
    if (!first) return true;
    for (size_t i = 0; i < QF_ARRAY_LEN(names); i++)
        if (strcmp(first, names[i]) == 0) return true;
    return false;
}

/* LlamaModel.set_vocab: tokenizer_config's add_prefix_space, when stated, becomes add_space_prefix (the
 * other converters of supported models, e.g. Qwen2/Qwen3's, do not write it). */
static void apply_add_prefix_space(const hf_files *hf, qf_vocab *v) {
    const cJSON *a = js_get(hf->tok_config, "add_prefix_space");
    if (cJSON_IsBool(a) && llama_model_class(hf->config)) v->add_space_prefix = cJSON_IsTrue(a);
}

qf_status qf_vocab_load_hf(qf_file_reader rd, void *ctx, uint32_t vocab_size, qf_vocab *out, qf_error *err) {
    hf_files hf = { NULL, NULL, NULL };
    char *spm = NULL;
    size_t spm_len = 0;
    vocab_init(out);
    /* A dimension error, before anything is sized from it (2^32 - 1 would otherwise be "out of memory"). */
    if (vocab_size > QF_VOCAB_MAX_TOKENS)
        return qf_fail(err, QF_E_INPUT, "config.json: vocab_size %u is above the %u tokens a vocabulary may have",
                       vocab_size, QF_VOCAB_MAX_TOKENS);
    qf_status st = load_json(rd, ctx, "tokenizer.json", &hf.tok_json, err);
    if (!st) st = load_json(rd, ctx, "tokenizer_config.json", &hf.tok_config, err);
    if (!st) st = load_json(rd, ctx, "config.json", &hf.config, err);
    if (!st) {
        st = read_side(rd, ctx, SPM_FILE, &spm, &spm_len, err);
        /* the converter tries SentencePiece first and falls back to tokenizer.json only when
         * tokenizer.model is absent */
        if (st == QF_OK) st = build_spm(rd, ctx, (const uint8_t *)spm, spm_len, vocab_size, &hf, out, err);
        else if (st == QF_E_NOTFOUND && hf.tok_json) st = build_bpe(rd, ctx, vocab_size, &hf, out, err);
        else if (st == QF_E_NOTFOUND)
            st = qf_fail(err, QF_E_NOTFOUND, "no tokenizer: neither tokenizer.model nor tokenizer.json exists");
    }
    if (!st) st = special_vocab_apply(rd, ctx, &hf, out, err);
    if (!st) apply_add_prefix_space(&hf, out);
    free(spm);
    hf_files_free(&hf);
    if (st) qf_vocab_free(out);
    return st;
}

/* ---- GGUF write ---------------------------------------------------------------------------------------- */

#define KEY(s) "tokenizer.ggml." s

/* The vocabulary must be self-consistent before it is written; these are caller bugs, not input. */
static qf_status vocab_check(const qf_vocab *v, qf_error *err) {
    if (!v->model[0] || !v->n_tokens || !v->tokens || !v->types)
        return qf_fail(err, QF_E_USAGE, "vocabulary is empty (model '%s', %u tokens)", v->model, v->n_tokens);
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if (!v->tokens[i]) return qf_fail(err, QF_E_USAGE, "vocabulary token %u is missing", i);
    const int64_t ids[] = { v->bos_id, v->eos_id, v->unk_id, v->sep_id, v->pad_id, v->mask_id, v->eot_id, v->eom_id };
    for (size_t i = 0; i < QF_ARRAY_LEN(ids); i++)
        if (ids[i] >= (int64_t)v->n_tokens)
            return qf_fail(err, QF_E_USAGE, "special token id %lld is not below the %u tokens", (long long)ids[i],
                           v->n_tokens);
    return QF_OK;
}

static qf_status write_id(qf_gguf_writer *w, const char *key, int64_t id, qf_error *err) {
    return id < 0 ? QF_OK : qf_gguf_set_u32(w, key, (uint32_t)id, err);
}

static qf_status write_flag(qf_gguf_writer *w, const char *key, int8_t flag, qf_error *err) {
    return flag < 0 ? QF_OK : qf_gguf_set_bool(w, key, flag != 0, err);
}

/* Keys, types and order as the converter writes them: [add_space_prefix] model pre tokens [scores]
 * token_type [merges] ids (bos eos unk sep pad mask eot eom) add flags (bos sep eos: post-processor
 * first, tokenizer_config after, as for Llama checkpoints) [chat_template]. */
qf_status qf_vocab_write_gguf(const qf_vocab *v, qf_gguf_writer *w, qf_error *err) {
    qf_status st = vocab_check(v, err);
    if (!st) st = write_flag(w, KEY("add_space_prefix"), v->add_space_prefix, err);
    if (!st) st = qf_gguf_set_str(w, KEY("model"), v->model, err);
    if (!st && v->pre[0]) st = qf_gguf_set_str(w, KEY("pre"), v->pre, err);
    if (!st) st = qf_gguf_set_arr_str(w, KEY("tokens"), (const char *const *)v->tokens, v->n_tokens, err);
    if (!st && v->scores) st = qf_gguf_set_arr(w, KEY("scores"), QF_GGUF_F32, v->scores, v->n_tokens, err);
    if (!st) st = qf_gguf_set_arr(w, KEY("token_type"), QF_GGUF_I32, v->types, v->n_tokens, err);
    if (!st && v->n_merges)
        st = qf_gguf_set_arr_str(w, KEY("merges"), (const char *const *)v->merges, v->n_merges, err);
    if (!st) st = write_id(w, KEY("bos_token_id"), v->bos_id, err);
    if (!st) st = write_id(w, KEY("eos_token_id"), v->eos_id, err);
    if (!st) st = write_id(w, KEY("unknown_token_id"), v->unk_id, err);
    if (!st) st = write_id(w, KEY("seperator_token_id"), v->sep_id, err); /* sic, llama.cpp's spelling */
    if (!st) st = write_id(w, KEY("padding_token_id"), v->pad_id, err);
    if (!st) st = write_id(w, KEY("mask_token_id"), v->mask_id, err);
    if (!st) st = write_id(w, KEY("eot_token_id"), v->eot_id, err);
    if (!st) st = write_id(w, KEY("eom_token_id"), v->eom_id, err);
    if (!st) st = write_flag(w, KEY("add_bos_token"), v->add_bos, err);
    if (!st) st = write_flag(w, KEY("add_sep_token"), v->add_sep, err);
    if (!st) st = write_flag(w, KEY("add_eos_token"), v->add_eos, err);
    if (!st && v->chat_template) st = qf_gguf_set_str(w, "tokenizer.chat_template", v->chat_template, err);
    return st;
}

/* ---- GGUF read ----------------------------------------------------------------------------------------- */

/* A string array as owned C strings; an embedded NUL is an error (tokens are C strings here). */
static qf_status read_str_array(const qf_gguf_str *arr, uint64_t n, const char *key, char ***out, qf_error *err) {
    char **s = qf_calloc_n(n, sizeof *s);
    if (!s) return oom(err, key);
    *out = s;
    for (uint64_t i = 0; i < n; i++) {
        if (strlen(arr[i].ptr) != arr[i].len)
            return qf_fail(err, QF_E_INPUT, "%s: element %llu contains a NUL byte", key, (unsigned long long)i);
        if (!(s[i] = qf_strndup(arr[i].ptr, (size_t)arr[i].len))) return oom(err, key);
    }
    return QF_OK;
}

/* A short string key into a fixed buffer; absent -> "" unless required. */
static qf_status read_name(const qf_gguf *g, const char *key, char *dst, size_t cap, bool required, qf_error *err) {
    const char *s;
    qf_status st = qf_gguf_get_str(g, key, &s, err);
    if (st == QF_E_NOTFOUND && !required) { qf_error_clear(err); return QF_OK; }
    if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, "%s: missing", key);
    if (st) return st;
    if (strlen(s) >= cap) return qf_fail(err, QF_E_INPUT, "%s: '%.40s' is longer than %zu bytes", key, s, cap - 1);
    strcpy(dst, s);
    return QF_OK;
}

static qf_status read_tokens(const qf_gguf *g, qf_vocab *v, qf_error *err) {
    const void *arr;
    uint64_t n;
    qf_status st = qf_gguf_get_arr(g, KEY("tokens"), QF_GGUF_STRING, &arr, &n, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, KEY("tokens") ": missing");
    if (st) return st;
    if (n == 0 || n > QF_VOCAB_MAX_TOKENS)
        return qf_fail(err, QF_E_INPUT, KEY("tokens") ": %llu tokens (expected 1..%u)", (unsigned long long)n,
                       QF_VOCAB_MAX_TOKENS);
    v->n_tokens = (uint32_t)n;
    return read_str_array(arr, n, KEY("tokens"), &v->tokens, err);
}

/* An optional per-token numeric array whose length must equal the token count. */
static qf_status read_per_token(const qf_gguf *g, const char *key, qf_gguf_vtype elem, uint32_t n_tokens,
                                const void **arr, qf_error *err) {
    uint64_t n;
    *arr = NULL;
    qf_status st = qf_gguf_get_arr(g, key, elem, arr, &n, err);
    if (st == QF_E_NOTFOUND) { qf_error_clear(err); *arr = NULL; return QF_OK; }
    if (st) return st;
    if (n != n_tokens)
        return qf_fail(err, QF_E_INPUT, "%s: %llu entries for %u tokens", key, (unsigned long long)n, n_tokens);
    return QF_OK;
}

static qf_status read_scores_types(const qf_gguf *g, qf_vocab *v, qf_error *err) {
    const void *scores, *types;
    qf_status st = read_per_token(g, KEY("scores"), QF_GGUF_F32, v->n_tokens, &scores, err);
    if (!st) st = read_per_token(g, KEY("token_type"), QF_GGUF_I32, v->n_tokens, &types, err);
    if (st) return st;
    if (!(v->types = qf_malloc_n(v->n_tokens, sizeof *v->types))) return oom(err, KEY("token_type"));
    if (scores) {
        if (!(v->scores = qf_malloc_n(v->n_tokens, sizeof *v->scores))) return oom(err, KEY("scores"));
        memcpy(v->scores, scores, (size_t)v->n_tokens * sizeof *v->scores);
    }
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        /* without token types llama.cpp treats every token as NORMAL */
        int32_t t = QF_TOK_NORMAL;
        if (types) memcpy(&t, (const uint8_t *)types + (size_t)i * 4, 4);
        if (t < 0 || t > QF_TOK_BYTE)
            return qf_fail(err, QF_E_INPUT, KEY("token_type") ": token %u has type %d (expected 0..6)", i, (int)t);
        v->types[i] = t;
    }
    return QF_OK;
}

static qf_status read_merges(const qf_gguf *g, qf_vocab *v, qf_error *err) {
    const void *arr;
    uint64_t n;
    qf_status st = qf_gguf_get_arr(g, KEY("merges"), QF_GGUF_STRING, &arr, &n, err);
    if (st == QF_E_NOTFOUND) { qf_error_clear(err); return QF_OK; }
    if (st) return st;
    v->n_merges = n;
    return read_str_array(arr, n, KEY("merges"), &v->merges, err);
}

static qf_status read_id(const qf_gguf *g, const char *key, uint32_t n_tokens, int64_t *id, qf_error *err) {
    qf_status st = qf_gguf_get_i64(g, key, id, err);
    if (st == QF_E_NOTFOUND) { qf_error_clear(err); *id = -1; return QF_OK; }
    if (st) return st;
    if (*id < 0 || *id >= n_tokens)
        return qf_fail(err, QF_E_INPUT, "%s: id %lld is outside the %u tokens", key, (long long)*id, n_tokens);
    return QF_OK;
}

static qf_status read_flag(const qf_gguf *g, const char *key, int8_t *flag, qf_error *err) {
    bool b;
    qf_status st = qf_gguf_get_bool(g, key, &b, err);
    if (st == QF_E_NOTFOUND) { qf_error_clear(err); *flag = -1; return QF_OK; }
    if (st) return st;
    *flag = b;
    return QF_OK;
}

static qf_status read_specials(const qf_gguf *g, qf_vocab *v, qf_error *err) {
    struct { const char *key; int64_t *id; } ids[] = {
        { KEY("bos_token_id"), &v->bos_id }, { KEY("eos_token_id"), &v->eos_id },
        { KEY("unknown_token_id"), &v->unk_id }, { KEY("seperator_token_id"), &v->sep_id },
        { KEY("padding_token_id"), &v->pad_id }, { KEY("mask_token_id"), &v->mask_id },
        { KEY("eot_token_id"), &v->eot_id }, { KEY("eom_token_id"), &v->eom_id },
    };
    struct { const char *key; int8_t *flag; } flags[] = {
        { KEY("add_bos_token"), &v->add_bos }, { KEY("add_eos_token"), &v->add_eos },
        { KEY("add_sep_token"), &v->add_sep }, { KEY("add_space_prefix"), &v->add_space_prefix },
    };
    qf_status st = QF_OK;
    for (size_t i = 0; i < QF_ARRAY_LEN(ids) && !st; i++) st = read_id(g, ids[i].key, v->n_tokens, ids[i].id, err);
    for (size_t i = 0; i < QF_ARRAY_LEN(flags) && !st; i++) st = read_flag(g, flags[i].key, flags[i].flag, err);
    return st;
}

static qf_status read_chat_template(const qf_gguf *g, qf_vocab *v, qf_error *err) {
    const char *s;
    qf_status st = qf_gguf_get_str(g, "tokenizer.chat_template", &s, err);
    if (st == QF_E_NOTFOUND) { qf_error_clear(err); return QF_OK; }
    if (st) return st;
    return (v->chat_template = strdup(s)) ? QF_OK : oom(err, "tokenizer.chat_template");
}

qf_status qf_vocab_load_gguf(const qf_gguf *g, qf_vocab *out, qf_error *err) {
    vocab_init(out);
    qf_status st = read_name(g, KEY("model"), out->model, sizeof out->model, true, err);
    if (!st) st = read_name(g, KEY("pre"), out->pre, sizeof out->pre, false, err);
    if (!st) st = read_tokens(g, out, err);
    if (!st) st = read_scores_types(g, out, err);
    if (!st) st = read_merges(g, out, err);
    if (!st) st = read_specials(g, out, err);
    if (!st) st = read_chat_template(g, out, err);
    if (st) qf_vocab_free(out);
    return st;
}
