/* Plan executor: source rows -> F32 -> stored type -> GGUF writer (run.h). */
#include "quantize/run.h"
#include "quantize/write_behind.h"
#include "kernels/fpconv.h"
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
    float *f32;             /* n_rows x ne[0] scratch: values, or each group's scale (FP8 pass-through) */
    uint8_t *codes;         /* pass-through: n_rows x ne[0] stored elements of the source, code_size bytes
                               each: E4M3 codes (e->fp8_pass), or out itself (e->raw_pass); else NULL */
    uint64_t code_size;
    uint8_t *out;           /* n_rows x row_bytes */
    const uint8_t *lent;    /* stored-bytes pass-through without a copy: the chunk's rows where the source
                               maps them (lend_rows), checked and written from there; else NULL */
    bool clamp;             /* values beyond the type's range are clamped (else the row is refused) */
    uint64_t clamped;       /* values clamped so far */
    uint64_t over_row;      /* the first output row refused for its range, or UINT64_MAX */
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

/* A chunk's elements as they are fetched: F32 values, or for a pass-through the source's stored elements
 * (q, `size` bytes each): FP8 codes with one scale per `per` of them in v (a group of the output type; 1
 * where a map reads whole source blocks to move single values), or plain values with no scale (v NULL).
 * The row maps below move all of them alike, so codes go where values would. */
typedef struct elems {
    float *v;
    uint8_t *q;             /* NULL: values only */
    uint64_t per;           /* values per entry of v: 1 for values */
    uint64_t size;          /* bytes per element of q */
} elems;

/* Element k on; k starts a group. */
static elems elems_at(elems e, uint64_t k) {
    return (elems){e.v ? e.v + k / e.per : NULL, e.q ? e.q + k * e.size : NULL, e.per, e.size};
}

/* dst's element a := src's element b. A code that does not start its group must have the scale its group
 * took from the first: false where it does not (the plan and the row maps would disagree). */
static bool elem_copy(elems dst, uint64_t a, elems src, uint64_t b) {
    if (!dst.q) { dst.v[a] = src.v[b]; return true; }
    memcpy(dst.q + a * dst.size, src.q + b * src.size, dst.size);
    if (!dst.v) return true;
    float s = src.v[b / src.per];
    if (a % dst.per == 0) dst.v[a / dst.per] = s;
    return memcmp(&dst.v[a / dst.per], &s, sizeof s) == 0;
}

/* n consecutive rows of source slot `slot` from `row` into dst. */
static qf_status read_rows(chunk_job *j, size_t slot, uint64_t row, uint64_t n, elems dst) {
    size_t i = j->srcs[slot];
    if (!dst.q) return qf_source_rows(j->src, i, row, n, dst.v, &j->err);
    return dst.v ? qf_source_fp8_rows(j->src, i, row, n, dst.per, dst.q, dst.v, &j->err)
                 : qf_source_plain_rows(j->src, i, row, n, dst.q, &j->err);
}

/* attn_k_b rows: output row h * R + c (R = rows of the source, the latent rank) is column c of the
 * head's `take` source rows from its offset. A head's rows are read once per chunk. */
static qf_status fetch_transposed(chunk_job *j, uint64_t r0, uint64_t n, elems dst) {
    const qf_tensor_spec *t = j->e->spec;
    uint64_t len = j->e->ne[0], R = j->e->ne[1];
    bool scaled = !dst.q || dst.v;
    elems block = {scaled ? qf_malloc_n(t->take, R * sizeof(float)) : NULL,
                   dst.q ? qf_malloc_n(t->take, R * dst.size) : NULL, 1, dst.size};
    qf_status st = QF_OK;
    if ((scaled && !block.v) || (dst.q && !block.q))
        st = qf_fail(&j->err, QF_E_NOMEM, "out of memory transposing '%s'", j->e->name);
    for (uint64_t r = r0; r < r0 + n && !st;) {
        uint64_t h = r / R, end = QF_MIN((h + 1) * R, r0 + n);
        st = read_rows(j, 0, h * t->stride + t->offset, t->take, block);
        for (; !st && r < end; r++)
            for (uint64_t i = 0; i < len && !st; i++)
                if (!elem_copy(dst, (r - r0) * len + i, block, i * R + r % R))
                    st = qf_fail(&j->err, QF_E_INTERNAL, "tensor '%s': row %llu, column %llu does not share its "
                                 "group's FP8 source scale", j->e->name, (unsigned long long)r, (unsigned long long)i);
    }
    free(block.v);
    free(block.q);
    return st;
}

