/* The recommenders as custom ml_models (a parameter list plus a forward on explicit weights), so
 * every gradient-based algorithm of ml_algo trains them.
 *
 * MeLU (Lee et al., KDD 2019): one emb_dim embedding per feature field (gender, age, occupation,
 * zip prefix; release-year bucket; genres as the mean of their embeddings), concatenated, MLP
 * hidden-hidden-1 with ReLU and a linear output; the inner loop adapts only the MLP. The first
 * layer is stored as two blocks (categorical fields, genres): the same map as one layer on the
 * concatenation, without a concatenation op. The output is offset by the training mean (a
 * constant), so training does not spend its first thousand steps learning the rating scale.
 *
 * metarec (ours) adds what MeLU cannot see or do on 100K:
 *   pred = mu + mlp(features) + b_i + t(K) * (b_u + q_i . p_u)
 * with meta-learned item-identity tables (bias b_i, factors q_i; the item id also joins the
 * MLP's fields), a per-user bias b_u and vector p_u that the inner loop adapts (Meta-SGD learns
 * their step sizes), and a learned trust t(K) = 2 sigmoid(a log(1 + K) + c) in the K support
 * ratings, so the model learns how far a single rating should move it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/recommend/internal.h"

enum { F_ITEM, F_GENDER, F_AGE, F_OCC, F_ZIP, F_YEAR, N_FIELDS };

typedef struct {
  ml_rec_model_config cfg;
  int64_t n_items, n_genres, width;
  float mu;
  int64_t n_fields, field_col[N_FIELDS], field_off[N_FIELDS];
  /* parameter indices, -1 when absent */
  int64_t table, genre, ibias, ifac, ta, tc, fc1c, fc1g, fc1b, fc2w, fc2b, outw, outb, ub, up;
  int64_t dtab, dbw, dbb, dpw, dpb; /* demographics: table, maps to the bias and the vector */
  /* item tables held as constants when they are not meta-learned */
  ml_tensor cbias, cfac;
} recm;

ml_rec_model_config ml_rec_model_defaults(ml_rec_model_kind kind) {
  ml_rec_model_config c = {.kind = kind, .emb_dim = 32, .hidden = 64, .mlp = true, .adapt_mlp = true};
  if (kind == ML_REC_METAREC) {
    c.item_id = true, c.user_bias = true, c.factors = 16, c.trust = true, c.mlp = false, c.adapt_mlp = false;
  }
  return c;
}

void ml_rec_model_free(ml_model *m) {
  if (!m) return;
  recm *R = m->custom_ctx;
  if (R) free(R->cbias.data), free(R->cfac.data);
  free(m->custom_ctx);
  ml_model_free(m);
}

static int64_t add(ml_params *p, ml_status *st, const char *name, int ndim, int64_t d0, int64_t d1) {
  if (*st) return -1;
  *st = ml_params_add(p, name, ndim, (int64_t[]){d0, d1});
  return *st ? -1 : p->count - 1;
}

static ml_tensor *val(ml_model *m, int64_t i) { return &m->params->items[i].value; }

