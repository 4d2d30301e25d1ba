/* simd_avx512: the avx512 variant of simd_impl.h (flags set in CMakeLists.txt). */
#define GQ_SIMD_NAME avx512
#define GQ_SIMD_STR "avx512"
#include "simd_impl.h"
