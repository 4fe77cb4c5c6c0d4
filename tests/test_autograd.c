/* autograd: every op of ops.def is checked against central finite differences, first order,
 * second order (Hessian-vector products) for ops that can sit in an inner loop, and also through
 * a gradient-wrapped function (f'(x) = <R, tanh(grad f(x))>, what a MAML inner step builds),
 * which differentiates the backward ops themselves. A final test fails if any row of the table
 * lacks its checks. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/autograd.h"

#define MAXIN 5
typedef ml_node *(*fn_t)(ml_graph *g, ml_node **x, void *ctx);

typedef struct {
  const char *name;
  int n_in;
  ml_tensor shape[MAXIN];
  float lo[MAXIN], hi[MAXIN];
  fn_t f;
  void *ctx;
  bool second;   /* check Hessian-vector products */
  bool wrapped;  /* check the gradient-wrapped function too */
  bool eager_only; /* a first-order-only op: no create_graph gradient to compare */
  bool const_in[MAXIN]; /* input gets no gradient (e.g. relu_mask's x): analytic must be 0 */
} gcase;

static bool covered1[ML_OP_COUNT], covered2[ML_OP_COUNT];

static void mark(ml_graph *g, bool *cov) {
  for (int64_t i = 0; i < ml_graph_size(g); i++) {
    ml_node *n = ml_graph_node(g, i);
    if (n->requires_grad && n->n_in > 0) cov[n->op] = true;
  }
}

/* A fixed "random" weighting R so that sum(R * y) has a generic gradient. */
static ml_node *weighted_sum(ml_graph *g, ml_node *y, uint64_t seed) {
  if (!y) return NULL;
  ml_node *r = ml_new(g, y->value.ndim, y->value.shape);
  if (!r) return NULL;
  ml_test_fill(r->value.data, r->value.numel, seed, -1.0f, 1.0f);
  return ml_sum(g, ml_mul(g, y, r));
}

typedef struct {
  fn_t inner;
  void *ctx;
  int n_in;
} wrap_ctx;

/* f_w(x) = sum_j <R_j, tanh(d f / d x_j)>: needs create_graph, like a MAML inner step. */
static ml_node *wrapped_fn(ml_graph *g, ml_node **x, void *vctx) {
  wrap_ctx *w = vctx;
  ml_node *y = w->inner(g, x, w->ctx);
  if (!y) return NULL;
  ml_node *gr[MAXIN];
  if (ml_grad(g, &y, 1, NULL, x, w->n_in, true, gr) != ML_OK) return NULL;
  ml_node *s = NULL;
  for (int j = 0; j < w->n_in; j++) {
    ml_node *t = weighted_sum(g, ml_tanh(g, gr[j]), 900 + (uint64_t)j);
    s = s ? ml_add(g, s, t) : t;
  }
  return s;
}

static double eval_f(ml_arena *ar, const gcase *c, float **xs) {
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x[MAXIN];
  for (int j = 0; j < c->n_in; j++) {
    ml_tensor t = c->shape[j];
    t.data = xs[j];
    x[j] = ml_leaf(g, t, true);
  }
  ml_node *y = c->f(g, x, c->ctx);
  CHECK_MSG(y && ml_graph_status(g) == ML_OK, "%s: forward failed: %s", c->name, ml_last_error());
  return y ? (double)y->value.data[0] : NAN;
}

/* Analytic first-order gradients at xs into out[j] (create_graph selects the path). */
static void analytic_grad(ml_arena *ar, const gcase *c, float **xs, float **out, bool create_graph) {
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x[MAXIN], *gr[MAXIN];
  for (int j = 0; j < c->n_in; j++) {
    ml_tensor t = c->shape[j];
    t.data = xs[j];
    x[j] = ml_leaf(g, t, true);
  }
  ml_node *y = c->f(g, x, c->ctx);
  mark(g, covered1);
  CHECK_OK(ml_grad(g, &y, 1, NULL, x, c->n_in, create_graph, gr));
  for (int j = 0; j < c->n_in; j++)
    if (ml_graph_status(g) == ML_OK) memcpy(out[j], gr[j]->value.data, (size_t)c->shape[j].numel * sizeof(float));
}

