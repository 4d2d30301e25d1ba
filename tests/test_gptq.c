/* GPTQ (kernels/gptq.h) against tests/fixtures/make_gptq_fixture.py (GPTQ in PyTorch float64,
 * column by column, with the formats' rules written again in torch): the same dequantized
 * weights value for value for int4 / int3 / int8 / int4a / nf4, and with act-order (static
 * groups) for int4 / int3 / int8 / nf4; round to nearest (gq_quantize) equal
 * to the fixture's; GPTQ's output error below round to nearest's; with a diagonal H (no
 * correlation to exploit) GPTQ is round to nearest, code for code, in every format, in order and
 * with act-order (static groups); errors for
 * non-finite weights / H and the format grammar. Usage: test_gptq FIXTURE_DIR. */
#include "gptq.h"
#include "gq_error.h"
#include "gq_rng.h"
#include "gq_test.h"
#include "gq_test_st.h"
#include "qplan.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R = 40, C = 192, N = 512 };

static gq_qtensor qalloc(const gq_qspec *s, int rows, int cols) {
    gq_qtensor q;
    CHECK(gq_qtensor_alloc(&q, s, rows, cols) == 0);
    return q;
}

static void test_fixture(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gptq.safetensors", dir);
    gq_safetensors *st = NULL;
    CHECK_OK(gq_st_open(&st, path));
    if (!st) return;
    static float w[R * C], x[N * C], ref[R * C], rtn_ref[R * C], out[R * C], deq[R * C];
    static double H[C * C];
    if (gq_test_st_f32(st, "w", w, R * C) || gq_test_st_f32(st, "x", x, N * C)) return;
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double h = 0;
            for (int i = 0; i < N; i++) h += (double)x[i * C + a] * x[i * C + b];
            H[a * C + b] = h;
        }
    CHECKF(H[7 * C + 7] == 0.0, "the fixture's channel 7 fires (H_77 = %g)", H[7 * C + 7]);
    const struct {
        const char *name;
        gq_qspec s;
    } f[] = {{"int4-g16", {GQ_QF_INT4, 16, 0, 0, 0, 1}},
             {"int3-g32", {GQ_QF_INT3, 32, 0, 0, 0, 1}},
             {"int8", {GQ_QF_INT8, 0, 0, 0, 0, 1}},
             {"int4a-g16", {GQ_QF_INT4A, 16, 0, 0, 0, 1}},
             {"nf4-g64", {GQ_QF_NF4, 64, 0, 0, 0, 1}}};
    int acts = 0;
    for (size_t k = 0; k < sizeof f / sizeof *f; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s.q", f[k].name);
        if (gq_test_st_f32(st, nm, ref, R * C)) continue;
        snprintf(nm, sizeof nm, "%s.rtn", f[k].name);
        if (gq_test_st_f32(st, nm, rtn_ref, R * C)) continue;
        CHECKF(!gq_gptq_problem(&f[k].s, R, C), "%s: %s", f[k].name, gq_gptq_problem(&f[k].s, R, C));
        /* round to nearest: the fixture's rules are ours */
        gq_qtensor q = qalloc(&f[k].s, R, C);
        CHECK(gq_quantize(&f[k].s, w, R, C, &q, NULL) == 0);
        gq_dequantize(&f[k].s, &q, R, C, deq);
        int bad = 0;
        for (int i = 0; i < R * C; i++) bad += deq[i] != rtn_ref[i]; /* (torch's int8 zero is -0 at times) */
        CHECKF(bad == 0, "%s: round to nearest differs from the fixture's in %d of %d values", f[k].name, bad, R * C);
        /* GPTQ */
        gq_gptq_opts o = {0.01, 0, 0, 0, 0};
        size_t badi = 0;
        memset(out, 0, sizeof out);
        CHECK(gq_gptq_quantize(&f[k].s, w, R, C, H, &o, &q, out, &badi) == 0);
        gq_dequantize(&f[k].s, &q, R, C, deq);
        int differ = 0, packed = 0;
        for (int i = 0; i < R * C; i++) differ += out[i] != ref[i], packed += memcmp(&deq[i], &out[i], 4) != 0;
        CHECKF(differ == 0, "%s: GPTQ differs from the PyTorch reference in %d of %d values", f[k].name, differ, R * C);
        CHECKF(packed == 0, "%s: the packed tensor's values differ from the returned weights in %d values", f[k].name, packed);
        CHECKF(o.err_gptq < 0.5 * o.err_rtn && o.err_gptq > 0.0, "%s: output error GPTQ %g vs round to nearest %g",
               f[k].name, o.err_gptq, o.err_rtn);
        CHECKF(fabs(o.damp_used - 0.01) < 1e-15, "%s: damping %g (0.01 given, H is positive definite)", f[k].name,
               o.damp_used);
        /* the reported relative errors are the fixture's figures of merit */
        const double e_ref = gq_gptq_output_error(w, ref, R, C, H), e_rtn = gq_gptq_output_error(w, rtn_ref, R, C, H);
        CHECKF(fabs(o.err_gptq / o.err_rtn - e_ref / e_rtn) < 1e-12, "%s: error ratio %g vs %g", f[k].name,
               o.err_gptq / o.err_rtn, e_ref / e_rtn);
        printf("%-10s output error relative to tr(W H W^T): round to nearest %.3e, GPTQ %.3e (%.3fx)\n", f[k].name,
               o.err_rtn, o.err_gptq, o.err_gptq / o.err_rtn);
        /* act-order with static groups */
        snprintf(nm, sizeof nm, "%s.q_act", f[k].name);
        if (gq_st_find(st, nm) && !gq_test_st_f32(st, nm, ref, R * C)) {
            gq_gptq_opts oa = {0.01, 1, 0, 0, 0};
            CHECK(gq_gptq_quantize(&f[k].s, w, R, C, H, &oa, &q, out, &badi) == 0);
            gq_dequantize(&f[k].s, &q, R, C, deq);
            differ = packed = 0;
            for (int i = 0; i < R * C; i++) differ += out[i] != ref[i], packed += memcmp(&deq[i], &out[i], 4) != 0;
            CHECKF(differ == 0, "%s act-order: differs from the PyTorch reference in %d of %d values", f[k].name, differ,
                   R * C);
            CHECKF(packed == 0, "%s act-order: the packed values differ from the returned weights in %d", f[k].name, packed);
            CHECKF(oa.err_gptq < 0.5 * oa.err_rtn, "%s act-order: output error %g vs round to nearest %g", f[k].name,
                   oa.err_gptq, oa.err_rtn);
            printf("%-10s act-order: GPTQ %.3e (%.3fx)\n", f[k].name, oa.err_gptq, oa.err_gptq / oa.err_rtn);
            acts++;
        }
        gq_qtensor_free(&q);
    }
    CHECKF(acts == 4, "%d act-order cases in the fixture (4 expected)", acts);
    gq_st_close(st);
}

