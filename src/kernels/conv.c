/* kernels/conv.c: conv2d via im2col + GEMM (one image at a time into the caller's scratch),
 * 2x2 max-pooling, and batch-norm with batch statistics.
 *
 * For one image, with K = C*KH*KW and P = OH*OW:
 *   col (K, P)         = im2col(in_b)
 *   forward:           out_b (OC, P) = w (OC, K) * col              (+ bias per row)
 *   backward data:     col = w^T (K, OC) * dout_b (OC, P); din_b = col2im(col)
 *   backward weight:   dw (OC, K) += dout_b (OC, P) * col^T (P, K)
 * A 1x1 kernel with stride 1 and no padding has col == in_b, so im2col is skipped.
 * Small planes are batched: nb images side by side make col (K, nb*P), and out/dout go
 * through an (OC, nb*P) staging matrix in the scratch.
 * Stride 1 goes to kernels/conv_winograd.c (3x3, AVX-512 or AVX2) or kernels/conv_direct.c (AVX-512;
 * on AVX2 first layers only) instead where those kernels take the shape (no col matrix at all);
 * this file is the general path and the fallback. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* col2im, bias, batch-norm loops */
#endif

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/internal.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))

ml_status ml_conv_shape_make(ml_conv_shape *s, int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC,
                             int64_t KH, int64_t KW, int64_t stride, int64_t pad) {
  if (B <= 0 || C <= 0 || H <= 0 || W <= 0 || OC <= 0 || KH <= 0 || KW <= 0 || stride <= 0 || pad < 0)
    return ml_error(ML_ERR_SHAPE, "conv2d: sizes must be positive (B=%lld C=%lld H=%lld W=%lld OC=%lld "
                                  "K=%lldx%lld stride=%lld pad=%lld)",
                    (long long)B, (long long)C, (long long)H, (long long)W, (long long)OC, (long long)KH,
                    (long long)KW, (long long)stride, (long long)pad);
  int64_t hh = H + 2 * pad - KH, ww = W + 2 * pad - KW;
  if (hh < 0 || ww < 0)
    return ml_error(ML_ERR_SHAPE, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld",
                    (long long)KH, (long long)KW, (long long)(H + 2 * pad), (long long)(W + 2 * pad));
  *s = (ml_conv_shape){.B = B, .C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .stride = stride,
                       .pad = pad, .OH = hh / stride + 1, .OW = ww / stride + 1};
  return ML_OK;
}

static bool is_pointwise(const ml_conv_shape *s) {
  return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

/* Images per GEMM: small planes (7x7, 3x3) are batched side by side so the GEMM's N
 * dimension (nb * OH * OW) stays wide enough for the micro-kernel's 32-column tiles. */
#define MIN_GEMM_N 256
static int64_t images_per_gemm(const ml_conv_shape *s) {
  int64_t P = s->OH * s->OW;
  if (P >= MIN_GEMM_N) return 1;
  int64_t nb = (MIN_GEMM_N + P - 1) / P;
  return nb < s->B ? nb : s->B;
}

/* Images per weight-gradient group: the weight gradient is summed over fixed groups of images
 * (partial sums in the scratch, added in group order), so the backward-weight kernel can run
 * its groups on several threads and still give the same bits. Up to this many images (every
 * MAML task) there is one group, summed image after image as before. */
#define WEIGHT_GROUP_IMAGES 64
static int64_t weight_groups(const ml_conv_shape *s, int64_t *per_group) {
  int64_t nb = images_per_gemm(s), g = nb * ((WEIGHT_GROUP_IMAGES + nb - 1) / nb);
  *per_group = g;
  return (s->B + g - 1) / g;
}

/* Per worker: col (K, nb*P); with nb > 1 also a (OC, nb*P) staging matrix for out/dout. */
static size_t worker_floats(const ml_conv_shape *s) {
  const int64_t K = s->C * s->KH * s->KW, P = s->OH * s->OW, nb = images_per_gemm(s);
  size_t f = nb == 1 ? (is_pointwise(s) ? 1 : (size_t)(K * P)) : (size_t)(nb * P * (K + s->OC));
  size_t direct = ml__conv_direct_weight_work_floats(s), wino = ml__conv_winograd_weight_work_floats(s);
  if (direct > f) f = direct;
  if (wino > f) f = wino;
  return (f + 15) & ~(size_t)15; /* keep every worker's block 64-byte aligned */
}

/* the fused path: one worker and the Winograd kernels for both gradients */
static bool backward_fused(const ml_conv_shape *s) {
  return ml_kernels_workers() == 1 && ml__conv_winograd_backward_ok(s);
}

/* Scratch: one block per worker, then (several weight groups only) their partial gradients; for
 * ml_conv2d_backward's fused path its own work, then the partials. One size for every conv
 * kernel, so that a graph's scratch buffer grows once, not at each layer of a backward pass. */
size_t ml_conv2d_scratch_floats(const ml_conv_shape *s) {
  int64_t per, groups = weight_groups(s, &per);
  const size_t partials = groups > 1 ? (size_t)groups * (size_t)(s->OC * s->C * s->KH * s->KW + s->OC) : 0;
  size_t f = worker_floats(s) * (size_t)ml_kernels_workers() + partials;
  if (backward_fused(s)) {
    size_t g = ml__conv_winograd_backward_work_floats(s) + partials; /* a multiple of 16 */
    if (g > f) f = g;
  }
  size_t direct = ml__conv_direct_scratch_floats(s, ml_kernels_workers());
  size_t wino = ml__conv_winograd_scratch_floats(s, ml_kernels_workers());
  if (direct > f) f = direct;
  return wino > f ? wino : f;
}

/* Output columns [lo, hi) whose input column ow*stride - pad + k lies in [0, n). */
static void valid_range(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t on, int64_t *lo, int64_t *hi) {
  int64_t a = pad - k; /* need ow*stride >= a */
  int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int64_t b = n - 1 + pad - k; /* need ow*stride <= b */
  int64_t h = b < 0 ? 0 : b / stride + 1;
  if (h > on) h = on;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

static void im2col_s1_avx512(const ml_conv_shape *s, float *restrict col, int64_t ld, const float *restrict in);
static void im2col_s1_avx2(const ml_conv_shape *s, float *restrict col, int64_t ld, const float *restrict in);

/* col (C*KH*KW rows of OH*OW, row stride ld) from one image in (C, H, W). The rows are short
 * (OW <= a few dozen floats), so the copies stay inline loops: GCC would otherwise turn them
 * back into memcpy/memset calls, whose per-call cost dominated this function. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns", "tree-vectorize", "vect-cost-model=dynamic")))
#endif
static void im2col(const ml_conv_shape *s, float *restrict col, int64_t ld, const float *restrict in) {
  const int64_t OH = s->OH, OW = s->OW, st = s->stride;
  if (st == 1 && ml__simd_level() >= ML_SIMD_AVX512) {
    im2col_s1_avx512(s, col, ld, in);
    return;
  }
  if (st == 1 && ml__simd_level() == ML_SIMD_AVX2) {
    im2col_s1_avx2(s, col, ld, in);
    return;
  }
  for (int64_t c = 0; c < s->C; c++)
    for (int64_t kh = 0; kh < s->KH; kh++)
      for (int64_t kw = 0; kw < s->KW; kw++, col += ld) {
        int64_t lo, hi;
        valid_range(s->W, kw, st, s->pad, OW, &lo, &hi);
        const float *plane = in + c * s->H * s->W;
        float *dst = col;
        for (int64_t oh = 0; oh < OH; oh++, dst += OW) {
          int64_t h = oh * st - s->pad + kh;
          if (h < 0 || h >= s->H) {
            for (int64_t ow = 0; ow < OW; ow++) dst[ow] = 0.0f;
            continue;
          }
          const float *row = plane + h * s->W - s->pad + kw;
          for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
          /* rows are short (OW <= a few dozen): an inline loop beats a memcpy call */
          if (st == 1)
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = row[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = row[ow * st];
          for (int64_t ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
        }
      }
}

/* col2im for stride 1 with AVX-512, as a gather: each input pixel (c, h, x) is the sum of the
 * col entries (c, kh, kw, oh = h + pad - kh, ow = x + pad - kw) that land on it, added in the
 * same (kh, kw) order as the scatter loop below (so the same bits), 16 pixels of a row at a
 * time, and written once instead of read-modified-written KH*KW times. Lanes whose ow falls
 * outside [0, OW) are masked off and never read, so their addresses are formed as integers. */
static inline const float *shifted(const float *p, int64_t by) {
  return (const float *)((uintptr_t)p + (uintptr_t)(by * (int64_t)sizeof(float)));
}

static inline __mmask16 lanes(int64_t a, int64_t b) { /* lanes [a, b) of 16, clamped to [0, 16] */
  a = a < 0 ? 0 : a, b = b > 16 ? 16 : b;
  return b > a ? (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u)) : 0;
}

AVX512_TARGET static void col2im_s1_avx512(const ml_conv_shape *s, float *restrict img, const float *restrict col,
                                           int64_t ld) {
  const int64_t OH = s->OH, OW = s->OW, H = s->H, W = s->W, KH = s->KH, KW = s->KW, pad = s->pad;
  for (int64_t c = 0; c < s->C; c++) {
    const float *colc = col + c * KH * KW * ld;
    for (int64_t h = 0; h < H; h++) {
      float *dst = img + (c * H + h) * W;
      for (int64_t x0 = 0; x0 < W; x0 += 16) {
        const int64_t n = W - x0 < 16 ? W - x0 : 16;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t oh = h + pad - kh;
          if (oh < 0 || oh >= OH) continue;
          for (int64_t kw = 0; kw < KW; kw++) {
            const float *src = colc + (kh * KW + kw) * ld + oh * OW;
            /* lane i is x = x0 + i, reading ow = x0 + i + pad - kw, valid for 0 <= ow < OW */
            const __mmask16 m = lanes(kw - pad - x0, kw - pad + OW - x0) & lanes(0, n);
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, shifted(src, x0 + pad - kw)));
          }
        }
        /* a full store runs into rows written after this one, except at the image's end */
        if ((c * H + h) * W + x0 + 16 <= s->C * H * W) _mm512_storeu_ps(dst + x0, acc);
        else _mm512_mask_storeu_ps(dst + x0, lanes(0, n), acc);
      }
    }
  }
}

/* im2col for stride 1 with AVX-512: an output row is the input row shifted by kw - pad, zeros
 * where it runs off the plane: one zero-masked load per 16 outputs, and a full store that may
 * run into the plane's next rows (written after it) except near the plane's end, where the
 * store is masked. Masked stores that straddle cache lines are slow on Intel cores, and the
 * scalar loops' rows (OW = 3-28) are too short for the vectorizer: this is 1.6-1.8x faster than
 * either on 28x28 and 14x14 planes in cache (in a MAML step, where the input comes from L3, a few
 * percent). */
AVX512_TARGET static void im2col_s1_avx512(const ml_conv_shape *s, float *restrict col, int64_t ld,
                                           const float *restrict in) {
  const int64_t OH = s->OH, OW = s->OW, H = s->H, W = s->W, pad = s->pad, P = OH * OW;
  for (int64_t c = 0; c < s->C; c++)
    for (int64_t kh = 0; kh < s->KH; kh++)
      for (int64_t kw = 0; kw < s->KW; kw++, col += ld) {
        int64_t lo, hi;
        valid_range(W, kw, 1, pad, OW, &lo, &hi);
        const float *plane = in + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
          const int64_t h = oh - pad + kh;
          const bool inside = h >= 0 && h < H;
          const float *row = plane + (inside ? h * W : 0);
          for (int64_t o = 0; o < OW; o += 16) {
            const __m512 x = _mm512_maskz_loadu_ps(inside ? lanes(lo - o, hi - o) : 0, shifted(row, o + kw - pad));
            const int64_t f = oh * OW + o; /* offset in the plane */
            if (f + 16 <= P) _mm512_storeu_ps(col + f, x);
            else _mm512_mask_storeu_ps(col + f, lanes(0, OW - o), x);
          }
        }
      }
}

/* ---- the same for AVX2 (no mask registers): 8 lanes, masked loads and stores through integer
 * lane masks (sign bits). A masked-off lane is never read, so, as above, its address may lie
 * outside the buffer. */
AVX2_TARGET static inline __m256i lanes8(int64_t a, int64_t b) { /* lanes [a, b) of 8, clamped */
  a = a < 0 ? 0 : a > 8 ? 8 : a, b = b < 0 ? 0 : b > 8 ? 8 : b;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)a), lane),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32((int)b), lane));
}
/* the first n lanes (zeros past them); a plain load when n >= 8 */
AVX2_TARGET static inline __m256 load8(const float *p, int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes8(0, n));
}
/* the first n lanes: a plain store when n >= 8, else in pieces of 4, 2, 1 (a masked store is
 * microcoded on AMD cores: the costliest instruction of a first AVX2 im2col on Zen 3) */
