/* practice: adaptive practice on top of a student model (students.h). Given what a student has
 * answered, choose the next exercise: at random, by maximum information (predicted success
 * closest to 0.5: maximal Fisher information under 1PL, the computerized-adaptive-testing rule)
 * or at a target difficulty (predicted success closest to a target, 0.7 by default), with a
 * logistic recalibration so that the observed success on the picked exercises sits at the target.
 *
 * Also: the BOBCAT protocol (Ghosh and Lan 2021) that scores a policy by how well the student
 * model, adapted on the n exercises the policy picked, predicts the student's held-out answers;
 * a learning hierarchy (exercises graded into difficulty levels, a per-group level that moves up
 * when mastery passes a threshold and back when it falls); and a skill-influence graph measured
 * from the student model as Piech et al. 2015 did with DKT. */
#ifndef METALEARN_PRACTICE_H
#define METALEARN_PRACTICE_H

#include <stdio.h>

#include "metalearn/students.h"

typedef enum {
  ML_PRACTICE_RANDOM,
  ML_PRACTICE_INFO,   /* max p (1 - p): predicted success closest to 0.5 */
  ML_PRACTICE_TARGET, /* calibrated predicted success closest to the target */
  ML_PRACTICE_LEARNED, /* a meta-learned selection network (ml_practice_selector, BOBCAT) */
  ML_PRACTICE_POLICY_COUNT
} ml_practice_policy;

ML_API const char *ml_practice_policy_name(ml_practice_policy p); /* "random", "info", "target", "learned" */
ML_API ml_status ml_practice_policy_parse(const char *name, ml_practice_policy *out);

/* Recalibration p' = sigmoid(slope * logit(p) + intercept); {1, 0} is the identity. */
typedef struct {
  float slope, intercept;
} ml_practice_calib;

ML_API ml_practice_calib ml_practice_calib_identity(void);
ML_API float ml_practice_calibrate(ml_practice_calib c, float p);
/* Logistic regression of y on logit(p) (Newton, a weak N(1, 1) / N(0, 1) prior keeps it finite on
 * one-class data). */
ML_API ml_status ml_practice_calib_fit(const float *p, const uint8_t *y, int64_t n, ml_practice_calib *out);
/* The same with the prior N(prior, 1 / precision) on (slope, intercept). */
ML_API ml_status ml_practice_calib_fit_prior(const float *p, const uint8_t *y, int64_t n, ml_practice_calib prior,
                                             double precision, ml_practice_calib *out);

/* One recalibration per number of answers the model has seen (0, 1, ..., n - 1; the last also
 * for more): a model that has seen no answer of the student errs differently from one that has
 * seen ten. */
#define ML_PRACTICE_CALIB_STEPS 16
typedef struct {
  ml_practice_calib step[ML_PRACTICE_CALIB_STEPS];
  int n; /* 1..ML_PRACTICE_CALIB_STEPS */
  /* Set by the fit: the worst |observed success on the picks - target| over the protocol's n on
   * the fitting students, without and with the fitted steps; kept = the steps are used (else
   * they are the identity: the calibration moved the picks away from the target there). */
  float worst_raw, worst_calibrated;
  bool kept;
} ml_practice_calib_steps;

ML_API ml_practice_calib_steps ml_practice_calib_steps_identity(void);
ML_API ml_practice_calib ml_practice_calib_at(const ml_practice_calib_steps *c, int64_t seen);

/* Scores of the n candidates (higher = better) under a rule policy (random, info, target): p are
 * the model's predictions (target mode calibrates them with c), rng draws the random policy's
 * scores. The learned policy needs its network: ml_practice_selector_scores; here it scores NAN
 * and picks -1. */
ML_API void ml_practice_scores(ml_practice_policy pol, const float *p, int64_t n, float target, ml_practice_calib c,
                               ml_rng *rng, float *score);
/* Index of the best-scoring candidate (the first on ties), -1 when n == 0. */
ML_API int64_t ml_practice_pick(ml_practice_policy pol, const float *p, int64_t n, float target, ml_practice_calib c,
                                ml_rng *rng);

/* Target mode kept on target over a session: the success to aim the next pick at so that the
 * expected success (sum of the calibrated predictions of the picks so far, `expected`) over all
 * picks plus this one equals the target (clamped to [0.05, 0.95]); with a small pool the
 * exercises near the target run out, and this moves the next pick to the other side instead of
 * letting the session drift. */
ML_API float ml_practice_balanced_target(float target, int64_t picks, double expected);

/* Each student's answers reduced to first attempts: one answer per distinct exercise, in order
 * of the first attempt (what BOBCAT's protocol labels each exercise by). */
