/*
 * llama.cpp's legacy imatrix.dat (the layout tools/imatrix/imatrix.cpp writes with --output-format dat;
 * formats/imatrix.c): files built here byte by byte from that layout load with the right names, values,
 * counts, chunk count and dataset; every truncation and each malformed field fails with a message naming
 * the file; and quantizing with a .dat gives the same tensor bytes as with the GGUF imatrix holding the
 * same importance.
 */
#include "testutil.h"

#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "qforge.h"

#include <math.h>

typedef struct buf {
    uint8_t b[4096];
    size_t n;
} buf;

static void put_i32(buf *w, int32_t v) { memcpy(w->b + w->n, &v, 4); w->n += 4; }
static void put_f32(buf *w, float v) { memcpy(w->b + w->n, &v, 4); w->n += 4; }
static void put_bytes(buf *w, const char *s, size_t n) { memcpy(w->b + w->n, s, n); w->n += n; }
static void put_name(buf *w, const char *s) { put_i32(w, (int32_t)strlen(s)); put_bytes(w, s, strlen(s)); }

/* Offsets of the fields the malformed cases change. */
typedef struct layout {
    size_t n_entries, len0, name0, ncall0, nval0, val0, end_entries, chunks, ds_len, end;
} layout;

/* Two entries (3 and 2 values), then chunk count 7 and dataset "wiki.txt". */
static layout valid_file(buf *w) {
    layout L;
    w->n = 0;
    L.n_entries = w->n; put_i32(w, 2);
    L.len0 = w->n; L.name0 = w->n + 4; put_name(w, "blk.0.attn_q.weight");
    L.ncall0 = w->n; put_i32(w, 4);
    L.nval0 = w->n; put_i32(w, 3);
    L.val0 = w->n; put_f32(w, 4.0f); put_f32(w, 2.0f); put_f32(w, 0.5f);
    put_name(w, "output.weight");
    put_i32(w, 0); /* ncall 0: llama-quantize uses the values as they are */
    put_i32(w, 2); put_f32(w, 3.0f); put_f32(w, 1.0f);
    L.end_entries = w->n;
    L.chunks = w->n; put_i32(w, 7);
    L.ds_len = w->n; put_name(w, "wiki.txt");
    L.end = w->n;
    return L;
}

static qf_status load_bytes(const buf *w, size_t n, qf_imatrix *im, qf_error *err) {
    char path[4096];
    qf_test_path("x.imatrix.dat", path, sizeof path);
    qf_test_write_file(path, w->b, n);
    return qf_imatrix_load(path, im, err);
}

static void loads_right(void) {
    buf w;
    layout L = valid_file(&w);
    qf_imatrix im;
    qf_error err;
    CHECK_OK(load_bytes(&w, w.n, &im, &err), &err);
    CHECK(im.n == 2 && im.chunk_count == 7 && im.n_datasets == 1 && !strcmp(im.datasets[0], "wiki.txt"));
    const qf_imatrix_entry *q = qf_imatrix_find(&im, "blk.0.attn_q.weight"), *o = qf_imatrix_find(&im, "output.weight");
    CHECK(q && q->n_cols == 3 && q->n_mat == 1 && o && o->n_cols == 2);
    float imp[3];
    if (q) { qf_imatrix_weights(q, NULL, imp); CHECK(imp[0] == 1.0f && imp[1] == 0.5f && imp[2] == 0.125f); } /* value / ncall */
    if (o) { qf_imatrix_weights(o, NULL, imp); CHECK(imp[0] == 3.0f && imp[1] == 1.0f); }
    qf_imatrix_free(&im);
    /* the trailer is optional: without it, or with the chunk count alone */
    CHECK_OK(load_bytes(&w, L.end_entries, &im, &err), &err);
    CHECK(im.n == 2 && im.chunk_count == 0 && im.n_datasets == 0);
    qf_imatrix_free(&im);
    CHECK_OK(load_bytes(&w, L.chunks + 4, &im, &err), &err);
    CHECK(im.n == 2 && im.chunk_count == 7 && im.n_datasets == 0);
    qf_imatrix_free(&im);
}

static void expect_bad(const buf *w, size_t n, const char *what) {
    qf_imatrix im;
    qf_error err;
    qf_status st = load_bytes(w, n, &im, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "x.imatrix.dat"), "%s: %s: %s", what, qf_status_name(st), err.msg);
    if (st == QF_OK) qf_imatrix_free(&im);
}

