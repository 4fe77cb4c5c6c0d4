/* The learned selection policy (BOBCAT): a small network over a student's answers and the
 * student model's predictions, trained by policy gradient through the student model's
 * adaptation to the picked answers (see practice.h for the model and the estimator). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/io.h"
#include "metalearn/optim.h"
#include "apps/practice/internal.h"

enum { NF = 2, MAX_HIDDEN = 256 }; /* candidate features: information 4p(1-p), 2p - 1 */

/* parameter tensors, in block order */
enum { P_INFO, P_BIAS, P_EMB, P_RIGHT, P_WRONG, P_STATE, P_STUDENT, P_LOGSD, P_COUNT };
static const char *pnames[P_COUNT] = {"info_weight", "item_bias",  "item_emb",           "state_right",
                                      "state_wrong", "state_bias", "student_difficulty", "student_ability_logsd"};

struct ml_practice_selector {
  int64_t n_items, hidden, best_epoch;
  bool joint; /* the 1PL's difficulties and ability prior are learned with it (student_*) */
  double valid_score;
  ml_params *params;
};

/* The tensors inside a block with the parameter layout (the values, or a gradient slot). */
typedef struct {
  float *a, *c, *e, *ur, *uw, *b;
  float *sb;  /* the jointly trained 1PL difficulties, NULL when not joint */
  float *lsd; /* and the log sd of its ability prior */
} sel_view;

static sel_view view_at(const ml_practice_selector *s, float *base) {
  const ml_param *it = s->params->items;
  sel_view v = {base + it[P_INFO].offset,  base + it[P_BIAS].offset,  base + it[P_EMB].offset,
                base + it[P_RIGHT].offset, base + it[P_WRONG].offset, base + it[P_STATE].offset,
                s->joint ? base + it[P_STUDENT].offset : NULL, s->joint ? base + it[P_LOGSD].offset : NULL};
  return v;
}

static ml_status selector_new(int64_t J, int64_t H, bool joint, ml_practice_selector **out) {
  *out = NULL;
  if (J < 1 || H < 1 || H > MAX_HIDDEN) return ml_error(ML_ERR_ARG, "selector: %lld exercises, hidden %lld (1..%d)", (long long)J, (long long)H, MAX_HIDDEN);
  ml_practice_selector *s = calloc(1, sizeof *s);
  if (!s || !(s->params = ml_params_new())) {
    free(s);
    return ml_error(ML_ERR_NOMEM, "selector: out of memory");
  }
  s->n_items = J, s->hidden = H, s->valid_score = NAN, s->joint = joint;
  const int64_t shapes[P_COUNT][2] = {{NF, 0}, {J, 0}, {J, H}, {J, H}, {J, H}, {H, 0}, {J, 0}, {1, 0}};
  ml_status st = ML_OK;
  for (int k = 0; k < (joint ? P_COUNT : P_STUDENT) && !st; k++) st = ml_params_add(s->params, pnames[k], shapes[k][1] ? 2 : 1, shapes[k]);
  if (!st) st = ml_params_finalize(s->params);
  if (st) {
    ml_practice_selector_free(s);
    return st;
  }
  *out = s;
  return ML_OK;
}

void ml_practice_selector_free(ml_practice_selector *s) {
  if (!s) return;
  ml_params_free(s->params);
  free(s);
}

int64_t ml_practice_selector_n_items(const ml_practice_selector *s) { return s->n_items; }
bool ml_practice_selector_joint(const ml_practice_selector *s) { return s->joint; }

ml_status ml_practice_selector_student(const ml_practice_selector *s, const ml_student_model *base,
                                       ml_student_model **out) {
  *out = NULL;
  if (!s->joint) return ML_OK;
  if (ml_student_model_config(base)->kind != ML_STUDENT_IRT1 || ml_student_model_n_items(base) != s->n_items)
    return ml_error(ML_ERR_ARG, "selector: trained jointly with a 1PL of %lld exercises; the student model is not one",
                    (long long)s->n_items);
  sel_view v = view_at(s, s->params->data);
  return ml_student_model_with_difficulties(base, v.sb, expf(v.lsd[0]), out);
}

