/* optim: SGD / momentum / Nesterov / Adam / weight decay / clipping against a double-precision
 * reference of the torch.optim update equations written out here; NaN/Inf gradients rejected
 * with nothing changed; Adam minimizes a quadratic. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/optim.h"

#define N 53 /* not a multiple of 8: exercises the loop tails */
#define STEPS 6

/* torch.nn.utils.clip_grad_norm_ then torch.optim.{SGD,Adam}.step(), in double. */
static void ref_step(const ml_optim_config *c, int64_t t, double *p, double *m, double *v, const float *gf, int n) {
  double g[N], norm = 0;
  for (int i = 0; i < n; i++) norm += (double)gf[i] * gf[i];
  norm = sqrt(norm);
  double coef = 1;
  if (c->clip_norm > 0 && c->clip_norm / (norm + 1e-6) < 1) coef = c->clip_norm / (norm + 1e-6);
  for (int i = 0; i < n; i++) g[i] = gf[i] * coef + (double)c->weight_decay * p[i];
  for (int i = 0; i < n; i++) {
    if (c->kind == ML_OPTIM_SGD) {
      double d = g[i];
      if (c->momentum != 0) {
        m[i] = t == 1 ? g[i] : c->momentum * m[i] + g[i]; /* torch: buf = clone(g) on step 1 */
        d = c->nesterov ? g[i] + c->momentum * m[i] : m[i];
      }
      p[i] -= c->lr * d;
    } else {
      m[i] = c->beta1 * m[i] + (1 - (double)c->beta1) * g[i];
      v[i] = c->beta2 * v[i] + (1 - (double)c->beta2) * g[i] * g[i];
      double mhat = m[i] / (1 - pow(c->beta1, (double)t));
      double vhat = v[i] / (1 - pow(c->beta2, (double)t));
      p[i] -= c->lr * mhat / (sqrt(vhat) + c->eps);
    }
  }
}

typedef struct {
  const char *name;
  ml_optim_config cfg;
} ref_case;

static ml_optim_config sgd(float lr, float mom, bool nest, float wd, float clip) {
  ml_optim_config c = ml_optim_defaults(ML_OPTIM_SGD);
  c.lr = lr, c.momentum = mom, c.nesterov = nest, c.weight_decay = wd, c.clip_norm = clip;
  return c;
}
static ml_optim_config adam(float lr, float b1, float b2, float eps, float wd, float clip) {
  ml_optim_config c = ml_optim_defaults(ML_OPTIM_ADAM);
  c.lr = lr, c.beta1 = b1, c.beta2 = b2, c.eps = eps, c.weight_decay = wd, c.clip_norm = clip;
  return c;
}

ML_TEST(matches_torch_reference) {
  const ref_case cases[] = {
      {"sgd", sgd(0.1f, 0, false, 0, 0)},
      {"sgd_momentum", sgd(0.1f, 0.9f, false, 0, 0)},
      {"sgd_nesterov", sgd(0.05f, 0.8f, true, 0, 0)},
      {"sgd_momentum_wd", sgd(0.1f, 0.9f, false, 0.05f, 0)},
      {"sgd_clip", sgd(0.1f, 0.5f, false, 0, 0.5f)},
      {"sgd_clip_inactive", sgd(0.1f, 0, false, 0, 1000)},
      {"adam", adam(0.01f, 0.9f, 0.999f, 1e-8f, 0, 0)},
      {"adam_betas_wd", adam(0.02f, 0.8f, 0.99f, 1e-6f, 0.1f, 0)},
      {"adam_clip_wd", adam(0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.3f)},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const ml_optim_config *c = &cases[k].cfg;
    ml_optim *o = ml_optim_new(c, N);
    CHECK(o != NULL);
    if (!o) continue;
    float p[N], g[N], g_copy[N], pr_f[N];
    double pr[N], mr[N] = {0}, vr[N] = {0};
    ml_test_fill(p, N, 100 + k, -1, 1);
    for (int i = 0; i < N; i++) pr[i] = p[i];
    for (int s = 1; s <= STEPS; s++) {
      ml_test_fill(g, N, 1000 * k + (uint64_t)s, -1.5f, 1.0f);
      memcpy(g_copy, g, sizeof g);
      CHECK_OK(ml_optim_step(o, p, g));
      CHECK_MSG(memcmp(g, g_copy, sizeof g) == 0, "%s: gradient modified", cases[k].name);
      ref_step(c, s, pr, mr, vr, g, N);
    }
    CHECK(o->step == STEPS);
    for (int i = 0; i < N; i++) pr_f[i] = (float)pr[i];
    int before = ml_test_failed_now();
    CHECK_CLOSE(p, pr_f, N, 2e-6, 2e-5);
    if (ml_test_failed_now() != before) fprintf(stderr, "    in case %s\n", cases[k].name);
    /* the parameters must actually have moved */
    float p0[N];
    ml_test_fill(p0, N, 100 + k, -1, 1);
    double moved = 0;
    for (int i = 0; i < N; i++) moved += fabs((double)p[i] - p0[i]);
    CHECK_MSG(moved > 1e-3, "%s: parameters did not move", cases[k].name);
    ml_optim_free(o);
  }
}

