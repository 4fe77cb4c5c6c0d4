/* The MovieLens cold-start application on the command line:
 *   metalearn train --dataset movielens ...   the protocol over folds, baselines and networks, one table
 *   metalearn eval --dataset movielens ...    the same table (re-runs the protocol: training is part of it)
 *   metalearn recommend --run DIR --ratings FILE [--user age=..,gender=..,occupation=..] [--top N] [--json]
 *                                              adapts the run's model to one new user and lists the top movies */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "metalearn/io.h"
#include "metalearn/recommend.h"

bool ml_cli_is_movielens(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dataset=movielens")) return true;
    if (!strcmp(argv[i], "--dataset") && i + 1 < argc && !strcmp(argv[i + 1], "movielens")) return true;
  }
  return false;
}

static void default_data(char *buf, size_t n) {
  const char *env = getenv("METALEARN_DATA");
  snprintf(buf, n, "%s/movielens/ml-100k", env && *env ? env : "../shared/data");
}

static void rec_usage(FILE *f, const char *cmd) {
  fprintf(f,
          "usage: metalearn %s --dataset movielens [options]\n\n"
          "Cold-start recommendation, each user a task: 5 seeded folds of the users with 13-100 ratings,\n"
          "10%% of the rest for validation; query = 10 random ratings, support = the first K of the rest.\n"
          "Prints method x K x scenario: MAE, RMSE, nDCG@3 (with a random ranking's) as mean +- 95%% CI.\n\n"
          "options:\n"
          "  --data DIR            MovieLens directory (100K, 1M or CSV; default $METALEARN_DATA/movielens/ml-100k)\n"
          "  --run DIR             write DIR/table.txt, DIR/config.ini and fold 0's metarec model\n"
          "  --folds N             folds to run (1-5, default 5)\n"
          "  --methods LIST        global,item,user,itembias,damped,mf,finetune,melu,metarec,ridge (default all)\n"
          "  --scenarios LIST      new-users,time-order,new-items,new-items-warm (default all)\n"
          "  --algo NAME           MeLU's algorithm: maml (second order), fomaml, metasgd, reptile (default maml)\n"
          "  --iterations N        meta-iterations per network and fold (default 600)\n"
          "  --meta_batch N        users per meta-batch (32)      --inner_steps N (5)  --inner_steps_test N (5)\n"
          "  --inner_lr X          MeLU's inner rate (0.01)       --outer_lr X (Adam, 1e-3)  --clip X (10)\n"
          "  --eval_every N        validation check for early stopping (50)\n"
          "  --train_all_users     meta-train on every training user, not only those with 13-100 ratings\n"
          "  --export DIR          write each fold's users and test sets for bench/melu_torch.py\n"
          "  --seed N  --threads N  --cache_dir DIR ('none' = no cache)  --quiet\n"
          "  metarec ablations: --factors N (16)  --metarec_lr X (0.3)  --metarec_steps N (10)\n"
          "                        --metarec_outer_lr X (3e-3)  --metarec_meta_batch N (128)  --metarec_iterations N (1500)\n"
          "                        --mlp (the MeLU feature MLP)  --no_item_id  --no_user_bias  --no_trust  --learn_items\n"
          "                        --adapt_mlp  --full_support  --demographics  --no_rate_scale\n"
          "  meta-ridge: --ridge_iterations N (1000)  --ridge_meta_batch N (128)  --ridge_lr X (Adam, 0.02)\n"
          "                        --ridge_mse (meta-train on the query MSE, not the MAE)\n",
          cmd);
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *e;
  long long v = strtoll(s, &e, 10);
  if (!*s || *e || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool parse_float(const char *s, float *out) {
  char *e;
  double v = strtod(s, &e);
  if (!*s || *e || !isfinite(v)) return false;
  *out = (float)v;
  return true;
}

static int write_config(const ml_rec_experiment *e) {
  char buf[2048], path[4096];
  const ml_rec_model_config *m = &e->metarec;
  int n = snprintf(buf, sizeof buf,
                   "# metalearn recommend run: fold 0's metarec model (model.safetensors, rates.safetensors)\n"
                   "data = %s\nseed = %llu\nn_folds = %lld\nval_frac = %g\nmin_ratings = %lld\nmax_ratings = %lld\n"
                   "n_query = %lld\ninner_steps_test = %lld\nemb_dim = %lld\nhidden = %lld\nfactors = %lld\n"
                   "item_id = %d\nuser_bias = %d\ntrust = %d\nmlp = %d\nadapt_mlp = %d\ndemographics = %d\n",
                   e->data_dir, (unsigned long long)e->protocol.seed, (long long)e->protocol.n_folds,
                   e->protocol.val_frac, (long long)e->protocol.min_ratings, (long long)e->protocol.max_ratings,
                   (long long)e->protocol.n_query, (long long)e->metarec_steps, (long long)m->emb_dim,
                   (long long)m->hidden, (long long)m->factors, m->item_id, m->user_bias, m->trust, m->mlp,
                   m->adapt_mlp, m->demographics);
  snprintf(path, sizeof path, "%s/config.ini", e->run_dir);
  if (n < 0 || (size_t)n >= sizeof buf || ml_write_file_atomic(path, buf, (size_t)n)) {
    fprintf(stderr, "metalearn: %s\n", ml_last_error());
    return 1;
  }
  return 0;
}

int ml_cli_rec_train(int argc, char **argv, const char *cmd) {
  ml_rec_experiment e = ml_rec_experiment_defaults();
  static char data[4096];
  default_data(data, sizeof data);
  e.data_dir = data;
  e.cache_dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (!strncmp(k, "--dataset=", 10)) continue;
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      rec_usage(stdout, cmd);
      return 0;
    }
    bool flag = true;
    if (!strcmp(k, "--quiet")) e.quiet = true;
    else if (!strcmp(k, "--no_item_id")) e.metarec.item_id = false;
    else if (!strcmp(k, "--no_user_bias")) e.metarec.user_bias = false;
    else if (!strcmp(k, "--no_trust")) e.metarec.trust = false;
    else if (!strcmp(k, "--no_mlp")) e.metarec.mlp = false;
    else if (!strcmp(k, "--mlp")) e.metarec.mlp = true;
    else if (!strcmp(k, "--learn_items")) e.metarec.learn_items = true;
    else if (!strcmp(k, "--full_support")) e.metarec_full_support = true;
    else if (!strcmp(k, "--train_all_users")) e.protocol.train_in_range = false;
    else if (!strcmp(k, "--no_rate_scale")) e.metarec_tune_scale = false;
    else if (!strcmp(k, "--demographics")) e.metarec.demographics = true;
    else if (!strcmp(k, "--no_demographics")) e.metarec.demographics = false;
    else if (!strcmp(k, "--adapt_mlp")) e.metarec.adapt_mlp = true;
    else if (!strcmp(k, "--ridge_mse")) e.ridge_mse = true;
    else flag = false;
    if (flag) continue;
    if (i + 1 >= argc || strncmp(k, "--", 2)) {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --dataset movielens --help)\n", cmd, k);
      return 2;
    }
    const char *v = argv[++i];
    int64_t x;
    float fx;
    bool ok = true;
    if (!strcmp(k, "--dataset")) ok = !strcmp(v, "movielens");
    else if (!strcmp(k, "--data")) e.data_dir = v;
    else if (!strcmp(k, "--run")) e.run_dir = v;
    else if (!strcmp(k, "--export")) e.export_dir = v;
    else if (!strcmp(k, "--cache_dir")) e.cache_dir = strcmp(v, "none") ? v : "";
    else if (!strcmp(k, "--methods")) e.methods = v;
    else if (!strcmp(k, "--folds")) ok = parse_int(v, 1, 5, &e.folds_run);
    else if (!strcmp(k, "--iterations")) ok = parse_int(v, 0, 10000000, &e.iterations);
    else if (!strcmp(k, "--meta_batch")) ok = parse_int(v, 1, 1024, &e.meta_batch);
    else if (!strcmp(k, "--inner_steps")) ok = parse_int(v, 0, 1000, &e.inner_steps);
    else if (!strcmp(k, "--inner_steps_test")) ok = parse_int(v, 0, 1000, &e.inner_steps_test);
    else if (!strcmp(k, "--eval_every")) ok = parse_int(v, 0, 10000000, &e.eval_every);
    else if (!strcmp(k, "--factors")) ok = parse_int(v, 0, 64, &e.metarec.factors);
    else if (!strcmp(k, "--threads")) ok = parse_int(v, 0, 1024, &x) && ((e.threads = (int)x), true);
    else if (!strcmp(k, "--seed")) ok = parse_int(v, 0, INT64_MAX, &x) && ((e.protocol.seed = (uint64_t)x), true);
    else if (!strcmp(k, "--inner_lr")) ok = parse_float(v, &e.inner_lr) && e.inner_lr >= 0;
    else if (!strcmp(k, "--metarec_lr")) ok = parse_float(v, &e.metarec_lr) && e.metarec_lr >= 0;
    else if (!strcmp(k, "--metarec_outer_lr")) ok = parse_float(v, &e.metarec_outer_lr) && e.metarec_outer_lr > 0;
    else if (!strcmp(k, "--metarec_meta_batch")) ok = parse_int(v, 1, 1024, &e.metarec_meta_batch);
    else if (!strcmp(k, "--metarec_iterations")) ok = parse_int(v, 0, 10000000, &e.metarec_iterations);
    else if (!strcmp(k, "--metarec_steps")) ok = parse_int(v, 0, 1000, &e.metarec_steps);
    else if (!strcmp(k, "--ridge_iterations")) ok = parse_int(v, 0, 10000000, &e.ridge_iterations);
    else if (!strcmp(k, "--ridge_meta_batch")) ok = parse_int(v, 1, 100000, &e.ridge_meta_batch);
    else if (!strcmp(k, "--ridge_lr")) ok = parse_float(v, &e.ridge_lr) && e.ridge_lr > 0;
    else if (!strcmp(k, "--outer_lr")) ok = parse_float(v, &e.outer_lr) && e.outer_lr > 0;
    else if (!strcmp(k, "--clip")) ok = parse_float(v, &fx) && fx >= 0 && ((e.clip = fx), true);
    else if (!strcmp(k, "--algo")) {
      ok = !ml_algo_parse(v, &e.algo) &&
           (e.algo == ML_ALGO_MAML || e.algo == ML_ALGO_FOMAML || e.algo == ML_ALGO_METASGD || e.algo == ML_ALGO_REPTILE);
    } else if (!strcmp(k, "--scenarios")) {
      for (int s = 0; s < ML_REC_SCENARIOS; s++) e.scenarios[s] = false;
      char tmp[256];
      snprintf(tmp, sizeof tmp, "%s", v);
      for (char *t = strtok(tmp, ","); t && ok; t = strtok(NULL, ",")) {
        int s = 0;
        while (s < ML_REC_SCENARIOS && strcmp(t, ml_rec_scenario_name((ml_rec_scenario)s))) s++;
        if (s == ML_REC_SCENARIOS) ok = false;
        else e.scenarios[s] = true;
      }
    } else {
      fprintf(stderr, "metalearn %s: unknown option '%s' (see --dataset movielens --help)\n", cmd, k);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "metalearn %s: bad value '%s' for %s\n", cmd, v, k);
      return 2;
    }
  }
  if (e.run_dir) {
    mkdir(e.run_dir, 0755);
    if (write_config(&e)) return 1;
  }
  double t0 = ml_now();
  ml_status st = ml_rec_run(&e, stdout);
  if (st) {
    fprintf(stderr, "metalearn %s: %s\n", cmd, ml_last_error());
    return ml_cli_exit_code(st);
  }
  if (!e.quiet) fprintf(stderr, "metalearn: done in %.1fs\n", ml_now() - t0);
  return 0;
}

