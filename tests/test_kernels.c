/* Tests for src/kernels: every fast kernel against its naive reference on odd shapes, at
 * every SIMD level this CPU supports (forced through ml__simd_force), plus adjoint identities
 * for the conv backward kernels and the max-pool gather/scatter pair.
 *
 * Tolerances: the fast kernels accumulate in float in a blocked order while the references
 * sum in double, so a dot product of length K differs by about sqrt(K) * 2^-24 times the sum
 * of |terms|. Where results can cancel to near zero a relative bound alone is meaningless, so
 * the GEMM/conv checks use rtol 1e-4 plus an absolute term scaled by K (values are O(1)). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/internal.h"
#include "metalearn/kernels.h"
#include "ml_config.h"

static float *fvec(int64_t n, uint64_t seed, float lo, float hi) {
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  ml_test_fill(p, n, seed, lo, hi);
  return p;
}

static double dot(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* ---- CPU and backend ---- */

ML_TEST(simd_names_and_backend) {
  CHECK(!strcmp(ml_simd_name(ML_SIMD_SCALAR), "scalar"));
  CHECK(!strcmp(ml_simd_name(ML_SIMD_AVX2), "avx2"));
  CHECK(!strcmp(ml_simd_name(ML_SIMD_AVX512), "avx512"));
  ml_simd_level l = ml_cpu_simd();
  CHECK(l >= ML_SIMD_SCALAR && l <= ML_SIMD_AVX512);
  const char *b = ml_gemm_backend();
  CHECK(b && *b);
  ml_gemm_use_builtin(true);
  CHECK(!strncmp(ml_gemm_backend(), "builtin ", 8));
  ml_gemm_use_builtin(false);
#if ML_HAVE_BLAS
  const char *want = ml__gemm_auto_builtin() ? "builtin " : "openblas ";
  CHECK_MSG(!strncmp(ml_gemm_backend(), want, strlen(want)), "backend: %s", ml_gemm_backend());
  ml_blas_set_threads(1);
#endif
  /* The automatic choice: the built-in GEMM only where BLAS's kernel is narrower than the
   * vectors this process runs at full width. */
  CHECK(ml__gemm_prefer_builtin("Haswell", ML_SIMD_AVX512, true));
  CHECK(ml__gemm_narrow_prefer_builtin("Prescott") && ml__gemm_narrow_prefer_builtin("NEHALEM"));
  CHECK(!ml__gemm_narrow_prefer_builtin("Haswell") && !ml__gemm_narrow_prefer_builtin("SkylakeX"));
  CHECK(ml__gemm_prefer_builtin("ZEN", ML_SIMD_AVX512, true));
  CHECK(!ml__gemm_prefer_builtin("Haswell", ML_SIMD_AVX512, false)); /* zmm split in halves (Zen 4) */
  CHECK(!ml__gemm_prefer_builtin("SkylakeX", ML_SIMD_AVX512, true));
  CHECK(!ml__gemm_prefer_builtin("sapphirerapids", ML_SIMD_AVX512, true));
  CHECK(!ml__gemm_prefer_builtin("Haswell", ML_SIMD_AVX2, true));
  CHECK(!ml__gemm_prefer_builtin(NULL, ML_SIMD_AVX512, true));
  CHECK(l == ML_SIMD_AVX512 || !ml__cpu_full_width_512());
  fprintf(stderr, "  simd %s, gemm %s\n", ml_simd_name(l), ml_gemm_backend());
}

/* ---- GEMM ---- */

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                        int64_t, float, float *, int64_t);

static ml_simd_level cur_level;
static void gemm_at_level(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  ml__gemm_level(cur_level, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* One GEMM case with padded leading dims; C outside the M x N window must stay untouched. */
static void check_gemm(gemm_fn fn, const char *what, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta) {
  int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
  int64_t arows = ta ? K : M, brows = tb ? N : K;
  float *A = fvec(arows * lda, 1 + (uint64_t)M, -1, 1), *B = fvec(brows * ldb, 2 + (uint64_t)N, -1, 1);
  float *C = fvec(M * ldc, 3, -1, 1), *R = malloc((size_t)(M * ldc) * sizeof(float));
  if (beta == 0.0f)
    for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN; /* beta == 0 must not read C */
  memcpy(R, C, (size_t)(M * ldc) * sizeof(float));
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = N; j < ldc; j++) C[i * ldc + j] = R[i * ldc + j] = 7.0f; /* padding sentinel */
  fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  ml_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
  int64_t w = 0;
  double r = ml_test_close(C, R, M * ldc, 1e-6 * (double)K + 1e-6, 1e-4, &w);
  CHECK_MSG(r <= 1.0, "%s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: C[%lld] %.9g vs %.9g", what, ta, tb,
            (long long)M, (long long)N, (long long)K, alpha, beta, (long long)w, C[w], R[w]);
  free(A), free(B), free(C), free(R);
}

static const int64_t gemm_shapes[][3] = {
    {1, 1, 1},   {3, 7, 5},     {17, 33, 9},   {12, 32, 256}, {13, 31, 257}, {33, 17, 300},
    {7, 1100, 3}, {100, 40, 70}, {64, 196, 576}, {1, 50, 33},   {50, 1, 33},   {5, 5, 0},
    /* narrow C: computed transposed */
    {64, 9, 300},  {100, 16, 7},  {21, 3, 260}};

static void run_gemm_suite(gemm_fn fn, const char *what) {
  const float ab[][2] = {{1.0f, 0.0f}, {0.5f, -1.5f}, {-2.0f, 1.0f}};
  for (size_t s = 0; s < sizeof gemm_shapes / sizeof gemm_shapes[0]; s++)
    for (int t = 0; t < 4; t++)
      for (int k = 0; k < 3; k++)
        check_gemm(fn, what, t & 1, t >> 1, gemm_shapes[s][0], gemm_shapes[s][1], gemm_shapes[s][2], ab[k][0],
                   ab[k][1]);
}

ML_TEST(gemm_builtin_each_level) {
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    cur_level = (ml_simd_level)l;
    run_gemm_suite(gemm_at_level, ml_simd_name(cur_level));
  }
}

ML_TEST(gemm_dispatch_and_blas) {
  run_gemm_suite(ml_gemm_builtin, "builtin");
  run_gemm_suite(ml_gemm, "ml_gemm");
  ml_gemm_use_builtin(true);
  run_gemm_suite(ml_gemm, "ml_gemm forced builtin");
  ml_gemm_use_builtin(false);
}

ML_TEST(gemm_large_blocks) {
  /* crosses every blocking boundary (MC, KC, NC) at once, at the best level */
  cur_level = ml_cpu_simd();
  check_gemm(gemm_at_level, "large", false, false, 203, 1100, 530, 1.0f, 0.0f);
  check_gemm(gemm_at_level, "large", true, true, 203, 1100, 530, 0.5f, 2.0f);
}

