/* practice: selection policies, calibration, the learning path and `metalearn next`, on synthetic
 * students drawn from a known 2PL model (the right answers are computable): the information
 * policy picks the exercise of highest true information far more often than random, target
 * mode's observed success converges to the target, the learning path follows a rising (then
 * falling) true ability; `metalearn next` on a student log (real test file when the data is
 * present), the feedback loop, and bad input giving a one-line error and exit 2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "metalearn/practice.h"

enum { J = 40, NTRAIN = 400, NTEST = 300 };

typedef struct {
  float a[J], b[J];
} irt2;

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static void make_items(irt2 *t, uint64_t seed) {
  ml_rng r;
  ml_rng_init(&r, seed, 0);
  for (int j = 0; j < J; j++) t->a[j] = 0.8f + 0.8f * ml_rng_uniform(&r), t->b[j] = 1.2f * ml_rng_normal(&r);
}

static float g_ability_sd = 1.0f; /* the true abilities' sd (N(0, 1) unless a test changes it) */

/* n students, each answering every exercise once in a random order (first attempts). */
static void make_students(const irt2 *t, int64_t n, uint64_t seed, ml_answers *a, float *theta) {
  ml_rng r;
  ml_rng_init(&r, seed, 1);
  memset(a, 0, sizeof *a);
  a->n_students = n, a->n_answers = n * J;
  a->offsets = malloc((size_t)(n + 1) * sizeof *a->offsets);
  a->item = malloc((size_t)(n * J) * sizeof *a->item);
  a->skill = malloc((size_t)(n * J) * sizeof *a->skill);
  a->correct = malloc((size_t)(n * J));
  int64_t idx[J];
  for (int64_t s = 0; s < n; s++) {
    float th = g_ability_sd * ml_rng_normal(&r);
    if (theta) theta[s] = th;
    a->offsets[s] = s * J;
    for (int j = 0; j < J; j++) idx[j] = j;
    ml_rng_shuffle(&r, idx, J);
    for (int j = 0; j < J; j++) {
      int64_t k = s * J + j, e = idx[j];
      a->item[k] = (int32_t)e, a->skill[k] = (int32_t)(e % 4);
      a->correct[k] = ml_rng_uniform(&r) < sigm(t->a[e] * (th - t->b[e]));
    }
  }
  a->offsets[n] = n * J;
}

static ml_student_model *fit_irt1(const ml_answers *train) {
  ml_student_config c = ml_student_defaults(ML_STUDENT_IRT1);
  c.threads = 1;
  ml_student_model *m = NULL;
  CHECK_OK(ml_student_model_fit(&c, J, 4, NULL, train, NULL, &m));
  return m;
}

ML_TEST(policies_and_calibration_basics) {
  float p[5] = {0.1f, 0.45f, 0.69f, 0.9f, 0.52f};
  ml_rng r;
  ml_rng_init(&r, 1, 0);
  ml_practice_calib id = ml_practice_calib_identity();
  CHECK(ml_practice_pick(ML_PRACTICE_INFO, p, 5, 0.7f, id, &r) == 4);
  CHECK(ml_practice_pick(ML_PRACTICE_TARGET, p, 5, 0.7f, id, &r) == 2);
  CHECK(ml_practice_pick(ML_PRACTICE_TARGET, p, 5, 0.95f, id, &r) == 3);
  CHECK(ml_practice_pick(ML_PRACTICE_INFO, p, 0, 0.7f, id, &r) == -1);
  ml_practice_policy pol;
  CHECK(ml_practice_policy_parse("info", &pol) == ML_OK && pol == ML_PRACTICE_INFO);
  CHECK(ml_practice_policy_parse("greedy", &pol) != ML_OK);
  /* calibration recovers a known distortion: true logit = 0.5 logit(p) + 0.8 */
  enum { N = 20000 };
  float *pp = malloc(N * sizeof *pp);
  uint8_t *y = malloc(N);
  for (int i = 0; i < N; i++) {
    float z = 3 * ml_rng_normal(&r);
    pp[i] = sigm(z);
    y[i] = ml_rng_uniform(&r) < sigm(0.5f * z + 0.8f);
  }
  ml_practice_calib c;
  CHECK_OK(ml_practice_calib_fit(pp, y, N, &c));
  CHECK_NEAR(c.slope, 0.5, 0.06);
  CHECK_NEAR(c.intercept, 0.8, 0.08);
  free(pp), free(y);
  /* balanced target: after picks expected to succeed 0.9 on average, aim lower */
  CHECK(ml_practice_balanced_target(0.7f, 2, 1.8) < 0.7f);
  CHECK_NEAR(ml_practice_balanced_target(0.7f, 0, 0), 0.7, 1e-6);
}

