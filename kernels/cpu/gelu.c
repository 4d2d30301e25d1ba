/* gelu (CPU): forward and backward of the tanh-form GELU over a flat array. */
#include "cpu_ops.h"

#include "act_math.h"

int gq_cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = gq_gelu(inp[i]);
    return 0;
}

int gq_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dinp[i] = gq_gelu_grad(inp[i]) * dout[i];
    return 0;
}

int gq_cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return 0;
}
