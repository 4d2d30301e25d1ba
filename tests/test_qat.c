/* QAT in the model:
 *   - straight-through estimator: with fake-quant on, the gradient reaching each latent weight
 *     equals the gradient of a float model whose weights ARE the fake-quant weights, bit for
 *     bit, except values that were clipped, whose gradient is 0;
 *   - after QAT steps, the loss of the fake-quant model equals the loss of its export read back
 *     through the dequantize path, exactly, for int4 (with clipping), nf4-dq and mixed rules;
 *   - a non-finite latent weight refuses the refresh, naming the first such tensor and index.
 *   - bf16 precision on a backend with bf16 operands (CUDA): the working copy holds the
 *     matrices as bf16 arrays, each value the stochastic rounding of its master (the stream's
 *     bits of its index) or, where selected, the fake-quant rounded to nearest, the rest the
 *     masters, on a model whose layers have an odd number of values (a bf16 layer padded to a
 *     float); with fake-quant off the selected weights are rounded as the rest; and forward and
 *     backward read that layout: the loss and gradients of a float model on the CPU whose
 *     weights are the working values, within bf16 tolerances.
 * On the CPU reference, or the CUDA backend with GQ_TEST_BACKEND=cuda (same claims, bit for bit). */
#define _GNU_SOURCE
#include "gpt2.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_backend.h"
#include "qexport.h"
#include "sround.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int shape_cb(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

/* The working copy's values of model q as floats in the masters' layout (bf16 arrays widened),
 * with its expected values in want: fake-quant (rounded to bf16) where selected and `fq`, the
 * stochastic rounding of step `step` for the other matrices, the masters elsewhere. Returns the
 * number of values that differ. */
static size_t work_vs_expected(gq_gpt2 *q, int64_t step, int fq, float *got, float *want) {
    const gq_backend *be = q->be, *cpu = gq_backend_cpu();
    const size_t np = q->n_params;
    float *master = malloc(np * 4), *raw = malloc(q->work_floats * 4);
    CHECK_OK(be->download(master, q->params_mem, np * 4));
    CHECK_OK(be->download(raw, q->qat_mem, q->work_floats * 4));
    const uint64_t stream = gq_gpt2_sr_stream(q, step);
    size_t off = 0, differ = 0;
    int k = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        const int layers = gq_gpt2_tensor(i)->per_layer ? q->cfg.n_layer : 1, decay = gq_gpt2_tensor(i)->decay;
        const size_t n = q->tensor_numel[i] / (size_t)layers;
        CHECK(q->wl[i] == (decay ? (n + 1) / 2 : n));
        const float *base = raw + (((float **)&q->work)[i] - q->qat_mem);
        for (int l = 0; l < layers; l++, off += n) {
            const float *src = base + (size_t)l * q->wl[i];
            for (size_t j = 0; j < n; j++)
                got[off + j] = decay ? gq_bf16_to_f32(((const uint16_t *)src)[j]) : src[j];
            const int sel = k < q->n_qat && q->qat[k].offset == off;
            if (sel) {
                const struct gq_qat_tensor *t = &q->qat[k++];
                void *work = malloc(cpu->fakequant_workspace(t->rows, t->cols, &t->spec));
                uint8_t *mask = malloc(n);
                CHECK_OK(cpu->fakequant_forward(want + off, mask, master + off, t->rows, t->cols, &t->spec, work, 0, NULL));
                free(work), free(mask);
            }
            for (size_t j = 0; j < n; j++)
                want[off + j] = sel && fq  ? gq_bf16_to_f32(gq_f32_to_bf16(want[off + j]))
                                : decay    ? gq_bf16_sr(master[off + j], gq_sr_bits(stream, off + j))
                                           : master[off + j];
            for (size_t j = 0; j < n; j++) differ += memcmp(&got[off + j], &want[off + j], 4) != 0;
        }
    }
    free(master), free(raw);
    return differ;
}

