/* forward.c — the llama-family forward pass over a batch of tokens (see runtime.h for layouts and the
 * determinism rule). One batch:
 *   x = embed(tokens)
 *   per layer: xn = rmsnorm(x) * attn_norm; q,k,v = W{q,k,v} xn (+ biases); rope(q, k); cache k, v;
 *              a = softmax(q k^T / sqrt(hd), causal) v per head; x += Wo a;
 *              xn = rmsnorm(x) * ffn_norm; x += Wd (silu(Wg xn) * (Wu xn))
 *   logits = Wout (rmsnorm(x) * output_norm) for the requested output tokens only. */
#include "kernels/cpu.h"
#include "runtime/pool.h"
#include "runtime/rt_kern.h"
#include "runtime/runtime.h"

#include <math.h>
#include <time.h>

/* Tokens per pass through the layers: a call of more sequences runs them in passes of whole sequences,
 * so the activations of a pass stay in cache (a pass of 2048 tokens measured slower than four of 512 on
 * qf-llama-a: the per-layer buffers outgrow L2). 1024 rather than llama.cpp's default 512 (n_ubatch):
 * with the 8-bit path's AMX tile each decoded weight panel then serves twice the tokens and the output
 * matrix is decoded half as often; measured in CPU samples of the eval, q8_0 --act q8 -3%, --act f32 -3%,
 * q4_K --act q8 unchanged. */
#define QF_RT_UBATCH 1024u

/* The token columns of one pass: n_seq sequences of len tokens, sequence s in columns s * stride ..
 * s * stride + len - 1 at positions pos0 .. pos0 + len - 1 of cache slot s (passes run one after the
 * other and their sequences are independent, so every pass reuses slots 0 ..). Column-wise steps cover
 * `cols` columns, the padding between sequences included (zeros from embed, finite after). */
typedef struct shape {
    uint32_t n_seq, len, pos0;
    size_t stride, cols;
} shape;

struct qf_rt_ctx {
    const qf_rt_model *m;
    const qf_rt_kern *k;
    const qf_rt_qkern *qk;           /* 8-bit path kernels, used when act_q8 */
    bool act_q8;
    bool wide;                       /* AVX-512 active: column loops compiled for it (same bits) */
    qf_pool *pool;
    uint32_t n_ctx, n_batch, n_past;
    uint32_t n_seq_max;              /* sequences one call may hold (qf_rt_eval_seqs) */
    uint32_t n_seq_pass;             /* sequences per pass through the layers, each its own cache slot */
    size_t ld_out;                   /* columns of logits: every output of a call */
    size_t kv_len;                   /* cache positions per head: n_seq_pass slots of n_ctx */
    size_t ld;                       /* token columns of every activation matrix (n_batch padded) */
    float *x, *xn, *q, *kx, *vx, *att, *g, *u, *o; /* activations, [features][ld] */
    float *logits;                   /* [n_vocab][ld_out] */
    float *xpack;                    /* matmul input packed tile by tile: [ld / nt][K][nt] */
    int8_t *xq;                      /* 8-bit path: matmul input quantized, [ld / QF_RT_QT][K][QF_RT_QT] */
    float *xq_d, *xq_ds;             /* [ld / QF_RT_QT][K / 32][QF_RT_QT] */
    int32_t *xq_s;                   /* [ld / QF_RT_QT][K / 16][QF_RT_QT] */
    float *kc;                       /* K cache [layer][kv head][slot * n_ctx + position][head_dim] */
    float *vc;                       /* V cache [layer][kv head][head_dim][slot * n_ctx + position] */
    float *rope_cos, *rope_sin;      /* [head_dim/2][ld] for the current batch */
    double *norm_acc;                /* [ld] */
    float *norm_scale;               /* [ld] */
    float **scratch;                 /* per thread: weight panels, attention scores, exp arguments */
    size_t scratch_len;
    double eval_s;
    qf_rt_observer observer;         /* calibration hook, or NULL */
    void *observer_user;
    uint64_t n_calls;                /* matmul calls so far: groups observer reports by shared input */
    shape sh;                        /* the call in progress */
};

/* ---- context ------------------------------------------------------------------------------------ */

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* Bytes of one decoded panel of the 8-bit path: levels, then scales and min terms (model.c). */
static size_t q8_panel_bytes(size_t rows, size_t K) { return round_up(rows * K, 64) + 2 * rows * (K / 16) * sizeof(float); }

/* Zeroed and touched: a large calloc maps its pages lazily, and the first call would pay the faults
 * (hundreds of MB of logits at the default batch) inside the timed forward pass. malloc + memset, not
 * calloc + memset: the compiler drops a memset of zeros after calloc (it did, and the faults of the
 * logits were a third of --act q8's eval time on qf-llama-a). */
static qf_status alloc_f(float **p, uint64_t n, uint64_t m, qf_error *err) {
    /* 64-byte aligned: a kernel's vector of 16 outputs is then one whole cache line of y */
    uint64_t bytes = 0;
    bool ok = qf_mul_ok(n, m, &bytes) && qf_mul_ok(bytes, sizeof(float), &bytes) && bytes <= SIZE_MAX - 64;
    *p = ok ? aligned_alloc(64, (size_t)round_up(bytes ? bytes : 1, 64)) : NULL;
    if (*p) memset(*p, 0, (size_t)bytes);
    return *p ? QF_OK : qf_fail(err, QF_E_NOMEM, "out of memory for %llu x %llu floats of runtime buffers",
                                (unsigned long long)n, (unsigned long long)m);
}

