/* The HTML report of one or more runs: one self-contained file (inline CSS and SVG, no scripts,
 * no fonts, no network). Everything comes from the run directories as they are right now, so an
 * unfinished run shows what exists so far:
 *   config.ini       the resolved configuration (and the version that wrote it)
 *   metrics.jsonl    any numeric key becomes a series against "iter"; known keys get labels and
 *                    units and share a plot (losses, accuracies, MSE, MAE, AUC, nDCG...)
 *   eval.json        the final evaluation with its 95% confidence interval
 *   eval_steps.json  accuracy (or MSE) against inner steps at meta-test
 *   machine.json     version, host, CPU, threads of the machine that trained
 * Plots: axes with units, a legend, a log scale when the values span more than 20x. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "metalearn/io.h"
#include "metalearn/report.h"

/* ---- a growing string ---- */
typedef struct {
  char *p;
  size_t n, cap;
  bool oom;
} sb;

static void sbf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbf(sb *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->n;
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < room) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = (b->cap + (size_t)k + 1) * 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = true;
      return;
    }
    b->p = np, b->cap = cap;
  }
}

static void sb_esc(sb *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '<': sbf(b, "&lt;"); break;
      case '>': sbf(b, "&gt;"); break;
      case '&': sbf(b, "&amp;"); break;
      case '"': sbf(b, "&quot;"); break;
      default: sbf(b, "%c", *s);
    }
  }
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t n = 0, cap = 4096;
  char *p = malloc(cap);
  while (p) {
    n += fread(p + n, 1, cap - n - 1, f);
    if (n < cap - 1) break;
    cap *= 2;
    char *np = realloc(p, cap);
    if (!np) free(p);
    p = np;
  }
  fclose(f);
  if (p) p[n] = 0;
  return p;
}

/* ---- what a run directory holds ---- */
typedef struct {
  char key[48];
  double *x, *y, *err; /* err: 95% CI half-width, NAN when none */
  int64_t n, cap;
} series;

typedef struct {
  char key[64], value[256];
} kv;

#define MAX_SERIES 32
#define MAX_KV 128
#define MAX_STEPS 64

typedef struct {
  char dir[1024], name[256], version[64];
  kv cfg[MAX_KV];
  int64_t n_cfg;
  series s[MAX_SERIES];
  int64_t n_series;
  int64_t lines, last_iter;
  double last_seconds;
  bool stopped;
  bool has_eval;
  char eval_key[32];
  double eval_mean, eval_ci, train_seconds;
  int64_t eval_episodes;
  int64_t n_steps;
  double steps[MAX_STEPS], steps_mean[MAX_STEPS], steps_ci[MAX_STEPS];
  char steps_metric[16];
  char host[128], cpu[128], simd[32];
  int64_t threads;
} run;

static const char *cfg_get(const run *r, const char *key) {
  for (int64_t i = 0; i < r->n_cfg; i++)
    if (!strcmp(r->cfg[i].key, key)) return r->cfg[i].value;
  return NULL;
}

static series *series_get(run *r, const char *key) {
  for (int64_t i = 0; i < r->n_series; i++)
    if (!strcmp(r->s[i].key, key)) return &r->s[i];
  if (r->n_series == MAX_SERIES) return NULL;
  series *s = &r->s[r->n_series++];
  snprintf(s->key, sizeof s->key, "%s", key);
  return s;
}

static bool series_add(series *s, double x, double y, double err) {
  if (s->n == s->cap) {
    int64_t cap = s->cap ? s->cap * 2 : 64;
    double *nx = realloc(s->x, (size_t)cap * sizeof(double));
    if (nx) s->x = nx;
    double *ny = nx ? realloc(s->y, (size_t)cap * sizeof(double)) : NULL;
    if (ny) s->y = ny;
    double *ne = ny ? realloc(s->err, (size_t)cap * sizeof(double)) : NULL;
    if (ne) s->err = ne;
    if (!ne) return false;
    s->cap = cap;
  }
  s->x[s->n] = x, s->y[s->n] = y, s->err[s->n] = err;
  s->n++;
  return true;
}

static void run_free(run *r) {
  for (int64_t i = 0; i < r->n_series; i++) free(r->s[i].x), free(r->s[i].y), free(r->s[i].err);
}

static void read_config(run *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/config.ini", r->dir);
  char *text = read_all(path);
  if (!text) return;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#' || line[0] == ';') {
      if (!strncmp(line, "# metalearn ", 12)) sscanf(line + 12, "%63[^:]", r->version);
      continue;
    }
    char *eq = strchr(line, '=');
    if (!eq || r->n_cfg == MAX_KV) continue;
    *eq = 0;
    char *k = line, *v = eq + 1;
    while (*k == ' ') k++;
    for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t' || *e == '\r'); e--) *e = 0;
    while (*v == ' ') v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\r')) v[--vl] = 0;
    snprintf(r->cfg[r->n_cfg].key, sizeof r->cfg[0].key, "%s", k);
    snprintf(r->cfg[r->n_cfg].value, sizeof r->cfg[0].value, "%s", v);
    r->n_cfg++;
  }
  free(text);
}

static bool skip_key(const char *k) {
  return !strcmp(k, "iter") || !strcmp(k, "episodes") || !strcmp(k, "test_ci95") || !strcmp(k, "seconds");
}

