/*
 * End-to-end conversion tests on generated checkpoints written in the layout real releases use:
 * round trips (bit-exact for F32/F16/BF16 sources, FP8 sources equal to an independent dequantization
 * written here), the Q/K row permutation, determinism across thread counts, sharded sources, and
 * failures that must leave no output file behind.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/fpconv.h"
#include "kernels/qtypes.h"

#include <math.h>
#include <sys/stat.h>

/* ---- an independent FP8 decoder (from the OCP bit layout, not kernels/) -------------------------- */

static float e4m3_ref(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    float v = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

/* ---- generated checkpoints ----------------------------------------------------------------------- */

static qf_status convert(const char *src, const char *out, const char *type, int threads, qf_error *err) {
    qf_convert_opts o = {.src = src, .out = out, .type = type, .threads = threads};
    return qf_convert(&o, err);
}

/* Expected F32 values of an HF tensor as the converter must store them (Q/K rows permuted). */
static float *expected_rows(const qf_st_model *m, const qf_st_tensor *t, uint32_t heads) {
    uint64_t R = t->n_dims == 2 ? t->shape[0] : 1, C = t->shape[t->n_dims - 1];
    float *x = malloc(R * C * sizeof(float)), *y = malloc(R * C * sizeof(float));
    if (t->dtype == QF_DT_F8_E4M3) {
        char nm[512];
        snprintf(nm, sizeof nm, "%s_scale_inv", t->name);
        const qf_st_tensor *s = qf_st_find(m, nm);
        bool blocks = s != NULL;
        if (!blocks) { snprintf(nm, sizeof nm, "%s_scale", t->name); s = qf_st_find(m, nm); }
        uint64_t bc = blocks ? s->shape[1] : 0;
        for (uint64_t i = 0; i < R * C; i++) {
            uint64_t at = blocks ? (i / C / 128) * bc + (i % C) / 128 : s->n_elems == 1 ? 0 : i / C;
            float sc;
            memcpy(&sc, s->data + 4 * at, 4);
            x[i] = e4m3_ref(t->data[i]) * sc;
        }
    } else {
        qf_dtype_decode(t->dtype, t->data, x, R * C);
    }
    for (uint64_t r = 0; r < R; r++) {
        uint64_t src = r;
        if (heads) {
            uint64_t d = R / heads, h = r / d, k = r % d;
            src = h * d + (k % 2) * (d / 2) + k / 2;
        }
        memcpy(y + r * C, x + src * C, C * sizeof(float));
    }
    free(x);
    return y;
}

static const char *gguf_name_of(const char *hf, char *buf, size_t n, uint32_t *heads, uint32_t n_head, uint32_t n_kv) {
    static const char *const map[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"}, {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"}, {"mlp.down_proj.weight", "ffn_down.weight"}};
    *heads = 0;
    for (size_t i = 0; i < 3; i++) if (!strcmp(hf, map[i][0])) return snprintf(buf, n, "%s", map[i][1]), buf;
    unsigned l;
    int c = 0;
    if (sscanf(hf, "model.layers.%u.%n", &l, &c) != 1) return NULL;
    for (size_t i = 3; i < QF_ARRAY_LEN(map); i++) {
        if (!strcmp(hf + c, map[i][0])) {
            if (i == 4) *heads = n_head;
            if (i == 5) *heads = n_kv;
            snprintf(buf, n, "blk.%u.%s", l, map[i][1]);
            return buf;
        }
    }
    return NULL;
}

/* Every source tensor appears in the GGUF with exactly the expected values (tolerance `tol` relative
 * to the row's max for lossy output types; 0 = bit-exact). */