/* With no correlation between inputs (H diagonal), GPTQ's updates vanish: round to nearest */
static void test_diagonal(void) {
    enum { r = 24, c = 256 };
    static float w[r * c], a[r * c], b[r * c];
    static double H[c * c];
    gq_rng g;
    gq_rng_seed(&g, 5);
    for (int i = 0; i < r * c; i++) w[i] = (gq_rng_float(&g) - 0.5f) * (i % 53 == 0 ? 0.6f : 0.1f);
    for (int i = 0; i < c; i++) H[i * c + i] = 0.5 + gq_rng_float(&g) * (i % 7 == 0 ? 50.0 : 1.0);
    H[3 * c + 3] = 0.0; /* a dead input: rounded alone */
    const gq_qspec specs[] = {{GQ_QF_INT8, 0, 0, 0, 0, 1},   {GQ_QF_Q8_0, 32, 0, 0, 0, 1}, {GQ_QF_INT4, 32, 0, 0, 0, 1},
                              {GQ_QF_INT4, 256, 0, 0, 0, 1}, {GQ_QF_INT4A, 64, 0, 0, 0, 1}, {GQ_QF_INT3, 64, 0, 0, 0, 1},
                              {GQ_QF_INT2, 16, 0, 0, 0, 1},  {GQ_QF_NF4, 64, 0, 0, 0, 1},   {GQ_QF_NF4, 64, 1, 0, 0, 1},
                              {GQ_QF_FP4, 64, 0, 0, 0, 1},   {GQ_QF_INT4, 48, 0, 0, 0, 1}};
    const int cols[] = {c, c, c, c, c, c, c, c, c, c, 240};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        const gq_qspec *s = &specs[k];
        const int cc = cols[k];
        gq_qtensor q1 = qalloc(s, r, cc), q2 = qalloc(s, r, cc);
        static double Hc[c * c];
        for (int i = 0; i < cc; i++)
            for (int j = 0; j < cc; j++) Hc[i * cc + j] = H[i * c + j];
        CHECK(gq_quantize(s, w, r, cc, &q1, NULL) == 0);
        gq_gptq_opts o = {0.01, 0, 0, 0, 0};
        CHECK(gq_gptq_quantize(s, w, r, cc, Hc, &o, &q2, NULL, NULL) == 0);
        gq_dequantize(s, &q1, r, cc, a);
        gq_dequantize(s, &q2, r, cc, b);
        int bad = 0;
        for (int i = 0; i < r * cc; i++) bad += memcmp(&a[i], &b[i], 4) != 0;
        CHECKF(bad == 0, "%s group %d, diagonal H: GPTQ differs from round to nearest in %d values",
               gq_qformat_name(s->format), s->group, bad);
        CHECKF(!memcmp(q1.qweight, q2.qweight, gq_qpacked_bytes(s, r, cc)), "%s group %d: packed codes differ",
               gq_qformat_name(s->format), s->group);
        CHECKF(fabs(o.err_gptq - o.err_rtn) <= 1e-12 * o.err_rtn, "%s: errors %g vs %g", gq_qformat_name(s->format),
               o.err_gptq, o.err_rtn);
        gq_gptq_opts oa = {0.01, 1, 0, 0, 0}; /* act-order permutes, static groups are round to nearest's */
        CHECK(gq_gptq_quantize(s, w, r, cc, Hc, &oa, &q2, NULL, NULL) == 0);
        CHECKF(!memcmp(q1.qweight, q2.qweight, gq_qpacked_bytes(s, r, cc)) &&
                   !memcmp(q1.scales, q2.scales, gq_qn_groups(s, r, cc) * 4),
               "%s group %d, diagonal H, act-order: codes or scales differ from round to nearest's",
               gq_qformat_name(s->format), s->group);
        gq_qtensor_free(&q1), gq_qtensor_free(&q2);
    }
}

