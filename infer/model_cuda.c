/* model_cuda (infer/): the runner on the GPU (--device cuda). The weight arena is uploaded as it
 * was loaded (packed codes, scales, zero points: the same bytes), the matrices are the host
 * gq_qmat with their pointers moved into the device arena, and the forward pass is the CPU
 * runner's, op for op, on kernels/cuda: gq_cuda_qmatmul (dequantize in registers) for every
 * linear, the op table's layernorm / GELU / residual / cross-entropy, and infer.cu's
 * embedding, KV-cache store and attention. The KV cache (fp16 or fp32, as m->kv_f16) and the
 * activations are allocated once by gq_im_plan; one sequence (B = 1). A decode step (one
 * token, position > 0, no targets) is captured once as a CUDA graph and replayed with the
 * token and position in device memory; if capture fails the ops run directly. The next token
 * is picked on the device (greedy, or infer/sample.h's sampler drawing from its Philox stream
 * on the device), so a decode step uploads nothing and downloads 4 bytes unless the caller wants
 * the logits. */
#include "model_cuda.h"

#include "gq_error.h"

#ifndef GQ_HAVE_CUDA

int gq_imc_plan(gq_im *m) {
    (void)m;
    return gq_errf(GQ_EUNSUPPORTED, "--device cuda: this build has no CUDA backend (nvcc was not found at build time)");
}
int gq_imc_forward(gq_im *m, const int32_t *tokens, int n, int pos, const int32_t *targets, double *loss_sum,
                   long *n_scored) {
    (void)m, (void)tokens, (void)n, (void)pos, (void)targets, (void)loss_sum, (void)n_scored;
    return gq_errf(GQ_EUNSUPPORTED, "--device cuda: this build has no CUDA backend");
}
void gq_imc_free(struct gq_im_cuda *c) { (void)c; }
int gq_imc_available(void) { return 0; }
int gq_imc_copy_bandwidth(double *bytes_per_s) {
    *bytes_per_s = 0;
    return gq_errf(GQ_EUNSUPPORTED, "no CUDA backend in this build");
}
int gq_imc_mem_used(size_t *bytes) {
    *bytes = 0;
    return gq_errf(GQ_EUNSUPPORTED, "no CUDA backend in this build");
}

#else

#include "cuda_ops.h"

#include <stdlib.h>
#include <string.h>

/* The device arena: the host arena's bytes in order, except the fp32 weight matrices that
 * m->dev_half stores as fp16 / bf16 (half the bytes). Each region keeps its host offset's
 * alignment mod 256 on the device. */
typedef struct {
    size_t host, dev, len; /* host offset, device offset, host bytes */
    int half;              /* a converted matrix: device bytes = len / 2 */
} region;

struct gq_im_cuda {
    void *arena; /* the weights (host layout, fp32 matrices halved when asked) */
    region *reg;
    int n_reg;
    gq_qmat wte, wpe; /* wpe as an fp32 matrix (block_size, C): halved with the others when asked */
    float *lnfw, *lnfb;
    gq_im_layer *layers;
    /* run state: one allocation */
    void *state;
    void *kc, *vc; /* (L, T, C) each, fp16 or fp32 */
    float *x, *ln, *mean, *rstd, *qkv, *atty, *tmp, *fch, *logits, *losses, *lse, *prob;
    uint64_t *rng; /* the sampler's Philox seed and next draw index (gq_cuda_sample) */
    int32_t *tokens, *targets, *pos, *next;
    int T, chunk, f16;
    void *graph; /* the decode step */
    int graph_tried;
    float g_temperature, g_top_p; /* the sampler settings the graph was captured with */
    int g_top_k;
    int32_t dev_pos, dev_tok; /* what c->pos and c->tokens hold after a decode step (-1: unknown) */
    uint64_t dev_rng[2];      /* what c->rng holds after a sampled pick, when rng_known */
    int rng_known;
    int fused; /* 1: the decode step's 5 launches a layer (gq_qmm_ep); GQ_CUDA_FUSED=0: the 11 of before */
};

int gq_imc_available(void) { return gq_cuda_device_count() > 0; }

int gq_imc_copy_bandwidth(double *bytes_per_s) { return gq_cuda_copy_bandwidth(bytes_per_s); }

