/* bench/vs_pytorch: metalearn against PyTorch, side by side, same machine, same invocation.
 *
 * Six configurations (Conv4, 64 filters, 28x28 single-channel images, batch-norm with batch
 * statistics; bench/vs_pytorch.py has the PyTorch side and lists them), each timed at 2 threads
 * and at 1 thread. For every (configuration, threads) the driver alternates runs: metalearn, then
 * each PyTorch variant, repeated --reps times; every run is a fresh process that does --warmup
 * untimed units and then --iters timed units. It prints, per configuration, the median seconds
 * per unit of each side, the ratio (fastest PyTorch variant) / metalearn, the peak RSS of each
 * process (wait4's ru_maxrss) and, for metalearn, the heap allocations and minor page faults
 * during the timed (steady-state) units.
 *
 * PyTorch variants: every interpreter in --python (comma-separated; default: /usr/bin/python3
 * with Debian's torch, and /work/venv/bin/python if present), each run as shipped and with
 * jemalloc preloaded (LD_PRELOAD=libjemalloc.so.2, MALLOC_CONF with decay disabled: freed pages
 * stay mapped, so PyTorch's per-iteration tensors stop faulting pages in).
 *
 *   vs_pytorch [--configs 1,2,3,4,5,6] [--threads 2,1] [--reps 3] [--warmup 2] [--iters N]
 *              [--python EXE,EXE] [--no-jemalloc] [--json FILE]
 *   vs_pytorch --worker --config N --threads T [--warmup W] [--iters M]   (one metalearn run)
 * Exit 0 after printing the table, 1 if a side failed, 2 on bad usage. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metalearn/algos.h"
#include "metalearn/kernels.h"

/* ---- heap allocation counter: every malloc of the process (OpenBLAS's included) ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static atomic_long n_allocs;
void *malloc(size_t n) {
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  void *p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return __libc_memalign(align, n);
}

typedef struct {
  const char *name, *unit;
  ml_algo_kind kind;
  int64_t way, shot, query, meta_batch, steps;
  float lr;
} bench_config;

static const bench_config CONFIGS[] = {
    {"MAML 2nd order, 5w1s q15, batch 32, 1 step", "meta-iteration", ML_ALGO_MAML, 5, 1, 15, 32, 1, 0.4f},
    {"first-order MAML, 5w1s q15, batch 32, 1 step", "meta-iteration", ML_ALGO_FOMAML, 5, 1, 15, 32, 1, 0.4f},
    {"MAML 2nd order, 20w1s q15, batch 16, 5 steps", "meta-iteration", ML_ALGO_MAML, 20, 1, 15, 16, 5, 0.1f},
    {"ProtoNet train episode, 60w5s q5", "episode", ML_ALGO_PROTONET, 60, 5, 5, 1, 0, 0},
    {"ProtoNet eval episode, 5w1s q15", "episode", ML_ALGO_PROTONET, 5, 1, 15, 1, 0, 0},
    {"Reptile 5w5s, 5 Adam steps of 10, batch 5", "meta-iteration", ML_ALGO_REPTILE, 5, 5, 0, 5, 5, 1e-3f},
};
#define NCONFIGS 6
/* Default timed units per run, so each run takes a few seconds. */
static const int DEFAULT_ITERS[NCONFIGS] = {4, 6, 2, 10, 60, 20};

/* ---- metalearn side ---- */

typedef struct {
  int64_t way, shot, query;
} task_shape;

/* Synthetic binary images keyed by (iteration, task index): the arithmetic of real Omniglot
 * episodes without needing the data. Eight distinct episodes are cycled, like the PyTorch side. */
