/*
 * k_iquants.c — scalar reference dequantizers and dot products of ggml's i-quants (IQ4_NL, IQ4_XS,
 * IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M), and the packers their quantizers (iq_body.h,
 * compiled per ISA) write ggml's layouts with.
 *
 * Dequantization repeats ggml's arithmetic operation for operation (the sub-block scale as ggml forms it,
 * e.g. IQ2's (d * (0.5 + l)) * 0.25, then times the grid byte, then the sign), so the floats are
 * bit-identical to ggml's to_float. Grids: iq_grids.h.
 */
#include "kernels/fpconv.h"
#include "kernels/iq_fit.h"
#include "kernels/iq_grids.h"
#include "kernels/kern.h"

#include <string.h>

static uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t load_u16le(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Byte j of a packed grid entry. */
static int grid_byte(uint64_t g, int j) { return (int)(g >> (8 * j) & 0xFF); }

/* y[0..8) = db * grid bytes, negated where the sign bit is set (ggml's `db * grid[j] * (+-1.f)`). */
static void grid8(float db, uint64_t g, unsigned signs, float *y) {
    for (int j = 0; j < 8; j++) {
        float v = db * (float)grid_byte(g, j);
        y[j] = signs >> j & 1 ? -v : v;
    }
}

/* ---- IQ4_NL / IQ4_XS: x = scale * v[q] ------------------------------------------------------------------- */

void qf_dequantize_iq4_nl(const void *x, float *y, int64_t n) {
    const qf_block_iq4_nl *b = x;
    for (int64_t i = 0; i < n / QF_QK; i++, y += QF_QK) {
        float d = qf_f16_to_f32(b[i].d);
        for (int j = 0; j < QF_QK / 2; j++) {
            y[j] = d * (float)qf_iq4nl_values[b[i].qs[j] & 0xF];
            y[j + 16] = d * (float)qf_iq4nl_values[b[i].qs[j] >> 4];
        }
    }
}

void qf_pack_iq4_nl(const uint8_t *q, uint16_t d, void *out) {
    qf_block_iq4_nl *b = out;
    b->d = d;
    for (int j = 0; j < QF_QK / 2; j++) b->qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

/* 6-bit sub-block scale ib (0..7): low nibble in scales_l, two high bits in scales_h. */
static int iq4_xs_scale(const qf_block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | ((b->scales_h >> 2 * ib) & 3) << 4;
}

void qf_dequantize_iq4_xs(const void *x, float *y, int64_t n) {
    const qf_block_iq4_xs *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            float dl = d * (float)(iq4_xs_scale(b, ib) - 32);
            const uint8_t *qs = b->qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)qf_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * (float)qf_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

void qf_pack_iq4_xs(const uint8_t *q, const int *ls, uint16_t d, void *out) {
    qf_block_iq4_xs *b = out;
    b->d = d;
    b->scales_h = 0;
    for (int ib = 0; ib < 8; ib++) {
        if (ib % 2 == 0) b->scales_l[ib / 2] = (uint8_t)(ls[ib] & 0xF);
        else b->scales_l[ib / 2] |= (uint8_t)((ls[ib] & 0xF) << 4);
        b->scales_h |= (uint16_t)((ls[ib] >> 4) << 2 * ib);
        for (int j = 0; j < 16; j++) b->qs[16 * ib + j] = (uint8_t)(q[32 * ib + j] | q[32 * ib + j + 16] << 4);
    }
}

/* ---- IQ3_XXS / IQ3_S: 4-element grid points ----------------------------------------------------------- */

void qf_dequantize_iq3_xxs(const void *x, float *y, int64_t n) {
    const qf_block_iq3_xxs *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        const uint8_t *qs = b->qs, *ss = b->qs + QF_QK_K / 4;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            uint32_t aux = load_u32le(ss + 4 * ib);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                uint64_t g = qf_iq3xxs_grid[qs[2 * l]] | (uint64_t)qf_iq3xxs_grid[qs[2 * l + 1]] << 32;
                grid8(db, g, qf_iq_signs7(aux >> 7 * l & 127), y);
            }
        }
    }
}