/* bf16 precision's working copy (see the top); skipped where the backend has no bf16 products */
static void bf16_working_copy(void) {
    const gq_backend *be = gq_test_backend(), *cpu = gq_backend_cpu();
    gq_gpt2_config cfg = {2, 3, 9, 7, 300, 0}; /* 3 heads of 3: layers of 243 and 324 values, wpe 63 */
    gq_gpt2 *q = NULL, *ref = NULL;
    CHECK_OK(gq_gpt2_create(&q, &cfg, be, 2, 7));
    if (!q) return;
    CHECK_OK(gq_gpt2_init(q, 5));
    if (gq_gpt2_set_precision(q, GQ_MATMUL_BF16, 11) == GQ_EUNSUPPORTED) {
        printf("bf16 working copy: the %s backend has no bf16 products (skipped)\n", be->name);
        gq_gpt2_free(q);
        return;
    }
    gq_qplan plan;
    CHECK_OK(gq_qplan_build(&plan, "int8", "h.1.attn.c_attn,lm_head", 0, cfg.n_layer));
    CHECK_OK(gq_gpt2_qat_enable(q, &plan));
    CHECK(q->w16 == 1 && q->n_qat == 2);
    const size_t np = q->n_params;
    float *got = malloc(np * 4), *want = malloc(np * 4);
    CHECK_OK(gq_gpt2_refresh_weights(q, 3));
    size_t d = work_vs_expected(q, 3, 1, got, want);
    printf("bf16 working copy (%zu floats for %zu parameters): %zu values differ from the expected\n", q->work_floats,
           np, d);
    CHECK(d == 0 && q->work_floats < np * 3 / 4);
    CHECK_OK(gq_gpt2_set_fakequant(q, 0));
    d = work_vs_expected(q, 3, 0, got, want);
    printf("bf16 working copy, fake-quant off: %zu values differ\n", d);
    CHECK(d == 0);
    CHECK_OK(gq_gpt2_set_fakequant(q, 1));
    CHECK(work_vs_expected(q, 3, 1, got, want) == 0);
    /* forward and backward on that layout against a float model of the working values */
    CHECK_OK(gq_gpt2_create(&ref, &cfg, cpu, 2, 7));
    if (!ref) return;
    CHECK_OK(cpu->upload(ref->params_mem, got, np * 4));
    int32_t in[14], tg[14];
    for (int i = 0; i < 14; i++) in[i] = (i * 37) % 300, tg[i] = (i * 53 + 7) % 300;
    float lq, lr;
    CHECK_OK(gq_gpt2_zero_grad(q));
    CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 7, &lq));
    CHECK_OK(gq_gpt2_backward(q, 1.0f));
    CHECK_OK(gq_gpt2_zero_grad(ref));
    CHECK_OK(gq_gpt2_forward(ref, in, tg, 2, 7, &lr));
    CHECK_OK(gq_gpt2_backward(ref, 1.0f));
    float *gq = malloc(np * 4), *gr = malloc(np * 4);
    CHECK_OK(be->download(gq, q->grads_mem, np * 4));
    CHECK_OK(cpu->download(gr, ref->grads_mem, np * 4));
    double worst = 0;
    for (size_t i = 0, off = 0; i < GQ_GPT2_N_TENSORS; off += q->tensor_numel[i++]) {
        double e = 0, mx = 0;
        for (size_t j = off; j < off + q->tensor_numel[i]; j++) {
            e = fmax(e, isfinite(gq[j]) ? fabs((double)gq[j] - gr[j]) : INFINITY);
            mx = fmax(mx, fabs((double)gr[j]));
        }
        worst = fmax(worst, mx > 0 ? e / mx : e);
    }
    printf("bf16 forward/backward on the working copy vs float on the CPU: loss %.5f vs %.5f, gradients worst "
           "normalized error %.3g\n", lq, lr, worst);
    CHECK(fabs(lq - lr) < 2e-2 && worst < 0.1);
    gq_gpt2_free(q), gq_gpt2_free(ref);
    free(got), free(want), free(gq), free(gr);
}

