/* MovieLens readers (100K, 1M, CSV releases) into ml_ratings, and their decoded-data cache.
 * Files are read whole (at most MAX_FILE bytes) and parsed line by line; every field is checked
 * and a bad one is reported as "file:line: what", so hostile input ends in an error, never in a
 * crash or a silently wrong table. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/internal.h"
#include "metalearn/io.h"
#include "metalearn/ratings.h"

#define MAX_FILE ((size_t)1 << 30) /* 1 GiB: the 25M CSV release is 650 MB */
#define MAX_LINE 65536
#define MAX_FIELDS 32
#define MAX_ROWS ((int64_t)1 << 31) /* indices are int32 */

static const char *genres_100k[19] = {"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                                      "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                                      "Romance", "Sci-Fi", "Thriller", "War", "Western"};
/* The 1M README's occupation codes 0..20. */
static const char *occ_1m[21] = {"other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                                 "customer service", "doctor/health care", "executive/managerial", "farmer",
                                 "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
                                 "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
                                 "unemployed", "writer"};

/* ---- reading and splitting lines ---- */
typedef struct {
  const char *path;
  char *buf;
  size_t len, pos;
  int64_t line;
} reader;

static ml_status reader_open(reader *rd, const char *path) {
  memset(rd, 0, sizeof *rd);
  rd->path = path;
  FILE *f = fopen(path, "rb");
  if (!f) return ml_error(ML_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > MAX_FILE) {
    fclose(f);
    return ml_error(ML_ERR_FORMAT, "%s: not a regular file of at most %zu bytes", path, MAX_FILE);
  }
  size_t n = (size_t)st.st_size;
  rd->buf = malloc(n + 1);
  if (!rd->buf) {
    fclose(f);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  }
  size_t got = fread(rd->buf, 1, n, f);
  fclose(f);
  if (got != n) {
    free(rd->buf);
    rd->buf = NULL;
    return ml_error(ML_ERR_IO, "%s: short read", path);
  }
  rd->buf[n] = 0;
  rd->len = n;
  return ML_OK;
}

/* Next non-empty line (CR stripped, NUL-terminated in place); NULL at the end. */
static ml_status reader_next(reader *rd, char **line) {
  *line = NULL;
  while (rd->pos < rd->len) {
    char *s = rd->buf + rd->pos;
    char *e = memchr(s, '\n', rd->len - rd->pos);
    size_t n = e ? (size_t)(e - s) : rd->len - rd->pos;
    rd->pos += n + (e ? 1 : 0);
    rd->line++;
    if (n > MAX_LINE) return ml_error(ML_ERR_FORMAT, "%s:%lld: line longer than %d bytes", rd->path, (long long)rd->line, MAX_LINE);
    s[n] = 0;
    if (n && s[n - 1] == '\r') s[--n] = 0;
    if (memchr(s, 0, n)) return ml_error(ML_ERR_FORMAT, "%s:%lld: NUL byte in a text line", rd->path, (long long)rd->line);
    if (n == 0) continue;
    *line = s;
    return ML_OK;
  }
  return ML_OK;
}

/* Splits in place on sep (a 1- or 2-char string such as "\t", "|", "::"); quote = CSV quoting.
 * Returns the field count, or -1 when there are more than max fields or a quote is unbalanced. */
static int split(char *s, const char *sep, bool quote, char **f, int max) {
  size_t sl = strlen(sep);
  int n = 0;
  for (;;) {
    if (n == max) return -1;
    if (quote && *s == '"') {
      char *w = s, *r = s + 1;
      f[n++] = w;
      for (;;) {
        if (!*r) return -1;
        if (*r == '"') {
          if (r[1] == '"') {
            *w++ = '"', r += 2;
            continue;
          }
          r++;
          break;
        }
        *w++ = *r++;
      }
      if (*r && strncmp(r, sep, sl)) return -1;
      bool more = *r != 0;
      *w = 0;
      if (!more) return n;
      s = r + sl;
      continue;
    }
    f[n++] = s;
    char *e = strstr(s, sep);
    if (!e) return n;
    *e = 0;
    s = e + sl;
  }
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  if (!*s) return false;
  char *e;
  errno = 0;
  long long v = strtoll(s, &e, 10);
  if (errno || *e || v < lo || v > hi) return false;
  *out = v;
  return true;
}

