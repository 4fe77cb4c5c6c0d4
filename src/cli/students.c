/* metalearn train / eval with a students dataset (--dataset assist2009 | assist2015 | statics |
 * assistments-dkt | kt:DIR): fits the baselines and meta-trains the student models, runs
 * protocol A (support = first K answers, query = the rest) and prints the models x K table.
 * train writes DIR/students.ini, DIR/table.md, DIR/results.json and the meta-learned models'
 * checkpoints; eval --run DIR reloads them and scores again (baselines are refitted: they take
 * seconds and are deterministic). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "metalearn/io.h"
#include "metalearn/dkt.h"
#include "metalearn/students.h"

typedef struct {
  char dataset[512], data_dir[1024], models[256], algos[256], ks[128];
  int64_t fold, iterations, meta_batch, inner_steps, inner_steps_test, dim, max_query, eval_every, boot, seed, threads;
  double inner_lr, meta_lr; /* < 0: the algorithm's default */
  bool skill_abilities, order_features, weight_by_length, skill_order, learning_slope, skill_loadings, refit;
  int64_t k_train; /* 0 = each tested K */
  char dkt[64];     /* protocol B models: "dkt", "meta-dkt", "meta-dkt-state" (comma list; empty: none) */
  int64_t dkt_epochs;
} opts;

static opts opts_defaults(void) {
  opts o;
  memset(&o, 0, sizeof o);
  snprintf(o.models, sizeof o.models, "difficulty,irt1,irt2,elo,meta");
  snprintf(o.algos, sizeof o.algos, "metasgd");
  snprintf(o.ks, sizeof o.ks, "1,3,5,10");
  ml_student_config d = ml_student_defaults(ML_STUDENT_META);
  o.fold = 1, o.iterations = d.iterations, o.meta_batch = d.meta_batch, o.inner_steps = -1;
  o.inner_steps_test = -1, o.dim = d.dim, o.max_query = d.max_query, o.eval_every = d.eval_every;
  o.boot = 200, o.seed = 1, o.threads = 0, o.inner_lr = -1, o.meta_lr = -1;
  o.skill_abilities = d.skill_abilities, o.order_features = d.order_features, o.weight_by_length = d.weight_by_length;
  o.skill_order = d.skill_order, o.learning_slope = d.learning_slope, o.k_train = 0;
  o.skill_loadings = d.skill_loadings, o.refit = true;
  o.dkt_epochs = ml_dkt_defaults().max_epochs;
  return o;
}

/* The options as a table: name, kind (s string, i integer, f number, b boolean), where the
 * value lives, its capacity (strings) and help. */
typedef struct {
  const char *name;
  char kind;
  void *p;
  size_t cap;
  const char *help;
} optdef;

