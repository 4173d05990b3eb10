/*
 * bench_kernels.c — quantize throughput and error of qforge's kernels against ggml's on real weights,
 * and dot-product throughput of every ISA path.
 *
 * usage: bench_kernels [MODEL.safetensors] [--types q4_K,q8_0,...] [--ref DIR] [--max-rows N] [--all]
 *                      [--imatrix] [--min-time S] [--no-dot]
 *   MODEL defaults to ../shared/models/qf-llama-a/model.safetensors (a BF16 checkpoint); from it one
 *   tensor per distinct 2-D shape whose row length is a multiple of 256 is used (--all: every such
 *   tensor, so "RMSE <= ggml on every tensor" can be checked; "worst" is the largest per-tensor ratio).
 *   For each type: our single-thread quantize MB/s (F32 input bytes per second), ggml's MB/s on the
 *   same tensors in the same run (ggml_quant_bench, mean over --min-time seconds, default 0.2; ours is
 *   timed the same way), the ratio, both RMSEs (ours measured by ggml: it dequantizes our blocks via
 *   --ref-q), and the dot GFLOP/s (2 flops per weight) of every ISA this CPU runs on the largest tensor.
 *   --imatrix: both sides quantize with an importance vector per tensor (synthetic, seeded by the tensor
 *   index: lognormal with 1% hot columns x100, like an imatrix's mean squared activations; written to a
 *   file and passed to ggml as a raw F32 vector) and the RMSE columns are importance-weighted RMSEs.
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

/* BF16 tensors, converted to F32: one per distinct 2-D shape (row length a multiple of 256), or every
 * such tensor with all. */
static int load_tensors(const char *path, tensor *out, int max, int64_t max_rows, bool all) {
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
        for (int i = 0; i < count && !all; i++) seen |= out[i].cols == cols && out[i].rows == used_rows;
        if (seen) continue;
        tensor *o = &out[count++];
        snprintf(o->name, sizeof o->name, "%s", t->string);
        o->rows = used_rows;
        o->cols = cols;
        o->x = malloc((size_t)(o->rows * cols) * sizeof(float));
        const uint8_t *src = buf + 8 + hlen + a;
        for (int64_t i = 0; i < o->rows * cols; i++) o->x[i] = qf_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    }
    cJSON_Delete(h);
    free(buf);
    return count;
}

/* Importance per column: lognormal with 1% hot columns x100 (what an imatrix's mean squared activations
 * look like), deterministic in seed. */
static void synth_importance(float *w, int64_t cols, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int64_t c = 0; c < cols; c++) {
        double u1, u2;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        u1 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        u2 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        double a = exp(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        if ((s >> 3) % 100 == 0) a *= 10.0;
        w[c] = (float)(a * a);
    }
}

static bool write_tmp(char *path, const void *p, size_t n) {
    int fd = mkstemp(path);
    if (fd < 0) return false;
    bool ok = write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok;
}

/* Runs ggml_quant_bench on one tensor (with the importance file imp, or none); returns its quantize
 * seconds (bytes / MB/s) and both relative RMSEs (importance-weighted when imp is given). */
static bool ggml_run(const char *bench, const tensor *t, const char *type, const char *ours, const char *imp,
                     double min_time, double *secs, double *rel_ggml, double *rel_ours) {
    char xf[] = "/tmp/qf_bench_x_XXXXXX";
    size_t bytes = (size_t)(t->rows * t->cols) * sizeof(float);
    bool ok = write_tmp(xf, t->x, bytes);
    char cmd[2048], out[8192] = "", impopt[128] = "";
    if (imp) snprintf(impopt, sizeof impopt, "--imatrix %s", imp);
    snprintf(cmd, sizeof cmd, "'%s' --json --min-time %g --in %s --rows %lld --cols %lld --type %s --ref-q %s %s 2>&1",
             bench, min_time, xf, (long long)t->rows, (long long)t->cols, type, ours, impopt);
    FILE *p = ok ? popen(cmd, "r") : NULL;
    if (p) { size_t got = fread(out, 1, sizeof out - 1, p); out[got] = '\0'; ok = pclose(p) == 0; }
    unlink(xf);
    const char *key = imp ? "\"w_rel_rmse\":" : "\"rel_rmse\":";
    const char *q = strstr(out, "\"quant_MBps\":"), *r = strstr(out, key), *ref = strstr(out, "\"ref\":{");
    const char *rr = ref ? strstr(ref, key) : NULL;
    if (!ok || !q || !r || !rr) { fprintf(stderr, "ggml_quant_bench failed: %s\n", out); return false; }
    *secs = (double)bytes / 1e6 / strtod(q + 13, NULL);
    *rel_ggml = strtod(r + strlen(key), NULL);
    *rel_ours = strtod(rr + strlen(key), NULL);
    return true;
}

