/*
 * qtypes.c — the traits table: one row per stored type, in id order.
 *
 * A row holds the layout (block size, bytes per block), the type's facts for the stages above (its
 * fallback when rows do not fit its blocks, llama.cpp's file type for it, whether the runtime's 8-bit
 * path takes it, the range it stores), the scalar reference kernels, and optional SIMD kernels per ISA.
 * Adding a type means one row here plus its kernel functions. Sizes come from the block structs, whose
 * sizes blocks.h pins with _Static_assert; types qforge has no kernels for (IQ*, TQ*, NVFP4, ...) still
 * get their ggml sizes so files holding them can be sized and copied.
 *
 * At first use the table is expanded into one traits array per ISA (SIMD pointers fall back to the
 * next lower ISA where a row has none) and the active ISA is chosen (kernels/cpu.h).
 */
#include "kernels/cpu.h"
#include "kernels/fpconv.h"
#include "kernels/kern.h"
#include "qf_core.h"

#include <float.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <math.h>

typedef struct qf_qtype_row {
    qf_qtype_traits t;            /* layout + scalar reference kernels */
    qf_kernels simd[QF_ISA_COUNT]; /* [QF_ISA_AVX2], [QF_ISA_AVX512]; [QF_ISA_SCALAR] unused */
} qf_qtype_row;

