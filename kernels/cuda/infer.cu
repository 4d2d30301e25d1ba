/* infer (CUDA): the inference runner's own kernels beside the op table's: the token embedding
 * read from packed weights, the KV cache store (fp16 with quant.h's rounding, or fp32),
 * attention of new tokens over the cache, and a greedy argmax. Positions come from device
 * memory (d_pos), so that a decode step captured once as a CUDA graph replays for every
 * position. One sequence per call (the runner's plan on the GPU has B = 1). Also the sampler of
 * infer/sample.h on the device (temperature, top-k, top-p with the same rule, the uniform draw
 * from device memory). */
#include "cuda_ops.h"
#include "cuda_util.cuh"
#include "act_math.h"
#include "qmatmul.h"

#include "infer.cuh"

extern "C" int gq_cuda_embed(float *x, const gq_qmat *wte, const gq_qmat *wpe, const int32_t *d_tokens,
                             const int32_t *d_pos, int M, int C) {
    return gq_inf_embed(x, wte, wpe, d_tokens, d_pos, M, C);
}

extern "C" int gq_cuda_kv_store(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M, int C) {
    return gq_inf_kv_store(kc, vc, f16, qkv, d_pos, M, C);
}

extern "C" int gq_cuda_attend(float *out, const float *qkv, const void *kc, const void *vc, int f16,
                              const int32_t *d_pos, int own_pass, int M, int NH, int C, int T) {
    return gq_inf_attend(out, qkv, (void *)kc, (void *)vc, f16, d_pos, own_pass, 0, M, NH, C, T);
}

extern "C" int gq_cuda_store_attend(float *out, const float *qkv, void *kc, void *vc, int f16, const int32_t *d_pos,
                                    int NH, int C, int T) {
    return gq_inf_attend(out, qkv, kc, vc, f16, d_pos, 0, 1, 1, NH, C, T);
}

extern "C" void gq_cuda_attend_split(int on) { g_att_split = on; }

extern "C" int gq_cuda_argmax(int32_t *d_out, const float *x, int n) { return gq_inf_argmax(d_out, x, n); }

extern "C" int gq_cuda_decode_advance(int32_t *d_tokens, int32_t *d_pos, const int32_t *d_next) {
    return gq_inf_decode_advance(d_tokens, d_pos, d_next);
}

extern "C" int gq_cuda_sample(int32_t *d_out, const float *x, int V, float temperature, int top_k, float top_p,
                              uint64_t *d_rng, float *d_prob) {
    return gq_inf_sample(d_out, x, V, temperature, top_k, top_p, d_rng, d_prob);
}
