/* kernels/elementwise.c: elementwise ops over the (P, C, Q) broadcast view, reductions,
 * row-wise log-softmax and picks, and embedding gather/scatter.
 *
 * The hot loops (binary, ReLU, ReLU mask, affine, sums) are written once as always-inline
 * bodies and instantiated three times: baseline, AVX2 and AVX-512 targets, picked by
 * ml__simd_level(). The compiler vectorizes the simple loops; GCC at -O2 uses a cost model
 * too timid for loops with a remainder, so this file asks it for the dynamic one. Aliasing
 * is allowed (out may equal an input), so there is no restrict here. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

#include <math.h>
#include <string.h>

#include "kernels/internal.h"

#define INLINE static inline __attribute__((always_inline))
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

/* Defines name_scalar, name_avx2, name_avx512 calling body(args) and a dispatcher. */
#define MULTI(name, params, args)                                    \
  static void name##_scalar params { name##_body args; }             \
  T_AVX2 static void name##_avx2 params { name##_body args; }        \
  T_AVX512 static void name##_avx512 params { name##_body args; }    \
  static void name##_dispatch params {                               \
    switch (ml__simd_level()) {                                      \
      case ML_SIMD_AVX512: name##_avx512 args; break;                \
      case ML_SIMD_AVX2: name##_avx2 args; break;                    \
      default: name##_scalar args; break;                            \
    }                                                                \
  }

/* ---- binary: out[p,c,q] = a[p,c,q] op b[c] ---- */
#define BIN_LOOPS(OP)                                                   \
  if (Q == 1) {                                                         \
    for (int64_t p = 0; p < P; p++) {                                   \
      const float *ap = a + p * C;                                      \
      float *dst = out + p * C;                                          \
      for (int64_t c = 0; c < C; c++) dst[c] = ap[c] OP b[c];            \
    }                                                                   \
  } else {                                                              \
    for (int64_t p = 0; p < P; p++)                                     \
      for (int64_t c = 0; c < C; c++) {                                 \
        const float *ap = a + (p * C + c) * Q;                          \
        float *dst = out + (p * C + c) * Q;                              \
        const float bc = b[c];                                          \
        for (int64_t q = 0; q < Q; q++) dst[q] = ap[q] OP bc;            \
      }                                                                 \
  }

INLINE void binary_body(ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C,
                        int64_t Q) {
  switch (op) {
    case ML_BIN_ADD: BIN_LOOPS(+) break;
    case ML_BIN_SUB: BIN_LOOPS(-) break;
    case ML_BIN_MUL: BIN_LOOPS(*) break;
    default: BIN_LOOPS(/) break;
  }
}
MULTI(binary, (ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C, int64_t Q),
      (op, out, a, b, P, C, Q))

/* Large elementwise kernels run in items of about this many elements when a pool is lent. */
#define ITEM_ELEMS 65536

typedef struct {
  int op;
  float *out;
  const float *a, *b;
  int64_t P, C, Q, per; /* per: rows of P (P > 1) or of C (P == 1) per item */
  float fa, fb;
} ew_job;

static void binary_item(int64_t i, int worker, void *vj) {
  const ew_job *j = vj;
  if (j->P > 1) {
    int64_t p0 = i * j->per, n = j->P - p0 < j->per ? j->P - p0 : j->per, o = p0 * j->C * j->Q;
    binary_dispatch((ml_bin_op)j->op, j->out + o, j->a + o, j->b, n, j->C, j->Q);
  } else {
    int64_t c0 = i * j->per, n = j->C - c0 < j->per ? j->C - c0 : j->per, o = c0 * j->Q;
    binary_dispatch((ml_bin_op)j->op, j->out + o, j->a + o, j->b + c0, 1, n, j->Q);
  }
}

void ml_binary(ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C, int64_t Q) {
  const int64_t total = P * C * Q;
  if (total < 2 * ITEM_ELEMS || ml_kernels_workers() == 1) {
    binary_dispatch(op, out, a, b, P, C, Q);
    return;
  }
  ew_job j = {.op = (int)op, .out = out, .a = a, .b = b, .P = P, .C = C, .Q = Q};
  int64_t row = P > 1 ? C * Q : Q, rows = P > 1 ? P : C;
  j.per = ITEM_ELEMS / row > 1 ? ITEM_ELEMS / row : 1;
  ml__kernels_run((rows + j.per - 1) / j.per, binary_item, &j);
}