#define SCALAR(T) .quantize = qf_quantize_##T, .dequantize = qf_dequantize_##T, .dot = qf_dot_##T
#if QF_HAVE_X86_SIMD
/* SIMD kernels of a row: AVX2's, and the AVX-512 dot product where there is one. */
#define AVX2(...) .simd = { [QF_ISA_AVX2] = { __VA_ARGS__ } }
#define AVX2_512(T, ...) .simd = { [QF_ISA_AVX2] = { __VA_ARGS__ }, [QF_ISA_AVX512] = { .dot = qf_dot_##T##_avx512 } }
/* The AVX2 build of quant_body.h's quantizer (AVX-512 inherits it), plus AVX2 extras and the AVX-512 dot. */
#define QUANT(T) .simd = { [QF_ISA_AVX2] = { .quantize = qf_quantize_##T##_avx2 } }
#define QUANT_DOT(T, ...) .simd = { [QF_ISA_AVX2] = { .quantize = qf_quantize_##T##_avx2, __VA_ARGS__ }, \
                                    [QF_ISA_AVX512] = { .dot = qf_dot_##T##_avx512 } }
#else
#define AVX2(...) .simd = { { 0 } }
#define AVX2_512(T, ...) .simd = { { 0 } }
#define QUANT(T) .simd = { { 0 } }
#define QUANT_DOT(T, ...) .simd = { { 0 } }
#endif
#define PLAIN(ID, NAME, BYTES) { .t = { .id = (ID), .name = (NAME), .blck = 1, .bytes = (BYTES), .file_type = -1 } }
/* A ggml type qforge has no kernels for: sizes only (values from ggml-common.h's static_asserts). */
#define SIZED(ID, NAME, BLCK, BYTES) \
    { .t = { .id = (ID), .name = (NAME), .blck = (BLCK), .bytes = (BYTES), .quantized = true, .file_type = -1 } }

/* Ranges (max_abs). F16 scales: a legacy block's scale is amax over its largest code (8, 16, 127; the
 * affine types also store their min as F16); a K-quant's F16 super-scale d times its largest scale code
 * bounds the sub-block scales (|s| <= amax for the symmetric fits: 32 for Q3_K, 128 for Q6_K), and d_min
 * times the largest min code the mins (15, 63). BF16: its largest finite value (larger ones round to
 * Inf). E8M0 scales (FP8, MXFP4): any |x| below 2^127 dequantizes finite even after rounding up. */
#define BF16_MAX 0x1.fep127f
#define MX_MAX 0x1p127f
/* The grid i-quants (IQ3_*, IQ2_*): the F16 super-scale is at least amax over (top grid value x largest
 * scale factor) less the slack of the sub-block starts (+-20%) and refits; half that product, over every
 * grid type (IQ2: 43 x 3.875 / 2 > 64), leaves the room. Larger scales saturate rather than overflow. */
#define IQ_MAX (64 * QF_F16_MAX)
/* IQ1_S / IQ1_M: the same for their largest value 15 x (1 + 1/8) */
#define IQ1_MAX (8 * QF_F16_MAX)

static const qf_qtype_row rows[] = {
    { .t = { .id = QF_T_F32, .name = "f32", .blck = 1, .bytes = 4, .file_type = 0, .max_abs = FLT_MAX, SCALAR(f32) } },
    { .t = { .id = QF_T_F16, .name = "f16", .blck = 1, .bytes = 2, .file_type = 1, .max_abs = QF_F16_MAX, SCALAR(f16) },
      AVX2(.quantize = qf_quantize_f16_avx2) },
    { .t = { .id = QF_T_Q4_0, .name = "q4_0", .blck = QF_QK, .bytes = sizeof(qf_block_q4_0), .quantized = true,
             .file_type = 2, .max_abs = 8 * QF_F16_MAX, SCALAR(q4_0) }, QUANT(q4_0) },
    { .t = { .id = QF_T_Q4_1, .name = "q4_1", .blck = QF_QK, .bytes = sizeof(qf_block_q4_1), .quantized = true,
             .file_type = 3, .max_abs = QF_F16_MAX, SCALAR(q4_1) }, QUANT(q4_1) },
    { .t = { .id = QF_T_Q5_0, .name = "q5_0", .blck = QF_QK, .bytes = sizeof(qf_block_q5_0), .quantized = true,
             .file_type = 8, .max_abs = 16 * QF_F16_MAX, SCALAR(q5_0) }, QUANT(q5_0) },
    { .t = { .id = QF_T_Q5_1, .name = "q5_1", .blck = QF_QK, .bytes = sizeof(qf_block_q5_1), .quantized = true,
             .file_type = 9, .max_abs = QF_F16_MAX, SCALAR(q5_1) }, QUANT(q5_1) },
    { .t = { .id = QF_T_Q8_0, .name = "q8_0", .blck = QF_QK, .bytes = sizeof(qf_block_q8_0),
             .quantized = true, .file_type = 7, .int8_path = true, .max_abs = 127 * QF_F16_MAX, SCALAR(q8_0) },
      QUANT_DOT(q8_0, .dequantize = qf_dequantize_q8_0_avx2, .dot = qf_dot_q8_0_avx2) },
    SIZED(QF_T_Q8_1, "q8_1", QF_QK, sizeof(qf_block_q8_1)),
    { .t = { .id = QF_T_Q2_K, .name = "q2_K", .blck = QF_QK_K, .bytes = sizeof(qf_block_q2_K), .quantized = true,
             .file_type = 10, .fallback = QF_T_Q4_0, .max_abs = 15 * QF_F16_MAX, SCALAR(q2_K) }, QUANT(q2_K) },
    { .t = { .id = QF_T_Q3_K, .name = "q3_K", .blck = QF_QK_K, .bytes = sizeof(qf_block_q3_K), .quantized = true,
             .file_type = 12, .fallback = QF_T_Q4_0, .max_abs = 32 * QF_F16_MAX, SCALAR(q3_K) }, QUANT(q3_K) },
    { .t = { .id = QF_T_Q4_K, .name = "q4_K", .blck = QF_QK_K, .bytes = sizeof(qf_block_q4_K), .quantized = true,
             .file_type = 15, .fallback = QF_T_Q5_0, .int8_path = true, .max_abs = 63 * QF_F16_MAX, SCALAR(q4_K) },
      QUANT_DOT(q4_K, .dot = qf_dot_q4_K_avx2) },
    { .t = { .id = QF_T_Q5_K, .name = "q5_K", .blck = QF_QK_K, .bytes = sizeof(qf_block_q5_K), .quantized = true,
             .file_type = 17, .fallback = QF_T_Q5_1, .max_abs = 63 * QF_F16_MAX, SCALAR(q5_K) }, QUANT(q5_K) },
    { .t = { .id = QF_T_Q6_K, .name = "q6_K", .blck = QF_QK_K, .bytes = sizeof(qf_block_q6_K), .quantized = true,
             .file_type = 18, .fallback = QF_T_Q8_0, .int8_path = true, .max_abs = 128 * QF_F16_MAX, SCALAR(q6_K) },
      QUANT_DOT(q6_K, .dot = qf_dot_q6_K_avx2) },
    SIZED(QF_T_Q8_K, "q8_K", QF_QK_K, sizeof(qf_block_q8_K)),
    { .t = { .id = QF_T_IQ2_XXS, .name = "iq2_xxs", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq2_xxs), .quantized = true,
             .file_type = 19, .fallback = QF_T_IQ4_NL, .max_abs = IQ_MAX, SCALAR(iq2_xxs) }, QUANT(iq2_xxs) },
    { .t = { .id = QF_T_IQ2_XS, .name = "iq2_xs", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq2_xs), .quantized = true,
             .file_type = 20, .fallback = QF_T_IQ4_NL, .max_abs = IQ_MAX, SCALAR(iq2_xs) }, QUANT(iq2_xs) },
    { .t = { .id = QF_T_IQ3_XXS, .name = "iq3_xxs", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq3_xxs), .quantized = true,
             .file_type = 23, .fallback = QF_T_IQ4_NL, .max_abs = IQ_MAX, SCALAR(iq3_xxs) }, QUANT(iq3_xxs) },
    { .t = { .id = QF_T_IQ1_S, .name = "iq1_s", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq1_s), .quantized = true,
             .file_type = 24, .fallback = QF_T_IQ4_NL, .max_abs = IQ1_MAX, SCALAR(iq1_s) }, QUANT(iq1_s) },
    { .t = { .id = QF_T_IQ4_NL, .name = "iq4_nl", .blck = QF_QK, .bytes = sizeof(qf_block_iq4_nl), .quantized = true,
             .file_type = 25, .max_abs = 113 * QF_F16_MAX, SCALAR(iq4_nl) }, QUANT(iq4_nl) },
    { .t = { .id = QF_T_IQ3_S, .name = "iq3_s", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq3_s), .quantized = true,
             .file_type = 26, .fallback = QF_T_IQ4_NL, .max_abs = IQ_MAX, SCALAR(iq3_s) }, QUANT(iq3_s) },
    { .t = { .id = QF_T_IQ2_S, .name = "iq2_s", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq2_s), .quantized = true,
             .file_type = 28, .fallback = QF_T_IQ4_NL, .max_abs = IQ_MAX, SCALAR(iq2_s) }, QUANT(iq2_s) },
    { .t = { .id = QF_T_IQ4_XS, .name = "iq4_xs", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq4_xs), .quantized = true,
             .file_type = 30, .fallback = QF_T_IQ4_NL, .max_abs = 31 * 113 * QF_F16_MAX, SCALAR(iq4_xs) }, QUANT(iq4_xs) },
    PLAIN(QF_T_I8, "i8", 1),
    PLAIN(QF_T_I16, "i16", 2),
    PLAIN(QF_T_I32, "i32", 4),
    PLAIN(QF_T_I64, "i64", 8),
    PLAIN(QF_T_F64, "f64", 8),
    { .t = { .id = QF_T_IQ1_M, .name = "iq1_m", .blck = QF_QK_K, .bytes = sizeof(qf_block_iq1_m), .quantized = true,
             .file_type = 31, .fallback = QF_T_IQ4_NL, .max_abs = IQ1_MAX, SCALAR(iq1_m) }, QUANT(iq1_m) },
    { .t = { .id = QF_T_BF16, .name = "bf16", .blck = 1, .bytes = 2,
             .file_type = 32, .max_abs = BF16_MAX, SCALAR(bf16) },
      AVX2(.quantize = qf_quantize_bf16_avx2) },
    SIZED(QF_T_TQ1_0, "tq1_0", QF_QK_K, 54),
    SIZED(QF_T_TQ2_0, "tq2_0", QF_QK_K, 66),
    { .t = { .id = QF_T_MXFP4, .name = "mxfp4", .blck = QF_QK, .bytes = sizeof(qf_block_mxfp4), .quantized = true,
             .file_type = 38, .max_abs = MX_MAX, SCALAR(mxfp4) }, QUANT(mxfp4) },
    SIZED(QF_T_NVFP4, "nvfp4", 64, 36),
    SIZED(QF_T_Q1_0, "q1_0", 128, 18),
    SIZED(QF_T_Q2_0, "q2_0", 64, 18),
    /* qforge extensions (docs/quant-types.md) */
    { .t = { .id = QF_T_E4M3_B32, .name = "e4m3_b32", .blck = QF_QK, .bytes = sizeof(qf_block_fp8_b32),
             .quantized = true, .file_type = -1, .max_abs = MX_MAX, SCALAR(e4m3_b32) },
      AVX2_512(e4m3_b32, qf_quantize_e4m3_b32_avx2, qf_dequantize_e4m3_b32_avx2, qf_dot_e4m3_b32_avx2) },
    { .t = { .id = QF_T_E5M2_B32, .name = "e5m2_b32", .blck = QF_QK, .bytes = sizeof(qf_block_fp8_b32),
             .quantized = true, .file_type = -1, .max_abs = MX_MAX, SCALAR(e5m2_b32) },
      AVX2_512(e5m2_b32, qf_quantize_e5m2_b32_avx2, qf_dequantize_e5m2_b32_avx2, qf_dot_e5m2_b32_avx2) },
    { .t = { .id = QF_T_E4M3_ROW, .name = "e4m3_row", .blck = 1, .bytes = 1, .row_extra = sizeof(float),
             .quantized = true, .file_type = -1, .e4m3_groups = true, .max_abs = MX_MAX, SCALAR(e4m3_row) },
      AVX2_512(e4m3_row, qf_quantize_e4m3_row_avx2, qf_dequantize_e4m3_row_avx2, qf_dot_e4m3_row_avx2) },
    /* rows that do not fit 128 fall back to the 32-blocks the fp8 recipes ask for */
    { .t = { .id = QF_T_E4M3_B128, .name = "e4m3_b128", .blck = QF_QK_B128, .bytes = sizeof(qf_block_e4m3_b128),
             .quantized = true, .fallback = QF_T_E4M3_B32, .file_type = -1, .e4m3_groups = true, .max_abs = MX_MAX,
             SCALAR(e4m3_b128) },
      AVX2_512(e4m3_b128, qf_quantize_e4m3_b128_avx2, qf_dequantize_e4m3_b128_avx2, qf_dot_e4m3_b128_avx2) },
};

