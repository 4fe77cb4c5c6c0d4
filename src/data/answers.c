/* Student answer logs: the three-line knowledge-tracing format, the long CSV of tutoring
 * systems, the STATICS Q-matrix, and the dataset folders of ../shared/data/knowledge-tracing.
 * Everything is parsed from one in-memory copy of the file; counts written in the file are only
 * compared with what was actually parsed, never used to size an allocation, so a hostile length
 * line cannot make us allocate or loop more than the file's own size allows. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "metalearn/answers.h"

/* ------------------------------------------------------------------ id map ---- */

void ml_idmap_init(ml_idmap *m) { memset(m, 0, sizeof *m); }

void ml_idmap_free(ml_idmap *m) {
  if (!m) return;
  for (int64_t i = 0; i < m->n; i++) free(m->names[i]);
  free(m->names);
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

static int64_t slot_of(const ml_idmap *m, const char *id, size_t len) {
  uint64_t mask = (uint64_t)m->n_slots - 1;
  for (uint64_t s = hash_bytes(id, len) & mask;; s = (s + 1) & mask) {
    int64_t k = m->slots[s];
    if (k < 0) return (int64_t)s;
    if (strlen(m->names[k]) == len && memcmp(m->names[k], id, len) == 0) return (int64_t)s;
  }
}

int64_t ml_idmap_find(const ml_idmap *m, const char *id, size_t len) {
  if (!m || m->n_slots == 0) return -1;
  return m->slots[slot_of(m, id, len)];
}

static ml_status rehash(ml_idmap *m, int64_t n_slots) {
  int64_t *slots = malloc((size_t)n_slots * sizeof *slots);
  if (!slots) return ml_error(ML_ERR_NOMEM, "id map: out of memory");
  for (int64_t i = 0; i < n_slots; i++) slots[i] = -1;
  free(m->slots);
  m->slots = slots;
  m->n_slots = n_slots;
  for (int64_t k = 0; k < m->n; k++) m->slots[slot_of(m, m->names[k], strlen(m->names[k]))] = k;
  return ML_OK;
}

ml_status ml_idmap_add(ml_idmap *m, const char *id, size_t len, int64_t *index) {
  if (len == 0 || len > ML_ANSWERS_MAX_ID || memchr(id, 0, len))
    return ml_error(ML_ERR_ARG, "id map: id of %zu bytes (must be 1..%d, no NUL)", len, ML_ANSWERS_MAX_ID);
  if (m->n_slots == 0 || 2 * (m->n + 1) > m->n_slots) {
    ml_status st = rehash(m, m->n_slots ? 2 * m->n_slots : 64);
    if (st) return st;
  }
  int64_t s = slot_of(m, id, len);
  if (m->slots[s] >= 0) {
    *index = m->slots[s];
    return ML_OK;
  }
  if (m->n >= INT32_MAX - 1) return ml_error(ML_ERR_FORMAT, "id map: more than 2^31 ids");
  if (m->n == m->cap) {
    int64_t cap = m->cap ? 2 * m->cap : 64;
    char **names = realloc(m->names, (size_t)cap * sizeof *names);
    if (!names) return ml_error(ML_ERR_NOMEM, "id map: out of memory");
    m->names = names;
    m->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) return ml_error(ML_ERR_NOMEM, "id map: out of memory");
  memcpy(copy, id, len);
  copy[len] = 0;
  m->names[m->n] = copy;
  m->slots[s] = m->n;
  *index = m->n++;
  return ML_OK;
}

/* ----------------------------------------------------------------- answers ---- */

void ml_answers_free(ml_answers *a) {
  if (!a) return;
  if (a->student_ids)
    for (int64_t s = 0; s < a->n_students; s++) free(a->student_ids[s]);
  free(a->student_ids);
  free(a->offsets);
  free(a->item);
  free(a->skill);
  free(a->correct);
  memset(a, 0, sizeof *a);
}

/* Growable answer arrays while parsing. */
typedef struct {
  ml_answers a;
  int64_t cap_students, cap_answers;
} builder;

static ml_status grow_answers(builder *b, int64_t need) {
  if (need <= b->cap_answers) return ML_OK;
  int64_t cap = b->cap_answers ? b->cap_answers : 1024;
  while (cap < need) cap *= 2;
  int32_t *item = realloc(b->a.item, (size_t)cap * sizeof *item);
  if (item) b->a.item = item;
  int32_t *skill = realloc(b->a.skill, (size_t)cap * sizeof *skill);
  if (skill) b->a.skill = skill;
  uint8_t *corr = realloc(b->a.correct, (size_t)cap);
  if (corr) b->a.correct = corr;
  if (!item || !skill || !corr) return ml_error(ML_ERR_NOMEM, "answers: out of memory (%lld answers)", (long long)cap);
  b->cap_answers = cap;
  return ML_OK;
}

/* Closes the current student at the current answer count. */
static ml_status push_student(builder *b) {
  if (!b->a.offsets || b->a.n_students + 2 > b->cap_students) {
    int64_t cap = b->cap_students ? 2 * b->cap_students : 256;
    int64_t *off = realloc(b->a.offsets, (size_t)cap * sizeof *off);
    if (!off) return ml_error(ML_ERR_NOMEM, "answers: out of memory");
    b->a.offsets = off;
    b->cap_students = cap;
  }
  if (b->a.n_students == 0) b->a.offsets[0] = 0;
  b->a.offsets[++b->a.n_students] = b->a.n_answers;
  return ML_OK;
}

/* offsets[0] = 0 before the first student is pushed. */
static ml_status builder_init(builder *b) {
  b->a.offsets = malloc(256 * sizeof *b->a.offsets);
  if (!b->a.offsets) return ml_error(ML_ERR_NOMEM, "answers: out of memory");
  b->cap_students = 256;
  b->a.offsets[0] = 0;
  return ML_OK;
}

ml_status ml_answers_subset(const ml_answers *a, const int64_t *idx, int64_t n, ml_answers *out) {
  memset(out, 0, sizeof *out);
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (idx[i] < 0 || idx[i] >= a->n_students)
      return ml_error(ML_ERR_ARG, "answers subset: student %lld out of range", (long long)idx[i]);
    total += ml_answers_len(a, idx[i]);
  }
  out->offsets = malloc((size_t)(n + 1) * sizeof *out->offsets);
  out->item = malloc((size_t)(total ? total : 1) * sizeof *out->item);
  out->skill = malloc((size_t)(total ? total : 1) * sizeof *out->skill);
  out->correct = malloc((size_t)(total ? total : 1));
  if (a->student_ids) out->student_ids = calloc((size_t)(n ? n : 1), sizeof *out->student_ids);
  if (!out->offsets || !out->item || !out->skill || !out->correct || (a->student_ids && !out->student_ids)) {
    ml_answers_free(out);
    return ml_error(ML_ERR_NOMEM, "answers subset: out of memory");
  }
  out->n_students = n;
  out->offsets[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t s = idx[i], o = out->offsets[i], b = a->offsets[s], len = ml_answers_len(a, s);
    memcpy(out->item + o, a->item + b, (size_t)len * sizeof *out->item);
    memcpy(out->skill + o, a->skill + b, (size_t)len * sizeof *out->skill);
    memcpy(out->correct + o, a->correct + b, (size_t)len);
    out->offsets[i + 1] = o + len;
    if (a->student_ids) {
      out->student_ids[i] = strdup(a->student_ids[s]);
      if (!out->student_ids[i]) {
        ml_answers_free(out);
        return ml_error(ML_ERR_NOMEM, "answers subset: out of memory");
      }
    }
  }
  out->n_answers = total;
  return ML_OK;
}

