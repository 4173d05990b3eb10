/*
 * sensitivity.h — what quantizing each tensor of a model to each candidate type costs: the table that
 * `qforge measure` writes and the solver (quantize/solve.h) reads.
 *
 * The cost model (verify/sensitivity.c measures it): quantizing tensor t alone to type T moves the
 * model's output distribution by
 *     kld(t, T) ~= gain_t * err_t(T),
 * err_t(T) the importance-weighted squared error of its rows (per calibration token: the sum over its
 * matrices m, rows r and columns j of sum2[m][j] / N * (w - q)^2, sum2 the imatrix's sums of squares of
 * the inputs and N the tokens of a dense layer; 1 per column where the imatrix has no entry), and gain_t
 * the measured mean KLD of the probe type divided by err_t(probe). The KLD of a mix is predicted as the
 * sum over its tensors (first order: small independent perturbations add).
 *
 * Stored as JSON, schema "qforge.sensitivity/1":
 *   {"schema", "model": label, "params": total weights measured, "probe": type, "ctx", "chunks",
 *    "tokens": scored tokens, "overhead": bytes of a file that are not tensor data (metadata, padding),
 *    "rank_proxy": Spearman of err_t(probe) against kld(t, probe) over tensors,
 *    "rank_check": for each type besides the probe, Spearman of predicted against measured kld over
 *                  the tensors, averaged over the types (measure --check), or null,
 *    "tensors": [{"name", "params", "weighted": the proxy used imatrix sums, "gain",
 *                 "types": [{"type", "bytes", "err", "kld": measured or null}, ...]}, ...]}
 * Tensors in the model's order, types by ascending bytes.
 */
#ifndef QF_FORMATS_SENSITIVITY_H
#define QF_FORMATS_SENSITIVITY_H

#include "qf_core.h"

#define QF_SENS_MAX_TYPES 16

typedef struct qf_sens_cand {
    uint32_t type;     /* the tensor's stored type in this candidate (after the row-fit fallback) */
    uint64_t bytes;
    double err;        /* err_t(type) */
    double kld;        /* measured mean KLD with this tensor alone at this type; NAN where not measured */
} qf_sens_cand;

typedef struct qf_sens_tensor {
    char name[96];     /* GGUF tensor name */
    uint64_t params;
    bool weighted;     /* err uses the imatrix's sums (else plain squared error) */
    double gain;       /* kld per unit of err at the probe type (0 where the probe is exact) */
    size_t n;
    qf_sens_cand c[QF_SENS_MAX_TYPES];
} qf_sens_tensor;

typedef struct qf_sens {
    char model[512];
    uint64_t params;
    uint32_t probe;    /* type id */
    uint32_t ctx, chunks;
    uint64_t tokens;
    uint64_t overhead;
    double rank_proxy, rank_check; /* NAN: not measured */
    qf_sens_tensor *t;
    size_t n;
} qf_sens;

/* kld(t, T) predicted by the cost model. */
static inline double qf_sens_predict(const qf_sens_tensor *t, const qf_sens_cand *c) { return t->gain * c->err; }

const qf_sens_tensor *qf_sens_find(const qf_sens *s, const char *name);
/* The candidate of t stored as `type`, or NULL. */
const qf_sens_cand *qf_sens_cand_of(const qf_sens_tensor *t, uint32_t type);

qf_status qf_sens_save(const char *path, const qf_sens *s, qf_error *err); /* atomically (formats/outfile.h) */
/* Everything is checked: schema, known writable types, finite non-negative numbers, names unique;
 * messages name the file and the tensor. */
qf_status qf_sens_load(const char *path, qf_sens *s, qf_error *err);
void qf_sens_free(qf_sens *s);

#endif
