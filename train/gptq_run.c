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

/* The calibration tokens: the training split in file order, batches of B windows of T, up to
 * `tokens` (at most one pass over the split); each batch's embedding output into the cache
 * (*cache: *nb batches of B T C floats), the residual stream that block 0 starts from */
static int read_batches(gq_gpt2 *m, const char *data, long tokens, float **cache, long *nb, long *done) {
    const int T = m->T_max, B = m->B_max;
    const size_t btc = (size_t)B * T * m->cfg.n_embd;
    gq_loader *L = NULL;
    gq_loader_config lc = {B, T, 0, 0, "train", m->cfg.vocab_size};
    const char *paths[1] = {data};
    int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    int rc = in && tg ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) rc = gq_loader_open(&L, paths, 1, &lc);
    const long windows = rc ? 0 : (long)gq_loader_windows(L), per = (long)B * T;
    long want = (tokens + per - 1) / per;
    if (want > (windows + B - 1) / B) want = (windows + B - 1) / B;
    *cache = rc || want < 1 ? NULL : malloc((size_t)want * btc * sizeof **cache);
    if (!rc && want >= 1 && !*cache)
        rc = gq_errf(GQ_ENOMEM, "GPTQ: out of memory caching %ld calibration tokens' activations", want * per);
    *nb = 0;
    while (!rc && *nb < want) {
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_gpt2_forward_layers(m, in, B, T, 0);
        if (!rc) memcpy(*cache + (size_t)*nb * btc, gq_gpt2_residual(m, -1), btc * sizeof **cache);
        if (!rc) (*nb)++;
    }
    if (L) gq_loader_close(L);
    free(in), free(tg);
    *done = *nb * per;
    return rc;
}

/* One stage's calibration pass over the cached batches: blocks first..n_layers-1 (the head's
 * stage: the final layernorm) from each batch's cached stream, each selected tensor's
 * H += X^T X (upper triangle; fp32 per batch, summed in double) */
static int accumulate(gq_gpt2 *m, const float *cache, long nb, int first, int n_layers, const gq_gptq_set *set,
                      const int *stage_t, const int *stage_i, int ns, int l, double **H, gq_progress *p,
                      const char *label) {
    const int T = m->T_max, B = m->B_max;
    const size_t btc = (size_t)B * T * m->cfg.n_embd;
    int maxc = 0;
    for (int k = 0; k < ns; k++) maxc = set->t[stage_t[k]].cols > maxc ? set->t[stage_t[k]].cols : maxc;
    float *hb = malloc((size_t)maxc * maxc * sizeof *hb);
    int rc = hb ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
    for (long bi = 0; !rc && bi < nb; bi++) {
        rc = gq_gpt2_forward_from(m, cache + (size_t)bi * btc, B, T, first, n_layers);
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
        if (p) gq_progress_update(p, label, (double)(bi + 1) * B * T, (double)nb * B * T, "tok");
    }
    free(hb);
    return rc;
}

/* After block l's stage: each cached batch through block l as it now stands (its GPTQ tensors
 * quantized), the cache then holding the stream that block l + 1 starts from */
static int advance(gq_gpt2 *m, float *cache, long nb, int l) {
    const size_t btc = (size_t)m->B_max * m->T_max * m->cfg.n_embd;
    for (long bi = 0; bi < nb; bi++) {
        GQ_TRY(gq_gpt2_forward_from(m, cache + (size_t)bi * btc, m->B_max, m->T_max, l, l + 1));
        memcpy(cache + (size_t)bi * btc, gq_gpt2_residual(m, l), btc * sizeof *cache);
    }
    return GQ_OK;
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
    /* the calibration batches' residual streams, cached: block l's stage starts from block l's
     * input as the quantized blocks before it made it, so each block runs twice in all (its
     * stage, then again with its GPTQ weights) instead of the whole prefix once per stage */
    float *cache = NULL;
    long nb = 0, done = 0;
    const double tr = gq_now();
    if (!rc && m) rc = read_batches(m, data, tokens, &cache, &nb, &done);
    out->seconds_calib += gq_now() - tr;
    out->tokens = done;
    if (!rc && m && !done) rc = gq_errf(GQ_EFORMAT, "%s: no calibration tokens in the training split", data);
    int last = -1; /* the last stage with GPTQ tensors: the cache need not go past it */
    for (int k = 0; k < out->n; k++) {
        const gq_gpt2_tensor_ref *r = &refs[ref_of[k]];
        const int st = r->i == GQ_GPT2_WTE ? cfg.n_layer : r->l;
        last = st > last ? st : last;
    }
    /* stages: block l's products, then the head */
    for (int l = 0; !rc && m && l <= last; l++) {
        int stage_t[4], stage_i[4], ns = 0;
        for (int k = 0; k < out->n && ns < 4; k++) {
            const gq_gpt2_tensor_ref *r = &refs[ref_of[k]];
            if (l < cfg.n_layer ? r->l == l && r->i != GQ_GPT2_WTE : r->i == GQ_GPT2_WTE) stage_t[ns] = k, stage_i[ns++] = r->i;
        }
        if (!ns) { /* nothing to calibrate here: the cache goes through the block as it is */
            const double ta = gq_now();
            if (l < cfg.n_layer) rc = advance(m, cache, nb, l);
            out->seconds_calib += gq_now() - ta;
            continue;
        }
        double *H[4] = {0};
        for (int k = 0; k < ns && !rc; k++)
            if (!(H[k] = calloc((size_t)out->t[stage_t[k]].cols * out->t[stage_t[k]].cols, sizeof *H[k])))
                rc = gq_errf(GQ_ENOMEM, "out of memory");
        char label[64];
        snprintf(label, sizeof label, l < cfg.n_layer ? "GPTQ h.%d" : "GPTQ lm_head", l);
        if (progress) gq_progress_init(&p, stderr);
        const double tc = gq_now();
        if (!rc)
            rc = accumulate(m, cache, nb, l, l < cfg.n_layer ? l + 1 : cfg.n_layer, out, stage_t, stage_i, ns, l, H,
                            progress ? &p : NULL, label);
        if (progress) gq_progress_finish(&p);
        out->seconds_calib += gq_now() - tc;
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
        const double ta = gq_now();
        if (!rc && l < last && l < cfg.n_layer) rc = advance(m, cache, nb, l);
        out->seconds_calib += gq_now() - ta;
    }
    free(cache);
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
