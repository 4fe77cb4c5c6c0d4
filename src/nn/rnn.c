/* LSTM and GRU cells and a packed sequence loop, written with differentiable ops so that
 * second-order gradients (MAML through a recurrent model) need nothing special. One GEMM per
 * step computes all gate products with the state; the gates are column bands of its result. */
#include "metalearn/nn.h"

int64_t ml_rnn_gates(ml_rnn_kind kind) { return kind == ML_RNN_LSTM ? 4 : 3; }

/* The first n rows of a state (m, H): a view, no copy. */
static ml_node *rows(ml_graph *g, ml_node *s, int64_t n) {
  if (!s || s->value.shape[0] == n) return s;
  return ml_slice(g, s, 0, 0, n);
}

/* Shape errors surface from the ops themselves (matmul, add, slice) as sticky graph errors. */
ml_node *ml_lstm_cell(ml_graph *g, ml_node *xw, ml_node *h, ml_node *c, ml_node *w_hh, ml_node **c_out) {
  *c_out = NULL;
  if (!xw || !h || !c || !w_hh || ml_graph_status(g)) return NULL;
  int64_t n = xw->value.shape[0], H = h->value.shape[1];
  ml_node *hp = rows(g, h, n), *cp = rows(g, c, n);
  ml_node *z = ml_add(g, xw, ml_matmul(g, hp, w_hh, false, true));
  /* the gates in one fused op: [h; c2], both row slices of it (views) */
  ml_node *hc = ml_lstm_gates(g, z, cp);
  if (!hc || H != hc->value.shape[1]) return NULL;
  *c_out = ml_slice(g, hc, 0, n, n);
  return ml_slice(g, hc, 0, 0, n);
}

ml_node *ml_gru_cell(ml_graph *g, ml_node *xw, ml_node *h, ml_node *w_hh, ml_node *b_hh) {
  if (!xw || !h || !w_hh || ml_graph_status(g)) return NULL;
  int64_t n = xw->value.shape[0], H = h->value.shape[1];
  ml_node *hp = rows(g, h, n);
  ml_node *zh = ml_matmul(g, hp, w_hh, false, true);
  if (b_hh) zh = ml_add(g, zh, b_hh);
  ml_node *rz = ml_sigmoid(g, ml_add(g, ml_slice(g, xw, 1, 0, 2 * H), ml_slice(g, zh, 1, 0, 2 * H)));
  ml_node *r = ml_slice(g, rz, 1, 0, H), *zg = ml_slice(g, rz, 1, H, H);
  ml_node *nn = ml_tanh(g, ml_add(g, ml_slice(g, xw, 1, 2 * H, H), ml_mul(g, r, ml_slice(g, zh, 1, 2 * H, H))));
  return ml_add(g, nn, ml_mul(g, zg, ml_sub(g, hp, nn))); /* (1 - z) n + z h */
}

ml_status ml_rnn_batch_sizes(const int64_t *len, int64_t B, int64_t T, int64_t *n_t) {
  for (int64_t b = 0; b < B; b++) {
    if (len[b] < 0 || len[b] > T)
      return ml_error(ML_ERR_ARG, "rnn: sequence %lld has length %lld, outside [0, %lld]", (long long)b,
                      (long long)len[b], (long long)T);
    if (b > 0 && len[b] > len[b - 1])
      return ml_error(ML_ERR_ARG, "rnn: lengths must be sorted longest first (sequence %lld: %lld > %lld)",
                      (long long)b, (long long)len[b], (long long)len[b - 1]);
  }
  int64_t n = B;
  for (int64_t t = 0; t < T; t++) {
    while (n > 0 && len[n - 1] <= t) n--;
    n_t[t] = n;
  }
  return ML_OK;
}

/* A (1, H) initial state shared by the batch becomes (B, H); NULL becomes zeros. */
static ml_node *initial(ml_graph *g, ml_node *s, int64_t B, int64_t H) {
  if (!s) return ml_zeros(g, 2, (int64_t[]){B, H});
  if (s->value.numel == H && B > 1) return ml_expand_pcq(g, s, B, H, 1, 2, (int64_t[]){B, H});
  return s;
}

ml_status ml_rnn_run(ml_graph *g, ml_rnn_kind kind, ml_node *const *xw, const int64_t *len, int64_t B,
                     int64_t T, ml_node *h0, ml_node *c0, ml_node *w_hh, ml_node *b_hh, ml_node **hs) {
  if (ml_graph_status(g)) return ml_graph_status(g);
  if (!w_hh || w_hh->value.ndim != 2) return ml_error(ML_ERR_ARG, "rnn: w_hh must be (G*H, H)");
  for (int64_t b = 1; b < B; b++)
    if (len[b] > len[b - 1]) return ml_error(ML_ERR_ARG, "rnn: lengths must be sorted longest first");
  int64_t H = w_hh->value.shape[1];
  ml_node *h = initial(g, h0, B, H), *c = kind == ML_RNN_LSTM ? initial(g, c0, B, H) : NULL;
  for (int64_t t = 0; t < T; t++) hs[t] = NULL;
  for (int64_t t = 0; t < T; t++) {
    int64_t n = 0;
    while (n < B && len[n] > t) n++;
    if (n == 0) break;
    if (kind == ML_RNN_LSTM) {
      ml_node *c2;
      h = ml_lstm_cell(g, xw[t], h, c, w_hh, &c2);
      c = c2;
    } else {
      h = ml_gru_cell(g, xw[t], h, w_hh, b_hh);
    }
    hs[t] = h;
  }
  return ml_graph_status(g);
}
