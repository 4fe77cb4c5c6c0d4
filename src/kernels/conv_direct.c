/* kernels/conv_direct.c: stride-1 convolution read straight from a zero-padded copy of each
 * image (AVX-512; a first layer's forward and weight gradient also AVX2, at the end), with no
 * im2col matrix.
 *
 * The output positions run over the padded grid flattened row by row: OH rows of Wp = W + 2*pw
 * columns, of which the last Wp - OW of each row are junk. For the tap (kh, kw), the inputs of
 * the 16 consecutive positions q..q+15 are the 16 consecutive floats at q + kh*Wp + kw of the
 * padded plane, so each tap of each channel is one unaligned load per 16 outputs: a GEMM
 * (OC x K) * (K x positions) whose B operand is read in place instead of being written out by
 * im2col and packed again by the GEMM. A tile keeps 8 output channels x 3 vectors of 16 positions
 * in 24 registers through all C*KH*KW taps; at the store, a compress drops the junk lanes, and
 * the valid lanes of a vector are consecutive in the dense output (a position r*Wp + c with
 * c < OW lands on r*OW + c). The junk costs 2*pw/Wp of the arithmetic (12.5% on 14x14 planes),
 * less than the im2col write and the GEMM's own packing pass it replaces.
 *
 * Backward data for stride 1 is the same computation: the gradient of the output convolved
 * with the weights flipped in both spatial axes and transposed in the channel axes, padded by
 * K - 1 - pad. Each image is one work item: the same bits at any thread count. */
#include <immintrin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/internal.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define MR 8      /* output channels per tile */
#define NR 3      /* 16-lane vectors per tile */
#define MAX_NV 512 /* vectors per output plane the kernel takes (OH * Wp <= 8192) */

#define PR 6  /* output positions per tile of the channel-vector kernel */
#define OB 64 /* output channels per block of the channel-vector kernel (4 vectors) */

typedef struct {
  int64_t B, C, H, W, OC, KH, KW, ph, pw, OH, OW;
  int64_t Wp, PS, NV; /* padded row, floats per padded plane (with slack), vectors per output plane */
  bool by_channel;    /* the channel-vector kernel (else the row-vector one) */
  bool aligned;       /* row-vector kernel: vectors start at each output row (no compress) */
  int64_t NR_ROW;     /* vectors per output row when aligned */
  bool flat;          /* row-vector kernel on shifted copies: vectors along the whole output plane */
  bool stream;        /* flat, and an output too large for the caches: full vectors stored past them */
  int64_t RS, KS;     /* floats from one kernel row, one kernel column, to the next in the image */
} dconv;

/* Which kernel: 0 = by shape, 1 = row-vector, 2 = channel-vector (the tests run both) */
static _Atomic int g_kernel;
void ml__conv_direct_kernel(int which) { g_kernel = which; }
int ml__conv_direct_which(void) { return g_kernel; }

/* The row-vector kernel: narrower output rows waste more lanes (a 3-wide row keeps 9 of a
 * vector's 16 lanes). Measured on Conv4's shapes (bench/kernels, Intel AVX-512): it wins the
 * forward down to 3x3 planes (1.3x there, 1.5x on 14x14) and the backward data down to 7x7, but
 * loses it on 3x3 (0.8x) to batched im2col + GEMM. The channel-vector kernel takes any width. */
#define MIN_OW_FORWARD 3
#define MIN_OW_BACKWARD_DATA 7
/* The channel-vector kernel needs taps enough to pay for transposing its output, and output
 * channels enough to fill its 4 vectors. */
#define MIN_CHANNEL_TAPS 64
#define MIN_CHANNEL_OC 48

/* Floats per shifted copy of an image (shifted_copies): OH + KH - 1 rows of OW, and what the last
 * 16-lane vector along the output plane reads past them through the last kernel row */
static int64_t shifted_copy_floats(const dconv *d) {
  const int64_t rows = (d->OH + d->KH - 1) * d->OW, reach = (d->OH * d->OW + 15) / 16 * 16 + (d->KH - 1) * d->OW;
  return ((rows > reach ? rows : reach) + 15) & ~(int64_t)15;
}

static void flat_layout(dconv *d) {
  d->flat = d->aligned = true, d->NV = (d->OH * d->OW + 15) / 16, d->RS = d->OW, d->KS = shifted_copy_floats(d);
  d->PS = d->KW * d->KS;
}

/* min_ow < 0: the weight gradient's shape (-min_ow wide rows at least), no kernel choice */
static bool dconv_make(dconv *d, int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH, int64_t KW,
                       int64_t ph, int64_t pw, int64_t min_ow) {
  if (ph < 0 || pw < 0) return false;
  d->B = B, d->C = C, d->H = H, d->W = W, d->OC = OC, d->KH = KH, d->KW = KW, d->ph = ph, d->pw = pw;
  d->OH = H + 2 * ph - KH + 1, d->OW = W + 2 * pw - KW + 1, d->Wp = W + 2 * pw;
  d->by_channel = min_ow > 0 && (g_kernel == 2 || ((g_kernel == 0 || g_kernel == 3) && C * KH * KW >= MIN_CHANNEL_TAPS &&
                                                   OC >= MIN_CHANNEL_OC));
  /* the channel-vector kernel wastes no lanes on narrow rows */
  if (d->OH < 1 || d->OW < (d->by_channel ? 1 : min_ow < 0 ? -min_ow : min_ow)) return false;
  d->NV = (d->OH * d->Wp + 15) / 16;
  if (d->NV > MAX_NV) return false;
  /* Rows that fill at least 3/4 of their vectors (28 wide: 16 + 12 lanes) get vectors of their
   * own: a plain masked store instead of a compress across the junk columns (2 more uops per
   * vector on the port the FMAs share; a first layer's 9 FMAs per output feel it). */
  d->NR_ROW = (d->OW + 15) / 16;
  d->aligned = !d->by_channel && 4 * d->OW >= 3 * 16 * d->NR_ROW && d->OH * d->NR_ROW <= MAX_NV;
  if (d->aligned) d->NV = d->OH * d->NR_ROW;
  /* the last vector's last tap reads up to NV*16 - 1 + (KH-1)*Wp + KW-1 (aligned: up to 16 past
   * the last row's end) */
  int64_t need = d->NV * 16 + (KH - 1) * d->Wp + KW - 1 + 16, hw = (H + 2 * ph) * d->Wp + pw;
  d->PS = ((need > hw ? need : hw) + 15) & ~(int64_t)15;
  d->RS = d->Wp, d->KS = 1, d->stream = false;
  /* Few channels (a first layer), rows that leave lanes idle (28 wide: 4 in 32): the image as
   * KW copies shifted left by 0..KW-1 columns, rows as long as the output's, so that every tap
   * is one offset from the flat output position and the vectors run along the whole plane
   * (28x28: 49 vectors instead of 56). KW times the image: only where the image is small
   * against the work, C * KH * KW below the channel-vector kernel's minimum. */
  const int64_t P = d->OH * d->OW;
  d->flat = min_ow > 0 && !d->by_channel && C * KH * KW < MIN_CHANNEL_TAPS && (P + 15) / 16 < d->NV &&
            (P + 15) / 16 <= MAX_NV;
  if (d->flat) flat_layout(d);
  return true;
}

static int64_t mr(const dconv *d) { return d->by_channel ? OB : MR; }
static size_t wt_floats(const dconv *d) {
  return (size_t)(((d->OC + mr(d) - 1) / mr(d)) * mr(d) * d->C * d->KH * d->KW);
}
static size_t plane_floats(const dconv *d) { return (size_t)(d->C * d->PS); }
/* the channel-vector kernel's output channels rounded up to whole blocks (its bias copy and the
 * row length of its output buffer); 0 for the row-vector kernel */
static int64_t oc_blocks(const dconv *d) { return d->by_channel ? (d->OC + OB - 1) / OB * OB : 0; }
/* the channel-vector kernel's output, position-major: (OH*OW, oc_blocks) */
static size_t tbuf_floats(const dconv *d) { return (size_t)(d->OH * d->OW * oc_blocks(d)); }
static size_t worker_floats(const dconv *d) { return ((plane_floats(d) + 15) & ~(size_t)15) + tbuf_floats(d); }
static size_t dconv_scratch(const dconv *d, int workers) {
  return ((wt_floats(d) + 15) & ~(size_t)15) + (size_t)oc_blocks(d) + worker_floats(d) * (size_t)workers;
}

