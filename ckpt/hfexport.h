/* hfexport: a GPT-2 parameter array (gq_weights_read's canonical layout: checkpoint, quantized
 * export dequantized, HF safetensors or llm.c .bin) written back out for the other stacks:
 *  - a Hugging Face folder that transformers' GPT2LMHeadModel / AutoTokenizer load as they are:
 *    model.safetensors as save_pretrained writes it (names "transformer.h.0...", Conv1D weights
 *    (in, out), the token embedding unpadded and tied, tensors sorted by name, the header padded
 *    with spaces to 8 bytes), config.json, and for GPT-2's vocabulary vocab.json and merges.txt;
 *  - an llm.c model file (version 3: the 256-int header and the fp32 array, vocabulary padded).
 * Every file goes to a temp file first; the folder's files are renamed into place only after all
 * of them were written, so a failure (disk full) leaves what was there before. */
#ifndef GQ_HFEXPORT_H
#define GQ_HFEXPORT_H

#include "gpt2_layout.h"

#include <stddef.h>

enum { GQ_HF_F32, GQ_HF_F16, GQ_HF_BF16 };

typedef struct {
    int dtype;             /* GQ_HF_F32 / F16 / BF16: every tensor in it (round to nearest even) */
    const char *vocab_dir; /* encoder.json + vocab.bpe, copied as vocab.json + merges.txt when the
                              model has GPT-2's 50257 tokens; NULL: no tokenizer files */
} gq_hf_opts;

/* Write `dir`/model.safetensors, config.json (and the tokenizer files); the folder is created if
 * missing. *files_out: how many files were written; *bytes_out: their total size. Errors name the
 * file and the problem (a value fp16 cannot hold, disk full, ...). */
int gq_hf_export(const float *params, const gq_gpt2_config *cfg, const char *dir, const gq_hf_opts *o,
                 int *files_out, size_t *bytes_out);

/* Write an llm.c version-3 model file (fp32). */
int gq_llmc_export(const float *params, const gq_gpt2_config *cfg, const char *path, size_t *bytes_out);

#endif
