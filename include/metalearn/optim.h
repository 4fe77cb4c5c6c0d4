/* optim: SGD (momentum optional, Nesterov optional) and Adam over a parameter block, with
 * gradient clipping by global norm and weight decay. The optimizer state (moments) lives in
 * blocks with the parameter block's layout. */
#ifndef METALEARN_OPTIM_H
#define METALEARN_OPTIM_H

#include "metalearn/params.h"

typedef enum { ML_OPTIM_SGD, ML_OPTIM_ADAM } ml_optim_kind;

typedef struct {
  ml_optim_kind kind;
  float lr;
  float momentum;     /* SGD; 0 = plain SGD */
  bool nesterov;      /* SGD */
  float beta1, beta2; /* Adam (0.9, 0.999) */
  float eps;          /* Adam (1e-8) */
  float weight_decay; /* L2 added to the gradient, as torch.optim does (0) */
  float clip_norm;    /* clip the gradient to this global L2 norm before the step; 0 = off */
} ml_optim_config;

ML_API ml_optim_config ml_optim_defaults(ml_optim_kind kind); /* lr 1e-3 for Adam, 1e-2 for SGD */

typedef struct {
  ml_optim_config cfg;
  int64_t numel;
  int64_t step; /* steps taken */
  float *m;     /* SGD momentum buffer or Adam first moment; NULL when unused */
  float *v;     /* Adam second moment; NULL for SGD */
} ml_optim;

/* The caller frees with ml_optim_free. numel is the parameter block's length. */
ML_API ml_optim *ml_optim_new(const ml_optim_config *cfg, int64_t numel);
ML_API void ml_optim_free(ml_optim *o);
/* One update of params (numel floats) from grad. The gradient is not modified (clipping scales
 * it on the fly). ML_ERR_NUMERIC, with nothing changed, when the gradient holds NaN or Inf. */
ML_API ml_status ml_optim_step(ml_optim *o, float *params, const float *grad);
/* Convenience over a parameter list (its data and grad blocks). */
ML_API ml_status ml_optim_step_params(ml_optim *o, ml_params *p);
ML_API double ml_grad_norm(const float *grad, int64_t n);
ML_API void ml_optim_reset(ml_optim *o); /* zero the moments and the step count */

#endif
