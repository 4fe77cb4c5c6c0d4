/* metalearn next: a student's next exercises (adaptive practice), and metalearn practice-eval:
 * the BOBCAT protocol table of selection policies x n on a students dataset. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "metalearn/dkt.h"
#include "metalearn/io.h"
#include "metalearn/practice.h"

static int fail(const char *cmd, ml_status st) {
  fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
  return ml_cli_exit_code(st);
}

/* Comma list of positive integers into out (at most max); returns the count or -1. */
static int parse_ints(const char *s, int64_t *out, int max) {
  int n = 0;
  while (*s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 1 || v > 100000 || n == max || (*end && *end != ',')) return -1;
    out[n++] = v;
    s = *end ? end + 1 : end;
  }
  return n;
}

static int parse_num(const char *cmd, const char *name, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (end == v || *end || errno || !(x >= lo && x <= hi)) {
    fprintf(stderr, "metalearn %s: bad value '%s' for --%s (%g..%g)\n", cmd, v, name, lo, hi);
    return 2;
  }
  *out = x;
  return 0;
}

/* ------------------------------------------------------------ practice-eval ---- */

/* copies x a's students, each copy's answers in a seeded random order */
static ml_status shuffled_copies(const ml_answers *a, int copies, uint64_t seed, ml_answers *out) {
  int64_t S = a->n_students * copies, N = a->n_answers * copies, k = 0;
  memset(out, 0, sizeof *out);
  out->offsets = malloc((size_t)(S + 1) * sizeof *out->offsets);
  out->item = malloc((size_t)(N + 1) * sizeof *out->item);
  out->skill = malloc((size_t)(N + 1) * sizeof *out->skill);
  out->correct = malloc((size_t)(N + 1));
  int64_t maxlen = 1;
  for (int64_t s = 0; s < a->n_students; s++) maxlen = ml_answers_len(a, s) > maxlen ? ml_answers_len(a, s) : maxlen;
  int64_t *idx = malloc((size_t)maxlen * sizeof *idx);
  if (!out->offsets || !out->item || !out->skill || !out->correct || !idx) {
    free(idx);
    ml_answers_free(out);
    return ml_error(ML_ERR_NOMEM, "practice: out of memory");
  }
  out->offsets[0] = 0;
  for (int c = 0; c < copies; c++)
    for (int64_t s = 0; s < a->n_students; s++) {
      int64_t n = ml_answers_len(a, s), o = a->offsets[s];
      ml_rng r;
      ml_rng_init(&r, ml_rng_key(seed, (uint64_t)c, (uint64_t)s), 7);
      for (int64_t i = 0; i < n; i++) idx[i] = i;
      ml_rng_shuffle(&r, idx, n);
      for (int64_t i = 0; i < n; i++, k++)
        out->item[k] = a->item[o + idx[i]], out->skill[k] = a->skill[o + idx[i]], out->correct[k] = a->correct[o + idx[i]];
      out->offsets[c * a->n_students + s + 1] = k;
    }
  free(idx);
  out->n_students = S, out->n_answers = k;
  return ML_OK;
}


/* Target-mode calibration by 5-fold cross-fitting over the training students' first attempts fa:
 * group k (students with index % 5 == k) is steered by a model of the given kind (ability prior
 * sd) fitted on the other groups; the picks of all groups are pooled into one calibration. */
static ml_status xfit_calibration(ml_student_kind kind, float sd, const ml_kt_dataset *d, const ml_answers *fa,
                                  const ml_practice_protocol_config *pc, int64_t max_students,
                                  ml_practice_calib_steps *cal) {
  enum { G = 5 };
  ml_answers fit[G], held[G];
  ml_student_model *ms[G];
  memset(fit, 0, sizeof fit), memset(held, 0, sizeof held), memset(ms, 0, sizeof ms);
  int64_t S = fa->n_students, *a = malloc((size_t)(S + 1) * sizeof *a), *b = malloc((size_t)(S + 1) * sizeof *b);
  ml_status st = a && b ? ML_OK : ml_error(ML_ERR_NOMEM, "out of memory");
  for (int k = 0; k < G && !st; k++) {
    int64_t na = 0, nb = 0;
    for (int64_t s = 0; s < S; s++) {
      if (s % G == k) b[nb++] = s;
      else a[na++] = s;
    }
    st = ml_answers_subset(fa, a, na, &fit[k]);
    if (!st) st = ml_answers_subset(fa, b, nb, &held[k]);
    ml_student_config c = ml_student_defaults(kind);
    c.threads = pc->threads, c.ability_sd = sd;
    if (!st) st = ml_student_model_fit(&c, d->n_items, d->n_skills, &d->q, &fit[k], NULL, &ms[k]);
  }
  const ml_student_model *cm[G] = {ms[0], ms[1], ms[2], ms[3], ms[4]};
  const ml_answers *ca[G] = {&held[0], &held[1], &held[2], &held[3], &held[4]};
  if (!st) st = ml_practice_fit_target_calibration_sets(cm, ca, G, pc, max_students, cal);
  for (int k = 0; k < G; k++) ml_answers_free(&fit[k]), ml_answers_free(&held[k]), ml_student_model_free(ms[k]);
  free(a), free(b);
  return st;
}

/* Learns the 1PL's ability prior sd on `students` for model `m` (ml_practice_learn_ability_sd) and
 * replaces *target (the model the table uses) by a copy of itself with it. */
