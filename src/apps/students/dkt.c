/* Deep Knowledge Tracing and meta-DKT (see include/metalearn/dkt.h): batching of answer windows
 * into packed, time-major minibatches, the model as a function of its weight nodes, training
 * with Adam and early stopping, next-step predictions, their scores and the influence matrix.
 *
 * Work saved against the textbook formulation, with identical results:
 *  - the input projection x W_ih^T + b of an embedded answer depends only on the answer, so when
 *    a batch has more steps than there are answer kinds, the table E W_ih^T + b (2V, 4H) is
 *    computed once and its rows are gathered;
 *  - only the logit of the exercise asked next is computed, not all V outputs;
 *  - padded steps are never computed: windows are sorted longest first and the batch shrinks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/students/dkt_internal.h"
#include "metalearn/dkt.h"
#include "metalearn/eval.h"
#include "metalearn/kernels.h"
#include "metalearn/nn.h"
#include "metalearn/optim.h"

enum { P_EMB, P_WIH, P_B, P_WHH, P_OUTW, P_OUTB, P_H0, P_C0, P_RATE_D, P_RATE_B, P_RATE_H, P_RATE_C, P_MAX };

struct ml_dkt {
  ml_dkt_config cfg;
  ml_params *params;
  int64_t idx[P_MAX]; /* parameter index of each role, -1 when absent */
  ml_optim *opt;
  ml_arena *arena;
};

ml_dkt_config ml_dkt_defaults(void) {
  return (ml_dkt_config){.n_items = 0, .emb = 100, .hidden = 200, .window = 200, .batch = 64, .lr = 1e-3,
                         .max_epochs = 50, .patience = 5, .seed = 1, .threads = 1, .adapt_window = 0,
                         .inner_lr_init = 0.1, .cold_weight = 1.0};
}

ml_params *ml_dkt_params(ml_dkt *m) { return m->params; }

void ml_dkt_free(ml_dkt *m) {
  if (!m) return;
  ml_params_free(m->params);
  ml_optim_free(m->opt);
  ml_arena_free(m->arena);
  free(m);
}

ml_status ml_dkt_new(const ml_dkt_config *cfg, ml_dkt **out) {
  *out = NULL;
  if (cfg->n_items < 1 || cfg->n_items > (INT32_MAX - 1) / 2 || cfg->emb < 1 || cfg->hidden < 1 || cfg->window < 2 ||
      cfg->batch < 1 || !(cfg->lr > 0) || !(cfg->cold_weight > 0) || cfg->max_epochs < 1 || cfg->patience < 1 || cfg->adapt_window < 0)
    return ml_error(ML_ERR_ARG, "dkt: bad configuration (items %lld, emb %lld, hidden %lld, window %lld, batch %lld)",
                    (long long)cfg->n_items, (long long)cfg->emb, (long long)cfg->hidden, (long long)cfg->window,
                    (long long)cfg->batch);
  if (cfg->adapt_state && (!cfg->meta || cfg->adapt_window < 2))
    return ml_error(ML_ERR_ARG, "dkt: adapting the initial state needs a meta-DKT with a bounded support (adapt_window "
                                ">= 2; each prediction inside it reads the window again)");
  ml_dkt *m = calloc(1, sizeof *m);
  if (!m) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  m->cfg = *cfg;
  for (int i = 0; i < P_MAX; i++) m->idx[i] = -1;
  int64_t V = cfg->n_items, E = cfg->emb, H = cfg->hidden;
  int64_t R = cfg->adapt_window > 1 ? cfg->adapt_window - 1 : 1; /* one rate row per support size */
  m->params = ml_params_new();
  ml_status st = m->params ? ML_OK : ML_ERR_NOMEM;
  struct {
    int role;
    const char *name;
    int ndim;
    int64_t shape[2];
    int only; /* 1: meta-DKT only, 2: meta-DKT adapting its initial state only */
  } spec[] = {{P_EMB, "embedding.weight", 2, {2 * V, E}, false},
              {P_WIH, "lstm.weight_ih", 2, {4 * H, E}, false},
              {P_B, "lstm.bias", 1, {4 * H, 0}, false},
              {P_WHH, "lstm.weight_hh", 2, {4 * H, H}, false},
              {P_OUTW, "out.weight", 2, {V, H}, false},
              {P_OUTB, "out.bias", 1, {V, 0}, false},
              {P_H0, "meta.h0", 2, {1, H}, 1},
              {P_C0, "meta.c0", 2, {1, H}, 1},
              {P_RATE_D, "meta.rate_head", 2, {R, H}, 1},
              {P_RATE_B, "meta.rate_bias", 2, {R, 1}, 1},
              {P_RATE_H, "meta.rate_h0", 2, {R, H}, 2},
              {P_RATE_C, "meta.rate_c0", 2, {R, H}, 2}};
  for (size_t i = 0; i < sizeof spec / sizeof spec[0] && !st; i++) {
    if (spec[i].only && !cfg->meta) continue;
    if (spec[i].only == 2 && !cfg->adapt_state) continue;
    m->idx[spec[i].role] = m->params->count;
    st = ml_params_add(m->params, spec[i].name, spec[i].ndim, spec[i].shape);
  }
  if (!st) st = ml_params_finalize(m->params);
  if (!st) {
    /* PyTorch's defaults: Embedding N(0, 1); LSTM U(+-1/sqrt(H)) with the two biases summed;
     * Linear U(+-1/sqrt(fan_in)). */
    ml_rng r;
    ml_rng_init(&r, cfg->seed, 0xd47);
    ml_param *p = m->params->items;
    ml_tensor_randn(&p[m->idx[P_EMB]].value, &r, 1.0f);
    ml_init_fan_in_uniform(&p[m->idx[P_WIH]].value, H, &r);
    ml_init_fan_in_uniform(&p[m->idx[P_WHH]].value, H, &r);
    ml_tensor *b = &p[m->idx[P_B]].value;
    ml_init_fan_in_uniform(b, H, &r);
    for (int64_t i = 0; i < b->numel; i++) {
      float k = 1.0f / sqrtf((float)H);
      b->data[i] += -k + 2 * k * ml_rng_uniform(&r);
    }
    ml_init_fan_in_uniform(&p[m->idx[P_OUTW]].value, H, &r);
    ml_init_fan_in_uniform(&p[m->idx[P_OUTB]].value, H, &r);
    if (cfg->meta) {
      ml_tensor_fill(&p[m->idx[P_RATE_D]].value, (float)cfg->inner_lr_init);
      ml_tensor_fill(&p[m->idx[P_RATE_B]].value, (float)cfg->inner_lr_init);
      if (cfg->adapt_state) {
        ml_tensor_fill(&p[m->idx[P_RATE_H]].value, (float)cfg->inner_lr_init);
        ml_tensor_fill(&p[m->idx[P_RATE_C]].value, (float)cfg->inner_lr_init);
      }
    }
  }
  ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAM);
  oc.lr = (float)cfg->lr;
  if (!st && !(m->opt = ml_optim_new(&oc, m->params->numel))) st = ML_ERR_NOMEM;
  if (!st && !(m->arena = ml_arena_new(64 << 20, NULL))) st = ML_ERR_NOMEM;
  if (st) {
    ml_dkt_free(m);
    return st == ML_ERR_NOMEM ? ml_error(st, "dkt: out of memory") : st;
  }
  *out = m;
  return ML_OK;
}

