/* sample: the next token from logits: greedy (temperature 0), or temperature + top-k + top-p
 * (nucleus) sampling with a seeded splitmix64 stream. */
#ifndef GQ_INFER_SAMPLE_H
#define GQ_INFER_SAMPLE_H

#include "gq_rng.h"

#include <stdint.h>

typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: all */
    float top_p;       /* 1: all */
    gq_rng rng;
    float *prob;  /* V scratch */
    int32_t *idx; /* V scratch */
} gq_sampler;

/* scratch for a vocabulary of V (malloc'd once) */
int gq_sampler_init(gq_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed);
void gq_sampler_free(gq_sampler *s);
int32_t gq_sample(gq_sampler *s, const float *logits, int V);

#endif
