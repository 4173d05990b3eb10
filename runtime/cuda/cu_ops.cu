/* cu_ops.cu — the column-wise steps, the embedding, routing and the expert gather/combine, and the
 * non-finite check (cu_kernels.h); each the CPU backend's arithmetic (cpu.c, cpu_moe.c) on one thread per
 * output, in the CPU's order where an order matters. */
#include "runtime/cuda/cu_common.cuh"

namespace qf_cu {

/* (column, row) of a rows x cols grid of 2-D launches: x over columns, y (and z) over rows */
struct cr {
    uint32_t c;
    size_t r;
};
__device__ __forceinline__ cr at2d() {
    return {blockIdx.x * blockDim.x + threadIdx.x, (size_t)blockIdx.z * gridDim.y + blockIdx.y};
}
static dim3 grid2d(size_t rows, size_t cols, unsigned threads) {
    size_t ry = rows < 65535 ? rows : 65535, rz = (rows + ry - 1) / ry;
    return dim3((unsigned)((cols + threads - 1) / threads), (unsigned)ry, (unsigned)rz);
}

template <int T>
__global__ void embed_kernel(qf_cu_mat w, uint32_t E, const int32_t *tokens, qf_cu_pass p, float *x, size_t ld) {
    const cr i = at2d();
    if (i.c >= p.cols || i.r >= E) return;
    const uint32_t s = i.c / p.stride, t = i.c % p.stride;
    float v = 0.0f;
    if (t < p.len && s < p.n_seq) v = deq<T>(w.data + (uint64_t)tokens[(size_t)s * p.len + t] * w.pitch, (uint32_t)i.r);
    x[i.r * ld + i.c] = v;
}

/* cpu.c's rmsnorm: the sum of squares in double, feature after feature */
__global__ void rmsnorm_kernel(const float *x, float *y, size_t group, const float *w, float eps, size_t ld, uint32_t cols) {
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const size_t g0 = (size_t)blockIdx.y * group;
    double acc = 0;
    for (size_t f = g0; f < g0 + group; f++) {
        float v = x[f * ld + c];
        acc += (double)(v * v);
    }
    const float scale = 1.0f / sqrtf((float)(acc / (double)group) + eps);
    for (size_t f = g0; f < g0 + group; f++) y[f * ld + c] = x[f * ld + c] * scale * w[f - g0];
}

__global__ void rope_kernel(float *x, uint32_t head_rows, uint32_t offset, uint32_t half, bool neox, const float *cs,
                            const float *sn, size_t ld, uint32_t cols) {
    const uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y, h = blockIdx.z;
    if (t >= cols) return;
    const size_t ra = (size_t)h * head_rows + offset + (neox ? i : 2 * i), rb = ra + (neox ? half : 1);
    const float x0 = x[ra * ld + t], x1 = x[rb * ld + t], c = cs[(size_t)i * ld + t], s = sn[(size_t)i * ld + t];
    x[ra * ld + t] = x0 * c - x1 * s;
    x[rb * ld + t] = x0 * s + x1 * c;
}

__global__ void glu_kernel(float *g, const float *u, size_t rows, size_t ld, uint32_t cols) {
    const cr i = at2d();
    if (i.c >= cols || i.r >= rows) return;
    const size_t k = i.r * ld + i.c;
    const float v = g[k];
    g[k] = v / (1.0f + vexp(-v)) * u[k];
}

__global__ void add_kernel(float *x, const float *o, size_t rows, size_t ld, uint32_t cols) {
    const cr i = at2d();
    if (i.c < cols && i.r < rows) x[i.r * ld + i.c] += o[i.r * ld + i.c];
}

__global__ void sigmoid_scale_kernel(float *y, const float *g, size_t rows, size_t ld, uint32_t cols) {
    const cr i = at2d();
    if (i.c >= cols || i.r >= rows) return;
    const float e = 1.0f / (1.0f + vexp(-g[i.c]));
    y[i.r * ld + i.c] *= e;
}

/* ---- routing (cpu_moe.c, rule for rule) --------------------------------------------------------------- */

/* Indices of the k largest of v[0..n) (ties to the lower index), best first. */
__device__ void top_k(const float *v, uint32_t n, uint32_t k, uint32_t *out) {
    for (uint32_t i = 0; i < k; i++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t e = 0; e < n; e++) {
            bool taken = false;
            for (uint32_t j = 0; j < i && !taken; j++) taken = out[j] == e;
            if (!taken && (best == UINT32_MAX || v[e] > v[best])) best = e;
        }
        out[i] = best;
    }
}

