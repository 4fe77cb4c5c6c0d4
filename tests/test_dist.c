/* src/dist: meta-training over MPI ranks. One-rank worlds (no launcher, or no MPI in the build)
 * behave as the plain algorithm. When MPI is built in and mpirun is found, this program re-runs
 * itself under `mpirun --allow-run-as-root --oversubscribe -np R` as the ranks (ML_DIST_WORKER=1:
 * a sinusoid MAML run through ml_algo + ml_dist) and checks that every rank ends with parameters
 * and evaluation scores bit-identical to one process, for R = 2 and 4 and 1 or 2 threads per
 * rank; that a rank killed mid-training ends the job within seconds naming the rank; that a rank
 * that hangs is reported by the deadline. The command-line runs (train, resume with another R,
 * a rank killed from outside, ranks in two network namespaces) follow. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "metalearn/dist.h"
#include "metalearn/eval.h"
#include "metalearn/io.h"
#include "metalearn/nn.h"
#include "metalearn/tasks.h"

enum { B = 8, EVAL_N = 13, ITERS = 6 };

static ml_status sine_src(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  (void)ctx;
  return ml_sinusoid_sample(NULL, 5, 5, 11, (uint64_t)it, (uint64_t)idx, ar, ep, NULL, NULL);
}

static int64_t env_int(const char *name, int64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? atoll(v) : dflt;
}

/* Trains ITERS iterations and evaluates EVAL_N episodes; params (numel floats) and scores are
 * malloc'd for the caller. With `die` = "rank:iteration:kill|hang" that rank dies or hangs. */
static ml_status train_run(ml_dist *d, int threads, const char *die, float **params, int64_t *numel, double **scores) {
  ml_mlp_config mc = {.n_layers = 3, .sizes = {1, 40, 40, 1}, .act = ML_ACT_RELU};
  ml_model *m;
  ml_status st = ml_mlp_new(&mc, 3, &m);
  if (st) return st;
  ml_algo_config c = ml_algo_defaults(ML_ALGO_MAML);
  c.task = ML_TASK_REGRESS, c.meta_batch = B, c.threads = threads, c.inner_lr = 0.01f, c.inner_steps_test = 3;
  ml_algo *a = NULL;
  st = ml_algo_new(&c, m, &a);
  if (!st) st = ml_dist_attach(d, a);
  int die_rank = -1, die_it = -1;
  char mode[16] = "";
  if (die) sscanf(die, "%d:%d:%15s", &die_rank, &die_it, mode);
  for (int64_t it = 0; it < ITERS && !st; it++) {
    if (ml_dist_rank(d) == die_rank && it == die_it) {
      if (!strcmp(mode, "kill")) raise(SIGKILL);
      sleep(1000);
    }
    st = ml_algo_train_step(a, sine_src, NULL, it, NULL);
  }
  *scores = malloc(EVAL_N * sizeof(double));
  if (!st) st = ml_dist_evaluate(d, a, sine_src, NULL, 99, EVAL_N, *scores, NULL);
  *numel = m->params->numel;
  *params = malloc((size_t)*numel * sizeof(float));
  memcpy(*params, m->params->data, (size_t)*numel * sizeof(float));
  ml_algo_free(a);
  ml_model_free(m);
  return st;
}

/* Worker mode, before the test runner starts: one rank of a job, writing OUT.<rank>. */
__attribute__((constructor)) static void worker_mode(void) {
  if (!getenv("ML_DIST_WORKER")) return;
  ml_dist *d;
  if (ml_dist_init(NULL, NULL, &d)) {
    fprintf(stderr, "worker: %s\n", ml_last_error());
    exit(1);
  }
  float *p = NULL;
  double *s = NULL;
  int64_t n = 0;
  ml_status st = train_run(d, (int)env_int("ML_DIST_THREADS", 1), getenv("ML_DIST_DIE"), &p, &n, &s);
  if (st) {
    fprintf(stderr, "worker: %s\n", ml_last_error());
    ml_dist_abort(d, 1);
    exit(1);
  }
  char path[4200];
  snprintf(path, sizeof path, "%s.%d", getenv("ML_DIST_OUT"), ml_dist_rank(d));
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(p, sizeof(float), (size_t)n, f);
    fwrite(s, sizeof(double), EVAL_N, f);
    fclose(f);
  }
  free(p), free(s);
  ml_dist_finalize(d);
  exit(f ? 0 : 1);
}

