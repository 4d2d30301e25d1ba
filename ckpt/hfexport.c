/* hfexport: see hfexport.h. */
#define _POSIX_C_SOURCE 200809L
#include "hfexport.h"

#include "gq_error.h"
#include "gq_file.h"
#include "quant.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLMC_MAGIC 20240326
#define GPT2_VOCAB 50257

/* a growable text buffer (the safetensors header, config.json) */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)k + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
}

/* One tensor as HF holds it */
typedef struct {
    char name[128];
    int i;              /* gpt2_layout index */
    size_t rows, cols;  /* ours: (out, in); cols 0 for vectors; rows = V (unpadded) for wte */
    int conv1d;         /* written transposed: (in, out) */
    size_t src;         /* offset of its first value in the parameter array */
    uint64_t begin, end; /* data offsets */
} htensor;

static int by_name(const void *a, const void *b) {
    return strcmp(((const htensor *)a)->name, ((const htensor *)b)->name);
}

static const char *dtype_name(int dtype) {
    return dtype == GQ_HF_F16 ? "F16" : dtype == GQ_HF_BF16 ? "BF16" : "F32";
}

/* The values of t in HF's order and dtype, into out (numel x elem bytes). */
static int encode(const float *params, const htensor *t, int dtype, uint8_t *out, const char *path) {
    const size_t R = t->rows, K = t->cols ? t->cols : 1;
    for (size_t a = 0; a < (t->conv1d ? K : R); a++)
        for (size_t b = 0; b < (t->conv1d ? R : K); b++) {
            const float x = t->conv1d ? params[t->src + b * K + a] : params[t->src + a * K + b];
            const size_t j = a * (t->conv1d ? R : K) + b;
            if (dtype == GQ_HF_F32) {
                memcpy(out + 4 * j, &x, 4);
                continue;
            }
            const uint16_t h = dtype == GQ_HF_F16 ? gq_f32_to_f16(x) : gq_f32_to_bf16(x);
            if (dtype == GQ_HF_F16 && (h & 0x7c00u) == 0x7c00u)
                return gq_errf(GQ_ERANGE, "%s: %s holds %g, beyond fp16's range (65504): use --dtype bf16 or f32", path,
                               t->name, (double)x);
            out[2 * j] = (uint8_t)(h & 0xff), out[2 * j + 1] = (uint8_t)(h >> 8);
        }
    return GQ_OK;
}