void qf_dequantize_iq3_s(const void *x, float *y, int64_t n) {
    const qf_block_iq3_s *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            float db = d * (float)(1 + 2 * (b->scales[ib / 2] >> 4 * (ib % 2) & 0xF));
            const uint8_t *qs = b->qs + 8 * ib;
            unsigned qh = b->qh[ib];
            for (int l = 0; l < 4; l++, y += 8) {
                uint64_t g = qf_iq3s_grid[qs[2 * l] | (qh << (8 - 2 * l) & 256)] |
                             (uint64_t)qf_iq3s_grid[qs[2 * l + 1] | (qh << (7 - 2 * l) & 256)] << 32;
                grid8(db, g, b->signs[4 * ib + l], y);
            }
        }
    }
}

/* ---- IQ2_XXS / IQ2_XS / IQ2_S: 8-element grid points ---------------------------------------------------- */

void qf_dequantize_iq2_xxs(const void *x, float *y, int64_t n) {
    const qf_block_iq2_xxs *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        const uint8_t *qs = (const uint8_t *)b->qs;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t idx = load_u32le(qs + 8 * ib), aux = load_u32le(qs + 8 * ib + 4);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) grid8(db, qf_iq2xxs_grid[idx >> 8 * l & 0xFF], qf_iq_signs7(aux >> 7 * l & 127), y);
        }
    }
}

void qf_dequantize_iq2_xs(const void *x, float *y, int64_t n) {
    const qf_block_iq2_xs *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        const uint8_t *qs = (const uint8_t *)b->qs;
        for (int ib = 0; ib < 8; ib++) {
            float db[2] = { d * (0.5f + (float)(b->scales[ib] & 0xF)) * 0.25f, d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f };
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned q = load_u16le(qs + 2 * (4 * ib + l));
                grid8(db[l / 2], qf_iq2xs_grid[q & 511], qf_iq_signs7(q >> 9), y);
            }
        }
    }
}

void qf_dequantize_iq2_s(const void *x, float *y, int64_t n) {
    const qf_block_iq2_s *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        const uint8_t *qs = b->qs, *signs = b->qs + QF_QK_K / 8;
        for (int ib = 0; ib < 8; ib++) {
            float db[2] = { d * (0.5f + (float)(b->scales[ib] & 0xF)) * 0.25f, d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f };
            for (int l = 0; l < 4; l++, y += 8)
                grid8(db[l / 2], qf_iq2s_grid[qs[4 * ib + l] | (b->qh[ib] << (8 - 2 * l) & 0x300)], signs[4 * ib + l], y);
        }
    }
}

/* ---- IQ1_S / IQ1_M: x = scale * (grid + delta), grid in {-1, 0, 1} --------------------------------------- */

static void grid1(float dl, uint64_t g, float delta, float *y) {
    for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)grid_byte(g, j) + delta);
}

void qf_dequantize_iq1_s(const void *x, float *y, int64_t n) {
    const qf_block_iq1_s *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            unsigned qh = b->qh[ib];
            float dl = d * (float)(2 * (qh >> 12 & 7) + 1), delta = qh & 0x8000 ? -QF_IQ1_DELTA : QF_IQ1_DELTA;
            for (int l = 0; l < 4; l++, y += 8) grid1(dl, qf_iq1s_grid[b->qs[4 * ib + l] | (qh >> 3 * l & 7) << 8], delta, y);
        }
    }
}

/* IQ1_M's super-scale: the top nibbles of its four scale words, as F16 bits. */
static uint16_t iq1_m_d(const qf_block_iq1_m *b) {
    uint16_t sc[4];
    for (int k = 0; k < 4; k++) sc[k] = load_u16le(b->scales + 2 * k);
    return (uint16_t)((sc[0] >> 12) | (sc[1] >> 8 & 0x00F0) | (sc[2] >> 4 & 0x0F00) | (sc[3] & 0xF000));
}

