/* The BOBCAT protocol: per student, a random pool / held-out split of the first attempts; a
 * policy picks n exercises from the pool one at a time, seeing each answer; the model adapted on
 * the picks predicts the held-out answers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apps/practice/internal.h"

ml_practice_protocol_config ml_practice_protocol_defaults(void) {
  ml_practice_protocol_config c;
  memset(&c, 0, sizeof c);
  c.resamples = 5, c.pool_frac = 0.8f, c.min_items = 10, c.target = 0.7f;
  c.ns[0] = 1, c.ns[1] = 3, c.ns[2] = 5, c.ns[3] = 10, c.n_ns = 4;
  c.seed = 1;
  return c;
}

typedef struct {
  const ml_student_model *m;
  const ml_answers *fa; /* first attempts */
  const ml_practice_protocol_config *cfg;
  const int64_t *kept, *hoff; /* kept students, held-out offsets (n_kept + 1) */
  int64_t n_kept, maxn, r;
  ml_practice_variant v;
  const ml_practice_calib_steps *cal;
  float *pred;      /* n_ns x n_heldout */
  double *stats;    /* n_kept x n_ns x 4: sum |p' - target|, sum y, sum p', picks */
  float *pick_p;    /* n_kept x maxn (or NULL): the picks' calibrated predictions */
  uint8_t *pick_y;
  ml_arena **arenas;
  ml_status *status;
} job_t;

int64_t ml_practice_pool_size(const ml_practice_protocol_config *c, int64_t n) {
  int64_t P = (int64_t)floor((double)c->pool_frac * (double)n + 0.5);
  return P < 1 ? 1 : P > n - 1 ? n - 1 : P;
}

