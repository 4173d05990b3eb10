/*
 * Saved base logits (verify --save-base / --base-logits): the file round-trips and refuses every damaged
 * or inconsistent form; a verify against the file reproduces the live comparison (exactly with every
 * token kept, as a lower bound with fewer); a file made for another text, setting, vocabulary or base is
 * refused naming what differs; the default batch does not change results.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/baselogits.h"

#include <math.h>

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
        CHECK_OK(qf_baselogits_write(w, 1.5f + (float)i, 0.125f, ids, lp, &err), &err);
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
    CHECK(bytes && n == 184 + 10 + 6 * 32 + 32 && qf_baselogits_parse("ok", bytes, n, &b, &err) == QF_OK);
    /* every byte is covered: header fields by their checks, records and label by the digest */
    for (size_t i = 0; i < n; i++) {
        qf_status st = parse_edit(bytes, n, (long)i, bytes[i] ^ 0x40, &err);
        CHECK_MSG(st == QF_E_INPUT || st == QF_E_UNSUPPORTED, "byte %zu changed: %s", i, qf_status_name(st));
    }
    for (size_t len = 0; len < n; len += 7) CHECK(parse_edit(bytes, len, -1, 0, &err) == QF_E_INPUT);
    CHECK(parse_edit(bytes, n, 8, 2, &err) == QF_E_UNSUPPORTED && strstr(err.msg, "version 2"));
    qf_baselogits_free(&b);
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
            CHECK_OK(qf_baselogits_write(w, 1.0f, c == 1 ? 0.5f : c == 2 ? 0.1875f : 0.125f, ids, lp, &err), &err);
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
