/* Gradient-based meta-learning in one file: MAML (second order: the inner gradients are built
 * with create_graph, so the meta-gradient differentiates through them), first-order MAML (inner
 * gradients are constants), Meta-SGD (a learned rate per parameter, meta-trained with the
 * weights) and ANIL (only the head adapts; the body's features are computed once per set). */
#include <string.h>

#include "algos/internal.h"

#define MAXP 256

typedef struct {
  ml_node *w[MAXP];    /* current (fast) weights */
  ml_node *lr[MAXP];   /* Meta-SGD rates */
  ml_node *fs, *fq;    /* ANIL: body features of support and query */
  int64_t first;       /* first adapted parameter */
} adapt_state;

static bool head_only(const ml_algo *a) { return a->cfg.kind == ML_ALGO_ANIL || a->cfg.adapt_head_only; }

static ml_node *forward(ml_algo *a, ml_graph *g, adapt_state *s, const ml_episode *ep, bool query) {
  if (head_only(a)) return ml_model_head(a->model, g, s->w, query ? s->fq : s->fs);
  return ml_model_forward(a->model, g, s->w, ml__input(g, query ? &ep->xq : &ep->xs));
}

/* `steps` inner SGD steps on the support. create_graph keeps them differentiable. Returns the
 * support loss before the first step through *loss0. */
static ml_status inner_loop(ml_algo *a, ml_graph *g, adapt_state *s, const ml_episode *ep, int64_t steps,
                            bool create_graph, double *loss0, ml_node **msl_loss) {
  int64_t P = a->model->params->count;
  ml_node *gr[MAXP];
  for (int64_t k = 0; k < steps; k++) {
    ml_node *ls = ml__task_loss(a, g, forward(a, g, s, ep, false), ep, false);
    if (!ls) return ml_graph_status(g);
    if (k == 0 && loss0) *loss0 = ls->value.data[0];
    ml_status st = ml_grad(g, &ls, 1, NULL, s->w + s->first, P - s->first, create_graph, gr + s->first);
    if (st) return st;
    for (int64_t i = s->first; i < P; i++) {
      ml_node *step = a->lr ? ml_mul(g, s->lr[i], gr[i]) : ml_scale(g, gr[i], a->cfg.inner_lr);
      s->w[i] = ml_sub(g, s->w[i], step);
    }
    if (msl_loss && k + 1 < steps) {
      /* MAML++ multi-step loss: query loss after each step, equal weights */
      ml_node *lq = ml__task_loss(a, g, forward(a, g, s, ep, true), ep, true);
      *msl_loss = *msl_loss ? ml_add(g, *msl_loss, lq) : lq;
    }
  }
  return ml_graph_status(g);
}

/* `steps` first-order inner steps whose graphs are given back after each step: the fast
 * weights live in one buffer allocated before the steps, and the step's gradient is applied to
 * it directly, so memory does not grow with the number of steps (test-time adaptation with many
 * steps, first-order MAML). On return s->w[first..] are leaves over that buffer: a gradient
 * taken with respect to them is the first-order meta-gradient (the inner step's Jacobian is the
 * identity). */
static ml_status inner_loop_detached(ml_algo *a, ml_graph *g, adapt_state *s, const ml_episode *ep, int64_t steps,
                                     double *loss0) {
  const ml_params *p = a->model->params;
  int64_t P = p->count;
  float *fast = ml_arena_alloc(ml_graph_arena(g), (size_t)p->numel * sizeof(float));
  if (!fast) return ml_error(ML_ERR_NOMEM, "maml: out of memory for the fast weights");
  for (int64_t i = s->first; i < P; i++)
    memcpy(fast + p->items[i].offset, s->w[i]->value.data, (size_t)p->items[i].value.numel * sizeof(float));
  adapt_state t = *s;
  ml_node *gr[MAXP];
  const ml_graph_mark mark = ml_graph_get_mark(g);
  for (int64_t k = 0; k < steps; k++) {
    ml_graph_rewind(g, mark);
    for (int64_t i = s->first; i < P; i++) {
      ml_tensor v = p->items[i].value;
      v.data = fast + p->items[i].offset;
      t.w[i] = ml_leaf(g, v, true);
    }
    ml_node *ls = ml__task_loss(a, g, forward(a, g, &t, ep, false), ep, false);
    if (!ls) return ml_graph_status(g);
    if (k == 0 && loss0) *loss0 = ls->value.data[0];
    ml_status st = ml_grad(g, &ls, 1, NULL, t.w + s->first, P - s->first, false, gr + s->first);
    if (st) return st;
    for (int64_t i = s->first; i < P; i++) {
      float *w = fast + p->items[i].offset;
      const float *gi = gr[i]->value.data, *lr = a->lr ? s->lr[i]->value.data : NULL;
      const float r = a->cfg.inner_lr;
      int64_t n = p->items[i].value.numel;
      if (lr)
        for (int64_t j = 0; j < n; j++) w[j] -= lr[j] * gi[j];
      else
        for (int64_t j = 0; j < n; j++) w[j] -= gi[j] * r;
    }
  }
  ml_graph_rewind(g, mark);
  for (int64_t i = s->first; i < P; i++) {
    ml_tensor v = p->items[i].value;
    v.data = fast + p->items[i].offset;
    s->w[i] = ml_leaf(g, v, true);
  }
  return ml_graph_status(g);
}