AVX2_TARGET static inline void store8(float *p, int64_t n, __m256 v) {
  if (n >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 h = _mm256_castps256_ps128(v);
  if (n >= 4) _mm_storeu_ps(p, h), h = _mm256_extractf128_ps(v, 1), p += 4, n -= 4;
  if (n >= 2) _mm_storel_pi((__m64 *)(void *)p, h), h = _mm_movehl_ps(h, h), p += 2, n -= 2;
  if (n >= 1) _mm_store_ss(p, h);
}
/* fixed-order horizontal sum: the two halves, then pairs */
AVX2_TARGET static inline float hsum8(__m256 v) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* col2im_s1_avx512 with 8 pixels at a time: the same adds in the same order, so the same bits.
 * Always the masked load: testing for the loads that need no mask cost more in mispredicted
 * branches than it saved (Zen 3, Conv4's planes). */
AVX2_TARGET static void col2im_s1_avx2(const ml_conv_shape *s, float *restrict img, const float *restrict col,
                                       int64_t ld) {
  const int64_t OH = s->OH, OW = s->OW, H = s->H, W = s->W, KH = s->KH, KW = s->KW, pad = s->pad;
  for (int64_t c = 0; c < s->C; c++) {
    const float *colc = col + c * KH * KW * ld;
    for (int64_t h = 0; h < H; h++) {
      float *dst = img + (c * H + h) * W;
      for (int64_t x0 = 0; x0 < W; x0 += 8) {
        const int64_t n = W - x0 < 8 ? W - x0 : 8;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t oh = h + pad - kh;
          if (oh < 0 || oh >= OH) continue;
          for (int64_t kw = 0; kw < KW; kw++) {
            const float *src = colc + (kh * KW + kw) * ld + oh * OW;
            /* lane i reads ow = x0 + i + pad - kw, valid for 0 <= ow < OW and i < n */
            const int64_t a = kw - pad - x0, b = kw - pad + OW - x0 < n ? kw - pad + OW - x0 : n;
            acc = _mm256_add_ps(acc, _mm256_maskload_ps(shifted(src, x0 + pad - kw), lanes8(a, b)));
          }
        }
        /* a full store runs into rows written after this one, except at the image's end */
        store8(dst + x0, (c * H + h) * W + x0 + 8 <= s->C * H * W ? 8 : n, acc);
      }
    }
  }
}

/* n floats of zeros, and a copy of n >= 8 floats (the last 8 overlapping the previous ones). The
 * empty asm hides the vector's value from GCC, which would otherwise turn these loops into
 * memset/memcpy calls: their call cost dominated on rows of a few dozen floats. */
AVX2_TARGET static inline void zero8(float *p, int64_t n) {
  __m256 z = _mm256_setzero_ps();
  __asm__("" : "+x"(z));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, z);
  store8(p + i, n - i, z);
}
AVX2_TARGET static inline void copy8(float *restrict dst, const float *restrict src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    __asm__("" : "+x"(v));
    _mm256_storeu_ps(dst + i, v);
  }
  if (i < n) _mm256_storeu_ps(dst + n - 8, _mm256_loadu_ps(src + n - 8));
}

/* im2col for stride 1 with AVX2. When OW == W (Conv4's "same" padding), a tap's col row is the
 * input plane shifted by a constant: one contiguous copy of the rows inside the plane, then
 * zeros over the padding rows and the columns [0, lo) and [hi, OW) (the copy filled them from
 * the neighbouring rows). Otherwise as im2col_s1_avx512, 8 outputs at a time, always through
 * the masked load. On Zen 3 a per-chunk version like the AVX-512 one was slower than the scalar
 * loops (the branches on each row's edges mispredicted); this is 1.3x faster than them on 28x28,
 * 14x14 and 7x7 planes, as fast on 3x3. */
AVX2_TARGET static void im2col_s1_avx2(const ml_conv_shape *s, float *restrict col, int64_t ld,
                                       const float *restrict in) {
  const int64_t OH = s->OH, OW = s->OW, H = s->H, W = s->W, pad = s->pad, P = OH * OW;
  for (int64_t c = 0; c < s->C; c++)
    for (int64_t kh = 0; kh < s->KH; kh++)
      for (int64_t kw = 0; kw < s->KW; kw++, col += ld) {
        int64_t lo, hi;
        valid_range(W, kw, 1, pad, OW, &lo, &hi);
        const float *plane = in + c * H * W;
        /* output rows [oh0, oh1) read input rows inside the plane */
        int64_t oh0 = pad - kh < 0 ? 0 : pad - kh, oh1 = H + pad - kh < OH ? H + pad - kh : OH;
        if (oh1 < oh0) oh1 = oh0;
        const int64_t first = oh0 * OW + lo, last = (oh1 - 1) * OW + hi; /* the copied span */
        if (OW == W && oh1 > oh0 && last - first >= 8) {
          copy8(col + first, plane + (oh0 + kh - pad) * W + lo + kw - pad, last - first);
          zero8(col, first);
          zero8(col + last, P - last);
          if (lo > 0 || hi < OW) {
            float z = 0.0f;
            __asm__("" : "+x"(z));
            for (int64_t oh = oh0; oh < oh1; oh++) {
              for (int64_t ow = 0; ow < lo; ow++) col[oh * OW + ow] = z;
              for (int64_t ow = hi; ow < OW; ow++) col[oh * OW + ow] = z;
            }
          }
          continue;
        }
        for (int64_t oh = 0; oh < OH; oh++) {
          const int64_t h = oh - pad + kh;
          const bool inside = h >= 0 && h < H;
          const float *row = plane + (inside ? h * W : 0);
          for (int64_t o = 0; o < OW; o += 8) {
            const __m256 x = _mm256_maskload_ps(shifted(row, o + kw - pad), inside ? lanes8(lo - o, hi - o)
                                                                                   : _mm256_setzero_si256());
            const int64_t f = oh * OW + o; /* offset in the plane */
            store8(col + f, f + 8 <= P ? 8 : OW - o, x);
          }
        }
      }
}

/* img (C, H, W) = sum of the col entries landing on each pixel (overwrites img) */
static void col2im(const ml_conv_shape *s, float *restrict img, const float *restrict col, int64_t ld) {
  const int64_t OH = s->OH, OW = s->OW, st = s->stride;
  if (st == 1 && ml__simd_level() >= ML_SIMD_AVX512) {
    col2im_s1_avx512(s, img, col, ld);
    return;
  }
  if (st == 1 && ml__simd_level() == ML_SIMD_AVX2) {
    col2im_s1_avx2(s, img, col, ld);
    return;
  }
  memset(img, 0, (size_t)(s->C * s->H * s->W) * sizeof(float));
  for (int64_t c = 0; c < s->C; c++)
    for (int64_t kh = 0; kh < s->KH; kh++)
      for (int64_t kw = 0; kw < s->KW; kw++, col += ld) {
        int64_t lo, hi;
        valid_range(s->W, kw, st, s->pad, OW, &lo, &hi);
        float *plane = img + c * s->H * s->W;
        const float *src = col;
        for (int64_t oh = 0; oh < OH; oh++, src += OW) {
          int64_t h = oh * st - s->pad + kh;
          if (h < 0 || h >= s->H) continue;
          float *restrict row = plane + h * s->W - s->pad + kw;
          if (st == 1)
            for (int64_t ow = lo; ow < hi; ow++) row[ow] += src[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) row[ow * st] += src[ow];
        }
      }
}

/* stage (OC, n*P) <- images [b0, b0+n) of x (B, OC, P), or the reverse */
static void stage_in(float *restrict stage, const float *restrict x, int64_t OC, int64_t P, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t oc = 0; oc < OC; oc++) memcpy(stage + oc * n * P + i * P, x + (i * OC + oc) * P, (size_t)P * 4);
}

typedef struct {
  const ml_conv_shape *s;
  float *out;       /* forward: out; backward data: din; backward weight: dw */
  const float *in;  /* forward, backward weight: the input images */
  const float *w;   /* forward, backward data */
  const float *bias;
  const float *dout; /* backward data, backward weight */
  float *scratch;
  float *dbias;      /* backward weight: the bias gradient too, or NULL */
  int64_t per_group; /* backward weight: images per group */
  int workers;       /* ml_kernels_workers() of the calling thread (scratch layout) */
} conv_job;

/* out for images [b0, b0+nb) (one GEMM) */
static void forward_item(int64_t item, int worker, void *vj) {
  const conv_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t K = s->C * s->KH * s->KW, P = s->OH * s->OW, img = s->C * s->H * s->W, nb = images_per_gemm(s);
  const int64_t b0 = item * nb, n = s->B - b0 < nb ? s->B - b0 : nb, L = n * P;
  float *scratch = j->scratch + (size_t)worker * worker_floats(s);
  float *ob = j->out + b0 * s->OC * P;
  const float *col = j->in + b0 * img, *bias = j->bias;
  if (n > 1 || !is_pointwise(s)) {
    for (int64_t i = 0; i < n; i++) im2col(s, scratch + i * P, L, j->in + (b0 + i) * img);
    col = scratch;
  }
  if (nb == 1) {
    if (bias)
      for (int64_t oc = 0; oc < s->OC; oc++)
        for (int64_t p = 0; p < P; p++) ob[oc * P + p] = bias[oc];
    ml_gemm(false, false, s->OC, P, K, 1.0f, j->w, K, col, P, bias ? 1.0f : 0.0f, ob, P);
    return;
  }
  float *stage = scratch + K * L;
  ml_gemm(false, false, s->OC, L, K, 1.0f, j->w, K, col, L, 0.0f, stage, L);
  for (int64_t i = 0; i < n; i++)
    for (int64_t oc = 0; oc < s->OC; oc++) {
      const float *src = stage + oc * L + i * P;
      float *dst = ob + (i * s->OC + oc) * P;
      const float bv = bias ? bias[oc] : 0.0f;
      for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bv;
    }
}

static int64_t image_items(const ml_conv_shape *s) {
  int64_t nb = images_per_gemm(s);
  return (s->B + nb - 1) / nb;
}

/* out (B,OC,OH,OW) = conv(in (B,C,H,W), w (OC,C,KH,KW)) + bias (OC) */
void ml_conv2d_forward(const ml_conv_shape *s, float *out, const float *in, const float *w, const float *bias,
                       float *scratch) {
  if (ml__conv_winograd_forward_ok(s)) {
    ml__conv_winograd_forward(s, out, in, w, bias, scratch);
    return;
  }
  if (ml__conv_direct_forward_ok(s)) {
    ml__conv_direct_forward(s, out, in, w, bias, scratch);
    return;
  }
  conv_job j = {.s = s, .out = out, .in = in, .w = w, .bias = bias, .scratch = scratch};
  ml__kernels_run(image_items(s), forward_item, &j);
}

static void backward_data_item(int64_t item, int worker, void *vj) {
  const conv_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t K = s->C * s->KH * s->KW, P = s->OH * s->OW, img = s->C * s->H * s->W, nb = images_per_gemm(s);
  const int64_t b0 = item * nb, n = s->B - b0 < nb ? s->B - b0 : nb, L = n * P;
  float *scratch = j->scratch + (size_t)worker * worker_floats(s);
  const float *db = j->dout + b0 * s->OC * P;
  if (nb == 1 && is_pointwise(s)) {
    ml_gemm(true, false, K, P, s->OC, 1.0f, j->w, K, db, P, 0.0f, j->out + b0 * img, P);
    return;
  }
  if (nb > 1) {
    float *stage = scratch + K * L;
    stage_in(stage, db, s->OC, P, n);
    db = stage;
  }
  ml_gemm(true, false, K, L, s->OC, 1.0f, j->w, K, db, L, 0.0f, scratch, L);
  for (int64_t i = 0; i < n; i++) col2im(s, j->out + (b0 + i) * img, scratch + i * P, L);
}

/* din (B,C,H,W) = conv^T(dout (B,OC,OH,OW), w) */
void ml_conv2d_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                             float *scratch) {
  if (ml__conv_winograd_backward_data_ok(s)) {
    ml__conv_winograd_backward_data(s, din, dout, w, scratch);
    return;
  }
  if (ml__conv_direct_backward_data_ok(s)) {
    ml__conv_direct_backward_data(s, din, dout, w, scratch);
    return;
  }
  conv_job j = {.s = s, .out = din, .w = w, .dout = dout, .scratch = scratch};
  ml__kernels_run(image_items(s), backward_data_item, &j);
}

/* dw_g = sum over the images of group g of dout_b * im2col(in_b)^T, into dst */
static void weight_group(const conv_job *j, int64_t group, int worker, float *dst, float *dbias) {
  const ml_conv_shape *s = j->s;
  const int64_t K = s->C * s->KH * s->KW, P = s->OH * s->OW, img = s->C * s->H * s->W, nb = images_per_gemm(s);
  const int64_t first = group * j->per_group, last = first + j->per_group < s->B ? first + j->per_group : s->B;
  float *scratch = j->scratch + (size_t)worker * worker_floats(s);
  if (ml__conv_winograd_weight_ok(s)) {
    ml__conv_winograd_weight_group(s, j->in, j->dout, first, last, 0, s->C, scratch, dst, dbias);
    return;
  }
  if (ml__conv_direct_backward_weight_ok(s)) {
    ml__conv_direct_weight_group(s, j->in, j->dout, first, last, 0, K, scratch, dst, dbias);
    return;
  }
  if (dbias) ml_reduce_sum(dbias, j->dout + first * s->OC * P, last - first, s->OC, P);
  for (int64_t b0 = first; b0 < last; b0 += nb) {
    const int64_t n = last - b0 < nb ? last - b0 : nb, L = n * P;
    const float *col = j->in + b0 * img, *db = j->dout + b0 * s->OC * P;
    if (n > 1 || !is_pointwise(s)) {
      for (int64_t i = 0; i < n; i++) im2col(s, scratch + i * P, L, j->in + (b0 + i) * img);
      col = scratch;
    }
    if (nb > 1) {
      float *stage = scratch + K * L;
      stage_in(stage, db, s->OC, P, n);
      db = stage;
    }
    ml_gemm(false, true, s->OC, K, L, 1.0f, db, L, col, L, b0 == first ? 0.0f : 1.0f, dst, K);
  }
}

