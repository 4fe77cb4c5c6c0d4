/* nn: model shapes and initialization, an MLP that learns, and the end-to-end second-order check
 * on Conv4: the gradient of the query loss after one inner SGD step, with respect to the initial
 * parameters, against finite differences. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/nn.h"

ML_TEST(conv4_shapes_and_init) {
  ml_conv4_config c = ml_conv4_defaults();
  ml_model *m;
  CHECK_OK(ml_conv4_new(&c, 1, &m));
  CHECK(m->params->count == 4 * 4 + 2);
  CHECK(m->feature_dim == 64);
  CHECK(ml_params_find(m->params, "conv3.weight") >= 0);
  CHECK(ml_params_find(m->params, "bn4.bias") >= 0);
  /* 4*(64*C*9 + 64*3) + 64*5 + 5 real parameters */
  CHECK(ml_params_count_scalars(m->params) == (64 * 9 + 3 * 64) + 3 * (64 * 64 * 9 + 3 * 64) + 64 * 5 + 5);
  /* Kaiming-uniform statistics on conv2: var = 2 / fan_in */
  ml_tensor *w = &m->params->items[ml_params_find(m->params, "conv2.weight")].value;
  double s2 = 0;
  for (int64_t i = 0; i < w->numel; i++) s2 += (double)w->data[i] * w->data[i];
  CHECK_NEAR(s2 / (double)w->numel, 2.0 / (64 * 9), 0.1 * 2.0 / (64 * 9));
  /* same seed, same weights; other seed, other weights */
  ml_model *m2, *m3;
  CHECK_OK(ml_conv4_new(&c, 1, &m2));
  CHECK_OK(ml_conv4_new(&c, 2, &m3));
  CHECK(!memcmp(m->params->data, m2->params->data, (size_t)m->params->numel * sizeof(float)));
  CHECK(memcmp(m->params->data, m3->params->data, (size_t)m->params->numel * sizeof(float)) != 0);

  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *wn[32];
  CHECK_OK(ml_model_leaves(m, g, true, wn));
  ml_node *x = ml_new(g, 4, (int64_t[]){10, 1, 28, 28});
  ml_test_fill(x->value.data, x->value.numel, 5, 0, 1);
  ml_node *y = ml_model_forward(m, g, wn, x);
  CHECK(y && y->value.ndim == 2 && y->value.shape[0] == 10 && y->value.shape[1] == 5);
  ml_arena_free(ar);
  ml_model_free(m), ml_model_free(m2), ml_model_free(m3);

  c.image_size = 8; /* 8 -> 4 -> 2 -> 1 -> 0: too small for 4 blocks */
  CHECK(ml_conv4_new(&c, 1, &m) == ML_ERR_ARG);
}

/* An MLP fits y = sin(x) on [-3, 3] with plain gradient descent. */
ML_TEST(mlp_learns_regression) {
  ml_mlp_config c = {.n_layers = 3, .sizes = {1, 32, 32, 1}, .act = ML_ACT_TANH};
  ml_model *m;
  CHECK_OK(ml_mlp_new(&c, 3, &m));
  ml_arena *ar = ml_arena_new(0, NULL);
  float xs[64], ys[64];
  for (int i = 0; i < 64; i++) {
    xs[i] = -3.0f + 6.0f * (float)i / 63.0f;
    ys[i] = sinf(xs[i]);
  }
  double first = 0, last = 0;
  for (int step = 0; step < 3000; step++) {
    ml_arena_reset(ar);
    ml_graph *g = ml_graph_new(ar);
    ml_node *w[8], *gr[8];
    CHECK_OK(ml_model_leaves(m, g, true, w));
    ml_node *x = ml_leaf(g, ml_shape2(64, 1), false), *y = ml_leaf(g, ml_shape2(64, 1), false);
    x->value.data = xs, y->value.data = ys;
    ml_node *loss = ml_mse(g, ml_model_forward(m, g, w, x), y);
    CHECK_OK(ml_grad(g, &loss, 1, NULL, w, m->params->count, false, gr));
    for (int64_t i = 0; i < m->params->count; i++)
      for (int64_t k = 0; k < gr[i]->value.numel; k++) w[i]->value.data[k] -= 0.02f * gr[i]->value.data[k];
    if (step == 0) first = loss->value.data[0];
    last = loss->value.data[0];
  }
  CHECK_MSG(last < 0.02 * first && last < 0.01, "MSE went from %g to %g", first, last);
  ml_arena_free(ar);
  ml_model_free(m);
}

/* ---- Conv4 MAML meta-gradient against finite differences ---- */
typedef struct {
  ml_model *m;
  float *xs, *xq;
  int32_t ys[4], yq[6];
  float alpha;
} maml_ctx;

/* Query loss after one inner SGD step from the model's current parameters. With `meta_grad`
 * the full second-order gradient with respect to the initial parameters is written there
 * (first_order: the inner gradient is treated as a constant, FO-MAML). */
