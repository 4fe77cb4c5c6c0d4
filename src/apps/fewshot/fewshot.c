/* The few-shot session: data, splits, model and algorithm wired from a configuration; the
 * training loop with run directory, metrics, checkpoints and resume; evaluation protocols. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "metalearn/eval.h"
#include "metalearn/fewshot.h"
#include "metalearn/io.h"
#include "metalearn/kernels.h"
#include "metalearn/report.h"

struct ml_fewshot {
  ml_fewshot_config cfg;
  ml_algo_kind kind;
  bool regress;
  ml_dataset ds;
  ml_split train, test;
  ml_model *model;
  ml_algo *algo;
  ml_dist *dist; /* NULL = one process */
};

ml_algo *ml_fewshot_algo(ml_fewshot *f) { return f->algo; }
const ml_fewshot_config *ml_fewshot_config_of(const ml_fewshot *f) { return &f->cfg; }

ml_status ml_fewshot_set_dist(ml_fewshot *f, ml_dist *d) {
  ml_status st = ml_dist_attach(d, f->algo);
  if (!st) f->dist = d;
  return st;
}

void ml_fewshot_data(const ml_fewshot *f, const ml_dataset **ds, const ml_split **train, const ml_split **test) {
  if (ds) *ds = f->regress ? NULL : &f->ds;
  if (train) *train = f->regress ? NULL : &f->train;
  if (test) *test = f->regress ? NULL : &f->test;
}

static const char *cache_arg(const ml_fewshot_config *c) {
  if (!strcmp(c->cache_dir, "none")) return "";
  return c->cache_dir[0] ? c->cache_dir : NULL;
}

static ml_status load_data(ml_fewshot *f) {
  ml_fewshot_config *c = &f->cfg;
  char a[ML_PATH_MAX + 64], b[ML_PATH_MAX + 64];
  int rot = c->rotations ? 4 : 1;
  ml_status st;
  if (!strcmp(c->dataset, "omniglot") || !strcmp(c->dataset, "omniglot-background")) {
    snprintf(a, sizeof a, "%s/omniglot/images_background.npz", c->data_dir);
    snprintf(b, sizeof b, "%s/omniglot/images_evaluation.npz", c->data_dir);
    st = ml_omniglot_load_full(a, b, c->image_size, cache_arg(c), &f->ds);
    if (st) return st;
    if (!strcmp(c->dataset, "omniglot")) return ml_split_maml_omniglot(&f->ds, rot, &f->train, &f->test);
    /* Lake et al.'s protocol: learn on the 964 background characters only, test on the 659
     * evaluation characters (and on the 20 one-shot runs) */
    st = ml_split_range(&f->ds, 0, 964, rot, &f->train);
    if (!st) st = ml_split_range(&f->ds, 964, f->ds.n_classes, 1, &f->test);
    return st;
  }
  if (!strcmp(c->dataset, "omniglot-small")) {
    snprintf(a, sizeof a, "%s/omniglot/images_background_small1.zip", c->data_dir);
    snprintf(b, sizeof b, "%s/omniglot/images_background_small2.zip", c->data_dir);
    const char *paths[2] = {a, b};
    st = ml_omniglot_load_zips(paths, 2, c->image_size, cache_arg(c), &f->ds);
    if (st) return st;
    /* test = the named alphabets; train = every other alphabet */
    char groups[ML_PATH_MAX], *names[64];
    int64_t n = 0;
    snprintf(groups, sizeof groups, "%s", c->test_groups);
    for (char *tok = strtok(groups, ","); tok && n < 64; tok = strtok(NULL, ",")) names[n++] = tok;
    if (!n) return ml_error(ML_ERR_ARG, "test_groups: no alphabet named");
    st = ml_split_from_groups(&f->ds, (const char *const *)names, n, 1, &f->test);
    if (st) return st;
    int64_t *tr = malloc((size_t)f->ds.n_classes * sizeof(int64_t)), ntr = 0;
    if (!tr) return ML_ERR_NOMEM;
    for (int64_t k = 0; k < f->ds.n_classes; k++) {
      bool in_test = false;
      for (int64_t j = 0; j < f->test.n_base; j++) in_test |= f->test.base[j] == k;
      if (!in_test) tr[ntr++] = k;
    }
    st = ntr ? ml_split_from_classes(&f->ds, tr, ntr, rot, &f->train)
             : ml_error(ML_ERR_ARG, "test_groups leaves no alphabet for training");
    free(tr);
    return st;
  }
  if (!strcmp(c->dataset, "folder")) {
    if (!c->folder[0]) return ml_error(ML_ERR_ARG, "dataset folder needs --folder DIR");
    st = ml_image_folder_load(c->folder, c->image_size, 1, &f->ds);
    if (st) return st;
    int64_t ntr = (int64_t)floor(c->folder_train_fraction * (double)f->ds.n_classes);
    if (ntr < 1 || ntr >= f->ds.n_classes)
      return ml_error(ML_ERR_ARG, "%s: %lld classes cannot be split into training and test classes", c->folder,
                      (long long)f->ds.n_classes);
    st = ml_split_range(&f->ds, 0, ntr, rot, &f->train);
    if (!st) st = ml_split_range(&f->ds, ntr, f->ds.n_classes, 1, &f->test);
    return st;
  }
  return ml_error(ML_ERR_ARG, "unknown dataset '%s' (omniglot, omniglot-background, omniglot-small, sinusoid, folder)",
                  c->dataset);
}

