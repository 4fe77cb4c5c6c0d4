/* Reports and TensorBoard events (src/io/report.c, src/io/tfevents.c): CRC32C against known
 * vectors, TFRecord framing read back by a small reader here, the HTML report of synthetic run
 * directories (finished, unfinished, non-gradient algorithm, unknown metric keys), evaluation
 * options (progress, inner steps), and end to end: a real short run rendered by headless
 * Chromium (no console errors, every plot an SVG with data points, a screenshot that is not
 * blank) and its event files read back by TensorBoard's own reader. The last two skip with a
 * printed reason when chromium or a Python with tensorboard is missing. */
#include <spng.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "metalearn/fewshot.h"
#include "metalearn/report.h"

static void write_text(const char *dir, const char *name, const char *text) {
  char p[4200];
  if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return;
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}


/* ---- CRC32C ---- */
ML_TEST(crc32c_known_vectors) {
  CHECK(ml_crc32c(0, "123456789", 9) == 0xE3069283u);
  CHECK(ml_crc32c(0, "", 0) == 0);
  uint8_t z[32] = {0}, ff[32], inc[32];
  for (int i = 0; i < 32; i++) ff[i] = 0xff, inc[i] = (uint8_t)i;
  CHECK(ml_crc32c(0, z, 32) == 0x8A9136AAu); /* RFC 3720 B.4 */
  CHECK(ml_crc32c(0, ff, 32) == 0x62A8AB43u);
  CHECK(ml_crc32c(0, inc, 32) == 0x46DD794Eu);
  /* running value: in two pieces equals in one */
  CHECK(ml_crc32c(ml_crc32c(0, "12345", 5), "6789", 4) == 0xE3069283u);
  CHECK(ml_crc32c_mask(0) == 0xa282ead8u);
}

/* ---- TFRecord framing, decoded by hand ---- */
typedef struct {
  double wall_time;
  int64_t step;
  char file_version[64], tag[64];
  float value;
  bool has_value;
} event;

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t get_varint(const uint8_t **p, const uint8_t *end) {
  uint64_t v = 0;
  for (int s = 0; *p < end && s < 64; s += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << s;
    if (!(b & 0x80)) break;
  }
  return v;
}

/* Decodes the fields the writer uses; false on anything unexpected. */
static bool decode(const uint8_t *p, const uint8_t *end, event *e, int depth) {
  while (p < end) {
    uint64_t key = get_varint(&p, end);
    int field = (int)(key >> 3), wire = (int)(key & 7);
    if (wire == 1) {
      if (end - p < 8) return false;
      uint64_t v = get_le(p, 8);
      if (depth == 0 && field == 1) memcpy(&e->wall_time, &v, 8);
      p += 8;
    } else if (wire == 5) {
      if (end - p < 4) return false;
      uint32_t v = (uint32_t)get_le(p, 4);
      if (depth == 2 && field == 2) memcpy(&e->value, &v, 4), e->has_value = true;
      p += 4;
    } else if (wire == 0) {
      uint64_t v = get_varint(&p, end);
      if (depth == 0 && field == 2) e->step = (int64_t)v;
    } else if (wire == 2) {
      uint64_t n = get_varint(&p, end);
      if ((uint64_t)(end - p) < n) return false;
      if (depth == 0 && field == 3) snprintf(e->file_version, sizeof e->file_version, "%.*s", (int)n, (const char *)p);
      else if (depth == 2 && field == 1) snprintf(e->tag, sizeof e->tag, "%.*s", (int)n, (const char *)p);
      else if ((depth == 0 && field == 5) || (depth == 1 && field == 1)) {
        if (!decode(p, p + n, e, depth + 1)) return false;
      } else return false;
      p += n;
    } else return false;
  }
  return true;
}

