/*
 * test_cuda_types.cu — the CUDA backend's decoders against the CPU's, on the host (no GPU needed: built
 * wherever the CUDA backend is, and run by ctest there). For every type the kernels decode, rows of
 * quantized random data and rows of random bytes (every field pattern: NaN and Inf scales, subnormal
 * exponents, negative zero codes):
 *   - deq<T>(row, k) equals the CPU dequantizer's element k bit for bit (NaN where it is NaN);
 *   - the GEMV units cover every element of a row exactly once, each with the same value;
 * and the kernels' vexp equals the CPU's scalar one bit for bit over [-100, 100] and at NaN.
 * Exit 0 when all hold, 1 otherwise (each failure printed with the type, row kind and element).
 */
#include "runtime/cuda/cu_common.cuh"

extern "C" {
#include "kernels/qtypes.h"
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

using namespace qf_cu;

static int failures, checks;

static uint64_t rng(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
static float randn(uint64_t *s) {
    double u = ((double)(rng(s) >> 11) + 0.5) / 9007199254740992.0, v = ((double)(rng(s) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static bool same(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y || (isnan(a) && isnan(b));
}

#define FAIL(...)                                       \
    do {                                                \
        if (failures++ < 20) fprintf(stderr, __VA_ARGS__); \
    } while (0)

/* One row (16-byte aligned, as uploaded) of K elements of type T against the CPU's decoding. */
template <int T> static void check_row(const qf_qtype_traits *tt, const uint8_t *row, uint32_t K, const char *kind) {
    std::vector<float> ref(K);
    tt->dequantize(row, ref.data(), K);
    for (uint32_t k = 0; k < K; k++) {
        checks++;
        float v = deq<T>(row, k);
        if (!same(v, ref[k])) FAIL("%s %s: element %u: deq %.9g, CPU %.9g\n", tt->name, kind, k, v, ref[k]);
    }
    std::vector<int> seen(K, 0);
    for (uint32_t u = 0; u < K / 8; u++) {
        float w[8];
        uint32_t b0, b1;
        Unit<T>::load(row, u, w, &b0, &b1);
        for (int i = 0; i < 8; i++) {
            uint32_t e = (i < 4 ? b0 : b1) + i % 4;
            checks++;
            if (e >= K) { FAIL("%s %s: unit %u names element %u of %u\n", tt->name, kind, u, e, K); continue; }
            seen[e]++;
            if (!same(w[i], ref[e])) FAIL("%s %s: unit %u element %u: %.9g, CPU %.9g\n", tt->name, kind, u, e, w[i], ref[e]);
        }
    }
    for (uint32_t e = 0; e < K / 8 * 8; e++) {
        checks++;
        if (seen[e] != 1) FAIL("%s %s: element %u covered by %d units\n", tt->name, kind, e, seen[e]);
    }
}

template <int T> static void check_type(uint32_t id, uint32_t K, uint64_t seed) {
    const qf_qtype_traits *tt = qf_qtype_get(id);
    uint64_t bytes;
    if (!tt || !tt->dequantize || !qf_qtype_row_bytes(tt, K, &bytes)) {
        FAIL("type %u: no CPU row of %u elements\n", id, K);
        return;
    }
    uint8_t *row = (uint8_t *)aligned_alloc(16, (bytes + 15) / 16 * 16);
    std::vector<float> x(K);
    for (int r = 0; r < 8; r++) {
        float scale = r < 4 ? 1.0f : (float)ldexp(1.0, 8 * (r - 6)); /* 2^-16 .. 2^8: small and large blocks */
        for (uint32_t k = 0; k < K; k++) x[k] = randn(&seed) * scale;
        if (!tt->quantize(x.data(), row, K, NULL)) FAIL("%s: the CPU refused to quantize row %d\n", tt->name, r);
        check_row<T>(tt, row, K, "quantized");
        for (uint64_t i = 0; i < bytes; i++) row[i] = (uint8_t)rng(&seed);
        check_row<T>(tt, row, K, "random bytes");
    }
    free(row);
}

static void check_vexp(void) {
    std::vector<float> x, ref;
    for (int i = 0; i <= 200000; i++) x.push_back((float)i / 1000.0f - 100.0f);
    x.push_back(NAN), x.push_back(-1e30f), x.push_back(1e30f), x.push_back(1e-8f);
    ref.resize(x.size());
    qf_rt_vexp_scalar(x.data(), ref.data(), x.size());
    for (size_t i = 0; i < x.size(); i++) {
        checks++;
        float v = vexp(x[i]);
        if (!same(v, ref[i])) FAIL("vexp(%.9g) = %.9g, CPU %.9g\n", x[i], v, ref[i]);
    }
}

int main(void) {
    uint64_t seed = 0x5eedcafe;
    check_type<QF_CU_F32>(QF_T_F32, 1027, seed++); /* plain types: a tail after the last unit */
    check_type<QF_CU_F16>(QF_T_F16, 1027, seed++);
    check_type<QF_CU_BF16>(QF_T_BF16, 1027, seed++);
    check_type<QF_CU_E4M3_ROW>(QF_T_E4M3_ROW, 1027, seed++);
    check_type<QF_CU_Q4_0>(QF_T_Q4_0, 1024, seed++);
    check_type<QF_CU_Q4_1>(QF_T_Q4_1, 1024, seed++);
    check_type<QF_CU_Q5_0>(QF_T_Q5_0, 1024, seed++);
    check_type<QF_CU_Q5_1>(QF_T_Q5_1, 1024, seed++);
    check_type<QF_CU_Q8_0>(QF_T_Q8_0, 1024, seed++);
    check_type<QF_CU_MXFP4>(QF_T_MXFP4, 1024, seed++);
    check_type<QF_CU_E4M3_B32>(QF_T_E4M3_B32, 1024, seed++);
    check_type<QF_CU_E5M2_B32>(QF_T_E5M2_B32, 1024, seed++);
    check_type<QF_CU_E4M3_B128>(QF_T_E4M3_B128, 1024, seed++);
    check_type<QF_CU_Q2_K>(QF_T_Q2_K, 1024, seed++);
    check_type<QF_CU_Q3_K>(QF_T_Q3_K, 1024, seed++);
    check_type<QF_CU_Q4_K>(QF_T_Q4_K, 1024, seed++);
    check_type<QF_CU_Q5_K>(QF_T_Q5_K, 1024, seed++);
    check_type<QF_CU_Q6_K>(QF_T_Q6_K, 1024, seed++);
    check_vexp();
    printf("%d checks, %d failed (seed 0x5eedcafe)\n", checks, failures);
    return failures ? 1 : 0;
}
