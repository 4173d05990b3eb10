/*
 * test_cuda.c — the CUDA backend against the CPU backend on the same bytes. Without a CUDA device (or a
 * build without the CUDA backend) it prints "SKIP: no CUDA device: ..." and exits 77 (ctest: skipped).
 *
 * Every backend operation runs on both backends from the same inputs (backend.h's upload/download):
 *   - products over every stored type the kernels decode, and an i-quant (decoded on the host), at
 *     column counts on both sides of QF_CU_GEMV_COLS (8): above it identical bits (one fmaf chain per
 *     output, as the CPU's tile); at or below it |gpu - cpu| <= 1e-5 * sum_k |w_k x_k| per output;
 *   - rmsnorm (whole and per head), rope (both pair layouts, YaRN's mscale), SwiGLU, add, copy, the
 *     sigmoid gate, the embedding, gathering outputs: identical bits;
 *   - attention: GQA over two sequences from position 0 and a continuation from the cache, MLA with the
 *     latent second value set: identical bits;
 *   - the mixture of experts (sigmoid routing with bias and groups, softmax routing): identical bits and
 *     the same routes reported;
 *   - a NaN in a weight: both name the same tensor;
 * and whole models (dense GQA with q/k norms, Qwen2-MoE, DeepSeek-V2/V3 MLA + MoE; HF checkpoints and
 * GGUF files of several types): logits of multi-sequence passes identical, of short batches (the GEMV
 * path) within 1e-4 of the largest logit; calibrate's importance matrix byte-identical.
 */
#include "testutil.h"
#include "testmodels.h"

#include "runtime/backend.h"

#include <math.h>

enum { CPU = 0, GPU = 1 };

static const char *reason_no_cuda(void) {
    static qf_error err;
    qf_rt_backend_choice got;
    qf_backend_opts o = {.want = QF_BACKEND_CUDA};
    if (qf_rt_backend_pick(&o, false, &got, &err) == QF_OK) return NULL;
    const char *p = strstr(err.msg, ": ");
    return p ? p + 2 : err.msg;
}

/* ---- the two backends side by side ------------------------------------------------------------------ */

typedef struct duo {
    const qf_rt_model *m;
    qf_pool *pool;
    qf_be *be[2];
    const qf_be_ops *op[2];
    size_t ld;
} duo;

static bool duo_open(duo *d, const qf_rt_model *m, size_t ld, uint32_t n_ctx, uint32_t slots) {
    qf_error err;
    memset(d, 0, sizeof *d);
    d->m = m;
    d->ld = ld;
    CHECK_OK(qf_pool_new(2, &d->pool, &err), &err);
    qf_be_opts o = {.m = m, .pool = d->pool, .ld = ld, .kv_len = (size_t)slots * n_ctx, .n_ctx = n_ctx};
    for (int i = 0; i < 2; i++) CHECK_OK(qf_be_new(i ? QF_BACKEND_CUDA : QF_BACKEND_CPU, &o, &d->be[i], &d->op[i], &err), &err);
    return d->be[0] && d->be[1];
}

static void duo_close(duo *d) {
    for (int i = 0; i < 2; i++)
        if (d->be[i]) d->op[i]->free(d->be[i]);
    qf_pool_free(d->pool);
}

/* Neither side recorded a failure. */
static void duo_ok(duo *d, const char *what) {
    for (int i = 0; i < 2; i++) {
        qf_error err;
        qf_status st = d->op[i]->take_error(d->be[i], &err);
        CHECK_MSG(st == QF_OK, "%s on %s: %s", what, d->op[i]->name, err.msg);
    }
}

static void duo_pass(duo *d, const qf_be_pass *p) {
    for (int i = 0; i < 2; i++) d->op[i]->begin_pass(d->be[i], p, d->m->rope_freq, d->m->hp.n_rot, d->m->rope_mscale);
}

/* A buffer of rows x ld floats on both sides, holding h (NULL: zeros). */
typedef struct dbuf {
    float *p[2];
    uint64_t n;
} dbuf;

