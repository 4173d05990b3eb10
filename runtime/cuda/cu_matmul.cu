/* cu_matmul.cu — products over stored weights (cu_kernels.h): the exact tiled product, the warp-per-row
 * GEMV for a few columns, the expert-grouped product, and attention's two products around its softmax. */
#include "runtime/cuda/cu_common.cuh"

namespace qf_cu {

/* ---- the exact tiled product ------------------------------------------------------------------------ */

template <int T>
__global__ void __launch_bounds__(TILE_THREADS) mm_kernel(qf_cu_mat w, uint32_t rows, uint32_t K, const float *x,
                                                          size_t ldx, uint32_t cols, float *y, size_t ldy,
                                                          const float *bias) {
    mm_tile<T>(w.data, w.pitch, rows, K, x, ldx, cols, y, ldy, bias, nullptr, blockIdx.y * TILE, blockIdx.x * TILE);
}

template <int T>
__global__ void __launch_bounds__(TILE_THREADS) mm_grouped_kernel(const qf_cu_mat *w, uint32_t rows, uint32_t K,
                                                                  const float *x, size_t ldx, const qf_cu_task *tasks,
                                                                  float *y, size_t ldy) {
    const qf_cu_task t = tasks[blockIdx.x];
    const qf_cu_mat m = w[t.expert];
    mm_tile<T>(m.data, m.pitch, rows, K, x + t.col0, ldx, t.n, y + t.col0, ldy, nullptr, nullptr, blockIdx.y * TILE, 0);
}

/* ---- GEMV: one row per warp (or per 2 or 4 warps when there are few rows) ----------------------------- */

constexpr uint32_t GEMV_WARPS = 4;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

/* xt: the NC columns token-major, xs floats apart (a multiple of 4, zeros past `cols`). wpr warps share a
 * row, each taking every wpr-th stretch of 32 units. */
template <int T, int NC>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(qf_cu_mat w, uint32_t rows, uint32_t K, const float *xt,
                                                               uint32_t xs, uint32_t cols, float *y, size_t ldy,
                                                               const float *bias, uint32_t wpr) {
    __shared__ float part[GEMV_WARPS][NC];
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t row = blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr, share = warp % wpr;
    float acc[NC] = {};
    if (row < rows) {
        const uint8_t *wr = w.data + (uint64_t)row * w.pitch;
        const uint32_t units = K / 8;
#pragma unroll 2
        for (uint32_t u = share * 32 + lane; u < units; u += 32 * wpr) {
            float wv[8];
            uint32_t b0, b1;
            Unit<T>::load(wr, u, wv, &b0, &b1);
#pragma unroll
            for (int t = 0; t < NC; t++) {
                const float4 a = *reinterpret_cast<const float4 *>(xt + (size_t)t * xs + b0);
                const float4 b = *reinterpret_cast<const float4 *>(xt + (size_t)t * xs + b1);
                float s = acc[t];
                s = fmaf(wv[0], a.x, s), s = fmaf(wv[1], a.y, s), s = fmaf(wv[2], a.z, s), s = fmaf(wv[3], a.w, s);
                s = fmaf(wv[4], b.x, s), s = fmaf(wv[5], b.y, s), s = fmaf(wv[6], b.z, s), s = fmaf(wv[7], b.w, s);
                acc[t] = s;
            }
        }
        for (uint32_t k = units * 8 + share * 32 + lane; k < K; k += 32 * wpr) {
            const float v = deq<T>(wr, k);
#pragma unroll
            for (int t = 0; t < NC; t++) acc[t] = fmaf(v, xt[(size_t)t * xs + k], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NC; t++) acc[t] = warp_sum(acc[t]);
    if (lane == 0)
#pragma unroll
        for (int t = 0; t < NC; t++) part[warp][t] = acc[t];
    __syncthreads();
    if (lane || share || row >= rows) return;
    for (uint32_t t = 0; t < NC && t < cols; t++) {
        float v = part[warp][t];
        for (uint32_t p = 1; p < wpr; p++) v += part[warp + p][t];
        if (bias) v = v + bias[row];
        y[(size_t)row * ldy + t] = v;
    }
}

/* xt[t][k] = x[k][t] for t < cols, 0 for cols <= t < nc */
__global__ void pack_kernel(const float *x, size_t ldx, uint32_t K, uint32_t cols, uint32_t nc, float *xt, uint32_t xs) {
    uint32_t k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) return;
    for (uint32_t t = 0; t < nc; t++) xt[(size_t)t * xs + k] = t < cols ? x[(size_t)k * ldx + t] : 0.0f;
}

template <int T, int NC>
void launch_gemv(cudaStream_t s, const qf_cu_mat &w, uint32_t rows, uint32_t K, const float *xt, uint32_t xs,
                 uint32_t cols, float *y, size_t ldy, const float *bias) {
    /* enough warps in flight: a row per warp from 8192 rows, else 2 or 4 warps per row */
    const uint32_t wpr = rows >= 8192 ? 1 : rows >= 4096 ? 2 : 4, per_block = GEMV_WARPS / wpr;
    gemv_kernel<T, NC><<<(rows + per_block - 1) / per_block, GEMV_WARPS * 32, 0, s>>>(w, rows, K, xt, xs, cols, y, ldy,
                                                                                        bias, wpr);
}

/* ---- attention ----------------------------------------------------------------------------------------- */

/* A task: 64 queries (or fewer at the end) of one head of one sequence, and the keys they see. */
struct attn_task {
    uint32_t seq, head, t0, n, n_keys;
};

__device__ __forceinline__ attn_task task_of(const qf_cu_attn &a, const qf_cu_pass &p, uint32_t i) {
    const uint32_t tiles = (p.len + TILE - 1) / TILE;
    attn_task t;
    t.seq = i / (a.n_head * tiles);
    t.head = i / tiles % a.n_head;
    t.t0 = i % tiles * TILE;
    t.n = min(TILE, p.len - t.t0);
    t.n_keys = p.pos0 + t.t0 + t.n;
    return t;
}

/* scores[p][j] = k_p . q_j, keys p < n_keys, from the sequence's cache slot */
__global__ void __launch_bounds__(TILE_THREADS) attn_scores(qf_cu_attn a, qf_cu_pass p, uint32_t t0, float *sc,
                                                            uint32_t keys) {
    const attn_task t = task_of(a, p, t0 + blockIdx.y);
    if (blockIdx.x * TILE >= t.n_keys) return;
    const uint32_t g = t.head / (a.n_head / a.n_head_kv);
    const float *kh = a.kc + ((size_t)g * a.kv_len + (size_t)t.seq * a.n_ctx) * a.dk;
    const float *q = a.q + (size_t)t.head * a.dk * a.ld + (size_t)t.seq * p.stride + t.t0;
    mm_tile<QF_CU_F32>(reinterpret_cast<const uint8_t *>(kh), (uint64_t)a.dk * sizeof(float), t.n_keys, a.dk, q, a.ld,
                       t.n, sc + (size_t)blockIdx.y * keys * TILE, TILE, nullptr, nullptr, blockIdx.x * TILE, 0);
}

/* The CPU's causal softmax (rt_kern.h), one thread per query column: scores scaled, the largest visible
 * one subtracted, vexp, masked keys exactly 0; inv = 1 / sum in double in key order. Unnormalised: the
 * products after it scale by inv. */
__global__ void attn_softmax(qf_cu_attn a, qf_cu_pass p, uint32_t t0, float *sc, float *inv, uint32_t keys) {
    const attn_task t = task_of(a, p, t0 + blockIdx.x);
    const uint32_t j = threadIdx.x;
    if (j >= t.n) return;
    float *s = sc + (size_t)blockIdx.x * keys * TILE + j;
    const uint32_t last = p.pos0 + t.t0 + j; /* the last key query j sees */
    float mx = -INFINITY;
    for (uint32_t k = 0; k <= last; k++) {
        float v = s[(size_t)k * TILE] * a.scale;
        mx = v > mx ? v : mx;
    }
    double sum = 0;
    for (uint32_t k = 0; k < t.n_keys; k++) {
        float e = k <= last ? vexp(s[(size_t)k * TILE] * a.scale - mx) : 0.0f;
        s[(size_t)k * TILE] = e;
        if (k <= last) sum += e;
    }
    inv[(size_t)blockIdx.x * TILE + j] = (float)(1.0 / sum);
}

/* out[d][j] = inv[j] * sum_p v[d][p] e[p][j]: the cached values, or (second) the shared latent v2 read
 * straight from its activation matrix (passes from position 0: key p is column p of the sequence). */
__global__ void __launch_bounds__(TILE_THREADS) attn_values(qf_cu_attn a, qf_cu_pass p, uint32_t t0, const float *sc,
                                                            const float *inv, uint32_t keys, bool second) {
    const attn_task t = task_of(a, p, t0 + blockIdx.y);
    const uint32_t dv = second ? a.dv2 : a.dv, g = t.head / (a.n_head / a.n_head_kv);
    if (blockIdx.x * TILE >= dv) return;
    const float *v;
    uint64_t pitch;
    float *out;
    if (second) {
        v = a.v2 + (size_t)t.seq * p.stride;
        pitch = a.ld * sizeof(float);
        out = a.out2 + (size_t)t.head * a.dv2 * a.ld;
    } else {
        v = a.vc + (size_t)g * a.dv * a.kv_len + (size_t)t.seq * a.n_ctx;
        pitch = a.kv_len * sizeof(float);
        out = a.out + (size_t)t.head * a.dv * a.ld;
    }
    out += (size_t)t.seq * p.stride + t.t0;
    mm_tile<QF_CU_F32>(reinterpret_cast<const uint8_t *>(v), pitch, dv, t.n_keys, sc + (size_t)blockIdx.y * keys * TILE,
                       TILE, t.n, out, a.ld, nullptr, inv + (size_t)blockIdx.y * TILE, blockIdx.x * TILE, 0);
}

/* k and v of the pass into the caches at positions pos0 .. of each sequence's slot */
__global__ void attn_store_kernel(qf_cu_attn a, qf_cu_pass p) {
    const uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, d = blockIdx.y, sg = blockIdx.z;
    const uint32_t s = sg / a.n_head_kv, g = sg % a.n_head_kv;
    if (t >= p.len) return;
    const size_t pos = (size_t)s * a.n_ctx + p.pos0 + t, col = (size_t)s * p.stride + t;
    if (d < a.dk) a.kc[((size_t)g * a.kv_len + pos) * a.dk + d] = a.k[((size_t)g * a.dk + d) * a.ld + col];
    if (d < a.dv) a.vc[((size_t)g * a.dv + d) * a.kv_len + pos] = a.v[((size_t)g * a.dv + d) * a.ld + col];
}

} // namespace qf_cu

using namespace qf_cu;

extern "C" void qf_cu_matmul(cudaStream_t s, const qf_cu_mat *w, uint64_t rows, uint32_t K, const float *x, size_t ldx,
                             size_t cols, float *y, size_t ldy, const float *bias, float *xt) {
    if (!rows || !cols) return;
    if (cols > QF_CU_GEMV_COLS) {
        dim3 grid((unsigned)((cols + TILE - 1) / TILE), (unsigned)((rows + TILE - 1) / TILE));
        dispatch(w->type, [&](auto tag) {
            mm_kernel<decltype(tag)::value><<<grid, TILE_THREADS, 0, s>>>(*w, (uint32_t)rows, K, x, ldx, (uint32_t)cols,
                                                                           y, ldy, bias);
        });
        return;
    }
    const uint32_t nc = cols == 1 ? 1 : cols == 2 ? 2 : cols <= 4 ? 4 : 8, xs = (K + 3) / 4 * 4;
    pack_kernel<<<(K + 255) / 256, 256, 0, s>>>(x, ldx, K, (uint32_t)cols, nc, xt, xs);
    dispatch(w->type, [&](auto tag) {
        constexpr int T = decltype(tag)::value;
        uint32_t r = (uint32_t)rows, c = (uint32_t)cols;
        if (nc == 1) launch_gemv<T, 1>(s, *w, r, K, xt, xs, c, y, ldy, bias);
        else if (nc == 2) launch_gemv<T, 2>(s, *w, r, K, xt, xs, c, y, ldy, bias);
        else if (nc == 4) launch_gemv<T, 4>(s, *w, r, K, xt, xs, c, y, ldy, bias);
        else launch_gemv<T, 8>(s, *w, r, K, xt, xs, c, y, ldy, bias);
    });
}

extern "C" void qf_cu_matmul_grouped(cudaStream_t s, const qf_cu_mat *w, uint32_t type, uint64_t rows, uint32_t K,
                                     const float *x, size_t ldx, const qf_cu_task *tasks, uint32_t n_tasks, float *y,
                                     size_t ldy) {
    if (!rows || !n_tasks) return;
    dim3 grid(n_tasks, (unsigned)((rows + TILE - 1) / TILE));
    dispatch(type, [&](auto tag) {
        mm_grouped_kernel<decltype(tag)::value><<<grid, TILE_THREADS, 0, s>>>(w, (uint32_t)rows, K, x, ldx, tasks, y, ldy);
    });
}

extern "C" void qf_cu_attn_store(cudaStream_t s, const qf_cu_attn *a, qf_cu_pass p) {
    dim3 grid((p.len + 127) / 128, a->dk > a->dv ? a->dk : a->dv, p.n_seq * a->n_head_kv);
    attn_store_kernel<<<grid, 128, 0, s>>>(*a, p);
}

extern "C" void qf_cu_attention(cudaStream_t s, const qf_cu_attn *a, qf_cu_pass p, uint32_t t0, uint32_t t1, float *sc,
                                float *inv) {
    const uint32_t keys = p.pos0 + p.len, n = t1 - t0;
    attn_scores<<<dim3((keys + TILE - 1) / TILE, n), TILE_THREADS, 0, s>>>(*a, p, t0, sc, keys);
    attn_softmax<<<n, TILE, 0, s>>>(*a, p, t0, sc, inv, keys);
    attn_values<<<dim3((a->dv + TILE - 1) / TILE, n), TILE_THREADS, 0, s>>>(*a, p, t0, sc, inv, keys, false);
    if (a->v2) attn_values<<<dim3((a->dv2 + TILE - 1) / TILE, n), TILE_THREADS, 0, s>>>(*a, p, t0, sc, inv, keys, true);
}

/* ---- timing for the GEMV benchmark ------------------------------------------------------------------- */

template <class F> static double time_calls(int reps, F &&f) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    f(); /* warm: first-launch costs and caches out of the timing */
    cudaEventRecord(a, 0);
    for (int i = 0; i < reps; i++) f();
    cudaEventRecord(b, 0);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms * 1e-3 / reps;
}

extern "C" double qf_cu_time_matmul(const qf_cu_mat *w, uint64_t rows, uint32_t K, const float *x, size_t ldx,
                                    size_t cols, float *y, size_t ldy, float *xt, int reps) {
    return time_calls(reps, [&] { qf_cu_matmul(0, w, rows, K, x, ldx, cols, y, ldy, nullptr, xt); });
}

extern "C" double qf_cu_time_copy(void *dst, const void *src, size_t n, int reps) {
    return time_calls(reps, [&] { cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, 0); });
}