/* ------------------------------------------------------------------ windows and batches */
typedef struct {
  int64_t student, start, len; /* answers [start, start + len) of the student */
} window;

/* Windows of cfg.window answers; those with a single answer predict nothing and are dropped. */
static ml_status make_windows(const ml_answers *a, int64_t W, window **out, int64_t *n_out) {
  int64_t n = 0;
  for (int64_t s = 0; s < a->n_students; s++) {
    int64_t L = ml_answers_len(a, s);
    n += L / W + (L % W >= 2);
  }
  window *w = malloc((size_t)(n ? n : 1) * sizeof *w);
  if (!w) return ml_error(ML_ERR_NOMEM, "dkt: out of memory for %lld windows", (long long)n);
  int64_t k = 0;
  for (int64_t s = 0; s < a->n_students; s++) {
    int64_t L = ml_answers_len(a, s);
    for (int64_t st = 0; st < L; st += W) {
      int64_t len = L - st < W ? L - st : W;
      if (len >= 2) w[k++] = (window){s, st, len};
    }
  }
  *out = w;
  *n_out = k;
  return ML_OK;
}

typedef struct {
  int64_t B, T, N;    /* windows, steps of the longest, steps in all */
  int64_t *len;       /* steps per window (answers - 1), longest first */
  int64_t *n_t, *off; /* rows of step t and their offset in the time-major arrays */
  int32_t *in, *tgt;  /* answer kind read at each step, exercise asked next */
  float *y;           /* its correctness */
  float *wt;          /* weight of its loss term (cold_weight on answers 3-15 of a student) */
  double wsum;
  int64_t *student;   /* per row, for predictions */
  int32_t *pos;
} batch;

static int cmp_len_desc(const void *a, const void *b) {
  const window *x = *(window *const *)a, *y = *(window *const *)b;
  if (x->len != y->len) return x->len < y->len ? 1 : -1;
  return x < y ? -1 : x > y; /* stable: by position in the window list */
}

static ml_status make_batch(ml_arena *ar, const ml_answers *a, int64_t V, float cold_weight, const window *const *ws,
                            int64_t B, batch *bt) {
  window const **w = ml_arena_alloc(ar, (size_t)B * sizeof *w);
  if (!w) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  memcpy(w, ws, (size_t)B * sizeof *w);
  qsort(w, (size_t)B, sizeof *w, cmp_len_desc);
  bt->B = B;
  bt->T = w[0]->len - 1;
  bt->N = 0;
  bt->wsum = 0;
  for (int64_t b = 0; b < B; b++) bt->N += w[b]->len - 1;
  int64_t T = bt->T, N = bt->N;
  bt->len = ml_arena_alloc(ar, (size_t)B * sizeof(int64_t));
  bt->n_t = ml_arena_alloc(ar, (size_t)T * sizeof(int64_t));
  bt->off = ml_arena_alloc(ar, (size_t)T * sizeof(int64_t));
  bt->in = ml_arena_alloc(ar, (size_t)N * sizeof(int32_t));
  bt->tgt = ml_arena_alloc(ar, (size_t)N * sizeof(int32_t));
  bt->y = ml_arena_alloc(ar, (size_t)N * sizeof(float));
  bt->wt = ml_arena_alloc(ar, (size_t)N * sizeof(float));
  bt->student = ml_arena_alloc(ar, (size_t)N * sizeof(int64_t));
  bt->pos = ml_arena_alloc(ar, (size_t)N * sizeof(int32_t));
  if (!bt->len || !bt->n_t || !bt->off || !bt->in || !bt->tgt || !bt->y || !bt->wt || !bt->student || !bt->pos)
    return ml_error(ML_ERR_NOMEM, "dkt: out of memory for a batch of %lld steps", (long long)N);
  for (int64_t b = 0; b < B; b++) bt->len[b] = w[b]->len - 1;
  ml_status st = ml_rnn_batch_sizes(bt->len, B, T, bt->n_t);
  if (st) return st;
  int64_t r = 0;
  for (int64_t t = 0; t < T; t++) {
    bt->off[t] = r;
    for (int64_t b = 0; b < bt->n_t[t]; b++, r++) {
      int64_t i = a->offsets[w[b]->student] + w[b]->start + t;
      int32_t e = a->item[i], e2 = a->item[i + 1];
      if (e < 0 || e >= V || e2 < 0 || e2 >= V)
        return ml_error(ML_ERR_ARG, "dkt: exercise index %d of student %lld is outside the model's %lld",
                        e < 0 || e >= V ? e : e2, (long long)w[b]->student, (long long)V);
      bt->in[r] = e + (a->correct[i] ? (int32_t)V : 0);
      bt->tgt[r] = e2;
      bt->y[r] = a->correct[i + 1];
      int64_t pos = w[b]->start + t + 2;
      bt->wt[r] = pos >= 3 && pos <= 15 ? cold_weight : 1.0f;
      bt->wsum += bt->wt[r];
      bt->student[r] = w[b]->student;
      bt->pos[r] = (int32_t)(w[b]->start + t + 2);
    }
  }
  return ML_OK;
}

