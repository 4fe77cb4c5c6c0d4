/* The ml_algo object and the meta-training driver shared by every algorithm: tasks run in
 * parallel on per-thread arenas, each writes its gradient into its own slot, and the slots are
 * summed pairwise in a fixed tree over task indices, so the update is the same bit for bit for
 * any thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algos/internal.h"

static const char *names[ML_ALGO_COUNT] = {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matchingnet",
                                           "finetune"};

const char *ml_algo_name(ml_algo_kind k) { return k < ML_ALGO_COUNT ? names[k] : "?"; }

ml_status ml_algo_parse(const char *name, ml_algo_kind *out) {
  for (int i = 0; i < ML_ALGO_COUNT; i++)
    if (!strcmp(name, names[i])) {
      *out = (ml_algo_kind)i;
      return ML_OK;
    }
  return ml_error(ML_ERR_ARG,
                  "unknown algorithm '%s' (maml, fomaml, metasgd, anil, reptile, protonet, matchingnet, finetune)", name);
}

ml_algo_config ml_algo_defaults(ml_algo_kind kind) {
  ml_algo_config c = {.kind = kind, .task = ML_TASK_CLASSIFY, .meta_batch = 16, .inner_steps = 1, .inner_steps_test = 3,
                      .inner_lr = 0.4f, .outer = ml_optim_defaults(ML_OPTIM_ADAM), .reptile_inner_batch = 10,
                      .matching_scale = 10.0f, .finetune_steps = 100, .finetune_lr = 0.01f};
  if (kind == ML_ALGO_REPTILE) {
    /* Nichol et al. 2018, Omniglot: inner Adam 1e-3 (beta1 0), 5 steps of batch 10, outer SGD 1. */
    c.inner_steps = 5, c.inner_steps_test = 50, c.inner_lr = 1e-3f, c.meta_batch = 5;
    c.outer = ml_optim_defaults(ML_OPTIM_SGD);
    c.outer.lr = 1.0f;
  }
  if (kind == ML_ALGO_PROTONET || kind == ML_ALGO_MATCHINGNET || kind == ML_ALGO_FINETUNE) c.meta_batch = 1;
  if (kind == ML_ALGO_METASGD) c.inner_lr = 0.1f;
  return c;
}

ml_status ml_algo_new(const ml_algo_config *cfg, ml_model *model, ml_algo **out) {
  *out = NULL;
  if (cfg->kind >= ML_ALGO_COUNT) return ml_error(ML_ERR_ARG, "algorithm %d unknown", (int)cfg->kind);
  if (cfg->meta_batch < 1 || cfg->inner_steps < 0 || cfg->inner_steps_test < 0)
    return ml_error(ML_ERR_ARG, "meta-batch must be >= 1 and inner steps >= 0");
  bool metric = cfg->kind == ML_ALGO_PROTONET || cfg->kind == ML_ALGO_MATCHINGNET;
  if (metric && cfg->task != ML_TASK_CLASSIFY)
    return ml_error(ML_ERR_ARG, "%s is a classification algorithm", ml_algo_name(cfg->kind));
  if (cfg->kind == ML_ALGO_ANIL && model->head_first >= model->params->count)
    return ml_error(ML_ERR_ARG, "anil needs a model with a head");
  if (cfg->kind == ML_ALGO_FINETUNE && model->head_first >= model->params->count)
    return ml_error(ML_ERR_ARG, "finetune needs a model with a pre-training head");
  ml_algo *a = calloc(1, sizeof *a);
  if (!a) return ml_error(ML_ERR_NOMEM, "algo: out of memory");
  a->cfg = *cfg;
  a->model = model;
  a->threads = cfg->threads > 0 ? cfg->threads : ml_num_threads();
  /* tasks run one per thread; BLAS threads on top would oversubscribe the cores */
  ml_blas_set_threads(1);
  ml_status st = ML_OK;
  int64_t n = model->params->numel;
  a->slot_len = n;
  if (cfg->kind == ML_ALGO_METASGD) {
    a->lr = ml_params_clone_layout(model->params);
    if (!a->lr) st = ml_error(ML_ERR_NOMEM, "algo: out of memory");
    else {
      for (int64_t i = 0; i < a->lr->count; i++) ml_tensor_fill(&a->lr->items[i].value, cfg->inner_lr);
      a->slot_len += a->lr->numel;
      a->opt_lr = ml_optim_new(&cfg->outer, a->lr->numel);
      if (!a->opt_lr) st = ML_ERR_NOMEM;
    }
  }
  a->opt = ml_optim_new(&cfg->outer, n);
  a->pool = ml_pool_new(a->threads);
  if (!a->pool) st = ml_error(ML_ERR_NOMEM, "algo: cannot start %d threads", a->threads);
  else a->threads = ml_pool_size(a->pool);
  a->arenas = calloc((size_t)a->threads, sizeof(ml_arena *));
  a->slot_stride = a->slot_len + 4; /* + support loss, query loss, accuracy, failed tasks */
  a->part_first = 0, a->part_count = cfg->meta_batch;
  a->slots = malloc((size_t)(cfg->meta_batch * a->slot_stride) * sizeof(float));
  a->grad = malloc((size_t)a->slot_len * sizeof(float));
  if (!a->opt || !a->arenas || !a->slots || !a->grad) st = ml_error(ML_ERR_NOMEM, "algo: out of memory");
  for (int t = 0; t < a->threads && !st; t++)
    if (!(a->arenas[t] = ml_arena_new(0, NULL))) st = ML_ERR_NOMEM; /* grows once, then holds */
  if (st) {
    ml_algo_free(a);
    return st;
  }
  *out = a;
  return ML_OK;
}