static ml_status check_sizes(ml_fewshot *f) {
  const ml_fewshot_config *c = &f->cfg;
  if (c->n_way < 1 || c->k_shot < 1 || c->q_query < 1 || c->q_query_test < 1)
    return ml_error(ML_ERR_ARG, "n_way, k_shot, q_query and q_query_test must be >= 1");
  if (f->regress) return ML_OK;
  int64_t train_way = f->kind == ML_ALGO_FINETUNE ? c->pretrain_way : c->train_way > 0 ? c->train_way : c->n_way;
  bool headed = f->kind != ML_ALGO_PROTONET && f->kind != ML_ALGO_MATCHINGNET && f->kind != ML_ALGO_FINETUNE;
  if (headed && c->train_way > 0 && c->train_way != c->n_way)
    return ml_error(ML_ERR_ARG, "train_way %lld differs from n_way %lld, but %s's head is n_way wide",
                    (long long)c->train_way, (long long)c->n_way, c->algo);
  if (train_way > f->train.n_classes)
    return ml_error(ML_ERR_ARG, "%lld-way tasks need %lld classes, the training split has %lld", (long long)train_way,
                    (long long)train_way, (long long)f->train.n_classes);
  if (c->n_way > f->test.n_classes)
    return ml_error(ML_ERR_ARG, "n_way %lld is larger than the %lld test classes", (long long)c->n_way,
                    (long long)f->test.n_classes);
  int64_t need = c->k_shot + (c->q_query > c->q_query_test ? c->q_query : c->q_query_test);
  int64_t have = f->train.min_class_size < f->test.min_class_size ? f->train.min_class_size : f->test.min_class_size;
  if (need > have)
    return ml_error(ML_ERR_ARG, "k_shot + q_query = %lld is larger than the %lld images of the smallest class",
                    (long long)need, (long long)have);
  return ML_OK;
}