ML_TEST(info_policy_picks_the_most_informative_exercise) {
  irt2 t;
  make_items(&t, 5);
  ml_answers train, test;
  float theta[NTEST];
  make_students(&t, NTRAIN, 6, &train, NULL);
  make_students(&t, NTEST, 7, &test, theta);
  ml_student_model *m = fit_irt1(&train);
  ml_rng r;
  ml_rng_init(&r, 9, 0);
  int hit_info = 0, hit_rand = 0;
  float p[J];
  for (int64_t s = 0; s < NTEST; s++) {
    /* after 20 answers, the exercise with the highest true information a^2 P (1 - P) at the
     * true ability among the 20 not yet answered */
    ml_student_log all = ml_student_log_of(&test, s), sup = all;
    sup.n = 20;
    ml_student_log q = {all.item + 20, all.skill + 20, NULL, J - 20};
    CHECK_OK(ml_student_model_predict(m, &sup, &q, NULL, p));
    float tinfo[J], third;
    for (int64_t k = 0; k < q.n; k++) {
      int e = q.item[k];
      float P = sigm(t.a[e] * (theta[s] - t.b[e]));
      tinfo[k] = t.a[e] * t.a[e] * P * (1 - P);
    }
    { /* the third-highest true information */
      float s3[J];
      memcpy(s3, tinfo, sizeof s3);
      for (int i = 0; i < 3; i++)
        for (int64_t k = i + 1; k < q.n; k++)
          if (s3[k] > s3[i]) {
            float x = s3[i];
            s3[i] = s3[k], s3[k] = x;
          }
      third = s3[2];
    }
    /* a hit: the pick is among the 3 exercises of highest true information */
    int64_t ki = ml_practice_pick(ML_PRACTICE_INFO, p, q.n, 0.7f, ml_practice_calib_identity(), &r);
    int64_t kr = ml_practice_pick(ML_PRACTICE_RANDOM, p, q.n, 0.7f, ml_practice_calib_identity(), &r);
    hit_info += tinfo[ki] >= third;
    hit_rand += tinfo[kr] >= third;
  }
  printf("  info policy in the top 3 by true information: %d of %d, random %d\n", hit_info, NTEST, hit_rand);
  CHECK_MSG(hit_info >= 2 * hit_rand && hit_info - hit_rand >= NTEST / 5, "info %d vs random %d of %d", hit_info,
            hit_rand, NTEST);
  ml_student_model_free(m);
  ml_answers_free(&train), ml_answers_free(&test);
}

ML_TEST(target_mode_observed_success_converges_to_the_target) {
  irt2 t;
  make_items(&t, 11);
  ml_answers train, test;
  make_students(&t, NTRAIN, 12, &train, NULL);
  make_students(&t, NTEST, 13, &test, NULL);
  ml_student_model *m = fit_irt1(&train);
  ml_practice_protocol_config pc = ml_practice_protocol_defaults();
  pc.resamples = 2, pc.threads = 2, pc.target = 0.7f;
  pc.ns[0] = 3, pc.ns[1] = 10, pc.n_ns = 2;
  ml_practice_calib_steps cal;
  CHECK_OK(ml_practice_fit_target_calibration(m, &train, &pc, 200, &cal));
  CHECK(cal.n == 10);
  ml_practice_variant v[3] = {{ML_PRACTICE_RANDOM, false, false}, {ML_PRACTICE_INFO, false, false},
                              {ML_PRACTICE_TARGET, true, true}};
  ml_practice_cell cells[6];
  CHECK_OK(ml_practice_protocol(m, &test, &pc, v, 3, &cal, cells));
  const ml_practice_cell *tg = &cells[2 * 2 + 1]; /* target, n = 10 */
  CHECK_MSG(fabs(tg->picked_success - 0.7) < 0.05, "observed %.3f", tg->picked_success);
  CHECK(tg->target_dist < 0.1);
  CHECK(cells[0 * 2 + 1].picked_success > 0 && fabs(cells[1 * 2 + 1].picked_success - 0.7) > 0.05); /* info aims at 0.5 */
  CHECK(tg->students == NTEST && tg->heldout == NTEST * (J - 32));
  /* more picks, better held-out predictions */
  CHECK(cells[1 * 2 + 1].auc > cells[1 * 2 + 0].auc - 0.01 && cells[0].auc > 0.6);
  /* The fit keeps its steps only when they bring the observed success closer to the target.
   * A model whose difficulties are shrunk 4x predicts near 0.5 everywhere, so uncalibrated
   * target mode picks the easiest exercises; its calibration must be kept and must help. */
  CHECK(cal.kept ? cal.worst_calibrated < cal.worst_raw : cal.worst_calibrated >= cal.worst_raw);
  float b[J];
  ml_student_model_difficulties(m, b);
  for (int j = 0; j < J; j++) b[j] *= 0.25f;
  ml_student_model *flat = NULL;
  CHECK_OK(ml_student_model_with_difficulties(m, b, 0.25f, &flat));
  ml_practice_calib_steps cf;
  CHECK_OK(ml_practice_fit_target_calibration(flat, &train, &pc, 200, &cf));
  printf("  shrunk model: worst |observed - target| raw %.3f, calibrated %.3f (kept %d)\n", cf.worst_raw,
         cf.worst_calibrated, cf.kept);
  CHECK(cf.kept && cf.worst_raw > 0.1 && cf.worst_calibrated < 0.05 && cf.step[0].slope > 1.5f);
  ml_practice_variant raw_cal[2] = {{ML_PRACTICE_TARGET, false, false}, {ML_PRACTICE_TARGET, true, false}};
  CHECK_OK(ml_practice_protocol(flat, &test, &pc, raw_cal, 2, &cf, cells));
  double worst[2] = {0, 0}; /* raw, calibrated: worst over n = 3, 10 on the test students */
  for (int w = 0; w < 2; w++)
    for (int ni = 0; ni < 2; ni++) worst[w] = fmax(worst[w], fabs(cells[w * 2 + ni].picked_success - 0.7));
  printf("  on the test students: raw %.3f, calibrated %.3f\n", worst[0], worst[1]);
  CHECK(worst[1] < 0.05 && worst[0] > 0.1);
  ml_student_model_free(flat);
  ml_student_model_free(m);
  ml_answers_free(&train), ml_answers_free(&test);
}

