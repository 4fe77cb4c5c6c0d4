/* io: safetensors round trips (bit-exact params + Adam state), a fixture laid out byte by byte as
 * Python's safetensors writes it (F32/F64/BF16/F16/I64/I32), hostile files (every truncation,
 * lying header lengths, random corruption, overflowing offsets and shapes, duplicates, holes,
 * overlap), checkpoint loads that must refuse and change nothing, and atomic writes that leave the
 * old file intact and no temp file behind. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "metalearn/io.h"

/* ---- helpers ---- */

static const char *tmp_path(const char *name) {
  static char buf[8][4096];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 4096, "%s/%s", ml_test_tmpdir(), name);
  return b;
}



static void put_le(uint8_t *p, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* 8-byte little-endian length, the header padded with spaces to a multiple of 8 (as Python's
 * safetensors does), then the data. Returns the size; out must be large enough. */
static size_t build_file(uint8_t *out, const char *json, const uint8_t *data, size_t data_len) {
  size_t len = strlen(json), padded = (len + 7) / 8 * 8;
  put_le(out, padded, 8);
  memcpy(out + 8, json, len);
  memset(out + 8 + len, ' ', padded - len);
  if (data_len) memcpy(out + 8 + padded, data, data_len);
  return 8 + padded + data_len;
}

/* Opens bytes as a file; on success also reads every readable tensor, to touch all data. */
static ml_status open_bytes(const char *name, const uint8_t *b, size_t n) {
  const char *path = tmp_path(name);
  ml_test_write_file(path, b, n);
  ml_safetensors *s = (ml_safetensors *)(uintptr_t)1;
  ml_status st = ml_safetensors_open(path, &s);
  if (st != ML_OK) {
    CHECK(s == NULL);
    const char *e = ml_last_error();
    CHECK_MSG(strncmp(e, path, strlen(path)) == 0 && e[strlen(path)] == ':', "error does not name the file: %s", e);
    CHECK_MSG(strchr(e, '\n') == NULL, "error is not one line: %s", e);
    return st;
  }
  for (int64_t i = 0; i < ml_safetensors_count(s); i++) {
    ml_tensor t = ml_safetensors_shape(s, i);
    CHECK(t.ndim >= 0 && t.ndim <= ML_MAX_DIMS && t.numel >= 0 && (size_t)t.numel <= n);
    CHECK(ml_safetensors_find(s, ml_safetensors_name(s, i)) == i);
    float *dst = malloc((size_t)t.numel * sizeof(float) + 4);
    ml_status r = ml_safetensors_read_f32(s, i, dst);
    CHECK(r == ML_OK || r == ML_ERR_UNSUPPORTED);
    free(dst);
  }
  ml_safetensors_close(s);
  return ML_OK;
}

static int count_temp_files(void) {
  DIR *d = opendir(ml_test_tmpdir());
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  if (d) closedir(d);
  return n;
}

static ml_params *make_params(uint64_t seed) {
  ml_params *p = ml_params_new();
  CHECK_OK(ml_params_add(p, "conv1.weight", 4, (int64_t[]){4, 3, 3, 3}));
  CHECK_OK(ml_params_add(p, "conv1.bias", 1, (int64_t[]){4}));
  CHECK_OK(ml_params_add(p, "fc.weight", 2, (int64_t[]){5, 7}));
  CHECK_OK(ml_params_add(p, "fc.bias", 1, (int64_t[]){5}));
  CHECK_OK(ml_params_finalize(p));
  for (int64_t i = 0; i < p->count; i++) ml_test_fill(p->items[i].value.data, p->items[i].value.numel, seed + (uint64_t)i, -1, 1);
  return p;
}

static void train_steps(ml_optim *o, ml_params *p, int steps, uint64_t seed) {
  for (int s = 0; s < steps; s++) {
    for (int64_t i = 0; i < p->count; i++)
      ml_test_fill(p->items[i].grad.data, p->items[i].grad.numel, seed * 100 + (uint64_t)s * 10 + (uint64_t)i, -1, 1);
    CHECK_OK(ml_optim_step_params(o, p));
  }
}

static bool same_floats(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

/* ---- round trips ---- */

ML_TEST(checkpoint_round_trip_bit_exact_and_resume) {
  const char *path = tmp_path("rt.safetensors");
  ml_params *p = make_params(1);
  ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAM);
  cfg.lr = 0.0123f, cfg.beta1 = 0.85f, cfg.weight_decay = 1e-4f, cfg.clip_norm = 2.5f, cfg.eps = 3e-7f;
  ml_optim *o = ml_optim_new(&cfg, p->numel);
  train_steps(o, p, 3, 9);
  ml_kv meta[] = {{"run", "abc"}, {"note", "quote \" backslash \\ unicode \xc3\xa9"}};
  CHECK_OK(ml_checkpoint_save(path, p, o, meta, 2));
  CHECK(count_temp_files() == 0);

  /* the file itself: header padded to 8 with spaces, metadata present, moments stored */
  size_t n;
  uint8_t *b = ml_test_read_file(path, &n);
  CHECK(b != NULL && n > 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
  CHECK(hlen % 8 == 0 && hlen < n && b[8] == '{');
  free(b);
  ml_safetensors *s;
  CHECK_OK(ml_safetensors_open(path, &s));
  CHECK(ml_safetensors_count(s) == 3 * p->count);
  CHECK(!strcmp(ml_safetensors_meta(s, "format"), "metalearn"));
  CHECK(!strcmp(ml_safetensors_meta(s, "optim.kind"), "adam"));
  CHECK(!strcmp(ml_safetensors_meta(s, "optim.step"), "3"));
  CHECK(!strcmp(ml_safetensors_meta(s, "run"), "abc"));
  CHECK(!strcmp(ml_safetensors_meta(s, "note"), meta[1].value));
  CHECK(ml_safetensors_meta(s, "absent") == NULL);
  CHECK(ml_safetensors_find(s, "optim.m.fc.weight") >= 0 && ml_safetensors_find(s, "optim.v.conv1.bias") >= 0);
  CHECK(!strcmp(ml_safetensors_name(s, 0), "conv1.weight")); /* order given */
  ml_tensor t = ml_safetensors_shape(s, 0);
  CHECK(t.ndim == 4 && t.shape[0] == 4 && t.shape[3] == 3 && t.numel == 108);
  ml_safetensors_close(s);

  /* load into fresh lists with a default optimizer: bit-exact, config and step restored */
  ml_params *q = make_params(77);
  ml_optim_config dflt = ml_optim_defaults(ML_OPTIM_ADAM);
  ml_optim *o2 = ml_optim_new(&dflt, q->numel);
  CHECK_OK(ml_checkpoint_load(path, q, o2));
  CHECK(same_floats(q->data, p->data, p->numel));
  CHECK(same_floats(o2->m, o->m, p->numel));
  CHECK(same_floats(o2->v, o->v, p->numel));
  CHECK(o2->step == 3);
  CHECK(o2->cfg.lr == cfg.lr && o2->cfg.beta1 == cfg.beta1 && o2->cfg.beta2 == cfg.beta2 && o2->cfg.eps == cfg.eps);
  CHECK(o2->cfg.weight_decay == cfg.weight_decay && o2->cfg.clip_norm == cfg.clip_norm);

  /* resuming gives the same trajectory as never stopping */
  train_steps(o, p, 4, 5);
  train_steps(o2, q, 4, 5);
  CHECK(same_floats(q->data, p->data, p->numel));

  /* weights only: optimizer entries in the file are ignored */
  ml_params *w = make_params(3);
  CHECK_OK(ml_checkpoint_save(path, p, o, NULL, 0));
  CHECK_OK(ml_checkpoint_load(path, w, NULL));
  CHECK(same_floats(w->data, p->data, p->numel));
  ml_params_free(w);
  ml_optim_free(o2);
  ml_params_free(q);
  ml_optim_free(o);
  ml_params_free(p);
}

ML_TEST(checkpoint_sgd_momentum_round_trip) {
  const char *path = tmp_path("sgd.safetensors");
  ml_params *p = make_params(2);
  ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_SGD);
  cfg.lr = 0.3f, cfg.momentum = 0.7f, cfg.nesterov = true;
  ml_optim *o = ml_optim_new(&cfg, p->numel);
  train_steps(o, p, 2, 4);
  CHECK_OK(ml_checkpoint_save(path, p, o, NULL, 0));
  ml_params *q = make_params(8);
  ml_optim_config c2 = ml_optim_defaults(ML_OPTIM_SGD);
  c2.momentum = 0.1f;
  ml_optim *o2 = ml_optim_new(&c2, q->numel);
  CHECK_OK(ml_checkpoint_load(path, q, o2));
  CHECK(same_floats(q->data, p->data, p->numel) && same_floats(o2->m, o->m, p->numel));
  CHECK(o2->cfg.momentum == 0.7f && o2->cfg.nesterov && o2->cfg.lr == 0.3f && o2->step == 2);
  /* an Adam optimizer refuses SGD state, and changes nothing */
  ml_optim_config ac = ml_optim_defaults(ML_OPTIM_ADAM);
  ml_optim *oa = ml_optim_new(&ac, q->numel);
  float before = q->data[0];
  q->data[0] = 42;
  CHECK(ml_checkpoint_load(path, q, oa) != ML_OK);
  CHECK(strstr(ml_last_error(), "sgd") != NULL);
  CHECK(q->data[0] == 42 && oa->step == 0 && oa->cfg.lr == ac.lr);
  (void)before;
  ml_optim_free(oa);
  ml_optim_free(o2);
  ml_params_free(q);
  ml_optim_free(o);
  ml_params_free(p);
}

/* ---- a file laid out as Python's safetensors writes it ---- */

static size_t python_fixture(uint8_t *out) {
  const char *json =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[16,40]},"
      "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[40,44]},"
      "\"d\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[44,52]},"
      "\"e\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[52,68]},"
      "\"f\":{\"dtype\":\"I32\",\"shape\":[1,1,2],\"data_offsets\":[68,76]},"
      "\"g\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[76,80]},"
      "\"h\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[80,80]}}";
  uint8_t d[80];
  /* a: F32 1.0, -2.5, 0.5, 100.0 */
  put_le(d + 0, 0x3f800000, 4), put_le(d + 4, 0xc0200000, 4), put_le(d + 8, 0x3f000000, 4), put_le(d + 12, 0x42c80000, 4);
  /* b: F64 1.5, -0.25, 1e10 */
  put_le(d + 16, 0x3FF8000000000000ull, 8), put_le(d + 24, 0xBFD0000000000000ull, 8), put_le(d + 32, 0x4202A05F20000000ull, 8);
  /* c: BF16 1.0, -5.0 */
  put_le(d + 40, 0x3f80, 2), put_le(d + 42, 0xc0a0, 2);
  /* d: F16 1.0, -2.0, 2^-24 (smallest subnormal), 65504 (largest finite) */
  put_le(d + 44, 0x3c00, 2), put_le(d + 46, 0xc000, 2), put_le(d + 48, 0x0001, 2), put_le(d + 50, 0x7bff, 2);
  /* e: I64 -3, 2^40 */
  put_le(d + 52, (uint64_t)-3, 8), put_le(d + 60, 1ull << 40, 8);
  /* f: I32 -7, 123456 */
  put_le(d + 68, (uint32_t)-7, 4), put_le(d + 72, 123456, 4);
  /* g: F32 scalar 0.75 */
  put_le(d + 76, 0x3f400000, 4);
  return build_file(out, json, d, sizeof d);
}