ml_status ml_fewshot_open(const ml_fewshot_config *cfg, ml_fewshot **out) {
  *out = NULL;
  ml_fewshot *f = calloc(1, sizeof *f);
  if (!f) return ml_error(ML_ERR_NOMEM, "out of memory");
  f->cfg = *cfg;
  ml_fewshot_config *c = &f->cfg;
  ml_status st = ml_algo_parse(c->algo, &f->kind);
  f->regress = !strcmp(c->dataset, "sinusoid");
  if (!st && f->regress && (f->kind == ML_ALGO_PROTONET || f->kind == ML_ALGO_MATCHINGNET || f->kind == ML_ALGO_FINETUNE))
    st = ml_error(ML_ERR_ARG, "%s is for classification; sinusoid regression takes maml, fomaml, metasgd, anil or reptile",
                  c->algo);
  if (!st && !f->regress) st = load_data(f);
  if (!st) st = check_sizes(f);
  if (st) {
    ml_fewshot_close(f);
    return st;
  }
  /* algorithm settings: unset values take the algorithm's defaults */
  ml_algo_config ac = ml_algo_defaults(f->kind);
  ac.task = f->regress ? ML_TASK_REGRESS : ML_TASK_CLASSIFY;
  if (f->regress && f->kind != ML_ALGO_REPTILE) ac.inner_lr = 0.01f, ac.meta_batch = 25, ac.inner_steps_test = 10;
  if (f->regress && f->kind == ML_ALGO_REPTILE) {
    /* Nichol et al.'s sinusoid setting: plain SGD inner steps (0.02), outer step 0.1 annealed */
    ac.reptile_inner_sgd = true, ac.inner_lr = 0.02f, ac.outer.lr = 0.1f, ac.meta_batch = 1;
    ac.inner_steps_test = 32;
  }
  if (c->meta_batch > 0) ac.meta_batch = c->meta_batch;
  if (c->inner_steps >= 0) ac.inner_steps = c->inner_steps;
  if (c->inner_steps_test >= 0) ac.inner_steps_test = c->inner_steps_test;
  if (c->inner_lr >= 0) ac.inner_lr = (float)c->inner_lr;
  if (c->meta_lr >= 0) ac.outer.lr = (float)c->meta_lr;
  ac.outer.clip_norm = (float)c->clip;
  if (f->kind == ML_ALGO_REPTILE) ac.anneal_iterations = c->iterations; /* Nichol et al.: linear to 0 */
  ac.decay_every = c->lr_decay_every, ac.decay_gamma = (float)c->lr_decay;
  ac.multi_step_loss = c->multi_step_loss;
  ac.threads = (int)c->threads;
  ac.matching_scale = (float)c->matching_scale;
  ac.finetune_steps = c->finetune_steps;
  ac.finetune_lr = (float)c->finetune_lr;
  ac.pretrain_classes = f->regress ? 0 : f->train.n_classes;
  /* record the resolved values so config.ini says what ran */
  c->meta_batch = ac.meta_batch, c->inner_steps = ac.inner_steps, c->inner_steps_test = ac.inner_steps_test;
  c->inner_lr = ac.inner_lr;
  c->meta_lr = ac.outer.lr;
  if (f->regress) {
    ml_mlp_config mc = {.n_layers = 3, .sizes = {1, 40, 40, 1}, .act = ML_ACT_RELU};
    st = ml_mlp_new(&mc, (uint64_t)c->seed, &f->model);
  } else {
    ml_conv4_config cc = ml_conv4_defaults();
    cc.in_channels = f->ds.channels, cc.image_size = c->image_size, cc.filters = c->filters;
    cc.n_out = f->kind == ML_ALGO_PROTONET || f->kind == ML_ALGO_MATCHINGNET ? 0
               : f->kind == ML_ALGO_FINETUNE                               ? f->train.n_classes
                                                                             : c->n_way;
    st = ml_conv4_new(&cc, (uint64_t)c->seed, &f->model);
  }
  if (!st) st = ml_algo_new(&ac, f->model, &f->algo);
  if (st) {
    ml_fewshot_close(f);
    return st;
  }
  *out = f;
  return ML_OK;
}

void ml_fewshot_close(ml_fewshot *f) {
  if (!f) return;
  ml_algo_free(f->algo);
  ml_model_free(f->model);
  ml_split_free(&f->train);
  ml_split_free(&f->test);
  ml_dataset_free(&f->ds);
  free(f);
}

/* ---- task sources ---- */
static ml_status train_task(void *ctx, int64_t it, int64_t idx, ml_arena *ar, ml_episode *ep) {
  ml_fewshot *f = ctx;
  const ml_fewshot_config *c = &f->cfg;
  if (f->regress)
    return ml_sinusoid_sample(NULL, c->k_shot, c->q_query, (uint64_t)c->seed, (uint64_t)it, (uint64_t)idx, ar, ep, NULL,
                              NULL);
  int64_t way = f->kind == ML_ALGO_FINETUNE ? c->pretrain_way : c->train_way > 0 ? c->train_way : c->n_way;
  return ml_fewshot_sample(&f->ds, &f->train, way, c->k_shot, c->q_query, (uint64_t)c->seed, (uint64_t)it,
                           (uint64_t)idx, ar, ep);
}

