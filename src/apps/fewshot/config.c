/* The few-shot configuration: one table of keys (name, type, field, help) drives parsing of
 * config files and flags, writing the resolved config, and the CLI's help. */
#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/fewshot.h"
#include "metalearn/io.h"

typedef enum { K_STR, K_INT, K_REAL, K_BOOL } key_type;
typedef struct {
  const char *name;
  key_type type;
  size_t offset, size;
  const char *help;
} key_def;

#define S(f, h) {#f, K_STR, offsetof(ml_fewshot_config, f), sizeof(((ml_fewshot_config *)0)->f), h}
#define I(f, h) {#f, K_INT, offsetof(ml_fewshot_config, f), 0, h}
#define R(f, h) {#f, K_REAL, offsetof(ml_fewshot_config, f), 0, h}
#define B(f, h) {#f, K_BOOL, offsetof(ml_fewshot_config, f), 0, h}
static const key_def keys[] = {
    S(dataset, "omniglot (full .npz, MAML split), omniglot-background (train on the 964 background characters, "
               "test on the 659 evaluation ones: Lake's protocol), omniglot-small (small zips), sinusoid, folder"),
    S(data_dir, "dataset directory (default $METALEARN_DATA or ../shared/data)"),
    S(folder, "dataset=folder: directory with one subfolder of images per class"),
    S(test_groups, "omniglot-small: comma-separated test alphabets"),
    S(cache_dir, "decoded-data cache directory (empty = default, none = off)"),
    S(algo, "maml, fomaml, metasgd, anil, reptile, protonet, matchingnet, finetune"),
    I(n_way, "classes per task (N)"),
    I(k_shot, "support examples per class (K)"),
    I(train_way, "classes per training task, when training uses more than n_way (ProtoNet's higher way; 0 = n_way)"),
    I(q_query, "query examples per class in training"),
    I(q_query_test, "query examples per class in evaluation"),
    I(image_size, "side of the square input images"),
    I(filters, "Conv4 filters per layer"),
    I(iterations, "meta-training iterations"),
    R(max_seconds, "stop training after this much wall time (0 = no limit); the run stays resumable"),
    I(meta_batch, "tasks per meta-iteration"),
    I(inner_steps, "inner-loop steps in training"),
    I(inner_steps_test, "inner-loop steps at meta-test"),
    R(inner_lr, "inner-loop learning rate (Meta-SGD: initial rates; Reptile: inner Adam rate)"),
    R(meta_lr, "outer (meta) learning rate (-1 = the algorithm's default: Adam 1e-3, Reptile SGD 1)"),
    R(clip, "clip the meta-gradient to this global norm (0 = off)"),
    I(lr_decay_every, "multiply the meta learning rate by lr_decay every this many iterations (0 = off)"),
    R(lr_decay, "factor for lr_decay_every (ProtoNet's schedule: 0.5 every 2000 episodes)"),
    B(multi_step_loss, "MAML++ multi-step loss"),
    B(rotations, "90-degree rotations as extra training classes (MAML protocol)"),
    R(matching_scale, "Matching Networks: softmax scale on cosine similarity"),
    I(pretrain_way, "finetune: classes per pre-training batch"),
    I(finetune_steps, "finetune: steps fitting the new head at meta-test"),
    R(finetune_lr, "finetune: Adam rate for the new head"),
    R(folder_train_fraction, "dataset=folder: fraction of classes used for meta-training"),
    I(eval_episodes, "test episodes for the final evaluation (600 in the literature)"),
    I(eval_every, "monitor test accuracy every this many iterations (0 = off)"),
    I(log_every, "write a metrics line every this many iterations"),
    I(checkpoint_every, "write a checkpoint every this many iterations"),
    I(seed, "random seed (tasks, initialization, test episodes)"),
    I(threads, "worker threads (0 = all cores)"),
    B(tensorboard, "write TensorBoard event files beside metrics.jsonl (true/false)"),
};
#undef S
#undef I
#undef R
#undef B
#define NKEYS (sizeof keys / sizeof keys[0])

