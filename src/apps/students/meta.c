/* The meta-learned student model: an ML_MODEL_CUSTOM model trained through ml_algo with one
 * student per task (ML_TASK_BINARY). Parameters, shared ones first:
 *   b_item (J, 1)     exercise difficulty, initialized from a 1PL fit
 *   u_item (J, dim)   exercise loading on the ability vector (or (S + 1, dim), one per skill,
 *                     with skill_loadings: far fewer parameters when exercises are many)
 *   w_order (3, 1)    weights of the order features f: log1p(earlier successes on the skill in
 *                     the support), log1p(earlier failures), log1p(position)
 *   w_order_skill (S + 1, 3)  the same weights per skill (skill_order)
 * and the per-student head (ANIL adapts only these; MAML and Meta-SGD adapt all):
 *   theta0 (1), theta (dim, 1), theta_skill (S + 1, 1)  (row S: answers without a skill),
 *   theta_pos (1)  the student's own learning slope over log1p(position) (learning_slope)
 * logit = theta0 + u_j . theta + theta_skill[s] - b_j + (w_order + w_order_skill[s]) . f
 *         + theta_pos log1p(position). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/students/internal.h"

typedef struct {
  int64_t b, u, w, ws, t0, t, ts, tp; /* parameter indices, -1 = absent */
} layout;

static layout layout_of(const ml_model *model) {
  const ml_params *p = model->params;
  return (layout){ml_params_find(p, "b_item"),      ml_params_find(p, "u_item"), ml_params_find(p, "w_order"),
                  ml_params_find(p, "w_order_skill"), ml_params_find(p, "theta0"), ml_params_find(p, "theta"),
                  ml_params_find(p, "theta_skill"), ml_params_find(p, "theta_pos")};
}

/* x: (N, ML__SX_COLS) constant rows. */
static ml_node *forward(const ml_model *model, ml_graph *g, ml_node *const *w, ml_node *x) {
  if (!x) return NULL;
  const ml_student_model *m = model->custom_ctx;
  layout L = layout_of(model);
  int64_t N = x->value.shape[0];
  ml_arena *ar = ml_graph_arena(g);
  int32_t *item = ml_arena_alloc(ar, (size_t)(N ? N : 1) * sizeof *item);
  int32_t *skill = ml_arena_alloc(ar, (size_t)(N ? N : 1) * sizeof *skill);
  if (!item || !skill) return NULL;
  const float *xd = x->value.data;
  for (int64_t i = 0; i < N; i++) {
    item[i] = (int32_t)xd[i * ML__SX_COLS + ML__SX_ITEM];
    float s = xd[i * ML__SX_COLS + ML__SX_SKILL];
    skill[i] = s < 0 ? (int32_t)m->n_skills : (int32_t)s;
  }
  ml_node *logit = ml_neg(g, ml_embedding(g, w[L.b], item, N));
  logit = ml_add(g, logit, w[L.t0]);
  if (L.u >= 0)
    logit = ml_add(g, logit,
                   ml_matmul(g, ml_embedding(g, w[L.u], m->cfg.skill_loadings ? skill : item, N), w[L.t], false, false));
  if (L.ts >= 0) logit = ml_add(g, logit, ml_embedding(g, w[L.ts], skill, N));
  if (L.w >= 0 || L.ws >= 0) {
    ml_node *f = ml_new(g, 2, (int64_t[]){N, 3});
    if (!f) return NULL;
    for (int64_t i = 0; i < N; i++)
      for (int c = 0; c < 3; c++) f->value.data[i * 3 + c] = xd[i * ML__SX_COLS + ML__SX_SUCC + c];
    if (L.w >= 0) logit = ml_add(g, logit, ml_matmul(g, f, w[L.w], false, false));
    if (L.ws >= 0) {
      ml_node *ws = ml_embedding(g, w[L.ws], skill, N);
      logit = ml_add(g, logit, ml_reshape(g, ml_sum_rows(g, ml_mul(g, ws, f)), 2, (int64_t[]){N, 1}));
    }
  }
  if (L.tp >= 0) {
    ml_node *pos = ml_new(g, 2, (int64_t[]){N, 1});
    if (!pos) return NULL;
    for (int64_t i = 0; i < N; i++) pos->value.data[i] = xd[i * ML__SX_COLS + ML__SX_POS];
    logit = ml_add(g, logit, ml_mul(g, pos, w[L.tp]));
  }
  return logit;
}

