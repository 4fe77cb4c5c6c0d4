/* SGD (momentum, Nesterov) and Adam over one contiguous parameter block, following the update
 * equations of torch.optim.SGD (dampening 0) and torch.optim.Adam (amsgrad off), with
 * weight decay added to the gradient as torch does and clipping by global norm as
 * torch.nn.utils.clip_grad_norm_ does. A step allocates nothing: one pass checks the gradient
 * (finite) and measures its norm, one pass updates; both are plain loops over the block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/optim.h"

ml_optim_config ml_optim_defaults(ml_optim_kind kind) {
  ml_optim_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.lr = kind == ML_OPTIM_ADAM ? 1e-3f : 1e-2f;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.eps = 1e-8f;
  return c;
}

static float *alloc_zeroed(int64_t n) {
  size_t bytes;
  if (!ml_mul_size((size_t)n, sizeof(float), &bytes)) return NULL;
  if (bytes == 0) bytes = 64;
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes) != 0) return NULL;
  memset(p, 0, bytes);
  return p;
}

static ml_status check_config(const ml_optim_config *c) {
  if (c->kind != ML_OPTIM_SGD && c->kind != ML_OPTIM_ADAM) return ml_error(ML_ERR_ARG, "optim: unknown kind %d", (int)c->kind);
  if (!(c->lr >= 0) || !isfinite(c->lr)) return ml_error(ML_ERR_ARG, "optim: invalid lr %g", (double)c->lr);
  if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
    return ml_error(ML_ERR_ARG, "optim: invalid weight_decay %g", (double)c->weight_decay);
  if (!(c->clip_norm >= 0) || !isfinite(c->clip_norm))
    return ml_error(ML_ERR_ARG, "optim: invalid clip_norm %g", (double)c->clip_norm);
  if (c->kind == ML_OPTIM_SGD) {
    if (!(c->momentum >= 0) || !isfinite(c->momentum))
      return ml_error(ML_ERR_ARG, "optim: invalid momentum %g", (double)c->momentum);
    if (c->nesterov && c->momentum <= 0) return ml_error(ML_ERR_ARG, "optim: nesterov needs momentum > 0");
  } else {
    if (!(c->beta1 >= 0 && c->beta1 < 1)) return ml_error(ML_ERR_ARG, "optim: invalid beta1 %g", (double)c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) return ml_error(ML_ERR_ARG, "optim: invalid beta2 %g", (double)c->beta2);
    if (!(c->eps >= 0) || !isfinite(c->eps)) return ml_error(ML_ERR_ARG, "optim: invalid eps %g", (double)c->eps);
  }
  return ML_OK;
}

ml_optim *ml_optim_new(const ml_optim_config *cfg, int64_t numel) {
  if (!cfg || numel < 0) {
    ml_error(ML_ERR_ARG, "optim_new: invalid arguments");
    return NULL;
  }
  if (check_config(cfg) != ML_OK) return NULL;
  ml_optim *o = calloc(1, sizeof *o);
  if (!o) {
    ml_error(ML_ERR_NOMEM, "optim_new: out of memory");
    return NULL;
  }
  o->cfg = *cfg;
  o->numel = numel;
  bool need_m = cfg->kind == ML_OPTIM_ADAM || cfg->momentum != 0;
  if (need_m && !(o->m = alloc_zeroed(numel))) goto nomem;
  if (cfg->kind == ML_OPTIM_ADAM && !(o->v = alloc_zeroed(numel))) goto nomem;
  return o;
nomem:
  ml_optim_free(o);
  ml_error(ML_ERR_NOMEM, "optim_new: out of memory (%lld floats)", (long long)numel);
  return NULL;
}

void ml_optim_free(ml_optim *o) {
  if (!o) return;
  free(o->m);
  free(o->v);
  free(o);
}

/* Sum of squares in double with 8 independent accumulators (vectorizable without
 * reassociation, and no float overflow for any finite float input). NaN or Inf in the input
 * makes the sum non-finite. */
