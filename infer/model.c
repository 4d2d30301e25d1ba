/* model (infer/): see model.h. */
#define _POSIX_C_SOURCE 200809L
#include "model.h"
#include "model_cuda.h"

#include "act_math.h"
#include "cpu_ops.h"
#include "gpt2_weights.h"
#include "gq_error.h"
#include "gq_progress.h"
#include "h5io.h"
#include "qexport.h"
#include "qplan.h"
#include "simd.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
#define PANEL_FLOATS (512 * 1024) /* 2 MB: the prefill/eval dequantization panel */

static size_t up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* ---- wiring tensors into the model ---- */

/* the model's slot for tensor i of layer l: a matrix or a vector */
static gq_qmat *mat_slot(gq_im *m, int i, int l) {
    switch (i) {
    case 0: return &m->wte;
    case 4: return &m->layers[l].qkv;
    case 6: return &m->layers[l].attproj;
    case 10: return &m->layers[l].fc;
    case 12: return &m->layers[l].fcproj;
    default: return NULL;
    }
}

static float **vec_slot(gq_im *m, int i, int l) {
    gq_im_layer *L = &m->layers[l];
    float **s[GQ_GPT2_N_TENSORS] = {NULL,     &m->wpe,  &L->ln1w, &L->ln1b, NULL, &L->qkvb,    NULL,     &L->attprojb,
                                    &L->ln2w, &L->ln2b, NULL,     &L->fcb,  NULL, &L->fcprojb, &m->lnfw, &m->lnfb};
    return s[i];
}