#define NROWS QF_ARRAY_LEN(rows)

static qf_qtype_traits tables[QF_ISA_COUNT][NROWS];
static qf_isa active_isa = QF_ISA_SCALAR;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Fill the per-ISA tables: each ISA starts from the one below it and takes the row's own kernels. */
static void build_tables(void) {
    for (size_t i = 0; i < NROWS; i++) {
        tables[QF_ISA_SCALAR][i] = rows[i].t;
        for (int isa = QF_ISA_AVX2; isa < QF_ISA_COUNT; isa++) {
            qf_qtype_traits t = tables[isa - 1][i];
            const qf_kernels *k = &rows[i].simd[isa];
            if (k->quantize) t.quantize = k->quantize;
            if (k->dequantize) t.dequantize = k->dequantize;
            if (k->dot) t.dot = k->dot;
            tables[isa][i] = t;
        }
    }
}

/* The best supported ISA, lowered to what QF_ISA asks for. */
static qf_isa choose_isa(void) {
    qf_isa best = QF_ISA_SCALAR;
    for (int isa = QF_ISA_AVX2; isa < QF_ISA_COUNT; isa++)
        if (qf_isa_supported((qf_isa)isa)) best = (qf_isa)isa;
    const char *env = getenv("QF_ISA");
    if (!env || !*env) return best;
    qf_isa want;
    if (!qf_isa_parse(env, &want)) {
        fprintf(stderr, "qforge: QF_ISA=%s is not scalar|avx2|avx512; using %s\n", env, qf_isa_name(best));
        return best;
    }
    if (want > best) {
        fprintf(stderr, "qforge: QF_ISA=%s is not supported by this CPU; using %s\n", env, qf_isa_name(best));
        return best;
    }
    return want;
}