ML_TEST(python_layout_fixture_loads) {
  uint8_t buf[1024];
  size_t n = python_fixture(buf);
  const char *path = tmp_path("py.safetensors");
  ml_test_write_file(path, buf, n);
  ml_safetensors *s;
  CHECK_OK(ml_safetensors_open(path, &s));
  if (!s) return;
  CHECK(ml_safetensors_count(s) == 8);
  CHECK(!strcmp(ml_safetensors_meta(s, "format"), "pt"));
  float out[8];
  struct {
    const char *name;
    int ndim;
    int64_t numel;
    float v[4];
  } want[] = {
      {"a", 2, 4, {1.0f, -2.5f, 0.5f, 100.0f}}, {"b", 1, 3, {1.5f, -0.25f, 1e10f}},
      {"c", 1, 2, {1.0f, -5.0f}},                {"d", 1, 4, {1.0f, -2.0f, 0x1p-24f, 65504.0f}},
      {"e", 1, 2, {-3.0f, 1099511627776.0f}},    {"f", 3, 2, {-7.0f, 123456.0f}},
      {"g", 0, 1, {0.75f}},
  };
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    int64_t i = ml_safetensors_find(s, want[k].name);
    CHECK_MSG(i == (int64_t)k, "find %s = %lld", want[k].name, (long long)i);
    if (i < 0) continue;
    ml_tensor t = ml_safetensors_shape(s, i);
    CHECK(t.ndim == want[k].ndim && t.numel == want[k].numel && t.data == NULL);
    CHECK_OK(ml_safetensors_read_f32(s, i, out));
    for (int64_t j = 0; j < t.numel; j++) CHECK_MSG(out[j] == want[k].v[j], "%s[%lld] = %g", want[k].name, (long long)j, out[j]);
  }
  ml_tensor a = ml_safetensors_shape(s, 0);
  CHECK(a.shape[0] == 2 && a.shape[1] == 2);
  /* U8: a valid layout, but not convertible */
  int64_t h = ml_safetensors_find(s, "h");
  CHECK(h == 7 && ml_safetensors_shape(s, h).numel == 0);
  CHECK(ml_safetensors_read_f32(s, h, out) == ML_ERR_UNSUPPORTED);
  CHECK(ml_safetensors_find(s, "zz") == -1 && ml_safetensors_name(s, 99) == NULL);
  CHECK(ml_safetensors_read_f32(s, 99, out) == ML_ERR_ARG);
  ml_safetensors_close(s);
}

