/* metalearn next: a student's next exercises (adaptive practice), and metalearn practice-eval:
 * the BOBCAT protocol table of selection policies x n on a students dataset. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
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

int ml_cli_practice_eval(int argc, char **argv) {
  const char *cmd = "practice-eval", *dataset = NULL, *data_dir = NULL, *models = "irt1", *model_file = NULL;
  const char *ns_s = "1,3,5,10", *out_path = NULL;
  double resamples = 5, target = 0.7, seed = 1, threads = 0, cal_students = 1000;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: metalearn practice-eval --dataset assist2009|assist2015|statics|kt:DIR [options]\n\n"
             "BOBCAT's protocol: for each test student with >= 10 distinct exercises (first attempts), a random\n"
             "80%% pool and 20%% held-out; each policy picks n exercises from the pool one at a time seeing each\n"
             "answer; the student model adapted on the picks predicts the held-out answers (AUC, accuracy pooled\n"
             "over students, mean +- sd over paired resamples). Target mode is scored raw and calibrated (a\n"
             "logistic recalibration fitted on the training students' picks).\n\n"
             "options:\n"
             "  --dataset NAME      students dataset (as for metalearn train)\n"
             "  --data_dir DIR      data root (default $METALEARN_DATA or ../shared/data)\n"
             "  --models LIST       baselines fitted on the training students' first attempts (irt1,irt2,elo,difficulty)\n"
             "  --model-file FILE   also a saved student model (e.g. RUN/meta_metasgd_k10.safetensors)\n"
             "  --ns LIST           numbers of picks (1,3,5,10)\n"
             "  --resamples N       paired resamples of the split (5)\n"
             "  --target P          target success (0.7)\n"
             "  --calib-students N  training students for the calibration (1000)\n"
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
    else {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --help)\n", cmd, a);
      return 2;
    }
    if (rc) return rc;
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
  int n_kinds = 0;
  char mbuf[256];
  snprintf(mbuf, sizeof mbuf, "%s", models);
  for (char *tok = strtok(mbuf, ","); tok; tok = strtok(NULL, ",")) {
    ml_status st;
    if (n_kinds == 8 || (st = ml_student_kind_parse(tok, &kinds[n_kinds])) || kinds[n_kinds] == ML_STUDENT_META) {
      fprintf(stderr, "metalearn %s: bad --models entry '%s' (irt1, irt2, elo, difficulty; meta via --model-file)\n", cmd, tok);
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
                                      {ML_PRACTICE_TARGET, true, true}};
  const int NV = 5;
  char *tbuf = NULL;
  size_t tlen = 0;
  FILE *tf = open_memstream(&tbuf, &tlen);
  int rc = 0;
  for (int mi = 0; mi < n_kinds + (model_file ? 1 : 0) && !rc; mi++) {
    ml_student_model *m = NULL;
    char name[ML_PATH_MAX + 64];
    double t0 = ml_now();
    if (mi < n_kinds) {
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
    ml_practice_calib cal;
    t0 = ml_now();
    /* Cross-fitted calibration: the same kind of model fitted on fold 1's training students,
     * calibrated on its validation students (a model calibrated on the students it was fitted on
     * looks better calibrated than it is on new ones); without folds, the training students. */
    if (mi < n_kinds && fold_fa.n_students > 0) {
      ml_student_config c = ml_student_defaults(kinds[mi]);
      c.threads = pc.threads;
      ml_student_model *m1 = NULL;
      st = ml_student_model_fit(&c, fold.n_items, fold.n_skills, &fold.q, &fold_fa, NULL, &m1);
      if (!st) st = ml_practice_fit_target_calibration(m1, &fold.valid, &pc, (int64_t)cal_students, &cal);
      ml_student_model_free(m1);
    } else {
      st = ml_practice_fit_target_calibration(m, &fa, &pc, (int64_t)cal_students, &cal);
    }
    if (st) {
      ml_student_model_free(m);
      rc = fail(cmd, st);
      break;
    }
    double cal_s = ml_now() - t0;
    ml_practice_cell cells[5 * 8];
    t0 = ml_now();
    st = ml_practice_protocol(m, &d.test, &pc, vars, NV, cal, cells);
    double eval_s = ml_now() - t0;
    ml_student_model_free(m);
    if (st) {
      rc = fail(cmd, st);
      break;
    }
    char title[ML_PATH_MAX + 512];
    snprintf(title, sizeof title, "%s, %s, %lld resamples, target %.2f", label, name, (long long)pc.resamples, target);
    ml_practice_table_print(stdout, title, cells, NV, pc.n_ns);
    printf("\ncalibration p' = sigmoid(%.3f logit(p) %+.3f); wall: fit %.1f s, calibration %.1f s, protocol %.1f s\n\n",
           cal.slope, cal.intercept, fit_s, cal_s, eval_s);
    fflush(stdout);
    if (tf) {
      ml_practice_table_print(tf, title, cells, NV, pc.n_ns);
      fprintf(tf, "\ncalibration p' = sigmoid(%.3f logit(p) %+.3f); wall: fit %.1f s, calibration %.1f s, protocol %.1f s\n\n",
              cal.slope, cal.intercept, fit_s, cal_s, eval_s);
    }
    if (!quiet) fprintf(stderr, "metalearn %s: %s done in %.1f s\n", cmd, name, fit_s + cal_s + eval_s);
  }
  if (tf) fclose(tf);
  if (!rc && out_path && tbuf && (st = ml_write_file_atomic(out_path, tbuf, tlen))) rc = fail(cmd, st);
  free(tbuf);
  ml_answers_free(&fa), ml_answers_free(&fold_fa);
  ml_kt_dataset_free(&d), ml_kt_dataset_free(&fold);
  return rc;
}

int ml_cli_next(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "metalearn next: not built yet\n");
  return 2;
}
