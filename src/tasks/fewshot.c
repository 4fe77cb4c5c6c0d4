/* N-way K-shot episodes. Every draw comes from one PCG stream keyed by (seed, iteration, task
 * index), so an episode is a pure function of those keys: the same on any thread or rank, and
 * the evaluation list is identical across runs and algorithms. Rotated classes are rotated here,
 * on the fly, so the dataset holds each drawing once. */
#include <string.h>

#include "metalearn/tasks.h"

#define FEWSHOT_SALT UINT64_C(0x66657773686f74) /* "fewshot" */

/* m distinct values of [0, n) in uniformly random order: Floyd's subset then a shuffle, exactly
 * m draws for the subset whatever n is (no table of size n). */
static void sample_distinct(ml_rng *r, int64_t n, int64_t m, int64_t *out) {
  int64_t k = 0;
  for (int64_t j = n - m; j < n; j++) {
    int64_t t = (int64_t)ml_rng_below(r, (uint32_t)(j + 1));
    bool seen = false;
    for (int64_t i = 0; i < k && !seen; i++) seen = out[i] == t;
    out[k++] = seen ? j : t;
  }
  ml_rng_shuffle(r, out, m);
}

static void to_float(const uint8_t *src, int64_t n, float *dst) {
  /* a true division, as torchvision ToTensor does: x * (1/255) differs in the last bit */
  for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

ml_status ml_fewshot_sample(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot, int64_t q_query,
                            uint64_t seed, uint64_t iteration, uint64_t task_index, ml_arena *arena, ml_episode *out) {
  if (!out) return ml_error(ML_ERR_ARG, "fewshot: NULL output");
  memset(out, 0, sizeof *out);
  if (!ds || !split || !arena || !split->base) return ml_error(ML_ERR_ARG, "fewshot: NULL dataset, split or arena");
  if (n_way < 1 || k_shot < 1 || q_query < 0)
    return ml_error(ML_ERR_ARG, "fewshot: need N >= 1, K >= 1, Q >= 0 (got N=%lld K=%lld Q=%lld)", (long long)n_way,
                    (long long)k_shot, (long long)q_query);
  if (n_way > split->n_classes)
    return ml_error(ML_ERR_ARG, "fewshot: %lld-way needs %lld classes but the split has %lld", (long long)n_way,
                    (long long)n_way, (long long)split->n_classes);
  if (k_shot + q_query > split->min_class_size)
    return ml_error(ML_ERR_ARG, "fewshot: K+Q = %lld images per class but the smallest class of the split has %lld",
                    (long long)(k_shot + q_query), (long long)split->min_class_size);
  if (split->n_classes > UINT32_MAX || split->min_class_size > UINT32_MAX)
    return ml_error(ML_ERR_ARG, "fewshot: split too large");

  const int64_t C = ds->channels, H = ds->height, W = ds->width, per = C * H * W, kq = k_shot + q_query;
  int64_t ds_[4] = {n_way * k_shot, C, H, W}, dq[4] = {n_way * q_query, C, H, W};
  out->xs = ml_tensor_new(arena, 4, ds_);
  out->xq = ml_tensor_new(arena, 4, dq);
  out->ys = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)(n_way * k_shot));
  out->yq = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)(n_way * q_query + 1));
  out->gys = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)(n_way * k_shot));
  out->gyq = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)(n_way * q_query + 1));
  out->src_s = ml_arena_alloc(arena, sizeof(int64_t) * (size_t)(n_way * k_shot));
  out->src_q = ml_arena_alloc(arena, sizeof(int64_t) * (size_t)(n_way * q_query + 1));
  out->rot_s = ml_arena_alloc(arena, (size_t)(n_way * k_shot));
  out->rot_q = ml_arena_alloc(arena, (size_t)(n_way * q_query + 1));
  int64_t *cls = ml_arena_alloc(arena, sizeof(int64_t) * (size_t)n_way);
  int64_t *pick = ml_arena_alloc(arena, sizeof(int64_t) * (size_t)kq);
  uint8_t *rot = ml_arena_alloc(arena, (size_t)per);
  if (!out->xs.data || !out->ys || !out->yq || !out->gys || !out->gyq || !out->src_s || !out->src_q || !out->rot_s || !out->rot_q || !cls || !pick || !rot || (q_query && !out->xq.data)) {
    memset(out, 0, sizeof *out);
    return ml_error(ML_ERR_NOMEM, "fewshot: arena exhausted for a %lld-way %lld-shot %lld-query episode",
                    (long long)n_way, (long long)k_shot, (long long)q_query);
  }
  ml_rng r;
  ml_rng_init(&r, seed, ml_rng_key(iteration, task_index, FEWSHOT_SALT));
  sample_distinct(&r, split->n_classes, n_way, cls);
  for (int64_t i = 0; i < n_way; i++) {
    int64_t base = split->base[cls[i] / split->rotations];
    int rq = (int)(cls[i] % split->rotations);
    sample_distinct(&r, ml_dataset_class_size(ds, base), kq, pick);
    for (int64_t j = 0; j < kq; j++) {
      const uint8_t *img = ml_dataset_image(ds, base, pick[j]);
      if (rq) {
        ml_image_rot90(img, C, H, rq, rot);
        img = rot;
      }
      bool support = j < k_shot;
      int64_t row = support ? i * k_shot + j : i * q_query + (j - k_shot);
      to_float(img, per, (support ? out->xs.data : out->xq.data) + row * per);
      (support ? out->ys : out->yq)[row] = (int32_t)i;
      (support ? out->gys : out->gyq)[row] = (int32_t)cls[i]; /* split class index, for pre-training */
      (support ? out->src_s : out->src_q)[row] = ds->class_offset[base] + pick[j];
      (support ? out->rot_s : out->rot_q)[row] = (int8_t)rq;
    }
  }
  out->n_way = n_way;
  out->k_shot = k_shot;
  out->q_query = q_query;
  out->n_s = n_way * k_shot;
  out->n_q = n_way * q_query;
  return ML_OK;
}

