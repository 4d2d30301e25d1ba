/* sround: stochastic rounding of fp32 to bf16 (the value stays fp32, its low 16 bits zero),
 * with a counter-based hash for the randomness, so that the CPU and CUDA backends produce the
 * same bits for the same (seed, index) and a resumed run repeats them exactly. Round up in
 * magnitude with probability (dropped bits) / 2^16: unbiased, E[sr(x)] = x. */
#ifndef GQ_SROUND_H
#define GQ_SROUND_H

#include "gq_hd.h"

#include <stdint.h>
#include <string.h>

/* 32 random bits for element i of stream seed (splitmix64's finalizer over a Weyl sequence) */
GQ_HD uint32_t gq_sr_bits(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* x rounded to a bf16 value, stochastically; inf and NaN unchanged */
GQ_HD float gq_bf16_sr(float x, uint32_t r) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7f800000u) == 0x7f800000u) return x;
    b = (b + (r & 0xffffu)) & 0xffff0000u;
    memcpy(&x, &b, 4);
    return x;
}

#endif