void qf_dequantize_iq1_m(const void *x, float *y, int64_t n) {
    const qf_block_iq1_m *b = x;
    for (int64_t i = 0; i < n / QF_QK_K; i++, b++) {
        float d = qf_f16_to_f32(iq1_m_d(b));
        for (int ib = 0; ib < 8; ib++) {
            unsigned sc = load_u16le(b->scales + 2 * (ib / 2));
            float dl[2] = { d * (float)(2 * ((sc >> 6 * (ib % 2)) & 7) + 1), d * (float)(2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1) };
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned qh = b->qh[2 * ib + l / 2] >> 4 * (l % 2);
                float delta = qh & 8 ? -QF_IQ1_DELTA : QF_IQ1_DELTA;
                grid1(dl[l / 2], qf_iq1s_grid[b->qs[4 * ib + l] | (qh & 7) << 8], delta, y);
            }
        }
    }
}

/* ---- dot products: dequantize one block, multiply, accumulate per block ----------------------------------- */

#define IQ_DOT(T, BLOCK, BLCK)                                                     \
    float qf_dot_##T(const void *w, const float *x, int64_t n) {                   \
        const BLOCK *b = w;                                                        \
        float s = 0.0f, t[BLCK];                                                   \
        for (int64_t i = 0; i < n / (BLCK); i++) {                                 \
            qf_dequantize_##T(&b[i], t, BLCK);                                     \
            float a = 0.0f;                                                        \
            for (int j = 0; j < (BLCK); j++) a += t[j] * x[i * (BLCK) + j];        \
            s += a;                                                                \
        }                                                                          \
        return s;                                                                  \
    }
IQ_DOT(iq4_nl, qf_block_iq4_nl, QF_QK)
IQ_DOT(iq4_xs, qf_block_iq4_xs, QF_QK_K)
IQ_DOT(iq3_xxs, qf_block_iq3_xxs, QF_QK_K)
IQ_DOT(iq3_s, qf_block_iq3_s, QF_QK_K)
IQ_DOT(iq2_xxs, qf_block_iq2_xxs, QF_QK_K)
IQ_DOT(iq2_xs, qf_block_iq2_xs, QF_QK_K)
IQ_DOT(iq2_s, qf_block_iq2_s, QF_QK_K)
IQ_DOT(iq1_s, qf_block_iq1_s, QF_QK_K)
IQ_DOT(iq1_m, qf_block_iq1_m, QF_QK_K)

/* ---- packers of the grid types (iq_fit.h) ---------------------------------------------------------------- */

static void store_u32le(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> 8 * k);
}

