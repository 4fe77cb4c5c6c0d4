/* recommend: cold-start recommendation as meta-learning, each user a task (MeLU, KDD 2019).
 * A user's support set is the few ratings they gave, the query set what they rate next; a model
 * meta-trained over many users adapts to a new one with a few gradient steps on the support.
 *
 * Protocol (on ml_ratings): users with min..max ratings are split into n_folds folds by a seed;
 * fold f is the cold test set, 10% of the other eligible users validate (early stopping, tuning),
 * the rest (and every user outside the range) train. Per test user, query = 10 random ratings,
 * support = the rest, truncated to K (nested: the first K of one seeded order). Scenarios:
 *   NEW_USERS        the protocol above (primary);
 *   TIME_ORDER       support = the user's first K ratings in time, query = the next 10;
 *   NEW_ITEMS        20% of the items (seeded) are held out of all training; a test user's query
 *                    is up to 10 ratings of held-out items, the support their other ratings;
 *   NEW_ITEMS_WARM   the same query for training users (existing users, new items).
 * Nothing of a test user's ratings reaches training, item statistics or baselines: training only
 * sees ratings whose train_mask is set (training users; never held-out items in the new-item
 * split).
 *
 * An episode encodes each rating as a row of ML_REC_COLS + n_genres floats (see ml_rec_col):
 * category indices (0 = unknown), log(1 + K) and the item's genres as weights summing to 1. */
#ifndef METALEARN_RECOMMEND_H
#define METALEARN_RECOMMEND_H

#include <stdio.h>

#include "metalearn/algos.h"
#include "metalearn/ratings.h"

typedef enum { ML_REC_NEW_USERS, ML_REC_TIME_ORDER, ML_REC_NEW_ITEMS, ML_REC_NEW_ITEMS_WARM, ML_REC_SCENARIOS } ml_rec_scenario;
ML_API const char *ml_rec_scenario_name(ml_rec_scenario s); /* "new-users", "time-order", ... */

enum { ML_REC_COL_ITEM, ML_REC_COL_GENDER, ML_REC_COL_AGE, ML_REC_COL_OCC, ML_REC_COL_ZIP, ML_REC_COL_YEAR,
       ML_REC_COL_LOGK, ML_REC_COLS };
#define ML_REC_K_FULL INT64_C(-1) /* K = the whole support */

typedef struct {
  uint64_t seed;
  int64_t n_folds, fold;
  double val_frac;
  int64_t min_ratings, max_ratings; /* eligible (test / validation) users: 13..100 */
  int64_t n_query;                  /* 10 */
  double new_item_frac;             /* 0.2 */
  bool new_items;                   /* hold the new items out of training (the NEW_ITEMS* split) */
  bool train_in_range;              /* meta-training tasks only from training users with min..max
                                     * usable ratings, like the test users (item statistics, MF and
                                     * baselines still use every training user) */
} ml_rec_protocol;
ML_API ml_rec_protocol ml_rec_protocol_defaults(void);

enum { ML_REC_ROLE_TRAIN, ML_REC_ROLE_VAL, ML_REC_ROLE_TEST };

/* One fold of the protocol. Owns its arrays; free with ml_rec_split_free. */
typedef struct {
  const ml_ratings *r;
  ml_rec_protocol p;
  uint8_t *role;        /* per user */
  uint8_t *item_new;    /* per item: held out (only meaningful with p.new_items) */
  uint8_t *train_mask;  /* per rating: training may see it */
  int64_t *test, *val, *train; /* user lists */
  int64_t n_test, n_val, n_train;
  uint8_t *meta_query;  /* per rating: a training user's fixed query (n_query seeded usable ratings), kept out
                         * of the item tables metarec starts from, so meta-training queries are unseen */
  int64_t *train_tasks; /* training users with min..max usable ratings (meta-training tasks) */
  int64_t n_train_tasks;
  double mu;            /* mean training rating */
  float *item_mean;     /* per item, from training ratings (global mean where none) */
} ml_rec_split;

