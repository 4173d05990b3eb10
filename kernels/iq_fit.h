/*
 * iq_fit.h — what the i-quant quantizer bodies (iq_body.h, compiled once per ISA) share with
 * k_iquants.c, which owns the byte layouts (internal to kernels/). Packing is plain bit shuffling,
 * identical on every ISA, so the packers live once there.
 */
#ifndef QF_KERNELS_IQ_FIT_H
#define QF_KERNELS_IQ_FIT_H

#include <stdint.h>

/* IQ4_NL: 32 codes (indices into the non-linear values) and the F16 scale. */
void qf_pack_iq4_nl(const uint8_t *q, uint16_t d, void *out);
/* IQ4_XS: 256 codes, 8 six-bit sub-block scales (stored, 0..63: the factor is ls - 32), F16 d. */
void qf_pack_iq4_xs(const uint8_t *q, const int *ls, uint16_t d, void *out);

/* Grid types: per group of 4 (IQ3) or 8 (IQ2) elements its grid index, per 8 elements the 8 sign bits (for
 * types that store 7 their count is even), per sub-block its 4-bit scale l, and the F16 super-scale. */
#define QF_IQ_PACKER(T) void qf_pack_##T(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out);
QF_IQ_PACKER(iq3_xxs)
QF_IQ_PACKER(iq3_s)
QF_IQ_PACKER(iq2_xxs)
QF_IQ_PACKER(iq2_xs)
QF_IQ_PACKER(iq2_s)
/* IQ1_S / IQ1_M: sg holds per group of 8 the offset's sign (1: negative), ls the 3-bit scales. */
QF_IQ_PACKER(iq1_s)
QF_IQ_PACKER(iq1_m)

#endif
