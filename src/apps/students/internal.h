/* students app internals: the model object shared by the baselines and the meta-learned model. */
#ifndef ML_STUDENTS_INTERNAL_H
#define ML_STUDENTS_INTERNAL_H

#include <math.h>

#include "metalearn/students.h"

/* Columns of a meta-model input row (one answer): item, skill, then the order features. */
enum { ML__SX_ITEM, ML__SX_SKILL, ML__SX_SUCC, ML__SX_FAIL, ML__SX_POS, ML__SX_COLS };

struct ml_student_model {
  ml_student_config cfg;
  int64_t n_items, n_skills;
  int32_t *item_skill; /* n_items: first skill of each exercise (-1 = none) */
  /* baselines */
  float *b;    /* n_items difficulties */
  float *a;    /* n_items discriminations (2PL), else NULL */
  /* meta-learned */
  ml_model *model;
  ml_algo *algo;
  int64_t best_iteration; /* iterations of the kept parameters (the validation pick) */
};

ml_status ml__students_fit_baseline(ml_student_model *m, const ml_answers *train);
void ml__students_predict_baseline(const ml_student_model *m, const ml_student_log *support,
                                   const ml_student_log *query, float *p);
ml_status ml__students_fit_meta(ml_student_model *m, const ml_answers *train, const ml_answers *valid);
ml_status ml__students_build_meta(ml_student_model *m);
ml_status ml__students_predict_meta(const ml_student_model *m, const ml_student_log *support,
                                    const ml_student_log *query, ml_arena *arena, float *p);
/* Fills rows (n, ML__SX_COLS): support rows see only earlier support answers, query rows the
 * whole support; positions continue after the support. */
void ml__students_rows(const ml_student_model *m, const ml_student_log *support, const ml_student_log *query,
                       float *xs, float *xq);

static inline float ml__sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