/* Reads every record of an event file, checking both CRCs; returns the count, -1 on a bad record. */
static int read_events(const char *path, event *out, int cap) {
  size_t len;
  uint8_t *buf = (uint8_t *)ml_test_read_file(path, &len);
  if (!buf) return -1;
  int n = 0;
  size_t off = 0;
  while (off < len) {
    if (len - off < 12) goto bad;
    uint64_t dlen = get_le(buf + off, 8);
    if ((uint32_t)get_le(buf + off + 8, 4) != ml_crc32c_mask(ml_crc32c(0, buf + off, 8))) goto bad;
    if (len - off - 12 < dlen + 4) goto bad;
    const uint8_t *d = buf + off + 12;
    if ((uint32_t)get_le(d + dlen, 4) != ml_crc32c_mask(ml_crc32c(0, d, dlen))) goto bad;
    if (n < cap) {
      memset(&out[n], 0, sizeof out[n]);
      if (!decode(d, d + dlen, &out[n], 0)) goto bad;
    }
    n++;
    off += 12 + dlen + 4;
  }
  free(buf);
  return n;
bad:
  free(buf);
  return -1;
}

ML_TEST(tfrecord_round_trip) {
  const char *tmp = ml_test_tmpdir();
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/tf", tmp);
  mkdir(dir, 0755);
  ml_tfevents *w;
  CHECK_OK(ml_tfevents_open(dir, &w));
  if (!w) return;
  char path[4200];
  snprintf(path, sizeof path, "%s", ml_tfevents_path(w));
  CHECK(strstr(path, "/events.out.tfevents.") != NULL);
  CHECK_OK(ml_tfevents_scalar(w, "loss", 7, 1700000000.25, 0.5f));
  CHECK_OK(ml_tfevents_scalar(w, "a/long_tag_name_for_the_varint", 300, 0, -3.25f));
  CHECK_OK(ml_tfevents_json_line(w, "{\"iter\": 20, \"loss\": 1.5, \"acc\": 0.25, \"stopped\": \"x\"}\n", 5.0));
  CHECK_OK(ml_tfevents_json_line(w, "{\"no_iter\": 1}", 5.0)); /* skipped */
  CHECK_OK(ml_tfevents_close(w));
  /* a second writer in the same second gets its own file */
  ml_tfevents *w2;
  CHECK_OK(ml_tfevents_open(dir, &w2));
  if (w2) CHECK(strcmp(ml_tfevents_path(w2), path) != 0);
  ml_tfevents_close(w2);
  event ev[16];
  int n = read_events(path, ev, 16);
  CHECK_MSG(n == 5, "%d records", n);
  if (n != 5) return;
  CHECK(!strcmp(ev[0].file_version, "brain.Event:2") && ev[0].wall_time > 1.6e9 && !ev[0].has_value);
  CHECK(!strcmp(ev[1].tag, "loss") && ev[1].step == 7 && ev[1].value == 0.5f && ev[1].wall_time == 1700000000.25);
  CHECK(!strcmp(ev[2].tag, "a/long_tag_name_for_the_varint") && ev[2].step == 300 && ev[2].value == -3.25f);
  CHECK(!strcmp(ev[3].tag, "loss") && ev[3].step == 20 && ev[3].value == 1.5f && ev[3].wall_time == 5.0);
  CHECK(!strcmp(ev[4].tag, "acc") && ev[4].step == 20 && ev[4].value == 0.25f);
  /* encode reports the size it needs when the buffer is too small */
  uint8_t small[8];
  size_t need = ml_tfevents_encode(small, sizeof small, 1.0, 1, NULL, "x", 1.0f);
  uint8_t *big = malloc(need);
  CHECK(ml_tfevents_encode(big, need, 1.0, 1, NULL, "x", 1.0f) == need);
  free(big);
  /* an unwritable directory is an error naming it */
  CHECK(ml_tfevents_open("/nonexistent/dir", &w) == ML_ERR_IO && strstr(ml_last_error(), "/nonexistent/dir"));
}

/* ---- the HTML report of synthetic runs ---- */
static const char *cfg_text(const char *algo, const char *iters) {
  static char buf[512];
  snprintf(buf, sizeof buf, "# metalearn 0.1.0: resolved configuration of this run\ndataset = omniglot\nalgo = %s\n"
           "n_way = 5\nk_shot = 1\niterations = %s\nthreads = 0\n", algo, iters);
  return buf;
}

