/* kernels/gemm.c: row-major SGEMM, C = alpha * op(A) * op(B) + beta * C.
 *
 * ml_gemm goes to CBLAS when the build has it (and the built-in one is not forced);
 * ml_gemm_builtin is a Goto/BLIS-style GEMM: for each NC-wide column block of B and
 * KC-deep slice, B is packed into NR-wide micro-panels; for each MC-tall row block A is
 * packed into MR-tall micro-panels; a register-blocked micro-kernel then computes each
 * MR x NR tile of C over the KC slice. Packing absorbs the four transpose cases and the
 * leading dimensions, and zero-pads ragged edges so the micro-kernel always sees full tiles
 * (edge tiles are computed into a local tile, then merged).
 *
 * Micro-kernels: AVX-512 (MR x 32, one accumulator pair of zmm per row), AVX2+FMA 6x16,
 * and a plain C 4x16 one. The packing buffers are fixed-size _Thread_local arrays: no
 * allocation per call, and each thread packs into its own. */
#include <immintrin.h>
#include <string.h>

#include "kernels/internal.h"
#include "ml_config.h"

#if ML_HAVE_BLAS
#include <cblas.h>
#endif

/* Blocking. KC: depth of a packed slice; MC: rows of A packed at once (a multiple of every
 * MR: 8, 6, 4, 12); NC: columns of B packed at once (a multiple of every NR). */
#define KC 256
#define MC_MAX 96
#define NC_MAX 1024
#define MR_MAX 16
#define NR_MAX 32 /* also bounds MR */

static _Thread_local float pack_a[MC_MAX * KC] __attribute__((aligned(64)));
static _Thread_local float pack_b[KC * NC_MAX] __attribute__((aligned(64)));

/* c (mr x nr tile, row stride ldc) = alpha * a*b + beta * c; beta == 0: c is not read.
 * a: kc steps of MR floats; b: kc steps of NR floats. */
typedef void (*ukernel_fn)(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                           int64_t ldc, float alpha, float beta);

/* ---- AVX-512: 8 x 32 tile, 16 zmm accumulators (Conv4 has 64 output channels) ---- */
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define R512(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define MR512 8

/* The tile over A element (i, k) at a[i * sa + k * sk]: packed panels (sa = 1, sk = MR) or A read in
 * place (row-major, sa = lda, sk = 1: for a few-row A against a prepacked B, packing A, a transpose,
 * costs more than the 8 strided broadcasts). Inlined into both with their strides constant. */
AVX512_TARGET static inline __attribute__((always_inline)) void tile512(int64_t kc, const float *restrict a,
                                                                        int64_t sa, int64_t sk,
                                                                        const float *restrict b, float *restrict c,
                                                                        int64_t ldc, float alpha, float beta) {
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
  R512(DECL)
#undef DECL
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#define STEP(i)                                \
  {                                            \
    __m512 ai = _mm512_set1_ps(a[i * sa]);     \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0); \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1); \
  }
    R512(STEP)
#undef STEP
    a += sk;
    b += 32;
  }
  __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#define ST(i)                                                 \
  _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, c##i##0));  \
  _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, c##i##1));
    R512(ST)