static ml_status learn_prior_into(const ml_student_model *m, const ml_answers *students,
                                  const ml_practice_protocol_config *pc, float *sd, ml_student_model **target) {
  ml_student_model *t = NULL;
  ml_status st = ml_practice_learn_ability_sd(m, students, pc, 5, sd, NULL);
  if (!st) st = ml_student_model_with_difficulties(*target, NULL, *sd, &t);
  if (!st) ml_student_model_free(*target), *target = t;
  return st;
}
int ml_cli_practice_eval(int argc, char **argv) {
  const char *cmd = "practice-eval", *dataset = NULL, *data_dir = NULL, *models = "irt1", *model_file = NULL;
  const char *ns_s = "1,3,5,10", *out_path = NULL;
  const char *selector_out = NULL, *selector_in = NULL;
  double resamples = 5, target = 0.7, seed = 1, threads = 0, cal_students = 1000, meta_iters = 0, meta_dim = 4;
  ml_practice_selector_config sc = ml_practice_selector_defaults();
  double sel_epochs = 0, sel_hidden = (double)sc.hidden, sel_lr = sc.lr, sel_rollouts = (double)sc.rollouts;
  double sel_joint = -1, sel_l2 = sc.student_l2; /* joint: -1 = with irt1, not with other models */
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: metalearn practice-eval --dataset assist2009|assist2015|statics|kt:DIR [options]\n\n"
             "BOBCAT's protocol: for each test student with >= 10 distinct exercises (first attempts), a random\n"
             "80%% pool and 20%% held-out; each policy picks n exercises from the pool one at a time seeing each\n"
             "answer; the student model adapted on the picks predicts the held-out answers (AUC, accuracy pooled\n"
             "over students, mean +- sd over paired resamples). Target mode is scored raw and calibrated (a\n"
             "logistic recalibration fitted on the training students' picks). irt1+prior: the 1PL with its\n"
             "ability prior's sd meta-learned on validation students (the pooled held-out AUC after adaptation).\n\n"
             "options:\n"
             "  --dataset NAME      students dataset (as for metalearn train)\n"
             "  --data_dir DIR      data root (default $METALEARN_DATA or ../shared/data)\n"
             "  --models LIST       baselines fitted on the training students' first attempts (irt1,irt1+prior,irt2,\n"
             "                      elo,difficulty)\n"
             "  --model-file FILE   also a saved student model (e.g. RUN/meta_metasgd_k10.safetensors)\n"
             "  --ns LIST           numbers of picks (1,3,5,10)\n"
             "  --resamples N       paired resamples of the split (5)\n"
             "  --target P          target success (0.7)\n"
             "  --calib-students N  training students for the calibration (1000)\n"
             "  --meta-iterations N also a Meta-SGD student model meta-trained on this protocol's tasks: each\n"
             "                      training student's first attempts in 3 random orders, support = 5 of them (0 = off)\n"
             "  --meta-dim N        its ability vector size (4)\n"
             "  --learned N         also the learned policy (BOBCAT): a selection network trained for N epochs on\n"
             "                      the training students (fold 1's train; its valid students pick the epoch) for\n"
             "                      each student model (0 = off)\n"
             "  --selector-hidden N, --selector-lr X, --selector-rollouts N   its size (16), Adam rate (0.01),\n"
             "                      sampled pick sequences per student (4)\n"
             "  --selector-joint 0|1 BOBCAT's joint training: the 1PL's difficulties are learned with the network\n"
             "                      (default: with irt1; --selector-l2 X pulls them towards the fitted ones, 0.01)\n"
             "  --save-selector F   write the (last model's) trained selection network, for metalearn next\n"
             "  --selector F        score the learned policy with a saved network instead of training one\n"
             "  --seed N, --threads N, --out FILE (the Markdown table), --quiet\n");
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      quiet = true;
      continue;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2)) {
      fprintf(stderr, "metalearn %s: unexpected argument '%s' (see --help)\n", cmd, a);
      return 2;
    }
    const char *v = argv[++i];
    int rc = 0;
    if (!strcmp(a, "--dataset")) dataset = v;
    else if (!strcmp(a, "--data_dir")) data_dir = v;
    else if (!strcmp(a, "--models")) models = v;
    else if (!strcmp(a, "--model-file")) model_file = v;
    else if (!strcmp(a, "--ns")) ns_s = v;
    else if (!strcmp(a, "--out")) out_path = v;
    else if (!strcmp(a, "--resamples")) rc = parse_num(cmd, "resamples", v, 1, 1000, &resamples);
    else if (!strcmp(a, "--target")) rc = parse_num(cmd, "target", v, 0.01, 0.99, &target);
    else if (!strcmp(a, "--seed")) rc = parse_num(cmd, "seed", v, 0, 1e15, &seed);
    else if (!strcmp(a, "--threads")) rc = parse_num(cmd, "threads", v, 0, 1024, &threads);
    else if (!strcmp(a, "--calib-students")) rc = parse_num(cmd, "calib-students", v, 1, 1e9, &cal_students);
    else if (!strcmp(a, "--meta-iterations")) rc = parse_num(cmd, "meta-iterations", v, 0, 1e9, &meta_iters);
    else if (!strcmp(a, "--meta-dim")) rc = parse_num(cmd, "meta-dim", v, 0, 256, &meta_dim);
    else if (!strcmp(a, "--learned")) rc = parse_num(cmd, "learned", v, 0, 100000, &sel_epochs);
    else if (!strcmp(a, "--selector-hidden")) rc = parse_num(cmd, "selector-hidden", v, 1, 256, &sel_hidden);
    else if (!strcmp(a, "--selector-lr")) rc = parse_num(cmd, "selector-lr", v, 1e-6, 10, &sel_lr);
    else if (!strcmp(a, "--selector-rollouts")) rc = parse_num(cmd, "selector-rollouts", v, 2, 1000, &sel_rollouts);
    else if (!strcmp(a, "--selector-joint")) rc = parse_num(cmd, "selector-joint", v, 0, 1, &sel_joint);
    else if (!strcmp(a, "--selector-l2")) rc = parse_num(cmd, "selector-l2", v, 0, 1e6, &sel_l2);
    else if (!strcmp(a, "--save-selector")) selector_out = v;
    else if (!strcmp(a, "--selector")) selector_in = v;
    else {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --help)\n", cmd, a);
      return 2;
    }
    if (rc) return rc;
  }
  sc.epochs = (int64_t)sel_epochs, sc.hidden = (int64_t)sel_hidden, sc.lr = (float)sel_lr;
  sc.rollouts = (int64_t)sel_rollouts, sc.seed = (uint64_t)seed, sc.threads = (int)threads, sc.verbose = !quiet;
  sc.student_l2 = (float)sel_l2;
  bool learned = sel_epochs > 0 || selector_in;
  if (selector_out && sel_epochs <= 0) {
    fprintf(stderr, "metalearn %s: --save-selector needs --learned N\n", cmd);
    return 2;
  }
  if (!dataset) {
    fprintf(stderr, "metalearn %s: --dataset is required\n", cmd);
    return 2;
  }
  ml_practice_protocol_config pc = ml_practice_protocol_defaults();
  if ((pc.n_ns = parse_ints(ns_s, pc.ns, 8)) < 1) {
    fprintf(stderr, "metalearn %s: bad --ns '%s'\n", cmd, ns_s);
    return 2;
  }
  pc.resamples = (int64_t)resamples, pc.target = (float)target, pc.seed = (uint64_t)seed, pc.threads = (int)threads;
  ml_student_kind kinds[8];
  bool learn_prior[8] = {false};
  int n_kinds = 0;
  char mbuf[256];
  snprintf(mbuf, sizeof mbuf, "%s", models);
  for (char *tok = strtok(mbuf, ","); tok; tok = strtok(NULL, ",")) {
    ml_status st;
    char *plus = n_kinds < 8 ? strstr(tok, "+prior") : NULL;
    if (plus && !plus[6]) *plus = 0, learn_prior[n_kinds] = true;
    if (n_kinds == 8 || (st = ml_student_kind_parse(tok, &kinds[n_kinds])) || kinds[n_kinds] == ML_STUDENT_META ||
        (learn_prior[n_kinds] && kinds[n_kinds] != ML_STUDENT_IRT1)) {
      fprintf(stderr, "metalearn %s: bad --models entry '%s%s' (irt1, irt1+prior, irt2, elo, difficulty; meta via "
                      "--model-file)\n", cmd, tok, plus ? "+prior" : "");
      return 2;
    }
    n_kinds++;
  }
  ml_kt_dataset d;
  char label[256];
  ml_status st = ml_students_dataset_open(dataset, data_dir, 0, &d, label, sizeof label);
  if (st) return fail(cmd, st);
  ml_answers fa;
  if ((st = ml_practice_first_attempts(&d.train, &fa))) {
    ml_kt_dataset_free(&d);
    return fail(cmd, st);
  }
  ml_kt_dataset fold;
  ml_answers fold_fa;
  memset(&fold, 0, sizeof fold), memset(&fold_fa, 0, sizeof fold_fa);
  if (ml_students_dataset_open(dataset, data_dir, 1, &fold, NULL, 0) == ML_OK && fold.valid.n_students > 0)
    st = ml_practice_first_attempts(&fold.train, &fold_fa);
  if (st) {
    ml_answers_free(&fa), ml_kt_dataset_free(&fold), ml_kt_dataset_free(&d);
    return fail(cmd, st);
  }
  const ml_practice_variant vars[] = {{ML_PRACTICE_RANDOM, false, false},
                                      {ML_PRACTICE_INFO, false, false},
                                      {ML_PRACTICE_TARGET, false, false},
                                      {ML_PRACTICE_TARGET, true, false},
                                      {ML_PRACTICE_TARGET, true, true},
                                      {ML_PRACTICE_LEARNED, false, false}};
  const int NV = learned ? 6 : 5;
  char *tbuf = NULL;
  size_t tlen = 0;
  FILE *tf = open_memstream(&tbuf, &tlen);
  int rc = 0;
  int n_meta = meta_iters > 0 ? 1 : 0;
  for (int mi = 0; mi < n_kinds + n_meta + (model_file ? 1 : 0) && !rc; mi++) {
    ml_student_model *m = NULL;
    char name[ML_PATH_MAX + 64];
    double t0 = ml_now();
    if (mi == n_kinds && n_meta) {
      /* meta-trained on the protocol's tasks: the support is a random subset of a student's first
       * attempts (what the random policy picks), so each training student's first attempts are
       * replicated in 3 seeded random orders and the support is the first 5 of an order; order
       * features are off (the order is random) */
      ml_answers sh;
      memset(&sh, 0, sizeof sh);
      st = shuffled_copies(&fa, 3, pc.seed, &sh);
      ml_student_config c = ml_student_defaults(ML_STUDENT_META);
      c.dim = (int64_t)meta_dim, c.order_features = false, c.skill_order = false, c.k_train = 5;
      c.iterations = (int64_t)meta_iters, c.eval_every = 0, c.threads = pc.threads, c.seed = pc.seed, c.verbose = !quiet;
      snprintf(name, sizeof name, "meta:metasgd d%lld on protocol tasks (%lld iterations)", (long long)c.dim,
               (long long)c.iterations);
      if (!st) st = ml_student_model_fit(&c, d.n_items, d.n_skills, &d.q, &sh, NULL, &m);
      ml_answers_free(&sh);
    } else if (mi < n_kinds) {
      ml_student_config c = ml_student_defaults(kinds[mi]);
      c.threads = pc.threads;
      snprintf(name, sizeof name, "%s (first attempts)", ml_student_kind_name(kinds[mi]));
      st = ml_student_model_fit(&c, d.n_items, d.n_skills, &d.q, &fa, NULL, &m);
    } else {
      snprintf(name, sizeof name, "%s", model_file);
      st = ml_student_model_load(model_file, pc.threads, &m);
    }
    if (st) {
      rc = fail(cmd, st);
      break;
    }
    double fit_s = ml_now() - t0;
    ml_practice_calib_steps cal;
    t0 = ml_now();
    /* The learned ability prior (irt1+prior) is cross-fitted: learned on fold 1's validation
     * students for the 1PL fitted on fold 1's training students (without folds: the training
     * students themselves). */
    float prior_sd = 1.0f;
    if (mi < n_kinds && learn_prior[mi]) {
      if (fold_fa.n_students > 0) {
        ml_student_config c = ml_student_defaults(kinds[mi]);
        c.threads = pc.threads;
        ml_student_model *m1 = NULL;
        st = ml_student_model_fit(&c, fold.n_items, fold.n_skills, &fold.q, &fold_fa, NULL, &m1);
        if (!st) st = learn_prior_into(m1, &fold.valid, &pc, &prior_sd, &m);
        ml_student_model_free(m1);
      } else {
        st = learn_prior_into(m, &d.train, &pc, &prior_sd, &m);
      }
    }
    /* Cross-fitted calibration: a model calibrated on the students it was fitted on looks better
     * calibrated than it is on new ones, so the training students are split in 5 groups, each
     * steered by the same kind of model fitted on the other 4 (with the learned prior), and the
     * picks of all 5 are pooled into one fit. */
    if (!st && mi < n_kinds) st = xfit_calibration(kinds[mi], prior_sd, &d, &fa, &pc, (int64_t)cal_students, &cal);
    else if (!st) st = ml_practice_fit_target_calibration(m, &fa, &pc, (int64_t)cal_students, &cal);
    if (!st && mi < n_kinds && learn_prior[mi]) {
      size_t L = strlen(name);
      snprintf(name + L, sizeof name - L, ", learned ability prior sd %.3f", prior_sd);
    }
    if (st) {
      ml_student_model_free(m);
      rc = fail(cmd, st);
      break;
    }
    double cal_s = ml_now() - t0;
    /* the learned policy: trained for this student model on training students only (fold 1's
     * train, fold 1's valid picking the epoch), or loaded */
    ml_practice_selector *sel = NULL;
    t0 = ml_now();
    if (selector_in) {
      st = ml_practice_selector_load(selector_in, &sel);
      if (!st && ml_practice_selector_n_items(sel) != d.n_items)
        st = ml_error(ML_ERR_FORMAT, "%s: %lld exercises, the dataset has %lld", selector_in,
                      (long long)ml_practice_selector_n_items(sel), (long long)d.n_items);
    } else if (learned) {
      bool f1 = fold.valid.n_students > 0;
      sc.joint = sel_joint < 0 ? ml_student_model_config(m)->kind == ML_STUDENT_IRT1 : sel_joint > 0;
      st = ml_practice_selector_train(m, f1 ? &fold.train : &d.train, f1 ? &fold.valid : NULL, &pc, &sc, &sel);
      if (!st && selector_out) st = ml_practice_selector_save(sel, selector_out);
    }
    double sel_s = ml_now() - t0;
    ml_student_model *jm = NULL; /* the learned policy's own 1PL when trained jointly */
    if (!st && sel) st = ml_practice_selector_student(sel, m, &jm);
    if (st) {
      ml_practice_selector_free(sel), ml_student_model_free(m);
      rc = fail(cmd, st);
      break;
    }
    pc.selector = sel, pc.selector_model = jm;
    ml_practice_cell cells[6 * 8];
    t0 = ml_now();
    st = ml_practice_protocol(m, &d.test, &pc, vars, NV, &cal, cells);
    double eval_s = ml_now() - t0;
    pc.selector = NULL, pc.selector_model = NULL;
    bool joint = jm != NULL;
    float joint_sd = jm ? ml_student_model_config(jm)->ability_sd : 1.0f;
    ml_student_model_free(jm);
    ml_student_model_free(m);
    if (st) {
      rc = fail(cmd, st);
      break;
    }
    char title[ML_PATH_MAX + 512];
    snprintf(title, sizeof title, "%s, %s, %lld resamples, target %.2f", label, name, (long long)pc.resamples, target);
    FILE *outs[2] = {stdout, tf}; /* the terminal and the --out table get the same text */
    for (int k = 0; k < 2 && outs[k]; k++) {
      FILE *f = outs[k];
      ml_practice_table_print(f, title, cells, NV, pc.n_ns);
      fprintf(f, "\ncalibration p' = sigmoid(a logit(p) + b) after 0, 1, ... answers: a, b =");
      for (int t = 0; t < cal.n; t++) fprintf(f, " %.2f %+.2f;", cal.step[t].slope, cal.step[t].intercept);
      fprintf(f, "\ncalibration %s: worst |observed success - target| over n on the training students %.3f raw, %.3f calibrated",
              cal.kept ? "kept" : "not used (identity)", cal.worst_raw, cal.worst_calibrated);
      if (sel)
        fprintf(f, "\nlearned policy%s: epoch %lld kept (0 = maximum information), valid AUC %.4f, trained in %.1f s",
                joint ? " (trained jointly with its 1PL)" : "", (long long)ml_practice_selector_best_epoch(sel),
                ml_practice_selector_valid_score(sel), sel_s);
      if (joint) fprintf(f, "; its 1PL's learned ability prior sd %.3f", joint_sd);
      fprintf(f, "\nwall: fit %.1f s, calibration %.1f s, protocol %.1f s\n\n", fit_s, cal_s, eval_s);
    }
    fflush(stdout);
    if (!quiet) fprintf(stderr, "metalearn %s: %s done in %.1f s\n", cmd, name, fit_s + cal_s + sel_s + eval_s);
    ml_practice_selector_free(sel);
  }
  if (tf) fclose(tf);
  if (!rc && out_path && tbuf && (st = ml_write_file_atomic(out_path, tbuf, tlen))) rc = fail(cmd, st);
  free(tbuf);
  ml_answers_free(&fa), ml_answers_free(&fold_fa);
  ml_kt_dataset_free(&d), ml_kt_dataset_free(&fold);
  return rc;
}

