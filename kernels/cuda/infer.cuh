/* infer.cuh: the inference runner's kernels (see infer.cu) and the launches behind their
 * cuda_ops.h entry points (gq_inf_*). Device code written against CUDA's names (tests/cuda_emu.h
 * also compiles it, with infer.cu, for the CPU); block-scope shared arrays are
 * `static __shared__`. The includer provides cuda_util.cuh, cuda_ops.h, act_math.h, qmatmul.h,
 * quant.h and gq_error.h. */
#ifndef GQ_INFER_CUH
#define GQ_INFER_CUH

#include "f16_value.cuh"
#include "philox.h"


static __global__ void embed_kernel(float *x, gq_qmat wte, gq_qmat wpe, const int32_t *tokens, const int32_t *d_pos,
                                    int M, int C) {
    const int m = blockIdx.y, pos = *d_pos + m;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x)
        x[(size_t)m * C + c] = gq_qmat_value(&wte, tokens[m], c) + gq_qmat_value(&wpe, pos, c);
}

static int gq_inf_embed(float *x, const gq_qmat *wte, const gq_qmat *wpe, const int32_t *d_tokens,
                        const int32_t *d_pos, int M, int C) {
    if (M <= 0) return GQ_OK;
    return gq_launch(embed_kernel, dim3((unsigned)((C + 255) / 256), (unsigned)M), dim3(256), 0, x, *wte, *wpe, d_tokens,
                  d_pos, M, C);
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

static int gq_inf_kv_store(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M,
                           int C) {
    if (M <= 0) return GQ_OK;
    return gq_launch(kv_store_kernel, dim3((unsigned)((C + 255) / 256), (unsigned)M), dim3(256), 0, kc, vc, f16, qkv,
                  d_pos, M, C);
}

enum { ATT_THREADS = 256 }; /* 8 warps over the positions of a decode step (128: 8.4 us a layer on the H200) */

static __device__ __forceinline__ float kv_get(const void *c, int f16, size_t i) {
    return f16 ? gq_cuda_f16_value(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

/* Head h's key and value of query row qkv (3C) into cache position t (the decode step's store,
 * as gq_cuda_kv_store), then a barrier: the block's own writes are visible to it after it. */
static __device__ void att_store_kv(void *kc, void *vc, int f16, const float *qkv, int t, int h, int hs, int C) {
    const size_t at = (size_t)t * C + h * hs;
    for (int e = threadIdx.x; e < hs; e += ATT_THREADS) {
        const float k = qkv[C + h * hs + e], v = qkv[2 * C + h * hs + e];
        if (f16)
            ((uint16_t *)kc)[at + e] = gq_f32_to_f16(k), ((uint16_t *)vc)[at + e] = gq_f32_to_f16(v);
        else
            ((float *)kc)[at + e] = k, ((float *)vc)[at + e] = v;
    }
    __syncthreads();
}

/* The block's softmax numerators in place: s[u] = exp(s[u] - max) for u < n; returns their sum
 * (in a fixed order), *mx the maximum. red: ATT_THREADS / 32 floats. */
static __device__ float att_exp_scores(float *s, int n, float *red, float *mx_out) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = ATT_THREADS / 32;
    float mx = -3.0e38f;
    for (int u = threadIdx.x; u < n; u += ATT_THREADS) mx = fmaxf(mx, s[u]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
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
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < nw; w++) sum += red[w];
    *mx_out = mx;
    return sum;
}

/* One block per (head, query). Query m sits at position t = *d_pos + m and attends to positions
 * 0..t. Keys and values come from the cache, or, when own_pass (a pass that started at
 * position 0, as the CPU runner does), from this pass's own fp32 qkv rows. Scores live in
 * shared memory (t + 1 floats). */
static __global__ void __launch_bounds__(ATT_THREADS)
    attend_kernel(float *out, const float *qkv, void *kc, void *vc, int f16, const int32_t *d_pos, int own_pass,
                  int store, int NH, int C) {
    GQ_DYN_SMEM(float, att_scores);
    float *s = att_scores;
    static __shared__ float red[ATT_THREADS / 32];
    const int h = blockIdx.x, m = blockIdx.y, hs = C / NH, t = *d_pos + m, n = t + 1;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = ATT_THREADS / 32;
    const float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + (size_t)m * 3 * C + h * hs;
    const float *pass = qkv; /* own_pass: position u is this pass's row u (the pass started at 0) */
    if (store) att_store_kv(kc, vc, f16, qkv, t, h, hs, C); /* one query (M = 1): its key and value first */
#pragma unroll 4
    for (int u = warp; u < n; u += nw) {
        float d = 0.0f;
        for (int e = lane; e < hs; e += 32) {
            const float k = own_pass ? pass[(size_t)u * 3 * C + C + h * hs + e] : kv_get(kc, f16, (size_t)u * C + h * hs + e);
            d += q[e] * k;
        }
        for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (lane == 0) s[u] = d * scale;
    }
    __syncthreads();
    float mx;
    const float inv = 1.0f / att_exp_scores(s, n, red, &mx);
    /* the weighted sum of values: ATT_THREADS / hs groups of hs threads, each group over every
     * groups-th position (all threads busy when hs < ATT_THREADS), then the groups' sums in order */
    const int groups = hs <= ATT_THREADS ? ATT_THREADS / hs : 1;
    if (groups > 1) {
        static __shared__ float part[ATT_THREADS];
        const int g = threadIdx.x / hs, e = threadIdx.x % hs;
        float acc = 0.0f;
        if (g < groups) {
#pragma unroll 4
            for (int u = g; u < n; u += groups) {
                const float v = own_pass ? pass[(size_t)u * 3 * C + 2 * C + h * hs + e] : kv_get(vc, f16, (size_t)u * C + h * hs + e);
                acc += s[u] * v;
            }
        }
        part[threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.x < hs) {
            float t = 0.0f;
            for (int k = 0; k < groups; k++) t += part[k * hs + threadIdx.x];
            out[(size_t)m * C + h * hs + threadIdx.x] = t * inv;
        }
        return;
    }
    for (int e = threadIdx.x; e < hs; e += ATT_THREADS) {
        float acc = 0.0f;
#pragma unroll 4
        for (int u = 0; u < n; u++) {
            const float v = own_pass ? pass[(size_t)u * 3 * C + 2 * C + h * hs + e] : kv_get(vc, f16, (size_t)u * C + h * hs + e);
            acc += s[u] * v;
        }
        out[(size_t)m * C + h * hs + e] = acc * inv;
    }
}

/* One query over the cache, its positions split (flash-decoding): block (h, s) of an (NH,
 * ATT_SPLITS) grid takes head h's positions [s P, (s + 1) P) of 0..t, P = max(ATT_SPLIT_MIN,
 * ceil((t + 1) / ATT_SPLITS)), and leaves its softmax's maximum, sum and unnormalised weighted
 * values in g_att_part; the head's last block to finish (a counter per head) merges the splits
 * in their order, so the result does not depend on which block that is. With one block per
 * head (attend_kernel) a decode step kept 12 of the H200's 132 SMs busy and walked every cached
 * position in one block: by my estimate ~40 us a layer at position 1000. The number of splits
 * is fixed at launch and P follows *d_pos, so a captured graph serves every position. */
enum { ATT_SPLITS = 16, ATT_SPLIT_MIN = 32, ATT_MAX_HEADS = 64, ATT_PART_FLOATS = ATT_SPLITS * (4096 + 2 * ATT_MAX_HEADS) };
static int g_att_split = 1; /* gq_cuda_attend_split: 0 = one block per head (for comparison) */
static __device__ float g_att_part[ATT_PART_FLOATS];
static __device__ unsigned g_att_done[ATT_MAX_HEADS];

static __global__ void __launch_bounds__(ATT_THREADS)
    attend_split_kernel(float *out, const float *qkv, void *kc, void *vc, int f16, const int32_t *d_pos, int store,
                        int NH, int C) {
    GQ_DYN_SMEM(float, att_scores);
    float *s = att_scores;
    static __shared__ float red[ATT_THREADS / 32];
    static __shared__ float part[ATT_THREADS];
    static __shared__ int last;
    const int h = blockIdx.x, sp = blockIdx.y, hs = C / NH, t = *d_pos, n = t + 1;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = ATT_THREADS / 32;
    const int P = max(ATT_SPLIT_MIN, (n + ATT_SPLITS - 1) / ATT_SPLITS), nsplit = (n + P - 1) / P;
    const int lo = sp * P, hi = min(n, lo + P);
    const float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + h * hs;
    float *mine = g_att_part + (size_t)(h * ATT_SPLITS + sp) * (hs + 2); /* max, sum, hs values */
    if (lo < hi) {
        if (store && hi == n) att_store_kv(kc, vc, f16, qkv, t, h, hs, C); /* the split holding position t */
        for (int u = lo + warp; u < hi; u += nw) {
            float d = 0.0f;
            for (int e = lane; e < hs; e += 32) d += q[e] * kv_get(kc, f16, (size_t)u * C + h * hs + e);
            for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
            if (lane == 0) s[u - lo] = d * scale;
        }
        __syncthreads();
        float mx;
        const float sum = att_exp_scores(s, hi - lo, red, &mx);
        /* the weighted values: groups of hs threads over every groups-th position, then the
         * groups' sums in order (as attend_kernel) */
        const int groups = hs <= ATT_THREADS ? ATT_THREADS / hs : 1;
        for (int e0 = 0; e0 < hs; e0 += ATT_THREADS) {
            const int g = groups > 1 ? threadIdx.x / hs : 0, e = groups > 1 ? threadIdx.x % hs : e0 + threadIdx.x;
            float acc = 0.0f;
            if (g < groups && e < hs)
                for (int u = lo + g; u < hi; u += groups) acc += s[u - lo] * kv_get(vc, f16, (size_t)u * C + h * hs + e);
            part[threadIdx.x] = acc;
            __syncthreads();
            if (groups > 1 && threadIdx.x < hs) {
                float a = 0.0f;
                for (int k = 0; k < groups; k++) a += part[k * hs + threadIdx.x];
                mine[2 + threadIdx.x] = a;
            } else if (groups == 1 && e < hs) {
                mine[2 + e] = acc;
            }
            __syncthreads();
            if (groups > 1) break;
        }
        if (threadIdx.x == 0) mine[0] = mx, mine[1] = sum;
    }
    /* the head's last block merges: every block's writes, then its count */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&g_att_done[h], 1u) == ATT_SPLITS - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    const volatile float *all = g_att_part + (size_t)h * ATT_SPLITS * (hs + 2);
    float M = -3.0e38f;
    for (int k = 0; k < nsplit; k++) M = fmaxf(M, all[(size_t)k * (hs + 2)]);
    float den = 0.0f;
    for (int k = 0; k < nsplit; k++) den += gq_exp(all[(size_t)k * (hs + 2)] - M) * all[(size_t)k * (hs + 2) + 1];
    for (int e = threadIdx.x; e < hs; e += ATT_THREADS) {
        float num = 0.0f;
        for (int k = 0; k < nsplit; k++)
            num += gq_exp(all[(size_t)k * (hs + 2)] - M) * all[(size_t)k * (hs + 2) + 2 + e];
        out[h * hs + e] = num / den;
    }
    if (threadIdx.x == 0) g_att_done[h] = 0; /* for the next launch */
}

/* gq_cuda_attend (store 0) and gq_cuda_store_attend (store 1, M = 1, own_pass 0); one query over
 * the cache (a decode step) takes the split kernel */
static int gq_inf_attend(float *out, const float *qkv, void *kc, void *vc, int f16,
                         const int32_t *d_pos, int own_pass, int store, int M, int NH, int C, int T) {
    if (M <= 0) return GQ_OK;
    if (g_att_split && M == 1 && !own_pass && NH <= ATT_MAX_HEADS && ATT_SPLITS * (C + 2 * NH) <= ATT_PART_FLOATS) {
        const int P = max((int)ATT_SPLIT_MIN, (T + ATT_SPLITS - 1) / ATT_SPLITS);
        return gq_launch(attend_split_kernel, dim3((unsigned)NH, (unsigned)ATT_SPLITS), dim3(ATT_THREADS),
                         (size_t)P * sizeof(float), out, qkv, kc, vc, f16, d_pos, store, NH, C);
    }
    const size_t smem = (size_t)T * sizeof(float);
    if (smem > 47 * 1024) /* 48 KiB of shared memory, less the block's own arrays */
        return gq_errf(GQ_EUNSUPPORTED, "CUDA attention: a context of %d positions (at most 12032)", T);
    return gq_launch(attend_kernel, dim3((unsigned)NH, (unsigned)M), dim3(ATT_THREADS), smem, out, qkv, kc, vc, f16, d_pos,
                  own_pass, store, NH, C);
}

/* The index of the largest of x[0..n) (the first on ties, as the CPU sampler's greedy pick; NaN
 * never wins). Two passes: ARGMAX_BLOCKS blocks each pick within their share, then one block
 * picks among theirs. (One block of 1024 threads over the 50257 logits took 22 us on the H200,
 * each thread's 49 loads one after another; the partials live in device globals, one picker at a
 * time on the stream.) */
enum { ARGMAX_BLOCKS = 128, ARGMAX_THREADS = 256 };
static __device__ float g_argmax_v[ARGMAX_BLOCKS];
static __device__ int g_argmax_i[ARGMAX_BLOCKS];

static __device__ __forceinline__ void argmax_merge(float &v, int &idx, float ov, int oi) {
    if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
}

/* the block's pick of (v, idx) across its threads, in thread 0 */
static __device__ void argmax_block(float &v, int &idx) {
    static __shared__ float bv[32];
    static __shared__ int bi[32];
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        argmax_merge(v, idx, ov, oi);
    }
    if (threadIdx.x % 32 == 0) bv[threadIdx.x / 32] = v, bi[threadIdx.x / 32] = idx;
    __syncthreads();
    if (threadIdx.x == 0) {
        v = bv[0], idx = bi[0];
        for (int w = 1; w < (int)blockDim.x / 32; w++) argmax_merge(v, idx, bv[w], bi[w]);
    }
}

