/* cpu.c — the CPU backend (backend.h): buffers, the pass's rotary tables, the elementwise steps and
 * attention. Products are in cpu_matmul.c, routing and experts in cpu_moe.c. */
#include "runtime/cpu_state.h"

#include "kernels/cpu.h"

#include <math.h>

_Static_assert(QF_BE_PAD % QF_RT_PAD == 0, "the graph's column padding must hold whole CPU tiles");

/* ---- buffers ------------------------------------------------------------------------------------ */

/* Zeroed and touched: a large calloc maps its pages lazily, and the first call would pay the faults
 * (hundreds of MB of logits at the default batch) inside the timed forward pass. malloc + memset, not
 * calloc + memset: the compiler drops a memset of zeros after calloc (it did, and the faults of the
 * logits were a third of --act q8's eval time on qf-llama-a). 64-byte aligned: a kernel's vector of 16
 * outputs is then one whole cache line. */
static float *alloc_aligned(uint64_t n) {
    uint64_t bytes = 0;
    if (!qf_mul_ok(n, sizeof(float), &bytes) || bytes > SIZE_MAX - 64) return NULL;
    float *p = aligned_alloc(64, qf_round_up(bytes ? (size_t)bytes : 1, 64));
    if (p) memset(p, 0, (size_t)bytes);
    return p;
}

static float *be_alloc(qf_be *be, uint64_t n) {
    if (be->n_bufs == be->cap_bufs) {
        size_t cap = be->cap_bufs * 2 + 16;
        float **b = realloc(be->bufs, cap * sizeof *b);
        if (!b) return NULL;
        be->bufs = b;
        be->cap_bufs = cap;
    }
    float *p = alloc_aligned(n);
    if (p) be->bufs[be->n_bufs++] = p;
    if (p) be->bytes += n * sizeof(float);
    return p;
}

static qf_status need(float **p, qf_be *be, uint64_t n, uint64_t m, qf_error *err) {
    uint64_t total;
    *p = qf_mul_ok(n, m, &total) ? be_alloc(be, total) : NULL;
    return *p ? QF_OK : qf_fail(err, QF_E_NOMEM, "out of memory for %llu x %llu floats of runtime buffers",
                                (unsigned long long)n, (unsigned long long)m);
}

/* Bytes of one decoded panel of the 8-bit path: levels, then scales and min terms (model.c). */
static size_t q8_panel_bytes(size_t rows, size_t K) {
    return qf_round_up(rows * K, 64) + 2 * rows * (K / 16) * sizeof(float);
}

/* The widest input any product of the model reads, and the widest expert FFN. */
static void model_widths(const qf_rt_model *m, size_t *kmax, size_t *ff_exp) {
    size_t n = qf_rt_model_weights(m, NULL);
    const qf_rt_weight **w = qf_malloc_n(n ? n : 1, sizeof *w);
    *kmax = m->hp.n_embd;
    *ff_exp = 0;
    if (w) {
        qf_rt_model_weights(m, w);
        for (size_t i = 0; i < n; i++) {
            *kmax = QF_MAX(*kmax, (size_t)w[i]->row_len);
            if (w[i]->expert >= 0) *ff_exp = QF_MAX(*ff_exp, (size_t)QF_MAX(w[i]->row_len, w[i]->n_rows));
        }
    }
    free(w);
}