static _Atomic bool g_off;
void ml_conv_use_direct(bool on) { g_off = !on; }
bool ml__conv_direct_on(void) { return !g_off; }
const char *ml_conv_backend(void) {
  if (g_off || ml__simd_level() < ML_SIMD_AVX2) return "im2col + gemm";
  if (ml__simd_level() < ML_SIMD_AVX512) /* AVX2: Winograd, and the direct kernels for first layers only */
    return ml__conv_winograd_on()
               ? "winograd F(4x4,3x3) avx2 (3x3 stride 1, >= 16 channels, planes >= 3 wide); direct avx2 (3x3 stride 1, "
                 "1-3 input channels, planes >= 64 positions); im2col + gemm"
               : "direct avx2 (3x3 stride 1, 1-3 input channels, planes >= 64 positions); im2col + gemm";
  return ml__conv_winograd_on()
             ? "winograd F(4x4,3x3) avx512 (3x3 stride 1, >= 16 channels, planes >= 3 wide); direct avx512 (stride 1; "
               "vectors over output channels, or over output rows >= 3 wide); im2col + gemm"
             : "direct avx512 (stride 1; vectors over output channels, or over output rows >= 3 wide); im2col + gemm";
}

static bool avx2_first_layer(const ml_conv_shape *s, bool weight);

static bool forward_shape(const ml_conv_shape *s, dconv *d) {
  if (!g_off && s->stride == 1 && ml__simd_level() == ML_SIMD_AVX2 && avx2_first_layer(s, false) &&
      dconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->pad, s->pad, 1) && !d->by_channel) {
    flat_layout(d); /* AVX2: always the flat layout (no junk lanes, whatever the plane) */
    return true;
  }
  return !g_off && s->stride == 1 && ml__simd_level() >= ML_SIMD_AVX512 &&
         dconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->pad, s->pad, MIN_OW_FORWARD);
}

/* din = conv(dout, flipped transposed w), padded by K - 1 - pad */
static bool backward_data_shape(const ml_conv_shape *s, dconv *d) {
  return !g_off && s->stride == 1 && ml__simd_level() >= ML_SIMD_AVX512 &&
         dconv_make(d, s->B, s->OC, s->OH, s->OW, s->C, s->KH, s->KW, s->KH - 1 - s->pad, s->KW - 1 - s->pad,
                   MIN_OW_BACKWARD_DATA) &&
         d->OH == s->H && d->OW == s->W;
}

bool ml__conv_direct_forward_ok(const ml_conv_shape *s) {
  dconv d;
  return forward_shape(s, &d);
}

bool ml__conv_direct_backward_data_ok(const ml_conv_shape *s) {
  dconv d;
  return backward_data_shape(s, &d);
}

size_t ml__conv_direct_scratch_floats(const ml_conv_shape *s, int workers) {
  dconv d;
  size_t f = 0, g;
  if (forward_shape(s, &d) && (g = dconv_scratch(&d, workers)) > f) f = g;
  if (backward_data_shape(s, &d) && (g = dconv_scratch(&d, workers)) > f) f = g;
  return f;
}

/* ---- the kernel ---- */

static inline __mmask16 lanes16(int64_t n) { /* the first min(n, 16) lanes */
  return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

typedef struct {
  int64_t src;    /* padded-grid offset of the vector's first lane */
  int64_t dest;   /* dense output offset of the vector's first valid lane */
  __mmask16 keep; /* valid lanes */
  __mmask16 low;  /* the first popcount(keep) lanes */
} vec_store;

typedef struct {
  const dconv *d;
  const float *in, *wt, *bias;
  float *out, *planes;
  const vec_store *vs;
} dconv_job;

/* One tile: MR output channels from oc0, nr vectors from v0, all channels and taps. The flat
 * layout (vector v at 16 v of the output plane and of the shifted copies) computes its addresses
 * and masks instead of reading the store table: with 9 taps per tile, the table's loads, masks and
 * branches at each of the 24 stores were a fifth of the instructions (bench/kernels, first layer,
 * one image: 99-100 -> 109-123 GFLOP/s). stream (flat only): the output is 64-byte aligned and its
 * planes whole vectors, stores streamed. */
AVX512_TARGET static inline __attribute__((always_inline)) void tile(const dconv *d, const float *xp,
                                                                     const float *wt, const float *bias,
                                                                     int64_t oc0, int64_t v0, float *out,
                                                                     const vec_store *vs, const int nr,
                                                                     const bool aligned, const bool k3,
                                                                     const bool flat, const bool stream) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    const __m512 b = _mm512_set1_ps(bias && oc0 + i < d->OC ? bias[oc0 + i] : 0.0f);
#pragma GCC unroll 3
    for (int j = 0; j < NR; j++) acc[i][j] = b;
  }
  const int64_t RS = d->RS, KS = d->KS, KH = k3 ? 3 : d->KH, KW = k3 ? 3 : d->KW;
  const float *xv[NR];
#pragma GCC unroll 3
  for (int j = 0; j < NR; j++) xv[j] = xp + (flat ? 16 * (v0 + j) : j < nr ? vs[v0 + j].src : 0);
  for (int64_t c = 0; c < d->C; c++)
#pragma GCC unroll 3
    for (int64_t kh = 0; kh < KH; kh++)
#pragma GCC unroll 3
      for (int64_t kw = 0; kw < KW; kw++, wt += MR) {
        const int64_t off = c * d->PS + kh * RS + kw * KS;
        __m512 bv[NR];
#pragma GCC unroll 3
        for (int j = 0; j < NR; j++) bv[j] = j < nr ? _mm512_loadu_ps(xv[j] + off) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
          const __m512 a = _mm512_set1_ps(wt[i]);
#pragma GCC unroll 3
          for (int j = 0; j < NR; j++)
            if (j < nr) acc[i][j] = _mm512_fmadd_ps(a, bv[j], acc[i][j]);
        }
      }
  const int64_t P = d->OH * d->OW;
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    if (oc0 + i >= d->OC) break;
    float *o = out + (oc0 + i) * P;
#pragma GCC unroll 3
    for (int j = 0; j < NR; j++)
      if (j < nr) {
        if (flat) {
          const int64_t q = 16 * (v0 + j);
          if (P - q < 16) _mm512_mask_storeu_ps(o + q, lanes16(P - q), acc[i][j]);
          else if (stream) _mm512_stream_ps(o + q, acc[i][j]);
          else _mm512_storeu_ps(o + q, acc[i][j]);
          continue;
        }
        const vec_store *v = &vs[v0 + j];
        if (aligned) _mm512_mask_storeu_ps(o + v->dest, v->low, acc[i][j]);
        else _mm512_mask_storeu_ps(o + v->dest, v->low, _mm512_maskz_compress_ps(v->keep, acc[i][j]));
      }
  }
}

/* copies[c][kw][y * OW + x] (each copy shifted_copy_floats) = the padded image's pixel (y, x + kw),
 * for the OH + KH - 1 rows of the padded image; zeros after them */
AVX512_TARGET static void shifted_copies(const dconv *d, float *copies, const float *x) {
  const int64_t H = d->H, W = d->W, OW = d->OW, rows = d->OH + d->KH - 1, KS = shifted_copy_floats(d);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c = 0; c < d->C; c++, x += H * W)
    for (int64_t kw = 0; kw < d->KW; kw++) {
      float *o = copies + (c * d->KW + kw) * KS;
      const int64_t shift = kw - d->pw; /* output column j reads input column j + shift */
      for (int64_t y = 0; y < rows; y++) {
        const int64_t h = y - d->ph;
        for (int64_t j = 0; j < OW; j += 16) {
          __m512 v = zero;
          if (h >= 0 && h < H) { /* lanes whose input column lies in [0, W); masked lanes never load */
            const int64_t a = -shift - j, lo = a > 0 ? a : 0, hi = W - shift - j;
            if (hi > lo) v = _mm512_maskz_loadu_ps(lanes16(hi) & (__mmask16)~lanes16(lo), x + h * W + j + shift);
          }
          _mm512_mask_storeu_ps(o + y * OW + j, lanes16(OW - j), v);
        }
      }
      for (int64_t k = rows * OW; k < KS; k += 16) _mm512_mask_storeu_ps(o + k, lanes16(KS - k), zero);
    }
}

/* Zero the plane, then copy the rows in: per channel a handful of vector stores, no library
 * calls (a 3x3 plane's padded copy is 2 vectors; memset's call overhead was half of a 3x3
 * layer's weight gradient). The flat kernel's image is its shifted copies instead. */
AVX512_TARGET static void pad_image(const dconv *d, float *restrict xp, const float *restrict x) {
  if (d->flat) {
    shifted_copies(d, xp, x);
    return;
  }
  const int64_t H = d->H, W = d->W, Wp = d->Wp;
  const __m512 zero = _mm512_setzero_ps();
  const int64_t top = d->ph * Wp + d->pw, bottom = (d->ph + H) * Wp + d->pw; /* first and last padding runs */
  for (int64_t c = 0; c < d->C; c++, xp += d->PS, x += H * W) {
    for (int64_t k = 0; k < top; k += 16) _mm512_mask_storeu_ps(xp + k, lanes16(top - k), zero);
    float *row = xp + top;
    for (int64_t h = 0; h < H; h++, row += Wp) {
      const float *src = x + h * W;
      int64_t w = 0;
      for (; w + 16 <= W; w += 16) _mm512_storeu_ps(row + w, _mm512_loadu_ps(src + w));
      /* the row's tail, then this row's right padding and the next row's left one (up to the
       * next row's first pixel: the last row's reach ends at the bottom padding) */
      const int64_t end = W + 2 * d->pw;
      _mm512_mask_storeu_ps(row + w, lanes16(end - w), _mm512_maskz_loadu_ps(lanes16(W - w), src + w));
      for (int64_t k = w + 16; k < end; k += 16) _mm512_mask_storeu_ps(row + k, lanes16(end - k), zero);
    }
    for (int64_t k = bottom; k < d->PS; k += 16) _mm512_mask_storeu_ps(xp + k, lanes16(d->PS - k), zero);
  }
}

