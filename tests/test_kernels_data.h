/*
 * test_kernels_data.h — seeded test matrices shared by test_kernels.c and test_kernels_ggml.c.
 * Kinds: gaussian; "llm" (heavy tails, lognormal row/column scales, a few outlier columns); adversarial
 * (blocks of zeros, constants, lone spikes, subnormal-scale and huge values, alternating signs, ramps,
 * one-signed blocks), cycling every 32 elements so every block type meets every pattern.
 */
#ifndef QF_TEST_KERNELS_DATA_H
#define QF_TEST_KERNELS_DATA_H

#include "testutil.h"

#include <math.h>

enum { KD_GAUSS, KD_LLM, KD_ADVERSARIAL, KD_COUNT };
static const char *const kd_names[KD_COUNT] = { "gauss", "llm", "adversarial" };

static float kd_adversarial(int64_t i, uint64_t *rs) {
    int pattern = (int)((i / 32) % 12), j = (int)(i % 32);
    float r = qf_test_randn(rs);
    switch (pattern) {
    case 0: return 0.0f;
    case 1: return 0.0123f;
    case 2: return j == 7 ? 3.5f : 0.0f;
    case 3: return r * 1e-6f;    /* scales in F16's subnormal range */
    case 4: return r * 1e-30f;   /* scales below F16: everything underflows */
    case 5: return r * 2000.0f;  /* large, near F16's top once scaled */
    case 6: return (j & 1) ? 1.0f : -1.0f;
    case 7: return (float)j * 0.01f - 0.1f;
    case 8: return fabsf(r) + 1.0f;  /* all positive, far from 0: min > 0 */
    case 9: return -fabsf(r) - 1.0f; /* all negative */
    case 10: return j == 3 ? -50.0f : r * 0.01f;
    default: return (j % 3) ? 0.5f : -0.25f;
    }
}

/* Fill x[rows*cols] with kind `kind`, deterministically from seed. */
static void kd_fill(int kind, int64_t rows, int64_t cols, uint64_t seed, float *x) {
    uint64_t rs = seed * 0x9E3779B97F4A7C15ull + 1;
    float *colscale = malloc((size_t)cols * sizeof(float));
    for (int64_t c = 0; c < cols; c++) {
        colscale[c] = expf(0.5f * qf_test_randn(&rs));
        if (qf_test_rand(&rs) % 100 == 0) colscale[c] *= 10.0f;
    }
    for (int64_t r = 0; r < rows; r++) {
        float rowscale = expf(0.3f * qf_test_randn(&rs));
        for (int64_t c = 0; c < cols; c++) {
            float *v = &x[r * cols + c];
            if (kind == KD_GAUSS) *v = 0.02f * qf_test_randn(&rs);
            else if (kind == KD_ADVERSARIAL) *v = kd_adversarial(r * cols + c, &rs);
            else { /* Student-t-like: normal over the root of a mean of squares */
                float g = qf_test_randn(&rs), a = qf_test_randn(&rs), b = qf_test_randn(&rs);
                *v = 0.02f * rowscale * colscale[c] * g / sqrtf((a * a + b * b) / 2.0f + 0.05f);
            }
        }
    }
    free(colscale);
}

/* Importance per column: lognormal, like an imatrix's mean squared activations. */
static void kd_imatrix(int64_t cols, uint64_t seed, float *w) {
    uint64_t rs = seed * 0xD1B54A32D192ED03ull + 7;
    for (int64_t c = 0; c < cols; c++) w[c] = expf(1.0f * qf_test_randn(&rs));
}

#endif
