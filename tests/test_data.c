/* data: Omniglot zips / npz / Lake runs on the real files when present (counts, merge of the
 * shared alphabets, npz-vs-zip pixel identity, cache hit and corrupt-cache rebuild), and on
 * synthetic fixtures written here with libzip / libspng / libjpeg for every bad input: each must
 * return an error naming the file, never crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <spng.h>
#include <zip.h>

#include "harness.h"
#include "metalearn/data.h"

/* ---------------------------------------------------------------- fixtures ---- */

static char *path_in(const char *name) {
  static char buf[8][4096];
  static int at;
  char *p = buf[at++ % 8];
  snprintf(p, 4096, "%s/%s", ml_test_tmpdir(), name);
  return p;
}

/* 8-bit grayscale PNG in memory (malloc'd). */
static uint8_t *make_png(uint32_t w, uint32_t h, const uint8_t *gray, size_t *len) {
  spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  struct spng_ihdr ihdr = {.width = w, .height = h, .bit_depth = 8, .color_type = SPNG_COLOR_TYPE_GRAYSCALE};
  spng_set_ihdr(ctx, &ihdr);
  int e = spng_encode_image(ctx, gray, (size_t)w * h, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  int err = 0;
  uint8_t *out = e ? NULL : spng_get_png_buffer(ctx, len, &err);
  spng_ctx_free(ctx);
  return out;
}

static uint8_t *make_jpeg(int w, int h, int comps, const uint8_t *interleaved, size_t *len) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  unsigned char *mem = NULL;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &mem, &n);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(interleaved + (size_t)c.next_scanline * (size_t)(w * comps));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *len = n;
  return mem;
}

typedef struct {
  const char *name;
  const void *data;
  size_t len;
} zentry;

static void write_zip(const char *path, const zentry *e, int n) {
  int err;
  zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
  CHECK(z != NULL);
  if (!z) return;
  for (int i = 0; i < n; i++) {
    void *copy = malloc(e[i].len ? e[i].len : 1);
    memcpy(copy, e[i].data, e[i].len);
    zip_source_t *s = zip_source_buffer(z, copy, e[i].len, 1);
    CHECK(s && zip_file_add(z, e[i].name, s, ZIP_FL_OVERWRITE) >= 0);
  }
  CHECK(zip_close(z) == 0);
}



/* .npy v1 bytes: header dict + data (data may be shorter than the shape says). */
static uint8_t *make_npy(const char *dict, const uint8_t *data, size_t dlen, size_t *len) {
  size_t dl = strlen(dict), hl = dl + 1;
  hl += (64 - (10 + hl) % 64) % 64;
  *len = 10 + hl + dlen;
  uint8_t *b = malloc(*len);
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (uint8_t)(hl & 0xff), b[9] = (uint8_t)(hl >> 8);
  memset(b + 10, ' ', hl);
  memcpy(b + 10, dict, dl);
  b[10 + hl - 1] = '\n';
  if (dlen) memcpy(b + 10 + hl, data, dlen);
  return b;
}

/* A synthetic npz of n characters x d drawings of s x s; drawing (i, k) is white (True) but for
 * an ink pixel at position (i + k) % (s*s). */
static void write_npz(const char *path, int n, int d, int s) {
  size_t dlen = (size_t)n * d * s * s, len, llen;
  uint8_t *data = malloc(dlen);
  memset(data, 1, dlen);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < d; k++) data[((size_t)i * d + k) * s * s + (size_t)(i + k) % (size_t)(s * s)] = 0;
  char dict[256];
  snprintf(dict, sizeof dict, "{'descr': '|b1', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }", n, d, s, s);
  uint8_t *npy = make_npy(dict, data, dlen, &len);
  int64_t labels[64];
  for (int i = 0; i < n * d && i < 64; i++) labels[i] = i / d;
  snprintf(dict, sizeof dict, "{'descr': '<i8', 'fortran_order': False, 'shape': (%d, %d), }", n, d);
  uint8_t *lab = make_npy(dict, (const uint8_t *)labels, sizeof(int64_t) * (size_t)(n * d), &llen);
  zentry e[2] = {{"images.npy", npy, len}, {"labels.npy", lab, llen}};
  write_zip(path, e, 2);
  free(data);
  free(npy);
  free(lab);
}