/* Splits out[0, n) into items for a pool; kind: 0 simple unary, 1 affine, 2 ReLU mask. */
static void flat_item(int64_t i, int worker, void *vj);
static bool flat_parallel(int kind, int op, float *out, const float *a, const float *b, int64_t n, float fa, float fb) {
  if (n < 2 * ITEM_ELEMS || ml_kernels_workers() == 1) return false;
  ew_job j = {.op = op, .out = out, .a = a, .b = b, .P = kind, .C = n, .per = ITEM_ELEMS, .fa = fa, .fb = fb};
  ml__kernels_run((n + ITEM_ELEMS - 1) / ITEM_ELEMS, flat_item, &j);
  return true;
}

/* ---- unary ---- */
INLINE void simple_unary_body(ml_un_op op, float *out, const float *x, int64_t n) {
  switch (op) {
    case ML_UN_RELU:
      for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
      break;
    case ML_UN_SQUARE:
      for (int64_t i = 0; i < n; i++) out[i] = x[i] * x[i];
      break;
    default:
      for (int64_t i = 0; i < n; i++) out[i] = fabsf(x[i]);
      break;
  }
}
MULTI(simple_unary, (ml_un_op op, float *out, const float *x, int64_t n), (op, out, x, n))

/* exp for x <= 0 without libm, so that sigmoid and tanh loops vectorize (they dominate
 * recurrent nets): Cephes' expf, range reduction x = n ln2 + r, |r| <= ln2 / 2, a degree-6
 * polynomial (relative error about 1e-7), 2^n put into the exponent bits; below about -87.3
 * (where exp leaves the normal range) the result is 0.
 * No floorf, fmaxf or float selects on computed values: GCC 12 does not vectorize loops with
 * those (fmaxf's NaN rules, -ftrapping-math), so rounding and masks are arithmetic. */
INLINE float step0(float v) { return copysignf(0.5f, v) + 0.5f; } /* 1 for v >= +0, else 0 */

INLINE float exp_nonpos(float x) {
  x = x < -100.0f ? -100.0f : x; /* -inf too; NaN stays NaN */
  const float t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float z = r * r;
  float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
             1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  /* n as an integer read off t's mantissa bits, not converted: converting a NaN to int is
   * undefined; clamped to [-127, 0] (x <= 0; 2^-127 would be denormal: exponent bits 0 give +0) */
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  int32_t k = (int32_t)(tb - 0x4B400000u);
  k = k < -127 ? -127 : k > 0 ? 0 : k;
  int32_t bits = (k + 127) << 23;
  float p2;
  memcpy(&p2, &bits, sizeof p2);
  return y * p2;
}

/* exp of a non-positive number only, so neither side overflows: 1 / (1 + e^-x) for x >= 0,
 * e^x / (1 + e^x) below */
INLINE void sigmoid_body(float *out, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i], e = exp_nonpos(-fabsf(v)), d = 1.0f / (1.0f + e), pos = step0(v);
    out[i] = d * (pos + (1.0f - pos) * e);
  }
}
MULTI(sigmoid, (float *out, const float *x, int64_t n), (out, x, n))

/* Cephes' tanhf: an odd polynomial below 0.625 (where 1 - 2/(e^2x + 1) would cancel), else
 * (1 - e) / (1 + e) with e = exp(-2|x|) <= 1 and x's sign. */
INLINE void tanh_body(float *out, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    /* the polynomial branch sees v clamped to [-1, 1] (it is only used below 0.625), so an
     * infinite v gives +-1 rather than 0 * inf = NaN; NaN stays NaN */
    float v = x[i], a = fabsf(v), vc = v < -1.0f ? -1.0f : v;
    vc = vc > 1.0f ? 1.0f : vc;
    float z = vc * vc;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * vc + vc;
    float e = exp_nonpos(-2.0f * a), big = copysignf((1.0f - e) / (1.0f + e), v), lo = step0(0.625f - a);
    out[i] = lo * small + (1.0f - lo) * big;
  }
}
MULTI(tanh, (float *out, const float *x, int64_t n), (out, x, n))

void ml_unary(ml_un_op op, float *out, const float *x, int64_t n) {
  switch (op) {
    case ML_UN_RELU:
    case ML_UN_SQUARE:
    case ML_UN_ABS:
      if (!flat_parallel(0, (int)op, out, x, NULL, n, 0, 0)) simple_unary_dispatch(op, out, x, n);
      return;
    case ML_UN_EXP:
      for (int64_t i = 0; i < n; i++) out[i] = expf(x[i]);
      return;
    case ML_UN_LOG:
      for (int64_t i = 0; i < n; i++) out[i] = logf(x[i]);
      return;
    case ML_UN_SIGMOID: sigmoid_dispatch(out, x, n); return;
    case ML_UN_TANH: tanh_dispatch(out, x, n); return;
    case ML_UN_SOFTPLUS:
      /* max(x,0) + log1p(exp(-|x|)): no overflow for large x, no loss for very negative x */
      for (int64_t i = 0; i < n; i++) out[i] = fmaxf(x[i], 0.0f) + log1pf(expf(-fabsf(x[i])));
      return;
    case ML_UN_RSQRT:
      for (int64_t i = 0; i < n; i++) out[i] = 1.0f / sqrtf(x[i]);
      return;
    case ML_UN_SQRT:
      for (int64_t i = 0; i < n; i++) out[i] = sqrtf(x[i]);
      return;
  }
}

