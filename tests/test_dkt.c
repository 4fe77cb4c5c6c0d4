/* apps/students/dkt: DKT learns a synthetic skill-mastery process that a per-exercise difficulty
 * cannot capture; meta-DKT's closed-form inner step equals ml_grad(create_graph) on the support
 * loss, and meta-DKT learns too; AUC, cold-start windows and the influence matrix. */
#include <stdlib.h>
#include <string.h>

#include "apps/students/dkt_internal.h"
#include "harness.h"
#include "metalearn/base.h"
#include "metalearn/eval.h"

/* Students practise 4 skills in random order. A skill is mastered after a number of attempts
 * drawn per student and skill (1 to 6); before that a correct answer has probability 0.2 (a
 * guess), after it 0.9. Every skill is equally hard on average, so only the student's own
 * history tells mastery apart. */
static void mastery_students(int64_t n, int64_t len, uint64_t seed, ml_answers *a) {
  enum { K = 4 };
  memset(a, 0, sizeof *a);
  a->n_students = n;
  a->n_answers = n * len;
  a->offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
  a->item = malloc((size_t)(n * len) * sizeof(int32_t));
  a->skill = malloc((size_t)(n * len) * sizeof(int32_t));
  a->correct = malloc((size_t)(n * len));
  ml_rng r;
  ml_rng_init(&r, seed, 3);
  for (int64_t s = 0; s < n; s++) {
    a->offsets[s] = s * len;
    int need[K], seen[K] = {0};
    for (int k = 0; k < K; k++) need[k] = 1 + (int)ml_rng_below(&r, 6);
    for (int64_t t = 0; t < len; t++) {
      int k = (int)ml_rng_below(&r, K);
      int64_t i = s * len + t;
      a->item[i] = a->skill[i] = k;
      float p = seen[k] >= need[k] ? 0.9f : 0.2f;
      a->correct[i] = ml_rng_uniform(&r) < p;
      seen[k]++;
    }
  }
  a->offsets[n] = n * len;
}

/* AUC of predicting each answer by its exercise's training success rate. */
static double difficulty_auc(const ml_answers *train, const ml_kt_predictions *p, const ml_answers *test) {
  double ok[4] = {0}, cnt[4] = {0};
  for (int64_t i = 0; i < train->n_answers; i++) ok[train->item[i]] += train->correct[i], cnt[train->item[i]]++;
  float *q = malloc((size_t)p->n * sizeof(float));
  for (int64_t i = 0; i < p->n; i++) {
    int32_t e = test->item[test->offsets[p->student[i]] + p->pos[i] - 1];
    q[i] = (float)(ok[e] / cnt[e]);
  }
  double auc = ml_auc(q, p->y, p->n);
  free(q);
  return auc;
}

static ml_dkt_config small_config(void) {
  ml_dkt_config c = ml_dkt_defaults();
  c.n_items = 4, c.emb = 8, c.hidden = 32, c.window = 200, c.batch = 16, c.lr = 1e-2, c.max_epochs = 20;
  c.patience = 4, c.seed = 5;
  return c;
}

ML_TEST(dkt_learns_skill_mastery) {
  ml_answers train, valid, test;
  mastery_students(800, 30, 1, &train);
  mastery_students(60, 30, 2, &valid);
  mastery_students(100, 30, 3, &test);
  ml_dkt_config c = small_config();
  for (int meta = 0; meta < 3; meta++) {
    c.meta = meta >= 1;
    c.adapt_state = meta == 2, c.adapt_window = meta == 2 ? 8 : 0; /* 2: the initial state adapts too */
    ml_dkt *m;
    CHECK_OK(ml_dkt_new(&c, &m));
    ml_kt_predictions p0, p;
    CHECK_OK(ml_dkt_predict(m, &test, &p0));
    ml_kt_scores s0, s;
    ml_kt_score(&p0, &s0);
    ml_dkt_stats st;
    CHECK_OK(ml_dkt_train(m, &train, &valid, &st));
    CHECK_OK(ml_dkt_predict(m, &test, &p));
    ml_kt_score(&p, &s);
    CHECK(p.n == 100 * 29); /* every answer but the first */
    CHECK(s.n_3_10 == 100 * 8 && s.n_11_15 == 100 * 5);
    double diff_auc = difficulty_auc(&train, &p, &test);
    if (getenv("ML_TEST_VERBOSE")) fprintf(stderr, "meta %d: AUC %.4f after %lld epochs (best %lld)\n", meta, s.auc, (long long)st.epochs, (long long)st.best_epoch);
    CHECK_MSG(s.auc > 0.75 && s.auc > diff_auc + 0.15, "meta %d: AUC %.4f (untrained %.4f), difficulty alone %.4f",
              meta, s.auc, s0.auc, diff_auc);
    CHECK(s.logloss < s0.logloss);
    CHECK(st.epochs >= 1 && st.best_epoch >= 1 && st.best_valid_auc > 0.7);
    ml_kt_predictions_free(&p0), ml_kt_predictions_free(&p);
    ml_dkt_free(m);
  }
  ml_answers_free(&train), ml_answers_free(&valid), ml_answers_free(&test);
}

