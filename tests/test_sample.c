/* The token sampler (infer/sample.h):
 *   - the same tokens as the plain rule (every token sorted: gq_sample_ref.h) from the same seed,
 *     over GPT-2-sized vocabularies with peaked, flat and tied logits and a grid of temperature,
 *     top-k and top-p, including settings that keep one token or all of them;
 *   - on a small vocabulary, the frequencies of 200k draws match the kept, renormalized
 *     softmax (each within 5 standard deviations), and tokens outside the kept set never come;
 *   - temperature 0 is the first argmax. */
#include "gq_rng.h"
#include "philox.h"
#include "gq_sample_ref.h"
#include "gq_test.h"
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float randn(gq_rng *r) {
    float u = gq_rng_float(r) + 1e-7f, v = gq_rng_float(r);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void same_as_reference(gq_rng *rng) {
    enum { V = 50257, DRAWS = 2 };
    float *logits = malloc(sizeof(float) * V), *prob = malloc(sizeof(float) * V);
    int32_t *idx = malloc(sizeof(int32_t) * V);
    const float temps[] = {0.0f, 0.3f, 0.8f, 1.0f, 1.7f};
    const int ks[] = {0, 1, 2, 40, 1000, V - 1, V + 5};
    const float ps[] = {1.0f, 0.999f, 0.95f, 0.9f, 0.5f, 1e-4f};
    long checked = 0, differ = 0;
    for (int kind = 0; kind < 4; kind++) {
        /* 0: LM-like (a few large logits over a broad body), 1: flat, 2: ties, 3: one spike */
        for (int i = 0; i < V; i++) {
            float z = randn(rng);
            logits[i] = kind == 0   ? 2.0f * z + (i % 997 == 0 ? 8.0f : 0.0f)
                        : kind == 1 ? 0.01f * z
                        : kind == 2 ? (float)(i % 7)
                                    : (i == 4321 ? 30.0f : z);
        }
        for (size_t a = 0; a < sizeof temps / sizeof *temps; a++)
            for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
                for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
                    gq_sampler s = {0};
                    const uint64_t seed = 1000 * kind + 100 * a + 10 * b + c;
                    CHECK(gq_sampler_init(&s, V, temps[a], ks[b], ps[c], seed) == 0);
                    for (int d = 0; d < DRAWS; d++) {
                        const int32_t got = gq_sample(&s, logits, V);
                        const int32_t want = ref_sample(logits, V, temps[a], ks[b], ps[c],
                                                        temps[a] > 0 ? gq_philox_unit(seed, (uint64_t)d) : 0.0f, prob, idx);
                        checked++, differ += got != want;
                        if (got != want)
                            printf("differs: kind %d T %g k %d p %g draw %d: %d, reference %d\n", kind, temps[a], ks[b],
                                   ps[c], d, got, want);
                    }
                    gq_sampler_free(&s);
                }
    }
    printf("sampler vs the full-sort reference: %ld draws, %ld differ\n", checked, differ);
    CHECK(differ == 0);
    free(logits), free(prob), free(idx);
}

static void frequencies(void) {
    enum { V = 8, N = 200000 };
    const float logits[V] = {1.0f, 2.5f, -1.0f, 2.5f, 0.3f, 3.0f, -4.0f, 0.0f};
    const float T = 0.7f, top_p = 0.9f;
    const int top_k = 5;
    /* the kept set by hand: probabilities softmax(l / T), sorted, first 5, then the prefix to 0.9 */
    double p[V], sum = 0;
    for (int i = 0; i < V; i++)
        sum += p[i] = exp(logits[i] / T);
    int order[V];
    for (int i = 0; i < V; i++)
        order[i] = i;
    for (int i = 0; i < V; i++) /* selection sort: descending, ties by id */
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]] || (p[order[j]] == p[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j], order[j] = t;
            }
    int n = top_k;
    double c = 0, kept = 0;
    for (int i = 0; i < top_k; i++) {
        c += p[order[i]] / sum;
        if (c >= top_p) {
            n = i + 1;
            break;
        }
    }
    int in[V] = {0};
    for (int i = 0; i < n; i++)
        in[order[i]] = 1, kept += p[order[i]];
    gq_sampler s = {0};
    CHECK(gq_sampler_init(&s, V, T, top_k, top_p, 7) == 0);
    long hits[V] = {0};
    for (int d = 0; d < N; d++)
        hits[gq_sample(&s, logits, V)]++;
    gq_sampler_free(&s);
    double worst = 0;
    for (int i = 0; i < V; i++) {
        const double q = in[i] ? p[i] / kept : 0, sd = sqrt(N * q * (1 - q)) + 1e-9;
        const double z = fabs((double)hits[i] - N * q) / sd;
        if (!in[i]) CHECKF(hits[i] == 0, "token %d is outside the kept set but came %ld times", i, hits[i]);
        if (in[i]) worst = z > worst ? z : worst;
    }
    printf("frequencies of %d draws (V %d, T %g, top-k %d, top-p %g, %d kept): worst %.2f standard deviations\n", N, V,
           T, top_k, top_p, n, worst);
    CHECK(n == 3); /* the hand-worked set: tokens 5, 1, 3 reach 0.9 */
    CHECK(worst < 5.0);
}

static void greedy(void) {
    const float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 0.0f};
    gq_sampler s = {0};
    CHECK(gq_sampler_init(&s, 6, 0.0f, 3, 0.5f, 1) == 0);
    CHECK(gq_sample(&s, logits, 6) == 1); /* the first of two equal maxima */
    gq_sampler_free(&s);
}

int main(void) {
    gq_rng rng;
    gq_rng_seed(&rng, 11);
    same_as_reference(&rng);
    frequencies();
    greedy();
    return gq_test_finish("sample");
}