/* Why R must be a power of two dividing the meta-batch: 3 ranks owning [0,4), [4,8), [8,12) of
 * 12 tasks own no nodes of the tree, so their partial sums can only be combined in another
 * association ((p0 + p1) + p2, what an MPI_Allreduce might do). Simulated with 3 threads: the
 * parameters then differ from one process, a few bits after one step and visibly after many
 * (the figures docs/SCALING.md quotes). */
#include <math.h>
#include <pthread.h>
enum { UB = 12, UR = 3 };
static float *u_shared[UR];
static pthread_barrier_t u_bar;
typedef struct {
  int rank, iters;
  float *out;
} u_job;

static ml_status u_reduce(void *ctx, float *buf, int64_t len) {
  u_job *j = ctx;
  memcpy(u_shared[j->rank], buf, (size_t)len * sizeof(float));
  pthread_barrier_wait(&u_bar);
  for (int64_t k = 0; k < len; k++) buf[k] = (u_shared[0][k] + u_shared[1][k]) + u_shared[2][k];
  pthread_barrier_wait(&u_bar);
  return ML_OK;
}

static float *u_train(int64_t first, int64_t count, u_job *j, int iters, int64_t *numel) {
  ml_mlp_config mc = {.n_layers = 3, .sizes = {1, 40, 40, 1}, .act = ML_ACT_RELU};
  ml_model *m;
  ml_algo *a;
  if (ml_mlp_new(&mc, 3, &m)) return NULL;
  ml_algo_config c = ml_algo_defaults(ML_ALGO_MAML);
  c.task = ML_TASK_REGRESS, c.meta_batch = UB, c.threads = 1, c.inner_lr = 0.01f;
  if (ml_algo_new(&c, m, &a)) return NULL;
  if (j) ml_algo_set_partition(a, first, count, u_reduce, j);
  for (int it = 0; it < iters; it++) ml_algo_train_step(a, sine_src, NULL, it, NULL);
  *numel = m->params->numel;
  float *p = malloc((size_t)*numel * sizeof(float));
  memcpy(p, m->params->data, (size_t)*numel * sizeof(float));
  ml_algo_free(a);
  ml_model_free(m);
  return p;
}

static void *u_rank(void *vp) {
  u_job *j = vp;
  int64_t n;
  j->out = u_train(j->rank * (UB / UR), UB / UR, j, j->iters, &n);
  return NULL;
}

ML_TEST(three_ranks_would_drift_from_one_process) {
  int iters[] = {1, 1000};
  for (int i = 0; i < 2; i++) {
    int64_t numel = 0;
    float *ref = u_train(0, UB, NULL, iters[i], &numel);
    pthread_barrier_init(&u_bar, NULL, UR);
    u_job jobs[UR];
    pthread_t tid[UR];
    for (int r = 0; r < UR; r++) {
      u_shared[r] = malloc(1 << 20);
      jobs[r] = (u_job){r, iters[i], NULL};
      pthread_create(&tid[r], NULL, u_rank, &jobs[r]);
    }
    for (int r = 0; r < UR; r++) pthread_join(tid[r], NULL);
    int64_t ndiff = 0;
    double maxd = 0, dn = 0, pn = 0;
    for (int64_t k = 0; k < numel && ref && jobs[0].out; k++) {
      double d = fabs((double)ref[k] - jobs[0].out[k]);
      ndiff += d > 0, maxd = d > maxd ? d : maxd, dn += d * d, pn += (double)ref[k] * ref[k];
    }
    CHECK_MSG(ndiff > 0, "3 ranks unexpectedly matched one process after %d iterations", iters[i]);
    printf("  3 ranks, other association, %d iteration(s): %lld of %lld parameters differ, max |diff| %.3g, "
           "||diff|| / ||params|| %.3g\n", iters[i], (long long)ndiff, (long long)numel, maxd, sqrt(dn / pn));
    for (int r = 0; r < UR; r++) free(u_shared[r]), free(jobs[r].out);
    free(ref);
    pthread_barrier_destroy(&u_bar);
  }
}

