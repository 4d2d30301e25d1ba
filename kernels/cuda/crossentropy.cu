/* crossentropy (CUDA): fused softmax + cross-entropy over the real vocabulary, one block per
 * row; the backward recomputes the softmax from the saved log-sum-exp in place, element for
 * element the CPU's arithmetic (bit-identical given the same lse and logits). With bf16
 * operands the logits are the LM head's bf16 output (backend.h): the forward reads them as they
 * lie and the backward overwrites each with its gradient rounded to bf16, in place, the
 * teacher's logits (distillation) bf16 likewise. One template per element type.
 * The trainer's step takes both in one kernel where the row fits in shared memory
 * (crossentropy_fused_kernel): the row read from memory once and written once. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <stdlib.h>
#include <string.h>

enum { CE_THREADS = 256 };

/* the block's max or sum of v (every thread gets it); sh may still be read by the previous call
 * (the first barrier), and shared-memory stores made before the call are seen after it */
template <int THREADS> static __device__ float block_reduce(float v, int is_max) {
    static __shared__ float sh[THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = sh[0];
    for (int w = 1; w < THREADS / 32; w++) r = is_max ? fmaxf(r, sh[w]) : r + sh[w];
    return r;
}

template <typename X>
static __global__ void crossentropy_forward_kernel(float *losses, float *lse, const X *logits, const int32_t *targets,
                                                   int V, int Vp) {
    int n = blockIdx.x;
    const X *x = logits + (size_t)n * Vp;
    float mx = -3.0e38f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) mx = fmaxf(mx, gq_ld(x + i));
    mx = block_reduce<CE_THREADS>(mx, 1);
    float s = 0.0f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) s += gq_exp(gq_ld(x + i) - mx);
    s = block_reduce<CE_THREADS>(s, 0);
    if (threadIdx.x == 0) {
        float l = mx + (float)log((double)s);
        lse[n] = l;
        losses[n] = targets[n] < 0 ? 0.0f : l - gq_ld(x + targets[n]);
    }
}

/* In place: x (N,Vp) becomes (softmax - target distribution) * dloss; DISTILL: the target
 * distribution is (1 - w) onehot + w softmax(tlogits) (the teacher's, log-sum-exp tlse). Each
 * element is read and written by one thread. */
template <typename X, bool DISTILL>
static __global__ void crossentropy_backward_kernel(X *logits, const float *lse, const X *tlogits, const float *tlse,
                                                    const int32_t *targets, float w, float dloss, int N, int V,
                                                    int Vp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= Vp) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) { /* gridDim.y is capped at 65535 */
        X *x = logits + (size_t)n * Vp + i;
        int tg = targets[n];
        float g = 0.0f;
        if (tg >= 0 && i < V) {
            if (DISTILL) {
                g = gq_exp(gq_ld(x) - lse[n]) * dloss - gq_exp(gq_ld(tlogits + (size_t)n * Vp + i) - tlse[n]) * (w * dloss);
                if (i == tg) g -= (1.0f - w) * dloss;
            } else {
                g = gq_exp(gq_ld(x) - lse[n]) * dloss;
                if (i == tg) g -= dloss;
            }
        }
        gq_st(x, g);
    }
}

template <typename X>
static int forward(float *losses, float *lse, const void *logits, const int32_t *targets, int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    GQ_TRY(gq_launch(crossentropy_forward_kernel<X>, N, CE_THREADS, 0, losses, lse, (const X *)logits, targets, V, Vp));
    return GQ_OK;
}

template <typename X, bool DISTILL>
static int backward(void *logits, const float *lse, const void *tlogits, const float *tlse, const int32_t *targets,
                    float w, float dloss, int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    GQ_TRY(gq_launch(crossentropy_backward_kernel<X, DISTILL>, dim3(gq_cuda_blocks(Vp, 256), N < 65535 ? N : 65535),
                     256, 0, (X *)logits, lse, (const X *)tlogits, tlse, targets, w, dloss, N, V, Vp));
    return GQ_OK;
}

