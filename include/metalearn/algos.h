/* algos: one interface for every meta-learning algorithm. A meta-training step draws a
 * meta-batch of tasks from a task source, runs them in parallel (one per thread, each with its
 * own arena), combines their gradients as a fixed-shape pairwise sum over task indices (so the
 * result is bit-identical for any thread count) and applies the outer optimizer. Adaptation
 * (meta-test) takes one episode's support set and predicts its query set.
 *
 *   MAML (second order, full create_graph), FO-MAML, Meta-SGD (learned per-parameter inner
 *   rates), ANIL (inner loop on the head only), Reptile, Prototypical Networks, Matching Networks
 *   (cosine attention), and a fine-tuning baseline (pre-train on all classes, fit a new head). */
#ifndef METALEARN_ALGOS_H
#define METALEARN_ALGOS_H

#include "metalearn/nn.h"
#include "metalearn/optim.h"
#include "metalearn/tasks.h"

typedef enum {
  ML_ALGO_MAML, ML_ALGO_FOMAML, ML_ALGO_METASGD, ML_ALGO_ANIL, ML_ALGO_REPTILE, ML_ALGO_PROTONET,
  ML_ALGO_MATCHINGNET, ML_ALGO_FINETUNE, ML_ALGO_COUNT
} ml_algo_kind;

ML_API const char *ml_algo_name(ml_algo_kind k); /* "maml", "fomaml", "metasgd", ... */
ML_API ml_status ml_algo_parse(const char *name, ml_algo_kind *out);

/* ML_TASK_BINARY: one logit per example (n, 1), 0/1 targets in the episode's ts / tq, binary
 * cross-entropy on the logits; accuracy counts logit > 0 as predicting 1. */
typedef enum { ML_TASK_CLASSIFY, ML_TASK_REGRESS, ML_TASK_BINARY } ml_task_type;

typedef struct {
  ml_algo_kind kind;
  ml_task_type task;
  int64_t meta_batch;       /* tasks per meta-iteration */
  int64_t inner_steps;      /* gradient steps on the support set in meta-training */
  int64_t inner_steps_test; /* ... at meta-test */
  float inner_lr;           /* MAML's alpha; Meta-SGD's initial rates; Reptile's inner Adam lr */
  bool adapt_head_only;     /* MAML / FO-MAML / Meta-SGD: the inner loop adapts only the head
                             * (params [head_first, count)), as MeLU adapts only its MLP */
  bool multi_step_loss;     /* MAML++: mean of the query losses after every inner step (equal weights) */
  ml_optim_config outer;    /* the meta-optimizer */
  int64_t anneal_iterations; /* > 0: outer rate falls linearly to 0 over this many iterations
                              * (Reptile's schedule); 0 = constant */
  int64_t decay_every;        /* > 0: outer rate times decay_gamma every this many iterations
                               * (Snell et al. halve it every 2000 episodes) */
  float decay_gamma;
  int threads;              /* 0 = ml_num_threads() */
  /* Reptile */
  int64_t reptile_inner_batch; /* examples per inner step (drawn from the support) */
  bool reptile_inner_sgd;      /* plain SGD inner steps instead of Adam with beta1 = 0 */
  /* Matching Networks: softmax over scale * cosine similarity */
  float matching_scale;
  /* fine-tuning baseline: steps and rate for the new head at meta-test */
  int64_t finetune_steps;
  float finetune_lr;
  int64_t pretrain_classes; /* classes of the pre-training head (training split size) */
} ml_algo_config;

/* Defaults for the kind: MAML 1 step / lr 0.4 (Omniglot), 3 test steps, Adam 1e-3, batch 16. */
ML_API ml_algo_config ml_algo_defaults(ml_algo_kind kind);

/* Supplies the task for (iteration, task index): called from worker threads, writes into the
 * given arena. Must be deterministic in its keys. */
typedef ml_status (*ml_task_fn)(void *ctx, int64_t iteration, int64_t index, ml_arena *arena, ml_episode *out);

