/* kernels/conv_bn_pool.c: convolution + batch-norm + 2x2 max-pool that recomputes each image's
 * convolution output instead of storing it.
 *
 * Conv4's first layer (1 input channel, 9 taps per output) writes a 64-channel output 64 times
 * larger than its input: 120 MB for a 600-image ProtoNet episode, then read back by the
 * statistics, the normalize + pool, the backward's sums and dense pass and the weight gradient,
 * each a trip to memory, while the convolution itself is 9 FMAs per output. Here every pass
 * recomputes one image's output into a per-worker plane (200 KB, cache-resident) and consumes it
 * there: forward = statistics pass + normalize-pool pass, backward = sums pass + dense pass
 * (with the image's weight gradient). The per-image results (statistics, sums, weight
 * gradients) are kept per image and combined in image order: the same bits at any thread count.
 * The plane kernels are conv.c's, so each plane's arithmetic is that of the unfused path. With
 * AVX2 the autograd op also keeps the output at the windows' argmaxes (ml__conv_bn_pool_*_z), so
 * the backward's sums pass needs no convolution. */
#include <math.h>
#include <string.h>

#include "kernels/internal.h"

typedef struct {
  const ml_conv_shape *s;
  ml_conv_shape one; /* the same convolution on one image */
  float *scratch;
  size_t worker_floats;
  double *per_image; /* (B, OC, 2): statistics or backward sums */
  float *wpart;      /* (B, OC*C*KH*KW + OC): weight and bias gradients per image */
  float *din, *out, *zpool; /* zpool: the output at each window's argmax (forward) */
  uint8_t *arg;
  const float *in, *w, *bias, *dout, *rout, *czpool;
  const uint8_t *carg;
  const float *mf, *k1, *k2, *k3; /* per channel: mean, then (scale, shift) or (fa, fb, fc) */
  bool want_weight, relu;
} cbp_job;

static size_t round16(size_t f) { return (f + 15) & ~(size_t)15; }
static size_t plane_floats(const ml_conv_shape *s) { return round16((size_t)(s->OC * s->OH * s->OW)); }

static ml_conv_shape one_image(const ml_conv_shape *s) {
  ml_conv_shape o = *s;
  o.B = 1;
  return o;
}

/* per worker: the one-image convolution's scratch, the output plane, its gradient */
static size_t worker_floats(const ml_conv_shape *s) {
  ml_conv_shape one = one_image(s);
  return round16(ml_conv2d_scratch_floats(&one)) + 2 * plane_floats(s);
}

size_t ml_conv_bn_pool_scratch_floats(const ml_conv_shape *s) {
  const size_t per_image = round16((size_t)(s->B * s->OC * 4)); /* 2 doubles per (image, channel) */
  const size_t wpart = (size_t)(s->B * (s->OC * s->C * s->KH * s->KW + s->OC));
  const size_t channel = round16((size_t)(4 * s->OC));
  return worker_floats(s) * (size_t)ml_kernels_workers() + per_image + wpart + channel;
}

/* image b's convolution output into the worker's plane */
static float *conv_image(const cbp_job *j, int64_t b, int worker) {
  const ml_conv_shape *s = j->s;
  float *ws = j->scratch + (size_t)worker * j->worker_floats;
  float *z = ws + (j->worker_floats - 2 * plane_floats(s));
  ml_conv2d_forward(&j->one, z, j->in + b * s->C * s->H * s->W, j->w, j->bias, ws);
  return z;
}

/* per (image, channel): the plane's sum and its sum of squares about the plane's own mean */
static void stats_item(int64_t b, int worker, void *vj) {
  const cbp_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t P = s->OH * s->OW;
  const float *z = conv_image(j, b, worker);
  for (int64_t c = 0; c < s->OC; c++) {
    double sum = ml__sum_row(z + c * P, P);
    double *st = j->per_image + (b * s->OC + c) * 2;
    st[0] = sum;
    st[1] = ml__sumsq_row(z + c * P, P, sum / (double)P);
  }
}

static void pool_item(int64_t b, int worker, void *vj) {
  const cbp_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t P = s->OH * s->OW, n_out = (s->OH / 2) * (s->OW / 2);
  const float *z = conv_image(j, b, worker);
  for (int64_t c = 0; c < s->OC; c++) {
    const int64_t plane = b * s->OC + c;
    if (j->zpool)
      ml__bnp_forward_plane_z(z + c * P, j->out + plane * n_out, j->arg + plane * n_out, j->zpool + plane * n_out,
                              s->OH, s->OW, j->mf[c], j->k1[c], j->k2[c], j->relu);
    else
      ml__bnp_forward_plane(z + c * P, j->out + plane * n_out, j->arg ? j->arg + plane * n_out : NULL, s->OH, s->OW,
                            j->mf[c], j->k1[c], j->k2[c], j->relu);
  }
}

