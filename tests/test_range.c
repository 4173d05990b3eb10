/*
 * Weights beyond what a type stores. Every writable type keeps rows up to its stated range
 * (qf_qtype_traits.max_abs) finite, whatever the importance weights, on every ISA; the quantize path
 * refuses a tensor beyond it (naming the tensor, the row, its largest value and the types that hold it),
 * the same way through GPTQ; --clamp-overflow clamps exactly those values and records them in the file.
 * Before this, a weight of 1e5 became Inf in an F16 output and 1e7 an Inf Q8_0 scale, silently.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/gguf.h"
#include "formats/hessian.h"
#include "kernels/cpu.h"
#include "kernels/qtypes.h"

#include <float.h>
#include <math.h>

#define N 512

/* Rows whose largest |x| is exactly 1, in shapes that stress scale searches: gaussian, a cluster far from
 * zero (affine mins), one spike over noise, sparse, alternating signs, all equal. */
static void pattern(int p, uint64_t *s, float *x) {
    for (int i = 0; i < N; i++) {
        float u = (float)(qf_test_rand(s) >> 40) / (float)(1u << 24);
        switch (p) {
        case 0: x[i] = qf_test_randn(s); break;
        case 1: x[i] = 0.9f + 0.1f * u; break;
        case 2: x[i] = -(0.9f + 0.1f * u); break;
        case 3: x[i] = i == N / 3 ? -1.0f : 0.01f * qf_test_randn(s); break;
        case 4: x[i] = u < 0.1f ? 2 * u - 0.1f : 0.0f; break;
        case 5: x[i] = i % 2 ? 1.0f : -1.0f; break;
        default: x[i] = 1.0f; break;
        }
    }
    float m = qf_row_absmax(x, N);
    for (int i = 0; i < N; i++) x[i] /= m;
}

/* Importance weights: none, uniform, spanning 8 decades, or nearly all on 2% of the columns (which made
 * the affine K-quants' least-squares mins overflow their F16 super-scale). */
static const float *weights(int k, uint64_t *s, float *w) {
    for (int i = 0; i < N; i++) {
        float u = (float)(qf_test_rand(s) >> 40) / (float)(1u << 24);
        w[i] = k == 1 ? u : k == 2 ? powf(10.0f, 8 * u - 4) : u < 0.02f ? 1e4f : 1e-4f;
    }
    return k ? w : NULL;
}

static void test_kernels_hold_their_range(void) {
    float x[N], y[N], w[N], d[N];
    uint8_t q[4 * N + 64];
    uint64_t s = 11;
    for (int isa = QF_ISA_SCALAR; isa < QF_ISA_COUNT; isa++) {
        if (!qf_isa_supported((qf_isa)isa)) continue;
        for (size_t k = 0; k < qf_qtype_count(); k++) {
            const qf_qtype_traits *t = qf_qtype_get_isa(qf_qtype_at(k)->id, (qf_isa)isa);
            if (!t->quantize || !t->dequantize) continue;
            CHECK_MSG(t->max_abs > 0, "%s has kernels but no range", t->name);
            int bad = 0;
            for (int p = 0; p < 7; p++)
                for (int wk = 0; wk < 4; wk++)
                    for (int rep = 0; rep < 3; rep++) {
                        pattern(p, &s, x);
                        const float *imp = weights(wk, &s, w);
                        for (int i = 0; i < N; i++) y[i] = x[i] * t->max_abs;
                        CHECK(t->quantize(y, q, N, imp));
                        t->dequantize(q, d, N);
                        /* finite; without weights (which may rightly neglect an extreme) also the extreme
                         * still there, not zeroed or clipped far inside. The coarsest grids store it, in
                         * least squares, at a little under half: IQ2's have no zero (their least value is
                         * 8/43 of the top), so a spike over 31 near-zero values of its sub-block sits there;
                         * IQ1's three levels {-1,0,1}+-1/8 put a gaussian block of 32 at a scale near 0.42
                         * of its largest value (one such row: extreme 0.469, plain RMSE 0.450 vs ggml's
                         * 0.480 given uniform weights, which it needs) */
                        float m = qf_row_absmax(d, N);
                        float keep = strncmp(t->name, "iq2", 3) && strncmp(t->name, "iq1", 3) ? 0.5f : 0.4f;
                        bool finite = true;
                        for (int i = 0; i < N; i++) finite &= isfinite(d[i]) != 0;
                        if ((!finite || (!imp && !(m >= keep * t->max_abs))) && bad++ < 3)
                            CHECK_MSG(0, "%s (%s): pattern %d, weights %d at |x| = %g: %s, largest |xhat| %g", t->name,
                                      qf_isa_name((qf_isa)isa), p, wk, (double)t->max_abs,
                                      finite ? "finite" : "not finite", (double)m);
                    }
        }
    }
    /* The legacy types' and F16's ranges are their real limits: twice beyond, the scale is Inf. */
    const char *tight[] = {"f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"};
    for (size_t i = 0; i < QF_ARRAY_LEN(tight); i++) {
        const qf_qtype_traits *t = qf_qtype_by_name(tight[i]);
        pattern(0, &s, x);
        for (int j = 0; j < N; j++) y[j] = x[j] * 2 * t->max_abs;
        CHECK(t->quantize(y, q, N, NULL));
        t->dequantize(q, d, N);
        CHECK_MSG(isinf(qf_row_absmax(d, N)), "%s stores twice its stated range: the range is too small", t->name);
    }
    /* e4m3_row on a row below ~1.5e-36: 1/scale overflows; codes were NaN for the zeros and saturated for
     * the rest */
    for (int i = 0; i < N; i++) y[i] = i % 3 == 0 ? 0.0f : (i % 3 == 1 ? 1e-38f : -3e-39f);
    for (int isa = QF_ISA_SCALAR; isa < QF_ISA_COUNT; isa++) {
        if (!qf_isa_supported((qf_isa)isa)) continue;
        const qf_qtype_traits *t = qf_qtype_get_isa(QF_T_E4M3_ROW, (qf_isa)isa);
        for (int wk = 0; wk < 2; wk++) {
            CHECK(t->quantize(y, q, N, wk ? w : NULL));
            t->dequantize(q, d, N);
            bool ok = true;
            for (int i = 0; i < N; i++) ok &= isfinite(d[i]) && fabsf(d[i] - y[i]) <= 0.07f * 1e-38f;
            CHECK_MSG(ok, "e4m3_row (%s): a row of magnitude 1e-38 does not round trip", qf_isa_name((qf_isa)isa));
        }
    }
}

