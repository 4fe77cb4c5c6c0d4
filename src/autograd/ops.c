/* Differentiable ops: each forward runs its kernel at once; each backward is written with ops,
 * so gradients can be differentiated again. One section per row of ops.def. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/internal.h"
#include "kernels/internal.h"

#define GUARD1(x) \
  if (!(x) || g->status) return NULL
#define GUARD2(x, y) \
  if (!(x) || !(y) || g->status) return NULL

static const char *shp(const ml_node *n, char *buf) { return ml_tensor_shape_str(&n->value, buf, 64); }

/* ------------------------------------------------------------------ reshape */
ml_node *ml_reshape(ml_graph *g, ml_node *x, int ndim, const int64_t *shape) {
  GUARD1(x);
  ml_tensor t = ml_shape(ndim, shape);
  if (t.numel != x->value.numel || ndim < 1 || ndim > ML_MAX_DIMS) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "reshape: %s has %lld elements, target has %lld", shp(x, b1),
                    (long long)x->value.numel, (long long)t.numel);
  }
  ml_node *n = ml__node(g, ML_OP_RESHAPE, ndim, shape, x, NULL, NULL, false);
  if (n) n->value.data = x->value.data, n->owner = x->owner; /* a view: x's buffer */
  return n;
}

static ml_node *reshape_like(ml_graph *g, ml_node *x, const ml_node *like) {
  if (!x) return NULL;
  if (ml_tensor_same_shape(&x->value, &like->value)) return x;
  return ml_reshape(g, x, like->value.ndim, like->value.shape);
}

/* ------------------------------------------------------------------ binary, (P,C,Q) broadcast */
static const ml_bin_op bin_kernel[] = {[ML_OP_ADD] = ML_BIN_ADD, [ML_OP_SUB] = ML_BIN_SUB,
                                       [ML_OP_MUL] = ML_BIN_MUL, [ML_OP_DIV] = ML_BIN_DIV};

static ml_node *binary(ml_graph *g, ml_op op, ml_node *a, ml_node *b, int64_t P, int64_t C, int64_t Q) {
  ml_node *n = ml__node(g, op, a->value.ndim, a->value.shape, a, b, NULL, true);
  if (!n) return NULL;
  n->p = P, n->c = C, n->q = Q;
  ml_binary(bin_kernel[op], n->value.data, a->value.data, b->value.data, P, C, Q);
  return n;
}

static ml_node *binary_auto(ml_graph *g, ml_op op, ml_node *a, ml_node *b) {
  GUARD2(a, b);
  const ml_tensor *ta = &a->value, *tb = &b->value;
  if (ml_tensor_same_shape(ta, tb)) return binary(g, op, a, b, 1, ta->numel, 1);
  if (tb->numel == 1) return binary(g, op, a, b, ta->numel, 1, 1);
  /* b's shape a suffix of a's: repeat b over the leading dims. */
  if (tb->ndim <= ta->ndim) {
    bool suffix = true;
    for (int i = 0; i < tb->ndim; i++)
      if (tb->shape[tb->ndim - 1 - i] != ta->shape[ta->ndim - 1 - i]) suffix = false;
    if (suffix) return binary(g, op, a, b, ta->numel / tb->numel, tb->numel, 1);
  }
  char b1[64], b2[64];
  return ml__fail(g, ML_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", ml_op_name(op), shp(a, b1), shp(b, b2));
}

static ml_node *binary_axis(ml_graph *g, ml_op op, ml_node *a, ml_node *b, int axis) {
  GUARD2(a, b);
  const ml_tensor *ta = &a->value;
  if (axis < 0 || axis >= ta->ndim || b->value.numel != ta->shape[axis]) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "%s: %s cannot broadcast along axis %d of %s", ml_op_name(op), shp(b, b1), axis,
                    shp(a, b2));
  }
  int64_t P = 1, Q = 1;
  for (int i = 0; i < axis; i++) P *= ta->shape[i];
  for (int i = axis + 1; i < ta->ndim; i++) Q *= ta->shape[i];
  return binary(g, op, a, b, P, ta->shape[axis], Q);
}

ml_node *ml_add(ml_graph *g, ml_node *a, ml_node *b) { return binary_auto(g, ML_OP_ADD, a, b); }
ml_node *ml_sub(ml_graph *g, ml_node *a, ml_node *b) { return binary_auto(g, ML_OP_SUB, a, b); }
ml_node *ml_mul(ml_graph *g, ml_node *a, ml_node *b) { return binary_auto(g, ML_OP_MUL, a, b); }
ml_node *ml_div(ml_graph *g, ml_node *a, ml_node *b) { return binary_auto(g, ML_OP_DIV, a, b); }
ml_node *ml_add_axis(ml_graph *g, ml_node *a, ml_node *b, int axis) { return binary_axis(g, ML_OP_ADD, a, b, axis); }
ml_node *ml_sub_axis(ml_graph *g, ml_node *a, ml_node *b, int axis) { return binary_axis(g, ML_OP_SUB, a, b, axis); }
ml_node *ml_mul_axis(ml_graph *g, ml_node *a, ml_node *b, int axis) { return binary_axis(g, ML_OP_MUL, a, b, axis); }
ml_node *ml_div_axis(ml_graph *g, ml_node *a, ml_node *b, int axis) { return binary_axis(g, ML_OP_DIV, a, b, axis); }

/* Gradient for the broadcast operand b of a (P,C,Q) op: sum over P and Q, in b's shape. */
static ml_node *reduce_to_b(ml_graph *g, ml_node *grad, const ml_node *n) {
  const ml_node *b = n->in[1];
  if (n->p == 1 && n->q == 1) return reshape_like(g, grad, b);
  return reshape_like(g, ml_reduce_pcq(g, grad, n->p, n->c, n->q), b);
}

static void bw_binary(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *a = n->in[0], *b = n->in[1];
  switch (n->op) {
    case ML_OP_ADD:
      if (need[0]) gin[0] = go;
      if (need[1]) gin[1] = reduce_to_b(g, go, n);
      break;
    case ML_OP_SUB:
      if (need[0]) gin[0] = go;
      if (need[1]) gin[1] = ml_neg(g, reduce_to_b(g, go, n));
      break;
    case ML_OP_MUL:
      if (need[0]) gin[0] = binary(g, ML_OP_MUL, go, b, n->p, n->c, n->q);
      if (need[1]) gin[1] = reduce_to_b(g, ml_mul(g, go, a), n);
      break;
    case ML_OP_DIV: /* d(a/b)/db = -(a/b)/b */
      if (need[0]) gin[0] = binary(g, ML_OP_DIV, go, b, n->p, n->c, n->q);
      if (need[1]) gin[1] = ml_neg(g, ml_div(g, reduce_to_b(g, ml_mul(g, go, n), n), b));
      break;
    default:
      break;
  }
}

/* ------------------------------------------------------------------ affine */
ml_node *ml_affine(ml_graph *g, ml_node *x, float s, float t) {
  GUARD1(x);
  ml_node *n = ml__node(g, ML_OP_AFFINE, x->value.ndim, x->value.shape, x, NULL, NULL, true);
  if (!n) return NULL;
  n->a = s, n->b = t;
  ml_affine_kernel(n->value.data, x->value.data, x->value.numel, s, t);
  return n;
}
ml_node *ml_scale(ml_graph *g, ml_node *x, float s) { return ml_affine(g, x, s, 0.0f); }
ml_node *ml_neg(ml_graph *g, ml_node *x) { return ml_affine(g, x, -1.0f, 0.0f); }

static void bw_affine(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (need[0]) gin[0] = ml_scale(g, go, n->a);
}

/* ------------------------------------------------------------------ reduce / expand */
ml_node *ml_reduce_pcq(ml_graph *g, ml_node *x, int64_t P, int64_t C, int64_t Q) {
  GUARD1(x);
  if (P < 1 || C < 1 || Q < 1 || P * C * Q != x->value.numel) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "reduce: %s is not a (%lld, %lld, %lld) view", shp(x, b1), (long long)P,
                    (long long)C, (long long)Q);
  }
  ml_node *n = ml__node(g, ML_OP_REDUCE, 1, (int64_t[]){C}, x, NULL, NULL, true);
  if (!n) return NULL;
  n->p = P, n->c = C, n->q = Q;
  ml_reduce_sum(n->value.data, x->value.data, P, C, Q);
  return n;
}

ml_node *ml_expand_pcq(ml_graph *g, ml_node *x, int64_t P, int64_t C, int64_t Q, int ndim, const int64_t *shape) {
  GUARD1(x);
  ml_tensor t = ml_shape(ndim, shape);
  if (P < 1 || C < 1 || Q < 1 || x->value.numel != C || t.numel != P * C * Q) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "expand: %s cannot be the C of (%lld, %lld, %lld)", shp(x, b1), (long long)P,
                    (long long)C, (long long)Q);
  }
  ml_node *n = ml__node(g, ML_OP_EXPAND, ndim, shape, x, NULL, NULL, true);
  if (!n) return NULL;
  n->p = P, n->c = C, n->q = Q;
  ml_expand(n->value.data, x->value.data, P, C, Q);
  return n;
}

static void bw_reduce(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *x = n->in[0];
  if (need[0]) gin[0] = ml_expand_pcq(g, go, n->p, n->c, n->q, x->value.ndim, x->value.shape);
}

static void bw_expand(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (need[0]) gin[0] = reshape_like(g, ml_reduce_pcq(g, go, n->p, n->c, n->q), n->in[0]);
}

ml_node *ml_sum(ml_graph *g, ml_node *x) {
  GUARD1(x);
  return ml_reduce_pcq(g, x, 1, 1, x->value.numel);
}

