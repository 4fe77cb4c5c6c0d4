/* answers: the three-line KT reader, the long CSV reader and the Q-matrix reader on small files
 * written here (every bad input gives ML_ERR_FORMAT and a one-line "<file>:<line>:" message),
 * random corruptions of a valid file (must never crash: run under ASan), and the real
 * knowledge-tracing folders against the dataset facts when they are present. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "metalearn/answers.h"

static char *path_in(const char *name) {
  static char buf[8][4096];
  static int at;
  char *p = buf[at++ % 8];
  snprintf(p, 4096, "%s/%s", ml_test_tmpdir(), name);
  return p;
}

static const char *write_text(const char *name, const char *text) {
  const char *p = path_in(name);
  ml_test_write_file(p, text, strlen(text));
  return p;
}

/* The reader fails with FORMAT and a single-line message naming "<path>:<line>:". */
static void expect_error(ml_status st, const char *path, int line, const char *what) {
  CHECK_MSG(st == ML_ERR_FORMAT, "%s: status %d (%s), expected FORMAT", what, (int)st, ml_last_error());
  char want[4200];
  snprintf(want, sizeof want, "%s:%d:", path, line);
  const char *msg = ml_last_error();
  CHECK_MSG(strstr(msg, want) != NULL, "%s: message '%s' does not name '%s'", what, msg, want);
  CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message spans several lines", what);
}

static ml_status kt_file(const char *name, const char *text, const char **path, ml_answers *a) {
  *path = write_text(name, text);
  ml_idmap ids;
  ml_idmap_init(&ids);
  ml_status st = ml_answers_read_kt(*path, &ids, true, a);
  ml_idmap_free(&ids);
  return st;
}

/* ---------------------------------------------------------------- KT format ---- */

ML_TEST(kt_reads_students_and_shares_ids) {
  /* CRLF, a trailing comma (as in the STATICS files), leading zeros, blank lines at the end. */
  const char *train = write_text("kt_train.csv", "3\r\n5,7,5,\r\n1,0,1,\r\n2\n07,9\n0,0\n\n\n");
  const char *test = write_text("kt_test.csv", "1\n9\n1\n4\n5,11,11,7\n1,1,0,1\n");
  ml_idmap ids;
  ml_idmap_init(&ids);
  ml_answers tr, te;
  CHECK_OK(ml_answers_read_kt(train, &ids, true, &tr));
  CHECK_OK(ml_answers_read_kt(test, &ids, true, &te));
  CHECK(tr.n_students == 2 && tr.n_answers == 5);
  CHECK(tr.offsets[0] == 0 && tr.offsets[1] == 3 && tr.offsets[2] == 5);
  CHECK(ids.n == 4); /* 5, 7, 9, 11 */
  int64_t i5 = ml_idmap_find(&ids, "5", 1), i7 = ml_idmap_find(&ids, "7", 1), i9 = ml_idmap_find(&ids, "9", 1),
          i11 = ml_idmap_find(&ids, "11", 2);
  CHECK(i5 >= 0 && i7 >= 0 && i9 >= 0 && i11 >= 0);
  CHECK(tr.item[0] == i5 && tr.item[1] == i7 && tr.item[2] == i5 && tr.item[3] == i7 && tr.item[4] == i9);
  CHECK(tr.skill[3] == tr.item[3]); /* ids are skills */
  CHECK(tr.correct[0] == 1 && tr.correct[1] == 0 && tr.correct[2] == 1 && tr.correct[3] == 0);
  CHECK(te.n_students == 2 && te.n_answers == 5);
  CHECK(te.item[0] == i9 && te.item[1] == i5 && te.item[2] == i11 && te.item[4] == i7);
  CHECK(te.student_ids == NULL);
  /* Subset copies students in the given order. */
  ml_answers sub;
  int64_t idx[2] = {1, 0};
  CHECK_OK(ml_answers_subset(&tr, idx, 2, &sub));
  CHECK(sub.n_answers == 5 && sub.offsets[1] == 2 && sub.item[0] == i7 && sub.item[2] == i5);
  ml_answers_free(&sub);
  ml_answers_free(&tr);
  ml_answers_free(&te);
  ml_idmap_free(&ids);
}

