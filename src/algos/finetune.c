/* The fine-tuning baseline (Chen et al. 2019, "A Closer Look at Few-shot Classification"):
 * pre-train the network with ordinary cross-entropy over all training classes (episodes serve
 * as minibatches, with their global class labels), then at meta-test freeze the body and fit a
 * new linear head on the support set's features. */
#include <math.h>
#include <string.h>

#include "algos/internal.h"

#define MAXP 256

ml_status ml__finetune_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                            ml__task_out *out) {
  (void)it, (void)idx;
  if (!ep->gys || !ep->gyq)
    return ml_error(ML_ERR_ARG, "finetune: the task source gives no global class labels to pre-train on");
  int64_t P = a->model->params->count, n = ep->n_s + ep->n_q;
  int64_t classes = a->model->params->items[a->model->head_first].value.shape[0];
  int32_t *labels = ml_arena_alloc(ml_graph_arena(g), (size_t)n * sizeof(int32_t));
  if (!labels) return ML_ERR_NOMEM;
  memcpy(labels, ep->gys, (size_t)ep->n_s * sizeof(int32_t));
  memcpy(labels + ep->n_s, ep->gyq, (size_t)ep->n_q * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= classes)
      return ml_error(ML_ERR_ARG, "finetune: class %d outside the pre-training head's %lld classes", labels[i],
                      (long long)classes);
  ml_node *w[MAXP], *gr[MAXP];
  ml_status st = ml_model_leaves(a->model, g, true, w);
  if (st) return st;
  ml_node *logits = ml_model_forward(a->model, g, w, ml__concat_inputs(g, ep));
  ml_node *loss = ml_cross_entropy(g, logits, labels);
  if (!loss) return ml_graph_status(g);
  out->loss_s = out->loss_q = loss->value.data[0];
  out->acc = ml_accuracy(logits->value.data, labels, n, classes);
  ml_graph_consume_next_sweep(g); /* nothing reads the forward after this sweep */
  st = ml_grad(g, &loss, 1, NULL, w, P, false, gr);
  if (st) return st;
  ml__store_grads(a->model->params, gr, 0, slot);
  return ML_OK;
}

ml_status ml__finetune_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out) {
  ml_node *w[MAXP];
  bool prev = ml_graph_set_recording(g, false);
  ml_status st = ml_model_leaves(a->model, g, false, w);
  ml_node *fs = st ? NULL : ml_model_features(a->model, g, w, ml__input(g, &ep->xs));
  ml_node *fq = st ? NULL : ml_model_features(a->model, g, w, ml__input(g, &ep->xq));
  ml_graph_set_recording(g, prev);
  if (!fs || !fq) return ml_graph_status(g);
  int64_t N = ep->n_way, D = fs->value.shape[1];
  ml_node *W = ml_zeros(g, 2, (int64_t[]){N, D}), *b = ml_zeros(g, 1, (int64_t[]){N});
  float *mw = ml_arena_calloc(ml_graph_arena(g), (size_t)(N * D + N) * 2 * sizeof(float));
  if (!W || !b || !mw) return ml_error(ML_ERR_NOMEM, "finetune: out of memory");
  W->requires_grad = b->requires_grad = true;
  float *m = mw, *v = mw + N * D + N;
  const float b1 = 0.9f, b2 = 0.999f, lr = a->cfg.finetune_lr;
  const ml_graph_mark mark = ml_graph_get_mark(g); /* each step's graph is given back after it */
  for (int64_t s = 0; s < a->cfg.finetune_steps; s++) {
    ml_graph_rewind(g, mark);
    ml_node *loss = ml_cross_entropy(g, ml_linear(g, fs, W, b), ep->ys), *gr[2], *wb[2] = {W, b};
    st = ml_grad(g, &loss, 1, NULL, wb, 2, false, gr);
    if (st) return st;
    float c1 = 1 - powf(b1, (float)(s + 1)), c2 = 1 - powf(b2, (float)(s + 1));
    for (int j = 0; j < 2; j++) {
      float *x = wb[j]->value.data, *gj = gr[j]->value.data, *mj = m + (j ? N * D : 0), *vj = v + (j ? N * D : 0);
      for (int64_t k = 0; k < wb[j]->value.numel; k++) {
        mj[k] = b1 * mj[k] + (1 - b1) * gj[k];
        vj[k] = b2 * vj[k] + (1 - b2) * gj[k] * gj[k];
        x[k] -= lr * (mj[k] / c1) / (sqrtf(vj[k] / c2) + 1e-8f);
      }
    }
  }
  ml_graph_rewind(g, mark);
  ml_graph_set_recording(g, false);
  ml_node *y = ml_linear(g, fq, W, b);
  ml_graph_set_recording(g, prev);
  if (!y) return ml_graph_status(g);
  memcpy(out, y->value.data, (size_t)y->value.numel * sizeof(float));
  return ML_OK;
}