ml_node *ml_mean(ml_graph *g, ml_node *x) {
  GUARD1(x);
  return ml_scale(g, ml_sum(g, x), 1.0f / (float)x->value.numel);
}

ml_node *ml_sum_axis_keep(ml_graph *g, ml_node *x, int axis) {
  GUARD1(x);
  if (axis < 0 || axis >= x->value.ndim) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "sum_axis_keep: axis %d out of range for %s", axis, shp(x, b1));
  }
  int64_t P = 1, Q = 1;
  for (int i = 0; i < axis; i++) P *= x->value.shape[i];
  for (int i = axis + 1; i < x->value.ndim; i++) Q *= x->value.shape[i];
  return ml_reduce_pcq(g, x, P, x->value.shape[axis], Q);
}

ml_node *ml_sum_rows(ml_graph *g, ml_node *x) {
  GUARD1(x);
  if (x->value.ndim != 2) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "sum_rows: %s is not 2-D", shp(x, b1));
  }
  return ml_reduce_pcq(g, x, 1, x->value.shape[0], x->value.shape[1]);
}

/* ------------------------------------------------------------------ unary */
static ml_node *unary(ml_graph *g, ml_op op, ml_un_op k, ml_node *x) {
  GUARD1(x);
  ml_node *n = ml__node(g, op, x->value.ndim, x->value.shape, x, NULL, NULL, true);
  if (!n) return NULL;
  ml_unary(k, n->value.data, x->value.data, x->value.numel);
  return n;
}
ml_node *ml_relu(ml_graph *g, ml_node *x) { return unary(g, ML_OP_RELU, ML_UN_RELU, x); }
ml_node *ml_exp(ml_graph *g, ml_node *x) { return unary(g, ML_OP_EXP, ML_UN_EXP, x); }
ml_node *ml_log(ml_graph *g, ml_node *x) { return unary(g, ML_OP_LOG, ML_UN_LOG, x); }
ml_node *ml_sigmoid(ml_graph *g, ml_node *x) { return unary(g, ML_OP_SIGMOID, ML_UN_SIGMOID, x); }
ml_node *ml_tanh(ml_graph *g, ml_node *x) { return unary(g, ML_OP_TANH, ML_UN_TANH, x); }
ml_node *ml_softplus(ml_graph *g, ml_node *x) { return unary(g, ML_OP_SOFTPLUS, ML_UN_SOFTPLUS, x); }
ml_node *ml_rsqrt(ml_graph *g, ml_node *x) { return unary(g, ML_OP_RSQRT, ML_UN_RSQRT, x); }
ml_node *ml_sqrt(ml_graph *g, ml_node *x) { return unary(g, ML_OP_SQRT, ML_UN_SQRT, x); }
ml_node *ml_square(ml_graph *g, ml_node *x) { return unary(g, ML_OP_SQUARE, ML_UN_SQUARE, x); }

static void bw_unary(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (!need[0]) return;
  ml_node *x = n->in[0];
  switch (n->op) {
    case ML_OP_RELU:
      gin[0] = ml_relu_mask(g, go, x);
      break;
    case ML_OP_EXP:
      gin[0] = ml_mul(g, go, n);
      break;
    case ML_OP_LOG:
      gin[0] = ml_div(g, go, x);
      break;
    case ML_OP_SIGMOID: /* s (1 - s) */
      gin[0] = ml_mul(g, go, ml_mul(g, n, ml_affine(g, n, -1.0f, 1.0f)));
      break;
    case ML_OP_TANH: /* 1 - t^2 */
      gin[0] = ml_mul(g, go, ml_affine(g, ml_square(g, n), -1.0f, 1.0f));
      break;
    case ML_OP_SOFTPLUS:
      gin[0] = ml_mul(g, go, ml_sigmoid(g, x));
      break;
    case ML_OP_RSQRT: /* -y^3 / 2 */
      gin[0] = ml_mul(g, go, ml_scale(g, ml_mul(g, n, ml_square(g, n)), -0.5f));
      break;
    case ML_OP_SQRT:
      gin[0] = ml_div(g, ml_scale(g, go, 0.5f), n);
      break;
    case ML_OP_SQUARE:
      gin[0] = ml_mul(g, go, ml_scale(g, x, 2.0f));
      break;
    default:
      break;
  }
}

ml_node *ml_relu_mask(ml_graph *g, ml_node *grad, ml_node *x) {
  GUARD2(grad, x);
  if (grad->value.numel != x->value.numel) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "relu_mask: %s vs %s", shp(grad, b1), shp(x, b2));
  }
  ml_node *n = ml__node(g, ML_OP_RELU_MASK, grad->value.ndim, grad->value.shape, grad, x, NULL, true);
  if (!n) return NULL;
  ml_relu_mask_kernel(n->value.data, grad->value.data, x->value.data, x->value.numel);
  return n;
}

/* The mask is piecewise constant in x: no gradient flows to x. */
static void bw_relu_mask(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (need[0]) gin[0] = ml_relu_mask(g, go, n->in[1]);
}

/* ------------------------------------------------------------------ matmul */
ml_node *ml_matmul(ml_graph *g, ml_node *a, ml_node *b, bool ta, bool tb) {
  GUARD2(a, b);
  if (a->value.ndim != 2 || b->value.ndim != 2) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "matmul: %s and %s must be 2-D", shp(a, b1), shp(b, b2));
  }
  int64_t M = ta ? a->value.shape[1] : a->value.shape[0], K = ta ? a->value.shape[0] : a->value.shape[1];
  int64_t K2 = tb ? b->value.shape[1] : b->value.shape[0], N = tb ? b->value.shape[0] : b->value.shape[1];
  if (K != K2) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "matmul: %s%s x %s%s: inner sizes %lld and %lld differ", shp(a, b1),
                    ta ? "^T" : "", shp(b, b2), tb ? "^T" : "", (long long)K, (long long)K2);
  }
  ml_node *n = ml__node(g, ML_OP_MATMUL, 2, (int64_t[]){M, N}, a, b, NULL, true);
  if (!n) return NULL;
  n->ta = ta, n->tb = tb;
  ml_gemm(ta, tb, M, N, K, 1.0f, a->value.data, a->value.shape[1], b->value.data, b->value.shape[1], 0.0f,
          n->value.data, N);
  return n;
}

/* C = op(A) op(B): d op(A) = G op(B)^T, d op(B) = op(A)^T G, transposed back where stored so. */
static void bw_matmul(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *a = n->in[0], *b = n->in[1];
  if (need[0]) gin[0] = n->ta ? ml_matmul(g, b, go, n->tb, true) : ml_matmul(g, go, b, false, !n->tb);
  if (need[1]) gin[1] = n->tb ? ml_matmul(g, go, a, true, n->ta) : ml_matmul(g, a, go, !n->ta, false);
}

ml_node *ml_linear(ml_graph *g, ml_node *x, ml_node *w, ml_node *b) {
  ml_node *y = ml_matmul(g, x, w, false, true);
  return b ? ml_add(g, y, b) : y;
}

/* ------------------------------------------------------------------ conv2d and its adjoints */
/* The bias (or NULL) is the node's third input, added by the kernel: a separate broadcast add
 * would keep a second full-size activation per layer. */
static ml_node *conv_raw(ml_graph *g, ml_node *x, ml_node *w, ml_node *b, const ml_conv_shape *s) {
  ml_node *n = ml__node(g, ML_OP_CONV2D, 4, (int64_t[]){s->B, s->OC, s->OH, s->OW}, x, w, b, true);
  float *scratch = ml__temp(g, ml_conv2d_scratch_floats(s) * sizeof(float));
  if (!n || !scratch) return NULL;
  n->conv = *s;
  ml_conv2d_forward(s, n->value.data, x->value.data, w->value.data, b ? b->value.data : NULL, scratch);
  return n;
}

ml_node *ml_conv2d(ml_graph *g, ml_node *x, ml_node *w, ml_node *b, int64_t stride, int64_t pad) {
  GUARD2(x, w);
  const ml_tensor *tx = &x->value, *tw = &w->value;
  ml_conv_shape s;
  if (tx->ndim != 4 || tw->ndim != 4 || tx->shape[1] != tw->shape[1] ||
      ml_conv_shape_make(&s, tx->shape[0], tx->shape[1], tx->shape[2], tx->shape[3], tw->shape[0], tw->shape[2],
                         tw->shape[3], stride, pad) != ML_OK) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "conv2d: input %s and weight %s (stride %lld, pad %lld) do not fit", shp(x, b1),
                    shp(w, b2), (long long)stride, (long long)pad);
  }
  if (b && (!b->value.data || b->value.numel != s.OC)) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "conv2d: bias %s must have %lld elements", shp(b, b1), (long long)s.OC);
  }
  return conv_raw(g, x, w, b, &s);
}

ml_node *ml_conv2d_bwd_data(ml_graph *g, ml_node *dy, ml_node *w, const ml_conv_shape *s) {
  GUARD2(dy, w);
  if (dy->value.numel != s->B * s->OC * s->OH * s->OW || w->value.numel != s->OC * s->C * s->KH * s->KW)
    return ml__fail(g, ML_ERR_SHAPE, "conv2d_bwd_data: gradient or weight does not match the conv shape");
  ml_node *n = ml__node(g, ML_OP_CONV2D_BWD_DATA, 4, (int64_t[]){s->B, s->C, s->H, s->W}, dy, w, NULL, true);
  float *scratch = ml__temp(g, ml_conv2d_scratch_floats(s) * sizeof(float));
  if (!n || !scratch) return NULL;
  n->conv = *s;
  ml_conv2d_backward_data(s, n->value.data, dy->value.data, w->value.data, scratch);
  return n;
}

