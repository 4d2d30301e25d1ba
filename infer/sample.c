/* sample: see sample.h. */
#include "sample.h"

#include "gq_error.h"

#include <math.h>
#include <stdlib.h>

int gq_sampler_init(gq_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    gq_rng_seed(&s->rng, seed);
    s->prob = malloc(sizeof(float) * (size_t)V);
    s->idx = malloc(sizeof(int32_t) * (size_t)V);
    return s->prob && s->idx ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
}

void gq_sampler_free(gq_sampler *s) {
    free(s->prob);
    free(s->idx);
}

static const float *g_prob;
static int by_prob_desc(const void *a, const void *b) {
    float pa = g_prob[*(const int32_t *)a], pb = g_prob[*(const int32_t *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t gq_sample(gq_sampler *s, const float *logits, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0.0f) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        s->prob[i] = expf((logits[i] - logits[best]) / s->temperature);
        sum += s->prob[i];
        s->idx[i] = i;
    }
    for (int i = 0; i < V; i++)
        s->prob[i] = (float)(s->prob[i] / sum);
    int n = V;
    if ((s->top_k > 0 && s->top_k < V) || s->top_p < 1.0f) {
        g_prob = s->prob; /* qsort has no context argument in C11; sampling is single-threaded */
        qsort(s->idx, (size_t)V, sizeof *s->idx, by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        if (s->top_p < 1.0f) {
            double c = 0;
            for (int i = 0; i < n; i++) {
                c += s->prob[s->idx[i]];
                if (c >= s->top_p) {
                    n = i + 1;
                    break;
                }
            }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++)
        total += s->prob[s->idx[i]];
    double u = (double)gq_rng_float(&s->rng) * total, c = 0;
    for (int i = 0; i < n; i++) {
        c += s->prob[s->idx[i]];
        if (u < c) return s->idx[i];
    }
    return s->idx[n - 1];
}
