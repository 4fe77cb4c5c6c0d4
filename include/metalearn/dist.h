/* dist: meta-training spread over processes (machines) with MPI. Rank r of R runs tasks
 * [r*B/R, (r+1)*B/R) of every meta-batch on its own threads; the ranks then combine their partial
 * gradient sums by recursive doubling (log2 R exchanges of the contiguous gradient block, lower
 * rank's partial on the left), which is exactly the fixed pairwise tree one process uses, so every
 * rank applies the same optimizer step and the parameters are bit-identical to one process.
 * R must be a power of two dividing the meta-batch. Evaluation episodes are split in contiguous
 * blocks and gathered in episode order.
 *
 * A world is opened by ml_dist_init. MPI is initialized only when the process was started by an
 * MPI launcher (mpirun) and not already by the application (which then keeps MPI_Init/Finalize
 * for itself); otherwise, and in a build without MPI (ML_MPI=OFF), the world is one rank and
 * every call below is a cheap no-op, so callers need no #ifdefs. A NULL world also means one
 * rank. Calls that communicate must come from the thread that opened the world
 * (MPI_THREAD_FUNNELED); the task threads never talk to MPI.
 *
 * Failures never hang: the communicator returns errors instead of aborting, and every exchange
 * is nonblocking with a deadline (ML_DIST_TIMEOUT seconds, default 60). A peer that died or
 * stopped answering gives ML_ERR_IO with a message naming both ranks ("rank 0: no reply from
 * rank 1 within 60 s"). Since the other ranks may be blocked in a collective, the caller then
 * ends the job with ml_dist_abort (MPI_Abort), the only call here that ends the process. */
#ifndef METALEARN_DIST_H
#define METALEARN_DIST_H

#include "metalearn/algos.h"

typedef struct ml_dist ml_dist;

typedef struct {
  int64_t exchanges;   /* gradient reductions done */
  int64_t bytes_sent;  /* by this rank, all exchanges and gathers */
  double comm_seconds; /* wall time inside exchanges and gathers (waiting for peers included) */
} ml_dist_stats;

/* True when this build has MPI. */
ML_API bool ml_dist_built_with_mpi(void);
/* Opens the world: MPI_Init_thread when started by mpirun, else a one-rank world. The caller
 * frees with ml_dist_finalize (which calls MPI_Finalize). */
ML_API ml_status ml_dist_init(int *argc, char ***argv, ml_dist **out);
ML_API void ml_dist_finalize(ml_dist *d);
ML_API int ml_dist_rank(const ml_dist *d); /* 0 for NULL */
ML_API int ml_dist_size(const ml_dist *d); /* 1 for NULL */
/* "Open MPI v4.1.4, ..." or "built without MPI" (or "not started by mpirun"). */
ML_API const char *ml_dist_library(const ml_dist *d);

/* Gives this rank its block of every meta-batch and the exchange that combines the blocks.
 * ML_ERR_ARG (naming R and the meta-batch) unless R is a power of two dividing the meta-batch.
 * No-op for one rank. d must outlive a's training. */
ML_API ml_status ml_dist_attach(ml_dist *d, ml_algo *a);
/* The reduce function ml_dist_attach installs (ml_reduce_fn, ctx = d): replaces buf by the sum
 * of every rank's buf in recursive-doubling order. Exposed for tests and other applications. */
ML_API ml_status ml_dist_reduce(void *d, float *buf, int64_t len);

/* ml_algo_evaluate_ex over episodes 0..n-1 (opt may be NULL) with the episodes split across
 * ranks in contiguous blocks; every rank receives all n scores, in episode order (identical to
 * one process). A progress callback in opt sees this rank's block. */
ML_API ml_status ml_dist_evaluate(ml_dist *d, ml_algo *a, ml_task_fn src, void *ctx, int64_t key, int64_t n,
                                  double *scores, const ml_eval_options *opt);
/* Waits until every rank arrives (with the deadline). */
ML_API ml_status ml_dist_barrier(ml_dist *d);
/* Every rank receives the logical AND of ok (with the deadline): lets rank 0 tell the others that
 * a step it alone performs (writing a checkpoint) failed. */
ML_API ml_status ml_dist_all_ok(ml_dist *d, bool *ok);

ML_API void ml_dist_get_stats(const ml_dist *d, ml_dist_stats *out);
/* Ends every rank of the job with exit code `code` (MPI_Abort). Returns only for a one-rank world. */
ML_API void ml_dist_abort(ml_dist *d, int code);

#endif