static void run_case(const gcase *c, double atol, double rtol) {
  if (getenv("ML_TEST_VERBOSE")) fprintf(stderr, "case %s\n", c->name);
  ml_arena *ar = ml_arena_new(1 << 20, NULL);
  float *xs[MAXIN], *ga[MAXIN], *gb[MAXIN], *v[MAXIN], *hv[MAXIN], *gp[MAXIN], *gm[MAXIN];
  for (int j = 0; j < c->n_in; j++) {
    int64_t n = c->shape[j].numel;
    xs[j] = calloc((size_t)n, sizeof(float));
    ga[j] = calloc((size_t)n, sizeof(float));
    gb[j] = calloc((size_t)n, sizeof(float));
    v[j] = calloc((size_t)n, sizeof(float));
    hv[j] = calloc((size_t)n, sizeof(float));
    gp[j] = calloc((size_t)n, sizeof(float));
    gm[j] = calloc((size_t)n, sizeof(float));
    ml_test_fill(xs[j], n, 100 + (uint64_t)j, c->lo[j], c->hi[j]);
    ml_test_fill(v[j], n, 200 + (uint64_t)j, -1.0f, 1.0f);
  }
  int points = 0, rough = 0;
  /* first order: eager (no create_graph) gradients against central differences */
  analytic_grad(ar, c, xs, ga, false);
  if (c->eager_only)
    for (int j = 0; j < c->n_in; j++) memcpy(gb[j], ga[j], (size_t)c->shape[j].numel * sizeof(float));
  else
    analytic_grad(ar, c, xs, gb, true);
  /* Central differences in float32: 5e-3 balances truncation (O(eps^2), which dominated at 1e-2
   * for conv Hessians) against rounding (O(1e-7 / eps)); results were stable from 1e-3 to 5e-3. */
  const float eps = 5e-3f;
  for (int j = 0; j < c->n_in; j++) {
    int64_t n = c->shape[j].numel;
    CHECK_CLOSE(gb[j], ga[j], n, 1e-5, 1e-4); /* both backward paths agree */
    int64_t step = n > 48 ? n / 48 : 1;
    for (int64_t i = 0; i < n; i += step) {
      float keep = xs[j][i];
      double d[2];
      for (int e = 0; e < 2; e++) {
        float h = e ? eps / 2 : eps;
        xs[j][i] = keep + h;
        double fp = eval_f(ar, c, xs);
        xs[j][i] = keep - h;
        double fm = eval_f(ar, c, xs);
        xs[j][i] = keep;
        d[e] = (fp - fm) / (2.0 * h);
      }
      double num = d[1];
      if (c->const_in[j]) num = 0; /* piecewise-constant dependence: gradient is defined as 0 */
      points++;
      if (!c->const_in[j] && fabs(d[0] - d[1]) > atol + rtol * fabs(d[1])) {
        rough++; /* a kink within eps: the difference quotient is not a derivative here */
        continue;
      }
      CHECK_MSG(fabs(ga[j][i] - num) <= atol + rtol * fabs(num), "%s: d/dx%d[%lld] analytic %.6g numeric %.6g",
                c->name, j, (long long)i, ga[j][i], num);
    }
  }
  if (c->second) {
    /* Hessian-vector product through create_graph, against differences of gradients. */
    ml_arena_reset(ar);
    ml_graph *g = ml_graph_new(ar);
    ml_node *x[MAXIN], *gr[MAXIN], *h[MAXIN];
    for (int j = 0; j < c->n_in; j++) {
      ml_tensor t = c->shape[j];
      t.data = xs[j];
      x[j] = ml_leaf(g, t, true);
    }
    ml_node *y = c->f(g, x, c->ctx);
    CHECK_OK(ml_grad(g, &y, 1, NULL, x, c->n_in, true, gr));
    ml_node *s = NULL;
    for (int j = 0; j < c->n_in; j++) {
      ml_tensor t = c->shape[j];
      t.data = v[j];
      ml_node *d = ml_sum(g, ml_mul(g, gr[j], ml_leaf(g, t, false)));
      s = s ? ml_add(g, s, d) : d;
    }
    mark(g, covered2);
    mark(g, covered1); /* differentiating a node's backward verifies that backward too */
    CHECK_OK(ml_grad(g, &s, 1, NULL, x, c->n_in, false, h));
    for (int j = 0; j < c->n_in && ml_graph_status(g) == ML_OK; j++)
      memcpy(hv[j], h[j]->value.data, (size_t)c->shape[j].numel * sizeof(float));
    /* differences of gradients along v at eps and eps/2; where they disagree a ReLU or
     * max-pool switch lies within eps (gradients jump there) and the point is skipped */
    float *gp2[MAXIN], *gm2[MAXIN];
    for (int j = 0; j < c->n_in; j++) {
      gp2[j] = calloc((size_t)c->shape[j].numel, sizeof(float));
      gm2[j] = calloc((size_t)c->shape[j].numel, sizeof(float));
    }
    for (int e = 0; e < 2; e++) {
      float step = e ? eps / 2 : eps;
      float **P = e ? gp2 : gp, **M = e ? gm2 : gm;
      for (int j = 0; j < c->n_in; j++)
        for (int64_t i = 0; i < c->shape[j].numel; i++) xs[j][i] += step * v[j][i];
      analytic_grad(ar, c, xs, P, false);
      for (int j = 0; j < c->n_in; j++)
        for (int64_t i = 0; i < c->shape[j].numel; i++) xs[j][i] -= 2 * step * v[j][i];
      analytic_grad(ar, c, xs, M, false);
      for (int j = 0; j < c->n_in; j++)
        for (int64_t i = 0; i < c->shape[j].numel; i++) xs[j][i] += step * v[j][i];
    }
    for (int j = 0; j < c->n_in; j++) {
      for (int64_t i = 0; i < c->shape[j].numel; i++) {
        double n1 = ((double)gp[j][i] - gm[j][i]) / (2.0 * eps);
        double num = ((double)gp2[j][i] - gm2[j][i]) / (double)eps;
        points++;
        if (fabs(n1 - num) > atol + rtol * fabs(num)) {
          rough++;
          continue;
        }
        CHECK_MSG(fabs(hv[j][i] - num) <= atol + rtol * fabs(num), "%s: (Hv)_%d[%lld] analytic %.6g numeric %.6g",
                  c->name, j, (long long)i, hv[j][i], num);
      }
      free(gp2[j]), free(gm2[j]);
    }
  }
  CHECK_MSG(rough * 4 <= points, "%s: %d of %d points are not smooth at eps; move the inputs off the kinks",
            c->name, rough, points);
  if (getenv("ML_TEST_VERBOSE")) fprintf(stderr, "  %d points, %d rough\n", points, rough);
  for (int j = 0; j < c->n_in; j++) {
    free(xs[j]), free(ga[j]), free(gb[j]), free(v[j]), free(hv[j]), free(gp[j]), free(gm[j]);
  }
  ml_arena_free(ar);
}

/* Checks c, then (when asked) its gradient-wrapped form with the same tolerances scaled. */
static void check(gcase c, double atol, double rtol) {
  run_case(&c, atol, rtol);
  if (c.wrapped) {
    wrap_ctx w = {c.f, c.ctx, c.n_in};
    gcase cw = c;
    cw.name = "wrapped";
    cw.f = wrapped_fn;
    cw.ctx = &w;
    memset(cw.const_in, 0, sizeof cw.const_in);
    run_case(&cw, 2 * atol, 2 * rtol);
  }
}

/* ---------------------------------------------------------------- the cases */
typedef enum { K_ADD, K_SUB, K_MUL, K_DIV } bink;
typedef struct {
  bink k;
  int axis; /* -1: auto broadcast */
} binctx;