/* ------------------------------------------------------------------- next ---- */

/* The student's answers: exercise indices and 0/1, grown as lines are read. */
typedef struct {
  int32_t *item, *skill;
  uint8_t *correct;
  int64_t n, cap;
} log_t;

static int log_push(log_t *l, int32_t item, int32_t skill, uint8_t y) {
  if (l->n == l->cap) {
    int64_t c = l->cap ? 2 * l->cap : 64;
    int32_t *a = realloc(l->item, (size_t)c * sizeof *a);
    if (a) l->item = a;
    int32_t *b = realloc(l->skill, (size_t)c * sizeof *b);
    if (b) l->skill = b;
    uint8_t *y2 = realloc(l->correct, (size_t)c);
    if (y2) l->correct = y2;
    if (!a || !b || !y2) return -1;
    l->cap = c;
  }
  l->item[l->n] = item, l->skill[l->n] = skill, l->correct[l->n] = y, l->n++;
  return 0;
}

/* Splits line (modified in place) at commas into at most max fields; returns the count, or -1
 * when there are more. A trailing comma (the KT files have them) adds no field. */
static int64_t split_commas(char *line, char **f, int64_t max) {
  int64_t n = 0;
  char *p = line;
  if (!*p) return 0;
  for (;;) {
    if (n == max) return -1;
    f[n++] = p;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = 0;
    p = c + 1;
    if (!*p) break;
  }
  return n;
}

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

