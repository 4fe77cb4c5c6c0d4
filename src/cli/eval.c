/* metalearn eval: score a trained run on the fixed test episodes, or on Lake's 20 runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "metalearn/io.h"

bool ml_cli_eval_progress(void *ctx, int64_t done, int64_t total) {
  ml_cli_eval_progress_state *p = ctx;
  double el = ml_now() - p->t0;
  if (p->quiet || el < 1.0) return true; /* short evaluations stay silent */
  double rate = (double)done / el, eta = rate > 0 ? (double)(total - done) / rate : 0;
  const char *what = p->what ? p->what : "evaluation";
  if (isatty(STDERR_FILENO)) {
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%s [%s] %lld/%lld episodes  %.1f ep/s  ETA %02d:%02d ", what, bar, (long long)done,
            (long long)total, rate, (int)(eta / 60), (int)eta % 60);
    if (done == total) fprintf(stderr, "\n");
  } else if (done == total || done - p->last_printed >= (total / 10 > 0 ? total / 10 : 1)) {
    fprintf(stderr, "%s %lld/%lld episodes  %.1f ep/s  eta %.0fs\n", what, (long long)done, (long long)total, rate, eta);
    p->last_printed = done;
  }
  return true;
}

/* Merges the points into run/eval_steps.json (a point with the same step count is replaced). */
static ml_status write_steps(const char *run, const ml_fewshot_config *cfg, const int64_t *steps, const double *mean,
                             const double *ci, int64_t n) {
  char path[ML_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/eval_steps.json", run);
  bool regress = !strcmp(cfg->dataset, "sinusoid");
  cJSON *old = NULL;
  FILE *f = fopen(path, "rb");
  if (f) {
    char buf[65536];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    buf[k] = 0;
    fclose(f);
    old = cJSON_Parse(buf);
  }
  cJSON *j = cJSON_CreateObject(), *curve = cJSON_CreateArray();
  cJSON_AddStringToObject(j, "algo", cfg->algo);
  cJSON_AddStringToObject(j, "metric", regress ? "mse" : "acc");
  cJSON_AddNumberToObject(j, "n_way", (double)cfg->n_way);
  cJSON_AddNumberToObject(j, "k_shot", (double)cfg->k_shot);
  cJSON_AddItemToObject(j, "curve", curve);
  /* every step count, old and new, in increasing order */
  for (int64_t want = 0, more = 1; more; want++) {
    more = 0;
    bool done = false;
    for (int64_t i = 0; i < n; i++) {
      if (steps[i] > want) more = 1;
      if (steps[i] == want && !done) {
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "steps", (double)want);
        cJSON_AddNumberToObject(pt, "mean", mean[i]);
        cJSON_AddNumberToObject(pt, "ci95", ci[i]);
        cJSON_AddNumberToObject(pt, "episodes", (double)cfg->eval_episodes);
        cJSON_AddItemToArray(curve, pt);
        done = true;
      }
    }
    const cJSON *pt, *old_curve = old ? cJSON_GetObjectItemCaseSensitive(old, "curve") : NULL;
    cJSON_ArrayForEach(pt, old_curve) {
      const cJSON *s = cJSON_GetObjectItemCaseSensitive(pt, "steps");
      if (!cJSON_IsNumber(s)) continue;
      if ((int64_t)s->valuedouble > want) more = 1;
      if ((int64_t)s->valuedouble == want && !done) {
        cJSON_AddItemToArray(curve, cJSON_Duplicate(pt, 1));
        done = true;
      }
    }
  }
  cJSON_Delete(old);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  if (!text) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  ml_status st = ml_write_file_atomic(path, text, strlen(text));
  free(text);
  return st;
}

