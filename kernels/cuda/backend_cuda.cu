/* backend_cuda: the CUDA backend's op table (device memory, fp32). */
#include "backend.h"
#include "cuda_ops.h"

static void cuda_free_void(void *p) { gq_cuda_free(p); }

/* the table's encoder forward: bf16 working weights in bf16 mode */
static int cuda_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B, int T,
                                int C) {
    return gq_cuda_bf16_operands() ? gq_cuda_encoder_forward_bf16(out, inp, wte, wpe, B, T, C)
                                   : gq_cuda_encoder_forward(out, inp, wte, wpe, B, T, C);
}

/* the table's layernorm and GELU forwards: bf16 outputs in bf16 mode (they only feed products);
 * GELU's input is bf16 too there */
static int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                  const float *bias, int N, int C) {
    return gq_cuda_bf16_operands() ? gq_cuda_layernorm_forward_bf16(out, mean, rstd, inp, weight, bias, N, C)
                               : gq_cuda_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}

static int cuda_gelu_forward(float *out, const float *inp, size_t n) {
    return gq_cuda_bf16_operands() ? gq_cuda_gelu_forward_bf16(out, inp, n) : gq_cuda_gelu_forward(out, inp, n);
}

/* (the pre-activation is bf16 in bf16 mode: the fc product's output) */
static int cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    return gq_cuda_bf16_operands() ? gq_cuda_gelu_backward_bf16(dinp, inp, dout, n)
                                   : gq_cuda_gelu_backward(dinp, inp, dout, n);
}

/* the cross-entropy: bf16 logits with bf16 operands (the LM head's output), their gradients
 * bf16 in place (the LM head's backward reads them) */
static int cuda_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N,
                                     int V, int Vp) {
    return gq_cuda_bf16_operands() ? gq_cuda_crossentropy_forward_bf16(losses, lse, logits, targets, N, V, Vp)
                                   : gq_cuda_crossentropy_forward(losses, lse, logits, targets, N, V, Vp);
}

static int cuda_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss, int N,
                                      int V, int Vp) {
    return gq_cuda_bf16_operands() ? gq_cuda_crossentropy_backward_bf16(logits, lse, targets, dloss, N, V, Vp)
                                   : gq_cuda_crossentropy_backward(logits, lse, targets, dloss, N, V, Vp);
}

static int cuda_crossentropy_forward_backward(float *losses, float *lse, float *logits, const int32_t *targets,
                                              float dloss, int N, int V, int Vp) {
    return gq_cuda_crossentropy_fused(losses, lse, logits, targets, dloss, N, V, Vp, gq_cuda_bf16_operands());
}

static int cuda_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits, const float *tlse,
                                              const int32_t *targets, float w, float dloss, int N, int V, int Vp) {
    return gq_cuda_bf16_operands()
               ? gq_cuda_crossentropy_distill_backward_bf16(logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp)
               : gq_cuda_crossentropy_distill_backward(logits, lse, tlogits, tlse, targets, w, dloss, N, V, Vp);
}

static const gq_backend cuda_backend = {
    /* .name = */ "cuda",
    /* .alloc = */ gq_cuda_alloc,
    /* .free = */ cuda_free_void,
    /* .upload = */ gq_cuda_upload,
    /* .download = */ gq_cuda_download,
    /* .zero = */ gq_cuda_zero,
    /* .copy = */ gq_cuda_copy,
    /* .encoder_forward = */ cuda_encoder_forward,
    /* .encoder_backward = */ gq_cuda_encoder_backward,
    /* .layernorm_forward = */ cuda_layernorm_forward,
    /* .layernorm_backward = */ gq_cuda_layernorm_backward,
    /* .matmul_forward = */ gq_cuda_matmul_forward,
    /* .matmul_backward = */ gq_cuda_matmul_backward,
    /* .attention_forward = */ gq_cuda_attention_forward,
    /* .attention_backward = */ gq_cuda_attention_backward,
    /* .gelu_forward = */ cuda_gelu_forward,
    /* .gelu_backward = */ cuda_gelu_backward,
    /* .residual_forward = */ gq_cuda_residual_forward,
    /* .crossentropy_forward = */ cuda_crossentropy_forward,
    /* .crossentropy_backward = */ cuda_crossentropy_backward,
    /* .crossentropy_distill_backward = */ cuda_crossentropy_distill_backward,
    /* .sum_squares = */ gq_cuda_sum_squares,
    /* .adamw_update = */ gq_cuda_adamw_update,
    /* .fakequant_workspace = */ gq_cuda_fakequant_workspace,
    /* .fakequant_forward = */ gq_cuda_fakequant_forward,
    /* .fakequant_backward = */ gq_cuda_fakequant_backward,
    /* .act_fakequant = */ gq_cuda_act_fakequant,
    /* .round_bf16_sr = */ gq_cuda_round_bf16_sr,
    /* .set_matmul = */ gq_cuda_set_matmul,
    /* .attention_floats = */ gq_cuda_attention_floats,
    /* .bf16_operands = */ gq_cuda_bf16_operands,
    /* .matmul_residual_forward = */ gq_cuda_matmul_residual_forward,
    /* .matmul_gelu_forward = */ gq_cuda_matmul_gelu_forward,
    /* .matmul_backward_dgelu = */ gq_cuda_matmul_backward_dgelu,
    /* .crossentropy_forward_backward = */ cuda_crossentropy_forward_backward,
    /* .fakequant_lsq_forward = */ gq_cuda_fakequant_lsq_forward,
    /* .fakequant_lsq_backward = */ gq_cuda_fakequant_lsq_backward,
};

extern "C" const gq_backend *gq_backend_cuda(void) { return &cuda_backend; }
