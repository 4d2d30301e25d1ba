/* act_math: pointwise activation math shared by every backend (GELU, tanh form as in GPT-2). */
#ifndef GQ_ACT_MATH_H
#define GQ_ACT_MATH_H

#include "gq_hd.h"

#include <math.h>

#define GQ_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

/* gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
GQ_HD float gq_gelu(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GQ_GELU_SCALE * (x + cube)));
}

/* d gelu / dx */
GQ_HD float gq_gelu_grad(float x) {
    float cube = 0.044715f * x * x * x;
    float t = tanhf(GQ_GELU_SCALE * (x + cube));
    float sech2 = 1.0f - t * t;
    return 0.5f * (1.0f + t) + 0.5f * x * sech2 * GQ_GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}

#endif