ML_TEST(kt_exercise_ids_get_skills_from_qmatrix) {
  const char *kt = write_text("q_kt.csv", "3\n1,3,2\n1,1,0\n");
  const char *qm = write_text("q_Qmatrix.csv", "0,1,0\n0,0,1\n1,0,0\n0,1,0\n");
  ml_idmap ids;
  ml_idmap_init(&ids);
  ml_answers a;
  ml_qmatrix q;
  CHECK_OK(ml_answers_read_kt(kt, &ids, false, &a));
  CHECK(a.skill[0] == -1);
  CHECK_OK(ml_qmatrix_read(qm, &ids, 1, &q));
  CHECK(q.n_items == 3 && q.n_skills == 3); /* id 4 (row 4) was never answered: skipped */
  ml_answers_apply_qmatrix(&a, &q);
  CHECK(a.skill[0] == 1 && a.skill[1] == 0 && a.skill[2] == 2);
  ml_qmatrix_free(&q);
  const char *bad = write_text("q_bad.csv", "0,1,0\n0,0\n");
  expect_error(ml_qmatrix_read(bad, &ids, 1, &q), bad, 2, "ragged Q-matrix");
  bad = write_text("q_bad2.csv", "0,1,0\n0,2,0\n");
  expect_error(ml_qmatrix_read(bad, &ids, 1, &q), bad, 2, "non-0/1 Q-matrix cell");
  bad = write_text("q_empty.csv", "");
  expect_error(ml_qmatrix_read(bad, &ids, 1, &q), bad, 1, "empty Q-matrix");
  ml_answers_free(&a);
  ml_idmap_free(&ids);
}

ML_TEST(kt_bad_inputs_name_file_and_line) {
  struct {
    const char *text;
    int line;
    const char *what;
  } cases[] = {
      {"3\n1,2\n1,0\n", 1, "length line disagreeing with the ids"},
      {"2\n1,2\n1,0\n3\n1,2,3,4\n0,0,0,0\n", 4, "length disagreeing, second student"},
      {"2\n1,2\n1,2\n", 3, "non-0/1 answer"},
      {"2\n1,2\n1,yes\n", 3, "non-numeric answer"},
      {"2\n1,2\n1\n", 3, "fewer answers than ids"},
      {"", 1, "empty file"},
      {"\n\n", 1, "blank file"},
      {"2\n1,x\n1,0\n", 2, "non-integer id"},
      {"2\n1,-3\n1,0\n", 2, "negative id"},
      {"2\n1,,2\n1,0\n", 2, "empty id"},
      {"two\n1,2\n1,0\n", 1, "length not a number"},
      {"99999999999999999\n1\n1\n", 1, "huge length"},
      {"999999999999999999999999\n1\n1\n", 1, "overflowing length"},
      {"2\n1,2\n", 2, "answers line missing"},
      {"2\n", 1, "ids line missing"},
      {"1\n1\n1\n\n1\n1\n1\n", 4, "blank line between students"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "kt_bad%zu.csv", i);
    const char *path;
    ml_answers a;
    ml_status st = kt_file(name, cases[i].text, &path, &a);
    expect_error(st, path, cases[i].line, cases[i].what);
    CHECK(a.n_students == 0 && a.offsets == NULL);
    if (st == ML_OK) ml_answers_free(&a);
  }
}

ML_TEST(kt_missing_file) {
  ml_idmap ids;
  ml_idmap_init(&ids);
  ml_answers a;
  ml_status st = ml_answers_read_kt(path_in("does_not_exist.csv"), &ids, true, &a);
  CHECK(st == ML_ERR_NOTFOUND);
  CHECK(strstr(ml_last_error(), "does_not_exist.csv") != NULL);
  ml_idmap_free(&ids);
}

/* Random byte edits of a valid file: every result is either a clean parse with consistent
 * arrays or an error with a message naming the file. */
