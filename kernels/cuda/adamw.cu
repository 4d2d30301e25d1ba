/* adamw (CUDA): the optimizer update, element for element the CPU's arithmetic (bit-identical:
 * the same host-side constants, IEEE division and square root, no FMA contraction), and the
 * squared norm for global-norm clipping, reduced in double in a fixed order. */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "optim_math.h"

#include <math.h>

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2,
                                    float eps, float step, float bc2_sqrt, float decay, float grad_scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        gq_adamw_elem(&p[i], &m[i], &v[i], g[i], beta1, beta2, eps, step, bc2_sqrt, decay, grad_scale);
}

extern "C" int gq_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                                    float beta2, float eps, float weight_decay, int t, float grad_scale) {
    if (!n) return GQ_OK;
    const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    const float step = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
    GQ_TRY(gq_launch(adamw_kernel, gq_cuda_grid(n, 256), 256, 0, p, g, m, v, n, beta1, beta2, eps, step, bc2_sqrt,
                     decay, grad_scale));
    return GQ_OK;
}

enum { SS_THREADS = 256, SS_BLOCKS = 1024 };

static __global__ void sum_squares_partial_kernel(double *partial, const float *g, size_t n) {
    static __shared__ double sh[SS_THREADS];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)SS_THREADS + threadIdx.x; i < n; i += (size_t)SS_BLOCKS * SS_THREADS)
        s += (double)g[i] * (double)g[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = SS_THREADS / 2; w > 0; w >>= 1) { /* a fixed tree: deterministic */
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

static __global__ void sum_squares_final_kernel(double *partial) {
    static __shared__ double sh[SS_THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < SS_BLOCKS; i += SS_THREADS) s += partial[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = SS_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[SS_BLOCKS] = sh[0];
}

extern "C" int gq_cuda_sum_squares(double *out, const float *g, size_t n) {
    double *partial = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_REDUCE, (SS_BLOCKS + 1) * sizeof(double), (void **)&partial));
    GQ_TRY(gq_launch(sum_squares_partial_kernel, SS_BLOCKS, SS_THREADS, 0, partial, g, n));
    GQ_TRY(gq_launch(sum_squares_final_kernel, 1, SS_THREADS, 0, partial));
    GQ_CUDA_CHECK(cudaMemcpy(out, partial + SS_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost));
    return GQ_OK;
}
