/* kernels/conv_winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3)
 * and F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016),
 * AVX-512.
 *
 * Each m x m block of outputs (a tile; m = 4 or 2) comes from the (m+2) x (m+2) input patch
 * around it: with the patch transformed, V = B^T d B, and each filter transformed, U = G g G^T,
 * the tile is A^T (sum over input channels of U . V) A, the product elementwise over the
 * (m+2)^2 points xi of the transformed domain. Per point the channel sum is a GEMM
 * (tiles x C) * (C x OC), so a tile costs (m+2)^2 * C multiply-adds per output channel instead of
 * m^2 * 9 * C: 4x fewer for m = 4 (2.25x for m = 2), for the price of the transforms and of
 * output planes rounded up to whole tiles (14x14 in 4x4 tiles: 16x16). F(4x4) is used by shape:
 * on Conv4's 7x7 to 28x28 planes it beats F(2x2) (bench/kernels: 7x7 forward 1.4 against 2.1 ms,
 * 14x14 6.7 against 7.4, direct 2.8 and 11.3); F(2x2), whose rounding is about 10x smaller,
 * stays for tests and comparisons.
 *
 * Per group of images (a work item; the same bits at any thread count): the padded image is stored
 * channel-minor (pixel, channel) so that the input transform runs on vectors of 16 channels; the
 * GEMMs keep 6 tiles x 64 output channels in 24 registers over the input channels, as the direct
 * channel-vector kernel does (4 vector loads of U and 6 broadcasts of V per channel), one point at
 * a time so that the point's U (C x 64 floats, 16 KB for 64 channels) stays in L1; the output
 * transform writes a (position, channel) buffer, transposed into the image's output planes.
 *
 * Backward data for stride 1 is the same computation with the weights flipped and transposed
 * (conv_direct.c explains why), padded by 2 - pad. Rounding: F(4x4) on 64 channels of values in
 * [-1, 1] is off by ~5e-5 where the outputs reach ~12 (direct summation: ~1e-6), well inside
 * test_kernels' tolerance and far below the gradient noise of training. */
#include <immintrin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/internal.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define TR 6    /* tiles per register block */
#define OB 64   /* output channels per register block (4 vectors) */
#define MAX_TILES 4096

/* Used by shape where it pays (bench/kernels): enough channels for the GEMMs to run at full
 * speed, and planes at least 3 wide (Conv4's 3x3 planes, one 4x4 tile per image, several images
 * per GEMM pass: forward 0.38 against the direct kernel's 0.56 ms). */
#define MIN_C 16
#define MIN_OC 48
#define MIN_OUT 3
#define TILE_BY_SHAPE 4

typedef struct {
  int64_t B, C, H, W, OC, ph, pw, OH, OW;
  int64_t m, xi;     /* outputs per tile side (2 or 4), points of the transformed tile */
  int64_t TH, TW, T; /* tiles down, across, in all */
  int64_t TS;        /* tiles V, M and Y hold: T times the images of one GEMM pass */
  int64_t Hp, Wp;    /* padded channel-minor image (Hp, Wp, Cv) */
  int64_t Cv, OCp;   /* channels rounded up to 16, output channels rounded up to 64 */
} wconv;

/* F(4x4, 3x3) or F(2x2, 3x3): 0 by shape, else that tile (tests, bench/kernels) */
static _Atomic int g_tile;
void ml__conv_winograd_tile(int m) { g_tile = m; }
static _Atomic bool g_off;
void ml_conv_use_winograd(bool on) { g_off = !on; }
bool ml__conv_winograd_on(void) { return !g_off; }

static bool wconv_make(wconv *d, int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t ph, int64_t pw) {
  d->B = B, d->C = C, d->H = H, d->W = W, d->OC = OC, d->ph = ph, d->pw = pw;
  d->OH = H + 2 * ph - 2, d->OW = W + 2 * pw - 2;
  if (ph < 0 || pw < 0 || d->OH < 1 || d->OW < 1) return false;
  d->m = g_tile ? g_tile : TILE_BY_SHAPE, d->xi = (d->m + 2) * (d->m + 2);
  d->TH = (d->OH + d->m - 1) / d->m, d->TW = (d->OW + d->m - 1) / d->m, d->T = d->TH * d->TW;
  if (d->T > MAX_TILES) return false;
  d->TS = d->T;
  d->Hp = d->m * d->TH + 2, d->Wp = d->m * d->TW + 2;
  d->Cv = (C + 15) & ~(int64_t)15, d->OCp = (OC + OB - 1) / OB * OB;
  return true;
}

/* Images per GEMM pass of the forward and backward data: enough tiles for whole 6-tile register
 * blocks (F(4x4) on a 7x7 plane has 4 tiles per image). The grouping changes no bit: each tile's
 * sums run over the channels alone. */
#define FORWARD_TILES 24
static bool batch(wconv *d) {
  int64_t nb = (FORWARD_TILES + d->T - 1) / d->T;
  d->TS = d->T * (nb < d->B ? nb : d->B);
  return true;
}

static bool pays(const wconv *d) { return d->C >= MIN_C && d->OC >= MIN_OC && d->OH >= MIN_OUT && d->OW >= MIN_OUT; }

static bool forward_shape(const ml_conv_shape *s, wconv *d) {
  int which = ml__conv_direct_which();
  return ml__conv_direct_on() && !g_off && (which == 0 || which == 3) && s->stride == 1 && s->KH == 3 &&
         s->KW == 3 && ml__simd_level() >= ML_SIMD_AVX512 &&
         wconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->pad, s->pad) && batch(d) &&
         (which == 3 || pays(d));
}

