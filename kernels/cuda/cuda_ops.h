/* cuda_ops: C entry points of the CUDA backend (fp32). Pointers named d_* are device memory;
 * shapes and semantics are backend.h's, op for op (the CPU backend is the reference). Every
 * function returns a gq error code (GQ_EDEVICE with a detail message on CUDA errors). Work is
 * queued on the default stream; results are ready after gq_cuda_sync or a download. */
#ifndef GQ_CUDA_OPS_H
#define GQ_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "qmatmul.h"
#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gq_backend;
/* The CUDA backend's op table (device memory, fp32). */
const struct gq_backend *gq_backend_cuda(void);

/* Number of usable CUDA devices (0 when there is no GPU or no driver). */
int gq_cuda_device_count(void);
int gq_cuda_alloc(void **d_ptr, size_t bytes); /* zero-filled */
int gq_cuda_free(void *d_ptr);
int gq_cuda_upload(void *d_dst, const void *src, size_t bytes);
int gq_cuda_download(void *dst, const void *d_src, size_t bytes);
int gq_cuda_zero(void *d_ptr, size_t bytes);
int gq_cuda_copy(void *d_dst, const void *d_src, size_t bytes);
/* "NVIDIA H200, 132 SMs, 139.8 GiB" for device 0 */
int gq_cuda_device_name(char *buf, size_t size);
/* cudaMemGetInfo: free and total bytes on device 0 */
int gq_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
int gq_cuda_sync(void);

int gq_cuda_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B, int T, int C);
int gq_cuda_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B, int T, int C);
int gq_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C);
/* The bf16 mode's product operands (backend.h's bf16_operands; 1 in GQ_MATMUL_BF16 mode): the
 * op table's layernorm_forward and gelu_forward then write bf16 outputs (these two functions,
 * the same values rounded to nearest even), attention_forward a bf16 output, matmul_forward /
 * matmul_backward and attention_backward read their inp / out as bf16, matmul its weight and
 * the encoder its wte / wpe as bf16 arrays (the model's bf16 working weights). The gq_cuda_* functions
 * above and below keep fp32 outputs whatever the mode (the inference runner calls them).
 * GQ_CUDA_BF16_OPERANDS=0 in the environment: 0 in every mode (fp32 operands copied to bf16 per
 * product, as before session 9). */
int gq_cuda_bf16_operands(void);
int gq_cuda_layernorm_forward_bf16(void *out, float *mean, float *rstd, const float *inp, const float *weight,
                                   const float *bias, int N, int C);
/* bf16 operands: the GELU of a bf16 pre-activation (the MLP's product output) into bf16, and
 * its backward reading that pre-activation and writing its gradient in bf16 (rounded to
 * nearest: the MLP's first product's output gradient; dout fp32) */
int gq_cuda_gelu_forward_bf16(void *d_out, const void *d_inp, size_t n);
int gq_cuda_gelu_backward_bf16(void *d_dinp, const void *d_inp, const float *d_dout, size_t n);
int gq_cuda_encoder_forward_bf16(float *out, const int32_t *inp, const void *wte, const void *wpe, int B, int T,
                                 int C);
int gq_cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C);
/* out_bf16: out is bf16, the fp32 result with its bias rounded once (backend.h) */
int gq_cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC,
                           int out_bf16);
/* dout_bf16: dout is cross-entropy's in-place bf16 gradient (backend.h) */
int gq_cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC, int dout_bf16);
/* backend.h's fused forms: the product's epilogue through cuBLASLt where it takes it (bias, the
 * residual as its C input, GELU with the pre-activation as aux, GELU's derivative from it),
 * else the separate kernels (cublaslt.cu) */
int gq_cuda_matmul_residual_forward(float *out, const float *residual, const float *inp, const float *weight,
                                    const float *bias, int N, int C, int OC);
int gq_cuda_matmul_gelu_forward(float *out, float *pre, const float *inp, const float *weight, const float *bias, int N,
                                int C, int OC);
int gq_cuda_matmul_backward_dgelu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, const float *pre, int N, int C, int OC);
/* since start: products cuBLASLt ran with an epilogue, and requests it refused (the caller then
 * ran separate kernels; a refused fused form asks again for its plain product with a bias, which
 * cuBLASLt may take: two requests for one product) */
