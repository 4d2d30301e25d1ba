/* attention_flash (CUDA): causal multi-head attention without the (T, T) matrix, flash-style
 * (online softmax over key tiles; the backward recomputes the probabilities from the saved
 * log-sum-exp). fp32 on CUDA cores, checked against the CPU op and timed against the cuBLAS
 * reference and PyTorch's scaled_dot_product_attention. Deterministic: every output element
 * is summed by one thread in a fixed order (dK/dV by key tiles, dQ by query tiles, no atomics).
 * Layout as backend.h: qkv (B,T,3C), out (B,T,C); lse (B,NH,T); head size at most 128.
 *
 * Forward: a block is 8 warps x 4 queries; a warp keeps its 4 queries' running max, sum and
 * output (lanes own head dimensions), scores 32 keys of a shared-memory tile per pass (lane =
 * key), then accumulates p * V with the probabilities broadcast by shuffles. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <math.h>

enum { FA_WARPS = 8, FA_R = 4, FA_TILE = 32 };

#define FULL 0xffffffffu

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}
static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    return v;
}

/* rows [r0, r0 + n) of one head's q / k / v (which = 0, 1, 2) into s (n rows, stride ld),
 * scaled; rows past T are zero */
static __device__ void load_rows(float *s, int ld, const float *head, int which, int r0, int n, int T, int hs, int C,
                                 float scale) {
    const int C3 = 3 * C;
    for (int i = threadIdx.x; i < n * hs; i += blockDim.x) {
        int r = i / hs, d = i % hs, t = r0 + r;
        s[r * ld + d] = t < T ? head[(size_t)t * C3 + which * C + d] * scale : 0.0f;
    }
}

