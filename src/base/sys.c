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
