/* nn: functional models. A model is a parameter list plus a forward function that takes the
 * weights as graph nodes, so an inner loop can run the same model on fast weights (new nodes)
 * without touching the meta-parameters. Initializers are seeded. */
#ifndef METALEARN_NN_H
#define METALEARN_NN_H

#include "metalearn/autograd.h"
#include "metalearn/params.h"

/* ---- initializers (PyTorch's definitions) ---- */
/* U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2) for ReLU (kaiming_uniform_). */
ML_API void ml_init_kaiming_uniform(ml_tensor *w, int64_t fan_in, ml_rng *r);
/* N(0, 2 / fan_in) (kaiming_normal_, fan_in mode). */
ML_API void ml_init_kaiming_normal(ml_tensor *w, int64_t fan_in, ml_rng *r);
/* U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (xavier_uniform_). */
ML_API void ml_init_xavier_uniform(ml_tensor *w, int64_t fan_in, int64_t fan_out, ml_rng *r);
/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for biases. */
ML_API void ml_init_fan_in_uniform(ml_tensor *w, int64_t fan_in, ml_rng *r);

/* ---- models ---- */
typedef enum { ML_ACT_RELU, ML_ACT_TANH, ML_ACT_SIGMOID, ML_ACT_NONE } ml_activation;

#define ML_MLP_MAX_LAYERS 8
typedef struct {
  int64_t n_layers;                      /* linear layers */
  int64_t sizes[ML_MLP_MAX_LAYERS + 1];  /* in, hidden..., out */
  ml_activation act;                     /* between layers, none after the last */
} ml_mlp_config;

typedef struct {
  int64_t in_channels;   /* 1 for Omniglot */
  int64_t image_size;    /* square inputs, e.g. 28 */
  int64_t filters;       /* 64 in the MAML and ProtoNet papers */
  int64_t blocks;        /* 4 */
  int64_t n_out;         /* classes of the linear head; 0 = no head (embedding network) */
  bool batch_norm;       /* batch statistics, as MAML uses at train and test */
  bool max_pool;         /* 2x2 max-pool per block; false = stride-2 convolutions instead */
  float bn_eps;
} ml_conv4_config;

ML_API ml_conv4_config ml_conv4_defaults(void); /* 1 channel, 28x28, 64 filters, 4 blocks, BN, pool */

typedef enum { ML_MODEL_MLP, ML_MODEL_CONV4, ML_MODEL_CUSTOM } ml_model_kind;

typedef struct ml_model ml_model;
struct ml_model {
  ml_model_kind kind;
  ml_params *params;   /* owned */
  int64_t head_first;  /* params [head_first, count) are the head (ANIL adapts only these) */
  int64_t feature_dim; /* size of the features fed to the head */
  ml_mlp_config mlp;
  ml_conv4_config conv;
  /* ML_MODEL_CUSTOM: the application's forward on weights w and inputs x (rows of features),
   * with its own data in user. Its "features" are the inputs themselves, so head-only
   * adaptation (ANIL, adapt_head_only) runs the whole forward with the body weights fixed. */
  ml_node *(*forward_fn)(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
  void *user;
};

/* Create with seeded initialization; the caller frees with ml_model_free. */
ML_API ml_status ml_mlp_new(const ml_mlp_config *cfg, uint64_t seed, ml_model **out);
ML_API ml_status ml_conv4_new(const ml_conv4_config *cfg, uint64_t seed, ml_model **out);
/* A custom model over a finalized parameter list (taken over: freed with the model); params
 * [head_first, count) are the head. */
ML_API ml_status ml_custom_model_new(ml_params *params, int64_t head_first,
                                     ml_node *(*forward_fn)(const ml_model *, ml_graph *, ml_node *const *, ml_node *),
                                     void *user, ml_model **out);
ML_API void ml_model_free(ml_model *m);

/* One leaf node per parameter (in params order), wrapping the parameter data. */
ML_API ml_status ml_model_leaves(const ml_model *m, ml_graph *g, bool requires_grad, ml_node **w);
/* Full forward with weights w (meta-parameters or fast weights): logits / outputs. */
ML_API ml_node *ml_model_forward(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
/* The body only: features (N, feature_dim) before the head. */
ML_API ml_node *ml_model_features(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
/* The head only, on features. Returns features unchanged when the model has no head. */
ML_API ml_node *ml_model_head(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *features);

#endif
