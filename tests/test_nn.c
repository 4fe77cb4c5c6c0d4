/* nn: model shapes and initialization, an MLP that learns, and the end-to-end second-order check
 * on Conv4: the gradient of the query loss after one inner SGD step, with respect to the initial
 * parameters, against finite differences. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/io.h"
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
  /* Xavier-uniform statistics on conv2: var = 2 / (fan_in + fan_out) */
  ml_tensor *w = &m->params->items[ml_params_find(m->params, "conv2.weight")].value;
  double s2 = 0;
  for (int64_t i = 0; i < w->numel; i++) s2 += (double)w->data[i] * w->data[i];
  CHECK_NEAR(s2 / (double)w->numel, 2.0 / (2 * 64 * 9), 0.1 * 2.0 / (2 * 64 * 9));
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

/* Inference (nothing recorded) runs each Conv4 block with its temporaries given back at the end
 * of the block: the same bits as the recorded forward, in a fraction of the memory. */
ML_TEST(conv4_inference_same_bits_less_memory) {
  ml_conv4_config c = ml_conv4_defaults();
  ml_model *m;
  CHECK_OK(ml_conv4_new(&c, 3, &m));
  float *out[2];
  size_t peak[2];
  for (int lean = 0; lean < 2; lean++) {
    ml_arena *ar = ml_arena_new(0, NULL);
    ml_graph *g = ml_graph_new(ar);
    ml_node *wn[32];
    CHECK_OK(ml_model_leaves(m, g, !lean, wn)); /* weights requiring a gradient: the recorded path */
    ml_node *x = ml_new(g, 4, (int64_t[]){20, 1, 28, 28});
    ml_test_fill(x->value.data, x->value.numel, 9, 0, 1);
    ml_node *y = ml_model_forward(m, g, wn, x);
    CHECK(y && y->value.numel == 20 * 5 && y->requires_grad == !lean);
    out[lean] = malloc(100 * sizeof(float));
    memcpy(out[lean], y->value.data, 100 * sizeof(float));
    peak[lean] = ml_arena_peak(ar);
    ml_arena_free(ar);
  }
  CHECK(!memcmp(out[0], out[1], 100 * sizeof(float)));
  /* what must stay is the input, the first block's full-size convolution output (batch-norm needs
   * all of it for its statistics) and the blocks' outputs: 5.38 MB here; measured 6.35 MB, the
   * rest being kernel scratch, whose size follows the convolution path. Keeping any other block's
   * convolution output (1 MB for the second) would break the bound. The recorded forward, which
   * keeps every block's, took 8.28 MB. */
  const double floor_bytes = 4.0 * 20 * (28 * 28 + 64 * 28 * 28 + 64 * (14 * 14 + 7 * 7 + 3 * 3 + 1));
  CHECK_MSG(peak[1] < 1.25 * floor_bytes && peak[1] < peak[0],
            "inference peak %zu bytes, %.0f unavoidable, recorded %zu", peak[1], floor_bytes, peak[0]);
  free(out[0]), free(out[1]);
  ml_model_free(m);
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
  /* The query loss after an inner step is only piecewise smooth: ReLU and max-pool switches in
   * the query forward are kinks, and in the support forward they make the inner gradient jump.
   * A difference quotient across a kink or a jump is no derivative (PyTorch's MAML has the same
   * function). Each coordinate gets one-sided quotients at h and h/2; only where both sides agree
   * (no kink or jump within h) is the analytic gradient compared with the central quotient.
   * Few coordinates may be rough, and every smooth one must match. The same meta-gradient is
   * also compared with PyTorch in double precision (tests/fixtures, maml_parity test). */
  int checked = 0, bad = 0, rough = 0, bad_fo = 0;
  double diff12 = 0, norm2 = 0;
  double f0 = maml_loss(&c, ar, NULL, false);
  for (int64_t pi = 0; pi < c.m->params->count; pi++) {
    ml_param *p = &c.m->params->items[pi];
    int64_t step = p->value.numel > 6 ? p->value.numel / 6 : 1;
    for (int64_t k = 0; k < p->value.numel; k += step) {
      int64_t i = p->offset + k;
      float keep = theta[i];
      double fwd[2], bwd[2];
      for (int e = 0; e < 2; e++) {
        float h = e ? 2e-4f : 4e-4f;
        theta[i] = keep + h;
        fwd[e] = (maml_loss(&c, ar, NULL, false) - f0) / h;
        theta[i] = keep - h;
        bwd[e] = (f0 - maml_loss(&c, ar, NULL, false)) / h;
        theta[i] = keep;
      }
      checked++;
      /* Richardson-extrapolated one-sided quotients: second-order accurate where f is smooth on
       * that side, so they agree unless a kink or jump lies within h of the point. */
      double rf = 2 * fwd[1] - fwd[0], rb = 2 * bwd[1] - bwd[0];
      double num = 0.5 * (fwd[1] + bwd[1]), tol = 2e-3 + 5e-2 * fabs(num);
      if (fabs(rf - rb) > tol) {
        rough++;
        continue;
      }
      if (!(fabs(g1[i] - num) <= tol)) bad_fo++;
      if (!(fabs(g2[i] - num) <= tol)) {
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
  CHECK_MSG(rough * 4 <= checked, "%d of %d coordinates not smooth at h = 4e-4", rough, checked);
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

/* Parity with PyTorch: the fixture holds a Conv4's weights, one task, and the second- and
 * first-order MAML meta-gradients PyTorch computed in float64 (tests/fixtures/make_maml_parity.py). */
ML_TEST(maml_meta_gradient_matches_pytorch) {
  char path[4096];
  const char *src = getenv("ML_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/tests/fixtures/maml_parity.safetensors", src && *src ? src : ".");
  ml_safetensors *st;
  CHECK_OK(ml_safetensors_open(path, &st));
  if (ml_test_failed_now()) return;
  ml_conv4_config cfg = ml_conv4_defaults();
  cfg.image_size = 16, cfg.filters = 8, cfg.n_out = 2;
  maml_ctx c = {.alpha = 0.4f};
  CHECK_OK(ml_conv4_new(&cfg, 1, &c.m));
  ml_params *p = c.m->params;
  for (int64_t i = 0; i < p->count; i++) {
    int64_t k = ml_safetensors_find(st, p->items[i].name);
    CHECK_MSG(k >= 0, "fixture lacks %s", p->items[i].name);
    if (k >= 0) CHECK_OK(ml_safetensors_read_f32(st, k, p->items[i].value.data));
  }
  c.xs = malloc(4 * 256 * sizeof(float));
  c.xq = malloc(6 * 256 * sizeof(float));
  float lab[6], want_loss;
  CHECK_OK(ml_safetensors_read_f32(st, ml_safetensors_find(st, "xs"), c.xs));
  CHECK_OK(ml_safetensors_read_f32(st, ml_safetensors_find(st, "xq"), c.xq));
  CHECK_OK(ml_safetensors_read_f32(st, ml_safetensors_find(st, "ys"), lab));
  for (int i = 0; i < 4; i++) c.ys[i] = (int32_t)lab[i];
  CHECK_OK(ml_safetensors_read_f32(st, ml_safetensors_find(st, "yq"), lab));
  for (int i = 0; i < 6; i++) c.yq[i] = (int32_t)lab[i];
  CHECK_OK(ml_safetensors_read_f32(st, ml_safetensors_find(st, "query_loss"), &want_loss));
  ml_arena *ar = ml_arena_new(0, NULL);
  float *g = calloc((size_t)p->numel, sizeof(float)), *want = calloc((size_t)p->numel, sizeof(float));
  for (int order = 2; order >= 1; order--) {
    double loss = maml_loss(&c, ar, g, order == 1);
    if (order == 2) CHECK_NEAR(loss, want_loss, 1e-5);
    for (int64_t i = 0; i < p->count; i++) {
      char name[128];
      snprintf(name, sizeof name, "grad%d.%s", order, p->items[i].name);
      int64_t k = ml_safetensors_find(st, name);
      CHECK_MSG(k >= 0, "fixture lacks %s", name);
      if (k >= 0) CHECK_OK(ml_safetensors_read_f32(st, k, want + p->items[i].offset));
    }
    /* float32 against float64, relative to the largest gradient entry: the conv biases' true
     * gradient is 0 (batch-norm cancels them), and float32 leaves rounding noise there */
    double scale = 0;
    for (int64_t j = 0; j < p->numel; j++) scale = fmax(scale, fabs(want[j]));
    CHECK(scale > 0.01);
    CHECK_CLOSE(g, want, p->numel, 1e-5 * scale, 1e-4);
  }
  free(g), free(want), free(c.xs), free(c.xq);
  ml_arena_free(ar);
  ml_model_free(c.m);
  ml_safetensors_close(st);
}