/* ---- the channel-vector kernel ----
 * The other way round: vectors over 16 output channels, broadcasts of input pixels. A tile
 * keeps PR output positions x 64 output channels in 24 registers through all C*KH*KW taps; per
 * tap, 4 vector loads of weights and PR broadcasts for 4*PR FMAs. Every lane is a real output
 * (no junk columns, however narrow the rows), and the positions of a tile may straddle rows,
 * each with its own pointer into the padded image. The tile lands position-major in a buffer
 * (position, channel), transposed to the dense output in 16 x 16 blocks after the image. */
AVX512_TARGET static inline __attribute__((always_inline)) void ctile(const dconv *d, const float *xp,
                                                                      const float *wt, const float *bias64,
                                                                      int64_t r, int64_t c, float *tb, int64_t ldt,
                                                                      const int np, const bool k3) {
  __m512 acc[PR][4];
  const float *xq[PR];
  const int64_t Wp = d->Wp, PS = d->PS, KH = k3 ? 3 : d->KH, KW = k3 ? 3 : d->KW;
#pragma GCC unroll 6
  for (int i = 0; i < PR; i++)
    if (i < np) {
      xq[i] = xp + r * Wp + c;
      if (++c == d->OW) c = 0, r++;
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) acc[i][v] = bias64 ? _mm512_loadu_ps(bias64 + 16 * v) : _mm512_setzero_ps();
    }
  for (int64_t ch = 0; ch < d->C; ch++) {
#pragma GCC unroll 3
    for (int64_t kh = 0; kh < KH; kh++)
#pragma GCC unroll 3
      for (int64_t kw = 0; kw < KW; kw++, wt += OB) {
        const int64_t off = kh * Wp + kw;
        __m512 w[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) w[v] = _mm512_loadu_ps(wt + 16 * v);
#pragma GCC unroll 6
        for (int i = 0; i < PR; i++)
          if (i < np) {
            const __m512 x = _mm512_set1_ps(xq[i][off]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(w[v], x, acc[i][v]);
          }
      }
#pragma GCC unroll 6
    for (int i = 0; i < PR; i++)
      if (i < np) xq[i] += PS;
  }
#pragma GCC unroll 6
  for (int i = 0; i < PR; i++)
    if (i < np)
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) _mm512_storeu_ps(tb + i * ldt + 16 * v, acc[i][v]);
}

/* The 16 x 16 block at src (rows lds apart; rows past nr and columns outside mc read as zero)
 * loaded transposed: out[j] = column j. Each register is assembled from four 128-bit row pieces
 * (lane g from row 4g + k), so one 4 x 4 transpose inside the lanes finishes it: 32 shuffles
 * instead of the 64 of a transpose of 16 loaded rows, which all compete for one port, while the
 * inserts can use two. Callers pass the whole-block case with constant arguments, so that its
 * copy is compiled without the masks. */
AVX512_TARGET static inline __attribute__((always_inline)) void load_transposed16(const float *src, int64_t lds,
                                                                                   int nr, __mmask16 mc,
                                                                                   __m512 out[16]) {
  const bool full = nr == 16 && mc == 0xffff;
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
    const __mmask8 mq = (__mmask8)((mc >> (4 * q)) & 0xf);
    __m512 x[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
      __m128 piece[4];
#pragma GCC unroll 4
      for (int g = 0; g < 4; g++) {
        const float *p = src + (4 * g + k) * lds + 4 * q;
        piece[g] = full ? _mm_loadu_ps(p) : 4 * g + k < nr && mq ? _mm_maskz_loadu_ps(mq, p) : _mm_setzero_ps();
      }
      /* lane numbers spelled out: the insert takes a constant */
      __m512 v = _mm512_castps128_ps512(piece[0]);
      v = _mm512_insertf32x4(v, piece[1], 1);
      v = _mm512_insertf32x4(v, piece[2], 2);
      x[k] = _mm512_insertf32x4(v, piece[3], 3);
    }
    const __m512 t0 = _mm512_unpacklo_ps(x[0], x[1]), t1 = _mm512_unpackhi_ps(x[0], x[1]);
    const __m512 t2 = _mm512_unpacklo_ps(x[2], x[3]), t3 = _mm512_unpackhi_ps(x[2], x[3]);
    out[4 * q + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
    out[4 * q + 1] = _mm512_shuffle_ps(t0, t2, 0xee);
    out[4 * q + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
    out[4 * q + 3] = _mm512_shuffle_ps(t1, t3, 0xee);
  }
}

/* dst (cols, ldd) = src (rows, lds) transposed, in 16 x 16 register blocks; each dst row gets
 * width floats, zeros past rows (the channel-vector kernel's output back to (OC, P): width = P;
 * an output gradient to (P, OC rounded up to 16) for the weight gradient: width = that) */
AVX512_TARGET static void transpose(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                                    int64_t cols, int64_t width) {
  for (int64_t c0 = 0; c0 < cols; c0 += 16) {
    const __mmask16 mc = lanes16(cols - c0);
    const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
    for (int64_t r0 = 0; r0 < width; r0 += 16) {
      __m512 r[16];
      if (r0 + 16 <= rows && nc == 16)
        load_transposed16(src + r0 * lds + c0, lds, 16, 0xffff, r);
      else
        load_transposed16(src + r0 * lds + c0, lds, rows - r0 < 16 ? (int)(rows - r0) : 16, mc, r);
      const __mmask16 mw = lanes16(width - r0);
      if (nc == 16) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(dst + (c0 + i) * ldd + r0, mw, r[i]);
      } else {
        for (int i = 0; i < nc; i++) _mm512_mask_storeu_ps(dst + (c0 + i) * ldd + r0, mw, r[i]);
      }
    }
  }
}

/* Tiles as even as they go (P = 49: 4 of 6 and 5 of 5, not 8 of 6 and 1 of 1) */
#define CTILE(np)                                                                              \
  (k3 ? ctile(d, xp, wt, b64, r, c, tb + p * ldt + ob, ldt, np, true)                          \
      : ctile(d, xp, wt, b64, r, c, tb + p * ldt + ob, ldt, np, false))
AVX512_TARGET static void channel_image(const dconv *d, const float *xp, const float *wt_all, const float *bias64,
                                        float *tb, float *out) {
  const int64_t P = d->OH * d->OW, taps = d->C * d->KH * d->KW, OCp = oc_blocks(d), ldt = OCp;
  const int64_t tiles = (P + PR - 1) / PR, base = P / tiles, extra = P % tiles; /* extra tiles of base + 1 */
  const bool k3 = d->KH == 3 && d->KW == 3;
  for (int64_t ob = 0; ob < OCp; ob += OB) {
    const float *wt = wt_all + ob * taps;
    const float *b64 = bias64 ? bias64 + ob : NULL;
    for (int64_t t = 0, p = 0, r = 0, c = 0; t < tiles; t++) {
      const int np = (int)(base + (t < extra));
      switch (np) {
        case 6: CTILE(6); break;
        case 5: CTILE(5); break;
        case 4: CTILE(4); break;
        case 3: CTILE(3); break;
        case 2: CTILE(2); break;
        default: CTILE(1); break;
      }
      p += np, c += np;
      while (c >= d->OW) c -= d->OW, r++;
    }
  }
  transpose(out, P, tb, ldt, P, d->OC, P);
}
#undef CTILE

/* AVX2 (conv_winograd.c's AVX2 path): the same in 8 x 8 blocks; a block with rows or columns
 * outside is read by masked loads. Loops unrolled so that the blocks stay in registers. */