static qf_status fetch_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    const qf_plan_entry *e = j->e;
    uint64_t len = e->ne[0];
    uint64_t per = j->codes && e->fp8_pass ? qf_qtype_e4m3_group(j->tt, len) : 1;
    elems dst = elems_at((elems){e->raw_pass ? NULL : j->f32, j->codes, per, j->code_size}, (r0 - j->row0) * len);
    if (j->gen) { memcpy(dst.v, j->gen + r0 * len, n * len * sizeof(float)); return QF_OK; }
    if (j->lent) return QF_OK;
    const qf_tensor_spec *t = e->spec;
    if (t->map == QF_MAP_HEAD_COLS) return fetch_transposed(j, r0, n, dst);
    if (e->n_dims == 1 && t->permute_heads) {
        /* A permuted bias: its elements are the "rows" (1-D, so never passed through). */
        float *all = malloc(len * sizeof(float));
        if (!all) return qf_fail(&j->err, QF_E_NOMEM, "out of memory");
        qf_status st = qf_source_rows(j->src, j->srcs[0], 0, 1, all, &j->err);
        for (uint64_t k = 0; st == QF_OK && k < len; k++) dst.v[k] = all[permuted(t, k, len)];
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
        qf_status st = read_rows(j, slot, row, run, elems_at(dst, (r - r0) * len));
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

/* The largest magnitude code of a group: E4M3 codes order as their magnitudes. */
static uint8_t top_code(const uint8_t *q, uint64_t n) {
    uint8_t top = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint8_t v = q[k] & 0x7F;
        top = v > top ? v : top;
    }
    return top;
}

/* FP8 pass-through: each group of an output row is written as its one scale and the source's codes, so
 * every value is the source's e4m3(code) * scale. The plan passed the tensor through because each group
 * lies under one source scale (plan.c), which the fetch checked. A NaN code, or a product beyond F32, is
 * refused as the quantizers refuse NaN and Inf. */
static qf_status pass_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    uint64_t len = j->e->ne[0], g = qf_qtype_e4m3_group(j->tt, len);
    for (uint64_t r = r0; r < r0 + n; r++) {
        const float *sc = j->f32 + (r - j->row0) * (len / g);
        const uint8_t *q = j->codes + (r - j->row0) * len;
        uint8_t *out = j->out + (r - j->row0) * j->row_bytes;
        for (uint64_t c = 0; c < len; c += g, out += sizeof(float) + g) {
            uint8_t top = top_code(q + c, g);
            if (top == 0x7F || !isfinite(sc[c / g] * qf_e4m3_to_f32(top)))
                return qf_fail(&j->err, QF_E_INPUT, "tensor '%s': row %llu holds NaN or Inf (its FP8 codes times their "
                               "scale); refusing to store it", j->e->name, (unsigned long long)r);
            memcpy(out, &sc[c / g], sizeof(float));
            memcpy(out + sizeof(float), q + c, g);
        }
    }
    return QF_OK;
}

/* Stored-bytes pass-through: the rows were fetched into the output as they are, or are lent by the
 * source; what a quantizer would refuse (NaN, Inf) is refused here with its words. */
static qf_status check_plain_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    const uint8_t *rows = j->lent ? j->lent : j->out;
    for (uint64_t r = r0; r < r0 + n; r++)
        if (!qf_plain_row_finite(j->e->type, rows + (r - j->row0) * j->row_bytes, (int64_t)j->e->ne[0]))
            return qf_fail(&j->err, QF_E_INPUT, "tensor '%s': row %llu holds NaN or Inf; refusing to store it",
                           j->e->name, (unsigned long long)r);
    return QF_OK;
}

