/* gpt2: see gpt2.h. The forward keeps every activation the backward needs; the backward
 * walks the layers in reverse with four scratch buffers (the residual-stream gradient, two
 * (B,T,4C) buffers and one attention-sized buffer) instead of a gradient per activation. */
#include "gpt2.h"

#include "gq_error.h"
#include "gq_rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void carve(float **dst_ptrs, float *base, const size_t *numel, int n) {
    for (int i = 0; i < n; i++) {
        dst_ptrs[i] = base;
        base += numel[i];
    }
}

enum { N_ACTS = 26 }; /* the float * fields of gq_gpt2's activations (a), then inputs and targets */
_Static_assert(sizeof(((gq_gpt2 *)0)->a) == (N_ACTS - 2) * sizeof(float *) + 2 * sizeof(int32_t *),
               "N_ACTS: one size per field of gq_gpt2's activations");

/* The activations' sizes in floats for (B, T) and the backend's current precision mode, in the
 * order of gq_gpt2's activations: the attention's per layer (*att_saved) and scratch (attention_floats:
 * the (T, T) softmax, or a log-sum-exp per row where the backend recomputes it), and the
 * per-layer floats of the activations that are bf16 with bf16 operands (two to a float): the
 * products' inputs of C and 4C channels and the outputs qkv (3C) and fch (4C); the logits are
 * bf16 then too (their gradient overwrites them in place, bf16 as the LM head's backward reads it) */
static void act_sizes(const gq_gpt2_config *cfg, const gq_backend *be, size_t B, size_t T, size_t numel[N_ACTS],
                      size_t *att_saved, size_t *att_scratch, int *act16, size_t *act_c, size_t *act_3c,
                      size_t *act_4c) {
    const size_t L = (size_t)cfg->n_layer, BT = B * T, C = (size_t)cfg->n_embd, Vp = (size_t)cfg->padded_vocab_size;
    be->attention_floats((int)B, (int)T, (int)C, cfg->n_head, att_saved, att_scratch);
    *act16 = be->bf16_operands();
    *act_c = *act16 ? (BT * C + 1) / 2 : BT * C, *act_4c = *act16 ? BT * 2 * C : BT * 4 * C;
    *act_3c = *act16 ? (BT * 3 * C + 1) / 2 : BT * 3 * C;
    const size_t sizes[N_ACTS] = {
        BT * C,           /* encoded */
        L * *act_c,       /* ln1 */
        L * BT,           /* ln1_mean */
        L * BT,           /* ln1_rstd */
        L * *act_3c,      /* qkv */
        L * *act_c,       /* atty */
        L * *att_saved,   /* att */
        L * BT * C,       /* residual2 */
        L * *act_c,       /* ln2 */
        L * BT,           /* ln2_mean */
        L * BT,           /* ln2_rstd */
        L * *act_4c,      /* fch */
        L * *act_4c,      /* fch_gelu */
        L * BT * C,       /* residual3 */
        *act_c,           /* lnf */
        BT,               /* lnf_mean */
        BT,               /* lnf_rstd */
        *act16 ? (BT * Vp + 1) / 2 : BT * Vp, /* logits (bf16 with bf16 operands: the LM head's output) */
        BT,               /* lse */
        BT,               /* losses */
        BT * C,           /* d_res */
        BT * 4 * C,       /* d_a */
        *act_4c,          /* d_b (dqkv and GELU's gradient: bf16 with bf16 operands) */
        *att_scratch,     /* d_att */
        BT,               /* inputs (int32) */
        BT,               /* targets (int32) */
    };
    memcpy(numel, sizes, sizeof sizes);
}

/* the floats of parameter tensor i (all layers of a per-layer tensor) */
static size_t tensor_numel(const gq_gpt2_config *cfg, int i) {
    size_t r, c;
    gq_gpt2_tensor_shape(cfg, i, &r, &c);
    return r * (c ? c : 1) * (gq_gpt2_tensor(i)->per_layer ? (size_t)cfg->n_layer : 1);
}

/* the parameter tensors the forward addresses per layer in the working copy (gpt2_layout.c's order) */
enum { T_WTE = GQ_GPT2_WTE, T_QKVW = GQ_GPT2_QKVW, T_ATTPROJW = GQ_GPT2_ATTPROJW, T_FCW = GQ_GPT2_FCW,
       T_FCPROJW = GQ_GPT2_FCPROJW };

/* layer l of tensor i of the weights the forward and backward use (m->w, wl floats per layer) */
static const float *wt(const gq_gpt2 *m, int i, int l) {
    return ((float *const *)&m->w)[i] + (size_t)l * m->wl[i];
}

/* The activations, planned for (B_max, T_max) and the backend's attention in its current
 * precision mode: one allocation, carved in the order of the struct. Again after a precision
 * change that changes the plan (the contents need not survive: every forward writes them). */
static int plan_acts(gq_gpt2 *m) {
    const gq_backend *be = m->be;
    size_t act_numel[N_ACTS], att_saved = 0, att_scratch = 0, act_c = 0, act_3c = 0, act_4c = 0;
    int act16 = 0;
    act_sizes(&m->cfg, be, (size_t)m->B_max, (size_t)m->T_max, act_numel, &att_saved, &att_scratch, &act16, &act_c,
              &act_3c, &act_4c);
    size_t n = 0;
    for (int i = 0; i < N_ACTS; i++) n += act_numel[i];
    if (m->acts_mem && n == m->n_acts && att_saved == m->att_stride && att_scratch == m->att_scratch &&
        act16 == m->act16)
        return GQ_OK;
    if (m->acts_mem) be->free(m->acts_mem);
    m->acts_mem = NULL;
    int rc = be->alloc((void **)&m->acts_mem, n * sizeof(float));
    if (rc) return rc;
    m->n_acts = n, m->att_stride = att_saved, m->att_scratch = att_scratch;
    m->act16 = act16, m->act_c = act_c, m->act_3c = act_3c, m->act_4c = act_4c;
    m->n_scratch = 0; /* the four backward scratch buffers (d_res, d_a, d_b, d_att) before inputs and targets */
    for (int i = N_ACTS - 6; i < N_ACTS - 2; i++) m->n_scratch += act_numel[i];
    float *ptrs[N_ACTS];
    carve(ptrs, m->acts_mem, act_numel, N_ACTS);
    float **dst = &m->a.encoded;
    for (int i = 0; i < N_ACTS - 2; i++) dst[i] = ptrs[i];
    m->a.inputs = (int32_t *)ptrs[N_ACTS - 2];
    m->a.targets = (int32_t *)ptrs[N_ACTS - 1];
    return GQ_OK;
}

