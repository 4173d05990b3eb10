/*
 * run.h — execute a plan: stream every tensor from the source through the row converter/quantizer to
 * the GGUF writer, in plan order, with bounded memory.
 *
 * Memory: one chunk of rows at a time (<= QF_RUN_CHUNK_BYTES of F32 plus its encoded form) on top of
 * whatever the source holds for the current tensor (nothing for mmap, one tensor for archives).
 * Threads split a chunk's rows; every row is encoded independently, so the bytes do not depend on the
 * thread count.
 */
#ifndef QF_RUN_H
#define QF_RUN_H

#include "quantize/plan.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/hessian.h"
#include "quantize/gptq.h"

#define QF_RUN_CHUNK_BYTES (16u << 20)

/* Which calibration data a tensor uses is the plan entry's (calib, imx, hess: qf_plan_bind_calibration). */
typedef struct qf_run_opts {
    int threads;                 /* >= 1 */
    qf_gptq_opts gptq;
    bool clamp_overflow;         /* clamp values beyond a type's range (plan entries' `clamped` counts
                                    them) instead of refusing the tensor */
    qf_progress_fn progress;     /* may be NULL */
    void *progress_user;
} qf_run_opts;

/* Values of tensor e beyond its planned type's range (qf_qtype_traits.max_abs) and its largest finite |x|,
 * streaming the tensor from the source once: what the executor would refuse, or clamp in clamp mode. */
qf_status qf_tensor_range(qf_source *src, const qf_hparams *hp, const qf_plan *plan, const qf_plan_entry *e,
                          uint64_t *beyond, float *amax, qf_error *err);

/* The writer must have had begin_data() called with the plan's tensors declared in plan order. A value
 * beyond its type's range refuses the tensor (QF_E_INPUT naming it, the count, the largest value and the
 * types that hold it) unless opts->clamp_overflow, which clamps exactly the counts in e->clamped. */
qf_status qf_plan_execute(qf_source *src, const qf_hparams *hp, const qf_plan *plan, qf_gguf_writer *w,
                          const qf_run_opts *opts, qf_error *err);

#endif