static ml_node *forward(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x) {
  const recm *R = m->custom_ctx;
  const ml_rec_model_config *c = &R->cfg;
  int64_t n = x->value.shape[0], D = R->width, G = R->n_genres, F = R->n_fields;
  const float *xd = x->value.data;
  ml_arena *ar = ml_graph_arena(g);
  int32_t *fidx = ml_arena_alloc(ar, (size_t)(n * F + n) * sizeof(int32_t) + 8);
  if (!fidx) {
    ml_error(ML_ERR_NOMEM, "recommend model: arena exhausted");
    return NULL;
  }
  int32_t *item = fidx + n * F;
  for (int64_t i = 0; i < n; i++) {
    const float *row = xd + i * D;
    float it = row[ML_REC_COL_ITEM];
    item[i] = it >= 0 && it <= (float)R->n_items ? (int32_t)it : 0;
    for (int64_t f = 0; f < F; f++) {
      float v = row[R->field_col[f]];
      int32_t k = R->field_col[f] == ML_REC_COL_ITEM ? item[i] : v >= 0 && v < 64 ? (int32_t)v : 0;
      fidx[i * F + f] = (int32_t)R->field_off[f] + k;
    }
  }
  ml_node *pred = NULL;
  if (c->mlp) {
    ml_node *e = ml_embedding(g, w[R->table], fidx, n * F);
    e = ml_reshape(g, e, 2, (int64_t[]){n, F * c->emb_dim});
    ml_node *xg = ml_new(g, 2, (int64_t[]){n, G > 0 ? G : 1});
    if (!xg) return NULL;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < G; j++) xg->value.data[i * G + j] = xd[i * D + ML_REC_COLS + j];
    ml_node *h = ml_linear(g, e, w[R->fc1c], w[R->fc1b]);
    if (G > 0) h = ml_add(g, h, ml_matmul(g, ml_matmul(g, xg, w[R->genre], false, false), w[R->fc1g], false, true));
    h = ml_relu(g, h);
    h = ml_relu(g, ml_linear(g, h, w[R->fc2w], w[R->fc2b]));
    pred = ml_linear(g, h, w[R->outw], w[R->outb]);
  }
  ml_node *tb = R->ibias >= 0 ? w[R->ibias] : R->cbias.data ? ml_leaf(g, R->cbias, false) : NULL;
  ml_node *tq = R->ifac >= 0 ? w[R->ifac] : R->cfac.data ? ml_leaf(g, R->cfac, false) : NULL;
  if (c->item_id) {
    ml_node *bi = ml_embedding(g, tb, item, n);
    pred = pred ? ml_add(g, pred, bi) : bi;
  }
  ml_node *ut = NULL;
  if (c->factors > 0) {
    ml_node *q = ml_embedding(g, tq, item, n);
    ut = ml_matmul(g, q, ml_reshape(g, w[R->up], 2, (int64_t[]){c->factors, 1}), false, false);
  }
  if (c->demographics && R->dtab >= 0) {
    /* per-row user start from the demographic fields: bias db (n, 1), vector dp (n, f) */
    static const int64_t dcol[4] = {ML_REC_COL_GENDER, ML_REC_COL_AGE, ML_REC_COL_OCC, ML_REC_COL_ZIP};
    static const int64_t doff[4] = {0, ML_RATINGS_N_GENDER, ML_RATINGS_N_GENDER + ML_RATINGS_N_AGE,
                                    ML_RATINGS_N_GENDER + ML_RATINGS_N_AGE + ML_RATINGS_N_OCC};
    static const int64_t dmax[4] = {ML_RATINGS_N_GENDER, ML_RATINGS_N_AGE, ML_RATINGS_N_OCC, ML_RATINGS_N_ZIP};
    int32_t *didx = ml_arena_alloc(ar, (size_t)(4 * n) * sizeof(int32_t) + 8);
    if (!didx) {
      ml_error(ML_ERR_NOMEM, "recommend model: arena exhausted");
      return NULL;
    }
    for (int64_t i = 0; i < n; i++)
      for (int f = 0; f < 4; f++) {
        float v = xd[i * D + dcol[f]];
        didx[i * 4 + f] = (int32_t)(doff[f] + (v >= 0 && v < (float)dmax[f] ? (int64_t)v : 0));
      }
    int64_t dd = w[R->dtab]->value.shape[1];
    ml_node *de = ml_reshape(g, ml_embedding(g, w[R->dtab], didx, 4 * n), 2, (int64_t[]){n, 4 * dd});
    if (R->dbw >= 0) {
      ml_node *db = ml_linear(g, de, w[R->dbw], w[R->dbb]);
      ut = ut ? ml_add(g, ut, db) : db;
    }
    if (R->dpw >= 0) {
      ml_node *q = ml_embedding(g, tq, item, n);
      ml_node *dp = ml_linear(g, de, w[R->dpw], w[R->dpb]);
      ml_node *dq = ml_reshape(g, ml_sum_rows(g, ml_mul(g, q, dp)), 2, (int64_t[]){n, 1});
      ut = ut ? ml_add(g, ut, dq) : dq;
    }
  }
  if (c->user_bias) {
    if (!ut) {
      ut = ml_zeros(g, 2, (int64_t[]){n, 1});
    }
    ut = ml_add(g, ut, w[R->ub]);
  }
  if (ut && c->trust) {
    ml_node *lk = ml_new(g, 2, (int64_t[]){n, 1});
    if (!lk) return NULL;
    for (int64_t i = 0; i < n; i++) lk->value.data[i] = xd[i * D + ML_REC_COL_LOGK];
    ml_node *t = ml_scale(g, ml_sigmoid(g, ml_add(g, ml_mul(g, lk, w[R->ta]), w[R->tc])), 2.0f);
    ut = ml_mul(g, ut, t);
  }
  if (ut) pred = pred ? ml_add(g, pred, ut) : ut;
  if (!pred) pred = ml_zeros(g, 2, (int64_t[]){n, 1});
  return ml_affine(g, pred, 1.0f, R->mu);
}

