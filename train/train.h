/* train: training options (one key table shared by config files and command-line flags) and
 * the training loop: data, schedule, accumulation, clipping, evaluation, greedy samples,
 * checkpoints with bit-exact resume, JSONL log and loss chart. */
#ifndef GQ_TRAIN_H
#define GQ_TRAIN_H

#include "gpt2.h"
#include "loader.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    gq_gpt2_config model;
    char data[4096]; /* token file, or llm.c shards separated by commas */
    char data_jsonl[4096]; /* text --data as JSON Lines: the field of each line that is a document ("" = plain text) */
    char data_jsonl_prompt[4096]; /* with data_jsonl: each line's prompt field, left out of the loss ("" = none) */
    char out[4096];
    char init[4096]; /* weights to start from (gpt2q checkpoint, HF safetensors, llm.c .bin) */
    int resume;
    int batch, seq, grad_accum, steps, warmup, shuffle;
    double lr, min_lr_frac, weight_decay, beta1, beta2, eps, clip;
    uint64_t seed;
    int eval_every, eval_batches, final_eval, sample_every, sample_len, ckpt_every, keep, log_every, stop_after, threads;
    /* QAT: a format ("int4", "nf4-dq", or rules "mlp.*=int4,attn.*=int8"), the weights it
     * applies to (qplan.h's patterns and presets), a group size override, and the first step
     * that trains with fake-quant (0 = from the start) */
    char qat[4096], qat_layers[4096];
    int qat_group, qat_start_step;
    char qat_act[4096]; /* f32 | int8 (W8A8: the selected products' inputs fake-quantized too) */
    double qat_lsq_lr;  /* learned scales (-lsq): learning rate as a multiple of the weights' */
    char device[4096];    /* cpu | cuda | auto (the GPU when there is one) */
    char precision[4096]; /* fp32 | tf32 | bf16 (matrix products; bf16 adds stochastic rounding) */
    /* knowledge distillation: the weight w of a teacher's soft targets (0 = off) and the
     * teacher's weights (default: --init) */
    double distill;
    char teacher[4096];
    /* PTQ exports of the final checkpoint (gpt2q-export's formats separated by spaces; each
     * written as model-<format>.h5 in `out` and scored on the validation split) and their
     * selection (qplan.h's presets / patterns; "" = every linear weight) */
    char exports[4096], export_layers[4096];
} gq_train_opts;

void gq_train_defaults(gq_train_opts *o);
/* Set one option by key (config-file spelling: "lr", "n_layer", "grad_accum", ...).
 * GQ_EINVAL with a message for unknown keys or bad values. */
int gq_train_set(gq_train_opts *o, const char *key, const char *value);
/* Parse "key = value" lines ('#' comments); errors name `name` and the line. */
int gq_train_parse_config(gq_train_opts *o, const char *text, size_t len, const char *name);
/* A config file path, or a name looked up as configs/<name>.cfg (beside the program, in the
 * source tree). */
int gq_train_load_config(gq_train_opts *o, const char *path_or_name);
/* Every option as its flag, what it does and its default, wrapped for a terminal. */
void gq_train_print_help(FILE *f);
/* Print every key with its value, "key = value" per line (the format the parser reads). */
void gq_train_print_opts(const gq_train_opts *o, FILE *f);

/* The learning rate at optimizer step t (1-based): linear warmup to lr, then cosine to
 * lr * min_lr_frac at `steps`. */
double gq_train_lr(const gq_train_opts *o, int t);

/* Model FLOPs of a training step per token (forward and backward): 6 per parameter plus the
 * attention's 12 L C T (llm.c's estimate, and bench/torch_train_gpu.py's for PyTorch). */
double gq_train_flops_per_token(size_t n_params, const gq_gpt2_config *c, int T);
/* A GPU's dense datasheet peak for a precision (fp32, tf32, bf16) in FLOP/s, by its name as
 * CUDA reports it ("NVIDIA H100 80GB HBM3"); 0 where not known. GQ_PEAK_TFLOPS (a number)
 * overrides it. MFU = FLOPs per token x tokens/s / this. */
double gq_train_peak_flops(const char *gpu_name, const char *precision);

typedef struct {
    int64_t step;           /* optimizer steps done */
    gq_loader_state loader; /* training data position */
    double tokens;          /* tokens trained on */
} gq_train_state;

/* Checkpoints (HDF5, atomic): config, params, AdamW m and v, /state, /train (the options). */
int gq_ckpt_save(const char *path, const gq_gpt2 *m, const gq_train_state *st, const gq_train_opts *o);
/* Load params + optimizer state + state + options from a checkpoint into a model created with
 * the checkpoint's config. */
int gq_ckpt_load(const char *path, gq_gpt2 *m, gq_train_state *st, gq_train_opts *o);
/* Read the options stored in a checkpoint (for --resume before the model exists). */
int gq_ckpt_load_opts(const char *path, gq_train_opts *o);
/* The learned scales of QAT with -lsq (/qat/{scales,m,v}/<name>) into a model whose QAT is
 * enabled: *found = 1 if the checkpoint has them (all of the model's -lsq tensors), 0 if it has
 * none (a run that had not started QAT when it was saved); a partial or misshapen set is an
 * error naming the file. */
int gq_ckpt_load_lsq(const char *path, gq_gpt2 *m, int *found);
/* Newest complete checkpoint in a run folder ("" and GQ_ENOENT if none). */
int gq_ckpt_latest(const char *dir, char *path, size_t size, int64_t *step);

/* Run training as the options say. Returns a gq code; the message names the problem. */
int gq_train_run(gq_train_opts *o);

#endif
