/* gpt2q-train: train or fine-tune GPT-2 on the CPU. Options come from, in order: defaults, a
 * config (--config tiny | path), the checkpoint (--resume), and the command line; every
 * config key is also a flag (--grad-accum 4 == grad_accum = 4). */
#include "gq_error.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "gpt2q-train"

static void help(void) {
    puts("usage: " PROG " --data tokens.h5 [--config tiny|small|gpt2-124m|FILE] [--out runs/x]\n"
         "                   [--steps N] [--batch B] [--seq T] [--lr LR] [--init WEIGHTS] [--resume] [...]\n"
         "\n"
         "  --config NAME|FILE  named config from configs/ or a file of 'key = value' lines\n"
         "  --resume            continue the newest checkpoint in --out (bit-exact); its options\n"
         "                      apply, then the flags given here (e.g. a larger --steps)\n"
         "  --init FILE         start from weights: gpt2q checkpoint, HF model.safetensors\n"
         "                      (config.json beside it), llm.c .bin, or a folder (transformers', or a\n"
         "                      run folder: its newest checkpoint); the architecture is the file's\n"
         "  --print-config      print the effective options and exit\n"
         "Every option; a config file sets the same ones as 'key = value' lines (n_layer = 4):");
    gq_train_print_help(stdout);
    puts("\nOutputs in --out: ckpt-<step>.h5 (last `keep`), train.jsonl (one line per step), loss.svg;\n"
         "a QAT run: model-<format>.h5 and qat_report.json; --export: model-<format>.h5 and exports.json.");
}

static int fail(int rc) {
    fprintf(stderr, PROG ": error: %s\n", gq_errmsg(rc));
    return 1;
}

int main(int argc, char **argv) {
    gq_train_opts o;
    gq_train_defaults(&o);
    const char *config = NULL;
    int resume = 0, print_config = 0;
    /* pass 1: config, resume, out */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help();
            return 0;
        }
        if (!strcmp(argv[i], "--resume")) resume = 1;
        else if (!strcmp(argv[i], "--print-config")) print_config = 1;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) i++;
        else {
            fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    int rc = config ? gq_train_load_config(&o, config) : GQ_OK;
    if (rc) return fail(rc);
    /* pass 2: flags (out is needed to find the checkpoint) */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--resume") || !strcmp(argv[i], "--print-config")) continue;
            if (!strcmp(argv[i], "--config")) {
                i++;
                continue;
            }
            char key[128];
            snprintf(key, sizeof key, "%s", argv[i] + 2);
            for (char *p = key; *p; p++)
                if (*p == '-') *p = '_';
            rc = gq_train_set(&o, key, argv[++i]);
            if (rc) {
                fprintf(stderr, PROG ": %s (see --help)\n", gq_errmsg(rc));
                return 2;
            }
        }
        if (pass == 0 && resume) {
            char path[4400];
            int64_t step;
            rc = gq_ckpt_latest(o.out, path, sizeof path, &step);
            if (!rc) rc = gq_ckpt_load_opts(path, &o);
            if (rc) return fail(rc);
            o.stop_after = 0; /* a stop is per invocation; the flags below may set it again */
        } else {
            break;
        }
    }
    o.resume = resume;
    if (print_config) {
        gq_train_print_opts(&o, stdout);
        return 0;
    }
    if (!o.data[0]) {
        fprintf(stderr, PROG ": --data is required (see --help)\n");
        return 2;
    }
    rc = gq_train_run(&o);
    return rc ? fail(rc) : 0;
}
