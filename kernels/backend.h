/* backend: the op table every backend fills (DESIGN.md decision 3). The model is written once
 * against it. Shapes are given as (dims) with B batch, T time, C channels, NH heads, OC output
 * channels, V real vocabulary, Vp padded vocabulary. Pointers are backend memory (host memory
 * for the CPU backend). Ops never allocate. Conventions for backward ops:
 *   - gradients of parameters (dweight, dbias, dwte, ...) are ACCUMULATED (+=), so that
 *     micro-batches add up;
 *   - gradients of activations are OVERWRITTEN (=), except where a comment says "+=" (the
 *     residual stream, whose gradient collects several branches).
 * Every op returns a gq error code (always GQ_OK on the CPU). */
#ifndef GQ_BACKEND_H
#define GQ_BACKEND_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

enum { GQ_MATMUL_FP32 = 0, GQ_MATMUL_TF32 = 1, GQ_MATMUL_BF16 = 2 };

typedef struct gq_backend {
    const char *name;

    /* ---- memory ---- */
    int (*alloc)(void **ptr, size_t bytes); /* zero-filled */
    void (*free)(void *ptr);
    int (*upload)(void *dst, const void *host_src, size_t bytes);
    int (*download)(void *host_dst, const void *src, size_t bytes);
    int (*zero)(void *ptr, size_t bytes);
    int (*copy)(void *dst, const void *src, size_t bytes); /* within backend memory */

    /* ---- ops ---- */
    /* out (B,T,C) = wte[inp[b,t]] + wpe[t]; inp (B,T) ids, wte (Vp,C), wpe (maxT,C) (bf16 where
     * bf16_operands, below) */
    int (*encoder_forward)(float *out, const int32_t *inp, const float *wte, const float *wpe, int B, int T, int C);
    /* dwte, dwpe += from dout (B,T,C) */
    int (*encoder_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B, int T, int C);

    /* out (N,C) = (inp - mean) * rstd * weight + bias; saves mean, rstd (N) */
    int (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, int N, int C);
    /* dinp (N,C) +=; dweight, dbias (C) += */
    int (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C);

    /* out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC) (bias may be NULL); inp and weight
     * bf16 where bf16_operands (below). out_bf16: out is a bf16 array, the fp32 result (bias
     * included) rounded to nearest once (a model asks for it where bf16_operands, for the
     * outputs that feed only the attention, GELU or the cross-entropy); GQ_EUNSUPPORTED on a backend without bf16
     * arrays. */
    int (*matmul_forward)(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC,
                          int out_bf16);
    /* dinp (N,C) = dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += colsum(dout)
     * (dinp, dbias may be NULL). dout_bf16: dout is a bf16 (N,OC) array as its producer wrote it
     * with bf16_operands (crossentropy_backward in place of the bf16 logits, gelu_backward's
     * dinp); GQ_EUNSUPPORTED on a backend without bf16 arrays. */
    int (*matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, int N, int C, int OC, int dout_bf16);

    /* Causal self-attention. qkv (B,T,3C) = [q | k | v] (bf16 where bf16_operands), heads of size
     * C/NH; out (B,T,C);
     * att (B,NH,T,T) saves what the backward needs: the softmax (zero above the diagonal), or,
     * where a backend recomputes it (CUDA in bf16 mode), less (a log-sum-exp per row). */
    int (*attention_forward)(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
    /* dqkv (B,T,3C) = (bf16, rounded to nearest, where bf16_operands: the qkv product's output
     * gradient, which its matmul_backward reads with dout_bf16); scratch (B,NH,T,T) is
     * overwritten; out: the forward's output (read by backends that recompute the softmax) */
    int (*attention_backward)(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *out,
                              const float *att, int B, int T, int C, int NH);

    /* tanh-form GELU over n values; backward: dinp = gelu'(inp) * dout (inp, the forward's out
     * and the backward's dinp, rounded to nearest, bf16 where bf16_operands) */
    int (*gelu_forward)(float *out, const float *inp, size_t n);
    int (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);

    /* out = a + b over n values (the residual add; its backward is the identity on both); out
     * may be a or b (in place) */
    int (*residual_forward)(float *out, const float *a, const float *b, size_t n);

    /* Fused softmax + cross-entropy over the first V of Vp logits per row (padding ignored).
     * logits (N,Vp) (a bf16 array where bf16_operands: the LM head's output); targets (N), -1 =
     * ignored; losses (N) (0 where ignored); lse (N) saves the log-sum-exp for the backward. */
    int (*crossentropy_forward)(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                                int Vp);
    /* In place: logits (N,Vp) become dlogits = (softmax - onehot) * dloss; padded columns and
     * ignored rows become 0. Where bf16_operands, bf16 logits become bf16 dlogits (rounded to
     * nearest): what the LM head's matmul_backward takes with dout_bf16 (no rounded copy). */
    int (*crossentropy_backward)(float *logits, const float *lse, const int32_t *targets, float dloss, int N, int V,
                                 int Vp);
    /* Distillation: as crossentropy_backward, but against the target distribution
     * (1 - w) onehot(target) + w softmax(tlogits) (the teacher's logits, with its log-sum-exp
     * tlse): dlogits = (softmax - that) * dloss (bf16 as there where bf16_operands, the
     * teacher's logits too: its LM head's output in the same mode). w = 0 is
     * crossentropy_backward. */
    int (*crossentropy_distill_backward)(float *logits, const float *lse, const float *tlogits, const float *tlse,
                                         const int32_t *targets, float w, float dloss, int N, int V, int Vp);

    /* sum of squares of g (n), accumulated in double */
    int (*sum_squares)(double *out, const float *g, size_t n);
    /* AdamW on one tensor, as torch.optim.AdamW: g' = g * grad_scale (clipping);
     * m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2; p -= lr * wd * p;
     * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
    int (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                        float eps, float weight_decay, int t, float grad_scale);

    /* ---- QAT fake-quant (quant.h's math, bit-exact on every backend) ---- */
    /* Bytes of backend memory fakequant_forward needs as `work` for a (rows, cols) tensor. */
    size_t (*fakequant_workspace)(int rows, int cols, const gq_qspec *spec);
    /* out (rows,cols) = dequantize(quantize(w)) with spec; mask (rows*cols) = 0 where the
     * value was clipped (the straight-through estimator passes no gradient there), else 1.
     * out_bf16: out is a bf16 array (the values rounded to nearest; a bf16 working copy of the
     * weights, bf16_operands); GQ_EUNSUPPORTED on a backend without bf16 arrays.
     * A non-finite value in w refuses the call (out and mask are then undefined): with status
     * NULL the call answers GQ_ENAN (message: the index); with status (one word of backend
     * memory) it answers GQ_OK and leaves in *status the lowest index of a non-finite value, or
     * UINT64_MAX where all are finite, without waiting for the device (the caller reads the
     * words of a run of calls back at once: one wait per refresh of the weights, not one per
     * tensor). */
    int (*fakequant_forward)(void *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                             void *work, int out_bf16, uint64_t *status);
    /* STE backward, in place: grad (n) = mask ? grad : 0 */
    int (*fakequant_backward)(float *grad, const uint8_t *mask, size_t n);
    /* W8A8: activation fake-quant in place over n values (the input rows of a matrix product;
     * n a multiple of GQ_ACT_BLOCK, as each row is): each block of 32 becomes its int8 values
     * (quant.h's gq_act8_fake_block: the inference runner's integer-path activations).
     * bf16: x is a bf16 array (a product operand where bf16_operands), each block widened and
     * its values rounded to nearest; GQ_EUNSUPPORTED on a backend without bf16 arrays. The
     * backward is the identity (straight-through; absmax scaling clips nothing): no op. */
    int (*act_fakequant)(float *x, size_t n, int bf16);

    /* ---- mixed precision ---- */
    /* out[i] = in[i] stochastically rounded to bf16 (sround.h), element i drawing the random
     * bits of index base + i in stream seed; identical bits on every backend. out_bf16: out is
     * a bf16 array (the same values, half the bytes; GQ_EUNSUPPORTED where the backend has no
     * bf16 arrays), else floats. */
    int (*round_bf16_sr)(void *out, const float *in, size_t n, uint64_t seed, uint64_t base, int out_bf16);
    /* The arithmetic of matrix products (matmul and attention): GQ_MATMUL_FP32 (IEEE fp32),
     * GQ_MATMUL_TF32 or GQ_MATMUL_BF16 (operands rounded to tf32 / bf16 in tensor cores, fp32
     * accumulation and storage). GQ_EUNSUPPORTED where the backend has only fp32. */
    int (*set_matmul)(int mode);
    /* The floats attention_forward saves in att (*saved) and attention_backward uses of scratch
     * (*scratch) for this shape in the current set_matmul mode: B*NH*T*T each, less where the
     * backend recomputes the softmax (a model plans its activations with this). */
    void (*attention_floats)(int B, int T, int C, int NH, size_t *saved, size_t *scratch);
    /* 1 when, in the current set_matmul mode, the operands of matrix products are bf16 arrays
     * (behind the float pointers: n elements in (n + 1) / 2 floats): the activations that only
     * feed products, i.e. the outputs of layernorm_forward, gelu_forward and attention_forward
     * (out), and so the inp of matmul_forward / matmul_backward and the out of
     * attention_backward; the products' outputs that feed only the attention or GELU (qkv and
     * the MLP's pre-activation: matmul_forward with out_bf16), and so attention's qkv and
     * GELU's inp (forward and backward); the logits (the LM head's matmul_forward with
     * out_bf16), and so cross-entropy's logits and their gradient; the gradients of qkv and of
     * the MLP pre-activation (attention_backward's dqkv, gelu_backward's dinp: matmul_backward's
     * dout with dout_bf16); and the weights, i.e. matmul's weight and encoder_forward's wte and
     * wpe (a model keeps a bf16 working copy of its matrices, round_bf16_sr / fakequant_forward
     * with out_bf16). 0 (fp32) otherwise, and always on the CPU. A model plans and addresses
     * those arrays with it. */
    int (*bf16_operands)(void);

    /* ---- fused forms (NULL where a backend has none: a model then calls the ops above) ----
     * Each computes what its comment names, up to rounding (one rounding of the fused sum where
     * the separate ops round twice); bf16 arrays as above where bf16_operands. */
    /* out (N,OC) = residual (N,OC) + inp (N,C) @ weight^T + bias: a projection into the
     * residual stream (fp32; out must not alias residual). = matmul_forward + residual_forward. */
    int (*matmul_residual_forward)(float *out, const float *residual, const float *inp, const float *weight,
                                   const float *bias, int N, int C, int OC);
    /* pre (N,OC) = inp @ weight^T + bias, out = gelu(pre) (both bf16 where bf16_operands;
     * bias not NULL). = matmul_forward (out_bf16 where bf16_operands) + gelu_forward. */
    int (*matmul_gelu_forward)(float *out, float *pre, const float *inp, const float *weight, const float *bias,
                               int N, int C, int OC);
    /* The product after a GELU, backward, with the GELU's backward: dinp (N,C) = gelu'(pre) *
     * (dout @ weight) (pre and dinp bf16 where bf16_operands: gelu_backward's), dweight (OC,C) +=
     * dout^T @ inp, dbias (OC) += colsum(dout); dout fp32. = matmul_backward + gelu_backward. */
    int (*matmul_backward_dgelu)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                 const float *weight, const float *pre, int N, int C, int OC);
    /* A training step's loss and its gradient in one pass over the logits: losses and lse as
     * crossentropy_forward, then the logits overwritten in place as crossentropy_backward with
     * dloss (the same expressions; lse's sum may run in another order: on CUDA, not on the
     * CPU, whose results are the two ops' bits). GQ_EUNSUPPORTED where the backend cannot take
     * a row (the caller then runs the two). */
    int (*crossentropy_forward_backward)(float *losses, float *lse, float *logits, const int32_t *targets, float dloss,
                                         int N, int V, int Vp);

    /* ---- QAT with learned step sizes (spec->lsq; quant.h's gq_lsq_*, bit-exact on every
     * backend but the scales' gradient sums, whose order a backend chooses) ---- */
    /* out (rows,cols) = the fake-quant of w under the trained scales (one per group, rows *
     * cols / group floats): each value gq_qvalue(f, gq_lsq_code(x, ss), ss, 0) with ss =
     * gq_lsq_stored(scale); out_bf16 and status as fakequant_forward (status: the lowest index
     * of a non-finite value of w). */
    int (*fakequant_lsq_forward)(void *out, const float *w, const float *scales, int rows, int cols,
                                 const gq_qspec *spec, int out_bf16, uint64_t *status);
    /* Backward, in place: grad (rows,cols) becomes dL/dw (0 where x / s is outside the unit
     * range), dscales (one per group) += gq_lsq_gradscale x the group's sum of
     * gq_lsq_backward_value's terms; w and scales as the forward's. */
    int (*fakequant_lsq_backward)(float *grad, float *dscales, const float *w, const float *scales, int rows,
                                  int cols, const gq_qspec *spec);
} gq_backend;

/* The CPU reference backend (always present). */
const gq_backend *gq_backend_cpu(void);

#endif