static double sum_squares(const float *g, int64_t n) {
  double acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
  for (; i < n; i++) acc[0] += (double)g[i] * (double)g[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double ml_grad_norm(const float *grad, int64_t n) { return grad && n > 0 ? sqrt(sum_squares(grad, n)) : 0.0; }

static void sgd_plain(float *restrict p, const float *restrict g, int64_t n, float lr, float scale, float wd) {
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] * scale + wd * p[i];
    p[i] -= lr * d;
  }
}

static void sgd_momentum(float *restrict p, const float *restrict g, float *restrict buf, int64_t n, float lr,
                         float scale, float wd, float mom, bool nesterov) {
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] * scale + wd * p[i];
    float b = mom * buf[i] + d;
    buf[i] = b;
    p[i] -= lr * (nesterov ? d + mom * b : b);
  }
}

/* torch.optim.Adam (single-tensor path): m.lerp_(g, 1-b1); v = b2 v + (1-b2) g^2;
 * denom = sqrt(v) / sqrt(bc2) + eps; p -= (lr / bc1) * m / denom. */
static void adam(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                 float scale, float wd, float b1, float b2, float eps, float step_size, float bc2_sqrt) {
  float c1 = 1.0f - b1, c2 = 1.0f - b2;
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] * scale + wd * p[i];
    float mi = m[i] + c1 * (d - m[i]);
    float vi = b2 * v[i] + c2 * d * d;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
  }
}

ml_status ml_optim_step(ml_optim *o, float *params, const float *grad) {
  if (!o || (o->numel > 0 && (!params || !grad))) return ml_error(ML_ERR_ARG, "optim_step: NULL argument");
  const ml_optim_config *c = &o->cfg;
  int64_t n = o->numel;
  double ss = sum_squares(grad, n);
  if (!isfinite(ss)) {
    /* a finite sum of squares cannot overflow double for float input, so this is NaN or Inf */
    return ml_error(ML_ERR_NUMERIC, "optim_step: gradient holds NaN or Inf (step %lld); parameters unchanged",
                    (long long)o->step);
  }
  float scale = 1.0f;
  if (c->clip_norm > 0) {
    double coef = (double)c->clip_norm / (sqrt(ss) + 1e-6);
    if (coef < 1.0) scale = (float)coef;
  }
  if (c->kind == ML_OPTIM_SGD) {
    if (o->m)
      sgd_momentum(params, grad, o->m, n, c->lr, scale, c->weight_decay, c->momentum, c->nesterov);
    else
      sgd_plain(params, grad, n, c->lr, scale, c->weight_decay);
    o->step++;
    return ML_OK;
  }
  int64_t t = o->step + 1;
  double bc1 = 1.0 - pow((double)c->beta1, (double)t);
  double bc2 = 1.0 - pow((double)c->beta2, (double)t);
  float step_size = (float)((double)c->lr / bc1);
  float bc2_sqrt = (float)sqrt(bc2);
  adam(params, grad, o->m, o->v, n, scale, c->weight_decay, c->beta1, c->beta2, c->eps, step_size, bc2_sqrt);
  o->step = t;
  return ML_OK;
}

ml_status ml_optim_step_params(ml_optim *o, ml_params *p) {
  if (!o || !p) return ml_error(ML_ERR_ARG, "optim_step_params: NULL argument");
  if (!p->finalized) return ml_error(ML_ERR_ARG, "optim_step_params: parameter list not finalized");
  if (p->numel != o->numel)
    return ml_error(ML_ERR_SHAPE, "optim_step_params: optimizer made for %lld floats, parameter block has %lld",
                    (long long)o->numel, (long long)p->numel);
  return ml_optim_step(o, p->data, p->grad);
}

void ml_optim_reset(ml_optim *o) {
  if (!o) return;
  if (o->m) memset(o->m, 0, (size_t)o->numel * sizeof(float));
  if (o->v) memset(o->v, 0, (size_t)o->numel * sizeof(float));
  o->step = 0;
}