/* ---- helpers for the multi-process tests ---- */
static const char *mpiexec(void) {
  const char *m = getenv("ML_MPIEXEC");
  if (!ml_dist_built_with_mpi()) {
    printf("  skipped: built without MPI (ML_MPI=OFF or libopenmpi-dev missing)\n");
    return NULL;
  }
  if (!m || !*m || access(m, X_OK) != 0) {
    printf("  skipped: no mpirun found at configure time (apt-get install openmpi-bin)\n");
    return NULL;
  }
  return m;
}

static char self[4096];
static const char *self_path(void) {
  if (!self[0]) {
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    self[k > 0 ? k : 0] = 0;
  }
  return self;
}

/* Open MPI's runtime still holds thousands of allocations at MPI_Finalize, reported through
 * frames LeakSanitizer cannot name, so ranks started by mpirun run without leak detection
 * (address and undefined-behaviour checks stay on). The same training code is leak-checked by
 * the one-process runs in this file. */
static void lsan_env(void) {
  const char *a = getenv("ASAN_OPTIONS");
  if (a && strstr(a, "detect_leaks=0")) return;
  char v[4200];
  snprintf(v, sizeof v, "%s%sdetect_leaks=0", a && *a ? a : "", a && *a ? ":" : "");
  setenv("ASAN_OPTIONS", v, 1);
}