ML_TEST(kt_survives_corruption) {
  const char *good = "5\n1,2,3,2,1\n1,0,1,1,0\n3\n4,4,10\n0,1,1\n1\n7\n1\n";
  size_t n = strlen(good);
  char *buf = malloc(n + 8);
  const char junk[] = "0123456789,\n\r -x9";
  ml_rng r;
  ml_rng_init(&r, 7, 0);
  for (int t = 0; t < 3000; t++) {
    memcpy(buf, good, n);
    size_t m = n;
    int edits = 1 + (int)ml_rng_below(&r, 3);
    for (int k = 0; k < edits; k++) {
      uint32_t op = ml_rng_below(&r, 3), at = ml_rng_below(&r, (uint32_t)m);
      if (op == 0) buf[at] = junk[ml_rng_below(&r, sizeof junk - 1)];
      if (op == 1 && m > 1) memmove(buf + at, buf + at + 1, m-- - at - 1);
      if (op == 2) m = at; /* truncate */
    }
    ml_idmap ids;
    ml_idmap_init(&ids);
    ml_answers a;
    ml_status st = ml_answers_parse_kt(buf, m, "fuzz.csv", &ids, true, &a);
    if (st == ML_OK) {
      CHECK(a.offsets[a.n_students] == a.n_answers);
      for (int64_t i = 0; i < a.n_answers; i++) CHECK(a.item[i] >= 0 && a.item[i] < ids.n && a.correct[i] <= 1);
      ml_answers_free(&a);
    } else {
      CHECK(strncmp(ml_last_error(), "fuzz.csv:", 9) == 0);
    }
    ml_idmap_free(&ids);
    if (ml_test_failed_now()) break;
  }
  free(buf);
}

/* ---------------------------------------------------------------- long CSV ---- */

ML_TEST(csv_skill_builder_defaults) {
  /* Skill-builder style: extra quoted columns, rows out of order, one answer listed twice (two
   * skills), a "12_17" multi-skill field, an answer without a skill. */
  const char *p = write_text("sb.csv",
                             "order_id,assignment_id,user_id,problem_id,correct,skill_id,skill_name\n"
                             "30,1,u2,p1,1,12,\"Addition, whole\"\n"
                             "10,1,u1,p1,0,12,\"Addition, whole\"\n"
                             "20,1,u1,p2,1,12,\"Addition, whole\"\n"
                             "20,1,u1,p2,1,17,\"Sub \"\"traction\"\"\"\n"
                             "15,1,u1,p3,1,12_17,x\r\n"
                             "40,1,u2,p3,0,,\n");
  ml_idmap st, it, sk;
  ml_idmap_init(&st);
  ml_idmap_init(&it);
  ml_idmap_init(&sk);
  ml_qmatrix q = {0};
  ml_answers a;
  ml_answers_csv_options o = ml_answers_csv_defaults();
  CHECK_OK(ml_answers_read_csv(p, &o, &st, &it, &sk, &q, &a));
  CHECK(a.n_students == 2 && a.n_answers == 5);
  CHECK(strcmp(a.student_ids[0], "u2") == 0 && strcmp(a.student_ids[1], "u1") == 0); /* first appearance */
  int64_t p1 = ml_idmap_find(&it, "p1", 2), p2 = ml_idmap_find(&it, "p2", 2), p3 = ml_idmap_find(&it, "p3", 2);
  int64_t s12 = ml_idmap_find(&sk, "12", 2), s17 = ml_idmap_find(&sk, "17", 2);
  CHECK(sk.n == 2 && s12 >= 0 && s17 >= 0);
  /* u2: p1 (order 30), p3 (40, no skill) */
  CHECK(a.offsets[1] == 2 && a.item[0] == p1 && a.item[1] == p3 && a.skill[1] == -1 && a.correct[1] == 0);
  /* u1 sorted by order: p1 (10), p3 (15), p2 (20, two rows merged) */
  CHECK(a.item[2] == p1 && a.item[3] == p3 && a.item[4] == p2);
  CHECK(a.correct[2] == 0 && a.correct[3] == 1 && a.correct[4] == 1);
  CHECK(a.skill[4] == s12);
  /* Q: p2 and p3 have skills 12 and 17, p1 has 12 */
  CHECK(q.n_items == 3 && q.n_skills == 2);
  CHECK(q.offsets[p2 + 1] - q.offsets[p2] == 2 && q.offsets[p3 + 1] - q.offsets[p3] == 2);
  CHECK(q.offsets[p1 + 1] - q.offsets[p1] == 1 && q.skills[q.offsets[p1]] == s12);
  ml_answers_free(&a);
  ml_qmatrix_free(&q);
  ml_idmap_free(&st);
  ml_idmap_free(&it);
  ml_idmap_free(&sk);
}

