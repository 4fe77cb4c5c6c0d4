/* students: the binary metrics against brute force, protocol A's split and drop count, and the
 * student models on synthetic students drawn from a known 2PL model (the right answers are
 * computable): fitted difficulties track the true ones, a meta-learned model adapted on K answers
 * predicts the true success probabilities better than its population prediction, the pool API,
 * and `metalearn train/eval --dataset kt:DIR` end to end, with bad input giving exit 2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "metalearn/students.h"

/* ---------------------------------------------------------------- metrics ---- */

static double brute_auc(const float *p, const uint8_t *y, int64_t n) {
  double num = 0, pairs = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      if (y[i] && !y[j]) {
        pairs += 1;
        num += p[i] > p[j] ? 1 : p[i] == p[j] ? 0.5 : 0;
      }
  return pairs ? num / pairs : NAN;
}

ML_TEST(auc_matches_pairwise_count_with_ties) {
  ml_rng r;
  ml_rng_init(&r, 3, 0);
  enum { N = 300 };
  float p[N];
  uint8_t y[N];
  for (int t = 0; t < 5; t++) {
    for (int i = 0; i < N; i++) {
      p[i] = (float)ml_rng_below(&r, t == 0 ? 3 : 40) / 40.0f; /* many ties */
      y[i] = ml_rng_uniform(&r) < 0.3 + p[i] * 0.5;
    }
    CHECK_NEAR(ml_auc(p, y, N), brute_auc(p, y, N), 1e-12);
  }
  memset(y, 1, sizeof y);
  CHECK(isnan(ml_auc(p, y, N)));
  float q[4] = {0.9f, 0.2f, 0.6f, 0.4f};
  uint8_t z[4] = {1, 0, 0, 1};
  CHECK_NEAR(ml_log_loss(q, z, 4), -(log(0.9) + log(0.8) + log(0.4) + log(0.4)) / 4, 1e-6);
  CHECK_NEAR(ml_binary_accuracy(q, z, 4), 0.5, 0);
}

ML_TEST(bootstrap_report_is_seeded_and_brackets_the_value) {
  ml_rng r;
  ml_rng_init(&r, 5, 0);
  enum { G = 60, PER = 20 };
  float p[G * PER];
  uint8_t y[G * PER];
  int64_t off[G + 1];
  for (int g = 0; g <= G; g++) off[g] = g * PER;
  for (int i = 0; i < G * PER; i++) {
    p[i] = ml_rng_uniform(&r);
    y[i] = ml_rng_uniform(&r) < p[i];
  }
  ml_binary_report a, b, c;
  CHECK_OK(ml_binary_report_compute(p, y, off, G, 300, 11, &a));
  CHECK_OK(ml_binary_report_compute(p, y, off, G, 300, 11, &b));
  CHECK_OK(ml_binary_report_compute(p, y, off, G, 300, 12, &c));
  CHECK_NEAR(a.auc.value, ml_auc(p, y, G * PER), 1e-12);
  CHECK_NEAR(a.acc.value, ml_binary_accuracy(p, y, G * PER), 1e-12);
  CHECK_NEAR(a.log_loss.value, ml_log_loss(p, y, G * PER), 1e-9);
  CHECK(a.auc.lo == b.auc.lo && a.auc.hi == b.auc.hi);
  CHECK(a.auc.lo != c.auc.lo || a.auc.hi != c.auc.hi);
  CHECK(a.auc.lo < a.auc.value && a.auc.value < a.auc.hi);
  CHECK(a.log_loss.lo < a.log_loss.value && a.log_loss.value < a.log_loss.hi);
  CHECK(a.student_auc.lo <= a.student_auc.value && a.student_auc.value <= a.student_auc.hi);
  /* the interval is about +-2 standard errors of a mean over 60 students: not degenerate */
  CHECK(a.auc.hi - a.auc.lo > 0.01 && a.auc.hi - a.auc.lo < 0.3);
  double mean_student = 0;
  int64_t n_ok = 0;
  for (int g = 0; g < G; g++) {
    double v = ml_auc(p + off[g], y + off[g], PER);
    if (!isnan(v)) mean_student += v, n_ok++;
  }
  CHECK(a.n_student_auc == n_ok);
  CHECK_NEAR(a.student_auc.value, mean_student / (double)n_ok, 1e-12);
}

