/* libFuzzer target for the safetensors reader: every input is parsed as a whole file; when it
 * validates, every tensor is converted and the metadata looked up, so ASan sees any read past
 * the validated ranges. Not part of the default build. Build and run from the source root: */
// clang -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -g -O1 -I include -I src
//   -I build-io/generated tests/fuzz/fuzz_safetensors.c src/io/atomic.c src/io/safetensors.c
//   src/io/checkpoint.c src/base/[a-z]*.c src/tensor/tensor.c src/nn/params.c src/optim/optim.c
//   -lcjson -lm -lpthread -o fuzz_safetensors
// mkdir -p /tmp/corpus && ./fuzz_safetensors -max_total_time=60 /tmp/corpus tests/fuzz/corpus
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy, so ASan catches a read one byte past the file */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  ml_safetensors *s = NULL;
  if (ml__safetensors_parse("fuzz", buf, size, &s) != ML_OK) return 0;
  for (int64_t i = 0; i < ml_safetensors_count(s); i++) {
    ml_tensor t = ml_safetensors_shape(s, i);
    if (t.numel < 0 || (size_t)t.numel > size) abort(); /* validated sizes are bounded by the file */
    if (ml_safetensors_find(s, ml_safetensors_name(s, i)) != i) abort();
    float *dst = malloc((size_t)t.numel * sizeof(float) + 1);
    if (dst) ml_safetensors_read_f32(s, i, dst);
    free(dst);
  }
  (void)ml_safetensors_meta(s, "format");
  ml_safetensors_close(s);
  return 0;
}
