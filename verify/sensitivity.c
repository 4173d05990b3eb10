/* sensitivity.c — the cost of quantizing each tensor, measured (sensitivity.h). */
#include "verify/sensitivity.h"
#include "formats/gguf.h"
#include "runtime/runtime.h"
#include "runtime/text.h"
#include "verify/score.h"

#include <math.h>
#include <unistd.h>

/* ---- the weights a quantizer changes, as swappable slots ----------------------------------------- */

/* Every weight matrix a quantization plan stores in a quantized type, in the model's order, with a
 * stacked expert tensor's matrices together: embeddings, each layer's attention, dense FFN or shared
 * expert, routed experts by role, then the output (unless it is the embeddings). Routers are left out:
 * every plan keeps them F32 (quantize/plan.c). */
static size_t model_slots(qf_rt_model *m, qf_rt_weight **out) {
    size_t n = 0;
#define ADD(w) do { if ((w)->n_rows) { if (out) out[n] = (w); n++; } } while (0)
    ADD(&m->tok_embd);
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        qf_rt_attn *A = &m->layers[l].a;
        qf_rt_ffn *F = &m->layers[l].f;
        qf_rt_weight *mats[] = {&A->wq, &A->wk, &A->wv, &A->wq_a, &A->wq_b, &A->wkv_a, &A->wkb, &A->wvb, &A->wo,
                                &F->wg, &F->wu, &F->wd};
        for (size_t i = 0; i < QF_ARRAY_LEN(mats); i++) ADD(mats[i]);
        for (uint32_t e = 0; F->moe && e < m->hp.n_expert; e++) ADD(&F->eg[e]);
        for (uint32_t e = 0; F->moe && e < m->hp.n_expert; e++) ADD(&F->eu[e]);
        for (uint32_t e = 0; F->moe && e < m->hp.n_expert; e++) ADD(&F->ed[e]);
    }
    bool tied = m->output.data == m->tok_embd.data && m->output.src == m->tok_embd.src &&
                m->output.src_idx == m->tok_embd.src_idx;
    if (!tied) ADD(&m->output);
#undef ADD
    return n;
}

/* A tensor of the plan: slots [first, first + n) of the slot list (one, or a layer's experts of a role). */
typedef struct group {
    char name[96];
    size_t first, n;
    uint64_t params;
} group;

typedef struct model_set {
    qf_rt_model *m;
    qf_rt_weight **slot;
    size_t n_slots;
} model_set;

static qf_status open_set(const char *path, model_set *s, qf_error *err) {
    memset(s, 0, sizeof *s);
    qf_status st = qf_rt_model_open(path, &s->m, err);
    if (st) return st;
    s->n_slots = model_slots(s->m, NULL);
    if (!(s->slot = qf_calloc_n(s->n_slots, sizeof *s->slot))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    model_slots(s->m, s->slot);
    return QF_OK;
}

static void close_set(model_set *s) {
    free(s->slot);
    qf_rt_model_close(s->m);
    memset(s, 0, sizeof *s);
}

static qf_status make_groups(const model_set *b, group **out, size_t *n_out, qf_error *err) {
    group *g = qf_calloc_n(b->n_slots, sizeof *g);
    if (!g) return qf_fail(err, QF_E_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < b->n_slots; i++) {
        const qf_rt_weight *w = b->slot[i];
        bool joins = n && w->expert > 0 && b->slot[i - 1]->role == w->role && b->slot[i - 1]->layer == w->layer;
        if (!joins) {
            g[n] = (group){.first = i};
            qf_arch_tensor_name(w->role, w->layer, g[n].name, sizeof g[n].name);
            n++;
        }
        g[n - 1].n++;
        g[n - 1].params += w->n_rows * w->row_len;
    }
    *out = g;
    *n_out = n;
    return QF_OK;
}

/* A candidate must hold the base's matrices with the same shapes, slot for slot. */
static qf_status check_candidate(const model_set *b, const model_set *c, const group *g, size_t n_groups,
                                 qf_error *err) {
    if (!c->m->gguf) return qf_fail(err, QF_E_INPUT, "%s: a candidate must be a GGUF file", c->m->label);
    if (c->n_slots != b->n_slots)
        return qf_fail(err, QF_E_INPUT, "%s holds %zu weight matrices, the base %s %zu: not the same model", c->m->label,
                       c->n_slots, b->m->label, b->n_slots);
    for (size_t k = 0; k < n_groups; k++)
        for (size_t i = g[k].first; i < g[k].first + g[k].n; i++) {
            const qf_rt_weight *x = b->slot[i], *y = c->slot[i];
            if (x->role != y->role || x->layer != y->layer || x->expert != y->expert || x->n_rows != y->n_rows ||
                x->row_len != y->row_len)
                return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' differs from the base %s in kind or shape",
                               c->m->label, g[k].name, b->m->label);
        }
    for (size_t k = 0; k < n_groups; k++)
        if (!qf_gguf_find_tensor(c->m->gguf, g[k].name))
            return qf_fail(err, QF_E_INPUT, "%s has no tensor '%s'", c->m->label, g[k].name);
    return QF_OK;
}

