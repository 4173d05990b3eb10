/*
 * k_kquants.c — scalar reference kernels of ggml's 256-element K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * Quantizing is one generic super-block fit (quant_body.h, compiled per ISA) described per type by a
 * qf_kq_spec, followed by a packer here that writes ggml's byte layout. Dequantization repeats ggml's
 * arithmetic order exactly (scale products first, then times the code, then minus the min product), so
 * the floats are bit-identical to ggml's to_float.
 */
#include "kernels/fit.h"
#include "kernels/fpconv.h"
#include "kernels/kern.h"

#include <string.h>

const qf_kq_spec qf_spec_q2_K = { .nsub = 16, .sublen = 16, .affine = true, .qmin = 0, .qmax = 3,
                                      .sc_min = 0, .sc_max = 15, .mn_max = 15 };
const qf_kq_spec qf_spec_q3_K = { .nsub = 16, .sublen = 16, .affine = false, .qmin = -4, .qmax = 3,
                                      .sc_min = -32, .sc_max = 31 };
const qf_kq_spec qf_spec_q4_K = { .nsub = 8, .sublen = 32, .affine = true, .qmin = 0, .qmax = 15,
                                      .sc_min = 0, .sc_max = 63, .mn_max = 63 };
const qf_kq_spec qf_spec_q5_K = { .nsub = 8, .sublen = 32, .affine = true, .qmin = 0, .qmax = 31,
                                      .sc_min = 0, .sc_max = 63, .mn_max = 63 };
const qf_kq_spec qf_spec_q6_K = { .nsub = 16, .sublen = 16, .affine = false, .qmin = -32, .qmax = 31,
                                      .sc_min = -128, .sc_max = 127 };

/* 2-bit fields: element e of a 128-chunk c sits in byte c*32 + e%32 at bit 2*((e%128)/32). */
static void pack_2bit(const int8_t *q, int bias, uint8_t *qs) {
    /* one write per byte (read-modify-writes of the same bytes chained through memory before) */
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 32; i++) {
            const int8_t *p = q + c * 128 + i;
            qs[c * 32 + i] = (uint8_t)(((p[0] + bias) & 3) | ((p[32] + bias) & 3) << 2 | ((p[64] + bias) & 3) << 4 |
                                       ((p[96] + bias) & 3) << 6);
        }
}

static int get_2bit(const uint8_t *qs, int e) { return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

/* ---- Q2_K ------------------------------------------------------------------------------------------------ */

void qf_pack_q2_K(const qf_kq_block *k, void *out) {
    qf_block_q2_K *b = out;
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(k->sc[j] | k->mn[j] << 4);
    pack_2bit(k->q, 0, b->qs);
    b->d = k->d;
    b->dmin = k->dmin;
}

void qf_dequantize_q2_K(const void *x, float *y, int64_t n) {
    const qf_block_q2_K *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d), dmin = qf_f16_to_f32(b->dmin);
        for (int e = 0; e < QF_QK_K; e++) {
            uint8_t sc = b->scales[e / 16];
            float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            *y++ = dl * (float)get_2bit(b->qs, e) - ml;
        }
    }
}

/* ---- Q3_K: 6-bit scale codes (stored +32): low nibbles in bytes 0..7, top 2 bits in bytes 8..11 ------- */

void qf_pack_q3_K(const qf_kq_block *k, void *out) {
    qf_block_q3_K *b = out;
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 16; j++) {
        int l = k->sc[j] + 32;
        b->scales[j % 8] |= (uint8_t)((l & 0xF) << (4 * (j / 8)));
        b->scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    /* high bit of q+4: element e -> byte e%32, bit e/32; branch-free and one write per byte (a
     * mispredicted branch per element cost a quarter of the Q3_K quantizer's time) */
    for (int i = 0; i < 32; i++) {
        unsigned h = 0;
        for (int t = 0; t < 8; t++) h |= (unsigned)(k->q[i + 32 * t] >= 0) << t;
        b->hmask[i] = (uint8_t)h;
    }
    pack_2bit(k->q, 4, b->qs);
    b->d = k->d;
}

