/* matmul (CUDA): the linear layer through cuBLAS (fp32, TF32 or bf16 products per
 * gq_cuda_set_matmul), with the deterministic column sum for the bias gradient. In bf16 mode
 * the input (inp) and the weight are bf16 arrays as their producers stored them (the layer
 * before; the model's bf16 working weights: gq_cuda_bf16_operands), and the products multiply
 * them as they lie. The output gradient is read as its producer wrote it where that is bf16
 * (dout_bf16: cross-entropy's in place of the LM head's logits, the attention's dqkv, GELU's
 * gradient), else rounded to a bf16 copy once for both of the backward's products. A bias, the
 * residual add, the GELU after the MLP's first product and GELU's derivative before its second
 * go into cuBLASLt's epilogue where it takes them (cublaslt.cu): the fp32 sums rounded once to
 * the output's type. Where it does not: a bf16 output without a bias (the LM head's logits) is
 * cuBLAS's own; with a bias the fp32 product goes to scratch, then its bias is added and the sum
 * rounded once, in one kernel; the residual add and GELU are their own kernels. */
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
    if (on < 0) on = gq_cuda_env_on("GQ_CUDA_BF16_OPERANDS", "0");
    return on && gq_cuda_matmul_mode() == GQ_MATMUL_BF16;
}

extern "C" int gq_cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                                      int C, int OC, int out_bf16) {
    if (N <= 0) return GQ_OK;
    /* with a bias: cuBLASLt adds it to the fp32 sums and rounds once where it can (cublaslt.cu) */
    if (bias) {
        const int rc = gq_cuda_lt_matmul(0, 1, N, OC, C, inp, C, weight, C, NULL, out, OC, out_bf16, bias, NULL, GQ_LT_BIAS);
        if (rc != GQ_EUNSUPPORTED) return rc;
    }
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

extern "C" int gq_cuda_matmul_residual_forward(float *out, const float *residual, const float *inp,
                                               const float *weight, const float *bias, int N, int C, int OC) {
    if (N <= 0) return GQ_OK;
    if (out == residual) return gq_errf(GQ_EINVAL, "matmul_residual_forward: out must not alias residual");
    /* the residual as cuBLASLt's C (beta 1), the bias in the epilogue: one pass over out */
    const int rc = gq_cuda_lt_matmul(0, 1, N, OC, C, inp, C, weight, C, residual, out, OC, 0, bias, NULL,
                                     bias ? GQ_LT_BIAS : GQ_LT_NONE);
    if (rc != GQ_EUNSUPPORTED) return rc;
    GQ_TRY(gq_cuda_matmul_forward(out, inp, weight, bias, N, C, OC, 0));
    return gq_cuda_residual_forward(out, residual, out, (size_t)N * OC);
}

extern "C" int gq_cuda_matmul_gelu_forward(float *out, float *pre, const float *inp, const float *weight,
                                           const float *bias, int N, int C, int OC) {
    if (N <= 0) return GQ_OK;
    if (!bias) return gq_errf(GQ_EINVAL, "matmul_gelu_forward: needs a bias");
    /* pre and out bf16 with bf16 operands (the fc product's output and GELU's, backend.h) */
    const int b16 = gq_cuda_bf16_operands();
    const int rc = gq_cuda_lt_matmul(0, 1, N, OC, C, inp, C, weight, C, NULL, out, OC, b16, bias, pre,
                                     GQ_LT_GELU_AUX_BIAS);
    if (rc != GQ_EUNSUPPORTED) return rc;
    const size_t n = (size_t)N * OC;
    GQ_TRY(gq_cuda_matmul_forward(pre, inp, weight, bias, N, C, OC, b16));
    return b16 ? gq_cuda_gelu_forward_bf16(out, pre, n) : gq_cuda_gelu_forward(out, pre, n);
}

/* matmul_backward, and with pre the GELU's backward on dinp (matmul_backward_dgelu) */
static int matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, const float *pre, int N, int C, int OC, int dout_bf16) {
    if (N <= 0) return GQ_OK;
    const int b16 = gq_cuda_bf16_operands();
    if (dout_bf16 && !b16) return gq_errf(GQ_EINVAL, "matmul backward: a bf16 output gradient needs bf16 operands");
    /* the output gradient in bf16 with bf16 operands: as its producer wrote it (cross-entropy's in
     * place of the logits, GELU's backward), or a copy made once for both products */
    const void *dy = dout;
    if (b16 && !dout_bf16) GQ_TRY(bf16_copy(GQ_SCRATCH_BF16_A, dout, (size_t)N * OC, &dy));
    if (dinp) {
        /* dinp (N,C) = dout (N,OC) weight (OC,C), through GELU's derivative of pre in cuBLASLt's
         * epilogue where it takes it */
        int rc = GQ_EUNSUPPORTED;
        if (pre) rc = gq_cuda_lt_matmul(0, 0, N, C, OC, dy, OC, weight, C, NULL, dinp, C, b16, NULL, (void *)pre, GQ_LT_DGELU);
        if (rc != GQ_EUNSUPPORTED) {
            GQ_TRY(rc);
        } else {
            float *dx = dinp; /* with pre: the fp32 product first, then GELU's backward kernel */
            if (pre) GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_OUT32, (size_t)N * C * sizeof(float), (void **)&dx));
            if (b16)
                GQ_TRY(gq_cuda_gemm_bf16_rm(0, 0, N, C, OC, 1.0f, dy, OC, 0, weight, C, 0, 0.0f, dx, 0, C, 0, 1));
            else
                GQ_TRY(gq_cuda_sgemm_rm(0, 0, N, C, OC, 1.0f, dout, OC, 0, weight, C, 0, 0.0f, dx, C, 0, 1));
            if (pre) {
                const size_t n = (size_t)N * C;
                GQ_TRY(b16 ? gq_cuda_gelu_backward_bf16(dinp, pre, dx, n) : gq_cuda_gelu_backward(dinp, pre, dx, n));
            }
        }
    }
    /* dweight (OC,C) += dout^T (OC,N) inp (N,C) */
    if (b16)
        GQ_TRY(gq_cuda_gemm_bf16_rm(1, 0, OC, C, N, 1.0f, dy, OC, 0, inp, C, 0, 1.0f, dweight, 0, C, 0, 1));
    else
        GQ_TRY(gq_cuda_sgemm_rm(1, 0, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dweight, C, 0, 1));
    if (dbias) GQ_TRY(dout_bf16 ? gq_cuda_colsum_add_bf16(dbias, dout, N, OC) : gq_cuda_colsum_add(dbias, dout, N, OC));
    return GQ_OK;
}

extern "C" int gq_cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                       const float *weight, int N, int C, int OC, int dout_bf16) {
    return matmul_backward(dinp, dweight, dbias, dout, inp, weight, NULL, N, C, OC, dout_bf16);
}

extern "C" int gq_cuda_matmul_backward_dgelu(float *dinp, float *dweight, float *dbias, const float *dout,
                                             const float *inp, const float *weight, const float *pre, int N, int C,
                                             int OC) {
    if (!dinp || !pre) return gq_errf(GQ_EINVAL, "matmul_backward_dgelu: needs dinp and pre");
    return matmul_backward(dinp, dweight, dbias, dout, inp, weight, pre, N, C, OC, 0);
}