static dbuf dbuf_new(duo *d, size_t rows, const float *h) {
    dbuf b = {.n = (uint64_t)rows * d->ld};
    for (int i = 0; i < 2; i++) {
        b.p[i] = d->op[i]->alloc(d->be[i], b.n);
        CHECK(b.p[i] != NULL);
        if (h && b.p[i]) d->op[i]->upload(d->be[i], b.p[i], h, b.n);
    }
    return b;
}

static float *host_copy(duo *d, const dbuf *b, int side) {
    float *h = qf_malloc_n(b->n, sizeof(float));
    if (h) d->op[side]->download(d->be[side], h, b->p[side], b->n);
    return h;
}

static bool same_bits(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y || (isnan(a) && isnan(b));
}

/* rows x cols (leading dimension ld) of a and b bit for bit, the token columns of pass p only when p is
 * given: the count of elements that differ, and the largest difference relative to the largest |a| */
static uint64_t differ(const float *a, const float *b, size_t rows, size_t ld, size_t cols, const qf_be_pass *p,
                       double *rel) {
    uint64_t n = 0;
    double mx = 0, md = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            if (p && c % p->stride >= p->len) continue;
            float x = a[r * ld + c], y = b[r * ld + c];
            mx = fmax(mx, fabs(x));
            md = fmax(md, fabs((double)x - y));
            n += !same_bits(x, y);
        }
    *rel = mx > 0 ? md / mx : md;
    return n;
}

/* Padding columns are compared too unless `tokens` is given: the CPU's attention computes whole tiles of
 * queries, so it leaves values in padding columns that the GPU's never touches. */
static void expect_same_in(duo *d, const dbuf *b, size_t rows, size_t cols, const qf_be_pass *tokens, const char *what) {
    duo_ok(d, what);
    float *c = host_copy(d, b, CPU), *g = host_copy(d, b, GPU);
    double rel = 0;
    uint64_t n = c && g ? differ(c, g, rows, d->ld, cols, tokens, &rel) : 1;
    CHECK_MSG(n == 0, "%s: %llu of %zu x %zu values differ from the CPU's (largest by %.3g of the largest)", what,
              (unsigned long long)n, rows, cols, rel);
    free(c);
    free(g);
}

static void expect_same(duo *d, const dbuf *b, size_t rows, size_t cols, const char *what) {
    expect_same_in(d, b, rows, cols, NULL, what);
}

static void fill(float *x, size_t n, float scale, uint64_t *seed) {
    for (size_t i = 0; i < n; i++) x[i] = qf_test_randn(seed) * scale;
}

/* ---- products over every stored type ------------------------------------------------------------------- */

enum { MM_ROWS = 130, MM_K = 512 };

/* A random MM_ROWS x MM_K weight of type `type`, quantized by the CPU's quantizer (owned by *data). */
static qf_rt_weight make_weight(uint32_t type, uint64_t *seed, uint8_t **data) {
    const qf_qtype_traits *tt = qf_qtype_get(type);
    qf_rt_weight w = {.n_rows = MM_ROWS, .row_len = MM_K, .tt = tt, .expert = -1, .role = QF_ROLE_ATTN_Q, .layer = 0};
    CHECK(tt && tt->quantize && qf_qtype_row_bytes(tt, MM_K, &w.row_bytes));
    *data = calloc(MM_ROWS, w.row_bytes);
    float x[MM_K];
    for (uint32_t r = 0; *data && r < MM_ROWS; r++) {
        fill(x, MM_K, r % 7 == 3 ? 40.0f : 0.05f, seed); /* rows of very different magnitude */
        CHECK_MSG(tt->quantize(x, *data + r * w.row_bytes, MM_K, NULL), "%s: quantize", tt->name);
    }
    w.data = *data;
    return w;
}

