/* tasks: the N-way K-shot sampler (determinism by key, labels and class-major order, no
 * repeated drawing, rotations), class splits, errors for impossible episodes, sinusoid
 * parameter ranges, and Lake's runs as episodes when the real data is present. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/internal.h"
#include "harness.h"
#include "metalearn/tasks.h"

/* n_classes classes with sizes[c] images of side s; image (c, k) has pixel 0 = c, pixel 1 = k
 * and random others, so a drawing identifies itself (unrotated). */
static void make_ds(ml_dataset *ds, int64_t n_classes, const int64_t *sizes, int64_t s, int64_t n_groups) {
  int64_t n = 0;
  for (int64_t c = 0; c < n_classes; c++) n += sizes[c];
  CHECK_OK(ml__dataset_alloc(ds, n, n_classes, n_groups, 1, s, s));
  ml_rng r;
  ml_rng_init(&r, 9, 9);
  const char **names = malloc(sizeof(char *) * (size_t)(n_classes + n_groups));
  char *buf = malloc((size_t)(n_classes + n_groups) * 32);
  int64_t at = 0;
  for (int64_t c = 0; c < n_classes; c++) {
    ds->class_offset[c] = at;
    ds->class_group[c] = (int32_t)(c % n_groups);
    for (int64_t k = 0; k < sizes[c]; k++, at++) {
      uint8_t *im = ds->pixels + at * s * s;
      for (int64_t p = 0; p < s * s; p++) im[p] = (uint8_t)ml_rng_u32(&r);
      im[0] = (uint8_t)c;
      im[1] = (uint8_t)k;
    }
    snprintf(buf + c * 32, 32, "c%lld", (long long)c);
    names[c] = buf + c * 32;
  }
  ds->class_offset[n_classes] = at;
  ds->class_names = ml__names_new(names, n_classes);
  for (int64_t g = 0; g < n_groups; g++) {
    snprintf(buf + (n_classes + g) * 32, 32, "g%lld", (long long)g);
    names[g] = buf + (n_classes + g) * 32;
  }
  ds->group_names = ml__names_new(names, n_groups);
  free(names);
  free(buf);
}

static bool same_episode(const ml_episode *a, const ml_episode *b) {
  return a->n_s == b->n_s && a->n_q == b->n_q && !memcmp(a->xs.data, b->xs.data, sizeof(float) * (size_t)a->xs.numel) &&
         !memcmp(a->xq.data, b->xq.data, sizeof(float) * (size_t)a->xq.numel) &&
         !memcmp(a->ys, b->ys, sizeof(int32_t) * (size_t)a->n_s) && !memcmp(a->yq, b->yq, sizeof(int32_t) * (size_t)a->n_q);
}