/* ------------------------------------------------------- synthetic 2PL data ---- */

typedef struct {
  int64_t J, S, L;
  float *b, *a, *theta; /* true item and student parameters */
  ml_answers ans;
} synth;

/* S students, each answering L exercises drawn at random from J, right with probability
 * sigmoid(a_j (theta_s - b_j)). Skill of exercise j = j % 5. */
static void synth_make(synth *d, int64_t J, int64_t S, int64_t L, uint64_t seed) {
  d->J = J, d->S = S, d->L = L;
  d->b = malloc((size_t)J * sizeof(float));
  d->a = malloc((size_t)J * sizeof(float));
  d->theta = malloc((size_t)S * sizeof(float));
  ml_rng r;
  ml_rng_init(&r, seed, 1);
  for (int64_t j = 0; j < J; j++) d->b[j] = ml_rng_normal(&r), d->a[j] = expf(0.3f * ml_rng_normal(&r));
  for (int64_t s = 0; s < S; s++) d->theta[s] = ml_rng_normal(&r);
  ml_answers *a = &d->ans;
  a->n_students = S, a->n_answers = S * L;
  a->offsets = malloc((size_t)(S + 1) * sizeof(int64_t));
  a->item = malloc((size_t)(S * L) * sizeof(int32_t));
  a->skill = malloc((size_t)(S * L) * sizeof(int32_t));
  a->correct = malloc((size_t)(S * L));
  a->student_ids = NULL;
  for (int64_t s = 0; s <= S; s++) a->offsets[s] = s * L;
  for (int64_t i = 0; i < S * L; i++) {
    int64_t s = i / L, j = ml_rng_below(&r, (uint32_t)J);
    a->item[i] = (int32_t)j;
    a->skill[i] = (int32_t)(j % 5);
    a->correct[i] = ml_rng_uniform(&r) < 1.0f / (1.0f + expf(-d->a[j] * (d->theta[s] - d->b[j])));
  }
}

static void synth_free(synth *d) {
  free(d->b), free(d->a), free(d->theta);
  ml_answers_free(&d->ans);
}

static double corr(const double *x, const double *y, int64_t n) {
  double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
  for (int64_t i = 0; i < n; i++) mx += x[i], my += y[i];
  mx /= (double)n, my /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / sqrt(sxx * syy);
}

/* The identity Q-matrix of J exercises onto 5 skills (j % 5). */
static ml_qmatrix synth_q(int64_t J) {
  ml_qmatrix q = {J, 5, malloc((size_t)(J + 1) * sizeof(int64_t)), malloc((size_t)J * sizeof(int32_t))};
  for (int64_t j = 0; j <= J; j++) q.offsets[j] = j;
  for (int64_t j = 0; j < J; j++) q.skills[j] = (int32_t)(j % 5);
  return q;
}

