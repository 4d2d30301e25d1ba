/* config: the option table behind config files and gpt2q-train's flags. */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include "gq_error.h"
#include "gq_file.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_INT, T_U64, T_DBL, T_STR, T_BOOL };

typedef struct {
    const char *key;
    int type;
    size_t offset;
    double min, max;
    const char *help;
} opt_desc;

#define O(f) offsetof(gq_train_opts, f)
static const opt_desc table[] = {
    {"n_layer", T_INT, O(model.n_layer), 1, 256, "transformer blocks"},
    {"n_head", T_INT, O(model.n_head), 1, 256, "attention heads"},
    {"n_embd", T_INT, O(model.n_embd), 1, 16384, "channels"},
    {"block_size", T_INT, O(model.block_size), 1, 65536, "longest context (positions)"},
    {"vocab_size", T_INT, O(model.vocab_size), 2, 65536, "vocabulary (GPT-2: 50257)"},
    {"data", T_STR, O(data), 0, 0, "token file (gpt2q-data prepare) or llm.c shards a.bin,b.bin"},
    {"data_jsonl", T_STR, O(data_jsonl), 0, 0,
     "text --data files as JSON Lines: this string field of each line is one document (e.g. text; default: plain "
     "text, each file one document)"},
    {"data_jsonl_prompt", T_STR, O(data_jsonl_prompt), 0, 0,
     "with data_jsonl: this field of each line is the prompt, data_jsonl's the completion; the prompt's tokens are left "
     "out of the loss (training and validation score the completions)"},
    {"out", T_STR, O(out), 0, 0, "run folder: checkpoints, train.jsonl, loss.svg"},
    {"init", T_STR, O(init), 0, 0,
     "start from weights: gpt2q checkpoint, HF model.safetensors, llm.c .bin, or a folder (transformers', or a run "
     "folder: its newest checkpoint)"},
    {"batch", T_INT, O(batch), 1, 1 << 20,
     "sequences per micro-batch (B); max: the most that fit the GPU's free memory"},
    {"seq", T_INT, O(seq), 1, 65536, "tokens per sequence (T)"},
    {"grad_accum", T_INT, O(grad_accum), 1, 1 << 20, "micro-batches per optimizer step"},
    {"steps", T_INT, O(steps), 1, 1 << 30, "optimizer steps in total"},
    {"lr", T_DBL, O(lr), 0, 10, "peak learning rate"},
    {"min_lr_frac", T_DBL, O(min_lr_frac), 0, 1, "final learning rate as a fraction of lr"},
    {"warmup", T_INT, O(warmup), 0, 1 << 30, "linear warmup steps"},
    {"weight_decay", T_DBL, O(weight_decay), 0, 10, "AdamW decoupled decay (2-D weights only)"},
    {"beta1", T_DBL, O(beta1), 0, 1, "AdamW beta1"},
    {"beta2", T_DBL, O(beta2), 0, 1, "AdamW beta2"},
    {"eps", T_DBL, O(eps), 0, 1, "AdamW epsilon"},
    {"clip", T_DBL, O(clip), 0, 1e9, "global gradient-norm clip (0 = off)"},
    {"seed", T_U64, O(seed), 0, 0, "initialisation and data-order seed"},
    {"shuffle", T_BOOL, O(shuffle), 0, 1, "shuffle training windows each epoch (1) or read in order (0)"},
    {"eval_every", T_INT, O(eval_every), 0, 1 << 30, "steps between validation losses (0 = only at the end)"},
    {"eval_batches", T_INT, O(eval_batches), 1, 1 << 20, "validation micro-batches per evaluation"},
    {"final_eval", T_BOOL, O(final_eval), 0, 1,
     "validation loss over the whole split at the end, and QAT's float / RTN PTQ / QAT table (0 = none: the "
     "caller scores the checkpoint and export itself)"},
    {"sample_every", T_INT, O(sample_every), 0, 1 << 30, "steps between greedy samples (0 = only at the end)"},
    {"sample_len", T_INT, O(sample_len), 0, 4096, "tokens per greedy sample"},
    {"ckpt_every", T_INT, O(ckpt_every), 0, 1 << 30, "steps between checkpoints (0 = only at the end)"},
    {"keep", T_INT, O(keep), 1, 1 << 20, "checkpoints kept in the run folder"},
    {"log_every", T_INT, O(log_every), 1, 1 << 30, "steps between plain log lines when not on a terminal"},
    {"stop_after", T_INT, O(stop_after), 0, 1 << 30, "stop (with a checkpoint) after this many steps in this run"},
    {"threads", T_INT, O(threads), 0, 4096, "CPU threads (0 = all)"},
    {"device", T_STR, O(device), 0, 0, "cpu | cuda | auto (the GPU when there is one)"},
    {"distill", T_DBL, O(distill), 0, 1,
     "distillation: targets = (1 - w) data + w teacher's softmax (0 = off); for QAT fine-tuning"},
    {"teacher", T_STR, O(teacher), 0, 0, "distillation teacher's weights (default: --init)"},
    {"precision", T_STR, O(precision), 0, 0,
     "fp32 | tf32 | bf16: matrix products on the GPU (bf16: weights stochastically rounded each step)"},
    {"qat", T_STR, O(qat), 0, 0, "quantization-aware training: int8|q8_0|int4[-gN]|int4a|int3|int2|nf4[-dq]|fp4 (-mse: searched scales, -lsq: learned ones) or PATTERN=FORMAT,..."},
    {"qat_layers", T_STR, O(qat_layers), 0, 0, "QAT selection: all|all-but-lm_head|lm_head|last4-attn|qkv or globs (h.8-11.attn.*)"},
    {"qat_group", T_INT, O(qat_group), 0, 16384, "QAT group size (0 = the format's default)"},
    {"qat_act", T_STR, O(qat_act), 0, 0,
     "QAT activations: f32 | int8 (W8A8: the selected products' inputs as int8 per block of 32, as the runner's "
     "integer kernels take them)"},
    {"qat_start_step", T_INT, O(qat_start_step), 0, 1 << 30, "first step trained with fake-quant (0 = from the start)"},
    {"qat_lsq_lr", T_DBL, O(qat_lsq_lr), 0, 1000,
     "learned scales (-lsq formats): their learning rate as a multiple of the weights' (no weight decay)"},
    {"export", T_STR, O(exports), 0, 0,
     "PTQ exports at the end, formats separated by spaces ('int8 int4 nf4-dq int3-gptq', as gpt2q-export "
     "--format): each written as model-<format>.h5 in --out and scored on the validation split; -gptq "
     "calibrates on --data's training split"},
    {"export_layers", T_STR, O(export_layers), 0, 0,
     "the exports' selection: all|all-but-lm_head|lm_head|last4-attn|qkv or globs (default: every linear weight)"},
};
#undef O

