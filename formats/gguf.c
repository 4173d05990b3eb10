/*
 * gguf.c — GGUF v3 reader (validating, over mmap or memory) and streaming writer.
 * Byte layout: see gguf.h. Facts follow llama.cpp's ggml/src/gguf.cpp, which is the reader our output
 * must satisfy: empty keys, nested arrays written by us, tensor names >= 64 bytes, and non-contiguous
 * tensor offsets are all refused there, so the writer never produces them.
 *
 * Reader rule: every count read from the file is checked against the bytes that remain before anything
 * is allocated for it, so a short file can never make us allocate more than a small multiple of its size.
 */
#include "gguf.h"
#include "formats/digest.h"
#include "formats/gguf_split.h"
#include "outfile.h"
#include "formats/infile.h"
#include "kernels/qtypes.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c copies little-endian file values directly; a big-endian port needs byte swaps"
#endif

#define GGUF_MAX_NAME 64          /* llama.cpp's GGML_MAX_NAME: tensor names must be shorter */
#define GGUF_MAX_NEST 8           /* arrays of arrays deeper than this are refused (stack bound) */
#define GGUF_KV_MIN_BYTES 13      /* u64 key length + u32 type + 1-byte value */
#define GGUF_TENSOR_MIN_BYTES 32  /* u64 name length + u32 n_dims + one u64 ne + u32 type + u64 offset */
#define GGUF_WRITE_BUF (1u << 20)

/* ---- value types ------------------------------------------------------------------------------- */

static const char *vtype_name(uint32_t t) {
    static const char *const names[QF_GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return t < QF_GGUF_VTYPE_COUNT ? names[t] : "invalid";
}

/* Bytes of one packed scalar; 0 for string and array, whose size is variable. */
static uint64_t vtype_size(uint32_t t) {
    static const uint8_t sizes[QF_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < QF_GGUF_VTYPE_COUNT ? sizes[t] : 0;
}

/* The fewest bytes one element of type t can occupy on disk (bounds element counts). */
static uint64_t vtype_min_bytes(uint32_t t) {
    if (t == QF_GGUF_STRING) return 8;
    if (t == QF_GGUF_ARRAY) return 12;
    return vtype_size(t);
}

static bool vtype_is_int(uint32_t t) {
    return t == QF_GGUF_U8 || t == QF_GGUF_I8 || t == QF_GGUF_U16 || t == QF_GGUF_I16 || t == QF_GGUF_U32 ||
           t == QF_GGUF_I32 || t == QF_GGUF_U64 || t == QF_GGUF_I64;
}

static bool vtype_is_signed(uint32_t t) {
    return t == QF_GGUF_I8 || t == QF_GGUF_I16 || t == QF_GGUF_I32 || t == QF_GGUF_I64;
}

/* ---- arena: all reader metadata lives here and is freed at once --------------------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
} arena_chunk;

typedef struct arena {
    arena_chunk *head;
} arena;

static void *arena_alloc(arena *a, uint64_t size) {
    uint64_t need;
    if (!qf_pad_ok(size, 16, &need) || need > SIZE_MAX / 2) return NULL;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = QF_MAX((size_t)need, (size_t)64 << 10);
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += (size_t)need;
    return p;
}

static void arena_free(arena *a) {
    for (arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

/* ---- name index: open addressing over borrowed C strings (keys, tensor names) -------------------- */

typedef struct name_index {
    const char **names; /* names[i] for entry i */
    size_t n, names_cap;
    uint32_t *slot;     /* entry index + 1; 0 = empty */
    size_t mask;        /* slot count - 1 (power of two) */
} name_index;

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static long index_find(const name_index *ix, const char *name) {
    if (!ix->slot) return -1;
    for (size_t i = (size_t)hash_name(name) & ix->mask;; i = (i + 1) & ix->mask) {
        uint32_t e = ix->slot[i];
        if (e == 0) return -1;
        if (strcmp(ix->names[e - 1], name) == 0) return (long)(e - 1);
    }
}

static bool index_rehash(name_index *ix, size_t slots) {
    uint32_t *s = calloc(slots, sizeof *s);
    if (!s) return false;
    free(ix->slot);
    ix->slot = s;
    ix->mask = slots - 1;
    for (size_t e = 0; e < ix->n; e++) {
        size_t i = (size_t)hash_name(ix->names[e]) & ix->mask;
        while (s[i]) i = (i + 1) & ix->mask;
        s[i] = (uint32_t)(e + 1);
    }
    return true;
}

/* Adds `name` as entry ix->n. The caller checked it is absent. Keeps the load factor under 1/2. */
static bool index_add(name_index *ix, const char *name) {
    if (ix->n >= UINT32_MAX - 1) return false;
    if (ix->n == ix->names_cap) {
        size_t cap = ix->names_cap ? ix->names_cap * 2 : 16;
        const char **nn = realloc(ix->names, cap * sizeof *nn);
        if (!nn) return false;
        ix->names = nn;
        ix->names_cap = cap;
    }
    ix->names[ix->n++] = name;
    size_t slots = ix->slot ? ix->mask + 1 : 32;
    while (slots / 2 < ix->n) slots *= 2;
    if (!ix->slot || slots != ix->mask + 1) return index_rehash(ix, slots);
    size_t i = (size_t)hash_name(name) & ix->mask;
    while (ix->slot[i]) i = (i + 1) & ix->mask;
    ix->slot[i] = (uint32_t)ix->n;
    return true;
}

static void index_free(name_index *ix) {
    free(ix->names);
    free(ix->slot);
    memset(ix, 0, sizeof *ix);
}

/* ---- reader ------------------------------------------------------------------------------------ */

struct qf_gguf {
    char *label;
    const uint8_t *base;  /* whole file */
    uint64_t len;
    void *map;            /* non-NULL when we own an mmap of map_len bytes */
    size_t map_len;
    uint32_t version, alignment;
    uint64_t data_offset; /* absolute */
    uint64_t info_off, info_end; /* tensor-info section [info_off, info_end) */
    qf_gguf_kv *kv;
    size_t n_kv;
    qf_gguf_tensor *t;
    size_t n_t;
    name_index kv_idx, t_idx;
    arena a;
    /* A split set (qf_gguf_open of a first part): each part as a file of its own, parts[0] the first.
     * The set borrows parts[0]'s keys and file-level facts and owns only its tensor list and index. */
    qf_gguf **parts;
    size_t n_parts;
};

/* Parse cursor. `what`/`name` say which key or tensor is being read, for messages. */
typedef struct rd {
    qf_gguf *g;
    uint64_t pos;
    qf_error *err;
    const char *what; /* "key", "tensor" or NULL */
    const char *name; /* NULL until the name itself has been read */
    uint64_t index;
} rd;

static QF_PRINTF(3, 4) qf_status bad(rd *r, qf_status st, const char *fmt, ...) {
    char msg[512], ctx[200] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->what && r->name) snprintf(ctx, sizeof ctx, "%s '%.160s': ", r->what, r->name);
    else if (r->what) snprintf(ctx, sizeof ctx, "%s #%llu: ", r->what, (unsigned long long)r->index);
    return qf_fail(r->err, st, "%s: %s%s", r->g->label, ctx, msg);
}

static uint64_t rd_left(const rd *r) { return r->g->len - r->pos; }

static qf_status rd_need(rd *r, uint64_t n, const char *what) {
    if (qf_range_in(r->pos, n, r->g->len)) return QF_OK;
    return bad(r, QF_E_INPUT, "truncated: %s needs %llu bytes at offset %llu, only %llu remain", what,
               (unsigned long long)n, (unsigned long long)r->pos, (unsigned long long)rd_left(r));
}

static qf_status rd_u32(rd *r, uint32_t *v, const char *what) {
    qf_status st = rd_need(r, 4, what);
    if (st != QF_OK) return st;
    memcpy(v, r->g->base + r->pos, 4);
    r->pos += 4;
    return QF_OK;
}

static qf_status rd_u64(rd *r, uint64_t *v, const char *what) {
    qf_status st = rd_need(r, 8, what);
    if (st != QF_OK) return st;
    memcpy(v, r->g->base + r->pos, 8);
    r->pos += 8;
    return QF_OK;
}

/* A string's bytes, borrowed from the file (not NUL-terminated). */
static qf_status rd_str_raw(rd *r, const uint8_t **p, uint64_t *len, const char *what) {
    qf_status st = rd_u64(r, len, what);
    if (st != QF_OK) return st;
    if (*len > rd_left(r))
        return bad(r, QF_E_INPUT, "%s length %llu exceeds the %llu bytes left in the file", what,
                   (unsigned long long)*len, (unsigned long long)rd_left(r));
    *p = r->g->base + r->pos;
    r->pos += *len;
    return QF_OK;
}

/* A string copied into the arena with a terminating NUL. */
static qf_status rd_str(rd *r, qf_gguf_str *s, const char *what) {
    const uint8_t *p = NULL; /* initialised only to quiet -O3's maybe-uninitialized analysis */
    uint64_t len = 0;
    qf_status st = rd_str_raw(r, &p, &len, what);
    if (st != QF_OK) return st;
    char *copy = arena_alloc(&r->g->a, len + 1);
    if (!copy) return bad(r, QF_E_NOMEM, "out of memory copying a %s of %llu bytes", what, (unsigned long long)len);
    memcpy(copy, p, (size_t)len);
    copy[len] = '\0';
    s->ptr = copy;
    s->len = len;
    return QF_OK;
}

/* Names are looked up as C strings, so an embedded NUL would make two different names collide. */
static qf_status rd_name(rd *r, qf_gguf_str *s, const char *what) {
    qf_status st = rd_str(r, s, what);
    if (st != QF_OK) return st;
    if (strlen(s->ptr) != s->len)
        return bad(r, QF_E_INPUT, "%s contains a NUL byte at position %zu", what, strlen(s->ptr));
    return QF_OK;
}

static qf_status check_bools(rd *r, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1) return bad(r, QF_E_INPUT, "bool value %u at element %llu is not 0 or 1", p[i], (unsigned long long)i);
    }
    return QF_OK;
}

static qf_status rd_vtype(rd *r, uint32_t *t, const char *what) {
    qf_status st = rd_u32(r, t, what);
    if (st != QF_OK) return st;
    if (*t >= QF_GGUF_VTYPE_COUNT)
        return bad(r, QF_E_INPUT, "%s %u is not a valid value type (expected 0..%d)", what, *t, QF_GGUF_VTYPE_COUNT - 1);
    return QF_OK;
}

