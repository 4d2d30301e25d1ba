/* act_math: pointwise math shared by every backend and every SIMD variant: a branch-free
 * expf (Cephes-style: Cody-Waite reduction, degree-6 polynomial, max error ~1 ulp on the
 * range used) that compilers vectorize, and GPT-2's tanh-form GELU built on it. The same
 * source compiled for SSE2, AVX2 or AVX-512 gives bit-identical results (no FMA contraction:
 * the project builds with -ffp-contract=off). */
#ifndef GQ_ACT_MATH_H
#define GQ_ACT_MATH_H

#include "gq_hd.h"

#include <stdint.h>
#include <string.h>

#define GQ_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

GQ_HD float gq_bits_to_float(int32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* e^x for x in [-87.3, 88.3] (clamped outside); NaN in, NaN out. */
GQ_HD float gq_exp(float x) {
    float xc = x > -87.3f ? x : -87.3f; /* a NaN becomes -87.3 here ... */
    xc = xc < 88.3f ? xc : 88.3f;
    /* n = round-to-nearest-even(x / ln 2), by the 1.5 * 2^23 trick; n in [-126, 127] */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    float e = y * gq_bits_to_float((int32_t)((uint32_t)((int32_t)n + 127) << 23));
    return x == x ? e : x; /* ... and comes back out as itself */
}

/* GPT-2's tanh-form GELU, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), computed
 * as x * sigmoid(2u) (the same function: 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u))), which avoids
 * the cancellation of 1 + tanh(u) for negative x. */
GQ_HD float gq_gelu_sigmoid(float x) {
    float u = GQ_GELU_SCALE * (x + 0.044715f * x * x * x);
    return 1.0f / (1.0f + gq_exp(-2.0f * u));
}

GQ_HD float gq_gelu(float x) { return x * gq_gelu_sigmoid(x); }

/* d gelu / dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2), s = sigmoid(2u) */
GQ_HD float gq_gelu_grad(float x) {
    float s = gq_gelu_sigmoid(x);
    return s + 2.0f * x * s * (1.0f - s) * GQ_GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}

#endif
