/* Shared between graph.c and ops.c. */
#ifndef ML_AUTOGRAD_INTERNAL_H
#define ML_AUTOGRAD_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "metalearn/autograd.h"

/* A buffer released during a gradient sweep (reuse takes the best fit and splits it). */
typedef struct {
  void *p;
  size_t bytes;
} ml_free_buf;

struct ml_graph {
  ml_arena *arena;
  ml_node **nodes;
  int64_t n, cap;
  ml_status status;
  bool recording;
  bool recycle;                         /* inside a sweep without create_graph */
  bool consume;                         /* the next eager sweep may reuse forward values it passed */
  ml_free_buf *free;                    /* released buffers, reused by new nodes of the sweep: an */
  int64_t n_free, free_cap;             /* array from the sweep's arena, newest last (scanning it
                                           touches none of the dead buffers' cache lines) */
  void *temp;                           /* ml__temp's buffer and its size */
  size_t temp_cap;
};

/* Creates a node (value allocated when alloc_data), recording inputs when needed. */
ml_node *ml__node(ml_graph *g, ml_op op, int ndim, const int64_t *shape, ml_node *a, ml_node *b, ml_node *c,
                  bool alloc_data);
/* The same with n_ins (<= ML_MAX_INPUTS) inputs. */
ml_node *ml__node_n(ml_graph *g, ml_op op, int ndim, const int64_t *shape, ml_node *const *ins, int n_ins,
                    bool alloc_data);
/* Sets the sticky error (first one wins) and returns NULL. */
ml_node *ml__fail(ml_graph *g, ml_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *ml__scratch(ml_graph *g, size_t bytes);
/* Scratch for the duration of one kernel call: one buffer per graph, handed to the next call too
 * (grown when too small, inside a sweep from its dead buffers), so the im2col buffers of every
 * convolution in a graph cost one buffer instead of one each. Nothing may keep it past the op
 * that asked for it. */
void *ml__temp(ml_graph *g, size_t bytes);
/* Fills gin[k] (for needin[k]) with the gradient of node n's input k given gout. */
void ml__backward(ml_graph *g, ml_node *n, ml_node *gout, ml_node **gin, const bool *needin);
/* false when node n's backward (without create_graph) never reads n's own value */
bool ml__backward_reads_value(const ml_node *n);

#endif
