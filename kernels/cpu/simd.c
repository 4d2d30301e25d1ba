/* simd: run-time choice among the compiled variants (see simd.h). */
#include "simd.h"

#include <stdlib.h>
#include <string.h>

extern const gq_simd_ops gq_simd_ops_scalar;
#if defined(__x86_64__)
extern const gq_simd_ops gq_simd_ops_avx2;
extern const gq_simd_ops gq_simd_ops_avx512;
#endif

const gq_simd_ops *gq_simd_variant(const char *name) {
    if (!strcmp(name, "scalar")) return &gq_simd_ops_scalar;
#if defined(__x86_64__)
    if (!strcmp(name, "avx2")) return &gq_simd_ops_avx2;
    if (!strcmp(name, "avx512")) return &gq_simd_ops_avx512;
#endif
    return NULL;
}

int gq_simd_supported(const char *name) {
    if (!strcmp(name, "scalar")) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

const gq_simd_ops *gq_simd(void) {
    /* chosen once; a data race here would only store the same pointer twice */
    static const gq_simd_ops *chosen;
    if (chosen) return chosen;
    const char *want = getenv("GQ_CPU_SIMD");
    const gq_simd_ops *ops = NULL;
    if (want && *want && gq_simd_supported(want)) ops = gq_simd_variant(want);
    if (!ops) {
        const char *order[] = {"avx512", "avx2", "scalar"};
        for (int i = 0; i < 3 && !ops; i++)
            if (gq_simd_supported(order[i])) ops = gq_simd_variant(order[i]);
    }
    chosen = ops;
    return ops;
}