int gq_imc_mem_used(size_t *bytes) {
    size_t free_b = 0, total = 0;
    int rc = gq_cuda_mem_info(&free_b, &total);
    *bytes = total - free_b;
    return rc;
}

/* a host pointer into m->arena, moved to where its bytes are in the device arena */
static const void *dev(const gq_im *m, const struct gq_im_cuda *c, const void *p) {
    if (!p) return NULL;
    const size_t off = (size_t)((const uint8_t *)p - (const uint8_t *)m->arena);
    for (int k = 0; k < c->n_reg; k++)
        if (off >= c->reg[k].host && off < c->reg[k].host + c->reg[k].len)
            return (const uint8_t *)c->arena + c->reg[k].dev + (off - c->reg[k].host) / (c->reg[k].half ? 2 : 1);
    return NULL;
}

static gq_qmat dev_mat(const gq_im *m, const struct gq_im_cuda *c, const gq_qmat *w) {
    gq_qmat d = *w;
    d.f32 = dev(m, c, w->f32), d.q = dev(m, c, w->q), d.s16 = dev(m, c, w->s16), d.s32 = dev(m, c, w->s32);
    d.zeros = dev(m, c, w->zeros), d.absmax_q = dev(m, c, w->absmax_q), d.absmax2 = dev(m, c, w->absmax2);
    if (w->spec.format == GQ_QF_F32 && m->dev_half) /* held as fp16 / bf16 */
        d.h16 = (const uint16_t *)d.f32, d.h16_bf16 = m->dev_half == 2, d.f32 = NULL;
    return d;
}

static float *dev_vec(const gq_im *m, const struct gq_im_cuda *c, const float *p) { return (float *)dev(m, c, p); }

static int by_host(const void *a, const void *b) {
    const region *x = a, *y = b;
    return x->host < y->host ? -1 : x->host > y->host;
}

/* an fp32 matrix to hold in halves: one region */
static void add_half(const gq_im *m, struct gq_im_cuda *c, const gq_qmat *w, int *n) {
    if (w->spec.format == GQ_QF_F32 && w->f32)
        c->reg[(*n)++] = (region){(size_t)((const uint8_t *)w->f32 - (const uint8_t *)m->arena), 0,
                                  (size_t)w->rows * (size_t)w->cols * 4, 1};
}

/* the position embedding as a matrix, so that it can be held and read as the others */
static gq_qmat wpe_mat(const gq_im *m) {
    gq_qmat w = {0};
    w.spec.format = GQ_QF_F32, w.rows = m->cfg.block_size, w.cols = m->cfg.n_embd, w.f32 = m->wpe;
    return w;
}

/* The regions of the device arena: the fp32 matrices to halve (if any; wpe too), the bytes
 * between them as they are. Returns the device arena's size. */
static size_t plan_regions(const gq_im *m, struct gq_im_cuda *c) {
    int n = 0;
    if (m->dev_half) {
        const gq_qmat wpe = wpe_mat(m);
        add_half(m, c, &wpe, &n);
        add_half(m, c, &m->wte, &n);
        for (int l = 0; l < m->cfg.n_layer; l++) {
            const gq_im_layer *h = &m->layers[l];
            add_half(m, c, &h->qkv, &n), add_half(m, c, &h->attproj, &n);
            add_half(m, c, &h->fc, &n), add_half(m, c, &h->fcproj, &n);
        }
        qsort(c->reg, (size_t)n, sizeof *c->reg, by_host);
    }
    /* fill the gaps (and the tail) with plain regions, then place every region */
    const int nh = n;
    size_t at = 0;
    for (int k = 0; k < nh; k++) {
        if (c->reg[k].host > at) c->reg[n++] = (region){at, 0, c->reg[k].host - at, 0};
        at = c->reg[k].host + c->reg[k].len;
    }
    if (at < m->arena_bytes) c->reg[n++] = (region){at, 0, m->arena_bytes - at, 0};
    qsort(c->reg, (size_t)n, sizeof *c->reg, by_host);
    size_t d = 0;
    for (int k = 0; k < n; k++) {
        const size_t mod = c->reg[k].host % 256; /* the host offset's alignment, kept */
        d = (d + 255) / 256 * 256 + (c->reg[k].half ? 0 : mod);
        c->reg[k].dev = d;
        d += c->reg[k].half ? c->reg[k].len / 2 : c->reg[k].len;
    }
    c->n_reg = n;
    return d;
}

