/*
 * kern.h — declarations of every kernel the traits table points at (internal to kernels/).
 *
 * Naming: qf_<op>_<type>[_<isa>]. Scalar functions (no suffix) are the reference: they define the
 * bytes. SIMD variants must produce byte-identical quantized blocks and dequantized floats; their dot
 * products may differ from the scalar one only by summation order (tolerance in docs/quant-types.md).
 */
#ifndef QF_KERNELS_KERN_H
#define QF_KERNELS_KERN_H

#include "kernels/blocks.h"
#include "kernels/qtypes.h"

/* The kernels of one type on one ISA; NULL means "use the next lower ISA's". */
typedef struct qf_kernels {
    qf_quantize_fn quantize;
    qf_dequantize_fn dequantize;
    qf_dot_fn dot;
} qf_kernels;

/* True if every x[i] is finite (the quantize contract rejects NaN and Inf). */
bool qf_all_finite(const float *x, int64_t n);

#define QF_DECLARE_KERNELS(T, SUFFIX) \
    bool qf_quantize_##T##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    void qf_dequantize_##T##SUFFIX(const void *x, float *y, int64_t n); \
    float qf_dot_##T##SUFFIX(const void *w, const float *x, int64_t n);

QF_DECLARE_KERNELS(f32, )
QF_DECLARE_KERNELS(f16, )
QF_DECLARE_KERNELS(bf16, )
QF_DECLARE_KERNELS(q4_0, )
QF_DECLARE_KERNELS(q4_1, )
QF_DECLARE_KERNELS(q5_0, )
QF_DECLARE_KERNELS(q5_1, )
QF_DECLARE_KERNELS(q8_0, )
QF_DECLARE_KERNELS(q2_K, )
QF_DECLARE_KERNELS(q3_K, )
QF_DECLARE_KERNELS(q4_K, )
QF_DECLARE_KERNELS(q5_K, )
QF_DECLARE_KERNELS(q6_K, )
QF_DECLARE_KERNELS(mxfp4, )
QF_DECLARE_KERNELS(iq4_nl, )
QF_DECLARE_KERNELS(iq4_xs, )
QF_DECLARE_KERNELS(iq3_xxs, )
QF_DECLARE_KERNELS(iq3_s, )
QF_DECLARE_KERNELS(iq2_xxs, )
QF_DECLARE_KERNELS(iq2_xs, )
QF_DECLARE_KERNELS(iq2_s, )
QF_DECLARE_KERNELS(iq1_s, )
QF_DECLARE_KERNELS(iq1_m, )
QF_DECLARE_KERNELS(e4m3_b32, )
QF_DECLARE_KERNELS(e5m2_b32, )
QF_DECLARE_KERNELS(e4m3_row, )
QF_DECLARE_KERNELS(e4m3_b128, )

/* e4m3_b128 through a given e4m3_row kernel, block by block (k_fp8.c): every ISA's e4m3_b128 is its
 * e4m3_row's, so the two types agree byte for byte on each ISA. */
bool qf_e4m3_b128_quantize_by(qf_quantize_fn row, const float *x, void *y, int64_t n, const float *imp);
void qf_e4m3_b128_dequantize_by(qf_dequantize_fn row, const void *x, float *y, int64_t n);
float qf_e4m3_b128_dot_by(qf_dot_fn row, const void *w, const float *x, int64_t n);

/* The integer-code quantizers compiled once per ISA from quant_body.h (suffix "" = scalar reference). */
#define QF_DECLARE_QUANT(SUFFIX) \
    bool qf_quantize_q8_0_w##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q4_0##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q4_1##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q5_0##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q5_1##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q2_K##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q3_K##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q4_K##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q5_K##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_q6_K##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_mxfp4##SUFFIX(const float *x, void *y, int64_t n, const float *imp);
/* The i-quant quantizers compiled once per ISA from iq_body.h (suffix "" = scalar reference). */
#define QF_DECLARE_IQUANT(SUFFIX) \
    bool qf_quantize_iq4_nl##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq4_xs##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq3_xxs##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq3_s##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq2_xxs##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq2_xs##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq2_s##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq1_s##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_iq1_m##SUFFIX(const float *x, void *y, int64_t n, const float *imp);
/* Weighted Q8_0 (imp must not be NULL; qf_quantize_q8_0 routes weighted calls here). */
bool qf_quantize_q8_0_w(const float *x, void *y, int64_t n, const float *imp);

/* FP8 32-blocks: exponent byte for a block's largest magnitude (smallest scale without saturation), and
 * the scale 2^(e-127) of an exponent byte (NaN for 255). Shared so SIMD paths pick identical scales. */
uint8_t qf_fp8_b32_exponent(float amax, bool e4m3);
float qf_e8m0_scale(uint8_t e);

#if defined(__x86_64__)
#define QF_HAVE_X86_SIMD 1
#define QF_DECLARE_SIMD(SUFFIX) \
    bool qf_quantize_q8_0##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    void qf_dequantize_q8_0##SUFFIX(const void *x, float *y, int64_t n); \
    float qf_dot_q8_0##SUFFIX(const void *w, const float *x, int64_t n); \
    float qf_dot_q4_K##SUFFIX(const void *w, const float *x, int64_t n); \
    float qf_dot_q6_K##SUFFIX(const void *w, const float *x, int64_t n); \
    bool qf_quantize_f16##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    bool qf_quantize_bf16##SUFFIX(const float *x, void *y, int64_t n, const float *imp); \
    QF_DECLARE_KERNELS(e4m3_b32, SUFFIX) \
    QF_DECLARE_KERNELS(e5m2_b32, SUFFIX) \
    QF_DECLARE_KERNELS(e4m3_row, SUFFIX) \
    QF_DECLARE_KERNELS(e4m3_b128, SUFFIX)
QF_DECLARE_SIMD(_avx2)
QF_DECLARE_QUANT(_avx2)
QF_DECLARE_IQUANT(_avx2)
float qf_dot_q8_0_avx512(const void *w, const float *x, int64_t n);
float qf_dot_q4_K_avx512(const void *w, const float *x, int64_t n);
float qf_dot_q6_K_avx512(const void *w, const float *x, int64_t n);
float qf_dot_e4m3_b32_avx512(const void *w, const float *x, int64_t n);
float qf_dot_e5m2_b32_avx512(const void *w, const float *x, int64_t n);
float qf_dot_e4m3_row_avx512(const void *w, const float *x, int64_t n);
float qf_dot_e4m3_b128_avx512(const void *w, const float *x, int64_t n);
#endif

#endif