static ml_status test_task(void *ctx, int64_t key, int64_t idx, ml_arena *ar, ml_episode *ep) {
  (void)key;
  ml_fewshot *f = ctx;
  const ml_fewshot_config *c = &f->cfg;
  if (f->regress)
    return ml_sinusoid_sample(NULL, c->k_shot, c->q_query_test, (uint64_t)c->seed, ML_EVAL_ITERATION, (uint64_t)idx, ar,
                              ep, NULL, NULL);
  return ml_fewshot_eval_episode(&f->ds, &f->test, c->n_way, c->k_shot, c->q_query_test, (uint64_t)c->seed, idx, ar, ep);
}

ml_status ml_fewshot_evaluate(ml_fewshot *f, int64_t episodes, double *mean, double *ci95) {
  return ml_fewshot_evaluate_ex(f, episodes, NULL, mean, ci95);
}

ml_status ml_fewshot_evaluate_ex(ml_fewshot *f, int64_t episodes, const ml_eval_options *opt, double *mean,
                                 double *ci95) {
  if (episodes < 1) return ml_error(ML_ERR_ARG, "evaluation needs at least one episode");
  double *s = malloc((size_t)episodes * sizeof(double));
  if (!s) return ml_error(ML_ERR_NOMEM, "out of memory");
  ml_status st = ml_dist_evaluate(f->dist, f->algo, test_task, f, 0, episodes, s, opt);
  if (!st) ml_mean_ci95(s, episodes, mean, ci95);
  free(s);
  return st;
}

/* ---- checkpoints ---- */
static ml_status save_checkpoint(ml_fewshot *f, const char *dir, int64_t iteration, double seconds) {
  char path[ML_PATH_MAX + 64], it[32], sec[32];
  snprintf(it, sizeof it, "%lld", (long long)iteration);
  snprintf(sec, sizeof sec, "%.3f", seconds);
  ml_kv meta[] = {{"iteration", it}, {"seconds", sec}, {"algo", f->cfg.algo}, {"dataset", f->cfg.dataset}};
  ml_status st = ML_OK;
  if (ml_algo_extra_params(f->algo)) {
    /* Meta-SGD's rates first: a checkpoint names the iteration both files must agree on */
    snprintf(path, sizeof path, "%s/metasgd.safetensors", dir);
    st = ml_checkpoint_save(path, ml_algo_extra_params(f->algo), ml_algo_extra_optim(f->algo), meta, 4);
  }
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
  if (!st) st = ml_checkpoint_save(path, f->model->params, ml_algo_optim(f->algo), meta, 4);
  return st;
}

static ml_status read_meta_int(const char *path, const char *key, double *out) {
  ml_safetensors *s;
  ml_status st = ml_safetensors_open(path, &s);
  if (st) return st;
  const char *v = ml_safetensors_meta(s, key);
  if (!v) st = ml_error(ML_ERR_FORMAT, "%s: no '%s' in the metadata (not a metalearn run checkpoint)", path, key);
  else *out = atof(v);
  ml_safetensors_close(s);
  return st;
}

