/* bench_tokenizer: encode throughput of our GPT-2 tokenizer in MB/s, single-threaded and on
 * all cores, best of N runs; prints a table line per mode and one JSON line.
 * usage: bench_tokenizer TEXT_FILE [runs] [vocab_dir] */
#include "bpe.h"
#include "gq_error.h"
#include "gq_file.h"
#include "gq_progress.h"
#include "gq_sha256.h"

#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* sha256 of the ids as little-endian int32, to compare with another implementation's ids. */
static char ids_digest[65];

static double best_of(const gq_bpe *bpe, const uint8_t *text, size_t len, int threads, int runs, size_t *n_ids) {
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        gq_ids ids = {0};
        double t0 = gq_now();
        int rc = threads == 1 ? gq_bpe_encode(bpe, text, len, 0, &ids)
                              : gq_bpe_encode_parallel(bpe, text, len, 0, threads, &ids);
        double dt = gq_now() - t0;
        if (rc) {
            fprintf(stderr, "bench_tokenizer: %s\n", gq_errmsg(rc));
            exit(1);
        }
        *n_ids = ids.n;
        if (threads == 1 && r == 0) gq_sha256_hex(ids.ids, ids.n * sizeof *ids.ids, ids_digest);
        gq_ids_free(&ids);
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenizer TEXT_FILE [runs] [vocab_dir]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    gq_bpe *bpe;
    double t0 = gq_now();
    int rc = gq_bpe_load_dir(&bpe, argc > 3 ? argv[3] : NULL);
    double t_load = gq_now() - t0;
    uint8_t *text;
    size_t len;
    if (!rc) rc = gq_read_file(argv[1], &text, &len);
    if (rc) {
        fprintf(stderr, "bench_tokenizer: %s\n", gq_errmsg(rc));
        return 1;
    }
    int all = 1;
#ifdef _OPENMP
    all = omp_get_max_threads();
#endif
    size_t n1 = 0, nall = 0;
    double t1 = best_of(bpe, text, len, 1, runs, &n1);
    double tall = best_of(bpe, text, len, all, runs, &nall);
    printf("gpt2q   threads=1   %8.2f MB/s  (%zu bytes -> %zu tokens, best of %d, vocab load %.0f ms)\n",
           len / t1 / 1e6, len, n1, runs, t_load * 1e3);
    printf("gpt2q   threads=%-3d %8.2f MB/s  (speed-up %.2fx)\n", all, len / tall / 1e6, t1 / tall);
    printf("{\"impl\": \"gpt2q\", \"bytes\": %zu, \"tokens\": %zu, \"mbps_1\": %.3f, \"threads\": %d, \"mbps_all\": %.3f, "
           "\"same_tokens\": %s, \"ids_sha256\": \"%s\"}\n",
           len, n1, len / t1 / 1e6, all, len / tall / 1e6, n1 == nall ? "true" : "false", ids_digest);
    free(text);
    gq_bpe_free(bpe);
    return n1 == nall ? 0 : 1;
}
