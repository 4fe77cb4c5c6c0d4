/* kernels/conv_winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), AVX-512.
 *
 * Each 2x2 block of outputs (a tile) comes from the 4x4 input patch around it: with the input
 * patch transformed, V = B^T d B, and each filter transformed, U = G g G^T, the tile is
 * A^T (sum over input channels of U . V) A, the product elementwise over the 16 points xi of the
 * transformed domain. Per point the channel sum is a GEMM (tiles x C) * (C x OC), so a tile costs
 * 16 * C multiply-adds per output channel instead of 4 * 9 * C: 2.25x fewer, for the price of the
 * input and output transforms (additions only) and of output rows rounded up to even.
 *
 * Per image (one work item, so the same bits at any thread count): the padded image is stored
 * channel-minor (pixel, channel) so that the input transform runs on vectors of 16 channels; the
 * GEMMs keep 6 tiles x 64 output channels in 24 registers over the input channels, as the direct
 * channel-vector kernel does (4 vector loads of U and 6 broadcasts of V per channel), one point at
 * a time so that the point's U (C x 64 floats, 16 KB for 64 channels) stays in L1; the output
 * transform writes a (position, channel) buffer, transposed into the image's output planes.
 *
 * Backward data for stride 1 is the same computation with the weights flipped and transposed
 * (conv_direct.c explains why), padded by 2 - pad. Rounding differs from direct summation by
 * about the size of the transforms' sums: errors grow like those of a 16-term sum, not more. */
#include <immintrin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/internal.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define XI 16   /* points of the transformed 4x4 tile */
#define TR 6    /* tiles per register block */
#define OB 64   /* output channels per register block (4 vectors) */
#define MAX_TILES 4096

/* Used by shape where it pays: enough channels for the GEMMs to run at full speed and planes
 * at least 6 wide, where the rounding up to even rows wastes at most a quarter of the tiles
 * (bench/kernels, "winograd" rows). */
#define MIN_C 16
#define MIN_OC 48
#define MIN_OUT 6

typedef struct {
  int64_t B, C, H, W, OC, ph, pw, OH, OW;
  int64_t TH, TW, T; /* tiles down, across, in all */
  int64_t Hp, Wp;    /* padded channel-minor image (Hp, Wp, Cv) */
  int64_t Cv, OCp;   /* channels rounded up to 16, output channels rounded up to 64 */
} wconv;

static bool wconv_make(wconv *d, int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t ph, int64_t pw) {
  d->B = B, d->C = C, d->H = H, d->W = W, d->OC = OC, d->ph = ph, d->pw = pw;
  d->OH = H + 2 * ph - 2, d->OW = W + 2 * pw - 2;
  if (ph < 0 || pw < 0 || d->OH < 1 || d->OW < 1) return false;
  d->TH = (d->OH + 1) / 2, d->TW = (d->OW + 1) / 2, d->T = d->TH * d->TW;
  if (d->T > MAX_TILES) return false;
  d->Hp = 2 * d->TH + 2, d->Wp = 2 * d->TW + 2;
  d->Cv = (C + 15) & ~(int64_t)15, d->OCp = (OC + OB - 1) / OB * OB;
  return true;
}

static bool pays(const wconv *d) { return d->C >= MIN_C && d->OC >= MIN_OC && d->OH >= MIN_OUT && d->OW >= MIN_OUT; }

static bool forward_shape(const ml_conv_shape *s, wconv *d) {
  int which = ml__conv_direct_which();
  return ml__conv_direct_on() && (which == 0 || which == 3) && s->stride == 1 && s->KH == 3 && s->KW == 3 &&
         ml__simd_level() >= ML_SIMD_AVX512 && wconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->pad, s->pad) &&
         (which == 3 || pays(d));
}