static int upload_weights(gq_im *m, struct gq_im_cuda *c) {
    const int L = m->cfg.n_layer;
    c->reg = calloc(2 * (size_t)(2 + 4 * L) + 2, sizeof *c->reg);
    if (!c->reg) return gq_errf(GQ_ENOMEM, "out of memory");
    const size_t bytes = plan_regions(m, c);
    int rc = gq_cuda_alloc(&c->arena, bytes + 64);
    for (int k = 0; k < c->n_reg && !rc; k++) {
        const region *g = &c->reg[k];
        uint8_t *d = (uint8_t *)c->arena + g->dev;
        const uint8_t *h = (const uint8_t *)m->arena + g->host;
        if (!g->half) {
            rc = gq_cuda_upload(d, h, g->len);
            continue;
        }
        enum { CHUNK = 1 << 20 }; /* fp32 -> fp16 / bf16 on the host, a chunk at a time */
        uint16_t *tmp = malloc(CHUNK * sizeof *tmp);
        if (!tmp) return gq_errf(GQ_ENOMEM, "out of memory");
        const float *src = (const float *)h;
        const size_t n = g->len / 4;
        for (size_t i0 = 0; i0 < n && !rc; i0 += CHUNK) {
            const size_t k1 = n - i0 < CHUNK ? n - i0 : CHUNK;
            for (size_t i = 0; i < k1; i++)
                tmp[i] = m->dev_half == 2 ? gq_f32_to_bf16(src[i0 + i]) : gq_f32_to_f16(src[i0 + i]);
            rc = gq_cuda_upload(d + 2 * i0, tmp, k1 * sizeof *tmp);
        }
        free(tmp);
    }
    if (rc) return rc;
    c->layers = calloc((size_t)L, sizeof *c->layers);
    if (!c->layers) return gq_errf(GQ_ENOMEM, "out of memory");
    c->wte = dev_mat(m, c, &m->wte);
    const gq_qmat wpe = wpe_mat(m);
    c->wpe = dev_mat(m, c, &wpe), c->lnfw = dev_vec(m, c, m->lnfw), c->lnfb = dev_vec(m, c, m->lnfb);
    for (int l = 0; l < L; l++) {
        const gq_im_layer *h = &m->layers[l];
        gq_im_layer *d = &c->layers[l];
        d->ln1w = dev_vec(m, c, h->ln1w), d->ln1b = dev_vec(m, c, h->ln1b);
        d->ln2w = dev_vec(m, c, h->ln2w), d->ln2b = dev_vec(m, c, h->ln2b);
        d->qkvb = dev_vec(m, c, h->qkvb), d->attprojb = dev_vec(m, c, h->attprojb);
        d->fcb = dev_vec(m, c, h->fcb), d->fcprojb = dev_vec(m, c, h->fcprojb);
        d->qkv = dev_mat(m, c, &h->qkv), d->attproj = dev_mat(m, c, &h->attproj);
        d->fc = dev_mat(m, c, &h->fc), d->fcproj = dev_mat(m, c, &h->fcproj);
    }
    m->dev_weight_bytes = bytes;
    m->dev_read_bytes = m->weight_bytes; /* a decode step reads every matrix and one row of wpe */
    const size_t wpe_at = (size_t)((const uint8_t *)m->wpe - (const uint8_t *)m->arena);
    for (int k = 0; k < c->n_reg; k++)
        if (c->reg[k].half)
            m->dev_read_bytes -= c->reg[k].host == wpe_at ? (size_t)m->cfg.n_embd * 2 : c->reg[k].len / 2;
    return GQ_OK;
}

static void free_state(struct gq_im_cuda *c) {
    gq_cuda_graph_free(c->graph);
    c->graph = NULL, c->graph_tried = 0;
    c->dev_pos = c->dev_tok = -1, c->rng_known = 0;
    if (c->state) gq_cuda_free(c->state);
    c->state = NULL;
}

void gq_imc_free(struct gq_im_cuda *c) {
    if (!c) return;
    free_state(c);
    if (c->arena) gq_cuda_free(c->arena);
    free(c->layers);
    free(c->reg);
    free(c);
}

static size_t up(size_t n) { return (n + 255) / 256 * 256; }

static int warm_up(gq_im *m, struct gq_im_cuda *c);

