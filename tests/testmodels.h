/*
 * testmodels.h — small checkpoints generated for tests, written through the safetensors layout real
 * releases use (qforge synth), plus transformations into other release layouts.
 */
#ifndef QF_TESTMODELS_H
#define QF_TESTMODELS_H

#include "testutil.h"

/* A random Llama checkpoint in scratch/<name> (2 layers, vocab 320); dir receives its path. */
const char *qf_test_make_model(const char *name, uint32_t dim, uint32_t ff, const char *dtype, char *dir, size_t n);
typedef enum qf_test_fp8_layout {
    QF_TEST_FP8_BLOCK128, /* DeepSeek-V3: "<w>_scale_inv" F32 [ceil(R/128), ceil(C/128)] */
    QF_TEST_FP8_CHANNEL,  /* compressed-tensors: "<w>_scale" F32 [R, 1] */
    QF_TEST_FP8_TENSOR,   /* compressed-tensors: "<w>_scale" F32 0-d */
} qf_test_fp8_layout;

/* Rewrite the model's per-layer linear weights as F8_E4M3 with scales in the given release layout. */
void qf_test_to_fp8_layout(const char *dir, qf_test_fp8_layout layout);
void qf_test_to_fp8(const char *dir); /* DeepSeek blocks */

/* Set element `index` (row-major) of tensor `name` in dir/model.safetensors to v (F32 or BF16 tensors):
 * a weight no released checkpoint would hold, for tests of what happens to it. */
void qf_test_set_weight(const char *dir, const char *name, uint64_t index, float v);

#endif
