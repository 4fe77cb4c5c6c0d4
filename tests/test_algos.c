/* algos: every algorithm meta-trains on small synthetic task families and beats its untrained
 * start; results are bit-identical for any thread count; divergence is caught. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/algos.h"
#include "metalearn/eval.h"

/* ---- synthetic classification: 40 classes in R^16. Only the first 4 dimensions separate the
 * classes; the other 12 carry large noise, so an embedding must learn to ignore them. ---- */
#define DIM 16
#define POOL 40
typedef struct {
  float means[POOL][DIM];
  int64_t n_way, k_shot, q_query;
  int64_t first_class, n_classes; /* class range of this split */
  uint64_t seed;
} cls_src;

static void cls_init(cls_src *s, int64_t first, int64_t n) {
  ml_rng r;
  ml_rng_init(&r, 77, 1);
  for (int c = 0; c < POOL; c++)
    for (int d = 0; d < DIM; d++) s->means[c][d] = d < 4 ? 2.0f * ml_rng_normal(&r) : 0.0f;
  s->first_class = first, s->n_classes = n;
}

static ml_status cls_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  cls_src *s = ctx;
  ml_rng r;
  ml_rng_init(&r, s->seed, ml_rng_key((uint64_t)it, (uint64_t)idx, 5));
  int64_t perm[POOL];
  for (int64_t i = 0; i < s->n_classes; i++) perm[i] = s->first_class + i;
  ml_rng_shuffle(&r, perm, s->n_classes);
  int64_t N = s->n_way, ns = N * s->k_shot, nq = N * s->q_query;
  memset(ep, 0, sizeof *ep);
  ep->n_way = N, ep->k_shot = s->k_shot, ep->q_query = s->q_query, ep->n_s = ns, ep->n_q = nq;
  ep->xs = ml_tensor_new(ar, 2, (int64_t[]){ns, DIM});
  ep->xq = ml_tensor_new(ar, 2, (int64_t[]){nq, DIM});
  ep->ys = ml_arena_alloc(ar, (size_t)ns * 4), ep->yq = ml_arena_alloc(ar, (size_t)nq * 4);
  ep->gys = ml_arena_alloc(ar, (size_t)ns * 4), ep->gyq = ml_arena_alloc(ar, (size_t)nq * 4);
  for (int64_t i = 0; i < ns + nq; i++) {
    bool sup = i < ns;
    int64_t j = sup ? i : i - ns, c = sup ? j / s->k_shot : j / s->q_query;
    float *x = (sup ? ep->xs.data : ep->xq.data) + j * DIM;
    for (int d = 0; d < DIM; d++) x[d] = s->means[perm[c]][d] + (d < 4 ? 0.6f : 3.0f) * ml_rng_normal(&r);
    (sup ? ep->ys : ep->yq)[j] = (int32_t)c;
    (sup ? ep->gys : ep->gyq)[j] = (int32_t)perm[c];
  }
  return ML_OK;
}

/* ---- sinusoid regression, as in the MAML paper ---- */
static ml_status sine_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  (void)ctx;
  ml_rng r;
  ml_rng_init(&r, 9, ml_rng_key((uint64_t)it, (uint64_t)idx, 6));
  float amp = 0.1f + 4.9f * ml_rng_uniform(&r), ph = 3.14159265f * ml_rng_uniform(&r);
  int64_t K = 10, Q = 10;
  memset(ep, 0, sizeof *ep);
  ep->k_shot = K, ep->q_query = Q, ep->n_s = K, ep->n_q = Q, ep->n_way = 1;
  ep->xs = ml_tensor_new(ar, 2, (int64_t[]){K, 1}), ep->ts = ml_tensor_new(ar, 2, (int64_t[]){K, 1});
  ep->xq = ml_tensor_new(ar, 2, (int64_t[]){Q, 1}), ep->tq = ml_tensor_new(ar, 2, (int64_t[]){Q, 1});
  for (int64_t i = 0; i < K + Q; i++) {
    float x = -5.0f + 10.0f * ml_rng_uniform(&r);
    (i < K ? ep->xs.data : ep->xq.data)[i < K ? i : i - K] = x;
    (i < K ? ep->ts.data : ep->tq.data)[i < K ? i : i - K] = amp * sinf(x - ph);
  }
  return ML_OK;
}

