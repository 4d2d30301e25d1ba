/* cpu_ops: the CPU reference backend's ops (C11 + OpenMP). Shapes in comments; backward
 * functions accumulate (+=) into their input gradients, as in llm.c. */
#ifndef GQ_CPU_OPS_H
#define GQ_CPU_OPS_H

#include <stddef.h>

/* out, inp: (n) */
void gq_cpu_gelu_forward(float *out, const float *inp, size_t n);
/* dinp += gelu'(inp) * dout; all (n) */
void gq_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

#endif
