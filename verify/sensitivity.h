/*
 * sensitivity.h — measuring what quantizing each tensor costs (the cost model: formats/sensitivity.h).
 *
 * Inputs: the unquantized model, and the same model quantized uniformly to each candidate type (GGUF
 * files made by qforge quantize --type T with the imatrix the final mix will use, so each candidate
 * tensor is byte for byte what the mix would hold). For every tensor t (a stacked expert tensor is one):
 *   - err_t(T) for every candidate, from the rows of both models and the imatrix's input statistics;
 *   - the true effect of the probe type: t alone swapped to its probe rows, the model run over the
 *     text, mean KL(base || swapped) over the scored tokens (perplexity's chunking: the second half of
 *     each chunk of ctx tokens), giving gain_t;
 *   - with `check`, the same true effect for every other candidate, and the rank correlation of the
 *     predictions against it (how well the cost model ranks).
 * Runs 1 + n_tensors (x n_types with check) forward passes over the text, each on the caller's
 * threads; every sum is taken in a fixed order, so the table is the same for any thread count.
 */
#ifndef QF_VERIFY_SENSITIVITY_H
#define QF_VERIFY_SENSITIVITY_H

#include "formats/imatrix.h"
#include "formats/sensitivity.h"

typedef struct qf_measure_opts {
    const char *base;                /* the unquantized model (any path the runtime opens) */
    const char *const *candidates;   /* uniform-type GGUF files of the same model */
    size_t n_candidates;             /* 1 .. QF_SENS_MAX_TYPES */
    size_t probe;                    /* index of the candidate whose measured KLD sets the gains */
    uint32_t probe_type;             /* the type it was made with (for the table) */
    const qf_imatrix *imatrix;       /* input statistics for err, or NULL (plain squared error) */
    const char *text_path;
    uint32_t ctx, chunks;            /* 0 = 512, and every chunk of the text */
    int threads;                     /* 0 = all online CPUs */
    bool no_escape;
    bool check;                      /* also measure every candidate's true effect */
    void (*progress)(void *user, const char *tensor, size_t done, size_t total);
    void *user;
} qf_measure_opts;

/* Fill *out (free with qf_sens_free). The candidates must hold the base's tensors with the same shapes
 * (QF_E_INPUT naming the file and tensor otherwise). */
qf_status qf_measure(const qf_measure_opts *o, qf_sens *out, qf_error *err);

/* Spearman's rank correlation of x and y (average ranks for ties); NAN for n < 3 or a constant side. */
double qf_rank_correlation(const double *x, const double *y, size_t n);

#endif
