/* metalearn report: one self-contained HTML file (inline SVG plots, no scripts, no network) from
 * one or more run directories; the work is ml_report_write in the io layer. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "metalearn/report.h"

#define MAX_RUNS 64

static void usage(FILE *f) {
  fprintf(f, "usage: metalearn report --run DIR [--run DIR2 ...] [--out FILE]\n\n"
             "Writes one self-contained HTML page (inline SVG, opens offline) with the runs' training curves\n"
             "(loss, accuracy or MSE against iteration, test points with 95%% CI, wall time), the final\n"
             "evaluation with its confidence interval, accuracy against inner steps (from\n"
             "`metalearn eval --steps-curve`), the resolved configurations side by side and the machine.\n"
             "Unfinished runs show what exists so far. --out defaults to DIR/report.html for one run and\n"
             "report.html for several.\n\n"
             "examples:\n"
             "  metalearn report --run runs/maml5w1s\n"
             "  metalearn report --run runs/maml --run runs/protonet --out compare.html\n");
}

int ml_cli_report(int argc, char **argv) {
  static const struct option opts[] = {
      {"run", required_argument, 0, 'r'}, {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *runs[MAX_RUNS], *out = NULL;
  int n = 0, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    if (c == 'r' && n < MAX_RUNS) runs[n++] = optarg;
    else if (c == 'o') out = optarg;
    else {
      fprintf(stderr, "metalearn report: unknown option or missing value: '%s' (see metalearn report --help)\n",
              optind > 0 && optind <= argc ? argv[optind - 1] : "?");
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "metalearn report: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!n) {
    fprintf(stderr, "metalearn report: --run DIR is required (see metalearn report --help)\n");
    return 2;
  }
  char path[ML_PATH_MAX + 32];
  if (!out) {
    if (n == 1) snprintf(path, sizeof path, "%s/report.html", runs[0]);
    else snprintf(path, sizeof path, "report.html");
    out = path;
  }
  ml_status st = ml_report_write(runs, n, out);
  if (st) {
    fprintf(stderr, "metalearn report: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  printf("report: %s (%d run%s)\n", out, n, n > 1 ? "s" : "");
  return 0;
}
