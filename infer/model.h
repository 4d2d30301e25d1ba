/* model (infer/): GPT-2 for inference on packed weights. A quantized export is loaded as it is
 * stored: codes, scales and zero points go straight from the file into ONE weight arena and
 * stay packed; the matmuls dequantize in registers (kernels/qmatmul.h). A float checkpoint,
 * an HF safetensors model or an llm.c .bin loads into the same arena as fp32. The tied token
 * embedding / LM head is stored once.
 *
 * The run state (KV cache, activations, scratch) is planned once by gq_im_plan for at most B
 * sequences of n_ctx positions and at most `chunk` new tokens per sequence per call; nothing is
 * allocated per token. A forward call appends n tokens to each of the B sequences at
 * position pos (prefill: n = prompt length; decode: n = 1). */
#ifndef GQ_INFER_MODEL_H
#define GQ_INFER_MODEL_H

#include "gpt2_layout.h"
#include "qmatmul.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float *ln1w, *ln1b, *ln2w, *ln2b, *qkvb, *attprojb, *fcb, *fcprojb;
    gq_qmat qkv, attproj, fc, fcproj;
} gq_im_layer;

typedef struct {
    gq_gpt2_config cfg;
    char path[1024];
    char kind[32];     /* "fp32", or the format of the most common quantized weight */
    char formats[256]; /* every tensor format in the file, e.g. "int4-g64 x49, f32 x100" */
    int quantized;
    int trained_act8;  /* an export of weights trained with int8 activations (W8A8 QAT) */
    gq_qmat wte; /* (Vp, C): embedding and tied LM head */
    float *wpe, *lnfw, *lnfb;
    gq_im_layer *layers;
    gq_gpt2_tensor_ref *refs; /* every tensor, canonical order */
    int n_refs;
    void *arena; /* every weight */
    size_t arena_bytes;
    size_t weight_bytes; /* what one decode step reads (wpe: one row) */
    double load_seconds;

    /* run state (gq_im_plan) */
    int kv_f16; /* the KV cache in fp16 (default) or fp32: set before gq_im_plan */
    int B, n_ctx, chunk, M_max;
    float *kcache, *vcache;        /* (L, B, n_ctx, C), fp32 cache */
    uint16_t *kcache16, *vcache16; /* the same, fp16 cache */
    float *kvconv;                 /* fp16 cache, chunked prefill: per thread, K and V of one head as fp32 */
    float *x, *ln, *mean, *rstd, *qkv, *atty, *tmp, *fch, *logits, *att;
    int8_t *aq;
    float *ad;
    int32_t *abs_;
    float *panel;
    size_t panel_floats;
    void *state; /* the one run-state allocation */
    size_t kv_bytes, act_bytes;
    int logits_rows; /* rows of `logits` */
    int scoring;     /* the forward in progress scores targets (exact products: no int8 activations on 16+ tokens) */
    int act8;        /* --act int8: products on integer-path weights take int8 activations at any M (the
                        16+ token path multiplies their int8 values, q * d, as W8A8 QAT trains them) */
    float *row_losses; /* set by the caller, or NULL: a scoring forward also writes each row's loss
                          there (rows whose target is < 0: 0) */

    /* --device cuda (model_cuda.c): set device before gq_im_plan */
    int device;               /* GQ_IM_CPU or GQ_IM_CUDA */
    struct gq_im_cuda *cuda;  /* device weights and run state */
    int32_t next_token;       /* CUDA: the pick of the last forward made on the GPU (-1: sample on the host) */
    float temperature, top_p; /* CUDA: the device's sampler (infer/sample.h's rule; temperature 0: greedy) */
    int top_k;
    uint64_t sample_seed, sample_draw; /* CUDA: the next forward's pick draws value sample_draw of
                                          the Philox stream sample_seed (infer/sample.h) */
    int skip_logits; /* CUDA: do not download the logits when the device picked the token */
    int dev_graph;   /* CUDA: 1 when the decode step replays as a captured CUDA graph (GQ_CUDA_GRAPH=0: never) */
    int dev_fused;   /* CUDA: 1 when layernorms and residual adds run inside the products (GQ_CUDA_FUSED=0: never) */
    int dev_half;    /* CUDA, set before gq_im_plan: fp32 weight matrices (the linears and the
                        embedding) stored on the device as 0 fp32, 1 fp16, 2 bf16 */
    size_t dev_weight_bytes, dev_kv_bytes,
        dev_state_bytes; /* device memory: weights; KV cache; run state (KV included) */
    size_t
        dev_read_bytes; /* what one decode step reads on the device (weight_bytes, fp32 matrices halved by dev_half) */
} gq_im;

enum { GQ_IM_CPU = 0, GQ_IM_CUDA = 1 };

/* Load a model file (any of the kinds above). Errors name the file and the problem. */
int gq_im_load(gq_im **out, const char *path);
void gq_im_free(gq_im *m);

/* Plan the run state: B sequences of up to n_ctx positions, up to chunk tokens per call. The
 * KV cache is fp16 unless m->kv_f16 was set to 0 first (fp32: the trainer's numbers exactly).
 * A pass from position 0 (prefill, eval windows) attends over its own fp32 keys and values
 * either way; only later tokens read the cache. */
int gq_im_plan(gq_im *m, int B, int n_ctx, int chunk);

/* Run n tokens (tokens[b * n + i]) of each of the B' <= B sequences at positions pos..pos+n-1
 * (the cache must hold positions < pos). With targets (same layout, -1 = ignored): adds the
 * summed cross-entropy to *loss_sum and the scored count to *n_scored. Without: the logits of
 * each sequence's last token are in gq_im_logits(m, b). */
int gq_im_forward(gq_im *m, const int32_t *tokens, int Bn, int n, int pos, const int32_t *targets, double *loss_sum,
                  long *n_scored);
const float *gq_im_logits(const gq_im *m, int b);

#endif