void ml__students_rows(const ml_student_model *m, const ml_student_log *support, const ml_student_log *query,
                       float *xs, float *xq) {
  /* per-skill counts of the support, built up as we go: support row i sees rows < i */
  int64_t S = m->n_skills + 1;
  float succ_small[256], fail_small[256];
  float *succ = S <= 256 ? succ_small : calloc((size_t)S, sizeof *succ);
  float *fail = S <= 256 ? fail_small : calloc((size_t)S, sizeof *fail);
  if (!succ || !fail) { /* no memory for the counts: fall back to no order features */
    if (succ != succ_small) free(succ);
    if (fail != fail_small) free(fail);
    succ = fail = NULL;
  } else if (S <= 256) {
    memset(succ_small, 0, sizeof succ_small);
    memset(fail_small, 0, sizeof fail_small);
  }
  for (int64_t i = 0; i < support->n; i++) {
    float *r = xs + i * ML__SX_COLS;
    int32_t s = support->skill[i] < 0 ? (int32_t)m->n_skills : support->skill[i];
    r[ML__SX_ITEM] = (float)support->item[i];
    r[ML__SX_SKILL] = (float)support->skill[i];
    r[ML__SX_SUCC] = succ ? log1pf(succ[s]) : 0;
    r[ML__SX_FAIL] = fail ? log1pf(fail[s]) : 0;
    r[ML__SX_POS] = log1pf((float)i);
    if (succ) (support->correct[i] ? succ : fail)[s] += 1;
  }
  for (int64_t i = 0; i < query->n; i++) {
    float *r = xq + i * ML__SX_COLS;
    int32_t s = query->skill[i] < 0 ? (int32_t)m->n_skills : query->skill[i];
    r[ML__SX_ITEM] = (float)query->item[i];
    r[ML__SX_SKILL] = (float)query->skill[i];
    r[ML__SX_SUCC] = succ ? log1pf(succ[s]) : 0;
    r[ML__SX_FAIL] = fail ? log1pf(fail[s]) : 0;
    r[ML__SX_POS] = log1pf((float)(support->n + i));
  }
  if (succ && succ != succ_small) free(succ);
  if (fail && fail != fail_small) free(fail);
}

/* An episode from a support and a query in arena memory. */
static ml_status make_episode(const ml_student_model *m, const ml_student_log *sup, const ml_student_log *qry,
                              ml_arena *ar, ml_episode *ep) {
  memset(ep, 0, sizeof *ep);
  int64_t ns = sup->n, nq = qry->n;
  ep->n_way = 1, ep->k_shot = ns, ep->q_query = nq, ep->n_s = ns, ep->n_q = nq;
  ep->xs = ml_tensor_new(ar, 2, (int64_t[]){ns ? ns : 1, ML__SX_COLS});
  ep->xq = ml_tensor_new(ar, 2, (int64_t[]){nq ? nq : 1, ML__SX_COLS});
  ep->ts = ml_tensor_new(ar, 2, (int64_t[]){ns ? ns : 1, 1});
  ep->tq = ml_tensor_new(ar, 2, (int64_t[]){nq ? nq : 1, 1});
  if (!ep->xs.data || !ep->xq.data || !ep->ts.data || !ep->tq.data) return ml_error(ML_ERR_NOMEM, "students: out of memory");
  ep->xs.shape[0] = ns, ep->xs.numel = ns * ML__SX_COLS, ep->ts.shape[0] = ns, ep->ts.numel = ns;
  ep->xq.shape[0] = nq, ep->xq.numel = nq * ML__SX_COLS, ep->tq.shape[0] = nq, ep->tq.numel = nq;
  ml__students_rows(m, sup, qry, ep->xs.data, ep->xq.data);
  for (int64_t i = 0; i < ns; i++) ep->ts.data[i] = sup->correct[i];
  for (int64_t i = 0; i < nq; i++) ep->tq.data[i] = qry->correct ? qry->correct[i] : 0;
  return ML_OK;
}