ML_TEST(fewshot_deterministic_ordered_distinct) {
  int64_t sizes[30];
  for (int i = 0; i < 30; i++) sizes[i] = 20;
  ml_dataset ds;
  make_ds(&ds, 30, sizes, 8, 3);
  ml_split sp;
  CHECK_OK(ml_split_range(&ds, 0, 30, 1, &sp));
  ml_arena *a1 = ml_arena_new(0, NULL), *a2 = ml_arena_new(0, NULL);
  ml_episode e1, e2, e3;
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 5, 3, 4, 42, 7, 2, a1, &e1));
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 5, 3, 4, 42, 7, 2, a2, &e2));
  CHECK(same_episode(&e1, &e2));
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 5, 3, 4, 42, 7, 3, a2, &e3));
  CHECK(!same_episode(&e1, &e3));
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 5, 3, 4, 43, 7, 2, a2, &e3));
  CHECK(!same_episode(&e1, &e3));
  CHECK(e1.n_way == 5 && e1.k_shot == 3 && e1.q_query == 4 && e1.n_s == 15 && e1.n_q == 20);
  CHECK(e1.xs.ndim == 4 && e1.xs.shape[0] == 15 && e1.xs.shape[1] == 1 && e1.xs.shape[2] == 8 && e1.xq.shape[0] == 20);
  CHECK(e1.ts.data == NULL && e1.tq.data == NULL);
  /* class-major labels; every image of label i comes from one dataset class; no repeats */
  for (int trial = 0; trial < 50; trial++) {
    ml_arena_reset(a1);
    CHECK_OK(ml_fewshot_sample(&ds, &sp, 5, 3, 4, 1, (uint64_t)trial, 0, a1, &e1));
    int cls_of[5], seen[30][20];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 5; i++) cls_of[i] = -1;
    for (int set = 0; set < 2; set++) {
      const ml_tensor *x = set ? &e1.xq : &e1.xs;
      const int32_t *y = set ? e1.yq : e1.ys;
      int64_t per = set ? 4 : 3;
      for (int64_t row = 0; row < x->shape[0]; row++) {
        CHECK(y[row] == row / per);
        int c = (int)(x->data[row * 64] * 255.0f + 0.5f), k = (int)(x->data[row * 64 + 1] * 255.0f + 0.5f);
        if (cls_of[y[row]] < 0) cls_of[y[row]] = c;
        CHECK(cls_of[y[row]] == c);
        CHECK(c < 30 && k < 20);
        if (c < 30 && k < 20) CHECK_MSG(seen[c][k]++ == 0, "drawing (%d, %d) repeated", c, k);
        /* values are pixel / 255 */
        CHECK(x->data[row * 64 + 5] == (float)ml_dataset_image(&ds, c, k)[5] / 255.0f);
      }
    }
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < i; j++) CHECK(cls_of[i] != cls_of[j]);
  }
  /* the evaluation list is fixed and never equals a training draw */
  ml_arena_reset(a1);
  ml_arena_reset(a2);
  ml_episode ev[3];
  CHECK_OK(ml_fewshot_eval_set(&ds, &sp, 5, 1, 5, 2024, 3, a1, ev));
  CHECK_OK(ml_fewshot_eval_episode(&ds, &sp, 5, 1, 5, 2024, 2, a2, &e2));
  CHECK(same_episode(&ev[2], &e2) && !same_episode(&ev[1], &ev[2]));
  CHECK(ml_fewshot_eval_episode(&ds, &sp, 5, 1, 5, 2024, -1, a2, &e2) == ML_ERR_ARG);
  ml_arena_free(a1);
  ml_arena_free(a2);
  ml_split_free(&sp);
  ml_dataset_free(&ds);
}

ML_TEST(rotations) {
  /* rot90 on a 3x3: numpy.rot90([[1,2,3],[4,5,6],[7,8,9]]) = [[3,6,9],[2,5,8],[1,4,7]] */
  uint8_t m[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, o[9], o2[9];
  const uint8_t want[9] = {3, 6, 9, 2, 5, 8, 1, 4, 7};
  ml_image_rot90(m, 1, 3, 1, o);
  CHECK(!memcmp(o, want, 9));
  ml_image_rot90(m, 1, 3, 3, o);
  ml_image_rot90(o, 1, 3, 1, o2);
  CHECK(!memcmp(o2, m, 9));
  uint8_t img[2 * 16], r1[32], r2[32];
  for (int i = 0; i < 32; i++) img[i] = (uint8_t)(i * 7 + 1);
  memcpy(r1, img, 32);
  for (int t = 0; t < 4; t++) {
    ml_image_rot90(r1, 2, 4, 1, r2);
    memcpy(r1, r2, 32);
  }
  CHECK(!memcmp(r1, img, 32));
  ml_image_rot90(img, 2, 4, 2, r1);
  ml_image_rot90(img, 2, 4, 1, r2);
  uint8_t r3[32];
  ml_image_rot90(r2, 2, 4, 1, r3);
  CHECK(!memcmp(r1, r3, 32)); /* rot180 = rot90 twice */
  /* a rotated class's images equal rot90 of the base images */
  int64_t sizes[2] = {3, 3};
  ml_dataset ds;
  make_ds(&ds, 2, sizes, 6, 1);
  ml_split sp;
  int64_t only[1] = {1};
  CHECK_OK(ml_split_from_classes(&ds, only, 1, 4, &sp));
  CHECK(sp.n_classes == 4);
  ml_arena *a = ml_arena_new(0, NULL);
  ml_episode e;
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 4, 1, 2, 5, 0, 0, a, &e));
  int rot_seen[4] = {0};
  for (int64_t row = 0; row < e.n_s + e.n_q; row++) {
    const float *x = row < e.n_s ? e.xs.data + row * 36 : e.xq.data + (row - e.n_s) * 36;
    int32_t label = row < e.n_s ? e.ys[row] : e.yq[row - e.n_s];
    int match = -1;
    for (int k = 0; k < 3 && match < 0; k++)
      for (int r = 0; r < 4 && match < 0; r++) {
        uint8_t rot[36];
        ml_image_rot90(ml_dataset_image(&ds, 1, k), 1, 6, r, rot);
        bool eq = true;
        for (int p = 0; p < 36; p++) eq &= x[p] == rot[p] / 255.0f;
        if (eq) match = r;
      }
    CHECK_MSG(match >= 0, "row %lld is no rotation of a base image", (long long)row);
    if (row < e.n_s && match >= 0) rot_seen[match]++;
    (void)label;
  }
  for (int r = 0; r < 4; r++) CHECK(rot_seen[r] == 1); /* the 4 ways are the 4 rotations */
  ml_split_free(&sp);
  ml_dataset_free(&ds);
  ml_arena_free(a);
}

