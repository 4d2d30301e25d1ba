/* ln_row: the layernorm of one row by one block of GQ_LN_ROW_THREADS threads, the row held in
 * registers (C <= GQ_LN_ROW_THREADS * GQ_LN_ROW_PER). Shared by the few-row layernorm kernel
 * (layernorm.cu) and the decode product's layernorm prologue (qmatmul.cuh), so that both give
 * the same bits. Device code only. */
#ifndef GQ_LN_ROW_CUH
#define GQ_LN_ROW_CUH

enum { GQ_LN_ROW_THREADS = 256, GQ_LN_ROW_PER = 8 };

/* the block's sum of v in a fixed order (every thread gets it); red: GQ_LN_ROW_THREADS / 32 floats */
static __device__ float gq_ln_block_sum(float v, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* red is reused by the next call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < GQ_LN_ROW_THREADS / 32; w++) t += red[w];
    return t;
}

/* v[i]: element threadIdx.x + i * GQ_LN_ROW_THREADS of the row (0 past C). Returns the row's
 * mean in *m and 1 / sqrt(var + 1e-5) in *r; out_c = (v - m) * r * weight_c + bias_c. */
static __device__ void gq_ln_row_stats(const float *v, int C, float *red, float *m, float *r) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < GQ_LN_ROW_PER; i++) s += v[i];
    const float mean = gq_ln_block_sum(s, red) / C;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < GQ_LN_ROW_PER; i++)
        if (threadIdx.x + i * GQ_LN_ROW_THREADS < C) q += (v[i] - mean) * (v[i] - mean);
    *m = mean;
    *r = 1.0f / sqrtf(gq_ln_block_sum(q, red) / C + 1e-5f);
}

#endif
