/* Accuracy and confidence intervals as the few-shot literature reports them (mean over test
 * episodes +- 1.96 standard errors). */
#include <math.h>

#include "metalearn/eval.h"

void ml_mean_ci95(const double *x, int64_t n, double *mean, double *ci95) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  double m = n ? s / (double)n : 0;
  for (int64_t i = 0; i < n; i++) s2 += (x[i] - m) * (x[i] - m);
  *mean = m;
  *ci95 = n > 1 ? 1.96 * sqrt(s2 / (double)(n - 1)) / sqrt((double)n) : 0;
}

int64_t ml_argmax(const float *x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

double ml_accuracy(const float *logits, const int32_t *labels, int64_t n, int64_t k) {
  int64_t right = 0;
  for (int64_t i = 0; i < n; i++) right += ml_argmax(logits + i * k, k) == labels[i];
  return n ? (double)right / (double)n : 0;
}
