/*
 * testmodels.h — small checkpoints generated for tests, written through the safetensors layout real
 * releases use (qforge synth), plus transformations into other release layouts.
 */
#ifndef QF_TESTMODELS_H
#define QF_TESTMODELS_H

#include "testutil.h"

/* A random Llama checkpoint in scratch/<name> (2 layers, vocab 320); dir receives its path. */
const char *qf_test_make_model(const char *name, uint32_t dim, uint32_t ff, const char *dtype, char *dir, size_t n);
/* Rewrite the model's per-layer linear weights as F8_E4M3 + DeepSeek 128x128 weight_scale_inv. */
void qf_test_to_fp8(const char *dir);

#endif