static void backward_weight_item(int64_t item, int worker, void *vj) {
  const conv_job *j = vj;
  const ml_conv_shape *s = j->s;
  const size_t wn = (size_t)(s->OC * s->C * s->KH * s->KW);
  float *partials = j->scratch + worker_floats(s) * (size_t)j->workers + (size_t)item * (wn + (size_t)s->OC);
  weight_group(j, item, worker, partials, j->dbias ? partials + wn : NULL);
}

/* One group of images (a MAML task's, a Reptile minibatch) on a lent pool: the direct kernel's
 * (channel, tap) rows split into one band per worker, each band summed over all the images in
 * order. Each element's sum is the same whatever the bands, so the same bits as one call (bands
 * may follow the thread count); the first band takes the bias gradient. Few bands: each one
 * pads and transposes every image again. */
typedef struct {
  const conv_job *j;
  int64_t rows; /* per band, a multiple of ML__DIRECT_WEIGHT_ROWS (Winograd: channels) */
} band_job;

static void weight_band_item(int64_t band, int worker, void *vb) {
  const band_job *bj = vb;
  const conv_job *j = bj->j;
  const ml_conv_shape *s = j->s;
  const int64_t K = s->C * s->KH * s->KW, r0 = band * bj->rows, r1 = r0 + bj->rows < K ? r0 + bj->rows : K;
  ml__conv_direct_weight_group(s, j->in, j->dout, 0, s->B, r0, r1, j->scratch + (size_t)worker * worker_floats(s),
                               j->out, band == 0 ? j->dbias : NULL);
}

/* The same for the Winograd kernel: bands of input channels (16 or more each), each summed over
 * all the images in order (each element's sum is the same whatever the bands); the first band
 * takes the bias gradient. */
static void winograd_band_item(int64_t band, int worker, void *vb) {
  const band_job *bj = vb;
  const conv_job *j = bj->j;
  const ml_conv_shape *s = j->s;
  const int64_t c0 = band * bj->rows, c1 = c0 + bj->rows < s->C ? c0 + bj->rows : s->C;
  ml__conv_winograd_weight_group(s, j->in, j->dout, 0, s->B, c0, c1, j->scratch + (size_t)worker * worker_floats(s),
                                 j->out, band == 0 ? j->dbias : NULL);
}

/* the weight groups' partial sums (each group's dw, then its db), added in group order whatever
 * thread computed them */
static void add_partials(const ml_conv_shape *s, int64_t groups, const float *partials, float *dw, float *db) {
  const int64_t wn = s->OC * s->C * s->KH * s->KW;
  memcpy(dw, partials, (size_t)wn * sizeof(float));
  for (int64_t g = 1; g < groups; g++)
    for (int64_t k = 0; k < wn; k++) dw[k] += partials[g * (wn + s->OC) + k];
  if (db) {
    memcpy(db, partials + wn, (size_t)s->OC * sizeof(float));
    for (int64_t g = 1; g < groups; g++)
      for (int64_t k = 0; k < s->OC; k++) db[k] += partials[g * (wn + s->OC) + wn + k];
  }
}

/* dw (OC,C,KH,KW) = sum over images of dout_b * im2col(in_b)^T; db (OC, or NULL) = the sums of
 * dout per channel, taken in the same pass over dout where the kernel allows */
void ml_conv2d_backward_weight_bias(const ml_conv_shape *s, float *dw, float *db, const float *in, const float *dout,
                                    float *scratch) {
  conv_job j = {.s = s, .out = dw, .in = in, .dout = dout, .scratch = scratch, .workers = ml_kernels_workers(),
                .dbias = db};
  int64_t groups = weight_groups(s, &j.per_group);
  if (groups == 1 && j.workers > 1 && ml__conv_winograd_weight_ok(s)) {
    band_job bj = {&j, ((s->C + j.workers - 1) / j.workers + 15) & ~(int64_t)15}; /* channels per band */
    ml__kernels_run((s->C + bj.rows - 1) / bj.rows, winograd_band_item, &bj);
    return;
  }
  if (groups == 1) {
    const int64_t K = s->C * s->KH * s->KW, R = ML__DIRECT_WEIGHT_ROWS;
    band_job bj = {&j, (K / R + j.workers - 1) / j.workers * R};
    if (j.workers > 1 && bj.rows > 0 && bj.rows < K && ml__conv_direct_weight_bands_ok(s))
      ml__kernels_run((K + bj.rows - 1) / bj.rows, weight_band_item, &bj);
    else
      weight_group(&j, 0, 0, dw, db);
    return;
  }
  ml__kernels_run(groups, backward_weight_item, &j);
  add_partials(s, groups, scratch + worker_floats(s) * (size_t)j.workers, dw, db);
}

void ml_conv2d_backward(const ml_conv_shape *s, float *din, float *dw, float *db, const float *in,
                        const float *dout, const float *w, float *scratch) {
  if (!backward_fused(s)) {
    ml_conv2d_backward_data(s, din, dout, w, scratch);
    ml_conv2d_backward_weight_bias(s, dw, db, in, dout, scratch);
    return;
  }
  /* the weight gradient's fixed image groups, their partial sums added in group order, as
   * ml_conv2d_backward_weight_bias does */
  ml__conv_winograd_backward_filters(s, w, scratch);
  int64_t per, groups = weight_groups(s, &per);
  const int64_t wn = s->OC * s->C * s->KH * s->KW;
  float *partials = scratch + ml__conv_winograd_backward_work_floats(s);
  for (int64_t g = 0; g < groups; g++) {
    const int64_t first = g * per, last = first + per < s->B ? first + per : s->B;
    float *gw = groups == 1 ? dw : partials + g * (wn + s->OC), *gb = groups == 1 ? db : db ? gw + wn : NULL;
    ml__conv_winograd_backward_group(s, in, dout, first, last, scratch, din, gw, gb);
  }
  if (groups > 1) add_partials(s, groups, partials, dw, db);
}

void ml_conv2d_backward_weight(const ml_conv_shape *s, float *dw, const float *in, const float *dout,
                               float *scratch) {
  ml_conv2d_backward_weight_bias(s, dw, NULL, in, dout, scratch);
}

/* ---- max-pool 2x2 stride 2 ---- */

/* out (B,C,H/2,W/2), arg the argmax's window code; ties keep the first in row order */
typedef struct {
  float *out;
  uint8_t *arg;
  const float *in;
  const uint8_t *carg;
  int64_t planes, H, W;
} pool_job;

/* Planes per parallel item: enough work per item to pay for the hand-off. */
#define POOL_PLANES 256

static void pool_forward_item(int64_t item, int worker, void *vj) {
  const pool_job *j = vj;
  const int64_t H = j->H, W = j->W, OH = H / 2, OW = W / 2;
  const int64_t p1 = (item + 1) * POOL_PLANES < j->planes ? (item + 1) * POOL_PLANES : j->planes;
  for (int64_t p = item * POOL_PLANES; p < p1; p++) {
    const float *x = j->in + p * H * W;
    for (int64_t oh = 0; oh < OH; oh++) {
      const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
      float *restrict o = j->out + (p * OH + oh) * OW;
      uint8_t *restrict ix = j->arg + (p * OH + oh) * OW;
      /* branch-free (the argmax of random activations defeats the branch predictor); strict >
       * keeps the first maximum in row order */
      for (int64_t ow = 0; ow < OW; ow++) {
        float m = r0[2 * ow], v;
        uint8_t bi = 0;
        v = r0[2 * ow + 1], bi = v > m ? 1 : bi, m = v > m ? v : m;
        v = r1[2 * ow], bi = v > m ? 2 : bi, m = v > m ? v : m;
        v = r1[2 * ow + 1], bi = v > m ? 3 : bi, m = v > m ? v : m;
        o[ow] = m;
        ix[ow] = bi;
      }
    }
  }
}

static int64_t pool_items(int64_t planes) { return (planes + POOL_PLANES - 1) / POOL_PLANES; }

void ml_maxpool2_forward(float *out, uint8_t *arg, const float *in, int64_t B, int64_t C, int64_t H, int64_t W) {
  pool_job j = {.out = out, .arg = arg, .in = in, .planes = B * C, .H = H, .W = W};
  ml__kernels_run(pool_items(B * C), pool_forward_item, &j);
}

/* With AVX-512, planes of 16 windows or more (defined below, with batch-norm-pool's helpers) */
static void pool_scatter_plane_avx512(float *dx, const float *g, const uint8_t *arg, int64_t H, int64_t W);
static void pool_gather_plane_avx512(float *out, const float *x, const uint8_t *arg, int64_t H, int64_t W);
static void pool_scatter_plane_avx2(float *dx, const float *g, const uint8_t *arg, int64_t H, int64_t W);
static void pool_gather_plane_avx2(float *out, const float *x, const uint8_t *arg, int64_t H, int64_t W);
static bool pool_planes_avx512(int64_t H, int64_t W) {
  return ml__simd_level() >= ML_SIMD_AVX512 && (H / 2) * (W / 2) >= 16;
}
/* With AVX2, planes of 8 windows or more in rows of 4 or more (on rows of 3, Conv4's 3x3 pooled
 * planes, the 8-window vectors were slower than the scalar loops on Zen 3); the batch-norm-pool
 * kernels below too */
static bool pool_planes_avx2(int64_t H, int64_t W) {
  return ml__simd_level() == ML_SIMD_AVX2 && W / 2 >= 4 && (H / 2) * (W / 2) >= 8;
}

static void pool_scatter_item(int64_t item, int worker, void *vj) {
  const pool_job *j = vj;
  const int64_t OH = j->H / 2, OW = j->W / 2, n = OH * OW, HW = j->H * j->W;
  const int64_t p0 = item * POOL_PLANES, p1 = p0 + POOL_PLANES < j->planes ? p0 + POOL_PLANES : j->planes;
  if (pool_planes_avx512(j->H, j->W)) {
    for (int64_t p = p0; p < p1; p++)
      pool_scatter_plane_avx512(j->out + p * HW, j->in + p * n, j->carg + p * n, j->H, j->W);
    return;
  }
  if (pool_planes_avx2(j->H, j->W)) {
    for (int64_t p = p0; p < p1; p++)
      pool_scatter_plane_avx2(j->out + p * HW, j->in + p * n, j->carg + p * n, j->H, j->W);
    return;
  }
  memset(j->out + p0 * HW, 0, (size_t)((p1 - p0) * HW) * sizeof(float));
  for (int64_t p = p0; p < p1; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t i = p * n + oh * OW + ow;
        j->out[p * HW + ml_pool_offset(j->carg[i], oh, ow, j->W)] += j->in[i];
      }
}

void ml_maxpool2_scatter(float *din, const float *dout, const uint8_t *arg, int64_t B, int64_t C, int64_t H,
                         int64_t W) {
  pool_job j = {.out = din, .in = dout, .carg = arg, .planes = B * C, .H = H, .W = W};
  ml__kernels_run(pool_items(B * C), pool_scatter_item, &j);
}

static void pool_gather_item(int64_t item, int worker, void *vj) {
  const pool_job *j = vj;
  const int64_t OH = j->H / 2, OW = j->W / 2, n = OH * OW, HW = j->H * j->W;
  const int64_t p0 = item * POOL_PLANES, p1 = p0 + POOL_PLANES < j->planes ? p0 + POOL_PLANES : j->planes;
  if (pool_planes_avx512(j->H, j->W)) {
    for (int64_t p = p0; p < p1; p++)
      pool_gather_plane_avx512(j->out + p * n, j->in + p * HW, j->carg + p * n, j->H, j->W);
    return;
  }
  if (pool_planes_avx2(j->H, j->W)) {
    for (int64_t p = p0; p < p1; p++)
      pool_gather_plane_avx2(j->out + p * n, j->in + p * HW, j->carg + p * n, j->H, j->W);
    return;
  }
  for (int64_t p = p0; p < p1; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t i = p * n + oh * OW + ow;
        j->out[i] = j->in[p * HW + ml_pool_offset(j->carg[i], oh, ow, j->W)];
      }
}

void ml_maxpool2_gather(float *out, const float *din, const uint8_t *arg, int64_t B, int64_t C, int64_t H,
                        int64_t W) {
  pool_job j = {.out = out, .in = din, .carg = arg, .planes = B * C, .H = H, .W = W};
  ml__kernels_run(pool_items(B * C), pool_gather_item, &j);
}

/* ---- batch-norm, statistics per channel over (B, HW) ---- */

/* Sums over a row (one image's plane of one channel: at most a few thousand floats) in 16
 * float lanes, written so the compiler maps the lanes to one vector register without having to
 * reassociate; rows are then added in double, so a channel's sum over a large batch stays exact
 * enough. */
#define LANES 16
static inline float lanes_total(const float *acc) {
  float t = 0;
  for (int k = 0; k < LANES; k++) t += acc[k];
  return t;
}
/* With AVX-512: 64 lanes in four registers, so the adds do not wait on each other (16 lanes in
 * one register are one chain of dependent adds); combined in a fixed order. */
AVX512_TARGET static double sum_row_avx512(const float *x, int64_t n) {
  __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; k++) a[k] = _mm512_add_ps(a[k], _mm512_loadu_ps(x + i + 16 * k));
  for (int k = 0; i < n; i += 16, k = (k + 1) & 3) a[k] = _mm512_add_ps(a[k], _mm512_maskz_loadu_ps(lanes(0, n - i), x + i));
  return (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}
AVX512_TARGET static double sumsq_row_avx512(const float *x, int64_t n, double m) {
  const __m512 vm = _mm512_set1_ps((float)m);
  __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; k++) {
      const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16 * k), vm);
      a[k] = _mm512_add_ps(a[k], _mm512_mul_ps(d, d));
    }
  for (int k = 0; i < n; i += 16, k = (k + 1) & 3) {
    const __m512 d = _mm512_maskz_sub_ps(lanes(0, n - i), _mm512_maskz_loadu_ps(lanes(0, n - i), x + i), vm);
    a[k] = _mm512_add_ps(a[k], _mm512_mul_ps(d, d));
  }
  return (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}

