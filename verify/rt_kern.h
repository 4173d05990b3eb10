/*
 * rt_kern.h — the runtime's inner loops, one implementation per ISA (internal to verify/).
 *
 * tile: the one matrix kernel. For rows r < mr and token columns t < nt it computes
 *     y[r * ldy + t] = sum_{k < K} w[r * ldw + k] * x[k * ldx + t]
 * as one sequential chain of fused multiply-adds in k order. Every ISA (scalar fmaf included) rounds
 * identically, so the result does not depend on the ISA, the tiling or the thread count. mr may be
 * below QF_RT_MR: the kernel then reads row 0 in place of the missing rows and stores only mr rows, so
 * callers need no padding rows. x and y must hold nt columns (token dimensions are padded to
 * QF_RT_PAD, a multiple of every kernel's nt).
 *
 * vexp: y[i] = e^x[i] for x in [-87, 88] (inputs are clamped to it; below -87 the result is tiny, not 0:
 * callers that mask set zeros themselves). Cephes-style range reduction and polynomial built from
 * separate multiplies and adds in one fixed order, so every ISA returns the same bits; about 1 ulp.
 */
#ifndef QF_VERIFY_RT_KERN_H
#define QF_VERIFY_RT_KERN_H

#include <stddef.h>
#include <stdint.h>

#define QF_RT_MR 6   /* weight rows per tile call */
#define QF_RT_PAD 64 /* token dimensions are padded to this (a multiple of every nt) */

typedef void (*qf_rt_tile_fn)(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y,
                              size_t ldy, int mr);
typedef void (*qf_rt_vexp_fn)(const float *x, float *y, size_t n);

typedef struct qf_rt_kern {
    const char *isa;
    uint32_t nt;       /* token columns per tile call */
    qf_rt_tile_fn tile;
    qf_rt_vexp_fn vexp;
} qf_rt_kern;

/* Kernels of the ISA kernels/cpu.h made active (QF_ISA can force one). */
const qf_rt_kern *qf_rt_kern_active(void);

void qf_rt_tile_scalar(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_scalar(const float *x, float *y, size_t n);
void qf_rt_tile_avx2(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_avx2(const float *x, float *y, size_t n);
void qf_rt_tile_avx512(const float *w, size_t ldw, size_t K, const float *x, size_t ldx, float *y, size_t ldy, int mr);
void qf_rt_vexp_avx512(const float *x, float *y, size_t n);

/* Constants of vexp shared by every variant (Cephes expf). */
#define QF_VEXP_HI 88.0f
#define QF_VEXP_LO (-87.0f)
#define QF_VEXP_LOG2E 1.44269504088896341f
#define QF_VEXP_C1 0.693359375f
#define QF_VEXP_C2 (-2.12194440e-4f)
#define QF_VEXP_P0 1.9875691500e-4f
#define QF_VEXP_P1 1.3981999507e-3f
#define QF_VEXP_P2 8.3334519073e-3f
#define QF_VEXP_P3 4.1665795894e-2f
#define QF_VEXP_P4 1.6666665459e-1f
#define QF_VEXP_P5 5.0000001201e-1f

#endif