ml_fewshot_config ml_fewshot_defaults(void) {
  ml_fewshot_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.dataset, sizeof c.dataset, "omniglot");
  const char *env = getenv("METALEARN_DATA");
  snprintf(c.data_dir, sizeof c.data_dir, "%s", env && *env ? env : "../shared/data");
  snprintf(c.test_groups, sizeof c.test_groups, "Japanese_(katakana),Tagalog");
  snprintf(c.algo, sizeof c.algo, "protonet");
  c.n_way = 5, c.k_shot = 1, c.q_query = 15, c.q_query_test = 15, c.image_size = 28, c.filters = 64;
  c.iterations = 1000, c.meta_batch = 0, c.inner_steps = -1, c.inner_steps_test = -1;
  c.eval_episodes = 600, c.eval_every = 0, c.log_every = 10, c.checkpoint_every = 500, c.pretrain_way = 64;
  c.finetune_steps = 100, c.seed = 1, c.threads = 0;
  c.inner_lr = -1, c.meta_lr = -1, c.clip = 0, c.matching_scale = 10, c.finetune_lr = 0.01;
  c.folder_train_fraction = 0.7, c.rotations = true, c.tensorboard = true, c.lr_decay = 0.5;
  return c;
}

static const key_def *find_key(const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (!strcmp(keys[i].name, name)) return &keys[i];
  return NULL;
}

ml_status ml_fewshot_set(ml_fewshot_config *c, const char *key, const char *value) {
  const key_def *k = find_key(key);
  if (!k) return ml_error(ML_ERR_ARG, "unknown option '%s'", key);
  char *p = (char *)c + k->offset, *end = NULL;
  errno = 0;
  switch (k->type) {
    case K_STR:
      if (strlen(value) >= k->size) return ml_error(ML_ERR_ARG, "%s: value too long", key);
      snprintf(p, k->size, "%s", value);
      return ML_OK;
    case K_INT: {
      long long v = strtoll(value, &end, 10);
      if (errno || end == value || *end) return ml_error(ML_ERR_ARG, "%s: '%s' is not an integer", key, value);
      *(int64_t *)p = v;
      return ML_OK;
    }
    case K_REAL: {
      double v = strtod(value, &end);
      if (errno || end == value || *end) return ml_error(ML_ERR_ARG, "%s: '%s' is not a number", key, value);
      *(double *)p = v;
      return ML_OK;
    }
    case K_BOOL:
      if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on"))
        *(bool *)p = true;
      else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off"))
        *(bool *)p = false;
      else
        return ml_error(ML_ERR_ARG, "%s: '%s' is not a boolean (true/false)", key, value);
      return ML_OK;
  }
  return ML_OK;
}

typedef struct {
  ml_fewshot_config *c;
  const char *path;
  ml_status st;
} ini_ctx;

/* Debian's inih is built without line numbers in the handler: errors name the key instead. */
static int on_ini(void *user, const char *section, const char *name, const char *value) {
  (void)section;
  ini_ctx *x = user;
  ml_status st = ml_fewshot_set(x->c, name, value);
  if (st) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", ml_last_error());
    x->st = ml_error(st, "%s: %s", x->path, msg);
    return 0;
  }
  return 1;
}

ml_status ml_fewshot_read_config(const char *path, ml_fewshot_config *c) {
  FILE *f = fopen(path, "r");
  if (!f) return ml_error(ML_ERR_IO, "%s: cannot open config file", path);
  ini_ctx x = {c, path, ML_OK};
  int r = ini_parse_file(f, on_ini, &x);
  fclose(f);
  if (x.st) return x.st;
  if (r) return ml_error(ML_ERR_FORMAT, "%s:%d: malformed line (expected key = value)", path, r);
  return ML_OK;
}

ml_status ml_fewshot_write_config(const ml_fewshot_config *c, const char *path) {
  char buf[16384];
  size_t n = (size_t)snprintf(buf, sizeof buf, "# metalearn %s: resolved configuration of this run\n", ml_version());
  for (size_t i = 0; i < NKEYS && n < sizeof buf; i++) {
    const char *p = (const char *)c + keys[i].offset;
    switch (keys[i].type) {
      case K_STR:
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %s\n", keys[i].name, p);
        break;
      case K_INT:
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %lld\n", keys[i].name, (long long)*(const int64_t *)p);
        break;
      case K_REAL:
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %.7g\n", keys[i].name, *(const double *)p); /* float-born values */
        break;
      case K_BOOL:
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s = %s\n", keys[i].name, *(const bool *)p ? "true" : "false");
        break;
    }
  }
  if (n >= sizeof buf) return ml_error(ML_ERR_ARG, "config too large to write");
  return ml_write_file_atomic(path, buf, n);
}

const char *ml_fewshot_key_name(int64_t i) { return i >= 0 && (size_t)i < NKEYS ? keys[i].name : NULL; }

const char *ml_fewshot_key_help(const char *key) {
  const key_def *k = find_key(key);
  return k ? k->help : NULL;
}