static ml_status synth_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  const task_shape *s = ctx;
  ml_rng r;
  ml_rng_init(&r, 1, ml_rng_key((uint64_t)(it * 131 + idx) % 8, 0, 7));
  int64_t ns = s->way * s->shot, nq = s->way * s->query, px = 28 * 28;
  memset(ep, 0, sizeof *ep);
  ep->n_way = s->way, ep->k_shot = s->shot, ep->q_query = s->query, ep->n_s = ns, ep->n_q = nq;
  ep->xs = ml_tensor_new(ar, 4, (int64_t[]){ns, 1, 28, 28});
  ep->ys = ml_arena_alloc(ar, (size_t)ns * 4), ep->gys = ml_arena_alloc(ar, (size_t)ns * 4);
  if (nq) {
    ep->xq = ml_tensor_new(ar, 4, (int64_t[]){nq, 1, 28, 28});
    ep->yq = ml_arena_alloc(ar, (size_t)nq * 4), ep->gyq = ml_arena_alloc(ar, (size_t)nq * 4);
    if (!ep->xq.data || !ep->yq || !ep->gyq) return ML_ERR_NOMEM;
  }
  if (!ep->xs.data || !ep->ys || !ep->gys) return ML_ERR_NOMEM;
  for (int64_t i = 0; i < ns + nq; i++) {
    bool sup = i < ns;
    int64_t j = sup ? i : i - ns, c = sup ? j / s->shot : j / s->query;
    float *x = (sup ? ep->xs.data : ep->xq.data) + j * px;
    for (int64_t k = 0; k < px; k++) x[k] = ml_rng_uniform(&r) < 0.1f + 0.05f * (float)(c % 16) ? 1.0f : 0.0f;
    (sup ? ep->ys : ep->yq)[j] = (int32_t)c;
    (sup ? ep->gys : ep->gyq)[j] = (int32_t)c;
  }
  return ML_OK;
}

static int worker(int cfg_index, int threads, int warmup, int iters) {
  const bench_config *bc = &CONFIGS[cfg_index];
  task_shape shape = {bc->way, bc->shot, bc->query};
  ml_conv4_config cc = ml_conv4_defaults();
  bool proto = bc->kind == ML_ALGO_PROTONET;
  cc.n_out = proto ? 0 : bc->way;
  ml_model *m;
  ml_algo *a;
  if (ml_conv4_new(&cc, 1, &m)) goto fail;
  ml_algo_config c = ml_algo_defaults(bc->kind);
  c.meta_batch = bc->meta_batch, c.threads = threads;
  if (bc->steps) c.inner_steps = bc->steps;
  if (bc->lr > 0) c.inner_lr = bc->lr;
  if (bc->kind == ML_ALGO_REPTILE) c.reptile_inner_batch = 10, c.reptile_inner_sgd = false;
  if (ml_algo_new(&c, m, &a)) goto fail;
  bool eval = cfg_index == 4;
  /* Evaluation: a block of episodes per unit through ml_algo_evaluate (the tasks of a test run
   * are independent, so they run in parallel like a meta-batch); the unit is one episode. */
  enum { EVAL_BLOCK = 16 };
  double scores[EVAL_BLOCK];
  long allocs0 = 0, flt0 = 0;
  double *times = calloc((size_t)iters, sizeof(double));
  if (!times) goto fail;
  struct rusage ru;
  for (int it = 0; it < warmup + iters; it++) {
    if (it == warmup) {
      getrusage(RUSAGE_SELF, &ru);
      flt0 = ru.ru_minflt;
      allocs0 = atomic_load(&n_allocs);
    }
    double t = ml_now();
    ml_status st = eval ? ml_algo_evaluate(a, synth_task, &shape, it, EVAL_BLOCK, scores)
                        : ml_algo_train_step(a, synth_task, &shape, it, NULL);
    if (st) goto fail;
    if (it >= warmup) times[it - warmup] = (ml_now() - t) / (eval ? EVAL_BLOCK : 1);
  }
  long allocs = atomic_load(&n_allocs) - allocs0;
  getrusage(RUSAGE_SELF, &ru);
  size_t reserved, peak_task;
  ml_algo_memory(a, &reserved, &peak_task);
  printf("{\"side\": \"metalearn\", \"version\": \"%s\", \"config\": %d, \"threads\": %d, \"times\": [", ml_version(),
         cfg_index + 1, threads);
  for (int i = 0; i < iters; i++) printf("%s%.6f", i ? ", " : "", times[i]);
  printf("], \"maxrss_kb\": %ld, \"minflt_steady\": %ld, \"allocs_steady\": %ld, \"arena_reserved_mb\": %.1f, "
         "\"arena_peak_task_mb\": %.1f}\n",
         ru.ru_maxrss, ru.ru_minflt - flt0, allocs, (double)reserved / 1048576.0, (double)peak_task / 1048576.0);
  free(times);
  ml_algo_free(a);
  ml_model_free(m);
  return 0;
fail:
  fprintf(stderr, "vs_pytorch worker: %s\n", ml_last_error());
  return 1;
}