/* ------------------------------------------------------------------ the model */
static ml_node *vec(ml_graph *g, float *data, int64_t n) {
  ml_tensor t = ml_shape1(n);
  t.data = data;
  return ml_leaf(g, t, false);
}

/* The Meta-SGD rates for a support of cnt answers: row cnt - 1 when the support is bounded (a
 * learned schedule: one noisy answer deserves a smaller step than ten), else the only row. */
static ml_node *rate_row(ml_graph *g, ml_node *rate, int64_t cnt) {
  int64_t R = rate->value.shape[0], D = rate->value.shape[1];
  ml_node *r = R == 1 ? rate : ml_slice(g, rate, 0, (cnt < R ? cnt : R) - 1, 1);
  return ml_reshape(g, r, 1, (int64_t[]){D});
}

/* A (1, H) initial state as one row per window: a view that passes gradients to the parameter
 * when training; at inference (the parameter needs no gradient) a copy that asks for one, so the
 * inner step can still differentiate the support loss with respect to each window's state. */
static ml_node *per_row(ml_graph *g, ml_node *p, int64_t B) {
  int64_t H = p->value.shape[1];
  if (p->requires_grad) return ml_expand_pcq(g, p, B, H, 1, 2, (int64_t[]){B, H});
  ml_node *r = ml_new(g, 2, (int64_t[]){B, H});
  if (!r) return NULL;
  for (int64_t b = 0; b < B; b++) memcpy(r->value.data + b * H, p->value.data, (size_t)H * sizeof(float));
  r->requires_grad = true;
  return r;
}

/* The initial state adapted by one Meta-SGD step on the support loss sup (a sum over cnt answers,
 * as a function of the per-window initial states h0r, c0r), and the LSTM run again from it over
 * the first `steps` steps of the batch. Returns the output of the last step (hs_out NULL) or fills
 * hs_out[0..steps). Second order when training (the parameters require gradients). */
static ml_node *rerun_adapted(ml_graph *g, ml_node *const *w, const batch *bt, ml_node *const *xw,
                              ml_node *h0r, ml_node *c0r, ml_node *sup, int64_t cnt, int64_t steps, ml_node **hs_out) {
  ml_arena *ar = ml_graph_arena(g);
  if (!sup) return NULL;
  ml_node *mean = ml_scale(g, sup, 1.0f / (float)cnt), *in[2] = {h0r, c0r}, *gr[2];
  if (!mean || ml_grad(g, &mean, 1, NULL, in, 2, w[P_WHH]->requires_grad, gr)) return NULL;
  ml_node *h1 = ml_sub(g, h0r, ml_mul_axis(g, gr[0], rate_row(g, w[P_RATE_H], cnt), 1));
  ml_node *c1 = ml_sub(g, c0r, ml_mul_axis(g, gr[1], rate_row(g, w[P_RATE_C], cnt), 1));
  int64_t *len = ml_arena_alloc(ar, (size_t)bt->B * sizeof(int64_t));
  ml_node **hs = hs_out ? hs_out : ml_arena_alloc(ar, (size_t)steps * sizeof *hs);
  if (!len || !hs || !h1 || !c1) return NULL;
  for (int64_t b = 0; b < bt->B; b++) len[b] = bt->len[b] < steps ? bt->len[b] : steps;
  if (ml_rnn_run(g, ML_RNN_LSTM, xw, len, bt->B, steps, h1, c1, w[P_WHH], NULL, hs)) return NULL;
  return hs[steps - 1];
}

/* Sum over all predicted answers of the log-loss; logits[t] (n_t) receive the adapted logits,
 * l0[t] and hs[t] (when not NULL) the unadapted logits and the LSTM outputs. */
