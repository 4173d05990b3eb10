/*
 * qf_calibrate: activation statistics for importance-weighted quantization and GPTQ (qforge.h).
 *
 * The reference runtime runs the calibration text chunk by chunk; its observer hook reports the input of
 * every matrix product (MLA's k_b/v_b per head, as llama.cpp's absorbed attention applies them, so the
 * entries are the ones its quantizer reads). Per weight we add up x_j^2 per input column (the imatrix
 * llama.cpp reads); per
 * distinct input, optionally, the full sum of x x^T (the Hessian GPTQ needs). Statistics are summed in
 * double in token order on one thread, so the files do not depend on the thread count.
 */
#include "formats/hessian.h"
#include "formats/imatrix.h"
#include "formats/integrity.h"
#include "formats/outfile.h"
#include "runtime/runtime.h"
#include "runtime/text.h"
#include "runtime/tokenizer.h"

#include <libgen.h>
#include <unistd.h>

typedef struct tracked {
    const qf_rt_weight *w;
    size_t entry;           /* imatrix entry index */
    long hessian;           /* Hessian index, or -1 */
    bool per_head;          /* MLA's k_b / v_b: fed by the head observer, one matrix per head */
} tracked;

typedef struct calib {
    tracked *t;             /* sorted by weight address: the observer finds its weight by bsearch */
    size_t n;
    qf_imatrix im;
    qf_hessian_set hs;
    bool want_hessian;
    uint64_t *hessian_call; /* per Hessian: the last matmul call added, so a shared input counts once */
} calib;

/* MLA's per-head matrices, in the GGUF's (llama.cpp's) orientation: attn_k_b reads a head's q_nope,
 * attn_v_b its attention-weighted latent. */
static bool per_head(const qf_rt_weight *w) { return w->role == QF_ROLE_ATTN_K_B || w->role == QF_ROLE_ATTN_V_B; }

/* The imatrix entry of a weight: one per GGUF tensor, one matrix per expert of a stacked tensor or per
 * head of MLA's k_b / v_b. */
static qf_status track(calib *c, const qf_rt_model *m, const qf_rt_weight *w, qf_error *err) {
    char name[96], key[96];
    qf_arch_tensor_name(w->role, w->layer, name, sizeof name);
    tracked *t = &c->t[c->n];
    t->w = w;
    t->hessian = -1;
    t->per_head = per_head(w);
    uint32_t cols = (uint32_t)w->row_len, mats = w->expert >= 0 ? m->hp.n_expert : 1;
    if (t->per_head) {
        cols = w->role == QF_ROLE_ATTN_K_B ? m->hp.qk_nope_dim : m->hp.kv_lora_rank;
        mats = m->hp.n_head;
    }
    qf_imatrix_entry *e = NULL;
    for (size_t i = c->im.n; w->expert > 0 && i-- > 0;)
        if (!strcmp(c->im.e[i].name, name)) { e = &c->im.e[i]; break; }
    if (!e && !(e = qf_imatrix_add(&c->im, name, cols, mats)))
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    t->entry = (size_t)(e - c->im.e);
    if (c->want_hessian && w->expert < 0 && !t->per_head && qf_hessian_key(w->role, w->layer, key, sizeof key)) {
        const qf_hessian *h = qf_hessian_find(&c->hs, key);
        if (!h && !(h = qf_hessian_add(&c->hs, key, (uint32_t)w->row_len)))
            return qf_fail(err, QF_E_NOMEM, "out of memory for the Hessian of %s (%llu x %llu doubles)", key,
                           (unsigned long long)w->row_len, (unsigned long long)w->row_len);
        t->hessian = h - c->hs.e;
    }
    c->n++;
    return QF_OK;
}

/* Weights whose input statistics a quantizer uses: as llama-imatrix, every linear weight but the output
 * projection (the routers too: they stay F32 here, but llama.cpp's file has them). */
static bool calibrated(const qf_rt_weight *w) { return w->role != QF_ROLE_OUTPUT; }

static int cmp_tracked(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const tracked *)a)->w, y = (uintptr_t)((const tracked *)b)->w;
    return x < y ? -1 : x > y;
}