void gq_cuda_lt_counts(long long *fused, long long *refused);
/* 0 when GQ_CUDA_LT=0 in the environment (or gq_cuda_lt_enable(0)) turned the epilogues off */
int gq_cuda_lt_enabled(void);
/* epilogues on (1) or off (0: the separate kernels; tests and benchmarks compare the two);
 * returns the previous state */
int gq_cuda_lt_enable(int on);
int gq_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
int gq_cuda_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *out,
                               const float *att, int B, int T, int C, int NH);
/* backend.h's attention_floats: in bf16 mode with the tensor-core kernels, B*NH*T (the
 * log-sum-exp) saved and no scratch; B*NH*T*T each otherwise */
void gq_cuda_attention_floats(int B, int T, int C, int NH, size_t *saved, size_t *scratch);
/* bf16 mode's attention form for this process: 1 the tensor-core flash kernels (where the head
 * size allows), 0 the cuBLAS products on bf16 copies with bf16 (T, T) matrices. Unset, the
 * environment decides at the first use (GQ_CUDA_ATTN=cublas: 0; else 1). Change it only between
 * models: a model plans its activations for the form (attention_floats). */
void gq_cuda_set_attention_tc(int on);
/* layernorm_backward's form: 1 (the default) one pass over the rows, 4 columns a lane as float4
 * where C % 4 == 0 and C <= 1024, else a column a lane; 2 one pass a column a lane (session 15's
 * kernel); 0 the two-pass form (rows wider than 2048 always). For benchmarks and tests; returns
 * the previous setting */
int gq_cuda_set_layernorm_fused(int form);
/* fake-quant of the absmax formats with a warp's lanes per group (1, the default) or a thread
 * per group (0, session 7's form): for benchmarks and tests; returns the previous setting */
int gq_cuda_set_fakequant_warp(int on);
/* Flash-style attention (no (T,T) matrix): lse (B,NH,T) saves the log-sum-exp of the scaled
 * scores; the backward recomputes the probabilities (out is the forward's output). Head size
 * at most 128. Same results as the op-table attention to fp32 round-off. */
