/* The student-model object (fit, predict, predict the whole pool), protocol A (support = the
 * first K answers, query = the rest) and the results table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/students/internal.h"

static const char *kind_names[ML_STUDENT_KIND_COUNT] = {"difficulty", "irt1", "irt2", "elo", "meta"};

const char *ml_student_kind_name(ml_student_kind k) { return k < ML_STUDENT_KIND_COUNT ? kind_names[k] : "?"; }

ml_status ml_student_kind_parse(const char *name, ml_student_kind *out) {
  for (int i = 0; i < ML_STUDENT_KIND_COUNT; i++)
    if (!strcmp(name, kind_names[i])) {
      *out = (ml_student_kind)i;
      return ML_OK;
    }
  return ml_error(ML_ERR_ARG, "unknown student model '%s' (difficulty, irt1, irt2, elo, meta)", name);
}

ml_student_config ml_student_defaults(ml_student_kind kind) {
  ml_student_config c = {.kind = kind, .item_sd = 2.0f, .disc_sd = 0.5f, .ability_sd = 1.0f, .sweeps = 30, .elo_alpha = 1.0f,
                         .elo_beta = 0.05f, .algo = ML_ALGO_METASGD, .dim = 4, .skill_abilities = true,
                         .order_features = true, .k_train = 10, .max_query = 100, .weight_by_length = true, .iterations = 3000,
                         .meta_batch = 32, .inner_steps = 1, .inner_steps_test = 1, .skill_order = true, .inner_lr = 1.0f,
                         .outer_lr = 3e-3f, .eval_every = 500, .threads = 0, .seed = 1};
  return c;
}

ml_student_log ml_student_log_of(const ml_answers *a, int64_t s) {
  int64_t o = a->offsets[s];
  return (ml_student_log){a->item + o, a->skill + o, a->correct + o, ml_answers_len(a, s)};
}

ml_status ml_student_model_fit(const ml_student_config *cfg, int64_t n_items, int64_t n_skills, const ml_qmatrix *q,
                               const ml_answers *train, const ml_answers *valid, ml_student_model **out) {
  *out = NULL;
  if (cfg->kind >= ML_STUDENT_KIND_COUNT) return ml_error(ML_ERR_ARG, "students: unknown model %d", (int)cfg->kind);
  if (n_items < 1 || n_items > INT32_MAX || n_skills < 0 || n_skills > INT32_MAX)
    return ml_error(ML_ERR_ARG, "students: %lld exercises, %lld skills", (long long)n_items, (long long)n_skills);
  if (!train || train->n_students < 1) return ml_error(ML_ERR_ARG, "students: no training students");
  for (int64_t i = 0; i < train->n_answers; i++)
    if (train->item[i] < 0 || train->item[i] >= n_items || train->skill[i] >= n_skills)
      return ml_error(ML_ERR_ARG, "students: training answer %lld has an exercise or skill out of range",
                      (long long)i);
  ml_student_model *m = calloc(1, sizeof *m);
  if (!m) return ml_error(ML_ERR_NOMEM, "students: out of memory");
  m->cfg = *cfg;
  m->n_items = n_items;
  m->n_skills = n_skills;
  m->item_skill = malloc((size_t)n_items * sizeof *m->item_skill);
  if (!m->item_skill) {
    free(m);
    return ml_error(ML_ERR_NOMEM, "students: out of memory");
  }
  for (int64_t j = 0; j < n_items; j++) m->item_skill[j] = -1;
  if (q)
    for (int64_t j = 0; j < n_items && j < q->n_items; j++)
      if (q->offsets[j + 1] > q->offsets[j]) m->item_skill[j] = q->skills[q->offsets[j]];
  for (int64_t i = 0; i < train->n_answers; i++) /* exercises the Q-matrix does not cover */
    if (m->item_skill[train->item[i]] < 0) m->item_skill[train->item[i]] = train->skill[i];
  ml_status st = cfg->kind == ML_STUDENT_META ? ml__students_fit_meta(m, train, valid)
                                              : ml__students_fit_baseline(m, train);
  if (st) {
    ml_student_model_free(m);
    return st;
  }
  *out = m;
  return ML_OK;
}