static ml_status load_state(ml_fewshot *f, const char *checkpoint, bool with_optim, int64_t *iteration,
                            double *seconds) {
  ml_status st = ml_checkpoint_load(checkpoint, f->model->params, with_optim ? ml_algo_optim(f->algo) : NULL);
  double it = 0, sec = 0;
  if (!st && iteration) st = read_meta_int(checkpoint, "iteration", &it);
  if (!st && seconds) st = read_meta_int(checkpoint, "seconds", &sec);
  if (!st && ml_algo_extra_params(f->algo)) {
    char dir[ML_PATH_MAX], path[ML_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s", checkpoint);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(path, sizeof path, "%s/metasgd.safetensors", dir);
    double it2 = -1;
    st = ml_checkpoint_load(path, ml_algo_extra_params(f->algo), with_optim ? ml_algo_extra_optim(f->algo) : NULL);
    if (!st) st = read_meta_int(path, "iteration", &it2);
    if (!st && iteration && (int64_t)it2 != (int64_t)it)
      st = ml_error(ML_ERR_FORMAT, "%s: written at iteration %lld, the checkpoint at %lld", path, (long long)it2,
                    (long long)it);
  }
  if (iteration) *iteration = (int64_t)it;
  if (seconds) *seconds = sec;
  return st;
}

ml_status ml_fewshot_load(ml_fewshot *f, const char *checkpoint) { return load_state(f, checkpoint, false, NULL, NULL); }

/* ---- metrics ---- */
static ml_status append_line(const char *path, const char *line) {
  FILE *fp = fopen(path, "a");
  if (!fp) return ml_error(ML_ERR_IO, "%s: cannot append", path);
  int ok = fputs(line, fp) >= 0;
  ok &= fclose(fp) == 0;
  return ok ? ML_OK : ml_error(ML_ERR_IO, "%s: write failed", path);
}

/* Keeps the metric lines of iterations <= upto (those an interrupted run wrote past its last
 * checkpoint are dropped, so a resumed run's log equals an uninterrupted one's). */
static ml_status trim_metrics(const char *path, int64_t upto) {
  FILE *fp = fopen(path, "r");
  if (!fp) return ML_OK;
  char *out = NULL, line[4096];
  size_t n = 0, cap = 0;
  ml_status st = ML_OK;
  while (fgets(line, sizeof line, fp)) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *it = j ? cJSON_GetObjectItemCaseSensitive(j, "iter") : NULL;
    bool keep = cJSON_IsNumber(it) && it->valuedouble <= (double)upto;
    cJSON_Delete(j);
    if (!keep) continue;
    size_t len = strlen(line);
    if (n + len + 1 > cap) {
      cap = (n + len + 1) * 2;
      char *nb = realloc(out, cap);
      if (!nb) {
        st = ml_error(ML_ERR_NOMEM, "out of memory");
        break;
      }
      out = nb;
    }
    memcpy(out + n, line, len);
    n += len;
  }
  fclose(fp);
  if (!st) st = ml_write_file_atomic(path, out ? out : "", n);
  free(out);
  return st;
}

/* ---- beside the metrics: TensorBoard events (config key tensorboard) and machine.json, both
 * opened with the first metrics line, so they exist exactly when the run has metrics ---- */
typedef struct {
  ml_fewshot *f;
  const char *dir;
  ml_tfevents *tb;
  bool opened;
} run_log;

static ml_status log_line(run_log *lg, const char *metrics, const char *line) {
  if (ml_dist_rank(lg->f->dist) != 0) return ML_OK; /* rank 0 writes the run directory */
  ml_status st = append_line(metrics, line);
  if (!st && !lg->opened) {
    lg->opened = true;
    int64_t threads = lg->f->cfg.threads > 0 ? lg->f->cfg.threads : ml_num_threads();
    st = ml_run_info_write(lg->dir, threads, ml_simd_name(ml_cpu_simd()));
    if (!st && lg->f->cfg.tensorboard) st = ml_tfevents_open(lg->dir, &lg->tb);
  }
  if (!st && lg->tb) st = ml_tfevents_json_line(lg->tb, line, 0);
  return st;
}

