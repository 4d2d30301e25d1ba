/* Learned step sizes (QAT with -lsq): quant.h's gq_lsq_* and the CPU backend's
 * fakequant_lsq_forward / _backward against tests/fixtures/make_lsq_fixture.py (LSQ in PyTorch
 * autograd: fp16 scales for the int formats, clamp, rounding and gradient scale as the paper),
 * the export's quantization (gq_quantize_lsq + gq_dequantize) against the fake-quant values, and
 * the format grammar. Usage: test_lsq FIXTURE_DIR (tests/fixtures/quant). */
#include "backend.h"
#include "gq_error.h"
#include "gq_test.h"
#include "gq_test_st.h"
#include "qplan.h"
#include "quant.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R = 6, C = 96, G = 32, NG = R * C / G };

static int read_t(const gq_safetensors *st, const char *fmt, const char *what, float *dst, size_t n) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", fmt, what);
    return gq_test_st_f32(st, name, dst, n);
}

static void test_fixture(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/lsq.safetensors", dir);
    gq_safetensors *st = NULL;
    CHECK_OK(gq_st_open(&st, path));
    if (!st) return;
    const gq_backend *be = gq_backend_cpu();
    const struct {
        const char *name;
        gq_qformat f;
    } fm[] = {{"int4", GQ_QF_INT4}, {"int3", GQ_QF_INT3}, {"int2", GQ_QF_INT2}, {"nf4", GQ_QF_NF4}, {"fp4", GQ_QF_FP4}};
    for (size_t k = 0; k < sizeof fm / sizeof *fm; k++) {
        static float w[R * C], s[NG], dy[R * C], y[R * C], dw[R * C], ds[NG], out[R * C], grad[R * C], dsc[NG],
            deq[R * C];
        if (read_t(st, fm[k].name, "w", w, R * C) || read_t(st, fm[k].name, "s", s, NG) ||
            read_t(st, fm[k].name, "dy", dy, R * C) || read_t(st, fm[k].name, "y", y, R * C) ||
            read_t(st, fm[k].name, "dw", dw, R * C) || read_t(st, fm[k].name, "ds", ds, NG))
            continue;
        const gq_qspec spec = {fm[k].f, G, 0, 0, 1, 0};
        /* forward: the reference's values bit for bit */
        uint64_t status = 0;
        CHECK_OK(be->fakequant_lsq_forward(out, w, s, R, C, &spec, 0, &status));
        CHECKF(status == UINT64_MAX, "%s: status %llu for finite weights", fm[k].name, (unsigned long long)status);
        int bad = 0;
        for (int i = 0; i < R * C; i++) bad += memcmp(&out[i], &y[i], 4) != 0;
        CHECKF(bad == 0, "%s forward: %d of %d values differ from PyTorch's (e.g. %g vs %g)", fm[k].name, bad, R * C,
               out[0], y[0]);
        /* backward: dL/dw = dy or 0 (the reference's autograd divides by s' and multiplies by it
         * again: the same value to an ulp); dL/ds to float rounding (another summation order) */
        memcpy(grad, dy, sizeof grad);
        for (int g = 0; g < NG; g++) dsc[g] = 0.5f; /* accumulated into (+=) */
        CHECK_OK(be->fakequant_lsq_backward(grad, dsc, w, s, R, C, &spec));
        bad = 0;
        int clipped = 0;
        for (int i = 0; i < R * C; i++) {
            bad += (grad[i] == 0.0f) != (dw[i] == 0.0f) || fabsf(grad[i] - dw[i]) > 2.5e-7f * fabsf(dw[i]);
            clipped += dw[i] == 0.0f;
        }
        CHECKF(bad == 0, "%s backward: %d of %d weight gradients differ", fm[k].name, bad, R * C);
        CHECKF(clipped > 0, "%s: the fixture clips no value (the test would not see the clipped branch)", fm[k].name);
        double worst = 0, top = 0;
        for (int g = 0; g < NG; g++) {
            worst = fmax(worst, fabs((double)(dsc[g] - 0.5f) - ds[g]));
            top = fmax(top, fabs(ds[g]));
        }
        CHECKF(worst <= 2e-6 * top + 1e-7, "%s backward: scale gradients off by %.3g (largest %.3g)", fm[k].name, worst,
               top);
        /* the export: codes from the learned scales, dequantized = the fake-quant values */
        gq_qtensor q = {malloc(gq_qpacked_bytes(&spec, R, C)), malloc(NG * sizeof(float)), NULL, NULL, NULL, 0};
        size_t at = 0;
        CHECK(gq_quantize_lsq(&spec, w, R, C, s, &q, &at) == 0);
        gq_dequantize(&spec, &q, R, C, deq);
        CHECKF(memcmp(deq, y, sizeof deq) == 0, "%s: the export's dequantized weights differ from the fake-quant's",
               fm[k].name);
        for (int g = 0; g < NG; g++)
            CHECKF(q.scales[g] == gq_lsq_stored(fm[k].f, s[g]) &&
                       (gq_qscale_f16(fm[k].f) ? gq_f16_to_f32(gq_f32_to_f16(q.scales[g])) == q.scales[g] : 1),
                   "%s: group %d's stored scale %g", fm[k].name, g, q.scales[g]);
        /* a non-finite weight or scale is refused, and named */
        float keep = w[100];
        w[100] = NAN;
        CHECK(gq_quantize_lsq(&spec, w, R, C, s, &q, &at) == -1 && at == 100);
        CHECK_OK(be->fakequant_lsq_forward(out, w, s, R, C, &spec, 0, &status));
        CHECK(status == 100);
        CHECK(be->fakequant_lsq_forward(out, w, s, R, C, &spec, 0, NULL) == GQ_ENAN);
        w[100] = keep;
        s[3] = INFINITY;
        CHECK(gq_quantize_lsq(&spec, w, R, C, s, &q, &at) == -1 && at == (size_t)R * C + 3);
        free(q.qweight), free(q.scales);
    }
    gq_st_close(st);
}