/* The backend's attention must fit the plan: its precision mode is the backend's, so another
 * model (or a direct set_matmul) may have changed it since (a bf16 plan, with a log-sum-exp
 * per row, in fp32 mode would overflow). */
static int check_plan(const gq_gpt2 *m) {
    size_t saved = 0, scratch = 0;
    m->be->attention_floats(m->B_max, m->T_max, m->cfg.n_embd, m->cfg.n_head, &saved, &scratch);
    if (saved > m->att_stride || scratch > m->att_scratch || m->be->bf16_operands() != m->act16)
        return gq_errf(GQ_EINVAL, "the %s backend's precision mode changed since this model planned its activations "
                                  "(set it with gq_gpt2_set_precision)", m->be->name);
    return GQ_OK;
}

/* Tensor i's floats per layer in the working copy when `b16` (bf16 operands: the matrices as
 * bf16 arrays, each layer's starting on a float) or as floats. */
static size_t work_layer_floats(const gq_gpt2_config *cfg, int i, int b16) {
    const size_t n = tensor_numel(cfg, i) / (gq_gpt2_tensor(i)->per_layer ? (size_t)cfg->n_layer : 1);
    return b16 && gq_gpt2_tensor(i)->decay ? (n + 1) / 2 : n;
}

/* The working copy's floats, all tensors and layers (what work_copy allocates) */
static size_t work_copy_floats(const gq_gpt2_config *cfg, int b16) {
    size_t n = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++)
        n += work_layer_floats(cfg, i, b16) * (gq_gpt2_tensor(i)->per_layer ? (size_t)cfg->n_layer : 1);
    return n;
}

/* The weights the forward and backward use: the working copy (QAT's fake-quant, bf16's rounded
 * matrices) where there is one in use, else the masters; wl their floats per layer. */
static void point_weights(gq_gpt2 *m) {
    const int work = m->qat_mem && (m->qat_on || m->matmul == GQ_MATMUL_BF16);
    float *base = m->qat_mem, **dst = (float **)&m->work;
    m->w16 = work && m->act16;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t layers = gq_gpt2_tensor(i)->per_layer ? (size_t)m->cfg.n_layer : 1;
        m->wl[i] = work_layer_floats(&m->cfg, i, m->w16); /* (the masters' when !work: w16 is 0) */
        dst[i] = base;
        if (base) base += layers * m->wl[i];
    }
    m->w = work ? m->work : m->params;
}

int gq_gpt2_create(gq_gpt2 **out, const gq_gpt2_config *cfg_in, const gq_backend *be, int B, int T) {
    *out = NULL;
    gq_gpt2_config cfg = *cfg_in;
    int rc = gq_gpt2_config_check(&cfg);
    if (rc) return rc;
    if (B < 1 || T < 1 || T > cfg.block_size)
        return gq_errf(GQ_EINVAL, "batch %d x sequence %d: sequence must be in 1..block_size (%d)", B, T, cfg.block_size);
    gq_gpt2 *m = calloc(1, sizeof *m);
    if (!m) return gq_errf(GQ_ENOMEM, "out of memory");
    m->cfg = cfg;
    m->be = be;
    m->B_max = B;
    m->T_max = T;
    m->lsq_lr = 1.0f;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        m->tensor_numel[i] = tensor_numel(&cfg, i);
        m->n_params += m->tensor_numel[i];
    }
    const size_t pbytes = m->n_params * sizeof(float);
    rc = be->alloc((void **)&m->params_mem, pbytes);
    if (!rc) rc = be->alloc((void **)&m->grads_mem, pbytes);
    if (!rc) rc = be->alloc((void **)&m->m_mem, pbytes);
    if (!rc) rc = be->alloc((void **)&m->v_mem, pbytes);
    if (!rc) rc = plan_acts(m);
    const size_t BT = (size_t)B * T;
    m->host_losses = malloc(BT * sizeof(float));
    if (!rc && !m->host_losses) rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (rc) {
        gq_gpt2_free(m);
        return rc;
    }
    carve((float **)&m->params, m->params_mem, m->tensor_numel, GQ_GPT2_N_TENSORS);
    point_weights(m);
    carve((float **)&m->grads, m->grads_mem, m->tensor_numel, GQ_GPT2_N_TENSORS);
    *out = m;
    return GQ_OK;
}

void gq_gpt2_free(gq_gpt2 *m) {
    if (!m) return;
    if (m->params_mem) m->be->free(m->params_mem);
    if (m->grads_mem) m->be->free(m->grads_mem);
    if (m->m_mem) m->be->free(m->m_mem);
    if (m->v_mem) m->be->free(m->v_mem);
    if (m->acts_mem) m->be->free(m->acts_mem);
    if (m->qat_mem) m->be->free(m->qat_mem);
    if (m->qat_mask) m->be->free(m->qat_mask);
    if (m->qat_work) m->be->free(m->qat_work);
    if (m->qat_status) m->be->free(m->qat_status);
    if (m->lsq_mem) m->be->free(m->lsq_mem);
    free(m->qat_status_host);
    free(m->qat);
    free(m->host_losses);
    free(m);
}

