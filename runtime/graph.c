/* graph.c — the forward pass by layer kinds, written in the backend's operations (backend.h; layouts
 * and the determinism rule: runtime.h). One pass:
 *   x = embed(tokens)
 *   per layer, attention by kind:
 *     GQA: q,k,v = W{q,k,v} norm(x) (+ biases) [per-head q/k norms]; rope(q, k); a = attention(q, k, v)
 *     MLA: q = Wq_b norm(Wq_a xn) or Wq xn; [c | k_pe] = Wkv_a xn; c = norm(c); rope(q_pe, k_pe);
 *          k_nope = Wk_b c, v = Wv_b c; k = [k_nope | k_pe] per head; a = attention(q, k, v)
 *     x += Wo a
 *   then the FFN by kind:
 *     dense: x += Wd (silu(Wg xn) * (Wu xn))
 *     MoE:   x += sum of the routed experts' FFNs, weighted, + the shared expert (sigmoid-gated in Qwen2-MoE)
 *   logits = Wout (norm(x)) for the requested output tokens only. */
#include "runtime/backend.h"

#include <math.h>
#include <time.h>

/* Tokens per pass through the layers: a call of more sequences runs them in passes of whole sequences,
 * so the activations of a pass stay in cache (a pass of 2048 tokens measured slower than four of 512 on
 * qf-llama-a: the per-layer buffers outgrow L2). 1024 rather than llama.cpp's default 512 (n_ubatch):
 * with the 8-bit path's AMX tile each decoded weight panel then serves twice the tokens and the output
 * matrix is decoded half as often; measured in CPU samples of the eval, q8_0 --act q8 -3%, --act f32 -3%,
 * q4_K --act q8 unchanged. */
#define QF_RT_UBATCH 1024u

struct qf_rt_ctx {
    const qf_rt_model *m;
    qf_pool *pool;                   /* the threads: the CPU backend's, and qf_rt_parallel's */
    qf_backend kind;
    qf_be *be;
    const qf_be_ops *ops;
    uint32_t n_ctx, n_batch, n_past;
    uint32_t n_seq_max;              /* sequences one call may hold (qf_rt_eval_seqs) */
    uint32_t n_seq_pass;             /* sequences per pass through the layers, each its own cache slot */
    size_t ld;                       /* token columns of every activation matrix (n_batch padded) */
    size_t ld_out;                   /* columns of logits: every output of a call */
    /* activations, [features][ld] */
    float *x, *xn, *q, *k, *v, *att, *o, *o2, *g, *u;
    float *qa, *kva, *kvc, *kn;      /* MLA: q latent, kv latent + k_pe, normalised kv latent, k_nope */
    float *rl, *sg;                  /* MoE: router logits, shared-expert gate */
    float *olat;                     /* MLA with a head observer: per-head latent attention outputs */
    float *q_host, *olat_host;       /* their host copies, for a backend whose buffers are not host memory */
    bool olat_missing;               /* an observer wanted them and there was no memory */
    const qf_rt_observer *obs;
    float *logits;                   /* [n_vocab][ld_out], host memory */
    double eval_s;
    qf_be_pass sh;                   /* the pass in progress */
    qf_be_pass begun;                /* the pass the backend's rotary tables are for */
    /* layer-major (qf_rt_ctx_new_layer_major): the hidden state of every pass of a group of sequences,
     * each [n_embd][ld]; x points at the pass being run */
    bool lm;
    float **hx;
    uint32_t hx_seqs;                /* sequences the store holds (whole passes) */
    uint32_t lm_n_seq;               /* sequences of the group in progress */
    bool lm_keep;                    /* layers' weights stay resident (qf_rt_lm_keep_weights) */
};

/* ---- context ------------------------------------------------------------------------------------ */

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

typedef struct bufs {
    qf_rt_ctx *c;
    qf_error *err;
    qf_status st;
} bufs;

static float *buf(bufs *b, uint64_t rows, size_t cols) {
    uint64_t n;
    if (b->st || rows == 0) return NULL;
    float *p = qf_mul_ok(rows, cols, &n) ? b->c->ops->alloc(b->c->be, n) : NULL;
    if (!p) b->st = qf_fail(b->err, QF_E_NOMEM, "out of memory for %llu x %zu floats of runtime buffers", (unsigned long long)rows, cols);
    return p;
}

