/* kernels: plain functions on contiguous float arrays, no autograd. Layouts are PyTorch's:
 * images (B,C,H,W), conv weights (OC,C,KH,KW), matrices row-major. Every kernel has a naive
 * `_ref` twin used by the tests. Parallelism comes from running tasks on threads (see
 * ml_parallel_for); when a step has fewer tasks than threads, the idle threads can be lent to
 * the kernels (ml_kernels_set_pool). Callers pass scratch memory so kernels never allocate. */
#ifndef METALEARN_KERNELS_H
#define METALEARN_KERNELS_H

#include "metalearn/tensor.h"

/* Kernels whose plain name is taken by an autograd op carry a _kernel suffix
 * (ml_affine_kernel, ml_relu_mask_kernel, ml_log_softmax_kernel, ml_pick_kernel). */

/* ---- CPU features and backends ---- */
typedef enum { ML_SIMD_SCALAR, ML_SIMD_AVX2, ML_SIMD_AVX512 } ml_simd_level;
ML_API ml_simd_level ml_cpu_simd(void);          /* detected at run time (FMA required for AVX2) */
ML_API const char *ml_simd_name(ml_simd_level l); /* "scalar", "avx2", "avx512" */
/* "openblas <corename> (<threads> threads)", "builtin <simd>", or "builtin <simd> (...) and
 * openblas for narrow shapes" where OpenBLAS's kernel is AVX2-only on a full-width AVX-512 core
 * (ML_GEMM=blas or builtin pins the choice). */
ML_API const char *ml_gemm_backend(void);
/* Forces the built-in GEMM even when CBLAS is compiled in (benchmarks, tests). */
ML_API void ml_gemm_use_builtin(bool on);
/* Limits BLAS-internal threads (tasks already run one per thread). */
ML_API void ml_blas_set_threads(int n);

/* ---- intra-op parallelism ----
 * Lends a pool to the kernels called from this thread (NULL: none, the default). Large kernels
 * then split their work into items fixed by the shapes alone, never by the number of threads,
 * so every result is bit-identical with or without a pool. Returns the previous pool. */
ML_API ml_pool *ml_kernels_set_pool(ml_pool *p);
/* Threads the kernels of this thread may use: the lent pool's size, else 1. Scratch sizes
 * (ml_conv2d_scratch_floats) depend on it: query them right before the kernel call. */
ML_API int ml_kernels_workers(void);

/* ---- GEMM, row-major: C = alpha * op(A) * op(B) + beta * C, op(A) M x K, op(B) K x N.
 * ta: A is stored K x M (lda >= M) instead of M x K (lda >= K); likewise tb. beta == 0 means C
 * is not read (may hold NaN). */
ML_API void ml_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
ML_API void ml_gemm_builtin(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                            float *C, int64_t ldc);
/* The built-in GEMM with op(B) (K x N) packed once and reused for many A (an RNN's recurrent
 * weights at every step: packing B is a third of the time of a 64-row product). The packed
 * buffer holds ml_gemm_packed_b_floats(N, K) floats (64-byte aligned); its layout belongs to
 * the SIMD level of this process. */
ML_API int64_t ml_gemm_packed_b_floats(int64_t N, int64_t K);
ML_API void ml_gemm_pack_b(bool tb, int64_t N, int64_t K, const float *B, int64_t ldb, float *packed);
ML_API void ml_gemm_prepacked(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                              const float *packed, float beta, float *C, int64_t ldc);
ML_API void ml_gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* ---- conv2d, square stride and zero padding, no dilation/groups ---- */
typedef struct {
  int64_t B, C, H, W;      /* input (B,C,H,W) */
  int64_t OC, KH, KW;      /* weight (OC,C,KH,KW) */
  int64_t stride, pad;
  int64_t OH, OW;          /* output (B,OC,OH,OW), filled by ml_conv_shape_make */
} ml_conv_shape;

/* Fills OH/OW; ML_ERR_SHAPE when the output would be empty or a size is not positive. */
ML_API ml_status ml_conv_shape_make(ml_conv_shape *s, int64_t B, int64_t C, int64_t H, int64_t W,
                                    int64_t OC, int64_t KH, int64_t KW, int64_t stride, int64_t pad);
/* Floats of scratch the three conv kernels need for this shape (one reusable buffer). Small
 * images are batched several per GEMM, so use this function rather than a formula. */
