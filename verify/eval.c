/* eval.c — qf_perplexity and qf_verify (qforge.h): llama-perplexity's chunking over one model or over a
 * base and a model side by side. */
#include "runtime/runtime.h"
#include "runtime/text.h"
#include "verify/score.h"
#include "runtime/tokenizer.h"
#include "verify/basefile.h"
#include "verify/route.h"

#include <math.h>
#include <unistd.h>

/* One or two models fed the same chunks. Model 0 is the one tokenizing (verify: the base; the model when
 * it is compared with a base-logits file). */
typedef struct session {
    qf_rt_model *m[2];
    qf_rt_ctx *c[2];
    int n_models;
    int32_t *tokens;
    size_t n_tokens;
    int32_t bos;
    bool add_bos;
    uint32_t ctx, batch, n_chunks, first;
    uint32_t n_seq;   /* chunks per forward call (batch >= 2 ctx); 1: one chunk in batches of `batch` */
    int32_t *chunk;   /* [n_seq][ctx] the current chunks' inputs (first token replaced by BOS) */
    qf_score_buf sb;
    qf_route_log routes[2]; /* verify: each model's experts per token of the current forward call */
    size_t route_from;      /* the call's token behind the first column handed to `score` */
    qf_layer_major_info lm; /* lm.on: every model layer-major, in lockstep, in groups of chunks */
    qf_rt_digest *md[2];    /* run_params.file_sha256: each model file's digest, taken as the run goes */
    qf_rt_backend_choice backend;
    const qf_backend_opts *backend_opts;
} session;

#define TOPK_DEFAULT UINT32_MAX

typedef struct run_params {
    const char *text_path;
    uint32_t ctx, chunks, batch;
    int threads;
    bool no_escape, act_q8;
    uint32_t topk;   /* columns keep their k most likely tokens in the score buffer (verify --save-base);
                        TOPK_DEFAULT: 1024, or the whole vocabulary where it is smaller */
    bool routes;     /* log the experts each token chooses (verify: routing agreement) */
    const qf_layer_major_opts *lm;
    bool file_sha256;
    const qf_backend_opts *backend;
} run_params;

/* Called per forward batch with each model's logits for n scored columns and their target tokens. */
typedef qf_status (*batch_fn)(void *u, session *s, const float *const *logits, size_t ld, const int32_t *targets,
                              uint32_t n, qf_error *err);
/* Called after each chunk. */
typedef void (*chunk_fn)(void *u, const session *s, uint32_t chunk);

static void session_close(session *s) {
    for (int i = 0; i < 2; i++) {
        qf_route_log_free(&s->routes[i]);
        qf_rt_ctx_free(s->c[i]);
        qf_rt_model_close(s->m[i]);
        qf_rt_digest_free(s->md[i]);
    }
    free(s->tokens);
    free(s->chunk);
    qf_score_buf_free(&s->sb);
}

static qf_status tokenize_text(session *s, const run_params *p, qf_error *err) {
    return qf_text_tokens(&s->m[0]->vocab, s->m[0]->label, p->text_path, !p->no_escape, &s->tokens, &s->n_tokens,
                          &s->add_bos, &s->bos, err);
}

/* Default tokens per forward call: whole chunks filling one of the runtime's passes through the layers
 * (1024 tokens, forward.c; a larger batch only holds more logits), fewer so that one model's logits
 * buffer, 4 n_vocab bytes per token, stays within QF_VERIFY_LOGITS_BYTES; below one chunk, a chunk is
 * split into batches. Results do not depend on it. */
#define PASS_TOKENS 1024u

static uint32_t default_batch(uint32_t n_vocab, uint32_t ctx) {
    uint64_t fit = QF_MAX(1, QF_VERIFY_LOGITS_BYTES / (4 * (uint64_t)QF_MAX(n_vocab, 1)));
    if (fit < ctx) return (uint32_t)fit;
    return (uint32_t)(QF_MIN(QF_MAX(ctx, PASS_TOKENS), fit) / ctx * ctx);
}

static qf_status plan_chunks(session *s, const run_params *p, qf_error *err) {
    s->ctx = p->ctx ? p->ctx : 512;
    if (s->ctx < 4) return qf_fail(err, QF_E_USAGE, "--ctx %u is too small; use at least 4", s->ctx);
    if (s->n_tokens < 2 * (uint64_t)s->ctx)
        return qf_fail(err, QF_E_INPUT, "%s tokenizes to %zu tokens; a context of %u needs at least %llu", p->text_path,
                       s->n_tokens, s->ctx, 2ull * s->ctx);
    uint64_t max_chunks = s->n_tokens / s->ctx;
    s->n_chunks = (uint32_t)(p->chunks && p->chunks < max_chunks ? p->chunks : max_chunks);
    /* as llama-perplexity -b: a batch of at least ctx tokens evaluates whole chunks, batch / ctx at once */
    uint32_t batch = p->batch ? p->batch : default_batch(s->m[0]->hp.n_vocab, s->ctx);
    s->n_seq = batch >= s->ctx ? QF_MIN(batch / s->ctx, s->n_chunks) : 1;
    s->batch = QF_MIN(batch, s->ctx);
    s->first = s->ctx / 2;
    if (!(s->chunk = qf_malloc_n((uint64_t)s->n_seq * s->ctx, sizeof *s->chunk)))
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    uint32_t k = p->topk == TOPK_DEFAULT ? QF_MIN(1024u, s->m[0]->hp.n_vocab) : p->topk;
    return qf_score_buf_init(&s->sb, s->batch, k, err);
}

