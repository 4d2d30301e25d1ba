/* qmatmul.cuh: the decode products' and the panel GEMM's kernels (qmatmul.cu launches them;
 * see there) and their dispatch gq_qmm_run. Device code written against CUDA's names
 * (tests/cuda_emu.h also compiles it, with qmatmul.cu, for the CPU). Block-scope shared arrays
 * are `static __shared__`, which means the same to nvcc and lets the emulator share them across
 * a block's threads. The includer provides cuda_util.cuh, gq_qmat (qmatmul.h), gq_qmm_ep
 * (cuda_ops.h), ln_row.cuh, act_math.h. */
#ifndef GQ_QMATMUL_CUH
#define GQ_QMATMUL_CUH

#include "f16_value.cuh"

enum { QMV_WARPS = 8, QMV_MAXM = 8 };
/* the widest row the prologue instance copies into shared memory without a layernorm (48 KB,
 * the dynamic shared memory a launch gets without opting in) */
enum { GQ_QMM_ROW_SMEM_MAX = 12288 };

static_assert(QMV_WARPS * 32 == GQ_LN_ROW_THREADS, "the layernorm prologue runs on the product's block");
static_assert(GQ_LN_ROW_THREADS * GQ_LN_ROW_PER == GQ_CUDA_LN_ROW_MAX, "cuda_ops.h's widest layernorm row");

/* MM: the most tokens one pass takes. The decode step (M = 1) has its own instance: with room for
 * 8 tokens' sums the kernel holds 80 registers a thread, 3 blocks an SM, and the 50257-row
 * embedding product ran in 16 waves of one memory round trip each (ncu on the H200: 50 us for
 * its 20 MB in int4). LN: the layernorm prologue's instance (MM = 1), apart for its registers.
 * ep (gq_qmm_ep): with ln_w, the one token's row is first normalized by the whole block into
 * shared memory (ln_row.cuh: the few-row layernorm kernel's bits); act8: that row (or x's, copied
 * there) made its int8 values in blocks of 32 (a warp a block, act_fq_kernel's arithmetic); the
 * prologue instance (LN = 1) takes both; gelu: act_math.h's GELU of every output; residual: y +=
 * the output (y's old value is the residual stream). */
template <int MM, int LN>
static __global__ void __launch_bounds__(QMV_WARPS * 32, MM == 1 && !LN ? 4 : 3)
    qmatmul_kernel(float *y, const float *x, int M, gq_qmat w, const float *bias, int fast, gq_qmm_ep ep) {
    GQ_DYN_SMEM(float, xs); /* the normalized row (layernorm prologue): w.cols floats */
    static __shared__ float lut[16];
    const gq_qformat f = w.spec.format;
    if (threadIdx.x < 16 && (f == GQ_QF_NF4 || f == GQ_QF_FP4))
        lut[threadIdx.x] = gq_qvalue(f, threadIdx.x, 1.0f, 0); /* nf4 / fp4 value per code */
    if (LN) { /* the one token's row into shared memory: normalized, or as it is */
        if (ep.ln_w) {
            static __shared__ float red[GQ_LN_ROW_THREADS / 32];
            float v[GQ_LN_ROW_PER], mean, rstd;
#pragma unroll
            for (int i = 0; i < GQ_LN_ROW_PER; i++) {
                const int c = threadIdx.x + i * GQ_LN_ROW_THREADS;
                v[i] = c < w.cols ? x[c] : 0.0f;
            }
            gq_ln_row_stats(v, w.cols, red, &mean, &rstd);
#pragma unroll
            for (int i = 0; i < GQ_LN_ROW_PER; i++) {
                const int c = threadIdx.x + i * GQ_LN_ROW_THREADS;
                if (c < w.cols) xs[c] = (v[i] - mean) * rstd * ep.ln_w[c] + ep.ln_b[c];
            }
        } else {
            for (int c = threadIdx.x; c < w.cols; c += QMV_WARPS * 32) xs[c] = x[c];
        }
        if (ep.act8) { /* each block of 32: a warp (gq_act8_warp) */
            __syncthreads();
            for (int b = threadIdx.x / 32; b < w.cols / GQ_ACT_BLOCK; b += QMV_WARPS) {
                float *p = xs + b * GQ_ACT_BLOCK + threadIdx.x % 32;
                *p = gq_act8_warp(*p);
            }
        }
        x = xs;
    }
    __syncthreads();
    const int row = blockIdx.x * QMV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= w.rows) return;
    const int K = w.cols, G = w.group, bits = gq_qbits(f), ng = f == GQ_QF_F32 ? 1 : K / G;
    float acc[MM];