/* Every exercise of answered and cand (n) within [0, J). */
static ml_status check_items(int64_t J, const ml_student_log *answered, const int32_t *cand, int64_t n) {
  for (int64_t i = 0; i < answered->n + n; i++) {
    int32_t e = i < answered->n ? answered->item[i] : cand[i - answered->n];
    if (e < 0 || e >= J) return ml_error(ML_ERR_ARG, "exercise %d outside the %lld exercises", e, (long long)J);
  }
  return ML_OK;
}

/* grad += w d NLL / d b, grad_lsd += w d NLL / d log sd; p (held->n floats, may be NULL) gets the
 * held-out predictions. */
static void outer_1pl(const float *b, float lsd, const ml_student_log *support, const ml_student_log *held, float w,
                      float *grad, float *grad_lsd, float *p, double *nll) {
  const double prec = exp(-2.0 * lsd);
  float th = ml_irt_ability(NULL, b, (float)exp(lsd), support);
  /* d NLL / d b directly and through the ability: the MAP condition -prec th + sum (y_i - p_i) = 0
   * gives d th / d b_i = p_i (1 - p_i) / den and d th / d prec = -th / den, den = prec + sum p (1 - p)
   * (implicit differentiation); prec = exp(-2 log sd) */
  double gth = 0, den = prec, s = 0, H = held->n ? (double)held->n : 1;
  for (int64_t h = 0; h < held->n; h++) {
    float ph = 1.0f / (1.0f + expf(-(th - b[held->item[h]])));
    if (p) p[h] = ph;
    double d = ((double)ph - held->correct[h]) / H, q = ph < 1e-6f ? 1e-6 : ph > 1 - 1e-6f ? 1 - 1e-6 : ph;
    s -= held->correct[h] ? log(q) : log(1 - q);
    gth += d;
    if (grad) grad[held->item[h]] -= (float)(w * d);
  }
  *nll = s / H;
  if (!grad && !grad_lsd) return;
  for (int64_t i = 0; i < support->n; i++) {
    float pi = 1.0f / (1.0f + expf(-(th - b[support->item[i]])));
    den += (double)pi * (1 - pi);
  }
  for (int64_t i = 0; grad && i < support->n; i++) {
    float pi = 1.0f / (1.0f + expf(-(th - b[support->item[i]])));
    grad[support->item[i]] += (float)(w * gth * (double)pi * (1 - pi) / den);
  }
  if (grad_lsd) *grad_lsd += (float)(w * gth * (-(double)th / den) * (-2.0 * prec));
}

ml_status ml_practice_1pl_outer(const float *b, int64_t n_items, float ability_logsd, const ml_student_log *support,
                                const ml_student_log *held, float *grad, float *grad_logsd, double *nll) {
  ml_status st = check_items(n_items, support, held->item, held->n);
  if (st) return st;
  if (!isfinite(ability_logsd) || fabsf(ability_logsd) > 10) return ml_error(ML_ERR_ARG, "1pl: ability log sd %g", ability_logsd);
  outer_1pl(b, ability_logsd, support, held, 1.0f, grad, grad_logsd, NULL, nll);
  return ML_OK;
}

int64_t ml_practice_selector_best_epoch(const ml_practice_selector *s) { return s->best_epoch; }
double ml_practice_selector_valid_score(const ml_practice_selector *s) { return s->valid_score; }

/* h = tanh(b + sum U_right[i] (answered right) + sum U_wrong[i] (answered wrong)) */
static void state_of(const ml_practice_selector *s, const sel_view *v, const int32_t *item, const uint8_t *y, int64_t n,
                     float *h) {
  int64_t H = s->hidden;
  for (int64_t k = 0; k < H; k++) h[k] = v->b[k];
  for (int64_t i = 0; i < n; i++) {
    const float *u = (y[i] ? v->ur : v->uw) + (int64_t)item[i] * H;
    for (int64_t k = 0; k < H; k++) h[k] += u[k];
  }
  for (int64_t k = 0; k < H; k++) h[k] = tanhf(h[k]);
}