/* The weight-gradient node; db (a reduce node over dy, or NULL) gets the bias gradient from the
 * same kernel call. */
static ml_node *bwd_weight_node(ml_graph *g, ml_node *x, ml_node *dy, const ml_conv_shape *s, ml_node *db) {
  ml_node *n = ml__node(g, ML_OP_CONV2D_BWD_WEIGHT, 4, (int64_t[]){s->OC, s->C, s->KH, s->KW}, x, dy, NULL, true);
  float *scratch = ml__temp(g, ml_conv2d_scratch_floats(s) * sizeof(float));
  if (!n || !scratch) return NULL;
  n->conv = *s;
  ml_conv2d_backward_weight_bias(s, n->value.data, db ? db->value.data : NULL, x->value.data, dy->value.data,
                                 scratch);
  return n;
}

ml_node *ml_conv2d_bwd_weight(ml_graph *g, ml_node *x, ml_node *dy, const ml_conv_shape *s) {
  GUARD2(x, dy);
  if (dy->value.numel != s->B * s->OC * s->OH * s->OW || x->value.numel != s->B * s->C * s->H * s->W)
    return ml__fail(g, ML_ERR_SHAPE, "conv2d_bwd_weight: input or gradient does not match the conv shape");
  return bwd_weight_node(g, x, dy, s, NULL);
}

/* The weight gradient and the bias gradient in one pass over dy: the bias gradient is the node
 * ml_reduce_pcq(dy) would make (same op, same backward), its value filled by the weight kernel. */
static void conv_bwd_weight_bias(ml_graph *g, ml_node *x, ml_node *dy, const ml_conv_shape *s, ml_node **gw,
                                 ml_node **gb) {
  *gw = *gb = NULL;
  if (!x || !dy) return;
  ml_node *r = ml__node(g, ML_OP_REDUCE, 1, (int64_t[]){s->OC}, dy, NULL, NULL, true);
  if (!r) return;
  r->p = s->B, r->c = s->OC, r->q = s->OH * s->OW;
  *gw = bwd_weight_node(g, x, dy, s, r);
  *gb = *gw ? r : NULL;
}

/* Both gradients of y = conv(x, w) (and the bias's, gb non-NULL) from one kernel call, which puts
 * dy channel-minor once for both where it can: the nodes ml_conv2d_bwd_data and
 * conv_bwd_weight_bias make, with the same values. */
static void conv_bwd_both(ml_graph *g, ml_node *x, ml_node *w, ml_node *dy, const ml_conv_shape *s, ml_node **gx,
                          ml_node **gw, ml_node **gb) {
  *gx = *gw = NULL;
  if (gb) *gb = NULL;
  if (!x || !w || !dy) return;
  ml_node *nx = ml__node(g, ML_OP_CONV2D_BWD_DATA, 4, (int64_t[]){s->B, s->C, s->H, s->W}, dy, w, NULL, true);
  if (!nx) return;
  nx->conv = *s;
  ml_node *r = NULL;
  if (gb) {
    r = ml__node(g, ML_OP_REDUCE, 1, (int64_t[]){s->OC}, dy, NULL, NULL, true);
    if (!r) return;
    r->p = s->B, r->c = s->OC, r->q = s->OH * s->OW;
  }
  ml_node *nw = ml__node(g, ML_OP_CONV2D_BWD_WEIGHT, 4, (int64_t[]){s->OC, s->C, s->KH, s->KW}, x, dy, NULL, true);
  float *scratch = ml__temp(g, ml_conv2d_scratch_floats(s) * sizeof(float));
  if (!nw || !scratch) return;
  nw->conv = *s;
  ml_conv2d_backward(s, nx->value.data, nw->value.data, r ? r->value.data : NULL, x->value.data, dy->value.data,
                     w->value.data, scratch);
  *gx = nx, *gw = nw;
  if (gb) *gb = r;
}

/* y = conv(x, w) is bilinear; so are its adjoints, and each one's partial derivatives are the
 * other two (with arguments permuted). */
static void bw_conv(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *a = n->in[0], *b = n->in[1];
  const ml_conv_shape *s = &n->conv;
  switch (n->op) {
    case ML_OP_CONV2D: /* a = x, b = w, in[2] = bias or NULL */
      if (need[0] && need[1]) {
        const bool bias = need[2] && n->in[2];
        ml_node *gb = NULL;
        conv_bwd_both(g, a, b, go, s, &gin[0], &gin[1], bias ? &gb : NULL);
        if (bias) gin[2] = reshape_like(g, gb, n->in[2]);
        break;
      }
      if (need[0]) gin[0] = ml_conv2d_bwd_data(g, go, b, s);
      if (need[1] && need[2] && n->in[2]) {
        ml_node *gb;
        conv_bwd_weight_bias(g, a, go, s, &gin[1], &gb);
        gin[2] = reshape_like(g, gb, n->in[2]);
        break;
      }
      if (need[1]) gin[1] = ml_conv2d_bwd_weight(g, a, go, s);
      if (need[2] && n->in[2]) gin[2] = reshape_like(g, ml_reduce_pcq(g, go, s->B, s->OC, s->OH * s->OW), n->in[2]);
      break;
    case ML_OP_CONV2D_BWD_DATA: /* a = dy, b = w; go has x's shape */
      if (need[0]) gin[0] = conv_raw(g, go, b, NULL, s);
      if (need[1]) gin[1] = ml_conv2d_bwd_weight(g, go, a, s);
      break;
    case ML_OP_CONV2D_BWD_WEIGHT: /* a = x, b = dy; go has w's shape */
      if (need[0]) gin[0] = ml_conv2d_bwd_data(g, b, go, s);
      if (need[1]) gin[1] = conv_raw(g, a, go, NULL, s);
      break;
    default:
      break;
  }
}

/* ------------------------------------------------------------------ max-pool */
static ml_node *pool_scatter(ml_graph *g, ml_node *go, const ml_node *pool_or_gather);
static ml_node *pool_gather(ml_graph *g, ml_node *x, const ml_conv_shape *s, const uint8_t *arg);

ml_node *ml_maxpool2(ml_graph *g, ml_node *x) {
  GUARD1(x);
  const ml_tensor *t = &x->value;
  if (t->ndim != 4 || t->shape[2] < 2 || t->shape[3] < 2) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "maxpool2: input %s must be (B,C,H,W) with H, W >= 2", shp(x, b1));
  }
  int64_t B = t->shape[0], C = t->shape[1], H = t->shape[2], W = t->shape[3];
  ml_node *n = ml__node(g, ML_OP_MAXPOOL2, 4, (int64_t[]){B, C, H / 2, W / 2}, x, NULL, NULL, true);
  uint8_t *arg = ml__scratch(g, (size_t)(B * C * (H / 2) * (W / 2)));
  if (!n || !arg) return NULL;
  n->conv.B = B, n->conv.C = C, n->conv.H = H, n->conv.W = W;
  n->arg = arg;
  ml_maxpool2_forward(n->value.data, arg, x->value.data, B, C, H, W);
  return n;
}

static ml_node *pool_scatter(ml_graph *g, ml_node *go, const ml_node *src) {
  GUARD1(go);
  const ml_conv_shape *s = &src->conv;
  ml_node *n = ml__node(g, ML_OP_POOL_SCATTER, 4, (int64_t[]){s->B, s->C, s->H, s->W}, go, NULL, NULL, true);
  if (!n) return NULL;
  n->conv = *s;
  n->arg = src->arg;
  ml_maxpool2_scatter(n->value.data, go->value.data, n->arg, s->B, s->C, s->H, s->W);
  return n;
}

static ml_node *pool_gather(ml_graph *g, ml_node *x, const ml_conv_shape *s, const uint8_t *arg) {
  GUARD1(x);
  ml_node *n = ml__node(g, ML_OP_POOL_GATHER, 4, (int64_t[]){s->B, s->C, s->H / 2, s->W / 2}, x, NULL, NULL, true);
  if (!n) return NULL;
  n->conv = *s;
  n->arg = arg;
  ml_maxpool2_gather(n->value.data, x->value.data, arg, s->B, s->C, s->H, s->W);
  return n;
}

/* With the argmax fixed, pooling is linear: its adjoint is a scatter, whose adjoint is a gather. */
static void bw_pool(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (!need[0]) return;
  if (n->op == ML_OP_POOL_SCATTER)
    gin[0] = pool_gather(g, go, &n->conv, n->arg);
  else
    gin[0] = pool_scatter(g, go, n);
}

