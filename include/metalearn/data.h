/* data: image datasets held in memory as compact uint8 pixels, and their readers: Omniglot as
 * distributed (the official zips), Omniglot as NumPy .npz arrays, Lake et al.'s 20 one-shot runs
 * (all_runs.zip) and a generic image folder (one subfolder per class, PNG or JPEG).
 *
 * Pixel convention: Omniglot is stored inverted, ink (stroke) = 255 and background = 0, so that
 * a zero-padded or averaged image means "no ink". A batch converts to float as value / 255.
 * Image folders are stored as they are (no inversion).
 * Resizing is area averaging (a box filter: each output pixel is the coverage-weighted mean of
 * the source pixels under it, like OpenCV's INTER_AREA), applied after inversion and rounded
 * to the nearest integer. The usual Python pipeline uses PIL's LANCZOS; the two agree to within
 * a few grey levels on Omniglot's binary strokes, but are not bit-identical.
 *
 * Decoded arrays are cached in a compact binary file so a second load starts at once. The
 * cache_dir argument: NULL = the default ($XDG_CACHE_HOME/metalearn, else ~/.cache/metalearn),
 * "" = no cache, otherwise that directory (created if missing). A cache file is keyed by the
 * source paths, their sizes and mtimes and the image size; it is validated on read (magic,
 * version, key, sizes, checksum) and rebuilt when anything is off. */
#ifndef METALEARN_DATA_H
#define METALEARN_DATA_H

#include "metalearn/tensor.h"

/* Largest PNG / JPEG side accepted; larger images are rejected as hostile input. */
#define ML_IMAGE_MAX_SIDE 4096

/* A labelled image set. Images of class c are rows [class_offset[c], class_offset[c+1]) of
 * pixels (class sizes may vary), each C*H*W bytes in CHW order. Each class belongs to one group
 * (Omniglot: its alphabet). All arrays are owned by the dataset; free with ml_dataset_free.
 * Callers read the fields; only the loaders write them. */
typedef struct {
  int64_t n_images, n_classes, n_groups;
  int64_t channels, height, width;
  uint8_t *pixels;        /* n_images * channels * height * width */
  int64_t *class_offset;  /* n_classes + 1 entries, class_offset[0] = 0 */
  int32_t *class_group;   /* n_classes: index into group_names */
  char **class_names;     /* n_classes, e.g. "Greek/character01" */
  char **group_names;     /* n_groups, e.g. "Greek" */
} ml_dataset;

/* Omniglot from the official zips (images_background*.zip, images_evaluation.zip: entries
 * [prefix/]alphabet/character/NNNN_MM.png). Several zips are merged: a character present in
 * more than one (the small zips share Greek and Latin) is kept once, and a drawing (file name)
 * present twice is kept once. Classes are sorted by alphabet then character name, drawings by
 * file name, groups are alphabets in sorted order. image_size: output side (0 = keep 105). */
ML_API ml_status ml_omniglot_load_zips(const char *const *paths, int n_paths, int64_t image_size,
                                       const char *cache_dir, ml_dataset *out);

/* Omniglot from a NumPy .npz (a zip of .npy) holding `images` bool (N, D, H, W), True = white
 * background, and optionally `labels` int64 (N, D). Row i becomes class i (its name is
 * "<file stem>/NNNN", NNNN = i), all in one group named after the file stem. */
ML_API ml_status ml_omniglot_load_npz(const char *path, int64_t image_size, const char *cache_dir,
                                      ml_dataset *out);

/* The full 1623-character set for the MAML split: background.npz rows 0..963 then
 * evaluation.npz rows 0..658 (classes 964..1622), groups "images_background" and
 * "images_evaluation". See ml_split_maml_omniglot in tasks.h. */
ML_API ml_status ml_omniglot_load_full(const char *background_npz, const char *evaluation_npz,
                                       int64_t image_size, const char *cache_dir, ml_dataset *out);

/* Bring-your-own data: dir/<class>/<image>.{png,jpg,jpeg} (case-insensitive; hidden files and
 * other extensions skipped). Classes sorted by folder name, images by file name; one group named
 * after dir. channels 1 (luminance) or 3 (RGB); alpha is composited over white. Images of any
 * size are resized (area averaging) to image_size x image_size; aspect ratio is not kept. No
 * inversion and no cache. */
ML_API ml_status ml_image_folder_load(const char *dir, int64_t image_size, int64_t channels,
                                      ml_dataset *out);

/* One PNG or JPEG file decoded and resized like ml_image_folder_load into out
 * (channels * image_size * image_size bytes). */
ML_API ml_status ml_image_load(const char *path, int64_t image_size, int64_t channels, uint8_t *out);

ML_API void ml_dataset_free(ml_dataset *ds); /* frees the arrays and zeroes *ds; NULL-safe */
ML_API int64_t ml_dataset_class_size(const ml_dataset *ds, int64_t c);
/* Image k of class c (C*H*W bytes), or NULL when out of range. Valid until ml_dataset_free. */
ML_API const uint8_t *ml_dataset_image(const ml_dataset *ds, int64_t c, int64_t k);
/* Class index whose name equals name, or -1. */
ML_API int64_t ml_dataset_find_class(const ml_dataset *ds, const char *name);
/* a's classes then b's (groups concatenated too). Same C, H, W required. Caller frees out. */
ML_API ml_status ml_dataset_concat(const ml_dataset *a, const ml_dataset *b, ml_dataset *out);

/* Lake et al.'s 20-way within-alphabet one-shot test (all_runs.zip: run01..run20, each with
 * training/classNN.png, test/itemNN.png and class_labels.txt mapping test to training).
 * Training image j of a run is class j; test image i belongs to class test_label[i]. Same pixel
 * convention (ink = 255) and resizing as the Omniglot loaders. Free with ml_lake_runs_free. */
typedef struct {
  int64_t n_runs, n_train, n_test; /* 20, 20, 20 */
  int64_t channels, height, width;
  uint8_t *train;      /* (n_runs, n_train, C, H, W) */
  uint8_t *test;       /* (n_runs, n_test, C, H, W) */
  int32_t *test_label; /* (n_runs, n_test): training index of each test image */
} ml_lake_runs;

ML_API ml_status ml_lake_runs_load(const char *all_runs_zip, int64_t image_size, ml_lake_runs *out);
ML_API void ml_lake_runs_free(ml_lake_runs *runs);

/* ---- image helpers (exposed for tests and samplers) ---- */
/* Area-averaging resize of one channel plane, src (sh, sw) -> dst (dh, dw). */
ML_API void ml_image_resize_area(const uint8_t *src, int64_t sh, int64_t sw, uint8_t *dst, int64_t dh,
                                 int64_t dw);
/* Rotates a (C, S, S) image counter-clockwise by k * 90 degrees, as numpy.rot90(img, k, (1, 2)):
 * dst[c][i][j] = src[c][j][S-1-i] for k = 1. src and dst must not overlap. */
ML_API void ml_image_rot90(const uint8_t *src, int64_t c, int64_t s, int k, uint8_t *dst);

/* The default cache directory into buf ($XDG_CACHE_HOME/metalearn or ~/.cache/metalearn);
 * ML_ERR_NOTFOUND when neither variable is set. */
ML_API ml_status ml_cache_dir_default(char *buf, size_t n);

#endif
