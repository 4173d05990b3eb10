/* Plan executor: source rows -> F32 -> stored type -> GGUF writer (run.h). */
#include "quantize/run.h"
#include "kernels/qtypes.h"

#include <math.h>
#include <pthread.h>

/* How one row's importance weights are formed from the calibration statistics and the row itself.
 * One rule, measured on qf-llama-a (README, quality): below 4 bits per weight the grid is coarse enough
 * that large entries must be protected by their magnitude, and a grid fitted to calibration statistics
 * alone overfits the calibration text; from 4 bits up, magnitude weights only cost accuracy. */
typedef enum row_weighting {
    W_NONE,       /* plain squared error (the kernel's own search) */
    W_CALIBRATED, /* imatrix column weights as they are */
    W_HEDGED,     /* imatrix weights times sqrt(2 ms + x_i^2) (ms: the row's mean square) */
    W_MAGNITUDE,  /* no statistics for this tensor, below 4 bits: rms(x) + |x_i| */
} row_weighting;

typedef struct chunk_job {
    qf_source *src;
    const qf_plan_entry *e;
    const qf_qtype_traits *tt;
    const float *gen;       /* generated tensor data, or NULL */
    const float *imp;       /* n_mat x ne[0] importance weights, or NULL */
    row_weighting weighting;
    uint64_t rows_per_mat;  /* rows sharing one importance vector (one expert's matrix) */
    uint64_t row0, n_rows;  /* rows of the output tensor in this chunk */
    uint64_t row_bytes;
    float *f32;             /* n_rows x ne[0] scratch */
    uint8_t *out;           /* n_rows x row_bytes */
    bool clamp;             /* values beyond the type's range are clamped (else the row is refused) */
    uint64_t clamped;       /* values clamped so far */
    uint64_t over_row;      /* the first output row refused for its range, or UINT64_MAX */
    qf_status st;
    qf_error err;
} chunk_job;

/* Source row holding output row r. HF stores q/k rows of each head as [first halves | second halves]
 * of the rotary pairs (rotate-half); ggml's normal rope expects the two members of a pair adjacent, so
 * output row h*d + 2i + j comes from source row h*d + j*d/2 + i (d = rows per head). */
static uint64_t source_row(const qf_plan_entry *e, uint64_t r, uint64_t total) {
    if (!e->permute_heads) return r;
    uint64_t d = total / e->permute_heads, h = r / d, k = r % d;
    return h * d + (k % 2) * (d / 2) + k / 2;
}

static qf_status fetch_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    const qf_plan_entry *e = j->e;
    uint64_t len = e->ne[0];
    float *dst = j->f32 + (r0 - j->row0) * len;
    if (j->gen) { memcpy(dst, j->gen + r0 * len, n * len * sizeof(float)); return QF_OK; }
    if (!e->permute_heads) return qf_source_rows(j->src, (size_t)e->src, r0, n, dst, &j->err);
    if (e->n_dims == 1) {
        /* A permuted bias: its elements are the "rows". */
        float *all = malloc(len * sizeof(float));
        if (!all) return qf_fail(&j->err, QF_E_NOMEM, "out of memory");
        qf_status st = qf_source_rows(j->src, (size_t)e->src, 0, 1, all, &j->err);
        for (uint64_t k = 0; st == QF_OK && k < len; k++) dst[k] = all[source_row(e, k, len)];
        free(all);
        return st;
    }
    for (uint64_t r = r0; r < r0 + n; r++) {
        qf_status st = qf_source_rows(j->src, (size_t)e->src, source_row(e, r, e->n_rows), 1, dst + (r - r0) * len, &j->err);
        if (st) return st;
    }
    return QF_OK;
}

/* Row-local importance where no activation statistics reach (no imatrix; token embeddings are a lookup,
 * and calibration skips the output projection as llama-imatrix does): rms(x) + |x_i|, the weighting
 * ggml's k-quant search uses without an imatrix. */
