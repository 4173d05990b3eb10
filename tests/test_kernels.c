/*
 * test_kernels.c — conversions, the traits table, and every kernel on every ISA this CPU runs.
 *
 * fpconv: exhaustive round trips over all F16/BF16/F8 codes, ties-to-even at every midpoint,
 *   saturation and NaN handling. Table: ids, sizes (ggml's), names, removed ids, row sizes.
 * Kernels, per type with a quantizer: error bounds per data kind, importance weights (constant weights
 *   never worse than none; real weights lower the weighted error), NaN/Inf rejection, determinism,
 *   dot vs dequantize-then-dot within tolerance, and SIMD vs scalar: quantized bytes and dequantized
 *   floats identical, dot products within tolerance (docs/quant-types.md).
 * Seeds are fixed and printed with failures; QF_TEST_SEED overrides the base seed.
 */
#include "kernels/blocks.h"
#include "kernels/cpu.h"
#include "kernels/iq_grids.h"
#include "kernels/fpconv.h"
#include "kernels/fprow.h"
#include "test_kernels_data.h"
#include "testutil.h"

#include <math.h>

static uint64_t base_seed = 1234;

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static bool same_float(float a, float b) { return (isnan(a) && isnan(b)) || f32_bits(a) == f32_bits(b); }

/* ---- fpconv ---------------------------------------------------------------------------------------- */

typedef float (*dec16_fn)(uint16_t);
typedef uint16_t (*enc16_fn)(float);

/* All codes decode and re-encode to themselves (NaN: to a NaN); each midpoint between neighbours rounds
 * to the even code, and a hair either side rounds to the nearer one. */
