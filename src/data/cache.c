/* The decoded-dataset cache: one binary file per (sources, sizes, mtimes, image size), so the
 * second load reads ~15 MB instead of decoding thousands of PNGs or a 200 MB array.
 *
 * Layout (native little-endian; the magic catches a foreign byte order):
 *   "MLDSCACH" u32 version u32 0 | u64 key_len, key bytes | i64 n_images n_classes n_groups C H W
 *   | u64 class-name blob length, blob | u64 group-name blob length, blob
 *   | i64 class_offset[n_classes+1] | i32 class_group[n_classes] | u8 pixels | u64 FNV-1a of all before.
 * Every field is checked on read; anything off means "no cache", never a crash. Writes go to a
 * temp file renamed into place, so a reader never sees half a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/internal.h"

#define CACHE_MAGIC "MLDSCACH"
#define CACHE_VERSION 1u

uint64_t ml__fnv1a(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  /* 8 lanes of FNV over interleaved bytes, folded at the end: same quality for our purpose
   * (detect corruption) at a few times the speed of the byte-serial loop */
  uint64_t lanes[8];
  for (int k = 0; k < 8; k++) lanes[k] = h ^ (uint64_t)k;
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) lanes[k] = (lanes[k] ^ b[i + (size_t)k]) * 0x100000001b3ull;
  for (; i < n; i++) lanes[0] = (lanes[0] ^ b[i]) * 0x100000001b3ull;
  uint64_t out = 0xcbf29ce484222325ull;
  for (int k = 0; k < 8; k++) out = (out ^ lanes[k]) * 0x100000001b3ull;
  return out;
}

ml_status ml__cache_key(const char *kind, const char *const *paths, int n, int64_t image_size, char *key,
                        size_t key_cap) {
  size_t at = 0;
  int w = snprintf(key, key_cap, "%s v%u size=%lld", kind, CACHE_VERSION, (long long)image_size);
  if (w < 0 || (size_t)w >= key_cap) return ml_error(ML_ERR_ARG, "cache key too long");
  at = (size_t)w;
  for (int i = 0; i < n; i++) {
    struct stat st;
    if (stat(paths[i], &st) != 0) return ml_error(ML_ERR_IO, "%s: %s", paths[i], strerror(errno));
    char real[4096];
    const char *p = realpath(paths[i], real) ? real : paths[i];
    w = snprintf(key + at, key_cap - at, "\n%s %lld %lld.%09ld", p, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 (long)st.st_mtim.tv_nsec);
    if (w < 0 || (size_t)w >= key_cap - at) return ml_error(ML_ERR_ARG, "cache key too long");
    at += (size_t)w;
  }
  return ML_OK;
}

ml_status ml_cache_dir_default(char *buf, size_t n) {
  const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int w;
  if (x && *x) w = snprintf(buf, n, "%s/metalearn", x);
  else if (home && *home) w = snprintf(buf, n, "%s/.cache/metalearn", home);
  else return ml_error(ML_ERR_NOTFOUND, "no cache directory: neither XDG_CACHE_HOME nor HOME is set");
  if (w < 0 || (size_t)w >= n) return ml_error(ML_ERR_ARG, "cache directory path too long");
  return ML_OK;
}

/* mkdir -p, tolerant of existing directories */
static bool make_dirs(const char *dir) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return false;
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
      *p = '/';
    }
  return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

bool ml__cache_path(const char *cache_dir, const char *kind, const char *key, char *path, size_t cap) {
  char dir[4096];
  if (cache_dir && !*cache_dir) return false;
  if (!cache_dir) {
    if (ml_cache_dir_default(dir, sizeof dir) != ML_OK) {
      ml_clear_error();
      return false;
    }
    cache_dir = dir;
  }
  int w = snprintf(path, cap, "%s/%s-%016llx.mlcache", cache_dir, kind,
                   (unsigned long long)ml__fnv1a(0xcbf29ce484222325ull, key, strlen(key)));
  return w > 0 && (size_t)w < cap;
}

typedef struct {
  const uint8_t *p;
  size_t n, at;
} cursor;

static const void *take(cursor *c, size_t bytes) {
  if (bytes > c->n - c->at) return NULL;
  const void *r = c->p + c->at;
  c->at += bytes;
  return r;
}
static bool take_u64(cursor *c, uint64_t *v) {
  const void *p = take(c, 8);
  if (p) memcpy(v, p, 8);
  return p != NULL;
}

