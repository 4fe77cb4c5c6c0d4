/* The graph (an arena of nodes in creation order, which is a topological order) and ml_grad,
 * the reverse sweep. Backward rules live in ops.c, one per row of ops.def. */
#include <string.h>

#include "autograd/internal.h"

static const char *op_names[] = {
#define ML_OP_ENUM(name, arity, inner) #name,
#include "metalearn/ops.def"
#undef ML_OP_ENUM
};
static const int op_arity[] = {
#define ML_OP_ENUM(name, arity, inner) arity,
#include "metalearn/ops.def"
#undef ML_OP_ENUM
};
static const bool op_inner[] = {
#define ML_OP_ENUM(name, arity, inner) inner,
#include "metalearn/ops.def"
#undef ML_OP_ENUM
};

const char *ml_op_name(ml_op op) { return op < ML_OP_COUNT ? op_names[op] : "?"; }
int ml_op_arity(ml_op op) { return op < ML_OP_COUNT ? op_arity[op] : 0; }
bool ml_op_inner_loop(ml_op op) { return op < ML_OP_COUNT ? op_inner[op] : false; }

ml_graph *ml_graph_new(ml_arena *arena) {
  ml_graph *g = ml_arena_calloc(arena, sizeof *g);
  if (!g) return NULL;
  g->arena = arena;
  g->cap = 256;
  g->nodes = ml_arena_alloc(arena, (size_t)g->cap * sizeof(ml_node *));
  if (!g->nodes) return NULL;
  g->recording = true;
  return g;
}

ml_arena *ml_graph_arena(ml_graph *g) { return g->arena; }
ml_status ml_graph_status(const ml_graph *g) { return g->status; }
int64_t ml_graph_size(const ml_graph *g) { return g->n; }
ml_node *ml_graph_node(const ml_graph *g, int64_t i) { return i >= 0 && i < g->n ? g->nodes[i] : NULL; }

bool ml_graph_set_recording(ml_graph *g, bool on) {
  bool prev = g->recording;
  g->recording = on;
  return prev;
}

ml_node *ml__fail(ml_graph *g, ml_status s, const char *fmt, ...) {
  if (g->status == ML_OK) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ml_error(s, "%s", buf);
    g->status = s;
  }
  return NULL;
}

/* ---- buffer reuse inside a gradient sweep ----
 * Without create_graph, a gradient is dead once the backward of its node has run and no other
 * gradient slot shares its buffer. Dead buffers of nodes the sweep created go to size-keyed free
 * lists and are handed to the next nodes of the same size: a sweep then holds a few layers of
 * gradients at a time instead of all of them (the arena itself never frees). */
#define MIN_REUSE_BYTES 256
static size_t bucket_of(size_t bytes) { return (bytes / 64) % ML_FREE_BUCKETS; }

static float *reuse(ml_graph *g, size_t bytes) {
  if (bytes < MIN_REUSE_BYTES) return NULL;
  for (ml_free_buf **p = &g->free[bucket_of(bytes)]; *p; p = &(*p)->next)
    if ((*p)->bytes == bytes) {
      ml_free_buf *f = *p;
      *p = f->next;
      return (float *)(void *)f;
    }
  return NULL;
}

static void release(ml_graph *g, ml_node *owner) {
  size_t bytes = (size_t)owner->value.numel * sizeof(float);
  if (bytes < MIN_REUSE_BYTES || owner->owner != owner) return;
  owner->owner = NULL; /* released once; its value must not be read again */
  ml_free_buf *f = (ml_free_buf *)(void *)owner->value.data;
  f->bytes = bytes;
  f->next = g->free[bucket_of(bytes)];
  g->free[bucket_of(bytes)] = f;
}

