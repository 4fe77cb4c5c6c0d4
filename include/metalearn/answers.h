/* answers: student answer logs, the data of knowledge tracing and of "students as tasks".
 *
 * Two file formats:
 *  - the three-line knowledge-tracing format of the DKT / DKVMN papers, three lines per student:
 *        15
 *        1,1,1,4,4,7,...        (exercise or skill ids, non-negative integers)
 *        0,1,1,0,1,1,...        (0/1 correctness, as many as ids)
 *    A trailing comma, CRLF line ends and blank lines at the end of the file are accepted.
 *  - the long CSV a tutoring system exports, one row per answer with a header row naming the
 *    columns (student, exercise, skill(s), correct, order or timestamp). Column names are
 *    options; the defaults match the ASSISTments skill-builder export (user_id, problem_id,
 *    skill_id, correct, order_id). Fields may be quoted ("a,b", "" for a quote).
 * plus the STATICS Q-matrix (Qmatrix.csv: one row of 0/1 per exercise, one column per skill).
 *
 * Original ids are strings mapped to dense 0-based indices by an ml_idmap. Pass the same map to
 * every file of one dataset (train, valid, test) so that an id means the same index in all of
 * them; ml_kt_dataset_load does that for the shared data folder.
 *
 * Errors: every reader returns ML_ERR_FORMAT (or ML_ERR_IO / ML_ERR_NOMEM) with a one-line
 * message "<path>:<line>: <what>" in ml_last_error(), and leaves its output empty. Readers are
 * safe on hostile input: counts are checked against what the file holds before anything is
 * allocated from them, sizes are checked for overflow, files larger than ML_ANSWERS_MAX_BYTES
 * are refused. */
#ifndef METALEARN_ANSWERS_H
#define METALEARN_ANSWERS_H

#include "metalearn/base.h"

#define ML_ANSWERS_MAX_BYTES ((size_t)1 << 31) /* largest answer file read (2 GiB) */
#define ML_ANSWERS_MAX_ID 64                    /* longest id string, in bytes */

/* ---- id map: original id (a string) <-> dense index 0..n-1, in order of first insertion ---- */
typedef struct {
  int64_t n;      /* ids held */
  char **names;   /* names[i] = original id of index i (owned) */
  int64_t cap;    /* internal: capacity of names */
  int64_t *slots; /* internal: open-addressing hash table of indices, -1 = empty */
  int64_t n_slots;
} ml_idmap;

ML_API void ml_idmap_init(ml_idmap *m);  /* an empty map (all zero is also valid) */
ML_API void ml_idmap_free(ml_idmap *m);  /* frees and empties; NULL-safe */
/* Index of id (len bytes, no NUL needed), inserting it when absent. */
ML_API ml_status ml_idmap_add(ml_idmap *m, const char *id, size_t len, int64_t *index);
/* Index of id, or -1 when absent. */
ML_API int64_t ml_idmap_find(const ml_idmap *m, const char *id, size_t len);

/* ---- answers of many students, each a contiguous run ----
 * Student s answered rows [offsets[s], offsets[s+1]) in order. item and skill are dense indices
 * into the maps given to the reader (-1 = none: a CSV row without a skill, or a format without
 * exercises). All arrays owned; free with ml_answers_free. */
typedef struct {
  int64_t n_students, n_answers;
  int64_t *offsets;   /* n_students + 1, offsets[0] = 0 */
  int32_t *item;      /* n_answers: exercise index, or -1 */
  int32_t *skill;     /* n_answers: (first) skill index, or -1 */
  uint8_t *correct;   /* n_answers: 0 or 1 */
  char **student_ids; /* n_students original ids (CSV), or NULL (KT format: file order) */
} ml_answers;

ML_API void ml_answers_free(ml_answers *a); /* frees and zeroes; NULL-safe */
static inline int64_t ml_answers_len(const ml_answers *a, int64_t s) {
  return a->offsets[s + 1] - a->offsets[s];
}
/* Copies the students listed in idx (n of them, in that order) into out. */
ML_API ml_status ml_answers_subset(const ml_answers *a, const int64_t *idx, int64_t n, ml_answers *out);

/* Three-line KT file. The ids go through ids (required). ids_are_skills: the ids are skills
 * (ASSISTments files) -> skill[] = id index and item[] = the same index (each skill is its own
 * exercise); otherwise they are exercises (STATICS) -> item[] = id index, skill[] = -1 (fill it
 * from a Q-matrix with ml_answers_apply_qmatrix). */
ML_API ml_status ml_answers_read_kt(const char *path, ml_idmap *ids, bool ids_are_skills, ml_answers *out);
/* The same from a buffer; name is used in error messages. */
ML_API ml_status ml_answers_parse_kt(const char *buf, size_t len, const char *name, ml_idmap *ids,
                                     bool ids_are_skills, ml_answers *out);

