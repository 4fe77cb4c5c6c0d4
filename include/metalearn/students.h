/* students: students as tasks. A student model predicts whether a student answers an exercise
 * correctly after seeing a few of the student's answers (the support): baselines (exercise
 * difficulty alone, 1PL and 2PL IRT, Elo) and meta-learned models trained through ml_algo
 * (MAML, FO-MAML, Meta-SGD, ANIL, Reptile) where every student is a task and the per-student
 * abilities are fast weights adapted by the inner loop.
 *
 * Protocol A (few-shot): the support is a student's first K answers, the query the rest; a
 * student with K or fewer answers is dropped and counted. Results are rows of a table
 * (model x column) that other protocols (next-step knowledge tracing) append to. */
#ifndef METALEARN_STUDENTS_H
#define METALEARN_STUDENTS_H

#include <stdio.h>

#include "metalearn/algos.h"
#include "metalearn/answers.h"
#include "metalearn/eval.h"

typedef enum {
  ML_STUDENT_DIFFICULTY, /* p = sigmoid(-b_j): the same for every student */
  ML_STUDENT_IRT1,       /* p = sigmoid(theta - b_j); b by joint MAP on the training students */
  ML_STUDENT_IRT2,       /* p = sigmoid(a_j (theta - b_j)) */
  ML_STUDENT_ELO,        /* Elo with the uncertainty function U(n) = alpha / (1 + beta n) (Pelanek 2016) */
  ML_STUDENT_META,       /* meta-learned (see ml_student_config) */
  ML_STUDENT_KIND_COUNT
} ml_student_kind;

ML_API const char *ml_student_kind_name(ml_student_kind k); /* "difficulty", "irt1", "irt2", "elo", "meta" */
ML_API ml_status ml_student_kind_parse(const char *name, ml_student_kind *out);

typedef struct {
  ml_student_kind kind;
  /* IRT: priors N(0, 1) on the training students' abilities, N(0, item_sd^2) on difficulties,
   * N(0, disc_sd^2) on log-discriminations; `sweeps` alternating Newton passes. A new student's
   * ability is the MAP under N(0, ability_sd^2) (1; BOBCAT's joint training learns it). */
  float item_sd, disc_sd, ability_sd;
  int64_t sweeps;
  float elo_alpha, elo_beta; /* 1, 0.05 */
  /* Meta-learned model: logit = theta0 + <theta, u_j> + theta_s[skill] - b_j - c_skill
   *   + (w + w_s[skill]) . (log1p of the student's earlier successes / failures on the skill in
   *          the support, log1p of the answer's position) + theta_pos log1p(position)
   * with shared b, u, c, w and per-student fast weights theta0, theta (dim), theta_s
   * (one per skill). The pieces can be switched off to measure what each buys. */
  ml_algo_kind algo;
  int64_t dim;          /* ability vector size; 0 = none */
  bool skill_abilities; /* theta_s */
  bool order_features;  /* w . (support counts, position) */
  bool skill_order;     /* the order weights per skill too (shared, not per student) */
  bool skill_loadings;  /* loadings u per skill instead of per exercise */
  bool learning_slope;  /* a per-student slope over log1p(position) among the fast weights */
  int64_t k_train;      /* support size of the training tasks (the K that will be tested) */
  int64_t max_query;    /* query answers per training task (a random subset of the rest) */
  bool weight_by_length; /* draw training students in proportion to their query length (the
                            pooled AUC weighs students by their answers); false = uniform */
  int64_t iterations, meta_batch, inner_steps, inner_steps_test;
  float inner_lr, outer_lr; /* Reptile: inner Adam rate, outer SGD step (0.1 and 1 suit it) */
  int64_t eval_every;   /* validation AUC every this many iterations; the best is kept (0 = off) */
  int threads;          /* 0 = ml_num_threads() */
  uint64_t seed;
  bool verbose;         /* progress lines on stderr */
} ml_student_config;

ML_API ml_student_config ml_student_defaults(ml_student_kind kind);

/* One student's answers (a view into ml_answers arrays). */
typedef struct {
  const int32_t *item, *skill;
  const uint8_t *correct; /* ignored for a query */
  int64_t n;
} ml_student_log;

/* Student s of a as a log (the whole sequence). */
ML_API ml_student_log ml_student_log_of(const ml_answers *a, int64_t s);

/* The MAP ability under a N(0, ability_sd^2) prior from a student's answers, for IRT with
 * discriminations a (NULL: 1PL) and difficulties b: logit = a_j (theta - b_j), Newton steps clipped
 * to 1. */
ML_API float ml_irt_ability(const float *a, const float *b, float ability_sd, const ml_student_log *s);

typedef struct ml_student_model ml_student_model;

/* Fits on the training students. n_items / n_skills size the tables; q maps exercises to skills
 * (used to predict the whole pool; may be NULL when every answer carries its skill). valid (may
 * be NULL or empty) selects the best meta-training iteration. The caller frees the model. */
ML_API ml_status ml_student_model_fit(const ml_student_config *cfg, int64_t n_items, int64_t n_skills,
                                      const ml_qmatrix *q, const ml_answers *train, const ml_answers *valid,
                                      ml_student_model **out);
ML_API void ml_student_model_free(ml_student_model *m);
ML_API const ml_student_config *ml_student_model_config(const ml_student_model *m);
/* The meta-learned model's parameters (NULL for baselines): save / load with io's checkpoints. */
ML_API ml_params *ml_student_model_params(ml_student_model *m);
/* One file (safetensors, readable by PyTorch tools) holding the configuration as metadata, the
 * exercise-to-skill map and the fitted tables (baselines) or the meta-learned parameters and
 * Meta-SGD rates. ml_student_model_load gives a model ready to predict (threads: for its algo,
 * 0 = all cores); errors name the file. */
