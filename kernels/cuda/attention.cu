/* attention (CUDA): causal multi-head self-attention, the reference version: per batch row,
 * strided-batched cuBLAS products over the heads (q, k, v are read in place from qkv: head h
 * starts hs floats after head h-1, rows 3C apart) and one warp per row for the causal softmax
 * and its backward. The attention matrix is saved for the backward, as on the CPU.
 * In GQ_MATMUL_BF16 mode the op is the tensor-core flash attention (attention_tc.cu; att saves
 * only its log-sum-exp per row) where the head size allows (16..128 in steps of 16, GPT-2's 64),
 * unless GQ_CUDA_ATTN=cublas. Otherwise bf16 mode keeps this file's form with the (T, T)
 * matrices in bf16 (the first half of the att and scratch buffers) and bf16 operands for every
 * product (q, k, v and the output gradient copied to bf16 once per call). With bf16 operands
 * (gq_cuda_bf16_operands) qkv is bf16 as its product stored it and the output (out) bf16, a
 * product input, both here and in the backward. */
#include "act_math.h"
#include "backend.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef __nv_bfloat16 bf16;


/* row r of the (rows, T) matrix holds query position t = r % T: softmax of [0, t] in fp32 (each
 * exponential computed again for the output, so that a bf16 row is rounded once), zeros after */
template <typename E> static __global__ void softmax_causal_kernel(E *att, int rows, int T) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int t = r % T;
    E *x = att + (size_t)r * T;
    float mx = -3.0e38f;
    for (int u = lane; u <= t; u += 32) mx = fmaxf(mx, gq_ld(x + u));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float s = 0.0f;
    for (int u = lane; u <= t; u += 32) s += gq_exp(gq_ld(x + u) - mx);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = 1.0f / s;
    for (int u = lane; u < T; u += 32) gq_st(x + u, u <= t ? gq_exp(gq_ld(x + u) - mx) * inv : 0.0f);
}

/* in place: d <- a * (d - sum(a * d)) on [0, t], zeros after */
template <typename E> static __global__ void softmax_causal_backward_kernel(E *d, const E *a, int rows, int T) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int t = r % T;
    E *dr = d + (size_t)r * T;
    const E *ar = a + (size_t)r * T;
    float dot = 0.0f;
    for (int u = lane; u <= t; u += 32) dot += gq_ld(ar + u) * gq_ld(dr + u);
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    for (int u = lane; u < T; u += 32) gq_st(dr + u, u <= t ? gq_ld(ar + u) * (gq_ld(dr + u) - dot) : 0.0f);
}

/* qkv (B, T, 3C) as bf16: as it lies with bf16 operands (the qkv product stored it so), else a
 * copy in a scratch slot */
static int qkv_bf16(const float *qkv, int B, int T, int C, const bf16 **q16) {
    if (gq_cuda_bf16_operands()) {
        *q16 = (const bf16 *)qkv;
        return GQ_OK;
    }
    void *p = NULL;
    const size_t n = (size_t)B * T * 3 * C;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_ATT_QKV16, n * sizeof(bf16), &p));
    GQ_TRY(gq_cuda_to_bf16(p, qkv, n));
    *q16 = (const bf16 *)p;
    return GQ_OK;
}

static int attention_forward_bf16(void *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    const bf16 *q16 = NULL;
    GQ_TRY(qkv_bf16(qkv, B, T, C, &q16));
    bf16 *a16 = (bf16 *)att;
    for (int b = 0; b < B; b++) { /* a[h] = scale q_h k_h^T, stored in bf16 */
        const bf16 *q = q16 + (size_t)b * T * C3, *k = q + C;
        GQ_TRY(gq_cuda_gemm_bf16_rm(0, 1, T, T, hs, scale, q, C3, hs, k, C3, hs, 0.0f, a16 + (size_t)b * NH * TT, 1, T,
                                    TT, NH));
    }
    const int rows = B * NH * T;
    GQ_TRY(gq_launch(softmax_causal_kernel<bf16>, gq_cuda_blocks(rows, 8), 256, 0, a16, rows, T));
    const int o16 = gq_cuda_bf16_operands(); /* out_h = a[h] v_h: bf16 where it is a bf16 product input */
    for (int b = 0; b < B; b++) {
        const bf16 *v = q16 + (size_t)b * T * C3 + 2 * C;
        void *o = o16 ? (void *)((bf16 *)out + (size_t)b * T * C) : (void *)((float *)out + (size_t)b * T * C);
        GQ_TRY(gq_cuda_gemm_bf16_rm(0, 0, T, hs, T, 1.0f, a16 + (size_t)b * NH * TT, T, TT, v, C3, hs, 0.0f, o, o16, C,
                                    hs, NH));
    }
    return GQ_OK;
}

