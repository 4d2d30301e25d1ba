/* bench_train: a full training step (next batch, forward, backward, AdamW) of gpt2q on the
 * CPU, for a named config at a given B and T, after warm-up steps; prints ms/step, tokens/s,
 * the model FLOP/s (6 * params * tokens + attention), and the share of the machine's SGEMM
 * ceiling measured in the same process (OpenBLAS sgemm 2048^3, best of 3). One JSON line last.
 * usage: bench_train DATA.h5 CONFIG B T [steps] [warmup] */
#include "gpt2.h"
#include "gq_error.h"
#include "gq_progress.h"
#include "loader.h"
#include "train.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

static double sgemm_ceiling(void) {
    const int n = 2048;
    float *a = malloc(4ul * n * n), *b = malloc(4ul * n * n), *c = malloc(4ul * n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = 1e-3f * (float)(i % 7), b[i] = 1e-3f * (float)(i % 5);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t = gq_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = gq_now() - t;
        if (r && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * n / best;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_train DATA.h5 CONFIG B T [steps] [warmup]\n");
        return 2;
    }
    gq_train_opts o;
    gq_train_defaults(&o);
    int rc = gq_train_load_config(&o, argv[2]);
    int B = atoi(argv[3]), T = atoi(argv[4]), steps = argc > 5 ? atoi(argv[5]) : 10, warm = argc > 6 ? atoi(argv[6]) : 2;
    gq_gpt2 *m = NULL;
    gq_loader *L = NULL;
    const char *path = argv[1];
    gq_loader_config lc = {B, T, 1, 1, "train", 0};
    if (!rc) rc = gq_gpt2_create(&m, &o.model, gq_backend_cpu(), B, T);
    if (!rc) rc = gq_gpt2_init(m, 1);
    if (!rc) rc = gq_loader_open(&L, &path, 1, &lc);
    if (rc) {
        fprintf(stderr, "bench_train: %s\n", gq_errmsg(rc));
        return 1;
    }
    int32_t *in = malloc(sizeof(int32_t) * B * T), *tg = malloc(sizeof(int32_t) * B * T);
    double t_total = 0;
    float loss = 0;
    for (int s = 1; s <= warm + steps && !rc; s++) {
        double t0 = gq_now();
        float norm;
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_gpt2_zero_grad(m);
        if (!rc) rc = gq_gpt2_forward(m, in, tg, B, T, &loss);
        if (!rc) rc = gq_gpt2_backward(m, 1.0f);
        if (!rc) rc = gq_gpt2_grad_norm(m, &norm);
        if (!rc) rc = gq_gpt2_update(m, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, s, 1.0f);
        if (s > warm) t_total += gq_now() - t0;
    }
    if (rc) {
        fprintf(stderr, "bench_train: %s\n", gq_errmsg(rc));
        return 1;
    }
    const gq_gpt2_config *c = &m->cfg;
    double ms = t_total / steps * 1e3, tok_s = (double)B * T * steps / t_total;
    /* matmul FLOPs: 6 per parameter per token (wpe excluded: not a matmul), plus attention's
     * QK^T and AV: forward 2 * 2 * T * C per token per layer (causal half counted in full,
     * as the kernel computes it), times 3 with the backward */
    double n_matmul = (double)(m->n_params - (size_t)c->block_size * c->n_embd);
    double flop_tok = 6.0 * n_matmul + 3.0 * 4.0 * T * c->n_embd * c->n_layer;
    double flops = flop_tok * tok_s, ceiling = sgemm_ceiling();
    printf("gpt2q  %-10s B=%-2d T=%-4d %8.1f ms/step %9.1f tok/s  %6.1f GFLOP/s = %4.1f%% of sgemm %.1f GFLOP/s (loss %.3f)\n",
           argv[2], B, T, ms, tok_s, flops / 1e9, 100 * flops / ceiling, ceiling / 1e9, loss);
    printf("{\"impl\": \"gpt2q\", \"config\": \"%s\", \"B\": %d, \"T\": %d, \"ms_per_step\": %.2f, \"tokens_per_s\": %.1f, "
           "\"gflops\": %.2f, \"sgemm_gflops\": %.2f}\n",
           argv[2], B, T, ms, tok_s, flops / 1e9, ceiling / 1e9);
    free(in), free(tg);
    gq_loader_close(L);
    gq_gpt2_free(m);
    return 0;
}