#define AVX2_TARGET __attribute__((target("avx2,fma")))
AVX2_TARGET static inline __attribute__((always_inline)) void load_transposed8(const float *src, int64_t lds, int nr,
                                                                                int nc, __m256 out[8]) {
  __m256 r[8];
  if (nr == 8 && nc == 8) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
  } else { /* masked loads (cheap, unlike masked stores on AMD): zero past nc columns and nr rows */
    const __m256i mc = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = i < nr ? _mm256_maskload_ps(src + i * lds, mc) : _mm256_setzero_ps();
  }
  __m256 t[8], s[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int h = 0; h < 2; h++) { /* rows 4h..4h+3: columns j and j + 4 in s[4h + j]'s halves */
    s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    out[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
    out[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
  }
}

AVX2_TARGET static void transpose_avx2(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                                       int64_t cols, int64_t width) {
  /* A last block narrower than 8 is moved back to end at the edge when there is room (it rewrites
   * some of its neighbour's floats with the same values): full loads and stores, no masked store
   * (slow on AMD) and no partial block on 3x3 and 7x7 planes' 9 and 49 positions. */
  for (int64_t c0 = 0; c0 < cols; c0 += 8) {
    if (cols - c0 < 8 && cols >= 8) c0 = cols - 8;
    const int nc = cols - c0 < 8 ? (int)(cols - c0) : 8;
    for (int64_t r0 = 0; r0 < width; r0 += 8) {
      if (width - r0 < 8 && width >= 8) r0 = width - 8;
      const int nr = rows - r0 < 8 ? (rows - r0 > 0 ? (int)(rows - r0) : 0) : 8;
      const int nw = width - r0 < 8 ? (int)(width - r0) : 8;
      __m256 r[8];
      load_transposed8(src + r0 * lds + c0, lds, nr, nc, r);
      if (nw == 8) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
          if (i < nc) _mm256_storeu_ps(dst + (c0 + i) * ldd + r0, r[i]);
      } else { /* width < 8: the low lanes piecewise */
        for (int i = 0; i < nc; i++) {
          float *o = dst + (c0 + i) * ldd + r0;
          __m128 v = _mm256_castps256_ps128(r[i]);
          int k = 0;
          if (nw >= 4) _mm_storeu_ps(o, v), v = _mm256_extractf128_ps(r[i], 1), k = 4;
          if (nw - k >= 2) _mm_storel_pi((__m64 *)(void *)(o + k), v), v = _mm_movehl_ps(v, v), k += 2;
          if (nw - k >= 1) _mm_store_ss(o + k, v);
        }
      }
    }
  }
}

static void transpose_scalar(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols,
                             int64_t width) {
  for (int64_t c = 0; c < cols; c++)
    for (int64_t r = 0; r < width; r++) dst[c * ldd + r] = r < rows ? src[r * lds + c] : 0.0f;
}

void ml__transpose16(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols,
                     int64_t width) {
  if (ml__simd_level() >= ML_SIMD_AVX512) transpose(dst, ldd, src, lds, rows, cols, width);
  else if (ml__simd_level() >= ML_SIMD_AVX2) transpose_avx2(dst, ldd, src, lds, rows, cols, width);
  else transpose_scalar(dst, ldd, src, lds, rows, cols, width);
}

/* x (C, H, W) into the interior of a zero-bordered channel-minor image: pixel (y, x) at
 * ((y + ph) * Wp + x + pw) * ldc. Blocks of 16 channels x 16 consecutive pixels of the flattened
 * plane, so every load is a whole cache line of a channel (a row-by-row transpose of 14-wide rows
 * read 64 channel streams a partial line at a time), each pixel's 16 channels stored where its
 * padded row puts it. Channels past C within their block of 16 are written as zeros. */
AVX512_TARGET static void to_padded_hwc512(float *dst, int64_t ldc, int64_t Wp, int64_t ph, int64_t pw, const float *x,
                                            int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t nc = C - c0 < 16 ? C - c0 : 16;
    for (int64_t p0 = 0, y = 0, xx = 0; p0 < HW; p0 += 16) {
      const int64_t np = HW - p0 < 16 ? HW - p0 : 16;
      const __mmask16 m = lanes16(np);
      __m512 r[16];
      if (nc == 16 && np == 16)
        load_transposed16(x + c0 * HW + p0, HW, 16, 0xffff, r);
      else
        load_transposed16(x + c0 * HW + p0, HW, (int)nc, m, r);
      for (int64_t k = 0; k < np; k++) {
        _mm512_storeu_ps(dst + ((y + ph) * Wp + xx + pw) * ldc + c0, r[k]);
        if (++xx == W) xx = 0, y++;
      }
    }
  }
}

/* AVX2: the same in blocks of 8 channels x 8 pixels (two blocks per 16 channels) */
AVX2_TARGET static void to_padded_hwc_avx2(float *dst, int64_t ldc, int64_t Wp, int64_t ph, int64_t pw, const float *x,
                                           int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W, Cv = (C + 15) & ~(int64_t)15;
  for (int64_t c0 = 0; c0 < Cv; c0 += 8) {
    const int nc = C - c0 < 8 ? (C - c0 > 0 ? (int)(C - c0) : 0) : 8;
    for (int64_t p0 = 0; p0 < HW; p0 += 8) {
      if (HW - p0 < 8 && HW >= 8) p0 = HW - 8; /* a last partial block moved back: full loads */
      const int np = HW - p0 < 8 ? (int)(HW - p0) : 8;
      int64_t y = p0 / W, xx = p0 - y * W;
      __m256 r[8];
      load_transposed8(x + c0 * HW + p0, HW, nc, np, r);
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++)
        if (k < np) {
          _mm256_storeu_ps(dst + ((y + ph) * Wp + xx + pw) * ldc + c0, r[k]);
          if (++xx == W) xx = 0, y++;
        }
    }
  }
}

void ml__to_padded_hwc(float *dst, int64_t ldc, int64_t Wp, int64_t ph, int64_t pw, const float *x, int64_t C,
                       int64_t H, int64_t W) {
  if (ml__simd_level() >= ML_SIMD_AVX512) {
    to_padded_hwc512(dst, ldc, Wp, ph, pw, x, C, H, W);
    return;
  }
  if (ml__simd_level() >= ML_SIMD_AVX2) {
    to_padded_hwc_avx2(dst, ldc, Wp, ph, pw, x, C, H, W);
    return;
  }
  const int64_t Cv = (C + 15) & ~(int64_t)15;
  for (int64_t y = 0; y < H; y++)
    for (int64_t xx = 0; xx < W; xx++)
      for (int64_t c = 0; c < Cv; c++)
        dst[((y + ph) * Wp + xx + pw) * ldc + c] = c < C ? x[(c * H + y) * W + xx] : 0.0f;
}

AVX512_TARGET static void direct_item(int64_t b, int worker, void *vj) {
  const dconv_job *j = vj;
  const dconv *d = j->d;
  float *xp = j->planes + (size_t)worker * worker_floats(d);
  pad_image(d, xp, j->in + b * d->C * d->H * d->W);
  float *out = j->out + b * d->OC * d->OH * d->OW;
  if (d->by_channel) {
    channel_image(d, xp, j->wt, j->bias, xp + ((plane_floats(d) + 15) & ~(size_t)15), out);
    return;
  }
  const int64_t taps = d->C * d->KH * d->KW;
  const bool k3 = d->KH == 3 && d->KW == 3;
  /* streamed stores: whole aligned vectors (the flat layout with planes of whole vectors) */
  const bool stream = d->stream && (d->OH * d->OW) % 16 == 0 && !((uintptr_t)out & 63);
  /* channel groups outside: a group's weights (8 x C*KH*KW floats, 18 KB for 64 channels of
   * 3x3) stay in L1 while the padded image streams from L2 (5-15% faster than the other order) */
  for (int64_t oc0 = 0; oc0 < d->OC; oc0 += MR) {
    const float *wt = j->wt + (oc0 / MR) * taps * MR;
    for (int64_t v0 = 0; v0 < d->NV; v0 += NR) {
      const int64_t nr = d->NV - v0 < NR ? d->NV - v0 : NR;
      /* instances: vectors per tile x layout (flat and streamed, flat, aligned rows, other) x 3x3
       * taps or any */
#define TILE(n, al, fl, st)                                                        \
  (k3 ? tile(d, xp, wt, j->bias, oc0, v0, out, j->vs, n, al, true, fl, st)         \
      : tile(d, xp, wt, j->bias, oc0, v0, out, j->vs, n, al, false, fl, st))
#define TILES(al, fl, st)                 \
  do {                                    \
    if (nr == 3) TILE(3, al, fl, st);     \
    else if (nr == 2) TILE(2, al, fl, st); \
    else TILE(1, al, fl, st);             \
  } while (0)
      if (stream) TILES(true, true, true);
      else if (d->flat) TILES(true, true, false);
      else if (d->aligned) TILES(true, false, false);
      else TILES(false, false, false);
#undef TILES
#undef TILE
    }
  }
  if (stream) _mm_sfence(); /* the streamed stores reach memory before the pool's join */
}

/* The row-vector kernel's store table, kept per thread for the last shape: the fused first
 * block calls it for one image at a time, 4 times per image, and building it took 8% of such a
 * call. */
static _Thread_local struct {
  int64_t OH, OW, Wp;
  bool aligned, flat;
  vec_store vs[MAX_NV];
} g_vs;

static void direct_item_avx2(int64_t b, int worker, void *vj);

