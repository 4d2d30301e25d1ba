/* attention (CPU): causal multi-head self-attention, one (batch, head) pair per OpenMP task,
 * its four products through sgemm (OpenBLAS runs single-threaded inside a parallel region). */
#include "act_math.h"
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>

void gq_cpu_softmax_causal_row(float *row, int t, int n) {
    float mx = row[0];
    for (int u = 1; u <= t; u++) mx = row[u] > mx ? row[u] : mx;
    float sum = 0.0f;
    for (int u = 0; u <= t; u++) {
        row[u] = gq_exp(row[u] - mx);
        sum += row[u];
    }
    float inv = 1.0f / sum;
    for (int u = 0; u <= t; u++) row[u] *= inv;
    for (int u = t + 1; u < n; u++) row[u] = 0.0f;
}

int gq_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            /* a = scale * q k^T, then a causal softmax per row */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, 0.0f, a, T);
            for (int t = 0; t < T; t++) gq_cpu_softmax_causal_row(a + (size_t)t * T, t, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, v, C3, 0.0f,
                        out + (size_t)b * T * C + h * hs, C);
        }
    return 0;
}

void gq_cpu_attention_floats(int B, int T, int C, int NH, size_t *saved, size_t *scratch) {
    (void)C;
    *saved = *scratch = (size_t)B * NH * T * T;
}

int gq_cpu_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *out,
                              const float *att, int B, int T, int C, int NH) {
    (void)out; /* the saved softmax is enough */
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t qoff = (size_t)b * T * C3 + h * hs;
            const float *q = qkv + qoff, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + qoff, *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((size_t)b * NH + h) * T * T;
            const float *dy = dout + (size_t)b * T * C + h * hs;
            float *da = scratch + ((size_t)b * NH + h) * T * T;
            /* da = dy v^T ; dv = a^T dy */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, C, v, C3, 0.0f, da, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, dy, C, 0.0f, dv, C3);
            /* softmax backward, in place: da <- a * (da - sum(a * da)) on the causal part */
            for (int t = 0; t < T; t++) {
                const float *ar = a + (size_t)t * T;
                float *dr = da + (size_t)t * T;
                float dot = 0.0f;
                for (int u = 0; u <= t; u++) dot += ar[u] * dr[u];
                for (int u = 0; u <= t; u++) dr[u] = ar[u] * (dr[u] - dot);
                for (int u = t + 1; u < T; u++) dr[u] = 0.0f;
            }
            /* dq = scale * da k ; dk = scale * da^T q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, da, T, k, C3, 0.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, da, T, q, C3, 0.0f, dk, C3);
        }
    return 0;
}