static int alloc_model(gq_im **out, const char *path, const gq_gpt2_config *cfg) {
    gq_im *m = calloc(1, sizeof *m);
    if (!m) return gq_errf(GQ_ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->kv_f16 = 1;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    m->n_refs = gq_gpt2_n_tensor_refs(cfg);
    m->refs = calloc((size_t)m->n_refs, sizeof *m->refs);
    if (!m->layers || !m->refs) {
        free(m->layers), free(m->refs), free(m);
        return gq_errf(GQ_ENOMEM, "out of memory");
    }
    gq_gpt2_tensor_refs(cfg, m->refs);
    *out = m;
    return GQ_OK;
}

static int load_float(gq_im *m) {
    const gq_gpt2_config *c = &m->cfg;
    const size_t n = gq_gpt2_n_params(c);
    m->arena_bytes = up(n * sizeof(float));
    m->arena = aligned_alloc(ALIGN, m->arena_bytes);
    if (!m->arena) return gq_errf(GQ_ENOMEM, "%s: out of memory for %zu MB of weights", m->path, m->arena_bytes >> 20);
    int rc = gq_weights_read(m->path, c, m->arena);
    if (rc) return rc;
    for (int k = 0; k < m->n_refs; k++) {
        const gq_gpt2_tensor_ref *t = &m->refs[k];
        float *p = (float *)m->arena + t->offset;
        gq_qmat *q = mat_slot(m, t->i, t->l);
        if (q)
            *q = (gq_qmat){.spec = {GQ_QF_F32, 0, 0, 0, 0, 0}, .rows = (int)t->rows, .cols = (int)t->cols, .f32 = p};
        else
            *vec_slot(m, t->i, t->l) = p;
    }
    snprintf(m->kind, sizeof m->kind, "fp32");
    snprintf(m->formats, sizeof m->formats, "f32 x%d", m->n_refs);
    return GQ_OK;
}

/* one tensor of an export: its spec and where its arrays go in the arena */
typedef struct {
    gq_qspec spec;
    int rows, cols;
    size_t off_q, off_s, off_z, off_aq, off_a2, end;
} ex_tensor;

static size_t ex_layout(ex_tensor *t, size_t off) {
    const size_t rows = (size_t)t->rows, cols = (size_t)(t->cols ? t->cols : 1);
    if (t->spec.format == GQ_QF_F32) {
        t->off_q = off;
        return t->end = off + up(rows * cols * 4);
    }
    const size_t groups = gq_qn_groups(&t->spec, t->rows, t->cols);
    const int dq = t->spec.format == GQ_QF_NF4 && t->spec.double_quant;
    t->off_q = off;
    off += up(gq_qpacked_bytes(&t->spec, t->rows, t->cols));
    t->off_s = off;
    off += dq ? 0 : up(groups * (gq_qscale_f16(t->spec.format) ? 2 : 4));
    t->off_z = off;
    off += t->spec.format == GQ_QF_INT4A ? up(groups) : 0;
    t->off_aq = off;
    off += dq ? up(groups) : 0;
    t->off_a2 = off;
    off += dq ? up(4 * ((groups + GQ_DQ_BLOCK - 1) / GQ_DQ_BLOCK)) : 0;
    return t->end = off;
}

static int load_export(gq_im *m, gq_h5r *r) {
    ex_tensor *ts = calloc((size_t)m->n_refs, sizeof *ts);
    if (!ts) return gq_errf(GQ_ENOMEM, "out of memory");
    int rc = GQ_OK;
    size_t off = 0;
    char path[400];
    /* pass 1: specs and the arena plan */
    for (int k = 0; k < m->n_refs && !rc; k++) {
        const gq_gpt2_tensor_ref *ref = &m->refs[k];
        ex_tensor *t = &ts[k];
        t->rows = (int)ref->rows, t->cols = (int)ref->cols;
        snprintf(path, sizeof path, "/tensors/%s", ref->name);
        if (!gq_h5r_exists(r, path)) {
            rc = gq_errf(GQ_EFORMAT, "%s: tensor %s is missing", m->path, path);
            break;
        }
        rc = gq_export_tensor_spec(r, ref->name, t->rows, t->cols, &t->spec);
        if (!rc && t->spec.format != GQ_QF_F32 && !mat_slot(m, ref->i, ref->l))
            rc = gq_errf(GQ_EUNSUPPORTED, "%s: %s is stored as %s; the runner expects it in fp32", m->path, path,
                         gq_qformat_name(t->spec.format));
        if (!rc) off = ex_layout(t, off);
    }
    if (!rc) {
        m->arena_bytes = off;
        m->arena = aligned_alloc(ALIGN, off + ALIGN); /* slack: the int3 kernel reads a few bytes ahead */
        if (!m->arena) rc = gq_errf(GQ_ENOMEM, "%s: out of memory for %zu MB of weights", m->path, off >> 20);
    }
    /* pass 2: read every array into place and wire the model */
    uint8_t *A = m->arena;
    int counts[GQ_QF_COUNT] = {0}, groups_of[GQ_QF_COUNT] = {0};
    size_t qvals[GQ_QF_COUNT] = {0};
    for (int k = 0; k < m->n_refs && !rc; k++) {
        const int i = m->refs[k].i, l = m->refs[k].l;
        ex_tensor *t = &ts[k];
        char base[300];
        snprintf(base, sizeof base, "/tensors/%s", m->refs[k].name);
        counts[t->spec.format]++;
        qvals[t->spec.format] += (size_t)t->rows * (t->cols ? t->cols : 1);
        if (t->spec.format == GQ_QF_F32) {
            size_t dims[2] = {(size_t)t->rows, (size_t)t->cols};
            snprintf(path, sizeof path, "%s/value", base);
            rc = gq_h5r_f32(r, path, (float *)(A + t->off_q), t->cols ? 2 : 1, dims);
            gq_qmat *q = mat_slot(m, i, l);
            if (q)
                *q = (gq_qmat){.spec = t->spec, .rows = t->rows, .cols = t->cols, .f32 = (float *)(A + t->off_q)};
            else
                *vec_slot(m, i, l) = (float *)(A + t->off_q);
            continue;
        }
        size_t groups = gq_qn_groups(&t->spec, t->rows, t->cols), bytes = gq_qpacked_bytes(&t->spec, t->rows, t->cols);
        gq_qmat *q = mat_slot(m, i, l);
        *q = (gq_qmat){.spec = t->spec, .rows = t->rows, .cols = t->cols, .group = gq_qgroup(&t->spec, t->cols)};
        groups_of[t->spec.format] = q->group;
        snprintf(path, sizeof path, "%s/qweight", base);
        rc = gq_h5r_u8(r, path, A + t->off_q, 1, &bytes);
        q->q = A + t->off_q;
        if (!rc && t->spec.format == GQ_QF_NF4 && t->spec.double_quant) {
            size_t d2 = (groups + GQ_DQ_BLOCK - 1) / GQ_DQ_BLOCK;
            double offset = 0;
            snprintf(path, sizeof path, "%s/absmax_q", base);
            rc = gq_h5r_i8(r, path, (int8_t *)(A + t->off_aq), 1, &groups);
            snprintf(path, sizeof path, "%s/absmax2", base);
            if (!rc) rc = gq_h5r_f32(r, path, (float *)(A + t->off_a2), 1, &d2);
            if (!rc) rc = gq_h5r_attr_f64(r, base, "absmax_offset", &offset);
            q->absmax_q = (int8_t *)(A + t->off_aq);
            q->absmax2 = (float *)(A + t->off_a2);
            q->absmax_offset = (float)offset;
        } else if (!rc) {
            snprintf(path, sizeof path, "%s/scales", base);
            if (gq_qscale_f16(t->spec.format)) {
                rc = gq_h5r_u16(r, path, (uint16_t *)(A + t->off_s), 1, &groups);
                q->s16 = (uint16_t *)(A + t->off_s);
            } else {
                rc = gq_h5r_f32(r, path, (float *)(A + t->off_s), 1, &groups);
                q->s32 = (float *)(A + t->off_s);
            }
        }
        if (!rc && t->spec.format == GQ_QF_INT4A) {
            snprintf(path, sizeof path, "%s/zeros", base);
            rc = gq_h5r_u8(r, path, A + t->off_z, 1, &groups);
            q->zeros = A + t->off_z;
        }
    }
    free(ts);
    if (rc) return rc;
    /* scales and fp32 values must be finite (a damaged file must not turn into NaN logits) */
    int best = GQ_QF_F32;
    size_t best_vals = 0;
    char *f = m->formats;
    size_t left = sizeof m->formats;
    for (int q = 0; q < GQ_QF_COUNT; q++) {
        if (!counts[q]) continue;
        if (q != GQ_QF_F32) {
            m->quantized = 1;
            if (qvals[q] > best_vals) best_vals = qvals[q], best = q;
        }
        int w = snprintf(f, left, "%s%s x%d", f == m->formats ? "" : ", ", q == GQ_QF_F32 ? "f32" : gq_qformat_name(q),
                         counts[q]);
        if (w > 0 && (size_t)w < left) f += w, left -= (size_t)w;
    }
    if (best == GQ_QF_F32)
        snprintf(m->kind, sizeof m->kind, "fp32");
    else if (best == GQ_QF_INT8 || best == GQ_QF_Q8_0)
        snprintf(m->kind, sizeof m->kind, "%s", gq_qformat_name(best));
    else
        snprintf(m->kind, sizeof m->kind, "%s-g%d", gq_qformat_name(best), groups_of[best]);
    return GQ_OK;
}

static int check_finite(gq_im *m) {
    for (int k = 0; k < m->n_refs; k++) {
        const gq_gpt2_tensor_ref *t = &m->refs[k];
        gq_qmat *q = mat_slot(m, t->i, t->l);
        const float *v = q ? q->f32 : *vec_slot(m, t->i, t->l);
        size_t n = t->rows * (t->cols ? t->cols : 1);
        if (q && q->spec.format != GQ_QF_F32) {
            const size_t groups = gq_qn_groups(&q->spec, q->rows, q->cols);
            v = q->absmax2 ? q->absmax2 : q->s32;
            n = q->absmax2 ? (groups + GQ_DQ_BLOCK - 1) / GQ_DQ_BLOCK : q->s32 ? groups : 0;
            for (size_t g = 0; q->s16 && g < groups; g++)
                if (((q->s16[g] >> 10) & 31) == 31)
                    return gq_errf(GQ_ENAN, "%s: tensor %s: scale %zu is not finite", m->path, t->name, g);
        }
        for (size_t e = 0; v && e < n; e++)
            if (!isfinite(v[e])) return gq_errf(GQ_ENAN, "%s: tensor %s: value %zu is not finite", m->path, t->name, e);
    }
    return GQ_OK;
}

static size_t read_bytes(const gq_im *m) {
    const gq_gpt2_config *c = &m->cfg;
    size_t b = gq_qmat_bytes(&m->wte) + (size_t)c->n_embd * 4 /* one wpe row */ + 2 * (size_t)c->n_embd * 4;
    for (int l = 0; l < c->n_layer; l++) {
        const gq_im_layer *L = &m->layers[l];
        b += gq_qmat_bytes(&L->qkv) + gq_qmat_bytes(&L->attproj) + gq_qmat_bytes(&L->fc) + gq_qmat_bytes(&L->fcproj);
        b += (size_t)c->n_embd * 4 * 13; /* ln weights/biases, the four biases */
    }
    return b;
}

int gq_im_load(gq_im **out, const char *path) {
    *out = NULL;
    const double t0 = gq_now();
    gq_gpt2_config cfg;
    int kind, rc = gq_weights_kind(path, &kind);
    if (!rc) rc = gq_weights_config(path, &cfg);
    if (rc) return rc;
    gq_im *m = NULL;
    if ((rc = alloc_model(&m, path, &cfg))) return rc;
    char fmt[64] = "";
    gq_h5r *r = NULL;
    if (kind == GQ_WEIGHTS_GPT2Q && !(rc = gq_h5r_open(&r, path))) {
        char act[16] = "";
        gq_h5r_attr_str(r, "/", "format", fmt, sizeof fmt);
        if (!gq_h5r_attr_str(r, "/", "trained_activations", act, sizeof act)) m->trained_act8 = !strcmp(act, "int8");
    }
    if (!rc) rc = !strcmp(fmt, "gpt2q-quantized") ? load_export(m, r) : load_float(m);
    if (r) gq_h5r_close(r);
    if (!rc) rc = check_finite(m);
    if (rc) {
        gq_im_free(m);
        return rc;
    }
    m->weight_bytes = read_bytes(m);
    m->load_seconds = gq_now() - t0;
    *out = m;
    return GQ_OK;
}

void gq_im_free(gq_im *m) {
    if (!m) return;
    gq_imc_free(m->cuda);
    free(m->arena);
    free(m->state);
    free(m->layers);
    free(m->refs);
    free(m);
}

/* ---- run state ---- */

int gq_im_plan(gq_im *m, int B, int n_ctx, int chunk) {
    const gq_gpt2_config *c = &m->cfg;
    if (B < 1 || chunk < 1 || n_ctx < 1 || n_ctx > c->block_size || chunk > n_ctx)
        return gq_errf(GQ_EINVAL, "plan of %d sequences x %d positions (%d per call): positions must be in 1..%d", B,
                       n_ctx, chunk, c->block_size);
    free(m->state);
    m->state = NULL;
    const size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer, M = (size_t)B * chunk,
                 Vp = (size_t)c->padded_vocab_size;
    const int nt = omp_get_max_threads();
    m->B = B, m->n_ctx = n_ctx, m->chunk = chunk, m->M_max = (int)M;
    m->panel_floats = M >= GQ_QMM_PANEL_MIN ? (PANEL_FLOATS > 4 * C ? PANEL_FLOATS : 4 * C) : 0;
    const size_t vpanel = m->panel_floats / C; /* vocabulary rows per LM-head panel (eval) */
    m->logits_rows = B;
    size_t logit_floats = (size_t)B * Vp > M * vpanel ? (size_t)B * Vp : M * vpanel;
    /* qkv, fch and logits are never live together (qkv dies in attention before fch is made,
     * fch in the MLP before the LM head; the logits live from the LM head to the next call):
     * one region holds all three */
    size_t shared = M * 4 * C > logit_floats ? M * 4 * C : logit_floats;
    const size_t kv_elem = m->kv_f16 ? 2 : 4, hs = C / (size_t)c->n_head;
    const size_t kvconv = m->kv_f16 && chunk >= GQ_QMM_PANEL_MIN ? (size_t)nt * n_ctx * hs * 2 * 4 : 0;
    size_t sizes[] = {L * B * n_ctx * C * kv_elem,
                      L * B * n_ctx * C * kv_elem, /* k, v */
                      M * C * 4,
                      M * C * 4,
                      M * 4,
                      M * 4,
                      shared * 4, /* x, ln, mean, rstd, qkv = fch = logits */
                      M * C * 4,
                      M * C * 4,                      /* atty, tmp */
                      (size_t)nt * chunk * n_ctx * 4, /* attention scores per thread */
                      M * 4 * C,
                      M * 4 * C / 32 * 4,
                      M * 4 * C / 32 * 4,  /* int8 activations */
                      m->panel_floats * 4, /* panel */
                      kvconv};
    const int n = (int)(sizeof sizes / sizeof *sizes);
    if (m->device == GQ_IM_CUDA) { /* the GPU holds the cache and the work: the host keeps logits and losses */
        sizes[0] = sizes[1] = sizes[9] = sizes[10] = sizes[11] = sizes[12] = sizes[13] = sizes[14] = 0;
        m->panel_floats = 0;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += up(sizes[i]);
    m->state = aligned_alloc(ALIGN, total);
    if (!m->state) return gq_errf(GQ_ENOMEM, "out of memory for the run state (%zu MB)", total >> 20);
    memset(m->state, 0, total);
    void *p[sizeof sizes / sizeof *sizes];
    uint8_t *s = m->state;
    for (int i = 0; i < n; i++)
        p[i] = s, s += up(sizes[i]);
    m->kcache = m->kv_f16 ? NULL : p[0], m->vcache = m->kv_f16 ? NULL : p[1];
    m->kcache16 = m->kv_f16 ? p[0] : NULL, m->vcache16 = m->kv_f16 ? p[1] : NULL;
    m->kvconv = kvconv ? p[14] : NULL;
    m->x = p[2], m->ln = p[3], m->mean = p[4], m->rstd = p[5], m->qkv = p[6];
    m->atty = p[7], m->tmp = p[8], m->fch = p[6], m->logits = p[6], m->att = p[9];
    m->aq = p[10], m->ad = p[11], m->abs_ = p[12], m->panel = m->panel_floats ? p[13] : NULL;
    m->kv_bytes = up(sizes[0]) * 2;
    m->act_bytes = total - m->kv_bytes;
    if (m->device == GQ_IM_CUDA) return gq_imc_plan(m);
    /* the CPU kernels' 8-row layout for the quantized matrices (once; the same bytes,
     * rearranged) */
    int bad = gq_qmat_to_x8(&m->wte);
    for (int l = 0; l < c->n_layer; l++) {
        gq_im_layer *Lw = &m->layers[l];
        bad |=
            gq_qmat_to_x8(&Lw->qkv) | gq_qmat_to_x8(&Lw->attproj) | gq_qmat_to_x8(&Lw->fc) | gq_qmat_to_x8(&Lw->fcproj);
    }
    return bad ? gq_errf(GQ_ENOMEM, "%s: out of memory rearranging the quantized weights into the 8-row layout",
                         m->path)
               : GQ_OK;
}

const float *gq_im_logits(const gq_im *m, int b) { return m->logits + (size_t)b * m->cfg.padded_vocab_size; }

/* ---- forward ---- */

/* --act int8: x (M rows of K) becomes its int8 values in place (quant.h's blocks of 32), where a
 * product on w would otherwise multiply float activations (x feeds only that product) */
static void act8_panel(const gq_im *m, float *x, int M, int K, const gq_qmat *w, int panel_path) {
    if (m->act8 && panel_path && gq_qmat_int_path(w)) /* (the trainer's CPU op; K % 32 == 0 on this path) */
        gq_cpu_act_fakequant(x, (size_t)M * (size_t)K);
}

static void linear(gq_im *m, float *out, float *in, int M, int K, const gq_qmat *w, const float *bias, int gelu) {
    gq_qact a = {in, m->aq, m->ad, m->abs_, M, K, !m->scoring};
    act8_panel(m, in, M, K, w, gq_qmatmul_panel_path(&a, w, m->panel, m->panel_floats));
    gq_qmatmul(out, &a, 0, w, bias, gelu, m->panel, m->panel_floats);
}

/* Causal attention of the n new tokens of each sequence over the cache. Many new tokens
 * (prefill, eval): per (sequence, head) two sgemms and a row softmax, the arithmetic of
 * kernels/cpu's attention; one token (decode): dot products over the cached keys. */
static void attention(gq_im *m, int l, int Bn, int n, int pos) {
    const int C = m->cfg.n_embd, NH = m->cfg.n_head, hs = C / NH, T = m->n_ctx;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t lay = (size_t)l * m->B * T * C;
    const gq_qdot_ops *qd = gq_qdot();
    if (n >= GQ_QMM_PANEL_MIN) {
        const int S = pos + n; /* keys per query row, at most */
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < Bn; b++)
            for (int h = 0; h < NH; h++) {
                const int th = omp_get_thread_num();
                float *a = m->att + (size_t)th * m->chunk * T;
                const float *q = m->qkv + (size_t)b * n * 3 * C + h * hs;
                const float *kc, *vc;
                int ld;
                if (pos == 0) { /* a pass from the start: this pass's own fp32 keys and values */
                    kc = q + C, vc = q + 2 * C, ld = 3 * C;
                } else if (!m->kv_f16) {
                    kc = m->kcache + lay + (size_t)b * T * C + h * hs,
                    vc = m->vcache + lay + (size_t)b * T * C + h * hs;
                    ld = C;
                } else { /* fp16 cache: this head's S keys and values as fp32 rows */
                    float *kf = m->kvconv + (size_t)th * T * hs * 2, *vf = kf + (size_t)T * hs;
                    const uint16_t *k16 = m->kcache16 + lay + (size_t)b * T * C + h * hs,
                                   *v16 = m->vcache16 + lay + (size_t)b * T * C + h * hs;
                    for (int u = 0; u < S; u++) {
                        qd->from_f16(kf + (size_t)u * hs, k16 + (size_t)u * C, hs);
                        qd->from_f16(vf + (size_t)u * hs, v16 + (size_t)u * C, hs);
                    }
                    kc = kf, vc = vf, ld = hs;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, S, hs, scale, q, 3 * C, kc, ld, 0.0f, a, S);
                for (int i = 0; i < n; i++)
                    gq_cpu_softmax_causal_row(a + (size_t)i * S, pos + i, S);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, S, 1.0f, a, S, vc, ld, 0.0f,
                            m->atty + (size_t)b * n * C + h * hs, C);
            }
        return;
    }
    const int total = Bn * NH * n;
#pragma omp parallel for schedule(dynamic, 1) if (total > 1)
    for (int job = 0; job < total; job++) {
        const int b = job / (NH * n), h = (job / n) % NH, i = job % n, t = pos + i;
        float *s = m->att + (size_t)omp_get_thread_num() * m->chunk * T;
        const size_t base = lay + (size_t)b * T * C + h * hs;
        qd->attend(m->atty + ((size_t)b * n + i) * C + h * hs, m->qkv + ((size_t)b * n + i) * 3 * C + h * hs,
                   m->kv_f16 ? m->kcache16 + base : NULL, m->kv_f16 ? m->vcache16 + base : NULL,
                   m->kv_f16 ? NULL : m->kcache + base, m->kv_f16 ? NULL : m->vcache + base, (size_t)C, t + 1, hs,
                   scale, s);
    }
}