static ml_node *f_binary(ml_graph *g, ml_node **x, void *vctx) {
  binctx *b = vctx;
  ml_node *y;
  if (b->axis < 0) {
    ml_node *(*fs[])(ml_graph *, ml_node *, ml_node *) = {ml_add, ml_sub, ml_mul, ml_div};
    y = fs[b->k](g, x[0], x[1]);
  } else {
    ml_node *(*fs[])(ml_graph *, ml_node *, ml_node *, int) = {ml_add_axis, ml_sub_axis, ml_mul_axis, ml_div_axis};
    y = fs[b->k](g, x[0], x[1], b->axis);
  }
  return weighted_sum(g, ml_tanh(g, y), 1);
}

ML_TEST(grad_binary) {
  ml_tensor a = ml_shape3(2, 3, 4);
  struct {
    ml_tensor b;
    int axis;
  } forms[] = {{ml_shape3(2, 3, 4), -1}, {ml_shape2(3, 4), -1}, {ml_shape1(1), -1},
               {ml_shape1(3), 1},        {ml_shape1(2), 0},     {ml_shape1(4), 2}};
  for (int k = 0; k < 4; k++)
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
      binctx ctx = {(bink)k, forms[f].axis};
      gcase c = {.name = "binary", .n_in = 2, .shape = {a, forms[f].b}, .lo = {-1.5f, k == K_DIV ? 0.5f : -1.5f},
                 .hi = {1.5f, 1.5f}, .f = f_binary, .ctx = &ctx, .second = true, .wrapped = f == 0 || f == 3};
      check(c, 2e-3, 2e-2);
    }
}

typedef ml_node *(*unfn)(ml_graph *, ml_node *);
static ml_node *f_unary(ml_graph *g, ml_node **x, void *ctx) {
  return weighted_sum(g, ml_tanh(g, ((unfn)ctx)(g, x[0])), 2);
}
static ml_node *affine_fn(ml_graph *g, ml_node *x) { return ml_affine(g, x, -1.7f, 0.3f); }

ML_TEST(grad_unary) {
  struct {
    unfn f;
    float lo, hi;
  } ops[] = {{ml_exp, -1, 1},      {ml_log, 0.5f, 2},  {ml_sigmoid, -3, 3}, {ml_tanh, -2, 2},  {ml_softplus, -3, 3},
             {ml_rsqrt, 0.5f, 2},  {ml_sqrt, 0.5f, 2}, {ml_square, -1, 1},  {affine_fn, -1, 1}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    gcase c = {.name = "unary", .n_in = 1, .shape = {ml_shape2(3, 5)}, .lo = {ops[i].lo}, .hi = {ops[i].hi},
               .f = f_unary, .ctx = (void *)ops[i].f, .second = true, .wrapped = true};
    check(c, 2e-3, 2e-2);
  }
}

/* ReLU away from its kink: inputs drawn from [0.1, 1] with random signs. */
static void fill_away_from_zero(float *x, int64_t n, uint64_t seed) {
  ml_test_fill(x, n, seed, 0.1f, 1.0f);
  float s[64];
  ml_test_fill(s, 64, seed + 1, -1, 1);
  for (int64_t i = 0; i < n; i++)
    if (s[i % 61] < 0) x[i] = -x[i];
}

static float relu_x[60];
static ml_node *f_relu(ml_graph *g, ml_node **x, void *ctx) {
  /* x0 is shifted into [0.1, 1] in magnitude by adding a fixed sign pattern: x0 + 0.55*sign */
  (void)ctx;
  ml_node *off = ml_leaf(g, (ml_tensor){relu_x, {4, 15, 1, 1}, 2, 60}, false);
  return weighted_sum(g, ml_tanh(g, ml_relu(g, ml_add(g, x[0], off))), 3);
}
static ml_node *f_relu_mask(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  ml_node *off = ml_leaf(g, (ml_tensor){relu_x, {4, 15, 1, 1}, 2, 60}, false);
  return weighted_sum(g, ml_tanh(g, ml_relu_mask(g, x[0], ml_add(g, x[1], off))), 4);
}

ML_TEST(grad_relu) {
  fill_away_from_zero(relu_x, 60, 7);
  /* inputs in [-0.05, 0.05] plus offsets of magnitude >= 0.1 stay away from 0 under +-eps */
  gcase c = {.name = "relu", .n_in = 1, .shape = {ml_shape2(4, 15)}, .lo = {-0.05f}, .hi = {0.05f}, .f = f_relu,
             .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
  gcase m = {.name = "relu_mask", .n_in = 2, .shape = {ml_shape2(4, 15), ml_shape2(4, 15)}, .lo = {-1, -0.05f},
             .hi = {1, 0.05f}, .f = f_relu_mask, .second = true, .wrapped = true, .const_in = {false, true}};
  check(m, 2e-3, 2e-2);
}

static ml_node *f_reduce(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  ml_node *r = ml_sum_axis_keep(g, x[0], 1);                          /* (3) */
  ml_node *e = ml_expand_pcq(g, ml_tanh(g, r), 2, 3, 4, 3, (int64_t[]){2, 3, 4}); /* back to (2,3,4) */
  ml_node *rows = ml_sum_rows(g, ml_reshape(g, x[0], 2, (int64_t[]){6, 4}));
  return ml_add(g, weighted_sum(g, ml_tanh(g, ml_mul(g, e, x[0])), 5), weighted_sum(g, ml_tanh(g, rows), 6));
}

ML_TEST(grad_reduce_expand_reshape) {
  gcase c = {.name = "reduce", .n_in = 1, .shape = {ml_shape3(2, 3, 4)}, .lo = {-1}, .hi = {1}, .f = f_reduce,
             .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
}

typedef struct {
  bool ta, tb;
} mmctx;
static ml_node *f_matmul(ml_graph *g, ml_node **x, void *vctx) {
  mmctx *m = vctx;
  return weighted_sum(g, ml_tanh(g, ml_matmul(g, x[0], x[1], m->ta, m->tb)), 7);
}
static ml_node *f_linear(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_linear(g, x[0], x[1], x[2])), 8);
}

