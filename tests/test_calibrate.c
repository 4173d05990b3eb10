/*
 * qforge calibrate: statistics that match a direct computation on a generated model, thread-count
 * independence, Hessians consistent with the imatrix (diag H = in_sum2 for the same input), and GPTQ
 * quantization end to end from those files.
 */
#include "testutil.h"
#include "testmodels.h"

#include "formats/gguf.h"
#include "formats/hessian.h"
#include "formats/imatrix.h"

#include <math.h>

static void write_text(const char *path) {
    /* plain English the synthetic byte-level BPE tokenizer was trained on, repeated */
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "once upon a time there was a little girl who liked to read stories about dragons, ships and the sea. "
                   "the quick brown fox jumps over the lazy dog %d times.\n", i);
    fclose(f);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    char dir[4096], text[4096], im1[4096], im2[4096], h1[4096], h2[4096], out[4096];
    qf_test_make_model("calib", 256, 512, "bf16", dir, sizeof dir);
    qf_test_path("calib.txt", text, sizeof text);
    write_text(text);
    qf_test_path("im1.gguf", im1, sizeof im1);
    qf_test_path("im2.gguf", im2, sizeof im2);
    qf_test_path("h1.gguf", h1, sizeof h1);
    qf_test_path("h2.gguf", h2, sizeof h2);
    qf_error err;
    qf_calibrate_opts o = {.model = dir, .text_path = text, .out = im1, .hessian_out = h1, .ctx = 64, .chunks = 4, .threads = 1};
    CHECK_OK(qf_calibrate(&o, &err), &err);
    o.out = im2;
    o.hessian_out = h2;
    o.threads = 2;
    CHECK_OK(qf_calibrate(&o, &err), &err);
    CHECK_MSG(qf_test_same_file(im1, im2), "imatrix differs between 1 and 2 threads");
    CHECK_MSG(qf_test_same_file(h1, h2), "Hessians differ between 1 and 2 threads");

    qf_imatrix im;
    qf_hessian_set hs;
    CHECK_OK(qf_imatrix_load(im1, &im, &err), &err);
    CHECK_OK(qf_hessian_load(h1, &hs, &err), &err);
    /* 2 layers x 7 linear weights; 4 distinct inputs per layer */
    CHECK_MSG(im.n == 14 && hs.n == 8, "entries %zu, hessians %zu", im.n, hs.n);
    CHECK(im.chunk_count == 4 && im.chunk_size == 64 && im.calibration_sha256 && strlen(im.calibration_sha256) == 64);
    const qf_imatrix_entry *q = qf_imatrix_find(&im, "blk.1.attn_q.weight"), *k = qf_imatrix_find(&im, "blk.1.attn_k.weight");
    const qf_imatrix_entry *d = qf_imatrix_find(&im, "blk.0.ffn_down.weight");
    const qf_hessian *hq = qf_hessian_find(&hs, "blk.1.attn_in"), *hd = qf_hessian_find(&hs, "blk.0.ffn_down_in");
    CHECK(q && k && d && hq && hd);
    if (q && k && d && hq && hd) {
        CHECK(q->counts[0] == 256 && d->n_cols == 512 && hd->n == 512 && hd->count == 256);
        /* q and k read the same input; diag(H) of that input is its sum of squares */
        for (uint32_t j = 0; j < q->n_cols; j++) {
            CHECK(q->sum2[j] == k->sum2[j]);
            double diag = hq->h[(uint64_t)j * hq->n + j];
            CHECK_MSG(fabs(diag - q->sum2[j]) <= 1e-5 * fabs(q->sum2[j]) + 1e-6, "col %u: diag %g vs sum2 %g", j, diag, q->sum2[j]);
        }
        for (uint32_t i = 0; i < hd->n; i += 37)
            for (uint32_t j = 0; j < hd->n; j += 41) CHECK(hd->h[(uint64_t)i * hd->n + j] == hd->h[(uint64_t)j * hd->n + i]);
        /* ffn_down's input is the SwiGLU product: not all zero */
        double s = 0;
        for (uint32_t j = 0; j < d->n_cols; j++) s += d->sum2[j];
        CHECK(s > 0 && isfinite(s));
    }
    qf_imatrix_free(&im);
    qf_hessian_free(&hs);

    /* GPTQ from these files: writes a loadable file, deterministic across threads */
    qf_test_path("gptq-1.gguf", out, sizeof out);
    qf_convert_opts qo = {.src = dir, .out = out, .recipe = "q4_k_m", .imatrix = im1, .hessian = h1, .threads = 1};
    CHECK_OK(qf_convert(&qo, &err), &err);
    char out2[4096];
    qf_test_path("gptq-2.gguf", out2, sizeof out2);
    qo.out = out2;
    qo.threads = 2;
    CHECK_OK(qf_convert(&qo, &err), &err);
    CHECK_MSG(qf_test_same_file(out, out2), "gptq output differs between 1 and 2 threads");
    qf_gguf *g;
    CHECK_OK(qf_gguf_open(out, &g, &err), &err);
    if (g) {
        const char *v;
        CHECK(qf_gguf_get_str(g, "qforge.method", &v, NULL) == QF_OK && !strcmp(v, "gptq"));
        CHECK(qf_gguf_get_str(g, "qforge.hessian_sha256", &v, NULL) == QF_OK);
        qf_gguf_close(g);
    }
    /* The imatrix is not a Hessian file and vice versa */
    qo.hessian = im1;
    CHECK(qf_convert(&qo, &err) == QF_E_INPUT && strstr(err.msg, "not a Hessian file"));
    /* Too little text for one chunk is a clear error */
    o.ctx = 100000;
    o.out = im2;
    o.hessian_out = NULL;
    qf_status st = qf_calibrate(&o, &err);
    CHECK_MSG(st == QF_E_INPUT && strstr(err.msg, "fewer than one chunk"), "%d %s", st, err.msg);
    return qf_test_finish();
}