template <int KD>
static __global__ void __launch_bounds__(FA_WARPS * 32)
    flash_forward_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH, float scale) {
    const int hs = C / NH, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = blockIdx.x * FA_WARPS * FA_R, wq = q0 + warp * FA_R; /* this warp's first query */
    GQ_DYN_SMEM(float, sm);
    float *qs = sm, *ks = qs + FA_WARPS * FA_R * hs, *vs = ks + FA_TILE * (hs + 1);
    const float *head = qkv + (size_t)b * T * 3 * C + h * hs;
    load_rows(qs, hs, head, 0, q0, FA_WARPS * FA_R, T, hs, C, scale);
    float m[FA_R], l[FA_R], o[FA_R][KD];
#pragma unroll
    for (int r = 0; r < FA_R; r++) {
        m[r] = -3.0e38f, l[r] = 0.0f;
#pragma unroll
        for (int k = 0; k < KD; k++) o[r][k] = 0.0f;
    }
    const int kend = min(T, q0 + FA_WARPS * FA_R); /* keys the block needs */
    for (int k0 = 0; k0 < kend; k0 += FA_TILE) {
        __syncthreads();
        load_rows(ks, hs + 1, head, 1, k0, FA_TILE, T, hs, C, 1.0f);
        load_rows(vs, hs, head, 2, k0, FA_TILE, T, hs, C, 1.0f);
        __syncthreads();
        if (wq >= T || k0 > wq + FA_R - 1) continue; /* warp-uniform: nothing of this tile is visible */
        const int key = k0 + lane;
        float s[FA_R];
#pragma unroll
        for (int r = 0; r < FA_R; r++) s[r] = 0.0f;
        for (int d = 0; d < hs; d++) {
            float kv = ks[lane * (hs + 1) + d];
#pragma unroll
            for (int r = 0; r < FA_R; r++) s[r] += qs[(warp * FA_R + r) * hs + d] * kv;
        }
        float p[FA_R];
#pragma unroll
        for (int r = 0; r < FA_R; r++) {
            const int t = wq + r;
            const bool vis = key <= t && t < T;
            float mx = warp_max(vis ? s[r] : -3.0e38f);
            float mnew = fmaxf(m[r], mx);
            p[r] = vis ? gq_exp(s[r] - mnew) : 0.0f;
            float corr = gq_exp(m[r] - mnew);
            l[r] = l[r] * corr + warp_sum(p[r]);
#pragma unroll
            for (int k = 0; k < KD; k++) o[r][k] *= corr;
            m[r] = mnew;
        }
        const int jmax = min(FA_TILE, wq + FA_R - k0); /* keys past the warp's last query add 0 */
        for (int j = 0; j < jmax; j++) {
            float pj[FA_R];
#pragma unroll
            for (int r = 0; r < FA_R; r++) pj[r] = __shfl_sync(FULL, p[r], j);
#pragma unroll
            for (int k = 0; k < KD; k++) {
                int d = lane + 32 * k;
                float v = d < hs ? vs[j * hs + d] : 0.0f;
#pragma unroll
                for (int r = 0; r < FA_R; r++) o[r][k] += pj[r] * v;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_R; r++) {
        const int t = wq + r;
        if (t >= T) break;
        float inv = 1.0f / l[r];
#pragma unroll
        for (int k = 0; k < KD; k++) {
            int d = lane + 32 * k;
            if (d < hs) out[((size_t)b * T + t) * C + h * hs + d] = o[r][k] * inv;
        }
        if (lane == 0) lse[(size_t)bh * T + t] = m[r] + logf(l[r]);
    }
}

/* D[bh, t] = dO[t] . O[t] (the softmax backward's row term); one warp per row */
template <class OT>
static __global__ void flash_delta_kernel(float *D, const float *dout, const OT *out, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NH * T) return;
    const int t = (int)(row % T), bh = (int)(row / T), b = bh / NH, h = bh % NH;
    const size_t off = ((size_t)b * T + t) * C + h * hs;
    float s = 0.0f;
    for (int d = lane; d < hs; d += 32) s += dout[off + d] * gq_ld(out + off + d);
    s = warp_sum(s);
    if (lane == 0) D[row] = s;
}

/* dK, dV: a block owns 8 warps x 4 keys; query tiles of 32 (lane = query) pass through shared
 * memory; a warp accumulates its keys' dK, dV rows (lanes own dimensions). */
template <int KD>
static __global__ void __launch_bounds__(FA_WARPS * 32)
    flash_dkdv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D, int T, int C,
                      int NH, float scale) {
    const int hs = C / NH, bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int k0 = blockIdx.x * FA_WARPS * FA_R, wk = k0 + warp * FA_R; /* this warp's first key */
    GQ_DYN_SMEM(float, sm);
    float *kvs = sm;                                 /* (8*4 keys) x hs: k, then v */
    float *vvs = kvs + FA_WARPS * FA_R * hs;
    float *qs = vvs + FA_WARPS * FA_R * hs;          /* 32 x (hs+1) */
    float *dos = qs + FA_TILE * (hs + 1);            /* 32 x (hs+1) */
    float *ls = dos + FA_TILE * (hs + 1), *ds_ = ls + FA_TILE; /* lse, D of the tile */
    const float *head = qkv + (size_t)b * T * C3 + h * hs;
    const float *dhead = dout + (size_t)b * T * C + h * hs;
    load_rows(kvs, hs, head, 1, k0, FA_WARPS * FA_R, T, hs, C, 1.0f);
    load_rows(vvs, hs, head, 2, k0, FA_WARPS * FA_R, T, hs, C, 1.0f);
    float dk[FA_R][KD], dv[FA_R][KD];
#pragma unroll
    for (int r = 0; r < FA_R; r++)
#pragma unroll
        for (int k = 0; k < KD; k++) dk[r][k] = dv[r][k] = 0.0f;
    for (int q0 = k0 / FA_TILE * FA_TILE; q0 < T; q0 += FA_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < FA_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, t = q0 + r;
            qs[r * (hs + 1) + d] = t < T ? head[(size_t)t * C3 + d] : 0.0f;
            dos[r * (hs + 1) + d] = t < T ? dhead[(size_t)t * C + d] : 0.0f;
        }
        for (int i = threadIdx.x; i < FA_TILE; i += blockDim.x) {
            int t = q0 + i;
            ls[i] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
            ds_[i] = t < T ? D[(size_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        if (wk >= T || q0 + FA_TILE - 1 < wk) continue; /* warp-uniform: no query here sees these keys */
        const int t = q0 + lane;
#pragma unroll
        for (int r = 0; r < FA_R; r++) {
            const int key = wk + r;
            const bool vis = key < T && key <= t && t < T;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < hs; d++) {
                s += qs[lane * (hs + 1) + d] * kvs[(warp * FA_R + r) * hs + d];
                dp += dos[lane * (hs + 1) + d] * vvs[(warp * FA_R + r) * hs + d];
            }
            float p = vis ? gq_exp(s * scale - ls[lane]) : 0.0f;
            float dsv = p * (dp - ds_[lane]);
            for (int j = 0; j < FA_TILE; j++) {
                float pj = __shfl_sync(FULL, p, j), dj = __shfl_sync(FULL, dsv, j);
#pragma unroll
                for (int k = 0; k < KD; k++) {
                    int d = lane + 32 * k;
                    if (d < hs) {
                        dv[r][k] += pj * dos[j * (hs + 1) + d];
                        dk[r][k] += dj * qs[j * (hs + 1) + d];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_R; r++) {
        const int key = wk + r;
        if (key >= T) break;
#pragma unroll
        for (int k = 0; k < KD; k++) {
            int d = lane + 32 * k;
            if (d < hs) {
                float *row = dqkv + ((size_t)b * T + key) * C3 + h * hs + d;
                row[C] = dk[r][k] * scale;
                row[2 * C] = dv[r][k];
            }
        }
    }
}

/* dQ: the forward's layout (8 warps x 4 queries, key tiles of 32 with lane = key) */
template <int KD>
static __global__ void __launch_bounds__(FA_WARPS * 32)
    flash_dq_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D, int T, int C,
                    int NH, float scale) {
    const int hs = C / NH, bh = blockIdx.y, b = bh / NH, h = bh % NH, C3 = 3 * C;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = blockIdx.x * FA_WARPS * FA_R, wq = q0 + warp * FA_R;
    GQ_DYN_SMEM(float, sm);
    float *qs = sm, *dos = qs + FA_WARPS * FA_R * hs, *ks = dos + FA_WARPS * FA_R * hs, *vs = ks + FA_TILE * (hs + 1);
    const float *head = qkv + (size_t)b * T * C3 + h * hs;
    const float *dhead = dout + (size_t)b * T * C + h * hs;
    load_rows(qs, hs, head, 0, q0, FA_WARPS * FA_R, T, hs, C, scale);
    for (int i = threadIdx.x; i < FA_WARPS * FA_R * hs; i += blockDim.x) {
        int r = i / hs, d = i % hs, t = q0 + r;
        dos[i] = t < T ? dhead[(size_t)t * C + d] : 0.0f;
    }
    float lr[FA_R], Dr[FA_R], dq[FA_R][KD];
#pragma unroll
    for (int r = 0; r < FA_R; r++) {
        int t = min(wq + r, T - 1);
        lr[r] = lse[(size_t)bh * T + t], Dr[r] = D[(size_t)bh * T + t];
#pragma unroll
        for (int k = 0; k < KD; k++) dq[r][k] = 0.0f;
    }
    const int kend = min(T, q0 + FA_WARPS * FA_R);
    for (int k0 = 0; k0 < kend; k0 += FA_TILE) {
        __syncthreads();
        load_rows(ks, hs + 1, head, 1, k0, FA_TILE, T, hs, C, 1.0f);
        load_rows(vs, hs + 1, head, 2, k0, FA_TILE, T, hs, C, 1.0f);
        __syncthreads();
        if (wq >= T || k0 > wq + FA_R - 1) continue;
        const int key = k0 + lane;
        float s[FA_R], dp[FA_R];
#pragma unroll
        for (int r = 0; r < FA_R; r++) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < hs; d++) {
            float kv = ks[lane * (hs + 1) + d], vv = vs[lane * (hs + 1) + d];
#pragma unroll
            for (int r = 0; r < FA_R; r++) {
                s[r] += qs[(warp * FA_R + r) * hs + d] * kv;
                dp[r] += dos[(warp * FA_R + r) * hs + d] * vv;
            }
        }
        float dsv[FA_R];
#pragma unroll
        for (int r = 0; r < FA_R; r++) {
            const int t = wq + r;
            const bool vis = key <= t && t < T;
            float p = vis ? gq_exp(s[r] - lr[r]) : 0.0f;
            dsv[r] = p * (dp[r] - Dr[r]);
        }
        const int jmax = min(FA_TILE, wq + FA_R - k0);
        for (int j = 0; j < jmax; j++) {
            float dj[FA_R];
#pragma unroll
            for (int r = 0; r < FA_R; r++) dj[r] = __shfl_sync(FULL, dsv[r], j);
#pragma unroll
            for (int k = 0; k < KD; k++) {
                int d = lane + 32 * k;
                float kv = d < hs ? ks[j * (hs + 1) + d] : 0.0f;
#pragma unroll
                for (int r = 0; r < FA_R; r++) dq[r][k] += dj[r] * kv;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < FA_R; r++) {
        const int t = wq + r;
        if (t >= T) break;
#pragma unroll
        for (int k = 0; k < KD; k++) {
            int d = lane + 32 * k;
            if (d < hs) dqkv[((size_t)b * T + t) * C3 + h * hs + d] = dq[r][k] * scale;
        }
    }
}

int gq_cuda_attention_delta(float **D, const float *dout, const void *out, int out_bf16, int B, int T, int C, int NH) {
    const size_t rows = (size_t)B * NH * T;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_B, rows * sizeof(float), (void **)D));
    if (out_bf16)
        return gq_launch(flash_delta_kernel<__nv_bfloat16>, gq_cuda_blocks(rows, 8), 256, 0, *D, dout,
                         (const __nv_bfloat16 *)out, B, T, C, NH);
    return gq_launch(flash_delta_kernel<float>, gq_cuda_blocks(rows, 8), 256, 0, *D, dout, (const float *)out, B, T, C,
                     NH);
}

template <int KD>
static int flash_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    size_t smem = (size_t)(FA_WARPS * FA_R * hs + FA_TILE * (hs + 1) + FA_TILE * hs) * sizeof(float);
    GQ_CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<KD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(gq_cuda_blocks(T, FA_WARPS * FA_R), B * NH);
    GQ_TRY(gq_launch(flash_forward_kernel<KD>, grid, FA_WARPS * 32, smem, out, lse, qkv, T, C, NH, scale));
    return GQ_OK;
}

template <int KD>
static int flash_backward(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D, int B,
                          int T, int C, int NH) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    size_t smem_kv = (size_t)(2 * FA_WARPS * FA_R * hs + 2 * FA_TILE * (hs + 1) + 2 * FA_TILE) * sizeof(float);
    size_t smem_q = (size_t)(2 * FA_WARPS * FA_R * hs + 2 * FA_TILE * (hs + 1)) * sizeof(float);
    GQ_CUDA_CHECK(cudaFuncSetAttribute(flash_dkdv_kernel<KD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    GQ_CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<KD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    dim3 grid(gq_cuda_blocks(T, FA_WARPS * FA_R), B * NH);
    GQ_TRY(gq_launch(flash_dkdv_kernel<KD>, grid, FA_WARPS * 32, smem_kv, dqkv, dout, qkv, lse, D, T, C, NH, scale));
    GQ_TRY(gq_launch(flash_dq_kernel<KD>, grid, FA_WARPS * 32, smem_q, dqkv, dout, qkv, lse, D, T, C, NH, scale));
    return GQ_OK;
}

extern "C" int gq_cuda_attention_forward_flash(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    const int hs = C / NH;
    if (hs <= 32) return flash_forward<1>(out, lse, qkv, B, T, C, NH);
    if (hs <= 64) return flash_forward<2>(out, lse, qkv, B, T, C, NH);
    if (hs <= 128) return flash_forward<4>(out, lse, qkv, B, T, C, NH);
    return gq_errf(GQ_EUNSUPPORTED, "flash attention: head size %d (at most 128)", hs);
}

extern "C" int gq_cuda_attention_backward_flash(float *dqkv, const float *dout, const float *qkv, const float *out,
                                                const float *lse, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    const int hs = C / NH;
    if (hs > 128) return gq_errf(GQ_EUNSUPPORTED, "flash attention: head size %d (at most 128)", hs);
    float *D = NULL;
    GQ_TRY(gq_cuda_attention_delta(&D, dout, out, 0, B, T, C, NH));
    if (hs <= 32) return flash_backward<1>(dqkv, dout, qkv, lse, D, B, T, C, NH);
    if (hs <= 64) return flash_backward<2>(dqkv, dout, qkv, lse, D, B, T, C, NH);
    return flash_backward<4>(dqkv, dout, qkv, lse, D, B, T, C, NH);
}
