/* Metrics of binary predictions (a student's answer right or wrong): AUC with ties counted one
 * half, log-loss, accuracy at 0.5, and bootstrap intervals over students. The bootstrap sorts
 * the scores once; a resample is a weight per student (how many times it was drawn), so each
 * replicate's AUC is one weighted pass over the sorted rows instead of a new sort. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/eval.h"

/* Row indices sorted by score (ties by index, so the order is deterministic). qsort has no
 * context argument in C11; the key pointer is thread-local so concurrent calls do not mix. */
static _Thread_local const float *tl_key;
static int cmp_tl(const void *a, const void *b) {
  int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
  float x = tl_key[i], y = tl_key[j];
  if (x != y) return x < y ? -1 : 1;
  return (i > j) - (i < j);
}

static int64_t *sorted_order(const float *p, int64_t n) {
  int64_t *o = malloc((size_t)(n ? n : 1) * sizeof *o);
  if (!o) return NULL;
  for (int64_t i = 0; i < n; i++) o[i] = i;
  tl_key = p;
  qsort(o, (size_t)n, sizeof *o, cmp_tl);
  return o;
}

/* AUC over rows in ascending score order, row i weighted by w[group of i] (w NULL = 1). */
static double auc_sorted(const float *p, const uint8_t *y, const int64_t *order, int64_t n, const double *w,
                         const int32_t *group) {
  double neg_below = 0, num = 0, pos_total = 0, neg_total = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    double wp = 0, wn = 0;
    while (j < n && p[order[j]] == p[order[i]]) {
      int64_t r = order[j];
      double wr = w ? w[group[r]] : 1.0;
      if (y[r]) wp += wr;
      else wn += wr;
      j++;
    }
    num += wp * (neg_below + 0.5 * wn);
    neg_below += wn;
    pos_total += wp;
    neg_total += wn;
    i = j;
  }
  return pos_total > 0 && neg_total > 0 ? num / (pos_total * neg_total) : NAN;
}

double ml_auc(const float *p, const uint8_t *y, int64_t n) {
  int64_t *o = sorted_order(p, n);
  if (!o) return NAN;
  double a = auc_sorted(p, y, o, n, NULL, NULL);
  free(o);
  return a;
}

static double row_log_loss(float p, uint8_t y) {
  double q = p < 1e-7f ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : (double)p;
  return -(y ? log(q) : log(1 - q));
}

double ml_log_loss(const float *p, const uint8_t *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += row_log_loss(p[i], y[i]);
  return n ? s / (double)n : NAN;
}

