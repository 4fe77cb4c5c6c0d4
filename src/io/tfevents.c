/* TensorBoard event files written by hand: a TFRecord stream (uint64 length, masked CRC32C of
 * the length, payload, masked CRC32C of the payload) of `Event` protocol buffers. Only the few
 * fields a scalar needs are encoded:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 * so no protobuf library and no TensorFlow. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "metalearn/report.h"

/* ---- CRC32C: table-driven, slicing by one byte (the files are small) ---- */
static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
  __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t ml_crc32c(uint32_t crc, const void *data, size_t n) {
  /* the table is a pure function of the polynomial: filling it twice from two threads is harmless */
  if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init();
  const uint8_t *p = data;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t ml_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf wire format ---- */
typedef struct {
  uint8_t *p;
  size_t n, cap; /* n counts every byte, written or not, so a too-small buffer reports the size */
} pb;

static void put(pb *b, const void *src, size_t k) {
  if (b->n + k <= b->cap) memcpy(b->p + b->n, src, k);
  b->n += k;
}
static void put_varint(pb *b, uint64_t v) {
  uint8_t t[10];
  size_t k = 0;
  do {
    t[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  put(b, t, k);
}
static size_t varint_len(uint64_t v) {
  size_t k = 1;
  while (v > 0x7f) v >>= 7, k++;
  return k;
}
static void put_le(pb *b, uint64_t v, int bytes) {
  uint8_t t[8];
  for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
  put(b, t, (size_t)bytes);
}

size_t ml_tfevents_encode(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                          const char *tag, float value) {
  /* sizes of the nested messages, innermost first */
  size_t tag_len = tag ? strlen(tag) : 0;
  size_t value_len = 1 + varint_len(tag_len) + tag_len + 1 + 4;
  size_t summary_len = 1 + varint_len(value_len) + value_len;
  size_t fv_len = file_version ? strlen(file_version) : 0;
  size_t event_len = 1 + 8 + (step ? 1 + varint_len((uint64_t)step) : 0) +
                     (file_version ? 1 + varint_len(fv_len) + fv_len : 1 + varint_len(summary_len) + summary_len);
  size_t total = 8 + 4 + event_len + 4;
  if (total > cap) return total;
  pb b = {buf, 0, cap};
  uint64_t wt;
  memcpy(&wt, &wall_time, 8);
  put_le(&b, event_len, 8);
  put_le(&b, ml_crc32c_mask(ml_crc32c(0, buf, 8)), 4);
  size_t start = b.n;
  put_varint(&b, (1 << 3) | 1); /* wall_time: fixed64 */
  put_le(&b, wt, 8);
  if (step) {
    put_varint(&b, (2 << 3) | 0); /* step: varint (two's complement for negatives) */
    put_varint(&b, (uint64_t)step);
  }
  if (file_version) {
    put_varint(&b, (3 << 3) | 2);
    put_varint(&b, fv_len);
    put(&b, file_version, fv_len);
  } else {
    uint32_t v;
    memcpy(&v, &value, 4);
    put_varint(&b, (5 << 3) | 2); /* summary */
    put_varint(&b, summary_len);
    put_varint(&b, (1 << 3) | 2); /* summary.value */
    put_varint(&b, value_len);
    put_varint(&b, (1 << 3) | 2); /* value.tag */
    put_varint(&b, tag_len);
    put(&b, tag, tag_len);
    put_varint(&b, (2 << 3) | 5); /* value.simple_value: fixed32 */
    put_le(&b, v, 4);
  }
  put_le(&b, ml_crc32c_mask(ml_crc32c(0, buf + start, b.n - start)), 4);
  return b.n;
}

/* ---- the writer ---- */
struct ml_tfevents {
  FILE *fp;
  char path[4096];
};

static double unix_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ml_status write_record(ml_tfevents *w, double wall_time, int64_t step, const char *fv, const char *tag,
                              float value) {
  uint8_t small[512], *buf = small;
  if (wall_time <= 0) wall_time = unix_now();
  size_t n = ml_tfevents_encode(small, sizeof small, wall_time, step, fv, tag, value);
  if (n > sizeof small) {
    buf = malloc(n);
    if (!buf) return ml_error(ML_ERR_NOMEM, "%s: out of memory", w->path);
    ml_tfevents_encode(buf, n, wall_time, step, fv, tag, value);
  }
  bool ok = fwrite(buf, 1, n, w->fp) == n;
  if (buf != small) free(buf);
  return ok ? ML_OK : ml_error(ML_ERR_IO, "%s: write failed", w->path);
}

ml_status ml_tfevents_open(const char *dir, ml_tfevents **out) {
  *out = NULL;
  ml_tfevents *w = calloc(1, sizeof *w);
  if (!w) return ml_error(ML_ERR_NOMEM, "tfevents: out of memory");
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = 0;
  long long t = (long long)time(NULL);
  int fd = -1;
  /* a resumed run started within the same second gets a suffixed name rather than a shared file */
  for (int k = 0; k < 100 && fd < 0; k++) {
    if (k == 0) snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s", dir, t, host);
    else snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%d", dir, t, host, k);
    fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0 || !(w->fp = fdopen(fd, "wb"))) {
    ml_status st = ml_error(ML_ERR_IO, "%s: cannot create the event file: %s", w->path, strerror(errno));
    if (fd >= 0) close(fd);
    free(w);
    return st;
  }
  ml_status st = write_record(w, 0, 0, "brain.Event:2", NULL, 0);
  if (!st && fflush(w->fp) != 0) st = ml_error(ML_ERR_IO, "%s: write failed", w->path);
  if (st) {
    ml_tfevents_close(w);
    return st;
  }
  *out = w;
  return ML_OK;
}

const char *ml_tfevents_path(const ml_tfevents *w) { return w->path; }

ml_status ml_tfevents_scalar(ml_tfevents *w, const char *tag, int64_t step, double wall_time, float value) {
  if (!w || !tag) return ml_error(ML_ERR_ARG, "tfevents_scalar: NULL writer or tag");
  return write_record(w, wall_time, step, NULL, tag, value);
}

ml_status ml_tfevents_json_line(ml_tfevents *w, const char *json_line, double wall_time) {
  if (!w) return ml_error(ML_ERR_ARG, "tfevents_json_line: NULL writer");
  cJSON *j = cJSON_Parse(json_line);
  const cJSON *it = j ? cJSON_GetObjectItemCaseSensitive(j, "iter") : NULL;
  ml_status st = ML_OK;
  if (cJSON_IsNumber(it)) {
    if (wall_time <= 0) wall_time = unix_now();
    for (const cJSON *c = j->child; c && !st; c = c->next)
      if (cJSON_IsNumber(c) && c->string && strcmp(c->string, "iter"))
        st = write_record(w, wall_time, (int64_t)it->valuedouble, NULL, c->string, (float)c->valuedouble);
    if (!st && fflush(w->fp) != 0) st = ml_error(ML_ERR_IO, "%s: write failed", w->path);
  }
  cJSON_Delete(j);
  return st;
}

ml_status ml_tfevents_close(ml_tfevents *w) {
  if (!w) return ML_OK;
  ml_status st = fclose(w->fp) == 0 ? ML_OK : ml_error(ML_ERR_IO, "%s: write failed", w->path);
  free(w);
  return st;
}