static ml_status read_metrics(run *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
  char *text = read_all(path);
  if (!text) return ML_OK;
  ml_status st = ML_OK;
  for (char *line = strtok(text, "\n"); line && !st; line = strtok(NULL, "\n")) {
    cJSON *j = cJSON_Parse(line); /* a torn last line of a live run is skipped */
    const cJSON *it = j ? cJSON_GetObjectItemCaseSensitive(j, "iter") : NULL;
    if (cJSON_IsNumber(it)) {
      double x = it->valuedouble;
      const cJSON *ci = cJSON_GetObjectItemCaseSensitive(j, "test_ci95");
      const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "seconds");
      r->lines++;
      if ((int64_t)x > r->last_iter) r->last_iter = (int64_t)x;
      if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "stopped"))) r->stopped = true;
      if (cJSON_IsNumber(sec)) {
        r->last_seconds = sec->valuedouble;
        series *s = series_get(r, "seconds");
        if (s && !series_add(s, x, sec->valuedouble, NAN)) st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
      }
      for (const cJSON *c = j->child; c && !st; c = c->next) {
        if (!cJSON_IsNumber(c) || !c->string || skip_key(c->string)) continue;
        bool is_test = !strncmp(c->string, "test_", 5);
        series *s = series_get(r, c->string);
        if (s && !series_add(s, x, c->valuedouble, is_test && cJSON_IsNumber(ci) ? ci->valuedouble : NAN))
          st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
      }
    }
    cJSON_Delete(j);
  }
  free(text);
  return st;
}

static void read_eval(run *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/eval.json", r->dir);
  char *text = read_all(path);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!j) return;
  for (const cJSON *c = j->child; c; c = c->next)
    if (cJSON_IsNumber(c) && c->string && !strncmp(c->string, "test_", 5)) {
      r->has_eval = true;
      snprintf(r->eval_key, sizeof r->eval_key, "%s", c->string);
      r->eval_mean = c->valuedouble;
    }
  const cJSON *ci = cJSON_GetObjectItemCaseSensitive(j, "ci95");
  const cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "episodes");
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "train_seconds");
  r->eval_ci = cJSON_IsNumber(ci) ? ci->valuedouble : NAN;
  r->eval_episodes = cJSON_IsNumber(ep) ? (int64_t)ep->valuedouble : 0;
  r->train_seconds = cJSON_IsNumber(ts) ? ts->valuedouble : NAN;
  cJSON_Delete(j);
}

static void read_steps(run *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/eval_steps.json", r->dir);
  char *text = read_all(path);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!j) return;
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "metric");
  snprintf(r->steps_metric, sizeof r->steps_metric, "%s", cJSON_IsString(m) ? m->valuestring : "acc");
  const cJSON *pt;
  cJSON_ArrayForEach(pt, cJSON_GetObjectItemCaseSensitive(j, "curve")) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pt, "steps");
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(pt, "mean");
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(pt, "ci95");
    if (!cJSON_IsNumber(s) || !cJSON_IsNumber(mean) || r->n_steps == MAX_STEPS) continue;
    r->steps[r->n_steps] = s->valuedouble;
    r->steps_mean[r->n_steps] = mean->valuedouble;
    r->steps_ci[r->n_steps] = cJSON_IsNumber(ci) ? ci->valuedouble : NAN;
    r->n_steps++;
  }
  cJSON_Delete(j);
}

static void read_machine(run *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/machine.json", r->dir);
  char *text = read_all(path);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!j) return;
  const cJSON *v;
  if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "host"))) snprintf(r->host, sizeof r->host, "%s", v->valuestring);
  if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "cpu"))) snprintf(r->cpu, sizeof r->cpu, "%s", v->valuestring);
  if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "simd"))) snprintf(r->simd, sizeof r->simd, "%s", v->valuestring);
  if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(j, "version")))
    snprintf(r->version, sizeof r->version, "%s", v->valuestring);
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "threads"))) r->threads = (int64_t)v->valuedouble;
  cJSON_Delete(j);
}

static ml_status load_run(const char *dir, run *r) {
  memset(r, 0, sizeof *r);
  snprintf(r->dir, sizeof r->dir, "%s", dir);
  size_t len = strlen(r->dir);
  while (len > 1 && r->dir[len - 1] == '/') r->dir[--len] = 0;
  const char *slash = strrchr(r->dir, '/');
  if (snprintf(r->name, sizeof r->name, "%s", slash ? slash + 1 : r->dir) >= (int)sizeof r->name)
    memcpy(r->name + sizeof r->name - 4, "...", 4); /* a very long name is shortened */
  char a[1100], b[1100];
  snprintf(a, sizeof a, "%s/config.ini", r->dir);
  snprintf(b, sizeof b, "%s/metrics.jsonl", r->dir);
  if (access(a, R_OK) != 0 && access(b, R_OK) != 0)
    return ml_error(ML_ERR_NOTFOUND, "%s: not a run directory (no config.ini or metrics.jsonl)", dir);
  read_config(r);
  ml_status st = read_metrics(r);
  read_eval(r);
  read_steps(r);
  read_machine(r);
  return st;
}

/* ---- known metric keys: label, plot group, axis title, scale ---- */
typedef struct {
  const char *key, *label, *group, *axis;
  double scale;
} known_key;

static const known_key known[] = {
    {"loss", "query loss, after adaptation", "loss", "loss", 1},
    {"loss_support", "support loss, before adaptation", "loss", "loss", 1},
    {"acc", "train query accuracy", "acc", "accuracy (%)", 100},
    {"test_acc", "test accuracy (validation, 95% CI)", "acc", "accuracy (%)", 100},
    {"mse", "train query MSE", "mse", "mean squared error", 1},
    {"test_mse", "test MSE (validation, 95% CI)", "mse", "mean squared error", 1},
    {"mae", "train MAE", "mae", "mean absolute error (rating points)", 1},
    {"test_mae", "test MAE (validation, 95% CI)", "mae", "mean absolute error (rating points)", 1},
    {"ndcg", "train nDCG", "ndcg", "nDCG", 1},
    {"test_ndcg", "test nDCG (validation, 95% CI)", "ndcg", "nDCG", 1},
    {"auc", "train AUC", "auc", "AUC", 1},
    {"test_auc", "test AUC (validation, 95% CI)", "auc", "AUC", 1},
    {"grad_norm", "meta-gradient norm", "grad_norm", "meta-gradient L2 norm", 1},
};
#define NKNOWN (int64_t)(sizeof known / sizeof known[0])