ML_TEST(irt_fits_recover_true_difficulties) {
  synth d;
  synth_make(&d, 40, 500, 30, 21);
  ml_qmatrix q = synth_q(d.J);
  ml_student_kind kinds[3] = {ML_STUDENT_IRT1, ML_STUDENT_IRT2, ML_STUDENT_ELO};
  for (int k = 0; k < 3; k++) {
    ml_student_config c = ml_student_defaults(kinds[k]);
    ml_student_model *m;
    CHECK_OK(ml_student_model_fit(&c, d.J, 5, &q, &d.ans, NULL, &m));
    if (ml_test_failed_now()) break;
    /* with no answers the ability is the prior mean 0, so p_j = sigmoid(-a_j b_j): logit(p) recovers -a b */
    float p[40], mastery[5];
    ml_student_log none = {NULL, NULL, NULL, 0};
    CHECK_OK(ml_student_model_predict_pool(m, &none, NULL, p, mastery));
    double fit[40], truth[40];
    for (int64_t j = 0; j < d.J; j++) fit[j] = -log(p[j] / (1 - p[j])), truth[j] = d.b[j];
    double r = corr(fit, truth, d.J);
    CHECK_MSG(r > 0.9, "%s: difficulty correlation %.3f", ml_student_kind_name(kinds[k]), r);
    /* mastery = the mean predicted success over the skill's exercises */
    for (int s = 0; s < 5; s++) {
      double sum = 0;
      for (int64_t j = s; j < d.J; j += 5) sum += p[j];
      CHECK_NEAR(mastery[s], sum / (double)(d.J / 5), 1e-5);
    }
    ml_student_model_free(m);
  }
  ml_qmatrix_free(&q);
  synth_free(&d);
}

ML_TEST(irt1_ability_by_map_tracks_true_ability) {
  synth d;
  synth_make(&d, 40, 300, 40, 22);
  ml_qmatrix q = synth_q(d.J);
  ml_student_config c = ml_student_defaults(ML_STUDENT_IRT1);
  ml_student_model *m;
  CHECK_OK(ml_student_model_fit(&c, d.J, 5, &q, &d.ans, NULL, &m));
  /* a fresh student answering every exercise twice: the MAP ability orders students as theta does */
  double est[20], truth[20];
  synth t;
  synth_make(&t, 40, 20, 80, 23);
  for (int s = 0; s < 20; s++) {
    ml_student_log sup = ml_student_log_of(&t.ans, s);
    int32_t item = 0, skill = 0;
    ml_student_log one = {&item, &skill, NULL, 1};
    float p;
    CHECK_OK(ml_student_model_predict(m, &sup, &one, NULL, &p));
    float p0;
    ml_student_log none = {NULL, NULL, NULL, 0};
    CHECK_OK(ml_student_model_predict(m, &none, &one, NULL, &p0));
    est[s] = log(p / (1 - p)) - log(p0 / (1 - p0));
    truth[s] = t.theta[s];
  }
  double r = corr(est, truth, 20);
  CHECK_MSG(r > 0.8, "ability correlation %.3f", r);
  ml_student_model_free(m);
  synth_free(&t);
  ml_qmatrix_free(&q);
  synth_free(&d);
}