void ml_rec_model_set_items(ml_model *m, const float *bias, const float *factors, int64_t f) {
  recm *R = m->custom_ctx;
  ml_tensor *tb = R->ibias >= 0 ? val(m, R->ibias) : R->cbias.data ? &R->cbias : NULL;
  ml_tensor *tq = R->ifac >= 0 ? val(m, R->ifac) : R->cfac.data ? &R->cfac : NULL;
  /* each factor column scaled to unit RMS over the items: predictions after adaptation are the
   * same up to the user vector's scale, but the inner loop's curvature is ~1 in every direction,
   * so one step size fits all (the user vector starts at zero, so the start is unchanged) */
  double scale[256];
  for (int64_t j = 0; j < f && j < 256; j++) {
    double ss = 0;
    for (int64_t i = 0; factors && i < R->n_items; i++) ss += (double)factors[i * f + j] * factors[i * f + j];
    scale[j] = ss > 0 ? 1.0 / sqrt(ss / (double)R->n_items) : 1.0;
  }
  for (int64_t i = 0; i < R->n_items; i++) {
    if (tb && bias) tb->data[i + 1] = bias[i];
    if (tq && factors && f == R->cfg.factors)
      for (int64_t j = 0; j < f; j++) tq->data[(i + 1) * f + j] = (float)(factors[i * f + j] * scale[j]);
  }
}

