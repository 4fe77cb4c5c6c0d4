/* meta-ridge: a new user folded in by a closed-form ridge solve whose prior is meta-learned.
 *
 * MF fold-in fits the user's bias and vector w = [b_u, p_u] by ridge regression of
 * r - mu - b_i on z_i = [1, q_i] over the support, with one ridge strength for every coordinate
 * and the prior mean at zero. Here the ridge is the inner loop of a meta-learner (a differentiable
 * closed-form base learner, as in Bertinetto et al., ICLR 2019):
 *     w* = (Z'Z + diag(lambda))^-1 (Z'y + diag(lambda) w0),   lambda = exp(s)
 * and the prior (w0, s) is meta-learned over the training users: the outer loss is the query MAE
 * (the metric; MSE as an ablation) after the solve, on supports of K drawn like the test ones.
 * The solve is exact for every K, so unlike a few gradient steps it never under- or over-shoots
 * the support; the learned prior says how far K ratings should move the bias and the vector, and
 * where the bias starts (ratings are skewed, so the MAE-optimal start is not the mean's). Its
 * gradient is implicit:
 *     v = A^-1 dL/dw*,   dL/dw0 = lambda v,   dL/ds = lambda v (w0 - w*)
 * (A symmetric). The factor coordinates share one strength and a zero prior mean: a prior that is
 * invariant to rotations of MF's factors, so it carries over from the tables it was meta-trained
 * on to the test-time tables refitted on all training ratings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/recommend/internal.h"
#include "metalearn/io.h"

/* Cholesky of the d x d matrix A (row-major, in place, lower triangle); false if not SPD */
static bool chol(double *A, int64_t d) {
  for (int64_t a = 0; a < d; a++)
    for (int64_t c = 0; c <= a; c++) {
      double v = A[a * d + c];
      for (int64_t t = 0; t < c; t++) v -= A[a * d + t] * A[c * d + t];
      if (a == c) {
        if (!(v > 1e-12)) return false;
        A[a * d + a] = sqrt(v);
      } else
        A[a * d + c] = v / A[c * d + c];
    }
  return true;
}

/* x = A^-1 b from A's Cholesky factor (x may alias b) */
static void chol_solve(const double *L, int64_t d, const double *b, double *x) {
  double y[RIDGE_MAX_DIM];
  for (int64_t a = 0; a < d; a++) {
    double v = b[a];
    for (int64_t t = 0; t < a; t++) v -= L[a * d + t] * y[t];
    y[a] = v / L[a * d + a];
  }
  for (int64_t a = d - 1; a >= 0; a--) {
    double v = y[a];
    for (int64_t t = a + 1; t < d; t++) v -= L[t * d + a] * x[t];
    x[a] = v / L[a * d + a];
  }
}

static void feat(const rec_mf *m, int64_t item, double *z) {
  z[0] = 1;
  for (int64_t t = 0; t < m->f; t++) z[t + 1] = m->q[item * m->f + t];
}

/* mu + b_i + z_i . w, with z_i left in z (w NULL: the user terms are zero) */
static double predict_item(const rec_mf *m, const double *w, int64_t item, double *z) {
  feat(m, item, z);
  double p = m->mu + m->bi[item];
  for (int64_t a = 0; w && a <= m->f; a++) p += z[a] * w[a];
  return p;
}

/* the inner solve: w (d) and A's Cholesky factor L (d x d); the support is rating indices into r,
 * or (r NULL) item indices `sup` with their ratings `vals` */
static bool solve(const rec_ridge *rg, const rec_mf *m, const ml_ratings *r, const int64_t *sup, const float *vals,
                  int64_t ns, double *w, double *L) {
  int64_t d = m->f + 1;
  double z[RIDGE_MAX_DIM];
  memset(L, 0, sizeof(double) * (size_t)(d * d));
  for (int64_t a = 0; a < d; a++) {
    double lam = exp(rg->s[a]);
    L[a * d + a] = lam, w[a] = lam * rg->w0[a];
  }
  for (int64_t j = 0; j < ns; j++) {
    int64_t i = r ? r->item[sup[j]] : sup[j];
    feat(m, i, z);
    double y = (r ? r->rating[sup[j]] : vals[j]) - m->mu - m->bi[i];
    for (int64_t a = 0; a < d; a++) {
      w[a] += z[a] * y;
      for (int64_t c = 0; c <= a; c++) L[a * d + c] += z[a] * z[c];
    }
  }
  if (!chol(L, d)) return false;
  chol_solve(L, d, w, w);
  return true;
}

void ml__ridge_init(rec_ridge *rg, int64_t f, double lambda) {
  memset(rg, 0, sizeof *rg);
  rg->d = f + 1;
  for (int64_t a = 0; a < rg->d; a++) rg->s[a] = log(lambda);
}

