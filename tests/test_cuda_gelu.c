/* GELU (CUDA) against the CPU reference on odd sizes. Both evaluate act_math.h in fp32, but
 * tanhf differs between the CUDA math library and glibc by a few ulp, so the tolerance is
 * 1e-6 relative + 1e-7 absolute (forward) and 1e-5 absolute (backward). Exits 77 without a GPU. */
#include "cpu_ops.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"

#include <math.h>
#include <stdlib.h>

int main(void) {
    if (gq_cuda_device_count() <= 0) SKIP("no CUDA device");
    const size_t sizes[] = {1, 31, 1000, 65537, 3 * 1024 * 1024 + 7};
    gq_rng r;
    gq_rng_seed(&r, 3);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        float *x = malloc(n * 4), *dy = malloc(n * 4), *y_cpu = malloc(n * 4), *y_gpu = malloc(n * 4);
        float *dx_cpu = malloc(n * 4), *dx_gpu = malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            x[i] = (gq_rng_float(&r) - 0.5f) * 16.0f;
            dy[i] = gq_rng_float(&r) - 0.5f;
            dx_cpu[i] = 0.5f; /* both backwards overwrite it */
        }
        float *d_x, *d_y, *d_dy, *d_dx;
        CHECK_OK(gq_cuda_alloc((void **)&d_x, n * 4));
        CHECK_OK(gq_cuda_alloc((void **)&d_y, n * 4));
        CHECK_OK(gq_cuda_alloc((void **)&d_dy, n * 4));
        CHECK_OK(gq_cuda_alloc((void **)&d_dx, n * 4));
        CHECK_OK(gq_cuda_upload(d_x, x, n * 4));
        CHECK_OK(gq_cuda_upload(d_dy, dy, n * 4));
        CHECK_OK(gq_cuda_upload(d_dx, dx_cpu, n * 4));
        CHECK_OK(gq_cuda_gelu_forward(d_y, d_x, n));
        CHECK_OK(gq_cuda_gelu_backward(d_dx, d_x, d_dy, n));
        CHECK_OK(gq_cuda_download(y_gpu, d_y, n * 4));
        CHECK_OK(gq_cuda_download(dx_gpu, d_dx, n * 4));
        gq_cpu_gelu_forward(y_cpu, x, n);
        gq_cpu_gelu_backward(dx_cpu, x, dy, n);
        double max_fwd = 0, max_bwd = 0;
        for (size_t i = 0; i < n; i++) {
            max_fwd = fmax(max_fwd, fabs(y_gpu[i] - y_cpu[i]) / (0.1 + fabs(y_cpu[i])));
            max_bwd = fmax(max_bwd, fabs(dx_gpu[i] - dx_cpu[i]));
        }
        printf("n=%zu: forward max rel err %.3g, backward max abs err %.3g\n", n, max_fwd, max_bwd);
        CHECK(max_fwd < 1e-6);
        CHECK(max_bwd < 1e-5);
        gq_cuda_free(d_x), gq_cuda_free(d_y), gq_cuda_free(d_dy), gq_cuda_free(d_dx);
        free(x), free(dy), free(y_cpu), free(y_gpu), free(dx_cpu), free(dx_gpu);
    }
    return gq_test_finish("test_cuda_gelu");
}