static qf_status alloc_activations(qf_rt_ctx *c, qf_error *err) {
    const qf_hparams *hp = &c->m->hp;
    uint64_t QD = (uint64_t)hp->n_head * hp->head_dim, KD = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t wide = QF_MAX(QF_MAX((uint64_t)hp->n_embd, QD), (uint64_t)hp->n_ff);
    uint64_t cache = (uint64_t)hp->n_layer * KD * c->kv_len;
    qf_status st;
    if ((st = alloc_f(&c->x, hp->n_embd, c->ld, err)) || (st = alloc_f(&c->xn, hp->n_embd, c->ld, err)) ||
        (st = alloc_f(&c->q, QD, c->ld, err)) || (st = alloc_f(&c->kx, KD, c->ld, err)) ||
        (st = alloc_f(&c->vx, KD, c->ld, err)) || (st = alloc_f(&c->att, QD, c->ld, err)) ||
        (st = alloc_f(&c->g, hp->n_ff, c->ld, err)) || (st = alloc_f(&c->u, hp->n_ff, c->ld, err)) ||
        (st = alloc_f(&c->o, wide, c->ld, err)) || (st = alloc_f(&c->logits, hp->n_vocab, c->ld_out, err)) ||
        (st = alloc_f(&c->xpack, wide, c->ld, err)) ||
        (st = alloc_f(&c->kc, cache, 1, err)) || (st = alloc_f(&c->vc, cache, 1, err)) ||
        (st = alloc_f(&c->rope_cos, hp->head_dim / 2, c->ld, err)) ||
        (st = alloc_f(&c->rope_sin, hp->head_dim / 2, c->ld, err)) || (st = alloc_f(&c->norm_scale, c->ld, 1, err)))
        return st;
    if (!(c->norm_acc = qf_calloc_n(c->ld, sizeof(double)))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    /* the 8-bit path's buffers are small next to the F32 ones: allocated whatever the mode */
    c->xq = qf_calloc_n(wide, c->ld);
    c->xq_s = qf_calloc_n(wide / 16 + 1, c->ld * sizeof(int32_t));
    if (!c->xq || !c->xq_s) return qf_fail(err, QF_E_NOMEM, "out of memory for 8-bit activations");
    if ((st = alloc_f(&c->xq_d, wide / 32 + 1, c->ld, err)) || (st = alloc_f(&c->xq_ds, wide / 32 + 1, c->ld, err)))
        return st;
    return QF_OK;
}

/* Per-thread scratch: a panel of QF_RT_MR weight rows, or one of the integer kernel's decoded panels, or
 * attention scores for n_ctx keys x nt queries plus one row of exp arguments, or one embedding row, or one
 * row of SwiGLU exponentials (ld). */
static qf_status alloc_scratch(qf_rt_ctx *c, qf_error *err) {
    const qf_hparams *hp = &c->m->hp;
    uint64_t kmax = QF_MAX(QF_MAX((uint64_t)hp->n_embd, (uint64_t)hp->n_ff), (uint64_t)hp->n_head * hp->head_dim);
    c->scratch_len = QF_MAX(QF_RT_MR * kmax, ((uint64_t)c->n_ctx + 1) * c->k->nt + 2 * c->k->nt);
    c->scratch_len = QF_MAX(c->scratch_len, c->ld);
    c->scratch_len = QF_MAX(c->scratch_len, (q8_panel_bytes(c->qk->rows, kmax) + sizeof(float) - 1) / sizeof(float));
    int n = qf_pool_size(c->pool);
    if (!(c->scratch = qf_calloc_n((uint64_t)n, sizeof *c->scratch))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        qf_status st = alloc_f(&c->scratch[i], c->scratch_len, 1, err);
        if (st) return st;
    }
    return QF_OK;
}

/* Rows a multiple of 1 KiB apart fall into few cache sets when column-wise steps walk the features:
 * one spare tile breaks that (kernels never read past the tiles a call covers). Measured on qf-llama-a
 * (forward CPU time): passes of 512 columns gain 5% on the 8-bit path, while one chunk of 256 loses 8%
 * on the F32 path, so only multi-sequence passes get it. */
static size_t spare_tile(size_t ld, uint32_t n_seq_pass) { return n_seq_pass > 1 && ld % 256 == 0 ? ld + QF_RT_PAD : ld; }

qf_status qf_rt_ctx_new(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads, qf_rt_ctx **out,
                        qf_error *err) {
    *out = NULL;
    if (n_ctx < 1 || n_batch < 1 || n_ctx > (1u << 24))
        return qf_fail(err, QF_E_USAGE, "context %u / batch %u must be in 1..16777216", n_ctx, n_batch);
    qf_rt_ctx *c = calloc(1, sizeof *c);
    if (!c) return qf_fail(err, QF_E_NOMEM, "out of memory");
    c->m = m;
    c->k = qf_rt_kern_active();
    c->qk = qf_rt_qkern_active();
    c->wide = qf_isa_active() == QF_ISA_AVX512;
    c->n_ctx = n_ctx;
    /* a batch of whole contexts holds that many sequences, each padded to whole tiles so that no
     * attention tile straddles two of them */
    c->n_seq_max = n_batch >= n_ctx ? n_batch / n_ctx : 1;
    c->n_batch = c->n_seq_max > 1 ? c->n_seq_max * n_ctx : QF_MIN(n_batch, n_ctx);
    c->n_seq_pass = QF_MIN(c->n_seq_max, QF_MAX(1u, QF_RT_UBATCH / n_ctx));
    c->kv_len = (size_t)c->n_seq_pass * n_ctx;
    c->ld = spare_tile(c->n_seq_pass * round_up(QF_MIN(n_batch, n_ctx), QF_RT_PAD), c->n_seq_pass);
    /* the last pass's output tiles may run up to a tile past the call's outputs */
    c->ld_out = QF_MAX(c->ld, round_up((size_t)c->n_batch, QF_RT_PAD) + QF_RT_PAD);
    qf_status st = qf_pool_new(n_threads, &c->pool, err);
    if (!st) st = alloc_activations(c, err);
    if (!st) st = alloc_scratch(c, err);
    if (st) { qf_rt_ctx_free(c); return st; }
    *out = c;
    return QF_OK;
}

void qf_rt_ctx_free(qf_rt_ctx *c) {
    if (!c) return;
    for (int i = 0; c->scratch && i < qf_pool_size(c->pool); i++) free(c->scratch[i]);
    free(c->scratch);
    qf_pool_free(c->pool);
    float *bufs[] = {c->x, c->xn, c->q, c->kx, c->vx, c->att, c->g, c->u, c->o, c->logits, c->xpack, c->kc, c->vc,
                     c->rope_cos, c->rope_sin, c->norm_scale, c->xq_d, c->xq_ds};
    for (size_t i = 0; i < QF_ARRAY_LEN(bufs); i++) free(bufs[i]);
    free(c->norm_acc);
    free(c->xq);
    free(c->xq_s);
    free(c);
}

void qf_rt_ctx_clear(qf_rt_ctx *c) { c->n_past = 0; }

void qf_rt_ctx_set_act_q8(qf_rt_ctx *c, bool on) { c->act_q8 = on; }

double qf_rt_eval_seconds(const qf_rt_ctx *c) { return c->eval_s; }

void qf_rt_parallel(qf_rt_ctx *c, void (*fn)(void *arg, int ith, int nth), void *arg) { qf_pool_run(c->pool, fn, arg); }

int qf_rt_n_threads(const qf_rt_ctx *c) { return qf_pool_size(c->pool); }

/* ---- matmul ------------------------------------------------------------------------------------- */

/* Up to three weights that read the same input (q/k/v, gate/up) run as one job, so the pool wakes once.
 *
 * The input is first packed tile by tile ([tile][K][nt], contiguous): rows of a feature-major matrix are
 * ld floats apart, a power of two times 64 bytes, and walking K of them maps onto a handful of cache
 * sets; packed, a tile streams through the caches linearly. Each thread takes a contiguous range of
 * QF_RT_MR-row panels; tiles are visited in groups that fit in L2 (each panel is dequantized once per
 * group, which is cheap next to the tile work it feeds). */
typedef struct mm_part {
    const qf_rt_weight *w;
    float *y;          /* [w->n_rows][ldy] */
    size_t ldy;
    const float *bias; /* [w->n_rows] or NULL */
    bool q8;           /* runs on the 8-bit path (set by matmul) */
    uint32_t rows;     /* weight rows per panel: the integer kernel's height, or QF_RT_MR (set by matmul) */
    bool stream;       /* y is written once and read after the pass (the logits): may bypass the caches */
} mm_part;

typedef struct mm_job {
    qf_rt_ctx *c;
    const float *xp;   /* packed input */
    size_t K, tiles, group; /* input features, tiles of nt columns, tiles per L2 group */
    size_t qtiles, qgroup;  /* 8-bit path: tiles of QF_RT_QT columns, tiles per L2 group */
    mm_part part[3];
    int n_part;
} mm_job;

#define MM_GROUP_BYTES (512u * 1024u)
#ifndef MM_QGROUP_BYTES
#define MM_QGROUP_BYTES (256u * 1024u) /* levels only: scales and sums add 1/8 */
#endif

static uint64_t panels_of(const mm_part *p) { return (p->w->n_rows + p->rows - 1) / p->rows; }

static void add_bias(const mm_part *p, uint64_t r0, int mr, size_t c0, size_t c1) {
    size_t ld = p->ldy;
    for (int r = 0; r < mr; r++) {
        float *yr = p->y + (r0 + (uint64_t)r) * ld, b = p->bias[r0 + (uint64_t)r];
        for (size_t t = c0; t < c1; t++) yr[t] += b;
    }
}

/* The activation tile t of the 8-bit path. */
static qf_rt_xq xq_tile(const qf_rt_ctx *c, size_t K, size_t t) {
    qf_rt_xq first = {.q = c->xq, .d = c->xq_d, .ds = c->xq_ds, .s = c->xq_s};
    return qf_rt_xq_next(&first, K / 32, t);
}

/* 8-bit path: decode the kernel's panel height of rows (fewer at the end: the rest zeroed) to levels and
 * scales, sweep tiles [g0, g1) with them. */
static void mm_panel_q8(const mm_job *j, const mm_part *p, uint64_t panel, size_t g0, size_t g1, void *scratch) {
    qf_rt_ctx *c = j->c;
    size_t K = j->K;
    uint64_t R = p->rows, r0 = panel * R;
    int mr = (int)QF_MIN(R, p->w->n_rows - r0);
    uint8_t *wq = scratch;
    float *ws = (float *)(wq + round_up(R * K, 64));
    qf_rt_wq w;
    qf_rt_weight_rows_q8(p->w, r0, (uint64_t)mr, R, c->qk->sgn, wq, ws, &w);
    /* the logits (hundreds of MB written once) miss every cache: waiting for their lines to be fetched
     * for writing stalled the AMX tile more than its own work, so they are streamed */
    w.stream = p->stream;
    /* the stored rows stream from memory once per batch: fetch the next panel's while this one computes,
     * spread over the tile calls (a burst of a whole panel's lines filled the line-fill buffers and
     * stalled) */
    const uint8_t *next = p->w->data + (r0 + R) * p->w->row_bytes;
    uint64_t next_bytes = r0 + R < p->w->n_rows ? QF_MIN(R, p->w->n_rows - r0 - R) * p->w->row_bytes : 0;
    uint64_t per_tile = round_up((next_bytes + (g1 - g0) - 1) / (g1 - g0), 64), pf = 0;
    if (c->qk->qtiles) { /* the kernel spreads the prefetch of the next panel over its work */
        w.pf = next;
        w.pf_len = (size_t)next_bytes;
        qf_rt_xq x = xq_tile(c, K, g0);
        c->qk->qtiles(&w, &x, K / 32, g1 - g0, p->y + r0 * p->ldy + g0 * QF_RT_QT, p->ldy, mr);
    } else {
        for (size_t t = g0; t < g1; t++) {
            qf_rt_xq x = xq_tile(c, K, t);
            float *y = p->y + r0 * p->ldy + t * QF_RT_QT;
            for (uint64_t e = QF_MIN(pf + per_tile, next_bytes); pf < e; pf += 64) __builtin_prefetch(next + pf);
            c->qk->qtile(&w, &x, K / 32, y, p->ldy, mr);
        }
    }
    if (p->bias) add_bias(p, r0, mr, g0 * QF_RT_QT, g1 * QF_RT_QT);
}

/* One panel against tiles [g0, g1): dequantize QF_RT_MR (or fewer) rows, sweep the tiles with them. */
static void mm_panel(const mm_job *j, const mm_part *p, uint64_t panel, size_t g0, size_t g1, float *wbuf) {
    const qf_rt_kern *k = j->c->k;
    size_t K = j->K, nt = k->nt;
    uint64_t r0 = panel * QF_RT_MR;
    int mr = (int)QF_MIN((uint64_t)QF_RT_MR, p->w->n_rows - r0);
    qf_rt_weight_rows(p->w, r0, (uint64_t)mr, wbuf);
    for (size_t t = g0; t < g1; t++)
        k->tile(wbuf, K, K, j->xp + t * K * nt, nt, p->y + r0 * p->ldy + t * nt, p->ldy, mr);
    if (p->bias) add_bias(p, r0, mr, g0 * nt, g1 * nt);
}

/* Panels [lo, hi) of the job's parts on path q8 (or F32), against tiles [g0, g1) of that path. */
static void mm_sweep(const mm_job *j, uint64_t lo, uint64_t hi, bool q8, size_t g0, size_t g1, void *scratch) {
    uint64_t base = 0;
    for (int i = 0; i < j->n_part; i++) {
        const mm_part *p = &j->part[i];
        uint64_t n = panels_of(p);
        for (uint64_t q = QF_MAX(lo, base); q < QF_MIN(hi, base + n) && p->q8 == q8; q++) {
            if (q8) mm_panel_q8(j, p, q - base, g0, g1, scratch);
            else mm_panel(j, p, q - base, g0, g1, scratch);
        }
        base += n;
    }
}

/* Each thread takes a contiguous range of panels; tiles go by L2-sized groups so that a group's input
 * stays in L2 while every panel of the range passes over it (a panel is decoded once per group). */
static void mm_worker(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    uint64_t total = 0;
    for (int i = 0; i < j->n_part; i++) total += panels_of(&j->part[i]);
    uint64_t lo = total * (uint64_t)ith / (uint64_t)nth, hi = total * (uint64_t)(ith + 1) / (uint64_t)nth;
    for (size_t g0 = 0; g0 < j->tiles; g0 += j->group)
        mm_sweep(j, lo, hi, false, g0, QF_MIN(g0 + j->group, j->tiles), j->c->scratch[ith]);
    for (size_t g0 = 0; g0 < j->qtiles; g0 += j->qgroup)
        mm_sweep(j, lo, hi, true, g0, QF_MIN(g0 + j->qgroup, j->qtiles), j->c->scratch[ith]);
}

typedef struct xq_job {
    qf_rt_ctx *c;
    const float *x;
    size_t K, tiles;
} xq_job;

static void xq_worker(void *arg, int ith, int nth) {
    const xq_job *q = arg;
    size_t lo = q->tiles * (size_t)ith / (size_t)nth, hi = q->tiles * (size_t)(ith + 1) / (size_t)nth;
    for (size_t t = lo; t < hi; t++) {
        qf_rt_xq x = xq_tile(q->c, q->K, t);
        q->c->qk->xquant(q->x + t * QF_RT_QT, q->c->ld, q->K / 32, &x);
    }
}

/* x [K][ld] -> c->xpack [tile][K][nt] for the first `tiles` tiles. */
static void pack_input(qf_rt_ctx *c, const float *x, size_t K, size_t tiles) {
    size_t nt = c->k->nt;
    for (size_t t = 0; t < tiles; t++)
        for (size_t kk = 0; kk < K; kk++) memcpy(c->xpack + (t * K + kk) * nt, x + kk * c->ld + t * nt, nt * sizeof(float));
}

/* Report x (laid out as `in`) to the observer, one sequence at a time so it never sees padding. */
static void observe(qf_rt_ctx *c, const mm_job *j, const float *x, const shape *in) {
    for (int i = 0; c->observer && i < j->n_part; i++)
        for (uint32_t s = 0; s < in->n_seq; s++)
            c->observer(c->observer_user, j->part[i].w, c->n_calls, x + s * in->stride, c->ld, in->len);
    c->n_calls++;
}

static void matmul(qf_rt_ctx *c, const float *x, const shape *in, mm_part a, mm_part b, mm_part d) {
    size_t K = a.w->row_len, nt = c->k->nt, n_cols = in->cols;
    mm_job j = {.c = c, .xp = c->xpack, .K = K, .tiles = (n_cols + nt - 1) / nt};
    j.group = QF_MAX((size_t)1, MM_GROUP_BYTES / (K * nt * sizeof(float)));
    j.qtiles = (j.tiles * nt + QF_RT_QT - 1) / QF_RT_QT;
    j.qgroup = QF_MAX((size_t)1, MM_QGROUP_BYTES / (K * QF_RT_QT));
    mm_part parts[3] = {a, b, d};
    bool any_f32 = false, any_q8 = false;
    for (int i = 0; i < 3; i++) {
        if (!parts[i].w) continue;
        parts[i].q8 = c->act_q8 && qf_rt_weight_has_q8(parts[i].w);
        parts[i].rows = parts[i].q8 ? c->qk->rows : QF_RT_MR;
        any_q8 |= parts[i].q8;
        any_f32 |= !parts[i].q8;
        j.part[j.n_part++] = parts[i];
    }
    if (any_f32) pack_input(c, x, K, j.tiles);
    if (any_q8) {
        xq_job q = {.c = c, .x = x, .K = K, .tiles = (n_cols + QF_RT_QT - 1) / QF_RT_QT};
        qf_pool_run(c->pool, xq_worker, &q);
    }
    observe(c, &j, x, in);
    qf_pool_run(c->pool, mm_worker, &j);
}

#define NO_PART ((mm_part){0})

/* A product into an activation matrix (leading dimension ld). */
static mm_part part(const qf_rt_ctx *c, const qf_rt_weight *w, float *y, const float *bias) {
    return (mm_part){.w = w, .y = y, .ldy = c->ld, .bias = bias};
}

void qf_rt_ctx_set_observer(qf_rt_ctx *c, qf_rt_observer fn, void *user) {
    c->observer = fn;
    c->observer_user = user;
}

/* ---- column-wise elementwise steps ------------------------------------------------------------------ */

/* y = x / sqrt(mean(x^2) + eps) * w per token column; the sum of squares in double (as ggml does).
 * The column loops vectorize across tokens without changing any operation or its order, so every build of
 * them returns the same bits; with AVX-512 active they are compiled for it (the file's baseline is SSE2).
 * No multiply feeds an add in one expression, so no compiler can contract them into FMAs. */
static inline __attribute__((always_inline)) void rmsnorm_body(qf_rt_ctx *c, const float *x, float *y, const float *w,
                                                                uint32_t n) {
    size_t ld = c->ld, E = c->m->hp.n_embd;
    double *acc = c->norm_acc;
    float *scale = c->norm_scale;
    for (uint32_t t = 0; t < n; t++) acc[t] = 0;
    for (size_t f = 0; f < E; f++) {
        const float *xf = x + f * ld;
        for (uint32_t t = 0; t < n; t++) acc[t] += (double)(xf[t] * xf[t]);
    }
    for (uint32_t t = 0; t < n; t++) scale[t] = 1.0f / sqrtf((float)(acc[t] / (double)E) + c->m->hp.rms_eps);
    for (size_t f = 0; f < E; f++) {
        const float *xf = x + f * ld;
        float *yf = y + f * ld, wf = w[f];
        for (uint32_t t = 0; t < n; t++) yf[t] = xf[t] * scale[t] * wf;
    }
}

static inline __attribute__((always_inline)) void add_into_body(float *x, const float *o, size_t rows, size_t ld,
                                                                 uint32_t n) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        const float *orow = o + r * ld;
        for (uint32_t t = 0; t < n; t++) xr[t] += orow[t];
    }
}

