/* dkt: Deep Knowledge Tracing (Piech et al. 2015) and a meta-learned variant, for protocol B of
 * the students application: predict answer t+1 of a student from answers 1..t.
 *
 * Model: the answer (exercise e, correct c) is embedded (row e + c * n_items of a table), an
 * LSTM reads the embeddings, and the next exercise's success probability is
 * sigmoid(<h_t, W_out[e_{t+1}]> + b_out[e_{t+1}]) (one output per exercise, only the one asked
 * for is computed). Sequences are cut into windows of `window` answers, each window a sequence
 * of its own starting from the initial state (as in the DKVMN paper's code).
 *
 * The meta-learned variant ("meta-DKT") treats each student as a task whose support grows with
 * every answer: before predicting answer t+1 the per-student fast weights of the head (an offset
 * d added to every exercise's output vector and an offset b added to every logit, both zero
 * before the first answer) take one gradient step on the loss of the answers already seen
 * (2..t, predicted with the unadapted head), with meta-learned per-unit rates (Meta-SGD):
 *   d_t = -a_d * mean_{s<=t}((p_s - y_s) h_{s-1}),  b_t = -a_b * mean_{s<=t}(p_s - y_s),
 * which is exactly the inner-loop gradient of the support log-loss (tests check it against
 * ml_grad with create_graph). It also learns the initial LSTM state. Meta-training minimizes
 * the loss of every next answer through the inner step (second order), like MAML with one
 * inner step per prefix. adapt_window W > 1 bounds the support to answers 2..W of a window and
 * gives each support size its own rates (a learned schedule); 0 = unbounded, one set of rates.
 * With adapt_state (needs W >= 2) the student's initial LSTM state is what adapts instead of the
 * head: before predicting answer t+1 (t <= W), one Meta-SGD step moves the window's initial
 * state (h0, c0) down the gradient of the support loss (answers 2..t, each predicted by the run
 * from the unadapted state), and the window's answers 1..t are read again from the adapted
 * state; past answer W the run from the last adapted state is used. Each prediction inside the
 * support re-reads the window's start, so the cost grows with W^2 (not with the window). */
#ifndef METALEARN_DKT_H
#define METALEARN_DKT_H

#include "metalearn/answers.h"
#include "metalearn/params.h"
#include "metalearn/students.h"

typedef struct {
  int64_t n_items;       /* exercises (outputs); inputs are 2 * n_items */
  int64_t emb;           /* embedding size (100) */
  int64_t hidden;        /* LSTM size (200) */
  int64_t window;        /* answers per window (200) */
  int64_t batch;         /* windows per minibatch (64) */
  double lr;             /* Adam (1e-3) */
  int64_t max_epochs;    /* (50) */
  int64_t patience;      /* stop after this many epochs without a better valid AUC (5) */
  double max_seconds;    /* stop training after this long, 0 = no limit */
  uint64_t seed;
  int threads;           /* BLAS threads (1) */
  bool verbose;          /* one log line per epoch */
  /* meta-DKT */
  bool meta;             /* per-student fast head weights and a learned initial state */
  int64_t adapt_window;  /* support = answers 2..min(t, adapt_window) of the window; 0 = all */
  double inner_lr_init;  /* initial Meta-SGD rates (0.1) */
  bool adapt_state;      /* also adapt each student's initial LSTM state: before predicting answer
                            t+1 (t < adapt_window), one Meta-SGD step of the initial state on the
                            support loss, then answers 1..t read again from it (the head is not
                            adapted then); past the window, the last adapted state's run */
  double cold_weight;    /* training loss weight of each student's answers 3-15 (the cold-start
                            windows) relative to the others (1: the plain next-step loss) */
} ml_dkt_config;

ML_API ml_dkt_config ml_dkt_defaults(void);

typedef struct ml_dkt ml_dkt;