ML_TEST(protocol_a_drops_short_students_and_scores_the_rest) {
  synth d;
  synth_make(&d, 20, 200, 25, 24);
  /* make students 0..9 short (3 answers each); student 10 takes what they lose */
  ml_answers *a = &d.ans;
  int64_t idx[200];
  for (int i = 0; i < 200; i++) idx[i] = i;
  ml_answers sub;
  CHECK_OK(ml_answers_subset(a, idx, 200, &sub));
  for (int s = 0; s < 10; s++) sub.offsets[s + 1] = sub.offsets[s] + 3;
  ml_student_config c = ml_student_defaults(ML_STUDENT_DIFFICULTY);
  ml_student_model *m;
  CHECK_OK(ml_student_model_fit(&c, d.J, 5, NULL, a, NULL, &m));
  ml_students_row row;
  CHECK_OK(ml_students_protocol_a(m, &sub, 3, 50, 1, 2, &row));
  CHECK(row.n_dropped == 10 && row.n_students == 190); /* students 0..9 have exactly 3 answers */
  CHECK(row.r.n == sub.n_answers - 10 * 3 - 190 * 3);
  CHECK(strcmp(row.column, "K=3") == 0);
  CHECK(row.r.auc.value > 0.5);
  /* difficulty alone ignores the support: K does not change its predictions on shared answers */
  ml_students_row r2;
  CHECK_OK(ml_students_protocol_a(m, &sub, 1, 0, 1, 1, &r2));
  CHECK(r2.n_dropped == 0);
  /* paired comparison: the 1PL against difficulty alone on the same answers */
  ml_student_config c1 = ml_student_defaults(ML_STUDENT_IRT1);
  ml_student_model *m1;
  CHECK_OK(ml_student_model_fit(&c1, d.J, 5, NULL, a, NULL, &m1));
  ml_students_row rows[3];
  CHECK_OK(ml_students_protocol_a(m, &sub, 3, 100, 1, 2, &rows[0]));
  CHECK_OK(ml_students_protocol_a(m1, &sub, 3, 100, 1, 2, &rows[1]));
  CHECK_OK(ml_students_protocol_a(m, &sub, 3, 100, 1, 2, &rows[2]));
  snprintf(rows[0].model, sizeof rows[0].model, "difficulty");
  snprintf(rows[1].model, sizeof rows[1].model, "irt1");
  snprintf(rows[2].model, sizeof rows[2].model, "difficulty again");
  bool base[3] = {true, false, false};
  CHECK_OK(ml_students_compare(rows, 3, base, 100, 1));
  CHECK(strcmp(rows[1].delta_vs, "difficulty") == 0 && rows[0].delta_vs[0] == 0);
  CHECK_NEAR(rows[1].delta.value, rows[1].r.auc.value - rows[0].r.auc.value, 1e-12);
  CHECK(rows[1].delta.lo <= rows[1].delta.value && rows[1].delta.value <= rows[1].delta.hi);
  /* students drawn from abilities: the 1PL sees them, difficulty alone cannot */
  CHECK(rows[1].delta.lo > 0);
  CHECK(rows[2].delta.value == 0 && rows[2].delta.lo == 0 && rows[2].delta.hi == 0);
  /* a row built from another protocol's predictions pairs with them the same way */
  ml_students_row ext;
  CHECK_OK(ml_students_row_from_predictions("external", "K=3", rows[1].pred, rows[1].label, rows[1].offsets,
                                            rows[1].n_groups, 100, 1, &ext));
  CHECK(ext.r.auc.value == rows[1].r.auc.value && ext.r.auc.lo == rows[1].r.auc.lo);
  ml_students_row_free(&ext);
  for (int i = 0; i < 3; i++) ml_students_row_free(&rows[i]);
  ml_student_model_free(m1);
  ml_students_row_free(&row);
  ml_students_row_free(&r2);
  CHECK(ml_students_protocol_a(m, &sub, 1000, 0, 1, 1, &r2) == ML_ERR_ARG);
  ml_student_model_free(m);
  ml_answers_free(&sub);
  synth_free(&d);
}

/* Meta-learned adaptation from K = 10 answers: its predictions of the query are closer to the true
 * probabilities than the population prediction (no support) of the same model, and than the
 * fitted 1PL's population prediction. Same result at 1 and 2 threads (the algo's tree sum). */
