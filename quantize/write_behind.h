/*
 * write_behind.h — hands encoded chunks to a thread that digests and writes them, so SHA-256 and the
 * kernel's copy into the page cache overlap the encoding of the next chunk (they were half the time of
 * an I/O-bound conversion; bench/convert_throughput.sh).
 *
 * One chunk is in flight at a time: qf_wb_put waits for the previous one, so a caller alternating two
 * buffers never encodes into the one being written. The GGUF writer is used by one thread at a time;
 * the caller may use it directly again after qf_wb_wait. A write that fails is sticky: every later put
 * and wait returns its error. Without a thread (creation failed) puts write on the caller's thread.
 */
#ifndef QF_QUANTIZE_WRITE_BEHIND_H
#define QF_QUANTIZE_WRITE_BEHIND_H

#include "formats/gguf.h"

#include <pthread.h>

typedef struct qf_wb {
    qf_gguf_writer *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
    bool threaded;
    bool quit;
    const void *buf;  /* the chunk in flight, NULL when idle */
    uint64_t n;
    qf_status st;     /* the first failed write, sticky */
    qf_error err;
} qf_wb;

void qf_wb_start(qf_wb *b, qf_gguf_writer *w);
/* Queues buf[0..n) (which must stay untouched until the next put or wait returns) after the chunk in
 * flight; returns a failure of an earlier chunk. */
qf_status qf_wb_put(qf_wb *b, const void *buf, uint64_t n, qf_error *err);
/* Every chunk put is written (or one failed: its error). */
qf_status qf_wb_wait(qf_wb *b, qf_error *err);
/* Waits, ends the thread; the status of the last wait is the caller's to have read. */
void qf_wb_stop(qf_wb *b);

#endif
