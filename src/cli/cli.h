/* Subcommand table shared by the CLI files. Each command returns 0 on success, 1 on a failed
 * run, 2 on bad usage or input. */
#ifndef ML_CLI_H
#define ML_CLI_H

#include <stdio.h>

#include "metalearn/fewshot.h"

typedef struct {
  const char *name;
  const char *help;
  int (*run)(int argc, char **argv);
} ml_cli_command;

int ml_cli_info(int argc, char **argv);
int ml_cli_train(int argc, char **argv);
int ml_cli_eval(int argc, char **argv);
int ml_cli_adapt(int argc, char **argv);
int ml_cli_demo(int argc, char **argv);
int ml_cli_report(int argc, char **argv);
int ml_cli_next(int argc, char **argv);          /* src/cli/next.c */
int ml_cli_practice_eval(int argc, char **argv); /* src/cli/next.c */
int ml_cli_skill_graph(int argc, char **argv);   /* src/cli/next.c */
/* Students datasets (--dataset assist2009 | assist2015 | statics | assistments-dkt | kt:DIR, or
 * --run DIR holding students.ini) go to the students command of cmd ("train" or "eval"). */
bool ml_cli_is_students(int argc, char **argv);
int ml_cli_students(int argc, char **argv, const char *cmd);
int ml_cli_recommend(int argc, char **argv);
/* The MovieLens application behind train / eval --dataset movielens (src/cli/recommend.c). */
bool ml_cli_is_movielens(int argc, char **argv);
int ml_cli_rec_train(int argc, char **argv, const char *cmd);

/* Options a command takes besides the configuration keys. */
typedef struct {
  const char *name;
  bool has_arg;
  const char **value; /* receives the argument ("1" for a flag) */
  bool *seen;
} ml_cli_extra;

/* Parses --config FILE first, then every flag; returns 0, or 2 after printing the error. */
int ml_cli_parse(int argc, char **argv, const ml_cli_extra *extra, int n_extra, ml_fewshot_config *cfg,
                 const char *cmd);
void ml_cli_print_keys(FILE *f);
/* Finds --run DIR (and --help) before the full parse: a run's config.ini is the base that the
 * other flags override. */
void ml_cli_prescan(int argc, char **argv, const char **run, bool *help);
/* Reads RUN/config.ini into cfg; returns 0, or 2 after printing the error. */
int ml_cli_read_run_config(const char *run, ml_fewshot_config *cfg, const char *cmd);

typedef struct {
  bool quiet, regress;
  int64_t start;
  double start_seconds;
} ml_cli_progress_state;
bool ml_cli_progress(void *ctx, int64_t it, int64_t total, const ml_step_stats *s, double seconds);

/* Evaluation progress (an ml_eval_progress_fn): after the first second, a bar with rate and ETA
 * on a terminal, plain lines otherwise; nothing for short evaluations or when quiet. */
typedef struct {
  bool quiet;
  double t0;
  int64_t last_printed;
  const char *what; /* "evaluation" */
} ml_cli_eval_progress_state;
bool ml_cli_eval_progress(void *ctx, int64_t done, int64_t total);

/* Maps a library status to the CLI's exit codes: bad input 2, failed run 1. */
int ml_cli_exit_code(ml_status st);

#endif