static float normal(gq_rng *r) {
    /* Box-Muller from two 24-bit uniforms in (0, 1] */
    float u1 = 1.0f - gq_rng_float(r), u2 = gq_rng_float(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

int gq_gpt2_init(gq_gpt2 *m, uint64_t seed) {
    const gq_gpt2_config *c = &m->cfg;
    float *host = malloc(m->n_params * sizeof *host);
    if (!host) return gq_errf(GQ_ENOMEM, "out of memory");
    gq_rng r;
    gq_rng_seed(&r, seed);
    float *p = host;
    const float proj_std = 0.02f / sqrtf(2.0f * c->n_layer);
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t n = m->tensor_numel[i];
        int is_ln_weight = i == 2 || i == 8 || i == 14;
        int is_matrix = i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12;
        float std = (i == 6 || i == 12) ? proj_std : 0.02f;
        for (size_t k = 0; k < n; k++) p[k] = is_matrix ? std * normal(&r) : is_ln_weight ? 1.0f : 0.0f;
        if (i == 0) /* padded vocabulary rows stay zero */
            memset(p + (size_t)c->vocab_size * c->n_embd, 0,
                   (size_t)(c->padded_vocab_size - c->vocab_size) * c->n_embd * sizeof *p);
        p += n;
    }
    int rc = m->be->upload(m->params_mem, host, m->n_params * sizeof *host);
    free(host);
    if (!rc) rc = m->be->zero(m->m_mem, m->n_params * sizeof(float));
    if (!rc) rc = m->be->zero(m->v_mem, m->n_params * sizeof(float));
    return rc;
}

/* W8A8: 1 where the input of the product with tensor i of layer l is fake-quantized (its weight
 * is QAT-selected, fake-quant is on and int8 activations were asked for) */
static int act8_on(const gq_gpt2 *m, int i, int l) {
    if (!m->qat_on || !m->qat_act8) return 0;
    for (int k = 0; k < m->n_qat; k++)
        if (m->qat[k].tensor == i && m->qat[k].layer == l) /* (as the runner: whole blocks only) */
            return gq_act8_applies(m->qat[k].spec.format, m->qat[k].cols, gq_qgroup(&m->qat[k].spec, m->qat[k].cols));
    return 0;
}

/* The attention output's int8 values in a scratch copy (the attention backward of a backend
 * that recomputes its softmax reads the output itself); returns what the product reads. */
static int act8_copy(const gq_gpt2 *m, float *scratch, const float *atty, size_t n, const float **use) {
    GQ_TRY(m->be->copy(scratch, atty, n * (m->act16 ? 2 : 4)));
    *use = scratch;
    return m->be->act_fakequant(scratch, n, m->act16);
}

/* out (N,OC) = residual + inp @ weight^T + bias: a projection into the residual stream, in one
 * op where the backend fuses it, else the product then the residual add in place */
static int proj_residual(const gq_backend *be, float *out, const float *residual, const float *inp,
                         const float *weight, const float *bias, int N, int C, int OC) {
    if (be->matmul_residual_forward) return be->matmul_residual_forward(out, residual, inp, weight, bias, N, C, OC);
    GQ_TRY(be->matmul_forward(out, inp, weight, bias, N, C, OC, 0));
    return be->residual_forward(out, residual, out, (size_t)N * OC);
}

/* *loss = the mean of the last forward's losses over its targets (a wait for the device) */
static int mean_loss(gq_gpt2 *m, float *loss) {
    const size_t BT = (size_t)m->last_B * m->last_T;
    GQ_TRY(m->be->download(m->host_losses, m->a.losses, BT * sizeof(float)));
    double sum = 0;
    for (size_t i = 0; i < BT; i++) sum += m->host_losses[i];
    *loss = m->n_targets ? (float)(sum / m->n_targets) : 0.0f;
    return GQ_OK;
}

/* The forward; with fuse_scale > 0 (a backward with that loss scale follows) the loss and its
 * gradient in one op where the backend has it (m->ce_fused: the logits then hold the gradient). */
static int forward(gq_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss,
                   float fuse_scale, int first, int n_layers, int head) {
    const gq_backend *be = m->be;
    const gq_gpt2_config *c = &m->cfg;
    if (B < 1 || B > m->B_max || T < 1 || T > m->T_max)
        return gq_errf(GQ_ESHAPE, "forward with B=%d T=%d, the model was planned for B<=%d T<=%d", B, T, m->B_max,
                       m->T_max);
    GQ_TRY(check_plan(m));
    const int L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab_size, Vp = c->padded_vocab_size;
    const size_t BT = (size_t)B * T, BTmax = (size_t)m->B_max * m->T_max;
    for (size_t i = 0; inputs && i < BT; i++)
        if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < -1 || targets[i] >= V)))
            return gq_errf(GQ_ERANGE, "token id %d at position %zu is outside the model's vocabulary (%d)",
                           targets && (targets[i] < -1 || targets[i] >= V) ? targets[i] : inputs[i], i, V);
    const gq_gpt2_tensors *w = &m->w;
    if (inputs) { /* (without: gq_gpt2_forward_from put the stream entering block `first` in place) */
        GQ_TRY(be->upload(m->a.inputs, inputs, BT * sizeof *inputs));
        if (targets) GQ_TRY(be->upload(m->a.targets, targets, BT * sizeof *targets));
        GQ_TRY(be->encoder_forward(m->a.encoded, m->a.inputs, w->wte, w->wpe, B, T, C));
    }
    for (int l = first; l < n_layers; l++) {
        const size_t lc = (size_t)l * C, la = (size_t)l * BTmax * C, lm = (size_t)l * BTmax;
        const float *residual = l == 0 ? m->a.encoded : m->a.residual3 + la - BTmax * C;
        float *ln1 = m->a.ln1 + l * m->act_c, *qkv = m->a.qkv + l * m->act_3c, *atty = m->a.atty + l * m->act_c;
        float *att = m->a.att + (size_t)l * m->att_stride;
        float *res2 = m->a.residual2 + la, *ln2 = m->a.ln2 + l * m->act_c;
        float *fch = m->a.fch + l * m->act_4c, *fchg = m->a.fch_gelu + l * m->act_4c, *res3 = m->a.residual3 + la;
        /* (W8A8: the layernorm and GELU outputs feed only their products and are quantized in
         * place, so the backward's weight gradients read the quantized values) */
        GQ_TRY(be->layernorm_forward(ln1, m->a.ln1_mean + lm, m->a.ln1_rstd + lm, residual, w->ln1w + lc, w->ln1b + lc,
                                  (int)BT, C));
        if (act8_on(m, T_QKVW, l)) GQ_TRY(be->act_fakequant(ln1, BT * C, m->act16));
        GQ_TRY(be->matmul_forward(qkv, ln1, wt(m, T_QKVW, l), w->qkvb + 3 * lc, (int)BT, C, 3 * C, m->act16));
        GQ_TRY(be->attention_forward(atty, att, qkv, B, T, C, NH));
        const float *proj_in = atty;
        if (act8_on(m, T_ATTPROJW, l)) GQ_TRY(act8_copy(m, m->a.d_b, atty, BT * C, &proj_in));
        /* the projections' outputs go into the stream with the residual added (fused where the
         * backend can: the product's epilogue) */
        GQ_TRY(proj_residual(be, res2, residual, proj_in, wt(m, T_ATTPROJW, l), w->attprojb + lc, (int)BT, C, C));
        GQ_TRY(be->layernorm_forward(ln2, m->a.ln2_mean + lm, m->a.ln2_rstd + lm, res2, w->ln2w + lc, w->ln2b + lc,
                                  (int)BT, C));
        if (act8_on(m, T_FCW, l)) GQ_TRY(be->act_fakequant(ln2, BT * C, m->act16));
        if (be->matmul_gelu_forward) { /* GELU in the product's epilogue, fch its aux output */
            GQ_TRY(be->matmul_gelu_forward(fchg, fch, ln2, wt(m, T_FCW, l), w->fcb + 4 * lc, (int)BT, C, 4 * C));
        } else {
            GQ_TRY(be->matmul_forward(fch, ln2, wt(m, T_FCW, l), w->fcb + 4 * lc, (int)BT, C, 4 * C, m->act16));
            GQ_TRY(be->gelu_forward(fchg, fch, BT * 4 * C));
        }
        if (act8_on(m, T_FCPROJW, l)) GQ_TRY(be->act_fakequant(fchg, BT * 4 * C, m->act16));
        GQ_TRY(proj_residual(be, res3, res2, fchg, wt(m, T_FCPROJW, l), w->fcprojb + lc, (int)BT, 4 * C, C));
    }
    if (n_layers < L) { /* a prefix (gq_gpt2_forward_layers): no head, no loss */
        m->last_B = B, m->last_T = T, m->n_targets = 0, m->ce_fused = 0;
        return GQ_OK;
    }
    const float *last = m->a.residual3 + (size_t)(L - 1) * BTmax * C;
    GQ_TRY(be->layernorm_forward(m->a.lnf, m->a.lnf_mean, m->a.lnf_rstd, last, w->lnfw, w->lnfb, (int)BT, C));
    if (!head) { /* the head's input only (gq_gpt2_forward_layers) */
        m->last_B = B, m->last_T = T, m->n_targets = 0, m->ce_fused = 0;
        return GQ_OK;
    }
    if (act8_on(m, T_WTE, 0)) GQ_TRY(be->act_fakequant(m->a.lnf, BT * C, m->act16)); /* the LM head (tied wte) */
    GQ_TRY(be->matmul_forward(m->a.logits, m->a.lnf, w->wte, NULL, (int)BT, C, Vp, m->act16));
    m->last_B = B;
    m->last_T = T;
    m->n_targets = 0;
    m->ce_fused = 0;
    if (targets) {
        for (size_t i = 0; i < BT; i++) m->n_targets += targets[i] >= 0;
        int rc = GQ_EUNSUPPORTED;
        if (fuse_scale > 0.0f && m->n_targets && be->crossentropy_forward_backward && m->distill_w <= 0.0f) {
            rc = be->crossentropy_forward_backward(m->a.losses, m->a.lse, m->a.logits, m->a.targets,
                                                   fuse_scale / (float)m->n_targets, (int)BT, V, Vp);
            if (rc && rc != GQ_EUNSUPPORTED) return rc;
            m->ce_fused = !rc;
        }
        if (!m->ce_fused)
            GQ_TRY(be->crossentropy_forward(m->a.losses, m->a.lse, m->a.logits, m->a.targets, (int)BT, V, Vp));
        /* (a distillation teacher wants only the logits and log-sum-exp: no round trip) */
        if (loss) GQ_TRY(mean_loss(m, loss));
    } else if (loss) {
        *loss = 0.0f;
    }
    return GQ_OK;
}

