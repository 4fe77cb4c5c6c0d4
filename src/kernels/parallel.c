/* kernels/parallel.c: intra-op parallelism. Tasks of a meta-batch normally run one per thread and
 * each kernel runs on its task's thread. When a step has a single task (ProtoNet's 60-way episode,
 * one adaptation at test time), the algorithm lends its idle pool to the kernels of that thread:
 * large kernels then split their work into items fixed by the shapes alone (never by the thread
 * count), so the numbers are bit-identical with or without the pool. */
#include "kernels/internal.h"

static _Thread_local ml_pool *intra_pool;

ml_pool *ml_kernels_set_pool(ml_pool *p) {
  ml_pool *prev = intra_pool;
  intra_pool = p;
  return prev;
}

int ml_kernels_workers(void) { return intra_pool ? ml_pool_size(intra_pool) : 1; }

void ml__kernels_run(int64_t n, ml_parallel_fn fn, void *ctx) {
  if (intra_pool && n > 1 && ml_pool_size(intra_pool) > 1) {
    /* the pool's workers have no pool of their own, so kernels never nest */
    ml_pool *p = intra_pool;
    intra_pool = NULL;
    ml_pool_run(p, n, fn, ctx);
    intra_pool = p;
    return;
  }
  for (int64_t i = 0; i < n; i++) fn(i, 0, ctx);
}
