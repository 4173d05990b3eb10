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
    const size_t *srcs;     /* source tensor indices of e's spec (qf_plan.map.src + spec->first_src) */
    const qf_qtype_traits *tt;
    const float *gen;       /* generated tensor data, or NULL */
    const float *imp;       /* n_mat x ne[0] importance weights, or NULL */
    row_weighting weighting;
    uint64_t rows_per_mat;  /* rows sharing one importance vector (one expert's matrix) */
    uint64_t row0, n_rows;  /* rows of the output tensor in this chunk */
    uint64_t row_bytes;
    float *f32;             /* n_rows x ne[0] scratch */
    uint8_t *out;           /* n_rows x row_bytes */
    qf_status st;
    qf_error err;
} chunk_job;

/* Rotate-half -> adjacent pairs: HF keeps the two members of a rotary pair half the rotated span
 * apart, ggml's normal rope wants them adjacent, so within each group of rows (a head) rotated row
 * offset + 2i + j comes from offset + j * rot/2 + i. */
static uint64_t permuted(const qf_tensor_spec *t, uint64_t r, uint64_t total) {
    if (!t->permute_heads) return r;
    uint64_t d = total / t->permute_heads, h = r / d, k = r % d;
    if (k < t->permute_offset || k >= t->permute_offset + t->permute_rot) return r;
    k -= t->permute_offset;
    return h * d + t->permute_offset + (k % 2) * (t->permute_rot / 2) + k / 2;
}

/* Where output row r of a row-mapped tensor comes from: source slot and row in it. */
static void source_row(const chunk_job *j, uint64_t r, size_t *slot, uint64_t *row) {
    const qf_tensor_spec *t = j->e->spec;
    *slot = 0;
    switch (t->map) {
    case QF_MAP_STACK: {
        uint64_t per = j->e->n_rows / t->n_src;
        *slot = (size_t)(r / per);
        *row = r % per;
        return;
    }
    case QF_MAP_HEAD_ROWS: *row = (r / t->take) * t->stride + t->offset + r % t->take; return;
    default: *row = permuted(t, r, j->e->n_rows); return;
    }
}

/* attn_k_b rows: output row h * R + c (R = rows of the source, the latent rank) is column c of the
 * head's `take` source rows from its offset. A head's rows are read once per chunk. */
static qf_status fetch_transposed(chunk_job *j, uint64_t r0, uint64_t n, float *dst) {
    const qf_tensor_spec *t = j->e->spec;
    uint64_t len = j->e->ne[0], R = j->e->ne[1];
    float *block = qf_malloc_n(t->take, R * sizeof(float));
    if (!block) return qf_fail(&j->err, QF_E_NOMEM, "out of memory transposing '%s'", j->e->name);
    qf_status st = QF_OK;
    for (uint64_t r = r0; r < r0 + n && !st;) {
        uint64_t h = r / R, end = QF_MIN((h + 1) * R, r0 + n);
        st = qf_source_rows(j->src, j->srcs[0], h * t->stride + t->offset, t->take, block, &j->err);
        for (; !st && r < end; r++)
            for (uint64_t i = 0; i < len; i++) dst[(r - r0) * len + i] = block[i * R + r % R];
    }
    free(block);
    return st;
}