#define CHECK_ERR(expr, code, needle)                                                                   \
  do {                                                                                                  \
    ml_status s_ = (expr);                                                                              \
    CHECK_MSG(s_ == (code), "%s returned %s, wanted %s (%s)", #expr, ml_status_name(s_), #code, ml_last_error()); \
    CHECK_MSG(strstr(ml_last_error(), (needle)) != NULL, "error '%s' does not name '%s'", ml_last_error(), (needle)); \
    CHECK_MSG(strchr(ml_last_error(), '\n') == NULL, "error is not one line: '%s'", ml_last_error());   \
  } while (0)

/* ------------------------------------------------------------ pixel helpers ---- */

ML_TEST(resize_area_box_filter) {
  uint8_t src[16] = {0, 255, 10, 20, 255, 0, 30, 40, 100, 100, 0, 0, 100, 100, 0, 4};
  uint8_t dst[4];
  ml_image_resize_area(src, 4, 4, dst, 2, 2);
  CHECK(dst[0] == 128 && dst[1] == 25 && dst[2] == 100 && dst[3] == 1);
  /* 105 -> 28 keeps a constant image constant and the mean close */
  static uint8_t big[105 * 105], small[28 * 28];
  memset(big, 200, sizeof big);
  ml_image_resize_area(big, 105, 105, small, 28, 28);
  for (int i = 0; i < 28 * 28; i++) CHECK(small[i] == 200);
  for (int i = 0; i < 105 * 105; i++) big[i] = (uint8_t)((i % 105) < 52 ? 255 : 0);
  ml_image_resize_area(big, 105, 105, small, 28, 28);
  double m1 = 0, m2 = 0;
  for (int i = 0; i < 105 * 105; i++) m1 += big[i];
  for (int i = 0; i < 28 * 28; i++) m2 += small[i];
  CHECK_NEAR(m1 / (105 * 105), m2 / (28 * 28), 0.5);
  /* upscaling replicates */
  uint8_t two[4] = {0, 255, 255, 0}, four[16];
  ml_image_resize_area(two, 2, 2, four, 4, 4);
  CHECK(four[0] == 0 && four[1] == 0 && four[2] == 255 && four[15] == 0 && four[12] == 255);
}

/* ------------------------------------------------------------ synthetic zips ---- */

ML_TEST(synthetic_zip_loads_inverted_and_merged) {
  uint8_t g[16];
  memset(g, 255, sizeof g);
  g[5] = 0; /* one ink pixel */
  size_t pl;
  uint8_t *png = make_png(4, 4, g, &pl);
  CHECK(png != NULL);
  zentry a[] = {{"set1/Alpha/character01/0001_01.png", png, pl}, {"set1/Alpha/character01/0001_02.png", png, pl},
                {"set1/Beta/character01/0002_01.png", png, pl}, {"set1/Beta/character01/0002_02.png", png, pl}};
  zentry b[] = {{"set2/Beta/character01/0002_01.png", png, pl}, {"set2/Beta/character01/0002_02.png", png, pl},
                {"set2/Gamma/character02/0003_01.png", png, pl}, {"set2/Gamma/character02/0003_02.png", png, pl},
                {"set2/readme.txt", "hi", 2}};
  write_zip(path_in("a.zip"), a, 4);
  write_zip(path_in("b.zip"), b, 5);
  const char *paths[2] = {path_in("a.zip"), path_in("b.zip")};
  ml_dataset ds;
  CHECK_OK(ml_omniglot_load_zips(paths, 2, 4, "", &ds));
  CHECK(ds.n_classes == 3 && ds.n_groups == 3 && ds.n_images == 6);
  CHECK(ds.height == 4 && ds.width == 4 && ds.channels == 1);
  CHECK(ml_dataset_find_class(&ds, "Beta/character01") == 1);
  CHECK(!strcmp(ds.group_names[2], "Gamma") && ds.class_group[2] == 2);
  for (int64_t i = 0; i < ds.n_images; i++)
    for (int p = 0; p < 16; p++) CHECK(ds.pixels[i * 16 + p] == (p == 5 ? 255 : 0));
  ml_dataset_free(&ds);
  CHECK(ds.pixels == NULL);
  ml_dataset_free(NULL);
  free(png);
}

ML_TEST(bad_inputs_return_errors_naming_the_file) {
  ml_dataset ds;
  ml_lake_runs runs;
  const char *missing = path_in("does-not-exist.zip");
  CHECK_ERR(ml_omniglot_load_zips(&missing, 1, 28, "", &ds), ML_ERR_IO, "does-not-exist.zip");
  CHECK_ERR(ml_omniglot_load_npz(missing, 28, "", &ds), ML_ERR_IO, "does-not-exist.zip");
  CHECK_ERR(ml_lake_runs_load(missing, 28, &runs), ML_ERR_IO, "does-not-exist.zip");
  CHECK_ERR(ml_image_folder_load(path_in("no-such-dir"), 28, 1, &ds), ML_ERR_IO, "no-such-dir");

  /* garbage instead of a zip */
  const char *junk = path_in("junk.zip");
  uint8_t noise[3000];
  ml_rng r;
  ml_rng_init(&r, 1, 2);
  for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)ml_rng_u32(&r);
  ml_test_write_file(junk, noise, sizeof noise);
  CHECK_ERR(ml_omniglot_load_zips(&junk, 1, 28, "", &ds), ML_ERR_FORMAT, "junk.zip");
  CHECK_ERR(ml_omniglot_load_npz(junk, 28, "", &ds), ML_ERR_FORMAT, "junk.zip");
  CHECK_ERR(ml_lake_runs_load(junk, 28, &runs), ML_ERR_FORMAT, "junk.zip");

  /* a valid zip cut short, and one with a flipped byte inside compressed data */
  uint8_t g[105 * 105];
  for (size_t i = 0; i < sizeof g; i++) g[i] = (uint8_t)(i % 7 ? 255 : 0);
  size_t pl;
  uint8_t *png = make_png(105, 105, g, &pl);
  zentry ok[] = {{"A/c1/0001_01.png", png, pl}, {"A/c1/0001_02.png", png, pl}};
  const char *good = path_in("good.zip");
  write_zip(good, ok, 2);
  size_t zl;
  uint8_t *zb = ml_test_read_file(good, &zl);
  const char *cut = path_in("cut.zip");
  ml_test_write_file(cut, zb, zl / 2);
  CHECK_ERR(ml_omniglot_load_zips(&cut, 1, 28, "", &ds), ML_ERR_FORMAT, "cut.zip");
  zb[40] ^= 0x5a; /* inside the first entry's data: CRC or inflate error */
  const char *flip = path_in("flip.zip");
  ml_test_write_file(flip, zb, zl);
  CHECK_ERR(ml_omniglot_load_zips(&flip, 1, 28, "", &ds), ML_ERR_FORMAT, "flip.zip");
  free(zb);

  /* corrupt PNG inside a sound zip */
  uint8_t *badpng = malloc(pl);
  memcpy(badpng, png, pl);
  for (size_t i = 40; i < pl; i++) badpng[i] ^= 0xA5;
  zentry bp[] = {{"A/c1/0001_01.png", png, pl}, {"A/c1/0001_02.png", badpng, pl}};
  const char *bz = path_in("badpng.zip");
  write_zip(bz, bp, 2);
  CHECK_ERR(ml_omniglot_load_zips(&bz, 1, 28, "", &ds), ML_ERR_FORMAT, "0001_02.png");
  CHECK(strstr(ml_last_error(), "badpng.zip") != NULL);
  zentry np[] = {{"A/c1/0001_01.png", "not a png", 9}};
  write_zip(bz, np, 1);
  CHECK_ERR(ml_omniglot_load_zips(&bz, 1, 28, "", &ds), ML_ERR_FORMAT, "0001_01.png");

  /* a PNG claiming 100000 x 100000 pixels (valid IHDR CRC) is refused before allocation */
  uint8_t huge[33];
  memcpy(huge, png, 33);
  const uint32_t side = 100000;
  for (int k = 0; k < 2; k++)
    for (int b = 0; b < 4; b++) huge[16 + 4 * k + b] = (uint8_t)(side >> (24 - 8 * b));
  uint32_t crc = 0xFFFFFFFFu;
  for (int i = 12; i < 29; i++) {
    crc ^= huge[i];
    for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xFFFFFFFFu;
  for (int b = 0; b < 4; b++) huge[29 + b] = (uint8_t)(crc >> (24 - 8 * b));
  zentry hp[] = {{"A/c1/0001_01.png", huge, sizeof huge}};
  write_zip(bz, hp, 1);
  CHECK_ERR(ml_omniglot_load_zips(&bz, 1, 28, "", &ds), ML_ERR_FORMAT, "0001_01.png");

  /* entry names that would escape a directory */
  const char *evil = path_in("evil.zip");
  zentry ev[] = {{"A/c1/0001_01.png", png, pl}, {"../../evil.png", png, pl}};
  write_zip(evil, ev, 2);
  CHECK_ERR(ml_omniglot_load_zips(&evil, 1, 28, "", &ds), ML_ERR_FORMAT, "../../evil.png");
  CHECK(strstr(ml_last_error(), "evil.zip") != NULL);
  zentry ab[] = {{"/etc/A/c1/0001_01.png", png, pl}};
  write_zip(evil, ab, 1);
  CHECK_ERR(ml_omniglot_load_zips(&evil, 1, 28, "", &ds), ML_ERR_FORMAT, "/etc/A");
  CHECK_ERR(ml_lake_runs_load(evil, 28, &runs), ML_ERR_FORMAT, "evil.zip");
  /* a zip without the expected layout */
  zentry flat[] = {{"0001_01.png", png, pl}};
  write_zip(evil, flat, 1);
  CHECK_ERR(ml_omniglot_load_zips(&evil, 1, 28, "", &ds), ML_ERR_FORMAT, "0001_01.png");
  CHECK_ERR(ml_lake_runs_load(good, 28, &runs), ML_ERR_FORMAT, "good.zip");

  /* arguments */
  CHECK_ERR(ml_omniglot_load_zips(&good, 1, -3, "", &ds), ML_ERR_ARG, "good.zip");
  CHECK_ERR(ml_omniglot_load_zips(&good, 1, 100000, "", &ds), ML_ERR_ARG, "image_size");
  CHECK(ml_omniglot_load_zips(NULL, 0, 28, "", &ds) == ML_ERR_ARG);
  free(png);
  free(badpng);
}

ML_TEST(npz_header_validation) {
  ml_dataset ds;
  const char *p = path_in("syn.npz");
  write_npz(p, 3, 2, 6);
  CHECK_OK(ml_omniglot_load_npz(p, 0, "", &ds));
  CHECK(ds.n_classes == 3 && ds.n_images == 6 && ds.height == 6 && ds.n_groups == 1);
  CHECK(!strcmp(ds.group_names[0], "syn") && !strcmp(ds.class_names[2], "syn/0002"));
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 2; k++) {
      const uint8_t *im = ml_dataset_image(&ds, i, k);
      for (int q = 0; q < 36; q++) CHECK(im[q] == (q == (i + k) % 36 ? 255 : 0));
    }
  ml_dataset_free(&ds);

  /* each malformed images.npy goes into its own npz */
  uint8_t data[2 * 2 * 4 * 4];
  memset(data, 1, sizeof data);
  struct {
    const char *dict;
    size_t dlen;
    const char *needle;
  } cases[] = {
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2, 4, 4), }", 40, "images.npy"},      /* truncated */
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (2000, 20, 105, 105), }", 64, "header shape"}, /* lies */
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (4611686018427387904, 4, 4, 4), }", 64,
       "overflow"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (99999999999999999999999, 2, 4, 4), }", 64, "malformed"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 4, 4), }", 64, "dtype"},
      {"{'descr': '|b1', 'fortran_order': True, 'shape': (2, 2, 4, 4), }", 64, "fortran"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (2, 32, 4), }", 64, "3-D"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2, 5000, 5000), }", 64, "header shape"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (0, 2, 4, 4), }", 0, "implausible"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2, 4, 4), ", 64, "malformed"},
      {"not a dict at all", 64, "malformed"},
      {"{'descr': '|b1', 'fortran_order': False}", 64, "malformed"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t len;
    uint8_t *npy = make_npy(cases[c].dict, data, cases[c].dlen, &len);
    zentry e[] = {{"images.npy", npy, len}};
    write_zip(p, e, 1);
    ml_status st = ml_omniglot_load_npz(p, 28, "", &ds);
    CHECK_MSG(st == ML_ERR_FORMAT, "case %zu: %s (%s)", c, ml_status_name(st), ml_last_error());
    CHECK_MSG(strstr(ml_last_error(), "syn.npz") && strstr(ml_last_error(), cases[c].needle), "case %zu: '%s'", c,
              ml_last_error());
    free(npy);
  }
  /* bad magic, bad version, truncated preamble, header length past the end */
  const char *raw[] = {"\x93NUMPZ\x01\x00\x10\x00{}", "\x93NUMPY\x07\x00\x10\x00{}", "\x93NUM",
                       "\x93NUMPY\x01\x00\xff\xff{'descr'"};
  for (size_t c = 0; c < 4; c++) {
    zentry e[] = {{"images.npy", raw[c], strlen(raw[c])}};
    write_zip(p, e, 1);
    CHECK_ERR(ml_omniglot_load_npz(p, 28, "", &ds), ML_ERR_FORMAT, "images.npy");
  }
  zentry none[] = {{"other.npy", "x", 1}};
  write_zip(p, none, 1);
  CHECK_ERR(ml_omniglot_load_npz(p, 28, "", &ds), ML_ERR_FORMAT, "no images.npy");
  /* labels whose shape disagrees with the images */
  size_t l1, l2;
  uint8_t *im = make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2, 4, 4), }", data, 64, &l1);
  int64_t lab[6] = {0};
  uint8_t *lb = make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }", (uint8_t *)lab, 48, &l2);
  zentry both[] = {{"images.npy", im, l1}, {"labels.npy", lb, l2}};
  write_zip(p, both, 2);
  CHECK_ERR(ml_omniglot_load_npz(p, 28, "", &ds), ML_ERR_FORMAT, "labels.npy");
  free(im);
  free(lb);
}

