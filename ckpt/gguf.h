/* gguf: export a gpt2q checkpoint as a GGUF v3 file that llama.cpp loads as architecture
 * "gpt2": GPT-2 hyperparameters, the GPT-2 BPE vocabulary and merges (tokenizer.ggml.model
 * "gpt2", pre-tokenizer "gpt-2"), and the tensors under llama.cpp's names (token_embd,
 * position_embd, blk.N.attn_qkv, ...; the LM head is the tied token_embd). Selected weights are
 * quantized by kernels/quant.h to Q8_0 (format q8_0) or Q4_0 (int4 with groups of 32), which are
 * byte-identical to llama.cpp's own blocks (or with searched, learned or GPTQ's codes and scales
 * in the same blocks); the rest are F32 or F16. Written to a temp file and
 * renamed. */
#ifndef GQ_GGUF_H
#define GQ_GGUF_H

#include "gpt2_layout.h"
#include "qplan.h"

#include <stddef.h>

typedef struct {
    int f16;               /* unquantized 2-D weights as F16 (else F32) */
    const char *vocab_dir; /* encoder.json + vocab.bpe */
    const char *name;      /* general.name */
    /* -gptq weights (q8_0 or int4 with groups of 32): the tensor GPTQ quantized, by name
     * (train/gptq_run.h's gq_gptq_lookup), written block for block; NULL: -gptq is an error */
    const gq_qtensor *(*pre)(const char *name, void *pre_ctx);
    void *pre_ctx;
} gq_gguf_opts;

/* ggml tensor types used here */
enum { GQ_GGML_F32 = 0, GQ_GGML_F16 = 1, GQ_GGML_Q4_0 = 2, GQ_GGML_Q8_0 = 8 };

/* Export; *n_quant receives the number of quantized tensors. Errors name the file and the
 * problem (a format GGUF cannot hold, a vocabulary that does not match the model, ...). */
int gq_gguf_export(const char *ckpt_path, const char *out_path, const gq_qplan *plan, const gq_gguf_opts *o,
                   int *n_quant, size_t *bytes_out);

#endif
