/* Class splits: which dataset classes a sampler may draw, and whether each also appears rotated
 * by 90, 180 and 270 degrees as three more classes (the MAML / Santoro et al. augmentation). */
#include <stdlib.h>
#include <string.h>

#include "metalearn/tasks.h"

void ml_split_free(ml_split *s) {
  if (!s) return;
  free(s->base);
  memset(s, 0, sizeof *s);
}

ml_status ml_split_from_classes(const ml_dataset *ds, const int64_t *classes, int64_t n, int rotations, ml_split *out) {
  if (!out) return ml_error(ML_ERR_ARG, "split: NULL output");
  memset(out, 0, sizeof *out);
  if (!ds || (!classes && n)) return ml_error(ML_ERR_ARG, "split: NULL dataset or class list");
  if (n <= 0) return ml_error(ML_ERR_ARG, "split: empty class list");
  if (rotations != 1 && rotations != 4) return ml_error(ML_ERR_ARG, "split: rotations must be 1 or 4, not %d", rotations);
  if (rotations == 4 && ds->height != ds->width)
    return ml_error(ML_ERR_ARG, "split: rotations need square images, not %lldx%lld", (long long)ds->height,
                    (long long)ds->width);
  int64_t min_size = INT64_MAX;
  for (int64_t i = 0; i < n; i++) {
    if (classes[i] < 0 || classes[i] >= ds->n_classes)
      return ml_error(ML_ERR_ARG, "split: class %lld out of range [0, %lld)", (long long)classes[i],
                      (long long)ds->n_classes);
    int64_t sz = ml_dataset_class_size(ds, classes[i]);
    if (sz < min_size) min_size = sz;
  }
  out->base = malloc(sizeof(int64_t) * (size_t)n);
  if (!out->base) return ml_error(ML_ERR_NOMEM, "split: out of memory");
  memcpy(out->base, classes, sizeof(int64_t) * (size_t)n);
  out->n_base = n;
  out->rotations = rotations;
  out->n_classes = n * rotations;
  out->min_class_size = min_size;
  return ML_OK;
}

ml_status ml_split_range(const ml_dataset *ds, int64_t begin, int64_t end, int rotations, ml_split *out) {
  if (out) memset(out, 0, sizeof *out);
  if (!ds || begin < 0 || end > ds->n_classes || begin >= end)
    return ml_error(ML_ERR_ARG, "split: class range [%lld, %lld) invalid for %lld classes", (long long)begin,
                    (long long)end, ds ? (long long)ds->n_classes : 0LL);
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)(end - begin));
  if (!idx) return ml_error(ML_ERR_NOMEM, "split: out of memory");
  for (int64_t i = begin; i < end; i++) idx[i - begin] = i;
  ml_status st = ml_split_from_classes(ds, idx, end - begin, rotations, out);
  free(idx);
  return st;
}

ml_status ml_split_from_groups(const ml_dataset *ds, const char *const *names, int64_t n, int rotations, ml_split *out) {
  if (out) memset(out, 0, sizeof *out);
  if (!ds || !names || n <= 0) return ml_error(ML_ERR_ARG, "split: no group names given");
  bool *want = calloc((size_t)ds->n_groups + 1, sizeof(bool));
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)(ds->n_classes + 1));
  ml_status st = ML_OK;
  if (!want || !idx) {
    st = ml_error(ML_ERR_NOMEM, "split: out of memory");
    goto done;
  }
  for (int64_t i = 0; i < n; i++) {
    bool found = false;
    for (int64_t g = 0; g < ds->n_groups; g++)
      if (names[i] && !strcmp(names[i], ds->group_names[g])) want[g] = found = true;
    if (!found) {
      st = ml_error(ML_ERR_NOTFOUND, "split: no group (alphabet) named '%s'", names[i] ? names[i] : "(null)");
      goto done;
    }
  }
  int64_t m = 0;
  for (int64_t c = 0; c < ds->n_classes; c++)
    if (want[ds->class_group[c]]) idx[m++] = c;
  st = ml_split_from_classes(ds, idx, m, rotations, out);
done:
  free(want);
  free(idx);
  return st;
}

ml_status ml_split_maml_omniglot(const ml_dataset *ds, int train_rotations, ml_split *train, ml_split *test) {
  if (train) memset(train, 0, sizeof *train);
  if (test) memset(test, 0, sizeof *test);
  if (!ds || !train || !test) return ml_error(ML_ERR_ARG, "maml split: NULL argument");
  if (ds->n_classes != 1623)
    return ml_error(ML_ERR_ARG, "maml split: needs the 1623-class Omniglot set (background + evaluation), got %lld classes",
                    (long long)ds->n_classes);
  ml_status st = ml_split_range(ds, 0, 1200, train_rotations, train);
  if (!st) st = ml_split_range(ds, 1200, 1623, 1, test);
  if (st) ml_split_free(train);
  return st;
}