/* ---- affine and ReLU mask ---- */
INLINE void affine_body(float *out, const float *x, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; i++) out[i] = a * x[i] + b;
}
MULTI(affine, (float *out, const float *x, int64_t n, float a, float b), (out, x, n, a, b))
void ml_affine_kernel(float *out, const float *x, int64_t n, float a, float b) {
  if (!flat_parallel(1, 0, out, x, NULL, n, a, b)) affine_dispatch(out, x, n, a, b);
}

INLINE void relu_mask_body(float *out, const float *g, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? g[i] : 0.0f;
}
MULTI(relu_mask, (float *out, const float *g, const float *x, int64_t n), (out, g, x, n))
void ml_relu_mask_kernel(float *out, const float *g, const float *x, int64_t n) {
  if (!flat_parallel(2, 0, out, g, x, n, 0, 0)) relu_mask_dispatch(out, g, x, n);
}

static void flat_item(int64_t i, int worker, void *vj) {
  const ew_job *j = vj;
  int64_t o = i * j->per, n = j->C - o < j->per ? j->C - o : j->per;
  switch (j->P) {
    case 0: simple_unary_dispatch((ml_un_op)j->op, j->out + o, j->a + o, n); break;
    case 1: affine_dispatch(j->out + o, j->a + o, n, j->fa, j->fb); break;
    default: relu_mask_dispatch(j->out + o, j->a + o, j->b + o, n); break;
  }
}

/* ---- reductions: out[c] = sum over p, q of x[p,c,q], in double ---- */
#define RED_CHUNK 256
INLINE void reduce_body(float *out, const float *x, int64_t P, int64_t C, int64_t Q) {
  if (Q == 1) {
    /* column sums: vectorize across c, in p order per output (as the reference does) */
    double acc[RED_CHUNK];
    for (int64_t c0 = 0; c0 < C; c0 += RED_CHUNK) {
      int64_t cn = C - c0 < RED_CHUNK ? C - c0 : RED_CHUNK;
      for (int64_t c = 0; c < cn; c++) acc[c] = 0.0;
      for (int64_t p = 0; p < P; p++) {
        const float *xp = x + p * C + c0;
        for (int64_t c = 0; c < cn; c++) acc[c] += (double)xp[c];
      }
      for (int64_t c = 0; c < cn; c++) out[c0 + c] = (float)acc[c];
    }
    return;
  }
  /* runs of Q: eight fixed partial sums (lanes), combined in a fixed order */
  for (int64_t c = 0; c < C; c++) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t p = 0; p < P; p++) {
      const float *xr = x + (p * C + c) * Q;
      int64_t q = 0;
      for (; q + 8 <= Q; q += 8)
        for (int j = 0; j < 8; j++) lane[j] += (double)xr[q + j];
      for (; q < Q; q++) lane[0] += (double)xr[q];
    }
    out[c] = (float)(((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])));
  }
}
MULTI(reduce, (float *out, const float *x, int64_t P, int64_t C, int64_t Q), (out, x, P, C, Q))
void ml_reduce_sum(float *out, const float *x, int64_t P, int64_t C, int64_t Q) { reduce_dispatch(out, x, P, C, Q); }

/* out (P,C,Q) = x (C) broadcast (compiled per SIMD level: the backward of a sum over a batch of
 * activations fills planes of tens of MB) */
INLINE void expand_body(float *out, const float *x, int64_t P, int64_t C, int64_t Q) {
  for (int64_t p = 0; p < P; p++) {
    if (Q == 1) {
      memcpy(out + p * C, x, (size_t)C * sizeof(float));
      continue;
    }
    for (int64_t c = 0; c < C; c++) {
      float *o = out + (p * C + c) * Q;
      for (int64_t q = 0; q < Q; q++) o[q] = x[c];
    }
  }
}
MULTI(expand, (float *out, const float *x, int64_t P, int64_t C, int64_t Q), (out, x, P, C, Q))
void ml_expand(float *out, const float *x, int64_t P, int64_t C, int64_t Q) { expand_dispatch(out, x, P, C, Q); }

/* ---- rows ---- */