/* Long CSV options; ml_answers_csv_defaults() gives the ASSISTments skill-builder names. */
typedef struct {
  const char *student_col; /* "user_id" */
  const char *item_col;    /* "problem_id" */
  const char *skill_col;   /* "skill_id"; NULL or "" = no skill column */
  const char *correct_col; /* "correct" */
  const char *order_col;   /* "order_id" (integer or decimal, e.g. a unix time); NULL or "" =
                              file order */
  char delimiter;          /* ',' ('\t' for TSV) */
  char skill_sep;          /* '_': "12_17" in a skill field lists two skills; 0 = one per field */
} ml_answers_csv_options;

ML_API ml_answers_csv_options ml_answers_csv_defaults(void);

/* Long CSV. Students appear in order of their first row; each student's answers are sorted by
 * the order column (stable: ties keep file order). Rows of one student with the same order value
 * and the same exercise are one answer listed once per skill (the skill-builder export does
 * that): they are merged, and must agree on correct. Every (exercise, skill) pair seen is
 * recorded in q (item -> skills) when q is not NULL, so multi-skill exercises are kept.
 * A column named in opt that the header lacks, a row with the wrong number of fields, a
 * correct value other than 0/1, an empty id or an order that is not a number is an error. */
typedef struct ml_qmatrix ml_qmatrix;
ML_API ml_status ml_answers_read_csv(const char *path, const ml_answers_csv_options *opt, ml_idmap *students,
                                     ml_idmap *items, ml_idmap *skills, ml_qmatrix *q, ml_answers *out);
ML_API ml_status ml_answers_parse_csv(const char *buf, size_t len, const char *name,
                                      const ml_answers_csv_options *opt, ml_idmap *students, ml_idmap *items,
                                      ml_idmap *skills, ml_qmatrix *q, ml_answers *out);

/* ---- Q-matrix: exercise -> skills, as compressed rows ----
 * Exercise i has skills skills[offsets[i] .. offsets[i+1]) (sorted, no duplicates). */
struct ml_qmatrix {
  int64_t n_items, n_skills;
  int64_t *offsets; /* n_items + 1 */
  int32_t *skills;
};
ML_API void ml_qmatrix_free(ml_qmatrix *q); /* NULL-safe */
/* STATICS Qmatrix.csv: row r (0-based) = exercise with original id "<r + first_id>" (STATICS ids
 * start at 1), comma-separated 0/1 columns = skills (skill index = column). Every row must have
 * the same number of columns. Exercise ids are looked up in items (an id absent from items, i.e.
 * an exercise no student answered, is skipped); the result has items->n rows. */
ML_API ml_status ml_qmatrix_read(const char *path, const ml_idmap *items, int64_t first_id, ml_qmatrix *out);
/* skill[i] = first skill of item[i] (or -1 when the exercise has none). */
ML_API void ml_answers_apply_qmatrix(ml_answers *a, const ml_qmatrix *q);

/* ---- a knowledge-tracing dataset folder (as in ../shared/data/knowledge-tracing) ----
 * <dir>/<prefix>_train.csv and <prefix>_test.csv, with folds <prefix>_train<f>.csv /
 * <prefix>_valid<f>.csv, and for STATICS a Qmatrix.csv. fold 0: train = the full training file,
 * valid empty; fold 1..5: train = train<f>, valid = valid<f> (the full train file is train<f> +
 * valid<f>). The id map is built over the full train file then the test file, so indices do not
 * depend on the fold. When Qmatrix.csv is present the ids are exercises and skills come from the
 * Q-matrix; otherwise the ids are skills (items = skills). Free with ml_kt_dataset_free. */
typedef struct {
  ml_answers train, valid, test;
  ml_idmap items, skills; /* skills is empty when items are skills: use n_skills */
  ml_qmatrix q;           /* item -> skills (identity when the ids are skills) */
  int64_t n_items, n_skills;
  bool ids_are_skills;
} ml_kt_dataset;

ML_API ml_status ml_kt_dataset_load(const char *dir, const char *prefix, int fold, ml_kt_dataset *out);
ML_API void ml_kt_dataset_free(ml_kt_dataset *d);

/* Known sizes of the shared files (students, distinct ids, answers over train + test), from the
 * issue and the data folder's logs; checked by the tests and by `metalearn train` on load. */
typedef struct {
  const char *name, *prefix;
  int64_t students, ids, answers;
} ml_kt_facts;
/* The facts for a dataset name ("assist2009_updated", "assist2015", "STATICS"), or NULL. */
ML_API const ml_kt_facts *ml_kt_facts_find(const char *name);
/* ML_ERR_FORMAT naming the first count that differs from f (train + test of d). */
ML_API ml_status ml_kt_dataset_check_facts(const ml_kt_dataset *d, const ml_kt_facts *f);

#endif