static qf_status track_model(calib *c, const qf_rt_model *m, qf_error *err) {
    size_t n = qf_rt_model_weights(m, NULL);
    const qf_rt_weight **ws = qf_malloc_n(n ? n : 1, sizeof *ws);
    c->t = qf_calloc_n(n ? n : 1, sizeof *c->t);
    if (!ws || !c->t) { free(ws); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    qf_rt_model_weights(m, ws);
    qf_status st = QF_OK;
    for (size_t i = 0; !st && i < n; i++)
        if (calibrated(ws[i])) st = track(c, m, ws[i], err);
    free(ws);
    if (st) return st;
    qsort(c->t, c->n, sizeof *c->t, cmp_tracked);
    c->hessian_call = qf_malloc_n(c->hs.n ? c->hs.n : 1, sizeof *c->hessian_call);
    if (!c->hessian_call) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < c->hs.n; i++) c->hessian_call[i] = UINT64_MAX;
    return QF_OK;
}

/* Upper triangle of H += X X^T over n tokens (mirrored once at the end). Four columns k share each
 * load of x_i; every sum still runs over tokens in order, so results are the same on every machine. */
static void add_outer(qf_hessian *h, const float *x, size_t ld, uint32_t n) {
    for (uint32_t i = 0; i < h->n; i++) {
        const float *xi = x + (size_t)i * ld;
        double *row = h->h + (uint64_t)i * h->n;
        uint32_t k = i;
        for (; k + 4 <= h->n; k += 4) {
            const float *x0 = x + (size_t)k * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (uint32_t t = 0; t < n; t++) {
                double v = xi[t];
                s0 += v * x0[t]; s1 += v * x1[t]; s2 += v * x2[t]; s3 += v * x3[t];
            }
            row[k] += s0; row[k + 1] += s1; row[k + 2] += s2; row[k + 3] += s3;
        }
        for (; k < h->n; k++) {
            const float *xk = x + (size_t)k * ld;
            double s = 0;
            for (uint32_t t = 0; t < n; t++) s += (double)xi[t] * xk[t];
            row[k] += s;
        }
    }
    h->count += n;
}

/* Matrix mat of entry e has seen n more tokens x (e->n_cols features, feature-major). */
static void add_sum2(qf_imatrix_entry *e, uint32_t mat, const float *x, size_t ld, uint32_t n) {
    double *sum2 = e->sum2 + (uint64_t)mat * e->n_cols;
    for (uint32_t f = 0; f < e->n_cols; f++) {
        const float *xf = x + (size_t)f * ld;
        double s = 0;
        for (uint32_t k = 0; k < n; k++) s += (double)xf[k] * xf[k];
        sum2[f] += s;
    }
    e->counts[mat] += n;
}

static const tracked *find(const calib *c, const qf_rt_weight *w) {
    tracked key = {.w = w};
    return bsearch(&key, c->t, c->n, sizeof *c->t, cmp_tracked);
}

static void observe_head(void *user, const qf_rt_weight *w, uint32_t h, const float *x, size_t ld, uint32_t n) {
    calib *c = user;
    const tracked *t = find(c, w);
    if (t && t->per_head) add_sum2(&c->im.e[t->entry], h, x, ld, n);
}

static void observe(void *user, const qf_rt_weight *w, uint64_t call, const float *x, size_t ld, uint32_t n) {
    calib *c = user;
    const tracked *t = find(c, w);
    if (!t || t->per_head) return; /* k_b / v_b multiply the latent here: their inputs come per head */
    add_sum2(&c->im.e[t->entry], w->expert >= 0 ? (uint32_t)w->expert : 0, x, ld, n);
    long h = t->hessian;
    if (h >= 0 && c->hessian_call[h] != call) {
        add_outer(&c->hs.e[h], x, ld, n);
        c->hessian_call[h] = call;
    }
}

static void mirror(qf_hessian_set *hs) {
    for (size_t k = 0; k < hs->n; k++)
        for (uint32_t i = 0; i < hs->e[k].n; i++)
            for (uint32_t j = 0; j < i; j++) hs->e[k].h[(uint64_t)i * hs->e[k].n + j] = hs->e[k].h[(uint64_t)j * hs->e[k].n + i];
}


