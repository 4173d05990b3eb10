/*
 * Importance matrices move both ways between qforge and llama.cpp: on qf-llama-a, qforge calibrate and
 * llama-imatrix (the reference in ../shared/ref) agree on every entry, qforge quantize reads
 * llama-imatrix's file (GGUF, and the legacy imatrix.dat with the same importance), and llama-quantize
 * reads ours; on qf-deepseek-a (MLA, routed experts) the same per expert and per head, and both
 * quantizers read the other's file. Skips where ../shared or the reference is absent.
 */
#include "testutil.h"

#include "formats/imatrix.h"

#include <math.h>
#include <unistd.h>

static const char *ref_dir(char *buf, size_t n) {
    const char *env = getenv("QF_REF_DIR");
    if (env) snprintf(buf, n, "%s", env);
    else snprintf(buf, n, "%s/.cache/qforge-ref", getenv("HOME") ? getenv("HOME") : "/root");
    return buf;
}

/* Entry by entry, matrix by matrix: the same tokens counted (for a routed expert: the same routing
 * decisions) and sums to `tol`. Returns the entries compared; the worst difference in *worst. */
static size_t compare(const qf_imatrix *a, const qf_imatrix *b, double *worst, const char **worst_name) {
    size_t matched = 0;
    *worst = 0;
    *worst_name = "";
    for (size_t i = 0; i < b->n; i++) {
        const qf_imatrix_entry *y = &b->e[i], *x = qf_imatrix_find(a, y->name);
        CHECK_MSG(x != NULL, "qforge calibrate has no entry %s", y->name);
        if (!x) continue;
        /* llama.cpp writes matrices that all saw the same tokens as one of all their columns */
        bool flat = y->n_mat == 1 && x->n_mat > 1 && y->n_cols == x->n_cols * x->n_mat;
        CHECK_MSG(flat || (x->n_cols == y->n_cols && x->n_mat == y->n_mat), "%s: %u x %u here, %u x %u in llama.cpp's",
                  y->name, x->n_cols, x->n_mat, y->n_cols, y->n_mat);
        if (!flat && (x->n_cols != y->n_cols || x->n_mat != y->n_mat)) continue;
        matched++;
        for (uint32_t m = 0; m < x->n_mat; m++) {
            double yc = y->counts[flat ? 0 : m];
            CHECK_MSG(x->counts[m] == yc, "%s matrix %u: %g tokens here, %g in llama.cpp's", y->name, m, x->counts[m], yc);
            for (uint32_t j = 0; j < x->n_cols; j++) {
                double u = x->sum2[(uint64_t)m * x->n_cols + j], v = y->sum2[(uint64_t)m * x->n_cols + j];
                double d = fabs(u - v) / fmax(fabs(v), 1e-12);
                if (d > *worst) { *worst = d; *worst_name = y->name; }
            }
        }
    }
    return matched;
}

/* DeepSeek-V3 architecture (MLA, 16 routed experts top-2 in groups, a shared expert): llama-imatrix
 * with an F32 KV cache and qforge calibrate give every routed expert the same token count and the same
 * sums, and MLA's k_b / v_b the statistics of llama.cpp's absorbed attention; entries qforge has beyond
 * llama.cpp's are named. One sequence per batch (-b = -c): with 6 sequences in one batch this
 * llama-imatrix counted 1530 of 1536 tokens for every dense weight (its multi-sequence batching). */