/* model.safetensors into tmp */
static int write_safetensors(const float *params, const gq_gpt2_config *c, int dtype, const char *tmp,
                             const char *path, size_t *bytes) {
    const int nt = 4 + 12 * c->n_layer;
    htensor *ts = calloc((size_t)nt, sizeof *ts);
    if (!ts) return gq_errf(GQ_ENOMEM, "out of memory");
    const size_t elem = dtype == GQ_HF_F32 ? 4 : 2;
    size_t src = 0, maxn = 0;
    int k = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(c, i, &rows, &cols);
        const int layers = gq_gpt2_tensor(i)->per_layer ? c->n_layer : 1;
        for (int l = 0; l < layers; l++, k++) {
            htensor *t = &ts[k];
            char base[96];
            gq_gpt2_tensor_name(i, l, base, sizeof base);
            snprintf(t->name, sizeof t->name, "transformer.%s", base);
            t->i = i, t->rows = i == GQ_GPT2_WTE ? (size_t)c->vocab_size : rows, t->cols = cols, t->src = src;
            t->conv1d = i == GQ_GPT2_QKVW || i == GQ_GPT2_ATTPROJW || i == GQ_GPT2_FCW || i == GQ_GPT2_FCPROJW;
            src += rows * (cols ? cols : 1);
            const size_t n = t->rows * (cols ? cols : 1);
            maxn = n > maxn ? n : maxn;
        }
    }
    qsort(ts, (size_t)nt, sizeof *ts, by_name); /* (the safetensors library's order for one dtype) */
    sbuf h = {0};
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int j = 0; j < nt; j++) {
        htensor *t = &ts[j];
        t->begin = off, t->end = off + t->rows * (t->cols ? t->cols : 1) * elem, off = t->end;
        if (t->cols)
            sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu,%zu],\"data_offsets\":[%llu,%llu]}", t->name,
                      dtype_name(dtype), t->conv1d ? t->cols : t->rows, t->conv1d ? t->rows : t->cols,
                      (unsigned long long)t->begin, (unsigned long long)t->end);
        else
            sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu],\"data_offsets\":[%llu,%llu]}", t->name,
                      dtype_name(dtype), t->rows, (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    sb_printf(&h, "}");
    while (!h.oom && h.n % 8) sb_printf(&h, " ");
    int rc = h.oom ? gq_errf(GQ_ENOMEM, "out of memory") : GQ_OK;
    uint8_t *buf = rc ? NULL : malloc(maxn * elem);
    if (!rc && !buf) rc = gq_errf(GQ_ENOMEM, "out of memory");
    FILE *f = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !f) rc = gq_errf(GQ_EIO, "%s: cannot create it (directory not writable?)", path);
    uint8_t len8[8];
    for (int b = 0; b < 8; b++)
        len8[b] = (uint8_t)((uint64_t)h.n >> (8 * b));
    if (!rc && (fwrite(len8, 1, 8, f) != 8 || fwrite(h.p, 1, h.n, f) != h.n))
        rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", path);
    for (int j = 0; j < nt && !rc; j++) {
        const size_t n = (size_t)(ts[j].end - ts[j].begin);
        rc = encode(params, &ts[j], dtype, buf, path);
        if (!rc && fwrite(buf, 1, n, f) != n) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", path);
    }
    if (f && fclose(f) && !rc) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", path);
    *bytes = 8 + h.n + off;
    free(buf), free(h.p), free(ts);
    return rc;
}

/* config.json as save_pretrained writes it (keys sorted, indent 2) */
static int config_json(const gq_gpt2_config *c, int dtype, sbuf *b) {
    const int eot = c->vocab_size > 50256 ? 50256 : c->vocab_size - 1;
    sb_printf(b,
              "{\n"
              "  \"activation_function\": \"gelu_new\",\n"
              "  \"architectures\": [\n"
              "    \"GPT2LMHeadModel\"\n"
              "  ],\n"
              "  \"attn_pdrop\": 0.0,\n"
              "  \"bos_token_id\": %d,\n"
              "  \"embd_pdrop\": 0.0,\n"
              "  \"eos_token_id\": %d,\n"
              "  \"initializer_range\": 0.02,\n"
              "  \"layer_norm_epsilon\": 1e-05,\n"
              "  \"model_type\": \"gpt2\",\n"
              "  \"n_embd\": %d,\n"
              "  \"n_head\": %d,\n"
              "  \"n_inner\": null,\n"
              "  \"n_layer\": %d,\n"
              "  \"n_positions\": %d,\n"
              "  \"reorder_and_upcast_attn\": false,\n"
              "  \"resid_pdrop\": 0.0,\n"
              "  \"scale_attn_by_inverse_layer_idx\": false,\n"
              "  \"scale_attn_weights\": true,\n"
              "  \"tie_word_embeddings\": true,\n"
              "  \"torch_dtype\": \"%s\",\n"
              "  \"use_cache\": true,\n"
              "  \"vocab_size\": %d\n"
              "}\n",
              eot, eot, c->n_embd, c->n_head, c->n_layer, c->block_size,
              dtype == GQ_HF_F16 ? "float16" : dtype == GQ_HF_BF16 ? "bfloat16" : "float32", c->vocab_size);
    return b->oom ? gq_errf(GQ_ENOMEM, "out of memory") : GQ_OK;
}

enum { F_MODEL, F_CONFIG, F_TOKCFG, F_VOCAB, F_MERGES, N_FILES };

