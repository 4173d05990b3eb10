/*
 * qforge quantize: plan semantics (recipes, overrides, fallbacks, policies), importance matrices
 * (round trip, llama.cpp interchange, mismatches), provenance keys, determinism across threads, an FP8
 * release straight to the fp8-int4 mix, and bad options leaving no output.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/arch.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/source.h"
#include "kernels/qtypes.h"
#include "quantize/plan.h"

#include <math.h>
#include <unistd.h>

/* Build a plan for a model directory with the given options. */
static qf_status plan_for(const char *dir, const qf_plan_opts *po, qf_plan *plan, qf_hparams *hp, qf_error *err) {
    qf_source *src;
    qf_status st = qf_source_open(dir, &src, err);
    if (st) return st;
    char *cfg;
    size_t len;
    st = qf_source_read_file(src, "config.json", &cfg, &len, err);
    if (!st) { st = qf_hparams_from_hf("config.json", cfg, len, hp, err); free(cfg); }
    if (!st) st = qf_plan_build(src, hp, po, plan, err);
    qf_source_close(src);
    return st;
}

static const qf_plan_entry *entry(const qf_plan *p, const char *name) {
    for (size_t i = 0; i < p->n; i++) if (!strcmp(p->e[i].name, name)) return &p->e[i];
    return NULL;
}

static const char *type_of(const qf_plan *p, const char *name) {
    const qf_plan_entry *e = entry(p, name);
    return e ? qf_qtype_get(e->type)->name : "(missing)";
}

static void test_recipe_rules(void) {
    char dir[4096];
    /* 8 layers so llama.cpp's use_more_bits pattern is visible: i < n/8, i >= 7n/8, (i - n/8) % 3 == 2
     * select layers 0, 3, 6, 7 */
    qf_test_fresh_dir("rules", dir, sizeof dir);
    qf_synth_opts so = {.dir = dir, .seed = 3, .n_layer = 8, .n_embd = 256, .n_ff = 512, .n_vocab = 320, .dtype = "bf16"};
    qf_error err;
    CHECK_OK(qf_synth_model(&so, &err), &err);
    qf_plan plan;
    qf_hparams hp;
    qf_plan_opts po = {.recipe = qf_recipe_by_name("Q4_K_M")};
    CHECK(po.recipe != NULL);
    CHECK_OK(plan_for(dir, &po, &plan, &hp, &err), &err);
    const bool more[8] = {1, 0, 0, 1, 0, 0, 1, 1};
    for (int l = 0; l < 8; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", l);
        CHECK_MSG(!strcmp(type_of(&plan, n), more[l] ? "q6_K" : "q4_K"), "%s is %s", n, type_of(&plan, n));
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l);
        CHECK_MSG(!strcmp(type_of(&plan, n), more[l] ? "q6_K" : "q4_K"), "%s is %s", n, type_of(&plan, n));
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        CHECK(!strcmp(type_of(&plan, n), "q4_K"));
        snprintf(n, sizeof n, "blk.%d.attn_norm.weight", l);
        CHECK(!strcmp(type_of(&plan, n), "f32"));
    }
    CHECK(!strcmp(type_of(&plan, "output.weight"), "q6_K"));
    CHECK(!strcmp(type_of(&plan, "token_embd.weight"), "q4_K"));
    qf_plan_free(&plan);

    /* Overrides: first match wins and beats the recipe; the reason names the override. */
    qf_type_override ov[2];
    CHECK_OK(qf_type_override_parse("blk\\.[0-3]\\.attn_v=q8_0", &ov[0], &err), &err);
    CHECK_OK(qf_type_override_parse("attn_v=q5_K", &ov[1], &err), &err);
    po.overrides = ov;
    po.n_overrides = 2;
    CHECK_OK(plan_for(dir, &po, &plan, &hp, &err), &err);
    CHECK(!strcmp(type_of(&plan, "blk.2.attn_v.weight"), "q8_0"));
    CHECK(!strcmp(type_of(&plan, "blk.5.attn_v.weight"), "q5_K"));
    CHECK(strstr(entry(&plan, "blk.5.attn_v.weight")->reason, "override 'attn_v=q5_K'") != NULL);
    CHECK(!strcmp(type_of(&plan, "blk.6.ffn_down.weight"), "q6_K"));
    qf_plan_free(&plan);
    qf_type_override_free(&ov[0]);
    qf_type_override_free(&ov[1]);

    /* Bad override specs are usage errors naming the spec. */
    static const char *const bad[] = {"attn_v", "=q4_K", "attn_v=", "attn_v=q9_Z", "attn_v[=q4_K"};
    for (size_t i = 0; i < QF_ARRAY_LEN(bad); i++) {
        qf_type_override o;
        qf_status st = qf_type_override_parse(bad[i], &o, &err);
        CHECK_MSG(st == QF_E_USAGE && strstr(err.msg, bad[i]), "'%s': %d %s", bad[i], st, err.msg);
    }
}

