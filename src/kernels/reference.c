/* kernels/reference.c: the naive `_ref` twin of each kernel, written straight from the
 * definition with no blocking or SIMD. The tests compare every fast kernel against these;
 * they are not meant to be fast. */
#include <math.h>
#include <string.h>

#include "kernels/internal.h"

/* op(A) (M,K), op(B) (K,N), C (M,N) row-major; sums in double. */
void ml_gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++) {
        float a = ta ? A[k * lda + i] : A[i * lda + k];
        float b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += (double)a * (double)b;
      }
      float v = alpha * (float)s;
      C[i * ldc + j] = beta == 0.0f ? v : v + beta * C[i * ldc + j];
    }
}

/* out (B,OC,OH,OW), in (B,C,H,W), w (OC,C,KH,KW), bias (OC) or NULL */
void ml_conv2d_forward_ref(const ml_conv_shape *s, float *out, const float *in, const float *w,
                           const float *bias) {
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t oc = 0; oc < s->OC; oc++)
      for (int64_t oh = 0; oh < s->OH; oh++)
        for (int64_t ow = 0; ow < s->OW; ow++) {
          double acc = bias ? bias[oc] : 0.0;
          for (int64_t c = 0; c < s->C; c++)
            for (int64_t kh = 0; kh < s->KH; kh++)
              for (int64_t kw = 0; kw < s->KW; kw++) {
                int64_t h = oh * s->stride - s->pad + kh, x = ow * s->stride - s->pad + kw;
                if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                acc += (double)in[((b * s->C + c) * s->H + h) * s->W + x] *
                       w[((oc * s->C + c) * s->KH + kh) * s->KW + kw];
              }
          out[((b * s->OC + oc) * s->OH + oh) * s->OW + ow] = (float)acc;
        }
}

/* din (B,C,H,W) = sum over (oc, kh, kw) hitting (h, x) of dout * w */
void ml_conv2d_backward_data_ref(const ml_conv_shape *s, float *din, const float *dout, const float *w) {
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t c = 0; c < s->C; c++)
      for (int64_t h = 0; h < s->H; h++)
        for (int64_t x = 0; x < s->W; x++) {
          double acc = 0;
          for (int64_t oc = 0; oc < s->OC; oc++)
            for (int64_t kh = 0; kh < s->KH; kh++)
              for (int64_t kw = 0; kw < s->KW; kw++) {
                int64_t th = h + s->pad - kh, tw = x + s->pad - kw;
                if (th < 0 || tw < 0 || th % s->stride || tw % s->stride) continue;
                int64_t oh = th / s->stride, ow = tw / s->stride;
                if (oh >= s->OH || ow >= s->OW) continue;
                acc += (double)dout[((b * s->OC + oc) * s->OH + oh) * s->OW + ow] *
                       w[((oc * s->C + c) * s->KH + kh) * s->KW + kw];
              }
          din[((b * s->C + c) * s->H + h) * s->W + x] = (float)acc;
        }
}

/* dw (OC,C,KH,KW) = sum over b, oh, ow of dout * in at the tap's position */
void ml_conv2d_backward_weight_ref(const ml_conv_shape *s, float *dw, const float *in, const float *dout) {
  for (int64_t oc = 0; oc < s->OC; oc++)
    for (int64_t c = 0; c < s->C; c++)
      for (int64_t kh = 0; kh < s->KH; kh++)
        for (int64_t kw = 0; kw < s->KW; kw++) {
          double acc = 0;
          for (int64_t b = 0; b < s->B; b++)
            for (int64_t oh = 0; oh < s->OH; oh++)
              for (int64_t ow = 0; ow < s->OW; ow++) {
                int64_t h = oh * s->stride - s->pad + kh, x = ow * s->stride - s->pad + kw;
                if (h < 0 || h >= s->H || x < 0 || x >= s->W) continue;
                acc += (double)in[((b * s->C + c) * s->H + h) * s->W + x] *
                       dout[((b * s->OC + oc) * s->OH + oh) * s->OW + ow];
              }
          dw[((oc * s->C + c) * s->KH + kh) * s->KW + kw] = (float)acc;
        }
}

/* out (B,C,H/2,W/2); ties keep the first of (0,0), (0,1), (1,0), (1,1) */
void ml_maxpool2_forward_ref(float *out, uint8_t *arg, const float *in, int64_t B, int64_t C, int64_t H,
                             int64_t W) {
  int64_t OH = H / 2, OW = W / 2;
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t best = (2 * oh) * W + 2 * ow, code = 0;
        for (int64_t dh = 0; dh < 2; dh++)
          for (int64_t dw = 0; dw < 2; dw++) {
            int64_t i = (2 * oh + dh) * W + 2 * ow + dw;
            if (in[p * H * W + i] > in[p * H * W + best]) best = i, code = 2 * dh + dw;
          }
        out[(p * OH + oh) * OW + ow] = in[p * H * W + best];
        arg[(p * OH + oh) * OW + ow] = (uint8_t)code;
      }
}

