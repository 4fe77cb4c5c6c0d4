/* metalearn info: what this build and this machine offer. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "metalearn/kernels.h"
#include "ml_config.h"

int ml_cli_info(int argc, char **argv) {
  static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      printf("usage: metalearn info\n\nPrints the version, the SIMD level detected on this CPU, the GEMM/BLAS\n"
             "backend in use (with the OpenBLAS kernel), OpenMP, and the default thread count.\n");
      return 0;
    }
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "metalearn info: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  printf("metalearn %s\n", ml_version());
  printf("simd:    %s\n", ml_simd_name(ml_cpu_simd()));
  printf("gemm:    %s\n", ml_gemm_backend());
  printf("openmp:  %s\n", ML_HAVE_OPENMP ? "yes" : "no");
  printf("threads: %d\n", ml_num_threads());
  return 0;
}
