/* kernels/cpu.c: run-time CPU feature detection, SIMD level selection and the GEMM backend
 * switch. The library is compiled without -march flags; SIMD code paths live in functions
 * with target attributes and are picked here at run time.
 *
 * Process-wide state (an exception to the no-global-state rule, kept to atomics): the
 * detected level is cached once (it never changes), a forced level exists for tests, and
 * the "use the built-in GEMM" switch exists for benchmarks. None of them holds memory. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/internal.h"
#include "ml_config.h"

#if ML_HAVE_BLAS
#include <cblas.h>
#endif

static atomic_int detected_level = -1; /* cached min(CPU, ML_SIMD) */
static atomic_int forced_level = -1;   /* ml__simd_force, -1 = none */
static atomic_bool gemm_builtin = false;

static ml_simd_level detect(void) {
  ml_simd_level l = ML_SIMD_SCALAR;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = ML_SIMD_AVX2;
  if (l == ML_SIMD_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
    l = ML_SIMD_AVX512;
  /* ML_SIMD may only lower the level: asking for more than the CPU has would crash. */
  const char *e = getenv("ML_SIMD");
  if (e && *e) {
    ml_simd_level want = l;
    if (!strcmp(e, "scalar")) want = ML_SIMD_SCALAR;
    else if (!strcmp(e, "avx2")) want = ML_SIMD_AVX2;
    else if (!strcmp(e, "avx512")) want = ML_SIMD_AVX512;
    if (want < l) l = want;
  }
  return l;
}

ml_simd_level ml_cpu_simd(void) {
  int l = atomic_load_explicit(&detected_level, memory_order_relaxed);
  if (l < 0) {
    l = (int)detect();
    atomic_store_explicit(&detected_level, l, memory_order_relaxed);
  }
  return (ml_simd_level)l;
}

ml_simd_level ml__simd_level(void) {
  ml_simd_level l = ml_cpu_simd();
  int f = atomic_load_explicit(&forced_level, memory_order_relaxed);
  return f >= 0 && f < (int)l ? (ml_simd_level)f : l;
}

void ml__simd_force(int level) { atomic_store(&forced_level, level < 0 ? -1 : level); }

const char *ml_simd_name(ml_simd_level l) {
  switch (l) {
    case ML_SIMD_AVX512: return "avx512";
    case ML_SIMD_AVX2: return "avx2";
    default: return "scalar";
  }
}

void ml_gemm_use_builtin(bool on) { atomic_store(&gemm_builtin, on); }

bool ml__gemm_builtin_forced(void) { return !ML_HAVE_BLAS || atomic_load_explicit(&gemm_builtin, memory_order_relaxed); }

const char *ml_gemm_backend(void) {
  /* Per-thread buffer: the string depends on the thread count, which may change. */
  static _Thread_local char buf[256];
#if ML_HAVE_BLAS
  if (!ml__gemm_builtin_forced()) {
    /* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
    const char *cfg = openblas_get_config();
    char ver[32] = "?";
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9)) sscanf(cfg + 9, "%31s", ver);
    int par = openblas_get_parallel();
    int nt = openblas_get_num_threads();
    snprintf(buf, sizeof buf, "openblas %s %s (%s, %d thread%s)", ver, openblas_get_corename(),
             par == 0 ? "sequential" : par == 2 ? "openmp" : "pthreads", nt, nt == 1 ? "" : "s");
    return buf;
  }
#endif
  snprintf(buf, sizeof buf, "builtin %s", ml_simd_name(ml__simd_level()));
  return buf;
}

void ml_blas_set_threads(int n) {
#if ML_HAVE_BLAS
  openblas_set_num_threads(n < 1 ? 1 : n);
#else
  (void)n;
#endif
}
