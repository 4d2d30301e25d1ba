/* test_attention_tc_emu: the tensor-core flash attention's kernels (kernels/cuda/attention_tc.cuh,
 * the source nvcc builds for the GPU: the mma.sync and the WMMA kernels) run on
 * the CPU through cuda_emu.h, against the fp32 CPU attention op, with the bounds the GPU test
 * uses (gq_test_attention.h). It checks the kernels'
 * logic where there is no GPU: tile loops, causal masking, the online softmax, the recomputed
 * backward, shared-memory carving (NaN-poisoned, guarded) and WMMA's alignment rules, for every
 * head size the kernels are built for (16..128 in steps of 16) and partial tiles. What it cannot
 * check (timing, bank conflicts, the hardware's own WMMA and bf16 units) is test_cuda_ops' job
 * on a GPU. The launch geometry below is attention_tc.cu's. */
/* test_attention_tc_emu: the tensor-core flash attention (kernels/cuda/attention_tc.cu, the
 * source nvcc builds for the GPU: the mma.sync and the WMMA kernels, their launches and the
 * D = dO . O kernel) run on the CPU through cuda_emu.h (the gq_kernels_emu library), against the
 * fp32 CPU attention op, with the bounds the GPU test uses (gq_test_attention.h). It checks the
 * kernels' logic where there is no GPU: tile loops, causal masking, the online softmax, the
 * recomputed backward, shared-memory carving (NaN-poisoned, guarded) and WMMA's alignment rules,
 * for every head size the kernels are built for (16..128 in steps of 16) and partial tiles. What
 * it cannot check (timing, bank conflicts, the hardware's own WMMA and bf16 units) is
 * test_cuda_ops' job on a GPU. */
#include "backend.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_attention.h"

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
    /* runs: the default kernels twice (the same bits again: no order depends on timing), WMMA's */
    float *out[3], *lse[3], *dqkv[3];
    for (int k = 0; k < 3; k++) {
        out[k] = nans(nout), lse[k] = nans(nlse), dqkv[k] = nans(nqkv);
        gq_cuda_set_attention_tc_wmma(k == 2);
        CHECK_OK(gq_cuda_attention_forward_tc(out[k], lse[k], qkv, B, T, C, NH));
        CHECK_OK(gq_cuda_attention_backward_tc(dqkv[k], dy, qkv, out[k], lse[k], B, T, C, NH));
        if (k == 1) continue;
        CHECKF(gq_attn_tc_verdict(k ? "emulated tc (WMMA)" : "emulated tc", out[k], lse[k], dqkv[k], out_ref, dqkv_ref,
                                  qkv, B, T, C, NH),
               "%s kernels, B=%d T=%d hs=%d NH=%d beyond the bounds", k ? "WMMA" : "default", B, T, HS, NH);
    }
    CHECK(!memcmp(out[0], out[1], nout * 4) && !memcmp(dqkv[0], dqkv[1], nqkv * 4));
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
