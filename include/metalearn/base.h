/* base: status codes and per-thread error messages, logging, seeded RNG streams,
 * arenas, timers and a deterministic parallel-for. Everything above builds on these. */
#ifndef METALEARN_BASE_H
#define METALEARN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(ML_BUILDING_LIBRARY)
#define ML_API __attribute__((visibility("default")))
#else
#define ML_API
#endif

/* ---- status codes: one list, from which the enum and the strings are made ---- */
#define ML_STATUS_MAP(X)                                             \
  X(ML_OK, 0, "ok")                                                  \
  X(ML_ERR_NOMEM, 1, "out of memory")                                \
  X(ML_ERR_SHAPE, 2, "shape mismatch")                               \
  X(ML_ERR_ARG, 3, "invalid argument")                               \
  X(ML_ERR_IO, 4, "input/output error")                              \
  X(ML_ERR_FORMAT, 5, "corrupt or unsupported file format")          \
  X(ML_ERR_NOTFOUND, 6, "not found")                                 \
  X(ML_ERR_NUMERIC, 7, "numerical failure (NaN or Inf)")             \
  X(ML_ERR_ABORTED, 8, "aborted by caller")                          \
  X(ML_ERR_UNSUPPORTED, 9, "unsupported in this build")

typedef enum {
#define ML_X_ENUM(name, num, msg) name = num,
  ML_STATUS_MAP(ML_X_ENUM)
#undef ML_X_ENUM
} ml_status;

ML_API const char *ml_status_name(ml_status s); /* "ML_ERR_SHAPE" */
ML_API const char *ml_status_str(ml_status s);  /* "shape mismatch" */

/* Sets the calling thread's error message and returns s, so that a failing
 * function can `return ml_error(ML_ERR_IO, "%s: truncated", path);`. */
ML_API ml_status ml_error(ml_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
ML_API const char *ml_last_error(void); /* the calling thread's last message; "" if none */
ML_API ml_status ml_last_status(void);
ML_API void ml_clear_error(void);

/* ---- logging ---- */
typedef enum { ML_LOG_DEBUG, ML_LOG_INFO, ML_LOG_WARN, ML_LOG_ERROR, ML_LOG_OFF } ml_log_level;
ML_API void ml_log_set_level(ml_log_level level);
ML_API ml_log_level ml_log_get_level(void);
ML_API void ml_logf(ml_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- RNG: PCG32 streams keyed by (seed, stream), so each task draws its own numbers
 * whatever thread runs it. ---- */
typedef struct {
  uint64_t state, inc;
} ml_rng;

ML_API void ml_rng_init(ml_rng *r, uint64_t seed, uint64_t stream);
/* Stream id built from several keys, e.g. (iteration, task index). */
ML_API uint64_t ml_rng_key(uint64_t a, uint64_t b, uint64_t c);
ML_API uint32_t ml_rng_u32(ml_rng *r);
ML_API uint32_t ml_rng_below(ml_rng *r, uint32_t n); /* uniform in [0, n), unbiased */
ML_API float ml_rng_uniform(ml_rng *r);               /* [0, 1) */
ML_API float ml_rng_normal(ml_rng *r);                /* N(0, 1) */
ML_API void ml_rng_shuffle(ml_rng *r, int64_t *a, int64_t n);

/* ---- allocator and arenas ----
 * The allocator under the arenas is replaceable (tests plug in a counting one).
 * An arena hands out aligned blocks from chunks that never move; ml_arena_reset keeps the
 * chunks, so a loop that allocates the same amount each step allocates nothing after the
 * first step. */
typedef struct {
  void *(*alloc)(size_t bytes, void *ctx); /* must return 64-byte aligned memory */
  void (*free)(void *p, void *ctx);
  void *ctx;
} ml_allocator;

ML_API const ml_allocator *ml_allocator_default(void);

typedef struct ml_arena ml_arena;
/* chunk_bytes: size of the first chunk (0 = 1 MiB); alloc NULL = default allocator.
 * The caller frees with ml_arena_free. */
ML_API ml_arena *ml_arena_new(size_t chunk_bytes, const ml_allocator *alloc);
ML_API void ml_arena_free(ml_arena *a);
/* Returns 64-byte aligned memory valid until the arena is reset or freed; NULL when out of
 * memory (with ml_last_error set). */
ML_API void *ml_arena_alloc(ml_arena *a, size_t bytes);
ML_API void *ml_arena_calloc(ml_arena *a, size_t bytes);
ML_API void ml_arena_reset(ml_arena *a);
ML_API size_t ml_arena_used(const ml_arena *a);     /* bytes handed out since the reset */
ML_API size_t ml_arena_reserved(const ml_arena *a); /* bytes held in chunks */
ML_API size_t ml_arena_peak(const ml_arena *a);     /* highest ml_arena_used seen */
/* A position in the arena, and a rewind to it: everything allocated after the mark is given
 * back (its chunks are kept for the next allocations, so a loop that marks and rewinds each
 * step needs no new memory after its first step). A loop whose steps leave nothing behind (an
 * inner loop that keeps its state outside the arena's newer part) then holds one step's memory
 * instead of all of them. A mark is valid until the arena is reset or rewound past it. */
typedef struct {
  const void *chunk;
  size_t used, used_total;
} ml_arena_mark;
ML_API ml_arena_mark ml_arena_get_mark(const ml_arena *a);
ML_API void ml_arena_rewind(ml_arena *a, ml_arena_mark m);

/* ---- time ---- */
ML_API double ml_now(void); /* monotonic seconds */

/* ---- threads ----
 * ml_parallel_for runs fn(i, thread, ctx) for i in [0, n) on up to `threads` threads
 * (0 = ml_num_threads()). Work item i never depends on which thread runs it. */
typedef void (*ml_parallel_fn)(int64_t i, int thread, void *ctx);
ML_API void ml_parallel_for(int64_t n, int threads, ml_parallel_fn fn, void *ctx);
ML_API int ml_num_threads(void);         /* ML_THREADS env var, else online CPUs */

/* A persistent pool: threads are made once and sleep between runs, so a training loop creates
 * no threads (and allocates nothing) per iteration. ml_pool_run has ml_parallel_for's contract;
 * the calling thread works too (as thread 0). One run at a time per pool. */
typedef struct ml_pool ml_pool;
ML_API ml_pool *ml_pool_new(int threads); /* 0 = ml_num_threads(); free with ml_pool_free */
ML_API void ml_pool_free(ml_pool *p);
ML_API int ml_pool_size(const ml_pool *p);
ML_API void ml_pool_run(ml_pool *p, int64_t n, ml_parallel_fn fn, void *ctx);

/* ---- version and build ---- */
ML_API const char *ml_version(void);

/* Checked size arithmetic for readers of hostile files: false on overflow. */
static inline bool ml_mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool ml_add_size(size_t a, size_t b, size_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

#endif
