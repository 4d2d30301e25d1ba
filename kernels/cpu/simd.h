/* simd: the CPU backend's row kernels, compiled once per instruction set (scalar baseline,
 * AVX2, AVX-512) from simd_impl.h and chosen at run time from what the CPU supports. The
 * variant can be forced with GQ_CPU_SIMD=scalar|avx2|avx512 (tests run every variant the
 * machine has). All variants give bit-identical results. */
#ifndef GQ_SIMD_H
#define GQ_SIMD_H

#include "quant.h"

#include <stddef.h>

typedef struct {
    const char *name;
    /* log-sum-exp of x[0..n) */
    float (*logsumexp)(const float *x, int n);
    /* x[i] = exp(x[i] - shift) * scale, in place */
    void (*exp_scale)(float *x, int n, float shift, float scale);
    /* distillation gradient row: x[i] = exp(x[i] - ls) * hard_scale - exp(t[i] - lt) * soft, in place */
    void (*distill_grad)(float *x, const float *t, int n, float ls, float lt, float scale, float soft);
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);
    /* AdamW over n values (backend.h's formula); step = lr / (1 - b1^t),
     * bc2_sqrt = sqrt(1 - b2^t), decay = 1 - lr * wd */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2, float eps,
                  float step, float bc2_sqrt, float decay, float grad_scale);
    /* dot product in 16 fp32 lanes summed in a fixed order; y += a * x */
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);
    /* sum of squares in double, 4 double lanes per 16 floats summed in a fixed order */
    double (*sum_squares)(const float *g, size_t n);
    /* QAT's per-value work: quant.h's functions compiled for the variant (its rounding and
     * division vectorize there; not in the SSE2 baseline). Learned-scale fake-quant of `groups`
     * groups of g values, f a format gq_lsq_applies to: forward into out; backward: the weights'
     * gradients in place, and each group's scale gradient += gs * its terms summed in index order. */
    void (*lsq_forward)(gq_qformat f, float *out, const float *w, const float *scales, size_t groups, int g);
    void (*lsq_backward)(gq_qformat f, float *grad, float *dscales, const float *w, const float *scales, size_t groups,
                         int g, float gs);
    /* gq_quantize (level one) and gq_dequantize of a block of rows */
    int (*quantize)(const gq_qspec *s, const float *w, int rows, int cols, gq_qtensor *q, size_t *bad);
    void (*dequantize)(const gq_qspec *s, const gq_qtensor *q, int rows, int cols, float *out);
    /* gq_act8_fake_block over `blocks` blocks of GQ_ACT_BLOCK values in place */
    void (*act8_fake)(float *x, size_t blocks);
} gq_simd_ops;

/* Variants this build has: "scalar", and "avx2"/"avx512" on x86-64. */
const gq_simd_ops *gq_simd_variant(const char *name);
/* 1 if this CPU can run the named variant. */
int gq_simd_supported(const char *name);
/* The variant in use: GQ_CPU_SIMD if set (and supported), else the best supported. */
const gq_simd_ops *gq_simd(void);

#endif
