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

bool ml_graph_is_recording(const ml_graph *g) { return g->recording; }
void ml_graph_consume_next_sweep(ml_graph *g) { g->consume = true; }

ml_graph_mark ml_graph_get_mark(const ml_graph *g) {
  return (ml_graph_mark){ml_arena_get_mark(g->arena), g->nodes, g->n, g->cap, g->temp, g->temp_cap};
}

void ml_graph_rewind(ml_graph *g, ml_graph_mark m) {
  if (m.n > g->n) return; /* a stale mark */
  /* the node array as it was: if it grew after the mark, the old one (allocated before it) still
   * holds the first m.n nodes */
  g->nodes = m.nodes;
  g->cap = m.cap;
  g->n = m.n;
  g->temp = m.temp; /* a buffer grown after the mark is given back with the rest */
  g->temp_cap = m.temp_cap;
  ml_arena_rewind(g->arena, m.arena);
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
 * gradient slot shares its buffer. Dead buffers of nodes the sweep created go to the graph's free
 * list and are handed to the next nodes they fit: a sweep then holds a few layers of gradients at
 * a time instead of all of them (the arena itself never frees). */
#define MIN_REUSE_BYTES 256
/* The smallest free buffer that holds bytes, split when it is larger: a sweep's gradients come
 * in many sizes (second-order MAML's outer sweep frees the 300 query images' 15 MB activation
 * gradients, then needs the 20 support images' 4 MB ones), and exact-size reuse left most dead
 * buffers unused (20-way 5 steps: 74 MB allocated by the sweep, 44 MB with splitting). The free
 * list holds a few tens of buffers; a linear scan is cheap next to the kernels that fill them.
 * Pieces keep 64-byte alignment. */
static float *reuse(ml_graph *g, size_t bytes, size_t *cap) {
  if (bytes < MIN_REUSE_BYTES) return NULL;
  bytes = (bytes + 63) & ~(size_t)63;
  int64_t best = -1;
  for (int64_t i = g->n_free - 1; i >= 0; i--) /* newest first: ties go to the most recently freed */
    if (g->free[i].bytes >= bytes && (best < 0 || g->free[i].bytes < g->free[best].bytes)) best = i;
  if (best < 0) return NULL;
  ml_free_buf f = g->free[best];
  memmove(g->free + best, g->free + best + 1, (size_t)(g->n_free - best - 1) * sizeof *g->free);
  g->n_free--;
  *cap = f.bytes;
  if (f.bytes - bytes >= MIN_REUSE_BYTES) /* the rest stays free, as the newest */
    g->free[g->n_free++] = (ml_free_buf){(char *)f.p + bytes, f.bytes - bytes}, *cap = bytes;
  return f.p;
}

static void release(ml_graph *g, ml_node *owner) {
  if (owner->cap < MIN_REUSE_BYTES || owner->owner != owner) return;
  owner->owner = NULL; /* released once; its value must not be read again */
  /* a full list (more dead buffers at once than the sweep planned for) leaves this one unused */
  if (g->n_free < g->free_cap) g->free[g->n_free++] = (ml_free_buf){owner->value.data, owner->cap};
}

ml_node *ml__node_n(ml_graph *g, ml_op op, int ndim, const int64_t *shape, ml_node *const *ins, int n_ins,
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
    n->cap = (bytes + 63) & ~(size_t)63; /* the arena's rounding */
    n->value.data = g->recycle ? reuse(g, bytes, &n->cap) : NULL;
    if (!n->value.data) n->value.data = ml_arena_alloc(g->arena, bytes);
    if (!n->value.data)
      return ml__fail(g, ML_ERR_NOMEM, "%s: out of memory for %lld floats", ml_op_name(op),
                      (long long)n->value.numel);
  }
  n->op = op;
  n->id = (int32_t)g->n;
  bool rg = false;
  for (int i = 0; i < n_ins; i++)
    if (ins[i] && ins[i]->requires_grad) rg = true;
  if (g->recording && rg) {
    n->requires_grad = true;
    n->n_in = (int8_t)ml_op_arity(op);
    for (int i = 0; i < n_ins; i++) n->in[i] = ins[i];
  }
  g->nodes[g->n++] = n;
  return n;
}