void ml_student_model_free(ml_student_model *m) {
  if (!m) return;
  ml_algo_free(m->algo);
  ml_model_free(m->model);
  free(m->item_skill);
  free(m->b);
  free(m->a);
  free(m);
}

ml_status ml_student_model_with_difficulties(const ml_student_model *m, const float *b, float ability_sd,
                                             ml_student_model **out) {
  *out = NULL;
  if (m->model || !m->b) return ml_error(ML_ERR_ARG, "student model: only a baseline's difficulties can be replaced");
  if (!(ability_sd > 0) || !isfinite(ability_sd)) return ml_error(ML_ERR_ARG, "student model: ability sd %g", ability_sd);
  if (!b) b = m->b;
  for (int64_t j = 0; j < m->n_items; j++)
    if (!isfinite(b[j])) return ml_error(ML_ERR_ARG, "student model: difficulty %lld is not finite", (long long)j);
  ml_student_model *c = calloc(1, sizeof *c);
  size_t J = (size_t)m->n_items;
  if (!c || !(c->item_skill = malloc(J * sizeof *c->item_skill)) || !(c->b = malloc(J * sizeof *c->b)) ||
      (m->a && !(c->a = malloc(J * sizeof *c->a)))) {
    ml_student_model_free(c);
    return ml_error(ML_ERR_NOMEM, "student model: out of memory");
  }
  c->cfg = m->cfg, c->cfg.ability_sd = ability_sd, c->n_items = m->n_items, c->n_skills = m->n_skills, c->best_iteration = m->best_iteration;
  memcpy(c->item_skill, m->item_skill, J * sizeof *c->item_skill);
  memcpy(c->b, b, J * sizeof *c->b);
  if (m->a) memcpy(c->a, m->a, J * sizeof *c->a);
  *out = c;
  return ML_OK;
}

const ml_student_config *ml_student_model_config(const ml_student_model *m) { return &m->cfg; }
ml_params *ml_student_model_params(ml_student_model *m) { return m->model ? m->model->params : NULL; }
int64_t ml_student_model_best_iteration(const ml_student_model *m) { return m->best_iteration; }
ml_params *ml_student_model_rates(ml_student_model *m) { return m->algo ? ml_algo_extra_params(m->algo) : NULL; }

static ml_status check_log(const ml_student_model *m, const ml_student_log *l, const char *what) {
  for (int64_t i = 0; i < l->n; i++)
    if (l->item[i] < 0 || l->item[i] >= m->n_items || l->skill[i] >= m->n_skills)
      return ml_error(ML_ERR_ARG, "students: %s answer %lld: exercise %d / skill %d out of range", what,
                      (long long)i + 1, l->item[i], l->skill[i]);
  return ML_OK;
}

ml_status ml_student_model_predict(const ml_student_model *m, const ml_student_log *support,
                                   const ml_student_log *query, ml_arena *arena, float *p) {
  ml_status st = check_log(m, support, "support");
  if (!st) st = check_log(m, query, "query");
  if (st) return st;
  if (query->n == 0) return ML_OK;
  if (m->cfg.kind != ML_STUDENT_META) {
    ml__students_predict_baseline(m, support, query, p);
    return ML_OK;
  }
  ml_arena *own = arena ? NULL : ml_arena_new(0, NULL);
  if (!arena && !own) return ML_ERR_NOMEM;
  st = ml__students_predict_meta(m, support, query, arena ? arena : own, p);
  ml_arena_free(own);
  return st;
}

ml_status ml_student_model_predict_pool(const ml_student_model *m, const ml_student_log *support, ml_arena *arena,
                                        float *p_item, float *mastery) {
  int64_t J = m->n_items;
  int32_t *item = malloc((size_t)J * sizeof *item), *skill = malloc((size_t)J * sizeof *skill);
  float *p = malloc((size_t)J * sizeof *p);
  ml_status st = ML_OK;
  if (!item || !skill || !p) st = ml_error(ML_ERR_NOMEM, "students: out of memory");
  if (!st) {
    for (int64_t j = 0; j < J; j++) item[j] = (int32_t)j, skill[j] = m->item_skill[j];
    ml_student_log q = {item, skill, NULL, J};
    st = ml_student_model_predict(m, support, &q, arena, p);
  }
  if (!st && p_item) memcpy(p_item, p, (size_t)J * sizeof *p);
  if (!st && mastery) {
    double *sum = calloc((size_t)m->n_skills + 1, sizeof *sum);
    int64_t *cnt = calloc((size_t)m->n_skills + 1, sizeof *cnt);
    if (!sum || !cnt) st = ml_error(ML_ERR_NOMEM, "students: out of memory");
    for (int64_t j = 0; !st && j < J; j++)
      if (skill[j] >= 0) sum[skill[j]] += p[j], cnt[skill[j]]++;
    for (int64_t k = 0; !st && k < m->n_skills; k++) mastery[k] = cnt[k] ? (float)(sum[k] / (double)cnt[k]) : NAN;
    free(sum), free(cnt);
  }
  free(item), free(skill), free(p);
  return st;
}

