/* qexport: see qexport.h. Layout of one quantized tensor, group /tensors/<name>:
 *   qweight  uint8 [bytes]     packed codes (quant.h's packing)
 *   scales   uint16 [groups]   fp16 bits (formats with fp16 scales) or
 *            float32 [groups]  (int8 per row, nf4, fp4)
 *   zeros    uint8 [groups]    int4a
 *   absmax_q int8 [groups], absmax2 float32 [ceil(groups/256)]   nf4 with double quant
 *   attributes: format, group, rows, cols, double_quant, absmax_offset, bits_per_weight,
 *               scale_search ("absmax", "mse", "learned" or "gptq": how the scales and codes
 *               were chosen -- learned: QAT's -lsq scales, from the checkpoint's /qat/scales;
 *               gptq: GPTQ on calibration data; the layout and the dequantization do not
 *               depend on it; absent in older files: absmax)
 * A tensor kept in fp32: /tensors/<name>/value float32 [rows(, cols)], format "f32". */
#define _POSIX_C_SOURCE 200809L
#include "qexport.h"

#include "gq_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int export_tensor(gq_h5w *w, const char *name, const float *x, int rows, int cols, const gq_qspec *s,
                         const float *imp, const float *learned, const gq_qtensor *pre, gq_export_entry *e,
                         const char *src) {
    char base[300], path[400];
    snprintf(base, sizeof base, "/tensors/%s", name);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->rows = rows;
    e->cols = cols;
    e->spec = *s;
    if (s->format == GQ_QF_F32) {
        size_t dims[2] = {(size_t)rows, (size_t)cols};
        snprintf(path, sizeof path, "%s/value", base);
        gq_h5w_f32(w, path, x, cols ? 2 : 1, dims);
        gq_h5w_attr_str(w, base, "format", "f32");
        e->bytes = (size_t)rows * (cols ? cols : 1) * 4;
        return GQ_OK;
    }
    const char *why = gq_qspec_problem(s, rows, cols);
    if (why) return gq_errf(GQ_ESHAPE, "%s: tensor %s [%d, %d]: %s for %s group %d", src, name, rows, cols, why,
                            gq_qformat_name(s->format), s->group);
    size_t groups = gq_qn_groups(s, rows, cols), bytes = gq_qpacked_bytes(s, rows, cols);
    gq_qtensor q = {0}; /* quantized here, unless GPTQ's result is given (written as it is) */
    const gq_qtensor *t = pre ? pre : &q;
    uint16_t *h = malloc(groups * 2);
    size_t bad = 0;
    int rc = GQ_OK;
    if (!h || (!pre && gq_qtensor_alloc(&q, s, rows, cols))) rc = gq_errf(GQ_ENOMEM, "out of memory");
    else if (!pre && (learned ? gq_quantize_lsq(s, x, rows, cols, learned, &q, &bad)
                              : gq_quantize_imp(s, x, rows, cols, &q, &bad, s->search ? imp : NULL)))
        rc = bad < (size_t)rows * cols
                 ? gq_errf(GQ_ENAN, "%s: tensor %s: value %zu is not finite", src, name, bad)
                 : gq_errf(GQ_ENAN, "%s: tensor %s: learned scale %zu is not finite", src, name,
                           bad - (size_t)rows * cols);
    if (!rc) {
        size_t d1 = bytes, dg = groups, d2 = groups / GQ_DQ_BLOCK + (groups % GQ_DQ_BLOCK != 0);
        snprintf(path, sizeof path, "%s/qweight", base);
        gq_h5w_u8(w, path, t->qweight, 1, &d1);
        snprintf(path, sizeof path, "%s/scales", base);
        e->bytes = bytes;
        if (s->format == GQ_QF_NF4 && s->double_quant) {
            snprintf(path, sizeof path, "%s/absmax_q", base);
            gq_h5w_i8(w, path, t->absmax_q, 1, &dg);
            snprintf(path, sizeof path, "%s/absmax2", base);
            gq_h5w_f32(w, path, t->absmax2, 1, &d2);
            gq_h5w_attr_f64(w, base, "absmax_offset", t->absmax_offset);
            e->bytes += groups + 4 * d2 + 4;
        } else if (gq_qscale_f16(s->format)) {
            for (size_t k = 0; k < groups; k++) h[k] = gq_f32_to_f16(t->scales[k]);
            gq_h5w_u16(w, path, h, 1, &dg);
            e->bytes += 2 * groups;
        } else {
            gq_h5w_f32(w, path, t->scales, 1, &dg);
            e->bytes += 4 * groups;
        }
        if (s->format == GQ_QF_INT4A) {
            snprintf(path, sizeof path, "%s/zeros", base);
            gq_h5w_u8(w, path, t->zeros, 1, &dg);
            e->bytes += groups;
        }
        gq_h5w_attr_str(w, base, "format", gq_qformat_name(s->format));
        gq_h5w_attr_i64(w, base, "group", gq_qgroup(s, cols));
        gq_h5w_attr_i64(w, base, "rows", rows);
        gq_h5w_attr_i64(w, base, "cols", cols);
        gq_h5w_attr_i64(w, base, "double_quant", s->double_quant);
        gq_h5w_attr_str(w, base, "scale_search",
                        pre        ? "gptq"
                        : learned ? "learned"
                        : s->search && gq_qsearchable(s->format) ? "mse"
                                                                 : "absmax");
        gq_h5w_attr_f64(w, base, "bits_per_weight", gq_qbits_per_weight(s, rows, cols));
    }
    gq_qtensor_free(&q);
    free(h);
    return rc;
}