enum { NOPTS = 28 };
static void opt_table(opts *o, optdef *t) {
  optdef d[NOPTS] = {
      {"dataset", 's', o->dataset, sizeof o->dataset, "assist2009 | assist2015 | statics | assistments-dkt | kt:DIR"},
      {"data_dir", 's', o->data_dir, sizeof o->data_dir, "data root (default $METALEARN_DATA or ../shared/data)"},
      {"fold", 'i', &o->fold, 0, "1..5: meta-train on train<f>, pick the iteration on valid<f>; 0: full train file"},
      {"models", 's', o->models, sizeof o->models, "comma list of difficulty, irt1, irt2, elo, meta"},
      {"algos", 's', o->algos, sizeof o->algos, "algorithms for meta: maml, fomaml, metasgd, anil, reptile"},
      {"ks", 's', o->ks, sizeof o->ks, "support sizes K of protocol A (comma list)"},
      {"iterations", 'i', &o->iterations, 0, "meta-training iterations per (algorithm, K)"},
      {"meta_batch", 'i', &o->meta_batch, 0, "students per meta-iteration"},
      {"inner_steps", 'i', &o->inner_steps, 0, "inner steps in meta-training (< 0: 1, Reptile 5)"},
      {"inner_steps_test", 'i', &o->inner_steps_test, 0, "inner steps at test (< 0: as in training)"},
      {"inner_lr", 'f', &o->inner_lr, 0, "inner rate (Meta-SGD: initial rates; Reptile: inner Adam rate); < 0 = default"},
      {"meta_lr", 'f', &o->meta_lr, 0, "outer Adam rate; < 0 = default"},
      {"dim", 'i', &o->dim, 0, "ability vector size (0 = none)"},
      {"skill_abilities", 'b', &o->skill_abilities, 0, "per-skill abilities among the fast weights (true/false)"},
      {"order_features", 'b', &o->order_features, 0, "support order features: earlier successes/failures, position"},
      {"refit", 'b', &o->refit, 0, "after the validation pick, meta-train again on the full training file"},
      {"skill_loadings", 'b', &o->skill_loadings, 0, "ability loadings per skill instead of per exercise"},
      {"skill_order", 'b', &o->skill_order, 0, "order weights per skill (shared)"},
      {"learning_slope", 'b', &o->learning_slope, 0, "a per-student learning slope over position (fast weight)"},
      {"k_train", 'i', &o->k_train, 0, "support size of the training tasks (0 = the K that is tested)"},
      {"max_query", 'i', &o->max_query, 0, "query answers per training task"},
      {"weight_by_length", 'b', &o->weight_by_length, 0, "draw training students in proportion to their query length"},
      {"eval_every", 'i', &o->eval_every, 0, "validation every N iterations, the best kept (0 = off)"},
      {"boot", 'i', &o->boot, 0, "bootstrap resamples for the confidence intervals"},
      {"seed", 'i', &o->seed, 0, "random seed"},
      {"threads", 'i', &o->threads, 0, "threads (0 = all cores)"},
      {"dkt", 's', o->dkt, sizeof o->dkt, "protocol B rows: dkt, meta-dkt, meta-dkt-state (trained on train1, early stop on valid1)"},
      {"dkt_epochs", 'i', &o->dkt_epochs, 0, "most epochs of the protocol-B models"},
  };
  memcpy(t, d, sizeof d);
}

static int set_opt(opts *o, const char *key, const char *val, const char *where) {
  optdef t[NOPTS];
  opt_table(o, t);
  for (int i = 0; i < NOPTS; i++) {
    if (strcmp(t[i].name, key)) continue;
    char *end;
    errno = 0;
    switch (t[i].kind) {
      case 's':
        if (strlen(val) >= t[i].cap) break;
        snprintf(t[i].p, t[i].cap, "%s", val);
        return 0;
      case 'b':
        if (!strcmp(val, "true") || !strcmp(val, "1")) *(bool *)t[i].p = true;
        else if (!strcmp(val, "false") || !strcmp(val, "0")) *(bool *)t[i].p = false;
        else break;
        return 0;
      case 'i': {
        long long v = strtoll(val, &end, 10);
        if (*end || end == val || errno) break;
        *(int64_t *)t[i].p = v;
        return 0;
      }
      default: {
        double v = strtod(val, &end);
        if (*end || end == val || errno || !isfinite(v)) break;
        *(double *)t[i].p = v;
        return 0;
      }
    }
    fprintf(stderr, "metalearn: %s: bad value '%s' for %s\n", where, val, key);
    return 2;
  }
  fprintf(stderr, "metalearn: %s: unknown option '%s' (see --help)\n", where, key);
  return 2;
}

static void usage(FILE *f, const char *cmd) {
  fprintf(f,
          "usage: metalearn %s --dataset assist2009|assist2015|statics|assistments-dkt|kt:DIR [--run DIR] [options]\n\n"
          "Students as tasks, protocol A: each test student's first K answers are the support, the rest the\n"
          "query; students with K or fewer answers are dropped and counted. Prints the models x K table of\n"
          "AUC over all query answers with 95%% bootstrap intervals over students, then every metric.\n"
          "train fits the baselines, meta-trains one student model per (algorithm, K) and writes DIR;\n"
          "eval --run DIR scores the saved models again; eval without --run scores the baselines.\n\n"
          "options:\n",
          cmd);
  opts o = opts_defaults();
  optdef t[NOPTS];
  opt_table(&o, t);
  for (int i = 0; i < NOPTS; i++) fprintf(f, "  --%-18s %s\n", t[i].name, t[i].help);
  fprintf(f, "  --%-18s %s\n  --%-18s %s\n", "run DIR", "run directory", "quiet", "no progress lines");
}