/* --------------------------------------------------------------- file input ---- */

static ml_status slurp(const char *path, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return ml_error(errno == ENOENT ? ML_ERR_NOTFOUND : ML_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return ml_error(ML_ERR_IO, "%s: not a regular file", path);
  }
  if ((uint64_t)sb.st_size > ML_ANSWERS_MAX_BYTES) {
    fclose(f);
    return ml_error(ML_ERR_FORMAT, "%s: file of %lld bytes is larger than the %zu-byte limit", path,
                    (long long)sb.st_size, ML_ANSWERS_MAX_BYTES);
  }
  size_t n = (size_t)sb.st_size;
  char *b = malloc(n + 1);
  if (!b) {
    fclose(f);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  }
  size_t got = fread(b, 1, n, f);
  fclose(f);
  if (got != n) {
    free(b);
    return ml_error(ML_ERR_IO, "%s: short read", path);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return ML_OK;
}

/* Line cursor over a buffer: *s..*e is the next line without its "\n" or "\r\n". */
typedef struct {
  const char *buf;
  size_t len, pos;
  int64_t line; /* 1-based number of the line last returned */
} cursor;

static bool next_line(cursor *c, const char **s, const char **e) {
  if (c->pos >= c->len) return false;
  const char *p = c->buf + c->pos, *end = c->buf + c->len;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  const char *le = nl ? nl : end;
  c->pos = (size_t)((nl ? nl + 1 : end) - c->buf);
  while (le > p && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t')) le--;
  while (p < le && (*p == ' ' || *p == '\t')) p++;
  *s = p;
  *e = le;
  c->line++;
  return true;
}

/* True when the rest of the buffer holds only whitespace. */
static bool rest_blank(const cursor *c) {
  for (size_t i = c->pos; i < c->len; i++)
    if (c->buf[i] != ' ' && c->buf[i] != '\t' && c->buf[i] != '\r' && c->buf[i] != '\n') return false;
  return true;
}

/* Non-negative decimal integer filling [s, e) (at most 18 digits). */
static bool parse_count(const char *s, const char *e, int64_t *v) {
  if (s == e || e - s > 18) return false;
  int64_t x = 0;
  for (const char *p = s; p < e; p++) {
    if (*p < '0' || *p > '9') return false;
    x = x * 10 + (*p - '0');
  }
  *v = x;
  return true;
}

/* Splits a comma-separated line into tokens; one trailing comma is allowed. fn returns false
 * to stop (error already set). Returns the number of tokens, or -1 on an empty token. */
typedef bool (*token_fn)(const char *s, const char *e, int64_t k, void *ctx);
static int64_t split_commas(const char *s, const char *e, token_fn fn, void *ctx, bool *stopped) {
  int64_t k = 0;
  *stopped = false;
  if (s == e) return 0;
  const char *p = s;
  for (;;) {
    const char *q = memchr(p, ',', (size_t)(e - p));
    const char *te = q ? q : e;
    const char *ts = p;
    while (ts < te && (*ts == ' ' || *ts == '\t')) ts++;
    while (te > ts && (te[-1] == ' ' || te[-1] == '\t')) te--;
    if (ts == te) {
      if (!q && k > 0) return k; /* the trailing comma of STATICS files */
      return -1;
    }
    if (!fn(ts, te, k, ctx)) {
      *stopped = true;
      return k;
    }
    k++;
    if (!q) return k;
    p = q + 1;
  }
}

/* ------------------------------------------------------------ three-line KT ---- */

typedef struct {
  builder *b;
  ml_idmap *ids;
  bool ids_are_skills;
  const char *name;
  int64_t line;
  int64_t base; /* answer index of the student's first id */
  int64_t expect;
} kt_ctx;

static bool kt_id(const char *s, const char *e, int64_t k, void *vctx) {
  kt_ctx *c = vctx;
  int64_t v;
  if (!parse_count(s, e, &v)) {
    ml_error(ML_ERR_FORMAT, "%s:%lld: id %lld '%.*s' is not a non-negative integer", c->name, (long long)c->line,
             (long long)k + 1, (int)(e - s > 32 ? 32 : e - s), s);
    return false;
  }
  if (k >= c->expect) return true; /* counted, reported by the caller */
  char txt[24];
  int n = snprintf(txt, sizeof txt, "%lld", (long long)v); /* canonical: "007" and "7" agree */
  int64_t idx;
  if (ml_idmap_add(c->ids, txt, (size_t)n, &idx)) {
    ml_error(ML_ERR_NOMEM, "%s:%lld: %s", c->name, (long long)c->line, ml_last_error());
    return false;
  }
  c->b->a.item[c->base + k] = (int32_t)idx;
  c->b->a.skill[c->base + k] = c->ids_are_skills ? (int32_t)idx : -1;
  return true;
}

static bool kt_answer(const char *s, const char *e, int64_t k, void *vctx) {
  kt_ctx *c = vctx;
  if (e - s != 1 || (*s != '0' && *s != '1')) {
    ml_error(ML_ERR_FORMAT, "%s:%lld: answer %lld is '%.*s', not 0 or 1", c->name, (long long)c->line,
             (long long)k + 1, (int)(e - s > 32 ? 32 : e - s), s);
    return false;
  }
  if (k < c->expect) c->b->a.correct[c->base + k] = (uint8_t)(*s - '0');
  return true;
}

ml_status ml_answers_parse_kt(const char *buf, size_t len, const char *name, ml_idmap *ids, bool ids_are_skills,
                              ml_answers *out) {
  memset(out, 0, sizeof *out);
  builder b = {0};
  cursor c = {buf, len, 0, 0};
  ml_status st = ML_OK;
  const char *s, *e;
  kt_ctx kc = {&b, ids, ids_are_skills, name, 0, 0, 0};
  if ((st = builder_init(&b))) return st;
  while (next_line(&c, &s, &e)) {
    if (s == e) {
      if (rest_blank(&c)) break;
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: blank line where a length line was expected", name, (long long)c.line);
      goto fail;
    }
    int64_t n, len_line = c.line;
    if (!parse_count(s, e, &n)) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: length line '%.*s' is not a non-negative integer", name,
                    (long long)c.line, (int)(e - s > 32 ? 32 : e - s), s);
      goto fail;
    }
    /* Each id takes at least two bytes ("1,"), so a length beyond the file's size is a lie. */
    if ((uint64_t)n > len / 2 + 1) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: length %lld is larger than the file can hold", name, (long long)c.line,
                    (long long)n);
      goto fail;
    }
    if (!next_line(&c, &s, &e)) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: file ends after the length line (ids and answers missing)", name,
                    (long long)len_line);
      goto fail;
    }
    if ((st = grow_answers(&b, b.a.n_answers + n))) goto fail;
    kc.line = c.line;
    kc.base = b.a.n_answers;
    kc.expect = n;
    bool stopped;
    int64_t k = split_commas(s, e, kt_id, &kc, &stopped);
    if (stopped) {
      st = ML_ERR_FORMAT;
      goto fail;
    }
    if (k < 0) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: empty id", name, (long long)c.line);
      goto fail;
    }
    if (k != n) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: the length line says %lld answers but the next line has %lld ids", name,
                    (long long)len_line, (long long)n, (long long)k);
      goto fail;
    }
    if (!next_line(&c, &s, &e)) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: file ends after the ids line (answers missing)", name,
                    (long long)c.line);
      goto fail;
    }
    kc.line = c.line;
    k = split_commas(s, e, kt_answer, &kc, &stopped);
    if (stopped) {
      st = ML_ERR_FORMAT;
      goto fail;
    }
    if (k < 0) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: empty answer", name, (long long)c.line);
      goto fail;
    }
    if (k != n) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: %lld answers for %lld ids (length line %lld)", name, (long long)c.line,
                    (long long)k, (long long)n, (long long)len_line);
      goto fail;
    }
    b.a.n_answers += n;
    if ((st = push_student(&b))) goto fail;
  }
  if (b.a.n_students == 0) {
    st = ml_error(ML_ERR_FORMAT, "%s:1: empty file (no students)", name);
    goto fail;
  }
  *out = b.a;
  return ML_OK;
