/* simd_scalar: the scalar variant of simd_impl.h (flags set in CMakeLists.txt). */
#define GQ_SIMD_NAME scalar
#define GQ_SIMD_STR "scalar"
#include "simd_impl.h"