static qf_status alloc_state(qf_be *be, qf_error *err) {
    const qf_hparams *hp = &be->m->hp;
    size_t ff_exp;
    model_widths(be->m, &be->kmax, &ff_exp);
    uint64_t cache = (uint64_t)be->kv_layers * hp->n_head_kv * be->kv_len;
    be->rope_half = hp->n_rot / 2;
    qf_status st;
    if ((st = need(&be->xpack, be, be->kmax, be->ld, err)) || (st = need(&be->kc, be, cache, be->dk, err)) ||
        (st = need(&be->vc, be, cache, be->dv, err)) || (st = need(&be->rope_cos, be, be->rope_half, be->ld, err)) ||
        (st = need(&be->rope_sin, be, be->rope_half, be->ld, err)) || (st = need(&be->norm_scale, be, be->ld, 1, err)) ||
        (st = need(&be->xq_d, be, be->kmax / 32 + 1, be->ld, err)) ||
        (st = need(&be->xq_ds, be, be->kmax / 32 + 1, be->ld, err)))
        return st;
    if (!(be->norm_acc = qf_calloc_n(be->ld, sizeof(double)))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    /* the 8-bit path's buffers are small next to the F32 ones: allocated whatever the mode */
    be->xq = qf_calloc_n(be->kmax, be->ld);
    be->xq_s = qf_calloc_n(be->kmax / 16 + 1, be->ld * sizeof(int32_t));
    if (!be->xq || !be->xq_s) return qf_fail(err, QF_E_NOMEM, "out of memory for 8-bit activations");
    be->bytes += be->kmax * be->ld + (be->kmax / 16 + 1) * be->ld * sizeof(int32_t) + be->ld * sizeof(double);
    if (!hp->n_expert) return QF_OK;
    uint64_t pairs = (uint64_t)be->ld * hp->n_expert_used;
    be->route_e = qf_calloc_n(pairs, sizeof *be->route_e);
    be->route_w = qf_calloc_n(pairs, sizeof *be->route_w);
    be->by_expert = qf_calloc_n(pairs, sizeof *be->by_expert);
    be->ex_start = qf_calloc_n(hp->n_expert + 1, sizeof *be->ex_start);
    be->ex_fill = qf_calloc_n(hp->n_expert + 1, sizeof *be->ex_fill);
    if (!be->route_e || !be->route_w || !be->by_expert || !be->ex_start || !be->ex_fill)
        return qf_fail(err, QF_E_NOMEM, "out of memory for routes");
    /* one expert may get every token of the pass */
    if ((st = need(&be->ex_in, be, be->kmax, be->ld, err)) || (st = need(&be->ex_g, be, ff_exp, be->ld, err)) ||
        (st = need(&be->ex_u, be, ff_exp, be->ld, err)) || (st = need(&be->ex_out, be, hp->n_embd, be->ld, err)))
        return st;
    return QF_OK;
}

/* Per-thread scratch: a panel of QF_RT_MR weight rows, or one of the integer kernel's decoded panels, or
 * attention scores for n_ctx keys x nt queries plus one row of exp arguments, or one embedding row, or one
 * row of SwiGLU exponentials (ld). */
static qf_status alloc_scratch(qf_be *be, qf_error *err) {
    be->scratch_len = QF_MAX(QF_RT_MR * be->kmax, ((uint64_t)be->n_ctx + 1) * be->k->nt + 2 * be->k->nt);
    be->scratch_len = QF_MAX(be->scratch_len, QF_MAX(be->ld, 2 * (size_t)be->m->hp.n_expert));
    be->scratch_len = QF_MAX(be->scratch_len, (q8_panel_bytes(be->qk->rows, be->kmax) + sizeof(float) - 1) / sizeof(float));
    int n = qf_pool_size(be->pool);
    if (!(be->scratch = qf_calloc_n((uint64_t)n, sizeof *be->scratch))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        qf_status st = need(&be->scratch[i], be, be->scratch_len, 1, err);
        if (st) return st;
    }
    return QF_OK;
}

/* ---- the pass ----------------------------------------------------------------------------------- */

/* cos/sin of position * freq[i], times mscale, for the pass's positions, computed in double. Column t is
 * at position pos0 + t % stride (padding columns get some position too: harmless). */
static void begin_pass(qf_be *be, const qf_be_pass *pass, const double *freq, uint32_t n_rot, float mscale) {
    be->pass = *pass;
    size_t ld = be->ld;
    for (uint32_t i = 0; i < n_rot / 2; i++)
        for (size_t t = 0; t < pass->cols; t++) {
            double th = (double)(pass->pos0 + t % pass->stride) * freq[i];
            be->rope_cos[i * ld + t] = (float)cos(th) * mscale;
            be->rope_sin[i * ld + t] = (float)sin(th) * mscale;
        }
}

/* x = the token embeddings in their columns; the padding between sequences is zeroed so that it stays
 * finite through every call. */
static void embed(qf_be *be, const qf_rt_weight *w, const int32_t *tokens, float *x) {
    const qf_be_pass *sh = &be->pass;
    size_t E = w->row_len;
    float *row = be->scratch[0];
    for (size_t f = 0; f < E; f++) memset(x + f * be->ld, 0, sh->cols * sizeof(float));
    for (uint32_t s = 0; s < sh->n_seq; s++)
        for (uint32_t t = 0; t < sh->len; t++) {
            qf_rt_weight_rows(w, (uint64_t)tokens[(size_t)s * sh->len + t], 1, row);
            for (size_t f = 0; f < E; f++) x[f * be->ld + s * sh->stride + t] = row[f];
        }
    qf_cpu_note_nonfinite(be, x, E, be->ld, sh->cols, "token_embd", -1);
}

static void matmul(qf_be *be, const float *x, const qf_be_pass *in, const qf_be_mm *mm, int n_mm) {
    qf_cpu_matmul(be, x, be->ld, in->cols, in, mm, n_mm);
}

/* ---- column-wise elementwise steps ------------------------------------------------------------------ */

/* y = x / sqrt(mean(x^2) + eps) * w per token column and per group of rows; the sum of squares in
 * double (as ggml does). The column loops vectorize across tokens without changing any operation or its
 * order, so every build of them returns the same bits; with AVX-512 active they are compiled for it (the
 * file's baseline is SSE2). No multiply feeds an add in one expression, so no compiler can contract them
 * into FMAs. */
static inline __attribute__((always_inline)) void rmsnorm_body(qf_be *be, const float *x, float *y, size_t rows,
                                                                size_t group, const float *w, size_t n) {
    size_t ld = be->ld;
    double *acc = be->norm_acc;
    float *scale = be->norm_scale, eps = be->m->hp.rms_eps;
    for (size_t g0 = 0; g0 < rows; g0 += group) {
        for (size_t t = 0; t < n; t++) acc[t] = 0;
        for (size_t f = g0; f < g0 + group; f++) {
            const float *xf = x + f * ld;
            for (size_t t = 0; t < n; t++) acc[t] += (double)(xf[t] * xf[t]);
        }
        for (size_t t = 0; t < n; t++) scale[t] = 1.0f / sqrtf((float)(acc[t] / (double)group) + eps);
        for (size_t f = g0; f < g0 + group; f++) {
            const float *xf = x + f * ld;
            float *yf = y + f * ld, wf = w[f - g0];
            for (size_t t = 0; t < n; t++) yf[t] = xf[t] * scale[t] * wf;
        }
    }
}

static inline __attribute__((always_inline)) void add_into_body(float *x, const float *o, size_t rows, size_t ld, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        const float *orow = o + r * ld;
        for (size_t t = 0; t < n; t++) xr[t] += orow[t];
    }
}