static ml_node *forward_ex(const ml_dkt *m, ml_graph *g, ml_node *const *w, const batch *bt, ml_node **logits,
                           ml_node **l0_out, ml_node **hs_out) {
  const ml_dkt_config *c = &m->cfg;
  int64_t V = c->n_items, T = bt->T, N = bt->N;
  ml_arena *ar = ml_graph_arena(g);
  ml_node **xw = ml_arena_alloc(ar, (size_t)T * sizeof *xw), **hs = ml_arena_alloc(ar, (size_t)T * sizeof *hs);
  if (!xw || !hs) return NULL;
  ml_node *xw_all = NULL, *table = NULL, *h0r = NULL, *c0r = NULL;
  bool meta = c->meta;
  if (2 * V < N) /* fewer distinct inputs than rows: project the embedding table, then gather */
    table = ml_add(g, ml_matmul(g, w[P_EMB], w[P_WIH], false, true), w[P_B]);
  else
    xw_all = ml_add(g, ml_matmul(g, ml_embedding(g, w[P_EMB], bt->in, N), w[P_WIH], false, true), w[P_B]);
  if (table && meta) xw_all = ml_embedding(g, table, bt->in, N);
  if (!meta) {
    /* plain DKT: the whole sequence as one op (one recurrent weight-gradient GEMM for all steps),
     * reading the projected table's rows in place when folded */
    int32_t *nt = ml_arena_alloc(ar, (size_t)T * sizeof *nt);
    if (!nt) return NULL;
    for (int64_t t = 0; t < T; t++) nt[t] = (int32_t)bt->n_t[t];
    ml_node *hs_all = table ? ml_lstm_seq_gather(g, table, bt->in, w[P_WHH], nt, T) : ml_lstm_seq(g, xw_all, w[P_WHH], nt, T);
    for (int64_t t = 0; t < T; t++) hs[t] = ml_slice(g, hs_all, 0, bt->off[t], bt->n_t[t]);
    if (ml_graph_status(g)) return NULL;
  } else {
    for (int64_t t = 0; t < T; t++) xw[t] = ml_slice(g, xw_all, 0, bt->off[t], bt->n_t[t]);
    if (ml_graph_status(g)) return NULL;
    if (c->adapt_state) {
      h0r = per_row(g, w[P_H0], bt->B);
      c0r = per_row(g, w[P_C0], bt->B);
    }
    if (ml_rnn_run(g, ML_RNN_LSTM, xw, bt->len, bt->B, T, h0r ? h0r : w[P_H0], c0r ? c0r : w[P_C0], w[P_WHH], NULL,
                   hs))
      return NULL;
  }
  ml_node *wo = ml_embedding(g, w[P_OUTW], bt->tgt, N);
  ml_node *bo = ml_embedding(g, ml_reshape(g, w[P_OUTB], 2, (int64_t[]){V, 1}), bt->tgt, N);
  int64_t support_steps = c->adapt_window > 1 ? c->adapt_window - 1 : INT64_MAX;
  ml_node *loss = NULL, *S = NULL, *Sb = NULL, *prev_err = NULL;
  /* state adaptation: the support loss so far, and the adapted run past the support */
  ml_node *sup = NULL, **hs_late = NULL;
  bool state = meta && c->adapt_state;
  for (int64_t t = 0; t < T; t++) {
    int64_t n = bt->n_t[t], o = bt->off[t];
    ml_node *l = ml_sum_rows(g, ml_mul(g, hs[t], ml_slice(g, wo, 0, o, n)));
    l = ml_add(g, l, ml_reshape(g, ml_slice(g, bo, 0, o, n), 1, (int64_t[]){n}));
    ml_node *y = vec(g, bt->y + o, n);
    if (state) {
      /* the initial state takes one step on the support loss (answers 2..t+1, predicted by the
       * unadapted run), then the window's first t+1 answers are read again from it */
      ml_node *l0 = l;
      if (l0_out) l0_out[t] = l0;
      if (t > 0) {
        int64_t cnt = t < support_steps ? t : support_steps;
        ml_node *hrun = NULL;
        if (t <= support_steps) {
          hrun = rerun_adapted(g, w, bt, xw, h0r, c0r, sup, cnt, t + 1, NULL);
        } else {
          if (!hs_late) {
            hs_late = ml_arena_alloc(ar, (size_t)T * sizeof *hs_late);
            if (!hs_late) return NULL;
            rerun_adapted(g, w, bt, xw, h0r, c0r, sup, cnt, T, hs_late);
          }
          hrun = hs_late[t];
        }
        l = ml_sum_rows(g, ml_mul(g, hrun, ml_slice(g, wo, 0, o, n)));
        l = ml_add(g, l, ml_reshape(g, ml_slice(g, bo, 0, o, n), 1, (int64_t[]){n}));
      }
      if (t < support_steps) {
        ml_node *lt0 = ml_sum(g, ml_sub(g, ml_softplus(g, l0), ml_mul(g, l0, y)));
        sup = sup ? ml_add(g, sup, lt0) : lt0;
      }
      logits[t] = l;
      ml_node *terms = ml_sub(g, ml_softplus(g, l), ml_mul(g, l, y));
      if (c->cold_weight != 1.0) terms = ml_mul(g, terms, vec(g, bt->wt + o, n));
      ml_node *lt = ml_sum(g, terms);
      loss = loss ? ml_add(g, loss, lt) : lt;
      continue;
    }
    if (meta && t > 0 && t - 1 < support_steps) {
      /* one inner step on the support log-loss from zero fast weights: its gradient in the head
       * offset d is (p - y) h, in the bias offset b it is (p - y); mean over the support */
      int64_t np = bt->n_t[t - 1];
      ml_node *e = prev_err; /* (np), p - y of step t-1 with the unadapted head */
      ml_node *dS = ml_mul_axis(g, hs[t - 1], e, 0);
      ml_node *e2 = ml_reshape(g, e, 2, (int64_t[]){np, 1});
      S = S ? ml_add(g, ml_slice(g, S, 0, 0, np), dS) : dS;
      Sb = Sb ? ml_add(g, ml_slice(g, Sb, 0, 0, np), e2) : e2;
      if (n < np) S = ml_slice(g, S, 0, 0, n), Sb = ml_slice(g, Sb, 0, 0, n);
    } else if (meta && S && n < S->value.shape[0]) {
      S = ml_slice(g, S, 0, 0, n), Sb = ml_slice(g, Sb, 0, 0, n);
    }
    ml_node *l0 = l;
    if (l0_out) l0_out[t] = l0;
    if (meta && S) {
      int64_t cnt = t < support_steps ? t : support_steps;
      float inv = -1.0f / (float)cnt;
      ml_node *d = ml_scale(g, ml_mul(g, S, rate_row(g, w[P_RATE_D], cnt)), inv);
      ml_node *bb = ml_scale(g, ml_mul(g, ml_reshape(g, Sb, 1, (int64_t[]){n}), rate_row(g, w[P_RATE_B], cnt)), inv);
      l = ml_add(g, ml_add(g, l, ml_sum_rows(g, ml_mul(g, hs[t], d))), bb);
    }
    if (meta && t < support_steps) prev_err = ml_sub(g, ml_sigmoid(g, l0), y);
    logits[t] = l;
    ml_node *terms = ml_sub(g, ml_softplus(g, l), ml_mul(g, l, y));
    if (c->cold_weight != 1.0) terms = ml_mul(g, terms, vec(g, bt->wt + o, n));
    ml_node *lt = ml_sum(g, terms);
    loss = loss ? ml_add(g, loss, lt) : lt;
  }
  if (hs_out)
    for (int64_t t = 0; t < T; t++) hs_out[t] = hs[t];
  return loss;
}

static ml_node *forward(const ml_dkt *m, ml_graph *g, ml_node *const *w, const batch *bt, ml_node **logits) {
  return forward_ex(m, g, w, bt, logits, NULL, NULL);
}