/* Learned scales after 3 QAT steps: they moved from their start; a checkpoint holds them and
 * their AdamW moments (a model that loads them computes the same loss); with learned scales
 * off, the working copy is the format's rule (a plan without -lsq). */
static void lsq_checks(gq_gpt2 *q, const float *start, const char *ckpt, const gq_qplan *plan, const int32_t *in,
                       const int32_t *tg, float lq) {
    const size_t nl = q->n_lsq;
    float *now = malloc(3 * nl * 4), *back = malloc(3 * nl * 4);
    CHECK_OK(gq_gpt2_lsq_get(q, now, now + nl, now + 2 * nl));
    size_t moved = 0;
    for (size_t i = 0; i < nl; i++) moved += now[i] != start[i];
    printf("learned scales: %zu of %zu moved in 3 steps\n", moved, nl);
    CHECK(moved > nl / 2);
    gq_gpt2 *p = NULL;
    CHECK_OK(gq_gpt2_create(&p, &q->cfg, q->be, 2, 32));
    gq_train_state st;
    float lp = 0;
    int found = 0;
    CHECK_OK(gq_ckpt_load(ckpt, p, &st, NULL));
    CHECK_OK(gq_gpt2_qat_enable(p, plan));
    CHECK_OK(gq_ckpt_load_lsq(ckpt, p, &found));
    CHECK(found == 1);
    CHECK_OK(gq_gpt2_lsq_get(p, back, back + nl, back + 2 * nl));
    CHECK(!memcmp(now, back, 3 * nl * 4));
    CHECK_OK(gq_gpt2_refresh_weights(p, 4));
    CHECK_OK(gq_gpt2_forward(p, in, tg, 2, 32, &lp));
    CHECK(lp == lq);
    /* off: the rule's working copy, as a plan without -lsq makes it */
    gq_qplan rule = *plan;
    for (int k = 0; k < rule.n; k++) rule.spec[k].lsq = 0;
    gq_gpt2 *r = NULL;
    CHECK_OK(gq_gpt2_create(&r, &q->cfg, q->be, 2, 32));
    CHECK_OK(gq_ckpt_load(ckpt, r, &st, NULL));
    CHECK_OK(gq_gpt2_qat_enable(r, &rule));
    CHECK_OK(gq_gpt2_set_lsq(p, 0));
    const size_t np = q->n_params;
    float *a = malloc(np * 4), *b = malloc(np * 4);
    CHECK_OK(q->be->download(a, p->qat_mem, np * 4));
    CHECK_OK(q->be->download(b, r->qat_mem, np * 4));
    CHECK(!memcmp(a, b, np * 4));
    CHECK(memcmp(now, start, nl * 4)); /* (while the learned scales are not the rule's) */
    gq_gpt2_free(p), gq_gpt2_free(r);
    free(now), free(back), free(a), free(b);
}

