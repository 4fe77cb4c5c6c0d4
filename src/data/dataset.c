/* The in-memory dataset: allocation, names, accessors, concatenation, and the two pixel
 * operations everything else uses (area-averaging resize, 90-degree rotation). */
#include <stdlib.h>
#include <string.h>

#include "data/internal.h"

void ml_dataset_free(ml_dataset *ds) {
  if (!ds) return;
  free(ds->pixels);
  free(ds->class_offset);
  free(ds->class_group);
  free(ds->class_names);
  free(ds->group_names);
  memset(ds, 0, sizeof *ds);
}

char **ml__names_new(const char *const *names, int64_t n) {
  size_t total = 0, ptrs;
  if (n < 0 || !ml_mul_size((size_t)n, sizeof(char *), &ptrs)) return NULL;
  for (int64_t i = 0; i < n; i++)
    if (!ml_add_size(total, strlen(names[i]) + 1, &total)) return NULL;
  if (!ml_add_size(total, ptrs, &total)) return NULL;
  char **out = malloc(total ? total : 1);
  if (!out) return NULL;
  char *s = (char *)(out + n);
  for (int64_t i = 0; i < n; i++) {
    size_t l = strlen(names[i]) + 1;
    memcpy(s, names[i], l);
    out[i] = s;
    s += l;
  }
  return out;
}

char **ml__names_from_blob(const char *blob, size_t blob_len, int64_t n) {
  size_t ptrs, total;
  if (n < 0 || (size_t)n > blob_len || !ml_mul_size((size_t)n, sizeof(char *), &ptrs) ||
      !ml_add_size(ptrs, blob_len, &total))
    return NULL;
  /* exactly n NUL-terminated strings, nothing after the last */
  int64_t count = 0;
  for (size_t i = 0; i < blob_len; i++) count += blob[i] == 0;
  if (count != n || (blob_len && blob[blob_len - 1] != 0)) return NULL;
  char **out = malloc(total ? total : 1);
  if (!out) return NULL;
  char *s = (char *)(out + n);
  if (blob_len) memcpy(s, blob, blob_len);
  for (int64_t i = 0; i < n; i++) {
    out[i] = s;
    s += strlen(s) + 1;
  }
  return out;
}

ml_status ml__dataset_alloc(ml_dataset *ds, int64_t n_images, int64_t n_classes, int64_t n_groups,
                            int64_t c, int64_t h, int64_t w) {
  memset(ds, 0, sizeof *ds);
  size_t per, total;
  if (n_images < 0 || n_classes < 0 || n_groups < 0 || c <= 0 || h <= 0 || w <= 0 ||
      n_classes > INT32_MAX || n_groups > INT32_MAX ||
      !ml_mul_size((size_t)c, (size_t)h, &per) || !ml_mul_size(per, (size_t)w, &per) ||
      !ml_mul_size(per, (size_t)n_images, &total) || total > ((size_t)1 << 40))
    return ml_error(ML_ERR_NOMEM, "dataset: %lld images of %lldx%lldx%lld is too large",
                    (long long)n_images, (long long)c, (long long)h, (long long)w);
  ds->pixels = malloc(total ? total : 1);
  ds->class_offset = calloc((size_t)n_classes + 1, sizeof(int64_t));
  ds->class_group = calloc((size_t)n_classes + 1, sizeof(int32_t));
  if (!ds->pixels || !ds->class_offset || !ds->class_group) {
    ml_dataset_free(ds);
    return ml_error(ML_ERR_NOMEM, "dataset: out of memory for %zu bytes of pixels", total);
  }
  ds->n_images = n_images;
  ds->n_classes = n_classes;
  ds->n_groups = n_groups;
  ds->channels = c;
  ds->height = h;
  ds->width = w;
  return ML_OK;
}

int64_t ml_dataset_class_size(const ml_dataset *ds, int64_t c) {
  if (!ds || c < 0 || c >= ds->n_classes) return 0;
  return ds->class_offset[c + 1] - ds->class_offset[c];
}

const uint8_t *ml_dataset_image(const ml_dataset *ds, int64_t c, int64_t k) {
  if (k < 0 || k >= ml_dataset_class_size(ds, c)) return NULL;
  return ds->pixels + (size_t)(ds->class_offset[c] + k) * (size_t)(ds->channels * ds->height * ds->width);
}

int64_t ml_dataset_find_class(const ml_dataset *ds, const char *name) {
  for (int64_t c = 0; ds && name && c < ds->n_classes; c++)
    if (!strcmp(ds->class_names[c], name)) return c;
  return -1;
}