/* ---- the proxy: importance-weighted squared error ------------------------------------------------- */

#define ERR_ROWS 32u

typedef struct err_job {
    const qf_rt_weight *base, *cand;
    const double *imp;       /* row_len weights, or NULL: 1 each */
    double *row_err;         /* [n_rows] */
    qf_status st;
} err_job;

/* Rows split by thread index alone; each row's sum is one sequential chain, so the total, summed
 * afterwards in row order, does not depend on the thread count. */
static void err_rows(void *arg, int ith, int nth) {
    err_job *j = arg;
    uint64_t rows = j->base->n_rows, len = j->base->row_len;
    uint64_t per = (rows + (uint64_t)nth - 1) / (uint64_t)nth, r0 = per * (uint64_t)ith, r1 = QF_MIN(rows, r0 + per);
    if (r0 >= r1) return;
    float *a = qf_malloc_n(2 * ERR_ROWS, len * sizeof(float));
    if (!a) { j->st = QF_E_NOMEM; return; }
    float *b = a + ERR_ROWS * len;
    for (uint64_t r = r0; r < r1; r += ERR_ROWS) {
        uint64_t n = QF_MIN((uint64_t)ERR_ROWS, r1 - r);
        qf_rt_weight_rows(j->base, r, n, a);
        qf_rt_weight_rows(j->cand, r, n, b);
        for (uint64_t i = 0; i < n; i++) {
            double s = 0;
            for (uint64_t c = 0; c < len; c++) {
                double d = (double)a[i * len + c] - b[i * len + c];
                s += (j->imp ? j->imp[c] : 1.0) * d * d;
            }
            j->row_err[r + i] = s;
        }
    }
    free(a);
}

/* The imatrix's per-token weights of matrix k of group g: sum2 / N, N the tokens a dense layer saw. */
typedef struct importance {
    const qf_imatrix *im;
    double tokens;
} importance;

static double dense_tokens(const qf_imatrix *im) {
    double n = 0;
    for (size_t i = 0; im && i < im->n; i++)
        if (im->e[i].n_mat == 1) n = fmax(n, im->e[i].counts[0]);
    return n;
}

static const qf_imatrix_entry *entry_for(const importance *imp, const group *g, uint64_t row_len) {
    const qf_imatrix_entry *e = imp->im && imp->tokens > 0 ? qf_imatrix_find(imp->im, g->name) : NULL;
    if (!e || e->n_cols != row_len || (e->n_mat != 1 && e->n_mat != g->n)) return NULL;
    return e;
}

