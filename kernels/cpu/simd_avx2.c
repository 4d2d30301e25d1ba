/* simd_avx2: the avx2 variant of simd_impl.h (flags set in CMakeLists.txt). */
#define GQ_SIMD_NAME avx2
#define GQ_SIMD_STR "avx2"
#include "simd_impl.h"
