/* tasks: episodes (a support set to adapt on and a query set to score) and the samplers that
 * draw them: N-way K-shot classification over image classes (with 90-degree rotations as extra
 * classes), sinusoid regression as in the MAML paper. Samplers are keyed by (seed, iteration,
 * task index), so a task is the same whichever thread or rank draws it. */
#ifndef METALEARN_TASKS_H
#define METALEARN_TASKS_H

#include "metalearn/data.h"

/* One task. Classification: labels in [0, n_way), support ordered class by class. Regression:
 * targets in ts / tq (one float per example) and no labels. All memory comes from the arena
 * given to the sampler and is valid until it is reset. */
typedef struct {
  int64_t n_way, k_shot, q_query;
  ml_tensor xs;     /* support inputs: (n_s, C, H, W) images or (n_s, D) features */
  ml_tensor xq;     /* query inputs */
  int32_t *ys, *yq; /* classification labels, or NULL */
  ml_tensor ts, tq; /* regression targets (n, 1); data NULL for classification */
  int64_t n_s, n_q; /* support and query sizes */
  int32_t *gys, *gyq; /* global class index of each example (pre-training baselines), or NULL */
  int64_t *src_s, *src_q; /* dataset image index of each example, or NULL (for exporting episodes) */
  int8_t *rot_s, *rot_q;  /* its rotation in quarter turns (numpy.rot90 convention), or NULL */
} ml_episode;

/* ---- class splits ----
 * A split is a list of base classes of a dataset, optionally with rotations: with rotations = 4,
 * base class b (position i in the list) becomes classes 4*i + r, r = 0..3, whose images are the
 * base images rotated counter-clockwise by r * 90 degrees (numpy.rot90), made on the fly when
 * an episode is built. Free with ml_split_free. */
typedef struct {
  int64_t *base;    /* n_base dataset class indices */
  int64_t n_base;
  int rotations;    /* 1 (none) or 4 */
  int64_t n_classes; /* n_base * rotations */
  int64_t min_class_size; /* fewest images of any base class in the split */
} ml_split;

/* The given dataset classes (in that order). rotations: 1 or 4 (4 needs square images). */
ML_API ml_status ml_split_from_classes(const ml_dataset *ds, const int64_t *classes, int64_t n, int rotations,
                                       ml_split *out);
/* Classes [begin, end) of the dataset. */
ML_API ml_status ml_split_range(const ml_dataset *ds, int64_t begin, int64_t end, int rotations, ml_split *out);
/* Every class whose group (alphabet) name is one of names, in dataset order; a name that
 * matches no group is an ML_ERR_NOTFOUND error naming it. */
ML_API ml_status ml_split_from_groups(const ml_dataset *ds, const char *const *names, int64_t n, int rotations,
                                      ml_split *out);
/* The standard MAML Omniglot split of the 1623-class set from ml_omniglot_load_full (background
 * rows 0..963, then evaluation rows 0..658): classes 0..1199 for meta-training with
 * train_rotations (4 in the MAML protocol), classes 1200..1622 (423) for testing, unrotated.
 * Deterministic: no shuffle. ML_ERR_ARG if the dataset does not have 1623 classes. */
ML_API ml_status ml_split_maml_omniglot(const ml_dataset *ds, int train_rotations, ml_split *train, ml_split *test);
ML_API void ml_split_free(ml_split *s); /* NULL-safe; zeroes *s */

/* ---- N-way K-shot sampling ----
 * Draws n_way distinct split classes and k_shot + q_query distinct images of each, with an RNG
 * keyed by ml_rng_init(&r, seed, ml_rng_key(iteration, task_index, salt)): the episode depends
 * on those numbers only, not on the thread, rank or earlier draws. Writes into arena memory:
 *   xs (n_way*k_shot, C, H, W) float = pixel / 255, class-major (class 0's K shots, then
 *   class 1's, ...), ys[i] = i / k_shot; xq (n_way*q_query, C, H, W), yq likewise; gys / gyq
 *   hold each example's class index within the split (0 .. split->n_classes - 1).
 * Errors: ML_ERR_ARG when n_way exceeds the split's classes or k_shot + q_query exceeds the
 * images of its smallest class; ML_ERR_NOMEM when the arena is exhausted. */
ML_API ml_status ml_fewshot_sample(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot,
                                   int64_t q_query, uint64_t seed, uint64_t iteration, uint64_t task_index,
                                   ml_arena *arena, ml_episode *out);
/* Episode `index` of the fixed evaluation list for seed: the same (dataset, split, N, K, Q, seed,
 * index) gives the same episode bytes in every run and for every algorithm. It uses a reserved
 * iteration key (ML_EVAL_ITERATION), so it never coincides with a training episode. */
#define ML_EVAL_ITERATION UINT64_C(0xE7A1E7A1E7A1E7A1)
ML_API ml_status ml_fewshot_eval_episode(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot,
                                         int64_t q_query, uint64_t seed, int64_t index, ml_arena *arena,
                                         ml_episode *out);
/* Episodes 0..count-1 of that list into eps[] (all from one arena; mind the memory). */
ML_API ml_status ml_fewshot_eval_set(const ml_dataset *ds, const ml_split *split, int64_t n_way, int64_t k_shot,
                                     int64_t q_query, uint64_t seed, int64_t count, ml_arena *arena, ml_episode *eps);

/* Lake run r (0..19) as an episode: n_way = 20, k_shot = 1, q_query = 1; xs = the 20 training
 * images (ys = 0..19), xq = the 20 test images, yq = their true training index. */
ML_API ml_status ml_lake_episode(const ml_lake_runs *runs, int64_t run, ml_arena *arena, ml_episode *out);

/* ---- sinusoid regression (MAML paper, section 5.1) ----
 * y = amplitude * sin(x - phase), amplitude ~ U[amp_min, amp_max], phase ~ U[phase_min,
 * phase_max], x ~ U[x_min, x_max]. Defaults: amplitude 0.1-5, phase 0-pi, x in [-5, 5]. */
typedef struct {
  float amp_min, amp_max, phase_min, phase_max, x_min, x_max;
} ml_sinusoid_opts;
ML_API ml_sinusoid_opts ml_sinusoid_defaults(void);

/* K support and Q query points of one sinusoid, keyed like ml_fewshot_sample (its own salt).
 * Episode: n_way = 1, xs (K, 1), ts (K, 1), xq (Q, 1), tq (Q, 1), ys = yq = NULL.
 * amplitude / phase receive the task's parameters when not NULL. opts NULL = defaults. */
ML_API ml_status ml_sinusoid_sample(const ml_sinusoid_opts *opts, int64_t k_shot, int64_t q_query, uint64_t seed,
                                    uint64_t iteration, uint64_t task_index, ml_arena *arena, ml_episode *out,
                                    float *amplitude, float *phase);

#endif
