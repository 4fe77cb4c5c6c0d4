/* Reptile (Nichol et al. 2018): on each task, a few steps of Adam (beta1 = 0) on minibatches of
 * the support set from the current initialization; the meta-gradient is the difference between
 * the initialization and the adapted weights (the outer optimizer with SGD lr 1 moves the
 * initialization to the mean of the adapted weights). First order by construction. */
#include <math.h>
#include <string.h>

#include "algos/internal.h"

#define MAXP 256

/* Copies rows `idx` of x (first dim) into a new constant node. */
static ml_node *gather_rows(ml_graph *g, const ml_tensor *x, const int64_t *idx, int64_t n) {
  int64_t shape[ML_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  int64_t row = x->numel / x->shape[0];
  shape[0] = n;
  ml_node *r = ml_new(g, x->ndim, shape);
  if (!r) return NULL;
  for (int64_t i = 0; i < n; i++) memcpy(r->value.data + i * row, x->data + idx[i] * row, (size_t)row * sizeof(float));
  return r;
}

static void fast_leaves(ml_algo *a, ml_graph *g, float *fast, ml_node **w) {
  const ml_params *p = a->model->params;
  for (int64_t i = 0; i < p->count; i++) {
    ml_tensor t = p->items[i].value;
    t.data = fast + p->items[i].offset;
    w[i] = ml_leaf(g, t, true);
  }
}

/* Adapts `fast` (a copy of the parameters) with `steps` Adam steps on support minibatches. */
static ml_status adapt(ml_algo *a, ml_graph *g, const ml_episode *ep, float *fast, int64_t steps, uint64_t key,
                       double *loss0) {
  const ml_params *p = a->model->params;
  int64_t n = p->numel, P = p->count, ns = ep->n_s;
  int64_t b = a->cfg.reptile_inner_batch < ns ? a->cfg.reptile_inner_batch : ns;
  ml_arena *ar = ml_graph_arena(g);
  float *m = ml_arena_calloc(ar, (size_t)n * sizeof(float)), *v = ml_arena_calloc(ar, (size_t)n * sizeof(float));
  int64_t *order = ml_arena_alloc(ar, (size_t)ns * sizeof(int64_t)), *batch = ml_arena_alloc(ar, (size_t)b * sizeof(int64_t));
  int32_t *yb = ml_arena_alloc(ar, (size_t)b * sizeof(int32_t));
  float *tb = ml_arena_alloc(ar, (size_t)b * sizeof(float));
  if (!m || !v || !order || !batch || !yb || !tb) return ml_error(ML_ERR_NOMEM, "reptile: out of memory");
  ml_rng r;
  ml_rng_init(&r, key, 0x726570);
  for (int64_t i = 0; i < ns; i++) order[i] = i;
  ml_rng_shuffle(&r, order, ns);
  const float beta2 = 0.999f, eps = 1e-8f, lr = a->cfg.inner_lr;
  int64_t cursor = 0;
  /* each step's graph is given back after the step (the state is in fast, m, v): memory does
   * not grow with the number of steps */
  const ml_graph_mark mark = ml_graph_get_mark(g);
  for (int64_t s = 0; s < steps; s++) {
    ml_graph_rewind(g, mark);
    for (int64_t i = 0; i < b; i++) {
      if (cursor == ns) {
        ml_rng_shuffle(&r, order, ns);
        cursor = 0;
      }
      batch[i] = order[cursor++];
    }
    ml_node *w[MAXP], *gr[MAXP];
    fast_leaves(a, g, fast, w);
    ml_node *x = gather_rows(g, &ep->xs, batch, b), *out = ml_model_forward(a->model, g, w, x), *loss;
    if (a->cfg.task != ML_TASK_CLASSIFY) {
      ml_node *t = ml_new(g, 2, (int64_t[]){b, 1});
      if (!t) return ml_graph_status(g);
      for (int64_t i = 0; i < b; i++) t->value.data[i] = ep->ts.data[batch[i]];
      loss = a->cfg.task == ML_TASK_BINARY ? ml_bce_with_logits(g, out, t) : ml_mse(g, out, t);
    } else {
      for (int64_t i = 0; i < b; i++) yb[i] = ep->ys[batch[i]];
      loss = ml_cross_entropy(g, out, yb);
    }
    if (!loss) return ml_graph_status(g);
    if (s == 0 && loss0) *loss0 = loss->value.data[0];
    ml_graph_consume_next_sweep(g); /* nothing reads the forward after this sweep */
    ml_status st = ml_grad(g, &loss, 1, NULL, w, P, false, gr);
    if (st) return st;
    /* Adam with beta1 = 0, as in the Reptile paper's Omniglot runs (m is just the current
     * gradient), or plain SGD as in its sinusoid runs. */
    float bc2 = 1.0f - powf(beta2, (float)(s + 1));
    for (int64_t i = 0; i < P; i++) {
      int64_t off = p->items[i].offset, cnt = p->items[i].value.numel;
      const float *gi = gr[i]->value.data;
      if (a->cfg.reptile_inner_sgd) {
        for (int64_t k = 0; k < cnt; k++) fast[off + k] -= lr * gi[k];
        continue;
      }
      for (int64_t k = 0; k < cnt; k++) {
        float gk = gi[k];
        v[off + k] = beta2 * v[off + k] + (1 - beta2) * gk * gk;
        fast[off + k] -= lr * gk / (sqrtf(v[off + k] / bc2) + eps);
      }
    }
  }
  ml_graph_rewind(g, mark);
  return ML_OK;
}

static ml_node *query_out(ml_algo *a, ml_graph *g, const ml_episode *ep, float *fast) {
  ml_node *w[MAXP];
  bool prev = ml_graph_set_recording(g, false);
  fast_leaves(a, g, fast, w);
  ml_node *y = ml_model_forward(a->model, g, w, ml__input(g, &ep->xq));
  ml_graph_set_recording(g, prev);
  return y;
}

ml_status ml__reptile_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                           ml__task_out *out) {
  const ml_params *p = a->model->params;
  if (p->count > MAXP) return ml_error(ML_ERR_ARG, "model has too many parameter tensors");
  float *fast = ml_arena_alloc(ml_graph_arena(g), (size_t)p->numel * sizeof(float));
  if (!fast) return ml_error(ML_ERR_NOMEM, "reptile: out of memory");
  memcpy(fast, p->data, (size_t)p->numel * sizeof(float));
  ml_status st = adapt(a, g, ep, fast, a->cfg.inner_steps, ml_rng_key((uint64_t)it, (uint64_t)idx, 1), &out->loss_s);
  if (st) return st;
  for (int64_t k = 0; k < p->numel; k++) slot[k] = p->data[k] - fast[k];
  if (ep->n_q == 0) { /* support-only tasks (Reptile needs no query): report the support loss */
    out->loss_q = out->loss_s;
    out->acc = 0;
    return ML_OK;
  }
  ml_node *y = query_out(a, g, ep, fast);
  if (!y) return ml_graph_status(g);
  ml_node *lq = ml__task_loss(a, g, y, ep, true);
  out->loss_q = lq ? lq->value.data[0] : NAN;
  out->acc = a->cfg.task != ML_TASK_REGRESS ? ml__task_acc(y, ep, true) : 0;
  return ML_OK;
}

ml_status ml__reptile_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out) {
  const ml_params *p = a->model->params;
  float *fast = ml_arena_alloc(ml_graph_arena(g), (size_t)p->numel * sizeof(float));
  if (!fast) return ml_error(ML_ERR_NOMEM, "reptile: out of memory");
  memcpy(fast, p->data, (size_t)p->numel * sizeof(float));
  ml_status st = adapt(a, g, ep, fast, a->cfg.inner_steps_test, 0x7e57, NULL);
  if (st) return st;
  ml_node *y = query_out(a, g, ep, fast);
  if (!y) return ml_graph_status(g);
  memcpy(out, y->value.data, (size_t)y->value.numel * sizeof(float));
  return ML_OK;
}
