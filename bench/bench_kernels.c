/*
 * bench_kernels.c — quantize throughput and error of qforge's kernels against ggml's on real weights,
 * and dot-product throughput of every ISA path.
 *
 * usage: bench_kernels [MODEL.safetensors] [--types q4_K,q8_0,...] [--ref DIR] [--max-rows N]
 *   MODEL defaults to ../shared/models/qf-llama-a/model.safetensors (a BF16 checkpoint); from it one
 *   tensor per distinct 2-D shape whose row length is a multiple of 256 is used.
 *   For each type: our single-thread quantize MB/s (F32 input bytes per second), ggml's MB/s on the
 *   same tensors in the same run (ggml_quant_bench --iters 1 per tensor), the ratio, both RMSEs
 *   (ours measured by ggml: it dequantizes our blocks via --ref-q), and the dot GFLOP/s (2 flops per
 *   weight) of every ISA this CPU runs on the largest tensor.
 */
#include "kernels/cpu.h"
#include "kernels/fpconv.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct tensor { char name[128]; int64_t rows, cols; float *x; } tensor;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)len);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) { free(p); p = NULL; }
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* One BF16 tensor per distinct 2-D shape (row length a multiple of 256), converted to F32. */
static int load_tensors(const char *path, tensor *out, int max, int64_t max_rows) {
    size_t n;
    uint8_t *buf = read_all(path, &n);
    if (!buf || n < 8) { fprintf(stderr, "cannot read %s\n", path); return -1; }
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    if (hlen > n - 8) { fprintf(stderr, "%s: bad header length\n", path); free(buf); return -1; }
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    int count = 0;
    for (cJSON *t = h ? h->child : NULL; t && count < max; t = t->next) {
        cJSON *dt = cJSON_GetObjectItem(t, "dtype"), *sh = cJSON_GetObjectItem(t, "shape"),
              *off = cJSON_GetObjectItem(t, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "BF16") || cJSON_GetArraySize(sh) != 2) continue;
        int64_t rows = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble, cols = (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble;
        uint64_t a = (uint64_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        if (cols % 256 || 8 + hlen + a + (uint64_t)(rows * cols * 2) > n) continue;
        bool seen = false;
        int64_t used_rows = rows < max_rows ? rows : max_rows;
        for (int i = 0; i < count; i++) seen |= out[i].cols == cols && out[i].rows == used_rows;
        if (seen) continue;
        tensor *o = &out[count++];
        snprintf(o->name, sizeof o->name, "%s", t->string);
        o->rows = rows < max_rows ? rows : max_rows;
        o->cols = cols;
        o->x = malloc((size_t)(o->rows * cols) * sizeof(float));
        const uint8_t *src = buf + 8 + hlen + a;
        for (int64_t i = 0; i < o->rows * cols; i++) o->x[i] = qf_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    }
    cJSON_Delete(h);
    free(buf);
    return count;
}

/* Runs ggml_quant_bench on one tensor; returns its quantize seconds (bytes / MB/s) and both RMSEs. */
static bool ggml_run(const char *bench, const tensor *t, const char *type, const char *ours, double *secs,
                     double *rmse_ggml, double *rmse_ours) {
    char xf[] = "/tmp/qf_bench_x_XXXXXX";
    int fd = mkstemp(xf);
    if (fd < 0) return false;
    size_t bytes = (size_t)(t->rows * t->cols) * sizeof(float);
    bool ok = write(fd, t->x, bytes) == (ssize_t)bytes;
    close(fd);
    char cmd[2048], out[8192] = "";
    snprintf(cmd, sizeof cmd, "'%s' --json --iters 1 --in %s --rows %lld --cols %lld --type %s --ref-q %s 2>&1",
             bench, xf, (long long)t->rows, (long long)t->cols, type, ours);
    FILE *p = ok ? popen(cmd, "r") : NULL;
    if (p) { size_t got = fread(out, 1, sizeof out - 1, p); out[got] = '\0'; ok = pclose(p) == 0; }
    unlink(xf);
    const char *q = strstr(out, "\"quant_MBps\":"), *r = strstr(out, "\"rmse\":"), *ref = strstr(out, "\"ref\":{");
    const char *rr = ref ? strstr(ref, "\"rmse\":") : NULL;
    if (!ok || !q || !r || !rr) { fprintf(stderr, "ggml_quant_bench failed: %s\n", out); return false; }
    *secs = (double)bytes / 1e6 / strtod(q + 13, NULL);
    *rmse_ggml = strtod(r + 7, NULL);
    *rmse_ours = strtod(rr + 7, NULL);
    return true;
}

/* Best-of-3 seconds to quantize the tensor with t (one thread). */
static double time_quantize(const qf_qtype_traits *t, const tensor *x, uint8_t *q, size_t rs) {
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int64_t r = 0; r < x->rows; r++)
            if (!t->quantize(x->x + r * x->cols, q + (size_t)r * rs, x->cols, NULL)) return NAN;
        best = fmin(best, now() - t0);
    }
    return best;
}

/* GFLOP/s of t->dot over every row of the quantized tensor, repeated for ~0.2 s. */
static double dot_gflops(const qf_qtype_traits *t, const tensor *x, const uint8_t *q, size_t rs) {
    volatile float sink = 0;
    int reps = 0;
    double t0 = now(), el;
    do {
        for (int64_t r = 0; r < x->rows; r++) sink += t->dot(q + (size_t)r * rs, x->x, x->cols);
        reps++;
        el = now() - t0;
    } while (el < 0.2);
    (void)sink;
    return 2.0 * (double)(x->rows * x->cols) * reps / el / 1e9;
}

