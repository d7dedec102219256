/*
 * Persistent worker pool. Workers are created once (moe_set_threads) and wait
 * for a generation counter to change: they spin for up to SPIN_NS after their
 * last job (the matrix products of one token follow each other within
 * microseconds, with single-threaded attention and routing in between; waking a
 * sleeping thread costs tens of microseconds), then sleep on a condition
 * variable so idle workers do not burn a core.
 *
 * Work is handed out in chunks from an atomic counter, and the caller takes
 * chunks too. On a busy machine a worker that is not scheduled in time simply
 * gets fewer (or no) chunks, instead of the caller waiting for it. When the
 * chunks are gone the caller closes the job and waits only for workers that
 * are inside it; a worker that arrives later sees the job closed and never
 * touches it. Calls are serialized.
 */
#include "internal.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#define MOE_MAX_THREADS MOE_MAX_POOL
#define WORKER_SPINS 4000
#define SPIN_NS 3000000LL

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct {
    pthread_mutex_t call_lock;   /* one job (or resize) at a time */
    pthread_mutex_t m;
    pthread_cond_t cv;
    pthread_t tids[MOE_MAX_THREADS];
    int nthreads;                /* including the caller */
    unsigned start_gen;          /* generation the current workers start from */
    _Atomic unsigned gen;
    _Atomic int quit;
    _Atomic int closed;          /* 1 between jobs: arriving workers must leave */
    _Atomic int active;          /* workers inside the current job */
    _Atomic int next;            /* next chunk to hand out */
    moe_task_fn fn;
    void *ctx;
    int nchunks;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
       .nthreads = 1, .closed = 1};

static void take_chunks(moe_task_fn fn, void *ctx, int nchunks) {
    for (;;) {
        int c = atomic_fetch_add(&P.next, 1);
        if (c >= nchunks) return;
        fn(ctx, c, nchunks);
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned seen = P.start_gen;
    for (;;) {
        unsigned g;
        int64_t until = now_ns() + SPIN_NS;
        for (int spins = 1; (g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen; spins++) {
            MOE_CPU_RELAX();
            if (spins % 256 == 0 && now_ns() > until) break;
        }
        if (g == seen) {
            pthread_mutex_lock(&P.m);
            while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&P.cv, &P.m);
            pthread_mutex_unlock(&P.m);
        }
        seen = g;
        if (atomic_load(&P.quit)) return NULL;
        atomic_fetch_add(&P.active, 1);
        if (!atomic_load(&P.closed)) take_chunks(P.fn, P.ctx, P.nchunks);
        atomic_fetch_sub(&P.active, 1);
    }
}

static void publish(void) {
    pthread_mutex_lock(&P.m);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.m);
}

static _Atomic int64_t busy_ns;

int64_t moe_pool_busy_ns(void) { return atomic_load(&busy_ns); }

void moe_pool_run(moe_task_fn fn, void *ctx, int nchunks) {
    const int64_t start = now_ns();
    pthread_mutex_lock(&P.call_lock);
    if (P.nthreads <= 1 || nchunks <= 1) {
        for (int c = 0; c < nchunks; c++) fn(ctx, c, nchunks);
        pthread_mutex_unlock(&P.call_lock);
        atomic_fetch_add(&busy_ns, now_ns() - start);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    P.nchunks = nchunks;
    atomic_store(&P.next, 0);
    atomic_store(&P.closed, 0);
    publish();
    take_chunks(fn, ctx, nchunks);
    atomic_store(&P.closed, 1);
    int spins = 0;
    while (atomic_load(&P.active) != 0) {
        MOE_CPU_RELAX();
        if (++spins > WORKER_SPINS) sched_yield();
    }
    pthread_mutex_unlock(&P.call_lock);
    atomic_fetch_add(&busy_ns, now_ns() - start);
}

int moe_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MOE_MAX_THREADS) n = MOE_MAX_THREADS;
    pthread_mutex_lock(&P.call_lock);
    if (n != P.nthreads) {
        if (P.nthreads > 1) {
            atomic_store(&P.quit, 1);
            publish();
            for (int i = 1; i < P.nthreads; i++) pthread_join(P.tids[i], NULL);
            atomic_store(&P.quit, 0);
            atomic_store(&P.active, 0);
        }
        P.start_gen = atomic_load(&P.gen);
        int created = 1;
        for (int i = 1; i < n; i++) {
            if (pthread_create(&P.tids[i], NULL, worker, (void *)(intptr_t)i) != 0) break;
            created++;
        }
        P.nthreads = created;
    }
    int result = P.nthreads;
    pthread_mutex_unlock(&P.call_lock);
    return result;
}

int moe_get_threads(void) {
    pthread_mutex_lock(&P.call_lock);
    int n = P.nthreads;
    pthread_mutex_unlock(&P.call_lock);
    return n;
}
