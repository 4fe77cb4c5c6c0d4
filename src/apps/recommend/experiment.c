/* The cold-start experiment: for each fold (and for the new-item split), fit the baselines on
 * the training users, tune their one knob on the validation users, meta-train the networks with
 * early stopping on validation, then score every method on the test users at every K and
 * scenario. Per-user metrics are pooled over folds (every eligible user is tested once) and
 * printed as mean +- 95% CI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/recommend/internal.h"
#include "metalearn/eval.h"
#include "metalearn/io.h"

static const char *method_names[REC_METHODS] = {"global", "item", "user", "itembias", "damped",
                                                "mf", "finetune", "melu", "metarec", "ridge"};
static const char *method_labels[REC_METHODS] = {"global mean", "item mean", "user mean", "item mean + user bias",
                                                 "damped user bias", "MF fold-in", "pretrain + finetune",
                                                 "MeLU", "metarec (ours)", "meta-ridge (ours)"};
#define NK 5
static const int64_t Ks[NK] = {1, 3, 5, 10, ML_REC_K_FULL};

ml_rec_experiment ml_rec_experiment_defaults(void) {
  ml_rec_experiment e = {.protocol = ml_rec_protocol_defaults(), .folds_run = 5, .methods = "all",
                         .algo = ML_ALGO_MAML, .iterations = 600, .meta_batch = 32, .inner_steps = 5,
                         .inner_steps_test = 5, .inner_lr = 0.01f, .metarec_lr = 0.3f, .metarec_steps = 10,
                         .metarec_outer_lr = 3e-3f, .metarec_meta_batch = 128, .metarec_iterations = 1500,
                         .metarec_tune_scale = true, .ridge_iterations = 1000, .ridge_meta_batch = 128, .ridge_lr = 0.02f, .outer_lr = 1e-3f, .clip = 10.0f,
                         .eval_every = 50, .threads = 0, .metarec = ml_rec_model_defaults(ML_REC_METAREC)};
  for (int s = 0; s < ML_REC_SCENARIOS; s++) e.scenarios[s] = true;
  return e;
}

/* ---- per-user metric accumulators ---- */
typedef struct {
  double *v[5]; /* mae, rmse, ndcg1, ndcg3, ndcg3 of a random ranking */
  int64_t n, cap;
} acc_t;

static bool acc_push(acc_t *a, ml_rec_metrics m, double rnd) {
  if (a->n == a->cap) {
    int64_t c = a->cap ? a->cap * 2 : 256;
    for (int j = 0; j < 5; j++) {
      double *p = realloc(a->v[j], (size_t)c * sizeof(double));
      if (!p) return false;
      a->v[j] = p;
    }
    a->cap = c;
  }
  a->v[0][a->n] = m.mae, a->v[1][a->n] = m.rmse, a->v[2][a->n] = m.ndcg1, a->v[3][a->n] = m.ndcg3, a->v[4][a->n] = rnd;
  a->n++;
  return true;
}

typedef struct {
  acc_t acc[REC_METHODS][ML_REC_SCENARIOS][NK];
  double train_s[REC_METHODS]; /* summed over folds */
  int64_t iters[REC_METHODS], epoch_users; /* meta-iterations run; training tasks of the last split */
  double eval_s;
  int64_t users[ML_REC_SCENARIOS];
} results;

/* ---- evaluation of a user list under one scenario ---- */
typedef struct {
  const ml_rec_split *s;
  ml_rec_scenario sc;
  const int64_t *users;
  bool on[REC_METHODS];
  ml_algo *algo[REC_METHODS];
  const rec_mf *mf; /* MF fold-in's and meta-ridge's tables */
  const rec_ridge *ridge;
  double lam_damped, lam_mf, rate_scale;
  ml_arena **arenas;
  ml_rec_metrics *met; /* (user, k, method) */
  double *rnd;         /* (user, k) */
  uint8_t *valid;      /* (user, k) */
  ml_status *status;   /* per user */
} eval_ctx;

