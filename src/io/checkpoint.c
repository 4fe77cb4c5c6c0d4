/* Checkpoints: a parameter list and optionally its optimizer state in one safetensors file.
 * Parameters keep their names; moments are "optim.m.<name>" / "optim.v.<name>"; metadata holds
 * "format" = "metalearn", the optimizer kind, step and configuration (each float printed with the
 * fewest digits, at most 9, that read back exactly). Saving is atomic (temp file + rename).
 * Loading reads and checks everything into temporary blocks first and copies into the caller's
 * params / optimizer only when the whole file matched, so a failed load changes nothing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/io.h"

#define N_OPTIM_META 10
#define NAME_BUF (ML_PARAM_NAME_MAX + 16)

static const char *kind_name(ml_optim_kind k) { return k == ML_OPTIM_ADAM ? "adam" : "sgd"; }

/* The shortest of %.6g .. %.9g that reads back as the same float ("0.3", not "0.300000012"). */
static void format_float(char *buf, size_t n, float x) {
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, n, "%.*g", prec, (double)x);
    if (strtof(buf, NULL) == x) return;
  }
}

ml_status ml_checkpoint_save(const char *path, const ml_params *params, const ml_optim *opt, const ml_kv *metadata,
                             int64_t n_meta) {
  if (!path || !params) return ml_error(ML_ERR_ARG, "checkpoint_save: NULL argument");
  if (!params->finalized) return ml_error(ML_ERR_ARG, "%s: parameter list not finalized", path);
  if (n_meta < 0 || (n_meta > 0 && !metadata)) return ml_error(ML_ERR_ARG, "%s: invalid metadata list", path);
  if (opt && opt->numel != params->numel)
    return ml_error(ML_ERR_SHAPE, "%s: optimizer made for %lld floats, parameter block has %lld", path,
                    (long long)opt->numel, (long long)params->numel);
  int64_t np = params->count;
  int n_blocks = 1 + (opt && opt->m) + (opt && opt->v);
  int64_t nt = np * n_blocks;
  ml_named_tensor *t = calloc((size_t)(nt ? nt : 1), sizeof *t);
  char *names = calloc((size_t)(nt ? nt : 1), NAME_BUF);
  ml_kv *kv = calloc((size_t)(n_meta + 1 + N_OPTIM_META), sizeof *kv);
  if (!t || !names || !kv) {
    free(t);
    free(names);
    free(kv);
    return ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
  }
  int64_t k = 0;
  for (int b = 0; b < n_blocks; b++) {
    const char *prefix = b == 0 ? "" : b == 1 ? "optim.m." : "optim.v.";
    const float *block = b == 0 ? params->data : b == 1 ? opt->m : opt->v;
    for (int64_t i = 0; i < np; i++, k++) {
      const ml_param *p = &params->items[i];
      char *nm = names + (size_t)k * NAME_BUF;
      snprintf(nm, NAME_BUF, "%s%s", prefix, p->name);
      t[k].name = nm;
      t[k].t = p->value;
      t[k].t.data = (float *)block + p->offset;
    }
  }
  char vals[N_OPTIM_META][40];
  int64_t m = 0;
  kv[m++] = (ml_kv){"format", "metalearn"};
  if (opt) {
    const ml_optim_config *c = &opt->cfg;
    const char *keys[N_OPTIM_META] = {"optim.kind",  "optim.step",  "optim.lr",  "optim.momentum",     "optim.nesterov",
                                      "optim.beta1", "optim.beta2", "optim.eps", "optim.weight_decay", "optim.clip_norm"};
    snprintf(vals[0], 40, "%s", kind_name(c->kind));
    snprintf(vals[1], 40, "%lld", (long long)opt->step);
    format_float(vals[2], 40, c->lr);
    format_float(vals[3], 40, c->momentum);
    snprintf(vals[4], 40, "%d", c->nesterov ? 1 : 0);
    format_float(vals[5], 40, c->beta1);
    format_float(vals[6], 40, c->beta2);
    format_float(vals[7], 40, c->eps);
    format_float(vals[8], 40, c->weight_decay);
    format_float(vals[9], 40, c->clip_norm);
    for (int i = 0; i < N_OPTIM_META; i++) kv[m++] = (ml_kv){keys[i], vals[i]};
  }
  for (int64_t i = 0; i < n_meta; i++) kv[m++] = metadata[i];
  ml_status st = ml_safetensors_write(path, t, nt, kv, m);
  free(t);
  free(names);
  free(kv);
  return st;
}

/* ---- load ---- */

static ml_status meta_float(const ml_safetensors *s, const char *path, const char *key, float *out) {
  const char *v = ml_safetensors_meta(s, key);
  if (!v) return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' missing", path, key);
  char *end;
  errno = 0;
  float f = strtof(v, &end);
  if (end == v || *end || errno || !isfinite(f) || f < 0)
    return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' = '%.32s' is not a non-negative number", path, key, v);
  *out = f;
  return ML_OK;
}

static ml_status meta_int(const ml_safetensors *s, const char *path, const char *key, int64_t *out) {
  const char *v = ml_safetensors_meta(s, key);
  if (!v) return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' missing", path, key);
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || errno || x < 0)
    return ml_error(ML_ERR_FORMAT, "%s: metadata '%s' = '%.32s' is not a non-negative integer", path, key, v);
  *out = x;
  return ML_OK;
}