#pragma unroll
    for (int m = 0; m < MM; m++)
        acc[m] = 0.0f;

    if (f == GQ_QF_F32 && w.h16) { /* fp16 / bf16 rows: 8 values per 16-byte load */
        const uint16_t *wr = w.h16 + (size_t)row * K;
        for (int c = lane * 8; c < K; c += 256) {
            const uint4 raw = *(const uint4 *)(wr + c);
            const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
            float v[8];
#pragma unroll
            for (int b = 0; b < 8; b++) {
                const uint16_t h = (uint16_t)(words[b / 2] >> (16 * (b % 2)));
                v[b] = w.h16_bf16 ? gq_bf16_to_f32(h) : gq_cuda_f16_value(h);
            }
#pragma unroll
            for (int m = 0; m < MM; m++)
                if (MM == 1 || m < M) /* one token: the loads need no guard, so they issue at once */ {
                    const float *xm = x + (size_t)m * K + c;
                    float a = 0.0f;
#pragma unroll
                    for (int b = 0; b < 8; b++) a += v[b] * xm[b];
                    acc[m] += a;
                }
        }
    } else if (f == GQ_QF_F32) {
        const float *wr = w.f32 + (size_t)row * K;
        for (int c = lane * 4; c < K; c += 128) {
            float4 v = *(const float4 *)(wr + c);
#pragma unroll
            for (int m = 0; m < MM; m++)
                if (MM == 1 || m < M) {
                    const float *xm = x + (size_t)m * K + c;
                    acc[m] += v.x * xm[0] + v.y * xm[1] + v.z * xm[2] + v.w * xm[3];
                }
        }
    } else if (fast && bits == 4) {
        const size_t rbytes = (size_t)K / 2;
        const uint8_t *qr = w.q + (size_t)row * rbytes;
        const int half = G / 2;
#pragma unroll(MM == 1 ? 4 : 1) /* one token: several 16-byte loads in flight per lane on long rows (K = 3072: 3 steps) */
        for (size_t o = (size_t)lane * 16; o < rbytes; o += 32 * 16) {
            const uint4 raw = *(const uint4 *)(qr + o);
            const int k = (int)(o / half), j = (int)(o % half);
            const size_t gi = (size_t)row * ng + k;
            const float s = gq_qmat_scale(&w, row, k);
            const int z = f == GQ_QF_INT4A ? w.zeros[gi] : 8;
            const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
            float lo[16], hi[16];
#pragma unroll
            for (int b = 0; b < 16; b++) {
                const int byte = (words[b / 4] >> (8 * (b % 4))) & 0xff, cl = byte & 15, ch = byte >> 4;
                if (f == GQ_QF_INT4 || f == GQ_QF_INT4A)
                    lo[b] = (float)(cl - z) * s, hi[b] = (float)(ch - z) * s;
                else
                    lo[b] = lut[cl] * s, hi[b] = lut[ch] * s;
            }
            const size_t x0 = (size_t)k * G + j;
#pragma unroll
            for (int m = 0; m < MM; m++)
                if (MM == 1 || m < M) {
                    const float4 *xl = (const float4 *)(x + (size_t)m * K + x0), *xh = xl + half / 4;
                    float a = 0.0f;
#pragma unroll
                    for (int b = 0; b < 4; b++) {
                        const float4 u = xl[b], v = xh[b];
                        a += lo[4 * b] * u.x + lo[4 * b + 1] * u.y + lo[4 * b + 2] * u.z + lo[4 * b + 3] * u.w;
                        a += hi[4 * b] * v.x + hi[4 * b + 1] * v.y + hi[4 * b + 2] * v.z + hi[4 * b + 3] * v.w;
                    }
                    acc[m] += a;
                }
        }
    } else if (fast && bits == 8) {
        const uint8_t *qr = w.q + (size_t)row * K;
#pragma unroll(MM == 1 ? 4 : 1)
        for (int o = lane * 16; o < K; o += 32 * 16) {
            const uint4 raw = *(const uint4 *)(qr + o);
            const float s = gq_qmat_scale(&w, row, o / G);
            const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
            float v[16];
#pragma unroll
            for (int b = 0; b < 16; b++)
                v[b] = (float)(int8_t)((words[b / 4] >> (8 * (b % 4))) & 0xff) * s;
#pragma unroll
            for (int m = 0; m < MM; m++)
                if (MM == 1 || m < M) {
                    const float4 *xm = (const float4 *)(x + (size_t)m * K + o);
                    float a = 0.0f;
#pragma unroll
                    for (int b = 0; b < 4; b++) {
                        const float4 u = xm[b];
                        a += v[4 * b] * u.x + v[4 * b + 1] * u.y + v[4 * b + 2] * u.z + v[4 * b + 3] * u.w;
                    }
                    acc[m] += a;
                }
        }
    } else { /* any layout: one value at a time through quant.h */
        for (int c = lane; c < K; c += 32) {
            const float v = gq_qmat_value(&w, row, c);
#pragma unroll
            for (int m = 0; m < MM; m++)
                if (MM == 1 || m < M) acc[m] += v * x[(size_t)m * K + c];
        }
    }