static const known_key *find_known(const char *key) {
  for (int64_t i = 0; i < NKNOWN; i++)
    if (!strcmp(known[i].key, key)) return &known[i];
  return NULL;
}
static const char *group_of(const char *key) {
  const known_key *k = find_known(key);
  return k ? k->group : key;
}

static const char *group_title(const char *g) {
  if (!strcmp(g, "loss")) return "Meta-training loss";
  if (!strcmp(g, "acc")) return "Accuracy: meta-training query and test (validation) episodes";
  if (!strcmp(g, "mse")) return "Mean squared error: meta-training query and test (validation) episodes";
  if (!strcmp(g, "mae")) return "Mean absolute error";
  if (!strcmp(g, "ndcg")) return "nDCG";
  if (!strcmp(g, "auc")) return "AUC";
  if (!strcmp(g, "grad_norm")) return "Meta-gradient norm (before clipping)";
  return NULL;
}

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
static const char *dashes[] = {NULL, "7 4", "2 3", "10 3 2 3"};

/* ---- SVG plots ---- */
typedef struct {
  char label[320];
  const char *color, *dash;
  bool markers, right;
  const double *x, *y, *err;
  int64_t n;
  double scale;
} pseries;

typedef struct {
  const char *id, *xlabel, *ylabel, *y2label;
  pseries *s;
  int64_t n;
  double y2scale; /* right axis values are multiplied by this */
} plotspec;