typedef struct tokens {
    int32_t *ids;
    size_t n;
    int32_t bos;
    bool add_bos;
    char digest[65];
} tokens;

static qf_status tokenize(const qf_calibrate_opts *o, const qf_rt_model *m, tokens *tk, qf_error *err) {
    char *text = NULL;
    size_t len = 0;
    qf_tokenizer *tok = NULL;
    qf_status st = qf_text_load_prompt(o->text_path, !o->no_escape, &text, &len, err);
    if (!st) st = qf_tokenizer_new(&m->vocab, &tok, err);
    if (!st) {
        qf_sha256_buf_hex(text, len, tk->digest);
        tk->add_bos = qf_tokenizer_wants_bos(tok);
        tk->bos = qf_tokenizer_bos(tok);
        st = qf_tokenize(tok, text, len, tk->add_bos, &tk->ids, &tk->n, err);
    }
    qf_tokenizer_free(tok);
    free(text);
    return st;
}

/* Chunk i's input: BOS first, like llama-imatrix. */
static void load_chunk(const tokens *tk, uint32_t i, uint32_t ctx, int32_t *dst) {
    memcpy(dst, tk->ids + (size_t)i * ctx, ctx * sizeof *dst);
    if (tk->add_bos && tk->bos >= 0) dst[0] = tk->bos;
}

static qf_status run_whole(const qf_calibrate_opts *o, qf_rt_ctx *rc, const tokens *tk, int32_t *chunk, uint32_t ctx,
                           uint32_t n_chunks, qf_error *err) {
    qf_status st = QF_OK;
    for (uint32_t i = 0; !st && i < n_chunks; i++) {
        load_chunk(tk, i, ctx, chunk);
        qf_rt_ctx_clear(rc);
        const float *logits;
        size_t ld;
        st = qf_rt_eval(rc, chunk, ctx, 0, ctx, &logits, &ld, err);
        if (o->progress) o->progress(o->progress_user, "calibration chunk", i + 1, n_chunks);
    }
    return st;
}

/* Groups of chunks layer-major: a weight's inputs still arrive chunk after chunk (passes of one chunk,
 * the whole-pass mode's calls), so every sum is added in the same order and the files are the same bytes. */
static qf_status run_layer_major(const qf_calibrate_opts *o, qf_rt_ctx *rc, const qf_rt_model *m, const tokens *tk,
                                 int32_t *chunk, uint32_t ctx, uint32_t n_chunks, uint32_t group, qf_error *err) {
    qf_status st = QF_OK;
    uint32_t L = m->hp.n_layer, n_groups = (n_chunks + group - 1) / group;
    for (uint32_t g = 0; !st && g < n_groups; g++) {
        uint32_t i0 = g * group, n = QF_MIN(group, n_chunks - i0);
        for (uint32_t q = 0; q < n; q++) load_chunk(tk, i0 + q, ctx, chunk + (size_t)q * ctx);
        st = qf_rt_lm_begin(rc, chunk, n, err);
        for (uint32_t l = 0; !st && l < L; l++) {
            st = qf_rt_lm_layer(rc, l, err);
            if (o->progress) o->progress(o->progress_user, "calibration layer", (uint64_t)g * L + l + 1, (uint64_t)n_groups * L);
        }
    }
    return st;
}