/* ------------------------------------------------------------- protocol A ---- */

typedef struct {
  const ml_student_model *m;
  const ml_answers *test;
  const int64_t *kept;  /* test student index of each kept student */
  const int64_t *qoff;  /* query offsets (n_kept + 1) into p / y */
  int64_t k;
  float *p;
  ml_arena **arenas;
  ml_status *status;
} proto_job;

static void proto_one(int64_t i, int thread, void *vjob) {
  proto_job *j = vjob;
  ml_student_log all = ml_student_log_of(j->test, j->kept[i]);
  ml_student_log sup = {all.item, all.skill, all.correct, j->k};
  ml_student_log qry = {all.item + j->k, all.skill + j->k, NULL, all.n - j->k};
  j->status[i] = ml_student_model_predict(j->m, &sup, &qry, j->arenas[thread], j->p + j->qoff[i]);
}

ml_status ml_students_protocol_a(const ml_student_model *m, const ml_answers *test, int64_t k, int64_t n_boot,
                                 uint64_t seed, int threads, ml_students_row *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->column, sizeof out->column, "K=%lld", (long long)k);
  if (k < 0) return ml_error(ML_ERR_ARG, "protocol A: K = %lld", (long long)k);
  double t0 = ml_now();
  int64_t S = test->n_students, n_kept = 0;
  int64_t *kept = malloc((size_t)(S ? S : 1) * sizeof *kept), *qoff = malloc((size_t)(S + 1) * sizeof *qoff);
  if (!kept || !qoff) {
    free(kept), free(qoff);
    return ml_error(ML_ERR_NOMEM, "protocol A: out of memory");
  }
  qoff[0] = 0;
  for (int64_t s = 0; s < S; s++) {
    int64_t len = ml_answers_len(test, s);
    if (len <= k) continue; /* nothing left to predict: dropped and counted */
    kept[n_kept] = s;
    qoff[n_kept + 1] = qoff[n_kept] + len - k;
    n_kept++;
  }
  out->n_students = n_kept;
  out->n_dropped = S - n_kept;
  if (n_kept == 0) {
    free(kept), free(qoff);
    return ml_error(ML_ERR_ARG, "protocol A: no test student has more than %lld answers", (long long)k);
  }
  int64_t nq = qoff[n_kept];
  if (threads <= 0) threads = ml_num_threads();
  float *p = malloc((size_t)nq * sizeof *p);
  uint8_t *y = malloc((size_t)nq);
  ml_arena **arenas = calloc((size_t)threads, sizeof *arenas);
  ml_status *status = calloc((size_t)n_kept, sizeof *status);
  ml_status st = ML_OK;
  if (!p || !y || !arenas || !status) st = ml_error(ML_ERR_NOMEM, "protocol A: out of memory");
  for (int t = 0; !st && t < threads; t++)
    if (!(arenas[t] = ml_arena_new(0, NULL))) st = ML_ERR_NOMEM;
  if (!st) {
    proto_job job = {m, test, kept, qoff, k, p, arenas, status};
    ml_parallel_for(n_kept, threads, proto_one, &job);
    for (int64_t i = 0; i < n_kept && !st; i++) st = status[i];
  }
  if (!st) {
    for (int64_t i = 0; i < n_kept; i++)
      memcpy(y + qoff[i], test->correct + test->offsets[kept[i]] + k, (size_t)(qoff[i + 1] - qoff[i]));
    out->eval_seconds = ml_now() - t0;
    st = ml_binary_report_compute(p, y, qoff, n_kept, n_boot, seed, &out->r);
  }
  for (int t = 0; arenas && t < threads; t++) ml_arena_free(arenas[t]);
  free(arenas), free(status), free(kept);
  if (!st) { /* the row keeps its predictions for paired comparisons */
    out->pred = p, out->label = y, out->offsets = qoff, out->n_groups = n_kept;
    return ML_OK;
  }
  free(p), free(y), free(qoff);
  return st;
}

