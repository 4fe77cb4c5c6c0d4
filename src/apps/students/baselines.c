/* Baseline student models: exercise difficulty alone, 1PL and 2PL IRT fitted by joint MAP
 * (alternating one-dimensional Newton steps over abilities, difficulties and
 * log-discriminations, each with a Gaussian prior), a new student's ability by MAP from the
 * support under N(0, 1), and Elo with Pelanek's uncertainty function. No autograd: the
 * gradients are two lines each and the fits take a fraction of a second. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/students/internal.h"

/* Newton steps are clipped so that a flat likelihood (all answers right) cannot jump far. */
static float clip_step(double s) { return (float)(s > 1.0 ? 1.0 : s < -1.0 ? -1.0 : s); }

float ml_irt_ability(const float *a, const float *b, float ability_sd, const ml_student_log *s) {
  float th = 0;
  double prec = 1.0 / ((double)ability_sd * ability_sd);
  for (int it = 0; it < 30; it++) {
    double g = -th * prec, h = -prec;
    for (int64_t i = 0; i < s->n; i++) {
      int32_t j = s->item[i];
      float aj = a ? a[j] : 1.0f;
      float p = ml__sigmoidf(aj * (th - b[j]));
      g += aj * ((double)s->correct[i] - p);
      h -= (double)aj * aj * p * (1 - p);
    }
    float step = clip_step(-g / h);
    th += step;
    if (fabsf(step) < 1e-5f) break;
  }
  return th;
}

ml_status ml__students_fit_baseline(ml_student_model *m, const ml_answers *tr) {
  int64_t J = m->n_items, S = tr->n_students;
  m->b = calloc((size_t)J, sizeof *m->b);
  if (m->cfg.kind == ML_STUDENT_IRT2) m->a = malloc((size_t)J * sizeof *m->a);
  float *theta = calloc((size_t)(S ? S : 1), sizeof *theta);
  double *gb = malloc((size_t)J * sizeof *gb), *hb = malloc((size_t)J * sizeof *hb);
  double *ga = malloc((size_t)J * sizeof *ga), *ha = malloc((size_t)J * sizeof *ha);
  ml_status st = ML_OK;
  if (!m->b || !theta || !gb || !hb || !ga || !ha || (m->cfg.kind == ML_STUDENT_IRT2 && !m->a)) {
    st = ml_error(ML_ERR_NOMEM, "students: out of memory");
    goto done;
  }
  if (m->a)
    for (int64_t j = 0; j < J; j++) m->a[j] = 1;
  for (int64_t i = 0; i < tr->n_answers; i++)
    if (tr->item[i] < 0 || tr->item[i] >= J) {
      st = ml_error(ML_ERR_ARG, "students: exercise index %d out of range", tr->item[i]);
      goto done;
    }
  if (m->cfg.kind == ML_STUDENT_ELO) {
    /* One pass over the training students in file order: both sides move by U(n) times the
     * surprise, U shrinking as an exercise or student gathers answers. */
    int64_t *nj = calloc((size_t)J, sizeof *nj);
    if (!nj) {
      st = ml_error(ML_ERR_NOMEM, "students: out of memory");
      goto done;
    }
    float al = m->cfg.elo_alpha, be = m->cfg.elo_beta;
    for (int64_t s = 0; s < S; s++) {
      float th = 0;
      for (int64_t i = tr->offsets[s]; i < tr->offsets[s + 1]; i++) {
        int32_t j = tr->item[i];
        float d = (float)tr->correct[i] - ml__sigmoidf(th - m->b[j]);
        th += al / (1 + be * (float)(i - tr->offsets[s])) * d;
        m->b[j] -= al / (1 + be * (float)nj[j]) * d;
        nj[j]++;
      }
    }
    free(nj);
    goto done;
  }
  bool fit_theta = m->cfg.kind != ML_STUDENT_DIFFICULTY;
  double vb = 1.0 / ((double)m->cfg.item_sd * m->cfg.item_sd), va = 1.0 / ((double)m->cfg.disc_sd * m->cfg.disc_sd);
  for (int64_t sweep = 0; sweep < m->cfg.sweeps; sweep++) {
    if (fit_theta) /* abilities given the items: one Newton step each, prior N(0, 1) */
      for (int64_t s = 0; s < S; s++) {
        double g = -theta[s], h = -1;
        for (int64_t i = tr->offsets[s]; i < tr->offsets[s + 1]; i++) {
          int32_t j = tr->item[i];
          float a = m->a ? m->a[j] : 1.0f, p = ml__sigmoidf(a * (theta[s] - m->b[j]));
          g += a * ((double)tr->correct[i] - p);
          h -= (double)a * a * p * (1 - p);
        }
        theta[s] += clip_step(-g / h);
      }
    for (int64_t j = 0; j < J; j++) {
      gb[j] = -m->b[j] * vb, hb[j] = -vb;
      if (m->a) ga[j] = -logf(m->a[j]) * va, ha[j] = -va;
    }
    for (int64_t s = 0; s < S; s++)
      for (int64_t i = tr->offsets[s]; i < tr->offsets[s + 1]; i++) {
        int32_t j = tr->item[i];
        float a = m->a ? m->a[j] : 1.0f, z = theta[s] - m->b[j], p = ml__sigmoidf(a * z);
        double r = (double)tr->correct[i] - p, w = (double)p * (1 - p);
        gb[j] -= a * r;
        hb[j] -= (double)a * a * w;
        if (m->a) { /* d logit / d log a = a z (Fisher scoring for the curvature) */
          ga[j] += r * a * z;
          ha[j] -= w * (double)a * z * a * z;
        }
      }
    for (int64_t j = 0; j < J; j++) {
      m->b[j] += clip_step(-gb[j] / hb[j]);
      if (m->a) m->a[j] = expf(logf(m->a[j]) + clip_step(-ga[j] / ha[j]));
    }
  }
done:
  free(theta), free(gb), free(hb), free(ga), free(ha);
  return st;
}

void ml__students_predict_baseline(const ml_student_model *m, const ml_student_log *support,
                                   const ml_student_log *query, float *p) {
  float th = 0;
  if (m->cfg.kind == ML_STUDENT_IRT1 || m->cfg.kind == ML_STUDENT_IRT2) th = ml_irt_ability(m->a, m->b, m->cfg.ability_sd, support);
  if (m->cfg.kind == ML_STUDENT_ELO)
    for (int64_t i = 0; i < support->n; i++) {
      int32_t j = support->item[i];
      th += m->cfg.elo_alpha / (1 + m->cfg.elo_beta * (float)i) *
            ((float)support->correct[i] - ml__sigmoidf(th - m->b[j]));
    }
  for (int64_t i = 0; i < query->n; i++) {
    int32_t j = query->item[i];
    float a = m->a ? m->a[j] : 1.0f;
    p[i] = ml__sigmoidf(a * (th - m->b[j]));
  }
}