static qf_status alloc_activations(qf_rt_ctx *c, qf_error *err) {
    const qf_hparams *hp = &c->m->hp;
    uint64_t E = hp->n_embd, H = hp->n_head, dk = qf_attn_dk(hp), dv = qf_attn_dv(hp), Hkv = hp->n_head_kv;
    uint64_t ff = QF_MAX(hp->n_ff, hp->n_ff_shexp);
    bool mla = hp->arch->attn == QF_ATTN_MLA;
    bufs b = {.c = c, .err = err};
    size_t ld = c->ld;
    if (!c->lm) c->x = buf(&b, E, ld);
    c->xn = buf(&b, E, ld);
    c->q = buf(&b, H * dk, ld);
    c->k = buf(&b, Hkv * dk, ld);
    c->v = buf(&b, Hkv * dv, ld);
    c->att = buf(&b, H * dv, ld);
    c->o = buf(&b, E, ld);
    c->g = buf(&b, ff, ld);
    c->u = buf(&b, ff, ld);
    if (mla) {
        c->qa = buf(&b, hp->q_lora_rank, ld);
        c->kva = buf(&b, (uint64_t)hp->kv_lora_rank + hp->qk_rope_dim, ld);
        c->kvc = buf(&b, hp->kv_lora_rank, ld);
        c->kn = buf(&b, H * hp->qk_nope_dim, ld);
    }
    if (hp->n_expert) {
        c->rl = buf(&b, hp->n_expert, ld);
        c->sg = buf(&b, 1, ld);
        c->o2 = buf(&b, E, ld);
    }
    uint64_t n_logits;
    c->logits = qf_mul_ok(hp->n_vocab, c->ld_out, &n_logits) ? c->ops->alloc_host(c->be, n_logits) : NULL;
    if (!b.st && !c->logits)
        b.st = qf_fail(err, QF_E_NOMEM, "out of memory for %u x %zu floats of logits", hp->n_vocab, c->ld_out);
    return b.st;
}

/* Rows a multiple of 1 KiB apart fall into few cache sets when column-wise steps walk the features:
 * one spare tile breaks that (kernels never read past the tiles a call covers). Measured on qf-llama-a
 * (forward CPU time): passes of 512 columns gain 5% on the 8-bit path, while one chunk of 256 loses 8%
 * on the F32 path, so only multi-sequence passes get it. */
static size_t spare_tile(size_t ld, uint32_t n_seq_pass) { return n_seq_pass > 1 && ld % 256 == 0 ? ld + QF_BE_PAD : ld; }

qf_status qf_rt_ctx_open(const qf_rt_model *m, const qf_rt_ctx_opts *o, qf_rt_ctx **out, qf_error *err) {
    uint32_t n_ctx = o->n_ctx, n_batch = o->n_batch;
    bool lm = o->layer_major;
    *out = NULL;
    if (n_ctx < 1 || n_batch < 1 || n_ctx > (1u << 24))
        return qf_fail(err, QF_E_USAGE, "context %u / batch %u must be in 1..16777216", n_ctx, n_batch);
    qf_rt_ctx *c = calloc(1, sizeof *c);
    if (!c) return qf_fail(err, QF_E_NOMEM, "out of memory");
    c->m = m;
    c->kind = o->backend;
    c->n_ctx = n_ctx;
    c->lm = lm;
    /* a batch of whole contexts holds that many sequences, each padded to whole tiles so that no
     * attention tile straddles two of them; a layer-major pass always holds whole sequences */
    if (lm) n_batch = QF_MAX(n_batch, n_ctx);
    c->n_seq_max = n_batch >= n_ctx ? n_batch / n_ctx : 1;
    c->n_batch = c->n_seq_max > 1 ? c->n_seq_max * n_ctx : QF_MIN(n_batch, n_ctx);
    c->n_seq_pass = QF_MIN(c->n_seq_max, QF_MAX(1u, QF_RT_UBATCH / n_ctx));
    c->ld = spare_tile(c->n_seq_pass * round_up(QF_MIN(n_batch, n_ctx), QF_BE_PAD), c->n_seq_pass);
    /* the last pass's output tiles may run up to a tile past the call's outputs; layer-major logits
     * come one pass at a time */
    size_t outs = lm ? (size_t)c->n_seq_pass * n_ctx : c->n_batch;
    c->ld_out = QF_MAX(c->ld, round_up(outs, QF_BE_PAD) + QF_BE_PAD);
    qf_status st = qf_pool_new(o->n_threads, &c->pool, err);
    qf_be_opts bo = {.m = m, .pool = c->pool, .ld = c->ld, .kv_len = (size_t)c->n_seq_pass * n_ctx, .n_ctx = n_ctx,
                     .one_layer_kv = lm};
    if (!st) st = qf_be_new(o->backend, &bo, &c->be, &c->ops, err);
    if (!st) st = alloc_activations(c, err);
    if (st) { qf_rt_ctx_free(c); return st; }
    *out = c;
    return QF_OK;
}