#ifdef __clang__
#define WIDE __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#else
#define WIDE __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")))
#endif
WIDE static void rmsnorm_wide(qf_be *be, const float *x, float *y, size_t rows, size_t group, const float *w, size_t n) {
    rmsnorm_body(be, x, y, rows, group, w, n);
}
WIDE static void add_into_wide(float *x, const float *o, size_t rows, size_t ld, size_t n) { add_into_body(x, o, rows, ld, n); }

static void rmsnorm(qf_be *be, const float *x, float *y, size_t rows, size_t group, const float *w) {
    if (be->wide) rmsnorm_wide(be, x, y, rows, group, w, be->pass.cols);
    else rmsnorm_body(be, x, y, rows, group, w, be->pass.cols);
}

static void add_into(qf_be *be, float *x, const float *o, size_t rows) {
    if (be->wide) add_into_wide(x, o, rows, be->ld, be->pass.cols);
    else add_into_body(x, o, rows, be->ld, be->pass.cols);
}

static void copy_rows(qf_be *be, float *dst, const float *src, size_t rows) {
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * be->ld, src + r * be->ld, be->pass.cols * sizeof(float));
}

/* y *= 1 / (1 + e^-g) per column (the shared-expert gate), exponentials through the ISA's vexp. */
static void sigmoid_scale(qf_be *be, float *y, const float *g, size_t rows) {
    size_t n = be->pass.cols;
    float *e = be->scratch[0];
    for (size_t t = 0; t < n; t++) e[t] = -g[t];
    be->k->vexp(e, e, n);
    for (size_t t = 0; t < n; t++) e[t] = 1.0f / (1.0f + e[t]);
    for (size_t r = 0; r < rows; r++)
        for (size_t t = 0; t < n; t++) y[r * be->ld + t] *= e[t];
}

