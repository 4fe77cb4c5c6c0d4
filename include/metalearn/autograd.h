/* autograd: reverse-mode differentiation with higher-order gradients.
 *
 * A graph lives in an arena: every op runs eagerly (its value is computed at once) and, when
 * the graph is recording and an input requires a gradient, the node remembers its inputs.
 * ml_grad walks the nodes backwards. Every op's backward is itself written with ops, so with
 * create_graph the gradients are nodes of the same graph and can be differentiated again
 * (second-order MAML). Without create_graph the backward records nothing.
 *
 * Errors are sticky, as in ggml: an op that fails (bad shape, out of memory) sets the graph's
 * status and returns NULL; every op given a NULL input returns NULL at once. Check
 * ml_graph_status once at the end. All nodes are valid until the arena is reset. */
#ifndef METALEARN_AUTOGRAD_H
#define METALEARN_AUTOGRAD_H

#include "metalearn/kernels.h"
#include "metalearn/tensor.h"

/* The op table: name, number of node inputs, and whether the op can sit inside an inner loop
 * (those get second-order gradient checks). One row per op; see src/autograd/ops.def. */
typedef enum {
#define ML_OP_ENUM(name, arity, inner) ML_OP_##name,
#include "metalearn/ops.def"
#undef ML_OP_ENUM
  ML_OP_COUNT
} ml_op;

ML_API const char *ml_op_name(ml_op op);
ML_API int ml_op_arity(ml_op op);
ML_API bool ml_op_inner_loop(ml_op op);

#define ML_MAX_INPUTS 5 /* conv + batch-norm + pool: x, w, bias, gamma, beta */

typedef struct ml_node ml_node;
struct ml_node {
  ml_tensor value;    /* computed at creation */
  ml_op op;
  bool requires_grad; /* true when a gradient can flow to a leaf through this node */
  int8_t n_in;        /* inputs recorded (0 when nothing requires a gradient) */
  int32_t id;         /* creation index in the graph */
  ml_node *in[ML_MAX_INPUTS];
  /* op attributes */
  int64_t p, c, q;        /* broadcast / reduction view (P, C, Q) */
  float a, b;             /* scalars (affine, eps) */
  bool ta, tb;            /* matmul transposes */
  bool relu;              /* batch-norm + pool: ReLU applied to the output */
  ml_conv_shape conv;     /* conv ops */
  const int32_t *idx;     /* labels, embedding ids */
  const uint8_t *arg;     /* pool argmax: window codes (ml_maxpool2_forward) */
  float *saved0, *saved1; /* batch-norm mean and invstd */
  /* memory bookkeeping of gradient sweeps: the node whose buffer holds value.data (itself when
   * it allocated it, the source's owner for a view such as a reshape or a slice: every op that
   * shares another node's buffer must set it; NULL for wrapped external data) and, during a
   * sweep without create_graph, how many gradient slots refer to that buffer */
  ml_node *owner;
  int32_t refs;
  size_t cap;             /* bytes of value.data's buffer (a sweep may hand a node a larger one) */
  int64_t start;          /* slice: first index along the sliced axis */
};

typedef struct ml_graph ml_graph;

/* A graph whose nodes, values and bookkeeping come from arena. The caller frees nothing: the
 * graph is gone when the arena is reset. Returns NULL when out of memory. */
ML_API ml_graph *ml_graph_new(ml_arena *arena);
ML_API ml_arena *ml_graph_arena(ml_graph *g);
ML_API ml_status ml_graph_status(const ml_graph *g); /* first error, ML_OK if none */
ML_API int64_t ml_graph_size(const ml_graph *g);     /* nodes created */
ML_API ml_node *ml_graph_node(const ml_graph *g, int64_t i);
/* Recording off: new nodes keep no inputs (like torch.no_grad). Returns the previous value. */
ML_API bool ml_graph_set_recording(ml_graph *g, bool on);
ML_API bool ml_graph_is_recording(const ml_graph *g);
/* Lets the next ml_grad without create_graph hand the buffer of every forward value it has swept
 * past (no later step of the sweep reads it) to the gradients it still has to compute, so a
 * training step's last sweep needs little memory beyond its forward's (second-order MAML, 20-way
 * 5 steps: 169 -> 143 MiB per task). Those values are garbage afterwards, except the sweep's
 * outputs: read the logits first. Applies to one sweep; the algorithms call it before their last. */
