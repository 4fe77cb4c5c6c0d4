/* Leveled logging to stderr. The level is the one piece of global mutable state besides the
 * per-thread error buffer; it is atomic so that any thread may read it. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/base.h"

static _Atomic int log_level = -1;

static int level_from_env(void) {
  const char *e = getenv("ML_LOG");
  if (!e) return ML_LOG_WARN;
  if (!strcmp(e, "debug")) return ML_LOG_DEBUG;
  if (!strcmp(e, "info")) return ML_LOG_INFO;
  if (!strcmp(e, "error")) return ML_LOG_ERROR;
  if (!strcmp(e, "off")) return ML_LOG_OFF;
  return ML_LOG_WARN;
}

void ml_log_set_level(ml_log_level level) { atomic_store(&log_level, (int)level); }

ml_log_level ml_log_get_level(void) {
  int l = atomic_load(&log_level);
  if (l < 0) {
    l = level_from_env();
    atomic_store(&log_level, l);
  }
  return (ml_log_level)l;
}

void ml_logf(ml_log_level level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (level < ml_log_get_level() || level >= ML_LOG_OFF) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "metalearn %s: %s\n", names[level], buf);
}