fail:
  ml_answers_free(&b.a);
  return st;
}

ml_status ml_answers_read_kt(const char *path, ml_idmap *ids, bool ids_are_skills, ml_answers *out) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  ml_status st = slurp(path, &buf, &len);
  if (st) return st;
  st = ml_answers_parse_kt(buf, len, path, ids, ids_are_skills, out);
  free(buf);
  return st;
}

/* ---------------------------------------------------------------- Q-matrix ---- */

void ml_qmatrix_free(ml_qmatrix *q) {
  if (!q) return;
  free(q->offsets);
  free(q->skills);
  memset(q, 0, sizeof *q);
}

typedef struct {
  int64_t item, skill;
} pair;

static int cmp_pair(const void *x, const void *y) {
  const pair *a = x, *b = y;
  if (a->item != b->item) return a->item < b->item ? -1 : 1;
  return (a->skill > b->skill) - (a->skill < b->skill);
}

/* Builds q (n_items rows) from pairs (sorted and deduplicated here). */
static ml_status qmatrix_from_pairs(pair *p, int64_t n, int64_t n_items, int64_t n_skills, ml_qmatrix *q) {
  if (n > 1) qsort(p, (size_t)n, sizeof *p, cmp_pair);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (m == 0 || cmp_pair(&p[m - 1], &p[i]) != 0) p[m++] = p[i];
  ml_qmatrix r = {n_items, n_skills, calloc((size_t)n_items + 1, sizeof(int64_t)),
                  malloc((size_t)(m ? m : 1) * sizeof(int32_t))};
  if (!r.offsets || !r.skills) {
    ml_qmatrix_free(&r);
    return ml_error(ML_ERR_NOMEM, "Q-matrix: out of memory");
  }
  for (int64_t i = 0; i < m; i++) {
    r.offsets[p[i].item + 1]++;
    r.skills[i] = (int32_t)p[i].skill;
  }
  for (int64_t i = 0; i < n_items; i++) r.offsets[i + 1] += r.offsets[i];
  *q = r;
  return ML_OK;
}

