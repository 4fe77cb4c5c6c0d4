/* bench/kernels: single-thread throughput of the kernels against the machine's own FMA peak.
 *
 * 1. Peak: a tight loop of independent FMAs on 16-wide zmm (AVX-512) and 8-wide ymm (AVX2)
 *    registers, with enough accumulators to cover the FMA latency.
 * 2. GEMM: the built-in GEMM and CBLAS (when compiled in) on 512^3 and the Conv4 im2col
 *    shapes.
 * 3. conv2d forward / backward-data / backward-weight on the Conv4 shapes (batch 80).
 * Each number is the median of several samples (each a run of calls lasting about 2 ms) after a
 * warm-up; the percentage is of the best peak measured in step 1. Usage: kernels [runs] */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/internal.h"
#include "metalearn/kernels.h"
#include "ml_config.h"

#define PEAK_ITERS 20000000LL

/* 12 accumulators x 16 lanes x 2 flops per iteration; the latency of 4 cycles times 2 FMA
 * ports needs at least 8 in flight. */
__attribute__((target("avx512f,avx512vl,avx2,fma"), noinline)) static double peak_avx512(long long iters) {
  /* distinct starting values, or the compiler merges identical accumulators */
#define INIT(i) __m512 a##i = _mm512_set1_ps(1.0f + 0.01f * i);
  INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5) INIT(6) INIT(7) INIT(8) INIT(9) INIT(10) INIT(11)
#undef INIT
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  double t = ml_now();
  for (long long i = 0; i < iters; i++) {
    a0 = _mm512_fmadd_ps(a0, m, c), a1 = _mm512_fmadd_ps(a1, m, c), a2 = _mm512_fmadd_ps(a2, m, c);
    a3 = _mm512_fmadd_ps(a3, m, c), a4 = _mm512_fmadd_ps(a4, m, c), a5 = _mm512_fmadd_ps(a5, m, c);
    a6 = _mm512_fmadd_ps(a6, m, c), a7 = _mm512_fmadd_ps(a7, m, c), a8 = _mm512_fmadd_ps(a8, m, c);
    a9 = _mm512_fmadd_ps(a9, m, c), a10 = _mm512_fmadd_ps(a10, m, c), a11 = _mm512_fmadd_ps(a11, m, c);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
    __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  t = ml_now() - t;
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  if (_mm512_reduce_add_ps(s) == 12345.0f) printf("!");
  return (double)iters * 12 * 16 * 2 / t / 1e9;
}

__attribute__((target("avx2,fma"), noinline)) static double peak_avx2(long long iters) {
  /* distinct starting values, or the compiler merges identical accumulators */
#define INIT(i) __m256 a##i = _mm256_set1_ps(1.0f + 0.01f * i);
  INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5) INIT(6) INIT(7) INIT(8) INIT(9) INIT(10) INIT(11)
#undef INIT
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  double t = ml_now();
  for (long long i = 0; i < iters; i++) {
    a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
    a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
    a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
    __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
  }
  t = ml_now() - t;
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float v[8];
  _mm256_storeu_ps(v, s);
  if (v[0] + v[7] == 12345.0f) printf("!");
  return (double)iters * 12 * 8 * 2 / t / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *ctx);
static int g_runs = 7;

/* Median over g_runs samples of the seconds per call, after one warm-up call. A sample times as
 * many calls back to back as last about 2 ms: a single call of a one-image kernel (16 us) timed
 * alone moved by 10-20% from run to run on a VM whose neighbours take the core for short spells
 * (session 17: the first layer read 40-57% of the peak in successive runs of the same binary). */
#define SAMPLE_SECONDS 2e-3
static double time_median(bench_fn fn, void *ctx) {
  double t[64];
  int n = g_runs < 64 ? g_runs : 64;
  double t0 = ml_now();
  fn(ctx);
  const double once = ml_now() - t0;
  const int calls = once >= SAMPLE_SECONDS ? 1 : once <= 0 ? 1000 : (int)(SAMPLE_SECONDS / once) + 1;
  for (int i = 0; i < n; i++) {
    t0 = ml_now();
    for (int k = 0; k < calls; k++) fn(ctx);
    t[i] = (ml_now() - t0) / calls;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_double);
  return t[n / 2];
}