static void eval_user(int64_t i, int thread, void *vctx) {
  eval_ctx *c = vctx;
  const ml_ratings *r = c->s->r;
  ml_arena *ar = c->arenas[thread];
  ml_arena_reset(ar);
  int64_t u = c->users[i], n = r->user_offset[u + 1] - r->user_offset[u];
  int64_t *sup = ml_arena_alloc(ar, (size_t)n * sizeof(int64_t) + 8), *qry = ml_arena_alloc(ar, (size_t)n * sizeof(int64_t) + 8);
  float *pred = ml_arena_alloc(ar, (size_t)n * sizeof(float) + 8), *truth = ml_arena_alloc(ar, (size_t)n * sizeof(float) + 8);
  ml_status st = sup && qry && pred && truth ? ML_OK : ml_error(ML_ERR_NOMEM, "evaluation: arena exhausted");
  for (int64_t k = 0; k < NK && !st; k++) {
    int64_t ns, nq;
    c->valid[i * NK + k] = ml_rec_user_sets(c->s, u, c->sc, Ks[k], sup, &ns, qry, &nq);
    if (!c->valid[i * NK + k]) continue;
    for (int64_t j = 0; j < nq; j++) truth[j] = r->rating[qry[j]];
    c->rnd[i * NK + k] = ml_rec_ndcg_random(truth, nq, 3);
    for (int m = 0; m < REC_METHODS && !st; m++) {
      if (!c->on[m]) continue;
      if (m <= REC_DAMPED) ml__rec_baseline(m, c->s, c->lam_damped, sup, ns, qry, nq, pred);
      else if (m == REC_MF) ml__mf_predict(c->mf, c->s, c->lam_mf, sup, ns, qry, nq, pred);
      else if (m == REC_RIDGE) ml__ridge_predict(c->ridge, c->mf, c->s, sup, ns, qry, nq, pred);
      else {
        ml_episode ep;
        st = ml_rec_episode(c->s, sup, ns, qry, nq, ar, &ep);
        if (!st) st = ml_algo_predict(c->algo[m], &ep, ar, pred);
      }
      /* predictions outside the scale are clipped to it, as any deployed recommender would */
      for (int64_t j = 0; j < nq; j++)
        pred[j] = pred[j] < r->rating_min ? r->rating_min : pred[j] > r->rating_max ? r->rating_max : pred[j];
      c->met[(i * NK + k) * REC_METHODS + m] = ml_rec_score(pred, truth, nq);
    }
  }
  c->status[i] = st;
}

typedef struct {
  int64_t n;
  ml_rec_metrics *met;
  double *rnd;
  uint8_t *valid;
  ml_status *status;
} eval_out;

static void eval_out_free(eval_out *o) {
  free(o->met), free(o->rnd), free(o->valid), free(o->status);
  memset(o, 0, sizeof *o);
}

static ml_status run_eval(eval_ctx *c, const int64_t *users, int64_t n, int threads, eval_out *o) {
  memset(o, 0, sizeof *o);
  o->n = n;
  o->met = calloc((size_t)(n * NK * REC_METHODS) + 1, sizeof(ml_rec_metrics));
  o->rnd = calloc((size_t)(n * NK) + 1, sizeof(double));
  o->valid = calloc((size_t)(n * NK) + 1, 1);
  o->status = calloc((size_t)n + 1, sizeof(ml_status));
  if (!o->met || !o->rnd || !o->valid || !o->status) {
    eval_out_free(o);
    return ml_error(ML_ERR_NOMEM, "evaluation: out of memory");
  }
  c->users = users, c->met = o->met, c->rnd = o->rnd, c->valid = o->valid, c->status = o->status;
  ml_parallel_for(n, threads, eval_user, c);
  for (int64_t i = 0; i < n; i++)
    if (o->status[i]) {
      ml_status st = o->status[i];
      eval_out_free(o);
      return ml_error(st, "evaluation of user %lld failed", (long long)users[i]);
    }
  return ML_OK;
}

/* Mean MAE of method m over users and Ks (the validation objective). */
static double mean_mae(const eval_out *o, int m) {
  double s = 0;
  int64_t c = 0;
  for (int64_t i = 0; i < o->n * NK; i++)
    if (o->valid[i]) s += o->met[i * REC_METHODS + m].mae, c++;
  return c ? s / (double)c : INFINITY;
}

static ml_status val_mae(eval_ctx *base, int m, int threads, double *out) {
  eval_ctx c = *base;
  memset(c.on, 0, sizeof c.on);
  c.on[m] = true;
  eval_out o;
  ml_status st = run_eval(&c, c.s->val, c.s->n_val, threads, &o);
  if (st) return st;
  *out = mean_mae(&o, m);
  if (getenv("ML_REC_DEBUG")) {
    fprintf(stderr, "   val per K:");
    for (int k = 0; k < NK; k++) {
      double a = 0, b = 0;
      int64_t cnt = 0;
      for (int64_t i = 0; i < o.n; i++)
        if (o.valid[i * NK + k]) a += o.met[(i * NK + k) * REC_METHODS + m].mae, b += pow(o.met[(i * NK + k) * REC_METHODS + m].rmse, 2), cnt++;
      fprintf(stderr, " MAE %.4f MSE %.4f |", a / (double)cnt, b / (double)cnt);
    }
    fprintf(stderr, "\n");
  }
  eval_out_free(&o);
  return ML_OK;
}

