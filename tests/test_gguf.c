/*
 * test_gguf.c — GGUF reader and writer.
 *
 *   1. round trip: every value type, arrays of strings, many tensors of every known type and shape
 *   2. writer misuse: bad shapes, writes past the declared sizes, missing bytes, abort
 *   3. a catalogue of named malformed files, each with its expected status and message substring
 *   4. every truncation of valid files, and seeded mutation fuzzing (QF_FUZZ_SEED, QF_FUZZ_ITERS)
 *   5. the real GGUFs under ../shared (tokenizer vocabularies, llama.cpp's reference conversion)
 */
#include "testutil.h"
#include "formats/gguf.h"
#include "formats/integrity.h"
#include "kernels/qtypes.h"

#include <dirent.h>
#include <math.h>
#include <unistd.h>

/* ---- byte builder for handcrafted files ------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void b_put(buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort(); /* test harness: out of memory is fatal */
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void b_u8(buf *b, uint8_t v) { b_put(b, &v, 1); }
static void b_u32(buf *b, uint32_t v) { b_put(b, &v, 4); }
static void b_u64(buf *b, uint64_t v) { b_put(b, &v, 8); }
static void b_str(buf *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_zeros(buf *b, size_t n) {
    while (n--) b_u8(b, 0);
}

/* ---- 1. round trip ------------------------------------------------------------------------------ */

typedef struct rt_tensor {
    char name[64];
    uint32_t type, n_dims;
    uint64_t ne[4];
    uint64_t nbytes;
    uint8_t *data;
} rt_tensor;

static const uint8_t arr_u8[] = {0, 1, 255};
static const int8_t arr_i8[] = {-128, 0, 127};
static const uint16_t arr_u16[] = {0, 65535};
static const int16_t arr_i16[] = {-32768, 32767, 5};
static const uint32_t arr_u32[] = {0, 0xFFFFFFFFu, 42};
static const int32_t arr_i32[] = {INT32_MIN, -1, INT32_MAX};
static const float arr_f32[] = {-1.5f, 0.0f, 3.25e10f};
static const uint8_t arr_bool[] = {1, 0, 1, 1};
static const uint64_t arr_u64[] = {UINT64_MAX, 0};
static const int64_t arr_i64[] = {INT64_MIN, INT64_MAX, -7};
static const double arr_f64[] = {1e-300, -2.5};
static const char *const arr_str[] = {"<unk>", "", "héllo", "a b c"};

static const struct {
    const char *key;
    qf_gguf_vtype t;
    const void *p;
    uint64_t n;
} k_arrays[] = {
    {"arr.u8", QF_GGUF_U8, arr_u8, 3},     {"arr.i8", QF_GGUF_I8, arr_i8, 3},
    {"arr.u16", QF_GGUF_U16, arr_u16, 2},  {"arr.i16", QF_GGUF_I16, arr_i16, 3},
    {"arr.u32", QF_GGUF_U32, arr_u32, 3},  {"arr.i32", QF_GGUF_I32, arr_i32, 3},
    {"arr.f32", QF_GGUF_F32, arr_f32, 3},  {"arr.bool", QF_GGUF_BOOL, arr_bool, 4},
    {"arr.u64", QF_GGUF_U64, arr_u64, 2},  {"arr.i64", QF_GGUF_I64, arr_i64, 3},
    {"arr.f64", QF_GGUF_F64, arr_f64, 2},  {"arr.empty", QF_GGUF_U32, arr_u32, 0},
};

static uint64_t elem_size(qf_gguf_vtype t) {
    switch (t) {
    case QF_GGUF_U8: case QF_GGUF_I8: case QF_GGUF_BOOL: return 1;
    case QF_GGUF_U16: case QF_GGUF_I16: return 2;
    case QF_GGUF_U32: case QF_GGUF_I32: case QF_GGUF_F32: return 4;
    default: return 8;
    }
}

/* Random tensors over every type in the table, with shapes valid for that type. */
static size_t make_tensors(rt_tensor *ts, size_t max, uint64_t *seed) {
    size_t n = 0;
    for (size_t rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < qf_qtype_count() && n < max; i++) {
            const qf_qtype_traits *tr = qf_qtype_at(i);
            rt_tensor *t = &ts[n];
            snprintf(t->name, sizeof t->name, "blk.%zu.%s.weight", n, tr->name);
            t->type = tr->id;
            t->n_dims = 1 + (uint32_t)(qf_test_rand(seed) % 4);
            for (int d = 0; d < 4; d++) t->ne[d] = 1;
            t->ne[0] = tr->blck * (1 + qf_test_rand(seed) % 3);
            for (uint32_t d = 1; d < t->n_dims; d++) t->ne[d] = 1 + qf_test_rand(seed) % 3;
            uint64_t rb = 0;
            qf_qtype_row_bytes(tr, t->ne[0], &rb);
            t->nbytes = rb * t->ne[1] * t->ne[2] * t->ne[3];
            t->data = malloc(t->nbytes);
            for (uint64_t k = 0; k < t->nbytes; k++) t->data[k] = (uint8_t)qf_test_rand(seed);
            n++;
        }
    }
    return n;
}

static void write_kvs(qf_gguf_writer *w, qf_error *err, uint32_t alignment) {
    CHECK_OK(qf_gguf_set_str(w, "general.architecture", "llama", err), err);
    CHECK_OK(qf_gguf_set_u32(w, "s.u32", 7, err), err);
    CHECK_OK(qf_gguf_set_i32(w, "s.i32", -123456, err), err);
    CHECK_OK(qf_gguf_set_u64(w, "s.u64", UINT64_MAX - 1, err), err);
    CHECK_OK(qf_gguf_set_f32(w, "s.f32", 1e-5f, err), err);
    CHECK_OK(qf_gguf_set_bool(w, "s.bool", true, err), err);
    CHECK_OK(qf_gguf_set_str(w, "s.str", "", err), err);
    /* the remaining scalar types only exist through set_kv */
    qf_gguf_kv kv = {.key = "s.u8", .type = QF_GGUF_U8, .v.u64 = 200};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    kv = (qf_gguf_kv){.key = "s.i8", .type = QF_GGUF_I8, .v.i64 = -100};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    kv = (qf_gguf_kv){.key = "s.u16", .type = QF_GGUF_U16, .v.u64 = 60000};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    kv = (qf_gguf_kv){.key = "s.i16", .type = QF_GGUF_I16, .v.i64 = -30000};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    kv = (qf_gguf_kv){.key = "s.i64", .type = QF_GGUF_I64, .v.i64 = INT64_MIN};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    kv = (qf_gguf_kv){.key = "s.f64", .type = QF_GGUF_F64, .v.f64 = 3.141592653589793};
    CHECK_OK(qf_gguf_set_kv(w, &kv, err), err);
    for (size_t i = 0; i < QF_ARRAY_LEN(k_arrays); i++)
        CHECK_OK(qf_gguf_set_arr(w, k_arrays[i].key, k_arrays[i].t, k_arrays[i].p, k_arrays[i].n, err), err);
    CHECK_OK(qf_gguf_set_arr_str(w, "tokenizer.ggml.tokens", arr_str, QF_ARRAY_LEN(arr_str), err), err);
    CHECK_OK(qf_gguf_set_u32(w, "s.u32", 8, err), err); /* replace keeps the first position */
    if (alignment) CHECK_OK(qf_gguf_set_u32(w, "general.alignment", alignment, err), err);
}