static void add_into(float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] + y[i];
}

/* Cross-entropy of M rows of m->ln against targets through the tied LM head, one vocabulary
 * panel at a time with a running log-sum-exp per row (combined in double) (the logits of all rows never exist at
 * once). */
static void lm_head_loss(gq_im *m, int M, const int32_t *targets, double *loss_sum, long *n_scored) {
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const int P = (int)(m->panel_floats / (size_t)C);
    double *lse = (double *)m->tmp; /* tmp is free now: M doubles, then M target logits (3M <= M * C floats) */
    float *tl = m->tmp + 2 * (size_t)M;
    const gq_simd_ops *simd = gq_simd();
    for (int r = 0; r < M; r++)
        lse[r] = -INFINITY, tl[r] = 0;
    act8_panel(m, m->ln, M, C, &m->wte, 1);
    for (int v0 = 0; v0 < V; v0 += P) {
        const int v1 = v0 + P < V ? v0 + P : V, np = v1 - v0;
        const float *W;
        if (m->wte.spec.format == GQ_QF_F32) {
            W = m->wte.f32 + (size_t)v0 * C;
        } else {
#pragma omp parallel for schedule(static)
            for (int v = v0; v < v1; v++)
                gq_qmat_dequant_rows(&m->wte, v, v + 1, m->panel + (size_t)(v - v0) * C);
            W = m->panel;
        }
        gq_cpu_matmul_forward(m->logits, m->ln, W, NULL, M, C, np);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < M; r++) {
            const float *z = m->logits + (size_t)r * np;
            const double l = simd->logsumexp(z, np), hi = l > lse[r] ? l : lse[r], lo = l > lse[r] ? lse[r] : l;
            lse[r] = hi + log1p(exp(lo - hi)); /* log(e^lse + e^l) */
            if (targets[r] >= v0 && targets[r] < v1) tl[r] = z[targets[r] - v0];
        }
    }
    for (int r = 0; r < M; r++) {
        const double l = targets[r] >= 0 ? lse[r] - tl[r] : 0;
        if (targets[r] >= 0) *loss_sum += l, (*n_scored)++;
        if (m->row_losses) m->row_losses[r] = (float)l;
    }
}