static qf_status group_err(qf_rt_ctx *ctx, const model_set *b, const model_set *c, const group *g,
                           const importance *imp, double *err_out, bool *weighted, qf_error *err) {
    uint64_t len = b->slot[g->first]->row_len, max_rows = 0;
    for (size_t i = g->first; i < g->first + g->n; i++) max_rows = QF_MAX(max_rows, b->slot[i]->n_rows);
    double *row_err = qf_malloc_n(max_rows, sizeof(double)), *w = qf_malloc_n(len, sizeof(double));
    if (!row_err || !w) { free(row_err); free(w); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    const qf_imatrix_entry *e = entry_for(imp, g, len);
    *weighted = e != NULL;
    double total = 0;
    qf_status st = QF_OK;
    for (size_t k = 0; k < g->n && !st; k++) {
        const double *sum2 = e ? e->sum2 + (e->n_mat > 1 ? k : 0) * len : NULL;
        for (uint64_t col = 0; sum2 && col < len; col++) w[col] = sum2[col] / imp->tokens;
        err_job j = {.base = b->slot[g->first + k], .cand = c->slot[g->first + k], .imp = e ? w : NULL,
                     .row_err = row_err};
        qf_rt_parallel(ctx, err_rows, &j);
        if (j.st) st = qf_fail(err, QF_E_NOMEM, "out of memory");
        for (uint64_t r = 0; r < j.base->n_rows; r++) total += row_err[r];
    }
    free(row_err);
    free(w);
    *err_out = total;
    return st;
}

/* ---- the true effect: one tensor swapped, KLD over the text ---------------------------------------- */

typedef struct text_run {
    int32_t *tokens;
    size_t n_tokens;
    bool add_bos;
    int32_t bos;
    uint32_t ctx, first, n_chunks, n_seq;
    int32_t *chunk;            /* [n_seq][ctx] */
    /* layer-major contexts on the one model object: 0 walks the base through the layers, 1 continues
     * from there with a tensor swapped, so a tensor of layer l costs the layers from l on */
    qf_rt_ctx *c[2];
    float *base;               /* the base's logits of every pass of the group, [pass][n_vocab * ld] */
    size_t base_ld, n_passes;
    qf_score_buf sb;
    qf_score_cols cols;
} text_run;

static void text_free(text_run *t) {
    for (int i = 0; i < 2; i++) qf_rt_ctx_free(t->c[i]);
    qf_score_buf_free(&t->sb);
    free(t->cols.nll);
    free(t->cols.nll_base);
    free(t->cols.kld);
    free(t->cols.same_top1);
    free(t->tokens);
    free(t->chunk);
    free(t->base);
}

/* Logits of one call stay within this per context (the chunks of a call are scored one by one). */
#define LOGITS_BYTES (64u << 20)

static qf_status text_open(text_run *t, const qf_measure_opts *o, const qf_rt_model *m, qf_error *err) {
    memset(t, 0, sizeof *t);
    qf_status st = qf_text_tokens(&m->vocab, m->label, o->text_path, !o->no_escape, &t->tokens, &t->n_tokens,
                                  &t->add_bos, &t->bos, err);
    if (st) return st;
    t->ctx = o->ctx ? o->ctx : 512;
    if (t->ctx < 4) return qf_fail(err, QF_E_USAGE, "--ctx %u is too small; use at least 4", t->ctx);
    if (t->n_tokens < 2 * (uint64_t)t->ctx)
        return qf_fail(err, QF_E_INPUT, "%s tokenizes to %zu tokens; a context of %u needs at least %llu", o->text_path,
                       t->n_tokens, t->ctx, 2ull * t->ctx);
    uint64_t max_chunks = t->n_tokens / t->ctx;
    t->n_chunks = (uint32_t)(o->chunks && o->chunks < max_chunks ? o->chunks : max_chunks);
    t->first = t->ctx / 2;
    uint32_t scored = t->ctx - t->first;
    uint64_t fit = LOGITS_BYTES / (4ull * QF_MAX(m->hp.n_vocab, 1) * scored);
    t->n_seq = (uint32_t)QF_MAX(1, QF_MIN(QF_MIN(fit, t->n_chunks), QF_MAX(1u, 1024u / t->ctx)));
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; !st && i < 2; i++) {
        st = qf_rt_ctx_new_layer_major(m, t->ctx, t->n_seq * t->ctx, threads, &t->c[i], err);
        if (!st) st = qf_rt_lm_reserve(t->c[i], t->n_seq, err);
        if (!st) qf_rt_lm_keep_weights(t->c[i], true);
    }
    if (!st) st = qf_score_buf_init(&t->sb, scored, 0, err);
    if (st) return st;
    t->chunk = qf_malloc_n((uint64_t)t->n_seq * t->ctx, sizeof *t->chunk);
    t->cols = (qf_score_cols){.nll = qf_calloc_n(scored, sizeof(double)), .nll_base = qf_calloc_n(scored, sizeof(double)),
                              .kld = qf_calloc_n(scored, sizeof(double)), .same_top1 = qf_calloc_n(scored, 1)};
    if (!t->chunk || !t->cols.nll || !t->cols.nll_base || !t->cols.kld || !t->cols.same_top1)
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    return QF_OK;
}

