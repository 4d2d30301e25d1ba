/* optim_math: AdamW's per-element update, shared by the CPU (every SIMD variant) and CUDA
 * backends so that both compute it with the same operations in the same order (bit-identical
 * under -ffp-contract=off / --fmad=false). step = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t),
 * decay = 1 - lr * wd (backend.h). */
#ifndef GQ_OPTIM_MATH_H
#define GQ_OPTIM_MATH_H

#include "gq_hd.h"

GQ_HD void gq_adamw_elem(float *p, float *m, float *v, float g, float beta1, float beta2, float eps, float step,
                         float bc2_sqrt, float decay, float grad_scale) {
    float gi = g * grad_scale;
    float mi = beta1 * *m + (1.0f - beta1) * gi;
    float vi = beta2 * *v + (1.0f - beta2) * gi * gi;
    *m = mi;
    *v = vi;
    *p = *p * decay - step * mi / (__builtin_sqrtf(vi) / bc2_sqrt + eps);
}

#endif