/* ---- the quantize path ----------------------------------------------------------------------------- */

static char model_dir[4096];

static qf_status run(const char *name, const char *type, const char *recipe, bool clamp, int threads, qf_error *err,
                     char *out, size_t n) {
    qf_test_path(name, out, n);
    remove(out);
    qf_convert_opts o = {.src = model_dir, .out = out, .type = type, .recipe = recipe, .clamp_overflow = clamp,
                         .threads = threads};
    return qf_convert(&o, err);
}

/* Every tensor of a GGUF dequantizes to finite values; returns element `index` of tensor `name`. */
static float check_finite(const char *path, const char *name, uint64_t index) {
    qf_gguf *g;
    qf_error err;
    float v = NAN;
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return v;
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        const qf_qtype_traits *tt = qf_qtype_get(t->type);
        uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3], rb;
        qf_qtype_row_bytes(tt, t->ne[0], &rb);
        float *row = malloc(t->ne[0] * sizeof(float));
        bool finite = true;
        for (uint64_t r = 0; r < rows; r++) {
            tt->dequantize(t->data + r * rb, row, (int64_t)t->ne[0]);
            for (uint64_t c = 0; c < t->ne[0]; c++) finite &= isfinite(row[c]) != 0;
            if (!strcmp(t->name, name) && index / t->ne[0] == r) v = row[index % t->ne[0]];
        }
        CHECK_MSG(finite, "%s: tensor %s holds Inf or NaN", path, t->name);
        free(row);
    }
    qf_gguf_close(g);
    return v;
}