static double evaluate(ml_algo *a, ml_task_fn f, void *ctx, int64_t n) {
  double *s = malloc((size_t)n * sizeof(double)), m, ci;
  CHECK_OK(ml_algo_evaluate(a, f, ctx, 1000000, n, s));
  ml_mean_ci95(s, n, &m, &ci);
  free(s);
  return m;
}

static ml_model *cls_model(ml_algo_kind k) {
  ml_mlp_config mc = {.n_layers = 3, .sizes = {DIM, 32, 16, 5}, .act = ML_ACT_RELU};
  if (k == ML_ALGO_PROTONET || k == ML_ALGO_MATCHINGNET) mc.n_layers = 2, mc.sizes[2] = 16; /* embedding only */
  if (k == ML_ALGO_FINETUNE) mc.sizes[3] = POOL;
  ml_model *m;
  CHECK_OK(ml_mlp_new(&mc, 1, &m));
  if (k == ML_ALGO_PROTONET || k == ML_ALGO_MATCHINGNET) m->head_first = m->params->count; /* no head */
  return m;
}

ML_TEST(all_algorithms_beat_their_untrained_start) {
  for (int k = 0; k < ML_ALGO_COUNT; k++) {
    cls_src train, test;
    cls_init(&train, 0, 30), cls_init(&test, 30, 10);
    train.n_way = test.n_way = 5, train.k_shot = test.k_shot = 1, train.q_query = test.q_query = 5;
    train.seed = 1, test.seed = 2;
    if (k == ML_ALGO_FINETUNE) train.n_way = 20, train.k_shot = 2; /* pre-training batches */
    if (k == ML_ALGO_REPTILE) train.k_shot = test.k_shot = 3;      /* Reptile needs shots to step on */
    ml_model *m = cls_model((ml_algo_kind)k);
    ml_algo_config c = ml_algo_defaults((ml_algo_kind)k);
    c.meta_batch = k == ML_ALGO_REPTILE ? 5 : 4, c.threads = 2, c.inner_lr = k == ML_ALGO_REPTILE ? 1e-2f : 0.3f;
    c.outer.lr = k == ML_ALGO_REPTILE ? 0.3f : 3e-3f;
    c.inner_steps_test = k == ML_ALGO_REPTILE ? 10 : 3;
    if (k == ML_ALGO_METASGD) c.inner_lr = 0.1f;
    ml_algo *a;
    CHECK_OK(ml_algo_new(&c, m, &a));
    if (!a) continue;
    double before = evaluate(a, cls_task, &test, 100);
    ml_step_stats st;
    int64_t iters = k == ML_ALGO_REPTILE ? 3000 : 1000; /* Reptile moves a fraction per task */
    for (int64_t it = 0; it < iters; it++) CHECK_OK(ml_algo_train_step(a, cls_task, &train, it, &st));
    double after = evaluate(a, cls_task, &test, 100);
    printf("  %-11s 5-way 1-shot accuracy: untrained %.3f -> trained %.3f\n", ml_algo_name((ml_algo_kind)k),
           before, after);
    CHECK_MSG(after > before + 0.15, "%s: %.3f -> %.3f", ml_algo_name((ml_algo_kind)k), before, after);
    ml_algo_free(a);
    ml_model_free(m);
  }
}

ML_TEST(maml_sinusoid_beats_untrained) {
  ml_algo_kind kinds[] = {ML_ALGO_MAML, ML_ALGO_FOMAML, ML_ALGO_METASGD, ML_ALGO_REPTILE};
  for (int i = 0; i < 4; i++) {
    ml_mlp_config mc = {.n_layers = 3, .sizes = {1, 40, 40, 1}, .act = ML_ACT_RELU};
    ml_model *m;
    CHECK_OK(ml_mlp_new(&mc, 2, &m));
    ml_algo_config c = ml_algo_defaults(kinds[i]);
    c.task = ML_TASK_REGRESS, c.meta_batch = kinds[i] == ML_ALGO_REPTILE ? 5 : 10, c.threads = 2;
    c.inner_lr = kinds[i] == ML_ALGO_REPTILE ? 0.01f : 0.01f, c.inner_steps = kinds[i] == ML_ALGO_REPTILE ? 5 : 1;
    c.inner_steps_test = kinds[i] == ML_ALGO_REPTILE ? 10 : 1;
    c.outer.lr = kinds[i] == ML_ALGO_REPTILE ? 0.1f : 1e-3f;
    ml_algo *a;
    CHECK_OK(ml_algo_new(&c, m, &a));
    double before = evaluate(a, sine_task, NULL, 100);
    for (int64_t it = 0; it < 600; it++) CHECK_OK(ml_algo_train_step(a, sine_task, NULL, it, NULL));
    double after = evaluate(a, sine_task, NULL, 100);
    printf("  %-8s sinusoid 10-shot MSE: untrained %.3f -> trained %.3f\n", ml_algo_name(kinds[i]), before, after);
    CHECK_MSG(after < 0.6 * before, "%s: MSE %.3f -> %.3f", ml_algo_name(kinds[i]), before, after);
    ml_algo_free(a);
    ml_model_free(m);
  }
}

