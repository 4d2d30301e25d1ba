/* cuda_util: error checking shared by the CUDA sources. */
#ifndef GQ_CUDA_UTIL_CUH
#define GQ_CUDA_UTIL_CUH

#include <cuda_runtime.h>

extern "C" {
#include "gq_error.h"
}

#define GQ_CUDA_CHECK(call)                                                                          \
    do {                                                                                             \
        cudaError_t gq_cuda_err_ = (call);                                                           \
        if (gq_cuda_err_ != cudaSuccess)                                                             \
            return gq_errf(GQ_EDEVICE, "CUDA error in %s (%s:%d): %s", #call, __FILE__, __LINE__,    \
                           cudaGetErrorString(gq_cuda_err_));                                         \
    } while (0)

/* Check a kernel launch. */
#define GQ_CUDA_CHECK_LAUNCH() GQ_CUDA_CHECK(cudaGetLastError())

static inline unsigned gq_cuda_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

#endif
