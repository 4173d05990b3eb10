/*
 * test_safetensors.c — the safetensors reader: dtype helpers, valid files of every dtype (unaligned data,
 * 0-d/4-d/zero-element tensors, metadata), shard sets and their errors, a catalogue of named malformed
 * files with expected status and message, seeded mutation fuzzing of every valid fixture, and the shared
 * checkpoints when ../shared is present.
 *
 * QF_SEED=<n> in the environment replays the fuzzing with another seed (the seed is printed).
 */
#include "testutil.h"

#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a tiny safetensors writer --------------------------------------------------------------------- */

typedef struct sbuf {
    uint8_t *p;
    size_t len, cap;
} sbuf;

static void sb_bytes(sbuf *b, const void *d, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { fprintf(stderr, "test: out of memory\n"); exit(3); }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

static QF_PRINTF(2, 3) void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_bytes(b, tmp, (size_t)QF_MIN(n, (int)sizeof tmp - 1));
}

/* Header JSON and data buffer under construction; tensors are laid out in the order they are added. */
typedef struct fixture {
    sbuf json, data;
    int n;
} fixture;

static void fx_begin(fixture *f, const char *meta_json) {
    memset(f, 0, sizeof *f);
    sb_printf(&f->json, "{");
    if (meta_json) { sb_printf(&f->json, "\"__metadata__\":%s", meta_json); f->n++; }
}