/* One leaf per parameter, in role order (NULL for absent roles). */
static void leaves(const ml_dkt *m, ml_graph *g, bool requires_grad, ml_node **w) {
  for (int r = 0; r < P_MAX; r++) {
    w[r] = NULL;
    if (m->idx[r] >= 0) w[r] = ml_leaf(g, m->params->items[m->idx[r]].value, requires_grad);
  }
}

static ml_status train_batch(ml_dkt *m, const ml_answers *a, const window *const *ws, int64_t B, double *loss_sum,
                             int64_t *n_pred) {
  ml_arena_reset(m->arena);
  ml_graph *g = ml_graph_new(m->arena);
  if (!g) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  batch bt;
  ml_status st = make_batch(m->arena, a, m->cfg.n_items, (float)m->cfg.cold_weight, ws, B, &bt);
  if (st) return st;
  ml_node *w[P_MAX], *gr[P_MAX], *in[P_MAX];
  leaves(m, g, true, w);
  ml_node **logits = ml_arena_alloc(m->arena, (size_t)bt.T * sizeof *logits);
  if (!logits) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  ml_node *loss = forward(m, g, w, &bt, logits);
  ml_node *mean = ml_scale(g, loss, (float)(1.0 / bt.wsum));
  int n_in = 0;
  int roles[P_MAX];
  for (int r = 0; r < P_MAX; r++)
    if (w[r]) roles[n_in] = r, in[n_in++] = w[r];
  if (!mean || ml_grad(g, &mean, 1, NULL, in, n_in, false, gr)) return ml_graph_status(g) ? ml_graph_status(g) : ML_ERR_NOMEM;
  for (int k = 0; k < n_in; k++) {
    ml_param *p = &m->params->items[m->idx[roles[k]]];
    memcpy(p->grad.data, gr[k]->value.data, (size_t)p->grad.numel * sizeof(float));
  }

  *loss_sum += (double)loss->value.data[0];
  *n_pred += bt.N;
  return ml_optim_step_params(m->opt, m->params);
}

ml_status ml_dkt_train_epoch(ml_dkt *m, const ml_answers *train, int64_t epoch, double *loss) {
  window *ws;
  int64_t nw;
  ml_status st = make_windows(train, m->cfg.window, &ws, &nw);
  if (st) return st;
  if (nw == 0) {
    free(ws);
    return ml_error(ML_ERR_ARG, "dkt: no training student has two answers");
  }
  int64_t *order = malloc((size_t)nw * sizeof *order);
  const window **bw = malloc((size_t)m->cfg.batch * sizeof *bw);
  if (!order || !bw) {
    free(ws), free(order), free(bw);
    return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  }
  for (int64_t i = 0; i < nw; i++) order[i] = i;
  ml_rng r;
  ml_rng_init(&r, ml_rng_key(m->cfg.seed, 0xe90c, (uint64_t)epoch), 1);
  ml_rng_shuffle(&r, order, nw);
  ml_blas_set_threads(m->cfg.threads);
  double sum = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < nw && !st; i += m->cfg.batch) {
    int64_t B = nw - i < m->cfg.batch ? nw - i : m->cfg.batch;
    for (int64_t b = 0; b < B; b++) bw[b] = &ws[order[i + b]];
    st = train_batch(m, train, bw, B, &sum, &n);
  }
  if (loss) *loss = n ? sum / (double)n : NAN;
  free(ws), free(order), free(bw);
  return st;
}

/* ------------------------------------------------------------------ predictions and scores */
void ml_kt_predictions_free(ml_kt_predictions *p) {
  if (!p) return;
  free(p->p), free(p->y), free(p->student), free(p->pos);
  memset(p, 0, sizeof *p);
}

ml_status ml_dkt_predict(ml_dkt *m, const ml_answers *a, ml_kt_predictions *out) {
  memset(out, 0, sizeof *out);
  window *ws;
  int64_t nw;
  ml_status st = make_windows(a, m->cfg.window, &ws, &nw);
  if (st) return st;
  int64_t total = 0;
  for (int64_t i = 0; i < nw; i++) total += ws[i].len - 1;
  /* the training batch size: the arena then never grows past what training needed (fresh
   * pages cost page faults, about a tenth of an epoch on STATICS) */
  const int64_t BB = m->cfg.batch;
  const window **bw = malloc((size_t)BB * sizeof *bw);
  out->p = malloc((size_t)(total ? total : 1) * sizeof(float));
  out->y = malloc((size_t)(total ? total : 1));
  out->student = malloc((size_t)(total ? total : 1) * sizeof(int64_t));
  out->pos = malloc((size_t)(total ? total : 1) * sizeof(int32_t));
  if (!bw || !out->p || !out->y || !out->student || !out->pos) {
    free(ws), free(bw);
    ml_kt_predictions_free(out);
    return ml_error(ML_ERR_NOMEM, "dkt: out of memory for %lld predictions", (long long)total);
  }
  ml_blas_set_threads(m->cfg.threads);
  int64_t k = 0;
  for (int64_t i = 0; i < nw && !st; i += BB) {
    int64_t B = nw - i < BB ? nw - i : BB;
    for (int64_t b = 0; b < B; b++) bw[b] = &ws[i + b];
    ml_arena_reset(m->arena);
    ml_graph *g = ml_graph_new(m->arena);
    batch bt;
    if (!g) st = ml_error(ML_ERR_NOMEM, "dkt: out of memory");
    if (!st) st = make_batch(m->arena, a, m->cfg.n_items, (float)m->cfg.cold_weight, bw, B, &bt);
    if (st) break;
    ml_node *w[P_MAX];
    leaves(m, g, false, w);
    ml_node **logits = ml_arena_alloc(m->arena, (size_t)bt.T * sizeof *logits);
    if (!logits || !forward(m, g, w, &bt, logits)) {
      st = ml_graph_status(g) ? ml_graph_status(g) : ml_error(ML_ERR_NOMEM, "dkt: out of memory");
      break;
    }
    for (int64_t t = 0; t < bt.T; t++)
      for (int64_t j = 0; j < bt.n_t[t]; j++, k++) {
        int64_t r = bt.off[t] + j;
        out->p[k] = 1.0f / (1.0f + expf(-logits[t]->value.data[j]));
        out->y[k] = (uint8_t)bt.y[r];
        out->student[k] = bt.student[r];
        out->pos[k] = bt.pos[r];
      }
  }
  free(ws), free(bw);
  if (st) {
    ml_kt_predictions_free(out);
    return st;
  }
  out->n = k;
  return ML_OK;
}