int gq_im_forward(gq_im *m, const int32_t *tokens, int Bn, int n, int pos, const int32_t *targets, double *loss_sum,
                  long *n_scored) {
    const gq_gpt2_config *c = &m->cfg;
    if (!m->state) return gq_errf(GQ_EINVAL, "gq_im_forward before gq_im_plan");
    if (Bn < 1 || Bn > m->B || n < 1 || n > m->chunk || pos < 0 || pos + n > m->n_ctx)
        return gq_errf(GQ_EINVAL, "%d sequences x %d tokens at position %d do not fit the plan (%d x %d, context %d)",
                       Bn, n, pos, m->B, m->chunk, m->n_ctx);
    const int M = Bn * n, C = c->n_embd, T = m->n_ctx;
    const gq_qdot_ops *qd = gq_qdot();
    for (int r = 0; r < M; r++)
        if (tokens[r] < 0 || tokens[r] >= c->vocab_size)
            return gq_errf(GQ_ERANGE, "token id %d is outside the model's vocabulary of %d", tokens[r], c->vocab_size);
    if (m->device == GQ_IM_CUDA) return gq_imc_forward(m, tokens, n, pos, targets, loss_sum, n_scored);
    if (targets && m->panel_floats == 0)
        return gq_errf(GQ_EINVAL, "scoring needs a plan with at least %d tokens per call", GQ_QMM_PANEL_MIN);
    m->scoring = targets != NULL;
    /* token + position embedding (the embedding row dequantized exactly) */
#pragma omp parallel for schedule(static) if (M > 16)
    for (int r = 0; r < M; r++) {
        float *x = m->x + (size_t)r * C;
        const float *pe = m->wpe + (size_t)(pos + r % n) * C;
        gq_qmat_dequant_rows(&m->wte, tokens[r], tokens[r] + 1, x);
        for (int k = 0; k < C; k++)
            x[k] = x[k] + pe[k];
    }
    for (int l = 0; l < c->n_layer; l++) {
        const gq_im_layer *L = &m->layers[l];
        gq_cpu_layernorm_forward(m->ln, m->mean, m->rstd, m->x, L->ln1w, L->ln1b, M, C);
        linear(m, m->qkv, m->ln, M, C, &L->qkv, L->qkvb, 0);
        const size_t lay = (size_t)l * m->B * T * C;
        for (int r = 0; r < M; r++) {
            const size_t at = lay + ((size_t)(r / n) * T + pos + r % n) * C;
            if (m->kv_f16) {
                qd->to_f16(m->kcache16 + at, m->qkv + (size_t)r * 3 * C + C, C);
                qd->to_f16(m->vcache16 + at, m->qkv + (size_t)r * 3 * C + 2 * C, C);
            } else {
                memcpy(m->kcache + at, m->qkv + (size_t)r * 3 * C + C, (size_t)C * 4);
                memcpy(m->vcache + at, m->qkv + (size_t)r * 3 * C + 2 * C, (size_t)C * 4);
            }
        }
        attention(m, l, Bn, n, pos);
        linear(m, m->tmp, m->atty, M, C, &L->attproj, L->attprojb, 0);
        add_into(m->x, m->tmp, (size_t)M * C);
        gq_cpu_layernorm_forward(m->ln, m->mean, m->rstd, m->x, L->ln2w, L->ln2b, M, C);
        linear(m, m->fch, m->ln, M, C, &L->fc, L->fcb, 1); /* GELU as the epilogue */
        linear(m, m->tmp, m->fch, M, 4 * C, &L->fcproj, L->fcprojb, 0);
        add_into(m->x, m->tmp, (size_t)M * C);
    }
    if (targets) {
        gq_cpu_layernorm_forward(m->ln, m->mean, m->rstd, m->x, m->lnfw, m->lnfb, M, C);
        lm_head_loss(m, M, targets, loss_sum, n_scored);
        return GQ_OK;
    }
    /* the last token of each sequence */
    for (int b = 0; b < Bn; b++)
        memcpy(m->tmp + (size_t)b * C, m->x + ((size_t)b * n + n - 1) * C, (size_t)C * 4);
    gq_cpu_layernorm_forward(m->ln, m->mean, m->rstd, m->tmp, m->lnfw, m->lnfb, Bn, C);
    linear(m, m->logits, m->ln, Bn, C, &m->wte, NULL, 0);
    return GQ_OK;
}