typedef struct {
  const char *name;
  int64_t line, row, ncols;
  pair **pairs;
  int64_t *n_pairs, *cap_pairs;
  int64_t item; /* -1 = row skipped */
} q_ctx;

static bool push_pair(pair **p, int64_t *n, int64_t *cap, int64_t item, int64_t skill) {
  if (*n == *cap) {
    int64_t c = *cap ? 2 * *cap : 1024;
    pair *np = realloc(*p, (size_t)c * sizeof *np);
    if (!np) return false;
    *p = np;
    *cap = c;
  }
  (*p)[(*n)++] = (pair){item, skill};
  return true;
}

static bool q_cell(const char *s, const char *e, int64_t k, void *vctx) {
  q_ctx *c = vctx;
  if (e - s != 1 || (*s != '0' && *s != '1')) {
    ml_error(ML_ERR_FORMAT, "%s:%lld: column %lld is '%.*s', not 0 or 1", c->name, (long long)c->line,
             (long long)k + 1, (int)(e - s > 32 ? 32 : e - s), s);
    return false;
  }
  if (*s == '1' && c->item >= 0 && !push_pair(c->pairs, c->n_pairs, c->cap_pairs, c->item, k)) {
    ml_error(ML_ERR_NOMEM, "%s: out of memory", c->name);
    return false;
  }
  return true;
}

ml_status ml_qmatrix_read(const char *path, const ml_idmap *items, int64_t first_id, ml_qmatrix *out) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  ml_status st = slurp(path, &buf, &len);
  if (st) return st;
  pair *pairs = NULL;
  int64_t n_pairs = 0, cap_pairs = 0, ncols = -1;
  cursor c = {buf, len, 0, 0};
  const char *s, *e;
  q_ctx qc = {path, 0, 0, 0, &pairs, &n_pairs, &cap_pairs, -1};
  while (next_line(&c, &s, &e)) {
    if (s == e) {
      if (rest_blank(&c)) break;
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: blank line", path, (long long)c.line);
      goto done;
    }
    char id[24];
    int n = snprintf(id, sizeof id, "%lld", (long long)(qc.row + first_id));
    qc.item = ml_idmap_find(items, id, (size_t)n);
    qc.line = c.line;
    bool stopped;
    int64_t k = split_commas(s, e, q_cell, &qc, &stopped);
    if (stopped) {
      st = ml_last_status();
      goto done;
    }
    if (k < 0) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: empty column", path, (long long)c.line);
      goto done;
    }
    if (ncols < 0) ncols = k;
    if (k != ncols) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: %lld columns, the first row has %lld", path, (long long)c.line,
                    (long long)k, (long long)ncols);
      goto done;
    }
    qc.row++;
  }
  if (ncols < 0) {
    st = ml_error(ML_ERR_FORMAT, "%s:1: empty file", path);
    goto done;
  }
  st = qmatrix_from_pairs(pairs, n_pairs, items->n, ncols, out);