#define FAIL(rd, ...) fail_at(rd, __VA_ARGS__)
static ml_status fail_at(const reader *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ml_status fail_at(const reader *rd, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ml_error(ML_ERR_FORMAT, "%s:%lld: %s", rd->path, (long long)rd->line, msg);
}

/* ---- growable arrays ---- */
static bool grow(void **p, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  int64_t c = *cap ? *cap * 2 : 1024;
  while (c < need) c *= 2;
  void *q = realloc(*p, (size_t)c * elem);
  if (!q) return false;
  *p = q, *cap = c;
  return true;
}

/* ---- features ---- */
static uint8_t age_bucket_years(int64_t a) {
  if (a < 18) return 1;
  if (a < 25) return 2;
  if (a < 35) return 3;
  if (a < 45) return 4;
  if (a < 50) return 5;
  if (a < 56) return 6;
  return 7;
}

static uint8_t year_bucket(int64_t y) {
  if (y < 1800 || y > 2100) return 0;
  if (y < 1940) return 1;
  if (y < 1990) return (uint8_t)(2 + (y - 1940) / 10); /* 1940s .. 1980s: 2..6 */
  if (y < 1995) return 7;
  if (y < 2000) return 8;
  if (y < 2010) return 9;
  return 10;
}

/* Year from a trailing "(YYYY)" in a title, or 0. */
static int64_t title_year(const char *t) {
  size_t n = strlen(t);
  while (n && t[n - 1] == ' ') n--;
  if (n < 6 || t[n - 1] != ')' || t[n - 6] != '(') return 0;
  int64_t y = 0;
  for (size_t i = n - 5; i < n - 1; i++) {
    if (t[i] < '0' || t[i] > '9') return 0;
    y = y * 10 + (t[i] - '0');
  }
  return y;
}

static uint8_t zip_bucket(const char *z) { return (z[0] >= '0' && z[0] <= '9') ? (uint8_t)(1 + z[0] - '0') : 0; }

void ml_latin1_to_utf8(const char *in, char *out, size_t cap) {
  size_t o = 0;
  if (!cap) return;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    if (*p < 0x80) {
      if (o + 1 >= cap) break;
      out[o++] = (char)*p;
    } else {
      if (o + 2 >= cap) break;
      out[o++] = (char)(0xC0 | (*p >> 6));
      out[o++] = (char)(0x80 | (*p & 0x3F));
    }
  }
  out[o] = 0;
}

/* ---- the loader's working state ---- */
typedef struct {
  int64_t *id;
  char **title;
  uint32_t *genres;
  uint8_t *year;
  int64_t n, cap;
} items_tmp;

typedef struct {
  int64_t *id;
  uint8_t *gender, *age, *occ, *zip;
  int64_t n, cap;
} users_tmp;

typedef struct {
  int64_t uid, iid, time, line;
  float r;
  int32_t u, i;
} rating_tmp;

typedef struct {
  char *names[ML_RATINGS_MAX_GENRES];
  int64_t n;
} vocab;

static int vocab_index(vocab *v, const char *name, int64_t cap) {
  for (int64_t i = 0; i < v->n; i++)
    if (!strcmp(v->names[i], name)) return (int)i;
  if (v->n >= cap) return -1;
  v->names[v->n] = strdup(name);
  if (!v->names[v->n]) return -2;
  return (int)v->n++;
}

static void vocab_free(vocab *v) {
  for (int64_t i = 0; i < v->n; i++) free(v->names[i]);
  v->n = 0;
}

static ml_status items_push(items_tmp *it, const reader *rd, int64_t id, const char *title, uint32_t genres,
                            uint8_t year, bool latin1) {
  if (it->n >= MAX_ROWS) return FAIL(rd, "too many items");
  int64_t c0 = it->cap;
  if (!grow((void **)&it->id, &c0, it->n + 1, sizeof(int64_t))) return ml_error(ML_ERR_NOMEM, "out of memory");
  int64_t c = it->cap;
  if (!grow((void **)&it->title, &c, it->n + 1, sizeof(char *))) return ml_error(ML_ERR_NOMEM, "out of memory");
  c = it->cap;
  if (!grow((void **)&it->genres, &c, it->n + 1, sizeof(uint32_t))) return ml_error(ML_ERR_NOMEM, "out of memory");
  c = it->cap;
  if (!grow((void **)&it->year, &c, it->n + 1, 1)) return ml_error(ML_ERR_NOMEM, "out of memory");
  it->cap = c0;
  size_t cap = strlen(title) * 2 + 1;
  char *t = malloc(cap);
  if (!t) return ml_error(ML_ERR_NOMEM, "out of memory");
  if (latin1) ml_latin1_to_utf8(title, t, cap);
  else memcpy(t, title, strlen(title) + 1);
  it->id[it->n] = id, it->title[it->n] = t, it->genres[it->n] = genres, it->year[it->n] = year;
  it->n++;
  return ML_OK;
}

static void items_free(items_tmp *it) {
  for (int64_t i = 0; i < it->n; i++) free(it->title[i]);
  free(it->id), free(it->title), free(it->genres), free(it->year);
  memset(it, 0, sizeof *it);
}

static void users_free(users_tmp *u) {
  free(u->id), free(u->gender), free(u->age), free(u->occ), free(u->zip);
  memset(u, 0, sizeof *u);
}

