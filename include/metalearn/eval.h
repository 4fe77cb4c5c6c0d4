/* eval: metrics and their confidence intervals. */
#ifndef METALEARN_EVAL_H
#define METALEARN_EVAL_H

#include "metalearn/base.h"

/* Mean and half-width of the 95% confidence interval (1.96 standard errors, sample std). */
ML_API void ml_mean_ci95(const double *x, int64_t n, double *mean, double *ci95);
/* Fraction of rows of logits (n, k) whose argmax equals the label. */
ML_API double ml_accuracy(const float *logits, const int32_t *labels, int64_t n, int64_t k);
ML_API int64_t ml_argmax(const float *x, int64_t n);

/* ---- binary predictions (students answering right or wrong) ----
 * p: predicted probabilities of label 1; y: 0/1 labels. */
/* Area under the ROC curve; tied scores count one half (the Mann-Whitney statistic, as
 * sklearn.metrics.roc_auc_score). NAN when y holds only one class. */
ML_API double ml_auc(const float *p, const uint8_t *y, int64_t n);
/* Mean log-loss, with p clamped to [1e-7, 1 - 1e-7]. */
ML_API double ml_log_loss(const float *p, const uint8_t *y, int64_t n);
/* Fraction with (p >= 0.5) == y. */
ML_API double ml_binary_accuracy(const float *p, const uint8_t *y, int64_t n);

/* A metric with its 95% bootstrap interval (percentiles 2.5 / 97.5). */
typedef struct {
  double value, lo, hi;
} ml_ci;

/* Metrics over the answers of many students: group g owns rows [offsets[g], offsets[g+1]).
 * student_auc is the mean of per-student AUCs over the students whose rows hold both labels
 * (n_student_auc of them). The intervals come from n_boot bootstrap resamples of the students
 * (with replacement), drawn from an RNG keyed by seed: the same inputs give the same intervals. */
typedef struct {
  ml_ci auc, student_auc, acc, log_loss;
  int64_t n, n_groups, n_student_auc;
} ml_binary_report;

/* Paired bootstrap of AUC(pa) - AUC(pb) on the same rows and labels: each resample draws the same
 * students for both (the draws of ml_binary_report_compute with that seed), so the interval
 * reflects the difference itself, not two independent intervals. */
ML_API ml_status ml_binary_auc_diff(const float *pa, const float *pb, const uint8_t *y, const int64_t *offsets,
                                    int64_t n_groups, int64_t n_boot, uint64_t seed, ml_ci *out);
ML_API ml_status ml_binary_report_compute(const float *p, const uint8_t *y, const int64_t *offsets, int64_t n_groups,
                                          int64_t n_boot, uint64_t seed, ml_binary_report *out);

#endif