ML_TEST(learning_path_follows_the_true_ability) {
  irt2 t;
  make_items(&t, 21);
  ml_answers train;
  make_students(&t, NTRAIN, 22, &train, NULL);
  ml_student_model *m = fit_irt1(&train);
  float b[J], p[J];
  int32_t skill[J];
  for (int j = 0; j < J; j++) skill[j] = 0; /* one skill: one group graded by difficulty */
  ml_student_model_difficulties(m, b);
  ml_practice_levels lv;
  CHECK_OK(ml_practice_levels_build(b, skill, J, 1, 3, &lv));
  CHECK(lv.n_groups == 1 && lv.count[0] + lv.count[1] + lv.count[2] == J);
  for (int j = 0; j < J; j++) /* levels follow difficulty */
    for (int k = 0; k < J; k++)
      if (b[j] < b[k]) CHECK(lv.item_level[j] <= lv.item_level[k]);
  /* a student whose true ability rises from -2 to 2 over 300 answers, then falls back to -2;
   * practice at the current level, the model adapted on the last 30 answers */
  enum { T = 600, W = 30 };
  int32_t item[T], sk[T], level = 0, lev_at[4] = {0};
  uint8_t y[T];
  ml_rng r;
  ml_rng_init(&r, 23, 0);
  ml_practice_calib id = ml_practice_calib_identity();
  for (int step = 0; step < T; step++) {
    float th = step < 300 ? -2 + 4 * step / 300.0f : 2 - 4 * (step - 300) / 300.0f;
    int64_t from = step > W ? step - W : 0;
    ml_student_log sup = {item + from, sk + from, y + from, step - from};
    CHECK_OK(ml_student_model_predict_pool(m, &sup, NULL, p, NULL));
    if (step > 0) ml_practice_path_step(&lv, p, 0.75f, 0.6f, &level);
    float cp[J];
    int32_t ci[J];
    int64_t nc = 0;
    for (int j = 0; j < J; j++)
      if (lv.item_level[j] == level) cp[nc] = p[j], ci[nc] = j, nc++;
    int32_t e = ci[ml_practice_pick(ML_PRACTICE_TARGET, cp, nc, 0.7f, id, &r)];
    item[step] = e, sk[step] = 0, y[step] = ml_rng_uniform(&r) < sigm(t.a[e] * (th - t.b[e]));
    if (step == 40) lev_at[0] = level;
    if (step == 299) lev_at[1] = level;
    if (step == 599) lev_at[2] = level;
  }
  CHECK_MSG(lev_at[0] == 0 && lev_at[1] == 2 && lev_at[2] == 0, "levels %d %d %d", lev_at[0], lev_at[1], lev_at[2]);
  ml_practice_levels_free(&lv);
  ml_student_model_free(m);
  ml_answers_free(&train);
}

ML_TEST(skill_graph_pools_ranks_and_exports) {
  /* 4 exercises, 2 skills (0, 0, 1, 1): the item matrix pooled by skill, columns sum to one */
  float ij[16], sj[4];
  for (int i = 0; i < 16; i++) ij[i] = 0.1f;
  ij[0 * 4 + 2] = ij[1 * 4 + 3] = 0.5f; /* skill 0 strongly raises skill 1 */
  int32_t sk[4] = {0, 0, 1, 1};
  CHECK_OK(ml_practice_skill_matrix(ij, 4, sk, 2, sj));
  CHECK_NEAR(sj[0] + sj[2], 1.0, 1e-6);
  CHECK_NEAR(sj[1] + sj[3], 1.0, 1e-6);
  CHECK(sj[0 * 2 + 1] > sj[1 * 2 + 1]); /* 0 -> 1 stronger than 1 -> 1 */
  ml_practice_link l[4];
  CHECK(ml_practice_top_links(sj, 2, 4, l) == 2 && l[0].from == 0 && l[0].to == 1 && l[0].weight >= l[1].weight);
  char dot[4096], js[4096];
  snprintf(dot, sizeof dot, "%s/g.dot", ml_test_tmpdir());
  snprintf(js, sizeof js, "%s/g.json", ml_test_tmpdir());
  const char *names[2] = {"fractions", "ratio \"x\""};
  CHECK_OK(ml_practice_graph_write(dot, js, sj, 2, names, 1));
  char *d = ml_test_read_file(dot, NULL), *j = ml_test_read_file(js, NULL);
  CHECK(d && strstr(d, "digraph") && strstr(d, "s0 -> s1") && !strstr(d, "s1 -> s0"));
  CHECK(j && strstr(j, "\"from\": \"fractions\"") && strstr(j, "ratio \\\"x\\\"") && strstr(j, "strongest_prerequisite"));
  free(d), free(j);
}

/* ------------------------------------------------------------------- CLI ---- */

static char out[1 << 17];

static int run_cli(const char *args) { return ml_test_metalearn(args, out, sizeof out); }

static void write_kt(const char *dir, const char *name, const char *which, const ml_answers *a) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s_%s.csv", dir, name, name, which);
  size_t cap = 1 << 22, len = 0;
  char *buf = malloc(cap);
  for (int64_t s = 0; s < a->n_students; s++) {
    int64_t o = a->offsets[s], L = ml_answers_len(a, s);
    len += (size_t)snprintf(buf + len, cap - len, "%lld\n", (long long)L);
    for (int64_t i = 0; i < L; i++) len += (size_t)snprintf(buf + len, cap - len, "%d%s", a->item[o + i] + 1, i + 1 < L ? "," : "\n");
    for (int64_t i = 0; i < L; i++) len += (size_t)snprintf(buf + len, cap - len, "%d%s", a->correct[o + i], i + 1 < L ? "," : "\n");
  }
  ml_test_write_file(path, buf, len);
  free(buf);
}