static void make_runs(const char *tmp) {
  char d[4200];
  /* finished MAML run: curves with test points, eval, steps curve, machine */
  snprintf(d, sizeof d, "%s/maml", tmp);
  mkdir(d, 0755);
  write_text(d, "config.ini", cfg_text("maml", "100"));
  char m[8192] = "";
  for (int it = 10; it <= 100; it += 10) {
    char line[256];
    snprintf(line, sizeof line, "{\"iter\": %d, \"loss\": %g, \"loss_support\": %g, \"acc\": %g, \"grad_norm\": %g, "
             "\"seconds\": %g}\n", it, 2.0 / it, 1.7, 0.2 + it / 200.0, 10.0 / it, it * 0.5);
    strcat(m, line);
    if (it % 50 == 0) {
      snprintf(line, sizeof line, "{\"iter\": %d, \"test_acc\": %g, \"test_ci95\": 0.02, \"episodes\": 100}\n", it,
               0.3 + it / 300.0);
      strcat(m, line);
    }
  }
  write_text(d, "metrics.jsonl", m);
  write_text(d, "eval.json", "{\"test_acc\": 0.634, \"ci95\": 0.011, \"episodes\": 600, \"train_seconds\": 50.1}\n");
  write_text(d, "eval_steps.json", "{\"algo\": \"maml\", \"metric\": \"acc\", \"curve\": [{\"steps\": 0, \"mean\": 0.2, "
             "\"ci95\": 0.01}, {\"steps\": 1, \"mean\": 0.5, \"ci95\": 0.01}, {\"steps\": 5, \"mean\": 0.62, \"ci95\": 0.01}]}");
  write_text(d, "machine.json", "{\"version\": \"0.1.0\", \"host\": \"box<1>\", \"cpu\": \"Test CPU\", \"simd\": "
             "\"avx2\", \"threads\": 4}");
  /* unfinished protonet run: three lines, the last one torn, no eval.json */
  snprintf(d, sizeof d, "%s/proto", tmp);
  mkdir(d, 0755);
  write_text(d, "config.ini", cfg_text("protonet", "1000"));
  write_text(d, "metrics.jsonl", "{\"iter\": 10, \"loss\": 1.2, \"loss_support\": 1.2, \"acc\": 0.5, \"grad_norm\": 1, "
             "\"seconds\": 2}\n{\"iter\": 20, \"loss\": 1.0, \"loss_support\": 1.1, \"acc\": 0.6, \"grad_norm\": 1, "
             "\"seconds\": 4}\n{\"iter\": 30, \"loss\": 0.");
  /* a run from another application: unknown keys become their own plots */
  snprintf(d, sizeof d, "%s/recsys", tmp);
  mkdir(d, 0755);
  write_text(d, "metrics.jsonl", "{\"iter\": 1, \"mae\": 0.9, \"foo_metric\": 3}\n{\"iter\": 2, \"mae\": 0.8, "
             "\"foo_metric\": 4}\n");
  /* started, nothing logged yet */
  snprintf(d, sizeof d, "%s/empty", tmp);
  mkdir(d, 0755);
  write_text(d, "config.ini", cfg_text("maml", "10"));
  write_text(d, "metrics.jsonl", "");
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p++) n++;
  return n;
}

/* The text of the <svg id="id"> element, or NULL. */
static char *svg_of(const char *html, const char *id) {
  char key[128];
  snprintf(key, sizeof key, "id=\"%s\"", id);
  const char *a = strstr(html, key), *b = a ? strstr(a, "</svg>") : NULL;
  if (!b) return NULL;
  char *s = malloc((size_t)(b - a) + 1);
  memcpy(s, a, (size_t)(b - a));
  s[b - a] = 0;
  return s;
}