static void test_fallbacks(void) {
    char dir[4096];
    /* rows of 192 and 200: not multiples of 256 (K-quants) and 200 not of 32 either */
    qf_test_make_model("fallback", 192, 200, "bf16", dir, sizeof dir);
    qf_plan plan;
    qf_hparams hp;
    qf_error err;
    qf_plan_opts po = {.recipe = qf_recipe_by_name("q4_k_m")};
    CHECK_OK(plan_for(dir, &po, &plan, &hp, &err), &err);
    CHECK(!strcmp(type_of(&plan, "blk.1.attn_q.weight"), "q5_0"));     /* q4_K -> q5_0 */
    CHECK(!strcmp(type_of(&plan, "output.weight"), "q8_0"));           /* q6_K -> q8_0 */
    CHECK(!strcmp(type_of(&plan, "blk.0.ffn_down.weight"), "f16"));    /* 200: nothing fits but F16 */
    CHECK(strstr(entry(&plan, "blk.0.ffn_down.weight")->reason, "fallback") != NULL);
    qf_plan_free(&plan);
}

static qf_status quantize(const char *src, const char *out, const char *recipe, const char *type, const char *imatrix,
                          int threads, qf_error *err) {
    qf_convert_opts o = {.src = src, .out = out, .recipe = recipe, .type = type, .imatrix = imatrix, .threads = threads};
    return qf_convert(&o, err);
}

/* An imatrix with deterministic, uneven column importances for every linear weight of a model. */
static void make_imatrix(const char *model_gguf, const char *path) {
    qf_gguf *g;
    qf_error err;
    CHECK_OK(qf_gguf_open(model_gguf, &g, &err), &err);
    if (!g) return;
    qf_imatrix im = {.chunk_count = 3, .chunk_size = 128};
    uint64_t seed = 11;
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (t->n_dims != 2 || !strncmp(t->name, "token_embd", 10)) continue;
        qf_imatrix_entry *e = qf_imatrix_add(&im, t->name, (uint32_t)t->ne[0], 1);
        for (uint32_t j = 0; j < e->n_cols; j++) e->sum2[j] = 384.0 * exp(2.0 * qf_test_randn(&seed));
        e->counts[0] = 384;
    }
    im.calibration_sha256 = strdup("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    CHECK_OK(qf_imatrix_save(path, &im, &err), &err);
    /* Round trip: every entry reads back equal (sums are stored as F32). */
    qf_imatrix back;
    CHECK_OK(qf_imatrix_load(path, &back, &err), &err);
    CHECK(back.n == im.n && back.chunk_count == 3 && back.chunk_size == 128);
    CHECK(back.calibration_sha256 && !strcmp(back.calibration_sha256, im.calibration_sha256));
    for (size_t i = 0; i < im.n && i < back.n; i++) {
        CHECK(!strcmp(im.e[i].name, back.e[i].name) && im.e[i].n_cols == back.e[i].n_cols);
        for (uint32_t j = 0; j < im.e[i].n_cols; j++) CHECK(back.e[i].sum2[j] == (double)(float)im.e[i].sum2[j]);
    }
    qf_imatrix_free(&back);
    qf_imatrix_free(&im);
    qf_gguf_close(g);
}