/* ---- metalearn recommend ---- */
typedef struct {
  char data[4096];
  ml_rec_protocol p;
  ml_rec_model_config m;
  int64_t steps;
} run_config;

static int read_run_config(const char *run, run_config *rc) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.ini", run);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "metalearn recommend: %s: cannot open (train with --dataset movielens --run DIR first)\n", path);
    return 2;
  }
  rc->p = ml_rec_protocol_defaults();
  rc->m = ml_rec_model_defaults(ML_REC_METAREC);
  rc->steps = 5;
  rc->data[0] = 0;
  char line[4352];
  int64_t ln = 0;
  while (fgets(line, sizeof line, f)) {
    ln++;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!line[0] || line[0] == '#') continue;
    char *eq = strstr(line, " = ");
    if (!eq) {
      fprintf(stderr, "metalearn recommend: %s:%lld: expected 'key = value'\n", path, (long long)ln);
      fclose(f);
      return 2;
    }
    *eq = 0;
    const char *k = line, *v = eq + 3;
    int64_t x = 0;
    bool ok = true;
    if (!strcmp(k, "data")) snprintf(rc->data, sizeof rc->data, "%s", v);
    else if (!strcmp(k, "val_frac")) rc->p.val_frac = atof(v);
    else if (!(ok = parse_int(v, 0, INT64_MAX, &x))) {
    } else if (!strcmp(k, "seed")) rc->p.seed = (uint64_t)x;
    else if (!strcmp(k, "n_folds")) rc->p.n_folds = x;
    else if (!strcmp(k, "min_ratings")) rc->p.min_ratings = x;
    else if (!strcmp(k, "max_ratings")) rc->p.max_ratings = x;
    else if (!strcmp(k, "n_query")) rc->p.n_query = x;
    else if (!strcmp(k, "inner_steps_test")) rc->steps = x;
    else if (!strcmp(k, "emb_dim")) rc->m.emb_dim = x;
    else if (!strcmp(k, "hidden")) rc->m.hidden = x;
    else if (!strcmp(k, "factors")) rc->m.factors = x;
    else if (!strcmp(k, "item_id")) rc->m.item_id = x;
    else if (!strcmp(k, "user_bias")) rc->m.user_bias = x;
    else if (!strcmp(k, "trust")) rc->m.trust = x;
    else if (!strcmp(k, "mlp")) rc->m.mlp = x;
    else if (!strcmp(k, "adapt_mlp")) rc->m.adapt_mlp = x;
    else if (!strcmp(k, "demographics")) rc->m.demographics = x;
    if (!ok) {
      fprintf(stderr, "metalearn recommend: %s:%lld: bad value '%s' for %s\n", path, (long long)ln, v, k);
      fclose(f);
      return 2;
    }
  }
  fclose(f);
  return 0;
}