#ifdef __clang__
#define WIDE __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#else
#define WIDE __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")))
#endif
WIDE static void rmsnorm_wide(qf_rt_ctx *c, const float *x, float *y, const float *w, uint32_t n) { rmsnorm_body(c, x, y, w, n); }
WIDE static void add_into_wide(float *x, const float *o, size_t rows, size_t ld, uint32_t n) { add_into_body(x, o, rows, ld, n); }

static void rmsnorm(qf_rt_ctx *c, const float *x, float *y, const float *w, uint32_t n) {
    if (c->wide) rmsnorm_wide(c, x, y, w, n);
    else rmsnorm_body(c, x, y, w, n);
}

static void add_into(const qf_rt_ctx *c, float *x, const float *o, size_t rows, uint32_t n) {
    if (c->wide) add_into_wide(x, o, rows, c->ld, n);
    else add_into_body(x, o, rows, c->ld, n);
}

/* cos/sin of position * scale / div[i] * theta^(-2i/hd) for the batch's positions, computed in double.
 * Column t is at position pos0 + t % stride (padding columns get some position too: harmless). */
static void rope_tables(qf_rt_ctx *c) {
    const shape *sh = &c->sh;
    const qf_rt_model *m = c->m;
    uint32_t half = m->hp.head_dim / 2;
    for (uint32_t i = 0; i < half; i++) {
        double freq = pow((double)m->hp.rope_theta, -2.0 * i / (double)m->hp.head_dim) * m->rope_scale;
        if (m->rope_div) freq /= m->rope_div[i];
        for (size_t t = 0; t < sh->cols; t++) {
            double th = (double)(sh->pos0 + t % sh->stride) * freq;
            c->rope_cos[i * c->ld + t] = (float)cos(th);
            c->rope_sin[i * c->ld + t] = (float)sin(th);
        }
    }
}

