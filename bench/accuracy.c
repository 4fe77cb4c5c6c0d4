/* bench/accuracy: metalearn's second-order MAML against a PyTorch reference, side by side, on the
 * same machine in the same invocation (the project's rule for accuracy and speed claims).
 *
 * Setup (as `metalearn train --dataset omniglot-small --algo maml`): the two small Omniglot zips,
 * tested on Japanese_(katakana) and Tagalog, trained on every other alphabet with rotations;
 * Conv4 (64 filters, 28x28, batch statistics), 5-way 1-shot, 15 query images per class, meta-batch
 * 16, one inner SGD step of 0.4, Adam 1e-3, 250 iterations; tested on 600 fixed episodes with 3
 * inner steps (the MAML paper's Omniglot setting: 1 step in training, 3 at test).
 *
 * Both sides see the SAME data: this program writes into a work directory the decoded pixels,
 * the initial parameters, and for every training episode (iteration i, task t) and every test
 * episode the dataset index, rotation and label of each example. It trains and evaluates
 * metalearn on those episodes (the task sources check that they draw exactly the exported
 * examples), then runs bench/accuracy_torch.py, which rebuilds the same inputs (checked bit for bit
 * against tensors written here), trains functional MAML with torch.autograd.grad(create_graph=True)
 * from the same weights and evaluates on the same episodes. Thread counts are set explicitly on
 * both sides. The verdict is PASS when metalearn's accuracy lies within PyTorch's 95% CI or above.
 *
 * --check-first runs one meta-iteration on both sides and compares the meta-gradients (recovered
 * from Adam's first moment, m = (1 - beta1) g after one step) and the parameters after the step.
 *
 * Usage: accuracy [--iterations N] [--meta-batch N] [--episodes N] [--threads N] [--seed N]
 *                 [--data DIR] [--python EXE] [--workdir DIR] [--keep] [--check-first]
 * Each numeric option can also come from ML_ACC_<NAME> (e.g. ML_ACC_ITERATIONS=3); the data
 * directory from METALEARN_DATA, the interpreter from ML_TORCH_PYTHON.
 * Exit status: 0 with a PASS or FAIL verdict printed, 1 when the PyTorch side fails, 2 on bad
 * usage or data. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metalearn.h"

typedef struct {
  int64_t iterations, meta_batch, episodes, threads, seed;
  const char *data, *python, *workdir;
  bool keep, check_first;
} options;

typedef struct {
  options o;
  ml_fewshot_config cfg; /* as resolved by ml_fewshot_open: what the CLI would run */
  const ml_dataset *ds;  /* the session's own data and splits (ml_fewshot_data) */
  const ml_split *train, *test;
  int64_t row_tr, row_te;             /* examples per training / test episode (support then query) */
  int32_t *tr_src, *tr_rot, *tr_lab;  /* (iterations * meta_batch, row_tr) */
  int32_t *te_src, *te_rot, *te_lab;  /* (episodes, row_te) */
  unsigned char *tr_ok, *te_ok;       /* set by the task sources: 1 = drew exactly the exported examples */
} bench;

typedef struct {
  double acc, ci95, train_s, eval_s, loss_first, loss_last, loss_last10, acc_last10;
  char version[96];
} side_result;

static void die(int code, const char *what) {
  fprintf(stderr, "accuracy: %s%s%s\n", what, ml_last_error()[0] ? ": " : "", ml_last_error());
  exit(code);
}

/* ---- options: argv over ML_ACC_<NAME> over the defaults ---- */
static int64_t env_int(const char *name, int64_t def) {
  const char *v = getenv(name);
  char *end;
  if (!v || !*v) return def;
  long long x = strtoll(v, &end, 10);
  if (*end) {
    fprintf(stderr, "accuracy: %s='%s' is not an integer\n", name, v);
    exit(2);
  }
  return x;
}

static int64_t arg_int(const char *opt, const char *v) {
  char *end;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end) {
    fprintf(stderr, "accuracy: --%s '%s' is not an integer\n", opt, v);
    exit(2);
  }
  return x;
}

static void usage(FILE *f) {
  fprintf(f, "usage: accuracy [--iterations N] [--meta-batch N] [--episodes N] [--threads N] [--seed N]\n"
             "                [--data DIR] [--python EXE] [--workdir DIR] [--keep] [--check-first]\n\n"
             "Second-order MAML, Omniglot small zips, 5-way 1-shot: metalearn against a PyTorch reference\n"
             "(bench/accuracy_torch.py) on the same episodes from the same initial weights.\n"
             "Defaults: 250 iterations, meta-batch 16, 600 test episodes, 2 threads on each side, seed 1.\n"
             "Environment: ML_ACC_ITERATIONS, ML_ACC_META_BATCH, ML_ACC_EPISODES, ML_ACC_THREADS, ML_ACC_SEED,\n"
             "METALEARN_DATA (default <repo>/../shared/data), ML_TORCH_PYTHON (default /work/venv/bin/python\n"
             "if present, else /usr/bin/python3).\n"
             "--check-first: one iteration on each side; compares the meta-gradients and the updated weights\n"
             "  (metalearn's Winograd convolutions off: they break max-pool ties differently, see kernels.h).\n"
             "--workdir DIR: write the exchange files there and keep them (default: a temporary directory,\n"
             "removed at the end unless --keep).\n");
}

