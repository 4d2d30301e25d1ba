/* attention_tc (CUDA): causal multi-head attention on the bf16 tensor cores, flash-style: no
 * (T, T) matrix in memory; the backward recomputes the probabilities from the log-sum-exp the
 * forward saved. The bf16 training mode's attention (attention.cu calls it).
 *
 * Arithmetic: bf16 tensor-core products (mma.sync m16n8k16 or WMMA 16x16x16) with fp32
 * accumulation. q, k, v and the output
 * gradient are rounded to bf16 as their tiles load (fp32 in global memory; in the bf16 mode's
 * form with bf16 operands, the *_tc16 functions, q, k, v are bf16 there already and load as they
 * lie), and so are the probabilities and the score gradients before their products, as
 * FlashAttention-2 does; the softmax statistics, the running output and the gradients stay
 * fp32. Exponentials are base 2 with the softmax scale folded into log2(e).
 *
 * Work: a block is 4 warps x 16 rows = 64 queries (forward, dQ) or 64 keys (dK, dV) and walks
 * tiles of 64 keys (queries) through shared memory, skipping blocks wholly above the diagonal;
 * the pipelined forms (session 19; the default since the H200 measured them in session 25) copy
 * the next tiles (cp.async) while they work on the current ones, the forward with 8 warps = 128
 * queries.
 * The forward keeps a warp's scores, probabilities and running output in registers (mma.sync,
 * whose register layout the PTX ISA specifies); its WMMA form (GQ_CUDA_TC=wmma) and the
 * backward's kernels stage each score tile through shared memory for the row-wise steps (two
 * lanes a row), since WMMA's accumulator layout is unspecified. Deterministic: dK and dV are summed
 * by the key block's warps, dQ by the query block's, each over the tiles in a fixed order, no
 * atomics. Layout as backend.h: qkv (B,T,3C), out (B,T,C), lse (B,NH,T); head sizes 16 to 128
 * in steps of 16 (GPT-2's are 64). */
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "attention_tc.cuh"

/* the kernels (cuda_ops.h's GQ_TC_*): unset (-1), the environment decides at the first call
 * (GQ_CUDA_TC=wmma / mma; else the pipelined kernels: on the H200 in session 25, 124M bf16 training
 * at B = 8 ran 346k tokens/s with them against 301k with session 8's mma.sync ones, the same
 * losses). Head sizes over 64 take WMMA's backward and the unpipelined forward (the register
 * kernels' accumulators would not fit: ptxas spills). */
static int tc_form = -1;

extern "C" void gq_cuda_set_attention_tc_form(int form) { tc_form = form; }

static int form(void) {
    if (tc_form < 0) {
        const char *e = getenv("GQ_CUDA_TC");
        tc_form = e && !strcmp(e, "wmma") ? GQ_TC_WMMA : e && !strcmp(e, "mma") ? GQ_TC_MMA : GQ_TC_PIPE;
    }
    return tc_form;
}
static int mma_form(void) { return form() != GQ_TC_WMMA; }

/* the pipelined kernels leave the causal masks out on tiles a warp sees whole (session 25, not
 * yet on a GPU; the same bits); GQ_CUDA_TC_MASK=all masks every tile, as before */
static int tc_inner(void) {
    static int inner = -1;
    if (inner < 0) inner = gq_cuda_env_on("GQ_CUDA_TC_MASK", "all");
    return inner;
}

