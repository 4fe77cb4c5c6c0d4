/* nn/rnn: LSTM and GRU cells against a naive double-precision reference (PyTorch's equations and
 * gate order), packed batches of unequal lengths against each sequence run alone, and central
 * finite-difference checks of first-order gradients and of Hessian-vector products (what
 * second-order MAML through a recurrent model needs). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/nn.h"

enum { H = 3, T = 4, B = 3, MAXIN = 4 };
static const int64_t lens[B] = {4, 3, 1}; /* longest first; total 8 steps */

typedef struct {
  ml_rnn_kind kind;
  bool learned_h0; /* a (1, H) initial state input, as the meta-learned DKT adapts */
} rnn_case;

static int64_t total_steps(void) {
  int64_t s = 0;
  for (int b = 0; b < B; b++) s += lens[b];
  return s;
}

/* Inputs: x[0] xw for every step stacked time-major (sum n_t, G*H); x[1] w_hh (G*H, H);
 * x[2] b_hh (G*H) for the GRU; x[3] h0 (1, H). Returns sum_t <R_t, h_t> so that every output
 * weighs in differently. */
static ml_node *run_seq(ml_graph *g, ml_node **x, const rnn_case *rc, ml_node **hs) {
  int64_t n_t[T], off = 0;
  if (ml_rnn_batch_sizes(lens, B, T, n_t)) return NULL;
  ml_node *xw[T];
  for (int t = 0; t < T; t++) {
    xw[t] = ml_slice(g, x[0], 0, off, n_t[t]);
    off += n_t[t];
  }
  ml_node *h0 = rc->learned_h0 ? x[3] : NULL;
  ml_node *c0 = rc->learned_h0 && rc->kind == ML_RNN_LSTM ? ml_scale(g, x[3], 0.5f) : NULL;
  if (ml_rnn_run(g, rc->kind, xw, lens, B, T, h0, c0, x[1], rc->kind == ML_RNN_GRU ? x[2] : NULL, hs)) return NULL;
  ml_node *s = NULL;
  for (int t = 0; t < T; t++) {
    ml_node *r = ml_new(g, 2, hs[t]->value.shape);
    if (!r) return NULL;
    ml_test_fill(r->value.data, r->value.numel, 50 + (uint64_t)t, -1, 1);
    ml_node *d = ml_sum(g, ml_mul(g, hs[t], r));
    s = s ? ml_add(g, s, d) : d;
  }
  return s;
}

/* ---------------------------------------------------------------- naive reference */
static double sg(double v) { return 1.0 / (1.0 + exp(-v)); }

/* One sequence b alone, in double: returns h after each of its steps in out[t][k]. */
static void reference(const rnn_case *rc, float *const *xs, int b, double out[T][H]) {
  int G = (int)ml_rnn_gates(rc->kind);
  int64_t n_t[T], off = 0;
  ml_rnn_batch_sizes(lens, B, T, n_t);
  double h[H], c[H];
  for (int k = 0; k < H; k++) {
    h[k] = rc->learned_h0 ? xs[3][k] : 0;
    c[k] = rc->learned_h0 ? 0.5 * xs[3][k] : 0;
  }
  for (int t = 0; t < lens[b]; t++) {
    const float *xw = xs[0] + (off + b) * G * H;
    off += n_t[t];
    double z[4 * H], hn[H];
    for (int j = 0; j < G * H; j++) {
      z[j] = 0;
      for (int k = 0; k < H; k++) z[j] += (double)xs[1][j * H + k] * h[k];
      if (rc->kind == ML_RNN_GRU) z[j] += xs[2][j];
    }
    for (int k = 0; k < H; k++) {
      if (rc->kind == ML_RNN_LSTM) {
        double i = sg(xw[k] + z[k]), f = sg(xw[H + k] + z[H + k]), gg = tanh(xw[2 * H + k] + z[2 * H + k]);
        double o = sg(xw[3 * H + k] + z[3 * H + k]);
        c[k] = f * c[k] + i * gg;
        hn[k] = o * tanh(c[k]);
      } else {
        double r = sg(xw[k] + z[k]), u = sg(xw[H + k] + z[H + k]);
        double nn = tanh(xw[2 * H + k] + r * z[2 * H + k]);
        hn[k] = (1 - u) * nn + u * h[k];
      }
    }
    for (int k = 0; k < H; k++) out[t][k] = h[k] = hn[k];
  }
}

