/* safetensors reader and writer (https://github.com/huggingface/safetensors, "Format").
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON (padded with spaces to a multiple of 8
 * as the Python library does), then the byte buffer. The JSON maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the buffer) and may hold
 * "__metadata__", a map of strings to strings.
 * The reader treats every file as hostile: it loads the file whole, parses the header with
 * cJSON and checks every size with overflow-checked arithmetic before any tensor is touched;
 * the tensors must index the buffer completely, without holes or overlap, as the spec says. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "io/safetensors_internal.h"

#define HEADER_MAX ((uint64_t)100 * 1000 * 1000) /* same limit as the Rust library */
#define EXACT_INT_MAX 9007199254740992.0         /* 2^53: JSON numbers above are not exact in double */

typedef enum { DT_F32, DT_F64, DT_F16, DT_BF16, DT_I64, DT_I32, DT_OTHER } dtype_id;

typedef struct {
  const char *name;
  dtype_id id;
  size_t size;
} dtype_info;

/* Every fixed-size dtype of the spec is recognised (so the layout of any valid file checks);
 * the first six convert to float. */
static const dtype_info dtypes[] = {
    {"F32", DT_F32, 4},       {"F64", DT_F64, 8},       {"F16", DT_F16, 2},   {"BF16", DT_BF16, 2},
    {"I64", DT_I64, 8},       {"I32", DT_I32, 4},       {"BOOL", DT_OTHER, 1}, {"U8", DT_OTHER, 1},
    {"I8", DT_OTHER, 1},      {"I16", DT_OTHER, 2},     {"U16", DT_OTHER, 2}, {"U32", DT_OTHER, 4},
    {"U64", DT_OTHER, 8},     {"F8_E5M2", DT_OTHER, 1}, {"F8_E4M3", DT_OTHER, 1}, {"F8_E8M0", DT_OTHER, 1},
    {"C64", DT_OTHER, 8},
};

typedef struct {
  const char *name; /* points into the cJSON tree */
  const dtype_info *dtype;
  ml_tensor shape;
  size_t begin, end; /* byte offsets into the data buffer */
} entry;

struct ml_safetensors {
  char *path;
  uint8_t *buf; /* the whole file */
  const uint8_t *data;
  size_t data_len;
  cJSON *root;
  int64_t n;
  entry *e;         /* in header order */
  entry **by_name;  /* sorted by name, for find */
  int64_t n_meta;
  ml_kv *meta;
};

/* ---- helpers ---- */

static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

static uint64_t load_le(const uint8_t *p, int nbytes) {
  uint64_t v = 0;
  for (int i = nbytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = (float)mant * 0x1p-24f; /* zero and subnormals, exact */
    return sign ? -f : f;
  }
  uint32_t bits;
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13); /* Inf, NaN (payload kept) */
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  memcpy(&f, &bits, 4);
  return f;
}

static float bits_to_f32(uint32_t bits) {
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* A JSON number that is an exact non-negative integer (<= 2^53). */
static bool json_uint(const cJSON *x, uint64_t *out) {
  if (!cJSON_IsNumber(x)) return false;
  double d = x->valuedouble;
  if (!(d >= 0 && d <= EXACT_INT_MAX) || d != floor(d)) return false;
  *out = (uint64_t)d;
  return true;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(entry *const *)a)->name, (*(entry *const *)b)->name);
}