__device__ void scores(const qf_cu_route_rule &r, float *s) {
    const uint32_t n = r.n_expert;
    if (r.sigmoid) {
        for (uint32_t e = 0; e < n; e++) s[e] = 1.0f / (1.0f + vexp(-s[e]));
        return;
    }
    float mx = -INFINITY;
    for (uint32_t e = 0; e < n; e++) mx = s[e] > mx ? s[e] : mx;
    double sum = 0;
    for (uint32_t e = 0; e < n; e++) {
        s[e] = vexp(s[e] - mx);
        sum += s[e];
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t e = 0; e < n; e++) s[e] *= inv;
}

/* only the best n_group_used groups' experts stay candidates; gs, keep: n_group entries of scratch */
__device__ void limit_groups(const qf_cu_route_rule &r, float *sel, float *gs, uint32_t *keep) {
    const uint32_t G = r.n_group, per = r.n_expert / G;
    uint32_t best2[2];
    for (uint32_t g = 0; g < G; g++) {
        if (r.group_max) {
            top_k(sel + g * per, per, 1, best2);
            gs[g] = sel[g * per + best2[0]];
        } else {
            top_k(sel + g * per, per, min(2u, per), best2);
            gs[g] = sel[g * per + best2[0]] + (per > 1 ? sel[g * per + best2[1]] : 0.0f);
        }
    }
    top_k(gs, G, r.n_group_used, keep);
    for (uint32_t g = 0; g < G; g++) {
        bool kept = false;
        for (uint32_t i = 0; i < r.n_group_used && !kept; i++) kept = keep[i] == g;
        if (!kept)
            for (uint32_t e = 0; e < per; e++) sel[g * per + e] = -INFINITY;
    }
}

__global__ void route_kernel(qf_cu_route_rule r, const float *logits, const float *bias, qf_cu_pass p, size_t ld,
                             uint16_t *experts, float *weights, float *scratch) {
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= p.cols || !is_token(p, c)) return;
    const uint32_t n = r.n_expert, k = r.n_used, G = r.n_group;
    float *s = scratch + (size_t)c * (2 * n + 2 * G + k), *sel = s + n, *gs = sel + n;
    uint32_t *keep = reinterpret_cast<uint32_t *>(gs + G), *idx = keep + G;
    for (uint32_t e = 0; e < n; e++) s[e] = logits[(size_t)e * ld + c];
    scores(r, s);
    for (uint32_t e = 0; e < n; e++) sel[e] = bias ? s[e] + bias[e] : s[e];
    if (G > 1) limit_groups(r, sel, gs, keep);
    top_k(sel, n, k, idx);
    float sum = 0, *w = weights + (size_t)c * k;
    for (uint32_t i = 0; i < k; i++) {
        experts[(size_t)c * k + i] = (uint16_t)idx[i];
        w[i] = s[idx[i]];
        sum += w[i];
    }
    if (r.norm)
        for (uint32_t i = 0; i < k; i++) w[i] /= fmaxf(sum, 6.103515625e-5f);
    if (r.scale != 0.0f && r.scale != 1.0f)
        for (uint32_t i = 0; i < k; i++) w[i] *= r.scale;
}

__global__ void gather_kernel(const float *src, size_t ld, float *dst, size_t ldd, size_t rows, const uint32_t *pair,
                              uint32_t n, uint32_t k) {
    const cr i = at2d();
    if (i.c < n && i.r < rows) dst[i.r * ldd + i.c] = src[i.r * ld + pair[i.c] / k];
}

/* cpu_moe.c's scatter: y = 0, then += weight * output expert after expert in ascending order */
__global__ void combine_kernel(const float *out, size_t ldo, const uint32_t *slot_pos, const uint32_t *pair,
                               const float *weights, uint32_t k, float *y, size_t ld, size_t rows, qf_cu_pass p) {
    const cr i = at2d();
    if (i.c >= p.cols || i.r >= rows) return;
    float acc = 0.0f;
    if (is_token(p, i.c))
        for (uint32_t s = 0; s < k; s++) {
            const uint32_t j = slot_pos[(size_t)i.c * k + s];
            acc += weights[pair[j]] * out[i.r * ldo + j];
        }
    y[i.r * ld + i.c] = acc;
}

