/* Internal to the students application and its tests. */
#ifndef ML_APPS_STUDENTS_DKT_INTERNAL_H
#define ML_APPS_STUDENTS_DKT_INTERNAL_H

#include "metalearn/dkt.h"

/* Meta-DKT's closed-form inner step against ml_grad(create_graph) on the same support loss:
 * for every step of student s's first window, the largest difference between the adapted logit
 * of the model and the one from explicit fast weights. */
ml_status ml__dkt_check_inner(ml_dkt *m, const ml_answers *a, int64_t s, double *max_diff);
/* Meta-DKT adapting its initial state against the same model written out step by step (explicit
 * initial states, one cell per step, the support loss and its gradient built separately): the
 * largest difference in the logits of student s's first window. */
ml_status ml__dkt_check_state(ml_dkt *m, const ml_answers *a, int64_t s, double *max_diff);

#endif
