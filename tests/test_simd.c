/* The CPU SIMD variants: every variant this machine can run gives bit-identical results to
 * the scalar one on random rows of odd lengths (exp rows, GELU, AdamW, squared norms), and the shared exp is accurate
 * (max relative error vs. double exp <= 4 ulp = 4.8e-7 over [-87, 88]). Every variant's
 * exponential rows (written in vector form, the scalar variant's too) give act_math.h's scalar
 * functions' bits element by element, NaN, infinities and out-of-range values included; and
 * QAT's per-value work (learned-scale fake-quant forward / backward, quantize + dequantize in
 * every format, int8 activation blocks) gives quant.h's results, compiled here for the
 * baseline, bit for bit in every variant.
 * Variants the CPU lacks are reported as not run. */
#include "act_math.h"
#include "gq_rng.h"
#include "quant.h"
#include "gq_test.h"
#include "simd.h"

#include <math.h>
#include <string.h>

int main(void) {
    double max_rel = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        double want = exp((double)x), got = gq_exp(x);
        max_rel = fmax(max_rel, fabs(got - want) / want);
    }
    printf("gq_exp: max relative error %.3g\n", max_rel);
    CHECK(max_rel <= 4.8e-7);
    CHECK(gq_exp(-1000.0f) >= 0.0f && gq_exp(-1000.0f) < 1e-37f);
    CHECK(isnan(gq_exp(NAN)));

    const gq_simd_ops *ref = gq_simd_variant("scalar");
    const char *names[] = {"avx2", "avx512"};
    gq_rng r;
    gq_rng_seed(&r, 5);
    enum { N = 50257 + 47 };
    static float x[N], a[N], b[N], dy[N];
    for (int i = 0; i < N; i++) x[i] = (gq_rng_float(&r) - 0.5f) * 30.0f, dy[i] = gq_rng_float(&r) - 0.5f;
    printf("chosen variant: %s\n", gq_simd()->name);
    for (int v = 0; v < 2; v++) {
        const gq_simd_ops *ops = gq_simd_variant(names[v]);
        if (!ops || !gq_simd_supported(names[v])) {
            printf("%s: not supported by this CPU, not run\n", names[v]);
            continue;
        }
        int lens[] = {1, 15, 16, 17, 50257, N};
        int same = 1;
        for (int k = 0; k < 6; k++) {
            float l1 = ref->logsumexp(x, lens[k]), l2 = ops->logsumexp(x, lens[k]);
            same &= !memcmp(&l1, &l2, 4);
            memcpy(a, x, sizeof x);
            memcpy(b, x, sizeof x);
            ref->exp_scale(a, lens[k], l1, 0.25f);
            ops->exp_scale(b, lens[k], l1, 0.25f);
            same &= !memcmp(a, b, (size_t)lens[k] * 4);
            memcpy(a, x, sizeof x);
            memcpy(b, x, sizeof x);
            float lt = ref->logsumexp(dy, lens[k]);
            ref->distill_grad(a, dy, lens[k], l1, lt, 0.25f, 0.125f);
            ops->distill_grad(b, dy, lens[k], l1, lt, 0.25f, 0.125f);
            same &= !memcmp(a, b, (size_t)lens[k] * 4);
            for (int i = 0; i < lens[k]; i++) same &= a[i] == gq_exp(x[i] - l1) * 0.25f - gq_exp(dy[i] - lt) * 0.125f;
            ref->gelu_forward(a, x, (size_t)lens[k]);
            ops->gelu_forward(b, x, (size_t)lens[k]);
            same &= !memcmp(a, b, (size_t)lens[k] * 4);
            ref->gelu_backward(a, x, dy, (size_t)lens[k]);
            ops->gelu_backward(b, x, dy, (size_t)lens[k]);
            same &= !memcmp(a, b, (size_t)lens[k] * 4);
            static float pa[N], pb[N], ma[N], mb[N], va[N], vb[N];
            for (int i = 0; i < lens[k]; i++) pa[i] = pb[i] = x[i], ma[i] = mb[i] = dy[i], va[i] = vb[i] = dy[i] * dy[i];
            ref->adamw(pa, dy, ma, va, (size_t)lens[k], 0.9f, 0.95f, 1e-8f, 1e-3f, 0.3f, 0.9999f, 0.5f);
            ops->adamw(pb, dy, mb, vb, (size_t)lens[k], 0.9f, 0.95f, 1e-8f, 1e-3f, 0.3f, 0.9999f, 0.5f);
            same &= !memcmp(pa, pb, (size_t)lens[k] * 4) && !memcmp(ma, mb, (size_t)lens[k] * 4) &&
                    !memcmp(va, vb, (size_t)lens[k] * 4);
            double s1 = ref->sum_squares(x, (size_t)lens[k]), s2 = ops->sum_squares(x, (size_t)lens[k]);
            same &= !memcmp(&s1, &s2, sizeof s1);
            float d1 = ref->dot(x, dy, lens[k]), d2 = ops->dot(x, dy, lens[k]);
            double dref = 0;
            for (int i = 0; i < lens[k]; i++) dref += (double)x[i] * dy[i];
            same &= !memcmp(&d1, &d2, 4);
            CHECKF(fabs(d1 - dref) <= 1e-5 * (1 + fabs(dref)), "dot over %d: %g vs double %g", lens[k], d1, dref);
            memcpy(a, dy, sizeof dy);
            memcpy(b, dy, sizeof dy);
            ref->axpy(a, 0.37f, x, lens[k]);
            ops->axpy(b, 0.37f, x, lens[k]);
            same &= !memcmp(a, b, (size_t)lens[k] * 4);
            for (int i = 0; i < lens[k]; i++) same &= a[i] == dy[i] + 0.37f * x[i];
        }
        printf("%s: %s\n", names[v], same ? "bit-identical to scalar" : "DIFFERS from scalar");
        CHECKF(same, "%s differs from the scalar variant", names[v]);
    }

    /* every variant against act_math.h's scalar functions, element by element */
    static float z[N];
    for (int i = 0; i < N; i++) z[i] = x[i];
    const float special[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 100.0f, -100.0f, 88.5f, -88.0f, 0.0f, -0.0f};
    for (int i = 0; i < (int)(sizeof special / sizeof *special); i++) z[7 * i + 3] = special[i];
    const char *all[] = {"scalar", "avx2", "avx512"};
    for (int v = 0; v < 3; v++) {
        const gq_simd_ops *ops = gq_simd_variant(all[v]);
        if (!ops || !gq_simd_supported(all[v])) continue;
        int same = 1;
        const int n = 50257;
        memcpy(b, z, sizeof z);
        ops->exp_scale(b, n, 1.5f, 0.25f);
        for (int i = 0; i < n; i++) {
            const float want = gq_exp(z[i] - 1.5f) * 0.25f;
            same &= !memcmp(&b[i], &want, 4);
        }
        ops->gelu_forward(b, z, (size_t)n);
        for (int i = 0; i < n; i++) {
            const float want = gq_gelu(z[i]);
            same &= !memcmp(&b[i], &want, 4);
        }
        ops->gelu_backward(b, z, dy, (size_t)n);
        for (int i = 0; i < n; i++) {
            const float want = gq_gelu_grad(z[i]) * dy[i];
            same &= !memcmp(&b[i], &want, 4);
        }
        /* log-sum-exp in its documented order: 16 lanes (lane l: elements l, l + 16, ...), the
         * tail, then the lanes in order */
        float mx = -3.0e38f, acc[16] = {0}, s = 0.0f;
        for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        const int body = n / 16 * 16;
        for (int i = 0; i < body; i++) acc[i % 16] += gq_exp(x[i] - mx);
        for (int i = body; i < n; i++) s += gq_exp(x[i] - mx);
        for (int l = 0; l < 16; l++) s += acc[l];
        const float want = mx + (float)log((double)s), got = ops->logsumexp(x, n);
        same &= !memcmp(&got, &want, 4);
        printf("%s: %s act_math.h's scalar exp / GELU bits\n", all[v], same ? "has" : "DIFFERS from");
        CHECKF(same, "%s differs from act_math.h's scalar functions", all[v]);
    }

    /* QAT's per-value work in every variant against quant.h compiled here */
    enum { QR = 24, QC = 256, QN = QR * QC };
    static float w[QN], sc[QN], o1[QN], o2[QN], g1[QN], d1[QN], d2[QN];
    for (int i = 0; i < QN; i++) w[i] = (gq_rng_float(&r) - 0.5f) * 0.03f, g1[i] = gq_rng_float(&r) - 0.5f;
    w[5] = 3.0f, w[77] = -2.5f; /* clipped under learned scales */
    const gq_qformat lf[] = {GQ_QF_INT4, GQ_QF_INT3, GQ_QF_INT2, GQ_QF_NF4, GQ_QF_FP4};
    const struct {
        gq_qformat f;
        int group, dq, search;
    } qs[] = {{GQ_QF_INT8, 0, 0, 0},  {GQ_QF_Q8_0, 32, 0, 0}, {GQ_QF_INT4, 64, 0, 0}, {GQ_QF_INT4, 32, 0, 1},
              {GQ_QF_INT4A, 64, 0, 0}, {GQ_QF_INT3, 64, 0, 0}, {GQ_QF_INT3, 64, 0, 1}, {GQ_QF_INT2, 64, 0, 0},
              {GQ_QF_NF4, 64, 0, 0},  {GQ_QF_NF4, 64, 0, 1},  {GQ_QF_FP4, 64, 0, 0}};
    for (int v = 0; v < 3; v++) {
        const gq_simd_ops *ops = gq_simd_variant(all[v]);
        if (!ops || !gq_simd_supported(all[v])) continue;
        int same = 1, nq = 0;
        for (size_t k = 0; k < sizeof lf / sizeof *lf; k++) {
            const int g = 32, groups = QN / g;
            for (int j = 0; j < groups; j++) sc[j] = 0.004f + 0.0003f * (float)(j % 7);
            for (int j = 0; j < QN; j++) o1[j] = gq_qvalue(lf[k], gq_lsq_code(lf[k], w[j], gq_lsq_stored(lf[k], sc[j / g])),
                                                           gq_lsq_stored(lf[k], sc[j / g]), 0);
            ops->lsq_forward(lf[k], o2, w, sc, (size_t)groups, g);
            same &= !memcmp(o1, o2, sizeof o1);
            memcpy(o1, g1, sizeof o1), memcpy(o2, g1, sizeof o2);
            for (int j = 0; j < groups; j++) d1[j] = d2[j] = 0.25f;
            const float gs = gq_lsq_gradscale(lf[k], g);
            for (int j = 0; j < groups; j++) {
                const float ss = gq_lsq_stored(lf[k], sc[j]);
                float sum = 0.0f;
                for (int i = j * g; i < (j + 1) * g; i++) {
                    float d;
                    o1[i] = gq_lsq_backward_value(lf[k], w[i], ss, o1[i], &d);
                    sum += d;
                }
                d1[j] += gs * sum;
            }
            ops->lsq_backward(lf[k], o2, d2, w, sc, (size_t)groups, g, gs);
            same &= !memcmp(o1, o2, sizeof o1) && !memcmp(d1, d2, (size_t)groups * 4);
        }
        for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
            const gq_qspec spec = {qs[k].f, qs[k].group, qs[k].dq, qs[k].search, 0, 0};
            if (gq_qspec_problem(&spec, QR, QC)) continue;
            const size_t ng = gq_qn_groups(&spec, QR, QC), pb = gq_qpacked_bytes(&spec, QR, QC);
            uint8_t *p1 = calloc(pb, 1), *p2 = calloc(pb, 1), *z1 = calloc(ng, 1), *z2 = calloc(ng, 1);
            float *s1 = calloc(ng, 4), *s2 = calloc(ng, 4);
            gq_qtensor t1 = {p1, s1, z1, NULL, NULL, 0}, t2 = {p2, s2, z2, NULL, NULL, 0};
            size_t b1 = 0, b2 = 0;
            const int r1 = gq_quantize(&spec, w, QR, QC, &t1, &b1), r2 = ops->quantize(&spec, w, QR, QC, &t2, &b2);
            same &= r1 == r2 && !memcmp(p1, p2, pb) && !memcmp(s1, s2, ng * 4) && !memcmp(z1, z2, ng);
            gq_dequantize(&spec, &t1, QR, QC, o1);
            ops->dequantize(&spec, &t1, QR, QC, o2);
            same &= !memcmp(o1, o2, sizeof o1);
            nq++;
            free(p1), free(p2), free(z1), free(z2), free(s1), free(s2);
        }
        memcpy(o1, g1, sizeof o1), memcpy(o2, g1, sizeof o2);
        o1[40] = o2[40] = 1e30f, o1[41] = o2[41] = NAN; /* (a block with an outlier, one with a NaN) */
        for (int b = 0; b < QN / GQ_ACT_BLOCK; b++) gq_act8_fake_block(o1 + b * GQ_ACT_BLOCK);
        ops->act8_fake(o2, QN / GQ_ACT_BLOCK);
        same &= !memcmp(o1, o2, sizeof o1);
        printf("%s: QAT work (learned scales in 5 formats, quantize + dequantize in %d specs, int8 activations) %s\n",
               all[v], nq, same ? "as quant.h" : "DIFFERS from quant.h");
        CHECKF(same && nq >= 10, "%s: QAT work differs from quant.h's (or only %d specs ran)", all[v], nq);
    }
    return gq_test_finish("test_simd");
}
