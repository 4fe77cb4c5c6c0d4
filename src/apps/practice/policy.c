/* Selection policies, calibration, first attempts, learning levels and skill influence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/practice.h"

static const char *policy_names[ML_PRACTICE_POLICY_COUNT] = {"random", "info", "target", "learned"};

const char *ml_practice_policy_name(ml_practice_policy p) {
  return (unsigned)p < ML_PRACTICE_POLICY_COUNT ? policy_names[p] : "?";
}

ml_status ml_practice_policy_parse(const char *name, ml_practice_policy *out) {
  for (int i = 0; i < ML_PRACTICE_POLICY_COUNT; i++)
    if (!strcmp(name, policy_names[i])) {
      *out = (ml_practice_policy)i;
      return ML_OK;
    }
  return ml_error(ML_ERR_ARG, "unknown policy '%s' (random, info, target, learned)", name);
}

ml_practice_calib ml_practice_calib_identity(void) {
  ml_practice_calib c = {1.0f, 0.0f};
  return c;
}

static float logitf(float p) {
  p = p < 1e-6f ? 1e-6f : p > 1 - 1e-6f ? 1 - 1e-6f : p;
  return logf(p / (1 - p));
}

ml_practice_calib_steps ml_practice_calib_steps_identity(void) {
  ml_practice_calib_steps c;
  for (int i = 0; i < ML_PRACTICE_CALIB_STEPS; i++) c.step[i] = ml_practice_calib_identity();
  c.n = 1;
  c.worst_raw = c.worst_calibrated = NAN, c.kept = false;
  return c;
}

ml_practice_calib ml_practice_calib_at(const ml_practice_calib_steps *c, int64_t seen) {
  int n = c->n < 1 ? 1 : c->n > ML_PRACTICE_CALIB_STEPS ? ML_PRACTICE_CALIB_STEPS : c->n;
  return c->step[seen < 0 ? 0 : seen >= n ? n - 1 : seen];
}

float ml_practice_calibrate(ml_practice_calib c, float p) {
  return 1.0f / (1.0f + expf(-(c.slope * logitf(p) + c.intercept)));
}

ml_status ml_practice_calib_fit_prior(const float *p, const uint8_t *y, int64_t n, ml_practice_calib prior,
                                      double precision, ml_practice_calib *out) {
  double m0 = prior.slope, m1 = prior.intercept, w0 = m0, w1 = m1; /* slope, intercept */
  for (int it = 0; it < 50; it++) {
    /* gradient and Hessian of the log-likelihood plus the Gaussian priors */
    double g0 = -(w0 - m0) * precision, g1 = -(w1 - m1) * precision, h00 = -precision, h01 = 0, h11 = -precision;
    for (int64_t i = 0; i < n; i++) {
      double x = logitf(p[i]), q = 1 / (1 + exp(-(w0 * x + w1))), r = y[i] - q, v = q * (1 - q);
      g0 += r * x, g1 += r;
      h00 -= v * x * x, h01 -= v * x, h11 -= v;
    }
    double det = h00 * h11 - h01 * h01;
    if (!(det > 0)) break;
    double d0 = (h11 * g0 - h01 * g1) / det, d1 = (h00 * g1 - h01 * g0) / det;
    w0 -= d0, w1 -= d1;
    if (fabs(d0) + fabs(d1) < 1e-7) break;
  }
  if (!isfinite(w0) || !isfinite(w1)) return ml_error(ML_ERR_NUMERIC, "practice: calibration diverged");
  out->slope = (float)w0, out->intercept = (float)w1;
  return ML_OK;
}

ml_status ml_practice_calib_fit(const float *p, const uint8_t *y, int64_t n, ml_practice_calib *out) {
  return ml_practice_calib_fit_prior(p, y, n, ml_practice_calib_identity(), 1.0, out);
}

void ml_practice_scores(ml_practice_policy pol, const float *p, int64_t n, float target, ml_practice_calib c,
                        ml_rng *rng, float *score) {
  for (int64_t i = 0; i < n; i++) {
    switch (pol) {
      case ML_PRACTICE_RANDOM: score[i] = ml_rng_uniform(rng); break;
      case ML_PRACTICE_INFO: score[i] = p[i] * (1 - p[i]); break;
      case ML_PRACTICE_TARGET: score[i] = -fabsf(ml_practice_calibrate(c, p[i]) - target); break;
      default: score[i] = NAN; break; /* the learned policy scores with its network */
    }
  }
}

