/* gpt2q-infer: run a model on the CPU. This first version has `eval`, which computes the
 * mean loss and perplexity of a float checkpoint, an HF/llm.c import or a quantized export
 * (dequantized to fp32 by kernels/quant.h: the reference path that the packed kernels will be
 * tested against) over a token file split.
 *   gpt2q-infer eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--json]
 * Windows: non-overlapping full-context windows (T = the model's block_size unless --seq),
 * every target scored once (stride = T); whole batches only. */
#include "gpt2.h"
#include "gq_error.h"
#include "gq_progress.h"
#include "h5io.h"
#include "loader.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PROG "gpt2q-infer"

static int fail(int rc) {
    fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
    return 1;
}

static int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *split = "val";
    long max_tokens = 0;
    int B = 8, T = 0, json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(a, "--split") && i + 1 < argc) split = argv[++i];
        else if (!strcmp(a, "--max-tokens") && i + 1 < argc) max_tokens = atol(argv[++i]);
        else if (!strcmp(a, "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(a, "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(a, "--json")) json = 1;
        else if (a[0] != '-' && !model) model = a;
        else {
            fprintf(stderr, PROG ": eval: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!model || !data || B < 1 || T < 0) {
        fprintf(stderr, "usage: " PROG " eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--seq T] [--json]\n");
        return 2;
    }
    gq_gpt2_config cfg;
    gq_gpt2 *m = NULL;
    gq_loader *L = NULL;
    int rc = gq_weights_config(model, &cfg);
    if (!rc && !T) T = cfg.block_size;
    if (!rc && T > cfg.block_size) rc = gq_errf(GQ_EINVAL, "--seq %d exceeds the model's block_size %d", T, cfg.block_size);
    if (!rc) rc = gq_gpt2_create(&m, &cfg, gq_backend_cpu(), B, T);
    if (!rc) rc = gq_weights_load(model, m);
    gq_loader_config lc = {B, T, 0, 0, split, 0};
    if (!rc) rc = gq_loader_open(&L, &data, 1, &lc);
    if (!rc && gq_loader_vocab_size(L) > cfg.vocab_size)
        rc = gq_errf(GQ_EVOCAB, "%s: vocabulary of %d tokens, the model has %d", data, gq_loader_vocab_size(L), cfg.vocab_size);
    if (rc) {
        gq_gpt2_free(m);
        gq_loader_close(L);
        return fail(rc);
    }
    uint64_t batches = gq_loader_windows(L) / (uint64_t)B;
    if (max_tokens > 0 && (uint64_t)max_tokens / ((uint64_t)B * T) < batches) batches = (uint64_t)max_tokens / ((uint64_t)B * T);
    if (!batches) batches = 1;
    int32_t *in = malloc(sizeof(int32_t) * B * T), *tg = malloc(sizeof(int32_t) * B * T);
    double sum = 0, t0 = gq_now();
    gq_progress prog;
    gq_progress_init(&prog, stderr);
    for (uint64_t b = 0; b < batches && !rc; b++) {
        float l = 0;
        rc = gq_loader_next(L, in, tg);
        if (!rc) rc = gq_gpt2_forward(m, in, tg, B, T, &l);
        sum += l;
        gq_progress_update(&prog, "eval: tokens", (double)(b + 1) * B * T, (double)batches * B * T, "tok");
    }
    gq_progress_finish(&prog);
    double loss = sum / (double)batches, secs = gq_now() - t0;
    struct stat st;
    long long size = stat(model, &st) == 0 ? (long long)st.st_size : -1;
    /* the model's own bytes: a quantized export is all model; a checkpoint also holds the
     * optimizer state, so count its fp32 parameters */
    int kind = 0;
    gq_weights_kind(model, &kind);
    char fmt[64] = "";
    gq_h5r *h = NULL;
    if (kind == GQ_WEIGHTS_GPT2Q && gq_h5r_open(&h, model) == GQ_OK) {
        gq_h5r_attr_str(h, "/", "format", fmt, sizeof fmt);
        gq_h5r_close(h);
    }
    long long model_bytes = !strcmp(fmt, "gpt2q-quantized") ? size : (long long)(m->n_params * sizeof(float));
    if (!rc) {
        if (json)
            printf("{\"model\": \"%s\", \"data\": \"%s\", \"split\": \"%s\", \"loss\": %.6f, \"perplexity\": %.4f, "
                   "\"tokens\": %llu, \"seq\": %d, \"file_bytes\": %lld, \"model_bytes\": %lld, \"seconds\": %.3f}\n",
                   model, data, split, loss, exp(loss), (unsigned long long)batches * B * T, T, size, model_bytes, secs);
        else
            printf("%s: %s split of %s: loss %.4f, perplexity %.2f over %llu tokens (windows of %d, stride %d) in %.1f s\n",
                   model, split, data, loss, exp(loss), (unsigned long long)batches * B * T, T, T, secs);
    }
    free(in), free(tg);
    gq_loader_close(L);
    gq_gpt2_free(m);
    return rc ? fail(rc) : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: " PROG " eval MODEL --data tokens.h5 [--split val] [--max-tokens N] [--batch B] [--seq T] [--json]\n"
              "  MODEL: gpt2q checkpoint, quantized export (gpt2q-export), HF model.safetensors or llm.c .bin\n"
              "  (generate, bench and compare arrive with the packed quantized kernels)\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    fprintf(stderr, PROG ": unknown command '%s' (eval)\n", argv[1]);
    return 2;
}