int gq_gpt2_forward(gq_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss) {
    return forward(m, inputs, targets, B, T, loss, 0.0f, 0, m->cfg.n_layer, 1);
}

int gq_gpt2_forward_layers(gq_gpt2 *m, const int32_t *inputs, int B, int T, int n_layers) {
    if (n_layers < 0 || n_layers > m->cfg.n_layer)
        return gq_errf(GQ_EINVAL, "a forward through %d of %d layers", n_layers, m->cfg.n_layer);
    return forward(m, inputs, NULL, B, T, NULL, 0.0f, 0, n_layers, 0);
}

/* the stream entering block l: the embedding's output (l = 0) or block l - 1's */
static float *residual_in(const gq_gpt2 *m, int l) {
    return l == 0 ? m->a.encoded : m->a.residual3 + (size_t)(l - 1) * m->B_max * m->T_max * m->cfg.n_embd;
}

int gq_gpt2_forward_from(gq_gpt2 *m, const float *x, int B, int T, int first, int n_layers) {
    const int L = m->cfg.n_layer;
    if (first < 0 || n_layers > L || first > n_layers || (first == n_layers && n_layers < L))
        return gq_errf(GQ_EINVAL, "a forward through blocks %d..%d of %d", first, n_layers - 1, L);
    if (B < 1 || B > m->B_max || T < 1 || T > m->T_max)
        return gq_errf(GQ_ESHAPE, "forward with B=%d T=%d, the model was planned for B<=%d T<=%d", B, T, m->B_max,
                       m->T_max);
    float *dst = residual_in(m, first);
    if (dst != x) GQ_TRY(m->be->copy(dst, x, (size_t)B * T * m->cfg.n_embd * sizeof *x));
    return forward(m, NULL, NULL, B, T, NULL, 0.0f, first, n_layers, 0);
}

const float *gq_gpt2_residual(const gq_gpt2 *m, int l) {
    return l < -1 || l >= m->cfg.n_layer || !m->last_B ? NULL : residual_in(m, l + 1);
}

