/* cublas_v2.h for kernels/cuda compiled against the CPU emulator (cuda_emu_runtime.h) */
#include "cuda_emu_runtime.h"
