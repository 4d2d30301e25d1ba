/* gptq_run: see gptq_run.h. */
#include "gptq_run.h"

#include "gq_error.h"
#include "gq_progress.h"
#include "loader.h"
#include "weights.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One calibration pass: the forward through `n_layers` blocks (all: the head too) over the
 * tokens, each selected tensor's H += X^T X (upper triangle; fp32 per batch, summed in double) */
static int accumulate(gq_gpt2 *m, const char *data, long tokens, int n_layers, const gq_gptq_set *set,
                      const int *stage_t, const int *stage_i, int ns, int l, double **H, long *done_out,
                      gq_progress *p, const char *label) {
    const int T = m->T_max, B = m->B_max;
    gq_loader *L = NULL;
    gq_loader_config lc = {B, T, 0, 0, "train", m->cfg.vocab_size};
    const char *paths[1] = {data};
    int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    int maxc = 0;
    for (int k = 0; k < ns; k++) maxc = set->t[stage_t[k]].cols > maxc ? set->t[stage_t[k]].cols : maxc;
    float *hb = malloc((size_t)maxc * maxc * sizeof *hb);
    int rc = in && tg && hb ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) rc = gq_loader_open(&L, paths, 1, &lc);
    const long windows = rc ? 0 : (long)gq_loader_windows(L);
    long done = 0;
    while (!rc && done < tokens) {
        if (done / ((long)B * T) >= (windows + B - 1) / B) break; /* at most one pass over the split */
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_gpt2_forward_layers(m, in, B, T, n_layers);
        for (int k = 0; !rc && k < ns; k++) {
            const int c = set->t[stage_t[k]].cols;
            const float *x = gq_gpt2_weight_input(m, stage_i[k], stage_i[k] == GQ_GPT2_WTE ? 0 : l);
            if (!x) {
                rc = gq_errf(GQ_EUNSUPPORTED, "GPTQ: no input for %s", set->t[stage_t[k]].name);
                break;
            }
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, c, B * T, 1.0f, x, c, 0.0f, hb, c);
            double *h = H[k];
            for (int a = 0; a < c; a++)
                for (int b = a; b < c; b++) h[(size_t)a * c + b] += hb[(size_t)a * c + b];
        }
        done += (long)B * T;
        if (p) gq_progress_update(p, label, (double)done, (double)tokens, "tok");
    }
    if (L) gq_loader_close(L);
    free(in), free(tg), free(hb);
    *done_out = done;
    return rc;
}