/* Reads an array header (elem type, count) and checks the count against the remaining bytes. */
static qf_status rd_array_head(rd *r, uint32_t *et, uint64_t *n) {
    qf_status st = rd_vtype(r, et, "array element type");
    if (st == QF_OK) st = rd_u64(r, n, "array length");
    if (st != QF_OK) return st;
    uint64_t need;
    if (!qf_mul_ok(*n, vtype_min_bytes(*et), &need) || need > rd_left(r))
        return bad(r, QF_E_INPUT, "array of %llu %s elements needs at least %llu bytes per element, only %llu bytes remain",
                   (unsigned long long)*n, vtype_name(*et), (unsigned long long)vtype_min_bytes(*et),
                   (unsigned long long)rd_left(r));
    return QF_OK;
}

/* Validates (and skips) n elements of type et that are themselves not kept (inside nested arrays). */
static qf_status skip_elems(rd *r, uint32_t et, uint64_t n, unsigned depth) {
    qf_status st = QF_OK;
    if (et == QF_GGUF_ARRAY && depth >= GGUF_MAX_NEST)
        return bad(r, QF_E_INPUT, "arrays nested more than %d levels deep", GGUF_MAX_NEST);
    for (uint64_t i = 0; i < n && st == QF_OK && et == QF_GGUF_STRING; i++) {
        const uint8_t *p;
        uint64_t len;
        st = rd_str_raw(r, &p, &len, "string element");
    }
    for (uint64_t i = 0; i < n && st == QF_OK && et == QF_GGUF_ARRAY; i++) {
        uint32_t sub;
        uint64_t m;
        st = rd_array_head(r, &sub, &m);
        if (st == QF_OK) st = skip_elems(r, sub, m, depth + 1);
    }
    if (et != QF_GGUF_STRING && et != QF_GGUF_ARRAY) {
        /* rd_array_head proved n * size fits in what remains */
        const uint8_t *p = r->g->base + r->pos;
        r->pos += n * vtype_size(et);
        if (et == QF_GGUF_BOOL) st = check_bools(r, p, n);
    }
    return st;
}

static qf_status rd_array(rd *r, qf_gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    qf_status st = rd_array_head(r, &et, &n);
    if (st != QF_OK) return st;
    kv->arr_type = (qf_gguf_vtype)et;
    kv->n = n;
    kv->v.arr = NULL;
    if (et == QF_GGUF_ARRAY) return skip_elems(r, et, n, 1);
    if (et == QF_GGUF_STRING) {
        qf_gguf_str *s = arena_alloc(&r->g->a, n * sizeof *s); /* n <= left/8: justified by the file */
        if (!s) return bad(r, QF_E_NOMEM, "out of memory for %llu strings", (unsigned long long)n);
        for (uint64_t i = 0; i < n && st == QF_OK; i++) st = rd_str(r, &s[i], "string element");
        kv->v.arr = s;
        return st;
    }
    uint64_t bytes = n * vtype_size(et);
    /* Copied so that callers get naturally aligned elements, which the file does not guarantee. */
    void *copy = arena_alloc(&r->g->a, bytes);
    if (!copy) return bad(r, QF_E_NOMEM, "out of memory for an array of %llu bytes", (unsigned long long)bytes);
    memcpy(copy, r->g->base + r->pos, (size_t)bytes);
    r->pos += bytes;
    kv->v.arr = copy;
    return et == QF_GGUF_BOOL ? check_bools(r, copy, n) : QF_OK;
}

/* Scalars: unsigned integers in v.u64, signed in v.i64, F32/F64 in v.f64, bool in v.b. */
static qf_status rd_scalar(rd *r, qf_gguf_kv *kv) {
    uint64_t size = vtype_size(kv->type);
    qf_status st = rd_need(r, size, "value");
    if (st != QF_OK) return st;
    const uint8_t *p = r->g->base + r->pos;
    r->pos += size;
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; double d;
    switch (kv->type) {
    case QF_GGUF_U8: memcpy(&u8, p, 1); kv->v.u64 = u8; break;
    case QF_GGUF_I8: memcpy(&i8, p, 1); kv->v.i64 = i8; break;
    case QF_GGUF_U16: memcpy(&u16, p, 2); kv->v.u64 = u16; break;
    case QF_GGUF_I16: memcpy(&i16, p, 2); kv->v.i64 = i16; break;
    case QF_GGUF_U32: memcpy(&u32, p, 4); kv->v.u64 = u32; break;
    case QF_GGUF_I32: memcpy(&i32, p, 4); kv->v.i64 = i32; break;
    case QF_GGUF_U64: memcpy(&kv->v.u64, p, 8); break;
    case QF_GGUF_I64: memcpy(&kv->v.i64, p, 8); break;
    case QF_GGUF_F32: memcpy(&f, p, 4); kv->v.f64 = f; break;
    case QF_GGUF_F64: memcpy(&d, p, 8); kv->v.f64 = d; break;
    case QF_GGUF_BOOL:
        if (p[0] > 1) return bad(r, QF_E_INPUT, "bool value %u is not 0 or 1", p[0]);
        kv->v.b = p[0] != 0;
        break;
    default: return bad(r, QF_E_INTERNAL, "scalar read of type %s", vtype_name(kv->type));
    }
    return QF_OK;
}

static qf_status rd_kv(rd *r, qf_gguf_kv *kv) {
    qf_gguf_str key;
    qf_status st = rd_name(r, &key, "key");
    if (st != QF_OK) return st;
    if (key.len == 0) return bad(r, QF_E_INPUT, "key is empty");
    r->name = key.ptr;
    if (index_find(&r->g->kv_idx, key.ptr) >= 0) return bad(r, QF_E_INPUT, "duplicate key");
    kv->key = key.ptr;
    uint32_t t;
    st = rd_vtype(r, &t, "value type");
    if (st != QF_OK) return st;
    kv->type = (qf_gguf_vtype)t;
    kv->arr_type = kv->type;
    kv->n = 1;
    if (t == QF_GGUF_ARRAY) st = rd_array(r, kv);
    else if (t == QF_GGUF_STRING) st = rd_str(r, &kv->v.str, "string value");
    else st = rd_scalar(r, kv);
    if (st == QF_OK && !index_add(&r->g->kv_idx, kv->key)) st = bad(r, QF_E_NOMEM, "out of memory indexing keys");
    return st;
}

static qf_status rd_header(rd *r, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic;
    qf_status st = rd_u32(r, &magic, "magic");
    if (st != QF_OK) return st;
    if (magic != QF_GGUF_MAGIC)
        return bad(r, QF_E_INPUT, "bad magic 0x%08x (expected 0x%08x, \"GGUF\")", magic, QF_GGUF_MAGIC);
    st = rd_u32(r, &r->g->version, "version");
    if (st != QF_OK) return st;
    uint32_t v = r->g->version;
    if ((v & 0xFFFFu) == 0 && v != 0)
        return bad(r, QF_E_UNSUPPORTED, "version %u looks byte-swapped: big-endian GGUF is not supported", v);
    if (v == 1) return bad(r, QF_E_UNSUPPORTED, "version 1 (GGUFv1) is no longer supported; expected version 2 or 3");
    if (v != 2 && v != 3) return bad(r, QF_E_INPUT, "unsupported version %u (expected 2 or 3)", v);
    st = rd_u64(r, n_tensors, "n_tensors");
    if (st == QF_OK) st = rd_u64(r, n_kv, "n_kv");
    if (st != QF_OK) return st;
    uint64_t need_t, need_kv, need;
    if (!qf_mul_ok(*n_tensors, GGUF_TENSOR_MIN_BYTES, &need_t) || need_t > rd_left(r))
        return bad(r, QF_E_INPUT, "n_tensors %llu needs at least %llu bytes each, only %llu bytes remain",
                   (unsigned long long)*n_tensors, (unsigned long long)GGUF_TENSOR_MIN_BYTES,
                   (unsigned long long)rd_left(r));
    if (!qf_mul_ok(*n_kv, GGUF_KV_MIN_BYTES, &need_kv) || !qf_add_ok(need_t, need_kv, &need) || need > rd_left(r))
        return bad(r, QF_E_INPUT, "n_kv %llu needs at least %llu bytes each, only %llu bytes remain after the tensor infos",
                   (unsigned long long)*n_kv, (unsigned long long)GGUF_KV_MIN_BYTES,
                   (unsigned long long)(rd_left(r) - need_t));
    return QF_OK;
}

static qf_status rd_kvs(rd *r, uint64_t n_kv) {
    qf_gguf *g = r->g;
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv); /* n_kv <= file size / 13 */
    if (!g->kv) return bad(r, QF_E_NOMEM, "out of memory for %llu keys", (unsigned long long)n_kv);
    qf_status st = QF_OK;
    r->what = "key";
    for (uint64_t i = 0; i < n_kv && st == QF_OK; i++) {
        r->index = i;
        r->name = NULL;
        uint64_t start = r->pos;
        st = rd_kv(r, &g->kv[i]);
        g->kv[i].rec_off = start;
        g->kv[i].rec_len = r->pos - start;
        if (st == QF_OK) g->n_kv++;
    }
    r->what = NULL;
    return st;
}