/* din = conv(dout, flipped transposed w), padded by 2 - pad */
static bool backward_data_shape(const ml_conv_shape *s, wconv *d) {
  int which = ml__conv_direct_which();
  return ml__conv_direct_on() && !g_off && (which == 0 || which == 3) && s->stride == 1 && s->KH == 3 &&
         s->KW == 3 && ml__simd_level() >= ML_SIMD_AVX512 &&
         wconv_make(d, s->B, s->OC, s->OH, s->OW, s->C, 2 - s->pad, 2 - s->pad) && batch(d) && d->OH == s->H &&
         d->OW == s->W && (which == 3 || pays(d));
}

bool ml__conv_winograd_forward_ok(const ml_conv_shape *s) {
  wconv d;
  return forward_shape(s, &d);
}

bool ml__conv_winograd_backward_data_ok(const ml_conv_shape *s) {
  wconv d;
  return backward_data_shape(s, &d);
}

/* From one point to the next in U and dU, padded likewise */
static int64_t ustep(const wconv *d) { return d->C * d->OCp + 16; }
static size_t u_floats(const wconv *d) { return (size_t)(d->xi * ustep(d)); }
/* the filters tap-major (taps_major): rows of output channels rounded up to 16 */
static int64_t tm_ld(const wconv *d) { return (d->OC + 15) & ~(int64_t)15; }
static size_t tm_floats(const wconv *d) { return (size_t)(d->C * 9 * tm_ld(d)); }
static size_t image_floats(const wconv *d) { return (size_t)(d->Hp * d->Wp * d->Cv); }
/* V, M and Y are tile-major, V[t][xi][c] and M[t][xi][o]: the transforms read and write a tile's
 * points in one contiguous block (9 KB for F(4x4) on 64 channels). Point-major buffers spread a
 * tile's 36 points over 36 pages, and the transforms spent most of their time in TLB and cache
 * misses; the GEMMs read 6 tiles at a time either way. vts, mts: floats from one tile to the next. */
static int64_t vts(const wconv *d) { return d->xi * d->Cv; }
static int64_t mts(const wconv *d) { return d->xi * d->OCp; }
static size_t v_floats(const wconv *d) { return (size_t)(d->TS * vts(d)); }
static size_t m_floats(const wconv *d) { return (size_t)(d->TS * mts(d)); }
static size_t out_floats(const wconv *d) { return (size_t)(d->OH * d->OW * d->OCp); }
static size_t worker_floats(const wconv *d) {
  return image_floats(d) + v_floats(d) + m_floats(d) + out_floats(d); /* each a multiple of 16 */
}
static size_t wconv_scratch(const wconv *d, int workers) {
  return u_floats(d) + (size_t)d->OCp + tm_floats(d) + worker_floats(d) * (size_t)workers;
}

size_t ml__conv_winograd_scratch_floats(const ml_conv_shape *s, int workers) {
  wconv d;
  size_t f = 0, g;
  if (forward_shape(s, &d) && (g = wconv_scratch(&d, workers)) > f) f = g;
  if (backward_data_shape(s, &d) && (g = wconv_scratch(&d, workers)) > f) f = g;
  return f;
}

/* ---- transforms ---- */

/* Filters tap-major for the transforms: tm[(c * 9 + k) * ld + o] is tap k (flip: tap 8 - k) of the
 * filter from input channel c to output channel o of d's convolution, zero for o from OC up to
 * ld = OC rounded up to 16; the transforms then load 16 filters' tap as one vector. Made by 16 x 16
 * register transposes of w: 9 gathers per 16 filters cost more (2% of a first-order MAML step). */
static void taps_major(const wconv *d, const float *w, bool flip, float *tm) {
  const int64_t C = d->C, OC = d->OC, ld = tm_ld(d);
  if (!flip) { /* w (OC, C * 9): rows o, columns c * 9 + k */
    ml__transpose16(tm, ld, w, C * 9, OC, C * 9, ld);
    return;
  }
  for (int64_t c = 0; c < C; c++) /* w (C, OC, 9): per c, rows o and columns k, taps read reversed */
    ml__transpose16(tm + c * 9 * ld, ld, w + c * OC * 9, 9, OC, 9, ld);
}
/* the filter gradients tap-major (tm as above, channels [c0, c0 + d->C) of C) into dw (OC, C, 3, 3) */
static void taps_back(const wconv *d, int64_t C, int64_t c0, const float *tm, float *dw) {
  ml__transpose16(dw + c0 * 9, C * 9, tm, tm_ld(d), d->C * 9, d->OC, d->C * 9);
}

/* ---- F(4x4, 3x3): 6x6 tiles, 36 points, 4x fewer multiplies than direct (Lavin and Gray):
 * B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 * G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 * A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. Each 2-D transform is the 1-D
 * one on the rows, then on the columns; a point's values are step floats apart. */
#define A4 6

/* v[0..2] (h = 0) or v[3..5] (h = 1) of v = B^T d: the input transform keeps half a tile in registers */
AVX512_TARGET static inline void in4_half(const __m512 *d, __m512 *v, int h) {
  const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
  if (!h) {
    v[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    v[1] = _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4]));
    v[2] = _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3]));
  } else {
    v[0] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[3], d[1]), _mm512_sub_ps(d[4], d[2]));
    v[1] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[3]), _mm512_sub_ps(d[4], d[2]));
    v[2] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
  }
}

AVX512_TARGET static inline void in4(const __m512 *d, __m512 *v) { /* v = B^T d */
  in4_half(d, v, 0);
  in4_half(d, v + 3, 1);
}

AVX512_TARGET static inline void out4(const __m512 *m, __m512 *y) { /* y = A^T m */
  const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
  const __m512 c = _mm512_add_ps(m[3], m[4]), e = _mm512_sub_ps(m[3], m[4]);
  y[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
  y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), e, b);
  y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), c, a);
  y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), e, b), m[5]);
}