static void check_kvs(const qf_gguf *g) {
    qf_error err = {0};
    const qf_gguf_kv *kv = qf_gguf_kv_at(g, 1);
    CHECK(kv && strcmp(kv->key, "s.u32") == 0 && kv->type == QF_GGUF_U32 && kv->v.u64 == 8);
    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f = 0;
    bool b = false;
    const char *s = NULL;
    CHECK_OK(qf_gguf_get_u32(g, "s.u32", &u32, &err), &err);
    CHECK(u32 == 8);
    CHECK_OK(qf_gguf_get_u32(g, "s.u16", &u32, &err), &err);
    CHECK(u32 == 60000);
    CHECK_OK(qf_gguf_get_i64(g, "s.i32", &i64, &err), &err);
    CHECK(i64 == -123456);
    CHECK_OK(qf_gguf_get_i64(g, "s.i64", &i64, &err), &err);
    CHECK(i64 == INT64_MIN);
    CHECK_OK(qf_gguf_get_i64(g, "s.i8", &i64, &err), &err);
    CHECK(i64 == -100);
    CHECK_OK(qf_gguf_get_i64(g, "s.i16", &i64, &err), &err);
    CHECK(i64 == -30000);
    CHECK_OK(qf_gguf_get_u32(g, "s.u8", &u32, &err), &err);
    CHECK(u32 == 200);
    CHECK(qf_gguf_find_kv(g, "s.u64")->v.u64 == UINT64_MAX - 1);
    CHECK_OK(qf_gguf_get_f32(g, "s.f32", &f, &err), &err);
    CHECK(f == 1e-5f);
    CHECK_OK(qf_gguf_get_f32(g, "s.f64", &f, &err), &err);
    CHECK(qf_gguf_find_kv(g, "s.f64")->v.f64 == 3.141592653589793);
    CHECK_OK(qf_gguf_get_bool(g, "s.bool", &b, &err), &err);
    CHECK(b);
    CHECK_OK(qf_gguf_get_str(g, "s.str", &s, &err), &err);
    CHECK(s && s[0] == '\0');
    CHECK_OK(qf_gguf_get_str(g, "general.architecture", &s, &err), &err);
    CHECK(s && strcmp(s, "llama") == 0);
    /* mismatches and absence */
    CHECK(qf_gguf_get_u32(g, "s.i32", &u32, &err) == QF_E_INPUT && strstr(err.msg, "'s.i32'"));
    CHECK(qf_gguf_get_u32(g, "s.u64", &u32, &err) == QF_E_INPUT);
    CHECK(qf_gguf_get_i64(g, "s.u64", &i64, &err) == QF_E_INPUT);
    CHECK(qf_gguf_get_str(g, "s.u32", &s, &err) == QF_E_INPUT && strstr(err.msg, "expected string, found u32"));
    CHECK(qf_gguf_get_bool(g, "s.u8", &b, &err) == QF_E_INPUT);
    CHECK(qf_gguf_get_f32(g, "s.u8", &f, &err) == QF_E_INPUT);
    CHECK(qf_gguf_get_u32(g, "no.such.key", &u32, &err) == QF_E_NOTFOUND && strstr(err.msg, "no.such.key"));
    for (size_t i = 0; i < QF_ARRAY_LEN(k_arrays); i++) {
        const void *arr = NULL;
        uint64_t n = 99;
        CHECK_OK(qf_gguf_get_arr(g, k_arrays[i].key, k_arrays[i].t, &arr, &n, &err), &err);
        CHECK_MSG(n == k_arrays[i].n && (n == 0 || memcmp(arr, k_arrays[i].p, n * elem_size(k_arrays[i].t)) == 0),
                  "%s", k_arrays[i].key);
    }
    const void *arr = NULL;
    uint64_t n = 0;
    CHECK(qf_gguf_get_arr(g, "arr.u8", QF_GGUF_I8, &arr, &n, &err) == QF_E_INPUT &&
          strstr(err.msg, "expected an array of i8, found an array of u8"));
    CHECK_OK(qf_gguf_get_arr(g, "tokenizer.ggml.tokens", QF_GGUF_STRING, &arr, &n, &err), &err);
    CHECK(n == QF_ARRAY_LEN(arr_str));
    for (uint64_t i = 0; i < n && arr; i++) {
        const qf_gguf_str *st = (const qf_gguf_str *)arr + i;
        CHECK(st->len == strlen(arr_str[i]) && strcmp(st->ptr, arr_str[i]) == 0);
    }
}

static void check_tensors(const qf_gguf *g, const rt_tensor *ts, size_t n, uint32_t alignment) {
    CHECK(qf_gguf_n_tensors(g) == n);
    CHECK(qf_gguf_alignment(g) == alignment);
    CHECK(qf_gguf_data_offset(g) % alignment == 0);
    for (size_t i = 0; i < n && i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        CHECK(t == qf_gguf_find_tensor(g, ts[i].name));
        CHECK_MSG(strcmp(t->name, ts[i].name) == 0 && t->type == ts[i].type && t->n_dims == ts[i].n_dims &&
                      memcmp(t->ne, ts[i].ne, sizeof t->ne) == 0 && t->nbytes == ts[i].nbytes,
                  "tensor %zu '%s'", i, ts[i].name);
        CHECK(t->offset % alignment == 0);
        CHECK_MSG(memcmp(t->data, ts[i].data, ts[i].nbytes) == 0, "data of '%s'", ts[i].name);
    }
    CHECK(qf_gguf_find_tensor(g, "missing") == NULL);
}

/* Writes the tensors' data in random-sized pieces that cross tensor boundaries. */
static void write_data(qf_gguf_writer *w, const rt_tensor *ts, size_t n, uint64_t *seed, qf_error *err) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += ts[i].nbytes;
    uint8_t *all = malloc(total ? total : 1);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(all + pos, ts[i].data, ts[i].nbytes);
        pos += ts[i].nbytes;
    }
    for (pos = 0; pos < total;) {
        uint64_t r = 1 + qf_test_rand(seed) % 300; /* QF_MIN evaluates twice */
        uint64_t k = QF_MIN(total - pos, r);
        CHECK_OK(qf_gguf_write_tensor_data(w, all + pos, k, err), err);
        pos += k;
    }
    free(all);
}

static void test_round_trip(uint32_t alignment, char *out_path, size_t out_n) {
    uint64_t seed = 0x5EEDu + alignment;
    rt_tensor ts[128];
    size_t n = make_tensors(ts, QF_ARRAY_LEN(ts), &seed);
    char name[64];
    snprintf(name, sizeof name, "rt-%u.gguf", alignment);
    qf_test_path(name, out_path, out_n);
    unlink(out_path); /* from an earlier run */
    qf_error err = {0};
    qf_gguf_writer *w = NULL;
    CHECK_OK(qf_gguf_writer_open(out_path, &w, &err), &err);
    if (!w) return;
    write_kvs(w, &err, alignment == QF_GGUF_DEFAULT_ALIGNMENT ? 0 : alignment);
    for (size_t i = 0; i < n; i++) CHECK_OK(qf_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err), &err);
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    write_data(w, ts, n, &seed, &err);
    CHECK(!qf_test_file_exists(out_path));
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(out_path, &g, &err), &err);
    if (g) {
        printf("round trip (alignment %u): %zu keys, %zu tensors of %zu types, data at %llu\n", alignment,
               qf_gguf_n_kv(g), qf_gguf_n_tensors(g), qf_qtype_count(), (unsigned long long)qf_gguf_data_offset(g));
        CHECK(qf_gguf_version(g) == 3);
        check_kvs(g);
        check_tensors(g, ts, n, alignment);
        qf_gguf_close(g);
    }
    for (size_t i = 0; i < n; i++) free(ts[i].data);
}

