/* metalearn command line: a table of subcommands, each in its own file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "metalearn/base.h"

static const ml_cli_command commands[] = {
    {"train", "meta-train an algorithm on a task distribution into a run directory", ml_cli_train},
    {"eval", "evaluate a trained run (test episodes with 95% CI, or Lake's 20 runs)", ml_cli_eval},
    {"adapt", "adapt a trained run to your own labelled images and classify new ones", ml_cli_adapt},
    {"demo", "the main job: meta-train on Omniglot (or sinusoids) and compare with no meta-learning", ml_cli_demo},
    {"report", "write an HTML report (training curves, evaluation, config) of one or more runs", ml_cli_report},
    {"next", "a student's next exercises from their answer log (adaptive practice)", ml_cli_next},
    {"practice-eval", "score exercise-selection policies with BOBCAT's protocol on a students dataset", ml_cli_practice_eval},
    {"skill-graph", "the influence of each skill on the others (DKT or a student model) as DOT and JSON", ml_cli_skill_graph},
    {"recommend", "adapt a trained MovieLens recommender to a new user's ratings and list top movies", ml_cli_recommend},
    {"info", "print version, CPU SIMD level, BLAS backend and threads", ml_cli_info},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
  fprintf(f, "usage: metalearn <command> [options]\n\ncommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\nmetalearn <command> --help shows the options of a command.\n"
             "metalearn --version prints the version.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
    printf("metalearn %s\n", ml_version());
    return 0;
  }
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "metalearn: unknown command '%s' (see metalearn --help)\n", argv[1]);
  return 2;
}
