/* Temporary: replaced by the kernels implementation. */
#include "metalearn/kernels.h"
ml_simd_level ml_cpu_simd(void) { return ML_SIMD_SCALAR; }
const char *ml_simd_name(ml_simd_level l) { return l == ML_SIMD_AVX512 ? "avx512" : l == ML_SIMD_AVX2 ? "avx2" : "scalar"; }
const char *ml_gemm_backend(void) { return "none"; }
