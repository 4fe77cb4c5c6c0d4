/* bench/dkt: DKT (and meta-DKT) on a knowledge-tracing dataset, protocol B: train on train1 with
 * early stopping on valid1, score next-step predictions on the test students (AUC overall and on
 * answers 3-10 / 11-15, accuracy, log-loss), and report seconds per training epoch. bench/dkt.sh
 * runs it beside bench/dkt_torch.py at the same thread count.
 *
 * Usage: dkt DATASET [--epochs N] [--patience N] [--threads N] [--seed N] [--meta] [--window N]
 *            [--adapt-window N] [--max-seconds S] [--influence FILE] [--data DIR] [--lr X]
 *            [--inner-lr X] [--cold-weight X] [--adapt-state]
 * DATASET: assist2009_updated | assist2015 | STATICS (a folder of $METALEARN_DATA/knowledge-tracing).
 * Prints one line "key value ..." per result; exit 2 on bad usage or data. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn.h"
#include "metalearn/answers.h"
#include "metalearn/dkt.h"

int main(int argc, char **argv) {
  ml_dkt_config cfg = ml_dkt_defaults();
  const char *data = getenv("METALEARN_DATA"), *influence = NULL;
  static struct option opts[] = {{"epochs", required_argument, 0, 'e'},  {"patience", required_argument, 0, 'p'},
                                 {"threads", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
                                 {"meta", no_argument, 0, 'm'},          {"window", required_argument, 0, 'w'},
                                 {"adapt-window", required_argument, 0, 'a'},
                                 {"max-seconds", required_argument, 0, 'x'},
                                 {"influence", required_argument, 0, 'i'},
                                 {"data", required_argument, 0, 'd'},    {"lr", required_argument, 0, 'l'},
                                 {"inner-lr", required_argument, 0, 'r'},
                                 {"cold-weight", required_argument, 0, 'c'},
                                 {"adapt-state", no_argument, 0, 'S'},
                                 {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'e': cfg.max_epochs = atoll(optarg); break;
      case 'p': cfg.patience = atoll(optarg); break;
      case 't': cfg.threads = atoi(optarg); break;
      case 's': cfg.seed = strtoull(optarg, NULL, 10); break;
      case 'm': cfg.meta = true; break;
      case 'w': cfg.window = atoll(optarg); break;
      case 'a': cfg.adapt_window = atoll(optarg); break;
      case 'x': cfg.max_seconds = atof(optarg); break;
      case 'i': influence = optarg; break;
      case 'd': data = optarg; break;
      case 'l': cfg.lr = atof(optarg); break;
      case 'r': cfg.inner_lr_init = atof(optarg); break;
      case 'c': cfg.cold_weight = atof(optarg); break;
      case 'S': cfg.meta = cfg.adapt_state = true; break;
      default: fprintf(stderr, "usage: dkt DATASET [options] (see bench/dkt.c)\n"); return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "usage: dkt DATASET [options] (see bench/dkt.c)\n");
    return 2;
  }
  const char *name = argv[optind];
  char dir[2048];
  snprintf(dir, sizeof dir, "%s/knowledge-tracing/%s", data ? data : "../shared/data", name);
  ml_kt_dataset d;
  if (ml_kt_dataset_load(dir, name, 1, &d)) {
    fprintf(stderr, "dkt: %s\n", ml_last_error());
    return 2;
  }
  cfg.n_items = d.n_items;
  cfg.verbose = true;
  ml_log_set_level(ML_LOG_INFO);
  ml_dkt *m;
  if (ml_dkt_new(&cfg, &m)) {
    fprintf(stderr, "dkt: %s\n", ml_last_error());
    return 2;
  }
  ml_blas_set_threads(cfg.threads);
  printf("dataset %s items %lld train %lld valid %lld test %lld students, threads %d, gemm %s, meta %d, adapt_window %lld, cold_weight %g\n", name,
         (long long)d.n_items, (long long)d.train.n_students, (long long)d.valid.n_students,
         (long long)d.test.n_students, cfg.threads, ml_gemm_backend(), cfg.meta, (long long)cfg.adapt_window,
         cfg.cold_weight);
  fflush(stdout);
  ml_dkt_stats st;
  if (ml_dkt_train(m, &d.train, &d.valid, &st)) {
    fprintf(stderr, "dkt: %s\n", ml_last_error());
    return 1;
  }
  ml_kt_predictions p;
  double t0 = ml_now();
  if (ml_dkt_predict(m, &d.test, &p)) {
    fprintf(stderr, "dkt: %s\n", ml_last_error());
    return 1;
  }
  double pred_s = ml_now() - t0;
  ml_kt_scores s;
  ml_kt_score(&p, &s);
  printf("epochs %lld best_epoch %lld valid_auc %.4f s_per_epoch %.3f last_epoch_s %.3f train_s %.1f total_s %.1f\n",
         (long long)st.epochs, (long long)st.best_epoch, st.best_valid_auc, st.train_seconds / (double)st.epochs,
         st.last_epoch_seconds, st.train_seconds, st.seconds);
  printf("test auc %.4f auc_3_10 %.4f auc_11_15 %.4f acc %.4f logloss %.4f n %lld n_3_10 %lld n_11_15 %lld predict_s %.2f\n",
         s.auc, s.auc_3_10, s.auc_11_15, s.acc, s.logloss, (long long)s.n, (long long)s.n_3_10, (long long)s.n_11_15,
         pred_s);
  {
    /* the same windows at the start of every later window of a student (answers 203-210 and
     * 211-215, 403-410, ...): the model starts from its initial state again there, with the
     * student's earlier answers out of reach */
    float *pa = malloc((size_t)(p.n ? p.n : 1) * sizeof(float));
    uint8_t *ya = malloc((size_t)(p.n ? p.n : 1));
    double auc[2] = {NAN, NAN};
    int64_t cnt[2] = {0, 0};
    for (int w = 0; w < 2 && pa && ya; w++) {
      int64_t lo = w ? 11 : 3, hi = w ? 15 : 10;
      for (int64_t i = 0; i < p.n; i++) {
        int64_t in_window = (p.pos[i] - 1) % cfg.window + 1;
        if (p.pos[i] > cfg.window && in_window >= lo && in_window <= hi) pa[cnt[w]] = p.p[i], ya[cnt[w]++] = p.y[i];
      }
      auc[w] = ml_auc(pa, ya, cnt[w]);
    }
    printf("later windows: auc_3_10 %.4f auc_11_15 %.4f n_3_10 %lld n_11_15 %lld\n", auc[0], auc[1],
           (long long)cnt[0], (long long)cnt[1]);
    free(pa), free(ya);
  }
  if (influence) {
    int64_t V = d.n_items;
    float *J = malloc((size_t)(V * V) * sizeof(float));
    FILE *f = J ? fopen(influence, "w") : NULL;
    if (!f || ml_dkt_influence(m, J)) {
      fprintf(stderr, "dkt: cannot write the influence matrix to %s: %s\n", influence, ml_last_error());
      return 1;
    }
    /* header: the exercises' original ids; row i: influence of i on every j */
    fprintf(f, "id");
    for (int64_t j = 0; j < V; j++) fprintf(f, ",%s", d.items.names[j]);
    fprintf(f, "\n");
    for (int64_t i = 0; i < V; i++) {
      fprintf(f, "%s", d.items.names[i]);
      for (int64_t j = 0; j < V; j++) fprintf(f, ",%.6g", J[i * V + j]);
      fprintf(f, "\n");
    }
    fclose(f);
    free(J);
  }
  ml_kt_predictions_free(&p);
  ml_dkt_free(m);
  ml_kt_dataset_free(&d);
  return 0;
}
