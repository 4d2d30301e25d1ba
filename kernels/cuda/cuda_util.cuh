/* cuda_util: error checking, the cuBLAS handle and the backend's scratch memory, shared by
 * the CUDA sources. */
#ifndef GQ_CUDA_UTIL_CUH
#define GQ_CUDA_UTIL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "gq_error.h"
#include "quant.h"
}

#define GQ_CUDA_CHECK(call)                                                                          \
    do {                                                                                             \
        cudaError_t gq_cuda_err_ = (call);                                                           \
        if (gq_cuda_err_ != cudaSuccess)                                                             \
            return gq_errf(GQ_EDEVICE, "CUDA error in %s (%s:%d): %s", #call, __FILE__, __LINE__,    \
                           cudaGetErrorString(gq_cuda_err_));                                         \
    } while (0)

#define GQ_CUBLAS_CHECK(call)                                                                        \
    do {                                                                                             \
        cublasStatus_t gq_cublas_st_ = (call);                                                       \
        if (gq_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
            return gq_errf(GQ_EDEVICE, "cuBLAS error in %s (%s:%d): %s", #call, __FILE__, __LINE__,  \
                           cublasGetStatusString(gq_cublas_st_));                                     \
    } while (0)

#include "f16_value.cuh"

#include <stdlib.h>
#include <string.h>

/* The measuring switches (docs/GPU.md's table): 0 where the environment variable `name` is set
 * to `off`, else 1; each caller reads it once and keeps it. */
static inline int gq_cuda_env_on(const char *name, const char *off) {
    const char *e = getenv(name);
    return !(e && !strcmp(e, off));
}

/* W8A8: one block of 32 activations, a value per lane of the warp, as its int8 value: the
 * block's absmax by shuffles (a max of exact values: the same in any order), then quant.h's
 * scale and code (gq_act8_inv, gq_act8_code), so the CPU's bits (a NaN is passed over in the
 * absmax, as quant.h's loop does). */
static __device__ __forceinline__ float gq_act8_warp(float v) {
    float amax = fabsf(v);
    amax = amax > 0.0f ? amax : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, amax, o);
        amax = other > amax ? other : amax;
    }
    const float d = amax / 127.0f;
    return (float)gq_act8_code(v, gq_act8_inv(d)) * d;
}

/* Check a kernel launch. */
#define GQ_CUDA_CHECK_LAUNCH() GQ_CUDA_CHECK(cudaGetLastError())

/* Every kernel launch of kernels/cuda: gq_launch(kernel, grid, block, dynamic shared bytes,
 * arguments...) returns a gq error code. On the GPU: <<<>>> on the per-thread default stream, then
 * the launch checked. Built against tests/cuda_emu.h (GQ_CUDA_EMU; the CPU emulator that runs
 * these sources in the tests), the kernel runs there and a broken CUDA rule fails the launch.
 * A kernel's dynamic shared array is declared GQ_DYN_SMEM(type, name). */
#ifdef GQ_CUDA_EMU
struct gq_gpu_launch {
    template <class... P, class... A>
    int operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... a) const {
        const int before = gq_emu::violations;
        gq_emu::launch(grid, block, smem, [&] { kernel(a...); });
        return gq_emu::violations == before ? GQ_OK : gq_errf(GQ_EDEVICE, "cuda_emu: the kernel broke a CUDA rule");
    }
};
#else
struct gq_gpu_launch {
    template <class... P, class... A>
    int operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... a) const {
        kernel<<<grid, block, smem>>>(a...);
        GQ_CUDA_CHECK_LAUNCH();
        return GQ_OK;
    }
};
#define GQ_DYN_SMEM(T, name) extern __shared__ __align__(128) T name[]
#endif
template <class... P, class... A>
static inline int gq_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... a) {
    return gq_gpu_launch{}(kernel, grid, block, smem, a...);
}

/* An element of an fp32 or bf16 array read / written as fp32 (bf16: rounded to nearest even):
 * the kernels whose activations are bf16 in bf16 mode (gq_cuda_bf16_operands) are templates over it. */
static __device__ __forceinline__ float gq_ld(const float *p) { return *p; }
static __device__ __forceinline__ float gq_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void gq_st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void gq_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

static inline unsigned gq_cuda_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

/* A grid-stride launch size for n elements: at most 65535 * 8 blocks. */
static inline unsigned gq_cuda_grid(size_t n, unsigned threads) {
    unsigned b = gq_cuda_blocks(n, threads);
    return b > 524280u ? 524280u : (b ? b : 1u);
}

