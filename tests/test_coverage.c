/*
 * Which calibration data each tensor is quantized with. A Hessian or imatrix file made for another model
 * (wrong shapes, or names that match nothing the plan quantizes) is refused instead of silently giving a
 * plain quantization labelled gptq/weighted; one that covers only part of the layers is used with a
 * warning that counts; the file (qforge.methods) and --dry-run record what each tensor class got.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/gguf.h"
#include "formats/hessian.h"
#include "formats/imatrix.h"

#include <fcntl.h>
#include <unistd.h>

static char model_dir[4096];

/* Hessians for the given layers' inputs, n x n (identity-like); keys as qforge calibrate writes them. */
static void write_hessians(const char *name, int l0, int l1, uint32_t width, char *path, size_t n) {
    static const char *const keys[] = {"attn_in", "attn_out_in", "ffn_in", "ffn_down_in"};
    qf_hessian_set hs = {0};
    for (int l = l0; l <= l1; l++)
        for (int k = 0; k < 4; k++) {
            char key[64];
            snprintf(key, sizeof key, "blk.%d.%s", l, keys[k]);
            uint32_t dim = k == 3 ? 2 * width : width;
            qf_hessian *h = qf_hessian_add(&hs, key, dim);
            for (uint32_t i = 0; i < dim; i++) h->h[(uint64_t)i * dim + i] = 1.0 + i % 3;
            h->count = 1;
        }
    qf_error err;
    CHECK_OK(qf_hessian_save(qf_test_path(name, path, n), &hs, &err), &err);
    qf_hessian_free(&hs);
}

/* An imatrix with entries for the layers' linear weights (names as llama-imatrix writes them). */
static void write_imatrix(const char *name, int l0, int l1, const char *fused, char *path, size_t n) {
    static const char *const w[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    qf_imatrix im = {0};
    for (int l = l0; l <= l1; l++)
        for (int k = 0; k < (fused ? 1 : 7); k++) {
            char t[96];
            snprintf(t, sizeof t, "blk.%d.%s.weight", l, fused ? fused : w[k]);
            qf_imatrix_entry *e = qf_imatrix_add(&im, t, k == 6 ? 512 : 256, 1);
            for (uint32_t j = 0; j < e->n_cols; j++) e->sum2[j] = 1.0 + j % 7;
            e->counts[0] = 10;
        }
    im.chunk_count = 1;
    im.chunk_size = 64;
    qf_error err;
    CHECK_OK(qf_imatrix_save(qf_test_path(name, path, n), &im, &err), &err);
    qf_imatrix_free(&im);
}

/* Run qf_convert with stdout and stderr captured into files; returns the status. */
static qf_status convert_captured(qf_convert_opts *o, qf_error *err, char *out_text, char *err_text, size_t n) {
    char po[4096], pe[4096];
    qf_test_path("stdout.txt", po, sizeof po);
    qf_test_path("stderr.txt", pe, sizeof pe);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    qf_status st = qf_convert(o, err);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so); close(se); close(fo); close(fe);
    char *paths[2] = {po, pe}, *dst[2] = {out_text, err_text};
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        uint8_t *b = qf_test_read_file(paths[i], &len);
        snprintf(dst[i], n, "%.*s", (int)len, b ? (const char *)b : "");
        free(b);
    }
    return st;
}

/* The file's qforge.methods, joined by " | ". */
static void methods_of(const char *path, char *buf, size_t n) {
    qf_gguf *g;
    qf_error err;
    buf[0] = '\0';
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return;
    const void *arr;
    uint64_t k = 0;
    if (qf_gguf_get_arr(g, "qforge.methods", QF_GGUF_STRING, &arr, &k, &err) == QF_OK)
        for (uint64_t i = 0; i < k; i++) {
            size_t used = strlen(buf);
            snprintf(buf + used, n - used, "%s%s", i ? " | " : "", ((const qf_gguf_str *)arr)[i].ptr);
        }
    qf_gguf_close(g);
}