static void one_student(int64_t i, int thread, void *vj) {
  job_t *J = vj;
  const ml_practice_protocol_config *c = J->cfg;
  /* the learned policy brings its own student model when trained jointly with it */
  const ml_student_model *sm = J->v.policy == ML_PRACTICE_LEARNED && c->selector_model ? c->selector_model : J->m;
  int64_t s = J->kept[i], off = J->fa->offsets[s], n = ml_answers_len(J->fa, s), P = ml_practice_pool_size(c, n);
  const int32_t *item = J->fa->item + off, *skill = J->fa->skill + off;
  const uint8_t *y = J->fa->correct + off;
  int64_t *idx = malloc((size_t)n * sizeof *idx);
  int32_t *buf_i = malloc((size_t)n * 4 * sizeof *buf_i); /* support items, skills; query items, skills */
  uint8_t *sup_y = malloc((size_t)n);
  float *p = malloc((size_t)n * sizeof *p), *score = malloc((size_t)n * sizeof *score);
  if (!idx || !buf_i || !sup_y || !p || !score) {
    J->status[i] = ml_error(ML_ERR_NOMEM, "practice: out of memory");
    goto done;
  }
  ml_rng split, prng;
  ml_rng_init(&split, ml_rng_key(c->seed, (uint64_t)J->r, (uint64_t)s), 0);
  ml_rng_init(&prng, ml_rng_key(c->seed, (uint64_t)J->r, (uint64_t)s), 1);
  for (int64_t k = 0; k < n; k++) idx[k] = k;
  ml_rng_shuffle(&split, idx, n);
  int64_t *avail = idx; /* pool = idx[0 .. P), shrinking as exercises are picked */
  int64_t n_avail = P;
  int32_t *s_item = buf_i, *s_skill = buf_i + n, *q_item = buf_i + 2 * n, *q_skill = buf_i + 3 * n;
  int64_t steps = J->maxn < P ? J->maxn : P;
  double *st4 = J->stats + i * c->n_ns * 4;
  double expected = 0; /* sum of the picks' calibrated predictions */
  for (int64_t t = 0; t < steps; t++) {
    for (int64_t k = 0; k < n_avail; k++) q_item[k] = item[avail[k]], q_skill[k] = skill[avail[k]];
    ml_student_log sup = {s_item, s_skill, sup_y, t}, qry = {q_item, q_skill, NULL, n_avail};
    ml_status st = ml_student_model_predict(sm, &sup, &qry, J->arenas[thread], p);
    if (st) {
      J->status[i] = st;
      goto done;
    }
    ml_practice_calib cal = J->v.calibrated ? ml_practice_calib_at(J->cal, t) : ml_practice_calib_identity();
    float aim = J->v.balanced ? ml_practice_balanced_target(c->target, t, expected) : c->target;
    int64_t k = 0;
    if (J->v.policy == ML_PRACTICE_LEARNED) { /* greedy on the selection network's scores */
      ml_student_log answered = {s_item, s_skill, sup_y, t};
      if ((st = ml_practice_selector_scores(c->selector, &answered, q_item, p, n_avail, score))) {
        J->status[i] = st;
        goto done;
      }
      for (int64_t q = 1; q < n_avail; q++)
        if (score[q] > score[k]) k = q;
    } else {
      k = ml_practice_pick(J->v.policy, p, n_avail, aim, cal, &prng);
    }
    int64_t e = avail[k];
    float pc = ml_practice_calibrate(cal, p[k]);
    s_item[t] = item[e], s_skill[t] = skill[e], sup_y[t] = y[e];
    expected += pc;
    if (J->pick_p) J->pick_p[i * J->maxn + t] = pc, J->pick_y[i * J->maxn + t] = y[e];
    memmove(avail + k, avail + k + 1, (size_t)(n_avail - k - 1) * sizeof *avail);
    n_avail--;
    for (int ni = 0; ni < c->n_ns; ni++) {
      int64_t want = c->ns[ni] < P ? c->ns[ni] : P;
      if (t < want) {
        st4[ni * 4 + 0] += fabsf(pc - c->target), st4[ni * 4 + 1] += y[e], st4[ni * 4 + 2] += pc;
        st4[ni * 4 + 3] += 1;
      }
      if (want != t + 1 || !J->pred) continue;
      int64_t H = n - P;
      for (int64_t h = 0; h < H; h++) q_item[h] = item[idx[P + h]], q_skill[h] = skill[idx[P + h]];
      ml_student_log sup2 = {s_item, s_skill, sup_y, t + 1}, held = {q_item, q_skill, NULL, H};
      float *dst = J->pred + (int64_t)ni * J->hoff[J->n_kept] + J->hoff[i];
      if ((st = ml_student_model_predict(sm, &sup2, &held, J->arenas[thread], dst))) {
        J->status[i] = st;
        goto done;
      }
    }
    /* the pool (idx[0..P)) was compacted by the memmove; the held-out part idx[P..n) is intact
     * because avail only ever spans idx[0 .. n_avail) */
  }
done:
  free(idx), free(buf_i), free(sup_y), free(p), free(score);
}

int64_t ml__practice_keep(const ml_answers *fa, const ml_practice_protocol_config *c, int64_t *kept, int64_t *hoff) {
  int64_t k = 0, h = 0;
  if (hoff) hoff[0] = 0;
  for (int64_t s = 0; s < fa->n_students; s++) {
    int64_t n = ml_answers_len(fa, s);
    if (n < c->min_items || n < 2) continue;
    kept[k] = s;
    h += n - ml_practice_pool_size(c, n);
    if (hoff) hoff[k + 1] = h;
    k++;
  }
  return k;
}

static ml_status run(job_t *J, int threads) {
  int T = threads > 0 ? threads : ml_num_threads();
  ml_status st = ML_OK;
  J->arenas = calloc((size_t)T, sizeof *J->arenas);
  J->status = calloc((size_t)(J->n_kept ? J->n_kept : 1), sizeof *J->status);
  if (!J->arenas || !J->status) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
  for (int t = 0; !st && t < T; t++)
    if (!(J->arenas[t] = ml_arena_new(0, NULL))) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
  if (!st) {
    ml_parallel_for(J->n_kept, T, one_student, J);
    for (int64_t i = 0; i < J->n_kept && !st; i++) st = J->status[i];
  }
  for (int t = 0; J->arenas && t < T; t++) ml_arena_free(J->arenas[t]);
  free(J->arenas), free(J->status);
  J->arenas = NULL, J->status = NULL;
  return st;
}