const float *gq_gpt2_weight_input(const gq_gpt2 *m, int i, int l) {
    if (strcmp(m->be->name, "cpu") || m->act16 || !m->last_B || l < 0 || l >= m->cfg.n_layer) return NULL;
    switch (i) {
    case T_QKVW: return m->a.ln1 + l * m->act_c;
    case T_ATTPROJW: return m->a.atty + l * m->act_c;
    case T_FCW: return m->a.ln2 + l * m->act_c;
    case T_FCPROJW: return m->a.fch_gelu + l * m->act_4c;
    case T_WTE: return m->a.lnf;
    default: return NULL;
    }
}

int gq_gpt2_forward_backward(gq_gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                             float loss_scale, float *loss) {
    if (!targets) return gq_errf(GQ_EINVAL, "a training step without targets");
    GQ_TRY(forward(m, inputs, targets, B, T, NULL, loss_scale, 0, m->cfg.n_layer, 1));
    if (!m->n_targets) { /* every target masked out (a prompt longer than the window): nothing to learn here */
        if (loss) *loss = 0.0f;
        return GQ_OK;
    }
    GQ_TRY(gq_gpt2_backward(m, loss_scale));
    /* the loss read back once the backward is queued: no wait between the two passes */
    return loss ? mean_loss(m, loss) : GQ_OK;
}

int gq_gpt2_logits(gq_gpt2 *m, int b, int t, float *host_out) {
    const size_t Vp = (size_t)m->cfg.padded_vocab_size, row = (size_t)b * m->last_T + t;
    if (!m->act16) return m->be->download(host_out, m->a.logits + row * Vp, Vp * sizeof(float));
    uint16_t *h = malloc(Vp * sizeof *h); /* bf16 logits, widened */
    if (!h) return gq_errf(GQ_ENOMEM, "out of memory");
    int rc = m->be->download(h, (const char *)m->a.logits + row * Vp * 2, Vp * 2);
    for (size_t i = 0; !rc && i < Vp; i++) host_out[i] = gq_bf16_to_f32(h[i]);
    free(h);
    return rc;
}

/* per layer: qkv (C), attention projection (C), fc (C), MLP projection (4C); then the LM head (C) */
size_t gq_gpt2_calib_size(const gq_gpt2_config *c) { return (size_t)(7 * c->n_layer + 1) * c->n_embd; }

long gq_gpt2_calib_offset(const gq_gpt2_config *c, int i, int l) {
    const long C = c->n_embd, base = 7L * l * C;
    switch (i) {
    case T_WTE: return 7L * c->n_layer * C;
    case T_QKVW: return base;
    case T_ATTPROJW: return base + C;
    case T_FCW: return base + 2 * C;
    case T_FCPROJW: return base + 3 * C;
    default: return -1;
    }
}

static void add_squares(double *acc, const float *x, size_t rows, int cols) {
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) acc[c] += (double)x[r * cols + c] * x[r * cols + c];
}

int gq_gpt2_calib_accumulate(const gq_gpt2 *m, double *acc) {
    if (strcmp(m->be->name, "cpu") || m->act16)
        return gq_errf(GQ_EUNSUPPORTED, "calibration statistics need the CPU backend in fp32");
    if (!m->last_B) return gq_errf(GQ_EINVAL, "calibration statistics without a forward");
    const gq_gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    const size_t BT = (size_t)m->last_B * m->last_T;
    for (int l = 0; l < c->n_layer; l++) {
        add_squares(acc + gq_gpt2_calib_offset(c, T_QKVW, l), m->a.ln1 + l * m->act_c, BT, C);
        add_squares(acc + gq_gpt2_calib_offset(c, T_ATTPROJW, l), m->a.atty + l * m->act_c, BT, C);
        add_squares(acc + gq_gpt2_calib_offset(c, T_FCW, l), m->a.ln2 + l * m->act_c, BT, C);
        add_squares(acc + gq_gpt2_calib_offset(c, T_FCPROJW, l), m->a.fch_gelu + l * m->act_4c, BT, 4 * C);
    }
    add_squares(acc + gq_gpt2_calib_offset(c, T_WTE, 0), m->a.lnf, BT, C);
    return GQ_OK;
}

int gq_gpt2_zero_grad(gq_gpt2 *m) {
    GQ_TRY(m->be->zero(m->grads_mem, m->n_params * sizeof(float)));
    return m->n_lsq ? m->be->zero(m->lsq_mem + m->n_lsq, m->n_lsq * sizeof(float)) : GQ_OK;
}

