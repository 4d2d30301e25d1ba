/* gelu (CPU): forward and backward of the tanh-form GELU over a flat array. */
#include "cpu_ops.h"

#include "simd.h"

enum { BLOCK = 16384 }; /* elements per OpenMP task */

int gq_cpu_gelu_forward(float *out, const float *inp, size_t n) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static) if (n > 4 * BLOCK)
    for (size_t i = 0; i < n; i += BLOCK) simd->gelu_forward(out + i, inp + i, n - i < BLOCK ? n - i : BLOCK);
    return 0;
}

int gq_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const gq_simd_ops *simd = gq_simd();
#pragma omp parallel for schedule(static) if (n > 4 * BLOCK)
    for (size_t i = 0; i < n; i += BLOCK)
        simd->gelu_backward(dinp + i, inp + i, dout + i, n - i < BLOCK ? n - i : BLOCK);
    return 0;
}

int gq_cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return 0;
}