qf_status qf_rt_ctx_new(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads, qf_rt_ctx **out,
                        qf_error *err) {
    qf_rt_ctx_opts o = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = n_threads, .backend = QF_BACKEND_CPU};
    return qf_rt_ctx_open(m, &o, out, err);
}

qf_status qf_rt_ctx_new_layer_major(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads,
                                    qf_rt_ctx **out, qf_error *err) {
    qf_rt_ctx_opts o = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = n_threads, .layer_major = true,
                        .backend = QF_BACKEND_CPU};
    return qf_rt_ctx_open(m, &o, out, err);
}

void qf_rt_ctx_free(qf_rt_ctx *c) {
    if (!c) return;
    if (c->be) c->ops->free(c->be); /* owns every buffer */
    qf_pool_free(c->pool);
    free(c->hx);
    free(c->q_host);
    free(c->olat_host);
    free(c);
}

qf_backend qf_rt_ctx_backend(const qf_rt_ctx *c) { return c->kind; }
void qf_rt_ctx_clear(qf_rt_ctx *c) { c->n_past = 0; }
void qf_rt_ctx_set_act_q8(qf_rt_ctx *c, bool on) {
    if (c->ops->set_act_q8) c->ops->set_act_q8(c->be, on);
}

/* The latent attention outputs a head observer reads (and, off the host, room for host copies of them
 * and of q); olat_missing when there is no memory for them. */
static void alloc_head_outputs(qf_rt_ctx *c) {
    const qf_hparams *hp = &c->m->hp;
    uint64_t n, nq;
    bool sized = qf_mul_ok((uint64_t)hp->n_head * hp->kv_lora_rank, c->ld, &n) &&
                 qf_mul_ok((uint64_t)hp->n_head * qf_attn_dk(hp), c->ld, &nq);
    if (sized && !c->olat) c->olat = c->ops->alloc(c->be, n);
    if (sized && !c->ops->host && !c->olat_host) {
        c->olat_host = qf_malloc_n(n, sizeof(float));
        c->q_host = qf_malloc_n(nq, sizeof(float));
    }
    c->olat_missing = !c->olat || (!c->ops->host && (!c->olat_host || !c->q_host));
}

void qf_rt_ctx_set_observer(qf_rt_ctx *c, const qf_rt_observer *obs) {
    c->ops->set_observer(c->be, obs);
    c->obs = obs;
    c->olat_missing = false;
    if (obs && obs->head && c->m->hp.arch->attn == QF_ATTN_MLA) alloc_head_outputs(c);
}
double qf_rt_eval_seconds(const qf_rt_ctx *c) { return c->eval_s; }
void qf_rt_parallel(qf_rt_ctx *c, void (*fn)(void *arg, int ith, int nth), void *arg) { qf_pool_run(c->pool, fn, arg); }
int qf_rt_n_threads(const qf_rt_ctx *c) { return qf_pool_size(c->pool); }

/* ---- layers ------------------------------------------------------------------------------------- */

