/* PTQ export (gpt2q-export's library path) on a random model checkpoint:
 *   - every tensor read back and dequantized equals the fake-quant weights that QAT trains
 *     with (the model's QAT copy, kernels/quant.h's quantize + dequantize) bit for bit, for every format, and fp32
 *     tensors are unchanged;
 *   - the loss of the fake-quantized model equals the loss of the model loaded from the
 *     export, exactly (same weights, same kernels);
 *   - the payload matches bits-per-weight arithmetic and HDF5 adds < 64 KiB of metadata;
 *   - bad input: unknown format, a group that does not divide the rows, a selection that
 *     matches nothing, a checkpoint whose shapes disagree with its config: an error naming
 *     the problem and no output file. */
#define _GNU_SOURCE
#include "gpt2.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_model.h"
#include "h5io.h"
#include "qexport.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int shape_cb(const char *name, int *rows, int *cols, void *ctx) {
    return gq_gpt2_shape_of((const gq_gpt2_config *)ctx, name, rows, cols);
}

int main(void) {
    char dir[] = "/tmp/gq_test_export_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char ckpt[256], out[256];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(out, sizeof out, "%s/q.h5", dir);
    gq_gpt2_config cfg = {2, 2, 64, 32, 300, 0};
    gq_gpt2 *m = gq_test_random_ckpt(ckpt, &cfg, 2, 32, 5), *fq = NULL, *ld = NULL; /* cfg: padded vocab filled in */
    CHECK_OK(gq_gpt2_create(&fq, &cfg, gq_backend_cpu(), 2, 32));
    CHECK_OK(gq_gpt2_create(&ld, &cfg, gq_backend_cpu(), 2, 32));
    if (!m || !fq || !ld) return gq_test_finish("test_export");
    gq_rng r;
    gq_rng_seed(&r, 9);
    int32_t in[64], tg[64];
    for (int i = 0; i < 64; i++) in[i] = (int32_t)gq_rng_below(&r, 300), tg[i] = (int32_t)gq_rng_below(&r, 300);

    const char *formats[] = {"int8", "q8_0",  "int4",     "int4-g32",  "int4a",     "int3",   "int2",
                             "nf4",  "nf4-dq", "fp4",     "int4-mse", "int3-g32-mse", "int4a-mse", "nf4-dq-mse", "fp4-mse"};
    const char *layers[] = {NULL, "all", "qkv", "last4-attn", "lm_head", "h.1-1.mlp.*"};
    for (size_t f = 0; f < sizeof formats / sizeof *formats; f++)
        for (size_t L = 0; L < sizeof layers / sizeof *layers; L++) {
            if (L && f != 2 && f != 8) continue; /* selections: with int4 and nf4-dq */
            gq_qplan plan;
            CHECK_OK(gq_qplan_build(&plan, formats[f], layers[L], 0, cfg.n_layer));
            gq_export_entry *e = NULL;
            int n = 0;
            int rc = gq_export(ckpt, out, &plan, shape_cb, &cfg, &e, &n);
            CHECKF(rc == 0, "export %s %s: %s", formats[f], layers[L] ? layers[L] : "(default)", gq_errmsg(rc));
            if (rc) continue;
            /* fake-quant weights as training computes them (the model's QAT copy) vs the
             * export read back and dequantized */
            gq_gpt2 *qm = NULL;
            CHECK_OK(gq_gpt2_create(&qm, &cfg, gq_backend_cpu(), 2, 32));
            memcpy(qm->params_mem, m->params_mem, m->n_params * 4);
            CHECK_OK(gq_gpt2_qat_enable(qm, &plan));
            memcpy(fq->params_mem, qm->qat_mem, m->n_params * 4);
            gq_gpt2_free(qm);
            gq_h5r *rd;
            CHECK_OK(gq_h5r_open(&rd, out));
            size_t off = 0, payload = 0;
            int differ = 0, n_quant = 0, search_lost = 0;
            const int search = strstr(formats[f], "-mse") != NULL;
            for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
                size_t rows, cols;
                gq_gpt2_tensor_shape(&cfg, i, &rows, &cols);
                int nl = gq_gpt2_tensor(i)->per_layer ? cfg.n_layer : 1;
                for (int l = 0; l < nl; l++) {
                    char name[160];
                    snprintf(name, sizeof name, gq_gpt2_tensor(i)->hf_name, l);
                    gq_qspec s;
                    CHECK_OK(gq_export_read_dequant(rd, name, ld->params_mem + off, (int)rows, (int)cols, &s));
                    size_t numel = rows * (cols ? cols : 1);
                    differ += memcmp(ld->params_mem + off, fq->params_mem + off, numel * 4) != 0;
                    n_quant += s.format != GQ_QF_F32;
                    search_lost += s.format != GQ_QF_F32 && s.search != search; /* the attribute read back */
                    off += numel;
                }
            }
            for (int i = 0; i < n; i++) payload += e[i].bytes;
            gq_h5r_close(rd);
            CHECKF(differ == 0, "%s: %d tensors differ from fake-quant", formats[f], differ);
            CHECKF(search_lost == 0, "%s: %d tensors read back with the wrong scale_search", formats[f], search_lost);
            CHECK(n_quant > 0);
            float l1, l2;
            CHECK_OK(gq_gpt2_forward(fq, in, tg, 2, 32, &l1));
            CHECK_OK(gq_gpt2_forward(ld, in, tg, 2, 32, &l2));
            CHECKF(l1 == l2, "%s: fake-quant loss %.9g vs exported %.9g", formats[f], l1, l2);
            struct stat sb;
            stat(out, &sb);
            CHECKF((size_t)sb.st_size >= payload && (size_t)sb.st_size - payload < 65536,
                   "%s: file %lld bytes, payload %zu", formats[f], (long long)sb.st_size, payload);
            if (!L) printf("%-9s loss %.6f, file %lld bytes (payload %zu)\n", formats[f], l1, (long long)sb.st_size, payload);
            free(e);
        }

    /* calibration statistics (gpt2q-export --calib): layer 0's qkv input is ln1(wte[token] +
     * wpe[position]), computed here in double; every block's entries finite and positive */
    {
        const int C = cfg.n_embd;
        double *acc = calloc(gq_gpt2_calib_size(&cfg), sizeof *acc), *want = calloc((size_t)C, sizeof *want);
        float loss;
        CHECK_OK(gq_gpt2_forward(m, in, tg, 2, 32, &loss));
        CHECK_OK(gq_gpt2_calib_accumulate(m, acc));
        for (int t = 0; t < 64; t++) {
            double x[512], mean = 0, var = 0;
            for (int c = 0; c < C; c++) {
                x[c] = (double)m->params.wte[(size_t)in[t] * C + c] + m->params.wpe[(size_t)(t % 32) * C + c];
                mean += x[c] / C;
            }
            for (int c = 0; c < C; c++) var += (x[c] - mean) * (x[c] - mean) / C;
            for (int c = 0; c < C; c++) {
                const double y = (x[c] - mean) / sqrt(var + 1e-5) * m->params.ln1w[c] + m->params.ln1b[c];
                want[c] += y * y;
            }
        }
        double worst = 0;
        for (int c = 0; c < C; c++) worst = fmax(worst, fabs(acc[gq_gpt2_calib_offset(&cfg, 4, 0) + c] - want[c]) / want[c]);
        CHECKF(worst < 1e-5, "layer 0 qkv input mean squares off by %.3g (relative)", worst);
        size_t bad_stats = 0;
        for (size_t k = 0; k < gq_gpt2_calib_size(&cfg); k++) bad_stats += !(acc[k] > 0) || !isfinite(acc[k]);
        CHECKF(bad_stats == 0, "%zu calibration entries not finite and positive", bad_stats);
        CHECK(gq_gpt2_calib_offset(&cfg, 0, 0) == 7L * cfg.n_layer * C && gq_gpt2_calib_offset(&cfg, 1, 0) == -1);
        free(acc), free(want);
    }

    /* bad input: no output file is left behind */
    unlink(out);
    gq_qplan plan;
    gq_export_entry *e = NULL;
    int n = 0;
    CHECK(gq_qplan_build(&plan, "int5", NULL, 0, 2) == GQ_EINVAL);
    /* format suffixes in any order; -mse only where a scale is searched */
    gq_qspec sp;
    CHECK_OK(gq_qformat_parse("int4-mse-g32", 0, &sp));
    CHECK(sp.format == GQ_QF_INT4 && sp.group == 32 && sp.search == GQ_QSEARCH_MSE);
    CHECK_OK(gq_qformat_parse("nf4-mse-dq", 0, &sp));
    CHECK(sp.format == GQ_QF_NF4 && sp.group == 64 && sp.double_quant && sp.search == GQ_QSEARCH_MSE);
    CHECK_OK(gq_qformat_parse("int3-g128", 0, &sp));
    CHECK(sp.format == GQ_QF_INT3 && sp.group == 128 && !sp.search);
    CHECK(gq_qformat_parse("int8-mse", 0, &sp) == GQ_EINVAL && strstr(gq_errmsg(GQ_EINVAL), "-mse applies to"));
    CHECK(gq_qformat_parse("q8_0-mse", 0, &sp) == GQ_EINVAL);
    CHECK(gq_qformat_parse("int4-msq", 0, &sp) == GQ_EINVAL && strstr(gq_errmsg(GQ_EINVAL), "unknown suffix '-msq'"));
    CHECK(gq_qformat_parse("int4-dq-mse", 0, &sp) == GQ_EINVAL);
    CHECK_OK(gq_qplan_build(&plan, "int4-g48", NULL, 0, 2));
    int rc = gq_export(ckpt, out, &plan, shape_cb, &cfg, &e, &n);
    CHECK(rc == GQ_ESHAPE && strstr(gq_errmsg(rc), "does not divide") && access(out, F_OK) != 0);
    CHECK_OK(gq_qplan_build(&plan, "int4", "h.7.*", 0, 2));
    rc = gq_export(ckpt, out, &plan, shape_cb, &cfg, &e, &n);
    CHECK(rc == GQ_EINVAL && strstr(gq_errmsg(rc), "matches no weight") && access(out, F_OK) != 0);
    CHECK(gq_qplan_build(&plan, "int4", "h.1-5.mlp.*", 0, 2) == GQ_EINVAL);
    /* a checkpoint whose config disagrees with its tensors */
    gq_gpt2_config wrong = cfg;
    wrong.n_embd = 32;
    CHECK_OK(gq_qplan_build(&plan, "int4", NULL, 0, 2));
    rc = gq_export(ckpt, out, &plan, shape_cb, &wrong, &e, &n);
    CHECK(rc == GQ_ESHAPE && strstr(gq_errmsg(rc), "its config says") && access(out, F_OK) != 0);

    gq_gpt2_free(m), gq_gpt2_free(fq), gq_gpt2_free(ld);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return gq_test_finish("test_export");
}