static double nice_step(double range, int target) {
  double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (fabs(v) >= 1e5 || (fabs(v) > 0 && fabs(v) < 1e-3)) snprintf(buf, n, "%.0e", v);
  else snprintf(buf, n, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
}

typedef struct {
  double lo, hi;
  bool log;
} axis;

static bool usable(double y, bool log_scale) { return isfinite(y) && (!log_scale || y > 0); }

/* Chooses the range (and log scale when positive values span more than 20x). */
static axis make_axis(const pseries *s, int64_t n, bool right, bool allow_log, bool from_zero) {
  double lo = INFINITY, hi = -INFINITY, plo = INFINITY;
  for (int64_t i = 0; i < n; i++) {
    if (s[i].right != right) continue;
    for (int64_t k = 0; k < s[i].n; k++) {
      double y = s[i].y[k] * s[i].scale, e = s[i].err && isfinite(s[i].err[k]) ? s[i].err[k] * s[i].scale : 0;
      if (!isfinite(y)) continue;
      lo = fmin(lo, y - e), hi = fmax(hi, y + e);
      if (y > 0) plo = fmin(plo, y);
    }
  }
  axis a = {0, 1, false};
  if (!isfinite(lo)) return a;
  if (allow_log && lo > 0 && hi / lo > 20) {
    a.log = true;
    a.lo = pow(10, floor(log10(plo)));
    a.hi = pow(10, ceil(log10(hi)));
    return a;
  }
  if (from_zero && lo > 0) lo = 0;
  if (hi - lo < 1e-12 * fmax(1, fabs(hi))) lo -= fmax(0.5, fabs(lo) * 0.1), hi += fmax(0.5, fabs(hi) * 0.1);
  double step = nice_step(hi - lo, 5);
  a.lo = floor(lo / step) * step, a.hi = ceil(hi / step) * step;
  return a;
}

static double map(const axis *a, double v, double p0, double p1) {
  double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
  return p0 + t * (p1 - p0);
}

/* Tick values of an axis into t (up to cap); returns how many. */
static int ticks(const axis *a, double *t, int cap, double *step_out) {
  int n = 0;
  if (a->log) {
    int decades = (int)lround(log10(a->hi / a->lo));
    for (double d = a->lo; d <= a->hi * 1.0001 && n < cap; d *= 10) {
      t[n++] = d;
      if (decades <= 2 && d * 2 < a->hi && n < cap) t[n++] = d * 2;
      if (decades <= 2 && d * 5 < a->hi && n < cap) t[n++] = d * 5;
    }
    *step_out = a->lo;
    return n;
  }
  double step = nice_step(a->hi - a->lo, 5);
  for (double v = a->lo; v <= a->hi + step * 1e-6 && n < cap; v += step) t[n++] = v;
  *step_out = step;
  return n;
}

static void plot_svg(sb *b, const plotspec *p) {
  const double W = 900, L = 78, R = p->y2label ? 78 : 24;
  /* legend rows first: their count sets the top margin */
  double lx[64], ly[64], x = L, row = 0;
  for (int64_t i = 0; i < p->n && i < 64; i++) {
    double w = 34 + 6.4 * (double)strlen(p->s[i].label) + 18;
    if (x + w > W - R && x > L) x = L, row++;
    lx[i] = x, ly[i] = 16 + 18 * row;
    x += w;
  }
  const double T = 30 + 18 * (row + 1), B = 50, H = 300, Hall = T + H + B;
  const double x0 = L, x1 = W - R, y0 = T + H, y1 = T;
  axis ax = make_axis(p->s, p->n, false, false, true);
  /* x axis from every series (left or right) */
  double xlo = 0, xhi = -INFINITY;
  for (int64_t i = 0; i < p->n; i++)
    for (int64_t k = 0; k < p->s[i].n; k++) xlo = fmin(xlo, p->s[i].x[k]), xhi = fmax(xhi, p->s[i].x[k]);
  if (!(xhi > xlo)) xhi = xlo + 1;
  {
    double st = nice_step(xhi - xlo, 6);
    ax.lo = floor(xlo / st) * st, ax.hi = ceil(xhi / st) * st;
    ax.log = false;
  }
  axis ay = make_axis(p->s, p->n, false, true, false);
  axis ay2 = p->y2label ? make_axis(p->s, p->n, true, false, true) : ay;
  sbf(b, "<svg class=\"plot\" id=\"%s\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" role=\"img\" "
         "xmlns=\"http://www.w3.org/2000/svg\">\n", p->id, W, Hall);
  sbf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#888\"/>\n", x0, y1, x1 - x0,
      y0 - y1);
  double t[64], step;
  char lab[32];
  int nt = ticks(&ay, t, 64, &step);
  for (int i = 0; i < nt; i++) {
    double py = map(&ay, t[i], y0, y1);
    fmt_tick(lab, sizeof lab, t[i], ay.log ? t[i] : step);
    sbf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
           "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0, py, x1, py, x0 - 6, py + 4, lab);
  }
  nt = ticks(&ax, t, 64, &step);
  for (int i = 0; i < nt; i++) {
    double px = map(&ax, t[i], x0, x1);
    fmt_tick(lab, sizeof lab, t[i], step);
    sbf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
           "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, y0, px, y1, px, y0 + 18, lab);
  }
  if (p->y2label) {
    nt = ticks(&ay2, t, 64, &step);
    for (int i = 0; i < nt; i++) {
      double py = map(&ay2, t[i], y0, y1);
      fmt_tick(lab, sizeof lab, t[i], step);
      sbf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>"
             "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">%s</text>\n", x1, py, x1 + 4, py, x1 + 7, py + 4, lab);
    }
    sbf(b, "<text class=\"axis\" transform=\"translate(%.1f,%.1f) rotate(90)\" text-anchor=\"middle\">", W - 14,
        (y0 + y1) / 2);
    sb_esc(b, p->y2label);
    sbf(b, "</text>\n");
  }
  sbf(b, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (x0 + x1) / 2, Hall - 10);
  sb_esc(b, p->xlabel);
  sbf(b, "</text>\n<text class=\"axis\" transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">",
      (y0 + y1) / 2);
  sb_esc(b, p->ylabel);
  if (ay.log) sbf(b, ", log scale");
  sbf(b, "</text>\n");
  /* the data */
  for (int64_t i = 0; i < p->n; i++) {
    const pseries *s = &p->s[i];
    const axis *ya = s->right ? &ay2 : &ay;
    double sc = s->scale;
    sbf(b, "<g class=\"series\" data-points=\"%lld\">", (long long)s->n);
    if (s->n > 1 || !s->markers) {
      sbf(b, "<polyline class=\"data\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s%s%s points=\"", s->color,
          s->markers ? "1" : "1.8", s->dash ? " stroke-dasharray=\"" : "", s->dash ? s->dash : "", s->dash ? "\"" : "");
      for (int64_t k = 0; k < s->n; k++)
        if (usable(s->y[k] * sc, ya->log))
          sbf(b, "%.1f,%.1f ", map(&ax, s->x[k], x0, x1), map(ya, s->y[k] * sc, y0, y1));
      sbf(b, "\"/>");
    }
    if (s->markers)
      for (int64_t k = 0; k < s->n; k++) {
        double y = s->y[k] * sc;
        if (!usable(y, ya->log)) continue;
        double px = map(&ax, s->x[k], x0, x1), py = map(ya, y, y0, y1);
        if (s->err && isfinite(s->err[k]) && s->err[k] > 0) {
          double lo = y - s->err[k] * sc, hi = y + s->err[k] * sc;
          if (ya->log && lo <= 0) lo = ya->lo;
          double plo = map(ya, lo, y0, y1), phi = map(ya, hi, y0, y1);
          sbf(b, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8\" stroke=\"%s\"/>", px, plo, phi, px - 4, plo,
              px - 4, phi, s->color);
        }
        sbf(b, "<circle class=\"data\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", px, py, s->color);
        sb_esc(b, s->label);
        sbf(b, ": x=%g, y=%.4g", s->x[k], y);
        if (s->err && isfinite(s->err[k])) sbf(b, " &#177; %.3g", s->err[k] * sc);
        sbf(b, "</title></circle>");
      }
    sbf(b, "</g>\n");
  }
  /* legend */
  for (int64_t i = 0; i < p->n && i < 64; i++) {
    const pseries *s = &p->s[i];
    sbf(b, "<g class=\"legend\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>",
        lx[i], ly[i] - 4, lx[i] + 26, ly[i] - 4, s->color, s->dash ? " stroke-dasharray=\"" : "", s->dash ? s->dash : "",
        s->dash ? "\"" : "");
    if (s->markers) sbf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", lx[i] + 13, ly[i] - 4, s->color);
    sbf(b, "<text x=\"%.1f\" y=\"%.1f\">", lx[i] + 32, ly[i]);
    sb_esc(b, s->label);
    sbf(b, "</text></g>\n");
  }
  sbf(b, "</svg>\n");
}

