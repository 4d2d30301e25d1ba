/* test_philox: kernels/philox.h, the Philox4x32-10 stream that stochastic rounding and the
 * samplers draw from.
 *   - the block function against the known-answer vectors of Salmon et al. (Random123's
 *     kat_vectors: philox4x32 with 10 rounds, three counter / key pairs);
 *   - the stream's layout: value i is word i % 4 of the block of counter i / 4, the counter's
 *     high word carrying from the low one (indices around 2^34), the key the seed's two words;
 *   - the uniform draw: the top 24 bits, in [0, 1), exact, and its mean and spread over 2^16 draws;
 *   - stochastic rounding (sround.h) draws value base + i for element i: the CPU op's output for
 *     any base and length (the four-at-a-time loop's edges) equals the element-wise definition.
 * cuRAND's own device code, run on the host, is the reference of test_philox_curand.cu. */
#include "cpu_ops.h"
#include "gq_test.h"
#include "philox.h"
#include "sround.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static void kat(void) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } v[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        gq_u32x4 c;
        memcpy(c.v, v[k].ctr, sizeof c.v);
        const gq_u32x4 r = gq_philox4x32_10(c, v[k].key[0], v[k].key[1]);
        for (int j = 0; j < 4; j++)
            CHECKF(r.v[j] == v[k].out[j], "vector %zu word %d: %08x, want %08x", k, j, r.v[j], v[k].out[j]);
    }
}

static void layout(void) {
    const uint64_t seeds[] = {0, 1, 0x0123456789abcdefull, ~0ull};
    const uint64_t starts[] = {0, 5, (1ull << 34) - 9, 0xfffffffffffff000ull};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            for (uint64_t i = starts[b]; i < starts[b] + 40; i++) {
                const uint64_t q = i / 4;
                const gq_u32x4 c = {{(uint32_t)q, (uint32_t)(q >> 32), 0, 0}};
                const uint32_t want = gq_philox4x32_10(c, (uint32_t)seeds[a], (uint32_t)(seeds[a] >> 32)).v[i % 4];
                CHECK(gq_philox_u32(seeds[a], i) == want);
                CHECK(gq_philox_block(seeds[a], q).v[i % 4] == want);
            }
    /* the first value of seed 0 is the first known-answer word */
    CHECK(gq_philox_u32(0, 0) == 0x6627e8d5u);
    /* seeds that differ in the high word only give other streams */
    CHECK(gq_philox_u32(1ull << 32, 0) != gq_philox_u32(0, 0));
}

static void uniform(void) {
    enum { N = 1 << 16 };
    double sum = 0, sq = 0;
    int bad = 0;
    for (uint64_t i = 0; i < N; i++) {
        const float u = gq_philox_unit(7, i);
        bad += !(u >= 0.0f && u < 1.0f) || u != (float)(gq_philox_u32(7, i) >> 8) / 16777216.0f;
        sum += u, sq += (double)u * u;
    }
    CHECK(bad == 0);
    const double mean = sum / N, var = sq / N - mean * mean;
    printf("  uniform over %d draws: mean %.5f (1/2), variance %.5f (1/12 = %.5f)\n", N, mean, var, 1.0 / 12);
    CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / N));
    CHECK(fabs(var - 1.0 / 12) < 0.002);
    CHECK(gq_philox_unit(0, 0) == (float)(0x6627e8d5u >> 8) / 16777216.0f);
}

static void sround_stream(void) {
    enum { N = 67 };
    float in[N], out[N];
    for (int i = 0; i < N; i++) in[i] = 1.0f + (float)i / 97.0f;
    int bad = 0;
    for (uint64_t base = 0; base < 9; base++)
        for (size_t n = 0; n <= N; n += (n < 9 ? 1 : 29)) {
            for (int i = 0; i < N; i++) out[i] = -1.0f;
            CHECK(gq_cpu_round_bf16_sr(out, in, n, 99, base) == 0);
            for (size_t i = 0; i < N; i++) {
                const float want = i < n ? gq_bf16_sr(in[i], gq_philox_u32(99, base + i)) : -1.0f;
                bad += memcmp(&out[i], &want, 4) != 0;
            }
        }
    CHECKF(bad == 0, "%d elements differ from value base + i of the stream (or were written past n)", bad);
}

int main(void) {
    kat();
    layout();
    uniform();
    sround_stream();
    return gq_test_finish("test_philox");
}