static ml_status users_push(users_tmp *u, const reader *rd, int64_t id, uint8_t g, uint8_t a, uint8_t o, uint8_t z) {
  if (u->n >= MAX_ROWS) return FAIL(rd, "too many users");
  int64_t c0 = u->cap, c;
  bool ok = grow((void **)&u->id, &c0, u->n + 1, sizeof(int64_t));
  c = u->cap, ok = ok && grow((void **)&u->gender, &c, u->n + 1, 1);
  c = u->cap, ok = ok && grow((void **)&u->age, &c, u->n + 1, 1);
  c = u->cap, ok = ok && grow((void **)&u->occ, &c, u->n + 1, 1);
  c = u->cap, ok = ok && grow((void **)&u->zip, &c, u->n + 1, 1);
  if (!ok) return ml_error(ML_ERR_NOMEM, "out of memory");
  u->cap = c0;
  u->id[u->n] = id, u->gender[u->n] = g, u->age[u->n] = a, u->occ[u->n] = o, u->zip[u->n] = z;
  u->n++;
  return ML_OK;
}

/* Genre list "A|B|C" into a bitmask over the vocabulary. */
static ml_status genre_list(const reader *rd, char *s, vocab *v, uint32_t *mask) {
  *mask = 0;
  if (!strcmp(s, "(no genres listed)") || !*s) return ML_OK;
  char *f[MAX_FIELDS + 1];
  int n = split(s, "|", false, f, MAX_FIELDS);
  if (n < 0) return FAIL(rd, "more than %d genres", MAX_FIELDS);
  for (int k = 0; k < n; k++) {
    if (!*f[k]) return FAIL(rd, "empty genre name");
    int g = vocab_index(v, f[k], ML_RATINGS_MAX_GENRES);
    if (g == -2) return ml_error(ML_ERR_NOMEM, "out of memory");
    if (g < 0) return FAIL(rd, "more than %d distinct genres", ML_RATINGS_MAX_GENRES);
    *mask |= 1u << g;
  }
  return ML_OK;
}

static ml_status read_items(const char *path, ml_ratings_format fmt, items_tmp *it, vocab *gv) {
  reader rd;
  ml_status st = reader_open(&rd, path);
  if (st) return st;
  char *line, *f[MAX_FIELDS];
  bool header = fmt == ML_RATINGS_CSV;
  if (fmt == ML_RATINGS_100K)
    for (int g = 0; g < 19; g++) vocab_index(gv, genres_100k[g], ML_RATINGS_MAX_GENRES);
  while (!st && !(st = reader_next(&rd, &line)) && line) {
    if (header) {
      header = false;
      if (!strncmp(line, "movieId", 7)) continue;
    }
    int n = split(line, fmt == ML_RATINGS_100K ? "|" : fmt == ML_RATINGS_1M ? "::" : ",", fmt == ML_RATINGS_CSV, f,
                  MAX_FIELDS);
    int64_t id;
    uint32_t mask = 0;
    int64_t year = 0;
    if (fmt == ML_RATINGS_100K) {
      if (n != 24) {
        st = FAIL(&rd, "expected 24 '|'-separated fields (id|title|date|video|url|19 genre flags), got %d", n);
        break;
      }
      for (int g = 0; g < 19 && !st; g++) {
        if (strcmp(f[5 + g], "0") && strcmp(f[5 + g], "1")) st = FAIL(&rd, "genre flag %d is '%s', not 0 or 1", g + 1, f[5 + g]);
        else if (f[5 + g][0] == '1') mask |= 1u << g;
      }
      if (st) break;
      size_t dl = strlen(f[2]);
      if (dl >= 4) parse_i64(f[2] + dl - 4, 0, 9999, &year);
      if (!year) year = title_year(f[1]);
    } else {
      if (n != 3) {
        st = FAIL(&rd, "expected 3 fields (movie id, title, genres), got %d", n);
        break;
      }
      if ((st = genre_list(&rd, f[2], gv, &mask))) break;
      year = title_year(f[1]);
    }
    if (!parse_i64(f[0], 0, INT64_MAX, &id)) {
      st = FAIL(&rd, "movie id '%s' is not a non-negative integer", f[0]);
      break;
    }
    st = items_push(it, &rd, id, f[1], mask, year_bucket(year), fmt == ML_RATINGS_100K);
  }
  if (!st && it->n == 0) st = ml_error(ML_ERR_FORMAT, "%s:%lld: no movies (empty file)", path, (long long)rd.line + 1);
  free(rd.buf);
  return st;
}