ml_status ml_dataset_concat(const ml_dataset *a, const ml_dataset *b, ml_dataset *out) {
  if (!a || !b || !out) return ml_error(ML_ERR_ARG, "dataset concat: NULL argument");
  if (a->channels != b->channels || a->height != b->height || a->width != b->width)
    return ml_error(ML_ERR_SHAPE, "dataset concat: image shapes differ (%lldx%lldx%lld vs %lldx%lldx%lld)",
                    (long long)a->channels, (long long)a->height, (long long)a->width,
                    (long long)b->channels, (long long)b->height, (long long)b->width);
  ml_dataset d;
  ml_status st = ml__dataset_alloc(&d, a->n_images + b->n_images, a->n_classes + b->n_classes,
                                   a->n_groups + b->n_groups, a->channels, a->height, a->width);
  if (st) return st;
  size_t per = (size_t)(a->channels * a->height * a->width);
  memcpy(d.pixels, a->pixels, per * (size_t)a->n_images);
  memcpy(d.pixels + per * (size_t)a->n_images, b->pixels, per * (size_t)b->n_images);
  const char **cn = malloc(sizeof(char *) * (size_t)(d.n_classes + d.n_groups + 1));
  if (!cn) {
    ml_dataset_free(&d);
    return ml_error(ML_ERR_NOMEM, "dataset concat: out of memory");
  }
  for (int64_t c = 0; c <= a->n_classes; c++) d.class_offset[c] = a->class_offset[c];
  for (int64_t c = 0; c < a->n_classes; c++) {
    d.class_group[c] = a->class_group[c];
    cn[c] = a->class_names[c];
  }
  for (int64_t c = 0; c < b->n_classes; c++) {
    d.class_offset[a->n_classes + c + 1] = a->n_images + b->class_offset[c + 1];
    d.class_group[a->n_classes + c] = (int32_t)(a->n_groups + b->class_group[c]);
    cn[a->n_classes + c] = b->class_names[c];
  }
  d.class_names = ml__names_new(cn, d.n_classes);
  for (int64_t g = 0; g < a->n_groups; g++) cn[g] = a->group_names[g];
  for (int64_t g = 0; g < b->n_groups; g++) cn[a->n_groups + g] = b->group_names[g];
  d.group_names = ml__names_new(cn, d.n_groups);
  free(cn);
  if (!d.class_names || !d.group_names) {
    ml_dataset_free(&d);
    return ml_error(ML_ERR_NOMEM, "dataset concat: out of memory");
  }
  *out = d;
  return ML_OK;
}

/* Weights of a 1-D box filter: output i covers source [i*s, (i+1)*s) with s = n_src / n_dst;
 * each source pixel contributes the length of its overlap. Works for up- and down-scaling. */
typedef struct {
  int64_t first, count;
} span;

static void box_weights(int64_t n_src, int64_t n_dst, span *spans, double *w, int64_t wcap) {
  double scale = (double)n_src / (double)n_dst;
  int64_t at = 0;
  for (int64_t i = 0; i < n_dst; i++) {
    double lo = i * scale, hi = (i + 1) * scale;
    int64_t a = (int64_t)lo, b = (int64_t)hi;
    if (b >= n_src) b = n_src - 1;
    spans[i].first = a;
    spans[i].count = 0;
    for (int64_t j = a; j <= b && at < wcap; j++) {
      double l = j > lo ? (double)j : lo, r = (double)(j + 1) < hi ? (double)(j + 1) : hi;
      if (r <= l) continue;
      if (spans[i].count == 0) spans[i].first = j;
      w[at++] = (r - l) / scale;
      spans[i].count++;
    }
  }
}

void ml_image_resize_area(const uint8_t *src, int64_t sh, int64_t sw, uint8_t *dst, int64_t dh, int64_t dw) {
  if (sh == dh && sw == dw) {
    memcpy(dst, src, (size_t)(sh * sw));
    return;
  }
  /* each output span touches at most ceil(scale) + 1 source pixels */
  int64_t wy_cap = dh * (sh / dh + 2), wx_cap = dw * (sw / dw + 2);
  span *sy = malloc(sizeof(span) * (size_t)dh), *sx = malloc(sizeof(span) * (size_t)dw);
  double *wy = malloc(sizeof(double) * (size_t)wy_cap), *wx = malloc(sizeof(double) * (size_t)wx_cap);
  double *row = malloc(sizeof(double) * (size_t)dw);
  if (sy && sx && wy && wx && row) {
    box_weights(sh, dh, sy, wy, wy_cap);
    box_weights(sw, dw, sx, wx, wx_cap);
    const double *py = wy;
    for (int64_t i = 0; i < dh; i++) {
      for (int64_t j = 0; j < dw; j++) row[j] = 0;
      for (int64_t a = 0; a < sy[i].count; a++) {
        const uint8_t *s = src + (sy[i].first + a) * sw;
        const double *px = wx;
        for (int64_t j = 0; j < dw; j++) {
          double acc = 0;
          for (int64_t b = 0; b < sx[j].count; b++) acc += px[b] * s[sx[j].first + b];
          px += sx[j].count;
          row[j] += py[a] * acc;
        }
      }
      py += sy[i].count;
      for (int64_t j = 0; j < dw; j++) {
        double v = row[j] + 0.5;
        dst[i * dw + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  } else {
    memset(dst, 0, (size_t)(dh * dw)); /* out of memory: blank rather than garbage */
  }
  free(sy);
  free(sx);
  free(wy);
  free(wx);
  free(row);
}

void ml_image_rot90(const uint8_t *src, int64_t c, int64_t s, int k, uint8_t *dst) {
  k = ((k % 4) + 4) % 4;
  for (int64_t ch = 0; ch < c; ch++) {
    const uint8_t *in = src + ch * s * s;
    uint8_t *o = dst + ch * s * s;
    for (int64_t i = 0; i < s; i++)
      for (int64_t j = 0; j < s; j++) {
        int64_t si, sj;
        switch (k) {
          case 0: si = i, sj = j; break;
          case 1: si = j, sj = s - 1 - i; break;
          case 2: si = s - 1 - i, sj = s - 1 - j; break;
          default: si = s - 1 - j, sj = i; break;
        }
        o[i * s + j] = in[si * s + sj];
      }
  }
}
