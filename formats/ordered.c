/*
 * ordered.c — worker threads with in-order consumption (ordered.h). One mutex and one condition
 * variable guard everything: jobs are megabytes of work each, so the lock is never the bottleneck.
 */
#include "ordered.h"

#include <pthread.h>

#define ORDERED_MAX_THREADS 1024

typedef struct slot_state {
    bool done;
    qf_status st;
    qf_error err;
} slot_state;

typedef struct run {
    uint64_t n_jobs, next_claim, next_consume;
    unsigned slots;
    bool stop;
    slot_state *slot;
    qf_ordered_work_fn work;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} run;

typedef struct worker_arg {
    run *r;
    unsigned id;
} worker_arg;

/* Claims the next job whose slot is free; false when there is nothing more to do. Called locked. */
static bool claim(run *r, uint64_t *job) {
    while (!r->stop && r->next_claim < r->n_jobs && r->next_claim >= r->next_consume + r->slots)
        pthread_cond_wait(&r->cv, &r->mu);
    if (r->stop || r->next_claim >= r->n_jobs) return false;
    *job = r->next_claim++;
    return true;
}

static void *worker_main(void *arg) {
    worker_arg *a = arg;
    run *r = a->r;
    uint64_t job;
    pthread_mutex_lock(&r->mu);
    while (claim(r, &job)) {
        pthread_mutex_unlock(&r->mu);
        unsigned s = (unsigned)(job % r->slots);
        qf_error e;
        qf_error_clear(&e);
        qf_status st = r->work(r->user, job, s, a->id, &e);
        pthread_mutex_lock(&r->mu);
        r->slot[s].st = st;
        r->slot[s].err = e;
        r->slot[s].done = true;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Consumes jobs in order as workers finish them; returns the first failure. */
static qf_status consume_all(run *r, qf_ordered_consume_fn consume, qf_error *err) {
    qf_status st = QF_OK;
    for (uint64_t job = 0; job < r->n_jobs && st == QF_OK; job++) {
        unsigned s = (unsigned)(job % r->slots);
        pthread_mutex_lock(&r->mu);
        while (!r->slot[s].done) pthread_cond_wait(&r->cv, &r->mu);
        st = r->slot[s].st;
        if (st != QF_OK && err) *err = r->slot[s].err;
        pthread_mutex_unlock(&r->mu);
        if (st == QF_OK) st = consume(r->user, job, s, err);
        pthread_mutex_lock(&r->mu);
        r->slot[s].done = false;
        r->next_consume++;
        if (st != QF_OK) r->stop = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return st;
}

static qf_status run_inline(uint64_t n_jobs, qf_ordered_work_fn work, qf_ordered_consume_fn consume, void *user,
                            qf_error *err) {
    qf_status st = QF_OK;
    for (uint64_t j = 0; j < n_jobs && st == QF_OK; j++) {
        st = work(user, j, 0, 0, err);
        if (st == QF_OK) st = consume(user, j, 0, err);
    }
    return st;
}

qf_status qf_ordered_run(uint64_t n_jobs, unsigned threads, unsigned slots, qf_ordered_work_fn work,
                         qf_ordered_consume_fn consume, void *user, qf_error *err) {
    threads = QF_MIN(QF_MAX(threads, 1u), (unsigned)ORDERED_MAX_THREADS);
    if (threads == 1 || n_jobs <= 1) return run_inline(n_jobs, work, consume, user, err);
    slots = QF_MAX(slots, threads);
    run r = {.n_jobs = n_jobs, .slots = slots, .work = work, .user = user};
    r.slot = calloc(slots, sizeof *r.slot);
    worker_arg *args = calloc(threads, sizeof *args);
    pthread_t *tid = calloc(threads, sizeof *tid);
    if (!r.slot || !args || !tid) {
        free(r.slot);
        free(args);
        free(tid);
        return qf_fail(err, QF_E_NOMEM, "out of memory for %u worker threads", threads);
    }
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    unsigned started = 0;
    for (unsigned i = 0; i < threads; i++) {
        args[i] = (worker_arg){.r = &r, .id = i};
        if (pthread_create(&tid[started], NULL, worker_main, &args[i]) != 0) break;
        started++;
    }
    qf_status st = started ? consume_all(&r, consume, err) : run_inline(n_jobs, work, consume, user, err);
    pthread_mutex_lock(&r.mu);
    r.stop = true; /* wakes workers waiting for a slot after a failure */
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    for (unsigned i = 0; i < started; i++) pthread_join(tid[i], NULL);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    free(r.slot);
    free(args);
    free(tid);
    return st;
}
