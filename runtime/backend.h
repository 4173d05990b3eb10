/*
 * backend.h — the operations the forward pass is written in (internal to runtime/).
 *
 * graph.c never touches activation memory: it calls these operations on buffers the backend gave it,
 * so a backend whose buffers live on a GPU can implement them without changing the graph. The CPU
 * backend (cpu.c, cpu_matmul.c, cpu_moe.c) is the reference; the CUDA backend (cuda/) the other one.
 * The model's own vectors (norm weights, biases) are passed as the model holds them, in host memory: a
 * device backend copies them once.
 *
 * Every activation buffer of a pass is a feature-major matrix with the pass's leading dimension
 * (runtime.h); a pass covers `cols` token columns laid out as qf_be_pass says. Operations that take a
 * row count work on that many consecutive features.
 */
#ifndef QF_RUNTIME_BACKEND_H
#define QF_RUNTIME_BACKEND_H

#include "runtime/pool.h"
#include "runtime/runtime.h"

/* Each backend defines struct qf_be in its own files (cpu_state.h, cuda/be_cuda.c). */
typedef struct qf_be qf_be;

/* Token columns of every buffer are padded to this: every backend runs whole tiles of it. */
#define QF_BE_PAD 64

/* The token columns of one pass: n_seq sequences of len tokens, sequence s in columns s * stride ..
 * s * stride + len - 1 at positions pos0 .. pos0 + len - 1 of cache slot s. Column-wise steps cover
 * `cols` columns, the padding between sequences included (zeros from embed, finite after). */
typedef struct qf_be_pass {
    uint32_t n_seq, len, pos0;
    size_t stride, cols;
} qf_be_pass;

/* One product y = W x (+ bias) of a group that reads the same input. */
typedef struct qf_be_mm {
    const qf_rt_weight *w;
    float *y;          /* [w->n_rows][ldy] */
    size_t ldy;
    const float *bias; /* [w->n_rows] or NULL */
    bool host;         /* y is host memory written once and read after the pass (the logits) */
} qf_be_mm;

typedef struct qf_be_attn {
    uint32_t layer;
    uint32_t n_head, n_head_kv, dk, dv; /* q/k head width dk, v head width dv */
    float scale;                        /* softmax scale of q.k */
    const float *q;                     /* [n_head * dk] */
    const float *k;                     /* [n_head_kv * dk]: stored into the layer's cache */
    const float *v;                     /* [n_head_kv * dv]: likewise */
    float *out;                         /* [n_head * dv] */
    /* optional, only from position 0 (no cached keys before the pass): a second value set read by every
     * head with the same probabilities, out2 = softmax(q k) v2 per head (MLA's latent attention output,
     * which calibration needs and the expanded form never computes); v2 NULL = none */
    const float *v2;                    /* [dv2], shared by all heads, not cached */
    uint32_t dv2;
    float *out2;                        /* [n_head * dv2] */
} qf_be_attn;

/* A mixture-of-experts FFN: route each token from the router's logits, run its experts, sum their
 * outputs weighted (in ascending expert order). */
typedef struct qf_be_moe {
    const qf_hparams *hp;   /* routing rule: gating, groups, bias, normalisation, scale */
    int layer;
    const float *x;         /* [n_embd] the normalised input */
    const float *logits;    /* [n_expert] the router's output for x */
    const float *bias;      /* [n_expert] selection bias, or NULL */
    const qf_rt_weight *gate, *up, *down; /* [n_expert] each */
    float *y;               /* [n_embd], overwritten */
} qf_be_moe;