ML_TEST(same_parameters_for_any_thread_count) {
  ml_algo_kind kinds[] = {ML_ALGO_MAML, ML_ALGO_REPTILE, ML_ALGO_PROTONET};
  for (int i = 0; i < 3; i++) {
    cls_src train;
    cls_init(&train, 0, 30);
    train.n_way = 5, train.k_shot = 2, train.q_query = 3, train.seed = 4;
    float *result[3];
    int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
      ml_model *m = cls_model(kinds[i]);
      ml_algo_config c = ml_algo_defaults(kinds[i]);
      c.meta_batch = 7, c.threads = threads[t]; /* 7 = 3x2 + 1 = 2x3 + 1: the leftover task runs with the pool lent */
      ml_algo *a;
      CHECK_OK(ml_algo_new(&c, m, &a));
      for (int64_t it = 0; it < 5; it++) CHECK_OK(ml_algo_train_step(a, cls_task, &train, it, NULL));
      result[t] = malloc((size_t)m->params->numel * sizeof(float));
      memcpy(result[t], m->params->data, (size_t)m->params->numel * sizeof(float));
      if (t) CHECK_MSG(!memcmp(result[0], result[t], (size_t)m->params->numel * sizeof(float)),
                       "%s: parameters differ between 1 and %d threads", ml_algo_name(kinds[i]), threads[t]);
      ml_algo_free(a);
      ml_model_free(m);
    }
    for (int t = 0; t < 3; t++) free(result[t]);
  }
}

/* A single task per step runs on the calling thread with the pool lent to its kernels: the
 * parameters must still be the same bits for any thread count. */
ML_TEST(single_task_steps_lend_threads_to_kernels_bit_identically) {
  cls_src train;
  cls_init(&train, 0, 30);
  train.n_way = 20, train.k_shot = 3, train.q_query = 4, train.seed = 9;
  float *result[2];
  int threads[2] = {1, 3};
  for (int t = 0; t < 2; t++) {
    ml_model *m = cls_model(ML_ALGO_PROTONET);
    ml_algo_config c = ml_algo_defaults(ML_ALGO_PROTONET);
    c.meta_batch = 1, c.threads = threads[t];
    ml_algo *a;
    CHECK_OK(ml_algo_new(&c, m, &a));
    for (int64_t it = 0; it < 3; it++) CHECK_OK(ml_algo_train_step(a, cls_task, &train, it, NULL));
    result[t] = malloc((size_t)m->params->numel * sizeof(float));
    memcpy(result[t], m->params->data, (size_t)m->params->numel * sizeof(float));
    if (t) CHECK_MSG(!memcmp(result[0], result[1], (size_t)m->params->numel * sizeof(float)),
                     "protonet meta-batch 1: parameters differ between 1 and 3 threads");
    ml_algo_free(a);
    ml_model_free(m);
  }
  free(result[0]), free(result[1]);
}

ML_TEST(divergence_is_reported_and_parameters_kept) {
  ml_mlp_config mc = {.n_layers = 3, .sizes = {1, 40, 40, 1}, .act = ML_ACT_RELU};
  ml_model *m;
  CHECK_OK(ml_mlp_new(&mc, 2, &m));
  ml_algo_config c = ml_algo_defaults(ML_ALGO_MAML);
  c.task = ML_TASK_REGRESS, c.inner_lr = 1e6f, c.inner_steps = 3, c.threads = 1;
  ml_algo *a;
  CHECK_OK(ml_algo_new(&c, m, &a));
  float *keep = malloc((size_t)m->params->numel * sizeof(float));
  memcpy(keep, m->params->data, (size_t)m->params->numel * sizeof(float));
  ml_status st = ML_OK;
  for (int64_t it = 0; it < 3 && !st; it++) st = ml_algo_train_step(a, sine_task, NULL, it, NULL);
  CHECK(st == ML_ERR_NUMERIC);
  CHECK(strstr(ml_last_error(), "NaN") != NULL);
  free(keep);
  ml_algo_free(a);
  ml_model_free(m);
}