ml_status ml_rec_model_new(const ml_rec_model_config *cfg, const ml_ratings *r, double mu, const float *item_mean,
                           uint64_t seed, ml_model **out) {
  *out = NULL;
  if (cfg->emb_dim < 1 || cfg->hidden < 1 || cfg->factors < 0 || cfg->factors > 256)
    return ml_error(ML_ERR_ARG, "recommend model: emb_dim, hidden >= 1, factors 0..256");
  recm *R = calloc(1, sizeof *R);
  ml_params *p = ml_params_new();
  if (!R || !p) {
    free(R), ml_params_free(p);
    return ml_error(ML_ERR_NOMEM, "recommend model: out of memory");
  }
  R->cfg = *cfg;
  R->n_items = r->n_items, R->n_genres = r->n_genres, R->width = ml_rec_row_width(r), R->mu = (float)mu;
  static const int64_t cols[N_FIELDS] = {ML_REC_COL_ITEM, ML_REC_COL_GENDER, ML_REC_COL_AGE, ML_REC_COL_OCC,
                                         ML_REC_COL_ZIP, ML_REC_COL_YEAR};
  const int64_t sizes[N_FIELDS] = {r->n_items + 1, ML_RATINGS_N_GENDER, ML_RATINGS_N_AGE, ML_RATINGS_N_OCC,
                                   ML_RATINGS_N_ZIP, ML_RATINGS_N_YEAR};
  int64_t rows = 0;
  /* the item id joins the MLP's fields only when item tables are meta-learned: a fixed per-item
   * embedding there memorizes the meta-training queries */
  for (int f = cfg->item_id && cfg->learn_items ? 0 : 1; f < N_FIELDS; f++) {
    R->field_col[R->n_fields] = cols[f], R->field_off[R->n_fields] = rows;
    rows += sizes[f];
    R->n_fields++;
  }
  int64_t d = cfg->emb_dim, h = cfg->hidden, G = r->n_genres;
  ml_status st = ML_OK;
  R->table = R->genre = R->ibias = R->ifac = R->ta = R->tc = R->fc1c = R->fc1g = R->fc1b = -1;
  R->fc2w = R->fc2b = R->outw = R->outb = R->ub = R->up = -1;
  R->dtab = R->dbw = R->dbb = R->dpw = R->dpb = -1;
  /* meta-learned only (never adapted) first ... */
  if (cfg->mlp) {
    R->table = add(p, &st, "emb.fields", 2, rows, d);
    if (G > 0) R->genre = add(p, &st, "emb.genre", 2, G, d);
  }
  if (cfg->item_id && cfg->learn_items) R->ibias = add(p, &st, "item.bias", 2, r->n_items + 1, 1);
  if (cfg->factors > 0 && cfg->learn_items) R->ifac = add(p, &st, "item.factors", 2, r->n_items + 1, cfg->factors);
  if (cfg->item_id && !cfg->learn_items) {
    R->cbias = ml_shape2(r->n_items + 1, 1);
    if (!(R->cbias.data = calloc((size_t)R->cbias.numel, sizeof(float)))) st = ml_error(ML_ERR_NOMEM, "out of memory");
  }
  if (cfg->factors > 0 && !cfg->learn_items) {
    R->cfac = ml_shape2(r->n_items + 1, cfg->factors);
    if (!(R->cfac.data = calloc((size_t)R->cfac.numel, sizeof(float)))) st = ml_error(ML_ERR_NOMEM, "out of memory");
  }
  if (cfg->trust && (cfg->user_bias || cfg->factors > 0)) {
    R->ta = add(p, &st, "trust.a", 1, 1, 1);
    R->tc = add(p, &st, "trust.c", 1, 1, 1);
  }
  if (cfg->demographics && (cfg->user_bias || cfg->factors > 0)) {
    const int64_t dd = 8, rows_d = ML_RATINGS_N_GENDER + ML_RATINGS_N_AGE + ML_RATINGS_N_OCC + ML_RATINGS_N_ZIP;
    R->dtab = add(p, &st, "demo.table", 2, rows_d, dd);
    if (cfg->user_bias) {
      R->dbw = add(p, &st, "demo.bias.weight", 2, 1, 4 * dd);
      R->dbb = add(p, &st, "demo.bias.bias", 1, 1, 1);
    }
    if (cfg->factors > 0) {
      R->dpw = add(p, &st, "demo.vector.weight", 2, cfg->factors, 4 * dd);
      R->dpb = add(p, &st, "demo.vector.bias", 1, cfg->factors, 1);
    }
  }
  int64_t head_first = -1;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) head_first = st ? 0 : p->count;
    /* ... then the inner loop's parameters: the MLP where it adapts, the user terms */
    if (cfg->mlp && cfg->adapt_mlp == (pass == 1)) {
      R->fc1c = add(p, &st, "fc1.weight", 2, h, R->n_fields * d);
      if (G > 0) R->fc1g = add(p, &st, "fc1.weight_genre", 2, h, d);
      R->fc1b = add(p, &st, "fc1.bias", 1, h, 1);
      R->fc2w = add(p, &st, "fc2.weight", 2, h, h);
      R->fc2b = add(p, &st, "fc2.bias", 1, h, 1);
      R->outw = add(p, &st, "out.weight", 2, 1, h);
      R->outb = add(p, &st, "out.bias", 1, 1, 1);
    }
  }
  if (cfg->user_bias) R->ub = add(p, &st, "user.bias", 1, 1, 1);
  if (cfg->factors > 0) R->up = add(p, &st, "user.vector", 1, cfg->factors, 1);
  if (!st && p->count == 0) st = ml_error(ML_ERR_ARG, "recommend model: no component enabled");
  if (!st && head_first == p->count)
    st = ml_error(ML_ERR_ARG, "recommend model: nothing adapts (enable adapt_mlp, user_bias or factors)");
  if (!st) st = ml_params_finalize(p);
  ml_model *m = NULL;
  if (!st) st = ml_custom_model_new(p, head_first, forward, R, &m);
  if (st) {
    free(R->cbias.data), free(R->cfac.data);
    free(R), ml_params_free(p);
    return st;
  }
  ml_rng rg;
  ml_rng_init(&rg, seed, 0x7265636d);
  /* PyTorch defaults, as the MeLU code uses them: nn.Embedding N(0, 1), nn.Linear U(+-1/sqrt(fan_in)) */
  if (R->table >= 0) ml_tensor_randn(val(m, R->table), &rg, 1.0f);
  if (R->genre >= 0) ml_init_fan_in_uniform(val(m, R->genre), G, &rg);
  if (R->fc1c >= 0) {
    int64_t fan = R->n_fields * d + (G > 0 ? d : 0);
    ml_init_fan_in_uniform(val(m, R->fc1c), fan, &rg);
    if (R->fc1g >= 0) ml_init_fan_in_uniform(val(m, R->fc1g), fan, &rg);
    ml_init_fan_in_uniform(val(m, R->fc1b), fan, &rg);
    ml_init_fan_in_uniform(val(m, R->fc2w), h, &rg), ml_init_fan_in_uniform(val(m, R->fc2b), h, &rg);
    ml_init_fan_in_uniform(val(m, R->outw), h, &rg), ml_init_fan_in_uniform(val(m, R->outb), h, &rg);
  }
  ml_tensor *tb = R->ibias >= 0 ? val(m, R->ibias) : R->cbias.data ? &R->cbias : NULL;
  ml_tensor *tq = R->ifac >= 0 ? val(m, R->ifac) : R->cfac.data ? &R->cfac : NULL;
  if (tb && item_mean) /* start from the training items' mean deviations */
    for (int64_t i = 0; i < r->n_items; i++) tb->data[i + 1] = item_mean[i] - (float)mu;
  if (tq) ml_tensor_randn(tq, &rg, 0.1f);
  /* trust starts low for one rating and grows with K (0.42 at K = 1, 1.2 at 10, 1.85 at 90):
   * the damped-baseline shape, which meta-training then bends */
  if (R->ta >= 0) val(m, R->ta)->data[0] = 1.0f, val(m, R->tc)->data[0] = -2.0f;
  /* demographics start with no effect (zero maps) and small embeddings */
  if (R->dtab >= 0) ml_tensor_randn(val(m, R->dtab), &rg, 0.1f);
  if (cfg->kind == ML_REC_METAREC && R->outw >= 0) /* the MLP starts as a small correction */
    ml_tensor_fill(val(m, R->outw), 0.0f), ml_tensor_fill(val(m, R->outb), 0.0f);
  *out = m;
  return ML_OK;
}

ml_status ml_rec_model_fit_items(ml_model *m, const ml_rec_split *s, bool all_ratings, uint64_t seed) {
  recm *R = m->custom_ctx;
  if (!R->cfg.item_id && R->cfg.factors == 0) return ML_OK;
  rec_mf mf;
  ml_status st = ml__mf_fit(s, all_ratings ? NULL : s->meta_query, R->cfg.factors > 0 ? R->cfg.factors : 16, seed, &mf);
  if (st) return st;
  ml_rec_model_set_items(m, mf.bi, mf.q, mf.f);
  ml__mf_free(&mf);
  return ML_OK;
}