/* correlated inputs in every format (nf4 double quant, q8_0, fp4, int2 too): below round to nearest */
static void test_correlated(void) {
    enum { r = 64, c = 320, n = 640 };
    static float w[r * c], x[n * c];
    static double H[c * c];
    gq_rng g;
    gq_rng_seed(&g, 9);
    for (int i = 0; i < r * c; i++) w[i] = (gq_rng_float(&g) - 0.5f) * 0.1f;
    for (int i = 0; i < n; i++) {
        float common = gq_rng_float(&g) - 0.5f;
        for (int j = 0; j < c; j++) x[i * c + j] = (gq_rng_float(&g) - 0.5f) + (j % 3 ? common : -common) * 2.0f;
    }
    for (int a = 0; a < c; a++)
        for (int b = 0; b < c; b++) {
            double h = 0;
            for (int i = 0; i < n; i++) h += (double)x[i * c + a] * x[i * c + b];
            H[a * c + b] = h;
        }
    const gq_qspec specs[] = {{GQ_QF_Q8_0, 32, 0, 0, 0, 1}, {GQ_QF_INT2, 32, 0, 0, 0, 1}, {GQ_QF_NF4, 64, 1, 0, 0, 1},
                              {GQ_QF_FP4, 64, 0, 0, 0, 1},  {GQ_QF_INT4, 320, 0, 0, 0, 1}, {GQ_QF_INT4, 32, 0, 0, 0, 1}};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        gq_qtensor q = qalloc(&specs[k], r, c);
        gq_gptq_opts o = {0.01, 0, 0, 0, 0};
        static float out[r * c], deq[r * c];
        CHECK(gq_gptq_quantize(&specs[k], w, r, c, H, &o, &q, out, NULL) == 0);
        gq_dequantize(&specs[k], &q, r, c, deq);
        CHECKF(!memcmp(out, deq, sizeof out), "%s: returned weights differ from the packed tensor's",
               gq_qformat_name(specs[k].format));
        CHECKF(o.err_gptq < 0.8 * o.err_rtn, "%s group %d%s: output error GPTQ %g vs round to nearest %g",
               gq_qformat_name(specs[k].format), specs[k].group, specs[k].double_quant ? " dq" : "", o.err_gptq,
               o.err_rtn);
        gq_qtensor_free(&q);
    }
}