/* A model with seeded initialization (PyTorch's defaults); free with ml_dkt_free. */
ML_API ml_status ml_dkt_new(const ml_dkt_config *cfg, ml_dkt **out);
ML_API void ml_dkt_free(ml_dkt *m);
ML_API ml_params *ml_dkt_params(ml_dkt *m); /* the model's parameters (owned by m) */

typedef struct {
  int64_t epochs;         /* epochs run */
  int64_t best_epoch;     /* 1-based epoch of the kept parameters */
  double best_valid_auc;
  double seconds;         /* training wall time, validation included */
  double train_seconds;   /* time in training steps only */
  double last_epoch_seconds; /* the last epoch's training steps (warm: no first-touch costs) */
  double last_loss;       /* mean training loss of the last epoch */
} ml_dkt_stats;

/* One pass over the training windows in a seeded random order (epoch selects the order); mean
 * loss per predicted answer in *loss. */
ML_API ml_status ml_dkt_train_epoch(ml_dkt *m, const ml_answers *train, int64_t epoch, double *loss);
/* Epochs until max_epochs, patience or max_seconds; keeps the parameters of the best epoch on
 * valid (AUC). valid may be NULL or empty: then every epoch is kept. */
ML_API ml_status ml_dkt_train(ml_dkt *m, const ml_answers *train, const ml_answers *valid, ml_dkt_stats *st);

/* ---- protocol B: next-step predictions ---- */
typedef struct {
  int64_t n;
  float *p;           /* predicted probability of a correct answer */
  uint8_t *y;         /* the answer */
  int64_t *student;   /* index of the student in the answers */
  int32_t *pos;       /* 1-based position of the answer in the student's sequence (>= 2) */
} ml_kt_predictions;

/* Predicts every answer of every student that has a history in its window (all but the first
 * answer of each window). Free with ml_kt_predictions_free. */
ML_API ml_status ml_dkt_predict(ml_dkt *m, const ml_answers *a, ml_kt_predictions *out);
ML_API void ml_kt_predictions_free(ml_kt_predictions *p);

typedef struct {
  double auc, acc, logloss;  /* over all predicted answers */
  double auc_3_10, auc_11_15; /* answers 3-10 and 11-15 of each student only (cold start) */
  int64_t n, n_3_10, n_11_15;
} ml_kt_scores;

ML_API void ml_kt_score(const ml_kt_predictions *p, ml_kt_scores *s);

/* Rows of the students results table (ml_students_table_print) for protocol B: columns
 * "B all", "B 3-10" and "B 11-15", each with AUC, per-student AUC, accuracy and log-loss and
 * their bootstrap CIs over students (n_boot resamples keyed by seed), built with
 * ml_students_row_from_predictions (they keep the predictions: free each row with
 * ml_students_row_free). rows[3] also receive fit_seconds and the time the predictions took;
 * n_students counts the students with an answer in the column. */
ML_API ml_status ml_dkt_protocol_b(ml_dkt *m, const ml_answers *test, const char *model, double fit_seconds,
                                   int64_t n_boot, uint64_t seed, ml_students_row rows[3]);
/* The whole protocol for one model: a DKT (cfg.meta false) or meta-DKT trained on d's training
 * students with early stopping on its validation students (load d with fold 1: train1 / valid1),
 * then ml_dkt_protocol_b on its test students. cfg.n_items is set from d. */
ML_API ml_status ml_dkt_protocol_b_run(const ml_kt_dataset *d, const ml_dkt_config *cfg, const char *model,
                                       int64_t n_boot, uint64_t seed, ml_students_row rows[3]);

/* ---- influence between exercises (Piech et al. 2015, section 5) ----
 * J[i * n_items + j] = y(j | i) / sum_k y(j | k), where y(j | i) is the predicted success on
 * exercise j after a first answer, correct, on exercise i: the paper's influence of i on j
 * (each column sums to one). */
ML_API ml_status ml_dkt_influence(ml_dkt *m, float *J);

#endif