/* A product into an activation matrix. */
static qf_be_mm mm(const qf_rt_ctx *c, const qf_rt_weight *w, float *y, const float *bias) {
    return (qf_be_mm){.w = w, .y = y, .ldy = c->ld, .bias = bias};
}

static void attn_gqa(qf_rt_ctx *c, uint32_t l, const qf_rt_attn *A) {
    const qf_hparams *hp = &c->m->hp;
    const qf_be_ops *op = c->ops;
    uint32_t hd = hp->head_dim;
    qf_be_mm qkv[3] = {mm(c, &A->wq, c->q, A->bq), mm(c, &A->wk, c->k, A->bk), mm(c, &A->wv, c->v, A->bv)};
    op->matmul(c->be, c->xn, &c->sh, qkv, 3);
    if (A->q_norm) {
        op->rmsnorm(c->be, c->q, c->q, (size_t)hp->n_head * hd, hd, A->q_norm);
        op->rmsnorm(c->be, c->k, c->k, (size_t)hp->n_head_kv * hd, hd, A->k_norm);
    }
    op->rope(c->be, c->q, hp->n_head, hd, 0, c->m->rope_neox);
    op->rope(c->be, c->k, hp->n_head_kv, hd, 0, c->m->rope_neox);
    qf_be_attn a = {.layer = l, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .dk = hd, .dv = hd,
                    .scale = c->m->attn_scale, .q = c->q, .k = c->k, .v = c->v, .out = c->att};
    op->attention(c->be, &a);
}

/* The per-head inputs of k_b and v_b in llama.cpp's absorbed form, sequence by sequence (no padding),
 * from host copies when the backend's buffers are elsewhere. */
static void observe_heads(const qf_rt_ctx *c, const qf_rt_attn *A) {
    const qf_hparams *hp = &c->m->hp;
    const qf_rt_observer *o = c->obs;
    size_t dk = (size_t)hp->qk_nope_dim + hp->qk_rope_dim, R = hp->kv_lora_rank;
    const float *q = c->q, *olat = c->olat;
    if (!c->ops->host) {
        c->ops->download(c->be, c->q_host, c->q, (uint64_t)hp->n_head * dk * c->ld);
        c->ops->download(c->be, c->olat_host, c->olat, (uint64_t)hp->n_head * R * c->ld);
        q = c->q_host;
        olat = c->olat_host;
    }
    for (uint32_t s = 0; s < c->sh.n_seq; s++)
        for (uint32_t h = 0; h < hp->n_head; h++) {
            size_t col = s * c->sh.stride;
            o->head(o->user, &A->wkb, h, q + h * dk * c->ld + col, c->ld, c->sh.len);
            o->head(o->user, &A->wvb, h, olat + h * R * c->ld + col, c->ld, c->sh.len);
        }
}

/* Latent attention without absorption: the latent is expanded to per-head keys and values, so
 * attention itself is plain multi-head (cheaper than the absorbed form at the context lengths a
 * perplexity run uses). */