ML_API ml_status ml_student_model_save(const ml_student_model *m, const char *path);
ML_API ml_status ml_student_model_load(const char *path, int threads, ml_student_model **out);
/* The exercises' fitted difficulties (n_items floats; for the meta model its shared b_item):
 * grading exercises into levels for adaptive practice. */
ML_API void ml_student_model_difficulties(const ml_student_model *m, float *b);
/* A copy of a baseline (difficulty, IRT, Elo) with other difficulties b (n_items floats; NULL: its
 * own) and, for IRT, another ability prior sd: the student model of a selection policy trained
 * jointly with it (practice.h), or the 1PL with a learned prior. */
ML_API ml_status ml_student_model_with_difficulties(const ml_student_model *m, const float *b, float ability_sd,
                                                    ml_student_model **out);
ML_API int64_t ml_student_model_n_items(const ml_student_model *m);
ML_API int64_t ml_student_model_n_skills(const ml_student_model *m);
/* Meta-training iterations behind the kept parameters: the validation pick, else all. */
ML_API int64_t ml_student_model_best_iteration(const ml_student_model *m);
/* Meta-SGD's learned inner rates (same layout as the parameters), or NULL. */
ML_API ml_params *ml_student_model_rates(ml_student_model *m);

/* Adapts to the support and writes P(correct) for each query answer into p (query->n floats).
 * arena: scratch memory for the meta model (reset by this call; NULL = a private one). Calls with
 * distinct arenas may run concurrently. */
ML_API ml_status ml_student_model_predict(const ml_student_model *m, const ml_student_log *support,
                                          const ml_student_log *query, ml_arena *arena, float *p);

/* For adaptive practice: adapts to a student's answers (support->n may be 0: the population)
 * and writes P(correct) for every exercise of the pool (p_item, n_items floats, the exercise's
 * first skill from q) and per-skill mastery (mastery, n_skills floats: the mean predicted success
 * over the skill's exercises; NAN for a skill with no exercise). Either output may be NULL. */
ML_API ml_status ml_student_model_predict_pool(const ml_student_model *m, const ml_student_log *support,
                                               ml_arena *arena, float *p_item, float *mastery);

/* ---- datasets ----
 * name: "assist2009" (assist2009_updated), "assist2015", "statics" (STATICS), "assistments-dkt"
 * (the DKT paper's copy: no folds, fold must be 0), or "kt:DIR" for any folder laid out the same
 * way (DIR/<basename of DIR>_train.csv, _test.csv, optional folds and Qmatrix.csv). data_root:
 * NULL = $METALEARN_DATA, else ../shared/data. label (label_cap bytes) receives the folder's name.
 * For the three shared datasets the sizes are checked against the known facts. */
ML_API ml_status ml_students_dataset_open(const char *name, const char *data_root, int fold, ml_kt_dataset *out,
                                          char *label, size_t label_cap);

/* ---- results table ----
 * One cell: a model under one column ("K=1", ..., or another protocol's "B all", "B 3-10").
 * A protocol fills rows; ml_students_table_print pivots them into models x columns. */
typedef struct {
  char model[64];
  char column[24];
  ml_binary_report r;
  int64_t n_students, n_dropped;
  double fit_seconds, eval_seconds;
  /* the predictions behind r (owned; ml_students_row_free), kept for paired comparisons; a
   * protocol that does not keep them leaves these NULL / 0 */
  float *pred;
  uint8_t *label;
  int64_t *offsets; /* n_groups + 1 */
  int64_t n_groups;
  /* filled by ml_students_compare: AUC minus the best baseline's in the same column (paired
   * bootstrap over students), and that baseline's name; delta_vs[0] = 0 when not compared */
  ml_ci delta;
  char delta_vs[64];
} ml_students_row;

ML_API void ml_students_row_free(ml_students_row *r); /* frees the predictions; NULL-safe */

/* A row from any protocol's predictions (e.g. next-step knowledge tracing, column "B all" or
 * "B 3-10"): p and y over the answers of n_groups students, student g owning rows
 * [offsets[g], offsets[g+1]). Computes the metrics with bootstrap CIs and keeps copies of the
 * arrays so the row can be compared and printed with the protocol A rows. */
ML_API ml_status ml_students_row_from_predictions(const char *model, const char *column, const float *p,
                                                  const uint8_t *y, const int64_t *offsets, int64_t n_groups,
                                                  int64_t n_boot, uint64_t seed, ml_students_row *out);

/* For each column: the baseline row (is_baseline[i]) with the highest AUC, then every other row
 * of that column with predictions on the same answers gets delta / delta_vs. */
ML_API ml_status ml_students_compare(ml_students_row *rows, int64_t n, const bool *is_baseline, int64_t n_boot,
                                     uint64_t seed);

/* Protocol A on the test students at support size k: predictions for every query answer,
 * metrics with bootstrap CIs over students (n_boot resamples keyed by seed). out->model is left
 * for the caller; out->column = "K=<k>". */
ML_API ml_status ml_students_protocol_a(const ml_student_model *m, const ml_answers *test, int64_t k, int64_t n_boot,
                                        uint64_t seed, int threads, ml_students_row *out);

/* Prints the AUC table (models x columns, "0.663 [0.655, 0.671]") then one line per cell with
 * every metric, students kept / dropped and wall times. dataset names the table. */
ML_API void ml_students_table_print(FILE *f, const char *dataset, const ml_students_row *rows, int64_t n);

#endif
