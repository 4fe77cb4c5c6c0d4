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
/* ML_MODEL_CUSTOM: an application's own model (students, ...). forward computes the outputs
 * from all the weights w and the input x; for it ml_model_features returns x unchanged and
 * ml_model_head runs forward, so ANIL adapts exactly params [head_first, count): the
 * parameters the application treats as per-task (a student's abilities). */
typedef ml_node *(*ml_model_forward_fn)(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
struct ml_model {
  ml_model_kind kind;
  ml_params *params;   /* owned */
  int64_t head_first;  /* params [head_first, count) are the head (ANIL adapts only these) */
  int64_t feature_dim; /* size of the features fed to the head */
  ml_mlp_config mlp;
  ml_conv4_config conv;
  ml_model_forward_fn custom_forward; /* ML_MODEL_CUSTOM only */
  void *custom_ctx;                   /* for custom_forward; not owned */
};

/* Create with seeded initialization; the caller frees with ml_model_free. */
ML_API ml_status ml_mlp_new(const ml_mlp_config *cfg, uint64_t seed, ml_model **out);
ML_API ml_status ml_conv4_new(const ml_conv4_config *cfg, uint64_t seed, ml_model **out);
/* A custom model over a finalized parameter list (taken over: freed with the model); params
 * [head_first, count) are the head; user becomes custom_ctx. */
ML_API ml_status ml_custom_model_new(ml_params *params, int64_t head_first, ml_model_forward_fn forward_fn, void *user,
                                     ml_model **out);
ML_API void ml_model_free(ml_model *m);
/* An ML_MODEL_CUSTOM model with no parameters yet: the caller adds them (ml_params_add) and
 * sets head_first. Free with ml_model_free. */
ML_API ml_status ml_model_custom_new(ml_model_forward_fn forward, void *ctx, ml_model **out);

/* One leaf node per parameter (in params order), wrapping the parameter data. */
ML_API ml_status ml_model_leaves(const ml_model *m, ml_graph *g, bool requires_grad, ml_node **w);
/* Full forward with weights w (meta-parameters or fast weights): logits / outputs. */
ML_API ml_node *ml_model_forward(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
/* The body only: features (N, feature_dim) before the head. */
ML_API ml_node *ml_model_features(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *x);
/* The head only, on features. Returns features unchanged when the model has no head. */
ML_API ml_node *ml_model_head(const ml_model *m, ml_graph *g, ml_node *const *w, ml_node *features);

/* ---- recurrent layers (src/nn/rnn.c) ----
 * Built from differentiable ops (matmul, sigmoid, tanh, mul, add, slice), so gradients of any
 * order flow through them and an inner loop can adapt their weights or initial state. The four
 * (LSTM) or three (GRU) gate products with the state are one GEMM per step; the input side
 * xw = x W_ih^T + b is the caller's, computed for all steps at once (one GEMM, or one gather
 * from a projected embedding table). Weights use PyTorch's layout and gate order. */
typedef enum { ML_RNN_LSTM, ML_RNN_GRU } ml_rnn_kind;

ML_API int64_t ml_rnn_gates(ml_rnn_kind kind); /* 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n) */

/* One LSTM step: z = xw + h W_hh^T; c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c').
 * xw (n, 4H) holds x W_ih^T + b_ih + b_hh; h, c (m, H) with m >= n: only the first n rows step
 * (a packed batch, longest sequences first). w_hh (4H, H). Returns h' (n, H), c' in *c_out. */
ML_API ml_node *ml_lstm_cell(ml_graph *g, ml_node *xw, ml_node *h, ml_node *c, ml_node *w_hh, ml_node **c_out);
/* One GRU step: r, z = s(xw_rz + h W_hr,hz^T + b_hr,hz); n = tanh(xw_n + r (h W_hn^T + b_hn));
 * h' = (1 - z) n + z h. xw (n, 3H) holds x W_ih^T + b_ih; b_hh (3H) or NULL. Rows as above. */
ML_API ml_node *ml_gru_cell(ml_graph *g, ml_node *xw, ml_node *h, ml_node *w_hh, ml_node *b_hh);

/* n_t[t] = number of sequences longer than t, for t < T, from lengths sorted longest first.
 * ML_ERR_ARG when len is not non-increasing or a length is outside [0, T]. */
ML_API ml_status ml_rnn_batch_sizes(const int64_t *len, int64_t B, int64_t T, int64_t *n_t);

/* Runs a cell over a padded batch of B sequences, lengths len[] (longest first, see above), T
 * steps. Step t of sequence b is padding when t >= len[b]: it neither changes that sequence's
 * state nor produces an output, and the batch shrinks instead of computing it (packed).
 * xw[t] (n_t, G*H); h0, c0 (B, H) or (1, H) (shared, e.g. a learned initial state) or NULL for
 * zeros (c0 unused by the GRU); w_hh (G*H, H); b_hh (G*H) or NULL, GRU only (fold the LSTM's into
 * xw). hs[t] receives the output of step t, (n_t, H), NULL past the longest. Check ml_graph_status afterwards. */
ML_API ml_status ml_rnn_run(ml_graph *g, ml_rnn_kind kind, ml_node *const *xw, const int64_t *len, int64_t B,
                            int64_t T, ml_node *h0, ml_node *c0, ml_node *w_hh, ml_node *b_hh, ml_node **hs);

#endif
