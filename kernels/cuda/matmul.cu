/* matmul (CUDA): the linear layer through cuBLAS (fp32, TF32 or bf16 products per
 * gq_cuda_set_matmul), with a bias kernel and the deterministic column sum for the bias
 * gradient. In bf16 mode the input (inp) and the weight are bf16 arrays as their producers
 * stored them (the layer before; the model's bf16 working weights: gq_cuda_bf16_operands), and
 * the products multiply them as they lie. The output gradient is read as its producer wrote
 * it where that is bf16 (dout_bf16: cross-entropy's in place of the LM head's logits, the
 * attention's dqkv, GELU's gradient), else rounded to a bf16 copy once for both of the
 * backward's products. A bf16 output (out_bf16) without a bias (the LM head's logits) is
 * cuBLAS's own, the fp32 sums rounded once as they are stored; with a bias (qkv and the MLP's
 * pre-activation) the fp32 product goes to scratch, then its bias is added and the sum rounded
 * once, in one kernel. */
#include "backend.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <stdlib.h>
#include <string.h>

static __global__ void add_bias_kernel(float *out, const float *bias, size_t n, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % OC];
}

static __global__ void bias_round_kernel(__nv_bfloat16 *out, const float *in, const float *bias, size_t n, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(bias ? in[i] + bias[i % OC] : in[i]);
}

/* a bf16 copy of n floats in a scratch slot */
static int bf16_copy(int slot, const float *src, size_t n, const void **dst) {
    void *p = NULL;
    GQ_TRY(gq_cuda_scratch(slot, n * 2, &p));
    GQ_TRY(gq_cuda_to_bf16(p, src, n));
    *dst = p;
    return GQ_OK;
}

/* GQ_CUDA_BF16_OPERANDS=0 in the environment (read once) keeps bf16 mode's activations and
 * working weights in fp32, rounded into scratch copies per product as before session 9: for
 * measuring the difference */
extern "C" int gq_cuda_bf16_operands(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("GQ_CUDA_BF16_OPERANDS");
        on = !(e && !strcmp(e, "0"));
    }
    return on && gq_cuda_matmul_mode() == GQ_MATMUL_BF16;
}

extern "C" int gq_cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                                      int C, int OC, int out_bf16) {
    if (N <= 0) return GQ_OK;
    const size_t n = (size_t)N * OC;
    const int direct16 = out_bf16 && !bias && gq_cuda_bf16_operands(); /* cuBLAS rounds as it stores */
    float *dst = out;
    if (out_bf16 && !direct16) GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_OUT32, n * sizeof(float), (void **)&dst));
    /* dst (N,OC) = inp (N,C) weight (OC,C)^T */
    if (gq_cuda_bf16_operands()) {
        GQ_TRY(gq_cuda_gemm_bf16_rm(0, 1, N, OC, C, 1.0f, inp, C, 0, weight, C, 0, 0.0f, dst, direct16, OC, 0, 1));
        if (direct16) return GQ_OK;
    } else {
        GQ_TRY(gq_cuda_sgemm_rm(0, 1, N, OC, C, 1.0f, inp, C, 0, weight, C, 0, 0.0f, dst, OC, 0, 1));
    }
    if (out_bf16)
        GQ_TRY(gq_launch(bias_round_kernel, gq_cuda_grid(n, 256), 256, 0, (__nv_bfloat16 *)out, (const float *)dst,
                         bias, n, OC));
    else if (bias)
        GQ_TRY(gq_launch(add_bias_kernel, gq_cuda_grid(n, 256), 256, 0, out, bias, n, OC));
    return GQ_OK;
}

extern "C" int gq_cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                       const float *weight, int N, int C, int OC, int dout_bf16) {
    if (N <= 0) return GQ_OK;
    if (dout_bf16 && !gq_cuda_bf16_operands())
        return gq_errf(GQ_EINVAL, "matmul backward: a bf16 output gradient needs bf16 operands");
    if (gq_cuda_bf16_operands()) {
        /* the output gradient in bf16: as its producer wrote it (cross-entropy's in place of the
         * logits, GELU's backward), or a copy */
        const void *dy16 = dout;
        if (!dout_bf16) GQ_TRY(bf16_copy(GQ_SCRATCH_BF16_A, dout, (size_t)N * OC, &dy16));
        if (dinp) GQ_TRY(gq_cuda_gemm_bf16_rm(0, 0, N, C, OC, 1.0f, dy16, OC, 0, weight, C, 0, 0.0f, dinp, 0, C, 0, 1));
        GQ_TRY(gq_cuda_gemm_bf16_rm(1, 0, OC, C, N, 1.0f, dy16, OC, 0, inp, C, 0, 1.0f, dweight, 0, C, 0, 1));
    } else {
        /* dinp (N,C) = dout (N,OC) weight (OC,C) */
        if (dinp) GQ_TRY(gq_cuda_sgemm_rm(0, 0, N, C, OC, 1.0f, dout, OC, 0, weight, C, 0, 0.0f, dinp, C, 0, 1));
        /* dweight (OC,C) += dout^T (OC,N) inp (N,C) */
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dweight, C, 0, 1));
    }
    if (dbias) GQ_TRY(dout_bf16 ? gq_cuda_colsum_add_bf16(dbias, dout, N, OC) : gq_cuda_colsum_add(dbias, dout, N, OC));
    return GQ_OK;
}