/* din = conv(dout, flipped transposed w), padded by 2 - pad */
static bool backward_data_shape(const ml_conv_shape *s, wconv *d) {
  int which = ml__conv_direct_which();
  return ml__conv_direct_on() && (which == 0 || which == 3) && s->stride == 1 && s->KH == 3 && s->KW == 3 &&
         ml__simd_level() >= ML_SIMD_AVX512 &&
         wconv_make(d, s->B, s->OC, s->OH, s->OW, s->C, 2 - s->pad, 2 - s->pad) && d->OH == s->H &&
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

static size_t u_floats(const wconv *d) { return (size_t)(XI * d->C * d->OCp); }
static size_t image_floats(const wconv *d) { return (size_t)(d->Hp * d->Wp * d->Cv); }
static size_t v_floats(const wconv *d) { return (size_t)(XI * d->T * d->Cv); }
static size_t m_floats(const wconv *d) { return (size_t)(XI * d->T * d->OCp); }
static size_t out_floats(const wconv *d) { return (size_t)(d->OH * d->OW * d->OCp); }
static size_t worker_floats(const wconv *d) {
  return image_floats(d) + v_floats(d) + m_floats(d) + out_floats(d); /* each a multiple of 16 */
}
static size_t wconv_scratch(const wconv *d, int workers) {
  return u_floats(d) + (size_t)d->OCp + worker_floats(d) * (size_t)workers;
}

size_t ml__conv_winograd_scratch_floats(const ml_conv_shape *s, int workers) {
  wconv d;
  size_t f = 0, g;
  if (forward_shape(s, &d) && (g = wconv_scratch(&d, workers)) > f) f = g;
  if (backward_data_shape(s, &d) && (g = wconv_scratch(&d, workers)) > f) f = g;
  return f;
}

/* ---- transforms ---- */

/* U[xi][c][o] = (G g G^T)[xi] for the 3x3 filter g of input channel c, output channel o (o < OC;
 * zeros up to OCp), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. tap(o, c, k) is g[k / 3][k % 3]. */
static void transform_filter(const float g[9], float u[XI]) {
  float t[4][3];
  for (int j = 0; j < 3; j++) {
    t[0][j] = g[j];
    t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
    t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
    t[3][j] = g[6 + j];
  }
  for (int i = 0; i < 4; i++) {
    u[4 * i + 0] = t[i][0];
    u[4 * i + 1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
    u[4 * i + 2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
    u[4 * i + 3] = t[i][2];
  }
}

/* The image's tiles' V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], on vectors of
 * 16 channels: V[xi][t][c]. */
AVX512_TARGET static void transform_input(const wconv *d, const float *xh, float *V) {
  const int64_t Cv = d->Cv, Wp = d->Wp, T = d->T;
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
        float *v = V + t * Cv + c;
        const int64_t step = T * Cv; /* from one point to the next */
        for (int i = 0; i < 4; i++) {
          _mm512_storeu_ps(v + (4 * i + 0) * step, _mm512_sub_ps(r[i][0], r[i][2]));
          _mm512_storeu_ps(v + (4 * i + 1) * step, _mm512_add_ps(r[i][1], r[i][2]));
          _mm512_storeu_ps(v + (4 * i + 2) * step, _mm512_sub_ps(r[i][2], r[i][1]));
          _mm512_storeu_ps(v + (4 * i + 3) * step, _mm512_sub_ps(r[i][1], r[i][3]));
        }
      }
}

/* M[xi][t][o] = sum over c of V[xi][t][c] U[xi][c][o], for nt <= TR tiles from t0 and the 64
 * output channels from o0 */
AVX512_TARGET static inline __attribute__((always_inline)) void gemm_tile(const wconv *d, const float *V,
                                                                          const float *U, float *M, int64_t t0,
                                                                          int64_t o0, const int nt) {
  __m512 acc[TR][4];
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < nt)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
  const float *u = U + o0, *x = V + t0 * d->Cv;
  const int64_t Cv = d->Cv, OCp = d->OCp;
  for (int64_t c = 0; c < d->C; c++, u += OCp, x++) {
    __m512 w[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) w[v] = _mm512_loadu_ps(u + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < TR; i++)
      if (i < nt) {
        const __m512 b = _mm512_set1_ps(x[i * Cv]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(w[v], b, acc[i][v]);
      }
  }
  float *m = M + t0 * OCp + o0;
#pragma GCC unroll 6
  for (int i = 0; i < TR; i++)
    if (i < nt)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) _mm512_storeu_ps(m + i * OCp + 16 * v, acc[i][v]);
}

AVX512_TARGET static void gemms(const wconv *d, const float *V, const float *U, float *M) {
  const int64_t T = d->T, tiles = (T + TR - 1) / TR, base = T / tiles, extra = T % tiles;
  for (int64_t xi = 0; xi < XI; xi++) {
    const float *v = V + xi * T * d->Cv, *u = U + xi * d->C * d->OCp;
    float *m = M + xi * T * d->OCp;
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
  const int64_t T = d->T, OCp = d->OCp, step = T * OCp, OW = d->OW;
  for (int64_t ty = 0, t = 0; ty < d->TH; ty++)
    for (int64_t tx = 0; tx < d->TW; tx++, t++) {
      const bool down = 2 * ty + 1 < d->OH, right = 2 * tx + 1 < OW;
      float *y0 = ob + ((2 * ty) * OW + 2 * tx) * OCp;
      for (int64_t o = 0; o < OCp; o += 16) {
        const float *m = M + t * OCp + o;
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

typedef struct {
  const wconv *d;
  const float *in, *U, *bias;
  float *out, *work;
} wjob;

AVX512_TARGET static void image_item(int64_t b, int worker, void *vj) {
  const wjob *j = vj;
  const wconv *d = j->d;
  float *xh = j->work + (size_t)worker * worker_floats(d), *V = xh + image_floats(d), *M = V + v_floats(d);
  float *ob = M + m_floats(d);
  /* the image channel-minor inside a zero border (and zero channels up to Cv) */
  memset(xh, 0, image_floats(d) * sizeof(float));
  const float *x = j->in + b * d->C * d->H * d->W;
  for (int64_t y = 0; y < d->H; y++)
    ml__transpose16(xh + ((y + d->ph) * d->Wp + d->pw) * d->Cv, d->Cv, x + y * d->W, d->H * d->W, d->C, d->W,
                    d->C);
  transform_input(d, xh, V);
  gemms(d, V, j->U, M);
  transform_output(d, M, j->bias, ob);
  const int64_t P = d->OH * d->OW;
  ml__transpose16(j->out + b * d->OC * P, P, ob, d->OCp, P, d->OC, P);
}

/* U from the weights (tap(o, c) gives filter (o, c)'s 9 floats, flipped or not), then the images */
static void run(const wconv *d, float *out, const float *in, const float *w, bool flip, const float *bias,
                float *scratch) {
  float *U = scratch, *biasp = U + u_floats(d), *work = biasp + d->OCp;
  memset(U, 0, u_floats(d) * sizeof(float));
  for (int64_t o = 0; o < d->OC; o++)
    for (int64_t c = 0; c < d->C; c++) {
      float g[9], u[XI];
      if (!flip) /* forward: w (OC, C, 3, 3) */
        memcpy(g, w + (o * d->C + c) * 9, sizeof g);
      else /* backward data: the flipped filter of w (C_in = d->OC, C_out = d->C) */
        for (int k = 0; k < 9; k++) g[k] = w[(c * d->OC + o) * 9 + 8 - k];
      transform_filter(g, u);
      for (int xi = 0; xi < XI; xi++) U[(xi * d->C + c) * d->OCp + o] = u[xi];
    }
  if (bias) {
    for (int64_t o = 0; o < d->OCp; o++) biasp[o] = o < d->OC ? bias[o] : 0.0f;
    bias = biasp;
  }
  wjob j = {.d = d, .in = in, .U = U, .bias = bias, .out = out, .work = work};
  ml__kernels_run(d->B, image_item, &j);
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