ML_TEST(grad_matmul_linear) {
  for (int t = 0; t < 4; t++) {
    mmctx m = {t & 1, (t >> 1) & 1};
    ml_tensor a = m.ta ? ml_shape2(4, 3) : ml_shape2(3, 4), b = m.tb ? ml_shape2(5, 4) : ml_shape2(4, 5);
    gcase c = {.name = "matmul", .n_in = 2, .shape = {a, b}, .lo = {-1, -1}, .hi = {1, 1}, .f = f_matmul, .ctx = &m,
               .second = true, .wrapped = true};
    check(c, 2e-3, 2e-2);
  }
  gcase l = {.name = "linear", .n_in = 3, .shape = {ml_shape2(3, 4), ml_shape2(5, 4), ml_shape1(5)}, .lo = {-1, -1, -1},
             .hi = {1, 1, 1}, .f = f_linear, .second = true, .wrapped = true};
  check(l, 2e-3, 2e-2);
}

typedef struct {
  int64_t stride, pad;
} convctx;
static ml_node *f_conv(ml_graph *g, ml_node **x, void *vctx) {
  convctx *c = vctx;
  return weighted_sum(g, ml_tanh(g, ml_conv2d(g, x[0], x[1], x[2], c->stride, c->pad)), 9);
}

ML_TEST(grad_conv2d) {
  convctx forms[] = {{1, 1}, {2, 0}, {2, 1}, {1, 0}};
  for (int i = 0; i < 4; i++) {
    gcase c = {.name = "conv2d", .n_in = 3, .shape = {ml_shape4(2, 3, 5, 6), ml_shape4(4, 3, 3, 3), ml_shape1(4)},
               .lo = {-1, -0.5f, -0.5f}, .hi = {1, 0.5f, 0.5f}, .f = f_conv, .ctx = &forms[i], .second = true,
               .wrapped = i < 2};
    check(c, 3e-3, 2e-2);
  }
}

/* The adjoints as ops in their own right, both arguments variable. */
static ml_conv_shape adj_shape;
static ml_node *f_conv_bwd_data(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_conv2d_bwd_data(g, x[0], x[1], &adj_shape)), 10);
}
static ml_node *f_conv_bwd_weight(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_conv2d_bwd_weight(g, x[0], x[1], &adj_shape)), 11);
}

ML_TEST(grad_conv2d_adjoints) {
  CHECK_OK(ml_conv_shape_make(&adj_shape, 2, 3, 5, 5, 4, 3, 3, 2, 1));
  ml_tensor dy = ml_shape4(2, 4, adj_shape.OH, adj_shape.OW);
  gcase d = {.name = "conv_bwd_data", .n_in = 2, .shape = {dy, ml_shape4(4, 3, 3, 3)}, .lo = {-1, -0.5f},
             .hi = {1, 0.5f}, .f = f_conv_bwd_data, .second = true, .wrapped = true};
  check(d, 3e-3, 2e-2);
  gcase w = {.name = "conv_bwd_weight", .n_in = 2, .shape = {ml_shape4(2, 3, 5, 5), dy}, .lo = {-1, -0.5f},
             .hi = {1, 0.5f}, .f = f_conv_bwd_weight, .second = true, .wrapped = true};
  check(w, 3e-3, 2e-2);
}

/* Max-pool at points where each window's maximum leads by more than 2 eps: a fixed ramp of
 * distinct values (spacing 0.05) plus a small variable part. */
static float pool_base[2 * 2 * 7 * 7];
static ml_node *f_pool(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  ml_node *base = ml_leaf(g, (ml_tensor){pool_base, {2, 2, 7, 7}, 4, 196}, false);
  return weighted_sum(g, ml_tanh(g, ml_maxpool2(g, ml_add(g, x[0], base))), 12);
}

ML_TEST(grad_maxpool2) {
  int64_t perm[196];
  for (int i = 0; i < 196; i++) perm[i] = i;
  ml_rng r;
  ml_rng_init(&r, 3, 3);
  ml_rng_shuffle(&r, perm, 196);
  for (int i = 0; i < 196; i++) pool_base[i] = 0.05f * (float)perm[i] - 4.9f;
  gcase c = {.name = "maxpool2", .n_in = 1, .shape = {ml_shape4(2, 2, 7, 7)}, .lo = {-0.005f}, .hi = {0.005f},
             .f = f_pool, .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
}

static ml_node *f_bn(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_batch_norm(g, x[0], x[1], x[2], 1e-5f)), 13);
}
static ml_node *f_bn_noaffine(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_batch_norm(g, x[0], NULL, NULL, 1e-5f)), 14);
}

/* A Conv4 block end to end, on the small planes where batch-norm sees few values. */
static ml_node *f_block(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  ml_node *h = ml_conv2d(g, x[0], x[1], NULL, 1, 1);
  h = ml_maxpool2(g, ml_relu(g, ml_batch_norm(g, h, x[2], NULL, 1e-5f)));
  return weighted_sum(g, ml_tanh(g, h), 19);
}

ML_TEST(grad_conv_block) {
  int64_t sizes[] = {4, 2};
  for (int i = 0; i < 2; i++) {
    gcase c = {.name = "conv_block", .n_in = 3,
               .shape = {ml_shape4(4, 2, sizes[i], sizes[i]), ml_shape4(3, 2, 3, 3), ml_shape1(3)},
               .lo = {-1, -0.3f, 0.5f}, .hi = {1, 0.3f, 1.5f}, .f = f_block, .second = true,
               /* not wrapped: the gradient of a ReLU/max-pool stack jumps at every switch, and with
                * dozens of units those jumps are too dense for finite differences of third order;
                * each op's wrapped check covers it in isolation */
               .wrapped = false};
    check(c, 3e-3, 3e-2);
  }
}

static ml_node *f_bn_pool(ml_graph *g, ml_node **x, void *ctx) {
  return weighted_sum(g, ml_tanh(g, ml_batch_norm_pool(g, x[0], x[1], x[2], 1e-5f, ctx != NULL)), 15);
}

