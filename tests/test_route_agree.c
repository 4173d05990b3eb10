/*
 * Routing agreement in verify (mixture-of-experts models). The tally's arithmetic on hand-counted expert
 * sets (overlap per token, identical sets, order ignored). A model against itself agrees exactly in
 * every MoE layer. A q4_k_m / q3_k_m quantization gives per-layer figures that an independent count
 * reproduces: both models run here through the runtime API, chunk by chunk, with this file's own route
 * observer, and their expert sets compared at the scored positions by sorting. A router whose expert
 * rows are rotated by one in a single layer picks expert e+1 wherever the base picked e: the layers
 * before it stay at exactly 1 and that layer takes exactly the value the base's own routes predict. A
 * dense model reports no routing; the batch layout does not change the figures; a base-logits file
 * carries the base's routes and gives the live figures, one of version 1 has none and says so; the
 * --min-route-agree
 * gate fails below its limit, naming the worst layer and every layer below, and refuses models whose
 * routes cannot be compared.
 */
#include "testutil.h"

#include "formats/baselogits.h"
#include "formats/gguf.h"
#include "runtime/runtime.h"
#include "runtime/text.h"
#include "runtime/tokenizer.h"
#include "verify/route.h"

#include <math.h>
#include <openssl/evp.h>

#define CTX 64
#define CHUNKS 6

static char text[4096];

static void write_text(const char *path) {
    FILE *f = fopen(path, "w");
    uint64_t s = 17;
    static const char *const w[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home",
                                    "red", "blue", "fish", "old", "ships", "sea"};
    for (int i = 0; f && i < 3000; i++) fprintf(f, "%s%s", w[qf_test_rand(&s) % QF_ARRAY_LEN(w)], i % 17 == 16 ? ".\n" : " ");
    if (f) fclose(f);
}

/* ---- the arithmetic ------------------------------------------------------------------------------ */

/* Hand-counted sets: order within a set never matters, a token's overlap counts each common expert once,
 * and the scratch marks are clean after every token (a later token sees none of an earlier one's). */
static void test_tally(void) {
    uint32_t layers[2] = {3, 5};
    qf_route_layout lay = {.n_slots = 2, .k = 3, .n_expert = 8, .layer = layers};
    qf_route_tally t;
    qf_error err;
    CHECK_OK(qf_route_tally_init(&t, &lay, &err), &err);
    static const uint16_t base[][3] = {{0, 1, 2}, {0, 1, 2}, {7, 1, 2}, {5, 6, 7}, {4, 0, 3}};
    static const uint16_t cand[][3] = {{2, 0, 1}, {3, 4, 5}, {1, 6, 5}, {7, 5, 6}, {3, 0, 6}};
    for (int i = 0; i < 3; i++) qf_route_tally_add(&t, 0, base[i], cand[i]);
    for (int i = 3; i < 5; i++) qf_route_tally_add(&t, 1, base[i], cand[i]);
    /* slot 0: 3 + 0 + 1 of 9 experts, 1 of 3 tokens identical; slot 1: 3 + 2 of 6, 1 of 2 */
    CHECK(t.overlap[0] == 4 && t.same[0] == 1 && t.count[0] == 3);
    CHECK(t.overlap[1] == 5 && t.same[1] == 1 && t.count[1] == 2);
    for (uint32_t e = 0; e < 8; e++) CHECK(t.mark[e] == 0);
    /* the comparison is symmetric */
    qf_route_tally u;
    CHECK_OK(qf_route_tally_init(&u, &lay, &err), &err);
    for (int i = 0; i < 3; i++) qf_route_tally_add(&u, 0, cand[i], base[i]);
    CHECK(u.overlap[0] == t.overlap[0] && u.same[0] == t.same[0]);
    qf_route_tally_free(&u);
    qf_route_tally_free(&t);
    /* what must agree before two models' routes are compared */
    uint32_t other[2] = {3, 6};
    qf_route_layout dense = {0}, fewer = lay, deeper = lay, wider = lay;
    fewer.k = 2;
    wider.n_expert = 16;
    deeper.layer = other;
    CHECK(qf_route_layout_differs(&lay, &lay) == NULL);
    CHECK(strstr(qf_route_layout_differs(&lay, &dense), "no mixture-of-experts"));
    CHECK(strstr(qf_route_layout_differs(&lay, &fewer), "different numbers of experts"));
    CHECK(strstr(qf_route_layout_differs(&lay, &wider), "different numbers of experts"));
    CHECK(strstr(qf_route_layout_differs(&lay, &deeper), "different depths"));
}