/* Rotate the n_rot rows from `offset` of every head: NEOX pairs (i, i + n_rot/2) or adjacent pairs. */
static void rope(qf_be *be, float *x, uint32_t heads, uint32_t head_rows, uint32_t offset, bool neox) {
    uint32_t half = be->rope_half;
    size_t ld = be->ld, n = be->pass.cols;
    for (uint32_t h = 0; h < heads; h++)
        for (uint32_t i = 0; i < half; i++) {
            size_t ra = (size_t)h * head_rows + offset + (neox ? i : 2 * i);
            size_t rb = ra + (neox ? half : 1);
            float *a = x + ra * ld, *b = x + rb * ld;
            const float *cs = be->rope_cos + (size_t)i * ld, *sn = be->rope_sin + (size_t)i * ld;
            for (size_t t = 0; t < n; t++) {
                float x0 = a[t], x1 = b[t];
                a[t] = x0 * cs[t] - x1 * sn[t];
                b[t] = x0 * sn[t] + x1 * cs[t];
            }
        }
}

/* ---- SwiGLU ------------------------------------------------------------------------------------- */

typedef struct glu_job {
    qf_be *be;
    float *g;
    const float *u;
    size_t rows, cols;
} glu_job;

/* g = silu(g) * u = g / (1 + e^-g) * u, rows split across threads. */
static void glu_worker(void *arg, int ith, int nth) {
    const glu_job *j = arg;
    qf_be *be = j->be;
    size_t lo = j->rows * (size_t)ith / (size_t)nth, hi = j->rows * (size_t)(ith + 1) / (size_t)nth;
    float *e = be->scratch[ith];
    for (size_t r = lo; r < hi; r++) be->k->glu(j->g + r * be->ld, j->u + r * be->ld, e, j->cols);
}

static void glu(qf_be *be, float *g, const float *u, size_t rows) {
    glu_job gj = {.be = be, .g = g, .u = u, .rows = rows, .cols = qf_round_up(be->pass.cols, be->k->nt)};
    qf_pool_run(be->pool, glu_worker, &gj);
}

/* ---- attention ---------------------------------------------------------------------------------- */

/* Where layer l's keys and values are cached. */
static size_t cache_layer(const qf_be *be, uint32_t l) { return be->kv_layers == 1 ? 0 : l; }

/* Append each sequence's k and v to its slot of the layer's cache at positions pos0 .. pos0+len-1. */
static void cache_store(qf_be *be, const qf_be_attn *a) {
    const qf_be_pass *sh = &be->pass;
    size_t dk = be->dk, dv = be->dv, ld = be->ld, len = be->kv_len;
    float *kl = be->kc + cache_layer(be, a->layer) * a->n_head_kv * len * dk;
    float *vl = be->vc + cache_layer(be, a->layer) * a->n_head_kv * len * dv;
    for (uint32_t s = 0; s < sh->n_seq; s++) {
        size_t p0 = (size_t)s * be->n_ctx + sh->pos0, col = s * sh->stride;
        for (size_t g = 0; g < a->n_head_kv; g++) {
            for (size_t d = 0; d < dk; d++) {
                const float *ks = a->k + (g * dk + d) * ld + col;
                float *kd = kl + g * len * dk + p0 * dk + d;
                for (uint32_t t = 0; t < sh->len; t++) kd[(size_t)t * dk] = ks[t];
            }
            for (size_t d = 0; d < dv; d++)
                memcpy(vl + (g * dv + d) * len + p0, a->v + (g * dv + d) * ld + col, sh->len * sizeof(float));
        }
    }
}

