/*
 * fuzz_hessian.c — GPTQ Hessian files (qf_hessian_load), then each accepted matrix used the way quantize
 * --method gptq uses it: a small weight whose rows match it is quantized to Q8_0 with Hessian error
 * feedback. Besides the shared contract: the loaded matrices are finite, and GPTQ either succeeds with
 * finite, decodable rows or refuses the matrix with a bad-input message (not positive definite), never
 * a crash or an internal error.
 */
#include "fuzz_util.h"

#include "formats/hessian.h"
#include "kernels/qtypes.h"
#include "quantize/gptq.h"

#include <math.h>

#define MAX_COLS 256 /* larger matrices are loaded and checked, but not run through GPTQ */

static void run_gptq(const qf_hessian *h, qf_error *err) {
    const qf_qtype_traits *tt = qf_qtype_get(QF_T_Q8_0);
    if (!tt || h->n == 0 || h->n % tt->blck || h->n > MAX_COLS) return;
    const uint64_t rows = 3;
    uint64_t row_bytes = 0;
    qf_qtype_row_bytes(tt, h->n, &row_bytes);
    float *w = malloc(rows * h->n * sizeof *w), *back = malloc(h->n * sizeof *back);
    uint8_t *q = malloc(rows * row_bytes);
    if (!w || !back || !q) abort();
    for (uint64_t i = 0; i < rows * h->n; i++) w[i] = (float)sin(0.37 * (double)i) * (1.0f + (float)(i % 7));
    qf_gptq_opts go = {.damp = 0.01, .threads = 1};
    qf_status st = qf_gptq_quantize(tt, w, rows, h->n, h->h, &go, q, err);
    qf_fuzz_check_failure(st, err);
    for (uint64_t r = 0; st == QF_OK && r < rows; r++) {
        tt->dequantize(q + r * row_bytes, back, (int64_t)h->n);
        for (uint32_t c = 0; c < h->n; c++)
            if (!isfinite(back[c])) qf_fuzz_violation("GPTQ wrote a non-finite weight", err);
    }
    free(w);
    free(back);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = qf_fuzz_path("input.hessian.gguf");
    qf_fuzz_write(path, data, size);
    qf_error err;
    qf_error_clear(&err);
    qf_hessian_set hs;
    qf_status st = qf_hessian_load(path, &hs, &err);
    qf_fuzz_check_failure(st, &err);
    if (st != QF_OK) return 0;
    for (size_t i = 0; i < hs.n; i++) {
        const qf_hessian *h = &hs.e[i];
        if (qf_hessian_find(&hs, h->key) == NULL) qf_fuzz_violation("Hessian lookup fails", &err);
        for (uint64_t k = 0; k < (uint64_t)h->n * h->n; k++)
            if (!isfinite(h->h[k])) qf_fuzz_violation("a loaded Hessian holds a non-finite value", &err);
        qf_error_clear(&err);
        run_gptq(h, &err);
    }
    qf_hessian_free(&hs);
    return 0;
}