/* B packed once, then multiplied (the RNN path): the same suite through pack + prepacked GEMM */
static void gemm_prepacked_at_level(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  int64_t nf = ml__gemm_packed_b_floats(cur_level, N, K);
  float *buf = malloc((size_t)(nf + 16) * sizeof(float)), *pk = (float *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
  if (K > 0 && N > 0) ml__gemm_pack_b(cur_level, tb, N, K, B, ldb, pk);
  ml__gemm_prepacked(cur_level, ta, M, N, K, alpha, A, lda, pk, beta, C, ldc);
  free(buf);
}

ML_TEST(gemm_prepacked_each_level) {
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    cur_level = (ml_simd_level)l;
    run_gemm_suite(gemm_prepacked_at_level, "prepacked");
    /* several NC blocks and KC slices, and the LSTM's shapes (64 rows against 800 x 200) */
    check_gemm(gemm_prepacked_at_level, "prepacked large", false, true, 203, 1100, 530, 1.0f, 0.0f);
    check_gemm(gemm_prepacked_at_level, "prepacked large", true, false, 203, 1100, 530, 0.5f, 2.0f);
    check_gemm(gemm_prepacked_at_level, "prepacked lstm", false, true, 64, 800, 200, 1.0f, 1.0f);
    check_gemm(gemm_prepacked_at_level, "prepacked lstm", false, false, 61, 200, 800, 1.0f, 0.0f);
  }
  /* the public entry points use the process's level */
  int64_t N = 40, K = 30, M = 9;
  float *A = fvec(M * K, 5, -1, 1), *B = fvec(K * N, 6, -1, 1), *C = malloc((size_t)(M * N) * 4), *R = malloc((size_t)(M * N) * 4);
  float *buf = malloc((size_t)(ml_gemm_packed_b_floats(N, K) + 16) * 4), *pk = (float *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
  ml_gemm_pack_b(false, N, K, B, N, pk);
  ml_gemm_prepacked(false, M, N, K, 1.0f, A, K, pk, 0.0f, C, N);
  ml_gemm_ref(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, R, N);
  int64_t w;
  CHECK(ml_test_close(C, R, M * N, 1e-5, 1e-5, &w) <= 1.0);
  free(A), free(B), free(C), free(R), free(buf);
}

/* ---- conv2d ---- */

typedef struct {
  int64_t B, C, H, W, OC, KH, KW, stride, pad;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 7, 9, 5, 3, 3, 1, 1},  {2, 3, 7, 9, 5, 3, 3, 2, 1},  {1, 2, 8, 8, 4, 3, 3, 2, 0},
    {2, 4, 5, 5, 3, 1, 1, 1, 0},  {1, 3, 11, 6, 2, 5, 3, 1, 2}, {3, 1, 28, 28, 8, 3, 3, 1, 1},
    {2, 16, 7, 7, 17, 3, 3, 1, 1}, {1, 2, 6, 7, 3, 1, 1, 2, 0}, {1, 2, 3, 3, 2, 3, 3, 2, 2},
    {2, 5, 3, 3, 4, 3, 3, 1, 1},  {1, 3, 9, 4, 2, 2, 3, 2, 1},  {1, 1, 1, 1, 1, 1, 1, 1, 0},
    /* batched small planes (several images per GEMM), with a ragged last group */
    {7, 2, 7, 7, 3, 3, 3, 1, 1},  {31, 2, 3, 3, 3, 3, 3, 1, 1}, {7, 3, 5, 5, 4, 1, 1, 1, 0},
    {9, 2, 6, 5, 3, 3, 3, 2, 1},
    /* rows longer than one 16-lane vector, not a multiple of it, wide padding */
    {2, 3, 9, 37, 4, 3, 5, 1, 2}, {1, 2, 4, 17, 3, 3, 3, 1, 1},
    /* more images than a weight-gradient group: partial sums added in group order */
    {150, 3, 9, 9, 4, 3, 3, 1, 1}, {150, 2, 3, 3, 3, 3, 3, 1, 1},
    /* stride 1 straight from padded images (AVX-512): Conv4's 14x14 layer, channels not a multiple
     * of the 8-channel tile, a 1x1 kernel with padding (backward data falls back), no padding
     * (backward data padded by 2), 16-wide padded rows, planes of 1-2 vectors, a tall kernel;
     * weight gradient: (channel, tap) rows not a multiple of its 6-row tile, output channels past
     * one 64-channel tile and not a multiple of 16, several weight groups */
    {2, 64, 14, 14, 64, 3, 3, 1, 1}, {3, 9, 13, 20, 21, 3, 3, 1, 0}, {2, 3, 12, 12, 9, 1, 1, 1, 1},
    {2, 4, 10, 16, 13, 3, 3, 1, 1}, {2, 7, 2, 5, 3, 3, 3, 1, 1}, {2, 5, 16, 12, 70, 5, 3, 1, 2},
    {1, 9, 30, 33, 17, 3, 3, 1, 1}, {150, 8, 12, 12, 5, 3, 3, 1, 1},
    /* weight gradient of few (channel, tap) rows, vectorized along output rows: Conv4's first
     * layer, an odd channel count, rows of 16 + 1 and of 2, no padding, 7 input channels */
    {3, 1, 28, 28, 64, 3, 3, 1, 1}, {2, 1, 9, 17, 5, 3, 3, 1, 1}, {2, 2, 4, 2, 3, 3, 3, 1, 1},
    {2, 3, 11, 19, 4, 3, 3, 1, 0}, {70, 7, 5, 6, 6, 3, 3, 1, 1},
    /* padding wider than a vector: the padded copy's zero runs span several stores */
    {1, 2, 5, 4, 3, 3, 3, 1, 9}, {2, 16, 3, 18, 64, 3, 3, 1, 9},
    /* AVX2 first layer (8-lane flat tiles of 4 channels x 3 vectors): an output past 8 MB
     * (streamed stores), a ragged last vector and a channel count not a multiple of 4, 3-wide rows */
    {48, 1, 28, 28, 64, 3, 3, 1, 1}, {1, 2, 13, 11, 7, 3, 3, 1, 1}, {2, 1, 5, 3, 6, 3, 3, 1, 1}};

static void check_conv(const conv_case *cc, const char *what) {
  ml_conv_shape s;
  CHECK_OK(ml_conv_shape_make(&s, cc->B, cc->C, cc->H, cc->W, cc->OC, cc->KH, cc->KW, cc->stride, cc->pad));
  int64_t nin = s.B * s.C * s.H * s.W, nw = s.OC * s.C * s.KH * s.KW, nout = s.B * s.OC * s.OH * s.OW;
  int64_t K = s.C * s.KH * s.KW;
  size_t ns = ml_conv2d_scratch_floats(&s);
  float *in = fvec(nin, 11, -1, 1), *w = fvec(nw, 12, -1, 1), *bias = fvec(s.OC, 13, -1, 1);
  float *g = fvec(nout, 14, -1, 1);
  float *out = malloc((size_t)nout * 4), *ref = malloc((size_t)nout * 4);
  float *din = malloc((size_t)nin * 4), *dinr = malloc((size_t)nin * 4);
  float *dw = malloc((size_t)nw * 4), *dwr = malloc((size_t)nw * 4);
  float *scratch = malloc((ns + 16) * 4);
  for (size_t i = 0; i < ns; i++) scratch[i] = NAN; /* kernels must not read scratch they did not write */
  for (int i = 0; i < 16; i++) scratch[ns + (size_t)i] = 12345.0f; /* overrun guard */
  double atol = 1e-6 * (double)(K > s.OC * s.KH * s.KW ? K : s.OC * s.KH * s.KW) + 1e-6;

  for (int with_bias = 0; with_bias < 2; with_bias++) {
    const float *bb = with_bias ? bias : NULL;
    ml_conv2d_forward(&s, out, in, w, bb, scratch);
    ml_conv2d_forward_ref(&s, ref, in, w, bb);
    int64_t wi;
    double r = ml_test_close(out, ref, nout, atol, 1e-4, &wi);
    CHECK_MSG(r <= 1.0, "%s conv fwd (%lld,%lld,%lld,%lld) oc %lld k %lldx%lld s%lld p%lld bias %d: [%lld] %g vs %g",
              what, (long long)s.B, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.OC,
              (long long)s.KH, (long long)s.KW, (long long)s.stride, (long long)s.pad, with_bias, (long long)wi,
              out[wi], ref[wi]);
  }
  for (int64_t i = 0; i < nin; i++) din[i] = NAN; /* backward data overwrites */
  ml_conv2d_backward_data(&s, din, g, w, scratch);
  ml_conv2d_backward_data_ref(&s, dinr, g, w);
  int64_t wi;
  double r = ml_test_close(din, dinr, nin, atol, 1e-4, &wi);
  CHECK_MSG(r <= 1.0, "%s conv bwd data case (%lld,%lld,%lld,%lld) s%lld p%lld: [%lld] %g vs %g", what,
            (long long)s.B, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.stride, (long long)s.pad,
            (long long)wi, din[wi], dinr[wi]);
  for (int64_t i = 0; i < nw; i++) dw[i] = NAN;
  ml_conv2d_backward_weight(&s, dw, in, g, scratch);
  ml_conv2d_backward_weight_ref(&s, dwr, in, g);
  double atolw = 1e-6 * (double)(s.B * s.OH * s.OW) + 1e-6;
  r = ml_test_close(dw, dwr, nw, atolw, 1e-4, &wi);
  CHECK_MSG(r <= 1.0, "%s conv bwd weight (%lld,%lld,%lld,%lld) s%lld p%lld: [%lld] %g vs %g", what,
            (long long)s.B, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.stride, (long long)s.pad,
            (long long)wi, dw[wi], dwr[wi]);
  /* with the bias gradient in the same pass: the same weight gradient, and the sums of g */
  float *dw2 = malloc((size_t)nw * 4), *db = malloc((size_t)s.OC * 4), *dbr = malloc((size_t)s.OC * 4);
  ml_conv2d_backward_weight_bias(&s, dw2, db, in, g, scratch);
  CHECK_MSG(!memcmp(dw, dw2, (size_t)nw * 4), "%s conv weight gradient changes with the bias gradient", what);
  for (int64_t oc = 0; oc < s.OC; oc++) {
    double t = 0;
    for (int64_t b = 0; b < s.B; b++)
      for (int64_t p = 0; p < s.OH * s.OW; p++) t += g[(b * s.OC + oc) * s.OH * s.OW + p];
    dbr[oc] = (float)t;
  }
  r = ml_test_close(db, dbr, s.OC, atolw, 1e-4, &wi);
  CHECK_MSG(r <= 1.0, "%s conv bias gradient (%lld,%lld,%lld,%lld): [%lld] %g vs %g", what, (long long)s.B,
            (long long)s.C, (long long)s.H, (long long)s.W, (long long)wi, db[wi], dbr[wi]);
  free(dw2), free(db), free(dbr);
  /* adjoints: <conv(x,w), g> == <x, bwd_data(g,w)> == <w, bwd_weight(x,g)> */
  ml_conv2d_forward(&s, out, in, w, NULL, scratch);
  double a = dot(out, g, nout), b = dot(in, din, nin), c = dot(w, dw, nw);
  double scale = 1e-5 * (sqrt((double)nout * K) + 1.0);
  CHECK_MSG(fabs(a - b) <= scale && fabs(a - c) <= scale, "%s conv adjoint: %.9g %.9g %.9g", what, a, b, c);
  for (int i = 0; i < 16; i++)
    CHECK_MSG(scratch[ns + (size_t)i] == 12345.0f, "%s conv (%lld,%lld,%lld,%lld) oc %lld: scratch overrun", what,
              (long long)s.B, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.OC);
  free(in), free(w), free(bias), free(g), free(out), free(ref), free(din), free(dinr), free(dw), free(dwr);
  free(scratch);
}