/* Chunks i .. i + n - 1 as the evaluation tools cut them (first token BOS where the vocabulary asks). */
static void load_chunks(text_run *t, uint32_t i, uint32_t n) {
    for (uint32_t q = 0; q < n; q++) {
        int32_t *dst = t->chunk + (size_t)q * t->ctx;
        memcpy(dst, t->tokens + (size_t)(i + q) * t->ctx, t->ctx * sizeof *dst);
        if (t->add_bos) dst[0] = t->bos;
    }
}

/* Sum of KL(base || swapped) over the scored tokens of chunks i.. of the group, pass by pass and chunk by
 * chunk in order, from context 1 standing after the last layer. */
static qf_status kld_sum(text_run *t, uint32_t i, uint32_t n_vocab, double *sum, qf_error *err) {
    uint32_t scored = t->ctx - 1 - t->first;
    for (uint32_t p = 0; p < qf_rt_lm_passes(t->c[1]); p++) {
        const float *l1;
        size_t ld;
        uint32_t seq0, n_seq;
        qf_status st = qf_rt_lm_logits(t->c[1], p, t->first, &l1, &ld, &seq0, &n_seq, err);
        if (st) return st;
        const float *l0 = t->base + p * (size_t)n_vocab * t->base_ld;
        for (uint32_t q = 0; q < n_seq; q++) {
            size_t col = (size_t)q * (t->ctx - t->first);
            const int32_t *targets = t->tokens + (size_t)(i + seq0 + q) * t->ctx + t->first + 1;
            qf_score_compare(t->c[1], &t->sb, l0 + col, l1 + col, ld, n_vocab, targets, scored, &t->cols);
            for (uint32_t j = 0; j < scored; j++) *sum += t->cols.kld[j];
        }
    }
    return QF_OK;
}

/* Context 1 through layers from .. n_layer-1. */
static qf_status run_layers(text_run *t, uint32_t from, uint32_t n_layer, qf_error *err) {
    qf_status st = QF_OK;
    for (uint32_t l = from; !st && l < n_layer; l++) st = qf_rt_lm_layer(t->c[1], l, err);
    return st;
}

/* The base's logits of the loaded group, kept for every pass. */
static qf_status base_logits(text_run *t, uint32_t n, uint32_t n_vocab, uint32_t n_layer, qf_error *err) {
    qf_status st = qf_rt_lm_begin(t->c[1], t->chunk, n, err);
    if (!st) st = run_layers(t, 0, n_layer, err);
    size_t passes = st ? 0 : qf_rt_lm_passes(t->c[1]);
    for (size_t p = 0; !st && p < passes; p++) {
        const float *l;
        size_t ld;
        uint32_t seq0, n_seq;
        if ((st = qf_rt_lm_logits(t->c[1], (uint32_t)p, t->first, &l, &ld, &seq0, &n_seq, err))) break;
        if (!t->base || ld != t->base_ld || passes > t->n_passes) {
            free(t->base);
            t->base_ld = ld;
            t->n_passes = passes;
            if (!(t->base = qf_malloc_n(passes * n_vocab, ld * sizeof(float))))
                return qf_fail(err, QF_E_NOMEM, "out of memory for the base's logits");
        }
        memcpy(t->base + p * (size_t)n_vocab * ld, l, (size_t)n_vocab * ld * sizeof(float));
    }
    return st;
}