#define STREAM_BYTES ((size_t)8 << 20)
static void run(const dconv *d, float *out, const float *in, const float *bias, float *scratch) {
  vec_store *vs = g_vs.vs;
  /* position p = v*16 + l is row r, column c of the padded grid (counted, not divided) */
  if (!d->by_channel &&
      (g_vs.OH != d->OH || g_vs.OW != d->OW || g_vs.Wp != d->Wp || g_vs.aligned != d->aligned ||
       g_vs.flat != d->flat)) {
    g_vs.OH = g_vs.OW = g_vs.Wp = 0;
    const int64_t P = d->OH * d->OW;
    for (int64_t v = 0; d->flat && v < d->NV; v++) /* the flat plane's vector v */
      vs[v] = (vec_store){.src = 16 * v, .dest = 16 * v, .keep = lanes16(P - 16 * v), .low = lanes16(P - 16 * v)};
    for (int64_t v = 0; d->aligned && !d->flat && v < d->NV; v++) { /* row r's chunk k */
      const int64_t r = v / d->NR_ROW, k = v % d->NR_ROW;
      vs[v] = (vec_store){.src = r * d->Wp + 16 * k, .dest = r * d->OW + 16 * k, .low = lanes16(d->OW - 16 * k)};
      vs[v].keep = vs[v].low;
    }
    for (int64_t v = 0, r = 0, c = 0; !d->aligned && v < d->NV; v++) {
      unsigned keep = 0;
      int64_t first = -1, n = 0;
      for (int l = 0; l < 16; l++) {
        if (r < d->OH && c < d->OW) {
          keep |= 1u << l;
          if (first < 0) first = r * d->OW + c;
          n++;
        }
        if (++c == d->Wp) c = 0, r++;
      }
      vs[v] = (vec_store){.src = 16 * v, .dest = first < 0 ? 0 : first, .keep = (__mmask16)keep, .low = lanes16(n)};
    }
    g_vs.OH = d->OH, g_vs.OW = d->OW, g_vs.Wp = d->Wp, g_vs.aligned = d->aligned, g_vs.flat = d->flat;
  }
  /* the channel-vector kernel loads the bias in vectors: a copy zero-padded to whole blocks */
  float *biasp = scratch + ((wt_floats(d) + 15) & ~(size_t)15);
  if (d->by_channel && bias) {
    for (int64_t oc = 0; oc < oc_blocks(d); oc++) biasp[oc] = oc < d->OC ? bias[oc] : 0.0f;
    bias = biasp;
  }
  /* An output larger than the caches (80 first-layer images: 16 MB) is written past them: plain
   * stores would first read every line of it (bench/kernels, 80 images: 0.92-1.32 ms before,
   * 0.87-1.01 ms after); the fused first block's one-image outputs (200 KB) stay in cache for the
   * pass that reads them. */
  dconv ds = *d;
  ds.stream = d->flat && (size_t)(d->B * d->OC * d->OH * d->OW) * sizeof(float) > STREAM_BYTES;
  dconv_job j = {.d = &ds, .in = in, .wt = scratch, .bias = bias, .out = out, .planes = biasp + oc_blocks(d), .vs = vs};
  ml__kernels_run(d->B, ml__simd_level() >= ML_SIMD_AVX512 ? direct_item : direct_item_avx2, &j);
}

/* wt[oc / R][c][kh][kw][oc % R] = w[oc][c][kh][kw], zero past OC (R: the kernel's block) */
void ml__conv_direct_forward(const ml_conv_shape *s, float *out, const float *in, const float *w, const float *bias,
                             float *scratch) {
  dconv d;
  forward_shape(s, &d);
  const int64_t taps = d.C * d.KH * d.KW;
  const int64_t R = mr(&d);
  memset(scratch, 0, wt_floats(&d) * sizeof(float));
  /* writes in order; the reads' R lines stay in L1 from one tap to the next */
  for (int64_t o0 = 0; o0 < d.OC; o0 += R) {
    float *dst = scratch + o0 * taps;
    const int64_t n = d.OC - o0 < R ? d.OC - o0 : R;
    for (int64_t t = 0; t < taps; t++)
      for (int64_t i = 0; i < n; i++) dst[t * R + i] = w[(o0 + i) * taps + t];
  }
  run(&d, out, in, bias, scratch);
}

/* wt[c / R][oc][kh][kw][c % R] = w[oc][c][KH-1-kh][KW-1-kw], zero past C */
void ml__conv_direct_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                                   float *scratch) {
  dconv d;
  backward_data_shape(s, &d);
  const int64_t KH = s->KH, KW = s->KW, taps = s->OC * KH * KW, R = mr(&d);
  memset(scratch, 0, wt_floats(&d) * sizeof(float));
  const int64_t T = KH * KW;
  for (int64_t c0 = 0; c0 < s->C; c0 += R) {
    const int64_t n = s->C - c0 < R ? s->C - c0 : R;
    for (int64_t oc = 0; oc < s->OC; oc++)
      for (int64_t t = 0; t < T; t++) {
        float *dst = scratch + c0 * taps + (oc * T + t) * R;
        const float *src = w + (oc * s->C + c0) * T + T - 1 - t; /* flipped taps */
        for (int64_t i = 0; i < n; i++) dst[i] = src[i * T];
      }
  }
  run(&d, din, dout, NULL, scratch);
}

/* ---- weight gradient ----
 * dw[oc][c][kh][kw] = sum over images and valid positions p = (r, x) of dout[oc][p] times the
 * padded image at r*Wp + x + kh*Wp + kw. Vectorized over output channels so that nothing needs a
 * horizontal sum: per image the output gradient is transposed to gt (P, OCp) (OCp = OC rounded up
 * to 16, zeros past OC), and a register tile holds dw^T for 6 (channel, tap) rows x 64 output
 * channels (24 registers) while it runs over the image's positions: per position, 4 vector loads
 * of gt and 6 broadcasts of input pixels for 24 FMAs. dw^T (C*KH*KW, OCp) stays in the worker's
 * scratch across the images of a group (in order: the same bits at any thread count) and is
 * transposed into dw at the end. */
#define WR ML__DIRECT_WEIGHT_ROWS /* (channel, tap) rows per tile */
#define WV 4 /* 16-channel vectors per tile */

static int64_t ocp(int64_t OC) { return (OC + 15) & ~(int64_t)15; }

/* Few (channel, tap) rows (a first layer: 9) leave too little arithmetic per image to pay for
 * transposing its output gradient: 2.8x slower than im2col + OpenBLAS on Conv4's first layer. */
#define MIN_WEIGHT_ROWS 64

static bool weight_shape(const ml_conv_shape *s, dconv *d) {
  return !g_off && s->stride == 1 && ml__simd_level() >= ML_SIMD_AVX512 && s->C * s->KH * s->KW >= MIN_WEIGHT_ROWS &&
         dconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->pad, s->pad, -MIN_OW_FORWARD);
}

/* A 3x3 layer with fewer (channel, tap) rows (a first layer: 1 channel, 9 rows) instead
 * vectorizes over the positions of an output row: see weight_narrow. */
static bool narrow_shape(const ml_conv_shape *s, dconv *d) {
  const ml_simd_level l = ml__simd_level();
  return !g_off && s->stride == 1 && (l >= ML_SIMD_AVX512 || (l == ML_SIMD_AVX2 && avx2_first_layer(s, true))) &&
         s->C * s->KH * s->KW < MIN_WEIGHT_ROWS &&
         s->KH == 3 && s->KW == 3 && dconv_make(d, s->B, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->pad, s->pad, -1);
}

static size_t narrow_work_floats(const dconv *d);

bool ml__conv_direct_backward_weight_ok(const ml_conv_shape *s) {
  dconv d;
  return weight_shape(s, &d) || narrow_shape(s, &d);
}

bool ml__conv_direct_weight_bands_ok(const ml_conv_shape *s) {
  dconv d;
  return weight_shape(s, &d);
}

/* Images per pass of the register tile: small planes (3x3: 9 positions) would otherwise load and
 * store the tile's 24 accumulators every few positions. */
#define WEIGHT_TILE_POSITIONS 96
static int64_t weight_images(const dconv *d) {
  const int64_t P = d->OH * d->OW, nb = (WEIGHT_TILE_POSITIONS + P - 1) / P;
  return nb < d->B ? nb : d->B;
}

/* per worker: padded images, gt, dw^T (narrow: the shifted copies and the vector sums) */
size_t ml__conv_direct_weight_work_floats(const ml_conv_shape *s) {
  dconv d;
  if (narrow_shape(s, &d)) return narrow_work_floats(&d);
  if (!weight_shape(s, &d)) return 0;
  const int64_t O = ocp(s->OC), nb = weight_images(&d);
  size_t f = (size_t)nb * (plane_floats(&d) + (size_t)(d.OH * d.OW * O)) + (size_t)(d.C * d.KH * d.KW * O) +
             2 * (size_t)O;
  return (f + 15) & ~(size_t)15;
}