/* Read a file, write every KV and tensor through the writer again: the bytes must be identical. */
static bool rewrite_identical(const char *src, const char *dst) {
    qf_error err = {0};
    qf_gguf *g = NULL;
    qf_gguf_writer *w = NULL;
    CHECK_OK(qf_gguf_open(src, &g, &err), &err);
    if (!g) return false;
    CHECK_OK(qf_gguf_writer_open(dst, &w, &err), &err);
    if (!w) {
        qf_gguf_close(g);
        return false;
    }
    /* Files from other tools carry no qforge digests; adding them would be the only difference. Our own
     * files keep theirs, recomputed over the same bytes, so they must come out identical too. */
    if (!qf_gguf_find_kv(g, QF_INTEGRITY_KEY_SCHEME)) CHECK_OK(qf_gguf_writer_set_digests(w, false, &err), &err);
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) CHECK_OK(qf_gguf_set_kv(w, qf_gguf_kv_at(g, i), &err), &err);
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        CHECK_OK(qf_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &err), &err);
    }
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        CHECK_OK(qf_gguf_write_tensor_data(w, t->data, t->nbytes, &err), &err);
    }
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);
    qf_gguf_close(g);
    size_t na = 0, nb = 0;
    uint8_t *a = qf_test_read_file(src, &na), *b = qf_test_read_file(dst, &nb);
    bool same = a && b && na == nb && memcmp(a, b, na) == 0;
    free(a);
    free(b);
    return same;
}

/* ---- 2. writer misuse --------------------------------------------------------------------------- */