/* Rotate the pairs of every head of x ([n_heads * hd][ld]): NEOX pairs (i, i + hd/2) or adjacent pairs. */
static void rope_apply(const qf_rt_ctx *c, float *x, uint32_t n_heads, uint32_t n) {
    uint32_t hd = c->m->hp.head_dim, half = hd / 2;
    size_t ld = c->ld;
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < half; i++) {
            size_t ra = (size_t)h * hd + (c->m->rope_neox ? i : 2 * i);
            size_t rb = ra + (c->m->rope_neox ? half : 1);
            float *a = x + ra * ld, *b = x + rb * ld;
            const float *cs = c->rope_cos + (size_t)i * ld, *sn = c->rope_sin + (size_t)i * ld;
            for (uint32_t t = 0; t < n; t++) {
                float x0 = a[t], x1 = b[t];
                a[t] = x0 * cs[t] - x1 * sn[t];
                b[t] = x0 * sn[t] + x1 * cs[t];
            }
        }
}

/* Append each sequence's k and v to its slot of layer l's cache at positions pos0 .. pos0+len-1. */
static void cache_store(qf_rt_ctx *c, uint32_t l) {
    const qf_hparams *hp = &c->m->hp;
    const shape *sh = &c->sh;
    size_t hd = hp->head_dim, ld = c->ld, per_head = c->kv_len * hd;
    float *kl = c->kc + (size_t)l * hp->n_head_kv * per_head, *vl = c->vc + (size_t)l * hp->n_head_kv * per_head;
    for (uint32_t s = 0; s < sh->n_seq; s++) {
        size_t p0 = (size_t)s * c->n_ctx + sh->pos0, col = s * sh->stride;
        for (size_t g = 0; g < hp->n_head_kv; g++)
            for (size_t d = 0; d < hd; d++) {
                const float *ks = c->kx + (g * hd + d) * ld + col, *vs = c->vx + (g * hd + d) * ld + col;
                float *kd = kl + g * per_head + p0 * hd + d;
                for (uint32_t t = 0; t < sh->len; t++) kd[(size_t)t * hd] = ks[t];
                memcpy(vl + g * per_head + d * c->kv_len + p0, vs, sh->len * sizeof(float));
            }
    }
}