ML_TEST(unknown_algorithm_name) {
  ml_algo_kind k;
  CHECK(ml_algo_parse("protonet", &k) == ML_OK && k == ML_ALGO_PROTONET);
  CHECK(ml_algo_parse("mamal", &k) == ML_ERR_ARG);
  CHECK(strstr(ml_last_error(), "mamal") != NULL);
}

/* Second-order MAML on a Conv4: after warm-up the arenas hold steady (no new chunks), so a
 * meta-iteration allocates nothing; and memory grows with inner steps only as the graph does. */
static ml_status img_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  (void)ctx;
  ml_rng r;
  ml_rng_init(&r, 3, ml_rng_key((uint64_t)it, (uint64_t)idx, 7));
  memset(ep, 0, sizeof *ep);
  ep->n_way = 2, ep->k_shot = 2, ep->q_query = 2, ep->n_s = 4, ep->n_q = 4;
  ep->xs = ml_tensor_new(ar, 4, (int64_t[]){4, 1, 16, 16});
  ep->xq = ml_tensor_new(ar, 4, (int64_t[]){4, 1, 16, 16});
  ep->ys = ml_arena_alloc(ar, 16), ep->yq = ml_arena_alloc(ar, 16);
  if (!ep->xs.data || !ep->xq.data || !ep->ys || !ep->yq) return ML_ERR_NOMEM;
  ml_tensor_rand_uniform(&ep->xs, &r, 0, 1);
  ml_tensor_rand_uniform(&ep->xq, &r, 0, 1);
  for (int i = 0; i < 4; i++) ep->ys[i] = ep->yq[i] = i / 2;
  return ML_OK;
}

ML_TEST(steady_state_arenas_do_not_grow) {
  ml_conv4_config cc = ml_conv4_defaults();
  cc.image_size = 16, cc.filters = 8, cc.n_out = 2;
  size_t peak_by_steps[3];
  for (int steps = 1; steps <= 3; steps++) {
    ml_model *m;
    CHECK_OK(ml_conv4_new(&cc, 1, &m));
    ml_algo_config c = ml_algo_defaults(ML_ALGO_MAML);
    c.meta_batch = 4, c.threads = 2, c.inner_steps = steps;
    ml_algo *a;
    CHECK_OK(ml_algo_new(&c, m, &a));
    size_t reserved[6];
    for (int it = 0; it < 6; it++) {
      CHECK_OK(ml_algo_train_step(a, img_task, NULL, it, NULL));
      ml_algo_memory(a, &reserved[it], &peak_by_steps[steps - 1]);
    }
    for (int it = 3; it < 6; it++) CHECK_MSG(reserved[it] == reserved[2], "arenas grew at iteration %d", it);
    ml_algo_free(a);
    ml_model_free(m);
  }
  /* second order keeps each step's graph: memory grows with steps, but not faster than linearly
   * (a step costs no more than the one before; it may cost less, as the outer sweep reuses dead
   * gradient buffers of one step for the next) */
  CHECK(peak_by_steps[1] > peak_by_steps[0] && peak_by_steps[2] > peak_by_steps[1]);
  double d1 = (double)(peak_by_steps[1] - peak_by_steps[0]), d2 = (double)(peak_by_steps[2] - peak_by_steps[1]);
  CHECK_MSG(d2 < 1.2 * d1, "per-step memory %g then %g bytes", d1, d2);
}

/* In-process "ranks" on threads, exchanging partial sums through shared buffers by recursive
 * doubling: the contract src/dist implements with MPI. Parameters must match one process
 * bit for bit for R = 2 and 4. */
#include <pthread.h>
typedef struct {
  int R;
  float *shared[4];
  pthread_barrier_t bar;
} fake_world;
typedef struct {
  fake_world *w;
  int rank;
  float *tmp;
} fake_rank;

static ml_status fake_reduce(void *ctx, float *buf, int64_t len) {
  fake_rank *r = ctx;
  fake_world *w = r->w;
  for (int step = 1; step < w->R; step *= 2) {
    memcpy(w->shared[r->rank], buf, (size_t)len * sizeof(float));
    pthread_barrier_wait(&w->bar);
    int partner = r->rank ^ step;
    const float *theirs = w->shared[partner];
    if (r->rank < partner)
      for (int64_t k = 0; k < len; k++) buf[k] = buf[k] + theirs[k];
    else
      for (int64_t k = 0; k < len; k++) buf[k] = theirs[k] + buf[k];
    pthread_barrier_wait(&w->bar);
  }
  return ML_OK;
}