/* Runs `cmd` (through sh) capturing output; returns the exit code and the wall seconds. */
static int sh(const char *cmd, char *out, size_t n, double *seconds) {
  char full[16384];
  snprintf(full, sizeof full, "%s 2>&1", cmd);
  double t0 = ml_now();
  FILE *p = popen(full, "r");
  if (!p) return -1;
  size_t k = fread(out, 1, n - 1, p);
  out[k] = 0;
  int st = pclose(p);
  if (seconds) *seconds = ml_now() - t0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

static int run_workers(const char *mpi, int R, int threads, const char *die, const char *prefix, double *seconds) {
  char cmd[8192];
  lsan_env();
  setenv("ML_DIST_WORKER", "1", 1);
  setenv("ML_DIST_OUT", prefix, 1);
  char t[16];
  snprintf(t, sizeof t, "%d", threads);
  setenv("ML_DIST_THREADS", t, 1);
  if (die) setenv("ML_DIST_DIE", die, 1);
  snprintf(cmd, sizeof cmd, "%s --allow-run-as-root --oversubscribe -np %d %s", mpi, R, self_path());
  int rc = sh(cmd, out, sizeof out, seconds);
  unsetenv("ML_DIST_WORKER"), unsetenv("ML_DIST_OUT"), unsetenv("ML_DIST_THREADS"), unsetenv("ML_DIST_DIE");
  return rc;
}


ML_TEST(one_rank_world_is_the_plain_algorithm) {
  ml_dist *d;
  unsetenv("OMPI_COMM_WORLD_SIZE"), unsetenv("PMIX_RANK"), unsetenv("PMI_RANK"), unsetenv("PMI_SIZE");
  CHECK_OK(ml_dist_init(NULL, NULL, &d));
  CHECK(ml_dist_rank(d) == 0 && ml_dist_size(d) == 1);
  CHECK(ml_dist_rank(NULL) == 0 && ml_dist_size(NULL) == 1);
  CHECK_OK(ml_dist_barrier(d));
  float *p1, *p2;
  double *s1, *s2;
  int64_t n1, n2;
  CHECK_OK(train_run(d, 1, NULL, &p1, &n1, &s1));
  CHECK_OK(train_run(NULL, 2, NULL, &p2, &n2, &s2));
  CHECK(n1 == n2 && !memcmp(p1, p2, (size_t)n1 * sizeof(float)) && !memcmp(s1, s2, EVAL_N * sizeof(double)));
  ml_dist_stats stats;
  ml_dist_get_stats(d, &stats);
  CHECK(stats.bytes_sent == 0 && stats.exchanges == 0);
  free(p1), free(p2), free(s1), free(s2);
  ml_dist_finalize(d);
  setenv("ML_DIST_TIMEOUT", "abc", 1);
  CHECK(ml_dist_init(NULL, NULL, &d) == ML_ERR_ARG && strstr(ml_last_error(), "ML_DIST_TIMEOUT"));
  unsetenv("ML_DIST_TIMEOUT");
}

ML_TEST(ranks_match_one_process_bit_for_bit) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  float *ref;
  double *sref;
  int64_t numel;
  CHECK_OK(train_run(NULL, 1, NULL, &ref, &numel, &sref));
  const char *tmp = ml_test_tmpdir();
  int configs[][2] = {{2, 1}, {2, 2}, {4, 1}, {1, 2}};
  for (int c = 0; c < 4; c++) {
    int R = configs[c][0], T = configs[c][1];
    char prefix[4200], path[4300];
    snprintf(prefix, sizeof prefix, "%s/w%d-%d", tmp, R, T);
    double secs;
    int rc = run_workers(mpi, R, T, NULL, prefix, &secs);
    CHECK_MSG(rc == 0, "%d ranks x %d threads: mpirun exited %d:\n%s", R, T, rc, out);
    if (rc) continue;
    for (int r = 0; r < R; r++) {
      snprintf(path, sizeof path, "%s.%d", prefix, r);
      size_t n = 0;
      char *b = ml_test_read_file(path, &n);
      CHECK_MSG(b && n == (size_t)numel * sizeof(float) + EVAL_N * sizeof(double), "%s: missing or short", path);
      if (!b) continue;
      CHECK_MSG(!memcmp(b, ref, (size_t)numel * sizeof(float)), "%d ranks x %d threads: rank %d's parameters differ "
                "from one process", R, T, r);
      CHECK_MSG(!memcmp(b + numel * (int64_t)sizeof(float), sref, EVAL_N * sizeof(double)),
                "%d ranks x %d threads: rank %d's evaluation scores differ", R, T, r);
      free(b);
    }
    printf("  %d ranks x %d threads: bit-identical to one process (%.1f s)\n", R, T, secs);
  }
  /* a meta-batch the ranks cannot split is a clear error: 8 tasks over 2 ranks is fine, over 3 not */
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s/w3", tmp);
  int rc = run_workers(mpi, 3, 1, NULL, prefix, NULL);
  CHECK_MSG(rc != 0 && strstr(out, "power of two"), "3 ranks: exit %d:\n%s", rc, out);
  free(ref), free(sref);
}

ML_TEST(a_killed_rank_ends_the_job_within_seconds) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s/kill", ml_test_tmpdir());
  double secs;
  setenv("ML_DIST_TIMEOUT", "5", 1);
  int rc = run_workers(mpi, 2, 1, "1:3:kill", prefix, &secs);
  CHECK_MSG(rc != 0, "the job survived a killed rank");
  CHECK_MSG(secs < 10, "the job took %.1f s to end after rank 1 was killed", secs);
  CHECK_MSG(strstr(out, "rank 1"), "the message does not name rank 1:\n%s", out);
  printf("  rank 1 killed (SIGKILL): job ended in %.1f s, exit %d\n", secs, rc);
  /* a rank that hangs (alive, silent): the others give up at the deadline */
  setenv("ML_DIST_TIMEOUT", "2", 1);
  rc = run_workers(mpi, 2, 1, "1:3:hang", prefix, &secs);
  unsetenv("ML_DIST_TIMEOUT");
  CHECK_MSG(rc != 0 && strstr(out, "rank 0: no reply from rank 1 within 2 s"), "hang: exit %d:\n%s", rc, out);
  CHECK_MSG(secs < 12, "the job took %.1f s to end after rank 1 hung", secs);
  printf("  rank 1 hung: job ended in %.1f s, exit %d\n", secs, rc);
}