/* (dqkv: bf16 with bf16 operands, the qkv product's output gradient as its backward reads it) */
static int attention_backward_bf16(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                                   int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C, d16 = gq_cuda_bf16_operands();
    const size_t es = d16 ? 2 : 4; /* dqkv's element */
    char *dqkv_b = (char *)dqkv;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    const bf16 *q16 = NULL, *a16 = (const bf16 *)att;
    GQ_TRY(qkv_bf16(qkv, B, T, C, &q16));
    void *p = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_ATT_DY16, (size_t)B * T * C * sizeof(bf16), &p));
    GQ_TRY(gq_cuda_to_bf16(p, dout, (size_t)B * T * C));
    const bf16 *dy16 = (const bf16 *)p;
    bf16 *da16 = (bf16 *)scratch;
    for (int b = 0; b < B; b++) {
        const bf16 *v = q16 + (size_t)b * T * C3 + 2 * C, *dy = dy16 + (size_t)b * T * C;
        bf16 *da = da16 + (size_t)b * NH * TT;
        void *dv = dqkv_b + ((size_t)b * T * C3 + 2 * C) * es;
        /* da = dy v^T (bf16) ; dv = a^T dy */
        GQ_TRY(gq_cuda_gemm_bf16_rm(0, 1, T, T, hs, 1.0f, dy, C, hs, v, C3, hs, 0.0f, da, 1, T, TT, NH));
        GQ_TRY(gq_cuda_gemm_bf16_rm(1, 0, T, hs, T, 1.0f, a16 + (size_t)b * NH * TT, T, TT, dy, C, hs, 0.0f, dv, d16,
                                    C3, hs, NH));
    }
    const int rows = B * NH * T;
    GQ_TRY(gq_launch(softmax_causal_backward_kernel<bf16>, gq_cuda_blocks(rows, 8), 256, 0, da16, a16, rows, T));
    for (int b = 0; b < B; b++) {
        const bf16 *q = q16 + (size_t)b * T * C3, *k = q + C, *da = da16 + (size_t)b * NH * TT;
        void *dq = dqkv_b + (size_t)b * T * C3 * es, *dk = (char *)dq + C * es;
        /* dq = scale da k ; dk = scale da^T q */
        GQ_TRY(gq_cuda_gemm_bf16_rm(0, 0, T, hs, T, scale, da, T, TT, k, C3, hs, 0.0f, dq, d16, C3, hs, NH));
        GQ_TRY(gq_cuda_gemm_bf16_rm(1, 0, T, hs, T, scale, da, T, TT, q, C3, hs, 0.0f, dk, d16, C3, hs, NH));
    }
    return GQ_OK;
}

/* bf16 mode: the tensor-core flash kernels, or this file's bf16 products (GQ_CUDA_ATTN=cublas,
 * or a head size they do not take); the forward, the backward and the memory plan decide alike */
static int tc_form = -1;

extern "C" void gq_cuda_set_attention_tc(int on) { tc_form = on != 0; }

static int use_tc(int C, int NH) {
    if (tc_form < 0) tc_form = gq_cuda_env_on("GQ_CUDA_ATTN", "cublas");
    return tc_form && gq_cuda_attention_tc_supported(C, NH);
}

extern "C" void gq_cuda_attention_floats(int B, int T, int C, int NH, size_t *saved, size_t *scratch) {
    const size_t rows = (size_t)B * NH * T;
    if (gq_cuda_matmul_mode() == GQ_MATMUL_BF16 && use_tc(C, NH)) {
        *saved = rows, *scratch = 0;
    } else {
        *saved = *scratch = rows * T;
    }
}

extern "C" int gq_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    if (gq_cuda_matmul_mode() == GQ_MATMUL_BF16)
        return !use_tc(C, NH)        ? attention_forward_bf16(out, att, qkv, B, T, C, NH)
               : gq_cuda_bf16_operands() ? gq_cuda_attention_forward_tc16(out, att, qkv, B, T, C, NH)
                                     : gq_cuda_attention_forward_tc(out, att, qkv, B, T, C, NH);
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C;
        float *a = att + (size_t)b * NH * TT;
        /* a[h] = scale q_h k_h^T */
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, T, T, hs, scale, q, C3, hs, k, C3, hs, 0.0f, a, T, TT, NH));
    }
    int rows = B * NH * T;
    GQ_TRY(gq_launch(softmax_causal_kernel<float>, gq_cuda_blocks(rows, 8), 256, 0, att, rows, T));
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        /* out_h = a[h] v_h */
        GQ_TRY(gq_cuda_sgemm_rm(0, 0, T, hs, T, 1.0f, att + (size_t)b * NH * TT, T, TT, v, C3, hs, 0.0f,
                                out + (size_t)b * T * C, C, hs, NH));
    }
    return GQ_OK;
}

extern "C" int gq_cuda_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                          const float *out, const float *att, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0) return GQ_OK;
    if (gq_cuda_matmul_mode() == GQ_MATMUL_BF16) {
        if (!use_tc(C, NH)) return attention_backward_bf16(dqkv, scratch, dout, qkv, att, B, T, C, NH);
        return gq_cuda_bf16_operands() ? gq_cuda_attention_backward_tc16(dqkv, dout, qkv, out, att, B, T, C, NH)
                                   : gq_cuda_attention_backward_tc(dqkv, dout, qkv, out, att, B, T, C, NH);
    }
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C, *dy = dout + (size_t)b * T * C;
        const float *a = att + (size_t)b * NH * TT;
        float *da = scratch + (size_t)b * NH * TT, *dv = dqkv + (size_t)b * T * C3 + 2 * C;
        /* da = dy v^T ; dv = a^T dy */
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, T, T, hs, 1.0f, dy, C, hs, v, C3, hs, 0.0f, da, T, TT, NH));
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, T, hs, T, 1.0f, a, T, TT, dy, C, hs, 0.0f, dv, C3, hs, NH));
    }
    int rows = B * NH * T;
    GQ_TRY(gq_launch(softmax_causal_backward_kernel<float>, gq_cuda_blocks(rows, 8), 256, 0, scratch, att, rows, T));
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C;
        const float *da = scratch + (size_t)b * NH * TT;
        float *dq = dqkv + (size_t)b * T * C3, *dk = dq + C;
        /* dq = scale da k ; dk = scale da^T q */
        GQ_TRY(gq_cuda_sgemm_rm(0, 0, T, hs, T, scale, da, T, TT, k, C3, hs, 0.0f, dq, C3, hs, NH));
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, T, hs, T, scale, da, T, TT, q, C3, hs, 0.0f, dk, C3, hs, NH));
    }
    return GQ_OK;
}
