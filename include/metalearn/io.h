/* io: safetensors files (the format PyTorch tools read: 8-byte little-endian header length,
 * JSON header, raw little-endian data), checkpoints of parameters and optimizer state built on
 * them, and atomic file writes (temp file + rename). */
#ifndef METALEARN_IO_H
#define METALEARN_IO_H

#include "metalearn/optim.h"
#include "metalearn/params.h"

/* ---- atomic writes ---- */
typedef struct ml_atomic_file ml_atomic_file;
/* Opens "<path>.tmp.<pid>" for writing; commit renames it over path, abort removes it. */
ML_API ml_atomic_file *ml_atomic_open(const char *path);
ML_API ml_status ml_atomic_write(ml_atomic_file *f, const void *data, size_t n);
ML_API ml_status ml_atomic_commit(ml_atomic_file *f); /* fsyncs, renames, frees f */
ML_API void ml_atomic_abort(ml_atomic_file *f);       /* removes the temp file, frees f */
/* Whole file in one call. */
ML_API ml_status ml_write_file_atomic(const char *path, const void *data, size_t n);

/* ---- safetensors ----
 * Writing: F32 tensors only (what metalearn stores). Reading: F32 tensors, and also F64, F16,
 * BF16, I64, I32 (converted to float) so files written by other tools load. */
typedef struct {
  const char *name;
  ml_tensor t;
} ml_named_tensor;

typedef struct {
  const char *key, *value;
} ml_kv;

ML_API ml_status ml_safetensors_write(const char *path, const ml_named_tensor *tensors, int64_t n,
                                      const ml_kv *metadata, int64_t n_meta);

typedef struct ml_safetensors ml_safetensors; /* a file read into memory */
/* Reads and validates the whole file (header JSON, dtypes, shapes, offsets inside the data,
 * no overlap, sizes that cannot overflow). Errors name the file and the problem.
 * The caller frees with ml_safetensors_close. */
ML_API ml_status ml_safetensors_open(const char *path, ml_safetensors **out);
ML_API void ml_safetensors_close(ml_safetensors *s);
ML_API int64_t ml_safetensors_count(const ml_safetensors *s);
ML_API const char *ml_safetensors_name(const ml_safetensors *s, int64_t i);
/* Shape of tensor i (data NULL). */
ML_API ml_tensor ml_safetensors_shape(const ml_safetensors *s, int64_t i);
ML_API int64_t ml_safetensors_find(const ml_safetensors *s, const char *name); /* -1 if absent */
/* Converts tensor i to float32 into dst (numel floats). */
ML_API ml_status ml_safetensors_read_f32(const ml_safetensors *s, int64_t i, float *dst);
/* Metadata value for key, or NULL. */
ML_API const char *ml_safetensors_meta(const ml_safetensors *s, const char *key);

/* ---- checkpoints ----
 * Parameters under their names; optimizer state as "optim.m.<name>", "optim.v.<name>";
 * metadata "format" = "metalearn", "optim.kind", "optim.step", plus the caller's entries. */
ML_API ml_status ml_checkpoint_save(const char *path, const ml_params *params, const ml_optim *opt,
                                    const ml_kv *metadata, int64_t n_meta);
/* Loads into existing lists: every parameter must be present with the same shape (names in the
 * file that the model lacks are an error too). opt may be NULL; when given, its state must be in
 * the file. */
ML_API ml_status ml_checkpoint_load(const char *path, ml_params *params, ml_optim *opt);

#endif
