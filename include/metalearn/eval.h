/* eval: metrics and their confidence intervals. */
#ifndef METALEARN_EVAL_H
#define METALEARN_EVAL_H

#include "metalearn/base.h"

/* Mean and half-width of the 95% confidence interval (1.96 standard errors, sample std). */
ML_API void ml_mean_ci95(const double *x, int64_t n, double *mean, double *ci95);
/* Fraction of rows of logits (n, k) whose argmax equals the label. */
ML_API double ml_accuracy(const float *logits, const int32_t *labels, int64_t n, int64_t k);
ML_API int64_t ml_argmax(const float *x, int64_t n);

#endif