static qf_status run_chunks(const qf_calibrate_opts *o, const qf_rt_model *m, const tokens *tk, calib *c, uint32_t ctx,
                            uint32_t n_chunks, qf_error *err) {
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    threads = threads > 0 ? threads : 1;
    qf_layer_major_info lm;
    qf_rt_lm_decide(&m, 1, &o->layer_major, &lm);
    qf_rt_ctx *rc;
    qf_rt_ctx_opts co = {.n_ctx = ctx, .n_batch = ctx, .n_threads = threads, .layer_major = lm.on};
    qf_rt_backend_choice bk;
    qf_status st = qf_rt_backend_pick(&o->backend, false, &bk, err);
    co.backend = bk.got;
    if (!st) st = qf_rt_ctx_open(m, &co, &rc, err);
    if (st) return st;
    qf_rt_observer obs = {.matmul = observe, .head = observe_head, .user = c};
    qf_rt_ctx_set_observer(rc, &obs);
    if (lm.on) st = qf_rt_lm_plan(&rc, &m, 1, n_chunks, &o->layer_major, &lm, err);
    if (!st && lm.on && o->layer_major.on_plan) o->layer_major.on_plan(o->layer_major.user, &lm);
    int32_t *chunk = st ? NULL : qf_malloc_n((uint64_t)(lm.on ? lm.chunks_per_group : 1) * ctx, sizeof *chunk);
    if (!st && !chunk) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    if (!st) qf_rt_backend_announce(&o->backend, &bk);
    if (!st) st = lm.on ? run_layer_major(o, rc, m, tk, chunk, ctx, n_chunks, lm.chunks_per_group, err)
                        : run_whole(o, rc, tk, chunk, ctx, n_chunks, err);
    free(chunk);
    qf_rt_ctx_free(rc);
    return st;
}

static qf_status save(const qf_calibrate_opts *o, calib *c, const tokens *tk, uint32_t ctx, uint32_t n_chunks, qf_error *err) {
    char *copy = strdup(o->text_path);
    c->im.datasets = calloc(1, sizeof(char *));
    if (!copy || !c->im.datasets || !(c->im.datasets[0] = strdup(basename(copy)))) {
        free(copy);
        return qf_fail(err, QF_E_NOMEM, "out of memory");
    }
    free(copy);
    c->im.n_datasets = 1;
    c->im.chunk_count = n_chunks;
    c->im.chunk_size = ctx;
    if (!(c->im.calibration_sha256 = strdup(tk->digest))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_status st = qf_imatrix_save(o->out, &c->im, err);
    if (st || !o->hessian_out) return st;
    mirror(&c->hs);
    return qf_hessian_save(o->hessian_out, &c->hs, err);
}

qf_status qf_calibrate(const qf_calibrate_opts *o, qf_error *err) {
    qf_error_clear(err);
    if (!o->out) return qf_fail(err, QF_E_USAGE, "no output file given (-o IMATRIX.gguf)");
    /* both outputs checked before the model runs, each against the inputs and the other output */
    const char *for_out[] = {o->model, o->text_path, o->hessian_out}, *for_hessian[] = {o->model, o->text_path, o->out};
    qf_status chk = qf_outfile_check(o->out, for_out, 3, err);
    if (chk == QF_OK && o->hessian_out) chk = qf_outfile_check(o->hessian_out, for_hessian, 3, err);
    if (chk != QF_OK) return chk;
    uint32_t ctx = o->ctx ? o->ctx : 512;
    qf_rt_model *m = NULL;
    tokens tk = {0};
    calib c = {.want_hessian = o->hessian_out != NULL};
    qf_status st = qf_rt_model_open(o->model, &m, err);
    if (!st) st = tokenize(o, m, &tk, err);
    uint32_t n_chunks = st ? 0 : (uint32_t)QF_MIN(tk.n / ctx, o->chunks ? o->chunks : UINT32_MAX);
    if (!st && n_chunks == 0)
        st = qf_fail(err, QF_E_INPUT, "%s: %zu tokens are fewer than one chunk of %u; use a longer text or a smaller --ctx",
                     o->text_path, tk.n, ctx);
    if (!st) st = track_model(&c, m, err);
    if (!st) st = run_chunks(o, m, &tk, &c, ctx, n_chunks, err);
    if (!st) st = save(o, &c, &tk, ctx, n_chunks, err);
    if (!st && o->coverage)
        st = qf_expert_coverage_get(&c.im, o->expert_min_tokens ? o->expert_min_tokens : QF_EXPERT_MIN_TOKENS,
                                    o->coverage, err);
    free(tk.ids);
    free(c.t);
    free(c.hessian_call);
    qf_imatrix_free(&c.im);
    qf_hessian_free(&c.hs);
    qf_rt_model_close(m);
    return st;
}