int main(void) {
    char dir[] = "/tmp/gq_test_qat_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    gq_gpt2_config cfg = {2, 2, 64, 32, 300, 0};
    gq_rng r;
    gq_rng_seed(&r, 21);
    int32_t in[64], tg[64];
    for (int i = 0; i < 64; i++) in[i] = (int32_t)gq_rng_below(&r, 300), tg[i] = (int32_t)gq_rng_below(&r, 300);
    const char *formats[] = {"int4", "int2", "nf4-dq", "mlp.*=int4,attn.*=int8,lm_head=q8_0", "int3-lsq",
                             "mlp.*=nf4-lsq,attn.*=int2-g32-lsq,lm_head=int4"};
    const char *layers[] = {"all", "all", NULL, NULL, "all", NULL};
    const gq_backend *be = gq_test_backend();
    printf("backend: %s\n", be->name);
    for (int f = 0; f < 6; f++) {
        gq_gpt2 *q = NULL, *ref = NULL;
        CHECK_OK(gq_gpt2_create(&q, &cfg, be, 2, 32));
        CHECK_OK(gq_gpt2_create(&ref, &cfg, be, 2, 32));
        if (!q || !ref) break;
        const size_t np = q->n_params;
        float *hq = malloc(np * 4), *hr = malloc(np * 4);
        uint8_t *hmask = malloc(np);
        CHECK_OK(gq_gpt2_init(q, 3));
        gq_qplan plan;
        CHECK_OK(gq_qplan_build(&plan, formats[f], layers[f], 0, cfg.n_layer));
        CHECK_OK(gq_gpt2_qat_enable(q, &plan));
        /* the reference: float weights equal to the fake-quant ones */
        CHECK_OK(be->copy(ref->params_mem, q->qat_mem, np * 4));
        float lq, lr;
        CHECK_OK(gq_gpt2_zero_grad(q));
        CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
        CHECK_OK(gq_gpt2_backward(q, 1.0f));
        CHECK_OK(gq_gpt2_qat_mask_grads(q));
        CHECK_OK(gq_gpt2_zero_grad(ref));
        CHECK_OK(gq_gpt2_forward(ref, in, tg, 2, 32, &lr));
        CHECK_OK(gq_gpt2_backward(ref, 1.0f));
        CHECK(lq == lr);
        size_t differ = 0, masked = 0;
        CHECK_OK(be->download(hq, q->grads_mem, np * 4));
        CHECK_OK(be->download(hr, ref->grads_mem, np * 4));
        memset(hmask, 1, np); /* unselected weights: the mask is never read for them */
        float *lsq0 = NULL, *master = NULL; /* learned scales: as they started */
        if (q->n_lsq) {
            lsq0 = malloc(q->n_lsq * 4), master = malloc(np * 4);
            CHECK_OK(gq_gpt2_lsq_get(q, lsq0, NULL, NULL));
            CHECK_OK(be->download(master, q->params_mem, np * 4));
        }
        for (int k = 0; k < q->n_qat; k++) {
            const struct gq_qat_tensor *t = &q->qat[k];
            if (t->spec.lsq) { /* clipped where x / s lies outside the unit range (quant.h) */
                const int g = t->spec.group;
                for (size_t i = 0; i < (size_t)t->rows * t->cols; i++) {
                    const float u = master[t->offset + i] / gq_lsq_stored(t->spec.format, lsq0[t->lsq_off + i / g]);
                    hmask[t->offset + i] = u >= gq_lsq_qn(t->spec.format) && u <= gq_lsq_qp(t->spec.format);
                }
                continue;
            }
            CHECK_OK(be->download(hmask + t->offset, q->qat_mask + t->offset, (size_t)t->rows * t->cols));
        }
        free(master);
        for (size_t i = 0; i < np; i++) {
            float want = hmask[i] ? hr[i] : 0.0f;
            masked += !hmask[i];
            differ += memcmp(&hq[i], &want, 4) != 0;
        }
        printf("%-40s STE: %zu gradients differ, %zu clipped values masked\n", formats[f], differ, masked);
        CHECK(differ == 0);
        if (f == 1 || f == 4) CHECK(masked > 0); /* int2 and int3 clip (LSQ: the grids' positive ends) */
        /* a few QAT steps, then export and compare losses */
        for (int t = 1; t <= 3; t++) {
            float norm;
            CHECK_OK(gq_gpt2_refresh_weights(q, t));
            CHECK_OK(gq_gpt2_zero_grad(q));
            CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
            CHECK_OK(gq_gpt2_backward(q, 1.0f));
            CHECK_OK(gq_gpt2_qat_mask_grads(q));
            CHECK_OK(gq_gpt2_grad_norm(q, &norm));
            CHECK_OK(gq_gpt2_update(q, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 1.0f));
        }
        CHECK_OK(gq_gpt2_refresh_weights(q, 4));
        CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lq));
        char ckpt[256], out[256];
        snprintf(ckpt, sizeof ckpt, "%s/c.h5", dir);
        snprintf(out, sizeof out, "%s/q.h5", dir);
        gq_train_opts o;
        gq_train_defaults(&o);
        gq_train_state st = {0};
        CHECK_OK(gq_ckpt_save(ckpt, q, &st, &o));
        gq_export_entry *e = NULL;
        int n = 0;
        CHECK_OK(gq_export(ckpt, out, &plan, shape_cb, &q->cfg, &e, &n));
        free(e);
        if (q->n_lsq) lsq_checks(q, lsq0, ckpt, &plan, in, tg, lq);
        free(lsq0);
        gq_h5r *rd;
        CHECK_OK(gq_h5r_open(&rd, out));
        size_t off = 0;
        for (int i = 0; i < GQ_GPT2_N_TENSORS && rd; i++) {
            size_t rows, cols;
            gq_gpt2_tensor_shape(&q->cfg, i, &rows, &cols);
            int nl = gq_gpt2_tensor(i)->per_layer ? cfg.n_layer : 1;
            for (int l = 0; l < nl; l++) {
                char name[160];
                gq_gpt2_tensor_name(i, l, name, sizeof name);
                CHECK_OK(gq_export_read_dequant(rd, name, hr + off, (int)rows, (int)cols, NULL));
                off += rows * (cols ? cols : 1);
            }
        }
        gq_h5r_close(rd);
        CHECK_OK(be->upload(ref->params_mem, hr, np * 4));
        CHECK_OK(be->download(hq, q->qat_mem, np * 4));
        CHECK(!memcmp(hr, hq, np * 4));
        CHECK_OK(gq_gpt2_forward(ref, in, tg, 2, 32, &lr));
        printf("%-40s after 3 QAT steps: fake-quant loss %.7f, exported model %.7f\n", formats[f], lq, lr);
        CHECK(lq == lr);
        /* a non-finite master refuses the refresh, naming the first selected tensor that holds
         * one and the value's index in it (the checks of all the tensors read back at once) */
        if (q->n_qat >= 3) {
            const struct gq_qat_tensor *a = &q->qat[1], *b = &q->qat[q->n_qat - 1];
            float keep_a, keep_b, nan = NAN, inf = INFINITY;
            CHECK_OK(be->download(&keep_a, q->params_mem + a->offset + 5, 4));
            CHECK_OK(be->download(&keep_b, q->params_mem + b->offset + 2, 4));
            CHECK_OK(be->upload(q->params_mem + a->offset + 5, &nan, 4));
            CHECK_OK(be->upload(q->params_mem + b->offset + 2, &inf, 4));
            int rc = gq_gpt2_refresh_weights(q, 5);
            char want[160];
            snprintf(want, sizeof want, "QAT: weight %s value 5 is not finite", a->name);
            CHECKF(rc == GQ_ENAN && !strcmp(gq_errmsg(rc), want), "NaN master: rc %d \"%s\" (want \"%s\")", rc,
                   gq_errmsg(rc), want);
            CHECK_OK(be->upload(q->params_mem + a->offset + 5, &keep_a, 4));
            rc = gq_gpt2_refresh_weights(q, 5);
            snprintf(want, sizeof want, "QAT: weight %s value 2 is not finite", b->name);
            CHECKF(rc == GQ_ENAN && !strcmp(gq_errmsg(rc), want), "inf master: rc %d \"%s\"", rc, gq_errmsg(rc));
            CHECK_OK(be->upload(q->params_mem + b->offset + 2, &keep_b, 4));
            CHECK_OK(gq_gpt2_refresh_weights(q, 4));
            CHECK_OK(gq_gpt2_forward(q, in, tg, 2, 32, &lr));
            CHECK(lq == lr); /* the refused refreshes left nothing behind */
        }
        gq_gpt2_free(q);
        gq_gpt2_free(ref);
        free(hq), free(hr), free(hmask);
    }
    bf16_working_copy();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return gq_test_finish("test_qat");
}