/* ---- attention ---------------------------------------------------------------------------------- */

typedef struct attn_job {
    qf_rt_ctx *c;
    uint32_t layer;
} attn_job;

/* One head of sequence `seq` over one tile of nt queries (its tokens t0 ..): scores = K q (tile kernel
 * over the position-major K cache), softmax, out = V p (tile kernel over the dimension-major V cache),
 * both over the sequence's own cache slot. */
static void attn_tile(const attn_job *a, uint32_t seq, uint32_t h, uint32_t t0, float *s) {
    qf_rt_ctx *c = a->c;
    const qf_hparams *hp = &c->m->hp;
    const qf_rt_kern *k = c->k;
    const shape *sh = &c->sh;
    uint32_t hd = hp->head_dim, nt = k->nt, g = h / (hp->n_head / hp->n_head_kv);
    uint32_t t1 = QF_MIN(t0 + nt, sh->len), n_keys = sh->pos0 + t1;
    size_t ld = c->ld, per_head = c->kv_len * hd, slot = (size_t)seq * c->n_ctx;
    size_t col = seq * sh->stride + t0;
    const float *kh = c->kc + ((size_t)a->layer * hp->n_head_kv + g) * per_head + slot * hd;
    const float *vh = c->vc + ((size_t)a->layer * hp->n_head_kv + g) * per_head + slot;
    const float *qh = c->q + (size_t)h * hd * ld + col;
    for (uint32_t p = 0; p < n_keys; p += QF_RT_MR)
        k->tile(kh + (size_t)p * hd, hd, hd, qh, ld, s + (size_t)p * nt, nt, (int)QF_MIN((uint32_t)QF_RT_MR, n_keys - p));
    float *tmp = s + ((size_t)c->n_ctx + 1) * nt, *inv = tmp + nt;
    /* unnormalized: the hd outputs are scaled by inv instead of the n_keys probabilities */
    k->softmax(s, n_keys, sh->pos0 + t0, 1.0f / sqrtf((float)hd), tmp, inv);
    float *out = c->att + (size_t)h * hd * ld + col;
    for (uint32_t d = 0; d < hd; d += QF_RT_MR)
        k->tile(vh + (size_t)d * c->kv_len, c->kv_len, n_keys, s, nt, out + (size_t)d * ld, ld,
                (int)QF_MIN((uint32_t)QF_RT_MR, hd - d));
    for (uint32_t d = 0; d < hd; d++)
        for (uint32_t j = 0; j < nt; j++) out[(size_t)d * ld + j] *= inv[j];
}