/* Reads a student's answer log: the three-line KT format (any number of length / ids / answers
 * triples, appended in order) or a long CSV with a header row (columns item_col and "correct",
 * rows in order). Errors: "<file>:<line>: <what>", returned as 2. */
static int read_log(const char *path, const ml_kt_dataset *d, const char *item_col, log_t *out) {
  size_t len = 0;
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "metalearn next: %s: %s\n", path, strerror(errno));
    return 2;
  }
  if (fseek(f, 0, SEEK_END) == 0) {
    long sz = ftell(f);
    if (sz < 0 || (unsigned long)sz > ML_ANSWERS_MAX_BYTES) {
      fclose(f);
      fprintf(stderr, "metalearn next: %s: too large or unreadable\n", path);
      return 2;
    }
    len = (size_t)sz;
    rewind(f);
  }
  buf = malloc(len + 1);
  if (!buf || fread(buf, 1, len, f) != len) {
    fclose(f), free(buf);
    fprintf(stderr, "metalearn next: %s: cannot read\n", path);
    return 2;
  }
  fclose(f);
  buf[len] = 0;
  if (memchr(buf, 0, len)) {
    free(buf);
    fprintf(stderr, "metalearn next: %s:1: binary data (NUL byte)\n", path);
    return 2;
  }
  /* lines */
  int64_t n_lines = 0, cap = 0;
  char **lines = NULL;
  for (char *p = buf; *p;) {
    if (n_lines == cap) {
      cap = cap ? 2 * cap : 256;
      char **nl = realloc(lines, (size_t)cap * sizeof *nl);
      if (!nl) {
        free(lines), free(buf);
        fprintf(stderr, "metalearn next: out of memory\n");
        return 2;
      }
      lines = nl;
    }
    lines[n_lines++] = p;
    char *e = strchr(p, '\n');
    if (!e) break;
    *e = 0;
    p = e + 1;
  }
  for (int64_t i = 0; i < n_lines; i++) trim(lines[i]);
  while (n_lines && !lines[n_lines - 1][0]) n_lines--; /* blank lines at the end */
  int rc = 0;
  int64_t maxf = d->n_items + 16;
  char **fields = malloc((size_t)(maxf > 64 ? maxf : 64) * sizeof *fields);
  char **f2 = malloc((size_t)(maxf > 64 ? maxf : 64) * sizeof *f2);