static float score_of(const ml_practice_selector *s, const sel_view *v, const float *h, int32_t j, float p) {
  const float *e = v->e + (int64_t)j * s->hidden;
  float z = v->a[0] * 4 * p * (1 - p) + v->a[1] * (2 * p - 1) + v->c[j];
  for (int64_t k = 0; k < s->hidden; k++) z += e[k] * h[k];
  return z;
}


ml_status ml_practice_selector_scores(const ml_practice_selector *s, const ml_student_log *answered, const int32_t *cand,
                                      const float *p, int64_t n, float *score) {
  ml_status st = check_items(s->n_items, answered, cand, n);
  if (st) return st;
  float h[MAX_HIDDEN];
  sel_view v = view_at(s, s->params->data);
  state_of(s, &v, answered->item, answered->correct, answered->n, h);
  for (int64_t i = 0; i < n; i++) score[i] = score_of(s, &v, h, cand[i], p[i]);
  return ML_OK;
}

/* softmax of the scores of n candidates into pi; the state h of the answered ones */
static void policy_probs(const ml_practice_selector *s, const sel_view *v, const float *h, const int32_t *cand,
                         const float *p, int64_t n, float *pi) {
  float mx = -INFINITY;
  for (int64_t k = 0; k < n; k++) {
    pi[k] = score_of(s, v, h, cand[k], p[k]);
    if (pi[k] > mx) mx = pi[k];
  }
  double z = 0;
  for (int64_t k = 0; k < n; k++) z += (pi[k] = expf(pi[k] - mx));
  for (int64_t k = 0; k < n; k++) pi[k] = (float)(pi[k] / z);
}

/* g += w * d log pi(pick) / d params, for the state h of the t answers (ans_item, ans_y) and the
 * probabilities pi of the candidates; dh is H floats of scratch. */
static void logpi_backward(const ml_practice_selector *s, const sel_view *v, sel_view *g, const float *h,
                           const int32_t *cand, const float *p, const float *pi, int64_t n, int64_t pick, float w,
                           const int32_t *ans_item, const uint8_t *ans_y, int64_t t, float *dh) {
  const int64_t Hd = s->hidden;
  for (int64_t q = 0; q < Hd; q++) dh[q] = 0;
  for (int64_t k = 0; k < n; k++) {
    float ds = w * ((k == pick ? 1.0f : 0.0f) - pi[k]); /* d log softmax */
    float pk = p[k];
    g->a[0] += ds * 4 * pk * (1 - pk), g->a[1] += ds * (2 * pk - 1);
    g->c[cand[k]] += ds;
    float *ge = g->e + (int64_t)cand[k] * Hd;
    const float *e = v->e + (int64_t)cand[k] * Hd;
    for (int64_t q = 0; q < Hd; q++) ge[q] += ds * h[q], dh[q] += ds * e[q];
  }
  for (int64_t q = 0; q < Hd; q++) dh[q] *= 1 - h[q] * h[q]; /* through tanh */
  for (int64_t q = 0; q < Hd; q++) g->b[q] += dh[q];
  for (int64_t u = 0; u < t; u++) {
    float *gu = (ans_y[u] ? g->ur : g->uw) + (int64_t)ans_item[u] * Hd;
    for (int64_t q = 0; q < Hd; q++) gu[q] += dh[q];
  }
}


ml_params *ml_practice_selector_params(ml_practice_selector *s) { return s->params; }