static void store_u16le(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Four 7-bit sign patterns (groups of 8) and the 4-bit scale on top: IQ3_XXS's and IQ2_XXS's word. */
static uint32_t signs_scale_word(const uint8_t *sg, unsigned l) {
    uint32_t v = (uint32_t)l << 28;
    for (int k = 0; k < 4; k++) v |= (uint32_t)(sg[k] & 127) << 7 * k;
    return v;
}

void qf_pack_iq3_xxs(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq3_xxs *b = out;
    b->d = d;
    for (int i = 0; i < QF_QK_K / 4; i++) b->qs[i] = (uint8_t)idx[i];
    for (int ib = 0; ib < 8; ib++) store_u32le(b->qs + QF_QK_K / 4 + 4 * ib, signs_scale_word(sg + 4 * ib, ls[ib]));
}

void qf_pack_iq3_s(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq3_s *b = out;
    b->d = d;
    memset(b->qh, 0, sizeof b->qh);
    for (int i = 0; i < QF_QK_K / 4; i++) {
        b->qs[i] = (uint8_t)idx[i];
        b->qh[i / 8] |= (uint8_t)((idx[i] >> 8 & 1) << i % 8);
    }
    memcpy(b->signs, sg, sizeof b->signs);
    for (int k = 0; k < 4; k++) b->scales[k] = (uint8_t)(ls[2 * k] | ls[2 * k + 1] << 4);
}

void qf_pack_iq2_xxs(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq2_xxs *b = out;
    uint8_t *qs = (uint8_t *)b->qs;
    b->d = d;
    for (int ib = 0; ib < 8; ib++) {
        const uint16_t *ix = idx + 4 * ib;
        store_u32le(qs + 8 * ib, (uint32_t)ix[0] | (uint32_t)ix[1] << 8 | (uint32_t)ix[2] << 16 | (uint32_t)ix[3] << 24);
        store_u32le(qs + 8 * ib + 4, signs_scale_word(sg + 4 * ib, ls[ib]));
    }
}

void qf_pack_iq2_xs(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq2_xs *b = out;
    uint8_t *qs = (uint8_t *)b->qs;
    b->d = d;
    for (int i = 0; i < QF_QK_K / 8; i++) store_u16le(qs + 2 * i, idx[i] | (unsigned)(sg[i] & 127) << 9);
    for (int ib = 0; ib < 8; ib++) b->scales[ib] = (uint8_t)(ls[2 * ib] | ls[2 * ib + 1] << 4);
}

void qf_pack_iq2_s(const uint16_t *idx, const uint8_t *sg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq2_s *b = out;
    b->d = d;
    memset(b->qh, 0, sizeof b->qh);
    for (int i = 0; i < QF_QK_K / 8; i++) {
        b->qs[i] = (uint8_t)idx[i];
        b->qh[i / 4] |= (uint8_t)((idx[i] >> 8 & 3) << 2 * (i % 4));
    }
    memcpy(b->qs + QF_QK_K / 8, sg, QF_QK_K / 8);
    for (int ib = 0; ib < 8; ib++) b->scales[ib] = (uint8_t)(ls[2 * ib] | ls[2 * ib + 1] << 4);
}

/* IQ1_S / IQ1_M: per group of 8 its 11-bit grid index and offset sign (neg: delta is -1/8), per sub-block
 * its 3-bit scale l. */
void qf_pack_iq1_s(const uint16_t *idx, const uint8_t *neg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq1_s *b = out;
    b->d = d;
    for (int ib = 0; ib < 8; ib++) {
        unsigned qh = (unsigned)ls[ib] << 12 | (unsigned)neg[4 * ib] << 15;
        for (int l = 0; l < 4; l++) {
            b->qs[4 * ib + l] = (uint8_t)idx[4 * ib + l];
            qh |= (unsigned)(idx[4 * ib + l] >> 8 & 7) << 3 * l;
        }
        b->qh[ib] = (uint16_t)qh;
    }
}

void qf_pack_iq1_m(const uint16_t *idx, const uint8_t *neg, const uint8_t *ls, uint16_t d, void *out) {
    qf_block_iq1_m *b = out;
    for (int i = 0; i < QF_QK_K / 8; i++) b->qs[i] = (uint8_t)idx[i];
    for (int i = 0; i < QF_QK_K / 16; i++) {
        unsigned lo = (idx[2 * i] >> 8 & 7) | (unsigned)neg[2 * i] << 3, hi = (idx[2 * i + 1] >> 8 & 7) | (unsigned)neg[2 * i + 1] << 3;
        b->qh[i] = (uint8_t)(lo | hi << 4);
    }
    for (int k = 0; k < 4; k++) { /* word k: the scales of sub-blocks 2k, 2k + 1 (two per 32), d's nibble k on top */
        unsigned w = 0;
        for (int j = 0; j < 4; j++) w |= (unsigned)ls[4 * k + j] << 3 * j;
        store_u16le(b->scales + 2 * k, w | (unsigned)(d >> 4 * k & 0xF) << 12);
    }
}
