/* data layer internals shared by its files: dataset allocation, image decoding, zip entry
 * reading with limits, and the on-disk cache. Not part of the public API. */
#ifndef ML_DATA_INTERNAL_H
#define ML_DATA_INTERNAL_H

#include <zip.h>

#include "metalearn/data.h"

/* Largest compressed image entry read into memory (a 4096x4096 PNG is far below this). */
#define ML__MAX_ENTRY_BYTES ((size_t)64 << 20)

/* Allocates every array of ds (pixels uninitialized, offsets and groups zeroed) and builds
 * class/group names from the given strings (copied). On failure ds is left empty. */
ml_status ml__dataset_alloc(ml_dataset *ds, int64_t n_images, int64_t n_classes, int64_t n_groups,
                            int64_t c, int64_t h, int64_t w);
/* One allocation holding the pointer array followed by the strings; free() releases all. */
char **ml__names_new(const char *const *names, int64_t n);
/* The same from a blob of n NUL-terminated strings of blob_len bytes; NULL if malformed. */
char **ml__names_from_blob(const char *blob, size_t blob_len, int64_t n);

/* Decoded image: (c, h, w) uint8, malloc'd. */
typedef struct {
  uint8_t *px;
  int64_t c, h, w;
} ml__image;
/* Decodes a PNG or JPEG (by signature) from memory into `channels` (1 or 3) channels, alpha
 * composited over white. what names the source in error messages. */
ml_status ml__image_decode(const uint8_t *buf, size_t len, int64_t channels, const char *what,
                           ml__image *out);

/* Rejects absolute names, "..", backslashes and NUL-free weirdness in zip entry names. */
bool ml__zip_name_safe(const char *name);
/* Opens a zip read-only with consistency checks; errors name the path. */
ml_status ml__zip_open(const char *path, zip_t **out);
/* Reads entry idx fully (at most max bytes) into a malloc'd buffer; errors name zip and entry. */
ml_status ml__zip_read(zip_t *z, zip_uint64_t idx, const char *zip_path, size_t max, uint8_t **buf,
                       size_t *len);

/* Omniglot: decode a PNG entry to 1 channel, invert (ink = 255), resize to s x s into dst. */
ml_status ml__omniglot_png(const uint8_t *buf, size_t len, int64_t s, const char *what, uint8_t *dst);

/* Cache: key text built from sources (path, size, mtime) and parameters. */
ml_status ml__cache_key(const char *kind, const char *const *paths, int n, int64_t image_size,
                        char *key, size_t key_cap);
/* Resolves the cache file path for key under cache_dir (NULL = default, "" = none). Returns
 * false when caching is off or impossible. */
bool ml__cache_path(const char *cache_dir, const char *kind, const char *key, char *path, size_t cap);
/* true and ds filled when a valid cache for key exists; never fails loudly. */
bool ml__cache_read(const char *path, const char *key, ml_dataset *ds);
/* Atomic write (temp + rename); failures only log a warning. */
void ml__cache_write(const char *path, const char *key, const ml_dataset *ds);

uint64_t ml__fnv1a(uint64_t h, const void *p, size_t n);

#endif
