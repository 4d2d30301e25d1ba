/* test_attention_tc_emu: the tensor-core flash attention (kernels/cuda/attention_tc.cu, the
 * source nvcc builds for the GPU: the mma.sync and the WMMA kernels, their launches and the
 * D = dO . O kernel) run on the CPU through cuda_emu.h (the gq_kernels_emu library), against the
 * fp32 CPU attention op, with the bounds the GPU test uses (gq_test_attention.h). It checks the
 * kernels' logic where there is no GPU: tile loops, causal masking, the online softmax, the
 * recomputed backward, shared-memory carving (NaN-poisoned, guarded) and WMMA's alignment rules,
 * for every head size the kernels are built for (16..128 in steps of 16) and partial tiles. What
 * it cannot check (timing, bank conflicts, the hardware's own WMMA and bf16 units) is
 * test_cuda_ops' job on a GPU. The tiles load 16 bytes at a time where a head's rows allow it and
 * one element at a time elsewhere; both ways, from fp32 and from bf16 (the bf16 mode's qkv), give
 * the same bits. */
#include "backend.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_attention.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static gq_rng R;

static float *rnd(size_t n) {
    float *x = (float *)malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = -1.0f + 2.0f * gq_rng_float(&R);
    return x;
}

static float *nans(size_t n) {
    float *x = (float *)malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
    return x;
}