int gq_export(const char *ckpt_path, const char *out_path, const gq_qplan *plan, gq_shape_fn shape, void *ctx,
              gq_export_entry **entries, int *n_entries) {
    return gq_export_with(ckpt_path, out_path, plan, shape, ctx, NULL, entries, n_entries);
}

int gq_export_with(const char *ckpt_path, const char *out_path, const gq_qplan *plan, gq_shape_fn shape, void *ctx,
                   const gq_export_hooks *hooks, gq_export_entry **entries, int *n_entries) {
    const gq_export_hooks none = {0};
    const gq_export_hooks *hk = hooks ? hooks : &none;
    *entries = NULL;
    *n_entries = 0;
    gq_h5r *r = NULL;
    int rc = hk->params ? GQ_OK : gq_h5r_open(&r, ckpt_path);
    if (rc) return rc;
    char **names = NULL;
    int n = 0;
    gq_gpt2_tensor_ref *refs = NULL; /* hk->params: the layout's tensors */
    if (hk->params) {
        n = gq_gpt2_n_tensor_refs(hk->cfg);
        refs = malloc((size_t)n * sizeof *refs);
        names = calloc((size_t)n, sizeof *names);
        if (!refs || !names) rc = gq_errf(GQ_ENOMEM, "out of memory");
        if (!rc) gq_gpt2_tensor_refs(hk->cfg, refs);
        for (int i = 0; i < n && !rc; i++)
            if (!(names[i] = strdup(refs[i].name))) rc = gq_errf(GQ_ENOMEM, "out of memory");
    } else {
        rc = gq_h5r_list(r, "/params", &names, &n);
    }
    if (!rc && n == 0) rc = gq_errf(GQ_EFORMAT, "%s: no tensors under /params", ckpt_path);
    gq_export_entry *ent = calloc((size_t)n + 1, sizeof *ent);
    gq_h5w *w = NULL;
    if (!rc) rc = gq_h5w_begin(&w, out_path);
    int n_quant = 0;
    static const char *keys[] = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size", "padded_vocab_size"};
    for (int k = 0; k < 6 && !rc; k++) {
        int64_t v;
        if (hk->params) {
            const gq_gpt2_config *c = hk->cfg;
            const int cv[6] = {c->n_layer, c->n_head, c->n_embd, c->block_size, c->vocab_size, c->padded_vocab_size};
            v = cv[k];
        } else {
            rc = gq_h5r_attr_i64(r, "/config", keys[k], &v);
        }
        if (!rc) gq_h5w_attr_i64(w, "/config", keys[k], v);
    }
    for (int i = 0; i < n && !rc; i++) {
        int rows, cols, nd;
        size_t dims[4];
        char path[400];
        snprintf(path, sizeof path, "/params/%s", names[i]);
        if (hk->params)
            nd = refs[i].cols ? 2 : 1, dims[0] = refs[i].rows, dims[1] = refs[i].cols;
        else
            rc = gq_h5r_dims(r, path, &nd, dims);
        if (rc) break;
        if (shape(names[i], &rows, &cols, ctx)) {
            rc = gq_errf(GQ_EFORMAT, "%s: %s is not a parameter of this model", ckpt_path, path);
            break;
        }
        if (nd != (cols ? 2 : 1) || dims[0] != (size_t)rows || (cols && dims[1] != (size_t)cols)) {
            rc = gq_errf(GQ_ESHAPE, "%s: %s has shape [%zu%s%zu], its config says [%d%s%d]", ckpt_path, path, dims[0],
                         nd > 1 ? ", " : "", nd > 1 ? dims[1] : (size_t)0, rows, cols ? ", " : "", cols);
            break;
        }
        const size_t numel = (size_t)rows * (cols ? cols : 1);
        float *x = malloc(numel * sizeof *x);
        if (!x)
            rc = gq_errf(GQ_ENOMEM, "out of memory");
        else if (hk->params)
            memcpy(x, hk->params + refs[i].offset, numel * sizeof *x);
        else
            rc = gq_h5r_f32(r, path, x, nd, dims);
        gq_qspec s = {GQ_QF_F32, 0, 0, 0, 0, 0};
        if (!rc && gq_qplan_lookup(plan, names[i], rows, cols, &s)) n_quant++;
        const float *ti = hk->imp && cols && s.format != GQ_QF_F32 ? hk->imp(names[i], hk->imp_ctx) : NULL;
        const gq_qtensor *pre = NULL; /* -gptq: GPTQ's result */
        if (!rc && s.format != GQ_QF_F32 && s.gptq && !gq_qspec_problem(&s, rows, cols) &&
            !(pre = hk->pre ? hk->pre(names[i], hk->pre_ctx) : NULL))
            rc = gq_errf(GQ_EINVAL, "%s: %s: -gptq quantizes with calibration data (gpt2q-export --calib DATA)",
                         ckpt_path, names[i]);
        float *learned = NULL; /* -lsq: the trained scales, one per group */
        if (!rc && s.format != GQ_QF_F32 && s.lsq && !gq_qspec_problem(&s, rows, cols)) {
            char sp[400];
            snprintf(sp, sizeof sp, "/qat/scales/%s", names[i]);
            size_t sd[2] = {(size_t)rows, (size_t)(cols / gq_qgroup(&s, cols))};
            if (!r || !gq_h5r_exists(r, sp))
                rc = gq_errf(GQ_EFORMAT, "%s: no learned scales for %s (%s): -lsq exports the scales that QAT with "
                             "-lsq trained; without -lsq the format's own rule chooses them",
                             ckpt_path, names[i], sp);
            else if (!(learned = malloc(sd[0] * sd[1] * sizeof *learned)))
                rc = gq_errf(GQ_ENOMEM, "out of memory");
            else
                rc = gq_h5r_f32(r, sp, learned, 2, sd);
        }
        if (!rc) rc = export_tensor(w, names[i], x, rows, cols, &s, ti, learned, pre, &ent[i], ckpt_path);
        free(learned);
        free(x);
    }
    if (!rc && n_quant == 0) rc = gq_errf(GQ_EINVAL, "%s: the layer selection matches no weight to quantize", ckpt_path);
    if (w) {
        gq_h5w_attr_str(w, "/", "format", "gpt2q-quantized");
        gq_h5w_attr_i64(w, "/", "format_version", 1);
        gq_h5w_attr_str(w, "/", "source", ckpt_path);
        if (hk->calib) gq_h5w_attr_str(w, "/", "calibration", hk->calib);
        /* weights trained with int8 activations (W8A8 QAT: the checkpoint's options say
         * qat_act = int8) say so; the runner scores them that way with --act int8 */
        char *opts = r ? malloc(1 << 16) : NULL;
        if (opts && !gq_h5r_attr_str(r, "/train", "options", opts, 1 << 16) && strstr(opts, "\nqat_act = int8\n"))
            gq_h5w_attr_str(w, "/", "trained_activations", "int8");
        free(opts);
        if (rc) gq_h5w_abort(w);
        else rc = gq_h5w_commit(w);
    }
    for (int i = 0; i < n && names; i++) free(names[i]);
    free(names), free(refs);
    if (r) gq_h5r_close(r);
    if (rc) {
        free(ent);
        return rc;
    }
    *entries = ent;
    *n_entries = n;
    return GQ_OK;
}

