/* Omniglot readers: the official zips (alphabet/character/NNNN_MM.png, merged across zips),
 * the .npz arrays of the full set (parsed by hand: the .npy header is a small documented
 * format), their concatenation for the MAML split, and Lake et al.'s 20 one-shot runs.
 * All produce ink = 255 pixels resized by area averaging, so that the zip and npz paths give
 * identical bytes for the same drawing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/internal.h"

#define OMNIGLOT_SIDE 105
#define MAX_ZIP_ENTRIES 10000000

static ml_status check_size(int64_t image_size, const char *what) {
  if (image_size < 0 || image_size > ML_IMAGE_MAX_SIDE)
    return ml_error(ML_ERR_ARG, "%s: image_size %lld out of range [0, %d]", what, (long long)image_size,
                    ML_IMAGE_MAX_SIDE);
  return ML_OK;
}

static bool ends_with_ci(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcasecmp(s + a - b, suffix);
}

/* Checks every entry name of a zip before anything is read. */
static ml_status check_names(zip_t *z, const char *path, zip_int64_t *n_out) {
  zip_int64_t n = zip_get_num_entries(z, 0);
  if (n < 0 || n > MAX_ZIP_ENTRIES) return ml_error(ML_ERR_FORMAT, "%s: bad entry count %lld", path, (long long)n);
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name(z, (zip_uint64_t)i, 0);
    if (!name) return ml_error(ML_ERR_FORMAT, "%s: entry %lld has no name", path, (long long)i);
    if (!ml__zip_name_safe(name)) return ml_error(ML_ERR_FORMAT, "%s: unsafe entry name '%s'", path, name);
  }
  *n_out = n;
  return ML_OK;
}

/* ---------------------------------------------------------------- official zips ---- */

typedef struct {
  char *copy;                    /* owns the strings below */
  const char *alpha, *chr, *file;
  int zip;
  zip_uint64_t idx;
} entry;

static int entry_cmp(const void *pa, const void *pb) {
  const entry *a = pa, *b = pb;
  int c = strcmp(a->alpha, b->alpha);
  if (!c) c = strcmp(a->chr, b->chr);
  if (!c) c = strcmp(a->file, b->file);
  if (!c) c = (a->zip > b->zip) - (a->zip < b->zip);
  return c;
}

static bool same_class(const entry *a, const entry *b) { return !strcmp(a->alpha, b->alpha) && !strcmp(a->chr, b->chr); }