static void check(int HS, int B, int T, int NH) {
    const int C = HS * NH;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    const size_t nlse = (size_t)B * NH * T;
    float *qkv = rnd(nqkv), *dy = rnd(nout), *out_ref = nans(nout), *att = nans(natt), *scr = nans(natt);
    float *dqkv_ref = nans(nqkv);
    const gq_backend *cpu = gq_backend_cpu();
    cpu->attention_forward(out_ref, att, qkv, B, T, C, NH);
    cpu->attention_backward(dqkv_ref, scr, dy, qkv, out_ref, att, B, T, C, NH);
    /* runs: the pipelined kernels (the default) twice (the same bits again: no order depends on
     * timing), WMMA's; below, session 8's mma.sync kernels give the pipelined ones' bits */
    float *out[3], *lse[3], *dqkv[3];
    for (int k = 0; k < 3; k++) {
        out[k] = nans(nout), lse[k] = nans(nlse), dqkv[k] = nans(nqkv);
        gq_cuda_set_attention_tc_form(k == 2 ? GQ_TC_WMMA : GQ_TC_PIPE);
        CHECK_OK(gq_cuda_attention_forward_tc(out[k], lse[k], qkv, B, T, C, NH));
        CHECK_OK(gq_cuda_attention_backward_tc(dqkv[k], dy, qkv, out[k], lse[k], B, T, C, NH));
        if (k == 1) continue;
        CHECKF(gq_attn_tc_verdict(k ? "emulated tc (WMMA)" : "emulated tc", out[k], lse[k], dqkv[k], out_ref, dqkv_ref,
                                  qkv, B, T, C, NH),
               "%s kernels, B=%d T=%d hs=%d NH=%d beyond the bounds", k ? "WMMA" : "default", B, T, HS, NH);
    }
    CHECK(!memcmp(out[0], out[1], nout * 4) && !memcmp(dqkv[0], dqkv[1], nqkv * 4));
    /* session 19's pipelined forward (the default, up to head size 64) against session 8's
     * register kernel (GQ_CUDA_TC=mma): the same bits, from fp32 here and from bf16 below */
    float *o2 = nans(nout), *l2 = nans(nlse);
    gq_cuda_set_attention_tc_form(GQ_TC_MMA);
    CHECK_OK(gq_cuda_attention_forward_tc(o2, l2, qkv, B, T, C, NH));
    CHECKF(!memcmp(o2, out[0], nout * 4) && !memcmp(l2, lse[0], nlse * 4),
           "hs=%d T=%d: the pipelined forward's bits differ from tc_forward2's", HS, T);
    /* and the pipelined backward (tc_dkdv3 / tc_dq3) against tc_dkdv2 / tc_dq2 */
    float *d2 = nans(nqkv);
    CHECK_OK(gq_cuda_attention_backward_tc(d2, dy, qkv, out[0], lse[0], B, T, C, NH));
    CHECKF(!memcmp(d2, dqkv[0], nqkv * 4), "hs=%d T=%d: the pipelined backward's bits differ from tc_dkdv2 / tc_dq2's", HS, T);
    free(d2);
    /* the element-wise loads: qkv and dy one float off 16-byte alignment, the same bits */
    float *qkv1 = nans(nqkv + 1), *dy1 = nans(nout + 1), *o1 = nans(nout), *l1 = nans(nlse), *d1 = nans(nqkv);
    memcpy(qkv1 + 1, qkv, nqkv * 4), memcpy(dy1 + 1, dy, nout * 4);
    gq_cuda_set_attention_tc_form(GQ_TC_PIPE);
    CHECK_OK(gq_cuda_attention_forward_tc(o1, l1, qkv1 + 1, B, T, C, NH));
    CHECK_OK(gq_cuda_attention_backward_tc(d1, dy1 + 1, qkv1 + 1, o1, l1, B, T, C, NH));
    CHECKF(!memcmp(o1, out[0], nout * 4) && !memcmp(d1, dqkv[0], nqkv * 4),
           "hs=%d T=%d: element-wise loads give other bits than 16-byte loads", HS, T);
    /* from a bf16 qkv (the bf16 mode's form, bf16 output), aligned and one element off: the
     * fp32 path's output rounded, and the same gradients both ways */
    uint16_t *q16 = (uint16_t *)malloc((nqkv + 1) * 2), *o16 = (uint16_t *)malloc(nout * 2);
    uint16_t *o16b = (uint16_t *)malloc(nout * 2);
    for (size_t i = 0; i < nqkv; i++) q16[i] = q16[i + 1] = 0;
    for (size_t i = nqkv; i-- > 0;) q16[i] = gq_f32_to_bf16(qkv[i]);
    uint16_t *d16 = (uint16_t *)malloc(nqkv * 2), *d16b = (uint16_t *)malloc(nqkv * 2); /* dqkv in bf16 too */
    memset(d16, 0xff, nqkv * 2), memset(d16b, 0xff, nqkv * 2);
    CHECK_OK(gq_cuda_attention_forward_tc16(o16, l1, q16, B, T, C, NH));
    CHECK_OK(gq_cuda_attention_backward_tc16(d16, dy, q16, o16, l1, B, T, C, NH));
    size_t off = 0;
    for (size_t i = 0; i < nout; i++) off += o16[i] != gq_f32_to_bf16(out[0][i]);
    gq_cuda_set_attention_tc_form(GQ_TC_MMA);
    CHECK_OK(gq_cuda_attention_forward_tc16(o16b, l2, q16, B, T, C, NH));
    CHECKF(!memcmp(o16, o16b, nout * 2), "hs=%d T=%d: bf16 qkv: the pipelined forward's bits differ from tc_forward2's", HS, T);
    CHECK_OK(gq_cuda_attention_backward_tc16(d16b, dy, q16, o16, l1, B, T, C, NH));
    CHECKF(!memcmp(d16, d16b, nqkv * 2), "hs=%d T=%d: bf16 qkv: the pipelined backward's bits differ from tc_dkdv2 / tc_dq2's",
           HS, T);
    gq_cuda_set_attention_tc_form(GQ_TC_PIPE);
    memmove(q16 + 1, q16, nqkv * 2);
    CHECK_OK(gq_cuda_attention_forward_tc16(o16b, l1, q16 + 1, B, T, C, NH));
    CHECK_OK(gq_cuda_attention_backward_tc16(d16b, dy, q16 + 1, o16b, l1, B, T, C, NH));
    float *d16f = nans(nqkv);
    for (size_t i = 0; i < nqkv; i++) d16f[i] = gq_bf16_to_f32(d16[i]);
    const double e16 = gq_attn_norm_err(d16f, dqkv_ref, (size_t)B * T, 3 * C, 1, 0);
    free(d16f);
    CHECKF(off == 0 && !memcmp(o16, o16b, nout * 2) && !memcmp(d16, d16b, nqkv * 2) && e16 <= 2e-2,
           "hs=%d T=%d: bf16 qkv: %zu outputs differ from the fp32 path's rounded, dqkv %.3g", HS, T, off, e16);
    free(qkv1), free(dy1), free(o1), free(l1), free(d1), free(q16), free(o16), free(o16b), free(d16), free(d16b);
    free(o2), free(l2);
    for (int k = 0; k < 3; k++)
        free(out[k]), free(lse[k]), free(dqkv[k]);
    free(qkv), free(dy), free(out_ref), free(att), free(scr), free(dqkv_ref);
}

int main(void) {
    gq_rng_seed(&R, 20261128);
    /* every head size the kernels are built for; T: one partial tile, one whole, several with
     * a partial last one, a last tile of one row */
    check(16, 2, 7, 3);
    check(32, 2, 33, 2);
    check(48, 3, 130, 2);
    check(64, 1, 64, 2);
    check(64, 2, 150, 2);
    check(80, 1, 65, 2);
    check(96, 1, 40, 1);
    check(112, 1, 20, 1);
    check(128, 2, 100, 1);
    /* a head size the kernels are not built for: refused, one error */
    CHECK(!gq_cuda_attention_tc_supported(18 * 2, 2));
    return gq_test_finish("test_attention_tc_emu");
}