static bool plot_has_points(const char *html, const char *id, int min_points) {
  char *s = svg_of(html, id);
  if (!s) return false;
  int circles = count(s, "<circle class=\"data\""), coords = 0;
  for (const char *p = s; (p = strstr(p, "points=\"")); p += 8)
    for (const char *q = p + 8; *q && *q != '"'; q++) coords += *q == ',';
  free(s);
  return circles + coords >= min_points;
}

ML_TEST(report_of_synthetic_runs) {
  const char *tmp = ml_test_tmpdir();
  make_runs(tmp);
  char a[4200], b[4200], c[4200], d[4200];
  snprintf(a, sizeof a, "%s/maml", tmp);
  snprintf(b, sizeof b, "%s/proto/", tmp); /* a trailing slash is fine */
  snprintf(c, sizeof c, "%s/recsys", tmp);
  snprintf(d, sizeof d, "%s/empty", tmp);
  const char *runs[4] = {a, b, c, d};
  char *html = NULL;
  size_t len = 0;
  CHECK_OK(ml_report_render(runs, 4, &html, &len));
  if (!html) return;
  CHECK(len == strlen(html));
  CHECK(plot_has_points(html, "plot-loss", 12));
  CHECK(plot_has_points(html, "plot-acc", 12));
  CHECK(plot_has_points(html, "plot-grad_norm", 10));
  CHECK(plot_has_points(html, "plot-mae", 2));
  CHECK(plot_has_points(html, "plot-foo_metric", 2));
  CHECK(plot_has_points(html, "plot-steps", 3));
  CHECK(plot_has_points(html, "plot-eval-test_acc", 1));
  /* legend, axis units, the log scale the loss needs (2/10 .. 2/100 and 1.7) */
  CHECK(strstr(html, "query loss, after adaptation") && strstr(html, "accuracy (%)") && strstr(html, "wall time (s)"));
  char *loss = svg_of(html, "plot-loss");
  CHECK(loss && strstr(loss, "log scale"));
  free(loss);
  CHECK(strstr(html, "63.40% &#177; 1.10%") != NULL);              /* the evaluation with its CI */
  CHECK(strstr(html, "unfinished</span>: iteration 20 of 1000") != NULL); /* torn last line skipped */
  CHECK(strstr(html, "no metrics yet") != NULL);
  CHECK(strstr(html, "does not apply to protonet") != NULL);
  CHECK(strstr(html, "box&lt;1&gt;") != NULL && !strstr(html, "box<1>")); /* escaped */
  CHECK(strstr(html, "class=\"diff\"") != NULL);                    /* config side by side, differences marked */
  /* self-contained: no scripts, no external resources */
  CHECK(!strstr(html, "<script") && !strstr(html, "src=") && !strstr(html, "href=") && !strstr(html, "@import"));
  free(html);
  /* one unfinished run alone */
  CHECK_OK(ml_report_render((const char *[]){b}, 1, &html, &len));
  CHECK(html && plot_has_points(html, "plot-loss", 2) && strstr(html, "not evaluated yet"));
  free(html);
  /* written atomically to a file; a directory that is not a run is an error naming it */
  snprintf(d, sizeof d, "%s/r.html", tmp);
  CHECK_OK(ml_report_write(runs, 2, d));
  struct stat sb;
  CHECK(stat(d, &sb) == 0 && sb.st_size > 1000);
  const char *bad[1] = {"/nonexistent/run"};
  CHECK(ml_report_render(bad, 1, &html, &len) == ML_ERR_NOTFOUND && strstr(ml_last_error(), "/nonexistent/run"));
  CHECK(ml_report_render(bad, 0, &html, &len) == ML_ERR_ARG);
}

/* ---- evaluation options: progress and inner steps do not change the scores ---- */
typedef struct {
  int64_t calls, last, total;
} prog;
static bool on_progress(void *ctx, int64_t done, int64_t total) {
  prog *p = ctx;
  p->calls++, p->last = done, p->total = total;
  return true;
}
static bool stop_now(void *ctx, int64_t done, int64_t total) { return false; }

