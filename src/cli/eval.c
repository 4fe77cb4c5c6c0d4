/* metalearn eval: score a trained run on the fixed test episodes, or on Lake's 20 runs. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f, "usage: metalearn eval --run DIR [--checkpoint FILE] [--benchmark omniglot-runs] [--key value ...]\n\n"
             "Loads DIR/config.ini and DIR/checkpoint.safetensors and reports the mean test accuracy over\n"
             "eval_episodes fixed test episodes with its 95%% confidence interval (MSE for sinusoid). Flags\n"
             "override the run's configuration (e.g. --eval_episodes 600 --inner_steps_test 10 --k_shot 5).\n"
             "--benchmark omniglot-runs scores Lake et al.'s 20-way within-alphabet one-shot runs\n"
             "(all_runs.zip) and prints the error rate as the published tables do.\n");
  ml_cli_print_keys(f);
}

int ml_cli_eval(int argc, char **argv) {
  ml_fewshot_config cfg = ml_fewshot_defaults();
  const char *run = NULL, *ckpt = NULL, *bench = NULL, *cfgfile = NULL;
  bool help = false;
  ml_cli_extra extra[] = {{"run", true, &run, NULL},
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
  rc = ml_cli_parse(argc, argv, extra, 5, &cfg, "eval");
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
    st = ml_fewshot_evaluate(f, cfg.eval_episodes, &mean, &ci);
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