static void init_tables(void) {
    build_tables();
    active_isa = choose_isa();
}

static void ensure_init(void) { pthread_once(&init_once, init_tables); }

qf_isa qf_isa_active(void) {
    ensure_init();
    return active_isa;
}

static const qf_qtype_traits *find_in(const qf_qtype_traits *table, uint32_t id) {
    for (size_t i = 0; i < NROWS; i++)
        if (table[i].id == id) return &table[i];
    return NULL;
}

const qf_qtype_traits *qf_qtype_get_isa(uint32_t id, qf_isa isa) {
    if ((int)isa < 0 || isa >= QF_ISA_COUNT || !qf_isa_supported(isa)) return NULL;
    ensure_init();
    return find_in(tables[isa], id);
}

const qf_qtype_traits *qf_qtype_get(uint32_t id) {
    ensure_init();
    return find_in(tables[active_isa], id);
}

const qf_qtype_traits *qf_qtype_by_name(const char *name) {
    if (!name) return NULL;
    ensure_init();
    for (size_t i = 0; i < NROWS; i++)
        if (strcasecmp(tables[active_isa][i].name, name) == 0) return &tables[active_isa][i];
    return NULL;
}

size_t qf_qtype_count(void) { return NROWS; }

const qf_qtype_traits *qf_qtype_at(size_t i) {
    if (i >= NROWS) return NULL;
    ensure_init();
    return &tables[active_isa][i];
}