ML_API size_t ml_conv2d_scratch_floats(const ml_conv_shape *s);
/* out (B,OC,OH,OW) = conv(in, w) + bias[oc] (bias may be NULL). */
ML_API void ml_conv2d_forward(const ml_conv_shape *s, float *out, const float *in, const float *w,
                              const float *bias, float *scratch);
/* din (B,C,H,W) = transposed conv of dout with w; overwrites din. */
ML_API void ml_conv2d_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                                    float *scratch);
/* dw (OC,C,KH,KW) = correlation of in with dout; overwrites dw. */
ML_API void ml_conv2d_backward_weight(const ml_conv_shape *s, float *dw, const float *in, const float *dout,
                                      float *scratch);
/* The same and the bias gradient db (OC) = sum of dout per channel, in one pass over dout where
 * the kernel allows (db NULL: none). */
ML_API void ml_conv2d_backward_weight_bias(const ml_conv_shape *s, float *dw, float *db, const float *in,
                                           const float *dout, float *scratch);
/* Both gradients at once: din as ml_conv2d_backward_data, dw and db as
 * ml_conv2d_backward_weight_bias, the same bits; where the kernels allow (Winograd, no lent pool)
 * one layout change of dout serves both. */
ML_API void ml_conv2d_backward(const ml_conv_shape *s, float *din, float *dw, float *db, const float *in,
                               const float *dout, const float *w, float *scratch);
/* Stride-1 forward and backward-data convolutions run by Winograd F(4x4, 3x3) (3x3 filters, 16
 * channels or more, planes 3 wide or more) or straight from zero-padded images, with AVX-512 (the
 * default); off: always im2col + GEMM (tests and benchmarks compare them). Process-wide. */
ML_API void ml_conv_use_direct(bool on);
/* Winograd convolutions on (the default) or off (the direct kernels instead). Their rounding
 * depends on an output's place in its tile, so outputs that direct summation makes exactly equal
 * (a blank image region) differ in the last bits, and a max-pool over them picks another, equally
 * valid, argmax: gradients then differ from PyTorch's where the pool's inputs tie. Off gives the
 * same ties as direct summation (bench/accuracy --check-first). Process-wide. */
ML_API void ml_conv_use_winograd(bool on);
/* The convolution kernels in use: Winograd and direct (AVX-512) before im2col + gemm, or
 * "im2col + gemm" where those are off (no AVX-512, ML_SIMD below it, or ml_conv_use_direct(false)). */
ML_API const char *ml_conv_backend(void);
ML_API void ml_conv2d_forward_ref(const ml_conv_shape *s, float *out, const float *in, const float *w,
                                  const float *bias);
ML_API void ml_conv2d_backward_data_ref(const ml_conv_shape *s, float *din, const float *dout, const float *w);
ML_API void ml_conv2d_backward_weight_ref(const ml_conv_shape *s, float *dw, const float *in, const float *dout);

/* ---- max-pool 2x2, stride 2, floor (7 -> 3) ----
 * in (B,C,H,W), out (B,C,H/2,W/2); arg[i] is the max's place in its window as a code 2*dh + dw
 * (0..3): one byte per output instead of a 4-byte index (29 of the 213 MB a 600-image ProtoNet
 * episode took). Ties keep the first in row order. */
ML_API void ml_maxpool2_forward(float *out, uint8_t *arg, const float *in, int64_t B, int64_t C, int64_t H,
                                int64_t W);
/* The input-plane offset of window code a for output (oh, ow) of a plane W wide. */
static inline int64_t ml_pool_offset(uint8_t a, int64_t oh, int64_t ow, int64_t W) {
  return (2 * oh + (a >> 1)) * W + 2 * ow + (a & 1);
}
/* din = 0, then din at each output's argmax += dout[i]. */
ML_API void ml_maxpool2_scatter(float *din, const float *dout, const uint8_t *arg, int64_t B, int64_t C, int64_t H,
                                int64_t W);
/* out[i] = din at output i's argmax (the adjoint of scatter). */
ML_API void ml_maxpool2_gather(float *out, const float *din, const uint8_t *arg, int64_t B, int64_t C, int64_t H,
                               int64_t W);
ML_API void ml_maxpool2_forward_ref(float *out, uint8_t *arg, const float *in, int64_t B, int64_t C, int64_t H,
                                    int64_t W);

/* ---- batch-norm with batch statistics over (B, C, HW): statistics per channel over B and HW.
 * gamma / beta may be NULL (1 and 0); dgamma / dbeta may be NULL (not written).
 * Biased variance, as in training mode of PyTorch. */
