/* qmatmul (CUDA): products with packed quantized weights, y (M, rows) = x (M, cols) W^T + bias,
 * the weights read as exported (qmatmul.h's gq_qmat, device pointers).
 *   - M < GQ_QMM_PANEL_MIN (decode, short prompts): the weights dequantized in registers with
 *     quant.h's values, a few tokens (M <= 8) per pass. One warp per output row; the fast paths
 *     read 16 bytes per lane per step (4-bit formats with groups of 32+, 8-bit formats, fp32), a
 *     generic path takes any other layout (int3, int2, small groups).
 *   - M >= GQ_QMM_PANEL_MIN (prefill, eval): a tiled fp32 GEMM of our own whose weight tiles
 *     are dequantized as they are loaded into shared memory (quant.h's exact values, as the
 *     CPU runner's panels). No cuBLAS here, so that gpt2q-infer does not load it. */
#include "act_math.h"
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "ln_row.cuh"
#include "qmatmul.h"

#include "qmatmul.cuh"

extern "C" int gq_cuda_qmatmul(float *y, const float *x, int M, const gq_qmat *w, const float *bias) {
    return gq_qmm_run(y, x, M, w, bias, NULL);
}

extern "C" int gq_cuda_qmatmul_ep(float *y, const float *x, int M, const gq_qmat *w, const float *bias,
                                  const gq_qmm_ep *ep) {
    return gq_qmm_run(y, x, M, w, bias, ep);
}
