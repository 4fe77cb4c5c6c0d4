/* Shared by the recommend application's files. */
#ifndef ML_APPS_RECOMMEND_INTERNAL_H
#define ML_APPS_RECOMMEND_INTERNAL_H

#include "metalearn/recommend.h"

enum { REC_GLOBAL, REC_ITEM, REC_USER, REC_ITEMBIAS, REC_DAMPED, REC_MF, REC_FINETUNE, REC_MELU, REC_METAREC,
       REC_RIDGE, REC_METHODS };

void ml__rec_baseline(int method, const ml_rec_split *s, double lambda, const int64_t *sup, int64_t ns,
                      const int64_t *qry, int64_t nq, float *out);

typedef struct {
  int64_t f;
  float mu;
  float *bi, *q; /* per item */
} rec_mf;
/* On the split's training ratings, without those where exclude[k] is set (exclude may be NULL). */
ml_status ml__mf_train(const ml_rec_split *s, const uint8_t *exclude, int64_t f, int64_t epochs, float lr, float reg, uint64_t seed, rec_mf *m);
void ml__mf_predict(const rec_mf *m, const ml_rec_split *s, double lambda, const int64_t *sup, int64_t ns,
                    const int64_t *qry, int64_t nq, float *out);
void ml__mf_free(rec_mf *m);
/* The MF every recommender here uses (metarec's item tables, MF fold-in, meta-ridge's tables): 30
 * SGD epochs at rate 0.01, L2 0.05. One definition, so that a saved run recomputes its tables. */
static inline ml_status ml__mf_fit(const ml_rec_split *s, const uint8_t *exclude, int64_t f, uint64_t seed, rec_mf *m) {
  return ml__mf_train(s, exclude, f, 30, 0.01f, 0.05f, seed, m);
}

/* meta-ridge (ridge.c): the user folded in by a ridge solve with a meta-learned prior */
#define RIDGE_MAX_DIM 65
typedef struct {
  int64_t d;                 /* 1 + factors */
  bool mse;                  /* meta-train on the query MSE (else MAE, the reported metric) */
  double w0[RIDGE_MAX_DIM];  /* prior mean of [b_u, p_u]; the factor part stays 0 */
  double s[RIDGE_MAX_DIM];   /* log ridge strength: the bias's, then one shared by the factors */
  double adam_m[2 * RIDGE_MAX_DIM], adam_v[2 * RIDGE_MAX_DIM];
  int64_t steps;             /* Adam steps taken (the next meta-batch's iteration number) */
} rec_ridge;
void ml__ridge_init(rec_ridge *rg, int64_t f, double lambda);
void ml__ridge_predict(const rec_ridge *rg, const rec_mf *m, const ml_rec_split *s, const int64_t *sup, int64_t ns,
                       const int64_t *qry, int64_t nq, float *out);
/* The query loss (MAE or MSE) after the solve; adds its gradient w.r.t. every w0[a] and s[a] to
 * g_w0, g_s (either may be NULL; the tying of the factor coordinates is the trainer's). NaN when
 * the task has no query. */
double ml__ridge_loss_grad(const rec_ridge *rg, const rec_mf *m, const ml_rec_split *s, const int64_t *sup, int64_t ns,
                           const int64_t *qry, int64_t nq, double *g_w0, double *g_s);
/* Adam on the prior over `iterations` more meta-batches of `batch` tasks from src (deterministic;
 * resumable: the Adam state and the iteration count live in rg). A task of user u is solved on
 * the tables half[h(u)], h(u) = bit 0 of ml_rng_key(seed, u, "half"): the tables fitted without
 * that half's users. */
/* The cross-fitted meta-training tables: half[h] is MF (f factors, the split's seed) on the
 * training ratings without those of the meta-training users of half h. */
#define RIDGE_HALF_KEY 0x68616c66
/* Writes the prior (bias start, log strengths of the bias and the factors) as safetensors. */
ml_status ml__ridge_save(const char *path, const rec_ridge *rg);
ml_status ml__ridge_tables(const ml_rec_split *s, int64_t f, uint64_t seed, rec_mf half[2]);
ml_status ml__ridge_train(rec_ridge *rg, const rec_mf half[2], uint64_t seed, const ml_rec_task_source *src,
                          int64_t iterations, int64_t batch, double lr, ml_arena *ar, double *last_loss);

#endif