ml_status ml_practice_selector_log_prob(const ml_practice_selector *s, const ml_student_log *answered,
                                        const int32_t *cand, const float *p, int64_t n, int64_t pick, float *grad,
                                        double *out) {
  if (n < 1 || pick < 0 || pick >= n) return ml_error(ML_ERR_ARG, "selector: pick %lld of %lld candidates", (long long)pick, (long long)n);
  ml_status st = check_items(s->n_items, answered, cand, n);
  if (st) return st;
  float h[MAX_HIDDEN], dh[MAX_HIDDEN], *pi = malloc((size_t)n * sizeof *pi);
  if (!pi) return ml_error(ML_ERR_NOMEM, "selector: out of memory");
  sel_view v = view_at(s, s->params->data);
  state_of(s, &v, answered->item, answered->correct, answered->n, h);
  policy_probs(s, &v, h, cand, p, n, pi);
  *out = log((double)pi[pick]);
  if (grad) {
    sel_view g = view_at(s, grad);
    logpi_backward(s, &v, &g, h, cand, p, pi, n, pick, 1.0f, answered->item, answered->correct, answered->n, dh);
  }
  free(pi);
  return ML_OK;
}

ml_practice_selector_config ml_practice_selector_defaults(void) {
  ml_practice_selector_config c;
  memset(&c, 0, sizeof c);
  c.hidden = 16, c.epochs = 20, c.batch = 32, c.rollouts = 4, c.lr = 0.01f, c.info_init = 5.0f, c.seed = 1;
  c.student_l2 = 0.01f;
  return c;
}

/* ------------------------------------------------------------ training ---- */

typedef struct {
  const ml_practice_selector *s;
  const ml_student_model *m;
  const ml_answers *fa;
  const ml_practice_protocol_config *pc;
  const ml_practice_selector_config *c;
  const int64_t *batch; /* student ids of this batch */
  int64_t epoch, maxn;
  float *slots;   /* batch x numel gradient slots */
  double *ret;    /* batch: mean held-out log-likelihood over the picks and rollouts */
  ml_arena **arenas;
  ml_status *status;
} train_job;

static double loglik(const float *p, const uint8_t *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    double q = p[i] < 1e-6f ? 1e-6 : p[i] > 1 - 1e-6f ? 1 - 1e-6 : p[i];
    s += y[i] ? log(q) : log(1 - q);
  }
  return n ? s / (double)n : 0;
}

/* One training student: R rollouts of sampled picks on one pool / held-out split, then the
 * REINFORCE gradient of the negative return into the student's gradient slot. */