void ml_kt_score(const ml_kt_predictions *p, ml_kt_scores *s) {
  memset(s, 0, sizeof *s);
  double ll = 0;
  int64_t hit = 0;
  float *pa = malloc((size_t)(p->n ? p->n : 1) * sizeof(float));
  uint8_t *ya = malloc((size_t)(p->n ? p->n : 1));
  for (int64_t i = 0; i < p->n; i++) {
    double q = p->p[i] < 1e-7f ? 1e-7 : p->p[i] > 1 - 1e-7f ? 1 - 1e-7 : p->p[i];
    ll -= p->y[i] ? log(q) : log(1 - q);
    hit += (p->p[i] >= 0.5f) == (p->y[i] == 1);
  }
  s->n = p->n;
  s->acc = p->n ? (double)hit / (double)p->n : NAN;
  s->logloss = p->n ? ll / (double)p->n : NAN;
  s->auc = ml_auc(p->p, p->y, p->n);
  if (!pa || !ya) {
    s->auc_3_10 = s->auc_11_15 = NAN;
  } else {
    int64_t lo[2] = {3, 11}, hi[2] = {10, 15};
    for (int w = 0; w < 2; w++) {
      int64_t k = 0;
      for (int64_t i = 0; i < p->n; i++)
        if (p->pos[i] >= lo[w] && p->pos[i] <= hi[w]) pa[k] = p->p[i], ya[k++] = p->y[i];
      double auc = ml_auc(pa, ya, k);
      if (w == 0)
        s->auc_3_10 = auc, s->n_3_10 = k;
      else
        s->auc_11_15 = auc, s->n_11_15 = k;
    }
  }
  free(pa), free(ya);
}

/* Predictions regrouped by student (stable), the layout ml_binary_report_compute wants; only
 * those with keep(pos) when lo > 0. */
static ml_status group_by_student(const ml_kt_predictions *p, int64_t n_students, int64_t lo, int64_t hi, float *pg,
                                  uint8_t *yg, int64_t *offsets) {
  int64_t *cnt = calloc((size_t)n_students + 1, sizeof(int64_t));
  if (!cnt) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  for (int64_t i = 0; i < p->n; i++)
    if (lo == 0 || (p->pos[i] >= lo && p->pos[i] <= hi)) cnt[p->student[i] + 1]++;
  for (int64_t s = 0; s < n_students; s++) cnt[s + 1] += cnt[s];
  memcpy(offsets, cnt, (size_t)(n_students + 1) * sizeof(int64_t));
  for (int64_t i = 0; i < p->n; i++)
    if (lo == 0 || (p->pos[i] >= lo && p->pos[i] <= hi)) {
      int64_t k = cnt[p->student[i]]++;
      pg[k] = p->p[i], yg[k] = p->y[i];
    }
  free(cnt);
  return ML_OK;
}

ml_status ml_dkt_protocol_b(ml_dkt *m, const ml_answers *test, const char *model, double fit_seconds,
                            int64_t n_boot, uint64_t seed, ml_students_row rows[3]) {
  double t0 = ml_now();
  ml_kt_predictions p;
  ml_status st = ml_dkt_predict(m, test, &p);
  if (st) return st;
  double eval_s = ml_now() - t0;
  int64_t S = test->n_students;
  float *pg = malloc((size_t)(p.n ? p.n : 1) * sizeof(float));
  uint8_t *yg = malloc((size_t)(p.n ? p.n : 1));
  int64_t *off = malloc((size_t)(S + 1) * sizeof(int64_t));
  if (!pg || !yg || !off) st = ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  static const char *cols[3] = {"B all", "B 3-10", "B 11-15"};
  const int64_t lo[3] = {0, 3, 11}, hi[3] = {0, 10, 15};
  for (int c = 0; c < 3; c++) memset(&rows[c], 0, sizeof rows[c]);
  for (int c = 0; c < 3 && !st; c++) {
    ml_students_row *r = &rows[c];
    st = group_by_student(&p, S, lo[c], hi[c], pg, yg, off);
    if (!st) st = ml_students_row_from_predictions(model, cols[c], pg, yg, off, S, n_boot, seed, r);
    if (st) break;
    /* students with an answer in this column; the others have none to predict there */
    r->n_students = 0;
    for (int64_t s = 0; s < S; s++) r->n_students += off[s + 1] > off[s];
    r->n_dropped = S - r->n_students;
    r->fit_seconds = fit_seconds;
    r->eval_seconds = eval_s;
  }
  if (st)
    for (int c = 0; c < 3; c++) ml_students_row_free(&rows[c]);
  free(pg), free(yg), free(off);
  ml_kt_predictions_free(&p);
  return st;
}

ml_status ml_dkt_protocol_b_run(const ml_kt_dataset *d, const ml_dkt_config *cfg, const char *model,
                                int64_t n_boot, uint64_t seed, ml_students_row rows[3]) {
  ml_dkt_config c = *cfg;
  c.n_items = d->n_items;
  ml_dkt *m;
  ml_status st = ml_dkt_new(&c, &m);
  if (st) return st;
  ml_dkt_stats stats;
  st = ml_dkt_train(m, &d->train, &d->valid, &stats);
  if (!st) st = ml_dkt_protocol_b(m, &d->test, model, stats.seconds, n_boot, seed, rows);
  ml_dkt_free(m);
  return st;
}