int gq_gpt2_backward(gq_gpt2 *m, float loss_scale) {
    const gq_backend *be = m->be;
    const gq_gpt2_config *c = &m->cfg;
    const int B = m->last_B, T = m->last_T;
    if (!m->n_targets) return gq_errf(GQ_EINVAL, "backward without a forward that had targets");
    GQ_TRY(check_plan(m));
    const int L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab_size, Vp = c->padded_vocab_size;
    const size_t BT = (size_t)B * T, BTmax = (size_t)m->B_max * m->T_max;
    const gq_gpt2_tensors *w = &m->w, *g = &m->grads;
    float *d_res = m->a.d_res, *d_a = m->a.d_a, *d_b = m->a.d_b;
    if (m->ce_fused) /* the logits hold their gradient already (forward_backward) */
        m->ce_fused = 0;
    else if (m->distill_w > 0.0f)
        GQ_TRY(be->crossentropy_distill_backward(m->a.logits, m->a.lse, m->distill_logits, m->distill_lse, m->a.targets,
                                              m->distill_w, loss_scale / (float)m->n_targets, (int)BT, V, Vp));
    else
        GQ_TRY(be->crossentropy_backward(m->a.logits, m->a.lse, m->a.targets, loss_scale / (float)m->n_targets, (int)BT,
                                      V, Vp));
    GQ_TRY(be->matmul_backward(d_a, g->wte, NULL, m->a.logits, m->a.lnf, w->wte, (int)BT, C, Vp, m->act16));
    GQ_TRY(be->zero(d_res, BT * C * sizeof(float)));
    const float *last = m->a.residual3 + (size_t)(L - 1) * BTmax * C;
    GQ_TRY(
        be->layernorm_backward(d_res, g->lnfw, g->lnfb, d_a, last, w->lnfw, m->a.lnf_mean, m->a.lnf_rstd, (int)BT, C));
    for (int l = L - 1; l >= 0; l--) {
        const size_t lc = (size_t)l * C, la = (size_t)l * BTmax * C, lm = (size_t)l * BTmax;
        const float *residual = l == 0 ? m->a.encoded : m->a.residual3 + la - BTmax * C;
        const float *att = m->a.att + (size_t)l * m->att_stride;
        /* MLP branch: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))) */
        const float *fchg = m->a.fch_gelu + l * m->act_4c, *fch = m->a.fch + l * m->act_4c;
        if (be->matmul_backward_dgelu) { /* GELU's backward in the product's epilogue */
            GQ_TRY(be->matmul_backward_dgelu(d_b, g->fcprojw + 4 * lc * C, g->fcprojb + lc, d_res, fchg,
                                             wt(m, T_FCPROJW, l), fch, (int)BT, 4 * C, C));
        } else {
            GQ_TRY(be->matmul_backward(d_a, g->fcprojw + 4 * lc * C, g->fcprojb + lc, d_res, fchg, wt(m, T_FCPROJW, l),
                                       (int)BT, 4 * C, C, 0));
            GQ_TRY(be->gelu_backward(d_b, fch, d_a, BT * 4 * C));
        }
        GQ_TRY(be->matmul_backward(d_a, g->fcw + 4 * lc * C, g->fcb + 4 * lc, d_b, m->a.ln2 + l * m->act_c,
                                   wt(m, T_FCW, l), (int)BT, C, 4 * C, m->act16)); /* (d_b bf16 with act16) */
        GQ_TRY(be->layernorm_backward(d_res, g->ln2w + lc, g->ln2b + lc, d_a, m->a.residual2 + la, w->ln2w + lc,
                                      m->a.ln2_mean + lm, m->a.ln2_rstd + lm, (int)BT, C));
        /* attention branch: residual2 = residual + attproj(attn(qkv(ln1(residual)))) */
        const float *proj_in = m->a.atty + l * m->act_c; /* (W8A8: its int8 values again, in d_b, free here) */
        if (act8_on(m, T_ATTPROJW, l)) GQ_TRY(act8_copy(m, d_b, proj_in, BT * C, &proj_in));
        GQ_TRY(be->matmul_backward(d_a, g->attprojw + lc * C, g->attprojb + lc, d_res, proj_in, wt(m, T_ATTPROJW, l),
                                   (int)BT, C, C, 0));
        GQ_TRY(be->attention_backward(d_b, m->a.d_att, d_a, m->a.qkv + l * m->act_3c, m->a.atty + l * m->act_c, att, B,
                                      T, C, NH));
        GQ_TRY(be->matmul_backward(d_a, g->qkvw + 3 * lc * C, g->qkvb + 3 * lc, d_b, m->a.ln1 + l * m->act_c,
                                   wt(m, T_QKVW, l), (int)BT, C, 3 * C, m->act16)); /* (d_b bf16 with act16) */
        GQ_TRY(be->layernorm_backward(d_res, g->ln1w + lc, g->ln1b + lc, d_a, residual, w->ln1w + lc,
                                      m->a.ln1_mean + lm, m->a.ln1_rstd + lm, (int)BT, C));
    }
    GQ_TRY(be->encoder_backward(g->wte, g->wpe, d_res, m->a.inputs, B, T, C));
    return GQ_OK;
}

int gq_gpt2_grad_norm(gq_gpt2 *m, float *norm) {
    double ss;
    GQ_TRY(m->be->sum_squares(&ss, m->grads_mem, m->n_params));
    if (m->n_lsq && m->qat_on && m->lsq_on) { /* the learned scales' gradients count too */
        double sl;
        GQ_TRY(m->be->sum_squares(&sl, m->lsq_mem + m->n_lsq, m->n_lsq));
        ss += sl;
    }
    *norm = (float)sqrt(ss);
    return GQ_OK;
}

int gq_gpt2_update(gq_gpt2 *m, float lr, float beta1, float beta2, float eps, float weight_decay, int t,
                   float grad_scale) {
    size_t off = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t n = m->tensor_numel[i];
        GQ_TRY(m->be->adamw_update(m->params_mem + off, m->grads_mem + off, m->m_mem + off, m->v_mem + off, n, lr, beta1,
                                beta2, eps, gq_gpt2_tensor(i)->decay ? weight_decay : 0.0f, t, grad_scale));
        off += n;
    }
    if (m->n_lsq && m->qat_on && m->lsq_on) {
        const size_t n = m->n_lsq;
        GQ_TRY(m->be->adamw_update(m->lsq_mem, m->lsq_mem + n, m->lsq_mem + 2 * n, m->lsq_mem + 3 * n, n,
                                   lr * m->lsq_lr, beta1, beta2, eps, 0.0f, t, grad_scale));
    }
    return GQ_OK;
}

size_t gq_gpt2_param_bytes(const gq_gpt2 *m) { return m->n_params * sizeof(float); }

size_t gq_gpt2_plan_bytes(const gq_gpt2_config *cfg, const gq_backend *be, int B, int T, int working_copy) {
    size_t params = 0, numel[N_ACTS], saved, scratch, c, c3, c4, acts = 0;
    int act16;
    act_sizes(cfg, be, (size_t)B, (size_t)T, numel, &saved, &scratch, &act16, &c, &c3, &c4);
    for (int i = 0; i < N_ACTS; i++) acts += numel[i];
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) params += tensor_numel(cfg, i);
    const size_t work = work_copy_floats(cfg, act16);
    /* parameters, gradients and AdamW's two moments (a model allocates all four), activations,
     * and the working copy (bf16 / QAT; bf16 matrices with bf16 operands) with its QAT mask */
    return sizeof(float) * (4 * params + acts) + (working_copy ? work * sizeof(float) + params : 0);
}
size_t gq_gpt2_act_bytes(const gq_gpt2 *m) { return m->n_acts * sizeof(float); }


/* The working copy for the current mode: allocated when first needed, again when a mode needs
 * more (bf16 matrices take half the floats); its contents are the next refresh's. */
