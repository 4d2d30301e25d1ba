/* gelu (CUDA): forward and backward of the tanh-form GELU, and the residual add; the math is
 * act_math.h's, shared with the CPU backend (bit-identical: no FMA contraction, --fmad=false). */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

/* inp and out: fp32, or bf16 (the bf16 mode's operands, gq_cuda_bf16_operands: the MLP's
 * pre-activation as its product stored it, the output a product input) */
template <class T> static __global__ void gelu_forward_kernel(T *out, const T *inp, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        gq_st(out + i, gq_gelu(gq_ld(inp + i)));
}

/* (bf16 mode: inp and dinp bf16, dinp rounded to nearest: it feeds only the MLP's first
 * product's backward, which reads it as it lies) */
template <class T> static __global__ void gelu_backward_kernel(T *dinp, const T *inp, const float *dout, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        gq_st(dinp + i, gq_gelu_grad(gq_ld(inp + i)) * dout[i]);
}

static __global__ void residual_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

extern "C" int gq_cuda_gelu_forward(float *d_out, const float *d_inp, size_t n) {
    if (!n) return GQ_OK;
    return gq_launch(gelu_forward_kernel<float>, gq_cuda_grid(n, 256), 256, 0, d_out, d_inp, n);
}

extern "C" int gq_cuda_gelu_forward_bf16(void *d_out, const void *d_inp, size_t n) {
    if (!n) return GQ_OK;
    return gq_launch(gelu_forward_kernel<__nv_bfloat16>, gq_cuda_grid(n, 256), 256, 0, (__nv_bfloat16 *)d_out,
                     (const __nv_bfloat16 *)d_inp, n);
}

extern "C" int gq_cuda_gelu_backward(float *d_dinp, const float *d_inp, const float *d_dout, size_t n) {
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(gelu_backward_kernel<float>, gq_cuda_grid(n, 256), 256, 0, d_dinp, d_inp, d_dout, n));
    return GQ_OK;
}

extern "C" int gq_cuda_gelu_backward_bf16(void *d_dinp, const void *d_inp, const float *d_dout, size_t n) {
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(gelu_backward_kernel<__nv_bfloat16>, gq_cuda_grid(n, 256), 256, 0, (__nv_bfloat16 *)d_dinp,
                     (const __nv_bfloat16 *)d_inp, d_dout, n));
    return GQ_OK;
}

extern "C" int gq_cuda_residual_forward(float *out, const float *a, const float *b, size_t n) {
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(residual_kernel, gq_cuda_grid(n, 256), 256, 0, out, a, b, n));
    return GQ_OK;
}