/* The first recommended exercise id in `out` (text output), into id. */
static int first_rec(char *id, size_t cap) {
  const char *s = strstr(out, "next exercises");
  if (!s || !(s = strstr(s, "exercise "))) return -1;
  s += 9;
  while (*s == ' ') s++;
  size_t n = strcspn(s, " ");
  if (n == 0 || n >= cap) return -1;
  memcpy(id, s, n);
  id[n] = 0;
  return 0;
}

static void next_checks(const char *run, const char *log, const char *what) {
  char args[8192], path[4096];
  const char *tmp = ml_test_tmpdir();
  snprintf(path, sizeof path, "%s/log.txt", tmp);
  ml_test_write_file(path, log, strlen(log));
  snprintf(args, sizeof args, "next --run %s --answers %s --count 3", run, path);
  int rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "mastery per skill") && strstr(out, "predicted"), "%s: exit %d: %s", what, rc, out);
  char id[64], id2[64];
  CHECK_MSG(first_rec(id, sizeof id) == 0, "%s: %s", what, out);
  /* feedback loop: the student answers the recommended exercise right five times */
  size_t cap = strlen(log) + 512;
  char *more = malloc(cap);
  snprintf(more, cap, "%s5\n%s,%s,%s,%s,%s\n1,1,1,1,1\n", log, id, id, id, id, id);
  ml_test_write_file(path, more, strlen(more));
  free(more);
  rc = run_cli(args);
  CHECK(rc == 0 && first_rec(id2, sizeof id2) == 0);
  CHECK_MSG(strcmp(id, id2) != 0, "%s: the recommendation did not move (%s)", what, id);
  snprintf(args, sizeof args, "next --run %s --answers %s --json --policy info --count 2", run, path);
  rc = run_cli(args);
  CHECK(rc == 0 && strstr(out, "\"next\": [") && strstr(out, "\"strongest\""));
  /* empty log: population recommendations at level 0 */
  ml_test_write_file(path, "", 0);
  snprintf(args, sizeof args, "next --run %s --answers %s", run, path);
  rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "population") && strstr(out, "level 0"), "%s: empty log: %s", what, out);
  /* bad input: one line naming the file and line, exit 2 */
  const char *bad[][2] = {{"2\n1,987654321\n0,1\n", "log.txt:2: unknown exercise id"},
                          {"2\n1,2\n0,7\n", "log.txt:3:"},
                          {"x2\n1,2\n0,1\n", "log.txt:1:"},
                          {"3\n1,2\n0,1\n", "log.txt:2:"},
                          {"99999999999\n1\n1\n", "log.txt:2:"},
                          {"2\n1,2\n", "log.txt:1:"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ml_test_write_file(path, bad[i][0], strlen(bad[i][0]));
    rc = run_cli(args);
    CHECK_MSG(rc == 2 && strstr(out, bad[i][1]) && strchr(out, '\n') == out + strlen(out) - 1,
              "%s: bad input %zu: exit %d: %s", what, i, rc, out);
  }
  snprintf(args, sizeof args, "next --run %s --answers %s --policy greedy", run, path);
  CHECK(run_cli(args) == 2);
}

ML_TEST(cli_next_on_synthetic_run) {
  irt2 t;
  make_items(&t, 31);
  ml_answers train, test;
  make_students(&t, 200, 32, &train, NULL);
  make_students(&t, 20, 33, &test, NULL);
  const char *tmp = ml_test_tmpdir();
  write_kt(tmp, "psynth", "train", &train);
  write_kt(tmp, "psynth", "test", &test);
  char args[16384], run[4096];
  snprintf(run, sizeof run, "%s/run_practice", tmp);
  snprintf(args, sizeof args, "train --dataset kt:%s/psynth --fold 0 --models irt1 --ks 5 --boot 10 --threads 2 --quiet --run %s",
           tmp, run);
  int rc = run_cli(args);
  CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
  next_checks(run, "4\n1,2,3,4\n1,0,1,1\n", "synthetic");
  snprintf(args, sizeof args, "practice-eval --dataset kt:%s/psynth --resamples 2 --ns 1,5 --threads 2 --meta-iterations 30 --quiet", tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "target+cal+bal") && strstr(out, "n=5 AUC") && strstr(out, "on protocol tasks"), "exit %d: %s", rc, out);
  /* the learned policy: trained by practice-eval, saved, then used by next */
  snprintf(args, sizeof args,
           "practice-eval --dataset kt:%s/psynth --resamples 2 --ns 1,5 --threads 2 --learned 2 --selector-hidden 4 "
           "--save-selector %s/sel.safetensors --quiet", tmp, tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "| learned") && strstr(out, "learned policy (trained jointly with its 1PL): epoch"), "exit %d: %s", rc, out);
  char logp[1024];
  snprintf(logp, sizeof logp, "%s/log_sel.txt", tmp);
  ml_test_write_file(logp, "3\n1,2,3\n1,0,1\n", 14);
  snprintf(args, sizeof args, "next --run %s --answers %s --selector %s/sel.safetensors --count 3", run, logp, tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "policy learned") && first_rec(args, 64) == 0, "exit %d: %s", rc, out);
  snprintf(args, sizeof args, "next --run %s --answers %s --policy learned", run, logp);
  rc = run_cli(args);
  CHECK_MSG(rc == 2 && strstr(out, "needs --selector"), "exit %d: %s", rc, out);
  snprintf(args, sizeof args, "next --run %s --answers %s --selector %s/run_practice/irt1.safetensors", run, logp, tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 2 && strstr(out, "irt1.safetensors: not a metalearn selection"), "exit %d: %s", rc, out);
  snprintf(args, sizeof args, "skill-graph --run %s --out %s/graph --top 5", run, tmp);
  rc = run_cli(args);
  CHECK_MSG(rc == 0 && strstr(out, "strongest links"), "exit %d: %s", rc, out);
  snprintf(args, sizeof args, "%s/graph.dot", tmp);
  char *g = ml_test_read_file(args, NULL);
  CHECK(g && strstr(g, "digraph skills") && strstr(g, " -> "));
  free(g);
  snprintf(args, sizeof args, "skill-graph --run %s", run);
  CHECK(run_cli(args) == 2);
  ml_answers_free(&train), ml_answers_free(&test);
}