/* ---- the page ---- */
static const char *css =
    "body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;margin:24px auto;max-width:960px;color:#222;"
    "padding:0 16px;line-height:1.4}"
    "h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}"
    "h3{font-size:15px;margin:20px 0 4px}.sub{color:#666;margin-top:0}"
    "table{border-collapse:collapse;font-size:13px;margin:8px 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.diff td{background:#fff6d5}.note{color:#555;font-size:13px;margin:4px 0}"
    ".status-ok{color:#1a7f37}.status-part{color:#b35900}"
    "svg.plot{max-width:900px;display:block;border:1px solid #eee;margin:4px 0 12px}"
    "svg text{font-size:12px;fill:#222}svg text.axis{font-size:13px;font-weight:bold}"
    "svg line.grid{stroke:#e6e6e6}code{background:#f3f3f3;padding:1px 4px}"
    ".cfg{columns:2;font-size:13px}.cfg div{break-inside:avoid;font-family:monospace}";

static const char *metric_of(const run *r) {
  for (int64_t i = 0; i < r->n_series; i++)
    if (!strcmp(r->s[i].key, "acc")) return "acc";
  for (int64_t i = 0; i < r->n_series; i++)
    if (!strcmp(r->s[i].key, "mse")) return "mse";
  return NULL;
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (!isfinite(s)) snprintf(buf, n, "-");
  else if (s < 10) snprintf(buf, n, "%.2g s", s);
  else if (s < 120) snprintf(buf, n, "%.1f s", s);
  else if (s < 7200) snprintf(buf, n, "%.1f min", s / 60);
  else snprintf(buf, n, "%.2f h", s / 3600);
}

/* "0.9123 +- 0.0045" as a percentage for accuracies */
static void fmt_result(char *buf, size_t n, const char *key, double mean, double ci) {
  bool pct = strstr(key, "acc") != NULL;
  if (pct) snprintf(buf, n, "%.2f%% &#177; %.2f%%", 100 * mean, 100 * ci);
  else snprintf(buf, n, "%.4g &#177; %.3g", mean, ci);
}

static void run_status(const run *r, sb *b) {
  const char *iters = cfg_get(r, "iterations");
  long long total = iters ? atoll(iters) : 0;
  if (r->has_eval) sbf(b, "<span class=\"status-ok\">finished</span>");
  else if (r->stopped) sbf(b, "<span class=\"status-part\">stopped (max_seconds)</span>");
  else if (r->lines == 0) sbf(b, "<span class=\"status-part\">started, no metrics yet</span>");
  else sbf(b, "<span class=\"status-part\">unfinished</span>");
  if (total > 0)
    sbf(b, ": iteration %lld of %lld (%.0f%%)", (long long)r->last_iter, total, 100.0 * (double)r->last_iter / (double)total);
  else sbf(b, ": iteration %lld", (long long)r->last_iter);
}

static bool gradient_based(const char *algo) {
  return algo && (!strcmp(algo, "maml") || !strcmp(algo, "fomaml") || !strcmp(algo, "metasgd") ||
                  !strcmp(algo, "anil") || !strcmp(algo, "reptile"));
}

