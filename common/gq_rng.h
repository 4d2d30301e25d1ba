/* gq_rng: a small, serializable PRNG (splitmix64) for data order and initialisation.
 * Its whole state is one uint64, so checkpoints save and restore it exactly. */
#ifndef GQ_RNG_H
#define GQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} gq_rng;

static inline uint64_t gq_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void gq_rng_seed(gq_rng *r, uint64_t seed) { r->state = seed; }

static inline uint64_t gq_rng_u64(gq_rng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return gq_mix64(r->state);
}

/* Uniform integer in [0, n), n > 0, without modulo bias (Lemire's method). */
static inline uint64_t gq_rng_below(gq_rng *r, uint64_t n) {
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        __uint128_t m = (__uint128_t)gq_rng_u64(r) * n;
        if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
    }
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline float gq_rng_float(gq_rng *r) { return (float)(gq_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

#endif
