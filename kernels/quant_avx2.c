/*
 * quant_avx2.c — quant_body.h compiled with -mavx2 -mfma -mf16c: the lane loops become 8-wide AVX2 code
 * and F16 rounding uses F16C. Byte-identical to k_quant.c (same operations in the same order; no FMA
 * contraction in ISO C).
 */
#include "kernels/fit.h"

#define QF_SFX _avx2
#include "kernels/quant_body.h"