/* The groups of a layer-major run, told to the caller before it starts; a group's routes are logged
 * whole (*call: tokens per group), and its chunks' inputs held at once. */
static qf_status plan_layer_major(session *s, const run_params *p, uint32_t *call, qf_error *err) {
    qf_status st = qf_rt_lm_plan(s->c, (const qf_rt_model *const *)s->m, s->n_models, s->n_chunks, p->lm, &s->lm, err);
    if (st) return st;
    if (p->lm->on_plan) p->lm->on_plan(p->lm->user, &s->lm);
    *call = s->lm.chunks_per_group * s->ctx;
    free(s->chunk);
    if (!(s->chunk = qf_malloc_n((uint64_t)s->lm.chunks_per_group * s->ctx, sizeof *s->chunk)))
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    return QF_OK;
}

static qf_status session_open(session *s, const char *const *paths, int n, const run_params *p, qf_error *err) {
    memset(s, 0, sizeof *s);
    s->n_models = n;
    int threads = p->threads > 0 ? p->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    qf_status st = QF_OK;
    for (int i = 0; !st && i < n; i++) st = qf_rt_model_open(paths[i], &s->m[i], err);
    for (int i = 0; !st && p->file_sha256 && i < n; i++) st = qf_rt_digest_open(s->m[i], paths[i], &s->md[i], err);
    if (!st && n == 2) {
        const qf_vocab *a = &s->m[0]->vocab, *b = &s->m[1]->vocab;
        if (s->m[0]->hp.n_vocab != s->m[1]->hp.n_vocab || a->n_tokens != b->n_tokens)
            st = qf_fail(err, QF_E_INPUT, "vocabularies differ: base %s has %u tokens (%u logits), model %s has %u (%u logits)",
                         s->m[0]->label, a->n_tokens, s->m[0]->hp.n_vocab, s->m[1]->label, b->n_tokens,
                         s->m[1]->hp.n_vocab);
        for (uint32_t t = 0; !st && t < a->n_tokens; t++)
            if (strcmp(a->tokens[t], b->tokens[t]) != 0)
                st = qf_fail(err, QF_E_INPUT, "vocabularies differ at token %u: base has '%.40s', model has '%.40s'", t,
                             a->tokens[t], b->tokens[t]);
    }
    if (!st) st = tokenize_text(s, p, err);
    if (!st) st = plan_chunks(s, p, err);
    if (!st) qf_rt_lm_decide((const qf_rt_model *const *)s->m, n, p->lm, &s->lm);
    uint32_t call = s->n_seq > 1 ? s->n_seq * s->ctx : s->batch;
    qf_rt_ctx_opts co = {.n_ctx = s->ctx, .n_batch = call, .n_threads = threads, .layer_major = s->lm.on};
    s->backend_opts = p->backend;
    if (!st) st = qf_rt_backend_pick(p->backend, p->act_q8, &s->backend, err);
    co.backend = s->backend.got;
    for (int i = 0; !st && i < n; i++) {
        st = qf_rt_ctx_open(s->m[i], &co, &s->c[i], err);
        if (!st) qf_rt_ctx_set_act_q8(s->c[i], p->act_q8);
    }
    if (!st && s->lm.on) st = plan_layer_major(s, p, &call, err);
    for (int i = 0; !st && p->routes && i < n; i++) st = qf_route_log_init(&s->routes[i], s->m[i], s->c[i], call, err);
    return st;
}

/* Around every forward call of a batch: each model logs the routes of exactly the call's n tokens. */
static void routes_begin(session *s) {
    for (int k = 0; k < s->n_models; k++) qf_route_log_begin(&s->routes[k]);
}

static qf_status routes_end(const session *s, uint32_t n, qf_error *err) {
    qf_status st = QF_OK;
    for (int k = 0; !st && k < s->n_models; k++) st = qf_route_log_end(&s->routes[k], n, s->m[k]->label, err);
    return st;
}

/* One chunk: clear the caches, run the batches, hand every scored column to `score`. Column j of a batch
 * starting at chunk position b0 with outputs from position o is position o + j; it predicts the next
 * token, and only positions first .. ctx-2 are scored. */
static void load_chunk(session *s, uint32_t i, int32_t *dst) {
    memcpy(dst, s->tokens + (size_t)i * s->ctx, s->ctx * sizeof *dst);
    if (s->add_bos) dst[0] = s->bos;
}

