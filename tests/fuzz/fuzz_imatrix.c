/*
 * fuzz_imatrix.c — importance-matrix files (qf_imatrix_load), which qforge quantize reads from users
 * and from llama-imatrix: the GGUF form and llama.cpp's legacy imatrix.dat (qf_imatrix_load reads a
 * file without the GGUF magic as the legacy layout, so every input that is not a GGUF exercises that
 * parser; the seeds hold both). The input goes through a file (the reader takes a path); an accepted
 * imatrix is used as quantize uses it: every entry's importance weights are computed for every matrix
 * and must be finite. GPTQ Hessian files have their own target (fuzz_hessian.c).
 */
#include "fuzz_util.h"

#include "formats/imatrix.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = qf_fuzz_path("input.gguf");
    qf_fuzz_write(path, data, size);
    qf_error err;
    qf_error_clear(&err);
    qf_imatrix im;
    qf_status st = qf_imatrix_load(path, &im, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) {
        for (size_t i = 0; i < im.n; i++) {
            const qf_imatrix_entry *e = &im.e[i];
            if (qf_imatrix_find(&im, e->name) == NULL) qf_fuzz_violation("entry lookup fails", &err);
            uint64_t n = (uint64_t)e->n_cols * e->n_mat;
            float *w = malloc((n ? n : 1) * sizeof(float));
            if (!w) abort();
            const qf_expert_rule rules[] = {{0, QF_SPARSE_OWN}, {64, QF_SPARSE_BLEND}, {64, QF_SPARSE_POOLED}};
            for (size_t r = 0; r < 3; r++) {
                qf_imatrix_weights(e, &rules[r], w);
                for (uint64_t j = 0; j < n; j++)
                    if (!isfinite(w[j]) || w[j] < 0) qf_fuzz_violation("importance weight not finite and >= 0", &err);
            }
            free(w);
        }
        qf_imatrix_free(&im);
    }
    return 0;
}