done:
  free(pairs);
  free(buf);
  return st;
}

void ml_answers_apply_qmatrix(ml_answers *a, const ml_qmatrix *q) {
  for (int64_t i = 0; i < a->n_answers; i++) {
    int32_t it = a->item[i];
    a->skill[i] = (it >= 0 && it < q->n_items && q->offsets[it + 1] > q->offsets[it]) ? q->skills[q->offsets[it]] : -1;
  }
}

/* -------------------------------------------------------------- long CSV ---- */

ml_answers_csv_options ml_answers_csv_defaults(void) {
  return (ml_answers_csv_options){"user_id", "problem_id", "skill_id", "correct", "order_id", ',', '_'};
}

/* One CSV record: fields unescaped into a scratch buffer. */
typedef struct {
  char *text;        /* unescaped field bytes, each field NUL-terminated */
  size_t text_cap;
  size_t *start;     /* offset of field k in text */
  size_t *flen;
  int64_t n, cap;
} record;

static bool rec_put(record *r, size_t need) {
  if (need <= r->text_cap) return true;
  size_t cap = r->text_cap ? r->text_cap : 256;
  while (cap < need) cap *= 2;
  char *t = realloc(r->text, cap);
  if (!t) return false;
  r->text = t;
  r->text_cap = cap;
  return true;
}

static bool rec_field(record *r, size_t start, size_t len) {
  if (r->n == r->cap) {
    int64_t cap = r->cap ? 2 * r->cap : 32;
    size_t *st = realloc(r->start, (size_t)cap * sizeof *st);
    if (st) r->start = st;
    size_t *fl = realloc(r->flen, (size_t)cap * sizeof *fl);
    if (fl) r->flen = fl;
    if (!st || !fl) return false;
    r->cap = cap;
  }
  r->start[r->n] = start;
  r->flen[r->n] = len;
  r->n++;
  return true;
}

/* Reads one record starting at c->pos (which advances); line numbers count newlines inside
 * quotes too. Returns 1 = record, 0 = end of input, -1 = error (set). */
static int read_record(cursor *c, char delim, record *r, const char *name, int64_t *rec_line) {
  r->n = 0;
  if (c->pos >= c->len) return 0;
  c->line++;
  *rec_line = c->line;
  size_t t = 0;
  size_t fstart = 0;
  bool quoted = false, was_quoted = false;
  while (c->pos <= c->len) {
    char ch = c->pos < c->len ? c->buf[c->pos] : '\n';
    if (c->pos == c->len) {
      if (quoted) {
        ml_error(ML_ERR_FORMAT, "%s:%lld: quoted field not closed before the end of the file", name,
                 (long long)*rec_line);
        return -1;
      }
    }
    c->pos++;
    if (quoted) {
      if (ch == '"') {
        if (c->pos < c->len && c->buf[c->pos] == '"') {
          c->pos++;
        } else {
          quoted = false;
          continue;
        }
      } else if (ch == '\n') {
        c->line++;
      }
      if (!rec_put(r, t + 2)) goto nomem;
      r->text[t++] = ch;
      continue;
    }
    if (ch == '"' && t == fstart && !was_quoted) {
      quoted = was_quoted = true;
      continue;
    }
    if (ch == delim || ch == '\n') {
      size_t fe = t;
      if (!was_quoted) { /* trim spaces and a CR of unquoted fields */
        while (fe > fstart && (r->text[fe - 1] == ' ' || r->text[fe - 1] == '\r' || r->text[fe - 1] == '\t')) fe--;
        size_t fs = fstart;
        while (fs < fe && (r->text[fs] == ' ' || r->text[fs] == '\t')) fs++;
        if (fs > fstart) {
          memmove(r->text + fstart, r->text + fs, fe - fs);
          fe -= fs - fstart;
        }
      }
      if (!rec_put(r, fe + 2)) goto nomem;
      r->text[fe] = 0;
      if (!rec_field(r, fstart, fe - fstart)) goto nomem;
      t = fe + 1;
      fstart = t;
      was_quoted = false;
      if (ch == '\n') return 1;
      continue;
    }
    if (was_quoted && ch != '\r' && ch != ' ') {
      ml_error(ML_ERR_FORMAT, "%s:%lld: text after a closing quote in field %lld", name, (long long)*rec_line,
               (long long)r->n + 1);
      return -1;
    }
    if (was_quoted) continue;
    if (!rec_put(r, t + 2)) goto nomem;
    r->text[t++] = ch;
  }
  return 1;
nomem:
  ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
  return -1;
}

