/* Users as tasks: the cold-start protocol's folds, each user's support / query sets under the
 * four scenarios, the episode encoding and the meta-training task source. Everything random is
 * keyed by (seed, user) or (seed, iteration, task), so a split or task is the same in any run and
 * at any thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/recommend.h"

static const char *scenario_names[ML_REC_SCENARIOS] = {"new-users", "time-order", "new-items", "new-items-warm"};

const char *ml_rec_scenario_name(ml_rec_scenario s) { return s < ML_REC_SCENARIOS ? scenario_names[s] : "?"; }

ml_rec_protocol ml_rec_protocol_defaults(void) {
  return (ml_rec_protocol){.seed = 1, .n_folds = 5, .fold = 0, .val_frac = 0.1, .min_ratings = 13, .max_ratings = 100,
                           .n_query = 10, .new_item_frac = 0.2, .new_items = false, .train_in_range = true};
}

int64_t ml_rec_row_width(const ml_ratings *r) { return ML_REC_COLS + r->n_genres; }

void ml_rec_split_free(ml_rec_split *s) {
  if (!s) return;
  free(s->role), free(s->item_new), free(s->train_mask), free(s->test), free(s->val), free(s->train);
  free(s->train_tasks), free(s->item_mean), free(s->meta_query);
  memset(s, 0, sizeof *s);
}

static int64_t n_ratings_of(const ml_ratings *r, int64_t u) { return r->user_offset[u + 1] - r->user_offset[u]; }

static bool eligible(const ml_rec_split *s, int64_t u) {
  int64_t n = n_ratings_of(s->r, u);
  return n >= s->p.min_ratings && n <= s->p.max_ratings;
}

ml_status ml_rec_split_new(const ml_ratings *r, const ml_rec_protocol *p, ml_rec_split *out) {
  memset(out, 0, sizeof *out);
  if (p->n_folds < 2 || p->fold < 0 || p->fold >= p->n_folds || p->n_query < 1 || p->min_ratings <= p->n_query ||
      p->max_ratings < p->min_ratings || p->val_frac < 0 || p->val_frac >= 1 || p->new_item_frac < 0 ||
      p->new_item_frac >= 1)
    return ml_error(ML_ERR_ARG, "recommend protocol: need 2+ folds, 0 <= fold < folds, min_ratings > n_query, "
                                "fractions in [0, 1)");
  out->r = r, out->p = *p;
  int64_t nu = r->n_users, ni = r->n_items;
  out->role = calloc((size_t)nu + 1, 1);
  out->item_new = calloc((size_t)ni + 1, 1);
  out->train_mask = calloc((size_t)r->n_ratings + 1, 1);
  out->meta_query = calloc((size_t)r->n_ratings + 1, 1);
  out->test = malloc(((size_t)nu + 1) * sizeof(int64_t));
  out->val = malloc(((size_t)nu + 1) * sizeof(int64_t));
  out->train = malloc(((size_t)nu + 1) * sizeof(int64_t));
  out->train_tasks = malloc(((size_t)nu + 1) * sizeof(int64_t));
  out->item_mean = malloc(((size_t)ni + 1) * sizeof(float));
  int64_t *elig = malloc(((size_t)nu + 1) * sizeof(int64_t)), *items = malloc(((size_t)ni + 1) * sizeof(int64_t));
  if (!out->role || !out->item_new || !out->train_mask || !out->test || !out->val || !out->train || !out->train_tasks ||
      !out->item_mean || !out->meta_query || !elig || !items) {
    free(elig), free(items);
    ml_rec_split_free(out);
    return ml_error(ML_ERR_NOMEM, "recommend split: out of memory");
  }
  /* folds: one seeded shuffle of the eligible users, cut into n_folds near-equal parts; the
   * validation users are a seeded fraction of the non-test eligible ones */
  int64_t ne = 0;
  for (int64_t u = 0; u < nu; u++)
    if (eligible(out, u)) elig[ne++] = u;
  ml_rng rg;
  ml_rng_init(&rg, p->seed, 0x666f6c6473);
  ml_rng_shuffle(&rg, elig, ne);
  int64_t lo = ne * p->fold / p->n_folds, hi = ne * (p->fold + 1) / p->n_folds;
  int64_t n_rest = ne - (hi - lo), n_val = (int64_t)floor(p->val_frac * (double)n_rest + 0.5), seen = 0;
  for (int64_t k = 0; k < ne; k++) {
    int64_t u = elig[k];
    if (k >= lo && k < hi) out->role[u] = ML_REC_ROLE_TEST;
    else out->role[u] = seen++ < n_val ? ML_REC_ROLE_VAL : ML_REC_ROLE_TRAIN;
  }
  for (int64_t u = 0; u < nu; u++) {
    if (out->role[u] == ML_REC_ROLE_TEST) out->test[out->n_test++] = u;
    else if (out->role[u] == ML_REC_ROLE_VAL) out->val[out->n_val++] = u;
    else out->train[out->n_train++] = u;
  }
  if (p->new_items) {
    for (int64_t i = 0; i < ni; i++) items[i] = i;
    ml_rng_init(&rg, p->seed, 0x6e65776974656d);
    ml_rng_shuffle(&rg, items, ni);
    int64_t nn = (int64_t)floor(p->new_item_frac * (double)ni + 0.5);
    for (int64_t k = 0; k < nn; k++) out->item_new[items[k]] = 1;
  }
  for (int64_t k = 0; k < r->n_ratings; k++)
    out->train_mask[k] = out->role[r->user[k]] == ML_REC_ROLE_TRAIN && !out->item_new[r->item[k]];
  for (int64_t t = 0; t < out->n_train; t++) {
    int64_t u = out->train[t], m = 0;
    for (int64_t k = r->user_offset[u]; k < r->user_offset[u + 1]; k++) m += out->train_mask[k];
    if (m < p->min_ratings || (p->train_in_range && m > p->max_ratings)) continue;
    out->train_tasks[out->n_train_tasks++] = u;
    int64_t *ord = elig; /* scratch: the eligible list is no longer needed */
    m = 0;
    for (int64_t k = r->user_offset[u]; k < r->user_offset[u + 1]; k++)
      if (out->train_mask[k]) ord[m++] = k;
    ml_rng_init(&rg, p->seed, ml_rng_key((uint64_t)r->user_id[u], 0x6d71, 0));
    ml_rng_shuffle(&rg, ord, m);
    for (int64_t k = 0; k < p->n_query; k++) out->meta_query[ord[k]] = 1;
  }
  out->mu = ml_ratings_item_means(r, out->train_mask, 0, out->item_mean);
  free(elig), free(items);
  if (out->n_test == 0 || out->n_train_tasks == 0) {
    ml_rec_split_free(out);
    return ml_error(ML_ERR_ARG, "recommend split: no %s users with %lld-%lld ratings", out->n_test ? "training" : "test",
                    (long long)p->min_ratings, (long long)p->max_ratings);
  }
  return ML_OK;
}