ML_TEST(csv_configurable_columns) {
  const char *p = write_text("tsv.tsv", "learner\tquestion\tok\tt\nA\tq9\t1.0\t1700000000.5\nA\tq8\t0\t1600000000\n");
  ml_answers_csv_options o = {"learner", "question", NULL, "ok", "t", '\t', 0};
  ml_idmap st, it, sk;
  ml_idmap_init(&st);
  ml_idmap_init(&it);
  ml_idmap_init(&sk);
  ml_answers a;
  CHECK_OK(ml_answers_read_csv(p, &o, &st, &it, &sk, NULL, &a));
  CHECK(a.n_students == 1 && a.n_answers == 2);
  CHECK(a.item[0] == ml_idmap_find(&it, "q8", 2) && a.correct[0] == 0 && a.correct[1] == 1 && a.skill[0] == -1);
  ml_answers_free(&a);
  /* Without an order column, file order is kept. */
  o.order_col = "";
  CHECK_OK(ml_answers_read_csv(p, &o, &st, &it, &sk, NULL, &a));
  CHECK(a.item[0] == ml_idmap_find(&it, "q9", 2));
  ml_answers_free(&a);
  ml_idmap_free(&st);
  ml_idmap_free(&it);
  ml_idmap_free(&sk);
}

ML_TEST(csv_bad_inputs_name_file_and_line) {
  const char *hdr = "user_id,problem_id,skill_id,correct,order_id\n";
  struct {
    const char *body;
    bool with_header;
    int line;
    const char *what;
  } cases[] = {
      {"u,p,s,1,1\n", false, 1, "unknown column (no header row)"},
      {"u,p,s,2,1\n", true, 2, "non-0/1 correct"},
      {"u,p,s,0.5,1\n", true, 2, "fractional correct"},
      {"u,p,s,1,1\nu,p,s,,2\n", true, 3, "empty correct"},
      {"u,p,s,1\n", true, 2, "missing field"},
      {"u,p,s,1,1,9\n", true, 2, "extra field"},
      {"u,p,s,1,soon\n", true, 2, "order not a number"},
      {",p,s,1,1\n", true, 2, "empty student"},
      {"u,p,\"s,1,1\n", true, 2, "unclosed quote"},
      {"u,p,s,1,5\nu,p,t,0,5\n", true, 3, "duplicate answer disagreeing"},
      {"", true, 2, "header only"},
      {"", false, 1, "empty file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512], name[32];
    snprintf(text, sizeof text, "%s%s", cases[i].with_header ? hdr : "", cases[i].body);
    snprintf(name, sizeof name, "csv_bad%zu.csv", i);
    const char *p = write_text(name, text);
    ml_idmap st, it, sk;
    ml_idmap_init(&st);
    ml_idmap_init(&it);
    ml_idmap_init(&sk);
    ml_answers a;
    expect_error(ml_answers_read_csv(p, NULL, &st, &it, &sk, NULL, &a), p, cases[i].line, cases[i].what);
    CHECK(a.n_students == 0);
    ml_idmap_free(&st);
    ml_idmap_free(&it);
    ml_idmap_free(&sk);
  }
  /* A renamed column is reported by name. */
  const char *p = write_text("csv_cols.csv", "user_id,problem_id,skill_id,correct,order_id\nu,p,s,1,1\n");
  ml_answers_csv_options o = ml_answers_csv_defaults();
  o.correct_col = "is_correct";
  ml_idmap st, it, sk;
  ml_idmap_init(&st);
  ml_idmap_init(&it);
  ml_idmap_init(&sk);
  ml_answers a;
  expect_error(ml_answers_read_csv(p, &o, &st, &it, &sk, NULL, &a), p, 1, "configured column absent");
  CHECK(strstr(ml_last_error(), "is_correct") != NULL);
  ml_idmap_free(&st);
  ml_idmap_free(&it);
  ml_idmap_free(&sk);
}

ML_TEST(idmap_many_ids) {
  ml_idmap m;
  ml_idmap_init(&m);
  char id[32];
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(id, sizeof id, "id%d", i * 7919 % 5003);
    int64_t k;
    CHECK_OK(ml_idmap_add(&m, id, (size_t)n, &k));
    CHECK(k == i);
  }
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(id, sizeof id, "id%d", i * 7919 % 5003);
    CHECK(ml_idmap_find(&m, id, (size_t)n) == i);
    CHECK(strcmp(m.names[i], id) == 0);
  }
  CHECK(ml_idmap_find(&m, "nope", 4) == -1);
  int64_t k;
  CHECK(ml_idmap_add(&m, "", 0, &k) == ML_ERR_ARG);
  ml_idmap_free(&m);
}

