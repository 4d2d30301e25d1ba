/* The whole model against PyTorch + transformers (tests/fixtures/make_gpt2_fixture.py):
 * import the HF safetensors (and the same weights without the "transformer." prefix, and as
 * an llm.c .bin: all three must give identical parameters), then compare
 *   logits:   max |ours - torch| <= 1e-5 (fp32 vs fp32, different summation orders),
 *   loss:     |ours - torch| <= 1e-5,
 *   grads:    max |ours - torch| / max |torch| <= 1e-4 per tensor,
 *   5 AdamW steps with clipping at 1.0: every loss within 2e-5.
 * The same bounds hold on the CUDA backend (GQ_TEST_BACKEND=cuda: fp32 cuBLAS without TF32).
 * usage: test_gpt2_parity FIXTURE_DIR */
#include "gpt2.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_test.h"
#include "gq_test_backend.h"
#include "qplan.h"
#include "safetensors.h"
#include "weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char dir[1024];
static const char *fx(const char *name) {
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static gq_gpt2 *load(const char *path, int B, int T) {
    gq_gpt2_config cfg;
    gq_gpt2 *m = NULL;
    CHECK_OK(gq_weights_config(path, &cfg));
    CHECK_OK(gq_gpt2_create(&m, &cfg, gq_test_backend(), B, T));
    if (m) CHECK_OK(gq_weights_load(path, m));
    return m;
}

/* every gradient of m against the fixture's torch gradients (named prefix "grad." hf name):
 * max |ours - torch| / max |torch| per tensor <= bound (bound 0: not checked), and zero on the
 * padded vocabulary rows; returns the worst */
static double grads_vs(gq_gpt2 *m, gq_safetensors *ref, const char *prefix, double bound) {
    const int V = m->cfg.vocab_size;
    float *g_host = malloc(m->n_params * 4);
    CHECK_OK(m->be->download(g_host, m->grads_mem, m->n_params * 4));
    size_t off = 0;
    double worst = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(&m->cfg, i, &rows, &cols);
        int conv1d = i == 4 || i == 6 || i == 10 || i == 12;
        int layers = gq_gpt2_tensor(i)->per_layer ? m->cfg.n_layer : 1;
        for (int l = 0; l < layers; l++) {
            char base[160], name[200];
            snprintf(base, sizeof base, gq_gpt2_tensor(i)->hf_name, l);
            snprintf(name, sizeof name, "%sgrad.%s", prefix, base);
            const gq_st_tensor *t = gq_st_find(ref, name);
            CHECKF(t != NULL, "%s missing in the fixture", name);
            size_t per = rows * (cols ? cols : 1), n_ref = i == 0 ? (size_t)V * cols : per;
            float *r = malloc(per * 4);
            if (t) gq_st_read_f32(ref, t, r);
            double max_err = 0, max_ref = 0;
            for (size_t k = 0; t && k < n_ref; k++) {
                size_t ours = conv1d ? (k % rows) * cols + k / rows : k; /* ref is (cols, rows) for Conv1D */
                max_err = fmax(max_err, fabs(g_host[off + ours] - r[k]));
                max_ref = fmax(max_ref, fabs(r[k]));
            }
            double err = max_err / fmax(max_ref, 1e-12);
            worst = fmax(worst, err);
            if (bound > 0) CHECKF(err <= bound, "%s: normalized gradient error %.3g (bound %.3g)", name, err, bound);
            if (i == 0) /* padded rows get no gradient */
                for (size_t k = n_ref; k < per; k++) CHECK(g_host[off + k] == 0.0f);
            free(r);
            off += per;
        }
    }
    free(g_host);
    return worst;
}

/* W8A8 QAT against tests/fixtures/make_w8a8_fixture.py (torch ops: weights int8 per row, the
 * selected products' inputs int8 in blocks of 32, straight-through; a batch of its own, whose
 * activations lie at least 2.37e-4 of a code from any rounding midpoint, so that float round-off
 * cannot round one the other way), for the selections "all"
 * (every product, the LM head too) and "qkv" (the attention's c_attn only): loss within 1e-5
 * and every gradient within 1e-4 of max |torch| per tensor. The same model with int8 weights
 * and float activations must miss the reference's gradients by more than 4x that bound (so
 * the comparison sees the activations' quantization). */
