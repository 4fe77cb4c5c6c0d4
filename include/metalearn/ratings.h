/* ratings: explicit-feedback rating logs (MovieLens) held in memory, with the side features a
 * cold-start recommender can use, and their readers:
 *   100K: u.data (user \t item \t rating \t time), u.user (id|age|gender|occupation|zip),
 *         u.item (id|title|date|video date|url|19 genre flags), titles in Latin-1;
 *   1M:   ratings.dat, users.dat (id::gender::age code::occupation code::zip), movies.dat
 *         (id::title (year)::A|B genres), "::" separated;
 *   CSV:  ratings.csv (userId,movieId,rating,timestamp), movies.csv (movieId,"title (year)",A|B)
 *         with a header line and quoted titles; no user demographics.
 * Every feature is a small category index where 0 means "unknown", so models work when a format
 * lacks a field. Bad input (malformed line, rating off the scale, unknown id, empty file) is an
 * ML_ERR_FORMAT error whose message names file:line. Decoded data is cached like the image
 * datasets (see data.h for the cache_dir convention). */
#ifndef METALEARN_RATINGS_H
#define METALEARN_RATINGS_H

#include "metalearn/base.h"

typedef enum { ML_RATINGS_100K, ML_RATINGS_1M, ML_RATINGS_CSV } ml_ratings_format;

#define ML_RATINGS_MAX_GENRES 32
/* Category counts including the 0 = unknown slot. */
#define ML_RATINGS_N_GENDER 3 /* unknown, M, F */
#define ML_RATINGS_N_AGE 8    /* unknown, <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+ (1M's codes) */
#define ML_RATINGS_N_OCC 32   /* unknown + up to 31 occupations (more map to unknown) */
#define ML_RATINGS_N_ZIP 11   /* unknown, first digit 0-9 */
#define ML_RATINGS_N_YEAR 11  /* unknown, <1940, 1940s .. 1980s, 1990-94, 1995-99, 2000s, 2010+ */

/* Ratings sorted by user, then time, then item. Users and items are dense indices 0..n-1 in
 * the order of their external ids. All arrays are owned; free with ml_ratings_free. */
typedef struct {
  ml_ratings_format format;
  int64_t n_users, n_items, n_ratings;
  int32_t *user, *item;  /* n_ratings */
  float *rating;         /* n_ratings */
  int64_t *time;         /* n_ratings (seconds) */
  int64_t *user_offset;  /* n_users + 1: user u's ratings are [user_offset[u], user_offset[u+1]) */
  int64_t *user_id, *item_id; /* external ids */
  uint8_t *gender, *age, *occupation, *zip; /* per user, 0 = unknown */
  uint8_t *year;         /* per item, 0 = unknown */
  uint32_t *genres;      /* per item, bit g = genre g */
  int64_t n_genres;
  char **genre_names;    /* n_genres */
  char **occupation_names; /* ML_RATINGS_N_OCC entries, "" where unused */
  char **titles;         /* per item, UTF-8 ("" when unknown) */
  float rating_min, rating_max, rating_step; /* 1, 5, 1 (100K, 1M); 0.5, 5, 0.5 (CSV) */
} ml_ratings;

/* Reads a MovieLens directory, detecting the format by its files (u.data, ratings.dat,
 * ratings.csv). Users and items files are optional in 1M / CSV (features then unknown); when an
 * items file is present a rating of an item it does not list is an error. */
ML_API ml_status ml_ratings_load(const char *dir, const char *cache_dir, ml_ratings *out);
ML_API void ml_ratings_free(ml_ratings *r); /* NULL-safe; zeroes *r */

/* Mean rating of each item over the ratings with keep[i] != 0 (keep NULL = all), damped toward
 * the global mean of those ratings by `damping` pseudo-ratings. Writes n_items floats and
 * returns the global mean. */
ML_API double ml_ratings_item_means(const ml_ratings *r, const uint8_t *keep, double damping, float *out);

/* Latin-1 to UTF-8 (100K titles); writes at most cap bytes including the NUL. */
ML_API void ml_latin1_to_utf8(const char *in, char *out, size_t cap);

#endif