static __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_part_kernel(const float *x, int n) {
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = blockIdx.x * ARGMAX_THREADS + threadIdx.x; i < n; i += gridDim.x * ARGMAX_THREADS)
        if (x[i] > v) v = x[i], idx = i; /* ascending i per thread: the first of equal values */
    argmax_block(v, idx);
    if (threadIdx.x == 0) g_argmax_v[blockIdx.x] = v, g_argmax_i[blockIdx.x] = idx;
}

/* the picks of the first's `parts` blocks merged */
static __global__ void __launch_bounds__(ARGMAX_BLOCKS) argmax_final_kernel(int32_t *out, int parts) {
    const int p = threadIdx.x;
    float v = p < parts ? g_argmax_v[p] : -INFINITY;
    int idx = p < parts ? g_argmax_i[p] : 0x7fffffff;
    argmax_block(v, idx);
    if (threadIdx.x == 0) *out = idx;
}

/* as many blocks as the vector fills (up to ARGMAX_BLOCKS): a vocabulary of a few hundred
 * takes two, GPT-2's the whole grid */
static int gq_inf_argmax(int32_t *d_out, const float *x, int n) {
    const long fill = ((long)n + ARGMAX_THREADS - 1) / ARGMAX_THREADS;
    const int parts = fill < 1 ? 1 : fill > ARGMAX_BLOCKS ? (int)ARGMAX_BLOCKS : (int)fill;
    GQ_TRY(gq_launch(argmax_part_kernel, dim3(parts), dim3(ARGMAX_THREADS), 0, x, n));
    return gq_launch(argmax_final_kernel, dim3(1), dim3(ARGMAX_BLOCKS), 0, d_out, parts);
}