#pragma unroll
    for (int m = 0; m < MM; m++) {
        if (m >= M) break;
        float a = acc[m];
        for (int s = 16; s > 0; s >>= 1)
            a += __shfl_xor_sync(0xffffffffu, a, s);
        if (lane == 0) {
            float r = a + (bias ? bias[row] : 0.0f);
            if (ep.gelu) r = gq_gelu(r); /* act_math.h's GELU: the gelu kernel's bits */
            float *out = y + (size_t)m * w.rows + row;
            *out = ep.residual ? *out + r : r; /* the residual kernel's sum */
        }
    }
}

/* The GEMM of 16+ tokens: 64 x 64 outputs per block of 256 threads (4 x 4 each), K in steps of
 * 16 through shared memory; the weight tile is dequantized as it is loaded (quant.h's values
 * through gq_qmat_value: any format and layout), so nothing else is read or allocated, and
 * every weight is decoded once per 64 tokens. fp32 products and sums (no cuBLAS: the runner
 * does not load it). */
enum { QG_TM = 64, QG_TN = 64, QG_TK = 16, QG_THREADS = 256 };

template <int GELU> /* a template argument: the GELU's registers only where it is used */
static __global__ void __launch_bounds__(QG_THREADS)
    qgemm_kernel(float *y, const float *x, int M, gq_qmat w, const float *bias) {
    static __shared__ float as[QG_TK][QG_TM + 4], bs[QG_TK][QG_TN + 4];
    const int K = w.cols, N = w.rows, tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * QG_TM, n0 = blockIdx.x * QG_TN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += QG_TK) {
        for (int e = threadIdx.x; e < QG_TM * QG_TK; e += QG_THREADS) {
            const int r = e / QG_TK, c = e % QG_TK, gm = m0 + r, gk = k0 + c;
            as[c][r] = gm < M && gk < K ? x[(size_t)gm * K + gk] : 0.0f;
        }
        for (int e = threadIdx.x; e < QG_TN * QG_TK; e += QG_THREADS) {
            const int r = e / QG_TK, c = e % QG_TK, gn = n0 + r, gk = k0 + c;
            bs[c][r] = gn < N && gk < K ? gq_qmat_value(&w, gn, gk) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < QG_TK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = as[kk][ty * 4 + i], b[i] = bs[kk][tx * 4 + i];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int gm = m0 + ty * 4 + i, gn = n0 + tx * 4 + j;
            if (gm < M && gn < N) {
                const float r = acc[i][j] + (bias ? bias[gn] : 0.0f);
                y[(size_t)gm * N + gn] = GELU ? gq_gelu(r) : r;
            }
        }
}

/* Whether the decode kernel's 16-byte paths take w and x (qmatmul.h's layout; with the
 * layernorm prologue the kernel reads its own aligned copy of x): 1 yes, 0 the generic path,
 * -1 refused (fp32 / fp16 rows must be aligned whole 16-byte steps). */