static void render(run *runs, int64_t nr, sb *b) {
  char when[64], buf[256];
  time_t now = time(NULL);
  struct tm tmv;
  strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tmv));
  sbf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>metalearn report: ");
  for (int64_t i = 0; i < nr; i++) {
    if (i) sbf(b, ", ");
    sb_esc(b, runs[i].name);
  }
  sbf(b, "</title><style>%s</style></head><body>\n", css);
  sbf(b, "<h1>metalearn report</h1><p class=\"sub\">%lld run%s &#183; generated %s by metalearn %s</p>\n",
      (long long)nr, nr > 1 ? "s" : "", when, ml_version());

  /* summary: one row per run */
  sbf(b, "<h2>Runs and evaluation</h2>\n<table id=\"summary\"><tr><th>run</th><th>dataset</th><th>algorithm</th>"
         "<th>task</th><th>progress</th><th>test result (95%% CI)</th><th>episodes</th><th>training time</th>"
         "<th>time / iteration</th></tr>\n");
  for (int64_t i = 0; i < nr; i++) {
    run *r = &runs[i];
    const char *ds = cfg_get(r, "dataset"), *al = cfg_get(r, "algo"), *nw = cfg_get(r, "n_way"), *ks = cfg_get(r, "k_shot");
    bool regress = ds && !strcmp(ds, "sinusoid");
    sbf(b, "<tr><td><span style=\"color:%s\">&#9632;</span> ", palette[i % 8]);
    sb_esc(b, r->name);
    sbf(b, "</td><td>");
    sb_esc(b, ds ? ds : "?");
    sbf(b, "</td><td>");
    sb_esc(b, al ? al : "?");
    sbf(b, "</td><td>");
    if (regress) sbf(b, "%s-shot regression", ks ? ks : "?");
    else if (nw && ks) sbf(b, "%s-way %s-shot", nw, ks);
    sbf(b, "</td><td>");
    run_status(r, b);
    sbf(b, "</td><td class=\"num\">");
    if (r->has_eval) {
      fmt_result(buf, sizeof buf, r->eval_key, r->eval_mean, r->eval_ci);
      sbf(b, "%s %s", !strncmp(r->eval_key, "test_", 5) ? r->eval_key + 5 : r->eval_key, buf);
    } else sbf(b, "not evaluated yet");
    sbf(b, "</td><td class=\"num\">");
    if (r->has_eval) sbf(b, "%lld", (long long)r->eval_episodes);
    sbf(b, "</td><td class=\"num\">");
    fmt_duration(buf, sizeof buf, r->last_seconds > 0 ? r->last_seconds : r->train_seconds);
    sbf(b, "%s</td><td class=\"num\">", buf);
    if (r->last_iter > 0 && r->last_seconds > 0) {
      double per = r->last_seconds / (double)r->last_iter;
      if (per < 1) sbf(b, "%.1f ms", 1000 * per);
      else sbf(b, "%.2f s", per);
    } else sbf(b, "-");
    sbf(b, "</td></tr>\n");
  }
  sbf(b, "</table>\n");

  /* evaluation results with their CI, one dot-and-whisker row per run and metric */
  const char *eval_keys[8];
  int64_t n_ek = 0;
  for (int64_t i = 0; i < nr; i++) {
    if (!runs[i].has_eval) continue;
    bool seen = false;
    for (int64_t k = 0; k < n_ek; k++) seen |= !strcmp(eval_keys[k], runs[i].eval_key);
    if (!seen && n_ek < 8) eval_keys[n_ek++] = runs[i].eval_key;
  }
  for (int64_t k = 0; k < n_ek; k++) {
    const known_key *kk = find_known(eval_keys[k]);
    double sc = kk ? kk->scale : 1, lo = INFINITY, hi = -INFINITY;
    int64_t rows = 0;
    for (int64_t i = 0; i < nr; i++)
      if (runs[i].has_eval && !strcmp(runs[i].eval_key, eval_keys[k])) {
        double e = isfinite(runs[i].eval_ci) ? runs[i].eval_ci : 0;
        lo = fmin(lo, (runs[i].eval_mean - e) * sc), hi = fmax(hi, (runs[i].eval_mean + e) * sc), rows++;
      }
    double pad = fmax((hi - lo) * 0.35, fmax(fabs(hi), 1e-3) * 0.02); /* room for the label beside the whisker */
    axis a = {lo - pad, hi + pad, false};
    double st = nice_step(a.hi - a.lo, 5);
    a.lo = floor(a.lo / st) * st, a.hi = ceil(a.hi / st) * st;
    if (strstr(eval_keys[k], "acc")) a.lo = fmax(a.lo, 0), a.hi = fmin(a.hi, 100);
    const double W = 900, L = 230, R = 30, T = 12, rowh = 30, H = (double)rows * rowh, Hall = T + H + 50;
    sbf(b, "<h3>Final evaluation: %s with 95%% confidence interval</h3>\n", kk ? kk->axis : eval_keys[k]);
    sbf(b, "<svg class=\"plot\" id=\"plot-eval-%s\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" "
           "xmlns=\"http://www.w3.org/2000/svg\">\n", eval_keys[k], W, Hall);
    sbf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#888\"/>\n", L, T,
        W - L - R, H);
    double t[64], step;
    char lab[32];
    int nt = ticks(&a, t, 64, &step);
    for (int j = 0; j < nt; j++) {
      double px = map(&a, t[j], L, W - R);
      fmt_tick(lab, sizeof lab, t[j], step);
      sbf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\"/><text x=\"%.1f\" y=\"%.0f\" "
             "text-anchor=\"middle\">%s</text>\n", px, T, px, T + H, px, T + H + 16, lab);
    }
    sbf(b, "<text class=\"axis\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s (mean over test episodes, "
           "bars: 95%% CI)</text>\n", (L + W - R) / 2, Hall - 8, kk ? kk->axis : eval_keys[k]);
    int64_t row = 0;
    for (int64_t i = 0; i < nr; i++) {
      run *r = &runs[i];
      if (!r->has_eval || strcmp(r->eval_key, eval_keys[k])) continue;
      double py = T + rowh * ((double)row + 0.5), m = r->eval_mean * sc, e = isfinite(r->eval_ci) ? r->eval_ci * sc : 0;
      sbf(b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", L - 8, py + 4);
      sb_esc(b, r->name);
      sbf(b, "</text><path d=\"M%.1f %.1fH%.1fM%.1f %.1fv10M%.1f %.1fv10\" stroke=\"%s\" stroke-width=\"2\"/>"
             "<circle class=\"data\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>%.4g &#177; %.3g</title></circle>"
             "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\" text-anchor=\"%s\">%.4g &#177; %.3g</text>\n",
          map(&a, m - e, L, W - R), py, map(&a, m + e, L, W - R), map(&a, m - e, L, W - R), py - 5,
          map(&a, m + e, L, W - R), py - 5, palette[i % 8], map(&a, m, L, W - R), py, palette[i % 8], m, e,
          map(&a, m + e, L, W - R) + 100 > W - R ? map(&a, m - e, L, W - R) - 8 : map(&a, m + e, L, W - R) + 8,
          py + 4, map(&a, m + e, L, W - R) + 100 > W - R ? "end" : "start", m, e);
      row++;
    }
    sbf(b, "</svg>\n");
  }

  /* training curves: one plot per metric group, every run overlaid */
  sbf(b, "<h2>Training curves</h2>\n");
  const char *groups[MAX_SERIES * 4];
  int64_t ng = 0;
  for (int64_t g = 0; g < NKNOWN; g++)
    for (int64_t i = 0; i < nr; i++) {
      bool has = false;
      for (int64_t k = 0; k < runs[i].n_series; k++) has |= !strcmp(group_of(runs[i].s[k].key), known[g].group);
      bool seen = false;
      for (int64_t j = 0; j < ng; j++) seen |= !strcmp(groups[j], known[g].group);
      if (has && !seen) groups[ng++] = known[g].group;
    }
  for (int64_t i = 0; i < nr; i++)
    for (int64_t k = 0; k < runs[i].n_series; k++) {
      const char *g = group_of(runs[i].s[k].key);
      bool seen = !strcmp(g, "seconds");
      for (int64_t j = 0; j < ng; j++) seen |= !strcmp(groups[j], g);
      if (!seen && ng < MAX_SERIES * 4) groups[ng++] = g;
    }
  if (!ng) sbf(b, "<p class=\"note\">No metrics yet: metrics.jsonl is missing or empty.</p>\n");
  double max_sec = 0;
  for (int64_t i = 0; i < nr; i++) max_sec = fmax(max_sec, runs[i].last_seconds);
  double tscale = max_sec < 600 ? 1 : max_sec < 36000 ? 1.0 / 60 : 1.0 / 3600;
  const char *tunit = max_sec < 600 ? "wall time (s)" : max_sec < 36000 ? "wall time (min)" : "wall time (h)";
  pseries ps[MAX_SERIES * 8];
  for (int64_t g = 0; g < ng; g++) {
    int64_t n = 0;
    bool first = g == 0;
    for (int64_t i = 0; i < nr; i++) {
      int64_t style = 0;
      for (int64_t k = 0; k < runs[i].n_series && n < MAX_SERIES * 8 - 1; k++) {
        series *s = &runs[i].s[k];
        if (strcmp(group_of(s->key), groups[g])) continue;
        const known_key *kk = find_known(s->key);
        pseries *p = &ps[n++];
        memset(p, 0, sizeof *p);
        bool is_test = !strncmp(s->key, "test_", 5);
        if (nr > 1) snprintf(p->label, sizeof p->label, "%s: %s", runs[i].name, kk ? kk->label : s->key);
        else snprintf(p->label, sizeof p->label, "%s", kk ? kk->label : s->key);
        p->color = palette[i % 8];
        p->dash = is_test ? NULL : dashes[style++ % 4];
        p->markers = is_test || s->n == 1;
        p->x = s->x, p->y = s->y, p->err = s->err, p->n = s->n, p->scale = kk ? kk->scale : 1;
      }
      if (first) {
        series *t = NULL;
        for (int64_t k = 0; k < runs[i].n_series; k++)
          if (!strcmp(runs[i].s[k].key, "seconds")) t = &runs[i].s[k];
        if (t && n < MAX_SERIES * 8) {
          pseries *p = &ps[n++];
          memset(p, 0, sizeof *p);
          snprintf(p->label, sizeof p->label, "%s%swall time (right axis)", nr > 1 ? runs[i].name : "", nr > 1 ? ": " : "");
          p->color = "#999";
          if (nr > 1) p->color = palette[i % 8];
          p->dash = "1 3";
          p->right = true;
          p->x = t->x, p->y = t->y, p->n = t->n, p->scale = tscale;
        }
      }
    }
    const char *gt = group_title(groups[g]);
    const known_key *gk = NULL;
    for (int64_t k = 0; k < NKNOWN && !gk; k++)
      if (!strcmp(known[k].group, groups[g])) gk = &known[k];
    const char *ylabel = gk ? gk->axis : groups[g];
    if (!strcmp(groups[g], "loss")) {
      const char *m = nr ? metric_of(&runs[0]) : NULL;
      ylabel = m && !strcmp(m, "mse") ? "loss (mean squared error)" : m ? "loss (cross-entropy, nats)" : "loss";
    }
    sbf(b, "<h3>");
    sb_esc(b, gt ? gt : groups[g]);
    sbf(b, "</h3>\n");
    char id[80];
    snprintf(id, sizeof id, "plot-%s", groups[g]);
    plotspec spec = {id, "meta-iteration", ylabel, first ? tunit : NULL, ps, n, 1};
    plot_svg(b, &spec);
  }

  /* accuracy against inner steps at meta-test */
  sbf(b, "<h2>Adaptation: test %s against inner steps</h2>\n",
      nr && metric_of(&runs[0]) && !strcmp(metric_of(&runs[0]), "mse") ? "MSE" : "accuracy");
  int64_t n = 0;
  bool any_acc = false;
  for (int64_t i = 0; i < nr; i++) {
    run *r = &runs[i];
    const char *al = cfg_get(r, "algo");
    if (r->n_steps) {
      pseries *p = &ps[n++];
      memset(p, 0, sizeof *p);
      snprintf(p->label, sizeof p->label, "%s (%s)", r->name, al ? al : "?");
      p->color = palette[i % 8];
      p->markers = true;
      p->x = r->steps, p->y = r->steps_mean, p->err = r->steps_ci, p->n = r->n_steps;
      bool acc = strcmp(r->steps_metric, "mse") != 0;
      any_acc |= acc;
      p->scale = acc ? 100 : 1;
    } else if (al && !gradient_based(al)) {
      sbf(b, "<p class=\"note\">");
      sb_esc(b, r->name);
      sbf(b, ": does not apply to %s, which adapts without gradient steps at meta-test.</p>\n", al);
    } else {
      sbf(b, "<p class=\"note\">");
      sb_esc(b, r->name);
      sbf(b, ": no curve yet; add one with <code>metalearn eval --run ");
      sb_esc(b, r->dir);
      sbf(b, " --steps-curve 0,1,2,3,5,10</code>.</p>\n");
    }
  }
  if (n) {
    plotspec spec = {"plot-steps", "inner gradient steps at meta-test", any_acc ? "test accuracy (%)" : "test MSE",
                     NULL, ps, n, 1};
    plot_svg(b, &spec);
  }

  /* configuration: side by side, differing keys highlighted */
  sbf(b, "<h2>Resolved configuration</h2>\n");
  if (nr == 1) {
    sbf(b, "<div class=\"cfg\" id=\"config\">");
    for (int64_t k = 0; k < runs[0].n_cfg; k++) {
      sbf(b, "<div>");
      sb_esc(b, runs[0].cfg[k].key);
      sbf(b, " = ");
      sb_esc(b, runs[0].cfg[k].value);
      sbf(b, "</div>");
    }
    if (!runs[0].n_cfg) sbf(b, "<p class=\"note\">no config.ini</p>");
    sbf(b, "</div>\n");
  } else {
    sbf(b, "<p class=\"note\">Highlighted rows differ between runs.</p><table id=\"config\"><tr><th>key</th>");
    for (int64_t i = 0; i < nr; i++) {
      sbf(b, "<th>");
      sb_esc(b, runs[i].name);
      sbf(b, "</th>");
    }
    sbf(b, "</tr>\n");
    for (int64_t i = 0; i < nr; i++)
      for (int64_t k = 0; k < runs[i].n_cfg; k++) {
        const char *key = runs[i].cfg[k].key;
        bool earlier = false;
        for (int64_t j = 0; j < i; j++) earlier |= cfg_get(&runs[j], key) != NULL;
        if (earlier) continue;
        bool diff = false;
        for (int64_t j = 0; j < nr; j++) {
          const char *v = cfg_get(&runs[j], key);
          diff |= !v || strcmp(v, runs[i].cfg[k].value);
        }
        sbf(b, "<tr%s><td>", diff ? " class=\"diff\"" : "");
        sb_esc(b, key);
        sbf(b, "</td>");
        for (int64_t j = 0; j < nr; j++) {
          const char *v = cfg_get(&runs[j], key);
          sbf(b, "<td>");
          sb_esc(b, v ? v : "-");
          sbf(b, "</td>");
        }
        sbf(b, "</tr>\n");
      }
    sbf(b, "</table>\n");
  }

  /* machine */
  sbf(b, "<h2>Machine</h2>\n<table id=\"machine\"><tr><th>run</th><th>metalearn</th><th>host</th><th>CPU</th>"
         "<th>SIMD</th><th>threads</th><th>iterations</th><th>wall time</th><th>time / iteration</th></tr>\n");
  for (int64_t i = 0; i < nr; i++) {
    run *r = &runs[i];
    sbf(b, "<tr><td>");
    sb_esc(b, r->name);
    sbf(b, "</td><td>");
    sb_esc(b, r->version[0] ? r->version : "?");
    sbf(b, "</td><td>");
    sb_esc(b, r->host[0] ? r->host : "?");
    sbf(b, "</td><td>");
    sb_esc(b, r->cpu[0] ? r->cpu : "?");
    sbf(b, "</td><td>");
    sb_esc(b, r->simd[0] ? r->simd : "?");
    sbf(b, "</td><td class=\"num\">");
    if (r->threads > 0) sbf(b, "%lld", (long long)r->threads);
    else sb_esc(b, cfg_get(r, "threads") ? cfg_get(r, "threads") : "?");
    fmt_duration(buf, sizeof buf, r->last_seconds);
    sbf(b, "</td><td class=\"num\">%lld</td><td class=\"num\">%s</td><td class=\"num\">", (long long)r->last_iter, buf);
    if (r->last_iter > 0 && r->last_seconds > 0) sbf(b, "%.2f ms", 1000 * r->last_seconds / (double)r->last_iter);
    else sbf(b, "-");
    sbf(b, "</td></tr>\n");
  }
  sbf(b, "</table>\n<p class=\"note\">Run directories: ");
  for (int64_t i = 0; i < nr; i++) {
    if (i) sbf(b, ", ");
    sbf(b, "<code>");
    sb_esc(b, runs[i].dir);
    sbf(b, "</code>");
  }
  sbf(b, ". Time per iteration includes the periodic test evaluations.</p>\n</body></html>\n");
}