/* The user's rating indices in one seeded order (the same for every K and scenario). */
static void user_order(const ml_rec_split *s, int64_t u, int64_t *ord) {
  const ml_ratings *r = s->r;
  int64_t n = n_ratings_of(r, u), off = r->user_offset[u];
  for (int64_t k = 0; k < n; k++) ord[k] = off + k;
  ml_rng rg;
  ml_rng_init(&rg, s->p.seed, ml_rng_key((uint64_t)r->user_id[u], 0x75736572, 0));
  ml_rng_shuffle(&rg, ord, n);
}

bool ml_rec_user_sets(const ml_rec_split *s, int64_t u, ml_rec_scenario sc, int64_t k, int64_t *sup, int64_t *n_sup,
                      int64_t *qry, int64_t *n_qry) {
  const ml_ratings *r = s->r;
  int64_t n = n_ratings_of(r, u), off = r->user_offset[u], nq = s->p.n_query < n - 1 ? s->p.n_query : n - 1;
  *n_sup = *n_qry = 0;
  if (n < 2) return false;
  if (sc == ML_REC_TIME_ORDER) {
    int64_t ns = k == ML_REC_K_FULL || k > n - nq ? n - nq : k;
    for (int64_t j = 0; j < ns; j++) sup[j] = off + j;
    for (int64_t j = 0; j < nq; j++) qry[j] = off + ns + j;
    *n_sup = ns, *n_qry = nq;
    return ns > 0;
  }
  user_order(s, u, qry); /* qry doubles as scratch for the order */
  int64_t *ord = qry;
  if (sc == ML_REC_NEW_USERS) {
    int64_t ns = k == ML_REC_K_FULL || k > n - nq ? n - nq : k;
    for (int64_t j = 0; j < ns; j++) sup[j] = ord[nq + j];
    *n_sup = ns, *n_qry = nq;
    return ns > 0;
  }
  /* new items: the query is the user's held-out items, the support the others */
  int64_t a = 0, b = 0;
  for (int64_t j = 0; j < n; j++) {
    int64_t idx = ord[j];
    if (s->item_new[r->item[idx]]) {
      if (a < s->p.n_query) ord[a++] = idx; /* a <= j: writes behind the read position */
    } else if (k == ML_REC_K_FULL || b < k)
      sup[b++] = idx;
  }
  *n_sup = b, *n_qry = a;
  return a > 0 && b > 0;
}

