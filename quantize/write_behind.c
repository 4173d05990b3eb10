/* Write-behind for the plan executor (write_behind.h). */
#include "quantize/write_behind.h"

static void *wb_main(void *arg) {
    qf_wb *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->buf && !b->quit) pthread_cond_wait(&b->cv, &b->mu);
        if (!b->buf) break; /* quit with nothing in flight */
        const void *buf = b->buf;
        uint64_t n = b->n;
        bool failed = b->st != QF_OK;
        pthread_mutex_unlock(&b->mu);
        qf_error err = {0};
        qf_status st = failed ? QF_OK : qf_gguf_write_tensor_data(b->w, buf, n, &err);
        pthread_mutex_lock(&b->mu);
        if (st != QF_OK) {
            b->st = st;
            b->err = err;
        }
        b->buf = NULL;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

void qf_wb_start(qf_wb *b, qf_gguf_writer *w) {
    *b = (qf_wb){.w = w};
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    /* without the thread only the overlap is lost: puts write in place */
    b->threaded = pthread_create(&b->tid, NULL, wb_main, b) == 0;
}

/* The first failed write's status (its error into *err), or QF_OK. */
static qf_status sticky(const qf_wb *b, qf_error *err) {
    if (b->st != QF_OK && err) *err = b->err;
    return b->st;
}

static qf_status idle_locked(qf_wb *b, qf_error *err) {
    while (b->buf) pthread_cond_wait(&b->cv, &b->mu);
    return sticky(b, err);
}

qf_status qf_wb_put(qf_wb *b, const void *buf, uint64_t n, qf_error *err) {
    if (!b->threaded) {
        if (b->st == QF_OK) b->st = qf_gguf_write_tensor_data(b->w, buf, n, &b->err);
        return sticky(b, err);
    }
    pthread_mutex_lock(&b->mu);
    qf_status st = idle_locked(b, err);
    if (st == QF_OK) {
        b->buf = buf;
        b->n = n;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return st;
}

qf_status qf_wb_wait(qf_wb *b, qf_error *err) {
    if (!b->threaded) return sticky(b, err);
    pthread_mutex_lock(&b->mu);
    qf_status st = idle_locked(b, err);
    pthread_mutex_unlock(&b->mu);
    return st;
}

void qf_wb_stop(qf_wb *b) {
    if (b->threaded) {
        pthread_mutex_lock(&b->mu);
        idle_locked(b, NULL);
        b->quit = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->tid, NULL);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}
