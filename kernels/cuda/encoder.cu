/* encoder (CUDA): token + position embedding and its backward. The backward is deterministic
 * and bit-identical to the CPU's: positions are bucketed by token on the host (the ids are
 * B*T int32, downloaded once), and each (token, channel) thread adds its positions in
 * ascending order, as the CPU loop does; dwpe sums the batch in order per (t, channel). */
#include "cuda_ops.h"
#include "cuda_util.cuh"

#include <stdlib.h>
#include <string.h>

/* wte, wpe: fp32, or bf16 (the bf16 mode's working weights, gq_cuda_bf16_operands) */
template <class W>
static __global__ void encoder_forward_kernel(float *out, const int32_t *inp, const W *wte, const W *wpe, int BT,
                                              int T, int C) {
    size_t n = (size_t)BT * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        out[i] = gq_ld(&wte[(size_t)inp[bt] * C + c]) + gq_ld(&wpe[(size_t)t * C + c]);
    }
}

/* grid (unique tokens, channel tiles); bucket u holds positions pos[off[u] .. off[u+1]) */
static __global__ void encoder_dwte_kernel(float *dwte, const float *dout, const int32_t *tok, const int32_t *off,
                                           const int32_t *pos, int C) {
    int u = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float *w = dwte + (size_t)tok[u] * C + c;
    float acc = *w;
    for (int j = off[u]; j < off[u + 1]; j++) acc += dout[(size_t)pos[j] * C + c];
    *w = acc;
}

static __global__ void encoder_dwpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    float acc = dwpe[i];
    for (int b = 0; b < B; b++) acc += dout[(size_t)b * T * C + i];
    dwpe[i] = acc;
}

extern "C" int gq_cuda_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B,
                                       int T, int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(encoder_forward_kernel<float>, gq_cuda_grid(n, 256), 256, 0, out, inp, wte, wpe, B * T, T, C));
    return GQ_OK;
}

extern "C" int gq_cuda_encoder_forward_bf16(float *out, const int32_t *inp, const void *wte, const void *wpe, int B,
                                            int T, int C) {
    size_t n = (size_t)B * T * C;
    if (!n) return GQ_OK;
    GQ_TRY(gq_launch(encoder_forward_kernel<__nv_bfloat16>, gq_cuda_grid(n, 256), 256, 0, out, inp,
                     (const __nv_bfloat16 *)wte, (const __nv_bfloat16 *)wpe, B * T, T, C));
    return GQ_OK;
}

extern "C" int gq_cuda_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B, int T,
                                        int C) {
    const int BT = B * T;
    if (!BT) return GQ_OK;
    /* host buckets: a counting sort of the positions by token (grow-only host buffers) */
    static int32_t *h = NULL;
    static size_t h_cap = 0;
    size_t need = (size_t)4 * BT + 1;
    if (need > h_cap) {
        int32_t *nh = (int32_t *)realloc(h, need * sizeof *h);
        if (!nh) return gq_errf(GQ_ENOMEM, "out of memory for the encoder backward's buckets");
        h = nh, h_cap = need;
    }
    int32_t *ids = h, *tok = h + BT, *off = h + 2 * BT, *pos = h + 3 * BT + 1;
    GQ_TRY(gq_cuda_download(ids, inp, (size_t)BT * sizeof *ids));
    /* sort (token, position) pairs by token, stably: positions stay ascending within a token */
    int32_t max_id = 0;
    for (int i = 0; i < BT; i++) {
        if (ids[i] < 0) return gq_errf(GQ_ERANGE, "encoder backward: negative token id %d", ids[i]);
        max_id = ids[i] > max_id ? ids[i] : max_id;
    }
    static int32_t *count = NULL;
    static size_t count_cap = 0;
    if ((size_t)max_id + 2 > count_cap) {
        int32_t *nc = (int32_t *)realloc(count, ((size_t)max_id + 2) * sizeof *count);
        if (!nc) return gq_errf(GQ_ENOMEM, "out of memory for the encoder backward's buckets");
        count = nc, count_cap = (size_t)max_id + 2;
    }
    memset(count, 0, ((size_t)max_id + 2) * sizeof *count);
    for (int i = 0; i < BT; i++) count[ids[i] + 1]++;
    int U = 0;
    for (int32_t v = 0; v <= max_id; v++) {
        if (count[v + 1]) tok[U++] = v;
        count[v + 1] += count[v];
    }
    for (int i = 0; i < BT; i++) pos[count[ids[i]]++] = i;
    for (int u = 0, j = 0; u < U; u++) { /* bucket offsets in token order */
        off[u] = j;
        while (j < BT && ids[pos[j]] == tok[u]) j++;
    }
    off[U] = BT;
    int32_t *d = NULL;
    GQ_TRY(gq_cuda_scratch(GQ_SCRATCH_A, need * sizeof *d, (void **)&d));
    GQ_CUDA_CHECK(cudaMemcpy(d, h, need * sizeof *d, cudaMemcpyHostToDevice));
    GQ_TRY(gq_launch(encoder_dwte_kernel, dim3(U, gq_cuda_blocks(C, 128)), 128, 0, dwte, dout, d + BT, d + 2 * BT,
                     d + 3 * BT + 1, C));
    GQ_TRY(gq_launch(encoder_dwpe_kernel, gq_cuda_blocks((size_t)T * C, 256), 256, 0, dwpe, dout, B, T, C));
    return GQ_OK;
}
