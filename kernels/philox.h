/* philox: cuRAND's counter-based generator Philox4x32-10 (Salmon, Moraes, Dror and Shaw,
 * "Parallel random numbers: as easy as 1, 2, 3", SC 2011), one definition for the CPU and CUDA
 * backends. Value i of the stream with a 64-bit seed is word i % 4 of the block function applied
 * to the counter (i / 4 as two 32-bit words, 0, 0) under the key (seed's low word, its high word):
 * what curand() gives on the device after curand_init(seed, 0, i, &state) (subsequence 0, offset
 * i). tests/test_philox_curand.cu runs cuRAND's own device code on the host against it, and
 * tests/test_philox.c checks the block function against the paper's
 * known-answer vectors. Counter-based: any value costs the same, so a kernel thread, a CPU
 * thread or a resumed run finds its value from (seed, i) alone. */
#ifndef GQ_PHILOX_H
#define GQ_PHILOX_H

#include "gq_hd.h"

#include <stdint.h>

typedef struct {
    uint32_t v[4];
} gq_u32x4;

/* the block function: 10 rounds, the key bumped between them */
GQ_HD gq_u32x4 gq_philox4x32_10(gq_u32x4 c, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        if (r) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
        const uint64_t p0 = (uint64_t)0xD2511F53u * c.v[0], p1 = (uint64_t)0xCD9E8D57u * c.v[2];
        const gq_u32x4 n = {{(uint32_t)(p1 >> 32) ^ c.v[1] ^ k0, (uint32_t)p1, (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1,
                             (uint32_t)p0}};
        c = n;
    }
    return c;
}

/* values 4q .. 4q + 3 of the stream `seed` */
GQ_HD gq_u32x4 gq_philox_block(uint64_t seed, uint64_t q) {
    const gq_u32x4 c = {{(uint32_t)q, (uint32_t)(q >> 32), 0u, 0u}};
    return gq_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* value i of the stream `seed` */
GQ_HD uint32_t gq_philox_u32(uint64_t seed, uint64_t i) { return gq_philox_block(seed, i >> 2).v[i & 3]; }

/* value i as a uniform float in [0, 1) with 24 random bits (its top 24: every such float is exact;
 * cuRAND's curand_uniform maps the same word to (0, 1] instead) */
GQ_HD float gq_philox_unit(uint64_t seed, uint64_t i) {
    return (float)(gq_philox_u32(seed, i) >> 8) * (1.0f / 16777216.0f);
}

#endif
