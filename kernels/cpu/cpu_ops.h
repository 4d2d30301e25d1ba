/* cpu_ops: the CPU reference backend's ops (C11 + OpenMP, CBLAS for GEMMs). Semantics and
 * shapes are those of backend.h; every function here returns GQ_OK. Parallel loops are
 * arranged so that each output element is summed by one thread in a fixed order: results do
 * not depend on the thread count except through OpenBLAS's GEMM blocking. */
#ifndef GQ_CPU_OPS_H
#define GQ_CPU_OPS_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

int gq_cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B, int T, int C);
int gq_cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B, int T, int C);
int gq_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, int N, int C);
int gq_cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C);
int gq_cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
int gq_cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, int N, int C, int OC);
/* In place: the softmax of row[0..t], zeros in row[t+1..n) (a causal attention row). */
void gq_cpu_softmax_causal_row(float *row, int t, int n);
int gq_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
void gq_cpu_attention_floats(int B, int T, int C, int NH, size_t *saved, size_t *scratch);
int gq_cpu_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *out,
                              const float *att, int B, int T, int C, int NH);
int gq_cpu_gelu_forward(float *out, const float *inp, size_t n);
int gq_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
int gq_cpu_residual_forward(float *out, const float *a, const float *b, size_t n);
int gq_cpu_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                                int Vp);
int gq_cpu_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss, int N, int V,
                                 int Vp);
int gq_cpu_crossentropy_forward_backward(float *losses, float *lse, float *logits, const int32_t *targets, float dloss,
                                         int N, int V, int Vp);
int gq_cpu_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits, const float *tlse,
                                         const int32_t *targets, float w, float dloss, int N, int V, int Vp);
int gq_cpu_sum_squares(double *out, const float *g, size_t n);
int gq_cpu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                        float eps, float weight_decay, int t, float grad_scale);
size_t gq_cpu_fakequant_workspace(int rows, int cols, const gq_qspec *spec);
/* status: backend.h's fakequant_forward (NULL: GQ_ENAN for a non-finite value) */
int gq_cpu_fakequant_forward(float *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                             void *work, uint64_t *status);
int gq_cpu_fakequant_backward(float *grad, const uint8_t *mask, size_t n);
/* learned step sizes (backend.h's fakequant_lsq_forward / _backward) */
int gq_cpu_fakequant_lsq_forward(float *out, const float *w, const float *scales, int rows, int cols,
                                 const gq_qspec *spec, uint64_t *status);
int gq_cpu_fakequant_lsq_backward(float *grad, float *dscales, const float *w, const float *scales, int rows, int cols,
                                  const gq_qspec *spec);
int gq_cpu_act_fakequant(float *x, size_t n);
int gq_cpu_round_bf16_sr(float *out, const float *in, size_t n, uint64_t seed, uint64_t base);

#endif