static void attn_worker(void *arg, int ith, int nth) {
    const attn_job *a = arg;
    const shape *sh = &a->c->sh;
    uint32_t nt = a->c->k->nt, tiles = (sh->len + nt - 1) / nt, heads = a->c->m->hp.n_head;
    uint32_t tasks = sh->n_seq * heads * tiles;
    /* round-robin: later query tiles see more keys, so contiguous ranges would be unbalanced */
    for (uint32_t i = (uint32_t)ith; i < tasks; i += (uint32_t)nth)
        attn_tile(a, i / (heads * tiles), i / tiles % heads, (i % tiles) * nt, a->c->scratch[ith]);
}

/* ---- SwiGLU ------------------------------------------------------------------------------------- */

typedef struct glu_job {
    qf_rt_ctx *c;
    size_t cols;
} glu_job;

/* g = silu(g) * u = g / (1 + e^-g) * u, rows split across threads. */
static void glu_worker(void *arg, int ith, int nth) {
    const glu_job *j = arg;
    qf_rt_ctx *c = j->c;
    size_t F = c->m->hp.n_ff, lo = F * (size_t)ith / (size_t)nth, hi = F * (size_t)(ith + 1) / (size_t)nth;
    float *e = c->scratch[ith];
    for (size_t r = lo; r < hi; r++) c->k->glu(c->g + r * c->ld, c->u + r * c->ld, e, j->cols);
}