ML_API ml_status ml_practice_first_attempts(const ml_answers *a, ml_answers *out);

/* ---- BOBCAT protocol ----
 * For each student with at least min_items distinct exercises (first attempts): pool = a random
 * pool_frac of them, held-out = the rest. A policy picks exercises from the pool one at a time,
 * seeing each answer before the next pick; after n picks (n capped at the pool size) the model
 * adapts on them and predicts the held-out answers. AUC and accuracy pooled over students, per
 * resample; resamples are paired (the same splits for every policy). */
typedef struct {
  int64_t resamples;  /* 5 */
  float pool_frac;    /* 0.8 */
  int64_t min_items;  /* 10 */
  float target;       /* 0.7 */
  int64_t ns[8];      /* 1, 3, 5, 10 */
  int n_ns;
  uint64_t seed;
  int threads;        /* 0 = ml_num_threads() */
  const struct ml_practice_selector *selector; /* the learned policy's network (NULL: not scored) */
  const ml_student_model *selector_model; /* the learned policy's student model (NULL: the protocol's);
                                             see ml_practice_selector_student */
} ml_practice_protocol_config;

ML_API ml_practice_protocol_config ml_practice_protocol_defaults(void);
/* The candidate pool of a student with n distinct exercises: round(pool_frac n), within [1, n - 1]. */
ML_API int64_t ml_practice_pool_size(const ml_practice_protocol_config *c, int64_t n);

/* One policy variant scored by the protocol: target mode with or without the calibration, and
 * with or without the balanced target. */
typedef struct {
  ml_practice_policy policy;
  bool calibrated, balanced;
} ml_practice_variant;

typedef struct {
  ml_practice_variant v;
  int64_t n;
  double auc, auc_sd, acc, acc_sd; /* mean and standard deviation over resamples */
  double target_dist;              /* mean |p' - target| over picked exercises (p' calibrated if used) */
  double picked_success;           /* observed success rate on the picked exercises */
  double picked_pred;              /* mean predicted (calibrated if used) success of the picks */
  int64_t students, heldout;       /* per resample */
  double seconds;                  /* wall time of the variant's picks and predictions */
} ml_practice_cell;

/* cells: n_variants x cfg->n_ns, variant-major. test holds first attempts (or whole logs: only
 * the first attempt of each exercise is used either way). */
ML_API ml_status ml_practice_protocol(const ml_student_model *m, const ml_answers *test,
                                      const ml_practice_protocol_config *cfg, const ml_practice_variant *variants,
                                      int n_variants, const ml_practice_calib_steps *cal, ml_practice_cell *cells);

/* Calibration for target mode: runs the target policy through the protocol on (up to
 * max_students of) the given students -- training or validation students, never the test ones --
 * and fits one recalibration per pick (the model having seen t answers) on the picked exercises'
 * (prediction, answer) pairs, shrunk towards the one fitted on all picks (prior sd 0.3: a step
 * has few picks); two rounds, since the calibrated policy picks different exercises. */
ML_API ml_status ml_practice_fit_target_calibration(const ml_student_model *m, const ml_answers *students,
                                                    const ml_practice_protocol_config *cfg, int64_t max_students,
                                                    ml_practice_calib_steps *out);
/* The same over several (model, students) pairs pooled into one fit: cross-fitting, each model
 * steering the picks of students it was not fitted on (max_students split evenly between sets). */
ML_API ml_status ml_practice_fit_target_calibration_sets(const ml_student_model *const *models,
                                                         const ml_answers *const *students, int n_sets,
                                                         const ml_practice_protocol_config *cfg, int64_t max_students,
                                                         ml_practice_calib_steps *out);

/* Prints the table variants x n (AUC +- sd, accuracy; target rows with distance and observed
 * success) in Markdown. */
ML_API void ml_practice_table_print(FILE *f, const char *title, const ml_practice_cell *cells, int n_variants,
                                    int n_ns);