static void test_writer_errors(void) {
    char path[4096];
    qf_test_path("misuse.gguf", path, sizeof path);
    unlink(path); /* from an earlier run */
    qf_error err = {0};
    qf_gguf_writer *w = NULL;
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    if (!w) return;
    uint64_t ne[5] = {32, 2, 1, 1, 1}, zero[2] = {32, 0}, odd[1] = {33}, big[4] = {1ull << 32, 1ull << 32, 1, 1};
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    const struct {
        const char *name;
        uint32_t type, n_dims;
        const uint64_t *ne;
        const char *expect;
    } bad[] = {
        {"a", QF_T_F32, 0, ne, "n_dims 0"},           {"a", QF_T_F32, 5, ne, "n_dims 5"},
        {"a", QF_T_F32, 2, zero, "ne[1] is 0"},       {"a", QF_T_Q8_0, 1, odd, "not a multiple"},
        {"a", 4, 1, ne, "unknown type id 4"},         {"a", 0xFFFFFFFFu, 1, ne, "unknown type id"},
        {"a", QF_T_F32, 2, big, "overflows"},         {"", QF_T_F32, 1, ne, "must be 1..63"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(bad); i++) {
        qf_status st = qf_gguf_add_tensor(w, bad[i].name, bad[i].type, bad[i].n_dims, bad[i].ne, &err);
        CHECK_MSG(st == QF_E_USAGE && strstr(err.msg, bad[i].expect), "case %zu: %s", i, err.msg);
    }
    CHECK(qf_gguf_add_tensor(w, long_name, QF_T_F32, 1, ne, &err) == QF_E_USAGE);
    CHECK_OK(qf_gguf_add_tensor(w, "a", QF_T_F32, 2, ne, &err), &err);
    CHECK(qf_gguf_add_tensor(w, "a", QF_T_F32, 1, ne, &err) == QF_E_USAGE && strstr(err.msg, "duplicate"));
    CHECK(qf_gguf_set_u32(w, "", 1, &err) == QF_E_USAGE);
    CHECK(qf_gguf_set_arr(w, "k", QF_GGUF_STRING, ne, 1, &err) == QF_E_USAGE);
    const uint8_t bools[2] = {1, 2};
    CHECK(qf_gguf_set_arr(w, "k", QF_GGUF_BOOL, bools, 2, &err) == QF_E_USAGE);
    qf_gguf_kv nested = {.key = "nested", .type = QF_GGUF_ARRAY, .arr_type = QF_GGUF_ARRAY, .n = 1};
    CHECK(qf_gguf_set_kv(w, &nested, &err) == QF_E_UNSUPPORTED);
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    CHECK(qf_gguf_set_u32(w, "late", 1, &err) == QF_E_USAGE && strstr(err.msg, "after begin_data"));
    CHECK(qf_gguf_add_tensor(w, "late", QF_T_F32, 1, ne, &err) == QF_E_USAGE);
    CHECK(qf_gguf_begin_data(w, &err) == QF_E_USAGE);
    static uint8_t data[512];
    CHECK_OK(qf_gguf_write_tensor_data(w, data, 256, &err), &err);
    CHECK(qf_gguf_write_tensor_data(w, data, 1, &err) == QF_E_USAGE && strstr(err.msg, "past the end"));
    CHECK(qf_gguf_writer_finish(w, &err) != QF_OK);
    CHECK(!qf_test_file_exists(path));

    /* missing bytes: finish refuses and leaves nothing */
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    CHECK_OK(qf_gguf_add_tensor(w, "a", QF_T_F32, 2, ne, &err), &err);
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    CHECK_OK(qf_gguf_write_tensor_data(w, data, 100, &err), &err);
    CHECK(qf_gguf_writer_finish(w, &err) == QF_E_USAGE && strstr(err.msg, "got 100 of 256 bytes"));
    CHECK(!qf_test_file_exists(path));

    /* bad general.alignment is refused at begin_data */
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    CHECK_OK(qf_gguf_set_u32(w, "general.alignment", 24, &err), &err);
    CHECK(qf_gguf_begin_data(w, &err) == QF_E_USAGE && strstr(err.msg, "power of two"));
    qf_gguf_writer_abort(w);

    /* abort, and a file with no tensors (finish without begin_data) */
    CHECK(qf_test_write_file(path, "old", 3));
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    CHECK_OK(qf_gguf_set_str(w, "general.name", "x", &err), &err);
    qf_gguf_writer_abort(w);
    size_t n = 0;
    uint8_t *b = qf_test_read_file(path, &n);
    CHECK(b && n == 3 && memcmp(b, "old", 3) == 0);
    free(b);
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    CHECK_OK(qf_gguf_set_str(w, "general.name", "x", &err), &err);
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    /* the key, then the five integrity keys (scheme 2) the writer appends last */
    CHECK(g && qf_gguf_n_tensors(g) == 0 && qf_gguf_n_kv(g) == 6);
    CHECK(g && qf_gguf_n_kv(g) == 6 && strcmp(qf_gguf_kv_at(g, 1)->key, QF_INTEGRITY_KEY_SCHEME) == 0 &&
          strcmp(qf_gguf_kv_at(g, 3)->key, QF_INTEGRITY_KEY_TENSORS) == 0 && qf_gguf_kv_at(g, 3)->n == 0 &&
          strcmp(qf_gguf_kv_at(g, 5)->key, QF_INTEGRITY_KEY_TYPES) == 0 && qf_gguf_kv_at(g, 5)->n == 0);
    qf_gguf_close(g);

    /* a directory with only our files: no temp left behind by any of the above */
    DIR *d = opendir(qf_test_scratch);
    struct dirent *e;
    int temps = 0;
    while (d && (e = readdir(d))) temps += strstr(e->d_name, ".qf-") != NULL;
    if (d) closedir(d);
    CHECK(temps == 0);
}

/* ---- 3. malformed-file catalogue ---------------------------------------------------------------- */

/* A valid small file, described so each catalogue entry can change one thing. */
typedef struct spec_tensor {
    const char *name;
    uint64_t name_len; /* 0: strlen(name) */
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    int64_t offset_delta; /* added to the correct offset */
    bool offset_set;
    uint64_t offset;      /* used when offset_set */
} spec_tensor;

typedef struct spec {
    uint32_t magic, version;
    bool counts_set;
    uint64_t n_tensors, n_kv;
    buf kvs;          /* serialized KVs */
    uint64_t nkv;
    spec_tensor t[3];
    size_t nt;
    uint32_t alignment;
    int64_t data_delta; /* bytes added to (or removed from) the data section */
    int mark;           /* truncation: section mark index, -1 none */
    int64_t cut;        /* ... plus this many bytes */
} spec;

enum { MARK_KVS, MARK_TINFO, MARK_DATA, MARK_COUNT };

static void kv_key(spec *s, const char *key, uint32_t type) {
    b_str(&s->kvs, key);
    b_u32(&s->kvs, type);
    s->nkv++;
}
static void kv_str(spec *s, const char *key, const char *v) {
    kv_key(s, key, QF_GGUF_STRING);
    b_str(&s->kvs, v);
}
static void kv_u32(spec *s, const char *key, uint32_t v) {
    kv_key(s, key, QF_GGUF_U32);
    b_u32(&s->kvs, v);
}

static void spec_default(spec *s) {
    memset(s, 0, sizeof *s);
    s->magic = QF_GGUF_MAGIC;
    s->version = 3;
    s->alignment = 32;
    s->mark = -1;
    kv_str(s, "general.architecture", "llama");
    kv_u32(s, "llama.block_count", 1);
    s->t[0] = (spec_tensor){.name = "tok_embd.weight", .n_dims = 2, .ne = {8, 3}, .type = QF_T_F32};
    s->t[1] = (spec_tensor){.name = "blk.0.attn_q.weight", .n_dims = 2, .ne = {64, 2}, .type = QF_T_Q8_0};
    s->t[2] = (spec_tensor){.name = "output_norm.weight", .n_dims = 1, .ne = {8}, .type = QF_T_F16};
    s->nt = 3;
}

static uint64_t spec_nbytes(const spec_tensor *t) {
    const qf_qtype_traits *tr = qf_qtype_get(t->type);
    uint64_t rb = 0;
    /* shapes the reader must refuse get a placeholder size, so the builder never allocates much */
    if (!tr || t->n_dims < 1 || t->n_dims > 4 || !qf_qtype_row_bytes(tr, t->ne[0], &rb)) return 32;
    for (uint32_t d = 1; d < t->n_dims; d++)
        if (!qf_mul_ok(rb, t->ne[d], &rb)) return 32;
    return rb > (1u << 20) ? 32 : rb;
}

static uint64_t pad_to(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static void spec_build(const spec *s, buf *out, size_t marks[MARK_COUNT]) {
    memset(out, 0, sizeof *out);
    b_u32(out, s->magic);
    b_u32(out, s->version);
    b_u64(out, s->counts_set ? s->n_tensors : s->nt);
    b_u64(out, s->counts_set ? s->n_kv : s->nkv);
    marks[MARK_KVS] = out->len;
    b_put(out, s->kvs.p, s->kvs.len);
    marks[MARK_TINFO] = out->len;
    uint64_t off = 0;
    for (size_t i = 0; i < s->nt; i++) {
        const spec_tensor *t = &s->t[i];
        b_u64(out, t->name_len ? t->name_len : strlen(t->name));
        /* an explicit short length covers names with an embedded NUL */
        b_put(out, t->name, t->name_len && t->name_len < 64 ? t->name_len : strlen(t->name));
        b_u32(out, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && d < 5; d++) b_u64(out, t->ne[d]);
        b_u32(out, t->type);
        b_u64(out, t->offset_set ? t->offset : off + (uint64_t)t->offset_delta);
        off = pad_to(off + spec_nbytes(t), s->alignment);
    }
    b_zeros(out, pad_to(out->len, s->alignment) - out->len);
    marks[MARK_DATA] = out->len;
    int64_t data = (int64_t)off + s->data_delta;
    for (int64_t i = 0; i < data; i++) b_u8(out, (uint8_t)(i * 7));
    if (s->mark >= 0) out->len = (size_t)((int64_t)marks[s->mark] + s->cut);
}

#define CATALOGUE(X)                                                                                             \
    X(BAD_MAGIC, QF_E_INPUT, "bad magic")                                                                        \
    X(VERSION_0, QF_E_INPUT, "unsupported version 0")                                                            \
    X(VERSION_1, QF_E_UNSUPPORTED, "version 1")                                                                  \
    X(VERSION_4, QF_E_INPUT, "unsupported version 4")                                                            \
    X(VERSION_BYTESWAPPED, QF_E_UNSUPPORTED, "byte-swapped")                                                     \
    X(EMPTY_FILE, QF_E_INPUT, "truncated: magic")                                                                \
    X(TRUNC_VERSION, QF_E_INPUT, "truncated: version")                                                           \
    X(TRUNC_COUNTS, QF_E_INPUT, "truncated: n_tensors")                                                          \
    X(TRUNC_KEY, QF_E_INPUT, "key #1: truncated: key needs 8 bytes at offset 69, only 3 remain")                                             \
    X(TRUNC_KEY_BYTES, QF_E_INPUT, "key #1: key length 17 exceeds the 5 bytes left")                                              \
    X(TRUNC_TENSOR_INFO, QF_E_INPUT, "tensor 'output_norm.weight': truncated: dimension needs 8 bytes")                           \
    X(TRUNC_BEFORE_DATA, QF_E_INPUT, "extends past the end of the file")                                         \
    X(TRUNC_IN_DATA, QF_E_INPUT, "'blk.0.attn_q.weight': data at file offset")                                   \
    X(HUGE_N_TENSORS, QF_E_INPUT, "n_tensors 1152921504606846976 needs at least 32 bytes each")                  \
    X(HUGE_N_KV, QF_E_INPUT, "n_kv 18446744073709551615 needs at least 13 bytes each")                           \
    X(N_KV_PLUS_ONE, QF_E_INPUT, "tensor #0: tensor name length")                                                                       \
    X(KEY_LEN_HUGE, QF_E_INPUT, "key length 4611686018427387904 exceeds")                                        \
    X(KEY_EMPTY, QF_E_INPUT, "key #2: key is empty")                                                             \
    X(KEY_NUL, QF_E_INPUT, "key contains a NUL byte at position 1")                                              \
    X(DUP_KEY, QF_E_INPUT, "key 'general.architecture': duplicate key")                                          \
    X(VALUE_TYPE_13, QF_E_INPUT, "key 'k': value type 13 is not a valid value type")                             \
    X(VALUE_TYPE_HUGE, QF_E_INPUT, "value type 4294967295 is not a valid")                                       \
    X(ARRAY_ELEM_TYPE_BAD, QF_E_INPUT, "array element type 99 is not a valid")                                   \
    X(ARRAY_LEN_HUGE, QF_E_INPUT, "array of 2305843009213693952 u32 elements")                                   \
    X(STR_ARRAY_LEN_HUGE, QF_E_INPUT, "array of 1000000 string elements")                                        \
    X(STR_ELEM_LEN_HUGE, QF_E_INPUT, "string element length 9999 exceeds")                                       \
    X(STR_VALUE_LEN_HUGE, QF_E_INPUT, "key 'k': string value length 18446744073709551615 exceeds")               \
    X(NESTED_ARRAY_DEEP, QF_E_INPUT, "arrays nested more than 8 levels deep")                                    \
    X(NESTED_ARRAY_WIDE, QF_E_INPUT, "array of 1099511627776 array elements")                                    \
    X(NESTED_INNER_BAD, QF_E_INPUT, "array element type 77")                                                     \
    X(BOOL_VALUE_2, QF_E_INPUT, "bool value 2 is not 0 or 1")                                                    \
    X(BOOL_ARRAY_BAD, QF_E_INPUT, "bool value 9 at element 1")                                                   \
    X(ALIGN_NOT_POW2, QF_E_INPUT, "alignment 48 is not a power of two")                                          \
    X(ALIGN_ZERO, QF_E_INPUT, "alignment 0 is not a power of two")                                               \
    X(ALIGN_WRONG_TYPE, QF_E_INPUT, "alignment must be of type u32, found u64")                                  \
    X(ALIGN_64_OK_MISPLACED, QF_E_INPUT, "not a multiple of the alignment 64")                                   \
    X(NDIMS_0, QF_E_INPUT, "tensor 'tok_embd.weight': n_dims 0 is outside 1..4")                                 \
    X(NDIMS_5, QF_E_INPUT, "n_dims 5 is outside 1..4")                                                           \
    X(NE_ZERO, QF_E_INPUT, "ne[1] is 0")                                                                         \
    X(NE_OVERFLOW, QF_E_INPUT, "element count overflows at ne[1]")                                               \
    X(NE_INT64_MAX, QF_E_INPUT, "element count overflows at ne[0]")                                              \
    X(TYPE_4, QF_E_INPUT, "type id 4 is not a known tensor type")                                                \
    X(TYPE_5, QF_E_INPUT, "type id 5 is not a known tensor type")                                                \
    X(TYPE_31, QF_E_INPUT, "type id 31 is not a known tensor type")                                              \
    X(TYPE_HUGE, QF_E_INPUT, "type id 4294967295 is not a known")                                                \
    X(ROW_NOT_BLOCK_MULTIPLE, QF_E_INPUT, "row length ne[0] = 48 is not a multiple of the q8_0 block size 32")    \
    X(TENSOR_NAME_64, QF_E_INPUT, "is 64 bytes long (llama.cpp allows at most 63)")                              \
    X(TENSOR_NAME_LEN_HUGE, QF_E_INPUT, "tensor #0: tensor name length 1099511627776 exceeds")                   \
    X(TENSOR_NAME_NUL, QF_E_INPUT, "tensor name contains a NUL byte")                                            \
    X(DUP_TENSOR, QF_E_INPUT, "tensor 'tok_embd.weight': duplicate tensor name")                                 \
    X(MISALIGNED_OFFSET, QF_E_INPUT, "tensor 'blk.0.attn_q.weight': offset 104 is not a multiple of the alignment 32") \
    X(OVERLAPPING_OFFSET, QF_E_INPUT, "offset 0 is not contiguous: expected 96")                                 \
    X(GAP_BETWEEN_TENSORS, QF_E_INPUT, "offset 128 is not contiguous: expected 96")                              \
    X(FIRST_OFFSET_NONZERO, QF_E_INPUT, "tensor 'tok_embd.weight': offset 32 is not contiguous: expected 0")     \
    X(OFFSET_HUGE, QF_E_INPUT, "offset 9223372036854775808 is not contiguous")                                   \
    X(DATA_PAST_EOF, QF_E_INPUT, "tensor 'output_norm.weight': data at file offset")                             \
    X(N_TENSORS_PLUS_ONE, QF_E_INPUT, "tensor '': n_dims 0 is outside")

typedef enum case_id {
#define X(name, st, msg) C_##name,
    CATALOGUE(X)
#undef X
    C_COUNT
} case_id;

static const struct {
    const char *name;
    qf_status status;
    const char *msg;
} k_cases[] = {
#define X(name, st, msg) {#name, st, msg},
    CATALOGUE(X)
#undef X
};

static void kv_raw_array_head(spec *s, const char *key, uint32_t et, uint64_t n) {
    kv_key(s, key, QF_GGUF_ARRAY);
    b_u32(&s->kvs, et);
    b_u64(&s->kvs, n);
}

/* Changes the default spec into catalogue entry c. */
static void apply_case(case_id c, spec *s) {
    spec_tensor *t0 = &s->t[0], *t1 = &s->t[1], *t2 = &s->t[2];
    switch (c) {
    case C_BAD_MAGIC: s->magic = 0x46554746; break;
    case C_VERSION_0: s->version = 0; break;
    case C_VERSION_1: s->version = 1; break;
    case C_VERSION_4: s->version = 4; break;
    case C_VERSION_BYTESWAPPED: s->version = 0x03000000; break;
    case C_EMPTY_FILE: s->mark = MARK_KVS; s->cut = -24; break;
    case C_TRUNC_VERSION: s->mark = MARK_KVS; s->cut = -18; break;
    case C_TRUNC_COUNTS: s->mark = MARK_KVS; s->cut = -10; break;
    /* no tensors, so the count check (2 keys >= 26 bytes) passes and the key itself is cut */
    case C_TRUNC_KEY: s->counts_set = true; s->n_kv = s->nkv; s->mark = MARK_KVS; s->cut = 45 + 3; break;
    case C_TRUNC_KEY_BYTES: s->counts_set = true; s->n_kv = s->nkv; s->mark = MARK_KVS; s->cut = 45 + 8 + 5; break;
    case C_TRUNC_TENSOR_INFO: /* inside the last info: earlier cuts fail the count check first */
        s->mark = MARK_TINFO;
        s->cut = 55 + 59 + 8 + 18 + 4 + 3;
        break;
    case C_TRUNC_BEFORE_DATA: s->mark = MARK_DATA; s->cut = 0; break;
    case C_TRUNC_IN_DATA: s->mark = MARK_DATA; s->cut = 100; break;
    case C_HUGE_N_TENSORS: s->counts_set = true; s->n_tensors = 1ull << 60; s->n_kv = s->nkv; break;
    case C_HUGE_N_KV: s->counts_set = true; s->n_tensors = s->nt; s->n_kv = UINT64_MAX; break;
    case C_N_KV_PLUS_ONE: s->counts_set = true; s->n_tensors = s->nt; s->n_kv = s->nkv + 1; break;
    case C_N_TENSORS_PLUS_ONE: s->counts_set = true; s->n_tensors = s->nt + 1; s->n_kv = s->nkv; break;
    case C_KEY_LEN_HUGE: b_u64(&s->kvs, 1ull << 62); s->nkv++; break;
    case C_KEY_EMPTY: kv_u32(s, "", 1); break;
    case C_KEY_NUL:
        b_u64(&s->kvs, 3);
        b_put(&s->kvs, "a\0b", 3);
        b_u32(&s->kvs, QF_GGUF_U8);
        b_u8(&s->kvs, 1);
        s->nkv++;
        break;
    case C_DUP_KEY: kv_str(s, "general.architecture", "gpt2"); break;
    case C_VALUE_TYPE_13: kv_key(s, "k", 13); b_u32(&s->kvs, 0); break;
    case C_VALUE_TYPE_HUGE: kv_key(s, "k", 0xFFFFFFFFu); b_u32(&s->kvs, 0); break;
    case C_ARRAY_ELEM_TYPE_BAD: kv_raw_array_head(s, "k", 99, 1); b_u32(&s->kvs, 0); break;
    case C_ARRAY_LEN_HUGE: kv_raw_array_head(s, "k", QF_GGUF_U32, 1ull << 61); break;
    case C_STR_ARRAY_LEN_HUGE: kv_raw_array_head(s, "k", QF_GGUF_STRING, 1000000); b_str(&s->kvs, "x"); break;
    case C_STR_ELEM_LEN_HUGE:
        kv_raw_array_head(s, "k", QF_GGUF_STRING, 2);
        b_str(&s->kvs, "ok");
        b_u64(&s->kvs, 9999);
        break;
    case C_STR_VALUE_LEN_HUGE: kv_key(s, "k", QF_GGUF_STRING); b_u64(&s->kvs, UINT64_MAX); break;
    case C_NESTED_ARRAY_DEEP:
        kv_key(s, "k", QF_GGUF_ARRAY);
        for (int i = 0; i < 100; i++) { b_u32(&s->kvs, QF_GGUF_ARRAY); b_u64(&s->kvs, 1); }
        b_zeros(&s->kvs, 64);
        break;
    case C_NESTED_ARRAY_WIDE: kv_raw_array_head(s, "k", QF_GGUF_ARRAY, 1ull << 40); break;
    case C_NESTED_INNER_BAD:
        kv_raw_array_head(s, "k", QF_GGUF_ARRAY, 2);
        b_u32(&s->kvs, QF_GGUF_U8); b_u64(&s->kvs, 1); b_u8(&s->kvs, 5);
        b_u32(&s->kvs, 77); b_u64(&s->kvs, 0);
        break;
    case C_BOOL_VALUE_2: kv_key(s, "k", QF_GGUF_BOOL); b_u8(&s->kvs, 2); break;
    case C_BOOL_ARRAY_BAD:
        kv_raw_array_head(s, "k", QF_GGUF_BOOL, 3);
        b_u8(&s->kvs, 1); b_u8(&s->kvs, 9); b_u8(&s->kvs, 0);
        break;
    case C_ALIGN_NOT_POW2: kv_u32(s, "general.alignment", 48); break;
    case C_ALIGN_ZERO: kv_u32(s, "general.alignment", 0); break;
    case C_ALIGN_WRONG_TYPE: kv_key(s, "general.alignment", QF_GGUF_U64); b_u64(&s->kvs, 32); break;
    case C_ALIGN_64_OK_MISPLACED: /* file laid out for 32 but claiming 64: offset 96 is misaligned */
        kv_u32(s, "general.alignment", 64);
        break;
    case C_NDIMS_0: t0->n_dims = 0; break;
    case C_NDIMS_5: t1->n_dims = 5; t1->ne[2] = t1->ne[3] = t1->ne[4] = 1; break;
    case C_NE_ZERO: t0->ne[1] = 0; break;
    case C_NE_OVERFLOW: t0->ne[0] = 1ull << 32; t0->ne[1] = 1ull << 32; break;
    case C_NE_INT64_MAX: t0->n_dims = 1; t0->ne[0] = 1ull << 63; break;
    case C_TYPE_4: t0->type = 4; break;
    case C_TYPE_5: t0->type = 5; break;
    case C_TYPE_31: t0->type = 31; break;
    case C_TYPE_HUGE: t0->type = 0xFFFFFFFFu; break;
    case C_ROW_NOT_BLOCK_MULTIPLE: t1->ne[0] = 48; break;
    case C_TENSOR_NAME_64: t2->name = "0123456789012345678901234567890123456789012345678901234567890123"; break;
    case C_TENSOR_NAME_LEN_HUGE: t0->name_len = 1ull << 40; break;
    case C_TENSOR_NAME_NUL: t0->name = "tok\0embd"; t0->name_len = 8; break;
    case C_DUP_TENSOR: t1->name = "tok_embd.weight"; break;
    case C_MISALIGNED_OFFSET: t1->offset_delta = 8; break;
    case C_OVERLAPPING_OFFSET: t1->offset_set = true; t1->offset = 0; break;
    case C_GAP_BETWEEN_TENSORS: t1->offset_delta = 32; break;
    case C_FIRST_OFFSET_NONZERO: t0->offset_delta = 32; break;
    case C_OFFSET_HUGE: t1->offset_set = true; t1->offset = 1ull << 63; break;
    case C_DATA_PAST_EOF: s->data_delta = -40; break;
    case C_COUNT: break;
    }
}

static void test_catalogue(void) {
    CHECK(C_COUNT >= 35);
    /* the default spec must itself be valid, or every entry below proves nothing */
    spec s;
    spec_default(&s);
    buf file;
    size_t marks[MARK_COUNT];
    spec_build(&s, &file, marks);
    qf_error err = {0};
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open_mem("valid.gguf", file.p, file.len, &g, &err), &err);
    CHECK(g && qf_gguf_n_tensors(g) == 3 && qf_gguf_tensor_at(g, 1)->offset == 96);
    qf_gguf_close(g);
    free(file.p);
    free(s.kvs.p);

    int passed = 0;
    for (int c = 0; c < C_COUNT; c++) {
        spec_default(&s);
        apply_case((case_id)c, &s);
        spec_build(&s, &file, marks);
        char label[96];
        snprintf(label, sizeof label, "%s.gguf", k_cases[c].name);
        qf_error e = {0};
        g = NULL;
        qf_status st = qf_gguf_open_mem(label, file.p, file.len, &g, &e);
        bool ok = st == k_cases[c].status && strstr(e.msg, k_cases[c].msg) && strncmp(e.msg, label, strlen(label)) == 0;
        printf("  %-24s %-12s %s\n", k_cases[c].name, qf_status_name(st), e.msg);
        CHECK_MSG(ok, "%s: expected %s with \"%s\"", k_cases[c].name, qf_status_name(k_cases[c].status), k_cases[c].msg);
        passed += ok;
        qf_gguf_close(g);
        /* through a real file too: same verdict from the mmap path */
        char path[4096];
        qf_test_path("catalogue.gguf", path, sizeof path);
        if (qf_test_write_file(path, file.p, file.len)) {
            st = qf_gguf_open(path, &g, &e);
            CHECK_MSG(st == k_cases[c].status && strstr(e.msg, k_cases[c].msg), "%s via file: %s", k_cases[c].name, e.msg);
            qf_gguf_close(g);
        }
        free(file.p);
        free(s.kvs.p);
    }
    printf("catalogue: %d of %d malformed files rejected as expected\n", passed, (int)C_COUNT);

    qf_error e = {0};
    char path[4096];
    CHECK(qf_gguf_open(qf_test_path("does-not-exist.gguf", path, sizeof path), &g, &e) == QF_E_NOTFOUND);
    CHECK(qf_gguf_open(qf_test_scratch, &g, &e) == QF_E_INPUT && strstr(e.msg, "not a regular file"));
}

/* A file with nested arrays, which the reader accepts and exposes as a count. */
static void build_nested(buf *out) {
    spec s;
    spec_default(&s);
    kv_raw_array_head(&s, "nested", QF_GGUF_ARRAY, 3);
    b_u32(&s.kvs, QF_GGUF_U16); b_u64(&s.kvs, 2); b_u32(&s.kvs, 0x00050004);
    b_u32(&s.kvs, QF_GGUF_STRING); b_u64(&s.kvs, 1); b_str(&s.kvs, "in");
    b_u32(&s.kvs, QF_GGUF_ARRAY); b_u64(&s.kvs, 1); b_u32(&s.kvs, QF_GGUF_BOOL); b_u64(&s.kvs, 1); b_u8(&s.kvs, 1);
    kv_str(&s, "after", "ok");
    size_t marks[MARK_COUNT];
    spec_build(&s, out, marks);
    free(s.kvs.p);
}

static void test_nested(void) {
    buf file;
    build_nested(&file);
    qf_error err = {0};
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open_mem("nested.gguf", file.p, file.len, &g, &err), &err);
    if (g) {
        const qf_gguf_kv *kv = qf_gguf_find_kv(g, "nested");
        CHECK(kv && kv->type == QF_GGUF_ARRAY && kv->arr_type == QF_GGUF_ARRAY && kv->n == 3);
        const char *s = NULL;
        CHECK_OK(qf_gguf_get_str(g, "after", &s, &err), &err);
        CHECK(s && strcmp(s, "ok") == 0);
        char path[4096];
        qf_gguf_writer *w = NULL;
        CHECK_OK(qf_gguf_writer_open(qf_test_path("nested-out.gguf", path, sizeof path), &w, &err), &err);
        CHECK(w && qf_gguf_set_kv(w, kv, &err) == QF_E_UNSUPPORTED && strstr(err.msg, "arrays of arrays"));
        qf_gguf_writer_abort(w);
        qf_gguf_close(g);
    }
    free(file.p);
}