static void record_free(record *r) {
  free(r->text);
  free(r->start);
  free(r->flen);
}

typedef struct {
  int64_t student, item, skill; /* global indices; skill -1 = none */
  double order;
  int64_t seq, line;
  uint8_t correct;
} csv_row;

static int cmp_row(const void *x, const void *y) {
  const csv_row *a = x, *b = y;
  if (a->student != b->student) return a->student < b->student ? -1 : 1;
  if (a->order != b->order) return a->order < b->order ? -1 : 1;
  return (a->seq > b->seq) - (a->seq < b->seq);
}

static int64_t find_col(const record *hdr, const char *col) {
  for (int64_t k = 0; k < hdr->n; k++) {
    const char *f = hdr->text + hdr->start[k];
    if (k == 0 && hdr->flen[0] >= 3 && memcmp(f, "\xEF\xBB\xBF", 3) == 0) f += 3; /* UTF-8 BOM */
    if (strcmp(f, col) == 0) return k;
  }
  return -1;
}

ml_status ml_answers_parse_csv(const char *buf, size_t len, const char *name, const ml_answers_csv_options *opt,
                               ml_idmap *students, ml_idmap *items, ml_idmap *skills, ml_qmatrix *q,
                               ml_answers *out) {
  memset(out, 0, sizeof *out);
  ml_answers_csv_options o = opt ? *opt : ml_answers_csv_defaults();
  bool has_skill = o.skill_col && o.skill_col[0], has_order = o.order_col && o.order_col[0];
  if (!o.student_col || !o.item_col || !o.correct_col)
    return ml_error(ML_ERR_ARG, "%s: the student, exercise and correct columns must be named", name);
  cursor c = {buf, len, 0, 0};
  record r = {0};
  csv_row *rows = NULL;
  int64_t n_rows = 0, cap_rows = 0, rec_line = 0;
  int64_t *local = NULL; /* global student index -> local index + 1 */
  int64_t n_local = 0;
  builder b = {0};
  pair *pairs = NULL;
  int64_t n_pairs = 0, cap_pairs = 0;
  ml_status st = ML_OK;
  int rr = read_record(&c, o.delimiter, &r, name, &rec_line);
  if (rr < 0) return ml_last_status();
  if (rr == 0 || (r.n == 1 && r.flen[0] == 0)) {
    record_free(&r);
    return ml_error(ML_ERR_FORMAT, "%s:1: empty file (no header row)", name);
  }
  int64_t n_cols = r.n;
  const char *want[5] = {o.student_col, o.item_col, has_skill ? o.skill_col : NULL, o.correct_col,
                         has_order ? o.order_col : NULL};
  int64_t col[5];
  for (int i = 0; i < 5; i++) {
    col[i] = want[i] ? find_col(&r, want[i]) : -1;
    if (want[i] && col[i] < 0) {
      record_free(&r);
      return ml_error(ML_ERR_FORMAT, "%s:1: no column named '%s' in the header", name, want[i]);
    }
  }
  int64_t seq = 0;
  if ((st = builder_init(&b))) goto fail;
  while ((rr = read_record(&c, o.delimiter, &r, name, &rec_line)) == 1) {
    if (r.n == 1 && r.flen[0] == 0) continue; /* blank line */
    if (r.n != n_cols) {
      st = ml_error(ML_ERR_FORMAT, "%s:%lld: %lld fields, the header has %lld", name, (long long)rec_line,
                    (long long)r.n, (long long)n_cols);
      goto fail;
    }
#define FIELD(i) (r.text + r.start[col[i]])
#define FLEN(i) (r.flen[col[i]])
    csv_row row = {0};
    row.seq = seq++;
    row.line = rec_line;
    for (int i = 0; i < 2; i++) {
      if (FLEN(i) == 0 || FLEN(i) > ML_ANSWERS_MAX_ID) {
        st = ml_error(ML_ERR_FORMAT, "%s:%lld: %s '%.32s' is empty or longer than %d bytes", name, (long long)rec_line,
                      want[i], FIELD(i), ML_ANSWERS_MAX_ID);
        goto fail;
      }
    }
    if ((st = ml_idmap_add(students, FIELD(0), FLEN(0), &row.student)) ||
        (st = ml_idmap_add(items, FIELD(1), FLEN(1), &row.item)))
      goto fail;
    {
      char *end;
      const char *f = FIELD(3);
      double v = strtod(f, &end);
      if (FLEN(3) == 0 || *end || (v != 0.0 && v != 1.0)) {
        st = ml_error(ML_ERR_FORMAT, "%s:%lld: %s is '%.32s', not 0 or 1", name, (long long)rec_line, want[3], f);
        goto fail;
      }
      row.correct = v == 1.0;
    }
    if (has_order) {
      char *end;
      const char *f = FIELD(4);
      row.order = strtod(f, &end);
      if (FLEN(4) == 0 || *end || !isfinite(row.order)) {
        st = ml_error(ML_ERR_FORMAT, "%s:%lld: %s is '%.32s', not a number", name, (long long)rec_line, want[4], f);
        goto fail;
      }
    }
    row.skill = -1;
    /* Each skill of the field becomes one row (merged again below), so a "12_17" field and two
     * rows for skills 12 and 17 give the same answer. */
    size_t nsk = has_skill ? FLEN(2) : 0;
    const char *sk = has_skill ? FIELD(2) : "";
    size_t p0 = 0;
    do {
      size_t p1 = p0;
      while (p1 < nsk && (!o.skill_sep || sk[p1] != o.skill_sep)) p1++;
      csv_row rw = row;
      if (p1 > p0) {
        if (p1 - p0 > ML_ANSWERS_MAX_ID) {
          st = ml_error(ML_ERR_FORMAT, "%s:%lld: skill id longer than %d bytes", name, (long long)rec_line,
                        ML_ANSWERS_MAX_ID);
          goto fail;
        }
        if ((st = ml_idmap_add(skills, sk + p0, p1 - p0, &rw.skill))) goto fail;
      }
      if (n_rows == cap_rows) {
        int64_t cap = cap_rows ? 2 * cap_rows : 1024;
        csv_row *nr = realloc(rows, (size_t)cap * sizeof *nr);
        if (!nr) {
          st = ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
          goto fail;
        }
        rows = nr;
        cap_rows = cap;
      }
      rows[n_rows++] = rw;
      p0 = p1 + 1;
    } while (p0 < nsk);
#undef FIELD
#undef FLEN
  }
  if (rr < 0) {
    st = ml_last_status();
    goto fail;
  }
  if (n_rows == 0) {
    st = ml_error(ML_ERR_FORMAT, "%s:2: no answers after the header", name);
    goto fail;
  }
  /* Local student order = first appearance in this file. */
  local = calloc((size_t)students->n, sizeof *local);
  if (!local) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
    goto fail;
  }
  for (int64_t i = 0; i < n_rows; i++)
    if (!local[rows[i].student]) local[rows[i].student] = ++n_local;
  for (int64_t i = 0; i < n_rows; i++) rows[i].student = local[rows[i].student] - 1;
  qsort(rows, (size_t)n_rows, sizeof *rows, cmp_row);
  b.a.student_ids = calloc((size_t)n_local, sizeof *b.a.student_ids);
  if (!b.a.student_ids || (st = grow_answers(&b, n_rows))) {
    st = st ? st : ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
    goto fail;
  }
  for (int64_t g = 0; g < students->n; g++)
    if (local[g] && !(b.a.student_ids[local[g] - 1] = strdup(students->names[g]))) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
      goto fail;
    }
  for (int64_t i = 0; i < n_rows;) {
    int64_t s = rows[i].student;
    while (b.a.n_students < s) /* cannot happen: every local student has a row */
      if ((st = push_student(&b))) goto fail;
    for (; i < n_rows && rows[i].student == s; i++) {
      const csv_row *w = &rows[i];
      int64_t a = b.a.n_answers;
      bool same = a > b.a.offsets[b.a.n_students] && rows[i - 1].order == w->order && rows[i - 1].item == w->item &&
                  has_order;
      if (same) {
        if (b.a.correct[a - 1] != w->correct) {
          st = ml_error(ML_ERR_FORMAT, "%s:%lld: same student, %s and %s as line %lld but a different %s", name,
                        (long long)w->line, o.order_col, o.item_col, (long long)rows[i - 1].line, o.correct_col);
          goto fail;
        }
        if (b.a.skill[a - 1] < 0) b.a.skill[a - 1] = (int32_t)w->skill;
      } else {
        b.a.item[a] = (int32_t)w->item;
        b.a.skill[a] = (int32_t)w->skill;
        b.a.correct[a] = w->correct;
        b.a.n_answers++;
      }
      if (q && w->skill >= 0 && !push_pair(&pairs, &n_pairs, &cap_pairs, w->item, w->skill)) {
        st = ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
      }
    }
    if ((st = push_student(&b))) goto fail;
  }
  if (q) {
    /* Union with what q held (e.g. the training file's pairs). */
    for (int64_t it = 0; it < q->n_items; it++)
      for (int64_t k = q->offsets[it]; k < q->offsets[it + 1]; k++)
        if (!push_pair(&pairs, &n_pairs, &cap_pairs, it, q->skills[k])) {
          st = ml_error(ML_ERR_NOMEM, "%s: out of memory", name);
          goto fail;
        }
    ml_qmatrix nq;
    if ((st = qmatrix_from_pairs(pairs, n_pairs, items->n, skills->n, &nq))) goto fail;
    ml_qmatrix_free(q);
    *q = nq;
  }
  free(pairs);
  free(local);
  free(rows);
  record_free(&r);
  *out = b.a;
  return ML_OK;