static qf_status run_chunk(session *s, uint32_t i, batch_fn score, void *u, qf_error *err) {
    const int32_t *src = s->tokens + (size_t)i * s->ctx;
    load_chunk(s, i, s->chunk);
    for (int k = 0; k < s->n_models; k++) qf_rt_ctx_clear(s->c[k]);
    for (uint32_t b0 = 0; b0 < s->ctx; b0 += s->batch) {
        uint32_t nb = QF_MIN(s->batch, s->ctx - b0);
        uint32_t out_pos = QF_MAX(b0, s->first), out_from = out_pos - b0;
        const float *logits[2] = {NULL, NULL};
        size_t ld = 0;
        routes_begin(s);
        for (int k = 0; k < s->n_models; k++) {
            qf_status st = qf_rt_eval(s->c[k], s->chunk + b0, nb, b0, out_from, &logits[k], &ld, err);
            if (st) return st;
        }
        qf_status st = routes_end(s, nb, err);
        if (st) return st;
        if (out_pos >= b0 + nb || out_pos > s->ctx - 2) continue;
        uint32_t n_score = QF_MIN(b0 + nb, s->ctx - 1) - out_pos;
        s->route_from = out_from;
        if ((st = score(u, s, logits, ld, src + out_pos + 1, n_score, err))) return st;
    }
    return QF_OK;
}

/* Chunks i .. i+n-1 in one forward call per model (qf_rt_eval_seqs), then scored chunk by chunk: the
 * logits of chunk q start at column q * (ctx - first). */
static qf_status run_group(session *s, uint32_t i, uint32_t n, batch_fn score, chunk_fn after, void *u,
                           qf_error *err) {
    for (uint32_t q = 0; q < n; q++) load_chunk(s, i + q, s->chunk + (size_t)q * s->ctx);
    const float *logits[2] = {NULL, NULL};
    size_t ld = 0;
    routes_begin(s);
    for (int k = 0; k < s->n_models; k++) {
        qf_status st = qf_rt_eval_seqs(s->c[k], s->chunk, n, s->ctx, s->first, &logits[k], &ld, err);
        if (st) return st;
    }
    qf_status st = routes_end(s, n * s->ctx, err);
    if (st) return st;
    for (uint32_t q = 0; q < n; q++) {
        size_t col = (size_t)q * (s->ctx - s->first);
        const float *lq[2] = {logits[0] + col, logits[1] ? logits[1] + col : NULL};
        const int32_t *targets = s->tokens + (size_t)(i + q) * s->ctx + s->first + 1;
        s->route_from = (size_t)q * s->ctx + s->first;
        if ((st = score(u, s, lq, ld, targets, s->ctx - 1 - s->first, err))) return st;
        after(u, s, i + q);
    }
    return QF_OK;
}

/* Chunk `chunk`'s scored columns (from column col of the logits), in slices the score buffer holds;
 * `route0` is its first token within the group's routes. */
static qf_status score_chunk(session *s, uint32_t chunk, const float *const *logits, size_t col, size_t ld,
                             size_t route0, batch_fn score, void *u, qf_error *err) {
    const int32_t *targets = s->tokens + (size_t)chunk * s->ctx + s->first + 1;
    uint32_t n = s->ctx - 1 - s->first;
    for (uint32_t j0 = 0; j0 < n; j0 += s->batch) {
        const float *lq[2] = {logits[0] + col + j0, logits[1] ? logits[1] + col + j0 : NULL};
        s->route_from = route0 + s->first + j0;
        qf_status st = score(u, s, lq, ld, targets + j0, QF_MIN(s->batch, n - j0), err);
        if (st) return st;
    }
    return QF_OK;
}

/* Chunks i .. i+n-1 layer-major: every model's layer l over all of them before layer l+1 (the models
 * in lockstep), then the logits pass by pass, scored chunk by chunk in order. */
static qf_status run_layer_major(session *s, uint32_t i, uint32_t n, batch_fn score, chunk_fn after, void *u,
                                 qf_error *err) {
    for (uint32_t q = 0; q < n; q++) load_chunk(s, i + q, s->chunk + (size_t)q * s->ctx);
    routes_begin(s);
    qf_status st = QF_OK;
    uint32_t layers = 0;
    for (int k = 0; !st && k < s->n_models; k++) {
        st = qf_rt_lm_begin(s->c[k], s->chunk, n, err);
        layers = QF_MAX(layers, s->m[k]->hp.n_layer);
    }
    for (uint32_t l = 0; !st && l < layers; l++)
        for (int k = 0; !st && k < s->n_models; k++) {
            if (l >= s->m[k]->hp.n_layer) continue;
            /* the digest reads the layer's bytes first, through the mapping the layer then uses */
            st = qf_rt_digest_layer(s->md[k], (int)l, err);
            if (!st) st = qf_rt_lm_layer(s->c[k], l, err);
        }
    if (!st) st = routes_end(s, n * s->ctx, err);
    for (uint32_t p = 0; !st && p < qf_rt_lm_passes(s->c[0]); p++) {
        const float *logits[2] = {NULL, NULL};
        size_t ld = 0;
        uint32_t seq0 = 0, n_seq = 0;
        for (int k = 0; !st && k < s->n_models; k++) st = qf_rt_lm_logits(s->c[k], p, s->first, &logits[k], &ld, &seq0, &n_seq, err);
        for (uint32_t q = 0; !st && q < n_seq; q++) {
            st = score_chunk(s, i + seq0 + q, logits, (size_t)q * (s->ctx - s->first), ld, (size_t)(seq0 + q) * s->ctx,
                             score, u, err);
            if (!st) after(u, s, i + seq0 + q);
        }
    }
    return st;
}