#define LOG_ERR(ln, ...)                                                    \
  do {                                                                      \
    fprintf(stderr, "metalearn next: %s:%lld: ", path, (long long)(ln) + 1); \
    fprintf(stderr, __VA_ARGS__);                                           \
    fprintf(stderr, "\n");                                                  \
    rc = 2;                                                                 \
  } while (0)
  bool csv = n_lines > 0 && strpbrk(lines[0], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_") != NULL;
  if (!fields || !f2) {
    fprintf(stderr, "metalearn next: out of memory\n");
    rc = 2;
  } else if (csv) {
    int64_t nh = split_commas(lines[0], fields, 64), ci = -1, cc = -1;
    for (int64_t k = 0; k < nh; k++) {
      if (!strcmp(fields[k], item_col)) ci = k;
      if (!strcmp(fields[k], "correct")) cc = k;
    }
    if (nh < 0) LOG_ERR(0, "too many columns");
    else if (ci < 0 || cc < 0) LOG_ERR(0, "header lacks the column '%s'", ci < 0 ? item_col : "correct");
    for (int64_t ln = 1; !rc && ln < n_lines; ln++) {
      int64_t nf = split_commas(lines[ln], fields, 64);
      if (nf != nh) {
        LOG_ERR(ln, "%lld fields, the header has %lld", (long long)nf, (long long)nh);
        break;
      }
      const char *id = fields[ci], *y = fields[cc];
      int64_t j = ml_idmap_find(&d->items, id, strlen(id));
      if (j < 0) LOG_ERR(ln, "unknown exercise id '%.64s'", id);
      else if (strcmp(y, "0") && strcmp(y, "1")) LOG_ERR(ln, "correct must be 0 or 1, not '%.32s'", y);
      else if (log_push(out, (int32_t)j, -1, (uint8_t)(y[0] - '0'))) LOG_ERR(ln, "out of memory");
    }
  } else {
    for (int64_t ln = 0; !rc && ln < n_lines; ln += 3) {
      char *end;
      errno = 0;
      long long L = strtoll(lines[ln], &end, 10);
      if (end == lines[ln] || *end || errno || L < 0) {
        LOG_ERR(ln, "expected the number of answers, got '%.32s'", lines[ln]);
        break;
      }
      if (ln + 2 >= n_lines) {
        LOG_ERR(ln, "a length line needs an ids line and an answers line after it");
        break;
      }
      /* fields of a line are at most its length + 1: a hostile length allocates nothing */
      int64_t need = (int64_t)strlen(lines[ln + 1]) + (int64_t)strlen(lines[ln + 2]) + 2;
      if (L > need) L = need; /* the split below then reports the mismatch */
      if (need > maxf) {
        char **a1 = realloc(fields, (size_t)need * sizeof *a1);
        if (a1) fields = a1;
        char **a2 = realloc(f2, (size_t)need * sizeof *a2);
        if (a2) f2 = a2;
        if (!a1 || !a2) {
          LOG_ERR(ln, "out of memory");
          break;
        }
        maxf = need;
      }
      long long L0 = strtoll(lines[ln], NULL, 10);
      int64_t ni = split_commas(lines[ln + 1], fields, L + 1), na = split_commas(lines[ln + 2], f2, L + 1);
      if (ni != L) {
        LOG_ERR(ln + 1, "%s ids, the length line says %lld", ni < 0 ? "more" : "fewer", L0);
        break;
      }
      if (na != L) {
        LOG_ERR(ln + 2, "%s answers, the length line says %lld", na < 0 ? "more" : "fewer", L0);
        break;
      }
      for (int64_t k = 0; k < L && !rc; k++) {
        int64_t j = ml_idmap_find(&d->items, fields[k], strlen(fields[k]));
        if (j < 0) LOG_ERR(ln + 1, "unknown exercise id '%.64s'", fields[k]);
        else if (strcmp(f2[k], "0") && strcmp(f2[k], "1")) LOG_ERR(ln + 2, "answer must be 0 or 1, not '%.32s'", f2[k]);
        else if (log_push(out, (int32_t)j, -1, (uint8_t)(f2[k][0] - '0'))) LOG_ERR(ln, "out of memory");
      }
    }
  }
#undef LOG_ERR
  free(fields), free(f2), free(lines), free(buf);
  return rc;
}

/* "key = value" from RUN/students.ini into val (empty when absent). */
static int ini_value(const char *run, const char *key, char *val, size_t cap) {
  char path[ML_PATH_MAX + 32], line[2048];
  snprintf(path, sizeof path, "%s/students.ini", run);
  val[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "metalearn next: %s: %s (not a students run: metalearn train --dataset ... --run DIR)\n", path,
            strerror(errno));
    return 2;
  }
  size_t kl = strlen(key);
  while (fgets(line, sizeof line, f)) {
    trim(line);
    if (!strncmp(line, key, kl) && !strncmp(line + kl, " = ", 3)) snprintf(val, cap, "%s", line + kl + 3);
  }
  fclose(f);
  return 0;
}

typedef struct {
  float score;
  int32_t j;
} cand_t;

static int cmp_cand(const void *a, const void *b) {
  const cand_t *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->j - y->j;
}

static const char *skill_name(const ml_kt_dataset *d, int64_t k, char *buf, size_t cap) {
  if (k < 0) return "-";
  if (d->ids_are_skills && k < d->items.n) return d->items.names[k];
  if (k < d->skills.n) return d->skills.names[k];
  snprintf(buf, cap, "%lld", (long long)k);
  return buf;
}

/* JSON string body: ids are digits and letters, but escape what could break the document. */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