fail:
  /* student_ids has n_local entries (calloc'd) while n_students may still be short of it. */
  if (b.a.student_ids)
    for (int64_t k = 0; k < n_local; k++) free(b.a.student_ids[k]);
  free(b.a.student_ids);
  b.a.student_ids = NULL;
  free(pairs);
  free(local);
  free(rows);
  record_free(&r);
  ml_answers_free(&b.a);
  return st;
}

ml_status ml_answers_read_csv(const char *path, const ml_answers_csv_options *opt, ml_idmap *students,
                              ml_idmap *items, ml_idmap *skills, ml_qmatrix *q, ml_answers *out) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  ml_status st = slurp(path, &buf, &len);
  if (st) return st;
  st = ml_answers_parse_csv(buf, len, path, opt, students, items, skills, q, out);
  free(buf);
  return st;
}

/* ------------------------------------------------------- dataset folders ---- */

void ml_kt_dataset_free(ml_kt_dataset *d) {
  if (!d) return;
  ml_answers_free(&d->train);
  ml_answers_free(&d->valid);
  ml_answers_free(&d->test);
  ml_idmap_free(&d->items);
  ml_idmap_free(&d->skills);
  ml_qmatrix_free(&d->q);
  memset(d, 0, sizeof *d);
}

ml_status ml_kt_dataset_load(const char *dir, const char *prefix, int fold, ml_kt_dataset *out) {
  memset(out, 0, sizeof *out);
  if (fold < 0 || fold > 5) return ml_error(ML_ERR_ARG, "knowledge-tracing dataset: fold %d (must be 0..5)", fold);
  char path[4096];
  struct stat sb;
  snprintf(path, sizeof path, "%s/Qmatrix.csv", dir);
  out->ids_are_skills = stat(path, &sb) != 0;
  ml_status st;
  snprintf(path, sizeof path, "%s/%s_train.csv", dir, prefix);
  if ((st = ml_answers_read_kt(path, &out->items, out->ids_are_skills, &out->train))) goto fail;
  snprintf(path, sizeof path, "%s/%s_test.csv", dir, prefix);
  if ((st = ml_answers_read_kt(path, &out->items, out->ids_are_skills, &out->test))) goto fail;
  if (fold > 0) {
    /* The map already holds every id of the full train file, which the fold files split. */
    ml_answers_free(&out->train);
    snprintf(path, sizeof path, "%s/%s_train%d.csv", dir, prefix, fold);
    if ((st = ml_answers_read_kt(path, &out->items, out->ids_are_skills, &out->train))) goto fail;
    snprintf(path, sizeof path, "%s/%s_valid%d.csv", dir, prefix, fold);
    if ((st = ml_answers_read_kt(path, &out->items, out->ids_are_skills, &out->valid))) goto fail;
  }
  out->n_items = out->items.n;
  if (out->ids_are_skills) {
    out->n_skills = out->items.n;
    pair *p = malloc((size_t)(out->items.n ? out->items.n : 1) * sizeof *p);
    if (!p) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", dir);
      goto fail;
    }
    for (int64_t i = 0; i < out->items.n; i++) p[i] = (pair){i, i};
    st = qmatrix_from_pairs(p, out->items.n, out->items.n, out->items.n, &out->q);
    free(p);
    if (st) goto fail;
  } else {
    snprintf(path, sizeof path, "%s/Qmatrix.csv", dir);
    if ((st = ml_qmatrix_read(path, &out->items, 1, &out->q))) goto fail;
    out->n_skills = out->q.n_skills;
    ml_answers_apply_qmatrix(&out->train, &out->q);
    ml_answers_apply_qmatrix(&out->valid, &out->q);
    ml_answers_apply_qmatrix(&out->test, &out->q);
  }
  return ML_OK;
