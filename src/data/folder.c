/* Bring-your-own image data: dir/<class>/<image>.{png,jpg,jpeg}, one subfolder per class.
 * Sorted listings make the class and image order independent of the filesystem. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/internal.h"

typedef struct {
  char **v;
  size_t n, cap;
} strlist;

static bool strlist_push(strlist *l, const char *s) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? 2 * l->cap : 64;
    char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return false;
    l->v = nv, l->cap = nc;
  }
  return (l->v[l->n] = strdup(s)) != NULL && ++l->n;
}
static void strlist_free(strlist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}
static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_image(const char *n) {
  size_t l = strlen(n);
  return (l > 4 && (!strcasecmp(n + l - 4, ".png") || !strcasecmp(n + l - 4, ".jpg"))) ||
         (l > 5 && !strcasecmp(n + l - 5, ".jpeg"));
}

/* Sorted names in dir: subdirectories (want_dirs) or image files. */
static ml_status list_dir(const char *dir, bool want_dirs, strlist *out) {
  DIR *d = opendir(dir);
  if (!d) return ml_error(ML_ERR_IO, "%s: %s", dir, strerror(errno));
  struct dirent *e;
  ml_status st = ML_OK;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
    struct stat sb;
    if (stat(p, &sb) != 0) continue;
    bool ok = want_dirs ? S_ISDIR(sb.st_mode) : (S_ISREG(sb.st_mode) && is_image(e->d_name));
    if (ok && !strlist_push(out, e->d_name)) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", dir);
      break;
    }
  }
  closedir(d);
  if (out->n) qsort(out->v, out->n, sizeof *out->v, str_cmp);
  return st;
}

static ml_status read_file(const char *path, uint8_t **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return ml_error(ML_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  ml_status st = ML_OK;
  *buf = NULL;
  *len = 0;
  if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > ML__MAX_ENTRY_BYTES) {
    st = ml_error(ML_ERR_FORMAT, "%s: file too large or unreadable", path);
  } else {
    *len = (size_t)sb.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    else if (fread(*buf, 1, *len, f) != *len) st = ml_error(ML_ERR_IO, "%s: short read", path);
  }
  fclose(f);
  if (st) {
    free(*buf);
    *buf = NULL;
  }
  return st;
}

ml_status ml_image_folder_load(const char *dir, int64_t image_size, int64_t channels, ml_dataset *out) {
  if (!out) return ml_error(ML_ERR_ARG, "image folder: NULL output");
  memset(out, 0, sizeof *out);
  if (!dir) return ml_error(ML_ERR_ARG, "image folder: NULL path");
  if (image_size <= 0 || image_size > ML_IMAGE_MAX_SIDE)
    return ml_error(ML_ERR_ARG, "%s: image_size %lld out of range [1, %d]", dir, (long long)image_size, ML_IMAGE_MAX_SIDE);
  if (channels != 1 && channels != 3)
    return ml_error(ML_ERR_ARG, "%s: channels must be 1 or 3, not %lld", dir, (long long)channels);
  strlist classes = {0}, kept = {0};
  strlist *files = NULL;
  ml_dataset ds = {0};
  ml_status st = list_dir(dir, true, &classes);
  if (st) goto done;
  files = calloc(classes.n ? classes.n : 1, sizeof *files);
  if (!files) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  int64_t n_images = 0;
  char p[4096];
  for (size_t c = 0; c < classes.n; c++) {
    snprintf(p, sizeof p, "%s/%s", dir, classes.v[c]);
    st = list_dir(p, false, &files[c]);
    if (st) goto done;
    if (files[c].n == 0) ml_logf(ML_LOG_WARN, "%s: no PNG/JPEG images, class skipped", p);
    else if (!strlist_push(&kept, classes.v[c])) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", dir);
      goto done;
    }
    n_images += (int64_t)files[c].n;
  }
  if (kept.n == 0) {
    st = ml_error(ML_ERR_FORMAT, "%s: no class folders with PNG/JPEG images", dir);
    goto done;
  }
  st = ml__dataset_alloc(&ds, n_images, (int64_t)kept.n, 1, channels, image_size, image_size);
  if (st) goto done;
  size_t per = (size_t)(channels * image_size * image_size);
  int64_t c_out = 0, at = 0;
  for (size_t c = 0; c < classes.n; c++) {
    if (!files[c].n) continue;
    ds.class_offset[c_out] = at;
    for (size_t k = 0; k < files[c].n; k++, at++) {
      snprintf(p, sizeof p, "%s/%s/%s", dir, classes.v[c], files[c].v[k]);
      uint8_t *buf = NULL;
      size_t len = 0;
      ml__image im;
      st = read_file(p, &buf, &len);
      if (st) goto done;
      st = ml__image_decode(buf, len, channels, p, &im);
      free(buf);
      if (st) goto done;
      for (int64_t ch = 0; ch < channels; ch++)
        ml_image_resize_area(im.px + ch * im.h * im.w, im.h, im.w, ds.pixels + (size_t)at * per + (size_t)(ch * image_size * image_size),
                             image_size, image_size);
      free(im.px);
    }
    c_out++;
  }
  ds.class_offset[c_out] = at;
  const char *base = strrchr(dir, '/');
  base = base && base[1] ? base + 1 : dir;
  ds.class_names = ml__names_new((const char *const *)kept.v, (int64_t)kept.n);
  ds.group_names = ml__names_new(&base, 1);
  if (!ds.class_names || !ds.group_names) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", dir);
done:
  for (size_t c = 0; files && c < classes.n; c++) strlist_free(&files[c]);
  free(files);
  strlist_free(&classes);
  strlist_free(&kept);
  if (st) ml_dataset_free(&ds);
  else *out = ds;
  return st;
}

ml_status ml_image_load(const char *path, int64_t image_size, int64_t channels, uint8_t *out) {
  if (image_size <= 0 || image_size > ML_IMAGE_MAX_SIDE)
    return ml_error(ML_ERR_ARG, "%s: image_size %lld out of range [1, %d]", path, (long long)image_size,
                    ML_IMAGE_MAX_SIDE);
  if (channels != 1 && channels != 3)
    return ml_error(ML_ERR_ARG, "%s: channels must be 1 or 3, not %lld", path, (long long)channels);
  uint8_t *buf = NULL;
  size_t len = 0;
  ml__image im;
  ml_status st = read_file(path, &buf, &len);
  if (st) return st;
  st = ml__image_decode(buf, len, channels, path, &im);
  free(buf);
  if (st) return st;
  for (int64_t ch = 0; ch < channels; ch++)
    ml_image_resize_area(im.px + ch * im.h * im.w, im.h, im.w, out + ch * image_size * image_size, image_size,
                         image_size);
  free(im.px);
  return ML_OK;
}
