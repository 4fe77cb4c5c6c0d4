/* dist: the MPI layer (see include/metalearn/dist.h). Every exchange is point to point with a
 * named partner (recursive doubling), nonblocking, and polled against a deadline, so a dead or
 * stuck peer becomes an error that names it instead of a hang. MPI's own all-reduce is not used:
 * its summation order is unspecified, and the fixed order is what makes results bit-identical.
 * Only the calling (main) thread talks to MPI (MPI_THREAD_FUNNELED); task threads never do.
 * Without ML_HAVE_MPI the same functions serve a one-rank world. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metalearn/dist.h"
#include "ml_config.h"

#if ML_HAVE_MPI
#include <mpi.h>
#endif

struct ml_dist {
  int rank, size;
  bool mpi;  /* this world talks MPI */
  bool owns; /* ml_dist_init initialized MPI, so ml_dist_finalize finalizes it */
  double timeout;
  float *tmp;
  int64_t tmp_len;
  ml_dist_stats stats;
  char library[128];
#if ML_HAVE_MPI
  MPI_Comm comm;
#endif
};

bool ml_dist_built_with_mpi(void) { return ML_HAVE_MPI; }
int ml_dist_rank(const ml_dist *d) { return d ? d->rank : 0; }
int ml_dist_size(const ml_dist *d) { return d ? d->size : 1; }
const char *ml_dist_library(const ml_dist *d) {
  if (!ML_HAVE_MPI) return "built without MPI";
  return d && d->mpi ? d->library : "not started by mpirun";
}

void ml_dist_get_stats(const ml_dist *d, ml_dist_stats *out) {
  if (d) *out = d->stats;
  else memset(out, 0, sizeof *out);
}

static bool is_pow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

/* Launchers announce themselves in the environment (Open MPI, PMIx, MPICH/Hydra). */
static bool under_launcher(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return true;
  return false;
}

ml_status ml_dist_init(int *argc, char ***argv, ml_dist **out) {
  *out = NULL;
  ml_dist *d = calloc(1, sizeof *d);
  if (!d) return ml_error(ML_ERR_NOMEM, "out of memory");
  d->size = 1;
  d->timeout = 60;
  const char *t = getenv("ML_DIST_TIMEOUT");
  if (t && *t) {
    char *end;
    double v = strtod(t, &end);
    if (*end || !(v > 0)) {
      free(d);
      return ml_error(ML_ERR_ARG, "ML_DIST_TIMEOUT='%s' is not a positive number of seconds", t);
    }
    d->timeout = v;
  }
#if ML_HAVE_MPI
  int already = 0;
  MPI_Initialized(&already);
  if (already || under_launcher()) {
    /* an application that initialized MPI itself keeps it: we only borrow MPI_COMM_WORLD */
    int provided = 0, rc = already ? MPI_SUCCESS : MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
      free(d);
      return ml_error(ML_ERR_IO, "MPI_Init_thread failed (code %d)", rc);
    }
    d->mpi = true, d->owns = !already;
    if (d->owns) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    v[strcspn(v, ",\n")] = 0; /* "Open MPI v4.1.4" */
    v[sizeof d->library - 1] = 0;
    memcpy(d->library, v, strlen(v) + 1);
  }
#else
  (void)argc, (void)argv, (void)under_launcher;
#endif
  *out = d;
  return ML_OK;
}

void ml_dist_finalize(ml_dist *d) {
  if (!d) return;
#if ML_HAVE_MPI
  if (d->mpi) MPI_Comm_free(&d->comm);
  if (d->owns) MPI_Finalize();
#endif
  free(d->tmp);
  free(d);
}