static int work_copy(gq_gpt2 *m) {
    const size_t need = work_copy_floats(&m->cfg, m->act16);
    if (m->qat_mem && need <= m->work_floats) return GQ_OK;
    if (m->qat_mem) m->be->free(m->qat_mem);
    m->qat_mem = NULL, m->work_floats = 0;
    int rc = m->be->alloc((void **)&m->qat_mem, need * sizeof(float));
    if (rc) return rc;
    m->work_floats = need;
    return GQ_OK;
}

/* The learned scales' start: each -lsq tensor's scales by its format's rule (absmax, or the
 * -mse search) over the master weights, computed on the host (once, when QAT starts). */
static int lsq_init(gq_gpt2 *m) {
    int rc = m->be->alloc((void **)&m->lsq_mem, 4 * m->n_lsq * sizeof(float));
    if (rc) return rc;
    float *scales = malloc(m->n_lsq * sizeof(float));
    if (!scales) return gq_errf(GQ_ENOMEM, "out of memory");
    for (int k = 0; k < m->n_qat && !rc; k++) {
        const struct gq_qat_tensor *t = &m->qat[k];
        if (!t->spec.lsq) continue;
        gq_qspec rule = t->spec;
        rule.lsq = 0;
        const size_t n = (size_t)t->rows * t->cols, groups = gq_qn_groups(&rule, t->rows, t->cols);
        float *x = malloc(n * sizeof(float));
        gq_qtensor q = {malloc(gq_qpacked_bytes(&rule, t->rows, t->cols)), scales + t->lsq_off, malloc(groups), NULL,
                        NULL, 0};
        size_t bad = 0;
        if (!x || !q.qweight || !q.zeros) rc = gq_errf(GQ_ENOMEM, "out of memory");
        if (!rc) rc = m->be->download(x, m->params_mem + t->offset, n * sizeof(float));
        if (!rc && gq_quantize(&rule, x, t->rows, t->cols, &q, &bad))
            rc = gq_errf(GQ_ENAN, "QAT: weight %s value %zu is not finite", t->name, bad);
        free(x), free(q.qweight), free(q.zeros);
    }
    if (!rc) rc = m->be->upload(m->lsq_mem, scales, m->n_lsq * sizeof(float));
    free(scales);
    m->lsq_on = 1;
    return rc;
}

int gq_gpt2_lsq_get(const gq_gpt2 *m, float *scales, float *am, float *av) {
    float *dst[3] = {scales, am, av};
    const size_t at[3] = {0, 2, 3};
    for (int a = 0; a < 3; a++)
        if (dst[a]) GQ_TRY(m->be->download(dst[a], m->lsq_mem + at[a] * m->n_lsq, m->n_lsq * sizeof(float)));
    return GQ_OK;
}

int gq_gpt2_lsq_set(gq_gpt2 *m, const float *scales, const float *am, const float *av) {
    const float *src[3] = {scales, am, av};
    const size_t at[3] = {0, 2, 3};
    for (int a = 0; a < 3; a++)
        if (src[a]) GQ_TRY(m->be->upload(m->lsq_mem + at[a] * m->n_lsq, src[a], m->n_lsq * sizeof(float)));
    return m->qat_on ? gq_gpt2_refresh_weights(m, m->sr_step) : GQ_OK;
}

int gq_gpt2_set_lsq(gq_gpt2 *m, int on) {
    if (!m->n_lsq) return GQ_OK;
    m->lsq_on = on;
    return m->qat_on ? gq_gpt2_refresh_weights(m, m->sr_step) : GQ_OK;
}

int gq_gpt2_qat_enable(gq_gpt2 *m, const gq_qplan *plan) {
    const gq_gpt2_config *c = &m->cfg;
    int cap = GQ_GPT2_N_TENSORS * c->n_layer + 2;
    m->qat = calloc((size_t)cap, sizeof *m->qat);
    if (!m->qat) return gq_errf(GQ_ENOMEM, "out of memory");
    size_t off = 0, max_work = 0;
    m->n_qat = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(c, i, &rows, &cols);
        int layers = gq_gpt2_tensor(i)->per_layer ? c->n_layer : 1;
        for (int l = 0; l < layers; l++) {
            struct gq_qat_tensor t = {off, i, l, (int)rows, (int)cols, {GQ_QF_F32, 0, 0, 0, 0, 0}, "", -1};
            gq_gpt2_tensor_name(i, l, t.name, sizeof t.name);
            off += rows * (cols ? cols : 1);
            if (!gq_qplan_lookup(plan, t.name, (int)rows, (int)cols, &t.spec)) continue;
            const char *why = gq_qspec_problem(&t.spec, (int)rows, (int)cols);
            if (why)
                return gq_errf(GQ_ESHAPE, "QAT: tensor %s [%zu, %zu]: %s for %s group %d", t.name, rows, cols, why,
                               gq_qformat_name(t.spec.format), t.spec.group);
            if (t.spec.gptq)
                return gq_errf(GQ_EINVAL, "QAT: %s: -gptq is post-training quantization (gpt2q-export --format "
                               "%s-gptq --calib DATA); QAT takes the format without it", t.name,
                               gq_qformat_name(t.spec.format));
            size_t work = m->be->fakequant_workspace((int)rows, (int)cols, &t.spec);
            max_work = work > max_work ? work : max_work;
            if (t.spec.lsq) {
                if (!m->be->fakequant_lsq_forward)
                    return gq_errf(GQ_EUNSUPPORTED, "QAT: learned scales (-lsq) on the %s backend", m->be->name);
                t.lsq_off = (long)m->n_lsq;
                m->n_lsq += gq_qn_groups(&t.spec, (int)rows, (int)cols);
            }
            m->qat[m->n_qat++] = t;
        }
    }
    if (!m->n_qat) return gq_errf(GQ_EINVAL, "QAT: the layer selection matches no weight");
    int rc = work_copy(m);
    if (rc) return rc;
    if ((rc = m->be->alloc((void **)&m->qat_mask, m->n_params))) return rc;
    if ((rc = m->be->alloc(&m->qat_work, max_work))) return rc;
    if ((rc = m->be->alloc((void **)&m->qat_status, (size_t)m->n_qat * sizeof *m->qat_status))) return rc;
    if (!(m->qat_status_host = malloc((size_t)m->n_qat * sizeof *m->qat_status_host)))
        return gq_errf(GQ_ENOMEM, "out of memory");
    if (m->n_lsq && (rc = lsq_init(m))) return rc;
    m->qat_on = 1;
    point_weights(m);
    return gq_gpt2_refresh_weights(m, m->sr_step);
}

