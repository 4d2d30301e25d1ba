/* simd_impl: the body of every SIMD variant (included by simd_<variant>.c with
 * GQ_SIMD_NAME set). Plain loops written so that the compiler vectorizes them for the
 * target of that file: fixed-width lane accumulators instead of reductions (whose order
 * would otherwise be unspecified), branch-free math from act_math.h; the exp rows in GCC's
 * vector extension (below). */
#include "act_math.h"
#include "optim_math.h"
#include "simd.h"

#define GQ_CAT2(a, b) a##_##b
#define GQ_CAT(a, b) GQ_CAT2(a, b)
#define FN(name) GQ_CAT(name, GQ_SIMD_NAME)

enum { LANES = 16 };

/* The log-sum-exp, softmax-scale and distillation rows in GCC's vector extension, LANES floats
 * a vector (one zmm for AVX-512, two ymm for AVX2, four xmm for the scalar baseline): GCC left
 * the log-sum-exp's max pass scalar (a vmaxss a value), and the spelled-out exp below ran these
 * rows 6-20 % faster than GCC's own vectorization of act_math.h's (GELU stays GCC's: its vector
 * form measured slower). They are act_math.h's operations in the same order (no contraction),
 * so every variant keeps the scalar function's bits; test_simd compares them. */
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));

static inline vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vsplat(float s) {
    vf v;
    for (int l = 0; l < LANES; l++) v[l] = s;
    return v;
}
/* m ? a : b, lane by lane (m: a comparison's all-ones / zero lanes) */
static inline vf vsel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* gq_exp */
static inline vf vexp(vf x) {
    vf xc = vsel(x > -87.3f, x, vsplat(-87.3f));
    xc = vsel(xc < 88.3f, xc, vsplat(88.3f));
    const vf n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vf r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const vf y = p * (r * r) + r + 1.0f;
    const vu b = ((vu)__builtin_convertvector(n, vi) + 127u) << 23;
    return vsel(x == x, y * (vf)b, x);
}
/* max, then the sum of exponentials, in 16 lanes (lane l takes elements l, l + 16, ...), the
 * lanes and the tail added in a fixed order */
static float FN(logsumexp)(const float *x, int n) {
    vf mx = vsplat(-3.0e38f), acc = vsplat(0.0f);
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        const vf v = vload(x + i);
        mx = vsel(v > mx, v, mx);
    }
    float m = -3.0e38f;
    for (int l = 0; l < LANES; l++) m = mx[l] > m ? mx[l] : m;
    for (int k = i; k < n; k++) m = x[k] > m ? x[k] : m;
    const vf mv = vsplat(m);
    for (i = 0; i + LANES <= n; i += LANES) acc += vexp(vload(x + i) - mv);
    float s = 0.0f;
    for (int k = i; k < n; k++) s += gq_exp(x[k] - m);
    for (int l = 0; l < LANES; l++) s += acc[l];
    /* log(s) for s in [1, n]: exact enough through the double library log */
    return m + (float)__builtin_log((double)s);
}

static void FN(exp_scale)(float *x, int n, float shift, float scale) {
    int i = 0;
    for (; i + LANES <= n; i += LANES) vstore(x + i, vexp(vload(x + i) - shift) * scale);
    for (; i < n; i++) x[i] = gq_exp(x[i] - shift) * scale;
}

static void FN(distill_grad)(float *x, const float *t, int n, float ls, float lt, float scale, float soft) {
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        vstore(x + i, vexp(vload(x + i) - ls) * scale - vexp(vload(t + i) - lt) * soft);
    for (; i < n; i++) x[i] = gq_exp(x[i] - ls) * scale - gq_exp(t[i] - lt) * soft;
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

/* QAT: quant.h's per-value functions for this variant; the format a constant in each copy of
 * the group loops (its switches fold away and the loops vectorize) */
static inline __attribute__((always_inline)) void lsq_fwd(gq_qformat f, float *out, const float *w,
                                                          const float *scales, size_t groups, int g) {
    for (size_t k = 0; k < groups; k++) {
        const float ss = gq_lsq_stored(f, scales[k]);
        for (size_t i = k * g; i < (k + 1) * g; i++) out[i] = gq_qvalue(f, gq_lsq_code(f, w[i], ss), ss, 0);
    }
}
static inline __attribute__((always_inline)) void lsq_bwd(gq_qformat f, float *grad, float *dscales, const float *w,
                                                          const float *scales, size_t groups, int g, float gs) {
    for (size_t k = 0; k < groups; k++) {
        const float ss = gq_lsq_stored(f, scales[k]);
        float sum = 0.0f;
        for (size_t i = k * g; i < (k + 1) * g; i++) {
            float d;
            grad[i] = gq_lsq_backward_value(f, w[i], ss, grad[i], &d);
            sum += d;
        }
        dscales[k] += gs * sum;
    }
}
static void FN(lsq_forward)(gq_qformat f, float *out, const float *w, const float *scales, size_t groups, int g) {
    switch (f) {
    case GQ_QF_INT4: lsq_fwd(GQ_QF_INT4, out, w, scales, groups, g); break;
    case GQ_QF_INT3: lsq_fwd(GQ_QF_INT3, out, w, scales, groups, g); break;
    case GQ_QF_INT2: lsq_fwd(GQ_QF_INT2, out, w, scales, groups, g); break;
    case GQ_QF_NF4: lsq_fwd(GQ_QF_NF4, out, w, scales, groups, g); break;
    default: lsq_fwd(GQ_QF_FP4, out, w, scales, groups, g); break;
    }
}
static void FN(lsq_backward)(gq_qformat f, float *grad, float *dscales, const float *w, const float *scales,
                             size_t groups, int g, float gs) {
    switch (f) {
    case GQ_QF_INT4: lsq_bwd(GQ_QF_INT4, grad, dscales, w, scales, groups, g, gs); break;
    case GQ_QF_INT3: lsq_bwd(GQ_QF_INT3, grad, dscales, w, scales, groups, g, gs); break;
    case GQ_QF_INT2: lsq_bwd(GQ_QF_INT2, grad, dscales, w, scales, groups, g, gs); break;
    case GQ_QF_NF4: lsq_bwd(GQ_QF_NF4, grad, dscales, w, scales, groups, g, gs); break;
    default: lsq_bwd(GQ_QF_FP4, grad, dscales, w, scales, groups, g, gs); break;
    }
}
static int FN(quantize)(const gq_qspec *s, const float *w, int rows, int cols, gq_qtensor *q, size_t *bad) {
    return gq_quantize(s, w, rows, cols, q, bad);
}
static void FN(dequantize)(const gq_qspec *s, const gq_qtensor *q, int rows, int cols, float *out) {
    gq_dequantize(s, q, rows, cols, out);
}
static void FN(act8_fake)(float *x, size_t blocks) {
    for (size_t b = 0; b < blocks; b++) gq_act8_fake_block(x + b * GQ_ACT_BLOCK);
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
    .lsq_forward = FN(lsq_forward),
    .lsq_backward = FN(lsq_backward),
    .quantize = FN(quantize),
    .dequantize = FN(dequantize),
    .act8_fake = FN(act8_fake),
};
