/* metalearn train: meta-train into a run directory, then evaluate on the test episodes. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "metalearn/io.h"

int ml_cli_exit_code(ml_status st) {
  switch (st) {
    case ML_OK:
      return 0;
    case ML_ERR_NOMEM:
    case ML_ERR_ABORTED:
    case ML_ERR_UNSUPPORTED:
      return 1;
    default:
      return 2; /* bad input, unreadable or corrupt files, shapes, divergence */
  }
}

static void usage(FILE *f) {
  fprintf(f, "usage: metalearn train [--config FILE] [--run DIR] [--resume] [--quiet] [--key value ...]\n\n"
             "Meta-trains an algorithm on a task distribution, writing DIR/config.ini (the resolved\n"
             "configuration), DIR/metrics.jsonl and DIR/checkpoint.safetensors, then reports the test\n"
             "accuracy (mean over eval_episodes fixed test episodes, 95%% confidence interval).\n"
             "--resume continues an interrupted run from its last checkpoint (DIR/config.ini is read first;\n"
             "flags override it) and ends with the same parameters as an uninterrupted run.\n\n"
             "examples:\n"
             "  metalearn train --dataset omniglot --algo protonet --n_way 5 --k_shot 1 --iterations 20000\n"
             "  metalearn train --dataset sinusoid --algo maml --k_shot 10 --iterations 20000\n"
             "  metalearn train --run runs/x --resume\n");
  ml_cli_print_keys(f);
}

static int train(int argc, char **argv, ml_dist *d);

/* Under mpirun every rank runs the command: the ranks split each meta-batch and each evaluation,
 * rank 0 prints and writes the run directory, and a failure on any rank ends the whole job
 * (MPI_Abort) rather than leaving the others waiting for it. */
int ml_cli_train(int argc, char **argv) {
  if (ml_cli_is_students(argc, argv)) return ml_cli_students(argc, argv, "train");
  if (ml_cli_is_movielens(argc, argv)) return ml_cli_rec_train(argc, argv, "train");
  ml_dist *d;
  if (ml_dist_init(&argc, &argv, &d)) {
    fprintf(stderr, "metalearn train: %s\n", ml_last_error());
    return 1;
  }
  int rc = train(argc, argv, d);
  if (rc && ml_dist_size(d) > 1) ml_dist_abort(d, rc);
  ml_dist_finalize(d);
  return rc;
}

static int train(int argc, char **argv, ml_dist *d) {
  ml_fewshot_config cfg = ml_fewshot_defaults();
  const char *run = NULL, *cfgfile = NULL;
  bool resume = false, quiet = false, help = false;
  ml_cli_extra extra[] = {{"config", true, &cfgfile, NULL}, {"run", true, &run, NULL}, {"resume", false, NULL, &resume},
                          {"quiet", false, NULL, &quiet},   {"help", false, NULL, &help}};
  /* with --resume the run's own config.ini is the base, then the flags */
  ml_cli_prescan(argc, argv, &run, NULL);
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--resume")) resume = true;
  if (resume) {
    if (!run) {
      fprintf(stderr, "metalearn train: --resume needs --run DIR\n");
      return 2;
    }
    if (ml_cli_read_run_config(run, &cfg, "train")) return 2;
  }
  int rc = ml_cli_parse(argc, argv, extra, 5, &cfg, "train");
  if (rc) return rc;
  if (help) {
    usage(stdout);
    return 0;
  }
  char default_run[256];
  if (!run) {
    snprintf(default_run, sizeof default_run, "runs/%s-%s-%lldw%llds", cfg.dataset, cfg.algo, (long long)cfg.n_way,
             (long long)cfg.k_shot);
    run = default_run;
    mkdir("runs", 0755); /* the run directory itself is made by ml_fewshot_train */
  }
  ml_fewshot *f;
  ml_status st = ml_fewshot_open(&cfg, &f);
  if (st) {
    fprintf(stderr, "metalearn train: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  if ((st = ml_fewshot_set_dist(f, d))) {
    fprintf(stderr, "metalearn train: %s\n", ml_last_error());
    ml_fewshot_close(f);
    return ml_cli_exit_code(st);
  }
  if (ml_dist_rank(d) != 0) quiet = true;
  if (ml_dist_size(d) > 1 && !quiet)
    fprintf(stderr, "metalearn: %d MPI ranks, %lld tasks each per meta-iteration\n", ml_dist_size(d),
            (long long)(ml_fewshot_config_of(f)->meta_batch / ml_dist_size(d)));
  cfg = *ml_fewshot_config_of(f);
  bool regress = !strcmp(cfg.dataset, "sinusoid");
  if (!quiet)
    fprintf(stderr, "metalearn: %s on %s, %lld-way %lld-shot, %lld iterations, meta-batch %lld -> %s\n", cfg.algo,
            cfg.dataset, (long long)cfg.n_way, (long long)cfg.k_shot, (long long)cfg.iterations,
            (long long)cfg.meta_batch, run);
  ml_cli_progress_state ps = {quiet, regress, 0, 0};
  double t0 = ml_now();
  st = ml_fewshot_train(f, run, resume, ml_cli_progress, &ps);
  if (st) {
    fprintf(stderr, "metalearn train: %s\n", ml_last_error());
    ml_fewshot_close(f);
    return ml_cli_exit_code(st);
  }
  double train_s = ml_now() - t0, mean, ci;
  ml_cli_eval_progress_state eps = {quiet, ml_now(), 0, "evaluation"};
  ml_eval_options eo = ml_eval_options_defaults();
  eo.progress = ml_cli_eval_progress, eo.progress_ctx = &eps;
  st = ml_fewshot_evaluate_ex(f, cfg.eval_episodes, &eo, &mean, &ci);
  if (st) {
    fprintf(stderr, "metalearn train: evaluation: %s\n", ml_last_error());
    ml_fewshot_close(f);
    return ml_cli_exit_code(st);
  }
  if (ml_dist_rank(d) != 0) { /* rank 0 reports */
    ml_fewshot_close(f);
    return 0;
  }
  char json[512], path[ML_PATH_MAX + 32];
  if (regress)
    snprintf(json, sizeof json, "{\"test_mse\": %.6g, \"ci95\": %.6g, \"episodes\": %lld, \"train_seconds\": %.1f}\n",
             mean, ci, (long long)cfg.eval_episodes, train_s);
  else
    snprintf(json, sizeof json, "{\"test_acc\": %.6g, \"ci95\": %.6g, \"episodes\": %lld, \"train_seconds\": %.1f}\n",
             mean, ci, (long long)cfg.eval_episodes, train_s);
  snprintf(path, sizeof path, "%s/eval.json", run);
  ml_write_file_atomic(path, json, strlen(json));
  if (regress)
    printf("test MSE: %.4f +- %.4f (%lld episodes, %lld-shot, %lld steps)\n", mean, ci, (long long)cfg.eval_episodes,
           (long long)cfg.k_shot, (long long)cfg.inner_steps_test);
  else
    printf("test accuracy: %.2f%% +- %.2f%% (%lld episodes, %lld-way %lld-shot)\n", 100 * mean, 100 * ci,
           (long long)cfg.eval_episodes, (long long)cfg.n_way, (long long)cfg.k_shot);
  ml_fewshot_close(f);
  return 0;
}
