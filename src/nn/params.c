/* Parameter lists: named tensors laid out in one contiguous, 64-byte aligned block (and a
 * gradient block of the same layout). Each tensor's offset is rounded up to 16 floats so every
 * tensor starts on a 64-byte boundary; the padding stays zero. The blocks are persistent (they
 * outlive any arena), so they come from posix_memalign and go back with free. */
#include <stdlib.h>
#include <string.h>

#include "metalearn/params.h"

#define ALIGN_FLOATS 16 /* 64 bytes */

static int64_t round_up(int64_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static float *alloc_block(int64_t numel) {
  size_t bytes;
  if (numel < 0 || !ml_mul_size((size_t)numel, sizeof(float), &bytes)) return NULL;
  if (bytes == 0) bytes = 64;
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes) != 0) return NULL;
  memset(p, 0, bytes);
  return p;
}

ml_params *ml_params_new(void) {
  ml_params *p = calloc(1, sizeof *p);
  if (!p) ml_error(ML_ERR_NOMEM, "params: out of memory");
  return p;
}

ml_status ml_params_add(ml_params *p, const char *name, int ndim, const int64_t *shape) {
  if (!p || !name) return ml_error(ML_ERR_ARG, "params_add: NULL argument");
  if (p->finalized) return ml_error(ML_ERR_ARG, "params_add '%s': list already finalized", name);
  size_t len = strlen(name);
  if (len == 0) return ml_error(ML_ERR_ARG, "params_add: empty name");
  if (len >= ML_PARAM_NAME_MAX)
    return ml_error(ML_ERR_ARG, "params_add '%.40s...': name longer than %d bytes", name, ML_PARAM_NAME_MAX - 1);
  if (ndim < 0 || ndim > ML_MAX_DIMS || (ndim > 0 && !shape))
    return ml_error(ML_ERR_SHAPE, "params_add '%s': %d dims (at most %d)", name, ndim, ML_MAX_DIMS);
  if (ml_params_find(p, name) >= 0) return ml_error(ML_ERR_ARG, "params_add '%s': duplicate name", name);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || __builtin_mul_overflow(numel, shape[i], &numel))
      return ml_error(ML_ERR_SHAPE, "params_add '%s': invalid shape", name);
  }
  int64_t offset = 0, end;
  if (p->count > 0) {
    const ml_param *last = &p->items[p->count - 1];
    offset = last->offset + last->value.numel;
  }
  offset = round_up(offset);
  /* keep the block's byte size representable (and far from overflow) */
  if (__builtin_add_overflow(offset, numel, &end) || end > INT64_MAX / 8)
    return ml_error(ML_ERR_NOMEM, "params_add '%s': block too large", name);
  if (p->count == p->cap) {
    int64_t cap = p->cap ? 2 * p->cap : 16;
    ml_param *items = realloc(p->items, (size_t)cap * sizeof *items);
    if (!items) return ml_error(ML_ERR_NOMEM, "params_add '%s': out of memory", name);
    p->items = items;
    p->cap = cap;
  }
  ml_param *it = &p->items[p->count++];
  memset(it, 0, sizeof *it);
  memcpy(it->name, name, len + 1);
  it->value = ml_shape(ndim, shape);
  it->grad = it->value;
  it->offset = offset;
  p->numel = round_up(end);
  return ML_OK;
}

ml_status ml_params_finalize(ml_params *p) {
  if (!p) return ml_error(ML_ERR_ARG, "params_finalize: NULL list");
  if (p->finalized) return ml_error(ML_ERR_ARG, "params_finalize: already finalized");
  float *data = alloc_block(p->numel), *grad = alloc_block(p->numel);
  if (!data || !grad) {
    free(data);
    free(grad);
    return ml_error(ML_ERR_NOMEM, "params_finalize: out of memory (%lld floats)", (long long)p->numel);
  }
  p->data = data;
  p->grad = grad;
  for (int64_t i = 0; i < p->count; i++) {
    p->items[i].value.data = data + p->items[i].offset;
    p->items[i].grad.data = grad + p->items[i].offset;
  }
  p->finalized = true;
  return ML_OK;
}

void ml_params_free(ml_params *p) {
  if (!p) return;
  free(p->data);
  free(p->grad);
  free(p->items);
  free(p);
}

int64_t ml_params_find(const ml_params *p, const char *name) {
  if (!p || !name) return -1;
  for (int64_t i = 0; i < p->count; i++)
    if (!strcmp(p->items[i].name, name)) return i;
  return -1;
}

ml_params *ml_params_clone_layout(const ml_params *p) {
  if (!p) return NULL;
  ml_params *c = ml_params_new();
  if (!c) return NULL;
  for (int64_t i = 0; i < p->count; i++) {
    const ml_param *it = &p->items[i];
    if (ml_params_add(c, it->name, it->value.ndim, it->value.shape) != ML_OK) {
      ml_params_free(c);
      return NULL;
    }
  }
  if (p->finalized && ml_params_finalize(c) != ML_OK) {
    ml_params_free(c);
    return NULL;
  }
  return c;
}

void ml_params_copy_data(ml_params *dst, const ml_params *src) {
  if (!dst || !src || !dst->data || !src->data) return;
  int64_t n = dst->numel < src->numel ? dst->numel : src->numel;
  memcpy(dst->data, src->data, (size_t)n * sizeof(float));
}

void ml_params_zero_grad(ml_params *p) {
  if (p && p->grad) memset(p->grad, 0, (size_t)p->numel * sizeof(float));
}

int64_t ml_params_count_scalars(const ml_params *p) {
  int64_t n = 0;
  for (int64_t i = 0; p && i < p->count; i++) n += p->items[i].value.numel;
  return n;
}
