/* PCG32 (O'Neill 2014): small state, independent streams selected by the increment, so a task
 * keyed by (seed, iteration, index) gets the same numbers on any thread or MPI rank. */
#include <math.h>

#include "metalearn/base.h"

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t ml_rng_key(uint64_t a, uint64_t b, uint64_t c) {
  return splitmix64(splitmix64(splitmix64(a) ^ b) ^ c);
}

void ml_rng_init(ml_rng *r, uint64_t seed, uint64_t stream) {
  r->state = 0;
  r->inc = (splitmix64(stream) << 1u) | 1u;
  ml_rng_u32(r);
  r->state += splitmix64(seed);
  ml_rng_u32(r);
}

uint32_t ml_rng_u32(ml_rng *r) {
  uint64_t old = r->state;
  r->state = old * 6364136223846793005ull + r->inc;
  uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = (uint32_t)(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

uint32_t ml_rng_below(ml_rng *r, uint32_t n) {
  if (n == 0) return 0;
  uint32_t threshold = -n % n; /* rejection keeps the draw unbiased */
  for (;;) {
    uint32_t x = ml_rng_u32(r);
    if (x >= threshold) return x % n;
  }
}

float ml_rng_uniform(ml_rng *r) { return (float)(ml_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float ml_rng_normal(ml_rng *r) {
  /* Box-Muller in double; one value per call keeps the stream position simple to reason about. */
  double u1 = ((double)ml_rng_u32(r) + 1.0) / 4294967297.0;
  double u2 = (double)ml_rng_u32(r) / 4294967296.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ml_rng_shuffle(ml_rng *r, int64_t *a, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)ml_rng_below(r, (uint32_t)(i + 1));
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}