int gq_imc_plan(gq_im *m) {
    if (m->B != 1)
        return gq_errf(GQ_EUNSUPPORTED, "--device cuda runs one sequence at a time (the plan asks for %d)", m->B);
    if (!gq_imc_available()) return gq_errf(GQ_EDEVICE, "--device cuda: no CUDA device found");
    if (m->wte.x8 || (m->cfg.n_layer > 0 && m->layers[0].fc.x8)) /* the GPU kernels read the exported layout */
        return gq_errf(GQ_EINVAL, "%s: already planned for the CPU (8-row layout); load it again for --device cuda",
                       m->path);
    struct gq_im_cuda *c = m->cuda;
    int rc;
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return gq_errf(GQ_ENOMEM, "out of memory");
        m->cuda = c;
        if ((rc = upload_weights(m, c))) return rc;
    }
    free_state(c);
    const gq_gpt2_config *g = &m->cfg;
    const size_t C = (size_t)g->n_embd, L = (size_t)g->n_layer, T = (size_t)m->n_ctx, M = (size_t)m->chunk,
                 Vp = (size_t)g->padded_vocab_size;
    c->T = m->n_ctx, c->chunk = m->chunk, c->f16 = m->kv_f16;
    const char *fenv = getenv("GQ_CUDA_FUSED"); /* 0: the unfused decode step, for comparison */
    c->fused = g->n_embd <= GQ_CUDA_LN_ROW_MAX && !(fenv && !strcmp(fenv, "0"));
    m->dev_fused = c->fused;
    const size_t kv = L * T * C * (c->f16 ? 2 : 4);
    size_t sizes[] = {kv,
                      kv,
                      M * C * 4,
                      M * C * 4,
                      M * 4,
                      M * 4,
                      M * 3 * C * 4,
                      M * C * 4,
                      M * C * 4,
                      M * 4 * C * 4,
                      M * Vp * 4,
                      M * 4,
                      M * 4,
                      M * 4,
                      M * 4,
                      4,
                      4,
                      Vp * 4,
                      16};
    const int n = (int)(sizeof sizes / sizeof *sizes);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += up(sizes[i]);
    if ((rc = gq_cuda_alloc(&c->state, total)))
        return gq_errf(rc, "--device cuda: no room for the run state (%zu MB): %s", total >> 20, gq_errmsg(rc));
    void *p[sizeof sizes / sizeof *sizes];
    uint8_t *s = c->state;
    for (int i = 0; i < n; i++)
        p[i] = s, s += up(sizes[i]);
    c->kc = p[0], c->vc = p[1], c->x = p[2], c->ln = p[3], c->mean = p[4], c->rstd = p[5], c->qkv = p[6];
    c->atty = p[7], c->tmp = p[8], c->fch = p[9], c->logits = p[10], c->losses = p[11], c->lse = p[12];
    c->tokens = p[13], c->targets = p[14], c->pos = p[15], c->next = p[16], c->prob = p[17], c->rng = p[18];
    m->dev_kv_bytes = 2 * up(kv);
    m->dev_state_bytes = total;
    const char *wenv = getenv("GQ_CUDA_WARMUP"); /* 0: no warm-up (to measure what it saves) */
    return wenv && !strcmp(wenv, "0") ? GQ_OK : warm_up(m, c);
}

/* --act int8: whether a product on w takes int8 activations (where w takes the integer path, as
 * on the CPU runner) */
static int act8_on(const gq_im *m, const gq_qmat *w) { return m->act8 && gq_qmat_int_path(w); }

/* A decode step's layers (one token): 5 launches a layer, the layernorms and residual adds inside
 * the products (gq_qmm_ep), the KV store inside the attention; with --act int8 each product's
 * prologue quantizes its input row as well. The layernorm prologue is repeated by every block of
 * the product, which pays where the product is one wave of blocks (qkv and fc: 288 and 384 blocks
 * for GPT-2 124M). */