static ml_status read_users(const char *path, ml_ratings_format fmt, users_tmp *u, vocab *ov) {
  reader rd;
  ml_status st = reader_open(&rd, path);
  if (st) return st;
  char *line, *f[MAX_FIELDS];
  while (!st && !(st = reader_next(&rd, &line)) && line) {
    int n = split(line, fmt == ML_RATINGS_100K ? "|" : "::", false, f, MAX_FIELDS);
    if (n != 5) {
      st = FAIL(&rd, "expected 5 fields (user id, %s), got %d",
                fmt == ML_RATINGS_100K ? "age|gender|occupation|zip" : "gender::age::occupation::zip", n);
      break;
    }
    int64_t id, v;
    const char *gs = fmt == ML_RATINGS_100K ? f[2] : f[1];
    const char *as = fmt == ML_RATINGS_100K ? f[1] : f[2];
    uint8_t g = 0, a = 0, o = 0;
    if (!parse_i64(f[0], 0, INT64_MAX, &id)) {
      st = FAIL(&rd, "user id '%s' is not a non-negative integer", f[0]);
      break;
    }
    if (!strcmp(gs, "M")) g = 1;
    else if (!strcmp(gs, "F")) g = 2;
    else {
      st = FAIL(&rd, "gender '%s' is not M or F", gs);
      break;
    }
    if (fmt == ML_RATINGS_100K) {
      if (!parse_i64(as, 0, 150, &v)) {
        st = FAIL(&rd, "age '%s' is not an integer 0-150", as);
        break;
      }
      a = age_bucket_years(v);
      int k = vocab_index(ov, f[3], ML_RATINGS_N_OCC - 1);
      if (k == -2) st = ml_error(ML_ERR_NOMEM, "out of memory");
      o = k >= 0 ? (uint8_t)(k + 1) : 0; /* beyond the table: unknown */
    } else {
      static const int codes[7] = {1, 18, 25, 35, 45, 50, 56};
      if (!parse_i64(as, 0, 100, &v)) v = -1;
      for (int k = 0; k < 7; k++)
        if (v == codes[k]) a = (uint8_t)(k + 1);
      if (!a) {
        st = FAIL(&rd, "age code '%s' is not one of 1, 18, 25, 35, 45, 50, 56", as);
        break;
      }
      if (!parse_i64(f[3], 0, 20, &v)) {
        st = FAIL(&rd, "occupation code '%s' is not an integer 0-20", f[3]);
        break;
      }
      o = (uint8_t)(v + 1);
    }
    if (!st) st = users_push(u, &rd, id, g, a, o, zip_bucket(f[4]));
  }
  if (!st && u->n == 0) st = ml_error(ML_ERR_FORMAT, "%s:%lld: no users (empty file)", path, (long long)rd.line + 1);
  free(rd.buf);
  return st;
}

static ml_status read_ratings(const char *path, ml_ratings_format fmt, rating_tmp **out, int64_t *n_out) {
  reader rd;
  ml_status st = reader_open(&rd, path);
  if (st) return st;
  rating_tmp *r = NULL;
  int64_t n = 0, cap = 0;
  char *line, *f[MAX_FIELDS];
  bool header = fmt == ML_RATINGS_CSV;
  float lo = fmt == ML_RATINGS_CSV ? 0.5f : 1.0f, step = fmt == ML_RATINGS_CSV ? 0.5f : 1.0f;
  while (!st && !(st = reader_next(&rd, &line)) && line) {
    if (header) {
      header = false;
      if (!strncmp(line, "userId", 6)) continue;
    }
    int k = split(line, fmt == ML_RATINGS_100K ? "\t" : fmt == ML_RATINGS_1M ? "::" : ",", false, f, MAX_FIELDS);
    if (k != 4) {
      st = FAIL(&rd, "expected 4 fields (user, item, rating, timestamp), got %d", k);
      break;
    }
    rating_tmp t;
    if (!parse_i64(f[0], 0, INT64_MAX, &t.uid)) st = FAIL(&rd, "user id '%s' is not a non-negative integer", f[0]);
    else if (!parse_i64(f[1], 0, INT64_MAX, &t.iid)) st = FAIL(&rd, "item id '%s' is not a non-negative integer", f[1]);
    else if (!parse_i64(f[3], 0, INT64_MAX, &t.time)) st = FAIL(&rd, "timestamp '%s' is not a non-negative integer", f[3]);
    if (st) break;
    char *e;
    errno = 0;
    double v = strtod(f[2], &e);
    if (!*f[2] || *e || errno || !isfinite(v)) {
      st = FAIL(&rd, "rating '%s' is not a number", f[2]);
      break;
    }
    double q = (v - lo) / step;
    if (v < lo || v > 5.0 || fabs(q - floor(q + 0.5)) > 1e-6) {
      st = FAIL(&rd, "rating %s outside the scale %g-5 in steps of %g", f[2], lo, step);
      break;
    }
    t.r = (float)v;
    t.line = rd.line;
    if (n >= MAX_ROWS) {
      st = FAIL(&rd, "more than %lld ratings", (long long)MAX_ROWS);
      break;
    }
    if (!grow((void **)&r, &cap, n + 1, sizeof *r)) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
      break;
    }
    r[n++] = t;
  }
  if (!st && n == 0) st = ml_error(ML_ERR_FORMAT, "%s:%lld: no ratings (empty file)", path, (long long)rd.line + 1);
  free(rd.buf);
  if (st) {
    free(r);
    return st;
  }
  *out = r, *n_out = n;
  return ML_OK;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int cmp_rating(const void *a, const void *b) {
  const rating_tmp *x = a, *y = b;
  if (x->u != y->u) return (x->u > y->u) - (x->u < y->u);
  if (x->time != y->time) return (x->time > y->time) - (x->time < y->time);
  return (x->i > y->i) - (x->i < y->i);
}