ML_TEST(meta_inner_step_matches_ml_grad) {
  ml_answers a;
  mastery_students(3, 25, 7, &a);
  ml_dkt_config c = small_config();
  c.meta = true;
  for (int w = 0; w < 2; w++) {
    c.adapt_window = w ? 6 : 0; /* support bounded to answers 2..6, or every answer seen */
    ml_dkt *m;
    CHECK_OK(ml_dkt_new(&c, &m));
    /* nonzero rates per unit, so a wrong unit or sign shows */
    ml_params *p = ml_dkt_params(m);
    ml_tensor *rd = &p->items[ml_params_find(p, "meta.rate_head")].value;
    ml_test_fill(rd->data, rd->numel, 4, 0.2f, 1.5f);
    double diff;
    CHECK_OK(ml__dkt_check_inner(m, &a, 1, &diff));
    CHECK_MSG(diff < 1e-5, "adapt_window %lld: closed form and ml_grad differ by %g", (long long)c.adapt_window, diff);
    ml_dkt_free(m);
  }
  ml_answers_free(&a);
}

/* Adapting the initial state: the model's batched, packed computation (per-window initial states,
 * ml_rnn_run, the support loss accumulated along the run) gives the logits of the same model
 * written out cell by cell, inside the support window and past it; and it learns. */
ML_TEST(meta_state_adaptation_matches_step_by_step) {
  ml_answers a;
  mastery_students(3, 25, 7, &a);
  ml_dkt_config c = small_config();
  c.meta = c.adapt_state = true, c.adapt_window = 6;
  ml_dkt *m;
  CHECK_OK(ml_dkt_new(&c, &m));
  ml_params *p = ml_dkt_params(m);
  ml_tensor *rh = &p->items[ml_params_find(p, "meta.rate_h0")].value, *rc = &p->items[ml_params_find(p, "meta.rate_c0")].value;
  ml_test_fill(rh->data, rh->numel, 5, 0.2f, 1.5f); /* rates that differ per unit and support size */
  ml_test_fill(rc->data, rc->numel, 6, 0.2f, 1.5f);
  double diff;
  CHECK_OK(ml__dkt_check_state(m, &a, 1, &diff));
  CHECK_MSG(diff < 1e-5, "batched and step-by-step logits differ by %g", diff);
  ml_dkt_free(m);
  c.adapt_window = 0; /* unbounded support: refused (every prediction would read the whole window again) */
  CHECK(ml_dkt_new(&c, &m) == ML_ERR_ARG);
  ml_answers_free(&a);
}

ML_TEST(auc_scores_and_influence) {
  const float p[6] = {0.9f, 0.8f, 0.8f, 0.3f, 0.2f, 0.1f};
  const uint8_t y[6] = {1, 1, 0, 1, 0, 0};
  /* pairs (pos, neg): 9; ordered right: 7, tie (0.8, 0.8): 1/2 -> 7.5 / 9 */
  CHECK_NEAR(ml_auc(p, y, 6), 7.5 / 9.0, 1e-12);
  const uint8_t one[3] = {1, 1, 1};
  CHECK(isnan(ml_auc(p, one, 3)));
  ml_dkt_config c = small_config();
  ml_dkt *m;
  CHECK_OK(ml_dkt_new(&c, &m));
  float J[16];
  CHECK_OK(ml_dkt_influence(m, J));
  for (int j = 0; j < 4; j++) {
    double col = 0;
    for (int i = 0; i < 4; i++) {
      CHECK(J[i * 4 + j] > 0);
      col += J[i * 4 + j];
    }
    CHECK_NEAR(col, 1.0, 1e-5);
  }
  ml_dkt_free(m);
  /* windows of 20 answers: answers 1 and 21 of each student start a window, unpredicted */
  ml_answers a;
  mastery_students(5, 30, 9, &a);
  c.window = 20;
  CHECK_OK(ml_dkt_new(&c, &m));
  ml_kt_predictions pr;
  CHECK_OK(ml_dkt_predict(m, &a, &pr));
  CHECK(pr.n == 5 * 28);
  for (int64_t i = 0; i < pr.n; i++) CHECK(pr.pos[i] != 1 && pr.pos[i] != 21 && pr.pos[i] <= 30);
  /* protocol-B rows for the students table agree with the scores of the same predictions */
  ml_kt_scores sc;
  ml_kt_score(&pr, &sc);
  ml_students_row rows[3];
  CHECK_OK(ml_dkt_protocol_b(m, &a, "DKT", 1.5, 20, 3, rows));
  CHECK(!strcmp(rows[0].model, "DKT") && !strcmp(rows[1].column, "B 3-10") && !strcmp(rows[2].column, "B 11-15"));
  CHECK_NEAR(rows[0].r.auc.value, sc.auc, 1e-9);
  CHECK_NEAR(rows[1].r.auc.value, sc.auc_3_10, 1e-9);
  CHECK_NEAR(rows[2].r.auc.value, sc.auc_11_15, 1e-9);
  CHECK(rows[0].r.n == sc.n && rows[1].r.n == sc.n_3_10 && rows[2].r.n == 5 * 5);
  CHECK(rows[0].r.auc.lo <= rows[0].r.auc.value && rows[0].r.auc.value <= rows[0].r.auc.hi);
  CHECK(rows[0].n_students == 5 && rows[0].fit_seconds == 1.5);
  for (int k = 0; k < 3; k++) ml_students_row_free(&rows[k]);
  ml_kt_predictions_free(&pr);
  ml_answers_free(&a);
  ml_dkt_free(m);
  c.n_items = 0;
  CHECK(ml_dkt_new(&c, &m) == ML_ERR_ARG);
}