static qf_status check_alignment(rd *r) {
    qf_gguf *g = r->g;
    g->alignment = QF_GGUF_DEFAULT_ALIGNMENT;
    long i = index_find(&g->kv_idx, "general.alignment");
    if (i < 0) return QF_OK;
    const qf_gguf_kv *kv = &g->kv[i];
    r->what = "key";
    r->name = kv->key;
    if (kv->type != QF_GGUF_U32)
        return bad(r, QF_E_INPUT, "alignment must be of type u32, found %s", vtype_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return bad(r, QF_E_INPUT, "alignment %llu is not a power of two", (unsigned long long)a);
    g->alignment = (uint32_t)a;
    r->what = NULL;
    return QF_OK;
}

static qf_status rd_shape(rd *r, qf_gguf_tensor *t) {
    qf_status st = rd_u32(r, &t->n_dims, "n_dims");
    if (st != QF_OK) return st;
    if (t->n_dims < 1 || t->n_dims > QF_GGUF_MAX_DIMS)
        return bad(r, QF_E_INPUT, "n_dims %u is outside 1..%d", t->n_dims, QF_GGUF_MAX_DIMS);
    uint64_t total = 1;
    for (uint32_t d = 0; d < QF_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        st = rd_u64(r, &t->ne[d], "dimension");
        if (st != QF_OK) return st;
        if (t->ne[d] == 0) return bad(r, QF_E_INPUT, "ne[%u] is 0 (expected > 0)", d);
        /* ggml keeps ne as int64, so the element count must stay below INT64_MAX */
        if (!qf_mul_ok(total, t->ne[d], &total) || total > (uint64_t)INT64_MAX)
            return bad(r, QF_E_INPUT, "element count overflows at ne[%u] = %llu", d, (unsigned long long)t->ne[d]);
    }
    return QF_OK;
}

static qf_status tensor_nbytes(rd *r, qf_gguf_tensor *t) {
    const qf_qtype_traits *tr = qf_qtype_get(t->type);
    if (!tr) return bad(r, QF_E_INPUT, "type id %u is not a known tensor type (unknown or removed)", t->type);
    if (t->ne[0] % tr->blck != 0)
        return bad(r, QF_E_INPUT, "row length ne[0] = %llu is not a multiple of the %s block size %u",
                   (unsigned long long)t->ne[0], tr->name, tr->blck);
    uint64_t bytes;
    bool ok = qf_qtype_row_bytes(tr, t->ne[0], &bytes);
    for (int d = 1; d < QF_GGUF_MAX_DIMS && ok; d++) ok = qf_mul_ok(bytes, t->ne[d], &bytes);
    if (!ok) return bad(r, QF_E_INPUT, "byte size of the %s tensor overflows", tr->name);
    t->nbytes = bytes;
    return QF_OK;
}

static qf_status rd_tensor(rd *r, qf_gguf_tensor *t) {
    qf_gguf_str name;
    qf_status st = rd_name(r, &name, "tensor name");
    if (st != QF_OK) return st;
    r->name = name.ptr;
    if (name.len >= GGUF_MAX_NAME)
        return bad(r, QF_E_INPUT, "name is %llu bytes long (llama.cpp allows at most %d)",
                   (unsigned long long)name.len, GGUF_MAX_NAME - 1);
    if (index_find(&r->g->t_idx, name.ptr) >= 0) return bad(r, QF_E_INPUT, "duplicate tensor name");
    t->name = name.ptr;
    st = rd_shape(r, t);
    if (st == QF_OK) st = rd_u32(r, &t->type, "type");
    if (st == QF_OK) st = tensor_nbytes(r, t);
    if (st == QF_OK) st = rd_u64(r, &t->offset, "offset");
    if (st == QF_OK && !index_add(&r->g->t_idx, t->name)) st = bad(r, QF_E_NOMEM, "out of memory indexing tensors");
    return st;
}

static qf_status rd_tensors(rd *r, uint64_t n_tensors) {
    qf_gguf *g = r->g;
    g->t = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->t); /* n <= file size / 32 */
    if (!g->t) return bad(r, QF_E_NOMEM, "out of memory for %llu tensors", (unsigned long long)n_tensors);
    qf_status st = QF_OK;
    r->what = "tensor";
    g->info_off = r->pos;
    for (uint64_t i = 0; i < n_tensors && st == QF_OK; i++) {
        r->index = i;
        r->name = NULL;
        st = rd_tensor(r, &g->t[i]);
        if (st == QF_OK) g->n_t++;
    }
    g->info_end = r->pos;
    r->what = NULL;
    return st;
}

/* llama.cpp requires offset_i == padded end of tensor i-1, so holes and overlaps are both errors. */
static qf_status place_data(rd *r) {
    qf_gguf *g = r->g;
    g->data_offset = r->pos;
    if (g->n_t > 0 && !qf_pad_ok(r->pos, g->alignment, &g->data_offset))
        return bad(r, QF_E_INPUT, "data section offset overflows");
    uint64_t expect = 0;
    r->what = "tensor";
    for (size_t i = 0; i < g->n_t; i++) {
        qf_gguf_tensor *t = &g->t[i];
        r->name = t->name;
        if (t->offset % g->alignment != 0)
            return bad(r, QF_E_INPUT, "offset %llu is not a multiple of the alignment %u",
                       (unsigned long long)t->offset, g->alignment);
        if (t->offset != expect)
            return bad(r, QF_E_INPUT, "offset %llu is not contiguous: expected %llu (end of the previous tensor, padded)",
                       (unsigned long long)t->offset, (unsigned long long)expect);
        uint64_t abs;
        if (!qf_add_ok(g->data_offset, t->offset, &abs) || !qf_range_in(abs, t->nbytes, g->len))
            return bad(r, QF_E_INPUT, "data at file offset %llu + %llu bytes extends past the end of the file (%llu bytes)",
                       (unsigned long long)g->data_offset + (unsigned long long)t->offset,
                       (unsigned long long)t->nbytes, (unsigned long long)g->len);
        t->data = g->base + abs;
        /* in range of the file, so the sum cannot overflow; padding may end past EOF (last tensor) */
        if (!qf_pad_ok(t->offset + t->nbytes, g->alignment, &expect))
            return bad(r, QF_E_INPUT, "padded data size overflows");
    }
    r->what = NULL;
    return QF_OK;
}