ml_node *ml__node(ml_graph *g, ml_op op, int ndim, const int64_t *shape, ml_node *a, ml_node *b, ml_node *c,
                  bool alloc_data) {
  if (g->status) return NULL;
  if (g->n == g->cap) {
    /* Grow by doubling inside the arena; the old array is dropped with the next reset. */
    ml_node **nn = ml_arena_alloc(g->arena, (size_t)g->cap * 2 * sizeof(ml_node *));
    if (!nn) return ml__fail(g, ML_ERR_NOMEM, "graph: out of memory (%lld nodes)", (long long)g->n);
    memcpy(nn, g->nodes, (size_t)g->n * sizeof(ml_node *));
    g->nodes = nn;
    g->cap *= 2;
  }
  ml_node *n = ml_arena_alloc(g->arena, sizeof *n);
  if (!n) return ml__fail(g, ML_ERR_NOMEM, "graph: out of memory");
  memset(n, 0, sizeof *n);
  n->value = ml_shape(ndim, shape);
  if (alloc_data) {
    size_t bytes;
    if (n->value.numel < 0 || !ml_mul_size((size_t)n->value.numel, sizeof(float), &bytes))
      return ml__fail(g, ML_ERR_NOMEM, "%s: tensor size overflows", ml_op_name(op));
    n->owner = n;
    n->value.data = g->recycle ? reuse(g, bytes) : NULL;
    if (!n->value.data) n->value.data = ml_arena_alloc(g->arena, bytes);
    if (!n->value.data)
      return ml__fail(g, ML_ERR_NOMEM, "%s: out of memory for %lld floats", ml_op_name(op),
                      (long long)n->value.numel);
  }
  n->op = op;
  n->id = (int32_t)g->n;
  ml_node *ins[3] = {a, b, c};
  bool rg = false;
  for (int i = 0; i < 3; i++)
    if (ins[i] && ins[i]->requires_grad) rg = true;
  if (g->recording && rg) {
    n->requires_grad = true;
    n->n_in = (int8_t)ml_op_arity(op);
    for (int i = 0; i < 3; i++) n->in[i] = ins[i];
  }
  g->nodes[g->n++] = n;
  return n;
}

void *ml__scratch(ml_graph *g, size_t bytes) {
  void *p = ml_arena_alloc(g->arena, bytes);
  if (!p) ml__fail(g, ML_ERR_NOMEM, "graph: out of memory for %zu bytes of scratch", bytes);
  return p;
}

ml_node *ml_leaf(ml_graph *g, ml_tensor t, bool requires_grad) {
  ml_node *n = ml__node(g, ML_OP_LEAF, t.ndim, t.shape, NULL, NULL, NULL, false);
  if (!n) return NULL;
  n->value.data = t.data;
  n->requires_grad = requires_grad;
  return n;
}

ml_node *ml_new(ml_graph *g, int ndim, const int64_t *shape) {
  return ml__node(g, ML_OP_LEAF, ndim, shape, NULL, NULL, NULL, true);
}

ml_node *ml_full(ml_graph *g, int ndim, const int64_t *shape, float v) {
  ml_node *n = ml_new(g, ndim, shape);
  if (n) ml_tensor_fill(&n->value, v);
  return n;
}

ml_node *ml_zeros(ml_graph *g, int ndim, const int64_t *shape) { return ml_full(g, ndim, shape, 0.0f); }

/* Reference counts of the buffers held by gradient slots, for nodes this sweep created (id >=
 * first_new): only those buffers may be reused or updated in place. */
typedef struct {
  ml_graph *g;
  int64_t first_new;
  bool track; /* sweep without create_graph */
} sweep;

static ml_node *own(const sweep *w, ml_node *x) {
  ml_node *o = x ? x->owner : NULL;
  return w->track && o && o->id >= w->first_new && o->owner == o ? o : NULL;
}
static void ref(const sweep *w, ml_node *x) {
  ml_node *o = own(w, x);
  if (o) o->refs++;
}
static void unref(const sweep *w, ml_node *x) {
  ml_node *o = own(w, x);
  if (o && --o->refs <= 0) release(w->g, o);
}

/* slot += x. Without create_graph, a sum this sweep created and only this slot holds is added
 * to in place: a node with many consumers (weights reused by every inner step) then costs one
 * buffer, not one per consumer. */
static void accumulate(const sweep *w, ml_node **slot, ml_node *x) {
  ml_graph *g = w->g;
  ml_node *acc = *slot;
  if (!acc) {
    *slot = x;
    ref(w, x);
    return;
  }
  ml_node *o = own(w, acc);
  if (o == acc && acc->op == ML_OP_ADD && acc->refs == 1 && x->value.numel == acc->value.numel) {
    ml_binary(ML_BIN_ADD, acc->value.data, acc->value.data, x->value.data, 1, acc->value.numel, 1);
  } else {
    ml_node *sum = ml_add(g, acc, x);
    if (!sum) return;
    *slot = sum;
    ref(w, sum);
    unref(w, acc);
  }
  /* the contribution itself is dead unless a slot shares its buffer */
  ml_node *ox = own(w, x);
  if (ox && ox->refs <= 0) release(g, ox);
}

