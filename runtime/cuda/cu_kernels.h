/*
 * cu_kernels.h — the CUDA backend's kernels as the host code (be_cuda.c) launches them (internal to
 * runtime/cuda/). Every launcher queues work on the given stream and returns at once; none synchronizes.
 *
 * Numbers: kernels repeat the CPU backend's arithmetic operation for operation (the library is compiled
 * with --fmad=false, so no multiply and add are fused unless the code says fmaf), with these results:
 *   - dequantization: each weight the value the CPU's dequantizer gives, bit for bit;
 *   - qf_cu_matmul over more than QF_CU_GEMV_COLS columns, the expert-grouped product and attention's
 *     two products: every output one fmaf chain over its reduction in order, as the CPU tile computes
 *     it, so the same bits;
 *   - qf_cu_matmul over QF_CU_GEMV_COLS columns or fewer (a token or a few at a time): one warp per row,
 *     each lane an fmaf chain over its share of the row, then a tree of adds: the CPU's products up to
 *     rounding (relative error of order K * 2^-24 of sum |w x|);
 *   - rmsnorm, rope, SwiGLU, the sigmoid gate, softmax (the CPU's vexp polynomial, sums in double in the
 *     CPU's order) and routing (the CPU's rule and tie order): the same bits.
 * The activation layout is runtime.h's: feature-major [rows][ld].
 */
#ifndef QF_RUNTIME_CUDA_CU_KERNELS_H
#define QF_RUNTIME_CUDA_CU_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Stored types the kernels decode (qtypes.h's of the same names); any other type is decoded on the host
 * and held as F32. */
typedef enum qf_cu_type {
    QF_CU_F32, QF_CU_F16, QF_CU_BF16, QF_CU_Q4_0, QF_CU_Q4_1, QF_CU_Q5_0, QF_CU_Q5_1, QF_CU_Q8_0,
    QF_CU_Q2_K, QF_CU_Q3_K, QF_CU_Q4_K, QF_CU_Q5_K, QF_CU_Q6_K, QF_CU_MXFP4,
    QF_CU_E4M3_B32, QF_CU_E5M2_B32, QF_CU_E4M3_ROW, QF_CU_E4M3_B128,
    QF_CU_N_TYPES
} qf_cu_type;

/* A matrix on the device: row r's stored bytes at data + r * pitch. Weights are uploaded with pitches
 * rounded up to 16 bytes (so vector loads of a row are aligned); F32 views of caches use their own. */
typedef struct qf_cu_mat {
    const uint8_t *data;
    uint64_t pitch;    /* bytes from one row to the next */
    uint32_t type;     /* qf_cu_type */
} qf_cu_mat;

/* Columns up to which a product runs as GEMV (one warp per row) rather than the exact tiled kernel. */
#define QF_CU_GEMV_COLS 8
/* Rows a product may have: 65535 tiles of 64 (the grid's second dimension). */
#define QF_CU_MAX_ROWS (65535ull * 64)

/* y[r * ldy + c] = sum_k w[r][k] x[k * ldx + c] (+ bias[r]) for r < rows, c < cols (K inputs). xt: scratch
 * of QF_CU_GEMV_COLS * round_up(K, 4) floats for the GEMV path. */
void qf_cu_matmul(cudaStream_t s, const qf_cu_mat *w, uint64_t rows, uint32_t K, const float *x, size_t ldx,
                  size_t cols, float *y, size_t ldy, const float *bias, float *xt);

/* The expert-grouped product: task i computes columns col0 .. col0 + n - 1 (n <= 64) of y from the same
 * columns of x with expert `expert`'s matrix w[expert] (a device array); every matrix has `type`. */
typedef struct qf_cu_task {
    uint32_t expert, col0, n;
} qf_cu_task;
void qf_cu_matmul_grouped(cudaStream_t s, const qf_cu_mat *w, uint32_t type, uint64_t rows, uint32_t K,
                          const float *x, size_t ldx, const qf_cu_task *tasks, uint32_t n_tasks, float *y, size_t ldy);

/* Token columns of one pass (backend.h: qf_be_pass). */
typedef struct qf_cu_pass {
    uint32_t n_seq, len, pos0;
    uint32_t stride, cols;
} qf_cu_pass;

/* x[f][col] = row tokens[s * len + t] of w, element f, for the pass's token columns; 0 elsewhere. */
void qf_cu_embed(cudaStream_t s, const qf_cu_mat *w, uint32_t E, const int32_t *tokens, qf_cu_pass p, float *x,
                 size_t ld);
void qf_cu_rmsnorm(cudaStream_t s, const float *x, float *y, size_t rows, size_t group, const float *w, float eps,
                   size_t ld, size_t cols);