static int cmp_offsets(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int cmp_kv(const void *a, const void *b) { return strcmp(((const ml_kv *)a)->key, ((const ml_kv *)b)->key); }

void ml_safetensors_close(ml_safetensors *s) {
  if (!s) return;
  cJSON_Delete(s->root);
  free(s->buf);
  free(s->e);
  free(s->by_name);
  free(s->meta);
  free(s->path);
  free(s);
}

/* ---- reader ---- */

static ml_status parse_meta(ml_safetensors *s, const cJSON *m) {
  const char *path = s->path;
  if (cJSON_IsNull(m)) return ML_OK;
  if (!cJSON_IsObject(m)) return ml_error(ML_ERR_FORMAT, "%s: __metadata__ is not an object", path);
  int64_t n = 0;
  for (const cJSON *c = m->child; c; c = c->next) n++;
  if (n == 0) return ML_OK;
  s->meta = calloc((size_t)n, sizeof *s->meta);
  if (!s->meta) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  for (const cJSON *c = m->child; c; c = c->next) {
    if (!cJSON_IsString(c) || !c->valuestring)
      return ml_error(ML_ERR_FORMAT, "%s: __metadata__ value of '%.64s' is not a string", path, c->string);
    s->meta[s->n_meta++] = (ml_kv){c->string, c->valuestring};
  }
  /* sorted for duplicate detection; lookups are linear anyway */
  qsort(s->meta, (size_t)s->n_meta, sizeof *s->meta, cmp_kv);
  for (int64_t i = 1; i < s->n_meta; i++)
    if (!strcmp(s->meta[i - 1].key, s->meta[i].key))
      return ml_error(ML_ERR_FORMAT, "%s: duplicate __metadata__ key '%.64s'", path, s->meta[i].key);
  return ML_OK;
}

static ml_status parse_tensor(ml_safetensors *s, const cJSON *t, entry *e) {
  const char *path = s->path, *name = t->string;
  e->name = name;
  if (!cJSON_IsObject(t)) return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' is not an object", path, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
  if (!cJSON_IsString(dt) || !dt->valuestring)
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' has no dtype string", path, name);
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (!strcmp(dt->valuestring, dtypes[i].name)) e->dtype = &dtypes[i];
  if (!e->dtype)
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' has unknown dtype '%.16s'", path, name, dt->valuestring);
  if (!cJSON_IsArray(shape)) return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' has no shape array", path, name);
  int64_t dims[ML_MAX_DIMS];
  int ndim = 0;
  int64_t numel = 1;
  for (const cJSON *d = shape->child; d; d = d->next) {
    if (ndim == ML_MAX_DIMS)
      return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' has more than %d dims (metalearn tensors have at most %d)",
                      path, name, ML_MAX_DIMS, ML_MAX_DIMS);
    uint64_t v;
    if (!json_uint(d, &v))
      return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' has a shape entry that is not an integer in [0, 2^53]",
                      path, name);
    dims[ndim++] = (int64_t)v;
    if (__builtin_mul_overflow(numel, (int64_t)v, &numel))
      return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s': shape product overflows", path, name);
  }
  e->shape = ml_shape(ndim, dims);
  uint64_t b, en;
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
      !json_uint(offs->child->next, &en))
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s': data_offsets must be two integers in [0, 2^53]", path, name);
  if (en < b || en > s->data_len)
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s': data_offsets [%llu, %llu] outside the %zu-byte data", path,
                    name, (unsigned long long)b, (unsigned long long)en, s->data_len);
  size_t bytes;
  if (!ml_mul_size((size_t)numel, e->dtype->size, &bytes) || bytes != en - b)
    return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s': data_offsets span %llu bytes, but %lld %s values need %lld x %zu",
                    path, name, (unsigned long long)(en - b), (long long)numel, e->dtype->name, (long long)numel,
                    e->dtype->size);
  e->begin = (size_t)b;
  e->end = (size_t)en;
  return ML_OK;
}

static ml_status check_layout(ml_safetensors *s) {
  const char *path = s->path;
  if (s->n == 0) {
    if (s->data_len != 0) return ml_error(ML_ERR_FORMAT, "%s: %zu data bytes but no tensors", path, s->data_len);
    return ML_OK;
  }
  entry **v = s->by_name;
  for (int64_t i = 0; i < s->n; i++) v[i] = &s->e[i];
  qsort(v, (size_t)s->n, sizeof *v, cmp_offsets);
  size_t expect = 0;
  for (int64_t i = 0; i < s->n; i++) {
    if (v[i]->begin != expect)
      return ml_error(ML_ERR_FORMAT, "%s: tensor '%.64s' starts at byte %zu, expected %zu (%s)", path, v[i]->name,
                      v[i]->begin, expect, v[i]->begin < expect ? "overlap" : "hole in the data");
    expect = v[i]->end;
  }
  if (expect != s->data_len)
    return ml_error(ML_ERR_FORMAT, "%s: %zu trailing data bytes not covered by any tensor", path, s->data_len - expect);
  qsort(v, (size_t)s->n, sizeof *v, cmp_name);
  for (int64_t i = 1; i < s->n; i++)
    if (!strcmp(v[i - 1]->name, v[i]->name))
      return ml_error(ML_ERR_FORMAT, "%s: duplicate tensor name '%.64s'", path, v[i]->name);
  return ML_OK;
}