/* ------------------------------------------------------------------ training with early stopping */
ml_status ml_dkt_train(ml_dkt *m, const ml_answers *train, const ml_answers *valid, ml_dkt_stats *st_out) {
  ml_dkt_stats st = {0};
  st.best_valid_auc = -1;
  ml_params *best = ml_params_clone_layout(m->params);
  if (!best) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  ml_params_copy_data(best, m->params);
  bool have_valid = valid && valid->n_students > 0;
  double t0 = ml_now();
  ml_status s = ML_OK;
  int64_t since = 0;
  for (int64_t e = 0; e < m->cfg.max_epochs; e++) {
    double t1 = ml_now();
    s = ml_dkt_train_epoch(m, train, e, &st.last_loss);
    st.last_epoch_seconds = ml_now() - t1;
    st.train_seconds += st.last_epoch_seconds;
    if (s) break;
    st.epochs = e + 1;
    double auc = NAN;
    if (have_valid) {
      ml_kt_predictions p;
      s = ml_dkt_predict(m, valid, &p);
      if (s) break;
      auc = ml_auc(p.p, p.y, p.n);
      ml_kt_predictions_free(&p);
    }
    bool better = !have_valid || (auc == auc && auc > st.best_valid_auc);
    if (better) {
      st.best_valid_auc = have_valid ? auc : NAN;
      st.best_epoch = e + 1;
      ml_params_copy_data(best, m->params);
      since = 0;
    } else {
      since++;
    }
    if (m->cfg.verbose)
      ml_logf(ML_LOG_INFO, "dkt epoch %lld: train loss %.4f, valid AUC %.4f%s (%.1f s)", (long long)e + 1,
              st.last_loss, auc, better ? " *" : "", ml_now() - t1);
    if (since >= m->cfg.patience) break;
    if (m->cfg.max_seconds > 0 && ml_now() - t0 >= m->cfg.max_seconds) break;
  }
  ml_params_copy_data(m->params, best);
  ml_params_free(best);
  st.seconds = ml_now() - t0;
  if (st_out) *st_out = st;
  return s;
}

/* ------------------------------------------------------------------ influence */
ml_status ml_dkt_influence(ml_dkt *m, float *J) {
  int64_t V = m->cfg.n_items, H = m->cfg.hidden;
  ml_arena_reset(m->arena);
  ml_graph *g = ml_graph_new(m->arena);
  if (!g) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  ml_node *w[P_MAX];
  leaves(m, g, false, w);
  /* every exercise answered correctly as a first answer, one row each: h1 (V, H) */
  int32_t *ids = ml_arena_alloc(m->arena, (size_t)V * sizeof(int32_t));
  if (!ids) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  for (int64_t i = 0; i < V; i++) ids[i] = (int32_t)(V + i);
  ml_node *xw = ml_add(g, ml_matmul(g, ml_embedding(g, w[P_EMB], ids, V), w[P_WIH], false, true), w[P_B]);
  ml_node *h0 = m->cfg.meta ? ml_expand_pcq(g, w[P_H0], V, H, 1, 2, (int64_t[]){V, H}) : ml_zeros(g, 2, (int64_t[]){V, H});
  ml_node *c0 = m->cfg.meta ? ml_expand_pcq(g, w[P_C0], V, H, 1, 2, (int64_t[]){V, H}) : ml_zeros(g, 2, (int64_t[]){V, H});
  ml_node *c1, *h1 = ml_lstm_cell(g, xw, h0, c0, w[P_WHH], &c1);
  /* y(j | i) for all pairs: (V, V) logits = h1 W_out^T + b_out */
  ml_node *y = ml_sigmoid(g, ml_add(g, ml_matmul(g, h1, w[P_OUTW], false, true), w[P_OUTB]));
  if (ml_graph_status(g)) return ml_graph_status(g);
  const float *yv = y->value.data;
  for (int64_t j = 0; j < V; j++) {
    double col = 0;
    for (int64_t i = 0; i < V; i++) col += yv[i * V + j];
    for (int64_t i = 0; i < V; i++) J[i * V + j] = (float)(yv[i * V + j] / col);
  }
  return ML_OK;
}

/* ------------------------------------------------------------------ test hook */
/* The first window of student s as a batch of one, on a fresh graph with parameter leaves that
 * require gradients: what both checks below start from. */
static ml_status check_batch(ml_dkt *m, const ml_answers *a, int64_t s, ml_graph **g, batch *bt, ml_node **w) {
  if (s < 0 || s >= a->n_students || ml_answers_len(a, s) < 3)
    return ml_error(ML_ERR_ARG, "dkt: student %lld has fewer than 3 answers", (long long)s);
  int64_t L = ml_answers_len(a, s);
  window win = {s, 0, L < m->cfg.window ? L : m->cfg.window};
  const window *wp = &win;
  ml_arena_reset(m->arena);
  if (!(*g = ml_graph_new(m->arena))) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  ml_status st = make_batch(m->arena, a, m->cfg.n_items, (float)m->cfg.cold_weight, &wp, 1, bt);
  if (!st) leaves(m, *g, true, w);
  return st;
}