/* cs, sn: [n_rot / 2][ld] */
void qf_cu_rope(cudaStream_t s, float *x, uint32_t heads, uint32_t head_rows, uint32_t offset, uint32_t half,
                bool neox, const float *cs, const float *sn, size_t ld, size_t cols);
void qf_cu_glu(cudaStream_t s, float *g, const float *u, size_t rows, size_t ld, size_t cols);
void qf_cu_add(cudaStream_t s, float *x, const float *o, size_t rows, size_t ld, size_t cols);
void qf_cu_sigmoid_scale(cudaStream_t s, float *y, const float *g, size_t rows, size_t ld, size_t cols);

/* ---- attention -------------------------------------------------------------------------------------- */

/* One layer's attention over the pass (backend.h: qf_be_attn), caches as the CPU lays them out: K
 * [kv head][slot * n_ctx + position][dk], V [kv head][dv][slot * n_ctx + position]. */
typedef struct qf_cu_attn {
    uint32_t n_head, n_head_kv, dk, dv, dv2;
    float scale;
    const float *q;
    const float *k, *v;     /* this pass's keys and values, stored into the caches first */
    float *kc, *vc;         /* the layer's caches */
    size_t kv_len;          /* positions per head in the caches */
    uint32_t n_ctx;         /* positions per slot */
    float *out;
    const float *v2;        /* NULL = none */
    float *out2;
    size_t ld;
} qf_cu_attn;
/* Queries go in tiles of 64 per (sequence, head): task = (sequence * n_head + head) * tiles + tile. Tasks
 * t0 .. t1-1 run with scratch sc (64 * (pos0 + len) floats per task) and inv (64 floats per task). */
void qf_cu_attn_store(cudaStream_t s, const qf_cu_attn *a, qf_cu_pass p);
void qf_cu_attention(cudaStream_t s, const qf_cu_attn *a, qf_cu_pass p, uint32_t t0, uint32_t t1, float *sc,
                     float *inv);

/* ---- mixture of experts ------------------------------------------------------------------------------ */

typedef struct qf_cu_route_rule {
    uint32_t n_expert, n_used, n_group, n_group_used;
    bool sigmoid;           /* gating: sigmoid, else softmax */
    bool group_max;         /* groups ranked by their best score, else by the sum of their best two */
    bool norm;              /* weights renormalised to sum 1 */
    float scale;            /* weights scaled (0 or 1: not) */
} qf_cu_route_rule;
/* Per token column of the pass: its n_used experts (best first) and weights from the router's logits
 * [n_expert][ld] (bias: [n_expert] or NULL). scratch: cols * (2 n_expert + 2 n_group + n_used) floats. */
void qf_cu_route(cudaStream_t s, const qf_cu_route_rule *r, const float *logits, const float *bias, qf_cu_pass p,
                 size_t ld, uint16_t *experts, float *weights, float *scratch);
/* dst[f][j] = src[f][pair[j] / k] for the n gathered columns (pair = column * k + slot). */
void qf_cu_gather(cudaStream_t s, const float *src, size_t ld, float *dst, size_t ldd, size_t rows,
                  const uint32_t *pair, uint32_t n, uint32_t k);
/* y[f][t] = sum over token t's k slots, in ascending expert order (slot_pos[t * k + i]: the gathered
 * column j of its i-th such slot), of weights[pair[j]] * out[f][j], for token columns; 0 elsewhere. */
void qf_cu_combine(cudaStream_t s, const float *out, size_t ldo, const uint32_t *slot_pos, const uint32_t *pair,
                   const float *weights, uint32_t k, float *y, size_t ld, size_t rows, qf_cu_pass p);

/* ---- checks ----------------------------------------------------------------------------------------- */

/* When some value of rows x cols (leading dimension ld) is not finite, lower *flag to (key << 32) | sub',
 * sub' = sub, or col_sub[c] * 4 + sub for a value in column c when col_sub is given (the expert of a
 * gathered column: the CPU checks expert by expert). Padding columns of pass p are skipped when p is given. */
void qf_cu_check(cudaStream_t s, const float *y, size_t rows, size_t ld, size_t cols, const qf_cu_pass *p,
                 uint64_t key, uint32_t sub, const uint16_t *col_sub, unsigned long long *flag);

/* ---- the GEMV benchmark (bench/cuda_gemv.c) -------------------------------------------------------- */

/* Seconds per call of qf_cu_matmul over `cols` columns, timed with events over `reps` calls. */
double qf_cu_time_matmul(const qf_cu_mat *w, uint64_t rows, uint32_t K, const float *x, size_t ldx, size_t cols,
                         float *y, size_t ldy, float *xt, int reps);
/* Seconds per device-to-device copy of n bytes, likewise. */
double qf_cu_time_copy(void *dst, const void *src, size_t n, int reps);

#ifdef __cplusplus
}
#endif

#endif
