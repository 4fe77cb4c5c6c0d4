/* metalearn adapt: a trained run meets a new task. The support folder holds one subfolder of
 * labelled images per class (K each); the query folder holds the images to classify. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_image(const char *name) {
  const char *dot = strrchr(name, '.');
  return name[0] != '.' && dot &&
         (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Sorted image file names of dir (caller frees each and the array). */
static int list_images(const char *dir, char ***out, int64_t *n) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  char **names = NULL;
  int64_t cnt = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!is_image(e->d_name)) continue;
    if (cnt == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(names, (size_t)cap * sizeof *names);
      if (!nn) break;
      names = nn;
    }
    names[cnt++] = strdup(e->d_name);
  }
  closedir(d);
  if (cnt) qsort(names, (size_t)cnt, sizeof *names, cmp_str);
  *out = names, *n = cnt;
  return 0;
}

int ml_cli_adapt(int argc, char **argv) {
  ml_fewshot_config cfg = ml_fewshot_defaults();
  const char *run = NULL, *support = NULL, *query = NULL, *ckpt = NULL;
  bool help = false, json = false;
  ml_cli_extra extra[] = {{"run", true, &run, NULL},     {"support", true, &support, NULL},
                          {"query", true, &query, NULL}, {"checkpoint", true, &ckpt, NULL},
                          {"json", false, NULL, &json},  {"help", false, NULL, &help}};
  ml_cli_prescan(argc, argv, &run, &help);
  if (help) {
    printf("usage: metalearn adapt --run DIR --support DIR --query DIR [--json] [--key value ...]\n\n"
           "Adapts the trained run to a new task: --support holds one subfolder per class with its\n"
           "K labelled images (PNG or JPEG), --query the images to classify. Prints each query image\n"
           "with its predicted class and confidence. Images are resized to the model's input size;\n"
           "for Omniglot runs they are inverted to the training convention (ink bright).\n"
           "Flags override the run's configuration (e.g. --inner_steps_test 10).\n");
    return 0;
  }
  if (!run) {
    fprintf(stderr, "metalearn adapt: --run, --support and --query are required (see metalearn adapt --help)\n");
    return 2;
  }
  char path[ML_PATH_MAX + 64];
  int rc = ml_cli_read_run_config(run, &cfg, "adapt");
  if (rc) return rc;
  rc = ml_cli_parse(argc, argv, extra, 6, &cfg, "adapt");
  if (rc) return rc;
  if (!support || !query) {
    fprintf(stderr, "metalearn adapt: --run, --support and --query are required (see metalearn adapt --help)\n");
    return 2;
  }
  ml_dataset sup;
  memset(&sup, 0, sizeof sup);
  char **names = NULL;
  int64_t nq = 0;
  uint8_t *qpix = NULL;
  int32_t *pred = NULL;
  float *conf = NULL;
  ml_fewshot *f = NULL;
  ml_status st = ml_fewshot_open(&cfg, &f);
  if (!st) {
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run);
    st = ml_fewshot_load(f, ckpt ? ckpt : path);
  }
  if (!st) st = ml_image_folder_load(support, cfg.image_size, 1, &sup);
  if (!st && list_images(query, &names, &nq) != 0) st = ml_error(ML_ERR_IO, "%s: cannot open the query folder", query);
  if (!st && nq == 0) st = ml_error(ML_ERR_ARG, "%s: no PNG or JPEG images", query);
  int64_t px = cfg.image_size * cfg.image_size;
  if (!st) {
    qpix = malloc((size_t)(nq * px));
    pred = malloc((size_t)nq * sizeof *pred);
    conf = malloc((size_t)nq * sizeof *conf);
    if (!qpix || !pred || !conf) st = ml_error(ML_ERR_NOMEM, "out of memory");
  }
  for (int64_t i = 0; i < nq && !st; i++) {
    snprintf(path, sizeof path, "%s/%s", query, names[i]);
    st = ml_image_load(path, cfg.image_size, 1, qpix + i * px);
  }
  bool invert = !strncmp(cfg.dataset, "omniglot", 8);
  if (!st && invert) {
    for (int64_t k = 0; k < sup.n_images * px; k++) sup.pixels[k] = (uint8_t)(255 - sup.pixels[k]);
    for (int64_t k = 0; k < nq * px; k++) qpix[k] = (uint8_t)(255 - qpix[k]);
  }
  if (!st) st = ml_fewshot_adapt(f, &sup, qpix, nq, pred, conf);
  if (!st) {
    if (json) printf("[");
    for (int64_t i = 0; i < nq; i++) {
      if (json)
        printf("%s{\"image\": \"%s\", \"class\": \"%s\", \"confidence\": %.4f}", i ? ", " : "", names[i],
               sup.class_names[pred[i]], conf[i]);
      else
        printf("%-32s %-24s %.3f\n", names[i], sup.class_names[pred[i]], conf[i]);
    }
    if (json) printf("]\n");
  } else {
    fprintf(stderr, "metalearn adapt: %s\n", ml_last_error());
  }
  for (int64_t i = 0; i < nq; i++) free(names[i]);
  free(names), free(qpix), free(pred), free(conf);
  ml_dataset_free(&sup);
  ml_fewshot_close(f);
  return ml_cli_exit_code(st);
}