/* ------------------------------------------------------------------ batch-norm */
ml_node *ml_batch_norm(ml_graph *g, ml_node *x, ml_node *gamma, ml_node *beta, float eps) {
  GUARD1(x);
  if ((gamma && !gamma->value.data) || (beta && !beta->value.data) || g->status) return NULL;
  const ml_tensor *t = &x->value;
  if (t->ndim != 2 && t->ndim != 4) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "batch_norm: input %s must be (B,C) or (B,C,H,W)", shp(x, b1));
  }
  int64_t B = t->shape[0], C = t->shape[1], HW = t->ndim == 4 ? t->shape[2] * t->shape[3] : 1;
  if ((gamma && gamma->value.numel != C) || (beta && beta->value.numel != C)) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "batch_norm: gamma/beta must have %lld elements for input %s", (long long)C,
                    shp(x, b1));
  }
  ml_node *n = ml__node(g, ML_OP_BATCH_NORM, t->ndim, t->shape, x, gamma, beta, true);
  float *saved = ml__scratch(g, (size_t)(2 * C) * sizeof(float));
  float *ones = gamma ? NULL : ml__scratch(g, (size_t)C * sizeof(float));
  float *zeros = beta ? NULL : ml__scratch(g, (size_t)C * sizeof(float));
  if (!n || !saved || (!gamma && !ones) || (!beta && !zeros)) return NULL;
  for (int64_t c = 0; c < C; c++) {
    if (ones) ones[c] = 1.0f;
    if (zeros) zeros[c] = 0.0f;
  }
  n->p = B, n->c = C, n->q = HW, n->a = eps;
  n->saved0 = saved, n->saved1 = saved + C;
  ml_batchnorm_forward(n->value.data, n->saved0, n->saved1, x->value.data, gamma ? gamma->value.data : ones,
                       beta ? beta->value.data : zeros, B, C, HW, eps);
  return n;
}

static float *ones_for(ml_graph *g, const ml_node *gamma, int64_t C) {
  if (gamma) return gamma->value.data;
  float *ones = ml__scratch(g, (size_t)C * sizeof(float));
  if (ones)
    for (int64_t c = 0; c < C; c++) ones[c] = 1.0f;
  return ones;
}

/* The batch-norm gradients as nodes that stay differentiable: dx and dgamma become BN_GRAD and
 * BN_DGAMMA nodes (values from the fused kernel) whose own backward is the fused double-backward
 * kernel; dbeta is a reduction. st carries the statistics (a BATCH_NORM or BN_POOL node). Under
 * a BN_POOL, dy is the pooled gradient and the nodes keep the pool's argmax (arg set): the
 * full-size dy, three quarters zeros, is scattered only inside the kernels that read it, so a
 * second-order inner step keeps one full-size tensor per block instead of two. */
static void bn_backward_nodes(ml_graph *g, const ml_node *st, ml_node *x, ml_node *dy, ml_node *gamma, ml_node *beta,
                              ml_node **gin, const bool *need) {
  int64_t B = st->p, C = st->c, HW = st->q;
  const bool pooled = st->op == ML_OP_BN_POOL;
  const ml_tensor *t = &x->value;
  float *ones = ones_for(g, gamma, C), *dbeta_tmp = ml__scratch(g, (size_t)C * sizeof(float));
  if (!ones || !dbeta_tmp) return;
  ml_node *dx = ml__node(g, ML_OP_BN_GRAD, t->ndim, t->shape, x, dy, gamma, true);
  ml_node *dgamma = ml__node(g, ML_OP_BN_DGAMMA, 1, (int64_t[]){C}, x, dy, NULL, true);
  /* a scatter keeps each channel's sum */
  ml_node *dbeta = ml_reduce_pcq(g, dy, B, C, pooled ? dy->value.numel / (B * C) : HW);
  if (!dx || !dgamma || !dbeta) return;
  ml_node *nodes[2] = {dx, dgamma};
  for (int i = 0; i < 2; i++) {
    nodes[i]->p = B, nodes[i]->c = C, nodes[i]->q = HW, nodes[i]->a = st->a, nodes[i]->saved0 = st->saved0,
    nodes[i]->saved1 = st->saved1;
    if (pooled) nodes[i]->arg = st->arg, nodes[i]->conv = st->conv;
  }
  if (pooled)
    ml_batchnorm_pool_backward(dx->value.data, dgamma->value.data, dbeta_tmp, dy->value.data, NULL, st->arg,
                               x->value.data, st->saved0, st->saved1, gamma ? gamma->value.data : NULL, B, C,
                               st->conv.H, st->conv.W);
  else
    ml_batchnorm_backward(dx->value.data, dgamma->value.data, dbeta_tmp, dy->value.data, x->value.data, st->saved0,
                          st->saved1, ones, B, C, HW);
  if (need[0]) gin[0] = dx;
  if (need[1]) gin[1] = reshape_like(g, dgamma, gamma);
  if (need[2]) gin[2] = reshape_like(g, dbeta, beta);
}

/* Without create_graph the fused kernel computes all three gradients in two passes; with it,
 * bn_backward_nodes: second-order MAML keeps one full-size tensor per batch-norm and inner step
 * instead of the eight a composite of elementwise ops would keep. */
static void bw_batch_norm(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
  if (g->recording) {
    bn_backward_nodes(g, n, x, go, gamma, beta, gin, need);
    return;
  }
  int64_t C = n->c;
  const ml_tensor *t = &x->value;
  float *ones = ones_for(g, gamma, C);
  ml_node *dx = ml_new(g, t->ndim, t->shape), *dgamma = ml_new(g, 1, (int64_t[]){C}), *dbeta = ml_new(g, 1, (int64_t[]){C});
  if (!ones || !dx || !dgamma || !dbeta) return;
  ml_batchnorm_backward(dx->value.data, dgamma->value.data, dbeta->value.data, go->value.data, x->value.data,
                        n->saved0, n->saved1, ones, n->p, C, n->q);
  if (need[0]) gin[0] = dx;
  if (need[1]) gin[1] = reshape_like(g, dgamma, gamma);
  if (need[2]) gin[2] = reshape_like(g, dbeta, beta);
}

/* ------------------------------------------------------------------ batch-norm + max-pool */
ml_node *ml_batch_norm_pool(ml_graph *g, ml_node *x, ml_node *gamma, ml_node *beta, float eps, bool relu) {
  GUARD1(x);
  if ((gamma && !gamma->value.data) || (beta && !beta->value.data) || g->status) return NULL;
  const ml_tensor *t = &x->value;
  if (t->ndim != 4 || t->shape[2] < 2 || t->shape[3] < 2) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "batch_norm_pool: input %s must be (B,C,H,W) with H, W >= 2", shp(x, b1));
  }
  int64_t B = t->shape[0], C = t->shape[1], H = t->shape[2], W = t->shape[3];
  if ((gamma && gamma->value.numel != C) || (beta && beta->value.numel != C)) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "batch_norm_pool: gamma/beta must have %lld elements for input %s",
                    (long long)C, shp(x, b1));
  }
  ml_node *n = ml__node(g, ML_OP_BN_POOL, 4, (int64_t[]){B, C, H / 2, W / 2}, x, gamma, beta, true);
  float *saved = ml__scratch(g, (size_t)(2 * C) * sizeof(float));
  /* the argmax only when a backward can need it */
  uint8_t *arg = n && n->n_in ? ml__scratch(g, (size_t)(B * C * (H / 2) * (W / 2))) : NULL;
  if (!n || !saved || (n->n_in && !arg)) return NULL;
  n->p = B, n->c = C, n->q = H * W, n->a = eps;
  n->saved0 = saved, n->saved1 = saved + C;
  n->conv.B = B, n->conv.C = C, n->conv.H = H, n->conv.W = W; /* for the pool scatter */
  n->arg = arg, n->relu = relu;
  ml_batchnorm_pool_forward(n->value.data, arg, n->saved0, n->saved1, x->value.data, gamma ? gamma->value.data : NULL,
                            beta ? beta->value.data : NULL, B, C, H, W, eps, relu);
  return n;
}

/* Recording: the batch-norm's dy is the pool scatter of go (masked by the ReLU, which has no
 * second derivative), and the rest is bn_backward_nodes.
 * Otherwise one fused kernel straight from the pooled gradient. */
static void bw_bn_pool(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
  if (g->recording) {
    if (n->relu) go = ml_relu_mask(g, go, n);
    bn_backward_nodes(g, n, x, go, gamma, beta, gin, need);
    return;
  }
  int64_t C = n->c;
  const ml_tensor *t = &x->value;
  ml_node *dx = need[0] ? ml_new(g, t->ndim, t->shape) : NULL;
  ml_node *dgamma = need[1] ? ml_new(g, 1, (int64_t[]){C}) : NULL, *dbeta = need[2] ? ml_new(g, 1, (int64_t[]){C}) : NULL;
  float *dx_tmp = dx ? NULL : ml__temp(g, (size_t)t->numel * sizeof(float));
  if (g->status) return;
  ml_batchnorm_pool_backward(dx ? dx->value.data : dx_tmp, dgamma ? dgamma->value.data : NULL,
                             dbeta ? dbeta->value.data : NULL, go->value.data, n->relu ? n->value.data : NULL, n->arg,
                             x->value.data, n->saved0, n->saved1, gamma ? gamma->value.data : NULL, n->conv.B, C,
                             n->conv.H, n->conv.W);
  if (dx) gin[0] = dx;
  if (dgamma) gin[1] = reshape_like(g, dgamma, gamma);
  if (dbeta) gin[2] = reshape_like(g, dbeta, beta);
}