ML_TEST(cli_next_on_a_real_student) {
  const char *data = ml_test_data_dir();
  char path[4096];
  if (data) snprintf(path, sizeof path, "%s/knowledge-tracing/assist2009_updated/assist2009_updated_test.csv", data);
  struct stat sb;
  if (!data || stat(path, &sb) != 0) {
    printf("  (skipped: no assist2009_updated data)\n");
    return;
  }
  size_t n;
  char *buf = ml_test_read_file(path, &n);
  CHECK(buf != NULL);
  if (!buf) return;
  /* the first test student: three lines */
  char *e = buf;
  for (int i = 0; i < 3 && e; i++) e = strchr(e, '\n') ? strchr(e, '\n') + 1 : NULL;
  if (e) *e = 0;
  char args[8192], run[4096];
  snprintf(run, sizeof run, "%s/run_assist", ml_test_tmpdir());
  snprintf(args, sizeof args, "train --dataset assist2009 --data_dir %s --fold 0 --models irt1 --ks 10 --boot 10 --threads 2 --quiet --run %s",
           data, run);
  int rc = run_cli(args);
  CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
  next_checks(run, buf, "assist2009");
  free(buf);
}

/* ---------------------------------------------------- learned policy ---- */

/* Exercises of two kinds: half nearly uninformative (discrimination 0.15), half sharp (2.5), at
 * the same spread of difficulty. A 1PL student model cannot tell them apart, so maximum information
 * picks either kind; a learned policy can learn to ask the sharp ones. */
static void make_mixed_items(irt2 *t, uint64_t seed) {
  ml_rng r;
  ml_rng_init(&r, seed, 0);
  for (int j = 0; j < J; j++) t->a[j] = j % 2 ? 2.5f : 0.15f, t->b[j] = 1.0f * ml_rng_normal(&r);
}

/* Training, validation and test students of the mixed exercises, and the 1PL fitted on training. */
static ml_student_model *mixed_world(uint64_t seed, ml_answers *train, ml_answers *valid, ml_answers *test) {
  irt2 t;
  make_mixed_items(&t, seed);
  make_students(&t, NTRAIN, seed + 1, train, NULL);
  make_students(&t, 150, seed + 2, valid, NULL);
  make_students(&t, NTEST, seed + 3, test, NULL);
  return fit_irt1(train);
}

static ml_practice_protocol_config small_protocol(void) {
  ml_practice_protocol_config pc = ml_practice_protocol_defaults();
  pc.ns[0] = 3, pc.ns[1] = 6, pc.n_ns = 2, pc.resamples = 3, pc.threads = 2;
  return pc;
}

static ml_practice_selector *train_selector(const ml_student_model *m, const ml_answers *train, const ml_answers *valid,
                                            int64_t epochs, int threads) {
  ml_practice_protocol_config pc = small_protocol();
  ml_practice_selector_config sc = ml_practice_selector_defaults();
  sc.epochs = epochs, sc.threads = threads, sc.hidden = 8, sc.lr = 0.05f;
  ml_practice_selector *s = NULL;
  CHECK_OK(ml_practice_selector_train(m, train, valid, &pc, &sc, &s));
  return s;
}