static void attn_mla(qf_rt_ctx *c, uint32_t l, const qf_rt_attn *A) {
    const qf_hparams *hp = &c->m->hp;
    const qf_be_ops *op = c->ops;
    uint32_t H = hp->n_head, nope = hp->qk_nope_dim, rope = hp->qk_rope_dim, dk = nope + rope, R = hp->kv_lora_rank;
    if (hp->q_lora_rank) {
        qf_be_mm a[2] = {mm(c, &A->wq_a, c->qa, NULL), mm(c, &A->wkv_a, c->kva, NULL)};
        op->matmul(c->be, c->xn, &c->sh, a, 2);
        op->rmsnorm(c->be, c->qa, c->qa, hp->q_lora_rank, hp->q_lora_rank, A->q_a_norm);
        qf_be_mm b = mm(c, &A->wq_b, c->q, NULL);
        op->matmul(c->be, c->qa, &c->sh, &b, 1);
    } else {
        qf_be_mm a[2] = {mm(c, &A->wq, c->q, NULL), mm(c, &A->wkv_a, c->kva, NULL)};
        op->matmul(c->be, c->xn, &c->sh, a, 2);
    }
    op->rmsnorm(c->be, c->kva, c->kvc, R, R, A->kv_a_norm);
    op->rope(c->be, c->q, H, dk, nope, c->m->rope_neox);
    op->rope(c->be, c->kva, 1, R + rope, R, c->m->rope_neox);
    qf_be_mm kv[2] = {mm(c, &A->wkb, c->kn, NULL), mm(c, &A->wvb, c->v, NULL)};
    op->matmul(c->be, c->kvc, &c->sh, kv, 2);
    for (uint32_t h = 0; h < H; h++) {
        op->copy_rows(c->be, c->k + (size_t)h * dk * c->ld, c->kn + (size_t)h * nope * c->ld, nope);
        op->copy_rows(c->be, c->k + ((size_t)h * dk + nope) * c->ld, c->kva + (size_t)R * c->ld, rope);
    }
    bool heads = c->obs && c->obs->head && c->olat && c->sh.pos0 == 0;
    qf_be_attn a = {.layer = l, .n_head = H, .n_head_kv = H, .dk = dk, .dv = hp->v_head_dim,
                    .scale = c->m->attn_scale, .q = c->q, .k = c->k, .v = c->v, .out = c->att,
                    .v2 = heads ? c->kvc : NULL, .dv2 = R, .out2 = c->olat};
    op->attention(c->be, &a);
    if (heads) observe_heads(c, A);
}

/* y = Wd (silu(Wg x) * (Wu x)) of a dense FFN or a shared expert. */
static void ffn_dense(qf_rt_ctx *c, const qf_rt_ffn *F, float *y) {
    const qf_be_ops *op = c->ops;
    qf_be_mm gu[2] = {mm(c, &F->wg, c->g, NULL), mm(c, &F->wu, c->u, NULL)};
    op->matmul(c->be, c->xn, &c->sh, gu, 2);
    op->glu(c->be, c->g, c->u, F->wg.n_rows);
    qf_be_mm d = mm(c, &F->wd, y, NULL);
    op->matmul(c->be, c->g, &c->sh, &d, 1);
}

static void ffn_moe_layer(qf_rt_ctx *c, uint32_t l, const qf_rt_ffn *F) {
    const qf_hparams *hp = &c->m->hp;
    const qf_be_ops *op = c->ops;
    qf_be_mm r[2] = {mm(c, &F->router, c->rl, NULL), mm(c, &F->shexp_gate, c->sg, NULL)};
    op->matmul(c->be, c->xn, &c->sh, r, F->shexp_gate.n_rows ? 2 : 1);
    qf_be_moe m = {.hp = hp, .layer = (int)l, .x = c->xn, .logits = c->rl, .bias = F->expert_bias,
                   .gate = F->eg, .up = F->eu, .down = F->ed, .y = c->o};
    op->moe(c->be, &m);
    if (!F->wg.n_rows) return;
    ffn_dense(c, F, c->o2);
    if (F->shexp_gate.n_rows) op->sigmoid_scale(c->be, c->o2, c->sg, hp->n_embd);
    op->add(c->be, c->o, c->o2, hp->n_embd);
}

static void layer_forward(qf_rt_ctx *c, uint32_t l) {
    const qf_hparams *hp = &c->m->hp;
    const qf_rt_layer *L = &c->m->layers[l];
    const qf_be_ops *op = c->ops;
    op->rmsnorm(c->be, c->x, c->xn, hp->n_embd, hp->n_embd, L->a.norm);
    if (hp->arch->attn == QF_ATTN_MLA) attn_mla(c, l, &L->a);
    else attn_gqa(c, l, &L->a);
    qf_be_mm o = mm(c, &L->a.wo, c->o, NULL);
    op->matmul(c->be, c->att, &c->sh, &o, 1);
    op->add(c->be, c->x, c->o, hp->n_embd);
    op->rmsnorm(c->be, c->x, c->xn, hp->n_embd, hp->n_embd, L->f.norm);
    if (L->f.moe) ffn_moe_layer(c, l, &L->f);
    else ffn_dense(c, &L->f, c->o);
    op->add(c->be, c->x, c->o, hp->n_embd);
}