/* ---- meta-training with early stopping on the validation users ---- */
typedef struct {
  ml_model *model;
  ml_algo *algo;
} net;

static void net_free(net *n) {
  ml_algo_free(n->algo);
  ml_rec_model_free(n->model);
  memset(n, 0, sizeof *n);
}

static ml_status train_net(const ml_rec_experiment *e, eval_ctx *ec, int m, const ml_rec_model_config *mc,
                           const ml_algo_config *ac, const ml_rec_task_source *src, int64_t iterations, uint64_t seed,
                           bool fit_items, net *out) {
  const ml_rec_split *s = ec->s;
  memset(out, 0, sizeof *out);
  ml_status st = ml_rec_model_new(mc, s->r, s->mu, s->item_mean, seed, &out->model);
  /* item tables start from matrix factorization on the same training ratings */
  if (!st && fit_items) st = ml_rec_model_fit_items(out->model, s, false, s->p.seed);
  if (!st) st = ml_algo_new(ac, out->model, &out->algo);
  if (st) {
    net_free(out);
    return st;
  }
  ml_params *p = out->model->params, *lr = ml_algo_extra_params(out->algo);
  float *best = malloc((size_t)(p->numel + (lr ? lr->numel : 0)) * sizeof(float) + 8);
  if (!best) {
    net_free(out);
    return ml_error(ML_ERR_NOMEM, "training: out of memory");
  }
  double best_mae = INFINITY, sum_s = 0, sum_q = 0;
  int64_t n_sum = 0;
  ec->algo[m] = out->algo;
  for (int64_t it = 0; it <= iterations && !st; it++) {
    if (e->eval_every > 0 && s->n_val > 0 && (it % e->eval_every == 0 || it == iterations)) {
      double v;
      st = val_mae(ec, m, e->threads, &v);
      if (st) break;
      if (!e->quiet)
        fprintf(stderr, "  %s iteration %lld: training MSE support %.4f query %.4f, validation MAE %.4f\n",
                method_names[m], (long long)it, n_sum ? sum_s / (double)n_sum : NAN, n_sum ? sum_q / (double)n_sum : NAN, v);
      sum_s = sum_q = 0, n_sum = 0;
      if (v < best_mae) {
        best_mae = v;
        memcpy(best, p->data, (size_t)p->numel * sizeof(float));
        if (lr) memcpy(best + p->numel, lr->data, (size_t)lr->numel * sizeof(float));
      }
    }
    if (it == iterations) break;
    ml_step_stats stats;
    st = ml_algo_train_step(out->algo, ml_rec_task, (void *)src, it, &stats);
    sum_s += stats.loss_support, sum_q += stats.loss_query, n_sum++;
  }
  if (!st && isfinite(best_mae)) {
    memcpy(p->data, best, (size_t)p->numel * sizeof(float));
    if (lr) memcpy(lr->data, best + p->numel, (size_t)lr->numel * sizeof(float));
  }
  /* the tables for testing: refitted on all training ratings (the meta-learned trust, rates and
   * user start carry over, since factor columns are normalized the same way) */
  if (!st && fit_items) st = ml_rec_model_fit_items(out->model, s, true, s->p.seed);
  free(best);
  if (st) net_free(out);
  return st;
}

static bool method_on(const char *list, int m) {
  if (!strcmp(list, "all")) return true;
  size_t n = strlen(method_names[m]);
  for (const char *p = list; (p = strstr(p, method_names[m])); p += n)
    if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
  return false;
}

static ml_algo_config algo_cfg(const ml_rec_experiment *e, ml_algo_kind kind, float inner_lr) {
  ml_algo_config c = ml_algo_defaults(kind);
  c.task = ML_TASK_REGRESS;
  c.meta_batch = e->meta_batch;
  c.inner_steps = e->inner_steps, c.inner_steps_test = e->inner_steps_test, c.inner_lr = inner_lr;
  c.adapt_head_only = true;
  c.outer = ml_optim_defaults(ML_OPTIM_ADAM);
  c.outer.lr = e->outer_lr, c.outer.clip_norm = e->clip;
  c.threads = e->threads;
  c.reptile_inner_sgd = true;
  c.reptile_inner_batch = 1 << 20; /* the whole support per step */
  return c;
}

static ml_status export_fold(const ml_rec_experiment *e, const ml_rec_split *s, int64_t fold);