ML_TEST(evaluation_progress_and_steps) {
  ml_fewshot_config c = ml_fewshot_defaults();
  snprintf(c.dataset, sizeof c.dataset, "sinusoid");
  snprintf(c.algo, sizeof c.algo, "maml");
  c.k_shot = 5, c.threads = 2;
  ml_fewshot *f;
  CHECK_OK(ml_fewshot_open(&c, &f));
  if (!f) return;
  double m0, ci0, m1, ci1;
  CHECK_OK(ml_fewshot_evaluate(f, 200, &m0, &ci0));
  prog p = {0};
  ml_eval_options o = ml_eval_options_defaults();
  o.progress = on_progress, o.progress_ctx = &p;
  CHECK_OK(ml_fewshot_evaluate_ex(f, 200, &o, &m1, &ci1));
  CHECK(m0 == m1 && ci0 == ci1);
  CHECK_MSG(p.calls > 1 && p.last == 200 && p.total == 200, "%lld calls, last %lld", (long long)p.calls,
            (long long)p.last);
  o.progress = stop_now;
  CHECK(ml_fewshot_evaluate_ex(f, 200, &o, &m1, &ci1) == ML_ERR_ABORTED);
  /* inner_steps_test for one evaluation equals a session configured with it, and is restored */
  o = ml_eval_options_defaults();
  o.inner_steps_test = 2;
  CHECK_OK(ml_fewshot_evaluate_ex(f, 50, &o, &m1, &ci1));
  ml_fewshot_config c2 = c;
  c2.inner_steps_test = 2;
  ml_fewshot *f2;
  CHECK_OK(ml_fewshot_open(&c2, &f2));
  double m2, ci2;
  if (f2) CHECK_OK(ml_fewshot_evaluate(f2, 50, &m2, &ci2));
  if (f2) CHECK(m1 == m2 && ci1 == ci2);
  ml_fewshot_close(f2);
  CHECK_OK(ml_fewshot_evaluate(f, 200, &m1, &ci1));
  CHECK(m0 == m1);
  CHECK(ml_algo_get_config(ml_fewshot_algo(f))->inner_steps_test == 10);
  ml_fewshot_close(f);
}

/* ---- end to end: the binary, Chromium, TensorBoard ---- */
static char bin[4096];
static const char *metalearn(void) {
  const char *b = getenv("ML_BINARY_DIR");
  snprintf(bin, sizeof bin, "%s/metalearn", b && *b ? b : ".");
  return bin;
}

static int sh(const char *cmd, char *out, size_t n) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t k = fread(out, 1, n - 1, p);
  out[k] = 0;
  while (fgetc(p) != EOF) {
  }
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 20];

/* Trains a sinusoid MAML run (and an Omniglot ProtoNet run when the data is there) in tmp. */
static bool real_runs(const char *tmp, char *runs_args, size_t n) {
  static bool done, ok;
  static char args_cache[8192];
  if (done) {
    snprintf(runs_args, n, "%s", args_cache);
    return ok;
  }
  done = true;
  char cmd[16384];
  snprintf(cmd, sizeof cmd, "%s train --dataset sinusoid --algo maml --k_shot 5 --iterations 60 --meta_batch 4 "
           "--log_every 5 --eval_every 20 --eval_episodes 40 --quiet --run %s/sin 2>&1 && "
           "%s eval --run %s/sin --eval_episodes 40 --steps-curve 0,1,2,3,5,10 2>&1", metalearn(), tmp, metalearn(), tmp);
  int rc = sh(cmd, out, sizeof out);
  CHECK_MSG(rc == 0 && strstr(out, "eval_steps.json"), "exit %d: %s", rc, out);
  ok = rc == 0;
  snprintf(args_cache, sizeof args_cache, "--run %s/sin", tmp);
  const char *data = ml_test_data_dir();
  if (ok && data) {
    snprintf(cmd, sizeof cmd, "%s train --dataset omniglot-small --data_dir %s --algo protonet --filters 8 "
             "--iterations 6 --log_every 2 --q_query 5 --q_query_test 5 --eval_episodes 20 --quiet "
             "--cache_dir %s/cache --run %s/proto 2>&1", metalearn(), data, tmp, tmp);
    rc = sh(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
    if (rc == 0) {
      size_t k = strlen(args_cache);
      snprintf(args_cache + k, sizeof args_cache - k, " --run %s/proto", tmp);
    }
  } else if (!data) printf("  (no data directory: the report has the sinusoid run only)\n");
  snprintf(runs_args, n, "%s", args_cache);
  return ok;
}

static bool have_chromium(void) { return system("command -v chromium >/dev/null 2>&1") == 0; }

/* Mean and variance of the grey level over the image. */
static bool png_stats(const char *path, double *mean, double *var, double *nonwhite) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  spng_ctx *ctx = spng_ctx_new(0);
  spng_set_png_file(ctx, f);
  size_t size;
  bool ok = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size) == 0;
  uint8_t *img = ok ? malloc(size) : NULL;
  ok = img && spng_decode_image(ctx, img, size, SPNG_FMT_RGBA8, 0) == 0;
  if (ok) {
    double s = 0, s2 = 0, nw = 0, n = (double)(size / 4);
    for (size_t i = 0; i < size; i += 4) {
      double g = (img[i] + img[i + 1] + img[i + 2]) / 3.0;
      s += g, s2 += g * g, nw += g < 200;
    }
    *mean = s / n, *var = s2 / n - (s / n) * (s / n), *nonwhite = nw / n;
  }
  free(img);
  spng_ctx_free(ctx);
  fclose(f);
  return ok;
}

