/* bench/scaling: seconds per meta-iteration of MAML on Omniglot-shaped tasks (Conv4, 64 filters,
 * 28x28, 5-way 1-shot 15-query, one second-order inner step, meta-batch 32), with the meta-batch
 * split over MPI ranks (run under mpirun) and threads. The images are synthetic (seeded noise):
 * the arithmetic is that of real Omniglot episodes, and no data is needed.
 *
 * Prints one line from rank 0: ranks, threads per rank, parameters, seconds per iteration, time
 * in the gradient exchange per iteration (waiting for the slower rank included), bytes each rank
 * sends per iteration, and the exchange alone (the gradient block reduced right after a
 * barrier, so no waiting for computation).
 *   usage: scaling [--threads T] [--iters N] [--meta_batch B] [--filters F]
 *   mpirun -np 2 build/bench/scaling --threads 1    (bench/scaling.sh runs the comparison) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/dist.h"
#include "metalearn/nn.h"

typedef struct {
  int64_t way, shot, query, size;
} task_shape;

/* Keyed by (iteration, task index) like the real sampler, so any rank draws the same task. */
static ml_status synth_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  const task_shape *s = ctx;
  ml_rng r;
  ml_rng_init(&r, 1, ml_rng_key((uint64_t)it, (uint64_t)idx, 7));
  int64_t ns = s->way * s->shot, nq = s->way * s->query, px = s->size * s->size;
  memset(ep, 0, sizeof *ep);
  ep->n_way = s->way, ep->k_shot = s->shot, ep->q_query = s->query, ep->n_s = ns, ep->n_q = nq;
  ep->xs = ml_tensor_new(ar, 4, (int64_t[]){ns, 1, s->size, s->size});
  ep->xq = ml_tensor_new(ar, 4, (int64_t[]){nq, 1, s->size, s->size});
  ep->ys = ml_arena_alloc(ar, (size_t)ns * 4), ep->yq = ml_arena_alloc(ar, (size_t)nq * 4);
  ep->gys = ml_arena_alloc(ar, (size_t)ns * 4), ep->gyq = ml_arena_alloc(ar, (size_t)nq * 4);
  if (!ep->xs.data || !ep->xq.data || !ep->ys || !ep->yq || !ep->gys || !ep->gyq) return ML_ERR_NOMEM;
  for (int64_t i = 0; i < ns + nq; i++) {
    bool sup = i < ns;
    int64_t j = sup ? i : i - ns, c = sup ? j / s->shot : j / s->query;
    float *x = (sup ? ep->xs.data : ep->xq.data) + j * px;
    for (int64_t k = 0; k < px; k++) x[k] = ml_rng_uniform(&r) < 0.1f + 0.05f * (float)c ? 1.0f : 0.0f;
    (sup ? ep->ys : ep->yq)[j] = (int32_t)c;
    (sup ? ep->gys : ep->gyq)[j] = (int32_t)c;
  }
  return ML_OK;
}

static int fail(ml_dist *d, const char *what) {
  fprintf(stderr, "scaling: rank %d: %s: %s\n", ml_dist_rank(d), what, ml_last_error());
  ml_dist_abort(d, 1);
  ml_dist_finalize(d);
  return 1;
}

int main(int argc, char **argv) {
  ml_dist *d;
  if (ml_dist_init(&argc, &argv, &d)) {
    fprintf(stderr, "scaling: %s\n", ml_last_error());
    return 1;
  }
  int threads = 1;
  int64_t iters = 8, B = 32, filters = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--iters")) iters = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--meta_batch")) B = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--filters")) filters = atoll(argv[i + 1]);
  }
  task_shape shape = {5, 1, 15, 28};
  ml_conv4_config cc = ml_conv4_defaults();
  cc.in_channels = 1, cc.image_size = shape.size, cc.filters = filters, cc.n_out = shape.way;
  ml_model *m;
  if (ml_conv4_new(&cc, 1, &m)) return fail(d, "model");
  ml_algo_config c = ml_algo_defaults(ML_ALGO_MAML);
  c.meta_batch = B, c.threads = threads, c.inner_steps = 1;
  ml_algo *a;
  if (ml_algo_new(&c, m, &a)) return fail(d, "algorithm");
  if (ml_dist_attach(d, a)) return fail(d, "attach");
  /* two warm-up iterations grow the arenas; then timed iterations */
  for (int64_t it = 0; it < 2; it++)
    if (ml_algo_train_step(a, synth_task, &shape, it, NULL)) return fail(d, "train");
  if (ml_dist_barrier(d)) return fail(d, "barrier");
  ml_dist_stats s0, s1;
  ml_dist_get_stats(d, &s0);
  double t0 = ml_now();
  for (int64_t it = 2; it < 2 + iters; it++)
    if (ml_algo_train_step(a, synth_task, &shape, it, NULL)) return fail(d, "train");
  double per_iter = (ml_now() - t0) / (double)iters;
  ml_dist_get_stats(d, &s1);
  /* the exchange alone: the same block, right after a barrier */
  int64_t len = ml_algo_reduce_len(a), reps = 20;
  float *buf = calloc((size_t)len, sizeof(float));
  double xchg = 0;
  for (int64_t k = 0; k < reps && ml_dist_size(d) > 1; k++) {
    if (ml_dist_barrier(d)) return fail(d, "barrier");
    double t = ml_now();
    if (ml_dist_reduce(d, buf, len)) return fail(d, "reduce");
    xchg += ml_now() - t;
  }
  free(buf);
  if (ml_dist_rank(d) == 0)
    printf("ranks=%d threads=%d meta_batch=%lld params=%lld block_bytes=%lld sec_per_iter=%.4f "
           "comm_sec_per_iter=%.5f bytes_sent_per_iter=%.0f exchange_ms=%.3f\n",
           ml_dist_size(d), threads, (long long)B, (long long)m->params->numel, (long long)(len * 4), per_iter,
           (s1.comm_seconds - s0.comm_seconds) / (double)iters, (double)(s1.bytes_sent - s0.bytes_sent) / (double)iters,
           ml_dist_size(d) > 1 ? 1e3 * xchg / (double)reps : 0.0);
  ml_algo_free(a);
  ml_model_free(m);
  ml_dist_finalize(d);
  return 0;
}