static void fx_add(fixture *f, const char *name, const char *dtype, uint32_t rank, const uint64_t *shape,
                   const void *bytes, size_t nbytes) {
    sb_printf(&f->json, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", f->n++ ? "," : "", name, dtype);
    for (uint32_t d = 0; d < rank; d++) sb_printf(&f->json, "%s%llu", d ? "," : "", (unsigned long long)shape[d]);
    sb_printf(&f->json, "],\"data_offsets\":[%zu,%zu]}", f->data.len, f->data.len + nbytes);
    sb_bytes(&f->data, bytes, nbytes);
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A whole file: u64 header length, header padded with spaces so the data starts at `data_mod8` modulo 8
 * (the Python writer pads to 8; odd values make every tensor's bytes unaligned), then the data. */
static uint8_t *st_assemble(const uint8_t *json, size_t json_len, unsigned data_mod8, const void *data,
                            size_t data_len, size_t *len) {
    size_t pad = (data_mod8 + 16 - (8 + json_len) % 8) % 8;
    size_t n = 8 + json_len + pad;
    uint8_t *buf = malloc(n + data_len + 1);
    if (!buf) exit(3);
    put_le64(buf, json_len + pad);
    memcpy(buf + 8, json, json_len);
    memset(buf + 8 + json_len, ' ', pad);
    if (data_len) memcpy(buf + n, data, data_len);
    *len = n + data_len;
    return buf;
}

static uint8_t *fx_finish(fixture *f, unsigned data_mod8, size_t *len) {
    sb_printf(&f->json, "}");
    uint8_t *buf = st_assemble(f->json.p, f->json.len, data_mod8, f->data.p, f->data.len, len);
    free(f->json.p);
    free(f->data.p);
    return buf;
}

static bool write_fixture(const char *path, fixture *f, unsigned data_mod8) {
    size_t len;
    uint8_t *buf = fx_finish(f, data_mod8, &len);
    bool ok = qf_test_write_file(path, buf, len);
    free(buf);
    return ok;
}

static void make_dir(const char *path) { mkdir(path, 0755); }

/* ---- dtype helpers ------------------------------------------------------------------------------- */

static void test_dtype_helpers(void) {
    for (int i = 0; i < QF_DT_COUNT; i++) {
        qf_dtype back;
        CHECK(qf_dtype_from_name(qf_dtype_name((qf_dtype)i), &back) && back == (qf_dtype)i);
        CHECK(qf_dtype_size((qf_dtype)i) >= 1 && qf_dtype_size((qf_dtype)i) <= 8);
    }
    qf_dtype dt;
    CHECK(!qf_dtype_from_name("f32", &dt));
    CHECK(!qf_dtype_from_name("F8_E4M3FN", &dt));
    CHECK(!qf_dtype_from_name("", &dt));
    CHECK(qf_dtype_size(QF_DT_F64) == 8 && qf_dtype_size(QF_DT_BF16) == 2 && qf_dtype_size(QF_DT_F8_E5M2) == 1);
    CHECK(qf_dtype_is_float(QF_DT_F8_E4M3) && qf_dtype_is_float(QF_DT_BF16) && !qf_dtype_is_float(QF_DT_I32));
    CHECK(!qf_dtype_is_float(QF_DT_BOOL) && !qf_dtype_is_float(QF_DT_U8));

    /* NaN encodings and an unaligned source. */
    uint8_t raw[16] = {0};
    float out[4];
    raw[1] = 0x7F; raw[2] = 0xFF; /* E4M3FN: both NaN */
    qf_dtype_decode(QF_DT_F8_E4M3, raw + 1, out, 2);
    CHECK(isnan(out[0]) && isnan(out[1]));
    raw[1] = 0x7E; raw[2] = 0x7C; /* E5M2: NaN, +inf */
    qf_dtype_decode(QF_DT_F8_E5M2, raw + 1, out, 2);
    CHECK(isnan(out[0]) && isinf(out[1]) && out[1] > 0);
    uint8_t f32[4] = {0x00, 0x00, 0xC0, 0x3F}; /* 1.5 */
    memcpy(raw + 3, f32, 4);
    qf_dtype_decode(QF_DT_F32, raw + 3, out, 1);
    CHECK(out[0] == 1.5f);
}

/* ---- valid files --------------------------------------------------------------------------------- */

/* One tensor per dtype, with element bit patterns and the F32 values they must decode to. */
typedef struct typed_tensor {
    const char *name, *dtype;
    uint32_t rank;
    uint64_t shape[4];
    uint32_t n;
    uint64_t raw[6];
    float expect[6];
} typed_tensor;

static const typed_tensor typed[] = {
    /* 3 bytes first, so every later tensor starts at an odd offset */
    {"u8.first", "U8", 1, {3}, 3, {1, 200, 7}, {1, 200, 7}},
    {"f64.vec", "F64", 1, {3}, 3, {0x3ff0000000000000, 0xc004000000000000, 0x4202a05f20000000}, {1, -2.5f, 1e10f}},
    {"f32.4d", "F32", 4, {1, 2, 1, 2}, 4, {0x3fc00000, 0xc0000000, 0x40500000, 0x3a83126f}, {1.5f, -2, 3.25f, 0.001f}},
    {"empty.mid", "F32", 2, {0, 4}, 0, {0}, {0}},
    {"f16.vec", "F16", 1, {6}, 6, {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0xFC00},
     {1, -2, 0.5f, 65504, 5.9604645e-08f, -INFINITY}},
    {"bf16.mat", "BF16", 2, {2, 2}, 4, {0x3F80, 0xC000, 0x4049, 0x8000}, {1, -2, 3.140625f, -0.0f}},
    {"e4m3.vec", "F8_E4M3", 1, {6}, 6, {0x38, 0xC0, 0x7E, 0x01, 0x80, 0xFE}, {1, -2, 448, 0.001953125f, -0.0f, -448}},
    {"e5m2.vec", "F8_E5M2", 1, {5}, 5, {0x3C, 0xC0, 0x7B, 0x01, 0x7C}, {1, -2, 57344, 1.52587890625e-05f, INFINITY}},
    {"i64.vec", "I64", 1, {2}, 2, {0xFFFFFFFFFFFFFFFB, 1ull << 40}, {-5, 1099511627776.0f}},
    {"i32.vec", "I32", 1, {2}, 2, {0xFFFFFFF9, 100000}, {-7, 100000}},
    {"i16.vec", "I16", 1, {2}, 2, {0xFED4, 300}, {-300, 300}},
    {"i8.vec", "I8", 1, {2}, 2, {0x80, 0x7F}, {-128, 127}},
    {"u64.vec", "U64", 1, {2}, 2, {0, 1ull << 50}, {0, 1125899906842624.0f}},
    {"u32.vec", "U32", 1, {1}, 1, {4000000000u}, {4000000000.0f}},
    {"u16.vec", "U16", 1, {2}, 2, {65535, 0}, {65535, 0}},
    {"bool.vec", "BOOL", 1, {3}, 3, {0, 1, 2}, {0, 1, 1}},
    {"scalar", "F32", 0, {0}, 1, {0x42280000}, {42}},
    {"empty.end", "BF16", 2, {3, 0}, 0, {0}, {0}},
};

static void typed_bytes(const typed_tensor *tt, uint8_t *out, size_t *nbytes) {
    qf_dtype dt;
    if (!qf_dtype_from_name(tt->dtype, &dt)) exit(3);
    uint32_t size = qf_dtype_size(dt);
    for (uint32_t i = 0; i < tt->n; i++)
        for (uint32_t b = 0; b < size; b++) out[i * size + b] = (uint8_t)(tt->raw[i] >> (8 * b));
    *nbytes = (size_t)tt->n * size;
}

#define ALLTYPES_META "{\"format\":\"pt\",\"note\":\"quoted \\\" and \\u00fc\"}"

static uint8_t *make_alltypes(size_t *len) {
    fixture f;
    fx_begin(&f, ALLTYPES_META);
    for (size_t i = 0; i < QF_ARRAY_LEN(typed); i++) {
        uint8_t bytes[64];
        size_t nb;
        typed_bytes(&typed[i], bytes, &nb);
        fx_add(&f, typed[i].name, typed[i].dtype, typed[i].rank, typed[i].shape, bytes, nb);
    }
    return fx_finish(&f, 3, len);
}

static bool same_float(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0; /* tells -0 from 0, which the F8/BF16 cases rely on */
}

static void check_typed_model(const qf_st_model *m) {
    CHECK(qf_st_n_tensors(m) == QF_ARRAY_LEN(typed));
    CHECK(qf_st_n_shards(m) == 1);
    size_t misaligned = 0;
    for (size_t i = 0; i < QF_ARRAY_LEN(typed); i++) {
        const typed_tensor *tt = &typed[i];
        const qf_st_tensor *t = qf_st_find(m, tt->name);
        CHECK_MSG(t != NULL, "tensor %s not found", tt->name);
        if (!t) continue;
        qf_dtype dt;
        CHECK(qf_dtype_from_name(tt->dtype, &dt) && t->dtype == dt);
        CHECK(t->n_dims == tt->rank);
        for (uint32_t d = 0; d < tt->rank && d < t->n_dims; d++) CHECK(t->shape[d] == tt->shape[d]);
        CHECK(t->n_elems == tt->n);
        CHECK(t->nbytes == (uint64_t)tt->n * qf_dtype_size(dt));
        CHECK(t->data != NULL && t->shard == 0);
        if (tt->n && (uintptr_t)t->data % qf_dtype_size(dt)) misaligned++;
        float out[6];
        qf_dtype_decode(t->dtype, t->data, out, t->n_elems);
        for (uint32_t k = 0; k < tt->n; k++)
            CHECK_MSG(same_float(out[k], tt->expect[k]), "%s[%u]: decoded %.9g, expected %.9g", tt->name, k,
                      (double)out[k], (double)tt->expect[k]);
    }
    CHECK_MSG(misaligned >= 8, "only %zu tensors were unaligned; the fixture should make most of them so", misaligned);
    for (size_t i = 1; i < qf_st_n_tensors(m); i++)
        CHECK(qf_st_tensor_at(m, i - 1)->offset <= qf_st_tensor_at(m, i)->offset);
    CHECK(qf_st_tensor_at(m, qf_st_n_tensors(m)) == NULL);
    CHECK(qf_st_find(m, "no.such.tensor") == NULL);
    CHECK(qf_st_find(m, "") == NULL);
}

static void test_valid_files(void) {
    char path[4096];
    qf_error err;
    size_t len;
    uint8_t *buf = make_alltypes(&len);
    CHECK(qf_test_write_file(qf_test_path("alltypes.safetensors", path, sizeof path), buf, len));

    qf_st_model *m = NULL;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    if (m) {
        check_typed_model(m);
        CHECK(strcmp(qf_st_shard_path(m, 0), path) == 0);
        qf_st_close(m);
    }

    /* The header alone: metadata, data_start, and data pointers left NULL. */
    qf_st_header h;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)buf[i] << (8 * i);
    CHECK_OK(qf_st_header_parse("alltypes", buf + 8, n, len, &h, &err), &err);
    CHECK(h.data_start == 8 + n && h.data_start % 8 == 3 && h.data_len == len - h.data_start);
    CHECK(h.n_tensors == QF_ARRAY_LEN(typed) && h.n_meta == 2);
    for (size_t i = 0; i < h.n_meta; i++) {
        if (!strcmp(h.meta_keys[i], "format")) CHECK(!strcmp(h.meta_vals[i], "pt"));
        else CHECK(!strcmp(h.meta_keys[i], "note") && !strcmp(h.meta_vals[i], "quoted \" and \xc3\xbc"));
    }
    for (size_t i = 0; i < h.n_tensors; i++) CHECK(h.tensors[i].data == NULL);
    qf_st_header_free(&h);
    qf_st_header_free(&h); /* idempotent */
    free(buf);

    /* Degenerate but legal: no tensors and no data; metadata only; null metadata. */
    static const char *const empties[] = {"{}", "{\"__metadata__\":{\"a\":\"b\"}}", "{\"__metadata__\":null}",
                                          "  {}  "};
    for (size_t i = 0; i < QF_ARRAY_LEN(empties); i++) {
        buf = st_assemble((const uint8_t *)empties[i], strlen(empties[i]), 0, NULL, 0, &len);
        snprintf(path, sizeof path, "%s/empty%zu.safetensors", qf_test_scratch, i);
        CHECK(qf_test_write_file(path, buf, len));
        m = NULL;
        CHECK_OK(qf_st_open(path, &m, &err), &err);
        if (m) CHECK(qf_st_n_tensors(m) == 0 && qf_st_find(m, "x") == NULL);
        qf_st_close(m);
        free(buf);
    }
}

/* Releasing a tensor's pages must not lose its bytes: they come back from the file on the next touch. */
static void test_release(void) {
    enum { N = 300000 }; /* ~1.2 MB, many whole pages */
    float *vals = malloc(N * sizeof *vals);
    if (!vals) exit(3);
    for (int i = 0; i < N; i++) vals[i] = (float)i * 0.5f;
    fixture f;
    fx_begin(&f, NULL);
    uint64_t sh1[1] = {1}, shn[1] = {N};
    uint8_t one = 9;
    fx_add(&f, "pad", "U8", 1, sh1, &one, 1);
    fx_add(&f, "big", "F32", 1, shn, vals, N * sizeof *vals);
    fx_add(&f, "tail", "U8", 1, sh1, &one, 1);
    char path[4096];
    CHECK(write_fixture(qf_test_path("release.safetensors", path, sizeof path), &f, 5));
    qf_st_model *m = NULL;
    qf_error err;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    if (m) {
        const qf_st_tensor *t = qf_st_find(m, "big");
        CHECK(t != NULL);
        if (!t) { qf_st_close(m); free(vals); return; }
        float *out = malloc(N * sizeof *out);
        if (!out) exit(3);
        qf_dtype_decode(t->dtype, t->data, out, N);
        CHECK(memcmp(out, vals, N * sizeof *out) == 0);
        for (size_t i = 0; i < qf_st_n_tensors(m); i++) qf_st_release(m, qf_st_tensor_at(m, i));
        qf_dtype_decode(t->dtype, t->data, out, N);
        CHECK(memcmp(out, vals, N * sizeof *out) == 0);
        CHECK(qf_st_find(m, "pad")->data[0] == 9 && qf_st_find(m, "tail")->data[0] == 9);
        free(out);
        qf_st_close(m);
    }
    free(vals);
}

/* ---- shard sets ---------------------------------------------------------------------------------- */

static const uint64_t shape4[1] = {4};

/* A shard file holding F32 [4] tensors named in `names` (NULL-terminated), values 1000*k + i. */
static void write_shard(const char *dir, const char *file, const char *const *names) {
    fixture f;
    fx_begin(&f, "{\"format\":\"pt\"}");
    for (int k = 0; names[k]; k++) {
        float v[4];
        for (int i = 0; i < 4; i++) v[i] = (float)(1000 * k + i);
        fx_add(&f, names[k], "F32", 1, shape4, v, sizeof v);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK(write_fixture(path, &f, 0));
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK(qf_test_write_file(path, text, strlen(text)));
}

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static void test_shards_ok(void) {
    char dir[2048], path[4096];
    qf_test_path("shard_ok", dir, sizeof dir);
    make_dir(dir);
    /* File order inside a shard differs from name order on purpose. */
    write_shard(dir, SHARD1, (const char *const[]){"b.weight", "a.weight", NULL});
    write_shard(dir, SHARD2, (const char *const[]){"c.weight", "a.bias", NULL});
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":64},\"weight_map\":{\"a.weight\":\"" SHARD1 "\",\"a.bias\":\"" SHARD2
               "\",\"b.weight\":\"" SHARD1 "\",\"c.weight\":\"" SHARD2 "\"}}");
    /* A stray file beside an index is ignored. */
    write_shard(dir, "consolidated.safetensors", (const char *const[]){"zzz", NULL});

    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *opens[] = {dir, path};
    for (size_t o = 0; o < 2; o++) {
        qf_st_model *m = NULL;
        qf_error err;
        CHECK_OK(qf_st_open(opens[o], &m, &err), &err);
        if (!m) continue;
        CHECK(qf_st_n_shards(m) == 2 && qf_st_n_tensors(m) == 4);
        CHECK(strstr(qf_st_shard_path(m, 0), SHARD1) && strstr(qf_st_shard_path(m, 1), SHARD2));
        static const char *const order[] = {"b.weight", "a.weight", "c.weight", "a.bias"};
        static const uint32_t shard[] = {0, 0, 1, 1};
        for (size_t i = 0; i < 4; i++) {
            const qf_st_tensor *t = qf_st_tensor_at(m, i);
            CHECK_MSG(t && !strcmp(t->name, order[i]) && t->shard == shard[i], "tensor %zu is %s", i,
                      t ? t->name : "NULL");
            CHECK(qf_st_find(m, order[i]) == t);
            float v[4];
            qf_dtype_decode(t->dtype, t->data, v, 4);
            CHECK(v[3] == (float)(1000 * (i % 2) + 3));
        }
        CHECK(qf_st_find(m, "zzz") == NULL);
        qf_st_close(m);
    }
    /* One shard opened on its own is a plain single file. */
    snprintf(path, sizeof path, "%s/%s", dir, SHARD2);
    qf_st_model *m = NULL;
    qf_error err;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    if (m) CHECK(qf_st_n_tensors(m) == 2 && qf_st_n_shards(m) == 1 && qf_st_find(m, "a.bias"));
    qf_st_close(m);
}

typedef struct shard_case {
    const char *name;
    const char *shard1[4], *shard2[4]; /* tensor names; empty first entry = no such file */
    const char *index;                 /* NULL = no index file */
    qf_status expect;
    const char *substr;
} shard_case;

#define IDX(body) "{\"weight_map\":{" body "}}"
static const shard_case shard_cases[] = {
    {"missing_shard", {"a"}, {NULL}, IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\""), QF_E_NOTFOUND,
     SHARD2 " is missing"},
    {"tensor_not_in_shard", {"a"}, {"b"}, IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\",\"z\":\"" SHARD2 "\""),
     QF_E_INPUT, "puts tensor 'z' in " SHARD2 ", but that file has no such tensor"},
    {"tensor_in_wrong_shard", {"a"}, {"b"}, IDX("\"a\":\"" SHARD2 "\",\"b\":\"" SHARD1 "\""), QF_E_INPUT,
     "puts tensor 'a' in " SHARD2 ", but it is in"},
    {"duplicate_across_shards", {"a", "dup"}, {"b", "dup"},
     IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\",\"dup\":\"" SHARD1 "\""), QF_E_INPUT,
     "tensor 'dup' appears in two shards"},
    {"unlisted_tensor", {"a", "extra"}, {"b"}, IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\""), QF_E_INPUT,
     "tensor 'extra' in"},
    {"listed_twice", {"a"}, {"b"}, IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\",\"a\":\"" SHARD2 "\""), QF_E_INPUT,
     "key 'a' is defined twice (in 'weight_map')"},
    {"path_traversal", {"a"}, {"b"}, IDX("\"a\":\"../" SHARD1 "\",\"b\":\"" SHARD2 "\""), QF_E_INPUT,
     "expected a file name"},
    {"map_value_number", {"a"}, {"b"}, IDX("\"a\":1,\"b\":\"" SHARD2 "\""), QF_E_INPUT, "weight_map['a'] is 1"},
    {"no_weight_map", {"a"}, {"b"}, "{\"metadata\":{}}", QF_E_INPUT, "\"weight_map\" is missing"},
    {"empty_weight_map", {"a"}, {"b"}, IDX(""), QF_E_INPUT, "weight_map is empty"},
    {"index_not_json", {"a"}, {"b"}, "{\"weight_map\":", QF_E_INPUT, "not valid JSON"},
    {"bad_shard_inside", {"a"}, {"b"}, IDX("\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\""), QF_E_INPUT,
     "runs past the end of the file"}, /* shard 2 is overwritten with a bad header below */
    {"two_files_no_index", {"a"}, {"b"}, NULL, QF_E_INPUT, "2 .safetensors files"},
    {"no_files", {NULL}, {NULL}, NULL, QF_E_NOTFOUND, "no .safetensors file"},
};

