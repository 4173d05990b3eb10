/*
 * fit.h — what the quantizer bodies (quant_body.h, compiled once per ISA) share with the scalar files
 * that own the byte layouts (internal to kernels/).
 *
 * A K-quant super-block of 256 values is described by a qf_kq_spec (sub-block shape, code ranges) and
 * fitted into a qf_kq_block; a packer per type then writes ggml's layout. Packing is plain bit
 * shuffling, identical on every ISA, so the packers live once in k_kquants.c.
 */
#ifndef QF_KERNELS_FIT_H
#define QF_KERNELS_FIT_H

#include <stdbool.h>
#include <stdint.h>

#define QF_KQ_MAX_SUB 16

/* Shape of one K-quant family. Sub-block scales are codes in [sc_min, sc_max] times F16 d; affine
 * types also have mins: m codes in [0, mn_max] times F16 dmin, xhat = d*sc*q - dmin*m. */
typedef struct qf_kq_spec {
    int nsub, sublen;      /* sub-blocks per 256 and their length */
    bool affine;           /* has mins (q in [0, qmax]) vs symmetric (q in [qmin, qmax]) */
    int qmin, qmax;
    int sc_min, sc_max;    /* scale code range (signed for symmetric types) */
    int mn_max;            /* min code range [0, mn_max] (affine only) */
} qf_kq_spec;

/* The result: everything a packer needs. q holds nsub*sublen values in [qmin, qmax]. */
typedef struct qf_kq_block {
    uint16_t d, dmin;          /* F16 bits */
    int sc[QF_KQ_MAX_SUB], mn[QF_KQ_MAX_SUB];
    int8_t q[256];
} qf_kq_block;

extern const qf_kq_spec qf_spec_q2_K, qf_spec_q3_K, qf_spec_q4_K, qf_spec_q5_K, qf_spec_q6_K;

/* Packers: one fitted super-block into the type's ggml layout. */
void qf_pack_q2_K(const qf_kq_block *k, void *out);
void qf_pack_q3_K(const qf_kq_block *k, void *out);
void qf_pack_q4_K(const qf_kq_block *k, void *out);
void qf_pack_q5_K(const qf_kq_block *k, void *out);
void qf_pack_q6_K(const qf_kq_block *k, void *out);

#endif