/* ---- learned selection policy (BOBCAT, Ghosh and Lan 2021) ----
 * A selection network scores every exercise of the pool from the student's answers so far and
 * the student model's current predictions:
 *   score_j = a . (4 p_j (1 - p_j), 2 p_j - 1) + c_j + e_j . h,
 *   h = tanh(b + sum of U_right[i] over the exercises i answered right + sum of U_wrong[i] over
 *       those answered wrong),
 * with p_j the adapted student model's predicted success, so it starts as maximum information
 * (a = (a0, 0), c = e = 0) and learns which exercises tell most about a student's other answers.
 * Bilevel training on the protocol's tasks (training students' first attempts, random pool /
 * held-out splits): the policy samples n picks from softmax(score) over the remaining pool, the
 * student model adapts on the picked answers (inner level), and the outer objective is the
 * held-out log-likelihood after every pick 1..n; its gradient with respect to the discrete picks
 * is BOBCAT's unbiased estimator (REINFORCE, baseline = the mean return of the other rollouts of
 * the same student and split). With joint (BOBCAT's joint training, 1PL only) the 1PL's difficulties
 * and the sd of its ability prior (how far a few answers move a new student) are learned too, their
 * gradient taken through the MAP adaptation (ml_practice_1pl_outer);
 * otherwise the student model is the given one, fixed. The validation students
 * (greedy picks through the protocol, mean held-out AUC over the ns) pick the kept epoch; epoch 0
 * is maximum information itself. */
typedef struct ml_practice_selector ml_practice_selector;

typedef struct {
  int64_t hidden;   /* size of h and e_j (16) */
  int64_t epochs;   /* passes over the training students (20) */
  int64_t batch;    /* students per update (32) */
  int64_t rollouts; /* sampled pick sequences per student and split (4, >= 2) */
  float lr;         /* Adam (0.01) */
  float info_init;  /* initial weight of the information feature (5) */
  int64_t max_students; /* training students used per epoch (0 = all) */
  bool joint;       /* BOBCAT's joint training: the 1PL's difficulties and ability prior sd are
                     * learned too (irt1 only) */
  float student_l2; /* with an L2 pull towards the fitted difficulties (0.01) */
  uint64_t seed;
  int threads;      /* 0 = ml_num_threads() */
  bool verbose;     /* one line per epoch on stderr */
} ml_practice_selector_config;

ML_API ml_practice_selector_config ml_practice_selector_defaults(void);
/* Trains on `train` (answers; first attempts are taken) with the protocol's pool fraction, min_items
 * and largest n from pc; valid (may be NULL or empty: keep the last epoch) picks the epoch. */
ML_API ml_status ml_practice_selector_train(const ml_student_model *m, const ml_answers *train,
                                            const ml_answers *valid, const ml_practice_protocol_config *pc,
                                            const ml_practice_selector_config *c, ml_practice_selector **out);
ML_API void ml_practice_selector_free(ml_practice_selector *s);
ML_API int64_t ml_practice_selector_n_items(const ml_practice_selector *s);
/* Trained jointly with its student model (config joint)? Then the learned policy must be scored
 * with that model: a copy of the fitted 1PL base with the learned difficulties (*out NULL when not
 * joint; the caller frees it), passed as the protocol's selector_model. */
ML_API bool ml_practice_selector_joint(const ml_practice_selector *s);
ML_API ml_status ml_practice_selector_student(const ml_practice_selector *s, const ml_student_model *base,
                                              ml_student_model **out);
/* Kept epoch (0 = the maximum-information start) and its validation score (NAN without valid). */
ML_API int64_t ml_practice_selector_best_epoch(const ml_practice_selector *s);
ML_API double ml_practice_selector_valid_score(const ml_practice_selector *s);
/* Scores of n candidate exercises cand (with the model's predictions p) for a student whose
 * answers so far are `answered` (items must be < n_items; skills ignored). */
ML_API ml_status ml_practice_selector_scores(const ml_practice_selector *s, const ml_student_log *answered,
                                             const int32_t *cand, const float *p, int64_t n, float *score);
/* log pi(pick) of the policy's softmax over the n candidates, and (grad: NULL or numel floats of the
 * parameter block) grad += its gradient with respect to the parameters: the score function of the
 * policy-gradient estimator, exposed for checking and for users who train it their own way. */
ML_API ml_status ml_practice_selector_log_prob(const ml_practice_selector *s, const ml_student_log *answered,
                                               const int32_t *cand, const float *p, int64_t n, int64_t pick,
                                               float *grad, double *out);
/* Its parameters (info_weight, item_bias, item_emb, state_right, state_wrong, state_bias; joint:
 * student_difficulty, student_ability_logsd). */
ML_API ml_params *ml_practice_selector_params(ml_practice_selector *s);
/* BOBCAT's outer level for a 1PL with difficulties b (n_items): the held-out NLL (mean over
 * held->n answers) after the MAP ability (prior N(0, exp(ability_logsd)^2)) is adapted on the
 * support, and (grad: NULL or n_items floats) grad += its gradient with respect to b, (grad_logsd:
 * NULL or one float) += with respect to the prior's log sd, through the adaptation by implicit
 * differentiation. What joint training descends. */