/* Two ranks in two network namespaces joined by a veth pair: the gradient crosses a real
 * network interface over TCP (tests/dist/netns.sh). Needs root and iproute2; skipped otherwise. */
ML_TEST(ranks_in_two_network_namespaces_match_one_process) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  float *ref;
  double *sref;
  int64_t numel;
  CHECK_OK(train_run(NULL, 1, NULL, &ref, &numel, &sref));
  char prefix[4200], path[4300], cmd[8192];
  snprintf(prefix, sizeof prefix, "%s/netns", ml_test_tmpdir());
  const char *src = getenv("ML_SOURCE_DIR");
  lsan_env();
  setenv("ML_DIST_WORKER", "1", 1), setenv("ML_DIST_OUT", prefix, 1);
  setenv("ML_NETNS_EXPORT", "ML_DIST_WORKER ML_DIST_OUT", 1);
  snprintf(cmd, sizeof cmd, "bash %s/tests/dist/netns.sh %s %s", src && *src ? src : ".", mpi, self_path());
  double secs;
  int rc = sh(cmd, out, sizeof out, &secs);
  unsetenv("ML_DIST_WORKER"), unsetenv("ML_DIST_OUT"), unsetenv("ML_NETNS_EXPORT");
  if (rc == 77) {
    printf("  %s", out);
    free(ref), free(sref);
    return;
  }
  CHECK_MSG(rc == 0, "netns job exited %d:\n%s", rc, out);
  const char *bytes = strstr(out, "bytes over the veth: ");
  long long nbytes = bytes ? atoll(bytes + 21) : 0;
  /* each of ITERS exchanges moves the gradient block both ways */
  CHECK_MSG(nbytes > 2LL * ITERS * numel * (long long)sizeof(float), "only %lld bytes crossed the veth:\n%s", nbytes, out);
  for (int r = 0; r < 2 && rc == 0; r++) {
    snprintf(path, sizeof path, "%s.%d", prefix, r);
    size_t n = 0;
    char *b = ml_test_read_file(path, &n);
    CHECK_MSG(b && n == (size_t)numel * sizeof(float) + EVAL_N * sizeof(double), "%s: missing or short", path);
    if (!b) continue;
    CHECK_MSG(!memcmp(b, ref, (size_t)numel * sizeof(float)), "netns: rank %d's parameters differ from one process", r);
    CHECK_MSG(!memcmp(b + numel * (int64_t)sizeof(float), sref, EVAL_N * sizeof(double)),
              "netns: rank %d's evaluation scores differ", r);
    free(b);
  }
  if (rc == 0) printf("  2 ranks in 2 network namespaces: bit-identical, %lld bytes over the veth (%.1f s)\n", nbytes, secs);
  free(ref), free(sref);
}

/* ---- the command line under mpirun ---- */
static char bin[4096];
static const char *metalearn(void) {
  const char *b = getenv("ML_BINARY_DIR");
  snprintf(bin, sizeof bin, "%s/metalearn", b && *b ? b : ".");
  return bin;
}

/* The tensors after the safetensors header (its metadata holds wall-clock seconds). */
static bool same_tensors(const char *a, const char *b) {
  char cmd[20000];
  snprintf(cmd, sizeof cmd, "bash -c 'cmp -s <(tail -c +$((9 + $(od -An -t u8 -N8 %s))) %s) "
           "<(tail -c +$((9 + $(od -An -t u8 -N8 %s))) %s)'", a, a, b, b);
  return system(cmd) == 0;
}