static inline int gq_qmm_fast(const gq_qmat *w, const float *x, int ln) {
    const gq_qformat f = w->spec.format;
    const int bits = gq_qbits(f);
    const void *wbase = f != GQ_QF_F32 ? (const void *)w->q : w->h16 ? (const void *)w->h16 : (const void *)w->f32;
    const uintptr_t align = (uintptr_t)wbase | (ln ? 0 : (uintptr_t)x) | (uintptr_t)(w->cols % (w->h16 ? 8 : 4) ? 1 : 0);
    if (f == GQ_QF_F32) return (align & 15) == 0 ? 1 : -1;
    if (bits == 4) return w->group % 32 == 0 && (align & 15) == 0; /* 16-byte loads within one half group */
    if (bits == 8) return w->cols % 16 == 0 && w->group % 16 == 0 && (align & 15) == 0;
    return 0;
}

/* The launches behind gq_cuda_qmatmul / gq_cuda_qmatmul_ep. Returns a gq error code. */
static int gq_qmm_run(float *y, const float *x, int M, const gq_qmat *w, const float *bias,
                      const gq_qmm_ep *ep_in) {
    const gq_qmm_ep ep = ep_in ? *ep_in : gq_qmm_ep{};
    if (M <= 0) return GQ_OK;
    if ((ep.ln_w || ep.residual || ep.act8) && M != 1)
        return gq_errf(GQ_EUNSUPPORTED, "CUDA qmatmul: a prologue or a residual epilogue takes one token");
    if (ep.ln_w && (!ep.ln_b || w->cols > GQ_CUDA_LN_ROW_MAX))
        return gq_errf(GQ_EUNSUPPORTED, "CUDA qmatmul: the layernorm prologue needs a bias and at most %d columns",
                       GQ_CUDA_LN_ROW_MAX);
    if (ep.act8 && (w->cols % GQ_ACT_BLOCK || w->cols > GQ_QMM_ROW_SMEM_MAX))
        return gq_errf(GQ_EUNSUPPORTED, "CUDA qmatmul: int8 activations in the prologue take rows of a multiple of %d "
                       "values, at most %d", GQ_ACT_BLOCK, GQ_QMM_ROW_SMEM_MAX);
    const int pro = ep.ln_w || ep.act8; /* the prologue instance: the row in shared memory */
    if (M >= GQ_QMM_PANEL_MIN) {
        const dim3 grid((unsigned)((w->rows + QG_TN - 1) / QG_TN), (unsigned)((M + QG_TM - 1) / QG_TM));
        return ep.gelu ? gq_launch(qgemm_kernel<1>, grid, dim3(QG_THREADS), 0, y, x, M, *w, bias)
                       : gq_launch(qgemm_kernel<0>, grid, dim3(QG_THREADS), 0, y, x, M, *w, bias);
    }
    const int fast = gq_qmm_fast(w, x, pro);
    if (fast < 0)
        return gq_errf(GQ_EUNSUPPORTED, "CUDA qmatmul: fp32 / fp16 rows must be 16-byte aligned (whole 16-byte steps)");
    const size_t smem = pro ? (size_t)w->cols * sizeof(float) : 0;
    const dim3 grid((unsigned)((w->rows + QMV_WARPS - 1) / QMV_WARPS)), block(QMV_WARPS * 32);
    for (int m0 = 0; m0 < M; m0 += QMV_MAXM) {
        const int mm = M - m0 < QMV_MAXM ? M - m0 : QMV_MAXM;
        float *ym = y + (size_t)m0 * w->rows;
        const float *xm = x + (size_t)m0 * w->cols;
        const int rc = mm == 1 && pro    ? gq_launch(qmatmul_kernel<1, 1>, grid, block, smem, ym, xm, mm, *w, bias, fast, ep)
                       : mm == 1          ? gq_launch(qmatmul_kernel<1, 0>, grid, block, 0, ym, xm, mm, *w, bias, fast, ep)
                                          : gq_launch(qmatmul_kernel<QMV_MAXM, 0>, grid, block, 0, ym, xm, mm, *w, bias, fast, ep);
        if (rc) return rc;
    }
    return GQ_OK;
}

#endif