ML_API ml_status ml_practice_1pl_outer(const float *b, int64_t n_items, float ability_logsd,
                                       const ml_student_log *support, const ml_student_log *held, float *grad,
                                       float *grad_logsd, double *nll);
/* safetensors with metadata (format "metalearn-selector"); load validates shapes and names the file. */
ML_API ml_status ml_practice_selector_save(const ml_practice_selector *s, const char *path);
ML_API ml_status ml_practice_selector_load(const char *path, ml_practice_selector **out);

/* ---- a meta-learned ability prior (prior.c) ----
 * The sd of the 1PL's N(0, sd^2) ability prior for new students, learned on the protocol's own
 * tasks over `students` (their first attempts; students the 1PL was not fitted on): the sd that
 * maximizes the held-out AUC pooled over students after MAP adaptation on n random pool answers,
 * averaged over n in pc->ns and `resamples` seeded splits (golden-section search over log sd in
 * [log 0.1, log 5]). auc (may be NULL) gets the optimum's AUC. Use the result with
 * ml_student_model_with_difficulties. */
ML_API ml_status ml_practice_learn_ability_sd(const ml_student_model *m, const ml_answers *students,
                                              const ml_practice_protocol_config *pc, int64_t resamples, float *sd,
                                              double *auc);

/* ---- learning hierarchy ----
 * Exercises graded into n_levels difficulty levels. A skill with at least n_levels exercises is
 * its own group, graded by its exercises' difficulty quantiles; the exercises of the other skills
 * (all of them when ids are skills, one exercise each) form one shared group graded by quantiles
 * over that group. Level 0 is the easiest. */
typedef struct {
  int64_t n_items, n_skills, n_levels, n_groups;
  int32_t *item_level; /* n_items */
  int32_t *item_group; /* n_items */
  int32_t *group_skill; /* n_groups: the group's skill, -1 for the shared group */
  int64_t *count;      /* n_groups x n_levels exercises per level */
} ml_practice_levels;

ML_API ml_status ml_practice_levels_build(const float *difficulty, const int32_t *item_skill, int64_t n_items,
                                          int64_t n_skills, int64_t n_levels, ml_practice_levels *out);
ML_API void ml_practice_levels_free(ml_practice_levels *l);

/* Mastery of each (group, level): the mean predicted success over its exercises (NAN if none);
 * out holds n_groups x n_levels. */
ML_API void ml_practice_level_mastery(const ml_practice_levels *l, const float *p_item, float *out);

/* One step of the learning path for every group: level[g] moves up one when the mastery of its
 * current level reaches up, and back one when the mastery of the level below falls under down
 * (down < up gives hysteresis). Returns the number of groups that moved. */
ML_API int64_t ml_practice_path_step(const ml_practice_levels *l, const float *p_item, float up, float down,
                                     int32_t *level);

/* ---- skill influence (Piech et al. 2015) ----
 * J[i][j] = P(correct on skill j | one correct answer on skill i) / sum_k P(correct on j | one
 * correct answer on k): the adapted model's mastery of j after a single correct answer on a
 * representative exercise of i (its median-difficulty exercise). out: n_skills x n_skills;
 * rows of skills with no exercise are 0. */
ML_API ml_status ml_practice_skill_influence(const ml_student_model *m, const int32_t *item_skill,
                                             const float *difficulty, ml_arena *arena, float *out);

/* ---- skill graph ----
 * An exercise-level influence matrix (item_J: n_items x n_items, e.g. ml_dkt_influence's) pooled
 * into skills: skill_J[a][b] = mean of item_J[i][j] over exercises i of skill a and j of skill b
 * (each exercise counted under its first skill), each column then renormalised to sum to one. */
ML_API ml_status ml_practice_skill_matrix(const float *item_J, int64_t n_items, const int32_t *item_skill,
                                          int64_t n_skills, float *skill_J);

typedef struct {
  int32_t from, to; /* from is a prerequisite of to: answering from right raises to the most */
  float weight;     /* J[from][to] */
} ml_practice_link;

/* The strongest off-diagonal links of J (K x K), strongest first; rows or columns of skills with
 * no data (all zero) are skipped. Returns the count (<= top). */
ML_API int64_t ml_practice_top_links(const float *J, int64_t K, int64_t top, ml_practice_link *out);

/* Writes the graph as Graphviz DOT (dot_path) and JSON (json_path; either may be NULL), atomically:
 * the top links as edges weighted by J, every skill that has one as a node named names[k] (NULL =
 * the index); the JSON also holds, for each skill, its strongest prerequisite. */
ML_API ml_status ml_practice_graph_write(const char *dot_path, const char *json_path, const float *J, int64_t K,
                                         const char *const *names, int64_t top);

#endif
