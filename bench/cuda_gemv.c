/*
 * cuda_gemv.c — the CUDA backend's dequantizing GEMV (one token) against the device's copy bandwidth,
 * both measured in the same run (not a test: bench/cuda_check.sh runs it on a device).
 *
 *   build-cuda/bench/cuda_gemv OUT.json [--reps N]
 *
 * For each type (Q4_K, Q8_0, Q6_K, E4M3 with a scale per 128 = DeepSeek-V3's FP8 blocks, E4M3 per 32)
 * and each shape rows x K (2048 x 7168: a V3 expert's gate/up; 7168 x 16384: V3's attention output):
 * seconds per product, the weight bytes it reads per second, and that as a fraction of the copy
 * bandwidth (bytes read + written per second by cudaMemcpy device to device over 1 GiB). Weights are
 * random bytes (the kernels' speed does not depend on the values). JSON on OUT.json, a line per
 * product on stdout.
 */
#include "runtime/cuda/cu_kernels.h"
#include "kernels/qtypes.h"
#include "qf_core.h"

#include <cjson/cJSON.h>

static uint64_t rng(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static bool cu(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return true;
    fprintf(stderr, "cuda_gemv: %s: %s\n", what, cudaGetErrorString(e));
    return false;
}

/* One type and shape: a random weight (pitch rounded to 16 bytes, as the backend uploads), timed. */
static cJSON *bench(const qf_qtype_traits *tt, uint32_t cu_type, uint64_t rows, uint32_t K, int reps, double copy_bps) {
    uint64_t row_bytes, pitch, seed = rows * 31 + K;
    if (!qf_qtype_row_bytes(tt, K, &row_bytes)) return NULL;
    pitch = (row_bytes + 15) / 16 * 16;
    size_t bytes = (size_t)(pitch * rows);
    uint8_t *h = malloc(bytes), *w = NULL;
    float *x = NULL, *y = NULL, *xt = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < bytes / 8; i++) ((uint64_t *)h)[i] = rng(&seed);
    bool ok = cu(cudaMalloc((void **)&w, bytes), "weight") && cu(cudaMemcpy(w, h, bytes, cudaMemcpyHostToDevice), "upload") &&
              cu(cudaMalloc((void **)&x, (size_t)K * 64 * sizeof(float)), "input") &&
              cu(cudaMemset(x, 0, (size_t)K * 64 * sizeof(float)), "input") &&
              cu(cudaMalloc((void **)&y, rows * 64 * sizeof(float)), "output") &&
              cu(cudaMalloc((void **)&xt, (size_t)QF_CU_GEMV_COLS * (K + 3) / 4 * 4 * sizeof(float)), "staging");
    free(h);
    cJSON *o = NULL;
    if (ok) {
        qf_cu_mat m = {.data = w, .pitch = pitch, .type = cu_type};
        double s = qf_cu_time_matmul(&m, rows, K, x, 64, 1, y, 64, xt, reps);
        ok = cu(cudaDeviceSynchronize(), "gemv");
        double bps = (double)(row_bytes * rows) / s;
        printf("%-10s %6llu x %-6u %8.1f us  %7.1f GB/s  %5.1f%% of copy\n", tt->name, (unsigned long long)rows, K, s * 1e6,
               bps * 1e-9, 100 * bps / copy_bps);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", tt->name);
        cJSON_AddNumberToObject(o, "rows", (double)rows);
        cJSON_AddNumberToObject(o, "k", K);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)(row_bytes * rows));
        cJSON_AddNumberToObject(o, "seconds", s);
        cJSON_AddNumberToObject(o, "bytes_per_second", bps);
        cJSON_AddNumberToObject(o, "fraction_of_copy", bps / copy_bps);
        cJSON_AddBoolToObject(o, "ok", ok);
    }
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    cudaFree(xt);
    return o;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cuda_gemv OUT.json [--reps N]\n");
        return 2;
    }
    int reps = argc > 3 && !strcmp(argv[2], "--reps") ? atoi(argv[3]) : 100;
    struct cudaDeviceProp p;
    if (!cu(cudaGetDeviceProperties(&p, 0), "device 0")) return 3;
    size_t n = 1ull << 30;
    void *a = NULL, *b = NULL;
    if (!cu(cudaMalloc(&a, n), "copy buffer") || !cu(cudaMalloc(&b, n), "copy buffer") || !cu(cudaMemset(a, 1, n), "copy buffer"))
        return 3;
    double copy_s = qf_cu_time_copy(b, a, n, 20), copy_bps = 2.0 * (double)n / copy_s;
    cudaFree(a);
    cudaFree(b);
    printf("%s: device-to-device copy %.1f GB/s (read + written)\n", p.name, copy_bps * 1e-9);
    cJSON *root = cJSON_CreateObject(), *runs = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "schema", "qforge.cuda_gemv/1");
    cJSON_AddStringToObject(root, "device", p.name);
    cJSON_AddNumberToObject(root, "copy_bytes_per_second", copy_bps);
    cJSON_AddNumberToObject(root, "reps", reps);
    static const struct { uint32_t id, cu; } types[] = {{QF_T_Q4_K, QF_CU_Q4_K}, {QF_T_Q8_0, QF_CU_Q8_0}, {QF_T_Q6_K, QF_CU_Q6_K},
                                                        {QF_T_E4M3_B128, QF_CU_E4M3_B128}, {QF_T_E4M3_B32, QF_CU_E4M3_B32}};
    static const struct { uint64_t rows; uint32_t K; } shapes[] = {{2048, 7168}, {7168, 16384}};
    int bad = 0;
    for (size_t t = 0; t < QF_ARRAY_LEN(types); t++)
        for (size_t s = 0; s < QF_ARRAY_LEN(shapes); s++) {
            cJSON *o = bench(qf_qtype_get(types[t].id), types[t].cu, shapes[s].rows, shapes[s].K, reps, copy_bps);
            if (o) cJSON_AddItemToArray(runs, o);
            else bad++;
        }
    cJSON_AddItemToObject(root, "gemv", runs);
    char *text = cJSON_Print(root);
    FILE *f = fopen(argv[1], "w");
    bool written = f && text && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) written = false;
    if (!written) fprintf(stderr, "cuda_gemv: could not write %s\n", argv[1]);
    free(text);
    cJSON_Delete(root);
    return bad || !written ? 1 : 0;
}