static void swap_group(model_set *b, const model_set *c, const group *g, qf_rt_weight *saved, bool in) {
    for (size_t i = 0; i < g->n; i++) {
        qf_rt_weight *w = b->slot[g->first + i];
        if (in) { saved[i] = *w; *w = *c->slot[g->first + i]; }
        else *w = saved[i];
    }
}

/* ---- rank correlation ------------------------------------------------------------------------------ */

typedef struct ranked { double v; size_t i; } ranked;

static int by_value(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static bool ranks_of(const double *v, size_t n, double *rank) {
    ranked *r = qf_malloc_n(n, sizeof *r);
    if (!r) return false;
    for (size_t i = 0; i < n; i++) r[i] = (ranked){v[i], i};
    qsort(r, n, sizeof *r, by_value);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && r[j + 1].v == r[i].v) j++;
        for (size_t k = i; k <= j; k++) rank[r[k].i] = 0.5 * (double)(i + j);
        i = j + 1;
    }
    free(r);
    return true;
}

double qf_rank_correlation(const double *x, const double *y, size_t n) {
    if (n < 3) return NAN;
    double *rx = qf_malloc_n(2 * n, sizeof(double)), *ry = rx ? rx + n : NULL;
    if (!rx || !ranks_of(x, n, rx) || !ranks_of(y, n, ry)) { free(rx); return NAN; }
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) { mx += rx[i]; my += ry[i]; }
    mx /= (double)n;
    my /= (double)n;
    for (size_t i = 0; i < n; i++) {
        sxy += (rx[i] - mx) * (ry[i] - my);
        sxx += (rx[i] - mx) * (rx[i] - mx);
        syy += (ry[i] - my) * (ry[i] - my);
    }
    free(rx);
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

/* ---- the measurement ------------------------------------------------------------------------------- */

typedef struct measure {
    const qf_measure_opts *o;
    model_set base, cand[QF_SENS_MAX_TYPES];
    group *g;
    size_t n_groups;
    text_run text;
    double *kld;             /* [n_groups][n_candidates] sums over scored tokens; NAN = not measured */
} measure;

static bool measured(const measure *M, size_t k) { return M->o->check || k == M->o->probe; }

/* Where a tensor enters the forward pass: -1 the embeddings, n_layer the output. */
static int group_layer(const measure *M, const group *g) {
    const qf_rt_weight *w = M->base.slot[g->first];
    return w->role == QF_ROLE_OUTPUT ? (int)M->base.m->hp.n_layer : w->layer;
}

/* Tensor g swapped to candidate k, the group run from where context 0 stands (layer l's input). */
static qf_status swapped_run(measure *M, size_t g, size_t k, int l, uint32_t i, uint32_t n, qf_rt_weight *saved,
                             qf_error *err) {
    text_run *t = &M->text;
    uint32_t n_layer = M->base.m->hp.n_layer;
    swap_group(&M->base, &M->cand[k], &M->g[g], saved, true);
    qf_status st = l < 0 ? qf_rt_lm_begin(t->c[1], t->chunk, n, err) : qf_rt_lm_copy(t->c[1], t->c[0], err);
    if (!st) st = run_layers(t, l < 0 ? 0 : (uint32_t)l, n_layer, err);
    double sum = 0;
    if (!st) st = kld_sum(t, i, M->base.m->hp.n_vocab, &sum, err);
    swap_group(&M->base, &M->cand[k], &M->g[g], saved, false);
    M->kld[g * M->o->n_candidates + k] += sum;
    return st;
}