/* Seconds per pass to quantize the tensor with t (one thread): the mean over passes filling min_time,
 * as ggml_quant_bench times ggml. NAN if the quantizer refused. */
static double time_quantize(const qf_qtype_traits *t, const tensor *x, uint8_t *q, size_t rs, const float *imp,
                            double min_time) {
    int reps = 0;
    double t0 = now(), el;
    do {
        for (int64_t r = 0; r < x->rows; r++)
            if (!t->quantize(x->x + r * x->cols, q + (size_t)r * rs, x->cols, imp)) return NAN;
        reps++;
        el = now() - t0;
    } while (el < min_time);
    return el / reps;
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

/* Signal energy of a tensor, importance-weighted when imp is given (turns relative RMSEs into SE). */
static double energy(const tensor *t, const float *imp) {
    double e = 0;
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t c = 0; c < t->cols; c++) {
            double v = t->x[r * t->cols + c];
            e += (imp ? imp[c] : 1.0) * v * v;
        }
    return e;
}

/* Our own (weighted) squared error of a quantized tensor, for types ggml does not have. */
static double own_sq_err(const qf_qtype_traits *t, const tensor *x, const uint8_t *q, size_t rs, const float *imp) {
    float *y = malloc((size_t)x->cols * sizeof(float));
    double se = 0;
    for (int64_t r = 0; r < x->rows; r++) {
        t->dequantize(q + (size_t)r * rs, y, x->cols);
        for (int64_t c = 0; c < x->cols; c++) {
            double d = y[c] - x->x[r * x->cols + c];
            se += (imp ? imp[c] : 1.0) * d * d;
        }
    }
    free(y);
    return se;
}

typedef struct opts { bool weighted, dot; double min_time; } opts;

