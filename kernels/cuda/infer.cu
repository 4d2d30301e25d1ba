/* infer (CUDA): the inference runner's own kernels beside the op table's: the token embedding
 * read from packed weights, the KV cache store (fp16 with quant.h's rounding, or fp32),
 * attention of new tokens over the cache, and a greedy argmax. Positions come from device
 * memory (d_pos), so that a decode step captured once as a CUDA graph replays for every
 * position. One sequence per call (the runner's plan on the GPU has B = 1). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "act_math.h"
#include "qmatmul.h"

#define FULL 0xffffffffu

static __global__ void embed_kernel(float *x, gq_qmat wte, const float *wpe, const int32_t *tokens, const int32_t *d_pos,
                                    int M, int C) {
    const int m = blockIdx.y, pos = *d_pos + m;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x)
        x[(size_t)m * C + c] = gq_qmat_value(&wte, tokens[m], c) + wpe[(size_t)pos * C + c];
}

extern "C" int gq_cuda_embed(float *x, const gq_qmat *wte, const float *wpe, const int32_t *d_tokens,
                             const int32_t *d_pos, int M, int C) {
    if (M <= 0) return GQ_OK;
    embed_kernel<<<dim3(gq_cuda_blocks((size_t)C, 256), (unsigned)M), 256>>>(x, *wte, wpe, d_tokens, d_pos, M, C);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}

static __global__ void kv_store_kernel(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M,
                                       int C) {
    const int m = blockIdx.y;
    const size_t row = (size_t)(*d_pos + m) * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        const float k = qkv[(size_t)m * 3 * C + C + c], v = qkv[(size_t)m * 3 * C + 2 * C + c];
        if (f16) {
            ((uint16_t *)kc)[row + c] = gq_f32_to_f16(k);
            ((uint16_t *)vc)[row + c] = gq_f32_to_f16(v);
        } else {
            ((float *)kc)[row + c] = k;
            ((float *)vc)[row + c] = v;
        }
    }
}

extern "C" int gq_cuda_kv_store(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M, int C) {
    if (M <= 0) return GQ_OK;
    kv_store_kernel<<<dim3(gq_cuda_blocks((size_t)C, 256), (unsigned)M), 256>>>(kc, vc, f16, qkv, d_pos, M, C);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}

enum { ATT_THREADS = 128 };

static __device__ __forceinline__ float kv_get(const void *c, int f16, size_t i) {
    return f16 ? gq_f16_to_f32(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

/* One block per (head, query). Query m sits at position t = *d_pos + m and attends to positions
 * 0..t. Keys and values come from the cache, or, when own_pass (a pass that started at
 * position 0, as the CPU runner does), from this pass's own fp32 qkv rows. Scores live in
 * shared memory (t + 1 floats). */
static __global__ void __launch_bounds__(ATT_THREADS)
    attend_kernel(float *out, const float *qkv, const void *kc, const void *vc, int f16, const int32_t *d_pos,
                  int own_pass, int NH, int C) {
    extern __shared__ float s[];
    __shared__ float red[ATT_THREADS / 32];
    const int h = blockIdx.x, m = blockIdx.y, hs = C / NH, t = *d_pos + m, n = t + 1;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = ATT_THREADS / 32;
    const float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + (size_t)m * 3 * C + h * hs;
    const float *pass = qkv; /* own_pass: position u is this pass's row u (the pass started at 0) */
    for (int u = warp; u < n; u += nw) {
        float d = 0.0f;
        for (int e = lane; e < hs; e += 32) {
            const float k = own_pass ? pass[(size_t)u * 3 * C + C + h * hs + e] : kv_get(kc, f16, (size_t)u * C + h * hs + e);
            d += q[e] * k;
        }
        for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(FULL, d, o);
        if (lane == 0) s[u] = d * scale;
    }
    __syncthreads();
    float mx = -3.0e38f;
    for (int u = threadIdx.x; u < n; u += ATT_THREADS) mx = fmaxf(mx, s[u]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < nw; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int u = threadIdx.x; u < n; u += ATT_THREADS) {
        const float e = gq_exp(s[u] - mx);
        s[u] = e;
        sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(FULL, sum, o);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < nw; w++) sum += red[w];
    const float inv = 1.0f / sum;
    for (int e = threadIdx.x; e < hs; e += ATT_THREADS) {
        float acc = 0.0f;
        for (int u = 0; u < n; u++) {
            const float v = own_pass ? pass[(size_t)u * 3 * C + 2 * C + h * hs + e] : kv_get(vc, f16, (size_t)u * C + h * hs + e);
            acc += s[u] * v;
        }
        out[(size_t)m * C + h * hs + e] = acc * inv;
    }
}

extern "C" int gq_cuda_attend(float *out, const float *qkv, const void *kc, const void *vc, int f16,
                              const int32_t *d_pos, int own_pass, int M, int NH, int C, int T) {
    if (M <= 0) return GQ_OK;
    const size_t smem = (size_t)T * sizeof(float);
    if (smem > 48 * 1024) return gq_errf(GQ_EUNSUPPORTED, "CUDA attention: a context of %d positions (at most 12288)", T);
    attend_kernel<<<dim3((unsigned)NH, (unsigned)M), ATT_THREADS, smem>>>(out, qkv, kc, vc, f16, d_pos, own_pass, NH,
                                                                          C);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}

/* The index of the largest of x[0..n) (the first on ties, as the CPU sampler's greedy pick). */
static __global__ void argmax_kernel(int32_t *out, const float *x, int n) {
    __shared__ float bv[32];
    __shared__ int bi[32];
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > v) v = x[i], idx = i; /* ascending i per thread: the first of equal values */
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(FULL, v, o);
        const int oi = __shfl_xor_sync(FULL, idx, o);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
    if (threadIdx.x % 32 == 0) bv[threadIdx.x / 32] = v, bi[threadIdx.x / 32] = idx;
    __syncthreads();
    if (threadIdx.x == 0) {
        v = bv[0], idx = bi[0];
        for (int w = 1; w < (int)blockDim.x / 32; w++)
            if (bv[w] > v || (bv[w] == v && bi[w] < idx)) v = bv[w], idx = bi[w];
        *out = idx;
    }
}

extern "C" int gq_cuda_argmax(int32_t *d_out, const float *x, int n) {
    argmax_kernel<<<1, 1024>>>(d_out, x, n);
    GQ_CUDA_CHECK_LAUNCH();
    return GQ_OK;
}