int gq_cuda_attention_forward_flash(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
int gq_cuda_attention_backward_flash(float *dqkv, const float *dout, const float *qkv, const float *out,
                                     const float *lse, int B, int T, int C, int NH);
/* Tensor-core flash attention (attention_tc.cu): bf16 operands (q, k, v, the output gradient,
 * the probabilities and score gradients rounded to bf16 on the way into WMMA products), fp32
 * accumulation, softmax statistics and outputs; lse as above. Head sizes 16..128 in steps of 16
 * (gq_cuda_attention_tc_supported; GQ_EUNSUPPORTED otherwise). The bf16 training mode's
 * attention op; deterministic. */
int gq_cuda_attention_tc_supported(int C, int NH);
/* the kernels (GQ_TC_*): registers and mma.sync (FlashAttention-2's form; for head sizes up to
 * 64, GPT-2's), pipelined (GQ_TC_PIPE, the default: 128-query forward blocks, cp.async double
 * buffering, ldmatrix.trans, the output gradient as one bf16 copy; session 19, measured on the
 * H200 in session 25) or as session 8 wrote them (GQ_TC_MMA; the same bits), or score tiles
 * staged through shared memory for WMMA (GQ_TC_WMMA; always for head sizes over 64 in the
 * backward). GQ_CUDA_TC=wmma / mma in the environment, read at the first call, when the setter
 * was not called */
enum { GQ_TC_WMMA = 0, GQ_TC_MMA = 1, GQ_TC_PIPE = 2 };
void gq_cuda_set_attention_tc_form(int form);
int gq_cuda_attention_forward_tc(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
int gq_cuda_attention_backward_tc(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                  int B, int T, int C, int NH);
/* the same with qkv, the output (out) and dqkv in bf16: the bf16 mode's op with bf16 operands */
int gq_cuda_attention_forward_tc16(void *out, float *lse, const void *qkv, int B, int T, int C, int NH);
int gq_cuda_attention_backward_tc16(void *dqkv, const float *dout, const void *qkv, const void *out,
                                    const float *lse, int B, int T, int C, int NH);
/* Products on packed quantized weights (qmatmul.h's gq_qmat with device pointers):
 * y (M, rows) = x (M, cols) W^T + bias (may be NULL) with quant.h's values. M < 16: dequantized
 * in registers (the fast paths need 16-byte-aligned rows); M >= 16: a tiled fp32 GEMM whose
 * weight tiles are dequantized as they load. Any format and group; nothing allocated. */
int gq_cuda_qmatmul(float *y, const float *x, int M, const gq_qmat *w, const float *bias);
/* the widest row the few-row layernorm and the decode product's layernorm prologue take */
enum { GQ_CUDA_LN_ROW_MAX = 2048 };
/* What a decode product does around the product, so that a transformer layer's decode step is 5
 * launches: ln_w / ln_b: x is first layer-normalized with these (M = 1, cols <= 2048; the bits of
 * gq_cuda_layernorm_forward on one row); gelu: act_math.h's GELU of each output (any M; the MLP's
 * first product); residual: the
 * output is added to y's old value (M = 1; y = the residual stream, x another buffer); act8: the
 * input row (after the layernorm where there is one) becomes its int8 values in blocks of 32, as
 * gq_cuda_act_fakequant makes them (M = 1, cols a multiple of 32: --act int8's decode step). */
typedef struct {
    const float *ln_w, *ln_b;
    int gelu, residual, act8;
} gq_qmm_ep;
int gq_cuda_qmatmul_ep(float *y, const float *x, int M, const gq_qmat *w, const float *bias, const gq_qmm_ep *ep);
/* d_out, d_inp: (n) fp32 */
int gq_cuda_gelu_forward(float *d_out, const float *d_inp, size_t n);
/* d_dinp = gelu'(d_inp) * d_dout; all (n) fp32 */
int gq_cuda_gelu_backward(float *d_dinp, const float *d_inp, const float *d_dout, size_t n);
int gq_cuda_residual_forward(float *out, const float *a, const float *b, size_t n);
/* x += r (N x C), then out = layernorm(x) with its mean and rstd: one kernel when N <= 64 */
int gq_cuda_residual_layernorm(float *x, const float *r, float *out, float *mean, float *rstd, const float *weight,
                               const float *bias, int N, int C);
int gq_cuda_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                                 int Vp);
int gq_cuda_crossentropy_backward(float *logits, const float *lse, const int32_t *targets, float dloss, int N, int V,
                                  int Vp);
int gq_cuda_crossentropy_distill_backward(float *logits, const float *lse, const float *tlogits, const float *tlse,
                                          const int32_t *targets, float w, float dloss, int N, int V, int Vp);
/* the same on bf16 logits (the LM head's output with bf16 operands, backend.h): the forward
 * reads them, the backwards overwrite them with their gradients in bf16 (rounded to nearest) */
/* crossentropy_forward + crossentropy_backward in one kernel (backend.h
 * crossentropy_forward_backward; bf16: bf16 logits); GQ_EUNSUPPORTED where a row of V logits does
 * not fit in a block's shared memory */
int gq_cuda_crossentropy_fused(float *losses, float *lse, void *logits, const int32_t *targets, float dloss, int N,
                               int V, int Vp, int bf16);
/* calls of gq_cuda_crossentropy_fused that ran the fused kernel, and that it refused (GQ_CUDA_CE_FUSED=0, or a row
 * too long for shared memory) */
void gq_cuda_ce_fused_counts(long long *taken, long long *refused);
int gq_cuda_crossentropy_forward_bf16(float *losses, float *lse, const void *logits, const int32_t *targets, int N,
                                      int V, int Vp);
int gq_cuda_crossentropy_backward_bf16(void *logits, const float *lse, const int32_t *targets, float dloss, int N,
                                       int V, int Vp);
int gq_cuda_crossentropy_distill_backward_bf16(void *logits, const float *lse, const void *tlogits, const float *tlse,
                                               const int32_t *targets, float w, float dloss, int N, int V, int Vp);
/* *out (host) = sum of squares of d_g (n), in double */
int gq_cuda_sum_squares(double *out, const float *g, size_t n);
int gq_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                         float eps, float weight_decay, int t, float grad_scale);
size_t gq_cuda_fakequant_workspace(int rows, int cols, const gq_qspec *spec);
/* out: floats, or bf16 (out_bf16: the values rounded to nearest even); status: backend.h's
 * fakequant_forward (device memory; NULL: wait and answer GQ_ENAN for a non-finite value) */
int gq_cuda_fakequant_forward(void *out, uint8_t *mask, const float *w, int rows, int cols, const gq_qspec *spec,
                              void *work, int out_bf16, uint64_t *status);