/* x, y (B,C,HW); mean, invstd (C) */
void ml_batchnorm_forward_ref(float *y, float *mean, float *invstd, const float *x, const float *gamma,
                              const float *beta, int64_t B, int64_t C, int64_t HW, float eps) {
  double n = (double)(B * HW);
  for (int64_t c = 0; c < C; c++) {
    double s = 0, v = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < HW; i++) s += x[(b * C + c) * HW + i];
    double m = s / n;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < HW; i++) {
        double d = x[(b * C + c) * HW + i] - m;
        v += d * d;
      }
    double is = 1.0 / sqrt(v / n + eps);
    mean[c] = (float)m;
    invstd[c] = (float)is;
    double g = gamma ? gamma[c] : 1.0, bt = beta ? beta[c] : 0.0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < HW; i++)
        y[(b * C + c) * HW + i] = (float)((x[(b * C + c) * HW + i] - m) * is * g + bt);
  }
}

void ml_batchnorm_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                               const float *mean, const float *invstd, const float *gamma, int64_t B, int64_t C,
                               int64_t HW) {
  double n = (double)(B * HW);
  for (int64_t c = 0; c < C; c++) {
    double sdy = 0, sdyx = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < HW; i++) {
        int64_t k = (b * C + c) * HW + i;
        double xh = ((double)x[k] - mean[c]) * invstd[c];
        sdy += dy[k];
        sdyx += dy[k] * xh;
      }
    if (dgamma) dgamma[c] = (float)sdyx;
    if (dbeta) dbeta[c] = (float)sdy;
    double g = gamma ? gamma[c] : 1.0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < HW; i++) {
        int64_t k = (b * C + c) * HW + i;
        double xh = ((double)x[k] - mean[c]) * invstd[c];
        dx[k] = (float)(g * invstd[c] * (dy[k] - sdy / n - xh * sdyx / n));
      }
  }
}

void ml_binary_ref(ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C, int64_t Q) {
  for (int64_t p = 0; p < P; p++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t q = 0; q < Q; q++) {
        int64_t i = (p * C + c) * Q + q;
        float u = a[i], v = b[c], r;
        switch (op) {
          case ML_BIN_ADD: r = u + v; break;
          case ML_BIN_SUB: r = u - v; break;
          case ML_BIN_MUL: r = u * v; break;
          default: r = u / v; break;
        }
        out[i] = r;
      }
}

void ml_unary_ref(ml_un_op op, float *out, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double v = x[i], r;
    switch (op) {
      case ML_UN_RELU: r = v > 0 ? v : 0; break;
      case ML_UN_EXP: r = exp(v); break;
      case ML_UN_LOG: r = log(v); break;
      case ML_UN_SIGMOID: r = 1.0 / (1.0 + exp(-v)); break;
      case ML_UN_TANH: r = tanh(v); break;
      case ML_UN_SOFTPLUS: r = (v > 0 ? v : 0) + log1p(exp(-fabs(v))); break;
      case ML_UN_RSQRT: r = 1.0 / sqrt(v); break;
      case ML_UN_SQRT: r = sqrt(v); break;
      case ML_UN_SQUARE: r = v * v; break;
      default: r = fabs(v); break;
    }
    out[i] = (float)r;
  }
}

void ml_reduce_sum_ref(float *out, const float *x, int64_t P, int64_t C, int64_t Q) {
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t p = 0; p < P; p++)
      for (int64_t q = 0; q < Q; q++) s += x[(p * C + c) * Q + q];
    out[c] = (float)s;
  }
}

void ml_log_softmax_kernel_ref(float *out, const float *x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < cols; j++)
      if (xr[j] > m) m = xr[j];
    for (int64_t j = 0; j < cols; j++) s += exp(xr[j] - m);
    double lse = m + log(s);
    for (int64_t j = 0; j < cols; j++) out[r * cols + j] = (float)(xr[j] - lse);
  }
}

static double sigm_ref(double x) { return 1.0 / (1.0 + exp(-x)); }

void ml_lstm_cell_forward_ref(float *h, float *c2, float *acts, const float *z, const float *c, int64_t n, int64_t H) {
  for (int64_t r = 0; r < n; r++)
    for (int64_t k = 0; k < H; k++) {
      const float *zr = z + r * 4 * H;
      double i = sigm_ref(zr[k]), f = sigm_ref(zr[H + k]), gv = tanh(zr[2 * H + k]), o = sigm_ref(zr[3 * H + k]);
      double cn = f * c[r * H + k] + i * gv;
      float *a = acts + r * 4 * H;
      a[k] = (float)i, a[H + k] = (float)f, a[2 * H + k] = (float)gv, a[3 * H + k] = (float)o;
      c2[r * H + k] = (float)cn;
      h[r * H + k] = (float)(o * tanh(cn));
    }
}

void ml_lstm_cell_backward_ref(float *dz, float *dc, const float *dh, const float *dc2, const float *acts,
                               const float *c, const float *c2, int64_t n, int64_t H) {
  for (int64_t r = 0; r < n; r++)
    for (int64_t k = 0; k < H; k++) {
      const float *a = acts + r * 4 * H;
      double i = a[k], f = a[H + k], gv = a[2 * H + k], o = a[3 * H + k], tc = tanh(c2[r * H + k]);
      double gh = dh[r * H + k], dct = dc2[r * H + k] + gh * o * (1 - tc * tc);
      float *d = dz + r * 4 * H;
      d[k] = (float)(dct * gv * i * (1 - i));
      d[H + k] = (float)(dct * c[r * H + k] * f * (1 - f));
      d[2 * H + k] = (float)(dct * i * (1 - gv * gv));
      d[3 * H + k] = (float)(gh * tc * o * (1 - o));
      dc[r * H + k] = (float)(dct * f);
    }
}