static qf_status parse(qf_gguf *g, qf_error *err) {
    rd r = {.g = g, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    qf_status st = rd_header(&r, &n_tensors, &n_kv);
    if (st == QF_OK) st = rd_kvs(&r, n_kv);
    if (st == QF_OK) st = check_alignment(&r);
    if (st == QF_OK) st = rd_tensors(&r, n_tensors);
    if (st == QF_OK) st = place_data(&r);
    return st;
}

static qf_gguf *gguf_new(const char *label) {
    qf_gguf *g = calloc(1, sizeof *g);
    if (g && !(g->label = qf_strndup(label, strlen(label)))) {
        free(g);
        g = NULL;
    }
    return g;
}

qf_status qf_gguf_open_mem(const char *label, const uint8_t *buf, uint64_t len, qf_gguf **out, qf_error *err) {
    *out = NULL;
    qf_gguf *g = gguf_new(label);
    if (!g) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", label);
    static const uint8_t empty[1];
    g->base = buf ? buf : empty;
    g->len = buf ? len : 0;
    qf_status st = parse(g, err);
    if (st != QF_OK) {
        qf_gguf_close(g);
        return st;
    }
    *out = g;
    return QF_OK;
}

qf_status qf_gguf_open_file(const char *path, qf_gguf **out, qf_error *err) {
    *out = NULL;
    int fd;
    uint64_t size;
    qf_status st = qf_infile_open(path, &fd, &size, err);
    if (st != QF_OK) return st;
    void *map = NULL;
    if (size > 0) st = qf_infile_map(path, fd, size, &map, err);
    close(fd); /* the mapping keeps the file alive */
    if (st == QF_OK) st = qf_gguf_open_mem(path, map, size, out, err);
    if (st != QF_OK) {
        qf_infile_unmap(map, size);
        return st;
    }
    (*out)->map = map;
    (*out)->map_len = (size_t)size;
    return QF_OK;
}

/* ---- split sets (llama.cpp's layout, formats/gguf_split.h) --------------------------------------
 * The first part names the set: split.count parts found by name as llama.cpp finds them
 * (llama_split_path), each checked to be part k of the same set before its tensors join the set's. */

/* An integer key as a u64; false when absent or not an integer (a split key of another type). */
static bool split_key(const qf_gguf *g, const char *key, int64_t *v) {
    const qf_gguf_kv *kv = qf_gguf_find_kv(g, key);
    if (!kv || !vtype_is_int(kv->type)) return false;
    *v = vtype_is_signed(kv->type) ? kv->v.i64 : (int64_t)kv->v.u64;
    return true;
}

static const qf_gguf_str *set_id(const qf_gguf *g) {
    const qf_gguf_kv *kv = qf_gguf_find_kv(g, QF_SPLIT_KEY_SET);
    return kv && kv->type == QF_GGUF_STRING ? &kv->v.str : NULL;
}

/* Part k of n must say so, and belong to the set the first part describes. */
static qf_status check_part(const qf_gguf *first, const qf_gguf *p, uint32_t k, uint32_t n, qf_error *err) {
    int64_t no = -1, count = -1, total = -1, want_total = -1;
    split_key(first, QF_SPLIT_KEY_TENSORS, &want_total);
    if (!split_key(p, QF_SPLIT_KEY_NO, &no) || !split_key(p, QF_SPLIT_KEY_COUNT, &count))
        return qf_fail(err, QF_E_INPUT, "%s: not a part of a split set (no %s/%s), yet %s names it as part %u of %u",
                       p->label, QF_SPLIT_KEY_NO, QF_SPLIT_KEY_COUNT, first->label, k + 1, n);
    if (count != n)
        return qf_fail(err, QF_E_INPUT, "%s: part of another set: %s %lld, %s has %u parts", p->label,
                       QF_SPLIT_KEY_COUNT, (long long)count, first->label, n);
    if (no != k)
        return qf_fail(err, QF_E_INPUT, "%s: %s is %lld, expected %u (parts out of order: the name says part %u)",
                       p->label, QF_SPLIT_KEY_NO, (long long)no, k, k + 1);
    if (split_key(p, QF_SPLIT_KEY_TENSORS, &total) && total != want_total)
        return qf_fail(err, QF_E_INPUT, "%s: part of another set: %s %lld, %s says %lld", p->label,
                       QF_SPLIT_KEY_TENSORS, (long long)total, first->label, (long long)want_total);
    const qf_gguf_str *a = set_id(first), *b = set_id(p);
    if ((a || b) && (!a || !b || a->len != b->len || memcmp(a->ptr, b->ptr, a->len) != 0))
        return qf_fail(err, QF_E_INPUT, "%s: part of another set: %s differs from %s's (parts of different runs)",
                       p->label, QF_SPLIT_KEY_SET, first->label);
    return QF_OK;
}

/* The set's tensor list: every part's, in part order, each name once in the whole set. */
static qf_status join_tensors(qf_gguf *set, qf_error *err) {
    size_t n = 0;
    for (size_t k = 0; k < set->n_parts; k++) n += set->parts[k]->n_t;
    set->t = qf_malloc_n(QF_MAX(n, (size_t)1), sizeof *set->t);
    if (!set->t) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", set->label);
    for (size_t k = 0; k < set->n_parts; k++) {
        const qf_gguf *p = set->parts[k];
        for (size_t i = 0; i < p->n_t; i++) {
            long dup = index_find(&set->t_idx, p->t[i].name);
            if (dup >= 0) {
                size_t j = 0, at = (size_t)dup;
                while (at >= set->parts[j]->n_t) at -= set->parts[j++]->n_t;
                return qf_fail(err, QF_E_INPUT, "%s: tensor '%.200s' is also in %s: a set holds each tensor once",
                               p->label, p->t[i].name, set->parts[j]->label);
            }
            set->t[set->n_t++] = p->t[i];
            if (!index_add(&set->t_idx, p->t[i].name)) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", set->label);
        }
    }
    int64_t total = -1;
    if (split_key(set->parts[0], QF_SPLIT_KEY_TENSORS, &total) && total != (int64_t)n)
        return qf_fail(err, QF_E_INPUT, "%s: %s is %lld, the %zu parts hold %zu tensors", set->label,
                       QF_SPLIT_KEY_TENSORS, (long long)total, set->n_parts, n);
    return QF_OK;
}

/* Opens parts 2..n beside the first and joins them into one model. */
static qf_status open_set(qf_gguf *first, uint32_t n, qf_gguf **out, qf_error *err) {
    size_t prefix_len;
    uint32_t k, count;
    if (!qf_split_parse_name(first->label, &prefix_len, &k, &count) || k != 0 || count != n)
        return qf_fail(err, QF_E_INPUT, "%s: the first part of a set of %u (%s 0) must be named PREFIX-00001-of-%05u.gguf, "
                       "the name the other parts are found by", first->label, n, QF_SPLIT_KEY_NO, n);
    qf_gguf *set = gguf_new(first->label);
    qf_gguf **parts = qf_calloc_n(n, sizeof *parts);
    if (!set || !parts) {
        free(parts);
        qf_gguf_close(set);
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", first->label);
    }
    set->parts = parts;
    parts[0] = first;
    set->n_parts = 1;
    qf_status st = QF_OK;
    for (k = 1; st == QF_OK && k < n; k++) {
        char *path = qf_split_part_path(first->label, prefix_len, k, n);
        st = path ? qf_gguf_open_file(path, &parts[k], err) : qf_fail(err, QF_E_NOMEM, "out of memory");
        if (st == QF_E_NOTFOUND)
            qf_fail(err, QF_E_NOTFOUND, "%s: part %u of %u is missing (%s names a set of %u parts)", path, k + 1, n,
                    first->label, n);
        free(path);
        if (st == QF_OK) set->n_parts++;
        if (st == QF_OK) st = check_part(first, parts[k], k, n, err);
    }
    if (st == QF_OK) st = join_tensors(set, err);
    if (st != QF_OK) {
        qf_gguf_close(set);
        return st;
    }
    /* file-level facts and keys are the first part's (where llama.cpp reads the model's metadata) */
    set->base = first->base;
    set->len = first->len;
    set->version = first->version;
    set->alignment = first->alignment;
    set->data_offset = first->data_offset;
    set->info_off = first->info_off;
    set->info_end = first->info_end;
    set->kv = first->kv;
    set->n_kv = first->n_kv;
    set->kv_idx = first->kv_idx;
    *out = set;
    return QF_OK;
}

qf_status qf_gguf_open(const char *path, qf_gguf **out, qf_error *err) {
    qf_gguf *g = NULL;
    qf_status st = qf_gguf_open_file(path, &g, err);
    int64_t count = 1, no = 0;
    if (st != QF_OK || !split_key(g, QF_SPLIT_KEY_COUNT, &count) || count <= 1) {
        *out = g;
        return st;
    }
    if (count > QF_SPLIT_MAX_PARTS || !split_key(g, QF_SPLIT_KEY_NO, &no) || no != 0) {
        st = count > QF_SPLIT_MAX_PARTS
                 ? qf_fail(err, QF_E_INPUT, "%s: %s %lld is out of range (a u16)", path, QF_SPLIT_KEY_COUNT, (long long)count)
                 : qf_fail(err, QF_E_INPUT, "%s: part %lld of a split set of %lld: open the set by its first part "
                           "(%s 0), as llama.cpp does", path, (long long)no + 1, (long long)count, QF_SPLIT_KEY_NO);
        qf_gguf_close(g);
        return st;
    }
    return open_set(g, (uint32_t)count, out, err);
}

size_t qf_gguf_n_parts(const qf_gguf *g) { return g->parts ? g->n_parts : 1; }

const qf_gguf *qf_gguf_part(const qf_gguf *g, size_t k) {
    if (!g->parts) return k == 0 ? g : NULL;
    return k < g->n_parts ? g->parts[k] : NULL;
}

size_t qf_gguf_tensor_part(const qf_gguf *g, size_t i) {
    size_t k = 0;
    while (g->parts && k + 1 < g->n_parts && i >= g->parts[k]->n_t) i -= g->parts[k++]->n_t;
    return k;
}

void qf_gguf_close(qf_gguf *g) {
    if (!g) return;
    if (g->parts) {
        for (size_t k = 0; k < g->n_parts; k++) qf_gguf_close(g->parts[k]);
        free(g->parts);
        index_free(&g->t_idx);
        free(g->t);
        free(g->label);
        free(g);
        return;
    }
    qf_infile_unmap(g->map, g->map_len);
    arena_free(&g->a);
    index_free(&g->kv_idx);
    index_free(&g->t_idx);
    free(g->kv);
    free(g->t);
    free(g->label);
    free(g);
}

uint32_t qf_gguf_version(const qf_gguf *g) { return g->version; }
uint32_t qf_gguf_alignment(const qf_gguf *g) { return g->alignment; }
uint64_t qf_gguf_data_offset(const qf_gguf *g) { return g->data_offset; }
size_t qf_gguf_n_kv(const qf_gguf *g) { return g->n_kv; }
const qf_gguf_kv *qf_gguf_kv_at(const qf_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t qf_gguf_n_tensors(const qf_gguf *g) { return g->n_t; }
const qf_gguf_tensor *qf_gguf_tensor_at(const qf_gguf *g, size_t i) { return i < g->n_t ? &g->t[i] : NULL; }
const char *qf_gguf_label(const qf_gguf *g) { return g->label; }

const uint8_t *qf_gguf_file_bytes(const qf_gguf *g, uint64_t *len) {
    *len = g->len;
    return g->base;
}

void qf_gguf_drop_pages(const qf_gguf *g, const void *p, uint64_t n) {
    for (size_t k = 0; g->parts && k < g->n_parts; k++) {
        const qf_gguf *part = g->parts[k];
        if ((const uint8_t *)p >= part->base && (const uint8_t *)p < part->base + part->len) qf_gguf_drop_pages(part, p, n);
    }
    /* a range outside this file's mapping (a copy in memory) must never be madvised: its pages would
     * come back zeroed */
    if (!g->map || n == 0 || (const uint8_t *)p < g->base || n > g->len || (uint64_t)((const uint8_t *)p - g->base) > g->len - n)
        return;
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096, lo = (uintptr_t)p, hi = lo + (uintptr_t)n;
    uintptr_t a = (lo + page - 1) / page * page, b = hi / page * page;
    /* MADV_DONTNEED on a read-only private file mapping only forgets pages: they re-read from the file */
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void qf_gguf_tensor_info_span(const qf_gguf *g, uint64_t *off, uint64_t *len) {
    *off = g->info_off;
    *len = g->info_end - g->info_off;
}

const qf_gguf_kv *qf_gguf_find_kv(const qf_gguf *g, const char *key) {
    long i = index_find(&g->kv_idx, key);
    return i < 0 ? NULL : &g->kv[i];
}

const qf_gguf_tensor *qf_gguf_find_tensor(const qf_gguf *g, const char *name) {
    long i = index_find(&g->t_idx, name);
    return i < 0 ? NULL : &g->t[i];
}

/* ---- typed getters ----------------------------------------------------------------------------- */

static qf_status find_for_get(const qf_gguf *g, const char *key, const qf_gguf_kv **kv, qf_error *err) {
    *kv = qf_gguf_find_kv(g, key);
    return *kv ? QF_OK : qf_fail(err, QF_E_NOTFOUND, "%s: key '%s' is absent", g->label, key);
}

static qf_status type_mismatch(const qf_gguf *g, const qf_gguf_kv *kv, const char *expected, qf_error *err) {
    return qf_fail(err, QF_E_INPUT, "%s: key '%s': expected %s, found %s", g->label, kv->key, expected,
                   kv->type == QF_GGUF_ARRAY ? "an array" : vtype_name(kv->type));
}

/* An integer KV as a signed 128-bit-free pair: value fits in [lo, hi] test done by the callers. */
static bool kv_int_in(const qf_gguf_kv *kv, int64_t lo, uint64_t hi) {
    if (!vtype_is_int(kv->type)) return false;
    if (vtype_is_signed(kv->type)) return kv->v.i64 >= lo && (kv->v.i64 < 0 || (uint64_t)kv->v.i64 <= hi);
    return kv->v.u64 <= hi;
}

qf_status qf_gguf_get_u32(const qf_gguf *g, const char *key, uint32_t *v, qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (!kv_int_in(kv, 0, UINT32_MAX)) return type_mismatch(g, kv, "an integer that fits in u32", err);
    *v = (uint32_t)(vtype_is_signed(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64);
    return QF_OK;
}

qf_status qf_gguf_get_i64(const qf_gguf *g, const char *key, int64_t *v, qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (!kv_int_in(kv, INT64_MIN, INT64_MAX)) return type_mismatch(g, kv, "an integer that fits in i64", err);
    *v = vtype_is_signed(kv->type) ? kv->v.i64 : (int64_t)kv->v.u64;
    return QF_OK;
}

qf_status qf_gguf_get_f32(const qf_gguf *g, const char *key, float *v, qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (kv->type != QF_GGUF_F32 && kv->type != QF_GGUF_F64) return type_mismatch(g, kv, "f32 or f64", err);
    *v = (float)kv->v.f64;
    return QF_OK;
}

qf_status qf_gguf_get_bool(const qf_gguf *g, const char *key, bool *v, qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (kv->type != QF_GGUF_BOOL) return type_mismatch(g, kv, "bool", err);
    *v = kv->v.b;
    return QF_OK;
}

qf_status qf_gguf_get_str(const qf_gguf *g, const char *key, const char **v, qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (kv->type != QF_GGUF_STRING) return type_mismatch(g, kv, "string", err);
    *v = kv->v.str.ptr;
    return QF_OK;
}

qf_status qf_gguf_get_arr(const qf_gguf *g, const char *key, qf_gguf_vtype elem, const void **arr, uint64_t *n,
                          qf_error *err) {
    const qf_gguf_kv *kv;
    qf_status st = find_for_get(g, key, &kv, err);
    if (st != QF_OK) return st;
    if (kv->type != QF_GGUF_ARRAY || kv->arr_type != elem) {
        char want[48], found[48];
        snprintf(want, sizeof want, "an array of %s", vtype_name(elem));
        snprintf(found, sizeof found, "%s%s", kv->type == QF_GGUF_ARRAY ? "an array of " : "",
                 vtype_name(kv->type == QF_GGUF_ARRAY ? kv->arr_type : kv->type));
        return qf_fail(err, QF_E_INPUT, "%s: key '%s': expected %s, found %s", g->label, key, want, found);
    }
    *arr = kv->v.arr;
    *n = kv->n;
    return QF_OK;
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val; /* serialized value as it follows the type on disk */
    size_t val_len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[QF_GGUF_MAX_DIMS];
    uint64_t nbytes, offset; /* offset relative to the data section */
} wtensor;

enum { W_DEFINE, W_DATA, W_FAILED };

struct qf_gguf_writer {
    qf_outfile *out;
    char *path;
    int state;
    wkv *kv;
    size_t n_kv, cap_kv;
    name_index kv_idx;
    wtensor *t;
    size_t n_t, cap_t;
    name_index t_idx;
    uint32_t alignment;
    bool counting;     /* emit() only counts (header size for the reservation) */
    uint64_t counted;
    uint8_t *buf;      /* GGUF_WRITE_BUF bytes of pending output */
    size_t buf_len;
    size_t cur;        /* tensor whose data is being written */
    uint64_t cur_done; /* bytes of it written so far */
    qf_status failed;
    qf_error fail_err;
    /* integrity digests (integrity.h) */
    bool digests;         /* write the qforge.integrity.* keys (default on) */
    bool hashing;         /* emit() also feeds hdr_md: the bytes the header digest covers */
    uint64_t emitted;     /* bytes emitted so far = file offset of the next byte */
    EVP_MD_CTX *hdr_md, *t_md;
    uint8_t hdr_sha[32];
    uint8_t (*t_sha)[32]; /* one digest per tensor, final once the tensor's last byte arrived */
    uint64_t hdr_hex_off; /* file offset of header_sha256's 64 hex digits */
    uint64_t t_arr_off;   /* file offset of tensor_sha256's first element (its u64 length) */
    struct split_out *split; /* a split output (qf_gguf_writer_open_split), else NULL */
};

static void split_discard(struct split_out *s);
static void split_free(struct split_out *s);

/* Growable byte string for building serialized values. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s, uint64_t len) {
    put_u64(b, len);
    put(b, s, (size_t)len);
}

static qf_status wfail(qf_gguf_writer *w, qf_error *err, qf_status st, const char *fmt, ...) QF_PRINTF(4, 5);
static qf_status wfail(qf_gguf_writer *w, qf_error *err, qf_status st, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qf_fail(err, st, "%s: %s", w->path, msg);
}

/* A failure in the data phase is final: the temp file is removed and finish() reports this error. */
static qf_status wfatal(qf_gguf_writer *w, qf_error *err, qf_status st) {
    if (w->failed == QF_OK) {
        w->failed = st;
        if (err) w->fail_err = *err;
        else qf_fail(&w->fail_err, st, "%s: write failed", w->path);
        qf_outfile_abort(w->out);
        w->out = NULL;
        if (w->split) split_discard(w->split);
        w->state = W_FAILED;
    }
    if (err) *err = w->fail_err;
    return w->failed;
}

static qf_status check_defining(qf_gguf_writer *w, const char *what, const char *name, qf_error *err) {
    if (w->state == W_DEFINE) return QF_OK;
    return wfail(w, err, QF_E_USAGE, "%s '%s' after begin_data()", what, name);
}

/* Takes ownership of b->p on success. */
static qf_status put_kv(qf_gguf_writer *w, const char *key, uint32_t type, bytes *b, qf_error *err) {
    qf_status st = check_defining(w, "setting key", key, err);
    if (st == QF_OK && !key[0]) st = wfail(w, err, QF_E_USAGE, "empty key");
    if (st == QF_OK && b->oom) st = wfail(w, err, QF_E_NOMEM, "out of memory for key '%s'", key);
    if (st != QF_OK) {
        free(b->p);
        return st;
    }
    long i = index_find(&w->kv_idx, key);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = b->p;
        w->kv[i].val_len = b->len;
        return QF_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(b->p);
            return wfail(w, err, QF_E_NOMEM, "out of memory for key '%s'", key);
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = qf_strndup(key, strlen(key));
    if (!k || !index_add(&w->kv_idx, k)) {
        free(k);
        free(b->p);
        return wfail(w, err, QF_E_NOMEM, "out of memory for key '%s'", key);
    }
    w->kv[w->n_kv++] = (wkv){.key = k, .type = type, .val = b->p, .val_len = b->len};
    return QF_OK;
}

static qf_status set_scalar(qf_gguf_writer *w, const char *key, uint32_t type, const void *v, qf_error *err) {
    bytes b = {0};
    put(&b, v, (size_t)vtype_size(type));
    return put_kv(w, key, type, &b, err);
}

qf_status qf_gguf_set_u32(qf_gguf_writer *w, const char *key, uint32_t v, qf_error *err) {
    return set_scalar(w, key, QF_GGUF_U32, &v, err);
}
qf_status qf_gguf_set_i32(qf_gguf_writer *w, const char *key, int32_t v, qf_error *err) {
    return set_scalar(w, key, QF_GGUF_I32, &v, err);
}
qf_status qf_gguf_set_u64(qf_gguf_writer *w, const char *key, uint64_t v, qf_error *err) {
    return set_scalar(w, key, QF_GGUF_U64, &v, err);
}
qf_status qf_gguf_set_f32(qf_gguf_writer *w, const char *key, float v, qf_error *err) {
    return set_scalar(w, key, QF_GGUF_F32, &v, err);
}
qf_status qf_gguf_set_bool(qf_gguf_writer *w, const char *key, bool v, qf_error *err) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, QF_GGUF_BOOL, &b, err);
}

qf_status qf_gguf_set_str(qf_gguf_writer *w, const char *key, const char *v, qf_error *err) {
    bytes b = {0};
    put_str(&b, v, strlen(v));
    return put_kv(w, key, QF_GGUF_STRING, &b, err);
}

qf_status qf_gguf_set_arr(qf_gguf_writer *w, const char *key, qf_gguf_vtype elem, const void *data, uint64_t n,
                          qf_error *err) {
    uint64_t size = vtype_size(elem), total;
    if (size == 0)
        return wfail(w, err, QF_E_USAGE, "key '%s': set_arr takes scalar elements, not %s", key, vtype_name(elem));
    if (!qf_mul_ok(n, size, &total) || total > SIZE_MAX)
        return wfail(w, err, QF_E_USAGE, "key '%s': array of %llu elements is too large", key, (unsigned long long)n);
    if (elem == QF_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return wfail(w, err, QF_E_USAGE, "key '%s': bool element %llu is not 0 or 1", key, (unsigned long long)i);
    }
    bytes b = {0};
    put_u32(&b, elem);
    put_u64(&b, n);
    put(&b, data, (size_t)total);
    return put_kv(w, key, QF_GGUF_ARRAY, &b, err);
}

qf_status qf_gguf_set_arr_str(qf_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                              qf_error *err) {
    bytes b = {0};
    put_u32(&b, QF_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i], strlen(strs[i]));
    return put_kv(w, key, QF_GGUF_ARRAY, &b, err);
}

/* Serializes one scalar from the reader's union convention (see rd_scalar). */
static void put_kv_scalar(bytes *b, const qf_gguf_kv *kv) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; } x;
    switch (kv->type) {
    case QF_GGUF_U8: x.u8 = (uint8_t)kv->v.u64; put(b, &x, 1); break;
    case QF_GGUF_I8: x.i8 = (int8_t)kv->v.i64; put(b, &x, 1); break;
    case QF_GGUF_U16: x.u16 = (uint16_t)kv->v.u64; put(b, &x, 2); break;
    case QF_GGUF_I16: x.i16 = (int16_t)kv->v.i64; put(b, &x, 2); break;
    case QF_GGUF_U32: x.u32 = (uint32_t)kv->v.u64; put(b, &x, 4); break;
    case QF_GGUF_I32: x.i32 = (int32_t)kv->v.i64; put(b, &x, 4); break;
    case QF_GGUF_U64: put(b, &kv->v.u64, 8); break;
    case QF_GGUF_I64: put(b, &kv->v.i64, 8); break;
    case QF_GGUF_F32: x.f = (float)kv->v.f64; put(b, &x, 4); break;
    case QF_GGUF_F64: put(b, &kv->v.f64, 8); break;
    case QF_GGUF_BOOL: x.u8 = kv->v.b ? 1 : 0; put(b, &x, 1); break;
    default: b->oom = true; break; /* unreachable: callers pass scalars only */
    }
}

