/* The CPU SIMD variants: every variant this machine can run gives bit-identical results to
 * the scalar one on random rows of odd lengths (exp rows, GELU, AdamW, squared norms), and the shared exp is accurate
 * (max relative error vs. double exp <= 4 ulp = 4.8e-7 over [-87, 88]). Every variant's
 * exponential rows (written in vector form, the scalar variant's too) give act_math.h's scalar
 * functions' bits element by element, NaN, infinities and out-of-range values included.
 * Variants the CPU lacks are reported as not run. */
#include "act_math.h"
#include "gq_rng.h"
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
    return gq_test_finish("test_simd");
}
