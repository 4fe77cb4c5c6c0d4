/* The metalearn command as a user meets it: help and version, exit code 2 with a one-line error
 * for bad input, training that writes a run directory, resume equal to an uninterrupted run,
 * eval, and adapt on images in folders. Runs the built binary. */
#include <spng.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "metalearn/base.h"

static int run(const char *args, char *out, size_t n) { return ml_test_metalearn(args, out, n); }

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static char out[1 << 16];

ML_TEST(help_version_info) {
  CHECK(run("--help", out, sizeof out) == 0 && strstr(out, "train"));
  CHECK(run("--version", out, sizeof out) == 0 && strstr(out, ml_version()));
  CHECK(run("info", out, sizeof out) == 0 && strstr(out, "simd:") && strstr(out, "gemm:") && strstr(out, "conv:"));
  CHECK(run("train --help", out, sizeof out) == 0 && strstr(out, "--inner_lr"));
  CHECK(run("eval --help", out, sizeof out) == 0 && strstr(out, "omniglot-runs"));
  CHECK(run("adapt --help", out, sizeof out) == 0);
}

ML_TEST(bad_input_exits_2_with_one_line) {
  const char *cases[][2] = {
      {"frobnicate", "unknown command"},
      {"train --no-such-option 3 --dataset sinusoid", "unknown"},
      {"train --dataset sinusoid --algo mamal", "mamal"},
      {"train --dataset sinusoid --n_way abc", "not an integer"},
      {"train --dataset sinusoid --algo protonet", "classification"},
      {"train --dataset nosuch", "nosuch"},
      {"train --dataset omniglot-small --data_dir /nonexistent", "/nonexistent"},
      {"train --dataset folder --folder /nonexistent/dir", "/nonexistent/dir"},
      {"eval --run /nonexistent/run", "/nonexistent/run"},
      {"train --config /nonexistent.ini", "/nonexistent.ini"},
      {"eval --dataset statics --dkt dkt,meta-dkt-stat", "meta-dkt-state"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = run(cases[i][0], out, sizeof out);
    CHECK_MSG(rc == 2, "'%s' exited %d: %s", cases[i][0], rc, out);
    CHECK_MSG(strstr(out, cases[i][1]) != NULL, "'%s' said: %s", cases[i][0], out);
    CHECK_MSG(count_lines(out) == 1, "'%s' printed %d lines: %s", cases[i][0], count_lines(out), out);
  }
}

/* Strips the wall-clock "seconds" metadata so two checkpoints can be compared byte for byte:
 * the tensors must be identical. */
static bool same_tensors(const char *a, const char *b) {
  char cmd[20000];
  snprintf(cmd, sizeof cmd, "cmp -s <(tail -c +$((9 + $(od -An -t u8 -N8 %s))) %s) "
           "<(tail -c +$((9 + $(od -An -t u8 -N8 %s))) %s)", a, a, b, b);
  char full[20100];
  snprintf(full, sizeof full, "bash -c '%s'", cmd);
  return system(full) == 0;
}

ML_TEST(train_resume_eval_sinusoid) {
  const char *tmp = ml_test_tmpdir();
  char args[8192], a[4200], b[4200];
  snprintf(args, sizeof args, "train --dataset sinusoid --algo maml --k_shot 5 --iterations 40 --meta_batch 4 "
           "--eval_episodes 20 --checkpoint_every 20 --quiet --run %s/full", tmp);
  CHECK(run(args, out, sizeof out) == 0);
  CHECK(strstr(out, "test MSE") != NULL);
  /* interrupted at 20 (iterations 20), then resumed to 40 with the same settings */
  snprintf(args, sizeof args, "train --dataset sinusoid --algo maml --k_shot 5 --iterations 20 --meta_batch 4 "
           "--eval_episodes 20 --checkpoint_every 20 --quiet --run %s/part", tmp);
  CHECK(run(args, out, sizeof out) == 0);
  snprintf(args, sizeof args, "train --run %s/part --resume --iterations 40 --quiet", tmp);
  CHECK_MSG(run(args, out, sizeof out) == 0, "%s", out);
  snprintf(a, sizeof a, "%s/full/checkpoint.safetensors", tmp);
  snprintf(b, sizeof b, "%s/part/checkpoint.safetensors", tmp);
  CHECK_MSG(same_tensors(a, b), "resumed run's parameters differ from the uninterrupted run's");
  snprintf(a, sizeof a, "%s/full/metrics.jsonl", tmp);
  struct stat sb;
  CHECK(stat(a, &sb) == 0 && sb.st_size > 100);
  snprintf(args, sizeof args, "eval --run %s/full --eval_episodes 20", tmp);
  CHECK(run(args, out, sizeof out) == 0 && strstr(out, "test MSE"));
  /* a truncated checkpoint is a clear error, not a crash */
  snprintf(args, sizeof args, "truncate -s 100 %s/part/checkpoint.safetensors", tmp);
  CHECK(system(args) == 0);
  snprintf(args, sizeof args, "eval --run %s/part", tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "checkpoint.safetensors"));
}