/* Logits for tokens out_from .. len-1 of every sequence of the pass, into logit columns out_base ..:
 * gather them to the front (sequence after sequence, no padding), norm, project. */
static void output_forward(qf_rt_ctx *c, uint32_t out_from, size_t out_base) {
    const qf_be_pass *sh = &c->sh;
    const qf_be_ops *op = c->ops;
    size_t E = c->m->hp.n_embd, n_out = sh->n_seq * (sh->len - out_from);
    op->gather_outputs(c->be, c->o, c->x, E, out_from);
    op->rmsnorm(c->be, c->o, c->xn, E, E, c->m->output_norm);
    qf_be_pass out = {.n_seq = 1, .len = (uint32_t)n_out, .stride = round_up(n_out, QF_BE_PAD), .cols = n_out};
    qf_be_mm logits = {.w = &c->m->output, .y = c->logits + out_base, .ldy = c->ld_out, .host = true};
    op->matmul(c->be, c->xn, &out, &logits, 1);
}

/* Tell the backend the pass in c->sh; its rotary tables depend only on the shape, so a layer-major run
 * going from pass to pass of one shape computes them once. */
static void begin_pass(qf_rt_ctx *c) {
    const qf_rt_model *m = c->m;
    const qf_be_pass *a = &c->sh, *b = &c->begun;
    if (a->n_seq == b->n_seq && a->len == b->len && a->pos0 == b->pos0 && a->stride == b->stride && a->cols == b->cols)
        return;
    c->ops->begin_pass(c->be, &c->sh, m->rope_freq, m->hp.n_rot, m->rope_mscale);
    c->begun = c->sh;
}

/* One pass over the shape in c->sh, its logits from column out_base. */
static void forward(qf_rt_ctx *c, const int32_t *tokens, uint32_t out_from, size_t out_base) {
    const qf_rt_model *m = c->m;
    begin_pass(c);
    c->ops->embed(c->be, &m->tok_embd, tokens, c->x);
    for (uint32_t l = 0; l < m->hp.n_layer; l++) layer_forward(c, l);
    if (out_from < c->sh.len) output_forward(c, out_from, out_base);
}

/* ---- calls -------------------------------------------------------------------------------------- */

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

/* A NaN or Inf anywhere fails the run, named where it first appeared: a broken scale must never be
 * averaged into a finite perplexity or a passing KL divergence. */
static qf_status check_finite(qf_rt_ctx *c, qf_error *err) {
    char what[96];
    qf_status st = c->ops->take_error(c->be, err);
    if (st) return st;
    c->ops->take_nonfinite(c->be, what, sizeof what);
    if (!what[0]) return QF_OK;
    return qf_fail(err, QF_E_CHECK, "%s: a non-finite value (NaN or Inf) first appeared in %s: the model's weights or "
                   "its input are broken", c->m->label, what);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static qf_status check_observer(const qf_rt_ctx *c, qf_error *err) {
    if (!c->olat_missing) return QF_OK;
    return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the latent attention outputs (%u heads x %u per token) the "
                   "observer asked for", c->m->label, c->m->hp.n_head, c->m->hp.kv_lora_rank);
}

static qf_status check_mode(const qf_rt_ctx *c, bool lm, qf_error *err) {
    if (c->lm == lm) return QF_OK;
    return qf_fail(err, QF_E_INTERNAL, "%s: a %s context used for a %s call", c->m->label, c->lm ? "layer-major" : "whole-pass",
                   lm ? "layer-major" : "whole-pass");
}

qf_status qf_rt_eval(qf_rt_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, uint32_t out_from,
                     const float **logits, size_t *ld, qf_error *err) {
    qf_status st = check_mode(c, false, err);
    if (!st) st = check_batch(c, tokens, n, pos0, err);
    if (!st) st = check_observer(c, err);
    if (st) return st;
    double t_start = now_s();
    c->sh = (qf_be_pass){.n_seq = 1, .len = n, .pos0 = pos0, .stride = round_up(n, QF_BE_PAD), .cols = n};
    forward(c, tokens, out_from, 0);
    c->n_past = pos0 + n;
    c->eval_s += now_s() - t_start;
    *logits = c->logits;
    *ld = c->ld_out;
    return check_finite(c, err);
}