int64_t ml_practice_pick(ml_practice_policy pol, const float *p, int64_t n, float target, ml_practice_calib c,
                         ml_rng *rng) {
  if (n <= 0 || (pol != ML_PRACTICE_RANDOM && pol != ML_PRACTICE_INFO && pol != ML_PRACTICE_TARGET)) return -1;
  if (pol == ML_PRACTICE_RANDOM) return (int64_t)ml_rng_below(rng, (uint32_t)n);
  int64_t best = 0;
  float bs = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    float s = pol == ML_PRACTICE_INFO ? p[i] * (1 - p[i]) : -fabsf(ml_practice_calibrate(c, p[i]) - target);
    if (s > bs) bs = s, best = i;
  }
  return best;
}

float ml_practice_balanced_target(float target, int64_t picks, double expected) {
  float t = target * (float)(picks + 1) - (float)expected;
  return t < 0.05f ? 0.05f : t > 0.95f ? 0.95f : t;
}

ml_status ml_practice_first_attempts(const ml_answers *a, ml_answers *out) {
  memset(out, 0, sizeof *out);
  int64_t maxi = 0;
  for (int64_t i = 0; i < a->n_answers; i++)
    if (a->item[i] + 1 > maxi) maxi = a->item[i] + 1;
  int64_t S = a->n_students, N = a->n_answers;
  out->offsets = malloc((size_t)(S + 1) * sizeof *out->offsets);
  out->item = malloc((size_t)(N ? N : 1) * sizeof *out->item);
  out->skill = malloc((size_t)(N ? N : 1) * sizeof *out->skill);
  out->correct = malloc((size_t)(N ? N : 1));
  int64_t *seen = malloc((size_t)(maxi ? maxi : 1) * sizeof *seen); /* last student that answered */
  if (!out->offsets || !out->item || !out->skill || !out->correct || !seen) {
    free(seen);
    ml_answers_free(out);
    return ml_error(ML_ERR_NOMEM, "practice: out of memory");
  }
  for (int64_t j = 0; j < maxi; j++) seen[j] = -1;
  int64_t k = 0;
  out->offsets[0] = 0;
  for (int64_t s = 0; s < S; s++) {
    for (int64_t i = a->offsets[s]; i < a->offsets[s + 1]; i++) {
      int32_t j = a->item[i];
      if (j < 0 || seen[j] == s) continue;
      seen[j] = s;
      out->item[k] = j, out->skill[k] = a->skill[i], out->correct[k] = a->correct[i];
      k++;
    }
    out->offsets[s + 1] = k;
  }
  free(seen);
  out->n_students = S, out->n_answers = k;
  return ML_OK;
}

/* ------------------------------------------------------------- levels ---- */

typedef struct {
  float b;
  int32_t j;
} bj;

static int cmp_bj(const void *x, const void *y) {
  const bj *a = x, *b = y;
  if (a->b != b->b) return a->b < b->b ? -1 : 1;
  return a->j - b->j;
}

void ml_practice_levels_free(ml_practice_levels *l) {
  if (!l) return;
  free(l->item_level), free(l->item_group), free(l->group_skill), free(l->count);
  memset(l, 0, sizeof *l);
}

ml_status ml_practice_levels_build(const float *difficulty, const int32_t *item_skill, int64_t n_items,
                                   int64_t n_skills, int64_t n_levels, ml_practice_levels *out) {
  memset(out, 0, sizeof *out);
  if (n_items < 1 || n_levels < 1 || n_skills < 0)
    return ml_error(ML_ERR_ARG, "practice: %lld exercises, %lld levels", (long long)n_items, (long long)n_levels);
  int64_t *per_skill = calloc((size_t)n_skills + 1, sizeof *per_skill);
  int32_t *skill_group = malloc(((size_t)n_skills + 1) * sizeof *skill_group);
  bj *buf = malloc((size_t)n_items * sizeof *buf);
  out->item_level = malloc((size_t)n_items * sizeof *out->item_level);
  out->item_group = malloc((size_t)n_items * sizeof *out->item_group);
  out->group_skill = malloc(((size_t)n_skills + 1) * sizeof *out->group_skill);
  if (!per_skill || !skill_group || !buf || !out->item_level || !out->item_group || !out->group_skill) {
    free(per_skill), free(skill_group), free(buf);
    ml_practice_levels_free(out);
    return ml_error(ML_ERR_NOMEM, "practice: out of memory");
  }
  for (int64_t j = 0; j < n_items; j++)
    if (item_skill[j] >= 0 && item_skill[j] < n_skills) per_skill[item_skill[j]]++;
  int64_t G = 0;
  for (int64_t k = 0; k < n_skills; k++) {
    skill_group[k] = -1;
    if (per_skill[k] >= n_levels) skill_group[k] = (int32_t)G, out->group_skill[G] = (int32_t)k, G++;
  }
  int32_t shared = -1;
  for (int64_t j = 0; j < n_items; j++) {
    int32_t k = item_skill[j];
    int32_t g = k >= 0 && k < n_skills ? skill_group[k] : -1;
    if (g < 0) {
      if (shared < 0) shared = (int32_t)G, out->group_skill[G] = -1, G++;
      g = shared;
    }
    out->item_group[j] = g;
  }
  out->count = calloc((size_t)(G * n_levels), sizeof *out->count);
  if (!out->count) {
    free(per_skill), free(skill_group), free(buf);
    ml_practice_levels_free(out);
    return ml_error(ML_ERR_NOMEM, "practice: out of memory");
  }
  for (int64_t g = 0; g < G; g++) { /* quantile bins of difficulty within the group */
    int64_t m = 0;
    for (int64_t j = 0; j < n_items; j++)
      if (out->item_group[j] == g) buf[m].b = difficulty[j], buf[m].j = (int32_t)j, m++;
    qsort(buf, (size_t)m, sizeof *buf, cmp_bj);
    for (int64_t r = 0; r < m; r++) {
      int32_t lev = (int32_t)(r * n_levels / m);
      out->item_level[buf[r].j] = lev;
      out->count[g * n_levels + lev]++;
    }
  }
  free(per_skill), free(skill_group), free(buf);
  out->n_items = n_items, out->n_skills = n_skills, out->n_levels = n_levels, out->n_groups = G;
  return ML_OK;
}