int gq_export_tensor_spec(gq_h5r *r, const char *name, int rows, int cols, gq_qspec *spec) {
    char base[300], fmt[32];
    snprintf(base, sizeof base, "/tensors/%s", name);
    int rc = gq_h5r_attr_str(r, base, "format", fmt, sizeof fmt);
    if (rc) return rc;
    *spec = (gq_qspec){GQ_QF_F32, 0, 0, 0, 0, 0};
    if (!strcmp(fmt, "f32")) return GQ_OK;
    int64_t group = 0, dq = 0;
    if (gq_qformat_parse(fmt, 0, spec))
        return gq_errf(GQ_EFORMAT, "%s: %s: unknown format attribute \"%s\"", gq_h5r_path(r), base, fmt);
    rc = gq_h5r_attr_i64(r, base, "group", &group);
    if (!rc) rc = gq_h5r_attr_i64(r, base, "double_quant", &dq);
    if (rc) return rc;
    spec->group = (int)group;
    spec->double_quant = (int)dq;
    char search[16];
    if (gq_h5r_attr_str(r, base, "scale_search", search, sizeof search) == GQ_OK) { /* (older files: absmax) */
        spec->search = !strcmp(search, "mse") ? GQ_QSEARCH_MSE : 0;
        spec->lsq = !strcmp(search, "learned");
        spec->gptq = !strcmp(search, "gptq");
    }
    const char *why = gq_qspec_problem(spec, rows, cols);
    if (why) return gq_errf(GQ_EFORMAT, "%s: %s [%d, %d]: %s", gq_h5r_path(r), base, rows, cols, why);
    return GQ_OK;
}