ML_API void ml_graph_consume_next_sweep(ml_graph *g);
/* A mark and a rewind of the graph and its arena: the nodes created after the mark (and their
 * values and scratch) are gone, the older ones stay valid. A first-order inner loop marks before
 * a step and rewinds after copying out what it keeps (the new fast weights), so its memory does
 * not grow with the number of steps. Not inside a gradient sweep. */
typedef struct {
  ml_arena_mark arena;
  ml_node **nodes;
  int64_t n, cap;
  void *temp; /* the graph's kernel scratch as it was */
  size_t temp_cap;
} ml_graph_mark;
ML_API ml_graph_mark ml_graph_get_mark(const ml_graph *g);
ML_API void ml_graph_rewind(ml_graph *g, ml_graph_mark m);

/* ---- leaves ---- */
/* Wraps existing data (a parameter, a batch) without copying. */
ML_API ml_node *ml_leaf(ml_graph *g, ml_tensor t, bool requires_grad);
/* A new tensor in the graph's arena: uninitialized / zeros / filled. */
ML_API ml_node *ml_new(ml_graph *g, int ndim, const int64_t *shape);
ML_API ml_node *ml_zeros(ml_graph *g, int ndim, const int64_t *shape);
ML_API ml_node *ml_full(ml_graph *g, int ndim, const int64_t *shape, float v);

/* ---- ops ---- */
/* Elementwise a op b. b has a's shape, or b's shape is a suffix of a's (bias over rows), or b is
 * a scalar (one element). */
ML_API ml_node *ml_add(ml_graph *g, ml_node *a, ml_node *b);
ML_API ml_node *ml_sub(ml_graph *g, ml_node *a, ml_node *b);
ML_API ml_node *ml_mul(ml_graph *g, ml_node *a, ml_node *b);
ML_API ml_node *ml_div(ml_graph *g, ml_node *a, ml_node *b);
/* Same with b 1-D of length a.shape[axis], broadcast over all other axes (channel bias:
 * axis 1 of (B,C,H,W); one value per row of (N,F): axis 0). */
ML_API ml_node *ml_add_axis(ml_graph *g, ml_node *a, ml_node *b, int axis);
ML_API ml_node *ml_sub_axis(ml_graph *g, ml_node *a, ml_node *b, int axis);
ML_API ml_node *ml_mul_axis(ml_graph *g, ml_node *a, ml_node *b, int axis);
ML_API ml_node *ml_div_axis(ml_graph *g, ml_node *a, ml_node *b, int axis);
/* s * x + t for constants s, t. */
ML_API ml_node *ml_affine(ml_graph *g, ml_node *x, float s, float t);
ML_API ml_node *ml_scale(ml_graph *g, ml_node *x, float s);
ML_API ml_node *ml_neg(ml_graph *g, ml_node *x);

ML_API ml_node *ml_relu(ml_graph *g, ml_node *x);
ML_API ml_node *ml_exp(ml_graph *g, ml_node *x);
ML_API ml_node *ml_log(ml_graph *g, ml_node *x);
ML_API ml_node *ml_sigmoid(ml_graph *g, ml_node *x);
ML_API ml_node *ml_tanh(ml_graph *g, ml_node *x);
ML_API ml_node *ml_softplus(ml_graph *g, ml_node *x);
ML_API ml_node *ml_rsqrt(ml_graph *g, ml_node *x);
ML_API ml_node *ml_sqrt(ml_graph *g, ml_node *x);
ML_API ml_node *ml_square(ml_graph *g, ml_node *x);
/* g where x > 0, else 0: ReLU's backward, differentiable in g. */
ML_API ml_node *ml_relu_mask(ml_graph *g, ml_node *grad, ml_node *x);