/* One fold of one split: train, tune, score, accumulate. */
static ml_status run_split(const ml_rec_experiment *e, const ml_ratings *r, int64_t fold, bool new_items, results *res,
                           ml_arena **arenas, FILE *out) {
  ml_rec_protocol p = e->protocol;
  p.fold = fold, p.new_items = new_items;
  ml_rec_split s;
  ml_status st = ml_rec_split_new(r, &p, &s);
  if (st) return st;
  eval_ctx ec;
  memset(&ec, 0, sizeof ec);
  ec.s = &s, ec.arenas = arenas;
  ec.sc = new_items ? ML_REC_NEW_ITEMS : ML_REC_NEW_USERS;
  bool on[REC_METHODS];
  for (int m = 0; m < REC_METHODS; m++) on[m] = method_on(e->methods, m);
  const int64_t mf_factors = e->metarec.factors > 0 ? e->metarec.factors : 16;
  rec_mf mf = {0};
  net nets[REC_METHODS];
  memset(nets, 0, sizeof nets);
  double t0;
  /* baselines: damping and ridge strength chosen on validation */
  static const double lam_grid[] = {0.5, 1, 2, 3, 5, 8, 12, 20, 30};
  ec.lam_damped = 5, ec.lam_mf = 5, ec.rate_scale = 1;
  if (on[REC_DAMPED] && s.n_val) {
    double best = INFINITY, v;
    for (size_t g = 0; g < sizeof lam_grid / sizeof *lam_grid && !st; g++) {
      eval_ctx c = ec;
      c.lam_damped = lam_grid[g];
      if (!(st = val_mae(&c, REC_DAMPED, e->threads, &v)) && v < best) best = v, ec.lam_damped = lam_grid[g];
    }
  }
  if (!st && on[REC_MF]) {
    t0 = ml_now();
    st = ml__mf_fit(&s, NULL, mf_factors, p.seed, &mf);
    res->train_s[REC_MF] += ml_now() - t0;
    ec.mf = &mf;
    double best = INFINITY, v;
    for (size_t g = 0; g < sizeof lam_grid / sizeof *lam_grid && !st && s.n_val; g++) {
      eval_ctx c = ec;
      c.lam_mf = lam_grid[g];
      if (!(st = val_mae(&c, REC_MF, e->threads, &v)) && v < best) best = v, ec.lam_mf = lam_grid[g];
    }
  }
  uint64_t seed = ml_rng_key(p.seed, (uint64_t)fold, new_items);
  ml_rec_task_source kmix = {.split = &s, .k_choices = {1, 3, 5, 10, ML_REC_K_FULL}, .n_k = 5, .seed = seed,
                             .fixed_query = true};
  rec_mf mf_half[2] = {{0}, {0}};
  rec_ridge ridge = {0};
  if (!st && on[REC_RIDGE]) {
    if (!e->quiet) fprintf(stderr, "fold %lld%s: meta-ridge\n", (long long)fold, new_items ? " new items" : "");
    t0 = ml_now();
    /* meta-training tasks must look like test users, whose ratings no table has seen: the
     * training tasks' users are split in two halves, each half meta-trains on tables fitted
     * without any of its users' ratings (cross-fitting); testing uses MF's tables from all
     * training ratings, to which its rotation-invariant prior carries over */
    if (!mf.q) st = ml__mf_fit(&s, NULL, mf_factors, p.seed, &mf);
    if (!st) st = ml__ridge_tables(&s, mf_factors, seed, mf_half);
    ml__ridge_init(&ridge, mf_factors, ec.lam_mf); /* starts as MF fold-in with its validated strength */
    ridge.mse = e->ridge_mse;
    ml_rec_task_source ridge_src = kmix;
    ridge_src.fixed_query = false; /* no table has seen these users: any 10 ratings can be the query */
    ec.ridge = &ridge, ec.mf = &mf;
    ml_arena *ar = !st ? ml_arena_new(1 << 20, NULL) : NULL;
    if (!st && !ar) st = ml_error(ML_ERR_NOMEM, "out of memory");
    rec_ridge best = ridge;
    double best_mae = INFINITY, v, loss = NAN;
    for (int64_t it = 0; !st; it += e->eval_every > 0 ? e->eval_every : e->ridge_iterations) {
      if (s.n_val > 0) {
        if ((st = val_mae(&ec, REC_RIDGE, e->threads, &v))) break;
        if (!e->quiet)
          fprintf(stderr, "  ridge iteration %lld: training query loss %.4f, validation MAE %.4f\n", (long long)it, loss, v);
        if (v < best_mae) best_mae = v, best = ridge;
      }
      if (it >= e->ridge_iterations) break;
      int64_t n = e->eval_every > 0 ? e->eval_every : e->ridge_iterations;
      if (n > e->ridge_iterations - it) n = e->ridge_iterations - it;
      st = ml__ridge_train(&ridge, mf_half, seed, &ridge_src, n, e->ridge_meta_batch, e->ridge_lr, ar, &loss);
    }
    if (!st && isfinite(best_mae)) ridge = best;
    ml_arena_free(ar);
    res->train_s[REC_RIDGE] += ml_now() - t0;
  }
  if (!st && e->export_dir && !new_items) st = export_fold(e, &s, fold);
  res->epoch_users = s.n_train_tasks;
  ml_rec_task_source full = {.split = &s, .n_k = 0, .seed = seed};
  if (!st && on[REC_MELU]) {
    if (!e->quiet) fprintf(stderr, "fold %lld%s: MeLU (%s)\n", (long long)fold, new_items ? " new items" : "", ml_algo_name(e->algo));
    ml_rec_model_config mc = ml_rec_model_defaults(ML_REC_MELU);
    ml_algo_config ac = algo_cfg(e, e->algo, e->inner_lr);
    t0 = ml_now();
    st = train_net(e, &ec, REC_MELU, &mc, &ac, &full, e->iterations, seed, false, &nets[REC_MELU]);
    res->train_s[REC_MELU] += ml_now() - t0;
    res->iters[REC_MELU] += e->iterations;
  }
  if (!st && on[REC_METAREC]) {
    if (!e->quiet) fprintf(stderr, "fold %lld%s: metarec (metasgd)\n", (long long)fold, new_items ? " new items" : "");
    ml_algo_config ac = algo_cfg(e, ML_ALGO_METASGD, e->metarec_lr);
    ac.inner_steps = ac.inner_steps_test = e->metarec_steps;
    ac.outer.lr = e->metarec_outer_lr;
    ac.meta_batch = e->metarec_meta_batch;
    t0 = ml_now();
    /* its item tables start from MF fitted without the training users' meta-training queries */
    if (e->metarec_full_support) kmix.n_k = 0;
    if (!st) st = train_net(e, &ec, REC_METAREC, &e->metarec, &ac, &kmix, e->metarec_iterations, seed,
                   true, &nets[REC_METAREC]);
    /* the meta-objective is the query MSE; the reported metric is MAE, for which MF's ridge
     * strength is tuned on validation: metarec gets the same, one scale on its learned rates */
    ml_params *lr = !st ? ml_algo_extra_params(nets[REC_METAREC].algo) : NULL;
    if (lr && s.n_val && e->metarec_tune_scale) {
      static const float scales[] = {0.5f, 0.7f, 1.0f, 1.4f, 2.0f};
      float *base = malloc((size_t)lr->numel * sizeof(float));
      double best = INFINITY, v;
      float chosen = 1.0f;
      if (!base) st = ml_error(ML_ERR_NOMEM, "out of memory");
      else memcpy(base, lr->data, (size_t)lr->numel * sizeof(float));
      for (size_t g = 0; g < sizeof scales / sizeof *scales && !st; g++) {
        for (int64_t k = 0; k < lr->numel; k++) lr->data[k] = base[k] * scales[g];
        if (!(st = val_mae(&ec, REC_METAREC, e->threads, &v)) && v < best) best = v, chosen = scales[g];
      }
      for (int64_t k = 0; base && k < lr->numel; k++) lr->data[k] = base[k] * chosen;
      free(base);
      ec.rate_scale = chosen;
    }
    res->train_s[REC_METAREC] += ml_now() - t0;
  }
  if (!st && on[REC_FINETUNE]) {
    /* pre-train the MeLU network on all training users (no inner loop: plain regression on
     * random ratings), then fine-tune its MLP per user at a rate chosen on validation */
    if (!e->quiet) fprintf(stderr, "fold %lld%s: pretrain + finetune\n", (long long)fold, new_items ? " new items" : "");
    ml_rec_model_config mc = ml_rec_model_defaults(ML_REC_MELU);
    ml_algo_config ac = algo_cfg(e, ML_ALGO_FOMAML, 0.01f);
    ac.inner_steps = 0, ac.inner_steps_test = 0;
    t0 = ml_now();
    st = train_net(e, &ec, REC_FINETUNE, &mc, &ac, &full, e->iterations, seed, false, &nets[REC_FINETUNE]);
    static const float lrs[] = {0.001f, 0.003f, 0.01f, 0.03f, 0.1f};
    double best = INFINITY, v;
    ml_algo *chosen = NULL;
    for (size_t g = 0; g < sizeof lrs / sizeof *lrs && !st; g++) {
      ml_algo_config fc = algo_cfg(e, ML_ALGO_FOMAML, lrs[g]);
      fc.inner_steps_test = 10;
      ml_algo *a;
      if ((st = ml_algo_new(&fc, nets[REC_FINETUNE].model, &a))) break;
      ec.algo[REC_FINETUNE] = a;
      if (!(st = val_mae(&ec, REC_FINETUNE, e->threads, &v)) && v < best) {
        best = v;
        ml_algo_free(chosen);
        chosen = a;
      } else
        ml_algo_free(a);
    }
    if (chosen) {
      ml_algo_free(nets[REC_FINETUNE].algo);
      nets[REC_FINETUNE].algo = chosen;
    }
    ec.algo[REC_FINETUNE] = nets[REC_FINETUNE].algo;
    res->train_s[REC_FINETUNE] += ml_now() - t0;
  }
  /* score the test users (and, for new items, the training users as existing users) */
  for (int sc = 0; sc < ML_REC_SCENARIOS && !st; sc++) {
    bool mine = new_items ? (sc == ML_REC_NEW_ITEMS || sc == ML_REC_NEW_ITEMS_WARM)
                          : (sc == ML_REC_NEW_USERS || sc == ML_REC_TIME_ORDER);
    if (!mine || !e->scenarios[sc]) continue;
    const int64_t *users = s.test;
    int64_t n = s.n_test, nw = 0;
    int64_t *warm = NULL;
    if (sc == ML_REC_NEW_ITEMS_WARM) { /* existing eligible users; one fold's worth is enough */
      warm = malloc((size_t)s.n_train * sizeof(int64_t) + 8);
      if (!warm) {
        st = ml_error(ML_ERR_NOMEM, "out of memory");
        break;
      }
      for (int64_t j = 0; j < s.n_train; j++) {
        int64_t u = s.train[j], c = r->user_offset[u + 1] - r->user_offset[u];
        if (c >= p.min_ratings && c <= p.max_ratings && (int64_t)(ml_rng_key(p.seed, (uint64_t)u, 0x77) % (uint64_t)p.n_folds) == fold)
          warm[nw++] = u;
      }
      users = warm, n = nw;
    }
    eval_ctx c = ec;
    c.sc = (ml_rec_scenario)sc;
    memcpy(c.on, on, sizeof on);
    eval_out o;
    t0 = ml_now();
    st = run_eval(&c, users, n, e->threads, &o);
    res->eval_s += ml_now() - t0;
    free(warm);
    if (st) break;
    int64_t counted = 0;
    for (int64_t i = 0; i < n; i++) {
      bool any = false;
      for (int k = 0; k < NK; k++) {
        if (!o.valid[i * NK + k]) continue;
        any = true;
        for (int m = 0; m < REC_METHODS; m++)
          if (on[m] && !acc_push(&res->acc[m][sc][k], o.met[(i * NK + k) * REC_METHODS + m], o.rnd[i * NK + k]))
            st = ml_error(ML_ERR_NOMEM, "out of memory");
      }
      counted += any;
    }
    res->users[sc] += counted;
    eval_out_free(&o);
  }
  if (!st && !e->quiet)
    fprintf(stderr, "fold %lld%s done: damped lambda %.3g, mf lambda %.3g, metarec rate scale %.2g", (long long)fold,
            new_items ? " (new items)" : "", ec.lam_damped, ec.lam_mf, ec.rate_scale);
  if (!st && !e->quiet && on[REC_RIDGE])
    fprintf(stderr, ", meta-ridge prior: bias start %+.3f, strength bias %.2f factors %.2f", ridge.w0[0], exp(ridge.s[0]),
            exp(ridge.s[1]));
  if (!st && !e->quiet) fprintf(stderr, "\n");
  /* the first fold's metarec is the run's model for `metalearn recommend` */
  if (!st && e->run_dir && fold == 0 && !new_items && nets[REC_METAREC].model) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", e->run_dir);
    st = ml_checkpoint_save(path, nets[REC_METAREC].model->params, NULL, NULL, 0);
    ml_params *lr = ml_algo_extra_params(nets[REC_METAREC].algo);
    snprintf(path, sizeof path, "%s/rates.safetensors", e->run_dir);
    if (!st && lr) st = ml_checkpoint_save(path, lr, NULL, NULL, 0);
  }
  if (!st && e->run_dir && fold == 0 && !new_items && on[REC_RIDGE]) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ridge.safetensors", e->run_dir);
    st = ml__ridge_save(path, &ridge);
  }
  (void)out;
  for (int m = 0; m < REC_METHODS; m++) net_free(&nets[m]);
  ml__mf_free(&mf), ml__mf_free(&mf_half[0]), ml__mf_free(&mf_half[1]);
  ml_rec_split_free(&s);
  return st;
}