bool ml_cli_is_students(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (!strcmp(argv[i], "--dataset") && i + 1 < argc) v = argv[i + 1];
    else if (!strncmp(argv[i], "--dataset=", 10)) v = argv[i] + 10;
    if (v && (!strcmp(v, "assist2009") || !strcmp(v, "assist2015") || !strcmp(v, "statics") ||
              !strcmp(v, "assistments-dkt") || !strncmp(v, "kt:", 3)))
      return true;
    if (!strcmp(argv[i], "--run") && i + 1 < argc) {
      char p[ML_PATH_MAX + 32];
      struct stat sb;
      snprintf(p, sizeof p, "%s/students.ini", argv[i + 1]);
      if (stat(p, &sb) == 0) return true;
    }
  }
  return false;
}

/* students.ini: "key = value" lines written by train. */
static int read_ini(const char *run, opts *o) {
  char path[ML_PATH_MAX + 32], line[2048];
  snprintf(path, sizeof path, "%s/students.ini", run);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "metalearn eval: %s: %s\n", path, strerror(errno));
    return 2;
  }
  int ln = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    ln++;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!line[0] || line[0] == '#') continue;
    char *eq = strstr(line, " = ");
    char where[ML_PATH_MAX + 64];
    snprintf(where, sizeof where, "%s:%d", path, ln);
    if (!eq) {
      fprintf(stderr, "metalearn eval: %s: expected 'key = value'\n", where);
      rc = 2;
      break;
    }
    *eq = 0;
    rc = set_opt(o, line, eq + 3, where);
  }
  fclose(f);
  return rc;
}

static ml_status write_ini(const char *run, const opts *oc) {
  char buf[8192], path[ML_PATH_MAX + 32];
  size_t n = 0;
  opts o = *oc;
  optdef t[NOPTS];
  opt_table(&o, t);
  for (int i = 0; i < NOPTS && n < sizeof buf; i++) {
    if (t[i].kind == 's') n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %s\n", t[i].name, (const char *)t[i].p);
    else if (t[i].kind == 'b') n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %s\n", t[i].name, *(bool *)t[i].p ? "true" : "false");
    else if (t[i].kind == 'i') n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %lld\n", t[i].name, (long long)*(int64_t *)t[i].p);
    else n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %.9g\n", t[i].name, *(double *)t[i].p);
  }
  snprintf(path, sizeof path, "%s/students.ini", run);
  return ml_write_file_atomic(path, buf, n < sizeof buf ? n : sizeof buf - 1);
}

/* Splits a comma list into at most max items of cap bytes; returns the count or -1. */
static int split_list(const char *s, char (*items)[32], int max) {
  int n = 0;
  const char *p = s;
  while (*p) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len == 0 || len >= 32 || n == max) return -1;
    memcpy(items[n], p, len);
    items[n][len] = 0;
    n++;
    p += len + (c ? 1 : 0);
  }
  return n;
}

static void meta_label(char *buf, size_t cap, const char *algo, const opts *o) {
  char kt[32] = "";
  if (o->k_train > 0) snprintf(kt, sizeof kt, " k%lld", (long long)o->k_train);
  snprintf(buf, cap, "meta:%s d%lld%s%s%s%s%s%s%s", algo, (long long)o->dim, o->skill_loadings ? "s" : "",
           o->skill_abilities ? " +skill" : "",
           o->order_features ? " +order" : "", o->skill_order ? " +sorder" : "", o->learning_slope ? " +slope" : "",
           o->weight_by_length ? "" : " -lw", kt);
}

static int fail(const char *cmd, ml_status st) {
  fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
  return ml_cli_exit_code(st);
}

