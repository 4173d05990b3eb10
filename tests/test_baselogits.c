/*
 * Saved base logits (verify --save-base / --base-logits): the file round-trips (with a MoE base's routes,
 * and version 1 without them is still read) and refuses every damaged or inconsistent form; a verify against the file reproduces the live comparison (exactly with every
 * token kept, as a lower bound with fewer); a file made for another text, setting, vocabulary or base is
 * refused naming what differs; the default batch does not change results.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/baselogits.h"

#include <math.h>
#include <openssl/evp.h>

static char base_dir[4096], model_path[4096], text[4096], text2[4096];

static void write_text(const char *path, int seed) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 60; i++)
        fprintf(f, "once upon a time there was a little girl who liked to read stories about dragons, ships and the "
                   "sea. the quick brown fox jumps over the lazy dog %d times.\n", i * seed);
    fclose(f);
}

/* ---- the format --------------------------------------------------------------------------------------- */

static qf_baselogits_header small_header(void) {
    qf_baselogits_header h = {.k = 3, .n_vocab = 10, .ctx = 8, .n_chunks = 2, .first = 4, .flags = QF_BASELOGITS_FLAG_BOS,
                              .n_tokens = 17, .n_scored = 6};
    for (int i = 0; i < 32; i++) { h.base[i] = (uint8_t)i; h.vocab[i] = (uint8_t)(2 * i); }
    snprintf(h.label, sizeof h.label, "base/model");
    return h;
}

static void write_small(const char *path, const qf_baselogits_header *h) {
    qf_baselogits_writer *w;
    qf_error err;
    CHECK_OK(qf_baselogits_writer_open(path, h, &w, &err), &err);
    if (!w) return;
    for (uint64_t i = 0; i < h->n_scored; i++) {
        uint32_t ids[3] = {(uint32_t)i % 10, (uint32_t)(i + 3) % 10, (uint32_t)(i + 7) % 10};
        float lp[3] = {logf(0.5f), logf(0.25f), logf(0.125f)};
        CHECK_OK(qf_baselogits_write(w, 1.5f + (float)i, 0.125f, ids, lp, NULL, &err), &err);
    }
    CHECK_OK(qf_baselogits_writer_finish(w, &err), &err);
}

/* Parse a copy of bytes with byte `at` replaced (at < 0: unchanged) and length n; returns the status. */
static qf_status parse_edit(const uint8_t *bytes, size_t n, long at, uint8_t v, qf_error *err) {
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, bytes, n);
    if (at >= 0) c[at] = v;
    qf_baselogits b;
    qf_status st = qf_baselogits_parse("edited", c, n, &b, err);
    free(c);
    return st;
}

/* A version-1 file (before routes): the same bytes without the three route fields, sealed again. It is
 * still read, with no routes. */
static void test_version_1(const uint8_t *v2, size_t n) {
    size_t m = n - 12;
    uint8_t *v1 = malloc(m);
    memcpy(v1, v2, 180);
    memcpy(v1 + 180, v2 + 192, n - 32 - 192);
    v1[8] = 1;
    unsigned dl = 0;
    CHECK(EVP_Digest(v1, m - 32, v1 + m - 32, &dl, EVP_sha256(), NULL));
    qf_baselogits b;
    qf_error err;
    CHECK_OK(qf_baselogits_parse("v1", v1, m, &b, &err), &err);
    qf_baselogits_rec r = qf_baselogits_at(&b, 4);
    CHECK(b.h.version == 1 && b.h.route_layers == 0 && !strcmp(b.h.label, "base/model") && r.nll == 5.5f &&
          qf_baselogits_id(&r, 1) == 7);
    free(v1);
}