/* ------------------------------------------------------------------ conv + batch-norm + max-pool */
ml_node *ml_conv_bn_pool(ml_graph *g, ml_node *x, ml_node *w, ml_node *b, ml_node *gamma, ml_node *beta, int64_t pad,
                         float eps, bool relu) {
  GUARD2(x, w);
  if ((b && !b->value.data) || (gamma && !gamma->value.data) || (beta && !beta->value.data)) return NULL;
  const ml_tensor *tx = &x->value, *tw = &w->value;
  ml_conv_shape s;
  if (tx->ndim != 4 || tw->ndim != 4 || tx->shape[1] != tw->shape[1] ||
      ml_conv_shape_make(&s, tx->shape[0], tx->shape[1], tx->shape[2], tx->shape[3], tw->shape[0], tw->shape[2],
                         tw->shape[3], 1, pad) != ML_OK ||
      s.OH < 2 || s.OW < 2) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "conv_bn_pool: input %s and weight %s (pad %lld) do not fit", shp(x, b1),
                    shp(w, b2), (long long)pad);
  }
  if ((b && b->value.numel != s.OC) || (gamma && gamma->value.numel != s.OC) || (beta && beta->value.numel != s.OC))
    return ml__fail(g, ML_ERR_SHAPE, "conv_bn_pool: bias, gamma and beta must have %lld elements", (long long)s.OC);
  ml_node *ins[5] = {x, w, b, gamma, beta};
  ml_node *n = ml__node_n(g, ML_OP_CONV_BN_POOL, 4, (int64_t[]){s.B, s.OC, s.OH / 2, s.OW / 2}, ins, 5, true);
  /* after the statistics, the output at the argmaxes when the kernels keep it (the backward then
   * skips a recomputation; flagged by b) */
  const bool keep = n && n->n_in && ml__conv_bn_pool_keeps_z(&s);
  float *saved = ml__scratch(g, (size_t)(2 * s.OC + (keep ? n->value.numel : 0)) * sizeof(float));
  uint8_t *arg = n && n->n_in ? ml__scratch(g, (size_t)n->value.numel) : NULL;
  float *scratch = ml__temp(g, ml_conv_bn_pool_scratch_floats(&s) * sizeof(float));
  if (!n || !saved || (n->n_in && !arg) || !scratch) return NULL;
  float *zpool = keep ? saved + 2 * s.OC : NULL;
  n->conv = s, n->a = eps, n->b = keep ? 1.0f : 0.0f, n->arg = arg, n->relu = relu;
  n->saved0 = saved, n->saved1 = saved + s.OC;
  ml__conv_bn_pool_forward_z(&s, n->value.data, arg, zpool, n->saved0, n->saved1, x->value.data, w->value.data,
                             b ? b->value.data : NULL, gamma ? gamma->value.data : NULL,
                             beta ? beta->value.data : NULL, eps, relu, scratch);
  return n;
}

static ml_node *new_like(ml_graph *g, const ml_node *x) { return ml_new(g, x->value.ndim, x->value.shape); }

/* Recording: the convolution and the batch-norm + pool recomputed as their own ops, and their
 * backward rules (which differentiate again). Otherwise the fused kernel, which recomputes each
 * image's convolution output in cache. */
static void bw_conv_bn_pool(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *x = n->in[0], *w = n->in[1], *b = n->in[2], *gamma = n->in[3], *beta = n->in[4];
  const ml_conv_shape *s = &n->conv;
  if (g->recording) {
    ml_node *z = conv_raw(g, x, w, b, s), *p = ml_batch_norm_pool(g, z, gamma, beta, n->a, n->relu);
    if (!p) return;
    ml_node *gp[3] = {NULL, NULL, NULL}, *gc[3] = {NULL, NULL, NULL};
    const bool np[3] = {need[0] || need[1] || need[2], need[3], need[4]}, nc[3] = {need[0], need[1], need[2]};
    bw_bn_pool(g, p, go, gp, np);
    if (gp[0]) bw_conv(g, z, gp[0], gc, nc);
    for (int k = 0; k < 3; k++) gin[k] = gc[k];
    gin[3] = gp[1], gin[4] = gp[2];
    return;
  }
  ml_node *din = need[0] ? new_like(g, x) : NULL, *dw = need[1] ? new_like(g, w) : NULL;
  ml_node *db = need[2] && b ? new_like(g, b) : NULL, *dgamma = need[3] && gamma ? new_like(g, gamma) : NULL;
  ml_node *dbeta = need[4] && beta ? new_like(g, beta) : NULL;
  float *scratch = ml__temp(g, ml_conv_bn_pool_scratch_floats(s) * sizeof(float));
  if (g->status || !scratch) return;
  const float *zpool = n->b != 0.0f ? n->saved1 + s->OC : NULL;
  ml__conv_bn_pool_backward_z(s, din ? din->value.data : NULL, dw ? dw->value.data : NULL,
                              db ? db->value.data : NULL, dgamma ? dgamma->value.data : NULL,
                              dbeta ? dbeta->value.data : NULL, go->value.data, n->relu ? n->value.data : NULL, n->arg,
                              zpool, x->value.data, w->value.data, b ? b->value.data : NULL, n->saved0, n->saved1,
                              gamma ? gamma->value.data : NULL, scratch);
  gin[0] = din, gin[1] = dw, gin[2] = db, gin[3] = dgamma, gin[4] = dbeta;
}

/* The double backward as ops (for third-order gradients), the statistics recomputed as
 * functions of x; same formulas as ml_batchnorm_double_backward. ggi: upstream of dx (or NULL),
 * ggg: upstream of dgamma, (C) (or NULL). */
static void bn_double_composite(ml_graph *g, ml_node *x, ml_node *dy, ml_node *gamma, ml_node *ggi, ml_node *ggg,
                                int64_t B, int64_t C, int64_t HW, float eps, ml_node **gx, ml_node **gdy,
                                ml_node **ggamma) {
  const float inv_m = 1.0f / (float)(B * HW), M = (float)(B * HW);
  ml_node *mean = ml_scale(g, ml_reduce_pcq(g, x, B, C, HW), inv_m);
  ml_node *xm = ml_sub_axis(g, x, mean, 1);
  ml_node *s = ml_rsqrt(g, ml_affine(g, ml_scale(g, ml_reduce_pcq(g, ml_square(g, xm), B, C, HW), inv_m), 1.0f, eps));
  ml_node *s2 = ml_square(g, s), *s3 = ml_mul(g, s2, s);
  ml_node *gam = gamma ? ml_reshape(g, gamma, 1, (int64_t[]){C}) : NULL;
  ml_node *sdy = ml_reduce_pcq(g, dy, B, C, HW), *sdyx = ml_reduce_pcq(g, ml_mul(g, dy, xm), B, C, HW);
  ml_node *vx = NULL, *vdy = NULL; /* gx and gdy */
  if (ggi) {
    ml_node *sgg = ml_reduce_pcq(g, ggi, B, C, HW), *sggx = ml_reduce_pcq(g, ml_mul(g, ggi, xm), B, C, HW);
    ml_node *sdygg = ml_reduce_pcq(g, ml_mul(g, dy, ggi), B, C, HW);
    ml_node *all_sub = ml_add(g, ml_sub(g, ml_scale(g, ml_mul(g, sgg, sdy), inv_m), sdygg),
                              ml_scale(g, ml_mul(g, s2, ml_mul(g, sdyx, sggx)), 3.0f * inv_m));
    ml_node *t0 = ml_mul_axis(g, xm, ml_scale(g, ml_mul(g, s3, all_sub), inv_m), 1);
    ml_node *t1 = ml_mul_axis(g, ml_sub_axis(g, dy, ml_scale(g, sdy, inv_m), 1), ml_scale(g, ml_mul(g, sggx, s3), -inv_m), 1);
    ml_node *t2 = ml_mul_axis(g, ml_sub_axis(g, ggi, ml_scale(g, sgg, inv_m), 1), ml_scale(g, ml_mul(g, sdyx, s3), -inv_m), 1);
    vx = ml_add(g, ml_add(g, t0, t1), t2);
    if (gam) vx = ml_mul_axis(g, vx, gam, 1);
    ml_node *h = ml_sub(g, ml_sub_axis(g, ml_scale(g, ggi, M), sgg, 1), ml_mul_axis(g, xm, ml_mul(g, s2, sggx), 1));
    ml_node *coef = ml_scale(g, gam ? ml_mul(g, gam, s) : s, inv_m);
    vdy = ml_mul_axis(g, h, coef, 1);
    if (ggamma)
      *ggamma = ml_mul(g, s, ml_sub(g, ml_sub(g, sdygg, ml_scale(g, ml_mul(g, sgg, sdy), inv_m)),
                                    ml_scale(g, ml_mul(g, s2, ml_mul(g, sdyx, sggx)), inv_m)));
  }
  if (ggg) {
    ml_node *G = ml_reshape(g, ggg, 1, (int64_t[]){C}), *Gs = ml_mul(g, G, s);
    ml_node *h = ml_sub(g, ml_sub_axis(g, dy, ml_scale(g, sdy, inv_m), 1),
                        ml_mul_axis(g, xm, ml_scale(g, ml_mul(g, s2, sdyx), inv_m), 1));
    ml_node *tx = ml_mul_axis(g, h, Gs, 1), *tdy = ml_mul_axis(g, xm, Gs, 1);
    vx = vx ? ml_add(g, vx, tx) : tx;
    vdy = vdy ? ml_add(g, vdy, tdy) : tdy;
  }
  *gx = vx;
  *gdy = vdy;
}

/* Backward of BN_GRAD (upstream: the gradient of dx) and of BN_DGAMMA (of dgamma). A pooled dy
 * (arg set) is scattered to full size for the double backward, whose dy-gradient is gathered
 * back: a temporary in the eager sweep, nodes when recording. */