int ml_cli_students(int argc, char **argv, const char *cmd) {
  bool train = !strcmp(cmd, "train"), quiet = false;
  opts o = opts_defaults();
  const char *run = NULL;
  for (int i = 1; i < argc; i++) { /* --run first: its students.ini is the base for eval */
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout, cmd);
      return 0;
    }
    if (!strcmp(argv[i], "--run") && i + 1 < argc) run = argv[i + 1];
  }
  if (!train && run && read_ini(run, &o)) return 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2)) {
      fprintf(stderr, "metalearn %s: unexpected argument '%s'\n", cmd, a);
      return 2;
    }
    a += 2;
    if (!strcmp(a, "quiet")) {
      quiet = true;
      continue;
    }
    char key[64];
    const char *val, *eq = strchr(a, '=');
    if (eq) {
      snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
      val = eq + 1;
    } else {
      if (i + 1 >= argc) {
        fprintf(stderr, "metalearn %s: --%s needs a value\n", cmd, a);
        return 2;
      }
      snprintf(key, sizeof key, "%s", a);
      val = argv[++i];
    }
    if (!strcmp(key, "run")) continue;
    if (set_opt(&o, key, val, cmd)) return 2;
  }
  if (!o.dataset[0]) {
    fprintf(stderr, "metalearn %s: --dataset is required\n", cmd);
    return 2;
  }
  char models[8][32], algos[8][32], kstr[8][32];
  int n_models = split_list(o.models, models, 8), n_algos = split_list(o.algos, algos, 8), n_ks = split_list(o.ks, kstr, 8);
  if (o.boot < 0 || o.iterations < 0 || o.meta_batch < 1 || o.dim < 0 || o.max_query < 1 || o.fold < 0 || o.fold > 5) {
    fprintf(stderr, "metalearn %s: --boot, --iterations, --dim must be >= 0, --meta_batch and --max_query >= 1, --fold 0..5\n", cmd);
    return 2;
  }
  if (n_models < 1 || n_algos < 1 || n_ks < 1) {
    fprintf(stderr, "metalearn %s: --models, --algos and --ks must be non-empty comma lists (at most 8 items)\n", cmd);
    return 2;
  }
  int64_t ks[8];
  ml_student_kind kinds[8];
  ml_algo_kind akinds[8];
  for (int i = 0; i < n_ks; i++) {
    char *end;
    ks[i] = strtoll(kstr[i], &end, 10);
    if (*end || ks[i] < 1 || ks[i] > 1000000) {
      fprintf(stderr, "metalearn %s: bad K '%s' in --ks\n", cmd, kstr[i]);
      return 2;
    }
  }
  char dkts[4][32];
  int n_dkt = o.dkt[0] ? split_list(o.dkt, dkts, 4) : 0;
  for (int i = 0; i < n_dkt; i++)
    if (strcmp(dkts[i], "dkt") && strcmp(dkts[i], "meta-dkt") && strcmp(dkts[i], "meta-dkt-state")) {
      fprintf(stderr, "metalearn %s: --dkt takes dkt, meta-dkt and/or meta-dkt-state, not '%s'\n", cmd, dkts[i]);
      return 2;
    }
  if (o.dkt[0] && n_dkt < 1) {
    fprintf(stderr, "metalearn %s: --dkt must be a comma list of dkt, meta-dkt, meta-dkt-state\n", cmd);
    return 2;
  }
  if (o.dkt_epochs < 1) {
    fprintf(stderr, "metalearn %s: --dkt_epochs must be >= 1\n", cmd);
    return 2;
  }
  ml_status st;
  for (int i = 0; i < n_models; i++)
    if ((st = ml_student_kind_parse(models[i], &kinds[i]))) return fail(cmd, st);
  for (int i = 0; i < n_algos; i++) {
    if ((st = ml_algo_parse(algos[i], &akinds[i]))) return fail(cmd, st);
    if (akinds[i] == ML_ALGO_PROTONET || akinds[i] == ML_ALGO_MATCHINGNET || akinds[i] == ML_ALGO_FINETUNE) {
      fprintf(stderr, "metalearn %s: --algos %s: student models take maml, fomaml, metasgd, anil or reptile\n", cmd,
              algos[i]);
      return 2;
    }
  }
  bool want_meta = false;
  for (int i = 0; i < n_models; i++) want_meta |= kinds[i] == ML_STUDENT_META;
  if (!train && want_meta && !run) { /* eval without a run: nothing meta-learned to load */
    int m = 0;
    for (int i = 0; i < n_models; i++)
      if (kinds[i] != ML_STUDENT_META) kinds[m] = kinds[i], m++;
    n_models = m;
    want_meta = false;
  }
  if (run && train) {
    if (mkdir(run, 0755) && errno != EEXIST) {
      fprintf(stderr, "metalearn train: cannot create %s: %s\n", run, strerror(errno));
      return 2;
    }
  }
  ml_kt_dataset full, fold;
  char label[256];
  if ((st = ml_students_dataset_open(o.dataset, o.data_dir, 0, &full, label, sizeof label))) return fail(cmd, st);
  memset(&fold, 0, sizeof fold);
  if (train && want_meta && o.fold > 0 && (st = ml_students_dataset_open(o.dataset, o.data_dir, (int)o.fold, &fold, NULL, 0))) {
    ml_kt_dataset_free(&full);
    return fail(cmd, st);
  }
  const ml_kt_dataset *mtrain = train && o.fold > 0 && want_meta ? &fold : &full;
  if (!quiet)
    fprintf(stderr, "metalearn: %s: %lld training students (%lld answers), %lld test students, %lld exercises, %lld skills\n",
            label, (long long)full.train.n_students, (long long)full.train.n_answers, (long long)full.test.n_students,
            (long long)full.n_items, (long long)full.n_skills);
  ml_students_row rows[128];
  int64_t n_rows = 0;
  int rc = 0;
  for (int mi = 0; mi < n_models && !rc; mi++) {
    if (kinds[mi] != ML_STUDENT_META) {
      /* baselines: one fit on the full training file, scored at every K */
      ml_student_config c = ml_student_defaults(kinds[mi]);
      c.threads = (int)o.threads;
      ml_student_model *m;
      double t0 = ml_now();
      if ((st = ml_student_model_fit(&c, full.n_items, full.n_skills, &full.q, &full.train, NULL, &m))) {
        rc = fail(cmd, st);
        break;
      }
      double fit_s = ml_now() - t0;
      if (run && train) { /* saved for other tools (adaptive practice); eval refits them */
        char path[ML_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s.safetensors", run, ml_student_kind_name(kinds[mi]));
        if ((st = ml_student_model_save(m, path))) {
          ml_student_model_free(m);
          rc = fail(cmd, st);
          break;
        }
      }
      for (int ki = 0; ki < n_ks && !rc; ki++) {
        ml_students_row *r = &rows[n_rows];
        if ((st = ml_students_protocol_a(m, &full.test, ks[ki], o.boot, (uint64_t)o.seed, (int)o.threads, r))) {
          rc = fail(cmd, st);
          break;
        }
        snprintf(r->model, sizeof r->model, "%s", ml_student_kind_name(kinds[mi]));
        r->fit_seconds = fit_s;
        n_rows++;
      }
      ml_student_model_free(m);
      continue;
    }
    for (int ai = 0; ai < n_algos && !rc; ai++)
      for (int ki = 0; ki < n_ks && !rc; ki++) {
        ml_student_config c = ml_student_defaults(ML_STUDENT_META);
        c.algo = akinds[ai];
        c.k_train = o.k_train > 0 ? o.k_train : ks[ki];
        c.skill_order = o.skill_order, c.learning_slope = o.learning_slope, c.skill_loadings = o.skill_loadings;
        c.dim = o.dim, c.skill_abilities = o.skill_abilities, c.order_features = o.order_features;
        c.iterations = train ? o.iterations : 0;
        c.meta_batch = o.meta_batch;
        c.max_query = o.max_query, c.weight_by_length = o.weight_by_length, c.eval_every = train ? o.eval_every : 0;
        c.threads = (int)o.threads, c.seed = (uint64_t)o.seed, c.verbose = !quiet;
        /* per-algorithm defaults, chosen on assist2009's valid1 at K = 10 */
        if (c.algo == ML_ALGO_MAML || c.algo == ML_ALGO_FOMAML) c.inner_lr = 0.3f;
        if (c.algo == ML_ALGO_REPTILE) c.inner_lr = 0.01f, c.outer_lr = 0.1f, c.inner_steps = 5;
        if (o.inner_steps >= 0) c.inner_steps = o.inner_steps;
        c.inner_steps_test = o.inner_steps_test >= 0 ? o.inner_steps_test : c.inner_steps;
        if (o.inner_lr >= 0) c.inner_lr = (float)o.inner_lr;
        if (o.meta_lr >= 0) c.outer_lr = (float)o.meta_lr;
        ml_student_model *m;
        double t0 = ml_now();
        char ck[ML_PATH_MAX + 64];
        if (run) snprintf(ck, sizeof ck, "%s/meta_%s_k%lld.safetensors", run, algos[ai], (long long)ks[ki]);
        if (train) st = ml_student_model_fit(&c, mtrain->n_items, mtrain->n_skills, &mtrain->q, &mtrain->train, &mtrain->valid, &m);
        else st = ml_student_model_load(ck, (int)o.threads, &m);
        if (st) {
          rc = fail(cmd, st);
          break;
        }
        if (train && o.refit && o.fold > 0) {
          /* the fold chose the number of iterations; the full training file (what the baselines
           * fit on) gets the same schedule from scratch */
          c.iterations = ml_student_model_best_iteration(m), c.eval_every = 0;
          ml_student_model_free(m);
          st = ml_student_model_fit(&c, full.n_items, full.n_skills, &full.q, &full.train, NULL, &m);
          if (st) {
            rc = fail(cmd, st);
            break;
          }
        }
        double fit_s = ml_now() - t0;
        if (run && train && (st = ml_student_model_save(m, ck))) {
          ml_student_model_free(m);
          rc = fail(cmd, st);
          break;
        }
        ml_students_row *r = &rows[n_rows];
        st = ml_students_protocol_a(m, &full.test, ks[ki], o.boot, (uint64_t)o.seed, (int)o.threads, r);
        ml_student_model_free(m);
        if (st) {
          rc = fail(cmd, st);
          break;
        }
        meta_label(r->model, sizeof r->model, algos[ai], &o);
        r->fit_seconds = train ? fit_s : 0;
        n_rows++;
      }
  }
  bool is_base[128];
  for (int64_t i = 0; i < n_rows; i++) is_base[i] = strncmp(rows[i].model, "meta:", 5) != 0;
  if (!rc && (st = ml_students_compare(rows, n_rows, is_base, o.boot, (uint64_t)o.seed))) rc = fail(cmd, st);
  /* protocol B (next-step knowledge tracing): DKT / meta-DKT on train1 with early stopping on
   * valid1, scored on the test students, as columns "B all", "B 3-10", "B 11-15" */
  if (!rc && n_dkt > 0) {
    int64_t b0 = n_rows; /* the protocol B rows start here */
    ml_kt_dataset f1;
    memset(&f1, 0, sizeof f1);
    if ((st = ml_students_dataset_open(o.dataset, o.data_dir, 1, &f1, NULL, 0))) rc = fail(cmd, st);
    for (int i = 0; i < n_dkt && !rc && n_rows + 3 <= 128; i++) {
      ml_dkt_config dc = ml_dkt_defaults();
      dc.meta = strcmp(dkts[i], "dkt") != 0;
      /* meta-dkt-state: the initial state adapts too, on a support of the first 15 answers */
      dc.adapt_state = !strcmp(dkts[i], "meta-dkt-state");
      if (dc.adapt_state) dc.adapt_window = 15;
      dc.max_epochs = o.dkt_epochs;
      dc.seed = (uint64_t)o.seed;
      const char *model = dc.adapt_state ? "meta-DKT (state)" : dc.meta ? "meta-DKT" : "DKT";
      if (!quiet) fprintf(stderr, "metalearn: protocol B: training %s\n", model);
      if ((st = ml_dkt_protocol_b_run(&f1, &dc, model, o.boot, (uint64_t)o.seed, rows + n_rows)))
        rc = fail(cmd, st);
      else
        n_rows += 3;
    }
    ml_kt_dataset_free(&f1);
    /* the meta-learned sequential models against DKT on the same answers: the paired difference
     * with its bootstrap CI is what says whether one beats the other on a window */
    for (int64_t i = b0; i < n_rows; i++) is_base[i] = !strcmp(rows[i].model, "DKT");
    if (!rc && (st = ml_students_compare(rows + b0, n_rows - b0, is_base + b0, o.boot, (uint64_t)o.seed)))
      rc = fail(cmd, st);
  }
  if (!rc) {
    ml_students_table_print(stdout, label, rows, n_rows);
    if (run) {
      char *buf = NULL, path[ML_PATH_MAX + 32];
      size_t len = 0;
      FILE *mf = open_memstream(&buf, &len);
      if (mf) {
        ml_students_table_print(mf, label, rows, n_rows);
        fclose(mf);
        snprintf(path, sizeof path, "%s/%s.md", run, train ? "table" : "eval_table");
        st = ml_write_file_atomic(path, buf, len);
        free(buf);
      }
      mf = open_memstream(&buf, &len);
      if (mf) {
        fprintf(mf, "{\"dataset\": \"%s\", \"protocol\": \"A\", \"rows\": [\n", label);
        for (int64_t i = 0; i < n_rows; i++) {
          const ml_students_row *r = &rows[i];
          fprintf(mf,
                  "  {\"model\": \"%s\", \"column\": \"%s\", \"auc\": %.6f, \"auc_lo\": %.6f, \"auc_hi\": %.6f, "
                  "\"student_auc\": %.6f, \"student_auc_lo\": %.6f, \"student_auc_hi\": %.6f, \"acc\": %.6f, "
                  "\"acc_lo\": %.6f, \"acc_hi\": %.6f, \"log_loss\": %.6f, \"log_loss_lo\": %.6f, \"log_loss_hi\": %.6f, "
                  "\"students\": %lld, \"dropped\": %lld, "
                  "\"answers\": %lld, \"fit_seconds\": %.2f, \"eval_seconds\": %.2f, \"delta_vs\": \"%s\", "
                  "\"delta\": %.6f, \"delta_lo\": %.6f, \"delta_hi\": %.6f}%s\n",
                  r->model, r->column, r->r.auc.value, r->r.auc.lo, r->r.auc.hi, r->r.student_auc.value,
                  r->r.student_auc.lo, r->r.student_auc.hi, r->r.acc.value, r->r.acc.lo, r->r.acc.hi, r->r.log_loss.value,
                  r->r.log_loss.lo, r->r.log_loss.hi, (long long)r->n_students, (long long)r->n_dropped, (long long)r->r.n,
                  r->fit_seconds, r->eval_seconds, r->delta_vs, r->delta_vs[0] ? r->delta.value : 0,
                  r->delta_vs[0] ? r->delta.lo : 0, r->delta_vs[0] ? r->delta.hi : 0, i + 1 < n_rows ? "," : "");
        }
        fprintf(mf, "]}\n");
        fclose(mf);
        snprintf(path, sizeof path, "%s/%s.json", run, train ? "results" : "eval");
        if (!st) st = ml_write_file_atomic(path, buf, len);
        free(buf);
      }
      if (!st && train) st = write_ini(run, &o);
      if (st) rc = fail(cmd, st);
    }
  }
  for (int64_t i = 0; i < n_rows; i++) ml_students_row_free(&rows[i]);
  ml_kt_dataset_free(&full);
  ml_kt_dataset_free(&fold);
  return rc;
}