void ml_rec_encode_row(const ml_rec_split *s, int64_t user, const uint8_t *feat, int64_t item, int64_t k, float *row) {
  const ml_ratings *r = s->r;
  row[ML_REC_COL_ITEM] = s->item_new[item] ? 0.0f : (float)(item + 1);
  row[ML_REC_COL_GENDER] = user >= 0 ? r->gender[user] : feat[0];
  row[ML_REC_COL_AGE] = user >= 0 ? r->age[user] : feat[1];
  row[ML_REC_COL_OCC] = user >= 0 ? r->occupation[user] : feat[2];
  row[ML_REC_COL_ZIP] = user >= 0 ? r->zip[user] : feat[3];
  row[ML_REC_COL_YEAR] = r->year[item];
  row[ML_REC_COL_LOGK] = logf(1.0f + (float)k);
  uint32_t g = r->genres[item];
  int cnt = 0;
  for (int64_t j = 0; j < r->n_genres; j++) cnt += (g >> j) & 1u;
  for (int64_t j = 0; j < r->n_genres; j++) row[ML_REC_COLS + j] = ((g >> j) & 1u) ? 1.0f / (float)cnt : 0.0f;
}

ml_status ml_rec_episode(const ml_rec_split *s, const int64_t *sup, int64_t n_sup, const int64_t *qry, int64_t n_qry,
                         ml_arena *arena, ml_episode *out) {
  const ml_ratings *r = s->r;
  int64_t D = ml_rec_row_width(r);
  memset(out, 0, sizeof *out);
  out->xs = ml_tensor_new(arena, 2, (int64_t[]){n_sup, D});
  out->xq = ml_tensor_new(arena, 2, (int64_t[]){n_qry, D});
  out->ts = ml_tensor_new(arena, 2, (int64_t[]){n_sup, 1});
  out->tq = ml_tensor_new(arena, 2, (int64_t[]){n_qry, 1});
  if (!out->xs.data || !out->xq.data || !out->ts.data || !out->tq.data)
    return ml_error(ML_ERR_NOMEM, "recommend episode: arena exhausted");
  float *xs = out->xs.data, *xq = out->xq.data, *ts = out->ts.data, *tq = out->tq.data;
  for (int64_t j = 0; j < n_sup; j++) {
    ml_rec_encode_row(s, r->user[sup[j]], NULL, r->item[sup[j]], n_sup, xs + j * D);
    ts[j] = r->rating[sup[j]];
  }
  for (int64_t j = 0; j < n_qry; j++) {
    ml_rec_encode_row(s, r->user[qry[j]], NULL, r->item[qry[j]], n_sup, xq + j * D);
    tq[j] = r->rating[qry[j]];
  }
  out->n_way = 1, out->k_shot = n_sup, out->q_query = n_qry, out->n_s = n_sup, out->n_q = n_qry;
  return ML_OK;
}

#define TRAIN_SUPPORT_MAX 90 /* like the longest test support (100 ratings minus the query) */

ml_status ml_rec_task_sets(const ml_rec_task_source *src, int64_t iteration, int64_t index, ml_arena *arena,
                           int64_t **qry, int64_t *n_qry, int64_t **sup, int64_t *n_sup) {
  const ml_rec_split *s = src->split;
  const ml_ratings *r = s->r;
  ml_rng rg;
  ml_rng_init(&rg, src->seed, ml_rng_key((uint64_t)iteration, (uint64_t)index, 0x7461736b));
  int64_t u = s->train_tasks[ml_rng_below(&rg, (uint32_t)s->n_train_tasks)];
  int64_t n = n_ratings_of(r, u), off = r->user_offset[u], m = 0;
  int64_t *ord = ml_arena_alloc(arena, (size_t)n * sizeof(int64_t) + 8);
  if (!ord) return ml_error(ML_ERR_NOMEM, "recommend task: arena exhausted");
  int64_t nq;
  if (src->fixed_query) { /* the fixed query first, then the other usable ratings */
    for (int64_t k = 0; k < n; k++)
      if (s->meta_query[off + k]) ord[m++] = off + k;
    nq = m;
    for (int64_t k = 0; k < n; k++)
      if (s->train_mask[off + k] && !s->meta_query[off + k]) ord[m++] = off + k;
    ml_rng_shuffle(&rg, ord + nq, m - nq);
  } else {
    for (int64_t k = 0; k < n; k++)
      if (s->train_mask[off + k]) ord[m++] = off + k;
    ml_rng_shuffle(&rg, ord, m);
    nq = s->p.n_query < m - 1 ? s->p.n_query : m - 1;
  }
  int64_t ns = m - nq;
  if (ns > TRAIN_SUPPORT_MAX) ns = TRAIN_SUPPORT_MAX;
  if (src->n_k > 0) {
    int64_t k = src->k_choices[ml_rng_below(&rg, (uint32_t)src->n_k)];
    if (k != ML_REC_K_FULL && k < ns) ns = k;
  }
  *qry = ord, *n_qry = nq, *sup = ord + nq, *n_sup = ns;
  return ML_OK;
}

ml_status ml_rec_task(void *ctx, int64_t iteration, int64_t index, ml_arena *arena, ml_episode *out) {
  const ml_rec_task_source *src = ctx;
  int64_t *qry, *sup, nq, ns;
  ml_status st = ml_rec_task_sets(src, iteration, index, arena, &qry, &nq, &sup, &ns);
  return st ? st : ml_rec_episode(src->split, sup, ns, qry, nq, arena, out);
}