static int steps_curve(ml_fewshot *f, const char *run, const char *list) {
  const ml_fewshot_config *cfg = ml_fewshot_config_of(f);
  const char *grad[] = {"maml", "fomaml", "metasgd", "anil", "reptile"};
  bool ok = false;
  for (int i = 0; i < 5; i++) ok |= !strcmp(cfg->algo, grad[i]);
  if (!ok) {
    fprintf(stderr, "metalearn eval: --steps-curve does not apply to %s (no inner gradient steps at meta-test)\n",
            cfg->algo);
    return 2;
  }
  int64_t steps[64], n = 0;
  for (const char *p = list; *p && n < 64;) {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || v < 0 || v > 100000 || (*end && *end != ',')) {
      fprintf(stderr, "metalearn eval: --steps-curve '%s': expected step counts like 0,1,2,3,5,10\n", list);
      return 2;
    }
    steps[n++] = v;
    p = *end ? end + 1 : end;
  }
  if (!n) {
    fprintf(stderr, "metalearn eval: --steps-curve: no step count given\n");
    return 2;
  }
  bool regress = !strcmp(cfg->dataset, "sinusoid");
  double mean[64], ci[64];
  printf("test %s against inner steps (%lld episodes, %s)\n", regress ? "MSE" : "accuracy",
         (long long)cfg->eval_episodes, cfg->algo);
  for (int64_t i = 0; i < n; i++) {
    char what[64];
    snprintf(what, sizeof what, "%lld steps", (long long)steps[i]);
    ml_cli_eval_progress_state ps = {false, ml_now(), 0, what};
    ml_eval_options o = ml_eval_options_defaults();
    o.progress = ml_cli_eval_progress, o.progress_ctx = &ps, o.inner_steps_test = steps[i];
    ml_status st = ml_fewshot_evaluate_ex(f, cfg->eval_episodes, &o, &mean[i], &ci[i]);
    if (st) {
      fprintf(stderr, "metalearn eval: %s\n", ml_last_error());
      return ml_cli_exit_code(st);
    }
    if (regress) printf("  %3lld steps  MSE %.4f +- %.4f\n", (long long)steps[i], mean[i], ci[i]);
    else printf("  %3lld steps  %.2f%% +- %.2f%%\n", (long long)steps[i], 100 * mean[i], 100 * ci[i]);
  }
  ml_status st = write_steps(run, cfg, steps, mean, ci, n);
  if (st) {
    fprintf(stderr, "metalearn eval: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  printf("curve: %s/eval_steps.json\n", run);
  return 0;
}

static void usage(FILE *f) {
  fprintf(f, "usage: metalearn eval --run DIR [--checkpoint FILE] [--benchmark omniglot-runs] [--key value ...]\n\n"
             "Loads DIR/config.ini and DIR/checkpoint.safetensors and reports the mean test accuracy over\n"
             "eval_episodes fixed test episodes with its 95%% confidence interval (MSE for sinusoid). Flags\n"
             "override the run's configuration (e.g. --eval_episodes 600 --inner_steps_test 10 --k_shot 5).\n"
             "--benchmark omniglot-runs scores Lake et al.'s 20-way within-alphabet one-shot runs\n"
             "(all_runs.zip) and prints the error rate as the published tables do.\n"
             "--steps-curve 0,1,2,3,5,10 evaluates with each number of inner steps at meta-test (gradient-based\n"
             "algorithms: maml, fomaml, metasgd, anil, reptile) and records the curve in DIR/eval_steps.json,\n"
             "which `metalearn report` plots.\n");
  ml_cli_print_keys(f);
}

int ml_cli_eval(int argc, char **argv) {
  if (ml_cli_is_students(argc, argv)) return ml_cli_students(argc, argv, "eval");
  if (ml_cli_is_movielens(argc, argv)) return ml_cli_rec_train(argc, argv, "eval");
  ml_fewshot_config cfg = ml_fewshot_defaults();
  const char *run = NULL, *ckpt = NULL, *bench = NULL, *cfgfile = NULL, *curve = NULL;
  bool help = false, quiet = false;
  ml_cli_extra extra[] = {{"steps-curve", true, &curve, NULL},
                          {"steps_curve", true, &curve, NULL},
                          {"quiet", false, NULL, &quiet},
                          {"run", true, &run, NULL},
                          {"checkpoint", true, &ckpt, NULL},
                          {"benchmark", true, &bench, NULL},
                          {"config", true, &cfgfile, NULL},
                          {"help", false, NULL, &help}};
  ml_cli_prescan(argc, argv, &run, &help);
  if (help) {
    usage(stdout);
    return 0;
  }
  if (!run) {
    fprintf(stderr, "metalearn eval: --run DIR is required (see metalearn eval --help)\n");
    return 2;
  }
  char path[ML_PATH_MAX + 64];
  int rc = ml_cli_read_run_config(run, &cfg, "eval");
  if (rc) return rc;
  rc = ml_cli_parse(argc, argv, extra, 8, &cfg, "eval");
  if (rc) return rc;
  if (bench && strcmp(bench, "omniglot-runs")) {
    fprintf(stderr, "metalearn eval: unknown benchmark '%s' (omniglot-runs)\n", bench);
    return 2;
  }
  ml_fewshot *f;
  ml_status st = ml_fewshot_open(&cfg, &f);
  if (!st) {
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run);
    st = ml_fewshot_load(f, ckpt ? ckpt : path);
    if (st) ml_fewshot_close(f);
  }
  if (st) {
    fprintf(stderr, "metalearn eval: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  cfg = *ml_fewshot_config_of(f);
  if (curve) {
    rc = steps_curve(f, run, curve);
    ml_fewshot_close(f);
    return rc;
  }
  if (bench) {
    double err, per_run[20];
    st = ml_fewshot_lake(f, &err, per_run);
    if (!st) {
      printf("Omniglot 20-way within-alphabet one-shot (Lake et al. 2015, 20 runs)\n");
      for (int r = 0; r < 20; r++) printf("  run %02d  error %5.1f%%\n", r + 1, per_run[r]);
      printf("error rate: %.2f%% (%s, %s)\n", err, cfg.algo, run);
    }
  } else {
    double mean, ci;
    double t0 = ml_now();
    ml_cli_eval_progress_state ps = {quiet, t0, 0, "evaluation"};
    ml_eval_options o = ml_eval_options_defaults();
    o.progress = ml_cli_eval_progress, o.progress_ctx = &ps;
    st = ml_fewshot_evaluate_ex(f, cfg.eval_episodes, &o, &mean, &ci);
    if (!st) {
      if (!strcmp(cfg.dataset, "sinusoid"))
        printf("test MSE: %.4f +- %.4f (%lld episodes, %lld-shot, %lld steps, %.1fs)\n", mean, ci,
               (long long)cfg.eval_episodes, (long long)cfg.k_shot, (long long)cfg.inner_steps_test, ml_now() - t0);
      else
        printf("test accuracy: %.2f%% +- %.2f%% (%lld episodes, %lld-way %lld-shot, %s, %.1fs)\n", 100 * mean,
               100 * ci, (long long)cfg.eval_episodes, (long long)cfg.n_way, (long long)cfg.k_shot, cfg.algo,
               ml_now() - t0);
    }
  }
  if (st) fprintf(stderr, "metalearn eval: %s\n", ml_last_error());
  ml_fewshot_close(f);
  return ml_cli_exit_code(st);
}
