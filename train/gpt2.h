/* gpt2: the GPT-2 model written once against the backend op table. Parameters, gradients,
 * AdamW state and activations are each ONE allocation, sized from the config and the largest
 * (B, T) up front; forward, backward and update allocate nothing. Weights are (out, in) as in
 * nn.Linear; the token embedding is tied to the LM head and padded to Vp rows (the loss
 * ignores the padding, whose rows stay zero). */
#ifndef GQ_GPT2_H
#define GQ_GPT2_H

#include "backend.h"
#include "gpt2_layout.h"
#include "qplan.h"

#include <stddef.h>
#include <stdint.h>




/* One pointer per parameter tensor; per-layer tensors hold all layers, layer-major. */
typedef struct {
    float *wte;      /* (Vp, C) */
    float *wpe;      /* (maxT, C) */
    float *ln1w;     /* (L, C) */
    float *ln1b;     /* (L, C) */
    float *qkvw;     /* (L, 3C, C) */
    float *qkvb;     /* (L, 3C) */
    float *attprojw; /* (L, C, C) */
    float *attprojb; /* (L, C) */
    float *ln2w;     /* (L, C) */
    float *ln2b;     /* (L, C) */
    float *fcw;      /* (L, 4C, C) */
    float *fcb;      /* (L, 4C) */
    float *fcprojw;  /* (L, C, 4C) */
    float *fcprojb;  /* (L, C) */
    float *lnfw;     /* (C) */
    float *lnfb;     /* (C) */
} gq_gpt2_tensors;



typedef struct gq_gpt2 {
    gq_gpt2_config cfg;
    const gq_backend *be;
    int B_max, T_max;
    size_t tensor_numel[GQ_GPT2_N_TENSORS]; /* all layers */
    size_t n_params;
    float *params_mem, *grads_mem, *m_mem, *v_mem;
    gq_gpt2_tensors params, grads;
    float *acts_mem;
    size_t n_acts;
    size_t n_scratch;
    size_t att_stride, att_scratch; /* floats of a.att per layer and of a.d_att (attention_floats) */
    /* bf16_operands at planning: ln1, qkv, atty, ln2, fch, fch_gelu, lnf and logits hold bf16
     * (backend.h); their floats per layer (B_max T_max values of C channels, 3C for qkv, 4C for
     * fch and fch_gelu) */
    int act16;
    size_t act_c, act_3c, act_4c;
    /* activations, laid out for (B_max, T_max); see gpt2.c */
    struct {
        /* (the attention and MLP projections write into residual2 / residual3, which then add
         * the stream in place: the backward never reads a projection's output) */
        float *encoded, *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *residual2, *ln2, *ln2_mean, *ln2_rstd,
            *fch, *fch_gelu, *residual3, *lnf, *lnf_mean, *lnf_rstd, *logits, *lse, *losses;
        float *d_res, *d_a, *d_b, *d_att; /* backward scratch */
        int32_t *inputs, *targets;
    } a;
    /* The weights the forward and backward use: `w` is `params` (the fp32 masters) unless a
     * working copy is in use, then `w` is `work`, carved from qat_mem: with QAT, a copy of the
     * parameters whose selected weights are replaced by their fake-quant (quantize + dequantize
     * with kernels/quant.h); in bf16 precision, the matrices stochastically rounded to bf16, as
     * bf16 arrays (w16) where the backend takes bf16 operands; refreshed once per optimizer
     * step. Layer l of tensor i starts wl[i] floats after layer l-1. Gradients flow to the fp32
     * latent weights (straight-through), except where a value was clipped (qat_mask 0). */
    gq_gpt2_tensors w, work;
    size_t wl[GQ_GPT2_N_TENSORS];
    int w16;
    size_t work_floats; /* allocated in qat_mem */
    float *qat_mem;
    uint8_t *qat_mask;
    int qat_on;
    int matmul;          /* GQ_MATMUL_* */
    /* distillation: when distill_w > 0 the backward's target distribution is (1 - w) one-hot +
     * w softmax(teacher logits) (a teacher model's a.logits / a.lse of the same batch) */
    float distill_w;
    const float *distill_logits, *distill_lse;
    uint64_t sr_seed;    /* bf16 stochastic rounding stream */
    int64_t sr_step;     /* step of the last refresh */
    int n_qat;                 /* selected tensors */
    struct gq_qat_tensor {
        size_t offset;         /* into the parameter array */
        int tensor, layer;     /* gq_gpt2_tensor index and layer (0 for whole-model tensors) */
        int rows, cols;
        gq_qspec spec;
        char name[96];
        long lsq_off;          /* spec.lsq: its first scale in the learned scales, else -1 */
    } *qat;
    /* Learned step sizes (QAT with -lsq): one scale per group of every -lsq tensor, trained by
     * AdamW beside the weights (no weight decay; lr x lsq_lr); four arrays of n_lsq floats in
     * one allocation: the scales, their gradients, AdamW's m and v. They start from the format's
     * rule over the masters when QAT starts (or come from a checkpoint). lsq_on 0: the rule
     * instead (the trainer's PTQ row). */
    size_t n_lsq;
    float *lsq_mem;
    int lsq_on;
    float lsq_lr;
    void *qat_work;            /* backend fake-quant workspace for the largest selected tensor */
    uint64_t *qat_status;      /* (n_qat) backend memory: each tensor's finite check (fakequant_forward) */
    uint64_t *qat_status_host; /* (n_qat) read back once per refresh */
    int qat_act8;              /* W8A8: the inputs of the selected products fake-quantized to int8 */
    float *host_losses; /* (B_max * T_max) */
    int last_B, last_T;  /* of the last forward */
    int n_targets;       /* non-ignored targets in the last forward */
    int ce_fused;        /* the last forward left the loss's gradient in the logits (forward_backward) */
} gq_gpt2;