qf_status qf_rt_eval_seqs(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, uint32_t len, uint32_t out_from,
                          const float **logits, size_t *ld, qf_error *err) {
    if (n_seq == 0 || n_seq > c->n_seq_max || len == 0 || len > c->n_ctx)
        return qf_fail(err, QF_E_USAGE, "%u sequences of %u tokens; this context takes 1..%u sequences of 1..%u",
                       n_seq, len, c->n_seq_max, c->n_ctx);
    qf_status st = check_mode(c, false, err);
    if (!st) st = check_tokens(c, tokens, (size_t)n_seq * len, err);
    if (!st) st = check_observer(c, err);
    if (st) return st;
    double t_start = now_s();
    size_t stride = round_up(len, QF_BE_PAD), per_out = out_from < len ? len - out_from : 0;
    for (uint32_t s0 = 0; s0 < n_seq; s0 += c->n_seq_pass) {
        uint32_t n = QF_MIN(c->n_seq_pass, n_seq - s0);
        c->sh = (qf_be_pass){.n_seq = n, .len = len, .stride = stride, .cols = (n - 1) * stride + len};
        forward(c, tokens + (size_t)s0 * len, out_from, s0 * per_out);
    }
    c->n_past = 0; /* the slots are not continued: qf_rt_eval starts over */
    c->eval_s += now_s() - t_start;
    *logits = c->logits;
    *ld = c->ld_out;
    return check_finite(c, err);
}

/* ---- layer-major calls ---------------------------------------------------------------------------- */

uint32_t qf_rt_ctx_pass_seqs(const qf_rt_ctx *c) { return c->n_seq_pass; }
uint64_t qf_rt_ctx_bytes(const qf_rt_ctx *c) { return c->ops->bytes(c->be); }
uint64_t qf_rt_lm_pass_bytes(const qf_rt_ctx *c) { return (uint64_t)c->m->hp.n_embd * c->ld * sizeof(float); }

static uint32_t n_passes(const qf_rt_ctx *c, uint32_t n_seq) { return (n_seq + c->n_seq_pass - 1) / c->n_seq_pass; }

qf_status qf_rt_lm_reserve(qf_rt_ctx *c, uint32_t n_seq, qf_error *err) {
    qf_status st = check_mode(c, true, err);
    if (st || n_seq <= c->hx_seqs) return st;
    uint32_t have = n_passes(c, c->hx_seqs), want = n_passes(c, n_seq);
    float **hx = realloc(c->hx, want * sizeof *hx);
    if (!hx) return qf_fail(err, QF_E_NOMEM, "out of memory");
    c->hx = hx;
    for (uint32_t p = have; p < want; p++) {
        uint64_t n;
        if (!qf_mul_ok(c->m->hp.n_embd, c->ld, &n) || !(hx[p] = c->ops->alloc(c->be, n)))
            return qf_fail(err, QF_E_NOMEM, "%s: out of memory for the hidden states of %u sequences of %u tokens (%u x %zu "
                           "floats per pass)", c->m->label, n_seq, c->n_ctx, c->m->hp.n_embd, c->ld);
        c->hx_seqs = (p + 1) * c->n_seq_pass;
    }
    return QF_OK;
}

uint32_t qf_rt_lm_passes(const qf_rt_ctx *c) { return n_passes(c, c->lm_n_seq); }

/* Pass p of the group: its shape in c->sh, its hidden state in c->x; returns its first sequence. */
static uint32_t lm_pass(qf_rt_ctx *c, uint32_t p) {
    uint32_t s0 = p * c->n_seq_pass, n = QF_MIN(c->n_seq_pass, c->lm_n_seq - s0);
    size_t stride = round_up(c->n_ctx, QF_BE_PAD);
    c->sh = (qf_be_pass){.n_seq = n, .len = c->n_ctx, .stride = stride, .cols = (n - 1) * stride + c->n_ctx};
    c->x = c->hx[p];
    begin_pass(c);
    return s0;
}

