/* Chunked arena. Chunks never move, so pointers stay valid until reset. On reset, if the arena
 * had to grow, the chunks are merged into one chunk of the total size: the next step then fits
 * in one chunk and the steady state allocates nothing. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "metalearn/base.h"

#define ML_ALIGN 64

typedef struct chunk {
  struct chunk *next;
  size_t size, used;
  char *data;
} chunk;

struct ml_arena {
  ml_allocator alloc;
  chunk *head;  /* current chunk, front of the list */
  chunk *spare; /* chunks given back by a rewind, reused before any new one */
  size_t used_total, peak, reserved, first_size;
};

/* Chunks of 4 MB or more start on a 2 MB boundary and ask for transparent huge pages (where the
 * kernel gives them on request, as Debian's default "madvise" does): a meta-batch streams through
 * tens of MB of activations per pass, which 4 KB pages cover with a TLB miss every 4 KB. */
#define HUGE_CHUNK ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

static void *default_alloc(size_t bytes, void *ctx) {
  (void)ctx;
  void *p = NULL;
  if (posix_memalign(&p, bytes >= HUGE_CHUNK ? HUGE_PAGE : ML_ALIGN, bytes ? bytes : ML_ALIGN) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (bytes >= HUGE_CHUNK) (void)madvise(p, bytes & ~(HUGE_PAGE - 1), MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
  return p;
}
static void default_free(void *p, void *ctx) {
  (void)ctx;
  free(p);
}
static const ml_allocator default_allocator = {default_alloc, default_free, NULL};
const ml_allocator *ml_allocator_default(void) { return &default_allocator; }

static chunk *chunk_new(ml_arena *a, size_t size) {
  size_t hdr = (sizeof(chunk) + ML_ALIGN - 1) & ~(size_t)(ML_ALIGN - 1), total;
  if (!ml_add_size(hdr, size, &total)) return NULL;
  chunk *c = a->alloc.alloc(total, a->alloc.ctx);
  if (!c) return NULL;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  c->data = (char *)c + hdr;
  a->reserved += size;
  return c;
}

ml_arena *ml_arena_new(size_t chunk_bytes, const ml_allocator *alloc) {
  if (!alloc) alloc = &default_allocator;
  ml_arena *a = alloc->alloc(sizeof(ml_arena), alloc->ctx);
  if (!a) {
    ml_error(ML_ERR_NOMEM, "arena: out of memory");
    return NULL;
  }
  memset(a, 0, sizeof *a);
  a->alloc = *alloc;
  a->first_size = chunk_bytes ? chunk_bytes : ((size_t)1 << 20);
  a->head = chunk_new(a, a->first_size);
  if (!a->head) {
    alloc->free(a, alloc->ctx);
    ml_error(ML_ERR_NOMEM, "arena: out of memory");
    return NULL;
  }
  return a;
}

void ml_arena_free(ml_arena *a) {
  if (!a) return;
  for (int list = 0; list < 2; list++)
    for (chunk *c = list ? a->spare : a->head; c;) {
      chunk *n = c->next;
      a->alloc.free(c, a->alloc.ctx);
      c = n;
    }
  a->alloc.free(a, a->alloc.ctx);
}

void *ml_arena_alloc(ml_arena *a, size_t bytes) {
  size_t need = (bytes + ML_ALIGN - 1) & ~(size_t)(ML_ALIGN - 1);
  if (need < bytes) {
    ml_error(ML_ERR_NOMEM, "arena: request of %zu bytes overflows", bytes);
    return NULL;
  }
  chunk *c = a->head;
  if (c->size - c->used < need) {
    chunk *n = NULL;
    for (chunk **s = &a->spare; *s; s = &(*s)->next)
      if ((*s)->size >= need) { /* a chunk a rewind gave back */
        n = *s;
        *s = n->next;
        n->used = 0;
        break;
      }
    if (!n) {
      size_t sz = c->size * 2;
      if (sz < need) sz = need;
      n = chunk_new(a, sz);
    }
    if (!n) {
      ml_error(ML_ERR_NOMEM, "arena: out of memory allocating %zu bytes", bytes);
      return NULL;
    }
    n->next = c;
    a->head = c = n;
  }
  void *p = c->data + c->used;
  c->used += need;
  a->used_total += need;
  if (a->used_total > a->peak) a->peak = a->used_total;
  return p;
}

void *ml_arena_calloc(ml_arena *a, size_t bytes) {
  void *p = ml_arena_alloc(a, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

void ml_arena_reset(ml_arena *a) {
  if (a->head->next || a->spare) {
    /* Merge: free every chunk (spare ones too) and take one that holds the whole previous demand. */
    size_t total = 0;
    for (int list = 0; list < 2; list++)
      for (chunk *c = list ? a->spare : a->head; c;) {
        chunk *n = c->next;
        total += c->size;
        a->alloc.free(c, a->alloc.ctx);
        c = n;
      }
    a->spare = NULL;
    a->reserved = 0;
    a->head = chunk_new(a, total);
    if (!a->head) a->head = chunk_new(a, a->first_size); /* keep the arena usable */
  }
  if (a->head) a->head->used = 0;
  a->used_total = 0;
}

size_t ml_arena_used(const ml_arena *a) { return a->used_total; }
size_t ml_arena_reserved(const ml_arena *a) { return a->reserved; }
size_t ml_arena_peak(const ml_arena *a) { return a->peak; }

ml_arena_mark ml_arena_get_mark(const ml_arena *a) {
  return (ml_arena_mark){a->head, a->head->used, a->used_total};
}

void ml_arena_rewind(ml_arena *a, ml_arena_mark m) {
  const chunk *found = a->head;
  while (found && found != m.chunk) found = found->next;
  if (!found || m.used > found->used) return; /* not a mark of this arena's current life */
  /* chunks started after the mark go to the spare list, whole, for the next growth */
  while (a->head != m.chunk) {
    chunk *c = a->head;
    a->head = c->next;
    c->next = a->spare;
    a->spare = c;
  }
  a->head->used = m.used;
  a->used_total = m.used_total;
}