/* The end of a decode step: the next step's token is this step's pick, one position on. */
static __global__ void decode_advance_kernel(int32_t *d_tokens, int32_t *d_pos, const int32_t *d_next) {
    d_tokens[0] = d_next[0];
    d_pos[0] += 1;
}

static int gq_inf_decode_advance(int32_t *d_tokens, int32_t *d_pos, const int32_t *d_next) {
    return gq_launch(decode_advance_kernel, dim3(1), dim3(1), 0, d_tokens, d_pos, d_next);
}

/* ---- sampling: infer/sample.h's rule in one block ---- */

enum { SAMPLE_THREADS = 1024, SAMPLE_BUCKETS = 2048, SAMPLE_SORT = 2048 };

static __device__ __forceinline__ int sample_bucket(float p) { return (int)(__float_as_uint(p) >> 20); }

/* block sums of a double and of a float max (every thread gets the result) */
static __device__ double block_sum(double v, double *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    double t = 0;
    for (int w = 0; w < SAMPLE_THREADS / 32; w++) t += red[w];
    return t;
}

static __device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float t = red[0];
    for (int w = 1; w < SAMPLE_THREADS / 32; w++) t = fmaxf(t, red[w]);
    return t;
}

/* probabilities p[i] = exp((x[i] - max) / T) / sum into prob; then: with neither top-k nor top-p,
 * the token whose cumulative mass (in id order) first exceeds u * total; else the candidates
 * (the histogram buckets from the top that hold top_k tokens / top_p of the mass + 1e-6) sorted
 * by probability (descending, ties by id) in shared memory, top-k, the top-p prefix, and the
 * draw along that order. More than SAMPLE_SORT candidates: *out = -1 (the host samples). */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *out, const float *x, int V, float T, int top_k, float top_p, uint64_t *rng, float *prob) {
    static __shared__ unsigned cnt[SAMPLE_BUCKETS];
    static __shared__ double mass[SAMPLE_BUCKETS];
    static __shared__ float key[SAMPLE_SORT];
    static __shared__ int id[SAMPLE_SORT];
    static __shared__ double redd[SAMPLE_THREADS / 32];
    static __shared__ float redf[SAMPLE_THREADS / 32];
    static __shared__ int s_lo, s_n, s_pick;
    const int tid = threadIdx.x;
    /* the draw: value rng[1] of the Philox stream rng[0] (every thread computes it, before the
     * block_max barrier after which thread 0 advances the index for the next pick) */
    const float u = gq_philox_unit(rng[0], rng[1]);
    float mx = -INFINITY;
    for (int i = tid; i < V; i += SAMPLE_THREADS) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, redf);
    if (tid == 0) rng[1]++;
    const float inv = 1.0f / T;
    double part = 0;
    for (int i = tid; i < V; i += SAMPLE_THREADS) {
        const float e = gq_exp((x[i] - mx) * inv);
        prob[i] = e;
        part += e;
    }
    const double rsum = 1.0 / block_sum(part, redd);
    __syncthreads(); /* prob[] written by every thread */
    const int chunk = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS, c0 = tid * chunk, c1 = min(V, c0 + chunk);
    for (int i = c0; i < c1; i++) prob[i] = (float)(prob[i] * rsum); /* each thread its own chunk from here */
    if (!(top_k > 0 && top_k < V) && !(top_p < 1.0f)) {
        /* every token, in id order: chunk sums, an exclusive scan over the threads, then the one
         * thread whose chunk holds the target scans it */
        double cs = 0;
        for (int i = c0; i < c1; i++) cs += prob[i];
        if (tid == 0) s_pick = V - 1;
        double incl = cs; /* inclusive scan over the block: within warps, then the warp totals */
        for (int o = 1; o < 32; o <<= 1) {
            const double t = __shfl_up_sync(0xffffffffu, incl, o);
            if (tid % 32 >= o) incl += t;
        }
        __syncthreads();
        if (tid % 32 == 31) redd[tid / 32] = incl;
        __syncthreads();
        double base = 0, total = 0; /* base: the warps before this one, added in order */
        for (int w = 0; w < SAMPLE_THREADS / 32; w++) {
            if (w < tid / 32) base += redd[w];
            total += redd[w];
        }
        incl += base;
        /* the previous thread's inclusive sum, the very same double (lane 0: base, which equals
         * the previous warp's last inclusive sum bit for bit), so the chunks tile [0, total) */
        double prev = __shfl_up_sync(0xffffffffu, incl, 1);
        if (tid % 32 == 0) prev = base;
        const double target = (double)u * total;
        if (c0 < c1 && target >= prev && target < incl) {
            double c = prev;
            int pick = c1 - 1;
            for (int i = c0; i < c1; i++) {
                c += prob[i];
                if (target < c) {
                    pick = i;
                    break;
                }
            }
            s_pick = pick;
        }
        __syncthreads();
        if (tid == 0) *out = s_pick;
        return;
    }
    for (int b = tid; b < SAMPLE_BUCKETS; b += SAMPLE_THREADS) cnt[b] = 0, mass[b] = 0;
    if (tid == 0) s_n = 0;
    __syncthreads();
    for (int i = c0; i < c1; i++) {
        const int b = sample_bucket(prob[i]);
        atomicAdd(&cnt[b], 1u);
        atomicAdd(&mass[b], (double)prob[i]);
    }
    __syncthreads();
    if (tid == 0) {
        const long want = top_k > 0 && top_k < V ? top_k : V;
        long c = 0;
        double m = 0;
        int lo = SAMPLE_BUCKETS - 1;
        for (; lo > 0; lo--) {
            c += cnt[lo], m += mass[lo];
            if (c >= want || (top_p < 1.0f && m >= (double)top_p + 1e-6)) break;
        }
        s_lo = lo;
    }
    __syncthreads();
    for (int i = c0; i < c1; i++)
        if (sample_bucket(prob[i]) >= s_lo) {
            const int at = atomicAdd(&s_n, 1);
            if (at < SAMPLE_SORT) key[at] = prob[i], id[at] = i;
        }
    __syncthreads();
    const int n = s_n;
    if (n > SAMPLE_SORT) {
        if (tid == 0) *out = -1;
        return;
    }
    int np = 1;
    while (np < n) np <<= 1;
    for (int i = n + tid; i < np; i += SAMPLE_THREADS) key[i] = -1.0f, id[i] = 0x7fffffff;
    __syncthreads();
    /* bitonic sort of np entries: "before" = larger probability, then smaller id */
    for (int k = 2; k <= np; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < np; i += SAMPLE_THREADS) {
                const int l = i ^ j;
                if (l > i) {
                    const int first = (i & k) == 0; /* this pair ends in "before" order */
                    const bool l_before = key[l] > key[i] || (key[l] == key[i] && id[l] < id[i]);
                    if (l_before == (bool)first) {
                        const float tk = key[i];
                        const int ti = id[i];
                        key[i] = key[l], id[i] = id[l], key[l] = tk, id[l] = ti;
                    }
                }
            }
            __syncthreads();
        }
    if (tid == 0) {
        int keep = n;
        if (top_k > 0 && top_k < keep) keep = top_k;
        if (top_p < 1.0f) {
            double c = 0;
            for (int i = 0; i < keep; i++) {
                c += key[i];
                if (c >= top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += key[i];
        const double target = (double)u * total;
        double c = 0;
        int pick = id[keep - 1];
        for (int i = 0; i < keep; i++) {
            c += key[i];
            if (target < c) {
                pick = id[i];
                break;
            }
        }
        *out = pick;
    }
}

static int gq_inf_sample(int32_t *d_out, const float *x, int V, float temperature, int top_k,
                         float top_p, uint64_t *d_rng, float *d_prob) {
    if (!(temperature > 0.0f)) return gq_inf_argmax(d_out, x, V);
    return gq_launch(sample_kernel, dim3(1), dim3(SAMPLE_THREADS), 0, d_out, x, V, temperature, top_k, top_p, d_rng,
                     d_prob);
}

#endif
