/* adamw (CPU): the optimizer update and the squared norm used for global-norm clipping. */
#include "cpu_ops.h"
#include "simd.h"

#include <math.h>
#include <omp.h>

int gq_cpu_sum_squares(double *out, const float *g, size_t n) {
    /* each thread sums one contiguous range; partials are added in thread order, so the bits
     * depend only on the thread count */
    const gq_simd_ops *simd = gq_simd();
    enum { MAX_THREADS = 256 };
    double partial[MAX_THREADS] = {0};
    int used = 1;
#pragma omp parallel num_threads(omp_get_max_threads() < MAX_THREADS ? omp_get_max_threads() : MAX_THREADS) if (n > 65536)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        size_t lo = n * (size_t)id / (size_t)nt, hi = n * (size_t)(id + 1) / (size_t)nt;
        partial[id] = simd->sum_squares(g + lo, hi - lo);
        if (id == 0) used = nt;
    }
    double total = 0.0;
    for (int i = 0; i < used; i++) total += partial[i];
    *out = total;
    return 0;
}

int gq_cpu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                        float eps, float weight_decay, int t, float grad_scale) {
    const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    const float step = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
    const gq_simd_ops *simd = gq_simd();
    enum { BLOCK = 16384 };
#pragma omp parallel for schedule(static) if (n > 4 * BLOCK)
    for (size_t i = 0; i < n; i += BLOCK)
        simd->adamw(p + i, g + i, m + i, v + i, n - i < BLOCK ? n - i : BLOCK, beta1, beta2, eps, step, bc2_sqrt, decay,
                    grad_scale);
    return 0;
}