ML_TEST(conv2d_against_reference) {
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    ml_gemm_use_builtin(true);
    /* direct: each kernel forced on every shape it takes (Winograd, each tile: every 3x3 stride-1
     * shape), then by shape; then im2col */
    static const char *kernel[] = {"im2col", "row-vector", "channel-vector", "winograd 2x2", "winograd 4x4", "by shape"};
    static const int which[] = {0, 1, 2, 3, 3, 0}, tile[] = {0, 0, 0, 2, 4, 0};
    for (int direct = 5; direct >= 0; direct--) {
      ml_conv_use_direct(direct > 0);
      ml__conv_direct_kernel(which[direct]);
      ml__conv_winograd_tile(tile[direct]);
      char what[64];
      snprintf(what, sizeof what, "%s %s", ml_simd_name((ml_simd_level)l), kernel[direct]);
      for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        check_conv(&conv_cases[i], direct ? what : "im2col");
    }
    ml_conv_use_direct(true);
  }
  ml__simd_force(-1);
  ml_gemm_use_builtin(false);
  for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) check_conv(&conv_cases[i], "ml_gemm");
}

/* Winograd is chosen by shape on Conv4's 64-channel layers (AVX-512 or AVX2; planes down to 3x3),
 * not on a first layer or a 2x2 plane, nor at the scalar level, and ml_conv_use_winograd(false)
 * turns it off for all of them. */
ML_TEST(winograd_by_shape_and_off) {
  ml_conv_shape s14, s3, s2, s1;
  CHECK_OK(ml_conv_shape_make(&s14, 5, 64, 14, 14, 64, 3, 3, 1, 1));
  CHECK_OK(ml_conv_shape_make(&s3, 5, 64, 3, 3, 64, 3, 3, 1, 1));
  CHECK_OK(ml_conv_shape_make(&s2, 5, 64, 2, 2, 64, 3, 3, 1, 1));
  CHECK_OK(ml_conv_shape_make(&s1, 5, 1, 28, 28, 64, 3, 3, 1, 1));
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    bool on = l >= ML_SIMD_AVX2;
    CHECK(ml__conv_winograd_forward_ok(&s14) == on && ml__conv_winograd_backward_data_ok(&s14) == on &&
          ml__conv_winograd_weight_ok(&s14) == on && ml__conv_winograd_forward_ok(&s3) == on);
    CHECK(!ml__conv_winograd_forward_ok(&s2) && !ml__conv_winograd_forward_ok(&s1));
    CHECK(on == (strstr(ml_conv_backend(), "winograd") != NULL));
    CHECK(!on || strstr(ml_conv_backend(), ml_simd_name((ml_simd_level)l)) != NULL);
    ml_conv_use_winograd(false);
    CHECK(!ml__conv_winograd_forward_ok(&s14) && !ml__conv_winograd_backward_data_ok(&s14) &&
          !ml__conv_winograd_weight_ok(&s14));
    CHECK(strstr(ml_conv_backend(), "winograd") == NULL);
    ml_conv_use_winograd(true);
  }
  ml__simd_force(-1);
}

/* The layout helpers the Winograd kernels share with conv_direct.c, at every level against plain
 * loops: ml__transpose16 (whole and partial blocks, zeros past rows) and ml__to_padded_hwc (the
 * interior written, channels up to C rounded to 16 zero, the border untouched). */
ML_TEST(transpose_and_padded_hwc_each_level) {
  /* AVX2 moves a last partial block back over its neighbour when there is room: widths, columns
   * and planes just past a multiple of 8 (3x3 and 7x7 planes: 9 and 49 positions) and under 8 */
  static const int64_t tr[][3] = {{16, 16, 16}, {49, 64, 56}, {9, 5, 16}, {64, 196, 64}, {7, 3, 7},
                                  {33, 17, 40}, {9, 64, 9},   {49, 64, 49}, {12, 11, 13}, {5, 9, 6}};
  static const int64_t hwc[][3] = {{64, 14, 14}, {5, 3, 3}, {17, 7, 9}, {1, 28, 28}, {48, 2, 5},
                                   {64, 3, 3},   {16, 2, 3}, {64, 7, 7}};
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
      const int64_t rows = tr[i][0], cols = tr[i][1], width = tr[i][2], lds = cols + 3, ldd = width + 5;
      float *src = fvec(rows * lds, 71, -1, 1), *dst = fvec(cols * ldd, 72, -1, 1);
      float *keep = malloc((size_t)(cols * ldd) * 4);
      memcpy(keep, dst, (size_t)(cols * ldd) * 4);
      ml__transpose16(dst, ldd, src, lds, rows, cols, width);
      int bad = 0;
      for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < ldd; r++)
          bad += dst[c * ldd + r] != (r >= width ? keep[c * ldd + r] : r < rows ? src[r * lds + c] : 0.0f);
      CHECK_MSG(!bad, "%s transpose %lld x %lld width %lld: %d wrong", ml_simd_name((ml_simd_level)l), (long long)rows,
                (long long)cols, (long long)width, bad);
      free(src), free(dst), free(keep);
    }
    for (size_t i = 0; i < sizeof hwc / sizeof hwc[0]; i++) {
      const int64_t C = hwc[i][0], H = hwc[i][1], W = hwc[i][2], ldc = ((C + 15) & ~(int64_t)15) + 16, ph = 2, pw = 1;
      const int64_t Wp = W + 2 * pw, n = (H + 2 * ph) * Wp * ldc;
      float *x = fvec(C * H * W, 73, -1, 1), *dst = malloc((size_t)n * 4);
      for (int64_t k = 0; k < n; k++) dst[k] = 7.0f;
      ml__to_padded_hwc(dst, ldc, Wp, ph, pw, x, C, H, W);
      int bad = 0;
      for (int64_t y = 0; y < H + 2 * ph; y++)
        for (int64_t xx = 0; xx < Wp; xx++)
          for (int64_t c = 0; c < ldc; c++) {
            const bool in = y >= ph && y < H + ph && xx >= pw && xx < W + pw && c < ((C + 15) & ~(int64_t)15);
            const float want = !in ? 7.0f : c < C ? x[(c * H + y - ph) * W + xx - pw] : 0.0f;
            bad += dst[(y * Wp + xx) * ldc + c] != want;
          }
      CHECK_MSG(!bad, "%s padded hwc %lld x %lld x %lld: %d wrong", ml_simd_name((ml_simd_level)l), (long long)C,
                (long long)H, (long long)W, bad);
      free(x), free(dst);
    }
  }
  ml__simd_force(-1);
}

/* A first-layer forward whose output passes the streaming threshold (48 images x 64 channels x
 * 28 x 28: 9.6 MB) against the naive reference, and bit for bit against the same images one at a
 * time (stored through the cache): streamed stores write the same values. */
ML_TEST(conv_forward_streams_large_outputs) {
  ml_conv_shape s, one;
  CHECK_OK(ml_conv_shape_make(&s, 48, 1, 28, 28, 64, 3, 3, 1, 1));
  CHECK_OK(ml_conv_shape_make(&one, 1, 1, 28, 28, 64, 3, 3, 1, 1));
  const int64_t nin = s.B * 784, nout = s.B * 64 * 784, per = 64 * 784;
  float *in = fvec(nin, 91, -1, 1), *w = fvec(64 * 9, 92, -1, 1), *b = fvec(64, 93, -1, 1);
  /* 64-byte aligned, as arena buffers are: the streamed stores take whole aligned vectors */
  float *out = aligned_alloc(64, (size_t)nout * 4), *ref = malloc((size_t)nout * 4), *o1 = malloc((size_t)per * 4);
  size_t ns = ml_conv2d_scratch_floats(&s);
  float *scratch = malloc(ns * 4);
  for (int64_t k = 0; k < nout; k++) out[k] = NAN;
  ml_conv2d_forward(&s, out, in, w, b, scratch);
  ml_conv2d_forward_ref(&s, ref, in, w, b);
  int64_t wi;
  CHECK_MSG(ml_test_close(out, ref, nout, 1e-5, 1e-4, &wi) <= 1.0, "[%lld] %g vs %g", (long long)wi, out[wi], ref[wi]);
  for (int64_t i = 0; i < s.B; i += 7) {
    ml_conv2d_forward(&one, o1, in + i * 784, w, b, scratch);
    CHECK_MSG(!memcmp(o1, out + i * per, (size_t)per * 4), "image %lld differs", (long long)i);
  }
  free(in), free(w), free(b), free(out), free(ref), free(o1), free(scratch);
}