/* --user age=25,gender=F,occupation=writer,zip=94110 into (gender, age, occupation, zip) codes. */
static int parse_user(const char *spec, const ml_ratings *r, uint8_t feat[4]) {
  memset(feat, 0, 4);
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", spec);
  for (char *t = strtok(tmp, ","); t; t = strtok(NULL, ",")) {
    char *eq = strchr(t, '=');
    if (!eq) goto bad;
    *eq = 0;
    const char *k = t, *v = eq + 1;
    int64_t x;
    if (!strcmp(k, "gender")) {
      if (!strcmp(v, "M")) feat[0] = 1;
      else if (!strcmp(v, "F")) feat[0] = 2;
      else goto bad;
    } else if (!strcmp(k, "age")) {
      if (!parse_int(v, 0, 150, &x)) goto bad;
      feat[1] = x < 18 ? 1 : x < 25 ? 2 : x < 35 ? 3 : x < 45 ? 4 : x < 50 ? 5 : x < 56 ? 6 : 7;
    } else if (!strcmp(k, "occupation")) {
      int found = 0;
      for (int j = 1; j < ML_RATINGS_N_OCC && !found; j++)
        if (r->occupation_names[j][0] && !strcmp(r->occupation_names[j], v)) found = j;
      if (!found) {
        fprintf(stderr, "metalearn recommend: --user: unknown occupation '%s'; known:", v);
        for (int j = 1; j < ML_RATINGS_N_OCC; j++)
          if (r->occupation_names[j][0]) fprintf(stderr, " %s", r->occupation_names[j]);
        fprintf(stderr, "\n");
        return 2;
      }
      feat[2] = (uint8_t)found;
    } else if (!strcmp(k, "zip")) {
      feat[3] = isdigit((unsigned char)v[0]) ? (uint8_t)(1 + v[0] - '0') : 0;
    } else
      goto bad;
    continue;
  bad:
    fprintf(stderr, "metalearn recommend: --user: bad entry '%s' (age=N, gender=M|F, occupation=NAME, zip=CODE)\n", t);
    return 2;
  }
  return 0;
}