static void check_codes16(const char *name, dec16_fn dec, enc16_fn enc, uint32_t ncodes, uint32_t sign_bit,
                          uint32_t max_code) {
    int bad = 0;
    for (uint32_t c = 0; c < ncodes; c++) {
        float v = dec((uint16_t)c);
        uint16_t back = enc(v);
        if (isnan(v)) { if (!isnan(dec(back))) bad++; continue; }
        if (back != c && !(v == 0.0f && (back & ~sign_bit) == 0)) bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d codes do not round-trip", name, bad);
    bad = 0;
    for (uint32_t c = 0; c < max_code; c++) { /* positive neighbours c, c+1 */
        double a = dec((uint16_t)c), b = dec((uint16_t)(c + 1));
        float mid = (float)((a + b) / 2); /* exact: one more bit than either neighbour */
        uint16_t even = (c & 1) ? (uint16_t)(c + 1) : (uint16_t)c;
        if (enc(mid) != even) bad++;
        if (enc(nextafterf(mid, 0.0f)) != c || enc(nextafterf(mid, INFINITY)) != c + 1) bad++;
        if (enc(-mid) != (even | sign_bit)) bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d midpoints round wrongly", name, bad);
}

static float dec_e4m3(uint16_t c) { return qf_e4m3_to_f32((uint8_t)c); }
static uint16_t enc_e4m3(float f) { return qf_f32_to_e4m3(f); }
static float dec_e5m2(uint16_t c) { return qf_e5m2_to_f32((uint8_t)c); }
static uint16_t enc_e5m2(float f) { return qf_f32_to_e5m2(f); }

static void test_fpconv(void) {
    check_codes16("f16", qf_f16_to_f32, qf_f32_to_f16, 65536, 0x8000, 0x7BFF);
    check_codes16("bf16", qf_bf16_to_f32, qf_f32_to_bf16, 65536, 0x8000, 0x7F7F);
    check_codes16("e4m3", dec_e4m3, enc_e4m3, 256, 0x80, 0x7E);
    check_codes16("e5m2", dec_e5m2, enc_e5m2, 256, 0x80, 0x7B);

    /* values and special cases */
    CHECK(qf_f16_to_f32(0x3C00) == 1.0f && qf_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(qf_f32_to_f16(65504.0f) == 0x7BFF && qf_f32_to_f16(65519.99f) == 0x7BFF);
    CHECK(qf_f32_to_f16(65520.0f) == 0x7C00 && qf_f32_to_f16(-INFINITY) == 0xFC00);
    CHECK(qf_f32_to_f16(ldexpf(1, -25)) == 0 && qf_f32_to_f16(nextafterf(ldexpf(1, -25), 1)) == 1);
    CHECK((qf_f32_to_f16(NAN) & 0x7E00) == 0x7E00);
    CHECK(qf_f32_to_f16(bits_f32(0x7F800001)) != 0x7C00); /* signalling NaN must not become inf */
    CHECK(qf_f32_to_bf16(bits_f32(0x7F800001)) == 0x7FC0); /* ... nor in BF16: quiet, payload kept */
    CHECK(qf_f32_to_bf16(bits_f32(0xFF812345)) == 0xFFC1);
    CHECK(qf_f32_to_bf16(bits_f32(0x7F7FFFFF)) == 0x7F80); /* FLT_MAX rounds to inf */
    CHECK(qf_f32_to_bf16(1.00390625f) == 0x3F80);           /* tie 1 + 2^-8 -> even (1.0) */
    CHECK(qf_e4m3_to_f32(0x7E) == 448.0f && qf_e4m3_to_f32(0x01) == ldexpf(1, -9));
    CHECK(isnan(qf_e4m3_to_f32(0x7F)) && isnan(qf_e4m3_to_f32(0xFF)));
    CHECK(qf_f32_to_e4m3(1e6f) == 0x7E && qf_f32_to_e4m3(-1e6f) == 0xFE && qf_f32_to_e4m3(464.0f) == 0x7E);
    CHECK(qf_f32_to_e4m3(INFINITY) == 0x7E && qf_f32_to_e4m3(-INFINITY) == 0xFE);
    CHECK((qf_f32_to_e4m3(NAN) & 0x7F) == 0x7F);
    CHECK(qf_e5m2_to_f32(0x7B) == 57344.0f && qf_e5m2_to_f32(0x01) == ldexpf(1, -16));
    CHECK(isinf(qf_e5m2_to_f32(0x7C)) && isnan(qf_e5m2_to_f32(0x7D)));
    CHECK(qf_f32_to_e5m2(1e9f) == 0x7B && qf_f32_to_e5m2(-1e9f) == 0xFB);
    CHECK(qf_f32_to_e5m2(INFINITY) == 0x7C && isnan(qf_e5m2_to_f32(qf_f32_to_e5m2(NAN))));
    CHECK(qf_f32_to_e4m3(ldexpf(1, -10)) == 0 && qf_f32_to_e4m3(ldexpf(3, -11)) == 0x01);
}

/* Row conversions of every ISA equal the scalar per-element ones bit for bit: all 16-bit and 8-bit codes,
 * and F32 inputs around every F16/BF16 rounding boundary plus random bit patterns (NaNs included). */
static void test_fprow(void) {
    enum { N = 65536 + 7 }; /* odd count: exercises the scalar tails */
    uint16_t *h = malloc(N * 2), *h2 = malloc(N * 2);
    float *f = malloc(N * 4), *g = malloc(N * 4);
    uint8_t e[263];
    for (int i = 0; i < N; i++) h[i] = (uint16_t)(i * 40503u);
    for (int i = 0; i < 263; i++) e[i] = (uint8_t)i;
    for (int isa = 0; isa < QF_ISA_COUNT; isa++) {
        const qf_fprow *r = qf_fprow_isa((qf_isa)isa);
        if (!r) continue;
        int bad = 0;
        r->f16_to_f32(h, f, N);
        for (int i = 0; i < N; i++) bad += f32_bits(f[i]) != f32_bits(qf_f16_to_f32(h[i]));
        r->bf16_to_f32(h, f, N);
        for (int i = 0; i < N; i++) bad += f32_bits(f[i]) != f32_bits(qf_bf16_to_f32(h[i]));
        r->e4m3_to_f32(e, f, 263);
        for (int i = 0; i < 263; i++) bad += f32_bits(f[i]) != f32_bits(qf_e4m3_to_f32(e[i]));
        uint64_t rs = base_seed + 5;
        for (int pass = 0; pass < 3; pass++) {
            for (int i = 0; i < N; i++) {
                uint32_t u = (uint32_t)qf_test_rand(&rs);
                if (pass == 1) u = (uint32_t)h[i] << 16 | 0x8000u; /* BF16 midpoints */
                if (pass == 2) u = f32_bits(qf_f16_to_f32(h[i])) + (1u << 12); /* F16 midpoints */
                g[i] = bits_f32(u);
            }
            r->f32_to_f16(g, h2, N);
            for (int i = 0; i < N; i++) bad += h2[i] != qf_f32_to_f16(g[i]);
            r->f32_to_bf16(g, h2, N);
            for (int i = 0; i < N; i++) bad += h2[i] != qf_f32_to_bf16(g[i]);
        }
        CHECK_MSG(bad == 0, "row conversions (%s): %d values differ from the scalar ones", qf_isa_name((qf_isa)isa), bad);
    }
    free(h); free(h2); free(f); free(g);
}

/* Stored-bytes pass-through (quantize/run.c) copies an F16/BF16/F32 source into the same type instead of
 * decoding and re-encoding it: byte-identical to the old path only if every finite code survives the
 * type's own row quantizer unchanged (signed zeros and subnormals included), and refused exactly where
 * the quantizer refuses (NaN, Inf). Every 16-bit code, and F32 edge values. */
static void test_plain_pass(void) {
    const uint32_t types[] = {QF_T_F16, QF_T_BF16};
    uint16_t *codes = malloc(65536 * 2), *back = malloc(65536 * 2);
    float *v = malloc(65536 * sizeof(float));
    for (size_t k = 0; k < QF_ARRAY_LEN(types); k++) {
        const qf_qtype_traits *tt = qf_qtype_get(types[k]);
        int n = 0, finite_wrong = 0, refused = 0;
        for (uint32_t c = 0; c < 65536; c++) {
            uint16_t code = (uint16_t)c;
            float x = types[k] == QF_T_F16 ? qf_f16_to_f32(code) : qf_bf16_to_f32(code);
            finite_wrong += qf_plain_row_finite(types[k], &code, 1) != (bool)isfinite(x);
            if (!isfinite(x)) { refused += !tt->quantize(&x, back, 1, NULL); continue; }
            codes[n] = code;
            v[n++] = x;
        }
        /* one row, as the executor quantizes: the ISA's vector path, then its tail */
        CHECK(tt->quantize(v, back, n, NULL));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += back[i] != codes[i];
        CHECK_MSG(bad == 0, "%s: %d codes do not survive decode + quantize as themselves", tt->name, bad);
        CHECK_MSG(finite_wrong == 0, "%s: the finite test disagrees with the decoded value on %d codes", tt->name,
                  finite_wrong);
        CHECK_MSG(refused == 65536 - n, "%s: the quantizer stores %d non-finite codes", tt->name, 65536 - n - refused);
    }
    free(codes); free(back); free(v);
    const uint32_t f32[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F7FFFFFu, 0xFF7FFFFFu,
                            0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x7F800001u};
    for (size_t i = 0; i < QF_ARRAY_LEN(f32); i++) {
        float x = bits_f32(f32[i]), y = 0;
        bool fin = isfinite(x), stored = qf_qtype_get(QF_T_F32)->quantize(&x, &y, 1, NULL);
        CHECK_MSG(qf_plain_row_finite(QF_T_F32, &f32[i], 1) == fin, "f32 %08x: finite test wrong", f32[i]);
        CHECK_MSG(stored == fin && (!fin || f32_bits(y) == f32[i]), "f32 %08x: not stored as itself", f32[i]);
    }
    /* a non-finite value anywhere in a long row, and a type the test does not cover */
    uint16_t row[1000] = {0};
    CHECK(qf_plain_row_finite(QF_T_BF16, row, 1000));
    row[999] = 0xFF80;
    CHECK(!qf_plain_row_finite(QF_T_BF16, row, 1000) && qf_plain_row_finite(QF_T_BF16, row, 999));
    CHECK(!qf_plain_row_finite(QF_T_Q8_0, row, 32));
}

/* The range rule's row maximum (quantize/run.c) against a plain loop: NaNs skipped, Inf kept, signed
 * zeros and subnormals, every length up to two lane blocks past a multiple of the lanes. */
static void test_absmax(void) {
    uint64_t rs = base_seed + 11;
    float x[80];
    int bad = 0;
    for (int trial = 0; trial < 400; trial++) {
        int n = trial % 80;
        for (int i = 0; i < n; i++) {
            uint32_t u = (uint32_t)qf_test_rand(&rs), pick = u % 16;
            x[i] = pick == 0 ? NAN : pick == 1 ? -NAN : pick == 2 ? bits_f32(u >> 9) /* subnormal */
                 : pick == 3 ? -0.0f : qf_test_randn(&rs) * ldexpf(1, (int)(u % 60) - 30);
            if (trial % 50 == 7 && i == n / 2) x[i] = trial % 100 == 7 ? INFINITY : -INFINITY;
        }
        float want = 0.0f;
        for (int i = 0; i < n; i++) want = fabsf(x[i]) > want ? fabsf(x[i]) : want;
        bad += f32_bits(qf_row_absmax(x, n)) != f32_bits(want);
    }
    CHECK_MSG(bad == 0, "row absmax differs from the plain loop on %d rows", bad);
    float nan_only[3] = {NAN, NAN, NAN};
    CHECK(qf_row_absmax(nan_only, 3) == 0.0f);
}

/* ---- table ----------------------------------------------------------------------------------------- */

static void test_table(void) {
    static const struct { uint32_t id; const char *name; uint32_t blck, bytes; } ggml[] = {
        { 0, "f32", 1, 4 }, { 1, "f16", 1, 2 }, { 2, "q4_0", 32, 18 }, { 3, "q4_1", 32, 20 },
        { 6, "q5_0", 32, 22 }, { 7, "q5_1", 32, 24 }, { 8, "q8_0", 32, 34 }, { 9, "q8_1", 32, 36 },
        { 10, "q2_K", 256, 84 }, { 11, "q3_K", 256, 110 }, { 12, "q4_K", 256, 144 }, { 13, "q5_K", 256, 176 },
        { 14, "q6_K", 256, 210 }, { 15, "q8_K", 256, 292 }, { 16, "iq2_xxs", 256, 66 }, { 17, "iq2_xs", 256, 74 },
        { 18, "iq3_xxs", 256, 98 }, { 19, "iq1_s", 256, 50 }, { 20, "iq4_nl", 32, 18 }, { 21, "iq3_s", 256, 110 },
        { 22, "iq2_s", 256, 82 }, { 23, "iq4_xs", 256, 136 }, { 24, "i8", 1, 1 }, { 25, "i16", 1, 2 },
        { 26, "i32", 1, 4 }, { 27, "i64", 1, 8 }, { 28, "f64", 1, 8 }, { 29, "iq1_m", 256, 56 },
        { 30, "bf16", 1, 2 }, { 34, "tq1_0", 256, 54 }, { 35, "tq2_0", 256, 66 }, { 39, "mxfp4", 32, 17 },
        { 40, "nvfp4", 64, 36 }, { 41, "q1_0", 128, 18 }, { 42, "q2_0", 64, 18 },
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(ggml); i++) {
        const qf_qtype_traits *t = qf_qtype_get(ggml[i].id);
        CHECK_MSG(t && !strcmp(t->name, ggml[i].name) && t->blck == ggml[i].blck && t->bytes == ggml[i].bytes,
                  "ggml type %u (%s)", ggml[i].id, ggml[i].name);
        CHECK(t && t->row_extra == 0);
    }
    static const uint32_t removed[] = { 4, 5, 31, 32, 33, 36, 37, 38, 43, 1023, 9999 };
    for (size_t i = 0; i < QF_ARRAY_LEN(removed); i++) CHECK_MSG(!qf_qtype_get(removed[i]), "id %u", removed[i]);

    size_t n = qf_qtype_count();
    CHECK(n == QF_ARRAY_LEN(ggml) + 4);
    CHECK(qf_qtype_at(n) == NULL);
    for (size_t i = 0; i < n; i++) {
        const qf_qtype_traits *t = qf_qtype_at(i);
        CHECK(t && t->blck > 0 && t->bytes > 0 && t->name);
        if (!t) continue;
        CHECK(qf_qtype_get(t->id) == t);
        CHECK(qf_qtype_by_name(t->name) == t);
        CHECK(i == 0 || t->id > qf_qtype_at(i - 1)->id); /* id order, hence unique */
        CHECK(t->id < QF_QTYPE_EXT_BASE || t->quantize); /* extension rows exist only with kernels */
        CHECK(!t->quantize == !t->dequantize && !t->dequantize == !t->dot);
    }
    CHECK(qf_qtype_by_name("Q4_k") == qf_qtype_get(QF_T_Q4_K) && qf_qtype_by_name("BF16") == qf_qtype_get(30));
    CHECK(!qf_qtype_by_name("q4_2") && !qf_qtype_by_name("") && !qf_qtype_by_name(NULL));

    uint64_t b;
    CHECK(qf_qtype_row_bytes(qf_qtype_get(QF_T_Q4_K), 4096, &b) && b == 16 * 144);
    CHECK(!qf_qtype_row_bytes(qf_qtype_get(QF_T_Q4_K), 4000, &b));
    CHECK(!qf_qtype_row_bytes(qf_qtype_get(QF_T_F64), UINT64_MAX, &b));
    CHECK(!qf_qtype_row_bytes(NULL, 32, &b));
    CHECK(qf_qtype_row_bytes(qf_qtype_get(QF_T_E4M3_ROW), 100, &b) && b == 104);
    CHECK(qf_qtype_row_bytes(qf_qtype_get(QF_T_E4M3_B32), 64, &b) && b == 66);
    CHECK(qf_qtype_row_bytes(qf_qtype_get(QF_T_E4M3_B128), 384, &b) && b == 3 * 132);
    CHECK(!qf_qtype_row_bytes(qf_qtype_get(QF_T_E4M3_B128), 192, &b));
    /* groups of [F32 scale][E4M3 codes]: what an FP8 source's codes and scales pass into */
    CHECK(qf_qtype_e4m3_group(qf_qtype_get(QF_T_E4M3_B128), 384) == 128);
    CHECK(qf_qtype_e4m3_group(qf_qtype_get(QF_T_E4M3_ROW), 100) == 100);
    CHECK(qf_qtype_e4m3_group(qf_qtype_get(QF_T_E4M3_B32), 64) == 0 && qf_qtype_e4m3_group(NULL, 64) == 0);

    qf_isa isa;
    CHECK(qf_isa_parse("AVX2", &isa) && isa == QF_ISA_AVX2 && !qf_isa_parse("sse", &isa));
    CHECK(qf_isa_supported(QF_ISA_SCALAR) && qf_isa_supported(qf_isa_active()));
    const char *env = getenv("QF_ISA");
    if (env && qf_isa_parse(env, &isa) && qf_isa_supported(isa))
        CHECK_MSG(qf_isa_active() == isa, "QF_ISA=%s but active is %s", env, qf_isa_name(qf_isa_active()));
    CHECK(qf_qtype_get_isa(QF_T_Q8_0, QF_ISA_SCALAR)->quantize == qf_qtype_get_isa(QF_T_Q8_0, QF_ISA_SCALAR)->quantize);
}

/* ---- i-quant grids --------------------------------------------------------------------------------- */

/* The searches' form of each grid: every point found again through the lattice map, every lattice point
 * the grid lacks with a non-empty neighbour list, and no list cut short by its pool. */
static void test_iq_grids(void) {
    for (int id = 0; id < QF_IQG_COUNT; id++) {
        const qf_iq_grid *G = qf_iq_grid_get((qf_iq_grid_id)id);
        int cells = 1, bad = 0;
        for (int k = 0; k < G->dim; k++) cells *= G->nlev;
        for (int p = 0; p < G->n; p++) {
            int c = 0, scale = 1;
            for (int k = 0; k < G->dim; k++, scale *= G->nlev) {
                int j = 0;
                while (j < G->nlev && G->lev[j] != G->g[k * G->n + p]) j++;
                c += j * scale;
            }
            bad += c >= cells || G->map[c] != p;
        }
        for (int c = 0; c < cells; c++) {
            bad += (G->in[c / 32] >> c % 32 & 1) != (G->map[c] >= 0);
            bad += G->nb && G->map[c] < 0 && G->nb_off[c + 1] <= G->nb_off[c];
        }
        CHECK_MSG(bad == 0 && G->truncated == 0, "i-quant grid %d: %d bad entries, %u neighbours dropped", id, bad,
                  G->truncated);
    }
}

/* IQ1_S / IQ1_M: under the scale and offset sign each group of 8 was stored with, no other grid point
 * (nor, for IQ1_M, the other sign) has a smaller error. Every alternative is written into the block and
 * dequantized by the library; its error must not be below the stored one beyond rounding. */
static void set_iq1_group(uint32_t id, uint8_t *blk, int g, int p, int neg) {
    if (id == QF_T_IQ1_M) {
        qf_block_iq1_m *b = (qf_block_iq1_m *)blk;
        b->qs[g] = (uint8_t)p;
        unsigned sh = 4 * (g % 2), nib = (unsigned)(p >> 8) | (unsigned)neg << 3;
        b->qh[g / 2] = (uint8_t)((b->qh[g / 2] & ~(0xFu << sh)) | nib << sh);
    } else { /* IQ1_S: the sign is per 32 and stays */
        qf_block_iq1_s *b = (qf_block_iq1_s *)blk;
        b->qs[g] = (uint8_t)p;
        unsigned sh = 3 * (g % 4);
        b->qh[g / 4] = (uint16_t)((b->qh[g / 4] & ~(7u << sh)) | (unsigned)(p >> 8) << sh);
    }
}

static double group_err(const float *x, const float *y, const float *w) {
    double e = 0;
    for (int k = 0; k < 8; k++) e += (w ? w[k] : 1.0) * ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
    return e;
}

static void test_iq1_exact(uint32_t id) {
    enum { NB = 4 };
    const qf_qtype_traits *t = qf_qtype_get_isa(id, QF_ISA_SCALAR);
    float x[NB * 256], w[NB * 256], y[256];
    kd_fill(KD_LLM, 1, NB * 256, base_seed + 77, x);
    kd_imatrix(NB * 256, base_seed + 78, w);
    int bad = 0, nsign = id == QF_T_IQ1_M ? 2 : 1;
    for (int weighted = 0; weighted < 2; weighted++) {
        uint8_t q[NB * 64], blk[64];
        CHECK(t->quantize(x, q, NB * 256, weighted ? w : NULL));
        for (int b = 0; b < NB; b++) {
            const float *xb = x + 256 * b, *wb = weighted ? w + 256 * b : NULL;
            t->dequantize(q + b * t->bytes, y, 256);
            for (int g = 0; g < 32; g++) {
                double e0 = group_err(xb + 8 * g, y + 8 * g, wb ? wb + 8 * g : NULL), emin = e0;
                int pmin = -1, nmin = 0;
                for (int neg = 0; neg < nsign; neg++)
                    for (int p = 0; p < 2048; p++) {
                        memcpy(blk, q + b * t->bytes, t->bytes);
                        set_iq1_group(id, blk, g, p, neg);
                        t->dequantize(blk, y, 256);
                        double e = group_err(xb + 8 * g, y + 8 * g, wb ? wb + 8 * g : NULL);
                        if (e < emin) { emin = e; pmin = p; nmin = neg; }
                    }
                if (emin < e0 * (1 - 1e-5) - 1e-30 && bad++ < 3)
                    fprintf(stderr, "%s %s block %d group %d: point %d sign %d error %.9g < stored %.9g\n", t->name,
                            weighted ? "weighted" : "plain", b, g, pmin, nmin, emin, e0);
                t->dequantize(q + b * t->bytes, y, 256);
            }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d groups have a better grid point under their stored scale", t->name, bad);
}

/* ---- kernels --------------------------------------------------------------------------------------- */

#define ROWS 16
#define COLS 4096

/* Largest relative RMSE (error RMS over signal RMS) each type may show on gaussian / llm data: sanity
 * bounds with some headroom (the real quality bar, RMSE <= ggml's, is checked by test_kernels_ggml.c). */
static double rel_bound(const char *name) {
    static const struct { const char *name; double bound; } b[] = {
        { "f32", 0 }, { "f16", 5e-4 }, { "bf16", 4e-3 }, { "q8_0", 0.015 }, { "q6_K", 0.035 }, { "q5_0", 0.08 },
        { "q5_1", 0.06 }, { "q5_K", 0.05 }, { "q4_0", 0.15 }, { "q4_1", 0.12 }, { "q4_K", 0.12 }, { "mxfp4", 0.15 },
        { "q3_K", 0.2 }, { "q2_K", 0.4 }, { "e4m3_b32", 0.04 }, { "e5m2_b32", 0.08 }, { "e4m3_row", 0.05 },
        { "e4m3_b128", 0.05 },
        { "iq4_nl", 0.12 }, { "iq4_xs", 0.12 }, { "iq3_s", 0.28 }, { "iq3_xxs", 0.32 }, { "iq2_s", 0.55 }, { "iq2_xs", 0.55 },
        { "iq2_xxs", 0.65 }, { "iq1_s", 0.65 }, { "iq1_m", 0.55 },
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(b); i++)
        if (!strcmp(b[i].name, name)) return b[i].bound;
    return 0.5;
}

/* Weighted squared error (imp NULL = 1) and signal energy of a dequantized matrix. */
static double sq_err(const float *x, const float *y, size_t n, const float *imp, double *energy) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double w = imp ? imp[i % COLS] : 1.0, d = (double)x[i] - y[i];
        e += w * d * d;
        s += w * (double)x[i] * x[i];
    }
    if (energy) *energy = s;
    return e;
}

typedef struct ktest {
    const qf_qtype_traits *t;
    size_t rs, qbytes;
    float *x, *y, *imp, *ones;
    uint8_t *q, *q2;
} ktest;

static bool quant(const qf_qtype_traits *t, const ktest *k, const float *x, uint8_t *q, const float *imp) {
    for (int r = 0; r < ROWS; r++)
        if (!t->quantize(x + (size_t)r * COLS, q + (size_t)r * k->rs, COLS, imp)) return false;
    return true;
}

static void dequant(const qf_qtype_traits *t, const ktest *k, const uint8_t *q, float *y) {
    for (int r = 0; r < ROWS; r++) t->dequantize(q + (size_t)r * k->rs, y + (size_t)r * COLS, COLS);
}

/* Dot tolerance (docs/quant-types.md): |dot - exact| <= 1e-4 * sum |w_i x_i| + 1e-30. */
static void check_dot(const qf_qtype_traits *t, const ktest *k, const uint8_t *q, const char *what) {
    int bad = 0;
    for (int r = 0; r < ROWS; r++) {
        const float *a = k->x + (size_t)((r + 1) % ROWS) * COLS; /* another row as activations */
        float *deq = k->y + (size_t)r * COLS;
        t->dequantize(q + (size_t)r * k->rs, deq, COLS);
        double exact = 0, mag = 0;
        for (int i = 0; i < COLS; i++) { exact += (double)deq[i] * a[i]; mag += fabs((double)deq[i] * a[i]); }
        float got = t->dot(q + (size_t)r * k->rs, a, COLS);
        if (!(fabs(got - exact) <= 1e-4 * mag + 1e-30)) {
            if (bad++ < 3) fprintf(stderr, "%s %s row %d: dot %.9g vs %.9g (mag %.3g)\n", t->name, what, r, got, exact, mag);
        }
    }
    CHECK_MSG(bad == 0, "%s %s: %d dot products out of tolerance", t->name, what, bad);
}

static void test_quality(ktest *k, int kind) {
    const qf_qtype_traits *t = k->t;
    size_t n = (size_t)ROWS * COLS;
    CHECK(quant(t, k, k->x, k->q, NULL));
    dequant(t, k, k->q, k->y);
    double energy, e = sq_err(k->x, k->y, n, NULL, &energy);
    double rel = sqrt(e / energy);
    if (kind != KD_ADVERSARIAL)
        CHECK_MSG(rel <= rel_bound(t->name), "%s %s: relative RMSE %.4g > %.4g", t->name, kd_names[kind], rel,
                  rel_bound(t->name));
    /* constant importance: never worse than none (the searches are scale-invariant in the weights) */
    CHECK(quant(t, k, k->x, k->q2, k->ones));
    dequant(t, k, k->q2, k->y);
    double ec = sq_err(k->x, k->y, n, NULL, NULL);
    CHECK_MSG(ec <= e * (1 + 1e-5) + 1e-30, "%s %s: constant weights %.6g vs none %.6g", t->name, kd_names[kind], ec, e);
    /* real importance: the weighted error must drop (or tie, for types with no search) */
    dequant(t, k, k->q, k->y);
    double ew_none = sq_err(k->x, k->y, n, k->imp, NULL);
    CHECK(quant(t, k, k->x, k->q2, k->imp));
    dequant(t, k, k->q2, k->y);
    double ew = sq_err(k->x, k->y, n, k->imp, NULL);
    CHECK_MSG(ew <= ew_none * (1 + 1e-5) + 1e-30, "%s %s: weighted error %.6g with weights > %.6g without",
              t->name, kd_names[kind], ew, ew_none);
    printf("%-9s %-11s rel rmse %.5f  weighted: none %.4e with imp %.4e (%.3f)\n", t->name, kd_names[kind], rel,
           ew_none, ew, ew_none > 0 ? ew / ew_none : 1.0);
    /* determinism */
    CHECK(quant(t, k, k->x, k->q2, NULL));
    CHECK_MSG(memcmp(k->q, k->q2, k->qbytes) == 0, "%s: quantization not deterministic", t->name);
    check_dot(t, k, k->q, kd_names[kind]);
}

static void test_reject(ktest *k) {
    const qf_qtype_traits *t = k->t;
    static const float bad[] = { NAN, INFINITY, -INFINITY };
    for (size_t i = 0; i < QF_ARRAY_LEN(bad); i++) {
        float save = k->x[777];
        k->x[777] = bad[i];
        CHECK_MSG(!t->quantize(k->x, k->q, COLS, NULL) && !t->quantize(k->x, k->q, COLS, k->imp),
                  "%s accepted %g", t->name, bad[i]);
        k->x[777] = save;
    }
}

/* Every SIMD path: identical bytes and floats, dot within tolerance. */
static void test_isas(ktest *k) {
    const qf_qtype_traits *ref = k->t;
    size_t n = (size_t)ROWS * COLS;
    float *y2 = malloc(n * 4);
    for (int isa = QF_ISA_AVX2; isa < QF_ISA_COUNT; isa++) {
        const qf_qtype_traits *t = qf_qtype_get_isa(ref->id, (qf_isa)isa);
        if (!t) { printf("SKIP: %s kernels: CPU lacks %s\n", ref->name, qf_isa_name((qf_isa)isa)); continue; }
        for (int weighted = 0; weighted < 2; weighted++) {
            const float *imp = weighted ? k->imp : NULL;
            CHECK(quant(ref, k, k->x, k->q, imp) && quant(t, k, k->x, k->q2, imp));
            CHECK_MSG(memcmp(k->q, k->q2, k->qbytes) == 0, "%s %s: quantized bytes differ from scalar (%s)",
                      ref->name, qf_isa_name((qf_isa)isa), weighted ? "weighted" : "plain");
        }
        /* dequantize the same blocks, then random bytes (every code, odd scales) */
        for (int pass = 0; pass < 2; pass++) {
            if (pass) { uint64_t rs = base_seed + 99; for (size_t i = 0; i < k->qbytes; i++) k->q[i] = (uint8_t)qf_test_rand(&rs); }
            dequant(ref, k, k->q, k->y);
            dequant(t, k, k->q, y2);
            size_t diff = 0;
            for (size_t i = 0; i < n; i++) diff += !same_float(k->y[i], y2[i]);
            CHECK_MSG(diff == 0, "%s %s: %zu dequantized floats differ (%s blocks)", ref->name,
                      qf_isa_name((qf_isa)isa), diff, pass ? "random" : "quantized");
        }
        CHECK(quant(ref, k, k->x, k->q, NULL));
        check_dot(t, k, k->q, qf_isa_name((qf_isa)isa));
        /* tails: a row length that is not a multiple of any vector width but of the block */
        if (ref->blck <= 32 && COLS > 96) {
            int64_t m = 96 + ref->blck;
            m -= m % ref->blck;
            CHECK(ref->quantize(k->x, k->q, m, NULL) && t->quantize(k->x, k->q2, m, NULL));
            uint64_t rb;
            CHECK(qf_qtype_row_bytes(ref, (uint64_t)m, &rb) && memcmp(k->q, k->q2, rb) == 0);
            ref->dequantize(k->q, k->y, m);
            t->dequantize(k->q, y2, m);
            CHECK(memcmp(k->y, y2, (size_t)m * 4) == 0);
        }
    }
    free(y2);
}

static void test_type(const qf_qtype_traits *t) {
    ktest k = { .t = t };
    uint64_t rs;
    CHECK(qf_qtype_row_bytes(t, COLS, &rs));
    k.rs = (size_t)rs;
    k.qbytes = k.rs * ROWS;
    size_t n = (size_t)ROWS * COLS;
    k.x = malloc(n * 4); k.y = malloc(n * 4); k.imp = malloc(COLS * 4); k.ones = malloc(COLS * 4);
    k.q = malloc(k.qbytes); k.q2 = malloc(k.qbytes);
    kd_imatrix(COLS, base_seed, k.imp);
    for (int i = 0; i < COLS; i++) k.ones[i] = 3.7f;
    for (int kind = 0; kind < KD_COUNT; kind++) {
        kd_fill(kind, ROWS, COLS, base_seed + (uint64_t)kind, k.x);
        test_quality(&k, kind);
        test_isas(&k);
        if (kind == KD_LLM) test_reject(&k);
    }
    free(k.x); free(k.y); free(k.imp); free(k.ones); free(k.q); free(k.q2);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    const char *s = getenv("QF_TEST_SEED");
    if (s) base_seed = strtoull(s, NULL, 10);
    printf("seed %llu, active ISA %s\n", (unsigned long long)base_seed, qf_isa_name(qf_isa_active()));
    test_fpconv();
    test_fprow();
    test_plain_pass();
    test_absmax();
    test_table();
    test_iq_grids();
    test_iq1_exact(QF_T_IQ1_S);
    test_iq1_exact(QF_T_IQ1_M);
    const char *only = getenv("QF_TEST_TYPES");
    for (size_t i = 0; i < qf_qtype_count(); i++) {
        const qf_qtype_traits *t = qf_qtype_get_isa(qf_qtype_at(i)->id, QF_ISA_SCALAR);
        if (t->quantize && (!only || strstr(only, t->name))) test_type(t);
    }
    return qf_test_finish();
}