/* With AVX2: 32 lanes in four registers, the same way */
AVX2_TARGET static double sum_row_avx2(const float *x, int64_t n) {
  __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; k++) a[k] = _mm256_add_ps(a[k], _mm256_loadu_ps(x + i + 8 * k));
  for (int k = 0; i < n; i += 8, k = (k + 1) & 3) a[k] = _mm256_add_ps(a[k], load8(x + i, n - i));
  return (double)hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}
AVX2_TARGET static double sumsq_row_avx2(const float *x, int64_t n, double m) {
  const __m256 vm = _mm256_set1_ps((float)m);
  __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; k++) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * k), vm);
      a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(d, d));
    }
  for (int k = 0; i < n; i += 8, k = (k + 1) & 3) {
    const __m256 d = _mm256_and_ps(_mm256_castsi256_ps(lanes8(0, n - i)), _mm256_sub_ps(load8(x + i, n - i), vm));
    a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(d, d));
  }
  return (double)hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

static double sum_row(const float *x, int64_t n) {
  if (ml__simd_level() >= ML_SIMD_AVX512) return sum_row_avx512(x, n);
  if (ml__simd_level() == ML_SIMD_AVX2) return sum_row_avx2(x, n);
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int k = 0; k < LANES; k++) acc[k] += x[i + k];
  for (; i < n; i++) acc[i % LANES] += x[i];
  return lanes_total(acc);
}
static double sumsq_row(const float *x, int64_t n, double m) {
  if (ml__simd_level() >= ML_SIMD_AVX512) return sumsq_row_avx512(x, n, m);
  if (ml__simd_level() == ML_SIMD_AVX2) return sumsq_row_avx2(x, n, m);
  float acc[LANES] = {0};
  const float mf = (float)m;
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int k = 0; k < LANES; k++) {
      float d = x[i + k] - mf;
      acc[k] += d * d;
    }
  for (; i < n; i++) acc[i % LANES] += (x[i] - mf) * (x[i] - mf);
  return lanes_total(acc);
}
/* sum dy and sum dy * (x - m) over a row */
static void dy_sums_row(const float *dy, const float *x, int64_t n, float m, double *sdy, double *sdyx) {
  float a[LANES] = {0}, b[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int k = 0; k < LANES; k++) {
      a[k] += dy[i + k];
      b[k] += dy[i + k] * (x[i + k] - m);
    }
  for (; i < n; i++) a[i % LANES] += dy[i], b[i % LANES] += dy[i] * (x[i] - m);
  *sdy += lanes_total(a);
  *sdyx += lanes_total(b);
}

/* With AVX-512, a channel's sums over its B rows at once: per row, float vectors (two per sum,
 * so consecutive adds do not wait on each other), then widened and added into double vectors;
 * one horizontal sum per channel instead of one per row (Conv4's last layer: rows of 9).
 * out[0..1] = sum dy, sum dy * (x - m); with g also out[2..4] = sum g, sum g * (x - m),
 * sum dy * g. Fixed order: the same bits at any thread count. */
AVX512_TARGET static void bn_sums_avx512(const float *dy, const float *g, const float *x, int64_t B, int64_t stride,
                                         int64_t n, float m, double *out) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512d acc[5][2];
  for (int k = 0; k < 5; k++) acc[k][0] = acc[k][1] = _mm512_setzero_pd();
  for (int64_t b = 0; b < B; b++) {
    const float *dr = dy + b * stride, *xr = x + b * stride, *gr = g ? g + b * stride : NULL;
    __m512 r[5][2];
    for (int k = 0; k < 5; k++) r[k][0] = r[k][1] = _mm512_setzero_ps();
    for (int64_t i = 0, h = 0; i < n; i += 16, h ^= 1) {
      const __mmask16 l = lanes(0, n - i);
      const __m512 d = _mm512_maskz_loadu_ps(l, dr + i);
      const __m512 xm = _mm512_maskz_sub_ps(l, _mm512_maskz_loadu_ps(l, xr + i), vm);
      r[0][h] = _mm512_add_ps(r[0][h], d);
      r[1][h] = _mm512_fmadd_ps(d, xm, r[1][h]);
      if (gr) {
        const __m512 e = _mm512_maskz_loadu_ps(l, gr + i);
        r[2][h] = _mm512_add_ps(r[2][h], e);
        r[3][h] = _mm512_fmadd_ps(e, xm, r[3][h]);
        r[4][h] = _mm512_fmadd_ps(d, e, r[4][h]);
      }
    }
    for (int k = 0; k < (gr ? 5 : 2); k++) {
      const __m512 t = _mm512_add_ps(r[k][0], r[k][1]);
      const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1));
      acc[k][0] = _mm512_add_pd(acc[k][0], _mm512_cvtps_pd(_mm512_castps512_ps256(t)));
      acc[k][1] = _mm512_add_pd(acc[k][1], _mm512_cvtps_pd(hi));
    }
  }
  for (int k = 0; k < (g ? 5 : 2); k++) out[k] = _mm512_reduce_add_pd(_mm512_add_pd(acc[k][0], acc[k][1]));
}

/* o = fa * dy + fb * (x - m) + fc over n floats (and fd * g added when g), rounded as the scalar
 * loops round it (no fused multiply-adds): the forward's normalization then has the bits of the
 * fused batch-norm + pool's */
AVX512_TARGET static void bn_affine_row_avx512(float *o, const float *dy, const float *g, const float *x, int64_t n,
                                               float m, float fa, float fd, float fb, float fc) {
  const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(fa), vd = _mm512_set1_ps(fd), vb = _mm512_set1_ps(fb),
               vc = _mm512_set1_ps(fc);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 l = lanes(0, n - i);
    const __m512 xm = _mm512_sub_ps(_mm512_maskz_loadu_ps(l, x + i), vm);
    __m512 v = _mm512_mul_ps(vb, xm);
    if (dy) v = _mm512_add_ps(_mm512_mul_ps(va, _mm512_maskz_loadu_ps(l, dy + i)), v);
    if (g) v = _mm512_add_ps(v, _mm512_mul_ps(vd, _mm512_maskz_loadu_ps(l, g + i)));
    _mm512_mask_storeu_ps(o + i, l, _mm512_add_ps(v, vc));
  }
}

/* bn_sums_avx512 with AVX2: 8 lanes, widened to double 4 at a time; the same fixed order (the
 * same bits at any thread count) */
AVX2_TARGET static void bn_sums_avx2(const float *dy, const float *g, const float *x, int64_t B, int64_t stride,
                                     int64_t n, float m, double *out) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256d acc[5][2];
  for (int k = 0; k < 5; k++) acc[k][0] = acc[k][1] = _mm256_setzero_pd();
  for (int64_t b = 0; b < B; b++) {
    const float *dr = dy + b * stride, *xr = x + b * stride, *gr = g ? g + b * stride : NULL;
    __m256 r[5][2];
    for (int k = 0; k < 5; k++) r[k][0] = r[k][1] = _mm256_setzero_ps();
    for (int64_t i = 0, h = 0; i < n; i += 8, h ^= 1) {
      const __m256 l = _mm256_castsi256_ps(lanes8(0, n - i));
      const __m256 d = load8(dr + i, n - i), xm = _mm256_and_ps(l, _mm256_sub_ps(load8(xr + i, n - i), vm));
      r[0][h] = _mm256_add_ps(r[0][h], d);
      r[1][h] = _mm256_fmadd_ps(d, xm, r[1][h]);
      if (gr) {
        const __m256 e = load8(gr + i, n - i);
        r[2][h] = _mm256_add_ps(r[2][h], e);
        r[3][h] = _mm256_fmadd_ps(e, xm, r[3][h]);
        r[4][h] = _mm256_fmadd_ps(d, e, r[4][h]);
      }
    }
    for (int k = 0; k < (gr ? 5 : 2); k++) {
      const __m256 t = _mm256_add_ps(r[k][0], r[k][1]);
      acc[k][0] = _mm256_add_pd(acc[k][0], _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
      acc[k][1] = _mm256_add_pd(acc[k][1], _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
    }
  }
  for (int k = 0; k < (g ? 5 : 2); k++) {
    const __m256d t = _mm256_add_pd(acc[k][0], acc[k][1]);
    const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    out[k] = _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
  }
}

/* bn_affine_row_avx512 with AVX2: the same expression, the same bits */
AVX2_TARGET static void bn_affine_row_avx2(float *o, const float *dy, const float *g, const float *x, int64_t n,
                                           float m, float fa, float fd, float fb, float fc) {
  const __m256 vm = _mm256_set1_ps(m), va = _mm256_set1_ps(fa), vd = _mm256_set1_ps(fd), vb = _mm256_set1_ps(fb),
               vc = _mm256_set1_ps(fc);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 xm = _mm256_sub_ps(load8(x + i, n - i), vm);
    __m256 v = _mm256_mul_ps(vb, xm);
    if (dy) v = _mm256_add_ps(_mm256_mul_ps(va, load8(dy + i, n - i)), v);
    if (g) v = _mm256_add_ps(v, _mm256_mul_ps(vd, load8(g + i, n - i)));
    store8(o + i, n - i, _mm256_add_ps(v, vc));
  }
}

/* y, x (B,C,HW); mean, invstd (C) out; gamma, beta (C) or NULL (1 and 0) */
typedef struct {
  float *y, *mean, *invstd, *dgamma, *dbeta;
  const float *x, *dy, *cmean, *cinvstd, *gamma, *beta;
  int64_t B, C, HW;
  float eps;
} bn_job;

static void bn_forward_item(int64_t c, int worker, void *vj) {
  const bn_job *j = vj;
  float *y = j->y, *mean = j->mean, *invstd = j->invstd;
  const float *x = j->x, *gamma = j->gamma, *beta = j->beta;
  const int64_t B = j->B, C = j->C, HW = j->HW;
  const float eps = j->eps;
  const double n = (double)(B * HW);
  {
    double s = 0, v = 0;
    for (int64_t b = 0; b < B; b++) s += sum_row(x + (b * C + c) * HW, HW);
    double m = s / n;
    for (int64_t b = 0; b < B; b++) v += sumsq_row(x + (b * C + c) * HW, HW, m);
    double is = 1.0 / sqrt(v / n + eps);
    mean[c] = (float)m;
    invstd[c] = (float)is;
    double g = gamma ? gamma[c] : 1.0;
    /* (x - m) first: folding m into the shift would cancel badly when |mean| >> std */
    float scale = (float)(is * g), shift = (float)(beta ? beta[c] : 0.0), mf = (float)m;
    for (int64_t b = 0; b < B; b++) {
      const float *xr = x + (b * C + c) * HW;
      float *yr = y + (b * C + c) * HW;
      if (ml__simd_level() >= ML_SIMD_AVX512)
        bn_affine_row_avx512(yr, NULL, NULL, xr, HW, mf, 0.0f, 0.0f, scale, shift);
      else if (ml__simd_level() == ML_SIMD_AVX2)
        bn_affine_row_avx2(yr, NULL, NULL, xr, HW, mf, 0.0f, 0.0f, scale, shift);
      else
        for (int64_t i = 0; i < HW; i++) yr[i] = (xr[i] - mf) * scale + shift;
    }
  }
}

/* Channels are independent: one parallel item per channel. */
void ml_batchnorm_forward(float *y, float *mean, float *invstd, const float *x, const float *gamma,
                          const float *beta, int64_t B, int64_t C, int64_t HW, float eps) {
  bn_job j = {.y = y, .mean = mean, .invstd = invstd, .x = x, .gamma = gamma, .beta = beta, .B = B, .C = C, .HW = HW,
              .eps = eps};
  ml__kernels_run(C, bn_forward_item, &j);
}

/* dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)), xhat = (x-mean)*invstd, written as
 * dx = a*dy + b*(x - mean) + c per channel so the last pass is one fused loop. */
static void bn_backward_item(int64_t c, int worker, void *vj) {
  const bn_job *j = vj;
  float *dx = j->y, *dgamma = j->dgamma, *dbeta = j->dbeta;
  const float *dy = j->dy, *x = j->x, *mean = j->cmean, *invstd = j->cinvstd, *gamma = j->gamma;
  const int64_t B = j->B, C = j->C, HW = j->HW;
  const double n = (double)(B * HW);
  {
    const double m = mean[c], is = invstd[c];
    double sdy = 0, sdyx = 0; /* sum dy, sum dy*(x - m) */
    const bool v512 = ml__simd_level() >= ML_SIMD_AVX512, v256 = ml__simd_level() == ML_SIMD_AVX2;
    if (v512 || v256) {
      double t[2];
      if (v512) bn_sums_avx512(dy + c * HW, NULL, x + c * HW, B, C * HW, HW, (float)m, t);
      else bn_sums_avx2(dy + c * HW, NULL, x + c * HW, B, C * HW, HW, (float)m, t);
      sdy = t[0], sdyx = t[1];
    } else
      for (int64_t b = 0; b < B; b++)
        dy_sums_row(dy + (b * C + c) * HW, x + (b * C + c) * HW, HW, (float)m, &sdy, &sdyx);
    sdyx *= is; /* now sum dy*xhat */
    if (dgamma) dgamma[c] = (float)sdyx;
    if (dbeta) dbeta[c] = (float)sdy;
    double g = gamma ? gamma[c] : 1.0;
    double ka = g * is, kb = -g * is * is * sdyx / n;
    float fa = (float)ka, fb = (float)kb, fc = (float)(-ka * sdy / n), mf = (float)m;
    for (int64_t b = 0; b < B; b++) {
      const float *xr = x + (b * C + c) * HW, *dr = dy + (b * C + c) * HW;
      float *o = dx + (b * C + c) * HW;
      if (v512) bn_affine_row_avx512(o, dr, NULL, xr, HW, mf, fa, 0.0f, fb, fc);
      else if (v256) bn_affine_row_avx2(o, dr, NULL, xr, HW, mf, fa, 0.0f, fb, fc);
      else
        for (int64_t i = 0; i < HW; i++) o[i] = fa * dr[i] + fb * (xr[i] - mf) + fc;
    }
  }
}