/* A new user's ratings, "item,rating" per line (# comments and blank lines skipped). */
static int read_user_ratings(const char *path, const ml_ratings *r, int64_t **items, float **vals, int64_t *n) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "metalearn recommend: %s: cannot open\n", path);
    return 2;
  }
  int64_t cap = 64;
  *items = malloc((size_t)cap * sizeof(int64_t)), *vals = malloc((size_t)cap * sizeof(float)), *n = 0;
  char line[1024];
  int64_t ln = 0;
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    ln++;
    size_t L = strlen(line);
    if (L == sizeof line - 1 && line[L - 1] != '\n') {
      fprintf(stderr, "metalearn recommend: %s:%lld: line too long\n", path, (long long)ln);
      rc = 2;
      break;
    }
    while (L && (line[L - 1] == '\n' || line[L - 1] == '\r' || line[L - 1] == ' ')) line[--L] = 0;
    if (!L || line[0] == '#') continue;
    char *comma = strchr(line, ',');
    int64_t id;
    char *e;
    double v = comma ? strtod(comma + 1, &e) : 0;
    if (comma) *comma = 0;
    if (!comma || !parse_int(line, 0, INT64_MAX, &id) || !comma[1] || *e || !isfinite(v)) {
      fprintf(stderr, "metalearn recommend: %s:%lld: expected 'item,rating'\n", path, (long long)ln);
      rc = 2;
      break;
    }
    double q = (v - r->rating_min) / r->rating_step;
    if (v < r->rating_min || v > r->rating_max || fabs(q - floor(q + 0.5)) > 1e-6) {
      fprintf(stderr, "metalearn recommend: %s:%lld: rating %g outside the scale %g-%g (steps of %g)\n", path,
              (long long)ln, v, r->rating_min, r->rating_max, r->rating_step);
      rc = 2;
      break;
    }
    int64_t lo = 0, hi = r->n_items;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (r->item_id[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= r->n_items || r->item_id[lo] != id) {
      fprintf(stderr, "metalearn recommend: %s:%lld: unknown item id %lld\n", path, (long long)ln, (long long)id);
      rc = 2;
      break;
    }
    if (*n == cap) {
      cap *= 2;
      int64_t *a = realloc(*items, (size_t)cap * sizeof(int64_t));
      float *b = realloc(*vals, (size_t)cap * sizeof(float));
      if (a) *items = a;
      if (b) *vals = b;
      if (!a || !b) {
        fprintf(stderr, "metalearn recommend: out of memory\n");
        rc = 1;
        break;
      }
    }
    (*items)[*n] = lo, (*vals)[*n] = (float)v, (*n)++;
  }
  fclose(f);
  if (!rc && *n == 0) {
    fprintf(stderr, "metalearn recommend: %s:%lld: no ratings (empty file)\n", path, (long long)ln + 1);
    rc = 2;
  }
  return rc;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

