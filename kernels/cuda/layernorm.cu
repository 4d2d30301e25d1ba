/* layernorm (CUDA): one warp per row for the forward and the backward; the weight and bias
 * gradients are sums in a fixed order (deterministic): per warp over its rows, then the block's
 * warps, then the blocks (layernorm_backward_fused_kernel), or, for rows wider than 2048, column
 * sums over fixed chunks of rows in a second pass. */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "ln_row.cuh"

#define LN_EPS 1e-5f

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* out: fp32, or bf16 (a bf16 mode's product input, gq_cuda_bf16_operands) */
template <class OT>
static __global__ void layernorm_forward_kernel(OT *out, float *mean, float *rstd, const float *inp,
                                                const float *weight, const float *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = x[c] - m;
        v += d * d;
    }
    float r = 1.0f / sqrtf(warp_sum(v) / C + LN_EPS);
    OT *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) gq_st(o + c, (x[c] - m) * r * weight[c] + bias[c]);
    if (lane == 0) mean[row] = m, rstd[row] = r;
}

/* The input gradient alone (the two-pass form). vec: each lane takes 4 adjacent columns at a
 * time, lane + 32 i the i-th group of 4, which is the order the float4 one-pass kernel adds a
 * row's terms in (so the two forms give the same bits); else column lane + 32 i, the scalar
 * one-pass kernel's order. */
static __global__ void layernorm_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                             const float *mean, const float *rstd, int N, int C, int vec) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], r = rstd[row], a = 0.0f, b = 0.0f;
    const int step = vec ? 4 : 1, span = 32 * step;
    for (int c0 = lane * step; c0 < C; c0 += span)
        for (int c = c0; c < c0 + step; c++) {
            float norm = (x[c] - m) * r, dn = weight[c] * dy[c];
            a += dn;
            b += dn * norm;
        }
    a = warp_sum(a) / C;
    b = warp_sum(b) / C;
    float *dx = dinp + (size_t)row * C;
    for (int c0 = lane * step; c0 < C; c0 += span)
        for (int c = c0; c < c0 + step; c++) {
            float norm = (x[c] - m) * r, dn = weight[c] * dy[c];
            dx[c] += (dn - a - norm * b) * r;
        }
}

/* The backward in one pass over the rows (issue 8's speed; llm.c's layernorm backward does the
 * same): a warp per row computes the input gradient as layernorm_dinp_kernel does (the same
 * operations in the same order: the same bits) and keeps its columns' weight and bias gradient
 * terms in registers across the rows it takes; the block's warps add theirs in warp order into
 * shared memory and the block writes one partial row; layernorm_dparam_final_kernel adds the
 * blocks' partials in block order. The row data is read once (the two-kernel form read it twice:
 * 0.081 ms per call on the H200 at GPT-2 124M's B = 8, T = 1024, 29 % of the copy bandwidth).
 * The grid is a function of N alone, so the sums' order, and the bits, do not depend on the GPU.
 * A lane holds PER columns (C <= 32 PER); wider rows take the two-kernel form. */
enum { LNB_WARPS = 8, LNB_ROWS_PER_WARP = 4, LNB_MAX_BLOCKS = 2048, LNB_MAX_PER = 64 };