static void bw_bn_grad(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *x = n->in[0], *dy = n->in[1], *gamma = n->op == ML_OP_BN_GRAD ? n->in[2] : NULL;
  int64_t B = n->p, C = n->c, HW = n->q;
  bool is_dx = n->op == ML_OP_BN_GRAD;
  const ml_conv_shape *ps = &n->conv;
  if (g->recording) {
    ml_node *gx, *gdy, *ggamma = NULL;
    bn_double_composite(g, x, n->arg ? pool_scatter(g, dy, n) : dy, gamma, is_dx ? go : NULL, is_dx ? NULL : go, B, C,
                        HW, n->a, &gx, &gdy, is_dx && gamma && need[2] ? &ggamma : NULL);
    if (need[0]) gin[0] = gx;
    if (need[1]) gin[1] = n->arg ? pool_gather(g, gdy, ps, n->arg) : gdy;
    if (is_dx && gamma && need[2]) gin[2] = reshape_like(g, ggamma, gamma);
    return;
  }
  const ml_tensor *t = &x->value;
  ml_node *gx = need[0] ? ml_new(g, t->ndim, t->shape) : NULL;
  ml_node *gdy = need[1] ? ml_new(g, dy->value.ndim, dy->value.shape) : NULL;
  ml_node *ggamma = is_dx && gamma && need[2] ? ml_new(g, 1, (int64_t[]){C}) : NULL;
  float *dyf = dy->value.data, *gdyf = gdy ? gdy->value.data : NULL;
  if (n->arg) { /* full-size dy and its gradient, for the kernel only */
    dyf = ml__temp(g, 2 * (size_t)t->numel * sizeof(float));
    if (dyf) {
      gdyf = gdy ? dyf + t->numel : NULL;
      ml_maxpool2_scatter(dyf, dy->value.data, n->arg, ps->B, ps->C, ps->H, ps->W);
    }
  }
  if (g->status) return;
  ml_batchnorm_double_backward(gx ? gx->value.data : NULL, gdyf, ggamma ? ggamma->value.data : NULL, x->value.data,
                               dyf, is_dx ? go->value.data : NULL, is_dx ? NULL : go->value.data, n->saved0,
                               n->saved1, gamma ? gamma->value.data : NULL, B, C, HW);
  if (n->arg && gdy) ml_maxpool2_gather(gdy->value.data, gdyf, n->arg, ps->B, ps->C, ps->H, ps->W);
  if (gx) gin[0] = gx;
  if (gdy) gin[1] = gdy;
  if (ggamma) gin[2] = reshape_like(g, ggamma, gamma);
}

/* ------------------------------------------------------------------ log-softmax, pick */
ml_node *ml_log_softmax(ml_graph *g, ml_node *x) {
  GUARD1(x);
  if (x->value.ndim != 2) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "log_softmax: %s is not (N, K)", shp(x, b1));
  }
  ml_node *n = ml__node(g, ML_OP_LOG_SOFTMAX, 2, x->value.shape, x, NULL, NULL, true);
  if (!n) return NULL;
  ml_log_softmax_kernel(n->value.data, x->value.data, x->value.shape[0], x->value.shape[1]);
  return n;
}

/* dx = g - softmax * rowsum(g), softmax = exp(y) */
static void bw_log_softmax(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (need[0]) gin[0] = ml_sub(g, go, ml_mul_axis(g, ml_exp(g, n), ml_sum_rows(g, go), 0));
}

static ml_node *pick_scatter(ml_graph *g, ml_node *go, const int32_t *idx, int64_t K) {
  GUARD1(go);
  int64_t N = go->value.numel;
  ml_node *n = ml__node(g, ML_OP_PICK_SCATTER, 2, (int64_t[]){N, K}, go, NULL, NULL, true);
  if (!n) return NULL;
  n->idx = idx, n->c = K;
  ml_pick_scatter(n->value.data, go->value.data, idx, N, K);
  return n;
}

static ml_node *pick(ml_graph *g, ml_node *x, const int32_t *idx) {
  int64_t N = x->value.shape[0], K = x->value.shape[1];
  ml_node *n = ml__node(g, ML_OP_PICK, 1, (int64_t[]){N}, x, NULL, NULL, true);
  if (!n) return NULL;
  n->idx = idx, n->c = K;
  ml_pick_kernel(n->value.data, x->value.data, idx, N, K);
  return n;
}

ml_node *ml_pick(ml_graph *g, ml_node *x, const int32_t *idx) {
  GUARD1(x);
  if (x->value.ndim != 2) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "pick: %s is not (N, K)", shp(x, b1));
  }
  int64_t N = x->value.shape[0], K = x->value.shape[1];
  for (int64_t i = 0; i < N; i++)
    if (idx[i] < 0 || idx[i] >= K)
      return ml__fail(g, ML_ERR_ARG, "pick: label %d at row %lld is outside [0, %lld)", idx[i], (long long)i,
                      (long long)K);
  return pick(g, x, idx);
}

static void bw_pick(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (!need[0]) return;
  if (n->op == ML_OP_PICK)
    gin[0] = pick_scatter(g, go, n->idx, n->c);
  else
    gin[0] = pick(g, go, n->idx);
}

/* ------------------------------------------------------------------ embeddings */
static ml_node *embedding_scatter(ml_graph *g, ml_node *go, const int32_t *idx, int64_t V) {
  GUARD1(go);
  int64_t n_rows = go->value.shape[0], D = go->value.shape[1];
  ml_node *n = ml__node(g, ML_OP_EMBEDDING_SCATTER, 2, (int64_t[]){V, D}, go, NULL, NULL, true);
  if (!n) return NULL;
  n->idx = idx, n->p = n_rows;
  memset(n->value.data, 0, (size_t)(V * D) * sizeof(float));
  ml_embedding_scatter_add(n->value.data, go->value.data, idx, n_rows, D);
  return n;
}

static ml_node *embedding(ml_graph *g, ml_node *table, const int32_t *idx, int64_t n_rows) {
  int64_t D = table->value.shape[1];
  ml_node *n = ml__node(g, ML_OP_EMBEDDING, 2, (int64_t[]){n_rows, D}, table, NULL, NULL, true);
  if (!n) return NULL;
  n->idx = idx, n->p = n_rows, n->c = table->value.shape[0];
  ml_embedding_gather(n->value.data, table->value.data, idx, n_rows, D);
  return n;
}

ml_node *ml_embedding(ml_graph *g, ml_node *table, const int32_t *idx, int64_t n_rows) {
  GUARD1(table);
  if (table->value.ndim != 2 || n_rows < 1) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "embedding: table %s must be (V, D) and n >= 1", shp(table, b1));
  }
  int64_t V = table->value.shape[0];
  for (int64_t i = 0; i < n_rows; i++)
    if (idx[i] < 0 || idx[i] >= V)
      return ml__fail(g, ML_ERR_ARG, "embedding: id %d at position %lld is outside [0, %lld)", idx[i], (long long)i,
                      (long long)V);
  return embedding(g, table, idx, n_rows);
}

static void bw_embedding(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (!need[0]) return;
  if (n->op == ML_OP_EMBEDDING)
    gin[0] = embedding_scatter(g, go, n->idx, n->c);
  else
    gin[0] = embedding(g, go, n->idx, n->p);
}

/* ------------------------------------------------------------------ slice and its adjoint */
/* Both view x as (P, C, Q) and move the band [start, start + len) of C: slice reads it out,
 * slice_pad writes it into zeros. Each is the other's adjoint, so both are linear and closed
 * under differentiation. */
static ml_node *slice_pad(ml_graph *g, ml_node *go, const ml_node *src);

static ml_node *slice_raw(ml_graph *g, ml_node *x, int ndim, const int64_t *shape, int64_t P, int64_t C, int64_t Q,
                          int64_t start, int64_t len) {
  bool view = P == 1;
  ml_node *n = ml__node(g, ML_OP_SLICE, ndim, shape, x, NULL, NULL, !view);
  if (!n) return NULL;
  n->p = P, n->c = C, n->q = Q, n->start = start;
  if (view) {
    n->value.data = x->value.data + start * Q;
    n->owner = x->owner; /* a view: x's buffer, so gradient sweeps keep it alive */
  } else {
    for (int64_t p = 0; p < P; p++)
      memcpy(n->value.data + p * len * Q, x->value.data + (p * C + start) * Q, (size_t)(len * Q) * sizeof(float));
  }
  return n;
}

ml_node *ml_slice(ml_graph *g, ml_node *x, int axis, int64_t start, int64_t len) {
  GUARD1(x);
  if (x->value.ndim != 2 || axis < 0 || axis > 1 || start < 0 || len < 1 || start > x->value.shape[axis] - len) {
    char b1[64];
    return ml__fail(g, ML_ERR_SHAPE, "slice: [%lld, %lld + %lld) along axis %d of %s", (long long)start,
                    (long long)start, (long long)len, axis, shp(x, b1));
  }
  int64_t N = x->value.shape[0], C = x->value.shape[1];
  if (axis == 0) return slice_raw(g, x, 2, (int64_t[]){len, C}, 1, N, C, start, len);
  return slice_raw(g, x, 2, (int64_t[]){N, len}, N, C, 1, start, len);
}

static ml_node *slice_pad(ml_graph *g, ml_node *go, const ml_node *src) {
  GUARD1(go);
  const ml_node *x = src->op == ML_OP_SLICE ? src->in[0] : src; /* the full-size tensor's shape */
  int64_t P = src->p, C = src->c, Q = src->q, start = src->start, len = go->value.numel / (P * Q);
  ml_node *n = ml__node(g, ML_OP_SLICE_PAD, x->value.ndim, x->value.shape, go, NULL, NULL, true);
  if (!n) return NULL;
  n->p = P, n->c = C, n->q = Q, n->start = start;
  float *out = n->value.data;
  for (int64_t p = 0; p < P; p++) {
    float *row = out + p * C * Q;
    memset(row, 0, (size_t)(start * Q) * sizeof(float));
    memcpy(row + start * Q, go->value.data + p * len * Q, (size_t)(len * Q) * sizeof(float));
    memset(row + (start + len) * Q, 0, (size_t)((C - start - len) * Q) * sizeof(float));
  }
  return n;
}

