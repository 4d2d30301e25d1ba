/* GPTQ over a checkpoint (train/gptq_run.h) and its export: the driver's result is recomputed
 * here step by step through the model's public calls -- block 0's H from the float model,
 * block 1's from the model holding block 0's GPTQ weights, the head's from the model with every
 * selected block quantized -- and must match the driver's codes and scales byte for byte (and
 * must NOT match a parallel variant that calibrates block 1 on the float model); the export
 * writes the driver's tensors as they are (scale_search "gptq"); a -gptq plan without GPTQ's
 * tensors is an error that leaves no file. */
#define _POSIX_C_SOURCE 200809L
#include "gptq_run.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test_model.h"
#include "h5io.h"
#include "loader.h"
#include "tokfile.h"
#include "weights.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { B = 4, T = 32, TOKENS = 1024 };

/* H of weight tensor i (layer l) over the calibration batches, through n_layers blocks, as the
 * driver sums it (fp32 per batch, double across) */
static double *hessian(gq_gpt2 *m, const char *tok, int n_layers, int i, int l, int cols) {
    gq_loader *L = NULL;
    gq_loader_config lc = {B, T, 0, 0, "train", m->cfg.vocab_size};
    const char *paths[1] = {tok};
    CHECK_OK(gq_loader_open(&L, paths, 1, &lc));
    double *H = calloc((size_t)cols * cols, sizeof *H);
    float *hb = malloc((size_t)cols * cols * sizeof *hb);
    int32_t in[B * T], tg[B * T];
    for (int done = 0; L && done < TOKENS; done += B * T) {
        CHECK_OK(gq_loader_next(L, in, tg));
        CHECK_OK(gq_gpt2_forward_layers(m, in, B, T, n_layers));
        const float *x = gq_gpt2_weight_input(m, i, l);
        CHECK(x != NULL);
        if (!x) break;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, B * T, 1.0f, x, cols, 0.0f, hb, cols);
        for (int a = 0; a < cols; a++)
            for (int b = a; b < cols; b++) H[(size_t)a * cols + b] += hb[(size_t)a * cols + b];
    }
    for (int a = 0; a < cols; a++)
        for (int b = 0; b < a; b++) H[(size_t)a * cols + b] = H[(size_t)b * cols + a];
    if (L) gq_loader_close(L);
    free(hb);
    return H;
}

/* quantize tensor (i, l) of m by GPTQ with H, compare with the driver's, put it back */
static void step(gq_gpt2 *m, const gq_gptq_set *set, const char *name, int i, int l, const double *H, int expect_equal) {
    const gq_qtensor *d = gq_gptq_lookup(name, (void *)set);
    CHECKF(d != NULL, "the driver has no result for %s", name);
    if (!d) return;
    const gq_gptq_tensor *t = NULL;
    for (int k = 0; k < set->n; k++)
        if (!strcmp(set->t[k].name, name)) t = &set->t[k];
    const size_t groups = gq_qn_groups(&t->spec, t->rows, t->cols), bytes = gq_qpacked_bytes(&t->spec, t->rows, t->cols);
    gq_qtensor q;
    CHECK(gq_qtensor_alloc(&q, &t->spec, t->rows, t->cols) == 0);
    float *w = m->params_mem, *wq = malloc((size_t)t->rows * t->cols * sizeof *wq);
    gq_gpt2_tensor_ref *refs = malloc((size_t)gq_gpt2_n_tensor_refs(&m->cfg) * sizeof *refs);
    gq_gpt2_tensor_refs(&m->cfg, refs);
    for (int k = 0; k < gq_gpt2_n_tensor_refs(&m->cfg); k++)
        if (refs[k].i == i && refs[k].l == l) w = m->params_mem + refs[k].offset;
    gq_gptq_opts o = {0.01, 0, 0, 0, 0};
    CHECK(gq_gptq_quantize(&t->spec, w, t->rows, t->cols, H, &o, &q, wq, NULL) == 0);
    const int same = !memcmp(q.qweight, d->qweight, bytes) && !memcmp(q.scales, d->scales, groups * 4);
    CHECKF(same == expect_equal, "%s: recomputed GPTQ %s the driver's", name, same ? "equals" : "differs from");
    CHECKF(!expect_equal || o.err_gptq == t->opt.err_gptq, "%s: error %g vs the driver's %g", name, o.err_gptq,
           t->opt.err_gptq);
    if (expect_equal) memcpy(w, wq, (size_t)t->rows * t->cols * sizeof *w);
    gq_qtensor_free(&q);
    free(wq), free(refs);
}

