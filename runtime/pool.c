/* pool.c — see pool.h. Workers sleep on a condition variable between jobs: the runtime hands out a few
 * dozen jobs per batch, each milliseconds long, so wake-up latency does not matter and no core spins. */
#include "runtime/pool.h"

#include <pthread.h>

struct qf_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t generation; /* bumped once per job */
    int pending;         /* workers still running the current job */
    bool quit;
    qf_pool_fn fn;
    void *arg;
};

typedef struct worker_arg {
    qf_pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    qf_pool *p = wa.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        qf_pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, wa.ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qf_status qf_pool_new(int n_threads, qf_pool **out, qf_error *err) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    qf_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = qf_calloc_n((uint64_t)n_threads, sizeof *p->threads))) {
        free(p);
        return qf_fail(err, QF_E_NOMEM, "out of memory for a pool of %d threads", n_threads);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = 1;
    for (int i = 1; i < n_threads; i++, p->n++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            qf_pool_free(p);
            return qf_fail(err, QF_E_IO, "could not start worker thread %d of %d; try fewer --threads", i, n_threads);
        }
    }
    *out = p;
    return QF_OK;
}

void qf_pool_free(qf_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int qf_pool_size(const qf_pool *p) { return p->n; }

void qf_pool_run(qf_pool *p, qf_pool_fn fn, void *arg) {
    if (p->n == 1) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