ml_status ml__students_predict_meta(const ml_student_model *m, const ml_student_log *support,
                                    const ml_student_log *query, ml_arena *arena, float *p) {
  ml_arena_reset(arena);
  ml_episode ep;
  ml_status st = make_episode(m, support, query, arena, &ep);
  if (st) return st;
  if (support->n == 0) { /* nothing to adapt on: the meta-learned initialization */
    ml_graph *g = ml_graph_new(arena);
    ml_node *w[16];
    if (!g || (st = ml_model_leaves(m->model, g, false, w))) return st ? st : ML_ERR_NOMEM;
    ml_node *y = forward(m->model, g, w, ml_leaf(g, ep.xq, false));
    if (!y) return ml_graph_status(g) ? ml_graph_status(g) : ML_ERR_NOMEM;
    for (int64_t i = 0; i < query->n; i++) p[i] = ml__sigmoidf(y->value.data[i]);
    return ML_OK;
  }
  float *logits = ml_arena_alloc(arena, (size_t)query->n * sizeof *logits);
  if (!logits) return ml_error(ML_ERR_NOMEM, "students: out of memory");
  st = ml_algo_predict(m->algo, &ep, arena, logits);
  if (st) return st;
  for (int64_t i = 0; i < query->n; i++) p[i] = ml__sigmoidf(logits[i]);
  return ML_OK;
}

/* ---- meta-training ---- */

typedef struct {
  const ml_student_model *m;
  const ml_answers *train;
  const int64_t *eligible; /* students with more than K answers */
  const double *cum;       /* cumulative sampling weights (query lengths), or NULL = uniform */
  int64_t n_eligible;
} task_src;