static int64_t find_id(const int64_t *ids, int64_t n, int64_t id) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && ids[lo] == id ? lo : -1;
}

static char **names_dup(char *const *names, int64_t n) {
  return ml__names_new((const char *const *)names, n);
}

void ml_ratings_free(ml_ratings *r) {
  if (!r) return;
  free(r->user), free(r->item), free(r->rating), free(r->time), free(r->user_offset), free(r->user_id);
  free(r->item_id), free(r->gender), free(r->age), free(r->occupation), free(r->zip), free(r->year), free(r->genres);
  free(r->genre_names), free(r->occupation_names), free(r->titles);
  memset(r, 0, sizeof *r);
}

/* Allocates every array of r for the given sizes (strings separately). */
static ml_status ratings_alloc(ml_ratings *r, int64_t nu, int64_t ni, int64_t nr) {
  r->n_users = nu, r->n_items = ni, r->n_ratings = nr;
  r->user = malloc((size_t)nr * sizeof(int32_t));
  r->item = malloc((size_t)nr * sizeof(int32_t));
  r->rating = malloc((size_t)nr * sizeof(float));
  r->time = malloc((size_t)nr * sizeof(int64_t));
  r->user_offset = calloc((size_t)nu + 1, sizeof(int64_t));
  r->user_id = malloc((size_t)nu * sizeof(int64_t) + 1);
  r->item_id = malloc((size_t)ni * sizeof(int64_t) + 1);
  r->gender = calloc((size_t)nu + 1, 1), r->age = calloc((size_t)nu + 1, 1);
  r->occupation = calloc((size_t)nu + 1, 1), r->zip = calloc((size_t)nu + 1, 1);
  r->year = calloc((size_t)ni + 1, 1);
  r->genres = calloc((size_t)ni + 1, sizeof(uint32_t));
  if (!r->user || !r->item || !r->rating || !r->time || !r->user_offset || !r->user_id || !r->item_id || !r->gender ||
      !r->age || !r->occupation || !r->zip || !r->year || !r->genres) {
    ml_ratings_free(r);
    return ml_error(ML_ERR_NOMEM, "ratings: out of memory");
  }
  return ML_OK;
}