/* ml_conv2d_backward (both gradients from one layout change of dout, Winograd, no pool) gives
 * the bits of the separate calls: one weight group, several (partials added in order), planes
 * of 1 and of 4 tiles, F(2x2) forced, and shapes that fall back (no padding, a first layer). */
ML_TEST(conv_backward_fused_matches_the_separate_kernels) {
  const int64_t cases[][7] = {{2, 64, 14, 14, 64, 1, 0}, {70, 64, 8, 8, 64, 1, 0}, {30, 64, 3, 3, 64, 1, 0},
                              {9, 50, 7, 7, 50, 1, 0},   {3, 48, 10, 9, 64, 1, 2}, {2, 64, 9, 9, 64, 0, 0},
                              {3, 1, 28, 28, 64, 1, 0}};
  int fused = 0;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int64_t *c = cases[ci];
    ml__conv_winograd_tile((int)c[6]);
    ml_conv_shape s;
    CHECK_OK(ml_conv_shape_make(&s, c[0], c[1], c[2], c[3], c[4], 3, 3, 1, c[5]));
    fused += ml__conv_winograd_backward_ok(&s);
    const int64_t nin = s.B * s.C * s.H * s.W, nw = s.OC * s.C * 9, nout = s.B * s.OC * s.OH * s.OW;
    float *in = fvec(nin, 31, -1, 1), *w = fvec(nw, 32, -1, 1), *g = fvec(nout, 33, -1, 1);
    const size_t ns = ml_conv2d_scratch_floats(&s);
    float *scratch = malloc(ns * 4), *res[2][3];
    for (int f = 0; f < 2; f++) {
      for (size_t k = 0; k < ns; k++) scratch[k] = NAN; /* nothing reads scratch it did not write */
      res[f][0] = malloc((size_t)nin * 4), res[f][1] = malloc((size_t)nw * 4), res[f][2] = malloc((size_t)s.OC * 4);
      if (f) ml_conv2d_backward(&s, res[f][0], res[f][1], res[f][2], in, g, w, scratch);
      else {
        ml_conv2d_backward_data(&s, res[f][0], g, w, scratch);
        ml_conv2d_backward_weight_bias(&s, res[f][1], res[f][2], in, g, scratch);
      }
    }
    CHECK_MSG(!memcmp(res[0][0], res[1][0], (size_t)nin * 4), "case %zu: din differs", ci);
    CHECK_MSG(!memcmp(res[0][1], res[1][1], (size_t)nw * 4), "case %zu: dw differs", ci);
    CHECK_MSG(!memcmp(res[0][2], res[1][2], (size_t)s.OC * 4), "case %zu: db differs", ci);
    /* and against the naive references (tolerances as check_conv's) */
    float *ref = malloc((size_t)(nin > nw ? nin : nw) * 4);
    int64_t wi;
    ml_conv2d_backward_weight_ref(&s, ref, in, g);
    CHECK_MSG(ml_test_close(res[1][1], ref, nw, 1e-6 * (double)(s.B * s.OH * s.OW) + 1e-6, 1e-4, &wi) <= 1.0,
              "case %zu: dw[%lld] %g vs %g", ci, (long long)wi, res[1][1][wi], ref[wi]);
    ml_conv2d_backward_data_ref(&s, ref, g, w);
    CHECK_MSG(ml_test_close(res[1][0], ref, nin, 1e-6 * (double)(s.OC * 9) + 1e-6, 1e-4, &wi) <= 1.0,
              "case %zu: din[%lld] %g vs %g", ci, (long long)wi, res[1][0][wi], ref[wi]);
    free(ref);
    for (int f = 0; f < 2; f++)
      for (int k = 0; k < 3; k++) free(res[f][k]);
    free(in), free(w), free(g), free(scratch);
  }
  ml__conv_winograd_tile(0);
  CHECK(fused == 5); /* the last two fall back */
}

/* Kernels split their work only by shape, so a lent pool changes no bit of any result. */
ML_TEST(kernels_with_a_lent_pool_are_bit_identical) {
  ml_pool *pool = ml_pool_new(3);
  CHECK(pool != NULL);
  /* the last two by Winograd: one weight group split into channel bands, and two groups */
  const conv_case cases[] = {{150, 3, 9, 9, 4, 3, 3, 1, 1}, {130, 4, 7, 7, 5, 3, 3, 1, 1}, {70, 2, 28, 28, 3, 3, 3, 1, 1},
                             {20, 40, 10, 9, 50, 3, 3, 1, 1}, {70, 16, 8, 8, 64, 3, 3, 1, 1}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const conv_case *cc = &cases[ci];
    ml_conv_shape s;
    CHECK_OK(ml_conv_shape_make(&s, cc->B, cc->C, cc->H, cc->W, cc->OC, cc->KH, cc->KW, cc->stride, cc->pad));
    int64_t nin = s.B * s.C * s.H * s.W, nw = s.OC * s.C * s.KH * s.KW, nout = s.B * s.OC * s.OH * s.OW;
    float *in = fvec(nin, 21, -1, 1), *w = fvec(nw, 22, -1, 1), *g = fvec(nout, 23, -1, 1);
    float *res[2][3];
    for (int lent = 0; lent < 2; lent++) {
      ml_pool *prev = ml_kernels_set_pool(lent ? pool : NULL);
      CHECK(ml_kernels_workers() == (lent ? 3 : 1));
      size_t ns = ml_conv2d_scratch_floats(&s);
      float *scratch = malloc(ns * 4);
      res[lent][0] = malloc((size_t)nout * 4), res[lent][1] = malloc((size_t)nin * 4), res[lent][2] = malloc((size_t)nw * 4);
      ml_conv2d_forward(&s, res[lent][0], in, w, NULL, scratch);
      ml_conv2d_backward_data(&s, res[lent][1], g, w, scratch);
      ml_conv2d_backward_weight(&s, res[lent][2], in, g, scratch);
      ml_kernels_set_pool(prev);
      free(scratch);
    }
    CHECK_MSG(!memcmp(res[0][0], res[1][0], (size_t)nout * 4), "conv forward case %zu differs with a pool", ci);
    CHECK_MSG(!memcmp(res[0][1], res[1][1], (size_t)nin * 4), "conv backward data case %zu differs with a pool", ci);
    CHECK_MSG(!memcmp(res[0][2], res[1][2], (size_t)nw * 4), "conv backward weight case %zu differs with a pool", ci);
    for (int l = 0; l < 2; l++)
      for (int k = 0; k < 3; k++) free(res[l][k]);
    free(in), free(w), free(g);
  }
  /* pooling, batch-norm and elementwise kernels above their parallel thresholds */
  const int64_t B = 40, C = 16, H = 28, W = 28, n = B * C * H * W, np = n / 4;
  float *x = fvec(n, 31, -2, 2), *y = fvec(n, 32, -2, 2), *gam = fvec(C, 33, 0.5f, 1.5f), *bet = fvec(C, 34, -1, 1);
  float *o[2][8];
  uint8_t *ix[2];
  for (int lent = 0; lent < 2; lent++) {
    ml_pool *prev = ml_kernels_set_pool(lent ? pool : NULL);
    for (int k = 0; k < 8; k++) o[lent][k] = calloc((size_t)n, 4);
    ix[lent] = malloc((size_t)np);
    ml_maxpool2_forward(o[lent][0], ix[lent], x, B, C, H, W);
    ml_maxpool2_scatter(o[lent][1], o[lent][0], ix[lent], B, C, H, W);
    ml_maxpool2_gather(o[lent][2], y, ix[lent], B, C, H, W);
    ml_batchnorm_forward(o[lent][3], o[lent][4], o[lent][4] + C, x, gam, bet, B, C, H * W, 1e-5f);
    ml_batchnorm_backward(o[lent][5], o[lent][6], o[lent][6] + C, y, x, o[lent][4], o[lent][4] + C, gam, B, C, H * W);
    ml_binary(ML_BIN_MUL, o[lent][7], x, gam, B, C, H * W);
    ml_binary(ML_BIN_ADD, o[lent][6] + 2 * C, x, y, 1, n - 2 * C, 1);
    ml_relu_mask_kernel(o[lent][2] + np, y, x, n - np);
    ml_affine_kernel(o[lent][0] + np, x, n - np, 0.5f, 2.0f);
    ml_unary(ML_UN_RELU, o[lent][1] + n / 2, x, n / 2);
    ml_kernels_set_pool(prev);
  }
  CHECK(!memcmp(ix[0], ix[1], (size_t)np));
  for (int k = 0; k < 8; k++) CHECK_MSG(!memcmp(o[0][k], o[1][k], (size_t)n * 4), "buffer %d differs with a pool", k);
  for (int l = 0; l < 2; l++) {
    for (int k = 0; k < 8; k++) free(o[l][k]);
    free(ix[l]);
  }
  free(x), free(y), free(gam), free(bet);
  ml_pool_free(pool);
}