/* Closed forms, independent of the reference above. */
ML_TEST(closed_forms) {
  /* first Adam step: mhat = g, vhat = g^2, so p -= lr * g / (|g| + eps) */
  ml_optim_config c = adam(0.1f, 0.9f, 0.999f, 1e-8f, 0, 0);
  ml_optim *o = ml_optim_new(&c, 4);
  float p[4] = {1, -2, 0.5f, 3}, g[4] = {0.25f, -4, 1e-3f, 0};
  CHECK_OK(ml_optim_step(o, p, g));
  CHECK_NEAR(p[0], 1 - 0.1, 1e-6);
  CHECK_NEAR(p[1], -2 + 0.1, 1e-6);
  CHECK_NEAR(p[2], 0.5 - 0.1 * 1e-3 / (1e-3 + 1e-8), 1e-6);
  CHECK(p[3] == 3);
  ml_optim_free(o);
  /* momentum 0.5, constant gradient 1: buffers 1, 1.5, 1.75 -> p = -0.1 * 4.25 */
  c = sgd(0.1f, 0.5f, false, 0, 0);
  o = ml_optim_new(&c, 1);
  float q = 0, one = 1;
  for (int s = 0; s < 3; s++) CHECK_OK(ml_optim_step(o, &q, &one));
  CHECK_NEAR(q, -0.425, 1e-6);
  ml_optim_free(o);
  /* clipping: gradient (3, 4) has norm 5; clipped to 1 -> (0.6, 0.8) */
  CHECK_NEAR(ml_grad_norm((float[]){3, 4}, 2), 5.0, 1e-12);
  c = sgd(1.0f, 0, false, 0, 1.0f);
  o = ml_optim_new(&c, 2);
  float r[2] = {0, 0};
  CHECK_OK(ml_optim_step(o, r, (float[]){3, 4}));
  CHECK_NEAR(r[0], -0.6, 1e-6);
  CHECK_NEAR(r[1], -0.8, 1e-6);
  ml_optim_free(o);
}

ML_TEST(nonfinite_gradient_changes_nothing) {
  const ml_optim_config cfgs[] = {sgd(0.1f, 0.9f, true, 0.01f, 0), adam(0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f)};
  const float bad[] = {NAN, INFINITY, -INFINITY};
  for (size_t k = 0; k < 2; k++) {
    ml_optim *o = ml_optim_new(&cfgs[k], N);
    float p[N], g[N];
    ml_test_fill(p, N, 7, -1, 1);
    ml_test_fill(g, N, 8, -1, 1);
    for (int s = 0; s < 3; s++) CHECK_OK(ml_optim_step(o, p, g)); /* non-zero moments */
    for (size_t b = 0; b < 3; b++) {
      float p_before[N], m_before[N], v_before[N];
      memcpy(p_before, p, sizeof p);
      memcpy(m_before, o->m, sizeof m_before);
      if (o->v) memcpy(v_before, o->v, sizeof v_before);
      float gb[N];
      memcpy(gb, g, sizeof g);
      gb[N - 2] = bad[b]; /* near the end: after the first vector blocks */
      CHECK(ml_optim_step(o, p, gb) == ML_ERR_NUMERIC);
      CHECK(strstr(ml_last_error(), "NaN") != NULL);
      CHECK(memcmp(p, p_before, sizeof p) == 0);
      CHECK(memcmp(o->m, m_before, sizeof m_before) == 0);
      if (o->v) CHECK(memcmp(o->v, v_before, sizeof v_before) == 0);
      CHECK(o->step == 3);
    }
    ml_optim_free(o);
  }
}

