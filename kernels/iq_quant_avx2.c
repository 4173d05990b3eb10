/*
 * iq_quant_avx2.c — iq_body.h compiled with -mavx2 -mfma -mf16c: byte-identical to iq_quant.c (same
 * operations in the same order; no FMA contraction in ISO C).
 */
#define QF_SFX _avx2
#include "kernels/iq_body.h"
