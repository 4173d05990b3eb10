/*
 * cu_common.cuh — what the kernel files share (internal to runtime/cuda/): the CPU's vexp, the pass's
 * column test, the exact tile product, type dispatch.
 */
#ifndef QF_RUNTIME_CUDA_CU_COMMON_CUH
#define QF_RUNTIME_CUDA_CU_COMMON_CUH

#include "runtime/cuda/cu_types.cuh"
extern "C" {
#include "runtime/rt_kern.h"
}

#include <type_traits>

namespace qf_cu {

/* rt_kern_scalar.c's vexp1, operation for operation (the file is compiled without fused multiply-adds,
 * and rintf rounds half to even as nearbyintf does under the default mode): the same bits. */
QF_CU_HD float vexp(float x) {
    if (isnan(x)) return x;
    x = x > QF_VEXP_HI ? QF_VEXP_HI : x < QF_VEXP_LO ? QF_VEXP_LO : x;
    float n = rintf(x * QF_VEXP_LOG2E);
    float r = x - n * QF_VEXP_C1;
    r = r - n * QF_VEXP_C2;
    float p = QF_VEXP_P0;
    p = p * r + QF_VEXP_P1;
    p = p * r + QF_VEXP_P2;
    p = p * r + QF_VEXP_P3;
    p = p * r + QF_VEXP_P4;
    p = p * r + QF_VEXP_P5;
    float z = r * r;
    float e = p * z + r + 1.0f;
    return e * as_float((uint32_t)((int)n + 127) << 23);
}

/* Column c of the pass is a token (not padding between sequences). */
__device__ __forceinline__ bool is_token(const qf_cu_pass &p, uint32_t c) { return c % p.stride < p.len; }

/* ---- the exact tile: 64 x 64 outputs per block of 256 threads ---------------------------------------
 * Each thread holds a 4 x 4 block of outputs, each one accumulator fed one fmaf per input feature in
 * order, so y[r][c] = fmaf(w[r][K-1], x[K-1][c], ... fmaf(w[r][0], x[0][c], 0)): the CPU tile's chain.
 * Weights are decoded element by element (deq) into shared memory 32 features at a time. */
constexpr uint32_t TILE = 64, KC = 32, TILE_THREADS = 256;

template <int T>
__device__ __forceinline__ void mm_tile(const uint8_t *w, uint64_t pitch, uint32_t rows, uint32_t K, const float *x,
                                        size_t ldx, uint32_t cols, float *y, size_t ldy, const float *bias,
                                        const float *colscale, uint32_t r0, uint32_t c0) {
    __shared__ __align__(16) float ws[KC][TILE + 4];
    __shared__ __align__(16) float xs[KC][TILE];
    const uint32_t tid = threadIdx.x, lr = tid % TILE, lk = tid / TILE; /* loading: row/column lr, features lk*8.. */
    const uint32_t tr = tid / 16, tc = tid % 16;                         /* computing: rows tr*4.., columns tc*4.. */
    const uint8_t *wr = r0 + lr < rows ? w + (uint64_t)(r0 + lr) * pitch : nullptr;
    const bool xin = c0 + lr < cols;
    float acc[4][4] = {};
    for (uint32_t k0 = 0; k0 < K; k0 += KC) {
        const uint32_t kn = min(KC, K - k0);
#pragma unroll
        for (uint32_t i = 0; i < 8; i++) {
            uint32_t kk = lk * 8 + i;
            ws[kk][lr] = wr && kk < kn ? deq<T>(wr, k0 + kk) : 0.0f;
            xs[kk][lr] = xin && kk < kn ? x[(size_t)(k0 + kk) * ldx + c0 + lr] : 0.0f;
        }
        __syncthreads();
#pragma unroll 4
        for (uint32_t kk = 0; kk < kn; kk++) {
            float4 a = *reinterpret_cast<const float4 *>(&ws[kk][tr * 4]);
            float4 b = *reinterpret_cast<const float4 *>(&xs[kk][tc * 4]);
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t r = r0 + tr * 4 + i;
        if (r >= rows) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t c = c0 + tc * 4 + j;
            if (c >= cols) continue;
            float v = acc[i][j];
            if (bias) v = v + bias[r];
            if (colscale) v = v * colscale[c];
            y[(size_t)r * ldy + c] = v;
        }
    }
}

/* f(std::integral_constant<int, T>{}) for the runtime type t: one instantiation of f's body per type.
 * False for a type the kernels do not decode (the host never passes one). */
template <class F> inline bool dispatch(uint32_t t, F &&f) {
    switch (t) {
#define QF_CU_CASE(T) \
    case T: f(std::integral_constant<int, T>{}); return true;
        QF_CU_TYPES(QF_CU_CASE)
#undef QF_CU_CASE
    }
    return false;
}

} // namespace qf_cu

#endif