/* With AVX2 the forward can keep the convolution output at each window's argmax (a quarter of
 * the output): the backward's sums then read it instead of computing the convolution once more
 * (a first-layer convolution and a pass over the full-size output per image). AVX-512 keeps the
 * recomputation (its bits unchanged). Only up to KEEP_Z_BYTES kept per call: the values live as
 * long as the graph, and at 300 query images (15 MB per first block, configuration 3 of
 * bench/vs_pytorch) keeping them raised a task's arena peak from 146 to 160 MB with no measurable
 * speed gain (2.75-3.2 s against 2.75-3.6 s per meta-iteration); at 75 (3.8 MB) it saves ~20% of
 * the block's backward. */
#define KEEP_Z_BYTES (4 << 20)
bool ml__conv_bn_pool_keeps_z(const ml_conv_shape *s) {
  return ml__simd_level() == ML_SIMD_AVX2 &&
         (double)s->B * (double)s->OC * (double)((s->OH / 2) * (s->OW / 2)) * sizeof(float) <= KEEP_Z_BYTES;
}

void ml_conv_bn_pool_forward(const ml_conv_shape *s, float *out, uint8_t *arg, float *mean, float *invstd,
                             const float *in, const float *w, const float *bias, const float *gamma, const float *beta,
                             float eps, bool relu, float *scratch) {
  ml__conv_bn_pool_forward_z(s, out, arg, NULL, mean, invstd, in, w, bias, gamma, beta, eps, relu, scratch);
}

void ml__conv_bn_pool_forward_z(const ml_conv_shape *s, float *out, uint8_t *arg, float *zpool, float *mean,
                                float *invstd, const float *in, const float *w, const float *bias, const float *gamma,
                                const float *beta, float eps, bool relu, float *scratch) {
  const int64_t B = s->B, OC = s->OC, P = s->OH * s->OW;
  const int workers = ml_kernels_workers();
  cbp_job j = {.s = s, .one = one_image(s), .scratch = scratch, .worker_floats = worker_floats(s), .out = out,
               .arg = arg, .zpool = arg ? zpool : NULL, .in = in, .w = w, .bias = bias, .relu = relu};
  j.per_image = (double *)(void *)(scratch + j.worker_floats * (size_t)workers);
  float *ch = scratch + j.worker_floats * (size_t)workers + round16((size_t)(B * OC * 4)) +
              (size_t)(B * (OC * s->C * s->KH * s->KW + OC));
  float *mf = ch, *scale = ch + OC, *shift = ch + 2 * OC;
  ml__kernels_run(B, stats_item, &j);
  /* Chan et al.'s merge, in image order: with s_b, q_b a plane's sum and sum of squares about
   * its float mean f_b, sum (x - m)^2 = q_b + 2 (f_b - m)(s_b - P f_b) + P (f_b - m)^2 */
  const double n = (double)(B * P);
  for (int64_t c = 0; c < OC; c++) {
    double sum = 0, m2 = 0;
    for (int64_t b = 0; b < B; b++) sum += j.per_image[(b * OC + c) * 2];
    const double m = sum / n;
    for (int64_t b = 0; b < B; b++) {
      const double *st = j.per_image + (b * OC + c) * 2, f = (double)(float)(st[0] / (double)P), d = f - m;
      m2 += st[1] + 2.0 * d * (st[0] - (double)P * f) + (double)P * d * d;
    }
    const double is = 1.0 / sqrt((m2 > 0 ? m2 : 0) / n + eps);
    mean[c] = (float)m;
    invstd[c] = (float)is;
    /* the float expressions of ml_batchnorm_pool_forward */
    mf[c] = (float)m;
    scale[c] = (float)(is * (gamma ? gamma[c] : 1.0));
    shift[c] = beta ? beta[c] : 0.0f;
  }
  j.mf = mf, j.k1 = scale, j.k2 = shift;
  ml__kernels_run(B, pool_item, &j);
}

/* per (image, channel): sum dout and sum dout * (z - mean) over the windows' argmaxes */
static void sums_item(int64_t b, int worker, void *vj) {
  const cbp_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t P = s->OH * s->OW, n_out = (s->OH / 2) * (s->OW / 2);
  const float *z = conv_image(j, b, worker);
  for (int64_t c = 0; c < s->OC; c++) {
    const int64_t plane = b * s->OC + c;
    double *st = j->per_image + plane * 2;
    st[0] = st[1] = 0;
    ml__bnp_backward_sums(z + c * P, j->dout + plane * n_out, j->rout ? j->rout + plane * n_out : NULL,
                          j->carg + plane * n_out, s->OH, s->OW, j->mf[c], &st[0], &st[1]);
  }
}

/* the same sums from the kept argmax values: no convolution */
static void pooled_sums_item(int64_t b, int worker, void *vj) {
  (void)worker;
  const cbp_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t n_out = (s->OH / 2) * (s->OW / 2);
  for (int64_t c = 0; c < s->OC; c++) {
    const int64_t plane = b * s->OC + c;
    double *st = j->per_image + plane * 2;
    st[0] = st[1] = 0;
    ml__bnp_pooled_sums(j->czpool + plane * n_out, j->dout + plane * n_out, j->rout ? j->rout + plane * n_out : NULL,
                        n_out, j->mf[c], &st[0], &st[1]);
  }
}