ML_API void ml_batchnorm_forward(float *y, float *mean, float *invstd, const float *x, const float *gamma,
                                 const float *beta, int64_t B, int64_t C, int64_t HW, float eps);
ML_API void ml_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                  const float *mean, const float *invstd, const float *gamma, int64_t B,
                                  int64_t C, int64_t HW);
/* Gradients of the backward above (dx and dgamma as functions of x, dy and gamma) given the
 * upstream gradients ggi of dx (B,C,HW, or NULL: zero) and ggg of dgamma (C, or NULL: zero):
 * gx (w.r.t. x), gdy (w.r.t. dy), ggamma (w.r.t. gamma, from ggi only); each output may be NULL.
 * mean/invstd are the forward's statistics. What second-order MAML needs through batch norm
 * without materializing the backward's intermediates. */
ML_API void ml_batchnorm_double_backward(float *gx, float *gdy, float *ggamma, const float *x, const float *dy,
                                         const float *ggi, const float *ggg, const float *mean, const float *invstd,
                                         const float *gamma, int64_t B, int64_t C, int64_t HW);
/* Batch-norm (statistics over B and H*W) followed by 2x2 max-pool, without storing the
 * normalized tensor: out (B,C,H/2,W/2) and arg exactly as ml_maxpool2_forward of
 * ml_batchnorm_forward's output; mean, invstd (C) as there. arg may be NULL (no backward). With relu, out is ReLU'd as
 * ml_unary does (the argmax is the pool's): a Conv4 block's batch-norm -> ReLU -> pool, since max-pool commutes with
 * ReLU. */
ML_API void ml_batchnorm_pool_forward(float *out, uint8_t *arg, float *mean, float *invstd, const float *x,
                                      const float *gamma, const float *beta, int64_t B, int64_t C, int64_t H, int64_t W,
                                      float eps, bool relu);
/* Its backward: the pooled gradient dout scattered to the argmax (arg) is the batch-norm's dy;
 * dx (B,C,H,W) overwritten, dgamma / dbeta (C) may be NULL. No full-size temporary. relu_out: the forward's out when it
 * applied ReLU (dout then counts only where out > 0), else NULL. */
ML_API void ml_batchnorm_pool_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *relu_out,
                                       const uint8_t *arg, const float *x, const float *mean, const float *invstd,
                                       const float *gamma, int64_t B, int64_t C, int64_t H, int64_t W);
/* Convolution + batch-norm + 2x2 max-pool that never stores the convolution's output. For a
 * cheap convolution (a first layer, C*KH*KW small) the full-size output costs more to write and
 * read back than to compute again, so each image's output is recomputed into a cache-resident
 * plane by every pass that needs it (statistics, normalize + pool, the backward's two passes):
 * a first layer's memory is its pooled output. out (B,OC,OH/2,OW/2) = maxpool2(batchnorm(
 * conv(in, w) + bias)) with batch statistics (bias may be NULL; gamma, beta NULL: 1 and 0);
 * arg as ml_batchnorm_pool_forward's (or NULL); mean, invstd (OC). Statistics merged per image
 * (Chan et al.), so the values agree with the unfused kernels to rounding, not bit for bit.
 * Same bits at any thread count. OH, OW >= 2. */
ML_API size_t ml_conv_bn_pool_scratch_floats(const ml_conv_shape *s);
ML_API void ml_conv_bn_pool_forward(const ml_conv_shape *s, float *out, uint8_t *arg, float *mean, float *invstd,
                                    const float *in, const float *w, const float *bias, const float *gamma,
                                    const float *beta, float eps, bool relu, float *scratch);
/* Its backward from the pooled gradient dout: din (B,C,H,W), dw (OC,C,KH,KW), db, dgamma, dbeta
 * (OC) overwritten; any may be NULL. */
ML_API void ml_conv_bn_pool_backward(const ml_conv_shape *s, float *din, float *dw, float *db, float *dgamma,
                                     float *dbeta, const float *dout, const float *relu_out, const uint8_t *arg,
                                     const float *in, const float *w, const float *bias, const float *mean,
                                     const float *invstd, const float *gamma, float *scratch);
ML_API void ml_batchnorm_forward_ref(float *y, float *mean, float *invstd, const float *x, const float *gamma,
                                     const float *beta, int64_t B, int64_t C, int64_t HW, float eps);
ML_API void ml_batchnorm_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                      const float *mean, const float *invstd, const float *gamma, int64_t B,
                                      int64_t C, int64_t HW);

