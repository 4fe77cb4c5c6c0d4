/* Tensor headers and arena-backed storage. */
#include <stdio.h>
#include <string.h>

#include "metalearn/tensor.h"

ml_tensor ml_shape(int ndim, const int64_t *dims) {
  ml_tensor t;
  memset(&t, 0, sizeof t);
  t.ndim = ndim;
  t.numel = 1;
  for (int i = 0; i < ML_MAX_DIMS; i++) {
    t.shape[i] = i < ndim ? dims[i] : 1;
    t.numel *= t.shape[i];
  }
  return t;
}
ml_tensor ml_shape1(int64_t d0) { return ml_shape(1, (int64_t[]){d0}); }
ml_tensor ml_shape2(int64_t d0, int64_t d1) { return ml_shape(2, (int64_t[]){d0, d1}); }
ml_tensor ml_shape3(int64_t d0, int64_t d1, int64_t d2) { return ml_shape(3, (int64_t[]){d0, d1, d2}); }
ml_tensor ml_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  return ml_shape(4, (int64_t[]){d0, d1, d2, d3});
}

ml_tensor ml_tensor_new(ml_arena *a, int ndim, const int64_t *dims) {
  ml_tensor t = ml_shape(ndim, dims);
  size_t bytes;
  if (t.numel < 0 || !ml_mul_size((size_t)t.numel, sizeof(float), &bytes)) {
    ml_error(ML_ERR_NOMEM, "tensor: size overflows");
    t.data = NULL;
    return t;
  }
  t.data = ml_arena_alloc(a, bytes);
  return t;
}

ml_tensor ml_tensor_zeros(ml_arena *a, int ndim, const int64_t *dims) {
  ml_tensor t = ml_tensor_new(a, ndim, dims);
  if (t.data) memset(t.data, 0, (size_t)t.numel * sizeof(float));
  return t;
}

ml_tensor ml_tensor_like(ml_arena *a, const ml_tensor *t) { return ml_tensor_new(a, t->ndim, t->shape); }

ml_status ml_tensor_reshape(const ml_tensor *t, int ndim, const int64_t *dims, ml_tensor *out) {
  ml_tensor r = ml_shape(ndim, dims);
  if (r.numel != t->numel) {
    char b1[64], b2[64];
    return ml_error(ML_ERR_SHAPE, "reshape %s -> %s: sizes differ", ml_tensor_shape_str(t, b1, 64),
                    ml_tensor_shape_str(&r, b2, 64));
  }
  r.data = t->data;
  *out = r;
  return ML_OK;
}

bool ml_tensor_same_shape(const ml_tensor *a, const ml_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

void ml_tensor_fill(ml_tensor *t, float v) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = v;
}

void ml_tensor_copy(ml_tensor *dst, const ml_tensor *src) {
  memcpy(dst->data, src->data, (size_t)src->numel * sizeof(float));
}

void ml_tensor_randn(ml_tensor *t, ml_rng *r, float std) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = std * ml_rng_normal(r);
}

void ml_tensor_rand_uniform(ml_tensor *t, ml_rng *r, float lo, float hi) {
  for (int64_t i = 0; i < t->numel; i++) t->data[i] = lo + (hi - lo) * ml_rng_uniform(r);
}

const char *ml_tensor_shape_str(const ml_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "(");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, ")");
  return buf;
}