int main(int argc, char **argv) {
    const char *model = "../shared/models/qf-llama-a/model.safetensors";
    const char *types = "q8_0,q4_0,q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K,mxfp4,e4m3_b32,e5m2_b32,e4m3_row,f16,bf16";
    const char *ref = getenv("QF_REF_DIR");
    int64_t max_rows = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref = argv[++i];
        else if (!strcmp(argv[i], "--max-rows") && i + 1 < argc) max_rows = atoll(argv[++i]);
        else model = argv[i];
    }
    char bench[1024], defref[512];
    if (!ref) { snprintf(defref, sizeof defref, "%s/.cache/qforge-ref", getenv("HOME") ? getenv("HOME") : "/root"); ref = defref; }
    snprintf(bench, sizeof bench, "%s/ggml_quant_bench", ref);
    bool have_ggml = access(bench, X_OK) == 0;

    tensor ts[16];
    int nt = load_tensors(model, ts, 16, max_rows);
    if (nt <= 0) return 1;
    int64_t total = 0, big = 0;
    for (int i = 0; i < nt; i++) {
        total += ts[i].rows * ts[i].cols;
        if (ts[i].rows * ts[i].cols > ts[big].rows * ts[big].cols) big = i;
        printf("# tensor %s %lldx%lld\n", ts[i].name, (long long)ts[i].rows, (long long)ts[i].cols);
    }
    printf("# %s: %d tensors, %.1f MB as F32; ggml: %s; dot on %s\n", model, nt, total * 4e-6,
           have_ggml ? bench : "absent", ts[big].name);
    printf("%-9s %10s %10s %7s %12s %12s %7s | dot GFLOP/s", "type", "ours MB/s", "ggml MB/s", "ratio",
           "rmse ours", "rmse ggml", "ratio");
    for (int isa = 0; isa < QF_ISA_COUNT; isa++) if (qf_isa_supported((qf_isa)isa)) printf(" %8s", qf_isa_name((qf_isa)isa));
    printf("\n");

    char list[512];
    snprintf(list, sizeof list, "%s", types);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        const qf_qtype_traits *t = qf_qtype_by_name(name);
        if (!t || !t->quantize) { printf("%-9s (no kernels)\n", name); continue; }
        double ours_s = 0, ggml_s = 0, se_o = 0, se_g = 0;
        bool ggml_ok = have_ggml && t->id < QF_QTYPE_EXT_BASE;
        for (int i = 0; i < nt; i++) {
            uint64_t rs;
            qf_qtype_row_bytes(t, (uint64_t)ts[i].cols, &rs);
            uint8_t *q = malloc((size_t)rs * (size_t)ts[i].rows);
            ours_s += time_quantize(t, &ts[i], q, (size_t)rs);
            double n = (double)(ts[i].rows * ts[i].cols);
            if (ggml_ok) {
                char qf[] = "/tmp/qf_bench_q_XXXXXX";
                int fd = mkstemp(qf);
                size_t qb = (size_t)rs * (size_t)ts[i].rows;
                bool w = fd >= 0 && write(fd, q, qb) == (ssize_t)qb;
                if (fd >= 0) close(fd);
                double s, rg, ro;
                if (w && ggml_run(bench, &ts[i], t->name, qf, &s, &rg, &ro)) {
                    ggml_s += s; se_g += rg * rg * n; se_o += ro * ro * n;
                } else ggml_ok = false;
                unlink(qf);
            } else { /* our own RMSE when ggml has no such type */
                float *y = malloc((size_t)ts[i].cols * sizeof(float));
                for (int64_t r = 0; r < ts[i].rows; r++) {
                    t->dequantize(q + (size_t)r * rs, y, ts[i].cols);
                    for (int64_t c = 0; c < ts[i].cols; c++) { double d = y[c] - ts[i].x[r * ts[i].cols + c]; se_o += d * d; }
                }
                free(y);
            }
            free(q);
        }
        double mb = total * 4e-6;
        printf("%-9s %10.1f", t->name, mb / ours_s);
        if (ggml_ok) printf(" %10.1f %7.2f %12.5e %12.5e %7.4f", mb / ggml_s, ggml_s / ours_s, sqrt(se_o / total), sqrt(se_g / total), sqrt(se_o / se_g));
        else printf(" %10s %7s %12.5e %12s %7s", "-", "-", sqrt(se_o / total), "-", "-");
        printf(" |            ");
        uint64_t rs;
        qf_qtype_row_bytes(t, (uint64_t)ts[big].cols, &rs);
        uint8_t *q = malloc((size_t)rs * (size_t)ts[big].rows);
        for (int64_t r = 0; r < ts[big].rows; r++) t->quantize(ts[big].x + r * ts[big].cols, q + (size_t)r * rs, ts[big].cols, NULL);
        for (int isa = 0; isa < QF_ISA_COUNT; isa++)
            if (qf_isa_supported((qf_isa)isa)) printf(" %8.2f", dot_gflops(qf_qtype_get_isa(t->id, (qf_isa)isa), &ts[big], q, (size_t)rs));
        printf("\n");
        fflush(stdout);
        free(q);
    }
    for (int i = 0; i < nt; i++) free(ts[i].x);
    return 0;
}