int gq_gpt2_create(gq_gpt2 **out, const gq_gpt2_config *cfg, const gq_backend *be, int B_max, int T_max);
void gq_gpt2_free(gq_gpt2 *m);

/* GPT-2 initialisation: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases
 * 0, layernorms (1, 0), padded embedding rows 0. Deterministic in the seed. */
int gq_gpt2_init(gq_gpt2 *m, uint64_t seed);

/* inputs, targets: host (B, T) ids; targets may be NULL (no loss) and -1 marks ignored
 * positions. *loss = mean cross-entropy over non-ignored targets. */
int gq_gpt2_forward(gq_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss);
/* Logits (Vp floats) of position (b, t) of the last forward, copied to host (widened from bf16
 * where the model keeps them in bf16: bf16 operands). */
int gq_gpt2_logits(gq_gpt2 *m, int b, int t, float *host_out);

/* Calibration for activation-aware quantization (gpt2q-export --calib): after a forward on the
 * CPU backend in fp32, adds the squares of every quantizable weight's input per input channel
 * (the tokens of that forward) to acc, laid out by gq_gpt2_calib_offset; gq_gpt2_calib_size
 * doubles in all. */
/* GPTQ's calibration (train/gptq_run.h): a forward through the embedding and the first
 * n_layers blocks only (no head, no loss; n_layers = n_layer runs the final layernorm too, the
 * head's input, but not the head), and then the input of weight tensor i (gpt2_layout.c's index: qkv, attention
 * projection, fc, MLP projection, the tied embedding as the LM head) at layer l (0 for the
 * head): (B T, cols) fp32 values, or NULL for other tensors / backends / bf16. */
int gq_gpt2_forward_layers(gq_gpt2 *m, const int32_t *inputs, int B, int T, int n_layers);
const float *gq_gpt2_weight_input(const gq_gpt2 *m, int i, int l);
/* The same from the residual stream entering block `first` (x: B T C floats of the model's
 * backend memory, as gq_gpt2_residual gave them; first = n_layers = n_layer: the final
 * layernorm alone), through block n_layers - 1; and the stream after block l (l = -1: the
 * embedding's output) of the last forward: what GPTQ's driver caches so that each block runs
 * once per stage instead of the whole prefix again. */
int gq_gpt2_forward_from(gq_gpt2 *m, const float *x, int B, int T, int first, int n_layers);
const float *gq_gpt2_residual(const gq_gpt2 *m, int l);
size_t gq_gpt2_calib_size(const gq_gpt2_config *c);
/* Where tensor i (gpt2_layout's index), layer l, has its cols importances in acc; -1 if it is
 * not a weight that a quantization plan can select. */
long gq_gpt2_calib_offset(const gq_gpt2_config *c, int i, int l);
int gq_gpt2_calib_accumulate(const gq_gpt2 *m, double *acc);

int gq_gpt2_zero_grad(gq_gpt2 *m);
/* Backward of the last forward (which needs targets); the loss is scaled by loss_scale
 * (1/grad_accum for accumulation). Gradients accumulate into m->grads. */
