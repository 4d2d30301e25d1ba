/* qmatmul (CUDA): products with packed quantized weights, y (M, rows) = x (M, cols) W^T + bias,
 * the weights read as exported (qmatmul.h's gq_qmat, device pointers).
 *   - M < GQ_QMM_PANEL_MIN (decode, short prompts): the weights dequantized in registers with
 *     quant.h's values, a few tokens (M <= 8) per pass. One warp per output row; the fast paths
 *     read 16 bytes per lane per step (4-bit formats with groups of 32+, 8-bit formats, fp32), a
 *     generic path takes any other layout (int3, int2, small groups).
 *   - M >= GQ_QMM_PANEL_MIN (prefill, eval), as the CPU runner: a panel of rows dequantized
 *     exactly into a grow-only scratch (at most 16 MB), then an fp32 GEMM through cuBLAS (IEEE
 *     products unless TF32 was chosen); fp32 weights go to the GEMM directly. */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "qmatmul.h"

enum { QMV_WARPS = 8, QMV_MAXM = 8 };

#define FULL 0xffffffffu

static __global__ void __launch_bounds__(QMV_WARPS * 32)
    qmatmul_kernel(float *y, const float *x, int M, gq_qmat w, const float *bias, int fast) {
    __shared__ float lut[16];
    const gq_qformat f = w.spec.format;
    if (threadIdx.x < 16) lut[threadIdx.x] = gq_qvalue(f, threadIdx.x, 1.0f, 0); /* nf4 / fp4 value per code */
    __syncthreads();
    const int row = blockIdx.x * QMV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= w.rows) return;
    const int K = w.cols, G = w.group, bits = gq_qbits(f), ng = f == GQ_QF_F32 ? 1 : K / G;
    float acc[QMV_MAXM];
#pragma unroll
    for (int m = 0; m < QMV_MAXM; m++)
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
                v[b] = w.h16_bf16 ? gq_bf16_to_f32(h) : gq_f16_to_f32(h);
            }
#pragma unroll
            for (int m = 0; m < QMV_MAXM; m++)
                if (m < M) {
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
            for (int m = 0; m < QMV_MAXM; m++)
                if (m < M) {
                    const float *xm = x + (size_t)m * K + c;
                    acc[m] += v.x * xm[0] + v.y * xm[1] + v.z * xm[2] + v.w * xm[3];
                }
        }
    } else if (fast && bits == 4) {
        const size_t rbytes = (size_t)K / 2;
        const uint8_t *qr = w.q + (size_t)row * rbytes;
        const int half = G / 2;
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
            for (int m = 0; m < QMV_MAXM; m++)
                if (m < M) {
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
        for (int o = lane * 16; o < K; o += 32 * 16) {
            const uint4 raw = *(const uint4 *)(qr + o);
            const float s = gq_qmat_scale(&w, row, o / G);
            const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
            float v[16];
#pragma unroll
            for (int b = 0; b < 16; b++)
                v[b] = (float)(int8_t)((words[b / 4] >> (8 * (b % 4))) & 0xff) * s;
#pragma unroll
            for (int m = 0; m < QMV_MAXM; m++)
                if (m < M) {
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
            for (int m = 0; m < QMV_MAXM; m++)
                if (m < M) acc[m] += v * x[(size_t)m * K + c];
        }
    }
#pragma unroll
    for (int m = 0; m < QMV_MAXM; m++) {
        if (m >= M) break;
        float a = acc[m];
        for (int s = 16; s > 0; s >>= 1)
            a += __shfl_xor_sync(FULL, a, s);
        if (lane == 0) y[(size_t)m * w.rows + row] = a + (bias ? bias[row] : 0.0f);
    }
}

enum { QMM_PANEL_BYTES = 16 << 20 };

static __global__ void dequant_rows_kernel(float *panel, gq_qmat w, int r0, int np) {
    const size_t n = (size_t)np * (size_t)w.cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        panel[e] = gq_qmat_value(&w, r0 + (int)(e / (size_t)w.cols), (int)(e % (size_t)w.cols));
}

static __global__ void bias_rows_kernel(float *y, const float *bias, int M, int N) {
    const size_t n = (size_t)M * N;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        y[e] = bias[e % (size_t)N];
}

/* y (M, rows) = x W^T + bias through fp32 GEMMs, one dequantized panel of rows at a time */
static int qmatmul_gemm(float *y, const float *x, int M, const gq_qmat *w, const float *bias) {
    const int K = w->cols, N = w->rows;
    const float beta = bias ? 1.0f : 0.0f;
    if (bias) {
        bias_rows_kernel<<<gq_cuda_grid((size_t)M * N, 256), 256>>>(y, bias, M, N);
        GQ_CUDA_CHECK_LAUNCH();
    }
    if (w->spec.format == GQ_QF_F32 && !w->h16) /* fp32 weights: the GEMM directly (fp16 / bf16: panels) */
        return gq_cuda_sgemm_rm(0, 1, M, N, K, 1.0f, x, K, 0, w->f32, K, 0, beta, y, N, 0, 1);
    int per = (int)(QMM_PANEL_BYTES / ((size_t)K * sizeof(float)));
    per = per < 1 ? 1 : per > N ? N : per;
    void *p = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_QPANEL, (size_t)per * K * sizeof(float), &p));
    float *panel = (float *)p;
    for (int r0 = 0; r0 < N; r0 += per) {
        const int np = N - r0 < per ? N - r0 : per;
        dequant_rows_kernel<<<gq_cuda_grid((size_t)np * K, 256), 256>>>(panel, *w, r0, np);
        GQ_CUDA_CHECK_LAUNCH();
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, M, np, K, 1.0f, x, K, 0, panel, K, 0, beta, y + r0, N, 0, 1));
    }
    return GQ_OK;
}

extern "C" int gq_cuda_qmatmul(float *y, const float *x, int M, const gq_qmat *w, const float *bias) {
    if (M <= 0) return GQ_OK;
    if (M >= GQ_QMM_PANEL_MIN) return qmatmul_gemm(y, x, M, w, bias);
    const gq_qformat f = w->spec.format;
    const int bits = gq_qbits(f);
    /* 16-byte loads of weights and activations: aligned bases, and rows of whole 16-byte steps */
    const void *wbase = f != GQ_QF_F32 ? (const void *)w->q : w->h16 ? (const void *)w->h16 : (const void *)w->f32;
    const uintptr_t align = (uintptr_t)wbase | (uintptr_t)x | (uintptr_t)(w->cols % (w->h16 ? 8 : 4) ? 1 : 0);
    int fast = 0;
    if (f == GQ_QF_F32)
        fast = (align & 15) == 0;
    else if (bits == 4)
        fast = w->group % 32 == 0 && (align & 15) == 0; /* 16-byte loads within one half group */
    else if (bits == 8)
        fast = w->cols % 16 == 0 && w->group % 16 == 0 && (align & 15) == 0;
    if (f == GQ_QF_F32 && !fast)
        return gq_errf(GQ_EUNSUPPORTED, "CUDA qmatmul: fp32 / fp16 rows must be 16-byte aligned (whole 16-byte steps)");
    for (int m0 = 0; m0 < M; m0 += QMV_MAXM) {
        int mm = M - m0 < QMV_MAXM ? M - m0 : QMV_MAXM;
        qmatmul_kernel<<<gq_cuda_blocks(w->rows, QMV_WARPS), QMV_WARPS * 32>>>(
            y + (size_t)m0 * w->rows, x + (size_t)m0 * w->cols, mm, *w, bias, fast);
        GQ_CUDA_CHECK_LAUNCH();
    }
    return GQ_OK;
}