ML_TEST(meta_model_adapts_to_synthetic_students) {
  synth d, t;
  synth_make(&d, 30, 400, 40, 25);
  synth_make(&t, 30, 100, 40, 26);
  for (int64_t j = 0; j < 30; j++) t.b[j] = d.b[j], t.a[j] = d.a[j];
  /* redraw the test answers with the training items' parameters */
  ml_rng r;
  ml_rng_init(&r, 27, 0);
  for (int64_t i = 0; i < t.ans.n_answers; i++) {
    int64_t s = i / t.L, j = t.ans.item[i];
    t.ans.correct[i] = ml_rng_uniform(&r) < 1.0f / (1.0f + expf(-d.a[j] * (t.theta[s] - d.b[j])));
  }
  ml_qmatrix q = synth_q(d.J);
  float params_run[2][4096];
  int64_t numel = 0;
  for (int run = 0; run < 2; run++) {
    ml_student_config c = ml_student_defaults(ML_STUDENT_META);
    c.k_train = 10, c.iterations = 300, c.meta_batch = 16, c.eval_every = 0, c.dim = 2, c.threads = run + 1;
    ml_student_model *m;
    CHECK_OK(ml_student_model_fit(&c, d.J, 5, &q, &d.ans, NULL, &m));
    if (ml_test_failed_now()) break;
    ml_params *p = ml_student_model_params(m);
    numel = p->numel < 4096 ? p->numel : 4096;
    memcpy(params_run[run], p->data, (size_t)numel * sizeof(float));
    if (run == 1) {
      CHECK(memcmp(params_run[0], params_run[1], (size_t)numel * sizeof(float)) == 0);
      ml_student_model_free(m);
      break;
    }
    double se_adapt = 0, se_pop = 0, n = 0;
    float pa[30], pp[30];
    ml_arena *ar = ml_arena_new(0, NULL);
    for (int64_t s = 0; s < t.S; s++) {
      ml_student_log all = ml_student_log_of(&t.ans, s);
      ml_student_log sup = {all.item, all.skill, all.correct, 10};
      ml_student_log qry = {all.item + 10, all.skill + 10, NULL, 30};
      ml_student_log none = {NULL, NULL, NULL, 0};
      CHECK_OK(ml_student_model_predict(m, &sup, &qry, ar, pa));
      CHECK_OK(ml_student_model_predict(m, &none, &qry, ar, pp));
      for (int i = 0; i < 30; i++) {
        int32_t j = qry.item[i];
        double truth = 1.0 / (1.0 + exp(-d.a[j] * (t.theta[s] - d.b[j])));
        se_adapt += (pa[i] - truth) * (pa[i] - truth);
        se_pop += (pp[i] - truth) * (pp[i] - truth);
        n++;
      }
    }
    ml_arena_free(ar);
    CHECK_MSG(se_adapt < 0.7 * se_pop, "adapted MSE %.4f vs population %.4f", se_adapt / n, se_pop / n);
    ml_student_model_free(m);
  }
  ml_qmatrix_free(&q);
  synth_free(&d);
  synth_free(&t);
}

ML_TEST(save_and_load_give_the_same_predictions) {
  synth d;
  synth_make(&d, 20, 120, 20, 29);
  ml_qmatrix q = synth_q(d.J);
  ml_student_kind kinds[3] = {ML_STUDENT_IRT2, ML_STUDENT_ELO, ML_STUDENT_META};
  char path[4096];
  for (int k = 0; k < 3; k++) {
    ml_student_config c = ml_student_defaults(kinds[k]);
    c.k_train = 5, c.iterations = 30, c.eval_every = 0, c.threads = 1;
    ml_student_model *m, *l = NULL;
    CHECK_OK(ml_student_model_fit(&c, d.J, 5, &q, &d.ans, NULL, &m));
    if (ml_test_failed_now()) break;
    snprintf(path, sizeof path, "%s/model_%d.safetensors", ml_test_tmpdir(), k);
    CHECK_OK(ml_student_model_save(m, path));
    CHECK_OK(ml_student_model_load(path, 1, &l));
    if (!l) {
      ml_student_model_free(m);
      break;
    }
    ml_student_log all = ml_student_log_of(&d.ans, 3);
    ml_student_log sup = {all.item, all.skill, all.correct, 5};
    float p1[20], p2[20], b1[20], b2[20];
    CHECK_OK(ml_student_model_predict_pool(m, &sup, NULL, p1, NULL));
    CHECK_OK(ml_student_model_predict_pool(l, &sup, NULL, p2, NULL));
    CHECK(memcmp(p1, p2, sizeof p1) == 0);
    ml_student_model_difficulties(m, b1);
    ml_student_model_difficulties(l, b2);
    CHECK(memcmp(b1, b2, sizeof b1) == 0);
    ml_student_model_free(m);
    ml_student_model_free(l);
  }
  /* not a student model, and a truncated one: errors naming the file */
  ml_student_model *l;
  snprintf(path, sizeof path, "%s/junk.safetensors", ml_test_tmpdir());
  ml_test_write_file(path, "not a model", 11);
  CHECK(ml_student_model_load(path, 1, &l) != ML_OK && strstr(ml_last_error(), "junk.safetensors"));
  size_t n;
  char src[4096];
  snprintf(src, sizeof src, "%s/model_2.safetensors", ml_test_tmpdir());
  char *buf = ml_test_read_file(src, &n);
  if (buf) {
    ml_test_write_file(path, buf, n / 2);
    CHECK(ml_student_model_load(path, 1, &l) != ML_OK && strstr(ml_last_error(), "junk.safetensors"));
    free(buf);
  }
  ml_qmatrix_free(&q);
  synth_free(&d);
}