static void test_imatrix_quantize(void) {
    char dir[4096], base[4096], im[4096], a[4096], b[4096];
    qf_test_make_model("imq", 256, 512, "bf16", dir, sizeof dir);
    qf_error err;
    qf_test_path("imq-f32.gguf", base, sizeof base);
    CHECK_OK(quantize(dir, base, NULL, "f32", NULL, 1, &err), &err);
    qf_test_path("imq.imatrix.gguf", im, sizeof im);
    make_imatrix(base, im);
    qf_test_path("imq-1.gguf", a, sizeof a);
    qf_test_path("imq-2.gguf", b, sizeof b);
    CHECK_OK(quantize(dir, a, "q4_k_m", NULL, im, 1, &err), &err);
    CHECK_OK(quantize(dir, b, "q4_k_m", NULL, im, 2, &err), &err);
    CHECK_MSG(qf_test_same_file(a, b), "weighted q4_k_m differs between 1 and 2 threads");
    /* Provenance: recipe, method, imatrix digest, calibration digest. */
    qf_gguf *g;
    CHECK_OK(qf_gguf_open(a, &g, &err), &err);
    if (g) {
        const char *v;
        CHECK(qf_gguf_get_str(g, "qforge.recipe", &v, NULL) == QF_OK && !strcmp(v, "q4_k_m"));
        CHECK(qf_gguf_get_str(g, "qforge.method", &v, NULL) == QF_OK && !strcmp(v, "weighted"));
        CHECK(qf_gguf_get_str(g, "qforge.imatrix_sha256", &v, NULL) == QF_OK && strlen(v) == 64);
        CHECK(qf_gguf_get_str(g, "qforge.calibration_sha256", &v, NULL) == QF_OK && v[0] == '0');
        uint32_t ft;
        CHECK(qf_gguf_get_u32(g, "general.file_type", &ft, NULL) == QF_OK && ft == 15);
        qf_gguf_close(g);
    }
    /* The importance weights change the result (and the unweighted run differs). */
    CHECK_OK(quantize(dir, b, "q4_k_m", NULL, NULL, 1, &err), &err);
    CHECK(!qf_test_same_file(a, b));
    /* An imatrix whose shapes do not match the model is an error, and nothing is written. */
    char other[4096], other_im[4096], out[4096];
    qf_test_make_model("imq-other", 320, 512, "bf16", other, sizeof other);
    qf_test_path("imq-mismatch.gguf", out, sizeof out);
    qf_status st = quantize(other, out, "q4_k_m", NULL, im, 1, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "imatrix entry"), "%d %s", st, err.msg);
    CHECK(!qf_test_file_exists(out));
    /* A non-imatrix GGUF given as --imatrix is refused by name. */
    snprintf(other_im, sizeof other_im, "%s", base);
    st = quantize(dir, out, "q4_k_m", NULL, other_im, 1, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "not an imatrix"), "%d %s", st, err.msg);
}

/* Rows of a quantized tensor equal the type's kernel called with the weights the policy names, byte for
 * byte: where the imatrix covers the tensor, the calibrated weights hedged by the row's magnitudes
 * (imp * sqrt(2 ms + x^2)) below 4 bits per weight and as they are from 4 bits up; where it does not (or
 * there is none), rms(x) + |x_i| below 4 bits and no weights from 4 bits up. */
typedef enum { EXPECT_PLAIN, EXPECT_CALIBRATED, EXPECT_HEDGED, EXPECT_MAGNITUDE } expect_w;

