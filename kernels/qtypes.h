/*
 * qtypes.h — the one table of stored tensor types.
 *
 * Each row describes a type's byte layout (block size in elements, bytes per block) and its kernels.
 * Ids equal ggml's for every type ggml has (so GGUF files interoperate); ids ggml removed are never
 * reused; qforge's extension types take ids from QF_QTYPE_EXT_BASE up (docs/quant-types.md).
 *
 * Kernel contracts (n = elements in the row, a multiple of the block size):
 *   quantize   : x[n] floats -> y (n/blck blocks). imp (nullable) holds n per-column importance
 *                weights (e.g. an imatrix row); NULL means plain round-to-nearest. Returns false and
 *                leaves y undefined if x contains NaN or Inf.
 *   dequantize : x blocks -> y[n] floats.
 *   dot        : sum_i dequant(w)_i * x_i with F32 activations.
 */
#ifndef QF_QTYPES_H
#define QF_QTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum qf_qtype {
    QF_T_F32 = 0, QF_T_F16 = 1, QF_T_Q4_0 = 2, QF_T_Q4_1 = 3,
    QF_T_Q5_0 = 6, QF_T_Q5_1 = 7, QF_T_Q8_0 = 8, QF_T_Q8_1 = 9,
    QF_T_Q2_K = 10, QF_T_Q3_K = 11, QF_T_Q4_K = 12, QF_T_Q5_K = 13, QF_T_Q6_K = 14, QF_T_Q8_K = 15,
    QF_T_IQ2_XXS = 16, QF_T_IQ2_XS = 17, QF_T_IQ3_XXS = 18, QF_T_IQ1_S = 19, QF_T_IQ4_NL = 20,
    QF_T_IQ3_S = 21, QF_T_IQ2_S = 22, QF_T_IQ4_XS = 23,
    QF_T_I8 = 24, QF_T_I16 = 25, QF_T_I32 = 26, QF_T_I64 = 27, QF_T_F64 = 28,
    QF_T_IQ1_M = 29, QF_T_BF16 = 30,
    /* 31-33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) removed by ggml */
    QF_T_TQ1_0 = 34, QF_T_TQ2_0 = 35,
    /* 36-38 (IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8) removed by ggml */
    QF_T_MXFP4 = 39, QF_T_NVFP4 = 40, QF_T_Q1_0 = 41, QF_T_Q2_0 = 42,
    QF_QTYPE_EXT_BASE = 1024, /* qforge extension types start here (docs/quant-types.md) */
    QF_T_E4M3_B32 = QF_QTYPE_EXT_BASE + 0, /* F8 E4M3 + one E8M0 scale per 32 */
    QF_T_E5M2_B32 = QF_QTYPE_EXT_BASE + 1, /* F8 E5M2 + one E8M0 scale per 32 */
    QF_T_E4M3_ROW = QF_QTYPE_EXT_BASE + 2, /* F8 E4M3 + one F32 scale in front of each row */
    QF_T_E4M3_B128 = QF_QTYPE_EXT_BASE + 3, /* F8 E4M3 + one F32 scale per 128 (DeepSeek-V3's FP8 blocks) */
} qf_qtype;

typedef bool  (*qf_quantize_fn)(const float *x, void *y, int64_t n, const float *imp);
typedef void  (*qf_dequantize_fn)(const void *x, float *y, int64_t n);
typedef float (*qf_dot_fn)(const void *w, const float *x, int64_t n);

typedef struct qf_qtype_traits {
    uint32_t id;
    const char *name;       /* canonical spelling, e.g. "q4_K"; lookups are case-insensitive */
    uint32_t blck;          /* elements per block */
    uint32_t bytes;         /* bytes per block */
    bool quantized;         /* false for plain float/int storage types */
    uint32_t row_extra;     /* bytes in front of each row's blocks (a per-row scale); 0 for ggml types */
    uint32_t fallback;      /* the type a tensor takes when its rows do not fit blck; chains end in F16
                               (block 1), which 0 also means here */
    int32_t file_type;      /* llama.cpp's general.file_type (LLAMA_FTYPE_*) for files mostly of this
                               type, or -1: none (extension types, types llama.cpp never writes) */
    bool int8_path;         /* the runtime's 8-bit path decodes its rows to integer levels */
    bool e4m3_groups;       /* rows are groups of [F32 scale s][E4M3 codes q], x = s * e4m3(q): one group per
                               block, or per row where row_extra holds the scale (qf_qtype_e4m3_group). An FP8
                               source's codes and scales pass into such a type unchanged (quantize/plan.c) */
    float max_abs;          /* range: the quantizer stores every finite row with all |x| <= max_abs without
                             * Inf and without clipping (F16 scales bound most types; FLT_MAX: any finite
                             * row). Beyond it a type's F16 scale or value would overflow, so the quantize
                             * path refuses or clamps such rows (quantize/run.c); 0 for types without kernels */
    qf_quantize_fn quantize;
    qf_dequantize_fn dequantize;
    qf_dot_fn dot;
} qf_qtype_traits;

/* Row for a type id, or NULL if the id is unknown or removed. Every current ggml type has a row (so sizes
 * are always known); its kernel pointers are NULL where qforge does not implement that operation. */
const qf_qtype_traits *qf_qtype_get(uint32_t id);
/* Row for a name, case-insensitive ("q4_k" == "Q4_K"), or NULL. */
const qf_qtype_traits *qf_qtype_by_name(const char *name);
/* Number of rows and the i-th row, for listings. */
size_t qf_qtype_count(void);
const qf_qtype_traits *qf_qtype_at(size_t i);
/* Bytes of ONE row of n elements (n = ne[0]; row_extra + n/blck*bytes): multiply by the row count for a
 * tensor, never compute ne/blck*bytes over the whole tensor (per-row types would be wrong). False if n is
 * not a multiple of the block size or on overflow. */
bool qf_qtype_row_bytes(const qf_qtype_traits *t, uint64_t n, uint64_t *bytes);
/* Values per F32 scale of an e4m3_groups type with rows of n elements (the block, or n for a per-row
 * scale); 0 for other types. */
uint64_t qf_qtype_e4m3_group(const qf_qtype_traits *t, uint64_t n);
/* The next type of t's fallback chain (F16 for types without one; F16 itself is its own end). */
uint32_t qf_qtype_fallback(const qf_qtype_traits *t);
/* Largest |x[i]| over a row (NaN elements are skipped; 0 for n = 0). */
float qf_row_absmax(const float *x, int64_t n);
/* True if none of the n stored values of an F32, F16 or BF16 row is NaN or Inf (no exponent field is
 * all ones): the check a row passed through as stored (quantize/run.c) gets instead of the quantizer's.
 * False for any other type. */
bool qf_plain_row_finite(uint32_t type, const void *row, int64_t n);
/* Clamp x[0..n) into [-lim, lim] in place; returns how many elements moved. */
uint64_t qf_row_clamp(float *x, int64_t n, float lim);

#endif