/* ---- the independent count ------------------------------------------------------------------------ */

/* Every token's experts in every layer over the run: [layer][CHUNKS * CTX][k]. */
typedef struct routes {
    uint32_t n_layer, k;
    uint16_t *e;
    uint32_t *fill;   /* [n_layer] */
    bool moe[64];
} routes;

static void on_route(void *u, int layer, const uint16_t *ex, uint32_t k, uint32_t n) {
    routes *r = u;
    size_t cap = (size_t)CHUNKS * CTX;
    if (layer < 0 || (uint32_t)layer >= r->n_layer || k != r->k || r->fill[layer] + n > cap) return;
    memcpy(r->e + ((size_t)layer * cap + r->fill[layer]) * k, ex, (size_t)n * k * sizeof *ex);
    r->fill[layer] += n;
    r->moe[layer] = true;
}

static void routes_free(routes *r) {
    free(r->e);
    free(r->fill);
    memset(r, 0, sizeof *r);
}

/* The text's tokens as llama-perplexity cuts them (tokenized with `vocab_of`'s vocabulary). */
static int32_t *chunk_tokens(const char *vocab_of, int32_t *bos) {
    qf_rt_model *m = NULL;
    qf_tokenizer *t = NULL;
    qf_error err;
    char *s = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    CHECK_OK(qf_rt_model_open(vocab_of, &m, &err), &err);
    if (m) CHECK_OK(qf_tokenizer_new(&m->vocab, &t, &err), &err);
    if (t) CHECK_OK(qf_text_load_prompt(text, true, &s, &len, &err), &err);
    if (s) CHECK_OK(qf_tokenize(t, s, len, qf_tokenizer_wants_bos(t), &ids, &n, &err), &err);
    CHECK(ids && n >= (size_t)CHUNKS * CTX);
    if (t) *bos = qf_tokenizer_bos(t);
    free(s);
    qf_tokenizer_free(t);
    qf_rt_model_close(m);
    return ids;
}

/* Run `model` over the chunks one by one (qf_rt_eval, one batch per chunk, one thread) and log routes. */
static bool run_routes(const char *model, const int32_t *tokens, int32_t bos, routes *r) {
    qf_rt_model *m = NULL;
    qf_rt_ctx *c = NULL;
    qf_error err;
    memset(r, 0, sizeof *r);
    CHECK_OK(qf_rt_model_open(model, &m, &err), &err);
    if (!m) return false;
    r->n_layer = m->hp.n_layer;
    r->k = m->hp.n_expert_used;
    r->e = qf_calloc_n((uint64_t)r->n_layer * CHUNKS * CTX, QF_MAX(r->k, 1) * sizeof *r->e);
    r->fill = qf_calloc_n(r->n_layer, sizeof *r->fill);
    CHECK_OK(qf_rt_ctx_new(m, CTX, CTX, 1, &c, &err), &err);
    qf_rt_observer obs = {.route = on_route, .user = r};
    bool ok = c && r->e && r->fill && r->n_layer <= 64;
    if (ok) qf_rt_ctx_set_observer(c, &obs);
    for (uint32_t i = 0; ok && i < CHUNKS; i++) {
        int32_t chunk[CTX];
        memcpy(chunk, tokens + (size_t)i * CTX, sizeof chunk);
        chunk[0] = bos;
        const float *logits;
        size_t ld;
        qf_rt_ctx_clear(c);
        qf_status st = qf_rt_eval(c, chunk, CTX, 0, CTX - 1, &logits, &ld, &err);
        CHECK_OK(st, &err);
        ok = st == QF_OK;
    }
    qf_rt_ctx_free(c);
    qf_rt_model_close(m);
    return ok;
}