typedef struct {
  double loss_support; /* mean over tasks, before adaptation */
  double loss_query;   /* after adaptation (the meta-objective) */
  double acc_query;    /* classification: accuracy on the query after adaptation */
  double grad_norm;    /* of the combined meta-gradient */
} ml_step_stats;

typedef struct ml_algo ml_algo;

/* Builds the algorithm around a model it does not own (the model must outlive it).
 * For ProtoNet / Matching Networks the model should have no head (n_out = 0); for the
 * fine-tuning baseline its head is the pre-training head. The caller frees with ml_algo_free. */
ML_API ml_status ml_algo_new(const ml_algo_config *cfg, ml_model *model, ml_algo **out);
ML_API void ml_algo_free(ml_algo *a);
ML_API const ml_algo_config *ml_algo_get_config(const ml_algo *a);
ML_API ml_model *ml_algo_model(ml_algo *a);
/* Extra meta-learned state beyond the model (Meta-SGD's rates), or NULL. */
ML_API ml_params *ml_algo_extra_params(ml_algo *a);
ML_API ml_optim *ml_algo_optim(ml_algo *a);
ML_API ml_optim *ml_algo_extra_optim(ml_algo *a);

/* Bytes held by the per-thread arenas, and the most any one task used. After the first
 * iterations the reserved figure stops growing: the steady state allocates nothing. */
ML_API void ml_algo_memory(const ml_algo *a, size_t *reserved, size_t *peak_task);

/* ---- spreading a meta-batch over processes (see src/dist) ----
 * This process runs tasks [first, first + count) of every meta-batch and sums their gradients
 * (with 4 statistics appended: ml_algo_reduce_len floats) in the fixed pairwise tree. reduce must
 * then replace buf by the sum over all processes, combining partial sums in the same tree order
 * (with R a power of two dividing the meta-batch, rank r owning the r-th contiguous block:
 * recursive doubling, lower rank's partial on the left), so every process applies the same
 * update, bit-identical to one process. reduce NULL = single process. */
typedef ml_status (*ml_reduce_fn)(void *ctx, float *buf, int64_t len);
ML_API void ml_algo_set_partition(ml_algo *a, int64_t first, int64_t count, ml_reduce_fn reduce, void *ctx);
ML_API int64_t ml_algo_reduce_len(const ml_algo *a);

/* One meta-iteration: tasks (iteration, 0..meta_batch-1) from src. ML_ERR_NUMERIC with the
 * parameters unchanged when a loss or the gradient is NaN/Inf. */
ML_API ml_status ml_algo_train_step(ml_algo *a, ml_task_fn src, void *ctx, int64_t iteration, ml_step_stats *stats);

/* Adapts on ep's support and writes the query predictions: logits (n_q, n_way) for
 * classification, values (n_q) for regression. out must hold that many floats. */
ML_API ml_status ml_algo_predict(ml_algo *a, const ml_episode *ep, ml_arena *arena, float *out);

/* Meta-test over n episodes (iteration key `eval_key`, indices 0..n-1), in parallel.
 * scores[i] = query accuracy (classification) or query MSE (regression) of episode i. */
ML_API ml_status ml_algo_evaluate(ml_algo *a, ml_task_fn src, void *ctx, int64_t eval_key, int64_t n, double *scores);

/* Options of a meta-test run. progress (may be NULL) is called from the calling thread as
 * episodes complete, with the count done so far; returning false stops with ML_ERR_ABORTED.
 * inner_steps_test >= 0 overrides the configured test steps for this run only. */
typedef bool (*ml_eval_progress_fn)(void *ctx, int64_t done, int64_t total);
typedef struct {
  ml_eval_progress_fn progress;
  void *progress_ctx;
  int64_t inner_steps_test; /* -1 = the configuration's */
} ml_eval_options;
ML_API ml_eval_options ml_eval_options_defaults(void);
/* ml_algo_evaluate with options (NULL = defaults); the scores do not depend on them. */
ML_API ml_status ml_algo_evaluate_ex(ml_algo *a, ml_task_fn src, void *ctx, int64_t eval_key, int64_t n, double *scores,
                                     const ml_eval_options *opt);

#endif