ml_status ml_fewshot_eval_episode(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot,
                                  int64_t q_query, uint64_t seed, int64_t index, ml_arena *arena, ml_episode *out) {
  if (index < 0) {
    if (out) memset(out, 0, sizeof *out);
    return ml_error(ML_ERR_ARG, "fewshot: negative evaluation episode index %lld", (long long)index);
  }
  return ml_fewshot_sample(ds, split, n_way, k_shot, q_query, seed, ML_EVAL_ITERATION, (uint64_t)index, arena, out);
}

ml_status ml_fewshot_eval_set(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot,
                              int64_t q_query, uint64_t seed, int64_t count, ml_arena *arena, ml_episode *eps) {
  if (!eps || count < 0) return ml_error(ML_ERR_ARG, "fewshot: bad evaluation set request");
  for (int64_t i = 0; i < count; i++) {
    ml_status st = ml_fewshot_eval_episode(ds, split, n_way, k_shot, q_query, seed, i, arena, &eps[i]);
    if (st) return st;
  }
  return ML_OK;
}

ml_status ml_lake_episode(const ml_lake_runs *runs, int64_t run, ml_arena *arena, ml_episode *out) {
  if (!out) return ml_error(ML_ERR_ARG, "lake episode: NULL output");
  memset(out, 0, sizeof *out);
  if (!runs || !arena || !runs->train) return ml_error(ML_ERR_ARG, "lake episode: NULL runs or arena");
  if (run < 0 || run >= runs->n_runs)
    return ml_error(ML_ERR_ARG, "lake episode: run %lld out of range [0, %lld)", (long long)run, (long long)runs->n_runs);
  const int64_t C = runs->channels, H = runs->height, W = runs->width, per = C * H * W;
  int64_t ds_[4] = {runs->n_train, C, H, W}, dq[4] = {runs->n_test, C, H, W};
  out->xs = ml_tensor_new(arena, 4, ds_);
  out->xq = ml_tensor_new(arena, 4, dq);
  out->ys = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)runs->n_train);
  out->yq = ml_arena_alloc(arena, sizeof(int32_t) * (size_t)runs->n_test);
  if (!out->xs.data || !out->xq.data || !out->ys || !out->yq) {
    memset(out, 0, sizeof *out);
    return ml_error(ML_ERR_NOMEM, "lake episode: arena exhausted");
  }
  to_float(runs->train + run * runs->n_train * per, runs->n_train * per, out->xs.data);
  to_float(runs->test + run * runs->n_test * per, runs->n_test * per, out->xq.data);
  for (int64_t i = 0; i < runs->n_train; i++) out->ys[i] = (int32_t)i;
  memcpy(out->yq, runs->test_label + run * runs->n_test, sizeof(int32_t) * (size_t)runs->n_test);
  out->n_way = runs->n_train;
  out->k_shot = 1;
  out->q_query = 1;
  out->n_s = runs->n_train;
  out->n_q = runs->n_test;
  return ML_OK;
}