static int layers_one(gq_im *m, struct gq_im_cuda *c) {
    const gq_gpt2_config *g = &m->cfg;
    const int C = g->n_embd, NH = g->n_head;
    const size_t lay = (size_t)c->T * C * (c->f16 ? 2 : 4);
    GQ_TRY(gq_cuda_embed(c->x, &c->wte, &c->wpe, c->tokens, c->pos, 1, C));
    for (int l = 0; l < g->n_layer; l++) {
        const gq_im_layer *L = &c->layers[l];
        void *kc = (uint8_t *)c->kc + l * lay, *vc = (uint8_t *)c->vc + l * lay;
        const gq_qmm_ep ln1 = {L->ln1w, L->ln1b, 0, 0, act8_on(m, &L->qkv)};
        const gq_qmm_ep ln2 = {L->ln2w, L->ln2b, 1, 0, act8_on(m, &L->fc)};
        const gq_qmm_ep res1 = {NULL, NULL, 0, 1, act8_on(m, &L->attproj)};
        const gq_qmm_ep res2 = {NULL, NULL, 0, 1, act8_on(m, &L->fcproj)};
        GQ_TRY(gq_cuda_qmatmul_ep(c->qkv, c->x, 1, &L->qkv, L->qkvb, &ln1));
        GQ_TRY(gq_cuda_store_attend(c->atty, c->qkv, kc, vc, c->f16, c->pos, NH, C, c->T));
        GQ_TRY(gq_cuda_qmatmul_ep(c->x, c->atty, 1, &L->attproj, L->attprojb, &res1));
        GQ_TRY(gq_cuda_qmatmul_ep(c->fch, c->x, 1, &L->fc, L->fcb, &ln2)); /* layernorm, product, GELU */
        GQ_TRY(gq_cuda_qmatmul_ep(c->x, c->fch, 1, &L->fcproj, L->fcprojb, &res2));
    }
    return GQ_OK;
}

/* --act int8: the M rows of x that a product on w multiplies become their int8 values (quant.h's
 * blocks of 32, the CPU runner's), where w takes the integer path there */
static int act8(const gq_im *m, float *x, int M, const gq_qmat *w) {
    return act8_on(m, w) ? gq_cuda_act_fakequant(x, (size_t)M * (size_t)w->cols, 0) : GQ_OK;
}

/* The layers on M tokens whose ids and first position are already in device memory. */
static int layers(gq_im *m, struct gq_im_cuda *c, int M, int own_pass) {
    const gq_gpt2_config *g = &m->cfg;
    const int C = g->n_embd, NH = g->n_head;
    if (M == 1 && !own_pass && c->fused) return layers_one(m, c);
    const size_t lay = (size_t)c->T * C * (c->f16 ? 2 : 4);
    GQ_TRY(gq_cuda_embed(c->x, &c->wte, &c->wpe, c->tokens, c->pos, M, C));
    for (int l = 0; l < g->n_layer; l++) {
        const gq_im_layer *L = &c->layers[l];
        void *kc = (uint8_t *)c->kc + l * lay, *vc = (uint8_t *)c->vc + l * lay;
        if (l == 0) /* later layers: the previous layer's residual add comes with this layernorm */
            GQ_TRY(gq_cuda_layernorm_forward(c->ln, c->mean, c->rstd, c->x, L->ln1w, L->ln1b, M, C));
        else
            GQ_TRY(gq_cuda_residual_layernorm(c->x, c->tmp, c->ln, c->mean, c->rstd, L->ln1w, L->ln1b, M, C));
        GQ_TRY(act8(m, c->ln, M, &L->qkv));
        GQ_TRY(gq_cuda_qmatmul(c->qkv, c->ln, M, &L->qkv, L->qkvb));
        GQ_TRY(gq_cuda_kv_store(kc, vc, c->f16, c->qkv, c->pos, M, C));
        GQ_TRY(gq_cuda_attend(c->atty, c->qkv, kc, vc, c->f16, c->pos, own_pass, M, NH, C, c->T));
        GQ_TRY(act8(m, c->atty, M, &L->attproj));
        GQ_TRY(gq_cuda_qmatmul(c->tmp, c->atty, M, &L->attproj, L->attprojb));
        GQ_TRY(gq_cuda_residual_layernorm(c->x, c->tmp, c->ln, c->mean, c->rstd, L->ln2w, L->ln2b, M, C));
        const gq_qmm_ep gelu = {NULL, NULL, 1, 0, 0};
        GQ_TRY(act8(m, c->ln, M, &L->fc));
        GQ_TRY(gq_cuda_qmatmul_ep(c->fch, c->ln, M, &L->fc, L->fcb, &gelu));
        GQ_TRY(act8(m, c->fch, M, &L->fcproj));
        GQ_TRY(gq_cuda_qmatmul(c->tmp, c->fch, M, &L->fcproj, L->fcprojb));
    }
    return g->n_layer ? gq_cuda_residual_forward(c->x, c->x, c->tmp, (size_t)M * C) : GQ_OK;
}