/* A mixture-of-experts base's routes: stored per record and read back; wrong ones refused by name. */
static void test_routes_format(void) {
    char path[4096];
    qf_test_path("routes.base", path, sizeof path);
    static const struct { const char *what, *msg; } cases[] = {
        {"valid", NULL}, {"outside", "outside the layer's experts"}, {"repeat", "layer 3's expert 2 is repeated"},
        {"order", "not ascending"}, {"k over experts", "not a mixture-of-experts layout"}};
    for (size_t c = 0; c < QF_ARRAY_LEN(cases); c++) {
        qf_baselogits_header h = small_header();
        h.route_layers = 2;
        h.route_k = c == 4 ? 5 : 2;
        h.n_expert = 4;
        h.route_layer[0] = c == 3 ? 3 : 1;
        h.route_layer[1] = c == 3 ? 1 : 3;
        qf_baselogits_writer *w;
        qf_error err;
        qf_status st = qf_baselogits_writer_open(path, &h, &w, &err);
        if (c == 4) { CHECK(st == QF_E_INPUT && strstr(err.msg, cases[c].msg)); continue; }
        CHECK_OK(st, &err);
        for (uint64_t i = 0; w && i < h.n_scored; i++) {
            uint32_t ids[3] = {1, 2, 3};
            float lp[3] = {logf(0.5f), logf(0.25f), logf(0.125f)};
            uint16_t ex[4] = {(uint16_t)(i % 4), (uint16_t)((i + 1) % 4), 2, (uint16_t)(c == 2 && i == 5 ? 2 : 0)};
            if (c == 1 && i == 3) ex[1] = 4;
            CHECK_OK(qf_baselogits_write(w, 1.0f, 0.125f, ids, lp, ex, &err), &err);
        }
        CHECK_OK(qf_baselogits_writer_finish(w, &err), &err);
        qf_baselogits b;
        st = qf_baselogits_load(path, &b, &err);
        if (cases[c].msg) {
            CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, cases[c].msg), "%s: %s", cases[c].what, err.msg);
            continue;
        }
        CHECK_OK(st, &err);
        CHECK(b.h.version == 2 && b.h.route_layers == 2 && b.h.route_k == 2 && b.h.n_expert == 4 &&
              b.h.route_layer[0] == 1 && b.h.route_layer[1] == 3 && b.rec_bytes == 8 + 24 + 8);
        for (uint64_t i = 0; b.bytes && i < h.n_scored; i++) {
            qf_baselogits_rec r = qf_baselogits_at(&b, i);
            CHECK(qf_baselogits_expert(&r, 0) == i % 4 && qf_baselogits_expert(&r, 1) == (i + 1) % 4 &&
                  qf_baselogits_expert(&r, 2) == 2 && qf_baselogits_expert(&r, 3) == 0 && qf_baselogits_logp(&r, 2) == logf(0.125f));
        }
        /* every byte is still covered: the route fields by their checks, layers and experts by the digest */
        size_t n;
        uint8_t *bytes = qf_test_read_file(path, &n);
        for (size_t i = 0; bytes && i < n; i++) {
            st = parse_edit(bytes, n, (long)i, bytes[i] ^ 0x40, &err);
            CHECK_MSG(st == QF_E_INPUT || st == QF_E_UNSUPPORTED, "byte %zu changed: %s", i, qf_status_name(st));
        }
        free(bytes);
        qf_baselogits_free(&b);
    }
}