ML_TEST(errors_for_impossible_episodes) {
  int64_t sizes[6] = {20, 20, 7, 20, 20, 20};
  ml_dataset ds;
  make_ds(&ds, 6, sizes, 4, 2);
  ml_split sp;
  ml_arena *a = ml_arena_new(0, NULL);
  ml_episode e;
  CHECK_OK(ml_split_range(&ds, 0, 6, 1, &sp));
  CHECK(sp.min_class_size == 7);
  ml_status st = ml_fewshot_sample(&ds, &sp, 7, 1, 1, 1, 0, 0, a, &e);
  CHECK(st == ML_ERR_ARG && strstr(ml_last_error(), "7-way") && strstr(ml_last_error(), "6"));
  CHECK(e.xs.data == NULL);
  st = ml_fewshot_sample(&ds, &sp, 5, 5, 3, 1, 0, 0, a, &e);
  CHECK(st == ML_ERR_ARG && strstr(ml_last_error(), "K+Q = 8") && strstr(ml_last_error(), "7"));
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 6, 4, 3, 1, 0, 0, a, &e));
  CHECK(ml_fewshot_sample(&ds, &sp, 0, 1, 1, 1, 0, 0, a, &e) == ML_ERR_ARG);
  CHECK(ml_fewshot_sample(&ds, &sp, 2, 0, 1, 1, 0, 0, a, &e) == ML_ERR_ARG);
  ml_split_free(&sp);
  /* with rotations 24 classes are available */
  CHECK_OK(ml_split_range(&ds, 0, 6, 4, &sp));
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 24, 1, 1, 1, 0, 0, a, &e));
  CHECK(ml_fewshot_sample(&ds, &sp, 25, 1, 1, 1, 0, 0, a, &e) == ML_ERR_ARG);
  ml_split_free(&sp);
  /* split arguments */
  CHECK(ml_split_range(&ds, 3, 9, 1, &sp) == ML_ERR_ARG);
  CHECK(ml_split_range(&ds, 0, 6, 3, &sp) == ML_ERR_ARG);
  int64_t bad[2] = {1, 6};
  CHECK(ml_split_from_classes(&ds, bad, 2, 1, &sp) == ML_ERR_ARG);
  const char *groups[2] = {"g1", "nope"};
  CHECK(ml_split_from_groups(&ds, groups, 2, 1, &sp) == ML_ERR_NOTFOUND && strstr(ml_last_error(), "nope"));
  CHECK_OK(ml_split_from_groups(&ds, groups, 1, 1, &sp));
  CHECK(sp.n_base == 3 && sp.base[0] == 1 && sp.base[1] == 3 && sp.base[2] == 5);
  ml_split_free(&sp);
  ml_split tr, te;
  CHECK(ml_split_maml_omniglot(&ds, 4, &tr, &te) == ML_ERR_ARG);
  ml_dataset_free(&ds);
  ml_arena_free(a);
}

