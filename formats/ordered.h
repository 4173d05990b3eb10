/*
 * ordered.h — run numbered jobs on worker threads and consume their results in order on the caller's
 * thread: the shape of every streaming transform whose output must be sequential (compress chunks and
 * append them; decompress frames and append them).
 *
 * Job j works in slot j % slots; it is started only after job j - slots was consumed, so `slots`
 * buffers bound the memory whatever the thread count. Workers are numbered 0..threads-1 for per-thread
 * state (codec contexts). The first failing job or consume stops the run; its status is returned.
 */
#ifndef QF_ORDERED_H
#define QF_ORDERED_H

#include "qf_core.h"

typedef qf_status (*qf_ordered_work_fn)(void *user, uint64_t job, unsigned slot, unsigned worker, qf_error *err);
typedef qf_status (*qf_ordered_consume_fn)(void *user, uint64_t job, unsigned slot, qf_error *err);

/* threads >= 1, slots >= threads. With one thread (or when no thread can be created) the jobs run
 * inline, work then consume, in slot 0 on worker 0. */
qf_status qf_ordered_run(uint64_t n_jobs, unsigned threads, unsigned slots, qf_ordered_work_fn work,
                         qf_ordered_consume_fn consume, void *user, qf_error *err);

#endif