/* The process's cuBLAS handle (created on first use, fp32 math without TF32). */
int gq_cuda_cublas(cublasHandle_t *h);

/* The backend's scratch memory: grow-only, one buffer per slot, kept until exit. Ops that need
 * temporary device memory (attention's head-major copies, reduction partials, the encoder's
 * token buckets) take it from here, so a training step allocates nothing once warmed up. */
enum {
    GQ_SCRATCH_A = 0,
    GQ_SCRATCH_B,
    GQ_SCRATCH_REDUCE,
    GQ_SCRATCH_BF16_A,
    GQ_SCRATCH_BF16_B,
    GQ_SCRATCH_ATT_QKV16, /* bf16 attention: a bf16 copy of qkv */
    GQ_SCRATCH_ATT_DY16,  /* bf16 attention backward: a bf16 copy of the output gradient */
    GQ_SCRATCH_OUT32,     /* a product's fp32 result before its bias and rounding to a bf16 output */
    GQ_SCRATCH_LT,        /* cuBLASLt's workspace (cublaslt.cu) */
    GQ_SCRATCH_BIAS16,    /* a bias rounded to bf16 for a bf16 output's epilogue (cublaslt.cu) */
    GQ_SCRATCH_N
};
int gq_cuda_scratch(int slot, size_t bytes, void **p);

/* Row-major strided-batched sgemm: C[i] = alpha op(A[i]) op(B[i]) + beta C[i], i < batch,
 * with op(A) (M,K), op(B) (K,N), C (M,N); ta / tb = 1 for a transposed operand. fp32 storage;
 * in GQ_MATMUL_BF16 mode the operands are rounded to bf16 (to nearest) into scratch copies and
 * multiplied on the bf16 tensor cores with fp32 accumulation. */
int gq_cuda_sgemm_rm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
                     const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch);
/* The same with bf16 operands as stored (A, B: __nv_bfloat16), fp32 accumulation, C in bf16
 * (c_bf16) or fp32; whatever the mode. */
int gq_cuda_gemm_bf16_rm(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, long long sA,
                         const void *B, int ldb, long long sB, float beta, void *C, int c_bf16, int ldc, long long sC,
                         int batch);
/* cuBLASLt products with an epilogue (cublaslt.cu): row-major D (M,N) = op(A) op(B) (+ C, beta 1,
 * C in D's type and layout; NULL: none), then GQ_LT_BIAS: + bias (N, fp32); GQ_LT_GELU_AUX_BIAS:
 * + bias, the sum stored to aux (D's type and layout), D = GELU(sum); GQ_LT_DGELU: D = GELU'(aux)
 * x sum; the result rounded once to D's type (bf16 if d16, else fp32). A and B are fp32 arrays in
 * the fp32 / tf32 modes and bf16 arrays in bf16 mode (as the products of matmul.cu take them).
 * GQ_EUNSUPPORTED, nothing written, where cuBLASLt takes no such product (no algorithm, types it
 * refuses, pointers or rows not 16-byte aligned, GQ_CUDA_LT=0): the caller uses its separate
 * kernels. */
enum { GQ_LT_NONE = 0, GQ_LT_BIAS = 1, GQ_LT_GELU_AUX_BIAS = 2, GQ_LT_DGELU = 3 };
int gq_cuda_lt_matmul(int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb,
                      const void *C, void *D, int ldd, int d16, const float *bias, void *aux, int epi);
/* out (bf16, n) = in (fp32) rounded to nearest */
int gq_cuda_to_bf16(void *out, const float *in, size_t n);
/* GQ_MATMUL_FP32 | TF32 | BF16: the mode gq_cuda_set_matmul set */
int gq_cuda_matmul_mode(void);

/* The flash attention backwards' row term D (B, NH, T) = dO . O per head row, in scratch slot B
 * (*D points there); out: fp32, or bf16 if out_bf16 */
int gq_cuda_attention_delta(float **D, const float *dout, const void *out, int out_bf16, int B, int T, int C, int NH);

/* out (C) += column sums of in (N,C), summed in a fixed order (deterministic). */
int gq_cuda_colsum_add(float *out, const float *in, int N, int C);
int gq_cuda_colsum_add_bf16(float *out, const void *in, int N, int C); /* in: a bf16 (N, C) array */

#endif
