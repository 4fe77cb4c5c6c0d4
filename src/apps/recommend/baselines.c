/* Metrics of one user's query (MAE, RMSE, nDCG@1/@3 with gain 2^r - 1) and the non-meta-learned
 * baselines: global mean, item mean, user mean, item mean + user bias (plain and damped toward
 * zero by lambda pseudo-ratings), and biased matrix factorization with the new user folded in
 * from the support by ridge regression. All are fitted on training ratings only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/recommend/internal.h"

static double dcg_at(const float *truth, const int64_t *order, int64_t n, int64_t k) {
  double s = 0;
  for (int64_t j = 0; j < k && j < n; j++) s += (pow(2.0, truth[order[j]]) - 1.0) / log2((double)j + 2.0);
  return s;
}

/* Indices sorted by key descending; ties keep index order (stable), so results are reproducible. */
static void rank_desc(const float *key, int64_t n, int64_t *order) {
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = 1; i < n; i++) {
    int64_t v = order[i], j = i;
    while (j > 0 && key[order[j - 1]] < key[v]) order[j] = order[j - 1], j--;
    order[j] = v;
  }
}

ml_rec_metrics ml_rec_score(const float *pred, const float *truth, int64_t n) {
  ml_rec_metrics m = {0, 0, 0, 0};
  if (n <= 0) return m;
  int64_t op[256], ot[256];
  int64_t nn = n < 256 ? n : 256;
  for (int64_t i = 0; i < n; i++) {
    double e = (double)pred[i] - truth[i];
    m.mae += fabs(e), m.rmse += e * e;
  }
  m.mae /= (double)n, m.rmse = sqrt(m.rmse / (double)n);
  rank_desc(pred, nn, op), rank_desc(truth, nn, ot);
  double i1 = dcg_at(truth, ot, nn, 1), i3 = dcg_at(truth, ot, nn, 3);
  m.ndcg1 = i1 > 0 ? dcg_at(truth, op, nn, 1) / i1 : 1.0;
  m.ndcg3 = i3 > 0 ? dcg_at(truth, op, nn, 3) / i3 : 1.0;
  return m;
}

double ml_rec_ndcg_random(const float *truth, int64_t n, int64_t k) {
  if (n <= 0) return 0;
  int64_t ot[256], nn = n < 256 ? n : 256;
  rank_desc(truth, nn, ot);
  double ideal = dcg_at(truth, ot, nn, k), mean_gain = 0;
  if (ideal <= 0) return 1.0;
  for (int64_t i = 0; i < nn; i++) mean_gain += pow(2.0, truth[i]) - 1.0;
  mean_gain /= (double)nn;
  /* each position holds a uniformly random item, so its expected gain is the mean gain */
  double e = 0;
  for (int64_t j = 0; j < k && j < nn; j++) e += mean_gain / log2((double)j + 2.0);
  return e / ideal;
}

/* ---- simple baselines ---- */
void ml__rec_baseline(int method, const ml_rec_split *s, double lambda, const int64_t *sup, int64_t ns,
                      const int64_t *qry, int64_t nq, float *out) {
  const ml_ratings *r = s->r;
  const float *im = s->item_mean;
  double um = 0, bias = 0;
  for (int64_t j = 0; j < ns; j++) um += r->rating[sup[j]], bias += r->rating[sup[j]] - im[r->item[sup[j]]];
  if (ns > 0) um /= (double)ns;
  double b_plain = ns > 0 ? bias / (double)ns : 0, b_damped = bias / ((double)ns + lambda);
  for (int64_t j = 0; j < nq; j++) {
    double p, mi = im[r->item[qry[j]]];
    switch (method) {
      case REC_GLOBAL: p = s->mu; break;
      case REC_ITEM: p = mi; break;
      case REC_USER: p = ns > 0 ? um : s->mu; break;
      case REC_ITEMBIAS: p = mi + b_plain; break;
      default: p = mi + b_damped; break;
    }
    out[j] = (float)p;
  }
}

/* ---- matrix factorization ---- */
void ml__mf_free(rec_mf *m) {
  free(m->bi), free(m->q);
  memset(m, 0, sizeof *m);
}

/* SGD over the training ratings in a seeded order each epoch (Funk's biased MF). */
ml_status ml__mf_train(const ml_rec_split *s, const uint8_t *exclude, int64_t f, int64_t epochs, float lr, float reg, uint64_t seed, rec_mf *m) {
  const ml_ratings *r = s->r;
  int64_t ni = r->n_items, nu = r->n_users, n = 0;
  memset(m, 0, sizeof *m);
  m->f = f, m->mu = (float)s->mu;
  m->bi = calloc((size_t)ni + 1, sizeof(float));
  m->q = malloc(((size_t)ni + 1) * (size_t)f * sizeof(float));
  float *bu = calloc((size_t)nu + 1, sizeof(float)), *p = malloc(((size_t)nu + 1) * (size_t)f * sizeof(float));
  int64_t *idx = malloc(((size_t)r->n_ratings + 1) * sizeof(int64_t)), *cnt = calloc((size_t)ni + 1, sizeof(int64_t));
  if (!m->bi || !m->q || !bu || !p || !idx || !cnt) {
    free(bu), free(p), free(idx), free(cnt);
    ml__mf_free(m);
    return ml_error(ML_ERR_NOMEM, "mf: out of memory");
  }
  ml_rng rg;
  ml_rng_init(&rg, seed, 0x6d66);
  for (int64_t k = 0; k < ni * f; k++) m->q[k] = 0.1f * ml_rng_normal(&rg);
  for (int64_t k = 0; k < nu * f; k++) p[k] = 0.1f * ml_rng_normal(&rg);
  for (int64_t k = 0; k < r->n_ratings; k++)
    if (s->train_mask[k] && !(exclude && exclude[k])) idx[n++] = k, cnt[r->item[k]]++;
  for (int64_t e = 0; e < epochs; e++) {
    ml_rng_shuffle(&rg, idx, n);
    for (int64_t t = 0; t < n; t++) {
      int64_t k = idx[t], u = r->user[k], i = r->item[k];
      float *pu = p + u * f, *qi = m->q + i * f, dot = 0;
      for (int64_t j = 0; j < f; j++) dot += pu[j] * qi[j];
      float err = r->rating[k] - (m->mu + bu[u] + m->bi[i] + dot);
      bu[u] += lr * (err - reg * bu[u]);
      m->bi[i] += lr * (err - reg * m->bi[i]);
      for (int64_t j = 0; j < f; j++) {
        float a = pu[j], b = qi[j];
        pu[j] += lr * (err * b - reg * a);
        qi[j] += lr * (err * a - reg * b);
      }
    }
  }
  /* items no training rating touched keep no signal: zero them (a prediction falls back to mu + user) */
  for (int64_t i = 0; i < ni; i++)
    if (!cnt[i]) {
      m->bi[i] = 0;
      memset(m->q + i * f, 0, (size_t)f * sizeof(float));
    }
  free(bu), free(p), free(idx), free(cnt);
  return ML_OK;
}

/* Folds the user in: ridge regression of (r - mu - b_i) on [1, q_i] over the support, one strength
 * lambda for every coordinate and a zero prior mean: meta-ridge's solve (ridge.c) with that prior. */
void ml__mf_predict(const rec_mf *m, const ml_rec_split *s, double lambda, const int64_t *sup, int64_t ns,
                    const int64_t *qry, int64_t nq, float *out) {
  rec_ridge rg;
  ml__ridge_init(&rg, m->f, lambda);
  ml__ridge_predict(&rg, m, s, sup, ns, qry, nq, out);
}
