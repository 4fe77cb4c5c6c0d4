/* tensor: float32, contiguous, row-major (PyTorch's order: NCHW), up to 4-D.
 * A tensor does not own its data: it points into an arena or a parameter block. */
#ifndef METALEARN_TENSOR_H
#define METALEARN_TENSOR_H

#include "metalearn/base.h"

#define ML_MAX_DIMS 4

typedef struct {
  float *data;
  int64_t shape[ML_MAX_DIMS]; /* unused trailing dims are 1 */
  int ndim;
  int64_t numel;
} ml_tensor;

/* Shape helpers. ml_shape(n, d0, d1, ...) fills an ml_tensor header without data. */
ML_API ml_tensor ml_shape(int ndim, const int64_t *dims);
ML_API ml_tensor ml_shape1(int64_t d0);
ML_API ml_tensor ml_shape2(int64_t d0, int64_t d1);
ML_API ml_tensor ml_shape3(int64_t d0, int64_t d1, int64_t d2);
ML_API ml_tensor ml_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Allocates data for a tensor of that shape from the arena (uninitialized / zeroed).
 * Returns a tensor with data == NULL when out of memory (ml_last_error is set).
 * Valid until the arena is reset. */
ML_API ml_tensor ml_tensor_new(ml_arena *a, int ndim, const int64_t *dims);
ML_API ml_tensor ml_tensor_zeros(ml_arena *a, int ndim, const int64_t *dims);
ML_API ml_tensor ml_tensor_like(ml_arena *a, const ml_tensor *t); /* same shape, uninitialized */
/* A view of the same data with another shape of equal numel; ML_ERR_SHAPE otherwise. */
ML_API ml_status ml_tensor_reshape(const ml_tensor *t, int ndim, const int64_t *dims, ml_tensor *out);

ML_API bool ml_tensor_same_shape(const ml_tensor *a, const ml_tensor *b);
ML_API void ml_tensor_fill(ml_tensor *t, float v);
ML_API void ml_tensor_copy(ml_tensor *dst, const ml_tensor *src); /* equal numel */
ML_API void ml_tensor_randn(ml_tensor *t, ml_rng *r, float std);
ML_API void ml_tensor_rand_uniform(ml_tensor *t, ml_rng *r, float lo, float hi);
/* "(80, 64, 28, 28)" into buf; returns buf. */
ML_API const char *ml_tensor_shape_str(const ml_tensor *t, char *buf, size_t n);

#endif