static void rejects_malformed(void) {
    buf w;
    layout L = valid_file(&w);
    /* every prefix but the three valid ends fails */
    for (size_t n = 0; n < L.end; n++) {
        if (n == L.end_entries || n == L.chunks + 4) continue;
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", n);
        expect_bad(&w, n, what);
    }
    struct { size_t at; int32_t v; const char *what; } ints[] = {
        {L.n_entries, 0, "no entries"}, {L.n_entries, -1, "negative entry count"}, {L.n_entries, 3, "more entries than present"},
        {L.len0, 0, "empty name"}, {L.len0, -5, "negative name length"}, {L.len0, 1 << 20, "name longer than the file"},
        {L.ncall0, -1, "negative ncall"}, {L.nval0, 0, "no values"}, {L.nval0, 1 << 28, "values past the end"},
        {L.chunks, -2, "negative chunk count"}, {L.ds_len, 100, "dataset longer than the rest"},
        {L.ds_len, 2, "bytes after the dataset"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(ints); i++) {
        buf m = w;
        memcpy(m.b + ints[i].at, &ints[i].v, 4);
        expect_bad(&m, m.n, ints[i].what);
    }
    float floats[] = {NAN, INFINITY, -1.0f};
    for (size_t i = 0; i < QF_ARRAY_LEN(floats); i++) {
        buf m = w;
        memcpy(m.b + L.val0 + 4, &floats[i], 4);
        expect_bad(&m, m.n, "non-finite or negative value");
    }
    buf m = w;
    m.b[L.name0 + 3] = '\0';
    expect_bad(&m, m.n, "NUL in a name");
    /* the same name twice */
    buf d;
    d.n = 0;
    put_i32(&d, 2);
    for (int k = 0; k < 2; k++) { put_name(&d, "a.weight"); put_i32(&d, 1); put_i32(&d, 1); put_f32(&d, 1.0f); }
    expect_bad(&d, d.n, "duplicate name");
    m = w;
    m.b[m.n++] = 0;
    expect_bad(&m, m.n, "a trailing byte");
}

/* Quantizing with a .dat whose values are the GGUF imatrix's means (ncall 1) writes the same tensors. */
static void quantizes_the_same(void) {
    char dir[4096], text[4096], gg[4096], dat[4096], q1[4096], q2[4096];
    qf_error err;
    qf_synth_opts so = {.dir = qf_test_fresh_dir("m", dir, sizeof dir), .seed = 3, .n_layer = 2, .n_embd = 64, .n_ff = 128,
                        .n_vocab = 300, .dtype = "bf16"};
    CHECK_OK(qf_synth_model(&so, &err), &err);
    FILE *f = fopen(qf_test_path("text.txt", text, sizeof text), "w");
    uint64_t rng = 11;
    static const char *const words[] = {"alpha", "beta", "gamma", "delta", "the", "a", "of", "and"};
    for (int i = 0; f && i < 3000; i++) fprintf(f, "%s ", words[qf_test_rand(&rng) % 8]);
    if (f) fclose(f);
    qf_calibrate_opts co = {.model = dir, .text_path = text, .out = qf_test_path("im.gguf", gg, sizeof gg), .ctx = 64,
                            .chunks = 4, .threads = 1};
    CHECK_OK(qf_calibrate(&co, &err), &err);
    qf_imatrix im;
    CHECK_OK(qf_imatrix_load(gg, &im, &err), &err);
    FILE *o = fopen(qf_test_path("im.dat", dat, sizeof dat), "wb");
    int32_t v = (int32_t)im.n;
    fwrite(&v, 4, 1, o);
    for (size_t i = 0; i < im.n; i++) {
        const qf_imatrix_entry *e = &im.e[i];
        int32_t len = (int32_t)strlen(e->name), ncall = 1, nval = (int32_t)e->n_cols;
        fwrite(&len, 4, 1, o);
        fwrite(e->name, 1, (size_t)len, o);
        fwrite(&ncall, 4, 1, o);
        fwrite(&nval, 4, 1, o);
        for (uint32_t j = 0; j < e->n_cols; j++) {
            float x = (float)(e->sum2[j] / e->counts[0]);
            fwrite(&x, 4, 1, o);
        }
    }
    fclose(o);
    qf_imatrix_free(&im);
    qf_convert_opts a = {.src = dir, .out = qf_test_path("q-gguf.gguf", q1, sizeof q1), .recipe = "q4_k_m", .imatrix = gg,
                         .threads = 1};
    qf_convert_opts b = a;
    b.out = qf_test_path("q-dat.gguf", q2, sizeof q2);
    b.imatrix = dat;
    CHECK_OK(qf_convert(&a, &err), &err);
    CHECK_OK(qf_convert(&b, &err), &err);
    qf_gguf *ga = NULL, *gb = NULL;
    CHECK_OK(qf_gguf_open(q1, &ga, &err), &err);
    CHECK_OK(qf_gguf_open(q2, &gb, &err), &err);
    if (!ga || !gb) return;
    CHECK(qf_gguf_n_tensors(ga) == qf_gguf_n_tensors(gb));
    size_t same = 0;
    for (size_t i = 0; i < qf_gguf_n_tensors(ga); i++) {
        const qf_gguf_tensor *x = qf_gguf_tensor_at(ga, i), *y = qf_gguf_tensor_at(gb, i);
        same += x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
    }
    CHECK_MSG(same == qf_gguf_n_tensors(ga), "%zu of %zu tensors equal", same, qf_gguf_n_tensors(ga));
    qf_gguf_close(ga);
    qf_gguf_close(gb);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    loads_right();
    rejects_malformed();
    quantizes_the_same();
    return qf_test_finish();
}