ml_status ml_students_row_from_predictions(const char *model, const char *column, const float *p,
                                           const uint8_t *y, const int64_t *offsets, int64_t n_groups,
                                           int64_t n_boot, uint64_t seed, ml_students_row *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->model, sizeof out->model, "%s", model);
  snprintf(out->column, sizeof out->column, "%s", column);
  if (n_groups < 1 || offsets[0] != 0) return ml_error(ML_ERR_ARG, "students row: %lld groups", (long long)n_groups);
  for (int64_t g = 0; g < n_groups; g++)
    if (offsets[g + 1] < offsets[g]) return ml_error(ML_ERR_ARG, "students row: offsets decrease at %lld", (long long)g);
  int64_t n = offsets[n_groups];
  out->pred = malloc((size_t)(n ? n : 1) * sizeof *out->pred);
  out->label = malloc((size_t)(n ? n : 1));
  out->offsets = malloc((size_t)(n_groups + 1) * sizeof *out->offsets);
  if (!out->pred || !out->label || !out->offsets) {
    ml_students_row_free(out);
    return ml_error(ML_ERR_NOMEM, "students row: out of memory");
  }
  memcpy(out->pred, p, (size_t)n * sizeof *p);
  memcpy(out->label, y, (size_t)n);
  memcpy(out->offsets, offsets, (size_t)(n_groups + 1) * sizeof *offsets);
  out->n_groups = n_groups;
  out->n_students = n_groups;
  ml_status st = ml_binary_report_compute(p, y, offsets, n_groups, n_boot, seed, &out->r);
  if (st) ml_students_row_free(out);
  return st;
}

void ml_students_row_free(ml_students_row *r) {
  if (!r) return;
  free(r->pred), free(r->label), free(r->offsets);
  r->pred = NULL, r->label = NULL, r->offsets = NULL, r->n_groups = 0;
}

ml_status ml_students_compare(ml_students_row *rows, int64_t n, const bool *is_baseline, int64_t n_boot,
                              uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    rows[i].delta_vs[0] = 0;
    rows[i].delta = (ml_ci){NAN, NAN, NAN};
  }
  for (int64_t i = 0; i < n; i++) {
    if (is_baseline[i] || !rows[i].pred) continue;
    const ml_students_row *best = NULL;
    for (int64_t j = 0; j < n; j++)
      if (is_baseline[j] && rows[j].pred && !strcmp(rows[j].column, rows[i].column) &&
          rows[j].n_groups == rows[i].n_groups && (!best || rows[j].r.auc.value > best->r.auc.value))
        best = &rows[j];
    if (!best || memcmp(best->offsets, rows[i].offsets, (size_t)(best->n_groups + 1) * sizeof(int64_t)) ||
        memcmp(best->label, rows[i].label, (size_t)best->offsets[best->n_groups]))
      continue; /* not the same answers: nothing to pair */
    ml_status st = ml_binary_auc_diff(rows[i].pred, best->pred, rows[i].label, rows[i].offsets, rows[i].n_groups,
                                      n_boot, seed, &rows[i].delta);
    if (st) return st;
    snprintf(rows[i].delta_vs, sizeof rows[i].delta_vs, "%s", best->model);
  }
  return ML_OK;
}

/* ---------------------------------------------------------------- table ---- */

