/* sround: stochastic rounding of fp32 to bf16 (the value stays fp32, its low 16 bits zero), with
 * cuRAND's Philox4x32-10 stream for the randomness (philox.h): element i of a stream seeded with
 * seed draws value i, so the CPU and CUDA backends produce the same bits and a resumed run repeats
 * them exactly. Round up in magnitude with probability (dropped bits) / 2^16: unbiased, E[sr(x)] = x. */
#ifndef GQ_SROUND_H
#define GQ_SROUND_H

#include "gq_hd.h"
#include "philox.h"

#include <stdint.h>
#include <string.h>

/* 32 random bits for element i of stream seed: value i of cuRAND's Philox stream with that seed
 * (kernels take four at a time: gq_philox_block(seed, i / 4) holds elements 4 (i / 4) ..) */
GQ_HD uint32_t gq_sr_bits(uint64_t seed, uint64_t i) { return gq_philox_u32(seed, i); }

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
