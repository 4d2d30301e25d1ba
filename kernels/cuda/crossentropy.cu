/* crossentropy (CUDA): fused softmax + cross-entropy over the real vocabulary, one block per
 * row; the backward recomputes the softmax from the saved log-sum-exp in place, element for
 * element the CPU's arithmetic (bit-identical given the same lse). With bf16 operands the
 * backward writes bf16 into the first half of each row (backend.h), one block per row. */
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

static __global__ void crossentropy_forward_kernel(float *losses, float *lse, const float *logits,
                                                   const int32_t *targets, int V, int Vp) {
    int n = blockIdx.x;
    const float *x = logits + (size_t)n * Vp;
    float mx = -3.0e38f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) mx = fmaxf(mx, x[i]);
    mx = block_reduce(mx, 1);
    float s = 0.0f;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) s += gq_exp(x[i] - mx);
    s = block_reduce(s, 0);
    if (threadIdx.x == 0) {
        float l = mx + (float)log((double)s);
        lse[n] = l;
        losses[n] = targets[n] < 0 ? 0.0f : l - x[targets[n]];
    }
}

static __global__ void crossentropy_backward_kernel(float *logits, const float *lse, const int32_t *targets,
                                                    float dloss, int N, int V, int Vp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= Vp) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) { /* gridDim.y is capped at 65535 */
        float *x = logits + (size_t)n * Vp;
        int tg = targets[n];
        if (tg < 0 || i >= V) {
            x[i] = 0.0f;
            continue;
        }
        float g = gq_exp(x[i] - lse[n]) * dloss;
        if (i == tg) g -= dloss;
        x[i] = g;
    }
}

extern "C" int gq_cuda_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets,
                                            int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    GQ_TRY(gq_launch(crossentropy_forward_kernel, N, CE_THREADS, 0, losses, lse, logits, targets, V, Vp));
    return GQ_OK;
}

extern "C" int gq_cuda_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss,
                                             int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    GQ_TRY(gq_launch(crossentropy_backward_kernel, dim3(gq_cuda_blocks(Vp, 256), N < 65535 ? N : 65535), 256, 0, logits,
                     lse, targets, dloss, N, V, Vp));
    return GQ_OK;
}

static __global__ void crossentropy_distill_backward_kernel(float *logits, const float *lse, const float *tlogits,
                                                            const float *tlse, const int32_t *targets, float w,
                                                            float dloss, int N, int V, int Vp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= Vp) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        float *x = logits + (size_t)n * Vp;
        int tg = targets[n];
        if (tg < 0 || i >= V) {
            x[i] = 0.0f;
            continue;
        }
        float g = gq_exp(x[i] - lse[n]) * dloss - gq_exp(tlogits[(size_t)n * Vp + i] - tlse[n]) * (w * dloss);
        if (i == tg) g -= (1.0f - w) * dloss;
        x[i] = g;
    }
}

extern "C" int gq_cuda_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits,
                                                     const float *tlse, const int32_t *targets, float w, float dloss,
                                                     int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    GQ_TRY(gq_launch(crossentropy_distill_backward_kernel, dim3(gq_cuda_blocks(Vp, 256), N < 65535 ? N : 65535), 256, 0,
                     logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp));
    return GQ_OK;
}

/* bf16 in place: row n's gradient as bf16 in the first half of the row. A block walks its row in
 * chunks of CE_THREADS; each chunk is read before a barrier and written after it: bf16 element
 * i overlaps float i / 2 of the same row, read in this chunk or an earlier one, and no write
 * reaches a float of a later chunk. tlogits (distillation, DISTILL) is the teacher's. */
template <bool DISTILL>
static __global__ void crossentropy_backward16_kernel(float *logits, const float *lse, const float *tlogits,
                                                      const float *tlse, const int32_t *targets, float w, float dloss,
                                                      int N, int V, int Vp) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = logits + (size_t)n * Vp;
        __nv_bfloat16 *o = (__nv_bfloat16 *)(logits + (size_t)n * Vp);
        const int tg = targets[n];
        for (int base = 0; base < Vp; base += CE_THREADS) {
            const int i = base + threadIdx.x;
            float g = 0.0f;
            if (i < V && tg >= 0) {
                if (DISTILL) {
                    g = gq_exp(x[i] - lse[n]) * dloss - gq_exp(tlogits[(size_t)n * Vp + i] - tlse[n]) * (w * dloss);
                    if (i == tg) g -= (1.0f - w) * dloss;
                } else {
                    g = gq_exp(x[i] - lse[n]) * dloss;
                    if (i == tg) g -= dloss;
                }
            }
            __syncthreads();
            if (i < Vp) o[i] = __float2bfloat16_rn(g);
        } /* (no barrier before the next row: its floats are another row's) */
    }
}

static int backward16(bool distill, float *logits, const float *lse, const float *tlogits, const float *tlse,
                      const int32_t *targets, float w, float dloss, int N, int V, int Vp) {
    if (N <= 0) return GQ_OK;
    const unsigned blocks = N < 65535 ? (unsigned)N : 65535u;
    if (distill)
        GQ_TRY(gq_launch(crossentropy_backward16_kernel<true>, blocks, CE_THREADS, 0, logits, lse, tlogits, tlse, targets,
                         w, dloss, N, V, Vp));
    else
        GQ_TRY(gq_launch(crossentropy_backward16_kernel<false>, blocks, CE_THREADS, 0, logits, lse, tlogits, tlse,
                         targets, w, dloss, N, V, Vp));
    return GQ_OK;
}

extern "C" int gq_cuda_crossentropy_backward_bf16(float *logits, const float *lse, const int32_t *targets, float dloss,
                                                  int N, int V, int Vp) {
    return backward16(false, logits, lse, NULL, NULL, targets, 0.0f, dloss, N, V, Vp);
}

extern "C" int gq_cuda_crossentropy_distill_backward_bf16(float *logits, const float *lse, const float *tlogits,
                                                          const float *tlse, const int32_t *targets, float w,
                                                          float dloss, int N, int V, int Vp) {
    return backward16(true, logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp);
}
