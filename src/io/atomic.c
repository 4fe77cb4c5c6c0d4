/* Atomic file writes: data goes to "<path>.tmp.<pid>" in the same directory, is fsynced, then
 * renamed over path (and the directory fsynced), so a reader sees either the old file or the
 * complete new one, never a torn write. Any failure removes the temp file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metalearn/io.h"

struct ml_atomic_file {
  int fd;
  bool failed;
  char *path;
  char *tmp;
};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

ml_atomic_file *ml_atomic_open(const char *path) {
  if (!path || !*path) {
    ml_error(ML_ERR_ARG, "atomic_open: empty path");
    return NULL;
  }
  ml_atomic_file *f = calloc(1, sizeof *f);
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  char *p = dup_str(path);
  if (!f || !tmp || !p) {
    free(f);
    free(tmp);
    free(p);
    ml_error(ML_ERR_NOMEM, "%s: out of memory", path);
    return NULL;
  }
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    ml_error(ML_ERR_IO, "%s: cannot create temp file %s: %s", path, tmp, strerror(errno));
    free(f);
    free(tmp);
    free(p);
    return NULL;
  }
  f->fd = fd;
  f->path = p;
  f->tmp = tmp;
  return f;
}

ml_status ml_atomic_write(ml_atomic_file *f, const void *data, size_t n) {
  if (!f) return ml_error(ML_ERR_ARG, "atomic_write: NULL file");
  if (f->failed) return ml_error(ML_ERR_IO, "%s: an earlier write failed", f->path);
  const char *c = data;
  while (n > 0) {
    ssize_t w = write(f->fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      f->failed = true;
      return ml_error(ML_ERR_IO, "%s: write failed: %s", f->path, w < 0 ? strerror(errno) : "no progress");
    }
    c += w;
    n -= (size_t)w;
  }
  return ML_OK;
}

static void release(ml_atomic_file *f) {
  free(f->path);
  free(f->tmp);
  free(f);
}

void ml_atomic_abort(ml_atomic_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  unlink(f->tmp);
  release(f);
}

/* Makes the rename durable; best effort (some file systems refuse fsync on directories). */
static void sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : dup_str(".");
  if (!dir) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

ml_status ml_atomic_commit(ml_atomic_file *f) {
  if (!f) return ml_error(ML_ERR_ARG, "atomic_commit: NULL file");
  ml_status st = ML_OK;
  if (f->failed)
    st = ml_error(ML_ERR_IO, "%s: not committed, an earlier write failed", f->path);
  else if (fsync(f->fd) != 0)
    st = ml_error(ML_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0 && st == ML_OK) st = ml_error(ML_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
  if (st == ML_OK && rename(f->tmp, f->path) != 0)
    st = ml_error(ML_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp, strerror(errno));
  if (st != ML_OK) {
    ml_atomic_abort(f);
    return st;
  }
  sync_parent_dir(f->path);
  release(f);
  return ML_OK;
}

ml_status ml_write_file_atomic(const char *path, const void *data, size_t n) {
  ml_atomic_file *f = ml_atomic_open(path);
  if (!f) return ml_last_status();
  ml_status st = ml_atomic_write(f, data, n);
  if (st != ML_OK) {
    ml_atomic_abort(f);
    return st;
  }
  return ml_atomic_commit(f);
}