typedef struct {
  fake_rank rank;
  cls_src *src;
  ml_algo_kind kind;
  float *params_out;
  int64_t numel;
  int64_t B;
} rank_job;

static void *rank_main(void *vp) {
  rank_job *j = vp;
  ml_model *m = cls_model(j->kind);
  ml_algo_config c = ml_algo_defaults(j->kind);
  c.meta_batch = j->B, c.threads = 1;
  ml_algo *a;
  if (ml_algo_new(&c, m, &a)) return NULL;
  int R = j->rank.w->R;
  int64_t per = j->B / R;
  if (R > 1) ml_algo_set_partition(a, j->rank.rank * per, per, fake_reduce, &j->rank);
  for (int64_t it = 0; it < 4; it++) ml_algo_train_step(a, cls_task, j->src, it, NULL);
  j->numel = m->params->numel;
  j->params_out = malloc((size_t)j->numel * sizeof(float));
  memcpy(j->params_out, m->params->data, (size_t)j->numel * sizeof(float));
  ml_algo_free(a);
  ml_model_free(m);
  return NULL;
}

ML_TEST(partitioned_ranks_match_one_process_bit_for_bit) {
  cls_src train;
  cls_init(&train, 0, 30);
  train.n_way = 5, train.k_shot = 2, train.q_query = 3, train.seed = 8;
  ml_algo_kind kinds[] = {ML_ALGO_MAML, ML_ALGO_METASGD};
  for (int k = 0; k < 2; k++) {
    float *ref = NULL;
    int64_t numel = 0;
    int ranks[] = {1, 2, 4};
    for (int ri = 0; ri < 3; ri++) {
      fake_world w = {.R = ranks[ri]};
      pthread_barrier_init(&w.bar, NULL, (unsigned)w.R);
      rank_job jobs[4];
      pthread_t tid[4];
      for (int r = 0; r < w.R; r++) {
        w.shared[r] = malloc(1 << 20);
        jobs[r] = (rank_job){.rank = {&w, r, NULL}, .src = &train, .kind = kinds[k], .B = 12};
        pthread_create(&tid[r], NULL, rank_main, &jobs[r]);
      }
      for (int r = 0; r < w.R; r++) pthread_join(tid[r], NULL);
      for (int r = 0; r < w.R; r++) {
        CHECK(jobs[r].params_out != NULL);
        if (!jobs[r].params_out) continue;
        if (!ref) {
          ref = jobs[r].params_out, numel = jobs[r].numel;
          continue;
        }
        CHECK_MSG(!memcmp(ref, jobs[r].params_out, (size_t)numel * sizeof(float)),
                  "%s: rank %d of %d differs from one process", ml_algo_name(kinds[k]), r, w.R);
        free(jobs[r].params_out);
      }
      for (int r = 0; r < w.R; r++) free(w.shared[r]);
      pthread_barrier_destroy(&w.bar);
    }
    free(ref);
  }
}

/* First-order inner loops (FOMAML's, Reptile's, test-time adaptation of every MAML variant and
 * the fine-tuning baseline's head fitting) give each step's graph back after the step: the arena peak does not depend on the
 * number of steps. */
static size_t peak_after(ml_algo_kind k, int64_t steps, bool eval) {
  ml_conv4_config cc = ml_conv4_defaults();
  cc.image_size = 16, cc.filters = 8, cc.n_out = 2;
  ml_model *m;
  CHECK_OK(ml_conv4_new(&cc, 1, &m));
  ml_algo_config c = ml_algo_defaults(k);
  c.meta_batch = 2, c.threads = 1;
  if (eval) c.inner_steps_test = steps;
  else c.inner_steps = steps;
  if (k == ML_ALGO_REPTILE) c.reptile_inner_batch = 2;
  if (k == ML_ALGO_FINETUNE) c.finetune_steps = steps;
  ml_algo *a;
  CHECK_OK(ml_algo_new(&c, m, &a));
  size_t peak = 0;
  if (eval) {
    double s[2];
    CHECK_OK(ml_algo_evaluate(a, img_task, NULL, 5, 2, s));
  } else {
    CHECK_OK(ml_algo_train_step(a, img_task, NULL, 0, NULL));
  }
  ml_algo_memory(a, NULL, &peak);
  ml_algo_free(a);
  ml_model_free(m);
  return peak;
}