static void test_errors(void) {
    enum { r = 4, c = 32 };
    float w[r * c];
    double H[c * c];
    memset(H, 0, sizeof H);
    for (int i = 0; i < r * c; i++) w[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < c; i++) H[i * c + i] = 1.0;
    gq_qspec s = {GQ_QF_INT4, 32, 0, 0, 0, 1};
    gq_qtensor q = qalloc(&s, r, c);
    gq_gptq_opts o = {0.01, 0, 0, 0, 0};
    size_t bad = 0;
    w[37] = NAN;
    CHECK(gq_gptq_quantize(&s, w, r, c, H, &o, &q, NULL, &bad) == -1 && bad == 37);
    w[37] = 0.0f;
    H[5] = INFINITY;
    CHECK(gq_gptq_quantize(&s, w, r, c, H, &o, &q, NULL, &bad) == -2);
    H[5] = 0.0;
    H[0] = -1e9; /* indefinite whatever the damping */
    CHECK(gq_gptq_quantize(&s, w, r, c, H, &o, &q, NULL, &bad) == -2);
    H[0] = 1.0;
    CHECK(gq_gptq_quantize(&s, w, r, c, H, &o, &q, NULL, &bad) == 0);
    gq_qtensor_free(&q);
    /* all-zero H (no calibration signal): every input dead, so round to nearest */
    memset(H, 0, sizeof H);
    CHECK(gq_gptq_quantize(&s, w, r, c, H, &o, (q = qalloc(&s, r, c), &q), NULL, &bad) == 0);
    gq_qtensor_free(&q);
    gq_qspec m = s, l = s;
    m.search = GQ_QSEARCH_MSE, l.lsq = 1;
    CHECK(gq_gptq_problem(&m, r, c) != NULL && gq_gptq_problem(&l, r, c) != NULL);
    /* grammar */
    gq_qspec p;
    memset(&p, 0, sizeof p);
    CHECK(gq_qformat_parse("int4-g32-gptq", 0, &p) == GQ_OK && p.gptq == 1 && p.group == 32 && p.format == GQ_QF_INT4);
    CHECK(gq_qformat_parse("nf4-dq-gptq", 0, &p) == GQ_OK && p.gptq == 1 && p.double_quant == 1);
    CHECK(gq_qformat_parse("int8-gptq", 0, &p) == GQ_OK && p.gptq == 1);
    CHECK(gq_qformat_parse("int4", 0, &p) == GQ_OK && p.gptq == 0);
    CHECK(gq_qformat_parse("int4-gptq-mse", 0, &p) != GQ_OK);
    CHECK(gq_qformat_parse("int3-lsq-gptq", 0, &p) != GQ_OK);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_gptq FIXTURE_DIR\n");
        return 2;
    }
    test_fixture(argv[1]);
    test_diagonal();
    test_correlated();
    test_errors();
    return gq_test_finish("test_gptq");
}
