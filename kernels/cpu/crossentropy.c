/* crossentropy (CPU): fused softmax + cross-entropy over the real vocabulary; the backward
 * recomputes the softmax from the saved log-sum-exp and overwrites the logits in place. */
#include "act_math.h"
#include "cpu_ops.h"
#include "simd.h"

#include <string.h>

int gq_cpu_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                                int Vp) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * Vp;
        float l = simd->logsumexp(x, V);
        lse[n] = l;
        losses[n] = targets[n] < 0 ? 0.0f : l - x[targets[n]];
    }
    return 0;
}

int gq_cpu_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss, int N, int V,
                                 int Vp) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * Vp;
        if (targets[n] < 0) {
            memset(x, 0, (size_t)Vp * sizeof *x);
            continue;
        }
        simd->exp_scale(x, V, lse[n], dloss);
        x[targets[n]] -= dloss;
        for (int i = V; i < Vp; i++) x[i] = 0.0f;
    }
    return 0;
}

int gq_cpu_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits, const float *tlse,
                                         const int32_t *targets, float w, float dloss, int N, int V, int Vp) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * Vp;
        const float *t = tlogits + (size_t)n * Vp;
        if (targets[n] < 0) {
            memset(x, 0, (size_t)Vp * sizeof *x);
            continue;
        }
        const float ls = lse[n], lt = tlse[n], soft = w * dloss, hard = (1.0f - w) * dloss;
        simd->distill_grad(x, t, V, ls, lt, dloss, soft);
        x[targets[n]] -= hard;
        for (int i = V; i < Vp; i++) x[i] = 0.0f;
    }
    return 0;
}