template <int HS, class OT> static int tc_forward(OT *out, float *lse, const OT *qkv, int B, int T, int C, int NH) {
    const float sl2 = tc_sl2(HS);
    if constexpr (HS <= 64)
        if (form() == GQ_TC_PIPE) {
            const size_t smem = tc3_dims<HS>::SMEM;
            GQ_CUDA_CHECK(cudaFuncSetAttribute(tc_forward3_kernel<HS, OT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)smem));
            return gq_launch(tc_forward3_kernel<HS, OT>, dim3(gq_cuda_blocks(T, TC3_Q), B * NH), TC3_THREADS, smem, out,
                             lse, qkv, T, C, NH, sl2, tc_inner());
        }
    const dim3 grid(gq_cuda_blocks(T, TC_ROWS), B * NH);
    if (mma_form()) {
        const size_t smem = tc_dims<HS>::FORWARD2;
        GQ_CUDA_CHECK(
            cudaFuncSetAttribute(tc_forward2_kernel<HS, OT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        GQ_TRY(gq_launch(tc_forward2_kernel<HS, OT>, grid, TC_THREADS, smem, out, lse, qkv, T, C, NH, sl2));
    } else {
        const size_t smem = tc_dims<HS>::FORWARD;
        GQ_CUDA_CHECK(cudaFuncSetAttribute(tc_forward_kernel<HS, OT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        GQ_TRY(gq_launch(tc_forward_kernel<HS, OT>, grid, TC_THREADS, smem, out, lse, qkv, T, C, NH, sl2));
    }
    return GQ_OK;
}

/* the dK/dV kernel, then the dQ kernel (either form; qkv of type QT), each with its shared memory */
template <class QT>
static int tc_launch_backward(void (*kv)(QT *, const float *, const QT *, const float *, const float *, int, int, int,
                                         float, float),
                              size_t s_kv,
                              void (*q)(QT *, const float *, const QT *, const float *, const float *, int, int, int,
                                        float, float),
                              size_t s_q, int hs, QT *dqkv, const float *dout, const QT *qkv, const float *lse,
                              const float *Dv, int B, int T, int C, int NH) {
    typedef void (*tc_bwd_kernel)(QT *, const float *, const QT *, const float *, const float *, int, int, int, float,
                                  float);
    const dim3 grid(gq_cuda_blocks(T, TC_ROWS), B * NH);
    const tc_bwd_kernel k[2] = {kv, q};
    const size_t smem[2] = {s_kv, s_q};
    for (int i = 0; i < 2; i++) {
        GQ_CUDA_CHECK(cudaFuncSetAttribute(k[i], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem[i]));
        GQ_TRY(
            gq_launch(k[i], grid, TC_THREADS, smem[i], dqkv, dout, qkv, lse, Dv, T, C, NH, tc_scale(hs), tc_sl2(hs)));
    }
    return GQ_OK;
}

template <int HS, class QT>
static int tc_backward(QT *dqkv, const float *dout, const QT *qkv, const float *lse, const float *Dv, int B, int T,
                       int C, int NH) {
    typedef tc_dims<HS> D;
    if constexpr (HS <= 64) /* (instantiated only where the register kernels fit) */
        if (form() == GQ_TC_PIPE) { /* the output gradient as a bf16 copy (what every tile rounds it to) */
            void *d16 = NULL;
            GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_ATT_DY16, (size_t)B * T * C * 2, &d16));
            GQ_TRY(gq_cuda_to_bf16(d16, dout, (size_t)B * T * C));
            typedef tcb3_dims<HS> D3;
            const dim3 grid(gq_cuda_blocks(T, TC_ROWS), B * NH);
            GQ_CUDA_CHECK(cudaFuncSetAttribute(tc_dkdv3_kernel<HS, QT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)D3::DKDV));
            GQ_TRY(gq_launch(tc_dkdv3_kernel<HS, QT>, grid, TC_THREADS, D3::DKDV, dqkv, (const bf16 *)d16, qkv, lse, Dv,
                             T, C, NH, tc_scale(HS), tc_sl2(HS), tc_inner()));
            GQ_CUDA_CHECK(cudaFuncSetAttribute(tc_dq3_kernel<HS, QT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)D3::DQ));
            return gq_launch(tc_dq3_kernel<HS, QT>, grid, TC_THREADS, D3::DQ, dqkv, (const bf16 *)d16, qkv, lse, Dv, T,
                             C, NH, tc_scale(HS), tc_sl2(HS), tc_inner());
        }
    if constexpr (HS <= 64)
        if (mma_form())
            return tc_launch_backward<QT>(tc_dkdv2_kernel<HS, QT>, D::DKDV2, tc_dq2_kernel<HS, QT>, D::DQ2, HS, dqkv,
                                          dout, qkv, lse, Dv, B, T, C, NH);
    return tc_launch_backward<QT>(tc_dkdv_kernel<HS, QT>, D::DKDV, tc_dq_kernel<HS, QT>, D::DQ, HS, dqkv, dout, qkv,
                                  lse, Dv, B, T, C, NH);
}