static double maml_loss(maml_ctx *c, ml_arena *ar, float *meta_grad, bool first_order) {
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  int64_t P = c->m->params->count;
  ml_node *w[32], *gi[32], *fast[32], *gm[32];
  ml_model_leaves(c->m, g, true, w);
  int64_t img = c->m->conv.image_size;
  ml_node *xs = ml_leaf(g, ml_shape4(4, 1, img, img), false), *xq = ml_leaf(g, ml_shape4(6, 1, img, img), false);
  xs->value.data = c->xs, xq->value.data = c->xq;
  ml_node *ls = ml_cross_entropy(g, ml_model_forward(c->m, g, w, xs), c->ys);
  bool create = meta_grad && !first_order;
  if (ml_grad(g, &ls, 1, NULL, w, P, create, gi) != ML_OK) return NAN;
  for (int64_t i = 0; i < P; i++) fast[i] = ml_sub(g, w[i], ml_scale(g, gi[i], c->alpha));
  ml_node *lq = ml_cross_entropy(g, ml_model_forward(c->m, g, fast, xq), c->yq);
  if (!lq) return NAN;
  if (meta_grad) {
    if (ml_grad(g, &lq, 1, NULL, w, P, false, gm) != ML_OK) return NAN;
    for (int64_t i = 0; i < P; i++)
      memcpy(meta_grad + c->m->params->items[i].offset, gm[i]->value.data,
             (size_t)gm[i]->value.numel * sizeof(float));
  }
  return lq->value.data[0];
}

ML_TEST(conv4_second_order_maml_gradient_matches_finite_differences) {
  ml_conv4_config cfg = ml_conv4_defaults();
  cfg.image_size = 16, cfg.filters = 4, cfg.n_out = 2;
  maml_ctx c = {.alpha = 0.4f, .ys = {0, 1, 0, 1}, .yq = {1, 0, 1, 0, 0, 1}};
  CHECK_OK(ml_conv4_new(&cfg, 11, &c.m));
  c.xs = malloc(4 * 256 * sizeof(float));
  c.xq = malloc(6 * 256 * sizeof(float));
  ml_test_fill(c.xs, 4 * 256, 21, 0, 1);
  ml_test_fill(c.xq, 6 * 256, 22, 0, 1);
  /* make the classes separable-ish: brighter left half for class 1 */
  for (int i = 0; i < 4; i++)
    for (int p = 0; p < 256; p++) c.xs[i * 256 + p] += (c.ys[i] && p % 16 < 8) ? 0.5f : 0.0f;
  for (int i = 0; i < 6; i++)
    for (int p = 0; p < 256; p++) c.xq[i * 256 + p] += (c.yq[i] && p % 16 < 8) ? 0.5f : 0.0f;
  ml_arena *ar = ml_arena_new(0, NULL);
  int64_t n = c.m->params->numel;
  float *g2 = calloc((size_t)n, sizeof(float)), *g1 = calloc((size_t)n, sizeof(float));
  CHECK(!isnan(maml_loss(&c, ar, g2, false)));
  CHECK(!isnan(maml_loss(&c, ar, g1, true)));
  float *theta = c.m->params->data;
  /* The inner gradient of a ReLU/max-pool network jumps where an argmax or a ReLU switches, so
   * the query loss after an inner step is piecewise smooth with small jumps (PyTorch's MAML has
   * the same). A central difference that straddles a jump is meaningless: each coordinate is
   * differenced at h and h/2, and only where both agree (the function is smooth at that scale)
   * is the analytic gradient compared. Few coordinates may be rough, and every smooth one must
   * match. */
  int checked = 0, bad = 0, rough = 0, bad_fo = 0;
  double diff12 = 0, norm2 = 0;
  for (int64_t pi = 0; pi < c.m->params->count; pi++) {
    ml_param *p = &c.m->params->items[pi];
    int64_t step = p->value.numel > 6 ? p->value.numel / 6 : 1;
    for (int64_t k = 0; k < p->value.numel; k += step) {
      int64_t i = p->offset + k;
      float keep = theta[i];
      double d[2];
      for (int e = 0; e < 2; e++) {
        float h = e ? 5e-4f : 1e-3f;
        theta[i] = keep + h;
        double fp = maml_loss(&c, ar, NULL, false);
        theta[i] = keep - h;
        double fm = maml_loss(&c, ar, NULL, false);
        theta[i] = keep;
        d[e] = (fp - fm) / (2.0 * h);
      }
      checked++;
      if (fabs(d[0] - d[1]) > 2e-3 + 5e-2 * fabs(d[1])) {
        rough++;
        continue;
      }
      double num = d[1];
      if (!(fabs(g1[i] - num) <= 2e-3 + 5e-2 * fabs(num))) bad_fo++;
      if (!(fabs(g2[i] - num) <= 2e-3 + 5e-2 * fabs(num))) {
        bad++;
        fprintf(stderr, "  %s[%lld]: analytic %.6g numeric %.6g (first-order %.6g)\n", p->name, (long long)k, g2[i],
                num, g1[i]);
      }
    }
  }
  /* Would a first-order gradient have passed? It must not, or this test proves nothing. */
  CHECK_MSG(bad_fo * 4 > checked - rough, "first-order MAML matched finite differences at %d of %d points", checked - rough - bad_fo, checked - rough);
  if (getenv("ML_TEST_VERBOSE"))
    fprintf(stderr, "checked %d, rough %d, second-order bad %d, first-order bad %d\n", checked, rough, bad, bad_fo);
  CHECK_MSG(rough * 4 <= checked, "%d of %d coordinates not smooth at h = 1e-3", rough, checked);
  for (int64_t i = 0; i < n; i++) {
    diff12 += ((double)g2[i] - g1[i]) * ((double)g2[i] - g1[i]);
    norm2 += (double)g2[i] * g2[i];
  }
  CHECK_MSG(bad == 0, "%d of %d meta-gradient entries differ from finite differences", bad, checked);
  /* the second-order terms are really there: FO-MAML differs by a clear margin */
  CHECK_MSG(sqrt(diff12) > 0.05 * sqrt(norm2), "second-order and first-order meta-gradients nearly equal (%g vs %g)",
            sqrt(diff12), sqrt(norm2));
  free(g1), free(g2), free(c.xs), free(c.xq);
  ml_arena_free(ar);
  ml_model_free(c.m);
}
