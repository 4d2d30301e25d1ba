/* cuda_emu_ops: the entry points of cuda_ops.h that the inference runner (infer/model_cuda.c)
 * and the GPU tests test_cuda_qmatmul.c / test_infer_cuda.c call, with the CUDA kernels' own
 * source (qmatmul.cuh, infer.cuh, ln_row.cuh) and their dispatch (the same template functions the
 * .cu files run) executed on the CPU through cuda_emu.h; host memory stands for device memory.
 * Linked with those tests as test_qmatmul_emu and test_infer_emu, so that the GPU tests run on
 * every machine. Not emulated (the CPU op instead, within the tests' tolerances): the layernorm
 * of more than 64 rows and the cross-entropy (eval's), both run on the H200 in session 7; CUDA
 * graphs (begin fails, so the runner launches the step's ops one by one, its own fallback). A
 * violation of CUDA's rules that the emulator finds makes the call fail. */
#include "cuda_emu.h"

extern "C" {
#include "act_math.h"
#include "backend.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "qmatmul.h"
#include "quant.h"
}

#include <cstdlib>

/* the kernels' dynamic shared memory: the decode product's layernorm prologue row (xs) and the
 * runner attention's scores (att_scores, at most 12032 positions) */
__attribute__((aligned(128))) float xs[GQ_CUDA_LN_ROW_MAX + 1024 + 64];
__attribute__((aligned(128))) float att_scores[12032 + 1024 + 64];

#include "infer.cuh"
#include "ln_row.cuh"
#include "qmatmul.cuh"

namespace {
/* a launch on the emulator; smem: the kernel's dynamic shared array */
struct emu_launch {
    unsigned char *smem_array = (unsigned char *)xs;
    size_t cap = sizeof xs;
    template <class... P, class... A> int operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... a) const {
        const int before = gq_emu::violations;
        gq_emu::launch(grid, block, smem_array, cap, smem, [&] { kernel(a...); });
        return gq_emu::violations == before ? GQ_OK : gq_errf(GQ_EDEVICE, "cuda_emu: the kernel broke a CUDA rule");
    }
};
const emu_launch att_launch = {(unsigned char *)att_scores, sizeof att_scores};
} // namespace