/* The fused batch-norm + max-pool (+ ReLU) matches the kernels in sequence: forward bit for bit,
 * backward against the batch-norm backward of the scattered pooled gradient (masked by the ReLU). */
ML_TEST(batchnorm_pool_fused) {
  /* at every SIMD level, with and without the ReLU; odd sizes leave a row and a column outside
   * the windows; pooled rows shorter and longer than one 16-lane (8-lane) vector, a plane of
   * exactly 8 windows, rows of 8 + 1; small planes (rows of fewer than 4 windows) in batches
   * longer than 8 (AVX2: 8 planes at a time) */
  const int64_t shapes[][4] = {{3, 4, 6, 6},  {2, 3, 7, 5},  {5, 2, 28, 28}, {2, 3, 9, 41}, {1, 2, 6, 34},
                               {2, 2, 3, 64}, {2, 3, 2, 16}, {3, 2, 5, 19},  {11, 2, 7, 7}, {19, 3, 3, 3}};
  const size_t ns = sizeof shapes / sizeof shapes[0];
  for (size_t k = 0; k < 2 * ns * (size_t)(ml_cpu_simd() + 1); k++) {
    ml__simd_force((int)(k / (2 * ns)));
    const bool relu = k % (2 * ns) >= ns;
    const size_t t = k % ns;
    int64_t B = shapes[t][0], C = shapes[t][1], H = shapes[t][2], W = shapes[t][3], n = B * C * H * W;
    int64_t no = B * C * (H / 2) * (W / 2);
    float *x = fvec(n, 51, -2, 3), *gam = fvec(C, 52, 0.5f, 1.5f), *bet = fvec(C, 53, -1, 1), *go = fvec(no, 54, -1, 1);
    float *y = malloc((size_t)n * 4), *o1 = malloc((size_t)no * 4), *o2 = malloc((size_t)no * 4);
    float *gm = malloc((size_t)no * 4);
    float st1[16], st2[16], dg1[8], db1[8], dg2[8], db2[8];
    uint8_t *i1 = malloc((size_t)no), *i2 = malloc((size_t)no);
    ml_batchnorm_forward(y, st1, st1 + 8, x, gam, bet, B, C, H * W, 1e-5f);
    ml_maxpool2_forward(o1, i1, y, B, C, H, W);
    memcpy(gm, go, (size_t)no * 4);
    if (relu) {
      ml_relu_mask_kernel(gm, go, o1, no); /* the ReLU's backward, from its input */
      ml_unary(ML_UN_RELU, o1, o1, no);
    }
    ml_batchnorm_pool_forward(o2, i2, st2, st2 + 8, x, gam, bet, B, C, H, W, 1e-5f, relu);
    CHECK(!memcmp(o1, o2, (size_t)no * 4) && !memcmp(i1, i2, (size_t)no));
    CHECK(!memcmp(st1, st2, (size_t)C * 4) && !memcmp(st1 + 8, st2 + 8, (size_t)C * 4));
    float *dy = malloc((size_t)n * 4), *dx1 = malloc((size_t)n * 4), *dx2 = malloc((size_t)n * 4);
    ml_maxpool2_scatter(dy, gm, i1, B, C, H, W);
    ml_batchnorm_backward(dx1, dg1, db1, dy, x, st1, st1 + 8, gam, B, C, H * W);
    ml_batchnorm_pool_backward(dx2, dg2, db2, go, relu ? o2 : NULL, i2, x, st2, st2 + 8, gam, B, C, H, W);
    CHECK_CLOSE(dx2, dx1, n, 1e-5, 1e-4);
    CHECK_CLOSE(dg2, dg1, C, 1e-5, 1e-4);
    CHECK_CLOSE(db2, db1, C, 1e-5, 1e-4);
    free(x), free(gam), free(bet), free(go), free(y), free(o1), free(o2), free(i1), free(i2), free(dy), free(dx1), free(dx2);
    free(gm);
  }
  ml__simd_force(-1);
}

/* The convolution + batch-norm + pool that recomputes the convolution matches the unfused
 * kernels in sequence (each checked against its reference above): forward to rounding (the
 * statistics are merged per image) with the same argmax, backward (every gradient) to rounding;
 * with a pool lent, the same bits. Every SIMD level, direct convolutions on and off, with and
 * without the ReLU; odd planes (a row and a column outside the windows), padding 0 to 2, one and
 * several input channels. */
ML_TEST(conv_bn_pool_fused) {
  const int64_t shapes[][6] = {/* B, C, H, W, OC, pad */
                               {4, 1, 28, 28, 16, 1}, {3, 3, 7, 9, 5, 1}, {2, 2, 9, 6, 8, 0}, {3, 1, 6, 5, 3, 2}};
  const size_t ns = sizeof shapes / sizeof shapes[0];
  ml_pool *pool = ml_pool_new(3);
  for (size_t k = 0; k < 2 * ns * (size_t)(ml_cpu_simd() + 1); k++) {
    const size_t t = k % ns;
    ml__simd_force((int)(k / (2 * ns)));
    ml_conv_use_direct((k / ns) % 2 == 0);
    const bool relu = (t + k / ns) % 2 == 1; /* each shape with and without, at every SIMD level */
    const int64_t B = shapes[t][0], C = shapes[t][1], H = shapes[t][2], W = shapes[t][3], OC = shapes[t][4];
    ml_conv_shape s;
    CHECK_OK(ml_conv_shape_make(&s, B, C, H, W, OC, 3, 3, 1, shapes[t][5]));
    const int64_t nx = B * C * H * W, nz = B * OC * s.OH * s.OW, np = B * OC * (s.OH / 2) * (s.OW / 2), nw = OC * C * 9;
    float *x = fvec(nx, 71 + t, -1, 2), *w = fvec(nw, 72, -0.5f, 0.5f), *bias = fvec(OC, 73, -0.3f, 0.3f);
    float *gam = fvec(OC, 74, 0.5f, 1.5f), *bet = fvec(OC, 75, -1, 1), *go = fvec(np, 76, -1, 1);
    float *z = malloc((size_t)nz * 4), *dz = malloc((size_t)nz * 4), *o1 = malloc((size_t)np * 4);
    float *sc = malloc(ml_conv2d_scratch_floats(&s) * 4);
    float st1[32], dg1[16], dbe1[16], db1[16], *dw1 = malloc((size_t)nw * 4), *dx1 = malloc((size_t)nx * 4);
    uint8_t *i1 = malloc((size_t)np);
    ml_conv2d_forward(&s, z, x, w, bias, sc);
    ml_batchnorm_pool_forward(o1, i1, st1, st1 + 16, z, gam, bet, B, OC, s.OH, s.OW, 1e-5f, relu);
    ml_batchnorm_pool_backward(dz, dg1, dbe1, go, relu ? o1 : NULL, i1, z, st1, st1 + 16, gam, B, OC, s.OH, s.OW);
    ml_conv2d_backward_weight_bias(&s, dw1, db1, x, dz, sc);
    ml_conv2d_backward_data(&s, dx1, dz, w, sc);
    /* runs 0, 1 without and with a pool; 2, 3 the same keeping the argmax values (AVX2) */
    float *o2[4], *dw2[4], *dx2[4], st2[4][32], dg2[4][16], dbe2[4][16], db2[4][16];
    uint8_t *i2[4];
    const bool keeps = ml__conv_bn_pool_keeps_z(&s);
    for (int run = 0; run < 4; run++) {
      const int lent = run % 2;
      ml_pool *prev = ml_kernels_set_pool(lent ? pool : NULL);
      float *fs = malloc(ml_conv_bn_pool_scratch_floats(&s) * 4);
      float *zp = run >= 2 && keeps ? malloc((size_t)np * 4) : NULL;
      o2[run] = malloc((size_t)np * 4), dw2[run] = malloc((size_t)nw * 4), dx2[run] = malloc((size_t)nx * 4);
      i2[run] = malloc((size_t)np);
      ml__conv_bn_pool_forward_z(&s, o2[run], i2[run], zp, st2[run], st2[run] + 16, x, w, bias, gam, bet, 1e-5f, relu,
                                 fs);
      ml__conv_bn_pool_backward_z(&s, dx2[run], dw2[run], db2[run], dg2[run], dbe2[run], go, relu ? o2[run] : NULL,
                                  i2[run], zp, x, w, bias, st2[run], st2[run] + 16, gam, fs);
      ml_kernels_set_pool(prev);
      free(fs), free(zp);
    }
    for (int run = 2; run < 4; run++) {
      CHECK(!memcmp(o2[run], o2[0], (size_t)np * 4) && !memcmp(i2[run], i2[0], (size_t)np));
      CHECK_CLOSE(dx2[run], dx1, nx, 1e-5, 1e-4);
      CHECK_CLOSE(dw2[run], dw1, nw, 1e-5, 1e-4);
      CHECK_CLOSE(dg2[run], dg1, OC, 1e-5, 1e-4);
      CHECK_CLOSE(dbe2[run], dbe1, OC, 1e-5, 1e-4);
      CHECK_CLOSE(db2[run], db1, OC, 1e-4, 0);
    }
    CHECK(!memcmp(dw2[2], dw2[3], (size_t)nw * 4) && !memcmp(dx2[2], dx2[3], (size_t)nx * 4));
    CHECK(!memcmp(dg2[2], dg2[3], (size_t)OC * 4) && !memcmp(dbe2[2], dbe2[3], (size_t)OC * 4));
    CHECK_CLOSE(o2[0], o1, np, 1e-5, 1e-5);
    CHECK(!memcmp(i2[0], i1, (size_t)np));
    CHECK_CLOSE(st2[0], st1, OC, 1e-6, 1e-5);
    CHECK_CLOSE(st2[0] + 16, st1 + 16, OC, 1e-6, 1e-5);
    CHECK_CLOSE(dx2[0], dx1, nx, 1e-5, 1e-4);
    CHECK_CLOSE(dw2[0], dw1, nw, 1e-5, 1e-4);
    CHECK_CLOSE(dg2[0], dg1, OC, 1e-5, 1e-4);
    CHECK_CLOSE(dbe2[0], dbe1, OC, 1e-5, 1e-4);
    /* the bias gradient is 0 up to rounding (the batch-norm removes a constant): absolute only */
    CHECK_CLOSE(db2[0], db1, OC, 1e-4, 0);
    CHECK(!memcmp(o2[0], o2[1], (size_t)np * 4) && !memcmp(i2[0], i2[1], (size_t)np));
    CHECK(!memcmp(dw2[0], dw2[1], (size_t)nw * 4) && !memcmp(dx2[0], dx2[1], (size_t)nx * 4));
    CHECK(!memcmp(st2[0], st2[1], sizeof st2[0]) && !memcmp(db2[0], db2[1], (size_t)OC * 4));
    for (int l = 0; l < 4; l++) free(o2[l]), free(dw2[l]), free(dx2[l]), free(i2[l]);
    free(x), free(w), free(bias), free(gam), free(bet), free(go), free(z), free(dz), free(o1), free(sc), free(dw1);
    free(dx1), free(i1);
  }
  ml_conv_use_direct(true);
  ml__simd_force(-1);
  ml_pool_free(pool);
}