ml_status ml__dkt_check_inner(ml_dkt *m, const ml_answers *a, int64_t s, double *max_diff) {
  *max_diff = NAN;
  if (!m->cfg.meta) return ml_error(ML_ERR_ARG, "dkt: the inner-step check needs a meta-DKT");
  int64_t H = m->cfg.hidden;
  ml_graph *g;
  batch bt;
  ml_node *w[P_MAX];
  ml_status st = check_batch(m, a, s, &g, &bt, w);
  if (st) return st;
  ml_node **logits = ml_arena_alloc(m->arena, (size_t)bt.T * 3 * sizeof(ml_node *));
  if (!logits) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  ml_node **l0 = logits + bt.T, **hs = logits + 2 * bt.T;
  if (!forward_ex(m, g, w, &bt, logits, l0, hs)) return ml_graph_status(g);
  int64_t support_steps = m->cfg.adapt_window > 1 ? m->cfg.adapt_window - 1 : INT64_MAX;
  double worst = 0;
  for (int64_t t = 1; t < bt.T; t++) {
    /* the support loss as a function of explicit fast weights d (1, H), b (1), at zero */
    float *dz = ml_arena_calloc(m->arena, (size_t)(H + 1) * sizeof(float));
    if (!dz) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
    ml_node *d = ml_leaf(g, (ml_tensor){dz, {1, H, 1, 1}, 2, H}, true);
    ml_node *b = ml_leaf(g, (ml_tensor){dz + H, {1, 1, 1, 1}, 1, 1}, true);
    int64_t cnt = t < support_steps ? t : support_steps;
    ml_node *loss = NULL;
    for (int64_t k = 0; k < cnt; k++) {
      ml_node *l = ml_add(g, ml_add(g, l0[k], ml_sum_rows(g, ml_mul(g, hs[k], d))), b);
      ml_node *y = vec(g, bt.y + bt.off[k], 1);
      ml_node *lk = ml_sum(g, ml_sub(g, ml_softplus(g, l), ml_mul(g, l, y)));
      loss = loss ? ml_add(g, loss, lk) : lk;
    }
    loss = ml_scale(g, loss, 1.0f / (float)cnt);
    ml_node *gr[2], *in[2] = {d, b};
    if (!loss || ml_grad(g, &loss, 1, NULL, in, 2, true, gr)) return ml_graph_status(g);
    ml_node *d1 = ml_neg(g, ml_mul(g, gr[0], rate_row(g, w[P_RATE_D], cnt)));
    ml_node *b1 = ml_neg(g, ml_mul(g, gr[1], rate_row(g, w[P_RATE_B], cnt)));
    ml_node *l = ml_add(g, ml_add(g, l0[t], ml_sum_rows(g, ml_mul(g, hs[t], d1))), b1);
    if (!l) return ml_graph_status(g);
    double diff = fabs((double)l->value.data[0] - (double)logits[t]->value.data[0]);
    if (diff > worst) worst = diff;
  }
  *max_diff = worst;
  return ML_OK;
}

ml_status ml__dkt_check_state(ml_dkt *m, const ml_answers *a, int64_t s, double *max_diff) {
  *max_diff = NAN;
  if (!m->cfg.meta || !m->cfg.adapt_state) return ml_error(ML_ERR_ARG, "dkt: the state check needs adapt_state");
  int64_t H = m->cfg.hidden;
  ml_graph *g;
  batch bt;
  ml_node *w[P_MAX];
  ml_status st = check_batch(m, a, s, &g, &bt, w);
  if (st) return st;
  ml_node **logits = ml_arena_alloc(m->arena, (size_t)bt.T * sizeof(ml_node *));
  if (!logits) return ml_error(ML_ERR_NOMEM, "dkt: out of memory");
  if (!forward_ex(m, g, w, &bt, logits, NULL, NULL)) return ml_graph_status(g);
  /* the same model written out step by step: explicit (1, H) initial states, one cell per step */
  ml_node *xw = ml_add(g, ml_matmul(g, ml_embedding(g, w[P_EMB], bt.in, bt.N), w[P_WIH], false, true), w[P_B]);
  ml_node *ob2 = ml_reshape(g, w[P_OUTB], 2, (int64_t[]){m->cfg.n_items, 1});
  int64_t support_steps = m->cfg.adapt_window - 1;
  double worst = 0;
  for (int64_t t = 1; t < bt.T; t++) {
    int64_t cnt = t < support_steps ? t : support_steps;
    ml_node *h0 = ml_leaf(g, w[P_H0]->value, true), *c0 = ml_leaf(g, w[P_C0]->value, true), *h = h0, *c = c0;
    ml_node *loss = NULL;
    for (int64_t k = 0; k < cnt; k++) {
      ml_node *c2;
      h = ml_lstm_cell(g, ml_slice(g, xw, 0, k, 1), h, c, w[P_WHH], &c2);
      c = c2;
      ml_node *wo = ml_reshape(g, ml_slice(g, w[P_OUTW], 0, bt.tgt[k], 1), 2, (int64_t[]){1, H});
      ml_node *l = ml_add(g, ml_sum_rows(g, ml_mul(g, h, wo)), ml_reshape(g, ml_slice(g, ob2, 0, bt.tgt[k], 1), 1, (int64_t[]){1}));
      ml_node *y = vec(g, bt.y + k, 1);
      ml_node *lk = ml_sum(g, ml_sub(g, ml_softplus(g, l), ml_mul(g, l, y)));
      loss = loss ? ml_add(g, loss, lk) : lk;
    }
    loss = ml_scale(g, loss, 1.0f / (float)cnt);
    ml_node *gr[2], *in[2] = {h0, c0};
    if (!loss || ml_grad(g, &loss, 1, NULL, in, 2, false, gr)) return ml_graph_status(g);
    ml_node *rh = ml_reshape(g, ml_slice(g, w[P_RATE_H], 0, cnt - 1, 1), 2, (int64_t[]){1, H});
    ml_node *rc = ml_reshape(g, ml_slice(g, w[P_RATE_C], 0, cnt - 1, 1), 2, (int64_t[]){1, H});
    h = ml_sub(g, h0, ml_mul(g, gr[0], rh));
    c = ml_sub(g, c0, ml_mul(g, gr[1], rc));
    for (int64_t k = 0; k <= t; k++) {
      ml_node *c2;
      h = ml_lstm_cell(g, ml_slice(g, xw, 0, k, 1), h, c, w[P_WHH], &c2);
      c = c2;
    }
    ml_node *wo = ml_reshape(g, ml_slice(g, w[P_OUTW], 0, bt.tgt[t], 1), 2, (int64_t[]){1, H});
    ml_node *l = ml_add(g, ml_sum_rows(g, ml_mul(g, h, wo)), ml_reshape(g, ml_slice(g, ob2, 0, bt.tgt[t], 1), 1, (int64_t[]){1}));
    if (!l) return ml_graph_status(g);
    double diff = fabs((double)l->value.data[0] - (double)logits[t]->value.data[0]);
    if (diff > worst) worst = diff;
  }
  *max_diff = worst;
  return ML_OK;
}