static ml_status sample_task(void *vctx, int64_t iteration, int64_t index, ml_arena *ar, ml_episode *out) {
  const task_src *c = vctx;
  const ml_student_config *cfg = &c->m->cfg;
  ml_rng r;
  ml_rng_init(&r, cfg->seed, ml_rng_key((uint64_t)iteration, (uint64_t)index, 0x57d));
  int64_t e = 0;
  if (c->cum) { /* weighted by query length: the pooled AUC counts answers, not students */
    double u = (double)ml_rng_u32(&r) / 4294967296.0 * c->cum[c->n_eligible - 1];
    int64_t lo = 0, hi = c->n_eligible - 1;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (c->cum[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    e = lo;
  } else {
    e = ml_rng_below(&r, (uint32_t)c->n_eligible);
  }
  int64_t s = c->eligible[e];
  ml_student_log all = ml_student_log_of(c->train, s);
  int64_t k = cfg->k_train, rest = all.n - k, nq = rest < cfg->max_query ? rest : cfg->max_query;
  ml_student_log sup = {all.item, all.skill, all.correct, k};
  int32_t *qi = ml_arena_alloc(ar, (size_t)nq * sizeof *qi), *qs = ml_arena_alloc(ar, (size_t)nq * sizeof *qs);
  uint8_t *qc = ml_arena_alloc(ar, (size_t)nq);
  int64_t *pick = ml_arena_alloc(ar, (size_t)rest * sizeof *pick);
  if (!qi || !qs || !qc || !pick) return ml_error(ML_ERR_NOMEM, "students: out of memory");
  /* a random subset of the later answers, kept in time order (positions matter) */
  for (int64_t i = 0; i < rest; i++) pick[i] = i;
  for (int64_t i = 0; i < nq; i++) {
    int64_t j = i + (int64_t)ml_rng_below(&r, (uint32_t)(rest - i));
    int64_t t = pick[i];
    pick[i] = pick[j], pick[j] = t;
  }
  for (int64_t i = 1; i < nq; i++) /* insertion sort of the nq picks */
    for (int64_t j = i; j > 0 && pick[j - 1] > pick[j]; j--) {
      int64_t t = pick[j];
      pick[j] = pick[j - 1], pick[j - 1] = t;
    }
  for (int64_t i = 0; i < nq; i++) {
    qi[i] = all.item[k + pick[i]], qs[i] = all.skill[k + pick[i]], qc[i] = all.correct[k + pick[i]];
  }
  /* positions of the picked rows are their real ones: build with the full query then compact */
  ml_student_log qry = {qi, qs, qc, nq};
  ml_status st = make_episode(c->m, &sup, &qry, ar, out);
  if (st) return st;
  for (int64_t i = 0; i < nq; i++) out->xq.data[i * ML__SX_COLS + ML__SX_POS] = log1pf((float)(k + pick[i]));
  if (cfg->algo == ML_ALGO_REPTILE) {
    /* Reptile never scores a query: its inner loop fits the task's data, which for a training
     * student is the support and the query together (at test it adapts on the support alone) */
    ml_tensor xs = ml_tensor_new(ar, 2, (int64_t[]){k + nq, ML__SX_COLS}), ts = ml_tensor_new(ar, 2, (int64_t[]){k + nq, 1});
    if (!xs.data || !ts.data) return ml_error(ML_ERR_NOMEM, "students: out of memory");
    memcpy(xs.data, out->xs.data, (size_t)(k * ML__SX_COLS) * sizeof(float));
    memcpy(xs.data + k * ML__SX_COLS, out->xq.data, (size_t)(nq * ML__SX_COLS) * sizeof(float));
    memcpy(ts.data, out->ts.data, (size_t)k * sizeof(float));
    memcpy(ts.data + k, out->tq.data, (size_t)nq * sizeof(float));
    out->xs = xs, out->ts = ts, out->n_s = out->k_shot = k + nq;
  }
  return ML_OK;
}

typedef struct {
  float *data, *lr;
} snapshot;

/* The parameter list (zeros) and the algorithm around it, from m->cfg, m->n_items, m->n_skills. */
ml_status ml__students_build_meta(ml_student_model *m) {
  const ml_student_config *cfg = &m->cfg;
  if (cfg->k_train < 1 || cfg->max_query < 1 || cfg->iterations < 0 || cfg->dim < 0 || cfg->dim > 256)
    return ml_error(ML_ERR_ARG, "students: k_train and max_query must be >= 1, dim 0..256");
  if (cfg->algo == ML_ALGO_PROTONET || cfg->algo == ML_ALGO_MATCHINGNET || cfg->algo == ML_ALGO_FINETUNE ||
      cfg->algo >= ML_ALGO_COUNT)
    return ml_error(ML_ERR_ARG, "students: %s does not apply to student models (maml, fomaml, metasgd, anil, reptile)",
                    ml_algo_name(cfg->algo));
  ml_status st = ml_model_custom_new(forward, m, &m->model);
  if (st) return st;
  ml_params *p = m->model->params;
  int64_t J = m->n_items, S = m->n_skills + 1, d = cfg->dim;
  st = ml_params_add(p, "b_item", 2, (int64_t[]){J, 1});
  if (!st && d) st = ml_params_add(p, "u_item", 2, (int64_t[]){cfg->skill_loadings ? S : J, d});
  if (!st && cfg->order_features) st = ml_params_add(p, "w_order", 2, (int64_t[]){3, 1});
  if (!st && cfg->skill_order) st = ml_params_add(p, "w_order_skill", 2, (int64_t[]){S, 3});
  m->model->head_first = p->count;
  if (!st) st = ml_params_add(p, "theta0", 1, (int64_t[]){1});
  if (!st && d) st = ml_params_add(p, "theta", 2, (int64_t[]){d, 1});
  if (!st && cfg->skill_abilities) st = ml_params_add(p, "theta_skill", 2, (int64_t[]){S, 1});
  if (!st && cfg->learning_slope) st = ml_params_add(p, "theta_pos", 1, (int64_t[]){1});
  if (!st) st = ml_params_finalize(p);
  if (st) return st;
  ml_algo_config ac = ml_algo_defaults(cfg->algo);
  ac.task = ML_TASK_BINARY;
  ac.meta_batch = cfg->meta_batch;
  ac.inner_steps = cfg->inner_steps;
  ac.inner_steps_test = cfg->inner_steps_test;
  ac.inner_lr = cfg->inner_lr;
  ac.threads = cfg->threads;
  ac.outer.lr = cfg->outer_lr; /* Reptile: the SGD step towards the adapted weights */
  if (cfg->algo == ML_ALGO_REPTILE) {
    ac.reptile_inner_batch = 32;
    ac.anneal_iterations = cfg->iterations;
  }
  if ((st = ml_algo_new(&ac, m->model, &m->algo))) return st;
  return ML_OK;
}

ml_status ml__students_fit_meta(ml_student_model *m, const ml_answers *train, const ml_answers *valid) {
  const ml_student_config *cfg = &m->cfg;
  ml_status st = ml__students_build_meta(m);
  if (st) return st;
  ml_params *p = m->model->params;
  int64_t J = m->n_items;
  /* difficulties from a 1PL fit: meta-training starts where the best baseline is */
  ml_student_model irt = {.cfg = ml_student_defaults(ML_STUDENT_IRT1), .n_items = J, .n_skills = m->n_skills};
  st = ml__students_fit_baseline(&irt, train);
  if (!st) memcpy(p->items[layout_of(m->model).b].value.data, irt.b, (size_t)J * sizeof(float));
  free(irt.b), free(irt.a);
  if (st) return st;
  layout L = layout_of(m->model);
  if (L.u >= 0) {
    ml_rng r;
    ml_rng_init(&r, cfg->seed, 0x0b17e);
    ml_tensor *u = &p->items[L.u].value;
    for (int64_t i = 0; i < u->numel; i++) u->data[i] = 0.1f * ml_rng_normal(&r);
  }

  int64_t *eligible = malloc((size_t)train->n_students * sizeof *eligible), n_el = 0;
  if (!eligible) return ml_error(ML_ERR_NOMEM, "students: out of memory");
  for (int64_t s = 0; s < train->n_students; s++)
    if (ml_answers_len(train, s) > cfg->k_train) eligible[n_el++] = s;
  if (n_el == 0) {
    free(eligible);
    return ml_error(ML_ERR_ARG, "students: no training student has more than %lld answers", (long long)cfg->k_train);
  }
  double *cum = cfg->weight_by_length ? malloc((size_t)n_el * sizeof *cum) : NULL;
  if (cfg->weight_by_length && !cum) {
    free(eligible);
    return ml_error(ML_ERR_NOMEM, "students: out of memory");
  }
  for (int64_t i = 0; cum && i < n_el; i++)
    cum[i] = (i ? cum[i - 1] : 0) + (double)(ml_answers_len(train, eligible[i]) - cfg->k_train);
  task_src src = {m, train, eligible, cum, n_el};
  ml_params *lr = ml_algo_extra_params(m->algo);
  bool use_valid = valid && valid->n_students > 0 && cfg->eval_every > 0;
  snapshot best = {NULL, NULL};
  double best_auc = -1;
  if (use_valid) {
    best.data = malloc((size_t)p->numel * sizeof(float));
    best.lr = lr ? malloc((size_t)lr->numel * sizeof(float)) : NULL;
    if (!best.data || (lr && !best.lr)) st = ml_error(ML_ERR_NOMEM, "students: out of memory");
  }
  m->best_iteration = cfg->iterations;
  double t0 = ml_now(), loss_acc = 0;
  int64_t loss_n = 0;
  for (int64_t it = 0; it < cfg->iterations && !st; it++) {
    ml_step_stats ss;
    st = ml_algo_train_step(m->algo, sample_task, &src, it, &ss);
    if (st) break;
    loss_acc += ss.loss_query, loss_n++;
    bool last = it + 1 == cfg->iterations;
    if (use_valid && ((it + 1) % cfg->eval_every == 0 || last)) {
      ml_students_row row;
      if ((st = ml_students_protocol_a(m, valid, cfg->k_train, 0, 0, cfg->threads, &row))) break;
      ml_students_row_free(&row);
      if (cfg->verbose)
        fprintf(stderr, "  [%s K=%lld] iteration %lld  query loss %.4f  valid AUC %.4f  %.0fs\n", ml_algo_name(cfg->algo),
                (long long)cfg->k_train, (long long)it + 1, loss_acc / (double)loss_n, row.r.auc.value, ml_now() - t0);
      loss_acc = 0, loss_n = 0;
      if (row.r.auc.value > best_auc) {
        best_auc = row.r.auc.value;
        m->best_iteration = it + 1;
        memcpy(best.data, p->data, (size_t)p->numel * sizeof(float));
        if (lr) memcpy(best.lr, lr->data, (size_t)lr->numel * sizeof(float));
      }
    } else if (cfg->verbose && !use_valid && ((it + 1) % 500 == 0 || last)) {
      fprintf(stderr, "  [%s K=%lld] iteration %lld  query loss %.4f  %.0fs\n", ml_algo_name(cfg->algo),
              (long long)cfg->k_train, (long long)it + 1, loss_acc / (double)loss_n, ml_now() - t0);
      loss_acc = 0, loss_n = 0;
    }
  }
  if (!st && use_valid && best_auc >= 0) {
    memcpy(p->data, best.data, (size_t)p->numel * sizeof(float));
    if (lr) memcpy(lr->data, best.lr, (size_t)lr->numel * sizeof(float));
  }
  free(best.data), free(best.lr), free(eligible), free(cum);
  return st;
}