ML_TEST(grad_batch_norm_pool) {
  /* 5x5 planes: the odd row and column are dropped by the pool but still shape the statistics; with the ReLU (ctx
   * non-NULL), whose mask the backward and the double backward apply */
  static const bool relu = true;
  for (int r = 0; r < 2; r++) {
    gcase c = {.name = r ? "batch_norm_pool_relu" : "batch_norm_pool", .n_in = 3,
               .shape = {ml_shape4(3, 2, 4, 5), ml_shape1(2), ml_shape1(2)}, .lo = {-2, 0.5f, -1}, .hi = {2, 1.5f, 1},
               .f = f_bn_pool, .ctx = r ? (void *)&relu : NULL, .second = true, .wrapped = true};
    check(c, 3e-3, 3e-2);
  }
}

static ml_node *f_conv_bn_pool(ml_graph *g, ml_node **x, void *ctx) {
  return weighted_sum(g, ml_tanh(g, ml_conv_bn_pool(g, x[0], x[1], x[2], x[3], x[4], 1, 1e-5f, ctx != NULL)), 16);
}

/* The fused first block: its eager backward (the fused kernel, recomputing the convolution) is
 * checked against differences and against the create_graph backward (the unfused ops); its
 * second order goes through those ops. 5x7 planes: a row and a column outside the windows. */
ML_TEST(grad_conv_bn_pool) {
  static const bool relu = true;
  for (int r = 0; r < 2; r++) {
    gcase c = {.name = r ? "conv_bn_pool_relu" : "conv_bn_pool", .n_in = 5,
               .shape = {ml_shape4(3, 2, 5, 7), ml_shape4(3, 2, 3, 3), ml_shape1(3), ml_shape1(3), ml_shape1(3)},
               .lo = {-1, -0.5f, -0.5f, 0.5f, -1}, .hi = {1, 0.5f, 0.5f, 1.5f, 1}, .f = f_conv_bn_pool,
               .ctx = r ? (void *)&relu : NULL, .second = true, .wrapped = true};
    check(c, 3e-3, 3e-2);
  }
}

ML_TEST(grad_batch_norm) {
  gcase c = {.name = "batch_norm", .n_in = 3, .shape = {ml_shape4(3, 2, 3, 3), ml_shape1(2), ml_shape1(2)},
             .lo = {-2, 0.5f, -1}, .hi = {2, 1.5f, 1}, .f = f_bn, .second = true, .wrapped = true};
  check(c, 3e-3, 3e-2);
  gcase d = {.name = "batch_norm_2d", .n_in = 1, .shape = {ml_shape2(6, 4)}, .lo = {-2}, .hi = {2},
             .f = f_bn_noaffine, .second = true, .wrapped = false};
  check(d, 3e-3, 3e-2);
}

static int32_t labels[6] = {2, 0, 3, 3, 1, 0};
static ml_node *f_ce(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return ml_cross_entropy(g, x[0], labels);
}
static ml_node *f_logsoftmax(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_log_softmax(g, x[0]), 15);
}

static ml_node *f_pick(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_pick(g, x[0], labels)), 18);
}

ML_TEST(grad_log_softmax_cross_entropy) {
  gcase p = {.name = "pick", .n_in = 1, .shape = {ml_shape2(6, 4)}, .lo = {-2}, .hi = {2}, .f = f_pick,
             .second = true, .wrapped = true};
  check(p, 2e-3, 2e-2);
  gcase a = {.name = "log_softmax", .n_in = 1, .shape = {ml_shape2(6, 4)}, .lo = {-2}, .hi = {2}, .f = f_logsoftmax,
             .second = true, .wrapped = true};
  check(a, 2e-3, 2e-2);
  gcase c = {.name = "cross_entropy", .n_in = 1, .shape = {ml_shape2(6, 4)}, .lo = {-2}, .hi = {2}, .f = f_ce,
             .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
}

static ml_node *f_mse(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return ml_mse(g, ml_tanh(g, x[0]), x[1]);
}
static ml_node *f_bce(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return ml_bce_with_logits(g, ml_scale(g, x[0], 3.0f), x[1]);
}
static ml_node *f_sqdist(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_scale(g, ml_sqdist(g, x[0], x[1]), 0.3f)), 16);
}

ML_TEST(grad_losses_and_distances) {
  gcase m = {.name = "mse", .n_in = 2, .shape = {ml_shape2(5, 3), ml_shape2(5, 3)}, .lo = {-1, -1}, .hi = {1, 1},
             .f = f_mse, .second = true, .wrapped = true};
  check(m, 2e-3, 2e-2);
  gcase b = {.name = "bce", .n_in = 2, .shape = {ml_shape1(8), ml_shape1(8)}, .lo = {-2, 0}, .hi = {2, 1}, .f = f_bce,
             .second = true, .wrapped = true};
  check(b, 2e-3, 2e-2);
  gcase d = {.name = "sqdist", .n_in = 2, .shape = {ml_shape2(4, 3), ml_shape2(5, 3)}, .lo = {-1, -1}, .hi = {1, 1},
             .f = f_sqdist, .second = true, .wrapped = true};
  check(d, 2e-3, 2e-2);
}

static int32_t emb_idx[5] = {3, 0, 3, 6, 1};
static ml_node *f_embed(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_embedding(g, x[0], emb_idx, 5)), 17);
}