qf_status qf_gguf_set_kv(qf_gguf_writer *w, const qf_gguf_kv *kv, qf_error *err) {
    if ((uint32_t)kv->type >= QF_GGUF_VTYPE_COUNT)
        return wfail(w, err, QF_E_USAGE, "key '%s': invalid value type %u", kv->key, (unsigned)kv->type);
    if (kv->type == QF_GGUF_STRING) {
        bytes b = {0};
        put_str(&b, kv->v.str.ptr, kv->v.str.len);
        return put_kv(w, kv->key, QF_GGUF_STRING, &b, err);
    }
    if (kv->type != QF_GGUF_ARRAY) {
        bytes b = {0};
        put_kv_scalar(&b, kv);
        return put_kv(w, kv->key, kv->type, &b, err);
    }
    if (kv->arr_type == QF_GGUF_ARRAY || (uint32_t)kv->arr_type >= QF_GGUF_VTYPE_COUNT)
        return wfail(w, err, QF_E_UNSUPPORTED, "key '%s': arrays of arrays cannot be written (llama.cpp refuses them)",
                     kv->key);
    if (kv->arr_type != QF_GGUF_STRING) return qf_gguf_set_arr(w, kv->key, kv->arr_type, kv->v.arr, kv->n, err);
    bytes b = {0};
    const qf_gguf_str *s = kv->v.arr;
    put_u32(&b, QF_GGUF_STRING);
    put_u64(&b, kv->n);
    for (uint64_t i = 0; i < kv->n; i++) put_str(&b, s[i].ptr, s[i].len);
    return put_kv(w, kv->key, QF_GGUF_ARRAY, &b, err);
}

static qf_status check_shape(qf_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             uint64_t *nbytes, qf_error *err) {
    const qf_qtype_traits *tr = qf_qtype_get(type);
    if (!tr) return wfail(w, err, QF_E_USAGE, "tensor '%s': unknown type id %u", name, type);
    if (n_dims < 1 || n_dims > QF_GGUF_MAX_DIMS)
        return wfail(w, err, QF_E_USAGE, "tensor '%s': n_dims %u is outside 1..%d", name, n_dims, QF_GGUF_MAX_DIMS);
    uint64_t total = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0) return wfail(w, err, QF_E_USAGE, "tensor '%s': ne[%u] is 0", name, d);
        if (!qf_mul_ok(total, ne[d], &total) || total > (uint64_t)INT64_MAX)
            return wfail(w, err, QF_E_USAGE, "tensor '%s': element count overflows", name);
    }
    if (ne[0] % tr->blck != 0)
        return wfail(w, err, QF_E_USAGE, "tensor '%s': row length %llu is not a multiple of the %s block size %u",
                     name, (unsigned long long)ne[0], tr->name, tr->blck);
    bool ok = qf_qtype_row_bytes(tr, ne[0], nbytes);
    for (uint32_t d = 1; d < n_dims && ok; d++) ok = qf_mul_ok(*nbytes, ne[d], nbytes);
    if (!ok) return wfail(w, err, QF_E_USAGE, "tensor '%s': byte size overflows", name);
    return QF_OK;
}