ML_TEST(learned_policy_score_function_matches_finite_differences) {
  irt2 t;
  make_items(&t, 41);
  ml_answers train;
  make_students(&t, 60, 42, &train, NULL);
  ml_student_model *m = fit_irt1(&train);
  ml_practice_selector *s = train_selector(m, &train, NULL, 0, 1);
  if (!s) return;
  ml_params *P = ml_practice_selector_params(s);
  ml_rng r;
  ml_rng_init(&r, 43, 0);
  for (int64_t i = 0; i < P->numel; i++) P->data[i] = 0.5f * ml_rng_normal(&r); /* every term live */
  /* a student who answered 5 exercises (two of them twice: the state sums every answer) */
  int32_t ai[6] = {3, 7, 3, 11, 20, 7}, as[6] = {0};
  uint8_t ay[6] = {1, 0, 0, 1, 1, 1};
  ml_student_log answered = {ai, as, ay, 6};
  int32_t cand[5] = {1, 5, 11, 30, 39};
  float p[5] = {0.2f, 0.45f, 0.6f, 0.8f, 0.95f};
  float *g = calloc((size_t)P->numel, sizeof *g);
  double lp;
  CHECK_OK(ml_practice_selector_log_prob(s, &answered, cand, p, 5, 2, g, &lp));
  CHECK(lp < 0 && isfinite(lp));
  int checked = 0, nonzero = 0;
  double worst = 0;
  for (int64_t i = 0; i < P->numel; i++) {
    /* central differences in float: eps 1e-2 keeps the rounding error near 1e-5 / 1e-2 */
    float keep = P->data[i];
    double up, dn;
    P->data[i] = keep + 1e-2f;
    CHECK_OK(ml_practice_selector_log_prob(s, &answered, cand, p, 5, 2, NULL, &up));
    P->data[i] = keep - 1e-2f;
    CHECK_OK(ml_practice_selector_log_prob(s, &answered, cand, p, 5, 2, NULL, &dn));
    P->data[i] = keep;
    double num = (up - dn) / 2e-2, err = fabs(num - g[i]) / (1e-3 + fabs(num));
    checked++, nonzero += g[i] != 0;
    if (err > worst) worst = err;
    CHECK_MSG(err < 2e-2, "parameter %lld: analytic %.6f, numeric %.6f", (long long)i, g[i], num);
  }
  printf("  %d parameters checked (%d with a nonzero gradient), worst relative error %.2g\n", checked, nonzero, worst);
  /* a, 5 biases, 5 embedding rows, 6 state rows (3 and 7 answered both right and wrong; 11, 20
   * right), b */
  CHECK_MSG(nonzero == 2 + 5 + 5 * 8 + 6 * 8 + 8, "%d nonzero", nonzero);
  /* bad input */
  CHECK(ml_practice_selector_log_prob(s, &answered, cand, p, 5, 5, NULL, &lp) == ML_ERR_ARG);
  cand[0] = J;
  CHECK(ml_practice_selector_log_prob(s, &answered, cand, p, 5, 0, NULL, &lp) == ML_ERR_ARG);
  free(g);
  ml_practice_selector_free(s);
  ml_student_model_free(m);
  ml_answers_free(&train);
}

ML_TEST(learned_policy_learns_to_ask_the_sharp_exercises) {
  ml_answers train, valid, test;
  ml_student_model *m = mixed_world(51, &train, &valid, &test);
  double t0 = ml_now();
  ml_practice_selector *s = train_selector(m, &train, &valid, 8, 2);
  double train_s = ml_now() - t0;
  if (!s) return;
  ml_practice_protocol_config pc = small_protocol();
  pc.selector = s;
  ml_practice_variant v[2] = {{ML_PRACTICE_INFO, false, false}, {ML_PRACTICE_LEARNED, false, false}};
  ml_practice_cell cells[4];
  CHECK_OK(ml_practice_protocol(m, &test, &pc, v, 2, NULL, cells));
  printf("  held-out AUC after 3 / 6 picks: info %.4f / %.4f, learned %.4f / %.4f (epoch %lld kept, %.1f s)\n",
         cells[0].auc, cells[1].auc, cells[2].auc, cells[3].auc, (long long)ml_practice_selector_best_epoch(s), train_s);
  CHECK(ml_practice_selector_best_epoch(s) > 0);
  CHECK_MSG(cells[3].auc > cells[1].auc + 0.01, "n=6: learned %.4f vs info %.4f", cells[3].auc, cells[1].auc);
  /* the learned policy prefers the sharp exercises: share of sharp ones among 6 greedy picks */
  int sharp = 0, total = 0;
  for (int64_t st = 0; st < 50; st++) {
    ml_student_log lg = ml_student_log_of(&test, st);
    int32_t ai[6], as[6] = {0}, cand[J];
    uint8_t ay[6];
    float p[J], score[J];
    bool used[J] = {false};
    for (int k = 0; k < 6; k++) {
      int64_t n = 0;
      for (int j = 0; j < J; j++)
        if (!used[j]) cand[n++] = j;
      ml_student_log sup = {ai, as, ay, k}, q = {cand, as, NULL, n};
      int32_t qs[J] = {0};
      q.skill = qs;
      CHECK_OK(ml_student_model_predict(m, &sup, &q, NULL, p));
      CHECK_OK(ml_practice_selector_scores(s, &sup, cand, p, n, score));
      int64_t b = 0;
      for (int64_t i = 1; i < n; i++)
        if (score[i] > score[b]) b = i;
      int e = cand[b];
      used[e] = true, ai[k] = e;
      for (int64_t i = 0; i < lg.n; i++)
        if (lg.item[i] == e) ay[k] = lg.correct[i];
      sharp += e % 2, total++;
    }
  }
  printf("  sharp exercises among the learned policy's picks: %d of %d\n", sharp, total);
  CHECK_MSG(sharp > total * 3 / 4, "%d of %d", sharp, total);
  /* the same network at 1 thread: training is independent of the thread count */
  ml_practice_selector *s1 = train_selector(m, &train, &valid, 2, 1), *s2 = train_selector(m, &train, &valid, 2, 2);
  if (s1 && s2) {
    ml_params *p1 = ml_practice_selector_params(s1), *p2 = ml_practice_selector_params(s2);
    CHECK(p1->numel == p2->numel && !memcmp(p1->data, p2->data, (size_t)p1->numel * sizeof *p1->data));
  }
  ml_practice_selector_free(s1), ml_practice_selector_free(s2);
  /* save / load round trip; hostile files get an error naming them */
  char path[4096], bad[4096];
  snprintf(path, sizeof path, "%s/selector.safetensors", ml_test_tmpdir());
  CHECK_OK(ml_practice_selector_save(s, path));
  ml_practice_selector *l = NULL;
  CHECK_OK(ml_practice_selector_load(path, &l));
  if (l) {
    ml_params *a = ml_practice_selector_params(s), *b = ml_practice_selector_params(l);
    CHECK(a->numel == b->numel && !memcmp(a->data, b->data, (size_t)a->numel * sizeof *a->data));
    CHECK(ml_practice_selector_best_epoch(l) == ml_practice_selector_best_epoch(s));
    CHECK(ml_practice_selector_n_items(l) == J);
  }
  ml_practice_selector_free(l);
  size_t n;
  char *buf = ml_test_read_file(path, &n);
  snprintf(bad, sizeof bad, "%s/selector_bad.safetensors", ml_test_tmpdir());
  ml_test_write_file(bad, buf, n / 2); /* truncated */
  l = NULL;
  CHECK(ml_practice_selector_load(bad, &l) != ML_OK && !l && strstr(ml_last_error(), "selector_bad"));
  /* not a selector: the student model's own checkpoint */
  snprintf(bad, sizeof bad, "%s/irt1.safetensors", ml_test_tmpdir());
  CHECK_OK(ml_student_model_save(m, bad));
  CHECK(ml_practice_selector_load(bad, &l) == ML_ERR_FORMAT && strstr(ml_last_error(), "not a metalearn selection"));
  free(buf);
  /* the protocol refuses the learned policy without a network */
  pc.selector = NULL;
  CHECK(ml_practice_protocol(m, &test, &pc, v + 1, 1, NULL, cells) == ML_ERR_ARG);
  ml_practice_selector_free(s);
  ml_student_model_free(m);
  ml_answers_free(&train), ml_answers_free(&valid), ml_answers_free(&test);
}