void gq_train_defaults(gq_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = (gq_gpt2_config){4, 4, 256, 128, 50257, 0};
    o->batch = 8;
    o->seq = 128;
    o->grad_accum = 1;
    o->steps = 1000;
    o->warmup = 100;
    o->shuffle = 1;
    o->lr = 1e-3;
    o->min_lr_frac = 0.1;
    o->weight_decay = 0.1;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->clip = 1.0;
    o->seed = 1337;
    o->eval_every = 100;
    o->eval_batches = 20;
    o->final_eval = 1;
    o->sample_every = 0;
    o->sample_len = 32;
    o->ckpt_every = 0;
    o->keep = 3;
    o->log_every = 10;
    snprintf(o->out, sizeof o->out, "runs/default");
    snprintf(o->device, sizeof o->device, "auto");
    snprintf(o->precision, sizeof o->precision, "fp32");
    snprintf(o->qat_act, sizeof o->qat_act, "f32");
    o->qat_lsq_lr = 1.0;
}

int gq_train_set(gq_train_opts *o, const char *key, const char *value) {
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        const opt_desc *d = &table[i];
        if (strcmp(d->key, key)) continue;
        char *dst = (char *)o + d->offset, *end;
        errno = 0;
        switch (d->type) {
        case T_STR:
            if (strlen(value) >= 4096) return gq_errf(GQ_EINVAL, "%s: value too long", key);
            strcpy(dst, value);
            return GQ_OK;
        case T_U64: {
            unsigned long long v = strtoull(value, &end, 10);
            if (!*value || *end || errno) return gq_errf(GQ_EINVAL, "%s = '%s': expected a non-negative integer", key, value);
            *(uint64_t *)dst = v;
            return GQ_OK;
        }
        case T_DBL: {
            double v = strtod(value, &end);
            if (!*value || *end || errno || !isfinite(v) || v < d->min || v > d->max)
                return gq_errf(GQ_EINVAL, "%s = '%s': expected a number in [%g, %g]", key, value, d->min, d->max);
            *(double *)dst = v;
            return GQ_OK;
        }
        default: {
            if (d->offset == offsetof(gq_train_opts, batch) && !strcmp(value, "max")) { /* resolved by the trainer */
                o->batch = 0;
                return GQ_OK;
            }
            long v = strtol(value, &end, 10);
            if (!*value || *end || errno || v < d->min || v > d->max)
                return gq_errf(GQ_EINVAL, "%s = '%s': expected an integer in [%.0f, %.0f]", key, value, d->min, d->max);
            *(int *)dst = (int)v;
            return GQ_OK;
        }
        }
    }
    return gq_errf(GQ_EINVAL, "unknown option '%s'", key);
}