static ml_status parse(ml_safetensors *s) {
  const char *path = s->path;
  size_t size = s->data_len; /* whole file until split below */
  if (size < 8) return ml_error(ML_ERR_FORMAT, "%s: file too short (%zu bytes) to be safetensors", path, size);
  uint64_t hlen = load_le(s->buf, 8);
  if (hlen > HEADER_MAX)
    return ml_error(ML_ERR_FORMAT, "%s: header length %llu is absurd (limit 100 MB)", path, (unsigned long long)hlen);
  if (hlen > size - 8)
    return ml_error(ML_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu", path, (unsigned long long)hlen,
                    size);
  if (hlen < 2) return ml_error(ML_ERR_FORMAT, "%s: header length %llu is too small", path, (unsigned long long)hlen);
  const char *h = (const char *)s->buf + 8;
  s->data = s->buf + 8 + hlen;
  s->data_len = size - 8 - (size_t)hlen;
  if (h[0] != '{') return ml_error(ML_ERR_FORMAT, "%s: header does not start with '{'", path);
  if (!utf8_valid((const unsigned char *)h, (size_t)hlen))
    return ml_error(ML_ERR_FORMAT, "%s: header is not valid UTF-8", path);
  const char *end = NULL;
  s->root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
  if (!s->root) {
    size_t at = end && end >= h && end <= h + hlen ? (size_t)(end - h) : 0;
    return ml_error(ML_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)", path, at);
  }
  for (const char *c = end; c < h + hlen; c++)
    if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r')
      return ml_error(ML_ERR_FORMAT, "%s: junk after the header JSON at byte %zu", path, (size_t)(c - h));
  if (!cJSON_IsObject(s->root)) return ml_error(ML_ERR_FORMAT, "%s: header is not a JSON object", path);

  int64_t n = 0, n_metaobj = 0;
  for (const cJSON *c = s->root->child; c; c = c->next) {
    if (!c->string) return ml_error(ML_ERR_FORMAT, "%s: header entry without a name", path);
    if (!strcmp(c->string, "__metadata__")) n_metaobj++;
    else n++;
  }
  if (n_metaobj > 1) return ml_error(ML_ERR_FORMAT, "%s: duplicate __metadata__", path);
  s->e = calloc((size_t)(n ? n : 1), sizeof *s->e);
  s->by_name = calloc((size_t)(n ? n : 1), sizeof *s->by_name);
  if (!s->e || !s->by_name) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  for (const cJSON *c = s->root->child; c; c = c->next) {
    ml_status st = !strcmp(c->string, "__metadata__") ? parse_meta(s, c) : parse_tensor(s, c, &s->e[s->n++]);
    if (st != ML_OK) return st;
  }
  return check_layout(s);
}

ml_status ml__safetensors_parse(const char *label, void *buf, size_t size, ml_safetensors **out) {
  *out = NULL;
  ml_safetensors *s = calloc(1, sizeof *s);
  size_t plen = strlen(label) + 1;
  char *path = malloc(plen);
  if (!s || !path) {
    free(s);
    free(path);
    free(buf);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", label);
  }
  memcpy(path, label, plen);
  s->path = path;
  s->buf = buf;
  s->data_len = size;
  ml_status st = parse(s);
  if (st != ML_OK) {
    ml_safetensors_close(s);
    return st;
  }
  *out = s;
  return ML_OK;
}

ml_status ml_safetensors_open(const char *path, ml_safetensors **out) {
  if (!out) return ml_error(ML_ERR_ARG, "safetensors_open: NULL out");
  *out = NULL;
  if (!path) return ml_error(ML_ERR_ARG, "safetensors_open: NULL path");
  FILE *f = fopen(path, "rb");
  if (!f) return ml_error(errno == ENOENT ? ML_ERR_NOTFOUND : ML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return ml_error(ML_ERR_IO, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2) {
    fclose(f);
    return ml_error(ML_ERR_IO, "%s: file too large", path);
  }
  size_t size = (size_t)st.st_size;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    fclose(f);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, f);
  int err = ferror(f);
  fclose(f);
  if (got != size || err) {
    free(buf);
    return ml_error(ML_ERR_IO, "%s: read failed (%zu of %zu bytes)", path, got, size);
  }
  return ml__safetensors_parse(path, buf, size, out);
}

int64_t ml_safetensors_count(const ml_safetensors *s) { return s ? s->n : 0; }

