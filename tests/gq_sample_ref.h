/* gq_sample_ref: the sampling rule of infer/sample.h written the plain way (every token sorted),
 * as the reference for test_sample and the peer for bench_sample. */
#ifndef GQ_SAMPLE_REF_H
#define GQ_SAMPLE_REF_H

#include "sample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static const float *ref_prob_g;
static int ref_by_prob_desc(const void *a, const void *b) {
    float pa = ref_prob_g[*(const int32_t *)a], pb = ref_prob_g[*(const int32_t *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* prob, idx: V scratch each */
static int32_t ref_sample(const float *logits, int V, float temperature, int top_k, float top_p, float u01,
                          float *prob, int32_t *idx) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0.0f) return best;
    gq_sample_probs(prob, logits, V, logits[best], temperature); /* the sampler's exp (not what is tested) */
    double sum = 0;
    for (int i = 0; i < V; i++) {
        sum += prob[i];
        idx[i] = i;
    }
    const double inv = 1.0 / sum;
    for (int i = 0; i < V; i++)
        prob[i] = (float)(prob[i] * inv);
    int n = V;
    if ((top_k > 0 && top_k < V) || top_p < 1.0f) {
        ref_prob_g = prob;
        qsort(idx, (size_t)V, sizeof *idx, ref_by_prob_desc);
        if (top_k > 0 && top_k < n) n = top_k;
        if (top_p < 1.0f) {
            double c = 0;
            for (int i = 0; i < n; i++) {
                c += prob[idx[i]];
                if (c >= top_p) {
                    n = i + 1;
                    break;
                }
            }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++)
        total += prob[idx[i]];
    double u = (double)u01 * total, c = 0;
    for (int i = 0; i < n; i++) {
        c += prob[idx[i]];
        if (u < c) return idx[i];
    }
    return idx[n - 1];
}

#endif