static int cmp_u16(const void *a, const void *b) { return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b; }

/* |A ∩ B| of two k-sets by merging their sorted copies; shift adds to A's ids first (mod n_expert). */
static uint32_t common(const uint16_t *a, const uint16_t *b, uint32_t k, uint32_t shift, uint32_t n_expert) {
    uint16_t x[256], y[256];
    for (uint32_t i = 0; i < k; i++) { x[i] = (uint16_t)((a[i] + shift) % n_expert); y[i] = b[i]; }
    qsort(x, k, sizeof *x, cmp_u16);
    qsort(y, k, sizeof *y, cmp_u16);
    uint32_t n = 0;
    for (uint32_t i = 0, j = 0; i < k && j < k;) {
        if (x[i] == y[j]) { n++; i++; j++; }
        else if (x[i] < y[j]) i++;
        else j++;
    }
    return n;
}

/* Layer l's agreement and same-set share at the scored positions (CTX/2 .. CTX-2 of every chunk). */
static void count_layer(const routes *base, const routes *model, uint32_t l, uint32_t shift, uint32_t n_expert,
                        double *agree, double *same) {
    uint64_t both = 0, all = 0, n = 0;
    uint32_t k = base->k;
    size_t cap = (size_t)CHUNKS * CTX;
    for (uint32_t i = 0; i < CHUNKS; i++)
        for (uint32_t p = CTX / 2; p < CTX - 1; p++) {
            size_t t = (size_t)l * cap + (size_t)i * CTX + p;
            uint32_t c = common(base->e + t * k, model->e + t * k, k, shift, n_expert);
            both += c;
            all += c == k;
            n++;
        }
    *agree = (double)both / ((double)n * k);
    *same = (double)all / (double)n;
}

/* verify's per-layer figures equal the independent count, layer for layer. */
static void check_against_count(const qf_verify_result *r, const routes *base, const routes *model, uint32_t n_expert,
                                const char *what) {
    uint32_t i = 0;
    for (uint32_t l = 0; l < base->n_layer; l++) {
        if (!base->moe[l]) continue;
        CHECK_MSG(i < r->route_n_layers && r->route[i].layer == l, "%s: layer %u not reported", what, l);
        if (i >= r->route_n_layers) return;
        double a, s;
        count_layer(base, model, l, 0, n_expert, &a, &s);
        CHECK_MSG(fabs(r->route[i].agree - a) < 1e-12 && fabs(r->route[i].same - s) < 1e-12,
                  "%s: layer %u: verify %.9f / %.9f, counted %.9f / %.9f", what, l, r->route[i].agree, r->route[i].same,
                  a, s);
        printf("  %s layer %u: agree %.6f same %.6f\n", what, l, a, s);
        i++;
    }
    CHECK_MSG(i == r->route_n_layers && i > 0, "%s: %u MoE layers counted, %u reported", what, i, r->route_n_layers);
}

/* ---- verify --------------------------------------------------------------------------------------- */

static qf_status verify_with(const char *model, const char *base, const char *save, const char *file, uint32_t batch,
                             double gate, qf_verify_result *r, qf_error *err) {
    qf_verify_opts o = {.model = model, .base = base, .text_path = text, .ctx = CTX, .chunks = CHUNKS, .batch = batch,
                        .threads = 2, .max_kld = -1, .max_ppl_increase = -1, .min_top1 = -1, .min_route_agree = gate,
                        .save_base = save, .base_logits = file, .base_topk = save ? 64 : 0};
    qf_verify_result_free(r);
    return qf_verify(&o, r, err);
}

