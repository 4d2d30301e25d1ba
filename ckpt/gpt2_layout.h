/* gpt2_layout: GPT-2's architecture as files see it: the config, the 16 parameter tensors
 * (HF names, per-layer or not, shapes) and their canonical order, which is the order of a
 * gpt2q parameter array (tensor by tensor, layers in order, weights (out, in) as nn.Linear,
 * the token embedding padded to Vp rows and tied to the LM head). Shared by train/ (the
 * model), infer/ (the runner) and ckpt/ (import, export). */
#ifndef GQ_GPT2_LAYOUT_H
#define GQ_GPT2_LAYOUT_H

#include <stddef.h>

typedef struct {
    int n_layer, n_head, n_embd, block_size, vocab_size;
    int padded_vocab_size; /* 0: vocab_size rounded up to a multiple of 128 */
} gq_gpt2_config;

enum { GQ_GPT2_N_TENSORS = 16 };
/* indices (the table's order, gpt2_layout.c) of the tensors that are products' weights */
enum { GQ_GPT2_WTE = 0, GQ_GPT2_QKVW = 4, GQ_GPT2_ATTPROJW = 6, GQ_GPT2_FCW = 10, GQ_GPT2_FCPROJW = 12 };

/* Static description of tensor i: HF GPT-2 name (with %d for the layer), whether it repeats
 * per layer, its per-layer shape (rows, cols; cols == 0 for vectors), and AdamW decay. */
typedef struct {
    const char *hf_name;
    int per_layer;
    int decay;
} gq_gpt2_tensor_info;
const gq_gpt2_tensor_info *gq_gpt2_tensor(int i);
/* Per-layer shape of tensor i for a config: rows and cols (cols 0 = vector). */
void gq_gpt2_tensor_shape(const gq_gpt2_config *cfg, int i, size_t *rows, size_t *cols);

/* Fill padded_vocab_size if 0 and check the config; errors say which field is wrong. */
int gq_gpt2_config_check(gq_gpt2_config *cfg);
/* Shape of a parameter by name under cfg (cols 0 for vectors); nonzero if no such name. */
int gq_gpt2_shape_of(const gq_gpt2_config *cfg, const char *name, int *rows, int *cols);
/* Name of tensor i, layer l ("h.3.attn.c_attn.weight"). */
void gq_gpt2_tensor_name(int i, int l, char *buf, size_t size);
/* One parameter tensor of one layer, in the canonical order. */
typedef struct {
    int i, l;          /* tensor index (the table above) and layer */
    size_t rows, cols; /* cols 0 for vectors */
    size_t offset;     /* of its first value in the parameter array */
    char name[96];     /* "h.3.attn.c_attn.weight" */
} gq_gpt2_tensor_ref;

/* Number of tensors of every layer (4 + 12 n_layer), and the list of them in canonical order
 * (out: that many entries). */
int gq_gpt2_n_tensor_refs(const gq_gpt2_config *cfg);
void gq_gpt2_tensor_refs(const gq_gpt2_config *cfg, gq_gpt2_tensor_ref *out);
/* Values of tensor i over all its layers, and of the whole parameter array. */
size_t gq_gpt2_tensor_numel(const gq_gpt2_config *cfg, int i);
size_t gq_gpt2_n_params(const gq_gpt2_config *cfg);

#endif