/* the convolution output's gradient for image b, then its weight (and bias) gradient and its
 * input gradient */
static void dense_item(int64_t b, int worker, void *vj) {
  const cbp_job *j = vj;
  const ml_conv_shape *s = j->s;
  const int64_t P = s->OH * s->OW, n_out = (s->OH / 2) * (s->OW / 2), CT = s->C * s->KH * s->KW;
  float *ws = j->scratch + (size_t)worker * j->worker_floats;
  const float *z = conv_image(j, b, worker);
  float *dz = ws + (j->worker_floats - plane_floats(s));
  for (int64_t c = 0; c < s->OC; c++) {
    const int64_t plane = b * s->OC + c;
    ml__bnp_backward_plane(dz + c * P, z + c * P, j->dout + plane * n_out, j->rout ? j->rout + plane * n_out : NULL,
                           j->carg + plane * n_out, s->OH, s->OW, j->mf[c], j->k1[c], j->k2[c], j->k3[c]);
  }
  const float *x = j->in + b * s->C * s->H * s->W;
  if (j->want_weight) {
    float *wp = j->wpart + b * (s->OC * CT + s->OC);
    ml_conv2d_backward_weight_bias(&j->one, wp, wp + s->OC * CT, x, dz, ws);
  }
  if (j->din) ml_conv2d_backward_data(&j->one, j->din + b * s->C * s->H * s->W, dz, j->w, ws);
}

void ml_conv_bn_pool_backward(const ml_conv_shape *s, float *din, float *dw, float *db, float *dgamma, float *dbeta,
                              const float *dout, const float *relu_out, const uint8_t *arg, const float *in,
                              const float *w, const float *bias, const float *mean, const float *invstd,
                              const float *gamma, float *scratch) {
  ml__conv_bn_pool_backward_z(s, din, dw, db, dgamma, dbeta, dout, relu_out, arg, NULL, in, w, bias, mean, invstd,
                              gamma, scratch);
}

void ml__conv_bn_pool_backward_z(const ml_conv_shape *s, float *din, float *dw, float *db, float *dgamma,
                                 float *dbeta, const float *dout, const float *relu_out, const uint8_t *arg,
                                 const float *zpool, const float *in, const float *w, const float *bias,
                                 const float *mean, const float *invstd, const float *gamma, float *scratch) {
  const int64_t B = s->B, OC = s->OC, P = s->OH * s->OW, CT = s->C * s->KH * s->KW;
  const int workers = ml_kernels_workers();
  cbp_job j = {.s = s, .one = one_image(s), .scratch = scratch, .worker_floats = worker_floats(s), .din = din, .in = in,
               .w = w, .bias = bias, .dout = dout, .rout = relu_out, .czpool = zpool, .carg = arg, .mf = mean,
               .want_weight = dw || db};
  j.per_image = (double *)(void *)(scratch + j.worker_floats * (size_t)workers);
  j.wpart = scratch + j.worker_floats * (size_t)workers + round16((size_t)(B * OC * 4));
  float *ch = j.wpart + (size_t)(B * (OC * CT + OC));
  float *fa = ch, *fb = ch + OC, *fc = ch + 2 * OC;
  ml__kernels_run(B, zpool ? pooled_sums_item : sums_item, &j); /* zpool: the forward kept them */
  /* the per-channel coefficients of ml_batchnorm_pool_backward, from the sums in image order */
  const double M = (double)(B * P);
  for (int64_t c = 0; c < OC; c++) {
    double sdy = 0, sdyx = 0;
    for (int64_t b = 0; b < B; b++) sdy += j.per_image[(b * OC + c) * 2], sdyx += j.per_image[(b * OC + c) * 2 + 1];
    const double is = invstd[c], g = gamma ? gamma[c] : 1.0;
    sdyx *= is;
    if (dgamma) dgamma[c] = (float)sdyx;
    if (dbeta) dbeta[c] = (float)sdy;
    fa[c] = (float)(g * is), fb[c] = (float)(-g * is * is * sdyx / M), fc[c] = (float)(-g * is * sdy / M);
  }
  if (!din && !j.want_weight) return;
  j.k1 = fa, j.k2 = fb, j.k3 = fc;
  ml__kernels_run(B, dense_item, &j);
  if (!j.want_weight) return;
  const int64_t per = OC * CT + OC;
  for (int64_t k = 0; k < per; k++) {
    double t = 0;
    for (int64_t b = 0; b < B; b++) t += j.wpart[b * per + k];
    if (k < OC * CT) {
      if (dw) dw[k] = (float)t;
    } else if (db) {
      db[k - OC * CT] = (float)t;
    }
  }
}