int gq_cuda_fakequant_backward(float *grad, const uint8_t *mask, size_t n);
/* learned step sizes (backend.h's fakequant_lsq_forward / _backward) */
int gq_cuda_fakequant_lsq_forward(void *out, const float *w, const float *scales, int rows, int cols,
                                  const gq_qspec *spec, int out_bf16, uint64_t *status);
int gq_cuda_fakequant_lsq_backward(float *grad, float *dscales, const float *w, const float *scales, int rows,
                                   int cols, const gq_qspec *spec);
/* W8A8 activation fake-quant in place (backend.h act_fakequant; bf16: x a bf16 array) */
int gq_cuda_act_fakequant(float *x, size_t n, int bf16);
int gq_cuda_round_bf16_sr(void *out, const float *in, size_t n, uint64_t seed, uint64_t base, int out_bf16);
/* GQ_MATMUL_FP32 | TF32 | BF16 (backend.h) for every cuBLAS product from now on */
int gq_cuda_set_matmul(int mode);

/* CUDA graphs: ops called between begin and end are recorded, not run; launch replays them
 * (their arguments fixed at capture: pass what changes through device memory). end returns an
 * error (and no graph) if the capture failed; the caller then runs the ops directly. */
int gq_cuda_graph_begin(void);
int gq_cuda_graph_end(void **exec);
int gq_cuda_graph_launch(void *exec);
void gq_cuda_graph_free(void *exec);
/* Device-to-device copy bandwidth, bytes read + written per second (best of 5 x 1 GiB). */
int gq_cuda_copy_bandwidth(double *bytes_per_s);

/* ---- the inference runner's kernels (infer.cu); one sequence, positions from device memory ---- */
/* x (M, C) = wte row d_tokens[m] + wpe row (*d_pos + m), both read with quant.h's values (wpe: an
 * fp32 matrix, or fp16 / bf16 through h16) */
int gq_cuda_embed(float *x, const gq_qmat *wte, const gq_qmat *wpe, const int32_t *d_tokens, const int32_t *d_pos, int M,
                  int C);
/* the keys and values of qkv (M, 3C) into rows *d_pos + m of the caches kc, vc (T, C): fp16
 * (quant.h's rounding) if f16, else fp32 */
int gq_cuda_kv_store(void *kc, void *vc, int f16, const float *qkv, const int32_t *d_pos, int M, int C);
/* out (M, C): query m (at position *d_pos + m) attends to positions 0..*d_pos + m of the cache,
 * or, with own_pass (a pass from position 0), to this pass's own fp32 qkv rows; T: the cache's
 * positions (at most 12032) */
int gq_cuda_attend(float *out, const float *qkv, const void *kc, const void *vc, int f16, const int32_t *d_pos,
                   int own_pass, int M, int NH, int C, int T);
/* one query (the decode step): gq_cuda_kv_store of its key and value, then gq_cuda_attend
 * (own_pass 0), in one launch */
int gq_cuda_store_attend(float *out, const float *qkv, void *kc, void *vc, int f16, const int32_t *d_pos, int NH,
                         int C, int T);
/* One query (M = 1, not own_pass) splits its positions over up to 16 blocks a head, merged by
 * the head's last block (flash-decoding; partials in one device-global buffer: one decode
 * stream at a time); on = 0: one block a head walks them all, as before (for comparison). */
void gq_cuda_attend_split(int on);
/* d_tokens[0] = d_next[0], d_pos[0] += 1: the runner's decode step leaves its successor's input */
int gq_cuda_decode_advance(int32_t *d_tokens, int32_t *d_pos, const int32_t *d_next);
/* *d_out = the index of the largest of x[0..n) (the first of equal values) */
int gq_cuda_argmax(int32_t *d_out, const float *x, int n);
/* *d_out = the token infer/sample.h's rule picks from logits x[0..V) with the uniform draw
 * gq_philox_unit(d_rng[0], d_rng[1]) (kernels/philox.h: the host sampler's draw of that index),
 * then d_rng[1] += 1; temperature 0: the argmax, d_rng untouched. d_prob: V floats of scratch.
 * *d_out = -1 when more than 2048 tokens could be kept (the host then samples from the logits
 * with the same draw). */
int gq_cuda_sample(int32_t *d_out, const float *x, int V, float temperature, int top_k, float top_p, uint64_t *d_rng,
                   float *d_prob);

#ifdef __cplusplus
}
#endif

#endif