/* The fold for the PyTorch reference: "role <user id> <train|val|test>" per user, then per test
 * user "test <user id> <query: item:rating,...> <support in order: item:rating,...>". */
static ml_status export_fold(const ml_rec_experiment *e, const ml_rec_split *s, int64_t fold) {
  const ml_ratings *r = s->r;
  char *buf = NULL, path[4096];
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return ml_error(ML_ERR_NOMEM, "export: out of memory");
  static const char *roles[3] = {"train", "val", "test"};
  for (int64_t u = 0; u < r->n_users; u++)
    fprintf(f, "role %lld %s %d\n", (long long)r->user_id[u], roles[s->role[u]], s->p.min_ratings <= r->user_offset[u + 1] - r->user_offset[u]);
  int64_t *sup = malloc((size_t)r->n_ratings * sizeof(int64_t)), *qry = malloc((size_t)r->n_ratings * sizeof(int64_t));
  for (int64_t t = 0; t < s->n_test && sup && qry; t++) {
    int64_t u = s->test[t], ns, nq;
    if (!ml_rec_user_sets(s, u, ML_REC_NEW_USERS, ML_REC_K_FULL, sup, &ns, qry, &nq)) continue;
    fprintf(f, "test %lld ", (long long)r->user_id[u]);
    for (int64_t j = 0; j < nq; j++) fprintf(f, "%s%lld:%g", j ? "," : "", (long long)r->item_id[r->item[qry[j]]], r->rating[qry[j]]);
    fprintf(f, " ");
    for (int64_t j = 0; j < ns; j++) fprintf(f, "%s%lld:%g", j ? "," : "", (long long)r->item_id[r->item[sup[j]]], r->rating[sup[j]]);
    fprintf(f, "\n");
  }
  fclose(f);
  ml_status st = sup && qry ? ML_OK : ml_error(ML_ERR_NOMEM, "export: out of memory");
  free(sup), free(qry);
  mkdir(e->export_dir, 0755);
  snprintf(path, sizeof path, "%s/fold%lld.txt", e->export_dir, (long long)fold);
  if (!st) st = ml_write_file_atomic(path, buf, len);
  free(buf);
  return st;
}

