/* backend_cpu: the CPU reference backend's table (host memory, fp32). */
#include "backend.h"
#include "cpu_ops.h"
#include "gq_error.h"

#include <stdlib.h>
#include <string.h>

static int cpu_alloc(void **ptr, size_t bytes) {
    /* 64-byte aligned for SIMD; zero-filled */
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) return gq_errf(GQ_ENOMEM, "out of memory allocating %.1f MiB", (double)bytes / (1 << 20));
    memset(p, 0, rounded);
    *ptr = p;
    return GQ_OK;
}

static void cpu_free(void *ptr) { free(ptr); }

static int cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
    return GQ_OK;
}

static int cpu_zero(void *ptr, size_t bytes) {
    if (bytes) memset(ptr, 0, bytes);
    return GQ_OK;
}

static int cpu_set_matmul(int mode) {
    if (mode != GQ_MATMUL_FP32) return gq_errf(GQ_EUNSUPPORTED, "the CPU backend computes matrix products in fp32 only");
    return GQ_OK;
}

/* fp32 operands only (set_matmul takes fp32 only), and so no bf16 arrays */
static int cpu_bf16_operands(void) { return 0; }

static int no_bf16_arrays(const char *op) {
    return gq_errf(GQ_EUNSUPPORTED, "%s: the CPU backend has no bf16 arrays", op);
}

static int cpu_fakequant_forward(void *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                                 void *work, int out_bf16, uint64_t *status) {
    return out_bf16 ? no_bf16_arrays("fake-quant")
                    : gq_cpu_fakequant_forward(out, mask, w, rows, cols, spec, work, status);
}

static int cpu_act_fakequant(float *x, size_t n, int bf16) {
    return bf16 ? no_bf16_arrays("activation fake-quant") : gq_cpu_act_fakequant(x, n);
}

static int cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                              int OC, int out_bf16) {
    return out_bf16 ? no_bf16_arrays("matmul") : gq_cpu_matmul_forward(out, inp, weight, bias, N, C, OC);
}

static int cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, int N, int C, int OC, int dout_bf16) {
    return dout_bf16 ? no_bf16_arrays("matmul") : gq_cpu_matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

static int cpu_round_bf16_sr(void *out, const float *in, size_t n, uint64_t seed, uint64_t base, int out_bf16) {
    return out_bf16 ? no_bf16_arrays("bf16 rounding") : gq_cpu_round_bf16_sr(out, in, n, seed, base);
}

static int cpu_fakequant_lsq_forward(void *out, const float *w, const float *scales, int rows, int cols,
                                     const gq_qspec *spec, int out_bf16, uint64_t *status) {
    return out_bf16 ? no_bf16_arrays("fake-quant")
                    : gq_cpu_fakequant_lsq_forward(out, w, scales, rows, cols, spec, status);
}

static const gq_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .encoder_forward = gq_cpu_encoder_forward,
    .encoder_backward = gq_cpu_encoder_backward,
    .layernorm_forward = gq_cpu_layernorm_forward,
    .layernorm_backward = gq_cpu_layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .attention_forward = gq_cpu_attention_forward,
    .attention_backward = gq_cpu_attention_backward,
    .gelu_forward = gq_cpu_gelu_forward,
    .gelu_backward = gq_cpu_gelu_backward,
    .residual_forward = gq_cpu_residual_forward,
    .crossentropy_forward = gq_cpu_crossentropy_forward,
    .crossentropy_backward = gq_cpu_crossentropy_backward,
    .crossentropy_distill_backward = gq_cpu_crossentropy_distill_backward,
    .crossentropy_forward_backward = gq_cpu_crossentropy_forward_backward,
    .sum_squares = gq_cpu_sum_squares,
    .adamw_update = gq_cpu_adamw_update,
    .fakequant_workspace = gq_cpu_fakequant_workspace,
    .fakequant_forward = cpu_fakequant_forward,
    .fakequant_backward = gq_cpu_fakequant_backward,
    .act_fakequant = cpu_act_fakequant,
    .round_bf16_sr = cpu_round_bf16_sr,
    .set_matmul = cpu_set_matmul,
    .attention_floats = gq_cpu_attention_floats,
    .bf16_operands = cpu_bf16_operands,
    .fakequant_lsq_forward = cpu_fakequant_lsq_forward,
    .fakequant_lsq_backward = gq_cpu_fakequant_lsq_backward,
};

const gq_backend *gq_backend_cpu(void) { return &cpu_backend; }
