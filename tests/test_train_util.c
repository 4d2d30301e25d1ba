/* The trainer's MFU arithmetic: FLOPs per token (6 per parameter + 12 L C T, the estimate
 * bench/torch_train_gpu.py applies to PyTorch) on GPT-2 124M, whose parameter count is worked
 * out here from the architecture (not from the model code), and on a created model; the
 * datasheet peaks by the names CUDA reports, unknown parts, and the GQ_PEAK_TFLOPS override. */
#define _GNU_SOURCE
#include "gpt2.h"
#include "gq_error.h"
#include "gq_test.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>

int main(void) {
    /* GPT-2 124M with the padded vocabulary: wte 50304 x 768, wpe 1024 x 768, per layer two
     * layernorms (2 x 2 x 768), qkv 768 x 2304 + 2304, proj 768 x 768 + 768, fc 768 x 3072 +
     * 3072, fcproj 3072 x 768 + 768; the final layernorm 2 x 768 */
    const double per_layer = 4.0 * 768 + (768.0 * 2304 + 2304) + (768.0 * 768 + 768) + (768.0 * 3072 + 3072) +
                             (3072.0 * 768 + 768);
    const double n124 = 50304.0 * 768 + 1024.0 * 768 + 12 * per_layer + 2 * 768;
    CHECK(n124 == 124475904.0);
    gq_gpt2_config c124 = {12, 12, 768, 1024, 50257, 50304};
    const double f = gq_train_flops_per_token((size_t)n124, &c124, 1024);
    printf("GPT-2 124M at T = 1024: %.0f parameters, %.0f FLOPs per token\n", n124, f);
    CHECK(f == 6 * 124475904.0 + 12.0 * 12 * 768 * 1024); /* 860,101,632 */
    /* a created model's parameter count against the same formula for its shape */
    gq_gpt2_config cs = {3, 2, 32, 48, 300, 320};
    gq_gpt2 *m = NULL;
    CHECK_OK(gq_gpt2_create(&m, &cs, gq_backend_cpu(), 1, 8));
    if (m) {
        const double C = 32, pl = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C);
        const double want = 320 * C + 48 * C + 3 * pl + 2 * C;
        CHECKF((double)m->n_params == want, "created model: %zu parameters, the architecture says %.0f", m->n_params,
               want);
        CHECK(gq_train_flops_per_token(m->n_params, &cs, 8) == 6 * want + 12.0 * 3 * 32 * 8);
        gq_gpt2_free(m);
    }
    /* datasheet peaks (dense) by CUDA's names */
    unsetenv("GQ_PEAK_TFLOPS");
    CHECK(gq_train_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12);
    CHECK(gq_train_peak_flops("NVIDIA H100 80GB HBM3", "tf32") == 495e12);
    CHECK(gq_train_peak_flops("NVIDIA H100 80GB HBM3", "fp32") == 67e12);
    CHECK(gq_train_peak_flops("NVIDIA H200", "bf16") == 989e12);
    CHECK(gq_train_peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12);
    CHECK(gq_train_peak_flops("NVIDIA A100-SXM4-80GB", "tf32") == 156e12);
    CHECK(gq_train_peak_flops("NVIDIA H100 NVL", "bf16") == 0); /* other clocks: not claimed */
    CHECK(gq_train_peak_flops("NVIDIA GeForce RTX 4090", "bf16") == 0);
    CHECK(gq_train_peak_flops("NVIDIA H200", "int8") == 0);
    CHECK(gq_train_peak_flops(NULL, "bf16") == 0);
    setenv("GQ_PEAK_TFLOPS", "123.5", 1);
    CHECK(gq_train_peak_flops("NVIDIA GeForce RTX 4090", "bf16") == 123.5e12);
    setenv("GQ_PEAK_TFLOPS", "fast", 1); /* not a number: ignored */
    CHECK(gq_train_peak_flops("NVIDIA H200", "bf16") == 989e12);
    return gq_test_finish("test_train_util");
}
