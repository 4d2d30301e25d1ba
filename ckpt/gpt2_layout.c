/* gpt2_layout: see gpt2_layout.h. */
#include "gpt2_layout.h"

#include "gq_error.h"

#include <stdio.h>
#include <string.h>

static const gq_gpt2_tensor_info tensor_info[GQ_GPT2_N_TENSORS] = {
    {"wte.weight", 0, 1},
    {"wpe.weight", 0, 1},
    {"h.%d.ln_1.weight", 1, 0},
    {"h.%d.ln_1.bias", 1, 0},
    {"h.%d.attn.c_attn.weight", 1, 1},
    {"h.%d.attn.c_attn.bias", 1, 0},
    {"h.%d.attn.c_proj.weight", 1, 1},
    {"h.%d.attn.c_proj.bias", 1, 0},
    {"h.%d.ln_2.weight", 1, 0},
    {"h.%d.ln_2.bias", 1, 0},
    {"h.%d.mlp.c_fc.weight", 1, 1},
    {"h.%d.mlp.c_fc.bias", 1, 0},
    {"h.%d.mlp.c_proj.weight", 1, 1},
    {"h.%d.mlp.c_proj.bias", 1, 0},
    {"ln_f.weight", 0, 0},
    {"ln_f.bias", 0, 0},
};

const gq_gpt2_tensor_info *gq_gpt2_tensor(int i) { return &tensor_info[i]; }

void gq_gpt2_tensor_shape(const gq_gpt2_config *cfg, int i, size_t *rows, size_t *cols) {
    size_t C = (size_t)cfg->n_embd;
    static const int r_mul[GQ_GPT2_N_TENSORS] = {0, 0, 1, 1, 3, 3, 1, 1, 1, 1, 4, 4, 1, 1, 1, 1};
    static const int c_mul[GQ_GPT2_N_TENSORS] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 0, 0, 0};
    *rows = i == 0 ? (size_t)cfg->padded_vocab_size : i == 1 ? (size_t)cfg->block_size : r_mul[i] * C;
    *cols = c_mul[i] * C;
}

int gq_gpt2_config_check(gq_gpt2_config *c) {
    if (c->n_layer < 1 || c->n_layer > 256) return gq_errf(GQ_EINVAL, "n_layer = %d, expected 1..256", c->n_layer);
    if (c->n_head < 1) return gq_errf(GQ_EINVAL, "n_head = %d, expected >= 1", c->n_head);
    if (c->n_embd < 1 || c->n_embd % c->n_head)
        return gq_errf(GQ_EINVAL, "n_embd = %d must be a positive multiple of n_head = %d", c->n_embd, c->n_head);
    if (c->block_size < 1) return gq_errf(GQ_EINVAL, "block_size = %d, expected >= 1", c->block_size);
    if (c->vocab_size < 2 || c->vocab_size > 65536)
        return gq_errf(GQ_EINVAL, "vocab_size = %d, expected 2..65536 (token ids are uint16)", c->vocab_size);
    if (!c->padded_vocab_size) c->padded_vocab_size = (c->vocab_size + 127) / 128 * 128;
    if (c->padded_vocab_size < c->vocab_size)
        return gq_errf(GQ_EINVAL, "padded_vocab_size = %d is below vocab_size = %d", c->padded_vocab_size,
                       c->vocab_size);
    return GQ_OK;
}

void gq_gpt2_tensor_name(int i, int l, char *buf, size_t size) { snprintf(buf, size, tensor_info[i].hf_name, l); }

size_t gq_gpt2_tensor_numel(const gq_gpt2_config *cfg, int i) {
    size_t r, c;
    gq_gpt2_tensor_shape(cfg, i, &r, &c);
    return r * (c ? c : 1) * (tensor_info[i].per_layer ? (size_t)cfg->n_layer : 1);
}

int gq_gpt2_n_tensor_refs(const gq_gpt2_config *cfg) {
    int n = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++)
        n += tensor_info[i].per_layer ? cfg->n_layer : 1;
    return n;
}

void gq_gpt2_tensor_refs(const gq_gpt2_config *cfg, gq_gpt2_tensor_ref *out) {
    size_t off = 0;
    int k = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        size_t rows, cols;
        gq_gpt2_tensor_shape(cfg, i, &rows, &cols);
        const int layers = tensor_info[i].per_layer ? cfg->n_layer : 1;
        for (int l = 0; l < layers; l++, k++) {
            out[k] = (gq_gpt2_tensor_ref){i, l, rows, cols, off, ""};
            gq_gpt2_tensor_name(i, l, out[k].name, sizeof out[k].name);
            off += rows * (cols ? cols : 1);
        }
    }
}

size_t gq_gpt2_n_params(const gq_gpt2_config *cfg) {
    size_t n = 0;
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++)
        n += gq_gpt2_tensor_numel(cfg, i);
    return n;
}

int gq_gpt2_shape_of(const gq_gpt2_config *cfg, const char *name, int *rows, int *cols) {
    for (int i = 0; i < GQ_GPT2_N_TENSORS; i++) {
        int layers = tensor_info[i].per_layer ? cfg->n_layer : 1;
        for (int l = 0; l < layers; l++) {
            char n[160];
            gq_gpt2_tensor_name(i, l, n, sizeof n);
            if (strcmp(n, name)) continue;
            size_t r, c;
            gq_gpt2_tensor_shape(cfg, i, &r, &c);
            *rows = (int)r;
            *cols = (int)c;
            return 0;
        }
    }
    return 1;
}