/* ---- the table ---- */
static double mean_of(const acc_t *a) {
  double m = 0;
  for (int64_t i = 0; i < a->n; i++) m += a->v[0][i];
  return a->n ? m / (double)a->n : INFINITY;
}

/* The best meta-learned method's MAE minus the best baseline's at each K, per user (every method
 * is scored on the same users and queries, so the difference is paired and its CI much tighter
 * than either method's own). */
static void print_paired(const results *res, int sc, FILE *f) {
  double d[NK], ci[NK];
  int ours[NK], base[NK];
  for (int k = 0; k < NK; k++) {
    ours[k] = base[k] = -1;
    for (int m = 0; m < REC_METHODS; m++) {
      const acc_t *a = &res->acc[m][sc][k];
      if (!a->n) continue;
      bool learned = m == REC_MELU || m == REC_METAREC || m == REC_RIDGE;
      int *best = learned ? &ours[k] : &base[k];
      if (*best < 0 || mean_of(a) < mean_of(&res->acc[*best][sc][k])) *best = m;
    }
    if (ours[k] < 0 || base[k] < 0) return;
    const acc_t *a = &res->acc[ours[k]][sc][k], *b = &res->acc[base[k]][sc][k];
    double *diff = malloc((size_t)a->n * sizeof(double) + 8);
    if (!diff || a->n != b->n) {
      free(diff);
      return;
    }
    for (int64_t i = 0; i < a->n; i++) diff[i] = a->v[0][i] - b->v[0][i];
    ml_mean_ci95(diff, a->n, &d[k], &ci[k]);
    free(diff);
  }
  fprintf(f, "  %-24s", "ours - best baseline");
  for (int k = 0; k < NK; k++) fprintf(f, " %+.4f +-%.4f", d[k], ci[k]);
  fprintf(f, "\n  %-24s", "  (paired, per user)");
  for (int k = 0; k < NK; k++) {
    char h[40];
    snprintf(h, sizeof h, "%s-%s", method_names[ours[k]], method_names[base[k]]);
    fprintf(f, " %-15s", h);
  }
  fprintf(f, "\n");
}