/* One output line: speed and error of type t over every tensor, then the dot GFLOP/s per ISA. */
static void bench_type(const qf_qtype_traits *t, tensor *ts, int nt, int big, const char *bench, bool have_ggml,
                       const opts *o) {
    /* den: element count (plain RMSE) or weighted signal energy (weighted RMSE relative to the signal,
     * which is what ggml_quant_bench reports as w_rel_rmse) */
    double ours_s = 0, ggml_s = 0, se_o = 0, se_g = 0, den = 0, worst = 0, mb = 0;
    bool ggml_ok = have_ggml && t->id < QF_QTYPE_EXT_BASE;
    for (int i = 0; i < nt; i++) {
        uint64_t rs;
        qf_qtype_row_bytes(t, (uint64_t)ts[i].cols, &rs);
        size_t qb = (size_t)rs * (size_t)ts[i].rows;
        uint8_t *q = malloc(qb);
        float *imp = NULL;
        char impf[] = "/tmp/qf_bench_w_XXXXXX";
        if (o->weighted) {
            imp = malloc((size_t)ts[i].cols * sizeof(float));
            synth_importance(imp, ts[i].cols, (uint64_t)i + 1);
            if (!write_tmp(impf, imp, (size_t)ts[i].cols * sizeof(float))) ggml_ok = false;
        }
        ours_s += time_quantize(t, &ts[i], q, (size_t)rs, imp, o->min_time);
        mb += (double)(ts[i].rows * ts[i].cols) * 4e-6;
        double e = energy(&ts[i], imp);
        den += imp ? e : (double)(ts[i].rows * ts[i].cols);
        if (ggml_ok) {
            char qf[] = "/tmp/qf_bench_q_XXXXXX";
            double s, rg, ro;
            if (write_tmp(qf, q, qb) && ggml_run(bench, &ts[i], t->name, qf, imp ? impf : NULL, o->min_time, &s, &rg, &ro)) {
                ggml_s += s; se_g += rg * rg * e; se_o += ro * ro * e;
                if (rg > 0 && ro / rg > worst) worst = ro / rg;
                if (rg > 0 && ro > rg) /* name the tensors that break "RMSE <= ggml" */
                    fprintf(stderr, "# %s %s: RMSE ratio %.4f\n", t->name, ts[i].name, ro / rg);
            } else ggml_ok = false;
            unlink(qf);
        } else {
            se_o += own_sq_err(t, &ts[i], q, (size_t)rs, imp);
        }
        if (imp) unlink(impf);
        free(imp);
        free(q);
    }
    printf("%-9s %10.1f", t->name, mb / ours_s);
    if (ggml_ok) printf(" %10.1f %7.2f %12.5e %12.5e %7.4f %7.4f", mb / ggml_s, ggml_s / ours_s, sqrt(se_o / den),
                        sqrt(se_g / den), se_g > 0 ? sqrt(se_o / se_g) : 1.0, worst);
    else printf(" %10s %7s %12.5e %12s %7s %7s", "-", "-", sqrt(se_o / den), "-", "-", "-");
    if (o->dot) {
        printf(" |            ");
        uint64_t rs;
        qf_qtype_row_bytes(t, (uint64_t)ts[big].cols, &rs);
        uint8_t *q = malloc((size_t)rs * (size_t)ts[big].rows);
        for (int64_t r = 0; r < ts[big].rows; r++) t->quantize(ts[big].x + r * ts[big].cols, q + (size_t)r * rs, ts[big].cols, NULL);
        for (int isa = 0; isa < QF_ISA_COUNT; isa++)
            if (qf_isa_supported((qf_isa)isa)) printf(" %8.2f", dot_gflops(qf_qtype_get_isa(t->id, (qf_isa)isa), &ts[big], q, (size_t)rs));
        free(q);
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *model = "../shared/models/qf-llama-a/model.safetensors";
    const char *types = "q8_0,q4_0,q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K,mxfp4,e4m3_b32,e5m2_b32,e4m3_row,f16,bf16";
    const char *ref = getenv("QF_REF_DIR");
    int64_t max_rows = 4096;
    bool all = false;
    opts o = { .weighted = false, .dot = true, .min_time = 0.2 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref = argv[++i];
        else if (!strcmp(argv[i], "--max-rows") && i + 1 < argc) max_rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) o.min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--all")) all = true;
        else if (!strcmp(argv[i], "--imatrix")) o.weighted = true;
        else if (!strcmp(argv[i], "--no-dot")) o.dot = false;
        else model = argv[i];
    }
    char bench[1024], defref[512];
    if (!ref) { snprintf(defref, sizeof defref, "%s/.cache/qforge-ref", getenv("HOME") ? getenv("HOME") : "/root"); ref = defref; }
    snprintf(bench, sizeof bench, "%s/ggml_quant_bench", ref);
    bool have_ggml = access(bench, X_OK) == 0;

    enum { MAXT = 256 };
    static tensor ts[MAXT];
    int nt = load_tensors(model, ts, MAXT, max_rows, all);
    if (nt <= 0) return 1;
    int64_t total = 0, big = 0;
    for (int i = 0; i < nt; i++) {
        total += ts[i].rows * ts[i].cols;
        if (ts[i].rows * ts[i].cols > ts[big].rows * ts[big].cols) big = i;
        printf("# tensor %s %lldx%lld\n", ts[i].name, (long long)ts[i].rows, (long long)ts[i].cols);
    }
    printf("# %s: %d tensors, %.1f MB as F32; ggml: %s; importance: %s; dot on %s\n", model, nt, total * 4e-6,
           have_ggml ? bench : "absent", o.weighted ? "synthetic per tensor (weighted RMSE)" : "none", ts[big].name);
    printf("%-9s %10s %10s %7s %12s %12s %7s %7s", "type", "ours MB/s", "ggml MB/s", "ratio", o.weighted ? "w_rel ours" : "rmse ours",
           o.weighted ? "w_rel ggml" : "rmse ggml", "ratio", "worst");
    if (o.dot) {
        printf(" | dot GFLOP/s");
        for (int isa = 0; isa < QF_ISA_COUNT; isa++) if (qf_isa_supported((qf_isa)isa)) printf(" %8s", qf_isa_name((qf_isa)isa));
    }
    printf("\n");

    char list[512];
    snprintf(list, sizeof list, "%s", types);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        const qf_qtype_traits *t = qf_qtype_by_name(name);
        if (!t || !t->quantize) { printf("%-9s (no kernels)\n", name); continue; }
        bench_type(t, ts, nt, (int)big, bench, have_ggml, &o);
    }
    for (int i = 0; i < nt; i++) free(ts[i].x);
    return 0;
}