static options parse_options(int argc, char **argv) {
  options o = {.iterations = env_int("ML_ACC_ITERATIONS", 250), .meta_batch = env_int("ML_ACC_META_BATCH", 16),
               .episodes = env_int("ML_ACC_EPISODES", 600), .threads = env_int("ML_ACC_THREADS", 2),
               .seed = env_int("ML_ACC_SEED", 1), .data = getenv("METALEARN_DATA"),
               .python = getenv("ML_TORCH_PYTHON")};
  static const struct option opts[] = {
      {"iterations", required_argument, 0, 'i'}, {"meta-batch", required_argument, 0, 'b'},
      {"episodes", required_argument, 0, 'e'},   {"threads", required_argument, 0, 't'},
      {"seed", required_argument, 0, 's'},       {"data", required_argument, 0, 'd'},
      {"python", required_argument, 0, 'p'},     {"workdir", required_argument, 0, 'w'},
      {"keep", no_argument, 0, 'k'},             {"check-first", no_argument, 0, 'c'},
      {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
  int c, li;
  while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
    switch (c) {
      case 'i': o.iterations = arg_int("iterations", optarg); break;
      case 'b': o.meta_batch = arg_int("meta-batch", optarg); break;
      case 'e': o.episodes = arg_int("episodes", optarg); break;
      case 't': o.threads = arg_int("threads", optarg); break;
      case 's': o.seed = arg_int("seed", optarg); break;
      case 'd': o.data = optarg; break;
      case 'p': o.python = optarg; break;
      case 'w': o.workdir = optarg; break;
      case 'k': o.keep = true; break;
      case 'c': o.check_first = true; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (optind < argc) {
    fprintf(stderr, "accuracy: unexpected argument '%s'\n", argv[optind]);
    exit(2);
  }
  if (o.check_first) o.iterations = 1, o.episodes = 0; /* the check compares one update, not accuracy */
  if (o.iterations < 1 || o.meta_batch < 1 || o.threads < 1 || o.episodes < 0 || (!o.check_first && o.episodes < 2)) {
    fprintf(stderr, "accuracy: need iterations, meta-batch, threads >= 1 and episodes >= 2\n");
    exit(2);
  }
  return o;
}

/* ---- paths ---- */
static bool exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* Strips n trailing path components in place. */
static void up(char *p, int n) {
  for (int i = 0; i < n; i++) {
    char *s = strrchr(p, '/');
    if (s && s != p) *s = 0;
  }
}

/* The repository root: from the program's location (build/bench/accuracy), else from this
 * source file's path (CMake compiles it by absolute path). */
static void repo_root(char *root, size_t n) {
  char exe[ML_PATH_MAX], probe[ML_PATH_MAX + 64];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = 0;
    up(exe, 3);
    snprintf(probe, sizeof probe, "%s/bench/accuracy_torch.py", exe);
    if (exists(probe)) {
      snprintf(root, n, "%s", exe);
      return;
    }
  }
  snprintf(root, n, "%s", __FILE__);
  up(root, 2);
}

/* ---- the exchange files ---- */
/* Dies on a path too long for its buffer rather than silently writing elsewhere. */
static void fit(int written, size_t n) {
  if (written < 0 || (size_t)written >= n) {
    fprintf(stderr, "accuracy: path too long\n");
    exit(2);
  }
}

static void path_in(char *buf, size_t n, const char *dir, const char *name) {
  fit(snprintf(buf, n, "%s/%s", dir, name), n);
}

static void write_raw(const char *dir, const char *name, const void *data, size_t bytes) {
  char p[ML_PATH_MAX + 64];
  path_in(p, sizeof p, dir, name);
  if (ml_write_file_atomic(p, data, bytes)) die(2, "writing the exchange files");
}

/* Support then query, one row per episode. */
static void record(const ml_episode *ep, int32_t *src, int32_t *rot, int32_t *lab) {
  for (int64_t i = 0; i < ep->n_s + ep->n_q; i++) {
    bool s = i < ep->n_s;
    int64_t j = s ? i : i - ep->n_s;
    src[i] = (int32_t)(s ? ep->src_s : ep->src_q)[j];
    rot[i] = (s ? ep->rot_s : ep->rot_q)[j];
    lab[i] = (s ? ep->ys : ep->yq)[j];
  }
}

static bool same(const ml_episode *ep, const int32_t *src, const int32_t *rot, const int32_t *lab) {
  for (int64_t i = 0; i < ep->n_s + ep->n_q; i++) {
    bool s = i < ep->n_s;
    int64_t j = s ? i : i - ep->n_s;
    if (src[i] != (s ? ep->src_s : ep->src_q)[j] || rot[i] != (s ? ep->rot_s : ep->rot_q)[j] ||
        lab[i] != (s ? ep->ys : ep->yq)[j])
      return false;
  }
  return true;
}

/* ---- task sources: the library's samplers with the CLI's keys ---- */
static ml_status train_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  bench *b = ctx;
  const ml_fewshot_config *c = &b->cfg;
  ml_status st = ml_fewshot_sample(b->ds, b->train, c->n_way, c->k_shot, c->q_query, (uint64_t)c->seed,
                                   (uint64_t)it, (uint64_t)idx, ar, ep);
  int64_t row = it * c->meta_batch + idx, off = row * b->row_tr;
  if (!st && b->tr_ok) b->tr_ok[row] = same(ep, b->tr_src + off, b->tr_rot + off, b->tr_lab + off);
  return st;
}

static ml_status test_task(void *ctx, int64_t key, int64_t idx, ml_arena *ar, ml_episode *ep) {
  (void)key;
  bench *b = ctx;
  const ml_fewshot_config *c = &b->cfg;
  ml_status st = ml_fewshot_eval_episode(b->ds, b->test, c->n_way, c->k_shot, c->q_query_test, (uint64_t)c->seed,
                                         idx, ar, ep);
  int64_t off = idx * b->row_te;
  if (!st && b->te_ok && idx < b->o.episodes) b->te_ok[idx] = same(ep, b->te_src + off, b->te_rot + off, b->te_lab + off);
  return st;
}

/* Exports every training and test episode's examples, and the input tensors of iteration 0's
 * tasks and of test episode 0 (the PyTorch side checks its rebuilt inputs against them). */
static void export_episodes(bench *b, const char *dir) {
  const ml_fewshot_config *c = &b->cfg;
  int64_t ntr = b->o.iterations * c->meta_batch, nte = b->o.episodes;
  b->row_tr = c->n_way * (c->k_shot + c->q_query);
  b->row_te = c->n_way * (c->k_shot + c->q_query_test);
  size_t btr = (size_t)(ntr * b->row_tr) * sizeof(int32_t), bte = (size_t)(nte * b->row_te) * sizeof(int32_t);
  b->tr_src = malloc(btr), b->tr_rot = malloc(btr), b->tr_lab = malloc(btr);
  b->te_src = malloc(bte + 4), b->te_rot = malloc(bte + 4), b->te_lab = malloc(bte + 4);
  b->tr_ok = calloc((size_t)ntr, 1), b->te_ok = calloc((size_t)nte + 1, 1);
  if (!b->tr_src || !b->tr_rot || !b->tr_lab || !b->te_src || !b->te_rot || !b->te_lab || !b->tr_ok || !b->te_ok)
    die(1, "out of memory");
  bench tmp = *b; /* sources without the checks, for exporting */
  tmp.tr_ok = tmp.te_ok = NULL;
  ml_arena *ar = ml_arena_new(0, NULL), *keep = ml_arena_new(0, NULL);
  if (!ar || !keep) die(1, "out of memory");
  ml_named_tensor *check = calloc((size_t)(2 * c->meta_batch + 2), sizeof *check);
  char (*names)[32] = calloc((size_t)(2 * c->meta_batch + 2), 32);
  int64_t nc = 0;
  ml_episode ep;
  for (int64_t r = 0; r < ntr; r++) {
    int64_t it = r / c->meta_batch, t = r % c->meta_batch;
    ml_arena_reset(ar);
    if (train_task(&tmp, it, t, it == 0 ? keep : ar, &ep)) die(2, "sampling a training episode");
    record(&ep, b->tr_src + r * b->row_tr, b->tr_rot + r * b->row_tr, b->tr_lab + r * b->row_tr);
    if (it == 0) {
      snprintf(names[nc], 32, "train.%lld.xs", (long long)t), check[nc] = (ml_named_tensor){names[nc], ep.xs}, nc++;
      snprintf(names[nc], 32, "train.%lld.xq", (long long)t), check[nc] = (ml_named_tensor){names[nc], ep.xq}, nc++;
    }
  }
  for (int64_t e = 0; e < nte; e++) {
    ml_arena_reset(ar);
    if (test_task(&tmp, 0, e, e == 0 ? keep : ar, &ep)) die(2, "sampling a test episode");
    record(&ep, b->te_src + e * b->row_te, b->te_rot + e * b->row_te, b->te_lab + e * b->row_te);
    if (e == 0) {
      snprintf(names[nc], 32, "test.0.xs"), check[nc] = (ml_named_tensor){names[nc], ep.xs}, nc++;
      snprintf(names[nc], 32, "test.0.xq"), check[nc] = (ml_named_tensor){names[nc], ep.xq}, nc++;
    }
  }
  char p[ML_PATH_MAX + 64];
  path_in(p, sizeof p, dir, "check_x.safetensors");
  if (ml_safetensors_write(p, check, nc, NULL, 0)) die(2, "writing the check tensors");
  write_raw(dir, "train_src.i32", b->tr_src, btr);
  write_raw(dir, "train_rot.i32", b->tr_rot, btr);
  write_raw(dir, "train_lab.i32", b->tr_lab, btr);
  write_raw(dir, "test_src.i32", b->te_src, bte);
  write_raw(dir, "test_rot.i32", b->te_rot, bte);
  write_raw(dir, "test_lab.i32", b->te_lab, bte);
  free(check), free(names);
  ml_arena_free(ar), ml_arena_free(keep);
}

static void write_setup(bench *b, ml_algo *algo, const char *dir) {
  const ml_fewshot_config *c = &b->cfg;
  const ml_model *m = ml_algo_model(algo);
  const ml_optim_config *oc = &ml_algo_get_config(algo)->outer;
  char p[ML_PATH_MAX + 64];
  path_in(p, sizeof p, dir, "setup.json");
  FILE *f = fopen(p, "w");
  if (!f) die(2, "writing setup.json");
  fprintf(f, "{\n  \"made_by\": \"bench/accuracy (metalearn %s)\",\n  \"threads\": %lld,\n  \"seed\": %lld,\n",
          ml_version(), (long long)b->o.threads, (long long)c->seed);
  fprintf(f, "  \"n_way\": %lld, \"k_shot\": %lld, \"q_query\": %lld, \"q_query_test\": %lld,\n", (long long)c->n_way,
          (long long)c->k_shot, (long long)c->q_query, (long long)c->q_query_test);
  fprintf(f, "  \"inner_lr\": %.9g, \"inner_steps\": %lld, \"inner_steps_test\": %lld,\n", c->inner_lr,
          (long long)c->inner_steps, (long long)c->inner_steps_test);
  fprintf(f, "  \"meta_lr\": %.9g, \"beta1\": %.9g, \"beta2\": %.9g, \"adam_eps\": %.9g, \"weight_decay\": %.9g, "
             "\"clip_norm\": %.9g,\n",
          (double)oc->lr, (double)oc->beta1, (double)oc->beta2, (double)oc->eps, (double)oc->weight_decay,
          (double)oc->clip_norm);
  fprintf(f, "  \"blocks\": %lld, \"bn_eps\": %.9g, \"check_first\": %s,\n", (long long)m->conv.blocks,
          (double)m->conv.bn_eps, b->o.check_first ? "true" : "false");
  fprintf(f, "  \"images\": {\"file\": \"pixels.u8\", \"dtype\": \"uint8\", \"shape\": [%lld, %lld, %lld], "
             "\"ink\": 255, \"input\": \"pixel / 255 as float32, rotation (numpy.rot90) applied to uint8 first\"},\n",
          (long long)b->ds->n_images, (long long)b->ds->height, (long long)b->ds->width);
  fprintf(f, "  \"params\": {\"file\": \"init.safetensors\", \"names\": [");
  for (int64_t i = 0; i < m->params->count; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", m->params->items[i].name);
  fprintf(f, "]},\n");
  fprintf(f, "  \"episodes_format\": \"int32 little-endian, one row per episode: support then query examples\",\n");
  fprintf(f, "  \"train\": {\"iterations\": %lld, \"meta_batch\": %lld, \"n_s\": %lld, \"n_q\": %lld, "
             "\"src\": \"train_src.i32\", \"rot\": \"train_rot.i32\", \"label\": \"train_lab.i32\"},\n",
          (long long)b->o.iterations, (long long)c->meta_batch, (long long)(c->n_way * c->k_shot),
          (long long)(c->n_way * c->q_query));
  fprintf(f, "  \"test\": {\"episodes\": %lld, \"n_s\": %lld, \"n_q\": %lld, "
             "\"src\": \"test_src.i32\", \"rot\": \"test_rot.i32\", \"label\": \"test_lab.i32\"},\n",
          (long long)b->o.episodes, (long long)(c->n_way * c->k_shot), (long long)(c->n_way * c->q_query_test));
  fprintf(f, "  \"check_inputs\": \"check_x.safetensors\"\n}\n");
  if (fclose(f)) die(2, "writing setup.json");
}

/* ---- the PyTorch side ---- */
/* Runs argv (argv[0] searched in PATH when it has no slash) with its stdout captured into *out
 * (NUL-terminated, caller frees); stderr passes through for progress and errors. Returns the exit
 * status; 127 when the program could not be started. */
static int run_capture(char *const argv[], char **out) {
  int fd[2];
  *out = NULL;
  if (pipe(fd)) return 127;
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    dup2(fd[1], STDOUT_FILENO);
    close(fd[0]), close(fd[1]);
    execvp(argv[0], argv);
    fprintf(stderr, "accuracy: cannot run %s\n", argv[0]);
    _exit(127);
  }
  close(fd[1]);
  size_t n = 0, cap = 4096;
  char *buf = malloc(cap);
  ssize_t got;
  while (buf && (got = read(fd[0], buf + n, cap - n - 1)) > 0) {
    n += (size_t)got;
    if (cap - n < 1024) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (buf) buf[n] = 0;
  *out = buf;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The last line of s that parses as a JSON object. */
static cJSON *last_json(const char *s) {
  cJSON *found = NULL;
  const char *line = s;
  while (line && *line) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    if (len && line[0] == '{') {
      char *l = strndup(line, len);
      cJSON *j = l ? cJSON_Parse(l) : NULL;
      free(l);
      if (j) cJSON_Delete(found), found = j;
    }
    line = nl ? nl + 1 : NULL;
  }
  return found;
}

static double num(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void torch_help(const char *python) {
  fprintf(stderr, "accuracy: the PyTorch reference could not run with %s. To get PyTorch:\n"
                  "  python3 -m venv /work/venv && /work/venv/bin/pip install torch numpy   (then ML_TORCH_PYTHON=/work/venv/bin/python)\n"
                  "  or: apt-get install python3-torch python3-numpy libopenblas0\n",
          python);
}

/* Runs bench/accuracy_torch.py with extra arguments; exits 1 when it fails. */
static cJSON *run_torch(const char *python, const char *script, const char *a1, const char *a2) {
  char *argv[] = {(char *)python, (char *)script, (char *)a1, (char *)a2, NULL};
  char *out;
  int rc = run_capture(argv, &out);
  cJSON *j = rc == 0 && out ? last_json(out) : NULL;
  free(out);
  if (!j) {
    fprintf(stderr, "accuracy: the PyTorch side failed (exit status %d)\n", rc);
    if (rc == 127 || rc == 3) torch_help(python); /* 3: the script could not import torch or numpy */
    if (strcmp(a1, "--probe")) fprintf(stderr, "accuracy: exchange files left in %s\n", a1);
    exit(1);
  }
  return j;
}

/* ---- the first-iteration check ---- */
/* Compares metalearn's meta-gradient (Adam's first moment / (1 - beta1) after one step from zero
 * state) and updated parameters with the tensors the PyTorch side wrote. The parameter comparison
 * alone would be weak: Adam's first step is lr * g / (|g| + eps), about lr * sign(g).
 * A conv bias followed by batch-norm has a zero true gradient (the normalization removes any
 * per-channel shift), so both sides hold rounding noise there, whose sign moves the bias by +-lr
 * in the first Adam step: those tensors are reported apart. */
static bool check_first(ml_algo *algo, const float *init, const char *dir) {
  const ml_model *m = ml_algo_model(algo);
  const ml_params *p = m->params;
  const ml_optim *opt = ml_algo_optim(algo);
  float c1 = 1.0f - opt->cfg.beta1;
  char path[ML_PATH_MAX + 64], key[ML_PARAM_NAME_MAX + 16];
  path_in(path, sizeof path, dir, "check_torch.safetensors");
  ml_safetensors *s;
  if (ml_safetensors_open(path, &s)) die(1, "reading the PyTorch check file");
  double gmax = 0, dg2 = 0, g2 = 0, gdiff = 0, pdiff = 0, step = 0, worst = 0, noise_ml = 0, noise_pt = 0;
  const char *worst_name = "";
  for (int64_t i = 0; i < p->count; i++) {
    const ml_param *q = &p->items[i];
    int64_t n = q->value.numel;
    bool zero = m->conv.batch_norm && !strncmp(q->name, "conv", 4) && strstr(q->name, ".bias");
    float *tg = malloc((size_t)n * sizeof(float)), *tp = malloc((size_t)n * sizeof(float));
    snprintf(key, sizeof key, "grad.%s", q->name);
    int64_t kg = ml_safetensors_find(s, key);
    snprintf(key, sizeof key, "param.%s", q->name);
    int64_t kp = ml_safetensors_find(s, key);
    if (!tg || !tp || kg < 0 || kp < 0 || ml_safetensors_read_f32(s, kg, tg) || ml_safetensors_read_f32(s, kp, tp))
      die(1, "the PyTorch check file lacks a tensor");
    double t_d2 = 0, t_g2 = 0;
    for (int64_t k = 0; k < n; k++) {
      double g = (double)opt->m[q->offset + k] / (double)c1, d = fabs(g - (double)tg[k]);
      double dp = fabs((double)q->value.data[k] - (double)tp[k]);
      if (zero) {
        noise_ml = fmax(noise_ml, fabs(g)), noise_pt = fmax(noise_pt, fabs((double)tg[k]));
        continue;
      }
      t_d2 += d * d, t_g2 += (double)tg[k] * tg[k];
      gmax = fmax(gmax, fabs((double)tg[k])), gdiff = fmax(gdiff, d), pdiff = fmax(pdiff, dp);
      step = fmax(step, fabs((double)q->value.data[k] - (double)init[q->offset + k]));
    }
    dg2 += t_d2, g2 += t_g2;
    if (!zero && sqrt(t_d2 / (t_g2 > 0 ? t_g2 : 1)) > worst) worst = sqrt(t_d2 / (t_g2 > 0 ? t_g2 : 1)), worst_name = q->name;
    free(tg), free(tp);
  }
  ml_safetensors_close(s);
  double rel = sqrt(dg2 / (g2 > 0 ? g2 : 1));
  printf("\nfirst meta-iteration, same weights and episodes on both sides:\n");
  printf("  meta-gradient: relative L2 difference %.3g (worst tensor %s: %.3g), max abs difference %.3g, "
         "max |g| %.3g\n", rel, worst_name, worst, gdiff, gmax);
  printf("  conv biases before batch-norm (true gradient 0): max |g| metalearn %.3g, PyTorch %.3g (rounding noise)\n",
         noise_ml, noise_pt);
  printf("  parameters after the first Adam step (conv biases aside): max abs difference %.3g; largest step %.3g\n",
         pdiff, step);
  /* float32 on both sides with different summation orders: 1e-4 leaves room for rounding but not
   * for a missing term (first-order MAML's gradient differs from this one by about 100% at the
   * initial weights) */
  bool ok = rel < 1e-4;
  printf("verdict: %s: meta-gradients %s (relative difference %.3g %s 1e-4)\n", ok ? "PASS" : "FAIL",
         ok ? "agree" : "DISAGREE", rel, ok ? "<" : ">=");
  return ok;
}

/* ---- main ---- */
static void remove_dir(const char *dir) {
  static const char *files[] = {"pixels.u8",     "init.safetensors", "setup.json",    "check_x.safetensors",
                                "train_src.i32", "train_rot.i32",    "train_lab.i32", "test_src.i32",
                                "test_rot.i32",  "test_lab.i32",     "check_torch.safetensors"};
  char p[ML_PATH_MAX + 64];
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    path_in(p, sizeof p, dir, files[i]);
    unlink(p);
  }
  rmdir(dir);
}

static double mean_last(const double *x, int64_t n, int64_t k) {
  double s = 0;
  int64_t from = n > k ? n - k : 0;
  for (int64_t i = from; i < n; i++) s += x[i];
  return s / (double)(n - from);
}

int main(int argc, char **argv) {
  bench b;
  memset(&b, 0, sizeof b);
  b.o = parse_options(argc, argv);
  /* The check compares gradients, so it wants the same max-pool argmax as PyTorch where pooled
   * values tie (Omniglot's blank regions): Winograd's rounding breaks such ties differently
   * (ml_conv_use_winograd). Training for accuracy keeps the default kernels. */
  if (b.o.check_first) ml_conv_use_winograd(false);
  setvbuf(stdout, NULL, _IOLBF, 0); /* the report interleaves with the progress lines on stderr */
  char root[ML_PATH_MAX], data[ML_PATH_MAX], script[ML_PATH_MAX + 64], python[ML_PATH_MAX];
  repo_root(root, sizeof root);
  if (b.o.data && *b.o.data) fit(snprintf(data, sizeof data, "%s", b.o.data), sizeof data);
  else fit(snprintf(data, sizeof data, "%s/../shared/data", root), sizeof data);
  snprintf(script, sizeof script, "%s/bench/accuracy_torch.py", root);
  if (b.o.python && *b.o.python) fit(snprintf(python, sizeof python, "%s", b.o.python), sizeof python);
  else snprintf(python, sizeof python, "%s", exists("/work/venv/bin/python") ? "/work/venv/bin/python" : "/usr/bin/python3");

  /* before spending minutes on metalearn, make sure the reference can run at all */
  cJSON *probe = run_torch(python, script, "--probe", NULL);
  const cJSON *tv = cJSON_GetObjectItemCaseSensitive(probe, "torch_version");
  char torch_version[64];
  snprintf(torch_version, sizeof torch_version, "%s", cJSON_IsString(tv) ? tv->valuestring : "?");
  cJSON_Delete(probe);

  /* the CLI's configuration, resolved by the library itself */
  ml_fewshot_config cfg = ml_fewshot_defaults();
  snprintf(cfg.dataset, sizeof cfg.dataset, "omniglot-small");
  snprintf(cfg.algo, sizeof cfg.algo, "maml");
  snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", data);
  cfg.iterations = b.o.iterations, cfg.meta_batch = b.o.meta_batch, cfg.eval_episodes = b.o.episodes;
  cfg.seed = b.o.seed, cfg.threads = b.o.threads;
  ml_fewshot *f;
  if (ml_fewshot_open(&cfg, &f)) die(2, "opening the session");
  b.cfg = *ml_fewshot_config_of(f);
  ml_algo *algo = ml_fewshot_algo(f);
  ml_model *model = ml_algo_model(algo);
  ml_fewshot_data(f, &b.ds, &b.train, &b.test);
  printf("metalearn %s vs PyTorch %s (%s), %lld threads each\n", ml_version(), torch_version, python,
         (long long)b.o.threads);
  printf("MAML second order, omniglot-small (test: %s), %lld-way %lld-shot, %lld+%lld query/class, meta-batch %lld,\n"
         "inner lr %g (%lld step train, %lld test: the MAML paper's Omniglot setting), Adam %g, %lld iterations, "
         "%lld test episodes, seed %lld\n",
         b.cfg.test_groups, (long long)b.cfg.n_way, (long long)b.cfg.k_shot, (long long)b.cfg.q_query,
         (long long)b.cfg.q_query_test, (long long)b.cfg.meta_batch, b.cfg.inner_lr, (long long)b.cfg.inner_steps,
         (long long)b.cfg.inner_steps_test, b.cfg.meta_lr, (long long)b.o.iterations, (long long)b.o.episodes,
         (long long)b.cfg.seed);
  printf("data: %lld images, %lld training classes (with rotations), %lld test classes\n",
         (long long)b.ds->n_images, (long long)b.train->n_classes, (long long)b.test->n_classes);

  /* exchange files */
  char dir[ML_PATH_MAX];
  bool own_dir = !b.o.workdir;
  if (own_dir) {
    const char *tmp = getenv("TMPDIR");
    fit(snprintf(dir, sizeof dir, "%s/ml-accuracy-XXXXXX", tmp && *tmp ? tmp : "/tmp"), sizeof dir);
    if (!mkdtemp(dir)) die(2, "cannot create a temporary directory");
  } else {
    fit(snprintf(dir, sizeof dir, "%s", b.o.workdir), sizeof dir);
    mkdir(dir, 0755);
  }
  write_raw(dir, "pixels.u8", b.ds->pixels, (size_t)(b.ds->n_images * b.ds->channels * b.ds->height * b.ds->width));
  char p[ML_PATH_MAX + 64];
  path_in(p, sizeof p, dir, "init.safetensors");
  ml_kv meta[] = {{"made_by", "bench/accuracy"}};
  if (ml_checkpoint_save(p, model->params, NULL, meta, 1)) die(2, "writing the initial parameters");
  float *init = malloc((size_t)model->params->numel * sizeof(float));
  if (!init) die(1, "out of memory");
  memcpy(init, model->params->data, (size_t)model->params->numel * sizeof(float));
  export_episodes(&b, dir);
  write_setup(&b, algo, dir);

  /* metalearn */
  int64_t I = b.o.iterations;
  double *lq = calloc((size_t)I, sizeof(double)), *aq = calloc((size_t)I, sizeof(double));
  double *scores = calloc((size_t)b.o.episodes + 1, sizeof(double));
  if (!lq || !aq || !scores) die(1, "out of memory");
  int64_t every = I / 10 > 0 ? I / 10 : 1;
  double t0 = ml_now();
  for (int64_t it = 0; it < I; it++) {
    ml_step_stats s;
    if (ml_algo_train_step(algo, train_task, &b, it, &s)) die(2, "metalearn training");
    lq[it] = s.loss_query, aq[it] = s.acc_query;
    if ((it + 1) % every == 0 || it + 1 == I)
      fprintf(stderr, "metalearn: iteration %lld/%lld  loss %.4f  acc %.3f  %.1f s\n", (long long)it + 1,
              (long long)I, s.loss_query, s.acc_query, ml_now() - t0);
  }
  side_result ml = {.train_s = ml_now() - t0, .loss_first = lq[0], .loss_last = lq[I - 1],
                    .loss_last10 = mean_last(lq, I, 10), .acc_last10 = mean_last(aq, I, 10)};
  if (b.o.episodes > 0) {
    t0 = ml_now();
    if (ml_algo_evaluate(algo, test_task, &b, 0, b.o.episodes, scores)) die(2, "metalearn evaluation");
    ml.eval_s = ml_now() - t0;
    ml_mean_ci95(scores, b.o.episodes, &ml.acc, &ml.ci95);
    fprintf(stderr, "metalearn: test accuracy %.2f%% +- %.2f%% (%.1f s)\n", 100 * ml.acc, 100 * ml.ci95, ml.eval_s);
  }
  int64_t bad = 0;
  for (int64_t r = 0; r < I * b.cfg.meta_batch; r++) bad += !b.tr_ok[r];
  for (int64_t e = 0; e < b.o.episodes; e++) bad += !b.te_ok[e];
  if (bad) {
    fprintf(stderr, "accuracy: %lld episodes differ from the exported ones (sampler not deterministic?)\n",
            (long long)bad);
    return 2;
  }

  /* PyTorch */
  cJSON *tj = run_torch(python, script, dir, b.o.check_first ? "--check-first" : NULL);
  side_result pt = {.acc = num(tj, "acc"), .ci95 = num(tj, "ci95"), .train_s = num(tj, "train_seconds"),
                    .eval_s = num(tj, "eval_seconds"), .loss_first = num(tj, "loss_first"),
                    .loss_last = num(tj, "loss_last"), .loss_last10 = num(tj, "loss_last10"),
                    .acc_last10 = num(tj, "acc_last10")};
  snprintf(pt.version, sizeof pt.version, "PyTorch %s", torch_version);
  snprintf(ml.version, sizeof ml.version, "metalearn %s", ml_version());
  if (num(tj, "threads") != (double)b.o.threads) {
    fprintf(stderr, "accuracy: the PyTorch side ran with %g threads, not %lld\n", num(tj, "threads"),
            (long long)b.o.threads);
    return 1;
  }
  cJSON_Delete(tj);

  /* report */
  printf("\n%-22s %-22s %12s %10s %10s\n", "implementation", "test accuracy (95% CI)", "train wall s", "eval wall s",
         "s/iter");
  const side_result *rows[2] = {&ml, &pt};
  for (int k = 0; k < 2; k++) {
    char acc[32];
    if (b.o.episodes > 0) snprintf(acc, sizeof acc, "%.2f%% +- %.2f%%", 100 * rows[k]->acc, 100 * rows[k]->ci95);
    else snprintf(acc, sizeof acc, "-");
    printf("%-22s %-22s %12.1f %10.1f %10.3f\n", rows[k]->version, acc, rows[k]->train_s, rows[k]->eval_s,
           rows[k]->train_s / (double)I);
  }
  printf("\ntrain query loss, iteration 1 (same weights, same tasks): metalearn %.6f, PyTorch %.6f (difference %.2g)\n",
         ml.loss_first, pt.loss_first, fabs(ml.loss_first - pt.loss_first));
  printf("train query loss, iteration %lld: metalearn %.4f, PyTorch %.4f; mean of the last 10: %.4f, %.4f\n",
         (long long)I, ml.loss_last, pt.loss_last, ml.loss_last10, pt.loss_last10);
  printf("train query accuracy, mean of the last 10 iterations: metalearn %.3f, PyTorch %.3f\n", ml.acc_last10,
         pt.acc_last10);
  if (b.o.check_first) {
    check_first(algo, init, dir);
  } else {
    double lo = pt.acc - pt.ci95, hi = pt.acc + pt.ci95;
    bool pass = ml.acc >= lo;
    printf("verdict: %s: metalearn %.2f%% is %s PyTorch's 95%% CI [%.2f%%, %.2f%%]\n", pass ? "PASS" : "FAIL",
           100 * ml.acc, ml.acc > hi ? "above" : pass ? "within" : "BELOW", 100 * lo, 100 * hi);
  }
  if (own_dir && !b.o.keep) remove_dir(dir);
  else printf("exchange files kept in %s\n", dir);
  free(init), free(lq), free(aq), free(scores);
  free(b.tr_src), free(b.tr_rot), free(b.tr_lab), free(b.te_src), free(b.te_rot), free(b.te_lab);
  free(b.tr_ok), free(b.te_ok);
  ml_fewshot_close(f);
  return 0;
}