/* Sum of all elements (shape (1)); mean likewise. */
ML_API ml_node *ml_sum(ml_graph *g, ml_node *x);
ML_API ml_node *ml_mean(ml_graph *g, ml_node *x);
/* Sum over every axis but `axis`: result 1-D of length x.shape[axis]. */
ML_API ml_node *ml_sum_axis_keep(ml_graph *g, ml_node *x, int axis);
/* Sum of each row of a 2-D x: (N, F) -> (N). */
ML_API ml_node *ml_sum_rows(ml_graph *g, ml_node *x);
/* Reduction / broadcast over a (P, C, Q) view, the primitive pair behind the above. */
ML_API ml_node *ml_reduce_pcq(ml_graph *g, ml_node *x, int64_t P, int64_t C, int64_t Q);
ML_API ml_node *ml_expand_pcq(ml_graph *g, ml_node *x, int64_t P, int64_t C, int64_t Q, int ndim,
                              const int64_t *shape);

ML_API ml_node *ml_reshape(ml_graph *g, ml_node *x, int ndim, const int64_t *shape);

/* op(a) @ op(b) for 2-D a, b; ta / tb transpose. */
ML_API ml_node *ml_matmul(ml_graph *g, ml_node *a, ml_node *b, bool ta, bool tb);
/* x (N, in) @ w^T + b with w (out, in), b (out) or NULL: PyTorch's nn.Linear layout. */
ML_API ml_node *ml_linear(ml_graph *g, ml_node *x, ml_node *w, ml_node *b);

/* x (B,C,H,W), w (OC,C,KH,KW), b (OC) or NULL. */
ML_API ml_node *ml_conv2d(ml_graph *g, ml_node *x, ml_node *w, ml_node *b, int64_t stride, int64_t pad);
/* The adjoints of conv2d, differentiable in both arguments. */
ML_API ml_node *ml_conv2d_bwd_data(ml_graph *g, ml_node *dy, ml_node *w, const ml_conv_shape *s);
ML_API ml_node *ml_conv2d_bwd_weight(ml_graph *g, ml_node *x, ml_node *dy, const ml_conv_shape *s);

/* 2x2 max-pool with stride 2 over (B,C,H,W). */
ML_API ml_node *ml_maxpool2(ml_graph *g, ml_node *x);

/* Batch-norm over (B,C,H,W) or (B,C) with this batch's statistics (training mode, which MAML
 * uses at meta-test too, so no running statistics exist to leak test data). gamma, beta (C) or
 * NULL for no affine part. */
ML_API ml_node *ml_batch_norm(ml_graph *g, ml_node *x, ml_node *gamma, ml_node *beta, float eps);
/* ml_maxpool2(ml_batch_norm(x, ...)) in one op, bit for bit: the normalized activations are never
 * stored (their backward needs only x, the statistics and the argmax), which saves a full-size
 * tensor per Conv4 block and a pass over it. x is (B,C,H,W) with H, W >= 2. With relu, the output
 * is ml_relu of that, bit for bit (max-pool commutes with ReLU), without storing it twice: a
 * Conv4 block's batch-norm -> ReLU -> pool. */
ML_API ml_node *ml_batch_norm_pool(ml_graph *g, ml_node *x, ml_node *gamma, ml_node *beta, float eps, bool relu);
/* max-pool 2x2 of batch-norm(conv2d(x, w, stride 1, pad) + b), the convolution's output never
 * stored (ml_conv_bn_pool_forward): for a cheap first layer, whose output is the largest
 * activation of a conv net. b, gamma, beta may be NULL. Its backward recomputes the output; with
 * create_graph it builds the unfused ops, so it differentiates to any order. */
ML_API ml_node *ml_conv_bn_pool(ml_graph *g, ml_node *x, ml_node *w, ml_node *b, ml_node *gamma, ml_node *beta,
                                int64_t pad, float eps, bool relu);