ML_TEST(report_of_real_run_in_chromium) {
  const char *tmp = ml_test_tmpdir();
  char runs[8192], cmd[16384];
  if (!real_runs(tmp, runs, sizeof runs)) return;
  snprintf(cmd, sizeof cmd, "%s report %s --out %s/report.html 2>&1", metalearn(), runs, tmp);
  CHECK_MSG(sh(cmd, out, sizeof out) == 0, "%s", out);
  /* the command's usage errors: exit 2 with a one-line message naming the problem */
  snprintf(cmd, sizeof cmd, "%s report --help 2>&1", metalearn());
  CHECK(sh(cmd, out, sizeof out) == 0 && strstr(out, "--out"));
  snprintf(cmd, sizeof cmd, "%s report 2>&1", metalearn());
  CHECK(sh(cmd, out, sizeof out) == 2 && strstr(out, "--run DIR is required"));
  snprintf(cmd, sizeof cmd, "%s report --run /nonexistent/run 2>&1", metalearn());
  CHECK(sh(cmd, out, sizeof out) == 2 && strstr(out, "/nonexistent/run") && !strchr(strchr(out, '\n') + 1, '\n'));
  if (strstr(runs, "/proto")) {
    snprintf(cmd, sizeof cmd, "%s eval --run %s/proto --steps-curve 0,1 2>&1", metalearn(), tmp);
    CHECK(sh(cmd, out, sizeof out) == 2 && strstr(out, "does not apply to protonet"));
  }
  snprintf(cmd, sizeof cmd, "%s eval --run %s/sin --steps-curve 1,x 2>&1", metalearn(), tmp);
  CHECK(sh(cmd, out, sizeof out) == 2 && strstr(out, "expected step counts"));
  if (!have_chromium()) {
    printf("  skipped the browser checks: chromium is not installed (apt-get install chromium)\n");
    return;
  }
  bool proto = strstr(runs, "/proto") != NULL;
  /* the DOM as Chromium parsed it, and its console */
  snprintf(cmd, sizeof cmd, "chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome "
           "--enable-logging=stderr --v=0 --dump-dom file://%s/report.html 2>%s/console.txt", tmp, tmp, tmp);
  int rc = sh(cmd, out, sizeof out);
  CHECK_MSG(rc == 0 && strstr(out, "</html>"), "chromium --dump-dom exited %d", rc);
  char path[4200];
  snprintf(path, sizeof path, "%s/console.txt", tmp);
  char *console = ml_test_read_file(path, NULL);
  CHECK_MSG(console && !strstr(console, "CONSOLE") && !strstr(console, "Uncaught") &&
                !strstr(console, "Failed to load"), "console: %s", console ? console : "(none)");
  free(console);
  const char *plots[] = {"plot-loss", "plot-mse", "plot-grad_norm", "plot-steps", "plot-eval-test_mse",
                         "plot-acc", "plot-eval-test_acc"};
  for (int i = 0; i < (proto ? 7 : 5); i++) CHECK_MSG(plot_has_points(out, plots[i], 1), "%s has no data points", plots[i]);
  CHECK(plot_has_points(out, "plot-loss", 12));
  if (proto) CHECK(strstr(out, "does not apply to protonet") != NULL);
  /* a screenshot that is not blank */
  snprintf(cmd, sizeof cmd, "chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome "
           "--screenshot=%s/report.png --window-size=1280,2000 file://%s/report.html >/dev/null 2>&1", tmp, tmp, tmp);
  CHECK(system(cmd) == 0);
  snprintf(path, sizeof path, "%s/report.png", tmp);
  double mean = 0, var = 0, nonwhite = 0;
  CHECK_MSG(png_stats(path, &mean, &var, &nonwhite), "%s: not a PNG", path);
  CHECK_MSG(var > 100 && nonwhite > 0.005 && nonwhite < 0.5, "screenshot looks blank: mean %.1f var %.1f dark %.4f",
            mean, var, nonwhite);
  printf("  screenshot %s: grey mean %.1f, variance %.0f, %.1f%% dark pixels\n", path, mean, var, 100 * nonwhite);
}