ML_TEST(conv_shape) {
  ml_conv_shape s;
  CHECK_OK(ml_conv_shape_make(&s, 80, 64, 28, 28, 64, 3, 3, 1, 1));
  CHECK(s.OH == 28 && s.OW == 28);
  CHECK_OK(ml_conv_shape_make(&s, 1, 1, 7, 7, 1, 3, 3, 2, 1));
  CHECK(s.OH == 4 && s.OW == 4);
  CHECK(ml_conv2d_scratch_floats(&s) >= (size_t)(9 * 16));
  CHECK(ml_conv_shape_make(&s, 1, 1, 2, 2, 1, 3, 3, 1, 0) == ML_ERR_SHAPE);
  CHECK(ml_conv_shape_make(&s, 0, 1, 2, 2, 1, 1, 1, 1, 0) == ML_ERR_SHAPE);
  CHECK(ml_conv_shape_make(&s, 1, 1, 2, 2, 1, 1, 1, 0, 0) == ML_ERR_SHAPE);
}

/* ---- max-pool ---- */

ML_TEST(maxpool) {
  /* at every SIMD level: planes of fewer than 16 (AVX-512) or 8 (AVX2) windows take the scalar
   * loops, the others vectors of 16 or 8 windows: rows of 14 and of 18 windows, odd H and W
   * (inputs outside every window), Conv4's, a plane of exactly 8 windows, rows of 8 + 1 */
  const int64_t shapes[][4] = {{2, 3, 7, 9}, {1, 1, 2, 2},  {3, 2, 28, 28}, {1, 1, 5, 3},  {2, 2, 4, 6},
                               {2, 3, 11, 37}, {1, 2, 14, 14}, {2, 1, 9, 33}, {2, 2, 3, 16}, {1, 3, 5, 19}};
  const size_t nt = sizeof shapes / sizeof shapes[0];
  for (size_t k = 0; k < nt * (size_t)(ml_cpu_simd() + 1); k++) {
    const size_t t = k % nt;
    ml__simd_force((int)(k / nt));
    int64_t B = shapes[t][0], C = shapes[t][1], H = shapes[t][2], W = shapes[t][3], n = B * C * (H / 2) * (W / 2);
    float *in = fvec(B * C * H * W, 21 + t, -2, 2);
    if (t == 4 || t == 7)
      for (int64_t i = 0; i < B * C * H * W; i++) in[i] = floorf(in[i]); /* many ties */
    float *out = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4);
    uint8_t *idx = malloc((size_t)n), *idr = malloc((size_t)n);
    ml_maxpool2_forward(out, idx, in, B, C, H, W);
    ml_maxpool2_forward_ref(ref, idr, in, B, C, H, W);
    CHECK(!memcmp(out, ref, (size_t)n * 4));
    CHECK(!memcmp(idx, idr, (size_t)n));
    /* each code (2*dh + dw) names an input equal to its window's max; and its plane offset, for
     * the naive scatter and gather below */
    const int64_t OH = H / 2, OW = W / 2;
    int64_t *pos = malloc((size_t)n * sizeof *pos);
    for (int64_t i = 0; i < n; i++) {
      const int64_t p = i / (OH * OW), oh = i % (OH * OW) / OW, ow = i % OW;
      CHECK(idx[i] < 4);
      pos[i] = (2 * oh + idx[i] / 2) * W + 2 * ow + idx[i] % 2;
      CHECK(in[p * H * W + pos[i]] == out[i]);
    }
    /* scatter against a naive version, and <scatter(g), y> == <g, gather(y)> */
    float *g = fvec(n, 31, -1, 1), *din = fvec(B * C * H * W, 32, 5, 6), *naive = calloc((size_t)(B * C * H * W), 4);
    float *y = fvec(B * C * H * W, 33, -1, 1), *gy = malloc((size_t)n * 4);
    ml_maxpool2_scatter(din, g, idx, B, C, H, W);
    for (int64_t i = 0; i < n; i++) naive[i / (OH * OW) * H * W + pos[i]] += g[i];
    CHECK(!memcmp(din, naive, (size_t)(B * C * H * W) * 4));
    ml_maxpool2_gather(gy, y, idx, B, C, H, W);
    CHECK_NEAR(dot(din, y, B * C * H * W), dot(g, gy, n), 1e-9 * (double)n + 1e-12);
    for (int64_t i = 0; i < n; i++) CHECK(gy[i] == y[i / (OH * OW) * H * W + pos[i]]);
    free(pos);
    free(in), free(out), free(ref), free(idx), free(idr), free(g), free(din), free(naive), free(y), free(gy);
  }
  ml__simd_force(-1);
}

/* ---- batch-norm ---- */

