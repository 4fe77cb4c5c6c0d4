/* A small test registry: each ML_TEST registers itself; main() runs them all, prints
 * "N passed, N failed" and exits nonzero on any failure. */
#ifndef ML_TEST_HARNESS_H
#define ML_TEST_HARNESS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*ml_test_fn)(void);
void ml_test_register(const char *name, ml_test_fn fn, int last);
void ml_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ml_test_failed_now(void); /* nonzero once the running test has failed */

#define ML_TEST(name)                                                         \
  static void test_##name(void);                                              \
  __attribute__((constructor)) static void register_##name(void) {            \
    ml_test_register(#name, test_##name, 0);                                  \
  }                                                                           \
  static void test_##name(void)

/* Runs after every ML_TEST of the file (e.g. a check that the others covered a table). */
#define ML_TEST_LAST(name)                                                    \
  static void test_##name(void);                                              \
  __attribute__((constructor)) static void register_##name(void) {            \
    ml_test_register(#name, test_##name, 1);                                  \
  }                                                                           \
  static void test_##name(void)

#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) ml_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); \
  } while (0)
#define CHECK_MSG(cond, ...)                                   \
  do {                                                         \
    if (!(cond)) ml_test_fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define CHECK_OK(expr)                                                                          \
  do {                                                                                          \
    int st_ = (int)(expr);                                                                      \
    if (st_ != 0) ml_test_fail(__FILE__, __LINE__, "%s returned %d: %s", #expr, st_, ml_last_error()); \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                                       \
  do {                                                                                              \
    double a_ = (double)(a), b_ = (double)(b);                                                      \
    if (!(fabs(a_ - b_) <= (tol)))                                                                  \
      ml_test_fail(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a, a_, #b, b_, \
                   fabs(a_ - b_), (double)(tol));                                                   \
  } while (0)

/* Max of |a-b| / (atol + rtol*|b|) over n values; <= 1 means close. Reports the worst index. */
double ml_test_close(const float *a, const float *b, int64_t n, double atol, double rtol, int64_t *worst);
#define CHECK_CLOSE(a, b, n, atol, rtol)                                                          \
  do {                                                                                            \
    int64_t w_ = 0;                                                                               \
    double r_ = ml_test_close((a), (b), (n), (atol), (rtol), &w_);                                \
    if (!(r_ <= 1.0))                                                                             \
      ml_test_fail(__FILE__, __LINE__, "%s vs %s: index %lld differs (%.9g vs %.9g), ratio %.3g", \
                   #a, #b, (long long)w_, (double)(a)[w_], (double)(b)[w_], r_);                  \
  } while (0)

/* Whole file into a malloc'd, NUL-terminated buffer (*n bytes when n is not NULL, NUL not counted); NULL if it
 * cannot be opened. The caller frees. */
void *ml_test_read_file(const char *path, size_t *n);
/* Writes n bytes to path, failing the running test if it cannot. */
void ml_test_write_file(const char *path, const void *data, size_t n);

/* Fills with uniform values in [lo, hi) from a fixed-seed generator. */
void ml_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* A fresh empty directory for this test file (under ML_TEST_TMP or /tmp); path is static. */
const char *ml_test_tmpdir(void);
/* The built metalearn binary ($ML_BINARY_DIR/metalearn, else ./metalearn); path is static. */
const char *ml_test_metalearn_path(void);
/* Runs `metalearn args` (through the shell), stdout and stderr into out (NUL-terminated, at most
 * n - 1 bytes); returns the exit code, -1 if it could not run or was killed. */
int ml_test_metalearn(const char *args, char *out, size_t n);
/* $METALEARN_DATA, else ../shared/data beside the source tree; NULL when absent. */
const char *ml_test_data_dir(void);

#endif
