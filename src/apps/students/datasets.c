/* Resolves a students dataset name to a knowledge-tracing folder and loads it. */
#include <stdlib.h>
#include <string.h>

#include "apps/students/internal.h"

ml_status ml_students_dataset_open(const char *name, const char *data_root, int fold, ml_kt_dataset *out, char *label,
                                   size_t label_cap) {
  memset(out, 0, sizeof *out);
  static const struct {
    const char *name, *folder, *prefix;
  } known[] = {{"assist2009", "assist2009_updated", "assist2009_updated"},
               {"assist2015", "assist2015", "assist2015"},
               {"statics", "STATICS", "STATICS"},
               {"assistments-dkt", "assistments-dkt", "builder"}};
  if (!data_root || !*data_root) {
    const char *env = getenv("METALEARN_DATA");
    data_root = env && *env ? env : "../shared/data";
  }
  char dir[4096], prefix[4096];
  const char *folder = NULL;
  if (!strncmp(name, "kt:", 3)) {
    const char *d = name + 3;
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof dir) return ml_error(ML_ERR_ARG, "dataset '%s': no folder after kt:", name);
    memcpy(dir, d, n);
    dir[n] = 0;
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    snprintf(prefix, sizeof prefix, "%s", base);
    folder = base;
  } else {
    size_t i = 0;
    while (i < sizeof known / sizeof known[0] && strcmp(known[i].name, name)) i++;
    if (i == sizeof known / sizeof known[0])
      return ml_error(ML_ERR_ARG, "unknown students dataset '%s' (assist2009, assist2015, statics, assistments-dkt, kt:DIR)",
                      name);
    snprintf(dir, sizeof dir, "%s/knowledge-tracing/%s", data_root, known[i].folder);
    snprintf(prefix, sizeof prefix, "%s", known[i].prefix);
    folder = known[i].folder;
  }
  if (label) snprintf(label, label_cap, "%s", folder);
  ml_status st = ml_kt_dataset_load(dir, prefix, fold, out);
  if (st) return st;
  const ml_kt_facts *f = ml_kt_facts_find(folder);
  if (f && (st = ml_kt_dataset_check_facts(out, f))) ml_kt_dataset_free(out);
  return st;
}