int gq_hf_export(const float *params, const gq_gpt2_config *cfg, const char *dir, const gq_hf_opts *o,
                 int *files_out, size_t *bytes_out) {
    static const char *names[N_FILES] = {"model.safetensors", "config.json", "tokenizer_config.json", "vocab.json",
                                         "merges.txt"};
    static const char *vocab_src[N_FILES] = {NULL, NULL, NULL, "encoder.json", "vocab.bpe"};
    const int dtype = o ? o->dtype : GQ_HF_F32;
    const int tokenizer = o && o->vocab_dir && cfg->vocab_size == GPT2_VOCAB;
    const int nf = tokenizer ? N_FILES : F_CONFIG + 1;
    char path[N_FILES][4200], tmp[N_FILES][4300];
    int made[N_FILES] = {0};
    size_t total = 0;
    int rc = gq_mkdir_p(dir);
    for (int k = 0; k < nf; k++) {
        snprintf(path[k], sizeof path[k], "%s/%s", dir, names[k]);
        gq_temp_path(path[k], tmp[k], sizeof tmp[k]);
    }
    /* every file to its temp first */
    for (int k = 0; k < nf && !rc; k++) {
        made[k] = 1;
        if (k == F_MODEL) {
            size_t n = 0;
            rc = write_safetensors(params, cfg, dtype, tmp[k], path[k], &n);
            total += n;
        } else if (k == F_CONFIG || k == F_TOKCFG) {
            sbuf b = {0};
            if (k == F_CONFIG)
                rc = config_json(cfg, dtype, &b);
            else {
                sb_printf(&b,
                          "{\n  \"add_prefix_space\": false,\n  \"bos_token\": \"<|endoftext|>\",\n"
                          "  \"eos_token\": \"<|endoftext|>\",\n  \"model_max_length\": %d,\n"
                          "  \"tokenizer_class\": \"GPT2Tokenizer\",\n  \"unk_token\": \"<|endoftext|>\"\n}\n",
                          cfg->block_size);
                rc = b.oom ? gq_errf(GQ_ENOMEM, "out of memory") : GQ_OK;
            }
            if (!rc) rc = gq_write_temp(path[k], tmp[k], b.p, b.n);
            total += b.n;
            free(b.p);
        } else {
            char src[4300];
            snprintf(src, sizeof src, "%s/%s", o->vocab_dir, vocab_src[k]);
            uint8_t *data;
            size_t len;
            rc = gq_read_file(src, &data, &len);
            if (!rc) {
                rc = gq_write_temp(path[k], tmp[k], data, len), total += len;
                free(data);
            }
        }
    }
    /* then into place */
    for (int k = 0; k < nf && !rc; k++) {
        rc = gq_commit_file(tmp[k], path[k]);
        made[k] = 0;
    }
    for (int k = 0; k < nf; k++)
        if (made[k]) remove(tmp[k]);
    if (files_out) *files_out = rc ? 0 : nf;
    if (bytes_out) *bytes_out = total;
    return rc;
}

int gq_llmc_export(const float *params, const gq_gpt2_config *cfg, const char *path, size_t *bytes_out) {
    gq_gpt2_config c = *cfg;
    int rc = gq_gpt2_config_check(&c);
    if (rc) return gq_errf(rc, "%s: %s", path, gq_errmsg(rc));
    int32_t hdr[256] = {LLMC_MAGIC, 3, c.block_size, c.vocab_size, c.n_layer, c.n_head, c.n_embd, c.padded_vocab_size};
    const size_t n = gq_gpt2_n_params(&c);
    char tmp[4300];
    gq_temp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "wb");
    if (!f) return gq_errf(GQ_EIO, "%s: cannot create it (directory missing or not writable?)", path);
    rc = fwrite(hdr, 4, 256, f) == 256 && fwrite(params, 4, n, f) == n
             ? GQ_OK
             : gq_errf(GQ_EIO, "%s: writing failed (disk full?)", path);
    if (fclose(f) && !rc) rc = gq_errf(GQ_EIO, "%s: writing failed (disk full?)", path);
    if (!rc)
        rc = gq_commit_file(tmp, path);
    else
        remove(tmp);
    if (bytes_out) *bytes_out = 1024 + 4 * n;
    return rc;
}
