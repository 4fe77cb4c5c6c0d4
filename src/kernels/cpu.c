/* kernels/cpu.c: run-time CPU feature detection, SIMD level selection and the GEMM backend
 * switch. The library is compiled without -march flags; SIMD code paths live in functions
 * with target attributes and are picked here at run time.
 *
 * Process-wide state (an exception to the no-global-state rule, kept to atomics): the
 * detected level is cached once (it never changes), a forced level exists for tests, and
 * the "use the built-in GEMM" switch exists for benchmarks. None of them holds memory. */
#include <cpuid.h>
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

/* ---- which GEMM: BLAS, or the built-in one where BLAS runs narrower vectors than the CPU has ----
 * OPENBLAS_CORETYPE=Haswell (exported on some of our machines) pins OpenBLAS to its AVX2
 * kernels. On a CPU that executes 512-bit FMAs at full width (two 512-bit FMA ports: Intel's
 * AVX-512 server cores, AMD from Zen 5) those reach half the FMA peak, and the built-in AVX-512
 * GEMM is 1.3-1.6x faster on the Conv4 and DKT shapes; on Zen 4, which splits zmm ops into
 * 256-bit halves, the AVX2 kernels lose nothing and BLAS stays. The width is decided from the
 * CPU's vendor and family, not timed: a timing probe disagreed between ranks sharing cores,
 * and ranks that pick different GEMMs stop giving the same bits. */
bool ml__cpu_full_width_512(void) {
  if (ml_cpu_simd() < ML_SIMD_AVX512) return false;
  if (__builtin_cpu_is("intel")) return true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__builtin_cpu_is("amd") && __get_cpuid(1, &a, &b, &c, &d)) {
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    return family >= 0x1a; /* Zen 5 */
  }
  return false;
}

static bool same_name(const char *a, const char *b) { /* ASCII, case-insensitive */
  for (; *a && *b; a++, b++)
    if ((*a | 0x20) != (*b | 0x20)) return false;
  return *a == *b;
}

/* The vector width of an OpenBLAS core's kernels, for `metalearn info`: a CPU that OpenBLAS does
 * not recognize (a VM's generic "Intel Xeon Processor", say) gets Prescott's SSE3 kernels unless
 * OPENBLAS_CORETYPE names a better one. */
static const char *blas_core_isa(const char *core) {
  static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
  static const char *const avx2[] = {"haswell", "zen", "excavator"};
  static const char *const sse[] = {"prescott", "core2", "penryn", "nehalem", "dunnington", "atom", "barcelona"};
  if (!core) return "unknown";
  for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
    if (same_name(core, avx512[i])) return "AVX-512";
  for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++)
    if (same_name(core, avx2[i])) return "AVX2";
  for (size_t i = 0; i < sizeof sse / sizeof sse[0]; i++)
    if (same_name(core, sse[i])) return "SSE";
  return same_name(core, "sandybridge") || same_name(core, "bulldozer") || same_name(core, "piledriver") ||
                 same_name(core, "steamroller")
             ? "AVX"
             : "unknown width";
}

bool ml__gemm_prefer_builtin(const char *blas_core, ml_simd_level level, bool full_width_512) {
  if (level < ML_SIMD_AVX512 || !blas_core) return false;
  return full_width_512 && strcmp(blas_core_isa(blas_core), "AVX-512") != 0;
}

bool ml__gemm_narrow_prefer_builtin(const char *blas_core) { return !strcmp(blas_core_isa(blas_core), "SSE"); }

static atomic_int gemm_auto = -1; /* 1: ml_gemm sends the shapes the built-in GEMM does well to it */

bool ml__gemm_auto_builtin(void) {
  int v = atomic_load_explicit(&gemm_auto, memory_order_relaxed);
  if (v >= 0) return v;
  v = 0;
#if ML_HAVE_BLAS
  const char *e = getenv("ML_GEMM"); /* "blas" or "builtin": pin the choice; anything else: automatic */
  if (e && !strcmp(e, "builtin")) v = 1;
  else if (!(e && !strcmp(e, "blas"))) v = ml__gemm_prefer_builtin(openblas_get_corename(), ml__simd_level(), ml__cpu_full_width_512());
#endif
  atomic_store_explicit(&gemm_auto, v, memory_order_relaxed);
  return v;
}

static atomic_int gemm_narrow = -1;

bool ml__gemm_narrow_builtin(void) {
  int v = atomic_load_explicit(&gemm_narrow, memory_order_relaxed);
  if (v >= 0) return v;
  v = 0;
#if ML_HAVE_BLAS
  v = ml__gemm_auto_builtin() && ml__gemm_narrow_prefer_builtin(openblas_get_corename());
#endif
  atomic_store_explicit(&gemm_narrow, v, memory_order_relaxed);
  return v;
}

const char *ml_gemm_backend(void) {
  /* Per-thread buffer: the string depends on the thread count, which may change. */
  static _Thread_local char buf[256];
#if ML_HAVE_BLAS
  if (!ml__gemm_builtin_forced() && ml__gemm_auto_builtin()) {
    snprintf(buf, sizeof buf,
             "builtin %s (full-width 512-bit FMAs; openblas's %s kernels are %s)%s", ml_simd_name(ml__simd_level()),
             openblas_get_corename(), blas_core_isa(openblas_get_corename()),
             ml__gemm_narrow_builtin() ? " for every shape" : " and openblas for narrow shapes");
    return buf;
  }
  if (!ml__gemm_builtin_forced()) {
    /* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
    const char *cfg = openblas_get_config();
    char ver[32] = "?";
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9)) sscanf(cfg + 9, "%31s", ver);
    int par = openblas_get_parallel();
    int nt = openblas_get_num_threads();
    snprintf(buf, sizeof buf, "openblas %s %s (%s kernels, %s, %d thread%s)", ver, openblas_get_corename(),
             blas_core_isa(openblas_get_corename()), par == 0 ? "sequential" : par == 2 ? "openmp" : "pthreads", nt,
             nt == 1 ? "" : "s");
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