ML_TEST(cache_hit_and_corrupt_cache_rebuilt) {
  const char *p = path_in("cached.npz"), *dir = path_in("cache");
  write_npz(p, 5, 4, 12);
  ml_dataset a, b;
  CHECK_OK(ml_omniglot_load_npz(p, 8, dir, &a));
  char cpath[4200] = "";
  size_t n = 0;
  FILE *ls = NULL;
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "ls %s/*.mlcache", dir);
  ls = popen(cmd, "r");
  CHECK(ls && fgets(cpath, sizeof cpath, ls));
  if (ls) pclose(ls);
  cpath[strcspn(cpath, "\n")] = 0;
  uint8_t *orig = ml_test_read_file(cpath, &n);
  CHECK(orig != NULL && n > 100);
  CHECK_OK(ml_omniglot_load_npz(p, 8, dir, &b));
  CHECK(b.n_images == a.n_images && !memcmp(a.pixels, b.pixels, (size_t)(a.n_images * 64)));
  CHECK(!strcmp(b.class_names[4], a.class_names[4]));
  ml_dataset_free(&b);
  /* every kind of damage: a flipped byte anywhere, truncation, garbage, empty */
  size_t spots[] = {0, 9, 20, n / 2, n - 1, n - 9};
  for (size_t s = 0; s < sizeof spots / sizeof spots[0]; s++) {
    uint8_t *bad = malloc(n);
    memcpy(bad, orig, n);
    bad[spots[s]] ^= 0x10;
    ml_test_write_file(cpath, bad, n);
    free(bad);
    CHECK_OK(ml_omniglot_load_npz(p, 8, dir, &b));
    CHECK(b.n_images == a.n_images && !memcmp(a.pixels, b.pixels, (size_t)(a.n_images * 64)));
    ml_dataset_free(&b);
    size_t m;
    uint8_t *again = ml_test_read_file(cpath, &m);
    CHECK_MSG(m == n && !memcmp(again, orig, n), "cache not rebuilt after damage at %zu", spots[s]);
    free(again);
  }
  ml_test_write_file(cpath, orig, n / 3);
  CHECK_OK(ml_omniglot_load_npz(p, 8, dir, &b));
  CHECK(!memcmp(a.pixels, b.pixels, (size_t)(a.n_images * 64)));
  ml_dataset_free(&b);
  ml_test_write_file(cpath, "", 0);
  CHECK_OK(ml_omniglot_load_npz(p, 8, dir, &b));
  ml_dataset_free(&b);
  /* a different image size is a different cache entry */
  CHECK_OK(ml_omniglot_load_npz(p, 6, dir, &b));
  CHECK(b.height == 6);
  ml_dataset_free(&b);
  /* an unwritable cache directory only costs the cache */
  CHECK_OK(ml_omniglot_load_npz(p, 8, "/proc/no-such/cache", &b));
  ml_dataset_free(&b);
  /* concatenation keeps order and offsets */
  ml_dataset c;
  CHECK_OK(ml_dataset_concat(&a, &a, &c));
  CHECK(c.n_classes == 10 && c.n_groups == 2 && c.class_offset[10] == 40 && c.class_group[7] == 1);
  CHECK(!memcmp(ml_dataset_image(&c, 7, 3), ml_dataset_image(&a, 2, 3), 64));
  ml_dataset_free(&c);
  ml_dataset_free(&a);
  free(orig);
}