static ml_status load_zips(const char *const *paths, int n_paths, int64_t s, ml_dataset *out) {
  zip_t **zips = calloc((size_t)n_paths, sizeof *zips);
  entry *ents = NULL;
  size_t n_ent = 0, cap = 0;
  const char **cnames = NULL, **gnames = NULL;
  char *namebuf = NULL;
  uint8_t *buf = NULL;
  ml_dataset ds = {0};
  ml_status st = ML_OK;
  if (!zips) return ml_error(ML_ERR_NOMEM, "omniglot: out of memory");
  for (int zi = 0; zi < n_paths && !st; zi++) {
    zip_int64_t n;
    st = ml__zip_open(paths[zi], &zips[zi]);
    if (!st) st = check_names(zips[zi], paths[zi], &n);
    for (zip_int64_t i = 0; !st && i < n; i++) {
      const char *name = zip_get_name(zips[zi], (zip_uint64_t)i, 0);
      if (!ends_with_ci(name, ".png") || strstr(name, "__MACOSX")) continue;
      if (n_ent == cap) {
        cap = cap ? 2 * cap : 4096;
        entry *ne = realloc(ents, cap * sizeof *ents);
        if (!ne) {
          st = ml_error(ML_ERR_NOMEM, "omniglot: out of memory");
          break;
        }
        ents = ne;
      }
      entry *e = &ents[n_ent];
      e->copy = strdup(name);
      if (!e->copy) {
        st = ml_error(ML_ERR_NOMEM, "omniglot: out of memory");
        break;
      }
      n_ent++;
      /* the last three components are alphabet/character/drawing */
      char *cut = strrchr(e->copy, '/'), *file = cut ? cut + 1 : NULL, *chr = NULL, *alpha = NULL;
      if (cut) {
        *cut = 0;
        cut = strrchr(e->copy, '/');
        if (cut) {
          *cut = 0;
          chr = cut + 1;
          cut = strrchr(e->copy, '/');
          alpha = cut ? cut + 1 : e->copy;
        }
      }
      if (!alpha || !*alpha || !*chr || !*file) {
        st = ml_error(ML_ERR_FORMAT, "%s: %s: expected alphabet/character/drawing.png", paths[zi], name);
        break;
      }
      e->alpha = alpha, e->chr = chr, e->file = file;
      e->zip = zi;
      e->idx = (zip_uint64_t)i;
    }
  }
  if (st) goto done;
  if (n_ent == 0) {
    st = ml_error(ML_ERR_FORMAT, "%s: no PNG drawings found", paths[0]);
    goto done;
  }
  qsort(ents, n_ent, sizeof *ents, entry_cmp);
  /* drop the same drawing seen in a later zip (sorted right after the first copy) */
  size_t m = 0;
  for (size_t i = 0; i < n_ent; i++) {
    if (m && same_class(&ents[m - 1], &ents[i]) && !strcmp(ents[m - 1].file, ents[i].file)) {
      free(ents[i].copy);
      continue;
    }
    ents[m++] = ents[i];
  }
  n_ent = m;
  int64_t n_classes = 0, n_groups = 0;
  for (size_t i = 0; i < n_ent; i++) {
    if (i == 0 || !same_class(&ents[i - 1], &ents[i])) n_classes++;
    if (i == 0 || strcmp(ents[i - 1].alpha, ents[i].alpha)) n_groups++;
  }
  st = ml__dataset_alloc(&ds, (int64_t)n_ent, n_classes, n_groups, 1, s, s);
  if (st) goto done;
  cnames = malloc(sizeof(char *) * (size_t)n_classes);
  gnames = malloc(sizeof(char *) * (size_t)n_groups);
  size_t nb_cap = 0;
  for (size_t i = 0; i < n_ent; i++) nb_cap += strlen(ents[i].alpha) + strlen(ents[i].chr) + 2;
  namebuf = malloc(nb_cap);
  if (!cnames || !gnames || !namebuf) {
    st = ml_error(ML_ERR_NOMEM, "omniglot: out of memory");
    goto done;
  }
  int64_t c = -1, g = -1;
  char *nb = namebuf;
  for (size_t i = 0; i < n_ent; i++) {
    if (i == 0 || strcmp(ents[i - 1].alpha, ents[i].alpha)) gnames[++g] = ents[i].alpha;
    if (i == 0 || !same_class(&ents[i - 1], &ents[i])) {
      ds.class_offset[++c] = (int64_t)i;
      ds.class_group[c] = (int32_t)g;
      int w = sprintf(nb, "%s/%s", ents[i].alpha, ents[i].chr);
      cnames[c] = nb;
      nb += w + 1;
    }
    size_t len;
    st = ml__zip_read(zips[ents[i].zip], ents[i].idx, paths[ents[i].zip], ML__MAX_ENTRY_BYTES, &buf, &len);
    if (st) goto done;
    char what[4200];
    snprintf(what, sizeof what, "%s: %s/%s/%s", paths[ents[i].zip], ents[i].alpha, ents[i].chr, ents[i].file);
    st = ml__omniglot_png(buf, len, s, what, ds.pixels + i * (size_t)(s * s));
    free(buf);
    buf = NULL;
    if (st) goto done;
  }
  ds.class_offset[n_classes] = (int64_t)n_ent;
  ds.class_names = ml__names_new(cnames, n_classes);
  ds.group_names = ml__names_new(gnames, n_groups);
  if (!ds.class_names || !ds.group_names) st = ml_error(ML_ERR_NOMEM, "omniglot: out of memory");
done:
  for (size_t i = 0; i < n_ent; i++) free(ents[i].copy);
  free(ents);
  free(cnames);
  free(gnames);
  free(namebuf);
  for (int zi = 0; zi < n_paths; zi++)
    if (zips[zi]) zip_discard(zips[zi]);
  free(zips);
  if (st) ml_dataset_free(&ds);
  else *out = ds;
  return st;
}

