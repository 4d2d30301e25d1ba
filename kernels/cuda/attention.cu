/* attention (CUDA): causal multi-head self-attention, the reference version: per batch row,
 * strided-batched cuBLAS products over the heads (q, k, v are read in place from qkv: head h
 * starts hs floats after head h-1, rows 3C apart) and one warp per row for the causal softmax
 * and its backward. The attention matrix is saved for the backward, as on the CPU. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <math.h>

/* row r of the (rows, T) matrix holds query position t = r % T: softmax of [0, t], zeros after */
static __global__ void softmax_causal_kernel(float *att, int rows, int T) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int t = r % T;
    float *x = att + (size_t)r * T;
    float mx = -3.0e38f;
    for (int u = lane; u <= t; u += 32) mx = fmaxf(mx, x[u]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float s = 0.0f;
    for (int u = lane; u <= t; u += 32) {
        float e = gq_exp(x[u] - mx);
        x[u] = e;
        s += e;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = 1.0f / s;
    for (int u = lane; u < T; u += 32) x[u] = u <= t ? x[u] * inv : 0.0f;
}

/* in place: d <- a * (d - sum(a * d)) on [0, t], zeros after */
static __global__ void softmax_causal_backward_kernel(float *d, const float *a, int rows, int T) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int t = r % T;
    float *dr = d + (size_t)r * T;
    const float *ar = a + (size_t)r * T;
    float dot = 0.0f;
    for (int u = lane; u <= t; u += 32) dot += ar[u] * dr[u];
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    for (int u = lane; u < T; u += 32) dr[u] = u <= t ? ar[u] * (dr[u] - dot) : 0.0f;
}

extern "C" int gq_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C;
        float *a = att + (size_t)b * NH * TT;
        /* a[h] = scale q_h k_h^T */
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, T, T, hs, scale, q, C3, hs, k, C3, hs, 0.0f, a, T, TT, NH));
    }
    int rows = B * NH * T;
    softmax_causal_kernel<<<gq_cuda_blocks(rows, 8), 256>>>(att, rows, T);
    GQ_CUDA_CHECK_LAUNCH();
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        /* out_h = a[h] v_h */
        GQ_TRY(gq_cuda_sgemm_rm(0, 0, T, hs, T, 1.0f, att + (size_t)b * NH * TT, T, TT, v, C3, hs, 0.0f,
                                out + (size_t)b * T * C, C, hs, NH));
    }
    return GQ_OK;
}

extern "C" int gq_cuda_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                          const float *att, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C, *dy = dout + (size_t)b * T * C;
        const float *a = att + (size_t)b * NH * TT;
        float *da = scratch + (size_t)b * NH * TT, *dv = dqkv + (size_t)b * T * C3 + 2 * C;
        /* da = dy v^T ; dv = a^T dy */
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, T, T, hs, 1.0f, dy, C, hs, v, C3, hs, 0.0f, da, T, TT, NH));
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, T, hs, T, 1.0f, a, T, TT, dy, C, hs, 0.0f, dv, C3, hs, NH));
    }
    int rows = B * NH * T;
    softmax_causal_backward_kernel<<<gq_cuda_blocks(rows, 8), 256>>>(scratch, att, rows, T);
    GQ_CUDA_CHECK_LAUNCH();
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C;
        const float *da = scratch + (size_t)b * NH * TT;
        float *dq = dqkv + (size_t)b * T * C3, *dk = dq + C;
        /* dq = scale da k ; dk = scale da^T q */
        GQ_TRY(gq_cuda_sgemm_rm(0, 0, T, hs, T, scale, da, T, TT, k, C3, hs, 0.0f, dq, C3, hs, NH));
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, T, hs, T, scale, da, T, TT, q, C3, hs, 0.0f, dk, C3, hs, NH));
    }
    return GQ_OK;
}