/* ---- the pass ----------------------------------------------------------------------------------- */

/* x = the token embeddings in their columns; the padding between sequences is zeroed so that it stays
 * finite through every call. */
static void embed(qf_rt_ctx *c, const int32_t *tokens) {
    const shape *sh = &c->sh;
    size_t E = c->m->hp.n_embd;
    float *row = c->scratch[0];
    for (size_t f = 0; f < E; f++) memset(c->x + f * c->ld, 0, sh->cols * sizeof(float));
    for (uint32_t s = 0; s < sh->n_seq; s++)
        for (uint32_t t = 0; t < sh->len; t++) {
            qf_rt_weight_rows(&c->m->tok_embd, (uint64_t)tokens[(size_t)s * sh->len + t], 1, row);
            for (size_t f = 0; f < E; f++) c->x[f * c->ld + s * sh->stride + t] = row[f];
        }
}

static void layer_forward(qf_rt_ctx *c, uint32_t l) {
    const qf_hparams *hp = &c->m->hp;
    const qf_rt_layer *L = &c->m->layers[l];
    const shape *sh = &c->sh;
    uint32_t n = (uint32_t)sh->cols;
    rmsnorm(c, c->x, c->xn, L->attn_norm, n);
    matmul(c, c->xn, sh, part(c, &L->wq, c->q, L->bq), part(c, &L->wk, c->kx, L->bk), part(c, &L->wv, c->vx, L->bv));
    rope_apply(c, c->q, hp->n_head, n);
    rope_apply(c, c->kx, hp->n_head_kv, n);
    cache_store(c, l);
    attn_job aj = {.c = c, .layer = l};
    qf_pool_run(c->pool, attn_worker, &aj);
    matmul(c, c->att, sh, part(c, &L->wo, c->o, NULL), NO_PART, NO_PART);
    add_into(c, c->x, c->o, hp->n_embd, n);
    rmsnorm(c, c->x, c->xn, L->ffn_norm, n);
    matmul(c, c->xn, sh, part(c, &L->wg, c->g, NULL), part(c, &L->wu, c->u, NULL), NO_PART);
    glu_job gj = {.c = c, .cols = round_up(n, c->k->nt)};
    qf_pool_run(c->pool, glu_worker, &gj);
    matmul(c, c->g, sh, part(c, &L->wd, c->o, NULL), NO_PART, NO_PART);
    add_into(c, c->x, c->o, hp->n_embd, n);
}