ML_API ml_status ml_rec_split_new(const ml_ratings *r, const ml_rec_protocol *p, ml_rec_split *out);
ML_API void ml_rec_split_free(ml_rec_split *s);

/* The rating indices of user u's support (K of them, or all for ML_REC_K_FULL) and query under a
 * scenario, into caller arrays of the user's rating count. Returns false when the user has no
 * query in that scenario (e.g. no held-out items). */
ML_API bool ml_rec_user_sets(const ml_rec_split *s, int64_t u, ml_rec_scenario sc, int64_t k, int64_t *sup,
                             int64_t *n_sup, int64_t *qry, int64_t *n_qry);
/* An episode (regression: xs, ts, xq, tq) from rating index lists, in arena memory. Items held
 * out in a new-item split are encoded as unknown. */
ML_API ml_status ml_rec_episode(const ml_rec_split *s, const int64_t *sup, int64_t n_sup, const int64_t *qry,
                                int64_t n_qry, ml_arena *arena, ml_episode *out);
/* Encodes one (user features, item) row; user < 0 = features from `feat` (gender, age, occ, zip). */
ML_API void ml_rec_encode_row(const ml_rec_split *s, int64_t user, const uint8_t *feat, int64_t item, int64_t k,
                              float *row);
ML_API int64_t ml_rec_row_width(const ml_ratings *r); /* ML_REC_COLS + n_genres */

/* Meta-training task source (an ml_task_fn over the split's train_tasks): a random user, query =
 * n_query random usable ratings, support = the rest truncated to K drawn from k_choices (K drawn
 * like the test ones) or the full rest when n_k = 0. */
typedef struct {
  const ml_rec_split *split;
  int64_t k_choices[8];
  int64_t n_k;
  uint64_t seed;
  bool fixed_query;     /* query = the user's meta_query ratings, support drawn from the others */
} ml_rec_task_source;
ML_API ml_status ml_rec_task(void *ctx, int64_t iteration, int64_t index, ml_arena *arena, ml_episode *out);
/* The same task as rating index lists (query first, then support) in arena memory. */
ML_API ml_status ml_rec_task_sets(const ml_rec_task_source *src, int64_t iteration, int64_t index, ml_arena *arena,
                                  int64_t **qry, int64_t *n_qry, int64_t **sup, int64_t *n_sup);

/* ---- models ---- */
typedef enum { ML_REC_MELU, ML_REC_METAREC } ml_rec_model_kind;
typedef struct {
  ml_rec_model_kind kind;
  int64_t emb_dim;    /* 32: one embedding per feature field */
  int64_t hidden;     /* 64: MLP 64-64-1 */
  /* metarec pieces (ablations) */
  bool item_id;       /* item-identity bias and factors (and the item id as an MLP field) */
  bool learn_items;   /* meta-learn the item bias / factors too (else they stay at their MF start) */
  bool user_bias;     /* a per-user bias adapted in the inner loop */
  int64_t factors;    /* per-user vector (adapted) against item factors; 0 = none */
  bool trust;         /* learned K-dependent trust sigmoid(a log(1+K) + c) on the user terms */
  bool demographics;  /* the user terms start from a linear map of the user's demographic
                       * embeddings (gender, age, occupation, zip) instead of one shared start */
  bool mlp;           /* the MeLU feature MLP */
  bool adapt_mlp;     /* the MLP adapts in the inner loop (MeLU: yes) */
} ml_rec_model_config;
ML_API ml_rec_model_config ml_rec_model_defaults(ml_rec_model_kind kind);

/* A custom ml_model for the split's data (item count, genre count, global mean). Meta-learned
 * tables come first, the inner-loop parameters last (model->head_first), so adapt_head_only
 * adapts exactly those. The caller frees with ml_rec_model_free. */
ML_API ml_status ml_rec_model_new(const ml_rec_model_config *cfg, const ml_ratings *r, double mu, const float *item_mean,
                                  uint64_t seed, ml_model **out);
ML_API void ml_rec_model_free(ml_model *m);
/* Sets the item bias and factor tables (item i at row i + 1; factors f wide, ignored unless f
 * matches the model's), e.g. from matrix factorization on the training ratings. */