static void compare(const char *src_file, const char *gguf_path, double tol, uint32_t n_head, uint32_t n_kv) {
    qf_st_model *m;
    qf_gguf *g;
    qf_error err;
    CHECK_OK(qf_st_open(src_file, &m, &err), &err);
    CHECK_OK(qf_gguf_open(gguf_path, &g, &err), &err);
    if (!m || !g) return;
    size_t checked = 0;
    for (size_t i = 0; i < qf_st_n_tensors(m); i++) {
        const qf_st_tensor *t = qf_st_tensor_at(m, i);
        char name[128];
        uint32_t heads;
        if (!gguf_name_of(t->name, name, sizeof name, &heads, n_head, n_kv)) continue;
        const qf_gguf_tensor *gt = qf_gguf_find_tensor(g, name);
        CHECK_MSG(gt != NULL, "%s: tensor %s missing", gguf_path, name);
        if (!gt) continue;
        float *want = expected_rows(m, t, heads);
        uint64_t n = t->n_elems;
        float *got = malloc(n * sizeof(float));
        const qf_qtype_traits *tt = qf_qtype_get(gt->type);
        tt->dequantize(gt->data, got, (int64_t)n);
        double maxabs = 0, maxerr = 0;
        for (uint64_t k = 0; k < n; k++) {
            maxabs = fmax(maxabs, fabs(want[k]));
            maxerr = fmax(maxerr, fabs((double)want[k] - got[k]));
        }
        if (tol == 0) CHECK_MSG(memcmp(want, got, n * sizeof(float)) == 0, "%s: %s not bit-exact (max err %g)", gguf_path, name, maxerr);
        else CHECK_MSG(maxerr <= tol * maxabs, "%s: %s max err %g > %g", gguf_path, name, maxerr, tol * maxabs);
        checked++;
        free(want);
        free(got);
    }
    CHECK_MSG(checked == qf_gguf_n_tensors(g), "%s: compared %zu of %zu tensors", gguf_path, checked, qf_gguf_n_tensors(g));
    qf_gguf_close(g);
    qf_st_close(m);
}

static void test_round_trips(void) {
    char dir[4096], src[4200], out[4096];
    const char *dtypes[] = {"f32", "f16", "bf16"};
    for (size_t d = 0; d < 3; d++) {
        char name[32];
        snprintf(name, sizeof name, "rt-%s", dtypes[d]);
        qf_test_make_model(name, 256, 512, dtypes[d], dir, sizeof dir);
        snprintf(src, sizeof src, "%s/model.safetensors", dir);
        qf_error err;
        /* The source's own type and F32 are exact; F32 holds every F16/BF16 value. */
        const char *exact[] = {dtypes[d], "f32"};
        for (size_t e = 0; e < 2; e++) {
            snprintf(out, sizeof out, "%s/out-%s.gguf", qf_test_scratch, exact[e]);
            CHECK_OK(convert(dir, out, exact[e], 2, &err), &err);
            compare(src, out, 0, 8, 4);
        }
        snprintf(out, sizeof out, "%s/out-q8.gguf", qf_test_scratch);
        CHECK_OK(convert(dir, out, "q8_0", 2, &err), &err);
        compare(src, out, 1.0 / 127, 8, 4); /* Q8_0: error <= half a step of amax/127 per block */
    }
}

static void test_fp8_source(void) {
    static const char *const names[] = {"fp8-block", "fp8-channel", "fp8-tensor"};
    for (int layout = QF_TEST_FP8_BLOCK128; layout <= QF_TEST_FP8_TENSOR; layout++) {
        char dir[4096], src[4200], out[4200];
        /* 192 x 200: no dimension is a multiple of 128, so every weight has partial edge blocks. */
        qf_test_make_model(names[layout], 192, 200, "bf16", dir, sizeof dir);
        qf_test_to_fp8_layout(dir, (qf_test_fp8_layout)layout);
        snprintf(src, sizeof src, "%s/model.safetensors", dir);
        snprintf(out, sizeof out, "%s/%s-f32.gguf", qf_test_scratch, names[layout]);
        qf_error err;
        CHECK_OK(convert(dir, out, "f32", 2, &err), &err);
        compare(src, out, 0, 6, 3);
    }
}

static void test_determinism(void) {
    char dir[4096], a[4096], b[4096];
    qf_test_make_model("det", 256, 768, "bf16", dir, sizeof dir);
    qf_error err;
    snprintf(a, sizeof a, "%s/det-1.gguf", qf_test_scratch);
    CHECK_OK(convert(dir, a, "q8_0", 1, &err), &err);
    for (int t = 2; t <= 5; t += 3) {
        snprintf(b, sizeof b, "%s/det-%d.gguf", qf_test_scratch, t);
        CHECK_OK(convert(dir, b, "q8_0", t, &err), &err);
        CHECK_MSG(qf_test_same_file(a, b), "q8_0 output differs between 1 and %d threads", t);
    }
}