static ml_status train_loop(ml_fewshot *f, const char *run_dir, bool resume, ml_progress_fn progress, void *ctx,
                            run_log *lg) {
  const ml_fewshot_config *c = &f->cfg;
  char cfg_path[ML_PATH_MAX + 64], metrics[ML_PATH_MAX + 64], ckpt[ML_PATH_MAX + 64], line[1024];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.ini", run_dir);
  snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir);
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
  int64_t start = 0;
  double base_seconds = 0;
  ml_status st;
  bool rank0 = ml_dist_rank(f->dist) == 0; /* every rank trains; rank 0 alone writes */
  if (resume) {
    st = load_state(f, ckpt, true, &start, &base_seconds);
    if (!st && rank0) st = trim_metrics(metrics, start);
    if (st) return st;
  } else if (rank0) {
    if (mkdir(run_dir, 0755) != 0) {
      struct stat sb;
      if (stat(run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ml_error(ML_ERR_IO, "%s: cannot create the run directory", run_dir);
    }
    st = ml_fewshot_write_config(c, cfg_path);
    if (!st) st = ml_write_file_atomic(metrics, "", 0);
    if (st) return st;
  }
  double t0 = ml_now();
  ml_step_stats s = {0};
  for (int64_t it = start; it < c->iterations; it++) {
    st = ml_algo_train_step(f->algo, train_task, f, it, &s);
    if (st) return st;
    int64_t done = it + 1;
    double secs = base_seconds + ml_now() - t0;
    bool stop = false;
    if (done % (c->log_every > 0 ? c->log_every : 1) == 0 || done == c->iterations) {
      snprintf(line, sizeof line,
               "{\"iter\": %lld, \"loss\": %.6g, \"loss_support\": %.6g, \"%s\": %.6g, \"grad_norm\": %.6g, "
               "\"seconds\": %.3f}\n",
               (long long)done, s.loss_query, s.loss_support, f->regress ? "mse" : "acc",
               f->regress ? s.loss_query : s.acc_query, s.grad_norm, secs);
      if ((st = log_line(lg, metrics, line))) return st;
      if (progress) stop = !progress(ctx, done, c->iterations, &s, secs);
    }
    if (c->eval_every > 0 && done % c->eval_every == 0) {
      double m, ci;
      int64_t n = c->eval_episodes < 100 ? c->eval_episodes : 100;
      if ((st = ml_fewshot_evaluate(f, n, &m, &ci))) return st;
      snprintf(line, sizeof line, "{\"iter\": %lld, \"test_%s\": %.6g, \"test_ci95\": %.6g, \"episodes\": %lld}\n",
               (long long)done, f->regress ? "mse" : "acc", m, ci, (long long)n);
      if ((st = log_line(lg, metrics, line))) return st;
    }
    bool out_of_time = c->max_seconds > 0 && secs >= c->max_seconds;
    if (ml_dist_size(f->dist) > 1) {
      /* the ranks' clocks and progress callbacks may disagree: when one stops, all stop here */
      bool go = !stop && !out_of_time;
      if ((st = ml_dist_all_ok(f->dist, &go))) return st;
      if (!go && !stop) out_of_time = true;
    }
    if (stop || out_of_time || done == c->iterations || (c->checkpoint_every > 0 && done % c->checkpoint_every == 0))
      if (rank0 && (st = save_checkpoint(f, run_dir, done, secs))) return st;
    if (out_of_time) {
      if (progress) progress(ctx, done, done, &s, secs);
      snprintf(line, sizeof line, "{\"iter\": %lld, \"stopped\": \"max_seconds\", \"seconds\": %.3f}\n",
               (long long)done, secs);
      return log_line(lg, metrics, line);
    }
    if (stop) return ml_error(ML_ERR_ABORTED, "stopped at iteration %lld (resume with --resume)", (long long)done);
  }
  if (start >= c->iterations && !resume && rank0) return save_checkpoint(f, run_dir, start, base_seconds);
  return ML_OK;
}

ml_status ml_fewshot_train(ml_fewshot *f, const char *run_dir, bool resume, ml_progress_fn progress, void *ctx) {
  run_log lg = {f, run_dir, NULL, false};
  ml_status st = train_loop(f, run_dir, resume, progress, ctx, &lg);
  ml_status st2 = ml_tfevents_close(lg.tb);
  return st ? st : st2;
}

/* ---- Lake's 20-way one-shot runs ---- */
ml_status ml_fewshot_lake(ml_fewshot *f, double *error_pct, double *per_run_error) {
  if (f->regress || f->ds.channels != 1)
    return ml_error(ML_ERR_ARG, "the Omniglot runs need a model trained on Omniglot");
  if (f->model->head_first < f->model->params->count && f->kind != ML_ALGO_FINETUNE && f->cfg.n_way != 20)
    return ml_error(ML_ERR_ARG, "%s has a %lld-way head; the runs are 20-way (train with --n_way 20, or use protonet, "
                    "matchingnet or finetune)", f->cfg.algo, (long long)f->cfg.n_way);
  char path[ML_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/omniglot/all_runs.zip", f->cfg.data_dir);
  ml_lake_runs runs;
  ml_status st = ml_lake_runs_load(path, f->cfg.image_size, &runs);
  if (st) return st;
  ml_arena *ar = ml_arena_new((size_t)16 << 20, NULL);
  double total = 0;
  for (int64_t r = 0; r < runs.n_runs && !st; r++) {
    ml_arena_reset(ar);
    ml_episode ep;
    st = ml_lake_episode(&runs, r, ar, &ep);
    float *pred = st ? NULL : ml_arena_alloc(ar, (size_t)(ep.n_q * ep.n_way) * sizeof(float));
    if (!st && !pred) st = ML_ERR_NOMEM;
    if (!st) st = ml_algo_predict(f->algo, &ep, ar, pred);
    if (st) break;
    double err = 100.0 * (1.0 - ml_accuracy(pred, ep.yq, ep.n_q, ep.n_way));
    if (per_run_error) per_run_error[r] = err;
    total += err;
  }
  if (!st) *error_pct = total / (double)runs.n_runs;
  ml_arena_free(ar);
  ml_lake_runs_free(&runs);
  return st;
}

/* ---- adapting to a user's own images ---- */
ml_status ml_fewshot_adapt(ml_fewshot *f, const ml_dataset *support, const uint8_t *query, int64_t n_query,
                           int32_t *pred, float *confidence) {
  const ml_model *m = f->model;
  if (f->regress) return ml_error(ML_ERR_ARG, "adapt classifies images; this run is sinusoid regression");
  int64_t C = support->channels, H = support->height, W = support->width, N = support->n_classes;
  if (C != f->ds.channels || H != f->cfg.image_size || W != f->cfg.image_size)
    return ml_error(ML_ERR_SHAPE, "support images are %lldx%lldx%lld, the model takes %lldx%lldx%lld", (long long)C,
                    (long long)H, (long long)W, (long long)f->ds.channels, (long long)f->cfg.image_size,
                    (long long)f->cfg.image_size);
  if (m->head_first < m->params->count && f->kind != ML_ALGO_FINETUNE && N != f->cfg.n_way)
    return ml_error(ML_ERR_ARG, "the support has %lld classes; this %s model was trained %lld-way", (long long)N,
                    f->cfg.algo, (long long)f->cfg.n_way);
  if (n_query < 1) return ml_error(ML_ERR_ARG, "no query images");
  int64_t px = C * H * W, ns = support->n_images;
  ml_arena *ar = ml_arena_new((size_t)16 << 20, NULL);
  if (!ar) return ML_ERR_NOMEM;
  ml_episode ep;
  memset(&ep, 0, sizeof ep);
  ep.n_way = N, ep.n_s = ns, ep.n_q = n_query, ep.k_shot = ns / N, ep.q_query = 1;
  ep.xs = ml_tensor_new(ar, 4, (int64_t[]){ns, C, H, W});
  ep.xq = ml_tensor_new(ar, 4, (int64_t[]){n_query, C, H, W});
  ep.ys = ml_arena_alloc(ar, (size_t)ns * sizeof(int32_t));
  ep.yq = ml_arena_calloc(ar, (size_t)n_query * sizeof(int32_t));
  float *logits = ml_arena_alloc(ar, (size_t)(n_query * N) * sizeof(float));
  ml_status st = ep.xs.data && ep.xq.data && ep.ys && ep.yq && logits ? ML_OK : ML_ERR_NOMEM;
  for (int64_t c = 0; c < N && !st; c++)
    for (int64_t i = support->class_offset[c]; i < support->class_offset[c + 1]; i++) {
      ep.ys[i] = (int32_t)c;
      for (int64_t k = 0; k < px; k++) ep.xs.data[i * px + k] = (float)support->pixels[i * px + k] / 255.0f;
    }
  for (int64_t k = 0; k < n_query * px && !st; k++) ep.xq.data[k] = (float)query[k] / 255.0f;
  if (!st) st = ml_algo_predict(f->algo, &ep, ar, logits);
  for (int64_t i = 0; i < n_query && !st; i++) {
    const float *row = logits + i * N;
    int64_t best = ml_argmax(row, N);
    double z = 0;
    for (int64_t k = 0; k < N; k++) z += exp((double)row[k] - row[best]);
    pred[i] = (int32_t)best;
    if (confidence) confidence[i] = (float)(1.0 / z);
  }
  ml_arena_free(ar);
  return st;
}