static qf_status encode_rows(chunk_job *j, uint64_t r0, uint64_t n) {
    if (j->e->raw_pass) return check_plain_rows(j, r0, n);
    if (j->codes) return pass_rows(j, r0, n);
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

/* Rows a worker fetches and encodes at once: well inside a core's L2. */
#define QF_RUN_PIECE_BYTES (256u << 10)

static void *worker_main(void *arg) {
    worker *w = arg;
    chunk_job j = *w->job; /* private copy: own error record and counts */
    qf_error_clear(&j.err);
    j.clamped = 0;
    /* a piece at a time, so rows are encoded while they are still in this core's cache */
    uint64_t piece = QF_MAX(1, QF_RUN_PIECE_BYTES / (j.e->ne[0] * sizeof(float)));
    if (j.e->spec && j.e->spec->map == QF_MAP_HEAD_COLS) piece = w->n; /* it reads whole heads per call */
    w->st = QF_OK;
    for (uint64_t r = w->r0, n; r < w->r0 + w->n && w->st == QF_OK; r += n) {
        n = QF_MIN(piece, w->r0 + w->n - r);
        w->st = fetch_rows(&j, r, n);
        if (w->st == QF_OK) w->st = encode_rows(&j, r, n);
    }
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
static qf_status importance(const qf_plan *p, const qf_plan_entry *e, const qf_qtype_traits *tt, float **imp,
                            uint64_t *rows_per_mat, row_weighting *how, qf_error *err) {
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
    uint64_t n_mat = e->n_dims == 3 ? e->ne[2] : 1; /* the entry may hold them as one (qf_plan_bind_calibration) */
    *imp = qf_malloc_n(n_mat, e->ne[0] * sizeof(float));
    if (!*imp) return qf_fail(err, QF_E_NOMEM, "out of memory for importance weights of '%s'", e->name);
    qf_imatrix_weights(ie, &p->experts, *imp);
    *rows_per_mat = e->n_rows / n_mat;
    return QF_OK;
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

/* Rows of a tensor read and encoded at once: QF_RUN_CHUNK_BYTES of F32 (a permuted bias: one). */
static uint64_t chunk_rows(const qf_plan_entry *e) {
    uint64_t rows = QF_MAX(1, QF_RUN_CHUNK_BYTES / QF_MAX(e->ne[0] * sizeof(float), 1));
    if (e->n_dims == 1 && e->spec && e->spec->permute_heads) rows = 1;
    return QF_MIN(rows, e->n_rows);
}

/* Rows of the chunk that starts at row r: at most `rows`, and within one expert of a stacked tensor,
 * since a sequential source streams one source tensor at a time (formats/source.h). */
static uint64_t chunk_at(const qf_plan_entry *e, uint64_t r, uint64_t rows) {
    uint64_t end = e->n_rows;
    if (e->spec && e->spec->map == QF_MAP_STACK) {
        uint64_t per = e->n_rows / e->spec->n_src;
        end = (r / per + 1) * per;
    }
    return QF_MIN(rows, end - r);
}

/* Rows of the chunk after the one ending at row r (0 past the end). */
static uint64_t next_chunk(const qf_plan_entry *e, uint64_t r, uint64_t rows) {
    return r < e->n_rows ? chunk_at(e, r, rows) : 0;
}

/* A tensor's chunks in order: each chunk's source rows are prepared before it is read, and the
 * sources it has passed (the experts of a stacked tensor) are released, so a tensor streams. */
typedef struct walk {
    size_t released, first, last;
    uint64_t hinted;        /* rows [0, hinted) were hinted to the source */
} walk;

/* Rows hinted ahead of the chunk being encoded, in chunks: enough that the disk keeps reading while the
 * write-behind thread digests and writes (a chunk of FP8 codes is 4 MiB, one such was too little). */
#define QF_RUN_AHEAD_CHUNKS 4

/* Asks the source to start reading the rows chunk rows [r0, r0 + n) need (a hint). */
static void advise_slots(chunk_job *j, uint64_t r0, uint64_t n) {
    size_t first, last;
    if (n == 0) return;
    slots_of(j, r0, n, &first, &last);
    for (size_t k = first; k <= last && last != SIZE_MAX; k++) {
        uint64_t lo, cnt;
        slot_rows(j, k, r0, n, &lo, &cnt);
        qf_source_advise(j->src, j->srcs[k], lo, cnt);
    }
}

/* The chunk's rows, and a hint for the `ahead` rows after them, so that the disk reads those while this
 * chunk is encoded. */
static qf_status walk_chunk(chunk_job *j, walk *w, uint64_t r, uint64_t n, uint64_t ahead, qf_error *err) {
    j->row0 = r;
    j->n_rows = n;
    slots_of(j, r, n, &w->first, &w->last);
    if (w->last == SIZE_MAX) return QF_OK; /* generated */
    release_slots(j, w->released, w->first);
    w->released = QF_MAX(w->released, w->first);
    uint64_t from = QF_MAX(w->hinted, r), to = QF_MIN(j->e->n_rows, r + n + ahead);
    if (to > from) advise_slots(j, from, to - from);
    w->hinted = QF_MAX(w->hinted, to);
    return prepare_slots(j, r, n, w->first, w->last, err);
}

/* A stored-bytes pass-through chunk whose rows lie consecutively in one source (an unpermuted copy, or
 * a stack's, whose chunks chunk_at keeps within one expert) is written from the source's mapping, not
 * copied into a buffer first: the copy was a third of the CPU time of a BF16 -> BF16 conversion (README,
 * conversion). The bytes stay mapped until the source closes, so the write-behind may still be writing
 * them after the walk has released their slot (that only drops pages). */
static qf_status lend_rows(chunk_job *j, qf_error *err) {
    const qf_tensor_spec *t = j->e->spec;
    j->lent = NULL;
    if (!j->e->raw_pass || j->gen || !t || !(t->map == QF_MAP_STACK || (t->map == QF_MAP_COPY && !t->permute_heads)))
        return QF_OK;
    size_t slot;
    uint64_t row;
    source_row(j, j->row0, &slot, &row);
    const void *rows = NULL;
    qf_status st = qf_source_plain_view(j->src, j->srcs[slot], row, j->n_rows, &rows, err);
    j->lent = rows;
    return st;
}

static void walk_done(chunk_job *j, walk *w) {
    if (j->e->spec) release_slots(j, w->released, j->e->spec->n_src);
}

static chunk_job job_for(qf_source *src, const qf_plan *plan, const qf_plan_entry *e) {
    return (chunk_job){.src = src, .e = e, .tt = qf_qtype_get(e->type), .over_row = UINT64_MAX,
                       .srcs = e->spec ? plan->map.src + e->spec->first_src : NULL};
}

qf_status qf_tensor_range(qf_source *src, const qf_hparams *hp, const qf_plan *plan, const qf_plan_entry *e,
                          uint64_t *beyond, float *amax, qf_error *err) {
    chunk_job j = job_for(src, plan, e);
    *beyond = 0;
    *amax = 0.0f;
    if (e->fp8_pass || e->raw_pass) return QF_OK; /* the source's values are stored as they are: none is beyond */
    uint64_t len = e->ne[0], rows_per_chunk = chunk_rows(e);
    float *gen = NULL;
    walk w = {0};
    j.f32 = qf_malloc_n(rows_per_chunk, len * sizeof(float));
    qf_status st = j.f32 ? generate(hp, e, &gen, err) : qf_fail(err, QF_E_NOMEM, "tensor '%s': out of memory", e->name);
    j.gen = gen;
    for (uint64_t r = 0, n; !st && r < e->n_rows; r += n) {
        n = chunk_at(e, r, rows_per_chunk);
        if ((st = walk_chunk(&j, &w, r, n, QF_RUN_AHEAD_CHUNKS * rows_per_chunk, err))) break;
        if ((st = fetch_rows(&j, r, n))) { *err = j.err; break; }
        for (uint64_t i = 0; i < n * len; i++) {
            float v = fabsf(j.f32[i]);
            *beyond += v > j.tt->max_abs && !isinf(v);
            *amax = v > *amax && !isinf(v) ? v : *amax;
        }
    }
    walk_done(&j, &w);
    free(gen);
    free(j.f32);
    return st;
}

/* The refusal of a tensor with values beyond its type's range: how many, the largest, where the first
 * one is in the source, and the types that hold it. */
static qf_status range_refusal(qf_source *src, const qf_hparams *hp, const qf_plan *plan, const qf_plan_entry *e,
                               uint64_t row, qf_error *err) {
    uint64_t beyond;
    float amax;
    qf_status st = qf_tensor_range(src, hp, plan, e, &beyond, &amax, err);
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
    chunk_job j = job_for(src, plan, e);
    size_t slot = 0;
    uint64_t src_row = row;
    if (e->spec && e->spec->map != QF_MAP_HEAD_COLS) source_row(&j, row, &slot, &src_row);
    const char *from = e->spec ? qf_source_tensor(src, j.srcs[slot])->name : "generated";
    return qf_fail(err, QF_E_INPUT,
                   "tensor '%s' (%s): %llu value%s beyond what %s stores (|x| <= %.7g; it would write Inf), the "
                   "first in row %llu, largest |x| %.7g; types that hold it: %s (quantize --tensor-type '%s=TYPE'), "
                   "or --clamp-overflow to clamp such values to the range",
                   e->name, from, (unsigned long long)beyond, beyond == 1 ? "" : "s", tt->name, tt->max_abs,
                   (unsigned long long)src_row, amax, holds, re);
}

/* In clamp mode the executor must clamp exactly what the survey recorded in the file's metadata. */
static qf_status check_clamped(const qf_plan_entry *e, const qf_run_opts *opts, uint64_t clamped, qf_error *err) {
    if (!opts->clamp_overflow || clamped == e->clamped) return QF_OK;
    return qf_fail(err, QF_E_INTERNAL, "tensor '%s': clamped %llu values, the survey counted %llu", e->name,
                   (unsigned long long)clamped, (unsigned long long)e->clamped);
}

/* GPTQ needs the whole matrix at once: read every row, quantize with error feedback, write. */
static qf_status run_tensor_gptq(chunk_job *j, const qf_hparams *hp, const qf_plan *plan, const qf_hessian *h,
                                 qf_wb *wb, const qf_run_opts *opts, qf_error *err) {
    const qf_plan_entry *e = j->e;
    walk wk = {0};
    qf_qtype_row_bytes(j->tt, e->ne[0], &j->row_bytes);
    j->f32 = qf_malloc_n(e->n_rows, e->ne[0] * sizeof(float));
    j->out = qf_malloc_n(e->n_rows, j->row_bytes);
    qf_status st = j->f32 && j->out ? QF_OK : qf_fail(err, QF_E_NOMEM, "gptq: out of memory for '%s' as F32", e->name);
    for (uint64_t r = 0, n; !st && r < e->n_rows; r += n) { /* expert by expert, into one matrix */
        n = chunk_at(e, r, e->n_rows);
        st = walk_chunk(j, &wk, r, n, next_chunk(e, r + n, e->n_rows), err);
        j->row0 = 0;
        if (!st && (st = fetch_rows(j, r, n))) *err = j->err;
    }
    for (uint64_t r = 0; !st && r < e->n_rows; r++)
        if (!fit_range(j->tt, j->f32 + r * e->ne[0], e->ne[0], opts->clamp_overflow, &j->clamped))
            st = range_refusal(j->src, hp, plan, e, r, err);
    if (!st) st = check_clamped(e, opts, j->clamped, err);
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
    if (!st) st = qf_wb_put(wb, j->out, e->n_rows * j->row_bytes, err);
    if (!st) st = qf_wb_wait(wb, err); /* before j->out is freed */
    walk_done(j, &wk);
    free(j->f32);
    free(j->out);
    return st;
}

/* The chunk buffers of a run, sized once for its largest chunk and shared by every tensor: buffers
 * allocated per tensor came back as fresh pages each time (glibc maps large blocks), so the kernel
 * faulted in and cleared 4 KiB at a time what the run had just freed, a second of system time in a
 * 1.7 GB BF16 -> F16 conversion (README, conversion). */
typedef struct run_bufs {
    float *f32;             /* chunk_rows x ne[0] F32 values, or each group's FP8 scale */
    uint8_t *out[2];        /* encoded chunks; the second only where some tensor has more than one */
    uint8_t *codes;         /* FP8 pass-through: a chunk's E4M3 codes */
} run_bufs;

static bool uses_gptq(const qf_plan_entry *e) { return e->spec && e->calib == QF_CALIB_GPTQ && e->hess; }

static qf_status bufs_alloc(const qf_plan *plan, qf_gguf_writer *w, run_bufs *b, qf_error *err) {
    uint64_t f32 = 0, out = 0, codes = 0;
    bool second = false;
    for (size_t i = 0; i < plan->n; i++) {
        const qf_plan_entry *e = &plan->e[i];
        if (!qf_gguf_writer_wants(w, i) || uses_gptq(e)) continue; /* GPTQ holds its whole matrix itself */
        uint64_t rows = chunk_rows(e), rb = 0;
        qf_qtype_row_bytes(qf_qtype_get(e->type), e->ne[0], &rb);
        if (!e->raw_pass) f32 = QF_MAX(f32, rows * e->ne[0] * sizeof(float));
        if (e->fp8_pass) codes = QF_MAX(codes, rows * e->ne[0]);
        out = QF_MAX(out, rows * rb);
        second |= chunk_at(e, 0, rows) < e->n_rows;
    }
    *b = (run_bufs){f32 ? malloc(f32) : NULL, {out ? malloc(out) : NULL, second && out ? malloc(out) : NULL},
                    codes ? malloc(codes) : NULL};
    if ((f32 && !b->f32) || (out && !b->out[0]) || (second && out && !b->out[1]) || (codes && !b->codes))
        return qf_fail(err, QF_E_NOMEM, "out of memory for the chunk buffers (%llu MiB)",
                       (unsigned long long)((f32 + (1 + second) * out + codes) >> 20));
    return QF_OK;
}

static void bufs_free(run_bufs *b) {
    free(b->f32);
    free(b->out[0]);
    free(b->out[1]);
    free(b->codes);
}

/* Chunks alternate between two output buffers: the workers encode into one while the write-behind
 * thread digests and writes the other. */
static qf_status run_tensor(qf_source *src, const qf_hparams *hp, const qf_plan *plan, const qf_plan_entry *e,
                            const run_bufs *b, qf_wb *wb, const qf_run_opts *opts, uint64_t *done, uint64_t total,
                            qf_error *err) {
    chunk_job j = job_for(src, plan, e);
    j.clamp = opts->clamp_overflow;
    if (uses_gptq(e)) {
        qf_status st = run_tensor_gptq(&j, hp, plan, e->hess, wb, opts, err);
        *done += e->nbytes;
        if (!st && opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
        return st;
    }
    qf_qtype_row_bytes(j.tt, e->ne[0], &j.row_bytes);
    uint64_t rows_per_chunk = chunk_rows(e);
    float *gen = NULL, *imp = NULL;
    qf_status st = generate(hp, e, &gen, err);
    if (!st) st = importance(plan, e, j.tt, &imp, &j.rows_per_mat, &j.weighting, err);
    j.gen = gen;
    j.imp = imp;
    j.f32 = e->raw_pass ? NULL : b->f32;
    uint8_t *const *out = b->out;
    j.codes = e->fp8_pass ? b->codes : NULL;
    j.code_size = e->raw_pass ? j.tt->bytes : 1;
    int threads = opts->threads > 0 ? opts->threads : 1;
    walk wk = {0};
    for (uint64_t r = 0, n, k = 0; !st && r < e->n_rows; r += n, k ^= b->out[1] != NULL) {
        n = chunk_at(e, r, rows_per_chunk);
        int t = (int)QF_MIN((uint64_t)threads, n);
        j.out = out[k];
        if (e->raw_pass) j.codes = j.out; /* fetched straight into the output */
        if ((st = walk_chunk(&j, &wk, r, n, QF_RUN_AHEAD_CHUNKS * rows_per_chunk, err))) break;
        if ((st = lend_rows(&j, err))) break;
        if ((st = run_chunk(&j, t, err))) {
            if (j.over_row != UINT64_MAX) st = range_refusal(src, hp, plan, e, j.over_row, err);
            break;
        }
        st = qf_wb_put(wb, j.lent ? j.lent : j.out, j.n_rows * j.row_bytes, err);
        *done += j.n_rows * j.row_bytes;
        if (opts->progress) opts->progress(opts->progress_user, e->name, *done, total);
    }
    qf_error werr;
    qf_status wst = qf_wb_wait(wb, &werr); /* the next tensor reuses the buffers */
    if (!st && wst) {
        st = wst;
        *err = werr;
    }
    if (!st) st = check_clamped(e, opts, j.clamped, err);
    walk_done(&j, &wk);
    free(gen);
    free(imp);
    return st;
}

qf_status qf_plan_execute(qf_source *src, const qf_hparams *hp, const qf_plan *plan, qf_gguf_writer *w,
                          const qf_run_opts *opts, qf_error *err) {
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < plan->n; i++) total += qf_gguf_writer_wants(w, i) ? plan->e[i].nbytes : 0;
    run_bufs b;
    qf_status st = bufs_alloc(plan, w, &b, err);
    if (st) {
        bufs_free(&b);
        return st;
    }
    qf_wb wb;
    qf_wb_start(&wb, w);
    for (size_t i = 0; i < plan->n && !st; i++)
        if (qf_gguf_writer_wants(w, i)) /* else another part of a split output (--only-split) */
            st = run_tensor(src, hp, plan, &plan->e[i], &b, &wb, opts, &done, total, err);
    qf_wb_stop(&wb);
    bufs_free(&b);
    return st;
}