ML_TEST(writer_layout_matches_spec) {
  float x[6] = {1, 2, 3, 4, 5, 6}, y[1] = {-1};
  ml_named_tensor t[2] = {{"x", ml_shape2(2, 3)}, {"y", ml_shape1(1)}};
  t[0].t.data = x, t[1].t.data = y;
  ml_kv meta = {"k", "v"};
  const char *path = tmp_path("w.safetensors");
  CHECK_OK(ml_safetensors_write(path, t, 2, &meta, 1));
  size_t n;
  uint8_t *b = ml_test_read_file(path, &n);
  const char *want = "{\"__metadata__\":{\"k\":\"v\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                     "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
  uint8_t expect[512];
  size_t en = build_file(expect, want, (const uint8_t *)x, 24);
  memcpy(expect + en, y, 4);
  en += 4;
  CHECK_MSG(n == en && memcmp(b, expect, n) == 0, "file differs from the expected layout:\n%.*s", (int)(n > 8 ? n - 8 : 0), b + 8);
  free(b);
  /* writer refuses bad input and leaves nothing behind */
  t[1].name = "x";
  CHECK(ml_safetensors_write(path, t, 2, NULL, 0) == ML_ERR_ARG);
  t[1].name = "__metadata__";
  CHECK(ml_safetensors_write(path, t, 2, NULL, 0) == ML_ERR_ARG);
  t[1].name = "bad\xff";
  CHECK(ml_safetensors_write(path, t, 2, NULL, 0) == ML_ERR_ARG);
  t[1].name = "y";
  t[1].t.numel = 2; /* shape (1) */
  CHECK(ml_safetensors_write(path, t, 2, NULL, 0) == ML_ERR_ARG);
  t[1].t.numel = 1;
  ml_kv dup[2] = {{"k", "1"}, {"k", "2"}};
  t[1].name = "y";
  CHECK(ml_safetensors_write(path, t, 2, dup, 2) == ML_ERR_ARG);
  CHECK(count_temp_files() == 0);
  /* an empty file is valid */
  CHECK_OK(ml_safetensors_write(path, NULL, 0, NULL, 0));
  ml_safetensors *s;
  CHECK_OK(ml_safetensors_open(path, &s));
  CHECK(ml_safetensors_count(s) == 0);
  ml_safetensors_close(s);
}