static double mean_square(const float *x, uint64_t n) {
    double ss = 0;
    for (uint64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return ss / (double)(n ? n : 1);
}

static void magnitude_weights(const float *x, uint64_t n, float *w) {
    float rms = (float)sqrt(mean_square(x, n));
    for (uint64_t i = 0; i < n; i++) w[i] = rms + fabsf(x[i]);
}

/* Calibrated weights hedged by the row's magnitudes, as ggml's k-quant search does with an imatrix (used
 * below 4 bits per weight; row_weighting). On qf-llama-a's q3_k_m it lowered held-out wikitext KLD 6% and
 * raised tinystories' 2%. */
static void hedged_weights(const float *x, const float *imp, uint64_t n, float *w) {
    float two_ms = (float)(2.0 * mean_square(x, n));
    for (uint64_t i = 0; i < n; i++) w[i] = imp[i] * sqrtf(two_ms + x[i] * x[i]);
}

/* The range rule, the one place every row passes before a quantizer sees it: values beyond what the
 * type stores finitely (qf_qtype_traits.max_abs) are clamped into it when the run allows (counted),
 * else the row is refused (false). Rows holding Inf are left to the quantizer, which refuses them. */
static bool fit_range(const qf_qtype_traits *tt, float *x, uint64_t n, bool clamp, uint64_t *clamped) {
    float a = qf_row_absmax(x, (int64_t)n);
    if (!(a > tt->max_abs) || isinf(a)) return true;
    if (!clamp) return false;
    *clamped += qf_row_clamp(x, (int64_t)n, tt->max_abs);
    return true;
}

static qf_status encode_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    uint64_t len = j->e->ne[0];
    bool own = j->weighting == W_HEDGED || j->weighting == W_MAGNITUDE;
    float *rw = own ? malloc(len * sizeof(float)) : NULL;
    if (own && !rw) return qf_fail(&j->err, QF_E_NOMEM, "out of memory");
    qf_status st = QF_OK;
    for (uint64_t r = r0; r < r0 + n && !st; r++) {
        float *x = j->f32 + (r - j->row0) * len;
        if (!fit_range(j->tt, x, len, j->clamp, &j->clamped)) {
            j->over_row = r;
            st = qf_fail(&j->err, QF_E_INPUT, "tensor '%s': row %llu is beyond %s's range", j->e->name,
                         (unsigned long long)r, j->tt->name);
            break;
        }
        const float *imp = j->imp ? j->imp + (r / j->rows_per_mat) * len : NULL;
        if (j->weighting == W_MAGNITUDE) { magnitude_weights(x, len, rw); imp = rw; }
        if (j->weighting == W_HEDGED) { hedged_weights(x, imp, len, rw); imp = rw; }
        if (!j->tt->quantize(x, j->out + (r - j->row0) * j->row_bytes, (int64_t)len, imp))
            st = qf_fail(&j->err, QF_E_INPUT, "tensor '%s': row %llu holds NaN or Inf; refusing to quantize it",
                         j->e->name, (unsigned long long)r);
    }
    free(rw);
    return st;
}

typedef struct worker {
    chunk_job *job;
    uint64_t r0, n;
    uint64_t clamped, over_row;
    qf_status st;
    qf_error err;
    pthread_t tid;
    bool threaded;          /* false: ran on the caller's thread (creation failed or worker 0) */
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    chunk_job j = *w->job; /* private copy: own error record and counts */
    qf_error_clear(&j.err);
    j.clamped = 0;
    w->st = fetch_rows(&j, w->r0, w->n);
    if (w->st == QF_OK) w->st = encode_rows(&j, w->r0, w->n);
    w->err = j.err;
    w->clamped = j.clamped;
    w->over_row = j.over_row;
    return NULL;
}

