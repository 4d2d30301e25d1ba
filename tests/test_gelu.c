/* GELU (CPU): forward against the formula in double, backward against central finite
 * differences of the forward in double. Tolerances: forward 1e-6 relative + 1e-7 absolute
 * (float rounding of tanhf); backward 1e-4 absolute on d/dx of order 1. */
#include "cpu_ops.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"

#include <math.h>

static double gelu_d(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x))); }

int main(void) {
    enum { n = 4099 };
    static float x[n], y[n], dy[n], dx[n];
    gq_rng r;
    gq_rng_seed(&r, 1);
    for (int i = 0; i < n; i++) {
        x[i] = (gq_rng_float(&r) - 0.5f) * 12.0f;
        dy[i] = gq_rng_float(&r) - 0.5f;
        dx[i] = 0.25f; /* overwritten by the backward */
    }
    gq_cpu_gelu_forward(y, x, n);
    double max_fwd = 0, max_bwd = 0;
    for (int i = 0; i < n; i++) {
        double err = fabs(y[i] - gelu_d(x[i])) / (0.1 + fabs(gelu_d(x[i]))); /* relative, floored at 0.1 */
        max_fwd = fmax(max_fwd, err);
    }
    gq_cpu_gelu_backward(dx, x, dy, n);
    for (int i = 0; i < n; i++) {
        double h = 1e-4, xi = x[i];
        double fd = (gelu_d(xi + h) - gelu_d(xi - h)) / (2 * h);
        max_bwd = fmax(max_bwd, fabs(dx[i] - fd * dy[i]));
    }
    printf("gelu: max forward rel err %.3g, max backward abs err %.3g\n", max_fwd, max_bwd);
    CHECK(max_fwd < 1e-6);
    CHECK(max_bwd < 1e-4);
    return gq_test_finish("test_gelu");
}
