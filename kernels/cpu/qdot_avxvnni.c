/* qdot_avxvnni: the row kernels with AVX-VNNI's VEX dot products (qdot_x86.h), for CPUs that
 * have AVX-VNNI (Intel since Alder Lake, AMD Zen 5). */
#define GQ_QDOT_VAR avxvnni
#define GQ_QDOT_VNNI 1
#include "qdot_x86.h"
