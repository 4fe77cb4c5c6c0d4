/* Reading zip entries into memory with libzip, with the checks hostile archives need: entry
 * names that could escape a directory are refused (we never extract, but a name like
 * ../../evil.png signals a crafted file), sizes are capped before allocating, and every entry
 * is read to its end so libzip verifies its CRC. */
#include <stdlib.h>
#include <string.h>

#include "data/internal.h"

bool ml__zip_name_safe(const char *name) {
  if (!name || !*name || name[0] == '/' || strchr(name, '\\') || strchr(name, ':')) return false;
  const char *p = name;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if ((l == 2 && p[0] == '.' && p[1] == '.') || (l == 1 && p[0] == '.')) return false;
    for (size_t i = 0; i < l; i++)
      if ((unsigned char)p[i] < 0x20) return false;
    if (!e) break;
    p = e + 1;
  }
  return true;
}

ml_status ml__zip_open(const char *path, zip_t **out) {
  int err = 0;
  *out = NULL;
  zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (!z) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    ml_status st = ml_error(err == ZIP_ER_NOENT || err == ZIP_ER_OPEN || err == ZIP_ER_READ ? ML_ERR_IO : ML_ERR_FORMAT,
                            "%s: cannot open zip (%s)", path, zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return st;
  }
  *out = z;
  return ML_OK;
}

ml_status ml__zip_read(zip_t *z, zip_uint64_t idx, const char *zip_path, size_t max, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  const char *name = zip_get_name(z, idx, 0);
  if (!name) name = "?";
  zip_stat_t sb;
  if (zip_stat_index(z, idx, 0, &sb) != 0 || !(sb.valid & ZIP_STAT_SIZE))
    return ml_error(ML_ERR_FORMAT, "%s: %s: cannot stat entry (%s)", zip_path, name, zip_strerror(z));
  if (sb.size > max)
    return ml_error(ML_ERR_FORMAT, "%s: %s: entry of %llu bytes exceeds the %zu-byte limit", zip_path, name,
                    (unsigned long long)sb.size, max);
  zip_file_t *f = zip_fopen_index(z, idx, 0);
  if (!f) return ml_error(ML_ERR_FORMAT, "%s: %s: cannot open entry (%s)", zip_path, name, zip_strerror(z));
  size_t n = (size_t)sb.size;
  uint8_t *b = malloc(n + 1);
  if (!b) {
    zip_fclose(f);
    return ml_error(ML_ERR_NOMEM, "%s: %s: out of memory", zip_path, name);
  }
  size_t got = 0;
  ml_status st = ML_OK;
  /* read one byte past the declared size: a size that lies shows up as extra data or a CRC error */
  for (;;) {
    zip_int64_t r = zip_fread(f, b + got, n + 1 - got);
    if (r < 0) {
      st = ml_error(ML_ERR_FORMAT, "%s: %s: corrupt entry (%s)", zip_path, name, zip_file_strerror(f));
      break;
    }
    if (r == 0) break;
    got += (size_t)r;
    if (got > n) {
      st = ml_error(ML_ERR_FORMAT, "%s: %s: entry larger than its declared size", zip_path, name);
      break;
    }
  }
  if (!st && got != n) st = ml_error(ML_ERR_FORMAT, "%s: %s: truncated entry (%zu of %zu bytes)", zip_path, name, got, n);
  zip_fclose(f);
  if (st) {
    free(b);
    return st;
  }
  *buf = b;
  *len = n;
  return ML_OK;
}