void ml__ridge_predict(const rec_ridge *rg, const rec_mf *m, const ml_rec_split *s, const int64_t *sup, int64_t ns,
                       const int64_t *qry, int64_t nq, float *out) {
  const ml_ratings *r = s->r;
  double w[RIDGE_MAX_DIM], L[RIDGE_MAX_DIM * RIDGE_MAX_DIM], z[RIDGE_MAX_DIM];
  bool ok = solve(rg, m, r, sup, NULL, ns, w, L); /* lambda > 0 keeps A positive definite */
  for (int64_t j = 0; j < nq; j++) out[j] = (float)predict_item(m, ok ? w : NULL, r->item[qry[j]], z);
}

double ml__ridge_loss_grad(const rec_ridge *rg, const rec_mf *m, const ml_rec_split *s, const int64_t *sup, int64_t ns,
                           const int64_t *qry, int64_t nq, double *g_w0, double *g_s) {
  const ml_ratings *r = s->r;
  int64_t d = m->f + 1;
  double w[RIDGE_MAX_DIM], L[RIDGE_MAX_DIM * RIDGE_MAX_DIM], z[RIDGE_MAX_DIM], v[RIDGE_MAX_DIM] = {0};
  if (!solve(rg, m, r, sup, NULL, ns, w, L) || nq <= 0) return NAN;
  double loss = 0;
  for (int64_t j = 0; j < nq; j++) {
    double e = predict_item(m, w, r->item[qry[j]], z) - r->rating[qry[j]];
    double de = !rg->mse ? (e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0) : 2.0 * e;
    loss += !rg->mse ? fabs(e) : e * e;
    for (int64_t a = 0; a < d; a++) v[a] += de * z[a] / (double)nq;
  }
  chol_solve(L, d, v, v);
  for (int64_t a = 0; a < d; a++) {
    double lam = exp(rg->s[a]);
    if (g_w0) g_w0[a] += lam * v[a];
    if (g_s) g_s[a] += lam * v[a] * (rg->w0[a] - w[a]);
  }
  return loss / (double)nq;
}

/* ties the factor coordinates (1..d-1): one shared strength, prior mean zero */
static void tie(const rec_ridge *rg, double *g_w0, double *g_s) {
  double t = 0;
  for (int64_t a = 1; a < rg->d; a++) t += g_s[a];
  for (int64_t a = 1; a < rg->d; a++) g_s[a] = t, g_w0[a] = 0;
}

ml_status ml__ridge_train(rec_ridge *rg, const rec_mf half[2], uint64_t seed, const ml_rec_task_source *src,
                          int64_t iterations, int64_t batch, double lr, ml_arena *ar, double *last_loss) {
  if (half[0].f + 1 > RIDGE_MAX_DIM) return ml_error(ML_ERR_ARG, "meta-ridge: at most %d factors", RIDGE_MAX_DIM - 1);
  int64_t d = rg->d, np = 2 * d;
  double *mom = rg->adam_m, *sq = rg->adam_v, g[2 * RIDGE_MAX_DIM];
  const double b1 = 0.9, b2 = 0.999;
  double loss = 0;
  for (int64_t it = rg->steps; it < rg->steps + iterations; it++) {
    memset(g, 0, sizeof g);
    loss = 0;
    int64_t used = 0;
    for (int64_t b = 0; b < batch; b++) {
      ml_arena_reset(ar);
      int64_t *qry, *sup, nq, ns;
      ml_status st = ml_rec_task_sets(src, it, b, ar, &qry, &nq, &sup, &ns);
      if (st) return st;
      int64_t u = src->split->r->user[qry[0]];
      const rec_mf *m = &half[ml_rng_key(seed, (uint64_t)u, RIDGE_HALF_KEY) & 1];
      double l = ml__ridge_loss_grad(rg, m, src->split, sup, ns, qry, nq, g, g + d);
      if (isfinite(l)) loss += l, used++;
    }
    if (!used) return ml_error(ML_ERR_NUMERIC, "meta-ridge: no usable training task");
    for (int64_t k = 0; k < np; k++) g[k] /= (double)used;
    tie(rg, g, g + d);
    /* Adam on (w0, s) */
    double c1 = 1 - pow(b1, (double)(it + 1)), c2 = 1 - pow(b2, (double)(it + 1));
    for (int64_t k = 0; k < np; k++) {
      mom[k] = b1 * mom[k] + (1 - b1) * g[k];
      sq[k] = b2 * sq[k] + (1 - b2) * g[k] * g[k];
      double step = lr * (mom[k] / c1) / (sqrt(sq[k] / c2) + 1e-8);
      if (k < d) rg->w0[k] -= step;
      else rg->s[k - d] -= step;
    }
    loss /= (double)used;
  }
  rg->steps += iterations;
  if (getenv("ML_REC_DEBUG")) {
    fprintf(stderr, "   ridge prior: w0 %.3f s", rg->w0[0]);
    for (int64_t a = 0; a < d; a++) fprintf(stderr, " %.2f", rg->s[a]);
    fprintf(stderr, "\n");
  }
  if (last_loss) *last_loss = loss;
  return ML_OK;
}

