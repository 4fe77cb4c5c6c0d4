/* Skill graph: an influence matrix pooled from exercises into skills, its strongest links, and
 * their export as DOT and JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metalearn/io.h"
#include "metalearn/practice.h"

ml_status ml_practice_skill_matrix(const float *item_J, int64_t n_items, const int32_t *item_skill, int64_t n_skills,
                                   float *skill_J) {
  if (n_skills < 1) return ml_error(ML_ERR_ARG, "skill graph: %lld skills", (long long)n_skills);
  int64_t K = n_skills;
  double *sum = calloc((size_t)(K * K), sizeof *sum);
  int64_t *per = calloc((size_t)K, sizeof *per);
  if (!sum || !per) {
    free(sum), free(per);
    return ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
  }
  for (int64_t j = 0; j < n_items; j++)
    if (item_skill[j] >= 0 && item_skill[j] < K) per[item_skill[j]]++;
  for (int64_t i = 0; i < n_items; i++) {
    int32_t a = item_skill[i];
    if (a < 0 || a >= K) continue;
    for (int64_t j = 0; j < n_items; j++) {
      int32_t b = item_skill[j];
      if (b >= 0 && b < K) sum[a * K + b] += item_J[i * n_items + j];
    }
  }
  for (int64_t a = 0; a < K; a++)
    for (int64_t b = 0; b < K; b++)
      skill_J[a * K + b] = per[a] && per[b] ? (float)(sum[a * K + b] / ((double)per[a] * (double)per[b])) : 0;
  for (int64_t b = 0; b < K; b++) {
    double s = 0;
    for (int64_t a = 0; a < K; a++) s += skill_J[a * K + b];
    for (int64_t a = 0; a < K && s > 0; a++) skill_J[a * K + b] = (float)(skill_J[a * K + b] / s);
  }
  free(sum), free(per);
  return ML_OK;
}

static int cmp_link(const void *x, const void *y) {
  const ml_practice_link *a = x, *b = y;
  if (a->weight != b->weight) return a->weight > b->weight ? -1 : 1;
  if (a->from != b->from) return a->from - b->from;
  return a->to - b->to;
}

int64_t ml_practice_top_links(const float *J, int64_t K, int64_t top, ml_practice_link *out) {
  if (top <= 0) return 0;
  ml_practice_link *all = malloc((size_t)(K * K + 1) * sizeof *all);
  if (!all) return 0;
  int64_t n = 0;
  for (int64_t a = 0; a < K; a++)
    for (int64_t b = 0; b < K; b++)
      if (a != b && isfinite(J[a * K + b]) && J[a * K + b] > 0)
        all[n].from = (int32_t)a, all[n].to = (int32_t)b, all[n].weight = J[a * K + b], n++;
  qsort(all, (size_t)n, sizeof *all, cmp_link);
  if (n > top) n = top;
  memcpy(out, all, (size_t)n * sizeof *out);
  free(all);
  return n;
}

static void put_name(FILE *f, const char *const *names, int64_t k) {
  fputc('"', f);
  if (names && names[k]) {
    for (const char *s = names[k]; *s; s++) {
      if (*s == '"' || *s == '\\') fputc('\\', f);
      if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
  } else {
    fprintf(f, "%lld", (long long)k);
  }
  fputc('"', f);
}

ml_status ml_practice_graph_write(const char *dot_path, const char *json_path, const float *J, int64_t K,
                                  const char *const *names, int64_t top) {
  ml_practice_link *links = malloc((size_t)(top > 0 ? top : 1) * sizeof *links);
  bool *used = calloc((size_t)(K ? K : 1), sizeof *used);
  if (!links || !used) {
    free(links), free(used);
    return ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
  }
  int64_t n = ml_practice_top_links(J, K, top, links);
  for (int64_t i = 0; i < n; i++) used[links[i].from] = used[links[i].to] = true;
  ml_status st = ML_OK;
  char *buf = NULL;
  size_t len = 0;
  if (dot_path) {
    FILE *f = open_memstream(&buf, &len);
    if (!f) st = ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
    if (!st) {
      fprintf(f, "// skill influence (Piech et al. 2015): an edge a -> b means a correct answer on a raises the\n"
                 "// predicted success on b; the %lld strongest links, weight = J[a][b] (columns sum to 1)\n"
                 "digraph skills {\n  rankdir=LR;\n  node [shape=box];\n",
              (long long)n);
      for (int64_t k = 0; k < K; k++)
        if (used[k]) {
          fprintf(f, "  s%lld [label=", (long long)k);
          put_name(f, names, k);
          fprintf(f, "];\n");
        }
      for (int64_t i = 0; i < n; i++)
        fprintf(f, "  s%d -> s%d [weight=%.4f, penwidth=%.2f, label=\"%.3f\"];\n", links[i].from, links[i].to,
                links[i].weight, 0.5 + 4.0 * links[i].weight / links[0].weight, links[i].weight);
      fprintf(f, "}\n");
      fclose(f);
      st = ml_write_file_atomic(dot_path, buf, len);
      free(buf), buf = NULL;
    }
  }
  if (!st && json_path) {
    FILE *f = open_memstream(&buf, &len);
    if (!f) st = ml_error(ML_ERR_NOMEM, "skill graph: out of memory");
    if (!st) {
      fprintf(f, "{\"skills\": %lld,\n \"links\": [", (long long)K);
      for (int64_t i = 0; i < n; i++) {
        fprintf(f, "%s\n  {\"from\": ", i ? "," : "");
        put_name(f, names, links[i].from);
        fprintf(f, ", \"to\": ");
        put_name(f, names, links[i].to);
        fprintf(f, ", \"weight\": %.6f}", links[i].weight);
      }
      fprintf(f, "],\n \"strongest_prerequisite\": [");
      bool first = true;
      for (int64_t b = 0; b < K; b++) { /* the skill a != b with the largest J[a][b] */
        int64_t best = -1;
        for (int64_t a = 0; a < K; a++)
          if (a != b && J[a * K + b] > 0 && (best < 0 || J[a * K + b] > J[best * K + b])) best = a;
        if (best < 0) continue;
        fprintf(f, "%s\n  {\"skill\": ", first ? "" : ",");
        put_name(f, names, b);
        fprintf(f, ", \"prerequisite\": ");
        put_name(f, names, best);
        fprintf(f, ", \"weight\": %.6f}", J[best * K + b]);
        first = false;
      }
      fprintf(f, "]}\n");
      fclose(f);
      st = ml_write_file_atomic(json_path, buf, len);
      free(buf);
    }
  }
  free(links), free(used);
  return st;
}