/* the stored scale: fp16 for the int formats, never 0, the sign kept */
static void test_stored(void) {
    CHECK(gq_lsq_stored(GQ_QF_INT4, 0.0f) > 0.0f);
    CHECK(gq_lsq_stored(GQ_QF_INT4, -1e-12f) < 0.0f);
    CHECK(gq_lsq_stored(GQ_QF_NF4, 0.0f) > 0.0f);
    CHECK(gq_lsq_stored(GQ_QF_INT3, 0.1f) == gq_f16_to_f32(gq_f32_to_f16(0.1f)));
    CHECK(gq_lsq_stored(GQ_QF_FP4, 0.1f) == 0.1f);
    CHECK(isnan(gq_lsq_stored(GQ_QF_INT4, NAN)));
    /* the grids' ends: the largest unit value is Qp, values past it clip to it */
    CHECK(gq_qvalue(GQ_QF_INT4, gq_lsq_code(GQ_QF_INT4, 100.0f, 1.0f), 1.0f, 0) == 7.0f);
    CHECK(gq_qvalue(GQ_QF_INT4, gq_lsq_code(GQ_QF_INT4, -100.0f, 1.0f), 1.0f, 0) == -8.0f);
    CHECK(gq_qvalue(GQ_QF_INT2, gq_lsq_code(GQ_QF_INT2, 0.49f, 1.0f), 1.0f, 0) == 0.0f);
    CHECK(gq_qvalue(GQ_QF_INT2, gq_lsq_code(GQ_QF_INT2, 0.5f, 1.0f), 1.0f, 0) == 1.0f); /* half up */
    CHECK(gq_qvalue(GQ_QF_FP4, gq_lsq_code(GQ_QF_FP4, 7.0f, 1.0f), 1.0f, 0) == 6.0f);
    CHECK(gq_qvalue(GQ_QF_NF4, gq_lsq_code(GQ_QF_NF4, -3.0f, 1.0f), 1.0f, 0) == -1.0f);
    float d;
    CHECK(gq_lsq_backward_value(GQ_QF_INT4, 9.0f, 1.0f, 2.0f, &d) == 0.0f && d == 14.0f);   /* clipped: dy Qp */
    CHECK(gq_lsq_backward_value(GQ_QF_INT4, 2.25f, 1.0f, 2.0f, &d) == 2.0f && d == -0.5f); /* dy (v - u) */
}

static void test_grammar(void) {
    gq_qspec s;
    CHECK_OK(gq_qformat_parse("int3-lsq", 0, &s));
    CHECK(s.format == GQ_QF_INT3 && s.lsq == 1 && s.group == 64 && !s.search);
    CHECK_OK(gq_qformat_parse("int4-lsq-g32-mse", 0, &s));
    CHECK(s.format == GQ_QF_INT4 && s.lsq && s.group == 32 && s.search);
    CHECK_OK(gq_qformat_parse("nf4-lsq", 0, &s));
    CHECK(s.lsq && !s.double_quant);
    CHECK(gq_qformat_parse("int8-lsq", 0, &s) == GQ_EINVAL);
    CHECK(gq_qformat_parse("int4a-lsq", 0, &s) == GQ_EINVAL);
    CHECK(gq_qformat_parse("nf4-dq-lsq", 0, &s) == GQ_EINVAL);
    const gq_qspec a = {GQ_QF_INT4A, 64, 0, 0, 1, 0}, q8 = {GQ_QF_Q8_0, 32, 0, 0, 1, 0};
    CHECK(gq_qspec_problem(&a, 4, 64) != NULL && gq_qspec_problem(&q8, 4, 64) != NULL);
    /* the backend refuses a spec without learned scales */
    float w[64] = {0}, sc[1] = {1}, out[64];
    const gq_qspec plain = {GQ_QF_INT4, 64, 0, 0, 0, 0};
    CHECK(gq_backend_cpu()->fakequant_lsq_forward(out, w, sc, 1, 64, &plain, 0, NULL) == GQ_ESHAPE);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    test_fixture(argv[1]);
    test_stored();
    test_grammar();
    return gq_test_finish("test_lsq");
}
