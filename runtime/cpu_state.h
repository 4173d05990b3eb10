/*
 * cpu_state.h — the CPU backend's state, shared by its files (cpu.c: buffers, elementwise steps, rope,
 * attention; cpu_matmul.c: products; cpu_moe.c: routing and the expert-grouped product). Internal.
 */
#ifndef QF_RUNTIME_CPU_STATE_H
#define QF_RUNTIME_CPU_STATE_H

#include "runtime/backend.h"
#include "runtime/pool.h"
#include "runtime/rt_kern.h"

struct qf_be {
    const qf_rt_model *m;
    const qf_rt_kern *k;
    const qf_rt_qkern *qk;           /* 8-bit path kernels, used when act_q8 */
    bool act_q8;
    bool wide;                       /* AVX-512 active: column loops compiled for it (same bits) */
    qf_pool *pool;                   /* the context's threads (borrowed) */
    size_t ld;                       /* token columns of every activation matrix */
    size_t kv_len;                   /* cache positions per head: slots of n_ctx */
    uint32_t n_ctx;
    uint32_t kv_layers;              /* layers the cache holds: all, or 1 (qf_be_opts.one_layer_kv) */
    uint32_t dk, dv;                 /* attention head widths (cache layout) */
    qf_be_pass pass;                 /* the pass in progress */
    /* matmul input staging */
    float *xpack;                    /* matmul input packed tile by tile: [ld / nt][K][nt] */
    int8_t *xq;                      /* 8-bit path: matmul input quantized, [ld / QF_RT_QT][K][QF_RT_QT] */
    float *xq_d, *xq_ds;             /* [ld / QF_RT_QT][K / 32][QF_RT_QT] */
    int32_t *xq_s;                   /* [ld / QF_RT_QT][K / 16][QF_RT_QT] */
    size_t kmax;                     /* widest matmul input */
    /* attention */
    float *kc;                       /* K cache [layer][kv head][slot * n_ctx + position][dk] */
    float *vc;                       /* V cache [layer][kv head][dv][slot * n_ctx + position] */
    float *rope_cos, *rope_sin;      /* [n_rot/2][ld] for the current pass */
    uint32_t rope_half;
    /* norms */
    double *norm_acc;                /* [ld] */
    float *norm_scale;               /* [ld] */
    /* per thread: weight panels, attention scores, exp arguments, one embedding row */
    float **scratch;
    size_t scratch_len;
    /* mixture of experts (cpu_moe.c): routes of the pass and one expert's gathered tokens */
    uint16_t *route_e;               /* [ld][n_used] selected experts per column */
    float *route_w;                  /* [ld][n_used] their weights */
    uint32_t *by_expert;             /* [ld * n_used] (column * n_used + slot) grouped by expert */
    uint32_t *ex_start, *ex_fill;    /* [n_expert + 1] where each expert's pairs start */
    float *ex_in, *ex_g, *ex_u, *ex_out; /* [width][ld] gathered input, gate, up, down output */
    /* observers and checks */
    const qf_rt_observer *obs;
    uint64_t n_calls;                /* matmul calls so far: groups observer reports by shared input */
    char nonfinite[96];              /* where the first non-finite value of the run appeared, or "" */
    /* every buffer alloc() handed out, freed with the backend */
    float **bufs;
    size_t n_bufs, cap_bufs;
    uint64_t bytes;                  /* held in all buffers (an estimate for the run's memory) */
};

/* cpu_matmul.c: up to 3 products reading x of n_cols columns (leading dimension ldx, tiles of the pass
 * layout), outputs of the same layout; `in` says which columns are real tokens (observer reports),
 * NULL for a gathered expert input (all n_cols real). */
void qf_cpu_matmul(qf_be *be, const float *x, size_t ldx, size_t n_cols, const qf_be_pass *in, const qf_be_mm *mm,
                   int n_mm);
/* Record the first non-finite value among rows x n_cols of y (leading dimension ldy) as `what`. */
void qf_cpu_note_nonfinite(qf_be *be, const float *y, size_t rows, size_t ldy, size_t n_cols, const char *what, int layer);
/* cpu_moe.c */
void qf_cpu_moe(qf_be *be, const qf_be_moe *m);
/* The real token columns of the pass: column c is a token iff (c % stride) < len. */
static inline bool qf_cpu_is_token(const qf_be_pass *p, size_t c) { return c % p->stride < p->len; }

static inline size_t qf_round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

#endif