static void train_one(int64_t bi, int thread, void *vj) {
  train_job *J = vj;
  const ml_practice_selector *S = J->s;
  const int64_t sid = J->batch[bi], off = J->fa->offsets[sid], n = ml_answers_len(J->fa, sid);
  const int64_t P = ml_practice_pool_size(J->pc, n), Hn = n - P, steps = J->maxn < P ? J->maxn : P, R = J->c->rollouts;
  const int64_t Hd = S->hidden;
  const int32_t *item = J->fa->item + off, *skill = J->fa->skill + off;
  const uint8_t *y = J->fa->correct + off;
  /* per rollout and step: the remaining pool (items), their predictions and probabilities, the pick,
   * the state h; per rollout: the picks; returns */
  int64_t cells = R * steps * P;
  int64_t *idx = malloc((size_t)n * sizeof *idx), *avail = malloc((size_t)P * sizeof *avail);
  int32_t *c_item = malloc((size_t)cells * sizeof *c_item), *pk_item = malloc((size_t)(R * steps) * sizeof *pk_item);
  int32_t *q_item = malloc((size_t)(P + Hn) * sizeof *q_item), *q_skill = malloc((size_t)(P + Hn) * sizeof *q_skill);
  int32_t *pk_skill = malloc((size_t)(R * steps) * sizeof *pk_skill);
  uint8_t *pk_y = malloc((size_t)(R * steps)), *yh = malloc((size_t)(Hn ? Hn : 1));
  float *c_p = malloc((size_t)cells * sizeof *c_p), *c_pi = malloc((size_t)cells * sizeof *c_pi);
  float *hs = malloc((size_t)(R * steps * Hd) * sizeof *hs), *ph = malloc((size_t)(Hn ? Hn : 1) * sizeof *ph);
  int64_t *c_n = malloc((size_t)(R * steps) * sizeof *c_n), *c_k = malloc((size_t)(R * steps) * sizeof *c_k);
  double *G = malloc((size_t)(R * steps) * sizeof *G);
  float *dh = malloc((size_t)Hd * sizeof *dh);
  ml_status st = ML_OK;
  if (!idx || !avail || !c_item || !pk_item || !q_item || !q_skill || !pk_skill || !pk_y || !yh || !c_p || !c_pi || !hs ||
      !ph || !c_n || !c_k || !G || !dh) {
    st = ml_error(ML_ERR_NOMEM, "selector: out of memory");
    goto done;
  }
  ml_rng split;
  ml_rng_init(&split, ml_rng_key(J->c->seed, (uint64_t)J->epoch, (uint64_t)sid), 7);
  for (int64_t k = 0; k < n; k++) idx[k] = k;
  ml_rng_shuffle(&split, idx, n);
  for (int64_t h = 0; h < Hn; h++) yh[h] = y[idx[P + h]];
  sel_view v = view_at(S, S->params->data);
  float *slot = J->slots + bi * S->params->numel;
  sel_view g = view_at(S, slot);
  for (int64_t r = 0; r < R; r++) {
    ml_rng pr;
    ml_rng_init(&pr, ml_rng_key(J->c->seed, (uint64_t)J->epoch, (uint64_t)sid), 8 + (uint64_t)r);
    memcpy(avail, idx, (size_t)P * sizeof *avail);
    int64_t na = P;
    int32_t *si = pk_item + r * steps, *ss = pk_skill + r * steps;
    uint8_t *sy = pk_y + r * steps;
    for (int64_t t = 0; t < steps; t++) {
      int64_t rs = r * steps + t;
      int32_t *ci = c_item + rs * P;
      float *cp = c_p + rs * P, *cpi = c_pi + rs * P, *h = hs + rs * Hd;
      for (int64_t k = 0; k < na; k++) q_item[k] = item[avail[k]], q_skill[k] = skill[avail[k]], ci[k] = item[avail[k]];
      ml_student_log sup = {si, ss, sy, t}, qry = {q_item, q_skill, NULL, na};
      if (v.sb) { /* joint: the 1PL with the difficulties being learned */
        float th = ml_irt_ability(NULL, v.sb, expf(v.lsd[0]), &sup);
        for (int64_t k = 0; k < na; k++) cp[k] = 1.0f / (1.0f + expf(-(th - v.sb[q_item[k]])));
      } else if ((st = ml_student_model_predict(J->m, &sup, &qry, J->arenas[thread], cp))) {
        goto done;
      }
      state_of(S, &v, si, sy, t, h);
      policy_probs(S, &v, h, ci, cp, na, cpi);
      double u = ml_rng_uniform(&pr), acc = 0;
      int64_t pick = na - 1;
      for (int64_t k = 0; k < na; k++)
        if ((acc += cpi[k]) > u) {
          pick = k;
          break;
        }
      c_n[rs] = na, c_k[rs] = pick;
      int64_t e = avail[pick];
      si[t] = item[e], ss[t] = skill[e], sy[t] = y[e];
      memmove(avail + pick, avail + pick + 1, (size_t)(na - pick - 1) * sizeof *avail);
      na--;
      for (int64_t h2 = 0; h2 < Hn; h2++) q_item[h2] = item[idx[P + h2]], q_skill[h2] = skill[idx[P + h2]];
      ml_student_log sup2 = {si, ss, sy, t + 1}, held = {q_item, q_skill, yh, Hn};
      if (!v.sb) {
        if ((st = ml_student_model_predict(J->m, &sup2, &held, J->arenas[thread], ph))) goto done;
        G[rs] = loglik(ph, yh, Hn);
      } else { /* inner level: the 1PL adapts on the t + 1 picks; outer: held-out NLL's gradient */
        double nll;
        outer_1pl(v.sb, v.lsd[0], &sup2, &held, 1.0f / (float)R, g.sb, g.lsd, ph, &nll);
        G[rs] = -nll;
      }
    }
    for (int64_t t = steps - 2; t >= 0; t--) G[r * steps + t] += G[r * steps + t + 1]; /* returns */
  }
  /* gradient of -(1/R) sum_r sum_t A_rt log pi(pick_rt), A = G - mean of the other rollouts' G */
  double rsum = 0;
  for (int64_t r = 0; r < R; r++) {
    rsum += G[r * steps] / (double)steps;
    for (int64_t t = 0; t < steps; t++) {
      int64_t rs = r * steps + t;
      double others = 0;
      for (int64_t r2 = 0; r2 < R; r2++)
        if (r2 != r) others += G[r2 * steps + t];
      float A = (float)(G[rs] - others / (double)(R - 1)) / (float)R;
      const int32_t *ci = c_item + rs * P;
      const float *cp = c_p + rs * P, *cpi = c_pi + rs * P, *h = hs + rs * Hd;
      logpi_backward(S, &v, &g, h, ci, cp, cpi, c_n[rs], c_k[rs], -A, pk_item + r * steps, pk_y + r * steps, t, dh);
    }
  }
  J->ret[bi] = rsum / (double)R;
done:
  J->status[bi] = st;
  free(idx), free(avail), free(c_item), free(pk_item), free(q_item), free(q_skill), free(pk_skill), free(pk_y), free(yh);
  free(c_p), free(c_pi), free(hs), free(ph), free(c_n), free(c_k), free(G), free(dh);
}

