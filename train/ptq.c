/* ptq: post-training quantization into a packed HDF5 export (ptq.h). */
#define _POSIX_C_SOURCE 200809L
#include "ptq.h"

#include "calib.h"
#include "gpt2_layout.h"
#include "gpt2_weights.h"
#include "gptq_run.h"
#include "gq_error.h"
#include "h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int shape_of(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

int gq_ptq_plan(gq_qplan *plan, const char *format, const char *layers, int group, int n_layer, int have_calib,
                int *searched, int *gptq) {
    int rc = gq_qplan_build(plan, format, layers, group, n_layer), s = 0, g = 0;
    for (int k = 0; !rc && k < plan->n; k++) s |= plan->spec[k].search, g |= plan->spec[k].gptq;
    if (!rc && g && !have_calib)
        rc = gq_errf(GQ_EINVAL, "-gptq quantizes with calibration data: add --calib TOKENS.h5 (gpt2q-data prepare)");
    if (!rc && have_calib && !s && !g)
        rc = gq_errf(GQ_EINVAL, "--calib calibrates -mse and -gptq: give a format with one (e.g. %s-gptq)", format);
    if (searched) *searched = s;
    if (gptq) *gptq = g;
    return rc;
}

int gq_ptq_export(const gq_ptq_req *q, gq_ptq_res *res) {
    gq_ptq_res r = {0};
    const long calib_tokens = q->calib_tokens;
    const double damp = q->gptq_damp;
    /* the input: a gpt2q checkpoint (its /params read tensor by tensor), or any other model gpt2q
     * reads (an HF model or folder, an llm.c file, an export: read whole, dequantized) */
    gq_gpt2_config cfg = {0};
    int kind = 0, rc = gq_weights_kind(q->model, &kind), checkpoint = 0;
    if (!rc) rc = gq_weights_config(q->model, &cfg);
    if (!rc && kind == GQ_WEIGHTS_GPT2Q) {
        gq_h5r *h;
        if (!(rc = gq_h5r_open(&h, q->model))) checkpoint = gq_h5r_exists(h, "/params"), gq_h5r_close(h);
    }
    float *params = NULL;
    if (!rc && !checkpoint && !(params = malloc(gq_gpt2_n_params(&cfg) * sizeof *params)))
        rc = gq_errf(GQ_ENOMEM, "out of memory");
    if (params && !rc) rc = gq_weights_read(q->model, &cfg, params);
    gq_qplan plan;
    int searched = 0, gptq = 0;
    if (!rc) rc = gq_ptq_plan(&plan, q->format, q->layers, q->group, cfg.n_layer, q->calib != NULL, &searched, &gptq);
    gq_calib cal = {0};
    gq_gptq_set gs = {0};
    if (!rc && q->calib && searched) rc = gq_calib_collect(&cal, q->model, q->calib, calib_tokens, q->progress);
    if (!rc && gptq) rc = gq_gptq_run(&gs, q->model, &plan, q->calib, calib_tokens, damp, q->gptq_act_order, q->progress);
    if (!rc) {
        const gq_export_hooks hk = {searched && q->calib ? gq_calib_lookup : NULL,
                                    &cal,
                                    gptq ? gq_gptq_lookup : NULL,
                                    &gs,
                                    gptq ? gs.desc : q->calib ? cal.desc : NULL,
                                    params,
                                    &cfg};
        rc = gq_export_with(q->model, q->out, &plan, shape_of, &cfg, &hk, &r.e, &r.n);
    }
    if (gptq) r.gptq_tokens = gs.tokens, r.gptq_tensors = gs.n, r.gptq_seconds = gs.seconds,
                r.gptq_seconds_calib = gs.seconds_calib;
    gq_calib_free(&cal);
    gq_gptq_free(&gs);
    free(params);
    if (rc) {
        free(r.e);
        return rc;
    }
    for (int i = 0; i < r.n; i++) {
        size_t numel = (size_t)r.e[i].rows * (r.e[i].cols ? r.e[i].cols : 1);
        r.payload += r.e[i].bytes;
        r.fp32 += numel * 4;
        if (r.e[i].spec.format != GQ_QF_F32) r.qweights += numel, r.qbytes += r.e[i].bytes;
    }
    r.bits_per_weight = r.qweights ? 8.0 * (double)r.qbytes / (double)r.qweights : 0.0;
    struct stat st;
    r.file_bytes = stat(q->out, &st) ? -1 : (long long)st.st_size;
    if (res) *res = r;
    else free(r.e);
    return GQ_OK;
}

void gq_ptq_res_free(gq_ptq_res *res) {
    if (!res) return;
    free(res->e);
    res->e = NULL;
    res->n = 0;
}