ml_status ml__ridge_tables(const ml_rec_split *s, int64_t f, uint64_t seed, rec_mf half[2]) {
  const ml_ratings *r = s->r;
  memset(half, 0, 2 * sizeof *half);
  uint8_t *excl = calloc((size_t)r->n_ratings + 1, 1);
  if (!excl) return ml_error(ML_ERR_NOMEM, "meta-ridge: out of memory");
  ml_status st = ML_OK;
  for (int h = 0; h < 2 && !st; h++) {
    memset(excl, 0, (size_t)r->n_ratings);
    for (int64_t t = 0; t < s->n_train_tasks; t++) {
      int64_t u = s->train_tasks[t];
      if ((int)(ml_rng_key(seed, (uint64_t)u, RIDGE_HALF_KEY) & 1) == h)
        memset(excl + r->user_offset[u], 1, (size_t)(r->user_offset[u + 1] - r->user_offset[u]));
    }
    st = ml__mf_fit(s, excl, f, s->p.seed, &half[h]);
  }
  free(excl);
  if (st) ml__mf_free(&half[0]), ml__mf_free(&half[1]);
  return st;
}

/* ---- the public face: a saved prior, served by `metalearn recommend` ---- */
struct ml_rec_ridge {
  rec_ridge prior;
  rec_mf mf;
  int64_t n_items;
};

ml_status ml__ridge_save(const char *path, const rec_ridge *rg) {
  float v[3] = {(float)rg->w0[0], (float)rg->s[0], (float)(rg->d > 1 ? rg->s[1] : 0)};
  ml_tensor t = ml_shape1(3);
  t.data = v;
  char f[32];
  snprintf(f, sizeof f, "%lld", (long long)(rg->d - 1));
  ml_named_tensor nt = {"prior.bias_start_log_strengths", t};
  ml_kv kv[2] = {{"kind", "metalearn meta-ridge prior"}, {"factors", f}};
  return ml_safetensors_write(path, &nt, 1, kv, 2);
}

ml_status ml_rec_ridge_load(const char *path, const ml_rec_split *s, ml_rec_ridge **out) {
  *out = NULL;
  ml_safetensors *st = NULL;
  ml_status e = ml_safetensors_open(path, &st);
  if (e) return e;
  const char *kind = ml_safetensors_meta(st, "kind"), *fs = ml_safetensors_meta(st, "factors");
  int64_t i = ml_safetensors_find(st, "prior.bias_start_log_strengths");
  char *end = NULL;
  long long f = fs ? strtoll(fs, &end, 10) : -1;
  float v[3];
  if (!kind || strcmp(kind, "metalearn meta-ridge prior") || i < 0 || ml_safetensors_shape(st, i).numel != 3 || !end ||
      *end || f < 1 || f >= RIDGE_MAX_DIM)
    e = ml_error(ML_ERR_FORMAT, "%s: not a meta-ridge prior", path);
  if (!e) e = ml_safetensors_read_f32(st, i, v);
  ml_safetensors_close(st);
  if (!e && (!isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) || fabsf(v[1]) > 30 || fabsf(v[2]) > 30))
    e = ml_error(ML_ERR_FORMAT, "%s: prior values out of range", path);
  ml_rec_ridge *R = !e ? calloc(1, sizeof *R) : NULL;
  if (!e && !R) e = ml_error(ML_ERR_NOMEM, "out of memory");
  if (e) return e;
  ml__ridge_init(&R->prior, f, 1.0);
  R->prior.w0[0] = v[0], R->prior.s[0] = v[1];
  for (int64_t a = 1; a <= f; a++) R->prior.s[a] = v[2];
  /* the test-time tables: MF on all training ratings, recomputed (the same seed, the same tables) */
  R->n_items = s->r->n_items;
  e = ml__mf_fit(s, NULL, f, s->p.seed, &R->mf);
  if (e) {
    free(R);
    return e;
  }
  *out = R;
  return ML_OK;
}

void ml_rec_ridge_predict_user(const ml_rec_ridge *R, const int64_t *items, const float *ratings, int64_t n, float *out) {
  double w[RIDGE_MAX_DIM], L[RIDGE_MAX_DIM * RIDGE_MAX_DIM], z[RIDGE_MAX_DIM];
  bool ok = solve(&R->prior, &R->mf, NULL, items, ratings, n, w, L); /* strengths > 0: always SPD */
  for (int64_t i = 0; i < R->n_items; i++) out[i] = (float)predict_item(&R->mf, ok ? w : NULL, i, z);
}

void ml_rec_ridge_free(ml_rec_ridge *R) {
  if (!R) return;
  ml__mf_free(&R->mf);
  free(R);
}