static void make_inputs(const rnn_case *rc, ml_tensor *shape, float **xs, int *n_in) {
  int64_t G = ml_rnn_gates(rc->kind);
  shape[0] = ml_shape2(total_steps(), G * H);
  shape[1] = ml_shape2(G * H, H);
  shape[2] = ml_shape1(G * H);
  shape[3] = ml_shape2(1, H);
  *n_in = 4;
  for (int j = 0; j < 4; j++) {
    xs[j] = calloc((size_t)shape[j].numel, sizeof(float));
    ml_test_fill(xs[j], shape[j].numel, 10 + (uint64_t)j, -0.8f, 0.8f);
  }
}

static ml_node *leaves(ml_graph *g, const ml_tensor *shape, float **xs, int n, ml_node **x) {
  for (int j = 0; j < n; j++) {
    ml_tensor t = shape[j];
    t.data = xs[j];
    x[j] = ml_leaf(g, t, true);
  }
  return x[0];
}

ML_TEST(cells_match_reference_and_padding_is_inert) {
  for (int kind = 0; kind < 2; kind++) {
    for (int l0 = 0; l0 < 2; l0++) {
      rnn_case rc = {kind ? ML_RNN_GRU : ML_RNN_LSTM, l0 == 1};
      ml_tensor shape[MAXIN];
      float *xs[MAXIN];
      int n_in;
      make_inputs(&rc, shape, xs, &n_in);
      ml_arena *ar = ml_arena_new(0, NULL);
      ml_graph *g = ml_graph_new(ar);
      ml_node *x[MAXIN], *hs[T];
      leaves(g, shape, xs, n_in, x);
      CHECK(run_seq(g, x, &rc, hs) != NULL);
      CHECK_OK(ml_graph_status(g));
      /* packed rows: sequence b is row b of every step it is still running, and its values are
       * those of the sequence run alone, so the others' padding never reached its state */
      for (int b = 0; b < B; b++) {
        double ref[T][H];
        reference(&rc, xs, b, ref);
        for (int t = 0; t < T; t++) {
          bool active = t < lens[b];
          CHECK(active == (hs[t] && hs[t]->value.shape[0] > b));
          if (!active) continue;
          for (int k = 0; k < H; k++)
            CHECK_MSG(fabs(hs[t]->value.data[b * H + k] - ref[t][k]) < 1e-5, "%s h0=%d: seq %d step %d unit %d: %g vs %g",
                      kind ? "gru" : "lstm", l0, b, t, k, hs[t]->value.data[b * H + k], ref[t][k]);
        }
      }
      ml_arena_free(ar);
      for (int j = 0; j < n_in; j++) free(xs[j]);
    }
  }
}

/* ---------------------------------------------------------------- gradient checks */
static double eval_f(ml_arena *ar, const rnn_case *rc, const ml_tensor *shape, float **xs, int n_in) {
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x[MAXIN], *hs[T];
  leaves(g, shape, xs, n_in, x);
  ml_node *y = run_seq(g, x, rc, hs);
  return y ? (double)y->value.data[0] : NAN;
}

static void grads(ml_arena *ar, const rnn_case *rc, const ml_tensor *shape, float **xs, int n_in, float **out,
                  bool create_graph) {
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x[MAXIN], *hs[T], *gr[MAXIN];
  leaves(g, shape, xs, n_in, x);
  ml_node *y = run_seq(g, x, rc, hs);
  CHECK_OK(ml_grad(g, &y, 1, NULL, x, n_in, create_graph, gr));
  for (int j = 0; j < n_in && ml_graph_status(g) == ML_OK; j++)
    memcpy(out[j], gr[j]->value.data, (size_t)shape[j].numel * sizeof(float));
}