int ml_cli_next(int argc, char **argv) {
  const char *cmd = "next", *run = NULL, *answers = NULL, *model_name = "irt1", *policy_s = "target";
  const char *item_col = NULL, *selector_path = NULL;
  bool policy_given = false;
  double target = 0.7, count = 5, levels_n = 3, up = 0.75, down = 0.6, seed = 1;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: metalearn next --run DIR --answers FILE [--target 0.7] [--count 5] [--policy random|info|target|learned] [--json]\n\n"
             "Reads one student's answer log (the three-line knowledge-tracing format: length, exercise ids, 0/1\n"
             "answers, any number of such triples appended in order; or a CSV with a header naming the exercise\n"
             "column and 'correct'), adapts the run's student model to it and prints the student's mastery per\n"
             "skill, the current level of each group of the learning hierarchy, the strongest and weakest skills\n"
             "with their evidence, and the next exercises with predicted success and level. An empty log gives\n"
             "population-level recommendations at the lowest level. Append new answers to FILE and run again.\n\n"
             "options:\n"
             "  --run DIR        a students run (metalearn train --dataset ... --run DIR)\n"
             "  --answers FILE   the student's answer log\n"
             "  --model NAME     DIR/NAME.safetensors (irt1; irt2, elo, meta_metasgd_k10, ...) or a path\n"
             "  --policy P       random | info | target | learned (target)\n"
             "  --selector FILE  the learned policy's network (metalearn practice-eval --learned N --save-selector\n"
             "                   FILE); implies --policy learned\n"
             "  --target P       success to aim at (0.7); target mode is calibrated on training students\n"
             "  --count N        exercises to recommend (5)\n"
             "  --levels N       difficulty levels (3); --up 0.75 / --down 0.6 mastery thresholds\n"
             "  --item-col NAME  CSV column of the exercise id (skill_id when the dataset's ids are skills, else problem_id)\n"
             "  --seed N, --json\n");
      return 0;
    }
    if (!strcmp(a, "--json")) {
      json = true;
      continue;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2)) {
      fprintf(stderr, "metalearn %s: unexpected argument '%s' (see --help)\n", cmd, a);
      return 2;
    }
    const char *v = argv[++i];
    int rc = 0;
    if (!strcmp(a, "--run")) run = v;
    else if (!strcmp(a, "--answers")) answers = v;
    else if (!strcmp(a, "--model")) model_name = v;
    else if (!strcmp(a, "--policy")) policy_s = v, policy_given = true;
    else if (!strcmp(a, "--selector")) selector_path = v;
    else if (!strcmp(a, "--item-col")) item_col = v;
    else if (!strcmp(a, "--target")) rc = parse_num(cmd, "target", v, 0.01, 0.99, &target);
    else if (!strcmp(a, "--count")) rc = parse_num(cmd, "count", v, 1, 100000, &count);
    else if (!strcmp(a, "--levels")) rc = parse_num(cmd, "levels", v, 1, 100, &levels_n);
    else if (!strcmp(a, "--up")) rc = parse_num(cmd, "up", v, 0, 1, &up);
    else if (!strcmp(a, "--down")) rc = parse_num(cmd, "down", v, 0, 1, &down);
    else if (!strcmp(a, "--seed")) rc = parse_num(cmd, "seed", v, 0, 1e15, &seed);
    else {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --help)\n", cmd, a);
      return 2;
    }
    if (rc) return rc;
  }
  if (!run || !answers) {
    fprintf(stderr, "metalearn %s: --run and --answers are required\n", cmd);
    return 2;
  }
  if (selector_path && !policy_given) policy_s = "learned";
  ml_practice_policy pol;
  ml_status st = ml_practice_policy_parse(policy_s, &pol);
  if (st) return fail(cmd, st);
  if ((pol == ML_PRACTICE_LEARNED) != (selector_path != NULL)) {
    fprintf(stderr, "metalearn %s: %s\n", cmd,
            selector_path ? "--selector is the learned policy's network: use it with --policy learned"
                          : "--policy learned needs --selector FILE (metalearn practice-eval --learned N --save-selector FILE)");
    return 2;
  }
  char dataset[512], data_dir[1024];
  if (ini_value(run, "dataset", dataset, sizeof dataset) || ini_value(run, "data_dir", data_dir, sizeof data_dir))
    return 2;
  if (!dataset[0]) {
    fprintf(stderr, "metalearn %s: %s/students.ini names no dataset\n", cmd, run);
    return 2;
  }
  ml_kt_dataset d;
  char label[256];
  if ((st = ml_students_dataset_open(dataset, data_dir[0] ? data_dir : NULL, 0, &d, label, sizeof label)))
    return fail(cmd, st);
  char mpath[ML_PATH_MAX + 64];
  if (strchr(model_name, '/') || strstr(model_name, ".safetensors")) snprintf(mpath, sizeof mpath, "%s", model_name);
  else snprintf(mpath, sizeof mpath, "%s/%s.safetensors", run, model_name);
  ml_student_model *m = NULL;
  ml_practice_selector *sel = NULL;
  log_t lg;
  memset(&lg, 0, sizeof lg);
  int rc = read_log(answers, &d, item_col ? item_col : d.ids_are_skills ? "skill_id" : "problem_id", &lg);
  if (rc) {
    ml_kt_dataset_free(&d);
    free(lg.item), free(lg.skill), free(lg.correct);
    return rc;
  }
  if ((st = ml_student_model_load(mpath, 1, &m))) {
    ml_kt_dataset_free(&d);
    free(lg.item), free(lg.skill), free(lg.correct);
    return fail(cmd, st);
  }
  int64_t J = ml_student_model_n_items(m), K = ml_student_model_n_skills(m), L = (int64_t)levels_n;
  int32_t *item_skill = malloc((size_t)J * sizeof *item_skill);
  float *b = malloc((size_t)J * sizeof *b), *p = malloc((size_t)J * sizeof *p);
  float *mast = malloc((size_t)(K ? K : 1) * sizeof *mast);
  int64_t *n_ans = calloc((size_t)(K ? K : 1), sizeof *n_ans), *n_right = calloc((size_t)(K ? K : 1), sizeof *n_right);
  bool *done_right = calloc((size_t)J, sizeof *done_right);
  cand_t *cand = malloc((size_t)J * sizeof *cand);
  ml_arena *arena = ml_arena_new(0, NULL);
  ml_practice_levels lv;
  memset(&lv, 0, sizeof lv);
  int32_t *level = NULL;
  char *obuf = NULL;
  size_t olen = 0;
  FILE *o = NULL;
  if (!item_skill || !b || !p || !mast || !n_ans || !n_right || !done_right || !cand || !arena) {
    st = ml_error(ML_ERR_NOMEM, "next: out of memory");
    goto out;
  }
  if (J != d.n_items) {
    st = ml_error(ML_ERR_FORMAT, "%s: %lld exercises, the dataset %s has %lld", mpath, (long long)J, label,
                  (long long)d.n_items);
    goto out;
  }
  if (selector_path) {
    if ((st = ml_practice_selector_load(selector_path, &sel))) goto out;
    if (ml_practice_selector_n_items(sel) != J) {
      st = ml_error(ML_ERR_FORMAT, "%s: %lld exercises, the dataset %s has %lld", selector_path,
                    (long long)ml_practice_selector_n_items(sel), label, (long long)J);
      goto out;
    }
    ml_student_model *jm = NULL; /* trained jointly: its 1PL predicts from now on */
    if ((st = ml_practice_selector_student(sel, m, &jm))) goto out;
    if (jm) ml_student_model_free(m), m = jm;
  }
  for (int64_t j = 0; j < J; j++)
    item_skill[j] = d.q.offsets && d.q.offsets[j + 1] > d.q.offsets[j] ? d.q.skills[d.q.offsets[j]] : -1;
  for (int64_t i = 0; i < lg.n; i++) {
    lg.skill[i] = item_skill[lg.item[i]];
    if (lg.skill[i] >= 0) n_ans[lg.skill[i]]++, n_right[lg.skill[i]] += lg.correct[i];
    if (lg.correct[i]) done_right[lg.item[i]] = true;
  }
  ml_student_model_difficulties(m, b);
  if ((st = ml_practice_levels_build(b, item_skill, J, K, L, &lv))) goto out;
  if (!(level = calloc((size_t)lv.n_groups, sizeof *level))) {
    st = ml_error(ML_ERR_NOMEM, "next: out of memory");
    goto out;
  }
  /* the learning path replays the log: one step after each answer */
  for (int64_t t = 1; t <= lg.n; t++) {
    ml_student_log sup = {lg.item, lg.skill, lg.correct, t};
    if ((st = ml_student_model_predict_pool(m, &sup, arena, p, NULL))) goto out;
    ml_practice_path_step(&lv, p, (float)up, (float)down, level);
  }
  ml_student_log sup = {lg.item, lg.skill, lg.correct, lg.n};
  if ((st = ml_student_model_predict_pool(m, &sup, arena, p, mast))) goto out;
  ml_practice_calib cal = ml_practice_calib_identity();
  if (pol == ML_PRACTICE_TARGET) { /* on training students, cross-fitted as practice-eval does */
    ml_practice_protocol_config pc = ml_practice_protocol_defaults();
    pc.target = (float)target, pc.threads = 1;
    ml_practice_calib_steps cs;
    const ml_student_config *mc = ml_student_model_config(m);
    if (mc->kind != ML_STUDENT_META) {
      ml_answers fa;
      if ((st = ml_practice_first_attempts(&d.train, &fa))) goto out;
      st = xfit_calibration(mc->kind, mc->ability_sd, &d, &fa, &pc, 300, &cs);
      ml_answers_free(&fa);
      if (st) goto out;
    } else if ((st = ml_practice_fit_target_calibration(m, &d.train, &pc, 300, &cs))) {
      goto out; /* a meta-learned model cannot be refitted here: its own training students */
    }
    cal = ml_practice_calib_at(&cs, lg.n);
  }
  /* candidates: exercises at their group's current level, not yet answered correctly (all of
   * the level's exercises when the student has answered every one of them correctly) */
  int64_t nc = 0;
  for (int pass = 0; pass < 2 && nc == 0; pass++)
    for (int64_t j = 0; j < J; j++)
      if (lv.item_level[j] == level[lv.item_group[j]] && (pass || !done_right[j])) cand[nc].j = (int32_t)j, nc++;
  ml_rng rng;
  ml_rng_init(&rng, (uint64_t)seed, (uint64_t)lg.n);
  if (sel) { /* the learned policy scores the candidates from the whole log */
    int32_t *ci = malloc((size_t)(nc ? nc : 1) * sizeof *ci);
    float *cp = malloc((size_t)(nc ? nc : 1) * sizeof *cp), *cs = malloc((size_t)(nc ? nc : 1) * sizeof *cs);
    if (!ci || !cp || !cs) st = ml_error(ML_ERR_NOMEM, "next: out of memory");
    for (int64_t c = 0; !st && c < nc; c++) ci[c] = cand[c].j, cp[c] = p[cand[c].j];
    if (!st) st = ml_practice_selector_scores(sel, &sup, ci, cp, nc, cs);
    for (int64_t c = 0; !st && c < nc; c++) cand[c].score = cs[c];
    free(ci), free(cp), free(cs);
    if (st) goto out;
  } else {
    for (int64_t c = 0; c < nc; c++) {
      float pp = p[cand[c].j];
      ml_practice_scores(pol, &pp, 1, (float)target, cal, &rng, &cand[c].score);
    }
  }
  qsort(cand, (size_t)nc, sizeof *cand, cmp_cand);
  int64_t show = nc < (int64_t)count ? nc : (int64_t)count;
  /* strongest / weakest skills among those the student answered */
  int64_t order_n = 0;
  cand_t *sk = malloc((size_t)(K ? K : 1) * sizeof *sk);
  if (!sk) {
    st = ml_error(ML_ERR_NOMEM, "next: out of memory");
    goto out;
  }
  for (int64_t k = 0; k < K; k++)
    if (n_ans[k] > 0 && isfinite(mast[k])) sk[order_n].score = mast[k], sk[order_n].j = (int32_t)k, order_n++;
  qsort(sk, (size_t)order_n, sizeof *sk, cmp_cand);
  int64_t top = order_n < 3 ? order_n : 3;
  char nb[32];
  o = open_memstream(&obuf, &olen);
  if (!o) {
    free(sk);
    st = ml_error(ML_ERR_NOMEM, "next: out of memory");
    goto out;
  }
  if (json) {
    fprintf(o, "{\"dataset\": \"%s\", \"model\": ", label);
    json_str(o, mpath);
    fprintf(o, ", \"answers\": %lld, \"policy\": \"%s\", \"target\": %.3f, \"levels\": %lld,\n \"mastery\": [", (long long)lg.n,
            ml_practice_policy_name(pol), target, (long long)L);
    bool first = true;
    for (int64_t k = 0; k < K; k++) {
      if (!isfinite(mast[k])) continue;
      fprintf(o, "%s\n  {\"skill\": ", first ? "" : ",");
      json_str(o, skill_name(&d, k, nb, sizeof nb));
      fprintf(o, ", \"mastery\": %.4f, \"answered\": %lld, \"correct\": %lld}", mast[k], (long long)n_ans[k],
              (long long)n_right[k]);
      first = false;
    }
    fprintf(o, "],\n \"level\": [");
    for (int64_t g = 0; g < lv.n_groups; g++) {
      fprintf(o, "%s{\"group\": ", g ? ", " : "");
      json_str(o, lv.group_skill[g] < 0 ? "shared" : skill_name(&d, lv.group_skill[g], nb, sizeof nb));
      fprintf(o, ", \"level\": %d}", level[g]);
    }
    fprintf(o, "],\n \"strongest\": [");
    for (int64_t i = 0; i < top; i++) {
      fprintf(o, "%s", i ? ", " : "");
      json_str(o, skill_name(&d, sk[i].j, nb, sizeof nb));
    }
    fprintf(o, "], \"weakest\": [");
    for (int64_t i = 0; i < top; i++) {
      fprintf(o, "%s", i ? ", " : "");
      json_str(o, skill_name(&d, sk[order_n - 1 - i].j, nb, sizeof nb));
    }
    fprintf(o, "],\n \"next\": [");
    for (int64_t i = 0; i < show; i++) {
      int32_t j = cand[i].j;
      fprintf(o, "%s\n  {\"exercise\": ", i ? "," : "");
      json_str(o, d.items.names[j]);
      fprintf(o, ", \"skill\": ");
      json_str(o, skill_name(&d, item_skill[j], nb, sizeof nb));
      fprintf(o, ", \"predicted\": %.4f, \"level\": %d}", ml_practice_calibrate(cal, p[j]), lv.item_level[j]);
    }
    fprintf(o, "]}\n");
  } else {
    fprintf(o, "student: %lld answers (%s), model %s on %s\n", (long long)lg.n, answers, mpath, label);
    if (lg.n == 0) fprintf(o, "empty log: population-level recommendations at the lowest level\n");
    fprintf(o, "\nmastery per skill (mean predicted success over the skill's exercises; answered / correct):\n");
    for (int64_t k = 0; k < K; k++)
      if (isfinite(mast[k]) && (n_ans[k] > 0 || K <= 20))
        fprintf(o, "  skill %-12s %.3f  %lld / %lld\n", skill_name(&d, k, nb, sizeof nb), mast[k], (long long)n_ans[k],
                (long long)n_right[k]);
    fprintf(o, "\nlevels (0 = easiest of %lld):", (long long)L);
    for (int64_t g = 0; g < lv.n_groups; g++)
      fprintf(o, " %s%s=%d", lv.group_skill[g] < 0 ? "shared" : "skill ",
              lv.group_skill[g] < 0 ? "" : skill_name(&d, lv.group_skill[g], nb, sizeof nb), level[g]);
    fprintf(o, "\n");
    if (order_n > 0) {
      fprintf(o, "\nstrongest:");
      for (int64_t i = 0; i < top; i++)
        fprintf(o, " %s (%.2f, %lld/%lld right)", skill_name(&d, sk[i].j, nb, sizeof nb), sk[i].score,
                (long long)n_right[sk[i].j], (long long)n_ans[sk[i].j]);
      fprintf(o, "\nweakest:  ");
      for (int64_t i = 0; i < top; i++) {
        const cand_t *w = &sk[order_n - 1 - i];
        fprintf(o, " %s (%.2f, %lld/%lld right)", skill_name(&d, w->j, nb, sizeof nb), w->score,
                (long long)n_right[w->j], (long long)n_ans[w->j]);
      }
      fprintf(o, "\n");
    }
    fprintf(o, "\nnext exercises (policy %s%s):\n", ml_practice_policy_name(pol),
            pol == ML_PRACTICE_TARGET ? ", calibrated" : "");
    for (int64_t i = 0; i < show; i++) {
      int32_t j = cand[i].j;
      fprintf(o, "  exercise %-10s skill %-10s predicted %.3f  level %d\n", d.items.names[j],
              skill_name(&d, item_skill[j], nb, sizeof nb), ml_practice_calibrate(cal, p[j]), lv.item_level[j]);
    }
  }
  free(sk);
  fclose(o);
  o = NULL;
  fwrite(obuf, 1, olen, stdout);
