/* crossentropy (CUDA): fused softmax + cross-entropy over the real vocabulary, one block per
 * row; the backward recomputes the softmax from the saved log-sum-exp in place, element for
 * element the CPU's arithmetic (bit-identical given the same lse and logits). With bf16
 * operands the logits are the LM head's bf16 output (backend.h): the forward reads them as they
 * lie and the backward overwrites each with its gradient rounded to bf16, in place, the
 * teacher's logits (distillation) bf16 likewise. One template per element type. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

enum { CE_THREADS = 256 };

static __device__ float block_reduce(float v, int is_max) {
    static __shared__ float sh[CE_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = sh[0];
    for (int w = 1; w < CE_THREADS / 32; w++) r = is_max ? fmaxf(r, sh[w]) : r + sh[w];
    return r;
}

template <typename X>
static __global__ void crossentropy_forward_kernel(float *losses, float *lse, const X *logits, const int32_t *targets,
                                                   int V, int Vp) {
    int n = blockIdx.x;
    const X *x = logits + (size_t)n * Vp;
    float mx = -3.0e38f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) mx = fmaxf(mx, gq_ld(x + i));
    mx = block_reduce(mx, 1);
    float s = 0.0f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) s += gq_exp(gq_ld(x + i) - mx);
    s = block_reduce(s, 0);
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
