/* weights.c — reading a weight's rows wherever they are stored (runtime.h): dequantized to F32, or
 * decoded to integer levels and scales for the 8-bit path (rt_kern.h: qf_rt_wq). */
#include "runtime/runtime.h"

#include "kernels/blocks.h"
#include "kernels/fpconv.h"
#include "runtime/rt_kern.h"

/* ---- weight rows ------------------------------------------------------------------------------- */

/* The stored row of logical row r (runtime.h: the row map). */
static uint64_t stored_row(const qf_rt_weight *w, uint64_t r) {
    return w->group ? (r / w->group) * w->stride + w->offset + r % w->group : r;
}

void qf_rt_weight_rows(const qf_rt_weight *w, uint64_t r0, uint64_t n, float *dst) {
    for (uint64_t r = 0; r < n;) {
        /* consecutive logical rows that are consecutive stored rows go in one call */
        uint64_t s = stored_row(w, r0 + r), run = 1;
        while (r + run < n && stored_row(w, r0 + r + run) == s + run) run++;
        if (w->tt)
            for (uint64_t k = 0; k < run; k++)
                w->tt->dequantize(w->data + (s + k) * w->row_bytes, dst + (r + k) * w->row_len, (int64_t)w->row_len);
        else /* every tensor was prepared at open and rows are in range by construction: cannot fail */
            qf_source_rows(w->src, w->src_idx, s, run, dst + r * w->row_len, NULL);
        r += run;
    }
}

/* ---- rows for the 8-bit path (rt_kern.h: qf_rt_wq) ---------------------------------------------------- */

bool qf_rt_weight_has_q8(const qf_rt_weight *w) {
    return w->tt && !w->group && w->tt->int8_path;
}

/* qf_f16_to_f32 for the scales of the decoders below, inline: normal halves by moving their bits (exact:
 * every half is a float), the rest through the library. The decoders run once per panel and per pass,
 * and the call was as costly as the decoding itself. */
static inline float half_to_float(uint16_t h) {
    uint32_t e = (h >> 10) & 0x1f;
    if (e == 0 || e == 31) return qf_f16_to_f32(h);
    uint32_t bits = (uint32_t)(h & 0x8000) << 16 | (e + 112) << 23 | (uint32_t)(h & 0x3ff) << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q8_0: level + 128 (so it is unsigned), or the level itself when sgn; one scale per 32. */
static void q8_0_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, bool sgn) {
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)src;
    for (uint64_t i = 0; i < K / QF_QK; i++) {
        d[i] = half_to_float(b[i].d);
        if (sgn) memcpy(q + i * QF_QK, b[i].qs, QF_QK);
        else
            for (int l = 0; l < QF_QK; l++) q[i * QF_QK + (uint64_t)l] = (uint8_t)(b[i].qs[l] ^ 0x80);
    }
}

/* Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4 layout). */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K: levels 0..15 as stored, scale d * sc and min term -(dmin * m) per 32; in each 64-element chunk
 * byte l holds element l (low nibble) and element l + 32 (high nibble). */
static void q4_K_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, float *m) {
    const qf_block_q4_K *b = (const qf_block_q4_K *)src;
    for (uint64_t i = 0; i < K / QF_QK_K; i++, q += QF_QK_K, d += 8, m += 8) {
        float bd = half_to_float(b[i].d), bm = half_to_float(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(b[i].scales, j, &sc, &mn);
            d[j] = bd * (float)sc;
            m[j] = -(bm * (float)mn);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                uint8_t v = b[i].qs[c * 32 + l];
                q[c * 64 + l] = v & 0xF;
                q[c * 64 + 32 + l] = v >> 4;
            }
    }
}

/* Q6_K: levels 0..63 (= signed level + 32), scale d * sc per 16. Element e of a super-block: 128-half
 * c = e / 128, quarter r = (e % 128) / 32, lane l = e % 32; low 4 bits in ql, high 2 bits in qh. */
static void q6_K_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, bool sgn) {
    uint8_t off = sgn ? 32 : 0; /* signed: level - 32 as int8 (two's complement in the byte) */
    const qf_block_q6_K *b = (const qf_block_q6_K *)src;
    for (uint64_t i = 0; i < K / QF_QK_K; i++, q += QF_QK_K, d += 16) {
        float bd = half_to_float(b[i].d);
        for (int j = 0; j < 16; j++) d[j] = bd * (float)b[i].scales[j];
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 32; l++) {
                    int lo = (b[i].ql[c * 64 + (r & 1) * 32 + l] >> (4 * (r >> 1))) & 0xF;
                    int hi = (b[i].qh[c * 32 + l] >> (2 * r)) & 3;
                    q[c * 128 + r * 32 + l] = (uint8_t)((lo | hi << 4) - off);
                }
    }
}

void qf_rt_weight_rows_q8(const qf_rt_weight *w, uint64_t r0, uint64_t n, uint64_t rows, bool sgn, uint8_t *q,
                          float *s, qf_rt_wq *out) {
    uint64_t K = w->row_len, lds = K / 16;
    uint32_t id = w->tt->id;
    uint32_t off = sgn ? 0 : id == QF_T_Q8_0 ? 128 : id == QF_T_Q6_K ? 32 : 0;
    *out = (qf_rt_wq){.q = q, .ldq = K, .d = s, .m = id == QF_T_Q4_K ? s + rows * lds : NULL, .lds = lds,
                      .sub = id == QF_T_Q6_K ? 16 : 32, .off = off, .sgn = sgn};
    for (uint64_t r = 0; r < n; r++) {
        const uint8_t *src = w->data + (r0 + r) * w->row_bytes;
        uint8_t *qr = q + r * K;
        float *dr = s + r * lds;
        if (id == QF_T_Q8_0) q8_0_row(src, K, qr, dr, sgn);
        else if (id == QF_T_Q4_K) q4_K_row(src, K, qr, dr, s + (rows + r) * lds);
        else q6_K_row(src, K, qr, dr, sgn);
    }
    if (n < rows) {
        memset(q + n * K, 0, (rows - n) * K);
        memset(s + n * lds, 0, (rows - n) * lds * sizeof(float));
        memset(s + (rows + n) * lds, 0, (rows - n) * lds * sizeof(float));
    }
}