void ml_algo_free(ml_algo *a) {
  if (!a) return;
  ml_pool_free(a->pool);
  for (int t = 0; a->arenas && t < a->threads; t++) ml_arena_free(a->arenas[t]);
  free(a->arenas);
  ml_params_free(a->lr);
  ml_optim_free(a->opt);
  ml_optim_free(a->opt_lr);
  free(a->slots);
  free(a->grad);
  free(a->eval_status);
  free(a->eval_errors);
  free(a);
}

const ml_algo_config *ml_algo_get_config(const ml_algo *a) { return &a->cfg; }
ml_model *ml_algo_model(ml_algo *a) { return a->model; }
ml_params *ml_algo_extra_params(ml_algo *a) { return a->lr; }
ml_optim *ml_algo_optim(ml_algo *a) { return a->opt; }
ml_optim *ml_algo_extra_optim(ml_algo *a) { return a->opt_lr; }

void ml_algo_memory(const ml_algo *a, size_t *reserved, size_t *peak_task) {
  size_t r = 0, p = 0;
  for (int t = 0; t < a->threads; t++) {
    r += ml_arena_reserved(a->arenas[t]);
    if (ml_arena_peak(a->arenas[t]) > p) p = ml_arena_peak(a->arenas[t]);
  }
  if (reserved) *reserved = r;
  if (peak_task) *peak_task = p;
}

/* ---- helpers shared by the algorithm files ---- */
ml_node *ml__input(ml_graph *g, const ml_tensor *t) { return ml_leaf(g, *t, false); }

ml_node *ml__concat_inputs(ml_graph *g, const ml_episode *ep) {
  const ml_tensor *s = &ep->xs, *q = &ep->xq;
  int64_t shape[ML_MAX_DIMS];
  memcpy(shape, s->shape, sizeof shape);
  shape[0] = s->shape[0] + q->shape[0];
  ml_node *x = ml_new(g, s->ndim, shape);
  if (!x) return NULL;
  memcpy(x->value.data, s->data, (size_t)s->numel * sizeof(float));
  memcpy(x->value.data + s->numel, q->data, (size_t)q->numel * sizeof(float));
  return x;
}

ml_node *ml__task_loss(ml_algo *a, ml_graph *g, ml_node *out, const ml_episode *ep, bool query) {
  if (a->cfg.task == ML_TASK_REGRESS) {
    ml_node *t = ml__input(g, query ? &ep->tq : &ep->ts);
    return ml_mse(g, out, t);
  }
  if (a->cfg.task == ML_TASK_BINARY) return ml_bce_with_logits(g, out, ml__input(g, query ? &ep->tq : &ep->ts));
  return ml_cross_entropy(g, out, query ? ep->yq : ep->ys);
}

double ml__task_acc(const ml_node *logits, const ml_episode *ep, bool query) {
  if (logits && !(query ? ep->yq : ep->ys)) { /* binary: targets in ts / tq */
    const ml_tensor *t = query ? &ep->tq : &ep->ts;
    if (!t->data || t->numel != logits->value.numel) return 0;
    int64_t right = 0;
    for (int64_t i = 0; i < t->numel; i++) right += (logits->value.data[i] > 0) == (t->data[i] > 0.5f);
    return t->numel ? (double)right / (double)t->numel : 0;
  }
  if (!logits || !(query ? ep->yq : ep->ys)) return 0;
  return ml_accuracy(logits->value.data, query ? ep->yq : ep->ys, logits->value.shape[0], logits->value.shape[1]);
}

