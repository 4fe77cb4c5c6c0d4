/* base: status strings, error buffer, RNG streams, arenas (incl. no allocation after warm-up). */
#include <string.h>

#include "harness.h"
#include "metalearn/base.h"

ML_TEST(status_names) {
  CHECK(!strcmp(ml_status_name(ML_ERR_SHAPE), "ML_ERR_SHAPE"));
  CHECK(!strcmp(ml_status_str(ML_OK), "ok"));
  CHECK(ml_error(ML_ERR_IO, "file %s: bad", "x.bin") == ML_ERR_IO);
  CHECK(!strcmp(ml_last_error(), "file x.bin: bad"));
  CHECK(ml_last_status() == ML_ERR_IO);
}

ML_TEST(rng_streams_reproducible_and_independent) {
  ml_rng a, b, c;
  ml_rng_init(&a, 42, 7);
  ml_rng_init(&b, 42, 7);
  ml_rng_init(&c, 42, 8);
  int same_ab = 1, same_ac = 0;
  for (int i = 0; i < 100; i++) {
    uint32_t x = ml_rng_u32(&a), y = ml_rng_u32(&b), z = ml_rng_u32(&c);
    same_ab &= x == y;
    same_ac += x == z;
  }
  CHECK(same_ab);
  CHECK(same_ac < 3);
  /* uniform mean and normal moments */
  double s = 0, s2 = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    float u = ml_rng_normal(&a);
    s += u;
    s2 += u * u;
  }
  CHECK_NEAR(s / n, 0.0, 0.02);
  CHECK_NEAR(s2 / n, 1.0, 0.02);
  int hist[7] = {0};
  for (int i = 0; i < 70000; i++) hist[ml_rng_below(&a, 7)]++;
  for (int i = 0; i < 7; i++) CHECK_NEAR(hist[i], 10000, 500);
}

static size_t n_allocs;
static void *count_alloc(size_t n, void *ctx) {
  n_allocs++;
  return ml_allocator_default()->alloc(n, ctx);
}
static void count_free(void *p, void *ctx) { ml_allocator_default()->free(p, ctx); }

ML_TEST(arena_steady_state_allocates_nothing) {
  ml_allocator counting = {count_alloc, count_free, NULL};
  ml_arena *a = ml_arena_new(4096, &counting);
  CHECK(a != NULL);
  for (int step = 0; step < 5; step++) {
    size_t before = n_allocs;
    for (int i = 0; i < 100; i++) {
      float *p = ml_arena_alloc(a, 1000 + 37 * i);
      CHECK(p != NULL && ((uintptr_t)p % 64) == 0);
      memset(p, 1, 1000);
    }
    if (step >= 1) CHECK_MSG(n_allocs == before, "step %d allocated %zu times", step, n_allocs - before);
    ml_arena_reset(a);
    CHECK(ml_arena_used(a) == 0);
  }
  CHECK(ml_arena_alloc(a, SIZE_MAX - 10) == NULL);
  ml_arena_free(a);
}

/* A rewind gives back everything after the mark, across chunk growth; the chunks are kept, so a
 * mark / grow / rewind loop allocates only in its first round; a stale mark changes nothing. */
ML_TEST(arena_rewind_gives_back_and_reuses) {
  ml_allocator counting = {count_alloc, count_free, NULL};
  ml_arena *a = ml_arena_new(4096, &counting);
  CHECK(a != NULL);
  char *keep = ml_arena_alloc(a, 1000);
  memset(keep, 7, 1000);
  ml_arena_mark m = ml_arena_get_mark(a);
  size_t used = ml_arena_used(a);
  char *first = NULL;
  for (int round = 0; round < 4; round++) {
    size_t before = n_allocs;
    ml_arena_rewind(a, m);
    CHECK(ml_arena_used(a) == used);
    char *p = ml_arena_alloc(a, 512);
    CHECK(p != NULL);
    if (round == 0) first = p;
    CHECK_MSG(p == first, "round %d: the first block after the mark moved", round);
    for (int i = 0; i < 20; i++) { /* grows past the first chunk */
      char *q = ml_arena_alloc(a, 3000 + 100 * (size_t)i);
      CHECK(q != NULL);
      memset(q, round, 3000);
    }
    if (round >= 1) CHECK_MSG(n_allocs == before, "round %d allocated %zu chunks", round, n_allocs - before);
  }
  ml_arena_rewind(a, m);
  for (int i = 0; i < 1000; i++) CHECK(keep[i] == 7);
  size_t peak = ml_arena_peak(a);
  CHECK(peak > used + 20 * 3000);
  /* a mark from before a reset is stale: rewinding to it must not move anything */
  ml_arena_reset(a);
  char *x = ml_arena_alloc(a, 100);
  ml_arena_mark m2 = ml_arena_get_mark(a);
  ml_arena_alloc(a, 5000);
  size_t used2 = ml_arena_used(a);
  ml_arena_rewind(a, m); /* m's chunk was merged away by the reset */
  CHECK(ml_arena_used(a) == used2);
  ml_arena_rewind(a, m2);
  CHECK(ml_arena_used(a) == used2 - 5000 - (64 - 5000 % 64) % 64);
  CHECK(x != NULL);
  ml_arena_free(a);
}

typedef struct {
  int64_t out[1000];
} pf_ctx;
static void pf_fn(int64_t i, int thread, void *ctx) {
  (void)thread;
  ((pf_ctx *)ctx)->out[i] = i * i;
}
ML_TEST(parallel_for_covers_all) {
  static pf_ctx c;
  memset(&c, 0, sizeof c);
  ml_parallel_for(1000, 4, pf_fn, &c);
  for (int i = 0; i < 1000; i++) CHECK(c.out[i] == (int64_t)i * i);
}

ML_TEST(pool_runs_every_item_many_times) {
  ml_pool *p = ml_pool_new(3);
  CHECK(p != NULL && ml_pool_size(p) == 3);
  static pf_ctx c;
  for (int round = 0; round < 200; round++) {
    memset(&c, 0, sizeof c);
    int64_t n = 1 + round % 17 * 50;
    ml_pool_run(p, n, pf_fn, &c);
    for (int64_t i = 0; i < n; i++) CHECK(c.out[i] == i * i);
  }
  ml_pool_free(p);
}