ML_TEST(adam_minimizes_quadratic) {
  /* f(x) = 0.5 sum a_i (x_i - c_i)^2 with curvatures spanning 100x */
  enum { M = 20 };
  float x[M], a[M], c[M], g[M];
  ml_test_fill(x, M, 1, -3, 3);
  ml_test_fill(c, M, 2, -2, 2);
  for (int i = 0; i < M; i++) a[i] = 0.1f + 9.9f * (float)i / (M - 1);
  ml_optim_config cfg = adam(0.05f, 0.9f, 0.999f, 1e-8f, 0, 0);
  ml_optim *o = ml_optim_new(&cfg, M);
  double f0 = 0, f = 0;
  for (int i = 0; i < M; i++) f0 += 0.5 * a[i] * (x[i] - c[i]) * (x[i] - c[i]);
  for (int s = 0; s < 1500; s++) {
    for (int i = 0; i < M; i++) g[i] = a[i] * (x[i] - c[i]);
    CHECK_OK(ml_optim_step(o, x, g));
  }
  for (int i = 0; i < M; i++) f += 0.5 * a[i] * (x[i] - c[i]) * (x[i] - c[i]);
  CHECK_MSG(f0 > 1 && f < 1e-4 * f0, "loss %g -> %g", f0, f);
  for (int i = 0; i < M; i++) CHECK_NEAR(x[i], c[i], 0.02);
  ml_optim_free(o);
}

ML_TEST(params_and_config) {
  ml_params *p = ml_params_new();
  CHECK_OK(ml_params_add(p, "w", 2, (int64_t[]){3, 5}));
  CHECK_OK(ml_params_add(p, "b", 1, (int64_t[]){5}));
  CHECK_OK(ml_params_finalize(p));
  ml_optim_config c = ml_optim_defaults(ML_OPTIM_ADAM);
  CHECK_NEAR(c.lr, 1e-3, 1e-9);
  CHECK_NEAR(ml_optim_defaults(ML_OPTIM_SGD).lr, 1e-2, 1e-9);
  CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0 && c.clip_norm == 0);
  ml_optim *o = ml_optim_new(&c, p->numel);
  CHECK(o && o->m && o->v && o->numel == p->numel);
  for (int64_t i = 0; i < p->numel; i++) p->grad[i] = 1;
  p->data[16] = 5;
  CHECK_OK(ml_optim_step_params(o, p));
  CHECK(p->data[16] < 5 && o->step == 1);
  ml_optim_reset(o);
  CHECK(o->step == 0 && o->m[0] == 0 && o->v[0] == 0);
  ml_optim *small = ml_optim_new(&c, p->numel - 1);
  CHECK(ml_optim_step_params(small, p) == ML_ERR_SHAPE);
  ml_optim_free(small);
  ml_optim_free(o);
  ml_params_free(p);
  /* SGD without momentum keeps no buffer */
  ml_optim_config s = ml_optim_defaults(ML_OPTIM_SGD);
  o = ml_optim_new(&s, 10);
  CHECK(o && o->m == NULL && o->v == NULL);
  ml_optim_free(o);
  /* invalid configurations */
  s.nesterov = true;
  CHECK(ml_optim_new(&s, 10) == NULL && ml_last_status() == ML_ERR_ARG);
  c.beta2 = 1.0f;
  CHECK(ml_optim_new(&c, 10) == NULL);
  c = ml_optim_defaults(ML_OPTIM_ADAM);
  c.lr = NAN;
  CHECK(ml_optim_new(&c, 10) == NULL);
  CHECK(ml_optim_new(&s, -1) == NULL);
}