ML_TEST(joint_training_outer_gradient_matches_finite_differences) {
  /* the held-out NLL after MAP adaptation, differentiated through the adaptation */
  float b[J];
  ml_rng r;
  ml_rng_init(&r, 61, 0);
  for (int j = 0; j < J; j++) b[j] = ml_rng_normal(&r);
  int32_t si[5] = {2, 9, 14, 9, 30}, hi[4] = {1, 2, 17, 25}, sk[5] = {0};
  uint8_t sy[5] = {1, 0, 1, 1, 0}, hy[4] = {0, 1, 1, 0};
  ml_student_log sup = {si, sk, sy, 5}, held = {hi, sk, hy, 4};
  float g[J] = {0}, glsd = 0;
  const float lsd = -0.4f; /* an ability prior of sd 0.67: the learned prior's own gradient too */
  double nll, up, dn;
  CHECK_OK(ml_practice_1pl_outer(b, J, lsd, &sup, &held, g, &glsd, &nll));
  CHECK(nll > 0 && isfinite(nll));
  double worst = 0;
  int nonzero = 0;
  for (int j = 0; j < J; j++) {
    float keep = b[j];
    b[j] = keep + 1e-2f;
    CHECK_OK(ml_practice_1pl_outer(b, J, lsd, &sup, &held, NULL, NULL, &up));
    b[j] = keep - 1e-2f;
    CHECK_OK(ml_practice_1pl_outer(b, J, lsd, &sup, &held, NULL, NULL, &dn));
    b[j] = keep;
    double num = (up - dn) / 2e-2, err = fabs(num - g[j]) / (1e-3 + fabs(num));
    nonzero += g[j] != 0;
    if (err > worst) worst = err;
    CHECK_MSG(err < 2e-2, "difficulty %d: analytic %.6f, numeric %.6f", j, g[j], num);
  }
  CHECK_OK(ml_practice_1pl_outer(b, J, lsd + 1e-2f, &sup, &held, NULL, NULL, &up));
  CHECK_OK(ml_practice_1pl_outer(b, J, lsd - 1e-2f, &sup, &held, NULL, NULL, &dn));
  double num = (up - dn) / 2e-2, err = fabs(num - glsd) / (1e-3 + fabs(num));
  CHECK_MSG(err < 2e-2 && fabs(num) > 1e-3, "ability log sd: analytic %.6f, numeric %.6f", glsd, num);
  printf("  outer gradient: %d nonzero, worst relative error %.2g (ability log sd: %.2g)\n", nonzero, worst, err);
  CHECK(nonzero == 7); /* support 2, 9, 14, 30 and held-out 1, 17, 25 (2 in both) */
  hi[0] = J;
  CHECK(ml_practice_1pl_outer(b, J, lsd, &sup, &held, g, NULL, &nll) == ML_ERR_ARG);
}