static ml_status read_config(const ml_safetensors *s, const char *path, const ml_optim *opt, ml_optim_config *c,
                             int64_t *step) {
  const char *kind = ml_safetensors_meta(s, "optim.kind");
  if (!kind) return ml_error(ML_ERR_FORMAT, "%s: no optimizer state in the file (metadata 'optim.kind' missing)", path);
  if (strcmp(kind, kind_name(opt->cfg.kind)))
    return ml_error(ML_ERR_ARG, "%s: file holds '%.16s' optimizer state, the optimizer is '%s'", path, kind,
                    kind_name(opt->cfg.kind));
  *c = opt->cfg;
  int64_t nesterov = 0;
  ml_status st;
  if ((st = meta_int(s, path, "optim.step", step)) || (st = meta_float(s, path, "optim.lr", &c->lr)) ||
      (st = meta_float(s, path, "optim.momentum", &c->momentum)) ||
      (st = meta_int(s, path, "optim.nesterov", &nesterov)) || (st = meta_float(s, path, "optim.beta1", &c->beta1)) ||
      (st = meta_float(s, path, "optim.beta2", &c->beta2)) || (st = meta_float(s, path, "optim.eps", &c->eps)) ||
      (st = meta_float(s, path, "optim.weight_decay", &c->weight_decay)) ||
      (st = meta_float(s, path, "optim.clip_norm", &c->clip_norm)))
    return st;
  c->nesterov = nesterov != 0;
  if (c->kind == ML_OPTIM_SGD && (c->momentum != 0) != (opt->m != NULL))
    return ml_error(ML_ERR_ARG, "%s: file has SGD momentum %g, the optimizer was made %s a momentum buffer", path,
                    (double)c->momentum, opt->m ? "with" : "without");
  if (c->kind == ML_OPTIM_ADAM && (c->beta1 >= 1 || c->beta2 >= 1))
    return ml_error(ML_ERR_FORMAT, "%s: invalid Adam betas in the file", path);
  return ML_OK;
}

/* Reads the tensor named prefix+p->name into block at p's offset after checking its shape. */
static ml_status load_one(const ml_safetensors *s, const char *path, const char *prefix, const ml_param *p,
                          float *block, bool *used) {
  char name[NAME_BUF];
  snprintf(name, sizeof name, "%s%s", prefix, p->name);
  int64_t i = ml_safetensors_find(s, name);
  if (i < 0) return ml_error(ML_ERR_NOTFOUND, "%s: tensor '%s' missing from the file", path, name);
  ml_tensor ft = ml_safetensors_shape(s, i);
  if (!ml_tensor_same_shape(&ft, &p->value)) {
    char a[80], b[80];
    return ml_error(ML_ERR_SHAPE, "%s: tensor '%s' has shape %s in the file, the model expects %s", path, name,
                    ml_tensor_shape_str(&ft, a, sizeof a), ml_tensor_shape_str(&p->value, b, sizeof b));
  }
  used[i] = true;
  return ml_safetensors_read_f32(s, i, block + p->offset);
}

static bool is_optim_name(const char *n) { return !strncmp(n, "optim.m.", 8) || !strncmp(n, "optim.v.", 8); }

ml_status ml_checkpoint_load(const char *path, ml_params *params, ml_optim *opt) {
  if (!path || !params) return ml_error(ML_ERR_ARG, "checkpoint_load: NULL argument");
  if (!params->finalized) return ml_error(ML_ERR_ARG, "%s: parameter list not finalized", path);
  if (opt && opt->numel != params->numel)
    return ml_error(ML_ERR_SHAPE, "%s: optimizer made for %lld floats, parameter block has %lld", path,
                    (long long)opt->numel, (long long)params->numel);
  ml_safetensors *s = NULL;
  ml_status st = ml_safetensors_open(path, &s);
  if (st != ML_OK) return st;
  size_t bytes = (size_t)params->numel * sizeof(float);
  size_t nfile = (size_t)ml_safetensors_count(s);
  float *tp = calloc(1, bytes + 4), *tm = NULL, *tv = NULL;
  bool *used = calloc(nfile + 1, sizeof *used);
  ml_optim_config cfg;
  int64_t step = 0;
  if (!tp || !used) {
    st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  if (opt) {
    if ((st = read_config(s, path, opt, &cfg, &step)) != ML_OK) goto done;
    if ((opt->m && !(tm = calloc(1, bytes + 4))) || (opt->v && !(tv = calloc(1, bytes + 4)))) {
      st = ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
  }
  for (int64_t i = 0; i < params->count && st == ML_OK; i++) {
    const ml_param *p = &params->items[i];
    st = load_one(s, path, "", p, tp, used);
    if (st == ML_OK && tm) st = load_one(s, path, "optim.m.", p, tm, used);
    if (st == ML_OK && tv) st = load_one(s, path, "optim.v.", p, tv, used);
  }
  if (st != ML_OK) goto done;
  for (size_t i = 0; i < nfile; i++) {
    const char *n = ml_safetensors_name(s, (int64_t)i);
    if (used[i] || (!opt && is_optim_name(n))) continue; /* loading weights only: moments ignored */
    st = ml_error(ML_ERR_SHAPE, "%s: tensor '%.100s' in the file is not in the model", path, n);
    goto done;
  }
  /* everything matched: commit */
  memcpy(params->data, tp, bytes);
  if (opt) {
    if (tm) memcpy(opt->m, tm, bytes);
    if (tv) memcpy(opt->v, tv, bytes);
    opt->cfg = cfg;
    opt->step = step;
  }
done:
  free(tp);
  free(tm);
  free(tv);
  free(used);
  ml_safetensors_close(s);
  return st;
}