ml_status ml_report_render(const char *const *run_dirs, int64_t n_runs, char **html, size_t *len) {
  *html = NULL;
  if (len) *len = 0;
  if (n_runs < 1) return ml_error(ML_ERR_ARG, "report: no run directory given");
  run *runs = calloc((size_t)n_runs, sizeof *runs);
  if (!runs) return ml_error(ML_ERR_NOMEM, "report: out of memory");
  ml_status st = ML_OK;
  int64_t loaded = 0;
  for (; loaded < n_runs && !st; loaded++) st = load_run(run_dirs[loaded], &runs[loaded]);
  sb b = {0};
  if (!st) {
    render(runs, n_runs, &b);
    if (b.oom) st = ml_error(ML_ERR_NOMEM, "report: out of memory");
  }
  for (int64_t i = 0; i < loaded; i++) run_free(&runs[i]);
  free(runs);
  if (st) {
    free(b.p);
    return st;
  }
  *html = b.p;
  if (len) *len = b.n;
  return ML_OK;
}

ml_status ml_report_write(const char *const *run_dirs, int64_t n_runs, const char *out_path) {
  char *html;
  size_t n;
  ml_status st = ml_report_render(run_dirs, n_runs, &html, &n);
  if (st) return st;
  st = ml_write_file_atomic(out_path, html, n);
  free(html);
  return st;
}

/* ---- machine.json ---- */
ml_status ml_run_info_write(const char *dir, int64_t threads, const char *simd) {
  char host[256] = "?", cpu[256] = "?", line[512];
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
  host[sizeof host - 1] = 0;
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
      snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
      cpu[strcspn(cpu, "\n")] = 0;
      break;
    }
  if (f) fclose(f);
  cJSON *j = cJSON_CreateObject();
  if (!j) return ml_error(ML_ERR_NOMEM, "%s/machine.json: out of memory", dir);
  cJSON_AddStringToObject(j, "version", ml_version());
  cJSON_AddStringToObject(j, "host", host);
  cJSON_AddStringToObject(j, "cpu", cpu);
  cJSON_AddStringToObject(j, "simd", simd ? simd : "?");
  cJSON_AddNumberToObject(j, "threads", (double)threads);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  if (!text) return ml_error(ML_ERR_NOMEM, "%s/machine.json: out of memory", dir);
  char path[1100];
  snprintf(path, sizeof path, "%s/machine.json", dir);
  ml_status st = ml_write_file_atomic(path, text, strlen(text));
  free(text);
  return st;
}