/* Split the chunk's rows across threads; each worker owns a contiguous row range. */
static qf_status run_chunk(chunk_job *j, int threads, qf_error *err) {
    uint64_t per = (j->n_rows + (uint64_t)threads - 1) / (uint64_t)threads;
    worker ws[256];
    int nw = 0;
    for (uint64_t r = j->row0; r < j->row0 + j->n_rows && nw < (int)QF_ARRAY_LEN(ws); r += per, nw++)
        ws[nw] = (worker){.job = j, .r0 = r, .n = QF_MIN(per, j->row0 + j->n_rows - r)};
    for (int i = 1; i < nw; i++)
        /* a thread that cannot be created costs time, not correctness: run its rows here */
        if (!(ws[i].threaded = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) == 0)) worker_main(&ws[i]);
    worker_main(&ws[0]);
    qf_status st = QF_OK;
    for (int i = 0; i < nw; i++) {
        if (i && ws[i].threaded) pthread_join(ws[i].tid, NULL);
        j->clamped += ws[i].clamped;
        /* the first failing row range decides, so the message does not depend on the thread count */
        if (!st && ws[i].st) { st = ws[i].st; *err = ws[i].err; j->over_row = ws[i].over_row; }
    }
    return st;
}

static qf_status generate(const qf_hparams *hp, const qf_plan_entry *e, float **out, qf_error *err) {
    *out = NULL;
    if (e->gen == QF_GEN_NONE) return QF_OK;
    *out = qf_malloc_n(e->ne[0] * e->n_rows, sizeof(float));
    if (!*out) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_rope_llama3_factors(hp, *out);
    return QF_OK;
}

/* Importance weights for a tensor from its imatrix entry (bound by qf_plan_bind_calibration): one vector
 * per expert matrix, and how rows use them (row_weighting). Unquantized types need none. On qf-llama-a:
 * magnitude weights without an imatrix cut q3_k_m's KLD 10% (tinystories) and 3% (wikitext) but raise
 * q4_k_m's 7%; for the embeddings and output of q4_k_m with an imatrix, dropping them lowered wikitext KLD 6%. */
static qf_status importance(const qf_plan_entry *e, const qf_qtype_traits *tt, float **imp, uint64_t *rows_per_mat,
                            row_weighting *how, qf_error *err) {
    *imp = NULL;
    *how = W_NONE;
    *rows_per_mat = e->n_rows;
    if (!tt->quantized) return QF_OK;
    bool narrow = (uint64_t)tt->bytes * 8 < 4 * (uint64_t)tt->blck; /* below 4 bits per weight */
    const qf_imatrix_entry *ie = e->calib == QF_CALIB_WEIGHTED ? e->imx : NULL;
    if (!ie) {
        *how = narrow ? W_MAGNITUDE : W_NONE;
        return QF_OK;
    }
    *how = narrow ? W_HEDGED : W_CALIBRATED;
    uint64_t n_mat = ie->n_mat;
    *imp = qf_malloc_n(n_mat, e->ne[0] * sizeof(float));
    if (!*imp) return qf_fail(err, QF_E_NOMEM, "out of memory for importance weights of '%s'", e->name);
    for (uint32_t m = 0; m < n_mat; m++) qf_imatrix_weights(ie, m, *imp + m * e->ne[0]);
    *rows_per_mat = e->n_rows / n_mat;
    return QF_OK;
}

/* Rows of a tensor read and encoded at once: QF_RUN_CHUNK_BYTES of F32 (a permuted bias: one). */
static uint64_t chunk_rows(const qf_plan_entry *e) {
    uint64_t rows = QF_MAX(1, QF_RUN_CHUNK_BYTES / QF_MAX(e->ne[0] * sizeof(float), 1));
    if (e->n_dims == 1 && e->permute_heads) rows = 1;
    return QF_MIN(rows, e->n_rows);
}

qf_status qf_tensor_range(qf_source *src, const qf_hparams *hp, const qf_plan_entry *e, uint64_t *beyond, float *amax,
                          qf_error *err) {
    const qf_qtype_traits *tt = qf_qtype_get(e->type);
    *beyond = 0;
    *amax = 0.0f;
    uint64_t len = e->ne[0], rows_per_chunk = chunk_rows(e);
    float *gen = NULL;
    chunk_job j = {.src = src, .e = e, .tt = tt, .f32 = qf_malloc_n(rows_per_chunk, len * sizeof(float))};
    qf_status st = j.f32 ? generate(hp, e, &gen, err) : qf_fail(err, QF_E_NOMEM, "tensor '%s': out of memory", e->name);
    j.gen = gen;
    if (!st && e->src >= 0) st = qf_source_prepare(src, (size_t)e->src, err);
    for (uint64_t r = 0; !st && r < e->n_rows; r += rows_per_chunk) {
        uint64_t n = QF_MIN(rows_per_chunk, e->n_rows - r);
        j.row0 = r;
        if ((st = fetch_rows(&j, r, n))) { *err = j.err; break; }
        for (uint64_t i = 0; i < n * len; i++) {
            float v = fabsf(j.f32[i]);
            *beyond += v > tt->max_abs && !isinf(v);
            *amax = v > *amax && !isinf(v) ? v : *amax;
        }
    }
    if (e->src >= 0) qf_source_release(src, (size_t)e->src);
    free(gen);
    free(j.f32);
    return st;
}

