/* cublas: the process's cuBLAS handle and the row-major GEMM wrapper (compute type per
 * gq_cuda_set_matmul). In a file of its own so that programs that need no GEMM (the inference
 * runner) do not load cuBLAS (~200 MB of resident memory at start-up). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "backend.h"

#include <cuda_bf16.h>

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

int gq_cuda_matmul_mode(void) { return g_matmul; }

static __global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(in[i]);
}

int gq_cuda_to_bf16(void *out, const float *in, size_t n) {
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(to_bf16_kernel, gq_cuda_grid(n, 256), 256, 0, (__nv_bfloat16 *)out, in, n));
    return GQ_OK;
}

/* A bf16 copy of the elements a strided batch of row-major (rows, cols) matrices spans. */
static int bf16_copy(int slot, const float *src, int rows, int cols, int ld, long long stride, int batch,
                     const __nv_bfloat16 **dst) {
    const size_t n = (size_t)(batch - 1) * (size_t)stride + (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
    void *p = NULL;
    GQ_TRY(gq_cuda_scratch(slot, n * sizeof(__nv_bfloat16), &p));
    GQ_TRY(gq_cuda_to_bf16(p, src, n));
    *dst = (const __nv_bfloat16 *)p;
    return GQ_OK;
}

int gq_cuda_sgemm_rm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
                     const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch) {
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands */
    cublasHandle_t h = NULL;
    GQ_TRY(gq_cuda_cublas(&h));
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* bf16 operands: rounded copies. (The attention does not come here in bf16 mode: it keeps its
     * T x T matrices in bf16 itself, attention.cu; copying them per product made bf16 slower
     * than TF32 on the H200, 123k vs 145k tokens/s on GPT-2 124M.) */
    if (g_matmul == GQ_MATMUL_BF16 && M > 0 && N > 0 && K > 0 && batch > 0) {
        /* stored shapes: op(A) is (M, K), so A is (K, M) when transposed; likewise B */
        const __nv_bfloat16 *a16 = NULL, *b16 = NULL;
        GQ_TRY(bf16_copy(GQ_SCRATCH_BF16_A, A, ta ? K : M, ta ? M : K, lda, sA, batch, &a16));
        GQ_TRY(bf16_copy(GQ_SCRATCH_BF16_B, B, tb ? N : K, tb ? K : N, ldb, sB, batch, &b16));
        GQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, b16, CUDA_R_16BF, ldb, sB, a16,
                                                   CUDA_R_16BF, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return GQ_OK;
    }
    /* fp32 operands: IEEE products, or TF32 tensor cores when allowed */
    cublasComputeType_t ct = g_matmul == GQ_MATMUL_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
    GQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, sB, A, CUDA_R_32F, lda,
                                               sA, &beta, C, CUDA_R_32F, ldc, sC, batch, ct, CUBLAS_GEMM_DEFAULT));
    return GQ_OK;
}

int gq_cuda_gemm_bf16_rm(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, long long sA,
                         const void *B, int ldb, long long sB, float beta, void *C, int c_bf16, int ldc, long long sC,
                         int batch) {
    cublasHandle_t h = NULL;
    GQ_TRY(gq_cuda_cublas(&h));
    cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    GQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_16BF, ldb, sB, A, CUDA_R_16BF,
                                               lda, sA, &beta, C, c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, sC, batch,
                                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return GQ_OK;
}