ML_TEST(maml_split_1200_423) {
  static int64_t sizes[1623];
  for (int i = 0; i < 1623; i++) sizes[i] = 2;
  ml_dataset ds;
  make_ds(&ds, 1623, sizes, 2, 2);
  ml_split tr, te;
  CHECK_OK(ml_split_maml_omniglot(&ds, 4, &tr, &te));
  CHECK(tr.n_base == 1200 && tr.n_classes == 4800 && tr.base[0] == 0 && tr.base[1199] == 1199);
  CHECK(te.n_base == 423 && te.n_classes == 423 && te.rotations == 1 && te.base[0] == 1200 && te.base[422] == 1622);
  ml_split_free(&tr);
  ml_split_free(&te);
  ml_split_free(NULL);
  ml_dataset_free(&ds);
}

ML_TEST(sinusoid_tasks) {
  ml_arena *a = ml_arena_new(0, NULL);
  ml_episode e, e2;
  float amin = 1e9f, amax = -1e9f, pmin = 1e9f, pmax = -1e9f, xmin = 1e9f, xmax = -1e9f;
  for (int t = 0; t < 2000; t++) {
    ml_arena_reset(a);
    float amp, ph;
    CHECK_OK(ml_sinusoid_sample(NULL, 10, 5, 3, (uint64_t)t, 1, a, &e, &amp, &ph));
    CHECK(e.n_s == 10 && e.n_q == 5 && e.ys == NULL && e.xs.shape[0] == 10 && e.xs.shape[1] == 1 && e.tq.shape[0] == 5);
    amin = fminf(amin, amp), amax = fmaxf(amax, amp), pmin = fminf(pmin, ph), pmax = fmaxf(pmax, ph);
    for (int i = 0; i < 10; i++) {
      xmin = fminf(xmin, e.xs.data[i]), xmax = fmaxf(xmax, e.xs.data[i]);
      CHECK_NEAR(e.ts.data[i], amp * sinf(e.xs.data[i] - ph), 1e-5);
    }
    for (int i = 0; i < 5; i++) CHECK_NEAR(e.tq.data[i], amp * sinf(e.xq.data[i] - ph), 1e-5);
  }
  CHECK(amin >= 0.1f && amin < 0.2f && amax <= 5.0f && amax > 4.9f);
  CHECK(pmin >= 0.0f && pmin < 0.05f && pmax <= (float)M_PI && pmax > 3.05f);
  CHECK(xmin >= -5.0f && xmin < -4.9f && xmax <= 5.0f && xmax > 4.9f);
  ml_arena_reset(a);
  CHECK_OK(ml_sinusoid_sample(NULL, 5, 5, 3, 10, 4, a, &e, NULL, NULL));
  CHECK_OK(ml_sinusoid_sample(NULL, 5, 5, 3, 10, 4, a, &e2, NULL, NULL));
  CHECK(!memcmp(e.xs.data, e2.xs.data, 20) && !memcmp(e.tq.data, e2.tq.data, 20));
  CHECK_OK(ml_sinusoid_sample(NULL, 5, 5, 3, 10, 5, a, &e2, NULL, NULL));
  CHECK(memcmp(e.xs.data, e2.xs.data, 20) != 0);
  ml_sinusoid_opts o = ml_sinusoid_defaults();
  o.amp_min = 6;
  CHECK(ml_sinusoid_sample(&o, 5, 5, 3, 0, 0, a, &e, NULL, NULL) == ML_ERR_ARG);
  CHECK(ml_sinusoid_sample(NULL, 0, 5, 3, 0, 0, a, &e, NULL, NULL) == ML_ERR_ARG);
  ml_arena_free(a);
}