static void test_matmul(duo *d) {
    static const uint32_t types[] = {QF_T_F32, QF_T_F16, QF_T_BF16, QF_T_Q4_0, QF_T_Q4_1, QF_T_Q5_0, QF_T_Q5_1,
                                     QF_T_Q8_0, QF_T_Q2_K, QF_T_Q3_K, QF_T_Q4_K, QF_T_Q5_K, QF_T_Q6_K, QF_T_MXFP4,
                                     QF_T_E4M3_B32, QF_T_E5M2_B32, QF_T_E4M3_ROW, QF_T_E4M3_B128, QF_T_IQ4_XS};
    static const size_t cols[] = {1, 3, 8, 9, 64, 130};
    uint64_t seed = 0xC0DA;
    size_t ld = d->ld;
    float *xh = malloc(MM_K * ld * sizeof(float)), *bias = malloc(MM_ROWS * sizeof(float)), *wf = malloc(MM_K * sizeof(float));
    fill(xh, MM_K * ld, 1.0f, &seed);
    fill(bias, MM_ROWS, 1.0f, &seed);
    dbuf x = dbuf_new(d, MM_K, xh), y = dbuf_new(d, MM_ROWS, NULL);
    uint8_t *data[QF_ARRAY_LEN(types)] = {0};
    for (size_t ti = 0; ti < QF_ARRAY_LEN(types); ti++) {
        qf_rt_weight w = make_weight(types[ti], &seed, &data[ti]);
        for (size_t ci = 0; ci < QF_ARRAY_LEN(cols); ci++) {
            size_t n = cols[ci];
            qf_be_pass p = {.n_seq = 1, .len = (uint32_t)n, .stride = (n + 63) / 64 * 64, .cols = n};
            duo_pass(d, &p);
            for (int i = 0; i < 2; i++) {
                qf_be_mm mm = {.w = &w, .y = y.p[i], .ldy = ld, .bias = ci == 4 ? bias : NULL};
                d->op[i]->matmul(d->be[i], x.p[i], &p, &mm, 1);
            }
            char what[96];
            snprintf(what, sizeof what, "matmul %s, %zu columns", w.tt->name, n);
            if (n > 8) {
                expect_same(d, &y, MM_ROWS, n, what);
                continue;
            }
            duo_ok(d, what);
            float *c = host_copy(d, &y, CPU), *g = host_copy(d, &y, GPU);
            double worst = 0;
            for (uint32_t r = 0; c && g && r < MM_ROWS; r++) {
                qf_rt_weight_rows(&w, r, 1, wf);
                for (size_t t = 0; t < n; t++) {
                    double mag = 1e-35;
                    for (uint32_t k = 0; k < MM_K; k++) mag += fabs((double)wf[k] * xh[k * ld + t]);
                    worst = fmax(worst, fabs((double)c[r * ld + t] - g[r * ld + t]) / mag);
                }
            }
            CHECK_MSG(c && g && worst <= 1e-5, "%s (GEMV): error %.3g of sum |w x| (bound 1e-5)", what, worst);
            free(c);
            free(g);
        }
    }
    /* a NaN in a weight: both name it */
    float *nanw = calloc(MM_ROWS * MM_K, sizeof(float));
    nanw[5 * MM_K + 7] = NAN;
    qf_rt_weight w = {.n_rows = MM_ROWS, .row_len = MM_K, .tt = qf_qtype_get(QF_T_F32), .data = (uint8_t *)nanw,
                      .row_bytes = MM_K * sizeof(float), .expert = -1, .role = QF_ROLE_FFN_UP, .layer = 1};
    qf_be_pass p = {.n_seq = 1, .len = 64, .stride = 64, .cols = 64};
    duo_pass(d, &p);
    char what[2][96];
    for (int i = 0; i < 2; i++) {
        qf_be_mm mm = {.w = &w, .y = y.p[i], .ldy = ld};
        d->op[i]->take_nonfinite(d->be[i], what[i], sizeof what[i]);
        d->op[i]->matmul(d->be[i], x.p[i], &p, &mm, 1);
        d->op[i]->take_nonfinite(d->be[i], what[i], sizeof what[i]);
    }
    duo_ok(d, "matmul with a NaN");
    CHECK_MSG(what[0][0] && !strcmp(what[0], what[1]), "non-finite: CPU says '%s', CUDA '%s'", what[0], what[1]);
    free(nanw);
    for (size_t ti = 0; ti < QF_ARRAY_LEN(types); ti++) free(data[ti]);
    free(xh);
    free(bias);
    free(wf);
}