/* ---- 4. truncation and mutation fuzzing ---------------------------------------------------------- */

/* Exercise everything a successful parse exposes, so a bad pointer shows up here (ASan) and not later. */
static uint64_t touch_all(const qf_gguf *g) {
    uint64_t h = 0;
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        h += strlen(kv->key) + (qf_gguf_find_kv(g, kv->key) == kv);
        if (kv->type == QF_GGUF_STRING) h += strlen(kv->v.str.ptr);
        if (kv->type == QF_GGUF_ARRAY && kv->arr_type == QF_GGUF_STRING) {
            const qf_gguf_str *s = kv->v.arr;
            for (uint64_t k = 0; k < kv->n; k++) h += s[k].len + (uint8_t)s[k].ptr[s[k].len];
        } else if (kv->type == QF_GGUF_ARRAY && kv->arr_type != QF_GGUF_ARRAY && kv->n) {
            h += ((const uint8_t *)kv->v.arr)[kv->n * elem_size(kv->arr_type) - 1];
        }
        uint32_t u;
        int64_t i64;
        qf_gguf_get_u32(g, kv->key, &u, NULL);
        qf_gguf_get_i64(g, kv->key, &i64, NULL);
    }
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        h += t->data[0] + t->data[t->nbytes - 1] + (qf_gguf_find_tensor(g, t->name) == t);
    }
    return h;
}