void ml_dist_abort(ml_dist *d, int code) {
  fflush(stdout);
  fflush(stderr);
#if ML_HAVE_MPI
  if (d && d->mpi && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
  (void)d, (void)code;
#endif
}

#if ML_HAVE_MPI
static ml_status mpi_failed(ml_dist *d, int rc, int peer, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
  return ml_error(ML_ERR_IO, "rank %d: %s with rank %d failed: %s (rank %d died?)", d->rank, what, peer, msg, peer);
}

/* Sends `sbytes` to peer and receives `rbytes` from it, polling against the deadline. Spins for
 * the first millisecond (an exchange between busy ranks is usually that quick), then sleeps
 * 50 us between polls so a waiting rank leaves the CPU to the others. */
static ml_status exchange(ml_dist *d, int peer, const void *sbuf, int64_t sbytes, void *rbuf, int64_t rbytes, int tag,
                          const char *what) {
  if (sbytes > 0x7fffffff || rbytes > 0x7fffffff)
    return ml_error(ML_ERR_ARG, "rank %d: %s: %lld bytes exceed one MPI message", d->rank, what,
                    (long long)(sbytes > rbytes ? sbytes : rbytes));
  double t0 = ml_now(), deadline = t0 + d->timeout;
  MPI_Request req[2];
  int rc = MPI_Irecv(rbuf, (int)rbytes, MPI_BYTE, peer, tag, d->comm, &req[0]);
  if (rc != MPI_SUCCESS) return mpi_failed(d, rc, peer, what);
  rc = MPI_Isend(sbuf, (int)sbytes, MPI_BYTE, peer, tag, d->comm, &req[1]);
  if (rc != MPI_SUCCESS) {
    MPI_Cancel(&req[0]);
    MPI_Request_free(&req[0]);
    return mpi_failed(d, rc, peer, what);
  }
  for (;;) {
    int done = 0;
    rc = MPI_Testall(2, req, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_failed(d, rc, peer, what);
    if (done) break;
    double now = ml_now();
    if (now > deadline) {
      for (int k = 0; k < 2; k++)
        if (req[k] != MPI_REQUEST_NULL) {
          MPI_Cancel(&req[k]);
          MPI_Request_free(&req[k]);
        }
      return ml_error(ML_ERR_IO, "rank %d: no reply from rank %d within %g s (%s): it died or hangs", d->rank, peer,
                      d->timeout, what);
    }
    if (now - t0 > 1e-3) nanosleep(&(struct timespec){0, 50000}, NULL);
  }
  d->stats.bytes_sent += sbytes;
  d->stats.comm_seconds += ml_now() - t0;
  return ML_OK;
}
#endif

ml_status ml_dist_reduce(void *vd, float *buf, int64_t len) {
  ml_dist *d = vd;
  if (!d || d->size == 1) return ML_OK;
#if ML_HAVE_MPI
  if (len > d->tmp_len) {
    float *t = realloc(d->tmp, (size_t)len * sizeof(float));
    if (!t) return ml_error(ML_ERR_NOMEM, "out of memory");
    d->tmp = t, d->tmp_len = len;
  }
  const float *theirs = d->tmp;
  for (int step = 1; step < d->size; step *= 2) {
    int partner = d->rank ^ step;
    ml_status st = exchange(d, partner, buf, len * (int64_t)sizeof(float), d->tmp, len * (int64_t)sizeof(float), step,
                            "gradient exchange");
    if (st) return st;
    /* the lower rank holds the left subtree: the same association as tree_sum in src/algos */
    if (d->rank < partner)
      for (int64_t k = 0; k < len; k++) buf[k] = buf[k] + theirs[k];
    else
      for (int64_t k = 0; k < len; k++) buf[k] = theirs[k] + buf[k];
  }
  d->stats.exchanges++;
  return ML_OK;
#else
  (void)buf, (void)len;
  return ml_error(ML_ERR_UNSUPPORTED, "built without MPI");
#endif
}

ml_status ml_dist_attach(ml_dist *d, ml_algo *a) {
  if (!d || d->size == 1) return ML_OK;
  int64_t B = ml_algo_get_config(a)->meta_batch, R = d->size;
  if (!is_pow2(R))
    return ml_error(ML_ERR_ARG, "%lld ranks: the number of ranks must be a power of two (1, 2, 4, 8, ...)",
                    (long long)R);
  if (B % R)
    return ml_error(ML_ERR_ARG, "meta-batch %lld cannot be split evenly over %lld ranks (use a meta-batch that %lld divides)",
                    (long long)B, (long long)R, (long long)R);
  int64_t per = B / R;
  ml_algo_set_partition(a, d->rank * per, per, ml_dist_reduce, d);
  return ML_OK;
}

ml_status ml_dist_all_ok(ml_dist *d, bool *ok) {
  if (!d || d->size == 1) return ML_OK;
#if ML_HAVE_MPI
  if (!is_pow2(d->size)) return ml_error(ML_ERR_ARG, "%d ranks: not a power of two", d->size);
  int mine = *ok, theirs = 0;
  for (int step = 1; step < d->size; step *= 2) {
    ml_status st = exchange(d, d->rank ^ step, &mine, sizeof mine, &theirs, sizeof theirs, 1000 + step, "status exchange");
    if (st) return st;
    mine = mine && theirs;
  }
  *ok = mine;
  return ML_OK;
#else
  return ML_OK;
#endif
}

ml_status ml_dist_barrier(ml_dist *d) {
  bool ok = true;
  return ml_dist_all_ok(d, &ok);
}

/* Episodes [lo(r), lo(r+1)) belong to rank r. */
static int64_t block_lo(int64_t n, int64_t r, int64_t R) { return n * r / R; }

typedef struct {
  ml_task_fn src;
  void *ctx;
  int64_t first;
} shifted_src;

static ml_status shifted_task(void *vctx, int64_t key, int64_t idx, ml_arena *ar, ml_episode *ep) {
  shifted_src *s = vctx;
  return s->src(s->ctx, key, s->first + idx, ar, ep);
}

ml_status ml_dist_evaluate(ml_dist *d, ml_algo *a, ml_task_fn src, void *ctx, int64_t key, int64_t n, double *scores,
                           const ml_eval_options *opt) {
  if (!d || d->size == 1) return ml_algo_evaluate_ex(a, src, ctx, key, n, scores, opt);
#if ML_HAVE_MPI
  int64_t R = d->size, r = d->rank;
  if (!is_pow2(R)) return ml_error(ML_ERR_ARG, "%lld ranks: not a power of two", (long long)R);
  int64_t lo = block_lo(n, r, R), hi = block_lo(n, r + 1, R);
  shifted_src s = {src, ctx, lo};
  ml_status st = hi > lo ? ml_algo_evaluate_ex(a, shifted_task, &s, key, hi - lo, scores + lo, opt) : ML_OK;
  char err[512];
  snprintf(err, sizeof err, "%s", st ? ml_last_error() : "");
  bool ok = !st;
  ml_status cst = ml_dist_all_ok(d, &ok);
  if (cst) return cst;
  if (st) return ml_error(st, "%s", err);
  if (!ok) return ml_error(ML_ERR_ABORTED, "evaluation failed on another rank");
  /* allgather by recursive doubling: after the exchange at `step`, this rank holds the scores
   * of the aligned group of 2*step ranks around it; the blocks are contiguous in episode order */
  for (int64_t step = 1; step < R; step *= 2) {
    int64_t mine = r & ~(step - 1), partner = r ^ step, theirs = partner & ~(step - 1);
    int64_t mlo = block_lo(n, mine, R), mhi = block_lo(n, mine + step, R);
    int64_t tlo = block_lo(n, theirs, R), thi = block_lo(n, theirs + step, R);
    st = exchange(d, (int)partner, scores + mlo, (mhi - mlo) * (int64_t)sizeof(double), scores + tlo,
                  (thi - tlo) * (int64_t)sizeof(double), 2000 + (int)step, "evaluation gather");
    if (st) return st;
  }
  return ML_OK;
#else
  (void)key, (void)n, (void)scores, (void)src, (void)ctx, (void)a, (void)opt, (void)block_lo, (void)shifted_task;
  return ml_error(ML_ERR_UNSUPPORTED, "built without MPI");
#endif
}