/* Wraps a loader with the cache: a valid cache file short-circuits it, a fresh load refills it. */
static ml_status cached(const char *kind, const char *const *paths, int n, int64_t s, const char *cache_dir,
                        ml_dataset *out, ml_status (*load)(const char *const *, int, int64_t, ml_dataset *)) {
  char key[16384], cpath[4600];
  ml_status st = ml__cache_key(kind, paths, n, s, key, sizeof key);
  if (st) return st;
  bool use = ml__cache_path(cache_dir, kind, key, cpath, sizeof cpath);
  if (use && ml__cache_read(cpath, key, out)) return ML_OK;
  st = load(paths, n, s, out);
  if (!st && use) ml__cache_write(cpath, key, out);
  return st;
}

ml_status ml_omniglot_load_zips(const char *const *paths, int n_paths, int64_t image_size, const char *cache_dir,
                                ml_dataset *out) {
  if (!out) return ml_error(ML_ERR_ARG, "omniglot zips: NULL output");
  memset(out, 0, sizeof *out);
  if (!paths || n_paths <= 0) return ml_error(ML_ERR_ARG, "omniglot zips: no paths given");
  for (int i = 0; i < n_paths; i++)
    if (!paths[i]) return ml_error(ML_ERR_ARG, "omniglot zips: path %d is NULL", i);
  ml_status st = check_size(image_size, paths[0]);
  if (st) return st;
  return cached("omniglot-zips", paths, n_paths, image_size ? image_size : OMNIGLOT_SIDE, cache_dir, out, load_zips);
}

/* ------------------------------------------------------------------------ .npy ---- */

typedef struct {
  char descr[16];
  bool fortran;
  int ndim;
  int64_t shape[8];
  size_t header_bytes; /* magic + lengths + dict: where the data starts */
} npy_header;

