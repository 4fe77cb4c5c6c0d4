/* A meta-learned ability prior for the 1PL: how far a new student's first few answers should move
 * their ability. The 1PL adapts a new student by the MAP ability under N(0, sd^2); the fitted
 * training abilities say nothing about the right sd for a student seen through n answers, so sd is
 * learned as a meta-parameter on the protocol's own tasks: each student's first attempts split
 * into a pool and a held-out part, n random pool answers as the support, and the outer objective
 * is the protocol's metric after the adaptation, the held-out AUC pooled over students, averaged
 * over the protocol's n and `resamples` splits. Not the log-likelihood: a pooled AUC ranks
 * students' answers against each other, and on STATICS the sd that minimizes the held-out NLL
 * (1.25) is twice the one that maximizes the pooled AUC. One parameter, so a golden-section search
 * over log sd finds it; students are scored in parallel into fixed slots (the same result at any
 * thread count). The students should be ones the 1PL was not fitted on (the CLI uses fold 1's validation
 * students and a 1PL fitted on fold 1's training students), or the held-out answers look easier
 * than a new student's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/practice/internal.h"
#include "metalearn/eval.h"

typedef struct {
  const float *b;
  const ml_answers *fa;
  const ml_practice_protocol_config *pc;
  const int64_t *kept, *hoff; /* kept students, their held-out offsets (K + 1) */
  int64_t *scratch;             /* per kept student, from soff[i]: 3 n int64 (see student_preds) */
  const int64_t *soff;
  int64_t resamples, htot;
  float sd;
  float *p;   /* resamples x n_ns x htot */
  uint8_t *y;
} prior_job;

static void student_preds(int64_t i, int thread, void *vj) {
  (void)thread;
  prior_job *J = vj;
  const ml_practice_protocol_config *c = J->pc;
  int64_t s = J->kept[i], off = J->fa->offsets[s], n = ml_answers_len(J->fa, s), P = ml_practice_pool_size(c, n);
  const int32_t *item = J->fa->item + off, *skill = J->fa->skill + off;
  const uint8_t *y = J->fa->correct + off;
  /* per student: the split's order, the picks' items, skills and answers (one block) */
  int64_t *idx = J->scratch + J->soff[i];
  int32_t *si = (int32_t *)(idx + n), *ss = si + n;
  uint8_t *sy = (uint8_t *)(ss + n);
  for (int64_t r = 0; r < J->resamples; r++) {
    ml_rng rg;
    ml_rng_init(&rg, ml_rng_key(c->seed, (uint64_t)r, (uint64_t)s), 0x7072);
    for (int64_t k = 0; k < n; k++) idx[k] = k;
    ml_rng_shuffle(&rg, idx, n); /* pool = idx[0, P), held out = the rest */
    ml_rng_shuffle(&rg, idx, P); /* a random order of picks: what the random policy asks */
    for (int64_t k = 0; k < P; k++) si[k] = item[idx[k]], ss[k] = skill[idx[k]], sy[k] = y[idx[k]];
    for (int q = 0; q < c->n_ns; q++) {
      int64_t t = c->ns[q] < P ? c->ns[q] : P;
      ml_student_log sup = {si, ss, sy, t};
      float th = ml_irt_ability(NULL, J->b, J->sd, &sup);
      float *po = J->p + (r * c->n_ns + q) * J->htot + J->hoff[i];
      uint8_t *yo = J->y + (r * c->n_ns + q) * J->htot + J->hoff[i];
      for (int64_t h = P; h < n; h++) {
        po[h - P] = 1.0f / (1.0f + expf(-(th - J->b[item[idx[h]]])));
        yo[h - P] = y[idx[h]];
      }
    }
  }
}

static double objective(prior_job *J, int64_t K, int threads, double log_sd) {
  J->sd = (float)exp(log_sd);
  ml_parallel_for(K, threads, student_preds, J);
  double a = 0;
  int64_t groups = J->resamples * J->pc->n_ns;
  for (int64_t g = 0; g < groups; g++) a += ml_auc(J->p + g * J->htot, J->y + g * J->htot, J->htot);
  return a / (double)groups;
}

ml_status ml_practice_learn_ability_sd(const ml_student_model *m, const ml_answers *students,
                                       const ml_practice_protocol_config *pc, int64_t resamples, float *sd,
                                       double *auc_out) {
  if (ml_student_model_config(m)->kind != ML_STUDENT_IRT1)
    return ml_error(ML_ERR_ARG, "ability prior: learned for the irt1 student model only");
  if (resamples < 1 || pc->n_ns < 1) return ml_error(ML_ERR_ARG, "ability prior: resamples >= 1 and some n");
  ml_answers fa;
  ml_status st = ml_practice_first_attempts(students, &fa);
  if (st) return st;
  int64_t J = ml_student_model_n_items(m), K = 0, htot = 0;
  float *b = malloc((size_t)J * sizeof *b), *p = NULL;
  uint8_t *y = NULL;
  int64_t *kept = malloc((size_t)(fa.n_students + 1) * sizeof *kept), *hoff = malloc((size_t)(fa.n_students + 1) * sizeof *hoff);
  int64_t *soff = malloc((size_t)(fa.n_students + 1) * sizeof *soff), *scratch = NULL;
  if (!b || !kept || !hoff || !soff) st = ml_error(ML_ERR_NOMEM, "ability prior: out of memory");
  for (int64_t k = 0; !st && k < fa.n_answers; k++)
    if (fa.item[k] < 0 || fa.item[k] >= J)
      st = ml_error(ML_ERR_ARG, "ability prior: exercise %d outside the model's %lld", fa.item[k], (long long)J);
  if (!st && (K = ml__practice_keep(&fa, pc, kept, hoff)) == 0)
    st = ml_error(ML_ERR_ARG, "ability prior: no student has %lld distinct exercises", (long long)pc->min_items);
  if (!st) {
    htot = hoff[K], soff[0] = 0;
    for (int64_t i = 0; i < K; i++) soff[i + 1] = soff[i] + 3 * ml_answers_len(&fa, kept[i]);
  }
  size_t cells = (size_t)(resamples * pc->n_ns * htot);
  if (!st && (!(p = malloc(cells * sizeof *p + 8)) || !(y = malloc(cells + 8)) ||
              !(scratch = malloc((size_t)soff[K] * sizeof *scratch + 8))))
    st = ml_error(ML_ERR_NOMEM, "ability prior: out of memory");
  if (!st) {
    ml_student_model_difficulties(m, b);
    prior_job job = {b, &fa, pc, kept, hoff, scratch, soff, resamples, htot, 1.0f, p, y};
    int threads = pc->threads > 0 ? pc->threads : ml_num_threads();
    /* golden section (maximizing) on log sd in [log 0.1, log 5] */
    const double g = (sqrt(5.0) - 1) / 2;
    double lo = log(0.1), hi = log(5.0), x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
    double f1 = objective(&job, K, threads, x1), f2 = objective(&job, K, threads, x2);
    for (int it = 0; it < 25; it++) {
      if (f1 >= f2) hi = x2, x2 = x1, f2 = f1, x1 = hi - g * (hi - lo), f1 = objective(&job, K, threads, x1);
      else lo = x1, x1 = x2, f1 = f2, x2 = lo + g * (hi - lo), f2 = objective(&job, K, threads, x2);
    }
    *sd = (float)exp(f1 >= f2 ? x1 : x2);
    if (auc_out) *auc_out = f1 >= f2 ? f1 : f2;
  }
  free(b), free(kept), free(hoff), free(soff), free(scratch), free(p), free(y);
  ml_answers_free(&fa);
  return st;
}