static void bw_slice(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (!need[0]) return;
  if (n->op == ML_OP_SLICE) {
    gin[0] = slice_pad(g, go, n);
  } else {
    const ml_node *in = n->in[0]; /* the band's shape */
    int64_t len = in->value.numel / (n->p * n->q);
    gin[0] = slice_raw(g, go, in->value.ndim, in->value.shape, n->p, n->c, n->q, n->start, len);
  }
}

/* ------------------------------------------------------------------ LSTM cell */
ml_node *ml_lstm_gates(ml_graph *g, ml_node *z, ml_node *c) {
  GUARD2(z, c);
  if (z->value.ndim != 2 || c->value.ndim != 2 || z->value.shape[1] % 4 || c->value.shape[0] != z->value.shape[0] ||
      c->value.shape[1] * 4 != z->value.shape[1]) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "lstm_gates: z %s must be (n, 4H) and c %s (n, H)", shp(z, b1), shp(c, b2));
  }
  int64_t n = z->value.shape[0], H = c->value.shape[1];
  ml_node *out = ml__node(g, ML_OP_LSTM_CELL, 2, (int64_t[]){2 * n, H}, z, c, NULL, true);
  float *acts = ml__scratch(g, (size_t)(n * 4 * H) * sizeof(float));
  if (!out || !acts) return NULL;
  out->saved0 = acts, out->p = n, out->c = H;
  ml_lstm_cell_forward(out->value.data, out->value.data + n * H, NULL, acts, z->value.data, c->value.data, n, H);
  return out;
}

/* The recurrent weights W (4H, H) packed for ml_gemm_prepacked, in graph scratch: as op(B) = W^T
 * (4H wide, the forward's h W^T) or W itself (H wide, the backward's dz W). */
static float *packed_recurrent(ml_graph *g, bool transposed, const float *W, int64_t H) {
  int64_t N = transposed ? 4 * H : H, K = transposed ? H : 4 * H;
  float *p = ml__scratch(g, (size_t)ml_gemm_packed_b_floats(N, K) * sizeof(float) + 64);
  if (!p) return NULL;
  p = (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
  ml_gemm_pack_b(transposed, N, K, W, H, p);
  return p;
}

/* n_t (T) and, with a gathered input, rows (N) are kept in one array on the node (idx): the node
 * has one index pointer; q = 1 marks the gathered form. */
static ml_node *lstm_seq(ml_graph *g, ml_node *xw, const int32_t *rows, ml_node *w_hh, const int32_t *n_t, int64_t T) {
  GUARD2(xw, w_hh);
  if (xw->value.ndim != 2 || w_hh->value.ndim != 2 || w_hh->value.shape[0] != 4 * w_hh->value.shape[1] ||
      xw->value.shape[1] != w_hh->value.shape[0] || T < 1) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "lstm_seq: xw %s must be (N, 4H) and w_hh %s (4H, H)", shp(xw, b1), shp(w_hh, b2));
  }
  int64_t V = xw->value.shape[0], H = w_hh->value.shape[1], G = 4 * H, N = 0;
  for (int64_t t = 0; t < T; t++) {
    if (n_t[t] < 1 || (t > 0 && n_t[t] > n_t[t - 1])) return ml__fail(g, ML_ERR_ARG, "lstm_seq: batch sizes must be positive and non-increasing");
    N += n_t[t];
  }
  if (!rows && N != V) return ml__fail(g, ML_ERR_SHAPE, "lstm_seq: batch sizes sum to %lld, xw has %lld rows", (long long)N, (long long)V);
  for (int64_t r = 0; rows && r < N; r++)
    if (rows[r] < 0 || rows[r] >= V) return ml__fail(g, ML_ERR_ARG, "lstm_seq: row id %d outside the table's %lld", rows[r], (long long)V);
  ml_node *out = ml__node(g, ML_OP_LSTM_SEQ, 2, (int64_t[]){N, H}, xw, w_hh, NULL, true);
  /* saved: activated gates (N, 4H), cell states (N, H), each step's previous output (N, H) and
   * tanh of the cell states (N, H: the backward's, not recomputed) */
  float *sv = ml__scratch(g, (size_t)(N * 7 * H) * sizeof(float));
  int32_t *ids = ml__scratch(g, (size_t)(T + (rows ? N : 0)) * sizeof(int32_t));
  if (!out || !sv || !ids) return NULL;
  memcpy(ids, n_t, (size_t)T * sizeof(int32_t));
  if (rows) memcpy(ids + T, rows, (size_t)N * sizeof(int32_t));
  out->saved0 = sv, out->idx = ids, out->p = T, out->c = H, out->q = rows != NULL;
  float *acts = sv, *cs = sv + N * G, *hprev = sv + N * 5 * H, *tcs = sv + N * 6 * H, *h = out->value.data;
  const float *W = w_hh->value.data, *X = xw->value.data;
  /* W^T packed once for all T steps (the per-step products have only B rows) */
  float *wp = packed_recurrent(g, true, W, H);
  if (!wp) return NULL;
  const bool keep = out->requires_grad; /* inference saves nothing for a backward */
  for (int64_t t = 0, off = 0, prev = 0; t < T; prev = off, off += n_t[t], t++) {
    int64_t n = n_t[t];
    float *a = acts + off * G, *hp = hprev + off * H;
    if (rows)
      for (int64_t r = 0; r < n; r++) memcpy(a + r * G, X + (int64_t)rows[off + r] * G, (size_t)G * sizeof(float));
    else
      memcpy(a, X + off * G, (size_t)(n * G) * sizeof(float));
    if (t > 0) { /* z = xw + h_{t-1} W^T, accumulated onto the copy (the first n rows of the
                  * previous step's outputs: sequences are sorted by length) */
      if (keep) memcpy(hp, h + prev * H, (size_t)(n * H) * sizeof(float));
      ml_gemm_prepacked(false, n, G, H, 1.0f, h + prev * H, H, wp, 1.0f, a, G);
    } else {
      memset(hp, 0, (size_t)(n * H) * sizeof(float));
    }
    /* the previous cell state; zeros (hp) at the first step. The gates are activated in place. */
    ml_lstm_cell_forward(h + off * H, cs + off * H, keep ? tcs + off * H : NULL, a, a, t > 0 ? cs + prev * H : hp, n,
                         H);
  }
  return out;
}

ml_node *ml_lstm_seq(ml_graph *g, ml_node *xw, ml_node *w_hh, const int32_t *n_t, int64_t T) {
  return lstm_seq(g, xw, NULL, w_hh, n_t, T);
}

ml_node *ml_lstm_seq_gather(ml_graph *g, ml_node *table, const int32_t *rows, ml_node *w_hh, const int32_t *n_t,
                            int64_t T) {
  if (!rows) return ml__fail(g, ML_ERR_ARG, "lstm_seq_gather: no row ids");
  return lstm_seq(g, table, rows, w_hh, n_t, T);
}

static void bw_lstm_seq(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (g->recording) {
    ml__fail(g, ML_ERR_ARG, "lstm_seq: no second-order gradients (use ml_rnn_run)");
    return;
  }
  ml_node *xw = n->in[0], *w_hh = n->in[1];
  const int32_t *n_t = n->idx, *rows = n->q ? n->idx + n->p : NULL;
  int64_t T = n->p, H = n->c, G = 4 * H, N = n->value.shape[0], B = n_t[0];
  const float *acts = n->saved0, *cs = acts + N * G, *hprev = acts + N * 5 * H, *tcs = acts + N * 6 * H;
  const float *W = w_hh->value.data;
  /* the gates' gradients, one row per sequence row; gathered: scattered into the table at the end */
  ml_node *dxw = rows ? NULL : ml_new(g, 2, xw->value.shape), *dw = need[1] ? ml_new(g, 2, w_hh->value.shape) : NULL;
  float *dz = rows ? ml__scratch(g, (size_t)(N * G) * sizeof(float)) : dxw ? dxw->value.data : NULL;
  float *carry = ml__scratch(g, (size_t)(4 * B * H) * sizeof(float));
  if (!dz || (need[1] && !dw) || !carry) return;
  /* dc ping-pongs between two buffers (distinct in and out keep the kernel's loop vectorized) */
  float *dh_carry = carry, *dc_carry = carry + B * H, *dc_next = carry + 2 * B * H, *dh = carry + 3 * B * H;
  memset(carry, 0, (size_t)(3 * B * H) * sizeof(float));
  float *wp = packed_recurrent(g, false, W, H); /* W, packed once */
  if (!wp) return;
  int64_t off = N;
  for (int64_t t = T - 1; t >= 0; t--) {
    int64_t m = n_t[t];
    off -= m;
    const float *gor = go->value.data + off * H;
    for (int64_t k = 0; k < m * H; k++) dh[k] = gor[k] + dh_carry[k];
    int64_t prev = off - (t > 0 ? n_t[t - 1] : 0);
    /* dc_carry: the gradient of this step's cell state in; dc_next: of the previous one's out */
    ml_lstm_cell_backward(dz + off * G, dc_next, dh, dc_carry, acts + off * G,
                          t > 0 ? cs + prev * H : hprev + off * H, cs + off * H, tcs + off * H, m, H);
    float *swap = dc_carry;
    dc_carry = dc_next, dc_next = swap;
    if (t > 0) ml_gemm_prepacked(false, m, H, G, 1.0f, dz + off * G, G, wp, 0.0f, dh_carry, H);
  }
  /* the recurrent weights: one GEMM over all steps (the first step's previous outputs are zeros) */
  if (dw) ml_gemm(true, false, G, H, N, 1.0f, dz, G, hprev, H, 0.0f, dw->value.data, H);
  if (rows && need[0]) { /* the table's gradient: each row's gates' gradient added to its id's row */
    if (!(dxw = ml_zeros(g, 2, xw->value.shape))) return;
    ml_embedding_scatter_add(dxw->value.data, dz, rows, N, G);
  }
  if (need[0]) gin[0] = dxw;
  if (need[1]) gin[1] = dw;
}

