/* cpu_matmul.c — the CPU backend's matrix products (cpu_state.h): F32 tiles over dequantized weight panels,
 * or the opt-in 8-bit path (rt_kern.h). */
#include "runtime/cpu_state.h"

#include <math.h>

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
    qf_be *c;
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
static qf_rt_xq xq_tile(const qf_be *c, size_t K, size_t t) {
    qf_rt_xq first = {.q = c->xq, .d = c->xq_d, .ds = c->xq_ds, .s = c->xq_s};
    return qf_rt_xq_next(&first, K / 32, t);
}

/* 8-bit path: decode the kernel's panel height of rows (fewer at the end: the rest zeroed) to levels and
 * scales, sweep tiles [g0, g1) with them. */
static void mm_panel_q8(const mm_job *j, const mm_part *p, uint64_t panel, size_t g0, size_t g1, void *scratch) {
    qf_be *c = j->c;
    size_t K = j->K;
    uint64_t R = p->rows, r0 = panel * R;
    int mr = (int)QF_MIN(R, p->w->n_rows - r0);
    uint8_t *wq = scratch;
    float *ws = (float *)(wq + qf_round_up(R * K, 64));
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
    uint64_t per_tile = qf_round_up((next_bytes + (g1 - g0) - 1) / (g1 - g0), 64), pf = 0;
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
    qf_be *c;
    const float *x;
    size_t ldx, K, tiles;
} xq_job;

static void xq_worker(void *arg, int ith, int nth) {
    const xq_job *q = arg;
    size_t lo = q->tiles * (size_t)ith / (size_t)nth, hi = q->tiles * (size_t)(ith + 1) / (size_t)nth;
    for (size_t t = lo; t < hi; t++) {
        qf_rt_xq x = xq_tile(q->c, q->K, t);
        q->c->qk->xquant(q->x + t * QF_RT_QT, q->ldx, q->K / 32, &x);
    }
}

/* x [K][ldx] -> c->xpack [tile][K][nt] for the first `tiles` tiles. */
static void pack_input(qf_be *c, const float *x, size_t ldx, size_t K, size_t tiles) {
    size_t nt = c->k->nt;
    for (size_t t = 0; t < tiles; t++)
        for (size_t kk = 0; kk < K; kk++) memcpy(c->xpack + (t * K + kk) * nt, x + kk * ldx + t * nt, nt * sizeof(float));
}

/* Report x to the observer: one sequence at a time (`in`) so it never sees padding, or all n_cols of a
 * gathered expert input. */
static void observe(qf_be *c, const mm_job *j, const float *x, size_t ldx, size_t n_cols, const qf_be_pass *in) {
    const qf_rt_observer *o = c->obs;
    for (int i = 0; o && o->matmul && i < j->n_part; i++) {
        if (!in) { o->matmul(o->user, j->part[i].w, c->n_calls, x, ldx, (uint32_t)n_cols); continue; }
        for (uint32_t s = 0; s < in->n_seq; s++) o->matmul(o->user, j->part[i].w, c->n_calls, x + s * in->stride, ldx, in->len);
    }
    c->n_calls++;
}

/* The first non-finite output names where a NaN or Inf entered the model (issue of trust: a NaN in one
 * scale must fail the run, not average away). Costs one pass over the outputs, rows x n_cols floats. */
void qf_cpu_note_nonfinite(qf_be *be, const float *y, size_t rows, size_t ldy, size_t n_cols, const char *what, int layer) {
    if (be->nonfinite[0]) return;
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * ldy;
        float acc = 0.0f;
        for (size_t t = 0; t < n_cols; t++) acc += yr[t] * 0.0f; /* NaN iff some yr[t] is NaN or Inf */
        if (acc == acc) continue;
        for (size_t t = 0; t < n_cols; t++) {
            if (isfinite(yr[t]) || (be->pass.stride && n_cols == be->pass.cols && !qf_cpu_is_token(&be->pass, t))) continue;
            if (layer >= 0) snprintf(be->nonfinite, sizeof be->nonfinite, "layer %d %s", layer, what);
            else snprintf(be->nonfinite, sizeof be->nonfinite, "%s", what);
            return;
        }
    }
}

void qf_cpu_matmul(qf_be *c, const float *x, size_t ldx, size_t n_cols, const qf_be_pass *in, const qf_be_mm *mm,
                   int n_mm) {
    size_t K = mm[0].w->row_len, nt = c->k->nt;
    mm_job j = {.c = c, .xp = c->xpack, .K = K, .tiles = (n_cols + nt - 1) / nt};
    j.group = QF_MAX((size_t)1, MM_GROUP_BYTES / (K * nt * sizeof(float)));
    j.qtiles = (j.tiles * nt + QF_RT_QT - 1) / QF_RT_QT;
    j.qgroup = QF_MAX((size_t)1, MM_QGROUP_BYTES / (K * QF_RT_QT));
    bool any_f32 = false, any_q8 = false;
    for (int i = 0; i < n_mm; i++) {
        mm_part p = {.w = mm[i].w, .y = mm[i].y, .ldy = mm[i].ldy, .bias = mm[i].bias, .stream = mm[i].host};
        p.q8 = c->act_q8 && qf_rt_weight_has_q8(p.w);
        p.rows = p.q8 ? c->qk->rows : QF_RT_MR;
        any_q8 |= p.q8;
        any_f32 |= !p.q8;
        j.part[j.n_part++] = p;
    }
    if (any_f32) pack_input(c, x, ldx, K, j.tiles);
    if (any_q8) {
        xq_job q = {.c = c, .x = x, .ldx = ldx, .K = K, .tiles = (n_cols + QF_RT_QT - 1) / QF_RT_QT};
        qf_pool_run(c->pool, xq_worker, &q);
    }
    observe(c, &j, x, ldx, n_cols, in);
    qf_pool_run(c->pool, mm_worker, &j);
    for (int i = 0; i < n_mm && !c->nonfinite[0]; i++)
        qf_cpu_note_nonfinite(c, mm[i].y, mm[i].w->n_rows, mm[i].ldy, n_cols, qf_role_name(mm[i].w->role), mm[i].w->layer);
}
