/* Subcommand table shared by the CLI files. Each command returns 0 on success, 1 on a failed
 * run, 2 on bad usage or input. */
#ifndef ML_CLI_H
#define ML_CLI_H

typedef struct {
  const char *name;
  const char *help;
  int (*run)(int argc, char **argv);
} ml_cli_command;

int ml_cli_info(int argc, char **argv);

#endif