void ml_practice_level_mastery(const ml_practice_levels *l, const float *p_item, float *out) {
  int64_t GL = l->n_groups * l->n_levels;
  for (int64_t i = 0; i < GL; i++) out[i] = 0;
  for (int64_t j = 0; j < l->n_items; j++) out[l->item_group[j] * l->n_levels + l->item_level[j]] += p_item[j];
  for (int64_t i = 0; i < GL; i++) out[i] = l->count[i] ? out[i] / (float)l->count[i] : NAN;
}

int64_t ml_practice_path_step(const ml_practice_levels *l, const float *p_item, float up, float down, int32_t *level) {
  float *mast = malloc((size_t)(l->n_groups * l->n_levels) * sizeof *mast);
  if (!mast) return 0;
  ml_practice_level_mastery(l, p_item, mast);
  int64_t moved = 0, L = l->n_levels;
  for (int64_t g = 0; g < l->n_groups; g++) {
    int32_t lev = level[g];
    const float *m = mast + g * L;
    if (lev > 0 && m[lev - 1] < down) level[g] = lev - 1, moved++;
    else if (lev + 1 < L && m[lev] >= up) level[g] = lev + 1, moved++;
  }
  free(mast);
  return moved;
}

/* ---------------------------------------------------------- influence ---- */

ml_status ml_practice_skill_influence(const ml_student_model *m, const int32_t *item_skill, const float *difficulty,
                                      ml_arena *arena, float *out) {
  int64_t J = ml_student_model_n_items(m), K = ml_student_model_n_skills(m);
  int32_t *rep = malloc((size_t)(K ? K : 1) * sizeof *rep);
  bj *buf = malloc((size_t)J * sizeof *buf);
  float *mast = malloc((size_t)(K ? K : 1) * sizeof *mast);
  ml_status st = ML_OK;
  if (!rep || !buf || !mast) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
  for (int64_t k = 0; !st && k < K; k++) { /* the median-difficulty exercise of each skill */
    int64_t n = 0;
    for (int64_t j = 0; j < J; j++)
      if (item_skill[j] == k) buf[n].b = difficulty[j], buf[n].j = (int32_t)j, n++;
    qsort(buf, (size_t)n, sizeof *buf, cmp_bj);
    rep[k] = n ? buf[n / 2].j : -1;
  }
  for (int64_t i = 0; !st && i < K * K; i++) out[i] = 0;
  for (int64_t i = 0; !st && i < K; i++) {
    if (rep[i] < 0) continue;
    int32_t it = rep[i], sk = (int32_t)i;
    uint8_t one = 1;
    ml_student_log sup = {&it, &sk, &one, 1};
    if ((st = ml_student_model_predict_pool(m, &sup, arena, NULL, mast))) break;
    for (int64_t j = 0; j < K; j++) out[i * K + j] = isfinite(mast[j]) ? mast[j] : 0;
  }
  for (int64_t j = 0; !st && j < K; j++) { /* normalise each column over the influencing skills */
    double s = 0;
    for (int64_t i = 0; i < K; i++) s += out[i * K + j];
    for (int64_t i = 0; i < K && s > 0; i++) out[i * K + j] = (float)(out[i * K + j] / s);
  }
  free(rep), free(buf), free(mast);
  return st;
}