void ml__store_grads(const ml_params *p, ml_node *const *grads, int64_t first, float *slot) {
  memset(slot, 0, (size_t)p->numel * sizeof(float));
  for (int64_t i = first; i < p->count; i++)
    memcpy(slot + p->items[i].offset, grads[i]->value.data, (size_t)p->items[i].value.numel * sizeof(float));
}

bool ml__finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

static ml__task_grad_fn task_fn(ml_algo_kind k) {
  switch (k) {
    case ML_ALGO_REPTILE:
      return ml__reptile_task;
    case ML_ALGO_PROTONET:
    case ML_ALGO_MATCHINGNET:
      return ml__metric_task;
    case ML_ALGO_FINETUNE:
      return ml__finetune_task;
    default:
      return ml__maml_task;
  }
}

/* ---- meta-training step ---- */
typedef struct {
  ml_algo *a;
  ml_task_fn src;
  void *ctx;
  int64_t iteration;
  ml_status *status;
  char (*errors)[256];
} train_job;

static void train_one(int64_t i, int thread, void *vjob) {
  train_job *j = vjob;
  ml_algo *a = j->a;
  ml_arena *ar = a->arenas[thread];
  ml_arena_reset(ar);
  int64_t task = a->part_first + i; /* global task index: the task is the same on any rank */
  float *slot = a->slots + i * a->slot_stride;
  ml_episode ep;
  memset(&ep, 0, sizeof ep);
  ml_status st = j->src(j->ctx, j->iteration, task, ar, &ep);
  ml_graph *g = st ? NULL : ml_graph_new(ar);
  if (!st && !g) st = ML_ERR_NOMEM;
  ml__task_out out = {0, 0, 0};
  if (!st) st = task_fn(a->cfg.kind)(a, g, &ep, j->iteration, task, slot, &out);
  if (!st && g && ml_graph_status(g)) st = ml_graph_status(g);
  /* the statistics ride along with the gradient, summed by the same tree */
  slot[a->slot_len + 0] = (float)out.loss_s;
  slot[a->slot_len + 1] = (float)out.loss_q;
  slot[a->slot_len + 2] = (float)out.acc;
  slot[a->slot_len + 3] = st ? 1.0f : 0.0f; /* failed tasks, so every rank learns of a failure */
  j->status[i] = st;
  if (st) snprintf(j->errors[i], sizeof j->errors[i], "%s", ml_last_error());
}

/* The fixed-shape pairwise sum: sum(lo, hi) = sum(lo, mid) + sum(mid, hi), mid = lo + (hi-lo)/2,
 * left operand first, result in slot lo. Every contiguous range a rank owns when R (a power of
 * two) divides the meta-batch is a node of this tree, so ranks that sum their own range and then
 * combine partial sums pairwise in the same order get the single-process result bit for bit. */
static void tree_sum(float *slots, int64_t lo, int64_t hi, int64_t stride) {
  if (hi - lo < 2) return;
  int64_t mid = lo + (hi - lo) / 2;
  tree_sum(slots, lo, mid, stride);
  tree_sum(slots, mid, hi, stride);
  float *dst = slots + lo * stride, *src = slots + mid * stride;
  for (int64_t k = 0; k < stride; k++) dst[k] += src[k];
}

void ml_algo_set_partition(ml_algo *a, int64_t first, int64_t count, ml_reduce_fn reduce, void *ctx) {
  a->part_first = first;
  a->part_count = count;
  a->reduce = reduce;
  a->reduce_ctx = ctx;
}

int64_t ml_algo_reduce_len(const ml_algo *a) { return a->slot_stride; }