static size_t read_full(zip_file_t *f, void *dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    zip_int64_t r = zip_fread(f, (uint8_t *)dst + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

static void skip_ws(const char **p, const char *end) {
  while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')) (*p)++;
}

/* The dict is a Python literal such as
 *   {'descr': '|b1', 'fortran_order': False, 'shape': (964, 20, 105, 105), }
 * Only these three keys, string / bool / int-tuple values, are accepted. */
static bool parse_dict(const char *p, const char *end, npy_header *h) {
  bool seen[3] = {false, false, false};
  skip_ws(&p, end);
  if (p >= end || *p++ != '{') return false;
  for (;;) {
    skip_ws(&p, end);
    if (p < end && *p == '}') break;
    if (p >= end || (*p != '\'' && *p != '"')) return false;
    char q = *p++;
    const char *k = p;
    while (p < end && *p != q) p++;
    if (p >= end) return false;
    size_t kl = (size_t)(p - k);
    p++;
    skip_ws(&p, end);
    if (p >= end || *p++ != ':') return false;
    skip_ws(&p, end);
    if (kl == 5 && !memcmp(k, "descr", 5)) {
      if (p >= end || (*p != '\'' && *p != '"')) return false;
      char q2 = *p++;
      const char *v = p;
      while (p < end && *p != q2) p++;
      if (p >= end || (size_t)(p - v) >= sizeof h->descr) return false;
      memcpy(h->descr, v, (size_t)(p - v));
      h->descr[p - v] = 0;
      p++;
      seen[0] = true;
    } else if (kl == 13 && !memcmp(k, "fortran_order", 13)) {
      if (end - p >= 5 && !memcmp(p, "False", 5)) h->fortran = false, p += 5;
      else if (end - p >= 4 && !memcmp(p, "True", 4)) h->fortran = true, p += 4;
      else return false;
      seen[1] = true;
    } else if (kl == 5 && !memcmp(k, "shape", 5)) {
      if (p >= end || *p++ != '(') return false;
      h->ndim = 0;
      for (;;) {
        skip_ws(&p, end);
        if (p < end && *p == ')') break;
        if (p >= end || *p < '0' || *p > '9' || h->ndim >= 8) return false;
        int64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
          if (v > (INT64_MAX - 9) / 10) return false;
          v = v * 10 + (*p++ - '0');
        }
        h->shape[h->ndim++] = v;
        skip_ws(&p, end);
        if (p < end && *p == ',') p++;
        else if (p < end && *p == ')') break;
        else return false;
      }
      p++;
      seen[2] = true;
    } else {
      return false;
    }
    skip_ws(&p, end);
    if (p < end && *p == ',') p++;
    else if (p < end && *p == '}') break;
    else return false;
  }
  return seen[0] && seen[1] && seen[2];
}

/* Reads the header of an open .npy entry; the stream is left at the first data byte. */
static ml_status npy_read_header(zip_file_t *f, const char *what, npy_header *h) {
  memset(h, 0, sizeof *h);
  uint8_t pre[12];
  if (read_full(f, pre, 10) != 10) return ml_error(ML_ERR_FORMAT, "%s: truncated .npy header", what);
  if (memcmp(pre, "\x93NUMPY", 6)) return ml_error(ML_ERR_FORMAT, "%s: not a .npy file (bad magic)", what);
  uint8_t major = pre[6];
  size_t hl, pre_len;
  if (major == 1) {
    hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    pre_len = 10;
  } else if (major == 2 || major == 3) {
    if (read_full(f, pre + 10, 2) != 2) return ml_error(ML_ERR_FORMAT, "%s: truncated .npy header", what);
    hl = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    pre_len = 12;
  } else {
    return ml_error(ML_ERR_FORMAT, "%s: unsupported .npy version %u", what, major);
  }
  if (hl == 0 || hl > ((size_t)1 << 20)) return ml_error(ML_ERR_FORMAT, "%s: .npy header length %zu is implausible", what, hl);
  char *dict = malloc(hl);
  if (!dict) return ml_error(ML_ERR_NOMEM, "%s: out of memory", what);
  ml_status st = ML_OK;
  if (read_full(f, dict, hl) != hl) st = ml_error(ML_ERR_FORMAT, "%s: truncated .npy header", what);
  else if (!parse_dict(dict, dict + hl, h)) st = ml_error(ML_ERR_FORMAT, "%s: malformed .npy header dict", what);
  else if (h->fortran) st = ml_error(ML_ERR_FORMAT, "%s: fortran_order arrays are not supported", what);
  free(dict);
  h->header_bytes = pre_len + hl;
  return st;
}

/* Opens name inside the npz and checks descr, rank and that the data size matches the entry
 * size exactly (the header is never trusted on its own). */
static ml_status npy_open(zip_t *z, const char *path, const char *name, const char *descr, int ndim, bool required,
                          zip_file_t **fo, npy_header *h, char *what, size_t what_cap) {
  *fo = NULL;
  snprintf(what, what_cap, "%s: %s", path, name);
  zip_int64_t idx = zip_name_locate(z, name, 0);
  if (idx < 0) return required ? ml_error(ML_ERR_FORMAT, "%s: no %s in the archive", path, name) : ML_ERR_NOTFOUND;
  zip_stat_t sb;
  if (zip_stat_index(z, (zip_uint64_t)idx, 0, &sb) != 0 || !(sb.valid & ZIP_STAT_SIZE))
    return ml_error(ML_ERR_FORMAT, "%s: cannot stat entry", what);
  zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
  if (!f) return ml_error(ML_ERR_FORMAT, "%s: cannot open entry (%s)", what, zip_strerror(z));
  ml_status st = npy_read_header(f, what, h);
  if (!st && strcmp(h->descr, descr) && !(!strcmp(descr, "|b1") && !strcmp(h->descr, "|u1")))
    st = ml_error(ML_ERR_FORMAT, "%s: dtype '%s', expected '%s'", what, h->descr, descr);
  if (!st && h->ndim != ndim) st = ml_error(ML_ERR_FORMAT, "%s: %d-D array, expected %d-D", what, h->ndim, ndim);
  size_t bytes = !strcmp(descr, "<i8") ? 8 : 1;
  for (int i = 0; !st && i < h->ndim; i++)
    if (!ml_mul_size(bytes, (size_t)h->shape[i], &bytes)) st = ml_error(ML_ERR_FORMAT, "%s: shape overflows", what);
  size_t total;
  if (!st && (!ml_add_size(bytes, h->header_bytes, &total) || total != sb.size))
    st = ml_error(ML_ERR_FORMAT, "%s: header shape needs %zu data bytes but the entry holds %llu", what, bytes,
                  (unsigned long long)(sb.size > h->header_bytes ? sb.size - h->header_bytes : 0));
  if (st) {
    zip_fclose(f);
    return st;
  }
  *fo = f;
  return ML_OK;
}

/* Reading past the end makes libzip check the entry's CRC. */
static ml_status npy_finish(zip_file_t *f, const char *what) {
  uint8_t extra;
  zip_int64_t r = zip_fread(f, &extra, 1);
  zip_fclose(f);
  if (r < 0) return ml_error(ML_ERR_FORMAT, "%s: corrupt entry (CRC or inflate error)", what);
  if (r > 0) return ml_error(ML_ERR_FORMAT, "%s: more data than the header describes", what);
  return ML_OK;
}

static ml_status load_npz(const char *const *paths, int n_paths, int64_t s_req, ml_dataset *out) {
  (void)n_paths;
  const char *path = paths[0];
  zip_t *z = NULL;
  zip_file_t *f = NULL;
  uint8_t *src = NULL;
  const char **cnames = NULL;
  char *namebuf = NULL;
  ml_dataset ds = {0};
  npy_header h;
  char what[4200];
  zip_int64_t n_entries;
  ml_status st = ml__zip_open(path, &z);
  if (!st) st = check_names(z, path, &n_entries);
  if (!st) st = npy_open(z, path, "images.npy", "|b1", 4, true, &f, &h, what, sizeof what);
  if (st) goto done;
  int64_t N = h.shape[0], D = h.shape[1], H = h.shape[2], W = h.shape[3];
  if (N <= 0 || D <= 0 || H <= 0 || W <= 0 || H > ML_IMAGE_MAX_SIDE || W > ML_IMAGE_MAX_SIDE || N > INT32_MAX) {
    st = ml_error(ML_ERR_FORMAT, "%s: implausible shape (%lld, %lld, %lld, %lld)", what, (long long)N, (long long)D,
                  (long long)H, (long long)W);
    goto done;
  }
  int64_t s = s_req ? s_req : H;
  /* the stem names the group and prefixes class names */
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  char stem[256];
  snprintf(stem, sizeof stem, "%s", base);
  char *dot = strrchr(stem, '.');
  if (dot && dot != stem) *dot = 0;
  st = ml__dataset_alloc(&ds, N * D, N, 1, 1, s, s);
  if (st) goto done;
  src = malloc((size_t)(H * W));
  cnames = malloc(sizeof(char *) * (size_t)N);
  namebuf = malloc((size_t)N * (strlen(stem) + 24));
  if (!src || !cnames || !namebuf) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  char *nb = namebuf;
  for (int64_t i = 0; i < N; i++) {
    ds.class_offset[i] = i * D;
    ds.class_group[i] = 0;
    cnames[i] = nb;
    nb += sprintf(nb, "%s/%04lld", stem, (long long)i) + 1;
    for (int64_t k = 0; k < D; k++) {
      if (read_full(f, src, (size_t)(H * W)) != (size_t)(H * W)) {
        st = ml_error(ML_ERR_FORMAT, "%s: truncated data at image (%lld, %lld)", what, (long long)i, (long long)k);
        goto done;
      }
      /* True = white paper -> 0, False = ink -> 255 */
      for (int64_t p = 0; p < H * W; p++) src[p] = src[p] ? 0 : 255;
      ml_image_resize_area(src, H, W, ds.pixels + (size_t)(i * D + k) * (size_t)(s * s), s, s);
    }
  }
  ds.class_offset[N] = N * D;
  st = npy_finish(f, what);
  f = NULL;
  if (st) goto done;
  /* labels are optional; when present their shape must agree */
  st = npy_open(z, path, "labels.npy", "<i8", 2, false, &f, &h, what, sizeof what);
  if (st == ML_ERR_NOTFOUND) st = ML_OK;
  else if (!st) {
    if (h.shape[0] != N || h.shape[1] != D) {
      st = ml_error(ML_ERR_FORMAT, "%s: shape (%lld, %lld) does not match images (%lld, %lld)", what,
                    (long long)h.shape[0], (long long)h.shape[1], (long long)N, (long long)D);
      goto done;
    }
    zip_fclose(f);
    f = NULL;
  }
  if (st) goto done;
  const char *g = stem;
  ds.class_names = ml__names_new(cnames, N);
  ds.group_names = ml__names_new(&g, 1);
  if (!ds.class_names || !ds.group_names) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
done:
  if (f) zip_fclose(f);
  if (z) zip_discard(z);
  free(src);
  free(cnames);
  free(namebuf);
  if (st) ml_dataset_free(&ds);
  else *out = ds;
  return st;
}

ml_status ml_omniglot_load_npz(const char *path, int64_t image_size, const char *cache_dir, ml_dataset *out) {
  if (!out) return ml_error(ML_ERR_ARG, "omniglot npz: NULL output");
  memset(out, 0, sizeof *out);
  if (!path) return ml_error(ML_ERR_ARG, "omniglot npz: NULL path");
  ml_status st = check_size(image_size, path);
  if (st) return st;
  /* 0 = native size; the key uses the request so both spellings of 105 are separate entries */
  return cached("omniglot-npz", &path, 1, image_size, cache_dir, out, load_npz);
}

ml_status ml_omniglot_load_full(const char *background_npz, const char *evaluation_npz, int64_t image_size,
                                const char *cache_dir, ml_dataset *out) {
  if (!out) return ml_error(ML_ERR_ARG, "omniglot full: NULL output");
  memset(out, 0, sizeof *out);
  ml_dataset a, b;
  ml_status st = ml_omniglot_load_npz(background_npz, image_size, cache_dir, &a);
  if (st) return st;
  st = ml_omniglot_load_npz(evaluation_npz, image_size, cache_dir, &b);
  if (!st) st = ml_dataset_concat(&a, &b, out);
  ml_dataset_free(&a);
  ml_dataset_free(&b);
  return st;
}

/* ------------------------------------------------------------------- Lake runs ---- */

#define LAKE_RUNS 20
#define LAKE_WAYS 20

/* "…runNN/<dir>/<stem>II.png" -> II (1-based), or -1. */
static int trailing_index(const char *tok, const char *run, const char *dir, const char *stem) {
  char want[64];
  snprintf(want, sizeof want, "%s/%s/%s", run, dir, stem);
  const char *p = strstr(tok, want);
  if (!p) return -1;
  p += strlen(want);
  if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || strcmp(p + 2, ".png")) return -1;
  return (p[0] - '0') * 10 + (p[1] - '0');
}