/* The refusal of a tensor with values beyond its type's range: how many, the largest, and the types
 * that hold it. */
static qf_status range_refusal(qf_source *src, const qf_hparams *hp, const qf_plan_entry *e, uint64_t row,
                               qf_error *err) {
    uint64_t beyond;
    float amax;
    qf_status st = qf_tensor_range(src, hp, e, &beyond, &amax, err);
    if (st) return st;
    const qf_qtype_traits *tt = qf_qtype_get(e->type);
    char holds[320] = "";
    for (size_t i = 0, used = 0; i < qf_qtype_count() && used < sizeof holds; i++) {
        const qf_qtype_traits *t = qf_qtype_at(i);
        if (t->quantize && t->max_abs >= amax)
            used += (size_t)snprintf(holds + used, sizeof holds - used, "%s%s", used ? ", " : "", t->name);
    }
    char re[2 * sizeof e->name] = "";
    for (size_t i = 0, k = 0; e->name[i] && k + 2 < sizeof re; i++) { /* the name as a regex */
        if (e->name[i] == '.') re[k++] = '\\';
        re[k++] = e->name[i];
    }
    const char *from = e->src >= 0 ? qf_source_tensor(src, (size_t)e->src)->name : "generated";
    return qf_fail(err, QF_E_INPUT,
                   "tensor '%s' (%s): %llu value%s beyond what %s stores (|x| <= %.7g; it would write Inf), the "
                   "first in row %llu, largest |x| %.7g; types that hold it: %s (quantize --tensor-type '%s=TYPE'), "
                   "or --clamp-overflow to clamp such values to the range",
                   e->name, from, (unsigned long long)beyond, beyond == 1 ? "" : "s", tt->name, tt->max_abs,
                   (unsigned long long)source_row(e, row, e->n_rows), amax, holds, re);
}

/* In clamp mode the executor must clamp exactly what the survey recorded in the file's metadata. */
static qf_status check_clamped(const qf_plan_entry *e, const qf_run_opts *opts, uint64_t clamped, qf_error *err) {
    if (!opts->clamp_overflow || clamped == e->clamped) return QF_OK;
    return qf_fail(err, QF_E_INTERNAL, "tensor '%s': clamped %llu values, the survey counted %llu", e->name,
                   (unsigned long long)clamped, (unsigned long long)e->clamped);
}

/* GPTQ needs the whole matrix at once: read every row, quantize with error feedback, write. */
static qf_status run_tensor_gptq(qf_source *src, const qf_hparams *hp, const qf_plan_entry *e, const qf_hessian *h,
                                 qf_gguf_writer *w, const qf_run_opts *opts, qf_error *err) {
    chunk_job j = {.src = src, .e = e, .tt = qf_qtype_get(e->type), .row0 = 0, .n_rows = e->n_rows};
    qf_qtype_row_bytes(j.tt, e->ne[0], &j.row_bytes);
    j.f32 = qf_malloc_n(e->n_rows, e->ne[0] * sizeof(float));
    j.out = qf_malloc_n(e->n_rows, j.row_bytes);
    qf_status st = j.f32 && j.out ? qf_source_prepare(src, (size_t)e->src, err)
                                  : qf_fail(err, QF_E_NOMEM, "gptq: out of memory for '%s' as F32", e->name);
    if (!st && (st = fetch_rows(&j, 0, e->n_rows))) *err = j.err;
    for (uint64_t r = 0; !st && r < e->n_rows; r++)
        if (!fit_range(j.tt, j.f32 + r * e->ne[0], e->ne[0], opts->clamp_overflow, &j.clamped))
            st = range_refusal(src, hp, e, r, err);
    if (!st) st = check_clamped(e, opts, j.clamped, err);
    if (!st) {
        qf_gptq_opts go = opts->gptq;
        go.threads = opts->threads;
        st = qf_gptq_quantize(j.tt, j.f32, e->n_rows, e->ne[0], h->h, &go, j.out, err);
        if (st) {
            char what[160];
            snprintf(what, sizeof what, "tensor '%s'", e->name);
            st = qf_fail_prefix(err, st, what);
        }
    }
    if (!st) st = qf_gguf_write_tensor_data(w, j.out, e->n_rows * j.row_bytes, err);
    qf_source_release(src, (size_t)e->src);
    free(j.f32);
    free(j.out);
    return st;
}