AVX512_TARGET static inline void filter4(const __m512 *g, __m512 *u) { /* u = G g */
  const __m512 s = _mm512_add_ps(g[0], g[2]), sixth = _mm512_set1_ps(-1.0f / 6.0f);
  const __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24.0f), g[0], _mm512_mul_ps(_mm512_set1_ps(1.0f / 6.0f), g[2]));
  const __m512 q = _mm512_mul_ps(_mm512_set1_ps(1.0f / 12.0f), g[1]);
  u[0] = _mm512_mul_ps(_mm512_set1_ps(0.25f), g[0]);
  u[1] = _mm512_mul_ps(sixth, _mm512_add_ps(s, g[1]));
  u[2] = _mm512_mul_ps(sixth, _mm512_sub_ps(s, g[1]));
  u[3] = _mm512_add_ps(p, q);
  u[4] = _mm512_sub_ps(p, q);
  u[5] = g[2];
}

AVX512_TARGET static inline void dy4(const __m512 *a, __m512 *z) { /* z = A a (A = (A^T)^T) */
  const __m512 p = _mm512_add_ps(a[0], a[2]), q = _mm512_add_ps(a[1], a[3]);
  const __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), a[2], a[0]);
  const __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(8.0f), a[3], _mm512_add_ps(a[1], a[1]));
  z[0] = a[0];
  z[1] = _mm512_add_ps(p, q);
  z[2] = _mm512_sub_ps(p, q);
  z[3] = _mm512_add_ps(r, s);
  z[4] = _mm512_sub_ps(r, s);
  z[5] = a[3];
}

AVX512_TARGET static inline void back4(const __m512 *u, __m512 *w) { /* w = G^T u */
  const __m512 a = _mm512_add_ps(u[1], u[2]), b = _mm512_sub_ps(u[2], u[1]);
  const __m512 c = _mm512_add_ps(u[3], u[4]), e = _mm512_sub_ps(u[3], u[4]);
  const __m512 sixth = _mm512_set1_ps(1.0f / 6.0f);
  w[0] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24.0f), c,
                         _mm512_fnmadd_ps(sixth, a, _mm512_mul_ps(_mm512_set1_ps(0.25f), u[0])));
  w[1] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 12.0f), e, _mm512_mul_ps(sixth, b));
  w[2] = _mm512_add_ps(_mm512_mul_ps(sixth, _mm512_sub_ps(c, a)), u[5]);
}

AVX512_TARGET static void transform_input4(const wconv *d, const float *xh, float *V) {
  const int64_t Cv = d->Cv, Wp = d->Wp, step = Cv, ts = vts(d);
  /* channel groups outside: a group's lines of the image (20 KB on 14x14) stay in L1 while the
   * overlapping patches read them */
  for (int64_t c = 0; c < Cv; c += 16)
    for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
      for (int64_t tx = 0; tx < d->TW; tx++, t++) {
        const float *p = xh + ((4 * ty) * Wp + 4 * tx) * Cv + c;
        float *v = V + t * ts + c;
        /* d B a half of its columns at a time (18 vectors in registers; all 36 spilled), then
         * B^T of those columns: each point stored once (writing d B to V and transforming it in
         * place stored every point twice, and the stores were the bound) */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
          __m512 r[A4][3];
#pragma GCC unroll 6
          for (int i = 0; i < A4; i++) {
            __m512 row[A4];
#pragma GCC unroll 6
            for (int j = 0; j < A4; j++) row[j] = _mm512_loadu_ps(p + (i * Wp + j) * Cv);
            in4_half(row, r[i], h);
          }
#pragma GCC unroll 3
          for (int j = 0; j < 3; j++) {
            __m512 col[A4], o[A4];
#pragma GCC unroll 6
            for (int i = 0; i < A4; i++) col[i] = r[i][j];
            in4(col, o);
#pragma GCC unroll 6
            for (int i = 0; i < A4; i++) _mm512_storeu_ps(v + (A4 * i + 3 * h + j) * step, o[i]);
          }
        }
      }
}

AVX512_TARGET static void transform_output4(const wconv *d, const float *M, const float *bias, float *ob) {
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
      float *y0 = ob + ((4 * ty) * OW + 4 * tx) * OCp;
      for (int64_t o = 0; o < OCp; o += 16) {
        const float *m = M + t * ts + o;
        __m512 s[4][A4], col[A4], y[4];
        for (int j = 0; j < A4; j++) { /* A^T M: column j */
          for (int i = 0; i < A4; i++) col[i] = _mm512_loadu_ps(m + (A4 * i + j) * step);
          out4(col, y);
          for (int p = 0; p < 4; p++) s[p][j] = y[p];
        }
        const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
        for (int p = 0; p < rows; p++) {
          out4(s[p], y);
          for (int q = 0; q < cols; q++) _mm512_storeu_ps(y0 + (p * OW + q) * OCp + o, _mm512_add_ps(y[q], b));
        }
      }
    }
}

/* U[xi][c][o..o+15] = (G g G^T)[xi] for 16 output channels; g gathered as in transform_filters */
AVX512_TARGET static void transform_filters4(const wconv *d, const float *tm, bool flip, float *U) {
  const int64_t C = d->C, OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  for (int64_t o = 0; o < OC; o += 16) {
    for (int64_t c = 0; c < C; c++) {
      __m512 g[3][3], t[A4][3], col[3], u[A4];
      for (int k = 0; k < 9; k++) g[k / 3][k % 3] = _mm512_loadu_ps(tm + (c * 9 + (flip ? 8 - k : k)) * ld + o);
      for (int j = 0; j < 3; j++) { /* G g: column j */
        for (int i = 0; i < 3; i++) col[i] = g[i][j];
        filter4(col, u);
        for (int i = 0; i < A4; i++) t[i][j] = u[i];
      }
      float *dst = U + c * OCp + o;
      for (int i = 0; i < A4; i++) {
        filter4(t[i], u);
        for (int j = 0; j < A4; j++) _mm512_storeu_ps(dst + (A4 * i + j) * step, u[j]);
      }
    }
  }
}