/* ---- driver ---- */

typedef struct {
  char label[160];
  char python[256]; /* "" = metalearn */
  bool jemalloc;
} side;

typedef struct {
  double median;
  long maxrss_kb, minflt, allocs;
  char version[32];
  bool ok;
} run_result;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs argv with env additions, captures stdout (one JSON line), returns the child's rusage. */
static bool run_child(char *const argv[], const char *preload, char *out, size_t cap, struct rusage *ru) {
  int fd[2];
  if (pipe(fd)) return false;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    if (preload) {
      setenv("LD_PRELOAD", preload, 1);
      setenv("MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1", 1);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t k;
  while ((k = read(fd[0], out + n, cap - 1 - n)) > 0 && n + 1 < cap) n += (size_t)k;
  out[n] = 0;
  close(fd[0]);
  int status;
  if (wait4(pid, &status, 0, ru) < 0) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void parse_result(const char *text, const struct rusage *ru, double *samples, int *ns, run_result *r) {
  const char *line = strrchr(text, '{');
  cJSON *j = line ? cJSON_Parse(line) : NULL;
  cJSON *t = j ? cJSON_GetObjectItem(j, "times") : NULL;
  if (!cJSON_IsArray(t)) {
    cJSON_Delete(j);
    return;
  }
  cJSON *e;
  cJSON_ArrayForEach(e, t) samples[(*ns)++] = e->valuedouble;
  cJSON *v = cJSON_GetObjectItem(j, "version");
  if (cJSON_IsString(v)) snprintf(r->version, sizeof r->version, "%s", v->valuestring);
  cJSON *f = cJSON_GetObjectItem(j, "minflt_steady"), *al = cJSON_GetObjectItem(j, "allocs_steady");
  long flt = cJSON_IsNumber(f) ? (long)f->valuedouble : -1, alc = cJSON_IsNumber(al) ? (long)al->valuedouble : -1;
  if (flt > r->minflt) r->minflt = flt;
  if (alc > r->allocs) r->allocs = alc;
  if (ru->ru_maxrss > r->maxrss_kb) r->maxrss_kb = ru->ru_maxrss;
  r->ok = true;
  cJSON_Delete(j);
}

static int parse_list(const char *s, int *out, int max) {
  int n = 0;
  for (const char *p = s; *p && n < max;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p) return -1;
    out[n++] = (int)v;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return n;
}

static const char *find_jemalloc(void) {
  static const char *paths[] = {"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                                "/usr/lib/libjemalloc.so.2"};
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
    if (access(paths[i], R_OK) == 0) return paths[i];
  return NULL;
}

static void format_rss(long kb, char *buf, size_t cap) {
  if (kb < 0) snprintf(buf, cap, "-");
  else snprintf(buf, cap, "%.0f MB", (double)kb / 1024.0);
}

int main(int argc, char **argv) {
  int configs[NCONFIGS] = {1, 2, 3, 4, 5, 6}, nconfigs = NCONFIGS;
  int threads[4] = {2, 1}, nthreads = 2;
  int reps = 3, warmup = 2, iters = 0, one_config = 0, one_threads = 1;
  bool is_worker = false, jemalloc = true;
  const char *python = NULL, *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--worker")) {
      is_worker = true;
      continue;
    }
    if (!strcmp(o, "--no-jemalloc")) {
      jemalloc = false;
      continue;
    }
    if (!v) {
      fprintf(stderr, "vs_pytorch: unknown option or missing value: %s\n", o);
      return 2;
    }
    i++;
    if (!strcmp(o, "--configs")) nconfigs = parse_list(v, configs, NCONFIGS);
    else if (!strcmp(o, "--threads")) nthreads = parse_list(v, threads, 4);
    else if (!strcmp(o, "--config")) one_config = atoi(v);
    else if (!strcmp(o, "--reps")) reps = atoi(v);
    else if (!strcmp(o, "--warmup")) warmup = atoi(v);
    else if (!strcmp(o, "--iters")) iters = atoi(v);
    else if (!strcmp(o, "--python")) python = v;
    else if (!strcmp(o, "--json")) json_path = v;
    else {
      fprintf(stderr, "vs_pytorch: unknown option %s\n", o);
      return 2;
    }
    if (!strcmp(o, "--threads") && nthreads == 1) one_threads = threads[0];
  }
  bool bad = nconfigs < 1 || nthreads < 1 || reps < 1 || warmup < 0 || iters < 0;
  for (int i = 0; i < nconfigs && !bad; i++) bad = configs[i] < 1 || configs[i] > NCONFIGS;
  for (int i = 0; i < nthreads && !bad; i++) bad = threads[i] < 1;
  if (is_worker) bad = bad || one_config < 1 || one_config > NCONFIGS;
  if (bad) {
    fprintf(stderr, "vs_pytorch: bad option value (configs 1-%d, threads >= 1, reps >= 1)\n", NCONFIGS);
    return 2;
  }
  if (is_worker) return worker(one_config - 1, one_threads, warmup, iters ? iters : DEFAULT_ITERS[one_config - 1]);

  /* sides: metalearn, then each python x {stock, jemalloc} */
  side sides[9];
  int nsides = 0;
  snprintf(sides[nsides++].label, sizeof sides[0].label, "metalearn");
  sides[0].python[0] = 0;
  char pylist[1024];
  if (python) snprintf(pylist, sizeof pylist, "%s", python);
  else snprintf(pylist, sizeof pylist, "/usr/bin/python3%s", access("/work/venv/bin/python", X_OK) ? "" : ",/work/venv/bin/python");
  const char *jem = jemalloc ? find_jemalloc() : NULL;
  if (jemalloc && !jem) fprintf(stderr, "vs_pytorch: libjemalloc.so.2 not found (apt-get install libjemalloc2): stock allocator only\n");
  char script[4096];
  {
    /* next to this source file (CMake compiles it by absolute path); ML_BENCH_DIR overrides */
    const char *dir = getenv("ML_BENCH_DIR");
    if (dir) snprintf(script, sizeof script, "%s/vs_pytorch.py", dir);
    else {
      snprintf(script, sizeof script, "%s", __FILE__);
      char *slash = strrchr(script, '/');
      snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0), "vs_pytorch.py");
    }
  }
  for (char *tok = strtok(pylist, ","); tok && nsides < 9; tok = strtok(NULL, ",")) {
    for (int j = 0; j < (jem ? 2 : 1); j++) {
      side *s = &sides[nsides++];
      snprintf(s->python, sizeof s->python, "%s", tok);
      s->jemalloc = j == 1;
      snprintf(s->label, sizeof s->label, "%s%s", tok, j ? " +jemalloc" : "");
    }
  }
  char self[4096];
  ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
  self[sn > 0 ? sn : 0] = 0;

  int failures = 0;
  FILE *jf = json_path ? fopen(json_path, "w") : NULL;
  const char *core = getenv("OPENBLAS_CORETYPE");
  printf("# metalearn %s vs PyTorch: median seconds per unit (runs alternate; %d reps x %s timed units after %d warm-up)\n",
         ml_version(), reps, iters ? "N" : "default", warmup);
  printf("# metalearn: simd %s, gemm %s; OPENBLAS_CORETYPE=%s; %ld online CPUs\n", ml_simd_name(ml_cpu_simd()),
         ml_gemm_backend(), core ? core : "(unset)", sysconf(_SC_NPROCESSORS_ONLN));
  for (int ti = 0; ti < nthreads; ti++) {
    for (int ci = 0; ci < nconfigs; ci++) {
      int cfg = configs[ci];
      int n_it = iters ? iters : DEFAULT_ITERS[cfg - 1];
      run_result res[9];
      double *samples[9];
      int nsamp[9] = {0};
      memset(res, 0, sizeof res);
      for (int s = 0; s < nsides; s++) {
        samples[s] = calloc((size_t)(reps * n_it), sizeof(double));
        res[s].minflt = res[s].allocs = -1;
      }
      char cs[16], ts[16], ws[16], is[16], out[1 << 16];
      snprintf(cs, sizeof cs, "%d", cfg), snprintf(ts, sizeof ts, "%d", threads[ti]);
      snprintf(ws, sizeof ws, "%d", warmup), snprintf(is, sizeof is, "%d", n_it);
      for (int r = 0; r < reps; r++) {
        for (int s = 0; s < nsides; s++) {
          struct rusage ru;
          bool ok;
          if (!sides[s].python[0]) {
            char *av[] = {self, "--worker", "--config", cs, "--threads", ts, "--warmup", ws, "--iters", is, NULL};
            ok = run_child(av, NULL, out, sizeof out, &ru);
          } else {
            char *av[] = {sides[s].python, script, "--config", cs, "--threads", ts, "--warmup", ws, "--iters", is, NULL};
            ok = run_child(av, sides[s].jemalloc ? jem : NULL, out, sizeof out, &ru);
          }
          if (ok) parse_result(out, &ru, samples[s], &nsamp[s], &res[s]);
          else if (r == 0) fprintf(stderr, "vs_pytorch: %s failed on configuration %d\n", sides[s].label, cfg);
        }
      }
      printf("\n## %d. %s, %d thread%s (s / %s)\n", cfg, CONFIGS[cfg - 1].name, threads[ti], threads[ti] > 1 ? "s" : "",
             CONFIGS[cfg - 1].unit);
      printf("| side | median s | PyTorch / metalearn | peak RSS | steady-state page faults | steady-state mallocs |\n|---|---|---|---|---|---|\n");
      double best_torch = 0;
      long best_torch_rss = 0;
      for (int s = 0; s < nsides; s++) {
        if (!res[s].ok || !nsamp[s]) {
          if (s == 0) failures++;
          continue;
        }
        qsort(samples[s], (size_t)nsamp[s], sizeof(double), cmp_double);
        res[s].median = nsamp[s] % 2 ? samples[s][nsamp[s] / 2]
                                     : 0.5 * (samples[s][nsamp[s] / 2 - 1] + samples[s][nsamp[s] / 2]);
        if (s > 0 && (best_torch == 0 || res[s].median < best_torch)) best_torch = res[s].median, best_torch_rss = res[s].maxrss_kb;
      }
      for (int s = 0; s < nsides; s++) {
        if (!res[s].ok) {
          printf("| %s | failed | | | | |\n", sides[s].label);
          continue;
        }
        char rss[32], ratio[32] = "", flt[32] = "-", alc[32] = "-";
        format_rss(res[s].maxrss_kb, rss, sizeof rss);
        if (res[0].ok && res[0].median > 0) snprintf(ratio, sizeof ratio, "%.2fx", res[s].median / res[0].median);
        if (res[s].minflt >= 0) snprintf(flt, sizeof flt, "%ld", res[s].minflt);
        if (res[s].allocs >= 0) snprintf(alc, sizeof alc, "%ld", res[s].allocs);
        printf("| %s %s | %.4f | %s | %s | %s | %s |\n", sides[s].label, res[s].version, res[s].median, s ? ratio : "1",
               rss, flt, alc);
      }
      if (res[0].ok && best_torch > 0) {
        printf("ratio vs the faster PyTorch: %.2fx speed, %.1fx less peak RSS\n", best_torch / res[0].median,
               (double)best_torch_rss / (double)res[0].maxrss_kb);
        if (jf)
          fprintf(jf, "{\"config\": %d, \"threads\": %d, \"metalearn_s\": %.6f, \"torch_best_s\": %.6f, \"speedup\": %.3f, "
                      "\"metalearn_rss_kb\": %ld, \"torch_best_rss_kb\": %ld, \"metalearn_minflt\": %ld, \"metalearn_allocs\": %ld}\n",
                  cfg, threads[ti], res[0].median, best_torch, best_torch / res[0].median, res[0].maxrss_kb, best_torch_rss,
                  res[0].minflt, res[0].allocs);
      }
      fflush(stdout);
      for (int s = 0; s < nsides; s++) free(samples[s]);
    }
  }
  if (jf) fclose(jf);
  return failures ? 1 : 0;
}