static int64_t max_n(const ml_practice_protocol_config *c) {
  int64_t m = 0;
  for (int i = 0; i < c->n_ns; i++) m = c->ns[i] > m ? c->ns[i] : m;
  return m;
}

ml_status ml_practice_protocol(const ml_student_model *m, const ml_answers *test, const ml_practice_protocol_config *cfg,
                               const ml_practice_variant *variants, int n_variants, const ml_practice_calib_steps *cal,
                               ml_practice_cell *cells) {
  if (cfg->n_ns < 1 || cfg->n_ns > 8 || cfg->resamples < 1 || !(cfg->pool_frac > 0 && cfg->pool_frac < 1))
    return ml_error(ML_ERR_ARG, "practice protocol: bad configuration");
  for (int i = 0; i < cfg->n_ns; i++)
    if (cfg->ns[i] < 1) return ml_error(ML_ERR_ARG, "practice protocol: n = %lld", (long long)cfg->ns[i]);
  for (int v = 0; v < n_variants; v++) {
    if ((unsigned)variants[v].policy >= ML_PRACTICE_POLICY_COUNT)
      return ml_error(ML_ERR_ARG, "practice protocol: unknown policy %d", (int)variants[v].policy);
    if (variants[v].policy == ML_PRACTICE_LEARNED && !cfg->selector)
      return ml_error(ML_ERR_ARG, "practice protocol: the learned policy needs a selection network");
    if (variants[v].calibrated && !cal)
      return ml_error(ML_ERR_ARG, "practice protocol: a calibrated variant needs the calibration");
  }
  ml_answers fa;
  ml_status st = ml_practice_first_attempts(test, &fa);
  if (st) return st;
  int64_t S = fa.n_students, nn = cfg->n_ns, NC = (int64_t)n_variants * nn;
  int64_t *kept = malloc((size_t)(S ? S : 1) * sizeof *kept), *hoff = malloc((size_t)(S + 1) * sizeof *hoff);
  if (!kept || !hoff) {
    free(kept), free(hoff), ml_answers_free(&fa);
    return ml_error(ML_ERR_NOMEM, "practice: out of memory");
  }
  int64_t K = ml__practice_keep(&fa, cfg, kept, hoff), H = hoff[K];
  float *pred = malloc((size_t)(nn * (H ? H : 1)) * sizeof *pred);
  uint8_t *yh = malloc((size_t)(H ? H : 1));
  double *stats = malloc((size_t)(K ? K : 1) * (size_t)nn * 4 * sizeof *stats);
  double *aucs = calloc((size_t)(NC * cfg->resamples), sizeof *aucs), *accs = calloc((size_t)(NC * cfg->resamples), sizeof *accs);
  double *tsum = calloc((size_t)NC * 4, sizeof *tsum);
  if (K == 0) st = ml_error(ML_ERR_ARG, "practice protocol: no student has %lld distinct exercises", (long long)cfg->min_items);
  if (!st && (!pred || !yh || !stats || !aucs || !accs || !tsum)) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
  memset(cells, 0, sizeof *cells * (size_t)NC);
  for (int64_t r = 0; !st && r < cfg->resamples; r++) {
    /* held-out labels of this resample's split (the same for every variant) */
    for (int64_t i = 0; i < K; i++) {
      int64_t s = kept[i], n = ml_answers_len(&fa, s), P = ml_practice_pool_size(cfg, n);
      int64_t *idx = malloc((size_t)n * sizeof *idx);
      if (!idx) {
        st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
        break;
      }
      ml_rng split;
      ml_rng_init(&split, ml_rng_key(cfg->seed, (uint64_t)r, (uint64_t)s), 0);
      for (int64_t k = 0; k < n; k++) idx[k] = k;
      ml_rng_shuffle(&split, idx, n);
      for (int64_t h = 0; h < n - P; h++) yh[hoff[i] + h] = fa.correct[fa.offsets[s] + idx[P + h]];
      free(idx);
    }
    for (int v = 0; !st && v < n_variants; v++) {
      memset(stats, 0, (size_t)K * (size_t)nn * 4 * sizeof *stats);
      job_t J = {m, &fa, cfg, kept, hoff, K, max_n(cfg), r, variants[v], cal, pred, stats, NULL, NULL, NULL, NULL};
      double t0 = ml_now();
      if ((st = run(&J, cfg->threads))) break;
      double dt = ml_now() - t0;
      for (int64_t ni = 0; ni < nn; ni++) {
        ml_practice_cell *c = &cells[v * nn + ni];
        const float *pp = pred + ni * H;
        int64_t right = 0;
        for (int64_t h = 0; h < H; h++) right += (pp[h] >= 0.5f) == (yh[h] != 0);
        aucs[(v * nn + ni) * cfg->resamples + r] = ml_auc(pp, yh, H);
        accs[(v * nn + ni) * cfg->resamples + r] = (double)right / (double)H;
        for (int64_t i = 0; i < K; i++)
          for (int q = 0; q < 4; q++) tsum[(v * nn + ni) * 4 + q] += stats[(i * nn + ni) * 4 + q];
        c->seconds += dt / (double)nn;
        c->v = variants[v], c->n = cfg->ns[ni], c->students = K, c->heldout = H;
      }
    }
  }
  for (int64_t ci = 0; !st && ci < NC; ci++) {
    ml_practice_cell *c = &cells[ci];
    double sa = 0, sb = 0, qa = 0, qb = 0, R = (double)cfg->resamples;
    for (int64_t r = 0; r < cfg->resamples; r++) {
      sa += aucs[ci * cfg->resamples + r], sb += accs[ci * cfg->resamples + r];
      qa += aucs[ci * cfg->resamples + r] * aucs[ci * cfg->resamples + r];
      qb += accs[ci * cfg->resamples + r] * accs[ci * cfg->resamples + r];
    }
    c->auc = sa / R, c->acc = sb / R;
    c->auc_sd = R > 1 ? sqrt(fmax(0, (qa - sa * sa / R) / (R - 1))) : 0;
    c->acc_sd = R > 1 ? sqrt(fmax(0, (qb - sb * sb / R) / (R - 1))) : 0;
    double cnt = tsum[ci * 4 + 3];
    c->target_dist = cnt > 0 ? tsum[ci * 4 + 0] / cnt : NAN;
    c->picked_success = cnt > 0 ? tsum[ci * 4 + 1] / cnt : NAN;
    c->picked_pred = cnt > 0 ? tsum[ci * 4 + 2] / cnt : NAN;
  }
  free(kept), free(hoff), free(pred), free(yh), free(stats), free(aucs), free(accs), free(tsum);
  ml_answers_free(&fa);
  return st;
}

