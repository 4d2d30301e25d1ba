/* cuda_emu_runtime: the part of the CUDA runtime and cuBLAS that the kernels/cuda sources call, for
 * compiling those files themselves with the host compiler against cuda_emu.h (the headers in
 * tests/cuda_emu_include/ stand in for cuda_runtime.h, cublas_v2.h, cuda_bf16.h and mma.h).
 * Host memory stands for device memory; cudaMalloc fills it with 0xff bytes (NaN), so that a
 * read of scratch memory nothing wrote shows, as the NaN-poisoned shared memory does. Streams
 * and events are no-ops (every launch runs to the end before it returns); CUDA graphs are not
 * modelled (capture fails, as callers allow for). cublasGemmStridedBatchedEx is a reference
 * product in double (OpenBLAS's dgemm) with the operands as cuBLAS sees them: fp32, fp32 rounded to TF32 for
 * CUBLAS_COMPUTE_32F_FAST_TF32, or bf16; the result rounded to fp32 or bf16 (round to nearest
 * even). */
#ifndef GQ_CUDA_EMU_RUNTIME_H
#define GQ_CUDA_EMU_RUNTIME_H

#include "cuda_emu.h"

#include <cblas.h>
#include <cstdlib>
#include <vector>

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorNotSupported = 801,
} cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal,
    cudaStreamCaptureModeThreadLocal,
    cudaStreamCaptureModeRelaxed
};
typedef struct gq_emu_stream *cudaStream_t;
typedef struct gq_emu_event *cudaEvent_t;
typedef struct gq_emu_graph *cudaGraph_t;
typedef struct gq_emu_graph_exec *cudaGraphExec_t;
#define cudaStreamPerThread ((cudaStream_t)0x2)
struct cudaDeviceProp {
    char name[256];
    int multiProcessorCount;
    size_t totalGlobalMem;
};

inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNotSupported: return "operation not supported (cuda_emu)";
    }
    return "unknown error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; } /* a broken rule fails the launch itself */
inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    snprintf(p->name, sizeof p->name, "cuda_emu (the CPU)");
    p->multiProcessorCount = 1, p->totalGlobalMem = (size_t)80 << 30;
    return cudaSuccess;
}
/* 60 of 80 GiB free, or GQ_EMU_FREE_MIB (for tests of what a program plans from it) */
inline cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    const char *e = getenv("GQ_EMU_FREE_MIB");
    *free_bytes = e ? (size_t)strtoull(e, NULL, 10) << 20 : (size_t)60 << 30, *total_bytes = (size_t)80 << 30;
    return cudaSuccess;
}
template <class T> inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    void *q = malloc(bytes ? bytes : 1);
    if (!q) return cudaErrorMemoryAllocation;
    memset(q, 0xff, bytes);
    *p = (T *)q;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t = 0) { return cudaMemset(p, v, n); }
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t = 0) {
    return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
template <class F> inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int value) {
    return value >= 0 && (size_t)value <= gq_emu::DYN_SMEM_MAX ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = NULL;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = 0) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) {
    *ms = 0;
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { return cudaErrorNotSupported; }
inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    *g = NULL;
    return cudaErrorNotSupported;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t, unsigned long long) {
    *e = NULL;
    return cudaErrorNotSupported;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t) { return cudaSuccess; }
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t) { return cudaErrorNotSupported; }
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t) { return cudaSuccess; }

/* ---- cuBLAS ---- */
typedef struct gq_emu_cublas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N, CUBLAS_OP_T } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0 } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_COMPUTE_32F_FAST_TF32 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUDA_R_32F, CUDA_R_16BF } cudaDataType;

inline const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS         ? "success"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "invalid value"
                                              : "not supported";
}
inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)0x1;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

namespace gq_emu {
/* an fp32 rounded to TF32 (10 mantissa bits, to nearest even) */
inline float tf32(float f) {
    if (!std::isfinite(f)) return f;
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0xfffu + ((u >> 13) & 1u);
    u &= ~0x1fffu;
    memcpy(&f, &u, 4);
    return f;
}
inline float gemm_value(const void *p, cudaDataType t, size_t i, bool to_tf32) {
    if (t == CUDA_R_16BF) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    const float f = ((const float *)p)[i];
    return to_tf32 ? tf32(f) : f;
}
} // namespace gq_emu

namespace gq_emu {
/* column-major op(A) op(B) (m, n) in double, element (i, j) at acc[j * m + i]: the operands'
 * values (bf16 widened, TF32-rounded when asked) in double, multiplied by OpenBLAS's dgemm (sums
 * in double, rounded once to the output type by the caller) */
inline void gemm_products(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A,
                          cudaDataType at, size_t lda, const void *B, cudaDataType bt, size_t ldb, bool t32,
                          std::vector<double> &acc) {
    std::vector<double> a((size_t)m * k), bm((size_t)n * k); /* column-major (m, k) and (k, n) */
    for (int p = 0; p < k; p++)
        for (int i = 0; i < m; i++)
            a[(size_t)p * m + i] = gemm_value(A, at, ta == CUBLAS_OP_N ? (size_t)p * lda + i : (size_t)i * lda + p, t32);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++)
            bm[(size_t)j * k + p] = gemm_value(B, bt, tb == CUBLAS_OP_N ? (size_t)j * ldb + p : (size_t)p * ldb + j, t32);
    acc.assign((size_t)m * n, 0.0);
    if (m > 0 && n > 0 && k > 0)
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a.data(), m, bm.data(), k, 0.0, acc.data(),
                    m);
}
inline void store_value(void *p, cudaDataType t, size_t i, double v) {
    if (t == CUDA_R_16BF)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v);
    else
        ((float *)p)[i] = (float)v;
}
} // namespace gq_emu

/* column-major C (m, n) = alpha op(A) op(B) + beta C per batch entry; C is not read when beta is 0 */
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void *alpha, const void *A, cudaDataType at,
                                                 int lda, long long sa, const void *B, cudaDataType bt, int ldb,
                                                 long long sb, const void *beta, void *C, cudaDataType ct, int ldc,
                                                 long long sc, int batch, cublasComputeType_t compute,
                                                 cublasGemmAlgo_t) {
    if (m < 0 || n < 0 || k < 0 || batch < 0 || ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (at != bt || (at == CUDA_R_16BF && compute != CUBLAS_COMPUTE_32F)) return CUBLAS_STATUS_NOT_SUPPORTED;
    const bool t32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const size_t ea = at == CUDA_R_16BF ? 2 : 4;
    std::vector<double> acc;
    for (int b = 0; b < batch; b++) {
        gq_emu::gemm_products(ta, tb, m, n, k, (const char *)A + (size_t)b * sa * ea, at, lda,
                              (const char *)B + (size_t)b * sb * ea, bt, ldb, t32, acc);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const size_t ci = (size_t)b * sc + (size_t)j * ldc + i;
                double v = al * acc[(size_t)j * m + i];
                if (be != 0) v += (double)be * gq_emu::gemm_value(C, ct, ci, false);
                gq_emu::store_value(C, ct, ci, v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