AVX512_TARGET static void transform_dy4(const wconv *d, const float *gt, int64_t rs, float *Y) {
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const int64_t rows = d->OH - 4 * ty < 4 ? d->OH - 4 * ty : 4, cols = OW - 4 * tx < 4 ? OW - 4 * tx : 4;
      const float *g0 = gt + (4 * ty) * rs + 4 * tx * OCp;
      for (int64_t o = 0; o < OCp; o += 16) {
        __m512 a[4][4], z[A4][4], col[4], e[A4];
        for (int p = 0; p < 4; p++)
          for (int q = 0; q < 4; q++)
            a[p][q] = p < rows && q < cols ? _mm512_loadu_ps(g0 + p * rs + q * OCp + o) : _mm512_setzero_ps();
        for (int q = 0; q < 4; q++) { /* A dy: column q */
          for (int p = 0; p < 4; p++) col[p] = a[p][q];
          dy4(col, e);
          for (int i = 0; i < A4; i++) z[i][q] = e[i];
        }
        float *y = Y + t * ts + o;
        for (int i = 0; i < A4; i++) { /* (A dy) A^T: row i */
          dy4(z[i], e);
          for (int j = 0; j < A4; j++) _mm512_storeu_ps(y + (A4 * i + j) * step, e[j]);
        }
      }
    }
}

AVX512_TARGET static void filters_back4(const wconv *d, const float *dU, float *tm) {
  const int64_t OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  for (int64_t o = 0; o < OC; o += 16) {
    for (int64_t c = 0; c < d->C; c++) {
      const float *u = dU + c * OCp + o;
      __m512 t[3][A4], col[A4], w[3];
      for (int j = 0; j < A4; j++) { /* G^T dU: column j */
        for (int i = 0; i < A4; i++) col[i] = _mm512_loadu_ps(u + (A4 * i + j) * step);
        back4(col, w);
        for (int i = 0; i < 3; i++) t[i][j] = w[i];
      }
      for (int i = 0; i < 3; i++) {
        back4(t[i], w);
        for (int j = 0; j < 3; j++) _mm512_storeu_ps(tm + (c * 9 + 3 * i + j) * ld + o, w[j]);
      }
    }
  }
}


/* The image's tiles' V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], on vectors of
 * 16 channels: V[xi][t][c]. */
AVX512_TARGET static void transform_input(const wconv *d, const float *xh, float *V) {
  if (d->m == 4) {
    transform_input4(d, xh, V);
    return;
  }
  const int64_t Cv = d->Cv, Wp = d->Wp;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++)
      for (int64_t c = 0; c < Cv; c += 16) {
        const float *p = xh + ((2 * ty) * Wp + 2 * tx) * Cv + c;
        __m512 x[4][4], r[4][4];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) x[i][j] = _mm512_loadu_ps(p + (i * Wp + j) * Cv);
        for (int j = 0; j < 4; j++) {
          r[0][j] = _mm512_sub_ps(x[0][j], x[2][j]);
          r[1][j] = _mm512_add_ps(x[1][j], x[2][j]);
          r[2][j] = _mm512_sub_ps(x[2][j], x[1][j]);
          r[3][j] = _mm512_sub_ps(x[1][j], x[3][j]);
        }
        float *v = V + t * vts(d) + c;
        const int64_t step = Cv; /* from one point to the next */
        for (int i = 0; i < 4; i++) {
          _mm512_storeu_ps(v + (4 * i + 0) * step, _mm512_sub_ps(r[i][0], r[i][2]));
          _mm512_storeu_ps(v + (4 * i + 1) * step, _mm512_add_ps(r[i][1], r[i][2]));
          _mm512_storeu_ps(v + (4 * i + 2) * step, _mm512_sub_ps(r[i][2], r[i][1]));
          _mm512_storeu_ps(v + (4 * i + 3) * step, _mm512_sub_ps(r[i][1], r[i][3]));
        }
      }
}

/* The register tile of both GEMMs: out[i][0..63] (rows i < n <= TR, ldo apart) = (add ? out : 0)
 * + sum over k < K of a[k*ak + 0..63] * b[i*bi + k*bk]: 24 accumulators, per k 4 vector loads and
 * n broadcasts for 4n FMAs (the direct channel-vector kernel's tile) */