ML_API void ml_rec_model_set_items(ml_model *m, const float *bias, const float *factors, int64_t f);
/* Fits biased MF (the model's factor count, 30 epochs) on the split's training ratings and sets
 * the model's item tables from it. Meta-training starts from tables fitted without the training
 * users' meta-training queries (all_ratings false), so its queries are unseen as at test time;
 * for testing the tables are refitted on all training ratings (all_ratings true). A saved run
 * recomputes them (the same seed gives the same tables). */
ML_API ml_status ml_rec_model_fit_items(ml_model *m, const ml_rec_split *s, bool all_ratings, uint64_t seed);

/* ---- meta-ridge (ours), as saved by a run: a new user folded into MF's item tables by a ridge
 * solve whose prior was meta-learned over the training users ---- */
typedef struct ml_rec_ridge ml_rec_ridge;
/* Reads a run's ridge.safetensors (errors name the file) and recomputes the item tables on the
 * split's training ratings (the run's split and seed give the run's tables). */
ML_API ml_status ml_rec_ridge_load(const char *path, const ml_rec_split *s, ml_rec_ridge **out);
/* Predicted ratings of every item (out: n_items) for a user with ratings `ratings` of items `items`. */
ML_API void ml_rec_ridge_predict_user(const ml_rec_ridge *R, const int64_t *items, const float *ratings, int64_t n,
                                      float *out);
ML_API void ml_rec_ridge_free(ml_rec_ridge *R);

/* ---- metrics ---- */
typedef struct {
  double mae, rmse, ndcg1, ndcg3; /* of one user's query */
} ml_rec_metrics;
/* Per-user metrics of predictions pred against truth (n values); nDCG with gain 2^r - 1. */
ML_API ml_rec_metrics ml_rec_score(const float *pred, const float *truth, int64_t n);
/* Expected nDCG@k of a uniformly random ranking (exact). */
ML_API double ml_rec_ndcg_random(const float *truth, int64_t n, int64_t k);

/* ---- the experiment (protocol x methods x K x scenarios) ---- */
typedef struct {
  const char *data_dir;
  const char *cache_dir;
  ml_rec_protocol protocol;
  int64_t folds_run;        /* folds actually run (1..n_folds) */
  bool scenarios[ML_REC_SCENARIOS];
  const char *methods;      /* comma list: global,item,user,itembias,damped,mf,finetune,melu,metarec,ridge */
  ml_algo_kind algo;        /* for melu / metarec */
  int64_t iterations, meta_batch, inner_steps, inner_steps_test;
  float inner_lr, outer_lr, clip;
  float metarec_lr;         /* metarec's initial Meta-SGD rates */
  int64_t metarec_steps;    /* metarec's inner steps (train and test) */
  bool metarec_full_support; /* ablation: meta-train metarec on full supports, not K drawn like the test */
  float metarec_outer_lr;
  int64_t metarec_meta_batch, metarec_iterations; /* its few meta-parameters want large, many batches */
  bool metarec_tune_scale;  /* choose one scale of its learned rates by validation MAE (as MF's lambda) */   /* metarec's Adam rate (its few meta-parameters move faster than MeLU's) */
  /* meta-ridge: MF fold-in as a closed-form inner loop with a meta-learned prior */
  bool ridge_mse;           /* ablation: meta-train on the query MSE instead of the MAE */
  int64_t ridge_iterations, ridge_meta_batch;
  float ridge_lr;
  int64_t eval_every;       /* validation check for early stopping */
  int threads;
  bool quiet;
  ml_rec_model_config metarec;
  const char *run_dir;      /* NULL = no files */
  const char *export_dir;   /* NULL, or write each fold's users and test sets there (fold<f>.txt) for
                             * the PyTorch reference in bench/ to run the same folds */
} ml_rec_experiment;
ML_API ml_rec_experiment ml_rec_experiment_defaults(void);
/* Runs it and prints the table to out. */
ML_API ml_status ml_rec_run(const ml_rec_experiment *e, FILE *out);

#endif