ml_status ml_practice_fit_target_calibration(const ml_student_model *m, const ml_answers *students,
                                             const ml_practice_protocol_config *cfg, int64_t max_students,
                                             ml_practice_calib_steps *out) {
  return ml_practice_fit_target_calibration_sets(&m, &students, 1, cfg, max_students, out);
}

ml_status ml_practice_fit_target_calibration_sets(const ml_student_model *const *models,
                                                  const ml_answers *const *students, int n_sets,
                                                  const ml_practice_protocol_config *cfg, int64_t max_students,
                                                  ml_practice_calib_steps *out) {
  enum { MAX_SETS = 16 };
  if (n_sets < 1 || n_sets > MAX_SETS) return ml_error(ML_ERR_ARG, "practice calibration: 1 to %d student sets", MAX_SETS);
  ml_answers fa[MAX_SETS];
  int64_t *kept[MAX_SETS], *hoff[MAX_SETS], K[MAX_SETS], base[MAX_SETS + 1];
  memset(fa, 0, sizeof fa), memset(kept, 0, sizeof kept), memset(hoff, 0, sizeof hoff);
  ml_status st = ML_OK;
  int64_t nn = cfg->n_ns, maxn = max_n(cfg), total = 0;
  base[0] = 0;
  for (int k = 0; k < n_sets; k++) {
    if (!st) st = ml_practice_first_attempts(students[k], &fa[k]);
    int64_t S = fa[k].n_students;
    kept[k] = malloc((size_t)(S ? S : 1) * sizeof *kept[k]), hoff[k] = malloc((size_t)(S + 1) * sizeof *hoff[k]);
    if (!st && (!kept[k] || !hoff[k])) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
    K[k] = st ? 0 : ml__practice_keep(&fa[k], cfg, kept[k], hoff[k]);
    int64_t cap = max_students > 0 ? (max_students + n_sets - 1) / n_sets : 0;
    if (cap > 0 && K[k] > cap) { /* an evenly spaced subset: deterministic */
      for (int64_t i = 0; i < cap; i++) kept[k][i] = kept[k][i * K[k] / cap];
      K[k] = cap;
    }
    total += K[k], base[k + 1] = total;
  }
  float *pp = malloc((size_t)(total * maxn + 1) * sizeof *pp), *praw = malloc((size_t)(total * maxn + 1) * sizeof *praw);
  uint8_t *py = malloc((size_t)(total * maxn + 1)), *pyr = malloc((size_t)(total * maxn + 1));
  double *stats = calloc((size_t)(total * nn * 4 + 1), sizeof *stats);
  *out = ml_practice_calib_steps_identity();
  out->n = (int)(maxn < ML_PRACTICE_CALIB_STEPS ? maxn : ML_PRACTICE_CALIB_STEPS);
  if (!st && total == 0) st = ml_error(ML_ERR_ARG, "practice calibration: no student has %lld distinct exercises", (long long)cfg->min_items);
  if (!st && (!pp || !praw || !py || !pyr || !stats)) st = ml_error(ML_ERR_NOMEM, "practice: out of memory");
  /* Two fitting rounds, then a check: the observed success on the picks, raw (round 0 runs the
   * identity) and calibrated (round 2), worst over cfg->ns. The calibration is kept only if it
   * brings that worst case closer to the target: with small pools (most ASSISTments students)
   * the picks are constrained by the pool, not by the prediction, and a calibration that makes
   * predictions more accurate can still move the picks away from the target. */
  double dev[2] = {0, 0};
  for (int round = 0; !st && round < 3; round++) {
    for (int64_t i = 0; i < total * maxn; i++) pp[i] = NAN;
    memset(stats, 0, (size_t)(total * nn * 4 + 1) * sizeof *stats);
    ml_practice_variant v = {ML_PRACTICE_TARGET, true, false};
    for (int k = 0; k < n_sets && !st; k++) {
      if (!K[k]) continue;
      job_t J = {models[k], &fa[k], cfg, kept[k], hoff[k], K[k], maxn, 0, v, out, NULL,
                 stats + base[k] * nn * 4, pp + base[k] * maxn, py + base[k] * maxn, NULL, NULL};
      st = run(&J, cfg->threads);
    }
    if (st) break;
    if (round != 1) {
      for (int64_t ni = 0; ni < nn; ni++) {
        double y = 0, cnt = 0;
        for (int64_t i = 0; i < total; i++) y += stats[(i * nn + ni) * 4 + 1], cnt += stats[(i * nn + ni) * 4 + 3];
        double d = cnt > 0 ? fabs(y / cnt - cfg->target) : 0;
        if (d > dev[round / 2]) dev[round / 2] = d;
      }
    }
    if (round == 2) break;
    /* refit each step on the raw predictions: undo the current calibration (an invertible map);
     * the last step also takes the later picks */
    ml_practice_calib_steps next = *out;
    ml_practice_calib pooled = ml_practice_calib_identity();
    for (int t = -1; !st && t < out->n; t++) { /* t = -1: all picks pooled, the prior of the steps */
      int64_t n = 0;
      for (int64_t i = 0; i < total; i++)
        for (int64_t u = t < 0 ? 0 : t; u < (t < 0 || t + 1 == out->n ? maxn : t + 1); u++) {
          float q = pp[i * maxn + u];
          if (isnan(q)) continue;
          ml_practice_calib c = out->step[u < out->n ? u : out->n - 1];
          float z = q < 1e-6f ? 1e-6f : q > 1 - 1e-6f ? 1 - 1e-6f : q;
          float raw = (logf(z / (1 - z)) - c.intercept) / c.slope;
          praw[n] = 1.0f / (1.0f + expf(-raw)), pyr[n] = py[i * maxn + u], n++;
        }
      if (t < 0) st = ml_practice_calib_fit(praw, pyr, n, &pooled);
      else st = ml_practice_calib_fit_prior(praw, pyr, n, pooled, 1 / (0.3 * 0.3), &next.step[t]);
    }
    if (st) break;
    *out = next;
  }
  if (!st) {
    out->worst_raw = (float)dev[0], out->worst_calibrated = (float)dev[1];
    out->kept = dev[1] < dev[0];
    if (!out->kept)
      for (int t = 0; t < out->n; t++) out->step[t] = ml_practice_calib_identity();
  }
  for (int k = 0; k < n_sets; k++) free(kept[k]), free(hoff[k]), ml_answers_free(&fa[k]);
  free(pp), free(praw), free(py), free(pyr), free(stats);
  return st;
}

