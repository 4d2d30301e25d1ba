/* f16_value: an fp16 value read in a kernel's hot loop, for the CUDA sources and for
 * tests/cuda_emu.h (which supplies quant.h's conversion: the same value for every finite input
 * and inf). */
#ifndef GQ_F16_VALUE_CUH
#define GQ_F16_VALUE_CUH

#include <stdint.h>

/* An fp16 value in the hot loops (fp16 weights, the fp16 KV cache): the GPU's conversion, exact
 * for every finite value and inf as quant.h's gq_f16_to_f32; only a NaN's payload may differ.
 * quant.h's portable code (branches, a loop for subnormals) was the one difference between the
 * fp16- and bf16-weight decode paths, which took 40.9 and 31.6 ms for 50 tokens of GPT-2 124M on
 * the H200. */
#ifdef GQ_CUDA_EMU
#include "quant.h"
static inline float gq_cuda_f16_value(uint16_t h) { return gq_f16_to_f32(h); }
#else
static __device__ __forceinline__ float gq_cuda_f16_value(uint16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
#endif

#endif