static void test_format(void) {
    char path[4096];
    qf_test_path("small.base", path, sizeof path);
    qf_baselogits_header h = small_header();
    write_small(path, &h);
    qf_baselogits b;
    qf_error err;
    CHECK_OK(qf_baselogits_load(path, &b, &err), &err);
    if (b.bytes) {
        CHECK(b.h.k == 3 && b.h.n_scored == 6 && !strcmp(b.h.label, "base/model") && !memcmp(b.h.vocab, h.vocab, 32));
        qf_baselogits_rec r = qf_baselogits_at(&b, 4);
        CHECK(r.nll == 5.5f && r.tail == 0.125f && qf_baselogits_id(&r, 1) == 7 && qf_baselogits_logp(&r, 2) == logf(0.125f));
    }
    qf_baselogits_free(&b);
    size_t n;
    uint8_t *bytes = qf_test_read_file(path, &n);
    CHECK(bytes && n == 196 + 10 + 6 * 32 + 32 && qf_baselogits_parse("ok", bytes, n, &b, &err) == QF_OK);
    /* every byte is covered: header fields by their checks, records and label by the digest */
    for (size_t i = 0; i < n; i++) {
        qf_status st = parse_edit(bytes, n, (long)i, bytes[i] ^ 0x40, &err);
        CHECK_MSG(st == QF_E_INPUT || st == QF_E_UNSUPPORTED, "byte %zu changed: %s", i, qf_status_name(st));
    }
    for (size_t len = 0; len < n; len += 7) CHECK(parse_edit(bytes, len, -1, 0, &err) == QF_E_INPUT);
    CHECK(parse_edit(bytes, n, 8, 3, &err) == QF_E_UNSUPPORTED && strstr(err.msg, "version 3"));
    qf_baselogits_free(&b);
    test_version_1(bytes, n);
    free(bytes);

    /* semantic errors a writer with a valid digest can still make */
    static const struct { const char *what, *msg; } bad[] = {
        {"k", "does not fit a vocabulary"}, {"mass", "sum to"}, {"order", "non-increasing"}, {"repeat", "repeated"}};
    for (size_t c = 0; c < QF_ARRAY_LEN(bad); c++) {
        qf_baselogits_header hb = small_header();
        if (c == 0) hb.k = 11;
        qf_baselogits_writer *w;
        qf_status st = qf_baselogits_writer_open(path, &hb, &w, &err);
        if (c == 0) { CHECK(st == QF_E_INPUT && strstr(err.msg, bad[c].msg)); continue; }
        CHECK_OK(st, &err);
        for (uint64_t i = 0; w && i < hb.n_scored; i++) {
            uint32_t ids[3] = {1, 2, c == 3 ? 1u : 3u};
            float lp[3] = {logf(0.5f), logf(c == 2 ? 0.0625f : 0.25f), logf(c == 2 ? 0.25f : 0.125f)};
            CHECK_OK(qf_baselogits_write(w, 1.0f, c == 1 ? 0.5f : c == 2 ? 0.1875f : 0.125f, ids, lp, NULL, &err), &err);
        }
        CHECK_OK(qf_baselogits_writer_finish(w, &err), &err);
        st = qf_baselogits_load(path, &b, &err);
        CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, bad[c].msg) && strstr(err.msg, path), "%s: %s", bad[c].what, err.msg);
    }
    /* a vocabulary the header claims is not allocated: 4e9 tokens in a 400-byte file parse (verify then
     * refuses the mismatch with the model's) */
    h.n_vocab = 0xFFFFFFFFu;
    write_small(path, &h);
    CHECK_OK(qf_baselogits_load(path, &b, &err), &err);
    qf_baselogits_free(&b);
    h.n_vocab = 10;
    /* a writer that stops short leaves no file */
    remove(path);
    qf_baselogits_writer *w;
    CHECK_OK(qf_baselogits_writer_open(path, &h, &w, &err), &err);
    CHECK(qf_baselogits_writer_finish(w, &err) == QF_E_INTERNAL && !qf_test_file_exists(path));
}

/* ---- verify against a saved base ---------------------------------------------------------------------- */

static qf_verify_opts opts(void) {
    return (qf_verify_opts){.model = model_path, .base = base_dir, .text_path = text, .ctx = 64, .chunks = 4,
                            .threads = 2, .max_kld = -1, .max_ppl_increase = -1, .min_top1 = -1};
}

static bool close_to(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-12; }