static double g_peak = 1.0;
static void row(const char *name, const char *backend, double flops, double sec) {
  double gf = flops / sec / 1e9;
  printf("%-44s %-9s %9.3f ms %8.1f GFLOP/s %6.1f%%\n", name, backend, sec * 1e3, gf, 100.0 * gf / g_peak);
}

/* ---- GEMM ---- */
typedef struct {
  bool ta, tb;
  int64_t M, N, K;
  float *A, *B, *C;
} gemm_ctx;

static void run_gemm(void *p) {
  gemm_ctx *g = p;
  ml_gemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->ta ? g->M : g->K, g->B, g->tb ? g->K : g->N, 0.0f, g->C,
          g->N);
}

static float *rnd(int64_t n, uint64_t seed) {
  float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
  ml_rng r;
  ml_rng_init(&r, seed, 1);
  for (int64_t i = 0; i < n; i++) p[i] = ml_rng_uniform(&r) - 0.5f;
  return p;
}

static void bench_gemm(const char *name, bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  gemm_ctx g = {ta, tb, M, N, K, rnd(M * K, 1), rnd(K * N, 2), rnd(M * N, 3)};
  for (int builtin = 1; builtin >= (ML_HAVE_BLAS ? 0 : 1); builtin--) {
    ml_gemm_use_builtin(builtin);
    row(name, builtin ? "builtin" : "openblas", 2.0 * M * N * K, time_median(run_gemm, &g));
  }
  ml_gemm_use_builtin(false);
  free(g.A), free(g.B), free(g.C);
}

/* ---- conv ---- */
typedef struct {
  ml_conv_shape s;
  int which; /* 0 forward, 1 backward data, 2 backward weight */
  float *in, *w, *bias, *out, *scratch;
} conv_ctx;

static void run_conv(void *p) {
  conv_ctx *c = p;
  if (c->which == 0) ml_conv2d_forward(&c->s, c->out, c->in, c->w, c->bias, c->scratch);
  else if (c->which == 1) ml_conv2d_backward_data(&c->s, c->in, c->out, c->w, c->scratch);
  else ml_conv2d_backward_weight(&c->s, c->w, c->in, c->out, c->scratch);
}

static void bench_conv(const char *label, int64_t B, int64_t C, int64_t H, int64_t OC) {
  conv_ctx c = {0};
  if (ml_conv_shape_make(&c.s, B, C, H, H, OC, 3, 3, 1, 1) != ML_OK) return;
  const ml_conv_shape *s = &c.s;
  c.in = rnd(B * C * H * H, 4);
  c.w = rnd(OC * C * 9, 5);
  c.bias = rnd(OC, 6);
  c.out = rnd(B * OC * s->OH * s->OW, 7);
  size_t ns = 0; /* enough for either direct kernel forced */
  for (int k = 0; k < 4; k++) {
    ml__conv_direct_kernel(k);
    size_t n = ml_conv2d_scratch_floats(s);
    ns = n > ns ? n : ns;
  }
  ml__conv_direct_kernel(0);
  c.scratch = rnd((int64_t)ns, 8);
  double flops = 2.0 * B * OC * s->OH * s->OW * C * 9;
  static const char *what[] = {"forward", "backward data", "backward weight"};
  for (int w = 0; w < 3; w++) {
    if (w == 1 && C == 1) continue; /* a first layer needs no input gradient */
    c.which = w;
    char name[96];
    snprintf(name, sizeof name, "conv %s %s", label, what[w]);
    /* auto: what the kernel picks (for stride 1 on AVX-512: straight from the padded images where
     * the rows are wide enough, see kernels/conv_direct.c), then im2col + each GEMM backend */
    for (int k = 0; k < (ML_HAVE_BLAS ? 3 : 2); k++) {
      ml_conv_use_direct(k == 0);
      ml_gemm_use_builtin(k == 1);
      row(name, k == 0 ? "auto" : k == 1 ? "builtin" : "openblas", flops, time_median(run_conv, &c));
    }
    /* each kernel forced, where it takes the shape: direct with vectors along output rows (junk
     * lanes past each row) or along output channels (broadcast pixels, transposed output), and
     * Winograd F(2x2, 3x3) (rates in direct-convolution FLOPs: it does 2.25x fewer multiplies) */
    ml_conv_use_direct(true);
    for (int k = w < 2 ? 1 : 2; k <= 3; k++) { /* the weight gradient has one direct kernel */
      ml__conv_direct_kernel(k);
      bool ok = k == 3 ? (w == 0   ? ml__conv_winograd_forward_ok(s)
                          : w == 1 ? ml__conv_winograd_backward_data_ok(s)
                                   : ml__conv_winograd_weight_ok(s))
                       : (w == 0   ? ml__conv_direct_forward_ok(s)
                          : w == 1 ? ml__conv_direct_backward_data_ok(s)
                                   : ml__conv_direct_backward_weight_ok(s));
      const char *kind = w == 2 ? "direct" : k == 1 ? "direct rows" : "direct chans";
      if (ok && k < 3) row(name, kind, flops, time_median(run_conv, &c));
      for (int m = 2; ok && k == 3 && m <= 4; m += 2) { /* each Winograd tile */
        ml__conv_winograd_tile(m);
        row(name, m == 2 ? "winograd 2x2" : "winograd 4x4", flops, time_median(run_conv, &c));
        ml__conv_winograd_tile(0);
      }
    }
    ml__conv_direct_kernel(0);
  }
  ml_conv_use_direct(true);
  ml_gemm_use_builtin(false);
  free(c.in), free(c.w), free(c.bias), free(c.out), free(c.scratch);
}