/* ---- elementwise steps, embedding, outputs ------------------------------------------------------------ */

static void test_steps(duo *d) {
    const qf_hparams *hp = &d->m->hp;
    uint64_t seed = 0x57E95;
    size_t ld = d->ld, E = hp->n_embd, hd = hp->head_dim, H = hp->n_head;
    qf_be_pass p = {.n_seq = 2, .len = 50, .pos0 = 0, .stride = 64, .cols = 114};
    duo_pass(d, &p);
    float *h = malloc(E * ld * sizeof(float)), *w = malloc(E * sizeof(float));
    fill(h, E * ld, 2.0f, &seed);
    fill(w, E, 1.0f, &seed);
    dbuf x = dbuf_new(d, E, h), y = dbuf_new(d, E, NULL);
    fill(h, E * ld, 1.5f, &seed);
    dbuf u = dbuf_new(d, E, h);
    for (int i = 0; i < 2; i++) d->op[i]->rmsnorm(d->be[i], x.p[i], y.p[i], E, E, w);
    expect_same(d, &y, E, p.cols, "rmsnorm");
    for (int i = 0; i < 2; i++) d->op[i]->rmsnorm(d->be[i], x.p[i], x.p[i], H * hd <= E ? H * hd : E, hd, w);
    expect_same(d, &x, E, p.cols, "rmsnorm per head, in place");
    for (int neox = 0; neox < 2; neox++) {
        for (int i = 0; i < 2; i++) d->op[i]->rope(d->be[i], x.p[i], (uint32_t)(E / hd), (uint32_t)hd, 0, neox);
        expect_same(d, &x, E, p.cols, neox ? "rope (neox pairs)" : "rope (adjacent pairs)");
    }
    for (int i = 0; i < 2; i++) d->op[i]->glu(d->be[i], x.p[i], u.p[i], E);
    expect_same(d, &x, E, p.cols, "glu");
    for (int i = 0; i < 2; i++) d->op[i]->add(d->be[i], x.p[i], u.p[i], E);
    expect_same(d, &x, E, p.cols, "add");
    for (int i = 0; i < 2; i++) d->op[i]->sigmoid_scale(d->be[i], x.p[i], u.p[i], E);
    expect_same(d, &x, E, p.cols, "sigmoid_scale");
    for (int i = 0; i < 2; i++) d->op[i]->copy_rows(d->be[i], y.p[i], x.p[i], E);
    expect_same(d, &y, E, p.cols, "copy_rows");
    for (int i = 0; i < 2; i++) d->op[i]->gather_outputs(d->be[i], u.p[i], x.p[i], E, 10);
    expect_same(d, &u, E, 80, "gather_outputs");
    int32_t tokens[100];
    for (int t = 0; t < 100; t++) tokens[t] = (int32_t)(qf_test_rand(&seed) % hp->n_vocab);
    for (int i = 0; i < 2; i++) d->op[i]->embed(d->be[i], &d->m->tok_embd, tokens, x.p[i]);
    expect_same(d, &x, E, p.cols, "embed");
    free(h);
    free(w);
}

/* ---- attention ---------------------------------------------------------------------------------------------- */