ML_TEST(grad_embedding) {
  gcase c = {.name = "embedding", .n_in = 1, .shape = {ml_shape2(7, 3)}, .lo = {-1}, .hi = {1}, .f = f_embed,
             .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
}

/* Column and row bands recombined nonlinearly, so each band's gradient is distinct. */
static ml_node *f_slice(ml_graph *g, ml_node **x, void *ctx) {
  int axis = *(int *)ctx;
  ml_node *a = ml_slice(g, x[0], axis, 1, 2), *b = ml_slice(g, x[0], axis, 0, 2);
  return weighted_sum(g, ml_tanh(g, ml_mul(g, a, ml_sigmoid(g, b))), 18);
}

ML_TEST(grad_slice) {
  static int axes[2] = {0, 1};
  for (int i = 0; i < 2; i++) {
    gcase c = {.name = i ? "slice columns" : "slice rows", .n_in = 1, .shape = {ml_shape2(4, 5)}, .lo = {-1},
               .hi = {1}, .f = f_slice, .ctx = &axes[i], .second = true, .wrapped = true};
    check(c, 2e-3, 2e-2);
  }
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x = ml_zeros(g, 2, (int64_t[]){3, 4});
  CHECK(ml_slice(g, x, 1, 3, 2) == NULL); /* past the end */
  CHECK(ml_graph_status(g) == ML_ERR_SHAPE);
  ml_arena_free(ar);
}

/* h and c2 recombined nonlinearly so both halves of the output carry distinct gradients */
static ml_node *f_lstm_gates(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  ml_node *o = ml_lstm_gates(g, x[0], x[1]);
  if (!o) return NULL;
  int64_t n = x[1]->value.shape[0];
  ml_node *h = ml_slice(g, o, 0, 0, n), *c2 = ml_slice(g, o, 0, n, n);
  return ml_add(g, weighted_sum(g, ml_mul(g, h, ml_tanh(g, c2)), 31), weighted_sum(g, ml_square(g, o), 32));
}

ML_TEST(grad_lstm_gates) {
  gcase c = {.name = "lstm_gates", .n_in = 2, .shape = {ml_shape2(3, 12), ml_shape2(3, 3)}, .lo = {-2, -1.5f},
             .hi = {2, 1.5f}, .f = f_lstm_gates, .second = true, .wrapped = true};
  check(c, 2e-3, 2e-2);
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *z = ml_zeros(g, 2, (int64_t[]){3, 10}), *cc = ml_zeros(g, 2, (int64_t[]){3, 3});
  CHECK(ml_lstm_gates(g, z, cc) == NULL); /* 10 is not 4 H */
  CHECK(ml_graph_status(g) == ML_ERR_SHAPE);
  ml_arena_free(ar);
}

/* A packed batch of 4 steps with 3, 2, 2 and 1 sequences, H = 2; both outputs weighted. */
static const int32_t seq_nt[4] = {3, 2, 2, 1};
static ml_node *f_lstm_seq(ml_graph *g, ml_node **x, void *ctx) {
  (void)ctx;
  return weighted_sum(g, ml_tanh(g, ml_lstm_seq(g, x[0], x[1], seq_nt, 4)), 33);
}

ML_TEST(grad_lstm_seq) {
  gcase c = {.name = "lstm_seq", .n_in = 2, .shape = {ml_shape2(8, 8), ml_shape2(8, 2)}, .lo = {-1.5f, -1},
             .hi = {1.5f, 1}, .f = f_lstm_seq, .second = false, .wrapped = false, .eager_only = true};
  check(c, 2e-3, 2e-2);
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *xw = ml_new(g, 2, (int64_t[]){8, 8}), *w = ml_new(g, 2, (int64_t[]){8, 2});
  ml_test_fill(xw->value.data, 64, 41, -1.5f, 1.5f);
  ml_test_fill(w->value.data, 16, 42, -1, 1);
  xw = ml_leaf(g, xw->value, true), w = ml_leaf(g, w->value, true);
  ml_node *in[2] = {xw, w};
  /* no second order */
  ml_node *y = weighted_sum(g, ml_lstm_seq(g, xw, w, seq_nt, 4), 9), *gg[2];
  CHECK(ml_grad(g, &y, 1, NULL, in, 2, true, gg) != ML_OK);
  ml_arena_free(ar);
}

ML_TEST(sticky_errors_and_shapes) {
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *a = ml_zeros(g, 2, (int64_t[]){2, 3});
  ml_node *b = ml_zeros(g, 2, (int64_t[]){4, 5});
  ml_node *y = ml_matmul(g, a, b, false, false);
  CHECK(y == NULL);
  CHECK(ml_graph_status(g) == ML_ERR_SHAPE);
  CHECK(strstr(ml_last_error(), "matmul") != NULL);
  CHECK(ml_relu(g, a) == NULL); /* sticky: later ops refuse */
  ml_arena_free(ar);
  /* a label out of range is a clear error, not a read past the row */
  ar = ml_arena_new(0, NULL);
  g = ml_graph_new(ar);
  static int32_t bad[2] = {0, 9};
  CHECK(ml_cross_entropy(g, ml_zeros(g, 2, (int64_t[]){2, 3}), bad) == NULL);
  CHECK(ml_graph_status(g) == ML_ERR_ARG);
  ml_arena_free(ar);
}

ML_TEST(no_record_without_create_graph) {
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  float xv[3] = {1, 2, 3};
  ml_node *x = ml_leaf(g, (ml_tensor){xv, {3, 1, 1, 1}, 1, 3}, true);
  ml_node *y = ml_sum(g, ml_square(g, x)), *gx;
  CHECK_OK(ml_grad(g, &y, 1, NULL, &x, 1, false, &gx));
  CHECK(!gx->requires_grad);
  CHECK_NEAR(gx->value.data[2], 6.0, 1e-6);
  CHECK_OK(ml_grad(g, &y, 1, NULL, &x, 1, true, &gx));
  CHECK(gx->requires_grad);
  ml_arena_free(ar);
}

/* A rewind drops the nodes made after the mark (even when the node array grew meanwhile) and
 * keeps the older ones and their values; the next nodes reuse the memory. */
ML_TEST(graph_rewind_drops_newer_nodes) {
  ml_arena *ar = ml_arena_new(4096, NULL);
  ml_graph *g = ml_graph_new(ar);
  float xv[4] = {1, -2, 3, -4};
  ml_node *x = ml_leaf(g, (ml_tensor){xv, {4, 1, 1, 1}, 1, 4}, true);
  ml_node *y = ml_square(g, x);
  ml_graph_mark m = ml_graph_get_mark(g);
  int64_t n0 = ml_graph_size(g);
  size_t used0 = ml_arena_used(ar);
  ml_node *t = y;
  for (int i = 0; i < 1000; i++) t = ml_add(g, t, x); /* grows the node array past its first size */
  CHECK(ml_graph_size(g) == n0 + 1000);
  ml_graph_rewind(g, m);
  CHECK(ml_graph_size(g) == n0);
  CHECK(ml_arena_used(ar) == used0);
  CHECK(ml_graph_node(g, n0 - 1) == y && ml_graph_node(g, n0) == NULL);
  CHECK(y->value.data[3] == 16.0f);
  /* the graph works on: a gradient through the kept nodes */
  ml_node *l = ml_sum(g, y), *gx;
  CHECK_OK(ml_grad(g, &l, 1, NULL, &x, 1, false, &gx));
  CHECK_NEAR(gx->value.data[1], -4.0, 1e-6);
  ml_arena_free(ar);
}

/* Convolutions share one kernel scratch per graph: a second convolution costs its node and
 * output, not another im2col buffer; a rewind past the scratch's growth gives it back, and the
 * convolutions after it still compute the right values. */
ML_TEST(convolutions_share_one_scratch) {
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x = ml_new(g, 4, (int64_t[]){4, 8, 14, 14}), *w = ml_new(g, 4, (int64_t[]){16, 8, 3, 3});
  ml_test_fill(x->value.data, x->value.numel, 31, -1, 1);
  ml_test_fill(w->value.data, w->value.numel, 32, -1, 1);
  ml_conv_shape s;
  CHECK_OK(ml_conv_shape_make(&s, 4, 8, 14, 14, 16, 3, 3, 1, 1));
  size_t scratch = ml_conv2d_scratch_floats(&s) * sizeof(float), out = (size_t)(4 * 16 * 14 * 14) * sizeof(float);
  float *ref = malloc(out);
  ml_conv2d_forward_ref(&s, ref, x->value.data, w->value.data, NULL);
  ml_node *y1 = ml_conv2d(g, x, w, NULL, 1, 1);
  size_t u1 = ml_arena_used(ar);
  ml_node *y2 = ml_conv2d(g, x, w, NULL, 1, 1);
  size_t u2 = ml_arena_used(ar);
  CHECK_MSG(u2 - u1 < out + 1024 && scratch > 1024, "a second convolution took %zu bytes (output %zu, scratch %zu)",
            u2 - u1, out, scratch);
  ml_graph_mark m = ml_graph_get_mark(g);
  ml_node *big = ml_new(g, 4, (int64_t[]){4, 8, 28, 28}); /* grows the scratch after the mark */
  ml_test_fill(big->value.data, big->value.numel, 33, -1, 1);
  CHECK(ml_conv2d(g, big, w, NULL, 1, 1) != NULL);
  ml_graph_rewind(g, m);
  CHECK(ml_arena_used(ar) == u2);
  ml_node *y3 = ml_conv2d(g, x, w, NULL, 1, 1);
  CHECK_OK(ml_graph_status(g));
  CHECK_CLOSE(y1->value.data, ref, 4 * 16 * 14 * 14, 1e-4, 1e-4);
  CHECK(!memcmp(y1->value.data, y2->value.data, out) && !memcmp(y1->value.data, y3->value.data, out));
  free(ref);
  ml_arena_free(ar);
}

/* A sweep without create_graph reuses dead gradient buffers and adds in place; slots that share
 * a buffer (an ADD passes its gradient to both inputs) must still get separate sums. */
static ml_node *f_shared(ml_graph *g, ml_node **x) {
  ml_node *s = ml_add(g, x[0], x[1]);                     /* gradient passed to both x0 and x1 */
  ml_node *t = ml_add(g, ml_mul(g, s, x[2]), ml_square(g, x[0]));
  t = ml_add(g, t, ml_tanh(g, ml_add(g, x[1], s)));        /* later contributions to x1 and s */
  /* a deep chain whose backward is one fused op per node: each layer's gradient dies as soon as
   * the layer below has used it, and the weight's contributions pile into one buffer */
  for (int i = 0; i < 24; i++) t = ml_relu(g, ml_matmul(g, t, x[2], false, false));
  return ml_sum(g, ml_add(g, t, x[0]));
}

ML_TEST(sweep_reuses_buffers_and_keeps_shared_gradients_apart) {
  ml_arena *ar = ml_arena_new(1 << 20, NULL);
  float *xs[3], *ga[3];
  for (int j = 0; j < 3; j++) {
    xs[j] = malloc(1024 * sizeof(float)), ga[j] = malloc(1024 * sizeof(float));
    ml_test_fill(xs[j], 1024, 40 + (uint64_t)j, -1, 1);
  }
  size_t growth[2];
  for (int cg = 0; cg < 2; cg++) {
    ml_arena_reset(ar);
    ml_graph *g = ml_graph_new(ar);
    ml_node *x[3], *gr[3];
    for (int j = 0; j < 3; j++) x[j] = ml_leaf(g, (ml_tensor){xs[j], {32, 32, 1, 1}, 2, 1024}, true);
    ml_node *y = f_shared(g, x);
    size_t before = ml_arena_used(ar);
    CHECK_OK(ml_grad(g, &y, 1, NULL, x, 3, cg == 1, gr));
    growth[cg] = ml_arena_used(ar) - before;
    for (int j = 0; j < 3; j++) {
      if (cg == 0) memcpy(ga[j], gr[j]->value.data, 1024 * sizeof(float));
      else CHECK_CLOSE(gr[j]->value.data, ga[j], 1024, 1e-6, 1e-5); /* recycling sweep == recording sweep */
    }
  }
  /* node records (a few hundred bytes each) remain; the 4 KB gradients do not pile up */
  CHECK_MSG(growth[0] < growth[1] / 4, "sweep without create_graph grew the arena by %zu bytes (recording: %zu)",
            growth[0], growth[1]);
  for (int j = 0; j < 3; j++) free(xs[j]), free(ga[j]);
  ml_arena_free(ar);
}

/* A consuming sweep (ml_graph_consume_next_sweep) hands forward values it has passed to the
 * gradients it still computes. A second-order MAML step on a small conv net (fused first block,
 * conv + batch-norm-pool, a linear head; inner step with create_graph, outer step over the query)
 * must give the same meta-gradient bit for bit as the plain sweep, keep the loss readable, and
 * grow the arena by less. A gradient slot that is a forward value (an ADD passes its seed to
 * both inputs; the seed here is the graph's own ReLU output) keeps that buffer alive. */
static ml_node *small_convnet(ml_graph *g, ml_node *x, ml_node *const *w) {
  ml_node *h = ml_conv_bn_pool(g, x, w[0], w[1], w[2], w[3], 1, 1e-5f, true);        /* 8x8 -> 4x4 */
  h = ml_batch_norm_pool(g, ml_conv2d(g, h, w[4], w[5], 1, 1), w[6], w[7], 1e-5f, true); /* 4x4 -> 2x2 */
  int64_t B = x->value.shape[0];
  return ml_add(g, ml_matmul(g, ml_reshape(g, h, 2, (int64_t[]){B, 8 * 2 * 2}), w[8], false, false), w[9]);
}

ML_TEST(consuming_sweep_matches_and_reuses_forward_values) {
  static const int64_t shapes[10][4] = {{6, 2, 3, 3}, {6}, {6}, {6}, {8, 6, 3, 3}, {8}, {8}, {8}, {32, 5}, {5}};
  static const int nd[10] = {4, 1, 1, 1, 4, 1, 1, 1, 2, 1};
  float *wd[10], *ref[10];
  int64_t cnt[10];
  for (int j = 0; j < 10; j++) {
    cnt[j] = 1;
    for (int d = 0; d < nd[j]; d++) cnt[j] *= shapes[j][d];
    wd[j] = malloc((size_t)cnt[j] * sizeof(float)), ref[j] = malloc((size_t)cnt[j] * sizeof(float));
    ml_test_fill(wd[j], cnt[j], 50 + (uint64_t)j, -0.5, 0.5);
    if (j == 2 || j == 6) for (int64_t k = 0; k < cnt[j]; k++) wd[j][k] += 1.0f; /* gammas near 1 */
  }
  int32_t ys[10] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4}, yq[20];
  for (int i = 0; i < 20; i++) yq[i] = i % 5;
  ml_arena *ar = ml_arena_new(1 << 20, NULL);
  size_t growth[2];
  float loss[2];
  for (int consume = 0; consume < 2; consume++) {
    ml_arena_reset(ar);
    ml_graph *g = ml_graph_new(ar);
    ml_node *w[10], *gw[10], *fast[10];
    for (int j = 0; j < 10; j++) {
      ml_tensor t = ml_shape(nd[j], shapes[j]);
      t.data = wd[j];
      w[j] = ml_leaf(g, t, true);
    }
    ml_node *xs = ml_new(g, 4, (int64_t[]){10, 2, 8, 8}), *xq = ml_new(g, 4, (int64_t[]){20, 2, 8, 8});
    ml_test_fill(xs->value.data, xs->value.numel, 60, -1, 1);
    ml_test_fill(xq->value.data, xq->value.numel, 61, -1, 1);
    ml_node *ls = ml_cross_entropy(g, small_convnet(g, xs, w), ys);
    CHECK_OK(ml_grad(g, &ls, 1, NULL, w, 10, true, gw));
    for (int j = 0; j < 10; j++) fast[j] = ml_sub(g, w[j], ml_scale(g, gw[j], 0.1f));
    ml_node *lq = ml_cross_entropy(g, small_convnet(g, xq, fast), yq);
    CHECK(lq != NULL);
    if (!lq) break;
    loss[consume] = lq->value.data[0];
    size_t before = ml_arena_used(ar);
    if (consume) ml_graph_consume_next_sweep(g);
    CHECK_OK(ml_grad(g, &lq, 1, NULL, w, 10, false, gw));
    growth[consume] = ml_arena_used(ar) - before;
    CHECK(lq->value.data[0] == loss[consume]); /* the outputs stay readable */
    for (int j = 0; j < 10; j++) {
      if (!consume) memcpy(ref[j], gw[j]->value.data, (size_t)cnt[j] * sizeof(float));
      else CHECK_MSG(!memcmp(gw[j]->value.data, ref[j], (size_t)cnt[j] * sizeof(float)), "parameter %d differs", j);
    }
  }
  CHECK_MSG(growth[1] < growth[0] * 3 / 4, "consuming sweep grew the arena by %zu bytes (plain: %zu)", growth[1],
            growth[0]);

  /* the seed is a forward value: gr[y] = gr[r] = gr[a] = r's buffer, which must outlive r's sweep */
  float av[256], gref[256];
  ml_test_fill(av, 256, 70, -1, 1);
  for (int consume = 0; consume < 2; consume++) {
    ml_arena_reset(ar);
    ml_graph *g = ml_graph_new(ar);
    ml_node *a = ml_leaf(g, (ml_tensor){av, {16, 16, 1, 1}, 2, 256}, true), *ga;
    ml_node *r = ml_relu(g, ml_mul(g, a, a));
    ml_node *y = ml_add(g, r, a);
    if (consume) ml_graph_consume_next_sweep(g);
    CHECK_OK(ml_grad(g, &y, 1, &r, &a, 1, false, &ga));
    if (!consume) memcpy(gref, ga->value.data, sizeof gref);
    else CHECK_CLOSE(ga->value.data, gref, 256, 0, 0);
  }
  for (int j = 0; j < 10; j++) free(wd[j]), free(ref[j]);
  ml_arena_free(ar);
}

ML_TEST_LAST(every_op_has_gradient_checks) {
  for (int op = 0; op < ML_OP_COUNT; op++) {
    if (op == ML_OP_LEAF) continue;
    CHECK_MSG(covered1[op], "op %s has no first-order gradient check", ml_op_name((ml_op)op));
    if (ml_op_inner_loop((ml_op)op))
      CHECK_MSG(covered2[op], "op %s can sit in an inner loop but has no second-order check", ml_op_name((ml_op)op));
  }
}