void ml_students_table_print(FILE *f, const char *dataset, const ml_students_row *rows, int64_t n) {
  /* distinct models and columns in order of first appearance */
  const char *models[64], *cols[16];
  int nm = 0, nc = 0;
  for (int64_t i = 0; i < n; i++) {
    int a = 0, b = 0;
    while (a < nm && strcmp(models[a], rows[i].model)) a++;
    if (a == nm && nm < 64) models[nm++] = rows[i].model;
    while (b < nc && strcmp(cols[b], rows[i].column)) b++;
    if (b == nc && nc < 16) cols[nc++] = rows[i].column;
  }
  fprintf(f, "%s: AUC over all query answers [95%% bootstrap CI over students]\n", dataset);
  fprintf(f, "| %-40s |", "model");
  for (int c = 0; c < nc; c++) fprintf(f, " %-21s |", cols[c]);
  fprintf(f, "\n|%s|", "------------------------------------------");
  for (int c = 0; c < nc; c++) fprintf(f, "%s|", "-----------------------");
  fprintf(f, "\n");
  for (int a = 0; a < nm; a++) {
    fprintf(f, "| %-40s |", models[a]);
    for (int c = 0; c < nc; c++) {
      const ml_students_row *r = NULL;
      for (int64_t i = 0; i < n && !r; i++)
        if (!strcmp(rows[i].model, models[a]) && !strcmp(rows[i].column, cols[c])) r = &rows[i];
      char cell[64] = "-";
      if (r) snprintf(cell, sizeof cell, "%.3f [%.3f, %.3f]", r->r.auc.value, r->r.auc.lo, r->r.auc.hi);
      fprintf(f, " %-21s |", cell);
    }
    fprintf(f, "\n");
  }
  bool any_delta = false;
  for (int64_t i = 0; i < n; i++) any_delta |= rows[i].delta_vs[0] != 0;
  if (any_delta) {
    fprintf(f, "\nAUC minus the best baseline of the column (protocol B: DKT) [paired 95%% bootstrap CI over "
               "students]\n");
    /* cells "+0.012 [-0.003, +0.020] vs NAME": as wide as the widest, so the plain text lines up */
    int width = 24;
    for (int64_t i = 0; i < n; i++) {
      int w = rows[i].delta_vs[0] ? snprintf(NULL, 0, "%+.3f [%+.3f, %+.3f] vs %s", rows[i].delta.value,
                                             rows[i].delta.lo, rows[i].delta.hi, rows[i].delta_vs) : 0;
      width = w > width ? w : width;
    }
    fprintf(f, "| %-40s |", "model");
    for (int c = 0; c < nc; c++) fprintf(f, " %-*s |", width, cols[c]);
    fprintf(f, "\n|%s|", "------------------------------------------");
    for (int c = 0; c < nc; c++) {
      for (int k = 0; k < width + 2; k++) fputc('-', f);
      fputc('|', f);
    }
    fprintf(f, "\n");
    for (int a = 0; a < nm; a++) {
      bool has = false;
      for (int64_t i = 0; i < n; i++) has |= !strcmp(rows[i].model, models[a]) && rows[i].delta_vs[0];
      if (!has) continue;
      fprintf(f, "| %-40s |", models[a]);
      for (int c = 0; c < nc; c++) {
        const ml_students_row *r = NULL;
        for (int64_t i = 0; i < n && !r; i++)
          if (!strcmp(rows[i].model, models[a]) && !strcmp(rows[i].column, cols[c]) && rows[i].delta_vs[0]) r = &rows[i];
        char cell[128] = "-";
        if (r)
          snprintf(cell, sizeof cell, "%+.3f [%+.3f, %+.3f] vs %s", r->delta.value, r->delta.lo, r->delta.hi,
                   r->delta_vs);
        fprintf(f, " %-*s |", width, cell);
      }
      fprintf(f, "\n");
    }
    fprintf(f, "\n");
  }
  for (int64_t i = 0; i < n; i++) {
    const ml_students_row *r = &rows[i];
    fprintf(f,
            "  %s %s: auc %.4f [%.4f, %.4f]  student-auc %.4f [%.4f, %.4f] (%lld students)  acc %.4f [%.4f, %.4f]  "
            "log-loss %.4f [%.4f, %.4f]  students %lld (dropped %lld)  answers %lld  fit %.1fs  eval %.1fs\n",
            r->model, r->column, r->r.auc.value, r->r.auc.lo, r->r.auc.hi, r->r.student_auc.value, r->r.student_auc.lo,
            r->r.student_auc.hi, (long long)r->r.n_student_auc, r->r.acc.value, r->r.acc.lo, r->r.acc.hi,
            r->r.log_loss.value, r->r.log_loss.lo, r->r.log_loss.hi, (long long)r->n_students, (long long)r->n_dropped,
            (long long)r->r.n, r->fit_seconds, r->eval_seconds);
  }
}