/* Recording: the same gradients as ops (the gates recomputed from z, so that every factor is a
 * differentiable node); otherwise the fused kernel. */
static void bw_lstm_cell(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  ml_node *z = n->in[0], *c = n->in[1];
  int64_t N = n->p, H = n->c;
  if (!g->recording) {
    ml_node *dz = ml_new(g, 2, z->value.shape), *dc = need[1] ? ml_new(g, 2, c->value.shape) : NULL;
    float *dcd = dc ? dc->value.data : ml__scratch(g, (size_t)(N * H) * sizeof(float)); /* unused when not needed */
    if (!dz || !dcd) return;
    ml_lstm_cell_backward(dz->value.data, dcd, go->value.data, go->value.data + N * H, n->saved0, c->value.data,
                          n->value.data + N * H, NULL, N, H);
    if (need[0]) gin[0] = dz;
    if (need[1]) gin[1] = dc;
    return;
  }
  ml_node *dh = ml_slice(g, go, 0, 0, N), *dc2 = ml_slice(g, go, 0, N, N);
  ml_node *s = ml_sigmoid(g, z);
  ml_node *si = ml_slice(g, s, 1, 0, H), *sf = ml_slice(g, s, 1, H, H), *so = ml_slice(g, s, 1, 3 * H, H);
  ml_node *zg = ml_slice(g, z, 1, 2 * H, H), *gg = ml_tanh(g, zg);
  ml_node *c2 = ml_add(g, ml_mul(g, sf, c), ml_mul(g, si, gg)), *tc = ml_tanh(g, c2);
  /* dct = dc2 + dh o (1 - tc^2) */
  ml_node *dct = ml_add(g, dc2, ml_mul(g, ml_mul(g, dh, so), ml_affine(g, ml_square(g, tc), -1.0f, 1.0f)));
  if (need[1]) gin[1] = ml_mul(g, dct, sf);
  if (!need[0]) return;
  ml_node *dsi = ml_mul(g, dct, gg), *dsf = ml_mul(g, dct, c), *dso = ml_mul(g, dh, tc);
  ml_node *dzg = ml_mul(g, ml_mul(g, dct, si), ml_affine(g, ml_square(g, gg), -1.0f, 1.0f));
  /* the sigmoid bands through s (1 - s), the g band through its tanh: padded back into (n, 4H) */
  ml_node *ds = ml_add(g, ml_add(g, slice_pad(g, dsi, si), slice_pad(g, dsf, sf)), slice_pad(g, dso, so));
  ml_node *dz = ml_add(g, ml_mul(g, ds, ml_mul(g, s, ml_affine(g, s, -1.0f, 1.0f))), slice_pad(g, dzg, zg));
  gin[0] = dz;
}

/* ------------------------------------------------------------------ reshape backward */
static void bw_reshape(ml_graph *g, ml_node *n, ml_node *go, ml_node **gin, const bool *need) {
  if (need[0]) gin[0] = reshape_like(g, go, n->in[0]);
}

/* ------------------------------------------------------------------ losses (composites) */
ml_node *ml_cross_entropy(ml_graph *g, ml_node *logits, const int32_t *labels) {
  return ml_neg(g, ml_mean(g, ml_pick(g, ml_log_softmax(g, logits), labels)));
}

ml_node *ml_mse(ml_graph *g, ml_node *pred, ml_node *target) {
  GUARD2(pred, target);
  if (pred->value.numel != target->value.numel) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "mse: prediction %s and target %s differ", shp(pred, b1), shp(target, b2));
  }
  return ml_mean(g, ml_square(g, ml_sub(g, pred, reshape_like(g, target, pred))));
}

/* softplus(x) - x*y = log(1 + e^x) - x y: the logits form of -y log s - (1-y) log(1-s). */
ml_node *ml_bce_with_logits(ml_graph *g, ml_node *logits, ml_node *target) {
  GUARD2(logits, target);
  if (logits->value.numel != target->value.numel) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "bce_with_logits: logits %s and target %s differ", shp(logits, b1),
                    shp(target, b2));
  }
  return ml_mean(g, ml_sub(g, ml_softplus(g, logits), ml_mul(g, logits, reshape_like(g, target, logits))));
}

/* |a_i|^2 + |b_j|^2 - 2 a_i.b_j, one GEMM instead of N*M differences. */
ml_node *ml_sqdist(ml_graph *g, ml_node *a, ml_node *b) {
  GUARD2(a, b);
  if (a->value.ndim != 2 || b->value.ndim != 2 || a->value.shape[1] != b->value.shape[1]) {
    char b1[64], b2[64];
    return ml__fail(g, ML_ERR_SHAPE, "sqdist: %s and %s must be (N, D) and (M, D)", shp(a, b1), shp(b, b2));
  }
  ml_node *ab = ml_matmul(g, a, b, false, true);
  ml_node *d = ml_add_axis(g, ml_scale(g, ab, -2.0f), ml_sum_rows(g, ml_square(g, a)), 0);
  return ml_add_axis(g, d, ml_sum_rows(g, ml_square(g, b)), 1);
}

/* ------------------------------------------------------------------ dispatch */
typedef void (*bw_fn)(ml_graph *, ml_node *, ml_node *, ml_node **, const bool *);
static const bw_fn backward_table[ML_OP_COUNT] = {
    [ML_OP_LEAF] = NULL,
    [ML_OP_RESHAPE] = bw_reshape,
    [ML_OP_ADD] = bw_binary,
    [ML_OP_SUB] = bw_binary,
    [ML_OP_MUL] = bw_binary,
    [ML_OP_DIV] = bw_binary,
    [ML_OP_AFFINE] = bw_affine,
    [ML_OP_REDUCE] = bw_reduce,
    [ML_OP_EXPAND] = bw_expand,
    [ML_OP_RELU] = bw_unary,
    [ML_OP_RELU_MASK] = bw_relu_mask,
    [ML_OP_EXP] = bw_unary,
    [ML_OP_LOG] = bw_unary,
    [ML_OP_SIGMOID] = bw_unary,
    [ML_OP_TANH] = bw_unary,
    [ML_OP_SOFTPLUS] = bw_unary,
    [ML_OP_RSQRT] = bw_unary,
    [ML_OP_SQRT] = bw_unary,
    [ML_OP_SQUARE] = bw_unary,
    [ML_OP_MATMUL] = bw_matmul,
    [ML_OP_CONV2D] = bw_conv,
    [ML_OP_CONV2D_BWD_DATA] = bw_conv,
    [ML_OP_CONV2D_BWD_WEIGHT] = bw_conv,
    [ML_OP_MAXPOOL2] = bw_pool,
    [ML_OP_POOL_SCATTER] = bw_pool,
    [ML_OP_POOL_GATHER] = bw_pool,
    [ML_OP_BATCH_NORM] = bw_batch_norm,
    [ML_OP_BN_GRAD] = bw_bn_grad,
    [ML_OP_BN_DGAMMA] = bw_bn_grad,
    [ML_OP_BN_POOL] = bw_bn_pool,
    [ML_OP_CONV_BN_POOL] = bw_conv_bn_pool,
    [ML_OP_LOG_SOFTMAX] = bw_log_softmax,
    [ML_OP_PICK] = bw_pick,
    [ML_OP_PICK_SCATTER] = bw_pick,
    [ML_OP_EMBEDDING] = bw_embedding,
    [ML_OP_EMBEDDING_SCATTER] = bw_embedding,
    [ML_OP_SLICE] = bw_slice,
    [ML_OP_SLICE_PAD] = bw_slice,
    [ML_OP_LSTM_CELL] = bw_lstm_cell,
    [ML_OP_LSTM_SEQ] = bw_lstm_seq,
};

bool ml__backward_reads_value(const ml_node *n) {
  switch (n->op) { /* the rules above that read only their inputs, gout and saved statistics */
    case ML_OP_ADD:
    case ML_OP_SUB:
    case ML_OP_MUL:
    case ML_OP_AFFINE:
    case ML_OP_REDUCE:
    case ML_OP_EXPAND:
    case ML_OP_MATMUL:
    case ML_OP_CONV2D:
    case ML_OP_CONV2D_BWD_DATA:
    case ML_OP_CONV2D_BWD_WEIGHT:
    case ML_OP_MAXPOOL2:
    case ML_OP_POOL_SCATTER:
    case ML_OP_POOL_GATHER:
    case ML_OP_BATCH_NORM:
    case ML_OP_BN_GRAD:
    case ML_OP_BN_DGAMMA:
    case ML_OP_PICK:
    case ML_OP_PICK_SCATTER:
    case ML_OP_EMBEDDING:
    case ML_OP_EMBEDDING_SCATTER:
    case ML_OP_SLICE:
    case ML_OP_SLICE_PAD:
      return false;
    case ML_OP_BN_POOL:
    case ML_OP_CONV_BN_POOL:
      return n->relu; /* the ReLU's mask is read off the output */
    default:
      return true;
  }
}

void ml__backward(ml_graph *g, ml_node *n, ml_node *gout, ml_node **gin, const bool *needin) {
  bw_fn f = backward_table[n->op];
  if (f) f(g, n, gout, gin, needin);
}