static ml_status parse_dir(const char *const *paths, ml_ratings_format fmt, ml_ratings *out) {
  const char *rpath = paths[0], *upath = paths[1], *ipath = paths[2];
  items_tmp it = {0};
  users_tmp us = {0};
  vocab gv = {{0}, 0}, ov = {{0}, 0};
  rating_tmp *rt = NULL;
  int64_t nr = 0;
  int64_t *uids = NULL, *iids = NULL;
  ml_status st = ML_OK;
  if (ipath) st = read_items(ipath, fmt, &it, &gv);
  if (!st && upath) st = read_users(upath, fmt, &us, &ov);
  if (!st) st = read_ratings(rpath, fmt, &rt, &nr);
  /* dense ids: items from the items file when there is one, else from the ratings */
  int64_t ni = 0, nu = 0;
  if (!st) {
    uids = malloc((size_t)nr * sizeof(int64_t));
    iids = malloc((size_t)(ipath ? it.n : nr) * sizeof(int64_t));
    if (!uids || !iids) st = ml_error(ML_ERR_NOMEM, "ratings: out of memory");
  }
  if (!st) {
    for (int64_t k = 0; k < nr; k++) uids[nu++] = rt[k].uid;
    qsort(uids, (size_t)nu, sizeof *uids, cmp_i64);
    int64_t m = 0;
    for (int64_t k = 0; k < nu; k++)
      if (!m || uids[k] != uids[m - 1]) uids[m++] = uids[k];
    nu = m;
    if (ipath) {
      for (int64_t k = 0; k < it.n; k++) iids[k] = it.id[k];
      ni = it.n;
    } else
      for (int64_t k = 0; k < nr; k++) iids[ni++] = rt[k].iid;
    qsort(iids, (size_t)ni, sizeof *iids, cmp_i64);
    m = 0;
    for (int64_t k = 0; k < ni; k++) {
      if (m && iids[k] == iids[m - 1]) {
        if (ipath) {
          st = ml_error(ML_ERR_FORMAT, "%s: movie id %lld listed twice", ipath, (long long)iids[k]);
          break;
        }
        continue;
      }
      iids[m++] = iids[k];
    }
    ni = m;
  }
  if (!st) {
    for (int64_t k = 0; k < nr && !st; k++) {
      rt[k].u = (int32_t)find_id(uids, nu, rt[k].uid);
      int64_t i = find_id(iids, ni, rt[k].iid);
      if (i < 0) st = ml_error(ML_ERR_FORMAT, "%s:%lld: item %lld is not in %s", rpath, (long long)rt[k].line,
                               (long long)rt[k].iid, ipath);
      rt[k].i = (int32_t)i;
    }
  }
  if (!st) st = ratings_alloc(out, nu, ni, nr);
  if (!st) {
    out->format = fmt;
    qsort(rt, (size_t)nr, sizeof *rt, cmp_rating);
    for (int64_t k = 0; k < nr; k++) {
      if (k && rt[k].u == rt[k - 1].u && rt[k].i == rt[k - 1].i && rt[k].time == rt[k - 1].time) {
        st = ml_error(ML_ERR_FORMAT, "%s: user %lld rated item %lld twice at the same time", rpath,
                      (long long)rt[k].uid, (long long)rt[k].iid);
        break;
      }
      out->user[k] = rt[k].u, out->item[k] = rt[k].i, out->rating[k] = rt[k].r, out->time[k] = rt[k].time;
      out->user_offset[rt[k].u + 1]++;
    }
    for (int64_t u = 0; u < nu; u++) out->user_offset[u + 1] += out->user_offset[u];
    memcpy(out->user_id, uids, (size_t)nu * sizeof(int64_t));
    memcpy(out->item_id, iids, (size_t)ni * sizeof(int64_t));
    for (int64_t k = 0; k < us.n && !st; k++) {
      int64_t u = find_id(uids, nu, us.id[k]);
      if (u < 0) continue; /* a user without ratings */
      out->gender[u] = us.gender[k], out->age[u] = us.age[k], out->occupation[u] = us.occ[k], out->zip[u] = us.zip[k];
    }
    const char *empty = "";
    const char **titles = calloc((size_t)ni + 1, sizeof(char *));
    if (!titles) st = ml_error(ML_ERR_NOMEM, "ratings: out of memory");
    for (int64_t i = 0; i < ni && !st; i++) titles[i] = empty;
    for (int64_t k = 0; k < it.n && !st; k++) {
      int64_t i = find_id(iids, ni, it.id[k]);
      titles[i] = it.title[k];
      out->year[i] = it.year[k], out->genres[i] = it.genres[k];
    }
    if (!st) out->titles = ml__names_new(titles, ni);
    free(titles);
    out->n_genres = gv.n;
    out->genre_names = names_dup(gv.names, gv.n);
    const char *occ[ML_RATINGS_N_OCC];
    for (int k = 0; k < ML_RATINGS_N_OCC; k++) occ[k] = "";
    occ[0] = "unknown";
    if (fmt == ML_RATINGS_1M)
      for (int k = 0; k < 21; k++) occ[k + 1] = occ_1m[k];
    else
      for (int64_t k = 0; k < ov.n; k++) occ[k + 1] = ov.names[k];
    out->occupation_names = ml__names_new(occ, ML_RATINGS_N_OCC);
    if (!st && (!out->titles || !out->genre_names || !out->occupation_names)) st = ml_error(ML_ERR_NOMEM, "ratings: out of memory");
    out->rating_min = fmt == ML_RATINGS_CSV ? 0.5f : 1.0f, out->rating_max = 5.0f;
    out->rating_step = fmt == ML_RATINGS_CSV ? 0.5f : 1.0f;
    if (st) ml_ratings_free(out);
  }
  free(rt), free(uids), free(iids);
  items_free(&it), users_free(&us), vocab_free(&gv), vocab_free(&ov);
  return st;
}

/* ---- cache ----
 * "MLRTCACH" u32 version u32 format | u64 key_len, key | i64 n_users n_items n_ratings n_genres
 * | f32 min max step | arrays | u64 blob lengths and blobs (titles, genre names, occupations)
 * | u64 FNV-1a of all before. */
#define RCACHE_MAGIC "MLRTCACH"
#define RCACHE_VERSION 1u

typedef struct {
  char *buf;
  size_t len, cap;
  bool failed;
} wbuf;