ML_TEST(joint_training_learns_the_difficulties_with_the_selector) {
  ml_answers train, valid, test;
  ml_student_model *m = mixed_world(71, &train, &valid, &test);
  ml_practice_protocol_config pc = small_protocol();
  ml_practice_selector_config sc = ml_practice_selector_defaults();
  sc.epochs = 6, sc.threads = 2, sc.hidden = 8, sc.lr = 0.05f, sc.joint = true;
  ml_practice_selector *s = NULL;
  CHECK_OK(ml_practice_selector_train(m, &train, &valid, &pc, &sc, &s));
  if (!s) return;
  CHECK(ml_practice_selector_joint(s));
  ml_student_model *jm = NULL;
  CHECK_OK(ml_practice_selector_student(s, m, &jm));
  CHECK(jm != NULL);
  if (!jm) return;
  float b0[J], b1[J];
  ml_student_model_difficulties(m, b0);
  ml_student_model_difficulties(jm, b1);
  double moved = 0;
  for (int j = 0; j < J; j++) moved += fabs(b1[j] - b0[j]);
  printf("  mean |change| of the difficulties: %.4f (epoch %lld kept)\n", moved / J, (long long)ml_practice_selector_best_epoch(s));
  CHECK(ml_practice_selector_best_epoch(s) == 0 || moved > 0);
  pc.selector = s, pc.selector_model = jm;
  ml_practice_variant v[2] = {{ML_PRACTICE_INFO, false, false}, {ML_PRACTICE_LEARNED, false, false}};
  ml_practice_cell cells[4];
  CHECK_OK(ml_practice_protocol(m, &test, &pc, v, 2, NULL, cells));
  printf("  held-out AUC after 3 / 6 picks: info %.4f / %.4f, joint learned %.4f / %.4f\n", cells[0].auc, cells[1].auc,
         cells[2].auc, cells[3].auc);
  CHECK_MSG(cells[3].auc > cells[1].auc + 0.01, "n=6: joint %.4f vs info %.4f", cells[3].auc, cells[1].auc);
  /* round trip keeps the learned difficulties */
  char path[4096];
  snprintf(path, sizeof path, "%s/joint.safetensors", ml_test_tmpdir());
  CHECK_OK(ml_practice_selector_save(s, path));
  ml_practice_selector *l = NULL;
  ml_student_model *lm = NULL;
  CHECK_OK(ml_practice_selector_load(path, &l));
  if (l) {
    CHECK(ml_practice_selector_joint(l));
    CHECK_OK(ml_practice_selector_student(l, m, &lm));
    float b2[J];
    if (lm) ml_student_model_difficulties(lm, b2);
    CHECK(lm && !memcmp(b1, b2, sizeof b1));
  }
  /* joint training gives the same parameters at 1 and 2 threads */
  ml_practice_selector *t1 = NULL, *t2 = NULL;
  sc.epochs = 2, sc.threads = 1;
  CHECK_OK(ml_practice_selector_train(m, &train, &valid, &pc, &sc, &t1));
  sc.threads = 2;
  CHECK_OK(ml_practice_selector_train(m, &train, &valid, &pc, &sc, &t2));
  if (t1 && t2) {
    ml_params *p1 = ml_practice_selector_params(t1), *p2 = ml_practice_selector_params(t2);
    CHECK(p1->numel == p2->numel && !memcmp(p1->data, p2->data, (size_t)p1->numel * sizeof *p1->data));
  }
  ml_practice_selector_free(t1), ml_practice_selector_free(t2);
  /* joint training needs a 1PL */
  ml_student_config c2 = ml_student_defaults(ML_STUDENT_IRT2);
  c2.threads = 1;
  ml_student_model *m2 = NULL, *j2 = NULL;
  CHECK_OK(ml_student_model_fit(&c2, J, 4, NULL, &train, NULL, &m2));
  ml_practice_selector *s2 = NULL;
  CHECK(ml_practice_selector_train(m2, &train, NULL, &pc, &sc, &s2) == ML_ERR_ARG && !s2);
  CHECK(ml_practice_selector_student(s, m2, &j2) == ML_ERR_ARG && !j2);
  ml_student_model_free(m2);
  ml_student_model_free(lm), ml_practice_selector_free(l);
  ml_student_model_free(jm), ml_practice_selector_free(s);
  ml_student_model_free(m);
  ml_answers_free(&train), ml_answers_free(&valid), ml_answers_free(&test);
}

/* The meta-learned ability prior follows the students' true spread: tight abilities give a tight
 * prior, wide ones a wide prior, and the result does not depend on the thread count. */
ML_TEST(learned_ability_prior_tracks_the_true_spread) {
  irt2 t;
  make_items(&t, 81);
  ml_practice_protocol_config pc = ml_practice_protocol_defaults();
  pc.resamples = 2;
  float learned[2];
  const float truth[2] = {0.4f, 2.5f};
  for (int w = 0; w < 2; w++) {
    g_ability_sd = truth[w];
    ml_answers train, valid;
    make_students(&t, NTRAIN, 82 + (uint64_t)w, &train, NULL);
    make_students(&t, NTEST, 90 + (uint64_t)w, &valid, NULL);
    ml_student_model *m = fit_irt1(&train);
    double auc;
    pc.threads = 1;
    CHECK_OK(ml_practice_learn_ability_sd(m, &valid, &pc, 2, &learned[w], &auc));
    float again;
    pc.threads = 2;
    CHECK_OK(ml_practice_learn_ability_sd(m, &valid, &pc, 2, &again, NULL));
    CHECK(again == learned[w]);
    printf("  true ability sd %.1f: learned prior sd %.3f (pooled held-out AUC %.3f)\n", truth[w], learned[w], auc);
    CHECK(auc > 0.6 && auc < 1);
    ml_student_model_free(m);
    ml_answers_free(&train), ml_answers_free(&valid);
  }
  g_ability_sd = 1.0f;
  CHECK_MSG(learned[0] < 0.8f && learned[1] > 1.5f, "learned %.3f / %.3f for true 0.4 / 2.5", learned[0], learned[1]);
}