static int q3_K_scale(const uint8_t *s, int j) {
    int lo = (s[j % 8] >> (4 * (j / 8))) & 0xF, hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

void qf_dequantize_q3_K(const void *x, float *y, int64_t n) {
    const qf_block_q3_K *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int e = 0; e < QF_QK_K; e++) {
            float dl = d * (float)q3_K_scale(b->scales, e / 16);
            int q = get_2bit(b->qs, e) - ((b->hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
            *y++ = dl * (float)q;
        }
    }
}

/* ---- Q4_K / Q5_K: 8 six-bit scales and mins packed in 12 bytes (ggml's get_scale_min_k4 layout) -------- */

static void pack_k4_scales(const int *sc, const int *mn, uint8_t *s) {
    memset(s, 0, QF_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = (uint8_t)sc[j];
            s[j + 4] = (uint8_t)mn[j];
        } else { /* low nibbles in bytes 8..11, top 2 bits in the spare bits of bytes 0..7 */
            s[j + 4] = (uint8_t)((sc[j] & 0xF) | (mn[j] & 0xF) << 4);
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Nibbles: in each 64-chunk, byte l holds element l (low) and element l+32 (high). */
static void pack_k_nibbles(const int8_t *q, uint8_t *qs) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[c * 32 + l] = (uint8_t)((q[c * 64 + l] & 0xF) | (q[c * 64 + 32 + l] & 0xF) << 4);
}

static int get_k_nibble(const uint8_t *qs, int e) {
    uint8_t v = qs[(e / 64) * 32 + e % 32];
    return (e % 64) < 32 ? v & 0xF : v >> 4;
}

void qf_pack_q4_K(const qf_kq_block *k, void *out) {
    qf_block_q4_K *b = out;
    b->d = k->d;
    b->dmin = k->dmin;
    pack_k4_scales(k->sc, k->mn, b->scales);
    pack_k_nibbles(k->q, b->qs);
}

void qf_dequantize_q4_K(const void *x, float *y, int64_t n) {
    const qf_block_q4_K *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d), dmin = qf_f16_to_f32(b->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(b->scales, j, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)get_k_nibble(b->qs, j * 32 + l) - m1;
        }
    }
}

/* Q5_K high bits: element e -> qh[e%32] bit e/32. */
void qf_pack_q5_K(const qf_kq_block *k, void *out) {
    qf_block_q5_K *b = out;
    b->d = k->d;
    b->dmin = k->dmin;
    pack_k4_scales(k->sc, k->mn, b->scales);
    pack_k_nibbles(k->q, b->qs);
    for (int i = 0; i < 32; i++) { /* branch-free, one write per byte, as Q3_K's hmask */
        unsigned h = 0;
        for (int t = 0; t < 8; t++) h |= (unsigned)((k->q[i + 32 * t] >> 4) & 1) << t;
        b->qh[i] = (uint8_t)h;
    }
}

void qf_dequantize_q5_K(const void *x, float *y, int64_t n) {
    const qf_block_q5_K *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d), dmin = qf_f16_to_f32(b->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(b->scales, j, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                int e = j * 32 + l;
                int q = get_k_nibble(b->qs, e) + ((b->qh[l] >> j) & 1 ? 16 : 0);
                *y++ = d1 * (float)q - m1;
            }
        }
    }
}

/* ---- Q6_K: ql nibbles + qh 2-bit fields, 16 int8 scales ------------------------------------------------ */

/* Element e = c*128 + r*32 + l (r 0..3): ql[c*64 + (r&1)*32 + l] nibble r>>1, qh[c*32 + l] bits 2r. */
void qf_pack_q6_K(const qf_kq_block *k, void *out) {
    qf_block_q6_K *b = out;
    /* element c*128 + r*32 + l (code u = q + 32): low nibble in ql[c*64 + (r&1)*32 + l] (high half for
     * r >= 2), top 2 bits in qh[c*32 + l] at bit 2r; each byte written once */
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < 32; l++) {
            const int8_t *p = k->q + c * 128 + l;
            int u0 = p[0] + 32, u1 = p[32] + 32, u2 = p[64] + 32, u3 = p[96] + 32;
            b->ql[c * 64 + l] = (uint8_t)((u0 & 0xF) | (u2 & 0xF) << 4);
            b->ql[c * 64 + 32 + l] = (uint8_t)((u1 & 0xF) | (u3 & 0xF) << 4);
            b->qh[c * 32 + l] = (uint8_t)((u0 >> 4) | (u1 >> 4) << 2 | (u2 >> 4) << 4 | (u3 >> 4) << 6);
        }
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)k->sc[j];
    b->d = k->d;
}

void qf_dequantize_q6_K(const void *x, float *y, int64_t n) {
    const qf_block_q6_K *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int e = 0; e < QF_QK_K; e++) {
            int c = e / 128, r = (e % 128) / 32, l = e % 32;
            int lo = (b->ql[c * 64 + (r & 1) * 32 + l] >> (4 * (r >> 1))) & 0xF;
            int hi = (b->qh[c * 32 + l] >> (2 * r)) & 3;
            *y++ = d * (float)b->scales[e / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

/* Reference dot of the K-quants: dequantize one super-block, multiply, accumulate per block. */
#define KQ_DOT(T, BLOCK)                                                            \
    float qf_dot_##T(const void *w, const float *x, int64_t n) {                    \
        const BLOCK *b = w;                                                        \
        float s = 0.0f, t[QF_QK_K];                                                \
        for (int64_t i = 0; i < n / QF_QK_K; i++) {                                \
            qf_dequantize_##T(&b[i], t, QF_QK_K);                                  \
            float a = 0.0f;                                                        \
            for (int j = 0; j < QF_QK_K; j++) a += t[j] * x[i * QF_QK_K + j];      \
            s += a;                                                                \
        }                                                                          \
        return s;                                                                  \
    }
KQ_DOT(q2_K, qf_block_q2_K)
KQ_DOT(q3_K, qf_block_q3_K)
KQ_DOT(q4_K, qf_block_q4_K)
KQ_DOT(q5_K, qf_block_q5_K)
KQ_DOT(q6_K, qf_block_q6_K)