/* Logits for tokens out_from .. len-1 of every sequence of the pass, into logit columns out_base ..:
 * gather them to the front (sequence after sequence, no padding), norm, project. */
static void output_forward(qf_rt_ctx *c, uint32_t out_from, size_t out_base) {
    const shape *sh = &c->sh;
    size_t E = c->m->hp.n_embd, per = sh->len - out_from, n_out = sh->n_seq * per;
    for (size_t f = 0; f < E; f++)
        for (uint32_t s = 0; s < sh->n_seq; s++)
            memmove(c->o + f * c->ld + s * per, c->x + f * c->ld + s * sh->stride + out_from, per * sizeof(float));
    rmsnorm(c, c->o, c->xn, c->m->output_norm, (uint32_t)n_out);
    shape out = {.n_seq = 1, .len = (uint32_t)n_out, .stride = round_up(n_out, QF_RT_PAD), .cols = n_out};
    mm_part logits = {.w = &c->m->output, .y = c->logits + out_base, .ldy = c->ld_out, .stream = true};
    matmul(c, c->xn, &out, logits, NO_PART, NO_PART);
}

static qf_status check_tokens(const qf_rt_ctx *c, const int32_t *tokens, size_t n, qf_error *err) {
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= c->m->hp.n_vocab)
            return qf_fail(err, QF_E_INPUT, "token id %d at batch index %zu is outside the vocabulary of %u", tokens[t], t,
                           c->m->hp.n_vocab);
    return QF_OK;
}

static qf_status check_batch(const qf_rt_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, qf_error *err) {
    if (n == 0 || n > QF_MIN(c->n_batch, c->n_ctx))
        return qf_fail(err, QF_E_USAGE, "batch of %u tokens; this context takes 1..%u", n, QF_MIN(c->n_batch, c->n_ctx));
    if (pos0 != c->n_past)
        return qf_fail(err, QF_E_USAGE, "batch starts at position %u but the cache holds %u positions", pos0, c->n_past);
    if ((uint64_t)pos0 + n > c->n_ctx)
        return qf_fail(err, QF_E_USAGE, "positions up to %llu exceed the context of %u",
                       (unsigned long long)pos0 + n, c->n_ctx);
    return check_tokens(c, tokens, n, err);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One pass over the shape in c->sh, its logits from column out_base. */
static void forward(qf_rt_ctx *c, const int32_t *tokens, uint32_t out_from, size_t out_base) {
    embed(c, tokens);
    rope_tables(c);
    for (uint32_t l = 0; l < c->m->hp.n_layer; l++) layer_forward(c, l);
    if (out_from < c->sh.len) output_forward(c, out_from, out_base);
}

qf_status qf_rt_eval(qf_rt_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, uint32_t out_from,
                     const float **logits, size_t *ld, qf_error *err) {
    qf_status st = check_batch(c, tokens, n, pos0, err);
    if (st) return st;
    double t_start = now_s();
    c->sh = (shape){.n_seq = 1, .len = n, .pos0 = pos0, .stride = round_up(n, QF_RT_PAD), .cols = n};
    forward(c, tokens, out_from, 0);
    c->n_past = pos0 + n;
    c->eval_s += now_s() - t_start;
    *logits = c->logits;
    *ld = c->ld_out;
    return QF_OK;
}

qf_status qf_rt_eval_seqs(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, uint32_t len, uint32_t out_from,
                          const float **logits, size_t *ld, qf_error *err) {
    if (n_seq == 0 || n_seq > c->n_seq_max || len == 0 || len > c->n_ctx)
        return qf_fail(err, QF_E_USAGE, "%u sequences of %u tokens; this context takes 1..%u sequences of 1..%u",
                       n_seq, len, c->n_seq_max, c->n_ctx);
    qf_status st = check_tokens(c, tokens, (size_t)n_seq * len, err);
    if (st) return st;
    double t_start = now_s();
    size_t stride = round_up(len, QF_RT_PAD), per_out = out_from < len ? len - out_from : 0;
    for (uint32_t s0 = 0; s0 < n_seq; s0 += c->n_seq_pass) {
        uint32_t n = QF_MIN(c->n_seq_pass, n_seq - s0);
        c->sh = (shape){.n_seq = n, .len = len, .stride = stride, .cols = (n - 1) * stride + len};
        forward(c, tokens + (size_t)s0 * len, out_from, s0 * per_out);
    }
    c->n_past = 0; /* the slots are not continued: qf_rt_eval starts over */
    c->eval_s += now_s() - t_start;
    *logits = c->logits;
    *ld = c->ld_out;
    return QF_OK;
}