static ml_status lake_image(zip_t *z, const char *zpath, const char *name, int64_t s, uint8_t *dst) {
  zip_int64_t idx = zip_name_locate(z, name, 0);
  if (idx < 0) return ml_error(ML_ERR_FORMAT, "%s: missing %s", zpath, name);
  uint8_t *buf;
  size_t len;
  ml_status st = ml__zip_read(z, (zip_uint64_t)idx, zpath, ML__MAX_ENTRY_BYTES, &buf, &len);
  if (st) return st;
  char what[4200];
  snprintf(what, sizeof what, "%s: %s", zpath, name);
  st = ml__omniglot_png(buf, len, s, what, dst);
  free(buf);
  return st;
}

void ml_lake_runs_free(ml_lake_runs *r) {
  if (!r) return;
  free(r->train);
  free(r->test);
  free(r->test_label);
  memset(r, 0, sizeof *r);
}

ml_status ml_lake_runs_load(const char *path, int64_t image_size, ml_lake_runs *out) {
  if (!out) return ml_error(ML_ERR_ARG, "lake runs: NULL output");
  memset(out, 0, sizeof *out);
  if (!path) return ml_error(ML_ERR_ARG, "lake runs: NULL path");
  ml_status st = check_size(image_size, path);
  if (st) return st;
  int64_t s = image_size ? image_size : OMNIGLOT_SIDE;
  zip_t *z = NULL;
  zip_int64_t n;
  ml_lake_runs r = {LAKE_RUNS, LAKE_WAYS, LAKE_WAYS, 1, s, s, NULL, NULL, NULL};
  size_t per = (size_t)(s * s), all = (size_t)(LAKE_RUNS * LAKE_WAYS) * per;
  char prefix[1024] = "", name[1400];
  uint8_t *txt = NULL;
  st = ml__zip_open(path, &z);
  if (!st) st = check_names(z, path, &n);
  if (st) goto done;
  /* the runs may sit under a folder (all_runs/run01/...): take it from run01's labels */
  for (zip_int64_t i = 0; i < n; i++) {
    const char *nm = zip_get_name(z, (zip_uint64_t)i, 0);
    size_t l = strlen(nm), t = strlen("run01/class_labels.txt");
    if (l >= t && !strcmp(nm + l - t, "run01/class_labels.txt") && (l == t || nm[l - t - 1] == '/') &&
        l - t < sizeof prefix) {
      memcpy(prefix, nm, l - t);
      prefix[l - t] = 0;
      break;
    }
    if (i == n - 1) {
      st = ml_error(ML_ERR_FORMAT, "%s: no run01/class_labels.txt (not Lake's all_runs.zip?)", path);
      goto done;
    }
  }
  r.train = malloc(all);
  r.test = malloc(all);
  r.test_label = malloc(sizeof(int32_t) * LAKE_RUNS * LAKE_WAYS);
  if (!r.train || !r.test || !r.test_label) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int run = 0; run < LAKE_RUNS; run++) {
    char rn[8];
    snprintf(rn, sizeof rn, "run%02d", run + 1);
    snprintf(name, sizeof name, "%s%s/class_labels.txt", prefix, rn);
    zip_int64_t idx = zip_name_locate(z, name, 0);
    if (idx < 0) {
      st = ml_error(ML_ERR_FORMAT, "%s: missing %s", path, name);
      goto done;
    }
    size_t len;
    st = ml__zip_read(z, (zip_uint64_t)idx, path, 1 << 20, &txt, &len);
    if (st) goto done;
    txt[len] = 0; /* ml__zip_read leaves one spare byte */
    int32_t *lab = r.test_label + run * LAKE_WAYS;
    for (int i = 0; i < LAKE_WAYS; i++) lab[i] = -1;
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)txt, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
      char a[512], b[512];
      if (sscanf(line, "%511s %511s", a, b) != 2) continue;
      int item = trailing_index(a, rn, "test", "item"), cls = trailing_index(b, rn, "training", "class");
      if (item < 1 || item > LAKE_WAYS || cls < 1 || cls > LAKE_WAYS || lab[item - 1] >= 0) {
        st = ml_error(ML_ERR_FORMAT, "%s: %s: bad line '%s'", path, name, line);
        goto done;
      }
      lab[item - 1] = cls - 1;
      lines++;
    }
    free(txt);
    txt = NULL;
    if (lines != LAKE_WAYS) {
      st = ml_error(ML_ERR_FORMAT, "%s: %s: %d labels, expected %d", path, name, lines, LAKE_WAYS);
      goto done;
    }
    for (int j = 0; j < LAKE_WAYS && !st; j++) {
      snprintf(name, sizeof name, "%s%s/training/class%02d.png", prefix, rn, j + 1);
      st = lake_image(z, path, name, s, r.train + (size_t)(run * LAKE_WAYS + j) * per);
      if (st) break;
      snprintf(name, sizeof name, "%s%s/test/item%02d.png", prefix, rn, j + 1);
      st = lake_image(z, path, name, s, r.test + (size_t)(run * LAKE_WAYS + j) * per);
    }
    if (st) goto done;
  }
done:
  free(txt);
  if (z) zip_discard(z);
  if (st) ml_lake_runs_free(&r);
  else *out = r;
  return st;
}