__global__ void check_kernel(const float *y, size_t rows, size_t ld, uint32_t cols, qf_cu_pass p, bool skip_padding,
                             uint64_t key, uint32_t sub, const uint16_t *col_sub, unsigned long long *flag) {
    const cr i = at2d();
    if (i.c >= cols || i.r >= rows || isfinite(y[i.r * ld + i.c])) return;
    if (skip_padding && !is_token(p, i.c)) return;
    const uint64_t s = col_sub ? (uint64_t)col_sub[i.c] * 4 + sub : sub;
    atomicMin(flag, (unsigned long long)(key << 32 | s));
}

} // namespace qf_cu

using namespace qf_cu;

extern "C" void qf_cu_embed(cudaStream_t s, const qf_cu_mat *w, uint32_t E, const int32_t *tokens, qf_cu_pass p, float *x,
                            size_t ld) {
    dispatch(w->type, [&](auto tag) {
        embed_kernel<decltype(tag)::value><<<grid2d(E, p.cols, 128), 128, 0, s>>>(*w, E, tokens, p, x, ld);
    });
}

extern "C" void qf_cu_rmsnorm(cudaStream_t s, const float *x, float *y, size_t rows, size_t group, const float *w,
                              float eps, size_t ld, size_t cols) {
    rmsnorm_kernel<<<dim3((unsigned)((cols + 127) / 128), (unsigned)(rows / group)), 128, 0, s>>>(x, y, group, w, eps, ld,
                                                                                                  (uint32_t)cols);
}

extern "C" void qf_cu_rope(cudaStream_t s, float *x, uint32_t heads, uint32_t head_rows, uint32_t offset, uint32_t half,
                           bool neox, const float *cs, const float *sn, size_t ld, size_t cols) {
    if (!half || !heads) return;
    rope_kernel<<<dim3((unsigned)((cols + 127) / 128), half, heads), 128, 0, s>>>(x, head_rows, offset, half, neox, cs, sn,
                                                                                  ld, (uint32_t)cols);
}

extern "C" void qf_cu_glu(cudaStream_t s, float *g, const float *u, size_t rows, size_t ld, size_t cols) {
    glu_kernel<<<grid2d(rows, cols, 128), 128, 0, s>>>(g, u, rows, ld, (uint32_t)cols);
}

extern "C" void qf_cu_add(cudaStream_t s, float *x, const float *o, size_t rows, size_t ld, size_t cols) {
    add_kernel<<<grid2d(rows, cols, 128), 128, 0, s>>>(x, o, rows, ld, (uint32_t)cols);
}

extern "C" void qf_cu_sigmoid_scale(cudaStream_t s, float *y, const float *g, size_t rows, size_t ld, size_t cols) {
    sigmoid_scale_kernel<<<grid2d(rows, cols, 128), 128, 0, s>>>(y, g, rows, ld, (uint32_t)cols);
}

extern "C" void qf_cu_route(cudaStream_t s, const qf_cu_route_rule *r, const float *logits, const float *bias,
                            qf_cu_pass p, size_t ld, uint16_t *experts, float *weights, float *scratch) {
    route_kernel<<<(p.cols + 63) / 64, 64, 0, s>>>(*r, logits, bias, p, ld, experts, weights, scratch);
}

extern "C" void qf_cu_gather(cudaStream_t s, const float *src, size_t ld, float *dst, size_t ldd, size_t rows,
                             const uint32_t *pair, uint32_t n, uint32_t k) {
    if (n) gather_kernel<<<grid2d(rows, n, 128), 128, 0, s>>>(src, ld, dst, ldd, rows, pair, n, k);
}

extern "C" void qf_cu_combine(cudaStream_t s, const float *out, size_t ldo, const uint32_t *slot_pos,
                              const uint32_t *pair, const float *weights, uint32_t k, float *y, size_t ld, size_t rows,
                              qf_cu_pass p) {
    combine_kernel<<<grid2d(rows, p.cols, 128), 128, 0, s>>>(out, ldo, slot_pos, pair, weights, k, y, ld, rows, p);
}

extern "C" void qf_cu_check(cudaStream_t s, const float *y, size_t rows, size_t ld, size_t cols, const qf_cu_pass *p,
                            uint64_t key, uint32_t sub, const uint16_t *col_sub, unsigned long long *flag) {
    if (!rows || !cols) return;
    qf_cu_pass none = {0, 0, 0, 1, 0};
    check_kernel<<<grid2d(rows, cols, 128), 128, 0, s>>>(y, rows, ld, (uint32_t)cols, p ? *p : none, p != nullptr, key, sub,
                                                         col_sub, flag);
}