static void test_failures_leave_nothing(void) {
    char dir[4096], out[4096], src[4200];
    qf_test_make_model("nan", 256, 512, "f32", dir, sizeof dir);
    snprintf(src, sizeof src, "%s/model.safetensors", dir);
    /* Poison one value of a late tensor: conversion must fail midway and leave no file. */
    size_t n;
    uint8_t *bytes = qf_test_read_file(src, &n);
    float nan = NAN;
    memcpy(bytes + n - 64, &nan, 4);
    CHECK(qf_test_write_file(src, bytes, n));
    free(bytes);
    snprintf(out, sizeof out, "%s/nan.gguf", qf_test_scratch);
    remove(out);
    qf_error err;
    qf_status st = convert(dir, out, "q8_0", 2, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "NaN"), "status %d: %s", st, err.msg);
    CHECK(!qf_test_file_exists(out));
    /* An existing file of that name survives a failed conversion untouched. */
    CHECK(qf_test_write_file(out, "keep", 4));
    st = convert(dir, out, "q8_0", 2, &err);
    size_t kn;
    uint8_t *kept = qf_test_read_file(out, &kn);
    CHECK(st != QF_OK && kept && kn == 4 && !memcmp(kept, "keep", 4));
    free(kept);
    /* No temp files left beside it. */
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '\\.qf-'", qf_test_scratch);
    CHECK_MSG(system(cmd) != 0, "a temp file was left in %s", qf_test_scratch);
}

/* A source converted to its own type passes its bytes through (quantize/run.c); a NaN or Inf in them is
 * refused as the quantizers refuse it, naming the tensor and row, and leaves no file. */
static void test_plain_pass_refuses_nonfinite(void) {
    static const struct { const char *dtype; uint16_t poison; } cases[] = {{"bf16", 0x7FC0}, {"f16", 0xFC00}};
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[4096], out[4096], src[4200], name[32];
        snprintf(name, sizeof name, "plain-nan-%s", cases[i].dtype);
        qf_test_make_model(name, 256, 512, cases[i].dtype, dir, sizeof dir);
        snprintf(src, sizeof src, "%s/model.safetensors", dir);
        size_t n;
        uint8_t *bytes = qf_test_read_file(src, &n);
        memcpy(bytes + n - 64, &cases[i].poison, 2); /* in the last tensor's last row */
        CHECK(qf_test_write_file(src, bytes, n));
        free(bytes);
        snprintf(out, sizeof out, "%s/%s.gguf", qf_test_scratch, name);
        remove(out);
        qf_error err;
        qf_status st = convert(dir, out, cases[i].dtype, 2, &err);
        CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "NaN or Inf") && strstr(err.msg, "row "), "%s: status %d: %s",
                  cases[i].dtype, st, err.msg);
        CHECK(!qf_test_file_exists(out));
    }
}

static void write_config(const char *dir, const char *json) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(qf_test_write_file(p, json, strlen(json)));
}

static void test_bad_configs(void) {
    char dir[4096], out[4096];
    qf_test_make_model("badcfg", 256, 512, "bf16", dir, sizeof dir);
    snprintf(out, sizeof out, "%s/badcfg.gguf", qf_test_scratch);
    static const struct { const char *json, *expect; qf_status st; } cases[] = {
        {"{\"architectures\":[\"GPT2LMHeadModel\"]}", "not supported", QF_E_UNSUPPORTED},
        {"{\"architectures\":[]}", "architectures", QF_E_INPUT},
        {"[1,2]", "not a JSON object", QF_E_INPUT},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256}", "intermediate_size", QF_E_INPUT},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":512,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":8,\"num_key_value_heads\":3,\"vocab_size\":320}", "multiple", QF_E_INPUT},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":999,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":320}", "config.json implies", QF_E_INPUT},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":512,\"num_hidden_layers\":3,"
         "\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":320}", "layer 2 has no tensor", QF_E_INPUT},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-5}", "positive integer", QF_E_INPUT},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        write_config(dir, cases[i].json);
        qf_error err = {0};
        qf_status st = convert(dir, out, "f16", 1, &err);
        CHECK_MSG(st == cases[i].st && strstr(err.msg, cases[i].expect), "case %zu: status %d msg '%s'", i, st, err.msg);
        CHECK(!qf_test_file_exists(out));
        printf("  bad config %zu -> %s\n", i, err.msg);
    }
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_round_trips();
    test_fp8_source();
    test_determinism();
    test_failures_leave_nothing();
    test_plain_pass_refuses_nonfinite();
    test_bad_configs();
    return qf_test_finish();
}