ML_TEST(first_order_inner_loops_hold_one_step_of_memory) {
  struct {
    ml_algo_kind k;
    bool eval;
  } cases[] = {{ML_ALGO_FOMAML, false}, {ML_ALGO_REPTILE, false}, {ML_ALGO_MAML, true}, {ML_ALGO_METASGD, true},
               {ML_ALGO_REPTILE, true}, {ML_ALGO_FINETUNE, true}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t p1 = peak_after(cases[i].k, 2, cases[i].eval), p8 = peak_after(cases[i].k, 8, cases[i].eval);
    CHECK_MSG(p1 > 0 && p8 == p1, "%s (%s): arena peak %zu bytes with 2 steps, %zu with 8",
              ml_algo_name(cases[i].k), cases[i].eval ? "meta-test" : "meta-train", p1, p8);
  }
}

/* FOMAML's meta-gradient, taken at the adapted weights after the steps' graphs were given back,
 * equals the one of the recorded loop: gradient of the query loss through w_{k+1} = w_k - lr *
 * g_k with the g_k constants (built here with ml_grad on one graph). One task, outer SGD with
 * rate 1, so the step moves the parameters by exactly minus the meta-gradient. */
ML_TEST(first_order_maml_gradient_matches_the_recorded_loop) {
  cls_src src;
  cls_init(&src, 0, 30);
  src.n_way = 5, src.k_shot = 2, src.q_query = 3, src.seed = 11;
  ml_model *m = cls_model(ML_ALGO_FOMAML);
  const int64_t n = m->params->numel, P = m->params->count, steps = 3;
  const float lr = 0.3f;
  /* calloc: the parameter block may pad between tensors, and the padding has no gradient */
  float *theta = malloc((size_t)n * sizeof(float)), *ref = calloc((size_t)n, sizeof(float));
  memcpy(theta, m->params->data, (size_t)n * sizeof(float));
  /* reference */
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_episode ep;
  CHECK_OK(cls_task(&src, 0, 0, ar, &ep));
  ml_graph *g = ml_graph_new(ar);
  ml_node *w0[16], *w[16], *gr[16];
  CHECK_OK(ml_model_leaves(m, g, true, w0));
  memcpy(w, w0, sizeof w);
  for (int64_t k = 0; k < steps; k++) {
    ml_node *ls = ml_cross_entropy(g, ml_model_forward(m, g, w, ml_leaf(g, ep.xs, false)), ep.ys);
    CHECK_OK(ml_grad(g, &ls, 1, NULL, w, P, false, gr));
    for (int64_t i = 0; i < P; i++) w[i] = ml_sub(g, w[i], ml_scale(g, gr[i], lr));
  }
  ml_node *lq = ml_cross_entropy(g, ml_model_forward(m, g, w, ml_leaf(g, ep.xq, false)), ep.yq);
  CHECK_OK(ml_grad(g, &lq, 1, NULL, w0, P, false, gr));
  CHECK_OK(ml_graph_status(g));
  for (int64_t i = 0; i < P; i++)
    memcpy(ref + m->params->items[i].offset, gr[i]->value.data, (size_t)gr[i]->value.numel * sizeof(float));
  /* the algorithm */
  ml_algo_config c = ml_algo_defaults(ML_ALGO_FOMAML);
  c.meta_batch = 1, c.threads = 1, c.inner_steps = steps, c.inner_lr = lr;
  c.outer = ml_optim_defaults(ML_OPTIM_SGD);
  c.outer.lr = 1.0f;
  ml_algo *a;
  CHECK_OK(ml_algo_new(&c, m, &a));
  CHECK_OK(ml_algo_train_step(a, cls_task, &src, 0, NULL));
  double worst = 0, scale = 0;
  for (int64_t k = 0; k < n; k++) {
    double got = (double)theta[k] - (double)m->params->data[k];
    worst = fmax(worst, fabs(got - (double)ref[k]));
    scale = fmax(scale, fabs((double)ref[k]));
  }
  /* the two differ only by float rounding of the fast weights (w - lr*g applied in place
   * instead of as graph nodes) */
  CHECK_MSG(scale > 1e-3 && worst <= 1e-5 * scale, "meta-gradient off by %g (largest entry %g)", worst, scale);
  ml_algo_free(a);
  ml_model_free(m);
  ml_arena_free(ar);
  free(theta);
  free(ref);
}