/* ---- hostile files ---- */

ML_TEST(every_truncation_fails_cleanly) {
  uint8_t buf[1024];
  size_t n = python_fixture(buf);
  CHECK(open_bytes("ok.st", buf, n) == ML_OK);
  for (size_t len = 0; len < n; len++) {
    ml_status st = open_bytes("trunc.st", buf, len);
    CHECK_MSG(st == ML_ERR_FORMAT, "truncated to %zu of %zu bytes: status %d", len, n, (int)st);
  }
  /* the same for a checkpoint, through ml_checkpoint_load (params must stay unchanged) */
  const char *path = tmp_path("ck.safetensors");
  ml_params *p = ml_params_new();
  CHECK_OK(ml_params_add(p, "w", 2, (int64_t[]){2, 3}));
  CHECK_OK(ml_params_finalize(p));
  ml_test_fill(p->data, 6, 1, -1, 1);
  ml_optim_config c = ml_optim_defaults(ML_OPTIM_ADAM);
  ml_optim *o = ml_optim_new(&c, p->numel);
  CHECK_OK(ml_checkpoint_save(path, p, o, NULL, 0));
  size_t cn;
  uint8_t *cb = ml_test_read_file(path, &cn);
  ml_params *q = ml_params_clone_layout(p);
  for (size_t len = 0; len < cn; len++) {
    ml_test_write_file(path, cb, len);
    CHECK(ml_checkpoint_load(path, q, o) != ML_OK);
  }
  for (int64_t i = 0; i < q->numel; i++) CHECK(q->data[i] == 0);
  ml_test_write_file(path, cb, cn);
  CHECK_OK(ml_checkpoint_load(path, q, o));
  CHECK(same_floats(q->data, p->data, p->numel));
  free(cb);
  ml_params_free(q);
  ml_optim_free(o);
  ml_params_free(p);
}