/* The last token's logits (and greedy pick) after the layers. */
static int head_last(gq_im *m, struct gq_im_cuda *c, int M) {
    const int C = m->cfg.n_embd;
    const float *last = c->x + (size_t)(M - 1) * C;
    /* the final layernorm in a launch of its own: inside the LM-head product each of its ~6300
     * blocks would normalize the row again, over ~16 waves */
    GQ_TRY(gq_cuda_layernorm_forward(c->ln, c->mean, c->rstd, last, c->lnfw, c->lnfb, 1, C));
    GQ_TRY(act8(m, c->ln, 1, &c->wte));
    GQ_TRY(gq_cuda_qmatmul(c->logits, c->ln, 1, &c->wte, NULL));
    return gq_cuda_sample(c->next, c->logits, m->cfg.vocab_size, m->temperature, m->top_k, m->top_p, c->rng, c->prob);
}

/* One token after the prompt; it ends by setting the next step's token (this step's pick) and
 * position in device memory, so that a generation loop uploads nothing before its next step. */
static int decode_step(gq_im *m, struct gq_im_cuda *c) {
    GQ_TRY(layers(m, c, 1, 0));
    GQ_TRY(head_last(m, c, 1));
    return gq_cuda_decode_advance(c->tokens, c->pos, c->next);
}

/* The decode step as a CUDA graph for m's sampler settings, captured once and replayed at every
 * position (the settings are kernel arguments: other settings, another capture). GQ_CUDA_GRAPH=0
 * launches the ops one by one (for comparison); where capture fails they run one by one too. */
static void capture_decode(gq_im *m, struct gq_im_cuda *c) {
    if (c->graph_tried && (c->g_temperature != m->temperature || c->g_top_k != m->top_k || c->g_top_p != m->top_p)) {
        gq_cuda_graph_free(c->graph);
        c->graph = NULL, c->graph_tried = 0;
    }
    if (c->graph_tried) return;
    c->graph_tried = 1;
    const char *env = getenv("GQ_CUDA_GRAPH");
    if (env && !strcmp(env, "0")) c->graph_tried = 2;
    c->g_temperature = m->temperature, c->g_top_k = m->top_k, c->g_top_p = m->top_p;
    if (c->graph_tried == 1 && gq_cuda_graph_begin() == GQ_OK) {
        int rc = decode_step(m, c);
        void *exec = NULL;
        int rc2 = gq_cuda_graph_end(&exec);
        if (!rc && !rc2)
            c->graph = exec;
        else
            gq_cuda_graph_free(exec);
    }
}

/* What the first generation after a plan would otherwise pay on top of the steady state, paid by
 * the plan: a prompt's pass of `chunk` tokens and one decode step on token 0 (the kernels' first
 * launches load their modules: CUDA loads them lazily), and the decode step's graph captured for
 * the sampler settings m holds now (greedy unless set before the plan; other settings capture
 * again at their first step). The cache rows this writes (positions 0..chunk) are written again
 * by any later pass before they are read: every sequence starts with a pass from position 0. */
static int warm_up(gq_im *m, struct gq_im_cuda *c) {
    const int n = c->chunk, own_pass = n >= GQ_QMM_PANEL_MIN;
    int32_t *zeros = calloc((size_t)n, sizeof *zeros);
    if (!zeros) return gq_errf(GQ_ENOMEM, "out of memory");
    int rc = gq_cuda_upload(c->tokens, zeros, (size_t)n * sizeof *zeros);
    free(zeros);
    const int32_t p0 = 0;
    if (!rc) rc = gq_cuda_upload(c->pos, &p0, sizeof p0);
    if (!rc && m->temperature > 0) { /* a sampled pick draws: give it a defined stream */
        const uint64_t r[2] = {m->sample_seed, m->sample_draw};
        rc = gq_cuda_upload(c->rng, r, sizeof r);
    }
    if (!rc) rc = layers(m, c, n, own_pass);
    if (!rc) rc = head_last(m, c, n);
    if (!rc && c->T > n) { /* the step itself (position n), then its graph */
        const int32_t pn = n;
        rc = gq_cuda_upload(c->pos, &pn, sizeof pn);
        if (!rc) rc = decode_step(m, c);
        if (!rc) capture_decode(m, c);
    }
    if (!rc) rc = gq_cuda_sync();
    c->dev_pos = c->dev_tok = -1, c->rng_known = 0; /* what the device holds now is no one's */
    return rc;
}

