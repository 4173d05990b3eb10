/*
 * test_kernels_ggml.c — agreement of qforge's kernels with ggml itself (the reference instrument in
 * ../shared/ref, installed at $QF_REF_DIR or ~/.cache/qforge-ref; skipped with "SKIP:" when absent).
 *
 * Per type and data kind:
 *   1. dequantization is bit-identical: (a) our dequantizer on ggml's own blocks equals ggml's
 *      dequantization (--dump-q / --dump-deq); (b) random blocks dequantized by us are fed to the bench
 *      as the input matrix and the same bytes as --ref-q: ggml's dequantization must reproduce our
 *      floats exactly (its reported RMSE and max error are then 0).
 *   2. quality: our RMSE <= ggml's on the same data, without and with an importance vector (with one,
 *      the importance-weighted RMSE is compared, the quantity both quantizers minimise).
 */
#include "kernels/cpu.h"
#include "kernels/fpconv.h"
#include "test_kernels_data.h"
#include "testutil.h"

#include <math.h>
#include <unistd.h>

#define ROWS 64
#define COLS 1024

static char bench[1024];

static bool find_bench(void) {
    const char *dir = getenv("QF_REF_DIR");
    char def[512];
    if (!dir || !*dir) {
        const char *home = getenv("HOME");
        snprintf(def, sizeof def, "%s/.cache/qforge-ref", home ? home : "/root");
        dir = def;
    }
    snprintf(bench, sizeof bench, "%s/ggml_quant_bench", dir);
    return access(bench, X_OK) == 0;
}

/* Run the bench with args; its stdout (one JSON object) into out. */
static bool run_bench(const char *args, char *out, size_t n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --json --iters 1 %s 2>&1", bench, args);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    return pclose(p) == 0;
}