typedef struct attn_job {
    qf_be *be;
    const qf_be_attn *a;
} attn_job;

/* One head of sequence `seq` over one tile of nt queries (its tokens t0 ..): scores = K q (tile kernel
 * over the position-major K cache), softmax, out = V p (tile kernel over the dimension-major V cache),
 * both over the sequence's own cache slot. */
static void attn_tile(const attn_job *j, uint32_t seq, uint32_t h, uint32_t t0, float *s) {
    qf_be *be = j->be;
    const qf_be_attn *a = j->a;
    const qf_rt_kern *k = be->k;
    const qf_be_pass *sh = &be->pass;
    uint32_t dk = be->dk, dv = be->dv, nt = k->nt, g = h / (a->n_head / a->n_head_kv);
    uint32_t t1 = QF_MIN(t0 + nt, sh->len), n_keys = sh->pos0 + t1;
    size_t ld = be->ld, slot = (size_t)seq * be->n_ctx, col = seq * sh->stride + t0;
    const float *kh = be->kc + (cache_layer(be, a->layer) * a->n_head_kv + g) * be->kv_len * dk + slot * dk;
    const float *vh = be->vc + (cache_layer(be, a->layer) * a->n_head_kv + g) * be->kv_len * dv + slot;
    const float *qh = a->q + (size_t)h * dk * ld + col;
    for (uint32_t p = 0; p < n_keys; p += QF_RT_MR)
        k->tile(kh + (size_t)p * dk, dk, dk, qh, ld, s + (size_t)p * nt, nt, (int)QF_MIN((uint32_t)QF_RT_MR, n_keys - p));
    float *tmp = s + ((size_t)be->n_ctx + 1) * nt, *inv = tmp + nt;
    /* unnormalized: the dv outputs are scaled by inv instead of the n_keys probabilities */
    k->softmax(s, n_keys, sh->pos0 + t0, a->scale, tmp, inv);
    float *out = a->out + (size_t)h * dv * ld + col;
    for (uint32_t d = 0; d < dv; d += QF_RT_MR)
        k->tile(vh + (size_t)d * be->kv_len, be->kv_len, n_keys, s, nt, out + (size_t)d * ld, ld,
                (int)QF_MIN((uint32_t)QF_RT_MR, dv - d));
    for (uint32_t d = 0; d < dv; d++)
        for (uint32_t i = 0; i < nt; i++) out[(size_t)d * ld + i] *= inv[i];
    if (!a->v2) return;
    /* the second value set straight from its activation matrix: at pos0 0 key p is column p of the
     * sequence */
    float *out2 = a->out2 + (size_t)h * a->dv2 * ld + col;
    const float *v2 = a->v2 + seq * sh->stride;
    for (uint32_t d = 0; d < a->dv2; d += QF_RT_MR)
        k->tile(v2 + (size_t)d * ld, ld, n_keys, s, nt, out2 + (size_t)d * ld, ld, (int)QF_MIN((uint32_t)QF_RT_MR, a->dv2 - d));
    for (uint32_t d = 0; d < a->dv2; d++)
        for (uint32_t i = 0; i < nt; i++) out2[(size_t)d * ld + i] *= inv[i];
}

static void attn_worker(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const qf_be_pass *sh = &j->be->pass;
    uint32_t nt = j->be->k->nt, tiles = (sh->len + nt - 1) / nt, heads = j->a->n_head;
    uint32_t tasks = sh->n_seq * heads * tiles;
    /* round-robin: later query tiles see more keys, so contiguous ranges would be unbalanced */
    for (uint32_t i = (uint32_t)ith; i < tasks; i += (uint32_t)nth)
        attn_tile(j, i / (heads * tiles), i / tiles % heads, (i % tiles) * nt, j->be->scratch[ith]);
}

