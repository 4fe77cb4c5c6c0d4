/* Seeded initializers with PyTorch's definitions, so parity runs start from the same laws. */
#include <math.h>

#include "metalearn/nn.h"

void ml_init_kaiming_uniform(ml_tensor *w, int64_t fan_in, ml_rng *r) {
  float b = sqrtf(2.0f) * sqrtf(3.0f / (float)fan_in);
  ml_tensor_rand_uniform(w, r, -b, b);
}

void ml_init_kaiming_normal(ml_tensor *w, int64_t fan_in, ml_rng *r) {
  ml_tensor_randn(w, r, sqrtf(2.0f / (float)fan_in));
}

void ml_init_xavier_uniform(ml_tensor *w, int64_t fan_in, int64_t fan_out, ml_rng *r) {
  float b = sqrtf(6.0f / (float)(fan_in + fan_out));
  ml_tensor_rand_uniform(w, r, -b, b);
}

void ml_init_fan_in_uniform(ml_tensor *w, int64_t fan_in, ml_rng *r) {
  float b = 1.0f / sqrtf((float)fan_in);
  ml_tensor_rand_uniform(w, r, -b, b);
}