const char *ml_safetensors_name(const ml_safetensors *s, int64_t i) {
  return s && i >= 0 && i < s->n ? s->e[i].name : NULL;
}

ml_tensor ml_safetensors_shape(const ml_safetensors *s, int64_t i) {
  if (s && i >= 0 && i < s->n) return s->e[i].shape;
  ml_tensor t;
  memset(&t, 0, sizeof t);
  return t;
}

int64_t ml_safetensors_find(const ml_safetensors *s, const char *name) {
  if (!s || !name) return -1;
  int64_t lo = 0, hi = s->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->by_name[mid]->name, name);
    if (c == 0) return s->by_name[mid] - s->e;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

ml_status ml_safetensors_read_f32(const ml_safetensors *s, int64_t i, float *dst) {
  if (!s || i < 0 || i >= s->n) return ml_error(ML_ERR_ARG, "safetensors_read_f32: no tensor %lld", (long long)i);
  const entry *e = &s->e[i];
  const uint8_t *p = s->data + e->begin;
  int64_t n = e->shape.numel;
  if (n > 0 && !dst) return ml_error(ML_ERR_ARG, "safetensors_read_f32: NULL destination");
  switch (e->dtype->id) {
  case DT_F32:
    for (int64_t k = 0; k < n; k++) dst[k] = bits_to_f32((uint32_t)load_le(p + 4 * k, 4));
    break;
  case DT_F64:
    for (int64_t k = 0; k < n; k++) {
      uint64_t b = load_le(p + 8 * k, 8);
      double d;
      memcpy(&d, &b, 8);
      dst[k] = (float)d;
    }
    break;
  case DT_F16:
    for (int64_t k = 0; k < n; k++) dst[k] = f16_to_f32((uint16_t)load_le(p + 2 * k, 2));
    break;
  case DT_BF16:
    for (int64_t k = 0; k < n; k++) dst[k] = bits_to_f32((uint32_t)load_le(p + 2 * k, 2) << 16);
    break;
  case DT_I64:
    for (int64_t k = 0; k < n; k++) dst[k] = (float)(int64_t)load_le(p + 8 * k, 8);
    break;
  case DT_I32:
    for (int64_t k = 0; k < n; k++) dst[k] = (float)(int32_t)(uint32_t)load_le(p + 4 * k, 4);
    break;
  default:
    return ml_error(ML_ERR_UNSUPPORTED, "%s: tensor '%.64s': dtype %s cannot be read as float32", s->path, e->name,
                    e->dtype->name);
  }
  return ML_OK;
}

const char *ml_safetensors_meta(const ml_safetensors *s, const char *key) {
  if (!s || !key) return NULL;
  for (int64_t i = 0; i < s->n_meta; i++)
    if (!strcmp(s->meta[i].key, key)) return s->meta[i].value;
  return NULL;
}

/* ---- writer ---- */

static cJSON *raw_int(int64_t v) {
  char b[32];
  snprintf(b, sizeof b, "%lld", (long long)v);
  return cJSON_CreateRaw(b);
}

static bool add_raw(cJSON *arr, int64_t v) {
  cJSON *x = raw_int(v);
  return x && cJSON_AddItemToArray(arr, x);
}