ml_node *ml__node(ml_graph *g, ml_op op, int ndim, const int64_t *shape, ml_node *a, ml_node *b, ml_node *c,
                  bool alloc_data) {
  ml_node *ins[3] = {a, b, c};
  return ml__node_n(g, op, ndim, shape, ins, 3, alloc_data);
}

void *ml__temp(ml_graph *g, size_t bytes) {
  if (bytes <= g->temp_cap) return g->temp;
  size_t cap = bytes;
  void *p = g->recycle ? reuse(g, bytes, &cap) : NULL; /* a sweep's dead buffers serve here too */
  if (p) {
    g->temp = p;
    g->temp_cap = cap;
    return p;
  }
  p = ml_arena_alloc(g->arena, bytes);
  if (!p) {
    ml__fail(g, ML_ERR_NOMEM, "graph: out of memory for %zu bytes of scratch", bytes);
    return NULL;
  }
  g->temp = p;
  g->temp_cap = bytes;
  return p;
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

/* Summing gradient contributions. With create_graph every sum is an ADD node (differentiable).
 * Without it ("eager" sweeps) sums are done in place, and dead buffers are reused:
 *  - a slot's buffer is private ("owned") once the sweep allocated it for that slot; until then
 *    it may alias another slot's gradient or a forward value, and is copied before the first
 *    write. Writing is safe because every contribution to node i arrives before i itself is
 *    processed (inputs have lower ids), and only then is gr[i] handed to i's inputs. A recurrent
 *    net's weight gradients then take one buffer per weight instead of one tensor per step.
 *  - slots count references to the buffers this sweep created (through ml_node.owner, so views
 *    count too); a buffer no slot holds any more once its node's backward has run goes to the
 *    graph's free list and is handed to the next new nodes it fits. A sweep then holds
 *    a few layers of gradients at a time instead of all of them (the arena itself never frees). */
static ml_node *accumulate(ml_graph *g, ml_node *acc, ml_node *x) { return acc ? ml_add(g, acc, x) : x; }

typedef struct {
  ml_graph *g;
  ml_node **gr;
  uint8_t *owned;
  uint8_t *pinned;   /* consuming sweeps: forward buffers a gradient slot refers to */
  int64_t first_new; /* nodes with id >= first_new were created by this sweep */
} eager;

static ml_node *owner_of(const eager *e, ml_node *x) {
  ml_node *o = x ? x->owner : NULL;
  return o && o->id >= e->first_new && o->owner == o ? o : NULL;
}
static void ref(const eager *e, ml_node *x) {
  ml_node *o = owner_of(e, x);
  if (o) o->refs++;
}
static void unref(const eager *e, ml_node *x) {
  ml_node *o = owner_of(e, x);
  if (o && --o->refs <= 0) release(e->g, o);
}
/* a contribution that was added into a slot is dead unless some slot shares its buffer */
static void drop_if_unheld(const eager *e, ml_node *x) {
  ml_node *o = owner_of(e, x);
  if (o && o->refs <= 0) release(e->g, o);
}

/* Node x's gradient slot as a buffer the sweep owns and may add into: the slot itself if it is
 * one, else a new buffer holding the slot's value (zeros for an empty slot) plus `plus` when given
 * (one pass instead of a copy and then an add). */
static ml_node *own_plus(ml_graph *g, eager *e, ml_node *x, const ml_node *plus) {
  ml_node *acc = e->gr[x->id];
  if (acc && e->owned[x->id]) return acc;
  ml_node *n = ml_new(g, x->value.ndim, x->value.shape);
  if (!n) return NULL;
  if (acc && plus)
    ml_binary(ML_BIN_ADD, n->value.data, acc->value.data, plus->value.data, 1, n->value.numel, 1);
  else if (acc)
    memcpy(n->value.data, acc->value.data, (size_t)n->value.numel * sizeof(float));
  else
    memset(n->value.data, 0, (size_t)n->value.numel * sizeof(float));
  e->gr[x->id] = n;
  e->owned[x->id] = 1;
  ref(e, n);
  if (acc) unref(e, acc);
  return n;
}
static ml_node *own(ml_graph *g, eager *e, ml_node *x) { return own_plus(g, e, x, NULL); }

static void eager_add(ml_graph *g, eager *e, ml_node *x, ml_node *v) {
  if (!v) return;
  if (!e->gr[x->id]) {
    e->gr[x->id] = v;
    ref(e, v);
    /* a gradient that is a forward value (or a view of one) keeps that buffer */
    if (e->pinned && v->owner && v->owner->id < e->first_new) e->pinned[v->owner->id] = 1;
    return;
  }
  if (e->owned[x->id]) {
    ml_node *acc = e->gr[x->id];
    ml_binary(ML_BIN_ADD, acc->value.data, acc->value.data, v->value.data, 1, acc->value.numel, 1);
  } else if (!own_plus(g, e, x, v)) {
    return;
  }
  drop_if_unheld(e, v);
}

/* Backward rules that write straight into the inputs' buffers: slices (a band of the input),
 * embeddings (a scatter-add) and matmul (GEMM with beta = 1). false: use the generic rule. */
static bool eager_backward(ml_graph *g, eager *e, ml_node *n, ml_node *go, const bool *need) {
  switch (n->op) {
    case ML_OP_SLICE: {
      ml_node *acc = own(g, e, n->in[0]);
      if (!acc) return true;
      int64_t P = n->p, C = n->c, Q = n->q, len = go->value.numel / (P * Q);
      for (int64_t p = 0; p < P; p++) {
        float *dst = acc->value.data + (p * C + n->start) * Q;
        ml_binary(ML_BIN_ADD, dst, dst, go->value.data + p * len * Q, 1, len * Q, 1);
      }
      return true;
    }
    case ML_OP_EMBEDDING: {
      ml_node *acc = own(g, e, n->in[0]);
      if (acc) ml_embedding_scatter_add(acc->value.data, go->value.data, n->idx, n->p, acc->value.shape[1]);
      return true;
    }
    case ML_OP_MATMUL: {
      ml_node *a = n->in[0], *b = n->in[1];
      const float *G = go->value.data, *A = a->value.data, *Bv = b->value.data;
      int64_t M = n->value.shape[0], N = n->value.shape[1], K = n->ta ? a->value.shape[0] : a->value.shape[1];
      int64_t lda = a->value.shape[1], ldb = b->value.shape[1];
      if (need[0]) { /* dA (stored as a): op(A) = G op(B)^T, transposed back when ta */
        ml_node *acc = own(g, e, a);
        if (!acc) return true;
        if (n->ta) /* A^T (K x M) = op(B) G^T */
          ml_gemm(n->tb, true, K, M, N, 1.0f, Bv, ldb, G, N, 1.0f, acc->value.data, lda);
        else /* A (M x K) = G op(B)^T */
          ml_gemm(false, !n->tb, M, K, N, 1.0f, G, N, Bv, ldb, 1.0f, acc->value.data, lda);
      }
      if (need[1]) {
        ml_node *acc = own(g, e, b);
        if (!acc) return true;
        if (n->tb) /* B^T (N x K) = G^T op(A) */
          ml_gemm(true, n->ta, N, K, M, 1.0f, G, N, A, lda, 1.0f, acc->value.data, ldb);
        else /* B (K x N) = op(A)^T G */
          ml_gemm(!n->ta, false, K, N, M, 1.0f, A, lda, G, N, 1.0f, acc->value.data, ldb);
      }
      return true;
    }
    default:
      return false;
  }
}

ml_status ml_grad(ml_graph *g, ml_node *const *outputs, int64_t n_out, ml_node *const *grad_outputs,
                  ml_node *const *inputs, int64_t n_in, bool create_graph, ml_node **grads) {
  if (g->status) return g->status;
  const int64_t N = g->n;
  uint8_t *need = ml_arena_calloc(g->arena, (size_t)N);
  ml_node **gr = ml_arena_calloc(g->arena, (size_t)N * sizeof(ml_node *));
  uint8_t *owned = create_graph ? NULL : ml_arena_calloc(g->arena, (size_t)N);
  uint8_t *is_input = ml_arena_calloc(g->arena, (size_t)N);
  bool consume = g->consume && !create_graph;
  g->consume = false;
  uint8_t *pinned = consume ? ml_arena_calloc(g->arena, (size_t)N) : NULL;
  if (!need || !gr || !is_input || (!create_graph && !owned) || (consume && !pinned))
    return ml_error(g->status = ML_ERR_NOMEM, "ml_grad: out of memory");
  eager e = {g, gr, owned, pinned, N};
  for (int64_t j = 0; j < n_in; j++) {
    if (!inputs[j]) return ml_error(g->status = ML_ERR_ARG, "ml_grad: input %lld is NULL", (long long)j);
    need[inputs[j]->id] = 1;
    is_input[inputs[j]->id] = 1;
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
  g->recycle = !create_graph;
  if (g->recycle) { /* every buffer the sweep can free: N nodes and the gradients it makes (margin) */
    g->n_free = 0, g->free_cap = N + 256;
    g->free = ml_arena_alloc(g->arena, (size_t)g->free_cap * sizeof *g->free);
    if (!g->free) g->free_cap = 0; /* no reuse then, only more memory */
  }
  int64_t hi = -1;
  for (int64_t i = 0; i < n_out; i++) {
    ml_node *o = outputs[i];
    if (!o) {
      ml_graph_set_recording(g, prev);
      g->recycle = prev_recycle;
      g->free = NULL, g->n_free = g->free_cap = 0;
      return ml_error(g->status = ML_ERR_ARG, "ml_grad: output %lld is NULL", (long long)i);
    }
    if (!need[o->id]) continue;
    if (pinned) pinned[o->id] = 1; /* the caller may still read the outputs */
    ml_node *seed = grad_outputs && grad_outputs[i] ? grad_outputs[i] : ml_full(g, o->value.ndim, o->value.shape, 1.0f);
    if (create_graph)
      gr[o->id] = accumulate(g, gr[o->id], seed);
    else
      eager_add(g, &e, o, seed);
    if (o->id > hi) hi = o->id;
  }
  for (int64_t i = hi; i >= lo && !g->status; i--) {
    ml_node *n = g->nodes[i];
    if (!gr[i] || n->n_in == 0) continue;
    bool needin[ML_MAX_INPUTS] = {false};
    bool any = false;
    for (int k = 0; k < n->n_in; k++) {
      needin[k] = n->in[k] && need[n->in[k]->id];
      any |= needin[k];
    }
    if (!any) continue;
    /* Consuming: node i's own buffer is dead once the sweep reaches it (the backward of a node
     * reads its own value and its inputs', which came before it; every view of node i came after
     * it and was swept already), before its backward when that does not read it: a convolution's
     * output then holds the gradient of its input. */
    bool dead = consume && !is_input[i] && !pinned[i] && n->owner == n;
    if (dead && !ml__backward_reads_value(n)) release(g, n);
    if (create_graph || !eager_backward(g, &e, n, gr[i], needin)) {
      ml_node *gin[ML_MAX_INPUTS] = {NULL};
      ml__backward(g, n, gr[i], gin, needin);
      for (int k = 0; k < n->n_in; k++) {
        if (!needin[k] || !gin[k]) continue;
        if (create_graph)
          gr[n->in[k]->id] = accumulate(g, gr[n->in[k]->id], gin[k]);
        else
          eager_add(g, &e, n->in[k], gin[k]);
      }
    }
    /* node i's gradient is consumed: its buffer is free unless a slot shares it or it is an
     * answer */
    if (!create_graph && !is_input[i]) unref(&e, gr[i]);
    if (dead && !pinned[i]) release(g, n); /* once only: release() clears n->owner */
  }
  for (int64_t j = 0; j < n_in && !g->status; j++) {
    ml_node *x = inputs[j];
    grads[j] = gr[x->id] ? gr[x->id] : ml_zeros(g, x->value.ndim, x->value.shape);
  }
  g->free = NULL, g->n_free = g->free_cap = 0; /* reuse stays inside one sweep */
  g->recycle = prev_recycle;
  ml_graph_set_recording(g, prev);
  return g->status;
}