extern "C" int gq_cuda_device_count(void) { return 1; }
extern "C" int gq_cuda_alloc(void **d_ptr, size_t bytes) {
    *d_ptr = calloc(1, bytes ? bytes : 1);
    return *d_ptr ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
}
extern "C" int gq_cuda_free(void *d_ptr) {
    free(d_ptr);
    return GQ_OK;
}
extern "C" int gq_cuda_upload(void *d_dst, const void *src, size_t bytes) {
    memcpy(d_dst, src, bytes);
    return GQ_OK;
}
extern "C" int gq_cuda_download(void *dst, const void *d_src, size_t bytes) {
    memcpy(dst, d_src, bytes);
    return GQ_OK;
}
extern "C" int gq_cuda_qmatmul(float *y, const float *x, int M, const gq_qmat *w, const float *bias) {
    return gq_qmm_run(emu_launch{}, y, x, M, w, bias, NULL);
}
extern "C" int gq_cuda_qmatmul_ep(float *y, const float *x, int M, const gq_qmat *w, const float *bias,
                                  const gq_qmm_ep *ep) {
    return gq_qmm_run(emu_launch{}, y, x, M, w, bias, ep);
}
/* the few-row kernel as layernorm.cu launches it (N <= 64), else the CPU op */
extern "C" int gq_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C) {
    if (N <= 0) return GQ_OK;
    if (N > 64 || C > GQ_CUDA_LN_ROW_MAX) return gq_backend_cpu()->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
    return emu_launch{}(gq_ln_row_kernel, dim3(N), dim3(GQ_LN_ROW_THREADS), 0, out, mean, rstd, (float *)inp,
                        (const float *)NULL, weight, bias, C);
}
extern "C" int gq_cuda_residual_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i]; /* the residual kernel's one add */
    return GQ_OK;
}
extern "C" int gq_cuda_residual_layernorm(float *x, const float *r, float *out, float *mean, float *rstd,
                                          const float *weight, const float *bias, int N, int C) {
    if (N <= 0) return GQ_OK;
    if (N <= 64 && C <= GQ_CUDA_LN_ROW_MAX)
        return emu_launch{}(gq_ln_row_kernel, dim3(N), dim3(GQ_LN_ROW_THREADS), 0, out, mean, rstd, x, r, weight, bias,
                            C);
    gq_cuda_residual_forward(x, x, r, (size_t)N * C);
    return gq_cuda_layernorm_forward(out, mean, rstd, x, weight, bias, N, C);
}
extern "C" int gq_cuda_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets,
                                            int N, int V, int Vp) {
    return gq_backend_cpu()->crossentropy_forward(losses, lse, logits, targets, N, V, Vp);
}
extern "C" int gq_cuda_embed(float *x, const gq_qmat *wte, const gq_qmat *wpe, const int32_t *d_tokens,
                             const int32_t *d_pos, int M, int C) {
    return gq_inf_embed(emu_launch{}, x, wte, wpe, d_tokens, d_pos, M, C);
}
extern "C" int gq_cuda_kv_store(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M, int C) {
    return gq_inf_kv_store(emu_launch{}, kc, vc, f16, qkv, d_pos, M, C);
}
extern "C" int gq_cuda_attend(float *out, const float *qkv, const void *kc, const void *vc, int f16,
                              const int32_t *d_pos, int own_pass, int M, int NH, int C, int T) {
    return gq_inf_attend(att_launch, out, qkv, (void *)kc, (void *)vc, f16, d_pos, own_pass, 0, M, NH, C, T);
}
extern "C" int gq_cuda_store_attend(float *out, const float *qkv, void *kc, void *vc, int f16, const int32_t *d_pos,
                                    int NH, int C, int T) {
    return gq_inf_attend(att_launch, out, qkv, kc, vc, f16, d_pos, 0, 1, 1, NH, C, T);
}
extern "C" int gq_cuda_argmax(int32_t *d_out, const float *x, int n) { return gq_inf_argmax(emu_launch{}, d_out, x, n); }
extern "C" int gq_cuda_decode_advance(int32_t *d_tokens, int32_t *d_pos, const int32_t *d_next) {
    return gq_inf_decode_advance(emu_launch{}, d_tokens, d_pos, d_next);
}
extern "C" int gq_cuda_sample(int32_t *d_out, const float *x, int V, float temperature, int top_k, float top_p,
                              const float *d_u, float *d_prob) {
    return gq_inf_sample(emu_launch{}, d_out, x, V, temperature, top_k, top_p, d_u, d_prob);
}
/* the device's figures: an emulator has none worth reporting (fixed, plausible values) */
extern "C" int gq_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = (size_t)60 << 30, *total_bytes = (size_t)80 << 30;
    return GQ_OK;
}
extern "C" int gq_cuda_copy_bandwidth(double *bytes_per_s) {
    *bytes_per_s = 1e12;
    return GQ_OK;
}
extern "C" int gq_cuda_device_name(char *buf, size_t size) {
    snprintf(buf, size, "cuda_emu (the CPU)");
    return GQ_OK;
}
extern "C" int gq_cuda_sync(void) { return GQ_OK; }
extern "C" int gq_cuda_zero(void *d_ptr, size_t bytes) {
    memset(d_ptr, 0, bytes);
    return GQ_OK;
}
extern "C" int gq_cuda_copy(void *d_dst, const void *d_src, size_t bytes) {
    memmove(d_dst, d_src, bytes);
    return GQ_OK;
}
/* no graphs: the runner then launches a step's ops one by one */
extern "C" int gq_cuda_graph_begin(void) { return gq_errf(GQ_EUNSUPPORTED, "cuda_emu: no CUDA graphs"); }
extern "C" int gq_cuda_graph_end(void **exec) {
    *exec = NULL;
    return gq_errf(GQ_EUNSUPPORTED, "cuda_emu: no CUDA graphs");
}
extern "C" int gq_cuda_graph_launch(void *exec) {
    (void)exec;
    return gq_errf(GQ_EUNSUPPORTED, "cuda_emu: no CUDA graphs");
}
extern "C" void gq_cuda_graph_free(void *exec) { (void)exec; }