static ml_status setup(ml_algo *a, ml_graph *g, adapt_state *s, const ml_episode *ep, bool requires_grad) {
  int64_t P = a->model->params->count;
  if (P > MAXP) return ml_error(ML_ERR_ARG, "model has %lld parameter tensors (max %d)", (long long)P, MAXP);
  ml_status st = ml_model_leaves(a->model, g, requires_grad, s->w);
  if (st) return st;
  if (a->lr)
    for (int64_t i = 0; i < P; i++) s->lr[i] = ml_leaf(g, a->lr->items[i].value, requires_grad);
  s->first = 0;
  if (head_only(a)) {
    s->first = a->model->head_first;
    s->fs = ml_model_features(a->model, g, s->w, ml__input(g, &ep->xs));
    s->fq = ml_model_features(a->model, g, s->w, ml__input(g, &ep->xq));
  }
  return ml_graph_status(g);
}

ml_status ml__maml_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                        ml__task_out *out) {
  (void)it, (void)idx;
  adapt_state s;
  ml_status st = setup(a, g, &s, ep, true);
  if (st) return st;
  ml_node *w0[MAXP];
  int64_t P = a->model->params->count;
  memcpy(w0, s.w, (size_t)P * sizeof(ml_node *));
  bool second_order = a->cfg.kind != ML_ALGO_FOMAML;
  /* first order without MAML++'s per-step losses: the steps leave nothing in the graph, and the
   * meta-gradient is taken at the adapted weights */
  bool detached = !second_order && !a->cfg.multi_step_loss && !a->lr;
  ml_node *msl = NULL;
  st = detached ? inner_loop_detached(a, g, &s, ep, a->cfg.inner_steps, &out->loss_s)
                : inner_loop(a, g, &s, ep, a->cfg.inner_steps, second_order, &out->loss_s,
                             a->cfg.multi_step_loss ? &msl : NULL);
  if (st) return st;
  if (detached) memcpy(w0, s.w, (size_t)P * sizeof(ml_node *));
  ml_node *logits = forward(a, g, &s, ep, true);
  ml_node *lq = ml__task_loss(a, g, logits, ep, true);
  if (!lq) return ml_graph_status(g);
  out->loss_q = lq->value.data[0];
  out->acc = a->cfg.task != ML_TASK_REGRESS ? ml__task_acc(logits, ep, true) : 0;
  if (a->cfg.inner_steps == 0) out->loss_s = out->loss_q;
  ml_node *obj = msl ? ml_scale(g, ml_add(g, msl, lq), 1.0f / (float)a->cfg.inner_steps) : lq;
  ml_node *inputs[2 * MAXP], *grads[2 * MAXP];
  memcpy(inputs, w0, (size_t)P * sizeof(ml_node *));
  int64_t n_in = P;
  if (a->lr) {
    memcpy(inputs + P, s.lr, (size_t)P * sizeof(ml_node *));
    n_in += P;
  }
  ml_graph_consume_next_sweep(g); /* nothing reads the forward after this sweep */
  st = ml_grad(g, &obj, 1, NULL, inputs, n_in, false, grads);
  if (st) return st;
  ml__store_grads(a->model->params, grads, 0, slot);
  if (a->lr) ml__store_grads(a->lr, grads + P, 0, slot + a->model->params->numel);
  return ML_OK;
}

ml_status ml__maml_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out) {
  adapt_state s;
  ml_status st = setup(a, g, &s, ep, true);
  if (!st) st = inner_loop_detached(a, g, &s, ep, a->cfg.inner_steps_test, NULL);
  if (st) return st;
  ml_node *y = forward(a, g, &s, ep, true);
  if (!y) return ml_graph_status(g);
  memcpy(out, y->value.data, (size_t)y->value.numel * sizeof(float));
  return ML_OK;
}