typedef struct qf_be_ops {
    const char *name;
    bool host;         /* buffers are host memory: the graph may read them directly (observers) */
    /* buffers: n floats, zeroed; freed with the backend */
    float *(*alloc)(qf_be *be, uint64_t n);
    /* host memory for the outputs of products marked `host` (the logits), n floats; freed with the backend */
    float *(*alloc_host)(qf_be *be, uint64_t n);
    /* n floats host -> buffer, buffer -> host (download returns when dst holds them): for observers that
     * need host copies and for tests that run operations on chosen bytes */
    void (*upload)(qf_be *be, float *dst, const float *src, uint64_t n);
    void (*download)(qf_be *be, float *dst, const float *src, uint64_t n);
    /* a new pass: its columns and the rotary tables for its positions (cos/sin of position * freq[i],
     * times mscale, for the n_rot / 2 pairs) */
    void (*begin_pass)(qf_be *be, const qf_be_pass *pass, const double *freq, uint32_t n_rot, float mscale);
    /* x = embedding rows of the pass's tokens (tokens[s * len + t], host memory); padding columns zero */
    void (*embed)(qf_be *be, const qf_rt_weight *w, const int32_t *tokens, float *x);
    /* up to 3 products reading x (row_len features of the columns `in` describes: the pass, or the
     * packed outputs of one) */
    void (*matmul)(qf_be *be, const float *x, const qf_be_pass *in, const qf_be_mm *mm, int n_mm);
    /* y = x / rms(x) * w over each group of `group` rows (group == rows: the whole vector); w has
     * `group` entries (host memory, the model's); y may be x */
    void (*rmsnorm)(qf_be *be, const float *x, float *y, size_t rows, size_t group, const float *w);
    /* rotate n_rot rows from `offset` of each of `heads` groups of `head_rows` rows, in place */
    void (*rope)(qf_be *be, float *x, uint32_t heads, uint32_t head_rows, uint32_t offset, bool neox);
    void (*attention)(qf_be *be, const qf_be_attn *a);
    /* g = silu(g) * u over rows */
    void (*glu)(qf_be *be, float *g, const float *u, size_t rows);
    /* x += o over rows */
    void (*add)(qf_be *be, float *x, const float *o, size_t rows);
    /* dst rows = src rows */
    void (*copy_rows)(qf_be *be, float *dst, const float *src, size_t rows);
    /* y[r] *= sigmoid(g[0]) per column, over rows (Qwen2-MoE's shared-expert gate) */
    void (*sigmoid_scale)(qf_be *be, float *y, const float *g, size_t rows);
    void (*moe)(qf_be *be, const qf_be_moe *m);
    /* dst = src's columns out_from .. len-1 of every sequence, packed (sequence after sequence) */
    void (*gather_outputs)(qf_be *be, float *dst, const float *src, size_t rows, uint32_t out_from);
    /* the first non-finite value any operation produced since the last call, as "layer L tensor" (or
     * "" when none); clears it. Every output of the calls before it (logits included) is complete when
     * it returns. */
    void (*take_nonfinite)(qf_be *be, char *what, size_t n);
    /* the first failure of an operation since the last call (device memory, a kernel launch), cleared;
     * after one, operations do nothing until it is taken */
    qf_status (*take_error)(qf_be *be, qf_error *err);
    void (*set_observer)(qf_be *be, const qf_rt_observer *obs);
    /* the 8-bit activation path (runtime.h: qf_rt_ctx_set_act_q8); NULL for a backend without one */
    void (*set_act_q8)(qf_be *be, bool on);
    /* bytes of every buffer the backend holds (an estimate for the run's memory) */
    uint64_t (*bytes)(const qf_be *be);
    void (*free)(qf_be *be);
} qf_be_ops;

/* What a backend is made for: a KV cache of kv_len positions per head for every layer (or one), scratch
 * sized for the model's widest layer and ld token columns. */
typedef struct qf_be_opts {
    const qf_rt_model *m;
    qf_pool *pool;       /* the context's threads (borrowed) */
    size_t ld;           /* token columns of every activation matrix of a pass */
    size_t kv_len;       /* cached positions per head: slots * n_ctx */
    uint32_t n_ctx;      /* positions per cache slot */
    bool one_layer_kv;   /* the cache holds one layer (every layer shares it): layer-major runs finish a
                            layer's attention over all their tokens before the next layer starts */
} qf_be_opts;

/* The backend table (backends.c): the backend `kind` names (CPU or CUDA, resolved: never AUTO). */
qf_status qf_be_new(qf_backend kind, const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err);

/* The CPU backend (cpu.c, cpu_matmul.c, cpu_moe.c): the reference. */
qf_status qf_be_cpu_new(const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err);

/* The CUDA backend (runtime/cuda/, built with QF_CUDA): whether device 0 is usable (true: `what` names
 * it; false: `what` says why not, one phrase), and the backend on it. */
bool qf_be_cuda_usable(char *what, size_t n);
qf_status qf_be_cuda_new(const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err);

#endif
