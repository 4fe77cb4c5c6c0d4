/* Status names and messages generated from ML_STATUS_MAP, and the per-thread error buffer
 * (the pair sqlite3_errcode / sqlite3_errmsg). */
#include <stdio.h>

#include "metalearn/base.h"

const char *ml_status_name(ml_status s) {
  switch (s) {
#define ML_X_NAME(name, num, msg) \
  case name:                      \
    return #name;
    ML_STATUS_MAP(ML_X_NAME)
#undef ML_X_NAME
  }
  return "ML_ERR_UNKNOWN";
}

const char *ml_status_str(ml_status s) {
  switch (s) {
#define ML_X_STR(name, num, msg) \
  case name:                     \
    return msg;
    ML_STATUS_MAP(ML_X_STR)
#undef ML_X_STR
  }
  return "unknown error";
}

static _Thread_local char err_msg[1024];
static _Thread_local ml_status err_status;

ml_status ml_error(ml_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_msg, sizeof err_msg, fmt, ap);
  va_end(ap);
  err_status = s;
  return s;
}

const char *ml_last_error(void) { return err_msg; }
ml_status ml_last_status(void) { return err_status; }
void ml_clear_error(void) {
  err_msg[0] = 0;
  err_status = ML_OK;
}