static qf_status verify(const char *model, const char *base, uint32_t batch, double gate, qf_verify_result *r,
                        qf_error *err) {
    return verify_with(model, base, NULL, NULL, batch, gate, r, err);
}

/* A version-1 copy (no routes) of a version-2 base-logits file: route fields, layers and every record's
 * experts dropped, sealed again. */
static bool downgrade(const char *src, const char *dst) {
    size_t n;
    uint8_t *v2 = qf_test_read_file(src, &n), *v1 = v2 ? malloc(n) : NULL;
    qf_baselogits b;
    qf_error err;
    bool ok = v1 && qf_baselogits_parse(src, v2, n, &b, &err) == QF_OK;
    size_t m = 0, label = ok ? strlen(b.h.label) : 0, keep = ok ? 8 + 8 * (size_t)b.h.k : 0;
    if (ok) {
        memcpy(v1, v2, 180);
        v1[8] = 1;
        memcpy(v1 + 180, v2 + 192, 4 + label);
        m = 184 + label;
        for (uint64_t i = 0; i < b.h.n_scored; i++, m += keep) memcpy(v1 + m, v2 + b.rec_off + i * b.rec_bytes, keep);
        unsigned dl = 0;
        ok = EVP_Digest(v1, m, v1 + m, &dl, EVP_sha256(), NULL) && qf_test_write_file(dst, v1, m + 32);
    }
    free(v1);
    free(v2);
    return ok;
}

static void make(const char *name, const char *arch, uint32_t n_layer, char *dir, size_t n) {
    qf_error err;
    qf_synth_opts so = {.dir = qf_test_fresh_dir(name, dir, n), .seed = 9, .n_layer = n_layer, .n_embd = 256,
                        .n_ff = 512, .n_vocab = 320, .dtype = "bf16", .arch = arch, .n_expert = 8, .n_expert_used = 2,
                        .n_ff_exp = 128};
    CHECK_OK(qf_synth_model(&so, &err), &err);
}

static void quantize(const char *src, const char *out, const char *type, const char *recipe) {
    qf_error err;
    qf_convert_opts co = {.src = src, .out = out, .type = type, .recipe = recipe, .threads = 2};
    CHECK_OK(qf_convert(&co, &err), &err);
}

/* A copy of an F32 GGUF whose blk.<layer>.ffn_gate_inp rows (one per expert) are rotated by one: the
 * router's logit of expert e is the original's of expert e-1. */
static bool rotated_router(const char *src, const char *dst, int layer) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", layer);
    qf_gguf *g = NULL;
    qf_error err;
    if (qf_gguf_open(src, &g, &err)) return false;
    const qf_gguf_tensor *t = qf_gguf_find_tensor(g, name);
    bool f32 = t && t->type == 0 && t->n_dims == 2;
    uint64_t off = t ? qf_gguf_data_offset(g) + t->offset : 0, row = f32 ? t->ne[0] * 4 : 0, rows = f32 ? t->ne[1] : 0;
    qf_gguf_close(g);
    size_t n;
    uint8_t *buf = qf_test_read_file(src, &n);
    uint8_t *last = row ? malloc(row) : NULL;
    bool ok = buf && last && off + row * rows <= n;
    if (ok) {
        memcpy(last, buf + off + (rows - 1) * row, row);
        memmove(buf + off + row, buf + off, (rows - 1) * row);
        memcpy(buf + off, last, row);
        ok = qf_test_write_file(dst, buf, n);
    }
    free(last);
    free(buf);
    return ok;
}