/* Every prefix shorter than the end of the last tensor's bytes must be rejected as bad input. */
static void test_truncations(const char *label, const uint8_t *file, size_t len) {
    /* all prefixes through the header and a little data, then a sample of the rest (quadratic cost) */
    qf_error err = {0};
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open_mem(label, file, len, &g, &err), &err);
    if (!g) return;
    uint64_t need = qf_gguf_data_offset(g), data_off = need;
    size_t nt = qf_gguf_n_tensors(g);
    if (nt) need += qf_gguf_tensor_at(g, nt - 1)->offset + qf_gguf_tensor_at(g, nt - 1)->nbytes;
    qf_gguf_close(g);
    int bad = 0, tried = 0;
    size_t dense = (size_t)QF_MIN((uint64_t)len, data_off + 256);
    for (size_t l = 0; l < len; l = l < dense ? l + 1 : l + (len - dense) / 200 + 1) {
        tried++;
        /* copy so ASan sees reads past the prefix */
        uint8_t *p = malloc(l ? l : 1);
        memcpy(p, file, l);
        qf_status st = qf_gguf_open_mem(label, p, l, &g, &err);
        bool expect_ok = l >= need;
        if ((st == QF_OK) != expect_ok || (st != QF_OK && st != QF_E_INPUT)) {
            if (bad++ < 5) fprintf(stderr, "%s truncated to %zu: %s: %s\n", label, l, qf_status_name(st), err.msg);
        }
        if (st == QF_OK) touch_all(g);
        qf_gguf_close(g);
        free(p);
    }
    CHECK_MSG(bad == 0, "%s: %d truncations misjudged", label, bad);
    printf("truncation: %s: %d prefixes of %zu bytes judged\n", label, tried, len);
}