ML_TEST(real_omniglot_episodes_and_lake_runs) {
  const char *d = ml_test_data_dir();
  char s1[4200], s2[4200], runs_zip[4200];
  if (d) {
    snprintf(s1, sizeof s1, "%s/omniglot/images_background_small1.zip", d);
    snprintf(s2, sizeof s2, "%s/omniglot/images_background_small2.zip", d);
    snprintf(runs_zip, sizeof runs_zip, "%s/omniglot/all_runs.zip", d);
  }
  if (!d || access(s1, R_OK) || access(s2, R_OK) || access(runs_zip, R_OK)) {
    printf("  note: Omniglot files not found under $METALEARN_DATA; real-data checks skipped\n");
    return;
  }
  const char *paths[2] = {s1, s2};
  ml_dataset ds;
  CHECK_OK(ml_omniglot_load_zips(paths, 2, 28, ml_test_tmpdir(), &ds));
  /* within-alphabet split by names, and the full merged set with rotations */
  const char *greek[1] = {"Greek"};
  ml_split g, all;
  CHECK_OK(ml_split_from_groups(&ds, greek, 1, 1, &g));
  CHECK(g.n_classes == 24 && g.min_class_size == 20);
  CHECK_OK(ml_split_range(&ds, 0, ds.n_classes, 4, &all));
  ml_arena *a = ml_arena_new(0, NULL);
  ml_episode e, e2;
  CHECK_OK(ml_fewshot_sample(&ds, &g, 20, 1, 19, 1, 0, 0, a, &e));
  CHECK(ml_fewshot_sample(&ds, &g, 25, 1, 1, 1, 0, 0, a, &e) == ML_ERR_ARG);
  CHECK(ml_fewshot_sample(&ds, &g, 5, 1, 20, 1, 0, 0, a, &e) == ML_ERR_ARG);
  CHECK_OK(ml_fewshot_eval_episode(&ds, &all, 20, 5, 15, 7, 3, a, &e));
  CHECK_OK(ml_fewshot_eval_episode(&ds, &all, 20, 5, 15, 7, 3, a, &e2));
  CHECK(same_episode(&e, &e2) && e.xs.shape[2] == 28);

  ml_lake_runs r;
  CHECK_OK(ml_lake_runs_load(runs_zip, 28, &r));
  for (int64_t run = 0; run < 20; run++) {
    ml_arena_reset(a);
    CHECK_OK(ml_lake_episode(&r, run, a, &e));
    CHECK(e.n_way == 20 && e.n_s == 20 && e.n_q == 20 && e.ys[19] == 19);
    CHECK(e.yq[0] == r.test_label[run * 20] && e.xq.data[5] == r.test[run * 20 * 784 + 5] / 255.0f);
  }
  CHECK(ml_lake_episode(&r, 20, a, &e) == ML_ERR_ARG);
  ml_lake_runs_free(&r);
  ml_split_free(&g);
  ml_split_free(&all);
  ml_arena_free(a);
  ml_dataset_free(&ds);
}

/* The exported source of each example (image index, rotation) rebuilds the episode's pixels:
 * benchmarks hand these indices to a PyTorch reference so both train on the same tasks. */
ML_TEST(episode_sources_rebuild_pixels) {
  ml_dataset ds;
  memset(&ds, 0, sizeof ds);
  CHECK_OK(ml__dataset_alloc(&ds, 12, 3, 1, 1, 4, 4));
  for (int64_t i = 0; i < 12 * 16; i++) ds.pixels[i] = (uint8_t)((i * 37) % 251);
  for (int c = 0; c <= 3; c++) ds.class_offset[c] = 4 * c;
  ml_split sp;
  CHECK_OK(ml_split_range(&ds, 0, 3, 4, &sp));
  ml_arena *ar = ml_arena_new(0, NULL);
  ml_episode ep;
  CHECK_OK(ml_fewshot_sample(&ds, &sp, 3, 1, 2, 5, 0, 0, ar, &ep));
  uint8_t rot[16];
  for (int64_t i = 0; i < ep.n_s + ep.n_q; i++) {
    bool s = i < ep.n_s;
    int64_t j = s ? i : i - ep.n_s;
    const uint8_t *img = ds.pixels + 16 * (s ? ep.src_s : ep.src_q)[j];
    ml_image_rot90(img, 1, 4, (s ? ep.rot_s : ep.rot_q)[j], rot);
    const float *x = (s ? ep.xs.data : ep.xq.data) + 16 * j;
    for (int k = 0; k < 16; k++) CHECK(x[k] == (float)rot[k] / 255.0f);
  }
  ml_arena_free(ar);
  ml_split_free(&sp);
  ml_dataset_free(&ds);
}