/* ------------------------------------------------------------------- CLI ---- */

static char out[1 << 16];

static int run_cli(const char *args) { return ml_test_metalearn(args, out, sizeof out); }

/* Writes synthetic students as a knowledge-tracing folder DIR/<name>/<name>_{train,test}.csv. */
static void write_kt_part(const char *dir, const char *name, const char *part, const ml_answers *a, int64_t first,
                          int64_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s_%s.csv", dir, name, name, part);
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  for (int64_t s = first; s < first + n; s++) {
    int64_t o = a->offsets[s], L = ml_answers_len(a, s);
    len += (size_t)snprintf(buf + len, cap - len, "%lld\n", (long long)L);
    for (int64_t i = 0; i < L; i++) len += (size_t)snprintf(buf + len, cap - len, "%d%s", a->item[o + i] + 1, i + 1 < L ? "," : "\n");
    for (int64_t i = 0; i < L; i++) len += (size_t)snprintf(buf + len, cap - len, "%d%s", a->correct[o + i], i + 1 < L ? "," : "\n");
  }
  ml_test_write_file(path, buf, len);
  free(buf);
}

static void write_kt(const char *dir, const char *name, const ml_answers *a, int64_t first, int64_t n) {
  write_kt_part(dir, name, first == 0 ? "train" : "test", a, first, n);
}

