/*
 * pool.h — a small fixed thread pool for the runtime: run one function on every thread at once.
 *
 * qf_pool_run(p, fn, arg) calls fn(arg, i, n) for i = 0 .. n-1, one call per thread (the caller runs
 * i = 0), and returns when all have returned. Work splitting is the function's business: the runtime
 * splits rows and heads statically by i, so results never depend on scheduling.
 */
#ifndef QF_RUNTIME_POOL_H
#define QF_RUNTIME_POOL_H

#include "qf_core.h"

typedef void (*qf_pool_fn)(void *arg, int ith, int nth);
typedef struct qf_pool qf_pool;

/* n_threads >= 1 (1 = no extra threads). */
qf_status qf_pool_new(int n_threads, qf_pool **out, qf_error *err);
void qf_pool_free(qf_pool *p);
int qf_pool_size(const qf_pool *p);
void qf_pool_run(qf_pool *p, qf_pool_fn fn, void *arg);

#endif
