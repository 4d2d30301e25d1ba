/* matmul (CUDA): the linear layer through cuBLAS (fp32, no TF32), with a bias kernel and the
 * deterministic column sum for the bias gradient. */
#include "cuda_ops.h"
#include "cuda_util.cuh"

static __global__ void add_bias_kernel(float *out, const float *bias, size_t n, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % OC];
}

extern "C" int gq_cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                                      int C, int OC) {
    if (N <= 0) return GQ_OK;
    /* out (N,OC) = inp (N,C) weight (OC,C)^T */
    GQ_TRY(gq_cuda_sgemm_rm(0, 1, N, OC, C, 1.0f, inp, C, 0, weight, C, 0, 0.0f, out, OC, 0, 1));
    if (bias) {
        size_t n = (size_t)N * OC;
        GQ_TRY(gq_launch(add_bias_kernel, gq_cuda_grid(n, 256), 256, 0, out, bias, n, OC));
    }
    return GQ_OK;
}

extern "C" int gq_cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                       const float *weight, int N, int C, int OC) {
    if (N <= 0) return GQ_OK;
    /* dinp (N,C) = dout (N,OC) weight (OC,C) */
    if (dinp) GQ_TRY(gq_cuda_sgemm_rm(0, 0, N, C, OC, 1.0f, dout, OC, 0, weight, C, 0, 0.0f, dinp, C, 0, 1));
    /* dweight (OC,C) += dout^T (OC,N) inp (N,C) */
    GQ_TRY(gq_cuda_sgemm_rm(1, 0, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dweight, C, 0, 1));
    if (dbias) GQ_TRY(gq_cuda_colsum_add(dbias, dout, N, OC));
    return GQ_OK;
}