static void test_shard_errors(void) {
    for (size_t c = 0; c < QF_ARRAY_LEN(shard_cases); c++) {
        const shard_case *sc = &shard_cases[c];
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/shard_%s", qf_test_scratch, sc->name);
        make_dir(dir);
        if (sc->shard1[0]) write_shard(dir, SHARD1, sc->shard1);
        if (sc->shard2[0]) write_shard(dir, SHARD2, sc->shard2);
        if (sc->index) write_text(dir, "model.safetensors.index.json", sc->index);
        if (!strcmp(sc->name, "bad_shard_inside")) {
            uint8_t bad[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, SHARD2);
            CHECK(qf_test_write_file(path, bad, sizeof bad));
        }
        qf_st_model *m = NULL;
        qf_error err;
        qf_error_clear(&err);
        qf_status st = qf_st_open(dir, &m, &err);
        printf("  shard %-26s %-11s %s\n", sc->name, qf_status_name(st), err.msg);
        CHECK_MSG(st == sc->expect, "%s: status %s, expected %s", sc->name, qf_status_name(st),
                  qf_status_name(sc->expect));
        CHECK_MSG(strstr(err.msg, sc->substr) != NULL, "%s: message lacks \"%s\"", sc->name, sc->substr);
        CHECK(m == NULL);
        qf_st_close(m);
    }

    /* Directory resolution: a lone oddly named file is the model; model.safetensors wins over others. */
    char dir[2048];
    qf_st_model *m = NULL;
    qf_error err;
    qf_test_path("dir_lone", dir, sizeof dir);
    make_dir(dir);
    write_shard(dir, "weights.safetensors", (const char *const[]){"only", NULL});
    CHECK_OK(qf_st_open(dir, &m, &err), &err);
    if (m) CHECK(qf_st_find(m, "only") != NULL);
    qf_st_close(m);
    qf_test_path("dir_prefer", dir, sizeof dir);
    make_dir(dir);
    write_shard(dir, "aaa.safetensors", (const char *const[]){"wrong", NULL});
    write_shard(dir, "model.safetensors", (const char *const[]){"right", NULL});
    m = NULL;
    CHECK_OK(qf_st_open(dir, &m, &err), &err);
    if (m) CHECK(qf_st_find(m, "right") != NULL && qf_st_find(m, "wrong") == NULL);
    qf_st_close(m);
    m = NULL;
    char path[4096];
    CHECK(qf_st_open(qf_test_path("does-not-exist.safetensors", path, sizeof path), &m, &err) == QF_E_NOTFOUND);
    CHECK(m == NULL && strstr(err.msg, "does-not-exist.safetensors"));
}