AVX512_TARGET static inline __attribute__((always_inline)) void tile_6x64(const float *a, int64_t ak, const float *b,
                                                                          int64_t bi, int64_t bk, int64_t K,
                                                                          float *out, int64_t ldo, bool add,
                                                                          const int n) {
  __m512 acc[TR][4];
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < n)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k++, a += ak, b += bk) {
    __m512 w[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) w[v] = _mm512_loadu_ps(a + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < TR; i++)
      if (i < n) {
        const __m512 x = _mm512_set1_ps(b[i * bi]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(w[v], x, acc[i][v]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < n)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) {
        float *o = out + i * ldo + 16 * v;
        _mm512_storeu_ps(o, add ? _mm512_add_ps(_mm512_loadu_ps(o), acc[i][v]) : acc[i][v]);
      }
}

/* M[xi][t][o] = sum over c of V[xi][t][c] U[xi][c][o], for nt <= TR tiles from t0 and the 64
 * output channels from o0 */
AVX512_TARGET static inline __attribute__((always_inline)) void gemm_tile(const wconv *d, const float *V,
                                                                          const float *U, float *M, int64_t t0,
                                                                          int64_t o0, const int nt) {
  tile_6x64(U + o0, d->OCp, V + t0 * vts(d), vts(d), 1, d->C, M + t0 * mts(d) + o0, mts(d), false, nt);
}

AVX512_TARGET static void gemms(const wconv *d, const float *V, const float *U, float *M, int64_t T) {
  const int64_t tiles = (T + TR - 1) / TR, base = T / tiles, extra = T % tiles;
  for (int64_t xi = 0; xi < d->xi; xi++) {
    const float *v = V + xi * d->Cv, *u = U + xi * ustep(d);
    float *m = M + xi * d->OCp;
    for (int64_t o0 = 0; o0 < d->OCp; o0 += OB)
      for (int64_t k = 0, t0 = 0; k < tiles; k++) { /* blocks as even as they go */
        const int nt = (int)(base + (k < extra));
        switch (nt) {
          case 6: gemm_tile(d, v, u, m, t0, o0, 6); break;
          case 5: gemm_tile(d, v, u, m, t0, o0, 5); break;
          case 4: gemm_tile(d, v, u, m, t0, o0, 4); break;
          case 3: gemm_tile(d, v, u, m, t0, o0, 3); break;
          case 2: gemm_tile(d, v, u, m, t0, o0, 2); break;
          default: gemm_tile(d, v, u, m, t0, o0, 1); break;
        }
        t0 += nt;
      }
  }
}

/* Y = A^T M A + bias, A^T = [1 1 1 0; 0 1 -1 -1], into the (position, channel) buffer ob (rows
 * of OCp floats); the tiles' positions past the output's last row or column are dropped. */
AVX512_TARGET static void transform_output(const wconv *d, const float *M, const float *bias, float *ob) {
  if (d->m == 4) {
    transform_output4(d, M, bias, ob);
    return;
  }
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const bool down = 2 * ty + 1 < d->OH, right = 2 * tx + 1 < OW;
      float *y0 = ob + ((2 * ty) * OW + 2 * tx) * OCp;
      for (int64_t o = 0; o < OCp; o += 16) {
        const float *m = M + t * ts + o;
        __m512 s[2][4];
        for (int j = 0; j < 4; j++) {
          const __m512 m0 = _mm512_loadu_ps(m + j * step), m1 = _mm512_loadu_ps(m + (4 + j) * step);
          const __m512 m2 = _mm512_loadu_ps(m + (8 + j) * step), m3 = _mm512_loadu_ps(m + (12 + j) * step);
          s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
          s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        const __m512 b = bias ? _mm512_loadu_ps(bias + o) : _mm512_setzero_ps();
        for (int p = 0; p < 2; p++) {
          if (p && !down) break;
          float *y = y0 + p * OW * OCp + o;
          _mm512_storeu_ps(y, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[p][0], s[p][1]), s[p][2]), b));
          if (right)
            _mm512_storeu_ps(y + OCp, _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[p][1], s[p][2]), s[p][3]), b));
        }
      }
    }
}

/* Image x (C, H, W) into its tiles' V (from V): channel-minor in xh inside a zero border (and zero
 * channels up to Cv), then B^T d B. The whole of xh is cleared first, not only its border:
 * clearing the border alone was 3% slower on a first-order MAML step, since memset's full-line
 * stores bring the interior's lines into cache without reading them, where ml__to_padded_hwc's own
 * stores would each fetch their line first. */
AVX512_TARGET static void image_tiles(const wconv *d, float *xh, const float *x, float *V) {
  memset(xh, 0, image_floats(d) * sizeof(float));
  ml__to_padded_hwc(xh, d->Cv, d->Wp, d->ph, d->pw, x, d->C, d->H, d->W);
  transform_input(d, xh, V);
}

typedef struct {
  const wconv *d;
  const float *in, *U, *bias;
  float *out, *work;
} wjob;

/* A group of images (one work item): each image into V, one GEMM pass over all their tiles, then
 * each image's output */
AVX512_TARGET static void group_item(int64_t k, int worker, void *vj) {
  const wjob *j = vj;
  const wconv *d = j->d;
  float *xh = j->work + (size_t)worker * worker_floats(d), *V = xh + image_floats(d), *M = V + v_floats(d);
  float *ob = M + m_floats(d);
  const int64_t nb = d->TS / d->T, b0 = k * nb, n = d->B - b0 < nb ? d->B - b0 : nb, P = d->OH * d->OW;
  for (int64_t i = 0; i < n; i++) image_tiles(d, xh, j->in + (b0 + i) * d->C * d->H * d->W, V + i * d->T * vts(d));
  gemms(d, V, j->U, M, n * d->T);
  for (int64_t i = 0; i < n; i++) {
    transform_output(d, M + i * d->T * mts(d), j->bias, ob);
    ml__transpose16(j->out + (b0 + i) * d->OC * P, P, ob, d->OCp, P, d->OC, P);
  }
}

/* U[xi][c][o..o+15] for 16 output channels at once, from the filters made tap-major in tm
 * (forward: w (OC, C, 3, 3); backward data: the flipped filters of w (C_in = d->OC, C_out = d->C),
 * taps reversed), transformed in vectors; U's columns up to OC rounded to 16 come from tm's zero
 * filters, those from there up to OCp are cleared */
