/* metalearn info: what this build and this machine offer. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "metalearn/dist.h"
#include "metalearn/kernels.h"
#include "ml_config.h"

int ml_cli_info(int argc, char **argv) {
  static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      printf("usage: metalearn info\n\nPrints the version, the SIMD level detected on this CPU, the GEMM/BLAS\n"
             "backend in use (with the OpenBLAS kernel), OpenMP, the default thread count, and whether MPI\n"
             "is built in (under mpirun: this rank and the number of ranks; only rank 0 prints).\n");
      return 0;
    }
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "metalearn info: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  ml_dist *d = NULL;
  if (ml_dist_init(&argc, &argv, &d)) {
    fprintf(stderr, "metalearn info: %s\n", ml_last_error());
    return 1;
  }
  if (ml_dist_rank(d) != 0) {
    ml_dist_finalize(d);
    return 0;
  }
  printf("metalearn %s\n", ml_version());
  printf("simd:    %s\n", ml_simd_name(ml_cpu_simd()));
  printf("gemm:    %s\n", ml_gemm_backend());
  printf("conv:    %s\n", ml_conv_backend());
  printf("openmp:  %s\n", ML_HAVE_OPENMP ? "yes" : "no");
  printf("threads: %d\n", ml_num_threads());
  if (!ml_dist_built_with_mpi())
    printf("mpi:     no (built without)\n");
  else
    printf("mpi:     yes, %s (rank %d of %d)\n", ml_dist_library(d), ml_dist_rank(d), ml_dist_size(d));
  ml_dist_finalize(d);
  return 0;
}