qf_status qf_gguf_add_tensor(qf_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *ne, qf_error *err) {
    qf_status st = check_defining(w, "adding tensor", name, err);
    if (st != QF_OK) return st;
    size_t len = strlen(name);
    if (len == 0 || len >= GGUF_MAX_NAME)
        return wfail(w, err, QF_E_USAGE, "tensor name '%s' must be 1..%d bytes long", name, GGUF_MAX_NAME - 1);
    if (index_find(&w->t_idx, name) >= 0) return wfail(w, err, QF_E_USAGE, "duplicate tensor name '%s'", name);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    st = check_shape(w, name, type, n_dims, ne, &t.nbytes, err);
    if (st != QF_OK) return st;
    memcpy(t.ne, ne, n_dims * sizeof *ne);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return wfail(w, err, QF_E_NOMEM, "out of memory for tensor '%s'", name);
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = qf_strndup(name, len);
    if (!t.name || !index_add(&w->t_idx, t.name)) {
        free(t.name);
        return wfail(w, err, QF_E_NOMEM, "out of memory for tensor '%s'", name);
    }
    w->t[w->n_t++] = t;
    return QF_OK;
}

qf_status qf_gguf_writer_open(const char *path, qf_gguf_writer **out, qf_error *err) {
    *out = NULL;
    qf_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = qf_strndup(path, strlen(path)))) {
        free(w);
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    }
    qf_status st = qf_outfile_open(path, &w->out, err);
    if (st != QF_OK) {
        free(w->path);
        free(w);
        return st;
    }
    w->digests = true;
    *out = w;
    return QF_OK;
}

qf_status qf_gguf_writer_set_digests(qf_gguf_writer *w, bool on, qf_error *err) {
    qf_status st = check_defining(w, "setting option", "digests", err);
    if (st == QF_OK) w->digests = on;
    return st;
}

static void writer_free(qf_gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    index_free(&w->kv_idx);
    index_free(&w->t_idx);
    free(w->kv);
    free(w->t);
    free(w->buf);
    free(w->path);
    free(w->t_sha);
    EVP_MD_CTX_free(w->hdr_md);
    EVP_MD_CTX_free(w->t_md);
    free(w);
}

static qf_status flush(qf_gguf_writer *w, qf_error *err) {
    if (w->buf_len == 0) return QF_OK;
    qf_status st = qf_outfile_write(w->out, w->buf, w->buf_len, err);
    w->buf_len = 0;
    return st == QF_OK ? QF_OK : wfatal(w, err, st);
}

static qf_status emit(qf_gguf_writer *w, const void *p, uint64_t n, qf_error *err) {
    if (w->counting) {
        w->counted += n;
        return QF_OK;
    }
    if (w->hashing && EVP_DigestUpdate(w->hdr_md, p, (size_t)n) != 1) {
        wfail(w, err, QF_E_INTERNAL, "SHA-256 update of the header digest failed");
        return wfatal(w, err, QF_E_INTERNAL);
    }
    w->emitted += n;
    if (w->buf_len + n > GGUF_WRITE_BUF) {
        qf_status st = flush(w, err);
        if (st != QF_OK) return st;
        if (n >= GGUF_WRITE_BUF) {
            st = qf_outfile_write(w->out, p, n, err);
            return st == QF_OK ? QF_OK : wfatal(w, err, st);
        }
    }
    memcpy(w->buf + w->buf_len, p, (size_t)n);
    w->buf_len += (size_t)n;
    return QF_OK;
}

static qf_status emit_zeros(qf_gguf_writer *w, uint64_t n, qf_error *err) {
    static const uint8_t zeros[256];
    qf_status st = QF_OK;
    while (n > 0 && st == QF_OK) {
        uint64_t k = QF_MIN(n, (uint64_t)sizeof zeros);
        st = emit(w, zeros, k, err);
        n -= k;
    }
    return st;
}

static qf_status emit_str(qf_gguf_writer *w, const char *s, qf_error *err) {
    uint64_t len = strlen(s);
    qf_status st = emit(w, &len, 8, err);
    return st == QF_OK ? emit(w, s, len, err) : st;
}

/* Remembers where the placeholder digests land, so finish() can patch them in place. */
static void note_digest_offsets(qf_gguf_writer *w, const char *key) {
    if (!strcmp(key, QF_INTEGRITY_KEY_HEADER)) w->hdr_hex_off = w->emitted + 8;    /* after the u64 length */
    if (!strcmp(key, QF_INTEGRITY_KEY_TENSORS)) w->t_arr_off = w->emitted + 4 + 8; /* after elem type, n */
}

/* Everything before the padding that starts the data section. When digests are on (and this is not
 * the counting pass) every byte the header digest covers also goes through hdr_md. */
static qf_status emit_header(qf_gguf_writer *w, qf_error *err) {
    bool hash = w->digests && !w->counting;
    uint32_t head[2] = {QF_GGUF_MAGIC, QF_GGUF_VERSION};
    uint64_t counts[2] = {w->n_t, w->n_kv};
    w->hashing = hash;
    qf_status st = emit(w, head, sizeof head, err);
    if (st == QF_OK) st = emit(w, counts, sizeof counts, err);
    for (size_t i = 0; i < w->n_kv && st == QF_OK; i++) {
        bool digest_key = qf_integrity_is_key(w->kv[i].key, 2);
        w->hashing = hash && !digest_key;
        st = emit_str(w, w->kv[i].key, err);
        if (st == QF_OK) st = emit(w, &w->kv[i].type, 4, err);
        if (st == QF_OK && hash && digest_key) note_digest_offsets(w, w->kv[i].key);
        if (st == QF_OK) st = emit(w, w->kv[i].val, w->kv[i].val_len, err);
    }
    w->hashing = hash;
    for (size_t i = 0; i < w->n_t && st == QF_OK; i++) {
        const wtensor *t = &w->t[i];
        st = emit_str(w, t->name, err);
        if (st == QF_OK) st = emit(w, &t->n_dims, 4, err);
        if (st == QF_OK) st = emit(w, t->ne, t->n_dims * sizeof t->ne[0], err);
        if (st == QF_OK) st = emit(w, &t->type, 4, err);
        if (st == QF_OK) st = emit(w, &t->offset, 8, err);
    }
    w->hashing = false;
    return st;
}

static qf_status choose_alignment(qf_gguf_writer *w, qf_error *err) {
    w->alignment = QF_GGUF_DEFAULT_ALIGNMENT;
    long i = index_find(&w->kv_idx, "general.alignment");
    if (i < 0) return QF_OK;
    uint32_t a = 0;
    if (w->kv[i].type == QF_GGUF_U32) memcpy(&a, w->kv[i].val, 4);
    if (w->kv[i].type != QF_GGUF_U32 || a == 0 || (a & (a - 1)) != 0)
        return wfail(w, err, QF_E_USAGE, "general.alignment must be a u32 power of two");
    w->alignment = a;
    return QF_OK;
}

/* Tensor offsets relative to the data section; returns the padded data size. */
static qf_status assign_offsets(qf_gguf_writer *w, uint64_t *data_size, qf_error *err) {
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (!qf_add_ok(off, w->t[i].nbytes, &off) || !qf_pad_ok(off, w->alignment, &off))
            return wfail(w, err, QF_E_USAGE, "total tensor data size overflows at tensor '%s'", w->t[i].name);
    }
    *data_size = off;
    return QF_OK;
}

/* Removes digest keys the caller set (e.g. copied from a file being rewritten): their values describe
 * other bytes, and the fresh ones must come last. The name index is rebuilt because it cannot delete. */
static qf_status strip_digest_keys(qf_gguf_writer *w, qf_error *err) {
    size_t kept = 0;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (qf_integrity_is_key(w->kv[i].key, 2)) {
            free(w->kv[i].key);
            free(w->kv[i].val);
        } else {
            w->kv[kept++] = w->kv[i];
        }
    }
    if (kept == w->n_kv) return QF_OK;
    w->n_kv = kept;
    index_free(&w->kv_idx);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!index_add(&w->kv_idx, w->kv[i].key)) return wfail(w, err, QF_E_NOMEM, "out of memory indexing keys");
    return QF_OK;
}

/* The five digest keys, last: the scheme, the two digests with all-zero hex placeholders of the final
 * length, and every tensor's name and type, so that a checker can match digests by name in a file
 * another tool has rewritten (reordered, re-encoded). */
static qf_status add_digest_keys(qf_gguf_writer *w, qf_error *err) {
    char zeros[QF_SHA256_HEX_LEN + 1];
    memset(zeros, '0', QF_SHA256_HEX_LEN);
    zeros[QF_SHA256_HEX_LEN] = '\0';
    qf_status st = qf_gguf_set_str(w, QF_INTEGRITY_KEY_SCHEME, QF_INTEGRITY_SCHEME, err);
    if (st == QF_OK) st = qf_gguf_set_str(w, QF_INTEGRITY_KEY_HEADER, zeros, err);
    if (st != QF_OK) return st;
    bytes b = {0}, names = {0};
    put_u32(&b, QF_GGUF_STRING);
    put_u64(&b, w->n_t);
    put_u32(&names, QF_GGUF_STRING);
    put_u64(&names, w->n_t);
    uint32_t *types = qf_malloc_n(w->n_t, sizeof *types);
    for (size_t i = 0; i < w->n_t; i++) {
        put_str(&b, zeros, QF_SHA256_HEX_LEN);
        put_str(&names, w->t[i].name, strlen(w->t[i].name));
        if (types) types[i] = w->t[i].type;
    }
    st = put_kv(w, QF_INTEGRITY_KEY_TENSORS, QF_GGUF_ARRAY, &b, err);
    if (st == QF_OK) st = put_kv(w, QF_INTEGRITY_KEY_NAMES, QF_GGUF_ARRAY, &names, err);
    else free(names.p);
    if (st == QF_OK && !types) st = wfail(w, err, QF_E_NOMEM, "out of memory for the digest keys");
    if (st == QF_OK) st = qf_gguf_set_arr(w, QF_INTEGRITY_KEY_TYPES, QF_GGUF_U32, types, w->n_t, err);
    free(types);
    return st;
}

