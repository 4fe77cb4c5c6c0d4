/* Saving and loading student models: one safetensors file, configuration in its metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/students/internal.h"
#include "metalearn/io.h"

#define FORMAT "metalearn-students-1"

ml_status ml_student_model_save(const ml_student_model *m, const char *path) {
  const ml_student_config *c = &m->cfg;
  char v[24][32];
  const char *keys[24];
  int nk = 0;
#define KV(key, fmt, val) (keys[nk] = key, snprintf(v[nk], sizeof v[nk], fmt, val), nk++)
  KV("kind", "%s", ml_student_kind_name(c->kind));
  KV("algo", "%s", ml_algo_name(c->algo));
  KV("n_items", "%lld", (long long)m->n_items);
  KV("n_skills", "%lld", (long long)m->n_skills);
  KV("dim", "%lld", (long long)c->dim);
  KV("skill_abilities", "%d", (int)c->skill_abilities);
  KV("order_features", "%d", (int)c->order_features);
  KV("skill_order", "%d", (int)c->skill_order);
  KV("skill_loadings", "%d", (int)c->skill_loadings);
  KV("learning_slope", "%d", (int)c->learning_slope);
  KV("k_train", "%lld", (long long)c->k_train);
  KV("inner_steps", "%lld", (long long)c->inner_steps);
  KV("inner_steps_test", "%lld", (long long)c->inner_steps_test);
  KV("inner_lr", "%.9g", (double)c->inner_lr);
  KV("elo_alpha", "%.9g", (double)c->elo_alpha);
  KV("elo_beta", "%.9g", (double)c->elo_beta);
  KV("ability_sd", "%.9g", (double)c->ability_sd);
  KV("best_iteration", "%lld", (long long)m->best_iteration);
#undef KV
  ml_kv meta[25];
  meta[0] = (ml_kv){"format", FORMAT};
  for (int i = 0; i < nk; i++) meta[i + 1] = (ml_kv){keys[i], v[i]};
  const ml_params *p = m->model ? m->model->params : NULL;
  const ml_params *lr = m->algo ? ml_algo_extra_params(m->algo) : NULL;
  int64_t nt = 1 + (m->b ? 1 : 0) + (m->a ? 1 : 0) + (p ? p->count : 0) + (lr ? lr->count : 0);
  ml_named_tensor *t = calloc((size_t)nt, sizeof *t);
  float *is = malloc((size_t)m->n_items * sizeof *is);
  char(*names)[ML_PARAM_NAME_MAX + 8] = calloc((size_t)(lr ? lr->count : 1), sizeof *names);
  if (!t || !is || !names) {
    free(t), free(is), free(names);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  }
  for (int64_t j = 0; j < m->n_items; j++) is[j] = (float)m->item_skill[j];
  int64_t k = 0;
  t[k++] = (ml_named_tensor){"item_skill", {is, {m->n_items, 1, 1, 1}, 1, m->n_items}};
  if (m->b) t[k++] = (ml_named_tensor){"b", {m->b, {m->n_items, 1, 1, 1}, 1, m->n_items}};
  if (m->a) t[k++] = (ml_named_tensor){"a", {m->a, {m->n_items, 1, 1, 1}, 1, m->n_items}};
  for (int64_t i = 0; p && i < p->count; i++) t[k++] = (ml_named_tensor){p->items[i].name, p->items[i].value};
  for (int64_t i = 0; lr && i < lr->count; i++) {
    snprintf(names[i], sizeof names[i], "rate.%s", lr->items[i].name);
    t[k++] = (ml_named_tensor){names[i], lr->items[i].value};
  }
  ml_status st = ml_safetensors_write(path, t, k, meta, nk + 1);
  free(t), free(is), free(names);
  return st;
}

static ml_status read_named(const ml_safetensors *f, const char *path, const char *name, float *dst, int64_t numel) {
  int64_t i = ml_safetensors_find(f, name);
  if (i < 0) return ml_error(ML_ERR_FORMAT, "%s: no tensor '%s'", path, name);
  ml_tensor s = ml_safetensors_shape(f, i);
  if (s.numel != numel)
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%s' has %lld values, the model wants %lld", path, name,
                    (long long)s.numel, (long long)numel);
  return ml_safetensors_read_f32(f, i, dst);
}

static ml_status meta_int(const ml_safetensors *f, const char *path, const char *key, int64_t lo, int64_t hi,
                          int64_t *out) {
  const char *v = ml_safetensors_meta(f, key);
  char *end;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || *end || end == v || x < lo || x > hi)
    return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' missing or out of range", path, key);
  *out = x;
  return ML_OK;
}

static ml_status meta_float(const ml_safetensors *f, const char *path, const char *key, float *out) {
  const char *v = ml_safetensors_meta(f, key);
  char *end;
  double x = v ? strtod(v, &end) : 0;
  if (!v || *end || end == v || !(x == x)) return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' missing or bad", path, key);
  *out = (float)x;
  return ML_OK;
}

ml_status ml_student_model_load(const char *path, int threads, ml_student_model **out) {
  *out = NULL;
  ml_safetensors *f;
  ml_status st = ml_safetensors_open(path, &f);
  if (st) return st;
  ml_student_model *m = calloc(1, sizeof *m);
  const char *fmt = ml_safetensors_meta(f, "format");
  if (!m) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  else if (!fmt || strcmp(fmt, FORMAT)) st = ml_error(ML_ERR_FORMAT, "%s: not a metalearn student model", path);
  ml_student_config *c = m ? &m->cfg : NULL;
  const char *kind = st ? NULL : ml_safetensors_meta(f, "kind"), *algo = st ? NULL : ml_safetensors_meta(f, "algo");
  if (!st && (!kind || !algo)) st = ml_error(ML_ERR_FORMAT, "%s: metadata 'kind' or 'algo' missing", path);
  ml_student_kind kd = ML_STUDENT_IRT1;
  if (!st && (st = ml_student_kind_parse(kind, &kd))) st = ml_error(st, "%s: %s", path, ml_last_error());
  if (!st) {
    *c = ml_student_defaults(kd);
    c->threads = threads;
    if ((st = ml_algo_parse(algo, &c->algo))) st = ml_error(st, "%s: %s", path, ml_last_error());
  }
  int64_t v[10];
  static const char *ints[10] = {"n_items", "n_skills", "dim", "skill_abilities", "order_features", "skill_order",
                                 "skill_loadings", "learning_slope", "k_train", "inner_steps"};
  static const int64_t his[10] = {INT32_MAX - 1, INT32_MAX - 1, 256, 1, 1, 1, 1, 1, INT32_MAX, 1000};
  for (int i = 0; i < 10 && !st; i++) st = meta_int(f, path, ints[i], i == 0 || i == 8 ? 1 : 0, his[i], &v[i]);
  int64_t steps_test = 0, best = 0;
  if (!st) st = meta_int(f, path, "inner_steps_test", 0, 1000, &steps_test);
  if (!st) st = meta_int(f, path, "best_iteration", 0, INT64_MAX, &best);
  if (!st) st = meta_float(f, path, "inner_lr", &c->inner_lr);
  if (!st) st = meta_float(f, path, "elo_alpha", &c->elo_alpha);
  if (!st) st = meta_float(f, path, "elo_beta", &c->elo_beta);
  /* files from before the learned ability prior have no ability_sd: the N(0, 1) they were used with */
  if (!st && ml_safetensors_meta(f, "ability_sd")) st = meta_float(f, path, "ability_sd", &c->ability_sd);
  if (!st && !(c->ability_sd > 0 && c->ability_sd < 1e3f))
    st = ml_error(ML_ERR_FORMAT, "%s: metadata 'ability_sd' out of range", path);
  if (!st) {
    m->n_items = v[0], m->n_skills = v[1], c->dim = v[2], c->skill_abilities = v[3], c->order_features = v[4];
    c->skill_order = v[5], c->skill_loadings = v[6], c->learning_slope = v[7], c->k_train = v[8];
    c->inner_steps = v[9], c->inner_steps_test = steps_test, c->iterations = 0;
    m->best_iteration = best;
    m->item_skill = malloc((size_t)m->n_items * sizeof *m->item_skill);
    float *is = malloc((size_t)m->n_items * sizeof *is);
    if (!m->item_skill || !is) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = read_named(f, path, "item_skill", is, m->n_items);
    for (int64_t j = 0; !st && j < m->n_items; j++) {
      if (!(is[j] >= -1 && is[j] < (float)m->n_skills)) st = ml_error(ML_ERR_FORMAT, "%s: item_skill out of range", path);
      else m->item_skill[j] = (int32_t)is[j];
    }
    free(is);
  }
  if (!st && kd != ML_STUDENT_META) {
    m->b = malloc((size_t)m->n_items * sizeof *m->b);
    if (!m->b) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = read_named(f, path, "b", m->b, m->n_items);
    if (!st && kd == ML_STUDENT_IRT2) {
      m->a = malloc((size_t)m->n_items * sizeof *m->a);
      if (!m->a) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
      if (!st) st = read_named(f, path, "a", m->a, m->n_items);
    }
  }
  if (!st && kd == ML_STUDENT_META && !(st = ml__students_build_meta(m))) {
    ml_params *p = m->model->params, *lr = ml_algo_extra_params(m->algo);
    for (int64_t i = 0; i < p->count && !st; i++)
      st = read_named(f, path, p->items[i].name, p->items[i].value.data, p->items[i].value.numel);
    char name[ML_PARAM_NAME_MAX + 8];
    for (int64_t i = 0; lr && i < lr->count && !st; i++) {
      snprintf(name, sizeof name, "rate.%s", lr->items[i].name);
      st = read_named(f, path, name, lr->items[i].value.data, lr->items[i].value.numel);
    }
  }
  ml_safetensors_close(f);
  if (st) {
    ml_student_model_free(m);
    return st;
  }
  *out = m;
  return ML_OK;
}

void ml_student_model_difficulties(const ml_student_model *m, float *b) {
  if (m->model) {
    const ml_params *p = m->model->params;
    memcpy(b, p->items[ml_params_find(p, "b_item")].value.data, (size_t)m->n_items * sizeof *b);
  } else {
    for (int64_t j = 0; j < m->n_items; j++) b[j] = m->b[j] * (m->a ? m->a[j] : 1.0f);
  }
}

int64_t ml_student_model_n_items(const ml_student_model *m) { return m->n_items; }
int64_t ml_student_model_n_skills(const ml_student_model *m) { return m->n_skills; }