static void test_refused_with_what_holds_it(void) {
    char out[4096];
    qf_error err;
    /* ffn_down row 3, column 7: 1e5 is beyond F16 (65504), within Q8_0 (8.3e6) */
    qf_test_set_weight(model_dir, "model.layers.0.mlp.down_proj.weight", 3 * 512 + 7, 1.0e5f);
    qf_status st = run("f16.gguf", "f16", NULL, false, 1, &err, out, sizeof out);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "'blk.0.ffn_down.weight'") && strstr(err.msg, "row 3") &&
                  strstr(err.msg, "largest |x| 100000") && strstr(err.msg, "1 value beyond what f16 stores") &&
                  strstr(err.msg, "bf16") && strstr(err.msg, "q8_0") && !strstr(err.msg, "q4_1") &&
                  strstr(err.msg, "--tensor-type 'blk\\.0\\.ffn_down\\.weight=TYPE'") && strstr(err.msg, "--clamp-overflow"),
              "%s: %s", qf_status_name(st), err.msg);
    CHECK(qf_status_exit_code(st) == 2 && !qf_test_file_exists(out));
    char msg1[sizeof err.msg];
    memcpy(msg1, err.msg, sizeof msg1);
    CHECK(run("f16.gguf", "f16", NULL, false, 2, &err, out, sizeof out) == QF_E_INPUT && !strcmp(msg1, err.msg));

    CHECK_OK(run("q8.gguf", "q8_0", NULL, false, 2, &err, out, sizeof out), &err);
    float v = check_finite(out, "blk.0.ffn_down.weight", 3 * 512 + 7);
    CHECK_MSG(fabsf(v - 1e5f) < 400, "q8_0 holds 1e5 as %g", v);

    /* clamped on request: exactly that value, recorded in the file */
    CHECK_OK(run("f16-clamped.gguf", "f16", NULL, true, 2, &err, out, sizeof out), &err);
    CHECK(check_finite(out, "blk.0.ffn_down.weight", 3 * 512 + 7) == 65504.0f);
    qf_gguf *g;
    CHECK_OK(qf_gguf_open(out, &g, &err), &err);
    if (g) {
        bool on = false;
        const void *arr;
        uint64_t n = 0;
        CHECK(qf_gguf_get_bool(g, "qforge.clamp_overflow", &on, &err) == QF_OK && on);
        CHECK_OK(qf_gguf_get_arr(g, "qforge.clamped", QF_GGUF_STRING, &arr, &n, &err), &err);
        CHECK_MSG(n == 1 && strstr(((const qf_gguf_str *)arr)[0].ptr, "blk.0.ffn_down.weight: 1 value clamped to +-65504"),
                  "%llu entries: %s", (unsigned long long)n, n ? ((const qf_gguf_str *)arr)[0].ptr : "");
        qf_gguf_close(g);
    }
    /* a file without clamping carries neither key */
    CHECK_OK(qf_gguf_open(qf_test_path("q8.gguf", out, sizeof out), &g, &err), &err);
    if (g) {
        CHECK(!qf_gguf_find_kv(g, "qforge.clamp_overflow") && !qf_gguf_find_kv(g, "qforge.clamped"));
        qf_gguf_close(g);
    }

    /* A permuted q row beyond Q4_0's scales (8 x 65504) through a recipe: the message names the source row */
    qf_test_set_weight(model_dir, "model.layers.1.self_attn.q_proj.weight", 5 * 256 + 1, -1.0e6f);
    st = run("q4.gguf", "q4_0", NULL, false, 2, &err, out, sizeof out);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "'blk.1.attn_q.weight' (model.layers.1.self_attn.q_proj.weight)") &&
                  strstr(err.msg, "row 5,") && strstr(err.msg, "largest |x| 1000000"),
              "%s", err.msg);
    CHECK_OK(run("q4-clamped.gguf", "q4_0", NULL, true, 2, &err, out, sizeof out), &err);
    check_finite(out, "", 0);
}

/* GPTQ reads whole matrices through its own path: the same rule applies there. */
static void test_gptq_path(void) {
    char hpath[4096], out[4096];
    qf_hessian_set hs = {0};
    static const char *const keys[] = {"attn_in", "attn_out_in", "ffn_in", "ffn_down_in"};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 4; k++) {
            char key[64];
            snprintf(key, sizeof key, "blk.%d.%s", l, keys[k]);
            uint32_t n = k == 3 ? 512 : 256;
            qf_hessian *h = qf_hessian_add(&hs, key, n);
            for (uint32_t i = 0; i < n; i++) h->h[(uint64_t)i * n + i] = 1.0 + i % 5;
            h->count = 1;
        }
    qf_error err;
    qf_test_path("h.gguf", hpath, sizeof hpath);
    CHECK_OK(qf_hessian_save(hpath, &hs, &err), &err);
    qf_hessian_free(&hs);
    qf_test_path("gptq.gguf", out, sizeof out);
    remove(out);
    qf_convert_opts o = {.src = model_dir, .out = out, .type = "q4_0", .hessian = hpath, .threads = 2};
    qf_status st = qf_convert(&o, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "'blk.1.attn_q.weight'") && strstr(err.msg, "q4_0"), "%s: %s",
              qf_status_name(st), err.msg);
    CHECK(!qf_test_file_exists(out));
    o.clamp_overflow = true;
    CHECK_OK(qf_convert(&o, &err), &err);
    check_finite(out, "", 0);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_kernels_hold_their_range();
    qf_test_make_model("range-model", 256, 512, "f32", model_dir, sizeof model_dir);
    test_refused_with_what_holds_it();
    test_gptq_path();
    return qf_test_finish();
}