/* Model k's file digest into hex ("" without one): the rest of the file that the run did not take it to. */
static qf_status finish_digest(session *s, int k, char hex[65], qf_error *err) {
    qf_rt_digest *md = s->md[k];
    s->md[k] = NULL;
    return qf_rt_digest_finish(md, hex, err);
}

static qf_status run_all(session *s, batch_fn score, chunk_fn after, void *u, qf_error *err) {
    qf_rt_backend_announce(s->backend_opts, &s->backend);
    for (uint32_t i = 0; s->lm.on && i < s->n_chunks; i += s->lm.chunks_per_group) {
        qf_status st = run_layer_major(s, i, QF_MIN(s->lm.chunks_per_group, s->n_chunks - i), score, after, u, err);
        if (st) return st;
    }
    for (uint32_t i = 0; !s->lm.on && i < s->n_chunks; i += s->n_seq) {
        qf_status st = QF_OK;
        if (s->n_seq > 1) st = run_group(s, i, QF_MIN(s->n_seq, s->n_chunks - i), score, after, u, err);
        else if (!(st = run_chunk(s, i, score, u, err))) after(u, s, i);
        if (st) return st;
    }
    return QF_OK;
}

/* llama-perplexity's estimate: ppl * sqrt(var(nll) / (count - 1)). */
static double ppl_err(double sum, double sum2, uint64_t count) {
    if (count < 2) return 0;
    double mean = sum / (double)count, var = sum2 / (double)count - mean * mean;
    return var > 0 ? exp(mean) * sqrt(var / (double)(count - 1)) : 0;
}

/* ---- perplexity ---------------------------------------------------------------------------------- */

typedef struct ppl_state {
    const qf_perplexity_opts *o;
    double sum, sum2, *nll;
    uint64_t count;
} ppl_state;

static qf_status ppl_batch(void *u, session *s, const float *const *logits, size_t ld, const int32_t *tg, uint32_t n,
                           qf_error *err) {
    ppl_state *p = u;
    (void)err;
    qf_score_nll(s->c[0], &s->sb, logits[0], ld, s->m[0]->hp.n_vocab, tg, n, p->nll);
    for (uint32_t j = 0; j < n; j++) { p->sum += p->nll[j]; p->sum2 += p->nll[j] * p->nll[j]; }
    p->count += n;
    return QF_OK;
}

static void ppl_chunk(void *u, const session *s, uint32_t i) {
    ppl_state *p = u;
    if (p->o->on_chunk) p->o->on_chunk(p->o->user, i + 1, s->n_chunks, exp(p->sum / (double)p->count));
}

qf_status qf_perplexity(const qf_perplexity_opts *o, qf_perplexity_result *r, qf_error *err) {
    qf_error_clear(err);
    memset(r, 0, sizeof *r);
    if (!o->model || !o->text_path) return qf_fail(err, QF_E_USAGE, "perplexity needs a model and a text file");
    run_params rp = {o->text_path, o->ctx, o->chunks, o->batch, o->threads, o->no_escape, o->act_q8, 0, false,
                     &o->layer_major, o->file_sha256, &o->backend};
    session s;
    ppl_state p = {.o = o};
    qf_status st = session_open(&s, &o->model, 1, &rp, err);
    if (!st && !(p.nll = qf_calloc_n(s.batch, sizeof(double)))) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    if (!st) st = run_all(&s, ppl_batch, ppl_chunk, &p, err);
    if (!st) st = finish_digest(&s, 0, r->model_sha256, err);
    if (!st) {
        r->ctx = s.ctx;
        r->n_chunks = s.n_chunks;
        r->n_tokens = s.n_tokens;
        r->n_scored = p.count;
        r->mean_nll = p.sum / (double)p.count;
        r->ppl = exp(r->mean_nll);
        r->ppl_err = ppl_err(p.sum, p.sum2, p.count);
        r->eval_seconds = qf_rt_eval_seconds(s.c[0]);
        r->tokens_per_second = r->eval_seconds > 0 ? (double)s.n_chunks * s.ctx / r->eval_seconds : 0;
    }
    free(p.nll);
    session_close(&s);
    return st;
}

/* ---- verify -------------------------------------------------------------------------------------- */

typedef struct cmp_state {
    const qf_verify_opts *o;
    qf_score_cols cols;
    double sum_m, sum2_m, sum_b, sum2_b, dp2;
    double *kld_all;   /* [n_chunks * scored per chunk] */
    uint64_t count, top1;
    double tail_sum;             /* sum of the file's tail masses */
    const qf_baselogits *bl;     /* compare with this file (model 0 is the model), or NULL (model 0: base) */
    qf_baselogits_rec *recs;     /* [batch] the file's records of the current batch */
    qf_baselogits_writer *bw;    /* save the base's compact columns here, or NULL */
    uint32_t *ids;               /* [batch][k] scratch for saving */
    float *logp, *tail, *nll;
    qf_route_tally rt;           /* routing agreement per MoE layer; rt.n_slots 0: not compared */
    uint16_t *experts;           /* [route layers][k] one token's base experts, as the file stores them */
    const char *route_none;      /* MoE models whose routes cannot be compared: why */
} cmp_state;