static void print_table(const ml_rec_experiment *e, const results *res, FILE *f) {
  static const char *metric[3] = {"MAE", "RMSE", "nDCG@3"};
  static const int col[3] = {0, 1, 3};
  for (int sc = 0; sc < ML_REC_SCENARIOS; sc++) {
    if (!e->scenarios[sc] || !res->users[sc]) continue;
    fprintf(f, "\n%s: %lld users (%lld folds), mean +- 95%% CI over users\n", ml_rec_scenario_name((ml_rec_scenario)sc),
            (long long)res->users[sc], (long long)e->folds_run);
    for (int mt = 0; mt < 3; mt++) {
      fprintf(f, "  %-24s", metric[mt]);
      for (int k = 0; k < NK; k++) {
        char h[16];
        if (Ks[k] == ML_REC_K_FULL) snprintf(h, sizeof h, "full");
        else snprintf(h, sizeof h, "K=%lld", (long long)Ks[k]);
        fprintf(f, " %-15s", h);
      }
      fprintf(f, "\n");
      int rows = REC_METHODS + (mt == 2 ? 1 : 0);
      for (int m = 0; m < rows; m++) {
        bool rnd = m == REC_METHODS;
        const acc_t *a0 = &res->acc[rnd ? REC_GLOBAL : m][sc][0];
        if (!rnd && !a0->n) continue;
        if (rnd) {
          int any = -1;
          for (int j = 0; j < REC_METHODS; j++)
            if (res->acc[j][sc][0].n) any = j;
          if (any < 0) continue;
          a0 = &res->acc[any][sc][0];
        }
        fprintf(f, "  %-24s", rnd ? "random ranking" : method_labels[m]);
        for (int k = 0; k < NK; k++) {
          const acc_t *a = a0 + k;
          double mean, ci;
          ml_mean_ci95(a->v[rnd ? 4 : col[mt]], a->n, &mean, &ci);
          fprintf(f, " %.4f +-%.4f", mean, ci);
        }
        fprintf(f, "\n");
      }
      if (mt == 0) print_paired(res, sc, f);
    }
  }
  fprintf(f, "\nwall time (training incl. tuning, all folds):");
  for (int m = 0; m < REC_METHODS; m++)
    if (res->train_s[m] > 0) fprintf(f, " %s %.1fs", method_names[m], res->train_s[m]);
  fprintf(f, "; evaluation %.1fs\n", res->eval_s);
  if (res->iters[REC_MELU] > 0) {
    double it_s = res->train_s[REC_MELU] / (double)res->iters[REC_MELU];
    fprintf(f, "MeLU (%s): %.2f ms per meta-iteration of %lld users, %.2f s per epoch of %lld training users%s\n",
            ml_algo_name(e->algo), 1e3 * it_s, (long long)e->meta_batch,
            it_s * (double)res->epoch_users / (double)e->meta_batch, (long long)res->epoch_users,
            e->eval_every > 0 ? " (incl. validation checks)" : "");
  }
}