extern "C" int gq_cuda_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets,
                                            int N, int V, int Vp) {
    return forward<float>(losses, lse, logits, targets, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss,
                                             int N, int V, int Vp) {
    return backward<float, false>(logits, lse, NULL, NULL, targets, 0.0f, dloss, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits,
                                                     const float *tlse, const int32_t *targets, float w, float dloss,
                                                     int N, int V, int Vp) {
    return backward<float, true>(logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_forward_bf16(float *losses, float *lse, const void *logits,
                                                 const int32_t *targets, int N, int V, int Vp) {
    return forward<__nv_bfloat16>(losses, lse, logits, targets, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_backward_bf16(void *logits, const float *lse, const int32_t *targets, float dloss,
                                                  int N, int V, int Vp) {
    return backward<__nv_bfloat16, false>(logits, lse, NULL, NULL, targets, 0.0f, dloss, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_distill_backward_bf16(void *logits, const float *lse, const void *tlogits,
                                                          const float *tlse, const int32_t *targets, float w,
                                                          float dloss, int N, int V, int Vp) {
    return backward<__nv_bfloat16, true>(logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp);
}

/* ---- forward and backward in one pass over the logits (the trainer's step) ----
 * One block of CEF_THREADS per row: the row is read once from global memory into shared memory
 * (its maximum taken on the way, 16-byte loads where the row is 16-byte aligned), the sum of
 * exponentials and the log-sum-exp from shared memory, then the gradient written over the row
 * in place. The loss, lse and every gradient value are the separate kernels' expressions; the
 * sums run in another order (more threads), so lse differs from crossentropy_forward's in the
 * last bits, and each gradient is exactly crossentropy_backward's given that lse. HBM traffic: a
 * read and a write of the logits, where the separate kernels make three reads and a write. */
enum { CEF_THREADS = 1024 };

template <typename X>
static __device__ __forceinline__ float cef_grad(const X *row, int i, int V, int tg, float l, float dloss) {
    float g = 0.0f;
    if (tg >= 0 && i < V) {
        g = gq_exp(gq_ld(row + i) - l) * dloss;
        if (i == tg) g -= dloss;
    }
    return g;
}

template <typename X>
static __global__ void __launch_bounds__(CEF_THREADS)
    crossentropy_fused_kernel(float *losses, float *lse, X *logits, const int32_t *targets, float dloss, int V, int Vp) {
    GQ_DYN_SMEM(unsigned char, cef_smem); /* (one name for every element type) */
    X *row = (X *)cef_smem;
    constexpr int E = 16 / sizeof(X); /* values per 16-byte vector */
    const int n = blockIdx.x, tid = threadIdx.x;
    X *x = logits + (size_t)n * Vp;
    const bool vec = (size_t)x % 16 == 0; /* (the same for every thread of the block) */
    const int nv = vec ? V / E : 0;
    float mx = -3.0e38f;
    for (int j = tid; j < nv; j += CEF_THREADS) {
        uint4 u = ((const uint4 *)x)[j];
        ((uint4 *)row)[j] = u;
        X e[E];
        memcpy(e, &u, sizeof u);
#pragma unroll
        for (int k = 0; k < E; k++) mx = fmaxf(mx, gq_ld(e + k));
    }
    for (int i = nv * E + tid; i < V; i += CEF_THREADS) {
        row[i] = x[i];
        mx = fmaxf(mx, gq_ld(x + i));
    }
    mx = block_reduce<CEF_THREADS>(mx, 1);
    float s = 0.0f;
    for (int i = tid; i < V; i += CEF_THREADS) s += gq_exp(gq_ld(row + i) - mx);
    s = block_reduce<CEF_THREADS>(s, 0);
    const float l = mx + (float)log((double)s);
    const int tg = targets[n];
    if (tid == 0) {
        lse[n] = l;
        losses[n] = tg < 0 ? 0.0f : l - gq_ld(row + tg);
    }
    const int nw = vec && Vp % E == 0 ? Vp / E : 0;
    for (int j = tid; j < nw; j += CEF_THREADS) {
        X e[E];
#pragma unroll
        for (int k = 0; k < E; k++) gq_st(e + k, cef_grad(row, j * E + k, V, tg, l, dloss));
        uint4 u;
        memcpy(&u, e, sizeof u);
        ((uint4 *)x)[j] = u;
    }
    for (int i = nw * E + tid; i < Vp; i += CEF_THREADS) gq_st(x + i, cef_grad(row, i, V, tg, l, dloss));
}

static long long g_cef_calls[2]; /* fused calls taken, refused (the trainer reports them) */

extern "C" void gq_cuda_ce_fused_counts(long long *taken, long long *refused) {
    *taken = g_cef_calls[0], *refused = g_cef_calls[1];
}

template <typename X>
static int fused(float *losses, float *lse, void *logits, const int32_t *targets, float dloss, int N, int V, int Vp) {
    static int on = -1; /* GQ_CUDA_CE_FUSED=0: the separate kernels, for measuring the fused one */
    if (on < 0) on = gq_cuda_env_on("GQ_CUDA_CE_FUSED", "0");
    const size_t smem = ((size_t)V * sizeof(X) + 15) / 16 * 16;
    /* off, or a row that does not fit in a block's shared memory: the caller runs the separate kernels */
    if (!on || smem > 227 * 1024 ||
        cudaFuncSetAttribute(crossentropy_fused_kernel<X>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
            cudaSuccess) {
        (void)cudaGetLastError();
        g_cef_calls[1]++;
        return gq_errf(GQ_EUNSUPPORTED, on ? "fused cross-entropy: a row of %d logits does not fit in shared memory"
                                           : "fused cross-entropy: off (GQ_CUDA_CE_FUSED=0; %d logits a row)", V);
    }
    g_cef_calls[0]++;
    if (N <= 0) return GQ_OK;
    return gq_launch(crossentropy_fused_kernel<X>, N, CEF_THREADS, smem, losses, lse, (X *)logits, targets, dloss, V,
                     Vp);
}

extern "C" int gq_cuda_crossentropy_fused(float *losses, float *lse, void *logits, const int32_t *targets, float dloss,
                                          int N, int V, int Vp, int bf16) {
    return bf16 ? fused<__nv_bfloat16>(losses, lse, logits, targets, dloss, N, V, Vp)
                : fused<float>(losses, lse, logits, targets, dloss, N, V, Vp);
}