out:
  if (o) fclose(o);
  free(obuf);
  if (st) rc = fail(cmd, st);
  ml_practice_levels_free(&lv);
  free(level), free(item_skill), free(b), free(p), free(mast), free(n_ans), free(n_right), free(done_right), free(cand);
  ml_arena_free(arena);
  ml_student_model_free(m);
  ml_practice_selector_free(sel);
  free(lg.item), free(lg.skill), free(lg.correct);
  ml_kt_dataset_free(&d);
  return rc;
}

/* ------------------------------------------------------------ skill-graph ---- */

int ml_cli_skill_graph(int argc, char **argv) {
  const char *cmd = "skill-graph", *dataset = NULL, *data_dir = NULL, *run = NULL, *model_name = "irt1", *out = NULL;
  double top = 30, epochs = 10, max_seconds = 300, hidden = 100, threads = 1, seed = 1;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: metalearn skill-graph (--dataset NAME | --run DIR [--model NAME]) --out PREFIX [options]\n\n"
             "The influence of each skill on the others (Piech et al. 2015): J[a][b] = predicted success on b after\n"
             "one correct answer on a, normalised over a. With --dataset, from a DKT trained here on train1 (early\n"
             "stop on valid1); with --run, from the run's student model. Writes PREFIX.dot and PREFIX.json (the\n"
             "strongest links and each skill's strongest prerequisite) and prints the strongest links.\n\n"
             "options:\n"
             "  --top N          links kept (30)\n"
             "  --epochs N       DKT epochs at most (10); --max-seconds S (300); --hidden N (100)\n"
             "  --data_dir DIR, --threads N (1), --seed N, --quiet\n");
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      quiet = true;
      continue;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2)) {
      fprintf(stderr, "metalearn %s: unexpected argument '%s' (see --help)\n", cmd, a);
      return 2;
    }
    const char *v = argv[++i];
    int rc = 0;
    if (!strcmp(a, "--dataset")) dataset = v;
    else if (!strcmp(a, "--data_dir")) data_dir = v;
    else if (!strcmp(a, "--run")) run = v;
    else if (!strcmp(a, "--model")) model_name = v;
    else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--top")) rc = parse_num(cmd, "top", v, 1, 100000, &top);
    else if (!strcmp(a, "--epochs")) rc = parse_num(cmd, "epochs", v, 1, 10000, &epochs);
    else if (!strcmp(a, "--max-seconds")) rc = parse_num(cmd, "max-seconds", v, 0, 1e7, &max_seconds);
    else if (!strcmp(a, "--hidden")) rc = parse_num(cmd, "hidden", v, 1, 4096, &hidden);
    else if (!strcmp(a, "--threads")) rc = parse_num(cmd, "threads", v, 1, 1024, &threads);
    else if (!strcmp(a, "--seed")) rc = parse_num(cmd, "seed", v, 0, 1e15, &seed);
    else {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --help)\n", cmd, a);
      return 2;
    }
    if (rc) return rc;
  }
  if (!out || (!dataset == !run)) {
    fprintf(stderr, "metalearn %s: --out and one of --dataset or --run are required\n", cmd);
    return 2;
  }
  char ds[512], dd[1024];
  if (run) {
    if (ini_value(run, "dataset", ds, sizeof ds) || ini_value(run, "data_dir", dd, sizeof dd)) return 2;
    dataset = ds, data_dir = dd[0] ? dd : NULL;
  }
  ml_kt_dataset d;
  char label[256];
  ml_status st = ml_students_dataset_open(dataset, data_dir, run ? 0 : 1, &d, label, sizeof label);
  if (st) return fail(cmd, st);
  int64_t J = d.n_items, K = d.n_skills;
  float *ij = NULL, *sj = malloc((size_t)(K * K + 1) * sizeof *sj), *b = malloc((size_t)J * sizeof *b);
  int32_t *item_skill = malloc((size_t)J * sizeof *item_skill);
  const char **names = calloc((size_t)(K + 1), sizeof *names);
  char (*nbuf)[32] = calloc((size_t)(K + 1), sizeof *nbuf);
  ml_student_model *m = NULL;
  ml_dkt *dk = NULL;
  double t0 = ml_now();
  if (!sj || !b || !item_skill || !names || !nbuf) st = ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
  for (int64_t j = 0; !st && j < J; j++)
    item_skill[j] = d.q.offsets && d.q.offsets[j + 1] > d.q.offsets[j] ? d.q.skills[d.q.offsets[j]] : -1;
  for (int64_t k = 0; !st && k < K; k++) names[k] = skill_name(&d, k, nbuf[k], sizeof nbuf[k]);
  if (!st && run) {
    char mpath[ML_PATH_MAX + 64];
    if (strchr(model_name, '/') || strstr(model_name, ".safetensors")) snprintf(mpath, sizeof mpath, "%s", model_name);
    else snprintf(mpath, sizeof mpath, "%s/%s.safetensors", run, model_name);
    st = ml_student_model_load(mpath, (int)threads, &m);
    if (!st && ml_student_model_n_items(m) != J)
      st = ml_error(ML_ERR_FORMAT, "%s: %lld exercises, the dataset has %lld", mpath,
                    (long long)ml_student_model_n_items(m), (long long)J);
    if (!st) {
      ml_student_model_difficulties(m, b);
      st = ml_practice_skill_influence(m, item_skill, b, NULL, sj);
    }
  } else if (!st) {
    ml_dkt_config c = ml_dkt_defaults();
    c.n_items = J, c.hidden = (int64_t)hidden, c.max_epochs = (int64_t)epochs, c.max_seconds = max_seconds;
    c.threads = (int)threads, c.seed = (uint64_t)seed, c.verbose = !quiet;
    ml_dkt_stats ds_;
    if (!(ij = malloc((size_t)(J * J) * sizeof *ij))) st = ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
    if (!st) st = ml_dkt_new(&c, &dk);
    if (!st) st = ml_dkt_train(dk, &d.train, &d.valid, &ds_);
    if (!st && !quiet)
      fprintf(stderr, "metalearn %s: DKT %lld epochs, best valid AUC %.4f (epoch %lld), %.1f s\n", cmd,
              (long long)ds_.epochs, ds_.best_valid_auc, (long long)ds_.best_epoch, ds_.seconds);
    if (!st) st = ml_dkt_influence(dk, ij);
    if (!st) st = ml_practice_skill_matrix(ij, J, item_skill, K, sj);
  }
  char dot[ML_PATH_MAX + 16], js[ML_PATH_MAX + 16];
  snprintf(dot, sizeof dot, "%s.dot", out);
  snprintf(js, sizeof js, "%s.json", out);
  if (!st) st = ml_practice_graph_write(dot, js, sj, K, names, (int64_t)top);
  int rc = 0;
  if (st) rc = fail(cmd, st);
  else {
    ml_practice_link links[10];
    int64_t n = ml_practice_top_links(sj, K, 10, links);
    printf("%s: skill influence from %s (%.1f s); strongest links (a -> b: a correct answer on a raises b):\n", label,
           run ? "the student model" : "DKT", ml_now() - t0);
    for (int64_t i = 0; i < n; i++)
      printf("  %-12s -> %-12s %.4f\n", names[links[i].from], names[links[i].to], links[i].weight);
    printf("wrote %s and %s\n", dot, js);
  }
  ml_dkt_free(dk);
  ml_student_model_free(m);
  free(ij), free(sj), free(b), free(item_skill), free(names), free(nbuf);
  ml_kt_dataset_free(&d);
  return rc;
}