AVX512_TARGET static inline __attribute__((always_inline)) void weight_tile(const dconv *d, const float *const *xb,
                                                                            const float *gt, int64_t O, float *acc_mem,
                                                                            int64_t ld, bool first, int64_t n,
                                                                            const int nv) {
  __m512 acc[WR][WV];
#pragma GCC unroll 6
  for (int i = 0; i < WR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < WV; v++)
      if (v < nv) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc_mem + i * ld + 16 * v);
  const int64_t XS = plane_floats(d);
  const float *g = gt;
  for (int64_t k = 0, rows = n * d->OH, q0 = 0, r = 0; k < rows; k++) { /* n images' rows, in order */
    for (int64_t x = 0; x < d->OW; x++, g += O) {
      __m512 gv[WV];
#pragma GCC unroll 4
      for (int v = 0; v < WV; v++) gv[v] = v < nv ? _mm512_loadu_ps(g + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 6
      for (int i = 0; i < WR; i++) {
        const __m512 a = _mm512_set1_ps(xb[i][q0 + x]);
#pragma GCC unroll 4
        for (int v = 0; v < WV; v++)
          if (v < nv) acc[i][v] = _mm512_fmadd_ps(a, gv[v], acc[i][v]);
      }
    }
    if (++r == d->OH) r = 0, q0 += XS - (d->OH - 1) * d->Wp; /* the next image's first row */
    else q0 += d->Wp;
  }
#pragma GCC unroll 6
  for (int i = 0; i < WR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < WV; v++)
      if (v < nv) _mm512_storeu_ps(acc_mem + i * ld + 16 * v, acc[i][v]);
}

/* The weight gradient of few (channel, tap) rows (a first layer: 1 channel, 9 rows):
 * dw[oc][c][kh][kw] = sum over output positions p = r * OW + x of dout[oc][p] * X_kw[p + kh * OW],
 * where X_kw (OH + KH - 1 rows of OW) is the zero-padded image shifted left by kw: with the rows
 * of the three shifted copies as long as the output rows, a tap is one offset from p, so the
 * 16-lane vectors run along the whole output plane (28x28: 49 full vectors, where vectors per
 * row waste 4 lanes in 32). A register tile holds 3 output channels x 9 taps: per 16 positions,
 * 3 loads of dout and 9 of the copies (L1) for 27 FMAs. Each image's tile starts from zero
 * (one chain of adds per lane over a 64-image group lost a decimal digit against PyTorch's
 * meta-gradients: bench/accuracy --check-first), its vectors are added to the group's in memory,
 * and these are reduced to scalars once per group (per image, the 27 horizontal sums cost an
 * eighth of the FMAs); images are added in order and groups are fixed by shape: the same bits at
 * any thread count. dout is the stream that comes from memory
 * (80 images of 64 channels: 16 MB), so its lines are prefetched two tiles ahead. */
#define NO 3 /* output channels per register tile: 27 accumulators, 3 of dout, 1 of the image */

static int64_t narrow_oc(const dconv *d) { return (d->OC + NO - 1) / NO * NO; }
static int64_t narrow_oc_avx2(const dconv *d);
static size_t narrow_work_floats(const dconv *d) {
  const int64_t n = narrow_oc(d) > narrow_oc_avx2(d) ? narrow_oc(d) : narrow_oc_avx2(d);
  return (size_t)(3 * d->C * shifted_copy_floats(d) + (d->C * 9 + 1) * n * 16);
}

AVX512_TARGET static void weight_narrow(const dconv *d, const float *copies, const float *g, int64_t oc,
                                        const float *next, float *acc_mem, float *bias_mem, bool first) {
  const int64_t P = d->OH * d->OW, OW = d->OW, CF = shifted_copy_floats(d);
  const float *go[NO];
#pragma GCC unroll 3
  for (int i = 0; i < NO; i++) go[i] = g + (oc + i < d->OC ? oc + i : oc) * P; /* past OC: a copy, dropped */
  const float *xk[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; t++) xk[t] = copies + (t % 3) * CF + (t / 3) * OW;
  /* every loop over the accumulators unrolled, or GCC keeps them on the stack (2.5x slower) */
  __m512 acc[NO][9];
#pragma GCC unroll 3
  for (int i = 0; i < NO; i++)
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) acc[i][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < P; k += 16) {
    const __mmask16 m = lanes16(P - k);
    __m512 a[NO];
#pragma GCC unroll 3
    for (int i = 0; i < NO; i++) {
      a[i] = _mm512_maskz_loadu_ps(m, go[i] + k);
      _mm_prefetch((const char *)(next + i * P + k), _MM_HINT_T0);
    }
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
      __m512 v = _mm512_loadu_ps(xk[t] + k); /* slack past the plane: finite, times 0 */
      /* one load, in a register: GCC otherwise folds it into each of the three FMAs, and 30 loads
       * per 27 FMAs made the loop bound by the load ports */
      __asm__("" : "+v"(v));
#pragma GCC unroll 3
      for (int i = 0; i < NO; i++) acc[i][t] = _mm512_fmadd_ps(a[i], v, acc[i][t]);
    }
  }
#pragma GCC unroll 3
  for (int i = 0; i < NO; i++)
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
      float *m = acc_mem + (i * 9 + t) * 16;
      _mm512_storeu_ps(m, first ? acc[i][t] : _mm512_add_ps(_mm512_loadu_ps(m), acc[i][t]));
    }
  if (bias_mem) /* dout's lines are in L1 now; four chains of adds (one chain, waiting on each add,
                   took about a fifth of the kernel's time with the bias) */
    for (int i = 0; i < NO; i++) {
      __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t k = 0; k < P; k += 64)
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
          const int64_t left = P - k - 16 * u;
          s[u] = _mm512_add_ps(s[u], _mm512_maskz_loadu_ps(left > 0 ? lanes16(left) : 0, go[i] + k + 16 * u));
        }
      const __m512 t = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
      _mm512_storeu_ps(bias_mem + i * 16, first ? t : _mm512_add_ps(_mm512_loadu_ps(bias_mem + i * 16), t));
    }
}

AVX512_TARGET static float reduce16(const float *v) { return _mm512_reduce_add_ps(_mm512_loadu_ps(v)); }

AVX512_TARGET static float plane_sum(const float *x, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; k += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(lanes16(n - k), x + k));
  return _mm512_reduce_add_ps(acc);
}

/* work: the shifted copies, then the tile's vector sums per (channel, output channel, tap), then
 * the bias's per output channel */
AVX512_TARGET static void weight_narrow_group(const dconv *d, const float *in, const float *dout, int64_t first,
                                              int64_t last, float *work, float *dst, float *db) {
  const int64_t OC = d->OC, C = d->C, P = d->OH * d->OW, OCN = narrow_oc(d);
  float *copies = work, *sums = copies + 3 * C * shifted_copy_floats(d), *bsums = sums + C * OCN * 9 * 16;
  for (int64_t b = first; b < last; b++) {
    shifted_copies(d, copies, in + b * C * d->H * d->W);
    const float *g = dout + b * OC * P;
    for (int64_t c = 0; c < C; c++)
      for (int64_t oc = 0; oc < OC; oc += NO) {
        /* the channels two tiles on (images are contiguous: past the image's last, the next
         * image's first), fetched from memory while this tile computes */
        const float *next = oc + 2 * NO < OC || b + 1 < last ? g + (oc + 2 * NO) * P : g;
        weight_narrow(d, copies + c * 3 * shifted_copy_floats(d), g, oc, next, sums + (c * OCN + oc) * 9 * 16,
                      db && c == 0 ? bsums + oc * 16 : NULL, b == first);
      }
  }
  for (int64_t oc = 0; oc < OC; oc++) {
    for (int64_t c = 0; c < C; c++)
      for (int t = 0; t < 9; t++) dst[(oc * C + c) * 9 + t] = reduce16(sums + ((c * OCN + oc) * 9 + t) * 16);
    if (db) db[oc] = reduce16(bsums + oc * 16);
  }
}
#undef NO

/* dst (OC, C, KH, KW) = the weight gradient summed over images [first, last), in order, for the
 * (channel, tap) rows [row0, row1) (row0 a multiple of WR; the other rows untouched); db (OC, or
 * NULL) = the bias gradient, the sums of dout, taken while the image's dout is in cache. Each
 * element's sum runs in the same order whatever the row range: the same bits. */
static void weight_narrow_group_avx2(const dconv *d, const float *in, const float *dout, int64_t first, int64_t last,
                                     float *work, float *dst, float *db);