ML_TEST(cli_train_and_eval_on_a_kt_folder) {
  synth d;
  synth_make(&d, 25, 300, 20, 28);
  const char *tmp = ml_test_tmpdir();
  write_kt(tmp, "synth", &d.ans, 0, 200);
  write_kt(tmp, "synth", &d.ans, 200, 100);
  char args[8192];
  snprintf(args, sizeof args,
           "train --dataset kt:%s/synth --fold 0 --models difficulty,irt1,meta --algos metasgd --ks 1,5 "
           "--iterations 100 --boot 20 --threads 2 --quiet --run %s/run_students",
           tmp, tmp);
  int rc = run_cli(args);
  CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
  CHECK(strstr(out, "| irt1") && strstr(out, "K=5") && strstr(out, "meta:metasgd"));
  char path[4096];
  snprintf(path, sizeof path, "%s/run_students/meta_metasgd_k5.safetensors", tmp);
  struct stat sb;
  CHECK(stat(path, &sb) == 0);
  /* the saved model loads back and predicts like the one eval uses; the baselines are saved too */
  ml_student_model *loaded = NULL;
  CHECK_OK(ml_student_model_load(path, 1, &loaded));
  if (loaded) {
    CHECK(ml_student_model_n_items(loaded) == 25 && ml_student_model_config(loaded)->k_train == 5);
    ml_student_model_free(loaded);
  }
  snprintf(path, sizeof path, "%s/run_students/irt1.safetensors", tmp);
  CHECK(stat(path, &sb) == 0);
  /* eval reloads the run: the meta rows are the same numbers */
  /* the detail line of the meta model at K=5 (the label lists its pieces, then the column) */
  const char *meta_train = strstr(out, " K=5: auc ");
  while (meta_train && strstr(meta_train + 1, " K=5: auc ")) meta_train = strstr(meta_train + 1, " K=5: auc ");
  char want[64] = "";
  if (meta_train) snprintf(want, sizeof want, "%.50s", meta_train);
  snprintf(args, sizeof args, "eval --run %s/run_students --quiet", tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
  CHECK_MSG(want[0] && strstr(out, want), "eval differs from train: %s", out);
  /* protocol B beside protocol A: DKT and meta-DKT trained on train1 with early stopping on
   * valid1 add the columns "B all", "B 3-10" and "B 11-15" */
  write_kt_part(tmp, "synth", "train1", &d.ans, 0, 150);
  write_kt_part(tmp, "synth", "valid1", &d.ans, 150, 50);
  snprintf(args, sizeof args,
           "eval --dataset kt:%s/synth --models difficulty --ks 5 --dkt dkt,meta-dkt --dkt_epochs 2 --boot 20 --quiet", tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
  CHECK_MSG(strstr(out, "B all") && strstr(out, "B 3-10") && strstr(out, "B 11-15") && strstr(out, "| meta-DKT") &&
                strstr(out, "| DKT"),
            "protocol B rows missing: %s", out);
  /* meta-DKT against DKT on the same answers: a paired difference per B column, equal to the
   * difference of the two rows' AUCs */
  const char *dl = strstr(out, " DKT B all: auc "), *ml = strstr(out, " meta-DKT B all: auc ");
  double auc_dkt = NAN, auc_meta = NAN;
  if (dl) sscanf(dl + strlen(" DKT B all: auc "), "%lf", &auc_dkt);
  if (ml) sscanf(ml + strlen(" meta-DKT B all: auc "), "%lf", &auc_meta);
  const char *drow = strstr(out, "(protocol B: DKT)");
  drow = drow ? strstr(drow, "| meta-DKT") : NULL;
  const char *eol = drow ? strchr(drow, '\n') : NULL, *ci = drow ? strchr(drow, '[') : NULL, *cell = ci;
  while (cell && cell > drow && cell[-1] != '|') cell--; /* the row's first difference: column "B all" */
  double delta = NAN;
  if (cell && ci < eol) sscanf(cell, "%lf", &delta);
  /* the printed AUCs and difference are rounded to 4 and 3 decimals */
  CHECK_MSG(fabs(delta - (auc_meta - auc_dkt)) < 6e-4 && strstr(drow, "vs DKT") < eol,
            "paired difference %g, AUCs %g and %g: %s", delta, auc_meta, auc_dkt, out);
  /* bad input: exit 2 and one line naming the problem */
  const char *bad[][2] = {
      {"eval --dataset kt:/tmp --dkt lstm", "lstm"},
      {"eval --dataset kt:/nonexistent/x", "/nonexistent/x"},
      {"eval --dataset kt:/tmp --models irt3", "irt3"},
      {"eval --dataset kt:/tmp --frobnicate 3", "frobnicate"},
      {"eval --dataset kt:/tmp --ks 0", "K"},
      {"train --dataset kt:/tmp --algos protonet --models meta", "protonet"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rc = run_cli(bad[i][0]);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK_MSG(rc == 2 && lines == 1 && strstr(out, bad[i][1]), "%s: exit %d, %d lines: %s", bad[i][0], rc, lines, out);
  }
  /* a malformed file: the error names file and line */
  snprintf(path, sizeof path, "%s/broken", tmp);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/broken/broken_train.csv", tmp);
  const char *broken = "2\n1,2\n1,0\n3\n1,2\n0,1\n";
  ml_test_write_file(path, broken, strlen(broken));
  snprintf(path, sizeof path, "%s/broken/broken_test.csv", tmp);
  ml_test_write_file(path, "1\n1\n1\n", strlen("1\n1\n1\n"));
  snprintf(args, sizeof args, "eval --dataset kt:%s/broken", tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 2 && strstr(out, "broken_train.csv:4:"), "exit %d: %s", rc, out);
  synth_free(&d);
}