static void test_verify_from_file(void) {
    char full[4096], few[4096];
    qf_test_path("full.base", full, sizeof full);
    qf_test_path("few.base", few, sizeof few);
    qf_error err;
    qf_verify_result live, saved, fromfile;
    qf_verify_opts o = opts();
    CHECK_OK(qf_verify(&o, &live, &err), &err);
    CHECK(live.kld_topk == 0 && live.kld_mean > 0);

    /* saving does not change the live result; every token kept reproduces it from the file */
    o.save_base = full;
    o.base_topk = 320;
    CHECK_OK(qf_verify(&o, &saved, &err), &err);
    CHECK(saved.kld_mean == live.kld_mean && saved.ppl_base == live.ppl_base && saved.top1_pct == live.top1_pct);
    qf_verify_opts l = opts();
    l.base = NULL;
    l.ctx = l.chunks = 0; /* the file's */
    l.base_logits = full;
    l.batch = 32; /* and any batch */
    CHECK_OK(qf_verify(&l, &fromfile, &err), &err);
    CHECK_MSG(fromfile.kld_topk == 320 && close_to(fromfile.kld_mean, live.kld_mean, 1e-5) &&
                  close_to(fromfile.kld_p99, live.kld_p99, 1e-4) && close_to(fromfile.ppl_base, live.ppl_base, 1e-6) &&
                  fromfile.ppl_model == live.ppl_model && fromfile.top1_pct == live.top1_pct &&
                  fromfile.n_scored == live.n_scored && close_to(fromfile.dp_rms_pct, live.dp_rms_pct, 1e-5),
              "from file: KLD %.9g vs %.9g, PPL base %.9g vs %.9g, top-1 %g vs %g", fromfile.kld_mean, live.kld_mean,
              fromfile.ppl_base, live.ppl_base, fromfile.top1_pct, live.top1_pct);

    /* 16 tokens and the tail: a lower bound (this random model spreads its mass thinly: 0.27 of it) */
    o.save_base = few;
    o.base_topk = 16;
    CHECK_OK(qf_verify(&o, &saved, &err), &err);
    l.base_logits = few;
    CHECK_OK(qf_verify(&l, &fromfile, &err), &err);
    CHECK_MSG(fromfile.kld_mean <= live.kld_mean && fromfile.kld_mean > 0 &&
                  fromfile.top1_pct == live.top1_pct,
              "top-16: KLD %.6g vs full %.6g", fromfile.kld_mean, live.kld_mean);
    /* thresholds apply to the file's numbers */
    l.max_kld = fromfile.kld_mean / 2;
    CHECK(qf_verify(&l, &fromfile, &err) == QF_E_CHECK && strstr(err.msg, "mean KLD"));

    /* the right base may be named; another one is refused */
    l = opts();
    l.base_logits = full;
    CHECK_OK(qf_verify(&l, &fromfile, &err), &err);
    l.base = model_path;
    qf_status st = qf_verify(&l, &fromfile, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "computed from another base model") && strstr(err.msg, base_dir), "%s",
              err.msg);

    /* another text, ctx, chunk count, --act, --no-escape */
    static const char *const cases[] = {"computed on another text",
                                        "computed with --ctx 64 over 4 chunks; this run asks for --ctx 32",
                                        "over 4 chunks; this run asks for --ctx 64 over 3", "computed with --act f32",
                                        "computed without --no-escape"};
    for (size_t c = 0; c < QF_ARRAY_LEN(cases); c++) {
        l = opts();
        l.base = NULL;
        l.base_logits = full;
        if (c == 0) l.text_path = text2;
        if (c == 1) l.ctx = 32;
        if (c == 2) l.chunks = 3;
        if (c == 3) l.act_q8 = true;
        if (c == 4) l.no_escape = true;
        st = qf_verify(&l, &fromfile, &err);
        CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, cases[c]) && strstr(err.msg, full), "case %zu: %s: %s", c,
                  qf_status_name(st), err.msg);
    }
    /* a model with another vocabulary */
    char other[4096];
    qf_test_fresh_dir("other-vocab", other, sizeof other);
    qf_synth_opts so = {.dir = other, .seed = 5, .n_layer = 1, .n_embd = 64, .n_ff = 128, .n_vocab = 400, .dtype = "bf16"};
    CHECK_OK(qf_synth_model(&so, &err), &err);
    l = opts();
    l.base = NULL;
    l.base_logits = full;
    l.model = other;
    st = qf_verify(&l, &fromfile, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "another vocabulary"), "%s", err.msg);
    /* both directions at once is a usage error */
    o = opts();
    o.save_base = few;
    o.base_logits = full;
    CHECK(qf_verify(&o, &fromfile, &err) == QF_E_USAGE);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_format();
    test_routes_format();
    qf_test_fresh_dir("base", base_dir, sizeof base_dir);
    qf_synth_opts so = {.dir = base_dir, .seed = 5, .n_layer = 2, .n_embd = 128, .n_ff = 256, .n_vocab = 320, .dtype = "bf16"};
    qf_error err;
    CHECK_OK(qf_synth_model(&so, &err), &err);
    qf_test_path("model-q4.gguf", model_path, sizeof model_path);
    qf_convert_opts co = {.src = base_dir, .out = model_path, .type = "q4_0", .threads = 2};
    CHECK_OK(qf_convert(&co, &err), &err);
    qf_test_path("text.txt", text, sizeof text);
    qf_test_path("text2.txt", text2, sizeof text2);
    write_text(text, 1);
    write_text(text2, 3);
    test_verify_from_file();
    return qf_test_finish();
}