AVX512_TARGET static void weight_group512(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                          int64_t last, int64_t row0, int64_t row1, float *work, float *dst,
                                          float *db) {
  dconv d;
  if (narrow_shape(s, &d)) {
    weight_narrow_group(&d, in, dout, first, last, work, dst, db);
    return;
  }
  weight_shape(s, &d);
  const int64_t O = ocp(s->OC), P = d.OH * d.OW, T = d.KH * d.KW, CT = d.C * T, NB = weight_images(&d);
  float *xp = work, *gt = xp + NB * plane_floats(&d), *wt = gt + NB * P * O;
  double *dbacc = (double *)(wt + CT * O); /* O doubles; CT * O is a multiple of 16 floats */
  /* rows past CT (the last tile of a short layer) read row 0's pixels and land in a spare row */
  float spare[WR * 64];
  for (int64_t b0 = first, n; b0 < last; b0 += n) {
    /* images [b0, b0 + n); the accumulators start at zero on the first pass */
    n = last - b0 < NB ? last - b0 : NB;
    for (int64_t i = 0; i < n; i++) {
      pad_image(&d, xp + i * plane_floats(&d), in + (b0 + i) * d.C * d.H * d.W);
      const float *g = dout + (b0 + i) * s->OC * P;
      transpose(gt + i * P * O, O, g, P, s->OC, P, O);
      if (db)
        for (int64_t oc = 0; oc < s->OC; oc++)
          dbacc[oc] = (b0 + i == first ? 0.0 : dbacc[oc]) + (double)plane_sum(g + oc * P, P);
    }
    for (int64_t ct0 = row0; ct0 < row1; ct0 += WR) {
      const float *xb[WR];
      for (int i = 0; i < WR; i++) {
        const int64_t ct = ct0 + i < CT ? ct0 + i : 0, c = ct / T, t = ct % T;
        xb[i] = xp + c * d.PS + (t / d.KW) * d.Wp + t % d.KW;
      }
      for (int64_t o0 = 0; o0 < O; o0 += 16 * WV) {
        const int nv = (int)((O - o0) / 16 < WV ? (O - o0) / 16 : WV);
        float *acc = wt + ct0 * O + o0;
        int64_t ld = O;
        if (ct0 + WR > CT) { /* a short last tile goes through the spare rows */
          for (int64_t i = 0; i < WR; i++)
            for (int64_t k = 0; k < 16 * nv; k++)
              spare[i * 64 + k] = ct0 + i < CT && b0 > first ? acc[i * O + k] : 0.0f;
          acc = spare, ld = 64;
        }
        if (nv == 4) weight_tile(&d, xb, gt + o0, O, acc, ld, b0 == first, n, 4);
        else if (nv == 3) weight_tile(&d, xb, gt + o0, O, acc, ld, b0 == first, n, 3);
        else if (nv == 2) weight_tile(&d, xb, gt + o0, O, acc, ld, b0 == first, n, 2);
        else weight_tile(&d, xb, gt + o0, O, acc, ld, b0 == first, n, 1);
        if (acc == spare)
          for (int64_t i = 0; ct0 + i < CT; i++)
            for (int64_t k = 0; k < 16 * nv; k++) wt[(ct0 + i) * O + o0 + k] = spare[i * 64 + k];
      }
    }
  }
  for (int64_t oc = 0; oc < s->OC; oc++)
    for (int64_t ct = row0; ct < row1; ct++) dst[oc * CT + ct] = wt[ct * O + oc];
  if (db)
    for (int64_t oc = 0; oc < s->OC; oc++) db[oc] = (float)dbacc[oc];
}

void ml__conv_direct_weight_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                  int64_t last, int64_t row0, int64_t row1, float *work, float *dst, float *db) {
  dconv d;
  if (ml__simd_level() < ML_SIMD_AVX512 && narrow_shape(s, &d)) {
    weight_narrow_group_avx2(&d, in, dout, first, last, work, dst, db);
    return;
  }
  weight_group512(s, in, dout, first, last, row0, row1, work, dst, db);
}

/* ---- AVX2 (8 lanes, 16 registers, no masks): the first layer only ----
 * The 64-channel layers go to Winograd on AVX2; what is left to im2col + GEMM is the first layer
 * (C*KH*KW < 64), whose GEMM has a K of 9: BLAS packs more than it multiplies. The same two
 * kernels as above in 8-lane vectors on the shifted copies, for the forward (the flat row-vector
 * tile) and the weight gradient (weight_narrow). */
#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* The shapes measured to beat im2col + OpenBLAS (Zen 3, 1 thread, 3x3 pad 1, 1 and 3 input
 * channels, 4 to 64 output channels, 1 and 16 images; time direct / im2col): 28x28 0.65-0.86
 * forward, 0.36-0.73 weight (Conv4's first layer, 80 images: 2.04 -> 1.36 ms, 2.85 -> 1.40 ms);
 * 14x14 0.46-0.94, 0.39-0.80; 8x8 0.39-0.97, 0.35-0.93; but planes below 64 positions lose:
 * 7x7 one image 0.8-1.25, 3x3 up to 1.8 forward and 2.5 weight (too few vectors per tile and
 * per image to pay for the copies and the horizontal sums). Forcing the row-vector kernel
 * (ml__conv_direct_kernel(1), the tests) takes every few-channel shape, so that tails and odd
 * planes run through these kernels too. */
#define AVX2_MIN_POSITIONS 64
#define AVX2_MAX_C 3
static bool avx2_first_layer(const ml_conv_shape *s, bool weight) {
  if (s->C * s->KH * s->KW >= MIN_CHANNEL_TAPS || (weight && (s->KH != 3 || s->KW != 3))) return false;
  if (g_kernel == 1) return true;
  return g_kernel == 0 && s->KH == 3 && s->KW == 3 && s->C <= AVX2_MAX_C && s->OH * s->OW >= AVX2_MIN_POSITIONS;
}

AVX2_TARGET static inline __m256i lanes8(int64_t n) { /* the first min(max(n, 0), 8) lanes */
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* shifted_copies in 8-lane vectors: masked-off lanes of a maskload never fault */
AVX2_TARGET static void shifted_copies_avx2(const dconv *d, float *copies, const float *x) {
  const int64_t H = d->H, W = d->W, OW = d->OW, rows = d->OH + d->KH - 1, KS = shifted_copy_floats(d);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t c = 0; c < d->C; c++, x += H * W)
    for (int64_t kw = 0; kw < d->KW; kw++) {
      float *o = copies + (c * d->KW + kw) * KS;
      const int64_t shift = kw - d->pw; /* output column j reads input column j + shift */
      for (int64_t y = 0; y < rows; y++) {
        const int64_t h = y - d->ph;
        for (int64_t j = 0; j < OW; j += 8) {
          __m256 v = zero;
          const int64_t lo = -shift - j, hi = W - shift - j; /* lanes [lo, hi) lie in [0, W) */
          if (h >= 0 && h < H && hi > 0 && lo < 8 && hi > lo) {
            const __m256i m = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)(lo > 0 ? lo : 0)), lane),
                                                  lanes8(hi));
            v = _mm256_maskload_ps(x + h * W + j + shift, m);
          }
          if (OW - j >= 8) _mm256_storeu_ps(o + y * OW + j, v);
          else _mm256_maskstore_ps(o + y * OW + j, lanes8(OW - j), v);
        }
      }
      for (int64_t k = rows * OW; k < KS; k += 8) _mm256_maskstore_ps(o + k, lanes8(KS - k), zero);
    }
}

/* The flat tile in 8 lanes: MR2 output channels (half of a weight block of MR) x NR2 vectors of
 * the output plane in 12 registers, 3 for the image, 1 broadcast weight. Per tap 3 loads and 4
 * broadcasts for 12 FMAs. */
#define MR2 4
#define NR2 3
AVX2_TARGET static inline __attribute__((always_inline)) void tile_avx2(const dconv *d, const float *xp,
                                                                        const float *wt, const float *bias,
                                                                        int64_t oc0, int64_t v0, float *out,
                                                                        const int nr, const bool k3,
                                                                        const bool stream) {
  __m256 acc[MR2][NR2];
#pragma GCC unroll 4
  for (int i = 0; i < MR2; i++) {
    const __m256 b = _mm256_set1_ps(bias && oc0 + i < d->OC ? bias[oc0 + i] : 0.0f);
#pragma GCC unroll 3
    for (int j = 0; j < NR2; j++) acc[i][j] = b;
  }
  const int64_t RS = d->RS, KS = d->KS, KH = k3 ? 3 : d->KH, KW = k3 ? 3 : d->KW;
  const float *xv = xp + 8 * v0;
#ifdef __clang__
  const int64_t PS = d->PS; /* in a register: the barrier below would reload d->PS at every tap */
#endif
  for (int64_t c = 0; c < d->C; c++)
#pragma GCC unroll 3
    for (int64_t kh = 0; kh < KH; kh++)
#pragma GCC unroll 3
      for (int64_t kw = 0; kw < KW; kw++, wt += MR) {
#ifdef __clang__
        const float *x = xv + c * PS + kh * RS + kw * KS;
#else
        const float *x = xv + c * d->PS + kh * RS + kw * KS; /* hoisting d->PS cost GCC 0.016 -> 0.019 ms */
#endif
        __m256 bv[NR2];
#pragma GCC unroll 3
        for (int j = 0; j < NR2; j++) bv[j] = j < nr ? _mm256_loadu_ps(x + 8 * j) : _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int i = 0; i < MR2; i++) {
          const __m256 a = _mm256_broadcast_ss(wt + i);
#pragma GCC unroll 3
          for (int j = 0; j < NR2; j++)
            if (j < nr) acc[i][j] = _mm256_fmadd_ps(a, bv[j], acc[i][j]);
        }
#ifdef __clang__
        /* the tap's FMAs done before the next tap's loads: clang moved those loads up and, one
         * register short, spilled accumulators (bench/kernels one image forward: 0.024 -> 0.015
         * ms); GCC keeps the order, and the barrier costs it register copies (0.016 -> 0.022 ms) */
        __asm__ volatile(""
                         : "+x"(acc[0][0]), "+x"(acc[0][1]), "+x"(acc[0][2]), "+x"(acc[1][0]), "+x"(acc[1][1]),
                           "+x"(acc[1][2]), "+x"(acc[2][0]), "+x"(acc[2][1]), "+x"(acc[2][2]), "+x"(acc[3][0]),
                           "+x"(acc[3][1]), "+x"(acc[3][2])
                         :
                         : "memory");
#endif
      }
  const int64_t P = d->OH * d->OW;
