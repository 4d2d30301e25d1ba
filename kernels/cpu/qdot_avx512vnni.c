/* qdot_avx512vnni: the row kernels with AVX512-VNNI's dot products on 256-bit registers
 * (qdot_x86.h), for CPUs with AVX512VL + AVX512-VNNI (Intel since Ice Lake, AMD Zen 4 and 5). */
#define GQ_QDOT_VAR avx512vnni
#define GQ_QDOT_VNNI 2
#include "qdot_x86.h"