int main(void) {
    char dir[] = "/tmp/gq_test_gptq_run_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char ckpt[256], tok[256], out[300];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(tok, sizeof tok, "%s/tok.h5", dir);
    snprintf(out, sizeof out, "%s/q.h5", dir);
    gq_gpt2_config cfg = {2, 2, 64, 32, 300, 0};
    gq_gpt2 *m0 = gq_test_random_ckpt(ckpt, &cfg, B, T, 3);
    if (!m0) return gq_test_finish("test_gptq_run");
    gq_gpt2_free(m0);
    /* calibration tokens: a repeating pattern with noise (the model is random; its activations
     * are what matter) */
    static uint16_t ids[4096];
    gq_rng r;
    gq_rng_seed(&r, 4);
    for (int k = 0; k < 4096; k++) ids[k] = (uint16_t)((k * 7 + gq_rng_below(&r, 5)) % 300);
    gq_tokfile_meta meta = {300, 299, 0.1, 0, "gpt2", 0, NULL};
    CHECK_OK(gq_tokfile_write(tok, ids, 3600, ids + 3600, 496, &meta));

    gq_qplan plan;
    CHECK_OK(gq_qplan_build(&plan, "h.0.mlp.c_fc=int4-g32-gptq,h.1.attn.c_attn=int3-g32-gptq,lm_head=int8-gptq,h.1.mlp.c_proj=int4",
                            NULL, 0, cfg.n_layer));
    gq_gptq_set set;
    CHECK_OK(gq_gptq_run(&set, ckpt, &plan, tok, TOKENS, 0.01, 0, 0));
    CHECKF(set.n == 3 && set.tokens == TOKENS, "driver: %d tensors, %ld tokens", set.n, set.tokens);
    for (int k = 0; k < set.n; k++)
        CHECKF(set.t[k].opt.err_gptq < set.t[k].opt.err_rtn, "%s: GPTQ error %g, round to nearest %g", set.t[k].name,
               set.t[k].opt.err_gptq, set.t[k].opt.err_rtn);

    /* the same, step by step */
    gq_gpt2 *m = NULL, *f = NULL;
    CHECK_OK(gq_gpt2_create(&m, &cfg, gq_backend_cpu(), B, T));
    CHECK_OK(gq_gpt2_create(&f, &cfg, gq_backend_cpu(), B, T));
    if (m && f) {
        CHECK_OK(gq_weights_load(ckpt, m));
        CHECK_OK(gq_weights_load(ckpt, f));
        const int C = cfg.n_embd;
        double *H = hessian(m, tok, 1, GQ_GPT2_FCW, 0, C); /* block 0's fc: the float model */
        step(m, &set, "h.0.mlp.c_fc.weight", GQ_GPT2_FCW, 0, H, 1);
        free(H);
        H = hessian(f, tok, 2, GQ_GPT2_QKVW, 1, C); /* block 1's qkv on the float model: not what GPTQ does */
        step(m, &set, "h.1.attn.c_attn.weight", GQ_GPT2_QKVW, 1, H, 0);
        free(H);
        H = hessian(m, tok, 2, GQ_GPT2_QKVW, 1, C); /* ... but on block 0 quantized */
        step(m, &set, "h.1.attn.c_attn.weight", GQ_GPT2_QKVW, 1, H, 1);
        free(H);
        H = hessian(m, tok, cfg.n_layer, GQ_GPT2_WTE, 0, C); /* the head, every selected block quantized */
        step(m, &set, "wte.weight", GQ_GPT2_WTE, 0, H, 1);
        free(H);
    }
    if (m) gq_gpt2_free(m);
    if (f) gq_gpt2_free(f);

    /* the export writes the driver's tensors */
    const gq_export_hooks hk = {NULL, NULL, gq_gptq_lookup, &set, set.desc, NULL, NULL};
    gq_export_entry *e = NULL;
    int n = 0;
    CHECK_OK(gq_export_with(ckpt, out, &plan, gq_test_shape_cb, &cfg, &hk, &e, &n));
    free(e);
    gq_h5r *h = NULL;
    CHECK_OK(gq_h5r_open(&h, out));
    for (int k = 0; h && k < set.n; k++) {
        const gq_gptq_tensor *t = &set.t[k];
        float *a = malloc((size_t)t->rows * t->cols * 4), *b = malloc((size_t)t->rows * t->cols * 4);
        gq_qspec s;
        CHECK_OK(gq_export_read_dequant(h, t->name, a, t->rows, t->cols, &s));
        gq_dequantize(&t->spec, &t->q, t->rows, t->cols, b);
        CHECKF(!memcmp(a, b, (size_t)t->rows * t->cols * 4), "%s: the export's values differ from GPTQ's", t->name);
        CHECKF(s.gptq == 1 && s.format == t->spec.format, "%s: read back as format %d gptq %d", t->name, s.format, s.gptq);
        free(a), free(b);
    }
    if (h) gq_h5r_close(h);
    /* a -gptq plan without GPTQ's tensors: an error, no file */
    unlink(out);
    e = NULL;
    const int rc = gq_export(ckpt, out, &plan, gq_test_shape_cb, &cfg, &e, &n);
    CHECKF(rc != 0 && strstr(gq_errmsg(rc), "--calib"), "export of -gptq without calibration: %s", gq_errmsg(rc));
    CHECK(access(out, F_OK) != 0);
    free(e);
    /* QAT refuses -gptq */
    gq_gpt2 *q = NULL;
    CHECK_OK(gq_gpt2_create(&q, &cfg, gq_backend_cpu(), B, T));
    if (q) {
        const int qrc = gq_gpt2_qat_enable(q, &plan);
        CHECKF(qrc != 0 && strstr(gq_errmsg(qrc), "post-training"), "QAT with -gptq: %s", gq_errmsg(qrc));
        gq_gpt2_free(q);
    }
    gq_gptq_free(&set);
    unlink(ckpt), unlink(tok), rmdir(dir);
    return gq_test_finish("test_gptq_run");
}