#pragma GCC unroll 4
  for (int i = 0; i < MR2; i++) {
    if (oc0 + i >= d->OC) break;
    float *o = out + (oc0 + i) * P;
#pragma GCC unroll 3
    for (int j = 0; j < NR2; j++)
      if (j < nr) {
        const int64_t q = 8 * (v0 + j);
        if (P - q < 8) _mm256_maskstore_ps(o + q, lanes8(P - q), acc[i][j]);
        else if (stream) _mm256_stream_ps(o + q, acc[i][j]);
        else _mm256_storeu_ps(o + q, acc[i][j]);
      }
  }
}

AVX2_TARGET static void direct_item_avx2(int64_t b, int worker, void *vj) {
  const dconv_job *j = vj;
  const dconv *d = j->d;
  float *xp = j->planes + (size_t)worker * worker_floats(d);
  shifted_copies_avx2(d, xp, j->in + b * d->C * d->H * d->W);
  const int64_t P = d->OH * d->OW, NV = (P + 7) / 8, taps = d->C * d->KH * d->KW;
  float *out = j->out + b * d->OC * P;
  const bool k3 = d->KH == 3 && d->KW == 3, stream = d->stream && P % 8 == 0 && !((uintptr_t)out & 31);
  for (int64_t oc0 = 0; oc0 < d->OC; oc0 += MR2) {
    const float *wt = j->wt + (oc0 / MR) * taps * MR + oc0 % MR;
    for (int64_t v0 = 0; v0 < NV; v0 += NR2) {
      const int nr = (int)(NV - v0 < NR2 ? NV - v0 : NR2);
#define TILE2(n, st)                                                         \
  (k3 ? tile_avx2(d, xp, wt, j->bias, oc0, v0, out, n, true, st)             \
      : tile_avx2(d, xp, wt, j->bias, oc0, v0, out, n, false, st))
      if (stream) {
        if (nr == 3) TILE2(3, true);
        else if (nr == 2) TILE2(2, true);
        else TILE2(1, true);
      } else {
        if (nr == 3) TILE2(3, false);
        else if (nr == 2) TILE2(2, false);
        else TILE2(1, false);
      }
#undef TILE2
    }
  }
  if (stream) _mm_sfence();
}

/* weight_narrow in 8 lanes: a tile of NO2 output channels x the 3 taps of one kernel row (12
 * registers, 3 of the image, 1 of dout), three passes per tile over its dout (in L1 after the
 * first; 4 channels of a 28x28 plane: 12.5 KB). Per 8 positions 3 + 4 loads for 12 FMAs. */
#define NO2 4

static int64_t narrow_oc_avx2(const dconv *d) { return (d->OC + NO2 - 1) / NO2 * NO2; }

AVX2_TARGET static inline __attribute__((always_inline)) void narrow_step_avx2(const float *const *xk,
                                                                               const float *const *go, int64_t k,
                                                                               __m256 acc[NO2][3], const bool tail,
                                                                               int64_t P) {
  __m256 v[3];
#pragma GCC unroll 3
  for (int t = 0; t < 3; t++) {
    v[t] = _mm256_loadu_ps(xk[t] + k); /* slack past the plane: finite, times 0 */
    __asm__("" : "+x"(v[t]));         /* one load in a register, not one folded into each FMA */
  }
#pragma GCC unroll 4
  for (int i = 0; i < NO2; i++) {
    const __m256 a = tail ? _mm256_maskload_ps(go[i] + k, lanes8(P - k)) : _mm256_loadu_ps(go[i] + k);
#pragma GCC unroll 3
    for (int t = 0; t < 3; t++) acc[i][t] = _mm256_fmadd_ps(a, v[t], acc[i][t]);
  }
}

AVX2_TARGET static void weight_narrow_avx2(const dconv *d, const float *copies, const float *g, int64_t oc,
                                           int64_t kh, const float *next, float *acc_mem, float *bias_mem,
                                           bool first) {
  const int64_t P = d->OH * d->OW, CF = shifted_copy_floats(d);
  const float *go[NO2], *xk[3];
#pragma GCC unroll 4
  for (int i = 0; i < NO2; i++) go[i] = g + (oc + i < d->OC ? oc + i : oc) * P; /* past OC: a copy, dropped */
#pragma GCC unroll 3
  for (int t = 0; t < 3; t++) xk[t] = copies + t * CF + kh * d->OW;
  __m256 acc[NO2][3];
#pragma GCC unroll 4
  for (int i = 0; i < NO2; i++)
#pragma GCC unroll 3
    for (int t = 0; t < 3; t++) acc[i][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= P; k += 16) { /* one prefetch per line of each channel */
    if (next)
#pragma GCC unroll 4
      for (int i = 0; i < NO2; i++) _mm_prefetch((const char *)(next + i * P + k), _MM_HINT_T0);
    narrow_step_avx2(xk, go, k, acc, false, P);
    narrow_step_avx2(xk, go, k + 8, acc, false, P);
  }
  for (; k + 8 <= P; k += 8) narrow_step_avx2(xk, go, k, acc, false, P);
  if (k < P) narrow_step_avx2(xk, go, k, acc, true, P);
#pragma GCC unroll 4
  for (int i = 0; i < NO2; i++)
#pragma GCC unroll 3
    for (int t = 0; t < 3; t++) {
      float *m = acc_mem + (i * 9 + kh * 3 + t) * 16;
      _mm256_storeu_ps(m, first ? acc[i][t] : _mm256_add_ps(_mm256_loadu_ps(m), acc[i][t]));
    }
  if (bias_mem) /* four chains of adds, as weight_narrow's */
    for (int i = 0; i < NO2; i++) {
      __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      int64_t q = 0;
      for (; q + 32 <= P; q += 32)
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) s[u] = _mm256_add_ps(s[u], _mm256_loadu_ps(go[i] + q + 8 * u));
      for (int u = 0; q < P; q += 8, u++) s[u] = _mm256_add_ps(s[u], _mm256_maskload_ps(go[i] + q, lanes8(P - q)));
      const __m256 t = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]));
      _mm256_storeu_ps(bias_mem + i * 16, first ? t : _mm256_add_ps(_mm256_loadu_ps(bias_mem + i * 16), t));
    }
}

AVX2_TARGET static float reduce8(const float *v) {
  const __m128 a = _mm_add_ps(_mm_loadu_ps(v), _mm_loadu_ps(v + 4)), b = _mm_add_ps(a, _mm_movehl_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

/* weight_narrow_group's layout with output channels in blocks of NO2 (narrow_work_floats makes
 * room for the larger of the two); each vector sum takes 8 of its 16 floats */
AVX2_TARGET static void weight_narrow_group_avx2(const dconv *d, const float *in, const float *dout, int64_t first,
                                                 int64_t last, float *work, float *dst, float *db) {
  const int64_t OC = d->OC, C = d->C, P = d->OH * d->OW, OCN = narrow_oc_avx2(d);
  float *copies = work, *sums = copies + 3 * C * shifted_copy_floats(d), *bsums = sums + C * OCN * 9 * 16;
  for (int64_t b = first; b < last; b++) {
    shifted_copies_avx2(d, copies, in + b * C * d->H * d->W);
    const float *g = dout + b * OC * P;
    for (int64_t c = 0; c < C; c++)
      for (int64_t oc = 0; oc < OC; oc += NO2) {
        /* the first pass fetches the channels two tiles on from memory (as weight_narrow_group) */
        const float *next = oc + 2 * NO2 < OC || b + 1 < last ? g + (oc + 2 * NO2) * P : g;
        for (int64_t kh = 0; kh < 3; kh++)
          weight_narrow_avx2(d, copies + c * 3 * shifted_copy_floats(d), g, oc, kh, kh == 0 ? next : NULL,
                             sums + (c * OCN + oc) * 9 * 16, db && c == 0 && kh == 0 ? bsums + oc * 16 : NULL,
                             b == first);
      }
  }
  for (int64_t oc = 0; oc < OC; oc++) {
    for (int64_t c = 0; c < C; c++)
      for (int t = 0; t < 9; t++) dst[(oc * C + c) * 9 + t] = reduce8(sums + ((c * OCN + oc) * 9 + t) * 16);
    if (db) db[oc] = reduce8(bsums + oc * 16);
  }
}