AVX512_TARGET static void transform_filters(const wconv *d, const float *w, bool flip, float *tm, float *U) {
  if (tm_ld(d) < d->OCp)
    for (int64_t xi = 0; xi < d->xi; xi++)
      for (int64_t c = 0; c < d->C; c++)
        memset(U + xi * ustep(d) + c * d->OCp + tm_ld(d), 0, (size_t)(d->OCp - tm_ld(d)) * sizeof(float));
  taps_major(d, w, flip, tm);
  if (d->m == 4) {
    transform_filters4(d, tm, flip, U);
    return;
  }
  const int64_t C = d->C, OC = d->OC, OCp = d->OCp, ld = tm_ld(d);
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int64_t o = 0; o < OC; o += 16) {
    for (int64_t c = 0; c < C; c++) {
      __m512 g[9], t[4][3];
      for (int k = 0; k < 9; k++) g[k] = _mm512_loadu_ps(tm + (c * 9 + (flip ? 8 - k : k)) * ld + o);
      for (int j = 0; j < 3; j++) {
        t[0][j] = g[j];
        t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[j], g[3 + j]), g[6 + j]));
        t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[j], g[3 + j]), g[6 + j]));
        t[3][j] = g[6 + j];
      }
      float *u = U + c * OCp + o;
      const int64_t step = ustep(d);
      for (int i = 0; i < 4; i++) {
        _mm512_storeu_ps(u + (4 * i + 0) * step, t[i][0]);
        _mm512_storeu_ps(u + (4 * i + 1) * step,
                         _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])));
        _mm512_storeu_ps(u + (4 * i + 2) * step,
                         _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])));
        _mm512_storeu_ps(u + (4 * i + 3) * step, t[i][2]);
      }
    }
  }
}

/* U from the weights, then the images */
static void run(const wconv *d, float *out, const float *in, const float *w, bool flip, const float *bias,
                float *scratch) {
  float *U = scratch, *biasp = U + u_floats(d), *tm = biasp + d->OCp, *work = tm + tm_floats(d);
  transform_filters(d, w, flip, tm, U);
  if (bias) {
    for (int64_t o = 0; o < d->OCp; o++) biasp[o] = o < d->OC ? bias[o] : 0.0f;
    bias = biasp;
  }
  wjob j = {.d = d, .in = in, .U = U, .bias = bias, .out = out, .work = work};
  const int64_t nb = d->TS / d->T;
  ml__kernels_run((d->B + nb - 1) / nb, group_item, &j);
}

void ml__conv_winograd_forward(const ml_conv_shape *s, float *out, const float *in, const float *w, const float *bias,
                               float *scratch) {
  wconv d;
  forward_shape(s, &d);
  run(&d, out, in, w, false, bias, scratch);
}

void ml__conv_winograd_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                                     float *scratch) {
  wconv d;
  backward_data_shape(s, &d);
  run(&d, din, dout, w, true, NULL, scratch);
}

/* ---- weight gradient ----
 * The forward is exactly y_t = A^T [(G w G^T) . V_t] A for every tile t, so
 * dw = G^T [sum over tiles of (A dy_t A^T) . V_t] G: per point xi a GEMM reduced over the tiles
 * of every image, dU[xi][c][o] = sum over t of V[xi][t][c] Y[xi][t][o], and one transform back
 * at the end. Positions of a tile past the output (odd planes) get a zero gradient. The tiles of
 * each image are summed in order, image after image: the same bits however the channels are
 * split into bands. */
static bool weight_shape(const ml_conv_shape *s, wconv *d) { return forward_shape(s, d); }

bool ml__conv_winograd_weight_ok(const ml_conv_shape *s) {
  wconv d;
  return weight_shape(s, &d);
}

static size_t gt_floats(const wconv *d) { return (size_t)(d->OH * d->OW * d->OCp); }
static size_t du_floats(const wconv *d) { return u_floats(d); }

/* Images per pass of the weight GEMMs: each pass loads and stores dU once, so a pass takes
 * about WEIGHT_TILES tiles (F(4x4) on a 7x7 plane has 4 per image), V and Y for them ~0.6 MB. */
#define WEIGHT_TILES 32
static void weight_batch(const ml_conv_shape *s, wconv *d) {
  int64_t nb = (WEIGHT_TILES + d->T - 1) / d->T;
  d->TS = d->T * (nb < s->B ? nb : s->B);
}

size_t ml__conv_winograd_weight_work_floats(const ml_conv_shape *s) {
  wconv d;
  if (!weight_shape(s, &d)) return 0;
  weight_batch(s, &d);
  return image_floats(&d) + v_floats(&d) + m_floats(&d) + gt_floats(&d) + du_floats(&d) + tm_floats(&d);
}

/* Y[xi][t][o] = (A dy_t A^T)[xi], A = [1 0; 1 1; 1 -1; 0 -1], from the image's output gradient
 * channel-minor in gt: position (y, x)'s OCp channels at y * rs + x * OCp */
AVX512_TARGET static void transform_dy(const wconv *d, const float *gt, int64_t rs, float *Y) {
  if (d->m == 4) {
    transform_dy4(d, gt, rs, Y);
    return;
  }
  const int64_t OCp = d->OCp, step = OCp, ts = mts(d), OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const bool down = 2 * ty + 1 < d->OH, right = 2 * tx + 1 < OW;
      const float *g0 = gt + (2 * ty) * rs + 2 * tx * OCp, *g1 = g0 + rs;
      for (int64_t o = 0; o < OCp; o += 16) {
        const __m512 zero = _mm512_setzero_ps();
        const __m512 a = _mm512_loadu_ps(g0 + o), b = right ? _mm512_loadu_ps(g0 + OCp + o) : zero;
        const __m512 c = down ? _mm512_loadu_ps(g1 + o) : zero;
        const __m512 e = down && right ? _mm512_loadu_ps(g1 + OCp + o) : zero;
        __m512 z[4][2] = {{a, b},
                          {_mm512_add_ps(a, c), _mm512_add_ps(b, e)},
                          {_mm512_sub_ps(a, c), _mm512_sub_ps(b, e)},
                          {_mm512_sub_ps(zero, c), _mm512_sub_ps(zero, e)}};
        float *y = Y + t * ts + o;
        for (int k = 0; k < 4; k++) {
          _mm512_storeu_ps(y + (4 * k + 0) * step, z[k][0]);
          _mm512_storeu_ps(y + (4 * k + 1) * step, _mm512_add_ps(z[k][0], z[k][1]));
          _mm512_storeu_ps(y + (4 * k + 2) * step, _mm512_sub_ps(z[k][0], z[k][1]));
          _mm512_storeu_ps(y + (4 * k + 3) * step, _mm512_sub_ps(zero, z[k][1]));
        }
      }
    }
}

