/* gelu (CUDA): forward and backward of the tanh-form GELU; the math is act_math.h's, shared
 * with the CPU backend. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

static __global__ void gelu_forward_kernel(float *out, const float *inp, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = gq_gelu(inp[i]);
}

static __global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dinp[i] = gq_gelu_grad(inp[i]) * dout[i];
}

static unsigned grid_for(size_t n) {
    unsigned blocks = gq_cuda_blocks(n, 256);
    return blocks > 65535u ? 65535u : (blocks ? blocks : 1u);
}

extern "C" int gq_cuda_gelu_forward(float *d_out, const float *d_inp, size_t n) {
    if (!n) return GQ_OK;
    gelu_forward_kernel<<<grid_for(n), 256>>>(d_out, d_inp, n);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}

extern "C" int gq_cuda_gelu_backward(float *d_dinp, const float *d_inp, const float *d_dout, size_t n) {
    if (!n) return GQ_OK;
    gelu_backward_kernel<<<grid_for(n), 256>>>(d_dinp, d_inp, d_dout, n);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}