/* One attention call on both sides over the pass p, from random q, k, v (and v2 when dv2). */
static void attend(duo *d, const qf_be_pass *p, uint32_t layer, uint32_t dk, uint32_t dv, uint32_t dv2, uint64_t *seed,
                   const char *what) {
    const qf_hparams *hp = &d->m->hp;
    uint32_t H = hp->n_head, Hkv = hp->arch->attn == QF_ATTN_MLA ? H : hp->n_head_kv;
    size_t ld = d->ld, rows = (size_t)H * QF_MAX(QF_MAX(dk, dv), dv2);
    float *h = malloc(rows * ld * sizeof(float));
    duo_pass(d, p);
    fill(h, (size_t)H * dk * ld, 0.7f, seed);
    dbuf q = dbuf_new(d, (size_t)H * dk, h);
    fill(h, (size_t)Hkv * dk * ld, 0.7f, seed);
    dbuf k = dbuf_new(d, (size_t)Hkv * dk, h);
    fill(h, (size_t)Hkv * dv * ld, 1.0f, seed);
    dbuf v = dbuf_new(d, (size_t)Hkv * dv, h);
    fill(h, (size_t)QF_MAX(dv2, 1) * ld, 1.0f, seed);
    dbuf v2 = dbuf_new(d, QF_MAX(dv2, 1), h);
    dbuf out = dbuf_new(d, (size_t)H * dv, NULL), out2 = dbuf_new(d, (size_t)H * QF_MAX(dv2, 1), NULL);
    for (int i = 0; i < 2; i++) {
        qf_be_attn a = {.layer = layer, .n_head = H, .n_head_kv = Hkv, .dk = dk, .dv = dv, .scale = d->m->attn_scale,
                        .q = q.p[i], .k = k.p[i], .v = v.p[i], .out = out.p[i], .v2 = dv2 ? v2.p[i] : NULL, .dv2 = dv2,
                        .out2 = out2.p[i]};
        d->op[i]->attention(d->be[i], &a);
    }
    expect_same_in(d, &out, (size_t)H * dv, p->cols, p, what);
    if (dv2) expect_same_in(d, &out2, (size_t)H * dv2, p->cols, p, "attention's second value set");
    free(h);
}

static void test_attention(duo *d) {
    const qf_hparams *hp = &d->m->hp;
    uint64_t seed = 0xA77E;
    uint32_t dk = qf_attn_dk(hp), dv = qf_attn_dv(hp);
    bool mla = hp->arch->attn == QF_ATTN_MLA;
    qf_be_pass two = {.n_seq = 2, .len = 100, .pos0 = 0, .stride = 128, .cols = 228};
    attend(d, &two, 1, dk, dv, mla ? hp->kv_lora_rank : 0, &seed, mla ? "MLA attention, 2 sequences" : "attention, 2 sequences");
    qf_be_pass more = {.n_seq = 1, .len = 20, .pos0 = 100, .stride = 64, .cols = 20};
    attend(d, &more, 1, dk, dv, 0, &seed, "attention continuing from the cache");
}

/* ---- mixture of experts -------------------------------------------------------------------------------- */

typedef struct routes {
    uint16_t e[4096];
    uint32_t n;
} routes;

static void on_route(void *user, int layer, const uint16_t *experts, uint32_t n_used, uint32_t n_tokens) {
    routes *r = user;
    for (uint32_t i = 0; i < n_used * n_tokens && r->n < QF_ARRAY_LEN(r->e); i++) r->e[r->n++] = experts[i];
}

static void test_moe(duo *d, int layer) {
    const qf_hparams *hp = &d->m->hp;
    const qf_rt_ffn *F = &d->m->layers[layer].f;
    uint64_t seed = 0x3E7;
    size_t E = hp->n_embd, ld = d->ld;
    qf_be_pass p = {.n_seq = 2, .len = 60, .pos0 = 0, .stride = 64, .cols = 124};
    duo_pass(d, &p);
    float *h = malloc(QF_MAX(E, hp->n_expert) * ld * sizeof(float));
    fill(h, E * ld, 1.0f, &seed);
    dbuf x = dbuf_new(d, E, h), y = dbuf_new(d, E, NULL);
    fill(h, (size_t)hp->n_expert * ld, 2.0f, &seed);
    dbuf logits = dbuf_new(d, hp->n_expert, h);
    routes r[2] = {{{0}, 0}, {{0}, 0}};
    qf_rt_observer obs[2] = {{.route = on_route, .user = &r[0]}, {.route = on_route, .user = &r[1]}};
    for (int i = 0; i < 2; i++) {
        d->op[i]->set_observer(d->be[i], &obs[i]);
        qf_be_moe m = {.hp = hp, .layer = layer, .x = x.p[i], .logits = logits.p[i], .bias = F->expert_bias,
                       .gate = F->eg, .up = F->eu, .down = F->ed, .y = y.p[i]};
        d->op[i]->moe(d->be[i], &m);
        d->op[i]->set_observer(d->be[i], NULL);
    }
    char what[96];
    snprintf(what, sizeof what, "experts (%s routing)", hp->gating == QF_GATING_SIGMOID ? "sigmoid" : "softmax");
    expect_same(d, &y, E, p.cols, what);
    CHECK_MSG(r[0].n == 2u * 60 * hp->n_expert_used && r[0].n == r[1].n && !memcmp(r[0].e, r[1].e, r[0].n * sizeof *r[0].e),
              "%s: routes differ (%u and %u reported)", what, r[0].n, r[1].n);
    free(h);
}