bool ml__cache_read(const char *path, const char *key, ml_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  uint8_t *buf = NULL;
  bool ok = false;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || st.st_size < 64 || (uint64_t)st.st_size > ((uint64_t)1 << 40)) goto done;
  size_t n = (size_t)st.st_size;
  buf = malloc(n);
  if (!buf || fread(buf, 1, n, f) != n) goto done;
  uint64_t sum;
  memcpy(&sum, buf + n - 8, 8);
  if (ml__fnv1a(0xcbf29ce484222325ull, buf, n - 8) != sum) goto done;
  cursor c = {buf, n - 8, 0};
  const uint8_t *magic = take(&c, 8);
  uint64_t ver_pad, key_len;
  if (!magic || memcmp(magic, CACHE_MAGIC, 8) || !take_u64(&c, &ver_pad) || (uint32_t)ver_pad != CACHE_VERSION) goto done;
  if (!take_u64(&c, &key_len) || key_len != strlen(key)) goto done;
  const void *kp = take(&c, key_len);
  if (!kp || memcmp(kp, key, key_len)) goto done;
  int64_t hdr[6];
  const void *hp = take(&c, sizeof hdr);
  if (!hp) goto done;
  memcpy(hdr, hp, sizeof hdr);
  for (int i = 0; i < 6; i++)
    if (hdr[i] < 0 || (uint64_t)hdr[i] > n) goto done;
  uint64_t cn_len, gn_len;
  const char *cn, *gn;
  if (!take_u64(&c, &cn_len) || !(cn = take(&c, cn_len)) || !take_u64(&c, &gn_len) || !(gn = take(&c, gn_len))) goto done;
  ml_dataset d;
  if (ml__dataset_alloc(&d, hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5]) != ML_OK) {
    ml_clear_error();
    goto done;
  }
  size_t off_b = ((size_t)d.n_classes + 1) * 8, grp_b = (size_t)d.n_classes * 4,
         pix_b = (size_t)(d.n_images * d.channels * d.height * d.width);
  const void *op = take(&c, off_b), *gp = take(&c, grp_b), *pp = take(&c, pix_b);
  d.class_names = ml__names_from_blob(cn, cn_len, d.n_classes);
  d.group_names = ml__names_from_blob(gn, gn_len, d.n_groups);
  if (!op || !gp || !pp || c.at != c.n || !d.class_names || !d.group_names) {
    ml_dataset_free(&d);
    goto done;
  }
  memcpy(d.class_offset, op, off_b);
  memcpy(d.class_group, gp, grp_b);
  memcpy(d.pixels, pp, pix_b);
  bool valid = d.class_offset[0] == 0 && d.class_offset[d.n_classes] == d.n_images;
  for (int64_t k = 0; valid && k < d.n_classes; k++)
    valid = d.class_offset[k] <= d.class_offset[k + 1] && d.class_group[k] >= 0 && d.class_group[k] < d.n_groups;
  if (!valid) {
    ml_dataset_free(&d);
    goto done;
  }
  *ds = d;
  ok = true;
done:
  if (!ok && buf) ml_logf(ML_LOG_INFO, "cache %s is invalid or stale; rebuilding", path);
  free(buf);
  fclose(f);
  return ok;
}

typedef struct {
  uint8_t *p;
  size_t at;
} outbuf;

static void put(outbuf *o, const void *p, size_t n) {
  memcpy(o->p + o->at, p, n);
  o->at += n;
}
static void put_u64(outbuf *o, uint64_t v) { put(o, &v, 8); }

/* Names as one blob of NUL-terminated strings. */
static size_t blob_len(char *const *names, int64_t n) {
  size_t l = 0;
  for (int64_t i = 0; i < n; i++) l += strlen(names[i]) + 1;
  return l;
}
static void put_names(outbuf *o, char *const *names, int64_t n) {
  put_u64(o, blob_len(names, n));
  for (int64_t i = 0; i < n; i++) put(o, names[i], strlen(names[i]) + 1);
}

void ml__cache_write(const char *path, const char *key, const ml_dataset *ds) {
  size_t klen = strlen(key), cl = blob_len(ds->class_names, ds->n_classes), gl = blob_len(ds->group_names, ds->n_groups);
  size_t pix = (size_t)(ds->n_images * ds->channels * ds->height * ds->width);
  size_t total = 8 + 8 + 8 + klen + 6 * 8 + 8 + cl + 8 + gl + ((size_t)ds->n_classes + 1) * 8 +
                 (size_t)ds->n_classes * 4 + pix + 8;
  outbuf o = {malloc(total), 0};
  if (!o.p) {
    ml_logf(ML_LOG_WARN, "cache %s: out of memory, not written", path);
    return;
  }
  put(&o, CACHE_MAGIC, 8);
  put_u64(&o, CACHE_VERSION);
  put_u64(&o, klen);
  put(&o, key, klen);
  int64_t hdr[6] = {ds->n_images, ds->n_classes, ds->n_groups, ds->channels, ds->height, ds->width};
  put(&o, hdr, sizeof hdr);
  put_names(&o, ds->class_names, ds->n_classes);
  put_names(&o, ds->group_names, ds->n_groups);
  put(&o, ds->class_offset, ((size_t)ds->n_classes + 1) * 8);
  put(&o, ds->class_group, (size_t)ds->n_classes * 4);
  put(&o, ds->pixels, pix);
  put_u64(&o, ml__fnv1a(0xcbf29ce484222325ull, o.p, o.at));

  char dir[4096], tmp[4200];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = NULL;
  bool ok = (!slash || make_dirs(dir)) && (f = fopen(tmp, "wb")) != NULL;
  if (ok) ok = fwrite(o.p, 1, o.at, f) == o.at;
  if (f) ok = (fflush(f) == 0) & ok, ok = (fsync(fileno(f)) == 0) & ok, ok = (fclose(f) == 0) & ok;
  if (ok) ok = rename(tmp, path) == 0;
  if (!ok) {
    ml_logf(ML_LOG_WARN, "cache %s: not written (%s)", path, strerror(errno));
    if (f) remove(tmp);
  }
  free(o.p);
}