int main(int argc, char **argv) {
  if (argc > 1) g_runs = atoi(argv[1]) > 0 ? atoi(argv[1]) : g_runs;
  ml_blas_set_threads(1);
  const char *ct = getenv("OPENBLAS_CORETYPE");
  ml_simd_level l = ml_cpu_simd();
  printf("metalearn %s kernels benchmark, single thread, median of %d runs\n", ml_version(), g_runs);
  printf("simd: %s   OPENBLAS_CORETYPE: %s\n", ml_simd_name(l), ct ? ct : "(not set)");
  ml_gemm_use_builtin(true);
  printf("builtin gemm: %s\n", ml_gemm_backend());
  ml_gemm_use_builtin(false);
  printf("ml_gemm:      %s\n\n", ml_gemm_backend());

  double p512 = 0, p256 = 0;
  if (l >= ML_SIMD_AVX2) {
    peak_avx2(PEAK_ITERS / 10);
    p256 = peak_avx2(PEAK_ITERS);
  }
  if (l >= ML_SIMD_AVX512) {
    peak_avx512(PEAK_ITERS / 10);
    p512 = peak_avx512(PEAK_ITERS);
  }
  printf("FMA peak (fp32, 1 core): avx512 zmm %.1f GFLOP/s, avx2 ymm %.1f GFLOP/s\n", p512, p256);
  g_peak = p512 > p256 ? p512 : p256 > 0 ? p256 : 1.0;
  printf("percentages below are of %.1f GFLOP/s\n\n", g_peak);

  printf("%-44s %-9s %12s %16s %7s\n", "kernel", "backend", "time", "rate", "peak");
  bench_gemm("gemm 512x512x512", false, false, 512, 512, 512);
  bench_gemm("gemm 512x512x512 A^T B^T", true, true, 512, 512, 512);
  bench_gemm("gemm fwd 28x28 M64 N784 K576", false, false, 64, 784, 576);
  bench_gemm("gemm bwd-data 28x28 M576 N784 K64 (A^T)", true, false, 576, 784, 64);
  bench_gemm("gemm bwd-weight 28x28 M64 N576 K784 (B^T)", false, true, 64, 576, 784);
  bench_gemm("gemm fwd 14x14 M64 N196 K576", false, false, 64, 196, 576);
  bench_gemm("gemm fwd first layer M64 N784 K9", false, false, 64, 784, 9);
  bench_gemm("gemm bwd-weight first layer M64 N9 K784 (B^T)", false, true, 64, 9, 784);
  printf("\n");
  bench_conv("80x64x28x28 ->64 3x3 p1", 80, 64, 28, 64);
  bench_conv("80x64x14x14 ->64 3x3 p1", 80, 64, 14, 64);
  bench_conv("80x64x7x7 ->64 3x3 p1", 80, 64, 7, 64);
  bench_conv("80x64x3x3 ->64 3x3 p1", 80, 64, 3, 64);
  bench_conv("80x1x28x28 ->64 3x3 p1", 80, 1, 28, 64);
  /* the first layer as the fused conv + batch-norm + pool block runs it: one image at a time,
   * output in cache (80 images' output, 16 MB, goes to memory and back) */
  bench_conv("1x1x28x28 ->64 3x3 p1 (one image)", 1, 1, 28, 64);
  return 0;
}