static qf_status prepare_digests(qf_gguf_writer *w, qf_error *err) {
    if (!w->digests) return QF_OK;
    qf_status st = strip_digest_keys(w, err);
    if (st == QF_OK) st = add_digest_keys(w, err);
    if (st != QF_OK) return st;
    w->hdr_md = EVP_MD_CTX_new();
    w->t_md = EVP_MD_CTX_new();
    w->t_sha = qf_malloc_n(w->n_t, sizeof *w->t_sha);
    if (!w->hdr_md || !w->t_md || !w->t_sha) return wfail(w, err, QF_E_NOMEM, "out of memory for digests");
    if (EVP_DigestInit_ex(w->hdr_md, EVP_sha256(), NULL) != 1)
        return wfail(w, err, QF_E_INTERNAL, "SHA-256 initialisation failed");
    return QF_OK;
}

static qf_status split_begin(qf_gguf_writer *w, qf_error *err);

qf_status qf_gguf_begin_data(qf_gguf_writer *w, qf_error *err) {
    if (w->split) return split_begin(w, err);
    if (w->state != W_DEFINE) return wfail(w, err, QF_E_USAGE, "begin_data() called twice or after a failure");
    uint64_t data_size = 0, head, total;
    qf_status st = prepare_digests(w, err);
    if (st == QF_OK) st = choose_alignment(w, err);
    if (st == QF_OK) st = assign_offsets(w, &data_size, err);
    if (st != QF_OK) return st;
    w->counting = true;
    w->counted = 0;
    emit_header(w, err);
    w->counting = false;
    /* With no tensors there is no data section to align; gguf-py writes no padding then, and llama.cpp's
     * reader puts the data offset at the end of the header in that case. */
    uint64_t align = w->n_t ? w->alignment : 1;
    if (!qf_pad_ok(w->counted, align, &head) || !qf_add_ok(head, data_size, &total))
        return wfail(w, err, QF_E_USAGE, "output size overflows");
    w->buf = malloc(GGUF_WRITE_BUF);
    if (!w->buf) return wfail(w, err, QF_E_NOMEM, "out of memory for the write buffer");
    qf_outfile_reserve(w->out, total);
    w->state = W_DATA;
    st = emit_header(w, err);
    /* scheme 2: the padding before the data and the file's final length are part of the header digest */
    w->hashing = w->digests;
    if (st == QF_OK) st = emit_zeros(w, head - w->counted, err);
    w->hashing = false;
    if (st == QF_OK && w->digests && (EVP_DigestUpdate(w->hdr_md, &total, 8) != 1 ||
                                      EVP_DigestFinal_ex(w->hdr_md, w->hdr_sha, NULL) != 1)) {
        wfail(w, err, QF_E_INTERNAL, "SHA-256 of the header failed");
        st = wfatal(w, err, QF_E_INTERNAL);
    }
    w->cur = 0;
    w->cur_done = 0;
    return st;
}

/* Feeds one piece of the current tensor to its digest (the first piece starts it); with `pad` the
 * tensor's data is complete, its padding zeros are fed too and the digest ends (scheme 2 covers them). */
static qf_status hash_tensor_piece(qf_gguf_writer *w, const void *p, uint64_t k, uint64_t pad, bool last,
                                   qf_error *err) {
    static const uint8_t zeros[256];
    bool ok = true;
    if (w->cur_done == 0) ok = EVP_DigestInit_ex(w->t_md, EVP_sha256(), NULL) == 1;
    if (ok) ok = EVP_DigestUpdate(w->t_md, p, (size_t)k) == 1;
    for (uint64_t left = last ? pad : 0; ok && left > 0; left -= QF_MIN(left, (uint64_t)sizeof zeros))
        ok = EVP_DigestUpdate(w->t_md, zeros, (size_t)QF_MIN(left, (uint64_t)sizeof zeros)) == 1;
    if (ok && last) ok = EVP_DigestFinal_ex(w->t_md, w->t_sha[w->cur], NULL) == 1;
    if (ok) return QF_OK;
    wfail(w, err, QF_E_INTERNAL, "SHA-256 of tensor '%s' failed", w->t[w->cur].name);
    return wfatal(w, err, QF_E_INTERNAL);
}

static qf_status split_write(qf_gguf_writer *w, const uint8_t *p, uint64_t n, qf_error *err);

qf_status qf_gguf_write_tensor_data(qf_gguf_writer *w, const void *buf, uint64_t n, qf_error *err) {
    if (w->state == W_FAILED) return wfatal(w, err, w->failed);
    if (w->state != W_DATA) return wfail(w, err, QF_E_USAGE, "write_tensor_data() before begin_data()");
    if (w->split) return split_write(w, buf, n, err);
    const uint8_t *p = buf;
    qf_status st = QF_OK;
    while (n > 0 && st == QF_OK) {
        if (w->cur >= w->n_t) {
            wfail(w, err, QF_E_USAGE, "%llu bytes written past the end of the last declared tensor",
                  (unsigned long long)n);
            return wfatal(w, err, QF_E_USAGE);
        }
        const wtensor *t = &w->t[w->cur];
        uint64_t k = QF_MIN(n, t->nbytes - w->cur_done), padded = 0;
        qf_pad_ok(t->nbytes, w->alignment, &padded); /* cannot overflow: checked in assign_offsets */
        bool last = w->cur_done + k == t->nbytes;
        if (w->digests) st = hash_tensor_piece(w, p, k, padded - t->nbytes, last, err);
        if (st == QF_OK) st = emit(w, p, k, err);
        p += k;
        n -= k;
        w->cur_done += k;
        if (st == QF_OK && last) {
            st = emit_zeros(w, padded - t->nbytes, err);
            w->cur++;
            w->cur_done = 0;
        }
    }
    return st;
}

/* Overwrites the placeholders with the real digests: the header's, then every tensor's element of
 * tensor_sha256 (u64 length + 64 hex digits each, contiguous) in one write. */
static qf_status patch_digests(qf_gguf_writer *w, qf_error *err) {
    char hex[QF_SHA256_HEX_LEN + 1];
    qf_sha256_hex(w->hdr_sha, hex);
    qf_status st = qf_outfile_pwrite(w->out, hex, QF_SHA256_HEX_LEN, w->hdr_hex_off, err);
    const uint64_t rec = 8 + QF_SHA256_HEX_LEN;
    uint8_t *arr = st == QF_OK && w->n_t ? qf_malloc_n(w->n_t, rec) : NULL;
    if (st == QF_OK && w->n_t && !arr) st = wfail(w, err, QF_E_NOMEM, "out of memory patching digests");
    for (size_t i = 0; arr && i < w->n_t; i++) {
        uint64_t len = QF_SHA256_HEX_LEN;
        memcpy(arr + i * rec, &len, 8);
        qf_sha256_hex(w->t_sha[i], hex);
        memcpy(arr + i * rec + 8, hex, QF_SHA256_HEX_LEN);
    }
    if (arr) st = qf_outfile_pwrite(w->out, arr, w->n_t * rec, w->t_arr_off, err);
    free(arr);
    return st == QF_OK ? QF_OK : wfatal(w, err, st);
}

/* Everything but the rename: every tensor complete, digests patched, the data durable. *out is then the
 * sealed file, for the caller to commit or abort; w is freed either way. */
static qf_status writer_seal(qf_gguf_writer *w, qf_outfile **out, qf_error *err) {
    qf_status st = QF_OK;
    *out = NULL;
    if (w->state == W_DEFINE) st = qf_gguf_begin_data(w, err);
    if (st == QF_OK && w->state == W_FAILED) st = wfatal(w, err, w->failed);
    if (st == QF_OK && w->cur < w->n_t) {
        wfail(w, err, QF_E_USAGE, "tensor '%s' got %llu of %llu bytes (%zu of %zu tensors complete)", w->t[w->cur].name,
              (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].nbytes, w->cur, w->n_t);
        st = wfatal(w, err, QF_E_USAGE);
    }
    if (st == QF_OK) st = flush(w, err);
    if (st == QF_OK && w->digests) st = patch_digests(w, err);
    if (st == QF_OK && (st = qf_outfile_seal(w->out, err)) == QF_OK) {
        *out = w->out;
        w->out = NULL;
    }
    qf_outfile_abort(w->out);
    writer_free(w);
    return st;
}

static qf_status split_finish(qf_gguf_writer *w, qf_error *err);

qf_status qf_gguf_writer_finish(qf_gguf_writer *w, qf_error *err) {
    if (w->split) return split_finish(w, err);
    qf_outfile *f;
    qf_status st = writer_seal(w, &f, err);
    return st == QF_OK ? qf_outfile_commit(f, err) : st;
}

void qf_gguf_writer_abort(qf_gguf_writer *w) {
    if (!w) return;
    qf_outfile_abort(w->out);
    split_free(w->split);
    writer_free(w);
}

/* ---- split output (gguf_split.h) -------------------------------------------------------------------
 * A writer opened with qf_gguf_writer_open_split collects keys and tensors as any writer does but opens
 * no file itself; from begin_data on, the tensor bytes go to one part writer at a time. Part k is opened
 * when its first byte arrives and sealed (complete and durable, not yet under its name) after its last,
 * so memory and open descriptors stay those of one file; finish renames every part into place, and a
 * failure or abort removes them all: a failed run leaves no part behind and replaces no existing file. */

struct split_out {
    char *prefix;
    size_t prefix_len;
    uint32_t n_parts, only;   /* only: 0 = every part, k = part k (1-based) alone */
    uint32_t *part_of;        /* per tensor, in add order */
    size_t n_part_of;
    char set_hex[QF_SHA256_HEX_LEN + 1];
    qf_gguf_writer *cur;      /* the part being written, or NULL */
    uint32_t next;            /* the part being written, or the next to open */
    uint64_t left;            /* bytes the part being written still expects */
    qf_outfile **sealed;      /* n_parts slots: parts complete and durable */
};

static void split_discard(struct split_out *s) {
    qf_gguf_writer_abort(s->cur);
    s->cur = NULL;
    for (uint32_t k = 0; s->sealed && k < s->n_parts; k++) {
        qf_outfile_abort(s->sealed[k]);
        s->sealed[k] = NULL;
    }
}

static void split_free(struct split_out *s) {
    if (!s) return;
    split_discard(s);
    free(s->prefix);
    free(s->part_of);
    free(s->sealed);
    free(s);
}

