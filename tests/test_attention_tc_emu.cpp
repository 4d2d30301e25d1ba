/* test_attention_tc_emu: the tensor-core flash attention's kernels (kernels/cuda/attention_tc.cuh,
 * the source nvcc builds for the GPU: both forwards, mma.sync and WMMA, and the backward) run on
 * the CPU through cuda_emu.h, against the fp32 CPU attention op, with the bounds the GPU test
 * uses (gq_test_attention.h). It checks the kernels'
 * logic where there is no GPU: tile loops, causal masking, the online softmax, the recomputed
 * backward, shared-memory carving (NaN-poisoned, guarded) and WMMA's alignment rules, for every
 * head size the kernels are built for (16..128 in steps of 16) and partial tiles. What it cannot
 * check (timing, bank conflicts, the hardware's own WMMA and bf16 units) is test_cuda_ops' job
 * on a GPU. The launch geometry below is attention_tc.cu's. */
#include "cuda_emu.h"

/* the kernels' dynamic shared memory (extern __shared__ tc_smem[] in the kernels) */
__attribute__((aligned(128))) unsigned char tc_smem[200 * 1024];

#include "attention_tc.cuh"

extern "C" {
#include "backend.h"
#include "gq_error.h"
#include "gq_rng.h"
}
#include "gq_test.h"
#include "gq_test_attention.h"

static gq_rng R;

static std::vector<float> rnd(size_t n) {
    std::vector<float> x(n);
    for (float &v : x) v = -1.0f + 2.0f * gq_rng_float(&R);
    return x;
}

template <int HS> static void check(int B, int T, int NH) {
    typedef tc_dims<HS> D;
    const int C = HS * NH;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    std::vector<float> qkv = rnd(nqkv), dy = rnd(nout), out_ref(nout), att(natt), scr(natt), dqkv_ref(nqkv);
    const gq_backend *cpu = gq_backend_cpu();
    cpu->attention_forward(out_ref.data(), att.data(), qkv.data(), B, T, C, NH);
    cpu->attention_backward(dqkv_ref.data(), scr.data(), dy.data(), qkv.data(), out_ref.data(), att.data(), B, T, C, NH);

    std::vector<float> out[2], lse[2], dqkv[2];
    for (int run = 0; run < 2; run++) {
        out[run].assign(nout, NAN), lse[run].assign((size_t)B * NH * T, NAN), dqkv[run].assign(nqkv, NAN);
        float *o = out[run].data(), *l = lse[run].data(), *dq = dqkv[run].data();
        const float *x = qkv.data(), *g = dy.data();
        const dim3 grid((T + TC_ROWS - 1) / TC_ROWS, B * NH), block(TC_THREADS);
        const float scale = tc_scale(HS), sl2 = tc_sl2(HS);
        gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::FORWARD2,
                       [&] { tc_forward2_kernel<HS>(o, l, x, T, C, NH, sl2); });
        std::vector<float> Dv((size_t)B * NH * T); /* dO . O per head row, as gq_cuda_attention_delta */
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    float s = 0.0f;
                    for (int d = 0; d < HS; d++) {
                        const size_t at = ((size_t)b * T + t) * C + h * HS + d;
                        s += g[at] * o[at];
                    }
                    Dv[((size_t)b * NH + h) * T + t] = s;
                }
        const float *dv = Dv.data();
        gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DKDV,
                       [&] { tc_dkdv_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
        gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DQ,
                       [&] { tc_dq_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
    }
    CHECKF(gq_attn_tc_verdict("emulated tc", out[0].data(), lse[0].data(), dqkv[0].data(), out_ref.data(),
                              dqkv_ref.data(), qkv.data(), B, T, C, NH),
           "B=%d T=%d hs=%d NH=%d beyond the bounds", B, T, HS, NH);
    CHECK(out[0] == out[1] && dqkv[0] == dqkv[1]); /* the same bits again (no order depends on timing) */
    { /* the forward's WMMA form (GQ_CUDA_TC_FWD=wmma), with the same bounds */
        std::vector<float> o(nout, NAN), l((size_t)B * NH * T, NAN);
        float *op = o.data(), *lp = l.data();
        const float *x = qkv.data(), sl2 = tc_sl2(HS);
        gq_emu::launch(dim3((T + TC_ROWS - 1) / TC_ROWS, B * NH), dim3(TC_THREADS), tc_smem, sizeof tc_smem, D::FORWARD,
                       [&] { tc_forward_kernel<HS>(op, lp, x, T, C, NH, sl2); });
        const double e_out = gq_attn_norm_err(op, out_ref.data(), (size_t)B * T, C, 1, 0);
        const double e_lse = gq_attn_lse_err(lp, x, B, T, C, NH);
        printf("  emulated tc (WMMA forward) B=%d T=%-4d hs=%-3d out %.2e lse %.2e%s\n", B, T, HS, e_out, e_lse,
               e_out <= 1e-2 && e_lse <= 2e-2 ? "" : "  <-- FAIL");
        CHECK(e_out <= 1e-2 && e_lse <= 2e-2);
    }
    CHECKF(gq_emu::violations == 0, "%d violations of CUDA's rules", gq_emu::violations);
}

int main(void) {
    gq_rng_seed(&R, 20261128);
    /* every head size the kernels are built for; T: one partial tile, one whole, several with
     * a partial last one, a last tile of one row */
    check<16>(2, 7, 3);
    check<32>(2, 33, 2);
    check<48>(3, 130, 2);
    check<64>(1, 64, 2);
    check<64>(2, 150, 2);
    check<80>(1, 65, 2);
    check<96>(1, 40, 1);
    check<112>(1, 20, 1);
    check<128>(2, 100, 1);
    return gq_test_finish("test_attention_tc_emu");
}