/* dU[c][o] += sum over the tiles of V[t][c] Y[t][o] for nc <= TR channels from c0 and the 64
 * output channels from o0 (one point; tiles of one or several images) */
AVX512_TARGET static inline __attribute__((always_inline)) void weight_tile(const wconv *d, const float *V,
                                                                            const float *Y, float *dU, int64_t c0,
                                                                            int64_t o0, int64_t tiles, const int nc) {
  tile_6x64(Y + o0, mts(d), V + c0, 1, vts(d), tiles, dU + c0 * d->OCp + o0, d->OCp, true, nc);
}

AVX512_TARGET static void weight_gemms(const wconv *d, const float *V, const float *Y, float *dU, int64_t tiles) {
  for (int64_t xi = 0; xi < d->xi; xi++) {
    const float *v = V + xi * d->Cv, *y = Y + xi * d->OCp;
    float *u = dU + xi * ustep(d);
    for (int64_t o0 = 0; o0 < d->OCp; o0 += OB)
      for (int64_t c0 = 0; c0 < d->C; c0 += TR) {
        switch (d->C - c0 < TR ? d->C - c0 : TR) {
          case 6: weight_tile(d, v, y, u, c0, o0, tiles, 6); break;
          case 5: weight_tile(d, v, y, u, c0, o0, tiles, 5); break;
          case 4: weight_tile(d, v, y, u, c0, o0, tiles, 4); break;
          case 3: weight_tile(d, v, y, u, c0, o0, tiles, 3); break;
          case 2: weight_tile(d, v, y, u, c0, o0, tiles, 2); break;
          default: weight_tile(d, v, y, u, c0, o0, tiles, 1); break;
        }
      }
  }
}

/* per output channel, the sum of the image's output gradient (gt as transform_dy reads it), in
 * position order, added to db */
AVX512_TARGET static void bias_sums(const wconv *d, const float *gt, int64_t rs, float *db) {
  const int64_t OCp = d->OCp;
  for (int64_t o = 0; o < d->OC; o += 16) {
    __m512 s = _mm512_setzero_ps();
    for (int64_t y = 0; y < d->OH; y++)
      for (int64_t x = 0; x < d->OW; x++) s = _mm512_add_ps(s, _mm512_loadu_ps(gt + y * rs + x * OCp + o));
    float f[16];
    _mm512_storeu_ps(f, s);
    for (int64_t k = 0; k < 16 && o + k < d->OC; k++) db[o + k] += f[k];
  }
}

/* dw = G^T dU G, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1], for 16 output channels at once,
 * scattered to dw[o][c0 + c][k] (dw's channel count C) */
AVX512_TARGET static void filters_back(const wconv *d, int64_t C, int64_t c0, const float *dU, float *tm,
                                       float *dw) {
  if (d->m == 4) {
    filters_back4(d, dU, tm);
    taps_back(d, C, c0, tm, dw);
    return;
  }
  const int64_t OC = d->OC, OCp = d->OCp, step = ustep(d), ld = tm_ld(d);
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int64_t o = 0; o < OC; o += 16) {
    for (int64_t c = 0; c < d->C; c++) {
      const float *u = dU + c * OCp + o;
      __m512 t[3][4];
      for (int j = 0; j < 4; j++) {
        const __m512 u0 = _mm512_loadu_ps(u + j * step), u1 = _mm512_loadu_ps(u + (4 + j) * step);
        const __m512 u2 = _mm512_loadu_ps(u + (8 + j) * step), u3 = _mm512_loadu_ps(u + (12 + j) * step);
        const __m512 p = _mm512_mul_ps(half, _mm512_add_ps(u1, u2));
        t[0][j] = _mm512_add_ps(u0, p);
        t[1][j] = _mm512_mul_ps(half, _mm512_sub_ps(u1, u2));
        t[2][j] = _mm512_add_ps(p, u3);
      }
      float *g = tm + c * 9 * ld + o;
      for (int i = 0; i < 3; i++) {
        const __m512 p = _mm512_mul_ps(half, _mm512_add_ps(t[i][1], t[i][2]));
        _mm512_storeu_ps(g + (3 * i + 0) * ld, _mm512_add_ps(t[i][0], p));
        _mm512_storeu_ps(g + (3 * i + 1) * ld, _mm512_mul_ps(half, _mm512_sub_ps(t[i][1], t[i][2])));
        _mm512_storeu_ps(g + (3 * i + 2) * ld, _mm512_add_ps(p, t[i][3]));
      }
    }
  }
  taps_back(d, C, c0, tm, dw);
}

void ml__conv_winograd_weight_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                    int64_t last, int64_t c0, int64_t c1, float *work, float *dw, float *db) {
  wconv full, d;
  weight_shape(s, &full);
  weight_batch(s, &full);
  d = full; /* the band: channels [c0, c1) */
  d.C = c1 - c0, d.Cv = (d.C + 15) & ~(int64_t)15;
  float *xh = work, *V = xh + image_floats(&full), *Y = V + v_floats(&full), *gt = Y + m_floats(&full);
  float *dU = gt + gt_floats(&full), *tm = dU + du_floats(&full);
  const int64_t HW = s->H * s->W, P = d.OH * d.OW, nb = d.TS / d.T;
  memset(dU, 0, du_floats(&d) * sizeof(float));
  if (db) memset(db, 0, (size_t)s->OC * sizeof(float));
  for (int64_t b0 = first; b0 < last; b0 += nb) {
    const int64_t n = last - b0 < nb ? last - b0 : nb;
    for (int64_t i = 0; i < n; i++) { /* image b0 + i's tiles from tile i*T of V and Y */
      image_tiles(&d, xh, in + ((b0 + i) * s->C + c0) * HW, V + i * d.T * vts(&d));
      ml__transpose16(gt, d.OCp, dout + (b0 + i) * s->OC * P, P, s->OC, P, d.OCp);
      if (db) bias_sums(&d, gt, d.OW * d.OCp, db);
      transform_dy(&d, gt, d.OW * d.OCp, Y + i * d.T * mts(&d));
    }
    weight_gemms(&d, V, Y, dU, n * d.T);
  }
  filters_back(&d, s->C, c0, dU, tm, dw);
}