static void test_hessians(void) {
    char h[4096], out[4096], so[8192], se[8192], m[2048];
    qf_error err;
    qf_test_path("gptq.gguf", out, sizeof out);
    qf_convert_opts o = {.src = model_dir, .out = out, .type = "q4_K", .hessian = h, .threads = 1};

    /* made for a model of width 128: the shapes give it away */
    write_hessians("h-narrow.gguf", 0, 1, 128, h, sizeof h);
    remove(out);
    qf_status st = qf_convert(&o, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "h-narrow.gguf") && strstr(err.msg, "'blk.0.attn_in' is 128 x 128") &&
                  strstr(err.msg, "'blk.0.attn_q.weight' reads 256 inputs") && strstr(err.msg, "another model"),
              "%s: %s", qf_status_name(st), err.msg);
    CHECK(qf_status_exit_code(st) == 2 && !qf_test_file_exists(out));

    /* layers this model does not have: nothing matches */
    write_hessians("h-deep.gguf", 6, 7, 256, h, sizeof h);
    st = qf_convert(&o, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "matches none of the 14 tensors it could apply to") &&
                  strstr(err.msg, "'blk.6.attn_in'"),
              "%s: %s", qf_status_name(st), err.msg);
    CHECK(!qf_test_file_exists(out));

    /* layer 0 only: used there, counted, recorded per class */
    write_hessians("h-half.gguf", 0, 0, 256, h, sizeof h);
    CHECK_OK(convert_captured(&o, &err, so, se, sizeof so), &err);
    CHECK_MSG(strstr(se, "warning: Hessians") && strstr(se, "cover 7 of the 14 tensors GPTQ can take; the other 7"),
              "stderr: %s", se);
    methods_of(out, m, sizeof m);
    CHECK_MSG(strstr(m, "attn_q: gptq 1, rtn 1") && strstr(m, "ffn_down: gptq 1, rtn 1") && strstr(m, "token_embd: rtn 1") &&
                  strstr(m, "output: rtn 1") && !strstr(m, "norm"),
              "qforge.methods: %s", m);
    o.dry_run = true;
    CHECK_OK(convert_captured(&o, &err, so, se, sizeof so), &err);
    CHECK_MSG(strstr(so, "methods: ") && strstr(so, "attn_v: gptq 1, rtn 1"), "dry run: %s", so);
}

static void test_imatrix(void) {
    char im[4096], out[4096], so[8192], se[8192], m[2048];
    qf_error err;
    qf_test_path("weighted.gguf", out, sizeof out);
    qf_convert_opts o = {.src = model_dir, .out = out, .recipe = "q4_k_m", .imatrix = im, .threads = 1};

    /* an architecture with a fused QKV weight: no name matches */
    write_imatrix("im-fused.gguf", 0, 1, "attn_qkv", im, sizeof im);
    remove(out);
    qf_status st = qf_convert(&o, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "im-fused.gguf") && strstr(err.msg, "matches none") &&
                  strstr(err.msg, "'blk.0.attn_qkv.weight'"),
              "%s: %s", qf_status_name(st), err.msg);
    CHECK(!qf_test_file_exists(out));

    /* layer 1 only */
    write_imatrix("im-half.gguf", 1, 1, NULL, im, sizeof im);
    CHECK_OK(convert_captured(&o, &err, so, se, sizeof so), &err);
    CHECK_MSG(strstr(se, "covers 7 of the 14 quantized layer tensors; the other 7"), "stderr: %s", se);
    methods_of(out, m, sizeof m);
    CHECK_MSG(strstr(m, "attn_k: weighted 1, rtn 1") && strstr(m, "output: rtn 1"), "qforge.methods: %s", m);

    /* every layer: no warning */
    write_imatrix("im-full.gguf", 0, 1, NULL, im, sizeof im);
    CHECK_OK(convert_captured(&o, &err, so, se, sizeof so), &err);
    CHECK_MSG(!strstr(se, "warning"), "stderr: %s", se);
    methods_of(out, m, sizeof m);
    CHECK_MSG(strstr(m, "attn_k: weighted 2") && strstr(m, "ffn_down: weighted 2"), "qforge.methods: %s", m);

    /* an imatrix for a plan that quantizes nothing would be ignored: refused */
    o.recipe = NULL;
    o.type = "f16";
    st = qf_convert(&o, &err);
    CHECK_MSG(st == QF_E_USAGE && strstr(err.msg, "quantizes no tensor it applies to"), "%s: %s", qf_status_name(st),
              err.msg);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    qf_test_make_model("coverage-model", 256, 512, "bf16", model_dir, sizeof model_dir);
    test_hessians();
    test_imatrix();
    return qf_test_finish();
}