static qf_status run_text(measure *M, qf_error *err) {
    text_run *t = &M->text;
    uint32_t n_vocab = M->base.m->hp.n_vocab, n_layer = M->base.m->hp.n_layer;
    size_t nc = M->o->n_candidates, done = 0, total = M->n_groups * (M->o->check ? nc : 1) * t->n_chunks;
    qf_rt_weight saved[1024];
    for (uint32_t i = 0; i < t->n_chunks; i += t->n_seq) {
        uint32_t n = QF_MIN(t->n_seq, t->n_chunks - i);
        load_chunks(t, i, n);
        qf_status st = base_logits(t, n, n_vocab, n_layer, err);
        if (!st) st = qf_rt_lm_begin(t->c[0], t->chunk, n, err);
        size_t g = 0;
        for (int l = -1; !st && l <= (int)n_layer; l++) {
            for (; !st && g < M->n_groups && group_layer(M, &M->g[g]) == l; g++)
                for (size_t k = 0; !st && k < nc; k++) {
                    if (!measured(M, k)) continue;
                    st = swapped_run(M, g, k, l, i, n, saved, err);
                    done += n;
                    if (M->o->progress) M->o->progress(M->o->user, M->g[g].name, done, total);
                }
            if (!st && l >= 0 && l < (int)n_layer) st = qf_rt_lm_layer(t->c[0], (uint32_t)l, err);
        }
        if (st) return st;
    }
    return QF_OK;
}

static uint64_t file_overhead(const qf_rt_model *m) {
    uint64_t len = 0, data = 0;
    qf_gguf_file_bytes(m->gguf, &len);
    for (size_t i = 0; i < qf_gguf_n_tensors(m->gguf); i++) data += qf_gguf_tensor_at(m->gguf, i)->nbytes;
    return len > data ? len - data : 0;
}

static int by_bytes(const void *a, const void *b) {
    const qf_sens_cand *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    return x->type < y->type ? -1 : x->type > y->type;
}

static qf_status fill_table(measure *M, qf_sens *s, qf_error *err) {
    const qf_measure_opts *o = M->o;
    size_t nc = o->n_candidates;
    uint64_t scored = (uint64_t)M->text.n_chunks * (M->text.ctx - 1 - M->text.first);
    importance imp = {.im = o->imatrix, .tokens = dense_tokens(o->imatrix)};
    snprintf(s->model, sizeof s->model, "%s", M->base.m->label);
    s->probe = o->probe_type;
    s->ctx = M->text.ctx;
    s->chunks = M->text.n_chunks;
    s->tokens = scored;
    s->overhead = file_overhead(M->cand[o->probe].m);
    if (!(s->t = qf_calloc_n(M->n_groups, sizeof *s->t))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t g = 0; g < M->n_groups; g++) {
        qf_sens_tensor *t = &s->t[s->n++];
        snprintf(t->name, sizeof t->name, "%s", M->g[g].name);
        t->params = M->g[g].params;
        s->params += t->params;
        for (size_t k = 0; k < nc; k++) {
            const qf_gguf_tensor *gt = qf_gguf_find_tensor(M->cand[k].m->gguf, t->name);
            qf_sens_cand *c = &t->c[k];
            *c = (qf_sens_cand){.type = gt->type, .bytes = gt->nbytes, .kld = NAN};
            qf_status st = group_err(M->text.c[1], &M->base, &M->cand[k], &M->g[g], &imp, &c->err, &t->weighted, err);
            if (st) return st;
            if (measured(M, k)) c->kld = M->kld[g * nc + k] / (double)scored;
            if (k == o->probe) t->gain = c->err > 0 ? c->kld / c->err : 0;
        }
        t->n = nc;
        qsort(t->c, t->n, sizeof t->c[0], by_bytes);
        for (size_t k = 1; k < t->n; k++)
            if (t->c[k].type == t->c[k - 1].type) { /* two candidates fell back to one type: keep one */
                memmove(&t->c[k], &t->c[k + 1], (t->n - k - 1) * sizeof t->c[0]);
                t->n--;
                k--;
            }
    }
    return QF_OK;
}