ML_TEST(lying_header_length) {
  uint8_t buf[1024];
  size_t n = python_fixture(buf);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
  const uint64_t lies[] = {0, 1, 2, 7, hlen - 8, hlen - 1, hlen + 1, n - 8 + 1, n, 100000001ull, 1ull << 32,
                           1ull << 63, UINT64_MAX, UINT64_MAX - 7};
  for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
    uint8_t b[1024];
    memcpy(b, buf, n);
    put_le(b, lies[k], 8);
    CHECK_MSG(open_bytes("lie.st", b, n) == ML_ERR_FORMAT, "header length %llu accepted", (unsigned long long)lies[k]);
  }
  put_le(buf, 100000001ull, 8);
  open_bytes("lie.st", buf, n);
  CHECK(strstr(ml_last_error(), "absurd") != NULL);
  CHECK(open_bytes("short.st", buf, 5) == ML_ERR_FORMAT);
  CHECK(ml_safetensors_open(tmp_path("does-not-exist"), &(ml_safetensors *){NULL}) == ML_ERR_NOTFOUND);
}

typedef struct {
  const char *what, *json;
  size_t data_len;
  const char *msg; /* expected in the error */
} bad_case;

ML_TEST(hostile_headers_rejected) {
  const bad_case cases[] = {
      {"invalid json", "{\"a\":", 0, "JSON"},
      {"not an object", "{\"a\":1}", 0, "not an object"},
      {"array root", "[1,2]", 0, "'{'"},
      {"junk after json", "{} x", 0, "junk"},
      {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
      {"dtype not string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
      {"no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
      {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape"},
      {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10, "shape"},
      {"huge dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "shape"},
      {"shape product overflow",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflow"},
      {"byte size overflow",
       "{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8, "data_offsets"},
      {"five dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "at most 4"},
      {"offsets overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8,
       "data_offsets"},
      {"offsets both huge",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551615]}}", 8,
       "data_offsets"},
      {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "outside"},
      {"offsets negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "data_offsets"},
      {"offsets three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "data_offsets"},
      {"offsets strings", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", 8, "data_offsets"},
      {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, "need"},
      {"past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12, "outside"},
      {"overlap",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
       24, "overlap"},
      {"same range twice",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
       16, "overlap"},
      {"hole",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
       24, "hole"},
      {"hole at start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "hole"},
      {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "trailing"},
      {"data without tensors", "{}", 8, "no tensors"},
      {"duplicate name",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
       16, "duplicate"},
      {"metadata value not string", "{\"__metadata__\":{\"x\":1}}", 0, "not a string"},
      {"metadata not object", "{\"__metadata__\":[\"x\"]}", 0, "not an object"},
      {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate"},
      {"metadata duplicate key", "{\"__metadata__\":{\"x\":\"1\",\"x\":\"2\"}}", 0, "duplicate"},
      {"invalid utf-8", "{\"\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8"},
  };
  uint8_t buf[4096], zeros[64] = {0};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    size_t n = build_file(buf, cases[k].json, zeros, cases[k].data_len);
    ml_status st = open_bytes("bad.st", buf, n);
    CHECK_MSG(st == ML_ERR_FORMAT, "%s: accepted (status %d)", cases[k].what, (int)st);
    CHECK_MSG(strstr(ml_last_error(), cases[k].msg) != NULL, "%s: message '%s' lacks '%s'", cases[k].what,
              ml_last_error(), cases[k].msg);
  }
  /* deep nesting must not blow the stack */
  static char deep[3 * 5000 + 64];
  size_t len = 0;
  len += (size_t)sprintf(deep, "{\"a\":");
  for (int i = 0; i < 5000; i++) deep[len++] = '[';
  for (int i = 0; i < 5000; i++) deep[len++] = ']';
  deep[len++] = '}';
  deep[len] = 0;
  static uint8_t dbuf[sizeof deep + 16];
  CHECK(open_bytes("deep.st", dbuf, build_file(dbuf, deep, NULL, 0)) == ML_ERR_FORMAT);
  /* a zero-size tensor anywhere in sequence, and an empty header, are fine */
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]}}";
  CHECK_OK(open_bytes("ok.st", buf, build_file(buf, ok, zeros, 8)));
  CHECK_OK(open_bytes("ok.st", buf, build_file(buf, "{}", zeros, 0)));
  CHECK_OK(open_bytes("ok.st", buf, build_file(buf, "{\"__metadata__\":null}", zeros, 0)));
}

ML_TEST(random_corruption_never_crashes) {
  uint8_t base[1024], b[1024];
  size_t n = python_fixture(base);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];
  int accepted = 0, rejected = 0;
  for (uint64_t seed = 0; seed < 3000; seed++) {
    ml_rng r;
    ml_rng_init(&r, seed, 99);
    memcpy(b, base, n);
    int flips = 1 + (int)ml_rng_below(&r, 6);
    for (int k = 0; k < flips; k++) {
      /* mostly the length and the header, where the parser is exposed */
      size_t pos = ml_rng_below(&r, 4) ? ml_rng_below(&r, (uint32_t)(8 + hlen)) : ml_rng_below(&r, (uint32_t)n);
      uint32_t kind = ml_rng_below(&r, 4);
      if (kind == 0) b[pos] ^= (uint8_t)(1u << ml_rng_below(&r, 8));
      else if (kind == 1) b[pos] = (uint8_t)ml_rng_u32(&r);
      else if (kind == 2) b[pos] = (uint8_t)"{}[],:\"0123456789-.e\\ "[ml_rng_below(&r, 23)];
      else b[pos] = 0;
    }
    size_t len = ml_rng_below(&r, 8) ? n : ml_rng_below(&r, (uint32_t)n + 1);
    ml_status st = open_bytes("fuzz.st", b, len);
    CHECK(st == ML_OK || st == ML_ERR_FORMAT);
    st == ML_OK ? accepted++ : rejected++;
  }
  /* both outcomes must have occurred (flips in the data section keep the file valid) */
  CHECK_MSG(accepted > 10 && rejected > 500, "accepted %d, rejected %d", accepted, rejected);
}

/* ---- checkpoint loads that must refuse ---- */

static void check_refused(const char *path, ml_params *q, ml_optim *o, const char *msg) {
  float *before = malloc((size_t)q->numel * sizeof(float));
  memcpy(before, q->data, (size_t)q->numel * sizeof(float));
  float m0 = o ? o->m[0] : 0;
  int64_t step0 = o ? o->step : 0;
  float lr0 = o ? o->cfg.lr : 0;
  ml_status st = ml_checkpoint_load(path, q, o);
  CHECK_MSG(st != ML_OK, "load accepted (expected '%s')", msg);
  CHECK_MSG(strstr(ml_last_error(), msg) != NULL, "message '%s' lacks '%s'", ml_last_error(), msg);
  CHECK(same_floats(q->data, before, q->numel));
  if (o) CHECK(o->m[0] == m0 && o->step == step0 && o->cfg.lr == lr0);
  free(before);
}

ML_TEST(checkpoint_mismatch_refused_and_unchanged) {
  const char *path = tmp_path("mm.safetensors");
  ml_params *p = make_params(5);
  ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAM);
  cfg.lr = 0.5f;
  ml_optim *o = ml_optim_new(&cfg, p->numel);
  train_steps(o, p, 2, 1);
  CHECK_OK(ml_checkpoint_save(path, p, o, NULL, 0));

  ml_optim_config dflt = ml_optim_defaults(ML_OPTIM_ADAM);
  /* wrong shape (same numel) */
  ml_params *q = ml_params_new();
  CHECK_OK(ml_params_add(q, "conv1.weight", 4, (int64_t[]){4, 3, 3, 3}));
  CHECK_OK(ml_params_add(q, "conv1.bias", 1, (int64_t[]){4}));
  CHECK_OK(ml_params_add(q, "fc.weight", 2, (int64_t[]){7, 5}));
  CHECK_OK(ml_params_add(q, "fc.bias", 1, (int64_t[]){5}));
  CHECK_OK(ml_params_finalize(q));
  ml_test_fill(q->data, q->numel, 11, -1, 1);
  ml_optim *oq = ml_optim_new(&dflt, q->numel);
  train_steps(oq, q, 1, 3);
  check_refused(path, q, oq, "fc.weight' has shape (5, 7) in the file, the model expects (7, 5)");
  check_refused(path, q, NULL, "shape");
  ml_optim_free(oq);
  ml_params_free(q);

  /* extra name in the model = missing from the file */
  q = ml_params_new();
  CHECK_OK(ml_params_add(q, "conv1.weight", 4, (int64_t[]){4, 3, 3, 3}));
  CHECK_OK(ml_params_add(q, "conv1.bias", 1, (int64_t[]){4}));
  CHECK_OK(ml_params_add(q, "fc.weight", 2, (int64_t[]){5, 7}));
  CHECK_OK(ml_params_add(q, "fc.bias", 1, (int64_t[]){5}));
  CHECK_OK(ml_params_add(q, "head.weight", 1, (int64_t[]){3}));
  CHECK_OK(ml_params_finalize(q));
  ml_test_fill(q->data, q->numel, 12, -1, 1);
  oq = ml_optim_new(&dflt, q->numel);
  check_refused(path, q, oq, "'head.weight' missing");
  ml_optim_free(oq);
  ml_params_free(q);

  /* the file has a tensor the model lacks */
  q = ml_params_new();
  CHECK_OK(ml_params_add(q, "conv1.weight", 4, (int64_t[]){4, 3, 3, 3}));
  CHECK_OK(ml_params_add(q, "fc.weight", 2, (int64_t[]){5, 7}));
  CHECK_OK(ml_params_add(q, "fc.bias", 1, (int64_t[]){5}));
  CHECK_OK(ml_params_finalize(q));
  ml_test_fill(q->data, q->numel, 13, -1, 1);
  oq = ml_optim_new(&dflt, q->numel);
  check_refused(path, q, oq, "'conv1.bias' in the file is not in the model");
  check_refused(path, q, NULL, "'conv1.bias' in the file is not in the model");
  ml_optim_free(oq);
  ml_params_free(q);

  /* a file without optimizer state, loaded with an optimizer */
  q = make_params(6);
  oq = ml_optim_new(&dflt, q->numel);
  CHECK_OK(ml_checkpoint_save(path, p, NULL, NULL, 0));
  check_refused(path, q, oq, "no optimizer state");
  /* ... and with momentum that does not match the optimizer's buffers */
  ml_optim_config s0 = ml_optim_defaults(ML_OPTIM_SGD), s1 = s0;
  s1.momentum = 0.9f;
  ml_optim *os0 = ml_optim_new(&s0, p->numel), *os1 = ml_optim_new(&s1, q->numel);
  CHECK_OK(ml_checkpoint_save(path, p, os0, NULL, 0));
  check_refused(path, q, os1, "momentum");
  ml_optim_free(os0);
  ml_optim_free(os1);
  ml_optim_free(oq);
  ml_params_free(q);
  ml_optim_free(o);
  ml_params_free(p);
}

/* ---- atomic writes ---- */

static bool file_is(const char *path, const char *content) {
  size_t n;
  uint8_t *b = ml_test_read_file(path, &n);
  bool ok = b && n == strlen(content) && memcmp(b, content, n) == 0;
  free(b);
  return ok;
}

ML_TEST(atomic_write_commit_abort_failure) {
  const char *path = tmp_path("atomic.txt");
  CHECK_OK(ml_write_file_atomic(path, "old content", 11));
  CHECK(file_is(path, "old content"));
  /* forced abort: old file intact, temp gone */
  ml_atomic_file *f = ml_atomic_open(path);
  CHECK(f != NULL);
  CHECK_OK(ml_atomic_write(f, "new", 3));
  CHECK(count_temp_files() == 1);
  ml_atomic_abort(f);
  CHECK(file_is(path, "old content"));
  CHECK(count_temp_files() == 0);
  /* commit replaces */
  f = ml_atomic_open(path);
  CHECK_OK(ml_atomic_write(f, "new ", 4));
  CHECK_OK(ml_atomic_write(f, "content", 7));
  CHECK(file_is(path, "old content"));
  CHECK_OK(ml_atomic_commit(f));
  CHECK(file_is(path, "new content"));
  CHECK(count_temp_files() == 0);
  /* rename fails (the target is a non-empty directory): error, temp removed */
  const char *dir = tmp_path("a-directory");
  CHECK(mkdir(dir, 0755) == 0);
  ml_test_write_file(tmp_path("a-directory/x"), "x", 1);
  CHECK(ml_write_file_atomic(dir, "data", 4) == ML_ERR_IO);
  CHECK(strstr(ml_last_error(), dir) != NULL);
  CHECK(count_temp_files() == 0);
  /* the directory does not exist */
  CHECK(ml_atomic_open(tmp_path("no/such/dir/file")) == NULL && ml_last_status() == ML_ERR_IO);
  /* a read-only directory (meaningless as root, who may write anyway) */
  if (geteuid() != 0) {
    const char *ro = tmp_path("ro");
    CHECK(mkdir(ro, 0755) == 0);
    const char *target = tmp_path("ro/f.txt");
    CHECK_OK(ml_write_file_atomic(target, "old", 3));
    CHECK(chmod(ro, 0555) == 0);
    CHECK(ml_write_file_atomic(target, "new", 3) == ML_ERR_IO);
    CHECK(file_is(target, "old"));
    chmod(ro, 0755);
  }
}

ML_TEST(failed_checkpoint_save_keeps_old_file) {
  const char *path = tmp_path("keep.safetensors");
  ml_params *small = ml_params_new();
  CHECK_OK(ml_params_add(small, "w", 1, (int64_t[]){4}));
  CHECK_OK(ml_params_finalize(small));
  ml_test_fill(small->data, 4, 1, -1, 1);
  CHECK_OK(ml_checkpoint_save(path, small, NULL, NULL, 0));
  size_t n0;
  uint8_t *old = ml_test_read_file(path, &n0);

  /* a write that fails midway: the file size limit (as root too) makes write() return EFBIG */
  ml_params *big = ml_params_new();
  CHECK_OK(ml_params_add(big, "w", 1, (int64_t[]){100000}));
  CHECK_OK(ml_params_finalize(big));
  struct rlimit saved, lim;
  CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = saved;
  lim.rlim_cur = 4096;
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  ml_status st = ml_checkpoint_save(path, big, NULL, NULL, 0);
  CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
  signal(SIGXFSZ, prev);
  CHECK(st == ML_ERR_IO);
  CHECK(strstr(ml_last_error(), "write failed") != NULL);
  CHECK(count_temp_files() == 0);
  size_t n1;
  uint8_t *now = ml_test_read_file(path, &n1);
  CHECK(now && n1 == n0 && memcmp(old, now, n0) == 0);
  ml_params *q = ml_params_clone_layout(small);
  CHECK_OK(ml_checkpoint_load(path, q, NULL));
  CHECK(same_floats(q->data, small->data, 4));
  free(old);
  free(now);
  ml_params_free(q);
  ml_params_free(big);
  ml_params_free(small);
}
