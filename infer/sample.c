/* sample: see sample.h. */
#include "sample.h"

#include "gq_error.h"
#include "philox.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int gq_sampler_init(gq_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->seed = seed, s->draws = 0;
    s->prob = malloc(sizeof(float) * (size_t)V);
    s->idx = malloc(sizeof(int32_t) * (size_t)V);
    s->cnt = malloc(sizeof(uint32_t) * GQ_SAMPLE_BUCKETS);
    s->mass = malloc(sizeof(double) * GQ_SAMPLE_BUCKETS);
    return s->prob && s->idx && s->cnt && s->mass ? GQ_OK : gq_errf(GQ_ENOMEM, "out of memory");
}

void gq_sampler_free(gq_sampler *s) { free(s->prob), free(s->idx), free(s->cnt), free(s->mass); }

void gq_sample_probs(float *p, const float *logits, int V, float max, float temperature) {
    const float inv = 1.0f / temperature;
    for (int i = 0; i < V; i++)
        p[i] = (logits[i] - max) * inv;
    gq_simd()->exp_scale(p, V, 0.0f, 1.0f);
}

static const float *g_prob;
static int by_prob_desc(const void *a, const void *b) {
    float pa = g_prob[*(const int32_t *)a], pb = g_prob[*(const int32_t *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Probability buckets: the top 11 bits of a non-negative float (8 exponent bits and 3 mantissa
 * bits), in the same order as the values. */
static inline int bucket(float p) {
    uint32_t b;
    memcpy(&b, &p, 4);
    return (int)(b >> 20);
}

/* The candidates that can make the top-k / top-p prefix of the tokens sorted by probability:
 * the buckets from the top down until they hold top_k tokens or top_p of the mass (plus a
 * margin of 1e-6 over the rounding of the sums), all their tokens, sorted. Returns how many. */
static int candidates(gq_sampler *s, int V) {
    uint32_t *cnt = s->cnt;
    double *mass = s->mass;
    memset(cnt, 0, sizeof *cnt * GQ_SAMPLE_BUCKETS), memset(mass, 0, sizeof *mass * GQ_SAMPLE_BUCKETS);
    for (int i = 0; i < V; i++) {
        const int b = bucket(s->prob[i]);
        cnt[b]++, mass[b] += s->prob[i];
    }
    const long want = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    long c = 0;
    double m = 0;
    int lo = GQ_SAMPLE_BUCKETS - 1;
    for (; lo > 0; lo--) {
        c += cnt[lo], m += mass[lo];
        if (c >= want || (s->top_p < 1.0f && m >= (double)s->top_p + 1e-6)) break;
    }
    int n = 0;
    for (int i = 0; i < V; i++)
        if (bucket(s->prob[i]) >= lo) s->idx[n++] = i;
    g_prob = s->prob; /* qsort has no context argument in C11; sampling is single-threaded */
    qsort(s->idx, (size_t)n, sizeof *s->idx, by_prob_desc);
    return n;
}

float gq_sampler_draw(gq_sampler *s) { return gq_philox_unit(s->seed, s->draws++); }

int32_t gq_sample(gq_sampler *s, const float *logits, int V) {
    return gq_sample_u(s, logits, V, s->temperature <= 0.0f ? 0.0f : gq_sampler_draw(s));
}

/* 1 if top-k or top-p cuts the vocabulary (the tokens are then ranked) */
static int truncates(const gq_sampler *s, int V) { return (s->top_k > 0 && s->top_k < V) || s->top_p < 1.0f; }

/* The greedy pick; with a temperature, also the normalized probabilities in s->prob. */
static int32_t probs(gq_sampler *s, const float *logits, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0.0f) return best;
    gq_sample_probs(s->prob, logits, V, logits[best], s->temperature);
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += s->prob[i];
    const double inv = 1.0 / sum;
    for (int i = 0; i < V; i++)
        s->prob[i] = (float)(s->prob[i] * inv);
    return best;
}

int gq_sample_candidates(gq_sampler *s, const float *logits, int V) {
    if (s->temperature <= 0.0f) return 1;
    probs(s, logits, V);
    return truncates(s, V) ? candidates(s, V) : V;
}

int32_t gq_sample_u(gq_sampler *s, const float *logits, int V, float u01) {
    const int32_t best = probs(s, logits, V);
    if (s->temperature <= 0.0f) return best;
    int n = V;
    if (truncates(s, V)) {
        n = candidates(s, V);
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
    } else {
        for (int i = 0; i < V; i++)
            s->idx[i] = i;
    }
    double total = 0;
    for (int i = 0; i < n; i++)
        total += s->prob[s->idx[i]];
    double u = (double)u01 * total, c = 0;
    for (int i = 0; i < n; i++) {
        c += s->prob[s->idx[i]];
        if (u < c) return s->idx[i];
    }
    return s->idx[n - 1];
}