qf_status qf_gguf_writer_open_split(const char *out, const qf_gguf_split *desc, qf_gguf_writer **w, qf_error *err) {
    *w = NULL;
    if (desc->n_parts < 1 || desc->n_parts > QF_SPLIT_MAX_PARTS || desc->only > desc->n_parts)
        return qf_fail(err, QF_E_USAGE, "%s: a split into %u parts, writing part %u, is not a split", out,
                       desc->n_parts, desc->only);
    qf_gguf_writer *x = calloc(1, sizeof *x);
    struct split_out *s = calloc(1, sizeof *s);
    if (x) x->split = s;
    if (s) {
        s->prefix_len = qf_split_prefix_len(out);
        s->prefix = qf_strndup(out, s->prefix_len);
        s->part_of = qf_malloc_n(QF_MAX(desc->n_tensors, (size_t)1), sizeof *s->part_of);
        s->sealed = qf_calloc_n(desc->n_parts, sizeof *s->sealed);
    }
    if (!x || !s || !(x->path = qf_strndup(out, strlen(out))) || !s->prefix || !s->part_of || !s->sealed) {
        free(x ? x->path : NULL);
        free(x);
        split_free(s);
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", out);
    }
    memcpy(s->part_of, desc->part_of, desc->n_tensors * sizeof *s->part_of);
    s->n_part_of = desc->n_tensors;
    s->n_parts = desc->n_parts;
    s->only = desc->only;
    x->digests = true;
    *w = x;
    return QF_OK;
}

bool qf_gguf_writer_wants(const qf_gguf_writer *w, size_t i) {
    return !w->split || !w->split->only || (i < w->split->n_part_of && w->split->part_of[i] == w->split->only - 1);
}

static bool md_record(EVP_MD_CTX *md, const char *key, uint32_t type, const void *val, size_t val_len) {
    uint64_t len = strlen(key);
    return EVP_DigestUpdate(md, &len, 8) == 1 && EVP_DigestUpdate(md, key, (size_t)len) == 1 &&
           EVP_DigestUpdate(md, &type, 4) == 1 && EVP_DigestUpdate(md, val, val_len) == 1;
}

/* qforge.split.set_sha256 (docs/integrity.md): the first part's records but split.no, the set identity
 * and the digests, in the order that part holds them (the model's keys, then split.count and
 * split.tensors.count), then each part's tensor count and tensor records. */
static qf_status split_set_id(qf_gguf_writer *w, qf_error *err) {
    struct split_out *s = w->split;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t d[32], rec[QF_SPLIT_TENSOR_RECORD_MAX];
    uint16_t count = (uint16_t)s->n_parts;
    int32_t total = (int32_t)w->n_t;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < w->n_kv; i++)
        if (!qf_split_set_skips_key(w->kv[i].key)) ok = md_record(md, w->kv[i].key, w->kv[i].type, w->kv[i].val, w->kv[i].val_len);
    ok = ok && md_record(md, QF_SPLIT_KEY_COUNT, QF_GGUF_U16, &count, 2) &&
         md_record(md, QF_SPLIT_KEY_TENSORS, QF_GGUF_I32, &total, 4);
    for (uint32_t k = 0, i = 0; ok && k < s->n_parts; k++) {
        uint64_t n = 0;
        for (size_t j = i; j < w->n_t && s->part_of[j] == k; j++) n++;
        ok = EVP_DigestUpdate(md, &n, 8) == 1;
        for (; ok && i < w->n_t && s->part_of[i] == k; i++) {
            const wtensor *t = &w->t[i];
            ok = EVP_DigestUpdate(md, rec, qf_split_tensor_record(t->name, t->n_dims, t->ne, t->type, rec)) == 1;
        }
    }
    ok = ok && EVP_DigestFinal_ex(md, d, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) return wfail(w, err, QF_E_INTERNAL, "SHA-256 of the split set's identity failed");
    qf_sha256_hex(d, s->set_hex);
    return QF_OK;
}

/* The layout must cover every tensor, in order, each part holding some; the model's own keys must not
 * claim a layout (split.* and the set identity are the parts' own). */
static qf_status split_check(qf_gguf_writer *w, qf_error *err) {
    struct split_out *s = w->split;
    if (s->n_part_of != w->n_t)
        return wfail(w, err, QF_E_USAGE, "the split layout covers %zu tensors, %zu were declared", s->n_part_of, w->n_t);
    for (size_t i = 0; i < w->n_t; i++) {
        uint32_t prev = i ? s->part_of[i - 1] : 0;
        if (s->part_of[i] != prev && s->part_of[i] != prev + 1)
            return wfail(w, err, QF_E_USAGE, "the split layout puts tensor '%s' in part %u after part %u", w->t[i].name,
                         s->part_of[i] + 1, prev + 1);
    }
    if (w->n_t ? s->part_of[w->n_t - 1] + 1 != s->n_parts : s->n_parts != 1)
        return wfail(w, err, QF_E_USAGE, "the split layout fills %u of its %u parts",
                     w->n_t ? s->part_of[w->n_t - 1] + 1 : 0, s->n_parts);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strncmp(w->kv[i].key, "split.", 6) || !strcmp(w->kv[i].key, QF_SPLIT_KEY_SET))
            return wfail(w, err, QF_E_USAGE, "key '%s' describes a split layout, which a split output writes itself",
                         w->kv[i].key);
    return QF_OK;
}

static uint64_t split_part_bytes(const qf_gguf_writer *w, uint32_t k) {
    uint64_t n = 0;
    for (size_t i = 0; i < w->n_t; i++) n += w->split->part_of[i] == k ? w->t[i].nbytes : 0;
    return n;
}

static qf_status split_begin(qf_gguf_writer *w, qf_error *err) {
    if (w->state != W_DEFINE) return wfail(w, err, QF_E_USAGE, "begin_data() called twice or after a failure");
    qf_status st = split_check(w, err);
    if (st == QF_OK) st = split_set_id(w, err);
    if (st != QF_OK) return st;
    w->split->next = w->split->only ? w->split->only - 1 : 0;
    w->split->left = split_part_bytes(w, w->split->next);
    w->state = W_DATA;
    return QF_OK;
}

/* Copies a collected record into a part writer as it is. */
static qf_status copy_record(qf_gguf_writer *p, const wkv *kv, qf_error *err) {
    bytes b = {0};
    put(&b, kv->val, kv->val_len);
    return put_kv(p, kv->key, kv->type, &b, err);
}

/* Part k's writer, through begin_data: the first part gets the model's keys; every part gets the
 * split keys (after the model's, as gguf-split appends them), the set identity and its tensors. */
static qf_status split_open_part(qf_gguf_writer *w, uint32_t k, qf_error *err) {
    struct split_out *s = w->split;
    char *path = qf_split_part_path(s->prefix, s->prefix_len, k, s->n_parts);
    if (!path) return wfail(w, err, QF_E_NOMEM, "out of memory");
    qf_gguf_writer *p = NULL;
    qf_status st = qf_gguf_writer_open(path, &p, err);
    free(path);
    if (st != QF_OK) return st;
    p->digests = w->digests;
    uint16_t no = (uint16_t)k, count = (uint16_t)s->n_parts;
    int32_t total = (int32_t)w->n_t;
    for (size_t i = 0; st == QF_OK && k == 0 && i < w->n_kv; i++) st = copy_record(p, &w->kv[i], err);
    if (st == QF_OK) st = set_scalar(p, QF_SPLIT_KEY_NO, QF_GGUF_U16, &no, err);
    if (st == QF_OK) st = set_scalar(p, QF_SPLIT_KEY_COUNT, QF_GGUF_U16, &count, err);
    if (st == QF_OK) st = set_scalar(p, QF_SPLIT_KEY_TENSORS, QF_GGUF_I32, &total, err);
    if (st == QF_OK) st = qf_gguf_set_str(p, QF_SPLIT_KEY_SET, s->set_hex, err);
    for (size_t i = 0; st == QF_OK && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (s->part_of[i] == k) st = qf_gguf_add_tensor(p, t->name, t->type, t->n_dims, t->ne, err);
    }
    if (st == QF_OK) st = qf_gguf_begin_data(p, err);
    if (st != QF_OK) {
        qf_gguf_writer_abort(p);
        return st;
    }
    s->cur = p;
    return QF_OK;
}

/* The part being written is complete: seal it and move to the next one (none after --only-split's). */
static qf_status split_seal_part(qf_gguf_writer *w, qf_error *err) {
    struct split_out *s = w->split;
    qf_gguf_writer *p = s->cur;
    s->cur = NULL;
    qf_status st = writer_seal(p, &s->sealed[s->next], err);
    s->next = s->only ? s->n_parts : s->next + 1;
    s->left = s->next < s->n_parts ? split_part_bytes(w, s->next) : 0;
    return st;
}

static qf_status split_write(qf_gguf_writer *w, const uint8_t *p, uint64_t n, qf_error *err) {
    struct split_out *s = w->split;
    qf_status st = QF_OK;
    while (n > 0 && st == QF_OK) {
        if (s->next >= s->n_parts) {
            wfail(w, err, QF_E_USAGE, "%llu bytes written past the end of the last tensor of the split", (unsigned long long)n);
            return wfatal(w, err, QF_E_USAGE);
        }
        if (!s->cur) st = split_open_part(w, s->next, err);
        uint64_t k = QF_MIN(n, s->left);
        if (st == QF_OK) st = qf_gguf_write_tensor_data(s->cur, p, k, err);
        p += k;
        n -= k;
        s->left -= k;
        if (st == QF_OK && s->left == 0) st = split_seal_part(w, err);
    }
    return st == QF_OK ? QF_OK : wfatal(w, err, st);
}

static qf_status split_finish(qf_gguf_writer *w, qf_error *err) {
    struct split_out *s = w->split;
    qf_status st = w->state == W_DEFINE ? split_begin(w, err) : QF_OK;
    if (st == QF_OK && w->state == W_FAILED) st = wfatal(w, err, w->failed);
    /* a part with no tensor data (a model without tensors) is still a file */
    while (st == QF_OK && s->next < s->n_parts && s->left == 0) {
        if (!s->cur) st = split_open_part(w, s->next, err);
        if (st == QF_OK) st = split_seal_part(w, err);
    }
    if (st == QF_OK && s->next < s->n_parts) {
        wfail(w, err, QF_E_USAGE, "part %u of %u got %llu bytes too few", s->next + 1, s->n_parts, (unsigned long long)s->left);
        st = QF_E_USAGE;
    }
    for (uint32_t k = 0; st == QF_OK && k < s->n_parts; k++) {
        if (!s->sealed[k]) continue;
        st = qf_outfile_commit(s->sealed[k], err);
        s->sealed[k] = NULL;
    }
    split_free(s);
    w->split = NULL;
    qf_gguf_writer_abort(w);
    return st;
}