static void test_self_and_dense(void) {
    char ds[4096], dense[4096];
    qf_verify_result r = {0};
    qf_error err;
    make("self-ds", "deepseek-v3", 3, ds, sizeof ds);
    CHECK_OK(verify(ds, ds, 0, 1.0, &r, &err), &err);
    CHECK(r.route_n_layers == 2 && r.route[0].layer == 1 && r.route[1].layer == 2 && !r.route_none[0]);
    for (uint32_t i = 0; i < r.route_n_layers; i++) CHECK(r.route[i].agree == 1.0 && r.route[i].same == 1.0);
    CHECK(r.route_agree_min == 1.0 && r.route_agree_mean == 1.0 && r.route_same_mean == 1.0 && r.route_k == 2 &&
          r.route_n_expert == 8 && r.checks[QF_CHECK_ROUTE].given && r.checks[QF_CHECK_ROUTE].pass);
    make("dense", NULL, 2, dense, sizeof dense);
    CHECK_OK(verify(dense, dense, 0, 0, &r, &err), &err);
    CHECK(r.route_n_layers == 0 && !r.route && !r.route_none[0] && !r.checks[QF_CHECK_ROUTE].given);
    /* a gate with nothing to measure is refused, never passed */
    CHECK(verify(dense, dense, 0, 0.5, &r, &err) == QF_E_INPUT && strstr(err.msg, "--min-route-agree"));
    /* a dense base for a MoE model (same vocabulary): said, not measured */
    CHECK_OK(verify(ds, dense, 0, 0, &r, &err), &err);
    CHECK(r.route_n_layers == 0 && strstr(r.route_none, "no mixture-of-experts layers"));
    qf_verify_result_free(&r);
}

static void test_quantized(const char *arch, const char *recipe) {
    char dir[4096], q[4096], label[64];
    snprintf(label, sizeof label, "%s %s", arch, recipe);
    make(arch, arch, 4, dir, sizeof dir);
    qf_test_path(label, q, sizeof q);
    quantize(dir, q, NULL, recipe);
    qf_verify_result r = {0}, split = {0};
    qf_error err;
    CHECK_OK(verify(q, dir, 0, 0, &r, &err), &err);
    int32_t bos = -1, *tokens = chunk_tokens(dir, &bos);
    routes rb, rm;
    if (tokens && run_routes(dir, tokens, bos, &rb) && run_routes(q, tokens, bos, &rm)) {
        check_against_count(&r, &rb, &rm, 8, label);
        CHECK(r.route_agree_min > 0 && r.route_agree_min < 1 && r.route_agree_mean <= 1);
    }
    routes_free(&rb);
    routes_free(&rm);
    free(tokens);
    /* a chunk split into batches of 16 (qf_rt_eval per batch), or two chunks per call (three calls), instead
     * of all six in one call: same figures */
    static const uint32_t batches[] = {16, 2 * CTX};
    for (size_t b = 0; b < QF_ARRAY_LEN(batches); b++) {
        CHECK_OK(verify(q, dir, batches[b], 0, &split, &err), &err);
        CHECK(split.route_n_layers == r.route_n_layers);
        for (uint32_t i = 0; i < QF_MIN(split.route_n_layers, r.route_n_layers); i++)
            CHECK_MSG(split.route[i].agree == r.route[i].agree && split.route[i].same == r.route[i].same,
                      "batch %u, layer %u: %.9f vs %.9f", batches[b], split.route[i].layer, split.route[i].agree,
                      r.route[i].agree);
    }
    /* the gate: the worst layer below the limit fails the run, naming it */
    char worst[64];
    snprintf(worst, sizeof worst, "in MoE layer %u", r.route_agree_min_layer);
    CHECK(verify(q, dir, 0, 1.0, &split, &err) == QF_E_CHECK && strstr(err.msg, "routing agreement") &&
          strstr(err.msg, worst) && !split.checks[QF_CHECK_ROUTE].pass &&
          split.checks[QF_CHECK_ROUTE].value == r.route_agree_min);
    CHECK_OK(verify(q, dir, 0, r.route_agree_min, &split, &err), &err);
    /* the base's routes saved with its logits give the live figures; a version-1 file has none, said */
    char saved[4096], old[4096];
    snprintf(label, sizeof label, "%s %s.qfbl", arch, recipe);
    qf_test_path(label, saved, sizeof saved);
    snprintf(label, sizeof label, "%s %s.v1.qfbl", arch, recipe);
    qf_test_path(label, old, sizeof old);
    CHECK_OK(verify_with(q, dir, saved, NULL, 0, 0, &split, &err), &err);
    CHECK_OK(verify_with(q, NULL, NULL, saved, 0, 0, &split, &err), &err);
    CHECK(split.route_n_layers == r.route_n_layers && !split.route_none[0]);
    for (uint32_t i = 0; i < QF_MIN(split.route_n_layers, r.route_n_layers); i++)
        CHECK(split.route[i].layer == r.route[i].layer && split.route[i].agree == r.route[i].agree &&
              split.route[i].same == r.route[i].same);
    CHECK(downgrade(saved, old));
    CHECK_OK(verify_with(q, NULL, NULL, old, 0, 0, &split, &err), &err);
    CHECK(split.route_n_layers == 0 && strstr(split.route_none, "version-1 base-logits file holds no routes"));
    CHECK(verify_with(q, NULL, NULL, old, 0, 0.5, &split, &err) == QF_E_INPUT && strstr(err.msg, "version-1"));
    qf_verify_result_free(&r);
    qf_verify_result_free(&split);
}