int gq_export_check(const gq_qplan *plan, const gq_gpt2_config *cfg) {
    const int n = gq_gpt2_n_tensor_refs(cfg);
    gq_gpt2_tensor_ref *refs = malloc((size_t)n * sizeof *refs);
    if (!refs) return gq_errf(GQ_ENOMEM, "out of memory");
    gq_gpt2_tensor_refs(cfg, refs);
    int selected = 0, rc = GQ_OK;
    for (int i = 0; i < n && !rc; i++) {
        const int rows = (int)refs[i].rows, cols = (int)refs[i].cols;
        gq_qspec s;
        if (!gq_qplan_lookup(plan, refs[i].name, rows, cols, &s)) continue;
        const char *why = gq_qspec_problem(&s, rows, cols);
        if (why)
            rc = gq_errf(GQ_ESHAPE, "tensor %s [%d, %d]: %s for %s group %d", refs[i].name, rows, cols, why,
                         gq_qformat_name(s.format), s.group);
        selected++;
    }
    free(refs);
    if (!rc && !selected) rc = gq_errf(GQ_EINVAL, "the layer selection matches no weight to quantize");
    return rc;
}

int gq_export_read_dequant(gq_h5r *r, const char *name, float *dst, int rows, int cols, gq_qspec *spec_out) {
    char base[300], path[400], fmt[32];
    snprintf(base, sizeof base, "/tensors/%s", name);
    int rc = gq_h5r_attr_str(r, base, "format", fmt, sizeof fmt);
    if (rc) return rc;
    size_t dims[2] = {(size_t)rows, (size_t)cols};
    if (!strcmp(fmt, "f32")) {
        snprintf(path, sizeof path, "%s/value", base);
        if (spec_out) *spec_out = (gq_qspec){GQ_QF_F32, 0, 0, 0, 0, 0};
        return gq_h5r_f32(r, path, dst, cols ? 2 : 1, dims);
    }
    gq_qspec s;
    if ((rc = gq_export_tensor_spec(r, name, rows, cols, &s))) return rc;
    size_t groups = gq_qn_groups(&s, rows, cols), bytes = gq_qpacked_bytes(&s, rows, cols);
    size_t d2 = groups / GQ_DQ_BLOCK + (groups % GQ_DQ_BLOCK != 0);
    gq_qtensor q = {malloc(bytes), calloc(groups, 4), calloc(groups, 1), calloc(groups, 1), calloc(d2 + 1, 4), 0};
    uint16_t *h = malloc(groups * 2);
    snprintf(path, sizeof path, "%s/qweight", base);
    rc = gq_h5r_u8(r, path, q.qweight, 1, &bytes);
    snprintf(path, sizeof path, "%s/scales", base);
    if (!rc && s.format == GQ_QF_NF4 && s.double_quant) {
        double off = 0;
        snprintf(path, sizeof path, "%s/absmax_q", base);
        rc = gq_h5r_i8(r, path, q.absmax_q, 1, &groups);
        snprintf(path, sizeof path, "%s/absmax2", base);
        if (!rc) rc = gq_h5r_f32(r, path, q.absmax2, 1, &d2);
        if (!rc) rc = gq_h5r_attr_f64(r, base, "absmax_offset", &off);
        q.absmax_offset = (float)off;
        for (size_t k = 0; !rc && k < groups; k++)
            q.scales[k] = (float)q.absmax_q[k] * q.absmax2[k / GQ_DQ_BLOCK] + q.absmax_offset;
    } else if (!rc && gq_qscale_f16(s.format)) {
        rc = gq_h5r_u16(r, path, h, 1, &groups);
        for (size_t k = 0; !rc && k < groups; k++) q.scales[k] = gq_f16_to_f32(h[k]);
    } else if (!rc) {
        rc = gq_h5r_f32(r, path, q.scales, 1, &groups);
    }
    if (!rc && s.format == GQ_QF_INT4A) {
        snprintf(path, sizeof path, "%s/zeros", base);
        rc = gq_h5r_u8(r, path, q.zeros, 1, &groups);
    }
    if (!rc) gq_dequantize(&s, &q, rows, cols, dst);
    if (!rc && spec_out) *spec_out = s;
    gq_qtensor_free(&q);
    free(h);
    return rc;
}