uint64_t qf_qtype_e4m3_group(const qf_qtype_traits *t, uint64_t n) {
    return !t || !t->e4m3_groups ? 0 : t->row_extra ? n : t->blck;
}

uint32_t qf_qtype_fallback(const qf_qtype_traits *t) { return t->fallback ? t->fallback : QF_T_F16; }

bool qf_qtype_row_bytes(const qf_qtype_traits *t, uint64_t n, uint64_t *bytes) {
    if (!t || t->blck == 0 || n % t->blck != 0) return false;
    uint64_t body;
    return qf_mul_ok(n / t->blck, t->bytes, &body) && qf_add_ok(body, t->row_extra, bytes);
}

/* On the bits: the magnitude of a float that is not NaN orders as its bits without the sign, and a NaN's
 * lie above Inf's, so they are zeroed (skipped: the quantizers refuse them). An integer maximum over lanes
 * of its own vectorizes at the baseline ISA; a float one that skips NaN compiled to one scalar max per
 * element (a tenth of an I/O-bound conversion's CPU). The maximum is exact whatever the order. */
float qf_row_absmax(const float *x, int64_t n) {
    enum { LANES = 16 };
    int32_t lane[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            int32_t u;
            memcpy(&u, x + i + l, sizeof u);
            u &= 0x7FFFFFFF;
            u = u > 0x7F800000 ? 0 : u;
            lane[l] = u > lane[l] ? u : lane[l];
        }
    int32_t top = 0;
    for (; i < n; i++) {
        int32_t u;
        memcpy(&u, x + i, sizeof u);
        u &= 0x7FFFFFFF;
        u = u > 0x7F800000 ? 0 : u;
        top = u > top ? u : top;
    }
    for (int l = 0; l < LANES; l++) top = lane[l] > top ? lane[l] : top;
    float a;
    memcpy(&a, &top, sizeof a);
    return a;
}

/* An OR over the row instead of an early exit: one branch-free pass the compiler vectorizes, and a
 * non-finite value is the rare case that may cost the whole row. */
bool qf_plain_row_finite(uint32_t type, const void *row, int64_t n) {
    const uint8_t *p = row;
    uint32_t bad = 0;
    if (type == QF_T_F32) {
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            bad |= (v & 0x7F800000u) == 0x7F800000u;
        }
        return !bad;
    }
    if (type != QF_T_F16 && type != QF_T_BF16) return false;
    uint16_t exp = type == QF_T_F16 ? 0x7C00 : 0x7F80;
    for (int64_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        bad |= (v & exp) == exp;
    }
    return !bad;
}

uint64_t qf_row_clamp(float *x, int64_t n, float lim) {
    uint64_t moved = 0;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > lim) { x[i] = lim; moved++; }
        else if (x[i] < -lim) { x[i] = -lim; moved++; }
    }
    return moved;
}
