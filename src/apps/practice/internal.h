/* Shared by the practice application's files. */
#ifndef ML_APPS_PRACTICE_INTERNAL_H
#define ML_APPS_PRACTICE_INTERNAL_H

#include "metalearn/practice.h"

/* The protocol's students of first attempts fa (>= c->min_items distinct exercises) into kept;
 * returns their number. hoff (may be NULL; K + 1 entries) gets the offsets of their held-out
 * answers in a pooled array. */
int64_t ml__practice_keep(const ml_answers *fa, const ml_practice_protocol_config *c, int64_t *kept, int64_t *hoff);

#endif
