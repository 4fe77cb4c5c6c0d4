/* fewshot: the few-shot application end to end. A configuration (key = value, the same keys as
 * the CLI's long options) names a dataset, an algorithm and its settings; a session loads the
 * data, builds the model and the algorithm, meta-trains into a run directory (resolved config,
 * JSON-lines metrics, safetensors checkpoints, resumable), evaluates with the field's protocol
 * (mean accuracy over fixed seeded test episodes with a 95% confidence interval; MSE for
 * sinusoid regression), scores Lake's 20-way one-shot runs, and adapts to a user's own images. */
#ifndef METALEARN_FEWSHOT_H
#define METALEARN_FEWSHOT_H

#include "metalearn/algos.h"
#include "metalearn/data.h"
#include "metalearn/dist.h"
#include "metalearn/tasks.h"

#define ML_PATH_MAX 1024

typedef struct {
  char dataset[32];   /* omniglot (full .npz, MAML split) | omniglot-small (small zips) | sinusoid | folder */
  char data_dir[ML_PATH_MAX];
  char folder[ML_PATH_MAX];       /* dataset = folder: one subfolder per class */
  char test_groups[ML_PATH_MAX];  /* omniglot-small: comma-separated test alphabets */
  char cache_dir[ML_PATH_MAX];    /* "" = default cache, "none" = no cache */
  char algo[32];
  int64_t n_way, k_shot, q_query, q_query_test, image_size, filters, train_way;
  int64_t iterations, meta_batch, inner_steps, inner_steps_test;
  int64_t eval_episodes, eval_every, log_every, checkpoint_every, pretrain_way, finetune_steps, lr_decay_every;
  int64_t seed, threads;
  double inner_lr, meta_lr, clip, matching_scale, finetune_lr, folder_train_fraction, max_seconds, lr_decay;
  bool rotations, multi_step_loss;
  bool tensorboard; /* TensorBoard event files beside metrics.jsonl (on by default) */
} ml_fewshot_config;

ML_API ml_fewshot_config ml_fewshot_defaults(void);
/* Sets one key from text; an unknown key or a bad value is ML_ERR_ARG naming both. */
ML_API ml_status ml_fewshot_set(ml_fewshot_config *c, const char *key, const char *value);
/* Reads key = value lines (# or ; comments, [sections] ignored) with inih. Errors name the file
 * and the line (malformed lines) or the key (unknown keys, bad values). */
ML_API ml_status ml_fewshot_read_config(const char *path, ml_fewshot_config *c);
/* Writes every key, atomically. */
ML_API ml_status ml_fewshot_write_config(const ml_fewshot_config *c, const char *path);
/* The keys, for building option tables and help: name i (NULL past the last) and its help. */
ML_API const char *ml_fewshot_key_name(int64_t i);
ML_API const char *ml_fewshot_key_help(const char *key);

typedef struct ml_fewshot ml_fewshot;

/* Loads the data and builds model and algorithm. Errors (missing files, corrupt archives, N or
 * K+Q larger than the data allows, unknown algorithm) name the problem. Free with ml_fewshot_close. */
ML_API ml_status ml_fewshot_open(const ml_fewshot_config *c, ml_fewshot **out);
ML_API void ml_fewshot_close(ml_fewshot *f);
ML_API ml_algo *ml_fewshot_algo(ml_fewshot *f);
ML_API const ml_fewshot_config *ml_fewshot_config_of(const ml_fewshot *f);
/* Spreads the session over the MPI ranks of d (NULL = one process; d must outlive the session):
 * each meta-batch and each evaluation is split across the ranks, and only rank 0 writes the run
 * directory. Checkpoints do not depend on the number of ranks. ML_ERR_ARG unless the number of
 * ranks is a power of two dividing the meta-batch. */
ML_API ml_status ml_fewshot_set_dist(ml_fewshot *f, ml_dist *d);
/* The session's dataset and its training / test splits (NULL for sinusoid), valid until
 * ml_fewshot_close: benchmarks export exactly the episodes the session trains on. */
ML_API void ml_fewshot_data(const ml_fewshot *f, const ml_dataset **ds, const ml_split **train, const ml_split **test);

/* Called after every logged iteration (and at the end); return false to stop early (the run
 * stays resumable from its last checkpoint). */
typedef bool (*ml_progress_fn)(void *ctx, int64_t iteration, int64_t total, const ml_step_stats *s, double seconds);

/* Meta-trains into run_dir (created if missing): config.ini, metrics.jsonl, checkpoint.safetensors.
 * With resume, continues from the checkpoint there; the result equals an uninterrupted run. */
ML_API ml_status ml_fewshot_train(ml_fewshot *f, const char *run_dir, bool resume, ml_progress_fn progress,
                                  void *ctx);
/* Loads parameters (and Meta-SGD rates) from a checkpoint written by ml_fewshot_train. */
ML_API ml_status ml_fewshot_load(ml_fewshot *f, const char *checkpoint);
/* Mean accuracy (or MSE) over `episodes` fixed test episodes, with the 95% CI half-width. */
ML_API ml_status ml_fewshot_evaluate(ml_fewshot *f, int64_t episodes, double *mean, double *ci95);
/* ml_fewshot_evaluate with options (progress, inner steps; NULL = defaults). */
ML_API ml_status ml_fewshot_evaluate_ex(ml_fewshot *f, int64_t episodes, const ml_eval_options *opt, double *mean,
                                        double *ci95);
/* Lake et al.'s 20 within-alphabet runs (all_runs.zip in data_dir/omniglot): error rate in %. */
ML_API ml_status ml_fewshot_lake(ml_fewshot *f, double *error_pct, double *per_run_error);
/* Adapts on support (one class per dataset class, labels = class index) and classifies
 * n_query images (same C, H, W as the model's input, uint8 with the training convention).
 * pred[i] receives the class index. */
ML_API ml_status ml_fewshot_adapt(ml_fewshot *f, const ml_dataset *support, const uint8_t *query, int64_t n_query,
                                  int32_t *pred, float *confidence);

#endif
