/* Metric-based meta-learning: Prototypical Networks (class prototypes = mean support embedding,
 * logits = -squared Euclidean distance) and Matching Networks (softmax attention over cosine
 * similarities to the support examples, without full-context embeddings). Support and query are
 * embedded in one batch, as the reference implementations do, so batch-norm sees one batch per
 * episode; constant selection matrices split the rows again (a differentiable slice). */
#include <string.h>

#include "algos/internal.h"

#define MAXP 256

/* Returns logits (n_q, n_way) for the query, differentiable in the weights w. */
static ml_node *episode_logits(ml_algo *a, ml_graph *g, ml_node *const *w, const ml_episode *ep) {
  int64_t ns = ep->n_s, nq = ep->n_q, n = ns + nq, N = ep->n_way;
  ml_node *emb = ml_model_features(a->model, g, w, ml__concat_inputs(g, ep));
  ml_node *sel_q = ml_zeros(g, 2, (int64_t[]){nq, n});
  if (!emb || !sel_q) return NULL;
  for (int64_t r = 0; r < nq; r++) sel_q->value.data[r * n + ns + r] = 1.0f;
  ml_node *q = ml_matmul(g, sel_q, emb, false, false);
  if (a->cfg.kind == ML_ALGO_PROTONET) {
    ml_node *avg = ml_zeros(g, 2, (int64_t[]){N, n});
    if (!avg) return NULL;
    float count[1024] = {0};
    if (N > 1024) return NULL;
    for (int64_t i = 0; i < ns; i++) count[ep->ys[i]] += 1.0f;
    for (int64_t i = 0; i < ns; i++) avg->value.data[ep->ys[i] * n + i] = 1.0f / count[ep->ys[i]];
    ml_node *protos = ml_matmul(g, avg, emb, false, false);
    return ml_neg(g, ml_sqdist(g, q, protos));
  }
  ml_node *sel_s = ml_zeros(g, 2, (int64_t[]){ns, n}), *onehot = ml_zeros(g, 2, (int64_t[]){ns, N});
  if (!sel_s || !onehot) return NULL;
  for (int64_t i = 0; i < ns; i++) {
    sel_s->value.data[i * n + i] = 1.0f;
    onehot->value.data[i * N + ep->ys[i]] = 1.0f;
  }
  ml_node *s = ml_matmul(g, sel_s, emb, false, false);
  ml_node *qn = ml_mul_axis(g, q, ml_rsqrt(g, ml_affine(g, ml_sum_rows(g, ml_square(g, q)), 1.0f, 1e-8f)), 0);
  ml_node *sn = ml_mul_axis(g, s, ml_rsqrt(g, ml_affine(g, ml_sum_rows(g, ml_square(g, s)), 1.0f, 1e-8f)), 0);
  ml_node *sim = ml_scale(g, ml_matmul(g, qn, sn, false, true), a->cfg.matching_scale);
  ml_node *att = ml_exp(g, ml_log_softmax(g, sim));
  ml_node *p = ml_matmul(g, att, onehot, false, false);
  return ml_log(g, ml_affine(g, p, 1.0f, 1e-8f));
}

ml_status ml__metric_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                          ml__task_out *out) {
  (void)it, (void)idx;
  int64_t P = a->model->params->count;
  if (P > MAXP) return ml_error(ML_ERR_ARG, "model has too many parameter tensors");
  ml_node *w[MAXP], *gr[MAXP];
  ml_status st = ml_model_leaves(a->model, g, true, w);
  if (st) return st;
  ml_node *logits = episode_logits(a, g, w, ep);
  /* Matching Networks' logits are already log-probabilities: NLL = -mean(pick). */
  ml_node *loss = a->cfg.kind == ML_ALGO_PROTONET ? ml_cross_entropy(g, logits, ep->yq)
                                                   : ml_neg(g, ml_mean(g, ml_pick(g, logits, ep->yq)));
  if (!loss) return ml_graph_status(g) ? ml_graph_status(g) : ml_error(ML_ERR_ARG, "episode has over 1024 classes");
  out->loss_q = out->loss_s = loss->value.data[0];
  out->acc = ml__task_acc(logits, ep, true);
  ml_graph_consume_next_sweep(g); /* nothing reads the forward after this sweep */
  st = ml_grad(g, &loss, 1, NULL, w, P, false, gr);
  if (st) return st;
  ml__store_grads(a->model->params, gr, 0, slot);
  return ML_OK;
}

ml_status ml__metric_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out) {
  ml_node *w[MAXP];
  bool prev = ml_graph_set_recording(g, false); /* nothing to differentiate at meta-test */
  ml_status st = ml_model_leaves(a->model, g, false, w);
  ml_node *logits = st ? NULL : episode_logits(a, g, w, ep);
  ml_graph_set_recording(g, prev);
  if (!logits) return ml_graph_status(g) ? ml_graph_status(g) : ml_error(ML_ERR_ARG, "episode has over 1024 classes");
  memcpy(out, logits->value.data, (size_t)logits->value.numel * sizeof(float));
  return ML_OK;
}