static void attention(qf_be *be, const qf_be_attn *a) {
    cache_store(be, a);
    attn_job j = {.be = be, .a = a};
    qf_pool_run(be->pool, attn_worker, &j);
    qf_cpu_note_nonfinite(be, a->out, (size_t)a->n_head * a->dv, be->ld, be->pass.cols, "attention", (int)a->layer);
}

/* ---- outputs and checks ------------------------------------------------------------------------- */

static void gather_outputs(qf_be *be, float *dst, const float *src, size_t rows, uint32_t out_from) {
    const qf_be_pass *sh = &be->pass;
    size_t per = sh->len - out_from;
    for (size_t f = 0; f < rows; f++)
        for (uint32_t s = 0; s < sh->n_seq; s++)
            memmove(dst + f * be->ld + s * per, src + f * be->ld + s * sh->stride + out_from, per * sizeof(float));
}

static void take_nonfinite(qf_be *be, char *what, size_t n) {
    snprintf(what, n, "%s", be->nonfinite);
    be->nonfinite[0] = '\0';
}

/* ---- host memory, observers, lifetime ------------------------------------------------------------- */

static void upload(qf_be *be, float *dst, const float *src, uint64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void download(qf_be *be, float *dst, const float *src, uint64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static qf_status take_error(qf_be *be, qf_error *err) { return QF_OK; } /* nothing here fails after creation */
static void set_observer(qf_be *be, const qf_rt_observer *obs) { be->obs = obs; }
static void set_act_q8(qf_be *be, bool on) { be->act_q8 = on; }
static uint64_t bytes(const qf_be *be) { return be->bytes; }

static void cpu_free(qf_be *be) {
    if (!be) return;
    for (size_t i = 0; i < be->n_bufs; i++) free(be->bufs[i]);
    free(be->bufs);
    free(be->scratch);
    free(be->norm_acc);
    free(be->xq);
    free(be->xq_s);
    free(be->route_e);
    free(be->route_w);
    free(be->by_expert);
    free(be->ex_start);
    free(be->ex_fill);
    free(be);
}

static const qf_be_ops cpu_ops = {
    .name = "cpu", .host = true, .alloc = be_alloc, .alloc_host = be_alloc, .upload = upload, .download = download,
    .begin_pass = begin_pass, .embed = embed, .matmul = matmul, .rmsnorm = rmsnorm, .rope = rope,
    .attention = attention, .glu = glu, .add = add_into, .copy_rows = copy_rows, .sigmoid_scale = sigmoid_scale,
    .moe = qf_cpu_moe, .gather_outputs = gather_outputs, .take_nonfinite = take_nonfinite, .take_error = take_error,
    .set_observer = set_observer, .set_act_q8 = set_act_q8, .bytes = bytes, .free = cpu_free,
};

qf_status qf_be_cpu_new(const qf_be_opts *o, qf_be **out, const qf_be_ops **ops, qf_error *err) {
    *out = NULL;
    qf_be *be = calloc(1, sizeof *be);
    if (!be) return qf_fail(err, QF_E_NOMEM, "out of memory");
    be->m = o->m;
    be->k = qf_rt_kern_active();
    be->qk = qf_rt_qkern_active();
    be->wide = qf_isa_active() == QF_ISA_AVX512;
    be->ld = o->ld;
    be->kv_len = o->kv_len;
    be->n_ctx = o->n_ctx;
    be->kv_layers = o->one_layer_kv ? 1 : o->m->hp.n_layer;
    be->dk = qf_attn_dk(&o->m->hp);
    be->dv = qf_attn_dv(&o->m->hp);
    be->pool = o->pool;
    qf_status st = alloc_state(be, err);
    if (!st) st = alloc_scratch(be, err);
    if (st) { cpu_free(be); return st; }
    *out = be;
    *ops = &cpu_ops;
    return QF_OK;
}