static const uint64_t k_interesting[] = {0, 1, 2, 3, 4, 7, 8, 13, 31, 32, 33, 63, 64, 255, 0x7FFFFFFFull,
                                         0xFFFFFFFFull, 1ull << 32, 1ull << 40, 1ull << 62, 1ull << 63,
                                         UINT64_MAX, UINT64_MAX - 31};

static size_t mutate(uint8_t *p, size_t len, size_t cap, uint64_t *rs) {
    int n_mut = 1 + (int)(qf_test_rand(rs) % 4);
    for (int m = 0; m < n_mut && len > 0; m++) {
        size_t pos = (size_t)(qf_test_rand(rs) % len);
        switch (qf_test_rand(rs) % 7) {
        case 0: p[pos] ^= (uint8_t)(1u << (qf_test_rand(rs) % 8)); break;
        case 1: p[pos] = (uint8_t)qf_test_rand(rs); break;
        case 2: /* plant an interesting u64 (or its low u32) over a count, length or offset */
            if (pos + 8 <= len) {
                uint64_t v = k_interesting[qf_test_rand(rs) % QF_ARRAY_LEN(k_interesting)];
                memcpy(p + pos, &v, qf_test_rand(rs) % 2 ? 8 : 4);
            }
            break;
        case 3: len = pos; break;
        case 4: /* delete a run */
        {
            size_t r = (size_t)(1 + qf_test_rand(rs) % 16); /* QF_MIN evaluates twice */
            size_t k = QF_MIN(len - pos, r);
            memmove(p + pos, p + pos + k, len - pos - k);
            len -= k;
            break;
        }
        case 5: /* duplicate a run */
        {
            size_t r = (size_t)(1 + qf_test_rand(rs) % 16), room = QF_MIN(len - pos, cap - len);
            size_t k = QF_MIN(room, r);
            memmove(p + pos + k, p + pos, len - pos);
            len += k;
            break;
        }
        default: /* small integer nudge */
            p[pos] = (uint8_t)(p[pos] + (qf_test_rand(rs) % 2 ? 1 : -1));
            break;
        }
    }
    return len;
}