void gq_train_print_opts(const gq_train_opts *o, FILE *f) {
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        const opt_desc *d = &table[i];
        const char *src = (const char *)o + d->offset;
        switch (d->type) {
        case T_STR: fprintf(f, "%s = %s\n", d->key, src); break;
        case T_U64: fprintf(f, "%s = %llu\n", d->key, (unsigned long long)*(const uint64_t *)src); break;
        case T_DBL: fprintf(f, "%s = %.17g\n", d->key, *(const double *)src); break;
        default: fprintf(f, "%s = %d\n", d->key, *(const int *)src); break;
        }
    }
}

/* One option's value as text (print_opts' spelling). */
static void value_text(const opt_desc *d, const gq_train_opts *o, char *buf, size_t cap) {
    const char *src = (const char *)o + d->offset;
    switch (d->type) {
    case T_STR: snprintf(buf, cap, "%s", src); break;
    case T_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)src); break;
    case T_DBL: snprintf(buf, cap, "%g", *(const double *)src); break;
    default: snprintf(buf, cap, "%d", *(const int *)src); break;
    }
}

void gq_train_print_help(FILE *f) {
    gq_train_opts *o = malloc(sizeof *o);
    if (!o) return;
    gq_train_defaults(o);
    const int indent = 26, width = 100;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        const opt_desc *d = &table[i];
        char flag[96], val[96], text[1024];
        int n = snprintf(flag, sizeof flag, "  --%s", d->key);
        for (char *p = flag + 4; *p; p++)
            if (*p == '_') *p = '-';
        value_text(d, o, val, sizeof val);
        snprintf(text, sizeof text, "%s%s%s%s", d->help, val[0] ? " (default: " : "", val, val[0] ? ")" : "");
        fputs(flag, f);
        const char *w = text;
        if (n >= indent - 1) fprintf(f, "\n%*s", indent, ""); /* a long flag: its text on the next line */
        else fprintf(f, "%*s", indent - n, "");
        int col = indent;
        while (*w) { /* word by word, wrapped at `width` */
            size_t len = strcspn(w, " ");
            if (col > indent && col + 1 + (int)len > width) {
                fprintf(f, "\n%*s", indent, "");
                col = indent;
            } else if (col > indent) {
                fputc(' ', f);
                col++;
            }
            fprintf(f, "%.*s", (int)len, w);
            col += (int)len;
            w += len;
            while (*w == ' ') w++;
        }
        fputc('\n', f);
    }
    free(o);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = '\0';
    return s;
}

int gq_train_parse_config(gq_train_opts *o, const char *text, size_t len, const char *name) {
    int line_no = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line_no++;
        char line[8192];
        size_t n = e - i < sizeof line - 1 ? e - i : sizeof line - 1;
        memcpy(line, text + i, n);
        line[n] = '\0';
        i = e + 1;
        if (memchr(line, '\0', n)) return gq_errf(GQ_EFORMAT, "%s:%d: NUL byte in a config file", name, line_no);
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) return gq_errf(GQ_EFORMAT, "%s:%d: expected 'key = value'", name, line_no);
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        int rc = gq_train_set(o, key, value);
        if (rc) return gq_errf(rc, "%s:%d: %s", name, line_no, gq_errmsg(rc));
    }
    return GQ_OK;
}

int gq_train_load_config(gq_train_opts *o, const char *path_or_name) {
    char path[4400];
    snprintf(path, sizeof path, "%s", path_or_name);
    if (!strchr(path_or_name, '/') && !gq_file_exists(path)) {
        char exe[4096];
        gq_exe_dir(exe, sizeof exe);
        const char *dirs[] = {"/../share/gpt2q/configs", "/../configs", "/../../configs"};
        int found = 0;
        for (size_t i = 0; i < 3 && !found; i++) {
            snprintf(path, sizeof path, "%s%s/%s.cfg", exe, dirs[i], path_or_name);
            found = gq_file_exists(path);
        }
#ifdef GQ_SOURCE_CONFIG_DIR
        if (!found) {
            snprintf(path, sizeof path, "%s/%s.cfg", GQ_SOURCE_CONFIG_DIR, path_or_name);
            found = gq_file_exists(path);
        }
#endif
        if (!found) return gq_errf(GQ_ENOENT, "config '%s': no such file and no configs/%s.cfg", path_or_name, path_or_name);
    }
    uint8_t *text;
    size_t len;
    int rc = gq_read_file(path, &text, &len);
    if (rc) return rc;
    rc = gq_train_parse_config(o, (const char *)text, len, path);
    free(text);
    return rc;
}

double gq_train_lr(const gq_train_opts *o, int t) {
    if (t <= o->warmup) return o->lr * t / (o->warmup ? o->warmup : 1);
    double min_lr = o->lr * o->min_lr_frac;
    if (o->steps <= o->warmup) return o->lr;
    double ratio = (double)(t - o->warmup) / (o->steps - o->warmup);
    if (ratio > 1) ratio = 1;
    return min_lr + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (o->lr - min_lr);
}