void ml_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *invstd, const float *gamma, int64_t B, int64_t C,
                           int64_t HW) {
  bn_job j = {.y = dx, .dgamma = dgamma, .dbeta = dbeta, .dy = dy, .x = x, .cmean = mean, .cinvstd = invstd,
              .gamma = gamma, .B = B, .C = C, .HW = HW};
  ml__kernels_run(C, bn_backward_item, &j);
}

/* ---- batch-norm double backward ----
 * The gradients of the batch-norm backward (dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)),
 * dgamma = sum(dy*xhat)) with respect to x, dy and gamma, given the upstream gradients ggi of dx
 * and ggg of dgamma. Per channel every output is an affine form of dy, ggi and (x - mean), so one
 * pass of sums and one pass of writes do it, with no full-size temporaries. With M = B*HW,
 * s = invstd, xm = x - mean and sums over the channel:
 *   gx    = gamma*[xm*s^3*(Sgg*Sdy/M - Sdy.gg + 3*s^2*Sdy.xm*Sgg.xm/M)/M + Sgg.xm*s^3/M*(Sdy/M - dy)
 *                  + Sdy.xm*s^3/M*(Sgg/M - ggi)] + ggg*s*(dy - Sdy/M - xm*s^2*Sdy.xm/M)
 *   gdy   = gamma*s*(ggi - Sgg/M - xm*s^2*Sgg.xm/M) + ggg*s*xm
 *   ggam  = s*(Sdy.gg - Sgg*Sdy/M - s^2*Sdy.xm*Sgg.xm/M)
 * (the formulas PyTorch's batchnorm_double_backward implements, checked here by finite
 * differences in tests/test_autograd.c). */
typedef struct {
  float *gx, *gdy, *ggamma;
  const float *x, *dy, *ggi, *ggg, *mean, *invstd, *gamma;
  int64_t B, C, HW;
} bn2_job;

static void bn_double_item(int64_t c, int worker, void *vj) {
  const bn2_job *j = vj;
  const int64_t B = j->B, C = j->C, HW = j->HW;
  const double M = (double)(B * HW), s = j->invstd[c], m = j->mean[c];
  const double gam = j->gamma ? j->gamma[c] : 1.0, G = j->ggg ? j->ggg[c] : 0.0;
  const float mf = (float)m;
  double sdy = 0, sdyx = 0, sgg = 0, sggx = 0, sdygg = 0;
  const bool v512 = ml__simd_level() >= ML_SIMD_AVX512, v256 = ml__simd_level() == ML_SIMD_AVX2;
  if (v512 || v256) {
    double t[5];
    const float *ggi = j->ggi ? j->ggi + c * HW : NULL;
    if (v512) bn_sums_avx512(j->dy + c * HW, ggi, j->x + c * HW, B, C * HW, HW, mf, t);
    else bn_sums_avx2(j->dy + c * HW, ggi, j->x + c * HW, B, C * HW, HW, mf, t);
    sdy = t[0], sdyx = t[1];
    if (j->ggi) sgg = t[2], sggx = t[3], sdygg = t[4];
  }
  for (int64_t b = 0; !v512 && !v256 && b < B; b++) {
    const float *xr = j->x + (b * C + c) * HW, *dr = j->dy + (b * C + c) * HW;
    dy_sums_row(dr, xr, HW, mf, &sdy, &sdyx);
    if (j->ggi) {
      const float *gr = j->ggi + (b * C + c) * HW;
      dy_sums_row(gr, xr, HW, mf, &sgg, &sggx);
      float acc[LANES] = {0};
      int64_t i = 0;
      for (; i + LANES <= HW; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += dr[i + k] * gr[i + k];
      for (; i < HW; i++) acc[i % LANES] += dr[i] * gr[i];
      sdygg += lanes_total(acc);
    }
  }
  const double s2 = s * s, s3 = s2 * s;
  const double all_sub = sgg * sdy / M - sdygg + 3.0 * s2 * sdyx * sggx / M;
  const double k0 = s3 * all_sub / M, k1 = sggx * s3 / M, k2 = sdyx * s3 / M;
  /* gx = a1*dy + a2*ggi + a3*xm + a4;  gdy = b1*ggi + b3*xm + b4 */
  const float a1 = (float)(-gam * k1 + G * s), a2 = (float)(-gam * k2), a3 = (float)(gam * k0 - G * s3 * sdyx / M);
  const float a4 = (float)(gam * (k1 * sdy / M + k2 * sgg / M) - G * s * sdy / M);
  const float b1 = (float)(gam * s), b3 = (float)(-gam * s3 * sggx / M + G * s), b4 = (float)(-gam * s * sgg / M);
  if (j->ggamma) j->ggamma[c] = (float)(s * (sdygg - sgg * sdy / M - s2 * sdyx * sggx / M));
  for (int64_t b = 0; b < B; b++) {
    const int64_t o = (b * C + c) * HW;
    const float *xr = j->x + o, *dr = j->dy + o, *gr = j->ggi ? j->ggi + o : NULL;
    float *gx = j->gx ? j->gx + o : NULL, *gdy = j->gdy ? j->gdy + o : NULL;
    if (v512) {
      if (gx) bn_affine_row_avx512(gx, dr, gr, xr, HW, mf, a1, a2, a3, a4);
      if (gdy) bn_affine_row_avx512(gdy, NULL, gr, xr, HW, mf, 0.0f, b1, b3, b4);
    } else if (v256) {
      if (gx) bn_affine_row_avx2(gx, dr, gr, xr, HW, mf, a1, a2, a3, a4);
      if (gdy) bn_affine_row_avx2(gdy, NULL, gr, xr, HW, mf, 0.0f, b1, b3, b4);
    } else if (gr) {
      if (gx)
        for (int64_t i = 0; i < HW; i++) gx[i] = a1 * dr[i] + a2 * gr[i] + a3 * (xr[i] - mf) + a4;
      if (gdy)
        for (int64_t i = 0; i < HW; i++) gdy[i] = b1 * gr[i] + b3 * (xr[i] - mf) + b4;
    } else {
      if (gx)
        for (int64_t i = 0; i < HW; i++) gx[i] = a1 * dr[i] + a3 * (xr[i] - mf) + a4;
      if (gdy)
        for (int64_t i = 0; i < HW; i++) gdy[i] = b3 * (xr[i] - mf) + b4;
    }
  }
}

void ml_batchnorm_double_backward(float *gx, float *gdy, float *ggamma, const float *x, const float *dy,
                                  const float *ggi, const float *ggg, const float *mean, const float *invstd,
                                  const float *gamma, int64_t B, int64_t C, int64_t HW) {
  bn2_job j = {.gx = gx, .gdy = gdy, .ggamma = ggamma, .x = x, .dy = dy, .ggi = ggi, .ggg = ggg, .mean = mean,
               .invstd = invstd, .gamma = gamma, .B = B, .C = C, .HW = HW};
  ml__kernels_run(C, bn_double_item, &j);
}

/* ---- batch-norm + max-pool 2x2 ---- */
typedef struct {
  float *out, *mean, *invstd, *dx, *dgamma, *dbeta;
  uint8_t *arg;
  const uint8_t *carg;
  const float *x, *dout, *gamma, *beta, *cmean, *cinvstd;
  const float *rout; /* backward: the forward's output when it applied ReLU (its mask), else NULL */
  int64_t B, C, H, W;
  float eps;
  bool relu;
} bnp_job;

/* One plane's normalize + pool (+ ReLU); store is a constant at each call, so the inference copy
 * has no argmax stores and no test in its loop. */
static inline __attribute__((always_inline)) void bnp_forward_plane_scalar(const float *x, float *restrict out,
                                                                           uint8_t *restrict arg, int64_t H, int64_t W,
                                                                           float mf, float scale, float shift,
                                                                           bool relu, bool store) {
  const int64_t OH = H / 2, OW = W / 2;
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    float *restrict o = out + oh * OW;
    uint8_t *restrict ix = store ? arg + oh * OW : NULL;
    for (int64_t ow = 0; ow < OW; ow++) {
      float mx = (r0[2 * ow] - mf) * scale + shift, y;
      uint8_t bi = 0;
      y = (r0[2 * ow + 1] - mf) * scale + shift, bi = y > mx ? 1 : bi, mx = y > mx ? y : mx;
      y = (r1[2 * ow] - mf) * scale + shift, bi = y > mx ? 2 : bi, mx = y > mx ? y : mx;
      y = (r1[2 * ow + 1] - mf) * scale + shift, bi = y > mx ? 3 : bi, mx = y > mx ? y : mx;
      o[ow] = relu ? (mx > 0.0f ? mx : 0.0f) : mx; /* ml_unary's ReLU expression */
      if (store) ix[ow] = bi;
    }
  }
}

/* The same with AVX-512, 16 windows at a time: the two input rows are loaded as 32 columns each,
 * split into even and odd columns by a permute, and the running max and argmax kept with
 * compare masks in the scalar code's order (strict >, so ties and NaNs resolve as there): the same
 * bits. The scalar loop was a third of a MAML step's batch-norm time on L2-resident planes. */
AVX512_TARGET static void bnp_forward_plane_avx512(const float *x, float *out, uint8_t *arg, int64_t H, int64_t W,
                                                   float mf, float scale, float shift, bool relu) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 vm = _mm512_set1_ps(mf), vs = _mm512_set1_ps(scale), vh = _mm512_set1_ps(shift);
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
      const int64_t n = OW - ow0 < 16 ? OW - ow0 : 16;
      const __mmask16 mo = lanes(0, n), mlo = lanes(0, 2 * n), mhi = lanes(0, 2 * n - 16);
      const float *p0 = r0 + 2 * ow0, *p1 = r1 + 2 * ow0;
      const __m512 a0 = _mm512_maskz_loadu_ps(mlo, p0), a1 = _mm512_maskz_loadu_ps(mhi, p0 + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(mlo, p1), b1 = _mm512_maskz_loadu_ps(mhi, p1 + 16);
#define NORM(v) _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps((v), vm), vs), vh)
      const __m512 y00 = NORM(_mm512_permutex2var_ps(a0, even, a1)), y01 = NORM(_mm512_permutex2var_ps(a0, odd, a1));
      const __m512 y10 = NORM(_mm512_permutex2var_ps(b0, even, b1)), y11 = NORM(_mm512_permutex2var_ps(b0, odd, b1));
#undef NORM
      __m512 mx = y00;
      __m512i bi = _mm512_setzero_si512();
      __mmask16 m = _mm512_cmp_ps_mask(y01, mx, _CMP_GT_OQ);
      mx = _mm512_mask_mov_ps(mx, m, y01), bi = _mm512_mask_mov_epi32(bi, m, one);
      m = _mm512_cmp_ps_mask(y10, mx, _CMP_GT_OQ);
      mx = _mm512_mask_mov_ps(mx, m, y10), bi = _mm512_mask_mov_epi32(bi, m, two);
      m = _mm512_cmp_ps_mask(y11, mx, _CMP_GT_OQ);
      mx = _mm512_mask_mov_ps(mx, m, y11), bi = _mm512_mask_mov_epi32(bi, m, three);
      if (relu) mx = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_GT_OQ), mx);
      _mm512_mask_storeu_ps(out + oh * OW + ow0, mo, mx);
      if (arg) _mm512_mask_cvtepi32_storeu_epi8(arg + oh * OW + ow0, mo, bi);
    }
  }
}

/* The same with AVX2, 8 windows at a time: each row's 16 columns split into even and odd by an
 * in-lane shuffle, which leaves the windows in the order 0-1 4-5 2-3 6-7; the max and argmax are
 * per lane, so only they are put back in order (one cross-lane permute each). Same bits again. */
