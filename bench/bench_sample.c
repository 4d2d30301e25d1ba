/* bench_sample: time to pick one token from GPT-2-sized logits (V = 50257), per sampling
 * setting: infer/sample.h's sampler vs the same rule with every token sorted (the peer, from
 * tests/gq_sample_ref.h), in the same process; both draw the same tokens (test_sample).
 *   bench_sample [--reps N] */
#include "gq_progress.h"
#include "gq_rng.h"
#include "gq_sample_ref.h"
#include "philox.h"
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    enum { V = 50257 };
    int reps = 50;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
    float *logits = malloc(sizeof(float) * V), *prob = malloc(sizeof(float) * V);
    int32_t *idx = malloc(sizeof(int32_t) * V);
    gq_rng r;
    gq_rng_seed(&r, 3);
    for (int i = 0; i < V; i++) /* LM-like: a broad body and a few strong candidates */
        logits[i] = 3.0f * (gq_rng_float(&r) + gq_rng_float(&r) + gq_rng_float(&r) - 1.5f) + (i % 1009 == 0 ? 9.0f : 0);
    const struct {
        float t;
        int k;
        float p;
    } cfg[] = {{0, 0, 1}, {0.8f, 0, 1}, {0.8f, 40, 1}, {0.8f, 0, 0.9f}, {0.8f, 40, 0.95f}, {1.0f, 0, 0.99f}};
    printf("bench_sample: V %d, %d tokens per setting, one thread\n", V, reps);
    printf("%-28s %12s %12s %8s\n", "setting", "gpt2q us", "full sort us", "ratio");
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        gq_sampler s = {0};
        if (gq_sampler_init(&s, V, cfg[c].t, cfg[c].k, cfg[c].p, 1)) return 1;
        double t0 = gq_now();
        long sink = 0;
        for (int k = 0; k < reps; k++)
            sink += gq_sample(&s, logits, V);
        const double ours = (gq_now() - t0) / reps;
        t0 = gq_now();
        for (int k = 0; k < reps; k++)
            sink -= ref_sample(logits, V, cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].t > 0 ? gq_philox_unit(1, (uint64_t)k) : 0.0f,
                              prob, idx);
        const double ref = (gq_now() - t0) / reps;
        char name[64];
        snprintf(name, sizeof name, "T %.1f top-k %d top-p %.2f", cfg[c].t, cfg[c].k, cfg[c].p);
        printf("%-28s %12.1f %12.1f %7.1fx%s\n", name, ours * 1e6, ref * 1e6, ref / ours,
               sink ? "  (tokens differ!)" : "");
        gq_sampler_free(&s);
    }
    free(logits), free(prob), free(idx);
    return 0;
}