int gq_gpt2_set_fakequant(gq_gpt2 *m, int on) {
    if (!m->n_qat) return GQ_OK;
    m->qat_on = on;
    point_weights(m);
    return gq_gpt2_refresh_weights(m, m->sr_step);
}

int gq_gpt2_set_act8(gq_gpt2 *m, int on) {
    if (on && m->cfg.n_embd % GQ_ACT_BLOCK)
        return gq_errf(GQ_ESHAPE, "int8 activations: n_embd %d is not a multiple of the %d-value blocks",
                       m->cfg.n_embd, GQ_ACT_BLOCK);
    m->qat_act8 = on;
    return GQ_OK;
}

int gq_gpt2_set_precision(gq_gpt2 *m, int matmul, uint64_t seed) {
    int rc = m->be->set_matmul(matmul);
    if (rc) return rc;
    if ((rc = plan_acts(m))) return rc; /* the attention may save less in this mode */
    m->matmul = matmul;
    m->sr_seed = seed;
    if ((matmul == GQ_MATMUL_BF16 || m->qat_on) && (rc = work_copy(m))) return rc;
    point_weights(m);
    return gq_gpt2_refresh_weights(m, m->sr_step);
}

/* The working weights from the fp32 masters in one pass over them (each value read and written
 * once): QAT-selected tensors through fake-quant (from the masters: never the rounded copy),
 * the other matrices stochastically rounded to bf16 in bf16 precision (one stream per step; an
 * element's random bits depend on its index in the masters only), everything else copied. With
 * bf16 operands the matrices are written as bf16 arrays. Runs of layers go in one call where
 * they lie back to back in both arrays. */
uint64_t gq_gpt2_sr_stream(const gq_gpt2 *m, int64_t step) {
    return m->sr_seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(step + 1));
}

int gq_gpt2_refresh_weights(gq_gpt2 *m, int64_t step) {
    m->sr_step = step;
    const int bf16 = m->matmul == GQ_MATMUL_BF16;
    if (!m->qat_on && !bf16) return GQ_OK;
    const uint64_t seed = gq_gpt2_sr_stream(m, step);
    const int nq = m->qat_on ? m->n_qat : 0;
    size_t off = 0;
    int k = 0, rc;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        const int layers = gq_gpt2_tensor(i)->per_layer ? m->cfg.n_layer : 1;
        const size_t n = m->tensor_numel[i] / (size_t)layers, wl = m->wl[i];
        const int sr = bf16 && gq_gpt2_tensor(i)->decay, b16 = m->w16 && gq_gpt2_tensor(i)->decay;
        float *dst = ((float **)&m->w)[i];
        /* the QAT entries are in parameter order, one per selected layer of a tensor */
        for (int l = 0; l < layers;) {
            const size_t at = off + (size_t)l * n;
            if (k < nq && m->qat[k].offset == at) {
                const struct gq_qat_tensor *t = &m->qat[k];
                gq_qspec spec = t->spec;
                if (spec.lsq && m->lsq_on)
                    rc = m->be->fakequant_lsq_forward(dst + (size_t)l * wl, m->params_mem + at, m->lsq_mem + t->lsq_off,
                                                      t->rows, t->cols, &spec, b16, m->qat_status + k);
                else
                    spec.lsq = 0, rc = m->be->fakequant_forward(dst + (size_t)l * wl, m->qat_mask + at, m->params_mem + at,
                                                                t->rows, t->cols, &spec, m->qat_work, b16, m->qat_status + k);
                if (rc) {
                    char why[256];
                    snprintf(why, sizeof why, "%s", gq_errmsg(rc));
                    return gq_errf(rc, "QAT: weight %s %s", t->name, why);
                }
                k++, l++;
                continue;
            }
            int l2 = l + 1; /* the run up to the next selected layer (one layer: an odd-sized bf16 one) */
            while (l2 < layers && !(k < nq && m->qat[k].offset == off + (size_t)l2 * n) && !(b16 && n % 2)) l2++;
            const size_t cnt = (size_t)(l2 - l) * n;
            rc = sr ? m->be->round_bf16_sr(dst + (size_t)l * wl, m->params_mem + at, cnt, seed, at, b16)
                    : m->be->copy(dst + (size_t)l * wl, m->params_mem + at, cnt * sizeof(float));
            if (rc) return rc;
            l = l2;
        }
        off += m->tensor_numel[i];
    }
    /* the finite checks of all the selected tensors at once: one wait per refresh */
    if (nq && (rc = m->be->download(m->qat_status_host, m->qat_status, (size_t)nq * sizeof *m->qat_status)))
        return rc;
    for (k = 0; k < nq; k++)
        if (m->qat_status_host[k] != UINT64_MAX)
            return gq_errf(GQ_ENAN, "QAT: weight %s value %llu is not finite", m->qat[k].name,
                           (unsigned long long)m->qat_status_host[k]);
    return GQ_OK;
}

int gq_gpt2_qat_mask_grads(gq_gpt2 *m) {
    if (!m->qat_on) return GQ_OK;
    for (int k = 0; k < m->n_qat; k++) {
        const struct gq_qat_tensor *t = &m->qat[k];
        int rc = t->spec.lsq && m->lsq_on
                     ? m->be->fakequant_lsq_backward(m->grads_mem + t->offset, m->lsq_mem + m->n_lsq + t->lsq_off,
                                                     m->params_mem + t->offset, m->lsq_mem + t->lsq_off, t->rows,
                                                     t->cols, &t->spec)
                     : m->be->fakequant_backward(m->grads_mem + t->offset, m->qat_mask + t->offset,
                                                 (size_t)t->rows * t->cols);
        if (rc) return rc;
    }
    return GQ_OK;
}