#undef ST
  } else {
    __m512 vb = _mm512_set1_ps(beta);
#define ST(i)                                                                                          \
  _mm512_storeu_ps(c + i * ldc, _mm512_fmadd_ps(va, c##i##0, _mm512_mul_ps(vb, _mm512_loadu_ps(c + i * ldc)))); \
  _mm512_storeu_ps(c + i * ldc + 16,                                                                   \
                   _mm512_fmadd_ps(va, c##i##1, _mm512_mul_ps(vb, _mm512_loadu_ps(c + i * ldc + 16))));
    R512(ST)
#undef ST
  }
}

AVX512_TARGET static void ukernel_avx512(int64_t kc, const float *restrict a, const float *restrict b,
                                         float *restrict c, int64_t ldc, float alpha, float beta) {
  tile512(kc, a, 1, MR512, b, c, ldc, alpha, beta);
}

AVX512_TARGET static void ukernel_avx512_rowa(int64_t kc, const float *restrict a, int64_t lda,
                                              const float *restrict b, float *restrict c, int64_t ldc, float alpha,
                                              float beta) {
  tile512(kc, a, lda, 1, b, c, ldc, alpha, beta);
}

/* ---- AVX2 + FMA: 6 x 16 tile, 12 ymm accumulators ---- */
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define R256(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define MR256 6

AVX2_TARGET static void ukernel_avx2(int64_t kc, const float *restrict a, const float *restrict b,
                                     float *restrict c, int64_t ldc, float alpha, float beta) {
#define DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
  R256(DECL)
#undef DECL
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#define STEP(i)                                   \
  {                                               \
    __m256 ai = _mm256_broadcast_ss(a + i);       \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);   \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);   \
  }
    R256(STEP)
#undef STEP
    a += MR256;
    b += 16;
  }
  __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#define ST(i)                                                \
  _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, c##i##0)); \
  _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, c##i##1));
    R256(ST)
#undef ST
  } else {
    __m256 vb = _mm256_set1_ps(beta);
#define ST(i)                                                                                          \
  _mm256_storeu_ps(c + i * ldc, _mm256_fmadd_ps(va, c##i##0, _mm256_mul_ps(vb, _mm256_loadu_ps(c + i * ldc)))); \
  _mm256_storeu_ps(c + i * ldc + 8,                                                                    \
                   _mm256_fmadd_ps(va, c##i##1, _mm256_mul_ps(vb, _mm256_loadu_ps(c + i * ldc + 8))));
    R256(ST)
#undef ST
  }
}

/* ---- portable: 4 x 16 tile in plain C (the compiler vectorizes it with SSE) ---- */
#define MRS 4
#define NRS 16
static void ukernel_scalar(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                           int64_t ldc, float alpha, float beta) {
  float acc[MRS][NRS];
  memset(acc, 0, sizeof acc);
  for (int64_t k = 0; k < kc; k++) {
    for (int i = 0; i < MRS; i++)
      for (int j = 0; j < NRS; j++) acc[i][j] += a[i] * b[j];
    a += MRS;
    b += NRS;
  }
  for (int i = 0; i < MRS; i++)
    for (int j = 0; j < NRS; j++)
      c[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

typedef struct {
  int mr, nr;
  ukernel_fn fn;
} ukernel;

static ukernel pick_kernel(ml_simd_level l) {
  switch (l) {
    case ML_SIMD_AVX512: return (ukernel){MR512, 32, ukernel_avx512};
    case ML_SIMD_AVX2: return (ukernel){MR256, 16, ukernel_avx2};
    default: return (ukernel){MRS, NRS, ukernel_scalar};
  }
}

/* dst[k*w + i] = src[i*ld + k] for i < n (zero for n <= i < w), k < kc: the transposing
 * pack. Goes through an 8-deep block in L1 so both reads and writes stay contiguous;
 * writing straight down the panel hits a new cache line per element and is several times
 * slower. */
static void pack_transposed(float *restrict dst, int w, const float *restrict src, int64_t ld, int64_t n,
                            int64_t kc) {
  float blk[NR_MAX][8];
  int64_t k0 = 0;
  for (; k0 + 8 <= kc; k0 += 8) {
    for (int64_t i = 0; i < n; i++) memcpy(blk[i], src + i * ld + k0, sizeof blk[i]);
    for (int t = 0; t < 8; t++) {
      float *d = dst + (k0 + t) * w;
      int64_t i = 0;
      for (; i < n; i++) d[i] = blk[i][t];
      for (; i < w; i++) d[i] = 0.0f;
    }
  }
  for (; k0 < kc; k0++) {
    float *d = dst + k0 * w;
    int64_t i = 0;
    for (; i < n; i++) d[i] = src[i * ld + k0];
    for (; i < w; i++) d[i] = 0.0f;
  }
}

/* Packs rows [i0, i0+mc) x depth [p0, p0+kc) of op(A) into MR-tall micro-panels. */
static void pack_a_block(float *restrict dst, bool ta, const float *A, int64_t lda, int64_t i0, int64_t mc,
                         int64_t p0, int64_t kc, int mr) {
  for (int64_t ir = 0; ir < mc; ir += mr) {
    int64_t m = mc - ir < mr ? mc - ir : mr;
    if (ta) {
      /* A stored K x M: a row of the panel (fixed k) is contiguous */
      for (int64_t k = 0; k < kc; k++) {
        const float *src = A + (p0 + k) * lda + i0 + ir;
        float *d = dst + k * mr;
        /* constant sizes, inlined: GCC turns the loop into a memcpy call per k (8 floats),
         * which showed in profiles of DKT's recurrent weight gradient (A^T, K = all steps) */
        if (m == mr && mr == 8) {
          memcpy(d, src, 8 * sizeof(float));
          continue;
        }
        if (m == mr && mr == 6) {
          memcpy(d, src, 6 * sizeof(float));
          continue;
        }
        int64_t ii = 0;
        for (; ii < m; ii++) d[ii] = src[ii];
        for (; ii < mr; ii++) d[ii] = 0.0f;
      }
    } else {
      pack_transposed(dst, mr, A + (i0 + ir) * lda + p0, lda, m, kc);
    }
    dst += kc * mr;
  }
}

/* Packs depth [p0, p0+kc) x columns [j0, j0+nc) of op(B) into NR-wide micro-panels. */
static void pack_b_block(float *restrict dst, bool tb, const float *B, int64_t ldb, int64_t p0, int64_t kc,
                         int64_t j0, int64_t nc, int nr) {
  for (int64_t jr = 0; jr < nc; jr += nr) {
    int64_t n = nc - jr < nr ? nc - jr : nr;
    if (!tb) {
      for (int64_t k = 0; k < kc; k++) {
        const float *src = B + (p0 + k) * ldb + j0 + jr;
        float *d = dst + k * nr;
        /* constant sizes, so the copies are inlined instead of a memcpy call per row */
        if (n == nr && nr == 32) memcpy(d, src, 32 * sizeof(float));
        else if (n == nr && nr == 16) memcpy(d, src, 16 * sizeof(float));
        else if (n == nr) memcpy(d, src, (size_t)nr * sizeof(float));
        else {
          int64_t jj = 0;
          for (; jj < n; jj++) d[jj] = src[jj];
          for (; jj < nr; jj++) d[jj] = 0.0f;
        }
      }
    } else {
      /* B stored N x K: column jj of the panel is contiguous in k */
      pack_transposed(dst, nr, B + (j0 + jr) * ldb + p0, ldb, n, kc);
    }
    dst += kc * nr;
  }
}

static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
    else if (beta != 1.0f)
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
}

/* ct: C is stored transposed (element (i, j) at C[j*ldc + i]); see ml__gemm_level. prepacked: op(B)
 * already in the layout below (ml__gemm_pack_b), else each slice is packed here; rowa (AVX-512,
 * !ta): full row tiles read A in place, only a ragged tail of A is packed. */
static void gemm_packed(ukernel uk, bool rowa, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, const float *prepacked, float beta,
                        float *C, int64_t ldc, bool ct) {
  const int mr = uk.mr, nr = uk.nr;
  const int64_t mc_max = (MC_MAX / mr) * mr;
  float tile[MR_MAX * NR_MAX] __attribute__((aligned(64)));
  const float *pbk = prepacked;
  for (int64_t jc = 0; jc < N; jc += NC_MAX) {
    int64_t nc = N - jc < NC_MAX ? N - jc : NC_MAX;
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = K - pc < KC ? K - pc : KC;
      float beta_k = pc == 0 ? beta : 1.0f; /* later slices accumulate onto the first */
      const float *pbs = pbk;
      if (prepacked) pbk += kc * (((nc + nr - 1) / nr) * nr);
      else pack_b_block(pack_b, tb, B, ldb, pc, kc, jc, nc, nr), pbs = pack_b;
      for (int64_t ic = 0; ic < M; ic += mc_max) {
        int64_t mc = M - ic < mc_max ? M - ic : mc_max, full = rowa ? (mc / mr) * mr : 0;
        if (mc > full) pack_a_block(pack_a + full * kc, ta, A, lda, ic + full, mc - full, pc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          int64_t n = nc - jr < nr ? nc - jr : nr;
          const float *pb = pbs + (jr / nr) * kc * nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            int64_t m = mc - ir < mr ? mc - ir : mr;
            /* a full tile goes straight to C; an edge tile (or transposed C) through `tile` */
            bool direct = !ct && m == mr && n == nr;
            float *dst = direct ? C + (ic + ir) * ldc + jc + jr : tile;
            int64_t ldd = direct ? ldc : nr;
            if (ir < full) ukernel_avx512_rowa(kc, A + (ic + ir) * lda + pc, lda, pb, dst, ldd, direct ? alpha : 1.0f,
                                               direct ? beta_k : 0.0f);
            else uk.fn(kc, pack_a + (ir / mr) * kc * mr, pb, dst, ldd, direct ? alpha : 1.0f, direct ? beta_k : 0.0f);
            if (direct) continue;
            for (int64_t i = 0; i < m; i++)
              for (int64_t j = 0; j < n; j++) {
                int64_t r = ic + ir + i, q = jc + jr + j;
                float *c = ct ? C + q * ldc + r : C + r * ldc + q;
                float v = alpha * tile[i * nr + j];
                *c = beta_k == 0.0f ? v : v + beta_k * *c;
              }
          }
        }
      }
    }
  }
}

/* ---- B packed once, multiplied many times (an RNN's recurrent weights at every step) ----
 * The layout is gemm_packed's own: for each NC-wide column block and KC-deep slice, the slice's
 * NR-wide micro-panels (zero-padded), blocks one after the other. */
static int64_t packed_b_floats(ukernel uk, int64_t N, int64_t K) {
  int64_t n = 0;
  for (int64_t jc = 0; jc < N; jc += NC_MAX) {
    int64_t nc = N - jc < NC_MAX ? N - jc : NC_MAX;
    n += K * ((nc + uk.nr - 1) / uk.nr) * uk.nr;
  }
  return n;
}

int64_t ml__gemm_packed_b_floats(ml_simd_level level, int64_t N, int64_t K) {
  return packed_b_floats(pick_kernel(level), N, K);
}

void ml__gemm_pack_b(ml_simd_level level, bool tb, int64_t N, int64_t K, const float *B, int64_t ldb,
                     float *packed) {
  ukernel uk = pick_kernel(level);
  for (int64_t jc = 0; jc < N; jc += NC_MAX) {
    int64_t nc = N - jc < NC_MAX ? N - jc : NC_MAX, w = ((nc + uk.nr - 1) / uk.nr) * uk.nr;
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = K - pc < KC ? K - pc : KC;
      pack_b_block(packed, tb, B, ldb, pc, kc, jc, nc, uk.nr);
      packed += kc * w;
    }
  }
}

void ml__gemm_prepacked(ml_simd_level level, bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *packed, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm_packed(pick_kernel(level), level == ML_SIMD_AVX512 && !ta, ta, false, M, N, K, alpha, A, lda, NULL, 0, packed,
              beta, C, ldc, false);
}

int64_t ml_gemm_packed_b_floats(int64_t N, int64_t K) { return ml__gemm_packed_b_floats(ml__simd_level(), N, K); }

void ml_gemm_pack_b(bool tb, int64_t N, int64_t K, const float *B, int64_t ldb, float *packed) {
  ml__gemm_pack_b(ml__simd_level(), tb, N, K, B, ldb, packed);
}

void ml_gemm_prepacked(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *packed, float beta, float *C, int64_t ldc) {
  ml__gemm_prepacked(ml__simd_level(), ta, M, N, K, alpha, A, lda, packed, beta, C, ldc);
}

/* The built-in GEMM at a given SIMD level (the tests call each level). */
void ml__gemm_level(ml_simd_level level, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  ukernel uk = pick_kernel(level);
  if (N <= uk.nr / 2 && M > N) {
    /* Narrow C (e.g. a first-layer weight gradient, N = 9): most of each NR-wide tile would
     * be padding, so compute C^T = op(B)^T op(A)^T, whose wide side is M, and store it
     * transposed. op(B)^T is B read with the opposite transpose flag; likewise A. */
    gemm_packed(uk, false, !tb, !ta, N, M, K, alpha, B, ldb, A, lda, NULL, beta, C, ldc, true);
    return;
  }
  gemm_packed(uk, false, ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, false);
}

void ml_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  ml__gemm_level(ml__simd_level(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Products of at most this many multiply-adds (a classifier head's, a ProtoNet's distances: 20 x 300
 * x 64) never go to BLAS: OpenBLAS packs into a buffer pool whose slot a call gets depends on which
 * other threads are inside OpenBLAS at that moment, so a slot first touched late faults its pages
 * into a steady state (seen on Intel and Zen 3, 1-6 faults per run); at this size its call overhead
 * also matches the whole product's work. */
#define SMALL_GEMM 524288.0

void ml_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
             const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#if ML_HAVE_BLAS
  /* BLAS unless the built-in GEMM runs wider vectors than BLAS's kernel here (see cpu.c), and
   * even then BLAS for narrow products (a first-layer weight gradient, N = 9), where its
   * small-matrix kernels are 2x faster; unless they are SSE kernels (see cpu.c) */
  if (!ml__gemm_builtin_forced() && M > 0 && N > 0 && (double)M * (double)N * (double)K > SMALL_GEMM &&
      !(ml__gemm_auto_builtin() && ((M >= 16 && N >= 16) || ml__gemm_narrow_builtin()))) {
    if (K <= 0) {
      scale_c(M, N, beta, C, ldc);
      return;
    }
    /* beta == 0 must not read C; OpenBLAS honours that (it scales by zero with a memset). */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
    return;
  }
#endif
  ml_gemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