AVX2_TARGET static void bnp_forward_plane_avx2(const float *x, float *out, uint8_t *arg, float *zp, int64_t H,
                                               int64_t W, float mf, float scale, float shift, bool relu) {
  const int64_t OH = H / 2, OW = W / 2, n_out = OH * OW;
  const __m256 vm = _mm256_set1_ps(mf), vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
  const __m256 one = _mm256_castsi256_ps(_mm256_set1_epi32(1)), two = _mm256_castsi256_ps(_mm256_set1_epi32(2)),
               three = _mm256_castsi256_ps(_mm256_set1_epi32(3));
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const int64_t n = OW - ow0 < 8 ? OW - ow0 : 8, f = oh * OW + ow0;
      const float *p0 = r0 + 2 * ow0, *p1 = r1 + 2 * ow0;
      const __m256 a0 = load8(p0, 2 * n), a1 = load8(p0 + 8, 2 * n - 8);
      const __m256 b0 = load8(p1, 2 * n), b1 = load8(p1 + 8, 2 * n - 8);
      const __m256 x00 = _mm256_shuffle_ps(a0, a1, 0x88), x01 = _mm256_shuffle_ps(a0, a1, 0xdd);
      const __m256 x10 = _mm256_shuffle_ps(b0, b1, 0x88), x11 = _mm256_shuffle_ps(b0, b1, 0xdd);
#define NORM(v) _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps((v), vm), vs), vh)
      const __m256 y00 = NORM(x00), y01 = NORM(x01), y10 = NORM(x10), y11 = NORM(x11);
#undef NORM
      /* z: the input at the argmax, when asked for */
      __m256 mx = y00, bi = _mm256_setzero_ps(), z = x00, m = _mm256_cmp_ps(y01, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y01, m), bi = _mm256_blendv_ps(bi, one, m);
      if (zp) z = _mm256_blendv_ps(z, x01, m);
      m = _mm256_cmp_ps(y10, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y10, m), bi = _mm256_blendv_ps(bi, two, m);
      if (zp) z = _mm256_blendv_ps(z, x10, m);
      m = _mm256_cmp_ps(y11, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y11, m), bi = _mm256_blendv_ps(bi, three, m);
      if (zp) {
        z = _mm256_blendv_ps(z, x11, m);
        store8(zp + f, f + 8 <= n_out ? 8 : n, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(z), 0xd8)));
      }
      if (relu) mx = _mm256_and_ps(mx, _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_GT_OQ));
      mx = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mx), 0xd8));
      /* a full store runs into the next output row (written after it), except at the plane's end */
      store8(out + f, f + 8 <= n_out ? 8 : n, mx);
      if (arg) {
        const __m256i c = _mm256_permute4x64_epi64(_mm256_castps_si256(bi), 0xd8);
        __m128i b = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
        b = _mm_packus_epi16(b, b);
        if (f + 8 <= n_out) _mm_storel_epi64((__m128i *)(void *)(arg + f), b);
        else {
          uint8_t t[16];
          _mm_storeu_si128((__m128i *)(void *)t, b);
          memcpy(arg + f, t, (size_t)n);
        }
      }
    }
  }
}

/* Codes i.. of a plane of n >= 16 window codes as 32-bit lanes. A byte-masked load would need
 * AVX-512BW and reading past the plane could leave the buffer, so near the plane's end its last
 * 16 codes are loaded and shifted down (lanes past the plane: don't care; callers mask them). */
AVX512_TARGET static inline __m512i plane_codes_at(const uint8_t *p, int64_t n, int64_t i) {
  if (i + 16 <= n) return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p + i)));
  const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p + n - 16)));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_permutexvar_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32((int32_t)(i + 16 - n))), v);
}

/* Lanes m of the 16 outputs from i on, less those a ReLU zeroed (rout: the forward's output
 * with ReLU, NULL without): there dout is taken as 0, as ml_relu_mask_kernel does. */
AVX512_TARGET static inline __mmask16 relu_lanes(__mmask16 m, const float *rout, int64_t i) {
  if (!rout) return m;
  return _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, rout + i), _mm512_setzero_ps(), _CMP_GT_OQ);
}

/* One plane's pool scatter: 16 windows at a time, each window's gradient spread to the 2 x 32
 * input lanes below it and kept where the window's code names the lane (windows do not overlap,
 * so every input gets at most one: written, not added); inputs outside every window (odd H or
 * W) are zero. */
AVX512_TARGET static void pool_scatter_plane_avx512(float *dx, const float *g, const uint8_t *arg, int64_t H,
                                                    int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
  const __m512i par = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
  const __m512i par2 = _mm512_add_epi32(par, _mm512_set1_epi32(2));
  for (int64_t oh = 0; oh < OH; oh++) {
    float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
      const int64_t n = OW - ow0 < 16 ? OW - ow0 : 16, c0 = 2 * ow0;
      const __mmask16 mlo = lanes(0, 2 * n), mhi = lanes(0, 2 * n - 16);
      const __m512 gv = _mm512_maskz_loadu_ps(lanes(0, n), g + oh * OW + ow0);
      const __m512i code = plane_codes_at(arg, OH * OW, oh * OW + ow0);
      const __m512i clo = _mm512_permutexvar_epi32(dup_lo, code), chi = _mm512_permutexvar_epi32(dup_hi, code);
      const __m512 glo = _mm512_permutexvar_ps(dup_lo, gv), ghi = _mm512_permutexvar_ps(dup_hi, gv);
      _mm512_mask_storeu_ps(d0 + c0, mlo, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(clo, par), glo));
      _mm512_mask_storeu_ps(d0 + c0 + 16, mhi, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(chi, par), ghi));
      _mm512_mask_storeu_ps(d1 + c0, mlo, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(clo, par2), glo));
      _mm512_mask_storeu_ps(d1 + c0 + 16, mhi, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(chi, par2), ghi));
    }
    if (W > 2 * OW) d0[W - 1] = d1[W - 1] = 0.0f;
  }
  if (H > 2 * OH) memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float));
}

/* One plane's pool gather: per 16 windows, the even and odd columns of both rows picked out of
 * their 32 input lanes, then the one each window's code names. */
AVX512_TARGET static void pool_gather_plane_avx512(float *out, const float *x, const uint8_t *arg, int64_t H,
                                                   int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1)), one = _mm512_set1_epi32(1),
                two = _mm512_set1_epi32(2);
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
      const int64_t n = OW - ow0 < 16 ? OW - ow0 : 16, c0 = 2 * ow0;
      const __mmask16 mlo = lanes(0, 2 * n), mhi = lanes(0, 2 * n - 16);
      const __m512 a0 = _mm512_maskz_loadu_ps(mlo, r0 + c0), a1 = _mm512_maskz_loadu_ps(mhi, r0 + c0 + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(mlo, r1 + c0), b1 = _mm512_maskz_loadu_ps(mhi, r1 + c0 + 16);
      const __m512i code = plane_codes_at(arg, OH * OW, oh * OW + ow0);
      const __mmask16 right = _mm512_test_epi32_mask(code, one), down = _mm512_test_epi32_mask(code, two);
      const __m512 top = _mm512_mask_blend_ps(right, _mm512_permutex2var_ps(a0, even, a1),
                                              _mm512_permutex2var_ps(a0, odd, a1));
      const __m512 bottom = _mm512_mask_blend_ps(right, _mm512_permutex2var_ps(b0, even, b1),
                                                 _mm512_permutex2var_ps(b0, odd, b1));
      _mm512_mask_storeu_ps(out + oh * OW + ow0, lanes(0, n), _mm512_mask_blend_ps(down, top, bottom));
    }
  }
}

/* Backward of one plane with AVX-512: dx = fb*(x - m) + fc everywhere, plus fa*dout at each
 * window's argmax, in one pass of 16 windows at a time (the argmax's window code, read from arg,
 * becomes a lane mask over the two 32-column input rows); the same bits as the scalar
 * dense pass followed by its scatter. Columns and rows outside every window get the dense term.
 * Planes of 16 windows or more (plane_codes_at); smaller ones take the scalar loops. */
AVX512_TARGET static void bnp_backward_plane_avx512(float *dx, const float *x, const float *go, const float *rout,
                                                    const uint8_t *arg, int64_t H, int64_t W, float mf, float fa,
                                                    float fb, float fc) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
  const __m512i par = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
  const __m512i par2 = _mm512_add_epi32(par, _mm512_set1_epi32(2));
  const __m512 vm = _mm512_set1_ps(mf), va = _mm512_set1_ps(fa), vb = _mm512_set1_ps(fb), vc = _mm512_set1_ps(fc);
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
      const int64_t n = OW - ow0 < 16 ? OW - ow0 : 16;
      const __mmask16 mo = lanes(0, n), mlo = lanes(0, 2 * n), mhi = lanes(0, 2 * n - 16);
      const int64_t c0 = 2 * ow0;
#define DENSE(v) _mm512_add_ps(_mm512_mul_ps(vb, _mm512_sub_ps((v), vm)), vc)
      __m512 a0 = DENSE(_mm512_maskz_loadu_ps(mlo, r0 + c0)), a1 = DENSE(_mm512_maskz_loadu_ps(mhi, r0 + c0 + 16));
      __m512 b0 = DENSE(_mm512_maskz_loadu_ps(mlo, r1 + c0)), b1 = DENSE(_mm512_maskz_loadu_ps(mhi, r1 + c0 + 16));
#undef DENSE
      const __m512 g =
          _mm512_mul_ps(va, _mm512_maskz_loadu_ps(relu_lanes(mo, rout, oh * OW + ow0), go + oh * OW + ow0));
      /* window codes 0..3 (2*dh + dw); lanes past n add a zero g to columns that are not stored */
      const __m512i code = plane_codes_at(arg, OH * OW, oh * OW + ow0);
      const __m512i clo = _mm512_permutexvar_epi32(dup_lo, code), chi = _mm512_permutexvar_epi32(dup_hi, code);
      const __m512 glo = _mm512_permutexvar_ps(dup_lo, g), ghi = _mm512_permutexvar_ps(dup_hi, g);
      a0 = _mm512_mask_add_ps(a0, _mm512_cmpeq_epi32_mask(clo, par), a0, glo);
      a1 = _mm512_mask_add_ps(a1, _mm512_cmpeq_epi32_mask(chi, par), a1, ghi);
      b0 = _mm512_mask_add_ps(b0, _mm512_cmpeq_epi32_mask(clo, par2), b0, glo);
      b1 = _mm512_mask_add_ps(b1, _mm512_cmpeq_epi32_mask(chi, par2), b1, ghi);
      _mm512_mask_storeu_ps(d0 + c0, mlo, a0), _mm512_mask_storeu_ps(d0 + c0 + 16, mhi, a1);
      _mm512_mask_storeu_ps(d1 + c0, mlo, b0), _mm512_mask_storeu_ps(d1 + c0 + 16, mhi, b1);
    }
    for (int64_t w = 2 * OW; w < W; w++) d0[w] = fb * (r0[w] - mf) + fc, d1[w] = fb * (r1[w] - mf) + fc;
  }
  for (int64_t i = 2 * OH * W; i < H * W; i++) dx[i] = fb * (x[i] - mf) + fc;
}

/* sum dout and sum dout * (x[argmax] - m) over one plane's windows, 16 at a time (n_out >= 16).
 * A window's input offset is (2*oh + dh)*W + 2*ow + dw for code 2*dh + dw, its (oh, ow) from
 * its index by a float division: exact while n_out < 2^22 (the caller checks). */
AVX512_TARGET static void bnp_backward_sums_avx512(const float *x, const float *go, const float *rout,
                                                   const uint8_t *arg, int64_t H, int64_t W, float mf, double *sdy,
                                                   double *sdyx) {
  const int64_t OW = W / 2, n_out = (H / 2) * OW;
  const __m512 vm = _mm512_set1_ps(mf), inv_ow = _mm512_set1_ps(1.0f / (float)OW);
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), wv = _mm512_set1_epi32((int32_t)W);
  const __m512i w2 = _mm512_set1_epi32((int32_t)(2 * W)), owv = _mm512_set1_epi32((int32_t)OW);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (int64_t i = 0; i < n_out; i += 16) {
    const __mmask16 m = relu_lanes(lanes(0, n_out - i), rout, i);
    const __m512 g = _mm512_maskz_loadu_ps(m, go + i);
    const __m512i code = plane_codes_at(arg, n_out, i);
    const __m512i wi = _mm512_add_epi32(_mm512_set1_epi32((int32_t)i), lane);
    /* (i + 0.5) / OW is at least 0.5 / OW from an integer, more than the float error here */
    const __m512i oh = _mm512_cvttps_epi32(
        _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(wi), _mm512_set1_ps(0.5f)), inv_ow));
    const __m512i ow = _mm512_sub_epi32(wi, _mm512_mullo_epi32(oh, owv));
    __m512i off = _mm512_add_epi32(_mm512_mullo_epi32(oh, w2), _mm512_add_epi32(ow, ow));
    off = _mm512_add_epi32(off, _mm512_and_si512(code, one));
    off = _mm512_mask_add_epi32(off, _mm512_test_epi32_mask(code, two), off, wv);
    const __m512 xg = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, off, x, 4);
    s0 = _mm512_add_ps(s0, g);
    s1 = _mm512_add_ps(s1, _mm512_mul_ps(g, _mm512_maskz_sub_ps(m, xg, vm)));
  }
  *sdy += _mm512_reduce_add_ps(s0);
  *sdyx += _mm512_reduce_add_ps(s1);
}

/* ---- AVX2 versions of the pool and batch-norm-pool backward passes, 8 windows at a time ---- */

/* Codes i.. of a plane of n >= 8 window codes as 32-bit lanes; near the plane's end its last 8
 * codes, shifted down (lanes past the plane: don't care), as plane_codes_at does. */
AVX2_TARGET static inline __m256i plane_codes8_at(const uint8_t *p, int64_t n, int64_t i) {
  if (i + 8 <= n) return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p + i)));
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p + n - 8)));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_permutevar8x32_epi32(v, _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)(i + 8 - n))));
}

/* dout of the n windows from i on (of a plane of n_out) where the ReLU passed it, 0 elsewhere and
 * in lanes past n, as relu_lanes. Plain loads and a mask unless the 8 lanes pass the plane's end:
 * a masked load of rout feeding the mask of a masked load of dout chained two slow loads, the
 * costliest instructions of the backward passes on Zen 3 (profiled). */
AVX2_TARGET static inline __m256 relu_go8(const float *go, const float *rout, int64_t i, int64_t n, int64_t n_out) {
  __m256i m = n >= 8 ? _mm256_set1_epi32(-1) : lanes8(0, n);
  if (i + 8 > n_out) {
    if (rout)
      m = _mm256_and_si256(m, _mm256_castps_si256(_mm256_cmp_ps(_mm256_maskload_ps(rout + i, m), _mm256_setzero_ps(),
                                                                _CMP_GT_OQ)));
    return _mm256_maskload_ps(go + i, m);
  }
  if (rout) m = _mm256_and_si256(m, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(rout + i), _mm256_setzero_ps(),
                                                                      _CMP_GT_OQ)));
  return _mm256_and_ps(_mm256_castsi256_ps(m), _mm256_loadu_ps(go + i));
}

