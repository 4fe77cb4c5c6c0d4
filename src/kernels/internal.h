/* kernels/internal.h: what the kernel files share and the tests may poke: the effective SIMD
 * level (detected, capped by ML_SIMD, optionally forced lower by a test) and the GEMM
 * micro-kernel entry points. Not installed; names use the ml__ prefix. */
#ifndef METALEARN_KERNELS_INTERNAL_H
#define METALEARN_KERNELS_INTERNAL_H

#include "metalearn/kernels.h"

/* The level the dispatching kernels use now: min(detected, ML_SIMD, forced). */
ml_simd_level ml__simd_level(void);
/* Forces the level used by dispatching kernels (clamped to what the CPU supports);
 * -1 restores the default. Process-wide, for tests and benchmarks only. */
void ml__simd_force(int level);
/* Whether ml_gemm currently routes to the built-in GEMM. */
bool ml__gemm_builtin_forced(void);
/* Whether this CPU runs 512-bit FMAs at full width (Intel with AVX-512; AMD from Zen 5), not
 * split into two 256-bit halves (Zen 4). From the vendor and family: deterministic. */
bool ml__cpu_full_width_512(void);
/* Whether the built-in GEMM should take BLAS's place: BLAS's kernel (its core name) is not one of
 * its AVX-512 ones while this process runs AVX-512 at full width. Pure. */
bool ml__gemm_prefer_builtin(const char *blas_core, ml_simd_level level, bool full_width_512);
/* The cached decision for this process (ML_GEMM=blas or builtin pins it). */
bool ml__gemm_auto_builtin(void);
/* Whether ml_gemm also keeps the narrow products (M or N < 16) that it otherwise leaves to BLAS:
 * when BLAS runs SSE kernels (OpenBLAS's Prescott fallback on a CPU it does not recognize) */
bool ml__gemm_narrow_prefer_builtin(const char *blas_core);
bool ml__gemm_narrow_builtin(void);

/* The built-in GEMM with the micro-kernel of a given level (must be <= ml_cpu_simd()). */
/* The prepacked-B GEMM at a given SIMD level (the tests call each level). */
int64_t ml__gemm_packed_b_floats(ml_simd_level level, int64_t N, int64_t K);
void ml__gemm_pack_b(ml_simd_level level, bool tb, int64_t N, int64_t K, const float *B, int64_t ldb, float *packed);
void ml__gemm_prepacked(ml_simd_level level, bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *packed, float beta, float *C, int64_t ldc);
void ml__gemm_level(ml_simd_level level, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc);

/* Stride-1 convolution straight from padded images (conv_direct.c): whether it takes a shape
 * (AVX-512 on, output rows wide enough), the scratch it needs, and the kernels. */
bool ml__conv_direct_forward_ok(const ml_conv_shape *s);
bool ml__conv_direct_backward_data_ok(const ml_conv_shape *s);
size_t ml__conv_direct_scratch_floats(const ml_conv_shape *s, int workers);
/* which forward / backward-data kernel: 0 by shape, 1 row-vector, 2 channel-vector, 3 Winograd
 * wherever it takes the shape, by shape elsewhere (tests, bench/kernels) */
void ml__conv_direct_kernel(int which);
int ml__conv_direct_which(void);
bool ml__conv_direct_on(void); /* ml_conv_use_direct's setting */
/* dst (cols, ldd) = src (rows, lds) transposed in 16 x 16 register blocks, width floats per dst
 * row, zeros past rows (AVX-512) */
void ml__transpose16(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols,
                     int64_t width);
/* x (C, H, W) into a zero-bordered channel-minor image (ldc >= C rounded up to 16 floats per
 * pixel, pixel (y, x) at ((y + ph) * Wp + x + pw) * ldc; the border is the caller's) */
void ml__to_padded_hwc(float *dst, int64_t ldc, int64_t Wp, int64_t ph, int64_t pw, const float *x, int64_t C,
                       int64_t H, int64_t W);
/* 3x3 stride-1 convolution by Winograd F(4x4, 3x3) or F(2x2, 3x3) (conv_winograd.c), same
 * contract; ml__conv_winograd_tile(m): 0 the tile by shape, 2 or 4 that one (tests, bench) */
void ml__conv_winograd_tile(int m);
bool ml__conv_winograd_on(void); /* ml_conv_use_winograd's setting */
bool ml__conv_winograd_forward_ok(const ml_conv_shape *s);
bool ml__conv_winograd_backward_data_ok(const ml_conv_shape *s);
size_t ml__conv_winograd_scratch_floats(const ml_conv_shape *s, int workers);
void ml__conv_winograd_forward(const ml_conv_shape *s, float *out, const float *in, const float *w,
                               const float *bias, float *scratch);
void ml__conv_winograd_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                                     float *scratch);
/* The weight gradient of images [first, last) for input channels [c0, c1) into those channels of
 * dw (OC, C, 3, 3), overwritten, and (db not NULL) the bias gradient into db, with work floats of
 * ml__conv_winograd_weight_work_floats (per worker) */
