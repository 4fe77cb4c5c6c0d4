/* params: a named list of parameter tensors stored in ONE contiguous block, with a gradient block
 * of the same layout. One loop updates them, one call reduces them across workers, one write
 * saves them. Each tensor starts on a 64-byte boundary; the padding between them stays zero. */
#ifndef METALEARN_PARAMS_H
#define METALEARN_PARAMS_H

#include "metalearn/tensor.h"

#define ML_PARAM_NAME_MAX 96

typedef struct {
  char name[ML_PARAM_NAME_MAX]; /* "conv1.weight" */
  ml_tensor value;              /* view into params->data */
  ml_tensor grad;               /* view into params->grad */
  int64_t offset;               /* in floats, from the start of the block */
} ml_param;

typedef struct {
  int64_t count;
  ml_param *items;
  float *data;   /* numel floats, 64-byte aligned */
  float *grad;   /* numel floats, same layout */
  int64_t numel; /* block length including alignment padding */
  int64_t cap;
  bool finalized;
} ml_params;

/* Building: add every tensor's name and shape, then finalize to allocate the blocks (zeroed).
 * The caller frees with ml_params_free. */
ML_API ml_params *ml_params_new(void);
ML_API ml_status ml_params_add(ml_params *p, const char *name, int ndim, const int64_t *shape);
ML_API ml_status ml_params_finalize(ml_params *p);
ML_API void ml_params_free(ml_params *p);
/* Index of the named tensor, or -1. */
ML_API int64_t ml_params_find(const ml_params *p, const char *name);
/* A new list with the same names and shapes (zeroed data), e.g. Meta-SGD's per-parameter rates. */
ML_API ml_params *ml_params_clone_layout(const ml_params *p);
ML_API void ml_params_copy_data(ml_params *dst, const ml_params *src); /* same layout */
ML_API void ml_params_zero_grad(ml_params *p);
/* Number of real parameters (without padding). */
ML_API int64_t ml_params_count_scalars(const ml_params *p);

#endif