static void test_deepseek(const char *qf, const char *tool, const char *text) {
    char model[4096], f32[4096], ours[4096], theirs[4096], cmd[4 * 4096 + 400];
    if (!qf_test_shared("models/qf-deepseek-a", model, sizeof model)) return;
    qf_test_path("ds-f32.gguf", f32, sizeof f32);
    qf_test_path("ds-ours.imatrix.gguf", ours, sizeof ours);
    qf_test_path("ds-theirs.imatrix.gguf", theirs, sizeof theirs);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type f32 -q", qf, model, f32);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' -c 256 -b 256 --chunks 6 -t 2 -ctk f32 -ctv f32 -fa off -o '%s' >/dev/null 2>&1",
             tool, f32, text, theirs);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s' calibrate '%s' --text '%s' -c 256 --chunks 6 -o '%s' -q", qf, f32, text, ours);
    CHECK(system(cmd) == 0);
    qf_imatrix a, b;
    qf_error err;
    CHECK_OK(qf_imatrix_load(ours, &a, &err), &err);
    CHECK_OK(qf_imatrix_load(theirs, &b, &err), &err);
    double worst;
    const char *worst_name;
    size_t matched = compare(&a, &b, &worst, &worst_name), experts = 0;
    for (size_t i = 0; i < b.n; i++) experts += b.e[i].n_mat > 1;
    printf("  qf-deepseek-a: %zu entries (%zu of routed experts), counts equal per expert, worst relative difference "
           "of in_sum2 %.2e (%s); qforge only:", matched, experts, worst, worst_name);
    for (size_t i = 0; i < a.n; i++)
        if (!qf_imatrix_find(&b, a.e[i].name)) printf(" %s", a.e[i].name);
    printf("\n");
    CHECK(matched == b.n && experts > 0 && worst < 1e-3);
    qf_imatrix_free(&a);
    qf_imatrix_free(&b);
    /* each quantizer reads the other's file (llama.cpp's holds k_b / v_b as one matrix each) */
    char q[4096], ref[4096];
    qf_test_path("ds-q.gguf", q, sizeof q);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' -r q3_k_m --imatrix '%s' -o '%s' -q", qf, f32, theirs, q);
    CHECK_MSG(system(cmd) == 0, "qforge quantize with llama-imatrix's DeepSeek imatrix");
    snprintf(cmd, sizeof cmd, "'%s/bin/llama-quantize' --imatrix '%s' '%s' '%s' Q3_K_M 2 >/dev/null 2>&1",
             ref_dir(ref, sizeof ref), ours, f32, q);
    CHECK_MSG(system(cmd) == 0, "llama-quantize with qforge's DeepSeek imatrix");
    remove(f32);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    char model[4096], text[4096], ref[4096], tool[4300];
    if (!qf_test_shared("models/qf-llama-a", model, sizeof model) ||
        !qf_test_shared("text/tinyshakespeare.txt", text, sizeof text))
        return 77;
    snprintf(tool, sizeof tool, "%s/bin/llama-imatrix", ref_dir(ref, sizeof ref));
    if (access(tool, X_OK) != 0) { printf("SKIP: %s is absent (bash ../shared/ref/setup_ref.sh)\n", tool); return 77; }
    const char *qf = getenv("QF_BIN");
    if (!qf) { printf("SKIP: QF_BIN not set\n"); return 77; }
    char f32[4096], ours[4096], theirs[4096], cmd[6 * 4096 + 4400], q_ours[4096], q_theirs[4096];
    qf_test_path("a-f32.gguf", f32, sizeof f32);
    qf_test_path("ours.imatrix.gguf", ours, sizeof ours);
    qf_test_path("theirs.imatrix.gguf", theirs, sizeof theirs);
    qf_test_path("q-ours.gguf", q_ours, sizeof q_ours);
    qf_test_path("q-theirs.gguf", q_theirs, sizeof q_theirs);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type f32 -q", qf, model, f32);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' -c 256 --chunks 8 -t 2 -o '%s' >/dev/null 2>&1", tool, f32, text, theirs);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s' calibrate '%s' --text '%s' -c 256 --chunks 8 -o '%s' -q", qf, f32, text, ours);
    CHECK(system(cmd) == 0);
    qf_imatrix a, b;
    qf_error err;
    CHECK_OK(qf_imatrix_load(ours, &a, &err), &err);
    CHECK_OK(qf_imatrix_load(theirs, &b, &err), &err);
    double worst = 0;
    size_t matched = 0;
    for (size_t i = 0; i < a.n; i++) {
        const qf_imatrix_entry *x = &a.e[i], *y = qf_imatrix_find(&b, x->name);
        CHECK_MSG(y != NULL, "llama-imatrix has no entry %s", x->name);
        if (!y || y->n_cols != x->n_cols) continue;
        matched++;
        CHECK(x->counts[0] == y->counts[0]);
        for (uint32_t j = 0; j < x->n_cols; j++)
            worst = fmax(worst, fabs(x->sum2[j] - y->sum2[j]) / fmax(fabs(y->sum2[j]), 1e-12));
    }
    printf("  %zu entries, counts equal, worst relative difference of in_sum2 %.2e (llama.cpp's F16 KV cache)\n",
           matched, worst);
    CHECK(matched == b.n && worst < 5e-3);
    qf_imatrix_free(&a);
    /* the same statistics in llama.cpp's legacy imatrix.dat (llama-imatrix converting its own file) give
     * the same importance weights: the .dat stores sum2 / count * ncall in float */
    char dat[4096];
    qf_test_path("theirs.imatrix.dat", dat, sizeof dat);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' --in-file '%s' -c 256 --output-format dat -o '%s' >/dev/null 2>&1", tool, f32,
             theirs, dat);
    CHECK(system(cmd) == 0);
    qf_imatrix c;
    CHECK_OK(qf_imatrix_load(dat, &c, &err), &err);
    double worst_dat = 0;
    size_t same_shape = 0;
    for (size_t i = 0; i < b.n; i++) {
        const qf_imatrix_entry *x = &b.e[i], *y = qf_imatrix_find(&c, x->name);
        CHECK_MSG(y != NULL, "the .dat has no entry %s", x->name);
        if (!y || y->n_cols != x->n_cols * x->n_mat) continue;
        same_shape++;
        float *wx = malloc(y->n_cols * sizeof(float)), *wy = malloc(y->n_cols * sizeof(float));
        qf_imatrix_weights(x, NULL, wx);
        qf_imatrix_weights(y, NULL, wy);
        for (uint32_t j = 0; j < y->n_cols; j++) worst_dat = fmax(worst_dat, fabs(wx[j] - wy[j]) / fmax(fabs(wx[j]), 1e-30));
        free(wx);
        free(wy);
    }
    printf("  legacy .dat from llama-imatrix: %zu entries, worst relative difference of the importance %.2e\n", same_shape,
           worst_dat);
    CHECK(same_shape == b.n && c.n == b.n && worst_dat < 1e-6 && c.chunk_count == b.chunk_count);
    qf_imatrix_free(&c);
    qf_imatrix_free(&b);
    /* each side's quantizer reads the other's file */
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' -r q4_k_m --imatrix '%s' -o '%s' -q", qf, model, theirs, q_theirs);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s/bin/llama-quantize' --imatrix '%s' '%s' '%s' Q4_K_M 2 >/dev/null 2>&1", ref, ours, f32, q_ours);
    CHECK(system(cmd) == 0);
    CHECK(qf_test_file_exists(q_ours) && qf_test_file_exists(q_theirs));
    remove(f32);
    test_deepseek(qf, tool, text);
    return qf_test_finish();
}