extern "C" int gq_cuda_attention_tc_supported(int C, int NH) {
    return NH > 0 && C % NH == 0 && (C / NH) % 16 == 0 && C / NH <= 128;
}

static int tc_refuse(int C, int NH) {
    return gq_errf(GQ_EUNSUPPORTED, "tensor-core attention: head size %d x %d heads (head sizes 16..128 in steps of 16)",
                   NH > 0 ? C / NH : 0, NH);
}

#define TC_SIZES(X) X(16) X(32) X(48) X(64) X(80) X(96) X(112) X(128)

/* qkv and out: fp32 (OT float) or bf16 (the bf16 mode's operands) */
template <class OT> static int tc_forward_any(OT *out, float *lse, const OT *qkv, int B, int T, int C, int NH) {
    if (!gq_cuda_attention_tc_supported(C, NH)) return tc_refuse(C, NH);
    if (B <= 0 || T <= 0) return GQ_OK;
    switch (C / NH) {
#define TC_FWD(hs)                                                                                                     \
    case hs:                                                                                                           \
        return tc_forward<hs>(out, lse, qkv, B, T, C, NH);
        TC_SIZES(TC_FWD)
#undef TC_FWD
    }
    return tc_refuse(C, NH);
}

/* qkv, out and dqkv: fp32 (QT float) or bf16 (the bf16 mode's operands) */
template <class QT>
static int tc_backward_any(QT *dqkv, const float *dout, const QT *qkv, const QT *out, const float *lse, int B, int T,
                           int C, int NH) {
    if (!gq_cuda_attention_tc_supported(C, NH)) return tc_refuse(C, NH);
    if (B <= 0 || T <= 0) return GQ_OK;
    float *Dv = NULL;
    GQ_TRY(gq_cuda_attention_delta(&Dv, dout, out, sizeof(QT) == 2, B, T, C, NH));
    switch (C / NH) {
#define TC_BWD(hs)                                                                                                     \
    case hs:                                                                                                           \
        return tc_backward<hs>(dqkv, dout, qkv, lse, Dv, B, T, C, NH);
        TC_SIZES(TC_BWD)
#undef TC_BWD
    }
    return tc_refuse(C, NH);
}

extern "C" int gq_cuda_attention_forward_tc(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
    return tc_forward_any(out, lse, qkv, B, T, C, NH);
}

extern "C" int gq_cuda_attention_forward_tc16(void *out, float *lse, const void *qkv, int B, int T, int C, int NH) {
    return tc_forward_any((__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)qkv, B, T, C, NH);
}

extern "C" int gq_cuda_attention_backward_tc(float *dqkv, const float *dout, const float *qkv, const float *out,
                                             const float *lse, int B, int T, int C, int NH) {
    return tc_backward_any(dqkv, dout, qkv, out, lse, B, T, C, NH);
}

extern "C" int gq_cuda_attention_backward_tc16(void *dqkv, const float *dout, const void *qkv, const void *out,
                                               const float *lse, int B, int T, int C, int NH) {
    return tc_backward_any((__nv_bfloat16 *)dqkv, dout, (const __nv_bfloat16 *)qkv, (const __nv_bfloat16 *)out, lse, B,
                           T, C, NH);
}
