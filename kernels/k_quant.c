/*
 * k_quant.c — the scalar reference quantizers of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (weighted) and Q2_K..Q6_K:
 * quant_body.h compiled without SIMD flags. These define the bytes; quant_avx2.c and quant_avx512.c
 * compile the same source with their ISA flags and must (and, by construction, do) match them.
 */
#include "kernels/fit.h"

#define QF_SFX
#include "kernels/quant_body.h"
