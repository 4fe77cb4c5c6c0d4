/* recommend: MovieLens readers (1M and CSV files written here, the real 100K when present) and
 * their bad inputs, the cache, the protocol's folds and its no-leak guarantee, the metrics, and
 * meta-learning on a synthetic ratings file with users in taste clusters, where the answer is
 * known: adapting from K ratings must recover the cluster and beat the global mean clearly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/recommend/internal.h"
#include "harness.h"
#include "metalearn/recommend.h"

static const char *dir_in(const char *name) {
  static char buf[8][4096];
  static int at;
  char *p = buf[at++ % 8];
  snprintf(p, 4096, "%s/%s", ml_test_tmpdir(), name);
  mkdir(p, 0755);
  return p;
}

static void write_in(const char *dir, const char *file, const char *text) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  ml_test_write_file(p, text, strlen(text));
}

/* ---------------------------------------------------------------- readers ---- */

ML_TEST(reads_1m_format) {
  const char *d = dir_in("ml1m");
  write_in(d, "ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n2::30::1::978300275\n");
  write_in(d, "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n");
  write_in(d, "movies.dat", "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Heat (1995)::Action|Crime|Thriller\n"
                            "30::Nosferatu (1922)::Horror\n40::Unrated (no year)::(no genres listed)\n");
  ml_ratings r;
  CHECK_OK(ml_ratings_load(d, "", &r));
  CHECK(r.format == ML_RATINGS_1M);
  CHECK(r.n_ratings == 4 && r.n_users == 2 && r.n_items == 4);
  CHECK(r.user_offset[1] == 2 && r.user_offset[2] == 4);
  /* user 1's ratings in time order: item 10 (t 978300760) before item 20 (t 978302109) */
  CHECK(r.item[0] == 0 && r.item[1] == 1 && r.rating[0] == 5.0f && r.rating[1] == 3.0f);
  /* user 2: item 30 (earlier) then item 10 */
  CHECK(r.item[2] == 2 && r.item[3] == 0);
  CHECK(r.gender[0] == 2 && r.gender[1] == 1);     /* F, M */
  CHECK(r.age[0] == 1 && r.age[1] == 7);           /* codes 1 and 56 */
  CHECK(r.occupation[0] == 11 && !strcmp(r.occupation_names[11], "K-12 student"));
  CHECK(r.zip[0] == 5 && r.zip[1] == 8);           /* first digits 4 and 7 */
  CHECK(r.year[0] == 8 && r.year[2] == 1 && r.year[3] == 0); /* 1995, 1922, unknown */
  CHECK(r.n_genres == 7 && r.genres[3] == 0);
  CHECK(!strcmp(r.genre_names[r.n_genres - 1], "Horror") && (r.genres[2] & (1u << 6)));
  CHECK(!strcmp(r.titles[1], "Heat (1995)"));
  ml_ratings_free(&r);
}

ML_TEST(reads_csv_format) {
  const char *d = dir_in("mlcsv");
  write_in(d, "ratings.csv", "userId,movieId,rating,timestamp\n7,1,4.5,964982703\n7,3,0.5,964981247\n9,1,3.0,964982224\n");
  write_in(d, "movies.csv", "movieId,title,genres\n1,\"American President, The (1995)\",Comedy|Drama|Romance\n"
                            "3,\"Say \"\"Hi\"\" (2001)\",Comedy\n");
  ml_ratings r;
  CHECK_OK(ml_ratings_load(d, "", &r));
  CHECK(r.format == ML_RATINGS_CSV);
  CHECK(r.n_ratings == 3 && r.n_users == 2 && r.n_items == 2);
  CHECK(!strcmp(r.titles[0], "American President, The (1995)"));
  CHECK(!strcmp(r.titles[1], "Say \"Hi\" (2001)"));
  CHECK(r.year[1] == 9 && r.genres[0] == 7u && r.genres[1] == 1u);
  CHECK(r.rating_min == 0.5f && r.rating_step == 0.5f);
  CHECK(r.rating[0] == 0.5f && r.rating[1] == 4.5f); /* user 7 in time order: item 3 first */
  CHECK(r.gender[0] == 0 && r.age[1] == 0);          /* no demographics in the CSV release */
  ml_ratings_free(&r);
}

/* Each bad input must fail with ML_ERR_FORMAT and a message naming file:line. */
static void expect_bad(const char *name, const char *file, const char *text, const char *where) {
  const char *d = dir_in(name);
  write_in(d, "ratings.dat", "1::10::5::1\n2::10::4::2\n");
  write_in(d, "movies.dat", "10::A (1990)::Drama\n");
  write_in(d, file, text);
  ml_ratings r;
  ml_status st = ml_ratings_load(d, "", &r);
  CHECK_MSG(st == ML_ERR_FORMAT, "%s: status %d (%s)", name, (int)st, ml_last_error());
  CHECK_MSG(strstr(ml_last_error(), where) != NULL, "%s: message '%s' lacks '%s'", name, ml_last_error(), where);
  CHECK(r.n_ratings == 0 && r.rating == NULL);
}