bool ml__conv_winograd_weight_ok(const ml_conv_shape *s);
size_t ml__conv_winograd_weight_work_floats(const ml_conv_shape *s);
void ml__conv_winograd_weight_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                    int64_t last, int64_t c0, int64_t c1, float *work, float *dw, float *db);
/* The input and weight gradients together, one worker (ml_conv2d_backward): U of the flipped
 * filters into work, then each fixed image group; work holds
 * ml__conv_winograd_backward_work_floats (a multiple of 16: whatever follows stays 64-byte aligned) */
bool ml__conv_winograd_backward_ok(const ml_conv_shape *s);
size_t ml__conv_winograd_backward_work_floats(const ml_conv_shape *s);
void ml__conv_winograd_backward_filters(const ml_conv_shape *s, const float *w, float *work);
void ml__conv_winograd_backward_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                      int64_t last, float *work, float *din, float *dw, float *db);
void ml__conv_direct_forward(const ml_conv_shape *s, float *out, const float *in, const float *w, const float *bias,
                             float *scratch);
void ml__conv_direct_backward_data(const ml_conv_shape *s, float *din, const float *dout, const float *w,
                                   float *scratch);
/* The weight gradient of images [first, last) into dst (overwritten; only the (channel, tap)
 * rows [row0, row1), row0 a multiple of ML__DIRECT_WEIGHT_ROWS) and, unless db is NULL, the bias
 * gradient into db, with work floats of ml__conv_direct_weight_work_floats (per worker). */
#define ML__DIRECT_WEIGHT_ROWS 6
bool ml__conv_direct_backward_weight_ok(const ml_conv_shape *s);
/* whether the rows may be split into bands (row0 > 0 or row1 < C*KH*KW); otherwise the kernel
 * takes every row */
bool ml__conv_direct_weight_bands_ok(const ml_conv_shape *s);
size_t ml__conv_direct_weight_work_floats(const ml_conv_shape *s);
void ml__conv_direct_weight_group(const ml_conv_shape *s, const float *in, const float *dout, int64_t first,
                                  int64_t last, int64_t row0, int64_t row1, float *work, float *dst, float *db);

/* Batch-norm + max-pool (+ ReLU) on one (H, W) plane (conv.c), for kernels that run a plane at
 * a time: normalize + pool (arg may be NULL); the backward's sums over the windows (added to
 * *sdy and *sdyx); the backward's dense write. rout: the forward's output when it applied ReLU (dout
 * counts only where it is > 0), else NULL. Same bits as the batched kernels. */
void ml__bnp_forward_plane(const float *x, float *out, uint8_t *arg, int64_t H, int64_t W, float mf, float scale,
                           float shift, bool relu);
void ml__bnp_backward_sums(const float *x, const float *go, const float *rout, const uint8_t *arg, int64_t H,
                           int64_t W, float mf, double *sdy, double *sdyx);
void ml__bnp_backward_plane(float *dx, const float *x, const float *go, const float *rout, const uint8_t *arg,
                            int64_t H, int64_t W, float mf, float fa, float fb, float fc);
/* ml__bnp_forward_plane also writing zp[k] = x at window k's argmax (arg not NULL) */
void ml__bnp_forward_plane_z(const float *x, float *out, uint8_t *arg, float *zp, int64_t H, int64_t W, float mf,
                             float scale, float shift, bool relu);
/* The pool's gather on one plane: out[k] = x at window k's argmax. */
void ml__pool_gather_plane(float *out, const float *x, const uint8_t *arg, int64_t H, int64_t W);
/* ml__bnp_backward_sums from the n values at the windows' argmaxes (xp) instead of the plane */
void ml__bnp_pooled_sums(const float *xp, const float *go, const float *rout, int64_t n, float mf, double *sdy,
                         double *sdyx);
/* ml_conv_bn_pool_forward / _backward keeping zpool (B,OC,OH/2,OW/2), the convolution output at
 * each window's argmax, when ml__conv_bn_pool_keeps_z(s) (else NULL): the backward's sums then
 * read it instead of recomputing the convolution. Same values; sums in another order. */
bool ml__conv_bn_pool_keeps_z(const ml_conv_shape *s);
void ml__conv_bn_pool_forward_z(const ml_conv_shape *s, float *out, uint8_t *arg, float *zpool, float *mean,
                                float *invstd, const float *in, const float *w, const float *bias, const float *gamma,
                                const float *beta, float eps, bool relu, float *scratch);
void ml__conv_bn_pool_backward_z(const ml_conv_shape *s, float *din, float *dw, float *db, float *dgamma,
                                 float *dbeta, const float *dout, const float *relu_out, const uint8_t *arg,
                                 const float *zpool, const float *in, const float *w, const float *bias,
                                 const float *mean, const float *invstd, const float *gamma, float *scratch);
/* A row's sum, and its sum of squares about m (batch-norm statistics). */
double ml__sum_row(const float *x, int64_t n);
double ml__sumsq_row(const float *x, int64_t n, double m);

/* Runs fn(i, worker, ctx) for i in [0, n): on the lent pool if any, else in order on this
 * thread (worker 0). Items must write disjoint memory; worker indexes per-worker scratch. */
void ml__kernels_run(int64_t n, ml_parallel_fn fn, void *ctx);

#endif
