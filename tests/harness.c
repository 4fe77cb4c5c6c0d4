/* Runner for ML_TEST cases. Usage: test_x [name-substring]. */
#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metalearn/base.h"

#define MAX_TESTS 1024
typedef struct {
  const char *name;
  ml_test_fn fn;
  int last;
} test_case;
static test_case tests[MAX_TESTS];
static int ntests;
static int cur_failed;

void ml_test_register(const char *name, ml_test_fn fn, int last) {
  if (ntests < MAX_TESTS) tests[ntests++] = (test_case){name, fn, last};
}

void ml_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  FAIL %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  cur_failed++;
}
int ml_test_failed_now(void) { return cur_failed; }

double ml_test_close(const float *a, const float *b, int64_t n, double atol, double rtol, int64_t *worst) {
  double wr = 0;
  *worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    double r = d / (atol + rtol * fabs((double)b[i]));
    if (isnan(a[i]) || isnan(b[i])) r = INFINITY;
    if (r > wr) {
      wr = r;
      *worst = i;
    }
  }
  return wr;
}

void *ml_test_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)(len < 0 ? 0 : len) + 1);
  size_t got = b ? fread(b, 1, (size_t)(len < 0 ? 0 : len), f) : 0;
  fclose(f);
  if (b) b[got] = 0;
  if (n) *n = got;
  return b;
}

void ml_test_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    ml_test_fail(__FILE__, __LINE__, "cannot write %s", path);
    return;
  }
  if (fwrite(data, 1, n, f) != n) ml_test_fail(__FILE__, __LINE__, "short write to %s", path);
  fclose(f);
}

void ml_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
  ml_rng r;
  ml_rng_init(&r, seed, 12345);
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ml_rng_uniform(&r);
}

static char tmpdir[4096];
const char *ml_test_tmpdir(void) {
  if (tmpdir[0]) return tmpdir;
  const char *base = getenv("ML_TEST_TMP");
  if (!base || !*base) base = "/tmp";
  mkdir(base, 0755);
  snprintf(tmpdir, sizeof tmpdir, "%s/mltest-%ld-XXXXXX", base, (long)getpid());
  if (!mkdtemp(tmpdir)) {
    fprintf(stderr, "cannot create a temp dir under %s\n", base);
    exit(1);
  }
  return tmpdir;
}

static char datadir[4096];
const char *ml_test_data_dir(void) {
  const char *e = getenv("METALEARN_DATA");
  if (e && *e) snprintf(datadir, sizeof datadir, "%s", e);
  else {
    const char *src = getenv("ML_SOURCE_DIR");
    snprintf(datadir, sizeof datadir, "%s/../shared/data", src && *src ? src : ".");
  }
  struct stat st;
  return stat(datadir, &st) == 0 && S_ISDIR(st.st_mode) ? datadir : NULL;
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0;
  for (int k = 0; k < 2 * ntests; k++) {
    int i = k % ntests;
    if (tests[i].last != k / ntests) continue;
    if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
    cur_failed = 0;
    ml_clear_error();
    double t0 = ml_now();
    tests[i].fn();
    double dt = ml_now() - t0;
    if (cur_failed) {
      failed++;
      printf("FAIL %s (%.2fs)\n", tests[i].name, dt);
    } else {
      passed++;
      printf("ok   %s (%.2fs)\n", tests[i].name, dt);
    }
  }
  if (tmpdir[0]) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!failed && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

const char *ml_test_metalearn_path(void) {
  static char bin[4096];
  if (!bin[0]) {
    const char *b = getenv("ML_BINARY_DIR");
    snprintf(bin, sizeof bin, "%s/metalearn", b && *b ? b : ".");
  }
  return bin;
}

int ml_test_metalearn(const char *args, char *out, size_t n) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", ml_test_metalearn_path(), args);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t k = fread(out, 1, n - 1, p);
  out[k] = 0;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