static void check_case(const rnn_case *rc) {
  ml_tensor shape[MAXIN];
  float *xs[MAXIN], *ga[MAXIN], *gb[MAXIN], *v[MAXIN], *hv[MAXIN], *gp[MAXIN], *gm[MAXIN];
  int n_in;
  make_inputs(rc, shape, xs, &n_in);
  for (int j = 0; j < n_in; j++) {
    size_t n = (size_t)shape[j].numel;
    ga[j] = calloc(n, sizeof(float)), gb[j] = calloc(n, sizeof(float)), v[j] = calloc(n, sizeof(float));
    hv[j] = calloc(n, sizeof(float)), gp[j] = calloc(n, sizeof(float)), gm[j] = calloc(n, sizeof(float));
    ml_test_fill(v[j], shape[j].numel, 70 + (uint64_t)j, -1, 1);
  }
  ml_arena *ar = ml_arena_new(1 << 20, NULL);
  const char *name = rc->kind == ML_RNN_LSTM ? "lstm" : "gru";
  grads(ar, rc, shape, xs, n_in, ga, false);
  grads(ar, rc, shape, xs, n_in, gb, true);
  const float eps = 5e-3f;
  const double atol = 2e-3, rtol = 2e-2;
  for (int j = 0; j < n_in; j++) {
    CHECK_CLOSE(gb[j], ga[j], shape[j].numel, 1e-5, 1e-4);
    for (int64_t i = 0; i < shape[j].numel; i++) {
      float keep = xs[j][i];
      xs[j][i] = keep + eps;
      double fp = eval_f(ar, rc, shape, xs, n_in);
      xs[j][i] = keep - eps;
      double fm = eval_f(ar, rc, shape, xs, n_in);
      xs[j][i] = keep;
      double num = (fp - fm) / (2.0 * eps);
      CHECK_MSG(fabs(ga[j][i] - num) <= atol + rtol * fabs(num), "%s: d/dx%d[%lld] analytic %.6g numeric %.6g", name,
                j, (long long)i, ga[j][i], num);
    }
  }
  /* Hessian-vector product through create_graph against differences of gradients along v */
  ml_arena_reset(ar);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x[MAXIN], *hs[T], *gr[MAXIN], *hx[MAXIN];
  leaves(g, shape, xs, n_in, x);
  ml_node *y = run_seq(g, x, rc, hs);
  CHECK_OK(ml_grad(g, &y, 1, NULL, x, n_in, true, gr));
  ml_node *s = NULL;
  for (int j = 0; j < n_in; j++) {
    ml_tensor t = shape[j];
    t.data = v[j];
    ml_node *d = ml_sum(g, ml_mul(g, gr[j], ml_leaf(g, t, false)));
    s = s ? ml_add(g, s, d) : d;
  }
  CHECK_OK(ml_grad(g, &s, 1, NULL, x, n_in, false, hx));
  for (int j = 0; j < n_in && ml_graph_status(g) == ML_OK; j++)
    memcpy(hv[j], hx[j]->value.data, (size_t)shape[j].numel * sizeof(float));
  for (int e = 0; e < 2; e++) {
    float sgn = e ? -1.0f : 1.0f;
    for (int j = 0; j < n_in; j++)
      for (int64_t i = 0; i < shape[j].numel; i++) xs[j][i] += sgn * eps * v[j][i];
    grads(ar, rc, shape, xs, n_in, e ? gm : gp, false);
    for (int j = 0; j < n_in; j++)
      for (int64_t i = 0; i < shape[j].numel; i++) xs[j][i] -= sgn * eps * v[j][i];
  }
  double hv_norm = 0;
  for (int j = 0; j < n_in; j++)
    for (int64_t i = 0; i < shape[j].numel; i++) {
      double num = ((double)gp[j][i] - gm[j][i]) / (2.0 * eps);
      hv_norm += fabs(hv[j][i]);
      CHECK_MSG(fabs(hv[j][i] - num) <= atol + rtol * fabs(num), "%s: (Hv)_%d[%lld] analytic %.6g numeric %.6g", name,
                j, (long long)i, hv[j][i], num);
    }
  CHECK(hv_norm > 0.1); /* the check compared something */
  ml_arena_free(ar);
  for (int j = 0; j < n_in; j++) {
    free(xs[j]), free(ga[j]), free(gb[j]), free(v[j]), free(hv[j]), free(gp[j]), free(gm[j]);
  }
}

