/* test_attention_tc_emu: the tensor-core flash attention's kernels (kernels/cuda/attention_tc.cuh,
 * the source nvcc builds for the GPU: the mma.sync and the WMMA kernels) run on
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

/* the forward and backward as attention_tc.cu launches them: the register (mma.sync) kernels,
 * with WMMA's backward for head sizes over 64, or (wmma) the WMMA kernels; D = dO . O per head
 * row computed here as gq_cuda_attention_delta does */
template <int HS>
static void run(int wmma, int B, int T, int NH, const float *x, const float *g, float *o, float *l, float *dq) {
    typedef tc_dims<HS> D;
    const int C = HS * NH;
    const dim3 grid((T + TC_ROWS - 1) / TC_ROWS, B * NH), block(TC_THREADS);
    const float scale = tc_scale(HS), sl2 = tc_sl2(HS);
    if (wmma)
        gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::FORWARD,
                       [&] { tc_forward_kernel<HS>(o, l, x, T, C, NH, sl2); });
    else
        gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::FORWARD2,
                       [&] { tc_forward2_kernel<HS>(o, l, x, T, C, NH, sl2); });
    std::vector<float> Dv((size_t)B * NH * T);
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
    if constexpr (HS <= 64) {
        if (!wmma) {
            gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DKDV2,
                           [&] { tc_dkdv2_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
            gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DQ2,
                           [&] { tc_dq2_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
            return;
        }
    }
    gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DKDV,
                   [&] { tc_dkdv_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
    gq_emu::launch(grid, block, tc_smem, sizeof tc_smem, D::DQ,
                   [&] { tc_dq_kernel<HS>(dq, g, x, l, dv, T, C, NH, scale, sl2); });
}

template <int HS> static void check(int B, int T, int NH) {
    const int C = HS * NH;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    std::vector<float> qkv = rnd(nqkv), dy = rnd(nout), out_ref(nout), att(natt), scr(natt), dqkv_ref(nqkv);
    const gq_backend *cpu = gq_backend_cpu();
    cpu->attention_forward(out_ref.data(), att.data(), qkv.data(), B, T, C, NH);
    cpu->attention_backward(dqkv_ref.data(), scr.data(), dy.data(), qkv.data(), out_ref.data(), att.data(), B, T, C, NH);
    /* runs: the default kernels twice (the same bits again: no order depends on timing), WMMA's */
    std::vector<float> out[3], lse[3], dqkv[3];
    for (int k = 0; k < 3; k++) {
        out[k].assign(nout, NAN), lse[k].assign((size_t)B * NH * T, NAN), dqkv[k].assign(nqkv, NAN);
        run<HS>(k == 2, B, T, NH, qkv.data(), dy.data(), out[k].data(), lse[k].data(), dqkv[k].data());
        if (k == 1) continue;
        CHECKF(gq_attn_tc_verdict(k ? "emulated tc (WMMA)" : "emulated tc", out[k].data(), lse[k].data(),
                                  dqkv[k].data(), out_ref.data(), dqkv_ref.data(), qkv.data(), B, T, C, NH),
               "%s kernels, B=%d T=%d hs=%d NH=%d beyond the bounds", k ? "WMMA" : "default", B, T, HS, NH);
    }
    CHECK(out[0] == out[1] && dqkv[0] == dqkv[1]);
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
