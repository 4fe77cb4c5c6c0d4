/* Shared option handling for the few-shot commands: every configuration key is a long option
 * (--n_way 5 or --n_way=5; dashes and underscores both accepted), read after an optional
 * --config file, so flags override the file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_OPTS 96

int ml_cli_parse(int argc, char **argv, const ml_cli_extra *extra, int n_extra, ml_fewshot_config *cfg,
                 const char *cmd) {
  struct option opts[MAX_OPTS];
  static char names[MAX_OPTS][64];
  int n = 0;
  for (int i = 0; i < n_extra; i++)
    opts[n++] = (struct option){extra[i].name, extra[i].has_arg ? required_argument : no_argument, 0, 1000 + i};
  for (int64_t k = 0; ml_fewshot_key_name(k) && n < MAX_OPTS - 2; k++) {
    opts[n++] = (struct option){ml_fewshot_key_name(k), required_argument, 0, 2000 + (int)k};
    /* the same key with dashes: --n-way */
    snprintf(names[k], sizeof names[k], "%s", ml_fewshot_key_name(k));
    for (char *p = names[k]; *p; p++)
      if (*p == '_') *p = '-';
    if (strcmp(names[k], ml_fewshot_key_name(k))) opts[n++] = (struct option){names[k], required_argument, 0, 2000 + (int)k};
  }
  opts[n] = (struct option){0, 0, 0, 0};
  /* first pass: --config, so that the other flags override the file */
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
    if (c >= 1000 && c < 2000 && !strcmp(extra[c - 1000].name, "config")) {
      if (ml_fewshot_read_config(optarg, cfg)) {
        fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
        return 2;
      }
    }
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c >= 2000) {
      if (ml_fewshot_set(cfg, ml_fewshot_key_name(c - 2000), optarg)) {
        fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
        return 2;
      }
    } else if (c >= 1000) {
      if (extra[c - 1000].seen) *extra[c - 1000].seen = true;
      if (extra[c - 1000].value) *extra[c - 1000].value = extra[c - 1000].has_arg ? optarg : "1";
    } else {
      const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
      fprintf(stderr, "metalearn %s: unknown option or missing value: '%s' (see metalearn %s --help)\n", cmd, bad, cmd);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "metalearn %s: unexpected argument '%s'\n", cmd, argv[optind]);
    return 2;
  }
  return 0;
}

void ml_cli_prescan(int argc, char **argv, const char **run, bool *help) {
  for (int i = 1; i < argc; i++) {
    if (help && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) *help = true;
    if (!strcmp(argv[i], "--run") && i + 1 < argc) *run = argv[i + 1];
    if (!strncmp(argv[i], "--run=", 6)) *run = argv[i] + 6;
  }
}

int ml_cli_read_run_config(const char *run, ml_fewshot_config *cfg, const char *cmd) {
  char path[ML_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/config.ini", run);
  if (ml_fewshot_read_config(path, cfg)) {
    fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
    return 2;
  }
  return 0;
}

void ml_cli_print_keys(FILE *f) {
  fprintf(f, "\nconfiguration (also as key = value lines in a --config file; flags override it):\n");
  for (int64_t k = 0; ml_fewshot_key_name(k); k++)
    fprintf(f, "  --%-22s %s\n", ml_fewshot_key_name(k), ml_fewshot_key_help(ml_fewshot_key_name(k)));
}

/* Progress: a bar with rate and ETA on a terminal, plain lines otherwise. */
bool ml_cli_progress(void *ctx, int64_t it, int64_t total, const ml_step_stats *s, double seconds) {
  ml_cli_progress_state *p = ctx;
  if (p->quiet) return true;
  double rate = seconds > 0 ? (double)(it - p->start) / (seconds - p->start_seconds) : 0;
  double eta = rate > 0 ? (double)(total - it) / rate : 0;
  const char *metric = p->regress ? "mse" : "acc";
  double value = p->regress ? s->loss_query : s->acc_query;
  if (isatty(STDERR_FILENO)) {
    int width = 30, fill = total ? (int)((double)width * (double)it / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %lld/%lld  %.1f it/s  ETA %02d:%02d  loss %.4f  %s %.4f ", bar, (long long)it,
            (long long)total, rate, (int)(eta / 60), (int)eta % 60, s->loss_query, metric, value);
    if (it == total) fprintf(stderr, "\n");
  } else {
    int64_t every = total / 20 > 0 ? total / 20 : 1;
    if (it % every == 0 || it == total)
      fprintf(stderr, "iteration %lld/%lld  %.1f it/s  eta %.0fs  loss %.4f  %s %.4f\n", (long long)it,
              (long long)total, rate, eta, s->loss_query, metric, value);
  }
  return true;
}