int gq_gpt2_backward(gq_gpt2 *m, float loss_scale);
/* A training micro-step: gq_gpt2_forward then gq_gpt2_backward(loss_scale), the loss and its
 * gradient in one pass over the logits where the backend fuses them (not with distillation);
 * the same loss and gradients up to the order of the log-sum-exp's sum. */
int gq_gpt2_forward_backward(gq_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                             float loss_scale, float *loss);
/* Global L2 norm of all gradients. */
int gq_gpt2_grad_norm(gq_gpt2 *m, float *norm);
/* One AdamW step (t from 1) with gradients multiplied by grad_scale; decay on 2-D tensors only. */
int gq_gpt2_update(gq_gpt2 *m, float lr, float beta1, float beta2, float eps, float weight_decay, int t,
                   float grad_scale);

/* Enable QAT with a plan. Selected 2-D weights are listed in m->qat; GQ_EINVAL if the plan
 * selects nothing, GQ_ESHAPE if a spec does not fit a tensor. */
int gq_gpt2_qat_enable(gq_gpt2 *m, const gq_qplan *plan);
/* Mixed precision: GQ_MATMUL_FP32 | TF32 | BF16 (backend.h) for every matrix product. With
 * BF16 the forward and backward also use a working copy of the weights whose 2-D matrices are
 * stochastically rounded to bf16 from the fp32 master weights once per step (seeded by seed
 * and the step, so a resumed run repeats the same bits); QAT-selected weights hold their
 * fake-quant values instead. GQ_EUNSUPPORTED where the backend has no such products. */
int gq_gpt2_set_precision(gq_gpt2 *m, int matmul, uint64_t seed);
/* Make the working weights of optimizer step `step` from the master weights: fake-quant of the
 * QAT-selected weights, bf16 stochastic rounding of the other matrices (see above). A no-op
 * without QAT or bf16. Call once per step before the forward. */
int gq_gpt2_refresh_weights(gq_gpt2 *m, int64_t step);
/* The stochastic-rounding stream of step `step`: parameter element i draws gq_sr_bits(stream, i) */
uint64_t gq_gpt2_sr_stream(const gq_gpt2 *m, int64_t step);
/* Fake-quant of the QAT-selected weights on (1, the default once enabled) or off (0: the
 * forward uses the latent weights, in bf16 precision rounded to bf16 as the rest); refreshes
 * the working weights. A no-op without QAT. */
int gq_gpt2_set_fakequant(gq_gpt2 *m, int on);
/* W8A8 QAT: with fake-quant on, the input of every product whose weight is QAT-selected (qkv,
 * attention projection, fc, MLP projection of a layer; the LM head for the tied embedding) is
 * fake-quantized to int8 in blocks of 32 along its channels (quant.h's gq_act8_fake_block: the
 * inference runner's integer-path activations); the gradient passes straight through, and the
 * weight gradients use the quantized inputs (what the forward multiplied). GQ_ESHAPE unless
 * n_embd is a multiple of 32. */
int gq_gpt2_set_act8(gq_gpt2 *m, int on);
/* Zero the gradients of clipped values (after backward, before the norm and update); with
 * learned scales, their gradients from the weights' (quant.h's gq_lsq_backward_value). */
int gq_gpt2_qat_mask_grads(gq_gpt2 *m);
/* The learned scales (host copies, n_lsq floats each; NULL: not wanted), for checkpoints. */
int gq_gpt2_lsq_get(const gq_gpt2 *m, float *scales, float *am, float *av);
int gq_gpt2_lsq_set(gq_gpt2 *m, const float *scales, const float *am, const float *av);
/* Learned scales on (1, the default) or off (0: every -lsq tensor by its format's rule, as
 * RTN PTQ would); refreshes the working weights. */
int gq_gpt2_set_lsq(gq_gpt2 *m, int on);

/* Sizes in bytes, for the trainer's report. */
size_t gq_gpt2_param_bytes(const gq_gpt2 *m);
/* The device bytes a model of this shape would allocate on backend `be` for (B, T) in the
 * backend's current precision mode (what gq_gpt2_create and, with working_copy, bf16 precision
 * or QAT add): for choosing a batch before creating the model */
size_t gq_gpt2_plan_bytes(const gq_gpt2_config *cfg, const gq_backend *be, int B, int T, int working_copy);
size_t gq_gpt2_act_bytes(const gq_gpt2 *m);

#endif
