/* cuda_emu_ops: the entry points of cuda_ops.h that test_cuda_qmatmul.c calls, with the CUDA
 * kernels' own source (qmatmul.cuh, ln_row.cuh) run on the CPU through cuda_emu.h and host
 * memory standing for device memory. Linked with that test as test_qmatmul_emu, so that the GPU
 * test itself runs on every machine: the decode products' dispatch (gq_qmm_run, the same
 * function qmatmul.cu runs), their layernorm prologue, GELU and residual epilogues, and the
 * panel GEMM. A violation of CUDA's rules that the emulator finds makes the call fail. */
#include "cuda_emu.h"

extern "C" {
#include "act_math.h"
#include "cuda_ops.h"
#include "gq_error.h"
#include "qmatmul.h"
#include "quant.h"
}

#include <cstdlib>

/* the decode product's dynamic shared memory (its layernorm prologue's row) */
__attribute__((aligned(128))) float xs[GQ_CUDA_LN_ROW_MAX + 1024 + 64];

#include "ln_row.cuh"
#include "qmatmul.cuh"

namespace {
struct emu_launch {
    template <class... P, class... A> int operator()(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A... a) const {
        const int before = gq_emu::violations;
        gq_emu::launch(grid, block, (unsigned char *)xs, sizeof xs, smem, [&] { kernel(a...); });
        return gq_emu::violations == before ? GQ_OK : gq_errf(GQ_EDEVICE, "cuda_emu: the kernel broke a CUDA rule");
    }
};
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
/* the few-row form only (what the test's N = 1 reference takes) */
extern "C" int gq_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C) {
    if (N <= 0) return GQ_OK;
    if (N > 64 || C > GQ_CUDA_LN_ROW_MAX) return gq_errf(GQ_EUNSUPPORTED, "cuda_emu: the few-row layernorm only");
    return emu_launch{}(gq_ln_row_kernel, dim3(N), dim3(GQ_LN_ROW_THREADS), 0, out, mean, rstd, (float *)inp,
                        (const float *)NULL, weight, bias, C);
}