/* ---- whole models ------------------------------------------------------------------------------------------ */

static void compare_logits(const float *a, const float *b, size_t vocab, size_t ld, size_t n, bool exact, const char *what) {
    double rel = 0;
    uint64_t nd = differ(a, b, vocab, ld, n, NULL, &rel);
    if (exact) CHECK_MSG(nd == 0, "%s: %llu logits differ (largest by %.3g of the largest)", what, (unsigned long long)nd, rel);
    else CHECK_MSG(rel <= 1e-4, "%s: logits differ by %.3g of the largest (bound 1e-4)", what, rel);
}

static void test_model(const char *path, const char *label) {
    qf_rt_model *m;
    qf_error err;
    CHECK_OK(qf_rt_model_open(path, &m, &err), &err);
    if (!m) return;
    enum { CTX = 64, SEQS = 3 };
    qf_rt_ctx *c[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        qf_rt_ctx_opts o = {.n_ctx = CTX, .n_batch = SEQS * CTX, .n_threads = 2, .backend = i ? QF_BACKEND_CUDA : QF_BACKEND_CPU};
        CHECK_OK(qf_rt_ctx_open(m, &o, &c[i], &err), &err);
    }
    int32_t tokens[SEQS * CTX];
    uint64_t seed = 0x70C;
    for (int t = 0; t < SEQS * CTX; t++) tokens[t] = (int32_t)(qf_test_rand(&seed) % m->hp.n_vocab);
    const float *lg[2];
    size_t ld[2];
    char what[160];
    for (int i = 0; c[0] && c[1] && i < 2; i++) CHECK_OK(qf_rt_eval_seqs(c[i], tokens, SEQS, CTX, CTX / 2, &lg[i], &ld[i], &err), &err);
    snprintf(what, sizeof what, "%s: %d sequences of %d", label, SEQS, CTX);
    if (c[0] && c[1]) compare_logits(lg[0], lg[1], m->hp.n_vocab, ld[0], SEQS * (CTX / 2), true, what);
    /* a short batch and its continuation: products of 5 and 3 columns take the GEMV path */
    for (int step = 0; c[0] && c[1] && step < 2; step++) {
        uint32_t pos = step ? 5 : 0, n = step ? 3 : 5;
        for (int i = 0; i < 2; i++) {
            if (!step) qf_rt_ctx_clear(c[i]);
            CHECK_OK(qf_rt_eval(c[i], tokens + pos, n, pos, 0, &lg[i], &ld[i], &err), &err);
        }
        snprintf(what, sizeof what, "%s: %u tokens at %u", label, n, pos);
        compare_logits(lg[0], lg[1], m->hp.n_vocab, ld[0], n, false, what);
    }
    for (int i = 0; i < 2; i++) qf_rt_ctx_free(c[i]);
    qf_rt_model_close(m);
}

static const char *synth(const char *name, const char *arch, uint32_t dim, uint32_t ff, char *dir, size_t n) {
    qf_test_fresh_dir(name, dir, n);
    qf_synth_opts o = {.dir = dir, .seed = 11, .n_layer = 2, .n_embd = dim, .n_ff = ff, .n_vocab = 320, .dtype = "bf16",
                       .arch = arch};
    qf_error err;
    CHECK_OK(qf_synth_model(&o, &err), &err);
    return dir;
}

static const char *to_gguf(const char *src, const char *type, char *out, size_t n) {
    char name[64];
    snprintf(name, sizeof name, "cuda-%s.gguf", type);
    qf_test_path(name, out, n);
    qf_convert_opts o = {.src = src, .out = out, .type = type, .threads = 2};
    qf_error err;
    CHECK_OK(qf_convert(&o, &err), &err);
    return out;
}