qf_status qf_rt_lm_begin(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, qf_error *err) {
    qf_status st = check_mode(c, true, err);
    if (!st && (n_seq == 0 || n_seq > c->hx_seqs))
        st = qf_fail(err, QF_E_USAGE, "%u sequences; this layer-major context holds 1..%u", n_seq, c->hx_seqs);
    if (!st) st = check_tokens(c, tokens, (size_t)n_seq * c->n_ctx, err);
    if (!st) st = check_observer(c, err);
    if (!st) st = qf_rt_model_acquire(c->m, -1, err);
    if (st) return st;
    double t_start = now_s();
    c->lm_n_seq = n_seq;
    for (uint32_t p = 0; p < n_passes(c, n_seq); p++) {
        uint32_t s0 = lm_pass(c, p);
        c->ops->embed(c->be, &c->m->tok_embd, tokens + (size_t)s0 * c->n_ctx, c->x);
    }
    if (!c->lm_keep) qf_rt_model_release(c->m, -1);
    c->eval_s += now_s() - t_start;
    return check_finite(c, err);
}

void qf_rt_lm_keep_weights(qf_rt_ctx *c, bool keep) { c->lm_keep = keep; }

qf_status qf_rt_lm_copy(qf_rt_ctx *dst, const qf_rt_ctx *src, qf_error *err) {
    qf_status st = check_mode(dst, true, err);
    if (!st) st = check_mode(src, true, err);
    if (!st && (dst->m != src->m || dst->n_ctx != src->n_ctx || dst->n_seq_pass != src->n_seq_pass ||
                dst->ld != src->ld || dst->hx_seqs < src->lm_n_seq || !src->lm_n_seq))
        st = qf_fail(err, QF_E_USAGE, "layer-major contexts of different shapes (or none begun)");
    if (st) return st;
    dst->lm_n_seq = src->lm_n_seq;
    for (uint32_t p = 0; p < n_passes(src, src->lm_n_seq); p++) {
        lm_pass(dst, p);
        dst->ops->copy_rows(dst->be, dst->hx[p], src->hx[p], dst->m->hp.n_embd);
    }
    return QF_OK;
}

qf_status qf_rt_lm_layer(qf_rt_ctx *c, uint32_t l, qf_error *err) {
    qf_status st = check_mode(c, true, err);
    if (!st && (l >= c->m->hp.n_layer || !c->lm_n_seq))
        st = qf_fail(err, QF_E_USAGE, "layer %u of %u, %u sequences begun", l, c->m->hp.n_layer, c->lm_n_seq);
    if (!st) st = qf_rt_model_acquire(c->m, (int)l, err);
    if (st) return st;
    double t_start = now_s();
    for (uint32_t p = 0; p < n_passes(c, c->lm_n_seq); p++) {
        lm_pass(c, p);
        layer_forward(c, l);
    }
    if (!c->lm_keep) qf_rt_model_release(c->m, (int)l);
    c->eval_s += now_s() - t_start;
    return check_finite(c, err);
}

qf_status qf_rt_lm_logits(qf_rt_ctx *c, uint32_t p, uint32_t out_from, const float **logits, size_t *ld,
                          uint32_t *seq0, uint32_t *n_seq, qf_error *err) {
    qf_status st = check_mode(c, true, err);
    if (!st && (p >= n_passes(c, c->lm_n_seq) || out_from >= c->n_ctx))
        st = qf_fail(err, QF_E_USAGE, "pass %u of %u, outputs from %u of %u", p, n_passes(c, c->lm_n_seq), out_from, c->n_ctx);
    if (st) return st;
    double t_start = now_s();
    *seq0 = lm_pass(c, p);
    *n_seq = c->sh.n_seq;
    output_forward(c, out_from, 0);
    if (p + 1 == n_passes(c, c->lm_n_seq) && !c->lm_keep) qf_rt_model_release(c->m, -1);
    c->eval_s += now_s() - t_start;
    *logits = c->logits;
    *ld = c->ld_out;
    return check_finite(c, err);
}