ML_TEST(lstm_gradients_first_and_second_order) {
  rnn_case rc = {ML_RNN_LSTM, true};
  check_case(&rc);
}

ML_TEST(gru_gradients_first_and_second_order) {
  rnn_case rc = {ML_RNN_GRU, true};
  check_case(&rc);
}

ML_TEST(batch_sizes_and_bad_lengths) {
  int64_t n_t[T];
  CHECK_OK(ml_rnn_batch_sizes(lens, B, T, n_t));
  CHECK(n_t[0] == 3 && n_t[1] == 2 && n_t[2] == 2 && n_t[3] == 1);
  const int64_t unsorted[3] = {2, 4, 1}, too_long[3] = {5, 1, 1};
  CHECK(ml_rnn_batch_sizes(unsorted, 3, T, n_t) == ML_ERR_ARG);
  CHECK(ml_rnn_batch_sizes(too_long, 3, T, n_t) == ML_ERR_ARG);
  /* a state with fewer rows than the step needs is a sticky shape error, not a read past it */
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *xw = ml_zeros(g, 2, (int64_t[]){3, 4 * H}), *h = ml_zeros(g, 2, (int64_t[]){2, H});
  ml_node *w = ml_zeros(g, 2, (int64_t[]){4 * H, H}), *c2;
  CHECK(ml_lstm_cell(g, xw, h, h, w, &c2) == NULL);
  CHECK(ml_graph_status(g) == ML_ERR_SHAPE);
  ml_arena_free(ar);
}

/* The whole-sequence LSTM op: the same outputs and first-order gradients as the cells. */
/* sum of the sequence outputs weighted by fixed random numbers: a scalar that sees every output */
static ml_node *weighted(ml_graph *g, ml_node *y) {
  ml_node *r = ml_new(g, 2, y->value.shape);
  if (!r) return NULL;
  ml_test_fill(r->value.data, r->value.numel, 77, -1, 1);
  return ml_sum(g, ml_mul(g, y, r));
}