static void expected_weights(expect_w how, const float *x, const float *imp, uint64_t n, float *w) {
    double ss = 0;
    for (uint64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float two_ms = (float)(2.0 * ss / (double)n), rms = (float)sqrt(ss / (double)n);
    for (uint64_t i = 0; i < n; i++)
        w[i] = how == EXPECT_HEDGED ? imp[i] * sqrtf(two_ms + x[i] * x[i])
             : how == EXPECT_MAGNITUDE ? rms + fabsf(x[i]) : imp[i];
}

static void check_weighting(const char *dir, const char *base_gguf, const char *im_path, const char *type,
                            const char *name, expect_w how) {
    static const char *names[] = {"plain", "calibrated", "hedged", "magnitude"};
    char out[4096];
    snprintf(out, sizeof out, "%s-%s-%s-%s.gguf", base_gguf, type, names[how], im_path ? "im" : "none");
    qf_error err;
    CHECK_OK(quantize(dir, out, NULL, type, im_path, 2, &err), &err);
    qf_gguf *q = NULL, *b = NULL;
    qf_imatrix im = {0};
    CHECK_OK(qf_gguf_open(out, &q, &err), &err);
    CHECK_OK(qf_gguf_open(base_gguf, &b, &err), &err);
    if (im_path) CHECK_OK(qf_imatrix_load(im_path, &im, &err), &err);
    const qf_gguf_tensor *tq = q ? qf_gguf_find_tensor(q, name) : NULL, *tb = b ? qf_gguf_find_tensor(b, name) : NULL;
    const qf_imatrix_entry *ie = im_path ? qf_imatrix_find(&im, name) : NULL;
    const qf_qtype_traits *tt = qf_qtype_by_name(type);
    bool uses_imp = how == EXPECT_CALIBRATED || how == EXPECT_HEDGED;
    CHECK_MSG(tq && tb && tt && tq->type == tt->id && (ie || !uses_imp), "%s as %s", name, type);
    if (tq && tb && tt && tq->type == tt->id && (ie || !uses_imp)) {
        uint64_t n = tb->ne[0], rb = 0;
        qf_qtype_row_bytes(tt, n, &rb);
        float *imp = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        uint8_t *row = malloc(rb);
        if (ie) qf_imatrix_weights(ie, NULL, imp);
        int bad = 0;
        for (uint64_t r = 0; r < tb->ne[1]; r++) {
            const float *x = (const float *)tb->data + r * n;
            expected_weights(how, x, imp, n, w);
            CHECK(tt->quantize(x, row, (int64_t)n, how == EXPECT_PLAIN ? NULL : w));
            bad += memcmp(row, tq->data + r * rb, rb) != 0;
        }
        CHECK_MSG(bad == 0, "%s as %s: %d rows differ from the %s weighting", name, type, bad, names[how]);
        free(imp), free(w), free(row);
    }
    if (im_path) qf_imatrix_free(&im);
    qf_gguf_close(q);
    qf_gguf_close(b);
}

static void test_weighting_by_width(void) {
    char dir[4096], base[4096], im[4096];
    qf_test_make_model("imw", 256, 512, "bf16", dir, sizeof dir);
    qf_error err;
    qf_test_path("imw-f32.gguf", base, sizeof base);
    CHECK_OK(quantize(dir, base, NULL, "f32", NULL, 1, &err), &err);
    qf_test_path("imw.imatrix.gguf", im, sizeof im);
    make_imatrix(base, im);
    const char *up = "blk.0.ffn_up.weight", *emb = "token_embd.weight"; /* the imatrix lacks the embedding */
    check_weighting(dir, base, im, "q3_K", up, EXPECT_HEDGED);
    check_weighting(dir, base, im, "q2_K", up, EXPECT_HEDGED);
    check_weighting(dir, base, im, "q4_K", up, EXPECT_CALIBRATED);
    check_weighting(dir, base, im, "q4_0", up, EXPECT_CALIBRATED);
    check_weighting(dir, base, im, "q3_K", emb, EXPECT_MAGNITUDE);
    check_weighting(dir, base, im, "q4_K", emb, EXPECT_PLAIN);
    check_weighting(dir, base, NULL, "q3_K", up, EXPECT_MAGNITUDE);
    check_weighting(dir, base, NULL, "q2_K", up, EXPECT_MAGNITUDE);
    check_weighting(dir, base, NULL, "q4_K", up, EXPECT_PLAIN);
    check_weighting(dir, base, NULL, "q6_K", up, EXPECT_PLAIN);
}

static void test_fp8_release_to_mix(void) {
    char dir[4096], out[4096];
    qf_test_make_model("fp8mix", 256, 512, "bf16", dir, sizeof dir);
    qf_test_to_fp8(dir);
    qf_test_path("fp8mix.gguf", out, sizeof out);
    qf_error err;
    CHECK_OK(quantize(dir, out, "fp8-int4", NULL, NULL, 2, &err), &err);
    qf_gguf *g;
    CHECK_OK(qf_gguf_open(out, &g, &err), &err);
    if (!g) return;
    /* the recipe's FP8 attention on an FP8 release keeps the release's codes and 128-block scales */
    CHECK(!strcmp(qf_qtype_get(qf_gguf_find_tensor(g, "blk.0.attn_q.weight")->type)->name, "e4m3_b128"));
    CHECK(!strcmp(qf_qtype_get(qf_gguf_find_tensor(g, "blk.1.ffn_up.weight")->type)->name, "q4_K"));
    CHECK(!strcmp(qf_qtype_get(qf_gguf_find_tensor(g, "output.weight")->type)->name, "q8_0"));
    CHECK(!strcmp(qf_qtype_get(qf_gguf_find_tensor(g, "output_norm.weight")->type)->name, "f32"));
    /* it holds a type llama.cpp cannot load: claiming Q4_K_M (its bulk's file type) would be false */
    uint32_t ft;
    CHECK_MSG(qf_gguf_get_u32(g, "general.file_type", &ft, NULL) == QF_E_NOTFOUND, "fp8-int4 claims file type %u", ft);
    qf_gguf_close(g);
}

/* The pass-through policy picks the smallest type that holds the release exactly: 128-blocks for
 * DeepSeek's blocks, one scale per row for per-channel and per-tensor scales; a --tensor-type is kept. */
static void test_fp8_pass_policy(void) {
    static const struct { qf_test_fp8_layout layout; const char *type; } cases[] = {
        {QF_TEST_FP8_BLOCK128, "e4m3_b128"}, {QF_TEST_FP8_CHANNEL, "e4m3_row"}, {QF_TEST_FP8_TENSOR, "e4m3_row"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[4096], name[32];
        snprintf(name, sizeof name, "fp8policy%zu", i);
        qf_test_make_model(name, 256, 512, "bf16", dir, sizeof dir);
        qf_test_to_fp8_layout(dir, cases[i].layout);
        qf_type_override ov;
        qf_error err;
        CHECK_OK(qf_type_override_parse("attn_k=e4m3_b32", &ov, &err), &err);
        qf_plan_opts po = {.recipe = qf_recipe_by_name("fp8"), .overrides = &ov, .n_overrides = 1};
        qf_plan plan;
        qf_hparams hp;
        CHECK_OK(plan_for(dir, &po, &plan, &hp, &err), &err);
        const qf_plan_entry *q = entry(&plan, "blk.0.attn_q.weight"), *k = entry(&plan, "blk.0.attn_k.weight");
        CHECK_MSG(q && q->fp8_pass && !strcmp(type_of(&plan, q->name), cases[i].type), "case %zu: attn_q %s", i,
                  type_of(&plan, "blk.0.attn_q.weight"));
        CHECK_MSG(k && !k->fp8_pass && !strcmp(type_of(&plan, k->name), "e4m3_b32"), "case %zu: attn_k %s", i,
                  type_of(&plan, "blk.0.attn_k.weight"));
        qf_plan_free(&plan);
        /* what passes through dequantizes to the F32 conversion's values bit for bit (attn_q: rows permuted) */
        char fp8[4096], f32[4096];
        snprintf(name, sizeof name, "fp8policy%zu.gguf", i);
        qf_test_path(name, fp8, sizeof fp8);
        snprintf(name, sizeof name, "fp8policy%zu-f32.gguf", i);
        qf_test_path(name, f32, sizeof f32);
        qf_convert_opts o = {.src = dir, .out = fp8, .recipe = "fp8",
                             .tensor_types = (const char *const[]){"attn_k=e4m3_b32"}, .n_tensor_types = 1};
        CHECK_OK(qf_convert(&o, &err), &err);
        CHECK_OK(quantize(dir, f32, NULL, "f32", NULL, 1, &err), &err);
        qf_gguf *a = NULL, *b = NULL;
        CHECK_OK(qf_gguf_open(fp8, &a, &err), &err);
        CHECK_OK(qf_gguf_open(f32, &b, &err), &err);
        for (const char *const *n = (const char *const[]){"blk.0.attn_q.weight", "blk.1.ffn_down.weight", NULL};
             a && b && *n; n++) {
            const qf_gguf_tensor *ta = qf_gguf_find_tensor(a, *n), *tb = qf_gguf_find_tensor(b, *n);
            const qf_qtype_traits *tt = qf_qtype_get(ta->type);
            uint64_t rows = ta->ne[1], len = ta->ne[0], rb;
            CHECK(qf_qtype_row_bytes(tt, len, &rb) && tb->type == QF_T_F32);
            float *row = malloc(len * sizeof(float));
            size_t differ = 0;
            for (uint64_t r = 0; row && r < rows; r++) {
                tt->dequantize(ta->data + r * rb, row, (int64_t)len);
                differ += memcmp(row, tb->data + r * len * sizeof(float), len * sizeof(float)) != 0;
            }
            CHECK_MSG(differ == 0, "case %zu: %s: %zu rows differ from the F32 conversion", i, *n, differ);
            free(row);
        }
        qf_gguf_close(a);
        qf_gguf_close(b);
        qf_type_override_free(&ov);
    }
}

/* Stored bytes pass through where every source already is the output's plain type: BF16 weights to BF16
 * (permuted rows and all), not to F16, not a tensor an override sends elsewhere, not 1-D tensors. */
static void test_raw_pass_policy(void) {
    char dir[4096];
    qf_test_make_model("rawpolicy", 256, 512, "bf16", dir, sizeof dir);
    qf_type_override ov;
    qf_error err;
    CHECK_OK(qf_type_override_parse("ffn_down=f16", &ov, &err), &err);
    const char *types[] = {"bf16", "f16"};
    for (size_t i = 0; i < QF_ARRAY_LEN(types); i++) {
        qf_plan_opts po = {.type = qf_qtype_by_name(types[i])->id, .overrides = &ov, .n_overrides = 1};
        qf_plan plan;
        qf_hparams hp;
        CHECK_OK(plan_for(dir, &po, &plan, &hp, &err), &err);
        bool want = i == 0;
        const char *passed[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.ffn_up.weight", "token_embd.weight"};
        for (size_t k = 0; k < QF_ARRAY_LEN(passed); k++) {
            const qf_plan_entry *e = entry(&plan, passed[k]);
            CHECK_MSG(e && e->raw_pass == want && !e->fp8_pass, "%s to %s: %s raw_pass %d", passed[k], types[i],
                      e ? "has" : "missing", e ? e->raw_pass : -1);
        }
        const qf_plan_entry *down = entry(&plan, "blk.0.ffn_down.weight"), *norm = entry(&plan, "blk.0.attn_norm.weight");
        CHECK_MSG(down && !down->raw_pass, "an override's F16 passed BF16 bytes through");
        CHECK_MSG(norm && !norm->raw_pass, "a 1-D tensor passed through");
        qf_plan_free(&plan);
    }
    qf_type_override_free(&ov);
}

static void test_bad_options(void) {
    char dir[4096], out[4096];
    qf_test_make_model("badopt", 256, 512, "bf16", dir, sizeof dir);
    qf_test_path("badopt.gguf", out, sizeof out);
    qf_error err;
    struct { const char *recipe, *type, *imatrix, *method, *expect; } cases[] = {
        {"q5_k_xl", NULL, NULL, NULL, "not a recipe"},
        {NULL, "q4_z", NULL, NULL, "not a type"},
        {"q4_k_m", NULL, "/nonexistent/imatrix.gguf", NULL, "/nonexistent/imatrix.gguf"},
        {"q4_k_m", NULL, NULL, "weighted", "needs --imatrix"},
        {"q4_k_m", NULL, NULL, "gptq-ish", "not one of"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        qf_convert_opts o = {.src = dir, .out = out, .recipe = cases[i].recipe, .type = cases[i].type,
                             .imatrix = cases[i].imatrix, .method = cases[i].method};
        qf_status st = qf_convert(&o, &err);
        CHECK_MSG(st != QF_OK && strstr(err.msg, cases[i].expect), "case %zu: %d '%s'", i, st, err.msg);
        CHECK(!qf_test_file_exists(out));
    }
    /* --dry-run writes nothing. */
    qf_convert_opts o = {.src = dir, .out = out, .recipe = "q3_k_m", .dry_run = true};
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    CHECK_OK(qf_convert(&o, &err), &err);
    fclose(stdout);
    stdout = saved;
    CHECK(!qf_test_file_exists(out));
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_recipe_rules();
    test_fallbacks();
    test_imatrix_quantize();
    test_weighting_by_width();
    test_fp8_release_to_mix();
    test_fp8_pass_policy();
    test_raw_pass_policy();
    test_bad_options();
    return qf_test_finish();
}