/* ---------------------------------------------------------------- real data ---- */

ML_TEST(kt_real_datasets_match_facts) {
  const char *root = ml_test_data_dir();
  const char *names[3] = {"assist2009_updated", "assist2015", "STATICS"};
  int found = 0;
  for (int i = 0; i < 3; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/knowledge-tracing/%s", root ? root : "", names[i]);
    const ml_kt_facts *f = ml_kt_facts_find(names[i]);
    CHECK(f != NULL);
    ml_kt_dataset d;
    if (!root || ml_kt_dataset_load(dir, f->prefix, 0, &d) == ML_ERR_NOTFOUND) continue;
    found++;
    CHECK_OK(ml_kt_dataset_check_facts(&d, f));
    CHECK(d.ids_are_skills == (i < 2));
    CHECK(d.n_skills == (i < 2 ? f->ids : 98));
    for (int64_t k = 0; k < d.test.n_answers; k++)
      if (d.test.skill[k] < 0 || d.test.item[k] >= d.n_items) {
        CHECK_MSG(0, "%s: answer %lld without a skill", names[i], (long long)k);
        break;
      }
    /* Fold 1: the same ids map to the same indices, train1 + valid1 = train. */
    ml_kt_dataset d1;
    CHECK_OK(ml_kt_dataset_load(dir, f->prefix, 1, &d1));
    CHECK(d1.items.n == d.items.n);
    for (int64_t k = 0; k < d.items.n; k++) CHECK(strcmp(d.items.names[k], d1.items.names[k]) == 0);
    CHECK(d1.train.n_students + d1.valid.n_students == d.train.n_students);
    CHECK(d1.test.n_answers == d.test.n_answers && memcmp(d1.test.item, d.test.item, (size_t)d.test.n_answers * 4) == 0);
    CHECK_OK(ml_kt_dataset_check_facts(&d1, f));
    ml_kt_dataset_free(&d1);
    ml_kt_dataset_free(&d);
  }
  /* the DKT paper's copy: same format, ids from 0, no folds (its duplicated rows are kept as they are) */
  char dkt[4096];
  snprintf(dkt, sizeof dkt, "%s/knowledge-tracing/assistments-dkt", root ? root : "");
  ml_kt_dataset d;
  if (root && ml_kt_dataset_load(dkt, "builder", 0, &d) != ML_ERR_NOTFOUND) {
    CHECK(d.train.n_students == 3361 && d.test.n_students == 856 && d.ids_are_skills);
    CHECK(ml_idmap_find(&d.items, "0", 1) >= 0);
    ml_kt_dataset_free(&d);
  }
  if (!found) printf("  (knowledge-tracing data absent: skipped)\n");
}
