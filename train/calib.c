/* calib: see calib.h. */
#include "calib.h"

#include "gq_error.h"
#include "gq_progress.h"
#include "loader.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gq_calib_collect(gq_calib *c, const char *ckpt, const char *data, long tokens, int progress) {
    memset(c, 0, sizeof *c);
    if (tokens < 1) return gq_errf(GQ_EINVAL, "calibration needs at least one token (--calib-tokens)");
    gq_gpt2_config cfg;
    int rc = gq_weights_config(ckpt, &cfg);
    if (rc) return rc;
    const int T = cfg.block_size < 256 ? cfg.block_size : 256, B = 4;
    gq_loader *L = NULL;
    gq_loader_config lc = {B, T, 0, 0, "train", cfg.vocab_size};
    const char *paths[1] = {data};
    gq_gpt2 *m = NULL;
    size_t n = gq_gpt2_calib_size(&cfg);
    double *acc = calloc(n, sizeof *acc);
    int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    if (!acc || !in || !tg) rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (!rc) rc = gq_loader_open(&L, paths, 1, &lc);
    if (!rc) rc = gq_gpt2_create(&m, &cfg, gq_backend_cpu(), B, T);
    if (!rc) rc = gq_weights_load(ckpt, m);
    const long windows = rc ? 0 : (long)gq_loader_windows(L);
    long done = 0;
    gq_progress p;
    if (progress) gq_progress_init(&p, stderr);
    while (!rc && done < tokens) {
        /* at most one pass over the split: a short file calibrates on what it has */
        if (done / ((long)B * T) >= (windows + B - 1) / B) break;
        float loss;
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_gpt2_forward(m, in, tg, B, T, &loss);
        if (!rc) rc = gq_gpt2_calib_accumulate(m, acc);
        done += (long)B * T;
        if (progress) gq_progress_update(&p, "calibration", (double)done, (double)tokens, "tok");
    }
    if (progress) gq_progress_finish(&p);
    if (!rc) {
        c->cfg = cfg;
        c->tokens = done;
        c->imp = malloc(n * sizeof *c->imp);
        if (!c->imp) rc = gq_errf(GQ_ENOMEM, "out of memory");
        for (size_t k = 0; !rc && k < n; k++) c->imp[k] = (float)(acc[k] / (double)done);
        snprintf(c->desc, sizeof c->desc, "%s train split, %ld tokens", data, done);
    }
    free(acc), free(in), free(tg);
    if (L) gq_loader_close(L);
    if (m) gq_gpt2_free(m);
    return rc;
}

const float *gq_calib_lookup(const char *name, void *calib) {
    const gq_calib *c = calib;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++)
        for (int l = 0; l < (gq_gpt2_tensor(i)->per_layer ? c->cfg.n_layer : 1); l++) {
            char nm[160];
            gq_gpt2_tensor_name(i, l, nm, sizeof nm);
            if (strcmp(nm, name)) continue;
            const long off = gq_gpt2_calib_offset(&c->cfg, i, l);
            return off < 0 ? NULL : c->imp + off;
        }
    return NULL;
}

void gq_calib_free(gq_calib *c) {
    free(c->imp);
    c->imp = NULL;
}