static qf_status fetch_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    const qf_plan_entry *e = j->e;
    uint64_t len = e->ne[0];
    float *dst = j->f32 + (r0 - j->row0) * len;
    if (j->gen) { memcpy(dst, j->gen + r0 * len, n * len * sizeof(float)); return QF_OK; }
    const qf_tensor_spec *t = e->spec;
    if (t->map == QF_MAP_HEAD_COLS) return fetch_transposed(j, r0, n, dst);
    if (e->n_dims == 1 && t->permute_heads) {
        /* A permuted bias: its elements are the "rows". */
        float *all = malloc(len * sizeof(float));
        if (!all) return qf_fail(&j->err, QF_E_NOMEM, "out of memory");
        qf_status st = qf_source_rows(j->src, j->srcs[0], 0, 1, all, &j->err);
        for (uint64_t k = 0; st == QF_OK && k < len; k++) dst[k] = all[permuted(t, k, len)];
        free(all);
        return st;
    }
    /* runs of consecutive source rows in one read */
    for (uint64_t r = r0; r < r0 + n;) {
        size_t slot;
        uint64_t row, run = 1, next_row;
        size_t next_slot;
        source_row(j, r, &slot, &row);
        while (r + run < r0 + n && (source_row(j, r + run, &next_slot, &next_row), next_slot == slot && next_row == row + run)) run++;
        qf_status st = qf_source_rows(j->src, j->srcs[slot], row, run, dst + (r - r0) * len, &j->err);
        if (st) return st;
        r += run;
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

static qf_status encode_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    uint64_t len = j->e->ne[0];
    bool own = j->weighting == W_HEDGED || j->weighting == W_MAGNITUDE;
    float *rw = own ? malloc(len * sizeof(float)) : NULL;
    if (own && !rw) return qf_fail(&j->err, QF_E_NOMEM, "out of memory");
    qf_status st = QF_OK;
    for (uint64_t r = r0; r < r0 + n && !st; r++) {
        const float *x = j->f32 + (r - j->row0) * len;
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
    qf_status st;
    qf_error err;
    pthread_t tid;
    bool threaded;          /* false: ran on the caller's thread (creation failed or worker 0) */
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    chunk_job j = *w->job; /* private copy: own error record */
    qf_error_clear(&j.err);
    w->st = fetch_rows(&j, w->r0, w->n);
    if (w->st == QF_OK) w->st = encode_rows(&j, w->r0, w->n);
    w->err = j.err;
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
    qf_status st = ws[0].st;
    if (st) *err = ws[0].err;
    for (int i = 1; i < nw; i++) {
        if (ws[i].threaded) pthread_join(ws[i].tid, NULL);
        if (!st && ws[i].st) { st = ws[i].st; *err = ws[i].err; }
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

/* Importance weights for a tensor from the imatrix: one vector per expert matrix, and how rows use them
 * (row_weighting). Unquantized types need none. On qf-llama-a: magnitude weights without an imatrix cut
 * q3_k_m's KLD 10% (tinystories) and 3% (wikitext) but raise q4_k_m's 7%; for the embeddings and output
 * of q4_k_m with an imatrix, dropping them lowered wikitext KLD 6%. */
static qf_status importance(const qf_run_opts *opts, const qf_plan_entry *e, const qf_qtype_traits *tt, float **imp,
                            uint64_t *rows_per_mat, row_weighting *how, qf_error *err) {
    *imp = NULL;
    *how = W_NONE;
    *rows_per_mat = e->n_rows;
    if (!tt->quantized) return QF_OK;
    bool narrow = (uint64_t)tt->bytes * 8 < 4 * (uint64_t)tt->blck; /* below 4 bits per weight */
    const qf_imatrix_entry *ie = opts->imatrix ? qf_imatrix_find(opts->imatrix, e->name) : NULL;
    if (!ie) {
        *how = narrow ? W_MAGNITUDE : W_NONE;
        return QF_OK;
    }
    *how = narrow ? W_HEDGED : W_CALIBRATED;
    uint64_t n_mat = e->n_dims == 3 ? e->ne[2] : 1;
    if (ie->n_cols != e->ne[0] || ie->n_mat != n_mat)
        return qf_fail(err, QF_E_INPUT, "imatrix entry '%s' is %u columns x %u matrices; the tensor needs %llu x %llu",
                       e->name, ie->n_cols, ie->n_mat, (unsigned long long)e->ne[0], (unsigned long long)n_mat);
    *imp = qf_malloc_n(n_mat, e->ne[0] * sizeof(float));
    if (!*imp) return qf_fail(err, QF_E_NOMEM, "out of memory for importance weights of '%s'", e->name);
    for (uint32_t m = 0; m < n_mat; m++) qf_imatrix_weights(ie, m, *imp + m * e->ne[0]);
    *rows_per_mat = e->n_rows / n_mat;
    return QF_OK;
}

/* The Hessian of a tensor's input when GPTQ applies to it: a linear weight whose type has blocks. */
static const qf_hessian *gptq_hessian(const qf_run_opts *opts, const qf_plan_entry *e, const qf_qtype_traits *tt) {
    char key[96];
    if (!opts->hessians || !tt->quantized || tt->blck < 2 || e->n_dims != 2 || !qf_hessian_key(e->role, e->layer, key, sizeof key))
        return NULL;
    const qf_hessian *h = qf_hessian_find(opts->hessians, key);
    return h && h->n == e->ne[0] ? h : NULL;
}

/* Source slots rows [r0, r0 + n) read: experts of a stacked tensor are visited in order, one source
 * each; every other map reads one source. */
static void slots_of(const chunk_job *j, uint64_t r0, uint64_t n, size_t *first, size_t *last) {
    const qf_tensor_spec *t = j->e->spec;
    if (!t || t->map != QF_MAP_STACK) { *first = 0; *last = t ? 0 : SIZE_MAX; return; }
    uint64_t per = j->e->n_rows / t->n_src;
    *first = (size_t)(r0 / per);
    *last = (size_t)((r0 + n - 1) / per);
}

/* The source rows chunk rows [r0, r0 + n) read from slot k, as a range: what qf_source_prepare_rows
 * needs so that an archive streams a tensor instead of holding it whole. Permuted q/k rows come from
 * the heads the chunk touches; a permuted bias is its one row; the head maps read kv_b_proj's rows out
 * of order, so they take the whole tensor (*n = UINT64_MAX). Successive chunks never move a range's
 * start backwards. */
static void slot_rows(const chunk_job *j, size_t k, uint64_t r0, uint64_t n, uint64_t *lo, uint64_t *cnt) {
    const qf_tensor_spec *t = j->e->spec;
    const qf_plan_entry *e = j->e;
    uint64_t a = r0, b = r0 + n;
    if (t->map == QF_MAP_STACK) {
        uint64_t per = e->n_rows / t->n_src, base = (uint64_t)k * per;
        a = QF_MAX(a, base) - base;
        b = QF_MIN(b, base + per) - base;
    } else if (t->map != QF_MAP_COPY) {
        *lo = 0;
        *cnt = UINT64_MAX;
        return;
    } else if (t->permute_heads && e->n_dims == 1) {
        a = 0;
        b = 1;
    } else if (t->permute_heads) {
        uint64_t d = e->n_rows / t->permute_heads;
        a = a / d * d;
        b = QF_MIN(e->n_rows, (b + d - 1) / d * d);
    }
    *lo = a;
    *cnt = b - a;
}

/* Sources fetch lazily; preparing each chunk's rows before the workers start keeps them to pure reads
 * of the bytes. */
static qf_status prepare_slots(chunk_job *j, uint64_t r0, uint64_t n, size_t first, size_t last, qf_error *err) {
    for (size_t k = first; k <= last && last != SIZE_MAX; k++) {
        uint64_t lo, cnt;
        slot_rows(j, k, r0, n, &lo, &cnt);
        qf_status st = cnt == UINT64_MAX ? qf_source_prepare(j->src, j->srcs[k], err)
                                         : qf_source_prepare_rows(j->src, j->srcs[k], lo, cnt, err);
        if (st) return st;
    }
    return QF_OK;
}

/* Slots [first, upto) are done: drop their pages/buffers (a stacked tensor streams expert by expert). */
static void release_slots(chunk_job *j, size_t first, size_t upto) {
    for (size_t k = first; k < upto; k++) qf_source_release(j->src, j->srcs[k]);
}

/* GPTQ needs the whole matrix at once: read every row, quantize with error feedback, write. */
static qf_status run_tensor_gptq(chunk_job *j, const qf_hessian *h, qf_gguf_writer *w, const qf_run_opts *opts,
                                 qf_error *err) {
    const qf_plan_entry *e = j->e;
    j->row0 = 0;
    j->n_rows = e->n_rows;
    qf_qtype_row_bytes(j->tt, e->ne[0], &j->row_bytes);
    j->f32 = qf_malloc_n(e->n_rows, e->ne[0] * sizeof(float));
    j->out = qf_malloc_n(e->n_rows, j->row_bytes);
    qf_status st = j->f32 && j->out ? prepare_slots(j, 0, e->n_rows, 0, 0, err)
                                    : qf_fail(err, QF_E_NOMEM, "gptq: out of memory for '%s' as F32", e->name);
    if (!st && (st = fetch_rows(j, 0, e->n_rows))) *err = j->err;
    if (!st) {
        qf_gptq_opts go = opts->gptq;
        go.threads = opts->threads;
        st = qf_gptq_quantize(j->tt, j->f32, e->n_rows, e->ne[0], h->h, &go, j->out, err);
        if (st) {
            char what[160];
            snprintf(what, sizeof what, "tensor '%s'", e->name);
            st = qf_fail_prefix(err, st, what);
        }
    }
    if (!st) st = qf_gguf_write_tensor_data(w, j->out, e->n_rows * j->row_bytes, err);
    release_slots(j, 0, 1);
    free(j->f32);
    free(j->out);
    return st;
}

static qf_status run_tensor(qf_source *src, const qf_hparams *hp, const qf_plan *plan, const qf_plan_entry *e,
                            qf_gguf_writer *w, const qf_run_opts *opts, uint64_t *done, uint64_t total, qf_error *err) {
    chunk_job j = {.src = src, .e = e, .tt = qf_qtype_get(e->type),
                   .srcs = e->spec ? plan->map.src + e->spec->first_src : NULL};
    const qf_hessian *h = e->spec && e->spec->map == QF_MAP_COPY ? gptq_hessian(opts, e, j.tt) : NULL;
    if (h) {
        qf_status st = run_tensor_gptq(&j, h, w, opts, err);
        *done += e->nbytes;
        if (!st && opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
        return st;
    }
    qf_qtype_row_bytes(j.tt, e->ne[0], &j.row_bytes);
    uint64_t f32_row = e->ne[0] * sizeof(float);
    uint64_t rows_per_chunk = QF_MAX(1, QF_RUN_CHUNK_BYTES / QF_MAX(f32_row, 1));
    if (e->n_dims == 1 && e->spec && e->spec->permute_heads) rows_per_chunk = 1;
    rows_per_chunk = QF_MIN(rows_per_chunk, e->n_rows);
    float *gen = NULL, *imp = NULL;
    qf_status st = generate(hp, e, &gen, err);
    if (!st) st = importance(opts, e, j.tt, &imp, &j.rows_per_mat, &j.weighting, err);
    j.gen = gen;
    j.imp = imp;
    j.f32 = qf_malloc_n(rows_per_chunk, f32_row);
    j.out = qf_malloc_n(rows_per_chunk, j.row_bytes);
    if (!st && (!j.f32 || !j.out)) st = qf_fail(err, QF_E_NOMEM, "tensor '%s': out of memory for a chunk", e->name);
    int threads = opts->threads > 0 ? opts->threads : 1;
    size_t released = 0, first = 0, last = 0;
    for (uint64_t r = 0; !st && r < e->n_rows; r += rows_per_chunk) {
        j.row0 = r;
        j.n_rows = QF_MIN(rows_per_chunk, e->n_rows - r);
        slots_of(&j, r, j.n_rows, &first, &last);
        if (last != SIZE_MAX) {
            release_slots(&j, released, first);
            released = QF_MAX(released, first);
        }
        int t = (int)QF_MIN((uint64_t)threads, j.n_rows);
        if ((st = prepare_slots(&j, r, j.n_rows, first, last, err)) || (st = run_chunk(&j, t, err))) break;
        st = qf_gguf_write_tensor_data(w, j.out, j.n_rows * j.row_bytes, err);
        *done += j.n_rows * j.row_bytes;
        if (opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
    }
    if (e->spec) release_slots(&j, released, e->spec->n_src);
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
        qf_status st = run_tensor(src, hp, plan, &plan->e[i], w, opts, &done, plan->total_bytes, err);
        if (st) return st;
    }
    return QF_OK;
}