ml_status ml_grad(ml_graph *g, ml_node *const *outputs, int64_t n_out, ml_node *const *grad_outputs,
                  ml_node *const *inputs, int64_t n_in, bool create_graph, ml_node **grads) {
  if (g->status) return g->status;
  const int64_t N = g->n;
  uint8_t *need = ml_arena_calloc(g->arena, (size_t)N);
  ml_node **gr = ml_arena_calloc(g->arena, (size_t)N * sizeof(ml_node *));
  if (!need || !gr) return ml_error(g->status = ML_ERR_NOMEM, "ml_grad: out of memory");
  for (int64_t j = 0; j < n_in; j++) {
    if (!inputs[j]) return ml_error(g->status = ML_ERR_ARG, "ml_grad: input %lld is NULL", (long long)j);
    need[inputs[j]->id] = 1;
  }
  /* need[i]: node i depends on some input, so gradients must flow through it. */
  int64_t lo = N;
  for (int64_t j = 0; j < n_in; j++)
    if (inputs[j]->id < lo) lo = inputs[j]->id;
  for (int64_t i = lo; i < N; i++) {
    ml_node *n = g->nodes[i];
    for (int k = 0; k < n->n_in && !need[i]; k++)
      if (n->in[k] && need[n->in[k]->id]) need[i] = 1;
  }
  bool prev = ml_graph_set_recording(g, create_graph);
  bool prev_recycle = g->recycle;
  sweep w = {g, N, !create_graph};
  g->recycle = !create_graph;
  uint8_t *is_input = ml_arena_calloc(g->arena, (size_t)N);
  if (!is_input) {
    ml_graph_set_recording(g, prev);
    g->recycle = prev_recycle;
    return ml_error(g->status = ML_ERR_NOMEM, "ml_grad: out of memory");
  }
  for (int64_t j = 0; j < n_in; j++) is_input[inputs[j]->id] = 1;
  int64_t hi = -1;
  for (int64_t i = 0; i < n_out; i++) {
    ml_node *o = outputs[i];
    if (!o) {
      ml_graph_set_recording(g, prev);
      g->recycle = prev_recycle;
      return ml_error(g->status = ML_ERR_ARG, "ml_grad: output %lld is NULL", (long long)i);
    }
    if (!need[o->id]) continue;
    ml_node *seed = grad_outputs && grad_outputs[i] ? grad_outputs[i] : ml_full(g, o->value.ndim, o->value.shape, 1.0f);
    if (seed) accumulate(&w, &gr[o->id], seed);
    if (o->id > hi) hi = o->id;
  }
  for (int64_t i = hi; i >= lo && !g->status; i--) {
    ml_node *n = g->nodes[i];
    if (!gr[i] || n->n_in == 0) continue;
    bool needin[3] = {false, false, false};
    bool any = false;
    for (int k = 0; k < n->n_in; k++) {
      needin[k] = n->in[k] && need[n->in[k]->id];
      any |= needin[k];
    }
    if (!any) continue;
    ml_node *gin[3] = {NULL, NULL, NULL};
    ml__backward(g, n, gr[i], gin, needin);
    for (int k = 0; k < n->n_in; k++)
      if (needin[k] && gin[k]) accumulate(&w, &gr[n->in[k]->id], gin[k]);
    /* node i's gradient is consumed: its buffer is free unless another slot shares it or it is
     * an answer */
    if (!is_input[i]) unref(&w, gr[i]);
  }
  for (int64_t j = 0; j < n_in && !g->status; j++) {
    ml_node *x = inputs[j];
    grads[j] = gr[x->id] ? gr[x->id] : ml_zeros(g, x->value.ndim, x->value.shape);
  }
  /* the answers' nodes stay owned by the caller: nothing may reuse their buffers later */
  for (int64_t j = 0; j < n_in && !g->status; j++)
    if (grads[j] && grads[j]->owner) grads[j]->owner->refs++;
  memset(g->free, 0, sizeof g->free);
  g->recycle = prev_recycle;
  ml_graph_set_recording(g, prev);
  return g->status;
}