static void test_rotated_router(void) {
    char dir[4096], f32[4096], rot[4096];
    make("rot", "mixtral", 4, dir, sizeof dir);
    qf_test_path("rot-f32.gguf", f32, sizeof f32);
    qf_test_path("rot-layer2.gguf", rot, sizeof rot);
    quantize(dir, f32, "f32", NULL);
    CHECK(rotated_router(f32, rot, 2));
    qf_verify_result r = {0};
    qf_error err;
    CHECK_OK(verify(rot, f32, 0, 0, &r, &err), &err);
    CHECK(r.route_n_layers == 4);
    int32_t bos = -1, *tokens = chunk_tokens(f32, &bos);
    routes rb, rm;
    if (r.route_n_layers == 4 && tokens && run_routes(f32, tokens, bos, &rb) && run_routes(rot, tokens, bos, &rm)) {
        CHECK(r.route[0].agree == 1.0 && r.route[1].agree == 1.0 && r.route[0].same == 1.0 && r.route[1].same == 1.0);
        /* predicted from the base's routes alone: the rotated router's choice is the base's + 1 */
        double a, s;
        count_layer(&rb, &rb, 2, 1, 8, &a, &s);
        CHECK_MSG(fabs(r.route[2].agree - a) < 1e-12 && r.route[2].same == 0 && a <= 0.5,
                  "layer 2: verify %.9f, predicted %.9f", r.route[2].agree, a);
        printf("  mixtral, layer 2's router rotated: agree %.6f %.6f %.6f %.6f (layer 2 predicted %.6f)\n",
               r.route[0].agree, r.route[1].agree, r.route[2].agree, r.route[3].agree, a);
        check_against_count(&r, &rb, &rm, 8, "rotated");
        CHECK(r.route_agree_min_layer == 2 && r.route_agree_min == r.route[2].agree);
    }
    /* a gate only layer 2 misses names it, and only it */
    CHECK(verify(rot, f32, 0, 0.5, &r, &err) == QF_E_CHECK && strstr(err.msg, "in MoE layer 2") &&
          !strstr(err.msg, "layers below"));
    CHECK(r.route_n_layers == 4 && r.route_n_below == 1 && r.route[2].below && !r.route[3].below);
    routes_free(&rb);
    routes_free(&rm);
    free(tokens);
    qf_verify_result_free(&r);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    qf_test_path("text.txt", text, sizeof text);
    write_text(text);
    test_tally();
    test_self_and_dense();
    test_quantized("mixtral", "q4_k_m");
    test_quantized("deepseek-v3", "q3_k_m");
    test_quantized("qwen3moe", "q4_k_m");
    test_rotated_router();
    return qf_test_finish();
}
