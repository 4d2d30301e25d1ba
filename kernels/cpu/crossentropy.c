/* crossentropy (CPU): fused softmax + cross-entropy over the real vocabulary; the backward
 * recomputes the softmax from the saved log-sum-exp and overwrites the logits in place. The
 * trainer's step takes both row by row (forward_backward): the row's second pass then reads it
 * from the cache, not from memory; the same arithmetic, so the same bits as the two ops. */
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

/* row n of the backward: (softmax - onehot) * dloss in place, padding and ignored rows 0 */
static void backward_row(const gq_simd_ops *simd, float *x, float lse, int32_t target, float dloss, int V, int Vp) {
    if (target < 0) {
        memset(x, 0, (size_t)Vp * sizeof *x);
        return;
    }
    simd->exp_scale(x, V, lse, dloss);
    x[target] -= dloss;
    for (int i = V; i < Vp; i++) x[i] = 0.0f;
}

int gq_cpu_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss, int N, int V,
                                 int Vp) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) backward_row(simd, logits + (size_t)n * Vp, lse[n], targets[n], dloss, V, Vp);
    return 0;
}

int gq_cpu_crossentropy_forward_backward(float *losses, float *lse, float *logits, const int32_t *targets, float dloss,
                                         int N, int V, int Vp) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * Vp;
        const float l = simd->logsumexp(x, V);
        lse[n] = l;
        losses[n] = targets[n] < 0 ? 0.0f : l - x[targets[n]];
        backward_row(simd, x, l, targets[n], dloss, V, Vp);
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
