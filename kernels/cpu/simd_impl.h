/* simd_impl: the body of every SIMD variant (included by simd_<variant>.c with
 * GQ_SIMD_NAME set). Plain loops written so that the compiler vectorizes them for the
 * target of that file: fixed-width lane accumulators instead of reductions (whose order
 * would otherwise be unspecified), branch-free math from act_math.h. */
#include "act_math.h"
#include "optim_math.h"
#include "simd.h"

#define GQ_CAT2(a, b) a##_##b
#define GQ_CAT(a, b) GQ_CAT2(a, b)
#define FN(name) GQ_CAT(name, GQ_SIMD_NAME)

enum { LANES = 16 };

static float FN(logsumexp)(const float *x, int n) {
    float mx[LANES], acc[LANES];
    for (int l = 0; l < LANES; l++) mx[l] = -3.0e38f, acc[l] = 0.0f;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) mx[l] = x[i + l] > mx[l] ? x[i + l] : mx[l];
    float m = -3.0e38f;
    for (int l = 0; l < LANES; l++) m = mx[l] > m ? mx[l] : m;
    for (int k = i; k < n; k++) m = x[k] > m ? x[k] : m;
    for (i = 0; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += gq_exp(x[i + l] - m);
    float s = 0.0f;
    for (int k = i; k < n; k++) s += gq_exp(x[k] - m);
    for (int l = 0; l < LANES; l++) s += acc[l];
    /* log(s) for s in [1, n]: exact enough through the double library log */
    return m + (float)__builtin_log((double)s);
}

static void FN(exp_scale)(float *x, int n, float shift, float scale) {
    for (int i = 0; i < n; i++) x[i] = gq_exp(x[i] - shift) * scale;
}

static void FN(distill_grad)(float *x, const float *t, int n, float ls, float lt, float scale, float soft) {
    for (int i = 0; i < n; i++) x[i] = gq_exp(x[i] - ls) * scale - gq_exp(t[i] - lt) * soft;
}

static void FN(gelu_forward)(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = gq_gelu(inp[i]);
}

static void FN(gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] = gq_gelu_grad(inp[i]) * dout[i];
}

static void FN(adamw)(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2, float eps,
                      float step, float bc2_sqrt, float decay, float grad_scale) {
    for (size_t i = 0; i < n; i++)
        gq_adamw_elem(&p[i], &m[i], &v[i], g[i], beta1, beta2, eps, step, bc2_sqrt, decay, grad_scale);
}

static float FN(dot)(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void FN(axpy)(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static double FN(sum_squares)(const float *g, size_t n) {
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (double)g[i + l] * (double)g[i + l];
    double s = 0.0;
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

const gq_simd_ops GQ_CAT(gq_simd_ops, GQ_SIMD_NAME) = {
    .name = GQ_SIMD_STR,
    .logsumexp = FN(logsumexp),
    .exp_scale = FN(exp_scale),
    .distill_grad = FN(distill_grad),
    .gelu_forward = FN(gelu_forward),
    .gelu_backward = FN(gelu_backward),
    .adamw = FN(adamw),
    .dot = FN(dot),
    .axpy = FN(axpy),
    .sum_squares = FN(sum_squares),
};