/* out, x (rows, cols); out may equal x */
void ml_log_softmax_kernel(float *out, const float *x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float m = -INFINITY;
    for (int64_t j = 0; j < cols; j++) m = xr[j] > m ? xr[j] : m;
    double s = 0;
    for (int64_t j = 0; j < cols; j++) s += exp((double)xr[j] - m);
    float lse = (float)(m + log(s));
    for (int64_t j = 0; j < cols; j++) out[r * cols + j] = xr[j] - lse;
  }
}

void ml_pick_kernel(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) out[r] = x[r * cols + idx[r]];
}

void ml_pick_scatter(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols) {
  memset(out, 0, (size_t)(rows * cols) * sizeof(float));
  for (int64_t r = 0; r < rows; r++) out[r * cols + idx[r]] = g[r];
}

/* ---- embeddings: table (V, D) ---- */
void ml_embedding_gather(float *out, const float *table, const int32_t *idx, int64_t n, int64_t D) {
  for (int64_t i = 0; i < n; i++) memcpy(out + i * D, table + (int64_t)idx[i] * D, (size_t)D * sizeof(float));
}

void ml_embedding_scatter_add(float *grad, const float *g, const int32_t *idx, int64_t n, int64_t D) {
  for (int64_t i = 0; i < n; i++) {
    float *dst = grad + (int64_t)idx[i] * D;
    const float *src = g + i * D;
    for (int64_t d = 0; d < D; d++) dst[d] += src[d];
  }
}

/* ------------------------------------------------------------------ LSTM cell */
/* One pass per row over the four gate bands: the activations are kept for the backward, the
 * new cell state and output written once (a composite of ops makes ~12 passes and copies). */
INLINE void lstm_mix_body(float *c2, const float *a, const float *c, int64_t H) {
  const float *ig = a, *fg = a + H, *gg = a + 2 * H;
  for (int64_t k = 0; k < H; k++) c2[k] = fg[k] * c[k] + ig[k] * gg[k];
}
MULTI(lstm_mix, (float *c2, const float *a, const float *c, int64_t H), (c2, a, c, H))

INLINE void lstm_out_body(float *h, const float *tc, const float *o, int64_t H) {
  for (int64_t k = 0; k < H; k++) h[k] = tc[k] * o[k];
}
MULTI(lstm_out, (float *h, const float *tc, const float *o, int64_t H), (h, tc, o, H))

/* d: the row's dz with tanh(c2) parked in its o band */
INLINE void lstm_bw_body(float *d, float *dc, const float *dh, const float *dc2, const float *a, const float *c,
                         int64_t H) {
  for (int64_t k = 0; k < H; k++) {
    float i = a[k], f = a[H + k], gv = a[2 * H + k], o = a[3 * H + k], tc = d[3 * H + k];
    float gh = dh[k], dct = dc2[k] + gh * o * (1 - tc * tc);
    d[k] = dct * gv * i * (1 - i);
    d[H + k] = dct * c[k] * f * (1 - f);
    d[2 * H + k] = dct * i * (1 - gv * gv);
    d[3 * H + k] = gh * tc * o * (1 - o);
    dc[k] = dct * f;
  }
}
MULTI(lstm_bw, (float *d, float *dc, const float *dh, const float *dc2, const float *a, const float *c, int64_t H),
      (d, dc, dh, dc2, a, c, H))

void ml_lstm_cell_forward(float *h, float *c2, float *tc, float *acts, const float *z, const float *c, int64_t n,
                          int64_t H) {
  for (int64_t r = 0; r < n; r++) {
    const float *zr = z + r * 4 * H;
    float *a = acts + r * 4 * H, *hr = h + r * H, *c2r = c2 + r * H, *t = tc ? tc + r * H : hr;
    ml_unary(ML_UN_SIGMOID, a, zr, 2 * H); /* i, f */
    ml_unary(ML_UN_TANH, a + 2 * H, zr + 2 * H, H);
    ml_unary(ML_UN_SIGMOID, a + 3 * H, zr + 3 * H, H);
    lstm_mix_dispatch(c2r, a, c + r * H, H);
    ml_unary(ML_UN_TANH, t, c2r, H);
    lstm_out_dispatch(hr, t, a + 3 * H, H);
  }
}

void ml_lstm_cell_backward(float *dz, float *dc, const float *dh, const float *dc2, const float *acts, const float *c,
                           const float *c2, const float *tc, int64_t n, int64_t H) {
  for (int64_t r = 0; r < n; r++) {
    const float *a = acts + r * 4 * H, *cr = c + r * H;
    float *d = dz + r * 4 * H;
    /* tanh(c2), parked in the o band */
    if (tc) memcpy(d + 3 * H, tc + r * H, (size_t)H * sizeof(float));
    else ml_unary(ML_UN_TANH, d + 3 * H, c2 + r * H, H);
    lstm_bw_dispatch(d, dc + r * H, dh + r * H, dc2 + r * H, a, cr, H);
  }
}
