/*
 * GPTQ: on correlated calibration inputs, Hessian error feedback must lower the layer's output error
 * tr((W - Q) H (W - Q)^T) below both round-to-nearest and importance-weighted quantization of the same
 * type, and be deterministic across thread counts.
 */
#include "testutil.h"

#include "kernels/qtypes.h"
#include "quantize/gptq.h"

#include <math.h>

/* Output error of quantized rows q (dequantized to F32) against w under Hessian H. */
static double output_error(const float *w, const float *q, uint64_t rows, uint64_t n, const double *H) {
    double total = 0;
    double *d = malloc(n * sizeof(double));
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t i = 0; i < n; i++) d[i] = (double)w[r * n + i] - q[r * n + i];
        for (uint64_t i = 0; i < n; i++) {
            double s = 0;
            for (uint64_t k = 0; k < n; k++) s += H[i * n + k] * d[k];
            total += d[i] * s;
        }
    }
    free(d);
    return total;
}

static void dequant_all(const qf_qtype_traits *tt, const uint8_t *blocks, uint64_t rows, uint64_t n, float *out) {
    uint64_t rb;
    qf_qtype_row_bytes(tt, n, &rb);
    for (uint64_t r = 0; r < rows; r++) tt->dequantize(blocks + r * rb, out + r * n, (int64_t)n);
}

static void run_case(const char *type, uint64_t rows, uint64_t n, uint64_t seed) {
    const qf_qtype_traits *tt = qf_qtype_by_name(type);
    uint64_t rb, N = 2 * n, s = seed;
    qf_qtype_row_bytes(tt, n, &rb);
    /* Inputs with strongly correlated features and uneven scales, like real activations. */
    float *X = malloc(N * n * sizeof(float)), *W = malloc(rows * n * sizeof(float)), *Wc = malloc(rows * n * sizeof(float));
    double *H = calloc(n * n, sizeof(double));
    for (uint64_t t = 0; t < N; t++) {
        float common = qf_test_randn(&s);
        for (uint64_t i = 0; i < n; i++)
            X[t * n + i] = (0.7f * common + 0.3f * qf_test_randn(&s)) * (1.0f + 3.0f * (float)(i % 7 == 0));
    }
    for (uint64_t t = 0; t < N; t++) /* H = X^T X, rows of X streamed once */
        for (uint64_t i = 0; i < n; i++)
            for (uint64_t k = 0; k < n; k++) H[i * n + k] += (double)X[t * n + i] * X[t * n + k];
    for (uint64_t i = 0; i < rows * n; i++) W[i] = 0.05f * qf_test_randn(&s);
    uint8_t *q_rtn = malloc(rows * rb), *q_imp = malloc(rows * rb), *q_gptq = malloc(rows * rb), *q_gptq2 = malloc(rows * rb);
    float *imp = malloc(n * sizeof(float)), *deq = malloc(rows * n * sizeof(float));
    for (uint64_t i = 0; i < n; i++) imp[i] = (float)H[i * n + i];
    for (uint64_t r = 0; r < rows; r++) {
        CHECK(tt->quantize(W + r * n, q_rtn + r * rb, (int64_t)n, NULL));
        CHECK(tt->quantize(W + r * n, q_imp + r * rb, (int64_t)n, imp));
    }
    qf_error err;
    qf_gptq_opts o = {.damp = 0.01, .threads = 1};
    memcpy(Wc, W, rows * n * sizeof(float));
    CHECK_OK(qf_gptq_quantize(tt, Wc, rows, n, H, &o, q_gptq, &err), &err);
    o.threads = 3;
    o.block_order = false;
    memcpy(Wc, W, rows * n * sizeof(float));
    CHECK_OK(qf_gptq_quantize(tt, Wc, rows, n, H, &o, q_gptq2, &err), &err);
    CHECK_MSG(!memcmp(q_gptq, q_gptq2, rows * rb), "%s: gptq differs between 1 and 3 threads", type);
    dequant_all(tt, q_rtn, rows, n, deq);
    double e_rtn = output_error(W, deq, rows, n, H);
    dequant_all(tt, q_imp, rows, n, deq);
    double e_imp = output_error(W, deq, rows, n, H);
    dequant_all(tt, q_gptq, rows, n, deq);
    double e_gptq = output_error(W, deq, rows, n, H);
    printf("  %-5s %llux%llu: output error rtn %.4g, weighted %.4g, gptq %.4g (gptq/weighted %.3f)\n", type,
           (unsigned long long)rows, (unsigned long long)n, e_rtn, e_imp, e_gptq, e_gptq / e_imp);
    CHECK_MSG(e_gptq < 0.9 * e_imp && e_gptq < e_rtn, "%s: gptq %.4g not below weighted %.4g / rtn %.4g", type, e_gptq, e_imp, e_rtn);
    /* block_order=true also works and is deterministic */
    o.block_order = true;
    memcpy(Wc, W, rows * n * sizeof(float));
    CHECK_OK(qf_gptq_quantize(tt, Wc, rows, n, H, &o, q_gptq2, &err), &err);
    dequant_all(tt, q_gptq2, rows, n, deq);
    CHECK(output_error(W, deq, rows, n, H) < e_rtn);
    free(X); free(W); free(Wc); free(H); free(q_rtn); free(q_imp); free(q_gptq); free(q_gptq2); free(imp); free(deq);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    run_case("q4_0", 48, 256, 1);
    run_case("q4_K", 32, 512, 2);
    run_case("q3_K", 16, 1024, 3); /* feedback runs between 256-blocks: rows need several */
    run_case("q8_0", 16, 128, 4);
    /* A non-positive-definite Hessian (all zero) is handled by damping; a type with row scales is refused. */
    qf_error err;
    float w[64] = {0};
    double H[64 * 64] = {0};
    uint8_t out[64 * 2];
    qf_gptq_opts o = {.damp = 0.01, .threads = 1};
    CHECK_OK(qf_gptq_quantize(qf_qtype_by_name("q8_0"), w, 1, 64, H, &o, out, &err), &err);
    CHECK(qf_gptq_quantize(qf_qtype_by_name("f16"), w, 1, 64, H, &o, out, &err) == QF_E_USAGE);
    return qf_test_finish();
}