ML_TEST(image_folder_png_and_jpeg) {
  const char *root = path_in("folder");
  char d[4200], f[4300];
  mkdir(root, 0755);
  uint8_t g[6 * 4], rgb[6 * 4 * 3];
  for (int i = 0; i < 24; i++) g[i] = (uint8_t)(i * 10);
  for (int i = 0; i < 24; i++) rgb[3 * i] = 200, rgb[3 * i + 1] = 100, rgb[3 * i + 2] = 50;
  size_t pl, jl;
  uint8_t *png = make_png(6, 4, g, &pl), *jpg = make_jpeg(6, 4, 3, rgb, &jl);
  const char *cls[] = {"cats", "dogs", "empty"};
  for (int c = 0; c < 3; c++) {
    snprintf(d, sizeof d, "%s/%s", root, cls[c]);
    mkdir(d, 0755);
  }
  snprintf(f, sizeof f, "%s/cats/a.png", root);
  ml_test_write_file(f, png, pl);
  snprintf(f, sizeof f, "%s/cats/b.JPG", root);
  ml_test_write_file(f, jpg, jl);
  snprintf(f, sizeof f, "%s/dogs/c.jpeg", root);
  ml_test_write_file(f, jpg, jl);
  snprintf(f, sizeof f, "%s/dogs/notes.txt", root);
  ml_test_write_file(f, "x", 1);
  ml_dataset ds;
  CHECK_OK(ml_image_folder_load(root, 3, 3, &ds));
  CHECK(ds.n_classes == 2 && ds.n_images == 3 && ds.channels == 3 && ds.height == 3);
  CHECK(!strcmp(ds.class_names[0], "cats") && !strcmp(ds.class_names[1], "dogs"));
  CHECK(ml_dataset_class_size(&ds, 0) == 2 && ml_dataset_class_size(&ds, 1) == 1);
  const uint8_t *j = ml_dataset_image(&ds, 1, 0);
  CHECK(abs(j[0] - 200) < 6 && abs(j[9] - 100) < 6 && abs(j[18] - 50) < 6); /* planar R, G, B */
  ml_dataset_free(&ds);
  CHECK_OK(ml_image_folder_load(root, 2, 1, &ds));
  CHECK(ds.channels == 1);
  ml_dataset_free(&ds);
  CHECK_ERR(ml_image_folder_load(root, 2, 2, &ds), ML_ERR_ARG, "channels");
  /* a truncated JPEG names its file */
  snprintf(f, sizeof f, "%s/dogs/d.jpg", root);
  ml_test_write_file(f, jpg, jl / 3);
  CHECK_ERR(ml_image_folder_load(root, 3, 3, &ds), ML_ERR_FORMAT, "d.jpg");
  ml_test_write_file(f, "\xff\xd8\xff garbage", 11);
  CHECK_ERR(ml_image_folder_load(root, 3, 3, &ds), ML_ERR_FORMAT, "d.jpg");
  CHECK_ERR(ml_image_folder_load(path_in("folder/empty"), 3, 3, &ds), ML_ERR_FORMAT, "empty");
  free(png);
  free(jpg);
}