ML_TEST(batchnorm) {
  /* rows of 1 to 196 floats: shorter and longer than the AVX-512 sums' 64 lanes; each SIMD level */
  const int64_t shapes[][3] = {{4, 3, 49}, {1, 5, 1}, {7, 2, 17}, {2, 64, 196}, {3, 1, 33}, {2, 3, 130}};
  const size_t ns = sizeof shapes / sizeof shapes[0];
  for (size_t k = 0; k < ns * (size_t)(ml_cpu_simd() + 1); k++) {
    const size_t t = k % ns;
    ml__simd_force((int)(k / ns));
    int64_t B = shapes[t][0], C = shapes[t][1], HW = shapes[t][2], n = B * C * HW;
    float *x = fvec(n, 41 + t, 2, 4); /* mean far from 0 exercises the centering */
    float *dy = fvec(n, 51 + t, -1, 1), *gamma = fvec(C, 61, 0.5f, 1.5f), *beta = fvec(C, 62, -1, 1);
    float *y = malloc((size_t)n * 4), *yr = malloc((size_t)n * 4), *dx = malloc((size_t)n * 4),
          *dxr = malloc((size_t)n * 4);
    float m[64], is[64], mr[64], isr[64], dg[64], dgr[64], db[64], dbr[64];
    for (int with_affine = 0; with_affine < 2; with_affine++) {
      const float *gp = with_affine ? gamma : NULL, *bp = with_affine ? beta : NULL;
      ml_batchnorm_forward(y, m, is, x, gp, bp, B, C, HW, 1e-5f);
      ml_batchnorm_forward_ref(yr, mr, isr, x, gp, bp, B, C, HW, 1e-5f);
      CHECK_CLOSE(m, mr, C, 1e-6, 1e-6);
      CHECK_CLOSE(is, isr, C, 1e-6, 1e-5);
      CHECK_CLOSE(y, yr, n, 1e-4, 1e-4);
      ml_batchnorm_backward(dx, dg, db, dy, x, m, is, gp, B, C, HW);
      ml_batchnorm_backward_ref(dxr, dgr, dbr, dy, x, mr, isr, gp, B, C, HW);
      /* sums over B*HW terms of size ~1: absolute error grows with their count */
      CHECK_CLOSE(dg, dgr, C, 1e-5 * (double)(B * HW), 1e-4);
      CHECK_CLOSE(db, dbr, C, 1e-5 * (double)(B * HW), 1e-4);
      CHECK_CLOSE(dx, dxr, n, 1e-4, 1e-4);
    }
    free(x), free(dy), free(gamma), free(beta), free(y), free(yr), free(dx), free(dxr);
  }
  ml__simd_force(-1);
}

/* The double backward's vector passes (AVX-512 or AVX2: five sums in one pass, widened to double per row) against
 * the scalar ones, themselves checked by finite differences in test_autograd: rows of 1 to 196
 * floats, with and without the upstream gradient of dx and of gamma. */
ML_TEST(batchnorm_double_backward_each_level) {
  const int64_t shapes[][3] = {{30, 4, 9}, {5, 3, 49}, {2, 64, 196}, {3, 2, 1}, {4, 3, 17}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    const int64_t B = shapes[t][0], C = shapes[t][1], HW = shapes[t][2], n = B * C * HW;
    float *x = fvec(n, 81 + t, 2, 4), *dy = fvec(n, 82 + t, -1, 1), *ggi = fvec(n, 83 + t, -1, 1);
    float *gam = fvec(C, 84, 0.5f, 1.5f), *ggg = fvec(C, 85, -1, 1), m[64], is[64];
    float *y = malloc((size_t)n * 4);
    ml_batchnorm_forward(y, m, is, x, gam, NULL, B, C, HW, 1e-5f);
    for (int with_ggi = 0; with_ggi < 2; with_ggi++) {
      float *out[2][3];
      for (int l = 0; l < 2; l++) {
        ml__simd_force(l ? -1 : 0);
        out[l][0] = malloc((size_t)n * 4), out[l][1] = malloc((size_t)n * 4), out[l][2] = malloc((size_t)C * 4);
        ml_batchnorm_double_backward(out[l][0], out[l][1], out[l][2], x, dy, with_ggi ? ggi : NULL, ggg, m, is, gam, B,
                                     C, HW);
      }
      /* gx and ggamma are sums over B*HW terms scaled by invstd (~1.7 here): error grows with them */
      CHECK_CLOSE(out[1][0], out[0][0], n, 1e-5 * (double)(B * HW), 1e-3);
      CHECK_CLOSE(out[1][1], out[0][1], n, 1e-5, 1e-4);
      CHECK_CLOSE(out[1][2], out[0][2], C, 1e-5 * (double)(B * HW), 1e-3);
      for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) free(out[l][k]);
    }
    free(x), free(dy), free(ggi), free(gam), free(ggg), free(y);
  }
  ml__simd_force(-1);
}

/* ---- elementwise ---- */

static const int64_t pcq[][3] = {{1, 33, 1}, {7, 17, 1}, {3, 5, 17}, {33, 1, 1}, {2, 3, 1}, {1, 1, 1},
                                 {4, 3, 49}, {5, 300, 1}, {1, 1, 1000}, {3, 7, 3}};

ML_TEST(binary_each_level) {
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    for (size_t t = 0; t < sizeof pcq / sizeof pcq[0]; t++) {
      int64_t P = pcq[t][0], C = pcq[t][1], Q = pcq[t][2], n = P * C * Q;
      float *a = fvec(n, 71, -2, 2), *b = fvec(C, 72, 0.5f, 2), *o = malloc((size_t)n * 4), *r = malloc((size_t)n * 4);
      for (int op = ML_BIN_ADD; op <= ML_BIN_DIV; op++) {
        ml_binary((ml_bin_op)op, o, a, b, P, C, Q);
        ml_binary_ref((ml_bin_op)op, r, a, b, P, C, Q);
        CHECK_MSG(!memcmp(o, r, (size_t)n * 4), "binary op %d level %d shape %zu", op, l, t);
      }
      memcpy(o, a, (size_t)n * 4); /* in place */
      ml_binary(ML_BIN_MUL, o, o, b, P, C, Q);
      ml_binary_ref(ML_BIN_MUL, r, a, b, P, C, Q);
      CHECK(!memcmp(o, r, (size_t)n * 4));
      free(a), free(b), free(o), free(r);
    }
  }
  ml__simd_force(-1);
}

ML_TEST(unary_each_level) {
  const int64_t ns[] = {1, 3, 7, 17, 33, 1000};
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
      int64_t n = ns[t];
      float *x = fvec(n, 81 + t, -6, 6), *xp = fvec(n, 82 + t, 0.01f, 5), *o = malloc((size_t)n * 4),
            *r = malloc((size_t)n * 4);
      for (int op = ML_UN_RELU; op <= ML_UN_ABS; op++) {
        bool pos = op == ML_UN_LOG || op == ML_UN_RSQRT || op == ML_UN_SQRT;
        ml_unary((ml_un_op)op, o, pos ? xp : x, n);
        ml_unary_ref((ml_un_op)op, r, pos ? xp : x, n);
        int64_t w;
        double q = ml_test_close(o, r, n, 1e-6, 1e-5, &w); /* libm float vs double: ~1 ulp */
        CHECK_MSG(q <= 1.0, "unary op %d n %lld: [%lld] %.9g vs %.9g", op, (long long)n, (long long)w, o[w], r[w]);
      }
      float *g = fvec(n, 83, -1, 1);
      ml_relu_mask_kernel(o, g, x, n);
      for (int64_t i = 0; i < n; i++) CHECK(o[i] == (x[i] > 0 ? g[i] : 0.0f));
      ml_affine_kernel(o, x, n, 1.5f, -0.25f);
      for (int64_t i = 0; i < n; i++) CHECK_NEAR(o[i], 1.5f * x[i] - 0.25f, 1e-6);
      free(x), free(xp), free(o), free(r), free(g);
    }
  }
  ml__simd_force(-1);
}