/* Window codes (or values) of 8 windows spread to their 16 input columns: columns 0-7, 8-15. */
#define DUP8_LO _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
#define DUP8_HI _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7)

/* pool_scatter_plane_avx512 with 8 windows at a time (planes of 8 windows or more) */
AVX2_TARGET static void pool_scatter_plane_avx2(float *dx, const float *g, const uint8_t *arg, int64_t H, int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m256i par = _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1), par2 = _mm256_add_epi32(par, _mm256_set1_epi32(2));
  for (int64_t oh = 0; oh < OH; oh++) {
    float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const int64_t n = OW - ow0 < 8 ? OW - ow0 : 8, c0 = 2 * ow0, i = oh * OW + ow0;
      const __m256 gv = load8(g + i, n);
      const __m256i code = plane_codes8_at(arg, OH * OW, i);
      const __m256i clo = _mm256_permutevar8x32_epi32(code, DUP8_LO), chi = _mm256_permutevar8x32_epi32(code, DUP8_HI);
      const __m256 glo = _mm256_permutevar8x32_ps(gv, DUP8_LO), ghi = _mm256_permutevar8x32_ps(gv, DUP8_HI);
      store8(d0 + c0, 2 * n, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(clo, par)), glo));
      store8(d0 + c0 + 8, 2 * n - 8, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(chi, par)), ghi));
      store8(d1 + c0, 2 * n, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(clo, par2)), glo));
      store8(d1 + c0 + 8, 2 * n - 8, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(chi, par2)), ghi));
    }
    if (W > 2 * OW) d0[W - 1] = d1[W - 1] = 0.0f;
  }
  if (H > 2 * OH) memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float));
}

/* pool_gather_plane_avx512 with 8 windows at a time: even and odd columns split in the shuffled
 * window order of bnp_forward_plane_avx2, the codes put in that order too (the permute is its
 * own inverse), and the picked values back in order */
AVX2_TARGET static void pool_gather_plane_avx2(float *out, const float *x, const uint8_t *arg, int64_t H, int64_t W) {
  const int64_t OH = H / 2, OW = W / 2, n_out = OH * OW;
  const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const int64_t n = OW - ow0 < 8 ? OW - ow0 : 8, c0 = 2 * ow0, i = oh * OW + ow0;
      const __m256 a0 = load8(r0 + c0, 2 * n), a1 = load8(r0 + c0 + 8, 2 * n - 8);
      const __m256 b0 = load8(r1 + c0, 2 * n), b1 = load8(r1 + c0 + 8, 2 * n - 8);
      const __m256i code = _mm256_permute4x64_epi64(plane_codes8_at(arg, n_out, i), 0xd8);
      const __m256 right = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, one), one));
      const __m256 down = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, two), two));
      const __m256 top = _mm256_blendv_ps(_mm256_shuffle_ps(a0, a1, 0x88), _mm256_shuffle_ps(a0, a1, 0xdd), right);
      const __m256 bottom = _mm256_blendv_ps(_mm256_shuffle_ps(b0, b1, 0x88), _mm256_shuffle_ps(b0, b1, 0xdd), right);
      const __m256 v = _mm256_blendv_ps(top, bottom, down);
      /* a full store runs into the next output row (written after it), except at the plane's end */
      store8(out + i, i + 8 <= n_out ? 8 : n, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xd8)));
    }
  }
}

/* bnp_backward_plane_avx512 with 8 windows at a time; the argmax's add is a blend of the sum
 * (adding a zero elsewhere would turn a -0 dense term into +0): the same bits as the scalar
 * passes. Planes of 8 windows or more. */
AVX2_TARGET static void bnp_backward_plane_avx2(float *dx, const float *x, const float *go, const float *rout,
                                                const uint8_t *arg, int64_t H, int64_t W, float mf, float fa,
                                                float fb, float fc) {
  const int64_t OH = H / 2, OW = W / 2;
  const __m256i par = _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1), par2 = _mm256_add_epi32(par, _mm256_set1_epi32(2));
  const __m256 vm = _mm256_set1_ps(mf), va = _mm256_set1_ps(fa), vb = _mm256_set1_ps(fb), vc = _mm256_set1_ps(fc);
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const int64_t n = OW - ow0 < 8 ? OW - ow0 : 8, c0 = 2 * ow0, i = oh * OW + ow0;
#define DENSE(v) _mm256_add_ps(_mm256_mul_ps(vb, _mm256_sub_ps((v), vm)), vc)
      __m256 a0 = DENSE(load8(r0 + c0, 2 * n)), a1 = DENSE(load8(r0 + c0 + 8, 2 * n - 8));
      __m256 b0 = DENSE(load8(r1 + c0, 2 * n)), b1 = DENSE(load8(r1 + c0 + 8, 2 * n - 8));
#undef DENSE
      const __m256 g = _mm256_mul_ps(va, relu_go8(go, rout, i, n, OH * OW));
      const __m256i code = plane_codes8_at(arg, OH * OW, i);
      const __m256i clo = _mm256_permutevar8x32_epi32(code, DUP8_LO), chi = _mm256_permutevar8x32_epi32(code, DUP8_HI);
      const __m256 glo = _mm256_permutevar8x32_ps(g, DUP8_LO), ghi = _mm256_permutevar8x32_ps(g, DUP8_HI);
      a0 = _mm256_blendv_ps(a0, _mm256_add_ps(a0, glo), _mm256_castsi256_ps(_mm256_cmpeq_epi32(clo, par)));
      a1 = _mm256_blendv_ps(a1, _mm256_add_ps(a1, ghi), _mm256_castsi256_ps(_mm256_cmpeq_epi32(chi, par)));
      b0 = _mm256_blendv_ps(b0, _mm256_add_ps(b0, glo), _mm256_castsi256_ps(_mm256_cmpeq_epi32(clo, par2)));
      b1 = _mm256_blendv_ps(b1, _mm256_add_ps(b1, ghi), _mm256_castsi256_ps(_mm256_cmpeq_epi32(chi, par2)));
      /* masked near a row's end: the next row of this plane is already written */
      store8(d0 + c0, 2 * n, a0), store8(d0 + c0 + 8, 2 * n - 8, a1);
      store8(d1 + c0, 2 * n, b0), store8(d1 + c0 + 8, 2 * n - 8, b1);
    }
    for (int64_t w = 2 * OW; w < W; w++) d0[w] = fb * (r0[w] - mf) + fc, d1[w] = fb * (r1[w] - mf) + fc;
  }
  for (int64_t i = 2 * OH * W; i < H * W; i++) dx[i] = fb * (x[i] - mf) + fc;
}

/* sum dout and sum dout * (x[argmax] - m) over one plane's windows (n_out >= 8), 8 at a time
 * along each pooled row: x at the argmax picked out of the two input rows as in
 * pool_gather_plane_avx2 (in the shuffled window order, dout put in that order too). On Zen 3
 * this beats a gather of x as bnp_backward_sums_avx512 does. Fixed order: the same bits at any
 * thread count. */
AVX2_TARGET static void bnp_backward_sums_avx2(const float *x, const float *go, const float *rout, const uint8_t *arg,
                                               int64_t H, int64_t W, float mf, double *sdy, double *sdyx) {
  const int64_t OH = H / 2, OW = W / 2, n_out = OH * OW;
  const __m256 vm = _mm256_set1_ps(mf);
  const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const int64_t n = OW - ow0 < 8 ? OW - ow0 : 8, c0 = 2 * ow0, i = oh * OW + ow0;
      const __m256 g = relu_go8(go, rout, i, n, n_out);
      const __m256i code = _mm256_permute4x64_epi64(plane_codes8_at(arg, n_out, i), 0xd8);
      const __m256 a0 = load8(r0 + c0, 2 * n), a1 = load8(r0 + c0 + 8, 2 * n - 8);
      const __m256 b0 = load8(r1 + c0, 2 * n), b1 = load8(r1 + c0 + 8, 2 * n - 8);
      const __m256 right = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, one), one));
      const __m256 down = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, two), two));
      const __m256 top = _mm256_blendv_ps(_mm256_shuffle_ps(a0, a1, 0x88), _mm256_shuffle_ps(a0, a1, 0xdd), right);
      const __m256 bottom = _mm256_blendv_ps(_mm256_shuffle_ps(b0, b1, 0x88), _mm256_shuffle_ps(b0, b1, 0xdd), right);
      /* g in the shuffled order; lanes past n (and ReLU-zeroed ones) have g = 0, as the scalar sums */
      const __m256 gs = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(g), 0xd8));
      s0 = _mm256_add_ps(s0, gs);
      s1 = _mm256_add_ps(s1, _mm256_mul_ps(gs, _mm256_sub_ps(_mm256_blendv_ps(top, bottom, down), vm)));
    }
  }
  *sdy += hsum8(s0);
  *sdyx += hsum8(s1);
}

/* bnp_backward_sums_avx2 from the argmax values xp (n of them, contiguous): two vectors per sum
 * so consecutive adds do not wait on each other; fixed order */
AVX2_TARGET static void bnp_pooled_sums_avx2(const float *xp, const float *go, const float *rout, int64_t n, float mf,
                                             double *sdy, double *sdyx) {
  const __m256 vm = _mm256_set1_ps(mf);
  __m256 s0[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, s1[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t i = 0, h = 0; i < n; i += 8, h ^= 1) {
    const __m256 g = relu_go8(go, rout, i, n - i, n);
    s0[h] = _mm256_add_ps(s0[h], g);
    s1[h] = _mm256_fmadd_ps(g, _mm256_sub_ps(load8(xp + i, n - i), vm), s1[h]);
  }
  *sdy += hsum8(_mm256_add_ps(s0[0], s0[1]));
  *sdyx += hsum8(_mm256_add_ps(s1[0], s1[1]));
}

void ml__bnp_pooled_sums(const float *xp, const float *go, const float *rout, int64_t n, float mf, double *sdy,
                         double *sdyx) {
  if (ml__simd_level() == ML_SIMD_AVX2) {
    bnp_pooled_sums_avx2(xp, go, rout, n, mf, sdy, sdyx);
    return;
  }
  float a0 = 0, a1 = 0;
  for (int64_t i = 0; i < n; i++) {
    const float gi = !rout || rout[i] > 0.0f ? go[i] : 0.0f;
    a0 += gi, a1 += gi * (xp[i] - mf);
  }
  *sdy += a0, *sdyx += a1;
}

void ml__pool_gather_plane(float *out, const float *x, const uint8_t *arg, int64_t H, int64_t W) {
  if (pool_planes_avx512(H, W)) {
    pool_gather_plane_avx512(out, x, arg, H, W);
    return;
  }
  if (pool_planes_avx2(H, W)) {
    pool_gather_plane_avx2(out, x, arg, H, W);
    return;
  }
  const int64_t OH = H / 2, OW = W / 2;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++) out[oh * OW + ow] = x[ml_pool_offset(arg[oh * OW + ow], oh, ow, W)];
}

void ml__bnp_forward_plane(const float *x, float *out, uint8_t *arg, int64_t H, int64_t W, float mf, float scale,
                           float shift, bool relu) {
  if (ml__simd_level() >= ML_SIMD_AVX512)
    bnp_forward_plane_avx512(x, out, arg, H, W, mf, scale, shift, relu);
  else if (pool_planes_avx2(H, W))
    bnp_forward_plane_avx2(x, out, arg, NULL, H, W, mf, scale, shift, relu);
  else if (arg)
    bnp_forward_plane_scalar(x, out, arg, H, W, mf, scale, shift, relu, true);
  else
    bnp_forward_plane_scalar(x, out, NULL, H, W, mf, scale, shift, relu, false);
}

void ml__bnp_forward_plane_z(const float *x, float *out, uint8_t *arg, float *zp, int64_t H, int64_t W, float mf,
                             float scale, float shift, bool relu) {
  if (ml__simd_level() == ML_SIMD_AVX2 && pool_planes_avx2(H, W)) {
    bnp_forward_plane_avx2(x, out, arg, zp, H, W, mf, scale, shift, relu);
    return;
  }
  ml__bnp_forward_plane(x, out, arg, H, W, mf, scale, shift, relu);
  ml__pool_gather_plane(zp, x, arg, H, W);
}

/* dout where the ReLU passed it (rout[i] > 0, ml_relu_mask_kernel's test), 0 elsewhere */
static inline float relu_go(const float *go, const float *rout, int64_t i) {
  return !rout || rout[i] > 0.0f ? go[i] : 0.0f;
}

void ml__bnp_backward_sums(const float *x, const float *go, const float *rout, const uint8_t *arg, int64_t H,
                           int64_t W, float mf, double *sdy, double *sdyx) {
  const int64_t n_out = (H / 2) * (W / 2);
  /* planes of fewer than 16 windows (3x3 pooled, say) leave most lanes idle: scalar */
  if (ml__simd_level() >= ML_SIMD_AVX512 && n_out >= 16 && n_out < (1 << 22)) {
    bnp_backward_sums_avx512(x, go, rout, arg, H, W, mf, sdy, sdyx);
    return;
  }
  if (pool_planes_avx2(H, W)) {
    bnp_backward_sums_avx2(x, go, rout, arg, H, W, mf, sdy, sdyx);
    return;
  }
  const int64_t OH = H / 2, OW = W / 2;
  float a0 = 0, a1 = 0;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++) {
      const int64_t i = oh * OW + ow;
      const float gi = relu_go(go, rout, i);
      a0 += gi, a1 += gi * (x[ml_pool_offset(arg[i], oh, ow, W)] - mf);
    }
  *sdy += a0, *sdyx += a1;
}