ml_status ml_algo_train_step(ml_algo *a, ml_task_fn src, void *ctx, int64_t iteration, ml_step_stats *stats) {
  int64_t B = a->cfg.meta_batch, n = a->part_count;
  enum { MAXB = 1024 };
  if (n > MAXB) return ml_error(ML_ERR_ARG, "meta-batch %lld exceeds %d", (long long)n, MAXB);
  ml_status status[MAXB];
  static _Thread_local char errors[MAXB][256];
  train_job job = {a, src, ctx, iteration, status, errors};
  /* Several tasks run one per thread. A single task (ProtoNet's one big episode) runs on this
   * thread and lends the idle pool to its kernels, and so does the one task left over when the
   * tasks do not divide among the threads (Reptile's 5 on 2 threads: 2 rounds of 2, then the
   * fifth on both threads instead of one, with the other idle). Kernels split their work by
   * shape alone, so every task's numbers are the same bits either way. */
  int64_t T = ml_pool_size(a->pool), alone = n == 1 || (T > 1 && n % T == 1) ? 1 : 0;
  if (n > alone) ml_pool_run(a->pool, n - alone, train_one, &job);
  if (alone) {
    ml_pool *prev = ml_kernels_set_pool(a->pool);
    train_one(n - 1, 0, &job);
    ml_kernels_set_pool(prev);
  }
  tree_sum(a->slots, 0, n, a->slot_stride);
  ml_status st = ML_OK;
  if (a->reduce && (st = a->reduce(a->reduce_ctx, a->slots, a->slot_stride))) return st;
  for (int64_t i = 0; i < n; i++)
    if (status[i]) return ml_error(status[i], "%s", errors[i]);
  const float *sum = a->slots;
  if (sum[a->slot_len + 3] > 0)
    return ml_error(ML_ERR_ABORTED, "meta-iteration %lld: a task failed on another rank", (long long)iteration);
  double ls = sum[a->slot_len], lq = sum[a->slot_len + 1], acc = sum[a->slot_len + 2];
  if (!isfinite(lq) || !isfinite(ls))
    return ml_error(ML_ERR_NUMERIC, "meta-iteration %lld: the loss diverged (NaN or Inf); try a smaller learning rate",
                    (long long)iteration);
  float inv = 1.0f / (float)B;
  for (int64_t k = 0; k < a->slot_len; k++) a->grad[k] = sum[k] * inv;
  if (!ml__finite(a->grad, a->slot_len))
    return ml_error(ML_ERR_NUMERIC, "meta-iteration %lld: the meta-gradient is NaN or Inf", (long long)iteration);
  double gn = ml_grad_norm(a->grad, a->slot_len);
  if (a->cfg.anneal_iterations > 0 || a->cfg.decay_every > 0) {
    /* schedules are functions of the iteration alone, so a resumed run follows the same rates */
    double lr = a->cfg.outer.lr;
    if (a->cfg.anneal_iterations > 0) {
      double frac = 1.0 - (double)iteration / (double)a->cfg.anneal_iterations;
      lr *= frac > 0 ? frac : 0;
    }
    if (a->cfg.decay_every > 0) lr *= pow((double)a->cfg.decay_gamma, (double)(iteration / a->cfg.decay_every));
    a->opt->cfg.lr = (float)lr;
    if (a->opt_lr) a->opt_lr->cfg.lr = a->opt->cfg.lr;
  }
  st = ml_optim_step(a->opt, a->model->params->data, a->grad);
  if (!st && a->lr) {
    st = ml_optim_step(a->opt_lr, a->lr->data, a->grad + a->model->params->numel);
    /* rates stay non-negative: a negative rate would turn adaptation into ascent */
    for (int64_t k = 0; k < a->lr->numel; k++)
      if (a->lr->data[k] < 0) a->lr->data[k] = 0;
  }
  if (stats) *stats = (ml_step_stats){ls / (double)B, lq / (double)B, acc / (double)B, gn};
  return st;
}

/* ---- meta-test ---- */
static ml_status predict(ml_algo *a, const ml_episode *ep, ml_arena *arena, float *out) {
  ml_graph *g = ml_graph_new(arena);
  if (!g) return ML_ERR_NOMEM;
  switch (a->cfg.kind) {
    case ML_ALGO_REPTILE:
      return ml__reptile_predict(a, g, ep, out);
    case ML_ALGO_PROTONET:
    case ML_ALGO_MATCHINGNET:
      return ml__metric_predict(a, g, ep, out);
    case ML_ALGO_FINETUNE:
      return ml__finetune_predict(a, g, ep, out);
    default:
      return ml__maml_predict(a, g, ep, out);
  }
}

/* One episode on the calling thread: the pool is idle, so the kernels may use it. */
ml_status ml_algo_predict(ml_algo *a, const ml_episode *ep, ml_arena *arena, float *out) {
  ml_pool *prev = ml_kernels_set_pool(a->pool);
  ml_status st = predict(a, ep, arena, out);
  ml_kernels_set_pool(prev);
  return st;
}

typedef struct {
  ml_algo *a;
  ml_task_fn src;
  void *ctx;
  int64_t key;
  double *scores;
  ml_status *status;
  char (*errors)[256];
  int64_t offset; /* episode index of scores[0] (evaluation in chunks) */
} eval_job;