template <int PER>
static __global__ void __launch_bounds__(LNB_WARPS * 32)
    layernorm_backward_fused_kernel(float *dinp, float *partial, const float *dout, const float *inp,
                                    const float *weight, const float *mean, const float *rstd, int N, int C) {
    GQ_DYN_SMEM(float, acc); /* 2C: the block's weight, then bias gradient terms */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float dw[PER], db[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) dw[i] = 0.0f, db[i] = 0.0f;
    for (int row = blockIdx.x * LNB_WARPS + warp; row < N; row += gridDim.x * LNB_WARPS) {
        const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        const float m = mean[row], r = rstd[row];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int c = lane + 32 * i;
            if (c < C) {
                const float norm = (x[c] - m) * r, dn = weight[c] * dy[c];
                a += dn;
                b += dn * norm;
            }
        }
        a = warp_sum(a) / C;
        b = warp_sum(b) / C;
        float *dx = dinp + (size_t)row * C;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int c = lane + 32 * i;
            if (c < C) {
                const float g = dy[c], norm = (x[c] - m) * r, dn = weight[c] * g;
                dx[c] += (dn - a - norm * b) * r;
                dw[i] += norm * g;
                db[i] += g;
            }
        }
    }
    for (int w = 0; w < LNB_WARPS; w++) { /* the warps in order: a fixed order of the sums */
        if (warp == w) {
#pragma unroll
            for (int i = 0; i < PER; i++) {
                const int c = lane + 32 * i;
                if (c < C) {
                    acc[c] = w ? acc[c] + dw[i] : dw[i];
                    acc[C + c] = w ? acc[C + c] + db[i] : db[i];
                }
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) partial[(size_t)blockIdx.x * 2 * C + c] = acc[c];
}

/* The one-pass backward for rows of C <= 128 PER4 floats, C % 4 == 0 (GPT-2 small and medium):
 * each lane loads its 4 PER4 columns of x, dy and dinp as float4 at once (one latency a row, not
 * a dependent walk: the scalar kernel measured 0.85x of the two-pass form on the H200), keeps x
 * and dy in registers for the second step, and adds its weight and bias gradient terms across
 * its rows as the scalar kernel does. 4 warps a block: 157 registers a thread at PER4 = 6
 * (ptxas, sm_90), 3 blocks an SM. */
enum { LNV_WARPS = 4, LNV_ROWS_PER_WARP = 8 };

static __device__ __forceinline__ float4 ld4(const float *p) { return *(const float4 *)p; }
static __device__ __forceinline__ float f4(const float4 &v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

template <int PER4>
static __global__ void __launch_bounds__(LNV_WARPS * 32)
    layernorm_backward_vec_kernel(float *dinp, float *partial, const float *dout, const float *inp,
                                  const float *weight, const float *mean, const float *rstd, int N, int C) {
    GQ_DYN_SMEM(float, acc); /* 2C: the block's weight, then bias gradient terms */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float dw[PER4][4], db[PER4][4];
#pragma unroll
    for (int i = 0; i < PER4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) dw[i][j] = 0.0f, db[i][j] = 0.0f;
    for (int row = blockIdx.x * LNV_WARPS + warp; row < N; row += gridDim.x * LNV_WARPS) {
        const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float *dx = dinp + (size_t)row * C;
        float4 xv[PER4], gv[PER4], dv[PER4];
#pragma unroll
        for (int i = 0; i < PER4; i++) {
            const int c = 4 * (lane + 32 * i);
            const float4 z = float4{0.0f, 0.0f, 0.0f, 0.0f};
            xv[i] = c < C ? ld4(x + c) : z, gv[i] = c < C ? ld4(dy + c) : z, dv[i] = c < C ? ld4(dx + c) : z;
        }
        const float m = mean[row], r = rstd[row];
        float a = 0.0f, b = 0.0f;
#pragma unroll
        for (int i = 0; i < PER4; i++) {
            const int c = 4 * (lane + 32 * i);
            if (c < C) {
                const float4 w = ld4(weight + c);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float norm = (f4(xv[i], j) - m) * r, dn = f4(w, j) * f4(gv[i], j);
                    a += dn;
                    b += dn * norm;
                }
            }
        }
        a = warp_sum(a) / C;
        b = warp_sum(b) / C;
#pragma unroll
        for (int i = 0; i < PER4; i++) {
            const int c = 4 * (lane + 32 * i);
            if (c < C) {
                const float4 w = ld4(weight + c);
                float o[4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float g = f4(gv[i], j), norm = (f4(xv[i], j) - m) * r, dn = f4(w, j) * g;
                    o[j] = f4(dv[i], j) + (dn - a - norm * b) * r;
                    dw[i][j] += norm * g;
                    db[i][j] += g;
                }
                *(float4 *)(dx + c) = float4{o[0], o[1], o[2], o[3]};
            }
        }
    }
    for (int w = 0; w < LNV_WARPS; w++) { /* the warps in order: a fixed order of the sums */
        if (warp == w) {
#pragma unroll
            for (int i = 0; i < PER4; i++) {
                const int c = 4 * (lane + 32 * i);
                if (c < C) {
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        acc[c + j] = w ? acc[c + j] + dw[i][j] : dw[i][j];
                        acc[C + c + j] = w ? acc[C + c + j] + db[i][j] : db[i][j];
                    }
                }
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) partial[(size_t)blockIdx.x * 2 * C + c] = acc[c];
}

/* where the float4 kernel runs: C a multiple of 4 up to 1024, every row 16-byte aligned */
static int ln_vec(const float *dinp, const float *dout, const float *inp, const float *weight, int C) {
    const uintptr_t a = (uintptr_t)dinp | (uintptr_t)dout | (uintptr_t)inp | (uintptr_t)weight;
    return C % 4 == 0 && C <= 1024 && a % 16 == 0;
}

/* the backward's form: 1 one pass (the float4 kernel where it runs, else a column a lane),
 * 2 one pass a column a lane (session 15's kernel, for comparison: GQ_CUDA_LN_ONEPASS=2), 0 two
 * passes (GQ_CUDA_LN_ONEPASS=0); -1: the environment not yet read */
static int g_ln_fused = -1;

static int ln_fused(void) {
    if (g_ln_fused < 0) g_ln_fused = !gq_cuda_env_on("GQ_CUDA_LN_ONEPASS", "2") ? 2 : gq_cuda_env_on("GQ_CUDA_LN_ONEPASS", "0");
    return g_ln_fused;
}

extern "C" int gq_cuda_set_layernorm_fused(int form) {
    const int was = ln_fused();
    g_ln_fused = form < 0 ? 0 : form > 2 ? 2 : form;
    return was;
}

enum { LN_CHUNKS = 64 };

static __global__ void layernorm_dparam_partial_kernel(float *partial, const float *dout, const float *inp,
                                                       const float *mean, const float *rstd, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (c >= C) return;
    int rows = (N + LN_CHUNKS - 1) / LN_CHUNKS, lo = chunk * rows, hi = min(N, lo + rows);
    float dw = 0.0f, db = 0.0f;
    for (int n = lo; n < hi; n++) {
        float dy = dout[(size_t)n * C + c];
        dw += (inp[(size_t)n * C + c] - mean[n]) * rstd[n] * dy;
        db += dy;
    }
    partial[(size_t)chunk * 2 * C + c] = dw;
    partial[(size_t)chunk * 2 * C + C + c] = db;
}

/* dweight, dbias (C) += the sums of `parts` partial rows (2C each: weight, then bias terms).
 * A block takes 32 columns; its LNF_SLICES thread rows add every LNF_SLICES-th partial row in
 * order, then thread row 0 adds the slices in order: a fixed order (the bits do not depend on
 * the GPU), and parts / LNF_SLICES dependent loads a thread instead of parts (the one-pass form
 * leaves 256 partial rows at GPT-2 124M's B = 8, T = 1024). */
enum { LNF_SLICES = 16 };

static __global__ void __launch_bounds__(32 * LNF_SLICES)
    layernorm_dparam_final_kernel(float *dweight, float *dbias, const float *partial, int C, int parts) {
    static __shared__ float sw[LNF_SLICES][32], sb[LNF_SLICES][32];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32, c = blockIdx.x * 32 + tx;
    float dw = 0.0f, db = 0.0f;
    if (c < C)
        for (int k = ty; k < parts; k += LNF_SLICES) {
            dw += partial[(size_t)k * 2 * C + c];
            db += partial[(size_t)k * 2 * C + C + c];
        }
    sw[ty][tx] = dw, sb[ty][tx] = db;
    __syncthreads();
    if (ty == 0 && c < C) {
        for (int k = 1; k < LNF_SLICES; k++) dw += sw[k][tx], db += sb[k][tx];
        dweight[c] += dw;
        dbias[c] += db;
    }
}

static int dparam_final(float *dweight, float *dbias, const float *partial, int C, int parts) {
    return gq_launch(layernorm_dparam_final_kernel, (C + 31) / 32, 32 * LNF_SLICES, 0, dweight, dbias, partial, C,
                     parts);
}

/* A few rows (the runner's decode step, N = 1): one block per row (gq_cuda_layernorm_forward and
 * gq_cuda_residual_layernorm launch it for N <= 64). The warp-per-row kernel walks a row in
 * 3 x C/32 dependent loads: 13 us for one row of 768 on the H200 (ncu), a third of a decode
 * step's time in 25 launches. res != NULL: the row is inp + res, written back to inp first (the
 * residual add fused). */
template <class OT>
static __global__ void __launch_bounds__(GQ_LN_ROW_THREADS)
    gq_ln_row_kernel(OT *out, float *mean, float *rstd, float *inp, const float *res, const float *weight,
                     const float *bias, int C) {
    static __shared__ float red[GQ_LN_ROW_THREADS / 32];
    const int row = blockIdx.x;
    float *x = inp + (size_t)row * C;
    float v[GQ_LN_ROW_PER];
#pragma unroll
    for (int i = 0; i < GQ_LN_ROW_PER; i++) {
        const int c = threadIdx.x + i * GQ_LN_ROW_THREADS;
        v[i] = c < C ? x[c] : 0.0f;
        if (res && c < C) x[c] = v[i] = v[i] + res[(size_t)row * C + c];
    }
    float m, r;
    gq_ln_row_stats(v, C, red, &m, &r);
    OT *o = out + (size_t)row * C;
#pragma unroll
    for (int i = 0; i < GQ_LN_ROW_PER; i++) {
        const int c = threadIdx.x + i * GQ_LN_ROW_THREADS;
        if (c < C) gq_st(o + c, (v[i] - m) * r * weight[c] + bias[c]);
    }
    if (threadIdx.x == 0) mean[row] = m, rstd[row] = r;
}

template <class OT>
static int layernorm_forward(OT *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias,
                             int N, int C) {
    if (N <= 0) return GQ_OK;
    if (N <= 64 && C <= GQ_CUDA_LN_ROW_MAX) /* a few rows: a block each */
        return gq_launch(gq_ln_row_kernel<OT>, N, GQ_LN_ROW_THREADS, 0, out, mean, rstd, (float *)inp,
                         (const float *)NULL, weight, bias, C);
    return gq_launch(layernorm_forward_kernel<OT>, gq_cuda_blocks(N, 8), 256, 0, out, mean, rstd, inp, weight, bias, N,
                     C);
}

extern "C" int gq_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C) {
    return layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}

extern "C" int gq_cuda_layernorm_forward_bf16(void *out, float *mean, float *rstd, const float *inp,
                                              const float *weight, const float *bias, int N, int C) {
    return layernorm_forward((__nv_bfloat16 *)out, mean, rstd, inp, weight, bias, N, C);
}

/* the one-pass forms' grid (a function of N alone: the sums' order, and the bits, do not depend
 * on the GPU) and its partial rows (2C floats a block) */
static int ln_partials(float **partial, int *blocks, int N, int C, int rows_per_block) {
    const int b = (N + rows_per_block - 1) / rows_per_block;
    *blocks = b < LNB_MAX_BLOCKS ? b : LNB_MAX_BLOCKS;
    return gq_cuda_scratch(GQ_SCRATCH_REDUCE, (size_t)*blocks * 2 * C * sizeof(float), (void **)partial);
}

extern "C" int gq_cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                          const float *inp, const float *weight, const float *mean, const float *rstd,
                                          int N, int C) {
    if (N <= 0) return GQ_OK;
    float *partial = NULL;
    const int per = (C + 31) / 32, form = ln_fused(), vec = ln_vec(dinp, dout, inp, weight, C);
    const size_t smem = (size_t)2 * C * sizeof(float);
    int blocks = 0;
    if (form == 1 && vec) { /* one pass, float4 columns: LNV_ROWS_PER_WARP rows a warp */
        const int per4 = (C / 4 + 31) / 32;
        GQ_TRY(ln_partials(&partial, &blocks, N, C, LNV_WARPS * LNV_ROWS_PER_WARP));
        const dim3 grid(blocks), block(LNV_WARPS * 32);
        const int rc = per4 <= 2   ? gq_launch(layernorm_backward_vec_kernel<2>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per4 <= 4 ? gq_launch(layernorm_backward_vec_kernel<4>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per4 <= 6 ? gq_launch(layernorm_backward_vec_kernel<6>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                                   : gq_launch(layernorm_backward_vec_kernel<8>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C);
        GQ_TRY(rc);
        return dparam_final(dweight, dbias, partial, C, blocks);
    }
    if (form && per <= LNB_MAX_PER) { /* one pass, a column a lane */
        GQ_TRY(ln_partials(&partial, &blocks, N, C, LNB_WARPS * LNB_ROWS_PER_WARP));
        const dim3 grid(blocks), block(LNB_WARPS * 32);
        const int rc = per <= 8    ? gq_launch(layernorm_backward_fused_kernel<8>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per <= 16 ? gq_launch(layernorm_backward_fused_kernel<16>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per <= 24 ? gq_launch(layernorm_backward_fused_kernel<24>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per <= 32 ? gq_launch(layernorm_backward_fused_kernel<32>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                       : per <= 48 ? gq_launch(layernorm_backward_fused_kernel<48>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C)
                                   : gq_launch(layernorm_backward_fused_kernel<64>, grid, block, smem, dinp, partial, dout, inp, weight, mean, rstd, N, C);
        GQ_TRY(rc);
        return dparam_final(dweight, dbias, partial, C, blocks);
    }
    /* wider rows (or the one-pass forms turned off): the input gradient (in the float4 kernel's
     * column order where that kernel would run, so the two give the same bits), then the
     * parameters' in a second pass over the rows */
    GQ_TRY(gq_launch(layernorm_dinp_kernel, gq_cuda_blocks(N, 8), 256, 0, dinp, dout, inp, weight, mean, rstd, N, C,
                     vec));
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_REDUCE, (size_t)LN_CHUNKS * 2 * C * sizeof(float), (void **)&partial));
    GQ_TRY(gq_launch(layernorm_dparam_partial_kernel, dim3(gq_cuda_blocks(C, 128), LN_CHUNKS), 128, 0, partial, dout,
                     inp, mean, rstd, N, C));
    return dparam_final(dweight, dbias, partial, C, (int)LN_CHUNKS);
}

/* x += r, then out = layernorm(x): one kernel for a few rows (the runner's decode step), else
 * the residual kernel and the layernorm. The same values either way (the add is one rounding). */
extern "C" int gq_cuda_residual_layernorm(float *x, const float *r, float *out, float *mean, float *rstd,
                                          const float *weight, const float *bias, int N, int C) {
    if (N <= 0) return GQ_OK;
    if (N <= 64 && C <= GQ_CUDA_LN_ROW_MAX) {
        GQ_TRY(gq_launch(gq_ln_row_kernel<float>, N, GQ_LN_ROW_THREADS, 0, out, mean, rstd, x, r, weight, bias, C));
        return GQ_OK;
    }
    GQ_TRY(gq_cuda_residual_forward(x, x, r, (size_t)N * C));
    return gq_cuda_layernorm_forward(out, mean, rstd, x, weight, bias, N, C);
}