static void fuzz_fixture(const char *label, const uint8_t *file, size_t len, uint64_t seed, int iters) {
    size_t cap = len + 1024;
    uint8_t *p = malloc(cap);
    int ok = 0, bad_status = 0, counts[QF_E_INTERNAL + 1] = {0};
    uint64_t rs = seed;
    for (int i = 0; i < iters; i++) {
        memcpy(p, file, len);
        size_t l = mutate(p, len, cap, &rs);
        /* a right-sized copy so ASan catches any read past the end */
        uint8_t *q = malloc(l ? l : 1);
        memcpy(q, p, l);
        qf_error err = {0};
        qf_gguf *g = NULL;
        qf_status st = qf_gguf_open_mem(label, q, l, &g, &err);
        if (st == QF_OK) {
            ok++;
            touch_all(g);
        } else if (st != QF_E_INPUT && st != QF_E_UNSUPPORTED) {
            if (bad_status++ < 5) fprintf(stderr, "fuzz %s seed %llu iter %d: %s: %s\n", label,
                                          (unsigned long long)seed, i, qf_status_name(st), err.msg);
        }
        if (st <= QF_E_INTERNAL) counts[st]++;
        if (st != QF_OK && (err.status != st || strncmp(err.msg, label, strlen(label)) != 0)) bad_status++;
        qf_gguf_close(g);
        free(q);
    }
    CHECK_MSG(bad_status == 0, "%s: %d mutations gave an unexpected status (seed %llu)", label, bad_status,
              (unsigned long long)seed);
    printf("fuzz: %s: %d mutations (seed %llu): %d accepted, %d bad input, %d unsupported\n", label, iters,
           (unsigned long long)seed, ok, counts[QF_E_INPUT], counts[QF_E_UNSUPPORTED]);
    free(p);
}

static void test_fuzz(const char *rt_path) {
    const char *se = getenv("QF_FUZZ_SEED"), *ie = getenv("QF_FUZZ_ITERS");
    uint64_t seed = se ? strtoull(se, NULL, 0) : 20240611;
    int iters = ie ? atoi(ie) : 10000;
    printf("fuzz seed %llu (set QF_FUZZ_SEED to replay), %d iterations per fixture\n", (unsigned long long)seed, iters);
    spec s;
    spec_default(&s);
    buf small;
    size_t marks[MARK_COUNT];
    spec_build(&s, &small, marks);
    free(s.kvs.p);
    buf nested;
    build_nested(&nested);
    size_t rt_len = 0;
    uint8_t *rt = qf_test_read_file(rt_path, &rt_len);
    test_truncations("small.gguf", small.p, small.len);
    test_truncations("nested.gguf", nested.p, nested.len);
    fuzz_fixture("small.gguf", small.p, small.len, seed, iters);
    fuzz_fixture("nested.gguf", nested.p, nested.len, seed + 1, iters);
    if (rt) {
        test_truncations("roundtrip.gguf", rt, rt_len);
        fuzz_fixture("roundtrip.gguf", rt, rt_len, seed + 2, iters / 2);
    }
    free(small.p);
    free(nested.p);
    free(rt);
}

/* ---- 5. real files ----------------------------------------------------------------------------- */

static void check_real(const char *path, bool rewrite) {
    qf_error err = {0};
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return;
    const void *toks = NULL, *other = NULL;
    uint64_t n_tok = 0, n_other = 0;
    const char *model = "?";
    qf_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL);
    if (qf_gguf_get_arr(g, "tokenizer.ggml.tokens", QF_GGUF_STRING, &toks, &n_tok, &err) == QF_OK) {
        CHECK_MSG(n_tok > 0, "%s: empty vocabulary", path);
        if (qf_gguf_get_arr(g, "tokenizer.ggml.scores", QF_GGUF_F32, &other, &n_other, NULL) == QF_OK)
            CHECK_MSG(n_other == n_tok, "%s: %llu scores for %llu tokens", path, (unsigned long long)n_other,
                      (unsigned long long)n_tok);
        if (qf_gguf_get_arr(g, "tokenizer.ggml.token_type", QF_GGUF_I32, &other, &n_other, NULL) == QF_OK)
            CHECK_MSG(n_other == n_tok, "%s: %llu token types for %llu tokens", path, (unsigned long long)n_other,
                      (unsigned long long)n_tok);
        const qf_gguf_str *s = toks;
        uint64_t unterminated = 0;
        for (uint64_t i = 0; i < n_tok; i++) unterminated += s[i].ptr[s[i].len] != '\0';
        CHECK(unterminated == 0);
    } else {
        CHECK_MSG(false, "%s: %s", path, err.msg);
    }
    const char *slash = strrchr(path, '/');
    printf("real: %s: v%u, %zu keys, %zu tensors, tokenizer %s with %llu tokens\n", slash ? slash + 1 : path,
           qf_gguf_version(g), qf_gguf_n_kv(g), qf_gguf_n_tensors(g), model, (unsigned long long)n_tok);
    touch_all(g);
    qf_gguf_close(g);
    if (rewrite) {
        char out[4096], name[300];
        snprintf(name, sizeof name, "rewrite-%.280s", slash ? slash + 1 : path);
        qf_test_path(name, out, sizeof out);
        bool same = rewrite_identical(path, out);
        printf("real: %s rewritten through the writer: %s\n", slash ? slash + 1 : path,
               same ? "byte-identical" : "DIFFERENT");
        CHECK_MSG(same, "%s: rewrite differs", path);
    }
}

static void test_real_files(void) {
    static const char *const dirs[] = {"tokenizer-tests", "models/reference-gguf"};
    for (size_t i = 0; i < QF_ARRAY_LEN(dirs); i++) {
        char dir[4096];
        if (!qf_test_shared(dirs[i], dir, sizeof dir)) continue;
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0) continue;
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            check_real(path, true);
            n++;
        }
        if (d) closedir(d);
        printf("real: %d GGUF files under ../shared/%s\n", n, dirs[i]);
    }
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    char rt32[4096], rt64[4096], rt_copy[4096];
    test_round_trip(QF_GGUF_DEFAULT_ALIGNMENT, rt32, sizeof rt32);
    test_round_trip(64, rt64, sizeof rt64);
    CHECK(rewrite_identical(rt32, qf_test_path("rt-copy.gguf", rt_copy, sizeof rt_copy)));
    CHECK(rewrite_identical(rt64, rt_copy));
    test_writer_errors();
    test_nested();
    test_catalogue();
    test_fuzz(rt32);
    test_real_files();
    return qf_test_finish();
}
