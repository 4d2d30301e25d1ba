/* sample: the next token from logits: greedy (temperature 0), or temperature + top-k + top-p
 * (nucleus) sampling with cuRAND's Philox4x32-10 stream of a seed (kernels/philox.h: draw j is
 * value j of the stream, so the GPU's sampler computes the same draws itself). The rule: probabilities softmax(logits /
 * T) (exp of the row kernels' SIMD table); tokens sorted by probability (descending, ties by id); keep the first top_k,
 * then the shortest prefix of those whose cumulative probability reaches top_p; draw u in [0, 1) times the kept mass
 * and return the first kept token whose cumulative mass exceeds it. Only the tokens that can be kept are sorted (a
 * one-pass histogram of the probabilities finds them), not the whole vocabulary. */
#ifndef GQ_INFER_SAMPLE_H
#define GQ_INFER_SAMPLE_H


#include <stdint.h>

typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: all */
    float top_p;       /* 1: all */
    uint64_t seed;  /* the Philox stream's */
    uint64_t draws; /* draws taken: the next is value `draws` of the stream */
    float *prob;   /* V scratch */
    int32_t *idx;  /* V scratch */
    uint32_t *cnt; /* GQ_SAMPLE_BUCKETS scratch: the histogram */
    double *mass;
} gq_sampler;

#define GQ_SAMPLE_BUCKETS 2048

/* scratch for a vocabulary of V (malloc'd once) */
int gq_sampler_init(gq_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed);
void gq_sampler_free(gq_sampler *s);
int32_t gq_sample(gq_sampler *s, const float *logits, int V);
/* The next uniform draw in [0, 1) (gq_philox_unit(seed, draws), then draws + 1): gq_sample takes
 * one per sampled token (none when greedy); the GPU's sampler computes the same one. */
float gq_sampler_draw(gq_sampler *s);
/* gq_sample with the uniform draw u01 in [0, 1) given. */
int32_t gq_sample_u(gq_sampler *s, const float *logits, int V, float u01);
/* How many tokens the rule sorts for these logits (the candidates; V without top-k / top-p). */
int gq_sample_candidates(gq_sampler *s, const float *logits, int V);
/* p[i] = exp((logits[i] - max) / T), unnormalized (the SIMD exp of kernels/cpu/simd.h) */
void gq_sample_probs(float *p, const float *logits, int V, float max, float temperature);

#endif