/* ---- catalogue of malformed files ---------------------------------------------------------------- */

#define NO_LEN UINT64_MAX
#define T4 "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"
#define ENTRY(body) "{\"t\":{" body "}}"

typedef struct bad_case {
    const char *name;
    const char *header;   /* header text; NULL: the file is just `raw_len` bytes of `raw` */
    size_t header_len;    /* 0: strlen(header) (set it to include NUL bytes) */
    uint64_t data_len;    /* zero bytes appended after the header */
    uint64_t len_field;   /* NO_LEN: the header's true length; else written as the u64 prefix */
    qf_status expect;
    const char *substr;
} bad_case;

static const bad_case bad_cases[] = {
    {"empty_file", NULL, 0, 0, NO_LEN, QF_E_INPUT, "shorter than the 8-byte header length"},
    {"truncated_prefix", NULL, 5, 0, NO_LEN, QF_E_INPUT, "shorter than the 8-byte header length"},
    {"header_len_past_file", "{}", 0, 0, 1000, QF_E_INPUT, "header length 1000 runs past the end of the file"},
    {"header_len_over_cap", "{}", 0, 0, (100u << 20) + 1, QF_E_INPUT, "exceeds the 104857600-byte limit"},
    {"header_len_u64_max", "{}", 0, 0, UINT64_MAX - 1, QF_E_INPUT, "exceeds the 104857600-byte limit"},
    {"header_len_zero", "{}", 0, 0, 0, QF_E_INPUT, "not valid JSON"},
    {"header_len_short", ENTRY(T4), 0, 4, 10, QF_E_INPUT, "not valid JSON"},
    {"not_json", "hello world", 0, 0, NO_LEN, QF_E_INPUT, "not valid JSON"},
    {"json_unterminated", "{\"t\":{\"dtype\":\"F32\"", 0, 0, NO_LEN, QF_E_INPUT, "not valid JSON"},
    {"json_array", "[1,2]", 0, 0, NO_LEN, QF_E_INPUT, "header JSON is an array, expected an object"},
    {"json_string", "\"x\"", 0, 0, NO_LEN, QF_E_INPUT, "header JSON is a string"},
    {"json_trailing", "{} {}", 0, 0, NO_LEN, QF_E_INPUT, "data after the JSON value at byte 3"},
    {"control_char", "{\"a\x01\":{}}", 0, 0, NO_LEN, QF_E_INPUT, "control character 0x01"},
    {"nul_padding", "{}\0\0", 4, 0, NO_LEN, QF_E_INPUT, "control character 0x00"},
    {"invalid_utf8", "{\"\xff\":{}}", 0, 0, NO_LEN, QF_E_INPUT, "not valid UTF-8 at byte 2"},
    {"overlong_utf8", "{\"\xc0\xaf\":{}}", 0, 0, NO_LEN, QF_E_INPUT, "not valid UTF-8"},
    {"surrogate_utf8", "{\"\xed\xa0\x80\":{}}", 0, 0, NO_LEN, QF_E_INPUT, "not valid UTF-8"},
    {"entry_not_object", "{\"t\":5}", 0, 0, NO_LEN, QF_E_INPUT, "tensor 't': entry is 5, expected an object"},
    {"dtype_missing", ENTRY("\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT, "dtype is missing"},
    {"dtype_unknown", ENTRY("\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "unknown dtype \"F33\""},
    {"dtype_lowercase", ENTRY("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "unknown dtype \"f32\""},
    {"dtype_number", ENTRY("\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "dtype is 32, expected a string"},
    {"dtype_unsupported", ENTRY("\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]"), 0, 1, NO_LEN,
     QF_E_UNSUPPORTED, "dtype F8_E8M0 is not supported"},
    {"shape_missing", ENTRY("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape is missing"},
    {"shape_not_array", ENTRY("\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape is 1, expected an array"},
    {"shape_negative", ENTRY("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape[0] is -1"},
    {"shape_float", ENTRY("\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape[1] is 2.5"},
    {"shape_float_integral", ENTRY("\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     QF_E_INPUT, "(\"1.0]"},
    {"shape_exponent", ENTRY("\"dtype\":\"U8\",\"shape\":[1e2],\"data_offsets\":[0,100]"), 0, 100, NO_LEN,
     QF_E_INPUT, "is not a plain integer"},
    {"shape_leading_zero", ENTRY("\"dtype\":\"U8\",\"shape\":[04],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     QF_E_INPUT, "(\"04]"},
    {"shape_string", ENTRY("\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape[0] is a string"},
    {"shape_null", ENTRY("\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape[0] is null"},
    {"shape_2pow53", ENTRY("\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     QF_E_INPUT, "expected an integer in [0, 2^53)"},
    {"shape_1e400", ENTRY("\"dtype\":\"U8\",\"shape\":[1E400],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape[0] is inf"},
    {"shape_product_overflow",
     ENTRY("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "shape [4294967296, 4294967296, 2] has more elements than fit in 64 bits"},
    {"bytes_overflow", ENTRY("\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]"), 0, 8,
     NO_LEN, QF_E_INPUT, "F64 [2147483648, 2147483648] takes more bytes than fit in 64 bits"},
    {"rank_9", ENTRY("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 0, 1, NO_LEN,
     QF_E_UNSUPPORTED, "shape has 9 dimensions, at most 8"},
    {"offsets_missing", ENTRY("\"dtype\":\"F32\",\"shape\":[1]"), 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets is missing"},
    {"offsets_object", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}"), 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets is an object"},
    {"offsets_one", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets has 1 entries"},
    {"offsets_three", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 0, 8, NO_LEN, QF_E_INPUT,
     "data_offsets has 3 entries"},
    {"offsets_negative", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 0, 4, NO_LEN,
     QF_E_INPUT, "data_offsets[0] is -4"},
    {"offsets_float", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]"), 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets[1] is 4.5"},
    {"offsets_huge", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]"), 0, 4,
     NO_LEN, QF_E_INPUT, "data_offsets[0] is 1.8446744073709552e+19"},
    {"offsets_reversed", ENTRY("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]"), 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets [4, 0] end before they begin"},
    {"offsets_lying_length", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     QF_E_INPUT, "data_offsets [0, 4] span 4 bytes, but F32 [2] needs 8"},
    {"offsets_past_end", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 0, 4, NO_LEN, QF_E_INPUT,
     "tensor 't': data_offsets [0, 8] exceed the data buffer (4 bytes)"},
    {"data_truncated", ENTRY("\"dtype\":\"U8\",\"shape\":[9000],\"data_offsets\":[0,9000]"), 0, 4096, NO_LEN,
     QF_E_INPUT, "data_offsets [0, 9000] exceed the data buffer (4096 bytes)"},
    {"overlap", "{\"a\":{" T4 "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}", 0, 10, NO_LEN,
     QF_E_INPUT, "tensor 'b': data_offsets [2, 10] overlap tensor 'a' which ends at 4"},
    {"same_span_twice", "{\"a\":{" T4 "},\"b\":{" T4 "}}", 0, 4, NO_LEN, QF_E_INPUT,
     "data_offsets [0, 4] overlap tensor 'a'"},
    {"hole_at_start", ENTRY("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]"), 0, 8, NO_LEN, QF_E_INPUT,
     "bytes [0, 4) of the data buffer belong to no tensor"},
    {"hole_between", "{\"a\":{" T4 "},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 0, 12,
     NO_LEN, QF_E_INPUT, "bytes [4, 8) of the data buffer belong to no tensor (hole before tensor 'b')"},
    {"trailing_garbage", ENTRY(T4), 0, 9, NO_LEN, QF_E_INPUT, "data buffer is 9 bytes but tensors cover only 4"},
    {"data_without_tensors", "{}", 0, 16, NO_LEN, QF_E_INPUT, "data buffer is 16 bytes but tensors cover only 0"},
    {"duplicate_name", "{\"a\":{" T4 "},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8,
     NO_LEN, QF_E_INPUT, "key 'a' is defined twice (at the top level)"},
    {"empty_name", "{\"\":{" T4 "}}", 0, 4, NO_LEN, QF_E_INPUT, "a tensor has an empty name"},
    {"metadata_array", "{\"__metadata__\":[\"pt\"]}", 0, 0, NO_LEN, QF_E_INPUT,
     "__metadata__ is an array, expected an object of strings"},
    {"metadata_number", "{\"__metadata__\":{\"format\":1}}", 0, 0, NO_LEN, QF_E_INPUT,
     "__metadata__ key 'format' is 1, expected a string"},
    {"metadata_nested", "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, 0, NO_LEN, QF_E_INPUT,
     "__metadata__ key 'a' is an object"},
    {"metadata_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, NO_LEN, QF_E_INPUT,
     "key '__metadata__' is defined twice"},
    {"name_with_newline", "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 4, NO_LEN,
     QF_E_INPUT, "tensor 'a?b': data_offsets [0, 4] span 4 bytes"},
    {"deep_nesting", NULL, 0, 0, NO_LEN, QF_E_INPUT, "not valid JSON"}, /* header built at run time */
};

static char deep_header[4100];

static void build_deep_header(void) {
    size_t n = 2000; /* past cJSON's nesting limit of 1000 */
    memset(deep_header, '[', n);
    memset(deep_header + n, ']', n);
    deep_header[2 * n] = 0;
}

static uint8_t *bad_file(const bad_case *bc, size_t *len) {
    static const uint8_t raw[8] = {1, 2, 3, 4, 5, 0, 0, 0};
    const char *header = strcmp(bc->name, "deep_nesting") ? bc->header : deep_header;
    if (!header) {
        uint8_t *buf = malloc(8);
        if (!buf) exit(3);
        memcpy(buf, raw, bc->header_len);
        *len = bc->header_len;
        return buf;
    }
    size_t hl = bc->header_len ? bc->header_len : strlen(header);
    uint8_t *zeros = calloc(1, bc->data_len + 1);
    if (!zeros) exit(3);
    /* No padding here: several cases depend on the exact header bytes. */
    uint8_t *buf = malloc(8 + hl + bc->data_len);
    if (!buf) exit(3);
    put_le64(buf, bc->len_field == NO_LEN ? hl : bc->len_field);
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, zeros, bc->data_len);
    free(zeros);
    *len = 8 + hl + bc->data_len;
    return buf;
}

static void test_catalogue(void) {
    build_deep_header();
    char dir[2048];
    qf_test_path("bad", dir, sizeof dir);
    make_dir(dir);
    printf("malformed-file catalogue (%zu cases):\n", QF_ARRAY_LEN(bad_cases));
    for (size_t c = 0; c < QF_ARRAY_LEN(bad_cases); c++) {
        const bad_case *bc = &bad_cases[c];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, bc->name);
        size_t len;
        uint8_t *buf = bad_file(bc, &len);
        CHECK(qf_test_write_file(path, buf, len));
        free(buf);
        qf_st_model *m = NULL;
        qf_error err;
        qf_error_clear(&err);
        qf_status st = qf_st_open(path, &m, &err);
        const char *msg = err.msg;
        const char *shown = strstr(msg, "/bad/") ? strstr(msg, "/bad/") + 5 : msg; /* drop the scratch prefix */
        printf("  %-24s %-11s %s\n", bc->name, qf_status_name(st), shown);
        CHECK_MSG(st == bc->expect, "%s: status %s, expected %s", bc->name, qf_status_name(st),
                  qf_status_name(bc->expect));
        CHECK_MSG(strstr(msg, bc->substr) != NULL, "%s: message lacks \"%s\"", bc->name, bc->substr);
        CHECK_MSG(strstr(msg, bc->name) != NULL, "%s: message does not name the file", bc->name);
        CHECK(strchr(msg, '\n') == NULL && m == NULL);
        qf_st_close(m);
    }
}

/* ---- mutation fuzzing ---------------------------------------------------------------------------- */

typedef struct fuzz_stats {
    unsigned ok, failed;
} fuzz_stats;

static uint64_t rnd(uint64_t *s, uint64_t n) { return n ? qf_test_rand(s) % n : 0; }

/* Parse a whole file image held in an exactly sized heap block (so ASan sees any overread) and, when it
 * is accepted, read every tensor byte the header claims. */
static void fuzz_parse(const uint8_t *buf, size_t len, fuzz_stats *fs) {
    if (len < 8) return;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)buf[i] << (8 * i);
    qf_st_header h;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_st_header_parse("fuzz", buf + 8, n, len, &h, &err);
    CHECK_MSG(st == QF_OK || st == QF_E_INPUT || st == QF_E_UNSUPPORTED, "status %s: %s", qf_status_name(st), err.msg);
    if (st != QF_OK) {
        CHECK(err.msg[0] && strchr(err.msg, '\n') == NULL && h.tensors == NULL && h.n_tensors == 0);
        fs->failed++;
        return;
    }
    fs->ok++;
    uint64_t expect = 0;
    for (size_t i = 0; i < h.n_tensors; i++) {
        const qf_st_tensor *t = &h.tensors[i];
        CHECK(t->offset == expect && t->n_elems * qf_dtype_size(t->dtype) == t->nbytes);
        expect = t->offset + t->nbytes;
        float *out = malloc(t->n_elems ? t->n_elems * sizeof *out : 1);
        if (!out) exit(3);
        qf_dtype_decode(t->dtype, buf + h.data_start + t->offset, out, t->n_elems);
        free(out);
    }
    CHECK(expect == h.data_len && h.data_start + h.data_len == len);
    qf_st_header_free(&h);
}

static const uint8_t interesting[] = {'"', '{', '}', '[', ']', ',', ':', '0', '1', '9', '-', '.', 'e', ' ',
                                      '\\', 0, 0x7f, 0x80, 0xc3, 0xff};

/* A few random edits, biased towards the header where the parser's decisions are. */
static size_t mutate(uint8_t *b, size_t len, size_t cap, uint64_t *s) {
    size_t hdr_end = len;
    if (len >= 8) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
        if (n < len - 8) hdr_end = 8 + (size_t)n;
    }
    int edits = 1 + (int)rnd(s, 4);
    for (int e = 0; e < edits && len; e++) {
        size_t pos = rnd(s, 5) ? (size_t)rnd(s, hdr_end) : (size_t)rnd(s, len);
        if (pos >= len) pos = len - 1; /* an earlier truncation may have cut the header short */
        switch (rnd(s, 8)) {
        case 0: b[pos] ^= (uint8_t)(1u << rnd(s, 8)); break;
        case 1: case 2: b[pos] = interesting[rnd(s, sizeof interesting)]; break;
        case 3: b[pos] = (uint8_t)rnd(s, 256); break;
        case 4: len = (size_t)rnd(s, len + 1); break; /* truncate */
        case 5: /* header length edits: off by a little, or anything */
            if (len >= 8) {
                uint64_t n = 0;
                for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
                n = rnd(s, 4) ? n + rnd(s, 17) - 8 : qf_test_rand(s) >> rnd(s, 64);
                put_le64(b, n);
            }
            break;
        case 6: /* delete a byte */
            memmove(b + pos, b + pos + 1, len - pos - 1);
            len--;
            break;
        case 7: /* insert a byte */
            if (len < cap) {
                memmove(b + pos + 1, b + pos, len - pos);
                b[pos] = interesting[rnd(s, sizeof interesting)];
                len++;
            }
            break;
        }
    }
    return len;
}

static void fuzz_fixture(const char *name, const uint8_t *file, size_t len, uint64_t seed, int iters) {
    fuzz_stats fs = {0, 0};
    uint64_t s = seed;
    size_t cap = len + 8;
    uint8_t *work = malloc(cap);
    if (!work) exit(3);
    for (int it = 0; it < iters; it++) {
        memcpy(work, file, len);
        size_t n = mutate(work, len, cap, &s);
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact) exit(3);
        memcpy(exact, work, n);
        fuzz_parse(exact, n, &fs);
        free(exact);
    }
    fuzz_parse(file, len, &fs); /* the unmutated fixture must itself pass */
    printf("  fuzz %-18s %d mutations: %u accepted, %u rejected\n", name, iters, fs.ok - 1, fs.failed);
    CHECK(fs.ok >= 1);
    free(work);
}

/* Mutate whole files through qf_st_open too, so the mmap path and index handling see bad input. */
static void fuzz_files(const char *name, const char *dir, const char *file, uint64_t seed, int iters) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len;
    uint8_t *orig = qf_test_read_file(path, &len);
    CHECK(orig != NULL);
    if (!orig) return;
    uint8_t *work = malloc(len + 8);
    if (!work) exit(3);
    uint64_t s = seed;
    unsigned ok = 0, failed = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(work, orig, len);
        size_t n = mutate(work, len, len + 8, &s);
        CHECK(qf_test_write_file(path, work, n));
        qf_st_model *m = NULL;
        qf_error err;
        qf_status st = qf_st_open(dir, &m, &err);
        CHECK_MSG(st == QF_OK || st == QF_E_INPUT || st == QF_E_UNSUPPORTED || st == QF_E_NOTFOUND, "%s: %s",
                  qf_status_name(st), err.msg);
        for (size_t i = 0; m && i < qf_st_n_tensors(m); i++) {
            const qf_st_tensor *t = qf_st_tensor_at(m, i);
            volatile uint8_t sink = 0;
            for (uint64_t k = 0; k < t->nbytes; k++) sink ^= t->data[k];
            (void)sink;
        }
        if (st == QF_OK) ok++; else failed++;
        qf_st_close(m);
    }
    CHECK(qf_test_write_file(path, orig, len));
    printf("  fuzz %-18s %d file mutations: %u opened, %u rejected\n", name, iters, ok, failed);
    free(orig);
    free(work);
}

static void test_fuzz(void) {
    const char *env = getenv("QF_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5AFE7E45u;
    printf("mutation fuzzing, seed %llu (QF_SEED=<n> to replay another)\n", (unsigned long long)seed);

    size_t len;
    uint8_t *alltypes = make_alltypes(&len);
    fuzz_fixture("alltypes", alltypes, len, seed, 4000);
    free(alltypes);

    fixture f;
    fx_begin(&f, NULL);
    float v[6] = {1, 2, 3, 4, 5, 6};
    uint64_t sh[2] = {2, 3};
    fx_add(&f, "w", "F32", 2, sh, v, sizeof v);
    uint8_t *plain = fx_finish(&f, 0, &len);
    fuzz_fixture("plain", plain, len, seed + 1, 3000);
    free(plain);

    static const char *const empty = "{}";
    uint8_t *e = st_assemble((const uint8_t *)empty, 2, 0, NULL, 0, &len);
    fuzz_fixture("empty", e, len, seed + 2, 1000);
    free(e);

    char dir[2048];
    qf_test_path("shard_ok", dir, sizeof dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SHARD1);
    uint8_t *shard = qf_test_read_file(path, &len);
    CHECK(shard != NULL);
    if (shard) fuzz_fixture("shard", shard, len, seed + 3, 3000);
    free(shard);

    fuzz_files("shard-file", dir, SHARD2, seed + 4, 300);
    fuzz_files("index-file", dir, "model.safetensors.index.json", seed + 5, 300);
}

/* ---- the shared checkpoints ---------------------------------------------------------------------- */

typedef struct shared_model {
    const char *dir;
    size_t n_tensors, n_shards;
} shared_model;

static const shared_model shared_models[] = {
    {"models/stories260K", 47, 1},          {"models/stories260K-bf16", 47, 1},
    {"models/stories260K-f16-sharded", 47, 3}, {"models/stories260K-fp8", 82, 2},
    {"models/qf-llama-a", 57, 1},           {"models/qf-llama-a-fp8", 99, 2},
};

static bool ends_with_str(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool is_scale(const char *name) { return ends_with_str(name, "_scale_inv") || ends_with_str(name, "_scale"); }

/* REFERENCE.json's weight_dtypes counts tensors by dtype, FP8 scale tensors excluded. */
static void check_reference_dtypes(const char *dir, const size_t *counts) {
    char path[4096];
    snprintf(path, sizeof path, "%s/REFERENCE.json", dir);
    size_t len;
    uint8_t *text = qf_test_read_file(path, &len);
    if (!text) return;
    cJSON *root = cJSON_ParseWithLength((const char *)text, len);
    const cJSON *wd = cJSON_GetObjectItemCaseSensitive(root, "weight_dtypes");
    CHECK_MSG(cJSON_IsObject(wd), "%s has no weight_dtypes", path);
    size_t listed = 0;
    for (const cJSON *e = wd ? wd->child : NULL; e; e = e->next) {
        qf_dtype dt;
        CHECK_MSG(qf_dtype_from_name(e->string, &dt), "%s: dtype %s", path, e->string);
        CHECK_MSG(cJSON_IsNumber(e) && counts[dt] == (size_t)e->valuedouble, "%s: %s count %zu, reference %g", dir,
                  e->string, counts[dt], e->valuedouble);
        listed += counts[dt];
    }
    size_t total = 0;
    for (int d = 0; d < QF_DT_COUNT; d++) total += counts[d];
    CHECK_MSG(listed == total, "%s: dtypes beyond the reference's weight_dtypes", dir);
    cJSON_Delete(root);
    free(text);
}

static void test_shared_models(void) {
    for (size_t i = 0; i < QF_ARRAY_LEN(shared_models); i++) {
        const shared_model *sm = &shared_models[i];
        char dir[2048];
        if (!qf_test_shared(sm->dir, dir, sizeof dir)) continue;
        qf_st_model *m = NULL;
        qf_error err;
        CHECK_OK(qf_st_open(dir, &m, &err), &err);
        if (!m) continue;
        CHECK_MSG(qf_st_n_tensors(m) == sm->n_tensors && qf_st_n_shards(m) == sm->n_shards,
                  "%s: %zu tensors in %zu shards", sm->dir, qf_st_n_tensors(m), qf_st_n_shards(m));
        size_t counts[QF_DT_COUNT] = {0};
        bool finite = true;
        for (size_t k = 0; k < qf_st_n_tensors(m); k++) {
            const qf_st_tensor *t = qf_st_tensor_at(m, k);
            CHECK(t->n_dims >= 1 && t->n_dims <= 2 && t->n_elems > 0 && t->data != NULL);
            CHECK(qf_st_find(m, t->name) == t);
            CHECK(qf_dtype_is_float(t->dtype));
            if (!is_scale(t->name)) counts[t->dtype]++;
            float sample[256];
            uint64_t n = QF_MIN(t->n_elems, (uint64_t)QF_ARRAY_LEN(sample));
            qf_dtype_decode(t->dtype, t->data, sample, n);
            for (uint64_t j = 0; j < n; j++) finite = finite && isfinite(sample[j]);
            qf_st_release(m, t);
        }
        CHECK_MSG(finite, "%s: non-finite values in tensor samples", sm->dir);
        const qf_st_tensor *emb = qf_st_find(m, "model.embed_tokens.weight");
        CHECK(emb && emb->n_dims == 2 && emb->shape[0] >= 512);
        check_reference_dtypes(dir, counts);
        printf("  %-32s %zu tensors, %zu shard(s)\n", sm->dir, qf_st_n_tensors(m), qf_st_n_shards(m));
        qf_st_close(m);
    }
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_dtype_helpers();
    test_valid_files();
    test_release();
    test_shards_ok();
    test_shard_errors();
    test_catalogue();
    test_fuzz();
    test_shared_models();
    return qf_test_finish();
}