static ml_status build_header(const char *path, const ml_named_tensor *tensors, int64_t n, const ml_kv *metadata,
                              int64_t n_meta, cJSON *root) {
  if (n_meta > 0) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    if (!m) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n_meta; i++) {
      const char *k = metadata[i].key, *v = metadata[i].value;
      if (!k || !v) return ml_error(ML_ERR_ARG, "%s: metadata entry %lld is NULL", path, (long long)i);
      if (!utf8_valid((const unsigned char *)k, strlen(k)) || !utf8_valid((const unsigned char *)v, strlen(v)))
        return ml_error(ML_ERR_ARG, "%s: metadata '%.64s' is not valid UTF-8", path, k);
      if (cJSON_GetObjectItemCaseSensitive(m, k))
        return ml_error(ML_ERR_ARG, "%s: duplicate metadata key '%.64s'", path, k);
      if (!cJSON_AddStringToObject(m, k, v)) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    }
  }
  int64_t offset = 0;
  for (int64_t i = 0; i < n; i++) {
    const char *name = tensors[i].name;
    const ml_tensor *t = &tensors[i].t;
    if (!name || !*name) return ml_error(ML_ERR_ARG, "%s: tensor %lld has no name", path, (long long)i);
    if (!strcmp(name, "__metadata__")) return ml_error(ML_ERR_ARG, "%s: '__metadata__' is reserved", path);
    if (!utf8_valid((const unsigned char *)name, strlen(name)))
      return ml_error(ML_ERR_ARG, "%s: tensor name '%.64s' is not valid UTF-8", path, name);
    int64_t prod = 1;
    bool shape_ok = t->ndim >= 0 && t->ndim <= ML_MAX_DIMS;
    for (int d = 0; shape_ok && d < t->ndim; d++)
      shape_ok = t->shape[d] >= 0 && !__builtin_mul_overflow(prod, t->shape[d], &prod);
    if (!shape_ok || prod != t->numel || (t->numel > 0 && !t->data))
      return ml_error(ML_ERR_ARG, "%s: tensor '%.64s' has an invalid shape or no data", path, name);
    if (cJSON_GetObjectItemCaseSensitive(root, name))
      return ml_error(ML_ERR_ARG, "%s: duplicate tensor name '%.64s'", path, name);
    int64_t bytes, end;
    if (__builtin_mul_overflow(t->numel, (int64_t)4, &bytes) || __builtin_add_overflow(offset, bytes, &end) ||
        end > (int64_t)EXACT_INT_MAX)
      return ml_error(ML_ERR_ARG, "%s: tensors too large", path);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToObject(root, name, o)) {
      cJSON_Delete(o);
      return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    }
    cJSON *shape = NULL, *offs = NULL;
    bool ok = cJSON_AddStringToObject(o, "dtype", "F32") && (shape = cJSON_AddArrayToObject(o, "shape")) &&
              (offs = cJSON_AddArrayToObject(o, "data_offsets"));
    for (int d = 0; d < t->ndim; d++) ok = ok && add_raw(shape, t->shape[d]);
    ok = ok && add_raw(offs, offset) && add_raw(offs, end);
    if (!ok) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    offset = end;
  }
  return ML_OK;
}

static ml_status write_f32_le(ml_atomic_file *f, const float *x, int64_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return ml_atomic_write(f, x, (size_t)n * sizeof(float));
#else
  uint8_t b[4096];
  for (int64_t i = 0; i < n;) {
    size_t k = 0;
    for (; k < sizeof b && i < n; k += 4, i++) {
      uint32_t u;
      memcpy(&u, &x[i], 4);
      b[k] = (uint8_t)u, b[k + 1] = (uint8_t)(u >> 8), b[k + 2] = (uint8_t)(u >> 16), b[k + 3] = (uint8_t)(u >> 24);
    }
    ml_status st = ml_atomic_write(f, b, k);
    if (st != ML_OK) return st;
  }
  return ML_OK;
#endif
}

ml_status ml_safetensors_write(const char *path, const ml_named_tensor *tensors, int64_t n, const ml_kv *metadata,
                               int64_t n_meta) {
  if (!path) return ml_error(ML_ERR_ARG, "safetensors_write: NULL path");
  if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && !metadata))
    return ml_error(ML_ERR_ARG, "%s: invalid tensor or metadata list", path);
  cJSON *root = cJSON_CreateObject();
  if (!root) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  ml_status st = build_header(path, tensors, n, metadata, n_meta, root);
  char *json = st == ML_OK ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (st != ML_OK) return st;
  if (!json) return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  size_t len = strlen(json), padded = (len + 7) / 8 * 8;
  char *hdr = malloc(8 + padded);
  if (!hdr) {
    free(json);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  }
  for (int i = 0; i < 8; i++) hdr[i] = (char)(uint8_t)((uint64_t)padded >> (8 * i));
  memcpy(hdr + 8, json, len);
  memset(hdr + 8 + len, ' ', padded - len);
  free(json);
  ml_atomic_file *f = ml_atomic_open(path);
  if (!f) {
    free(hdr);
    return ml_last_status();
  }
  st = ml_atomic_write(f, hdr, 8 + padded);
  free(hdr);
  for (int64_t i = 0; i < n && st == ML_OK; i++) st = write_f32_le(f, tensors[i].t.data, tensors[i].t.numel);
  if (st != ML_OK) {
    ml_atomic_abort(f);
    return st;
  }
  return ml_atomic_commit(f);
}