/* Runs `metalearn ARGS --run TMP/NAME` on R ranks (R = 0: directly, no mpirun). */
static int train_cli(const char *mpi, int R, const char *args, const char *name, double *secs) {
  char cmd[16384], np[64] = "";
  lsan_env();
  if (R) snprintf(np, sizeof np, " --allow-run-as-root --oversubscribe -np %d", R);
  snprintf(cmd, sizeof cmd, "%s%s %s %s --run %s/%s", R ? mpi : "", np, metalearn(), args, ml_test_tmpdir(), name);
  return sh(cmd, out, sizeof out, secs);
}

static bool same_run(const char *a, const char *b) {
  char pa[4300], pb[4300];
  snprintf(pa, sizeof pa, "%s/%s/checkpoint.safetensors", ml_test_tmpdir(), a);
  snprintf(pb, sizeof pb, "%s/%s/checkpoint.safetensors", ml_test_tmpdir(), b);
  return same_tensors(pa, pb);
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p++) n++;
  return n;
}

ML_TEST(cli_train_on_2_and_4_ranks_and_resume_with_another_count) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  const char *sine = "train --dataset sinusoid --algo maml --k_shot 5 --meta_batch 4 --eval_episodes 10 "
                     "--checkpoint_every 10 --threads 1 --quiet";
  char args[4096], result[256] = "";
  snprintf(args, sizeof args, "%s --iterations 30", sine);
  CHECK_MSG(train_cli(mpi, 0, args, "c1", NULL) == 0, "%s", out);
  const char *line = strstr(out, "test MSE");
  if (line) snprintf(result, sizeof result, "%.*s", (int)strcspn(line, "\n"), line);
  int ranks[] = {2, 4};
  for (int i = 0; i < 2; i++) {
    char name[16];
    snprintf(name, sizeof name, "c%d", ranks[i]);
    int rc = train_cli(mpi, ranks[i], args, name, NULL);
    CHECK_MSG(rc == 0, "%d ranks: exit %d:\n%s", ranks[i], rc, out);
    CHECK_MSG(same_run("c1", name), "%d ranks: final parameters differ from one rank", ranks[i]);
    /* the evaluation is split and gathered: the same figure, printed once */
    CHECK_MSG(count(out, "test MSE") == 1 && result[0] && strstr(out, result), "%d ranks printed:\n%s\none rank: %s",
              ranks[i], out, result);
  }
  /* interrupted at 10 on one rank, resumed on 2 ranks to 20, then on 4 ranks to 30 */
  snprintf(args, sizeof args, "%s --iterations 10", sine);
  CHECK(train_cli(mpi, 0, args, "part", NULL) == 0);
  char rargs[4096];
  snprintf(rargs, sizeof rargs, "train --resume --iterations 20 --quiet");
  CHECK_MSG(train_cli(mpi, 2, rargs, "part", NULL) == 0, "resume on 2 ranks:\n%s", out);
  snprintf(rargs, sizeof rargs, "train --resume --iterations 30 --quiet");
  CHECK_MSG(train_cli(mpi, 4, rargs, "part", NULL) == 0, "resume on 4 ranks:\n%s", out);
  CHECK_MSG(same_run("c1", "part"), "1 -> 2 -> 4 ranks with resume differs from one uninterrupted rank");
  /* a meta-batch the ranks cannot split */
  snprintf(args, sizeof args, "%s --iterations 2 --meta_batch 3", sine);
  int rc = train_cli(mpi, 2, args, "bad", NULL);
  CHECK_MSG(rc != 0 && strstr(out, "meta-batch 3 cannot be split evenly over 2 ranks"), "exit %d:\n%s", rc, out);
}

