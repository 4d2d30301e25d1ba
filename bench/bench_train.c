/* bench_train: a full training step (next batch, forward, backward, AdamW) of gpt2q on the
 * CPU, for a named config at a given B and T, after warm-up steps; prints ms/step, tokens/s,
 * the model FLOP/s (6 * params * tokens + attention), and the share of the machine's SGEMM
 * ceiling measured in the same process (OpenBLAS sgemm 2048^3, best of 3). Then the step's loss
 * and its gradient on the model's logits, the two ops against the fused one (the trainer's),
 * best of 5 each, alternating. Then QAT's own work in a step (fake-quant refresh, the
 * straight-through backward) with absmax and with learned scales (-lsq). One JSON line last.
 * usage: bench_train DATA.h5 CONFIG B T [steps] [warmup] */
#include "gpt2.h"
#include "gq_error.h"
#include "gq_progress.h"
#include "loader.h"
#include "train.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the loss and its gradient over N rows of Vp logits: crossentropy_forward + _backward, and
 * crossentropy_forward_backward; best of 5 (the logits restored before each run) */
static void ce_times(const gq_backend *be, int N, int V, int Vp, double *sep, double *fused) {
    const size_t n = (size_t)N * Vp;
    float *x0 = malloc(n * 4), *x = malloc(n * 4), *losses = malloc(N * 4), *lse = malloc(N * 4);
    int32_t *tg = malloc(N * 4);
    for (size_t i = 0; i < n; i++) x0[i] = 1e-3f * (float)(i % 9973) - 5.0f;
    for (int i = 0; i < N; i++) tg[i] = (int32_t)((i * 7919) % V);
    *sep = *fused = 1e30;
    for (int r = 0; r < 5; r++) {
        memcpy(x, x0, n * 4);
        double t = gq_now();
        be->crossentropy_forward(losses, lse, x, tg, N, V, Vp);
        be->crossentropy_backward(x, lse, tg, 1.0f / N, N, V, Vp);
        t = gq_now() - t;
        *sep = t < *sep ? t : *sep;
        memcpy(x, x0, n * 4);
        t = gq_now();
        be->crossentropy_forward_backward(losses, lse, x, tg, 1.0f / N, N, V, Vp);
        t = gq_now() - t;
        *fused = t < *fused ? t : *fused;
    }
    free(x0), free(x), free(losses), free(lse), free(tg);
}

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

/* QAT's own work in a step for every linear and the tied embedding: the fake-quant refresh of
 * the working weights, the straight-through (and, with learned scales, the scales') backward and
 * AdamW; ms, best of `reps` after one warm-up */
static double qat_ms(const gq_gpt2_config *cfg, int B, int T, const char *format, int reps) {
    gq_gpt2 *m = NULL;
    gq_qplan plan;
    double best = 1e30;
    int rc = gq_gpt2_create(&m, cfg, gq_backend_cpu(), B, T);
    if (!rc) rc = gq_gpt2_init(m, 1);
    if (!rc) rc = gq_qplan_build(&plan, format, "all", 0, cfg->n_layer);
    if (!rc) rc = gq_gpt2_qat_enable(m, &plan);
    for (int r = 0; r <= reps && !rc; r++) {
        double t = gq_now();
        rc = gq_gpt2_refresh_weights(m, r + 1);
        if (!rc) rc = gq_gpt2_qat_mask_grads(m);
        if (!rc && m->n_lsq) /* (the scales' AdamW: what -lsq adds to the update) */
            rc = m->be->adamw_update(m->lsq_mem, m->lsq_mem + m->n_lsq, m->lsq_mem + 2 * m->n_lsq,
                                     m->lsq_mem + 3 * m->n_lsq, m->n_lsq, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, r + 1, 1.0f);
        t = gq_now() - t;
        if (r && t < best) best = t;
    }
    if (rc) fprintf(stderr, "bench_train: QAT %s: %s\n", format, gq_errmsg(rc));
    gq_gpt2_free(m);
    return rc ? -1 : best * 1e3;
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
        if (!rc) rc = gq_gpt2_forward_backward(m, in, tg, B, T, 1.0f, &loss);
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
    double ce_sep, ce_fused;
    ce_times(m->be, B * T, c->vocab_size, c->padded_vocab_size, &ce_sep, &ce_fused);
    printf("gpt2q  cross-entropy %d x %d: forward + backward %.1f ms, fused %.1f ms: %.2fx\n", B * T,
           c->padded_vocab_size, ce_sep * 1e3, ce_fused * 1e3, ce_sep / ce_fused);
    /* QAT's own work per step, absmax scales against learned ones (-lsq), same process */
    const double q_abs = qat_ms(c, B, T, "int3", 5), q_lsq = qat_ms(c, B, T, "int3-lsq", 5);
    printf("gpt2q  QAT int3 (every linear + embedding), refresh + STE backward: absmax scales %.1f ms, learned "
           "(-lsq, + the scales' AdamW) %.1f ms: %.2fx; a step above is %.1f ms\n",
           q_abs, q_lsq, q_lsq / q_abs, ms);
    printf("{\"impl\": \"gpt2q\", \"config\": \"%s\", \"B\": %d, \"T\": %d, \"ms_per_step\": %.2f, \"tokens_per_s\": %.1f, "
           "\"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"ce_separate_ms\": %.2f, \"ce_fused_ms\": %.2f}\n",
           argv[2], B, T, ms, tok_s, flops / 1e9, ceiling / 1e9, ce_sep * 1e3, ce_fused * 1e3);
    free(in), free(tg);
    gq_loader_close(L);
    gq_gpt2_free(m);
    return 0;
}