/* ---- elementwise ----
 * Binary ops broadcast b over a viewed as (P, C, Q): out[p,c,q] = a[p,c,q] op b[c].
 * Same shape: P = 1, C = n, Q = 1. Bias over rows of (N, F): P = N, C = F, Q = 1.
 * Per-channel over (B, C, H, W): P = B, C = C, Q = H*W. Scalar b: P = n, C = 1, Q = 1. */
typedef enum { ML_BIN_ADD, ML_BIN_SUB, ML_BIN_MUL, ML_BIN_DIV } ml_bin_op;
ML_API void ml_binary(ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C, int64_t Q);
ML_API void ml_binary_ref(ml_bin_op op, float *out, const float *a, const float *b, int64_t P, int64_t C,
                          int64_t Q);

typedef enum {
  ML_UN_RELU, ML_UN_EXP, ML_UN_LOG, ML_UN_SIGMOID, ML_UN_TANH, ML_UN_SOFTPLUS, ML_UN_RSQRT, ML_UN_SQRT,
  ML_UN_SQUARE, ML_UN_ABS
} ml_un_op;
ML_API void ml_unary(ml_un_op op, float *out, const float *x, int64_t n);
ML_API void ml_unary_ref(ml_un_op op, float *out, const float *x, int64_t n);
/* out = a * x + b elementwise (a, b scalars). */
ML_API void ml_affine_kernel(float *out, const float *x, int64_t n, float a, float b);
/* out = x > 0 ? g : 0 (ReLU's backward; also its own adjoint in g). */
ML_API void ml_relu_mask_kernel(float *out, const float *g, const float *x, int64_t n);

/* ---- LSTM cell ----
 * z (n, 4H): gate pre-activations in bands i, f, g, o; c (n, H) the previous cell state.
 * c2 = sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c2); acts (n, 4H) receives the
 * activated gates for the backward; tc (n, H; may be NULL) receives tanh(c2), which the backward
 * then takes instead of recomputing it (tc NULL there: computed from c2). Backward: dz (n, 4H)
 * and dc (n, H) from dh and dc2 (pass zeros for an absent gradient; dc may be dc2: each element is
 * read before it is written). */
ML_API void ml_lstm_cell_forward(float *h, float *c2, float *tc, float *acts, const float *z, const float *c,
                                 int64_t n, int64_t H);
ML_API void ml_lstm_cell_backward(float *dz, float *dc, const float *dh, const float *dc2, const float *acts,
                                  const float *c, const float *c2, const float *tc, int64_t n, int64_t H);
ML_API void ml_lstm_cell_forward_ref(float *h, float *c2, float *acts, const float *z, const float *c, int64_t n,
                                     int64_t H);
ML_API void ml_lstm_cell_backward_ref(float *dz, float *dc, const float *dh, const float *dc2, const float *acts,
                                      const float *c, const float *c2, int64_t n, int64_t H);

/* ---- reductions over the (P, C, Q) view ----
 * out[c] = sum over p, q of x[p,c,q]. Sum of all: P = 1, C = 1, Q = n. Row sums of (N, F):
 * P = 1, C = N, Q = F. Column sums: P = N, C = F, Q = 1. Summation is in double per output
 * so results do not depend on blocking. */
ML_API void ml_reduce_sum(float *out, const float *x, int64_t P, int64_t C, int64_t Q);
ML_API void ml_reduce_sum_ref(float *out, const float *x, int64_t P, int64_t C, int64_t Q);
/* out[p,c,q] = x[c] (the adjoint of the reduction). */
ML_API void ml_expand(float *out, const float *x, int64_t P, int64_t C, int64_t Q);

/* ---- rows ---- */
/* out (rows, cols) = log_softmax of each row of x, max-subtracted. */
ML_API void ml_log_softmax_kernel(float *out, const float *x, int64_t rows, int64_t cols);
ML_API void ml_log_softmax_kernel_ref(float *out, const float *x, int64_t rows, int64_t cols);
/* out[i] = x[i, idx[i]] for x (rows, cols). */
ML_API void ml_pick_kernel(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols);
/* out (rows, cols) = 0, then out[i, idx[i]] = g[i]. */
ML_API void ml_pick_scatter(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols);

/* ---- embeddings ---- */
/* out (n, D) = table[idx[i]] for table (V, D). */
ML_API void ml_embedding_gather(float *out, const float *table, const int32_t *idx, int64_t n, int64_t D);
/* grad (V, D) += g[i] at row idx[i] (rows not named are left as they are). */
ML_API void ml_embedding_scatter_add(float *grad, const float *g, const int32_t *idx, int64_t n, int64_t D);

#endif
