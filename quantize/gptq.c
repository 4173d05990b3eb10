/* GPTQ with block-wise OBS updates over ggml block quantizers (gptq.h). */
#include "quantize/gptq.h"

#include <math.h>
#include <pthread.h>

/* In-place Cholesky A = L L^T (lower triangle of A receives L). False if A is not positive definite. */
static bool cholesky(double *A, uint64_t n) {
    for (uint64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (uint64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return false;
        d = sqrt(d);
        A[j * n + j] = d;
        for (uint64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (uint64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    return true;
}

/* H^-1 from its Cholesky factor L (lower): Hinv = L^-T L^-1, written to the full matrix inv. */
static void inverse_from_cholesky(const double *L, uint64_t n, double *inv, double *tmp) {
    /* tmp = L^-1 (lower triangular), by forward substitution on each unit column */
    memset(tmp, 0, n * n * sizeof(double));
    for (uint64_t c = 0; c < n; c++) {
        for (uint64_t i = c; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (uint64_t k = c; k < i; k++) s -= L[i * n + k] * tmp[k * n + c];
            tmp[i * n + c] = s / L[i * n + i];
        }
    }
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j <= i; j++) {
            double s = 0;
            for (uint64_t k = i; k < n; k++) s += tmp[k * n + i] * tmp[k * n + j];
            inv[i * n + j] = inv[j * n + i] = s;
        }
}

/* Upper Cholesky factor U of A (A = U^T U), i.e. the transpose of the lower factor. */
static bool upper_cholesky(double *A, uint64_t n) {
    if (!cholesky(A, n)) return false;
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = i + 1; j < n; j++) { A[i * n + j] = A[j * n + i]; A[j * n + i] = 0; }
    return true;
}

typedef struct gptq_job {
    const qf_qtype_traits *tt;
    float *W;            /* permuted columns */
    uint64_t n_cols, row_bytes;
    const uint32_t *blocks;  /* processing order of blocks (original block index) */
    uint64_t n_blocks, blck;
    const double *U;     /* upper factor of H^-1, permuted order */
    const double *M;     /* per processed block: U_SS^-1 U_S,rest, stacked */
    const uint64_t *m_off;
    const float *imp;    /* diag H per original column, for the block quantizer */
    uint8_t *out;
    uint64_t r0, r1;
    bool ok;
} gptq_job;

/* One row through all blocks: quantize the block, propagate its error to the remaining columns. Error
 * feedback can carry a value past the type's range (the source rows were within it): the block is then
 * quantized saturated at the range, and the saturation is part of the error passed on. */
static bool gptq_row(const gptq_job *j, uint64_t r, float *deq, float *sat, double *errv) {
    float *w = j->W + r * j->n_cols;
    for (uint64_t b = 0; b < j->n_blocks; b++) {
        uint64_t col0 = b * j->blck, orig = j->blocks[b];
        uint8_t *dst = j->out + r * j->row_bytes + orig * j->tt->bytes;
        const float *blk = w + col0;
        if (qf_row_absmax(blk, (int64_t)j->blck) > j->tt->max_abs) {
            memcpy(sat, blk, j->blck * sizeof *sat);
            qf_row_clamp(sat, (int64_t)j->blck, j->tt->max_abs);
            blk = sat;
        }
        if (!j->tt->quantize(blk, dst, (int64_t)j->blck, j->imp + orig * j->blck)) return false;
        j->tt->dequantize(dst, deq, (int64_t)j->blck);
        uint64_t rest = j->n_cols - col0 - j->blck;
        if (!rest) continue;
        for (uint64_t k = 0; k < j->blck; k++) errv[k] = (double)w[col0 + k] - deq[k];
        const double *M = j->M + j->m_off[b];
        for (uint64_t c = 0; c < rest; c++) {
            double s = 0;
            for (uint64_t k = 0; k < j->blck; k++) s += errv[k] * M[k * rest + c];
            w[col0 + j->blck + c] -= (float)s;
        }
    }
    return true;
}

static void *gptq_worker(void *arg) {
    gptq_job *j = arg;
    float *deq = malloc(j->blck * sizeof(float)), *sat = malloc(j->blck * sizeof(float));
    double *errv = malloc(j->blck * sizeof(double));
    j->ok = deq && sat && errv;
    for (uint64_t r = j->r0; j->ok && r < j->r1; r++) j->ok = gptq_row(j, r, deq, sat, errv);
    free(deq);
    free(sat);
    free(errv);
    return NULL;
}

/* Blocks in processing order: natural, or by descending sum of diag(H) over the block. */
static void block_order(const double *H, uint64_t n_cols, uint64_t blck, bool by_mass, uint32_t *order) {
    uint64_t nb = n_cols / blck;
    for (uint64_t b = 0; b < nb; b++) order[b] = (uint32_t)b;
    if (!by_mass) return;
    for (uint64_t a = 1; a < nb; a++) { /* insertion sort: stable, so equal masses keep their order */
        uint32_t x = order[a];
        double mx = 0;
        for (uint64_t k = 0; k < blck; k++) mx += H[(x * blck + k) * n_cols + x * blck + k];
        uint64_t i = a;
        while (i > 0) {
            double mp = 0;
            for (uint64_t k = 0; k < blck; k++) mp += H[(order[i - 1] * blck + k) * n_cols + order[i - 1] * blck + k];
            if (mp >= mx) break;
            order[i] = order[i - 1];
            i--;
        }
        order[i] = x;
    }
}

/* M_b = U_SS^-1 U_S,rest for every block S in processing order (U_SS upper triangular). */
static void block_updates(const double *U, uint64_t n, uint64_t blck, double *M, uint64_t *m_off) {
    uint64_t off = 0;
    for (uint64_t c0 = 0; c0 < n; c0 += blck) {
        uint64_t rest = n - c0 - blck;
        m_off[c0 / blck] = off;
        for (uint64_t c = 0; c < rest; c++) {
            /* back substitution: U_SS x = U_S,c */
            for (uint64_t k = blck; k-- > 0;) {
                double s = U[(c0 + k) * n + c0 + blck + c];
                for (uint64_t m = k + 1; m < blck; m++) s -= U[(c0 + k) * n + c0 + m] * M[off + m * rest + c];
                M[off + k * rest + c] = s / U[(c0 + k) * n + c0 + k];
            }
        }
        off += blck * rest;
    }
}

qf_status qf_gptq_quantize(const qf_qtype_traits *tt, float *W, uint64_t n_rows, uint64_t n_cols, const double *H,
                           const qf_gptq_opts *opts, uint8_t *out, qf_error *err) {
    if (!tt->quantize || !tt->dequantize || n_cols % tt->blck || tt->blck < 2)
        return qf_fail(err, QF_E_USAGE, "gptq: type %s needs independent blocks dividing the row length %llu", tt->name,
                       (unsigned long long)n_cols);
    uint64_t n = n_cols, blck = tt->blck, nb = n / blck, row_bytes = nb * tt->bytes;
    double *A = qf_malloc_n(n * n, sizeof(double)), *T = qf_malloc_n(n * n, sizeof(double));
    double *M = qf_malloc_n(n * n, sizeof(double)); /* scratch for the inverse first, then the updates */
    uint64_t *m_off = qf_calloc_n(nb, sizeof *m_off);
    uint32_t *order = qf_calloc_n(nb, sizeof *order);
    float *imp = qf_malloc_n(n, sizeof(float)), *Wp = qf_malloc_n(n_rows * n, sizeof(float));
    qf_status st = QF_OK;
    if (!A || !T || !M || !m_off || !order || !imp || !Wp) { st = qf_fail(err, QF_E_NOMEM, "gptq: out of memory"); goto done; }
    block_order(H, n, blck, opts->block_order, order);
    /* Permute H and W into processing order; damp; dead inputs (never active) get unit curvature. */
    double mean = 0;
    for (uint64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1.0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t oi = order[i / blck] * blck + i % blck;
        imp[oi] = (float)(H[oi * n + oi] > 0 ? H[oi * n + oi] : 0);
        for (uint64_t k = 0; k < n; k++) {
            uint64_t ok = order[k / blck] * blck + k % blck;
            A[i * n + k] = H[oi * n + ok];
        }
        if (A[i * n + i] <= 0) A[i * n + i] = 1;
        A[i * n + i] += opts->damp * mean;
        for (uint64_t r = 0; r < n_rows; r++) Wp[r * n + i] = W[r * n + oi];
    }
    if (!cholesky(A, n)) { st = qf_fail(err, QF_E_INPUT, "gptq: Hessian is not positive definite even after damping"); goto done; }
    inverse_from_cholesky(A, n, T, M);
    if (!upper_cholesky(T, n)) { st = qf_fail(err, QF_E_INPUT, "gptq: inverse Hessian lost definiteness; raise --gptq-damp"); goto done; }
    block_updates(T, n, blck, M, m_off);
    int threads = opts->threads > 0 ? opts->threads : 1;
    gptq_job jobs[64];
    pthread_t tids[64];
    bool threaded[64] = {false};
    int nt = (int)QF_MIN((uint64_t)QF_MIN(threads, 64), n_rows);
    for (int t = 0; t < nt; t++) {
        jobs[t] = (gptq_job){.tt = tt, .W = Wp, .n_cols = n, .row_bytes = row_bytes, .blocks = order, .n_blocks = nb,
                             .blck = blck, .U = T, .M = M, .m_off = m_off, .imp = imp, .out = out,
                             .r0 = n_rows * (uint64_t)t / (uint64_t)nt, .r1 = n_rows * (uint64_t)(t + 1) / (uint64_t)nt};
        if (t && !(threaded[t] = pthread_create(&tids[t], NULL, gptq_worker, &jobs[t]) == 0)) gptq_worker(&jobs[t]);
    }
    if (nt > 0) gptq_worker(&jobs[0]);
    for (int t = 1; t < nt; t++) if (threaded[t]) pthread_join(tids[t], NULL);
    for (int t = 0; t < nt; t++)
        if (!jobs[t].ok) { st = qf_fail(err, QF_E_INPUT, "gptq: a row held NaN or Inf"); break; }
    for (uint64_t r = 0; !st && r < n_rows; r++)
        for (uint64_t i = 0; i < n; i++) W[r * n + order[i / blck] * blck + i % blck] = Wp[r * n + i];
done:
    free(A); free(T); free(M); free(m_off); free(order); free(imp); free(Wp);
    return st;
}