/* Number after "key": in s (first occurrence at or after from); NAN if absent. */
static double json_num(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static const char *ref_part(const char *s) {
    const char *p = strstr(s, "\"ref\":{");
    return p ? p : "";
}

static bool quantize_matrix(const qf_qtype_traits *t, const float *x, uint8_t *q, size_t rs, const float *imp) {
    for (int r = 0; r < ROWS; r++)
        if (!t->quantize(x + (size_t)r * COLS, q + (size_t)r * rs, COLS, imp)) return false;
    return true;
}

static void dequantize_matrix(const qf_qtype_traits *t, const uint8_t *q, size_t rs, float *y) {
    for (int r = 0; r < ROWS; r++) t->dequantize(q + (size_t)r * rs, y + (size_t)r * COLS, COLS);
}

/* Offsets of the F16 fields in a block (random blocks get finite values there; -1 ends the list). */
static void f16_fields(uint32_t id, int *off) {
    off[0] = off[1] = -1;
    switch (id) {
    case QF_T_Q4_0: case QF_T_Q5_0: case QF_T_Q8_0: off[0] = 0; break;
    case QF_T_Q4_1: case QF_T_Q5_1: case QF_T_Q4_K: case QF_T_Q5_K: off[0] = 0; off[1] = 2; break;
    case QF_T_Q2_K: off[0] = 80; off[1] = 82; break;
    case QF_T_Q3_K: off[0] = 108; break;
    case QF_T_Q6_K: off[0] = 208; break;
    case QF_T_IQ4_NL: case QF_T_IQ4_XS: case QF_T_IQ3_XXS: case QF_T_IQ3_S: case QF_T_IQ2_XXS: case QF_T_IQ2_XS:
    case QF_T_IQ2_S: case QF_T_IQ1_S: off[0] = 0; break;
    default: break;
    }
}

static void random_blocks(const qf_qtype_traits *t, uint8_t *q, size_t nbytes, uint64_t seed) {
    uint64_t rs = seed;
    for (size_t i = 0; i < nbytes; i++) q[i] = (uint8_t)qf_test_rand(&rs);
    int off[2];
    f16_fields(t->id, off);
    for (size_t b = 0; b + t->bytes <= nbytes; b += t->bytes) {
        for (int k = 0; k < 2 && off[k] >= 0; k++) { /* finite, moderate scales: no inf in products */
            uint16_t h = (uint16_t)(qf_test_rand(&rs) & 0xBFFF); /* exponent < 16 + sign */
            memcpy(q + b + off[k], &h, 2);
        }
        if (t->id == QF_T_MXFP4 && q[b] > 240) q[b] = (uint8_t)(q[b] - 40);
        if (t->id == QF_T_IQ1_M) q[b + 55] &= 0xBF; /* its F16 d is the top nibbles of 4 words: exponent < 16 */
    }
}

static void check_type(const char *name) {
    const qf_qtype_traits *t = qf_qtype_by_name(name);
    CHECK_MSG(t && t->quantize && t->dequantize, "%s: no kernels", name);
    if (!t || !t->quantize) return;
    uint64_t rsz;
    CHECK(qf_qtype_row_bytes(t, COLS, &rsz));
    size_t rs = (size_t)rsz, qbytes = rs * ROWS, n = (size_t)ROWS * COLS;
    float *x = malloc(n * 4), *y = malloc(n * 4), *imp = malloc(COLS * 4);
    uint8_t *q = malloc(qbytes);
    char px[512], pq[512], pg[512], pgd[512], pim[512], args[4096], out[8192];
    qf_test_path("x.f32", px, sizeof px);
    qf_test_path("ours.bin", pq, sizeof pq);
    qf_test_path("ggml.bin", pg, sizeof pg);
    qf_test_path("ggml_deq.f32", pgd, sizeof pgd);
    qf_test_path("imat.f32", pim, sizeof pim);
    kd_imatrix(COLS, 5, imp);
    qf_test_write_file(pim, imp, COLS * 4);

    for (int kind = 0; kind < KD_COUNT; kind++) {
        kd_fill(kind, ROWS, COLS, 100 + (uint64_t)kind, x);
        qf_test_write_file(px, x, n * 4);
        for (int weighted = 0; weighted < 2; weighted++) {
            CHECK(quantize_matrix(t, x, q, rs, weighted ? imp : NULL));
            qf_test_write_file(pq, q, qbytes);
            snprintf(args, sizeof args, "--in '%s' --rows %d --cols %d --type %s --ref-q '%s' --dump-q '%s' "
                     "--dump-deq '%s' %s%s%s", px, ROWS, COLS, name, pq, pg, pgd,
                     weighted ? "--imatrix '" : "", weighted ? pim : "", weighted ? "'" : "");
            bool ok = run_bench(args, out, sizeof out);
            CHECK_MSG(ok, "%s: bench failed: %s", name, out);
            if (!ok) continue;
            const char *key = weighted ? "w_rel_rmse" : "rmse";
            double g = json_num(out, key), o = json_num(ref_part(out), key);
            double gp = json_num(out, "rmse"), op = json_num(ref_part(out), "rmse");
            printf("%-6s %-11s %-10s ours %.6e ggml %.6e ratio %.4f (plain rmse ratio %.4f)\n", name,
                   kd_names[kind], weighted ? "imatrix" : "plain", o, g, o / g, op / gp);
            CHECK_MSG(o <= g * (1.0 + 1e-6) + 1e-30, "%s %s %s: our %s %.6e > ggml's %.6e", name,
                      kd_names[kind], weighted ? "imatrix" : "plain", key, o, g);
            /* (1a) our dequantization of ggml's blocks == ggml's */
            size_t gn, dn;
            uint8_t *gq = qf_test_read_file(pg, &gn);
            float *gd = (float *)qf_test_read_file(pgd, &dn);
            CHECK(gq && gd && gn == qbytes && dn == n * 4);
            if (gq && gd && gn == qbytes && dn == n * 4) {
                dequantize_matrix(t, gq, rs, y);
                CHECK_MSG(memcmp(y, gd, n * 4) == 0, "%s %s: dequantization of ggml's blocks differs", name,
                          kd_names[kind]);
            }
            free(gq);
            free(gd);
        }
    }
    /* (1b) random blocks, three seeds' worth in one call (ggml's i-quant grids take seconds to set up per
     * call): ggml must reproduce our dequantization exactly */
    uint8_t *q3 = malloc(3 * qbytes);
    float *y3 = malloc(3 * n * 4);
    CHECK(q3 && y3);
    if (q3 && y3) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            random_blocks(t, q3 + (seed - 1) * qbytes, qbytes, seed * 7919);
            dequantize_matrix(t, q3 + (seed - 1) * qbytes, rs, y3 + (seed - 1) * n);
        }
        qf_test_write_file(px, y3, 3 * n * 4);
        qf_test_write_file(pq, q3, 3 * qbytes);
        snprintf(args, sizeof args, "--in '%s' --rows %d --cols %d --type %s --ref-q '%s'", px, 3 * ROWS, COLS, name, pq);
        bool ok = run_bench(args, out, sizeof out);
        CHECK_MSG(ok, "%s: bench failed: %s", name, out);
        double r = json_num(ref_part(out), "rmse"), m = json_num(ref_part(out), "max_abs");
        CHECK_MSG(ok && r == 0.0 && m == 0.0, "%s random blocks: ggml's dequantization differs from ours (rmse %g, "
                  "max %g)", name, r, m);
    }
    free(q3); free(y3);
    free(x); free(y); free(imp); free(q);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    if (!find_bench()) {
        printf("SKIP: %s not found (set QF_REF_DIR; see ../shared/ref/README.md)\n", bench);
        return 77;
    }
    const char *only = getenv("QF_TEST_TYPES"); /* e.g. "q4_K,q6_K" to iterate on one type */
    /* the sanitizer pass checks our code's memory use, not ggml's numbers again: one type per kernel family */
    if (!only && getenv("QF_TEST_QUICK")) only = "q8_0,q4_1,q5_0,q4_K,q6_K,mxfp4,iq4_xs,iq3_s,iq2_xs,iq1_m";
    static const char *const types[] = { "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K",
                                         "q4_K", "q5_K", "q6_K", "mxfp4", "iq4_nl", "iq4_xs", "iq3_xxs", "iq3_s",
                                         "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m" };
    printf("kernels ISA: %s; reference: %s\n", qf_isa_name(qf_isa_active()), bench);
    for (size_t i = 0; i < QF_ARRAY_LEN(types); i++)
        if (!only || strstr(only, types[i])) check_type(types[i]);
    return qf_test_finish();
}