void ml_practice_table_print(FILE *f, const char *title, const ml_practice_cell *cells, int n_variants, int n_ns) {
  fprintf(f, "### %s: %lld students, %lld held-out answers per resample\n\n", title,
          (long long)(n_variants && n_ns ? cells[0].students : 0), (long long)(n_variants && n_ns ? cells[0].heldout : 0));
  fprintf(f, "| policy |");
  for (int ni = 0; ni < n_ns; ni++) fprintf(f, " n=%lld AUC | acc |", (long long)cells[ni].n);
  fprintf(f, " seconds |\n|---|");
  for (int ni = 0; ni < n_ns; ni++) fprintf(f, "---|---|");
  fprintf(f, "---|\n");
  for (int v = 0; v < n_variants; v++) {
    const ml_practice_cell *row = cells + v * n_ns;
    double secs = 0;
    fprintf(f, "| %s%s%s |", ml_practice_policy_name(row[0].v.policy), row[0].v.calibrated ? "+cal" : "",
            row[0].v.balanced ? "+bal" : "");
    for (int ni = 0; ni < n_ns; ni++) {
      fprintf(f, " %.3f ±%.3f | %.3f |", row[ni].auc, row[ni].auc_sd, row[ni].acc);
      secs += row[ni].seconds;
    }
    fprintf(f, " %.1f |\n", secs);
  }
  fprintf(f, "\nPicked exercises (mean predicted success p' of the picks, |p' - target|, observed success):\n\n");
  for (int v = 0; v < n_variants; v++) {
    const ml_practice_cell *row = cells + v * n_ns;
    fprintf(f, "- %s%s%s:", ml_practice_policy_name(row[0].v.policy), row[0].v.calibrated ? "+cal" : "",
            row[0].v.balanced ? "+bal" : "");
    for (int ni = 0; ni < n_ns; ni++)
      fprintf(f, " n=%lld p' %.3f dist %.3f obs %.3f;", (long long)row[ni].n, row[ni].picked_pred,
              row[ni].target_dist, row[ni].picked_success);
    fprintf(f, "\n");
  }
}
