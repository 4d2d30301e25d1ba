/* The VNNI row kernels (qdot_x86.h) compiled against SIMDe's portable versions of the VNNI
 * instructions, over AVX2: test_qmatmul checks them on CPUs without VNNI ("vnni_emu"). */
#define GQ_QDOT_VAR vnni_emu
#define GQ_QDOT_VNNI 3
#include "qdot_x86.h"