int gq_imc_forward(gq_im *m, const int32_t *tokens, int n, int pos, const int32_t *targets, double *loss_sum,
                   long *n_scored) {
    struct gq_im_cuda *c = m->cuda;
    if (!c || !c->state) return gq_errf(GQ_EINVAL, "--device cuda: forward before the plan");
    const gq_gpt2_config *g = &m->cfg;
    const int C = g->n_embd, V = g->vocab_size, Vp = g->padded_vocab_size;
    const int32_t p32 = pos;
    const int decode = n == 1 && pos > 0 && !targets;
    if (!(decode && c->dev_pos == pos && c->dev_tok == tokens[0])) { /* else the last step left them there */
        GQ_TRY(gq_cuda_upload(c->tokens, tokens, (size_t)n * sizeof *tokens));
        GQ_TRY(gq_cuda_upload(c->pos, &p32, sizeof p32));
    }
    c->dev_pos = c->dev_tok = -1;
    /* a sampled pick draws value m->sample_draw of the stream m->sample_seed; the device advances
     * the index itself, so a generation loop uploads it once */
    const int draws = m->temperature > 0 && !targets;
    if (draws) {
        const uint64_t want[2] = {m->sample_seed, m->sample_draw};
        if (!(c->rng_known && c->dev_rng[0] == want[0] && c->dev_rng[1] == want[1]))
            GQ_TRY(gq_cuda_upload(c->rng, want, sizeof want));
        c->rng_known = 0;
    }
    /* the CPU runner's rule: a pass of GQ_QMM_PANEL_MIN+ tokens from position 0 attends over its
     * own fp32 keys and values, every other pass over the cache */
    const int own_pass = pos == 0 && n >= GQ_QMM_PANEL_MIN;
    if (targets) {
        GQ_TRY(gq_cuda_upload(c->targets, targets, (size_t)n * sizeof *targets));
        GQ_TRY(layers(m, c, n, own_pass));
        GQ_TRY(gq_cuda_layernorm_forward(c->ln, c->mean, c->rstd, c->x, c->lnfw, c->lnfb, n, C));
        GQ_TRY(act8(m, c->ln, n, &c->wte));
        GQ_TRY(gq_cuda_qmatmul(c->logits, c->ln, n, &c->wte, NULL));
        GQ_TRY(gq_cuda_crossentropy_forward(c->losses, c->lse, c->logits, c->targets, n, V, Vp));
        float *host = m->tmp; /* the host plan's (chunk, C) scratch holds n losses */
        GQ_TRY(gq_cuda_download(host, c->losses, (size_t)n * sizeof *host));
        for (int r = 0; r < n; r++) {
            if (targets[r] >= 0) *loss_sum += host[r], (*n_scored)++;
            if (m->row_losses) m->row_losses[r] = targets[r] >= 0 ? host[r] : 0;
        }
        return GQ_OK;
    }
    if (decode) {
        capture_decode(m, c);
        m->dev_graph = c->graph != NULL;
        if (c->graph)
            GQ_TRY(gq_cuda_graph_launch(c->graph));
        else
            GQ_TRY(decode_step(m, c));
    } else {
        GQ_TRY(layers(m, c, n, own_pass));
        GQ_TRY(head_last(m, c, n));
    }
    GQ_TRY(gq_cuda_download(&m->next_token, c->next, sizeof m->next_token));
    if (decode) /* -1 (the host samples) never matches a token */
        c->dev_pos = pos + 1, c->dev_tok = m->next_token;
    if (draws) c->dev_rng[0] = m->sample_seed, c->dev_rng[1] = m->sample_draw + 1, c->rng_known = 1;
    if (m->skip_logits && m->next_token >= 0) return GQ_OK; /* the pick is all the caller needs */
    return gq_cuda_download(m->logits, c->logits, (size_t)Vp * sizeof *m->logits);
}

#endif