/* Row-wise log-softmax of (N, K). */
ML_API ml_node *ml_log_softmax(ml_graph *g, ml_node *x);
/* out[i] = x[i, idx[i]] for x (N, K); idx must stay valid while the graph lives. */
ML_API ml_node *ml_pick(ml_graph *g, ml_node *x, const int32_t *idx);
/* Rows table[idx[i]] of table (V, D): (n, D). */
ML_API ml_node *ml_embedding(ml_graph *g, ml_node *table, const int32_t *idx, int64_t n);

/* Indices [start, start + len) along axis 0 (rows) or 1 (columns) of a 2-D x: (len, C) or (N, len).
 * A row slice shares x's data (rows are contiguous); a column slice copies. The recurrent layers
 * use it to split fused gates and to drop finished sequences from a packed batch. */
ML_API ml_node *ml_slice(ml_graph *g, ml_node *x, int axis, int64_t start, int64_t len);

/* The LSTM cell's gates in one op: z (n, 4H) pre-activations (bands i, f, g, o), c (n, H) the
 * previous cell state; the result (2n, H) holds h in rows [0, n) and the new cell state c2 in rows
 * [n, 2n) (row slices of it are views). One pass forward and one backward instead of a dozen
 * elementwise ops; under create_graph its backward is built from ops, so it can sit in an inner
 * loop. */
ML_API ml_node *ml_lstm_gates(ml_graph *g, ml_node *z, ml_node *c);

/* A whole LSTM over a packed batch in one op, zero initial state: xw (N, 4H) holds the input
 * projections of step t in rows [off_t, off_t + n_t) (off_t = n_0 + ... + n_{t-1}, n_t
 * non-increasing: sequences sorted longest first), w_hh (4H, H); the result (N, H) holds the
 * outputs in the same rows. Its backward runs BPTT with one GEMM per step for the state and a single
 * GEMM for the recurrent weights' gradient over all steps. First-order only: differentiating its
 * backward (create_graph) is an error; ml_rnn_run is the differentiable-twice form. n_t must stay
 * valid while the graph lives. */
ML_API ml_node *ml_lstm_seq(ml_graph *g, ml_node *xw, ml_node *w_hh, const int32_t *n_t, int64_t T);
/* The same with the input projections gathered from a table (V, 4H): row r of the sequence is
 * table[rows[r]] (rows: N ids in [0, V), valid while the graph lives). What ml_lstm_seq on
 * ml_embedding(table, rows) computes, without materializing the gathered (N, 4H) rows: DKT folds
 * its input embedding and projection into such a table. */
ML_API ml_node *ml_lstm_seq_gather(ml_graph *g, ml_node *table, const int32_t *rows, ml_node *w_hh, const int32_t *n_t,
                                   int64_t T);

/* ---- losses (composites of the ops above; mean over the batch) ---- */
ML_API ml_node *ml_cross_entropy(ml_graph *g, ml_node *logits, const int32_t *labels);
ML_API ml_node *ml_mse(ml_graph *g, ml_node *pred, ml_node *target);
/* Binary cross-entropy on logits with 0/1 (or soft) targets, stable for large |x|. */
ML_API ml_node *ml_bce_with_logits(ml_graph *g, ml_node *logits, ml_node *target);
/* Pairwise squared Euclidean distances: a (N, D), b (M, D) -> (N, M). */
ML_API ml_node *ml_sqdist(ml_graph *g, ml_node *a, ml_node *b);

/* ---- gradients ----
 * grads[j] = d(sum_i <grad_outputs[i], outputs[i]>)/d inputs[j]. grad_outputs NULL means ones.
 * An input the outputs do not depend on gets a zero tensor. With create_graph the results are
 * differentiable nodes; without it they are constants and nothing is recorded. */
ML_API ml_status ml_grad(ml_graph *g, ml_node *const *outputs, int64_t n_out, ml_node *const *grad_outputs,
                         ml_node *const *inputs, int64_t n_in, bool create_graph, ml_node **grads);

#endif