int ml_cli_recommend(int argc, char **argv) {
  const char *run = NULL, *ratings = NULL, *user = NULL, *which = NULL;
  int64_t top = 10;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      printf("usage: metalearn recommend --run DIR --ratings FILE [--user age=N,gender=M|F,occupation=NAME,zip=CODE]\n"
             "                           [--top N] [--json] [--model ridge|metarec]\n\n"
             "Adapts the run's meta-learned recommender to a new user's ratings (FILE: one 'item,rating' per\n"
             "line, MovieLens item ids) and prints the top N movies they have not rated, with predicted ratings.\n"
             "--model: meta-ridge (the default when the run has DIR/ridge.safetensors: the lowest MAE on\n"
             "MovieLens-100K) or metarec (DIR/model.safetensors, the model that can use --user).\n");
      return 0;
    }
    if (!strcmp(k, "--json")) {
      json = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "metalearn recommend: unknown option or missing value '%s'\n", k);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(k, "--run")) run = v;
    else if (!strcmp(k, "--ratings")) ratings = v;
    else if (!strcmp(k, "--user")) user = v;
    else if (!strcmp(k, "--model")) {
      if (strcmp(v, "ridge") && strcmp(v, "metarec")) {
        fprintf(stderr, "metalearn recommend: --model: '%s' is not ridge or metarec\n", v);
        return 2;
      }
      which = v;
    }
    else if (!strcmp(k, "--top")) {
      if (!parse_int(v, 1, 100000, &top)) {
        fprintf(stderr, "metalearn recommend: bad value '%s' for --top\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "metalearn recommend: unknown option '%s'\n", k);
      return 2;
    }
  }
  if (!run || !ratings) {
    fprintf(stderr, "metalearn recommend: needs --run DIR and --ratings FILE\n");
    return 2;
  }
  run_config rc;
  int code = read_run_config(run, &rc);
  if (code) return code;
  ml_ratings r;
  ml_status st = ml_ratings_load(rc.data, NULL, &r);
  if (st) {
    fprintf(stderr, "metalearn recommend: %s\n", ml_last_error());
    return ml_cli_exit_code(st);
  }
  char ridge_path[4200];
  snprintf(ridge_path, sizeof ridge_path, "%s/ridge.safetensors", run);
  struct stat sb;
  bool use_ridge = which ? !strcmp(which, "ridge") : stat(ridge_path, &sb) == 0;
  uint8_t feat[4] = {0, 0, 0, 0};
  int64_t *items = NULL, n = 0;
  float *vals = NULL;
  code = user ? parse_user(user, &r, feat) : 0;
  if (!code && user && (use_ridge || (!rc.m.mlp && !rc.m.demographics)))
    fprintf(stderr, "metalearn recommend: note: this model does not use demographics (meta-ridge never does; metarec "
                    "does when trained with --demographics or --mlp); --user has no effect\n");
  if (!code) code = read_user_ratings(ratings, &r, &items, &vals, &n);
  ml_rec_split s;
  memset(&s, 0, sizeof s);
  ml_model *model = NULL;
  ml_algo *algo = NULL;
  ml_arena *ar = NULL;
  ml_rec_ridge *ridge = NULL;
  if (!code) {
    /* the same split as training: its item statistics and tables are the model's */
    st = ml_rec_split_new(&r, &rc.p, &s);
    if (!st && !(ar = ml_arena_new(0, NULL))) st = ml_error(ML_ERR_NOMEM, "out of memory");
    if (!st && use_ridge) {
      st = ml_rec_ridge_load(ridge_path, &s, &ridge);
    } else if (!st) {
      st = ml_rec_model_new(&rc.m, &r, s.mu, s.item_mean, 0, &model);
      if (!st) st = ml_rec_model_fit_items(model, &s, true, rc.p.seed);
      char path[4200];
      snprintf(path, sizeof path, "%s/model.safetensors", run);
      if (!st) st = ml_checkpoint_load(path, model->params, NULL);
      ml_algo_config ac = ml_algo_defaults(ML_ALGO_METASGD);
      ac.task = ML_TASK_REGRESS, ac.adapt_head_only = true, ac.inner_steps_test = rc.steps, ac.threads = 1;
      if (!st) st = ml_algo_new(&ac, model, &algo);
      snprintf(path, sizeof path, "%s/rates.safetensors", run);
      if (!st) st = ml_checkpoint_load(path, ml_algo_extra_params(algo), NULL);
    }
    if (st) {
      fprintf(stderr, "metalearn recommend: %s\n", ml_last_error());
      code = ml_cli_exit_code(st);
    }
  }
  if (!code) {
    int64_t ni = r.n_items;
    uint8_t *seen = calloc((size_t)ni, 1);
    float *pred = ml_arena_alloc(ar, (size_t)ni * sizeof(float));
    int64_t *order = malloc((size_t)ni * sizeof(int64_t));
    if (!seen || !pred || !order) st = ml_error(ML_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; !st && j < n; j++) seen[items[j]] = 1;
    if (!st && ridge) {
      ml_rec_ridge_predict_user(ridge, items, vals, n, pred);
    } else if (!st) { /* metarec: the user's ratings as the support, every item as the query */
      int64_t D = ml_rec_row_width(&r);
      ml_episode ep;
      memset(&ep, 0, sizeof ep);
      ep.n_way = 1, ep.n_s = ep.k_shot = n, ep.n_q = ep.q_query = ni;
      ep.xs = ml_tensor_new(ar, 2, (int64_t[]){n, D}), ep.ts = ml_tensor_new(ar, 2, (int64_t[]){n, 1});
      ep.xq = ml_tensor_new(ar, 2, (int64_t[]){ni, D}), ep.tq = ml_tensor_zeros(ar, 2, (int64_t[]){ni, 1});
      if (!ep.xs.data || !ep.xq.data || !ep.ts.data || !ep.tq.data) st = ml_error(ML_ERR_NOMEM, "out of memory");
      for (int64_t j = 0; !st && j < n; j++) {
        ml_rec_encode_row(&s, -1, feat, items[j], n, ep.xs.data + j * D);
        ep.ts.data[j] = vals[j];
      }
      for (int64_t i = 0; !st && i < ni; i++) ml_rec_encode_row(&s, -1, feat, i, n, ep.xq.data + i * D);
      if (!st) st = ml_algo_predict(algo, &ep, ar, pred);
    }
    if (st) {
      fprintf(stderr, "metalearn recommend: %s\n", ml_last_error());
      code = ml_cli_exit_code(st);
    }
    if (!code) {
      int64_t m = 0;
      for (int64_t i = 0; i < ni; i++)
        if (!seen[i]) order[m++] = i;
      /* partial selection of the top N by predicted rating, ties by item order */
      int64_t want = top < m ? top : m;
      for (int64_t a = 0; a < want; a++) {
        int64_t best = a;
        for (int64_t b = a + 1; b < m; b++)
          if (pred[order[b]] > pred[order[best]]) best = b;
        int64_t t = order[a];
        order[a] = order[best], order[best] = t;
      }
      if (json) printf("{\"user_ratings\": %lld, \"recommendations\": [", (long long)n);
      for (int64_t a = 0; a < want; a++) {
        int64_t i = order[a];
        float p = pred[i] < r.rating_min ? r.rating_min : pred[i] > r.rating_max ? r.rating_max : pred[i];
        if (json) {
          printf("%s{\"item\": %lld, \"title\": ", a ? ", " : "", (long long)r.item_id[i]);
          json_str(stdout, r.titles[i]);
          printf(", \"predicted\": %.3f}", p);
        } else
          printf("%2lld. %.2f  %s (item %lld)\n", (long long)a + 1, p, r.titles[i], (long long)r.item_id[i]);
      }
      if (json) printf("]}\n");
    }
    free(seen), free(order);
  }
  free(items), free(vals);
  ml_arena_free(ar);
  ml_algo_free(algo);
  ml_rec_model_free(model);
  ml_rec_ridge_free(ridge);
  ml_rec_split_free(&s);
  ml_ratings_free(&r);
  return code;
}