static double valid_score(const ml_student_model *m, const ml_answers *valid, const ml_practice_protocol_config *pc,
                          const ml_practice_selector *s, ml_status *st) {
  ml_practice_protocol_config vc = *pc;
  vc.selector = s, vc.resamples = pc->resamples > 5 ? pc->resamples : 5; /* small valid sets: many splits */
  ml_practice_variant v = {ML_PRACTICE_LEARNED, false, false};
  ml_practice_cell cells[8];
  ml_student_model *joint = NULL;
  if ((*st = ml_practice_selector_student(s, m, &joint))) return NAN;
  vc.selector_model = joint;
  *st = ml_practice_protocol(m, valid, &vc, &v, 1, NULL, cells);
  ml_student_model_free(joint);
  if (*st) return NAN;
  double a = 0;
  for (int i = 0; i < vc.n_ns; i++) a += cells[i].auc;
  return a / vc.n_ns;
}

ml_status ml_practice_selector_train(const ml_student_model *m, const ml_answers *train, const ml_answers *valid,
                                     const ml_practice_protocol_config *pc, const ml_practice_selector_config *c,
                                     ml_practice_selector **out) {
  *out = NULL;
  if (c->rollouts < 2 || c->batch < 1 || c->epochs < 0 || !(c->lr > 0))
    return ml_error(ML_ERR_ARG, "selector: rollouts >= 2, batch >= 1, epochs >= 0 and lr > 0 are required");
  int64_t maxn = 0;
  for (int i = 0; i < pc->n_ns; i++) maxn = pc->ns[i] > maxn ? pc->ns[i] : maxn;
  if (maxn < 1) return ml_error(ML_ERR_ARG, "selector: no number of picks");
  if (c->joint && ml_student_model_config(m)->kind != ML_STUDENT_IRT1)
    return ml_error(ML_ERR_ARG, "selector: joint training needs the irt1 student model (it learns the 1PL's difficulties)");
  ml_practice_selector *s = NULL;
  ml_status st = selector_new(ml_student_model_n_items(m), c->hidden, c->joint, &s);
  if (st) return st;
  ml_answers fa;
  memset(&fa, 0, sizeof fa);
  int64_t T = c->threads > 0 ? c->threads : ml_num_threads(), B = c->batch, NP = s->params->numel;
  int64_t *kept = NULL, *order = NULL;
  float *slots = NULL, *best = NULL, *bfit = NULL;
  double *ret = NULL;
  ml_arena **arenas = NULL;
  ml_status *status = NULL;
  ml_optim *opt = NULL;
  if ((st = ml_practice_first_attempts(train, &fa))) goto out;
  kept = malloc((size_t)(fa.n_students + 1) * sizeof *kept), order = malloc((size_t)(fa.n_students + 1) * sizeof *order);
  slots = malloc((size_t)(B * NP) * sizeof *slots), best = malloc((size_t)NP * sizeof *best);
  bfit = malloc((size_t)s->n_items * sizeof *bfit);
  ret = malloc((size_t)B * sizeof *ret), status = malloc((size_t)B * sizeof *status);
  arenas = calloc((size_t)T, sizeof *arenas);
  ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAM);
  oc.lr = c->lr;
  opt = ml_optim_new(&oc, NP);
  if (!kept || !order || !slots || !best || !bfit || !ret || !status || !arenas || !opt) {
    st = ml_error(ML_ERR_NOMEM, "selector: out of memory");
    goto out;
  }
  for (int64_t t = 0; t < T; t++)
    if (!(arenas[t] = ml_arena_new(0, NULL))) {
      st = ml_error(ML_ERR_NOMEM, "selector: out of memory");
      goto out;
    }
  int64_t K = ml__practice_keep(&fa, pc, kept, NULL);
  if (K == 0) {
    st = ml_error(ML_ERR_ARG, "selector: no training student has %lld distinct exercises", (long long)pc->min_items);
    goto out;
  }
  /* start as maximum information: score = info_init * 4 p (1 - p); e = 0 so that the state term
   * is zero until e learns; U small and random so that states differ */
  sel_view v = view_at(s, s->params->data);
  v.a[0] = c->info_init;
  ml_rng init;
  ml_rng_init(&init, c->seed, 99);
  for (int64_t i = 0; i < s->n_items * s->hidden; i++)
    v.ur[i] = 0.1f * ml_rng_normal(&init), v.uw[i] = 0.1f * ml_rng_normal(&init);
  ml_student_model_difficulties(m, bfit); /* joint training starts from the fitted 1PL */
  if (v.sb) memcpy(v.sb, bfit, (size_t)s->n_items * sizeof *bfit);
  if (v.lsd) v.lsd[0] = logf(ml_student_model_config(m)->ability_sd); /* and from its ability prior */
  bool use_valid = valid && valid->n_students > 0;
  memcpy(best, s->params->data, (size_t)NP * sizeof *best);
  if (use_valid) {
    s->valid_score = valid_score(m, valid, pc, s, &st);
    if (st) goto out;
    if (c->verbose) fprintf(stderr, "selector: epoch 0 (maximum information) valid AUC %.4f\n", s->valid_score);
  }
  int64_t per_epoch = c->max_students > 0 && c->max_students < K ? c->max_students : K;
  for (int64_t ep = 1; ep <= c->epochs; ep++) {
    double t0 = ml_now(), rsum = 0;
    ml_rng ord;
    ml_rng_init(&ord, ml_rng_key(c->seed, (uint64_t)ep, 0), 5);
    memcpy(order, kept, (size_t)K * sizeof *order);
    ml_rng_shuffle(&ord, order, K);
    for (int64_t b0 = 0; b0 < per_epoch; b0 += B) {
      int64_t nb = per_epoch - b0 < B ? per_epoch - b0 : B;
      memset(slots, 0, (size_t)(nb * NP) * sizeof *slots);
      train_job J = {s, m, &fa, pc, c, order + b0, ep, maxn, slots, ret, arenas, status};
      ml_parallel_for(nb, (int)T, train_one, &J);
      for (int64_t i = 0; i < nb && !st; i++) st = status[i];
      if (st) goto out;
      float *g = s->params->grad;
      memset(g, 0, (size_t)NP * sizeof *g);
      for (int64_t i = 0; i < nb; i++) { /* in batch order: the same sums at any thread count */
        const float *sl = slots + i * NP;
        for (int64_t k = 0; k < NP; k++) g[k] += sl[k];
        rsum += ret[i];
      }
      for (int64_t k = 0; k < NP; k++) g[k] /= (float)nb;
      if (v.sb) { /* L2 pull towards the fitted difficulties: rare exercises move only on evidence */
        float *gb = view_at(s, g).sb;
        for (int64_t j = 0; j < s->n_items; j++) gb[j] += c->student_l2 * (v.sb[j] - bfit[j]);
      }
      if ((st = ml_optim_step_params(opt, s->params))) goto out;
    }
    double vs = NAN;
    if (use_valid) {
      vs = valid_score(m, valid, pc, s, &st);
      if (st) goto out;
      if (vs > s->valid_score) s->valid_score = vs, s->best_epoch = ep, memcpy(best, s->params->data, (size_t)NP * sizeof *best);
    } else {
      s->best_epoch = ep;
    }
    if (c->verbose)
      fprintf(stderr, "selector: epoch %lld train held-out log-lik %.4f, valid AUC %.4f (%.1f s)\n", (long long)ep,
              rsum / (double)per_epoch, vs, ml_now() - t0);
  }
  if (use_valid) memcpy(s->params->data, best, (size_t)NP * sizeof *best);