static void write_text(const char *path) {
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < 40; i++)
        fprintf(f, "once upon a time there was a little girl who liked to read stories about dragons, ships and the sea. "
                   "the quick brown fox jumps over the lazy dog %d times.\n", i);
    if (f) fclose(f);
}

static void test_calibrate(const char *model) {
    char text[4096], im[2][4096];
    qf_test_path("cuda-calib.txt", text, sizeof text);
    write_text(text);
    for (int i = 0; i < 2; i++) {
        qf_test_path(i ? "cuda-im-gpu.gguf" : "cuda-im-cpu.gguf", im[i], sizeof im[i]);
        qf_calibrate_opts o = {.model = model, .text_path = text, .out = im[i], .ctx = 64, .chunks = 4, .threads = 2,
                               .backend = {.want = i ? QF_BACKEND_CUDA : QF_BACKEND_CPU}};
        qf_error err;
        CHECK_OK(qf_calibrate(&o, &err), &err);
    }
    CHECK_MSG(qf_test_same_file(im[0], im[1]), "calibrate: the importance matrices of the CPU and CUDA runs differ");
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    const char *why = reason_no_cuda();
    if (why) {
        printf("SKIP: no CUDA device: %s\n", why);
        return 77;
    }
    char llama[4096], qwen3[4096], qmoe[4096], ds2[4096], ds3[4096], gguf[4096];
    qf_rt_model *m;
    qf_error err;
    duo d;
    /* operations on a dense GQA model (the backends size their scratch from it) */
    synth("cuda-llama", "llama", 256, 512, llama, sizeof llama);
    CHECK_OK(qf_rt_model_open(llama, &m, &err), &err);
    if (m && duo_open(&d, m, 256, 128, 2)) {
        test_matmul(&d);
        test_steps(&d);
        test_attention(&d);
    }
    duo_close(&d);
    qf_rt_model_close(m);
    /* MLA and the experts (sigmoid + bias + groups: DeepSeek-V3; softmax: DeepSeek-V2, Qwen2-MoE) */
    synth("cuda-ds3", "deepseek-v3", 128, 256, ds3, sizeof ds3);
    synth("cuda-ds2", "deepseek-v2", 128, 256, ds2, sizeof ds2);
    synth("cuda-qmoe", "qwen2moe", 128, 256, qmoe, sizeof qmoe);
    const char *moe_models[] = {ds3, ds2, qmoe};
    for (size_t i = 0; i < QF_ARRAY_LEN(moe_models); i++) {
        CHECK_OK(qf_rt_model_open(moe_models[i], &m, &err), &err);
        if (m && duo_open(&d, m, 256, 128, 2)) {
            if (m->hp.arch->attn == QF_ATTN_MLA) test_attention(&d);
            test_moe(&d, 1);
        }
        duo_close(&d);
        qf_rt_model_close(m);
    }
    /* whole models: HF checkpoints (weights decoded on the host) and GGUF files of the kernels' types */
    synth("cuda-qwen3", "qwen3", 128, 256, qwen3, sizeof qwen3);
    test_model(llama, "llama (HF, bf16)");
    test_model(qwen3, "qwen3 (HF, bf16)");
    test_model(qmoe, "qwen2moe (HF, bf16)");
    test_model(ds2, "deepseek-v2 (HF, bf16)");
    test_model(ds3, "deepseek-v3 (HF, bf16)");
    static const char *const types[] = {"f32", "q8_0", "q4_K", "q6_K", "q5_1", "mxfp4", "e4m3_b128", "iq4_xs"};
    for (size_t i = 0; i < QF_ARRAY_LEN(types); i++) {
        char label[64];
        snprintf(label, sizeof label, "llama (GGUF %s)", types[i]);
        test_model(to_gguf(llama, types[i], gguf, sizeof gguf), label);
    }
    char ds3_gguf[4096];
    snprintf(ds3_gguf, sizeof ds3_gguf, "%s", to_gguf(ds3, "q4_K", gguf, sizeof gguf));
    test_model(ds3_gguf, "deepseek-v3 (GGUF q4_K)");
    test_calibrate(ds3_gguf);
    return qf_test_finish();
}
