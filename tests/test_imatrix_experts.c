/* Routed experts in an importance matrix (formats/imatrix.h): the weights an expert below the token
 * floor gets under each policy, and the per-layer coverage that calibrate and quantize report. */
#include "formats/imatrix.h"
#include "testutil.h"

#include <math.h>

/* blk.L.ffn_up_exps.weight: 2 columns, 4 experts with the given counts; expert m's sums are
 * count * (m + 1, 2 (m + 1)), so its own mean is (m + 1, 2 (m + 1)). */
static void add_layer(qf_imatrix *im, const char *name, const double counts[4]) {
    qf_imatrix_entry *e = qf_imatrix_add(im, name, 2, 4);
    CHECK(e != NULL);
    if (!e) return;
    for (uint32_t m = 0; m < 4; m++) {
        e->counts[m] = counts[m];
        e->sum2[m * 2] = counts[m] * (m + 1);
        e->sum2[m * 2 + 1] = counts[m] * 2 * (m + 1);
    }
}

static bool near(float a, double b) { return fabs(a - b) <= 1e-6 * fmax(1, fabs(b)); }

static void test_weights(void) {
    qf_imatrix im = {0};
    const double counts[4] = {100, 10, 0, 64};
    add_layer(&im, "blk.1.ffn_up_exps.weight", counts);
    const qf_imatrix_entry *e = &im.e[0];
    /* pooled mean over all 174 tokens: (100*1 + 10*2 + 64*4) / 174 in column 0, twice that in column 1 */
    double pm = (100.0 * 1 + 10.0 * 2 + 64.0 * 4) / 174.0;
    float w[8];
    qf_imatrix_weights(e, &(qf_expert_rule){64, QF_SPARSE_OWN}, w);
    CHECK(near(w[0], 1) && near(w[2], 2) && near(w[4], 1) && near(w[5], 1) && near(w[6], 4)); /* 0 tokens: ones */
    qf_imatrix_weights(e, NULL, w);
    CHECK(near(w[4], 1) && near(w[2], 2));
    qf_imatrix_weights(e, &(qf_expert_rule){64, QF_SPARSE_BLEND}, w);
    CHECK_MSG(near(w[0], 1) && near(w[6], 4), "experts at or above the floor keep their own mean: %g %g", w[0], w[6]);
    CHECK_MSG(near(w[2], (10.0 * 2 + 54.0 * pm) / 64.0) && near(w[3], 2 * (10.0 * 2 + 54.0 * pm) / 64.0),
              "10 tokens blended with 54 at the pooled mean: %g", w[2]);
    CHECK_MSG(near(w[4], pm) && near(w[5], 2 * pm), "no token: the pooled mean: %g", w[4]);
    qf_imatrix_weights(e, &(qf_expert_rule){64, QF_SPARSE_POOLED}, w);
    CHECK(near(w[2], pm) && near(w[4], pm) && near(w[0], 1));
    /* a floor of 0 and a one-matrix entry: own means whatever the policy */
    qf_imatrix_weights(e, &(qf_expert_rule){0, QF_SPARSE_POOLED}, w);
    CHECK(near(w[2], 2) && near(w[4], 1));
    qf_imatrix_entry *d = qf_imatrix_add(&im, "blk.0.ffn_up.weight", 2, 1);
    CHECK(d != NULL);
    if (d) {
        d->counts[0] = 3;
        d->sum2[0] = 6;
        d->sum2[1] = 3;
        qf_imatrix_weights(d, &(qf_expert_rule){64, QF_SPARSE_POOLED}, w);
        CHECK(near(w[0], 2) && near(w[1], 1));
    }
    qf_imatrix_free(&im);
}

static void test_coverage(void) {
    qf_imatrix im = {0};
    const double a[4] = {100, 10, 0, 64}, b[4] = {5, 200, 300, 1};
    add_layer(&im, "blk.3.ffn_gate_exps.weight", b);
    add_layer(&im, "blk.1.ffn_up_exps.weight", a);
    add_layer(&im, "blk.1.ffn_down_exps.weight", a); /* the same layer again: counted once */
    add_layer(&im, "blk.2.attn_k_b.weight", b);      /* per-head matrices are not experts */
    add_layer(&im, "blk.4.ffn_up_exps.weight.x", b); /* not an expert tensor's name */
    qf_expert_coverage cov;
    qf_error err;
    CHECK_OK(qf_expert_coverage_get(&im, 64, &cov, &err), &err);
    CHECK_MSG(cov.n == 2 && cov.experts == 8 && cov.under == 4, "%zu layers, %llu experts, %llu under", cov.n,
              (unsigned long long)cov.experts, (unsigned long long)cov.under);
    if (cov.n == 2) {
        CHECK(cov.l[0].layer == 1 && cov.l[0].n_under == 2 && cov.l[0].under[0] == 1 && cov.l[0].under[1] == 2);
        CHECK(cov.l[1].layer == 3 && cov.l[1].n_under == 2 && cov.l[1].under[0] == 0 && cov.l[1].under[1] == 3);
        CHECK(cov.l[0].tokens[0] == 100 && cov.l[1].tokens[2] == 300);
    }
    qf_expert_coverage_free(&cov);
    qf_imatrix_free(&im);
}

static void test_parse(void) {
    qf_sparse_experts p;
    CHECK(qf_sparse_experts_parse("blend", &p) && p == QF_SPARSE_BLEND);
    CHECK(qf_sparse_experts_parse("pooled", &p) && p == QF_SPARSE_POOLED);
    CHECK(qf_sparse_experts_parse("own", &p) && p == QF_SPARSE_OWN);
    CHECK(!qf_sparse_experts_parse("Blend", &p) && !qf_sparse_experts_parse("", &p));
    CHECK(!strcmp(qf_sparse_experts_name(QF_SPARSE_POOLED), "pooled"));
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_weights();
    test_coverage();
    test_parse();
    return qf_test_finish();
}
