/* Sinusoid regression tasks from the MAML paper (Finn et al. 2017, section 5.1):
 * y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], x uniform in [-5, 5]. One task per
 * (seed, iteration, task index), like the image sampler but with its own salt. */
#include <math.h>
#include <string.h>

#include "metalearn/tasks.h"

#define SINUSOID_SALT UINT64_C(0x73696e75736f6964) /* "sinusoid" */

ml_sinusoid_opts ml_sinusoid_defaults(void) {
  return (ml_sinusoid_opts){0.1f, 5.0f, 0.0f, (float)M_PI, -5.0f, 5.0f};
}

ml_status ml_sinusoid_sample(const ml_sinusoid_opts *opts, int64_t k_shot, int64_t q_query, uint64_t seed,
                             uint64_t iteration, uint64_t task_index, ml_arena *arena, ml_episode *out,
                             float *amplitude, float *phase) {
  if (!out) return ml_error(ML_ERR_ARG, "sinusoid: NULL output");
  memset(out, 0, sizeof *out);
  ml_sinusoid_opts o = opts ? *opts : ml_sinusoid_defaults();
  if (!arena || k_shot < 1 || q_query < 0)
    return ml_error(ML_ERR_ARG, "sinusoid: need an arena, K >= 1 and Q >= 0 (got K=%lld Q=%lld)", (long long)k_shot,
                    (long long)q_query);
  if (!(o.amp_min <= o.amp_max && o.phase_min <= o.phase_max && o.x_min <= o.x_max))
    return ml_error(ML_ERR_ARG, "sinusoid: a range has min > max (or NaN)");
  int64_t s2[2] = {k_shot, 1}, q2[2] = {q_query, 1};
  out->xs = ml_tensor_new(arena, 2, s2);
  out->ts = ml_tensor_new(arena, 2, s2);
  out->xq = ml_tensor_new(arena, 2, q2);
  out->tq = ml_tensor_new(arena, 2, q2);
  if (!out->xs.data || !out->ts.data || (q_query && (!out->xq.data || !out->tq.data))) {
    memset(out, 0, sizeof *out);
    return ml_error(ML_ERR_NOMEM, "sinusoid: arena exhausted");
  }
  ml_rng r;
  ml_rng_init(&r, seed, ml_rng_key(iteration, task_index, SINUSOID_SALT));
  float a = o.amp_min + (o.amp_max - o.amp_min) * ml_rng_uniform(&r);
  float p = o.phase_min + (o.phase_max - o.phase_min) * ml_rng_uniform(&r);
  for (int64_t i = 0; i < k_shot + q_query; i++) {
    float x = o.x_min + (o.x_max - o.x_min) * ml_rng_uniform(&r);
    float y = a * sinf(x - p);
    if (i < k_shot) out->xs.data[i] = x, out->ts.data[i] = y;
    else out->xq.data[i - k_shot] = x, out->tq.data[i - k_shot] = y;
  }
  out->n_way = 1;
  out->k_shot = k_shot;
  out->q_query = q_query;
  out->n_s = k_shot;
  out->n_q = q_query;
  if (amplitude) *amplitude = a;
  if (phase) *phase = p;
  return ML_OK;
}
