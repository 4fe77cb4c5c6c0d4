/* Timers, thread count, the deterministic parallel-for, version. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "metalearn/base.h"
#include "ml_config.h"

double ml_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ml_num_threads(void) {
  const char *e = getenv("ML_THREADS");
  if (e && atoi(e) > 0) return atoi(e);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

const char *ml_version(void) { return ML_VERSION_STRING; }

/* Work items are handed out dynamically (an atomic counter), which balances uneven tasks;
 * results stay independent of the schedule because each item writes only its own slot. */
typedef struct {
  int64_t n;
  _Atomic int64_t next;
  ml_parallel_fn fn;
  void *ctx;
} pf_shared;

typedef struct {
  pf_shared *s;
  int thread;
} pf_arg;

static void *pf_worker(void *p) {
  pf_arg *a = p;
  for (;;) {
    int64_t i = atomic_fetch_add(&a->s->next, 1);
    if (i >= a->s->n) break;
    a->s->fn(i, a->thread, a->s->ctx);
  }
  return NULL;
}

void ml_parallel_for(int64_t n, int threads, ml_parallel_fn fn, void *ctx) {
  if (threads <= 0) threads = ml_num_threads();
  if (threads > n) threads = (int)n;
  if (threads <= 1) {
    for (int64_t i = 0; i < n; i++) fn(i, 0, ctx);
    return;
  }
  enum { MAXT = 256 };
  if (threads > MAXT) threads = MAXT;
  pf_shared s = {.n = n, .fn = fn, .ctx = ctx};
  atomic_init(&s.next, 0);
  pthread_t tid[MAXT];
  pf_arg args[MAXT];
  int started = 0;
  for (int t = 1; t < threads; t++) {
    args[t] = (pf_arg){&s, t};
    if (pthread_create(&tid[t], NULL, pf_worker, &args[t]) != 0) break;
    started = t;
  }
  args[0] = (pf_arg){&s, 0};
  pf_worker(&args[0]);
  for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
}

/* ---- persistent pool ----
 * Workers wait for a new generation of work, pull item indices from an atomic counter, and
 * report completion; the caller pulls items too and waits for the rest. A kernel lent the pool
 * (one task on two threads) hands it hundreds of runs of tens of microseconds each, so both sides
 * first spin briefly on the atomics before sleeping on a condition variable: a sleeping worker
 * takes longer to wake than such a run lasts. */
struct ml_pool {
  int threads;
  pthread_t *tid;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  _Atomic uint64_t generation;
  _Atomic int busy; /* workers still in the current run */
  _Atomic bool quit;
  int64_t n;
  _Atomic int64_t next;
  ml_parallel_fn fn;
  void *ctx;
};

/* about 50 microseconds of polling (a pause is 10-140 cycles depending on the core) */
#define POOL_SPINS 4000
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

typedef struct {
  ml_pool *p;
  int thread;
} pool_arg;

static void pool_drain(ml_pool *p, int thread) {
  for (;;) {
    int64_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n) break;
    p->fn(i, thread, p->ctx);
  }
}

static void *pool_worker(void *vp) {
  pool_arg *a = vp;
  ml_pool *p = a->p;
  int thread = a->thread;
  free(a);
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < POOL_SPINS && atomic_load(&p->generation) == seen && !atomic_load(&p->quit); i++) cpu_relax();
    if (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) {
      /* checked again under the lock the caller takes after publishing: no lost wake-up */
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->start, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->quit)) break;
    seen = atomic_load(&p->generation);
    pool_drain(p, thread);
    if (atomic_fetch_sub(&p->busy, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

ml_pool *ml_pool_new(int threads) {
  if (threads <= 0) threads = ml_num_threads();
  ml_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->threads = threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->start, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->next, 0);
  p->tid = calloc((size_t)threads, sizeof(pthread_t));
  if (!p->tid) {
    ml_pool_free(p);
    return NULL;
  }
  for (int t = 1; t < threads; t++) {
    pool_arg *a = malloc(sizeof *a);
    if (a) *a = (pool_arg){p, t};
    if (!a || pthread_create(&p->tid[t], NULL, pool_worker, a) != 0) {
      free(a);
      p->threads = t; /* run with the workers that did start */
      break;
    }
  }
  return p;
}

int ml_pool_size(const ml_pool *p) { return p->threads; }

void ml_pool_run(ml_pool *p, int64_t n, ml_parallel_fn fn, void *ctx) {
  if (p->threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; i++) fn(i, 0, ctx);
    return;
  }
  /* the previous run is over (busy reached 0), so no worker reads these now */
  p->n = n, p->fn = fn, p->ctx = ctx;
  atomic_store(&p->next, 0);
  atomic_store(&p->busy, p->threads - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  pool_drain(p, 0);
  for (int i = 0; i < POOL_SPINS && atomic_load(&p->busy) > 0; i++) cpu_relax();
  if (atomic_load(&p->busy) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
}

void ml_pool_free(ml_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, true);
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  for (int t = 1; p->tid && t < p->threads; t++) pthread_join(p->tid[t], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->start);
  pthread_cond_destroy(&p->done);
  free(p->tid);
  free(p);
}