static void w8a8_checks(gq_safetensors *ref, int B, int T) {
    const char *sel[] = {"all", "qkv"};
    int32_t inputs[64 * 64], targets[64 * 64]; /* (the fixture's own batch: no activation near a midpoint) */
    const gq_st_tensor *ti = gq_st_find(ref, "inputs"), *tt = gq_st_find(ref, "targets");
    CHECK(ti && tt && ti->numel == (size_t)B * T && tt->numel == (size_t)B * T);
    if (!ti || !tt || ti->numel != (size_t)B * T || tt->numel != (size_t)B * T) return;
    CHECK_OK(gq_st_read_i32(ref, ti, inputs));
    CHECK_OK(gq_st_read_i32(ref, tt, targets));
    for (int k = 0; k < 2; k++) {
        char prefix[16], lname[32];
        snprintf(prefix, sizeof prefix, "%s.", sel[k]);
        snprintf(lname, sizeof lname, "%sloss", prefix);
        const gq_st_tensor *t = gq_st_find(ref, lname);
        CHECKF(t != NULL, "%s missing in reference_w8a8.safetensors", lname);
        if (!t) return;
        float want;
        CHECK_OK(gq_st_read_f32(ref, t, &want));
        gq_gpt2 *m = load(fx("model.safetensors"), B, T);
        if (!m) return;
        gq_qplan plan;
        CHECK_OK(gq_qplan_build(&plan, "int8", sel[k], 0, m->cfg.n_layer));
        CHECK_OK(gq_gpt2_qat_enable(m, &plan));
        double off = 0;
        for (int act = 0; act <= 1; act++) {
            float loss;
            CHECK_OK(gq_gpt2_set_act8(m, act));
            CHECK_OK(gq_gpt2_forward(m, inputs, targets, B, T, &loss));
            CHECK_OK(gq_gpt2_zero_grad(m));
            CHECK_OK(gq_gpt2_backward(m, 1.0f));
            CHECK_OK(gq_gpt2_qat_mask_grads(m));
            if (!act) {
                off = grads_vs(m, ref, prefix, 0);
                continue;
            }
            const double worst = grads_vs(m, ref, prefix, 1e-4);
            printf("W8A8 (%s): loss %.7f vs torch %.7f; gradients worst %.3g (float activations: %.3g)\n", sel[k],
                   loss, want, worst, off);
            CHECK(fabs(loss - want) <= 1e-5);
            CHECKF(off > 4 * 1e-4, "float activations miss the W8A8 gradients by only %.3g", off);
        }
        gq_gpt2_free(m);
    }
}

/* bf16 mixed precision (issue 8), where the backend has it (CUDA; the CPU computes in fp32
 * only): (1) the fixture at bf16 (weights stochastically rounded, bf16 products; its heads are
 * 8 wide, so the attention is bf16 mode's cuBLAS form) against torch's fp32 loss and gradients:
 * |loss - torch| <= 2e-2 (the loss is about 4.6), gradients max error / max |torch| <= 0.1 per
 * tensor; (2) the same weights read as 2 heads of 16 (a head size the tensor-core flash
 * attention takes), bf16 on this backend against fp32 on the CPU, the same bounds. In bf16 the
 * layernorm, attention and GELU outputs are stored in bf16 (backend.h's bf16_operands). */