/* A tiny image folder: 4 classes of 6 drawn shapes each, as PNG. */
static void write_png(const char *path, int cls, int k) {
  uint8_t img[20 * 20];
  for (int y = 0; y < 20; y++)
    for (int x = 0; x < 20; x++) {
      int on = cls == 0 ? (x > 4 + k % 3 && x < 9 + k % 3) : cls == 1 ? (y > 4 + k % 3 && y < 9 + k % 3)
             : cls == 2 ? abs(x - y) < 2 + k % 2 : (x - 10) * (x - 10) + (y - 10) * (y - 10) < 20 + 5 * (k % 3);
      img[y * 20 + x] = on ? 0 : 255;
    }
  spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  FILE *f = fopen(path, "wb");
  spng_set_png_file(ctx, f);
  struct spng_ihdr ihdr = {.width = 20, .height = 20, .bit_depth = 8, .color_type = SPNG_COLOR_TYPE_GRAYSCALE};
  spng_set_ihdr(ctx, &ihdr);
  spng_encode_image(ctx, img, sizeof img, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  spng_ctx_free(ctx);
  fclose(f);
}

ML_TEST(folder_dataset_train_and_adapt) {
  const char *tmp = ml_test_tmpdir();
  char p[4200], args[8192];
  const char *names[4] = {"vertical", "horizontal", "diagonal", "disc"};
  snprintf(p, sizeof p, "%s/data", tmp);
  mkdir(p, 0755);
  for (int c = 0; c < 4; c++) {
    snprintf(p, sizeof p, "%s/data/%s", tmp, names[c]);
    mkdir(p, 0755);
    for (int k = 0; k < 6; k++) {
      snprintf(p, sizeof p, "%s/data/%s/%d.png", tmp, names[c], k);
      write_png(p, c, k);
    }
  }
  snprintf(args, sizeof args, "train --dataset folder --folder %s/data --folder_train_fraction 0.5 --algo protonet "
           "--n_way 2 --k_shot 1 --q_query 3 --q_query_test 3 --image_size 16 --filters 8 --iterations 5 "
           "--eval_episodes 10 --quiet --cache_dir none --run %s/frun", tmp, tmp);
  CHECK_MSG(run(args, out, sizeof out) == 0, "%s", out);
  /* adapt: support = 2 classes x 2 shots, query = 2 images */
  for (int c = 0; c < 2; c++) {
    snprintf(p, sizeof p, "%s/support", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/support/%s", tmp, names[c]);
    mkdir(p, 0755);
    for (int k = 0; k < 2; k++) {
      snprintf(p, sizeof p, "%s/support/%s/%d.png", tmp, names[c], k);
      write_png(p, c, k);
    }
  }
  snprintf(p, sizeof p, "%s/query", tmp);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/query/a.png", tmp);
  write_png(p, 0, 4);
  snprintf(p, sizeof p, "%s/query/b.png", tmp);
  write_png(p, 1, 5);
  snprintf(args, sizeof args, "adapt --run %s/frun --support %s/support --query %s/query --json", tmp, tmp, tmp);
  CHECK_MSG(run(args, out, sizeof out) == 0, "%s", out);
  CHECK_MSG(strstr(out, "\"image\": \"a.png\"") && strstr(out, "\"image\": \"b.png\""), "%s", out);
  /* more classes than images allow: K + Q too large */
  snprintf(args, sizeof args, "train --dataset folder --folder %s/data --algo protonet --n_way 2 --k_shot 5 "
           "--q_query 5 --image_size 16 --quiet --cache_dir none --run %s/bad", tmp, tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "k_shot + q_query"));
  snprintf(args, sizeof args, "train --dataset folder --folder %s/data --algo protonet --n_way 9 --image_size 16 "
           "--q_query 2 --quiet --cache_dir none --run %s/bad", tmp, tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "9-way"));
  /* a corrupt PNG names the file */
  snprintf(p, sizeof p, "%s/data/disc/0.png", tmp);
  FILE *f = fopen(p, "r+b");
  fseek(f, 20, SEEK_SET);
  fputs("garbage-garbage", f);
  fclose(f);
  snprintf(args, sizeof args, "train --dataset folder --folder %s/data --algo protonet --n_way 2 --image_size 16 "
           "--q_query 2 --quiet --cache_dir none --run %s/bad", tmp, tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "0.png"));
}

/* Every algorithm end to end on real Omniglot (small zips), tiny settings: trains, writes a
 * checkpoint, evaluates; protonet is also scored on Lake's 20 runs. Skipped without the data. */
ML_TEST(every_algorithm_on_omniglot_small) {
  const char *data = ml_test_data_dir();
  if (!data) {
    printf("  skipped: no data directory (set METALEARN_DATA)\n");
    return;
  }
  const char *tmp = ml_test_tmpdir();
  const char *algos[] = {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matchingnet", "finetune"};
  char args[8192];
  for (int i = 0; i < 8; i++) {
    snprintf(args, sizeof args, "train --dataset omniglot-small --data_dir %s --algo %s --filters 4 --iterations 2 "
             "--meta_batch 2 --q_query 2 --q_query_test 2 --eval_episodes 4 --pretrain_way 8 --finetune_steps 3 "
             "--inner_steps_test 2 --quiet --cache_dir %s/cache --run %s/%s", data, algos[i], tmp, tmp, algos[i]);
    int rc = run(args, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, "test accuracy"), "%s: exit %d: %s", algos[i], rc, out);
  }
  snprintf(args, sizeof args, "eval --run %s/protonet --benchmark omniglot-runs", tmp);
  CHECK_MSG(run(args, out, sizeof out) == 0 && strstr(out, "error rate"), "%s", out);
  /* a 5-way MAML head cannot take the 20-way runs: a clear error */
  snprintf(args, sizeof args, "eval --run %s/maml --benchmark omniglot-runs", tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "20-way"));
  /* N larger than the test alphabets' 64 characters, K+Q beyond 20 drawings */
  snprintf(args, sizeof args, "train --dataset omniglot-small --data_dir %s --n_way 70 --quiet --cache_dir %s/cache "
           "--run %s/bad", data, tmp, tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "n_way 70"));
  snprintf(args, sizeof args, "train --dataset omniglot-small --data_dir %s --k_shot 10 --q_query 15 --quiet "
           "--cache_dir %s/cache --run %s/bad", data, tmp, tmp);
  CHECK(run(args, out, sizeof out) == 2 && strstr(out, "k_shot + q_query"));
}