ML_TEST(lstm_cell_against_reference) {
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 17}, {4, 200}};
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
      int64_t n = shapes[t][0], H = shapes[t][1];
      float *z = fvec(4 * n * H, 91 + t, -4, 4), *c = fvec(n * H, 92 + t, -2, 2);
      float *dh = fvec(n * H, 93 + t, -1, 1), *dc2 = fvec(n * H, 94 + t, -1, 1);
      float *h = malloc((size_t)(n * H) * 4), *c2 = malloc((size_t)(n * H) * 4), *a = malloc((size_t)(4 * n * H) * 4);
      float *hr = malloc((size_t)(n * H) * 4), *c2r = malloc((size_t)(n * H) * 4), *ar = malloc((size_t)(4 * n * H) * 4);
      float *dz = malloc((size_t)(4 * n * H) * 4), *dc = malloc((size_t)(n * H) * 4);
      float *dzr = malloc((size_t)(4 * n * H) * 4), *dcr = malloc((size_t)(n * H) * 4);
      float *tc = malloc((size_t)(n * H) * 4), *h2 = malloc((size_t)(n * H) * 4), *c2b = malloc((size_t)(n * H) * 4);
      ml_lstm_cell_forward(h, c2, NULL, a, z, c, n, H);
      ml_lstm_cell_forward(h2, c2b, tc, a, z, c, n, H); /* with tanh(c2) kept: the same outputs */
      ml_lstm_cell_forward_ref(hr, c2r, ar, z, c, n, H);
      int64_t w;
      CHECK_MSG(ml_test_close(h, hr, n * H, 1e-5, 1e-5, &w) <= 1.0, "h n %lld H %lld [%lld]", (long long)n, (long long)H, (long long)w);
      CHECK_MSG(ml_test_close(c2, c2r, n * H, 1e-5, 1e-5, &w) <= 1.0, "c2 [%lld]", (long long)w);
      CHECK_MSG(ml_test_close(a, ar, 4 * n * H, 1e-5, 1e-5, &w) <= 1.0, "acts [%lld]", (long long)w);
      CHECK(!memcmp(h, h2, (size_t)(n * H) * 4) && !memcmp(c2, c2b, (size_t)(n * H) * 4));
      for (int64_t k = 0; k < n * H; k++) CHECK_NEAR(tc[k], tanh(c2r[k]), 1e-5);
      /* both, either or neither incoming gradient (zeros for an absent one) */
      float *zero = calloc((size_t)(n * H), sizeof(float));
      for (int m = 0; m < 4; m++) {
        const float *gh = m & 1 ? dh : zero, *gc = m & 2 ? dc2 : zero;
        ml_lstm_cell_backward_ref(dzr, dcr, gh, gc, ar, c, c2r, n, H);
        for (int kept = 0; kept < 2; kept++) { /* tanh(c2) recomputed, or the forward's */
          ml_lstm_cell_backward(dz, dc, gh, gc, a, c, c2, kept ? tc : NULL, n, H);
          CHECK_MSG(ml_test_close(dz, dzr, 4 * n * H, 1e-5, 1e-5, &w) <= 1.0, "dz mode %d [%lld] %g vs %g", m, (long long)w, dz[w], dzr[w]);
          CHECK_MSG(ml_test_close(dc, dcr, n * H, 1e-5, 1e-5, &w) <= 1.0, "dc mode %d [%lld]", m, (long long)w);
        }
      }
      /* dc may overwrite dc2 in place (the sequence op's carry) */
      float *inplace = malloc((size_t)(n * H) * 4);
      memcpy(inplace, dc2, (size_t)(n * H) * 4);
      ml_lstm_cell_backward(dz, inplace, dh, inplace, a, c, c2, tc, n, H);
      ml_lstm_cell_backward_ref(dzr, dcr, dh, dc2, ar, c, c2r, n, H);
      CHECK(ml_test_close(inplace, dcr, n * H, 1e-5, 1e-5, &w) <= 1.0);
      free(zero), free(inplace), free(tc), free(h2), free(c2b);
      free(z), free(c), free(dh), free(dc2), free(h), free(c2), free(a), free(hr), free(c2r), free(ar);
      free(dz), free(dc), free(dzr), free(dcr);
    }
  }
  ml__simd_force(-1);
}

ML_TEST(unary_extremes) {
  const float x[] = {-1000.0f, -100.0f, -30.0f, -1e-8f, 0.0f, 1e-8f, 30.0f, 100.0f, 1000.0f};
  const int64_t n = sizeof x / sizeof x[0];
  float o[16], r[16];
  ml_unary(ML_UN_SOFTPLUS, o, x, n);
  ml_unary_ref(ML_UN_SOFTPLUS, r, x, n);
  for (int64_t i = 0; i < n; i++) CHECK(isfinite(o[i]) && o[i] >= 0.0f);
  CHECK_CLOSE(o, r, n, 1e-30, 1e-5);
  CHECK(o[n - 1] == 1000.0f);
  ml_unary(ML_UN_SIGMOID, o, x, n);
  ml_unary_ref(ML_UN_SIGMOID, r, x, n);
  for (int64_t i = 0; i < n; i++) CHECK(isfinite(o[i]) && o[i] >= 0.0f && o[i] <= 1.0f);
  CHECK_CLOSE(o, r, n, 1e-30, 1e-5);
  CHECK(o[0] == 0.0f && o[n - 1] == 1.0f);
  /* infinities saturate, NaN propagates, at every SIMD level */
  const float inf[] = {INFINITY, -INFINITY, NAN, -0.3f};
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    ml_unary(ML_UN_TANH, o, inf, 4);
    CHECK_MSG(o[0] == 1.0f && o[1] == -1.0f && isnan(o[2]) && fabsf(o[3] - tanhf(-0.3f)) < 1e-6f,
              "tanh(inf, -inf, nan, -0.3) = %g %g %g %g at level %d", o[0], o[1], o[2], o[3], l);
    ml_unary(ML_UN_SIGMOID, o, inf, 4);
    CHECK_MSG(o[0] == 1.0f && o[1] == 0.0f && isnan(o[2]), "sigmoid(inf, -inf, nan) = %g %g %g at level %d", o[0],
              o[1], o[2], l);
  }
  ml__simd_force(-1);
}

ML_TEST(reduce_and_expand_each_level) {
  for (int l = 0; l <= (int)ml_cpu_simd(); l++) {
    ml__simd_force(l);
    for (size_t t = 0; t < sizeof pcq / sizeof pcq[0]; t++) {
      int64_t P = pcq[t][0], C = pcq[t][1], Q = pcq[t][2], n = P * C * Q;
      float *x = fvec(n, 91 + t, -1, 1), *o = malloc((size_t)C * 4), *r = malloc((size_t)C * 4);
      ml_reduce_sum(o, x, P, C, Q);
      ml_reduce_sum_ref(r, x, P, C, Q);
      CHECK_CLOSE(o, r, C, 1e-7, 1e-6); /* both in double: only the final rounding differs */
      /* expand is the adjoint of the sum: <sum(x), y> == <x, expand(y)> */
      float *y = fvec(C, 92, -1, 1), *e = malloc((size_t)n * 4);
      ml_expand(e, y, P, C, Q);
      for (int64_t p = 0; p < P; p++)
        for (int64_t c = 0; c < C; c++)
          for (int64_t q = 0; q < Q; q++) CHECK(e[(p * C + c) * Q + q] == y[c]);
      CHECK_NEAR(dot(o, y, C), dot(x, e, n), 1e-5 * sqrt((double)n));
      free(x), free(o), free(r), free(y), free(e);
    }
  }
  ml__simd_force(-1);
}

ML_TEST(log_softmax_pick) {
  const int64_t shapes[][2] = {{1, 1}, {3, 5}, {7, 33}, {17, 2}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    int64_t R = shapes[t][0], Cn = shapes[t][1], n = R * Cn;
    float *x = fvec(n, 101 + t, -5, 5), *o = malloc((size_t)n * 4), *r = malloc((size_t)n * 4);
    if (t == 2) x[3] = 1000.0f, x[40] = -1000.0f; /* must not overflow */
    ml_log_softmax_kernel(o, x, R, Cn);
    ml_log_softmax_kernel_ref(r, x, R, Cn);
    CHECK_CLOSE(o, r, n, 1e-5, 1e-5);
    for (int64_t i = 0; i < R; i++) {
      double s = 0;
      for (int64_t j = 0; j < Cn; j++) s += exp(o[i * Cn + j]);
      CHECK_NEAR(s, 1.0, 1e-5);
    }
    int32_t *idx = malloc((size_t)R * 4);
    for (int64_t i = 0; i < R; i++) idx[i] = (int32_t)((i * 7 + 3) % Cn);
    float *pk = malloc((size_t)R * 4), *g = fvec(R, 7, -1, 1), *sc = fvec(n, 8, 3, 4);
    ml_pick_kernel(pk, x, idx, R, Cn);
    for (int64_t i = 0; i < R; i++) CHECK(pk[i] == x[i * Cn + idx[i]]);
    ml_pick_scatter(sc, g, idx, R, Cn);
    for (int64_t i = 0; i < R; i++)
      for (int64_t j = 0; j < Cn; j++) CHECK(sc[i * Cn + j] == (j == idx[i] ? g[i] : 0.0f));
    free(x), free(o), free(r), free(idx), free(pk), free(g), free(sc);
  }
}

ML_TEST(embedding) {
  const int64_t V = 11, D = 17, n = 9;
  float *table = fvec(V * D, 111, -1, 1), *out = malloc((size_t)(n * D) * 4), *g = fvec(n * D, 112, -1, 1);
  float *grad = fvec(V * D, 113, -1, 1), *expect = malloc((size_t)(V * D) * 4);
  const int32_t idx[9] = {3, 0, 10, 3, 5, 5, 5, 1, 3};
  ml_embedding_gather(out, table, idx, n, D);
  for (int64_t i = 0; i < n; i++) CHECK(!memcmp(out + i * D, table + idx[i] * D, (size_t)D * 4));
  memcpy(expect, grad, (size_t)(V * D) * 4);
  for (int64_t i = 0; i < n; i++)
    for (int64_t d = 0; d < D; d++) expect[idx[i] * D + d] += g[i * D + d];
  ml_embedding_scatter_add(grad, g, idx, n, D);
  CHECK(!memcmp(grad, expect, (size_t)(V * D) * 4));
  free(table), free(out), free(g), free(grad), free(expect);
}