static void bf16_checks(gq_gpt2 *fp32_model, gq_safetensors *ref, const int32_t *inputs, const int32_t *targets,
                        double ref_loss, int B, int T) {
    const gq_backend *be = fp32_model->be;
    if (be->set_matmul(GQ_MATMUL_BF16) == GQ_EUNSUPPORTED) {
        printf("bf16: the %s backend has no bf16 products (checked on CUDA)\n", be->name);
        return;
    }
    gq_gpt2 *m = load(fx("model.safetensors"), B, T);
    if (!m) return;
    float loss;
    CHECK_OK(gq_gpt2_set_precision(m, GQ_MATMUL_BF16, 7));
    /* the products' operands (layernorm, attention and GELU outputs, qkv and the MLP's
     * pre-activation) planned in bf16 */
    printf("bf16: activations %zu floats (fp32 plan: %zu), bf16 operands: %d\n", m->n_acts,
           fp32_model->n_acts, m->act16);
    CHECK(m->act16 && m->n_acts < fp32_model->n_acts);
    CHECK_OK(gq_gpt2_forward(m, inputs, targets, B, T, &loss));
    { /* the logits are the LM head's bf16 output: every one a bf16 value, near torch's fp32 ones */
        const int V = m->cfg.vocab_size;
        float *want = malloc((size_t)B * T * V * 4), *got = malloc((size_t)m->cfg.padded_vocab_size * 4);
        CHECK_OK(gq_st_read_f32(ref, gq_st_find(ref, "logits"), want));
        double e = 0, r = 0;
        size_t not16 = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                CHECK_OK(gq_gpt2_logits(m, b, t, got));
                for (int v = 0; v < V; v++) {
                    const float x = got[v], y = want[((size_t)b * T + t) * V + v];
                    e = fmax(e, fabs(x - y)), r = fmax(r, fabs(y));
                    not16 += gq_bf16_to_f32(gq_f32_to_bf16(x)) != x;
                }
            }
        printf("bf16 logits vs torch fp32: max|err| / max|ref| %.3g (bound 5e-2), %zu not bf16 values\n", e / r,
               not16);
        CHECK(e / r <= 5e-2 && e > 0 && not16 == 0);
        free(want), free(got);
    }
    CHECK_OK(gq_gpt2_zero_grad(m));
    CHECK_OK(gq_gpt2_backward(m, 1.0f));
    double worst = grads_vs(m, ref, "", 0.1);
    printf("bf16 vs torch fp32: loss %.5f vs %.5f; gradients worst normalized error %.3g\n", loss, ref_loss, worst);
    CHECK(fabs(loss - ref_loss) <= 2e-2);
    { /* the trainer's micro-step in bf16 (the fused cross-entropy on bf16 logits on CUDA) */
        float lf;
        CHECK_OK(gq_gpt2_zero_grad(m));
        CHECK_OK(gq_gpt2_forward_backward(m, inputs, targets, B, T, 1.0f, &lf));
        const double wf = grads_vs(m, ref, "", 0.1);
        printf("bf16 forward_backward vs torch fp32: loss %.5f (separate: %.5f); gradients worst normalized error "
               "%.3g\n", lf, loss, wf);
        CHECK(fabsf(lf - loss) <= 1e-5f && wf <= 0.1);
    }

    gq_gpt2_config cfg = m->cfg;
    cfg.n_head = 2;
    gq_gpt2 *g = NULL, *c = NULL;
    CHECK_OK(gq_gpt2_create(&g, &cfg, be, B, T));
    CHECK_OK(gq_gpt2_create(&c, &cfg, gq_backend_cpu(), B, T));
    if (g && c) {
        const size_t bytes = m->n_params * 4;
        float *w = malloc(bytes), *gg = malloc(bytes), *gc = malloc(bytes);
        CHECK_OK(be->download(w, fp32_model->params_mem, bytes));
        CHECK_OK(be->upload(g->params_mem, w, bytes));
        memcpy(c->params_mem, w, bytes);
        float lg, lc;
        CHECK_OK(gq_gpt2_set_precision(g, GQ_MATMUL_BF16, 7));
        CHECK_OK(gq_gpt2_forward(g, inputs, targets, B, T, &lg));
        CHECK_OK(gq_gpt2_zero_grad(g));
        CHECK_OK(gq_gpt2_backward(g, 1.0f));
        CHECK_OK(gq_gpt2_forward(c, inputs, targets, B, T, &lc));
        CHECK_OK(gq_gpt2_zero_grad(c));
        CHECK_OK(gq_gpt2_backward(c, 1.0f));
        CHECK_OK(be->download(gg, g->grads_mem, bytes));
        memcpy(gc, c->grads_mem, bytes);
        double worst2 = 0;
        size_t off = 0;
        for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
            const size_t n = g->tensor_numel[i];
            double e = 0, r = 0;
            for (size_t k = 0; k < n; k++) e = fmax(e, fabs(gg[off + k] - gc[off + k])), r = fmax(r, fabs(gc[off + k]));
            const double err = r > 0 ? e / r : e;
            worst2 = fmax(worst2, err);
            CHECKF(err <= 0.1, "2 heads of 16, bf16: %s gradient error %.3g", gq_gpt2_tensor(i)->hf_name, err);
            off += n;
        }
        printf("bf16, 2 heads of 16 (tensor-core attention) vs the CPU in fp32: loss %.5f vs %.5f; gradients worst "
               "normalized error %.3g\n", lg, lc, worst2);
        CHECK(fabs(lg - lc) <= 2e-2);
        free(w), free(gg), free(gc);
    }
    CHECK_OK(be->set_matmul(GQ_MATMUL_FP32));
    gq_gpt2_free(g), gq_gpt2_free(c), gq_gpt2_free(m);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    uint8_t *js;
    size_t jl;
    CHECK_OK(gq_read_file(fx("reference.json"), &js, &jl));
    cJSON *ref_json = cJSON_Parse((const char *)js);
    free(js);
    const int B = cJSON_GetObjectItem(ref_json, "B")->valueint, T = cJSON_GetObjectItem(ref_json, "T")->valueint;
    gq_gpt2 *m = load(fx("model.safetensors"), B, T), *m2 = load(fx("model_noprefix.safetensors"), B, T),
            *m3 = load(fx("model.bin"), B, T);
    if (!m || !m2 || !m3) return gq_test_finish("test_gpt2_parity");
    CHECK(m->cfg.n_layer == 2 && m->cfg.n_head == 4 && m->cfg.n_embd == 32 && m->cfg.vocab_size == 96 &&
          m->cfg.padded_vocab_size == 128);
    {
        size_t bytes = m->n_params * 4;
        float *p1 = malloc(bytes), *p2 = malloc(bytes), *p3 = malloc(bytes);
        CHECK_OK(m->be->download(p1, m->params_mem, bytes));
        CHECK_OK(m->be->download(p2, m2->params_mem, bytes));
        CHECK_OK(m->be->download(p3, m3->params_mem, bytes));
        CHECK(!memcmp(p1, p2, bytes));
        CHECK(!memcmp(p1, p3, bytes));
        free(p1), free(p2), free(p3);
    }
    printf("backend: %s\n", m->be->name);

    gq_safetensors *ref;
    CHECK_OK(gq_st_open(&ref, fx("reference.safetensors")));
    if (!ref) return gq_test_finish("test_gpt2_parity");
    int32_t inputs[64 * 64], targets[64 * 64];
    CHECK_OK(gq_st_read_i32(ref, gq_st_find(ref, "inputs"), inputs));
    CHECK_OK(gq_st_read_i32(ref, gq_st_find(ref, "targets"), targets));
    const int V = m->cfg.vocab_size, Vp = m->cfg.padded_vocab_size;
    float *want = malloc((size_t)B * T * V * 4), *got = malloc((size_t)Vp * 4);
    CHECK_OK(gq_st_read_f32(ref, gq_st_find(ref, "logits"), want));

    float loss;
    CHECK_OK(gq_gpt2_forward(m, inputs, targets, B, T, &loss));
    double max_logit_err = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            gq_gpt2_logits(m, b, t, got);
            for (int v = 0; v < V; v++)
                max_logit_err = fmax(max_logit_err, fabs(got[v] - want[((size_t)b * T + t) * V + v]));
        }
    double ref_loss = cJSON_GetObjectItem(ref_json, "loss")->valuedouble;
    printf("logits max abs err %.3g; loss %.7f vs torch %.7f\n", max_logit_err, loss, ref_loss);
    CHECK(max_logit_err <= 1e-5);
    CHECK(fabs(loss - ref_loss) <= 1e-5);

    CHECK_OK(gq_gpt2_zero_grad(m));
    CHECK_OK(gq_gpt2_backward(m, 1.0f));
    double worst = grads_vs(m, ref, "", 1e-4);
    printf("gradients: worst normalized error %.3g over all tensors\n", worst);
    { /* the trainer's micro-step (forward_backward: the loss and its gradient in one op where
       * the backend fuses them): the same loss and gradients (bit for bit on the CPU, whose
       * fused op runs the two ops' arithmetic row by row; on CUDA within the log-sum-exp's
       * summation order) */
        gq_gpt2 *f = load(fx("model.safetensors"), B, T);
        float lf;
        CHECK_OK(gq_gpt2_zero_grad(f));
        CHECK_OK(gq_gpt2_forward_backward(f, inputs, targets, B, T, 1.0f, &lf));
        const size_t bytes = m->n_params * 4;
        float *ga = malloc(bytes), *gb = malloc(bytes);
        CHECK_OK(m->be->download(ga, m->grads_mem, bytes));
        CHECK_OK(f->be->download(gb, f->grads_mem, bytes));
        double e = 0, r = 0;
        for (size_t i = 0; i < m->n_params; i++) e = fmax(e, fabs(ga[i] - gb[i])), r = fmax(r, fabs(ga[i]));
        const int exact = !strcmp(f->be->name, "cpu");
        CHECK(f->be->crossentropy_forward_backward != NULL);
        printf("forward_backward (%s): loss %.7f vs %.7f, gradients max|diff| / max %.3g\n", f->be->name, lf, loss,
               e / r);
        CHECK(exact ? lf == loss && e == 0 : fabsf(lf - loss) <= 1e-6f && e / r <= 1e-5);
        CHECK(grads_vs(f, ref, "", 1e-4) <= 1e-4);
        free(ga), free(gb);
        gq_gpt2_free(f);
    }

    cJSON *losses = cJSON_GetObjectItem(ref_json, "adamw_losses");
    gq_gpt2 *o = load(fx("model.safetensors"), B, T);
    double max_step_err = 0;
    for (int step = 1; step <= cJSON_GetArraySize(losses); step++) {
        float l, norm;
        const int last = step == cJSON_GetArraySize(losses);
        if (!last) CHECK_OK(gq_gpt2_zero_grad(o));
        /* (the trainer's micro-step; the last only the loss) */
        CHECK_OK(last ? gq_gpt2_forward(o, inputs, targets, B, T, &l)
                      : gq_gpt2_forward_backward(o, inputs, targets, B, T, 1.0f, &l));
        double want_l = cJSON_GetArrayItem(losses, step - 1)->valuedouble;
        max_step_err = fmax(max_step_err, fabs(l - want_l));
        if (last) break;
        CHECK_OK(gq_gpt2_grad_norm(o, &norm));
        float scale = 1.0f / (norm + 1e-6f);
        CHECK_OK(gq_gpt2_update(o, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, scale < 1.0f ? scale : 1.0f));
    }
    printf("AdamW: max loss error over %d steps %.3g\n", cJSON_GetArraySize(losses), max_step_err);
    CHECK(max_step_err <= 2e-5);

    bf16_checks(m, ref, inputs, targets, ref_loss, B, T);

    gq_safetensors *ref8;
    CHECK_OK(gq_st_open(&ref8, fx("reference_w8a8.safetensors")));
    if (ref8) w8a8_checks(ref8, B, T);
    gq_st_close(ref8);

    free(want), free(got);
    gq_st_close(ref);
    cJSON_Delete(ref_json);
    gq_gpt2_free(m), gq_gpt2_free(m2), gq_gpt2_free(m3), gq_gpt2_free(o);
    return gq_test_finish("test_gpt2_parity");
}
