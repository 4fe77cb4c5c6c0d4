/* Shared by the algorithm files: the algo object and the per-task entry points. */
#ifndef ML_ALGOS_INTERNAL_H
#define ML_ALGOS_INTERNAL_H

#include "metalearn/algos.h"
#include "metalearn/eval.h"

struct ml_algo {
  ml_algo_config cfg;
  ml_model *model;
  ml_params *lr;       /* Meta-SGD's per-parameter inner rates (model layout), else NULL */
  ml_optim *opt, *opt_lr;
  int threads;
  ml_pool *pool;       /* persistent workers: no thread creation per iteration */
  ml_arena **arenas;   /* one per thread, reset per task */
  int64_t slot_len;    /* floats of a task's gradient: model numel (+ lr numel) */
  int64_t slot_stride; /* slot_len + 4 statistics summed with it */
  float *slots;        /* one slot per task this process runs */
  int64_t part_first, part_count; /* the tasks of each meta-batch this process runs */
  ml_reduce_fn reduce;            /* combines partial sums across processes, or NULL */
  void *reduce_ctx;
  float *grad;         /* combined meta-gradient */
  /* evaluation bookkeeping, grown only when a run has more episodes than any before */
  ml_status *eval_status;
  char (*eval_errors)[256];
  int64_t eval_cap;
};

/* Per-task results of a meta-training step. */
typedef struct {
  double loss_s, loss_q, acc;
} ml__task_out;

/* Computes one task's meta-gradient into slot (slot_len floats, model layout then lr layout). */
typedef ml_status (*ml__task_grad_fn)(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t iteration,
                                      int64_t index, float *slot, ml__task_out *out);

ml_status ml__maml_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                        ml__task_out *out);
ml_status ml__maml_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out);
ml_status ml__reptile_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                           ml__task_out *out);
ml_status ml__reptile_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out);
ml_status ml__metric_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                          ml__task_out *out);
ml_status ml__metric_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out);
ml_status ml__finetune_task(ml_algo *a, ml_graph *g, const ml_episode *ep, int64_t it, int64_t idx, float *slot,
                            ml__task_out *out);
ml_status ml__finetune_predict(ml_algo *a, ml_graph *g, const ml_episode *ep, float *out);

/* Helpers shared by the files. */
ml_node *ml__input(ml_graph *g, const ml_tensor *t);          /* constant leaf over episode data */
ml_node *ml__concat_inputs(ml_graph *g, const ml_episode *ep); /* support rows then query rows */
ml_node *ml__task_loss(ml_algo *a, ml_graph *g, ml_node *out, const ml_episode *ep, bool query);
double ml__task_acc(const ml_node *logits, const ml_episode *ep, bool query);
/* Copies gradient nodes into a slot at the parameters' offsets. */
void ml__store_grads(const ml_params *p, ml_node *const *grads, int64_t first, float *slot);
bool ml__finite(const float *x, int64_t n);

#endif