ML_TEST(lstm_seq_matches_the_cells) {
  int64_t n_t[T], N = total_steps();
  CHECK_OK(ml_rnn_batch_sizes(lens, B, T, n_t));
  int32_t nt32[T];
  for (int t = 0; t < T; t++) nt32[t] = (int32_t)n_t[t];
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_graph *g = ml_graph_new(ar);
  ml_node *x = ml_new(g, 2, (int64_t[]){N, 4 * H}), *w = ml_new(g, 2, (int64_t[]){4 * H, H});
  ml_test_fill(x->value.data, x->value.numel, 61, -1.5f, 1.5f);
  ml_test_fill(w->value.data, w->value.numel, 62, -1, 1);
  x = ml_leaf(g, x->value, true), w = ml_leaf(g, w->value, true);
  ml_node *in[MAXIN] = {x, w, NULL, NULL}, *hs[T];
  rnn_case rc = {ML_RNN_LSTM, false};
  ml_node *l_cells = run_seq(g, in, &rc, hs);
  ml_node *seq = ml_lstm_seq(g, x, w, nt32, T), *l_seq = NULL;
  CHECK(l_cells && seq);
  if (!l_cells || !seq) {
    ml_arena_free(ar);
    return;
  }
  /* the same weighting as run_seq's, on the rows of each step */
  for (int64_t t = 0, off = 0; t < T; off += n_t[t], t++) {
    ml_node *r = ml_new(g, 2, (int64_t[]){n_t[t], H});
    ml_test_fill(r->value.data, r->value.numel, 50 + (uint64_t)t, -1, 1);
    ml_node *d = ml_sum(g, ml_mul(g, ml_slice(g, seq, 0, off, n_t[t]), r));
    l_seq = l_seq ? ml_add(g, l_seq, d) : d;
    for (int64_t k = 0; k < n_t[t] * H; k++) CHECK_NEAR(seq->value.data[off * H + k], hs[t]->value.data[k], 1e-5);
  }
  CHECK_NEAR(l_seq->value.data[0], l_cells->value.data[0], 1e-5);
  ml_node *g1[2], *g2[2];
  CHECK_OK(ml_grad(g, &l_cells, 1, NULL, in, 2, false, g1));
  CHECK_OK(ml_grad(g, &l_seq, 1, NULL, in, 2, false, g2));
  for (int j = 0; j < 2; j++)
    for (int64_t k = 0; k < g1[j]->value.numel; k++) CHECK_NEAR(g2[j]->value.data[k], g1[j]->value.data[k], 1e-5);
  /* gathered input rows: the same as the op on ml_embedding's rows, values and gradients */
  {
    const int64_t V = 7;
    ml_node *tab = ml_new(g, 2, (int64_t[]){V, 4 * H});
    ml_test_fill(tab->value.data, tab->value.numel, 63, -1.5f, 1.5f);
    tab = ml_leaf(g, tab->value, true);
    int32_t *rows = ml_arena_alloc(ar, (size_t)N * sizeof(int32_t));
    for (int64_t r = 0; r < N; r++) rows[r] = (int32_t)((r * 5 + 3) % V);
    ml_node *ga = ml_lstm_seq_gather(g, tab, rows, w, nt32, T);
    ml_node *ref = ml_lstm_seq(g, ml_embedding(g, tab, rows, N), w, nt32, T);
    CHECK(ga && ref);
    if (ga && ref) {
      CHECK(!memcmp(ga->value.data, ref->value.data, (size_t)(N * H) * sizeof(float)));
      ml_node *lg = weighted(g, ga), *lr = weighted(g, ref), *tw[2] = {tab, w}, *ggr[2], *rgr[2];
      CHECK_OK(ml_grad(g, &lg, 1, NULL, tw, 2, false, ggr));
      CHECK_OK(ml_grad(g, &lr, 1, NULL, tw, 2, false, rgr));
      for (int j = 0; j < 2; j++)
        for (int64_t k = 0; k < ggr[j]->value.numel; k++) CHECK_NEAR(ggr[j]->value.data[k], rgr[j]->value.data[k], 1e-5);
    }
    rows[0] = (int32_t)V; /* an id outside the table */
    ml_arena *ar2 = ml_arena_new(0, NULL);
    ml_graph *gb = ml_graph_new(ar2);
    ml_node *t2 = ml_leaf(gb, tab->value, false), *w2 = ml_leaf(gb, w->value, false);
    CHECK(ml_lstm_seq_gather(gb, t2, rows, w2, nt32, T) == NULL && ml_graph_status(gb) == ML_ERR_ARG);
    ml_arena_free(ar2);
  }
  /* inference (no input needs a gradient: nothing saved for a backward) gives the same outputs */
  ml_node *xc = ml_leaf(g, x->value, false), *wc = ml_leaf(g, w->value, false);
  ml_node *inf = ml_lstm_seq(g, xc, wc, nt32, T);
  CHECK(inf && !inf->requires_grad);
  if (inf) CHECK(!memcmp(inf->value.data, seq->value.data, (size_t)(N * H) * sizeof(float)));
  ml_arena_free(ar);
}
