/*
 * iq_quant.c — the scalar reference quantizers of ggml's i-quants: iq_body.h compiled without SIMD
 * flags. These define the bytes; iq_quant_avx2.c compiles the same source with AVX2 and must match.
 */
#define QF_SFX
#include "kernels/iq_body.h"
