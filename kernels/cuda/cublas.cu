/* cublas: the process's cuBLAS handle and the row-major GEMM wrapper (compute type per
 * gq_cuda_set_matmul). In a file of its own so that programs that need no GEMM (the inference
 * runner) do not load cuBLAS (~200 MB of resident memory at start-up). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "backend.h"

int gq_cuda_cublas(cublasHandle_t *h) {
    static cublasHandle_t handle;
    if (!handle) {
        GQ_CUBLAS_CHECK(cublasCreate(&handle));
        GQ_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH)); /* each product names its compute type */
        /* the stream every kernel of ours uses (built with --default-stream per-thread) */
        GQ_CUBLAS_CHECK(cublasSetStream(handle, cudaStreamPerThread));
    }
    *h = handle;
    return GQ_OK;
}

static int g_matmul = GQ_MATMUL_FP32;

extern "C" int gq_cuda_set_matmul(int mode) {
    if (mode != GQ_MATMUL_FP32 && mode != GQ_MATMUL_TF32 && mode != GQ_MATMUL_BF16)
        return gq_errf(GQ_EINVAL, "unknown matmul precision %d", mode);
    g_matmul = mode;
    return GQ_OK;
}

int gq_cuda_sgemm_rm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
                     const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch) {
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands */
    cublasHandle_t h = NULL;
    GQ_TRY(gq_cuda_cublas(&h));
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* fp32 storage always; the compute type says what the tensor cores may round */
    cublasComputeType_t ct = g_matmul == GQ_MATMUL_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                             : g_matmul == GQ_MATMUL_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                          : CUBLAS_COMPUTE_32F_PEDANTIC;
    GQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, sB, A, CUDA_R_32F, lda,
                                               sA, &beta, C, CUDA_R_32F, ldc, sC, batch, ct, CUBLAS_GEMM_DEFAULT));
    return GQ_OK;
}