/* rank_proxy: the raw proxy against the probe's true effect, over tensors. rank_check: per other type,
 * the predictions against the true effects over the tensors holding it, averaged over the types (the
 * question the solver asks: which tensors gain most from bits at a given type). */
static void fill_ranks(const measure *M, qf_sens *s) {
    double *x = qf_calloc_n(2 * s->n, sizeof(double)), *y = x ? x + s->n : NULL;
    s->rank_proxy = s->rank_check = NAN;
    if (!x) return;
    uint32_t types[QF_SENS_MAX_TYPES * 4];
    size_t n_types = 0, n = 0;
    for (size_t i = 0; i < s->n; i++)
        for (size_t k = 0; k < s->t[i].n; k++) {
            const qf_sens_cand *c = &s->t[i].c[k];
            if (c->type == s->probe && isfinite(c->kld)) { x[n] = c->err; y[n] = c->kld; n++; }
            bool seen = c->type == s->probe;
            for (size_t q = 0; q < n_types && !seen; q++) seen = types[q] == c->type;
            if (!seen && n_types < QF_ARRAY_LEN(types)) types[n_types++] = c->type;
        }
    s->rank_proxy = qf_rank_correlation(x, y, n);
    double sum = 0;
    size_t used = 0;
    for (size_t q = 0; M->o->check && q < n_types; q++) {
        n = 0;
        for (size_t i = 0; i < s->n; i++) {
            const qf_sens_cand *c = qf_sens_cand_of(&s->t[i], types[q]);
            if (c && isfinite(c->kld)) { x[n] = qf_sens_predict(&s->t[i], c); y[n] = c->kld; n++; }
        }
        double r = qf_rank_correlation(x, y, n);
        if (isfinite(r)) { sum += r; used++; }
    }
    if (used) s->rank_check = sum / (double)used;
    free(x);
}

qf_status qf_measure(const qf_measure_opts *o, qf_sens *out, qf_error *err) {
    memset(out, 0, sizeof *out);
    if (o->n_candidates < 1 || o->n_candidates > QF_SENS_MAX_TYPES || o->probe >= o->n_candidates)
        return qf_fail(err, QF_E_USAGE, "between 1 and %d candidate types, one of them the probe", QF_SENS_MAX_TYPES);
    measure M = {.o = o};
    qf_status st = open_set(o->base, &M.base, err);
    if (!st) st = make_groups(&M.base, &M.g, &M.n_groups, err);
    for (size_t k = 0; !st && k < o->n_candidates; k++) {
        st = open_set(o->candidates[k], &M.cand[k], err);
        if (!st) st = check_candidate(&M.base, &M.cand[k], M.g, M.n_groups, err);
    }
    for (size_t g = 0; !st && g < M.n_groups; g++)
        if (M.g[g].n > 1024) st = qf_fail(err, QF_E_INPUT, "tensor '%s' stacks more than 1024 experts", M.g[g].name);
    if (!st && !(M.kld = qf_calloc_n(M.n_groups * o->n_candidates, sizeof(double))))
        st = qf_fail(err, QF_E_NOMEM, "out of memory");
    if (!st) st = text_open(&M.text, o, M.base.m, err);
    if (!st) st = run_text(&M, err);
    if (!st) st = fill_table(&M, out, err);
    if (!st) fill_ranks(&M, out);
    text_free(&M.text);
    free(M.kld);
    free(M.g);
    for (size_t k = 0; k < o->n_candidates; k++) close_set(&M.cand[k]);
    close_set(&M.base);
    if (st) qf_sens_free(out);
    return st;
}
