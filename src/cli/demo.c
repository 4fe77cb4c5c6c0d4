/* metalearn demo: the main job in one command. With Omniglot in the data directory it
 * meta-trains Prototypical Networks on the small background zips and tests on two held-out
 * alphabets; without data it meta-trains MAML on sinusoid regression. Either way it prints the
 * test score of the same network without meta-learning beside the meta-trained one. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

int ml_cli_demo(int argc, char **argv) {
  ml_fewshot_config cfg = ml_fewshot_defaults();
  bool help = false;
  ml_cli_extra extra[] = {{"help", false, NULL, &help}};
  int rc = ml_cli_parse(argc, argv, extra, 1, &cfg, "demo");
  if (rc) return rc;
  if (help) {
    printf("usage: metalearn demo [--key value ...]\n\n"
           "Meta-trains on Omniglot from $METALEARN_DATA (default ../shared/data) when it is there,\n"
           "otherwise on sinusoid regression, and prints the test score against the same network\n"
           "without meta-learning. Any configuration key may be overridden.\n");
    ml_cli_print_keys(stdout);
    return 0;
  }
  char probe[ML_PATH_MAX + 64];
  snprintf(probe, sizeof probe, "%s/omniglot/images_background_small1.zip", cfg.data_dir);
  bool omniglot = access(probe, R_OK) == 0 && !strcmp(cfg.dataset, "omniglot");
  /* defaults of the demo unless given on the command line */
  bool given_iters = false;
  for (int i = 1; i < argc; i++) given_iters |= !strncmp(argv[i], "--iterations", 12);
  if (omniglot) {
    snprintf(cfg.dataset, sizeof cfg.dataset, "omniglot-small");
    if (!given_iters) cfg.iterations = 1500;
  } else {
    snprintf(cfg.dataset, sizeof cfg.dataset, "sinusoid");
    snprintf(cfg.algo, sizeof cfg.algo, "maml");
    cfg.k_shot = 10, cfg.q_query = 10, cfg.q_query_test = 100;
    if (!given_iters) cfg.iterations = 3000;
    printf("metalearn demo: no Omniglot under %s; meta-training on sinusoid regression instead\n", cfg.data_dir);
    fflush(stdout);
  }
  cfg.log_every = 25;
  ml_fewshot *f;
  ml_status st = ml_fewshot_open(&cfg, &f);
  if (st) {
    fprintf(stderr, "metalearn demo: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  cfg = *ml_fewshot_config_of(f);
  bool regress = !strcmp(cfg.dataset, "sinusoid");
  if (omniglot)
    printf("metalearn demo: %s on Omniglot (small background set; test alphabets %s), %lld-way %lld-shot\n", cfg.algo,
           cfg.test_groups, (long long)cfg.n_way, (long long)cfg.k_shot);
  fflush(stdout); /* before the progress lines on stderr */
  double m0, c0, m1, c1;
  st = ml_fewshot_evaluate(f, cfg.eval_episodes, &m0, &c0);
  mkdir("runs", 0755);
  ml_cli_progress_state ps = {false, regress, 0, 0};
  double t0 = ml_now();
  if (!st) st = ml_fewshot_train(f, "runs/demo", false, ml_cli_progress, &ps);
  double secs = ml_now() - t0;
  if (!st) st = ml_fewshot_evaluate(f, cfg.eval_episodes, &m1, &c1);
  if (st) {
    fprintf(stderr, "metalearn demo: %s\n", ml_last_error());
    ml_fewshot_close(f);
    return ml_cli_exit_code(st);
  }
  if (regress) {
    printf("\nsinusoid %lld-shot regression, MSE over %lld test tasks after %lld gradient steps:\n",
           (long long)cfg.k_shot, (long long)cfg.eval_episodes, (long long)cfg.inner_steps_test);
    printf("  same network, no meta-learning: %8.4f +- %.4f\n", m0, c0);
    printf("  MAML meta-trained (%5.1fs):      %8.4f +- %.4f\n", secs, m1, c1);
  } else {
    printf("\n%lld-way %lld-shot accuracy over %lld test episodes (95%% CI):\n", (long long)cfg.n_way,
           (long long)cfg.k_shot, (long long)cfg.eval_episodes);
    printf("  same network, no meta-learning: %6.2f%% +- %.2f%%\n", 100 * m0, 100 * c0);
    printf("  %s meta-trained (%5.1fs):  %6.2f%% +- %.2f%%\n", cfg.algo, secs, 100 * m1, 100 * c1);
  }
  printf("run directory: runs/demo (config.ini, metrics.jsonl, checkpoint.safetensors)\n");
  ml_fewshot_close(f);
  return 0;
}
