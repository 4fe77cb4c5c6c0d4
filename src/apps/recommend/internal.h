/* Shared by the recommend application's files. */
#ifndef ML_APPS_RECOMMEND_INTERNAL_H
#define ML_APPS_RECOMMEND_INTERNAL_H

#include "metalearn/recommend.h"

enum { REC_GLOBAL, REC_ITEM, REC_USER, REC_ITEMBIAS, REC_DAMPED, REC_MF, REC_FINETUNE, REC_MELU, REC_METAREC,
       REC_METHODS };

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

#endif