/* The base's compact form of this batch's columns, appended to the file being saved. */
static qf_status save_base_cols(cmp_state *v, session *s, const float *base, size_t ld, const int32_t *tg, uint32_t n,
                                qf_error *err) {
    uint32_t k = s->sb.k;
    qf_score_topk(s->c[0], &s->sb, base, ld, s->m[0]->hp.n_vocab, tg, n, v->ids, v->logp, v->tail, v->nll);
    const qf_route_log *g = &s->routes[0];
    for (uint32_t j = 0; j < n; j++) {
        for (uint32_t q = 0; q < g->lay.n_slots; q++)
            memcpy(v->experts + (size_t)q * g->lay.k, qf_route_log_at(g, q, s->route_from + j), g->lay.k * sizeof *v->experts);
        qf_status st = qf_baselogits_write(v->bw, v->nll[j], v->tail[j], v->ids + (size_t)j * k, v->logp + (size_t)j * k,
                                           v->experts, err);
        if (st) return st;
    }
    return QF_OK;
}

/* The base's experts of column j in MoE slot q: the live base's, or the file's record (copied out: the
 * file's are little-endian and unaligned). */
static const uint16_t *base_experts(cmp_state *v, const session *s, uint32_t j, uint32_t q) {
    uint32_t k = v->rt.k;
    if (!v->bl) return qf_route_log_at(&s->routes[0], q, s->route_from + j);
    qf_baselogits_rec rec = qf_baselogits_at(v->bl, v->count + j);
    for (uint32_t i = 0; i < k; i++) v->experts[i] = qf_baselogits_expert(&rec, q * k + i);
    return v->experts;
}

/* The batch's columns in every MoE layer: the base's experts against the model's, at the same tokens. */
static void tally_routes(cmp_state *v, const session *s, uint32_t n) {
    const qf_route_log *model = &s->routes[s->n_models - 1];
    for (uint32_t j = 0; j < n && v->rt.n_slots; j++)
        for (uint32_t q = 0; q < v->rt.n_slots; q++)
            qf_route_tally_add(&v->rt, q, base_experts(v, s, j, q), qf_route_log_at(model, q, s->route_from + j));
}

static qf_status cmp_batch(void *u, session *s, const float *const *logits, size_t ld, const int32_t *tg, uint32_t n,
                           qf_error *err) {
    cmp_state *v = u;
    uint32_t V = s->m[0]->hp.n_vocab;
    if (v->bl) {
        for (uint32_t j = 0; j < n; j++) {
            v->recs[j] = qf_baselogits_at(v->bl, v->count + j);
            v->tail_sum += v->recs[j].tail;
        }
        qf_score_compare_compact(s->c[0], &s->sb, v->recs, v->bl->h.k, logits[0], ld, V, tg, n, &v->cols);
    } else {
        qf_score_compare(s->c[0], &s->sb, logits[0], logits[1], ld, V, tg, n, &v->cols);
        qf_status st = v->bw ? save_base_cols(v, s, logits[0], ld, tg, n, err) : QF_OK;
        if (st) return st;
    }
    tally_routes(v, s, n);
    for (uint32_t j = 0; j < n; j++) {
        double nm = v->cols.nll[j], nb = v->cols.nll_base[j], dp = exp(-nm) - exp(-nb);
        v->sum_m += nm; v->sum2_m += nm * nm;
        v->sum_b += nb; v->sum2_b += nb * nb;
        v->dp2 += dp * dp;
        v->top1 += v->cols.same_top1[j];
        v->kld_all[v->count++] = v->cols.kld[j];
    }
    return QF_OK;
}