ML_TEST(cli_omniglot_small_on_2_ranks_matches_one) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  const char *data = ml_test_data_dir();
  if (!data) {
    printf("  skipped: no data directory (set METALEARN_DATA)\n");
    return;
  }
  const char *algos[] = {"maml", "protonet"};
  for (int i = 0; i < 2; i++) {
    char args[8192], a[32], b[32];
    snprintf(args, sizeof args, "train --dataset omniglot-small --data_dir %s --algo %s --filters 4 --iterations 3 "
             "--meta_batch 4 --q_query 2 --q_query_test 2 --eval_episodes 6 --threads 1 --quiet", data, algos[i]);
    snprintf(a, sizeof a, "o1-%s", algos[i]);
    snprintf(b, sizeof b, "o2-%s", algos[i]);
    CHECK_MSG(train_cli(mpi, 0, args, a, NULL) == 0, "%s", out); /* first: also fills the image cache */
    char result[256] = "";
    const char *line = strstr(out, "test accuracy");
    if (line) snprintf(result, sizeof result, "%.*s", (int)strcspn(line, "\n"), line);
    double secs;
    int rc = train_cli(mpi, 2, args, b, &secs);
    CHECK_MSG(rc == 0, "%s on 2 ranks: exit %d:\n%s", algos[i], rc, out);
    CHECK_MSG(same_run(a, b), "omniglot-small %s: 2 ranks differ from one", algos[i]);
    CHECK_MSG(count(out, "test accuracy") == 1 && result[0] && strstr(out, result),
              "%s: 2 ranks printed:\n%s\none rank: %s", algos[i], out, result);
    printf("  omniglot-small %s: 2 ranks bit-identical to one (%.1f s)\n", algos[i], secs);
  }
}

ML_TEST(cli_a_rank_killed_from_outside_ends_the_job) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  char cmd[8192];
  const char *src = getenv("ML_SOURCE_DIR");
  lsan_env();
  snprintf(cmd, sizeof cmd, "bash %s/tests/dist/kill_rank.sh %s %s %s/killed", src && *src ? src : ".", mpi,
           metalearn(), ml_test_tmpdir());
  double secs;
  int rc = sh(cmd, out, sizeof out, &secs);
  const char *res = strstr(out, "job ended after ");
  double after = res ? atof(res + 16) : 1e9;
  CHECK_MSG(rc == 0 && res, "kill_rank.sh exit %d:\n%s", rc, out);
  CHECK_MSG(after < 10, "the job took %.1f s to end:\n%s", after, out);
  CHECK_MSG(!strstr(out, "with exit 0"), "the job exited 0 after losing a rank:\n%s", out);
  CHECK_MSG(strstr(out, "process rank 1") || strstr(out, "rank 1"), "no message names rank 1:\n%s", out);
  if (res) printf("  %.*s\n", (int)strcspn(strstr(out, "killed rank"), "\n"), strstr(out, "killed rank"));
}

ML_TEST(cli_train_in_two_network_namespaces_matches_one_rank) {
  const char *mpi = mpiexec();
  if (!mpi) return;
  const char *sine = "train --dataset sinusoid --algo maml --k_shot 5 --meta_batch 4 --eval_episodes 10 "
                     "--iterations 20 --threads 1 --quiet";
  CHECK_MSG(train_cli(mpi, 0, sine, "n1", NULL) == 0, "%s", out);
  char cmd[16384];
  const char *src = getenv("ML_SOURCE_DIR");
  lsan_env();
  snprintf(cmd, sizeof cmd, "bash %s/tests/dist/netns.sh %s %s %s --run %s/n2", src && *src ? src : ".", mpi,
           metalearn(), sine, ml_test_tmpdir());
  double secs;
  int rc = sh(cmd, out, sizeof out, &secs);
  if (rc == 77) {
    printf("  %s", out);
    return;
  }
  CHECK_MSG(rc == 0, "netns job exited %d:\n%s", rc, out);
  CHECK_MSG(same_run("n1", "n2"), "two ranks in two namespaces differ from one rank");
  CHECK_MSG(count(out, "test MSE") == 1, "expected one report, from rank 0:\n%s", out);
  const char *bytes = strstr(out, "bytes over the veth: ");
  if (bytes) printf("  metalearn train, 2 ranks in 2 namespaces: bit-identical, %lld bytes over the veth (%.1f s)\n",
                    atoll(bytes + 21), secs);
}