void ml__bnp_backward_plane(float *dx, const float *x, const float *go, const float *rout, const uint8_t *arg,
                            int64_t H, int64_t W, float mf, float fa, float fb, float fc) {
  if (ml__simd_level() >= ML_SIMD_AVX512 && (H / 2) * (W / 2) >= 16) {
    bnp_backward_plane_avx512(dx, x, go, rout, arg, H, W, mf, fa, fb, fc);
    return;
  }
  if (pool_planes_avx2(H, W)) {
    bnp_backward_plane_avx2(dx, x, go, rout, arg, H, W, mf, fa, fb, fc);
    return;
  }
  const int64_t HW = H * W, OH = H / 2, OW = W / 2;
  for (int64_t i = 0; i < HW; i++) dx[i] = fb * (x[i] - mf) + fc;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++)
      dx[ml_pool_offset(arg[oh * OW + ow], oh, ow, W)] += fa * relu_go(go, rout, oh * OW + ow);
}

double ml__sum_row(const float *x, int64_t n) { return sum_row(x, n); }
double ml__sumsq_row(const float *x, int64_t n, double m) { return sumsq_row(x, n, m); }

/* The windows' 2 x 2 inputs of planes b0.. (8 lanes; lanes past nb repeat plane b0) at offset off:
 * v[2*dh + dw] */
AVX2_TARGET static inline void small_windows8(const float *x, int64_t xs, int64_t b0, int64_t nb, int64_t off,
                                              int64_t W, __m256 *v) {
  __m128 q[8];
  for (int64_t t = 0; t < 8; t++) {
    const float *p = x + (b0 + (t < nb ? t : 0)) * xs + off;
    const __m128 top = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p)); /* unaligned */
    q[t] = _mm_loadh_pi(top, (const __m64 *)(const void *)(p + W));
  }
  __m256 r[4];
  for (int t = 0; t < 4; t++) r[t] = _mm256_insertf128_ps(_mm256_castps128_ps256(q[t]), q[t + 4], 1);
  const __m256d t0 = _mm256_castps_pd(_mm256_unpacklo_ps(r[0], r[1]));
  const __m256d t1 = _mm256_castps_pd(_mm256_unpacklo_ps(r[2], r[3]));
  const __m256d t2 = _mm256_castps_pd(_mm256_unpackhi_ps(r[0], r[1]));
  const __m256d t3 = _mm256_castps_pd(_mm256_unpackhi_ps(r[2], r[3]));
  v[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t1)), v[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t1));
  v[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(t2, t3)), v[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(t2, t3));
}

/* Small planes with AVX2 (rows of fewer than 4 windows: Conv4's 7x7 and 3x3 planes), a channel's
 * B planes at once: one plane per lane, one window position at a time; per plane the window's
 * 2 x 2 inputs are two 8-byte loads, then a transpose puts each of the four in its own vector.
 * The scalar loop's arithmetic and order of compares: the same bits. Per 3x3 plane the scalar
 * loop spent more in its calls and loop set-up than in arithmetic (80 x 64 planes of 7x7: 0.77 ->
 * 0.36 ms with the statistics). */
AVX2_TARGET static void bnp_forward_planes_small_avx2(const float *x, int64_t xs, float *out, uint8_t *arg,
                                                      int64_t os, int64_t B, int64_t H, int64_t W, float mf,
                                                      float scale, float shift, bool relu) {
  const int64_t OW = W / 2, n_out = (H / 2) * OW;
  const __m256 vm = _mm256_set1_ps(mf), vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
  const __m256 one = _mm256_castsi256_ps(_mm256_set1_epi32(1)), two = _mm256_castsi256_ps(_mm256_set1_epi32(2)),
               three = _mm256_castsi256_ps(_mm256_set1_epi32(3));
  for (int64_t b0 = 0; b0 < B; b0 += 8) {
    const int64_t nb = B - b0 < 8 ? B - b0 : 8;
    for (int64_t k = 0; k < n_out; k++) {
      __m256 v[4];
      small_windows8(x, xs, b0, nb, 2 * (k / OW) * W + 2 * (k % OW), W, v);
#define NORM(v) _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps((v), vm), vs), vh)
      const __m256 y00 = NORM(v[0]), y01 = NORM(v[1]), y10 = NORM(v[2]), y11 = NORM(v[3]);
#undef NORM
      __m256 mx = y00, bi = _mm256_setzero_ps(), m = _mm256_cmp_ps(y01, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y01, m), bi = _mm256_blendv_ps(bi, one, m);
      m = _mm256_cmp_ps(y10, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y10, m), bi = _mm256_blendv_ps(bi, two, m);
      m = _mm256_cmp_ps(y11, mx, _CMP_GT_OQ);
      mx = _mm256_blendv_ps(mx, y11, m), bi = _mm256_blendv_ps(bi, three, m);
      if (relu) mx = _mm256_and_ps(mx, _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_GT_OQ));
      float mv[8];
      int32_t bv[8];
      _mm256_storeu_ps(mv, mx);
      _mm256_storeu_si256((__m256i *)(void *)bv, _mm256_castps_si256(bi));
      for (int64_t t = 0; t < nb; t++) out[(b0 + t) * os + k] = mv[t];
      if (arg)
        for (int64_t t = 0; t < nb; t++) arg[(b0 + t) * os + k] = (uint8_t)bv[t];
    }
  }
}

static void bnp_forward_item(int64_t c, int worker, void *vj) {
  const bnp_job *j = vj;
  const int64_t B = j->B, C = j->C, HW = j->H * j->W;
  const double n = (double)(B * HW);
  double s = 0, v = 0;
  for (int64_t b = 0; b < B; b++) s += sum_row(j->x + (b * C + c) * HW, HW);
  double m = s / n;
  for (int64_t b = 0; b < B; b++) v += sumsq_row(j->x + (b * C + c) * HW, HW, m);
  double is = 1.0 / sqrt(v / n + j->eps);
  j->mean[c] = (float)m;
  j->invstd[c] = (float)is;
  /* the same float expression as ml_batchnorm_forward, so values and argmax match it exactly */
  const float scale = (float)(is * (j->gamma ? j->gamma[c] : 1.0)), shift = j->beta ? j->beta[c] : 0.0f, mf = (float)m;
  const int64_t n_out = (j->H / 2) * (j->W / 2);
  if (ml__simd_level() == ML_SIMD_AVX2 && !pool_planes_avx2(j->H, j->W)) {
    bnp_forward_planes_small_avx2(j->x + c * HW, C * HW, j->out + c * n_out, j->arg ? j->arg + c * n_out : NULL,
                                  C * n_out, B, j->H, j->W, mf, scale, shift, j->relu);
    return;
  }
  for (int64_t b = 0; b < B; b++) {
    const int64_t plane = b * C + c;
    ml__bnp_forward_plane(j->x + plane * HW, j->out + plane * n_out, j->arg ? j->arg + plane * n_out : NULL, j->H, j->W,
                          mf, scale, shift, j->relu);
  }
}

void ml_batchnorm_pool_forward(float *out, uint8_t *arg, float *mean, float *invstd, const float *x, const float *gamma,
                               const float *beta, int64_t B, int64_t C, int64_t H, int64_t W, float eps, bool relu) {
  bnp_job j = {.out = out, .arg = arg, .mean = mean, .invstd = invstd, .x = x, .gamma = gamma, .beta = beta, .B = B,
               .C = C, .H = H, .W = W, .eps = eps, .relu = relu};
  ml__kernels_run(C, bnp_forward_item, &j);
}

/* dy is dout at the argmax positions and 0 elsewhere, so the sums run over the pooled grid and
 * dx = a*dy + b*(x - mean) + c is written densely, then a*dout added at the argmaxes. */
/* The backward's sums on small planes (as bnp_forward_planes_small_avx2), a channel's B planes 8
 * at a time: x at the argmax picked from the four window inputs by the code; per 8 planes the
 * float sums widened into double. Fixed order: the same bits at any thread count. */
AVX2_TARGET static void bnp_backward_sums_small_avx2(const float *x, int64_t xs, const float *go, const float *rout,
                                                     const uint8_t *arg, int64_t os, int64_t B, int64_t H, int64_t W,
                                                     float mf, double *sdy, double *sdyx) {
  const int64_t OW = W / 2, n_out = (H / 2) * OW;
  const __m256 vm = _mm256_set1_ps(mf);
  const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  for (int64_t b0 = 0; b0 < B; b0 += 8) {
    const int64_t nb = B - b0 < 8 ? B - b0 : 8;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (int64_t k = 0; k < n_out; k++) {
      __m256 v[4];
      small_windows8(x, xs, b0, nb, 2 * (k / OW) * W + 2 * (k % OW), W, v);
      float gv[8] = {0};
      int32_t cv[8] = {0};
      for (int64_t t = 0; t < nb; t++) {
        const int64_t i = (b0 + t) * os + k;
        gv[t] = !rout || rout[i] > 0.0f ? go[i] : 0.0f, cv[t] = arg[i];
      }
      const __m256 g = _mm256_loadu_ps(gv);
      const __m256i code = _mm256_loadu_si256((const __m256i *)(const void *)cv);
      const __m256 right = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, one), one));
      const __m256 down = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(code, two), two));
      const __m256 top = _mm256_blendv_ps(v[0], v[1], right), bottom = _mm256_blendv_ps(v[2], v[3], right);
      const __m256 xa = _mm256_blendv_ps(top, bottom, down);
      s0 = _mm256_add_ps(s0, g);
      s1 = _mm256_fmadd_ps(g, _mm256_sub_ps(xa, vm), s1);
    }
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(s0)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(s0, 1)));
    acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_castps256_ps128(s1)));
    acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(s1, 1)));
  }
  for (int k = 0; k < 2; k++) {
    const __m256d t = _mm256_add_pd(acc[2 * k], acc[2 * k + 1]);
    const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    *(k ? sdyx : sdy) += _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
  }
}

/* The backward's dense write on a small plane: the dense term 8 at a time, then fa * dout added at
 * the argmaxes, as the scalar loops (the same bits) */
AVX2_TARGET static void bnp_backward_plane_small_avx2(float *dx, const float *x, const float *go, const float *rout,
                                                      const uint8_t *arg, int64_t H, int64_t W, float mf, float fa,
                                                      float fb, float fc) {
  const int64_t HW = H * W, OW = W / 2, n_out = (H / 2) * OW;
  const __m256 vm = _mm256_set1_ps(mf), vb = _mm256_set1_ps(fb), vc = _mm256_set1_ps(fc);
  for (int64_t i = 0; i < HW; i += 8)
    store8(dx + i, HW - i, _mm256_add_ps(_mm256_mul_ps(vb, _mm256_sub_ps(load8(x + i, HW - i), vm)), vc));
  for (int64_t k = 0; k < n_out; k++)
    dx[ml_pool_offset(arg[k], k / OW, k % OW, W)] += fa * relu_go(go, rout, k);
}

static void bnp_backward_item(int64_t c, int worker, void *vj) {
  const bnp_job *j = vj;
  const int64_t B = j->B, C = j->C, H = j->H, W = j->W, HW = H * W, n_out = (H / 2) * (W / 2);
  const double M = (double)(B * HW), m = j->cmean[c], is = j->cinvstd[c];
  const float mf = (float)m;
  double sdy = 0, sdyx = 0;
  const bool small = ml__simd_level() == ML_SIMD_AVX2 && !pool_planes_avx2(H, W);
  if (small)
    bnp_backward_sums_small_avx2(j->x + c * HW, C * HW, j->dout + c * n_out, j->rout ? j->rout + c * n_out : NULL,
                                 j->carg + c * n_out, C * n_out, B, H, W, mf, &sdy, &sdyx);
  else
    for (int64_t b = 0; b < B; b++)
      ml__bnp_backward_sums(j->x + (b * C + c) * HW, j->dout + (b * C + c) * n_out,
                            j->rout ? j->rout + (b * C + c) * n_out : NULL, j->carg + (b * C + c) * n_out, H, W, mf,
                            &sdy, &sdyx);
  sdyx *= is;
  if (j->dgamma) j->dgamma[c] = (float)sdyx;
  if (j->dbeta) j->dbeta[c] = (float)sdy;
  const double g = j->gamma ? j->gamma[c] : 1.0;
  const float fa = (float)(g * is), fb = (float)(-g * is * is * sdyx / M), fc = (float)(-g * is * sdy / M);
  for (int64_t b = 0; b < B; b++)
    (small ? bnp_backward_plane_small_avx2 : ml__bnp_backward_plane)(
        j->dx + (b * C + c) * HW, j->x + (b * C + c) * HW, j->dout + (b * C + c) * n_out,
        j->rout ? j->rout + (b * C + c) * n_out : NULL, j->carg + (b * C + c) * n_out, H, W, mf, fa, fb, fc);
}

void ml_batchnorm_pool_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *relu_out,
                                const uint8_t *arg, const float *x, const float *mean, const float *invstd,
                                const float *gamma, int64_t B, int64_t C, int64_t H, int64_t W) {
  bnp_job j = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dout = dout, .rout = relu_out, .carg = arg, .x = x,
               .cmean = mean, .cinvstd = invstd, .gamma = gamma, .B = B, .C = C, .H = H, .W = W};
  ml__kernels_run(C, bnp_backward_item, &j);
}