int gq_gptq_run(gq_gptq_set *out, const char *ckpt, const gq_qplan *plan, const char *data, long tokens, double damp,
                int act_order, int progress) {
    memset(out, 0, sizeof *out);
    if (tokens < 1) return gq_errf(GQ_EINVAL, "GPTQ needs at least one calibration token (--calib-tokens)");
    if (!(damp >= 0.0)) return gq_errf(GQ_EINVAL, "GPTQ damping must be >= 0 (--gptq-damp)");
    const double t0 = gq_now();
    gq_gpt2_config cfg;
    int rc = gq_weights_config(ckpt, &cfg);
    if (rc) return rc;
    const int nref = gq_gpt2_n_tensor_refs(&cfg);
    gq_gpt2_tensor_ref *refs = malloc((size_t)nref * sizeof *refs);
    int *ref_of = malloc((size_t)nref * sizeof *ref_of);
    out->t = calloc((size_t)nref, sizeof *out->t);
    if (!refs || !ref_of || !out->t) {
        free(refs), free(ref_of);
        return gq_errf(GQ_ENOMEM, "out of memory");
    }
    gq_gpt2_tensor_refs(&cfg, refs);
    for (int k = 0; k < nref && !rc; k++) {
        gq_qspec s;
        if (!refs[k].cols || !gq_qplan_lookup(plan, refs[k].name, (int)refs[k].rows, (int)refs[k].cols, &s) || !s.gptq)
            continue;
        const char *why = gq_gptq_problem(&s, (int)refs[k].rows, (int)refs[k].cols);
        if (why) {
            rc = gq_errf(GQ_ESHAPE, "GPTQ: tensor %s [%zu, %zu]: %s for %s group %d", refs[k].name, refs[k].rows,
                         refs[k].cols, why, gq_qformat_name(s.format), s.group);
            break;
        }
        gq_gptq_tensor *t = &out->t[out->n];
        snprintf(t->name, sizeof t->name, "%s", refs[k].name);
        t->spec = s, t->rows = (int)refs[k].rows, t->cols = (int)refs[k].cols;
        t->opt.damp = damp, t->opt.act_order = act_order;
        if (gq_qtensor_alloc(&t->q, &s, t->rows, t->cols)) rc = gq_errf(GQ_ENOMEM, "out of memory");
        ref_of[out->n++] = k;
    }
    const int T = cfg.block_size < 256 ? cfg.block_size : 256, B = 4;
    gq_gpt2 *m = NULL;
    if (!rc && out->n) rc = gq_gpt2_create(&m, &cfg, gq_backend_cpu(), B, T);
    if (!rc && m) rc = gq_weights_load(ckpt, m);
    gq_progress p;
    /* stages: block l's products, then the head */
    for (int l = 0; !rc && m && l <= cfg.n_layer; l++) {
        int stage_t[4], stage_i[4], ns = 0;
        for (int k = 0; k < out->n && ns < 4; k++) {
            const gq_gpt2_tensor_ref *r = &refs[ref_of[k]];
            if (l < cfg.n_layer ? r->l == l && r->i != GQ_GPT2_WTE : r->i == GQ_GPT2_WTE) stage_t[ns] = k, stage_i[ns++] = r->i;
        }
        if (!ns) continue;
        double *H[4] = {0};
        for (int k = 0; k < ns && !rc; k++)
            if (!(H[k] = calloc((size_t)out->t[stage_t[k]].cols * out->t[stage_t[k]].cols, sizeof *H[k])))
                rc = gq_errf(GQ_ENOMEM, "out of memory");
        char label[64];
        snprintf(label, sizeof label, l < cfg.n_layer ? "GPTQ h.%d" : "GPTQ lm_head", l);
        long done = 0;
        if (progress) gq_progress_init(&p, stderr);
        const double tc = gq_now();
        if (!rc)
            rc = accumulate(m, data, tokens, l < cfg.n_layer ? l + 1 : cfg.n_layer, out, stage_t, stage_i, ns, l, H,
                            &done, progress ? &p : NULL, label);
        if (progress) gq_progress_finish(&p);
        out->seconds_calib += gq_now() - tc;
        out->tokens = done;
        if (!rc && !done) rc = gq_errf(GQ_EFORMAT, "%s: no calibration tokens in the training split", data);
        for (int k = 0; k < ns && !rc; k++) {
            gq_gptq_tensor *t = &out->t[stage_t[k]];
            const int c = t->cols;
            for (int a = 0; a < c; a++) /* the lower triangle from the upper */
                for (int b = 0; b < a; b++) H[k][(size_t)a * c + b] = H[k][(size_t)b * c + a];
            float *w = m->params_mem + refs[ref_of[stage_t[k]]].offset;
            float *wq = malloc((size_t)t->rows * c * sizeof *wq);
            size_t bad = 0;
            const int r = wq ? gq_gptq_quantize(&t->spec, w, t->rows, c, H[k], &t->opt, &t->q, wq, &bad) : -3;
            if (r == -1)
                rc = gq_errf(GQ_ENAN, "%s: tensor %s: value %zu is not finite", ckpt, t->name, bad);
            else if (r == -2)
                rc = gq_errf(GQ_ENAN, "%s: GPTQ: the inputs of %s (%s, %ld tokens) give second moments that are not "
                             "finite or not positive definite even with damping",
                             ckpt, t->name, data, done);
            else if (r)
                rc = gq_errf(GQ_ENOMEM, "out of memory");
            else /* the next blocks see this one quantized */
                memcpy(w, wq, (size_t)t->rows * c * sizeof *w);
            free(wq);
            if (!rc && progress)
                fprintf(stderr, "GPTQ %-26s %-6s output error %.3e (round to nearest %.3e, %.2fx)\n", t->name,
                        gq_qformat_name(t->spec.format), t->opt.err_gptq, t->opt.err_rtn,
                        t->opt.err_rtn > 0 ? t->opt.err_gptq / t->opt.err_rtn : 1.0);
        }
        for (int k = 0; k < ns; k++) free(H[k]);
    }
    if (m) gq_gpt2_free(m);
    free(refs), free(ref_of);
    out->seconds = gq_now() - t0;
    snprintf(out->desc, sizeof out->desc, "%s train split, %ld tokens, GPTQ damp %g%s", data, out->tokens, damp,
             act_order ? ", act-order" : "");
    if (rc) gq_gptq_free(out);
    return rc;
}

const gq_qtensor *gq_gptq_lookup(const char *name, void *set) {
    const gq_gptq_set *s = set;
    for (int k = 0; s && k < s->n; k++)
        if (!strcmp(s->t[k].name, name)) return &s->t[k].q;
    return NULL;
}

void gq_gptq_free(gq_gptq_set *s) {
    for (int k = 0; s->t && k < s->n; k++) gq_qtensor_free(&s->t[k].q);
    free(s->t);
    s->t = NULL;
    s->n = 0;
}