/* ------------------------------------------------------------------ real data ---- */

static const char *omni(const char *name) {
  static char buf[8][4096];
  static int at;
  const char *d = ml_test_data_dir();
  if (!d) return NULL;
  char *p = buf[at++ % 8];
  snprintf(p, 4096, "%s/omniglot/%s", d, name);
  return access(p, R_OK) == 0 ? p : NULL;
}

/* The index NNNN of the drawings of one character in a zip (its file names are NNNN_MM.png). */
static int char_index(const char *zpath, const char *alpha_char) {
  int err, idx = -1;
  zip_t *z = zip_open(zpath, ZIP_RDONLY, &err);
  if (!z) return -1;
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0) && idx < 0; i++) {
    const char *n = zip_get_name(z, (zip_uint64_t)i, 0), *p = strstr(n, alpha_char);
    if (p && p[strlen(alpha_char)] == '/' && strstr(n, ".png")) idx = atoi(strrchr(n, '/') + 1);
  }
  zip_close(z);
  return idx;
}

ML_TEST(real_omniglot_zips_npz_and_runs) {
  const char *s1 = omni("images_background_small1.zip"), *s2 = omni("images_background_small2.zip"),
             *bg = omni("images_background.npz"), *ev = omni("images_evaluation.npz"), *runs_zip = omni("all_runs.zip");
  if (!s1 || !s2 || !bg || !ev || !runs_zip) {
    printf("  note: Omniglot files not found under $METALEARN_DATA; real-data checks skipped\n");
    return;
  }
  const char *cache = path_in("real-cache");
  ml_dataset z1, z2, z, z_again, n_bg, n_bg2, n_ev;
  CHECK_OK(ml_omniglot_load_zips(&s1, 1, 28, "", &z1));
  CHECK_OK(ml_omniglot_load_zips(&s2, 1, 28, "", &z2));
  CHECK(z1.n_classes == 136 && z2.n_classes == 156);
  const char *both[2] = {s1, s2};
  double t0 = ml_now();
  CHECK_OK(ml_omniglot_load_zips(both, 2, 28, cache, &z));
  double t_zip = ml_now() - t0;
  t0 = ml_now();
  CHECK_OK(ml_omniglot_load_zips(both, 2, 28, cache, &z_again));
  double t_zip_cached = ml_now() - t0;
  /* Greek (24) and Latin (26) are in both small zips: 136 + 156 - 50 = 242 */
  CHECK_MSG(z.n_classes == 242, "%lld classes", (long long)z.n_classes);
  CHECK(z.n_groups == 8 && z.n_images == 242 * 20);
  for (int64_t c = 0; c < z.n_classes; c++) CHECK(ml_dataset_class_size(&z, c) == 20);
  int64_t greek = 0;
  for (int64_t c = 0; c < z.n_classes; c++) greek += !strcmp(z.group_names[z.class_group[c]], "Greek");
  CHECK(greek == 24);
  CHECK(z_again.n_images == z.n_images && !memcmp(z.pixels, z_again.pixels, (size_t)z.n_images * 784));
  CHECK(t_zip_cached < t_zip);
  /* pixel convention: mostly background (0), some ink (255 after averaging only inside strokes) */
  int64_t ink = 0;
  for (int64_t i = 0; i < 784 * 20; i++) ink += z.pixels[i] > 127;
  CHECK(ink > 20 * 20 && ink < 784 * 20 / 3);

  t0 = ml_now();
  CHECK_OK(ml_omniglot_load_npz(bg, 28, cache, &n_bg));
  double t_npz = ml_now() - t0;
  t0 = ml_now();
  CHECK_OK(ml_omniglot_load_npz(bg, 28, cache, &n_bg2));
  double t_npz_cached = ml_now() - t0;
  CHECK_OK(ml_omniglot_load_npz(ev, 28, cache, &n_ev));
  CHECK(n_bg.n_classes == 964 && n_bg.n_images == 964 * 20);
  CHECK(n_ev.n_classes == 659 && n_ev.n_images == 659 * 20);
  CHECK(!memcmp(n_bg.pixels, n_bg2.pixels, (size_t)n_bg.n_images * 784));
  CHECK(t_npz_cached < t_npz);
  printf("  load times: small zips %.3fs (cached %.3fs), background npz %.3fs (cached %.3fs)\n", t_zip, t_zip_cached,
         t_npz, t_npz_cached);

  /* npz row i = i-th smallest character index; the background indices are 0001..0964, so the
   * character whose files are NNNN_MM.png is row NNNN-1, drawer MM is column MM-1. */
  const char *probe[] = {"Balinese/character01", "Korean/character40", "Tagalog/character17", "Greek/character24"};
  for (int i = 0; i < 4; i++) {
    int64_t c = ml_dataset_find_class(&z, probe[i]);
    int idx = char_index(strstr(probe[i], "Tagalog") ? s2 : s1, probe[i]);
    CHECK_MSG(c >= 0 && idx >= 1 && idx <= 964, "%s: class %lld index %d", probe[i], (long long)c, idx);
    if (c < 0 || idx < 1 || idx > 964) continue;
    for (int k = 0; k < 20; k++)
      CHECK_MSG(!memcmp(ml_dataset_image(&z, c, k), ml_dataset_image(&n_bg, idx - 1, k), 784),
                "%s drawing %d differs from npz row %d", probe[i], k + 1, idx - 1);
  }

  /* corrupt the zip cache: ignored and rebuilt, same bytes */
  char cmd[4400], cpath[4200] = "";
  snprintf(cmd, sizeof cmd, "ls %s/omniglot-zips-*.mlcache", cache);
  FILE *ls = popen(cmd, "r");
  CHECK(ls && fgets(cpath, sizeof cpath, ls));
  if (ls) pclose(ls);
  cpath[strcspn(cpath, "\n")] = 0;
  FILE *f = fopen(cpath, "r+b");
  CHECK(f != NULL);
  if (f) {
    fseek(f, 100000, SEEK_SET);
    fputc(0x42, f);
    fclose(f);
  }
  ml_dataset_free(&z_again);
  CHECK_OK(ml_omniglot_load_zips(both, 2, 28, cache, &z_again));
  CHECK(z_again.n_images == z.n_images && !memcmp(z.pixels, z_again.pixels, (size_t)z.n_images * 784));

  /* Lake's 20 runs */
  ml_lake_runs r;
  CHECK_OK(ml_lake_runs_load(runs_zip, 28, &r));
  CHECK(r.n_runs == 20 && r.n_train == 20 && r.n_test == 20 && r.height == 28);
  for (int run = 0; run < 20; run++) {
    int seen[20] = {0};
    for (int i = 0; i < 20; i++) {
      int32_t l = r.test_label[run * 20 + i];
      CHECK(l >= 0 && l < 20);
      if (l >= 0 && l < 20) seen[l]++;
    }
    for (int j = 0; j < 20; j++) CHECK(seen[j] == 1); /* one test drawing per training class */
  }
  /* run01/class_labels.txt starts: item01 -> class08, item02 -> class09, item03 -> class02 */
  CHECK(r.test_label[0] == 7 && r.test_label[1] == 8 && r.test_label[2] == 1);
  /* a 1-nearest-neighbour on raw pixels is far above chance (1/20) on the 400 test drawings */
  int correct = 0;
  for (int run = 0; run < 20; run++)
    for (int i = 0; i < 20; i++) {
      const uint8_t *q = r.test + (size_t)(run * 20 + i) * 784;
      int64_t best = INT64_MAX;
      int arg = -1;
      for (int j = 0; j < 20; j++) {
        const uint8_t *t = r.train + (size_t)(run * 20 + j) * 784;
        int64_t dsum = 0;
        for (int p = 0; p < 784; p++) dsum += (int64_t)(q[p] - t[p]) * (q[p] - t[p]);
        if (dsum < best) best = dsum, arg = j;
      }
      correct += arg == r.test_label[run * 20 + i];
    }
  printf("  Lake runs: raw-pixel 1-NN accuracy %.1f%%\n", 100.0 * correct / 400);
  CHECK(correct > 40);
  ml_lake_runs_free(&r);
  ml_lake_runs_free(&r);

  ml_dataset_free(&z1);
  ml_dataset_free(&z2);
  ml_dataset_free(&z);
  ml_dataset_free(&z_again);
  ml_dataset_free(&n_bg);
  ml_dataset_free(&n_bg2);
  ml_dataset_free(&n_ev);
}