double ml_binary_accuracy(const float *p, const uint8_t *y, int64_t n) {
  int64_t r = 0;
  for (int64_t i = 0; i < n; i++) r += (p[i] >= 0.5f) == (y[i] != 0);
  return n ? (double)r / (double)n : NAN;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static ml_ci percentile_ci(double value, double *reps, int64_t n) {
  ml_ci c = {value, value, value};
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (!isnan(reps[i])) reps[m++] = reps[i];
  if (m < 2) return c;
  qsort(reps, (size_t)m, sizeof *reps, cmp_double);
  c.lo = reps[(int64_t)floor(0.025 * (double)(m - 1))];
  c.hi = reps[(int64_t)ceil(0.975 * (double)(m - 1))];
  return c;
}

ml_status ml_binary_report_compute(const float *p, const uint8_t *y, const int64_t *offsets, int64_t n_groups,
                                   int64_t n_boot, uint64_t seed, ml_binary_report *out) {
  memset(out, 0, sizeof *out);
  if (n_groups < 1 || n_boot < 0) return ml_error(ML_ERR_ARG, "binary report: %lld groups", (long long)n_groups);
  int64_t n = offsets[n_groups];
  int64_t *order = sorted_order(p, n);
  int32_t *group = malloc((size_t)(n ? n : 1) * sizeof *group);
  double *gauc = malloc((size_t)n_groups * sizeof *gauc), *gll = malloc((size_t)n_groups * sizeof *gll);
  double *gacc = malloc((size_t)n_groups * sizeof *gacc), *w = malloc((size_t)n_groups * sizeof *w);
  double *reps = malloc((size_t)(4 * (n_boot ? n_boot : 1)) * sizeof *reps);
  ml_status st = ML_OK;
  if (!order || !group || !gauc || !gll || !gacc || !w || !reps) {
    st = ml_error(ML_ERR_NOMEM, "binary report: out of memory");
    goto done;
  }
  for (int64_t gi = 0; gi < n_groups; gi++) {
    int64_t a = offsets[gi], b = offsets[gi + 1];
    for (int64_t r = a; r < b; r++) group[r] = (int32_t)gi;
    gauc[gi] = ml_auc(p + a, y + a, b - a);
    double ll = 0, ac = 0;
    for (int64_t r = a; r < b; r++) {
      ll += row_log_loss(p[r], y[r]);
      ac += (p[r] >= 0.5f) == (y[r] != 0);
    }
    gll[gi] = ll;
    gacc[gi] = ac;
  }
  /* point estimates, then the same statistics under resampled student weights */
  for (int64_t b = -1; b < n_boot; b++) {
    if (b < 0) {
      for (int64_t gi = 0; gi < n_groups; gi++) w[gi] = 1;
    } else {
      ml_rng r;
      ml_rng_init(&r, seed, ml_rng_key(0xb007, (uint64_t)b, 0));
      memset(w, 0, (size_t)n_groups * sizeof *w);
      for (int64_t k = 0; k < n_groups; k++) w[ml_rng_below(&r, (uint32_t)n_groups)] += 1;
    }
    double wa = 0, sa = 0, wr = 0, sll = 0, sac = 0;
    for (int64_t gi = 0; gi < n_groups; gi++) {
      double rows = (double)(offsets[gi + 1] - offsets[gi]);
      wr += w[gi] * rows;
      sll += w[gi] * gll[gi];
      sac += w[gi] * gacc[gi];
      if (!isnan(gauc[gi])) {
        wa += w[gi];
        sa += w[gi] * gauc[gi];
      }
    }
    double auc = auc_sorted(p, y, order, n, w, group);
    double sauc = wa > 0 ? sa / wa : NAN, acc = wr > 0 ? sac / wr : NAN, ll = wr > 0 ? sll / wr : NAN;
    if (b < 0) {
      out->auc.value = auc, out->student_auc.value = sauc, out->acc.value = acc, out->log_loss.value = ll;
      out->n_student_auc = (int64_t)wa;
    } else {
      reps[b] = auc, reps[n_boot + b] = sauc, reps[2 * n_boot + b] = acc, reps[3 * n_boot + b] = ll;
    }
  }
  out->auc = percentile_ci(out->auc.value, reps, n_boot);
  out->student_auc = percentile_ci(out->student_auc.value, reps + n_boot, n_boot);
  out->acc = percentile_ci(out->acc.value, reps + 2 * n_boot, n_boot);
  out->log_loss = percentile_ci(out->log_loss.value, reps + 3 * n_boot, n_boot);
  out->n = n;
  out->n_groups = n_groups;
done:
  free(order), free(group), free(gauc), free(gll), free(gacc), free(w), free(reps);
  return st;
}

/* Resample b's student weights (b < 0: all ones), the same draws as the report's bootstrap. */
static void draw_weights(double *w, int64_t n_groups, uint64_t seed, int64_t b) {
  if (b < 0) {
    for (int64_t g = 0; g < n_groups; g++) w[g] = 1;
    return;
  }
  ml_rng r;
  ml_rng_init(&r, seed, ml_rng_key(0xb007, (uint64_t)b, 0));
  memset(w, 0, (size_t)n_groups * sizeof *w);
  for (int64_t k = 0; k < n_groups; k++) w[ml_rng_below(&r, (uint32_t)n_groups)] += 1;
}

ml_status ml_binary_auc_diff(const float *pa, const float *pb, const uint8_t *y, const int64_t *offsets,
                             int64_t n_groups, int64_t n_boot, uint64_t seed, ml_ci *out) {
  *out = (ml_ci){NAN, NAN, NAN};
  if (n_groups < 1 || n_boot < 0) return ml_error(ML_ERR_ARG, "AUC difference: %lld groups", (long long)n_groups);
  int64_t n = offsets[n_groups];
  int64_t *oa = sorted_order(pa, n), *ob = sorted_order(pb, n);
  int32_t *group = malloc((size_t)(n ? n : 1) * sizeof *group);
  double *w = malloc((size_t)n_groups * sizeof *w), *reps = malloc((size_t)(n_boot ? n_boot : 1) * sizeof *reps);
  ml_status st = ML_OK;
  if (!oa || !ob || !group || !w || !reps) st = ml_error(ML_ERR_NOMEM, "AUC difference: out of memory");
  for (int64_t g = 0; !st && g < n_groups; g++)
    for (int64_t r = offsets[g]; r < offsets[g + 1]; r++) group[r] = (int32_t)g;
  double value = NAN;
  for (int64_t b = -1; !st && b < n_boot; b++) {
    draw_weights(w, n_groups, seed, b);
    double d = auc_sorted(pa, y, oa, n, w, group) - auc_sorted(pb, y, ob, n, w, group);
    if (b < 0) value = d;
    else reps[b] = d;
  }
  if (!st) *out = percentile_ci(value, reps, n_boot);
  free(oa), free(ob), free(group), free(w), free(reps);
  return st;
}