static void put(wbuf *w, const void *p, size_t n) {
  if (w->failed) return;
  if (w->len + n > w->cap) {
    size_t c = w->cap ? w->cap : 1 << 16;
    while (c < w->len + n) c *= 2;
    char *b = realloc(w->buf, c);
    if (!b) {
      w->failed = true;
      return;
    }
    w->buf = b, w->cap = c;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void put_u64(wbuf *w, uint64_t v) { put(w, &v, 8); }

static void put_names(wbuf *w, char *const *names, int64_t n) {
  size_t len = 0;
  for (int64_t i = 0; i < n; i++) len += strlen(names[i]) + 1;
  put_u64(w, len);
  for (int64_t i = 0; i < n; i++) put(w, names[i], strlen(names[i]) + 1);
}

/* mkdir -p of the cache file's directory */
static void make_parent(const char *path) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return;
  char *slash = strrchr(tmp, '/');
  if (!slash || slash == tmp) return;
  *slash = 0;
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  mkdir(tmp, 0755);
}

static void cache_write(const char *path, const char *key, const ml_ratings *r) {
  wbuf w = {0};
  make_parent(path);
  uint32_t hdr[2] = {RCACHE_VERSION, (uint32_t)r->format};
  put(&w, RCACHE_MAGIC, 8), put(&w, hdr, 8);
  put_u64(&w, strlen(key)), put(&w, key, strlen(key));
  int64_t sz[4] = {r->n_users, r->n_items, r->n_ratings, r->n_genres};
  float sc[3] = {r->rating_min, r->rating_max, r->rating_step};
  put(&w, sz, sizeof sz), put(&w, sc, sizeof sc);
  size_t nr = (size_t)r->n_ratings, nu = (size_t)r->n_users, ni = (size_t)r->n_items;
  put(&w, r->user, nr * 4), put(&w, r->item, nr * 4), put(&w, r->rating, nr * 4), put(&w, r->time, nr * 8);
  put(&w, r->user_offset, (nu + 1) * 8), put(&w, r->user_id, nu * 8), put(&w, r->item_id, ni * 8);
  put(&w, r->gender, nu), put(&w, r->age, nu), put(&w, r->occupation, nu), put(&w, r->zip, nu);
  put(&w, r->year, ni), put(&w, r->genres, ni * 4);
  put_names(&w, r->titles, r->n_items), put_names(&w, r->genre_names, r->n_genres);
  put_names(&w, r->occupation_names, ML_RATINGS_N_OCC);
  if (!w.failed) put_u64(&w, ml__fnv1a(0, w.buf, w.len));
  if (!w.failed && ml_write_file_atomic(path, w.buf, w.len))
    ml_logf(ML_LOG_WARN, "ratings cache %s not written: %s", path, ml_last_error());
  free(w.buf);
}

typedef struct {
  const char *p;
  size_t len, pos;
  bool bad;
} rbuf;

static void get(rbuf *b, void *dst, size_t n) {
  if (b->bad || n > b->len - b->pos) {
    b->bad = true;
    return;
  }
  memcpy(dst, b->p + b->pos, n);
  b->pos += n;
}

static char **get_names(rbuf *b, int64_t n) {
  uint64_t len = 0;
  get(b, &len, 8);
  if (b->bad || len > b->len - b->pos) {
    b->bad = true;
    return NULL;
  }
  char **names = ml__names_from_blob(b->p + b->pos, (size_t)len, n);
  b->pos += len;
  if (!names) b->bad = true;
  return names;
}

static bool cache_read(const char *path, const char *key, ml_ratings *r) {
  size_t len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  struct stat stt;
  char *buf = NULL;
  if (fstat(fileno(f), &stt) == 0 && stt.st_size > 24 && (size_t)stt.st_size <= MAX_FILE * 2) {
    len = (size_t)stt.st_size;
    buf = malloc(len);
    if (buf && fread(buf, 1, len, f) != len) free(buf), buf = NULL;
  }
  fclose(f);
  if (!buf) return false;
  uint64_t sum;
  memcpy(&sum, buf + len - 8, 8);
  rbuf b = {buf, len - 8, 0, false};
  bool ok = sum == ml__fnv1a(0, buf, len - 8) && !memcmp(buf, RCACHE_MAGIC, 8);
  uint32_t hdr[2] = {0, 0};
  b.pos = 8;
  get(&b, hdr, 8);
  uint64_t kl = 0;
  get(&b, &kl, 8);
  ok = ok && !b.bad && hdr[0] == RCACHE_VERSION && hdr[1] <= ML_RATINGS_CSV && kl == strlen(key) &&
       kl <= b.len - b.pos && !memcmp(b.p + b.pos, key, kl);
  if (!ok) {
    free(buf);
    return false;
  }
  b.pos += kl;
  int64_t sz[4];
  float sc[3];
  get(&b, sz, sizeof sz), get(&b, sc, sizeof sc);
  if (b.bad || sz[0] < 0 || sz[1] < 0 || sz[2] < 0 || sz[3] < 0 || sz[3] > ML_RATINGS_MAX_GENRES || sz[0] > MAX_ROWS ||
      sz[1] > MAX_ROWS || sz[2] > MAX_ROWS || ratings_alloc(r, sz[0], sz[1], sz[2])) {
    free(buf);
    return false;
  }
  size_t nr = (size_t)sz[2], nu = (size_t)sz[0], ni = (size_t)sz[1];
  r->format = (ml_ratings_format)hdr[1], r->n_genres = sz[3];
  r->rating_min = sc[0], r->rating_max = sc[1], r->rating_step = sc[2];
  get(&b, r->user, nr * 4), get(&b, r->item, nr * 4), get(&b, r->rating, nr * 4), get(&b, r->time, nr * 8);
  get(&b, r->user_offset, (nu + 1) * 8), get(&b, r->user_id, nu * 8), get(&b, r->item_id, ni * 8);
  get(&b, r->gender, nu), get(&b, r->age, nu), get(&b, r->occupation, nu), get(&b, r->zip, nu);
  get(&b, r->year, ni), get(&b, r->genres, ni * 4);
  r->titles = get_names(&b, r->n_items), r->genre_names = get_names(&b, r->n_genres);
  r->occupation_names = get_names(&b, ML_RATINGS_N_OCC);
  ok = !b.bad && b.pos == b.len && r->user_offset[0] == 0 && r->user_offset[nu] == (int64_t)nr;
  for (size_t u = 0; ok && u < nu; u++) ok = r->user_offset[u] <= r->user_offset[u + 1];
  for (size_t k = 0; ok && k < nr; k++)
    ok = r->user[k] >= 0 && (size_t)r->user[k] < nu && r->item[k] >= 0 && (size_t)r->item[k] < ni;
  for (size_t u = 0; ok && u < nu; u++)
    ok = r->gender[u] < ML_RATINGS_N_GENDER && r->age[u] < ML_RATINGS_N_AGE && r->occupation[u] < ML_RATINGS_N_OCC &&
         r->zip[u] < ML_RATINGS_N_ZIP;
  for (size_t i = 0; ok && i < ni; i++) ok = r->year[i] < ML_RATINGS_N_YEAR;
  free(buf);
  if (!ok) ml_ratings_free(r);
  return ok;
}

static bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

ml_status ml_ratings_load(const char *dir, const char *cache_dir, ml_ratings *out) {
  memset(out, 0, sizeof *out);
  static const char *files[3][3] = {{"u.data", "u.user", "u.item"},
                                    {"ratings.dat", "users.dat", "movies.dat"},
                                    {"ratings.csv", NULL, "movies.csv"}};
  char p[3][4096];
  const char *paths[3] = {NULL, NULL, NULL};
  int fmt = -1;
  for (int k = 0; k < 3 && fmt < 0; k++) {
    snprintf(p[0], sizeof p[0], "%s/%s", dir, files[k][0]);
    if (exists(p[0])) fmt = k;
  }
  if (fmt < 0) return ml_error(ML_ERR_NOTFOUND, "%s: no MovieLens ratings (u.data, ratings.dat or ratings.csv)", dir);
  paths[0] = p[0];
  for (int k = 1; k < 3; k++) {
    if (!files[fmt][k]) continue;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, files[fmt][k]);
    if (exists(p[k])) paths[k] = p[k];
  }
  if (fmt == ML_RATINGS_100K && (!paths[1] || !paths[2]))
    return ml_error(ML_ERR_NOTFOUND, "%s: the 100K format needs u.user and u.item beside u.data", dir);
  const char *keyp[3];
  int nk = 0;
  for (int k = 0; k < 3; k++)
    if (paths[k]) keyp[nk++] = paths[k];
  char key[16384], cpath[4096];
  bool cached = !ml__cache_key("movielens", keyp, nk, fmt, key, sizeof key) &&
                ml__cache_path(cache_dir, "movielens", key, cpath, sizeof cpath);
  ml_clear_error();
  if (cached && cache_read(cpath, key, out)) return ML_OK;
  ml_status st = parse_dir(paths, (ml_ratings_format)fmt, out);
  if (!st && cached) cache_write(cpath, key, out);
  return st;
}

double ml_ratings_item_means(const ml_ratings *r, const uint8_t *keep, double damping, float *out) {
  double *s = calloc((size_t)r->n_items + 1, sizeof(double)), *c = calloc((size_t)r->n_items + 1, sizeof(double));
  double tot = 0, cnt = 0;
  for (int64_t k = 0; k < r->n_ratings; k++)
    if (!keep || keep[k]) {
      if (s) s[r->item[k]] += r->rating[k], c[r->item[k]] += 1;
      tot += r->rating[k], cnt += 1;
    }
  double mu = cnt > 0 ? tot / cnt : 0.5 * (r->rating_min + r->rating_max);
  for (int64_t i = 0; i < r->n_items; i++)
    out[i] = (s && c) ? c[i] + damping > 0 ? (float)((s[i] + damping * mu) / (c[i] + damping)) : (float)mu : (float)mu;
  free(s), free(c);
  return mu;
}