static void cmp_chunk(void *u, const session *s, uint32_t i) {
    cmp_state *v = u;
    if (v->o->on_chunk) v->o->on_chunk(v->o->user, i + 1, s->n_chunks, exp(v->sum_m / (double)v->count));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (numpy's default percentile). */
static double quantile(const double *sorted, uint64_t n, double q) {
    double pos = q * (double)(n - 1);
    uint64_t i = (uint64_t)pos;
    if (i + 1 >= n) return sorted[n - 1];
    return sorted[i] + (pos - (double)i) * (sorted[i + 1] - sorted[i]);
}

static void set_check(qf_verify_result *r, qf_verify_check_id id, const char *name, double limit, double value,
                      bool upper) {
    qf_verify_check *c = &r->checks[id];
    c->name = name;
    c->limit = limit;
    c->value = value;
    c->given = limit >= 0;
    c->pass = !c->given || (upper ? value <= limit : value >= limit);
    if (!c->pass) r->pass = false;
}

/* Per MoE layer, the tally's agreement; the mean and the worst layer over them. */
static qf_status fill_routes(const cmp_state *v, const qf_route_layout *lay, qf_verify_result *r, qf_error *err) {
    if (v->route_none) snprintf(r->route_none, sizeof r->route_none, "%s", v->route_none);
    const qf_route_tally *t = &v->rt;
    if (!t->n_slots) return QF_OK;
    if (!(r->route = qf_calloc_n(t->n_slots, sizeof *r->route)))
        return qf_fail(err, QF_E_NOMEM, "out of memory for the routing report");
    r->route_n_layers = t->n_slots;
    r->route_k = t->k;
    r->route_n_expert = t->n_expert;
    r->route_agree_min = 1;
    r->route_agree_min_layer = lay->layer[0];
    for (uint32_t q = 0; q < t->n_slots; q++) {
        qf_verify_route *e = &r->route[q];
        e->layer = lay->layer[q];
        e->agree = (double)t->overlap[q] / ((double)t->count[q] * t->k);
        e->same = (double)t->same[q] / (double)t->count[q];
        r->route_agree_mean += e->agree / t->n_slots;
        r->route_same_mean += e->same / t->n_slots;
        if (e->agree < r->route_agree_min) { r->route_agree_min = e->agree; r->route_agree_min_layer = e->layer; }
    }
    return QF_OK;
}

static void fill_verify(const session *s, cmp_state *v, const qf_verify_opts *o, qf_verify_result *r) {
    uint64_t n = v->count;
    r->ctx = s->ctx;
    r->n_chunks = s->n_chunks;
    r->n_tokens = s->n_tokens;
    r->n_scored = n;
    r->ppl_model = exp(v->sum_m / (double)n);
    r->ppl_base = exp(v->sum_b / (double)n);
    r->ppl_model_err = ppl_err(v->sum_m, v->sum2_m, n);
    r->ppl_base_err = ppl_err(v->sum_b, v->sum2_b, n);
    r->ppl_ratio = r->ppl_model / r->ppl_base;
    double sum = 0, sum2 = 0;
    for (uint64_t i = 0; i < n; i++) { sum += v->kld_all[i]; sum2 += v->kld_all[i] * v->kld_all[i]; }
    r->kld_mean = sum / (double)n;
    /* llama-perplexity's uncertainty of the mean (mean_and_uncertainty): 0 below 11 tokens */
    double var = sum2 / (double)n - r->kld_mean * r->kld_mean;
    r->kld_mean_err = var > 0 && n > 10 ? sqrt(var / (double)(n - 1)) : 0;
    qsort(v->kld_all, n, sizeof *v->kld_all, cmp_double);
    r->kld_median = quantile(v->kld_all, n, 0.5);
    r->kld_p99 = quantile(v->kld_all, n, 0.99);
    r->kld_max = v->kld_all[n - 1];
    r->top1_pct = 100.0 * (double)v->top1 / (double)n;
    r->dp_rms_pct = 100.0 * sqrt(v->dp2 / (double)n);
    r->eval_seconds = qf_rt_eval_seconds(s->c[0]) + (s->c[1] ? qf_rt_eval_seconds(s->c[1]) : 0);
    r->kld_topk = v->bl ? v->bl->h.k : 0;
    r->base_tail_mean = v->bl ? v->tail_sum / (double)n : 0;
    r->pass = true;
    set_check(r, QF_CHECK_KLD, "max_kld", o->max_kld, r->kld_mean, true);
    set_check(r, QF_CHECK_PPL, "max_ppl_increase", o->max_ppl_increase, 100.0 * (r->ppl_ratio - 1.0), true);
    set_check(r, QF_CHECK_TOP1, "min_top1", o->min_top1, r->top1_pct, false);
    set_check(r, QF_CHECK_ROUTE, "min_route_agree", o->min_route_agree > 0 ? o->min_route_agree : -1,
              r->route_agree_min, false);
    for (uint32_t i = 0; r->checks[QF_CHECK_ROUTE].given && i < r->route_n_layers; i++) {
        r->route[i].below = r->route[i].agree < o->min_route_agree;
        r->route_n_below += r->route[i].below;
    }
}

/* The routing gate's part of the verdict: every layer below the limit, by number, worst first named. */
static void route_verdict(const qf_verify_result *r, char *out, size_t n) {
    size_t used = (size_t)snprintf(out, n, "routing agreement %.4g < %.4g in MoE layer %u", r->route_agree_min,
                                   r->checks[QF_CHECK_ROUTE].limit, r->route_agree_min_layer);
    if (r->route_n_below < 2 || used >= n) return;
    used += (size_t)snprintf(out + used, n - used, " (%u of %u layers below:", r->route_n_below, r->route_n_layers);
    for (uint32_t i = 0; i < r->route_n_layers && used < n; i++)
        if (r->route[i].below) used += (size_t)snprintf(out + used, n - used, " %u", r->route[i].layer);
    if (used < n) snprintf(out + used, n - used, ")");
}

static qf_status verify_verdict(const qf_verify_result *r, qf_error *err) {
    if (r->pass) return QF_OK;
    char msg[512] = "verify failed:";
    static const char *const what[QF_CHECK_ROUTE] = {"mean KLD %.6g > %.6g", "PPL increase %.4g%% > %.4g%%",
                                                     "same top-1 %.4g%% < %.4g%%"};
    for (int i = 0; i < QF_CHECK_COUNT; i++) {
        if (r->checks[i].pass) continue;
        char one[256];
        if (i == QF_CHECK_ROUTE) route_verdict(r, one, sizeof one);
        else snprintf(one, sizeof one, what[i], r->checks[i].value, r->checks[i].limit);
        size_t used = strlen(msg);
        snprintf(msg + used, sizeof msg - used, " %s;", one);
    }
    return qf_fail(err, QF_E_CHECK, "%s", msg);
}

static qf_status alloc_cmp(cmp_state *v, const session *s, qf_error *err) {
    v->cols.nll = qf_calloc_n(s->batch, sizeof(double));
    v->cols.nll_base = qf_calloc_n(s->batch, sizeof(double));
    v->cols.kld = qf_calloc_n(s->batch, sizeof(double));
    v->cols.same_top1 = qf_calloc_n(s->batch, 1);
    v->kld_all = qf_calloc_n((uint64_t)s->n_chunks * s->ctx, sizeof(double));
    v->recs = qf_calloc_n(s->batch, sizeof *v->recs);
    uint64_t k = s->sb.k;
    bool ok = v->cols.nll && v->cols.nll_base && v->cols.kld && v->cols.same_top1 && v->kld_all && v->recs;
    if (ok && k) {
        v->ids = qf_calloc_n(s->batch, k * sizeof *v->ids);
        v->logp = qf_calloc_n(s->batch, k * sizeof *v->logp);
        v->tail = qf_calloc_n(s->batch, sizeof *v->tail);
        v->nll = qf_calloc_n(s->batch, sizeof *v->nll);
        ok = v->ids && v->logp && v->tail && v->nll;
    }
    return ok ? QF_OK : qf_fail(err, QF_E_NOMEM, "out of memory for verify statistics");
}

static void free_cmp(cmp_state *v) {
    free(v->cols.nll); free(v->cols.nll_base); free(v->cols.kld); free(v->cols.same_top1); free(v->kld_all);
    free(v->recs); free(v->ids); free(v->logp); free(v->tail); free(v->nll);
    qf_route_tally_free(&v->rt);
    free(v->experts);
}

/* Compare routes when both sides route alike: the base's (the live base, or the file's) and the model's.
 * Dense models: nothing to compare, nothing said. A gate on agreement that cannot be computed is refused:
 * it must never pass for want of numbers. */
static qf_status setup_routes(cmp_state *v, const session *s, const qf_verify_opts *o, qf_error *err) {
    const qf_route_layout *model = &s->routes[s->n_models - 1].lay;
    if (v->bl) {
        const qf_baselogits_header *h = &v->bl->h;
        qf_route_layout file = {.n_slots = h->route_layers, .k = h->route_k, .n_expert = h->n_expert,
                                .layer = (uint32_t *)h->route_layer};
        if (h->version < 2 && model->n_slots)
            v->route_none = "a version-1 base-logits file holds no routes; save it again with --save-base, or verify "
                            "with --base";
        else if (!file.n_slots && model->n_slots) v->route_none = "the file's base has no mixture-of-experts layers";
        else if (file.n_slots || model->n_slots) v->route_none = qf_route_layout_differs(&file, model);
    } else {
        const qf_route_layout *base = &s->routes[0].lay;
        if (base->n_slots || model->n_slots) v->route_none = qf_route_layout_differs(base, model);
    }
    qf_status st = QF_OK;
    if (model->n_slots && !v->route_none) st = qf_route_tally_init(&v->rt, model, err);
    if (!st && v->rt.n_slots && !v->experts && !(v->experts = qf_calloc_n(v->rt.n_slots, v->rt.k * sizeof *v->experts)))
        st = qf_fail(err, QF_E_NOMEM, "out of memory for the routing statistics");
    if (!st && o->min_route_agree > 0 && !v->rt.n_slots)
        st = qf_fail(err, QF_E_INPUT, "--min-route-agree: %s: %s", o->model,
                     v->route_none ? v->route_none : "a dense model routes no experts");
    return st;
}

/* --save-base: the base's MoE layers go into the file's header, and a record's worth of scratch. */
static qf_status header_routes(qf_baselogits_header *h, const qf_route_layout *base, const char *path, cmp_state *v,
                               qf_error *err) {
    if (!base->n_slots) return QF_OK;
    if (base->n_slots > QF_BASELOGITS_MAX_ROUTE_LAYERS)
        return qf_fail(err, QF_E_USAGE, "%s: %u mixture-of-experts layers, more than a base-logits file holds (%u)", path,
                       base->n_slots, QF_BASELOGITS_MAX_ROUTE_LAYERS);
    h->route_layers = base->n_slots;
    h->route_k = base->k;
    h->n_expert = base->n_expert;
    memcpy(h->route_layer, base->layer, base->n_slots * sizeof *base->layer);
    if (!v->experts && !(v->experts = qf_calloc_n(base->n_slots, base->k * sizeof *v->experts)))
        return qf_fail(err, QF_E_NOMEM, "out of memory for the routing statistics");
    return QF_OK;
}

static qf_base_run base_run(const session *s, const run_params *p) {
    return (qf_base_run){.text_path = p->text_path, .vocab = &s->m[0]->vocab, .n_vocab = s->m[0]->hp.n_vocab,
                         .tokens = s->tokens, .n_tokens = s->n_tokens, .ctx = s->ctx, .n_chunks = s->n_chunks,
                         .first = s->first, .no_escape = p->no_escape, .act_q8 = p->act_q8, .bos = s->add_bos};
}

/* --base given with --base-logits: it must be the base the file was computed from. */
static qf_status check_base_identity(const qf_verify_opts *o, const qf_baselogits *bl, qf_error *err) {
    qf_rt_model *m = NULL;
    uint8_t id[32];
    qf_status st = qf_rt_model_open(o->base, &m, err);
    if (!st) st = qf_base_identity(m, id, err);
    qf_rt_model_close(m);
    if (!st && memcmp(id, bl->h.base, 32) != 0)
        st = qf_fail(err, QF_E_INPUT, "%s: computed from another base model (%s), not %s", o->base_logits, bl->h.label,
                     o->base);
    return st;
}

/* Compare the model with a saved base: its ctx and chunk count unless the options name them (then they
 * must agree), the model alone in the session, and everything the file was made with checked. */
static qf_status open_with_file(session *s, cmp_state *v, qf_baselogits *bl, const qf_verify_opts *o, run_params *rp,
                                qf_error *err) {
    qf_status st = qf_baselogits_load(o->base_logits, bl, err);
    if (st) return st;
    if ((o->ctx && o->ctx != bl->h.ctx) || (o->chunks && o->chunks != bl->h.n_chunks))
        return qf_fail(err, QF_E_INPUT, "%s: computed with --ctx %u over %u chunks; this run asks for --ctx %u over %u",
                       o->base_logits, bl->h.ctx, bl->h.n_chunks, o->ctx ? o->ctx : bl->h.ctx,
                       o->chunks ? o->chunks : bl->h.n_chunks);
    if (o->base && (st = check_base_identity(o, bl, err))) return st;
    rp->ctx = bl->h.ctx;
    rp->chunks = bl->h.n_chunks;
    if ((st = session_open(s, &o->model, 1, rp, err))) return st;
    qf_base_run run = base_run(s, rp);
    if ((st = qf_base_check(o->base_logits, &bl->h, &run, err))) return st;
    v->bl = bl;
    return QF_OK;
}

qf_status qf_verify(const qf_verify_opts *o, qf_verify_result *r, qf_error *err) {
    qf_error_clear(err);
    memset(r, 0, sizeof *r);
    if (!o->model || (!o->base && !o->base_logits) || !o->text_path)
        return qf_fail(err, QF_E_USAGE,
                       "verify needs a model, a base (--base, or --base-logits) and a text file (--text)");
    if (o->save_base && o->base_logits)
        return qf_fail(err, QF_E_USAGE, "--save-base writes what --base-logits reads: give one of them");
    run_params rp = {o->text_path, o->ctx, o->chunks, o->batch, o->threads, o->no_escape, o->act_q8,
                     o->save_base ? (o->base_topk ? o->base_topk : TOPK_DEFAULT) : 0, true, &o->layer_major,
                     o->file_sha256, &o->backend};
    const char *paths[2] = {o->base, o->model};
    session s;
    memset(&s, 0, sizeof s);
    cmp_state v = {.o = o};
    qf_baselogits bl = {0};
    qf_status st = o->base_logits ? open_with_file(&s, &v, &bl, o, &rp, err) : session_open(&s, paths, 2, &rp, err);
    if (!st && o->save_base) {
        qf_baselogits_header h;
        qf_base_run run = base_run(&s, &rp);
        st = qf_base_header(&run, s.m[0], o->base, s.sb.k, &h, err);
        if (!st) st = header_routes(&h, &s.routes[0].lay, o->save_base, &v, err);
        if (!st) st = qf_baselogits_writer_open(o->save_base, &h, &v.bw, err);
    }
    if (!st) st = alloc_cmp(&v, &s, err);
    if (!st) st = setup_routes(&v, &s, o, err);
    if (!st) st = run_all(&s, cmp_batch, cmp_chunk, &v, err);
    if (!st) st = finish_digest(&s, s.n_models - 1, r->model_sha256, err);
    if (!st && s.n_models == 2) st = finish_digest(&s, 0, r->base_sha256, err);
    if (v.bw) {
        qf_status fs = st ? (qf_baselogits_writer_abort(v.bw), st) : qf_baselogits_writer_finish(v.bw, err);
        st = st ? st : fs;
    }
    if (!st) st = fill_routes(&v, &s.routes[s.n_models - 1].lay, r, err);
    if (!st) {
        fill_verify(&s, &v, o, r);
        st = verify_verdict(r, err);
    }
    free_cmp(&v);
    qf_baselogits_free(&bl);
    session_close(&s);
    return st;
}

void qf_verify_result_free(qf_verify_result *r) {
    free(r->route);
    r->route = NULL;
    r->route_n_layers = 0;
}