/* ---- both gradients from one layout change of dy ----
 * One worker's input gradient and weight gradient for the image group [first, last): each
 * image's output gradient is put channel-minor inside the zero border the backward data wants,
 * once, and read by both: by the backward data's input transform, and, at the border's offset
 * with rows Wp apart, by the weight gradient's transform and bias sums (which otherwise
 * transpose dy again). Every tile's and every sum's arithmetic is that of
 * ml__conv_winograd_backward_data and ml__conv_winograd_weight_group: the same bits. Work:
 * U of the flipped filters (ml__conv_winograd_backward_filters), then the buffers below. */
static size_t r16(size_t f) { return (f + 15) & ~(size_t)15; }

bool ml__conv_winograd_backward_ok(const ml_conv_shape *s) {
  wconv bd, d;
  return weight_shape(s, &d) && backward_data_shape(s, &bd) && bd.Cv == d.OCp && bd.T == d.T && bd.m == d.m &&
         bd.OH == d.H && bd.OW == d.W;
}

typedef struct {
  wconv bd, d; /* backward data, weight gradient (its passes' images) */
  float *U, *xh, *V, *Y, *dU, *dyh, *Vb, *Mb, *ob, *tm;
} wback;

/* the buffers carved from work (NULL: only the size, returned) */
static size_t wback_make(const ml_conv_shape *s, float *work, wback *k) {
  backward_data_shape(s, &k->bd);
  weight_shape(s, &k->d);
  weight_batch(s, &k->d);
  const int64_t nb = k->d.TS / k->d.T, tiles = nb * k->bd.T;
  const size_t tmf = tm_floats(&k->bd) > tm_floats(&k->d) ? tm_floats(&k->bd) : tm_floats(&k->d);
  const size_t size[10] = {u_floats(&k->bd),        image_floats(&k->d),
                           v_floats(&k->d),         m_floats(&k->d),
                           du_floats(&k->d),        (size_t)nb * image_floats(&k->bd),
                           (size_t)(tiles * vts(&k->bd)), (size_t)(tiles * mts(&k->bd)),
                           out_floats(&k->bd),      tmf};
  float **buf[10] = {&k->U, &k->xh, &k->V, &k->Y, &k->dU, &k->dyh, &k->Vb, &k->Mb, &k->ob, &k->tm};
  size_t at = 0;
  for (int i = 0; i < 10; i++) {
    *buf[i] = work ? work + at : NULL;
    at += r16(size[i]);
  }
  return at;
}

size_t ml__conv_winograd_backward_work_floats(const ml_conv_shape *s) {
  wback k;
  return ml__conv_winograd_backward_ok(s) ? wback_make(s, NULL, &k) : 0;
}

void ml__conv_winograd_backward_filters(const ml_conv_shape *s, const float *w, float *work) {
  wback k;
  wback_make(s, work, &k);
  transform_filters(&k.bd, w, true, k.tm, k.U);
}

AVX512_TARGET void ml__conv_winograd_backward_group(const ml_conv_shape *s, const float *in, const float *dout,
                                                    int64_t first, int64_t last, float *work, float *din, float *dw,
                                                    float *db) {
  wback k;
  wback_make(s, work, &k);
  const wconv *bd = &k.bd, *d = &k.d;
  const int64_t nb = d->TS / d->T, T = d->T, HW = s->H * s->W, P = d->OH * d->OW;
  const int64_t rs = bd->Wp * bd->Cv, inner = (bd->ph * bd->Wp + bd->pw) * bd->Cv; /* dy's (0, 0) */
  memset(k.dU, 0, du_floats(d) * sizeof(float));
  if (db) memset(db, 0, (size_t)s->OC * sizeof(float));
  for (int64_t b0 = first; b0 < last; b0 += nb) {
    const int64_t n = last - b0 < nb ? last - b0 : nb;
    for (int64_t i = 0; i < n; i++) {
      /* dy channel-minor, then, while it is in cache, the backward data's V and the weight
       * gradient's Y and bias sums; then x's V */
      float *yh = k.dyh + i * image_floats(bd);
      image_tiles(bd, yh, dout + (b0 + i) * s->OC * P, k.Vb + i * T * vts(bd));
      if (db) bias_sums(d, yh + inner, rs, db);
      transform_dy(d, yh + inner, rs, k.Y + i * T * mts(d));
      image_tiles(d, k.xh, in + (b0 + i) * s->C * HW, k.V + i * T * vts(d));
    }
    gemms(bd, k.Vb, k.U, k.Mb, n * T);
    for (int64_t i = 0; i < n; i++) {
      transform_output(bd, k.Mb + i * T * mts(bd), NULL, k.ob);
      ml__transpose16(din + (b0 + i) * s->C * HW, HW, k.ob, bd->OCp, HW, bd->OC, HW);
    }
    weight_gemms(d, k.V, k.Y, k.dU, n * T);
  }
  filters_back(d, s->C, 0, k.dU, k.tm, dw);
}