static void eval_one(int64_t i, int thread, void *vjob) {
  eval_job *j = vjob;
  ml_arena *ar = j->a->arenas[thread];
  ml_arena_reset(ar);
  ml_episode ep;
  memset(&ep, 0, sizeof ep);
  ml_status st = j->src(j->ctx, j->key, j->offset + i, ar, &ep);
  int64_t width = j->a->cfg.task == ML_TASK_CLASSIFY ? ep.n_way : 1;
  float *pred = st ? NULL : ml_arena_alloc(ar, (size_t)(ep.n_q * width) * sizeof(float));
  if (!st && !pred) st = ML_ERR_NOMEM;
  if (!st) st = predict(j->a, &ep, ar, pred);
  if (!st) {
    if (j->a->cfg.task == ML_TASK_CLASSIFY)
      j->scores[i] = ml_accuracy(pred, ep.yq, ep.n_q, ep.n_way);
    else if (j->a->cfg.task == ML_TASK_BINARY) {
      int64_t right = 0;
      for (int64_t k = 0; k < ep.n_q; k++) right += (pred[k] > 0) == (ep.tq.data[k] > 0.5f);
      j->scores[i] = ep.n_q ? (double)right / (double)ep.n_q : 0;
    }
    else {
      double s = 0;
      for (int64_t k = 0; k < ep.n_q; k++) s += ((double)pred[k] - ep.tq.data[k]) * ((double)pred[k] - ep.tq.data[k]);
      j->scores[i] = s / (double)ep.n_q;
    }
  }
  j->status[i] = st;
  if (st) snprintf(j->errors[i], sizeof j->errors[i], "%s", ml_last_error());
}

ml_eval_options ml_eval_options_defaults(void) { return (ml_eval_options){NULL, NULL, -1}; }

ml_status ml_algo_evaluate(ml_algo *a, ml_task_fn src, void *ctx, int64_t eval_key, int64_t n, double *scores) {
  return ml_algo_evaluate_ex(a, src, ctx, eval_key, n, scores, NULL);
}

/* With a progress callback the episodes run in chunks (each still in parallel) so that the
 * callback runs on the calling thread between them; episode i's score is the same either way. */
ml_status ml_algo_evaluate_ex(ml_algo *a, ml_task_fn src, void *ctx, int64_t eval_key, int64_t n, double *scores,
                              const ml_eval_options *opt) {
  ml_eval_options o = opt ? *opt : ml_eval_options_defaults();
  if (n < 0) return ml_error(ML_ERR_ARG, "evaluate: %lld episodes", (long long)n);
  if (n + 1 > a->eval_cap) {
    ml_status *ns = realloc(a->eval_status, (size_t)(n + 1) * sizeof *ns);
    if (ns) a->eval_status = ns;
    char(*ne)[256] = ns ? realloc(a->eval_errors, (size_t)(n + 1) * 256) : NULL;
    if (!ns || !ne) return ml_error(ML_ERR_NOMEM, "evaluate: out of memory");
    a->eval_errors = ne;
    a->eval_cap = n + 1;
  }
  ml_status *status = a->eval_status;
  char(*errors)[256] = a->eval_errors;
  memset(status, 0, (size_t)(n + 1) * sizeof *status);
  int64_t saved_steps = a->cfg.inner_steps_test;
  if (o.inner_steps_test >= 0) a->cfg.inner_steps_test = o.inner_steps_test;
  eval_job job = {a, src, ctx, eval_key, scores, status, errors, 0};
  int64_t chunk = o.progress ? (n / 50 > 2 * (int64_t)a->threads ? n / 50 : 2 * (int64_t)a->threads) : n;
  ml_status st = ML_OK;
  for (int64_t lo = 0; lo < n && !st; lo += chunk) {
    int64_t m = n - lo < chunk ? n - lo : chunk;
    job.scores = scores + lo, job.status = status + lo, job.errors = errors + lo;
    job.key = eval_key;
    job.offset = lo;
    ml_pool_run(a->pool, m, eval_one, &job);
    for (int64_t i = lo; i < lo + m && !st; i++)
      if (status[i]) st = ml_error(status[i], "%s", errors[i]);
    if (!st && o.progress && !o.progress(o.progress_ctx, lo + m, n))
      st = ml_error(ML_ERR_ABORTED, "evaluation stopped after %lld of %lld episodes", (long long)(lo + m), (long long)n);
  }
  a->cfg.inner_steps_test = saved_steps;
  return st;
}
