/* qdot_avx2: the AVX2 (+FMA, F16C) row kernels (qdot_x86.h). */
#define GQ_QDOT_VAR avx2
#define GQ_QDOT_VNNI 0
#include "qdot_x86.h"