out:
  for (int64_t t = 0; arenas && t < T; t++) ml_arena_free(arenas[t]);
  free(arenas), free(kept), free(order), free(slots), free(best), free(bfit), free(ret), free(status);
  ml_optim_free(opt);
  ml_answers_free(&fa);
  if (st) {
    ml_practice_selector_free(s);
    return st;
  }
  *out = s;
  return ML_OK;
}

/* ---------------------------------------------------------- save / load ---- */

ml_status ml_practice_selector_save(const ml_practice_selector *s, const char *path) {
  char be[32], vs[32];
  snprintf(be, sizeof be, "%lld", (long long)s->best_epoch);
  snprintf(vs, sizeof vs, "%.6f", s->valid_score);
  ml_kv meta[] = {{"kind", "selector"}, {"best_epoch", be}, {"valid_auc", vs}};
  return ml_checkpoint_save(path, s->params, NULL, meta, 3);
}

ml_status ml_practice_selector_load(const char *path, ml_practice_selector **out) {
  *out = NULL;
  ml_safetensors *f = NULL;
  ml_status st = ml_safetensors_open(path, &f);
  if (st) return st;
  const char *kind = ml_safetensors_meta(f, "kind");
  int64_t ie = ml_safetensors_find(f, "item_emb");
  ml_tensor sh = ie >= 0 ? ml_safetensors_shape(f, ie) : (ml_tensor){0};
  if (!kind || strcmp(kind, "selector") || ie < 0 || sh.ndim != 2) {
    ml_safetensors_close(f);
    return ml_error(ML_ERR_FORMAT, "%s: not a metalearn selection policy", path);
  }
  int64_t J = sh.shape[0], H = sh.shape[1];
  bool joint = ml_safetensors_find(f, "student_difficulty") >= 0;
  /* copied: the metadata lives in f */
  const char *be_s = ml_safetensors_meta(f, "best_epoch"), *vs_s = ml_safetensors_meta(f, "valid_auc");
  long long be = be_s ? strtoll(be_s, NULL, 10) : 0;
  double vs = vs_s ? strtod(vs_s, NULL) : NAN;
  ml_safetensors_close(f);
  ml_practice_selector *s = NULL;
  if ((st = selector_new(J, H, joint, &s))) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", ml_last_error());
    return ml_error(st, "%s: %s", path, msg);
  }
  if ((st = ml_checkpoint_load(path, s->params, NULL))) {
    ml_practice_selector_free(s);
    return st;
  }
  for (int64_t i = 0; i < s->params->numel; i++)
    if (!isfinite(s->params->data[i])) {
      ml_practice_selector_free(s);
      return ml_error(ML_ERR_FORMAT, "%s: non-finite parameter", path);
    }
  s->best_epoch = be, s->valid_score = vs;
  *out = s;
  return ML_OK;
}