static const char *tb_python(void) {
  static char py[4096];
  const char *env = getenv("ML_TB_PYTHON"), *home = getenv("HOME");
  char cands[3][4096];
  snprintf(cands[0], sizeof cands[0], "%s", env && *env ? env : "");
  snprintf(cands[1], sizeof cands[1], "/tmp/ml-venv/bin/python");
  snprintf(cands[2], sizeof cands[2], "%s/.cache/metalearn-venv/bin/python", home ? home : "");
  for (int i = 0; i < 3; i++) {
    if (!cands[i][0] || access(cands[i], X_OK) != 0) continue;
    char cmd[8192];
    if (snprintf(cmd, sizeof cmd, "%s -c 'import tensorboard' >/dev/null 2>&1", cands[i]) >= (int)sizeof cmd) continue;
    if (system(cmd) == 0) {
      if (snprintf(py, sizeof py, "%s", cands[i]) >= (int)sizeof py) continue;
      return py;
    }
  }
  return NULL;
}

ML_TEST(tensorboard_reads_the_same_scalars) {
  const char *tmp = ml_test_tmpdir();
  char runs[8192], cmd[16384];
  if (!real_runs(tmp, runs, sizeof runs)) return;
  /* --tensorboard false writes no event file */
  snprintf(cmd, sizeof cmd, "%s train --dataset sinusoid --algo maml --iterations 10 --eval_episodes 5 --quiet "
           "--tensorboard false --run %s/notb 2>&1 && ls %s/notb", metalearn(), tmp, tmp);
  CHECK(sh(cmd, out, sizeof out) == 0 && strstr(out, "metrics.jsonl") && !strstr(out, "tfevents"));
  const char *py = tb_python(), *src = getenv("ML_SOURCE_DIR");
  if (!py) {
    printf("  skipped: no Python with tensorboard (set ML_TB_PYTHON, or pip install tensorboard into "
           "/tmp/ml-venv as .ci/run does)\n");
    return;
  }
  const char *names[2] = {"sin", "proto"};
  for (int i = 0; i < 2; i++) {
    if (i == 1 && !strstr(runs, "/proto")) break;
    snprintf(cmd, sizeof cmd, "%s %s/tests/tb_read.py %s/%s 2>&1", py, src && *src ? src : "..", tmp, names[i]);
    int rc = sh(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, "ok:"), "%s: exit %d: %s", names[i], rc, out);
    printf("  %s: %s", names[i], out);
  }
}
