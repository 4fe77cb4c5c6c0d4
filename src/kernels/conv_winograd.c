/* kernels/conv_winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3)
 * and F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016),
 * AVX-512 and AVX2: the vector code (conv_winograd_body.h) is compiled once per ISA and chosen at
 * run time by ml__simd_level(); the data layouts are the same for both.
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
 * channel-minor (pixel, channel) so that the input transform runs on vectors of 16 (AVX2: 8)
 * channels; the GEMMs keep 6 tiles x 64 output channels in 24 registers over the input channels,
 * as the direct channel-vector kernel does (4 vector loads of U and 6 broadcasts of V per channel;
 * AVX2: 6 tiles x 16 channels in 12 of its 16 registers), one point at a time so that the point's
 * U (C x 64 floats, 16 KB for 64 channels) stays in L1; the output
 * transform writes a (position, channel) buffer, transposed into the image's output planes.
 * AVX2 (F(4x4)) does both layout changes 16 channels at a time through buffers that stay in L1
 * (x_tiles, dy_tiles, out_tiles in conv_winograd_body.h): the same bits, less L2 traffic.
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

#define TR 6    /* tiles per register block */
#define OC_ROUND 64 /* output channels rounded up to a multiple of both ISAs' register blocks */
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
  d->Cv = (C + 15) & ~(int64_t)15, d->OCp = (OC + OC_ROUND - 1) / OC_ROUND * OC_ROUND;
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
         s->KW == 3 && ml__simd_level() >= ML_SIMD_AVX2 &&
         wconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->pad, s->pad) && batch(d) &&
         (which == 3 || pays(d));
}

/* din = conv(dout, flipped transposed w), padded by 2 - pad */
static bool backward_data_shape(const ml_conv_shape *s, wconv *d) {
  int which = ml__conv_direct_which();
  return ml__conv_direct_on() && !g_off && (which == 0 || which == 3) && s->stride == 1 && s->KH == 3 &&
         s->KW == 3 && ml__simd_level() >= ML_SIMD_AVX2 &&
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


typedef struct {
  const wconv *d;
  const float *in, *U, *bias;
  float *out, *work;
} wjob;

/* The vector code, compiled once per ISA (conv_winograd_body.h): FN(name) is name_avx512 or name_avx2 */
#define FN(name) FN_(name, SUFFIX)
#define FN_(name, suffix) FN__(name, suffix)
#define FN__(name, suffix) name##_##suffix

#define SUFFIX avx512
#define TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define VEC __m512
#define VL 16
#define OB 64 /* output channels per register block */
#define NV 4  /* vectors per register block */
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#include "kernels/conv_winograd_body.h"
#undef SUFFIX
#undef TARGET
#undef VEC
#undef VL
#undef OB
#undef NV
#undef VLOAD
#undef VSTORE
#undef VADD
#undef VSUB
#undef VMUL
#undef VFMADD
#undef VFNMADD
#undef VSET1
#undef VZERO

#define SUFFIX avx2
#define TARGET __attribute__((target("avx2,fma")))
#define VEC __m256
#define VL 8
#define OB 16
#define NV 2
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VSET1 _mm256_set1_ps
#define VZERO _mm256_setzero_ps
#include "kernels/conv_winograd_body.h"

/* the AVX-512 copy where the level allows it (the shapes require at least AVX2) */
static bool v512(void) { return ml__simd_level() >= ML_SIMD_AVX512; }

/* U from the weights, then the images */
static void run(const wconv *d, float *out, const float *in, const float *w, bool flip, const float *bias,
                float *scratch) {
  float *U = scratch, *biasp = U + u_floats(d), *tm = biasp + d->OCp, *work = tm + tm_floats(d);
  (v512() ? transform_filters_avx512 : transform_filters_avx2)(d, w, flip, tm, U);
  if (bias) {
    for (int64_t o = 0; o < d->OCp; o++) biasp[o] = o < d->OC ? bias[o] : 0.0f;
    bias = biasp;
  }
  wjob j = {.d = d, .in = in, .U = U, .bias = bias, .out = out, .work = work};
  const int64_t nb = d->TS / d->T;
  ml__kernels_run((d->B + nb - 1) / nb, v512() ? group_item_avx512 : group_item_avx2, &j);
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


void ml__conv_winograd_backward_filters(const ml_conv_shape *s, const float *w, float *work) {
  wback k;
  wback_make(s, work, &k);
  (v512() ? transform_filters_avx512 : transform_filters_avx2)(&k.bd, w, true, k.tm, k.U);
}

void ml__conv_winograd_weight_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                    int64_t last, int64_t c0, int64_t c1, float *work, float *dw, float *db) {
  (v512() ? weight_group_avx512 : weight_group_avx2)(s, in, dout, first, last, c0, c1, work, dw, db);
}

void ml__conv_winograd_backward_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                      int64_t last, float *work, float *din, float *dw, float *db) {
  (v512() ? backward_group_avx512 : backward_group_avx2)(s, in, dout, first, last, work, din, dw, db);
}
