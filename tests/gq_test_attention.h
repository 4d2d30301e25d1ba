/* gq_test_attention: how the tensor-core flash attention is judged against the fp32 CPU op,
 * shared by test_cuda_ops (on the GPU) and test_attention_tc_emu (its kernels on the CPU
 * through cuda_emu.h). C and C++.
 *
 * Bounds: max error / max |reference| <= 1e-2 for the output and 2e-2 for each of dq, dk, dv
 * (a numpy model of the kernels' arithmetic, bf16 q, k, v, dO, P, dS and fp32 / fp64 elsewhere,
 * gives 1.9e-3..2.2e-3 and 1.9e-3..5.3e-3 on the shapes tested); the log-sum-exp within 2e-2
 * of a double one (it is about log t). A non-finite value (an unwritten, NaN-poisoned element)
 * fails. */
#ifndef GQ_TEST_ATTENTION_H
#define GQ_TEST_ATTENTION_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* max |got - ref| / max |ref| over part `part` (0: q, 1: k, 2: v) of rows of width x parts
 * floats (parts = 1: all of them); infinity if a value is not finite */
static double gq_attn_norm_err(const float *got, const float *ref, size_t rows, int width, int parts, int part) {
    double e = 0, r = 0;
    for (size_t i = 0; i < rows; i++)
        for (int d = 0; d < width; d++) {
            size_t at = i * (size_t)width * parts + (size_t)part * width + d;
            if (!isfinite(got[at])) return INFINITY;
            e = fmax(e, fabs((double)got[at] - ref[at])), r = fmax(r, fabs((double)ref[at]));
        }
    return r > 0 ? e / r : e;
}

/* max |lse - log sum_u<=t exp(scale q_t . k_u)| in double over (B, NH, T) */
static double gq_attn_lse_err(const float *lse, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const double scale = 1.0 / sqrt((double)hs);
    double e = 0, *sc = (double *)malloc((size_t)T * sizeof *sc);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) {
                    const float *k = qkv + ((size_t)b * T + u) * 3 * C + C + h * hs;
                    double d = 0;
                    for (int i = 0; i < hs; i++) d += (double)q[i] * k[i];
                    sc[u] = d * scale, mx = fmax(mx, sc[u]);
                }
                for (int u = 0; u <= t; u++) sum += exp(sc[u] - mx);
                const float g = lse[((size_t)b * NH + h) * T + t];
                e = isfinite(g) ? fmax(e, fabs(g - (mx + log(sum)))) : INFINITY;
            }
    free(sc);
    return e;
}

/* One shape's verdict, printed as a line: out (B,T,C), lse (B,NH,T), dqkv (B,T,3C) against the
 * CPU op's out_ref and dqkv_ref for the inputs qkv. Returns 1 within the bounds. */
static int gq_attn_tc_verdict(const char *who, const float *out, const float *lse, const float *dqkv,
                              const float *out_ref, const float *dqkv_ref, const float *qkv, int B, int T, int C,
                              int NH) {
    const size_t rows = (size_t)B * T;
    const double e_out = gq_attn_norm_err(out, out_ref, rows, C, 1, 0), e_lse = gq_attn_lse_err(lse, qkv, B, T, C, NH);
    const double e_dq = gq_attn_norm_err(dqkv, dqkv_ref, rows, C, 3, 0);
    const double e_dk = gq_attn_norm_err(dqkv, dqkv_ref, rows, C, 3, 1);
    const double e_dv = gq_attn_norm_err(dqkv, dqkv_ref, rows, C, 3, 2);
    const int ok = e_out <= 1e-2 && e_lse <= 2e-2 && e_dq <= 2e-2 && e_dk <= 2e-2 && e_dv <= 2e-2;
    printf("  %s B=%d T=%-4d hs=%-3d out %.2e lse %.2e dq %.2e dk %.2e dv %.2e%s\n", who, B, T, C / NH, e_out, e_lse,
           e_dq, e_dk, e_dv, ok ? "" : "  <-- FAIL");
    return ok;
}

#endif