ml_status ml_rec_run(const ml_rec_experiment *e, FILE *out) {
  if (e->folds_run < 1 || e->folds_run > e->protocol.n_folds)
    return ml_error(ML_ERR_ARG, "folds: %lld (1 to %lld)", (long long)e->folds_run, (long long)e->protocol.n_folds);
  if (e->iterations < 0 || e->meta_batch < 1) return ml_error(ML_ERR_ARG, "iterations >= 0 and meta_batch >= 1");
  ml_ratings r;
  ml_status st = ml_ratings_load(e->data_dir, e->cache_dir, &r);
  if (st) return st;
  int threads = e->threads > 0 ? e->threads : ml_num_threads();
  ml_arena **arenas = calloc((size_t)threads, sizeof *arenas);
  results *res = calloc(1, sizeof *res);
  if (!arenas || !res) st = ml_error(ML_ERR_NOMEM, "out of memory");
  for (int t = 0; t < threads && !st; t++)
    if (!(arenas[t] = ml_arena_new(0, NULL))) st = ml_error(ML_ERR_NOMEM, "out of memory");
  if (!st && e->run_dir) mkdir(e->run_dir, 0755);
  bool std_split = e->scenarios[ML_REC_NEW_USERS] || e->scenarios[ML_REC_TIME_ORDER];
  bool item_split = e->scenarios[ML_REC_NEW_ITEMS] || e->scenarios[ML_REC_NEW_ITEMS_WARM];
  for (int64_t f = 0; f < e->folds_run && !st; f++) {
    if (std_split) st = run_split(e, &r, f, false, res, arenas, out);
    if (!st && item_split) st = run_split(e, &r, f, true, res, arenas, out);
  }
  if (!st) {
    print_table(e, res, out);
    if (e->run_dir) {
      char path[4096];
      snprintf(path, sizeof path, "%s/table.txt", e->run_dir);
      char *buf = NULL;
      size_t len = 0;
      FILE *mf = open_memstream(&buf, &len);
      if (mf) {
        print_table(e, res, mf);
        fclose(mf);
        st = ml_write_file_atomic(path, buf, len);
        free(buf);
      }
    }
  }
  for (int m = 0; m < REC_METHODS && res; m++)
    for (int sc = 0; sc < ML_REC_SCENARIOS; sc++)
      for (int k = 0; k < NK; k++)
        for (int j = 0; j < 5; j++) free(res->acc[m][sc][k].v[j]);
  free(res);
  for (int t = 0; arenas && t < threads; t++) ml_arena_free(arenas[t]);
  free(arenas);
  ml_ratings_free(&r);
  return st;
}