ML_TEST(bad_inputs_name_file_and_line) {
  expect_bad("bad1", "ratings.dat", "1::10::5::1\n1::10::five::2\n", "ratings.dat:2:");
  expect_bad("bad2", "ratings.dat", "1::10::5::1\n\n2::10::6::2\n", "ratings.dat:3:");     /* off the scale */
  expect_bad("bad3", "ratings.dat", "1::10::0::1\n", "ratings.dat:1:");
  expect_bad("bad4", "ratings.dat", "1::10::4.5::1\n", "ratings.dat:1:");                   /* not a step */
  expect_bad("bad5", "ratings.dat", "", "ratings.dat:1:");                                   /* empty */
  expect_bad("bad6", "ratings.dat", "1::99::4::1\n", "ratings.dat:1: item 99");             /* unknown item */
  expect_bad("bad7", "ratings.dat", "1::10::4::1::extra\n", "ratings.dat:1:");
  expect_bad("bad8", "ratings.dat", "-1::10::4::1\n", "ratings.dat:1:");
  expect_bad("bad9", "ratings.dat", "99999999999999999999999::10::4::1\n", "ratings.dat:1:"); /* overflow */
  expect_bad("bad10", "movies.dat", "10::A::Drama\n10::B::Drama\n", "movie id 10 listed twice");
  expect_bad("bad11", "users.dat", "1::X::1::10::48067\n", "users.dat:1:");
  expect_bad("bad12", "users.dat", "1::F::2::10::48067\n", "users.dat:1:");                 /* not an age code */
  expect_bad("bad13", "movies.dat", "", "movies.dat:1:");
  /* a line longer than the limit, and a NUL byte inside a line */
  size_t n = 70000;
  char *big = malloc(n + 2);
  memset(big, '1', n);
  big[n] = '\n', big[n + 1] = 0;
  expect_bad("bad14", "ratings.dat", big, "ratings.dat:1:");
  free(big);
  const char *d = dir_in("bad15");
  write_in(d, "movies.dat", "10::A (1990)::Drama\n");
  char p[4200];
  snprintf(p, sizeof p, "%s/ratings.dat", d);
  ml_test_write_file(p, "1::10::5::1\n1::1\0::5::2\n", 24);
  ml_ratings r;
  CHECK(ml_ratings_load(d, "", &r) == ML_ERR_FORMAT && strstr(ml_last_error(), "ratings.dat:2:"));
  /* no ratings file at all */
  CHECK(ml_ratings_load(dir_in("none"), "", &r) == ML_ERR_NOTFOUND);
  /* the CSV reader: unbalanced quote */
  d = dir_in("bad16");
  write_in(d, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n");
  write_in(d, "movies.csv", "movieId,title,genres\n1,\"Broken (1990),Drama\n");
  CHECK(ml_ratings_load(d, "", &r) == ML_ERR_FORMAT && strstr(ml_last_error(), "movies.csv:2:"));
}

ML_TEST(cache_round_trip) {
  const char *d = dir_in("mlcache"), *c = dir_in("cachedir");
  write_in(d, "ratings.dat", "1::10::5::3\n1::20::3::2\n2::10::4::1\n");
  write_in(d, "users.dat", "1::F::18::3::12345\n2::M::35::0::B3C4D\n");
  write_in(d, "movies.dat", "10::A \xc3\xa9t\xc3\xa9 (1985)::Drama|War\n20::B (2003)::Comedy\n");
  ml_ratings a, b;
  CHECK_OK(ml_ratings_load(d, c, &a)); /* parses and writes the cache */
  CHECK_OK(ml_ratings_load(d, c, &b)); /* reads it */
  CHECK(a.n_ratings == b.n_ratings && a.n_users == b.n_users && a.n_items == b.n_items && a.n_genres == b.n_genres);
  CHECK(!memcmp(a.rating, b.rating, (size_t)a.n_ratings * sizeof(float)));
  CHECK(!memcmp(a.item, b.item, (size_t)a.n_ratings * sizeof(int32_t)));
  CHECK(!memcmp(a.time, b.time, (size_t)a.n_ratings * sizeof(int64_t)));
  CHECK(!memcmp(a.zip, b.zip, (size_t)a.n_users) && b.zip[1] == 0); /* a non-digit zip is unknown */
  CHECK(!memcmp(a.genres, b.genres, (size_t)a.n_items * sizeof(uint32_t)));
  CHECK(!strcmp(a.titles[0], b.titles[0]) && !strcmp(b.genre_names[1], "War"));
  ml_ratings_free(&a), ml_ratings_free(&b);
}

ML_TEST(real_100k_counts) {
  const char *data = ml_test_data_dir();
  char d[4096];
  struct stat st;
  if (!data || (snprintf(d, sizeof d, "%s/movielens/ml-100k", data), stat(d, &st) != 0)) {
    printf("  (skipped: no MovieLens 100K)\n");
    return;
  }
  ml_ratings r;
  CHECK_OK(ml_ratings_load(d, "", &r));
  CHECK(r.format == ML_RATINGS_100K && r.n_ratings == 100000 && r.n_users == 943 && r.n_items == 1682);
  CHECK(r.n_genres == 19 && !strcmp(r.titles[0], "Toy Story (1995)"));
  int64_t elig = 0;
  for (int64_t u = 0; u < r.n_users; u++) {
    int64_t n = r.user_offset[u + 1] - r.user_offset[u];
    elig += n >= 13 && n <= 100;
    CHECK(n >= 20);
  }
  CHECK(elig == 582);
  ml_ratings_free(&r);
}

/* ---------------------------------------------------------------- synthetic clusters ---- */

/* 3 taste clusters of users, 3 groups of items (the group is the item's genre); a user rates
 * items of their own cluster 4-5 and the others 1-2, with a seeded choice of items. */
static const char *write_clusters(int64_t n_users, int64_t n_items, int64_t per_user) {
  const char *d = dir_in("clusters");
  char p[4200];
  snprintf(p, sizeof p, "%s/movies.dat", d);
  FILE *f = fopen(p, "w");
  static const char *g[3] = {"Action", "Comedy", "Drama"};
  for (int64_t i = 0; i < n_items; i++) fprintf(f, "%lld::Item %lld (199%lld)::%s\n", (long long)i + 1, (long long)i, (long long)(i % 10), g[i % 3]);
  fclose(f);
  snprintf(p, sizeof p, "%s/ratings.dat", d);
  f = fopen(p, "w");
  ml_rng rg;
  ml_rng_init(&rg, 7, 1);
  int64_t *items = malloc((size_t)n_items * sizeof(int64_t));
  for (int64_t u = 0; u < n_users; u++) {
    for (int64_t i = 0; i < n_items; i++) items[i] = i;
    ml_rng_shuffle(&rg, items, n_items);
    for (int64_t j = 0; j < per_user; j++) {
      int64_t i = items[j];
      int r = (i % 3 == u % 3) ? 4 + (int)ml_rng_below(&rg, 2) : 1 + (int)ml_rng_below(&rg, 2);
      fprintf(f, "%lld::%lld::%d::%lld\n", (long long)u + 1, (long long)i + 1, r, (long long)(1000 + j));
    }
  }
  free(items);
  fclose(f);
  return d;
}

/* The clusters file loaded and split by the default protocol (fold 0). */
static void clusters_split(ml_ratings *r, ml_rec_split *s) {
  CHECK_OK(ml_ratings_load(write_clusters(150, 45, 30), "", r));
  ml_rec_protocol p = ml_rec_protocol_defaults();
  CHECK_OK(ml_rec_split_new(r, &p, s));
}

/* A recommender under test: predictions for the query from the support (rating indices). */
typedef void (*predict_fn)(void *ctx, const ml_rec_split *s, const int64_t *sup, int64_t ns, const int64_t *qry,
                           int64_t nq, ml_arena *ar, float *pred);

static void algo_predict(void *ctx, const ml_rec_split *s, const int64_t *sup, int64_t ns, const int64_t *qry,
                         int64_t nq, ml_arena *ar, float *pred) {
  ml_episode ep;
  CHECK_OK(ml_rec_episode(s, sup, ns, qry, nq, ar, &ep));
  CHECK_OK(ml_algo_predict(ctx, &ep, ar, pred));
}

/* Mean over test users of the query MAE at support size k: the model, or the global mean. */
static double test_mae(const ml_rec_split *s, predict_fn predict, void *ctx, int64_t k, double *global) {
  ml_arena *ar = ml_arena_new(0, NULL);
  double sum = 0, sg = 0;
  int64_t n = 0;
  for (int64_t t = 0; t < s->n_test; t++) {
    int64_t u = s->test[t], sup[200], qry[200], ns, nq;
    if (!ml_rec_user_sets(s, u, ML_REC_NEW_USERS, k, sup, &ns, qry, &nq)) continue;
    ml_arena_reset(ar);
    float pred[200], truth[200], g[200];
    predict(ctx, s, sup, ns, qry, nq, ar, pred);
    for (int64_t j = 0; j < nq; j++) truth[j] = s->r->rating[qry[j]], g[j] = (float)s->mu;
    sum += ml_rec_score(pred, truth, nq).mae, sg += ml_rec_score(g, truth, nq).mae, n++;
  }
  ml_arena_free(ar);
  *global = sg / (double)n;
  return sum / (double)n;
}

static ml_algo_config reg_cfg(ml_algo_kind kind, float lr) {
  ml_algo_config c = ml_algo_defaults(kind);
  c.task = ML_TASK_REGRESS, c.meta_batch = 8, c.inner_steps = 5, c.inner_steps_test = 5, c.inner_lr = lr;
  c.adapt_head_only = true, c.threads = 2;
  c.outer.lr = 1e-2f;
  return c;
}

ML_TEST(meta_learning_recovers_taste_clusters) {
  ml_ratings r;
  ml_rec_split s;
  clusters_split(&r, &s);
  CHECK(s.n_test == 30 && s.n_val + s.n_train == 120);
  /* metarec: item factors from MF on the training users, the user vector adapted by Meta-SGD */
  ml_rec_model_config mc = ml_rec_model_defaults(ML_REC_METAREC);
  mc.factors = 4;
  ml_model *m;
  CHECK_OK(ml_rec_model_new(&mc, &r, s.mu, s.item_mean, 1, &m));
  CHECK_OK(ml_rec_model_fit_items(m, &s, false, 1));
  ml_algo_config ac = reg_cfg(ML_ALGO_METASGD, 0.1f);
  ml_algo *a;
  CHECK_OK(ml_algo_new(&ac, m, &a));
  ml_rec_task_source src = {.split = &s, .k_choices = {1, 3, 5, 10, ML_REC_K_FULL}, .n_k = 5, .seed = 3, .fixed_query = true};
  for (int64_t it = 0; it < 60; it++) CHECK_OK(ml_algo_train_step(a, ml_rec_task, &src, it, NULL));
  double g, mae3 = test_mae(&s, algo_predict, a, 3, &g), mae10 = test_mae(&s, algo_predict, a, 10, &g);
  printf("  clusters: global mean MAE %.3f, metarec K=3 %.3f, K=10 %.3f\n", g, mae3, mae10);
  CHECK_MSG(mae3 < 0.7 * g, "K=3: %.3f vs global %.3f", mae3, g);
  CHECK_MSG(mae10 < 0.5 * g && mae10 <= mae3, "K=10: %.3f (K=3 %.3f) vs global %.3f", mae10, mae3, g);
  ml_algo_free(a);
  ml_rec_model_free(m);
  /* MeLU (genres tell the item's group) with second-order MAML on the MLP recovers it too, here
   * meta-trained on 10-rating supports (a whole MLP adapted on one rating overshoots) */
  mc = ml_rec_model_defaults(ML_REC_MELU);
  mc.emb_dim = 8, mc.hidden = 16;
  CHECK_OK(ml_rec_model_new(&mc, &r, s.mu, s.item_mean, 1, &m));
  ac = reg_cfg(ML_ALGO_MAML, 0.03f);
  ac.outer.lr = 1e-2f;
  CHECK_OK(ml_algo_new(&ac, m, &a));
  src.fixed_query = false, src.n_k = 1, src.k_choices[0] = 10;
  for (int64_t it = 0; it < 300; it++) CHECK_OK(ml_algo_train_step(a, ml_rec_task, &src, it, NULL));
  mae10 = test_mae(&s, algo_predict, a, 10, &g);
  printf("  clusters: MeLU (maml) K=10 %.3f\n", mae10);
  CHECK_MSG(mae10 < 0.75 * g, "MeLU K=10: %.3f vs global %.3f", mae10, g);
  ml_algo_free(a);
  ml_rec_model_free(m);
  ml_rec_split_free(&s);
  ml_ratings_free(&r);
}

/* meta-ridge: the implicit gradient of the query loss through the ridge solve against central
 * differences (both losses), and its meta-training on the clusters: deterministic, lowers the
 * outer objective on held tasks, and recovers the clusters from K ratings. */
typedef struct {
  const rec_ridge *prior;
  const rec_mf *tables;
} ridge_ctx;

static void ridge_predict(void *ctx, const ml_rec_split *s, const int64_t *sup, int64_t ns, const int64_t *qry,
                          int64_t nq, ml_arena *ar, float *pred) {
  (void)ar;
  const ridge_ctx *c = ctx;
  ml__ridge_predict(c->prior, c->tables, s, sup, ns, qry, nq, pred);
}

static double ridge_tasks_loss(const rec_ridge *rg, const rec_mf *m, const ml_rec_task_source *src, int64_t n) {
  ml_arena *ar = ml_arena_new(0, NULL);
  double sum = 0;
  for (int64_t t = 0; t < n; t++) {
    ml_arena_reset(ar);
    int64_t *qry, *sup, nq, ns;
    CHECK_OK(ml_rec_task_sets(src, 100000, t, ar, &qry, &nq, &sup, &ns));
    sum += ml__ridge_loss_grad(rg, m, src->split, sup, ns, qry, nq, NULL, NULL);
  }
  ml_arena_free(ar);
  return sum / (double)n;
}

ML_TEST(meta_ridge_gradient_and_training) {
  ml_ratings r;
  ml_rec_split s;
  clusters_split(&r, &s);
  rec_mf mf, half[2];
  CHECK_OK(ml__mf_train(&s, NULL, 4, 30, 0.01f, 0.05f, 1, &mf));
  ml_rec_task_source src = {.split = &s, .k_choices = {1, 3, 5, 10, ML_REC_K_FULL}, .n_k = 5, .seed = 3};
  ml_arena *ar = ml_arena_new(0, NULL);
  double worst = 0;
  for (int mse = 0; mse < 2; mse++)
    for (int64_t t = 0; t < 4; t++) {
      rec_ridge rg;
      ml__ridge_init(&rg, 4, 2.0);
      rg.mse = mse;
      rg.w0[0] = 0.3;
      for (int64_t a = 0; a < rg.d; a++) rg.s[a] += 0.2 * (double)a - 0.5, rg.w0[a] += 0.05 * (double)a;
      ml_arena_reset(ar);
      int64_t *qry, *sup, nq, ns;
      CHECK_OK(ml_rec_task_sets(&src, 0, t, ar, &qry, &nq, &sup, &ns));
      double gw[RIDGE_MAX_DIM] = {0}, gs[RIDGE_MAX_DIM] = {0};
      ml__ridge_loss_grad(&rg, &mf, &s, sup, ns, qry, nq, gw, gs);
      for (int64_t a = 0; a < 2 * rg.d; a++) {
        double *x = a < rg.d ? &rg.w0[a] : &rg.s[a - rg.d], x0 = *x, h = 1e-6;
        *x = x0 + h;
        double lp = ml__ridge_loss_grad(&rg, &mf, &s, sup, ns, qry, nq, NULL, NULL);
        *x = x0 - h;
        double lm = ml__ridge_loss_grad(&rg, &mf, &s, sup, ns, qry, nq, NULL, NULL);
        *x = x0;
        double fd = (lp - lm) / (2 * h), an = a < rg.d ? gw[a] : gs[a - rg.d];
        double err = fabs(fd - an) / (fabs(fd) + 1e-3);
        if (err > worst) worst = err;
        CHECK_MSG(err < 1e-4, "%s task %lld coordinate %lld: analytic %.8g, central difference %.8g", mse ? "MSE" : "MAE",
                  (long long)t, (long long)a, an, fd);
      }
    }
  printf("  meta-ridge gradient: worst relative error %.2g\n", worst);
  /* meta-training on cross-fitted tables, as the experiment does */
  CHECK_OK(ml__ridge_tables(&s, 4, 5, half));
  rec_ridge a, b;
  ml__ridge_init(&a, 4, 20.0); /* a start that trusts the support far too little */
  double before = ridge_tasks_loss(&a, &half[0], &src, 64), loss;
  b = a;
  CHECK_OK(ml__ridge_train(&a, half, 5, &src, 150, 32, 0.05, ar, &loss));
  CHECK_OK(ml__ridge_train(&b, half, 5, &src, 100, 32, 0.05, ar, &loss)); /* resumed: the same result */
  CHECK_OK(ml__ridge_train(&b, half, 5, &src, 50, 32, 0.05, ar, &loss));
  CHECK(!memcmp(&a, &b, sizeof a));
  double after = ridge_tasks_loss(&a, &half[0], &src, 64);
  printf("  meta-ridge on clusters: outer MAE %.3f -> %.3f, strengths %.2f / %.2f\n", before, after, exp(a.s[0]), exp(a.s[1]));
  CHECK_MSG(after < 0.8 * before, "meta-training: held tasks' MAE %.3f -> %.3f", before, after);
  CHECK(a.w0[1] == 0 && a.s[1] == a.s[4]); /* the factor coordinates stay tied */
  /* on the test users with the tables from all training ratings */
  ridge_ctx rc = {&a, &mf};
  double g, mae3 = test_mae(&s, ridge_predict, &rc, 3, &g), mae10 = test_mae(&s, ridge_predict, &rc, 10, &g);
  printf("  meta-ridge on clusters: global mean MAE %.3f, K=3 %.3f, K=10 %.3f\n", g, mae3, mae10);
  CHECK(mae3 < 0.7 * g && mae10 < 0.5 * g && mae10 <= mae3);
  ml_arena_free(ar);
  ml__mf_free(&mf), ml__mf_free(&half[0]), ml__mf_free(&half[1]);
  ml_rec_split_free(&s);
  ml_ratings_free(&r);
}

/* ---------------------------------------------------------------- protocol ---- */

ML_TEST(folds_partition_users_and_sets_are_nested) {
  const char *d = write_clusters(150, 45, 30);
  ml_ratings r;
  CHECK_OK(ml_ratings_load(d, "", &r));
  ml_rec_protocol p = ml_rec_protocol_defaults();
  uint8_t *seen = calloc((size_t)r.n_users, 1);
  for (int64_t f = 0; f < p.n_folds; f++) {
    p.fold = f;
    ml_rec_split s;
    CHECK_OK(ml_rec_split_new(&r, &p, &s));
    for (int64_t t = 0; t < s.n_test; t++) seen[s.test[t]]++;
    /* nested supports, the same query at every K */
    int64_t u = s.test[0], a[64], b[64], qa[64], qb[64], na, nb, nqa, nqb;
    CHECK(ml_rec_user_sets(&s, u, ML_REC_NEW_USERS, 3, a, &na, qa, &nqa));
    CHECK(ml_rec_user_sets(&s, u, ML_REC_NEW_USERS, ML_REC_K_FULL, b, &nb, qb, &nqb));
    CHECK(na == 3 && nb == 20 && nqa == 10 && nqb == 10);
    CHECK(!memcmp(a, b, 3 * sizeof(int64_t)) && !memcmp(qa, qb, 10 * sizeof(int64_t)));
    for (int64_t i = 0; i < nb; i++)
      for (int64_t j = 0; j < nqb; j++) CHECK(b[i] != qb[j]);
    /* time order: support strictly before the query */
    CHECK(ml_rec_user_sets(&s, u, ML_REC_TIME_ORDER, 5, a, &na, qa, &nqa));
    CHECK(na == 5 && r.time[a[4]] <= r.time[qa[0]] && qa[0] == a[4] + 1);
    ml_rec_split_free(&s);
  }
  for (int64_t u = 0; u < r.n_users; u++) CHECK(seen[u] == 1); /* every user tested exactly once */
  free(seen);
  /* new items: 20% held out; the query is held-out items only, the support never */
  p.fold = 0, p.new_items = true;
  ml_rec_split s;
  CHECK_OK(ml_rec_split_new(&r, &p, &s));
  int64_t held = 0;
  for (int64_t i = 0; i < r.n_items; i++) held += s.item_new[i];
  CHECK(held == 9);
  for (int64_t k = 0; k < r.n_ratings; k++) CHECK(!(s.train_mask[k] && s.item_new[r.item[k]]));
  int64_t sup[64], qry[64], ns, nq;
  CHECK(ml_rec_user_sets(&s, s.test[0], ML_REC_NEW_ITEMS, ML_REC_K_FULL, sup, &ns, qry, &nq));
  for (int64_t j = 0; j < nq; j++) CHECK(s.item_new[r.item[qry[j]]]);
  for (int64_t j = 0; j < ns; j++) CHECK(!s.item_new[r.item[sup[j]]]);
  ml_rec_split_free(&s);
  ml_ratings_free(&r);
}

/* Changing every rating of the test users (query included) must change nothing that training,
 * item statistics or baselines produce. */
ML_TEST(no_test_rating_reaches_training) {
  const char *d = write_clusters(150, 45, 30);
  ml_ratings r;
  CHECK_OK(ml_ratings_load(d, "", &r));
  ml_rec_protocol p = ml_rec_protocol_defaults();
  float *trained[2], *tables[2][2];
  rec_ridge ridge[2];
  float stats[2][64];
  double mu[2];
  float pred[2][16];
  for (int pass = 0; pass < 2; pass++) {
    ml_rec_split s;
    CHECK_OK(ml_rec_split_new(&r, &p, &s));
    if (pass == 1) { /* flip every test user's ratings */
      for (int64_t k = 0; k < r.n_ratings; k++)
        if (s.role[r.user[k]] == ML_REC_ROLE_TEST) r.rating[k] = 6.0f - r.rating[k];
      ml_rec_split_free(&s);
      CHECK_OK(ml_rec_split_new(&r, &p, &s));
    }
    for (int64_t k = 0; k < r.n_ratings; k++)
      if (s.role[r.user[k]] != ML_REC_ROLE_TRAIN) CHECK(!s.train_mask[k] && !s.meta_query[k]);
    mu[pass] = s.mu;
    memcpy(stats[pass], s.item_mean, (size_t)r.n_items * sizeof(float));
    ml_rec_model_config mc = ml_rec_model_defaults(ML_REC_METAREC);
    mc.factors = 4, mc.mlp = true;
    ml_model *m;
    CHECK_OK(ml_rec_model_new(&mc, &r, s.mu, s.item_mean, 1, &m));
    CHECK_OK(ml_rec_model_fit_items(m, &s, false, 1));
    ml_algo_config ac = reg_cfg(ML_ALGO_METASGD, 0.1f);
    ml_algo *a;
    CHECK_OK(ml_algo_new(&ac, m, &a));
    ml_rec_task_source src = {.split = &s, .k_choices = {1, 5}, .n_k = 2, .seed = 3};
    for (int64_t it = 0; it < 5; it++) CHECK_OK(ml_algo_train_step(a, ml_rec_task, &src, it, NULL));
    /* meta-ridge: its cross-fitted tables and its learned prior */
    rec_mf half[2];
    CHECK_OK(ml__ridge_tables(&s, 4, 5, half));
    ml_arena *rar = ml_arena_new(0, NULL);
    ml__ridge_init(&ridge[pass], 4, 3.0);
    CHECK_OK(ml__ridge_train(&ridge[pass], half, 5, &src, 20, 16, 0.05, rar, NULL));
    ml_arena_free(rar);
    for (int h = 0; h < 2; h++) {
      tables[pass][h] = malloc((size_t)(r.n_items * 5) * sizeof(float));
      memcpy(tables[pass][h], half[h].q, (size_t)(r.n_items * 4) * sizeof(float));
      memcpy(tables[pass][h] + r.n_items * 4, half[h].bi, (size_t)r.n_items * sizeof(float));
    }
    ml__mf_free(&half[0]), ml__mf_free(&half[1]);
    trained[pass] = malloc((size_t)m->params->numel * sizeof(float));
    memcpy(trained[pass], m->params->data, (size_t)m->params->numel * sizeof(float));
    /* a prediction for a validation user from a fixed support: the item tables (MF) included */
    int64_t sup[64], qry[64], ns, nq;
    CHECK(ml_rec_user_sets(&s, s.val[0], ML_REC_NEW_USERS, 5, sup, &ns, qry, &nq));
    ml_arena *ar = ml_arena_new(0, NULL);
    ml_episode ep;
    CHECK_OK(ml_rec_episode(&s, sup, ns, qry, nq, ar, &ep));
    CHECK_OK(ml_algo_predict(a, &ep, ar, pred[pass]));
    ml_arena_free(ar);
    ml_algo_free(a);
    if (pass == 1) {
      CHECK(!memcmp(trained[0], trained[1], (size_t)m->params->numel * sizeof(float)));
      CHECK(!memcmp(pred[0], pred[1], 10 * sizeof(float)));
      CHECK(!memcmp(&ridge[0], &ridge[1], sizeof ridge[0]));
      for (int h = 0; h < 2; h++) CHECK(!memcmp(tables[0][h], tables[1][h], (size_t)(r.n_items * 5) * sizeof(float)));
    }
    ml_rec_model_free(m);
    ml_rec_split_free(&s);
  }
  CHECK(mu[0] == mu[1] && !memcmp(stats[0], stats[1], 45 * sizeof(float)));
  free(trained[0]), free(trained[1]);
  for (int h = 0; h < 2; h++) free(tables[0][h]), free(tables[1][h]);
  ml_ratings_free(&r);
}

/* ---------------------------------------------------------------- metrics ---- */

ML_TEST(metrics_by_hand) {
  float truth[4] = {5, 3, 1, 4}, perfect[4] = {4.9f, 3.1f, 1.2f, 3.8f}, reversed[4] = {1, 3, 5, 2};
  ml_rec_metrics m = ml_rec_score(perfect, truth, 4);
  CHECK_NEAR(m.mae, (0.1 + 0.1 + 0.2 + 0.2) / 4, 1e-6);
  CHECK_NEAR(m.ndcg1, 1.0, 1e-12);
  CHECK_NEAR(m.ndcg3, 1.0, 1e-12);
  m = ml_rec_score(reversed, truth, 4);
  /* reversed ranking puts the 1-star item first: gain 1 against the ideal 31 */
  CHECK_NEAR(m.ndcg1, 1.0 / 31.0, 1e-12);
  double ideal = 31 + 15 / log2(3.0) + 7 / 2.0, got = 1 + 7 / log2(3.0) + 15 / 2.0;
  CHECK_NEAR(m.ndcg3, got / ideal, 1e-9);
  /* the random ranking's expected nDCG@3: every position holds the mean gain */
  double mean_gain = (31 + 7 + 1 + 15) / 4.0;
  CHECK_NEAR(ml_rec_ndcg_random(truth, 4, 3), mean_gain * (1 + 1 / log2(3.0) + 0.5) / ideal, 1e-9);
}

/* ---------------------------------------------------------------- the command ---- */

static int run_cli(const char *args, char *out, size_t n) { return ml_test_metalearn(args, out, n); }

ML_TEST(cli_train_recommend_and_bad_input) {
  char bin[4200];
  const char *b = getenv("ML_BINARY_DIR");
  snprintf(bin, sizeof bin, "%s/metalearn", b && *b ? b : ".");
  struct stat st;
  if (stat(bin, &st) != 0) {
    printf("  (skipped: no metalearn binary)\n");
    return;
  }
  static char out[1 << 16];
  const char *d = write_clusters(150, 45, 30);
  char args[16384], run[2048], good[2048], bad[2048];
  snprintf(run, sizeof run, "%s/run", ml_test_tmpdir());
  snprintf(args, sizeof args,
           "train --dataset movielens --data %s --folds 1 --methods item,damped,metarec,ridge --scenarios new-users "
           "--iterations 20 --eval_every 10 --meta_batch 4 --metarec_iterations 20 --metarec_meta_batch 8 --threads 2 "
           "--ridge_iterations 40 --cache_dir none --quiet --run %s --factors 4",
           d, run);
  CHECK_MSG(run_cli(args, out, sizeof out) == 0, "%s", out);
  CHECK(strstr(out, "metarec (ours)") && strstr(out, "meta-ridge (ours)") && strstr(out, "damped user bias") &&
        strstr(out, "random ranking"));
  snprintf(good, sizeof good, "%s/good.csv", ml_test_tmpdir());
  ml_test_write_file(good, "# two ratings\n1,5\n2,1\n", 22);
  snprintf(args, sizeof args, "recommend --run %s --ratings %s --top 3 --json --model metarec", run, good);
  CHECK_MSG(run_cli(args, out, sizeof out) == 0, "%s", out);
  CHECK(strstr(out, "\"recommendations\"") && strstr(out, "Item "));
  /* meta-ridge (the default): a fan of the first cluster's items (ids 1, 4, 7, ...: item id % 3 == 1)
   * who dislikes the second's gets the first cluster's other items on top */
  const char *fan = "1,5\n4,5\n7,4\n10,5\n2,1\n5,1\n";
  ml_test_write_file(good, fan, strlen(fan));
  snprintf(args, sizeof args, "recommend --run %s --ratings %s --top 5 --json", run, good);
  CHECK_MSG(run_cli(args, out, sizeof out) == 0, "%s", out);
  int n_top = 0;
  for (const char *q = out; (q = strstr(q, "\"item\": ")); q += 8) {
    long id = strtol(q + 8, NULL, 10);
    CHECK_MSG(id % 3 == 1 && id != 1 && id != 4 && id != 7 && id != 10, "recommended item %ld: %s", id, out);
    n_top++;
  }
  CHECK_MSG(n_top == 5, "%s", out);
  snprintf(args, sizeof args, "recommend --run %s --ratings %s --model bogus", run, good);
  CHECK(run_cli(args, out, sizeof out) == 2 && strstr(out, "bogus"));
  char rp[2100];
  snprintf(rp, sizeof rp, "%s/ridge.safetensors", run);
  ml_test_write_file(rp, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13);
  snprintf(args, sizeof args, "recommend --run %s --ratings %s", run, good);
  int rc2 = run_cli(args, out, sizeof out);
  CHECK_MSG(rc2 == 2 && strstr(out, "ridge.safetensors") && strchr(out, '\n') == out + strlen(out) - 1, "rc %d: %s", rc2, out);
  static const char *bads[][2] = {{"1,5\n2;4\n", ":2: expected"}, {"1,9\n", ":1: rating 9 outside"},
                                  {"4242,4\n", ":1: unknown item id 4242"}, {"", ":1: no ratings"}};
  for (int i = 0; i < 4; i++) {
    snprintf(bad, sizeof bad, "%s/bad%d.csv", ml_test_tmpdir(), i);
    ml_test_write_file(bad, bads[i][0], strlen(bads[i][0]));
    snprintf(args, sizeof args, "recommend --run %s --ratings %s", run, bad);
    int rc = run_cli(args, out, sizeof out);
    CHECK_MSG(rc == 2 && strstr(out, bads[i][1]) && strchr(out, '\n') == out + strlen(out) - 1, "rc %d: %s", rc, out);
  }
  CHECK(run_cli("train --dataset movielens --bogus 1", out, sizeof out) == 2 && strstr(out, "--bogus"));
  CHECK(run_cli("eval --dataset movielens --folds 9", out, sizeof out) == 2);
}
