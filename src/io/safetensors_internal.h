/* io internals shared by safetensors.c, checkpoint.c and the fuzz target (not public API). */
#ifndef ML_IO_SAFETENSORS_INTERNAL_H
#define ML_IO_SAFETENSORS_INTERNAL_H

#include "metalearn/io.h"

/* Validates a whole safetensors file held in memory. Takes ownership of buf (from malloc), which
 * is freed on error or by ml_safetensors_close. label names the file in error messages. */
ml_status ml__safetensors_parse(const char *label, void *buf, size_t size, ml_safetensors **out);

#endif
