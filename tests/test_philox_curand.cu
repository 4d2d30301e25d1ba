/* test_philox_curand: kernels/philox.h against cuRAND itself. cuRAND's device API is header
 * code (curand_kernel.h); with its QUALIFIERS macro set to __host__ __device__ it compiles for
 * the host as well, so this runs cuRAND's own Philox4x32-10 (curand_init + curand) on the CPU,
 * no GPU needed: for several seeds and offsets (the counter's carry from its low word to its
 * high word included) value i of our stream equals curand() after curand_init(seed, 0, i), and
 * our uniform draw is the top 24 bits of the same word that curand_uniform maps to (0, 1]. */
#define QUALIFIERS static inline __host__ __device__
#include <curand_kernel.h>

#include "gq_test.h"
#include "philox.h"

#include <stdint.h>

int main(void) {
    const unsigned long long seeds[] = {0, 1, 42, 0x0123456789abcdefull, 0xd1b54a32d192ed03ull, ~0ull};
    const unsigned long long offsets[] = {0, 1, 3, 4, 1001, (4ull << 32) - 6, (1ull << 34) | 7, 0xffffffffffff0000ull};
    long n = 0, bad = 0, bad_u = 0;
    for (unsigned long long seed : seeds)
        for (unsigned long long off : offsets) {
            curandStatePhilox4_32_10_t st;
            curand_init(seed, 0, off, &st);
            for (unsigned long long i = off; i < off + 64; i++, n++) {
                const unsigned int want = curand(&st);
                if (gq_philox_u32(seed, i) != want && bad++ < 8)
                    fprintf(stderr, "seed %llx value %llu: ours %08x, cuRAND %08x\n", seed, i, gq_philox_u32(seed, i),
                            want);
            }
            /* the uniform: cuRAND's curand_uniform of the same word is word * 2^-32 + 2^-33 */
            curand_init(seed, 0, off, &st);
            const float cu = curand_uniform(&st);
            const unsigned int w = gq_philox_u32(seed, off);
            bad_u += cu != (float)w * 2.3283064e-10f + 2.3283064e-10f / 2.0f ||
                     gq_philox_unit(seed, off) != (float)(w >> 8) / 16777216.0f;
        }
    printf("  %ld values of cuRAND's Philox4x32-10 (curand_init(seed, 0, offset) + curand()) compared: %ld differ\n", n,
           bad);
    CHECK(n == 6 * 8 * 64);
    CHECK(bad == 0);
    CHECK(bad_u == 0);
    return gq_test_finish("test_philox_curand");
}