static qf_status run_tensor(qf_source *src, const qf_hparams *hp, const qf_plan_entry *e, qf_gguf_writer *w,
                            const qf_run_opts *opts, uint64_t *done, uint64_t total, qf_error *err) {
    chunk_job j = {.src = src, .e = e, .tt = qf_qtype_get(e->type), .clamp = opts->clamp_overflow,
                   .over_row = UINT64_MAX};
    const qf_hessian *h = e->src >= 0 && e->calib == QF_CALIB_GPTQ ? e->hess : NULL;
    if (h) {
        qf_status st = run_tensor_gptq(src, hp, e, h, w, opts, err);
        *done += e->nbytes;
        if (!st && opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
        return st;
    }
    qf_qtype_row_bytes(j.tt, e->ne[0], &j.row_bytes);
    uint64_t f32_row = e->ne[0] * sizeof(float), rows_per_chunk = chunk_rows(e);
    float *gen = NULL, *imp = NULL;
    qf_status st = generate(hp, e, &gen, err);
    if (!st) st = importance(e, j.tt, &imp, &j.rows_per_mat, &j.weighting, err);
    j.gen = gen;
    j.imp = imp;
    j.f32 = qf_malloc_n(rows_per_chunk, f32_row);
    j.out = qf_malloc_n(rows_per_chunk, j.row_bytes);
    if (!st && (!j.f32 || !j.out)) st = qf_fail(err, QF_E_NOMEM, "tensor '%s': out of memory for a chunk", e->name);
    /* Sources fetch lazily; preparing here keeps worker threads to pure reads of the tensor's bytes. */
    if (!st && e->src >= 0) st = qf_source_prepare(src, (size_t)e->src, err);
    int threads = opts->threads > 0 ? opts->threads : 1;
    for (uint64_t r = 0; !st && r < e->n_rows; r += rows_per_chunk) {
        j.row0 = r;
        j.n_rows = QF_MIN(rows_per_chunk, e->n_rows - r);
        int t = (int)QF_MIN((uint64_t)threads, j.n_rows);
        if ((st = run_chunk(&j, t, err))) {
            if (j.over_row != UINT64_MAX) st = range_refusal(src, hp, e, j.over_row, err);
            break;
        }
        st = qf_gguf_write_tensor_data(w, j.out, j.n_rows * j.row_bytes, err);
        *done += j.n_rows * j.row_bytes;
        if (opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
    }
    if (!st) st = check_clamped(e, opts, j.clamped, err);
    if (e->src >= 0) qf_source_release(src, (size_t)e->src);
    free(gen);
    free(imp);
    free(j.f32);
    free(j.out);
    return st;
}

qf_status qf_plan_execute(qf_source *src, const qf_hparams *hp, const qf_plan *plan, qf_gguf_writer *w,
                          const qf_run_opts *opts, qf_error *err) {
    uint64_t done = 0;
    for (size_t i = 0; i < plan->n; i++) {
        qf_status st = run_tensor(src, hp, &plan->e[i], w, opts, &done, plan->total_bytes, err);
        if (st) return st;
    }
    return QF_OK;
}