fail:
  ml_kt_dataset_free(out);
  return st;
}

static const ml_kt_facts facts[] = {
    {"assist2009_updated", "assist2009_updated", 4151, 110, 325637},
    {"assist2015", "assist2015", 19840, 100, 683801},
    {"STATICS", "STATICS", 333, 1223, 189297},
};

const ml_kt_facts *ml_kt_facts_find(const char *name) {
  for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
    if (strcmp(facts[i].name, name) == 0) return &facts[i];
  return NULL;
}

ml_status ml_kt_dataset_check_facts(const ml_kt_dataset *d, const ml_kt_facts *f) {
  /* With a fold, train + valid is the full training file. */
  int64_t students = d->train.n_students + d->valid.n_students + d->test.n_students;
  int64_t answers = d->train.n_answers + d->valid.n_answers + d->test.n_answers;
  if (students != f->students)
    return ml_error(ML_ERR_FORMAT, "%s: %lld students in train + test, expected %lld", f->name, (long long)students,
                    (long long)f->students);
  if (d->items.n != f->ids)
    return ml_error(ML_ERR_FORMAT, "%s: %lld distinct ids, expected %lld", f->name, (long long)d->items.n,
                    (long long)f->ids);
  if (answers != f->answers)
    return ml_error(ML_ERR_FORMAT, "%s: %lld answers in train + test, expected %lld", f->name, (long long)answers,
                    (long long)f->answers);
  return ML_OK;
}
